"""Robust, fast image decoding shared by every reader, the predictor and the web service.

Every photo in fashionlens enters through :func:`load_image`, so EXIF orientation, colour modes,
decompression bombs and draft-mode JPEG decoding are handled in exactly one place.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pixels above which an image is refused as a probable decompression bomb (PIL's own default,
# about 9.5k x 9.5k); PIL would only warn below twice this, fashionlens refuses.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class BadImageError(ValueError):
    """An image that cannot be used, with the file it came from and why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


ImageSource = str | Path | bytes | BinaryIO | Image.Image | np.ndarray


def _describe(src: ImageSource) -> str:
    if isinstance(src, (str, Path)):
        return str(src)
    return f"<{type(src).__name__}>"


def _array_to_pil(arr: np.ndarray, name: str) -> Image.Image:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise BadImageError(name, f"expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(arr * 255.0 if arr.max() <= 1.0 else arr, 0, 255).astype(np.uint8)
        else:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(arr[..., :3])


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparent pixels become white, 16-bit is rescaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = max(arr.max(), 1.0)
        scale = 65535.0 if hi > 255 else 255.0
        img = Image.fromarray((arr / scale * 255.0).clip(0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").split()[-1])
        return background
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(src: ImageSource, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image into an upright 8-bit RGB PIL image.

    Args:
        src: a file path, raw bytes, a binary file object, a PIL image or a numpy array (H, W[, C]).
        draft_size: (width, height) the caller will resize to. For JPEGs, decoding then uses
            libjpeg's DCT scaling (draft mode) to the smallest scale still >= that size: 2-4x faster.

    Returns:
        An RGB image with EXIF orientation applied.

    Raises:
        BadImageError: empty, truncated, not an image, or larger than ``MAX_IMAGE_PIXELS``.
    """
    name = _describe(src)
    if isinstance(src, np.ndarray):
        return _array_to_pil(src, name)
    if isinstance(src, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(src))
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file():
            raise BadImageError(name, "file not found")
        if path.stat().st_size == 0:
            raise BadImageError(name, "empty file (0 bytes)")
        fp: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed below
    elif isinstance(src, (bytes, bytearray)):
        if len(src) == 0:
            raise BadImageError(name, "empty upload (0 bytes)")
        fp = io.BytesIO(src)
    else:
        fp = src
    try:
        return _decode(fp, name, draft_size)
    finally:
        if isinstance(src, (str, Path)):
            fp.close()


def _decode(fp: BinaryIO, name: str, draft_size: tuple[int, int] | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise BadImageError(name, f"image of {w}x{h} pixels exceeds the limit of {MAX_IMAGE_PIXELS}")
            if draft_size is not None and img.format == "JPEG":
                img.draft("RGB", draft_size)
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(name, f"decompression bomb refused ({e})") from None
    except UnidentifiedImageError:
        raise BadImageError(name, "not an image file PIL can identify") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(name, f"cannot decode image ({e})") from None
