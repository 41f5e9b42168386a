"""Validate a data set and list *every* problem, for ``fashionlens data check``.

The readers stop at the first error (training should not start on a broken file); this module
keeps going, so one run lists every malformed line, missing or unreadable image and inconsistent
annotation, each with ``file:line`` and what was expected. It also offers :func:`scan_images`, a
cheap header-only pre-validation of image files that a trainer can run before training to report
how many images will be skipped.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from fashionlens.data import multilabel as ml
from fashionlens.data.ccp import ANNOTATION_KINDS, _read_tags, read_ccp_label_list, read_ccp_mask
from fashionlens.data.deepfashion import (
    ANNO_FILES,
    ATTRIBUTE_TYPES,
    CLOTHES_TYPE_SLOTS,
    LANDMARK_NAMES,
    PARTITIONS,
)
from fashionlens.data.errors import DataFormatError
from fashionlens.data.image_folder import read_image_folder
from fashionlens.data.images import BadImageError, probe_image
from fashionlens.errors import ConfigError

__all__ = ["FORMATS", "CheckResult", "Problem", "check_dataset", "detect_format", "run_check", "scan_images"]

FORMATS = ("auto", "deepfashion", "multilabel", "ccp", "clothing_dataset", "image_folder")
SPLIT_FOLDERS = ("train", "val", "validation", "test")


@dataclass(frozen=True)
class Problem:
    """One problem found in a data set.

    Attributes:
        path: the file the problem is in (annotation file or image).
        line: 1-based line number, or None when not tied to one line.
        kind: short category, e.g. ``count``, ``columns``, ``value``, ``label``, ``duplicate``,
            ``missing_image``, ``missing_row``, ``unknown_image``, ``bbox``, ``landmark``, ``image``,
            ``file``.
        message: what was found and what was expected.
        severity: ``error`` (the readers refuse the data) or ``warning`` (suspicious but usable).
    """

    path: str
    line: int | None
    kind: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.severity} [{self.kind}] {self.message}"


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


def detect_format(path: str | Path) -> str:
    """``Anno/`` -> deepfashion, ``label_list.mat`` -> ccp, ``images.csv`` -> clothing_dataset, a file
    -> multilabel, else image_folder."""
    path = Path(path)
    if path.is_file():
        return "multilabel"
    if (path / "Anno").is_dir():
        return "deepfashion"
    if (path / "label_list.mat").is_file():
        return "ccp"
    if (path / "images.csv").is_file():
        return "clothing_dataset"
    return "image_folder"


def run_check(
    path: str | Path, fmt: str = "auto", check_images: bool = True, label_list: str | Path | None = None,
    workers: int = 0,
) -> CheckResult:  # fmt: skip
    """Check a data set; see :func:`check_dataset`. Returns the problems and the files looked at."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ConfigError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    result = CheckResult(fmt)
    if not path.exists():
        result.add(path, None, "file", "path does not exist")
        return result
    checkers = {"deepfashion": _check_deepfashion, "multilabel": _check_multilabel, "ccp": _check_ccp,
                "clothing_dataset": _check_clothing, "image_folder": _check_image_folder}  # fmt: skip
    checkers[fmt](path, result, check_images, label_list=label_list, workers=workers)
    return result


def check_dataset(
    path: str | Path, fmt: str = "auto", check_images: bool = True, label_list: str | Path | None = None
) -> list[Problem]:
    """Validate a data set and return every problem found (not just the first).

    Args:
        path: a DeepFashion root, a multi-label ``.csv`` / ``.jsonl``, a CCP root, a clothing-dataset
            folder or an image folder.
        fmt: "auto" (see :func:`detect_format`), "deepfashion", "multilabel", "ccp", "clothing_dataset"
            or "image_folder".
        check_images: also check image files: existence, header, size, completeness, and (DeepFashion)
            boxes against the image size. False: annotation files only.
        label_list: multilabel only: a vocabulary file; labels outside it are reported.

    Returns:
        The problems, errors and warnings, in file order.
    """
    return run_check(path, fmt, check_images, label_list).problems


# ----------------------------------------------------------------------------- multilabel


