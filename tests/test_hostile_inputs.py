"""Hostile inputs on the newer surfaces (issue 25): one bad photo never costs a run, every bad input is
one ``error:`` line (exit 2) or a per-item error, and outputs are checked before any work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fashionlens.cli import app
from fashionlens.errors import FashionlensError
from fashionlens.inference.inputs import ListingError, PredictArgumentError, read_listing
from fashionlens.inference.predictor import load_model
from serve_fixtures import make_tiny_model
from test_derive_landmarks import _tiny_ccp

runner = CliRunner()


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output + repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# ----------------------------------------------------------------------------- listings


def test_an_unreadable_listing_exits_2_every_time_never_sigabrt(tmp_path):
    """pyarrow's CSV thread pool, left behind by a parse error, aborted about 5 runs of 12 at exit (134)."""
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for _ in range(8):
        proc = subprocess.run([sys.executable, "-m", "fashionlens.cli", "predict", str(tmp_path / "bin.csv")],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "terminate called" not in proc.stderr and proc.stderr.startswith(
            f"error: {tmp_path / 'bin.csv'}: "
        )


@pytest.mark.parametrize("content, message", [
    ("", "empty.csv: empty file (0 bytes)"),
    ("path,path\na.jpg,b.jpg\n", "empty.csv: 2 columns named 'path'"),
])  # fmt: skip
def test_empty_listing_and_two_path_columns_are_listing_errors(tmp_path, content, message):
    (tmp_path / "empty.csv").write_text(content)
    with pytest.raises(ListingError, match=re.escape(message)):
        read_listing(str(tmp_path / "empty.csv"))
    assert issubclass(ListingError, FashionlensError)
    line = _one_error_line(runner.invoke(app, ["predict", str(tmp_path / "empty.csv")]))
    assert message in line


# ----------------------------------------------------------------------------- derive-landmarks


def test_a_truncated_photo_is_skipped_and_counted_or_fails_naming_it(tmp_path):
    ccp = _tiny_ccp(tmp_path / "ccp", n=4)
    photo = ccp / "photos" / "0003.jpg"
    photo.write_bytes(photo.read_bytes()[: len(photo.read_bytes()) // 2])  # truncated, its header intact
    for workers in ("1", "2"):
        out = tmp_path / f"tree{workers}"
        result = runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(out), "--workers", workers])
        assert result.exit_code == 0, result.output
        assert f"skipped bad photo: {photo}: cannot decode image" in result.output
        assert "3 photos -> " in result.output and "0 bad masks, 1 bad photos" in result.output
        assert (out / "Anno" / "list_landmarks.txt").is_file() and not list((out / "img").glob("0003_*"))
    line = _one_error_line(
        runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "f"), "--bad", "fail"])
    )
    assert line.startswith(f"error: {photo}: cannot decode image")
    assert not (tmp_path / "f" / "Anno").exists()


def _folders_read_only(monkeypatch, tmp_path) -> None:
    """Every folder fails the output check's write probe as a read-only one would (chmod is no test as
    root)."""
    real_write = type(tmp_path).write_bytes

    def read_only(path, data):
        if path.name.startswith(".write-test"):
            raise PermissionError(13, "Permission denied")
        return real_write(path, data)

    monkeypatch.setattr(type(tmp_path), "write_bytes", read_only)


def test_derive_output_is_checked_before_any_work(tmp_path, monkeypatch):
    import fashionlens.data.derive_tree as derive_tree

    ccp = _tiny_ccp(tmp_path / "ccp", n=2)
    monkeypatch.setattr(
        derive_tree, "_run", lambda *a: pytest.fail("derivation started with an unusable output")
    )
    (tmp_path / "file").write_text("a file where OUT should be")
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "file")]))
    assert line == f"error: output folder {tmp_path / 'file'} is not writable: it is a file, not a folder"
    _folders_read_only(monkeypatch, tmp_path)
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "ro")]))
    assert line == f"error: output folder {tmp_path / 'ro'} is not writable: Permission denied"


def test_nothing_derived_is_an_error_not_an_empty_tree(tmp_path):
    ccp = _tiny_ccp(tmp_path / "ccp", n=2)
    for photo in (ccp / "photos").iterdir():
        photo.write_bytes(b"not a jpeg")
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "a")]))
    assert line == "error: nothing derived: all 2 photos were skipped (0 bad masks, 2 bad photos)"
    assert not (tmp_path / "a" / "Anno").exists()
    for mask in (ccp / "annotations" / "pixel-level").iterdir():
        mask.unlink()
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "b")]))
    assert (
        line == f"error: {ccp / 'annotations' / 'pixel-level'}: no .mat masks: nothing to derive "
        "(expected CCP's pixel-level annotations)"
    )
    (ccp / "label_list.mat").unlink()
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "c")]))
    assert line == f"error: {ccp / 'label_list.mat'}: file not found"


