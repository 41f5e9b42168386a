"""fashionlens.data: readers, transforms, datasets and statistics.

Readers return plain data sets (:class:`LabelledSet` for multi-label data, :class:`ClassificationSet`
for one class per image); :func:`build_transforms` derives the train / eval presets from a model's
:class:`DataConfig`; :class:`MultiLabelDataset` and :class:`ClassificationDataset` decode images
(via :func:`load_image`) into dict samples for a DataLoader.
"""

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
