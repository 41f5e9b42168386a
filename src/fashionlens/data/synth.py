"""A synthetic data set in the exact DeepFashion Category and Attribute Prediction layout.

:func:`synth_deepfashion` draws simple garments (PIL polygons) on a textured background and writes
``img/<Folder>/img_XXXXXXXX.jpg``, ``Anno/list_*.txt`` and ``Eval/list_eval_partition.txt`` with the
same columns and padding as the real files, so the whole DeepFashion pipeline (reader, transforms,
model, metrics) can be tested without the real (non-commercial) data.

Six of the 50 invented categories are used; the category is decided by the silhouette:

=================  =====  =====================================================
category           type   silhouette
=================  =====  =====================================================
Synth_Tee          upper  wide body, short sleeves
Synth_Longsleeve   upper  narrow body, long sleeves
Synth_Shorts       lower  wide box, short flared legs
Synth_Trousers     lower  tall narrow box, long legs
Synth_Dress        full   short-sleeved top + flared skirt
Synth_Jumpsuit     full   long-sleeved top + trousers
=================  =====  =====================================================

Landmarks lie on the silhouette: collar = the two ends of the neckline, sleeve = the middle of the
cuff, waistline = the two ends of the waist seam, hem = the bottom corners (upper, dress) or the
middle of each leg's bottom edge (trousers, shorts, jumpsuit). "Left" is the image's left.

Of the 1000 attributes only the 21 in :data:`SIGNAL_ATTRIBUTES` are ever positive (the rest are -1,
and about 0.2 % of all values are 0 = unknown). Each is drawn on one part of the garment, so a
landmark-aware model has something local to find:

- texture (1): ``stripe print``, ``dot print``, ``check print``: pattern on the sleeves (upper,
  full) or on the lower half of the legs / skirt (lower);
- fabric (2): ``knit fabric`` (fine diagonal hatching), ``denim fabric`` (speckle noise),
  ``satin fabric`` (a light diagonal sheen band), over the whole garment;
- shape (3): ``zigzag hem``, ``scalloped hem``, ``banded hem``: decoration along the hem edge(s);
- part (4): ``white collar``, ``orange collar``, ``purple collar`` (neckline colour; upper and
  full), ``contrast belt`` (band on the waistline; lower and full), ``patch pocket``;
- style (5): ``red look``, ``blue look``, ``green look``, ``yellow look``, ``pink look``,
  ``black look``: the garment's base colour (global).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fashionlens.data.deepfashion import ATTRIBUTE_TYPES, CLOTHES_TYPE_SLOTS

__all__ = ["SIGNAL_ATTRIBUTES", "SynthRecord", "synth_categories", "synth_attributes", "synth_plan",
           "synth_deepfashion"]  # fmt: skip

# (name, type, used): 20 upper, 16 lower, 14 full body, as in the real file's 50 rows.
_USED = {"Synth_Tee": 1, "Synth_Longsleeve": 1, "Synth_Shorts": 2, "Synth_Trousers": 2,
         "Synth_Dress": 3, "Synth_Jumpsuit": 3}  # fmt: skip
_STYLE_COLOURS = {"red look": (200, 40, 45), "blue look": (40, 70, 190), "green look": (40, 150, 70),
                  "yellow look": (230, 200, 40), "pink look": (240, 140, 185),
                  "black look": (35, 35, 40)}  # fmt: skip
_COLLAR_COLOURS = {"white collar": (250, 250, 250), "orange collar": (250, 130, 20),
                   "purple collar": (130, 50, 160)}  # fmt: skip
_OPTIONS = {  # attribute choices per part; None = no attribute for that part
    "texture": (None, None, "stripe print", "dot print", "check print"),
    "fabric": (None, None, "knit fabric", "denim fabric", "satin fabric"),
    "hem": (None, None, "zigzag hem", "scalloped hem", "banded hem"),
    "collar": (None, None, *_COLLAR_COLOURS),
}
SIGNAL_ATTRIBUTES: dict[str, int] = {
    **{n: 1 for n in _OPTIONS["texture"][2:]}, **{n: 2 for n in _OPTIONS["fabric"][2:]},
    **{n: 3 for n in _OPTIONS["hem"][2:]}, **{n: 4 for n in _COLLAR_COLOURS},
    "contrast belt": 4, "patch pocket": 4, **{n: 5 for n in _STYLE_COLOURS},
}  # fmt: skip
_ATTR_TYPE_COUNTS = {1: 156, 2: 218, 3: 180, 4: 216, 5: 230}  # the real file's proportions
_FOLDER_WORDS = ("Airy", "Bold", "Crisp", "Dusky", "Easy", "Fresh", "Grand", "Hazy", "Ivory", "Jolly",
                 "Keen", "Light", "Misty", "Neat", "Open", "Plush", "Quiet", "Rustic", "Sunny",
                 "Tidy")  # fmt: skip


def synth_categories() -> list[tuple[str, int]]:
    """The 50 invented category names with types (1 upper, 2 lower, 3 full), in file order."""
    out = []
    for ctype, count, word in ((1, 20, "Top"), (2, 16, "Bottom"), (3, 14, "Onepiece")):
        used = [n for n, t in _USED.items() if t == ctype]
        out += [(n, ctype) for n in used] + [
            (f"Synth_{word}_{k:02d}", ctype) for k in range(count - len(used))
        ]
    return out


def synth_attributes() -> list[tuple[str, int]]:
    """The 1000 attribute names (with spaces) and types, sorted by name as in the real file."""
    out = list(SIGNAL_ATTRIBUTES.items())
    for t, count in _ATTR_TYPE_COUNTS.items():
        n_signal = sum(1 for v in SIGNAL_ATTRIBUTES.values() if v == t)
        out += [(f"synth {ATTRIBUTE_TYPES[t]} {k:03d}", t) for k in range(count - n_signal)]
    return sorted(out)


@dataclass
class SynthRecord:
    """Ground truth and drawing recipe of one synthetic image (coordinates in continuous pixels).

    Attributes:
        name: image name relative to the root (``img/<Folder>/img_XXXXXXXX.jpg``).
        category: 0-based index into :func:`synth_categories`.
        clothes_type: 1 upper, 2 lower, 3 full.
        landmarks: (8, 2) float continuous (x, y); rows the clothes type lacks are 0.
        visibility: (8,) int DeepFashion codes (0 visible, 1 occluded; 2 for absent slots).
        bbox: (4,) int x1 y1 x2 y2.
        positives: names of the positive attributes.
        unknown: indices (into :func:`synth_attributes`) written as 0.
        partition: "train" / "val" / "test".
    """

    name: str
    category: int
    clothes_type: int
    landmarks: np.ndarray
    visibility: np.ndarray
    bbox: np.ndarray
    positives: list[str]
    unknown: np.ndarray
    partition: str = "train"
    shapes: dict = field(default_factory=dict, repr=False)  # polygons etc. in pixels
    style: dict = field(default_factory=dict, repr=False)  # colours and choices

    @property
    def landmark_indices(self) -> np.ndarray:
        """(8, 2) int: the pixel index of each landmark, as written to ``list_landmarks.txt``."""
        return np.floor(self.landmarks).astype(np.int64)


# ----------------------------------------------------------------------------- garment geometry
# Templates in a unit box (u right, v down); "L" is the image's left. Mirrored parts use 1 - u.


def _mirror(poly: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(1 - u, v) for u, v in poly]


def _upper_template(long_sleeves: bool) -> dict:
    half = 0.20 if long_sleeves else 0.26  # half body width
    l_body, r_body = 0.5 - half, 0.5 + half
    cuff = [(0.02, 0.80), (0.15, 0.85)] if long_sleeves else [(0.02, 0.30), (0.14, 0.42)]
    sleeve_l = [(l_body, 0.06), cuff[0], cuff[1], (l_body + 0.02, 0.30)]
    body = [(0.36, 0.0), (0.44, 0.10), (0.56, 0.10), (0.64, 0.0), (r_body, 0.06), (r_body, 1.0),
            (l_body, 1.0), (l_body, 0.06)]  # fmt: skip
    sleeve_mid = ((cuff[0][0] + cuff[1][0]) / 2, (cuff[0][1] + cuff[1][1]) / 2)
    return {
        "body": body, "sleeves": [sleeve_l, _mirror(sleeve_l)],
        "neck": [(0.36, 0.0), (0.44, 0.10), (0.56, 0.10), (0.64, 0.0)],
        "hems": [((l_body, 1.0), (r_body, 1.0))],
        "lm": {0: (0.36, 0.0), 1: (0.64, 0.0), 2: sleeve_mid, 3: (1 - sleeve_mid[0], sleeve_mid[1]),
               6: (l_body, 1.0), 7: (r_body, 1.0)},
        "pocket": (r_body - 0.16, 0.62, r_body - 0.04, 0.78),
    }  # fmt: skip


def _lower_template(kind: str) -> dict:
    if kind == "skirt":
        body = [(0.22, 0.0), (0.78, 0.0), (0.97, 1.0), (0.03, 1.0)]
        return {"body": body, "hems": [((0.03, 1.0), (0.97, 1.0))],
                "panels": [[(0.12, 0.55), (0.88, 0.55), (0.97, 1.0), (0.03, 1.0)]],
                "lm": {4: (0.22, 0.0), 5: (0.78, 0.0), 6: (0.03, 1.0), 7: (0.97, 1.0)},
                "pocket": (0.28, 0.12, 0.42, 0.3)}  # fmt: skip
    out_x, in_x, crotch = (0.04, 0.46, 0.45) if kind == "shorts" else (0.14, 0.46, 0.28)
    s = (0.55 - crotch) / (1 - crotch)  # the panel (lower half of the leg) starts at v = 0.55
    panel_l = [(0.2 + (out_x - 0.2) * 0.55, 0.55), (0.5 + (in_x - 0.5) * s, 0.55), (in_x, 1.0), (out_x, 1.0)]
    hem_l = ((out_x + in_x) / 2, 1.0)
    return {
        "body": [(0.2, 0.0), (0.8, 0.0), (1 - out_x, 1.0), (1 - in_x, 1.0), (0.5, crotch), (in_x, 1.0),
                 (out_x, 1.0)],
        "hems": [((out_x, 1.0), (in_x, 1.0)), ((1 - in_x, 1.0), (1 - out_x, 1.0))],
        "panels": [panel_l, _mirror(panel_l)],
        "lm": {4: (0.2, 0.0), 5: (0.8, 0.0), 6: hem_l, 7: (1 - hem_l[0], 1.0)},
        "pocket": (0.26, 0.1, 0.4, 0.26),
    }  # fmt: skip


def _full_template(dress: bool) -> dict:
    """Top (upper template squeezed into v 0..0.42) over a skirt / trousers (v 0.4..1, u 0.18..0.82)."""
    top, low = _upper_template(long_sleeves=not dress), _lower_template("skirt" if dress else "trousers")
    t = lambda p: (p[0], p[1] * 0.42)  # noqa: E731 - tiny coordinate maps
    b = lambda p: (0.18 + p[0] * 0.64, 0.4 + p[1] * 0.6)  # noqa: E731
    lm = {k: t(v) for k, v in top["lm"].items() if k < 4} | {k: b(v) for k, v in low["lm"].items()}
    return {
        "body": [t(p) for p in top["body"]], "body2": [b(p) for p in low["body"]],
        "sleeves": [[t(p) for p in s] for s in top["sleeves"]], "neck": [t(p) for p in top["neck"]],
        "hems": [(b(p), b(q)) for p, q in low["hems"]], "panels": [[b(p) for p in s] for s in low["panels"]],
        "waist": (lm[4], lm[5]), "lm": lm, "pocket": (*b(low["pocket"][:2]), *b(low["pocket"][2:])),
    }  # fmt: skip


_TEMPLATES = {  # category name -> (clothes type, template builder, box width / height)
    "Synth_Tee": (1, lambda: _upper_template(False), 1.0),
    "Synth_Longsleeve": (1, lambda: _upper_template(True), 0.85),
    "Synth_Shorts": (2, lambda: _lower_template("shorts"), 1.25),
    "Synth_Trousers": (2, lambda: _lower_template("trousers"), 0.55),
    "Synth_Dress": (3, lambda: _full_template(True), 0.62),
    "Synth_Jumpsuit": (3, lambda: _full_template(False), 0.5),
}


# ----------------------------------------------------------------------------- planning


def _place(
    rng: np.random.Generator, aspect: float, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Random garment box (x, y, w, h) inside an image of ``size`` = (H, W)."""
    height, width = size
    big = rng.uniform(0.6, 0.9) * min(height, width)
    gw, gh = (big, big / aspect) if aspect >= 1 else (big * aspect, big)
    return rng.uniform(1, width - gw - 1), rng.uniform(1, height - gh - 1), gw, gh


