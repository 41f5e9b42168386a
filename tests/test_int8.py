"""int8 export (ONNX Runtime static quantisation): a real int8 graph that keeps the fp32 model's answers.

The tiny model is trained for a few seconds on generated colour-patch photos, so that its outputs
depend on the photo (a randomly initialised network answers almost the same for every input, which
would make any agreement test pass).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime  # noqa: F401  (required dependencies: a missing one fails the suite)
import onnxscript  # noqa: F401  (the ONNX exporter needs it)
import pytest
import torch
from typer.testing import CliRunner

import fashionlens  # noqa: E402
from conftest import COLOURS, draw_colour_patches  # noqa: E402
from fashionlens.checkpoint import ModelInfo, save_model  # noqa: E402
from fashionlens.cli import app  # noqa: E402
from fashionlens.data.config import DataConfig  # noqa: E402
from fashionlens.data.images import load_image  # noqa: E402
from fashionlens.data.transforms import build_transforms  # noqa: E402
from fashionlens.inference import quantize  # noqa: E402
from fashionlens.inference.export import ExportError, export_onnx  # noqa: E402
from fashionlens.inference.onnx_runner import OnnxRunner, read_onnx_model  # noqa: E402
from fashionlens.inference.quantize import agreement, calibration_inputs, quantize_int8  # noqa: E402
from fashionlens.metrics import mean_average_precision  # noqa: E402
from fashionlens.model_header import Calibration  # noqa: E402
from fashionlens.models import FashionNet  # noqa: E402

cli = CliRunner()
NAMES = list(COLOURS)
CONFIG = DataConfig(input_size=(32, 24))


def _photos(folder: Path, n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Photos with 1-2 coloured squares: paths, main colour (N,), colours multi-hot (N, 4)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths, main, multi = [], [], []
    for i in range(n):
        labels = list(rng.choice(NAMES, size=int(rng.integers(1, 3)), replace=False))
        path = folder / f"{i:03d}.jpg"
        draw_colour_patches(rng, labels, size=40).save(path, quality=95)
        paths.append(str(path))
        main.append(NAMES.index(labels[0]))
        multi.append([float(c in labels) for c in NAMES])
    return paths, np.array(main), np.array(multi, dtype=np.float32)


def _train(paths: list[str], main: np.ndarray, multi: np.ndarray, steps: int = 40) -> FashionNet:
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 4},
                                         "labels": {"num_classes": 4, "kind": "gcn", "embed_dim": 5}},
                     landmarks={"fuse": True})
    gcn = net.heads["labels"].classifier
    gcn.embeddings.copy_(torch.eye(4, 5))
    gcn.adjacency.copy_(torch.eye(4) * 0.5 + 0.125)
    transform = build_transforms(CONFIG, train=False)
    x = torch.stack([transform(load_image(p)) for p in paths])
    y_main, y_multi = torch.from_numpy(main), torch.from_numpy(multi)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (16,))
        out = net(x[idx])
        loss = (torch.nn.functional.cross_entropy(out["category"], y_main[idx])
                + torch.nn.functional.binary_cross_entropy_with_logits(out["labels"], y_multi[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(fp32 .safetensors, fp32 .onnx, int8 .onnx, calibration photos, held-out (paths, main, multi))."""
    root = tmp_path_factory.mktemp("int8")
    train = _photos(root / "train", 96, seed=0)
    held = _photos(root / "held", 64, seed=1)
    net = _train(*train)
    model = save_model(
        net,
        ModelInfo(
            net.spec, {"category": NAMES, "labels": NAMES}, CONFIG, calibration=Calibration(threshold=0.4)
        ),
        root / "tiny.safetensors",
    )
    fp32 = export_onnx(model, root / "tiny.onnx")
    int8 = root / "quantised.onnx"  # not MODEL.int8.onnx: the CLI test writes (and removes) that one
    quantize_int8(model, int8, train[0][:64])
    return model, fp32, int8, train[0][:64], held


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHIONLENS_CACHE", str(tmp_path / "cache"))


def test_the_export_is_an_int8_graph_with_the_models_header(models):
    model, fp32, int8, _, _ = models
    proto, info = read_onnx_model(int8)  # also checks the digest over graph + header
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [
        t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4
    ]
    assert len(int8_weights) >= 5  # every convolution's weights, stored as int8
    per_channel = [
        n
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)
    ]
    assert per_channel  # per-channel weight scales
    assert info.label_names == {"category": NAMES, "labels": NAMES}
    assert info.data_config.input_size == (32, 24) and info.calibration.threshold == 0.4
    q = info.quantization
    assert q["format"] == "QDQ" and q["calibration"] == {
        "method": "minmax",
        "images": 64,
        "unreadable": 0,
        "seed": 0,
    }
    assert q["fp32_agreement_on_calibration"]["category_top1"] >= 0.9
    assert Path(int8).stat().st_size < Path(fp32).stat().st_size


