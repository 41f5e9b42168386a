"""Errors shared by every annotation reader in :mod:`fashionlens.data`, and the collector of problems.

Every reader has two modes. Strict (the default): the first problem raises a :class:`DataFormatError`.
Collecting (``problems=Problems()``): each problem is recorded as a :class:`Problem` and reading goes
on, so one pass lists every malformed line; ``fashionlens data check`` is built on this mode.

Example:
    >>> problems = Problems()
    >>> report(problems, DataFormatError("a.csv", 3, "expected 3 fields", kind="columns"))
    >>> str(problems.found[0])
    'a.csv:3: error [columns] expected 3 fields'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fashionlens.errors import FashionlensError

__all__ = ["DataFormatError", "Problem", "Problems", "report", "warn"]


class DataFormatError(FashionlensError, ValueError):
    """A malformed annotation file, with the file and the 1-based line that is wrong.

    Call as ``DataFormatError(path, line, message)`` (str: ``"path:line: message"``, or
    ``"path: message"`` when ``line`` is None; ``"path:line: field 'f': message"`` when a ``field`` is
    named). A single preformatted message, ``DataFormatError("...")``, is also accepted; ``path`` and
    ``line`` are then None.

    Attributes:
        path: the annotation file (str), or None.
        line: 1-based line number, or None when the problem is not tied to one line.
        message: what was expected and what was found (without the field).
        kind: short category of the problem, as ``data check`` lists it (see :class:`Problem`).
        field: the field (column, key, variable) that is wrong, or None.

    Example:
        >>> str(DataFormatError("Anno/list_bbox.txt", 7, "expected 4 integers"))
        'Anno/list_bbox.txt:7: expected 4 integers'
        >>> str(DataFormatError("a.csv", 2, "unknown label(s) ['x']", kind="label", field="labels"))
        "a.csv:2: field 'labels': unknown label(s) ['x']"
    """

    def __init__(self, path: str | Path, line: int | None = None, message: str | None = None, *,
                 kind: str = "value", field: str | None = None):  # fmt: skip
        self.kind, self.field = kind, field
        if message is None and line is None:  # one preformatted message
            self.path, self.line, self.message = None, None, str(path)
            super().__init__(self.message)
            return
        self.path, self.line, self.message = str(path), line, message or ""
        where = self.path if line is None else f"{self.path}:{line}"
        named = "" if field is None else f"field '{field}': "
        super().__init__(f"{where}: {named}{self.message}")

    def __reduce__(self):  # pickling (DataLoader workers) rebuilds from the fields
        args = (self.message,) if self.path is None else (self.path, self.line, self.message)
        return (_rebuild, (type(self), args, self.kind, self.field))


def _rebuild(cls: type[DataFormatError], args: tuple, kind: str, field: str | None) -> DataFormatError:
    return cls(*args, kind=kind, field=field)


@dataclass(frozen=True)
class Problem:
    """One problem found in a data set.

    Attributes:
        path: the file the problem is in (annotation file or image).
        line: 1-based line number, or None when not tied to one line.
        kind: short category, e.g. ``count``, ``columns``, ``value``, ``label``, ``duplicate``,
            ``encoding``, ``missing_image``, ``missing_row``, ``unknown_image``, ``bbox``, ``landmark``,
            ``size``, ``image``, ``file``.
        message: what was found and what was expected.
        severity: ``error`` (the readers refuse the data) or ``warning`` (suspicious but usable).
        field: the field (column, key, variable) that is wrong, or None.
    """

    path: str
    line: int | None
    kind: str
    message: str
    severity: str = "error"
    field: str | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        text = f"{where}: {self.severity} [{self.kind}] {self.message}"
        return text if self.field is None else f"{text} (field '{self.field}')"


class Problems:
    """What a reader in collecting mode found: every problem, and the annotation files it read.

    Attributes:
        found: the problems, in the order they were found.
        files: the annotation files read (str paths).
    """

    def __init__(self) -> None:
        self.found: list[Problem] = []
        self.files: set[str] = set()

    def __len__(self) -> int:
        return len(self.found)

    @property
    def errors(self) -> int:
        """The number of problems of severity ``error``."""
        return sum(p.severity == "error" for p in self.found)

    def add(self, error: DataFormatError, severity: str = "error") -> None:
        """Record ``error`` as a :class:`Problem` (a preformatted one, without a path, gets path ``""``)."""
        where = error.path or ""
        self.found.append(Problem(where, error.line, error.kind, error.message, severity, error.field))

    def sort_from(self, start: int) -> None:
        """Order the problems found since ``len(self) == start`` by line (those without a line last)."""
        self.found[start:] = sorted(self.found[start:], key=lambda p: (p.line is None, p.line or 0))


def report(problems: Problems | None, error: DataFormatError) -> None:
    """The one way a reader reports a problem: raise ``error`` (strict) or record it and go on.

    Args:
        problems: None (strict: raise) or the collector.
        error: the problem, naming the file, line and field.

    Raises:
        DataFormatError: ``error`` itself, when ``problems`` is None.
    """
    if problems is None:
        raise error from None
    problems.add(error)


def warn(problems: Problems | None, error: DataFormatError) -> None:
    """Record ``error`` as a warning when collecting (a strict reader accepts what it warns about)."""
    if problems is not None:
        problems.add(error, "warning")
