"""The clothing-dataset layout (Grigorev's "clothing dataset", CC0): ``images.csv`` + ``images/``.

Layout::

    root/images.csv          columns image,sender_id,label,kids (a header line first)
    root/images/<image>.jpg  ``image`` is the file name without its extension

Rows labelled ``Not sure``, ``Other`` or ``Skip`` (the original data set's "no class" answers) are
skipped and counted. Class names are the labels lower-cased (``T-Shirt`` -> ``t-shirt``), the
spelling of clothing-dataset-small's folders, so a model trained here is evaluated on
clothing-small's image folders by name. ``kids`` (True for children's clothes) and ``sender_id``
(who took the photo) are kept as metadata.

:func:`split_clothing` makes a seeded split stratified by class; ``holdout`` names photos (e.g. the
folder ``clothing-small/validation``, which this data set contains under the same ids) that go to
the validation split and never to training, so validation numbers stay comparable with models
trained on clothing-small.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fashionlens.data.errors import DataFormatError, Problems, report
from fashionlens.data.image_folder import ClassificationSet
from fashionlens.data.images import IMAGE_EXTENSIONS
from fashionlens.errors import ConfigError

SKIPPED_LABELS = ("Not sure", "Other", "Skip")
COLUMNS = ("image", "sender_id", "label", "kids")


@dataclass
class ClothingDataset:
    """The photos with a class, their metadata and what was skipped.

    Attributes:
        data: the photos and their class (class names lower-cased and sorted).
        kids: (N,) bool, True for children's clothes.
        senders: (N,) str, who contributed each photo.
        skipped: label -> number of rows skipped for it (``Not sure``, ``Other``, ``Skip``).
        lines: (N,) int64, the line of ``images.csv`` each photo was read from (empty: unknown).
    """

    data: ClassificationSet
    kids: np.ndarray
    senders: np.ndarray
    skipped: Counter = field(default_factory=Counter)
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.data)

    def subset(self, indices) -> ClothingDataset:
        idx = np.asarray(list(indices), dtype=np.int64)
        lines = self.lines[idx] if len(self.lines) else self.lines
        return ClothingDataset(
            self.data.subset(idx.tolist()), self.kids[idx], self.senders[idx], Counter(self.skipped), lines
        )


@dataclass
class _Row:
    line: int
    image: str
    sender: str
    label: str
    kids: bool


def _parse_kids(path: Path, line: int, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise DataFormatError(path, line, f"expected True or False, found {text!r}", field="kids")


def read_clothing_rows(path: Path, problems: Problems | None = None) -> list[_Row]:
    """The rows of ``images.csv`` (skipped labels included), each checked for its fields.

    Args:
        path: the ``images.csv`` file.
        problems: None (strict: the first problem raises) or a collector: each bad row is recorded
            there and left out.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        report(problems, DataFormatError(path, None, f"cannot read ({e.strerror or e})", kind="file"))
        return []
    except UnicodeDecodeError as e:
        message = f"invalid UTF-8 at byte {e.start}; expected a UTF-8 CSV file"
        report(problems, DataFormatError(path, None, message, kind="encoding"))
        return []
    if problems is not None:
        problems.files.add(str(path))
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[_Row] = []
    try:
        _rows(path, reader, rows, problems)
    except csv.Error as e:  # the rest of the file cannot be read
        report(problems, DataFormatError(path, reader.line_num, f"malformed CSV ({e})"))
    return rows


def _rows(path: Path, reader, rows: list[_Row], problems: Problems | None) -> None:
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in ("image", "label") if c not in header]
    if missing:
        message = f"header {header} lacks {missing}; expected {','.join(COLUMNS)}"
        report(problems, DataFormatError(path, 1, message, kind="columns"))
        return
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue
        line = reader.line_num
        if len(fields) != len(header):
            message = f"expected {len(header)} fields {header}, found {len(fields)}"
            report(problems, DataFormatError(path, line, message, kind="columns"))
            continue
        r = dict(zip(header, (f.strip() for f in fields), strict=True))
        if not r["image"] or not r["label"]:
            report(
                problems,
                DataFormatError(path, line, f"empty field '{'image' if not r['image'] else 'label'}'"),
            )
            continue
        try:
            kids = _parse_kids(path, line, r.get("kids", ""))
        except DataFormatError as e:
            report(problems, e)
            continue
        rows.append(_Row(line, r["image"], r.get("sender_id", ""), r["label"], kids))


