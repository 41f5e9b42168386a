"""The data-format registry: one :class:`DataFormat` record per format, in one place.

A record says how to recognise a path of that format (``detect``), what it looks like (``layout``,
one line for help and errors), how to read it for ``data stats`` (``read``), how ``data check``
checks it (``check``) and how training builds its splits and datasets (``bundle``). Everything that
offers a choice of formats asks the registry: ``train`` / ``evaluate`` / ``compare`` (``build_data``,
``data.format``), ``data check``, ``data stats`` and the CLI's help.

``check`` and ``bundle`` are ``"module:function"`` references, imported when first used, so that
this module stays at the bottom of the layers (no torch, no Lightning) and a format's training code
lives with the engine.

Adding a format = one new module (its reader, its check and its bundle) + one
:func:`register_format` call here.

Example:
    >>> detect_format("labels.csv")  # doctest: +SKIP
    'multilabel'
    >>> get_format("ccp").layout
    'the Clothing Co-Parsing folder (photos/, annotations/, label_list.mat)'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionlens.errors import ConfigError

__all__ = ["FORMATS", "DataFormat", "detect_format", "format_names", "get_format", "register_format"]


@dataclass(frozen=True)
class DataFormat:
    """What fashionlens knows about one data format.

    Attributes:
        name: the value of ``--data-format`` and ``data.format``.
        layout: one line describing a path of this format (help texts, "no data path" errors).
        detect: ``detect(path) -> bool``: the path has this format's layout.
        check: ``"module:function"`` of its ``data check``:
            ``(path, result: CheckResult, check_images, label_list, workers) -> None``.
        bundle: ``"module:function"`` building its training data:
            ``(cfg, root, data_config, splits) -> DataBundle``.
        read: ``read(path, label_list) -> (data set, notes)`` for ``data stats`` (a ``LabelledSet`` or
            ``ClassificationSet`` and lines to print after the table); None: no stats for this format.
        label_list: ``read`` takes a vocabulary file (``--label-list``).
        priority: detection order, lowest first; a fallback format (one whose ``detect`` accepts any
            folder) has the highest.
    """

    name: str
    layout: str
    detect: Callable[[Path], bool]
    check: str
    bundle: str
    read: Callable[[Path, Path | None], tuple[Any, list[str]]] | None = None
    label_list: bool = False
    priority: int = 50

    def run_check(self, path: Path, result, check_images: bool, label_list, workers: int) -> None:
        """Run this format's ``data check`` on ``path``, adding to ``result``."""
        _resolve(self.check)(path, result, check_images, label_list=label_list, workers=workers)

    def build_bundle(self, cfg: dict, root: Path, data_config, splits):
        """This format's training data: splits, datasets and label names (a ``DataBundle``)."""
        return _resolve(self.bundle)(cfg, root, data_config, splits)


FORMATS: dict[str, DataFormat] = {}  # by name, in registration order


def register_format(fmt: DataFormat) -> DataFormat:
    """Add a format to the registry (a name already registered is an error)."""
    if fmt.name in FORMATS or fmt.name in ("auto", "mixed"):
        raise ConfigError(f"data format {fmt.name!r} is already registered (or reserved)")
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str, key: str = "--data-format") -> DataFormat:
    """The registered format ``name``; a ConfigError naming ``key`` and the known formats otherwise."""
    if name not in FORMATS:
        raise ConfigError(f"{key} must be one of {', '.join(FORMATS)}, got {name!r}")
    return FORMATS[name]


def format_names(*, detection_order: bool = False, stats: bool = False) -> tuple[str, ...]:
    """The registered names: in registration order, or in detection order; ``stats``: only those with
    ``read``."""
    formats = list(FORMATS.values())
    if detection_order:
        formats.sort(key=lambda f: f.priority)
    return tuple(f.name for f in formats if not stats or f.read is not None)


