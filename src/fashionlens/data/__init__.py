"""fashionlens.data: readers, transforms, datasets and statistics.

Readers return plain data sets (:class:`LabelledSet` for multi-label data, :class:`ClassificationSet`
for one class per image); :func:`build_transforms` derives the train / eval presets from a model's
:class:`DataConfig`; :class:`MultiLabelDataset` and :class:`ClassificationDataset` decode images
(via :func:`load_image`) into dict samples for a DataLoader.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it; imported on first use, so that a light module of this package
# (data/formats.py, data/errors.py: the command line imports them at start) does not import torch.
_EXPORTS = {
    "read_ccp": "ccp", "read_ccp_parts": "ccp", "DataConfig": "config",
    "ClassificationDataset": "datasets", "MultiLabelDataset": "datasets", "DataFormatError": "errors",
    "ClassificationSet": "image_folder", "read_image_folder": "image_folder",
    "BadImageError": "images", "load_image": "images",
    "LabelledSet": "multilabel", "Sample": "multilabel", "read_label_list": "multilabel",
    "read_multilabel": "multilabel", "select_top_labels": "multilabel", "split_dataset": "multilabel",
    "write_multilabel": "multilabel", "format_stats": "stats", "multilabel_stats": "stats",
    "build_transforms": "transforms", "draft_size": "transforms",
}  # fmt: skip

if TYPE_CHECKING:
    from fashionlens.data.ccp import read_ccp, read_ccp_parts
    from fashionlens.data.config import DataConfig
    from fashionlens.data.datasets import ClassificationDataset, MultiLabelDataset
    from fashionlens.data.errors import DataFormatError
    from fashionlens.data.image_folder import ClassificationSet, read_image_folder
    from fashionlens.data.images import BadImageError, load_image
    from fashionlens.data.multilabel import (
        LabelledSet,
        Sample,
        read_label_list,
        read_multilabel,
        select_top_labels,
        split_dataset,
        write_multilabel,
    )
    from fashionlens.data.stats import format_stats, multilabel_stats
    from fashionlens.data.transforms import build_transforms, draft_size


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = [
    "BadImageError",
    "ClassificationDataset",
    "ClassificationSet",
    "DataConfig",
    "DataFormatError",
    "LabelledSet",
    "MultiLabelDataset",
    "Sample",
    "build_transforms",
    "draft_size",
    "format_stats",
    "load_image",
    "multilabel_stats",
    "read_ccp",
    "read_ccp_parts",
    "read_image_folder",
    "read_label_list",
    "read_multilabel",
    "select_top_labels",
    "split_dataset",
    "write_multilabel",
]
