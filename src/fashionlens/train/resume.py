"""Crash safety of training: atomic checkpoints, resumable data order, saved RNG state.

A run killed at any moment (SIGKILL, power loss, full disk) must restart from ``last.ckpt`` and
continue as if it had never stopped. Three things make that true:

* :class:`AtomicCheckpointIO` writes every Lightning checkpoint to a temporary file in the same
  folder, fsyncs and renames it, so ``last.ckpt`` is always the previous or the new checkpoint, never
  half of one (Lightning's own ``TorchCheckpointIO`` truncates the file and writes it in place). It
  refuses to save non-finite weights and loads with ``weights_only=True`` (no arbitrary unpickling).
* :class:`ResumableDataLoader` + :class:`ResumableBatchSampler` + :class:`EpochShuffleSampler`: the
  shuffle order depends only on ``(seed, epoch)``, and the loader is *stateful* (``state_dict`` /
  ``load_state_dict``): Lightning 2.x stores the state of such loaders in the checkpoint and loads it
  before it creates the epoch's iterator. Without it, Lightning restores the loop counters of a
  mid-epoch checkpoint but restarts the data from batch 0 (it only warns), so the resumed epoch
  would train on the first batches twice and never see the last ones.
* :class:`RngStateCallback` saves the torch, numpy and Python RNG states in the checkpoint and puts
  them back just before the first resumed batch, so random augmentations and dropout continue the
  same streams. (With ``num_workers > 0`` each worker has its own RNG, which is not saved: the batch
  order is still exact, the augmentations are then statistically, not bitwise, the same.)
"""

from __future__ import annotations

import io
import itertools
import random
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback
from torch.utils.data import BatchSampler, DataLoader, Sampler

from fashionlens.checkpoint import CheckpointError
from fashionlens.fileio import atomic_write_bytes
from fashionlens.train.task import NonFiniteLossError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that never leaves a partial file and never unpickles code."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Serialise to bytes, then write them atomically (temp file, fsync, rename).

        Raises:
            NonFiniteLossError: the weights hold NaN or inf; the previous checkpoint is kept.
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        bad = non_finite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteLossError(
                f"not saving {path}: non-finite weights in {', '.join(bad[:5])}; "
                "the last good checkpoint is kept. Lower optim.lr or check the data."
            )
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load with ``weights_only=True`` unless told otherwise; a damaged file names itself.

        Raises:
            CheckpointError: the file is truncated, corrupt or holds more than tensors and plain data.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        try:
            return torch.load(
                path, map_location=map_location or "cpu", weights_only=weights_only is not False
            )
        except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for damaged files
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"cannot resume from {path}: the checkpoint is truncated, corrupt or not a "
                f"fashionlens checkpoint ({first_line}). Delete it, or train with --no-resume "
                "to start over."
            ) from None


def non_finite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` that hold NaN or inf."""
    return [
        name
        for name, t in state_dict.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of ``range(num_samples)`` that depends only on ``(seed, epoch)``.

    Unlike a ``RandomSampler`` driven by one generator that advances from epoch to epoch, the order
    of epoch ``e`` can be rebuilt from nothing after a restart. Lightning calls :meth:`set_epoch`
    at the start of every epoch.

    Example:
        >>> s = EpochShuffleSampler(5, seed=0)
        >>> s.set_epoch(3)
        >>> sorted(s) == [0, 1, 2, 3, 4] and list(s) == list(EpochShuffleSampler(5, 0, epoch=3))
        True
    """

    def __init__(self, num_samples: int, seed: int = 0, epoch: int = 0):
        self.num_samples, self.seed, self.epoch = int(num_samples), int(seed), int(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed % 2**32, self.epoch))
        return iter(rng.permutation(self.num_samples).tolist())

    def __len__(self) -> int:
        return self.num_samples


class ResumableBatchSampler(BatchSampler):
    """A ``BatchSampler`` whose next pass can start after the first ``skip`` batches.

    Skipping happens on index lists, so the images of the skipped batches are never read. Keeps the
    ``BatchSampler(sampler, batch_size, drop_last)`` signature, so Lightning can rebuild it around a
    ``DistributedSampler`` under DDP (then ``skip`` counts this rank's batches, which is what the
    rank's loader counted).
    """

    def __init__(self, sampler: Sampler[int] | Sized, batch_size: int, drop_last: bool):
        super().__init__(sampler, batch_size, drop_last)
        self.skip = 0

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0  # only the first pass after a resume is shortened
        yield from itertools.islice(super().__iter__(), skip, None)


class ResumableDataLoader(DataLoader):
    """A DataLoader with ``state_dict``/``load_state_dict``: the epoch and the batches it has yielded.

    Lightning 2.x saves the state of such stateful loaders with every checkpoint and, on a mid-epoch
    resume, loads it before it creates the iterator; the loader then skips the batches already
    trained on. Lightning does not prefetch from loaders that have a length, so at checkpoint time
    the number yielded is the number trained on. Needs a :class:`ResumableBatchSampler`.
    """

    _yielded = 0

    def __iter__(self) -> Iterator[Any]:
        batch_sampler = self._resumable_batch_sampler()
        self._yielded = batch_sampler.skip
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Where this loader is: ``{"epoch": e, "batches": batches yielded in epoch e}``."""
        return {
            "epoch": int(getattr(self._resumable_batch_sampler().sampler, "epoch", 0)),
            "batches": int(self._yielded),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Arrange for the next pass to continue epoch ``state["epoch"]`` after ``state["batches"]``."""
        epoch, done = int(state["epoch"]), int(state["batches"])
        if done >= len(self):  # saved after the last batch of the epoch: the next one starts afresh
            epoch, done = epoch + 1, 0
        batch_sampler = self._resumable_batch_sampler()
        if hasattr(batch_sampler.sampler, "set_epoch"):  # before Lightning does: workers start at iter()
            batch_sampler.sampler.set_epoch(epoch)
        batch_sampler.skip = done
        self._yielded = done

    def _resumable_batch_sampler(self) -> ResumableBatchSampler:
        if not isinstance(self.batch_sampler, ResumableBatchSampler):
            raise TypeError(
                f"{type(self).__name__} needs batch_sampler=ResumableBatchSampler(...), "
                f"got {type(self.batch_sampler).__name__}"
            )
        return self.batch_sampler


class RngStateCallback(Callback):
    """Save the torch (CPU and CUDA), numpy and Python RNG states; restore them on resume.

    The states are captured when a checkpoint is written and put back in ``on_train_start``, the
    last hook before Lightning fetches the first resumed batch, so nothing Lightning does while it
    sets up (building iterators, loading state) shifts the streams. Everything is stored as tensors
    and plain tuples, so the checkpoint still loads with ``weights_only=True``.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": (
                np_state[0],
                torch.from_numpy(np_state[1].astype(np.int64)),
                *map(_plain, np_state[2:]),
            ),
            "python": random.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        random.setstate(_tuples(state["python"]))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples; a round trip through a checkpoint may give lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