def _csv_rows(path: Path, text: str, result: CheckResult) -> Iterator[tuple[int, str, str | None, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        columns = [h.strip().lower() for h in header or []]
        missing = [c for c in ml.REQUIRED_CSV_COLUMNS if c not in columns]
        if missing:
            result.add(path, 1, "columns", f"header {header} lacks {missing}; expected 'image,main,labels'")
            return
        for fields in reader:
            if not any(x.strip() for x in fields):
                continue
            if len(fields) != len(columns):
                result.add(
                    path,
                    reader.line_num,
                    "columns",
                    f"expected {len(columns)} fields {columns}, got {len(fields)}",
                )
                continue
            row = dict(zip(columns, fields, strict=True))
            yield (
                reader.line_num,
                row["image"].strip(),
                row.get("main", "").strip() or None,
                ml._split_labels(row["labels"]),
            )
    except csv.Error as e:
        result.add(path, reader.line_num, "value", f"malformed CSV ({e})")


def _jsonl_rows(
    path: Path, text: str, result: CheckResult
) -> Iterator[tuple[int, str, str | None, list[str]]]:
    for n, line in enumerate(io.StringIO(text, newline=None), start=1):
        if not line.strip():
            continue
        try:
            row = ml._parse_json_line(path, n, line)
        except DataFormatError as e:
            result.add(path, n, "value", e.message)
            continue
        yield n, row.image, row.main, row.labels


def _check_multilabel(
    path: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0
) -> None:
    result.files.add(str(path))
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        result.add(path, None, "file", f"unknown extension '{path.suffix}'; expected .csv or .jsonl")
        return
    vocab = None
    if label_list is not None:
        try:
            vocab = set(ml.read_label_list(label_list))
        except (DataFormatError, OSError) as e:
            result.add(label_list, None, "file", str(e))
    try:
        text = ml._read_text(path)
    except DataFormatError as e:
        result.add(path, e.line, "encoding", e.message)
        return
    rows = (_csv_rows if suffix == ".csv" else _jsonl_rows)(path, text, result)
    seen: dict[str, int] = {}
    images = []
    for line, image, main, labels in rows:
        key = os.path.abspath(path.parent / image)  # "a.jpg" and "./a.jpg" are the same image
        if not image or key in seen:
            first = f"duplicate row for '{image}' (first on line {seen.get(key)})"
            result.add(
                path, line, "duplicate" if image else "value", first if image else "empty field 'image'"
            )
            continue
        seen[key] = line
        unknown = [
            x
            for x in dict.fromkeys(([main] if main else []) + labels)
            if vocab is not None and x not in vocab
        ]
        if unknown:
            result.add(path, line, "label", f"unknown label(s) {unknown}; expected names from {label_list}")
        images.append((path.parent / image, path, line))
    if not seen and result.errors == 0:
        result.add(path, None, "value", "no samples; expected at least one row after the header")
    if check_images:
        _check_images(result, images, workers)


# ----------------------------------------------------------------------------- CCP


def _check_ccp(
    root: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0
) -> None:
    """Both annotation kinds: tags (image-level) and masks (pixel-level: readable, ids in range, photo
    size)."""
    label_file = root / "label_list.mat"
    result.files.add(str(label_file))
    try:
        names = read_ccp_label_list(label_file)
    except DataFormatError as e:
        result.add(label_file, None, "file", e.message)
        names = None
    ann_root, photo_dir = root / "annotations", root / "photos"
    folders = [ann_root / k for k in ANNOTATION_KINDS if (ann_root / k).is_dir()]
    if not folders:
        result.add(ann_root / "image-level", None, "file", "folder not found (nor annotations/pixel-level)")
    if not photo_dir.is_dir():
        result.add(photo_dir, None, "file", "folder not found")
    if not folders or not photo_dir.is_dir():
        return
    photos = {os.path.splitext(e.name)[0]: Path(e.path) for e in os.scandir(photo_dir) if e.is_file()}
    images = []
    for folder in folders:
        anns = sorted(p for p in folder.iterdir() if p.suffix == ".mat")
        result.files.update(str(a) for a in anns)
        check = partial(_ccp_tags if folder.name == "image-level" else _ccp_mask, names=names, photos=photos)
        for ann, problem in zip(anns, _map(check, anns, workers), strict=True):
            if problem:
                result.add(ann, None, *problem)
            if ann.stem not in photos:
                result.add(
                    ann,
                    None,
                    "missing_image",
                    f"annotation without a photo; expected {photo_dir / ann.stem}.jpg",
                )
            else:
                images.append((photos[ann.stem], photos[ann.stem], None))
    if check_images:
        _check_images(result, images, workers)


def _ccp_tags(ann: Path, names: list[str] | None, photos: dict[str, Path]) -> tuple[str, str] | None:
    try:
        tags = _read_tags(ann, 1 << 30)  # parse only; the range is checked below
    except DataFormatError as e:
        return "value", e.message
    if names is not None and [t for t in tags if not 0 <= t < len(names)]:
        return "label", f"tag indices {tags} outside 0..{len(names) - 1} (label_list.mat)"
    return None


def _ccp_mask(ann: Path, names: list[str] | None, photos: dict[str, Path]) -> tuple[str, str] | None:
    """A readable 2-D mask, ids within label_list, the size of its photo (the header is read even with
    --no-images)."""
    try:
        read_ccp_mask(ann, len(names) if names is not None else 256, photos.get(ann.stem))
    except DataFormatError as e:
        kind = (
            "label"
            if "out of range" in e.message
            else "size"
            if "pixels but its photo" in e.message
            else "value"
        )
        return kind, e.message
    return None


# ----------------------------------------------------------------------------- clothing dataset


def _check_clothing(
    root: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0
) -> None:
    """images.csv rows (fields, duplicates, skipped labels as info) and their image files."""
    from fashionlens.data.clothing_dataset import SKIPPED_LABELS, image_files, read_clothing_rows

    csv_path = root / "images.csv"
    result.files.add(str(csv_path))
    try:
        rows = read_clothing_rows(csv_path)
    except DataFormatError as e:
        result.add(csv_path, e.line, "value", e.message)
        return
    try:
        files = image_files(root / "images")
    except DataFormatError as e:
        result.add(root / "images", None, "file", e.message)
        return
    seen: dict[str, int] = {}
    images, skipped = [], 0
    for r in rows:
        if r.image in seen:
            result.add(
                csv_path,
                r.line,
                "duplicate",
                f"image {r.image!r} is listed twice (first on line {seen[r.image]})",
            )
            continue
        seen[r.image] = r.line
        if r.label in SKIPPED_LABELS:
            skipped += 1
        elif r.image not in files:
            result.add(
                csv_path, r.line, "missing_image", f"no image file for {r.image!r} in {root / 'images'}"
            )
        else:
            images.append((files[r.image], csv_path, r.line))
    if skipped:
        result.add(
            csv_path,
            None,
            "skipped",
            f"{skipped} rows labelled {'/'.join(SKIPPED_LABELS)} are skipped by the reader",
            "warning",
        )
    if check_images:
        _check_images(result, images, workers)


# ----------------------------------------------------------------------------- image folder


def _check_image_folder(
    root: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0
) -> None:
    splits = [root / s for s in SPLIT_FOLDERS if (root / s).is_dir()] or [root]
    images = []
    for folder in splits:
        try:
            dataset = read_image_folder(folder, split=folder.name)
        except DataFormatError as e:
            result.add(folder, None, "file", e.message)
            continue
        for name, count in dataset.class_counts().items():
            if count == 0:
                result.add(folder / name, None, "empty_class", "class folder without images", "warning")
        images += [(p, p, None) for p, _ in dataset.samples]
    result.files.update(str(p) for p, _, _ in images)
    if check_images:
        _check_images(result, images, workers)


# ----------------------------------------------------------------------------- DeepFashion

_INT = re.compile(rb"[+-]?[0-9]+(_[0-9]+)*")  # what int() accepts, as the readers do
_ATTR_VALUES = frozenset((b"1", b"-1", b"0"))
Validate = Callable[[Path, int, list[bytes], CheckResult], object]


def _show(token: bytes) -> str:
    return repr(token[:60].decode("utf-8", "replace"))


def _utf8(path: Path, lineno: int, text: bytes, result: CheckResult) -> bool:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as e:
        result.add(path, lineno, "encoding", f"invalid UTF-8 at column {e.start + 1}: {_show(text)}")
        return False
    return True


def _list_rows(path: Path, result: CheckResult) -> Iterator[tuple[int, bytes]]:
    """(line number, stripped row) of a DeepFashion list file's data rows; checks the count line."""
    if not path.is_file():
        result.add(path, None, "file", "file not found")
        return
    result.files.add(str(path))
    with open(path, "rb") as f:
        first = f.readline().strip()
        expected = int(first) if first.isdigit() else None  # bytes.isdigit(): ASCII digits only
        if expected is None:
            result.add(path, 1, "count", f"expected the number of entries on line 1, found {_show(first)}")
        f.readline()  # column names
        n = 0
        for lineno, line in enumerate(f, start=3):
            if line.strip():
                n += 1
                yield lineno, line.strip()
    if expected is not None and expected != n:
        result.add(path, 1, "count", f"count line says {expected} entries, found {n} rows")


def _vocab_size(path: Path, max_type: int, result: CheckResult) -> int | None:
    n = 0
    for lineno, line in _list_rows(path, result):
        n += 1
        parts = line.rsplit(maxsplit=1)  # names contain spaces: the type is the last token
        if not _utf8(path, lineno, line, result):
            continue
        if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= max_type:
            result.add(path, lineno, "value", f"expected '<name> <type 1..{max_type}>', found {_show(line)}")
    return n if path.is_file() else None


def _ints(
    path: Path, lineno: int, tokens: list[bytes], n: int | None, what: str, result: CheckResult
) -> list[int] | None:
    if n is not None and len(tokens) != n:
        result.add(path, lineno, "columns", f"expected {n} {what} after the image name, found {len(tokens)}")
        return None
    bad = [t for t in tokens if not _INT.fullmatch(t) or not -(1 << 31) <= int(t) < 1 << 31]
    if bad:
        result.add(path, lineno, "value", f"expected integer {what} (32-bit), found {_show(bad[0])}")
        return None
    return [int(t) for t in tokens]


def _image_rows(
    path: Path, result: CheckResult, validate: Validate, master: dict | None
) -> dict[str, tuple[int, object]]:
    """image name -> (line, ``validate(...)``); reports duplicates and names missing from / not in
    ``master``."""
    rows: dict[str, tuple[int, object]] = {}
    for lineno, line in _list_rows(path, result):
        name_b, *tokens = line.split()
        name = name_b.decode("utf-8", "replace")
        if not _utf8(path, lineno, name_b, result):
            continue
        if name in rows:
            result.add(
                path, lineno, "duplicate", f"image {name!r} is listed twice (first on line {rows[name][0]})"
            )
        elif master is not None and name not in master:
            result.add(
                path, lineno, "unknown_image", f"image {name!r} is not in {ANNO_FILES['category_img']}"
            )
        else:
            rows[name] = (lineno, validate(path, lineno, tokens, result))
    for name, (mline, _) in (master or {}).items() if path.is_file() else ():
        if name not in rows:
            result.add(
                path, None, "missing_row", f"no row for {name!r} ({ANNO_FILES['category_img']}:{mline})"
            )
    return rows


def _category(n_cat: int | None, path: Path, lineno: int, tokens: list[bytes], result: CheckResult) -> None:
    v = _ints(path, lineno, tokens, 1, "category label", result)
    if v and n_cat is not None and not 1 <= v[0] <= n_cat:
        result.add(path, lineno, "label", f"unknown category label {v[0]}; expected 1..{n_cat}")


def _attributes(
    n_attr: int | None, path: Path, lineno: int, tokens: list[bytes], result: CheckResult
) -> None:
    if n_attr is not None and len(tokens) != n_attr:
        result.add(
            path,
            lineno,
            "columns",
            f"expected {n_attr} attribute values after the image name, found {len(tokens)}",
        )
    elif not _ATTR_VALUES.issuperset(tokens):
        k = next(k for k, t in enumerate(tokens) if t not in _ATTR_VALUES)
        result.add(path, lineno, "value", f"attribute {k + 1}: expected 1, -1 or 0, found {_show(tokens[k])}")


def _bbox(path: Path, lineno: int, tokens: list[bytes], result: CheckResult) -> list[int] | None:
    v = _ints(path, lineno, tokens, 4, "bbox coordinates (x_1 y_1 x_2 y_2)", result)
    if v and not (0 <= v[0] < v[2] and 0 <= v[1] < v[3]):
        result.add(path, lineno, "value", f"expected 0 <= x_1 < x_2 and 0 <= y_1 < y_2, found {v}")
        return None
    return v


def _landmarks(path: Path, lineno: int, tokens: list[bytes], result: CheckResult) -> list[tuple] | None:
    """-> [(slot, visibility, x, y)] of a valid row, else None."""
    v = _ints(path, lineno, tokens, None, "landmark values", result)
    if v is not None and len(v) % 3 == 0:
        result.add(
            path,
            lineno,
            "columns",
            f"expected clothes_type [variation_type] then (visibility, x, y) triples, found {len(v)} values",
        )
    if v is None or len(v) % 3 == 0:
        return None
    if v[0] not in CLOTHES_TYPE_SLOTS:
        result.add(
            path, lineno, "value", f"unknown clothes type {v[0]} (expected 1 upper, 2 lower, 3 full body)"
        )
        return None
    slots, start = CLOTHES_TYPE_SLOTS[v[0]], 1 if len(v) % 3 == 1 else 2
    if len(v) < start + 3 * len(slots):
        result.add(
            path,
            lineno,
            "columns",
            f"clothes type {v[0]} needs {len(slots)} (visibility, x, y) triples, found "
            f"{(len(v) - start) // 3}",
        )
        return None
    triples = [(s, *v[start + 3 * k : start + 3 * k + 3]) for k, s in enumerate(slots)]
    if any(t[1] not in (0, 1, 2) for t in triples):
        result.add(
            path, lineno, "value", "landmark visibility must be 0 (visible), 1 (occluded) or 2 (cut off)"
        )
        return None
    return triples


def _partition(path: Path, lineno: int, tokens: list[bytes], result: CheckResult) -> None:
    if len(tokens) != 1 or tokens[0].decode("utf-8", "replace") not in PARTITIONS:
        result.add(
            path,
            lineno,
            "value",
            f"expected evaluation status train/val/test, found {_show(b' '.join(tokens))}",
        )


def _check_geometry(result: CheckResult, p: dict[str, Path], boxes: dict, marks: dict, sizes: dict) -> None:
    """Boxes inside their image (stored pixel grid), visible/occluded landmarks inside image and box."""
    for name, (line, box) in boxes.items():
        size = sizes.get(name)
        if box and size and (box[2] > size[0] or box[3] > size[1]):
            result.add(p["bbox"], line, "bbox", f"bbox {box} outside the {size[0]}x{size[1]} image {name}")
    for name, (line, triples) in marks.items():
        box, size = boxes.get(name, (0, None))[1], sizes.get(name)
        for slot, _, x, y in (t for t in triples or () if t[1] != 2):  # cut-off ones: any place
            if size and not (0 <= x <= size[0] and 0 <= y <= size[1]):
                result.add(
                    p["landmarks"],
                    line,
                    "landmark",
                    f"{LANDMARK_NAMES[slot]} ({x}, {y}) outside the {size[0]}x{size[1]} image",
                )
            elif box and not (box[0] <= x <= box[2] and box[1] <= y <= box[3]):
                tol = 0.05 * max(box[2] - box[0], box[3] - box[1])  # annotation noise: a warning only
                far = not (box[0] - tol <= x <= box[2] + tol and box[1] - tol <= y <= box[3] + tol)
                result.add(p["landmarks"], line, "landmark", f"{LANDMARK_NAMES[slot]} ({x}, {y}) outside the "
                                                             f"bbox {box}",
                           "error" if far else "warning")  # fmt: skip


def _check_deepfashion(
    root: Path, result: CheckResult, check_images: bool, label_list=None, workers: int = 0
) -> None:
    p = {k: root / v for k, v in ANNO_FILES.items()}
    n_cat = _vocab_size(p["category_cloth"], 3, result)
    n_attr = _vocab_size(p["attr_cloth"], max(ATTRIBUTE_TYPES), result)
    master = _image_rows(p["category_img"], result, partial(_category, n_cat), None)
    master = master if p["category_img"].is_file() else None
    _image_rows(p["attr_img"], result, partial(_attributes, n_attr), master)
    boxes = _image_rows(p["bbox"], result, _bbox, master)
    marks = _image_rows(p["landmarks"], result, _landmarks, master)
    _image_rows(p["partition"], result, _partition, master)
    sizes = {}
    if check_images and master:
        found = _check_images(
            result, [(root / n, p["category_img"], line) for n, (line, _) in master.items()], workers
        )
        sizes = {n: found[root / n] for n in master if root / n in found}
    _check_geometry(result, p, boxes, marks, sizes)
