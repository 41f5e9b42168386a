"""Multi-label data sets: one documented file format, top-n label selection and a stratified split.

The format is a CSV with the header ``image,main,labels`` or a JSONL file
with one ``{"image": ..., "main": ..., "labels": [...]}`` object per line. ``labels`` is a
``|``-separated list in CSV; ``main`` may be empty (no main label) and is added to the labels when
missing there. Image paths are relative to the file's folder, or to ``images_root`` when given.

Example:
    >>> ds = read_multilabel("styles.csv")                    # doctest: +SKIP
    >>> top5 = select_top_labels(ds, 5)                       # doctest: +SKIP
    >>> splits = split_dataset(top5, (0.7, 0.1, 0.2), seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fashionlens.data.errors import DataFormatError, Problems, report
from fashionlens.errors import ConfigError, InputNotFoundError
from fashionlens.fileio import atomic_write_text

__all__ = [
    "DataFormatError",
    "LabelledSet",
    "Sample",
    "concat_splits",
    "read_label_list",
    "read_multilabel",
    "select_top_labels",
    "split_by_kind",
    "split_dataset",
    "write_multilabel",
]

REQUIRED_CSV_COLUMNS = ("image", "labels")
LABEL_SEPARATOR = "|"
MAX_LISTED_MISSING = 5


@dataclass(frozen=True)
class Sample:
    """One image and its labels.

    Args:
        path: absolute path of the image file.
        labels: label names, main label included, without duplicates.
        main: the main label, or None when the data set has none.
        line: the line of the file it was read from (None: not read from a file); not compared.
    """

    path: Path
    labels: tuple[str, ...]
    main: str | None = None
    line: int | None = field(default=None, compare=False)


@dataclass
class LabelledSet:
    """A multi-label data set: samples plus the label vocabulary that fixes the target order.

    Args:
        samples: the images and their labels.
        label_names: the vocabulary; column ``c`` of :meth:`targets` is ``label_names[c]``.
        root: the folder relative paths were resolved against (informational).
    """

    samples: list[Sample]
    label_names: list[str]
    root: Path

    def __len__(self) -> int:
        return len(self.samples)

    def label_index(self) -> dict[str, int]:
        """Map each label name to its column."""
        return {name: i for i, name in enumerate(self.label_names)}

    def targets(self) -> np.ndarray:
        """Multi-hot targets, float32 of shape (N, C)."""
        index = self.label_index()
        out = np.zeros((len(self.samples), len(self.label_names)), dtype=np.float32)
        for row, sample in enumerate(self.samples):
            out[row, [index[name] for name in sample.labels]] = 1.0
        return out

    def main_indices(self) -> np.ndarray:
        """Column of each sample's main label, int64 of shape (N,); -1 where there is none."""
        index = self.label_index()
        return np.array([index.get(s.main, -1) if s.main else -1 for s in self.samples], dtype=np.int64)

    def has_main(self) -> bool:
        """True when at least one sample has a main label."""
        return any(s.main is not None for s in self.samples)

    def subset(self, indices: Iterable[int]) -> LabelledSet:
        """The samples at ``indices`` (in that order), with the same vocabulary and root."""
        return LabelledSet([self.samples[i] for i in indices], list(self.label_names), self.root)


# ----------------------------------------------------------------------------------------- reading
#
# Strict by default (the first problem raises a DataFormatError naming file:line and field); with
# ``problems`` every problem is recorded there and reading goes on (``fashionlens data check``).


@dataclass
class _Row:
    line: int
    image: str
    main: str | None
    labels: list[str]


def _fail(
    path: Path, line: int | None, message: str, kind: str = "value", field: str | None = None
) -> DataFormatError:
    """The shared error: its text is ``path:line: message`` (``path: message`` without a line)."""
    return DataFormatError(path, line, message, kind=kind, field=field)


def _split_labels(text: str) -> list[str]:
    return [t.strip() for t in text.split(LABEL_SEPARATOR) if t.strip()]


