"""From the ``data`` section of a config to train/val/test datasets and loaders.

Splits are seeded and made once here; the same function serves training and evaluation, so a
checkpoint evaluated later sees exactly the validation/test images it was not trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fashionlens.data.config import DataConfig
from fashionlens.data.formats import FORMATS
from fashionlens.errors import ConfigError, FashionlensError
from fashionlens.train.config import DATA_FORMATS, check_choice


class DataPathError(FashionlensError, ValueError):
    """No data path was given, or it does not exist."""


class DataMismatchError(FashionlensError, ValueError):
    """A model and a data set (or two models) that cannot be scored together: no split or head in common,
    other label names, other photos."""


@dataclass
class DataBundle:
    """Datasets of every split plus what the model and reports need to know about the labels."""

    datasets: dict[str, Dataset]
    label_names: dict[str, list[str]]  # head name -> names
    train_targets: dict[str, np.ndarray]  # head name -> training targets (for graphs, pos_weight)
    paths: dict[str, list[str]]  # split -> image path per dataset index
    attribute_groups: np.ndarray | None = None
    attribute_masks: np.ndarray | None = None
    sources: dict[str, DataBundle] = field(default_factory=dict)  # format "mixed": one bundle per source


def resolve_data_path(cfg: dict) -> Path:
    path = cfg["data"]["path"]
    fmt = cfg["data"]["format"]
    if not path:
        hint = FORMATS[fmt].layout if fmt in FORMATS else "the data"
        raise DataPathError(
            f"no data path: pass --data PATH (or data.path=..., or env FASHIONLENS_DATA) pointing at {hint}"
        )
    p = Path(path).expanduser()
    if not p.exists():
        raise DataPathError(f"data path does not exist: {p}")
    return p


def build_data(cfg: dict, data_config: DataConfig, splits=("train", "val", "test")) -> DataBundle:
    """Read the configured data set, split it and wrap each split in a Dataset."""
    fmt = cfg["data"]["format"]
    check_choice("data.format", fmt, DATA_FORMATS)
    data_config = data_config.replace(
        extra={**data_config.extra, "crop_scale": list(cfg["data"]["crop_scale"])}
    )
    if fmt == "mixed":
        return _mixed_bundle(cfg, data_config, splits)
    root = resolve_data_path(cfg)
    bundle = FORMATS[fmt].build_bundle(cfg, root, data_config, splits)
    return select_targets(bundle, cfg["data"]["targets"]) if cfg["data"]["targets"] else bundle


def source_config(cfg: dict, name: str) -> dict:
    """The config of one source of a "mixed" data section: its settings over the shared ones."""
    import copy

    sub = copy.deepcopy(cfg)
    settings = cfg["data"]["sources"][name]
    unknown = set(settings) - set(cfg["data"])
    if unknown:
        raise ConfigError(f"data.sources.{name}: unknown key(s) {sorted(unknown)}")
    sub["data"].update(settings)
    sub["data"]["sources"] = {}
    return sub


TARGET_KEYS = {
    "category": ("category",),
    "labels": ("labels", "labels_mask"),
    "styles": ("styles", "styles_mask"),
    "attributes": ("attributes", "attributes_mask"),
    "landmarks": ("landmarks", "landmark_visible"),
    "parsing": ("parsing",),
}


def _mixed_bundle(cfg: dict, data_config: DataConfig, splits) -> DataBundle:
    """Several data sets, each labelling some heads; training draws one sub-batch from each.

    Two sources may label the same head if they name the same classes (the product photos' implied
    tags and CCP's tags); the training targets that build label graphs and priors come from the
    sources that observed them (implied tags are not observations of which tags occur together).
    """
    if not cfg["data"]["sources"]:
        raise ConfigError("data.format: mixed needs data.sources (name -> {format, path, ...})")
    sources = {
        name: build_data(source_config(cfg, name), data_config, splits) for name in cfg["data"]["sources"]
    }
    merged = DataBundle({}, {}, {}, {}, sources=sources)
    for name, b in sources.items():
        for head, names in b.label_names.items():
            if head in merged.label_names and list(merged.label_names[head]) != list(names):
                raise ConfigError(
                    f"data.sources.{name} labels head {head!r} with other names than another source"
                )
            merged.label_names[head] = list(names)
        for head, targets in b.train_targets.items():
            old = merged.train_targets.get(head)
            merged.train_targets[head] = targets if old is None else np.concatenate([old, targets])
        if b.attribute_groups is not None:
            merged.attribute_groups, merged.attribute_masks = b.attribute_groups, b.attribute_masks
    for name, settings in cfg["data"]["sources"].items():
        if settings.get("implied_tags"):
            _attach_implied_tags(
                name, sources[name], merged.label_names.get("labels"), float(settings["implied_tags"])
            )
    return merged


def _attach_implied_tags(name: str, bundle: DataBundle, tag_names: list[str] | None, weight: float) -> None:
    """Give a product-photo source's training photos the tags their class implies (data/product_tags.py)."""
    from fashionlens.data.product_tags import implied_tag_targets

    if tag_names is None or "train" not in bundle.datasets:
        raise ConfigError(
            f"data.sources.{name}.implied_tags needs another source that labels tags (e.g. ccp)"
        )
    dataset = getattr(bundle.datasets["train"], "dataset", bundle.datasets["train"])  # under a SelectTargets
    targets, weights = implied_tag_targets(bundle.label_names["category"], tag_names, weight)
    dataset.class_targets = {"labels": torch.from_numpy(targets), "labels_mask": torch.from_numpy(weights)}
    bundle.label_names["labels"] = list(tag_names)


class SelectTargets(Dataset):
    """A dataset whose samples keep only some targets (a source that labels only some heads)."""

    def __init__(self, dataset: Dataset, heads):
        self.dataset = dataset
        self.keep = {"image", "index", *(k for h in heads for k in TARGET_KEYS[h])}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return {k: v for k, v in self.dataset[i].items() if k in self.keep}

    def __getattr__(self, name: str):  # bad_files, targets, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def select_targets(bundle: DataBundle, heads) -> DataBundle:
    """Keep only ``heads`` ("category", "labels", "styles", "attributes", "landmarks") of a source's
    targets."""
    unknown = sorted(set(heads) - set(TARGET_KEYS))
    if unknown:
        raise ConfigError(f"data.targets: unknown target(s) {unknown}; known: {sorted(TARGET_KEYS)}")
    bundle.datasets = {s: SelectTargets(ds, heads) for s, ds in bundle.datasets.items()}
    bundle.label_names = {h: n for h, n in bundle.label_names.items() if h in heads}
    bundle.train_targets = {h: t for h, t in bundle.train_targets.items() if h in heads}
    if "attributes" not in heads:
        bundle.attribute_groups = bundle.attribute_masks = None
    return bundle


# ----------------------------------------------------------------------------- the formats' bundles
# Registered in data/formats.py (``DataFormat.bundle``): (cfg, root, data_config, splits) -> DataBundle.


def multilabel_bundle(cfg: dict, root: Path, data_config: DataConfig, splits) -> DataBundle:
    """A multi-label CSV / JSONL file or CCP (each annotation kind split on its own), top-n labels,
    seeded split; CCP's style labels when ``data.styles`` finds them."""
    from fashionlens.data.ccp import read_ccp_parts
    from fashionlens.data.datasets import MultiLabelDataset
    from fashionlens.data.multilabel import read_multilabel, select_top_labels, split_by_kind
    from fashionlens.data.transforms import build_transforms

    d = cfg["data"]
    masks = None
    if d["format"] == "ccp":
        # Each annotation kind is split on its own (same seed and fractions), so the image-level
        # photos keep exactly the split they had before the pixel-level ones were added.
        by_kind = read_ccp_parts(root, annotations=d["ccp_annotations"], min_pixels=int(d["min_mask_pixels"]))
        kinds = list(by_kind.values())
        if d["parsing"]:
            masks = _ccp_mask_files(root, by_kind, d["ccp_annotations"])
    elif d["parsing"]:
        raise ConfigError(
            f"data.parsing needs CCP's pixel-level masks (data.format: ccp), not {d['format']!r}"
        )
    else:
        kinds = [read_multilabel(root, images_root=d["images_root"], label_list=d["label_list"])]
    if d["top_labels"]:
        # counted over all kinds: every kind keeps the same labels (CCP has no main label: the most frequent)
        kinds = [select_top_labels(k, int(d["top_labels"]), counted=kinds) for k in kinds]
    parts = split_by_kind(kinds, tuple(d["split_fractions"]), seed=int(d["split_seed"]))
    full = kinds[0]
    if d["limit"]:
        parts["train"] = parts["train"].subset(range(min(int(d["limit"]), len(parts["train"]))))
    styles = _read_styles(d, root) if d["format"] == "ccp" else None
    label_names = {"labels": list(full.label_names)}
    train_targets = {"labels": parts["train"].targets()}
    if styles is not None:
        label_names["styles"] = list(styles.label_names)
    mask_lut = None
    if masks is not None:
        from fashionlens.data.ccp import read_ccp_label_list
        from fashionlens.garments.groups import GROUP_NAMES, label_to_group

        label_names["parsing"] = list(GROUP_NAMES)
        mask_lut = label_to_group(read_ccp_label_list(root / "label_list.mat"))
    datasets, paths = {}, {}
    for split in ("train", *(s for s in splits if s != "train")):
        if split not in parts or len(parts[split]) == 0:
            continue
        extra = (
            _style_targets(parts[split], styles, float(d["style_sub_target"])) if styles is not None else None
        )
        if extra is not None and split == "train":  # graphs and priors: the photos whose styles are known
            train_targets["styles"] = (extra["styles"] > 0).astype(np.float32)[extra["styles_mask"][:, 0] > 0]
        if split not in splits:
            continue
        tf = build_transforms(data_config, train=split == "train")
        datasets[split] = MultiLabelDataset(
            parts[split], tf, data_config, bad_images=d["bad_images"], extra_targets=extra,
            masks=None if masks is None else [masks.get(s.path.stem) for s in parts[split].samples],
            mask_lut=mask_lut,
        )
        paths[split] = [str(s.path) for s in parts[split].samples]
    return DataBundle(datasets, label_names, train_targets, paths)


def _ccp_mask_files(root: Path, by_kind: dict, annotations: str) -> dict[str, Path]:
    """Photo stem -> its pixel-level annotation, for the photos read from the pixel-level kind."""
    if "pixel-level" not in by_kind:
        raise ConfigError(
            f"data.parsing needs CCP's pixel-level masks ({root / 'annotations' / 'pixel-level'}; "
            f"data.ccp_annotations is {annotations!r})"
        )
    folder = root / "annotations" / "pixel-level"
    return {s.path.stem: folder / f"{s.path.stem}.mat" for s in by_kind["pixel-level"].samples}


def _read_styles(d: dict, root: Path):
    """The style labels of a CCP data section (``data.styles``), or None."""
    from fashionlens.data.styles import find_styles_file, read_styles

    path = find_styles_file(root, d["styles"])
    return None if path is None else read_styles(path)


def _style_targets(part, styles, sub_target: float) -> dict[str, np.ndarray]:
    from fashionlens.data.styles import style_targets

    targets, mask = style_targets([s.path for s in part.samples], styles, sub_target)
    return {"styles": targets, "styles_mask": mask}


def image_folder_bundle(cfg: dict, root: Path, data_config: DataConfig, splits) -> DataBundle:
    """train/ is the training split; validation/ (or val/) the validation split, else a seeded 10%."""
    from fashionlens.data.image_folder import read_image_folder

    d = cfg["data"]
    train = read_image_folder(root, "train")
    parts = {"train": train}
    val_dir = next((n for n in ("validation", "val") if (root / n).is_dir()), None)
    if val_dir:
        parts["val"] = read_image_folder(root, val_dir, class_names=train.class_names)
    else:
        order = np.random.default_rng(int(d["split_seed"])).permutation(len(train))
        cut = max(1, len(train) // 10)
        parts["val"], parts["train"] = train.subset(order[:cut]), train.subset(sorted(order[cut:]))
    if (root / "test").is_dir():
        parts["test"] = read_image_folder(root, "test", class_names=train.class_names)
    return _classification_bundle(d, parts, data_config, splits)


def clothing_bundle(cfg: dict, root: Path, data_config: DataConfig, splits) -> DataBundle:
    """images.csv + images/: a seeded split by class; ``data.holdout`` photos are validation only."""
    from fashionlens.data.clothing_dataset import holdout_ids, read_clothing_dataset, split_clothing

    d = cfg["data"]
    full = read_clothing_dataset(root)
    held = holdout_ids(Path(d["holdout"]).expanduser()) if d["holdout"] else None
    parts = {
        k: v.data
        for k, v in split_clothing(full, tuple(d["split_fractions"]), int(d["split_seed"]), held).items()
    }
    return _classification_bundle(d, parts, data_config, splits)


def _classification_bundle(d: dict, parts: dict, data_config: DataConfig, splits) -> DataBundle:
    from fashionlens.data.datasets import ClassificationDataset
    from fashionlens.data.transforms import build_transforms

    if d["limit"]:
        parts["train"] = parts["train"].subset(range(min(int(d["limit"]), len(parts["train"]))))
    datasets, paths = {}, {}
    for split in splits:
        if split in parts and len(parts[split]):
            tf = build_transforms(data_config, train=split == "train")
            datasets[split] = ClassificationDataset(parts[split], tf, data_config, bad_images=d["bad_images"])
            paths[split] = [str(p) for p, _ in parts[split].samples]
    train = parts["train"]
    return DataBundle(datasets, {"category": list(train.class_names)}, {"category": train.targets()}, paths)


def deepfashion_bundle(cfg: dict, root: Path, data_config: DataConfig, splits) -> DataBundle:
    """DeepFashion (or a synthetic tree in its layout): ``Eval/list_eval_partition.txt`` fixes the splits."""
    from fashionlens.data.datasets import DeepFashionDataset
    from fashionlens.data.deepfashion import read_deepfashion
    from fashionlens.data.landmark_transforms import build_joint_transforms

    d = cfg["data"]
    index = read_deepfashion(root)
    parts = {s: index.subset(index.partition == s) for s in ("train", "val", "test")}
    if d["limit"]:
        parts["train"] = parts["train"].subset(np.arange(min(int(d["limit"]), len(parts["train"]))))
    datasets, paths = {}, {}
    for split in splits:
        if split not in parts or len(parts[split]) == 0:
            continue
        tf = build_joint_transforms(data_config, train=split == "train", margin=float(d["crop_margin"]))
        datasets[split] = DeepFashionDataset(parts[split], root, tf, data_config, bad_images=d["bad_images"])
        paths[split] = [str(root / str(n)) for n in parts[split].image_names]
    train = parts["train"]
    return DataBundle(
        datasets=datasets,
        label_names={
            "category": [str(n) for n in index.category_names],
            "attributes": [str(n) for n in index.attribute_names],
        },
        train_targets={"category": train.category, "attributes": (train.attributes > 0).astype(np.float32)},
        paths=paths,
        attribute_groups=np.asarray(index.attribute_types, dtype=np.int64),
        attribute_masks=(train.attributes != 0).astype(np.float32),
    )


def num_workers(setting) -> int:
    """ "auto" = one worker per CPU core this process may use, leaving one for the main process."""
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(cores - 1, 8)) if cores > 1 else 0


def make_loader(dataset: Dataset, batch_size: int, workers, train: bool, seed: int = 0) -> DataLoader:
    """A DataLoader; for training, a resumable one whose order depends only on (seed, epoch).

    The training loader can continue an interrupted epoch after the batches already trained on
    (see :mod:`fashionlens.train.resume`). Under DDP, Lightning rebuilds its batch sampler around a
    sharding DistributedSampler.
    """
    from fashionlens.train.resume import EpochShuffleSampler, ResumableBatchSampler, ResumableDataLoader

    n = num_workers(workers)
    common = {"num_workers": n, "persistent_workers": n > 0, "pin_memory": torch.cuda.is_available()}
    if not train:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, **common)
    drop_last = len(dataset) > batch_size
    batches = ResumableBatchSampler(EpochShuffleSampler(len(dataset), seed), batch_size, drop_last)
    # own generator: creating an iterator draws the workers' base seed from it, not from the global RNG
    return ResumableDataLoader(
        dataset, batch_sampler=batches, generator=torch.Generator().manual_seed(seed), **common
    )
