"""Tests of fashionlens.metrics against hand-worked numbers, sklearn/torchmetrics and naive loops."""

from __future__ import annotations

import json
import math
import time
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import average_precision_score, precision_recall_fscore_support
from torchmetrics.functional.classification import multiclass_accuracy

from fashionlens.metrics import (
    ScoreCollector,
    attribute_recall_at_k,
    average_precision,
    classification_report,
    deepfashion_report,
    landmark_detection_rate,
    landmark_normalized_error,
    mean_average_precision,
    multilabel_prf,
    multilabel_report,
    per_label_topk_recall,
    topk_accuracy,
    topk_recall,
)
from fashionlens.metrics.functional import _topk_mask

# --------------------------------------------------------------------------------------------------
# independent naive references (python loops; ranking = sort by (-score, index))
# --------------------------------------------------------------------------------------------------


def naive_topk(row, k):
    return set(sorted(range(len(row)), key=lambda j: (-float(row[j]), j))[:k])


def naive_image_success(scores, targets, k, mode):
    """{image: success} over the images that have at least one true label."""
    out = {}
    for i in range(len(scores)):
        true = {j for j in range(len(targets[i])) if targets[i][j] == 1}
        if not true:
            continue
        top = naive_topk(scores[i], k)
        out[i] = bool(true & top) if mode == "any" else true <= top
    return out


def naive_topk_recall(scores, targets, k, mode):
    success = naive_image_success(scores, targets, k, mode)
    return sum(success.values()) / len(success) if success else 0.0


def naive_per_label(scores, targets, k, mode):
    success = naive_image_success(scores, targets, k, mode)
    out = {}
    for c in range(len(targets[0])):
        images = [i for i in range(len(targets)) if targets[i][c] == 1]
        wins = sum(success[i] for i in images)
        out[c] = (wins / len(images) if images else 0.0, len(images))
    return out


def naive_attribute_recall(scores, targets, k, columns):
    hit = total = 0
    for i in range(len(scores)):
        row = [scores[i][j] for j in columns]
        top = {columns[j] for j in naive_topk(row, k)}
        for j in columns:
            if targets[i][j] == 1:
                total += 1
                hit += j in top
    return hit / total if total else 0.0


def naive_prf(probs, targets, threshold, top_k=None):
    n, c = len(probs), len(probs[0])
    pred = [[probs[i][j] >= threshold for j in range(c)] for i in range(n)]
    if top_k is not None:
        for i in range(n):
            top = naive_topk(probs[i], top_k)
            pred[i] = [pred[i][j] and j in top for j in range(c)]
    n_p = [sum(pred[i][j] for i in range(n)) for j in range(c)]
    n_c = [sum(pred[i][j] and targets[i][j] == 1 for i in range(n)) for j in range(c)]
    n_g = [sum(targets[i][j] == 1 for i in range(n)) for j in range(c)]
    cp = sum(n_c[j] / n_p[j] if n_p[j] else 0.0 for j in range(c)) / c
    labelled = [j for j in range(c) if n_g[j]]
    cr = sum(n_c[j] / n_g[j] for j in labelled) / len(labelled) if labelled else 0.0
    op = sum(n_c) / sum(n_p) if sum(n_p) else 0.0
    or_ = sum(n_c) / sum(n_g) if sum(n_g) else 0.0

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r else 0.0

    return {"CP": cp, "CR": cr, "CF1": f1(cp, cr), "OP": op, "OR": or_, "OF1": f1(op, or_)}


def random_multilabel(seed, n=40, c=8, p=0.3, quantise=None):
    rng = np.random.default_rng(seed)
    scores = rng.random((n, c))
    if quantise:  # few distinct values: many ties, exercising the lower-index rule
        scores = np.round(scores * quantise) / quantise
    targets = (rng.random((n, c)) < p).astype(np.int64)
    return scores, targets


# --------------------------------------------------------------------------------------------------
# topk_accuracy
# --------------------------------------------------------------------------------------------------

# rankings: img0 -> 1,2,0,3; img1 -> 3,0,1,2 (0.3 tie: 0 before 1); img2 -> 0,1,2,3 (0.1 ties)
CAT_SCORES = np.array([[0.1, 0.5, 0.4, 0.0], [0.3, 0.3, 0.2, 0.9], [0.7, 0.1, 0.1, 0.1]])
CAT_LABELS = np.array([2, 1, 3])  # true label at rank 2, 3 and 4


