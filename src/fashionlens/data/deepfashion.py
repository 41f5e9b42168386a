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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from fashionlens.data.errors import DataFormatError, Problems, report
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
        lines: the 1-based line of each image's row in each per-image list file, by its
            :data:`ANNO_FILES` key (``category_img``, ``attr_img``, ``bbox``, ``landmarks``,
            ``partition``), each (N,) int64; 0 where that file has no valid row for the image (only
            when read with ``problems``: the values there are then 0, visibility 2).
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
    lines: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

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
            if f.name != "lines"
        }
        return DeepFashionIndex(**kw, lines={k: v[sel] for k, v in self.lines.items()})


# ----------------------------------------------------------------------------- list files
#
# Every parser below is strict by default (the first problem raises a DataFormatError) and collects
# with ``problems`` (each problem is recorded, the bad row is marked in the ``ok`` mask it returns and
# reading goes on): one grammar for training and for ``fashionlens data check``.


def _check_count(
    path: Path, first_line: str, n_rows: int | None, problems: Problems | None = None
) -> int | None:
    """Line 1 must be an integer equal to the number of (non-blank) rows; returns it (None: not a number)."""
    text = first_line.strip(" \t\r\n\v\f")  # ASCII whitespace and digits only, like the rows
    if not (text.isascii() and text.isdigit()):
        report(
            problems,
            DataFormatError(path, 1, f"expected the number of entries, found {text[:60]!r}", kind="count"),
        )
        return None
    expected = int(text)
    if n_rows is not None and expected != n_rows:
        report(
            problems,
            DataFormatError(
                path, 1, f"count line says {expected} entries, found {n_rows} rows", kind="count"
            ),
        )
    return expected


def _parse_rows(
    path: Path, parse_chunk: Callable[[list[bytes], list[int]], Any], problems: Problems | None = None
) -> tuple[list[str], list[Any], np.ndarray] | None:
    """Read ``name values...`` rows in chunks of about 64 MB.

    Returns the image names, ``parse_chunk(rests, linenos)`` of every chunk (``rests``: the text
    after each name, ending in a newline) and the 1-based line number of every row; None when the
    file does not exist (collecting; strict: a DataFormatError). A row whose name is not UTF-8 is
    left out when collecting.
    """
    if not path.is_file():
        report(problems, DataFormatError(path, None, "file not found", kind="file"))
        return None
    if problems is not None:
        problems.files.add(str(path))
    names: list[str] = []
    outs, linenos = [], []
    n_rows = 0
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", "replace")
        expected = _check_count(path, first, None, problems)
        f.readline()  # column names
        lineno = 3
        while lines := f.readlines(_CHUNK_BYTES):
            rests, rows = [], []
            for i, line in enumerate(lines, start=lineno):
                parts = line.split(None, 1)
                if not parts:
                    continue
                n_rows += 1
                name = _utf8(path, i, parts[0], problems)
                if name is None:
                    continue
                names.append(name)
                rest = parts[1] if len(parts) == 2 else b"\n"
                rests.append(rest if rest.endswith(b"\n") else rest + b"\n")
                rows.append(i)
            lineno += len(lines)
            outs.append(parse_chunk(rests, rows))
            linenos += rows
    if expected is not None:
        _check_count(path, first, n_rows, problems)
    return names, outs, np.asarray(linenos, dtype=np.int64)


def _utf8(path: Path, lineno: int, name: bytes, problems: Problems | None = None) -> str | None:
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        report(problems, DataFormatError(path, lineno, f"{name[:60]!r} is not valid UTF-8", kind="encoding"))
        return None


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


