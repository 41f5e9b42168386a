"""The labels of a session: read from and written to the multi-label CSV/JSONL after every change.

Every save rewrites the whole file atomically (temp file, fsync, rename), so the file on disk is
always a complete, readable data set: a crash, a killed process or a closed tab loses nothing. An
existing file is read first and extended; its rows keep their order and rows for photos outside
the photo folder are kept as they are. Skipped photos are listed in a side file
(``LABELS.skipped.txt``) so that a restart resumes at the first photo neither labelled nor skipped.
One lock serialises the changes of all browser tabs; a lock file keeps a second session off the
same output file.

Example:
    >>> store = LabelStore("styles.csv", ["casual", "street"], find_photos("shoots/"))  # doctest: +SKIP
    >>> store.save(0, "street", ["street", "casual"])                                   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fashionlens.data import multilabel as ml
from fashionlens.data.errors import DataFormatError
from fashionlens.errors import FashionlensError
from fashionlens.fileio import OutputDirError, atomic_write_bytes, remove_stale_temporaries
from fashionlens.labelling.photos import PhotoList

try:  # the lock file needs flock (POSIX); elsewhere sessions are not guarded against each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

OUTPUT_SUFFIXES = (".csv", ".jsonl", ".ndjson")


class LabelSessionError(FashionlensError):
    """A session that cannot start (bad vocabulary, bad existing file, output in use); one line."""


class LabelValueError(FashionlensError, ValueError):
    """A save request with labels the vocabulary does not allow (the page shows the message)."""


@dataclass(frozen=True)
class Record:
    """The labels of one photo: the main label first in ``labels``, then the sub labels."""

    main: str | None
    labels: tuple[str, ...]

    def to_json(self) -> dict:
        return {"main": self.main, "labels": list(self.labels)}


@dataclass(frozen=True)
class _Change:
    """What one save or skip replaced, so that undo can put it back."""

    index: int
    before: Record | None
    was_skipped: bool


def read_vocabulary(path: str | Path) -> list[str]:
    """The label names of a vocabulary file, one per line (see ``read_label_list``).

    Raises:
        DataFormatError: duplicates, no names, or a name with the ``|`` separator (naming the line).
    """
    path = Path(path)
    names = ml.read_label_list(path)
    for n, line in enumerate(io.StringIO(ml._read_text(path), newline=None), start=1):
        if ml.LABEL_SEPARATOR in line:
            raise DataFormatError(
                path,
                n,
                f"label '{line.strip()}' contains '{ml.LABEL_SEPARATOR}', the separator "
                "of the labels column; rename it",
            )
    return names


def make_record(main: str | None, labels: Sequence[str], vocab: Sequence[str]) -> Record:
    """Check a choice against the vocabulary: at least one label, main among them (default the first).

    Raises:
        LabelValueError: no label, an unknown name, or a main label that is not one of the labels.
    """
    known = set(vocab)
    chosen = list(dict.fromkeys(labels))
    if not chosen and main is None:
        raise LabelValueError("choose at least one label (or skip the photo)")
    unknown = [x for x in dict.fromkeys([*([main] if main else []), *chosen]) if x not in known]
    if unknown:
        raise LabelValueError(f"unknown label(s) {unknown}; expected names from the label list")
    main = main or chosen[0]
    return Record(main, tuple([main] + [x for x in chosen if x != main]))


def skipped_path(out: Path) -> Path:
    """The side file listing skipped photos: ``styles.csv`` -> ``styles.skipped.txt``."""
    return out.with_name(f"{out.stem}.skipped.txt")


def _is_empty_table(path: Path) -> bool:
    """True for a 0-byte file or a CSV holding only its header: nothing to read, nothing to lose."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return True
    if len(lines) > 1 or path.suffix.lower() != ".csv":
        return False
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    return "image" in header and "labels" in header


