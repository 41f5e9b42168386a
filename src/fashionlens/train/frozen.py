"""Heads on frozen features: cache a backbone's spatial maps once, then train any head x loss on them.

Comparing heads (``linear``, ``gcn``, ``mldecoder``, ``query2label``) and losses with several seeds
on a 2-core CPU is only affordable when the backbone runs once per photo. :func:`build_feature_cache`
stores the feature map (B, D, h, w) of every photo of every split, for the photo and its mirror
image (the one augmentation that survives caching), as float16. :func:`train_head_on_cache` then
trains one :class:`~fashionlens.models.heads.RecognitionHead` with the engine's loss, optimiser and
schedule and scores a split. The head sees exactly what it would see on top of a frozen backbone in
``fashionlens train`` with ``optim.freeze_backbone: true`` and BatchNorm statistics kept, minus the
random crops and colour jitter.

``tools/head_study.py`` drives it (the comparison in ``docs/multilabel-heads.md``).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fashionlens.fileio import atomic_write_bytes
from fashionlens.losses import compute_losses, pos_weight_from_targets
from fashionlens.metrics import multilabel_report
from fashionlens.models.heads import RecognitionHead

SPLITS = ("train", "val", "test")


@dataclass
class FeatureCache:
    """Cached feature maps of a multi-label data set.

    Attributes:
        label_names: the C labels (columns of the targets).
        splits: split -> ``{"features": (N, V, D, h, w) float16 (view 0 the photo, 1 its mirror),
            "targets": (N, C) float32, "paths": [N photo paths]}``, and for attributes ``"mask"``
            (N, C), 1 where the attribute is known.
        meta: how the cache was made (backbone, input size, data settings, ``head``: "labels" for
            tags, "attributes" for DeepFashion-layout attributes).
    """

    label_names: list[str]
    splits: dict[str, dict]
    meta: dict

    def save(self, path: str | Path) -> Path:
        buf = io.BytesIO()
        torch.save({"label_names": self.label_names, "splits": self.splits, "meta": self.meta}, buf)
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureCache:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(state["label_names"], state["splits"], state["meta"])

    def restrict_to_top_labels(self, n: int) -> FeatureCache:
        """The ``n`` most frequent labels over all splits (ties by name) and the photos having one.

        Seed B's top-5 / top-7 protocol for a data set without main labels; the photos keep the
        split they had in the full set.
        """
        counts = Counter()
        for part in self.splits.values():
            counts.update(dict(zip(self.label_names, part["targets"].sum(0).tolist(), strict=True)))
        top = {name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]}
        cols = [i for i, name in enumerate(self.label_names) if name in top]
        splits = {}
        for split, part in self.splits.items():
            targets = part["targets"][:, cols]
            keep = torch.nonzero(targets.sum(1) > 0).flatten()
            splits[split] = {"features": part["features"][keep], "targets": targets[keep],
                             "paths": [part["paths"][i] for i in keep.tolist()]}
            if "mask" in part:
                splits[split]["mask"] = part["mask"][keep][:, cols]
        return FeatureCache([self.label_names[i] for i in cols], splits, {**self.meta, "top_labels": n})


@torch.no_grad()
def build_feature_cache(cfg: dict, out_path: str | Path, batch_size: int = 32, splits=SPLITS,
                        model_file: str | Path | None = None, head: str | None = None) -> FeatureCache:
    """Run the configured backbone (eval mode) over every photo of every split and its mirror.

    Args:
        cfg: a fashionlens config (``data`` and ``model.backbone`` / ``pretrained`` are used).
        out_path: the cache file (written atomically).
        batch_size: photos per forward pass.
        splits: which splits to cache.
        model_file: the backbone (and input size) of this trained model file instead of the config's
            ImageNet backbone, e.g. the shipped model's fine-tuned one.
        head: the targets to cache: "labels", "styles" (CCP photos' style labels, ``data.styles``) or
            "attributes"; default the first of labels / attributes the data has.

    Returns:
        The cache. Unreadable photos are left out (and said so).
    """
    from fashionlens.train.data import DataMismatchError, build_data, make_loader
    from fashionlens.train.fit import build_backbone

    if model_file is not None:
        from fashionlens.checkpoint import load_model_file

        model, info = load_model_file(model_file)
        backbone, data_config, name = (
            model.backbone,
            info.data_config,
            f"{info.spec['backbone']} of {model_file}",
        )
    else:
        backbone = build_backbone(cfg)
        data_config = backbone.data_config.replace(
            resize=cfg["data"]["resize"], max_stretch=cfg["data"]["max_stretch"]
        )
        name = cfg["model"]["backbone"]
    bundle = build_data(cfg, data_config, splits=tuple(splits))
    head = head or next((h for h in ("labels", "attributes") if h in bundle.label_names), None)
    if head not in bundle.label_names:
        raise DataMismatchError(
            f"the {cfg['data']['format']} data has no {head or 'multi-label'} targets to cache "
            f"(it has {sorted(bundle.label_names)})"
        )
    backbone.eval()
    cached = {}
    for split, dataset in bundle.datasets.items():
        # eval transforms, the training split too
        targets, mask = _eval_targets(dataset, data_config, cfg, head)
        loader = make_loader(dataset, batch_size, cfg["data"]["num_workers"], False)
        cached[split] = _cache_split(backbone, loader, targets, mask, bundle.paths[split], split)
    meta = {
        "backbone": name,
        "input_size": list(data_config.input_size),
        "head": head,
        "data": {
            k: cfg["data"][k]
            for k in ("format", "split_fractions", "split_seed", "ccp_annotations", "resize")
        },
    }
    cache = FeatureCache(list(bundle.label_names[head]), cached, meta)
    cache.save(out_path)
    return cache


def _eval_targets(dataset, data_config, cfg: dict, head: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Give the dataset its eval transform (no crops); its (N, C) targets and, for attributes, the known
    mask."""
    if head in ("labels", "styles"):
        from fashionlens.data.transforms import build_transforms

        dataset.transform = build_transforms(data_config, train=False)
        if head == "styles":  # soft sub-style targets count as present; photos without styles are masked out
            return (dataset.extra_targets["styles"] > 0).float(), dataset.extra_targets["styles_mask"].float()
        return dataset.targets.float(), None
    from fashionlens.data.landmark_transforms import build_joint_transforms

    dataset.transform = build_joint_transforms(
        data_config, train=False, margin=float(cfg["data"]["crop_margin"])
    )
    values = torch.as_tensor(np.asarray(dataset.index.attributes))  # 1 present, -1 absent, 0 unknown
    return (values > 0).float(), (values != 0).float()


def _cache_split(
    backbone, loader, targets: torch.Tensor, mask: torch.Tensor | None, paths: list[str], split: str
) -> dict:
    features, filled = None, torch.zeros(len(paths), dtype=torch.bool)
    for batch in tqdm(loader, desc=f"caching {split}", unit="batch"):
        x, index = batch["image"], batch["index"]
        views = torch.stack([backbone(x), backbone(x.flip(-1))], dim=1).half()  # (B, 2, D, h, w)
        if features is None:
            features = torch.zeros(len(paths), *views.shape[1:], dtype=torch.float16)
        features[index] = views
        # an unreadable photo's slot is served by another photo, under that photo's index
        filled[index] = True
    if not filled.all():
        print(f"{split}: {int((~filled).sum())} unreadable photo(s) left out of the cache")
    keep = torch.nonzero(filled).flatten()
    part = {"features": features[keep], "targets": targets[keep], "paths": [paths[i] for i in keep.tolist()]}
    if mask is not None:
        part["mask"] = mask[keep]
    return part


def _head_and_embeddings(
    cache: FeatureCache, head: dict, labels_cfg: dict, targets: np.ndarray
) -> RecognitionHead:
    """A head sized for the cache, with its label graph / word embeddings when its kind uses them."""
    from fashionlens.train.fit import label_graph_inputs, label_word_embeddings

    kw = {"kind": "linear", **head}
    cfg = {"labels": labels_cfg}
    emb = adjacency = None
    if kw["kind"] == "gcn":
        emb, adjacency, _ = label_graph_inputs(cfg, cache.label_names, targets)
    elif kw.get("query_init") == "embeddings":
        emb = label_word_embeddings(cfg, cache.label_names)
    if emb is not None:
        kw["embed_dim"] = int(emb.shape[1])
    features = next(iter(cache.splits.values()))["features"]
    model = RecognitionHead(int(features.shape[2]), len(cache.label_names), **kw)
    model.set_prior(targets.mean(0))
    if adjacency is not None:
        model.classifier.load_label_embeddings(emb, adjacency)
    elif emb is not None:
        model.classifier.load_label_embeddings(emb)
    return model


def train_head_on_cache(
    cache: FeatureCache,
    head: dict,
    loss: dict | None = None,
    seed: int = 0,
    epochs: int = 20,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 32,
    grad_clip: float = 10.0,
    eval_split: str = "val",
    labels_cfg: dict | None = None,
    progress: bool = True,
    init: dict | None = None,
) -> dict:
    """Train one head on the cached maps (AdamW, cosine schedule, per-photo random mirror); score a split.

    Args:
        cache: the cached features.
        head: RecognitionHead settings (``kind``, ``pool``, ``decoder``, ``query_init``, ...).
        loss: the ``loss.multilabel`` settings (None: BCE).
        seed: seeds the head's initialisation, the order of the photos and the mirror draws.
        epochs, lr, weight_decay, batch_size, grad_clip: the training budget and optimiser.
        eval_split: the split scored after the last epoch (no early stopping: nothing is picked on it).
        labels_cfg: the config's ``labels`` section (graph and word embeddings), for gcn heads and
            label-embedding queries.
        progress: show a progress bar over the epochs.
        init: the head's starting weights (a state dict of a head with the same settings, e.g. a trained
            model's own head) instead of the training priors.

    Returns:
        ``{"report": multilabel_report, "scores": (N, C) probabilities, "targets", "paths", "seconds",
        "model"}``.
    """
    import time

    from fashionlens.train.config import DEFAULTS, merge_config
    from fashionlens.train.task import make_optimizer, make_scheduler

    torch.manual_seed(seed)
    train = cache.splits["train"]
    targets = train["targets"]
    model = _head_and_embeddings(
        cache, head, merge_config(DEFAULTS["labels"], labels_cfg or {}, "labels."), targets.numpy()
    )
    if init is not None:
        model.load_state_dict(init)
    optim_cfg = {"name": "adamw", "weight_decay": weight_decay, "momentum": 0.9, "scheduler": "cosine"}
    optimizer = make_optimizer(
        [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}], optim_cfg
    )
    scheduler = make_scheduler(optimizer, optim_cfg, epochs)
    name, mask = cache.meta.get("head", "labels"), train.get("mask")
    # attributes + BCE: the engine's per-attribute positive weights (loss.attribute_pos_weight: frequency)
    pos_weight = pos_weight_from_targets(targets, mask) if name == "attributes" else None
    gen = torch.Generator().manual_seed(seed)
    n, start = len(targets), time.perf_counter()
    for _ in tqdm(
        range(epochs), desc=f"{head.get('kind', 'linear')}", unit="epoch", disable=not progress, leave=False
    ):
        model.train()
        order = torch.randperm(n, generator=gen)
        views = torch.randint(0, train["features"].shape[1], (n,), generator=gen)
        # drop the last partial batch
        for i in range(0, n - batch_size + 1 if n > batch_size else n, batch_size):
            rows = order[i : i + batch_size]
            x = train["features"][rows, views[rows]].float()  # (B, D, h, w)
            batch = (
                {name: targets[rows]} if mask is None else {name: targets[rows], f"{name}_mask": mask[rows]}
            )
            terms = compute_losses({name: model(x)}, batch, pos_weight=pos_weight, multilabel=loss)
            optimizer.zero_grad(set_to_none=True)
            terms[name].backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        scheduler.step()
    seconds = time.perf_counter() - start
    return {**score_split(model, cache, eval_split, batch_size), "seconds": seconds, "model": model}


