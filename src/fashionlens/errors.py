"""The one base class of the errors fashionlens raises for bad input, files or settings.

Every typed error derives from :class:`FashionlensError` and keeps its builtin base too
(``DataFormatError`` is still a ``ValueError``, ``fileio.OutputDirError`` an ``OSError``), so code that
catches the builtin keeps working. The command line catches ``FashionlensError`` once, for every
command, and prints its message as one ``error:`` line (exit code 2) instead of a traceback.

Example:
    >>> from fashionlens.data.errors import DataFormatError
    >>> e = DataFormatError("labels.csv", 3, "expected 3 fields")
    >>> isinstance(e, FashionlensError), isinstance(e, ValueError), str(e)
    (True, True, 'labels.csv:3: expected 3 fields')
"""

from __future__ import annotations


class FashionlensError(Exception):
    """Bad input, a bad file or a bad setting; the message names the file, line or field and what was expected."""
