"""Calibrating a model's outputs on validation photos: a category temperature and a tag threshold.

- **Temperature scaling** (Guo et al., 2017): one scalar ``T`` divides the category logits, chosen to
  minimise the negative log-likelihood of the validation labels. It changes no top-1 answer, only how
  confident the scores are; :func:`fashionlens.metrics.expected_calibration_error` measures the effect.
- **Tag threshold**: one threshold for every tag, chosen on validation photos of both kinds: street
  photos with annotated tags (CCP) and single-garment product photos with the tags their class
  implies (:mod:`fashionlens.data.product_tags`; "acceptable" tags count neither way). It maximises
  the micro-averaged F1 (OF1) over both kinds together, among the thresholds whose product-photo
  precision is at least ``min_precision``. One threshold rather than 56: most tags have a handful of
  positives in a validation split, too few to set their own.
"""

from __future__ import annotations

import numpy as np

from fashionlens.data.product_tags import correct_tags


def _nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    z = logits / t
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature minimising the NLL of ``labels`` (N,) under ``softmax(logits / T)`` (N, C).

    A log-spaced grid, then a finer grid around its best point (the NLL is smooth and unimodal in
    log T for practical logits): deterministic, no optimiser settings.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    grid = np.geomspace(lo, hi, 200)
    best = grid[int(np.argmin([_nll(logits, labels, t) for t in grid]))]
    fine = np.geomspace(best / 1.05, best * 1.05, 101)
    return float(fine[int(np.argmin([_nll(logits, labels, t) for t in fine]))])


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def returned_tags(scores: np.ndarray, threshold: float, min_tags: int = 0) -> np.ndarray:
    """(N, C) bool: the tags a Predictor returns, those at or above ``threshold`` and at least the
    ``min_tags`` most likely ones of each photo (``top_k`` aside)."""
    scores = np.asarray(scores)
    returned = scores >= threshold
    if min_tags > 0:
        top = np.argsort(-scores, axis=1, kind="stable")[:, :min_tags]
        returned[np.arange(len(scores))[:, None], top] = True
    return returned


def product_tag_check(scores: np.ndarray, classes: np.ndarray, class_names: list[str], tag_names: list[str],
                      threshold: float, min_tags: int = 0) -> dict:  # fmt: skip
    """How a tagger does on single-garment product photos.

    Args:
        scores: (N, C) tag probabilities.
        classes: (N,) each photo's garment class (index into ``class_names``).
        class_names, tag_names: the vocabularies.
        threshold: a tag is returned when its probability reaches this.
        min_tags: a photo's most likely tags returned whatever their probability (the Predictor's
            ``min_tags``).

    Returns:
        ``precision`` (returned tags that are correct for the photo's class: present or acceptable,
        see :func:`fashionlens.data.product_tags.correct_tags`), ``tags_per_photo``,
        ``at_least_one_correct`` (fraction of photos with a correct tag among those returned),
        ``no_tag`` (fraction with none returned), ``num_photos``; and ``per_class`` precision.
    """
    returned = returned_tags(scores, threshold, min_tags)  # (N, C)
    right = np.array(
        [[t in correct_tags(class_names[k]) for t in tag_names] for k in range(len(class_names))]
    )
    good = returned & right[np.asarray(classes)]
    n_returned = int(returned.sum())
    per_class = {}
    for k, name in enumerate(class_names):
        sel = np.asarray(classes) == k
        if sel.any():
            per_class[name] = float(good[sel].sum() / max(returned[sel].sum(), 1))
    return {
        "precision": float(good.sum() / n_returned) if n_returned else float("nan"),
        "tags_per_photo": float(returned.sum(axis=1).mean()),
        "at_least_one_correct": float(good.any(axis=1).mean()),
        "no_tag": float((~returned.any(axis=1)).mean()),
        "num_photos": int(len(returned)),
        "per_class": per_class,
    }