def rebuild_head(
    cache: FeatureCache, head: dict, state: dict, labels_cfg: dict | None = None
) -> RecognitionHead:
    """A head trained by :func:`train_head_on_cache` from its settings and saved weights."""
    from fashionlens.train.config import DEFAULTS, merge_config

    model = _head_and_embeddings(
        cache,
        head,
        merge_config(DEFAULTS["labels"], labels_cfg or {}, "labels."),
        cache.splits["train"]["targets"].numpy(),
    )
    model.load_state_dict(state)
    return model


def score_split(model: torch.nn.Module, cache: FeatureCache, split: str, batch_size: int = 64) -> dict:
    """Scores, targets, paths and the multilabel report of a head on one cached split (the photos, not
    mirrors)."""
    part = cache.splits[split]
    scores = predict_on_cache(model, part["features"][:, 0], batch_size)
    # unknown: not a positive
    targets = part["targets"] if "mask" not in part else part["targets"] * part["mask"]
    report = multilabel_report(scores, targets.numpy(), cache.label_names)
    return {"report": report, "scores": scores, "targets": targets.numpy(), "paths": list(part["paths"])}


@torch.no_grad()
def predict_on_cache(model: torch.nn.Module, features: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Sigmoid scores (N, C) of a head on cached maps (N, D, h, w)."""
    model.eval()
    out = [
        torch.sigmoid(model(features[i : i + batch_size].float()))
        for i in range(0, len(features), batch_size)
    ]
    return torch.cat(out).numpy()
