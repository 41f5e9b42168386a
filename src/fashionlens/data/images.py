"""Robust, fast image decoding shared by every reader, the predictor and the web service.

Every photo in fashionlens enters through :func:`load_image`, so EXIF orientation, colour modes,
decompression bombs and draft-mode JPEG decoding are handled in exactly one place. What counts as an
image file (:data:`IMAGE_EXTENSIONS`) and the header-only look at one (:func:`probe_image`: its size,
or why it is unusable) live here too, for every reader, checker and command that finds or probes photos.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from fashionlens.errors import FashionlensError

# File suffixes (lower case) of the image files fashionlens finds in folders: photo folders, image
# folders, listings' folders, the labelling page, Label Studio imports, CCP's photos/.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Pixels above which an image is refused as a probable decompression bomb (PIL's own default,
# about 9.5k x 9.5k); PIL would only warn below twice this, fashionlens refuses.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def pixel_limit_problem(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` is refused (a probable decompression bomb), or None.

    The one pixel-limit check: the decoder, ``data check`` and the web service all call it.

    Example:
        >>> pixel_limit_problem(640, 480) is None
        True
        >>> pixel_limit_problem(20_000, 20_000)
        'image of 20000x20000 pixels exceeds the limit of 89478485'
    """
    if width * height > MAX_IMAGE_PIXELS:
        return f"image of {width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS}"
    return None


EXIF_ORIENTATION = 0x0112
FULL_SIZE_KEY = "fashionlens_full_size"  # Image.info key: (width, height) before draft-mode decoding
# EXIF orientation -> the transpose that makes the stored pixels upright (as ImageOps.exif_transpose).
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # fmt: skip
MIRRORING_ORIENTATIONS = frozenset({2, 4, 5, 7})


class BadImageError(FashionlensError, ValueError):
    """An image that cannot be used, with the file it came from and why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ImageTooLargeError(BadImageError):
    """An image with more pixels than :data:`MAX_IMAGE_PIXELS` (a probable decompression bomb)."""


ImageSource = str | Path | bytes | BinaryIO | Image.Image | np.ndarray
_JPEG_TAIL_BYTES = 1024  # a complete JPEG's end-of-image marker lies in its last KB


def probe_image(src: str | Path | bytes, verify: bool = False, limit: bool = True,
                name: str | None = None) -> tuple[int, int]:
    """(width, height) of an image's stored pixel grid, read from its header: no pixels are decoded.

    The one header probe: ``data check`` and the pre-training scan (with ``verify``), the CCP mask
    check and the web service's upload check all call it.

    Args:
        src: an image file, or its bytes (an upload).
        verify: also run ``PIL.Image.verify`` and, for a JPEG, look for its end-of-image marker:
            finds most broken files, still without decoding (a few with damaged pixel data pass, and
            are refused when decoded).
        limit: refuse images above :data:`MAX_IMAGE_PIXELS`; False leaves only PIL's own hard limit
            (twice that), for callers that only compare sizes.
        name: how messages name the image (default: the path, or ``<bytes>``).

    Raises:
        BadImageError: naming the image: not found, empty, not an image, an unreadable header, or
            (``verify``) a broken or truncated file. The PIL exception, if any, is its ``__cause__``.
        ImageTooLargeError: more pixels than the limit (a BadImageError).

    Example:
        >>> import io
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (40, 30)).save(buffer, "PNG")
        >>> probe_image(buffer.getvalue())
        (40, 30)
        >>> probe_image(b"not an image", name="upload.jpg")
        Traceback (most recent call last):
        ...
        fashionlens.data.images.BadImageError: upload.jpg: not an image file PIL can identify
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        name = name or f"<{type(src).__name__}>"
        if len(src) == 0:
            raise BadImageError(name, "empty upload (0 bytes)")
        n_bytes, path, fp = len(src), None, io.BytesIO(src)
    else:
        path = Path(src)
        name = name or str(src)
        try:
            n_bytes = path.stat().st_size
        except OSError:
            raise BadImageError(name, "file not found") from None
        if n_bytes == 0:
            raise BadImageError(name, "empty file (0 bytes)")
        fp = None
    try:
        with warnings.catch_warnings():
            if limit:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp if fp is not None else path) as img:
                (w, h), fmt = img.size, img.format
                too_big = pixel_limit_problem(w, h) if limit else None
                if too_big:
                    raise ImageTooLargeError(name, too_big)
                if verify:
                    img.verify()
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(name, f"decompression bomb refused ({e})") from e
    except UnidentifiedImageError as e:
        raise BadImageError(name, "not an image file PIL can identify") from e
    except Exception as e:  # PIL raises many types for broken files; all mean "unusable"
        raise BadImageError(name, f"cannot decode image ({type(e).__name__}: {e})") from e
    if verify and fmt == "JPEG" and not _has_jpeg_end(src if path is None else path, n_bytes):
        raise BadImageError(name, "truncated JPEG (no end-of-image marker)")
    return w, h


