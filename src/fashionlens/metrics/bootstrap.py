"""Paired bootstrap over images: confidence intervals of metrics and of the differences between models.

Every model is scored on the *same* resampled images in each round, so the interval of a difference
reflects only how the models differ on images, not which images happened to be drawn (a 0.02 mAP gap
can be clear on 150 photos when the two models err on the same ones, and noise when they do not).
A model may be several runs (seeds): its value in a round is then the mean of its runs' metrics on
the same images, so the interval covers the sampling of images with the seed noise averaged out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class BootstrapResult:
    """Metric values of M models: on all images (``observed``, (M,)) and per round (``samples``, (R, M))."""

    observed: np.ndarray
    samples: np.ndarray
    level: float = 0.95

    def interval(self, m: int) -> tuple[float, float]:
        """Percentile interval of model ``m``'s metric."""
        return _percentiles(self.samples[:, m], self.level)

    def difference(self, m: int, ref: int) -> dict[str, float]:
        """Model ``m`` minus model ``ref``: observed delta, its percentile interval, and ``p_not_better``,
        the share of rounds in which ``m`` did not beat ``ref`` (a one-sided bootstrap p-value)."""
        d = self.samples[:, m] - self.samples[:, ref]
        lo, hi = _percentiles(d, self.level)
        return {"delta": float(self.observed[m] - self.observed[ref]), "lo": lo, "hi": hi,
                "p_not_better": float(np.mean(d <= 0))}


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    v = values[~np.isnan(values)]
    if not len(v):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(v, [tail, 100 - tail])
    return float(lo), float(hi)


def _value(metric: Metric, runs: Sequence[np.ndarray], targets: np.ndarray, rows: np.ndarray | None) -> float:
    if rows is None:
        return float(np.mean([metric(s, targets) for s in runs]))
    return float(np.mean([metric(s[rows], targets[rows]) for s in runs]))


def paired_bootstrap(metric: Metric, scores: Sequence[np.ndarray | Sequence[np.ndarray]], targets: np.ndarray,
                     resamples: int = 1000, seed: int = 0, level: float = 0.95) -> BootstrapResult:
    """Bootstrap the images shared by several models' scores.

    Args:
        metric: ``metric(scores, targets) -> float`` (e.g. ``mean_average_precision``).
        scores: per model, an (N, ...) score array over the same N images in the same order, or a
            list of them (runs with different seeds: their metric values are averaged).
        targets: the (N, ...) ground truth.
        resamples: bootstrap rounds R; each draws N images with replacement.
        seed: seed of the draws (the same seed gives the same rounds for any models).
        level: coverage of the percentile intervals.

    Returns:
        A :class:`BootstrapResult`.

    Example:
        >>> import numpy as np
        >>> from fashionlens.metrics import mean_average_precision
        >>> t = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
        >>> good, bad = t + 0.1, 1 - t + 0.1
        >>> r = paired_bootstrap(mean_average_precision, [good, bad], t, resamples=200)
        >>> float(r.observed[0]), round(float(r.observed[1]), 4), round(r.difference(0, 1)["delta"], 4)
        (1.0, 0.4167, 0.5833)
    """
    runs = [list(s) if isinstance(s, (list, tuple)) else [s] for s in scores]
    targets = np.asarray(targets)
    n = len(targets)
    for m, model_runs in enumerate(runs):
        for s in model_runs:
            if len(s) != n:
                raise ValueError(f"model {m} has scores for {len(s)} images, the targets for {n}")
    rng = np.random.default_rng(seed)
    observed = np.array([_value(metric, r, targets, None) for r in runs])
    samples = np.empty((resamples, len(runs)))
    for i in range(resamples):
        rows = rng.integers(0, n, n)
        samples[i] = [_value(metric, r, targets, rows) for r in runs]
    return BootstrapResult(observed, samples, level)