def image_files(folder: Path, problems: Problems | None = None) -> dict[str, Path]:
    """Image file by id (file name without extension), from one directory listing."""
    if not folder.is_dir():
        report(problems, DataFormatError(folder, None, "images folder not found", kind="file"))
        return {}
    return {os.path.splitext(e.name)[0]: Path(e.path) for e in os.scandir(folder)
            if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS}  # fmt: skip


def read_clothing_dataset(root: str | Path, problems: Problems | None = None) -> ClothingDataset:
    """Read ``root/images.csv`` and ``root/images/``.

    Args:
        root: the data set folder.
        problems: None (strict: the first problem raises) or a collector: every problem is recorded
            there and reading goes on; the data set then holds the photos that could be read.

    Returns:
        The photos in file order, classes = sorted lower-cased labels.

    Raises:
        DataFormatError: strict only: a missing file or column, a malformed row, a duplicate id, or
            an image id without a file (naming the line).

    Example:
        >>> ds = read_clothing_dataset("../shared/data/clothing-full")  # doctest: +SKIP
        >>> len(ds), len(ds.data.class_names), sum(ds.skipped.values())  # doctest: +SKIP
        (4398, 17, 0)
    """
    root = Path(root)
    csv_path = root / "images.csv"
    errors = problems.errors if problems is not None else 0
    if not csv_path.is_file():
        message = "file not found; expected the clothing-dataset layout (images.csv, images/)"
        report(problems, DataFormatError(csv_path, None, message, kind="file"))
        rows = []
    else:
        rows = read_clothing_rows(csv_path, problems)
    files = image_files(root / "images", problems) if csv_path.is_file() else {}
    skipped: Counter = Counter()
    seen: dict[str, int] = {}
    kept = []
    for r in rows:
        if r.image in seen:
            message = f"image {r.image!r} is listed twice (first on line {seen[r.image]})"
            report(problems, DataFormatError(csv_path, r.line, message, kind="duplicate"))
            continue
        seen[r.image] = r.line
        if r.label in SKIPPED_LABELS:
            skipped[r.label] += 1
            continue
        if r.image not in files:
            if (root / "images").is_dir():
                expected = f"expected {root / 'images' / r.image}.jpg"
                message = f"no image file for {r.image!r}; {expected}"
                report(problems, DataFormatError(csv_path, r.line, message, kind="missing_image"))
            continue
        kept.append(r)
    if not kept and (problems is None or problems.errors == errors):
        message = "no labelled photos (every row is empty or skipped)"
        report(problems, DataFormatError(csv_path, None, message))
    names = sorted({r.label.lower() for r in kept})
    index = {n: k for k, n in enumerate(names)}
    data = ClassificationSet([(files[r.image], index[r.label.lower()]) for r in kept], names, root)
    kids, senders = (
        np.array([r.kids for r in kept], dtype=bool),
        np.array([r.sender for r in kept], dtype=str),
    )
    return ClothingDataset(data, kids, senders, skipped, np.array([r.line for r in kept], dtype=np.int64))


def holdout_ids(path: str | Path) -> set[str]:
    """Photo ids to hold out: the image file names (no extension) under a folder, or the lines of a text
    file."""
    path = Path(path)
    if path.is_dir():
        return {p.stem for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS}
    if path.is_file():
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}
    raise DataFormatError(f"holdout path not found: {path}; expected a folder of photos or a file of ids")


def split_clothing(ds: ClothingDataset, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                   holdout: set[str] | None = None) -> dict[str, ClothingDataset]:  # fmt: skip
    """Seeded train / val / test split stratified by class; ``holdout`` ids go to val, never to train.

    Each class's photos (minus the held-out ones) are shuffled and cut at the cumulative fractions,
    so every class has its share in every split (up to rounding).
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
        raise ConfigError(
            "fractions must be 3 non-negative numbers summing to 1 (data.split_fractions), got "
            f"{tuple(fractions)}"
        )
    rng = np.random.default_rng(seed)
    ids = [p.stem for p, _ in ds.data.samples]
    held = np.array([i in (holdout or ()) for i in ids])
    targets = ds.data.targets()
    assignment = np.where(held, 1, -1)
    bounds = np.cumsum(fr)[:2]
    for k in range(len(ds.data.class_names)):
        members = rng.permutation(np.flatnonzero((targets == k) & ~held))
        cuts = np.round(bounds * len(members)).astype(int)
        assignment[members[: cuts[0]]] = 0
        assignment[members[cuts[0] : cuts[1]]] = 1
        assignment[members[cuts[1] :]] = 2
    return {
        name: ds.subset(np.flatnonzero(assignment == k)) for k, name in enumerate(("train", "val", "test"))
    }