def _plan_one(
    rng: np.random.Generator, name: str, cat_name: str, cat_index: int, size: tuple[int, int]
) -> SynthRecord:
    ctype, build, aspect = _TEMPLATES[cat_name]
    tpl = build()
    x, y, gw, gh = _place(rng, aspect, size)
    px = lambda p: (x + p[0] * gw, y + p[1] * gh)  # noqa: E731 - unit box -> pixels
    shapes = {
        "polys": [[px(p) for p in tpl[k]] for k in ("body", "body2") if k in tpl]
                 + [[px(p) for p in s] for s in tpl.get("sleeves", [])],
        "sleeves": [[px(p) for p in s] for s in tpl.get("sleeves", [])],
        "panels": [[px(p) for p in s] for s in tpl.get("panels", [])],
        "hems": [(px(p), px(q)) for p, q in tpl["hems"]], "neck": [px(p) for p in tpl.get("neck", [])],
        "pocket": (*px(tpl["pocket"][:2]), *px(tpl["pocket"][2:])), "gw": gw, "gh": gh,
    }  # fmt: skip
    landmarks = np.zeros((8, 2), dtype=np.float64)
    visibility = np.full(8, 2, dtype=np.int64)
    for slot, p in tpl["lm"].items():
        landmarks[slot] = px(p)
        visibility[slot] = 1 if rng.random() < 0.05 else 0  # a few occluded (an occluder is drawn)
    pts = np.asarray([p for poly in shapes["polys"] for p in poly])
    (x1, y1), (x2, y2) = np.floor(pts.min(0)), np.ceil(pts.max(0))
    bbox = np.asarray([max(x1, 0), max(y1, 0), min(x2, size[1] - 1), min(y2, size[0] - 1)], dtype=np.int64)
    style = _plan_style(rng, ctype)
    positives = [v for k, v in style.items() if k in ("look", "texture", "fabric", "hem", "collar") and v]
    positives += [k for k in ("contrast belt", "patch pocket") if style[k]]
    return SynthRecord(name=name, category=cat_index, clothes_type=ctype, landmarks=landmarks,
                       visibility=visibility, bbox=bbox, positives=positives,
                       unknown=np.flatnonzero(rng.random(1000) < 0.002), shapes=shapes,
                       style=style)  # fmt: skip


