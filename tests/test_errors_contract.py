"""Issue 24.4: the error contract is true.

Every exception class fashionlens defines derives from FashionlensError; the command line turns a
FashionlensError into one ``error:`` line at one place, and lets any other exception (a bug) through
with its traceback.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import fashionlens
import fashionlens.train.fit  # noqa: F401 - Lightning sets up its logging here, not inside a CliRunner call
from fashionlens.cli import app
from fashionlens.errors import ConfigError, FashionlensError

runner = CliRunner()


def _fashionlens_modules():
    for info in pkgutil.walk_packages(fashionlens.__path__, "fashionlens."):
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # a module of an optional extra that is not installed here
            continue


def _exception_classes() -> dict[str, type]:
    found = {}
    for module in _fashionlens_modules():
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_exception_class_of_fashionlens_derives_from_fashionlens_error():
    classes = _exception_classes()
    # a sample of the modules walked, so that an import failure cannot make this test pass on nothing
    assert {"fashionlens.errors", "fashionlens.inference.ray_engine", "fashionlens.fileio"} <= {
        name.rsplit(".", 1)[0] for name in classes}
    assert len(classes) >= 25, sorted(classes)
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, FashionlensError))
    assert outside == []  # nothing is allowed to stay outside


def test_there_is_one_output_dir_error_and_ray_engine_errors_exit_1():
    from fashionlens.fileio import OutputDirError
    from fashionlens.inference.ray_engine import RayEngineError

    classes = _exception_classes()
    assert [name for name in classes if name.endswith(".OutputDirError")] == [
        "fashionlens.fileio.OutputDirError"
    ]
    assert issubclass(OutputDirError, OSError) and issubclass(RayEngineError, RuntimeError)
    assert FashionlensError.exit_code == 2 and RayEngineError.exit_code == 1


def _config(tmp_path: Path) -> str:
    cfg = {
        "experiment": "contract",
        "data": {"format": "multilabel", "input_size": [32, 32], "num_workers": 0},
        "model": {"backbone": "test_tiny", "pretrained": False, "heads": {"labels": {"kind": "linear"}}},
        "trainer": {"max_epochs": 1, "accelerator": "cpu"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit)  # nothing escaped the command
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("override, allowed", [
    ("data.format=foo", "ccp, multilabel, image_folder, clothing_dataset, deepfashion or mixed"),
    ("optim.name=foo", "adam, adamw or sgd"),
    ("optim.scheduler=foo", "cosine, step or none"),
    ("model.backbone=foo", "test_tiny"),
    ("loss.heatmap=foo", "mse, softmax"),
    ("loss.multilabel.kind=foo", "bce, asl, focal"),
    ("data.bad_images=foo", "skip or fail"),
    ("labels.graph.kind=foo", "cooccurrence or identity"),
])  # fmt: skip
def test_a_bad_config_value_is_one_error_line_naming_the_key_and_the_choices(tmp_path, override, allowed):
    (tmp_path / "labels.csv").write_text("image,main,labels\n")
    result = runner.invoke(
        app,
        [
            "train",
            _config(tmp_path),
            "--data",
            str(tmp_path / "labels.csv"),
            "--out",
            str(tmp_path / "out"),
            override,
        ],
    )
    line = _one_error_line(result)
    key = override.split("=")[0]
    assert line.startswith(f"error: {key} must be") and allowed in line and "'foo'" in line, line
    assert not (tmp_path / "out").exists()  # refused before any work


def test_a_config_error_is_still_a_value_error_for_the_python_api():
    from fashionlens.train.config import load_config

    with pytest.raises(ValueError, match="data.format must be"):
        load_config(None, ["data.format=foo"])
    assert issubclass(ConfigError, FashionlensError)


@pytest.mark.parametrize("bug", [RuntimeError("boom"), ValueError("boom"), KeyError("boom")])
def test_a_genuine_bug_is_not_swallowed_into_an_error_line(tmp_path, monkeypatch, bug):
    import fashionlens.train.config as config_module

    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(config_module, "load_config", broken)
    result = runner.invoke(app, ["train", _config(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exception is bug  # it escapes the command, so its traceback is shown
    assert result.exit_code == 1 and "error:" not in result.output


def test_a_fashionlens_error_from_inside_a_command_is_one_line_with_its_exit_code(tmp_path, monkeypatch):
    import fashionlens.train.config as config_module
    from fashionlens.inference.ray_engine import RayEngineError

    def refuse(*args, **kwargs):
        raise ConfigError("some.key must be\nsomething else")

    monkeypatch.setattr(config_module, "load_config", refuse)
    line = _one_error_line(runner.invoke(app, ["train", _config(tmp_path)]))
    assert line == "error: some.key must be something else"  # a multi-line message on one line

    def ray_failed(*args, **kwargs):
        raise RayEngineError("the Ray job failed")

    monkeypatch.setattr(config_module, "load_config", ray_failed)
    result = runner.invoke(app, ["train", _config(tmp_path)])
    assert result.exit_code == 1 and result.output.splitlines() == ["error: the Ray job failed"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_cli_modules_share_a_helper_module_instead_of_importing_each_other():
    src = Path(fashionlens.__file__).parent
    assert "fashionlens.cli" not in _imports(src / "labelling" / "cli.py")
    assert "fashionlens.cli_common" in _imports(src / "labelling" / "cli.py") & _imports(src / "cli.py")


def test_no_module_level_getattr_shims():
    for module in _fashionlens_modules():
        assert "__getattr__" not in vars(module), module.__name__
