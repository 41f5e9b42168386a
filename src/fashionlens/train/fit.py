"""``fashionlens train``: config -> data -> model -> Lightning fit -> model.safetensors + report.

Read top to bottom: :func:`train` is the whole recipe; the helpers below it build the pieces.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from fashionlens.checkpoint import ModelInfo, save_model
from fashionlens.errors import ConfigError
from fashionlens.fileio import OutputDirError, atomic_write_bytes
from fashionlens.fileio import check_output_dir as check_writable_dir
from fashionlens.losses import pos_weight_from_targets
from fashionlens.model_header import Attributes, Best, HeadGraph, Landmarks, Parsing, Training, data_section
from fashionlens.models.fashion_net import FashionNet
from fashionlens.models.registry import create_backbone
from fashionlens.train.data import DataBundle, build_data, make_loader
from fashionlens.train.resume import AtomicCheckpointIO, RngStateCallback
from fashionlens.train.task import FashionTask

MIN_FREE_BYTES = 200 * 1024 * 1024


def train(cfg: dict, out_dir: str | Path, resume: bool = True) -> dict:
    """Train the configured model; returns the validation report of the best epoch.

    Writes to ``out_dir``: ``config.yaml`` (resolved), ``checkpoints/last.ckpt`` (resume state:
    weights, optimiser, scheduler, epoch, step, data position, RNG states; rewritten atomically every
    epoch and every ``trainer.checkpoint_every_n_steps`` steps), ``model.safetensors`` (best weights,
    self-describing), ``metrics.json`` (the best epoch's validation report; ``fashionlens evaluate`` writes
    the Markdown tables), CSV and TensorBoard logs.

    With ``resume`` and an existing ``last.ckpt``, training continues where that checkpoint left off,
    mid-epoch included, and ends as an uninterrupted run would (see :mod:`fashionlens.train.resume`).

    Raises:
        OutputDirError: ``out_dir`` is not writable or its disk is nearly full (before any training).
        CheckpointError: ``last.ckpt`` exists but is truncated or corrupt.
        NonFiniteLossError: the loss or the weights became NaN/inf; the last good files are kept.
    """
    out = Path(out_dir)
    check_output_dir(out)
    L.seed_everything(int(cfg["seed"]), workers=True)
    backbone = build_backbone(cfg)
    backbone.data_config = data_config = backbone.data_config.replace(
        resize=cfg["data"]["resize"], max_stretch=cfg["data"]["max_stretch"]
    )
    bundle = build_data(cfg, data_config)
    prescanned = (
        prescan_images(bundle, cfg["data"]["bad_images"], cfg["data"]["num_workers"])
        if cfg["data"]["prescan"]
        else {}
    )
    model, info = build_model_for_data(cfg, bundle, backbone)
    if cfg["model"]["init_from"]:
        _warm_start(model, info, cfg["model"]["init_from"])
    task = make_task(cfg, model, bundle)
    _write_config(cfg, out)

    monitor, mode = monitor_metric(cfg)
    ckpt_dir = out / "checkpoints"
    export = ExportBest(out / "model.safetensors", info, monitor, mode)
    every_n_steps = int(cfg["trainer"]["checkpoint_every_n_steps"] or 0)
    callbacks = [export, RngStateCallback(), *checkpoint_callbacks(ckpt_dir, every_n_steps)]
    trainer = make_trainer(cfg, out, callbacks)
    train_loader, val_loader = make_loaders(cfg, bundle)
    last = ckpt_dir / "last.ckpt" if resume and (ckpt_dir / "last.ckpt").is_file() else None
    if last and trainer.is_global_zero:
        keep_previous_logs(out / "logs")
    # weights_only: last.ckpt holds tensors and plain data only, so loading it never runs pickled code
    trainer.fit(task, train_loader, val_loader, ckpt_path=last and str(last), weights_only=True)
    report = export.best_report or task.last_report
    if trainer.is_global_zero:
        _report_bad_files(bundle, prescanned)
        write_json(
            out / "metrics.json",
            {"split": "val", "monitor": monitor, "best": export.best_value, "report": report},
        )
    return report


def _warm_start(model: FashionNet, info: ModelInfo, source: str) -> None:
    from fashionlens.checkpoint import warm_start
    from fashionlens.inference.predictor import resolve_model_path

    path = resolve_model_path(source)
    copied, fresh = warm_start(model, info.label_names, path)
    heads = sorted({".".join(n.split(".")[:2]) for n in fresh})
    print(
        f"model.init_from: {copied} tensors from {path}"
        + (f"; starting fresh: {', '.join(heads)}" if fresh else "")
    )


def checkpoint_callbacks(ckpt_dir: Path, every_n_steps: int = 0) -> list[ModelCheckpoint]:
    """Callbacks that keep ``ckpt_dir/last.ckpt`` current: after every epoch and every n steps.

    Lightning wants epoch and step triggers on separate ``ModelCheckpoint`` callbacks; both write the
    same file, atomically (see :class:`AtomicCheckpointIO`). ``every_n_steps`` 0: per epoch only.
    """
    common = {
        "dirpath": ckpt_dir,
        "filename": "last",
        "save_last": False,
        "save_top_k": 1,
        "enable_version_counter": False,
    }
    callbacks = [ModelCheckpoint(every_n_epochs=1, **common)]
    if every_n_steps > 0:
        callbacks.append(ModelCheckpoint(every_n_train_steps=every_n_steps, every_n_epochs=0, **common))
    return callbacks


def make_loaders(cfg: dict, bundle: DataBundle):
    """Train and val loaders; for mixed data, a CombinedLoader of one loader per source."""
    from lightning.pytorch.utilities import CombinedLoader

    from fashionlens.train.data import source_config

    if not bundle.sources:
        d = cfg["data"]
        train = make_loader(bundle.datasets["train"], d["batch_size"], d["num_workers"], True, cfg["seed"])
        return train, make_loader(bundle.datasets["val"], d["batch_size"], d["num_workers"], False)
    trains, vals = {}, []
    for name, sub in bundle.sources.items():
        d = source_config(cfg, name)["data"]
        trains[name] = make_loader(
            sub.datasets["train"], d["batch_size"], d["num_workers"], True, cfg["seed"]
        )
        vals.append(make_loader(sub.datasets["val"], d["batch_size"], d["num_workers"], False))
    return CombinedLoader(trains, mode="max_size_cycle"), vals


def build_backbone(cfg: dict) -> torch.nn.Module:
    """The backbone a config names (``model.backbone``, ``model.pretrained``), sized for its input."""
    model = cfg["model"]
    return create_backbone(model["backbone"], pretrained=model["pretrained"], **backbone_kwargs(cfg))


def backbone_kwargs(cfg: dict) -> dict:
    """``model.backbone_kwargs`` plus the config's input size."""
    kw = dict(cfg["model"]["backbone_kwargs"])
    if cfg["data"]["input_size"]:
        kw["input_size"] = tuple(cfg["data"]["input_size"])
    return kw


