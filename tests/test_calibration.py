"""Calibration: temperature scaling, expected calibration error, the tag threshold, the product-photo
check."""

from __future__ import annotations

import numpy as np
import pytest

from fashionlens.inference.calibration import (
    choose_tag_threshold,
    fit_temperature,
    product_tag_check,
    returned_tags,
    softmax,
)
from fashionlens.metrics import expected_calibration_error


def test_temperature_by_hand():
    # two classes, logits (2, 0) for every photo, 6 of 8 right: the NLL is smallest where
    # sigmoid(2 / T) = 0.75, i.e. T = 2 / ln 3 = 1.8205
    logits = np.tile([2.0, 0.0], (8, 1))
    labels = np.array([0] * 6 + [1] * 2)
    assert fit_temperature(logits, labels) == pytest.approx(2 / np.log(3), rel=2e-3)


def test_temperature_recovers_the_one_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax(logits, 2.5)])
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, fit_temperature(logits, labels)), labels)
    assert after < 0.02 < before


def test_ece_against_a_plain_loop():
    rng = np.random.default_rng(1)
    scores = softmax(rng.normal(0, 2, size=(500, 4)))
    labels = rng.integers(0, 4, 500)
    conf, right = scores.max(1), scores.argmax(1) == labels
    want = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        sel = (conf >= lo) & ((conf < hi) if b < 9 else (conf <= hi))
        if sel.any():
            want += sel.mean() * abs(right[sel].mean() - conf[sel].mean())
    assert expected_calibration_error(scores, labels, n_bins=10) == pytest.approx(want, abs=1e-12)


CLASSES = ["dress", "t-shirt"]
TAGS = ["bag", "dress", "shirt", "t-shirt", "top"]


def test_product_check_by_hand():
    scores = np.array([
        [0.9, 0.8, 0.1, 0.0, 0.0],  # a dress photo: bag (wrong) and dress (right) returned
        [0.0, 0.0, 0.6, 0.7, 0.2],  # a T-shirt: shirt and t-shirt returned, both right (shirt is acceptable)
        [0.1, 0.2, 0.1, 0.3, 0.4],  # a T-shirt: nothing returned
    ])  # fmt: skip
    check = product_tag_check(scores, np.array([0, 1, 1]), CLASSES, TAGS, threshold=0.5)
    assert check["precision"] == pytest.approx(3 / 4) and check["tags_per_photo"] == pytest.approx(4 / 3)
    assert check["at_least_one_correct"] == pytest.approx(2 / 3) and check["no_tag"] == pytest.approx(1 / 3)
    assert check["per_class"] == {"dress": 0.5, "t-shirt": 1.0}


def test_tag_threshold_meets_the_product_precision_then_maximises_of1():
    street_scores = np.array([[0.9, 0.3], [0.2, 0.6]])
    street_targets = np.array([[1, 1], [0, 1]])
    product_scores = np.array([[0.7, 0.4], [0.35, 0.8]])
    product_targets = np.array([[0, 0], [0, 1]])
    weights = np.ones((2, 2))
    # t = 0.3: street TP 3 FP 0; product TP 1, FP 3 (0.7, 0.4, 0.35) -> precision 0.25
    # t = 0.5: street TP 2 FN 1; product TP 1 FP 1 -> precision 0.5, OF1 = 2*3 / (6 + 1 + 1) = 0.75
    # t = 0.75: street TP 1 FN 2; product TP 1 FP 0 -> precision 1.0, OF1 = 2*2 / (4 + 0 + 2) = 0.667
    t, info = choose_tag_threshold(
        street_scores,
        street_targets,
        product_scores,
        product_targets,
        weights,
        min_precision=0.9,
        grid=np.array([0.3, 0.5, 0.75]),
    )
    assert t == 0.75 and info["product_precision"] == 1.0 and info["OF1"] == pytest.approx(2 / 3)
    t, info = choose_tag_threshold(
        street_scores,
        street_targets,
        product_scores,
        product_targets,
        weights,
        min_precision=0.5,
        grid=np.array([0.3, 0.5, 0.75]),
    )
    assert t == 0.5 and info["OF1"] == pytest.approx(0.75)
    # an acceptable (weight 0) product tag is right in the precision (as product_tag_check counts it)
    # and counts neither way in the OF1: the 0.7 false positive disappears
    weights[0, 0] = 0
    t, info = choose_tag_threshold(
        street_scores,
        street_targets,
        product_scores,
        product_targets,
        weights,
        min_precision=0.9,
        grid=np.array([0.3, 0.5, 0.75]),
    )
    assert t == 0.5 and info["product_precision"] == 1.0 and info["OF1"] == pytest.approx(2 * 3 / (6 + 0 + 1))


def test_returned_tags_keep_each_photos_best_ones():
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.1], [0.1, 0.1, 0.4]])
    assert returned_tags(scores, 0.5).tolist() == [
        [True, True, False],
        [False, False, False],
        [False, False, False],
    ]
    assert returned_tags(scores, 0.5, min_tags=1).tolist() == [[True, True, False], [False, True, False],
                                                               [False, False, True]]  # fmt: skip
    assert returned_tags(scores, 0.5, min_tags=2).sum(axis=1).tolist() == [2, 2, 2]


def test_min_tags_in_the_product_check_and_the_threshold_choice():
    scores = np.array([
        [0.9, 0.8, 0.1, 0.0, 0.0],  # a dress photo: bag (wrong) and dress (right)
        [0.0, 0.0, 0.6, 0.7, 0.2],  # a T-shirt: shirt and t-shirt, both right
        # a T-shirt: nothing passes 0.5; with min_tags 1, "top" (acceptable: right)
        [0.1, 0.2, 0.1, 0.3, 0.4],
    ])  # fmt: skip
    check = product_tag_check(scores, np.array([0, 1, 1]), CLASSES, TAGS, threshold=0.5, min_tags=1)
    assert (
        check["precision"] == pytest.approx(4 / 5)
        and check["at_least_one_correct"] == 1.0
        and check["no_tag"] == 0
    )
    # the threshold is chosen for the policy that runs: street photo 2's best tag (0.6) is returned at
    # every threshold, so at t = 0.75 street TP 2 FN 1; product: (0.7, 0.8) -> 0.7 wrong, 0.8 right
    street_scores, street_targets = np.array([[0.9, 0.3], [0.2, 0.6]]), np.array([[1, 1], [0, 1]])
    product_scores, product_targets = np.array([[0.7, 0.4], [0.35, 0.8]]), np.array([[0, 0], [0, 1]])
    t, info = choose_tag_threshold(
        street_scores,
        street_targets,
        product_scores,
        product_targets,
        np.ones((2, 2)),
        min_precision=0.4,
        grid=np.array([0.75]),
        min_tags=1,
    )
    assert (
        t == 0.75 and info["product_precision"] == 0.5 and info["OF1"] == pytest.approx(2 * 3 / (6 + 1 + 1))
    )
