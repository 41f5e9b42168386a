"""The four head kinds: shapes on any backbone and input size, gradient flow, hand-checked cases.

The multi-token cases are checked against a small numpy transcription of the papers' equations
(scaled dot-product attention, post-norm residual blocks) written here, not against the modules.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fashionlens.checkpoint import ModelInfo, load_model_file, save_model
from fashionlens.data.config import DataConfig
from fashionlens.models import FashionNet, MLDecoderClassifier, Query2LabelClassifier, RecognitionHead
from fashionlens.models.query_heads import sine_position_encoding

SMALL = {"width": 16, "num_heads": 2, "ffn": 32}


def _head_kwargs(kind: str) -> dict:
    kw = {"kind": kind}
    if kind == "gcn":
        kw["embed_dim"] = 4
    if kind in ("mldecoder", "query2label"):
        kw["decoder"] = SMALL
    return kw


@pytest.mark.parametrize("kind", ["linear", "gcn", "mldecoder", "query2label"])
@pytest.mark.parametrize("backbone", ["test_tiny", "basic_cnn"])
@pytest.mark.parametrize("size", [(32, 32), (48, 80)])
def test_every_head_kind_on_any_backbone_and_input_size(kind, backbone, size):
    net = FashionNet(backbone, heads={"labels": {"num_classes": 7, **_head_kwargs(kind)}}).eval()
    assert net(torch.randn(2, 3, *size))["labels"].shape == (2, 7)


@pytest.mark.parametrize("kind", ["linear", "gcn", "mldecoder", "query2label"])
def test_gradients_reach_every_trainable_weight_and_the_features(kind):
    torch.manual_seed(0)
    head = RecognitionHead(8, 5, **_head_kwargs(kind)).train()
    if kind == "gcn":
        head.classifier.embeddings.normal_()
    x = torch.randn(3, 8, 4, 6, requires_grad=True)
    head(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mldecoder_queries_are_fixed_and_grouped():
    clf = MLDecoderClassifier(8, 250, width=16, num_heads=2, ffn=32, dropout=0.0)
    assert clf.num_queries == 100 and clf.group_size == 3  # K = min(100, C), ceil(250 / 100) labels a query
    assert "queries" in dict(clf.named_buffers()) and "queries" not in dict(clf.named_parameters())
    assert clf(torch.randn(2, 8, 3, 3)).shape == (2, 250)
    assert MLDecoderClassifier(8, 7, width=16, num_heads=2, ffn=32).num_queries == 7


def _set_linear(layer: torch.nn.Linear, weight, bias) -> None:
    layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
    layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


@torch.no_grad()
def test_mldecoder_hand_worked_case():
    # d = 2, one token, K = 2 queries for C = 3 labels (2 per group, the 4th output cut off).
    clf = MLDecoderClassifier(2, 3, width=2, num_heads=1, ffn=2, dropout=0.0, num_queries=2).eval()
    _set_linear(clf.embed, torch.eye(2), [0, 0])
    clf.queries.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    attn = clf.layer.attn
    attn.in_proj_weight.copy_(torch.cat([torch.eye(2)] * 3))
    attn.in_proj_bias.zero_()
    _set_linear(attn.out_proj, torch.eye(2), [0, 0])
    for lin in (clf.layer.linear1, clf.layer.linear2):
        lin.weight.zero_()
        lin.bias.zero_()
    clf.group_weight.copy_(torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.0], [0.0, 0.5]]]))
    clf.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    x = torch.tensor([1.0, -2.0]).reshape(1, 2, 1, 1)
    # token = ReLU([1, -2]) = [1, 0]; one key, so both queries attend to it fully: attended = [1, 0].
    # q1: LN(2 [1, 0]) = [1, -1]; LN([1, -1] + [1, 0]) = LN([2, -1]) = [1, -1]; FFN adds 0.
    # q2: LN(2 [0, 2]) = [-1, 1]; LN([-1, 1] + [1, 0]) = LN([0, 1]) = [-1, 1].
    # group 1: [1, -1] @ [[1, 2], [3, 4]] = [-2, -2]; group 2: [-1, 1] @ 0.5 I = [-0.5, 0.5]
    # outputs [-2, -2, -0.5] + bias [0.1, 0.2, 0.3]
    assert clf(x).squeeze(0).tolist() == pytest.approx([-1.9, -1.8, -0.2], abs=1e-4)


def test_sine_position_encoding_hand_worked():
    # dim 4: one frequency (1) per axis; H = 1: y = 2 pi; W = 2: x = pi, 2 pi -> (sin, cos) pairs
    pos = sine_position_encoding(1, 2, 4)
    np.testing.assert_allclose(pos.numpy(), [[0.0, 1.0, 0.0, -1.0], [0.0, 1.0, 0.0, 1.0]], atol=1e-6)
    assert sine_position_encoding(3, 5, 8).shape == (15, 8)
    with pytest.raises(ValueError, match="divisible by 4"):
        sine_position_encoding(2, 2, 6)


@torch.no_grad()
def test_query2label_hand_worked_case():
    # width 4, C = 2 queries, one decoder layer; both attentions have value weights 0, so the
    # self-attention adds 0 and the cross-attention adds its output bias b = [1, 1, -1, -1].
    clf = Query2LabelClassifier(
        3, 2, width=4, num_heads=1, ffn=4, dropout=0.0, encoder_layers=0, decoder_layers=1
    ).eval()
    layer = clf.decoder.layers[0]
    for attn, out_bias in ((layer.self_attn, [0, 0, 0, 0]), (layer.multihead_attn, [1, 1, -1, -1])):
        attn.in_proj_weight[8:].zero_()
        attn.in_proj_bias.zero_()
        attn.out_proj.bias.copy_(torch.tensor(out_bias, dtype=torch.float32))
    for lin in (layer.linear1, layer.linear2):
        lin.weight.zero_()
        lin.bias.zero_()
    clf.queries.copy_(torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]]))
    clf.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]]))
    clf.bias.copy_(torch.tensor([0.1, -0.2]))
    # q1: LN([1,-1,1,-1]) = same; + b = [2, 0, 0, -2] -> LN = [sqrt2, 0, 0, -sqrt2]; score sqrt2 + 0.1
    # q2: LN([1,1,-1,-1]) = same; + b = [2, 2, -2, -2] -> LN = [1, 1, -1, -1]; score 1 + 2 - 0.2
    out = clf(torch.randn(1, 3, 2, 3))
    assert out.squeeze(0).tolist() == pytest.approx([math.sqrt(2) + 0.1, 2.8], abs=1e-4)


# -- numpy transcription of the equations, for the multi-token cases ----------------------------------


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _ln(x, norm) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + norm.eps) * _np(norm.weight) + _np(norm.bias)


def _mha(q, kv, attn, heads) -> np.ndarray:
    """softmax(Q K^T / sqrt(d_h)) V per head, heads concatenated, output projection."""
    w, b = _np(attn.in_proj_weight), _np(attn.in_proj_bias)
    d = q.shape[-1]
    qp, kp, vp = q @ w[:d].T + b[:d], kv @ w[d : 2 * d].T + b[d : 2 * d], kv @ w[2 * d :].T + b[2 * d :]
    dh = d // heads
    outs = []
    for h in range(heads):
        s = slice(h * dh, (h + 1) * dh)
        scores = qp[:, s] @ kp[:, s].T / math.sqrt(dh)
        a = np.exp(scores - scores.max(-1, keepdims=True))
        outs.append((a / a.sum(-1, keepdims=True)) @ vp[:, s])
    return np.concatenate(outs, -1) @ _np(attn.out_proj.weight).T + _np(attn.out_proj.bias)


def _ffn(x, lin1, lin2) -> np.ndarray:
    return np.maximum(x @ _np(lin1.weight).T + _np(lin1.bias), 0) @ _np(lin2.weight).T + _np(lin2.bias)


def _tokens(x: torch.Tensor) -> np.ndarray:  # (1, D, H, W) -> (H*W, D), row-major
    d = x.shape[1]
    return _np(x[0]).reshape(d, -1).T


@torch.no_grad()
def test_mldecoder_matches_the_equations_on_many_tokens():
    torch.manual_seed(1)
    clf = MLDecoderClassifier(6, 5, width=8, num_heads=2, ffn=12, dropout=0.0, num_queries=2).eval()
    clf.group_weight.normal_()
    x = torch.randn(1, 6, 3, 4)
    layer = clf.layer
    tokens = np.maximum(_tokens(x) @ _np(clf.embed.weight).T + _np(clf.embed.bias), 0)  # (12, 8)
    q = _ln(2 * _np(clf.queries), layer.norm1)
    q = _ln(q + _mha(q, tokens, layer.attn, 2), layer.norm2)
    q = _ln(q + _ffn(q, layer.linear1, layer.linear2), layer.norm3)  # (K=2, 8)
    g = _np(clf.group_weight)  # (2, 8, 3)
    expected = np.concatenate([q[k] @ g[k] for k in range(2)])[:5] + _np(clf.bias)
    np.testing.assert_allclose(clf(x)[0].double().numpy(), expected, atol=1e-5)
    # no positional encoding: the tokens' order does not matter
    perm = x.flatten(2)[:, :, torch.randperm(12)].reshape(1, 6, 3, 4)
    assert torch.allclose(clf(perm), clf(x), atol=1e-5)


@torch.no_grad()
def test_query2label_matches_the_equations_on_many_tokens():
    torch.manual_seed(2)
    clf = Query2LabelClassifier(
        6, 3, width=8, num_heads=2, ffn=12, dropout=0.0, encoder_layers=1, decoder_layers=1
    ).eval()
    clf.weight.normal_()
    x = torch.randn(1, 6, 2, 3)
    enc, dec = clf.encoder.layers[0], clf.decoder.layers[0]
    mem = (
        _tokens(x) @ _np(clf.input_proj.weight).T
        + _np(clf.input_proj.bias)
        + _np(sine_position_encoding(2, 3, 8))
    )
    mem = _ln(mem + _mha(mem, mem, enc.self_attn, 2), enc.norm1)
    mem = _ln(mem + _ffn(mem, enc.linear1, enc.linear2), enc.norm2)
    q = _np(clf.queries)
    q = _ln(q + _mha(q, q, dec.self_attn, 2), dec.norm1)
    q = _ln(q + _mha(q, mem, dec.multihead_attn, 2), dec.norm2)
    q = _ln(q + _ffn(q, dec.linear1, dec.linear2), dec.norm3)  # (C, 8)
    expected = (q * _np(clf.weight)).sum(-1) + _np(clf.bias)
    np.testing.assert_allclose(clf(x)[0].double().numpy(), expected, atol=1e-5)


@torch.no_grad()
def test_queries_from_word_embeddings():
    emb = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # labels 0 and 2 share a word vector
    q2l = Query2LabelClassifier(4, 3, width=8, num_heads=2, ffn=8)
    q2l.load_label_embeddings(emb)
    q = q2l.queries
    assert torch.allclose(q[0], q[2]) and not torch.allclose(q[0], q[1])
    assert q.mean().abs() < 1e-5 and abs(q.std().item() - 1) < 1e-4 and q.requires_grad
    mld = MLDecoderClassifier(4, 3, width=8, num_heads=2, ffn=8, embed_dim=3, num_queries=2)
    assert mld.num_queries == 3 and mld.group_size == 1  # one query per label
    mld.load_label_embeddings(emb)
    expected = torch.relu(
        torch.as_tensor(emb, dtype=torch.float32) @ mld.query_proj.weight.T + mld.query_proj.bias
    )
    assert torch.allclose(mld.query_matrix(), expected)
    with pytest.raises(ValueError, match="fixed random queries"):
        MLDecoderClassifier(4, 3, width=8, num_heads=2).load_label_embeddings(emb)


def test_bad_head_settings_are_named():
    with pytest.raises(ValueError, match="head kind must be one of linear, gcn, mldecoder, query2label"):
        RecognitionHead(8, 3, kind="transformer")
    with pytest.raises(ValueError, match=r"unknown mldecoder decoder setting\(s\) \['depth'\]"):
        RecognitionHead(8, 3, kind="mldecoder", decoder={"depth": 2})
    with pytest.raises(ValueError, match="needs embed_dim"):
        RecognitionHead(8, 3, kind="query2label", query_init="embeddings")
    with pytest.raises(ValueError, match="not of 'linear'"):
        RecognitionHead(8, 3, kind="linear", decoder={"width": 8})
    with pytest.raises(ValueError, match="norm applies to pooled features"):
        RecognitionHead(8, 3, kind="mldecoder", norm="layer")


@pytest.mark.parametrize("kind", ["mldecoder", "query2label"])
def test_query_head_model_file_roundtrip(tmp_path, kind):
    heads = {
        "labels": {
            "num_classes": 3,
            "kind": kind,
            "decoder": SMALL,
            "query_init": "embeddings",
            "embed_dim": 4,
        }
    }
    net = FashionNet("test_tiny", heads=heads).eval()
    net.heads["labels"].classifier.load_label_embeddings(np.random.default_rng(0).normal(size=(3, 4)))
    info = ModelInfo(net.spec, {"labels": ["a", "b", "c"]}, DataConfig(input_size=(32, 32)))
    loaded, _ = load_model_file(save_model(net, info, tmp_path / "m.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(loaded.eval()(x)["labels"], net(x)["labels"], atol=1e-6)