def choose_tag_threshold(street_scores: np.ndarray, street_targets: np.ndarray, product_scores: np.ndarray,
                         product_targets: np.ndarray, product_weights: np.ndarray,
                         min_precision: float = 0.85, grid: np.ndarray | None = None,
                         min_tags: int = 0) -> tuple[float, dict]:  # fmt: skip
    """The one tag threshold for both kinds of photo (see the module docstring).

    Args:
        street_scores, street_targets: (N, C) probabilities and 0/1 tags of annotated street photos.
        product_scores, product_targets, product_weights: (M, C) probabilities, implied 0/1 tags and
            their weights (0 = acceptable: ignored).
        min_precision: the product-photo precision the threshold must reach, counted as
            :func:`product_tag_check` does (a returned acceptable tag is correct). In the OF1 an
            acceptable tag counts neither way.
        grid: candidate thresholds (default 0.05, 0.0625, ..., 0.95).
        min_tags: each photo's most likely tags count as returned whatever the threshold (the
            Predictor's ``min_tags``), so the threshold is chosen for the policy that will run.

    Returns:
        ``(threshold, info)``: info has the combined OF1, the product precision at the threshold,
        and whether the precision goal could be met (else the threshold of the highest precision).
    """
    grid = np.round(np.arange(0.05, 0.951, 0.0125), 4) if grid is None else np.asarray(grid)
    known = np.asarray(product_weights) > 0
    rows = []
    for t in grid:
        sp, returned = returned_tags(street_scores, t, min_tags), returned_tags(product_scores, t, min_tags)
        pp = returned & known
        tp = (sp & (street_targets > 0)).sum() + (pp & (product_targets > 0)).sum()
        fp = (sp & (street_targets == 0)).sum() + (pp & (product_targets == 0)).sum()
        fn = (~sp & (street_targets > 0)).sum() + (~pp & known & (product_targets > 0)).sum()
        of1 = 2 * tp / max(2 * tp + fp + fn, 1)
        # precision as product_tag_check counts it: a returned acceptable tag is a correct one
        n_returned, n_wrong = returned.sum(), (pp & (product_targets == 0)).sum()
        rows.append((float(t), float(of1), float(1 - n_wrong / n_returned) if n_returned else 1.0))
    ok = [r for r in rows if r[2] >= min_precision]
    best = max(ok, key=lambda r: (r[1], -r[0])) if ok else max(rows, key=lambda r: (r[2], r[1]))
    return best[0], {"OF1": best[1], "product_precision": best[2], "precision_goal_met": bool(ok)}


def choose_f1_threshold(scores: np.ndarray, targets: np.ndarray, known: np.ndarray | None = None,
                        min_labels: int = 0,
                        grid: np.ndarray | None = None) -> tuple[float, dict]:  # fmt: skip
    """The threshold of best overall F1 (OF1) for a multi-label head, for the policy the Predictor runs.

    Used for the sub styles (``min_labels=1``: the main style, each photo's most likely, is always
    returned) and the garment attributes (``known``: unknown entries count neither way).

    Args:
        scores: (N, C) probabilities.
        targets: (N, C) 0/1 truth (soft targets > 0 count as present).
        known: optional (N, C) mask of the entries that are known.
        min_labels: each photo's most likely labels count as returned whatever the threshold.
        grid: candidate thresholds (default 0.05, 0.0625, ..., 0.95).

    Returns:
        ``(threshold, {"OF1", "OP", "OR", "labels_per_photo"})`` at that threshold (ties: the lower one).
    """
    grid = np.round(np.arange(0.05, 0.951, 0.0125), 4) if grid is None else np.asarray(grid)
    truth = np.asarray(targets) > 0
    valid = np.ones(truth.shape, dtype=bool) if known is None else np.asarray(known) > 0
    best: tuple[float, dict] | None = None
    for t in grid:
        returned = returned_tags(scores, float(t), min_labels) & valid
        tp, fp, fn = (returned & truth).sum(), (returned & ~truth).sum(), (~returned & truth & valid).sum()
        row = {
            "OF1": float(2 * tp / max(2 * tp + fp + fn, 1)),
            "OP": float(tp / max(tp + fp, 1)),
            "OR": float(tp / max(tp + fn, 1)),
            "labels_per_photo": float(returned.sum(axis=1).mean()),
        }
        if best is None or row["OF1"] > best[1]["OF1"]:
            best = (float(t), row)
    return best
