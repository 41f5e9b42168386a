"""Garment instances from a per-pixel garment-group label map.

The rule, per garment group (a group whose name is in ``garment_groups``; background, skin and hair
are not garments):

1. **Join.** The group's pixels form 8-connected regions (:func:`scipy.ndimage.label`); regions
   closer than ``merge_radius`` x the photo's diagonal (the gap between their nearest pixels, about
   20 px on a 550 x 830 photo at the default 0.02) are joined into one instance, so a top cut in two
   by an arm or a bag strap is one garment. The join is a dilation by a disk of half that radius,
   done on a grid of ``merge_radius x diagonal / 8`` px cells (3 px at the default), before
   labelling; the distance holds to within about one cell (measured at the default on 550 x 830:
   gaps up to 20 px are joined, gaps of 24 px or more never). The instance's mask is the group's own
   pixels inside its dilated component; ``merge_radius=0`` gives the plain 8-connected regions.
2. **Drop fragments.** An instance with fewer than ``min_fraction`` x H x W pixels is dropped, and
   one smaller than ``min_share`` x the group's largest instance (default 0: none).
3. **Pairs.** A group named in ``pairs`` (shoes) is one garment per photo: all its kept instances
   together (a pair of shoes is one "shoes" garment, its box spanning both).

Each garment's ``score`` is the mean of ``probs[group]`` over its pixels when the per-group
probabilities are given, else 1.0. Garments come sorted by area, largest first.

Example:
    >>> labels = np.zeros((10, 10), int)
    >>> labels[1:4, 1:4] = 1; labels[6:9, 6:9] = 1; labels[5:, :3] = 2
    >>> found = garments_from_labels(labels, ["background", "shoes", "skirt"], ["shoes", "skirt"],
    ...                              merge_radius=0)
    >>> [(g.label, g.box, g.area) for g in found]
    [('shoes', (1, 1, 9, 9), 18), ('skirt', (0, 5, 3, 10), 15)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from fashionlens.errors import FashionlensError

_CELLS_PER_RADIUS = 8  # the join grid's cell is merge_radius x diagonal / 8 px
_EIGHT = np.ones((3, 3), bool)  # 8-connectivity


class GarmentError(FashionlensError, ValueError):
    """A label map, probabilities or setting that :func:`garments_from_labels` cannot use; the message
    says what was expected."""


@dataclass(eq=False)
class Garment:
    """One garment of a photo.

    Attributes:
        label: the garment group's name.
        group: its index into the group names.
        score: the mean probability of the group over the garment's pixels (1.0 without probabilities).
        box: (x0, y0, x1, y1) in pixels, x1 and y1 exclusive (width = x1 - x0).
        mask: (H, W) bool, the garment's pixels in the label map.
        area: the number of pixels of ``mask``.
    """

    label: str
    group: int
    score: float
    box: tuple[int, int, int, int]
    mask: np.ndarray = field(repr=False)
    area: int

    @property
    def fraction(self) -> float:
        """The garment's share of the photo's pixels, ``area / (H * W)``."""
        return self.area / self.mask.size if self.mask.size else 0.0


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """The intersection over union of two (x0, y0, x1, y1) boxes with exclusive x1, y1 (0.0 when both
    are empty)."""
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
    union = max(0, ax1 - ax0) * max(0, ay1 - ay0) + max(0, bx1 - bx0) * max(0, by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0


def _check(labels: np.ndarray, names: Sequence[str], garment_groups: Sequence[str], probs,
           min_fraction: float, merge_radius: float) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    labels = np.asarray(labels)
    if labels.ndim != 2 or (labels.size and labels.dtype.kind not in "iu"):
        raise GarmentError(
            f"labels: expected a 2-D (H, W) integer map of group indices, found {labels.dtype} "
            f"of shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise GarmentError(
            f"labels: expected group indices in 0..{len(names) - 1} (one per name), found values "
            f"{labels.min()}..{labels.max()}"
        )
    unknown = [g for g in garment_groups if g not in names]
    if unknown:
        raise GarmentError(
            f"garment_groups: {unknown} are not group names; expected names among {list(names)}"
        )
    if not 0 <= min_fraction <= 1:
        raise GarmentError(f"min_fraction: expected a fraction in [0, 1], found {min_fraction!r}")
    if not (merge_radius >= 0 and math.isfinite(merge_radius)):
        raise GarmentError(f"merge_radius: expected a finite fraction >= 0, found {merge_radius!r}")
    if probs is not None:
        probs = np.asarray(probs)
        if probs.shape != (len(names), *labels.shape):
            raise GarmentError(
                f"probs: expected shape (K, H, W) = {(len(names), *labels.shape)}, found {probs.shape}"
            )
    return labels, probs


def _dilate(cells: np.ndarray, radius: float) -> np.ndarray:
    """A binary dilation by the disk ``dx**2 + dy**2 <= radius**2``, the result padded by the disk's reach
    on every side (ORs of shifted slices: fast)."""
    k = int(radius)
    h, w = cells.shape
    across = np.zeros((h, w + 2 * k), bool)  # across[:, k + j] = some cell in the row within +-a of j
    across[:, k:k + w] = cells
    widths = {dy: int(math.sqrt(radius * radius - dy * dy)) for dy in range(-k, k + 1)}
    by_width = {0: across.copy()}
    for a in range(1, max(widths.values()) + 1):
        wider = by_width[a - 1].copy()
        wider[:, a:] |= across[:, :-a]
        wider[:, :-a] |= across[:, a:]
        by_width[a] = wider
    out = np.zeros((h + 2 * k, w + 2 * k), bool)
    for dy, a in widths.items():
        out[k + dy:k + dy + h] |= by_width[a]
    return out


def _pool(pixels: np.ndarray, cell: int) -> np.ndarray:
    """Which ``cell`` x ``cell`` blocks of a mask hold a pixel (an OR of strided slices: fast)."""
    h, w = pixels.shape
    hc, wc = -(-h // cell), -(-w // cell)
    rows = np.zeros((hc, w), bool)
    for i in range(cell):
        part = pixels[i::cell]
        rows[:part.shape[0]] |= part
    cells = np.zeros((hc, wc), bool)
    for j in range(cell):
        part = rows[:, j::cell]
        cells[:, :part.shape[1]] |= part
    return cells


def _join(pixels: np.ndarray, cell: int, radius_cells: float) -> tuple[np.ndarray | None, int]:
    """The instances of one group's pixels (a crop): an int map (0 off the pixels; None when there is one
    instance, all the pixels) and their count."""
    if radius_cells <= 0:
        instances, n = ndimage.label(pixels, structure=_EIGHT)
        return (None, 1) if n == 1 else (instances, n)
    cells, n = ndimage.label(_dilate(_pool(pixels, cell), radius_cells), structure=_EIGHT)
    if n == 1:
        return None, 1
    h, w = pixels.shape
    k = int(radius_cells)  # the padding of the dilation
    instances = cells[k:cells.shape[0] - k, k:cells.shape[1] - k].repeat(cell, axis=0)[:h]
    instances = instances.repeat(cell, axis=1)[:, :w]
    np.multiply(instances, pixels, out=instances)
    return instances, n


def garments_from_labels(
    labels: np.ndarray,
    names: Sequence[str],
    garment_groups: Sequence[str],
    probs: np.ndarray | None = None,
    min_fraction: float = 0.005,
    merge_radius: float = 0.02,
    pairs: Sequence[str] = ("shoes",),
    min_share: float = 0.0,
) -> list[Garment]:
    """The garments of a label map, by the module's rule (join, drop fragments, one garment per pair group).

    Args:
        labels: (H, W) integer map of group indices into ``names``.
        names: the group names, one per index.
        garment_groups: the names of the groups that are garments (each must be in ``names``).
        probs: (K, H, W) per-group probabilities, K = len(names), for the scores; None scores 1.0.
        min_fraction: an instance with fewer than this share of the photo's pixels is dropped.
        merge_radius: regions of a group closer than this share of the photo's diagonal are joined.
        pairs: group names that make at most one garment per photo (all their kept instances).
        min_share: an instance smaller than this share of its group's largest one is dropped.

    Returns:
        The garments, sorted by area, largest first.

    Raises:
        GarmentError: a map that is not 2-D integer, an index outside ``names``, an unknown garment
            group, a ``probs`` of the wrong shape, or a bad ``min_fraction`` / ``merge_radius``.
    """
    labels, probs = _check(labels, names, garment_groups, probs, min_fraction, merge_radius)
    if not labels.size:
        return []
    height, width = labels.shape
    min_pixels = min_fraction * labels.size
    radius = merge_radius * math.hypot(height, width)
    cell = max(1, math.ceil(radius / _CELLS_PER_RADIUS))
    radius_cells = radius / 2 / cell
    wanted = set(garment_groups)
    paired = set(pairs)
    found: list[Garment] = []
    for group, name in enumerate(names):
        if name not in wanted:
            continue
        pixels = labels == group
        total = int(np.count_nonzero(pixels))
        if not total or total < min_pixels:
            continue
        rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
        oy, ox = int(rows[0]), int(cols[0])
        crop = pixels[oy:rows[-1] + 1, ox:cols[-1] + 1]
        instances, n = _join(crop, cell, radius_cells)
        if instances is None:  # one instance: all the group's pixels
            parts = [(0, 0, crop.shape[0], crop.shape[1], crop, total)]
        else:
            areas = np.bincount(instances.ravel(), minlength=n + 1)
            floor = max(min_pixels, min_share * float(areas[1:].max()))
            kept = [k for k in range(1, n + 1) if areas[k] and areas[k] >= floor]
            boxes = ndimage.find_objects(instances, max_label=n)
            groups = [kept] if name in paired and kept else [[k] for k in kept]
            parts = []
            for ids in groups:
                y0, y1 = min(boxes[k - 1][0].start for k in ids), max(boxes[k - 1][0].stop for k in ids)
                x0, x1 = min(boxes[k - 1][1].start for k in ids), max(boxes[k - 1][1].stop for k in ids)
                sub = instances[y0:y1, x0:x1]
                own = sub == ids[0] if len(ids) == 1 else np.isin(sub, ids)
                parts.append((y0, x0, y1, x1, own, int(sum(areas[k] for k in ids))))
        for y0, x0, y1, x1, own, area in parts:
            if area < min_pixels:
                continue
            y0, y1, x0, x1 = oy + y0, oy + y1, ox + x0, ox + x1
            mask = np.zeros(labels.shape, bool)
            mask[y0:y1, x0:x1] = own
            score = 1.0 if probs is None else float(probs[group, y0:y1, x0:x1][own].mean())
            found.append(Garment(name, group, score, (x0, y0, x1, y1), mask, area))
    found.sort(key=lambda g: (-g.area, g.group, g.box))
    return found