@pytest.mark.parametrize("k, expected", [(1, 0.0), (2, 1 / 3), (3, 2 / 3), (4, 1.0), (9, 1.0)])
def test_topk_accuracy_hand(k, expected):
    assert topk_accuracy(CAT_SCORES, CAT_LABELS, k) == pytest.approx(expected)


def test_topk_accuracy_tie_goes_to_lower_index():
    scores = np.array([[0.5, 0.5, 0.5]])
    assert topk_accuracy(scores, np.array([0]), 1) == 1.0
    assert topk_accuracy(scores, np.array([1]), 1) == 0.0
    assert topk_accuracy(scores, np.array([1]), 2) == 1.0
    assert topk_accuracy(scores, np.array([2]), 2) == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_topk_accuracy_matches_torchmetrics(k):
    rng = np.random.default_rng(k)
    scores = rng.random((200, 6)).astype(np.float32)  # continuous: no ties
    labels = rng.integers(0, 6, 200)
    reference = multiclass_accuracy(
        torch.from_numpy(scores), torch.from_numpy(labels), num_classes=6, top_k=k, average="micro"
    )
    assert topk_accuracy(scores, labels, k) == pytest.approx(reference.item(), abs=1e-6)


def test_topk_accuracy_validation():
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        topk_accuracy(CAT_SCORES, np.array([0, 1]), 1)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        topk_accuracy(CAT_SCORES, np.array([0, 1, 4]), 1)
    with pytest.raises(ValueError, match="positive integer"):
        topk_accuracy(CAT_SCORES, CAT_LABELS, 0)
    with pytest.raises(ValueError, match="NaN"):
        topk_accuracy(np.array([[np.nan, 1.0]]), np.array([0]), 1)


# --------------------------------------------------------------------------------------------------
# topk_recall / per_label_topk_recall
# --------------------------------------------------------------------------------------------------

ML_SCORES = np.array(
    [
        [0.9, 0.1, 0.5, 0.3],  # ranking 0,2,3,1
        [0.2, 0.8, 0.6, 0.4],  # ranking 1,2,3,0
        [0.5, 0.5, 0.1, 0.1],  # ranking 0,1,2,3 (ties to the lower index)
        [0.4, 0.3, 0.2, 0.1],  # no true label: left out
    ]
)
ML_TARGETS = np.array(
    [
        [1, 0, 1, 0],  # true labels at ranks 1 and 2
        [1, 0, 0, 1],  # true labels at ranks 4 and 3
        [0, 1, 0, 0],  # true label at rank 2 (loses the tie with label 0)
        [0, 0, 0, 0],
    ]
)


@pytest.mark.parametrize(
    "k, mode, expected",
    [
        (1, "any", 1 / 3),  # img0 only
        (1, "all", 0.0),  # img0 has 2 labels > k, img1/img2 miss
        (2, "any", 2 / 3),  # img0, img2
        (2, "all", 2 / 3),  # img0, img2
        (3, "any", 1.0),  # img1's label 3 enters at rank 3
        (3, "all", 2 / 3),  # img1's label 0 is at rank 4
        (4, "all", 1.0),
    ],
)
def test_topk_recall_hand(k, mode, expected):
    # the label-less image 3 is excluded: counting it as a miss would give 3/4 of these values
    assert topk_recall(ML_SCORES, ML_TARGETS, k, mode=mode) == pytest.approx(expected)


def test_per_label_topk_recall_hand():
    # k=2, "all": image success = [True, False, True] (image 3 has no label)
    # label 0 on images 0,1 -> 1/2; label 1 on image 2 -> 1; label 2 on image 0 -> 1; label 3 on image 1 -> 0
    assert per_label_topk_recall(ML_SCORES, ML_TARGETS, 2) == {
        0: (0.5, 2),
        1: (1.0, 1),
        2: (1.0, 1),
        3: (0.0, 1),
    }
    # k=1, "any": success = [True, False, False]
    assert per_label_topk_recall(ML_SCORES, ML_TARGETS, 1, mode="any") == {
        0: (0.5, 2),
        1: (0.0, 1),
        2: (1.0, 1),
        3: (0.0, 1),
    }


