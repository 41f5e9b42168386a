"""Clothing landmarks and colours derived from a garment's pixel mask (a proxy for hand-made annotations).

Given a Clothing Co-Parsing mask (one label id per pixel), one garment label's region ``G`` and the
``skin`` region, :func:`derive_landmarks` places DeepFashion's landmarks by geometry:

- **collar** (upper and full body): the two ends of the neckline, the stretch of ``G``'s top edge that
  has skin just above it (the neck), taking the blob nearest the garment's centre line;
- **sleeve**: on each side of the centre line, the point of ``G`` touching skin (a hand, a forearm,
  an armhole) that lies farthest from the collar, leaving out the neckline and the legs below the hem;
- **hem** (upper): the two ends of the torso's last row, following the run of ``G`` that holds the
  centre line down from mid-height; (lower and full body): on each side of the centre line, the
  outer end of that side's lowest row: the corners of the lower boundary;
- **waistline** (lower): the two ends of ``G``'s row 3 % below its top; (full body): the two ends of
  the torso run at its narrowest row between 25 % and 55 % of the height.

Left and right follow DeepFashion's convention, which is the *image's* left and right: in its
released ``list_landmarks.txt`` the first row's "left collar" is at x = 146 and its "right collar" at
x = 173 (a front-facing blouse; "left sleeve" x = 94, "right sleeve" x = 205). So "left" is the
point with the smaller x, whichever way the person faces, and mirroring a photo and its mask mirrors
every point and swaps each left/right pair (:data:`fashionlens.data.landmark_transforms.FLIP_PAIRS`).
Every choice is symmetric (ties broken the same way on both sides) so that this holds exactly.

Visibility follows DeepFashion: 0 visible (found on the evidence above), 1 occluded (no evidence:
e.g. no skin at the neck, so the collar is placed on the top edge at +-15 % of the width from the
centre line, or a waistline covered by the garment above it), 2 cut off (the point lies on the photo
border) or absent for the clothes type. Training uses code 0 only.

Colours (:func:`garment_colours`): each pixel of the garment, eroded by 2 pixels to leave out blended
edges, is named by a fixed HSV rule (:func:`colour_names`); a colour covering at least 25 % of the
pixels is present (1), one under 5 % absent (-1), anything between is unknown (0), and a garment
with fewer than 200 such pixels is unknown in every colour.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fashionlens.colours import COLOURS, PRESENT_SHARE, colour_names  # shared with inference

# CCP garment labels with a DeepFashion clothes type (1 upper, 2 lower, 3 full body). Chosen from
# what the masks cover: "suit" marks a suit's jacket in CCP, "bodysuit" a one-piece from neck to legs
# (jumpsuits, leotards), "cape" and "vest" are outer layers of the torso. Accessories, footwear,
# legwear (socks, stockings, tights) and underwear (bra, panties, intimate, swimwear) get none.
CLOTHES_TYPES: dict[str, int] = {
    **dict.fromkeys(("blazer", "blouse", "cape", "cardigan", "coat", "hoodie", "jacket", "jumper", "shirt",
                     "suit", "sweater", "sweatshirt", "t-shirt", "top", "vest"), 1),
    **dict.fromkeys(("jeans", "leggings", "pants", "shorts", "skirt"), 2),
    **dict.fromkeys(("bodysuit", "dress", "romper"), 3),
}  # fmt: skip

L_COLLAR, R_COLLAR, L_SLEEVE, R_SLEEVE, L_WAIST, R_WAIST, L_HEM, R_HEM = range(8)
VISIBLE, OCCLUDED, CUT_OFF = 0, 1, 2

ABSENT_SHARE, MIN_COLOUR_PIXELS = 0.05, 200


class _Points:
    """The 8 slots being filled: (x, y) pixel indices and DeepFashion visibility codes."""

    def __init__(self) -> None:
        self.xy = np.zeros((8, 2), dtype=np.float64)
        self.vis = np.full(8, CUT_OFF, dtype=np.int8)

    def set(self, slot: int, point: tuple[float, float] | None, vis: int) -> None:
        if point is not None:
            self.xy[slot] = point
            self.vis[slot] = vis


def _side_extreme(ys: np.ndarray, xs: np.ndarray, side: str, lowest: bool = False) -> tuple[float, float]:
    """Leftmost (or rightmost) pixel; ties go to the topmost (or the lowest), the same rule on both sides."""
    x = xs.min() if side == "left" else xs.max()
    return float(x), float(ys[xs == x].max() if lowest else ys[xs == x].min())


def _farthest(ys: np.ndarray, xs: np.ndarray, origin: tuple[float, float]) -> tuple[float, float]:
    """The pixel farthest from ``origin``; ties go to the topmost, then the one farthest from x = origin."""
    d2 = (xs - origin[0]) ** 2 + (ys - origin[1]) ** 2
    best = d2 == d2.max()
    y = ys[best].min()
    row = best & (ys == y)
    dx = np.abs(xs[row] - origin[0])
    return float(xs[row][dx.argmax()]), float(y)


def _row_runs(row: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) columns, both inclusive, of the True runs of a 1-D boolean row."""
    padded = np.concatenate([[False], row, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _body_runs(row: np.ndarray, person: np.ndarray) -> list[tuple[int, int]]:
    """Runs of a garment row, joined across gaps the person fills (the shirt between an open coat's
    panels)."""
    runs = _row_runs(row)
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and person[merged[-1][1] + 1 : a].all():
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _run_at(row: np.ndarray, person: np.ndarray, cx: float) -> tuple[int, int] | None:
    """The body run of ``row`` holding column ``cx`` (or, when none does, the one nearest to it)."""
    runs = _body_runs(row, person)
    if not runs:
        return None
    return min(
        runs,
        key=lambda r: (
            0.0 if r[0] <= cx <= r[1] else min(abs(r[0] - cx), abs(r[1] - cx)),
            r[0] + r[1] - 2 * cx,
        ),
    )


def _torso_runs(
    g: np.ndarray, person: np.ndarray, cx: float, start: int, stop: int
) -> dict[int, tuple[int, int]]:
    """The torso's span per row, from row ``start`` down to ``stop`` (exclusive).

    It starts at the body run holding the centre line; below, it is the span of every body run that
    overlaps the span of the row above, so the two panels of an open coat stay one torso after the
    legs part them, and a sleeve hanging free of the torso stays out.
    """
    runs: dict[int, tuple[int, int]] = {}
    prev = None
    for y in range(start, stop):
        if prev is None:
            run = _run_at(g[y], person[y], cx)
        else:
            touching = [r for r in _body_runs(g[y], person[y]) if r[1] >= prev[0] and r[0] <= prev[1]]
            run = (min(r[0] for r in touching), max(r[1] for r in touching)) if touching else None
        if run is None:
            break  # the torso ended
        runs[y] = prev = run
    return runs


def _clean(g: np.ndarray) -> np.ndarray:
    """Drop connected specks under 5 % of the region (stray brush strokes of the annotation)."""
    labels, n = ndimage.label(g)
    if n <= 1:
        return g
    sizes = ndimage.sum_labels(g, labels, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= 0.05 * sizes.max()) + 1
    return np.isin(labels, keep)


def _face_skin(skin: np.ndarray, min_pixels: int) -> np.ndarray:
    """The skin component holding the person's topmost skin (face and neck; shoulders when bare)."""
    labels, n = ndimage.label(skin)
    if not n:
        return np.zeros_like(skin)
    sizes = ndimage.sum_labels(skin, labels, index=np.arange(1, n + 1))
    big = np.flatnonzero(sizes >= min_pixels**2) + 1  # ignore specks
    if not big.size:
        return np.zeros_like(skin)
    tops = ndimage.minimum(
        np.arange(skin.shape[0])[:, None] * np.ones_like(skin, dtype=np.int64), labels, big
    )
    return labels == big[int(np.argmin(tops))]


def _leg_skin(skin: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Skin components reaching the person's lowest 30 %: legs and feet (hands hang no lower than
    mid-thigh)."""
    rows = np.flatnonzero(person.any(axis=1))
    if not rows.size or not skin.any():
        return np.zeros_like(skin)
    cut = rows[0] + 0.7 * (rows[-1] - rows[0] + 1)
    labels, n = ndimage.label(skin)
    lowest = ndimage.maximum(
        np.arange(skin.shape[0])[:, None] * np.ones_like(skin, dtype=np.int64), labels, np.arange(1, n + 1)
    )
    legs = np.flatnonzero(np.asarray(lowest) >= cut) + 1
    return np.isin(labels, legs)


class _Geometry:
    """Measurements of one garment region shared by the landmark rules."""

    def __init__(self, g: np.ndarray, skin: np.ndarray, person: np.ndarray):
        self.g = g
        self.person = person | g
        self.ys, self.xs = np.nonzero(g)
        self.top, self.bottom = int(self.ys.min()), int(self.ys.max())
        self.left, self.right = int(self.xs.min()), int(self.xs.max())
        self.h = self.bottom - self.top + 1
        self.w = self.right - self.left + 1
        self.reach = max(2, round(0.015 * max(g.shape)))  # "touching" = within 1.5 % of the photo size
        face = _face_skin(skin, self.reach)
        # a cuff touches a hand or an arm: never a leg, nor the face and neck (an inner layer's top edge
        # touches the neck while its sleeves are hidden under a coat)
        arms = skin & ~_leg_skin(skin, self.person) & ~face
        self.skin_near = (
            ndimage.distance_transform_edt(~arms) <= self.reach if arms.any() else np.zeros_like(skin)
        )
        above = np.zeros_like(skin)
        for k in range(1, self.reach + 1):
            above[k:] |= face[:-k]
        self.skin_above = above  # pixels with the face's skin (the neck) just above them

    def band(self, lo: float, hi: float) -> np.ndarray:
        """Pixels of G whose row lies between ``lo`` and ``hi`` of the height (fractions from the top)."""
        return (self.ys >= self.top + lo * self.h) & (self.ys <= self.top + hi * self.h)

    def centre(self, lo: float, hi: float) -> float:
        """The person's centre line at these rows of G: the median column of the person within G's columns."""
        rows = self.person[
            int(self.top + lo * self.h) : int(self.top + hi * self.h) + 1, self.left : self.right + 1
        ]
        _, xs = np.nonzero(rows)
        return float(self.left + np.median(xs)) if xs.size else float(np.median(self.xs))


def _collar(geo: _Geometry, cx: float, pts: _Points) -> tuple[float, float]:
    """Collar ends; returns the neckline's midpoint (the origin the sleeve rule measures from)."""
    zone = np.zeros_like(geo.g)
    y_hi = geo.top + 0.35 * geo.h
    cols = np.abs(np.arange(geo.g.shape[1]) - cx) < 0.3 * geo.w
    zone[geo.top : int(y_hi) + 1] = cols
    neck = geo.g & geo.skin_above & zone
    labels, n = ndimage.label(neck, structure=np.ones((3, 3)))
    if n:
        centres = ndimage.center_of_mass(neck, labels, range(1, n + 1))
        blob = 1 + min(range(n), key=lambda k: (abs(centres[k][1] - cx), centres[k][0]))
        ys, xs = np.nonzero(labels == blob)
        left, right = _side_extreme(ys, xs, "left"), _side_extreme(ys, xs, "right")
        pts.set(L_COLLAR, left, VISIBLE)
        pts.set(R_COLLAR, right, VISIBLE)
    else:  # no skin at the neck (hair, a scarf, a high collar, a back view): the top edge near the centre
        ends = []
        for slot, x in ((L_COLLAR, np.floor(cx - 0.15 * geo.w)), (R_COLLAR, np.ceil(cx + 0.15 * geo.w))):
            col = np.flatnonzero(geo.g[:, int(np.clip(x, 0, geo.g.shape[1] - 1))])
            if col.size:
                ends.append((float(x), float(col.min())))
                pts.set(slot, ends[-1], OCCLUDED)
        if len(ends) < 2:
            return cx, float(geo.top)
        left, right = ends
    return (left[0] + right[0]) / 2, (left[1] + right[1]) / 2


def _sleeves(geo: _Geometry, cx: float, neck: tuple[float, float], legs: np.ndarray, pts: _Points) -> None:
    """On each side, the skin-touching pixel of G farthest from the neckline (else a guess, occluded)."""
    hem = pts.vis[[L_HEM, R_HEM]] < CUT_OFF
    torso = (pts.xy[L_HEM, 0], pts.xy[R_HEM, 0]) if hem.all() else (cx, cx)
    ys, xs = geo.ys, geo.xs
    near_neck = (ys < neck[1] + 0.1 * geo.h) & (np.abs(xs - cx) < 0.3 * geo.w)
    touching = geo.skin_near[ys, xs] & ~near_neck & ~legs
    for slot, side in ((L_SLEEVE, xs < cx), (R_SLEEVE, xs > cx)):
        sel = touching & side
        if sel.any():
            pts.set(slot, _farthest(ys[sel], xs[sel], neck), VISIBLE)
            continue
        sel = side & ~legs & (np.abs(xs - cx) > 0.1 * geo.w) & ((xs < torso[0]) | (xs > torso[1]))
        if sel.any():  # no skin: the farthest point on that side outside the torso's columns, a guess
            pts.set(slot, _farthest(ys[sel], xs[sel], neck), OCCLUDED)


def _upper_hem(geo: _Geometry, cx: float, pts: _Points) -> np.ndarray:
    """The torso's bottom corners; returns the mask (over G's pixels) of the legs below the hem.

    A hem is rarely one flat row (it curves, slants, or an open coat's panels end apart), so each
    corner is the end of a torso row that is lowest and outermost at once: the maximum of
    2 * depth / height + outwardness / width over the lower half's rows.
    """
    runs = _torso_runs(geo.g, geo.person, cx, int(geo.top + 0.5 * geo.h), geo.bottom + 1)
    if not runs:
        return np.zeros(len(geo.ys), dtype=bool)
    rows = np.array(sorted(runs), dtype=np.float64)
    ends = np.array([runs[int(y)] for y in rows], dtype=np.float64)  # (R, 2) left and right ends
    depth = 2 * (rows - geo.top) / geo.h
    left = int(np.argmax(depth - (ends[:, 0] - geo.left) / geo.w))
    right = int(np.argmax(depth + (ends[:, 1] - geo.left) / geo.w))
    pts.set(L_HEM, (ends[left, 0], rows[left]), VISIBLE)
    pts.set(R_HEM, (ends[right, 1], rows[right]), VISIBLE)
    y = min(rows[left], rows[right])
    return (geo.ys > y - 0.1 * geo.h) & (geo.xs >= ends[left, 0]) & (geo.xs <= ends[right, 1])


def _lower_hem(geo: _Geometry, cx: float, pts: _Points) -> None:
    """Outer end of each side's lowest row (a skirt's corners, a trouser leg's outer cuff)."""
    for slot, side, name in ((L_HEM, geo.xs < cx, "left"), (R_HEM, geo.xs > cx, "right")):
        if not side.any():
            continue
        y = geo.ys[side].max()
        sel = side & (geo.ys >= y - max(1.0, 0.02 * geo.h))
        pts.set(slot, _side_extreme(geo.ys[sel], geo.xs[sel], name, lowest=True), VISIBLE)


def _waist_lower(geo: _Geometry, others: np.ndarray, pts: _Points) -> float:
    """Ends of the row 3 % below the top; occluded when another garment lies just above it."""
    y = int(round(geo.top + 0.03 * geo.h))
    while not geo.g[y].any():  # a gap in the mask: the nearest row above with pixels
        y -= 1
    runs = _body_runs(geo.g[y], geo.person[y])
    a, b = max(runs, key=lambda r: (r[1] - r[0], -abs(r[0] + r[1] - geo.left - geo.right)))
    above = others[max(0, geo.top - geo.reach) : geo.top, a : b + 1]
    vis = OCCLUDED if above.size and above.mean() > 0.5 else VISIBLE
    pts.set(L_WAIST, (float(a), float(y)), vis)
    pts.set(R_WAIST, (float(b), float(y)), vis)
    return (a + b) / 2


def _waist_full(geo: _Geometry, cx: float, pts: _Points) -> float:
    """Ends of the torso at its narrowest row between 25 % and 55 % of the height; returns that row."""
    runs = _torso_runs(geo.g, geo.person, cx, int(geo.top + 0.25 * geo.h), int(geo.top + 0.55 * geo.h) + 1)
    if not runs:
        return geo.top + 0.4 * geo.h
    y = min(runs, key=lambda r: (runs[r][1] - runs[r][0], r))
    pts.set(L_WAIST, (float(runs[y][0]), float(y)), VISIBLE)
    pts.set(R_WAIST, (float(runs[y][1]), float(y)), VISIBLE)
    return float(y)


def derive_landmarks(garment: np.ndarray, skin: np.ndarray, clothes_type: int,
                     others: np.ndarray | None = None,
                     person: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Landmarks of one garment from its mask, in the 8 fixed DeepFashion slots.

    Args:
        garment: (H, W) bool, the garment's pixels in the photo.
        skin: (H, W) bool, the person's skin (CCP's ``skin`` label).
        clothes_type: 1 upper, 2 lower, 3 full body.
        others: (H, W) bool, other upper or full-body garments (they may cover a lower garment's
            waistline); default none.
        person: (H, W) bool, every labelled pixel of the person (not background): a garment's
            runs are joined across what the person fills between them; default the garment alone.

    Returns:
        ``(points, visibility)``: (8, 2) float64 (x, y) pixel indices in the photo (0 in slots the
        type does not have) and (8,) int8 DeepFashion codes (0 visible, 1 occluded, 2 cut off or absent).

    Raises:
        ValueError: an empty garment mask, mismatched shapes, or an unknown clothes type.
    """
    if clothes_type not in (1, 2, 3):
        raise ValueError(f"clothes_type must be 1 (upper), 2 (lower) or 3 (full body), got {clothes_type}")
    if any(a is not None and a.shape != garment.shape for a in (skin, others, person)):
        raise ValueError(
            f"garment, skin, others and person must have the same shape, got {garment.shape}, {skin.shape}"
        )
    g = _clean(np.asarray(garment, dtype=bool))
    if not g.any():
        raise ValueError("the garment mask is empty")
    geo = _Geometry(
        g, np.asarray(skin, dtype=bool) & ~g, g if person is None else np.asarray(person, dtype=bool)
    )
    pts = _Points()
    if clothes_type == 2:
        cx = _waist_lower(geo, np.zeros_like(g) if others is None else np.asarray(others, bool) & ~g, pts)
        _lower_hem(geo, cx, pts)
    else:
        cx = geo.centre(0.2, 0.5)
        neck = _collar(geo, cx, pts)
        if clothes_type == 1:
            legs = _upper_hem(geo, cx, pts)
        else:
            waist_y = _waist_full(geo, cx, pts)
            _lower_hem(geo, cx, pts)
            legs = geo.ys > waist_y + 0.2 * geo.h  # a skirt's hem touches legs, not hands
        _sleeves(geo, cx, neck, legs, pts)
        if clothes_type == 3 and pts.vis[L_COLLAR] == OCCLUDED:
            # a dress whose neckline is hidden is covered above (a coat, a sweater): its visible top is
            # not its waist, and the hands it touches are not at its sleeves
            for slot in (L_SLEEVE, R_SLEEVE, L_WAIST, R_WAIST):
                if pts.vis[slot] == VISIBLE:
                    pts.vis[slot] = OCCLUDED
    _mark_cut_off(pts, g.shape)
    return pts.xy, pts.vis


def _mark_cut_off(pts: _Points, shape: tuple[int, int]) -> None:
    """A point on the photo's border belongs to a garment the photo cuts off."""
    h, w = shape
    x, y = pts.xy[:, 0], pts.xy[:, 1]
    on_border = (x <= 1) | (y <= 1) | (x >= w - 2) | (y >= h - 2)
    pts.vis[(pts.vis != CUT_OFF) & on_border] = CUT_OFF


# ----------------------------------------------------------------------------- colours


def garment_colours(photo: np.ndarray, garment: np.ndarray) -> np.ndarray:
    """DeepFashion-style colour attributes of a garment: (len(COLOURS),) int8 of 1 / -1 / 0 (unknown).

    Args:
        photo: (H, W, 3) uint8 RGB.
        garment: (H, W) bool.
    """
    inner = ndimage.binary_erosion(garment, iterations=2)
    out = np.zeros(len(COLOURS), dtype=np.int8)
    if inner.sum() < MIN_COLOUR_PIXELS:
        return out
    share = np.bincount(colour_names(photo[inner]), minlength=len(COLOURS)) / inner.sum()
    out[share >= PRESENT_SHARE] = 1
    out[share < ABSENT_SHARE] = -1
    return out
