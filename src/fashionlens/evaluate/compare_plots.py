"""The PNGs of ``fashionlens compare``: per-label AP differences and the case grid (seed B's Fig. 7)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from fashionlens.fileio import atomic_write_bytes

MAX_BARS = 60  # beyond this many labels, only the largest gains and losses are drawn
GAIN, LOSS, TRUE, WRONG = "#228833", "#cc3311", "#117733", "#555555"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png", bbox_inches="tight")  # text under a photo may pass the edge
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_ap_deltas(label_names: list[str], per_label: dict, names: list[str], path: Path, title: str) -> None:
    """One panel per model after the first: its per-label AP minus the first model's, sorted.

    Labels without a positive photo (no AP) are left out; beyond ``MAX_BARS`` labels only the
    MAX_BARS / 2 largest gains and losses are drawn. Each tick names the label and its positives.
    """
    plt = _pyplot()
    ap = [np.asarray(a, dtype=float) for a in per_label["AP"]]
    support = np.asarray(per_label["support"])
    panels = len(names) - 1
    shown = [_bars(ap[m] - ap[0], label_names, support) for m in range(1, len(names))]
    height = max(3.0, 0.17 * max(len(s[0]) for s in shown) + 1.2)
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, height), squeeze=False)
    for ax, (ticks, deltas), name in zip(axes[0], shown, names[1:], strict=True):
        ys = np.arange(len(deltas))
        ax.barh(ys, deltas, color=[GAIN if d > 0 else LOSS for d in deltas])
        ax.set_yticks(ys, ticks, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(f"AP({name}) - AP({names[0]})")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _bars(delta: np.ndarray, names: list[str], support: np.ndarray) -> tuple[list[str], np.ndarray]:
    ok = np.flatnonzero(~np.isnan(delta))
    order = ok[np.argsort(-delta[ok], kind="stable")]  # largest gain first
    if len(order) > MAX_BARS:
        half = MAX_BARS // 2
        order = np.concatenate([order[:half], order[-half:]])
    return [f"{names[i]} ({support[i]})" for i in order], delta[order]


def top_labels(head: str, scores: np.ndarray, names: list[str], k: int = 3) -> list[tuple[str, float]]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [(names[i], float(scores[i])) for i in order]


def truth_text(head: str, targets_row, names: list[str], limit: int = 6) -> str:
    if head == "category":
        return names[int(targets_row)]
    true = [names[i] for i in np.flatnonzero(targets_row)]
    return ", ".join(true[:limit]) + (f" +{len(true) - limit}" if len(true) > limit else "") or "(none)"


def _is_true(head: str, targets_row, names: list[str], label: str) -> bool:
    i = names.index(label)
    return int(targets_row) == i if head == "category" else bool(targets_row[i])


def plot_cases(out, names: list[str], rows: np.ndarray, path: Path, columns: int = 4, k: int = 3) -> None:
    """Seed B's Fig. 7: each photo with every model's top-k labels (true ones in green, ticked) and the
    truth."""
    from fashionlens.data.images import BadImageError, load_image

    plt = _pyplot()
    n = max(len(rows), 1)
    columns = min(columns, n)
    grid_rows = -(-n // columns)
    text_lines = len(names) * 1 + 1
    fig, axes = plt.subplots(
        grid_rows,
        columns,
        figsize=(3.3 * columns, 3.3 * grid_rows + 0.42 * text_lines * grid_rows),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):
        try:
            img = load_image(out.paths[row], draft_size=(256, 256))
            img.thumbnail((256, 256))
            ax.imshow(np.asarray(img))
        except BadImageError as e:
            ax.text(0.5, 0.5, f"unreadable\n{e.reason}", ha="center", va="center", fontsize=7)
        ax.set_title(Path(out.paths[row]).name, fontsize=7)
        y = -0.03
        for name, scores in zip(names, out.scores, strict=True):
            parts = [
                (
                    f"{label} {score:.2f}"
                    + (" ✓" if _is_true(out.head, out.targets[row], out.label_names, label) else ""),
                    _is_true(out.head, out.targets[row], out.label_names, label),
                )
                for label, score in top_labels(out.head, scores[row], out.label_names, k)
            ]
            _coloured_line(ax, y, f"{name}: ", parts)
            y -= 0.075
        ax.text(
            0.0,
            y,
            "truth: " + truth_text(out.head, out.targets[row], out.label_names),
            transform=ax.transAxes,
            fontsize=7,
            va="top",
            fontweight="bold",
        )
    fig.tight_layout(h_pad=3.0)
    _save(fig, path, dpi=100)


def _coloured_line(ax, y: float, prefix: str, parts: list[tuple[str, bool]]) -> None:
    """One text line under a photo; each label coloured by whether it is true."""
    text = ax.text(0.0, y, prefix, transform=ax.transAxes, fontsize=7, va="top")
    for i, (label, ok) in enumerate(parts):
        text = ax.annotate(
            label + (", " if i < len(parts) - 1 else ""),
            xycoords=text,
            xy=(1, 0),
            va="bottom",
            fontsize=7,
            color=TRUE if ok else WRONG,
            fontweight="bold" if ok else "normal",
        )