def test_per_label_topk_recall_label_without_images():
    targets = np.array([[1, 0], [1, 0]])
    assert per_label_topk_recall(np.array([[0.1, 0.9], [0.8, 0.2]]), targets, 1) == {0: (0.5, 2), 1: (0.0, 0)}


def test_topk_recall_no_labelled_image_is_zero():
    assert topk_recall(ML_SCORES, np.zeros((4, 4)), 2, mode="any") == 0.0


@pytest.mark.parametrize("seed, quantise", [(0, None), (1, 4), (2, 2)])
@pytest.mark.parametrize("mode", ["any", "all"])
def test_topk_recall_matches_naive_loops(seed, quantise, mode):
    scores, targets = random_multilabel(seed, quantise=quantise)
    targets[:3] = 0  # some label-less images
    for k in (1, 2, 3, 8):
        assert topk_recall(scores, targets, k, mode=mode) == pytest.approx(
            naive_topk_recall(scores, targets, k, mode)
        )
        got = per_label_topk_recall(scores, targets, k, mode=mode)
        expected = naive_per_label(scores, targets, k, mode)
        assert got.keys() == expected.keys()
        for c in got:
            assert got[c][1] == expected[c][1]
            assert got[c][0] == pytest.approx(expected[c][0])


def test_topk_recall_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        topk_recall(ML_SCORES, ML_TARGETS, 1, mode="some")


# --------------------------------------------------------------------------------------------------
# average_precision / mean_average_precision
# --------------------------------------------------------------------------------------------------

AP_SCORES = np.array(
    [[0.9, 0.1, 0.3], [0.8, 0.4, 0.2], [0.7, 0.3, 0.5], [0.6, 0.2, 0.1], [0.5, 0.5, 0.4]],
)
AP_TARGETS = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0]])
# label 0: positives at ranks 1, 3, 5 -> (1/1 + 2/3 + 3/5) / 3 = 34/45
# label 1: order is images 4, 1, 2, 3, 0; the positive (image 1) is at rank 2 -> 1/2
# label 2: no positive -> NaN, skipped by the mean: mAP = (34/45 + 1/2) / 2 = 113/180


def test_average_precision_hand():
    ap = average_precision(AP_SCORES, AP_TARGETS)
    assert ap.shape == (3,)
    assert ap[:2] == pytest.approx([34 / 45, 1 / 2])
    assert math.isnan(ap[2])
    assert mean_average_precision(AP_SCORES, AP_TARGETS) == pytest.approx(113 / 180)


def test_average_precision_ties_broken_by_lower_image_index():
    scores = np.full((3, 1), 0.5)
    # stable order 0, 1, 2: a positive at image 1 has rank 2 -> AP 1/2 (sklearn would give 1/3)
    assert average_precision(scores, np.array([[0], [1], [0]]))[0] == pytest.approx(0.5)
    assert average_precision(scores, np.array([[1], [0], [0]]))[0] == pytest.approx(1.0)


def test_mean_average_precision_without_any_positive_is_nan():
    assert math.isnan(mean_average_precision(AP_SCORES, np.zeros((5, 3))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn(seed):
    scores, targets = random_multilabel(seed, n=80, c=9)  # continuous scores: untied
    targets[0] = 1  # every label has a positive
    targets[:, 4] = 0  # ... except label 4
    ap = average_precision(scores, targets)
    for c in range(9):
        if c == 4:
            assert math.isnan(ap[c])
        else:
            assert ap[c] == pytest.approx(average_precision_score(targets[:, c], scores[:, c]), abs=1e-12)
    expected_map = np.mean([average_precision_score(targets[:, c], scores[:, c]) for c in range(9) if c != 4])
    assert mean_average_precision(scores, targets) == pytest.approx(expected_map, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# multilabel_prf
# --------------------------------------------------------------------------------------------------

PRF_PROBS = np.array([[0.9, 0.6, 0.2], [0.4, 0.7, 0.5], [0.1, 0.3, 0.8]])
PRF_TARGETS = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]])