def _slow_ints(
    path: Path,
    rests: list[bytes],
    linenos: list[int],
    n_values: int | None,
    what: str,
    width: int = 0,
    problems: Problems | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row by row, naming each bad line. ``n_values`` None: any count up to ``width`` (zero-padded).

    Returns the (rows, n_values or width) int64 values, each row's token count and the (rows,) mask of
    valid rows (all True when strict: the first bad row raises).
    """
    out = np.zeros((len(rests), n_values or width), dtype=np.int64)
    lengths = np.zeros(len(rests), dtype=np.int64)
    ok = np.ones(len(rests), dtype=bool)
    for k, (rest, lineno) in enumerate(zip(rests, linenos, strict=True)):
        tokens = rest.split()
        if (n_values is not None and len(tokens) != n_values) or len(tokens) > out.shape[1]:
            want = n_values if n_values is not None else f"at most {width}"
            report(
                problems,
                DataFormatError(
                    path,
                    lineno,
                    f"expected {want} {what} after the image name, found {len(tokens)}",
                    kind="columns",
                ),
            )
            ok[k] = False
            continue
        values = [_int_or_none(t) for t in tokens]
        bad = next(
            (t for t, v in zip(tokens, values, strict=True) if v is None or not -_I32 <= v < _I32), None
        )
        if bad is not None:
            report(
                problems,
                DataFormatError(
                    path,
                    lineno,
                    f"expected integer {what} (32-bit), found {bad[:60].decode(errors='replace')!r}",
                ),
            )
            ok[k] = False
            continue
        out[k, : len(tokens)] = values
        lengths[k] = len(tokens)
    return out, lengths, ok


_Parsed = tuple  # (names, line numbers (N,), valid rows (N,) bool, *arrays of N rows)


def _int_file(
    path: Path,
    n_values: int,
    what: str,
    fast=_fast_ints,
    value_range: tuple[int, int] | None = None,
    dtype=np.int64,
    problems: Problems | None = None,
) -> _Parsed:
    """Every row ``name`` + ``n_values`` integers -> names, line numbers, valid rows, (N, n_values) values."""

    def chunk(rests: list[bytes], linenos: list[int]) -> tuple[np.ndarray, np.ndarray]:
        vals, ok = fast(rests, n_values), np.ones(len(rests), dtype=bool)
        if vals is None:  # unusual formatting or an error: row by row, with exact messages
            vals, _, ok = _slow_ints(path, rests, linenos, n_values, what, problems=problems)
        if value_range is not None:
            _check_range(path, np.asarray(linenos), vals, *value_range, what, problems, ok)
        return vals.astype(dtype, copy=False), ok

    parsed = _parse_rows(path, chunk, problems)
    if parsed is None:
        return [], np.zeros(0, np.int64), np.zeros(0, bool), np.zeros((0, n_values), dtype)
    names, outs, linenos = parsed
    vals = np.concatenate([o[0] for o in outs]) if outs else np.zeros((0, n_values), dtype)
    ok = np.concatenate([o[1] for o in outs]) if outs else np.zeros(0, bool)
    return names, linenos, ok, vals


def _bad_rows(
    path: Path,
    linenos: np.ndarray,
    bad: np.ndarray,
    message: Callable[[int], str],
    problems: Problems | None = None,
    ok: np.ndarray | None = None,
    kind: str = "value",
) -> None:
    """Report every row i where ``bad`` (N,) is True (strict: the first raises); collecting, rows already
    marked bad in ``ok`` are skipped and the new ones are marked."""
    rows = np.flatnonzero(bad if ok is None else bad & ok)
    for i in rows.tolist():
        report(problems, DataFormatError(path, int(linenos[i]), message(i), kind=kind))
    if ok is not None:
        ok[rows] = False


def _check_range(
    path: Path,
    linenos: np.ndarray,
    vals: np.ndarray,
    lo: int,
    hi: int,
    what: str,
    problems: Problems | None = None,
    ok: np.ndarray | None = None,
    kind: str = "value",
) -> None:
    if not len(vals):
        return
    wide = vals.reshape(len(vals), -1)
    outside = (wide < lo) | (wide > hi)

    def message(i: int) -> str:
        if wide.shape[1] <= 8:
            return f"{what} must be in {lo}..{hi}, found {vals[i].tolist()}"
        k = int(np.argmax(outside[i]))  # a row of 1000 attribute values: name the first bad one
        return f"{what} must be in {lo}..{hi}, found {int(wide[i, k])} (value {k + 1} of {wide.shape[1]})"

    _bad_rows(path, linenos, outside.any(axis=1), message, problems, ok, kind)


def _vocabulary(
    path: Path, max_type: int, what: str, problems: Problems | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """``list_category_cloth.txt`` / ``list_attr_cloth.txt``: names (may contain spaces) and types.

    Collecting, a malformed row keeps its place (name ``""``, type 0) so that the indices of the rows
    after it stay right; None when the file does not exist.
    """
    if not path.is_file():
        report(problems, DataFormatError(path, None, "file not found", kind="file"))
        return None
    if problems is not None:
        problems.files.add(str(path))
    lines = path.read_bytes().split(b"\n")  # bytes, like the other list files
    rows = [(i, line) for i, line in enumerate(lines[2:], start=3) if line.strip()]
    _check_count(path, lines[0].decode("utf-8", "replace"), len(rows), problems)
    names, types = [], []
    for lineno, row in rows:
        parts = row.rsplit(maxsplit=1)  # names contain spaces: the type is the last token
        name = None
        if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= max_type:
            found = row.strip().decode("utf-8", "replace")
            report(
                problems,
                DataFormatError(
                    path, lineno, f"expected '<{what} name> <type 1..{max_type}>', found {found!r}"
                ),
            )
        else:
            name = _utf8(path, lineno, parts[0].strip(), problems)
        names.append("" if name is None else name)
        types.append(0 if name is None else int(parts[1]))
    return np.asarray(names, dtype=object), np.asarray(types, dtype=np.int8)


# ----------------------------------------------------------------------------- per-image files
# Each returns (names, line numbers, valid rows, *arrays); n_categories / n_attr None (collecting
# without the vocabulary file): the values are not checked.


def _parse_category_img(path: Path, n_categories: int | None, problems: Problems | None = None) -> _Parsed:
    names, linenos, ok, labels = _int_file(path, 1, "category label", problems=problems)
    if n_categories is not None:
        _check_range(path, linenos, labels[:, 0], 1, n_categories, "category label", problems, ok, "label")
    return names, linenos, ok, np.where(ok, labels[:, 0] - 1, 0)


def _parse_bbox(path: Path, problems: Problems | None = None) -> _Parsed:
    names, linenos, ok, bbox = _int_file(path, 4, "bbox coordinates (x_1 y_1 x_2 y_2)", problems=problems)
    bad = (bbox[:, 2] <= bbox[:, 0]) | (bbox[:, 3] <= bbox[:, 1])
    _bad_rows(
        path,
        linenos,
        bad,
        lambda i: f"expected x_1 < x_2 and y_1 < y_2, found {bbox[i].tolist()}",
        problems,
        ok,
    )
    return names, linenos, ok, bbox.astype(np.int32)


def _parse_attr_img(path: Path, n_attr: int | None, problems: Problems | None = None) -> _Parsed:
    if n_attr is None:  # collecting without list_attr_cloth.txt: the names only
        parsed = _parse_rows(path, lambda rests, _: None, problems)
        names, linenos = (parsed[0], parsed[2]) if parsed else ([], np.zeros(0, np.int64))
        return names, linenos, np.ones(len(names), bool), np.zeros((len(names), 0), np.int8)
    return _int_file(path, n_attr, "attribute values", _sign_digits, (-1, 1), np.int8, problems)


def _parse_partition(path: Path, problems: Problems | None = None) -> _Parsed:
    parsed = _parse_rows(
        path, lambda rests, _: [r.strip().decode("utf-8", "replace") for r in rests], problems
    )
    names, outs, linenos = parsed if parsed else ([], [], np.zeros(0, np.int64))
    part = np.asarray([p for chunk in outs for p in chunk], dtype=object)
    ok = np.ones(len(part), dtype=bool)
    _bad_rows(
        path,
        linenos,
        ~np.isin(part, PARTITIONS),
        lambda i: f"expected evaluation status train/val/test, found {part[i]!r}",
        problems,
        ok,
    )
    return names, linenos, ok, np.where(ok, part, "").astype("<U5")


def _parse_landmarks(path: Path, problems: Problems | None = None) -> _Parsed:
    """-> names, line numbers, valid rows, clothes_type (N,), landmarks (N, 8, 2), visibility (N, 8)."""
    width = 26  # clothes_type, FLD's optional variation_type, 8 (visibility, x, y) triples

    def chunk(rests: list[bytes], linenos: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vals = _fast_ints(rests, 25)  # the usual case: every row zero-padded to 8 triples
        if vals is not None:
            n = len(rests)
            return np.pad(vals, ((0, 0), (0, 1))), np.full(n, 25, dtype=np.int64), np.ones(n, dtype=bool)
        return _slow_ints(path, rests, linenos, None, "landmark values", width, problems)

    parsed = _parse_rows(path, chunk, problems)
    names, outs, linenos = parsed if parsed else ([], [], np.zeros(0, np.int64))
    table = np.concatenate([o[0] for o in outs]) if outs else np.zeros((0, width), np.int64)
    lengths = np.concatenate([o[1] for o in outs]) if outs else np.zeros(0, np.int64)
    ok = np.concatenate([o[2] for o in outs]) if outs else np.zeros(0, bool)
    # Rows are "clothes_type [variation_type] (v x y)*": 1 mod 3 values, or 2 mod 3 with variation_type.
    _bad_rows(
        path,
        linenos,
        lengths % 3 == 0,
        lambda i: (
            f"expected clothes_type [variation_type] then (visibility, x, y) triples, found {lengths[i]} "
            "values"
        ),
        problems,
        ok,
        "columns",
    )
    clothes = table[:, 0]
    _bad_rows(
        path,
        linenos,
        ~np.isin(clothes, list(CLOTHES_TYPE_SLOTS)),
        lambda i: f"unknown clothes type {clothes[i]} (expected 1 upper, 2 lower, 3 full body)",
        problems,
        ok,
    )
    landmarks, visibility = _slot_landmarks(path, linenos, table, lengths, problems, ok)
    return names, linenos, ok, np.where(ok, clothes, 0).astype(np.int8), landmarks, visibility


def _slot_landmarks(
    path: Path,
    linenos: np.ndarray,
    table: np.ndarray,
    lengths: np.ndarray,
    problems: Problems | None = None,
    ok: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Map each valid row's (v, x, y) triples onto the 8 fixed slots by clothes type."""
    n = len(table)
    ok = np.ones(n, dtype=bool) if ok is None else ok
    landmarks = np.zeros((n, 8, 2), dtype=np.float32)
    visibility = np.full((n, 8), 2, dtype=np.int8)
    has_variation = lengths % 3 == 2
    for start in (1, 2):  # rows without / with the variation_type column
        for ctype, slots in CLOTHES_TYPE_SLOTS.items():
            rows = np.flatnonzero(ok & (has_variation == (start == 2)) & (table[:, 0] == ctype))
            if not rows.size:
                continue
            bad = np.zeros(n, dtype=bool)
            bad[rows] = lengths[rows] < start + 3 * len(slots)
            _bad_rows(
                path,
                linenos,
                bad,
                lambda i, c=ctype, n=len(slots), s=start: (
                    f"clothes type {c} needs {n} (visibility, x, y) triples, found {(lengths[i] - s) // 3}"
                ),
                problems,
                ok,
                "columns",
            )
            rows = rows[ok[rows]]
            trip = table[rows, start : start + 3 * len(slots)].reshape(-1, len(slots), 3)
            bad = np.zeros(n, dtype=bool)
            bad[rows] = ~np.isin(trip[..., 0], (0, 1, 2)).all(axis=1)
            _bad_rows(path, linenos, bad, lambda i: "landmark visibility must be 0, 1 or 2", problems, ok)
            keep = ok[rows]
            visibility[np.ix_(rows[keep], slots)] = trip[keep, :, 0]
            landmarks[np.ix_(rows[keep], slots)] = trip[keep, :, 1:]
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
        raise DataFormatError(path, names.index(dup) + 3, f"image {dup!r} is listed twice", kind="duplicate")
    missing = [n for n in master if n not in pos]
    if missing:
        raise DataFormatError(
            path,
            None,
            f"{len(missing)} images of {master_path.name} are missing, e.g. {missing[:3]}",
            kind="missing_row",
        )
    master_set = set(master)
    extra = [n for n in names if n not in master_set]
    if extra or len(names) != len(master):
        raise DataFormatError(
            master_path,
            None,
            f"{len(extra)} images of {path.name} are missing, e.g. {extra[:3]}",
            kind="unknown_image",
        )
    return np.fromiter((pos[n] for n in master), dtype=np.int64, count=len(master))


def _align_each(
    master: dict[str, int], names: list[str], linenos: np.ndarray, path: Path, problems: Problems
) -> np.ndarray:
    """Collecting: each duplicate row, row of an image not in ``master`` (name -> line) and image without
    a row is a problem. Returns, for each master image, its row in ``names`` (-1: none)."""
    pos: dict[str, int] = {}
    for i, name in enumerate(names):
        line = int(linenos[i])
        if name in pos:
            first = int(linenos[pos[name]])
            report(
                problems,
                DataFormatError(
                    path, line, f"image {name!r} is listed twice (first on line {first})", kind="duplicate"
                ),
            )
        elif name not in master:
            report(
                problems,
                DataFormatError(
                    path, line, f"image {name!r} is not in {ANNO_FILES['category_img']}", kind="unknown_image"
                ),
            )
        else:
            pos[name] = i
    if path.is_file():
        for name, mline in master.items():
            if name not in pos:
                report(
                    problems,
                    DataFormatError(
                        path,
                        None,
                        f"no row for {name!r} ({ANNO_FILES['category_img']}:{mline})",
                        kind="missing_row",
                    ),
                )
    return np.fromiter((pos.get(n, -1) for n in master), dtype=np.int64, count=len(master))


def _unique_master(
    names: list[str], linenos: np.ndarray, path: Path, problems: Problems | None
) -> np.ndarray:
    """``list_category_img.txt`` lists each image once: the rows to keep (every first one)."""
    first: dict[str, int] = {}
    keep = np.ones(len(names), dtype=bool)
    if len(set(names)) == len(names):
        return keep
    for i, name in enumerate(names):
        if name in first:
            report(
                problems,
                DataFormatError(
                    path,
                    int(linenos[i]),
                    f"image {name!r} is listed twice (first on line {linenos[first[name]]})",
                    kind="duplicate",
                ),
            )
            keep[i] = False
        else:
            first[name] = i
    return keep


_FILL = {"attr_img": (0,), "bbox": (0,), "landmarks": (0, 0, 2), "partition": ("",)}


def read_deepfashion(
    root: str | Path,
    partition: str | None = None,
    check_images: bool = False,
    problems: Problems | None = None,
) -> DeepFashionIndex:
    """Read the DeepFashion Category and Attribute Prediction Benchmark annotations.

    Args:
        root: the benchmark directory holding ``Anno/``, ``Eval/`` and ``img/``.
        partition: None for all images, or "train" / "val" / "test".
        check_images: verify that every selected image file exists.
        problems: None (strict: the first problem raises) or a collector: every malformed row, count
            line, duplicate, missing row or file is recorded there and reading goes on (see
            :attr:`DeepFashionIndex.lines` for what the index then holds).

    Returns:
        The index of the selected images, in ``list_category_img.txt`` order.

    Raises:
        DataFormatError: strict only: a malformed or inconsistent file (naming the file and line), or
            a missing image when ``check_images`` is set.

    Example:
        >>> idx = read_deepfashion("/data/DeepFashion", partition="val")  # doctest: +SKIP
        >>> idx.attributes.shape  # doctest: +SKIP
        (40000, 1000)
    """
    root = Path(root)
    if partition is not None and partition not in PARTITIONS:
        raise ConfigError(f"partition must be None or one of {PARTITIONS}, got {partition!r}")
    p = {k: root / v for k, v in ANNO_FILES.items()}
    mark = len(problems or ())

    def in_line_order() -> None:  # collecting: each file's problems by line, as data check lists them
        nonlocal mark
        if problems is not None:
            problems.sort_from(mark)
            mark = len(problems)

    cats = _vocabulary(p["category_cloth"], 3, "category", problems)
    in_line_order()
    attrs = _vocabulary(p["attr_cloth"], max(ATTRIBUTE_TYPES), "attribute", problems)
    in_line_order()
    empty = (np.zeros(0, dtype=object), np.zeros(0, dtype=np.int8))
    cat_names, cat_types = cats if cats is not None else empty
    attr_names, attr_types = attrs if attrs is not None else empty
    master, master_lines, _, category = _parse_category_img(
        p["category_img"], len(cat_names) if cats is not None else None, problems
    )
    keep = _unique_master(master, master_lines, p["category_img"], problems)
    if not keep.all():  # collecting (strict: the duplicate raised)
        master = [n for n, k in zip(master, keep, strict=True) if k]
        master_lines, category = master_lines[keep], category[keep]
    in_line_order()
    master_rows = {n: int(line) for n, line in zip(master, master_lines, strict=True)}
    lines = {"category_img": master_lines}

    def aligned(key: str, parsed: tuple) -> list[np.ndarray]:
        names, linenos, ok, *arrays = parsed
        if problems is None:  # strict: every row is valid
            order = _align(master, names, p[key], p["category_img"])
            lines[key] = linenos if order is None else linenos[order]
            return [a if order is None else a[order] for a in arrays]
        order = np.full(len(master), -1)
        if p["category_img"].is_file():
            order = _align_each(master_rows, names, linenos, p[key], problems)
        good = order >= 0
        good[good] = ok[order[good]]
        lines[key] = np.zeros(len(master), dtype=np.int64)
        lines[key][good] = linenos[order[good]]
        out = []
        for a, fill in zip(arrays, _FILL[key], strict=True):
            b = np.full((len(master), *a.shape[1:]), fill, dtype=a.dtype)
            b[good] = a[order[good]]
            out.append(b)
        in_line_order()
        return out

    n_attr = len(attr_names) if attrs is not None else None
    (attributes,) = aligned("attr_img", _parse_attr_img(p["attr_img"], n_attr, problems))
    (bbox,) = aligned("bbox", _parse_bbox(p["bbox"], problems))
    clothes, landmarks, visibility = aligned("landmarks", _parse_landmarks(p["landmarks"], problems))
    (part,) = aligned("partition", _parse_partition(p["partition"], problems))
    index = DeepFashionIndex(
        image_names=np.asarray(master, dtype=object), category=category, category_names=cat_names,
        category_types=cat_types, attributes=attributes, attribute_names=attr_names,
        attribute_types=attr_types, bbox=bbox, clothes_type=clothes, landmarks=landmarks,
        landmark_visibility=visibility, landmark_visible=visibility == 0, partition=part, lines=lines,
    )  # fmt: skip
    rows = np.arange(len(index)) if partition is None else np.flatnonzero(part == partition)
    if check_images:
        _check_images(root, index.image_names[rows], master_lines[rows], p["category_img"], problems)
    return index if partition is None else index.subset(rows)


def _check_images(
    root: Path, names: np.ndarray, linenos: np.ndarray, anno: Path, problems: Problems | None = None
) -> None:
    missing = [(int(line), n) for line, n in zip(linenos, names, strict=True) if not (root / n).is_file()]
    if missing:
        shown = ", ".join(n for _, n in missing[:5])
        report(
            problems,
            DataFormatError(
                anno,
                missing[0][0],
                f"{len(missing)} image files not found under {root}: {shown}",
                kind="missing_image",
            ),
        )