# ----------------------------------------------------------------------------- Python API and predict


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    model = make_tiny_model(root / "tiny.safetensors")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(
        root / "ok.jpg"
    )
    return load_model(model, backend="torch"), str(root / "ok.jpg")


def _closed_image():
    img = Image.new("RGB", (8, 8))
    img.close()
    return img


@pytest.mark.parametrize("bad, reason", [
    (None, "not an image input: NoneType (expected a path, bytes, a binary file, a PIL image or a numpy "
           "array)"),
    (7, "not an image input: int"),
    (memoryview(b"no image"), "not an image file PIL can identify"),
    (_closed_image(), "unreadable PIL image (Operation on closed image)"),
    (np.array([[1, 2]], dtype=object), "expected an array of numbers"),
    (np.zeros((0, 0, 3), np.uint8), "empty image (0x0 pixels)"),
    (Image.new("RGB", (0, 0)), "empty image (0x0 pixels)"),
    (np.zeros((5, 0), np.uint8), "empty image (0x5 pixels)"),
    (np.full((8, 8, 3), np.nan, np.float32), "not finite: 192 NaN or infinite values"),
])  # fmt: skip
def test_one_bad_item_is_a_per_item_error_and_the_others_are_predicted(tiny, bad, reason):
    predictor, ok = tiny
    preds = predictor.predict([ok, bad, ok])
    assert [p.error is None for p in preds] == [True, False, True]
    assert preds[1].source == "<image 1>" and preds[1].error.startswith(reason) and preds[1].category is None
    assert preds[0].category == preds[2].category and preds[0].category is not None


@pytest.mark.parametrize("kwargs, message", [
    ({"boxes": [None, None]}, "boxes has 2 entries for 3 images; expected one per image"),
    ({"names": ["a"]}, "names has 1 entries for 3 images; expected one per image"),
    ({"top_k": 0}, "top_k must be an integer >= 1, got 0"),
    ({"threshold": float("nan")}, "threshold must be a number in [0, 1], got nan"),
    ({"threshold": 1.5}, "threshold must be a number in [0, 1], got 1.5"),
    ({"threshold": -0.1}, "threshold must be a number in [0, 1], got -0.1"),
])  # fmt: skip
def test_bad_arguments_raise_one_fashionlens_error_naming_them_before_any_work(
    tiny, kwargs, message, monkeypatch
):
    predictor, ok = tiny
    monkeypatch.setattr(predictor, "_try_preprocess", lambda *a: pytest.fail("an image was read"))
    with pytest.raises(PredictArgumentError, match=re.escape(message)):
        predictor.predict([ok, ok, ok], **kwargs)
    with pytest.raises(PredictArgumentError):
        predictor.iter_predict([ok, ok, ok], **kwargs)  # raised at the call, not at the first next()
    assert issubclass(PredictArgumentError, FashionlensError) and issubclass(PredictArgumentError, ValueError)


def test_predict_cli_checks_options_and_out_before_any_work(tiny, tmp_path, monkeypatch):
    import fashionlens.inference.predictor as predictor_module

    _, ok = tiny
    monkeypatch.setattr(predictor_module, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    line = _one_error_line(runner.invoke(app, ["predict", ok, "--format", "csv", "--out", str(tmp_path)]))
    assert line == f"error: --out {tmp_path} is a folder; expected a file name"
    line = _one_error_line(runner.invoke(app, ["predict", ok, "--top-k", "0"]))
    assert line == "error: top_k must be an integer >= 1, got 0"
    line = _one_error_line(runner.invoke(app, ["predict", ok, "--threshold", "nan"]))
    assert line == "error: threshold must be a number in [0, 1], got nan"
    _folders_read_only(monkeypatch, tmp_path)
    line = _one_error_line(runner.invoke(app, ["predict", ok, "--out", str(tmp_path / "ro" / "p.json")]))
    assert (
        line
        == f"error: --out {tmp_path / 'ro' / 'p.json'}: its folder {tmp_path / 'ro'} is not writable: "
           "Permission denied"
    )


# ----------------------------------------------------------------------------- evaluate


@pytest.fixture()
def folder_model(tmp_path):
    """A tiny category model of an image folder (train/, val/ with classes blue and red)."""
    import torch

    from fashionlens.checkpoint import ModelInfo, save_model
    from fashionlens.data.config import DataConfig
    from fashionlens.model_header import Training
    from fashionlens.models import FashionNet
    from fashionlens.train.config import load_config
    from fashionlens.train.fit import data_description

    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 2}}).eval()
    training = Training("m", data_description(load_config(None, ["data.format=image_folder"])))
    info = ModelInfo(net.spec, {"category": ["blue", "red"]}, DataConfig((32, 32)), training=training)
    model = save_model(net, info, tmp_path / "model.safetensors")
    for split in ("train", "val"):
        for name in ("blue", "red"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (20, 20), (30, 30, 220)).save(tmp_path / "data" / split / name / f"{i}.jpg")
    return model, tmp_path / "data"


