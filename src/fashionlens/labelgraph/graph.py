"""Label co-occurrence graph for the ML-GCN head (seed B, with its eq. 2 re-weighting).

From the training targets (N images x C labels, 0/1):

- ``M[i, j]`` = number of images with both labels i and j (i != j; the diagonal is 0),
  ``N[i]`` = number of images with label i (:func:`cooccurrence`);
- ``P[i, j] = M[i, j] / N[i]`` = P(label j | label i), 0 where ``N[i] = 0``
  (:func:`conditional_probability`);
- ``A[i, j] = 1 if P[i, j] >= tau`` (off the diagonal);
- ``A'[i, j] = p * A[i, j] / sum_{k != j} A[k, j]`` for i != j, ``A'[i, i] = 1 - p``; a column without
  edges stays 0 off the diagonal (:func:`correlation_matrix`);
- ``Â = D^-1/2 A'^T D^-1/2`` with ``D = diag(row sums of A')`` (:func:`normalize_adjacency`, ML-GCN's
  ``gen_adj``; note the transpose).

Everything is computed in float64; only :attr:`LabelGraph.adjacency`, which becomes a model buffer, is
float32. :func:`build_label_graph` is the one call the trainer makes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fashionlens.errors import ConfigError

__all__ = [
    "GRAPH_KINDS",
    "LabelGraph",
    "binarize",
    "build_label_graph",
    "conditional_probability",
    "cooccurrence",
    "correlation_matrix",
    "normalize_adjacency",
]

GRAPH_KINDS = ("cooccurrence", "identity")


@dataclass(frozen=True)
class LabelGraph:
    """The label graph a GCN head needs, with the statistics it was built from.

    Attributes:
        adjacency: ``(C, C)`` float32, the normalised adjacency ``Â`` (the identity for ``kind="identity"``).
        counts: ``(C, C)`` int64 co-occurrence counts ``M`` (diagonal 0).
        nums: ``(C,)`` int64 label counts ``N``.
        num_edges: number of off-diagonal ones in the binarised ``A`` (0 for ``kind="identity"``).
        tau: binarisation threshold.
        p: re-weighting factor.
        kind: ``"cooccurrence"`` or ``"identity"``.
    """

    adjacency: np.ndarray
    counts: np.ndarray
    nums: np.ndarray
    num_edges: int
    tau: float
    p: float
    kind: str = "cooccurrence"

    @property
    def num_labels(self) -> int:
        """Number of labels C."""
        return int(self.nums.shape[0])


def check_unit_interval(name: str, value: float) -> float:
    """``value`` as a float; a :class:`ConfigError` (a ValueError) naming ``name`` unless it is in [0, 1]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return v


def _check_targets(targets: np.ndarray) -> np.ndarray:
    """Validate a 0/1 target matrix and return it as float64 ``(N, C)``."""
    t = np.asarray(targets)
    if t.ndim != 2:
        raise ValueError(f"targets must be a 2-D (num_images, num_labels) 0/1 array, got shape {t.shape}")
    if t.shape[1] == 0:
        raise ValueError(f"targets must have at least one label column, got shape {t.shape}")
    if t.dtype.kind not in "biuf":
        raise ValueError(f"targets must be numeric or boolean 0/1, got dtype {t.dtype}")
    t = t.astype(np.float64)
    bad = ~((t == 0.0) | (t == 1.0))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"targets must contain only 0 and 1, got {t[row, col]!r} at [{row}, {col}]")
    return t


