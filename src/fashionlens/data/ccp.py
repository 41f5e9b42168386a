"""Clothing Co-Parsing (CCP) image-level tags, read from the data set's native layout.

Layout::

    root/label_list.mat                    variable ``label_list``: 1 x 59 cell array of names
    root/photos/NNNN.jpg
    root/annotations/image-level/NNNN.mat  variable ``tags``: indices into ``label_list``

The tags are **0-based** indices (checked on the released files: the values span 0..58, and every
photo carries 0 = ``null``, 19 = ``hair`` and 41 = ``skin``, the three non-clothing labels). Those
three are dropped, leaving 56 clothing and accessory labels; the vocabulary keeps all 56 in
``label_list`` order even when some never occur. CCP has no main label.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io

from fashionlens.data.errors import DataFormatError
from fashionlens.data.multilabel import LabelledSet, Sample

DROPPED_LABELS = ("null", "skin", "hair")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _load_variable(path: Path, name: str) -> np.ndarray:
    """One variable of a MATLAB file; a corrupt file or a missing variable is a DataFormatError."""
    try:
        return np.asarray(scipy.io.loadmat(path, variable_names=[name])[name])
    except KeyError:
        raise DataFormatError(path, None, f"cannot read variable '{name}' (not in the file)") from None
    # scipy reports corrupt or unsupported files with many types (MatReadError, NotImplementedError
    # for v7.3 HDF5 files, zlib.error, struct.error, ...): all mean "not a readable .mat file".
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(path, None, f"cannot read variable '{name}' ({type(e).__name__}: {e})") from None


def _cell_text(path: Path, cell) -> str:
    value = np.asarray(cell).ravel()
    if not value.size:
        return ""
    if not isinstance(value[0], str):
        raise DataFormatError(path, None, f"variable 'label_list': expected a cell array of names, found {value[0]!r}")
    return str(value[0])


def read_ccp_label_list(path: str | Path) -> list[str]:
    """The 59 label names of ``label_list.mat``, in index order."""
    path = Path(path)
    return [_cell_text(path, c) for c in _load_variable(path, "label_list").ravel()]


def _read_tags(path: Path, num_labels: int) -> list[int]:
    tags = _load_variable(path, "tags")
    if tags.dtype.kind not in "iub" and not (tags.dtype.kind == "f" and np.isfinite(tags).all()
                                            and (tags == np.round(tags)).all()):  # fmt: skip
        raise DataFormatError(path, None, f"field 'tags': expected integer label indices, found {tags.dtype} {tags.ravel()[:5]}")
    indices = sorted({int(t) for t in tags.ravel()})
    if indices and (indices[0] < 0 or indices[-1] >= num_labels):
        raise DataFormatError(
            path, None, f"field 'tags': index out of range {indices}; expected 0-based indices below {num_labels}"
        )
    return indices


def _photo_index(folder: Path) -> dict[str, Path]:
    """Photo file by stem, from one directory listing (fast: no per-file stat)."""
    if not folder.is_dir():
        raise DataFormatError(f"photos folder not found: {folder}")
    return {
        os.path.splitext(e.name)[0]: Path(e.path)
        for e in os.scandir(folder)
        if os.path.splitext(e.name)[1].lower() in PHOTO_EXTENSIONS
    }


def read_ccp(root: str | Path, drop: Sequence[str] = DROPPED_LABELS) -> LabelledSet:
    """Read CCP's image-level annotations as a multi-label data set.

    Photos without an annotation are skipped (CCP's pixel-level subset has none); an annotation
    without a photo is an error. An annotated photo whose tags are all dropped keeps an empty label
    set (one such photo in the released data).

    Args:
        root: the CCP folder (``photos/``, ``annotations/image-level/``, ``label_list.mat``).
        drop: label names removed from the vocabulary and from every image.

    Returns:
        The data set (``main`` is None everywhere), sorted by file name.

    Raises:
        DataFormatError: missing folders or files, unreadable ``.mat``, out-of-range tag index.
    """
    root = Path(root)
    names = read_ccp_label_list(root / "label_list.mat")
    ann_dir = root / "annotations" / "image-level"
    if not ann_dir.is_dir():
        raise DataFormatError(f"annotation folder not found: {ann_dir}")
    photos = _photo_index(root / "photos")
    dropped = set(drop)
    samples = []
    for ann in sorted(Path(e.path) for e in os.scandir(ann_dir) if e.name.endswith(".mat")):
        photo = photos.get(ann.stem)
        if photo is None:
            raise DataFormatError(ann, None, f"annotation without a photo; expected {root / 'photos' / ann.stem}.jpg")
        labels = tuple(names[i] for i in _read_tags(ann, len(names)) if names[i] not in dropped)
        samples.append(Sample(photo, labels, None))
    if not samples:
        raise DataFormatError(f"no annotations (*.mat) in {ann_dir}")
    return LabelledSet(samples, [n for n in names if n not in dropped], root)