def test_multilabel_prf_hand():
    # threshold 0.5 (0.5 itself predicted): pred = [[1,1,0],[0,1,1],[0,0,1]]
    # label 0: Np=1 Nc=1 Ng=2; label 1: Np=2 Nc=1 Ng=1; label 2: Np=2 Nc=0 Ng=0 (left out of CR)
    # CP = (1 + 1/2 + 0) / 3 = 0.5; CR = (1/2 + 1) / 2 = 0.75; CF1 = 2*.5*.75/1.25 = 0.6
    # OP = 2/5; OR = 2/3; OF1 = (8/15) / (16/15) = 0.5
    got = multilabel_prf(PRF_PROBS, PRF_TARGETS)
    assert got == pytest.approx({"CP": 0.5, "CR": 0.75, "CF1": 0.6, "OP": 0.4, "OR": 2 / 3, "OF1": 0.5})


def test_multilabel_prf_top_k_hand():
    # top-1 per image: labels 0, 1, 2 -> pred = identity (all above 0.5)
    # label 0: Np=1 Nc=1 Ng=2; label 1: Np=1 Nc=1 Ng=1; label 2: Np=1 Nc=0 Ng=0
    # CP = 2/3; CR = (1/2 + 1)/2 = 3/4; CF1 = 1 / (17/12) = 12/17; OP = OR = OF1 = 2/3
    got = multilabel_prf(PRF_PROBS, PRF_TARGETS, top_k=1)
    assert got == pytest.approx(
        {"CP": 2 / 3, "CR": 0.75, "CF1": 12 / 17, "OP": 2 / 3, "OR": 2 / 3, "OF1": 2 / 3}
    )


def test_multilabel_prf_zero_over_zero_is_zero():
    # nothing reaches 0.95: every Np = 0 -> CP = OP = 0, Nc = 0 -> CR = OR = 0, F1 of zeros = 0
    got = multilabel_prf(PRF_PROBS, PRF_TARGETS, threshold=0.95)
    assert got == {"CP": 0.0, "CR": 0.0, "CF1": 0.0, "OP": 0.0, "OR": 0.0, "OF1": 0.0}


def test_multilabel_prf_threshold_is_inclusive():
    got = multilabel_prf(np.array([[0.5, 0.49]]), np.array([[1, 1]]))
    assert got["OP"] == 1.0 and got["OR"] == 0.5


@pytest.mark.parametrize("seed, quantise", [(3, None), (4, 5)])
@pytest.mark.parametrize("top_k", [None, 1, 3])
def test_multilabel_prf_matches_naive_loops(seed, quantise, top_k):
    probs, targets = random_multilabel(seed, quantise=quantise)
    targets[:, 2] = 0  # a label with no true image
    got = multilabel_prf(probs, targets, threshold=0.4, top_k=top_k)
    assert got == pytest.approx(naive_prf(probs, targets, 0.4, top_k))


@pytest.mark.parametrize("seed", [5, 6])
def test_multilabel_prf_matches_sklearn(seed):
    probs, targets = random_multilabel(seed, n=120, c=6, p=0.4)
    targets[:6] = np.eye(6, dtype=np.int64)  # every label has a true image, so CR = macro recall
    probs[:, 5] = 0.0  # label 5 never predicted: 0/0 precision counts as 0 on both sides
    pred = (probs >= 0.5).astype(np.int64)
    got = multilabel_prf(probs, targets)
    micro = precision_recall_fscore_support(targets, pred, average="micro", zero_division=0)
    macro = precision_recall_fscore_support(targets, pred, average="macro", zero_division=0)
    assert (got["OP"], got["OR"], got["OF1"]) == pytest.approx(micro[:3])
    assert (got["CP"], got["CR"]) == pytest.approx(macro[:2])


# --------------------------------------------------------------------------------------------------
# attribute_recall_at_k
# --------------------------------------------------------------------------------------------------

ATTR_SCORES = np.array([[0.9, 0.2, 0.1, 0.8, 0.7, 0.3], [0.1, 0.6, 0.5, 0.4, 0.3, 0.2]])
ATTR_TARGETS = np.array([[0, 1, 0, 1, 0, 1], [1, 0, 0, 0, 0, 0]])
ATTR_GROUPS = np.array([1, 1, 1, 2, 2, 2])