def _check_counts(counts: np.ndarray, nums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(counts, dtype=np.float64)
    n = np.asarray(nums, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"counts must be a square (C, C) matrix, got shape {m.shape}")
    if n.shape != (m.shape[0],):
        raise ValueError(f"nums must have shape ({m.shape[0]},) to match counts {m.shape}, got {n.shape}")
    if not (np.isfinite(m).all() and np.isfinite(n).all()) or (m < 0).any() or (n < 0).any():
        raise ValueError("counts and nums must be finite and non-negative")
    off = ~np.eye(m.shape[0], dtype=bool)
    if (m[off] > np.minimum.outer(n, n)[off]).any():
        raise ValueError("counts[i, j] must not exceed nums[i] or nums[j] (are counts and nums swapped?)")
    return m, n


def cooccurrence(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label co-occurrence counts ``M`` and label counts ``N``.

    Args:
        targets: ``(N, C)`` 0/1 array (bool, int or float).

    Returns:
        ``(counts, nums)``: ``counts[i, j]`` = images with both i and j (int64, diagonal 0),
        ``nums[i]`` = images with label i (int64).

    Raises:
        ValueError: if ``targets`` is not a 2-D 0/1 array.

    Example:
        >>> counts, nums = cooccurrence(np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0]]))
        >>> counts.tolist(), nums.tolist()
        ([[0, 2, 1], [2, 0, 0], [1, 0, 0]], [3, 2, 1])
    """
    t = _check_targets(targets)  # (N, C) float64: the BLAS product is exact below 2**53
    both = np.rint(t.T @ t).astype(np.int64)  # (C, C)
    nums = np.diagonal(both).copy()
    np.fill_diagonal(both, 0)
    return both, nums


def conditional_probability(counts: np.ndarray, nums: np.ndarray) -> np.ndarray:
    """``P[i, j] = M[i, j] / N[i]`` = P(label j | label i); rows with ``N[i] = 0`` are 0.

    Example:
        >>> counts = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
        >>> conditional_probability(counts, np.array([4, 2, 0])).tolist()
        [[0.0, 0.25, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    m, n = _check_counts(counts, nums)
    prob = np.divide(m, n[:, None], out=np.zeros_like(m), where=n[:, None] > 0)
    np.fill_diagonal(prob, 0.0)
    return prob


def binarize(counts: np.ndarray, nums: np.ndarray, tau: float = 0.4) -> np.ndarray:
    """Binarised graph ``A[i, j] = 1 if P[i, j] >= tau`` off the diagonal (int64, diagonal 0).

    ``tau = 0`` links every pair; ``tau = 1`` keeps only "j whenever i" pairs.

    Example:
        >>> binarize(np.array([[0, 2], [2, 0]]), np.array([5, 2]), tau=0.4).tolist()
        [[0, 1], [1, 0]]
    """
    tau = check_unit_interval("tau", tau)
    adj = (conditional_probability(counts, nums) >= tau).astype(np.int64)
    np.fill_diagonal(adj, 0)
    return adj


def correlation_matrix(counts: np.ndarray, nums: np.ndarray, tau: float = 0.4, p: float = 0.2) -> np.ndarray:
    """Re-weighted correlation matrix ``A'`` (ML-GCN eq. 8), float64 ``(C, C)``.

    ``A'[i, j] = p * A[i, j] / sum_{k != j} A[k, j]`` for i != j and ``A'[i, i] = 1 - p``; a column
    without edges stays 0 off the diagonal.

    Args:
        counts: ``(C, C)`` co-occurrence counts from :func:`cooccurrence`.
        nums: ``(C,)`` label counts.
        tau: binarisation threshold in [0, 1].
        p: weight given to the neighbours, in [0, 1].

    Example:
        >>> correlation_matrix(np.array([[0, 2], [2, 0]]), np.array([2, 4]), tau=0.5, p=0.2).tolist()
        [[0.8, 0.2], [0.2, 0.8]]
    """
    p = check_unit_interval("p", p)
    adj = binarize(counts, nums, tau).astype(np.float64)
    col = adj.sum(axis=0)  # (C,) sum over k != j: the diagonal is 0
    out = np.divide(p * adj, col[None, :], out=np.zeros_like(adj), where=col[None, :] > 0)
    np.fill_diagonal(out, 1.0 - p)
    return out


def normalize_adjacency(adjacency: np.ndarray) -> np.ndarray:
    """Symmetric normalisation ``D^-1/2 A^T D^-1/2``, ``D = diag(row sums of A)`` (ML-GCN's ``gen_adj``).

    Rows summing to 0 (or less) get ``D^-1/2 = 0``, so they give zero rows and columns, never inf/NaN.

    Args:
        adjacency: ``(C, C)`` non-negative matrix, e.g. :func:`correlation_matrix`'s output.

    Returns:
        ``(C, C)`` float64.

    Example:
        >>> normalize_adjacency(np.array([[1.0, 3.0], [0.0, 2.0]])).round(4).tolist()
        [[0.25, 0.0], [1.0607, 1.0]]
    """
    a = np.asarray(adjacency, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be a square (C, C) matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("adjacency must be finite")
    rows = a.sum(axis=1)
    inv_sqrt = np.zeros_like(rows)
    np.power(rows, -0.5, out=inv_sqrt, where=rows > 0)
    return inv_sqrt[:, None] * a.T * inv_sqrt[None, :]


def build_label_graph(
    targets: np.ndarray, tau: float = 0.4, p: float = 0.2, kind: str = "cooccurrence"
) -> LabelGraph:
    """Build the GCN adjacency from training targets.

    Args:
        targets: ``(N, C)`` 0/1 training targets.
        tau: binarisation threshold in [0, 1] (ML-GCN: 0.4).
        p: re-weighting factor in [0, 1] (ML-GCN: 0.2).
        kind: ``"cooccurrence"`` (the ML-GCN graph) or ``"identity"`` (the no-graph ablation: each label
            sees only itself; counts and nums are still reported).

    Returns:
        A :class:`LabelGraph` whose ``adjacency`` is float32, ready to copy into a model buffer.

    Raises:
        ValueError: on a bad ``kind``, ``tau``, ``p`` or ``targets``.

    Example:
        >>> g = build_label_graph(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]]), tau=0.4, p=0.2)
        >>> g.num_edges, g.adjacency.dtype, g.adjacency.shape
        (2, dtype('float32'), (3, 3))
    """
    if kind not in GRAPH_KINDS:
        raise ConfigError(f"kind must be one of {GRAPH_KINDS}, got {kind!r}")
    tau = check_unit_interval("tau", tau)
    p = check_unit_interval("p", p)
    counts, nums = cooccurrence(targets)
    if kind == "identity":
        eye = np.eye(nums.shape[0], dtype=np.float32)
        return LabelGraph(eye, counts, nums, 0, tau, p, kind)
    num_edges = int(binarize(counts, nums, tau).sum())
    adjacency = normalize_adjacency(correlation_matrix(counts, nums, tau, p)).astype(np.float32)
    return LabelGraph(adjacency, counts, nums, num_edges, tau, p, kind)