def detect_format(path: str | Path) -> str:
    """The format of ``path``: the first one, in detection order, whose ``detect`` accepts it (``Anno/``
    -> deepfashion, ``label_list.mat`` -> ccp, ``images.csv`` -> clothing_dataset, a file -> multilabel,
    else image_folder)."""
    path = Path(path)
    formats = sorted(FORMATS.values(), key=lambda f: f.priority)
    return next((f.name for f in formats if f.detect(path)), formats[-1].name)


def _resolve(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


# ----------------------------------------------------------------------------- data stats readers


def _stats_ccp(path: Path, label_list: Path | None) -> tuple[Any, list[str]]:
    from fashionlens.data.ccp import MIN_MASK_PIXELS, read_ccp_parts
    from fashionlens.data.multilabel import LabelledSet

    parts = read_ccp_parts(path)
    samples = sorted((s for p in parts.values() for s in p.samples), key=lambda s: s.path.name)
    kinds = ", ".join(f"{len(p)} {k}" for k, p in parts.items())
    first = next(iter(parts.values()))
    notes = [f"\nannotations: {kinds} (a mask label is a tag from {MIN_MASK_PIXELS} pixels)"]
    return LabelledSet(samples, first.label_names, path), notes


def _stats_clothing(path: Path, label_list: Path | None) -> tuple[Any, list[str]]:
    from fashionlens.data.clothing_dataset import read_clothing_dataset

    ds = read_clothing_dataset(path)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(ds.skipped.items())) or "none"
    return ds.data, [f"\nskipped rows: {skipped}; kids' clothes: {int(ds.kids.sum())} of {len(ds)}"]


def _stats_multilabel(path: Path, label_list: Path | None) -> tuple[Any, list[str]]:
    from fashionlens.data.multilabel import read_multilabel

    return read_multilabel(path, label_list=label_list), []


def _stats_image_folder(path: Path, label_list: Path | None) -> tuple[Any, list[str]]:
    from fashionlens.data.image_folder import read_image_folder

    return read_image_folder(path), []


# ----------------------------------------------------------------------------- the built-in formats
# Registration order is the order of every list of formats (help, errors); ``priority`` the order of
# detection (the most specific layouts first, image_folder the fallback).

register_format(DataFormat(
    "ccp", "the Clothing Co-Parsing folder (photos/, annotations/, label_list.mat)",
    detect=lambda p: (p / "label_list.mat").is_file(),
    check="fashionlens.data.check:check_ccp", bundle="fashionlens.train.data:multilabel_bundle",
    read=_stats_ccp, priority=20,
))  # fmt: skip
register_format(DataFormat(
    "multilabel", "a CSV or JSONL file (image,main,labels)",
    detect=lambda p: p.is_file(),
    check="fashionlens.data.check:check_multilabel", bundle="fashionlens.train.data:multilabel_bundle",
    read=_stats_multilabel, label_list=True, priority=40,
))  # fmt: skip
register_format(DataFormat(
    "image_folder", "a folder with train/<class>/*.jpg",
    detect=lambda p: True,
    check="fashionlens.data.check:check_image_folder", bundle="fashionlens.train.data:image_folder_bundle",
    read=_stats_image_folder, priority=100,
))  # fmt: skip
register_format(DataFormat(
    "clothing_dataset", "the clothing-dataset folder (images.csv, images/)",
    detect=lambda p: (p / "images.csv").is_file(),
    check="fashionlens.data.check:check_clothing", bundle="fashionlens.train.data:clothing_bundle",
    read=_stats_clothing, priority=30,
))  # fmt: skip
register_format(DataFormat(
    "deepfashion", "the DeepFashion Category and Attribute Prediction root (img/, Anno/, Eval/)",
    detect=lambda p: (p / "Anno").is_dir(),
    check="fashionlens.data.check:check_deepfashion", bundle="fashionlens.train.data:deepfashion_bundle",
    priority=10,
))  # fmt: skip