@pytest.mark.parametrize("k, expected", [(2, 1 / 4), (3, 1 / 4), (4, 2 / 4), (6, 1.0)])
def test_attribute_recall_hand(k, expected):
    # img0 ranks 0,3,4,5,1,2 with positives {1,3,5}; img1 ranks 1,2,3,4,5,0 with positive {0}
    # k=4: img0 hits {3,5}, img1 none -> pooled 2/4 (the mean of per-image recalls would be 1/3)
    assert attribute_recall_at_k(ATTR_SCORES, ATTR_TARGETS, k) == pytest.approx(expected)


def test_attribute_recall_grouped_hand():
    # k=1, type 1 (attrs 0-2): img0 top {0} misses {1}, img1 top {1} misses {0} -> 0/2
    #      type 2 (attrs 3-5): img0 top {3}, positives {3,5} -> 1/2; img1 has none -> 1/2
    assert attribute_recall_at_k(ATTR_SCORES, ATTR_TARGETS, 1, groups=ATTR_GROUPS) == {1: 0.0, 2: 0.5}
    # k=2, type 1: img0 top {0,1} hits 1, img1 top {1,2} misses -> 1/2; type 2: img0 top {3,4} -> 1/2
    assert attribute_recall_at_k(ATTR_SCORES, ATTR_TARGETS, 2, groups=ATTR_GROUPS) == {1: 0.5, 2: 0.5}


@pytest.mark.parametrize("seed, quantise", [(7, None), (8, 3)])
def test_attribute_recall_matches_naive_loops(seed, quantise):
    scores, targets = random_multilabel(seed, n=30, c=12, quantise=quantise)
    groups = np.array([1, 2, 3, 1, 2, 3, 4, 4, 5, 5, 5, 1])
    for k in (1, 2, 5):
        assert attribute_recall_at_k(scores, targets, k) == pytest.approx(
            naive_attribute_recall(scores, targets, k, list(range(12)))
        )
        grouped = attribute_recall_at_k(scores, targets, k, groups=groups)
        assert set(grouped) == {1, 2, 3, 4, 5}
        for group, value in grouped.items():
            columns = [j for j in range(12) if groups[j] == group]
            assert value == pytest.approx(naive_attribute_recall(scores, targets, k, columns))


def test_attribute_recall_validation():
    with pytest.raises(ValueError, match=r"groups must have shape \(6,\)"):
        attribute_recall_at_k(ATTR_SCORES, ATTR_TARGETS, 1, groups=np.array([1, 2]))
    with pytest.raises(ValueError, match="targets == 1"):
        attribute_recall_at_k(ATTR_SCORES, ATTR_TARGETS * 2 - 1, 1)  # -1/1 coding must be converted


# --------------------------------------------------------------------------------------------------
# landmarks
# --------------------------------------------------------------------------------------------------

LM_PRED = np.array(
    [
        [[0.0, 0.5], [0.25, 0.0], [1.0, 1.0]],  # distances 0.5, 0.25, (invisible)
        [[0.25, 0.0], [0.75, 0.0], [np.nan, np.nan]],  # distances 0.25, (invisible), (invisible)
    ]
)
LM_TARGET = np.zeros((2, 3, 2))
LM_VISIBLE = np.array([[True, True, False], [True, False, False]])


def test_landmark_normalized_error_hand():
    # landmark 0: (0.5 + 0.25) / 2 = 0.375; landmark 1: 0.25 / 1 (not (0.25 + 0) / 2);
    # landmark 2 never visible -> NaN and left out of the mean: (0.375 + 0.25) / 2 = 0.3125
    per, mean = landmark_normalized_error(LM_PRED, LM_TARGET, LM_VISIBLE)
    assert per[:2] == pytest.approx([0.375, 0.25])
    assert math.isnan(per[2])
    assert mean == pytest.approx(0.3125)


@pytest.mark.parametrize("threshold, expected", [(0.2, 0.0), (0.25, 2 / 3), (0.5, 1.0)])
def test_landmark_detection_rate_hand(threshold, expected):
    # visible distances 0.5, 0.25, 0.25; the invisible 0.75 and NaN count nowhere
    assert landmark_detection_rate(LM_PRED, LM_TARGET, LM_VISIBLE, threshold) == pytest.approx(expected)


def test_landmarks_nothing_visible():
    per, mean = landmark_normalized_error(LM_PRED, LM_TARGET, np.zeros((2, 3), dtype=bool))
    assert np.isnan(per).all() and math.isnan(mean)
    assert landmark_detection_rate(LM_PRED, LM_TARGET, np.zeros((2, 3)), 0.5) == 0.0


