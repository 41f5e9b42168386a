"""The LightningModule: one training/evaluation step for every FashionNet configuration.

Lightning does the engine work (DDP, mixed precision, checkpoint/resume, progress bar, logging).
This module only says how a batch becomes losses and how outputs become metrics. Evaluation
outputs are gathered with ``ScoreCollector`` (a torchmetrics Metric with "cat" reduction), so under
DDP the metrics are computed once over all ranks' images, not averaged per rank.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from fashionlens.data.transforms import MASK_IGNORE
from fashionlens.errors import ConfigError, FashionlensError
from fashionlens.losses import compute_losses
from fashionlens.metrics import (
    ScoreCollector,
    classification_report,
    deepfashion_report,
    multilabel_report,
    parsing_report,
)
from fashionlens.models.fashion_net import FashionNet
from fashionlens.models.glem import heatmaps_to_landmarks


class NonFiniteLossError(FashionlensError, RuntimeError):
    """Training produced a NaN or infinite loss."""


def collector_groups(model: FashionNet) -> dict[str, list[str]]:
    """One collector per head (plus landmarks): a batch updates only the heads it has targets for."""
    groups = {head: ["index", f"{head}_scores", f"{head}_targets"] for head in model.heads}
    if "attributes" in groups:
        groups["attributes"].append("attributes_mask")
    if model.spec["landmarks"]:
        groups["landmarks"] = ["index", "landmarks_pred", "landmarks_target", "landmarks_visible"]
    if model.spec.get("parsing"):
        groups["parsing"] = ["index", "parsing_pred", "parsing_target"]
    return groups


def _collectors(model: FashionNet) -> torch.nn.ModuleDict:
    return torch.nn.ModuleDict({g: ScoreCollector(keys) for g, keys in collector_groups(model).items()})


class FashionTask(L.LightningModule):
    """Train and evaluate a FashionNet.

    Args:
        model: the network.
        label_names: head name -> class/label names (for reports).
        optim: the ``optim`` section of the config.
        loss: the ``loss`` section of the config.
        pos_weight: per-attribute positive weights for the weighted BCE (or None).
        attribute_groups: attribute type (1..5) per attribute, for per-type recall.
        max_epochs: for the learning-rate schedule.
        channels_last: run the network in NHWC memory format (much faster convolutions on CPU).
    """

    def __init__(
        self,
        model: FashionNet,
        label_names: dict[str, list[str]],
        optim: dict,
        loss: dict,
        pos_weight: torch.Tensor | None = None,
        attribute_groups: np.ndarray | None = None,
        max_epochs: int = 1,
        channels_last: bool = False,
    ):
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.label_names = label_names
        self.optim_cfg = optim
        self.loss_cfg = loss
        self.max_epochs = max_epochs
        self.attribute_groups = attribute_groups
        self.register_buffer(
            "pos_weight", pos_weight if pos_weight is not None else torch.empty(0), persistent=False
        )
        self.val_scores = _collectors(model)
        self.test_scores = _collectors(model)
        self.last_report: dict = {}
        self.last_outputs: dict[str, np.ndarray] = {}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(self._layout(images))

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _layout(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def on_train_epoch_start(self) -> None:
        self._freeze_batchnorm_if_configured()

    def on_train_start(self) -> None:
        # a run resumed mid-epoch continues that epoch without on_train_epoch_start (Lightning 2.x)
        self._freeze_batchnorm_if_configured()

    def _freeze_batchnorm_if_configured(self) -> None:
        if self.optim_cfg.get("freeze_bn") or self.optim_cfg.get("freeze_backbone"):
            for module in self.model.backbone.modules():  # Lightning set train mode; keep BN statistics
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    # -- training ---------------------------------------------------------------------------------
    def _train_one(self, batch: dict, source: str) -> torch.Tensor:
        outputs = self(batch["image"])
        terms = compute_losses(
            outputs,
            batch,
            self.pos_weight if self.pos_weight.numel() else None,
            self.loss_cfg["heatmap_sigma"],
            self.loss_cfg.get("label_smoothing", 0.0),
            self.loss_cfg.get("heatmap", "mse"),
            self.loss_cfg.get("multilabel"),
        )
        weights = self.loss_cfg["weights"]
        total = sum(weights.get(name, 1.0) * value for name, value in terms.items())
        if not torch.isfinite(total):
            raise NonFiniteLossError(
                f"non-finite loss at epoch {self.current_epoch}, step {self.global_step}: "
                + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                + ". The last good checkpoint is kept; lower optim.lr or check the data."
            )
        bs = batch["image"].shape[0]
        for name, value in terms.items():
            self.log(f"train/loss_{name}", value, batch_size=bs)
        self.log(f"train/loss{'_' + source if source else ''}", total, prog_bar=True, batch_size=bs)
        return total

    # -- evaluation -------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if "image" not in batch:  # several data sets at once (CombinedLoader): one sub-batch each
            return sum(self._train_one(sub, name) for name, sub in batch.items() if sub is not None)
        return self._train_one(batch, "")

    def _collect(self, batch: dict, collectors: torch.nn.ModuleDict) -> None:
        outputs = self(batch["image"])
        index = batch["index"]
        for head in self.model.heads:
            if head not in batch:
                continue
            logits = outputs[head].float()
            scores = logits.softmax(-1) if head == "category" else logits.sigmoid()
            found = {"index": index, f"{head}_scores": scores, f"{head}_targets": batch[head]}
            if head == "attributes":
                found["attributes_mask"] = batch.get("attributes_mask", torch.ones_like(batch["attributes"]))
            if head == "styles" and "styles_mask" in batch:  # photos without style labels are not scored
                known = batch["styles_mask"][:, 0] > 0
                if not known.any():
                    continue
                found = {k: v[known] for k, v in found.items()}
            collectors[head].update(**found)
        if "parsing" in outputs and "parsing" in batch:
            target = batch["parsing"]
            known = (target != MASK_IGNORE).flatten(1).any(1)  # photos with a mask
            if known.any():
                logits = F.interpolate(
                    outputs["parsing"][known].float(), size=target.shape[-2:], mode="bilinear",
                    align_corners=False,
                )
                collectors["parsing"].update(
                    index=index[known], parsing_pred=logits.argmax(1).to(torch.uint8),
                    parsing_target=target[known].to(torch.uint8),
                )
        if "heatmaps" in outputs and "landmarks" in batch:
            collectors["landmarks"].update(
                index=index,
                landmarks_pred=heatmaps_to_landmarks(outputs["heatmaps"].float()),
                landmarks_target=batch["landmarks"],
                landmarks_visible=batch["landmark_visible"],
            )

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, self.val_scores)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, self.test_scores)

    def on_validation_epoch_end(self) -> None:
        self._finish(self.val_scores, "val")

    def on_test_epoch_end(self) -> None:
        self._finish(self.test_scores, "test")

    def _finish(self, collectors: torch.nn.ModuleDict, stage: str) -> None:
        gathered: dict[str, np.ndarray] = {}
        for group, collector in collectors.items():
            if collector.update_count == 0 or self.trainer.sanity_checking:
                collector.reset()
                continue
            values = {k: v.cpu().numpy() for k, v in collector.compute().items()}
            collector.reset()
            # DDP samplers pad the last batch by repeating images: keep one copy of each index.
            _, first = np.unique(values["index"], return_index=True)
            gathered.update({(f"{group}_index" if k == "index" else k): v[first] for k, v in values.items()})
        if not gathered:
            return
        self.last_outputs = gathered
        self.last_report = build_report(gathered, self.label_names, self.attribute_groups)
        for name, value in flatten_headline(self.last_report).items():
            self.log(f"{stage}/{name}", value)

    # -- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.optim_cfg
        # The pretrained backbone gets ``lr``; everything built fresh on top of it (heads, the landmark
        # branch) gets ``head_lr``.
        head_params = [p for n, p in self.model.named_parameters() if not n.startswith("backbone.")]
        body_params = [p for n, p in self.model.named_parameters() if n.startswith("backbone.")]
        if cfg.get("freeze_backbone"):
            for p in self.model.backbone.parameters():
                p.requires_grad_(False)
        elif cfg.get("freeze_stages"):
            self.model.backbone.freeze_stages(int(cfg["freeze_stages"]))
        body_params = [p for p in body_params if p.requires_grad]
        groups = [{"params": head_params, "lr": cfg["head_lr"]}]
        if body_params:
            groups.append({"params": body_params, "lr": cfg["lr"]})
        optimizer = make_optimizer(groups, cfg)
        scheduler = make_scheduler(optimizer, cfg, self.max_epochs)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def make_optimizer(groups: list[dict], cfg: dict) -> torch.optim.Optimizer:
    """The optimizer ``optim.name`` names (the ``optim`` section is ``cfg``) over parameter groups."""
    name = cfg["name"].lower()
    if name == "adam":
        return torch.optim.Adam(groups, weight_decay=cfg["weight_decay"])
    if name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=cfg["weight_decay"])
    if name == "sgd":
        return torch.optim.SGD(groups, momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    raise ConfigError(f"optim.name must be adam, adamw or sgd, got {cfg['name']!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, max_epochs: int):
    """The per-epoch learning-rate schedule ``optim.scheduler`` names (cosine, step or none)."""
    kind = (cfg.get("scheduler") or "none").lower()
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, max_epochs) / max(max_epochs, 1)))
        )
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg["step_size"], cfg["gamma"])
    if kind in ("none", ""):
        return None
    raise ConfigError(f"optim.scheduler must be cosine, step or none, got {kind!r}")


def build_report(
    gathered: dict[str, np.ndarray], label_names: dict[str, list[str]], attribute_groups=None
) -> dict:
    """The full metrics report for whichever heads were evaluated."""
    counts = [len(v) for k, v in gathered.items() if k.endswith("_index")]
    report: dict = {"num_images": int(max(counts, default=0))}
    if "labels_scores" in gathered:
        report["labels"] = multilabel_report(
            gathered["labels_scores"], gathered["labels_targets"], label_names["labels"]
        )
    if "styles_scores" in gathered:  # soft sub-style targets count as present
        report["styles"] = multilabel_report(
            gathered["styles_scores"], gathered["styles_targets"] > 0, label_names["styles"]
        )
    if "category_scores" in gathered:
        report["category"] = classification_report(
            gathered["category_scores"],
            gathered["category_targets"].astype(np.int64),
            label_names["category"],
        )
    if "parsing_pred" in gathered:
        from fashionlens.garments.groups import GARMENT_GROUPS, GROUP_NAMES

        names = label_names.get("parsing", list(GROUP_NAMES))
        report["parsing"] = parsing_report(
            gathered["parsing_pred"], gathered["parsing_target"], names,
            [g for g in GARMENT_GROUPS if g in names],
        )
    if "attributes_scores" in gathered or "landmarks_pred" in gathered:
        attr_targets = None
        if "attributes_targets" in gathered:
            # unknown (mask 0) entries are neither positive nor negative in the protocol
            attr_targets = np.where(gathered["attributes_mask"] > 0, gathered["attributes_targets"], 0)
        report["deepfashion"] = deepfashion_report(
            attr_scores=gathered.get("attributes_scores"),
            attr_targets=attr_targets,
            attr_groups=attribute_groups,
            lm_pred=gathered.get("landmarks_pred"),
            lm_target=gathered.get("landmarks_target"),
            lm_visible=None if "landmarks_visible" not in gathered else gathered["landmarks_visible"] > 0,
            attr_known=gathered.get("attributes_mask"),
        )
    return report


def flatten_headline(report: dict) -> dict[str, float]:
    """The few scalars worth logging every epoch (and monitoring for the best checkpoint)."""
    out: dict[str, float] = {}
    if "labels" in report:
        r = report["labels"]
        out["mAP"] = r["mAP"]
        out["CF1"] = r["prf"]["CF1"]
        out["OF1"] = r["prf"]["OF1"]
        out.update({k: v for k, v in r["topk"].items()})
    if "styles" in report:
        r = report["styles"]
        out["styles_mAP"] = r["mAP"]
        out.update(
            {f"styles_{k}": v for k, v in r["topk"].items() if k in ("top1_any", "top2_all", "top3_any")}
        )
    if "category" in report:
        out.update({f"cat_{k}": v for k, v in report["category"].items() if k.startswith("top")})
    if "deepfashion" in report:
        d = report["deepfashion"]
        if "attributes" in d:
            out["attr_top3"] = d["attributes"]["all"]["top3"]
            out["attr_top5"] = d["attributes"]["all"]["top5"]
            out["attr_mAP"] = d["attributes"]["all"].get("mAP")
        if "landmarks" in d:
            out["lm_NE"] = d["landmarks"]["NE"]
    if "parsing" in report:
        p = report["parsing"]
        out["parse_mIoU"], out["parse_pixel_acc"] = p["mIoU"], p["pixel_accuracy"]
        if "garments" in p:
            out["garment_recall"] = p["garments"]["recall"]
            out["garment_precision"] = p["garments"]["precision"]
    return {
        k: float(v) for k, v in out.items() if v is not None and not (isinstance(v, float) and math.isnan(v))
    }