class _OutputLock:
    """An exclusive flock on ``.NAME.lock`` beside the output; released by the kernel if we are killed."""

    def __init__(self, out: Path):
        self.path = out.parent / f".{out.name}.lock"
        self.fd: int | None = None
        if fcntl is None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise LabelSessionError(
                f"{out} is open in another labelling session (process {holder}, lock file "
                f"{self.path}); stop that one first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)  # closing drops the flock
            self.fd = None


class LabelStore:
    """The labels of the photos of one session, kept equal to the output file after every change.

    Args:
        out: the output ``.csv`` (or ``.jsonl``); read and extended when it exists.
        vocab: the label names allowed.
        photos: the photos being labelled (indices into ``photos.items`` name them).

    Raises:
        LabelSessionError: wrong extension, the file in use by another session, or a bad existing
            file (the message names file:line).
        OutputDirError: the output's folder cannot be created or written (its lock file).
    """

    def __init__(self, out: str | Path, vocab: Sequence[str], photos: PhotoList):
        self.out = Path(os.path.abspath(out))
        if self.out.suffix.lower() not in OUTPUT_SUFFIXES:
            raise LabelSessionError(
                f"{self.out}: unknown extension '{self.out.suffix}'; expected .csv or .jsonl"
            )
        self.vocab = list(vocab)
        self.photos = photos
        self.keys = [os.path.abspath(p.path) for p in photos.items]
        self._lock = threading.Lock()
        self._undo: list[_Change] = []
        self.version = 0  # bumped by every change: a tab seeing a jump knows another tab wrote
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._file_lock = _OutputLock(self.out)
        except OSError as e:  # a read-only folder, a file where the folder should be
            raise OutputDirError(
                f"--out {self.out}: its folder is not writable ({e.strerror or e})"
            ) from None
        # ours alone now: a killed session's half-written saves
        for path in (self.out, skipped_path(self.out)):
            remove_stale_temporaries(path)
        try:
            self._rows = self._read_rows()
            self._skipped = self._read_skipped()
        except BaseException:
            self._file_lock.release()
            raise

    # ---------------------------------------------------------------------------------- reading

    def _read_rows(self) -> dict[str, Record]:
        if not self.out.exists() or _is_empty_table(self.out):
            return {}
        try:
            data = ml.read_multilabel(self.out, label_list=self.vocab, check_images=False)
        except DataFormatError as e:
            raise LabelSessionError(f"{e} (fix the file, or pass another --out)") from None
        return {os.path.abspath(s.path): Record(s.main, s.labels) for s in data.samples}

    def _read_skipped(self) -> set[str]:
        path = skipped_path(self.out)
        if not path.exists():
            return set()
        lines = path.read_text(encoding="utf-8").splitlines()
        return {os.path.abspath(self.out.parent / ln.strip()) for ln in lines if ln.strip()}

    # ---------------------------------------------------------------------------------- queries

    def record(self, index: int) -> Record | None:
        return self._rows.get(self.keys[index])

    def is_skipped(self, index: int) -> bool:
        return self.keys[index] in self._skipped and self.keys[index] not in self._rows

    def is_open(self, index: int) -> bool:
        """Neither labelled nor skipped."""
        key = self.keys[index]
        return key not in self._rows and key not in self._skipped

    def counts(self) -> dict[str, int]:
        """Photos of this session labelled and skipped, the total, and rows kept for other photos."""
        labelled = sum(k in self._rows for k in self.keys)
        skipped = sum(self.is_skipped(i) for i in range(len(self.keys)))
        return {
            "labelled": labelled,
            "skipped": skipped,
            "total": len(self.keys),
            "other_rows": len(self._rows) - labelled,
        }

    def next_open(self, order: Sequence[int], after: int | None) -> int | None:
        """The first open photo after ``after`` in ``order``, wrapping round; None when none is left."""
        start = order.index(after) + 1 if after is not None and after in order else 0
        for i in [*order[start:], *order[:start]]:
            if self.is_open(i):
                return i
        return None

    def resume_at(self, order: Sequence[int]) -> int | None:
        """Where a session starts: the first open photo, else the first skipped one, else the first."""
        found = self.next_open(order, None)
        if found is None:
            found = next((i for i in order if self.is_skipped(i)), order[0] if order else None)
        return found

    # ---------------------------------------------------------------------------------- changes

    def save(self, index: int, main: str | None, labels: Sequence[str]) -> Record:
        """Label photo ``index`` and write the file; returns the record stored.

        Raises:
            LabelValueError: labels outside the vocabulary. OSError: the file could not be written
                (memory is then rolled back to what is on disk).
        """
        record = make_record(main, labels, self.vocab)
        with self._lock:
            self._apply(index, record, skipped=False)
        return record

    def skip(self, index: int) -> None:
        """Mark photo ``index`` as skipped and write the side file (a labelled photo stays as it is)."""
        with self._lock:
            if self.keys[index] not in self._rows:
                self._apply(index, None, skipped=True)

    def undo(self) -> int | None:
        """Revert the last save or skip of this session; returns the photo it touched, or None."""
        with self._lock:
            if not self._undo:
                return None
            change = self._undo.pop()
            try:
                self._set(change.index, change.before, change.was_skipped)
            except BaseException:
                self._undo.append(change)
                raise
            return change.index

    def _apply(self, index: int, record: Record | None, skipped: bool) -> None:
        change = _Change(index, self.record(index), self.keys[index] in self._skipped)
        self._set(index, record, skipped)
        self._undo.append(change)

    def _set(self, index: int, record: Record | None, skipped: bool) -> None:
        """Change one photo in memory and on disk, or in neither (lock held)."""
        key = self.keys[index]
        old_rows, old_skipped = dict(self._rows), set(self._skipped)
        if record is None:
            self._rows.pop(key, None)
        else:
            self._rows[key] = record  # an existing row keeps its place in the file
        (self._skipped.add if skipped else self._skipped.discard)(key)
        try:
            if self._rows != old_rows:
                self._write_rows()
            if self._skipped != old_skipped:
                self._write_skipped()
        except BaseException:
            self._rows, self._skipped = old_rows, old_skipped
            raise
        self.version += 1

    def _write_rows(self) -> None:
        samples = [ml.Sample(Path(k), r.labels, r.main) for k, r in self._rows.items()]
        dataset = ml.LabelledSet(samples, self.vocab, self.photos.root)
        jsonl = self.out.suffix.lower() != ".csv"
        atomic_write_bytes(self.out, ml._render(dataset, self.out.parent, jsonl=jsonl).encode("utf-8"))

    def _write_skipped(self) -> None:
        lines = sorted(ml._relative(Path(k), self.out.parent) for k in self._skipped)
        atomic_write_bytes(skipped_path(self.out), "".join(f"{x}\n" for x in lines).encode("utf-8"))

    def close(self) -> None:
        """Release the output lock (nothing is pending: every change is already on disk)."""
        self._file_lock.release()
