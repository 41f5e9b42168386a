"""Draw the landmarks that `fashionlens data derive-landmarks` derives, on whole CCP photos, into one PNG.

    python tools/draw_derived_landmarks.py ../shared/data/ccp docs/derived-landmarks.png --n 24 --seed 0

Filled dots are visible points (code 0, the ones training uses), rings occluded guesses (code 1);
each label names the slot (Lc/Rc collar, Ls/Rs sleeve, Lw/Rw waistline, Lh/Rh hem) and the garment.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fashionlens.data.ccp import read_ccp_label_list, read_ccp_mask
from fashionlens.data.derive_tree import derive_photo

SLOT_COLOURS = ["#e11d48", "#e11d48", "#16a34a", "#16a34a", "#0891b2", "#0891b2", "#ca8a04", "#ca8a04"]
SLOT_TAGS = ["Lc", "Rc", "Ls", "Rs", "Lw", "Rw", "Lh", "Rh"]


def draw_photo(photo: Path, mask_path: Path, names: list[str], width: int) -> Image.Image:
    """One photo with every derived garment's box, name and points, scaled to ``width``."""
    mask = read_ccp_mask(mask_path, len(names), photo)
    garments, _ = derive_photo(photo, mask, names, margin=0.0, min_area=0.01, out_img=None)
    with Image.open(photo) as im:
        canvas = im.convert("RGB")
    scale = width / canvas.width
    canvas = canvas.resize((width, round(canvas.height * scale)))
    d = ImageDraw.Draw(canvas)
    for k, g in enumerate(garments):
        ox, oy = g.origin
        x1, y1, x2, y2 = ((np.asarray(g.bbox) + (ox, oy, ox, oy)) * scale).tolist()
        d.rectangle((x1, y1, x2, y2), outline="white")
        d.text((x1 + 2, y1 + 2 + 10 * (k % 2)), g.category, fill="white")
        for slot in np.flatnonzero(g.visibility < 2):
            x, y = (g.landmarks[slot] + g.origin) * scale
            r = 5
            if g.visibility[slot] == 0:
                d.ellipse((x - r, y - r, x + r, y + r), fill=SLOT_COLOURS[slot], outline="black")
            else:
                d.ellipse((x - r, y - r, x + r, y + r), outline=SLOT_COLOURS[slot], width=2)
            d.text((x + 6, y - 6), f"{SLOT_TAGS[slot]} {g.category[:4]}", fill=SLOT_COLOURS[slot])
    d.text((4, 4), photo.stem, fill="yellow")
    return canvas


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ccp", type=Path, help="the CCP folder")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--n", type=int, default=24, help="number of photos")
    parser.add_argument("--seed", type=int, default=0, help="which photos (a seeded sample of the masks)")
    parser.add_argument("--stems", nargs="*", help="these photos instead of a sample")
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--width", type=int, default=300, help="pixels per photo")
    args = parser.parse_args(argv)
    names = read_ccp_label_list(args.ccp / "label_list.mat")
    masks = sorted((args.ccp / "annotations" / "pixel-level").glob("*.mat"))
    if args.stems:
        chosen = [m for m in masks if m.stem in set(args.stems)]
    else:
        chosen = sorted(
            np.random.default_rng(args.seed).choice(masks, size=min(args.n, len(masks)), replace=False)
        )
    tiles = [draw_photo(args.ccp / "photos" / f"{m.stem}.jpg", m, names, args.width) for m in chosen]
    cols = min(args.columns, len(tiles))
    rows = -(-len(tiles) // cols)
    cell_h = max(t.height for t in tiles)
    sheet = Image.new("RGB", (cols * args.width, rows * cell_h), "black")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * args.width, (i // cols) * cell_h))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # a third of the bytes
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out}: {len(tiles)} photos ({', '.join(m.stem for m in chosen)})")


if __name__ == "__main__":
    main()
