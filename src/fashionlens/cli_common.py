"""What every ``fashionlens`` command shares: the one place errors become ``error:`` lines.

:class:`FashionlensTyper` wraps every command it registers (its sub-apps' too) in
:func:`one_line_errors`: a :class:`~fashionlens.errors.FashionlensError` escaping a command (bad
input, a bad file, a bad setting) is printed as one ``error:`` line and ends the command with the
error's ``exit_code`` (2 unless the error says otherwise); any other exception is a bug and keeps its
traceback. Commands call :func:`fail` for the checks of their own options.

``fashionlens.cli`` (the app) and ``fashionlens.labelling.cli`` (the labelling commands) both import from
here, so neither imports the other's module for these.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import NoReturn

import typer

from fashionlens.errors import FashionlensError


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` (red, to stderr) and end the command with exit status ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def one_line(error: BaseException) -> str:
    """The error's message on one line (a multi-line message joined with spaces)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def one_line_errors(command: Callable) -> Callable:
    """Run ``command``; a :class:`FashionlensError` escaping it becomes one ``error:`` line and its exit
    code."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FashionlensError as e:
            fail(one_line(e), code=e.exit_code)

    return run


class FashionlensTyper(typer.Typer):
    """A Typer app whose every command reports fashionlens errors as one line (see
    :func:`one_line_errors`)."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)
        return lambda f: register(one_line_errors(f))


class _StderrLines(logging.Handler):
    """Each record as one line on the current ``sys.stderr`` (looked up at each line, so a replaced
    stderr, e.g. a test runner's, gets it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(record.getMessage(), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def show_info_lines() -> None:
    """Show fashionlens' INFO log lines (e.g. the "auto" backend's one-time ONNX export and timing) on
    stderr, once per process; a library user keeps the usual logging defaults."""
    log = logging.getLogger("fashionlens")
    if not any(isinstance(h, _StderrLines) for h in log.handlers):
        log.addHandler(_StderrLines())
        log.setLevel(logging.INFO)