def test_landmarks_validation():
    with pytest.raises(ValueError, match=r"pred has shape \(2, 3, 2\) but target has shape \(2, 2, 2\)"):
        landmark_normalized_error(LM_PRED, LM_TARGET[:, :2], LM_VISIBLE)
    with pytest.raises(ValueError, match="visible"):
        landmark_detection_rate(LM_PRED, LM_TARGET, LM_VISIBLE[:1], 0.1)


# --------------------------------------------------------------------------------------------------
# shared behaviour: input types, validation, tie-breaking
# --------------------------------------------------------------------------------------------------


def test_shape_mismatch_message():
    scores, targets = np.zeros((4, 3)), np.zeros((4, 5))
    for fn in (topk_recall, attribute_recall_at_k):
        with pytest.raises(ValueError, match=r"scores has shape \(4, 3\) but targets has shape \(4, 5\)"):
            fn(scores, targets, 1)
    with pytest.raises(ValueError, match=r"scores has shape \(4, 3\) but targets has shape \(4, 5\)"):
        average_precision(scores, targets)
    with pytest.raises(ValueError, match=r"probs has shape \(4, 3\) but targets has shape \(4, 5\)"):
        multilabel_prf(scores, targets)
    with pytest.raises(ValueError, match="2 dimensions"):
        topk_recall(np.zeros(4), np.zeros(4), 1)


def _all_metrics(scores, targets, labels):
    """Every function's output on one input, flattened to a list of floats."""
    out = [
        topk_accuracy(scores, labels, 2),
        topk_recall(scores, targets, 2, mode="any"),
        topk_recall(scores, targets, 2, mode="all"),
        mean_average_precision(scores, targets),
        attribute_recall_at_k(scores, targets, 3),
        *attribute_recall_at_k(scores, targets, 1, groups=np.array([1, 1, 2, 2, 2, 3, 3, 3])).values(),
        *multilabel_prf(scores, targets, threshold=0.5, top_k=3).values(),
    ]
    out += [v for pair in per_label_topk_recall(scores, targets, 3).values() for v in pair]
    return out + average_precision(scores, targets).tolist()


def test_torch_and_numpy_inputs_agree():
    scores, targets = random_multilabel(9, quantise=8)  # ties included
    scores = scores.astype(np.float32)
    labels = np.arange(40) % 8
    expected = _all_metrics(scores, targets, labels)
    got = _all_metrics(torch.from_numpy(scores), torch.from_numpy(targets).bool(), torch.from_numpy(labels))
    assert got == expected  # exact: the same numbers must come out


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors(dtype):
    scores, targets = random_multilabel(10)
    low = torch.from_numpy(scores).to(dtype)
    widened = low.float().numpy()  # the values the half tensor really holds (with its ties)
    labels = np.arange(40) % 8
    assert _all_metrics(low, torch.from_numpy(targets), torch.from_numpy(labels)) == _all_metrics(
        widened, targets, labels
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_tensors():
    scores, targets = random_multilabel(11)
    labels = np.arange(40) % 8
    cuda = _all_metrics(
        torch.from_numpy(scores).cuda(), torch.from_numpy(targets).cuda(), torch.from_numpy(labels).cuda()
    )
    assert cuda == _all_metrics(scores, targets, labels)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.int8, st.tuples(st.integers(0, 5), st.integers(1, 7)), elements=st.integers(-2, 2)),
    st.integers(1, 8),
)
def test_topk_mask_is_stable_descending_sort(scores, k):
    # tiny integer range: ties everywhere; the first k of a stable descending sort are the reference
    expected = np.zeros(scores.shape, dtype=bool)
    for i, row in enumerate(scores.tolist()):
        expected[i, sorted(range(len(row)), key=lambda j: -row[j])[:k]] = True  # sorted() is stable
    assert np.array_equal(_topk_mask(scores.astype(np.float64), k), expected)


# --------------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------------


