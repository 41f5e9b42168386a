"""Crash safety of training: atomic checkpoints, kill -9 and resume, NaN losses, bad output dirs.

Every test here fails without the mechanism it names (see fashionlens.train.resume).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from fashionlens.checkpoint import CheckpointError, ModelInfo, load_model_file, save_model
from fashionlens.cli import app
from fashionlens.data.config import DataConfig
from fashionlens.models import FashionNet
from fashionlens.train import fit as fit_module
from fashionlens.train import task as task_module
from fashionlens.train.config import load_config
from fashionlens.train.resume import (
    AtomicCheckpointIO,
    EpochShuffleSampler,
    ResumableBatchSampler,
    ResumableDataLoader,
)
from fashionlens.train.task import NonFiniteLossError

STEPS_PER_EPOCH = 10  # 84 training images (70% of 120), batch 8, drop_last


def _settings(colour_csv: Path, max_epochs: int = 3) -> dict:
    """A tiny multi-label training: 10 steps per epoch, random augmentations on, deterministic."""
    return {
        "experiment": "crash_safety",
        "data": {
            "format": "multilabel",
            "path": str(colour_csv),
            "input_size": [32, 32],
            "batch_size": 8,
            "num_workers": 0,
        },
        "model": {
            "backbone": "test_tiny",
            "pretrained": False,
            "heads": {"labels": {"kind": "gcn", "pool": "max", "gcn_hidden": 16}},
        },
        "labels": {"embeddings": {"provider": "onehot"}, "graph": {"tau": 0.3}},
        "optim": {"lr": 3.0e-3, "head_lr": 3.0e-3, "scheduler": "cosine"},
        "trainer": {
            "max_epochs": max_epochs,
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "deterministic": True,
        },
    }


def _config(tmp_path: Path, colour_csv: Path, every_n_steps: int = 4, max_epochs: int = 3) -> dict:
    """The tiny settings loaded like any experiment file, checkpointing every ``every_n_steps``."""
    path = tmp_path / f"tiny_{max_epochs}.yaml"
    path.write_text(yaml.safe_dump(_settings(colour_csv, max_epochs)))
    cfg = load_config(path)
    cfg["trainer"]["checkpoint_every_n_steps"] = every_n_steps
    return cfg


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _crash_on_fsync_of(monkeypatch, target: str) -> None:
    """Simulate a crash while ``target`` is written: half the bytes reach the disk, then ENOSPC."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if target in os.readlink(f"/proc/self/fd/{fd}"):
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            raise OSError(28, "No space left on device (simulated)")
        real_fsync(fd)

    monkeypatch.setattr("fashionlens.fileio.os.fsync", fsync)


# -- 1. atomic checkpoints --------------------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the file being written")
def test_crash_while_writing_last_ckpt_keeps_previous_checkpoint(tmp_path, colour_csv, monkeypatch):
    out = tmp_path / "run"
    fit_module.train(_config(tmp_path, colour_csv, max_epochs=1), out)
    last = out / "checkpoints" / "last.ckpt"
    before = _sha(last)

    _crash_on_fsync_of(monkeypatch, "last.ckpt")
    with pytest.raises(OSError, match="No space left"):
        fit_module.train(_config(tmp_path, colour_csv, max_epochs=2), out)
    assert _sha(last) == before  # Lightning's own writer truncates last.ckpt in place
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temp file left over
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == STEPS_PER_EPOCH

    monkeypatch.undo()
    fit_module.train(_config(tmp_path, colour_csv, max_epochs=2), out)  # and the run can go on from it
    assert torch.load(last, weights_only=True)["global_step"] == 2 * STEPS_PER_EPOCH


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the file being written")
def test_crash_while_exporting_model_keeps_previous_model(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"labels": {"num_classes": 4, "kind": "linear"}})
    info = ModelInfo(net.spec, {"labels": list("abcd")}, DataConfig(input_size=(32, 32)))
    path = save_model(net, info, tmp_path / "model.safetensors")
    before = _sha(path)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    _crash_on_fsync_of(monkeypatch, "model.safetensors")
    with pytest.raises(OSError, match="No space left"):
        save_model(net, info, path)
    assert _sha(path) == before
    load_model_file(path)


