"""Issue 17.4: every typed error is a FashionlensError, and the CLI turns one into a single line, not a
traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from fashionlens.checkpoint import CheckpointError
from fashionlens.cli import app
from fashionlens.data.errors import DataFormatError
from fashionlens.data.images import BadImageError
from fashionlens.errors import FashionlensError
from fashionlens.fileio import OutputDirError
from fashionlens.inference.export import ExportError
from fashionlens.labelgraph.embeddings import LabelEmbeddingError
from fashionlens.labelling.photos import PhotoAccessError
from fashionlens.labelling.store import LabelSessionError, LabelValueError
from fashionlens.models.pretrained import PretrainedWeightsUnavailable
from fashionlens.serve.app import UploadError
from fashionlens.train.config import ConfigError
from fashionlens.train.data import DataPathError
from fashionlens.train.task import NonFiniteLossError

runner = CliRunner()


@pytest.mark.parametrize("error, builtin", [
    (DataFormatError, ValueError), (BadImageError, ValueError), (CheckpointError, ValueError),
    (ConfigError, ValueError), (DataPathError, ValueError), (LabelEmbeddingError, ValueError),
    (LabelValueError, ValueError), (OutputDirError, OSError), (NonFiniteLossError, RuntimeError),
    (ExportError, RuntimeError), (PretrainedWeightsUnavailable, RuntimeError), (LabelSessionError, Exception),
    (PhotoAccessError, Exception), (UploadError, Exception),
])  # fmt: skip
def test_typed_errors_share_one_base_and_keep_their_builtin_one(error, builtin):
    assert issubclass(error, FashionlensError) and issubclass(error, builtin)


def test_every_command_reports_fashionlens_errors_as_one_line():
    """Commands registered on the app (and its sub-apps) all go through the one error wrapper."""

    def commands(group, prefix: str = ""):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):  # a sub-app (typer may bundle its own click: no isinstance)
                yield from commands(cmd, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", cmd

    found = dict(commands(get_command(app)))
    assert {"train", "evaluate", "predict", "export", "label", "data check", "data stats"} <= set(found)
    unwrapped = [name for name, cmd in found.items() if not hasattr(cmd.callback, "__wrapped__")]
    assert unwrapped == []


def _config(tmp_path, **model) -> str:
    cfg = {"experiment": "errors", "data": {"format": "multilabel", "input_size": [32, 32], "num_workers": 0},
           "model": {"backbone": "test_tiny", "pretrained": False, "heads": {"labels": {"kind": "linear"}},
                     **model},
           "trainer": {"max_epochs": 1, "accelerator": "cpu"}}  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _bad_csv(tmp_path) -> str:
    path = tmp_path / "labels.csv"
    path.write_text("image,main,labels\na.jpg,red,red\nb.jpg\n")  # line 3 has one field, not three
    return str(path)


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit)  # not an exception escaping the command
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_train_on_a_malformed_csv_is_one_line_naming_file_and_line(tmp_path):
    result = runner.invoke(
        app, ["train", _config(tmp_path), "--data", _bad_csv(tmp_path), "--out", str(tmp_path / "o")]
    )
    line = _one_error_line(result)
    assert (
        line
        == "error: "
        + str(tmp_path / "labels.csv")
        + ":3: expected 3 fields ['image', 'main', 'labels'], got 1"
    )


def test_train_without_hub_weights_offline_is_one_line_saying_what_to_pass(tmp_path, colour_csv, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _config(tmp_path, backbone="resnet50", pretrained=True)
    line = _one_error_line(
        runner.invoke(app, ["train", config, "--data", str(colour_csv), "--out", str(tmp_path / "o")])
    )
    assert line.startswith(
        "error: pretrained weights for 'resnet50' come from the model hub, which is unreachable"
    )
    assert "model.pretrained=/path/to/resnet50.pth" in line


def test_the_installed_command_prints_no_traceback(tmp_path):
    """The real entry point (not CliRunner): stderr has the one error line and no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "fashionlens.cli", "train", _config(tmp_path),
                           "--data", _bad_csv(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: " + str(tmp_path / "labels.csv") + ":3: expected 3 fields ['image', 'main', 'labels'], got 1"
    ]
