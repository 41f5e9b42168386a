"""DeepFashion Category and Attribute Prediction Benchmark: its conventions and a fast reader.

The benchmark itself is not distributed with fashionlens (non-commercial licence): users download
it and point :func:`read_deepfashion` at its root (``img/``, ``Anno/``, ``Eval/``). The file formats
are the benchmark's own (a row count, a header line, then one row per image);
:func:`fashionlens.data.synth.synth_deepfashion` writes a small synthetic data set in exactly the same layout.

The index is a struct of numpy arrays (289,222 images x 1000 attributes is 289 MB of int8), and
``list_attr_img.txt`` (about 870 MB of text) is parsed with vectorised byte operations.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from fashionlens.data.errors import DataFormatError
from fashionlens.errors import ConfigError

__all__ = ["ATTRIBUTE_TYPES", "CLOTHES_TYPE_SLOTS", "LANDMARK_NAMES", "DataFormatError", "DeepFashionIndex",
           "read_deepfashion"]  # fmt: skip

# The DeepFashion conventions, defined here once: 8 fixed landmark slots, the attribute types of
# list_attr_cloth.txt (1-based, as in the file), which slots each clothes type fills.
LANDMARK_NAMES = (
    "left_collar", "right_collar", "left_sleeve", "right_sleeve",
    "left_waistline", "right_waistline", "left_hem", "right_hem",
)  # fmt: skip
# 6 "colour" is fashionlens's own (the colours `data derive-landmarks` names are no DeepFashion type)
ATTRIBUTE_TYPES: dict[int, str] = {1: "texture", 2: "fabric", 3: "shape", 4: "part", 5: "style", 6: "colour"}
# Which of the 8 fixed slots each clothes type's landmarks fill, in file order.
CLOTHES_TYPE_SLOTS = {1: (0, 1, 2, 3, 6, 7), 2: (4, 5, 6, 7), 3: (0, 1, 2, 3, 4, 5, 6, 7)}
PARTITIONS = ("train", "val", "test")
ANNO_FILES = {
    "category_cloth": "Anno/list_category_cloth.txt",
    "category_img": "Anno/list_category_img.txt",
    "attr_cloth": "Anno/list_attr_cloth.txt",
    "attr_img": "Anno/list_attr_img.txt",
    "bbox": "Anno/list_bbox.txt",
    "landmarks": "Anno/list_landmarks.txt",
    "partition": "Eval/list_eval_partition.txt",
}
_CHUNK_BYTES = 4 << 20  # rows are read and parsed in pieces of about this size


@dataclass
class DeepFashionIndex:
    """All annotations of (a partition of) DeepFashion, one row per image (N rows).

    Attributes:
        image_names: (N,) object array of paths relative to the root, e.g. ``img/X/img_00000001.jpg``.
        category: (N,) int64, 0-based index into ``category_names``.
        category_names: (C,) names from ``list_category_cloth.txt`` (C = 50).
        category_types: (C,) int8, 1 upper / 2 lower / 3 full body.
        attributes: (N, A) int8, 1 present / -1 absent / 0 unknown (A = 1000).
        attribute_names: (A,) names (may contain spaces).
        attribute_types: (A,) int8, 1 texture / 2 fabric / 3 shape / 4 part / 5 style / 6 colour.
        bbox: (N, 4) int32, x1 y1 x2 y2 in pixels of the original image.
        clothes_type: (N,) int8, 1 upper / 2 lower / 3 full body (from ``list_landmarks.txt``).
        landmarks: (N, 8, 2) float32 x, y pixel indices in the original image, in the 8 slots of
            :data:`LANDMARK_NAMES`; 0 in slots the clothes type does not have.
        landmark_visibility: (N, 8) int8 DeepFashion code: 0 visible, 1 occluded, 2 cut off
            (also 2 for slots the clothes type does not have).
        landmark_visible: (N, 8) bool, code 0 only.
        partition: (N,) str, "train" / "val" / "test".
    """

    image_names: np.ndarray
    category: np.ndarray
    category_names: np.ndarray
    category_types: np.ndarray
    attributes: np.ndarray
    attribute_names: np.ndarray
    attribute_types: np.ndarray
    bbox: np.ndarray
    clothes_type: np.ndarray
    landmarks: np.ndarray
    landmark_visibility: np.ndarray
    landmark_visible: np.ndarray
    partition: np.ndarray

    _VOCAB_FIELDS = ("category_names", "category_types", "attribute_names", "attribute_types")

    def __len__(self) -> int:
        return len(self.image_names)

    def subset(self, mask_or_indices: np.ndarray | Sequence[int]) -> DeepFashionIndex:
        """Rows selected by a boolean mask (N,) or integer indices; vocabularies are kept whole."""
        sel = np.asarray(mask_or_indices)
        if sel.dtype != bool:
            sel = sel.astype(np.int64)
        kw = {
            f.name: getattr(self, f.name) if f.name in self._VOCAB_FIELDS else getattr(self, f.name)[sel]
            for f in fields(self)
        }
        return DeepFashionIndex(**kw)


# ----------------------------------------------------------------------------- list files


def _check_count(path: Path, first_line: str, n_rows: int | None) -> int:
    """Line 1 must be an integer equal to the number of (non-blank) rows; returns it."""
    text = first_line.strip(" \t\r\n\v\f")  # ASCII whitespace and digits only, like the rows
    if not (text.isascii() and text.isdigit()):
        raise DataFormatError(path, 1, f"expected the number of entries, found {text[:60]!r}")
    expected = int(text)
    if n_rows is not None and expected != n_rows:
        raise DataFormatError(path, 1, f"count line says {expected} entries, found {n_rows} rows")
    return expected


def _parse_rows(
    path: Path, parse_chunk: Callable[[list[bytes], list[int]], Any]
) -> tuple[list[str], list[Any], np.ndarray]:
    """Read ``name values...`` rows in chunks of about 64 MB.

    Returns the image names, ``parse_chunk(rests, linenos)`` of every chunk (``rests``: the text
    after each name, ending in a newline) and the 1-based line number of every row.
    """
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    names: list[str] = []
    outs, linenos = [], []
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", "replace")
        _check_count(path, first, None)
        f.readline()  # column names
        lineno = 3
        while lines := f.readlines(_CHUNK_BYTES):
            rests, rows = [], []
            for i, line in enumerate(lines, start=lineno):
                parts = line.split(None, 1)
                if parts:
                    names.append(_utf8(path, i, parts[0]))
                    rest = parts[1] if len(parts) == 2 else b"\n"
                    rests.append(rest if rest.endswith(b"\n") else rest + b"\n")
                    rows.append(i)
            lineno += len(lines)
            outs.append(parse_chunk(rests, rows))
            linenos += rows
    _check_count(path, first, len(names))
    return names, outs, np.asarray(linenos, dtype=np.int64)


def _utf8(path: Path, lineno: int, name: bytes) -> str:
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFormatError(path, lineno, f"{name[:60]!r} is not valid UTF-8") from None


_I32 = 1 << 31  # values must fit in int32 (numpy's fast parser silently clamps huge ones)


def _int_or_none(token: bytes) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def _fast_ints(rests: list[bytes], n_values: int) -> np.ndarray | None:
    """(rows, n_values) int64 if every row is exactly ``n_values`` integers, else None."""
    if not rests:
        return np.zeros((0, n_values), np.int64)
    buf = b"".join(rests)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            vals = np.fromstring(buf, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    b = np.frombuffer(buf, np.uint8)
    not_ws, newline = b > np.uint8(32), b == np.uint8(10)
    token_start = not_ws.copy()
    token_start[1:] &= ~not_ws[:-1]
    seq = newline[token_start | newline]  # per row: n_values False (its tokens), then True
    if vals.size != len(rests) * n_values or seq.size != len(rests) * (n_values + 1):
        return None
    if vals.size and not (-_I32 <= vals.min() and vals.max() < _I32):
        return None  # the slow path names the line
    return vals.reshape(len(rests), n_values) if seq.reshape(len(rests), -1)[:, -1].all() else None


def _sign_digits(rests: list[bytes], n_values: int) -> np.ndarray | None:
    """Fast path for attribute rows: exactly ``n_values`` tokens from {1, -1, 0}; else None.

    Works on the raw bytes (about 3,000 per row) with a handful of whole-array passes and one
    boolean compress. numpy compares much faster against ``np.uint8`` scalars than Python ints.
    """
    b = np.frombuffer(b"".join(rests), dtype=np.uint8)
    n_rows = len(rests)
    if not n_rows:
        return np.zeros((0, n_values), np.int8)
    u8 = np.uint8
    not_ws, minus, newline = b > u8(32), b == u8(45), b == u8(10)
    digit = (b - u8(48)) < u8(2)  # "0" or "1" (other bytes wrap around to >= 2)
    n_digits, n_minus = np.count_nonzero(digit), np.count_nonzero(minus)
    if np.count_nonzero(not_ws) != n_digits + n_minus:
        return None  # some other character
    # Tokens are "-"? digit: the only adjacent non-space pair allowed is ("-", digit), and every
    # "-" is followed by a digit.
    minus_digit = minus[:-1] & digit[1:]
    if np.count_nonzero(minus_digit) != n_minus or ((not_ws[:-1] & not_ws[1:]) != minus_digit).any():
        return None
    val = b.view(np.int8) - np.int8(48)  # 0 / 1 at the digits
    val[1:] -= (val[1:] & minus[:-1].view(np.int8)) << 1  # 1 after "-" -> -1
    val[newline] = 100  # row marker
    seq = val[digit | newline]  # (n_rows * (n_values + 1),): each row's values then its marker
    if seq.size != n_rows * (n_values + 1):
        return None
    seq = seq.reshape(n_rows, n_values + 1)
    if (seq[:, -1] != 100).any():
        return None  # some row has the wrong number of values
    return np.ascontiguousarray(seq[:, :n_values])


def _slow_ints(path: Path, rests: list[bytes], linenos: list[int], n_values: int | None, what: str,
               width: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Row by row, naming the first bad line. ``n_values`` None: any count up to ``width`` (zero-padded).

    Returns the (rows, n_values or width) int64 values and each row's token count.
    """
    out = np.zeros((len(rests), n_values or width), dtype=np.int64)
    lengths = np.zeros(len(rests), dtype=np.int64)
    for k, (rest, lineno) in enumerate(zip(rests, linenos, strict=True)):
        tokens = rest.split()
        if (n_values is not None and len(tokens) != n_values) or len(tokens) > out.shape[1]:
            want = n_values if n_values is not None else f"at most {width}"
            raise DataFormatError(
                path, lineno, f"expected {want} {what} after the image name, found {len(tokens)}"
            )
        values = [_int_or_none(t) for t in tokens]
        bad = next(
            (t for t, v in zip(tokens, values, strict=True) if v is None or not -_I32 <= v < _I32), None
        )
        if bad is not None:
            raise DataFormatError(
                path, lineno, f"expected integer {what} (32-bit), found {bad[:60].decode(errors='replace')!r}"
            )
        out[k, : len(tokens)] = values
        lengths[k] = len(tokens)
    return out, lengths


