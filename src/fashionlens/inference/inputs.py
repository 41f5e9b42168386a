"""What ``fashionlens predict`` was asked to tag: image files, folders, globs and listing files.

A *listing* is a CSV or Parquet file with one photo per row in a ``path`` column (or ``image``, the
column of fashionlens's multi-label CSV). Relative local paths in a listing are relative to the
listing's folder; URIs (:data:`URI_SCHEMES`) are kept as they are and read with pyarrow's
filesystems, which reach them where credentials allow.

One rule for both engines (:func:`read_source`): a photo is a local file or a URI of a supported
scheme; a folder or another scheme (``ftp://``) is a per-photo error saying so. A photo named more
than once is tagged once (:func:`unique_photos`), the first time it is named.
"""

from __future__ import annotations

import glob
import math
from pathlib import Path

import numpy as np

from fashionlens.data.images import IMAGE_EXTENSIONS
from fashionlens.errors import FashionlensError

URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "file")  # those pyarrow.fs.FileSystem.from_uri opens
LISTING_SUFFIXES = {".csv", ".parquet", ".pq"}
PATH_COLUMNS = ("path", "image")  # the first one a listing has is used


class ListingError(FashionlensError, ValueError):
    """A listing file that cannot be read or has no path column."""


class PredictArgumentError(FashionlensError, ValueError):
    """A prediction setting outside its range (``top_k``, ``threshold``), or per-image arguments
    (``boxes``, ``names``) that do not match the images; the message names the argument."""


def check_prediction_options(top_k: int, threshold: float | None) -> None:
    """The one rule for ``top_k`` and ``threshold``: the Python API, the CLI, the Ray engine and the web
    service.

    Raises:
        PredictArgumentError: ``top_k`` is not an integer >= 1, or ``threshold`` is not None or a
            number in [0, 1] (NaN is refused).

    Example:
        >>> check_prediction_options(5, 0.3)
        >>> check_prediction_options(0, None)
        Traceback (most recent call last):
        ...
        fashionlens.inference.inputs.PredictArgumentError: top_k must be an integer >= 1, got 0
    """
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise PredictArgumentError(f"top_k must be an integer >= 1, got {top_k!r}")
    if threshold is not None:
        try:
            value = float(threshold)
        except (TypeError, ValueError):
            value = math.nan
        if not 0.0 <= value <= 1.0:  # NaN fails both comparisons
            raise PredictArgumentError(f"threshold must be a number in [0, 1], got {threshold!r}")


def check_per_image(argument: str, values, count: int) -> None:
    """``values`` (``boxes``, ``names``) is None or has one entry per image.

    Raises:
        PredictArgumentError: not a sequence, or not ``count`` long; it names ``argument``.
    """
    if values is None:
        return
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise PredictArgumentError(
            f"{argument} must be a list with one entry per image, got {type(values).__name__}"
        )
    if len(values) != count:
        raise PredictArgumentError(
            f"{argument} has {len(values)} entries for {count} images; expected one per image"
        )


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
        raise ListingError(
            f"{path}: empty file (0 bytes); a listing needs a header line with a 'path' column"
        )
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
        raise ListingError(
            f"{path}: no 'path' column (columns: {', '.join(table.column_names) or 'none'}); "
            "a listing needs one photo path or URI per row in a column named 'path'"
        )
    if table.column_names.count(column) > 1:
        raise ListingError(
            f"{path}: {table.column_names.count(column)} columns named '{column}'; "
            "expected one column of photo paths"
        )
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
            found += sorted(
                str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
            )
        elif not is_uri(item) and any(ch in item for ch in "*?["):
            found += sorted(glob.glob(item, recursive=True))
        else:
            found.append(item)
    return found


def source_problem(path: str) -> str | None:
    """Why the photo ``path`` cannot be read, known before reading it: a folder or an unsupported URI
    scheme."""
    if is_uri(path):
        scheme = path.partition("://")[0].lower()
        if scheme not in URI_SCHEMES:
            schemes = ", ".join(s + "://" for s in URI_SCHEMES)
            return f"unsupported URI scheme '{scheme}://' (photos are local files or {schemes} URIs)"
        return None
    if Path(path).is_dir():
        return "a folder, not an image file"
    return None


def read_source(src):
    """A photo as :func:`fashionlens.data.images.load_image` takes it: a URI's bytes, a path checked
    by :func:`source_problem`, anything else as it is. Both engines read photos through here.

    Raises:
        BadImageError: a folder, an unsupported URI scheme, or a URI that cannot be read.
    """
    from fashionlens.data.images import BadImageError

    if not isinstance(src, (str, Path)):
        return src
    path = str(src)
    problem = source_problem(path)
    if problem:
        raise BadImageError(path, problem)
    if not is_uri(path):
        return src
    try:
        return read_bytes(path)
    except (OSError, ValueError) as e:  # pyarrow's errors derive from these
        raise BadImageError(path, f"cannot read ({type(e).__name__}: {e})") from None


def unique_photos(paths: list[str]) -> list[str]:
    """``paths`` with each photo once, where it is first named (both engines tag a photo once)."""
    return list(dict.fromkeys(paths))


def read_bytes(path: str) -> bytes:
    """The bytes of a local file or of a URI that pyarrow's filesystems reach."""
    with _open(path) as f:
        return f.read()
