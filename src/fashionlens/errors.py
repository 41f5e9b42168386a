"""The one base class of the errors fashionlens raises for bad input, files or settings.

Every typed error derives from :class:`FashionlensError` and keeps its builtin base too
(``DataFormatError`` is still a ``ValueError``, ``fileio.OutputDirError`` an ``OSError``), so code that
catches the builtin keeps working. The command line catches ``FashionlensError`` once, around every
command (:mod:`fashionlens.cli_common`), and prints its message as one ``error:`` line (exit code 2,
or the error's own ``exit_code``) instead of a traceback; any other exception is a bug and keeps its
traceback.

Example:
    >>> from fashionlens.data.errors import DataFormatError
    >>> e = DataFormatError("labels.csv", 3, "expected 3 fields")
    >>> isinstance(e, FashionlensError), isinstance(e, ValueError), str(e)
    (True, True, 'labels.csv:3: expected 3 fields')
"""

from __future__ import annotations


class FashionlensError(Exception):
    """Bad input, a bad file or a bad setting; the message names the file, line or field and what was
    expected."""

    exit_code = 2  # the command line's exit status when this error ends a command


class ConfigError(FashionlensError, ValueError):
    """A config key or value (or a command's setting) that fashionlens does not accept; the message names the
    key."""


class InputNotFoundError(FashionlensError, FileNotFoundError):
    """A file or folder named as input (an argument, an option, a config value) that does not exist or holds
    nothing."""
