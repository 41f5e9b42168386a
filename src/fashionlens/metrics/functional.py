"""Functional metrics: each metric of the seeds' evaluation protocols once, as a pure function.

Every function accepts numpy arrays or torch tensors (any float dtype, including fp16/bf16, on any
device) and returns Python floats (fractions in [0, 1], not percent) unless documented otherwise.

Conventions shared by all ranking metrics:

* Ranking ties are broken by the lower label index (as a stable sort on descending score would).
* ``targets`` are 0/1 (or bool) arrays of shape ``(N, C)``; any other value raises ``ValueError``
  (DeepFashion's -1/0/1 attribute files must be turned into ``targets == 1`` first).
* A fraction whose denominator is zero (0/0) is reported as 0.0.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from fashionlens.metrics.inputs import as_binary, as_labels, as_scores, to_numpy

ArrayLike = np.ndarray | torch.Tensor

__all__ = [
    "expected_calibration_error",
    "ArrayLike",
    "attribute_recall_at_k",
    "average_precision",
    "landmark_detection_rate",
    "landmark_normalized_error",
    "mean_average_precision",
    "multilabel_prf",
    "per_label_topk_recall",
    "topk_accuracy",
    "topk_recall",
]


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _fraction(num: float, den: float) -> float:
    """``num / den`` as a Python float, with 0/0 (and x/0) counted as 0."""
    return float(num) / float(den) if den > 0 else 0.0


def _f1(p: float, r: float) -> float:
    return 2.0 * p * r / (p + r) if p + r > 0 else 0.0


# --------------------------------------------------------------------------------------------------
# top-k selection
# --------------------------------------------------------------------------------------------------


def _topk_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Bool mask ``(N, C)`` of each row's ``k`` highest scores, ties broken by the lower index.

    Same selection as the first ``k`` entries of ``argsort(-scores, kind="stable")`` but O(N*C):
    a partition finds each row's k-th largest value ``v``; everything above ``v`` is in, and the
    ``k - #above`` lowest-index entries equal to ``v`` fill the remaining places.
    """
    n, c = scores.shape
    if k >= c:
        return np.ones((n, c), dtype=bool)
    kth = np.partition(scores, c - k, axis=1)[:, c - k : c - k + 1]  # (N, 1) k-th largest value
    mask = scores > kth  # (N, C), at most k - 1 per row
    at_kth = scores == kth  # (N, C), at least one per row
    free = k - mask.sum(axis=1)  # (N,) places left for entries equal to the k-th value
    tied = at_kth.sum(axis=1) > free  # rows where the tie must be cut: take the lowest indices
    if tied.any():
        rows = at_kth[tied]
        small = np.int16 if c < 2**15 else np.int64  # a narrow cumsum is ~10x faster than int64
        at_kth[tied] = rows & (np.cumsum(rows, axis=1, dtype=small) <= free[tied, None])
    return mask | at_kth


