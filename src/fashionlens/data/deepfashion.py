"""DeepFashion Category and Attribute Prediction Benchmark: a fast reader and a torch Dataset.

The benchmark itself is not distributed with fashionlens (non-commercial licence): users download
it and point :func:`read_deepfashion` at its root (``img/``, ``Anno/``, ``Eval/``). The file formats
are described in ``docs/formats.md``; :func:`fashionlens.data.synth.synth_deepfashion` writes a small
synthetic data set in exactly the same layout.

The index is a struct of numpy arrays (289,222 images x 1000 attributes is 289 MB of int8), and
``list_attr_img.txt`` (about 870 MB of text) is parsed with vectorised byte operations.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fashionlens.data.config import DataConfig
from fashionlens.data.errors import DataFormatError
from fashionlens.data.images import BadImageError, load_image
from fashionlens.data.landmark_transforms import JointTransform, build_joint_transforms

__all__ = [
    "CLOTHES_TYPE_SLOTS",
    "LANDMARK_NAMES",
    "DataFormatError",
    "DeepFashionDataset",
    "DeepFashionIndex",
    "read_deepfashion",
]

LANDMARK_NAMES = (
    "left_collar", "right_collar", "left_sleeve", "right_sleeve",
    "left_waistline", "right_waistline", "left_hem", "right_hem",
)  # fmt: skip
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
_CHUNK_BYTES = 64 << 20  # list_attr_img.txt is parsed in pieces of about this size


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
        attribute_types: (A,) int8, 1 texture / 2 fabric / 3 shape / 4 part / 5 style.
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


def _read_rows(path: Path) -> tuple[list[str], np.ndarray]:
    """Non-blank data rows (from line 3) and their 1-based line numbers, after checking line 1."""
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows, linenos = [], []
    for i, line in enumerate(lines[2:], start=3):
        if line.strip():
            rows.append(line)
            linenos.append(i)
    _check_count(path, lines[0] if lines else "", len(rows))
    return rows, np.asarray(linenos, dtype=np.int64)


def _check_count(path: Path, first_line: str, n_rows: int) -> None:
    try:
        expected = int(first_line.strip())
    except ValueError:
        raise DataFormatError(path, 1, f"expected the number of entries, found {first_line.strip()!r}") from None
    if expected != n_rows:
        raise DataFormatError(path, 1, f"count line says {expected} entries, found {n_rows} rows")


def _name_value_table(path: Path, what: str, n_values: int | None = None) -> tuple[list[str], list[list[str]], np.ndarray]:
    """Split ``name v1 v2 ...`` rows; every row must have ``n_values`` values (any equal count if None)."""
    rows, linenos = _read_rows(path)
    names, values = [], []
    for row, lineno in zip(rows, linenos, strict=True):
        name, *vals = row.split()
        want = n_values if n_values is not None else (len(values[0]) if values else len(vals))
        if len(vals) != want:
            raise DataFormatError(path, int(lineno), f"expected {want} {what} after the image name, found {len(vals)}")
        names.append(name)
        values.append(vals)
    return names, values, linenos


def _to_ints(path: Path, values: list[list[str]], linenos: np.ndarray, what: str) -> np.ndarray:
    """(N, K) string tokens -> int64, naming the first row that is not all integers."""
    try:
        return np.asarray(values, dtype=np.str_).reshape(len(values), -1).astype(np.int64)
    except ValueError:
        for row, lineno in zip(values, linenos, strict=True):
            bad = [v for v in row if not v.lstrip("+-").isdigit()]
            if bad:
                raise DataFormatError(path, int(lineno), f"expected integer {what}, found {bad[0]!r}") from None
        raise


def _check_range(path: Path, linenos: np.ndarray, vals: np.ndarray, lo: int, hi: int, what: str) -> None:
    bad = np.flatnonzero((vals < lo) | (vals > hi))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(path, int(linenos[i]), f"{what} must be in {lo}..{hi}, found {vals[i]}")


def _vocabulary(path: Path, max_type: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``list_category_cloth.txt`` / ``list_attr_cloth.txt``: names (may contain spaces) and types."""
    rows, linenos = _read_rows(path)
    names, types = [], []
    for row, lineno in zip(rows, linenos, strict=True):
        parts = row.rsplit(maxsplit=1)  # names contain spaces: the type is the last token
        if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= max_type:
            raise DataFormatError(path, int(lineno), f"expected '<{what} name> <type 1..{max_type}>', found {row.strip()!r}")
        names.append(parts[0].strip())
        types.append(int(parts[1]))
    return np.asarray(names, dtype=object), np.asarray(types, dtype=np.int8)


