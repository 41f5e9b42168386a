"""Clothing Co-Parsing (CCP), read from the data set's native layout: image-level tags and pixel masks.

Layout::

    root/label_list.mat                    variable ``label_list``: 1 x 59 cell array of names
    root/photos/NNNN.jpg
    root/annotations/image-level/NNNN.mat  variable ``tags``: indices into ``label_list``
    root/annotations/pixel-level/NNNN.mat  variable ``groundtruth``: uint8 H x W mask of indices

The tags and mask values are **0-based** indices (checked on the released files: the values span
0..58, and every photo carries 0 = ``null``, 19 = ``hair`` and 41 = ``skin``, the three
non-clothing labels). Those three are dropped, leaving 56 clothing and accessory labels; the
vocabulary keeps all 56 in ``label_list`` order even when some never occur. CCP has no main label.

A pixel-level photo's tags are the labels covering at least ``min_pixels`` pixels of its mask
(default :data:`MIN_MASK_PIXELS` = 100, about 0.02 % of a 550 x 832 photo: enough to drop the
stray pixels of an annotation brush, small enough to keep earrings and rings, which cover a few
hundred pixels). On the released 753 masks this gives 5.26 tags per photo (5.27 with any pixel).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from fashionlens.data.errors import DataFormatError, Problems, report
from fashionlens.data.images import IMAGE_EXTENSIONS, BadImageError, probe_image
from fashionlens.data.multilabel import LabelledSet, Sample
from fashionlens.errors import ConfigError

DROPPED_LABELS = ("null", "skin", "hair")
ANNOTATION_KINDS = ("image-level", "pixel-level")
ANNOTATION_CHOICES = ("both", *ANNOTATION_KINDS)
MIN_MASK_PIXELS = 100


def _load_variable(path: Path, name: str) -> np.ndarray:
    """One variable of a MATLAB file; a missing or corrupt file or a missing variable is a DataFormatError."""
    if not path.is_file():
        raise DataFormatError(
            path, None, "file not found" if not path.exists() else "not a file", kind="file"
        )
    try:
        return np.asarray(scipy.io.loadmat(path, variable_names=[name])[name])
    except KeyError:
        raise DataFormatError(path, None, f"cannot read variable '{name}' (not in the file)") from None
    # scipy reports corrupt or unsupported files with many types (MatReadError, NotImplementedError
    # for v7.3 HDF5 files, zlib.error, struct.error, ...): all mean "not a readable .mat file".
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(
            path, None, f"cannot read variable '{name}' ({type(e).__name__}: {e})"
        ) from None


def _cell_text(path: Path, cell) -> str:
    value = np.asarray(cell).ravel()
    if not value.size:
        return ""
    if not isinstance(value[0], str):
        raise DataFormatError(
            path, None, f"expected a cell array of names, found {value[0]!r}", field="label_list"
        )
    return str(value[0])


def read_ccp_label_list(path: str | Path) -> list[str]:
    """The 59 label names of ``label_list.mat``, in index order."""
    path = Path(path)
    return [_cell_text(path, c) for c in _load_variable(path, "label_list").ravel()]


def _integer_values(path: Path, field: str, values: np.ndarray) -> None:
    if values.dtype.kind not in "iub" and not (values.dtype.kind == "f" and np.isfinite(values).all()
                                              and (values == np.round(values)).all()):  # fmt: skip
        raise DataFormatError(
            path,
            None,
            f"expected integer label indices, found {values.dtype} {values.ravel()[:5]}",
            field=field,
        )


def _read_tags(path: Path, num_labels: int) -> list[int]:
    tags = _load_variable(path, "tags")
    _integer_values(path, "tags", tags)
    indices = sorted({int(t) for t in tags.ravel()})
    if indices and (indices[0] < 0 or indices[-1] >= num_labels):
        raise DataFormatError(
            path,
            None,
            f"tag indices {indices} outside 0..{num_labels - 1}; expected 0-based indices into "
            "label_list.mat",
            kind="label",
            field="tags",
        )
    return indices


def read_ccp_mask(path: str | Path, num_labels: int, photo: str | Path | None = None) -> np.ndarray:
    """One pixel-level annotation: the (H, W) uint8 mask of 0-based label indices.

    Args:
        path: ``annotations/pixel-level/NNNN.mat``.
        num_labels: the vocabulary size (59); every value must be below it.
        photo: the photo the mask belongs to; when given, the mask must have its (stored) size.

    Raises:
        DataFormatError: unreadable file, no ``groundtruth``, not a 2-D integer array, an index out
            of range, or a size that differs from the photo's, each naming ``path``.
    """
    path = Path(path)
    mask = _load_variable(path, "groundtruth")
    if mask.ndim != 2 or not mask.size:
        raise DataFormatError(
            path, None, f"expected a 2-D H x W mask, found shape {mask.shape}", field="groundtruth"
        )
    _integer_values(path, "groundtruth", mask)
    lo, hi = int(mask.min()), int(mask.max())
    if lo < 0 or hi >= num_labels:
        raise DataFormatError(
            path,
            None,
            f"label index {lo if lo < 0 else hi} out of range; expected 0-based indices below {num_labels}",
            kind="label",
            field="groundtruth",
        )
    if photo is not None:
        try:
            w, h = probe_image(photo, limit=False)  # a photo over the pixel limit is refused when decoded
        except BadImageError as e:
            raise DataFormatError(
                path, None, f"cannot read the size of its photo {photo} ({e.reason})"
            ) from None
        if mask.shape != (h, w):
            raise DataFormatError(
                path,
                None,
                f"mask is {mask.shape[1]}x{mask.shape[0]} pixels but its photo "
                f"{Path(photo).name} is {w}x{h}; expected the same size",
                kind="size",
            )
    return mask.astype(np.uint8, copy=False)


def mask_label_areas(mask: np.ndarray, num_labels: int) -> np.ndarray:
    """Pixels per label index, (num_labels,) int64."""
    return np.bincount(mask.ravel(), minlength=num_labels)[:num_labels]


@dataclass(frozen=True)
class GarmentRegion:
    """One label's region in a pixel-level mask.

    Attributes:
        label: the label name (e.g. ``"skirt"``).
        index: its 0-based index in ``label_list.mat``.
        area: pixels of the label.
        box: ``(x1, y1, x2, y2)`` pixel indices of the tightest box, both ends inclusive.
    """

    label: str
    index: int
    area: int
    box: tuple[int, int, int, int]


def garment_regions(mask: np.ndarray, names: Sequence[str], drop: Sequence[str] = DROPPED_LABELS,
                    min_pixels: int = MIN_MASK_PIXELS) -> list[GarmentRegion]:  # fmt: skip
    """The labels of a mask with at least ``min_pixels`` pixels, with their boxes, in index order."""
    areas = mask_label_areas(mask, len(names))
    dropped = set(drop)
    regions = []
    for k in np.flatnonzero(areas >= max(int(min_pixels), 1)):
        if names[k] in dropped:
            continue
        ys, xs = np.nonzero(mask == k)
        regions.append(
            GarmentRegion(
                names[k], int(k), int(areas[k]), (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
            )
        )
    return regions


def photo_index(folder: Path, problems: Problems | None = None) -> dict[str, Path] | None:
    """Photo file by stem, from one directory listing (fast: no per-file stat); None: no folder."""
    if not folder.is_dir():
        report(problems, DataFormatError(folder, None, "folder not found", kind="file"))
        return None
    return {
        os.path.splitext(e.name)[0]: Path(e.path)
        for e in os.scandir(folder)
        if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
    }


def _annotation_files(folder: Path) -> list[Path]:
    return sorted(Path(e.path) for e in os.scandir(folder) if e.name.endswith(".mat"))


def _mask_tags(ann: Path, photo: Path | None, num_labels: int, min_pixels: int) -> list[int]:
    areas = mask_label_areas(read_ccp_mask(ann, num_labels, photo), num_labels)
    return np.flatnonzero(areas >= max(int(min_pixels), 1)).tolist()


def _attempt(call: Callable[[], list[int]]) -> list[int] | DataFormatError:
    """``call()``, or the DataFormatError it raised (reported in file order by the caller)."""
    try:
        return call()
    except DataFormatError as e:
        return e


def read_ccp_parts(
    root: str | Path,
    drop: Sequence[str] = DROPPED_LABELS,
    annotations: str = "both",
    min_pixels: int = MIN_MASK_PIXELS,
    workers: int = 4,
    problems: Problems | None = None,
) -> dict[str, LabelledSet]:
    """Read CCP's annotations as one multi-label data set per annotation kind.

    Photos without an annotation are skipped; an annotation without a photo is an error. An
    annotated photo whose tags are all dropped keeps an empty label set (one such photo in the
    released image-level data). The ``pixel-level`` folder is optional (older copies of CCP lack it).

    Args:
        root: the CCP folder (``photos/``, ``annotations/``, ``label_list.mat``).
        drop: label names removed from the vocabulary and from every image.
        annotations: "both", "image-level" or "pixel-level".
        min_pixels: a mask label with fewer pixels is not a tag of that photo.
        workers: threads reading the masks (decompression releases the GIL).
        problems: None (strict: the first problem raises) or a collector: every problem is recorded
            there and reading goes on; the parts then hold the annotations that could be read.

    Returns:
        ``{"image-level": set, "pixel-level": set}`` (only the kinds asked for and present), each
        sorted by file name, all with the same 56-label vocabulary.

    Raises:
        DataFormatError: strict only: missing folders or files, an unreadable ``.mat``, an
            out-of-range index, a mask whose size differs from its photo's.
    """
    if annotations not in ANNOTATION_CHOICES:
        raise ConfigError(
            f"annotations (data.ccp_annotations) must be one of {ANNOTATION_CHOICES}, got {annotations!r}"
        )
    root = Path(root)
    label_file = root / "label_list.mat"
    names: list[str] | None = None
    try:
        names = read_ccp_label_list(label_file)
    except DataFormatError as e:
        report(problems, e)
    if problems is not None and label_file.is_file():
        problems.files.add(str(label_file))
    photos = photo_index(root / "photos", problems)
    kinds = ANNOTATION_KINDS if annotations == "both" else (annotations,)
    folders = {k: root / "annotations" / k for k in kinds}
    if not any(f.is_dir() for f in folders.values()):
        first, *others = folders.values()
        nor = f" (nor {' or '.join(str(f) for f in others)})" if others else ""
        report(problems, DataFormatError(first, None, f"folder not found{nor}", kind="file"))
        return {}
    if photos is None:  # collecting (strict: raised)
        return {}
    n_labels = len(names) if names is not None else 1 << 30  # without label_list.mat: parse only
    dropped = set(drop)
    parts = {}
    for kind, folder in folders.items():
        if not folder.is_dir():
            if annotations != "both" or kind == "image-level":
                report(problems, DataFormatError(folder, None, "folder not found", kind="file"))
            continue
        anns = _annotation_files(folder)
        if problems is not None:
            problems.files.update(str(a) for a in anns)
        for ann in anns:
            if ann.stem not in photos:
                expected = f"expected {root / 'photos' / ann.stem}.jpg"
                report(problems, DataFormatError(ann, None, f"annotation without a photo; {expected}",
                                                 kind="missing_image"))  # fmt: skip
        if kind == "image-level":
            tags = [_attempt(lambda a=ann: _read_tags(a, n_labels)) for ann in anns]
        else:

            def mask_tags(a: Path, n: int = min(n_labels, 256)) -> list[int] | DataFormatError:
                return _attempt(lambda: _mask_tags(a, photos.get(a.stem), n, min_pixels))

            with ThreadPoolExecutor(max(1, workers)) as pool:
                tags = list(pool.map(mask_tags, anns))
        for t in tags:
            if isinstance(t, DataFormatError):
                report(problems, t)
        if not anns:
            report(problems, DataFormatError(folder, None, "no annotations (*.mat)", kind="file"))
        if names is None:  # collecting without label names: nothing to name the tags with
            continue
        samples = [
            Sample(photos[a.stem], tuple(names[i] for i in t if names[i] not in dropped), None)
            for a, t in zip(anns, tags, strict=True)
            if a.stem in photos and not isinstance(t, DataFormatError)
        ]
        if samples:
            parts[kind] = LabelledSet(samples, [n for n in names if n not in dropped], root)
    return parts


def read_ccp(
    root: str | Path,
    drop: Sequence[str] = DROPPED_LABELS,
    annotations: str = "both",
    min_pixels: int = MIN_MASK_PIXELS,
) -> LabelledSet:
    """Read CCP's image-level and pixel-level annotations as one multi-label data set.

    The released data has 821 image-level and 753 pixel-level photos (1,574 in all). See
    :func:`read_ccp_parts` for the arguments; a photo annotated both ways (none in the released
    data) appears twice.

    Returns:
        The data set (``main`` is None everywhere), sorted by file name.

    Example:
        >>> ds = read_ccp("../shared/data/ccp")  # doctest: +SKIP
        >>> len(ds), len(ds.label_names)  # doctest: +SKIP
        (1574, 56)
    """
    parts = read_ccp_parts(root, drop, annotations, min_pixels)
    samples = sorted((s for p in parts.values() for s in p.samples), key=lambda s: s.path.name)
    first = next(iter(parts.values()))
    return LabelledSet(samples, list(first.label_names), first.root)