def test_checkpoint_io_refuses_non_finite_weights(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    before = _sha(path)
    with pytest.raises(NonFiniteLossError, match=r"non-finite weights in w.*last good checkpoint is kept"):
        io.save_checkpoint(
            {"state_dict": {"w": torch.tensor([1.0, float("nan"), 0.0])}, "global_step": 2}, path
        )
    assert _sha(path) == before
    assert io.load_checkpoint(path)["global_step"] == 1


# -- 2. kill -9 and resume --------------------------------------------------------------------------
_RUNNER = textwrap.dedent("""
    import os, signal, sys
    from fashionlens.train import task
    from fashionlens.train.config import load_config
    from fashionlens.train.fit import train

    config, out, kill_at, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if kill_at >= 0:  # the crash: SIGKILL (no cleanup, no exception handler) before step kill_at runs
        step = task.FashionTask.training_step
        def killing_step(self, batch, batch_idx):
            if self.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(self, batch, batch_idx)
        task.FashionTask.training_step = killing_step
    cfg = load_config(config)
    cfg["trainer"]["checkpoint_every_n_steps"] = every
    train(cfg, out)
""")


def _run_training(
    tmp_path: Path, colour_csv: Path, out: Path, kill_at: int = -1, every: int = 4
) -> subprocess.CompletedProcess:
    """``train(config, out)`` in a fresh process, killed with SIGKILL before step ``kill_at`` if >= 0."""
    script, config = tmp_path / "run_training.py", tmp_path / "config.yaml"
    script.write_text(_RUNNER)
    config.write_text(yaml.safe_dump(_settings(colour_csv)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(script), str(config), str(out), str(kill_at), str(every)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sigkill_mid_epoch_then_resume_ends_like_an_uninterrupted_run(tmp_path, colour_csv):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    proc = _run_training(tmp_path, colour_csv, reference)
    assert proc.returncode == 0, proc.stderr[-3000:]

    kill_at = STEPS_PER_EPOCH + 8  # epoch 1, batch 8: the last checkpoint is from step 16 (batch 6)
    proc = _run_training(tmp_path, colour_csv, crashed, kill_at=kill_at)
    assert proc.returncode == -9, proc.stderr[-3000:]
    last = crashed / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 16 and saved["epoch"] == 1
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches": 6}]
    assert not (crashed / "metrics.json").exists()

    proc = _run_training(tmp_path, colour_csv, crashed)  # the same command again: resumes from last.ckpt
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not resumable" not in proc.stderr

    expected, got = (json.loads((d / "metrics.json").read_text()) for d in (reference, crashed))
    assert got == expected, (got["best"], expected["best"])
    w_expected, w_got = (load_file(str(d / "model.safetensors")) for d in (reference, crashed))
    assert w_got.keys() == w_expected.keys()
    for name in w_expected:
        torch.testing.assert_close(w_got[name], w_expected[name], rtol=0, atol=1e-6, msg=name)
    final_expected, final_got = (
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (reference, crashed)
    )
    assert final_got["global_step"] == final_expected["global_step"] == 3 * STEPS_PER_EPOCH
    for name, value in final_expected["state_dict"].items():
        torch.testing.assert_close(final_got["state_dict"][name], value, rtol=0, atol=1e-6, msg=name)


class _Crash(Exception):
    pass


def _crash_at_step(monkeypatch, step: int) -> None:
    """Fail before step ``step`` runs (Lightning saves no checkpoint on an exception, like on SIGKILL)."""
    real = task_module.FashionTask.training_step

    def crashing_step(self, batch, batch_idx):
        if self.global_step == step:
            raise _Crash(f"crash at step {step}")
        return real(self, batch, batch_idx)

    monkeypatch.setattr(task_module.FashionTask, "training_step", crashing_step)


def test_mid_epoch_resume_keeps_batchnorm_frozen_and_earlier_logs(tmp_path, colour_csv, monkeypatch):
    cfg = _config(tmp_path, colour_csv, every_n_steps=4, max_epochs=1)
    cfg["optim"]["freeze_bn"] = True
    out = tmp_path / "run"
    _crash_at_step(monkeypatch, 6)
    with pytest.raises(_Crash):
        fit_module.train(cfg, out)
    monkeypatch.undo()
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    logged_before = (out / "logs" / "metrics.csv").read_text()

    fit_module.train(cfg, out)  # resumes at epoch 0, batch 4: Lightning skips on_train_epoch_start
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == STEPS_PER_EPOCH
    stats = {k: v for k, v in state["state_dict"].items() if k.endswith(("running_mean", "running_var"))}
    assert stats and all(
        torch.equal(v, torch.zeros_like(v) if k.endswith("mean") else torch.ones_like(v))
        for k, v in stats.items()
    )
    # Lightning's CSVLogger deletes metrics.csv when it starts; the resumed run keeps it aside
    assert (out / "logs" / "metrics.1.csv").read_text() == logged_before
    assert (out / "logs" / "metrics.csv").is_file()


def test_best_report_survives_a_resume(tmp_path):
    net = FashionNet("test_tiny", heads={"labels": {"num_classes": 4, "kind": "linear"}})
    info = ModelInfo(net.spec, {"labels": list("abcd")}, DataConfig(input_size=(32, 32)))
    saved = fit_module.ExportBest(tmp_path / "m.safetensors", info, "val/mAP", "max")
    saved.best_value, saved.best_report = (
        0.75,
        {"labels": {"mAP": np.float64(0.75), "AP": np.array([0.5, 1.0])}},
    )
    torch.save(saved.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # as Lightning loads last.ckpt
    resumed = fit_module.ExportBest(tmp_path / "m.safetensors", info, "val/mAP", "max")
    resumed.load_state_dict(state)
    assert resumed.best_value == 0.75 and resumed.best_report == {"labels": {"mAP": 0.75, "AP": [0.5, 1.0]}}


def test_sampler_order_depends_only_on_seed_and_epoch_and_resumes_mid_epoch():
    data = list(range(20))
    loader = ResumableDataLoader(
        data, batch_sampler=ResumableBatchSampler(EpochShuffleSampler(20, seed=3), 4, True)
    )
    loader.batch_sampler.sampler.set_epoch(5)
    full = [b.tolist() for b in loader]
    assert sorted(sum(full, [])) == data and full != [b.tolist() for b in _fresh_loader(epoch=4)]
    it = iter(loader)
    head = [next(it).tolist() for _ in range(2)]
    state = loader.state_dict()
    assert state == {"epoch": 5, "batches": 2} and head == full[:2]

    restarted = _fresh_loader(epoch=0)  # a new process: Lightning loads the state before iterating
    restarted.load_state_dict(state)
    assert [b.tolist() for b in restarted] == full[2:]
    assert [b.tolist() for b in restarted] == full  # the skip applies to one pass only


def _fresh_loader(epoch: int) -> ResumableDataLoader:
    sampler = EpochShuffleSampler(20, seed=3)
    sampler.set_epoch(epoch)
    return ResumableDataLoader(list(range(20)), batch_sampler=ResumableBatchSampler(sampler, 4, True))


# -- 3. non-finite loss -----------------------------------------------------------------------------
def test_nan_loss_stops_with_message_and_keeps_last_good_files(tmp_path, colour_csv, monkeypatch):
    out = tmp_path / "run"
    fit_module.train(_config(tmp_path, colour_csv, every_n_steps=2, max_epochs=1), out)
    files = [out / "model.safetensors", out / "checkpoints" / "last.ckpt", out / "metrics.json"]
    before = [_sha(f) for f in files]

    real = task_module.compute_losses
    monkeypatch.setattr(
        task_module, "compute_losses", lambda *a, **k: {n: v * float("nan") for n, v in real(*a, **k).items()}
    )
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss at epoch 1, step 10: labels=nan.*last good checkpoint"
    ):
        fit_module.train(_config(tmp_path, colour_csv, every_n_steps=2, max_epochs=2), out)
    assert [_sha(f) for f in files] == before


def test_huge_learning_rate_fails_through_the_cli_and_leaves_finite_files(tmp_path, colour_csv):
    config = tmp_path / "huge_lr.yaml"
    settings = _settings(colour_csv, max_epochs=2)
    settings["optim"].update({"lr": 1.0e12, "head_lr": 1.0e12, "grad_clip": 0})
    settings["trainer"]["checkpoint_every_n_steps"] = 1
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output + repr(result.exception)  # a one-line error, not a traceback
    assert "error: non-finite loss at epoch 0, step 1" in result.output and "optim.lr" in result.output
    # a checkpoint every step: the one written after the first (finite) step must survive the failure
    # of the second; no validation ran, so there is no model file to leave behind
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"config.yaml", "checkpoints/last.ckpt", "logs/metrics.csv"} <= files, files
    assert "model.safetensors" not in files and "metrics.json" not in files, files
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 1)
    floats = [t for t in ckpt["state_dict"].values() if t.is_floating_point()]
    assert floats and all(torch.isfinite(t).all() for t in floats)


# -- 4. output directory checked before training ----------------------------------------------------
def _no_training(*args, **kwargs):
    raise AssertionError("training started although the output directory is unusable")


def test_output_dir_under_a_regular_file_fails_before_training(tmp_path, colour_csv, monkeypatch):
    monkeypatch.setattr(fit_module, "build_data", _no_training)
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(fit_module.OutputDirError, match=r"file.txt/out is not writable"):
        fit_module.train(_config(tmp_path, colour_csv), tmp_path / "file.txt" / "out")
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoints").write_text("a file where the checkpoint folder should be")
    with pytest.raises(fit_module.OutputDirError, match=r"run/checkpoints is not writable"):
        fit_module.train(_config(tmp_path, colour_csv), out)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]


