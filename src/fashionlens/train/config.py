"""Experiment configs: YAML files merged over documented defaults, with ``key=value`` overrides.

Every key a config may hold is in ``DEFAULTS`` below; an unknown key is an error that names it, so a
typo never silently trains the wrong experiment. The values with a fixed set of choices (data format,
backbone, optimiser, scheduler, loss kinds, resize mode, bad-image policy) are checked when the config
is loaded, before any data is read: a bad one is a :class:`~fashionlens.errors.ConfigError` naming its key.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from fashionlens.data.formats import format_names
from fashionlens.errors import ConfigError

# The choices of the config values that have a fixed set of them (checked by load_config).
DATA_FORMATS = (*format_names(), "mixed")  # the registered formats (data/formats.py), then mixed
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "step", "none")

DEFAULTS: dict[str, Any] = {
    "experiment": "experiment",
    "seed": 0,
    "data": {
        "format": "ccp",  # ccp | multilabel | image_folder | clothing_dataset | deepfashion | mixed
        "sources": {},  # mixed: name -> data settings of one source (format, path, ...), one loader each
        "path": None,  # data root or annotation file; env FASHIONLENS_DATA overrides when unset
        "images_root": None,  # multilabel: folder the image paths are relative to
        "label_list": None,  # multilabel: file with one label name per line
        "top_labels": None,  # keep the n most frequent main labels (seed B top-5 / top-7)
        "split_fractions": [0.7, 0.1, 0.2],  # train / val / test, seeded, stratified
        "split_seed": 0,
        "limit": None,  # use only the first n training images (smoke tests)
        "input_size": None,  # [H, W]; default: the backbone's
        "resize": "squash",  # squash | letterbox: how a photo becomes input_size (kept by the model)
        "max_stretch": 1.0,  # letterbox: stretch towards the input's aspect by up to this, then pad
        "batch_size": 16,
        "num_workers": "auto",
        "bad_images": "skip",  # skip | fail
        "prescan": True,  # probe every image header before training and report the bad ones
        "crop_margin": 0.1,  # deepfashion: relative margin around the bounding box
        "crop_scale": [0.6, 1.0],  # training crops: area range as a fraction of the photo
        "ccp_annotations": "both",  # ccp: both | image-level | pixel-level (each kind is split on its own)
        "min_mask_pixels": 100,  # ccp pixel-level: a label covering fewer pixels is not a tag
        # ccp: per-pixel garment groups of the pixel-level photos (garments/groups.py) -> "parsing"
        "parsing": False,
        # ccp: style labels of the photos (a CSV/JSONL image,main,labels; "auto": the root's styles.csv) ->
        # "styles" head
        "styles": None,
        # ccp styles: the target of a sub style (1: as the main style; < 1: a soft target)
        "style_sub_target": 1.0,
        # clothing_dataset: folder of photos (or file of ids) kept for validation, never trained on
        "holdout": None,
        # mixed, clothing_dataset source: loss weight of the tags a product photo's class implies
        "implied_tags": 0.0,
        # mixed: the targets a source supplies (category, labels, styles, attributes, landmarks); default all
        "targets": None,
    },
    "model": {
        "backbone": "efficientnet_lite0",
        "pretrained": True,  # true | false | path to a weights file
        "backbone_kwargs": {},
        # name -> RecognitionHead settings: {kind, pool, conv_channels, dropout, gcn_hidden, ...}
        "heads": {},
        # seed A's landmark branch: {num_glem, num_upsample, fuse, channels, visibility, stride}
        "landmarks": None,
        # the garment parser: {kind: lraspp | linear, channels, strides} (models/parsing.py); data.parsing
        "parsing": None,
        # a model file or shipped name: start from its weights (fine-tune a trained model)
        "init_from": None,
    },
    "labels": {
        "graph": {"kind": "cooccurrence", "tau": 0.4, "p": 0.2},  # or kind: identity
        "embeddings": {"provider": "glove", "path": None, "aliases": {}},
    },
    "loss": {
        "weights": {"category": 1.0, "labels": 1.0, "styles": 1.0, "attributes": 1.0, "landmarks": 1.0,
                    "visibility": 1.0, "parsing": 1.0},
        "attribute_pos_weight": "frequency",  # frequency | none
        "heatmap_sigma": 1.5,
        # mse (seed A) | softmax (cross-entropy over each map's positions: learns in fewer steps)
        "heatmap": "mse",
        "label_smoothing": 0.0,  # category cross-entropy
        # labels / attributes heads: bce (attributes: weighted by attribute_pos_weight) | asl | focal
        "multilabel": {"kind": "bce", "gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05,  # asl
                       "gamma": 2.0, "alpha": None,  # focal
                       # asl: no gradient through the focusing weights (ASL's recipe)
                       "detach_focus": True},
    },
    "optim": {
        "name": "adam",  # adam | adamw | sgd
        "lr": 1.0e-4,  # backbone (and landmark branch)
        "head_lr": 1.0e-3,  # heads (GCN included)
        "weight_decay": 0.0,
        "momentum": 0.9,
        "scheduler": "cosine",  # cosine | step | none
        "step_size": 5,
        "gamma": 0.1,
        "grad_clip": 10.0,
        "freeze_backbone": False,  # linear-probe style: train the heads only
        "freeze_bn": False,  # keep the backbone's BatchNorm statistics (fine-tuning with small batches)
        "freeze_stages": 0,  # freeze the stem and the first n stages (EfficientNet blocks): 2x faster on CPU
    },
    "trainer": {
        "max_epochs": 10,
        "precision": "32-true",  # 32-true | bf16-mixed | 16-mixed
        "channels_last": True,  # NHWC memory format for model and images (2.3x faster Lite0 steps on CPU)
        "accelerator": "auto",
        "devices": "auto",
        "num_nodes": 1,
        "strategy": "auto",  # auto | ddp | ddp_spawn ...
        "log_every_n_steps": 10,
        # also rewrite checkpoints/last.ckpt every n training steps (0: per epoch only)
        "checkpoint_every_n_steps": 50,
        "limit_train_batches": None,
        "limit_val_batches": None,
        "monitor": None,  # metric that picks the best checkpoint; default per task
        "deterministic": False,
    },
}


def merge_config(base: dict, update: dict, where: str) -> dict:
    """``update`` over ``base``; an unknown key is a ConfigError naming ``where`` + key."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(
                f"unknown config key {where}{key!r}; known keys here: {', '.join(sorted(base))}"
            )
        free_form = (
            key in ("heads", "backbone_kwargs", "aliases", "landmarks", "sources") or base[key] is None
        )
        if isinstance(base[key], dict) and isinstance(value, dict) and not free_form:
            out[key] = merge_config(base[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], 3e-4); values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip().split("."), parsed