def _int_file(path: Path, n_values: int, what: str, fast=_fast_ints,
              value_range: tuple[int, int] | None = None,
              dtype=np.int64) -> tuple[list[str], np.ndarray, np.ndarray]:  # fmt: skip
    """Every row ``name`` + ``n_values`` integers -> names, (N, n_values) values, line numbers."""

    def chunk(rests: list[bytes], linenos: list[int]) -> np.ndarray:
        vals = fast(rests, n_values)
        if vals is None:  # unusual formatting or an error: row by row, with exact messages
            vals = _slow_ints(path, rests, linenos, n_values, what)[0]
        if value_range is not None:
            _check_range(path, np.asarray(linenos), vals, *value_range, what)
        return vals.astype(dtype, copy=False)

    names, outs, linenos = _parse_rows(path, chunk)
    return names, (np.concatenate(outs) if outs else np.zeros((0, n_values), dtype)), linenos


def _fail_first(path: Path, linenos: np.ndarray, bad: np.ndarray, message: Callable[[int], str]) -> None:
    """Raise a DataFormatError for the first row i where ``bad`` (N,) is True."""
    rows = np.flatnonzero(bad)
    if rows.size:
        raise DataFormatError(path, int(linenos[rows[0]]), message(int(rows[0])))


def _check_range(path: Path, linenos: np.ndarray, vals: np.ndarray, lo: int, hi: int, what: str) -> None:
    if not len(vals):
        return
    bad = ((vals < lo) | (vals > hi)).reshape(len(vals), -1).any(axis=1)
    _fail_first(path, linenos, bad, lambda i: f"{what} must be in {lo}..{hi}, found {vals[i].tolist()}")


