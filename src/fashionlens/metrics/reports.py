"""Evaluation reports: the metric bundles the evaluator writes, as plain JSON-serialisable dicts.

Each report only calls the functions of :mod:`fashionlens.metrics.functional`. Values are Python
floats/ints; a value that does not exist (AP of a label with no positive, NE of a landmark that is
never visible, recall of a class with no image) is ``None`` so the dict stays valid strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fashionlens.data.deepfashion import ATTRIBUTE_TYPES
from fashionlens.metrics.functional import (
    ArrayLike,
    attribute_recall_at_k,
    average_precision,
    confusion_matrix,
    landmark_detection_rate,
    landmark_normalized_error,
    multilabel_prf,
    per_label_topk_recall,
    segmentation_scores,
    topk_accuracy,
    topk_recall,
)
from fashionlens.metrics.inputs import as_binary, as_labels, as_scores, to_numpy

__all__ = [
    "ATTRIBUTE_TYPES", "classification_report", "deepfashion_report", "multilabel_report", "parsing_report"
]


def _float_or_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _check_names(label_names: Sequence[str], num: int, what: str) -> list[str]:
    names = [str(n) for n in label_names]
    if len(names) != num:
        raise ValueError(f"label_names has {len(names)} entries but {what} has {num} columns")
    if len(set(names)) != len(names):
        raise ValueError("label_names must be unique (they become dict keys)")
    return names


def multilabel_report(
    scores: ArrayLike,
    targets: ArrayLike,
    label_names: Sequence[str],
    ks: Sequence[int] = (1, 2, 3),
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Multi-label style report: ML-GCN mAP/PRF and seed B top-k recalls.

    Args:
        scores: ``(N, C)`` probabilities in [0, 1] (sigmoid already applied).
        targets: ``(N, C)`` 0/1 ground truth.
        label_names: ``C`` unique label names (keys of the per-label dicts).
        ks: the ``k`` of the top-k recalls; each gives ``top{k}_all`` and ``top{k}_any``.
        threshold: probability threshold of the PRF metrics.

    Returns:
        ``{"mAP", "AP": {label: ap | None}, "prf", "prf_top3", "topk": {"top{k}_all",
        "top{k}_any"}, "per_label_top2_all": {label: {"recall", "support"}}, "num_images",
        "num_labels"}``; ``mAP`` is ``None`` when no label has a positive, a per-label recall is
        ``None`` when its support is 0.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[0.9, 0.6, 0.1], [0.2, 0.7, 0.4]])
        >>> report = multilabel_report(probs, np.array([[1, 0, 0], [0, 1, 0]]), ["a", "b", "c"])
        >>> report["mAP"], report["AP"]["c"], report["topk"]["top1_all"]
        (1.0, None, 1.0)
    """
    probs = as_scores(scores)
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise ValueError(
            f"scores must be probabilities in [0, 1] (apply sigmoid first), found values in "
            f"[{probs.min():.3g}, {probs.max():.3g}]"
        )
    truth = as_binary(targets, "targets", probs.shape)
    names = _check_names(label_names, probs.shape[1], "scores")
    ap = average_precision(probs, truth)
    exists = ~np.isnan(ap)
    topk: dict[str, float] = {}
    for k in ks:
        topk[f"top{k}_all"] = topk_recall(probs, truth, k, mode="all")
        topk[f"top{k}_any"] = topk_recall(probs, truth, k, mode="any")
    per_label = per_label_topk_recall(probs, truth, 2, mode="all")
    return {
        "mAP": float(ap[exists].mean()) if exists.any() else None,
        "AP": {name: _float_or_none(ap[c]) for c, name in enumerate(names)},
        "prf": multilabel_prf(probs, truth, threshold=threshold),
        "prf_top3": multilabel_prf(probs, truth, threshold=threshold, top_k=3),
        "topk": topk,
        "per_label_top2_all": {
            name: {"recall": value if support else None, "support": support}
            for name, (value, support) in zip(names, per_label.values(), strict=True)
        },
        "num_images": int(probs.shape[0]),
        "num_labels": int(probs.shape[1]),
    }