def test_int8_agrees_with_fp32_on_held_out_photos(models):
    _, fp32, int8, _, (paths, main, multi) = models
    info = read_onnx_model(fp32)[1]
    x, bad = calibration_inputs(info, paths, max_images=len(paths))
    assert bad == 0 and len(x) == len(paths)
    ref = {
        k: np.concatenate([OnnxRunner(fp32)(x[i : i + 16])[k] for i in range(0, len(x), 16)])
        for k in ("category", "labels")
    }
    got = {
        k: np.concatenate([OnnxRunner(int8)(x[i : i + 16])[k] for i in range(0, len(x), 16)])
        for k in ("category", "labels")
    }
    a = agreement(ref, got)
    assert a["category_top1"] >= 0.95
    assert a["labels_max_abs_prob"] <= 0.05
    acc = [(out["category"].argmax(1) == main).mean() for out in (ref, got)]
    assert acc[0] > 0.5  # the model learned something, so agreement means something
    assert abs(acc[1] - acc[0]) <= 0.05
    maps = [mean_average_precision(out["labels"], multi) for out in (ref, got)]
    assert maps[0] > 0.7 and abs(maps[1] - maps[0]) <= 0.02


def test_load_model_and_predict_take_the_int8_file(models, tmp_path):
    _, fp32, int8, _, (paths, _, _) = models
    predictor = fashionlens.load_model(int8)
    assert predictor.backend == "onnx"
    fp = {p.source: p.category[0].label for p in fashionlens.load_model(fp32).predict(paths)}
    q = {p.source: p.category[0].label for p in predictor.predict(paths)}
    assert sum(fp[k] == q[k] for k in fp) >= 0.95 * len(fp)
    result = cli.invoke(app, ["predict", *paths[:3], "--model", str(int8), "--format", "json"])
    assert result.exit_code == 0 and '"category"' in result.output, result.output


def test_serve_takes_the_int8_file(models):
    from fastapi.testclient import TestClient

    from fashionlens.serve.app import create_app

    _, _, int8, _, (paths, _, _) = models
    client = TestClient(create_app(fashionlens.load_model(int8)))
    response = client.post(
        "/v1/predict", files={"files": ("a.jpg", Path(paths[0]).read_bytes(), "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["category"][0]["label"] in NAMES


def test_agreement_by_hand():
    ref = {
        "category": np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]]),
        "labels": np.array([[0.0], [0.0], [0.0], [0.0]]),
        "heatmaps": np.zeros((4, 1, 2, 2)),
    }
    got = {
        "category": np.array([[2.0, 1.0], [3.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),  # row 1 flips
        "labels": np.array([[0.0], [np.log(3.0)], [0.0], [0.0]]),  # sigmoid(ln 3) = 0.75: +0.25
        "heatmaps": np.full((4, 1, 2, 2), 0.5),
    }
    assert agreement(ref, got) == {
        "category_top1": 0.75,
        "labels_max_abs_prob": 0.25,
        "labels_mean_abs_prob": 0.0625,
        "heatmaps_max_abs": 0.5,
    }


def test_a_model_that_disagrees_is_not_written(models, tmp_path, monkeypatch):
    model, _, _, calibration, _ = models
    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # demand more than any model can give
    with pytest.raises(ExportError, match="another category than fp32"):
        quantize_int8(model, tmp_path / "x.onnx", calibration[:16])
    assert not (tmp_path / "x.onnx").exists()


def test_cli_int8_export(models, tmp_path):
    model, _, int8, calibration, _ = models
    folder = Path(calibration[0]).parent
    out = tmp_path / "cli.int8.onnx"
    result = cli.invoke(
        app,
        ["export", str(model), "--format", "onnx", "--int8", "--calibration", str(folder), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "int8, calibrated on 96 photos" in result.output and "category_top1" in result.output
    assert read_onnx_model(out)[1].quantization["calibration"]["images"] == 96
    default = Path(model).with_suffix(".int8.onnx")
    result = cli.invoke(app, ["export", str(model), "--int8", "--calibration", f"{folder}/00*.jpg"])
    assert result.exit_code == 0 and default.is_file(), result.output  # default name: MODEL.int8.onnx
    default.unlink()


def test_cli_int8_errors(models, tmp_path):
    model, _, int8, _, _ = models
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"not a photo")
    cases = [
        (["--int8"], "--int8 needs --calibration PHOTOS"),
        (["--calibration", str(tmp_path / "junk")], "--calibration is for --int8 export"),
        (
            ["--int8", "--calibration", str(tmp_path / "junk")],
            "none of the 1 calibration photos could be read",
        ),
        (["--int8", "--calibration", str(tmp_path / "nothing" / "*.jpg")], "no calibration photos found"),
    ]
    for extra, message in cases:
        result = cli.invoke(app, ["export", str(model), "--out", str(tmp_path / "x.onnx"), *extra])
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
    result = cli.invoke(
        app,
        [
            "export",
            str(int8),
            "--int8",
            "--calibration",
            str(tmp_path / "junk"),
            "--out",
            str(tmp_path / "x.onnx"),
        ],
    )
    assert result.exit_code == 2 and "already quantised" in result.output