def build_model_for_data(
    cfg: dict, bundle: DataBundle, backbone: torch.nn.Module
) -> tuple[FashionNet, ModelInfo]:
    """Size the heads from the data; label graph and embeddings for the heads that use them.

    A ``gcn`` head gets the label word embeddings and the co-occurrence graph; an ``mldecoder`` or
    ``query2label`` head with ``query_init: embeddings`` gets the embeddings.
    """
    heads = {}
    graphs = {}
    embeddings = {}
    for name, head_cfg in cfg["model"]["heads"].items():
        if name not in bundle.label_names:
            raise ConfigError(
                f"model.heads.{name}: the {cfg['data']['format']} data has no {name!r} targets "
                f"(it has {sorted(bundle.label_names)})"
            )
        kw = {"kind": "linear", **(head_cfg or {}), "num_classes": len(bundle.label_names[name])}
        if kw["kind"] == "gcn":
            emb, adjacency, graphs[name] = label_graph_inputs(
                cfg, bundle.label_names[name], bundle.train_targets[name]
            )
            embeddings[name] = (emb, adjacency)
        elif kw.get("query_init") == "embeddings":
            emb = label_word_embeddings(cfg, bundle.label_names[name])
            graphs[name] = HeadGraph(cfg["labels"]["embeddings"]["provider"], int(emb.shape[1]))
            embeddings[name] = (emb, None)
        if name in embeddings:
            kw["embed_dim"] = int(embeddings[name][0].shape[1])
        heads[name] = kw
    landmarks = cfg["model"]["landmarks"]
    parsing = cfg["model"]["parsing"]
    if parsing is not None:
        if "parsing" not in bundle.label_names:
            raise ConfigError(
                "model.parsing: the data has no parsing masks; set data.parsing: true on a ccp source "
                "with pixel-level annotations"
            )
        parsing = {**parsing, "num_classes": len(bundle.label_names["parsing"])}
    model = FashionNet(
        cfg["model"]["backbone"], heads, landmarks, backbone_kwargs(cfg), backbone_module=backbone,
        parsing=parsing,
    )
    for name in heads:
        model.heads[name].set_prior(
            label_frequencies(bundle.train_targets[name], len(bundle.label_names[name]), name == "category"),
            softmax=name == "category",
        )
    for name, (emb, adjacency) in embeddings.items():
        clf = model.heads[name].classifier
        if adjacency is None:
            clf.load_label_embeddings(emb)
        else:
            clf.load_label_embeddings(emb, adjacency)
    label_names = {k: v for k, v in bundle.label_names.items() if k in heads}
    return model, ModelInfo(
        model.spec, label_names, backbone.data_config,
        training=Training(cfg["experiment"], data_section(cfg)),
        label_graph=graphs,
        landmarks=_landmark_names(model.spec["landmarks"]),
        attributes=Attributes.for_names(label_names.get("attributes", []), bundle.attribute_groups),
        parsing=None if parsing is None else _garment_parsing(bundle.label_names["parsing"]),
    )  # fmt: skip