def classification_report(
    scores: ArrayLike, labels: ArrayLike, label_names: Sequence[str], ks: Sequence[int] = (1, 3, 5)
) -> dict[str, Any]:
    """Single-label report: top-k accuracies, per-class recall and the top-1 confusion matrix.

    Args:
        scores: ``(N, C)`` class scores.
        labels: ``(N,)`` integer class indices.
        label_names: ``C`` unique class names.
        ks: the ``k`` of ``top{k}``; values with ``k > C`` are left out.

    Returns:
        ``{"top{k}", "per_class_recall": {name: recall | None}, "confusion": [[int]], "num_images"}``
        where ``confusion[i][j]`` counts images of true class ``i`` whose top-1 prediction is ``j``
        (ties to the lower index) and a class without images has recall ``None``.

    Example:
        >>> import numpy as np
        >>> scores = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
        >>> report = classification_report(scores, np.array([0, 1, 1]), ["tee", "dress"], ks=(1, 3))
        >>> report["top1"], "top3" in report, report["confusion"]
        (0.6666666666666666, False, [[1, 0], [1, 1]])
    """
    s = as_scores(scores)
    names = _check_names(label_names, s.shape[1], "scores")
    out: dict[str, Any] = {f"top{k}": topk_accuracy(s, labels, k) for k in ks if k <= s.shape[1]}
    y = as_labels(labels, s.shape)
    num = s.shape[1]
    confusion = np.zeros((num, num), dtype=np.int64)
    np.add.at(confusion, (y, s.argmax(axis=1)), 1)  # argmax takes the first (lowest) index on ties
    support = confusion.sum(axis=1)
    out["per_class_recall"] = {
        name: float(confusion[c, c] / support[c]) if support[c] else None for c, name in enumerate(names)
    }
    out["confusion"] = confusion.tolist()
    out["num_images"] = int(s.shape[0])
    return out


def _both_or_neither(**pair: Any) -> bool:
    given = [name for name, value in pair.items() if value is not None]
    if given and len(given) != len(pair):
        raise ValueError(f"{' and '.join(pair)} must be given together, got only {given[0]}")
    return bool(given)


def _attribute_section(
    scores: ArrayLike,
    targets: ArrayLike,
    groups: ArrayLike | None,
    ks: Sequence[int],
    known: ArrayLike | None = None,
) -> dict[str, dict[str, float]]:
    s = as_scores(scores, "attr_scores")
    t = to_numpy(targets, "attr_targets")
    if t.shape != s.shape:
        raise ValueError(
            f"attr_scores has shape {tuple(s.shape)} but attr_targets has shape {tuple(t.shape)}"
        )
    positive = t == 1  # DeepFashion: 1 positive, -1 negative, 0 unknown
    if known is None:  # -1/0/1 coding: 0 is unknown; 0/1 coding: every entry is known
        known = t != 0 if (t < 0).any() else np.ones(t.shape, dtype=bool)
    known = to_numpy(known, "attr_known") > 0
    ap = average_precision(s, positive, known)

    def mean_ap(cols) -> float | None:
        values = ap[cols][~np.isnan(ap[cols])]
        return float(values.mean()) if values.size else None

    section = {
        "all": {**{f"top{k}": attribute_recall_at_k(s, positive, k) for k in ks}, "mAP": mean_ap(slice(None))}
    }
    if groups is None:
        return section
    g = to_numpy(groups, "attr_groups")
    unknown = sorted(set(np.unique(g).tolist()) - set(ATTRIBUTE_TYPES))
    if unknown:
        raise ValueError(
            f"attr_groups must hold attribute types {min(ATTRIBUTE_TYPES)}..{max(ATTRIBUTE_TYPES)}, found "
            f"{unknown}"
        )
    per_k = {k: attribute_recall_at_k(s, positive, k, groups=g) for k in ks}  # {k: {type: recall}}
    present = set(np.unique(g).tolist())
    for group, name in ATTRIBUTE_TYPES.items():
        if group in present:  # a type with no attribute would only give a meaningless 0/0
            section[name] = {**{f"top{k}": per_k[k][group] for k in ks}, "mAP": mean_ap(g == group)}
    return section