def test_full_disk_fails_before_training_through_the_cli(tmp_path, colour_csv, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fit_module.shutil, "disk_usage", lambda path: usage(2**40, 2**40 - 2**20, 2**20))
    monkeypatch.setattr(fit_module, "build_data", _no_training)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_settings(colour_csv)))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "only 1 MiB free" in result.output
    assert not (out / "logs").exists() and not (out / "config.yaml").exists()


# -- 5. safe loading --------------------------------------------------------------------------------
def test_truncated_last_ckpt_gives_an_error_naming_the_file(tmp_path, colour_csv):
    out = tmp_path / "run"
    fit_module.train(_config(tmp_path, colour_csv, max_epochs=1), out)
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(
        CheckpointError, match=r"cannot resume from .*last\.ckpt: the checkpoint is truncated.*--no-resume"
    ):
        fit_module.train(_config(tmp_path, colour_csv, max_epochs=2), out)


class _Payload:
    def __reduce__(self):
        return (print, ("this code ran while loading a checkpoint",))


def test_resume_checkpoint_is_loaded_without_unpickling_code(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"last\.ckpt"):
        AtomicCheckpointIO().load_checkpoint(path)


def test_model_file_loads_without_pickle(tmp_path, monkeypatch):
    net = FashionNet("test_tiny", heads={"labels": {"num_classes": 4, "kind": "linear"}})
    path = save_model(
        net,
        ModelInfo(net.spec, {"labels": list("abcd")}, DataConfig(input_size=(32, 32))),
        tmp_path / "m.safetensors",
    )
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, _no_training)
    monkeypatch.setattr(torch, "load", _no_training)
    model, info = load_model_file(path)
    assert info.label_names == {"labels": list("abcd")}
