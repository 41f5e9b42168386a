"""Predictor API and the predict / serve commands, on a tiny model with every kind of head."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import fashionlens
from fashionlens.checkpoint import ModelInfo, save_model
from fashionlens.cli import app
from fashionlens.data.config import DataConfig
from fashionlens.data.deepfashion import LANDMARK_NAMES
from fashionlens.inference.output import format_predictions
from fashionlens.model_header import Calibration, Landmarks
from fashionlens.models import FashionNet

runner = CliRunner()
CATEGORIES = ["dress", "hat", "pants"]
TAGS = ["bag", "belt", "shoes", "skirt"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    net = FashionNet(
        "test_tiny",
        heads={"category": {"num_classes": 3}, "labels": {"num_classes": 4}},
        landmarks={"fuse": True},
    )
    info = ModelInfo(
        net.spec,
        {"category": CATEGORIES, "labels": TAGS},
        DataConfig(input_size=(32, 32)),
        calibration=Calibration(threshold=0.3),
        landmarks=Landmarks(LANDMARK_NAMES),
    )
    return save_model(net.eval(), info, tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(root / f"p{i}.jpg")
    (root / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (20, 50, 3), dtype=np.uint8)).save(root / "sub" / "q.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_predictor_accepts_every_input_kind(tiny_model, photos):
    predictor = fashionlens.load_model(tiny_model)
    path = photos / "p0.jpg"
    pil = Image.open(path)
    inputs = [str(path), path, pil, np.asarray(pil), path.read_bytes()]
    preds = predictor.predict(inputs, top_k=2)
    assert len(preds) == 5
    first = preds[0].to_dict()
    for p in preds[1:]:
        d = p.to_dict()
        assert [c["label"] for c in d["category"]] == [c["label"] for c in first["category"]]
        assert d["category"][0]["score"] == pytest.approx(first["category"][0]["score"], abs=1e-5)
    assert len(first["category"]) == 2 and first["category"][0]["score"] >= first["category"][1]["score"]
    assert first["tag_threshold"] == 0.3  # the model's own threshold
    assert all(t["score"] >= 0.3 for t in first["tags"])
    assert len(first["landmarks"]) == 8
    w, h = first["image_size"]
    assert (w, h) == (30, 40)
    assert all(0 <= lm["x"] <= w and 0 <= lm["y"] <= h for lm in first["landmarks"])
    json.dumps([p.to_dict() for p in preds])


def test_min_tags_returns_each_photos_best_tag_below_the_models_threshold(tmp_path, photos):
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"labels": {"num_classes": 4}}).eval()
    files = sorted(str(p) for p in photos.glob("p*.jpg"))
    with torch.inference_mode():
        probs = torch.sigmoid(net(torch.zeros(1, 3, 32, 32))["labels"])[0]
    assert probs.max() < 0.99  # so the threshold below passes nothing
    for min_tags, want in ((0, 0), (1, 1), (2, 2)):
        calibration = Calibration(threshold=0.99, min_tags=min_tags)
        info = ModelInfo(net.spec, {"labels": TAGS}, DataConfig(input_size=(32, 32)), calibration=calibration)
        predictor = fashionlens.load_model(save_model(net, info, tmp_path / f"m{min_tags}.safetensors"))
        assert predictor.min_tags == min_tags
        ranked = predictor.predict(files, top_k=4, threshold=0.0)  # every tag, most likely first
        for pred, full in zip(predictor.predict(files, top_k=4), ranked, strict=True):
            assert len(pred.tags) == want and all(t.score < 0.99 for t in pred.tags)
            assert pred.tags == full.tags[:want]  # the most likely ones, in order
            if want:  # the table says why a tag below the threshold is listed
                assert f"  tags (>= 0.99, else the best): {pred.tags[0].label} " in format_predictions(
                    [pred], "table"
                )
        # a threshold the caller gives is applied as it is
        assert all(p.tags == [] for p in predictor.predict(files, threshold=0.99))


def test_predictor_batches_give_the_same_scores(tiny_model, photos):
    files = sorted(str(p) for p in photos.glob("p*.jpg"))
    one = fashionlens.load_model(tiny_model, batch_size=1).predict(files)
    many = fashionlens.load_model(tiny_model, batch_size=32).predict(files)
    for a, b in zip(one, many, strict=True):
        assert a.category[0].label == b.category[0].label
        assert a.category[0].score == pytest.approx(b.category[0].score, abs=1e-5)


def test_predict_cli_json_over_files_folders_and_globs(tiny_model, photos):
    result = runner.invoke(
        app,
        [
            "predict",
            str(photos),
            str(photos / "p*.jpg"),
            "--model",
            str(tiny_model),
            "--format",
            "json",
            "--top-k",
            "1",
            "--threshold",
            "0.0",
        ],
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    paths = [r["path"] for r in records]
    # folder (3 jpg + 1 png, broken skipped); the glob's 3 jpg again: each photo once
    assert len(records) == 4
    assert "3 repeated photo(s) named more than once: each is tagged once" in result.stderr
    assert str(photos / "sub" / "q.png") in paths
    # --top-k 1 with --threshold 0: every tag passes the threshold, so exactly the top one is listed
    assert all(len(r["category"]) == 1 and len(r["tags"]) == 1 and len(r["landmarks"]) == 8 for r in records)
    assert all(r["tag_threshold"] == 0.0 for r in records)
    assert "broken.jpg" in result.stderr and "skipped" in result.stderr


def test_predict_cli_table_csv_and_out(tiny_model, photos, tmp_path):
    photo = str(photos / "p0.jpg")
    ref = fashionlens.load_model(tiny_model).predict([photo])[0]  # the Python API's answer, top 5
    result = runner.invoke(app, ["predict", photo, "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.rstrip("\n").splitlines()
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == ["category", "tags (>= 0.30)", "landmarks"]
    assert lines[0] == photo
    category = ", ".join(f"{c.label} {c.score:.2f}" for c in ref.category)  # all 3 categories, best first
    assert lines[1] == f"  category:   {category}"
    assert lines[2] == "  tags (>= 0.30): " + (", ".join(f"{t.label} {t.score:.2f}" for t in ref.tags) or "-")
    marks = lines[3].removeprefix("  landmarks:  ").split(", ")
    assert [m.split("=")[0] for m in marks] == [lm.name for lm in ref.landmarks] and len(marks) == 8

    out = tmp_path / "preds.csv"
    result = runner.invoke(
        app,
        [
            "predict",
            photo,
            str(photos / "p1.jpg"),
            "--model",
            str(tiny_model),
            "--format",
            "csv",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    # --out: nothing on stdout
    assert result.stdout == "" and f"wrote 2 predictions to {out}" in result.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["path"] for r in rows] == [photo, str(photos / "p1.jpg")]
    assert rows[0]["category"] == ref.category[0].label
    assert float(rows[0]["category_score"]) == pytest.approx(ref.category[0].score, abs=1e-4)
    assert rows[0]["tags"] == "|".join(f"{t.label}:{t.score:.4f}" for t in ref.tags)

    # --format parquet: one file in the Ray engine's schema; it needs --out
    result = runner.invoke(app, ["predict", photo, "--model", str(tiny_model), "--format", "parquet"])
    assert result.exit_code == 2 and "--format parquet writes a file: give --out" in result.stderr
    out = tmp_path / "preds.parquet"
    args = ["predict", photo, str(photos / "p1.jpg"), "--model", str(tiny_model), "--format", "parquet"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0 and f"wrote 2 predictions to {out}" in result.stderr, result.output
    table = pq.read_table(out).to_pylist()
    assert [r["path"] for r in table] == [photo, str(photos / "p1.jpg")]
    assert table[0]["category"] == ref.category[0].label
    assert [c["label"] for c in table[0]["scores"]] == [c.label for c in ref.category]
    assert table[0]["scores"][0]["score"] == pytest.approx(ref.category[0].score, abs=1e-6)
    assert [t["label"] for t in table[0]["tags"]] == [t.label for t in ref.tags]


def test_predict_cli_errors(tiny_model, tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "nothing*.jpg"), "--model", str(tiny_model)])
    assert result.exit_code == 2 and "no images found" in result.output
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    result = runner.invoke(app, ["predict", str(tmp_path / "a.jpg"), "--model", "no-such-model"])
    assert result.exit_code == 2 and "no model named" in result.output
    result = runner.invoke(
        app, ["predict", str(tmp_path / "a.jpg"), "--model", str(tiny_model), "--format", "xml"]
    )
    assert result.exit_code == 2
    assert "--format must be table, json, csv or parquet, got 'xml'" in result.stderr
    assert result.stdout == ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_starts_and_answers(tiny_model, photos):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fashionlens.cli",
            "serve",
            "--port",
            str(port),
            "--model",
            str(tiny_model),
            "--max-upload-mb",
            "1",
            "--max-concurrency",
            "1",
            "--api-key",
            "k3y",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        health = None
        for _ in range(120):
            try:
                health = json.loads(
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                )
                break
            except OSError:
                time.sleep(0.25)
        assert health and health["status"] == "ok" and health["api_key_required"] is True
        body, ctype = _multipart((photos / "p0.jpg").read_bytes())
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/predict",
            data=body,
            headers={"Content-Type": ctype, "X-API-Key": "k3y"},
        )
        result = json.loads(urllib.request.urlopen(req, timeout=30).read())
        assert result["results"][0]["category"][0]["label"] in CATEGORIES
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "fashionlensboundary"
    buf = io.BytesIO()
    buf.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="p0.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
    )
    buf.write(data + f"\r\n--{boundary}--\r\n".encode())
    return buf.getvalue(), f"multipart/form-data; boundary={boundary}"


def test_serve_cli_with_a_missing_model_exits_2():
    result = runner.invoke(app, ["serve", "--model", "/nonexistent/model.safetensors", "--port", "1"])
    assert result.exit_code == 2 and "not found" in result.output


def test_prefetching_keeps_order_and_bad_images_across_batches(tiny_model, photos):
    files = sorted(str(p) for p in photos.glob("p*.jpg"))
    sources = [files[0], str(photos / "broken.jpg"), files[1], files[2], files[0]]
    preds = fashionlens.load_model(tiny_model, batch_size=2).predict(sources)
    assert [p.source for p in preds] == sources
    assert [p.error is not None for p in preds] == [False, True, False, False, False]
    assert preds[4].category[0].score == pytest.approx(preds[0].category[0].score, abs=1e-6)


def test_letterbox_model_pads_landscape_photos_and_maps_landmarks_back(tmp_path, photos):
    from fashionlens.data.transforms import letterbox_box

    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 3}}, landmarks={"fuse": True}).eval()
    cfg = DataConfig(input_size=(32, 32), resize="letterbox")
    path = save_model(
        net, ModelInfo(net.spec, {"category": CATEGORIES}, cfg), tmp_path / "lb.safetensors"
    )
    predictor = fashionlens.load_model(path, backend="torch")
    photo = Image.open(photos / "sub" / "q.png").convert("RGB")  # 50 x 20 landscape
    pred = predictor.predict([photo])[0]
    left, top, w, h = letterbox_box(50, 20, (32, 32))
    assert (left, top, w, h) == (0, 9, 32, 13)  # 20 * 32 / 50 = 12.8 rows, (32 - 13) // 2 above
    canvas = Image.new("RGB", (32, 32), tuple(round(255 * m) for m in cfg.mean))  # the same input by hand
    canvas.paste(photo.resize((w, h), Image.Resampling.BILINEAR), (left, top))
    x = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255).permute(2, 0, 1) - torch.tensor(
        cfg.mean
    ).view(3, 1, 1)
    x = x / torch.tensor(cfg.std).view(3, 1, 1)
    with torch.no_grad():
        probs = net(x[None])["category"].softmax(-1)[0]
    assert pred.category[0].label == CATEGORIES[int(probs.argmax())]
    assert pred.category[0].score == pytest.approx(float(probs.max()), abs=1e-5)
    assert len(pred.landmarks) == 8 and all(0 <= lm.x <= 50 and 0 <= lm.y <= 20 for lm in pred.landmarks)


def test_image_size_and_landmarks_refer_to_the_photo_not_its_draft_decode(tiny_model, tmp_path):
    # a 32 x 32 input lets libjpeg decode this 400 x 200 JPEG at 1/8 scale (draft mode); EXIF 6 = upright 200
    # x 400
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (400, 200), (200, 40, 40)).save(tmp_path / "big.jpg", exif=exif)
    Image.new("RGB", (400, 200), (200, 40, 40)).save(tmp_path / "plain.jpg")
    predictor = fashionlens.load_model(tiny_model, backend="torch")
    assert max(predictor.preprocess(tmp_path / "plain.jpg")[0].shape) == 32
    rotated, plain = predictor.predict([tmp_path / "big.jpg", tmp_path / "plain.jpg"])
    assert rotated.image_size == (200, 400) and plain.image_size == (400, 200)
    for pred in (rotated, plain):
        w, h = pred.image_size
        assert all(0 <= lm.x <= w and 0 <= lm.y <= h for lm in pred.landmarks)
    # decoded in full (a PIL image is not drafted), the one-colour photo gives the same input: same landmarks
    full = predictor.predict([Image.open(tmp_path / "plain.jpg").convert("RGB")])[0]
    assert full.image_size == (400, 200)
    for a, b in zip(plain.landmarks, full.landmarks, strict=True):
        assert (a.x, a.y) == pytest.approx((b.x, b.y), abs=1e-3)


def test_package_load_model_is_the_predictors_with_every_argument(monkeypatch):
    import inspect

    from fashionlens.inference import predictor as predictor_module

    real = inspect.signature(predictor_module.load_model)
    assert list(inspect.signature(fashionlens.load_model).parameters) == list(real.parameters)
    seen = {}
    monkeypatch.setattr(predictor_module, "load_model", lambda *a, **kw: seen.update(args=a, kwargs=kw))
    fashionlens.load_model("m.safetensors", device="cpu", batch_size=4, backend="onnx", threads=3)
    assert seen["args"] == ("m.safetensors",)
    assert seen["kwargs"] == {"device": "cpu", "batch_size": 4, "backend": "onnx", "threads": 3}
