"""The metrics' input checks: numpy arrays or torch tensors (any float dtype, any device) in, checked numpy
arrays out, or a ``ValueError`` naming the argument and what was expected."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a numpy array on the CPU; fp16/bf16 become float32 (order-preserving)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # numpy has no bfloat16; widening keeps every value exactly
        return x.cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}") from err
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return arr


def as_scores(x: Any, name: str = "scores", ndim: int = 2) -> np.ndarray:
    arr = to_numpy(x, name)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; rankings of NaN scores are undefined")
    return arr


def as_binary(x: Any, name: str, shape: tuple[int, ...], like: str = "scores") -> np.ndarray:
    """Return a bool array of ``shape`` from a 0/1 (or bool) array; anything else is an error."""
    arr = to_numpy(x, name)
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{like} has shape {tuple(shape)} but {name} has shape {tuple(arr.shape)}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be 0/1 or bool, got dtype {arr.dtype}")
    if not ((arr == 0) | (arr == 1)).all():
        found = np.unique(arr[(arr != 0) & (arr != 1)])[:5].tolist()
        raise ValueError(
            f"{name} must contain only 0 and 1, found {found}; for DeepFashion -1/0/1 attribute "
            f"labels pass (targets == 1)"
        )
    return arr == 1


def as_labels(labels: Any, scores_shape: tuple[int, ...]) -> np.ndarray:
    """Return ``labels`` as an int64 array ``(N,)`` of class indices valid for ``scores_shape``."""
    n, c = scores_shape
    y = to_numpy(labels, "labels")
    if y.shape != (n,):
        raise ValueError(
            f"labels must have shape ({n},) to match scores {tuple(scores_shape)}, got {tuple(y.shape)}"
        )
    if y.dtype.kind not in "iu":
        if y.dtype.kind != "f" or not np.array_equal(y, np.round(y)):
            raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
        y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"labels must lie in [0, {c}), found [{y.min()}, {y.max()}]")
    return y.astype(np.int64, copy=False)