def test_multilabel_report():
    report = multilabel_report(PRF_PROBS, PRF_TARGETS, ["tee", "dress", "coat"])
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN anywhere
    assert report["num_images"] == 3 and report["num_labels"] == 3
    # label tee: order img0, img1, img2 -> positives at ranks 1, 2 -> AP 1
    # label dress: order img1 (0.7), img0, img2 -> positive at rank 1 -> AP 1; coat: no positive
    assert report["AP"] == {"tee": 1.0, "dress": 1.0, "coat": None}
    assert report["mAP"] == 1.0
    assert report["prf"] == pytest.approx(
        {"CP": 0.5, "CR": 0.75, "CF1": 0.6, "OP": 0.4, "OR": 2 / 3, "OF1": 0.5}
    )
    # top-3 of 3 labels changes nothing: the same as the plain threshold
    assert report["prf_top3"] == pytest.approx(report["prf"])
    # image 2 has no label; img0 ranking 0,1,2 with {0}; img1 ranking 1,2,0 with {0,1}
    assert report["topk"] == pytest.approx(
        {"top1_all": 0.5, "top1_any": 1.0, "top2_all": 0.5, "top2_any": 1.0, "top3_all": 1.0, "top3_any": 1.0}
    )
    assert report["per_label_top2_all"] == {
        "tee": {"recall": 0.5, "support": 2},
        "dress": {"recall": 0.0, "support": 1},
        "coat": {"recall": None, "support": 0},
    }


def test_multilabel_report_validation():
    with pytest.raises(ValueError, match="probabilities"):
        multilabel_report(PRF_PROBS * 4 - 2, PRF_TARGETS, ["a", "b", "c"])  # logits
    with pytest.raises(ValueError, match="label_names has 2 entries"):
        multilabel_report(PRF_PROBS, PRF_TARGETS, ["a", "b"])


def test_classification_report():
    report = classification_report(CAT_SCORES, CAT_LABELS, ["a", "b", "c", "d"], ks=(1, 3, 5))
    json.dumps(report, allow_nan=False)
    assert report.keys() == {"top1", "top3", "per_class_recall", "confusion", "num_images"}  # no top5 of 4
    assert report["top1"] == 0.0 and report["top3"] == pytest.approx(2 / 3)
    # top-1 predictions: img0 -> 1, img1 -> 3, img2 -> 0; true 2, 1, 3
    assert report["confusion"] == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0]]
    assert report["per_class_recall"] == {"a": None, "b": 0.0, "c": 0.0, "d": 0.0}
    assert report["num_images"] == 3
    with pytest.raises(ValueError, match=r"\[0, 4\)"):  # labels checked even when no top-k applies
        classification_report(CAT_SCORES, np.array([0, 1, 7]), ["a", "b", "c", "d"], ks=(5,))


def test_deepfashion_report_parts():
    # DeepFashion coding: 1 positive, -1 negative, 0 unknown -> positives are exactly ATTR_TARGETS
    coded = np.where(ATTR_TARGETS == 1, 1, np.array([[-1, 0, -1, 0, -1, 0], [0, -1, -1, 0, 0, -1]]))
    report = deepfashion_report(
        cat_scores=CAT_SCORES,
        cat_labels=CAT_LABELS,
        attr_scores=ATTR_SCORES,
        attr_targets=torch.from_numpy(coded),
        attr_groups=ATTR_GROUPS,
        lm_pred=LM_PRED,
        lm_target=LM_TARGET,
        lm_visible=LM_VISIBLE,
        ks=(1, 2),
        detection_threshold=0.25,
    )
    json.dumps(report, allow_nan=False)
    assert report["category"] == {"top1": 0.0, "top2": pytest.approx(1 / 3)}
    # "all" ungrouped: k=1 img0 top {0} misses, img1 top {1} misses -> 0; k=2 -> 1/4 (hand test above)
    # AP over the known entries (row 1's attributes 3 and 4 are unknown): attr 0: the negative 0.9
    # above the positive 0.1 -> 1/2; attr 1: 1/2; attr 2 and 4: no positive (no AP); attr 3: 1; attr 5: 1
    assert report["attributes"] == {
        "all": {"top1": 0.0, "top2": 0.25, "mAP": 0.75},
        "texture": {"top1": 0.0, "top2": 0.5, "mAP": 0.5},
        "fabric": {"top1": 0.5, "top2": 0.5, "mAP": 1.0},
    }
    assert report["landmarks"] == {
        "NE": pytest.approx(0.3125),
        "NE_per_landmark": [pytest.approx(0.375), pytest.approx(0.25), None],
        "detection_rate": pytest.approx(2 / 3),
    }