def _image_hits(scores: Any, targets: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: (#true labels in the top k, #true labels, bool targets)."""
    s = as_scores(scores)
    t = as_binary(targets, "targets", s.shape)
    hits = (_topk_mask(s, _check_k(k)) & t).sum(axis=1)
    return hits, t.sum(axis=1), t


def _image_success(hits: np.ndarray, npos: np.ndarray, mode: str) -> np.ndarray:
    if mode == "any":
        return hits > 0
    if mode == "all":
        return hits == npos
    raise ValueError(f'mode must be "any" or "all", got {mode!r}')


# --------------------------------------------------------------------------------------------------
# single-label category
# --------------------------------------------------------------------------------------------------


def topk_accuracy(scores: ArrayLike, labels: ArrayLike, k: int) -> float:
    """Fraction of images whose true label is among their ``k`` highest scores.

    This is the DeepFashion category protocol (micro over images), not per-class macro recall.

    Args:
        scores: ``(N, C)`` class scores (logits or probabilities).
        labels: ``(N,)`` integer class indices in ``[0, C)``.
        k: number of top-ranked classes that count as a hit; ``k >= C`` gives 1.0.

    Returns:
        Top-k accuracy in [0, 1]; 0.0 for ``N == 0``.

    Raises:
        ValueError: on mismatched shapes, non-integer or out-of-range labels, NaN scores, ``k < 1``.

    Example:
        >>> import numpy as np
        >>> scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
        >>> topk_accuracy(scores, np.array([2, 1]), k=1), topk_accuracy(scores, np.array([2, 1]), k=2)
        (0.0, 1.0)
    """
    s = as_scores(scores)
    y = as_labels(labels, s.shape)
    hit = _topk_mask(s, _check_k(k))[np.arange(s.shape[0]), y]
    return _fraction(hit.sum(), hit.size)


# --------------------------------------------------------------------------------------------------
# seed B (multi-label style) protocol
# --------------------------------------------------------------------------------------------------


def topk_recall(scores: ArrayLike, targets: ArrayLike, k: int, mode: Literal["any", "all"] = "any") -> float:
    """Top-k recall over images, seed B protocol.

    ``mode="any"``: fraction of images with at least one true label among their top ``k``.
    ``mode="all"``: fraction of images whose every true label is among their top ``k`` (an image
    with more than ``k`` true labels is a miss). Images with no true label are left out.

    Args:
        scores: ``(N, C)`` label scores.
        targets: ``(N, C)`` 0/1 ground truth.
        k: size of the top-ranked set.
        mode: ``"any"`` or ``"all"``.

    Returns:
        The fraction in [0, 1]; 0.0 when no image has a true label.

    Example:
        >>> import numpy as np
        >>> scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.3, 0.8]])
        >>> targets = np.array([[1, 0, 1], [0, 0, 1]])
        >>> topk_recall(scores, targets, k=1, mode="any"), topk_recall(scores, targets, k=1, mode="all")
        (1.0, 0.5)
    """
    hits, npos, _ = _image_hits(scores, targets, k)
    success = _image_success(hits, npos, mode)
    has_label = npos > 0
    return _fraction((success & has_label).sum(), has_label.sum())


def per_label_topk_recall(
    scores: ArrayLike, targets: ArrayLike, k: int, mode: Literal["any", "all"] = "all"
) -> dict[int, tuple[float, int]]:
    """:func:`topk_recall` restricted, for each label ``c``, to the images that have label ``c``.

    Args:
        scores: ``(N, C)`` label scores.
        targets: ``(N, C)`` 0/1 ground truth.
        k: size of the top-ranked set.
        mode: ``"any"`` or ``"all"`` (see :func:`topk_recall`).

    Returns:
        ``{c: (value, support)}`` for every label ``c`` in ``range(C)``, where ``support`` is the
        number of images with label ``c``; a label with support 0 gets value 0.0.

    Example:
        >>> import numpy as np
        >>> scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.3, 0.8]])
        >>> targets = np.array([[1, 0, 1], [0, 0, 1]])
        >>> per_label_topk_recall(scores, targets, k=1)
        {0: (0.0, 1), 1: (0.0, 0), 2: (0.5, 2)}
    """
    hits, npos, t = _image_hits(scores, targets, k)
    success = _image_success(hits, npos, mode)  # (N,)
    support = t.sum(axis=0)  # (C,)
    wins = (t & success[:, None]).sum(axis=0)  # (C,)
    return {c: (_fraction(wins[c], support[c]), int(support[c])) for c in range(t.shape[1])}


# --------------------------------------------------------------------------------------------------
# ML-GCN / MS-COCO protocol
# --------------------------------------------------------------------------------------------------


def average_precision(scores: ArrayLike, targets: ArrayLike, known: ArrayLike | None = None) -> np.ndarray:
    """Per-label non-interpolated average precision.

    For each label, images are sorted by descending score (ties: lower image index first) and
    ``AP = mean over the positives of (#positives ranked at or above it / its rank)``. For untied
    scores this equals ``sklearn.metrics.average_precision_score``; with tied scores sklearn scores
    the tie as a block and may differ.

    Args:
        scores: ``(N, C)`` label scores.
        targets: ``(N, C)`` 0/1 ground truth.
        known: optional ``(N, C)`` 0/1 mask: a label's AP is computed over the images where it is
            known only (an unknown entry is neither a positive nor a negative: DeepFashion's 0).

    Returns:
        float64 array of length ``C``; ``NaN`` for labels with no positive image (no AP exists).

    Example:
        >>> import numpy as np
        >>> scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
        >>> targets = np.array([[0, 0], [1, 0], [1, 0]])
        >>> average_precision(scores, targets).round(4).tolist()  # (1/2 + 2/3) / 2
        [0.5833, nan]
    """
    s = as_scores(scores)
    t = as_binary(targets, "targets", s.shape)
    if known is not None:  # unknown entries rank below every known one and hold no positive
        k = as_binary(known, "known", s.shape) > 0
        s, t = np.where(k, s, -np.inf), np.where(k, t, 0)
    n, c = s.shape
    ap = np.full(c, np.nan)
    npos = t.sum(axis=0)
    ranks = np.arange(1, n + 1, dtype=np.float64)[:, None]  # (N, 1)
    chunk = max(1, 2**22 // max(n, 1))  # bound the (N, chunk) temporaries to ~4M entries
    for start in range(0, c, chunk):
        cols = slice(start, start + chunk)
        order = np.argsort(-s[:, cols], axis=0, kind="stable")  # (N, chunk) descending score
        hit = np.take_along_axis(t[:, cols], order, axis=0)  # (N, chunk) positives in rank order
        precision_at_hit = np.cumsum(hit, axis=0) / ranks * hit
        with np.errstate(invalid="ignore", divide="ignore"):
            ap[cols] = precision_at_hit.sum(axis=0) / npos[cols]
    ap[npos == 0] = np.nan
    return ap


def mean_average_precision(scores: ArrayLike, targets: ArrayLike) -> float:
    """Mean of the per-label APs that exist (labels without a positive are skipped).

    Args:
        scores: ``(N, C)`` label scores.
        targets: ``(N, C)`` 0/1 ground truth.

    Returns:
        mAP in [0, 1]; ``nan`` if no label has a positive image.

    Example:
        >>> import numpy as np
        >>> scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
        >>> round(mean_average_precision(scores, np.array([[0, 0], [1, 0], [1, 1]])), 4)  # (0.5833 + 1) / 2
        0.7917
    """
    ap = average_precision(scores, targets)
    exists = ~np.isnan(ap)
    return float(ap[exists].mean()) if exists.any() else float("nan")


def multilabel_prf(
    probs: ArrayLike, targets: ArrayLike, threshold: float = 0.5, top_k: int | None = None
) -> dict[str, float]:
    """Per-class and overall precision / recall / F1 (ML-GCN protocol).

    A label is predicted when ``prob >= threshold`` and, if ``top_k`` is given, it is also among the
    image's ``top_k`` scores. Per label: ``Np`` predicted, ``Nc`` correctly predicted, ``Ng`` true.
    ``CP = mean_c Nc/Np`` (over all labels, 0/0 = 0), ``CR = mean_c Nc/Ng`` over labels with
    ``Ng > 0``, ``OP = sum Nc / sum Np``, ``OR = sum Nc / sum Ng``; F1 is the harmonic mean (0 for
    two zeros).

    Args:
        probs: ``(N, C)`` probabilities (sigmoid already applied).
        targets: ``(N, C)`` 0/1 ground truth.
        threshold: probability at or above which a label is predicted.
        top_k: if given, additionally restrict predictions to each image's ``top_k`` scores.

    Returns:
        ``{"CP", "CR", "CF1", "OP", "OR", "OF1"}`` as Python floats.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[0.9, 0.6], [0.2, 0.7]])
        >>> targets = np.array([[1, 0], [0, 1]])
        >>> multilabel_prf(probs, targets)  # CP = (1/1 + 1/2) / 2, OP = 2/3
        {'CP': 0.75, 'CR': 1.0, 'CF1': 0.8571428571428571, 'OP': 0.6666666666666666, 'OR': 1.0, 'OF1': 0.8}
    """
    p = as_scores(probs, "probs")
    t = as_binary(targets, "targets", p.shape, like="probs")
    pred = p >= threshold
    if top_k is not None:
        pred &= _topk_mask(p, _check_k(top_k))
    n_p = pred.sum(axis=0)  # (C,)
    n_c = (pred & t).sum(axis=0)  # (C,)
    n_g = t.sum(axis=0)  # (C,)
    cp = float(np.mean(n_c / np.maximum(n_p, 1))) if p.shape[1] else 0.0
    has_true = n_g > 0
    cr = float(np.mean(n_c[has_true] / n_g[has_true])) if has_true.any() else 0.0
    op = _fraction(n_c.sum(), n_p.sum())
    or_ = _fraction(n_c.sum(), n_g.sum())
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": or_, "OF1": _f1(op, or_)}


# --------------------------------------------------------------------------------------------------
# DeepFashion attribute protocol
# --------------------------------------------------------------------------------------------------


def _pooled_recall(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    hits = np.count_nonzero(_topk_mask(scores, k) & targets)
    return _fraction(hits, np.count_nonzero(targets))


def attribute_recall_at_k(
    scores: ArrayLike, targets: ArrayLike, k: int, groups: ArrayLike | None = None
) -> float | dict[int, float]:
    """DeepFashion attribute recall@k (Liu & Lu's evaluator), pooled over images.

    ``recall@k = sum_i |positives of i in its top k| / sum_i |positives of i|``. With ``groups``,
    the same is computed inside each attribute type: only that type's attributes are ranked and
    that type's top ``k`` taken. (Not mmfashion's "mean of the 50 best per-attribute recalls".)

    Args:
        scores: ``(N, A)`` attribute scores.
        targets: ``(N, A)`` 0/1 ground truth (pass ``targets == 1`` for -1/0/1 files).
        k: size of the top-ranked set (per image, or per image and type).
        groups: optional ``(A,)`` integer type of each attribute (DeepFashion: 1..5).

    Returns:
        The recall as a float without ``groups``; with ``groups``, ``{type: recall}`` for each type
        present (the overall "all" figure is the ungrouped call). 0/0 counts as 0.

    Example:
        >>> import numpy as np
        >>> scores = np.array([[0.9, 0.8, 0.1, 0.2]])
        >>> targets = np.array([[0, 1, 1, 0]])
        >>> attribute_recall_at_k(scores, targets, k=2)
        0.5
        >>> attribute_recall_at_k(scores, targets, k=1, groups=np.array([1, 1, 2, 2]))
        {1: 0.0, 2: 0.0}
    """
    s = as_scores(scores)
    t = as_binary(targets, "targets", s.shape)
    k = _check_k(k)
    if groups is None:
        return _pooled_recall(s, t, k)
    g = to_numpy(groups, "groups")
    if g.shape != (s.shape[1],):
        raise ValueError(
            f"groups must have shape ({s.shape[1]},) to match scores {tuple(s.shape)}, got {tuple(g.shape)}"
        )
    if g.dtype.kind not in "iu":
        raise ValueError(f"groups must be integers, got dtype {g.dtype}")
    out: dict[int, float] = {}
    for group in np.unique(g).tolist():
        cols = np.flatnonzero(g == group)
        out[int(group)] = _pooled_recall(s[:, cols], t[:, cols], k)
    return out


# --------------------------------------------------------------------------------------------------
# landmarks
# --------------------------------------------------------------------------------------------------


def _landmark_distances(pred: Any, target: Any, visible: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (distance ``(N, L)`` with 0 where invisible, visibility ``(N, L)`` bool)."""
    p = _to_float(pred, "pred")
    q = _to_float(target, "target")
    if p.shape[-1:] != (2,):
        raise ValueError(f"pred must have shape (N, L, 2), got {tuple(p.shape)}")
    if q.shape != p.shape:
        raise ValueError(f"pred has shape {tuple(p.shape)} but target has shape {tuple(q.shape)}")
    vis = as_binary(visible, "visible", p.shape[:2], like="pred[..., 0]")
    # invisible coordinates may hold anything (NaN, -1, garbage): they must count nowhere
    diff = np.where(vis[..., None], p - q, 0.0)
    return np.sqrt((diff**2).sum(axis=-1)), vis


def _to_float(x: Any, name: str) -> np.ndarray:
    arr = to_numpy(x, name)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, L, 2), got {tuple(arr.shape)}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def landmark_normalized_error(
    pred: ArrayLike, target: ArrayLike, visible: ArrayLike
) -> tuple[np.ndarray, float]:
    """Normalised landmark error (NE): mean L2 distance in input-normalised coordinates.

    Coordinates are ``x / width, y / height``. Invisible landmarks count nowhere (neither as zero
    error nor in any denominator).

    Args:
        pred: ``(N, L, 2)`` predicted coordinates.
        target: ``(N, L, 2)`` true coordinates (values where invisible are ignored).
        visible: ``(N, L)`` bool (or 0/1) visibility.

    Returns:
        ``(per_landmark, mean)``: ``per_landmark`` is a float64 array ``(L,)`` with the mean
        distance over the images where that landmark is visible (``NaN`` if it never is), and
        ``mean`` the mean over landmarks visible at least once (``nan`` if none is).

    Example:
        >>> import numpy as np
        >>> pred = np.array([[[0.0, 0.0], [0.5, 0.5]], [[0.3, 0.4], [0.0, 0.0]]])
        >>> target = np.zeros((2, 2, 2))
        >>> per, mean = landmark_normalized_error(pred, target, np.array([[1, 0], [1, 0]]))
        >>> per.tolist(), mean  # landmark 0: (0 + 0.5) / 2; landmark 1 never visible
        ([0.25, nan], 0.25)
    """
    dist, vis = _landmark_distances(pred, target, visible)
    count = vis.sum(axis=0)  # (L,)
    per = np.full(dist.shape[1], np.nan)
    seen = count > 0
    per[seen] = dist.sum(axis=0)[seen] / count[seen]
    return per, float(per[seen].mean()) if seen.any() else float("nan")


def landmark_detection_rate(
    pred: ArrayLike, target: ArrayLike, visible: ArrayLike, threshold: float
) -> float:
    """Fraction of visible landmarks whose L2 distance is ``<= threshold`` (normalised units).

    Args:
        pred: ``(N, L, 2)`` predicted coordinates.
        target: ``(N, L, 2)`` true coordinates.
        visible: ``(N, L)`` bool (or 0/1) visibility; invisible landmarks count nowhere.
        threshold: distance at or below which a landmark counts as detected.

    Returns:
        The detection rate in [0, 1]; 0.0 if no landmark is visible.

    Example:
        >>> import numpy as np
        >>> pred = np.array([[[0.0, 0.05], [0.3, 0.4]]])
        >>> landmark_detection_rate(pred, np.zeros((1, 2, 2)), np.array([[1, 1]]), threshold=0.1)
        0.5
    """
    dist, vis = _landmark_distances(pred, target, visible)
    return _fraction(np.count_nonzero((dist <= threshold) & vis), np.count_nonzero(vis))


def expected_calibration_error(scores: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 prediction (Guo et al., 2017).

    The top-1 confidences are put into ``n_bins`` equal-width bins over [0, 1] (a confidence of
    exactly 1 goes to the last bin); ECE is the mean over bins of ``|accuracy - mean confidence|``,
    weighted by the fraction of images in the bin.

    Args:
        scores: ``(N, C)`` class probabilities.
        labels: ``(N,)`` true class indices.
        n_bins: the number of bins.

    Example:
        >>> # confidences 0.9 (bin [0.5, 1], right) and 0.4 (bin [0, 0.5), right): 0.5 * 0.1 + 0.5 * 0.6
        >>> probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3]])
        >>> expected_calibration_error(probs, np.array([0, 0]), n_bins=2)
        0.35
    """
    s = as_scores(scores)
    y = as_labels(labels, s.shape)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = s.max(axis=1)
    correct = (s.argmax(axis=1) == y).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(round(total, 12))


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore: int = 255) -> np.ndarray:
    """Pixel counts ``C[t, p]`` of true class ``t`` predicted as ``p`` over every pixel whose target is not
    ``ignore``: (K, K) int64.

    Example:
        >>> confusion_matrix(np.array([[0, 1], [1, 1]]), np.array([[0, 0], [1, 255]]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in size: {pred.size} vs {target.size}")
    keep = target != ignore
    t, p = target[keep].astype(np.int64), pred[keep].astype(np.int64)
    if t.size and (t.max() >= num_classes or p.max() >= num_classes or min(t.min(), p.min()) < 0):
        raise ValueError(f"class indices must be in [0, {num_classes}) (or {ignore} in the target)")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_scores(confusion: np.ndarray) -> dict[str, Any]:
    """Pixel accuracy, per-class IoU and mean IoU of a (K, K) confusion matrix (rows: truth).

    ``IoU_k = C[k, k] / (sum_t C[t, k] + sum_p C[k, p] - C[k, k])``; the mean is over the classes whose
    union is not empty (a class neither present nor predicted has IoU NaN and is left out). Pixel
    accuracy = trace / total.

    Example:
        >>> s = segmentation_scores(np.array([[1, 1], [0, 1]]))
        >>> round(s["pixel_accuracy"], 4), [round(v, 4) for v in s["iou"]], round(s["mIoU"], 4)
        (0.6667, [0.5, 0.5], 0.5)
    """
    c = np.asarray(confusion, dtype=np.float64)
    inter = np.diag(c)
    union = c.sum(0) + c.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
    total = c.sum()
    return {
        "pixel_accuracy": float(inter.sum() / total) if total else float("nan"),
        "iou": iou.tolist(),
        "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
    }