def _landmark_names(landmarks: dict | None) -> Landmarks:
    """The names of the landmark slots (DeepFashion's, the one landmark format), for the header."""
    if landmarks is None:
        return Landmarks()
    from fashionlens.data.deepfashion import LANDMARK_NAMES

    return Landmarks(LANDMARK_NAMES[: landmarks.get("num_landmarks", len(LANDMARK_NAMES))])


def _garment_parsing(groups: list[str]) -> Parsing:
    from fashionlens.garments.groups import GARMENT_GROUPS, LANDMARK_GROUPS

    return Parsing(tuple(groups), tuple(GARMENT_GROUPS), tuple(LANDMARK_GROUPS))


def data_description(cfg: dict) -> dict:
    """What the evaluator needs to rebuild the same splits (:func:`fashionlens.model_header.data_section`)."""
    return data_section(cfg)


def label_frequencies(targets: np.ndarray, num_classes: int, single_label: bool) -> np.ndarray:
    """Training frequency of each class (single-label) or label (multi-label)."""
    if single_label:
        return np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes) / max(len(targets), 1)
    return np.asarray(targets, dtype=np.float64).mean(axis=0)


def label_word_embeddings(cfg: dict, names: list[str]) -> np.ndarray:
    """The (C, d) word embeddings of the label names, as ``labels.embeddings`` configures them."""
    from fashionlens.labelgraph import label_embeddings

    e = cfg["labels"]["embeddings"]
    return label_embeddings(names, provider=e["provider"], path=e["path"], aliases=e["aliases"] or None)


def label_graph_inputs(
    cfg: dict, names: list[str], targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, HeadGraph]:
    """Word embeddings (C, d) and the normalised co-occurrence adjacency (C, C) for a GCN head."""
    from fashionlens.labelgraph import build_label_graph

    g = cfg["labels"]["graph"]
    emb = label_word_embeddings(cfg, names)
    graph = build_label_graph(targets, tau=g["tau"], p=g["p"], kind=g["kind"])
    built = HeadGraph(
        cfg["labels"]["embeddings"]["provider"], int(emb.shape[1]), g["kind"], g["tau"], g["p"],
        int(graph.num_edges),
    )
    return emb, graph.adjacency, built


def make_task(cfg: dict, model: FashionNet, bundle: DataBundle) -> FashionTask:
    pos_weight = None
    if "attributes" in model.heads and cfg["loss"]["attribute_pos_weight"] == "frequency":
        mask = None if bundle.attribute_masks is None else torch.as_tensor(bundle.attribute_masks)
        pos_weight = pos_weight_from_targets(torch.as_tensor(bundle.train_targets["attributes"]), mask)
    return FashionTask(
        model,
        bundle.label_names,
        cfg["optim"],
        cfg["loss"],
        pos_weight,
        bundle.attribute_groups,
        int(cfg["trainer"]["max_epochs"]),
        channels_last=bool(cfg["trainer"]["channels_last"]),
    )


def monitor_metric(cfg: dict) -> tuple[str, str]:
    if cfg["trainer"]["monitor"]:
        name = cfg["trainer"]["monitor"]
        return name, "min" if "NE" in name or "loss" in name else "max"
    heads = cfg["model"]["heads"]
    if "labels" in heads:
        return "val/mAP", "max"
    if "attributes" in heads:
        return "val/attr_top3", "max"
    if "category" in heads:
        return ("val/cat_top3", "max") if cfg["data"]["format"] == "deepfashion" else ("val/cat_top1", "max")
    if cfg["model"]["parsing"] is not None and not cfg["model"]["landmarks"]:
        return "val/parse_mIoU", "max"
    return "val/lm_NE", "min"


