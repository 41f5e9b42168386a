"""Single-label classification data in the common ``root/<split>/<class>/*.jpg`` layout."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashionlens.data.errors import DataFormatError, Problems, report, warn
from fashionlens.data.images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)
SPLIT_FOLDERS = ("train", "val", "validation", "test")


@dataclass
class ClassificationSet:
    """Images with one class each.

    Args:
        samples: (image path, class index) pairs.
        class_names: class ``k`` is ``class_names[k]``.
        root: the split folder the images were found in.
    """

    samples: list[tuple[Path, int]]
    class_names: list[str]
    root: Path

    def __len__(self) -> int:
        return len(self.samples)

    def targets(self) -> np.ndarray:
        """Class index of each sample, int64 of shape (N,)."""
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        """Images per class, in class order (classes without images count 0)."""
        counts = Counter(label for _, label in self.samples)
        return {name: counts.get(k, 0) for k, name in enumerate(self.class_names)}

    def subset(self, indices: Iterable[int]) -> ClassificationSet:
        """The samples at ``indices`` (in that order), with the same classes."""
        return ClassificationSet([self.samples[i] for i in indices], list(self.class_names), self.root)


def _is_image(path: Path, extensions: Sequence[str]) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in extensions


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _resolve_split(root: Path, split: str) -> Path:
    """``root/split`` if it exists, else ``root`` itself when its sub-folders hold images."""
    if (root / split).is_dir():
        return root / split
    if not root.is_dir():
        raise DataFormatError(root, None, "folder not found", kind="file")
    if root.name == split or any(
        _is_image(f, IMAGE_EXTENSIONS) for d in _class_folders(root) for f in d.iterdir()
    ):
        return root
    raise DataFormatError(
        root, None, f"split folder '{split}' not found; expected {root / split}/<class>/<image>", kind="file"
    )


def split_folders(root: str | Path) -> list[Path]:
    """The split folders of a data set (``train``, ``val``, ``validation``, ``test``), or ``[root]`` itself
    when it has none."""
    root = Path(root)
    return [root / s for s in SPLIT_FOLDERS if (root / s).is_dir()] or [root]


def read_image_folder(
    root: str | Path,
    split: str = "train",
    class_names: Sequence[str] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    problems: Problems | None = None,
) -> ClassificationSet:
    """Read ``root/<split>/<class>/*`` (or ``root/<class>/*`` when ``root`` is the split folder).

    Class names are the sorted sub-folder names; images are searched recursively in each.

    Args:
        root: the data set folder or directly the split folder.
        split: split sub-folder name ("train", "validation", ...).
        class_names: fix the class order (e.g. the training split's, so that a validation split
            with a missing class keeps the same indices); a folder not in it is an error.
        extensions: file suffixes counted as images (case-insensitive).
        problems: None (strict: the first problem raises) or a collector: the problem is recorded
            there (with a warning for each class folder without images) and an empty set returned.

    Returns:
        The data set, samples sorted by class then path.

    Raises:
        DataFormatError: strict only: no class folders, no images, or a folder outside ``class_names``.
    """
    try:
        return _read_split(Path(root), split, class_names, extensions, problems)
    except DataFormatError as e:
        report(problems, e)
        return ClassificationSet([], list(class_names or ()), Path(root))


def _read_split(root: Path, split: str, class_names: Sequence[str] | None, extensions: Sequence[str],
                problems: Problems | None) -> ClassificationSet:  # fmt: skip
    folder = _resolve_split(root, split)
    folders = {p.name: p for p in _class_folders(folder)}
    if not folders:
        raise DataFormatError(
            folder, None, f"no class folders; expected {folder}/<class>/<image>", kind="file"
        )
    names = sorted(folders) if class_names is None else list(class_names)
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise DataFormatError(folder, None, f"class folders {unknown} are not in class_names {names}")
    exts = tuple(e.lower() for e in extensions)
    samples = []
    for k, name in enumerate(names):
        files = sorted(p for p in folders[name].rglob("*") if _is_image(p, exts)) if name in folders else []
        if not files:
            logger.warning("class '%s' has no images in %s", name, folder)
            warn(
                problems,
                DataFormatError(folder / name, None, "class folder without images", kind="empty_class"),
            )
        samples.extend((p, k) for p in files)
    if not samples:
        raise DataFormatError(folder, None, f"no images with extensions {list(exts)}", kind="file")
    return ClassificationSet(samples, names, folder)