# ----------------------------------------------------------------------------- per-image files


def _parse_category_img(path: Path, n_categories: int) -> tuple[list[str], np.ndarray]:
    names, values, linenos = _name_value_table(path, "category label", 1)
    labels = _to_ints(path, values, linenos, "category label")[:, 0]
    _check_range(path, linenos, labels, 1, n_categories, "category label")
    return names, labels - 1


def _parse_bbox(path: Path) -> tuple[list[str], np.ndarray]:
    names, values, linenos = _name_value_table(path, "bbox coordinates (x_1 y_1 x_2 y_2)", 4)
    bbox = _to_ints(path, values, linenos, "bbox coordinates").astype(np.int32)
    bad = np.flatnonzero((bbox[:, 2] <= bbox[:, 0]) | (bbox[:, 3] <= bbox[:, 1]))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(path, int(linenos[i]), f"expected x_1 < x_2 and y_1 < y_2, found {bbox[i].tolist()}")
    return names, bbox


def _parse_partition(path: Path) -> tuple[list[str], np.ndarray]:
    names, values, linenos = _name_value_table(path, "evaluation status", 1)
    part = np.asarray([v[0] for v in values], dtype="<U5")
    bad = np.flatnonzero(~np.isin(part, PARTITIONS))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(path, int(linenos[i]), f"expected train/val/test, found {values[i][0]!r}")
    return names, part