def _plan_style(rng: np.random.Generator, ctype: int) -> dict:
    look = str(rng.choice(list(_STYLE_COLOURS)))
    colour = np.clip(np.asarray(_STYLE_COLOURS[look]) + rng.integers(-15, 16, 3), 0, 255)
    pick = lambda k: _OPTIONS[k][int(rng.integers(len(_OPTIONS[k])))]  # noqa: E731
    return {
        "look": look, "colour": tuple(int(c) for c in colour), "texture": pick("texture"),
        "fabric": pick("fabric"), "hem": pick("hem"), "collar": pick("collar") if ctype != 2 else None,
        "contrast belt": ctype != 1 and rng.random() < 0.3, "patch pocket": bool(rng.random() < 0.3),
        "background": tuple(int(c) for c in rng.integers(140, 236, 3)), "draw_seed": int(rng.integers(2**31)),
    }  # fmt: skip


def synth_plan(n: int, seed: int = 0, image_size: tuple[int, int] = (128, 128)) -> list[SynthRecord]:
    """The ground truth of ``synth_deepfashion(out, n, seed, image_size)``, without drawing anything.

    Images come in "product" folders of 1-6 images of one category, like the real data set.
    """
    rng = np.random.default_rng([seed, 0])
    categories = [name for name, _ in synth_categories()]
    used = list(_USED)
    records: list[SynthRecord] = []
    folders: set[str] = set()
    while len(records) < n:
        cat = used[int(rng.integers(len(used)))]
        first, second = _FOLDER_WORDS[int(rng.integers(20))], _FOLDER_WORDS[int(rng.integers(20))]
        folder = f"{first}_{second}-{cat.split('_')[1]}"
        folder = f"{folder}_{cat}" if folder + f"_{cat}" not in folders else f"{folder}_{len(folders)}_{cat}"
        folders.add(folder)
        for k in range(min(int(rng.integers(1, 7)), n - len(records))):
            img_rng = np.random.default_rng([seed, 1, len(records)])
            name = f"img/{folder}/img_{k + 1:08d}.jpg"
            records.append(_plan_one(img_rng, name, cat, categories.index(cat), image_size))
    n_train, n_val = round(0.7 * n), round(0.15 * n)
    order = rng.permutation(n)
    for rank, i in enumerate(order):
        records[i].partition = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return records


