"""Label Studio interop: the labelling config for the same task, and its JSON export read back.

:func:`labelstudio_config` writes a config with one photo, a single-choice field for the main
label and a multiple-choice field for the sub labels. :func:`import_labelstudio` reads a Label
Studio *JSON* export (a list of tasks, each with ``data`` and ``annotations[].result[]``; see
https://labelstud.io/guide/task_format) into ``image,main,labels`` rows, finding each photo under a
local folder. A task is left out (and counted) when it has no annotation or only cancelled
(skipped) ones; a task that has an annotation but cannot be mapped is an error naming the task.

Example:
    >>> xml = labelstudio_config(["casual", "street"])                        # doctest: +SKIP
    >>> result = import_labelstudio("export.json", "photos/", main_field="main")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import quoteattr

from fashionlens.data.errors import DataFormatError
from fashionlens.data.images import IMAGE_EXTENSIONS
from fashionlens.errors import InputNotFoundError
from fashionlens.labelling.store import LabelValueError, Record, make_record

MAX_LISTED = 10
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio prefixes uploaded files with 8 hex digits


def labelstudio_config(vocab: Sequence[str], main_field: str = "main", labels_field: str = "labels",
                       image_field: str = "image") -> str:
    """A Label Studio labelling config (XML) for one main label and any sub labels per photo."""
    choices = "".join(f"    <Choice value={quoteattr(name)}/>\n" for name in vocab)
    return (
        "<View>\n"
        f'  <Image name="photo" value="${image_field}" zoom="true"/>\n'
        '  <Header value="Main label (one)"/>\n'
        f'  <Choices name={quoteattr(main_field)} toName="photo" choice="single-radio" required="true" '
        'showInline="true">\n'
        f"{choices}  </Choices>\n"
        '  <Header value="Sub labels (any)"/>\n'
        f'  <Choices name={quoteattr(labels_field)} toName="photo" choice="multiple" showInline="true">\n'
        f"{choices}  </Choices>\n"
        "</View>\n"
    )


@dataclass
class ImportResult:
    """Rows read from an export: (photo path, record) in task order, and what was left out."""

    rows: list[tuple[Path, Record]] = field(default_factory=list)
    unlabelled: int = 0  # tasks without any annotation
    cancelled: int = 0  # tasks whose annotations were all skipped in Label Studio
    several: int = 0  # tasks with more than one annotation (the ground-truth one, else the latest, used)


class PhotoIndex:
    """Find a Label Studio image reference among the photos under a folder.

    A reference is matched by its longest trailing path that exists under the folder
    (``/data/local-files/?d=shoot/a.jpg`` -> ``shoot/a.jpg`` or ``a.jpg``), then by a unique file
    name; an uploaded file's 8-hex-digit prefix (``/data/upload/3/1f2e3d4c-a.jpg``) is dropped.
    """

    def __init__(self, root: Path):
        self.root = Path(os.path.abspath(root))
        self.by_name: dict[str, list[Path]] = {}
        for p in sorted(self.root.rglob("*")):
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                self.by_name.setdefault(p.name, []).append(p)

    @staticmethod
    def reference_path(ref: str) -> str:
        """The file path inside an image reference (URL, local-files query, upload path)."""
        url = urlparse(ref)
        if "d" in parse_qs(url.query):  # /data/local-files/?d=folder/photo.jpg
            return parse_qs(url.query)["d"][0]
        return unquote(url.path)

    def find(self, ref: str) -> tuple[Path | None, str]:
        """The photo for ``ref``, or None and why not."""
        parts = [
            p for p in self.reference_path(ref).replace("\\", "/").split("/") if p not in ("", ".", "..")
        ]
        if not parts:
            return None, "no file name in it"
        names = [parts[-1]] + (
            [_UPLOAD_PREFIX.sub("", parts[-1], count=1)] if _UPLOAD_PREFIX.match(parts[-1]) else []
        )
        for name in names:
            for k in range(len(parts) - 1):  # longest trailing sub-path first
                candidate = self.root.joinpath(*parts[k:-1], name)
                if candidate.is_file():
                    return candidate, ""
            found = self.by_name.get(name, [])
            if len(found) == 1:
                return found[0], ""
            if len(found) > 1:
                return None, f"{len(found)} photos named {name!r} under {self.root}"
        return None, f"no photo named {names[-1]!r} under {self.root}"


def _choices(result: list, field_name: str) -> list[str] | None:
    """The choices of the result item from ``field_name``; None when the field is absent."""
    for item in result:
        if isinstance(item, dict) and item.get("from_name") == field_name:
            value = item.get("value") or {}
            picked = value.get("choices")
            if not isinstance(picked, list) or not all(isinstance(x, str) for x in picked):
                raise ValueError(
                    f"field '{field_name}' has no list of choices (type {item.get('type')!r}); "
                    "expected a Choices control"
                )
            return picked
    return None


def _pick_annotation(task: dict, result: ImportResult) -> dict | None:
    """The annotation to use (ground truth first, else the latest); None if there is none to use."""
    annotations = task.get("annotations") or task.get("completions") or []  # "completions": before 1.0
    if not isinstance(annotations, list):
        raise ValueError("'annotations' is not a list")
    done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not annotations:
        result.unlabelled += 1
    elif not done:
        result.cancelled += 1
    if not done:
        return None
    if len(done) > 1:
        result.several += 1
    truth = [a for a in done if a.get("ground_truth")]
    return (truth or sorted(done, key=lambda a: str(a.get("updated_at") or a.get("created_at") or "")))[-1]


def _task_record(annotation: dict, main_field: str, labels_field: str, vocab: Sequence[str] | None) -> Record:
    picked = annotation.get("result")
    if not isinstance(picked, list):
        raise ValueError("annotation has no 'result' list")
    main = _choices(picked, main_field)
    subs = _choices(picked, labels_field) or []
    if main is None or len(main) != 1:
        fields = sorted({str(r.get("from_name")) for r in picked if isinstance(r, dict)})
        raise ValueError(
            f"expected one choice in field '{main_field}', got "
            f"{'none' if main is None else main} (fields in this task: {fields})"
        )
    allowed = vocab if vocab is not None else list(dict.fromkeys(main + subs))
    try:
        return make_record(main[0], [main[0], *subs], allowed)
    except LabelValueError as e:
        raise ValueError(str(e)) from None


def _load_tasks(path: Path) -> list:
    if not path.is_file():
        raise InputNotFoundError(f"Label Studio export not found: {path}")
    try:
        tasks = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DataFormatError(path, getattr(e, "lineno", None), f"not a JSON file ({e})") from None
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise DataFormatError(
            path, None, "expected a JSON list of tasks (Label Studio export, format 'JSON')"
        )
    if tasks and isinstance(tasks[0], dict) and "data" not in tasks[0] and "annotation_id" in tasks[0]:
        raise DataFormatError(path, None, "this is a 'JSON-MIN' export; export the project as 'JSON' instead")
    return tasks


def import_labelstudio(
    path: str | Path,
    photos: str | Path,
    main_field: str = "main",
    labels_field: str = "labels",
    image_field: str = "image",
    vocab: Sequence[str] | None = None,
) -> ImportResult:
    """Read a Label Studio JSON export of a choices task.

    Args:
        path: the export (``.json``, a list of tasks).
        photos: the folder where the photos are on this machine.
        main_field: ``name`` of the single-choice control holding the main label.
        labels_field: ``name`` of the multiple-choice control holding the sub labels (may be absent).
        image_field: key in each task's ``data`` holding the photo reference.
        vocab: allowed label names (default: any).

    Raises:
        DataFormatError: not a JSON task list, or tasks that cannot be mapped (each one listed with
            its task id, up to 10, and the count).
    """
    path = Path(path)
    index = PhotoIndex(Path(photos))
    result, problems, seen = ImportResult(), [], {}
    for n, task in enumerate(_load_tasks(path)):
        task_id = task.get("id", f"#{n + 1}") if isinstance(task, dict) else f"#{n + 1}"
        try:
            if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
                raise ValueError("not a task object with a 'data' field")
            annotation = _pick_annotation(task, result)
            if annotation is None:
                continue
            ref = task["data"].get(image_field)
            if not isinstance(ref, str):
                raise ValueError(f"no image reference in data.{image_field} (keys: {sorted(task['data'])})")
            record = _task_record(annotation, main_field, labels_field, vocab)
            photo, why = index.find(ref)
            if photo is None:
                raise ValueError(f"image {ref!r}: {why}")
            if photo in seen:
                raise ValueError(f"image {ref!r} is the same photo as task {seen[photo]}")
            seen[photo] = task_id
            result.rows.append((photo, record))
        except ValueError as e:
            problems.append(f"task {task_id}: {e}")
    if problems:
        listed = "; ".join(problems[:MAX_LISTED]) + (
            f" ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        )
        raise DataFormatError(path, None, f"{len(problems)} task(s) cannot be mapped: {listed}")
    return result
