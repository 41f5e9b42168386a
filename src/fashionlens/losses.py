"""Losses of every head, returned as a dict of named terms that the engine weights, sums and logs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fashionlens.data.transforms import MASK_IGNORE
from fashionlens.errors import ConfigError


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


def check_heatmap_loss(kind: str) -> None:
    """Raise :class:`ConfigError` (a ValueError) naming ``loss.heatmap`` unless ``kind`` is a heatmap loss."""
    if kind not in HEATMAP_LOSSES:
        raise ConfigError(f"loss.heatmap must be one of {', '.join(HEATMAP_LOSSES)}, got {kind!r}")


def heatmap_loss(pred: torch.Tensor, landmarks: torch.Tensor, visible: torch.Tensor, sigma: float,
                 kind: str = "mse") -> torch.Tensor:  # fmt: skip
    """Heatmap loss over visible landmarks only, averaged over them.

    ``"mse"`` (seed A, Liu & Lu): the mean squared error between the predicted map and a Gaussian of
    peak 1 around the landmark. ``"softmax"``: each map is a distribution over its positions and the
    loss is its cross-entropy with the Gaussian normalised to sum 1; its gradient does not vanish
    when the maps are near zero, where the MSE of an all-zero map is already small (about
    ``pi * sigma^2 / (h * w)``), so it learns in far fewer steps. The landmark is the map's peak either way.
    """
    check_heatmap_loss(kind)
    target = gaussian_targets(landmarks, pred.shape[-2:], sigma)  # (B, L, h, w)
    if kind == "mse":
        per_map = ((pred.float() - target) ** 2).mean(dim=(2, 3))  # (B, L)
    else:
        t = target.flatten(2)
        t = t / t.sum(-1, keepdim=True).clamp_min(1e-12)  # (B, L, h*w), sums to 1
        per_map = -(t * torch.log_softmax(pred.float().flatten(2), dim=-1)).sum(-1)  # (B, L)
    mask = visible.float()
    return (per_map * mask).sum() / mask.sum().clamp_min(1.0)


def weighted_bce(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None, pos_weight: torch.Tensor | None
) -> torch.Tensor:
    """Binary cross-entropy with per-attribute positive weights; unknown entries (mask 0) ignored."""
    loss = F.binary_cross_entropy_with_logits(
        logits.float(), targets.float(), pos_weight=pos_weight, reduction="none"
    )
    if mask is None:
        return loss.mean()
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


MULTILABEL_DEFAULTS = {
    "kind": "bce",
    "gamma_neg": 4.0,
    "gamma_pos": 0.0,
    "clip": 0.05,
    "gamma": 2.0,
    "alpha": None,
    "detach_focus": True,
}
MULTILABEL_KINDS = ("bce", "asl", "focal")


def _masked_mean(loss: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return loss.mean()
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    detach_focus: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """ASL (Ridnik et al., ICCV 2021), the mean over the known entries.

    With ``p = sigmoid(logit)`` and the shifted negative probability ``p_m = max(p - clip, 0)``:
    a positive costs ``-(1 - p)^gamma_pos log p``, a negative ``-p_m^gamma_neg log(1 - p_m)``. The
    shift discards easy negatives (p <= clip cost nothing) and the focusing down-weights the rest,
    so the many negative labels of a photo no longer swamp its few positives.

    Args:
        logits: (B, C).
        targets: (B, C) 0/1.
        mask: (B, C), 1 where the target is known (None: all known).
        gamma_neg, gamma_pos: focusing exponents of negatives and positives.
        clip: probability shift of the negatives (0 for none).
        detach_focus: no gradient through the focusing weights, as the reference training recipe
            (``disable_torch_grad_focal_loss=True``).
        eps: floor of the probabilities inside the logarithms.

    The reference sums over labels and images; a mean differs by a constant factor, which Adam's
    updates do not see and which keeps the loss on the scale of the other heads' terms.
    """
    t = targets.float()
    p = torch.sigmoid(logits.float())
    p_neg = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p  # 1 - p_m
    loss = t * torch.log(p.clamp(min=eps)) + (1 - t) * torch.log(p_neg.clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_focus):
            pt = p * t + p_neg * (1 - t)  # probability of the right answer
            # base floored: 0^0 has a NaN gradient when the weights are not detached
            weight = torch.pow((1 - pt).clamp_min(1e-12), gamma_pos * t + gamma_neg * (1 - t))
        loss = loss * weight
    return _masked_mean(-loss, mask)


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al., 2017), the mean over the known entries.

    ``-alpha_t (1 - p_t)^gamma log p_t`` with ``p_t`` the probability of the right answer and
    ``alpha_t = alpha`` for positives, ``1 - alpha`` for negatives (no weighting when alpha is None).
    """
    t = targets.float()
    x = logits.float()
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p = torch.sigmoid(x)
    pt = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - pt).clamp_min(1e-12) ** gamma  # floored: 0^0 has a NaN gradient
    if alpha is not None:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    return _masked_mean(loss, mask)


