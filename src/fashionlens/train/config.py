"""Experiment configs: YAML files merged over documented defaults, with ``key=value`` overrides.

Every key a config may hold is in ``DEFAULTS`` below; an unknown key is an error that names it, so a
typo never silently trains the wrong experiment.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from fashionlens.errors import FashionlensError

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
        "styles": None,  # ccp: style labels of the photos (a CSV/JSONL image,main,labels; "auto": the root's styles.csv) -> "styles" head
        "style_sub_target": 1.0,  # ccp styles: the target of a sub style (1: as the main style; < 1: a soft target)
        "holdout": None,  # clothing_dataset: folder of photos (or file of ids) kept for validation, never trained on
        "implied_tags": 0.0,  # mixed, clothing_dataset source: loss weight of the tags a product photo's class implies
        "targets": None,  # mixed: the targets a source supplies (category, labels, styles, attributes, landmarks); default all
    },
    "model": {
        "backbone": "efficientnet_lite0",
        "pretrained": True,  # true | false | path to a weights file
        "backbone_kwargs": {},
        "heads": {},  # name -> {kind, pool, conv_channels, dropout, gcn_hidden}
        "landmarks": None,  # {num_glem, num_upsample, fuse} for seed A's landmark branch
        "init_from": None,  # a model file or shipped name: start from its weights (fine-tune a trained model)
    },
    "labels": {
        "graph": {"kind": "cooccurrence", "tau": 0.4, "p": 0.2},  # or kind: identity
        "embeddings": {"provider": "glove", "path": None, "aliases": {}},
    },
    "loss": {
        "weights": {"category": 1.0, "labels": 1.0, "styles": 1.0, "attributes": 1.0, "landmarks": 1.0, "visibility": 1.0},
        "attribute_pos_weight": "frequency",  # frequency | none
        "heatmap_sigma": 1.5,
        "heatmap": "mse",  # mse (seed A) | softmax (cross-entropy over each map's positions: learns in fewer steps)
        "label_smoothing": 0.0,  # category cross-entropy
        # labels / attributes heads: bce (attributes: weighted by attribute_pos_weight) | asl | focal
        "multilabel": {"kind": "bce", "gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05,  # asl
                       "gamma": 2.0, "alpha": None,  # focal
                       "detach_focus": True},  # asl: no gradient through the focusing weights (ASL's recipe)
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
        "checkpoint_every_n_steps": 50,  # also rewrite checkpoints/last.ckpt every n training steps (0: per epoch only)
        "limit_train_batches": None,
        "limit_val_batches": None,
        "monitor": None,  # metric that picks the best checkpoint; default per task
        "deterministic": False,
    },
}


class ConfigError(FashionlensError, ValueError):
    """A config key or value that fashionlens does not understand."""


def _merge(base: dict, update: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(f"unknown config key {where}{key!r}; known keys here: {', '.join(sorted(base))}")
        free_form = key in ("heads", "backbone_kwargs", "aliases", "landmarks", "sources") or base[key] is None
        if isinstance(base[key], dict) and isinstance(value, dict) and not free_form:
            out[key] = _merge(base[key], value, f"{where}{key}.")
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


_FREE_FORM = (("data", "sources"), ("model", "heads"), ("model", "backbone_kwargs"), ("model", "landmarks"), ("labels", "embeddings", "aliases"))


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
    """Defaults, then the YAML file (which may name a ``base:`` file it extends), then overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        cfg = _merge(cfg, _read_yaml_with_base(Path(path)), "")
    for text in overrides or []:
        keys, value = parse_override(text)
        apply_override(cfg, keys, value)
    if cfg["data"]["path"] is None and os.environ.get("FASHIONLENS_DATA"):
        cfg["data"]["path"] = os.environ["FASHIONLENS_DATA"]
    _check_data_values(cfg["data"])
    _check_loss_values(cfg["loss"])
    return cfg


def _check_data_values(data: dict) -> None:
    """Values the data section must have before anything is built, named by their key."""
    from fashionlens.data.config import check_resize

    try:
        check_resize(data["resize"], data["max_stretch"])
    except ValueError as e:
        raise ConfigError(f"data.{e}") from None


def _check_loss_values(loss: dict) -> None:
    from fashionlens.losses import check_multilabel_loss

    try:
        check_multilabel_loss(loss["multilabel"])
    except ValueError as e:
        raise ConfigError(str(e)) from None


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