def test_evaluate_with_every_photo_unreadable_says_how_many_and_which(folder_model, tmp_path):
    model, data = folder_model
    for photo in sorted((data / "val").rglob("*.jpg")):
        photo.write_bytes(b"not a jpeg")
    args = [
        "evaluate",
        str(model),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "ev"),
        "--accelerator",
        "cpu",
    ]
    line = _one_error_line(runner.invoke(app, args))
    first = data / "val" / "blue" / "0.jpg"
    assert line.startswith(
        f"error: the val split: all 4 photos are unreadable, nothing to evaluate ({first}: "
    )
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_evaluate_photos_broken_after_the_scan_are_one_line_not_a_worker_runtime_error(
    folder_model, tmp_path, monkeypatch
):
    """The DataLoader worker's BadImageError used to come back as "RuntimeError: Caught BadImageError ..."."""
    import fashionlens.data.check as check

    model, data = folder_model
    monkeypatch.setattr(check, "scan_images", lambda paths, workers=0: {})  # they broke after the scan
    for photo in sorted((data / "val").rglob("*.jpg")):
        photo.write_bytes(photo.read_bytes()[:200])
    args = [
        "evaluate",
        str(model),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "ev"),
        "--accelerator",
        "cpu",
    ]
    line = _one_error_line(runner.invoke(app, args))
    assert "all 4 images of the dataset are bad" in line and "Caught" not in line and "Traceback" not in line


def test_evaluate_checks_out_before_any_work(folder_model, tmp_path):
    model, data = folder_model
    (tmp_path / "file").write_text("a file where --out should be")
    args = [
        "evaluate",
        str(model),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "file"),
        "--accelerator",
        "cpu",
    ]
    assert (
        _one_error_line(runner.invoke(app, args))
        == f"error: --out {tmp_path / 'file'} is not writable: it is a file, not a folder"
    )


def test_compare_checks_out_before_evaluating(folder_model, tmp_path, monkeypatch):
    import fashionlens.evaluate.evaluate as evaluate

    model, data = folder_model
    monkeypatch.setattr(evaluate, "evaluate_model", lambda *a, **k: pytest.fail("a model was evaluated"))
    (tmp_path / "file").write_text("a file where --out should be")
    args = ["compare", str(model), str(model), "--data", str(data), "--out", str(tmp_path / "file")]
    assert (
        _one_error_line(runner.invoke(app, args))
        == f"error: --out {tmp_path / 'file'} is not writable: it is a file, not a folder"
    )


# ----------------------------------------------------------------------------- labelling page


def test_a_killed_sessions_temporary_files_are_removed_at_start(tmp_path):
    from fashionlens.labelling.photos import find_photos
    from fashionlens.labelling.store import LabelStore
    from label_fixtures import VOCAB, colour_photos

    colour_photos(tmp_path / "photos", 2)
    stale = [tmp_path / ".labels.csv.k3j9_x.tmp", tmp_path / ".labels.skipped.txt.a1b2.tmp"]
    for tmp in stale:
        tmp.write_text("image,main,labels\nhalf a ro")  # what a SIGKILL during a save leaves
    other = tmp_path / ".other.csv.zz.tmp"  # another file's: not ours to remove
    other.write_text("x")
    store = LabelStore(tmp_path / "labels.csv", VOCAB, find_photos(tmp_path / "photos"))
    try:
        assert [p.exists() for p in stale] == [False, False] and other.exists()
    finally:
        store.close()


# ----------------------------------------------------------------------------- one rule for both engines


def test_folders_and_uri_schemes_get_one_message_in_both_engines(tiny, tmp_path):
    from fashionlens.inference.ray_engine import decode_batch

    predictor, ok = tiny
    sources = [str(tmp_path), "ftp://host/a.jpg", "s3://", "file://" + ok]
    expected = [
        "a folder, not an image file",
        "unsupported URI scheme 'ftp://' (photos are local files or s3://, gs://, gcs://, hdfs://, file:// "
        "URIs)",
    ]
    local = predictor.predict(sources)
    assert [p.error for p in local[:2]] == expected
    assert local[2].error.startswith("cannot read (") and local[3].error is None  # a file:// URI is read
    ray = decode_batch({"path": np.asarray(sources, dtype=object)}, predictor.info.data_config.to_dict())
    assert (
        list(ray["error"][:2]) == expected
        and ray["error"][2].startswith("cannot read (")
        and ray["error"][3] == ""
    )