def check_multilabel_loss(settings: dict | None) -> dict:
    """``loss.multilabel`` over its defaults, checked; raises :class:`ConfigError` (a ValueError) naming the
    bad setting."""
    s = {**MULTILABEL_DEFAULTS, **(settings or {})}
    unknown = set(s) - set(MULTILABEL_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"unknown loss.multilabel setting(s) {sorted(unknown)}; known: {', '.join(MULTILABEL_DEFAULTS)}"
        )
    if s["kind"] not in MULTILABEL_KINDS:
        raise ConfigError(
            f"loss.multilabel.kind must be one of {', '.join(MULTILABEL_KINDS)}, got {s['kind']!r}"
        )

    def number(key: str) -> float:
        try:
            return float(s[key])
        except (TypeError, ValueError):
            raise ConfigError(f"loss.multilabel.{key} must be a number, got {s[key]!r}") from None

    for key in ("gamma_neg", "gamma_pos", "gamma"):
        if number(key) < 0:
            raise ConfigError(f"loss.multilabel.{key} must be >= 0, got {s[key]!r}")
    if not 0 <= number("clip") < 1:
        raise ConfigError(f"loss.multilabel.clip must be in [0, 1), got {s['clip']!r}")
    if s["alpha"] is not None and not 0 <= number("alpha") <= 1:
        raise ConfigError(f"loss.multilabel.alpha must be null or in [0, 1], got {s['alpha']!r}")
    return s


def multilabel_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    settings: dict | None = None,
) -> torch.Tensor:
    """The configured multi-label loss (``loss.multilabel``): bce (with ``pos_weight``), asl or focal."""
    s = check_multilabel_loss(settings)
    if s["kind"] == "asl":
        return asymmetric_loss(
            logits,
            targets,
            mask,
            float(s["gamma_neg"]),
            float(s["gamma_pos"]),
            float(s["clip"]),
            bool(s["detach_focus"]),
        )
    if s["kind"] == "focal":
        return focal_loss(
            logits, targets, mask, float(s["gamma"]), None if s["alpha"] is None else float(s["alpha"])
        )
    return weighted_bce(logits, targets, mask, pos_weight)


def weighted_mean_bce(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """BCE averaged over *all* entries, each multiplied by its weight (1 without ``weights``).

    Unlike :func:`weighted_bce`'s mask, the weights are not renormalised: a sub-batch of product
    photos whose implied tags weigh 0.5 contributes half as much as a fully labelled one.
    """
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return loss.mean() if weights is None else (loss * weights).mean()


def pos_weight_from_targets(
    targets: torch.Tensor, mask: torch.Tensor | None = None, max_weight: float = 100.0
) -> torch.Tensor:
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
    multilabel: dict | None = None,
) -> dict[str, torch.Tensor]:
    """One unweighted loss term per head whose target is in the batch.

    "category": cross-entropy (with ``label_smoothing``); "labels" and "styles": the ``multilabel`` loss
    (BCE by default, each entry weighted by ``labels_mask`` / ``styles_mask`` when the batch has one:
    implied tags, photos whose styles are unknown); "attributes":
    the same loss over the known entries (BCE weighted by ``pos_weight``); "landmarks": heatmap L2 (or
    spatial cross-entropy) over visible landmarks; "visibility": BCE of the landmark visibility logits;
    "parsing": per-pixel cross-entropy over the labelled pixels (a batch without any has no term).
    A head without targets in this batch is skipped,
    so one model can learn from data sets that label different heads.
    """
    losses: dict[str, torch.Tensor] = {}
    if "category" in outputs and "category" in batch:
        losses["category"] = F.cross_entropy(
            outputs["category"].float(), batch["category"], label_smoothing=label_smoothing
        )
    for head in ("labels", "styles"):
        if head in outputs and head in batch:
            weights = batch.get(f"{head}_mask")
            if check_multilabel_loss(multilabel)["kind"] == "bce":
                losses[head] = weighted_mean_bce(outputs[head], batch[head], weights)
            else:  # ASL / focal: the weights act as a mask (a mean over the weighted entries)
                losses[head] = multilabel_loss(outputs[head], batch[head], weights, settings=multilabel)
    if "attributes" in outputs and "attributes" in batch:
        losses["attributes"] = multilabel_loss(
            outputs["attributes"], batch["attributes"], batch.get("attributes_mask"), pos_weight, multilabel
        )
    if "heatmaps" in outputs and "landmarks" in batch:
        losses["landmarks"] = heatmap_loss(
            outputs["heatmaps"], batch["landmarks"], batch["landmark_visible"], heatmap_sigma, heatmap
        )
    if "landmark_visibility" in outputs and "landmark_visible" in batch:
        losses["visibility"] = F.binary_cross_entropy_with_logits(
            outputs["landmark_visibility"].float(), batch["landmark_visible"].float()
        )
    if "parsing" in outputs and "parsing" in batch and bool((batch["parsing"] != MASK_IGNORE).any()):
        losses["parsing"] = parsing_loss(outputs["parsing"], batch["parsing"])
    return losses


def parsing_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy of (B, K, h, w) logits, upsampled to the (B, H, W) target, over its labelled
    pixels (:data:`MASK_IGNORE` elsewhere)."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), target.long(), ignore_index=MASK_IGNORE)
