"""Fashion-style labels of a photo collection: one main style and any sub styles per photo.

Styles come in the multi-label format (``image,main,labels``, :mod:`fashionlens.data.multilabel`),
e.g. CCP-Styles (``styles.csv`` beside Clothing Co-Parsing's ``photos/``, seed B's 23 styles in
``styles.txt``). This module attaches them to the photos of another data set (a ``styles`` head
trained on CCP's photos beside its tags) and measures how two independent labellings of the same
photos agree (the ceiling any model is judged against).

Example:
    >>> styles = read_styles("../shared/data/ccp/styles.csv")          # doctest: +SKIP
    >>> targets, mask = style_targets(photo_paths, styles)               # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fashionlens.data.errors import DataFormatError
from fashionlens.data.multilabel import LabelledSet, read_multilabel
from fashionlens.errors import ConfigError

STYLES_FILE = "styles.csv"
VOCABULARY_FILE = "styles.txt"


def find_styles_file(root: str | Path, setting: str | bool | None) -> Path | None:
    """The style CSV a data section names: ``None``/``False`` none, ``"auto"``/``True`` the root's
    ``styles.csv`` if there is one, else a path (relative paths first against the working directory,
    then against ``root``).

    Raises:
        DataFormatError: a path was given and no such file exists.
    """
    if setting in (None, False, ""):
        return None
    if setting in (True, "auto"):
        found = Path(root) / STYLES_FILE
        return found if found.is_file() else None
    path = Path(str(setting)).expanduser()
    for candidate in (path, Path(root) / path):
        if candidate.is_file():
            return candidate
    raise DataFormatError(f"data.styles: style file not found: {path} (nor {Path(root) / path}); "
                          "expected a multi-label CSV/JSONL (image,main,labels)")


def read_styles(path: str | Path, label_list: str | Path | Sequence[str] | None = None) -> LabelledSet:
    """Read a style file; the vocabulary is ``label_list``, else ``styles.txt`` beside it, else the names
    used."""
    path = Path(path)
    if label_list is None and (path.parent / VOCABULARY_FILE).is_file():
        label_list = path.parent / VOCABULARY_FILE
    return read_multilabel(path, label_list=label_list)


def _key(path: str | Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def style_targets(photos: Sequence[str | Path], styles: LabelledSet,
                  sub_target: float = 1.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Style targets of ``photos`` in the vocabulary of ``styles``.

    Args:
        photos: image paths of another data set (matched to the style file's images by absolute path).
        styles: the style labels.
        sub_target: the target of a sub style (1.0: as the main style; below 1: a soft target).

    Returns:
        ``targets`` (N, C) float32: 1 for the main style, ``sub_target`` for each sub style, 0 else;
        ``mask`` (N, C) float32: 1 on every entry of a photo that has a style row, 0 on the row of a
        photo without one (its styles are unknown, not absent).
    """
    if not 0.0 < sub_target <= 1.0:
        raise ConfigError(f"data.style_sub_target must be in (0, 1], got {sub_target!r}")
    index = styles.label_index()
    rows = {_key(s.path): s for s in styles.samples}
    targets = np.zeros((len(photos), len(styles.label_names)), dtype=np.float32)
    mask = np.zeros_like(targets)
    for i, photo in enumerate(photos):
        sample = rows.get(_key(photo))
        if sample is None:
            continue
        mask[i] = 1.0
        for name in sample.labels:
            targets[i, index[name]] = 1.0 if name == sample.main or sample.main is None else sub_target
    return targets, mask


def annotator_scores(
    second: LabelledSet, photos: Sequence[str | Path], label_names: Sequence[str]
) -> np.ndarray:
    """A second labelling as a ranking, to be scored like a model against the first.

    The main style ranks first (score 1.0), then the sub styles in the order the annotator listed
    them (0.9, 0.8, ...); every other style scores 0. A photo the second pass did not label gets a
    row of NaN (leave it out). Labels outside ``label_names`` are ignored (a top-n subset).

    Returns:
        (N, C) float64 scores in the order of ``photos`` and ``label_names``.
    """
    rows = {_key(s.path): s for s in second.samples}
    column = {name: c for c, name in enumerate(label_names)}
    out = np.full((len(photos), len(label_names)), np.nan)
    for i, photo in enumerate(photos):
        sample = rows.get(_key(photo))
        if sample is None:
            continue
        out[i] = 0.0
        ranked = (
            [sample.main, *(x for x in sample.labels if x != sample.main)]
            if sample.main
            else list(sample.labels)
        )
        for rank, name in enumerate(ranked):
            if name in column:
                out[i, column[name]] = max(1.0 - 0.1 * rank, 0.05)
    return out


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters' single labels of the same items: (p_o - p_e) / (1 - p_e).

    Example:
        >>> round(cohen_kappa(["x", "x", "y", "y"], ["x", "y", "y", "y"]), 3)
        0.5
    """
    if len(a) != len(b) or not a:
        raise ValueError(
            f"cohen_kappa needs two equally long, non-empty label lists, got {len(a)} and {len(b)}"
        )
    names = sorted(set(a) | set(b))
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    expected = sum((list(a).count(c) / n) * (list(b).count(c) / n) for c in names)
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def agreement(first: LabelledSet, second: LabelledSet, photos: Sequence[str | Path] | None = None) -> dict:
    """How two labellings of the same photos agree (on ``photos``, default every photo both labelled).

    Returns:
        ``{"photos", "main_same", "main_kappa", "top1_any", "top2_any", "jaccard"}``: the share of
        photos with the same main style, Cohen's kappa of the main styles, the share whose
        second-pass main style is among the first pass's labels (the annotators' own top-1
        any-recall: the second pass scored like a model against the first), the share where one
        of the second pass's first two labels (main, then its first sub) is (top-2 any-recall),
        and the mean label-set Jaccard.
    """
    a = {_key(s.path): s for s in first.samples}
    b = {_key(s.path): s for s in second.samples}
    keys = [k for k in (b if photos is None else [_key(p) for p in photos]) if k in a and k in b]
    if not keys:
        raise DataFormatError("the two labellings share no photo")
    pairs = [(a[k], b[k]) for k in keys]
    second_two = [(y.main, *(x for x in y.labels if x != y.main))[:2] for _, y in pairs]
    return {
        "photos": len(pairs),
        "main_same": float(np.mean([x.main == y.main for x, y in pairs])),
        "main_kappa": cohen_kappa([x.main or "" for x, _ in pairs], [y.main or "" for _, y in pairs]),
        "top1_any": float(np.mean([y.main in x.labels for x, y in pairs])),
        "top2_any": float(
            np.mean([bool(set(two) & set(x.labels)) for (x, _), two in zip(pairs, second_two, strict=True)])
        ),
        "jaccard": float(
            np.mean(
                [len(set(x.labels) & set(y.labels)) / len(set(x.labels) | set(y.labels)) for x, y in pairs]
            )
        ),
    }


def top_main_rows(photos: Sequence[str | Path], styles: LabelledSet, n: int) -> tuple[np.ndarray, list[str]]:
    """Seed B's top-n protocol on some photos: which of them have one of the ``n`` most frequent main
    styles of ``styles`` as their main style, and those styles (vocabulary order).

    Returns:
        ``(rows, names)``: (N,) bool over ``photos`` and the n style names.
    """
    from fashionlens.data.multilabel import select_top_labels

    names = select_top_labels(styles, n).label_names
    main = {_key(s.path): s.main for s in styles.samples}
    return np.asarray([main.get(_key(p)) in names for p in photos], dtype=bool), list(names)
