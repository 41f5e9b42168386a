"""ONNX export and the ONNX Runtime inference path: outputs match PyTorch, header travels, tampering is
refused."""

from __future__ import annotations

import io
import json
import logging
import pathlib

import numpy as np

# onnx, onnxruntime and onnxscript are required dependencies (pyproject.toml): imported, never skipped
import onnx
import onnxruntime  # noqa: F401
import onnxscript  # noqa: F401
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fashionlens.checkpoint import CheckpointError, ModelInfo, save_model
from fashionlens.cli import app
from fashionlens.data.config import DataConfig
from fashionlens.inference.export import ExportError, export_module, export_onnx, verify_onnx
from fashionlens.inference.onnx_runner import META_DIGEST, META_HEADER, OnnxRunner, read_onnx_model
from fashionlens.inference.predictor import load_model
from fashionlens.model_header import Calibration
from fashionlens.models.fashion_net import FashionNet

CATEGORIES = ["blouse", "skirt", "jacket"]
TAGS = ["floral", "striped", "denim", "lace"]


def read_onnx_info(path):
    """The header of a checked fashionlens ``.onnx`` file (what the Predictor reads with the graph)."""
    return read_onnx_model(path)[1]


def _tiny_net() -> FashionNet:
    torch.manual_seed(0)
    net = FashionNet(
        "test_tiny",
        heads={"category": {"num_classes": 3}, "labels": {"num_classes": 4, "kind": "gcn", "embed_dim": 5}},
        landmarks={"fuse": True},
    )
    gcn = net.heads["labels"].classifier
    gcn.embeddings.copy_(torch.randn(4, 5))  # non-zero label embeddings, so the GCN classifiers matter
    gcn.adjacency.copy_(torch.full((4, 4), 0.25))
    net.glem[0].non_local.bn.weight.data.fill_(0.5)  # the non-local block starts as identity: switch it on
    return net.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(safetensors path, onnx path, net) for the tiny model, exported once for the module."""
    root = tmp_path_factory.mktemp("export")
    net = _tiny_net()
    info = ModelInfo(
        net.spec,
        {"category": CATEGORIES, "labels": TAGS},
        DataConfig(input_size=(32, 24)),
        calibration=Calibration(threshold=0.4),
    )
    path = save_model(net, info, root / "tiny.safetensors")
    return path, export_onnx(path, root / "tiny.onnx"), net


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHIONLENS_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch(tiny, batch):
    _, onnx_path, net = tiny
    x = torch.randn(batch, 3, 32, 24, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        ref = net(x)
    got = OnnxRunner(onnx_path)(x)
    assert set(got) == {"heatmaps", "category", "labels"}
    for name, value in ref.items():
        assert got[name].shape == tuple(value.shape)
        np.testing.assert_allclose(got[name], value.numpy(), atol=1e-4, rtol=0)


def test_onnx_carries_the_header(tiny):
    path, onnx_path, _ = tiny
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert set(meta) >= {META_HEADER, META_DIGEST}
    header = json.loads(meta[META_HEADER])
    assert header["label_names"] == {"category": CATEGORIES, "labels": TAGS}
    info = read_onnx_info(onnx_path)
    assert info.data_config.input_size == (32, 24)
    assert info.calibration.threshold == 0.4
    assert info.spec["heads"]["labels"]["kind"] == "gcn"


def _photos(n: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        arr = rng.integers(0, 255, size=(40 + i, 30 + 2 * i, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG" if i % 2 else "PNG")
        out.append(buf.getvalue())
    return out


@pytest.mark.parametrize("source", ["onnx_file", "safetensors"])
def test_predictor_onnx_equals_torch(tiny, source):
    path, onnx_path, _ = tiny
    images = _photos(7) + [b"not an image"]
    torch_pred = load_model(path, backend="torch", batch_size=3)
    onnx_pred = load_model(onnx_path if source == "onnx_file" else path, backend="onnx", batch_size=3)
    assert (torch_pred.backend, onnx_pred.backend, onnx_pred.model) == ("torch", "onnx", None)
    a = torch_pred.predict(images, top_k=4, threshold=0.0)
    b = onnx_pred.predict(images, top_k=4, threshold=0.0)
    assert a[-1].error and b[-1].error == a[-1].error
    for pa, pb in zip(a[:-1], b[:-1], strict=True):
        assert pa.category[0].label == pb.category[0].label
        np.testing.assert_allclose([s.score for s in pa.category], [s.score for s in pb.category], atol=1e-4)
        assert {s.label: s.score for s in pa.tags} == pytest.approx(
            {s.label: s.score for s in pb.tags}, abs=1e-4
        )
        for la, lb in zip(pa.landmarks, pb.landmarks, strict=True):
            assert (la.x, la.y) == pytest.approx((lb.x, lb.y), abs=1e-3)


def test_auto_backend_measures_once_and_caches(tiny, tmp_path, caplog):
    path, _, _ = tiny
    with caplog.at_level(logging.INFO, logger="fashionlens"):
        pred = load_model(path, backend="auto")
    assert pred.backend in ("torch", "onnx")
    sidecars = list((tmp_path / "cache" / "onnx").glob("*.json"))
    assert len(sidecars) == 1 and list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    (entry,) = json.loads(sidecars[0].read_text()).values()
    assert pred.backend == ("onnx" if entry["onnx_faster"] else "torch")
    # the first load says what it did: the export, then the timing and where the choice is kept
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 2 and lines[0].startswith(f"exporting {path} to ONNX once (kept in ")
    assert lines[1].startswith(f"backend auto: timed {path.name} once") and str(sidecars[0]) in lines[1]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fashionlens"):
        assert load_model(path, backend="auto").backend == pred.backend  # from the remembered choice
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]  # nothing new to say


@pytest.mark.parametrize("backend", ["torch", "onnx", "auto"])
def test_load_model_reads_the_model_file_once(tiny, backend, monkeypatch):
    """resolve -> read (once) -> choose the backend -> build: the export, its cache key, the timing and
    the PyTorch model all use the bytes read once, at a first load (export and timing) and after it."""
    import safetensors
    import safetensors.torch

    path, _, _ = tiny
    reads = []
    read_bytes = pathlib.Path.read_bytes

    def counting(self):
        if self == path:
            reads.append(self)
        return read_bytes(self)

    def no_other_read(*args, **kwargs):
        raise AssertionError("the model file was read a second time")

    monkeypatch.setattr(pathlib.Path, "read_bytes", counting)
    monkeypatch.setattr(safetensors, "safe_open", no_other_read)
    monkeypatch.setattr(safetensors.torch, "load_file", no_other_read)
    for _ in range(2):  # the first load exports and times (auto), the second uses the cache
        reads.clear()
        pred = load_model(path, backend=backend)
        assert len(reads) == 1
        assert pred.backend == backend or backend == "auto"
        assert pred.predict([np.full((40, 30, 3), 128, np.uint8)])[0].error is None


def test_predict_says_on_stderr_what_the_auto_backend_did_at_first_load(tiny, tmp_path):
    path, _, _ = tiny
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (48, 64), (200, 30, 30)).save(photo)
    first = CliRunner().invoke(app, ["predict", str(photo), "--model", str(path), "--format", "json"])
    assert first.exit_code == 0, first.output
    assert f"exporting {path} to ONNX once (kept in {tmp_path / 'cache' / 'onnx'})" in first.stderr
    assert f"backend auto: timed {path.name} once" in first.stderr
    assert "--backend torch|onnx pins it" in first.stderr
    json.loads(first.stdout)  # stdout stays the predictions alone
    again = CliRunner().invoke(app, ["predict", str(photo), "--model", str(path), "--format", "json"])
    assert again.exit_code == 0 and "exporting" not in again.stderr and "timed" not in again.stderr


def test_backend_errors(tiny):
    path, onnx_path, _ = tiny
    with pytest.raises(ValueError, match="backend must be one of"):
        load_model(path, backend="tensorrt")
    with pytest.raises(ValueError, match="runs with backend 'onnx'"):
        load_model(onnx_path, backend="torch")


def test_tampered_onnx_is_refused(tiny, tmp_path):
    _, onnx_path, _ = tiny
    model = onnx.load(str(onnx_path))
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    raw = bytearray(init.raw_data)
    raw[0] ^= 0xFF
    init.raw_data = bytes(raw)
    onnx.save(model, str(tmp_path / "weights.onnx"))
    with pytest.raises(CheckpointError, match="modified after export"):
        load_model(tmp_path / "weights.onnx", backend="onnx")

    model = onnx.load(str(onnx_path))
    for p in model.metadata_props:
        if p.key == META_HEADER:
            p.value = p.value.replace("blouse", "bikini")
    onnx.save(model, str(tmp_path / "header.onnx"))
    with pytest.raises(CheckpointError, match="modified after export"):
        read_onnx_info(tmp_path / "header.onnx")

    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(CheckpointError, match="without a fashionlens header"):
        read_onnx_info(tmp_path / "bare.onnx")

    (tmp_path / "trunc.onnx").write_bytes(onnx_path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable ONNX file"):
        read_onnx_info(tmp_path / "trunc.onnx")


def test_verify_raises_when_outputs_differ(tiny):
    _, onnx_path, net = tiny
    other = _tiny_net()
    other.heads["category"].classifier.bias.data += 1.0
    info = read_onnx_info(onnx_path)
    verify_onnx(net, OnnxRunner(onnx_path), info)  # the real pair passes
    with pytest.raises(ExportError, match="'category' differs from PyTorch"):
        verify_onnx(other, OnnxRunner(onnx_path), info)


def test_static_batch_and_opset_check(tiny, tmp_path):
    _, _, net = tiny
    info = read_onnx_info(tiny[1])
    out = export_module(net, info, tmp_path / "static.onnx", dynamic_batch=False)
    assert OnnxRunner(out)(torch.zeros(2, 3, 32, 24))["category"].shape == (2, 3)
    with pytest.raises(ValueError, match="opset 17 is not supported"):
        export_module(net, info, tmp_path / "old.onnx", opset=17)


def _cli(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_export_and_predict(tiny, tmp_path):
    path, _, _ = tiny
    code, out, _ = _cli("export", path, "--format", "onnx", "--out", tmp_path / "cli.onnx")
    assert code == 0 and "wrote" in out
    assert read_onnx_info(tmp_path / "cli.onnx").label_names["category"] == CATEGORIES
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(_photos(2)[1])
    rows = {}
    for backend, model in (("onnx", tmp_path / "cli.onnx"), ("torch", path), ("auto", path)):
        code, out, err = _cli("predict", photo, "--model", model, "--backend", backend, "--format", "json")
        assert code == 0, err
        rows[backend] = json.loads(out)
    assert rows["onnx"][0]["category"][0]["label"] == rows["torch"][0]["category"][0]["label"]
    assert rows["auto"][0]["category"][0]["label"] == rows["torch"][0]["category"][0]["label"]
    code, _, err = _cli("predict", photo, "--model", path, "--backend", "tensorrt")
    assert code == 2 and "backend must be one of" in err


def test_cli_export_default_out(tiny, tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(tiny[0].read_bytes())
    code, _, err = _cli("export", model, "--static-batch")
    assert code == 0, err
    assert OnnxRunner(tmp_path / "m.onnx")(torch.zeros(2, 3, 32, 24))["labels"].shape == (2, 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "--format must be onnx"),
        (["--opset", "12"], "opset 12 is not supported"),
    ],
)
def test_cli_export_errors(tiny, tmp_path, args, message):
    code, _, err = _cli("export", tiny[0], "--out", tmp_path / "x.onnx", *args)
    assert code == 2 and message in err
    code, _, err = _cli("export", tmp_path / "missing.safetensors")
    assert code == 2 and "not found" in err


def test_cli_bench_passes_arguments_on(capfd):
    code, _, _ = _cli("bench", "--help")
    assert code == 0
    assert "fashionlens benchmarks" in capfd.readouterr().out
    code, _, _ = _cli("bench", "--models", "alexnet")
    assert code == 2
    assert "unknown model(s)" in capfd.readouterr().err


@pytest.mark.parametrize("kind", ["mldecoder", "query2label"])
def test_query_heads_export_and_match(tmp_path, kind):
    torch.manual_seed(1)
    decoder = {"width": 16, "num_heads": 2, "ffn": 16}
    net = FashionNet(
        "test_tiny", heads={"labels": {"num_classes": 4, "kind": kind, "decoder": decoder}}
    ).eval()
    path = save_model(
        net,
        ModelInfo(net.spec, {"labels": TAGS}, DataConfig(input_size=(32, 24))),
        tmp_path / "m.safetensors",
    )
    onnx_path = export_onnx(path, tmp_path / "m.onnx")  # verifies the outputs itself; checked here again
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 24, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            ref = net(x)["labels"].numpy()
        np.testing.assert_allclose(OnnxRunner(onnx_path)(x)["labels"], ref, atol=1e-4, rtol=0)


def test_idle_onnx_runtime_threads_sleep_unless_asked_to_spin():
    from fashionlens.inference.onnx_runner import session_options

    assert session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(spin=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"
