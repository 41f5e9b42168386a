"""COCO run-length encoding (RLE) of binary masks, in pure numpy.

A mask of size H x W is read in column-major (Fortran) order and written as the lengths of its
alternating runs, the first run counting zeros (so a mask starting with a 1 starts with a 0-run of
length 0). COCO's *compressed* form writes each count ``x`` (after replacing ``x`` by ``x -
counts[i - 2]`` for ``i > 2``) as 5-bit groups, lowest first, each group as one character
``48 + group`` with 0x20 set while more groups follow; the last group's 0x10 bit is the sign. The
strings are byte for byte those of ``pycocotools.mask.encode``.

Example:
    >>> rle = encode_rle(np.array([[0, 1], [1, 1]], bool))
    >>> rle
    {'size': [2, 2], 'counts': '13'}
    >>> decode_rle(rle).astype(int).tolist()
    [[0, 1], [1, 1]]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fashionlens.errors import FashionlensError

_MAX_GROUPS = 7  # 5-bit groups of a count: 32-bit values and their (signed) deltas fit in 7


class RLEError(FashionlensError, ValueError):
    """A mask or an RLE that cannot be encoded or decoded; the message says what was expected."""


def _runs(mask: np.ndarray) -> np.ndarray:
    """The alternating run lengths of a mask in Fortran order, the first run counting zeros."""
    flat = mask.ravel(order="F")
    if not flat.size:
        return np.zeros(1, np.int64)  # one empty 0-run, as the COCO mask API writes an empty mask
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(edges)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return runs


def _compress(counts: np.ndarray) -> str:
    """COCO's compressed string of run lengths (``rleToString`` of the COCO mask API)."""
    if not counts.size:
        return ""
    x = counts.astype(np.int64)
    if x.size > 3:
        x[3:] = x[3:] - counts[1:-2]
    shifts = 5 * np.arange(_MAX_GROUPS, dtype=np.int64)
    rest = x[:, None] >> shifts  # arithmetic shifts: the value left before each group
    groups = rest & 0x1F
    after = rest >> 5  # the value left after each group
    more = np.where(groups & 0x10, after != -1, after != 0)
    n_chars = np.argmin(more, axis=1) + 1  # the first group after which nothing more follows
    chars = (groups | (more.astype(np.int64) << 5)) + 48
    keep = np.arange(_MAX_GROUPS)[None, :] < n_chars[:, None]
    return chars[keep].astype(np.uint8).tobytes().decode("ascii")


def _decompress(text: str | bytes) -> np.ndarray:
    """The run lengths of a COCO compressed string (``rleFrString`` of the COCO mask API)."""
    if isinstance(text, str):
        if not text.isascii():
            where, char = next((i, ch) for i, ch in enumerate(text) if not ch.isascii())
            raise RLEError(
                f"RLE counts: expected characters '0'..'o' (ASCII 48..111), found {char!r} "
                f"at position {where}"
            )
        text = text.encode("ascii")
    raw = bytes(text)
    c = np.frombuffer(raw, np.uint8).astype(np.int64) - 48
    if not c.size:
        return np.zeros(0, np.int64)
    bad = np.flatnonzero((c < 0) | (c > 63))
    if bad.size:
        where = int(bad[0])
        raise RLEError(
            f"RLE counts: expected characters '0'..'o' (ASCII 48..111), found {raw[where:where + 1]!r} "
            f"at position {where}"
        )
    last = (c & 0x20) == 0  # a character without the continuation bit ends a count
    if not last[-1]:
        raise RLEError("RLE counts: the string ends inside a count (its last character has the 0x20 bit set)")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    position = np.arange(c.size) - np.repeat(starts, ends - starts + 1)  # group index within its count
    if position.max() >= _MAX_GROUPS:
        raise RLEError(f"RLE counts: expected at most {_MAX_GROUPS} characters per count, found more")
    x = np.add.reduceat((c & 0x1F) << (5 * position), starts)
    negative = (c[ends] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * (ends - starts + 1))), x)
    # counts[i] = x[i] + counts[i - 2] for i > 2: a running sum over each parity from index 1 and 2
    counts = x.copy()
    counts[1::2] = np.cumsum(x[1::2])
    if x.size > 2:
        counts[2::2] = np.cumsum(x[2::2])
    return counts


def _size(rle: Mapping) -> tuple[int, int]:
    size = rle["size"]
    try:
        h, w = (int(v) for v in size)
        ok = [h, w] == list(size) and h >= 0 and w >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise RLEError(f"RLE size: expected [height, width], two non-negative integers, found {size!r}")
    return h, w


def _counts(rle: Mapping) -> np.ndarray:
    counts = rle["counts"]
    if isinstance(counts, str | bytes | bytearray):
        return _decompress(counts)
    try:
        values = np.asarray(counts)
    except (TypeError, ValueError):  # a ragged or otherwise unreadable sequence
        values = np.zeros((0, 0))
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise RLEError(
            "RLE counts: expected a compressed string or a list of integer run lengths, "
            f"found {type(counts).__name__}"
        )
    return values.astype(np.int64)


def _checked(rle: Mapping) -> tuple[int, int, np.ndarray]:
    """The size and run lengths of an RLE, checked: non-negative runs summing to H * W."""
    if not isinstance(rle, Mapping):
        raise RLEError(f"RLE: expected a mapping with 'size' and 'counts', found {type(rle).__name__}")
    missing = [key for key in ("size", "counts") if key not in rle]
    if missing:
        raise RLEError(f"RLE: expected the keys 'size' and 'counts', missing {', '.join(map(repr, missing))}")
    h, w = _size(rle)
    counts = _counts(rle)
    if counts.size and counts.min() < 0:
        raise RLEError(f"RLE counts: expected non-negative run lengths, found {int(counts.min())}")
    if int(counts.sum()) != h * w:
        raise RLEError(
            f"RLE counts: expected run lengths summing to {h} * {w} = {h * w} pixels, "
            f"found {int(counts.sum())}"
        )
    return h, w, counts


def decode_rle(rle: Mapping) -> np.ndarray:
    """The mask of a COCO RLE.

    Args:
        rle: ``{"size": [H, W], "counts": ...}``, the counts a compressed string (``str`` or
            ``bytes``, as ``pycocotools`` writes them) or a list of run lengths (uncompressed RLE).

    Returns:
        A bool array of shape (H, W).

    Raises:
        RLEError: not a mapping, a missing key, a bad size, bad characters, negative counts, or
            counts that do not sum to H * W.
    """
    h, w, counts = _checked(rle)
    values = np.zeros(counts.size, bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape((w, h)).T.copy()


def encode_rle(mask: np.ndarray) -> dict:
    """The COCO compressed RLE of a 2-D mask.

    Args:
        mask: (H, W) bool or 0/1 array (any non-zero value counts as 1).

    Returns:
        ``{"size": [H, W], "counts": str}``, the counts string equal to
        ``pycocotools.mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()``.

    Raises:
        RLEError: the mask is not 2-D.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise RLEError(f"RLE: expected a 2-D (H, W) mask, found shape {mask.shape}")
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": _compress(_runs(mask if mask.dtype == bool else mask != 0))}


def rle_area(rle: Mapping) -> int:
    """The number of 1-pixels of a COCO RLE (compressed or not), without decoding the mask.

    Raises:
        RLEError: as :func:`decode_rle`.
    """
    return int(_checked(rle)[2][1::2].sum())
