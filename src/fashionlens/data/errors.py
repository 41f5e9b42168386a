"""Errors shared by every annotation reader in :mod:`fashionlens.data`."""

from __future__ import annotations

from pathlib import Path

from fashionlens.errors import FashionlensError


class DataFormatError(FashionlensError, ValueError):
    """A malformed annotation file, with the file and the 1-based line that is wrong.

    Call as ``DataFormatError(path, line, message)`` (str: ``"path:line: message"``, or
    ``"path: message"`` when ``line`` is None). A single preformatted message,
    ``DataFormatError("...")``, is also accepted; ``path`` and ``line`` are then None.

    Attributes:
        path: the annotation file (str), or None.
        line: 1-based line number, or None when the problem is not tied to one line.
        message: what was expected and what was found.

    Example:
        >>> str(DataFormatError("Anno/list_bbox.txt", 7, "expected 4 integers"))
        'Anno/list_bbox.txt:7: expected 4 integers'
    """

    def __init__(self, path: str | Path, line: int | None = None, message: str | None = None):
        if message is None and line is None:  # one preformatted message
            self.path, self.line, self.message = None, None, str(path)
            super().__init__(self.message)
            return
        self.path, self.line, self.message = str(path), line, message or ""
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {self.message}")

    def __reduce__(self):  # pickling (DataLoader workers) rebuilds from the three fields
        if self.path is None:
            return (type(self), (self.message,))
        return (type(self), (self.path, self.line, self.message))
