"""Attributes of garments (texture, fabric, shape, part), keyed by photo and garment label.

The format (CCP's ``garment_attributes.csv``, made for this project, see ../shared/docs/attributes.md):
a CSV with the header ``photo,garment,attributes``; ``photo`` is the photo's id (the file stem,
e.g. ``0001``), ``garment`` the CCP label of one garment of it (as in the crop's file name
``img/<photo>_<garment>.jpg`` that ``fashionlens data derive-landmarks`` writes), ``attributes``
the ``|``-separated names that apply (may be empty). The vocabulary is a text file with one
``name type`` per line (``garment_attributes.txt``; type = texture, fabric, shape or part, or
DeepFashion's number 1..4). A garment without a row is unknown, not negative.

Example:
    >>> table = read_garment_attributes("../shared/data/ccp/garment_attributes.csv")  # doctest: +SKIP
    >>> table.values("0001", "skirt")[:4]                                               # doctest: +SKIP
    [1, -1, -1, -1]
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from fashionlens.data.deepfashion import ATTRIBUTE_TYPES
from fashionlens.data.errors import DataFormatError

ATTRIBUTES_FILE = "garment_attributes.csv"
VOCABULARY_FILE = "garment_attributes.txt"
TYPE_NUMBERS = {name: number for number, name in ATTRIBUTE_TYPES.items()}
COLUMNS = ("photo", "garment", "attributes")


@dataclass
class GarmentAttributes:
    """The attribute vocabulary (names, DeepFashion type numbers) and each labelled garment's attributes."""

    names: list[str]
    types: list[int]
    rows: dict[tuple[str, str], frozenset[str]]  # (photo id, garment label) -> attributes that apply

    def values(self, photo: str, garment: str) -> list[int]:
        """DeepFashion's coding for one garment: 1 applies, -1 does not, 0 everywhere if it has no row."""
        found = self.rows.get((photo, garment))
        if found is None:
            return [0] * len(self.names)
        return [1 if name in found else -1 for name in self.names]


def read_attribute_vocabulary(path: str | Path) -> tuple[list[str], list[int]]:
    """``name type`` per line (type: texture / fabric / shape / part / style or 1..5); names are unique."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "attribute vocabulary not found; expected one 'name type' per line")
    names: list[str] = []
    types: list[int] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        kind = parts[-1].lower() if len(parts) == 2 else ""
        number = int(kind) if kind.isdigit() else TYPE_NUMBERS.get(kind)
        if number is None or number not in ATTRIBUTE_TYPES:
            raise DataFormatError(
                path,
                lineno,
                f"expected 'name type' with type one of {', '.join(TYPE_NUMBERS)} "
                f"(or 1..{len(TYPE_NUMBERS)}), found {line.strip()!r}",
            )
        if parts[0] in names:
            raise DataFormatError(path, lineno, f"attribute {parts[0]!r} is listed twice")
        names.append(parts[0])
        types.append(number)
    if not names:
        raise DataFormatError(path, None, "no attributes; expected one 'name type' per line")
    return names, types


def read_garment_attributes(path: str | Path, vocabulary: str | Path | None = None) -> GarmentAttributes:
    """Read a garment attribute CSV and its vocabulary (default: ``garment_attributes.txt`` beside it).

    Raises:
        DataFormatError: a missing file, a wrong header, an empty field, a name outside the vocabulary
            or a garment listed twice; the message names ``file:line`` and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "garment attribute file not found")
    names, types = read_attribute_vocabulary(vocabulary or path.parent / VOCABULARY_FILE)
    known = set(names)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(path, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != COLUMNS:
        raise DataFormatError(
            path, 1, f"expected the header {','.join(COLUMNS)}, found {','.join(header or [])!r}"
        )
    rows: dict[tuple[str, str], frozenset[str]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for lineno, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(COLUMNS):
            raise DataFormatError(
                path, lineno, f"expected {len(COLUMNS)} fields ({', '.join(COLUMNS)}), found {len(record)}"
            )
        photo, garment, listed = (cell.strip() for cell in record)
        for field, value in (("photo", photo), ("garment", garment)):
            if not value:
                raise DataFormatError(path, lineno, f"empty field {field!r}")
        attributes = [a.strip() for a in listed.split("|") if a.strip()]
        unknown = [a for a in attributes if a not in known]
        if unknown:
            raise DataFormatError(
                path,
                lineno,
                f"field 'attributes': unknown attribute(s) {unknown}; "
                f"expected names from {Path(vocabulary or path.parent / VOCABULARY_FILE).name}",
            )
        key = (photo, garment)
        if key in rows:
            raise DataFormatError(
                path, lineno, f"garment {photo}_{garment} is listed twice (first on line {first_line[key]})"
            )
        rows[key], first_line[key] = frozenset(attributes), lineno
    return GarmentAttributes(names, types, rows)


def find_attributes_file(root: str | Path, setting: str | Path | None) -> Path | None:
    """``setting`` (a path), else the CCP root's own ``garment_attributes.csv`` when it has one, else None."""
    if setting:
        path = Path(setting).expanduser()
        if not path.is_file():
            raise DataFormatError(path, None, "garment attribute file not found")
        return path
    found = Path(root) / ATTRIBUTES_FILE
    return found if found.is_file() else None
