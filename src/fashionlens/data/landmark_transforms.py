"""Joint image + landmark transforms: every geometric change to the image moves the landmarks too.

Coordinate convention (used everywhere in this module): landmarks are *continuous* pixel
coordinates ``(x, y)``. Pixel column ``i`` covers ``[i, i + 1)`` and its centre is ``i + 0.5``; an
image of width W spans ``[0, W]``. In this convention every operation is exact:

- crop at integer offset (x0, y0):       ``x' = x - x0``
- resize from w to W:                    ``x' = x * W / w`` (PIL resizes centre-aligned, the same map)
- horizontal flip of an image of width W: ``x' = W - x`` (pixel ``i`` goes to ``W - 1 - i``; its
  centre ``i + 0.5`` goes to ``W - i - 0.5``), and each left/right landmark pair is swapped.

DeepFashion files give integer pixel indices; :class:`~fashionlens.data.datasets.DeepFashionDataset`
adds 0.5 to get pixel centres. Outputs are normalised to the network input: ``(x / W, y / H)`` in
[0, 1]; landmarks that a crop pushes outside the image become invisible (and are clipped to [0, 1]).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from fashionlens.data.config import DataConfig
from fashionlens.data.transforms import pil_filter
from fashionlens.errors import ConfigError

__all__ = [
    "FLIP_PAIRS",
    "JointTransform",
    "build_joint_transforms",
    "crop",
    "crop_box",
    "hflip",
    "resize",
]

# Left/right slot pairs of the 8 DeepFashion landmarks: collar, sleeve, waistline, hem.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 5), (6, 7))

Box = tuple[int, int, int, int]
Sequence4 = tuple[float, float, float, float] | list[float] | np.ndarray


def crop_box(
    bbox: Sequence4 | None,
    image_size: tuple[int, int],
    margin: float = 0.1,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
) -> Box:
    """The integer crop (x0, y0, x1, y1) around a bounding box, clamped to the image.

    Args:
        bbox: (x1, y1, x2, y2) in pixels, or None for the whole image.
        image_size: (width, height) of the image.
        margin: added on each side, as a fraction of the box width / height.
        scale: multiplies the (margined) box size around its centre (jitter).
        shift: (dx, dy) moves the centre by this fraction of the box size (jitter).

    Returns:
        (x0, y0, x1, y1) with 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height.
    """
    width, height = image_size
    if bbox is None:
        return 0, 0, width, height
    x1, y1, x2, y2 = (float(v) for v in bbox)
    w, h = (x2 - x1) * (1 + 2 * margin) * scale, (y2 - y1) * (1 + 2 * margin) * scale
    cx, cy = (x1 + x2) / 2 + shift[0] * w, (y1 + y2) / 2 + shift[1] * h
    x0 = min(max(int(np.floor(cx - w / 2)), 0), width - 1)
    y0 = min(max(int(np.floor(cy - h / 2)), 0), height - 1)
    xe = max(min(int(np.ceil(cx + w / 2)), width), x0 + 1)
    ye = max(min(int(np.ceil(cy + h / 2)), height), y0 + 1)
    return x0, y0, xe, ye


def crop(image: Image.Image, landmarks: np.ndarray, box: Box) -> tuple[Image.Image, np.ndarray]:
    """Crop to the integer ``box`` (x0, y0, x1, y1); landmarks (L, 2) move by (-x0, -y0)."""
    x0, y0 = box[0], box[1]
    return image.crop(box), landmarks - np.asarray([x0, y0], dtype=np.float32)


def resize(
    image: Image.Image, landmarks: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear"
) -> tuple[Image.Image, np.ndarray]:
    """Resize to ``size`` = (height, width); landmarks (L, 2) are scaled by the same factors."""
    out_h, out_w = size
    w, h = image.size
    scale = np.asarray([out_w / w, out_h / h], dtype=np.float32)
    return image.resize((out_w, out_h), pil_filter(interpolation)), landmarks * scale


def hflip(
    image: Image.Image,
    landmarks: np.ndarray,
    visible: np.ndarray,
    pairs: tuple[tuple[int, int], ...] = FLIP_PAIRS,
) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """Mirror the image; landmarks x -> W - x and every left/right pair swapped.

    Args:
        image: the image (width W).
        landmarks: (L, 2) continuous pixel coordinates.
        visible: (L,) bool.
        pairs: slot pairs to swap (left, right).

    Returns:
        The flipped image, landmarks (L, 2) and visibility (L,).
    """
    width = image.size[0]
    lm = landmarks.copy()
    lm[:, 0] = width - lm[:, 0]
    vis = visible.copy()
    for a, b in pairs:
        lm[[a, b]] = lm[[b, a]]
        vis[[a, b]] = vis[[b, a]]
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), lm, vis


class JointTransform:
    """Crop to the bounding box (+ margin, + optional jitter), resize, optional flip, normalise.

    Args:
        size: (height, width) of the output.
        mean: per-channel mean (pixels in [0, 1]).
        std: per-channel standard deviation.
        interpolation: "bilinear", "bicubic" or "nearest".
        margin: crop margin on each side as a fraction of the bounding box size.
        flip_p: probability of a horizontal flip.
        jitter_scale: the crop size is multiplied by a uniform factor in [1 - s, 1 + s].
        jitter_shift: the crop centre moves by a uniform fraction in [-t, t] of the crop size.
        flip_pairs: left/right landmark pairs swapped by a flip.

    Call with ``(image, landmarks (L, 2) pixel coords, visible (L,) bool, bbox or None)``; returns
    ``(image (3, H, W) float32, landmarks (L, 2) float32 in [0, 1], visible (L,) bool)``.
    """

    def __init__(
        self,
        size: tuple[int, int],
        mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        std: tuple[float, ...] = (0.229, 0.224, 0.225),
        interpolation: str = "bilinear",
        margin: float = 0.1,
        flip_p: float = 0.0,
        jitter_scale: float = 0.0,
        jitter_shift: float = 0.0,
        flip_pairs: tuple[tuple[int, int], ...] = FLIP_PAIRS,
    ):
        pil_filter(interpolation)  # an unknown name fails here, not at the first sample
        self.size = (int(size[0]), int(size[1]))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.interpolation = interpolation
        self.margin, self.flip_p = margin, flip_p
        self.jitter_scale, self.jitter_shift = jitter_scale, jitter_shift
        self.flip_pairs = flip_pairs

    def __repr__(self) -> str:
        return (f"JointTransform(size={self.size}, margin={self.margin}, flip_p={self.flip_p}, "
                f"jitter_scale={self.jitter_scale}, jitter_shift={self.jitter_shift}, "
                f"interpolation={self.interpolation!r})")  # fmt: skip

    def _uniform(self, half_width: float, generator: torch.Generator | None) -> float:
        if half_width <= 0:
            return 0.0
        return (float(torch.rand((), generator=generator)) * 2 - 1) * half_width

    def __call__(
        self,
        image: Image.Image,
        landmarks: np.ndarray,
        visible: np.ndarray,
        bbox: Sequence4 | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lm = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
        vis = np.asarray(visible, dtype=bool).reshape(-1)
        scale = 1.0 + self._uniform(self.jitter_scale, generator)
        shift = (self._uniform(self.jitter_shift, generator), self._uniform(self.jitter_shift, generator))
        box = crop_box(bbox, image.size, self.margin, scale, shift)
        image, lm = crop(image, lm, box)
        image, lm = resize(image, lm, self.size, self.interpolation)
        if self.flip_p > 0 and float(torch.rand((), generator=generator)) < self.flip_p:
            image, lm, vis = hflip(image, lm, vis, self.flip_pairs)
        out_h, out_w = self.size
        inside = (lm[:, 0] >= 0) & (lm[:, 0] <= out_w) & (lm[:, 1] >= 0) & (lm[:, 1] <= out_h)
        vis = vis & inside
        norm = np.clip(lm / np.asarray([out_w, out_h], dtype=np.float32), 0.0, 1.0)
        return self.to_tensor(image), torch.from_numpy(norm), torch.from_numpy(vis)

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> normalised float tensor (3, H, W)."""
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())  # (H, W, 3)
        x = x.permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
        return (x - self.mean) / self.std


def build_joint_transforms(cfg: DataConfig, train: bool, margin: float = 0.1) -> JointTransform:
    """Train / eval presets. Eval: crop + resize only. Train: + flip (p 0.5) and crop jitter.

    Example:
        >>> t = build_joint_transforms(DataConfig(input_size=(224, 224)), train=False)
        >>> t.flip_p, t.jitter_scale
        (0.0, 0.0)
    """
    if cfg.resize != "squash":
        raise ConfigError(f"DeepFashion training crops the bounding box and squashes it to the input; "
                         f"data.resize={cfg.resize!r} is not supported with landmarks (use squash)")
    common = dict(size=cfg.input_size, mean=cfg.mean, std=cfg.std, interpolation=cfg.interpolation,
                  margin=margin)
    if not train:
        return JointTransform(**common)
    return JointTransform(**common, flip_p=0.5, jitter_scale=0.1, jitter_shift=0.05)
