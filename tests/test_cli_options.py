"""CLI options of train / evaluate / predict / serve / export, each checked by its effect.

``train --no-resume``, ``evaluate --format`` and a bad model's exit code, ``predict --batch-size``,
``serve --host`` / ``FASHIONLENS_API_KEY`` / ``--max-upload-mb`` / ``--max-concurrency`` (through the app
the command builds, with uvicorn replaced by a stub), ``export --opset``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
import torch
import uvicorn
import yaml
from PIL import Image
from typer.testing import CliRunner

from fashionlens.checkpoint import ModelInfo, save_model
from fashionlens.cli import app
from fashionlens.data.config import DataConfig
from fashionlens.inference.onnx_runner import OnnxRunner
from fashionlens.inference.predictor import Predictor
from fashionlens.model_header import Training
from fashionlens.models import FashionNet
from fashionlens.train.config import load_config
from fashionlens.train.fit import data_description
from serve_fixtures import make_tiny_model, photo_bytes

runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


# ----------------------------------------------------------------------------- train --no-resume


def _train_config(tmp_path: Path, colour_csv: Path) -> Path:
    cfg = {
        "experiment": "no_resume",
        "data": {
            "format": "multilabel",
            "path": str(colour_csv),
            "input_size": [32, 32],
            "batch_size": 16,
            "num_workers": 0,
        },
        "model": {
            "backbone": "test_tiny",
            "pretrained": False,
            "heads": {"labels": {"kind": "linear", "pool": "max"}},
        },
        "optim": {"lr": 3.0e-3, "head_lr": 3.0e-3, "scheduler": "none"},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "log_every_n_steps": 1},
    }
    path = tmp_path / "no_resume.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _logged_epochs(log: Path) -> set[int]:
    with open(log, newline="") as f:
        return {int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch")}


def test_truncated_checkpoint_error_names_no_resume_and_no_resume_starts_over(tmp_path, colour_csv):
    config, out = _train_config(tmp_path, colour_csv), tmp_path / "run"
    logs = out / "logs"
    result = invoke("train", config, "--out", out)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert _logged_epochs(logs / "metrics.csv") == {0}
    steps_per_epoch = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]

    # rerunning resumes: the first log is set aside and the new one holds epoch 1 only
    result = invoke("train", config, "--out", out, "trainer.max_epochs=2")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert _logged_epochs(logs / "metrics.1.csv") == {0} and _logged_epochs(logs / "metrics.csv") == {1}

    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    result = invoke("train", config, "--out", out, "trainer.max_epochs=3")
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert f"error: cannot resume from {last}: the checkpoint is truncated" in result.output
    assert "train with --no-resume to start over" in result.output and "Traceback" not in result.output

    # --no-resume ignores the damaged file and trains from epoch 0, no log set aside as for a resume
    set_aside = sorted(logs.glob("metrics.*.csv"))
    result = invoke("train", config, "--out", out, "--no-resume", "trainer.max_epochs=2")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert _logged_epochs(logs / "metrics.csv") == {0, 1}
    assert sorted(logs.glob("metrics.*.csv")) == set_aside
    ckpt = torch.load(last, weights_only=True)  # rewritten whole
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 * steps_per_epoch > 0


# ----------------------------------------------------------------------------- evaluate --format, bad model

FOLDER_CLASSES = ["blue", "red"]


@pytest.fixture(scope="module")
def multilabel_format_model(tmp_path_factory) -> Path:
    """A tiny category model whose header says it was trained on multi-label CSV data."""
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 2}}).eval()
    training = Training("cat_model", data_description(load_config(None, ["data.format=multilabel"])))
    info = ModelInfo(net.spec, {"category": FOLDER_CLASSES}, DataConfig((32, 32)), training=training)
    return save_model(net, info, tmp_path_factory.mktemp("eval_model") / "model.safetensors")


def _colour_folder(root: Path) -> Path:
    """train/: 3 images per class; val/: 2 blue, 3 red."""
    counts = {"train": {"blue": 3, "red": 3}, "val": {"blue": 2, "red": 3}}
    for split, per_class in counts.items():
        for name, n in per_class.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                colour = (30, 30, 220) if name == "blue" else (220, 30, 30)
                Image.new("RGB", (20, 20), colour).save(root / split / name / f"{i}.jpg")
    return root


def test_evaluate_format_reads_data_of_another_format(tmp_path, multilabel_format_model):
    folder = _colour_folder(tmp_path / "folder")
    # --data-format names the format: the model's own (multi-label CSV) refuses a folder
    result = invoke(
        "evaluate", multilabel_format_model, "--data", folder, "--out", tmp_path / "own",
        "--data-format", "multilabel",
    )  # fmt: skip
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert result.output == f"error: {folder}: unknown extension ''; expected .csv or .jsonl\n"
    # without it, the format is detected from the path (a class-folder tree), named or not
    for name, extra in (("ev", ["--data-format", "image_folder"]), ("detected", [])):
        ev = tmp_path / name
        result = invoke("evaluate", multilabel_format_model, "--data", folder, "--out", ev, *extra)
        assert result.exit_code == 0, result.output + repr(result.exception)
        report = json.loads((ev / "metrics.json").read_text())["models"]["cat_model"]
        assert report["num_images"] == 5 and 0 <= report["category"]["top1"] <= 1
        with open(ev / "predictions.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        truth = sorted((Path(r["image"]).parent.name, r["category_true"]) for r in rows)
        assert truth == [("blue", "blue")] * 2 + [("red", "red")] * 3  # the val/ folder's class names
    # issue 24's repro: compare on a class-folder tree reads the folder
    other = tmp_path / "other.safetensors"
    shutil.copy(multilabel_format_model, other)
    result = invoke("compare", multilabel_format_model, other, "--data", folder, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "images.csv" not in result.output
    compared = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert len(compared["models"]) == 2 and list(compared["heads"]) == ["category"]
    assert len(compared["heads"]["category"]["cases"]) == 5  # the 5 photos of the val/ folder
    result = invoke(
        "evaluate", multilabel_format_model, "--data", folder, "--out", ev, "--data-format", "coco"
    )
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert result.output == (
        "error: data.format must be ccp, multilabel, image_folder, clothing_dataset, deepfashion "
        "or mixed, got 'coco'\n"
    )


def test_evaluate_bad_or_missing_model_exits_2_naming_it(tmp_path, colour_csv):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    result = invoke("evaluate", bad, "--data", colour_csv, "--out", tmp_path / "ev")
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert result.output.startswith(f"error: {bad}: not a readable safetensors model file")
    assert len(result.output.splitlines()) == 1  # one line, no traceback
    missing = tmp_path / "missing.safetensors"
    result = invoke("evaluate", missing, "--data", colour_csv, "--out", tmp_path / "ev")
    assert result.exit_code == 2 and str(missing) in result.output, result.output
    assert not (tmp_path / "ev" / "metrics.json").exists()


# ----------------------------------------------------------------------------- predict --batch-size


def test_predict_batch_size_sets_the_batches_the_network_sees(tmp_path, monkeypatch):
    model = make_tiny_model(tmp_path / "m.safetensors")
    photos = []
    for i in range(5):
        photos.append(tmp_path / f"p{i}.jpg")
        photos[-1].write_bytes(photo_bytes("JPEG", seed=i))
    seen: list[int] = []
    forward = Predictor._torch_forward

    def counting_forward(self, batch):
        seen.append(batch.shape[0])
        return forward(self, batch)

    monkeypatch.setattr(Predictor, "_torch_forward", counting_forward)
    outputs = {}
    for batch_size, batches in ((2, [2, 2, 1]), (4, [4, 1]), (32, [5])):
        seen.clear()
        result = invoke(
            "predict",
            *photos,
            "--model",
            model,
            "--backend",
            "torch",
            "--format",
            "json",
            "--batch-size",
            batch_size,
        )
        assert result.exit_code == 0, result.output
        assert seen == batches
        outputs[batch_size] = json.loads(result.stdout)
    for records in outputs.values():  # the batching changes nothing in the answers
        assert [r["path"] for r in records] == [str(p) for p in photos]
        for got, ref in zip(records, outputs[32], strict=True):
            assert [c["label"] for c in got["category"]] == [c["label"] for c in ref["category"]]
            assert got["category"][0]["score"] == pytest.approx(ref["category"][0]["score"], abs=1e-5)


# ----------------------------------------------------------------------------- serve options


@pytest.fixture
def serve_cli(tmp_path, monkeypatch):
    """Run ``fashionlens serve ARGS`` with uvicorn.run replaced: returns (exit code, output, app, uvicorn
    kwargs)."""
    model = make_tiny_model(tmp_path / "m.safetensors")
    calls: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: calls.update(app=application, kw=kw))

    def run(*args, env=None):
        calls.clear()
        result = invoke("serve", "--model", model, *args, env=env)
        return result.exit_code, result.output, calls.get("app"), calls.get("kw")

    return run


def _post(application, files: list[tuple[str, bytes]], n: int = 1, headers=None) -> list[httpx.Response]:
    """``n`` concurrent POST /v1/predict requests, each uploading ``files``, through the ASGI app."""

    async def scenario():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://t"
        ) as client:
            upload = [("files", (name, data, "image/jpeg")) for name, data in files]
            return await asyncio.gather(
                *[client.post("/v1/predict", files=upload, headers=headers) for _ in range(n)]
            )

    return asyncio.run(scenario())


def _health(application) -> dict:
    async def scenario():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://t"
        ) as client:
            return (await client.get("/healthz")).json()

    return asyncio.run(scenario())


def test_serve_host_and_port_reach_uvicorn(serve_cli, caplog):
    code, out, application, kw = serve_cli()
    assert code == 0, out
    assert (kw["host"], kw["port"]) == ("127.0.0.1", 8000)  # the defaults keep it on this machine
    with caplog.at_level(logging.WARNING, logger="fashionlens.serve"):
        code, out, application, kw = serve_cli("--host", "0.0.0.0", "--port", "9123")
    assert code == 0, out
    assert (kw["host"], kw["port"]) == ("0.0.0.0", 9123)
    assert "serving on 0.0.0.0 without an API key" in caplog.text  # reachable from outside, and open


def test_serve_api_key_from_the_environment(serve_cli):
    photo = [("a.jpg", photo_bytes("JPEG"))]
    code, out, open_app, _ = serve_cli()
    assert code == 0, out
    assert _health(open_app)["api_key_required"] is False
    assert _post(open_app, photo)[0].status_code == 200
    code, out, keyed, _ = serve_cli(env={"FASHIONLENS_API_KEY": "s3cret"})
    assert code == 0, out
    assert _health(keyed)["api_key_required"] is True
    assert _post(keyed, photo)[0].status_code == 401
    assert _post(keyed, photo, headers={"X-API-Key": "wrong"})[0].status_code == 401
    assert _post(keyed, photo, headers={"X-API-Key": "s3cret"})[0].status_code == 200
    # --api-key on the command line wins over the environment
    code, out, both, _ = serve_cli("--api-key", "cli-key", env={"FASHIONLENS_API_KEY": "s3cret"})
    assert _post(both, photo, headers={"X-API-Key": "cli-key"})[0].status_code == 200
    assert _post(both, photo, headers={"X-API-Key": "s3cret"})[0].status_code == 401


def test_serve_max_upload_mb_refuses_larger_photos(serve_cli):
    small = photo_bytes("JPEG", size=(40, 30))
    large = photo_bytes("PNG", size=(160, 160))  # noise: about 50 KiB as PNG
    assert len(small) < 10_000 < 20_000 < len(large)
    code, out, application, _ = serve_cli("--max-upload-mb", "0.01")  # 10485 bytes
    assert code == 0, out
    assert _health(application)["limits"]["max_upload_bytes"] == int(0.01 * 2**20)
    assert _post(application, [("small.jpg", small)])[0].status_code == 200
    refused = _post(application, [("large.png", large)])[0]
    assert refused.status_code == 413 and "large.png" in refused.json()["error"]
    _, _, default_app, _ = serve_cli()  # the default 10 MiB takes it
    assert _post(default_app, [("large.png", large)])[0].status_code == 200


def test_serve_max_concurrency_bounds_inference_calls(serve_cli, monkeypatch):
    running, peak, lock = [0], [0], threading.Lock()
    predict = Predictor.predict

    def slow_predict(self, *args, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)  # long enough for every admitted request to be in flight together
        with lock:
            running[0] -= 1
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", slow_predict)
    photo = [("a.jpg", photo_bytes("JPEG"))]
    for limit in (1, 3):
        peak[0] = 0
        code, out, application, kw = serve_cli("--max-concurrency", str(limit))
        assert code == 0, out
        responses = _post(application, photo, n=6)
        assert [r.status_code for r in responses] == [200] * 6  # 6 fit in the default queue of 16
        assert peak[0] == limit, (limit, peak[0])
        assert kw["limit_concurrency"] == 64 + limit + 16


# ----------------------------------------------------------------------------- export --opset


def test_export_opset_sets_the_onnx_opset(tmp_path):
    model = make_tiny_model(tmp_path / "m.safetensors")
    result = invoke("export", model, "--out", tmp_path / "m20.onnx", "--opset", 20)
    assert result.exit_code == 0, result.output + repr(result.exception)
    opsets = {o.domain: o.version for o in onnx.load(tmp_path / "m20.onnx").opset_import}
    assert opsets[""] == 20
    result = invoke("export", model, "--out", tmp_path / "m18.onnx")
    assert result.exit_code == 0, result.output
    # the default
    assert {o.domain: o.version for o in onnx.load(tmp_path / "m18.onnx").opset_import}[""] == 18
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32))
    a, b = OnnxRunner(tmp_path / "m20.onnx")(x), OnnxRunner(tmp_path / "m18.onnx")(x)
    np.testing.assert_allclose(a["category"], b["category"], atol=1e-4)  # the same model under either opset
