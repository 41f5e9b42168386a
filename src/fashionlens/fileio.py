"""Atomic file writes: the one place every file fashionlens writes goes through.

A crash, a full disk or a killed process leaves either the old file or the new one, never a torn
file: the bytes go to a temporary file in the same folder, are fsynced, then renamed over the target.
Outputs are checked here too, before the work that fills them starts (:func:`check_output_dir`,
:func:`check_output_file`): a read-only folder or a file where a folder belongs is one error line
at the start, not a traceback after the work.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fashionlens.errors import FashionlensError


class OutputDirError(FashionlensError, OSError):
    """An output folder or file that cannot be written: not a folder, read-only, or a disk (nearly) full."""


def check_output_dir(folder: str | Path, option: str = "output directory", label: str | None = None) -> Path:
    """Create ``folder`` if needed and write (then remove) a probe file in it: before any work starts.

    Args:
        folder: the output folder.
        option: how the message names it (e.g. ``"--out"``).
        label: the whole name in the message instead of ``option`` and ``folder``.

    Raises:
        OutputDirError: ``folder`` is a file, lies under one, or is not writable.

    Example:
        >>> import tempfile
        >>> file = Path(tempfile.mkdtemp()) / "file.txt"
        >>> _ = file.write_text("x")
        >>> try:
        ...     check_output_dir(file)
        ... except OutputDirError as e:
        ...     print(str(e).split(": ", 1)[1])
        it is a file, not a folder
    """
    folder = Path(folder)
    label = label or f"{option} {folder}"
    if folder.exists() and not folder.is_dir():
        raise OutputDirError(f"{label} is not writable: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise OutputDirError(f"{label} is not writable: {e.strerror or e}") from None
    return folder


def check_output_file(path: str | Path, option: str = "output file") -> Path:
    """``path`` can be written (atomically, as :func:`atomic_write_bytes` does): not a folder, its folder
    writable.

    Raises:
        OutputDirError: ``path`` is a folder, or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputDirError(f"{option} {path} is a folder; expected a file name")
    check_output_dir(path.parent, label=f"{option} {path}: its folder {path.parent}")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    Missing parent folders are created; the file gets the usual permissions (umask), not mkstemp's 0600.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "sub" / "out.txt"
        >>> atomic_write_bytes(target, b"done")
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('done', ['out.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; written files should look like any other
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: str | Path) -> int:
    """Remove the temporary files a killed :func:`atomic_write_bytes` of ``path`` left (``.NAME.*.tmp``).

    Call it only while no other process may be writing ``path`` (e.g. holding its lock).
    Returns how many were removed.
    """
    path = Path(path)
    stale = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters (``*?[``) made literal."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8, newlines written as given (no translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))
