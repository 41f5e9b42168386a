"""A DDP-safe collector of per-sample tensors, so that evaluation metrics see every rank's data.

fashionlens reduces evaluation metrics across ranks by gathering the raw per-sample scores and
targets (``dist_reduce_fx="cat"``) and computing the functional metrics once on the whole set,
instead of averaging per-rank metric values (which is wrong for mAP, recall@k, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["ScoreCollector"]

_PREFIX = "collected_"  # state names are prefixed so a key can never shadow a Metric attribute


class ScoreCollector(Metric):
    """Accumulate named per-sample tensors over batches (and over ranks under DDP).

    Each :meth:`update` stores every tensor detached, as float32, on the metric's device; under DDP
    :meth:`compute` returns the concatenation over all ranks (rank-major, so not in dataset order,
    and including any samples a ``DistributedSampler`` duplicated to pad the last batch: collect an
    index key if you need to de-duplicate or reorder).

    Args:
        keys: names of the tensors passed to :meth:`update` (valid Python identifiers).
        **kwargs: passed to :class:`torchmetrics.Metric` (e.g. ``dist_sync_on_step``).

    Example:
        >>> import torch
        >>> collector = ScoreCollector(["scores", "targets"])
        >>> collector.update(scores=torch.rand(4, 3), targets=torch.ones(4, 3))
        >>> collector.update(scores=torch.rand(2, 3), targets=torch.zeros(2, 3))
        >>> {key: tuple(value.shape) for key, value in collector.compute().items()}
        {'scores': (6, 3), 'targets': (6, 3)}
    """

    full_state_update = False

    def __init__(self, keys: Sequence[str], **kwargs: object) -> None:
        super().__init__(**kwargs)
        keys = tuple(keys)
        if not keys or len(set(keys)) != len(keys) or not all(k.isidentifier() for k in keys):
            raise ValueError(f"keys must be unique, non-empty Python identifiers, got {keys!r}")
        self.keys = keys
        for key in keys:
            self.add_state(_PREFIX + key, default=[], dist_reduce_fx="cat")

    def update(self, **tensors: torch.Tensor) -> None:
        """Append one batch: one tensor per key, all with the same first (batch) dimension."""
        if set(tensors) != set(self.keys):
            raise ValueError(f"update() expects exactly the keys {sorted(self.keys)}, got {sorted(tensors)}")
        sizes = {key: (t.shape[0] if t.dim() else None) for key, t in tensors.items()}
        if None in sizes.values() or len(set(sizes.values())) != 1:
            raise ValueError(f"every tensor needs the same batch (first) dimension, got {sizes}")
        for key, tensor in tensors.items():
            getattr(self, _PREFIX + key).append(tensor.detach().to(self.device, torch.float32))

    def compute(self) -> dict[str, torch.Tensor]:
        """Return ``{key: tensor}`` concatenated along dim 0 over batches (and ranks under DDP)."""
        out = {}
        for key in self.keys:
            state = getattr(self, _PREFIX + key)
            if isinstance(state, list) and not state:
                raise RuntimeError("ScoreCollector.compute() called before any update(): nothing collected")
            out[key] = dim_zero_cat(state)
        self._shapes = {key: value.shape for key, value in out.items()}
        return out

    def _wrap_compute(self, compute: Callable) -> Callable:
        # torchmetrics squeezes every one-element result to 0-d; a collector must keep shapes like (1, 1)
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def keep_shapes(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
            out = wrapped(*args, **kwargs)
            return {key: value.reshape(self._shapes[key]) for key, value in out.items()}

        return keep_shapes
