"""A figure of true and predicted garments on CCP photos: per photo the mask's garments and the predictor's.

    python tools/garment_figure.py runs/parsing/frozen/model.safetensors --ccp ../shared/data/ccp \\
        --split val --n 8 --out docs/garments.png

The photos are the first ``n`` of the model's ``split`` of CCP that have a pixel-level mask (the split's
fixed order: the same photos on every run). Each photo gets two panels:

- **true**: the mask's garment groups cut into garments by the predictor's own rule
  (``garments_from_labels(..., **GARMENT_RULE)`` on the full-resolution group map), each drawn as an
  outline with its group's name at the top-left corner of its box;
- **predicted**: the garments ``Predictor.predict`` returns for the whole photo (their RLE masks
  decoded), each an outline with ``group score`` and the top category if the model has one; the
  landmarks of the garments that have them are small dots (hollow when predicted invisible).

One colour per garment group, the same in both panels; the legend names them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from fashionlens.data.ccp import read_ccp_label_list  # noqa: E402
from fashionlens.data.images import load_image, load_stored_image  # noqa: E402
from fashionlens.garments.groups import GARMENT_GROUPS, label_to_group  # noqa: E402
from fashionlens.garments.instances import Garment  # noqa: E402
from fashionlens.garments.rle import decode_rle  # noqa: E402
from fashionlens.inference.predictor import load_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from garment_eval import split_photos, true_garments  # noqa: E402

# one colour per garment group (GARMENT_GROUPS order), distinct on photos
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000")  # fmt: skip
COLOURS: dict[str, str] = dict(zip(GARMENT_GROUPS, PALETTE, strict=True))


# a label's size, in shares of the photo's width (per character) and height (per line), at the figure's scale
CHAR_W, LINE_H = 0.02, 0.04


class Labels:
    """Where a panel's garment names go: at the top-left corner of each box, just above it (inside it at the
    photo's top edge), moved down past the labels already placed that it would cover."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.placed: list[tuple[float, float, float, float]] = []  # x0, y0, x1, y1 in photo pixels

    def place(self, text: str, box: tuple[int, int, int, int]) -> tuple[float, float]:
        """The (x, y) of the top-left corner of ``text``'s label for a garment with ``box``."""
        lines = text.split("\n")
        w = CHAR_W * self.width * max(len(line) for line in lines)
        h = LINE_H * self.height * len(lines)
        x, y = float(box[0]), float(box[1]) - h
        if y < 0:
            y = float(box[1])
        for _ in range(len(self.placed) + 1):
            hit = [r for r in self.placed if x < r[2] and r[0] < x + w and y < r[3] and r[1] < y + h]
            if not hit:
                break
            y = max(r[3] for r in hit)
        self.placed.append((x, y, x + w, y + h))
        return x, y


def outline(ax: Axes, labels: Labels, mask: np.ndarray, colour: str, text: str,
            box: tuple[int, int, int, int]) -> None:  # fmt: skip
    """One garment: its mask's outline and ``text`` at the top-left corner of its box."""
    ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.4)
    x, y = labels.place(text, box)
    ax.text(x, y, text, fontsize=6.5, color="black", ha="left", va="top", linespacing=1.0,
            bbox={"facecolor": colour, "alpha": 0.85, "pad": 1.0, "edgecolor": "none"})  # fmt: skip


def draw_true(ax: Axes, photo: Path, found: list[Garment]) -> set[str]:
    """The true panel of one photo (its mask's garments); returns the groups drawn."""
    img = load_stored_image(photo)  # the mask indexes the stored pixels
    ax.imshow(img)
    labels = Labels(*img.size)
    for g in found:
        outline(ax, labels, g.mask, COLOURS[g.label], g.label, g.box)
    ax.set_title(f"{photo.stem} true ({len(found)})", fontsize=8)
    return {g.label for g in found}


def draw_predicted(ax: Axes, photo: Path, pred) -> set[str]:
    """The predicted panel of one photo; returns the groups drawn."""
    img = load_image(photo)
    ax.imshow(img)
    labels = Labels(*img.size)
    if pred.error:
        ax.set_title(f"{photo.stem}: {pred.error[:40]}", fontsize=7, color="#b42318")
        return set()
    garments = pred.garments or []
    for g in garments:
        colour = COLOURS.get(g.label, "#ffffff")
        text = f"{g.label} {g.score:.2f}" + (f"\n{g.category[0].label}" if g.category else "")
        outline(ax, labels, decode_rle(g.mask), colour, text, g.box)
        for p in g.landmarks or []:
            hollow = p.visible is False
            ax.scatter([p.x], [p.y], s=10, marker="o", linewidths=0.8, edgecolors=colour,
                       facecolors="none" if hollow else colour, zorder=3)  # fmt: skip
    ax.set_title(f"{photo.stem} predicted ({len(garments)})", fontsize=8)
    return {g.label for g in garments}


def figure(photos: list[Path], truth: list[list[Garment]], preds: list, per_row: int, title: str) -> Figure:
    """The grid: ``per_row`` photos (two panels each) per row, a legend of the groups drawn."""
    rows = -(-len(photos) // per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(2.1 * 2 * per_row, 3.5 * rows + 0.6), squeeze=False)
    shown: set[str] = set()
    for k, (photo, found, pred) in enumerate(zip(photos, truth, preds, strict=True)):
        row, col = divmod(k, per_row)
        shown |= draw_true(axes[row, 2 * col], photo, found)
        shown |= draw_predicted(axes[row, 2 * col + 1], photo, pred)
    for ax in axes.ravel():
        ax.set_axis_off()
    handles = [Patch(color=COLOURS[g], label=g) for g in GARMENT_GROUPS if g in shown]
    fig.legend(handles=handles, loc="lower center", ncol=max(1, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97), pad=0.3, w_pad=0.2, h_pad=1.0)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--ccp", default="../shared/data/ccp")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--n", type=int, default=8, help="photos (the first n of the split with a mask)")
    ap.add_argument("--per-row", type=int, default=4, help="photos per row of the grid")
    ap.add_argument("--backend", default="torch", help="the predictor's backend (torch: no ONNX export)")
    ap.add_argument("--dpi", type=int, default=85, help="85: about 1.3 MB for 8 photos")
    ap.add_argument("--out", default="docs/garments.png")
    args = ap.parse_args(argv)
    photos = split_photos(args.model, args.ccp, args.split)[: args.n]
    lut = label_to_group(read_ccp_label_list(Path(args.ccp) / "label_list.mat"))
    predictor = load_model(args.model, backend=args.backend, batch_size=8)
    preds = predictor.predict([str(p) for p, _ in photos], top_k=1)
    title = (f"{Path(args.model).as_posix()} on CCP {args.split}: the first {len(photos)} photos with a "
             "mask. Left: true garments (mask groups, GARMENT_RULE); right: predicted (group score, top "
             "category; dots: landmarks)")  # fmt: skip
    truth = [true_garments(m, lut) for _, m in photos]
    fig = figure([p for p, _ in photos], truth, preds, max(1, min(args.per_row, len(photos))), title)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi)
    plt.close(fig)
    size = Path(args.out).stat().st_size
    n_true = sum(len(t) for t in truth)
    n_pred = sum(len(p.garments or []) for p in preds)
    print(f"{args.out}: {len(photos)} photos ({', '.join(p.stem for p, _ in photos)}), {n_true} true and "
          f"{n_pred} predicted garments, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
