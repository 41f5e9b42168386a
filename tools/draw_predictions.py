"""Draw photos with what a model predicts for them (category, styles, attributes, colours) into one PNG.

    # 24 validation product photos of clothing-small (no attribute labels exist for them): look and judge
    python tools/draw_predictions.py ../shared/data/clothing-small/validation docs/product-attributes.png \
        --model fashionlens-lite --n 24 --seed 0

Photos are drawn from the folder (recursively, a seeded sample); under each: its file name, the top
category, and the attributes and colours the Predictor returns (its calibrated thresholds), so a
person can count the wrong ones.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fashionlens.data.images import IMAGE_EXTENSIONS, load_image
from fashionlens.inference.predictor import load_model

TILE, TEXT_LINES, LINE = 220, 6, 13


def caption(pred) -> list[str]:
    """The text under one photo."""
    lines = []
    if pred.category:
        lines.append(f"{pred.category[0].label} {pred.category[0].score:.2f}")
    if pred.styles:
        lines.append("style: " + ", ".join(s.label for s in pred.styles))
    if pred.attributes is not None:
        lines += textwrap.wrap(" · ".join(s.label for s in pred.attributes) or "(no attribute)", 34)
    if pred.colours is not None:
        lines.append("colours: " + (", ".join(s.label for s in pred.colours) or "-"))
    return lines[:TEXT_LINES]


def draw(paths: list[Path], preds: list, columns: int = 6) -> Image.Image:
    rows = -(-len(paths) // columns)
    cell_h = TILE + 16 + LINE * TEXT_LINES
    sheet = Image.new("RGB", (columns * TILE, rows * cell_h), "white")
    d = ImageDraw.Draw(sheet)
    for k, (path, pred) in enumerate(zip(paths, preds, strict=True)):
        x, y = (k % columns) * TILE, (k // columns) * cell_h
        img = load_image(path, draft_size=(TILE * 2, TILE * 2))
        img.thumbnail((TILE - 8, TILE - 8))
        sheet.paste(img, (x + (TILE - img.width) // 2, y + 4))
        d.text((x + 4, y + TILE), f"{k + 1}. {path.name[:28]}", fill="#555555")
        if pred.error:
            d.text((x + 4, y + TILE + LINE), pred.error[:34], fill="#b42318")
            continue
        for i, line in enumerate(caption(pred)):
            d.text((x + 4, y + TILE + LINE * (i + 1)), line, fill="#1f2430" if i else "#2563eb")
    return sheet


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a folder of photos (searched recursively)")
    ap.add_argument("out", type=Path, help="the PNG to write")
    ap.add_argument("--model", default="fashionlens-lite")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--columns", type=int, default=6)
    args = ap.parse_args(argv)
    photos = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not photos:
        raise SystemExit(f"error: no photos under {args.folder}")
    pick = np.random.default_rng(args.seed).choice(len(photos), size=min(args.n, len(photos)), replace=False)
    paths = [photos[i] for i in sorted(pick)]
    preds = load_model(args.model).predict([str(p) for p in paths], top_k=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(paths, preds, args.columns).save(args.out)
    for k, (path, pred) in enumerate(zip(paths, preds, strict=True), start=1):
        print(f"{k:2d} {path.parent.name}/{path.name}: " + " | ".join(caption(pred)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
