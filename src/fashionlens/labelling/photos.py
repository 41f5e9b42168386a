"""The photos of a labelling session: found under one folder, and read only from inside it.

A request names a photo by its index in the list made at start-up, never by a path, so no text from
a request reaches the file system. Links are followed only when they stay inside the folder, both
when the list is made and again when a photo is opened (a link swapped afterwards is refused).

Example:
    >>> photos = find_photos("shoots/")                       # doctest: +SKIP
    >>> jpeg = render_photo(photos.root, photos.items[0], 1280)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fashionlens.data.images import IMAGE_EXTENSIONS, BadImageError, load_image
from fashionlens.errors import FashionlensError

VIEW_SIDE = 1280  # longest side of the photo shown large; the browser scales it down to fit
THUMB_SIDE = 240  # longest side of a grid thumbnail


class PhotoAccessError(FashionlensError):
    """A photo that may not be read: it resolves outside the photo folder."""


class PhotoFolderError(FashionlensError, NotADirectoryError):
    """The photo folder does not exist or is not a folder."""


@dataclass(frozen=True)
class Photo:
    """One photo: its path relative to the folder (POSIX, shown on the page) and its absolute path."""

    rel: str
    path: Path


@dataclass
class PhotoList:
    """The photos found under ``root`` (sorted naturally) and the links left out because they escape it."""

    root: Path
    items: list[Photo]
    escaped: list[str] = field(default_factory=list)


def _natural_key(rel: str) -> list:
    """Sort ``img2`` before ``img10``: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", rel)]


def is_inside(path: str | Path, root_real: str) -> bool:
    """True when ``path`` (already resolved) is ``root_real`` or below it."""
    try:
        return os.path.commonpath([os.fspath(path), root_real]) == root_real
    except ValueError:  # different drives on Windows
        return False


def find_photos(root: str | Path) -> PhotoList:
    """Every image file under ``root`` (recursively; hidden files and folders skipped).

    Args:
        root: the photo folder.

    Returns:
        The photos in natural path order; files or folders that are links resolving outside
        ``root`` are listed in ``escaped`` and left out.

    Raises:
        PhotoFolderError: ``root`` is not a folder (a NotADirectoryError).
    """
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise PhotoFolderError(f"photo folder not found: {root}")
    root_real = os.path.realpath(root)
    items, escaped = [], []
    visited = {root_real}  # real folders already walked: a link loop is walked once
    for folder, dirs, files in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(dirs):
            full = os.path.join(folder, d)
            real = os.path.realpath(full)
            if d.startswith(".") or real in visited:
                continue
            if not is_inside(real, root_real):
                escaped.append(Path(full).relative_to(root).as_posix() + "/")
            else:
                visited.add(real)
                keep.append(d)
        dirs[:] = keep  # os.walk descends only into these
        for name in files:
            full = Path(folder, name)
            if name.startswith(".") or full.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = full.relative_to(root).as_posix()
            if not is_inside(os.path.realpath(full), root_real):
                escaped.append(rel)
            elif full.is_file():
                items.append(Photo(rel, full))
    items.sort(key=lambda p: _natural_key(p.rel))
    return PhotoList(root, items, sorted(escaped))


def read_inside(root: Path, photo: Photo) -> bytes:
    """The photo's bytes, refusing a file that resolves outside ``root`` at the moment it is opened.

    Raises:
        PhotoAccessError: the file (or a link on its way) leads outside ``root``.
        OSError: the file cannot be read.
    """
    root_real = os.path.realpath(root)
    if not is_inside(os.path.realpath(photo.path), root_real):
        raise PhotoAccessError(f"{photo.rel}: resolves outside the photo folder")
    fd = os.open(photo.path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        opened = f"/proc/self/fd/{fd}"
        # Where the kernel says the open file is (Linux): closes the gap between check and open.
        if os.path.exists(opened) and not is_inside(os.path.realpath(os.readlink(opened)), root_real):
            raise PhotoAccessError(f"{photo.rel}: resolves outside the photo folder")
        return f.read()


def render_photo(root: Path, photo: Photo, side: int) -> bytes:
    """The photo upright (EXIF), RGB, scaled to at most ``side`` pixels, as JPEG bytes.

    Re-encoding means the browser only ever receives a JPEG we made, whatever the file was.

    Raises:
        PhotoAccessError: outside the folder. BadImageError: unreadable (truncated, not an image, bomb).
    """
    try:
        data = read_inside(root, photo)
    except OSError as e:
        raise BadImageError(photo.rel, f"cannot read the file ({e.strerror or e})") from None
    try:
        img = load_image(data, draft_size=(side, side))
    except BadImageError as e:
        raise BadImageError(photo.rel, e.reason) from None
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85 if side > THUMB_SIDE else 75)
    return buf.getvalue()