_FREE_FORM = (
    ("data", "sources"),
    ("model", "heads"),
    ("model", "backbone_kwargs"),
    ("model", "landmarks"),
    ("model", "parsing"),
    ("labels", "embeddings", "aliases"),
)


def apply_override(cfg: dict, keys: list[str], value: Any) -> None:
    """Set ``cfg[k1][k2]... = value``; keys must exist except inside free-form sections."""
    free = any(tuple(keys[: len(prefix)]) == prefix and len(keys) > len(prefix) for prefix in _FREE_FORM)
    node = cfg
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if key not in node and not free:
            raise ConfigError(f"unknown config key {'.'.join(keys[: i + 1])!r}")
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Defaults, then the YAML file (which may name a ``base:`` file it extends), then overrides; values
    checked.

    Raises:
        ConfigError: a missing or malformed file, an unknown key, or a value outside its choices (each
            naming the key).
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        cfg = merge_config(cfg, _read_yaml_with_base(Path(path)), "")
    for text in overrides or []:
        keys, value = parse_override(text)
        apply_override(cfg, keys, value)
    if cfg["data"]["path"] is None and os.environ.get("FASHIONLENS_DATA"):
        cfg["data"]["path"] = os.environ["FASHIONLENS_DATA"]
    _check_data_values(cfg["data"])
    _check_model_values(cfg["model"])
    _check_optim_values(cfg["optim"])
    _check_loss_values(cfg["loss"])
    _check_labels_values(cfg["labels"])
    return cfg


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` naming ``key`` and its allowed values unless ``value`` is one of
    ``choices``.

    Example:
        >>> check_choice("optim.name", "lion", OPTIMIZERS)
        Traceback (most recent call last):
        ...
        fashionlens.errors.ConfigError: optim.name must be adam, adamw or sgd, got 'lion'
    """
    if value not in choices:
        allowed = f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")


def _check_data_values(data: dict) -> None:
    """Values the data section must have before anything is built, named by their key."""
    from fashionlens.data.config import check_resize
    from fashionlens.data.datasets import BAD_IMAGE_POLICIES

    check_choice("data.format", data["format"], DATA_FORMATS)
    check_choice("data.bad_images", data["bad_images"], BAD_IMAGE_POLICIES)
    try:
        check_resize(data["resize"], data["max_stretch"])
    except ConfigError as e:
        raise ConfigError(f"data.{e}") from None


def _check_model_values(model: dict) -> None:
    from fashionlens.models import list_backbones

    if model["backbone"] not in list_backbones():
        raise ConfigError(
            f"model.backbone must be a registered backbone ({', '.join(list_backbones())}), "
            f"got {model['backbone']!r}"
        )


def _check_optim_values(optim: dict) -> None:
    check_choice("optim.name", str(optim["name"]).lower(), OPTIMIZERS)
    check_choice("optim.scheduler", str(optim["scheduler"] or "none").lower(), SCHEDULERS)


def _check_loss_values(loss: dict) -> None:
    from fashionlens.losses import check_heatmap_loss, check_multilabel_loss

    check_heatmap_loss(loss["heatmap"])
    check_multilabel_loss(loss["multilabel"])


def _check_labels_values(labels: dict) -> None:
    from fashionlens.labelgraph.embeddings import available_providers
    from fashionlens.labelgraph.graph import GRAPH_KINDS, check_unit_interval

    graph = labels["graph"]
    check_choice("labels.graph.kind", graph["kind"], GRAPH_KINDS)
    for key in ("tau", "p"):
        check_unit_interval(f"labels.graph.{key}", graph[key])
    check_choice("labels.embeddings.provider", labels["embeddings"]["provider"], tuple(available_providers()))


def _read_yaml_with_base(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = raw.pop("base", None)
    if base is None:
        return raw
    parent = _read_yaml_with_base((path.parent / base).resolve())
    return _deep_update(parent, raw)


def _deep_update(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
