"""Validate a data set and list *every* problem, for ``fashionlens data check``.

The readers stop at the first error (training should not start on a broken file); in their
collecting mode (``problems=``, :class:`~fashionlens.data.errors.Problems`) they keep going and record
every malformed line, duplicate, missing row or file, each with ``file:line``, the field and what was
expected. This module parses no file format itself: it runs the format's reader in that mode, then
adds what a reader does not look at: every image file probed (missing, unreadable, truncated) and,
for DeepFashion, the geometry of boxes and landmarks against their image. It also offers
:func:`scan_images`, a cheap header-only pre-validation of image files that a trainer can run before
training to report how many images will be skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fashionlens.data.ccp import read_ccp_parts
from fashionlens.data.clothing_dataset import SKIPPED_LABELS, read_clothing_dataset
from fashionlens.data.deepfashion import ANNO_FILES, LANDMARK_NAMES, read_deepfashion
from fashionlens.data.errors import Problem, Problems
from fashionlens.data.formats import detect_format, format_names, get_format
from fashionlens.data.image_folder import read_image_folder, split_folders
from fashionlens.data.images import BadImageError, probe_image
from fashionlens.data.multilabel import read_multilabel
from fashionlens.errors import ConfigError

__all__ = ["CheckResult", "Problem", "check_dataset", "detect_format", "run_check", "scan_images"]


@dataclass
class CheckResult:
    """Every problem of a data set, the format checked and how many files were looked at."""

    fmt: str
    problems: list[Problem] = field(default_factory=list)
    files: set[str] = field(default_factory=set)

    @property
    def errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.severity == "warning" for p in self.problems)

    def add(
        self, path: str | Path, line: int | None, kind: str, message: str, severity: str = "error"
    ) -> None:
        self.problems.append(Problem(str(path), line, kind, message, severity))

    def take(self, found: Problems) -> None:
        """Add what a reader found in collecting mode: its problems and the files it read."""
        self.problems += found.found
        self.files |= found.files

    def summary(self) -> str:
        """E.g. ``"3 errors, 1 warnings in 37 files"``."""
        return f"{self.errors} errors, {self.warnings} warnings in {len(self.files)} files"


# ----------------------------------------------------------------------------- images


def _image_problem(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """(size, None) for a usable image file, (None, why) for a bad one: :func:`probe_image` with ``verify``.

    Pixels are not decoded (fast), so a few corrupt files (damaged JPEG entropy data) still pass
    and are then skipped by the datasets' ``bad_images="skip"`` policy.
    """
    try:
        return probe_image(path, verify=True), None
    except BadImageError as e:
        return None, e.reason


def _map(fn: Callable, paths: list[Path], workers: int) -> list:
    if workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(workers) as pool:  # file I/O and PIL's C code release the GIL
            return list(pool.map(fn, paths))
    return [fn(p) for p in paths]


def scan_images(paths: Iterable[str | Path], workers: int = 0) -> dict[str, str]:
    """Pre-validate image files so that a trainer can report bad ones before training starts.

    Args:
        paths: image files.
        workers: threads (0 or 1: in this thread).

    Returns:
        ``{path: reason}`` for every bad file (empty when all are fine), in input order.

    Example:
        >>> bad = scan_images(["a.jpg", "b.jpg"], workers=4)  # doctest: +SKIP
        >>> print(f"{len(bad)} unreadable images will be skipped")  # doctest: +SKIP
    """
    files = [Path(p) for p in paths]
    reasons = [reason for _, reason in _map(_image_problem, files, workers)]
    return {str(p): r for p, r in zip(files, reasons, strict=True) if r}


def _check_images(
    result: CheckResult, images: list[tuple[Path, str | Path, int | None]], workers: int
) -> dict[Path, tuple[int, int]]:
    """Probe ``(image, annotation file, line)`` triples; returns the size of every good image."""
    result.files.update(str(p) for p, _, _ in images)
    sizes = {}
    for (img, anno, line), (size, reason) in zip(
        images, _map(_image_problem, [p for p, _, _ in images], workers), strict=True
    ):
        if reason == "file not found":
            result.add(anno, line, "missing_image", f"image file not found: {img}")
        elif reason:
            result.add(anno, line, "image", f"unreadable image {img}: {reason}")
        elif size is not None:
            sizes[img] = size
    return sizes


# ----------------------------------------------------------------------------- dispatch


def run_check(
    path: str | Path, fmt: str = "auto", check_images: bool = True, label_list: str | Path | None = None,
    workers: int = 0,
) -> CheckResult:  # fmt: skip
    """Check a data set; see :func:`check_dataset`. Returns the problems and the files looked at."""
    path = Path(path)
    choices = ("auto", *format_names(detection_order=True))
    if fmt not in choices:
        raise ConfigError(f"fmt must be one of {choices}, got {fmt!r}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    result = CheckResult(fmt)
    if not path.exists():
        result.add(path, None, "file", "path does not exist")
        return result
    get_format(fmt).run_check(path, result, check_images, label_list=label_list, workers=workers)
    return result


def check_dataset(
    path: str | Path, fmt: str = "auto", check_images: bool = True, label_list: str | Path | None = None
) -> list[Problem]:
    """Validate a data set and return every problem found (not just the first).

    Args:
        path: a DeepFashion root, a multi-label ``.csv`` / ``.jsonl``, a CCP root, a clothing-dataset
            folder or an image folder.
        fmt: "auto" (see :func:`~fashionlens.data.formats.detect_format`) or a registered format
            (:mod:`fashionlens.data.formats`: "deepfashion", "multilabel", "ccp", "clothing_dataset",
            "image_folder").
        check_images: also check image files: existence, header, size, completeness, and (DeepFashion)
            boxes against the image size. False: annotation files only.
        label_list: multilabel only: a vocabulary file; labels outside it are reported.

    Returns:
        The problems, errors and warnings, in file order.
    """
    return run_check(path, fmt, check_images, label_list).problems


# ----------------------------------------------------------------------------- the formats
# Each format's check (registered in data/formats.py): its reader in collecting mode, then the images.


def check_multilabel(
    path: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0
) -> None:
    """Every row of a CSV / JSONL file (fields, duplicates, labels outside ``label_list``) and its image."""
    found = Problems()
    dataset = read_multilabel(path, label_list=label_list, check_images=False, problems=found)
    result.take(found)
    if check_images:
        _check_images(result, [(s.path, path, s.line) for s in dataset.samples], workers)


def check_ccp(root: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0) -> None:
    """Both annotation kinds: tags (image-level) and masks (pixel-level: readable, ids in range, photo
    size; the photo's header is read even with --no-images)."""
    found = Problems()
    parts = read_ccp_parts(root, workers=max(1, workers), problems=found)
    result.take(found)
    if check_images:
        photos = [s.path for part in parts.values() for s in part.samples]
        _check_images(result, [(p, p, None) for p in photos], workers)


def check_clothing(
    root: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0
) -> None:
    """images.csv rows (fields, duplicates, skipped labels as a warning) and their image files."""
    found = Problems()
    dataset = read_clothing_dataset(root, problems=found)
    result.take(found)
    skipped = sum(dataset.skipped.values())
    if skipped:
        message = f"{skipped} rows labelled {'/'.join(SKIPPED_LABELS)} are skipped by the reader"
        result.add(root / "images.csv", None, "skipped", message, "warning")
    if check_images:
        rows = zip(dataset.data.samples, dataset.lines.tolist(), strict=True)
        _check_images(result, [(p, root / "images.csv", line) for (p, _), line in rows], workers)


def check_image_folder(
    root: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0
) -> None:
    """Each split folder (class folders, empty classes as warnings) and every image in it."""
    images = []
    for folder in split_folders(root):
        found = Problems()
        dataset = read_image_folder(folder, split=folder.name, problems=found)
        result.take(found)
        images += [(p, p, None) for p, _ in dataset.samples]
    result.files.update(str(p) for p, _, _ in images)
    if check_images:
        _check_images(result, images, workers)


def check_deepfashion(
    root: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0
) -> None:
    """Every list file (count lines, rows, values, duplicates, missing rows), every image, and boxes and
    landmarks against their image."""
    found = Problems()
    index = read_deepfashion(root, problems=found)
    result.take(found)
    sizes: dict[int, tuple[int, int]] = {}
    if check_images and len(index):
        category_img = root / ANNO_FILES["category_img"]
        lines = index.lines["category_img"].tolist()
        images = [(root / n, category_img, line) for n, line in zip(index.image_names, lines, strict=True)]
        found_sizes = _check_images(result, images, workers)
        sizes = {i: found_sizes[img] for i, (img, _, _) in enumerate(images) if img in found_sizes}
    _check_geometry(result, root, index, sizes)


def _check_geometry(result: CheckResult, root: Path, index, sizes: dict[int, tuple[int, int]]) -> None:
    """Boxes inside their image (stored pixel grid), visible/occluded landmarks inside image and box."""
    bbox_file, marks_file = root / ANNO_FILES["bbox"], root / ANNO_FILES["landmarks"]
    box_lines, mark_lines = index.lines.get("bbox"), index.lines.get("landmarks")
    for i, name in enumerate(index.image_names):
        size = sizes.get(i)
        box = index.bbox[i].tolist() if box_lines is not None and box_lines[i] else None
        if box and size and (min(box[0], box[1]) < 0 or box[2] > size[0] or box[3] > size[1]):
            message = f"bbox {box} outside the {size[0]}x{size[1]} image {name}"
            result.add(bbox_file, int(box_lines[i]), "bbox", message)
        if mark_lines is None or not mark_lines[i]:
            continue
        line = int(mark_lines[i])
        for slot in np.flatnonzero(index.landmark_visibility[i] != 2):  # cut-off ones: any place
            x, y = (int(v) for v in index.landmarks[i, slot])
            where = f"{LANDMARK_NAMES[slot]} ({x}, {y}) outside the"
            if size and not (0 <= x <= size[0] and 0 <= y <= size[1]):
                result.add(marks_file, line, "landmark", f"{where} {size[0]}x{size[1]} image")
            elif box and not (box[0] <= x <= box[2] and box[1] <= y <= box[3]):
                tol = 0.05 * max(box[2] - box[0], box[3] - box[1])  # annotation noise: a warning only
                far = not (box[0] - tol <= x <= box[2] + tol and box[1] - tol <= y <= box[3] + tol)
                result.add(marks_file, line, "landmark", f"{where} bbox {box}", "error" if far else "warning")