def _parse_landmarks(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """-> names, clothes_type (N,), landmarks (N, 8, 2), visibility (N, 8)."""
    rows, linenos = _read_rows(path)
    names, tokens = [], []
    for row in rows:
        name, *vals = row.split()
        names.append(name)
        tokens.append(vals)
    width = max((len(t) for t in tokens), default=1)
    # Rows are "clothes_type [variation_type] (v x y)*": 1 mod 3 tokens, or 2 mod 3 with FLD's variation_type.
    padded = [t + ["0"] * (width - len(t)) for t in tokens]
    table = _to_ints(path, padded, linenos, "landmark values").reshape(len(rows), width)
    lengths = np.asarray([len(t) for t in tokens], dtype=np.int64)
    has_variation = lengths % 3 == 2
    bad = np.flatnonzero(lengths % 3 == 0)
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(path, int(linenos[i]), f"expected clothes_type [variation_type] then (visibility, x, y) triples, found {lengths[i]} values")
    clothes = table[:, 0]
    known = np.isin(clothes, list(CLOTHES_TYPE_SLOTS))
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise DataFormatError(path, int(linenos[i]), f"unknown clothes type {clothes[i]} (expected 1 upper, 2 lower, 3 full body)")
    return names, clothes.astype(np.int8), *_slot_landmarks(path, linenos, table, lengths, has_variation)


def _slot_landmarks(path, linenos, table, lengths, has_variation) -> tuple[np.ndarray, np.ndarray]:
    """Map each row's (v, x, y) triples onto the 8 fixed slots by clothes type."""
    n = len(table)
    landmarks = np.zeros((n, 8, 2), dtype=np.float32)
    visibility = np.full((n, 8), 2, dtype=np.int8)
    for skip in (False, True):  # rows without / with the variation_type column
        rows_v = has_variation == skip
        start = 2 if skip else 1
        for ctype, slots in CLOTHES_TYPE_SLOTS.items():
            rows = np.flatnonzero(rows_v & (table[:, 0] == ctype))
            if not rows.size:
                continue
            short = rows[lengths[rows] < start + 3 * len(slots)]
            if short.size:
                i = int(short[0])
                raise DataFormatError(path, int(linenos[i]), f"clothes type {ctype} needs {len(slots)} (visibility, x, y) triples, found {(lengths[i] - start) // 3}")
            trip = table[rows, start : start + 3 * len(slots)].reshape(-1, len(slots), 3)
            vis_ok = np.isin(trip[..., 0], (0, 1, 2))
            if not vis_ok.all():
                i = int(rows[np.flatnonzero(~vis_ok.all(axis=1))[0]])
                raise DataFormatError(path, int(linenos[i]), "landmark visibility must be 0, 1 or 2")
            visibility[np.ix_(rows, slots)] = trip[..., 0]
            landmarks[np.ix_(rows, slots)] = trip[..., 1:]
    return landmarks, visibility


def _parse_attr_img(path: Path, n_attr: int) -> tuple[list[str], np.ndarray]:
    """``list_attr_img.txt``: (N,) names and (N, n_attr) int8 values, vectorised per chunk."""
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    names: list[str] = []
    chunks: list[np.ndarray] = []
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", "replace")
        f.readline()  # header
        lineno = 3
        while lines := f.readlines(_CHUNK_BYTES):
            chunk_names, rests, linenos = [], [], []
            for i, line in enumerate(lines, start=lineno):
                parts = line.split(None, 1)
                if parts:
                    chunk_names.append(parts[0].decode("utf-8"))
                    rests.append(parts[1] if len(parts) == 2 else b"")
                    linenos.append(i)
            lineno += len(lines)
            vals = _sign_digits(b" " + b"\n".join(r.rstrip() for r in rests) + b"\n", len(rests), n_attr)
            if vals is None:  # something unusual: parse slowly, with exact error messages
                vals = _attr_rows_slow(path, rests, linenos, n_attr)
            names.extend(chunk_names)
            chunks.append(vals)
    _check_count(path, first, len(names))
    return names, np.concatenate(chunks) if chunks else np.zeros((0, n_attr), np.int8)


def _sign_digits(buf: bytes, n_rows: int, n_values: int) -> np.ndarray | None:
    """Fast path: rows of exactly ``n_values`` tokens from {1, -1, 0}; None if anything differs."""
    b = np.frombuffer(buf, dtype=np.uint8)
    digits = np.flatnonzero((b >= 48) & (b <= 57))
    newlines = np.flatnonzero(b == 10)
    if digits.size != n_rows * n_values or newlines.size != n_rows:
        return None
    if n_rows and n_values:
        per_row = digits.reshape(n_rows, n_values)
        if not ((per_row[:, -1] < newlines).all() and (per_row[1:, 0] > newlines[:-1]).all()):
            return None
    d, prev = b[digits], b[digits - 1]
    neg = prev == 45  # "-"
    is_space = (b == 32) | (b == 10) | (b == 9) | (b == 13)
    n_other = b.size - int(np.count_nonzero(is_space))
    if (d > 49).any() or not is_space[digits + 1].all() or n_other != digits.size + int(neg.sum()):
        return None  # a digit other than 0/1, a multi-digit token, or a stray character
    vals = (d - 48).astype(np.int8)
    np.negative(vals, out=vals, where=neg)
    return vals.reshape(n_rows, n_values)


def _attr_rows_slow(path: Path, rests: list[bytes], linenos: list[int], n_attr: int) -> np.ndarray:
    out = np.empty((len(rests), n_attr), dtype=np.int8)
    for k, (rest, lineno) in enumerate(zip(rests, linenos, strict=True)):
        tokens = rest.split()
        if len(tokens) != n_attr:
            raise DataFormatError(path, lineno, f"expected {n_attr} attribute values, found {len(tokens)}")
        try:
            row = [int(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not t.lstrip(b"+-").isdigit())
            raise DataFormatError(path, lineno, f"expected attribute values 1/-1/0, found {bad.decode(errors='replace')!r}") from None
        if any(v not in (-1, 0, 1) for v in row):
            raise DataFormatError(path, lineno, "attribute values must be 1, -1 or 0")
        out[k] = row
    return out


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
        raise DataFormatError(path, None, f"{len(missing)} images of {master_path.name} are missing, e.g. {missing[:3]}")
    master_set = set(master)
    extra = [n for n in names if n not in master_set]
    if extra or len(names) != len(master):
        raise DataFormatError(master_path, None, f"{len(extra)} images of {path.name} are missing, e.g. {extra[:3]}")
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
        raise ValueError(f"partition must be None or one of {PARTITIONS}, got {partition!r}")
    p = {k: root / v for k, v in ANNO_FILES.items()}
    cat_names, cat_types = _vocabulary(p["category_cloth"], 3, "category")
    attr_names, attr_types = _vocabulary(p["attr_cloth"], 5, "attribute")
    master, category = _parse_category_img(p["category_img"], len(cat_names))

    def aligned(key: str, names: list[str], *arrays: np.ndarray) -> list[np.ndarray]:
        order = _align(master, names, p[key], p["category_img"])
        return [a if order is None else a[order] for a in arrays]

    attributes, = aligned("attr_img", *_parse_attr_img(p["attr_img"], len(attr_names)))
    bbox, = aligned("bbox", *_parse_bbox(p["bbox"]))
    clothes, landmarks, visibility = aligned("landmarks", *_parse_landmarks(p["landmarks"]))
    part, = aligned("partition", *_parse_partition(p["partition"]))
    index = DeepFashionIndex(
        image_names=np.asarray(master, dtype=object), category=category, category_names=cat_names,
        category_types=cat_types, attributes=attributes, attribute_names=attr_names,
        attribute_types=attr_types, bbox=bbox, clothes_type=clothes, landmarks=landmarks,
        landmark_visibility=visibility, landmark_visible=visibility == 0, partition=part,
    )  # fmt: skip
    rows = np.arange(len(index)) if partition is None else np.flatnonzero(part == partition)
    if check_images:
        _check_images(root, index.image_names[rows], rows, p["category_img"])
    return index if partition is None else index.subset(rows)


def _check_images(root: Path, names: np.ndarray, rows: np.ndarray, anno: Path) -> None:
    missing = [(int(r), n) for r, n in zip(rows, names, strict=True) if not (root / n).is_file()]
    if missing:
        _, linenos = _read_rows(anno)
        shown = ", ".join(n for _, n in missing[:5])
        raise DataFormatError(anno, int(linenos[missing[0][0]]), f"{len(missing)} image files not found under {root}: {shown}")


# ----------------------------------------------------------------------------- torch dataset


class DeepFashionDataset(Dataset):
    """Samples of a :class:`DeepFashionIndex` for training and evaluation.

    Each sample is a dict::

        image             (3, H, W) float32, normalised with cfg.mean / cfg.std
        category          int64 scalar tensor, 0-based
        attributes        (A,) float32, 1 where the file says 1, else 0
        attributes_mask   (A,) float32, 1 where known (file 1 or -1), 0 where the file says 0
        landmarks         (8, 2) float32, (x / W, y / H) of the network input, in [0, 1]
        landmark_visible  (8,) float32, 1 if visible (code 0) and inside the crop, else 0
        index             int, the row of ``index`` this sample comes from

    Args:
        index: the annotations (e.g. ``read_deepfashion(root, "train")``).
        root: the directory that image names are relative to.
        transform: a joint image + landmark transform; None -> the eval preset for ``cfg``.
        cfg: the model's data config (input size, normalisation).
        bad_images: "fail" raises on an unreadable image; "skip" warns once per file, records it in
            ``bad_files`` (path -> reason) and returns the next readable sample instead. With
            DataLoader workers each worker keeps its own ``bad_files``.
    """

    def __init__(
        self,
        index: DeepFashionIndex,
        root: str | Path,
        transform: JointTransform | None = None,
        cfg: DataConfig | None = None,
        bad_images: str = "skip",
    ):
        if bad_images not in ("skip", "fail"):
            raise ValueError(f"bad_images must be 'skip' or 'fail', got {bad_images!r}")
        self.index, self.root = index, Path(root)
        self.cfg = cfg or DataConfig()
        self.transform = transform or build_joint_transforms(self.cfg, train=False)
        self.bad_images = bad_images
        self.bad_files: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        n = len(self)
        for k in range(n):
            j = (int(i) + k) % n
            path = self.root / str(self.index.image_names[j])
            try:
                image = load_image(path)
            except BadImageError as e:
                if self.bad_images == "fail":
                    raise
                if str(path) not in self.bad_files:
                    warnings.warn(f"skipping unreadable image {e}", stacklevel=2)
                    self.bad_files[str(path)] = e.reason
                continue
            return self._sample(j, image)
        raise RuntimeError(f"no readable image in the data set ({len(self.bad_files)} bad files)")

    def _sample(self, j: int, image) -> dict[str, torch.Tensor | int]:
        idx = self.index
        # DeepFashion gives integer pixel indices; +0.5 = pixel centres (landmark_transforms' convention).
        image_t, lm, vis = self.transform(image, idx.landmarks[j] + 0.5, idx.landmark_visible[j], idx.bbox[j])
        attrs = torch.from_numpy(idx.attributes[j].astype(np.float32))  # (A,) in {1, -1, 0}
        return {
            "image": image_t,  # (3, H, W)
            "category": torch.tensor(int(idx.category[j]), dtype=torch.int64),
            "attributes": (attrs > 0).float(),  # (A,)
            "attributes_mask": (attrs != 0).float(),  # (A,)
            "landmarks": lm.float(),  # (8, 2)
            "landmark_visible": vis.float(),  # (8,)
            "index": j,
        }