# ----------------------------------------------------------------------------- drawing


def _contrast(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return (25, 25, 30) if sum(colour) > 420 else (245, 245, 240)


def _background(size: tuple[int, int], colour: tuple, rng: np.random.Generator) -> Image.Image:
    height, width = size
    blobs = Image.fromarray(rng.integers(98, 158, (6, 6, 3), dtype=np.uint8)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    arr = np.asarray(blobs, dtype=np.int16) - 128 + np.asarray(colour, dtype=np.int16)
    arr += rng.integers(-8, 9, (height, width, 1), dtype=np.int16)  # grain
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _paste_through(img: Image.Image, layer: Image.Image, polys: list) -> None:
    """Copy ``layer`` onto ``img`` inside the polygons only (patterns stay on their garment part)."""
    mask = Image.new("L", img.size, 0)
    mdraw = ImageDraw.Draw(mask)
    for poly in polys:
        mdraw.polygon(poly, fill=255)
    img.paste(layer, mask=mask)


def _pattern(
    img: Image.Image, kind: str, colour: tuple, period: int, rng: np.random.Generator
) -> Image.Image:
    """A copy of ``img`` covered with a texture / fabric pattern."""
    layer = img.copy()
    draw = ImageDraw.Draw(layer)
    width, height = img.size
    if kind in ("stripe print", "check print"):
        for y in range(int(rng.integers(period)), height, period):
            draw.line([(0, y), (width, y)], fill=colour, width=max(1, period // 2))
    if kind == "check print":
        for x in range(int(rng.integers(period)), width, period):
            draw.line([(x, 0), (x, height)], fill=colour, width=max(1, period // 2))
    elif kind == "dot print":
        r = max(1, period // 3)
        for y in range(0, height, period):
            for x in range((y // period % 2) * period // 2, width, period):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif kind == "knit fabric":
        for d in range(-height, width, 3):
            draw.line([(d, 0), (d + height, height)], fill=colour, width=1)
    elif kind == "denim fabric":
        arr = np.asarray(layer, dtype=np.int16) + rng.integers(-45, 46, (height, width, 1), dtype=np.int16)
        layer = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif kind == "satin fabric":
        x0 = int(rng.integers(width))
        draw.polygon(
            [(x0, 0), (x0 + width // 6, 0), (x0 - width // 3, height), (x0 - width // 2, height)], fill=colour
        )
    return layer


def _draw_hem(draw: ImageDraw.ImageDraw, kind: str, hems: list, gh: float, colour: tuple) -> None:
    band = max(2.0, 0.05 * gh)
    for (x0, y0), (x1, y1) in hems:
        if kind == "banded hem":
            draw.line([(x0, y0 - band / 2), (x1, y1 - band / 2)], fill=colour, width=int(band))
        elif kind == "zigzag hem":
            k = max(2, int(abs(x1 - x0) / 3))
            pts = [(x0 + (x1 - x0) * i / k, y0 - band * (i % 2) - 1) for i in range(k + 1)]
            draw.line(pts, fill=colour, width=1)
        elif kind == "scalloped hem":
            r, x = band / 2, x0 + band / 2
            while x < x1:
                draw.ellipse([x - r, y0 - 2 * r, x + r, y0], fill=colour)
                x += band * 1.2


def _draw_garment(rec: SynthRecord, size: tuple[int, int]) -> Image.Image:
    st, sh = rec.style, rec.shapes
    rng = np.random.default_rng(st["draw_seed"])
    img = _background(size, st["background"], rng)
    draw = ImageDraw.Draw(img)
    base, contrast = st["colour"], _contrast(st["colour"])
    for poly in sh["polys"]:
        draw.polygon(poly, fill=base)
    if st["fabric"]:
        shade = tuple(int(c * 0.75 + (60 if st["fabric"] == "satin fabric" else 0)) for c in base)
        _paste_through(img, _pattern(img, st["fabric"], shade, 3, rng), sh["polys"])
    if st["texture"]:
        period = max(3, round(0.07 * sh["gw"]))
        where = sh["sleeves"] if rec.clothes_type != 2 else sh["panels"]
        _paste_through(img, _pattern(img, st["texture"], contrast, period, rng), where)
    draw = ImageDraw.Draw(img)
    if st["hem"]:
        _draw_hem(draw, st["hem"], sh["hems"], sh["gh"], contrast)
    if st["collar"]:
        draw.line(
            sh["neck"],
            fill=_COLLAR_COLOURS[st["collar"]],
            width=max(2, round(0.06 * sh["gw"])),
            joint="curve",
        )
    if st["contrast belt"]:
        draw.line(
            [tuple(rec.landmarks[4]), tuple(rec.landmarks[5])],
            fill=(95, 55, 25),
            width=max(2, round(0.05 * sh["gh"])),
        )
    if st["patch pocket"]:
        draw.rectangle(sh["pocket"], fill=tuple(int(c * 0.6) for c in base), outline=contrast)
    for (x, y), v in zip(rec.landmarks, rec.visibility, strict=True):
        if v == 1:  # occluded landmark: something (a bag, a hand) in front of it
            r = max(3, 0.08 * sh["gw"])
            draw.rectangle([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(60, 200, 3)))
    for poly in sh["polys"]:
        draw.polygon(poly, outline=tuple(int(c * 0.5) for c in base))
    return img


# ----------------------------------------------------------------------------- writing


def _write_list(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{len(rows)}\n{header}\n" + "".join(r + "\n" for r in rows), encoding="utf-8")


def _write_annotations(out: Path, records: list[SynthRecord]) -> None:
    attrs = synth_attributes()
    attr_pos = {name: i for i, (name, _) in enumerate(attrs)}
    w = max(len(r.name) for r in records) + 3 if records else 20
    _write_list(
        out / "Anno/list_category_cloth.txt",
        "category_name  category_type",
        [f"{n:<29}{t}" for n, t in synth_categories()],
    )
    _write_list(
        out / "Anno/list_attr_cloth.txt", "attribute_name  attribute_type", [f"{n:<31}{t}" for n, t in attrs]
    )
    _write_list(
        out / "Anno/list_category_img.txt",
        "image_name  category_label",
        [f"{r.name:<{w}}{r.category + 1}" for r in records],
    )
    values = np.full((len(records), len(attrs)), -1, dtype=np.int64)
    for i, r in enumerate(records):
        values[i, [attr_pos[a] for a in r.positives]] = 1
        values[i, r.unknown] = 0
    _write_list(
        out / "Anno/list_attr_img.txt",
        "image_name  attribute_labels",
        [
            f"{r.name:<{w}}" + " ".join(f"{v:2d}" for v in row)
            for r, row in zip(records, values.tolist(), strict=True)
        ],
    )
    _write_list(
        out / "Anno/list_bbox.txt",
        "image_name  x_1  y_1  x_2  y_2",
        [f"{r.name:<{w}}" + " ".join(f"{v:03d}" for v in r.bbox) for r in records],
    )
    lm_header = "image_name  clothes_type  " + "  ".join(
        f"landmark_visibility_{k}  landmark_location_x_{k}  landmark_location_y_{k}" for k in range(1, 9)
    )
    _write_list(out / "Anno/list_landmarks.txt", lm_header, [_landmark_row(r, w) for r in records])
    _write_list(
        out / "Eval/list_eval_partition.txt",
        "image_name  evaluation_status",
        [f"{r.name:<{w}}{r.partition}" for r in records],
    )


def _landmark_row(rec: SynthRecord, width: int) -> str:
    """Name, clothes type, the type's (v, x, y) triples in file order, zero-padded to 8 triples."""
    idx = rec.landmark_indices
    triples = [
        f"{rec.visibility[s]} {idx[s, 0]:03d} {idx[s, 1]:03d}" for s in CLOTHES_TYPE_SLOTS[rec.clothes_type]
    ]
    triples += ["0 000 000"] * (8 - len(triples))
    return f"{rec.name:<{width}}{rec.clothes_type}  " + "  ".join(triples)


def synth_deepfashion(
    out: str | Path, n: int = 1000, seed: int = 0, image_size: tuple[int, int] = (128, 128)
) -> dict:
    """Write a synthetic data set in the exact DeepFashion Category and Attribute layout.

    Args:
        out: root directory to create (``img/``, ``Anno/``, ``Eval/`` inside).
        n: number of images.
        seed: everything (images and annotations) is a deterministic function of the seed.
        image_size: (height, width) of every image.

    Returns:
        A summary: root, n_images, image_size, categories (name -> count), partition
        (name -> count), signal_attributes (name -> type) and seconds.

    Example:
        >>> summary = synth_deepfashion("/tmp/synth_df", n=50)  # doctest: +SKIP
        >>> read_deepfashion("/tmp/synth_df").attributes.shape  # doctest: +SKIP
        (50, 1000)
    """
    start = time.perf_counter()
    out = Path(out)
    records = synth_plan(n, seed, image_size)
    for rec in records:
        path = out / rec.name
        path.parent.mkdir(parents=True, exist_ok=True)
        _draw_garment(rec, image_size).save(path, quality=90)
    _write_annotations(out, records)
    cat_names = [name for name, _ in synth_categories()]
    counts = lambda xs: {k: xs.count(k) for k in sorted(set(xs))}  # noqa: E731
    return {
        "root": str(out), "n_images": n, "image_size": tuple(image_size),
        "categories": counts([cat_names[r.category] for r in records]),
        "partition": counts([r.partition for r in records]),
        "signal_attributes": dict(SIGNAL_ATTRIBUTES), "seconds": round(time.perf_counter() - start, 3),
    }  # fmt: skip