def test_deepfashion_report_only_given_parts():
    assert deepfashion_report() == {}
    assert set(deepfashion_report(lm_pred=LM_PRED[:, :2], lm_target=LM_TARGET[:, :2])) == {"landmarks"}
    with pytest.raises(ValueError, match="cat_scores and cat_labels"):
        deepfashion_report(cat_scores=CAT_SCORES)
    with pytest.raises(ValueError, match="types 1..6"):  # 1-5 DeepFashion's, 6 colour
        deepfashion_report(attr_scores=ATTR_SCORES, attr_targets=ATTR_TARGETS, attr_groups=ATTR_GROUPS + 5)


# --------------------------------------------------------------------------------------------------
# ScoreCollector
# --------------------------------------------------------------------------------------------------


def test_score_collector_accumulates():
    collector = ScoreCollector(["scores", "labels"])
    first = torch.arange(6, dtype=torch.float16).reshape(3, 2).requires_grad_()
    collector.update(scores=first, labels=torch.tensor([0, 1, 1]))
    collector.update(scores=torch.tensor([[7.0, 8.0]]), labels=torch.tensor([2]))
    out = collector.compute()
    assert out["scores"].dtype == torch.float32 and not out["scores"].requires_grad
    assert out["scores"].tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [7.0, 8.0]]
    assert out["labels"].tolist() == [0.0, 1.0, 1.0, 2.0]
    collector.reset()
    collector.update(scores=torch.ones(1, 1), labels=torch.zeros(1))
    out = collector.compute()  # one sample: shapes must survive torchmetrics' scalar squeezing
    assert out["scores"].shape == (1, 1) and out["labels"].shape == (1,)
    assert collector.compute()["labels"].tolist() == [0.0]  # cached result, same shapes


def test_score_collector_errors():
    collector = ScoreCollector(["scores", "targets"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        with pytest.raises(RuntimeError, match="before any update"):
            collector.compute()
    with pytest.raises(ValueError, match="expects exactly the keys"):
        collector.update(scores=torch.ones(2, 3))
    with pytest.raises(ValueError, match="same batch"):
        collector.update(scores=torch.ones(2, 3), targets=torch.ones(3, 3))
    with pytest.raises(ValueError, match="identifiers"):
        ScoreCollector(["scores", "scores"])


def _collect_on_rank(rank: int, world_size: int, port: int, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        collector = ScoreCollector(["scores", "index"])
        for batch in range(rank + 1):  # rank 0 sees one batch, rank 1 two: uneven on purpose
            index = torch.tensor([10 * rank + batch])
            collector.update(scores=index[:, None].float().repeat(1, 3), index=index)
        out = collector.compute()
        queue.put((rank, out["index"].tolist(), tuple(out["scores"].shape)))
    finally:
        dist.destroy_process_group()


def test_score_collector_gathers_all_ranks():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # spawn, not fork: forking a process whose OpenMP pools earlier tests started can deadlock
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    workers = mp.start_processes(
        _collect_on_rank, args=(2, port, queue), nprocs=2, start_method="spawn", join=False
    )
    deadline = time.monotonic() + 180
    while not workers.join(timeout=1):  # raises if a worker raised
        if time.monotonic() > deadline:
            for process in workers.processes:
                process.kill()
            pytest.fail("DDP workers did not finish within 180 s")
    results = sorted(queue.get() for _ in range(2))
    # every rank gets the concatenation over both ranks (rank-major), not only its own samples
    assert results == [(0, [0.0, 10.0, 11.0], (3, 3)), (1, [0.0, 10.0, 11.0], (3, 3))]


def test_average_precision_over_known_entries_matches_sklearn_on_the_known_rows():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    scores = rng.random((40, 5))
    targets = (rng.random((40, 5)) < 0.4).astype(int)
    known = rng.random((40, 5)) < 0.7
    targets[~known] = 1  # unknown entries must not count, whatever their value
    got = average_precision(scores, targets, known)
    for c in range(5):
        rows = known[:, c]
        assert got[c] == pytest.approx(average_precision_score(targets[rows, c], scores[rows, c]))
    # without the mask the unknown "positives" would change every AP
    assert not np.allclose(average_precision(scores, targets), got)
