"""Paired bootstrap: against scipy's bootstrap, and the properties a paired comparison must have."""

from __future__ import annotations

import numpy as np
import pytest

from fashionlens.metrics import mean_average_precision, paired_bootstrap


def _mean_of_first(scores: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(scores[:, 0]))


def test_interval_of_a_mean_matches_scipy():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(0)
    x = rng.exponential(size=(300, 1))
    ours = paired_bootstrap(_mean_of_first, [x], np.zeros(300), resamples=4000, seed=1)
    ref = bootstrap(
        (x[:, 0],), np.mean, n_resamples=4000, method="percentile", random_state=2
    ).confidence_interval
    lo, hi = ours.interval(0)
    assert ours.observed[0] == pytest.approx(x.mean())
    # two independent Monte Carlo estimates of the same percentiles: close, not equal
    assert lo == pytest.approx(ref.low, abs=0.02) and hi == pytest.approx(ref.high, abs=0.02)
    assert lo < x.mean() < hi


def test_paired_differences():
    rng = np.random.default_rng(0)
    targets = (rng.random((120, 6)) < 0.3).astype(int)
    good = targets + rng.normal(0, 0.6, targets.shape)
    noisy = targets + rng.normal(0, 1.5, targets.shape)
    r = paired_bootstrap(mean_average_precision, [good, noisy, good], targets, resamples=300, seed=0)
    same = r.difference(2, 0)
    assert same == {"delta": 0.0, "lo": 0.0, "hi": 0.0, "p_not_better": 1.0}  # a model against itself
    d = r.difference(0, 1)
    assert d["delta"] == pytest.approx(
        mean_average_precision(good, targets) - mean_average_precision(noisy, targets)
    )
    assert 0 < d["lo"] <= d["delta"] <= d["hi"] and d["p_not_better"] == 0.0
    # the same seed draws the same photos: the first model's rounds do not depend on the others
    alone = paired_bootstrap(mean_average_precision, [good], targets, resamples=300, seed=0)
    assert np.array_equal(alone.samples[:, 0], r.samples[:, 0])


def test_runs_of_one_model_are_averaged():
    rng = np.random.default_rng(3)
    targets = (rng.random((50, 4)) < 0.4).astype(int)
    a, b = rng.random((50, 4)), rng.random((50, 4))
    r = paired_bootstrap(mean_average_precision, [[a, b]], targets, resamples=20)
    expected = (mean_average_precision(a, targets) + mean_average_precision(b, targets)) / 2
    assert r.observed[0] == pytest.approx(expected)


def test_scores_for_other_photos_are_refused():
    with pytest.raises(ValueError, match="model 1 has scores for 3 images, the targets for 4"):
        paired_bootstrap(_mean_of_first, [np.zeros((4, 1)), np.zeros((3, 1))], np.zeros(4), resamples=2)
