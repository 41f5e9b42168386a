"""Explicit train / eval image presets derived from a model's :class:`DataConfig`.

Eval resizes the *whole* photo to ``cfg.input_size`` (H, W), without a centre crop: garments and
accessories (shoes, hats, bags) often sit at the border of fashion photos, and a crop would cut
exactly the labels being predicted. With ``cfg.resize == "squash"`` (the default) the photo is
stretched to fill the input, so its aspect ratio is lost; with ``"letterbox"`` it is scaled to fit
inside the input and centred on a mean-colour canvas (:func:`letterbox_box`), so a landscape photo
in a portrait input keeps its shape (a pair of shorts squeezed sideways looks like trousers);
``cfg.max_stretch`` lets letterboxing stretch a photo a little first, so that only photos far from
the input's shape are padded.

Train takes a random crop of 60-100 % of the area whose aspect ratio is the photo's own (times a
mild jitter), resizes it to (H, W) the same way as eval does, flips it horizontally half of the
time and jitters brightness, contrast and saturation. Keeping the photo's aspect in the crop means
the final resize stretches shapes by the same factor as the eval resize does, so train and eval
images look alike.

Both are plain picklable callables (PIL image -> float tensor (3, H, W)), usable in DataLoader
workers; randomness comes from torch's generator, which DataLoader seeds per worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from fashionlens.data.config import DataConfig, check_resize
from fashionlens.errors import ConfigError

_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


MASK_IGNORE = 255  # a mask pixel without a label (letterbox padding, photos without a mask)
MASK_STRIDE = 4  # mask targets are a quarter of the network input's size


def pil_filter(name: str) -> Image.Resampling:
    """The PIL resampling filter called ``name`` ("bilinear", "bicubic", "nearest", "lanczos")."""
    try:
        return _FILTERS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown interpolation {name!r}; expected one of {sorted(_FILTERS)}") from None


def draft_size(cfg: DataConfig) -> tuple[int, int]:
    """(width, height) to pass to ``load_image(..., draft_size=...)`` for this config.

    JPEG draft mode then decodes at the smallest DCT scale still at least the network input.
    """
    height, width = cfg.input_size
    return int(width), int(height)


def letterbox_box(
    width: int, height: int, size: tuple[int, int], max_stretch: float = 1.0
) -> tuple[int, int, int, int]:
    """Where a ``width`` x ``height`` photo lands when letterboxed into ``size`` = (H, W).

    The photo is first stretched towards the input's aspect ratio by at most ``max_stretch``, then
    scaled to fit inside the input; the rest is padding.

    Returns:
        (left, top, w, h): the photo is resized to w x h and pasted with its top-left corner at
        (left, top); (0, 0, W, H) when it fills the input.

    Example:
        >>> letterbox_box(400, 300, (320, 224))  # landscape photo, portrait input: bands top and bottom
        (0, 76, 224, 168)
        >>> letterbox_box(400, 300, (320, 224), max_stretch=1.25)  # 1.25x taller first: 224 x 210
        (0, 55, 224, 210)
    """
    out_h, out_w = size
    mismatch = (height / width) / (out_h / out_w)  # > 1: the photo is taller than the input
    stretch = min(max(mismatch, 1.0 / max_stretch), max_stretch)
    height = height / stretch  # the stretched photo's height, in the photo's width units
    scale = min(out_w / width, out_h / height)
    w = min(out_w, max(1, round(width * scale)))
    h = min(out_h, max(1, round(height * scale)))
    return (out_w - w) // 2, (out_h - h) // 2, w, h


def input_to_photo(xy: np.ndarray, photo_size: tuple[int, int], cfg: DataConfig) -> np.ndarray:
    """Map (..., 2) points (x, y), normalised to [0, 1] over the network input, to photo pixels.

    With letterboxing, a point on the padding is moved to the nearest edge of the photo.

    Args:
        xy: normalised input coordinates, e.g. landmark heatmap peaks.
        photo_size: (width, height) of the photo the input was made from.
        cfg: the model's data config (input size and resize mode).

    Example:
        >>> cfg = DataConfig(input_size=(320, 224), resize="letterbox")
        >>> input_to_photo(np.array([[0.5, 76 / 320]]), (400, 300), cfg)  # top edge of the photo's band
        array([[200.,   0.]])
    """
    width, height = photo_size
    xy = np.asarray(xy, dtype=np.float64)
    if cfg.resize == "squash":
        return xy * np.array([width, height])
    out_h, out_w = cfg.input_size
    left, top, w, h = letterbox_box(width, height, cfg.input_size, cfg.max_stretch)
    x = (xy[..., 0] * out_w - left) * width / w
    y = (xy[..., 1] * out_h - top) * height / h
    return np.stack([np.clip(x, 0, width), np.clip(y, 0, height)], axis=-1)


def normalize_pixels(pixels: np.ndarray, mean, std) -> np.ndarray:
    """uint8 RGB pixels (..., H, W, 3) -> float32 (..., 3, H, W), scaled to [0, 1] then ``(x - mean) / std``.

    Computed in numpy: torch would split these small element-wise ops over its intra-op threads,
    which on a busy machine costs far more than the arithmetic (measured 7x slower on 2 cores).
    One image (H, W, 3) or a batch (B, H, W, 3) gives the same numbers per image.
    """
    mean = np.asarray(mean, dtype=np.float32).reshape(3)
    std = np.asarray(std, dtype=np.float32).reshape(3)
    scale = 1.0 / (255.0 * std)  # float32, as the eval transform always computed it
    shift = mean / std
    x = np.asarray(pixels, dtype=np.float32) * scale - shift  # (..., H, W, 3)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def to_normalized_tensor(img: Image.Image, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """RGB PIL image -> float32 (3, H, W), scaled to [0, 1] then ``(x - mean) / std`` (see
    :func:`normalize_pixels`)."""
    return torch.from_numpy(normalize_pixels(np.asarray(img), mean.numpy(), std.numpy()))


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of x (3, H, W) -> (1, H, W)."""
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)