def _has_jpeg_end(src: Path | bytes, n_bytes: int) -> bool:
    """A JPEG ends with the end-of-image marker FF D9 (maybe followed by some padding)."""
    if not isinstance(src, Path):
        return b"\xff\xd9" in bytes(src[-_JPEG_TAIL_BYTES:])
    with open(src, "rb") as f:
        f.seek(max(0, n_bytes - _JPEG_TAIL_BYTES))
        return b"\xff\xd9" in f.read()


def _describe(src: ImageSource) -> str:
    if isinstance(src, (str, Path)):
        return str(src)
    return f"<{type(src).__name__}>"


def _array_to_pil(arr: np.ndarray, name: str) -> Image.Image:
    if arr.dtype.kind not in "biuf":
        raise BadImageError(name, "expected an array of numbers (uint8, or floats in [0, 1] or [0, 255]), "
                                  f"got dtype {arr.dtype}")
    if arr.ndim in (2, 3) and 0 in arr.shape[:2]:
        raise BadImageError(name, f"empty image ({arr.shape[1]}x{arr.shape[0]} pixels)")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise BadImageError(name, f"not finite: {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise BadImageError(
            name, f"expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}"
        )
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
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode == "La":  # premultiplied alpha: PIL converts it to LA only
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA", "RGBa"):
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
        BadImageError: empty (0 bytes or 0 pixels), truncated, not an image, larger than
            ``MAX_IMAGE_PIXELS``, an array with NaN / infinite or non-numeric values, a closed PIL
            image, or an object that is none of the inputs above (``None``, a number, ...).
    """
    return load_image_and_orientation(src, draft_size)[0]


def load_image_and_orientation(
    src: ImageSource, draft_size: tuple[int, int] | None = None
) -> tuple[Image.Image, int]:
    """:func:`load_image`, also returning the EXIF orientation (1..8) that was applied.

    Callers whose annotations refer to the *stored* pixel grid (DeepFashion boxes and landmarks)
    move them with :func:`orient_points` so that they stay on the same image content.

    Returns:
        (upright RGB image, EXIF orientation: 1 = none, 2..8 as in the EXIF standard).

    Raises:
        BadImageError: as :func:`load_image`.
    """
    return _load(src, draft_size, upright=True)


def load_stored_image(src: str | Path) -> Image.Image:
    """The stored pixel grid of an image file as 8-bit RGB: :func:`load_image` without the EXIF turn.

    For annotations that index the stored pixels (CCP's masks); the same checks and errors.

    Raises:
        BadImageError: as :func:`load_image`.
    """
    return _load(src, None, upright=False)[0]


def _load(src: ImageSource, draft_size: tuple[int, int] | None, upright: bool) -> tuple[Image.Image, int]:
    name = _describe(src)
    if isinstance(src, np.ndarray):
        return _array_to_pil(src, name), 1
    if isinstance(src, Image.Image):
        return _oriented_rgb(src, name, upright)
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file():
            raise BadImageError(name, "file not found")
        if path.stat().st_size == 0:
            raise BadImageError(name, "empty file (0 bytes)")
        fp: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed below
    elif isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise BadImageError(name, "empty upload (0 bytes)")
        fp = io.BytesIO(src)
    elif callable(getattr(src, "read", None)):
        fp = src
    else:
        raise BadImageError(
            name,
            f"not an image input: {type(src).__name__} (expected a path, bytes, a binary file, "
            "a PIL image or a numpy array)",
        )
    try:
        return _decode(fp, name, draft_size, upright)
    finally:
        if isinstance(src, (str, Path)):
            fp.close()


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(EXIF_ORIENTATION, 1))
    except (TypeError, ValueError, OSError, SyntaxError):  # corrupt EXIF: treat as upright
        return 1
    return value if value in _EXIF_TRANSPOSE else 1


def _oriented_rgb(img: Image.Image, name: str, upright: bool = True) -> tuple[Image.Image, int]:
    """Apply the EXIF orientation (if any, unless not ``upright``) and convert to RGB."""
    if 0 in img.size:
        raise BadImageError(name, f"empty image ({img.width}x{img.height} pixels)")
    try:
        img.load()
    except (ValueError, OSError) as e:  # a closed image ("Operation on closed image"), a truncated file
        raise BadImageError(name, f"unreadable PIL image ({e})") from None
    orientation = _orientation(img) if upright else 1
    if orientation != 1:
        img = img.transpose(_EXIF_TRANSPOSE[orientation])
    try:
        return _to_rgb(img), orientation
    except ValueError as e:  # a mode PIL cannot convert
        raise BadImageError(name, f"unsupported image mode {img.mode!r} ({e})") from None


def _decode(
    fp: BinaryIO, name: str, draft_size: tuple[int, int] | None, upright: bool
) -> tuple[Image.Image, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            too_big = pixel_limit_problem(w, h)
            if too_big:
                raise BadImageError(name, too_big)
            if draft_size is not None and img.format == "JPEG":
                img.draft("RGB", draft_size)
            img.load()
            out, orientation = _oriented_rgb(img, name, upright)
            out.info[FULL_SIZE_KEY] = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # upright
            return out, orientation
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(name, f"decompression bomb refused ({e})") from None
    except UnidentifiedImageError:
        raise BadImageError(name, "not an image file PIL can identify") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(name, f"cannot decode image ({e})") from None


def photo_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of the upright photo ``img`` was decoded from.

    Draft-mode decoding (``load_image(..., draft_size=...)``) returns a JPEG at 1/2, 1/4 or 1/8 of
    its size; positions reported to users (landmarks) must refer to the photo itself.
    """
    return tuple(img.info.get(FULL_SIZE_KEY, img.size))


def orient_points(points: np.ndarray, orientation: int, stored_size: tuple[int, int]) -> np.ndarray:
    """Move points given on the stored pixel grid onto the upright (EXIF-transposed) image.

    Points are continuous pixel coordinates (pixel ``i`` spans ``[i, i + 1)``), so the map is
    exact: e.g. orientation 6 (rotate 90 degrees clockwise) sends ``(x, y)`` to ``(H - y, x)``.

    Args:
        points: (..., 2) x, y on the stored grid.
        orientation: EXIF orientation 1..8 (from :func:`load_image_and_orientation`).
        stored_size: (width, height) of the stored pixel grid (before transposing).

    Returns:
        (..., 2) float32 x, y on the upright image.
    """
    w, h = stored_size
    p = np.asarray(points, dtype=np.float32)
    x, y = p[..., 0], p[..., 1]
    new = {
        1: (x, y), 2: (w - x, y), 3: (w - x, h - y), 4: (x, h - y),
        5: (y, x), 6: (h - y, x), 7: (h - y, w - x), 8: (y, w - x),
    }.get(int(orientation), (x, y))  # fmt: skip
    return np.stack(new, axis=-1).astype(np.float32)


def upright_annotations(
    landmarks: np.ndarray,
    visible: np.ndarray,
    bbox: np.ndarray,
    orientation: int,
    upright_size: tuple[int, int],
    flip_pairs: tuple[tuple[int, int], ...] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move stored-grid annotations onto the EXIF-oriented image that :func:`load_image` returns.

    Used by DeepFashionDataset: DeepFashion's boxes and landmarks index the *stored* pixel grid
    (the released JPEGs carry no EXIF orientation). If a file does carry one, the image is shown
    upright, so the box and the landmarks get the same rotation / mirror and stay on the same
    garment points. A mirroring
    orientation (2, 4, 5, 7) also swaps each left/right slot pair, exactly as a horizontal flip does.

    Args:
        landmarks: (L, 2) continuous x, y on the stored grid.
        visible: (L,) bool.
        bbox: (4,) x1 y1 x2 y2 on the stored grid.
        orientation: EXIF orientation 1..8.
        upright_size: (width, height) of the oriented image.
        flip_pairs: left/right landmark slot pairs swapped by a mirroring orientation.

    Returns:
        landmarks (L, 2), visible (L,) and bbox (4,) on the upright image.
    """
    if orientation == 1:
        return landmarks, visible, bbox
    w, h = upright_size
    stored = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    lm = orient_points(landmarks, orientation, stored)
    corners = orient_points(np.asarray(bbox, dtype=np.float32).reshape(2, 2), orientation, stored)  # (2, 2)
    box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
    vis = np.asarray(visible).copy()
    if orientation in MIRRORING_ORIENTATIONS:
        for a, b in flip_pairs:
            lm[[a, b]], vis[[a, b]] = lm[[b, a]], vis[[b, a]]
    return lm, vis, box
