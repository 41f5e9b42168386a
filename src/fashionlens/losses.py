"""Losses of every head, returned as a dict of named terms that the engine weights, sums and logs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_targets(landmarks: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Gaussian heatmaps (B, L, h, w) with peak 1 at each landmark.

    Args:
        landmarks: (B, L, 2) as (x, y) normalised to [0, 1].
        size: (h, w) of the heatmaps.
        sigma: standard deviation in heatmap pixels.
    """
    h, w = size
    ys = (torch.arange(h, device=landmarks.device, dtype=landmarks.dtype) + 0.5)[:, None]  # (h, 1)
    xs = (torch.arange(w, device=landmarks.device, dtype=landmarks.dtype) + 0.5)[None, :]  # (1, w)
    cx = (landmarks[..., 0] * w)[..., None, None]  # (B, L, 1, 1)
    cy = (landmarks[..., 1] * h)[..., None, None]
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


HEATMAP_LOSSES = ("mse", "softmax")


def heatmap_loss(pred: torch.Tensor, landmarks: torch.Tensor, visible: torch.Tensor, sigma: float,
                 kind: str = "mse") -> torch.Tensor:  # fmt: skip
    """Heatmap loss over visible landmarks only, averaged over them.

    ``"mse"`` (seed A, Liu & Lu): the mean squared error between the predicted map and a Gaussian of
    peak 1 around the landmark. ``"softmax"``: each map is a distribution over its positions and the
    loss is its cross-entropy with the Gaussian normalised to sum 1; its gradient does not vanish
    when the maps are near zero, where the MSE of an all-zero map is already small (about
    ``pi * sigma^2 / (h * w)``), so it learns in far fewer steps. The landmark is the map's peak either way.
    """
    if kind not in HEATMAP_LOSSES:
        raise ValueError(f"heatmap loss must be one of {HEATMAP_LOSSES}, got {kind!r}")
    target = gaussian_targets(landmarks, pred.shape[-2:], sigma)  # (B, L, h, w)
    if kind == "mse":
        per_map = ((pred.float() - target) ** 2).mean(dim=(2, 3))  # (B, L)
    else:
        t = target.flatten(2)
        t = t / t.sum(-1, keepdim=True).clamp_min(1e-12)  # (B, L, h*w), sums to 1
        per_map = -(t * torch.log_softmax(pred.float().flatten(2), dim=-1)).sum(-1)  # (B, L)
    mask = visible.float()
    return (per_map * mask).sum() / mask.sum().clamp_min(1.0)


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None, pos_weight: torch.Tensor | None) -> torch.Tensor:
    """Binary cross-entropy with per-attribute positive weights; unknown entries (mask 0) ignored."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=pos_weight, reduction="none")
    if mask is None:
        return loss.mean()
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def weighted_mean_bce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """BCE averaged over *all* entries, each multiplied by its weight (1 without ``weights``).

    Unlike :func:`weighted_bce`'s mask, the weights are not renormalised: a sub-batch of product
    photos whose implied tags weigh 0.5 contributes half as much as a fully labelled one.
    """
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return loss.mean() if weights is None else (loss * weights).mean()


def pos_weight_from_targets(targets: torch.Tensor, mask: torch.Tensor | None = None, max_weight: float = 100.0) -> torch.Tensor:
    """pos_weight[c] = negatives / positives of attribute c in the training set, clipped to [1, max]."""
    targets = targets.float()
    valid = torch.ones_like(targets) if mask is None else mask.float()
    pos = (targets * valid).sum(0)
    neg = ((1 - targets) * valid).sum(0)
    return (neg / pos.clamp_min(1.0)).clamp(1.0, max_weight)


def compute_losses(
    outputs: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    pos_weight: torch.Tensor | None = None,
    heatmap_sigma: float = 1.5,
    label_smoothing: float = 0.0,
    heatmap: str = "mse",
) -> dict[str, torch.Tensor]:
    """One unweighted loss term per head whose target is in the batch.

    "category": cross-entropy (with ``label_smoothing``); "labels": BCE; "attributes": weighted BCE over known entries;
    "landmarks": heatmap L2 over visible landmarks; "visibility": BCE of the landmark visibility logits.
    A head without targets in this batch is skipped,
    so one model can learn from data sets that label different heads.
    """
    losses: dict[str, torch.Tensor] = {}
    if "category" in outputs and "category" in batch:
        losses["category"] = F.cross_entropy(outputs["category"].float(), batch["category"], label_smoothing=label_smoothing)
    if "labels" in outputs and "labels" in batch:
        losses["labels"] = weighted_mean_bce(outputs["labels"], batch["labels"], batch.get("labels_mask"))
    if "attributes" in outputs and "attributes" in batch:
        losses["attributes"] = weighted_bce(outputs["attributes"], batch["attributes"], batch.get("attributes_mask"), pos_weight)
    if "heatmaps" in outputs and "landmarks" in batch:
        losses["landmarks"] = heatmap_loss(outputs["heatmaps"], batch["landmarks"], batch["landmark_visible"], heatmap_sigma,
                                           heatmap)
    if "landmark_visibility" in outputs and "landmark_visible" in batch:
        losses["visibility"] = F.binary_cross_entropy_with_logits(outputs["landmark_visibility"].float(),
                                                                  batch["landmark_visible"].float())
    return losses