class EvalTransform:
    """Resize the whole image to ``size`` (H, W), no crop; to tensor; normalise.

    Args:
        size: (height, width) of the output.
        mean: per-channel mean, in [0, 1] units.
        std: per-channel standard deviation.
        interpolation: resize filter name.
        resize: "squash" (stretch to fill) or "letterbox" (fit inside, pad with the mean colour).
        max_stretch: letterbox only: stretch towards the input's aspect by up to this, then pad.
    """

    def __init__(
        self,
        size: tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        interpolation: str = "bilinear",
        resize: str = "squash",
        max_stretch: float = 1.0,
    ):
        check_resize(resize, max_stretch)
        self.size = (int(size[0]), int(size[1]))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.filter = pil_filter(interpolation)
        self.resize, self.max_stretch = resize, max_stretch
        self._pad = tuple(round(255 * v) for v in mean)  # normalises to (about) zero

    def fit(self, img: Image.Image, box: tuple[int, int, int, int] | None = None,
            resample: Image.Resampling | None = None, fill=None) -> Image.Image:
        """The region ``box`` of ``img`` (default: all of it) resized to ``size`` by ``self.resize``
        (with ``resample``, default the config's filter; letterbox padding ``fill``, default the mean
        colour)."""
        height, width = self.size
        resample = self.filter if resample is None else resample
        src_w, src_h = (box[2] - box[0], box[3] - box[1]) if box else img.size
        left, top, w, h = (
            (0, 0, width, height)
            if self.resize == "squash"
            else letterbox_box(src_w, src_h, self.size, self.max_stretch)
        )
        if (w, h) == (width, height):
            if box is None and img.size == (width, height):
                return img
            return img.resize((width, height), resample, box=box)
        canvas = Image.new(img.mode, (width, height), self._pad if fill is None else fill)
        canvas.paste(img.resize((w, h), resample, box=box), (left, top))
        return canvas

    def mask_target(self, mask: Image.Image, box: tuple[int, int, int, int] | None = None,
                    flip: bool = False) -> torch.Tensor:
        """A label mask (mode "L") through the same geometry as its photo: (H / 4, W / 4) int64, nearest
        neighbour; letterbox padding is :data:`MASK_IGNORE` (no label)."""
        height, width = self.size
        fitted = self.fit(mask, box, Image.Resampling.NEAREST, MASK_IGNORE)
        small = fitted.resize(
            (max(1, width // MASK_STRIDE), max(1, height // MASK_STRIDE)), Image.Resampling.NEAREST
        )
        target = torch.from_numpy(np.asarray(small, dtype=np.uint8).astype(np.int64))
        return target.flip(-1) if flip else target

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = img.convert("RGB") if img.mode != "RGB" else img
        return to_normalized_tensor(self.fit(img), self.mean, self.std)

    def with_mask(self, img: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """The photo's tensor and its label mask's target (see :meth:`mask_target`)."""
        return self(img), self.mask_target(mask)

    def __repr__(self) -> str:
        return (f"EvalTransform(size={self.size}, resize={self.resize}, max_stretch={self.max_stretch}, "
                f"filter={self.filter.name})")


class TrainTransform(EvalTransform):
    """Random crop (area ``scale``, photo aspect x ``ratio_jitter``) -> resize -> flip -> colour jitter.

    Args:
        size: (height, width) of the output.
        mean: per-channel mean, in [0, 1] units.
        std: per-channel standard deviation.
        interpolation: resize filter name.
        resize, max_stretch: as in :class:`EvalTransform`, applied to the crop.
        scale: range of the crop's area as a fraction of the photo's.
        ratio_jitter: the crop's aspect is the photo's times a log-uniform factor in
            ``[1 / ratio_jitter, ratio_jitter]``.
        flip_p: probability of a horizontal flip.
        jitter: maximum relative change of brightness, contrast and saturation.
    """

    def __init__(
        self,
        size: tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        interpolation: str = "bilinear",
        resize: str = "squash",
        max_stretch: float = 1.0,
        scale: tuple[float, float] = (0.6, 1.0),
        ratio_jitter: float = 1.15,
        flip_p: float = 0.5,
        jitter: float = 0.2,
    ):
        super().__init__(size, mean, std, interpolation, resize, max_stretch)
        self.scale, self.ratio_jitter, self.flip_p, self.jitter = scale, ratio_jitter, flip_p, jitter

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(()))

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """A random (left, top, right, bottom) box inside a ``width`` x ``height`` photo."""
        area = self._uniform(*self.scale) * width * height
        log_j = math.log(self.ratio_jitter)
        aspect = width / height * math.exp(self._uniform(-log_j, log_j))
        w = min(width, max(1, round(math.sqrt(area * aspect))))
        h = min(height, max(1, round(math.sqrt(area / aspect))))
        left = int(torch.randint(0, width - w + 1, ()))
        top = int(torch.randint(0, height - h + 1, ()))
        return left, top, left + w, top + h

    def _colour_jitter(self, x: torch.Tensor) -> torch.Tensor:
        """Brightness, then contrast, then saturation, on x (3, H, W) in [0, 1]."""
        b, c, s = (self._uniform(1 - self.jitter, 1 + self.jitter) for _ in range(3))
        x = x.mul_(b)
        mean_gray = _gray(x).mean()
        x = mean_gray + (x - mean_gray) * c
        gray = _gray(x)  # (1, H, W)
        x = gray + (x - gray) * s
        return x.clamp_(0.0, 1.0)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self._augment(img, None)[0]

    def with_mask(self, img: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented photo and its label mask through the same crop and flip."""
        return self._augment(img, mask)

    def _augment(
        self, img: Image.Image, mask: Image.Image | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        img = img.convert("RGB") if img.mode != "RGB" else img
        box = self.crop_box(*img.size)
        img = self.fit(img, box=box)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
        flip = float(torch.rand(())) < self.flip_p
        if flip:
            x = x.flip(-1)
        if self.jitter > 0:
            x = self._colour_jitter(x)
        target = None if mask is None else self.mask_target(mask, box, flip)
        return x.sub_(self.mean).div_(self.std), target

    def __repr__(self) -> str:
        return (
            f"TrainTransform(size={self.size}, resize={self.resize}, max_stretch={self.max_stretch}, "
            f"scale={self.scale}, ratio_jitter={self.ratio_jitter}, flip_p={self.flip_p}, "
            f"jitter={self.jitter}, filter={self.filter.name})"
        )


def build_transforms(cfg: DataConfig, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """The train or eval preset for a model's data config.

    Args:
        cfg: input size (H, W), mean, std and interpolation of the model.
        train: random crop / flip / colour jitter when True; plain resize when False.

    Returns:
        A callable mapping an RGB PIL image to a float32 tensor of shape (3, H, W).

    Example:
        >>> from fashionlens.data.config import DataConfig
        >>> t = build_transforms(DataConfig(input_size=(32, 24)), train=False)
        >>> tuple(t(Image.new("RGB", (50, 70))).shape)
        (3, 32, 24)
    """
    kwargs = dict(
        size=cfg.input_size,
        mean=cfg.mean,
        std=cfg.std,
        interpolation=cfg.interpolation,
        resize=cfg.resize,
        max_stretch=cfg.max_stretch,
    )
    if not train:
        return EvalTransform(**kwargs)
    # cfg.extra["crop_scale"]: multi-label photos need milder crops (a crop can cut a labelled item off)
    return TrainTransform(**kwargs, scale=tuple(cfg.extra.get("crop_scale", (0.6, 1.0))))
