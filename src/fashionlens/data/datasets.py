"""torch Datasets over the readers' data sets; every sample is a dict of named tensors.

Bad images (empty, truncated, not an image) are either fatal (``bad_images="fail"``) or skipped
(``"skip"``, the default): the dataset warns once per file, remembers it in ``bad_files`` and
returns the next good sample instead (index + 1, + 2, ... wrapping around), so a DataLoader batch
still has ``batch_size`` samples of the same shape and training never stops on one broken JPEG.
The returned ``"index"`` is the index of the sample actually returned. With DataLoader workers
each worker process has its own ``bad_files``; the main process's set only reflects its own loads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from fashionlens.data.config import DataConfig
from fashionlens.data.image_folder import ClassificationSet
from fashionlens.data.images import BadImageError, load_image
from fashionlens.data.multilabel import LabelledSet
from fashionlens.data.transforms import build_transforms, draft_size

logger = logging.getLogger(__name__)

Transform = Callable[[Image.Image], torch.Tensor]
BAD_IMAGE_POLICIES = ("skip", "fail")


class _ImageDataset(Dataset):
    """Shared decoding and bad-image handling; subclasses add their targets in ``_targets``."""

    def __init__(self, paths: list[Path], transform: Transform | None, cfg: DataConfig, bad_images: str):
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
        self.paths = paths
        self.cfg = cfg
        self.transform = transform if transform is not None else build_transforms(cfg, train=False)
        self.bad_images = bad_images
        self.bad_files: set[Path] = set()
        self._draft = draft_size(cfg)

    def __len__(self) -> int:
        return len(self.paths)

    def _targets(self, index: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _load(self, index: int) -> Image.Image | None:
        """The decoded image, or None when it is bad and bad images are skipped."""
        path = self.paths[index]
        if path in self.bad_files:
            return None
        try:
            return load_image(path, draft_size=self._draft)
        except BadImageError as e:
            if self.bad_images == "fail":
                raise
            self.bad_files.add(path)
            logger.warning("skipping bad image %s (%s)", path, e.reason)
            return None

    def __getitem__(self, index: int) -> dict:
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        for offset in range(n):
            j = (index + offset) % n
            img = self._load(j)
            if img is not None:
                return {"image": self.transform(img), **self._targets(j), "index": j}
        raise BadImageError(str(self.paths[index]), f"all {n} images of the dataset are bad")


class MultiLabelDataset(_ImageDataset):
    """Multi-label samples ``{"image": (3, H, W) float32, "labels": (C,) float32 multi-hot, "index": int}``.

    Args:
        labelled_set: the data set (vocabulary order = label order).
        transform: PIL image -> (3, H, W) tensor; default: the eval preset of ``cfg``.
        cfg: the model's data config (draft-mode decoding size, default transform).
        bad_images: "skip" (warn once, return the next good sample) or "fail" (raise BadImageError).
    """

    def __init__(self, labelled_set: LabelledSet, transform: Transform | None, cfg: DataConfig,
                 bad_images: str = "skip"):
        super().__init__([s.path for s in labelled_set.samples], transform, cfg, bad_images)
        self.label_names = list(labelled_set.label_names)
        self.targets = torch.from_numpy(labelled_set.targets())  # (N, C) float32

    def _targets(self, index: int) -> dict[str, torch.Tensor]:
        return {"labels": self.targets[index]}


class ClassificationDataset(_ImageDataset):
    """Single-label samples ``{"image": (3, H, W) float32, "category": int64 scalar, "index": int}``.

    Args:
        classification_set: the data set.
        transform: PIL image -> (3, H, W) tensor; default: the eval preset of ``cfg``.
        cfg: the model's data config (draft-mode decoding size, default transform).
        bad_images: "skip" (warn once, return the next good sample) or "fail" (raise BadImageError).
    """

    def __init__(self, classification_set: ClassificationSet, transform: Transform | None, cfg: DataConfig,
                 bad_images: str = "skip", class_targets: dict[str, torch.Tensor] | None = None):
        super().__init__([p for p, _ in classification_set.samples], transform, cfg, bad_images)
        self.class_names = list(classification_set.class_names)
        self.targets = torch.from_numpy(classification_set.targets())  # (N,) int64
        # more targets that follow from the class: name -> (K, ...) tensor (e.g. a product photo's implied tags)
        self.class_targets = class_targets or {}

    def _targets(self, index: int) -> dict[str, torch.Tensor]:
        k = self.targets[index]
        return {"category": k, **{name: t[k] for name, t in self.class_targets.items()}}