def test_a_photo_named_twice_is_tagged_once_and_said_so(tiny, tmp_path):
    _, ok = tiny
    (tmp_path / "list.csv").write_text(f"path\n{ok}\n{ok}\n")
    model = str(Path(ok).parent / "tiny.safetensors")
    result = runner.invoke(app, ["predict", str(tmp_path / "list.csv"), ok, "--model", model,
                                 "--format", "json", "--out", str(tmp_path / "p.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 repeated photo(s) named more than once: each is tagged once" in result.output
    # as the Ray engine writes it
    assert [r["path"] for r in json.loads((tmp_path / "p.json").read_text())] == [ok]


# ----------------------------------------------------------------------------- the Ray engine's driver


def test_shard_rows_is_the_most_rows_a_shard_holds(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fashionlens.inference.ray_engine import ShardWriter

    writer = ShardWriter(tmp_path, shard_rows=16, flush_seconds=1e9)
    for start in (0, 51):  # blocks of 51 and 30 rows, as Ray hands them over
        n = 51 if start == 0 else 30
        writer.add(
            pa.table(
                {"path": [f"{i}.jpg" for i in range(start, start + n)], "error": pa.nulls(n, pa.string())}
            )
        )
    writer.flush()
    shards = sorted(tmp_path.glob("part-*.parquet"))
    assert [pq.read_table(s).num_rows for s in shards] == [16, 16, 16, 16, 16, 1]  # was 51 and 30
    assert [p for s in shards for p in pq.read_table(s).column("path").to_pylist()] == [
        f"{i}.jpg" for i in range(81)
    ]
    assert (writer.written, writer.shards, writer.errors) == (81, 6, 0)


def test_ray_out_and_options_are_checked_before_ray_starts(tmp_path, monkeypatch):
    import fashionlens.inference.ray_engine as ray_engine
    from fashionlens.fileio import OutputDirError

    monkeypatch.setattr(ray_engine, "actor_model", lambda *a: pytest.fail("the model was loaded"))
    (tmp_path / "file").write_text("a file where --out should be")
    with pytest.raises(
        OutputDirError, match=re.escape(f"--out {tmp_path / 'file'} is not writable: it is a file")
    ):
        ray_engine.run(["a.jpg"], ray_engine.RayOptions(out_dir=tmp_path / "file"))
    with pytest.raises(PredictArgumentError, match="top_k must be an integer >= 1, got 0"):
        ray_engine.run(["a.jpg"], ray_engine.RayOptions(out_dir=tmp_path / "out", top_k=0))
    _folders_read_only(monkeypatch, tmp_path)
    with pytest.raises(OutputDirError, match="is not writable: Permission denied"):
        ray_engine.run(["a.jpg"], ray_engine.RayOptions(out_dir=tmp_path / "ro"))
    assert issubclass(OutputDirError, FashionlensError) and ray_engine.OutputDirError is OutputDirError


# ----------------------------------------------------------------------------- garments and styles


def test_a_box_with_nan_or_infinity_says_so_per_item(tiny):
    predictor, ok = tiny
    preds = predictor.predict(
        [ok, ok, ok], boxes=[(0, 0, float("inf"), 10), (float("nan"), 0, 5, 5), (2, 2, 20, 20)]
    )
    assert [p.error for p in preds[:2]] == [
        "box [0.0, 0.0, inf, 10.0]: expected finite numbers (no NaN or infinity)",
        "box [nan, 0.0, 5.0, 5.0]: expected finite numbers (no NaN or infinity)",
    ]
    assert preds[2].error is None and preds[2].box is not None


def test_model_loading_errors_are_fashionlens_errors_keeping_their_builtin_base(tmp_path):
    from fashionlens.inference.predictor import BackendError, ModelNotFoundError

    with pytest.raises(
        ModelNotFoundError, match=re.escape(f"model file not found: {tmp_path / 'm.safetensors'}")
    ):
        load_model(tmp_path / "m.safetensors")
    with pytest.raises(BackendError, match="backend must be one of auto, torch, onnx, got 'tpu'"):
        load_model("fashionlens-lite", backend="tpu")
    assert issubclass(ModelNotFoundError, FashionlensError) and issubclass(
        ModelNotFoundError, FileNotFoundError
    )
    assert issubclass(BackendError, FashionlensError) and issubclass(BackendError, ValueError)