def lightning_trainer(**settings) -> L.Trainer:
    """``L.Trainer(**settings)``; settings Lightning refuses (accelerator, strategy, precision names) are a
    ConfigError."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(**settings)
    # Lightning's message names the setting and its choices
    except (ValueError, MisconfigurationException) as e:
        raise ConfigError(str(e)) from None


def make_trainer(cfg: dict, out: Path, callbacks: list[Callback]) -> L.Trainer:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    t = cfg["trainer"]
    return lightning_trainer(
        default_root_dir=out,
        max_epochs=int(t["max_epochs"]),
        precision=t["precision"],
        accelerator=t["accelerator"],
        devices=t["devices"],
        num_nodes=int(t["num_nodes"]),
        strategy=t["strategy"],
        gradient_clip_val=cfg["optim"]["grad_clip"] or None,
        log_every_n_steps=int(t["log_every_n_steps"]),
        limit_train_batches=t["limit_train_batches"],
        limit_val_batches=t["limit_val_batches"],
        deterministic=bool(t["deterministic"]),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=[
            CSVLogger(out, name="logs", version=""),
            TensorBoardLogger(out, name="tensorboard", version=""),
        ],
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )


class ExportBest(Callback):
    """Export ``model.safetensors`` (rank 0, atomically) whenever the monitored metric improves."""

    def __init__(self, path: Path, info: ModelInfo, monitor: str, mode: str):
        self.path, self.info, self.monitor, self.mode = Path(path), info, monitor, mode
        self.best_value: float | None = None
        self.best_report: dict | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: FashionTask) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        better = self.best_value is None or (
            value > self.best_value if self.mode == "max" else value < self.best_value
        )
        if not better or not np.isfinite(value):
            return
        self.best_value, self.best_report = value, pl_module.last_report
        if trainer.is_global_zero:
            best = Best(trainer.current_epoch, self.monitor, value)
            self.info.training = replace(self.info.training, best=best)
            save_model(pl_module.model, self.info, self.path)

    def state_dict(self) -> dict:
        # the report as JSON text: plain data, so the checkpoint loads with weights_only=True
        report = None if self.best_report is None else json.dumps(self.best_report, default=_json_default)
        return {"best_value": self.best_value, "best_report": report}

    def load_state_dict(self, state: dict) -> None:
        self.best_value = state.get("best_value")
        report = state.get("best_report")
        self.best_report = None if report is None else json.loads(report)


def check_output_dir(out: Path) -> None:
    """Fail before training, not after hours of it, when results could not be written."""
    for folder in (out, out / "checkpoints"):
        check_writable_dir(folder)
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise OutputDirError(
            f"only {free / 2**20:.0f} MiB free under {out}; need at least {MIN_FREE_BYTES / 2**20:.0f} MiB"
        )


def keep_previous_logs(log_dir: Path) -> Path | None:
    """Move ``metrics.csv`` aside before a resumed run: Lightning's CSVLogger deletes it otherwise."""
    metrics = log_dir / "metrics.csv"
    if not metrics.is_file():
        return None
    n = 1
    while (log_dir / f"metrics.{n}.csv").exists():
        n += 1
    return metrics.rename(log_dir / f"metrics.{n}.csv")


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=_json_default).encode())


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _write_config(cfg: dict, out: Path) -> None:
    import yaml

    atomic_write_bytes(out / "config.yaml", yaml.safe_dump(cfg, sort_keys=False).encode())


def prescan_images(bundle: DataBundle, policy: str, workers) -> dict[str, str]:
    """Probe every image header before training: "fail" stops at once naming the file; "skip"
    reports each bad file once and how many there are (DataLoader workers skip them later, and
    their own counts never reach the main process)."""
    from fashionlens.data.check import scan_images
    from fashionlens.data.images import BadImageError
    from fashionlens.train.data import num_workers

    bundles = list(bundle.sources.values()) or [bundle]
    paths = list(dict.fromkeys(p for b in bundles for split in b.paths.values() for p in split))
    bad = scan_images(paths, workers=max(1, num_workers(workers)))
    if bad and policy == "fail":
        path, reason = next(iter(bad.items()))
        raise BadImageError(path, f"{reason} (data.bad_images=fail; {len(bad)} bad image(s) in all)")
    for path, reason in bad.items():
        print(f"unreadable image, will be skipped: {path}: {reason}")
    if bad:
        print(f"{len(bad)} of {len(paths)} images are unreadable and will be skipped (data.bad_images=skip)")
    return bad


def _report_bad_files(bundle: DataBundle, prescanned: dict[str, str] | None = None) -> None:
    bundles = list(bundle.sources.values()) or [bundle]
    bad = sorted(
        {str(p) for b in bundles for ds in b.datasets.values() for p in getattr(ds, "bad_files", ())}
        | set(prescanned or {})
    )
    if bad:
        print(
            f"skipped {len(bad)} unreadable image(s): "
            + ", ".join(bad[:10])
            + (" ..." if len(bad) > 10 else "")
        )