def deepfashion_report(
    cat_scores: ArrayLike | None = None,
    cat_labels: ArrayLike | None = None,
    attr_scores: ArrayLike | None = None,
    attr_targets: ArrayLike | None = None,
    attr_groups: ArrayLike | None = None,
    lm_pred: ArrayLike | None = None,
    lm_target: ArrayLike | None = None,
    lm_visible: ArrayLike | None = None,
    ks: Sequence[int] = (3, 5),
    detection_threshold: float = 0.1,
    attr_known: ArrayLike | None = None,
) -> dict[str, Any]:
    """DeepFashion Category and Attribute Prediction report (only the parts whose inputs are given).

    Args:
        cat_scores: ``(N, 50)`` category scores; with ``cat_labels`` ``(N,)`` class indices.
        cat_labels: see ``cat_scores``.
        attr_scores: ``(N, 1000)`` attribute scores; with ``attr_targets`` in DeepFashion's -1/0/1
            (or 0/1) coding, only 1 counting as positive.
        attr_targets: see ``attr_scores``.
        attr_groups: optional ``(1000,)`` attribute types 1..6 (texture, fabric, shape, part, style,
            colour).
        lm_pred: ``(N, L, 2)`` predicted landmarks in input-normalised coordinates.
        lm_target: ``(N, L, 2)`` true landmarks, same units.
        lm_visible: ``(N, L)`` bool visibility (``True`` = visible); all visible if omitted.
        ks: the ``k`` of ``top{k}`` for category accuracy and attribute recall.
        detection_threshold: distance threshold of the landmark detection rate.
        attr_known: optional ``(N, A)`` mask of the known attribute entries (default: the nonzero
            entries of -1/0/1 targets, else all); attribute APs are computed over the known ones.

    Returns:
        ``{"category": {"top3", "top5"}, "attributes": {"all": {"top3", "top5", "mAP"}, "texture": {...},
        ...}, "landmarks": {"NE", "NE_per_landmark", "detection_rate"}}``; NE values are ``None`` where no
        landmark is visible.

    Example:
        >>> import numpy as np
        >>> report = deepfashion_report(cat_scores=np.eye(6), cat_labels=np.arange(6), ks=(1, 3))
        >>> report
        {'category': {'top1': 1.0, 'top3': 1.0}}
    """
    report: dict[str, Any] = {}
    if _both_or_neither(cat_scores=cat_scores, cat_labels=cat_labels):
        report["category"] = {f"top{k}": topk_accuracy(cat_scores, cat_labels, k) for k in ks}
    if _both_or_neither(attr_scores=attr_scores, attr_targets=attr_targets):
        report["attributes"] = _attribute_section(attr_scores, attr_targets, attr_groups, ks, attr_known)
    elif attr_groups is not None:
        raise ValueError("attr_groups given without attr_scores and attr_targets")
    if _both_or_neither(lm_pred=lm_pred, lm_target=lm_target):
        if lm_visible is None:
            lm_visible = np.ones(to_numpy(lm_pred, "lm_pred").shape[:2], dtype=bool)
        per, mean = landmark_normalized_error(lm_pred, lm_target, lm_visible)
        report["landmarks"] = {
            "NE": _float_or_none(mean),
            "NE_per_landmark": [_float_or_none(v) for v in per.tolist()],
            "detection_rate": landmark_detection_rate(lm_pred, lm_target, lm_visible, detection_threshold),
        }
    elif lm_visible is not None:
        raise ValueError("lm_visible given without lm_pred and lm_target")
    return report


def parsing_report(
    pred: np.ndarray,
    target: np.ndarray,
    group_names: Sequence[str],
    garment_groups: Sequence[str] | None = None,
    ignore: int = 255,
) -> dict[str, Any]:
    """Per-pixel and per-garment scores of predicted garment-group maps.

    Args:
        pred: (N, H, W) predicted group per pixel.
        target: (N, H, W) true group per pixel, ``ignore`` where unlabelled.
        group_names: the K group names (index order).
        garment_groups: the groups that are garments; given, the report also has ``garments``:
            instances of each map (``fashionlens.garments.garments_from_labels``, its default rule) matched
            to the true ones (box IoU >= 0.5, same group; truth: garments covering >= 2 % of the photo).

    Returns:
        ``{"num_images", "pixel_accuracy", "mIoU", "iou": {group: IoU or None}, "garments": {...}}``.
    """
    # the collectors hand back floats
    pred, target = np.asarray(pred).astype(np.int64), np.asarray(target).astype(np.int64)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must both be (N, H, W); got {pred.shape} and {target.shape}")
    k = len(group_names)
    confusion = sum((confusion_matrix(p, t, k, ignore) for p, t in zip(pred, target, strict=True)),
                    np.zeros((k, k), dtype=np.int64))
    scores = segmentation_scores(confusion)
    report: dict[str, Any] = {
        "num_images": int(len(pred)),
        "pixel_accuracy": _float_or_none(scores["pixel_accuracy"]),
        "mIoU": _float_or_none(scores["mIoU"]),
        "iou": {name: _float_or_none(v) for name, v in zip(group_names, scores["iou"], strict=True)},
    }
    if garment_groups is not None:
        from fashionlens.garments.groups import GARMENT_RULE
        from fashionlens.garments.instances import garments_from_labels
        from fashionlens.garments.matching import garment_detection_report, match_garments

        per_photo = []
        for p, t in zip(pred, target, strict=True):
            known = t != ignore
            found = garments_from_labels(np.where(known, p, 0), group_names, garment_groups, **GARMENT_RULE)
            truth = garments_from_labels(np.where(known, t, 0), group_names, garment_groups, **GARMENT_RULE)
            per_photo.append(match_garments(found, truth))
        report["garments"] = _none_for_nan(garment_detection_report(per_photo))
    return report


def _none_for_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _none_for_nan(v) for k, v in value.items()}
    if isinstance(value, float):
        return _float_or_none(value)
    return value
