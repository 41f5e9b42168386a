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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fashionlens.data.config import DataConfig
from fashionlens.data.image_folder import ClassificationSet
from fashionlens.data.images import BadImageError, load_image, load_image_and_orientation, upright_annotations
from fashionlens.data.landmark_transforms import FLIP_PAIRS, JointTransform, build_joint_transforms
from fashionlens.data.multilabel import LabelledSet
from fashionlens.data.transforms import build_transforms, draft_size
from fashionlens.errors import ConfigError

if TYPE_CHECKING:  # a type only: inference imports this package without the DeepFashion reader
    from fashionlens.data.deepfashion import DeepFashionIndex

logger = logging.getLogger(__name__)

Transform = Callable[[Image.Image], torch.Tensor]
BAD_IMAGE_POLICIES = ("skip", "fail")


class _ImageDataset(Dataset):
    """Shared decoding and bad-image handling; subclasses add their targets in ``_targets``."""

    def __init__(self, paths: list[Path], transform: Transform | None, cfg: DataConfig, bad_images: str):
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
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

    def _sample(self, index: int, img: Image.Image) -> dict[str, torch.Tensor]:
        return {"image": self.transform(img), **self._targets(index)}

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
                return {**self._sample(j, img), "index": j}
        raise BadImageError(str(self.paths[index]), f"all {n} images of the dataset are bad")


class MultiLabelDataset(_ImageDataset):
    """Multi-label samples ``{"image": (3, H, W) float32, "labels": (C,) float32 multi-hot, "index": int}``
    (plus any ``extra_targets`` rows of the same photo, e.g. ``styles`` and ``styles_mask``).

    Args:
        labelled_set: the data set (vocabulary order = label order).
        transform: PIL image -> (3, H, W) tensor; default: the eval preset of ``cfg``.
        cfg: the model's data config (draft-mode decoding size, default transform).
        bad_images: "skip" (warn once, return the next good sample) or "fail" (raise BadImageError).
        extra_targets: name -> (N, ...) array of more targets of the same photos.
        masks: per photo, its pixel-level annotation (a CCP ``.mat``) or None; with ``mask_lut`` each
            sample gets ``parsing``: (H / 4, W / 4) int64 garment groups through the photo's own crop
            and flip, 255 where unlabelled (every pixel of a photo without a mask).
        mask_lut: mask label index -> group index (``fashionlens.garments.groups.label_to_group``).
    """

    def __init__(self, labelled_set: LabelledSet, transform: Transform | None, cfg: DataConfig,
                 bad_images: str = "skip", extra_targets: dict[str, np.ndarray] | None = None,
                 masks: list[Path | None] | None = None, mask_lut: np.ndarray | None = None):
        super().__init__([s.path for s in labelled_set.samples], transform, cfg, bad_images)
        if masks is not None and (mask_lut is None or len(masks) != len(self.paths)):
            raise ValueError(f"masks: expected one entry per photo ({len(self.paths)}) and a mask_lut")
        self.masks, self.mask_lut = masks, mask_lut
        self.label_names = list(labelled_set.label_names)
        self.targets = torch.from_numpy(labelled_set.targets())  # (N, C) float32
        # more targets of the same photos, e.g. {"styles": (N, S), "styles_mask": (N, S)}
        self.extra_targets = {k: torch.as_tensor(v) for k, v in (extra_targets or {}).items()}
        for key, value in self.extra_targets.items():
            if len(value) != len(self.paths):
                raise ValueError(f"extra target {key!r} has {len(value)} rows for {len(self.paths)} photos")

    def _targets(self, index: int) -> dict[str, torch.Tensor]:
        return {"labels": self.targets[index], **{k: v[index] for k, v in self.extra_targets.items()}}

    def _sample(self, index: int, img: Image.Image) -> dict[str, torch.Tensor]:
        if self.masks is None:
            return super()._sample(index, img)
        from fashionlens.data.ccp import read_ccp_mask
        from fashionlens.data.transforms import MASK_IGNORE, MASK_STRIDE

        path = self.masks[index]
        if path is None:
            height, width = self.cfg.input_size
            image = self.transform(img)
            target = torch.full((height // MASK_STRIDE, width // MASK_STRIDE), MASK_IGNORE, dtype=torch.int64)
        else:
            groups = self.mask_lut[read_ccp_mask(path, len(self.mask_lut))]  # (H, W) group per pixel
            mask = Image.fromarray(np.ascontiguousarray(groups))  # mode "L"
            if mask.size != img.size:  # the photo was decoded in JPEG draft mode, at a reduced scale
                mask = mask.resize(img.size, Image.Resampling.NEAREST)
            image, target = self.transform.with_mask(img, mask)
        return {"image": image, "parsing": target, **self._targets(index)}


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
        # more targets that follow from the class: name -> (K, ...) tensor (e.g. a product photo's implied
        # tags)
        self.class_targets = class_targets or {}

    def _targets(self, index: int) -> dict[str, torch.Tensor]:
        k = self.targets[index]
        return {"category": k, **{name: t[k] for name, t in self.class_targets.items()}}


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
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"bad_images must be 'skip' or 'fail', got {bad_images!r}")
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
            if str(path) in self.bad_files:
                continue
            try:
                image, orientation = load_image_and_orientation(path)
            except BadImageError as e:
                if self.bad_images == "fail":
                    raise
                warnings.warn(f"skipping unreadable image {e}", stacklevel=2)
                self.bad_files[str(path)] = e.reason
                continue
            return self._sample(j, image, orientation)
        raise BadImageError(
            str(self.root), f"no readable image in the data set ({len(self.bad_files)} bad files)"
        )

    def _sample(self, j: int, image, orientation: int = 1) -> dict[str, torch.Tensor | int]:
        idx = self.index
        # DeepFashion gives integer pixel indices; +0.5 = pixel centres (landmark_transforms' convention).
        lm, vis, bbox = upright_annotations(
            idx.landmarks[j] + 0.5, idx.landmark_visible[j], idx.bbox[j], orientation, image.size, FLIP_PAIRS
        )  # EXIF: same rotation
        image_t, lm, vis = self.transform(image, lm, vis, bbox)
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
