"""tools/refit_attributes.py: the graft keeps every other tensor byte for byte (and says so when one
differs), the head settings parser, the view selection, and the head's start at the base's weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from conftest import load_tool
from fashionlens.checkpoint import ModelInfo, load_model_file, save_model
from fashionlens.models import FashionNet
from fashionlens.models.heads import RecognitionHead
from fashionlens.train.frozen import FeatureCache, train_head_on_cache


@pytest.fixture(scope="module")
def tool():
    return load_tool("refit_attributes")


def _base(path: Path) -> Path:
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 2}, "attributes": {"num_classes": 3}})
    names = {"category": ["a", "b"], "attributes": ["x", "y", "z"]}
    save_model(net, ModelInfo(net.spec, names, net.data_config), path, half=True)
    return path


def test_graft_keeps_every_other_tensor_and_loads(tool, tmp_path):
    base = _base(tmp_path / "base.safetensors")
    head = RecognitionHead(32, 3, kind="linear", pool="max")
    torch.nn.init.normal_(head.classifier.weight)
    provenance = {"epochs": 3}
    saved = {"head": {"kind": "linear", "pool": "max"}, "state": head.state_dict(), "provenance": provenance}
    torch.save(saved, tmp_path / "head.pt")
    out = tmp_path / "grafted.safetensors"
    result = tool.graft(str(base), str(tmp_path / "head.pt"), str(out))
    assert result["head_tensors"] == 2 and result["head"]["pool"] == "max"
    model, _ = load_model_file(out)
    ref, _ = load_model_file(base)
    with safe_open(str(out), framework="pt") as f:
        assert json.loads(f.metadata()["attribute_refit"]) == provenance
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got, want = model(x), ref(x)
        assert torch.equal(got["category"], want["category"])
        expected = head.half().float().eval()(ref.backbone(x))  # the graft stores float16 weights
    assert torch.allclose(got["attributes"], expected, atol=1e-5)


def test_check_graft_names_a_changed_tensor(tool, tmp_path):
    base = _base(tmp_path / "base.safetensors")
    model, info = load_model_file(base)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("backbone.")).add_(1e-2)
    save_model(model, info, tmp_path / "other.safetensors", half=True)
    with pytest.raises(SystemExit, match="1 tensor\\(s\\) outside the attribute head changed"):
        tool.check_graft(str(base), str(tmp_path / "other.safetensors"))
    assert tool.check_graft(str(base), str(base))["head_tensors"] == 2


def test_parse_head_and_views(tool):
    assert tool.parse_head(["kind=linear", "pool=max", "conv_channels=256", "dropout=0.1"]) == {
        "kind": "linear", "pool": "max", "conv_channels": 256, "dropout": 0.1}
    train = {"features": torch.zeros(4, 3, 8, 2, 2), "targets": torch.zeros(4, 3), "mask": torch.ones(4, 3)}
    cache = FeatureCache(["x", "y", "z"], {"train": train, "val": train}, {"views": ["eval", "a", "b"]})
    assert tool.with_views(cache, "eval").splits["train"]["features"].shape == (4, 1, 8, 2, 2)
    assert tool.with_views(cache, "all").splits["train"]["features"].shape == (4, 3, 8, 2, 2)


def test_zero_learning_rate_keeps_the_init(tool):
    torch.manual_seed(0)
    train = {"features": torch.randn(8, 1, 4, 2, 2).half(), "targets": (torch.rand(8, 3) > 0.5).float(),
             "mask": torch.ones(8, 3), "paths": [str(i) for i in range(8)]}
    cache = FeatureCache(["x", "y", "z"], {"train": train, "val": train}, {"head": "attributes"})
    init = RecognitionHead(4, 3).state_dict()
    init["classifier.bias"] = torch.tensor([0.5, -1.0, 2.0])
    res = train_head_on_cache(cache, {"kind": "linear"}, epochs=1, lr=0.0, weight_decay=0.0, batch_size=4,
                              progress=False, init=init)
    assert torch.equal(res["model"].classifier.bias.detach(), init["classifier.bias"])