def _vocabulary(path: Path, max_type: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``list_category_cloth.txt`` / ``list_attr_cloth.txt``: names (may contain spaces) and types."""
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    lines = path.read_bytes().split(b"\n")  # bytes, like the other list files
    rows = [(i, line) for i, line in enumerate(lines[2:], start=3) if line.strip()]
    _check_count(path, lines[0].decode("utf-8", "replace"), len(rows))
    names, types = [], []
    for lineno, row in rows:
        parts = row.rsplit(maxsplit=1)  # names contain spaces: the type is the last token
        if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= max_type:
            found = row.strip().decode("utf-8", "replace")
            raise DataFormatError(
                path, lineno, f"expected '<{what} name> <type 1..{max_type}>', found {found!r}"
            )
        names.append(_utf8(path, lineno, parts[0].strip()))
        types.append(int(parts[1]))
    return np.asarray(names, dtype=object), np.asarray(types, dtype=np.int8)


# ----------------------------------------------------------------------------- per-image files


def _parse_category_img(path: Path, n_categories: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    names, labels, linenos = _int_file(path, 1, "category label")
    _check_range(path, linenos, labels[:, 0], 1, n_categories, "category label")
    return names, labels[:, 0] - 1, linenos


def _parse_bbox(path: Path) -> tuple[list[str], np.ndarray]:
    names, bbox, linenos = _int_file(path, 4, "bbox coordinates (x_1 y_1 x_2 y_2)")
    bad = (bbox[:, 2] <= bbox[:, 0]) | (bbox[:, 3] <= bbox[:, 1])
    _fail_first(path, linenos, bad, lambda i: f"expected x_1 < x_2 and y_1 < y_2, found {bbox[i].tolist()}")
    return names, bbox.astype(np.int32)


def _parse_attr_img(path: Path, n_attr: int) -> tuple[list[str], np.ndarray]:
    names, vals, _ = _int_file(path, n_attr, "attribute values", _sign_digits, (-1, 1), np.int8)
    return names, vals


def _parse_partition(path: Path) -> tuple[list[str], np.ndarray]:
    names, outs, linenos = _parse_rows(
        path, lambda rests, _: [r.strip().decode("utf-8", "replace") for r in rests]
    )
    part = np.asarray([p for chunk in outs for p in chunk], dtype=object)
    bad = ~np.isin(part, PARTITIONS)
    _fail_first(path, linenos, bad, lambda i: f"expected evaluation status train/val/test, found {part[i]!r}")
    return names, part.astype("<U5")


def _parse_landmarks(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """-> names, clothes_type (N,), landmarks (N, 8, 2), visibility (N, 8)."""
    width = 26  # clothes_type, FLD's optional variation_type, 8 (visibility, x, y) triples

    def chunk(rests: list[bytes], linenos: list[int]) -> tuple[np.ndarray, np.ndarray]:
        vals = _fast_ints(rests, 25)  # the usual case: every row zero-padded to 8 triples
        if vals is not None:
            return np.pad(vals, ((0, 0), (0, 1))), np.full(len(rests), 25, dtype=np.int64)
        return _slow_ints(path, rests, linenos, None, "landmark values", width)

    names, outs, linenos = _parse_rows(path, chunk)
    table = np.concatenate([o[0] for o in outs]) if outs else np.zeros((0, width), np.int64)
    lengths = np.concatenate([o[1] for o in outs]) if outs else np.zeros(0, np.int64)
    # Rows are "clothes_type [variation_type] (v x y)*": 1 mod 3 values, or 2 mod 3 with variation_type.
    _fail_first(
        path,
        linenos,
        lengths % 3 == 0,
        lambda i: (
            f"expected clothes_type [variation_type] then (visibility, x, y) triples, found {lengths[i]} "
            "values"
        ),
    )
    clothes = table[:, 0]
    unknown = ~np.isin(clothes, list(CLOTHES_TYPE_SLOTS))
    _fail_first(
        path,
        linenos,
        unknown,
        lambda i: f"unknown clothes type {clothes[i]} (expected 1 upper, 2 lower, 3 full body)",
    )
    return names, clothes.astype(np.int8), *_slot_landmarks(path, linenos, table, lengths)


def _slot_landmarks(
    path: Path, linenos: np.ndarray, table: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map each row's (v, x, y) triples onto the 8 fixed slots by clothes type."""
    n = len(table)
    landmarks = np.zeros((n, 8, 2), dtype=np.float32)
    visibility = np.full((n, 8), 2, dtype=np.int8)
    has_variation = lengths % 3 == 2
    for start in (1, 2):  # rows without / with the variation_type column
        for ctype, slots in CLOTHES_TYPE_SLOTS.items():
            rows = np.flatnonzero((has_variation == (start == 2)) & (table[:, 0] == ctype))
            if not rows.size:
                continue
            short = rows[lengths[rows] < start + 3 * len(slots)]
            if short.size:
                i = int(short[0])
                raise DataFormatError(
                    path,
                    int(linenos[i]),
                    f"clothes type {ctype} needs {len(slots)} (visibility, x, y) triples, found "
                    f"{(lengths[i] - start) // 3}",
                )
            trip = table[rows, start : start + 3 * len(slots)].reshape(-1, len(slots), 3)
            bad_vis = np.flatnonzero(~np.isin(trip[..., 0], (0, 1, 2)).all(axis=1))
            if bad_vis.size:
                raise DataFormatError(
                    path, int(linenos[rows[bad_vis[0]]]), "landmark visibility must be 0, 1 or 2"
                )
            visibility[np.ix_(rows, slots)] = trip[..., 0]
            landmarks[np.ix_(rows, slots)] = trip[..., 1:]
    return landmarks, visibility


# ----------------------------------------------------------------------------- joining


def _align(master: list[str], names: list[str], path: Path, master_path: Path) -> np.ndarray | None:
    """Row order that puts ``names`` in ``master`` order; None when already identical (the usual case)."""
    if names == master:
        return None
    pos = {n: i for i, n in enumerate(names)}
    if len(pos) != len(names):
        seen: set[str] = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        raise DataFormatError(path, names.index(dup) + 3, f"image {dup!r} is listed twice")
    missing = [n for n in master if n not in pos]
    if missing:
        raise DataFormatError(
            path, None, f"{len(missing)} images of {master_path.name} are missing, e.g. {missing[:3]}"
        )
    master_set = set(master)
    extra = [n for n in names if n not in master_set]
    if extra or len(names) != len(master):
        raise DataFormatError(
            master_path, None, f"{len(extra)} images of {path.name} are missing, e.g. {extra[:3]}"
        )
    return np.fromiter((pos[n] for n in master), dtype=np.int64, count=len(master))


def read_deepfashion(
    root: str | Path, partition: str | None = None, check_images: bool = False
) -> DeepFashionIndex:
    """Read the DeepFashion Category and Attribute Prediction Benchmark annotations.

    Args:
        root: the benchmark directory holding ``Anno/``, ``Eval/`` and ``img/``.
        partition: None for all images, or "train" / "val" / "test".
        check_images: verify that every selected image file exists.

    Returns:
        The index of the selected images, in ``list_category_img.txt`` order.

    Raises:
        DataFormatError: a malformed or inconsistent file (naming the file and line), or a missing
            image when ``check_images`` is set.

    Example:
        >>> idx = read_deepfashion("/data/DeepFashion", partition="val")  # doctest: +SKIP
        >>> idx.attributes.shape  # doctest: +SKIP
        (40000, 1000)
    """
    root = Path(root)
    if partition is not None and partition not in PARTITIONS:
        raise ConfigError(f"partition must be None or one of {PARTITIONS}, got {partition!r}")
    p = {k: root / v for k, v in ANNO_FILES.items()}
    cat_names, cat_types = _vocabulary(p["category_cloth"], 3, "category")
    attr_names, attr_types = _vocabulary(p["attr_cloth"], max(ATTRIBUTE_TYPES), "attribute")
    master, category, master_lines = _parse_category_img(p["category_img"], len(cat_names))

    def aligned(key: str, names: list[str], *arrays: np.ndarray) -> list[np.ndarray]:
        order = _align(master, names, p[key], p["category_img"])
        return [a if order is None else a[order] for a in arrays]

    (attributes,) = aligned("attr_img", *_parse_attr_img(p["attr_img"], len(attr_names)))
    (bbox,) = aligned("bbox", *_parse_bbox(p["bbox"]))
    clothes, landmarks, visibility = aligned("landmarks", *_parse_landmarks(p["landmarks"]))
    (part,) = aligned("partition", *_parse_partition(p["partition"]))
    index = DeepFashionIndex(
        image_names=np.asarray(master, dtype=object), category=category, category_names=cat_names,
        category_types=cat_types, attributes=attributes, attribute_names=attr_names,
        attribute_types=attr_types, bbox=bbox, clothes_type=clothes, landmarks=landmarks,
        landmark_visibility=visibility, landmark_visible=visibility == 0, partition=part,
    )  # fmt: skip
    rows = np.arange(len(index)) if partition is None else np.flatnonzero(part == partition)
    if check_images:
        _check_images(root, index.image_names[rows], master_lines[rows], p["category_img"])
    return index if partition is None else index.subset(rows)


def _check_images(root: Path, names: np.ndarray, linenos: np.ndarray, anno: Path) -> None:
    missing = [(int(line), n) for line, n in zip(linenos, names, strict=True) if not (root / n).is_file()]
    if missing:
        shown = ", ".join(n for _, n in missing[:5])
        raise DataFormatError(
            anno, missing[0][0], f"{len(missing)} image files not found under {root}: {shown}"
        )
