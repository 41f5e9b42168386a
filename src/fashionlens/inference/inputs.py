"""What ``fashionlens predict`` was asked to tag: image files, folders, globs and listing files.

A *listing* is a CSV or Parquet file with one photo per row in a ``path`` column (or ``image``, the
column of fashionlens's multi-label CSV). Relative local paths in a listing are relative to the
listing's folder; ``s3://`` / ``gs://`` URIs are kept as they are (the Ray engine reads them with
pyarrow's filesystems, which reach them where credentials allow).
"""

from __future__ import annotations

import glob
from pathlib import Path

from fashionlens.errors import FashionlensError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
LISTING_SUFFIXES = {".csv", ".parquet", ".pq"}
PATH_COLUMNS = ("path", "image")  # the first one a listing has is used


class ListingError(FashionlensError, ValueError):
    """A listing file that cannot be read or has no path column."""


def is_uri(path: str) -> bool:
    """True for ``scheme://...`` (s3, gs, hdfs, file ...), which pyarrow's filesystems open."""
    head, sep, _ = path.partition("://")
    return bool(sep) and head.isalnum() and len(head) > 1


def _suffix(path: str) -> str:
    return Path(path.split("?", 1)[0]).suffix.lower()


def is_listing(item: str) -> bool:
    """A CSV or Parquet file (local or URI) to read photo paths from."""
    return _suffix(item) in LISTING_SUFFIXES and (is_uri(item) or Path(item).is_file())


def read_listing(path: str) -> list[str]:
    """The photo paths of a CSV / Parquet listing, in file order.

    Raises:
        ListingError: unreadable file, no ``path`` (or ``image``) column, or an empty cell (named by row).
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    csv = _suffix(path) == ".csv"
    if not is_uri(path) and Path(path).stat().st_size == 0:
        raise ListingError(f"{path}: empty file (0 bytes); a listing needs a header line with a 'path' column")
    try:
        if csv:
            # one thread: pyarrow's CSV thread pool, left behind by a parse error, could abort the
            # process at exit ("terminate called without an active exception", SIGABRT)
            with _open(path) as f:
                table = pacsv.read_csv(f, read_options=pacsv.ReadOptions(use_threads=False))
        else:
            table = pq.read_table(path) if is_uri(path) else pq.read_table(Path(path))
    except (OSError, ValueError) as e:  # pyarrow's errors derive from these
        raise ListingError(f"{path}: not a readable listing ({type(e).__name__}: {e})") from None
    column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if column is None:
        raise ListingError(f"{path}: no 'path' column (columns: {', '.join(table.column_names) or 'none'}); "
                           "a listing needs one photo path or URI per row in a column named 'path'")
    if table.column_names.count(column) > 1:
        raise ListingError(f"{path}: {table.column_names.count(column)} columns named '{column}'; "
                           "expected one column of photo paths")
    values = table.column(column).to_pylist()
    base = None if is_uri(path) else Path(path).parent
    out = []
    for row, value in enumerate(values, start=2 if csv else 1):  # CSV: line 1 is the header
        if value is None or not str(value).strip():
            where = f"line {row}" if csv else f"row {row}"
            raise ListingError(f"{path}:{where}: empty '{column}' (expected a photo path or URI)")
        value = str(value).strip()
        out.append(value if is_uri(value) or base is None or Path(value).is_absolute() else str(base / value))
    return out


def _open(path: str):
    """A readable file for a local path or a URI (pyarrow's filesystems)."""
    if not is_uri(path):
        return open(path, "rb")  # noqa: SIM115 - pyarrow closes it after reading
    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(path)
    return filesystem.open_input_stream(inner)


def expand_inputs(items: list[str]) -> list[str]:
    """Files as given, folders searched recursively for images, globs expanded, listings read; order kept.

    Raises:
        ListingError: a listing file that cannot be used (see :func:`read_listing`).
    """
    found: list[str] = []
    for item in items:
        p = Path(item)
        if is_listing(item):
            found += read_listing(item)
        elif not is_uri(item) and p.is_dir():
            found += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        elif not is_uri(item) and any(ch in item for ch in "*?["):
            found += sorted(glob.glob(item, recursive=True))
        else:
            found.append(item)
    return found


def read_bytes(path: str) -> bytes:
    """The bytes of a local file or of a URI that pyarrow's filesystems reach."""
    with _open(path) as f:
        return f.read()