def _read_text(path: Path, problems: Problems | None = None) -> str | None:
    """The file as text: UTF-8 (a leading byte-order mark, as Excel writes, is dropped); None when it
    cannot be read (collecting)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputNotFoundError(f"{path}: file not found") from None
    except OSError as e:  # a folder, no permission
        report(problems, _fail(path, None, f"cannot be read ({e.strerror or e})", "file"))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        report(
            problems,
            _fail(path, line, f"invalid UTF-8 at byte {e.start}; expected a UTF-8 text file", "encoding"),
        )
        return None


def _parse_csv(path: Path, problems: Problems | None = None) -> list[_Row]:
    text = _read_text(path, problems)
    if text is None:
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[_Row] = []
    try:
        _csv_rows(path, reader, rows, problems)
    except csv.Error as e:  # the rest of the file cannot be read
        report(problems, _fail(path, reader.line_num, f"malformed CSV ({e})"))
    return rows


def _csv_rows(path: Path, reader, rows: list[_Row], problems: Problems | None) -> None:
    header = next(reader, None)
    if header is None:
        report(problems, _fail(path, 1, "empty file; expected the header 'image,main,labels'", "columns"))
        return
    columns = [h.strip().lower() for h in header]
    for name in REQUIRED_CSV_COLUMNS:
        if name not in columns:
            message = f"missing column '{name}' in header {header}; expected 'image,main,labels'"
            report(problems, _fail(path, 1, message, "columns"))
            return
    col = {name: columns.index(name) for name in ("image", "main", "labels") if name in columns}
    for fields in reader:
        if not fields or all(not x.strip() for x in fields):
            continue
        if len(fields) != len(columns):
            message = f"expected {len(columns)} fields {columns}, got {len(fields)}"
            report(problems, _fail(path, reader.line_num, message, "columns"))
            continue
        main = fields[col["main"]].strip() if "main" in col else ""
        labels = _split_labels(fields[col["labels"]])
        rows.append(_Row(reader.line_num, fields[col["image"]].strip(), main or None, labels))


def _parse_json_line(path: Path, line: int, text: str) -> _Row:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(
            path, line, f"bad JSON ({e.msg} at column {e.colno}); expected one object per line"
        ) from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of over 4300 digits, absurd nesting
        raise _fail(
            path, line, f"bad JSON ({type(e).__name__}: {str(e)[:80]}); expected one object per line"
        ) from None
    if not isinstance(obj, dict):
        raise _fail(path, line, f"expected a JSON object, got {type(obj).__name__}")
    for key in ("image", "labels"):
        if key not in obj:
            raise _fail(path, line, f"missing field '{key}'; expected keys image, main, labels")
    image, main, labels = obj["image"], obj.get("main"), obj["labels"]
    if not isinstance(image, str):
        raise _fail(path, line, f"field 'image': expected a string, got {type(image).__name__}")
    if main is not None and not isinstance(main, str):
        raise _fail(path, line, f"field 'main': expected a string or null, got {type(main).__name__}")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _fail(path, line, "field 'labels': expected a list of strings")
    return _Row(line, image.strip(), (main or "").strip() or None, [x.strip() for x in labels if x.strip()])


def _parse_jsonl(path: Path, problems: Problems | None = None) -> list[_Row]:
    text = _read_text(path, problems)
    rows = []
    for n, line in enumerate(io.StringIO(text or "", newline=None), start=1):
        if line.strip():
            try:
                rows.append(_parse_json_line(path, n, line))
            except DataFormatError as e:
                report(problems, e)
    return rows


def read_label_list(path: str | Path) -> list[str]:
    """Read a vocabulary file: one label name per line (blank lines ignored, duplicates refused)."""
    path = Path(path)
    names: list[str] = []
    for n, text in enumerate(io.StringIO(_read_text(path), newline=None), start=1):
        name = text.strip()
        if not name:
            continue
        if name in names:
            raise _fail(path, n, f"label '{name}' listed twice; expected unique names", "duplicate")
        names.append(name)
    if not names:
        raise _fail(path, None, "no label names; expected one name per line")
    return names


def _rows_to_samples(path: Path, rows: list[_Row], base: Path, vocab: list[str] | None,
                     problems: Problems | None = None) -> list[Sample]:  # fmt: skip
    """Collecting, a row without an image or with an image seen before is left out; a row with unknown
    labels keeps its known ones."""
    known = set(vocab) if vocab is not None else None
    seen: dict[Path, int] = {}
    samples = []
    for row in rows:
        if not row.image:
            report(problems, _fail(path, row.line, "empty field 'image'; expected an image path"))
            continue
        image_path = Path(os.path.abspath(base / row.image))
        if image_path in seen:
            message = f"duplicate row for '{row.image}' (first on line {seen[image_path]})"
            report(problems, _fail(path, row.line, message, "duplicate", "image"))
            continue
        seen[image_path] = row.line
        labels = list(
            dict.fromkeys(([row.main] if row.main and row.main not in row.labels else []) + row.labels)
        )
        main = row.main
        if known is not None:
            unknown_main = [row.main] if row.main and row.main not in known else []
            for name, names in (("main", unknown_main), ("labels", [x for x in labels if x not in known])):
                unknown = [x for x in names if name == "main" or x not in unknown_main]
                if unknown:
                    message = f"unknown label(s) {unknown}; expected names from the label list"
                    report(problems, _fail(path, row.line, message, "label", name))
            labels = [x for x in labels if x in known]
            main = None if unknown_main else main
        samples.append(Sample(image_path, tuple(labels), main, row.line))
    return samples


def _check_images(path: Path, samples: list[Sample], problems: Problems | None = None) -> None:
    missing = [(s.line, s.path) for s in samples if not s.path.is_file()]
    if missing:
        listed = "; ".join(f"line {line}: {p}" for line, p in missing[:MAX_LISTED_MISSING])
        more = f" and {len(missing) - MAX_LISTED_MISSING} more" if len(missing) > MAX_LISTED_MISSING else ""
        message = f"{len(missing)} image file(s) not found: {listed}{more}"
        report(problems, _fail(path, missing[0][0], message, "missing_image"))


def read_multilabel(
    path: str | Path,
    images_root: str | Path | None = None,
    label_list: str | Path | Sequence[str] | None = None,
    check_images: bool = True,
    problems: Problems | None = None,
) -> LabelledSet:
    """Read a multi-label data set from a CSV (``image,main,labels``) or JSONL file.

    Args:
        path: the ``.csv`` or ``.jsonl`` file.
        images_root: folder image paths are relative to (default: the file's folder).
        label_list: a vocabulary file (one name per line) or a list of names. The vocabulary then
            has that order and an unknown label is an error. Default: the sorted set of names used.
        check_images: verify that every image file exists.
        problems: None (strict: the first problem raises) or a collector: every problem is recorded
            there and reading goes on; the data set then holds the rows that could be read (each
            sample's ``line`` names its row), with their known labels.

    Returns:
        The data set, image paths made absolute.

    Raises:
        DataFormatError: strict only: malformed file, unknown label, duplicate image or missing image
            files; the message names ``file:line``, the field and what was expected.
        InputNotFoundError: ``path`` or the ``label_list`` file does not exist.
    """
    path = Path(path)
    base = Path(images_root) if images_root is not None else path.parent
    if problems is not None:
        problems.files.add(str(path))
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        report(
            problems, _fail(path, None, f"unknown extension '{path.suffix}'; expected .csv or .jsonl", "file")
        )
        return LabelledSet([], [], Path(os.path.abspath(base)))
    errors = problems.errors if problems is not None else 0
    rows = _parse_csv(path, problems) if suffix == ".csv" else _parse_jsonl(path, problems)
    if not rows and (problems is None or problems.errors == errors):
        report(problems, _fail(path, None, "no samples; expected at least one row after the header"))
    vocab = _vocabulary(label_list, problems)
    samples = _rows_to_samples(path, rows, base, vocab, problems)
    if check_images:
        _check_images(path, samples, problems)
    if vocab is None:
        vocab = sorted({name for s in samples for name in s.labels})
    return LabelledSet(samples, vocab, Path(os.path.abspath(base)))


def _vocabulary(label_list: str | Path | Sequence[str] | None, problems: Problems | None) -> list[str] | None:
    """The given vocabulary; collecting, an unreadable label list file is one problem (and no vocabulary)."""
    if not isinstance(label_list, (str, Path)):
        return list(label_list) if label_list is not None else None
    try:
        return read_label_list(label_list)
    except (DataFormatError, InputNotFoundError) as e:
        if problems is None:
            raise
        problems.add(DataFormatError(label_list, None, str(e), kind="file"))
        return None


# ----------------------------------------------------------------------------------------- writing


def _relative(image: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(image, folder)).as_posix()
    except ValueError:  # another drive on Windows
        return str(image)


def _render(dataset: LabelledSet, folder: Path, jsonl: bool) -> str:
    buf = io.StringIO()
    writer = None if jsonl else csv.writer(buf, lineterminator="\n")
    if writer is not None:
        writer.writerow(["image", "main", "labels"])
    for s in dataset.samples:
        bad = [x for x in s.labels if LABEL_SEPARATOR in x]
        if bad:
            raise ValueError(f"label names {bad} contain the separator '{LABEL_SEPARATOR}'")
        image = _relative(s.path, folder)
        if writer is None:
            buf.write(json.dumps({"image": image, "main": s.main, "labels": list(s.labels)}) + "\n")
        else:
            writer.writerow([image, s.main or "", LABEL_SEPARATOR.join(s.labels)])
    return buf.getvalue()


def write_multilabel(
    dataset: LabelledSet, path: str | Path, label_list_path: str | Path | None = None
) -> None:
    """Write a data set as CSV or JSONL (by extension), atomically (temp file + ``os.replace``).

    Image paths are written relative to the file's folder so that :func:`read_multilabel` reads
    the same absolute paths back.

    Args:
        dataset: the data set.
        path: a ``.csv`` or ``.jsonl`` file.
        label_list_path: also write the vocabulary there (keeps labels that no image uses).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise _fail(path, None, f"unknown extension '{path.suffix}'; expected .csv or .jsonl")
    atomic_write_text(path, _render(dataset, path.parent.absolute(), jsonl=suffix != ".csv"))
    if label_list_path is not None:
        atomic_write_text(Path(label_list_path), "".join(f"{name}\n" for name in dataset.label_names))


# -------------------------------------------------------------------------------- protocol steps


def _most_frequent(counts: Counter, n: int) -> list[str]:
    return [name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def select_top_labels(
    dataset: LabelledSet, n: int, counted: Sequence[LabelledSet] | None = None
) -> LabelledSet:
    """Keep the images of the ``n`` most frequent labels and restrict the vocabulary to them.

    With main labels (seed B's top-5 / top-7 protocol): the n most frequent *main* labels (ties
    broken by name) are kept, with the images whose main label is one of them; their sub labels
    outside the n are dropped (as are images without a main label). Without any main label: the n most
    frequent labels overall, and the images that have at least one of them. The vocabulary keeps its original
    order.

    Args:
        dataset: the data set.
        n: number of labels to keep (all of them when fewer exist).
        counted: the data sets whose labels are counted to find the n (default: ``dataset`` alone);
            parts of one data set (CCP's two annotation kinds) pass all parts, so each keeps the
            same n labels.

    Returns:
        A new data set.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    counted = [dataset] if counted is None else list(counted)
    if dataset.has_main():
        top = set(_most_frequent(Counter(s.main for d in counted for s in d.samples if s.main), n))
        keep = [s for s in dataset.samples if s.main in top]
    else:
        top = set(_most_frequent(Counter(x for d in counted for s in d.samples for x in s.labels), n))
        keep = [s for s in dataset.samples if top.intersection(s.labels)]
    samples = [Sample(s.path, tuple(x for x in s.labels if x in top), s.main) for s in keep]
    return LabelledSet(samples, [x for x in dataset.label_names if x in top], dataset.root)


def _strata(dataset: LabelledSet, stratify: str | None) -> list[str]:
    """One group key per sample: its main label, else its rarest label (see split_dataset)."""
    if stratify is None:
        return [""] * len(dataset)
    if stratify not in ("main", "rarest"):
        raise ConfigError(f"stratify must be 'main', 'rarest' or None, got {stratify!r}")
    counts = Counter(x for s in dataset.samples for x in s.labels)
    order = dataset.label_index()
    keys = []
    for s in dataset.samples:
        if stratify == "main" and s.main:
            keys.append(f"main:{s.main}")
        elif s.labels:
            keys.append(f"rarest:{min(s.labels, key=lambda x: (counts[x], order.get(x, -1), x))}")
        else:
            keys.append("none")
    return keys


def split_dataset(
    dataset: LabelledSet,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    stratify: str | None = "main",
) -> dict[str, LabelledSet]:
    """Seeded, stratified train / val / test split (seed B: 70 / 10 / 20).

    Samples are grouped by their main label (``stratify="main"``). A sample without a main label,
    or every sample with ``stratify="rarest"``, is grouped by its *rarest* label (fewest images in
    the whole set, ties by vocabulary order), so rare labels are spread over the splits before
    common ones; images without labels form one group; ``stratify=None`` is one group. Each group is
    shuffled and cut by systematic sampling at a seeded random offset: a group of g images gets
    ``g * fraction`` of each split up to +-1, and tiny groups land in a split with probability
    equal to its fraction, so the overall fractions stay right in expectation.

    Args:
        dataset: the data set.
        fractions: (train, val, test) fractions, non-negative, summing to 1.
        seed: the split is a pure function of the data set order and this seed.
        stratify: "main", "rarest" or None.

    Returns:
        ``{"train", "val", "test"}`` subsets: disjoint, complete, each in the original order.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
        raise ConfigError(
            "fractions must be 3 non-negative numbers summing to 1 (data.split_fractions), got "
            f"{tuple(fractions)}"
        )
    bounds = np.cumsum(fr / fr.sum())
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(_strata(dataset, stratify)):
        groups.setdefault(key, []).append(i)
    assignment = np.zeros(len(dataset), dtype=np.int64)
    for key in sorted(groups):
        members = rng.permutation(np.asarray(groups[key]))
        g = len(members)
        positions = (np.arange(g) + rng.random()) / g  # (g,) in [0, 1)
        assignment[members] = np.minimum(np.searchsorted(bounds, positions, side="right"), 2)
    return {
        name: dataset.subset(np.flatnonzero(assignment == k).tolist())
        for k, name in enumerate(("train", "val", "test"))
    }


def concat_splits(splits: Sequence[dict[str, LabelledSet]]) -> dict[str, LabelledSet]:
    """Join the splits of several data sets with the same vocabulary: ``{"train": a + b, ...}``."""
    first = splits[0]
    for other in splits[1:]:
        if list(other["train"].label_names) != list(first["train"].label_names):
            raise ValueError("concat_splits: the data sets have different label vocabularies")
    return {
        name: LabelledSet(
            [s for part in splits for s in part[name].samples],
            list(first[name].label_names),
            first[name].root,
        )
        for name in first
    }


def split_by_kind(
    kinds: Sequence[LabelledSet], fractions: tuple[float, float, float], seed: int = 0
) -> dict[str, LabelledSet]:
    """Split each kind of annotation (e.g. CCP's image-level and pixel-level photos) on its own, with the
    same fractions and seed, and join the parts: adding a kind never moves a photo of another."""
    return concat_splits([split_dataset(k, tuple(fractions), seed=seed) for k in kinds])
