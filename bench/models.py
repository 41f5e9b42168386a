"""The benchmarked networks, and inference / training / FLOP measurements on them.

Weights are random (only the architecture matters for speed); GCN label embeddings and adjacency
are filled with random values so the classifiers are not all zero.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import PeakMemory, Timing, sync, time_call

from fashionlens.checkpoint import ModelInfo
from fashionlens.models.fashion_net import FashionNet

_GCN = {"kind": "gcn", "embed_dim": 50, "pool": "max", "gcn_hidden": 1024}


@dataclass(frozen=True)
class ModelCase:
    """One benchmarked configuration: a FashionNet spec and its input size (H, W)."""

    key: str
    title: str
    backbone: str
    heads: dict
    size: tuple[int, int]
    landmarks: dict | None = None


CASES = {c.key: c for c in [
    ModelCase("lite", "shipped: EfficientNet-Lite0 + category(10) + ML-GCN labels(56), 320x224",
              "efficientnet_lite0", {"category": {"num_classes": 10, "dropout": 0.2},
                                     "labels": {"num_classes": 56, **_GCN}}, (320, 224)),
    ModelCase("seedA", "seed A: VGG-19 conv4 + GLEM + fused category(50)/attributes(1000), 224",
              "vgg19_conv4", {"category": {"num_classes": 50, "conv_channels": 512},
                              "attributes": {"num_classes": 1000, "conv_channels": 512}}, (224, 224),
              landmarks={"fuse": True}),
    ModelCase("seedB448", "seed B: ML-GCN ResNet-50, 23 labels, 448", "resnet50",
              {"labels": {"num_classes": 23, **_GCN}}, (448, 448)),
    ModelCase("seedB224", "seed B: ML-GCN ResNet-50, 23 labels, 224", "resnet50",
              {"labels": {"num_classes": 23, **_GCN}}, (224, 224)),
]}  # fmt: skip


def build(case: ModelCase, seed: int = 0) -> FashionNet:
    """The case's FashionNet in eval mode, random weights, random label graph buffers."""
    torch.manual_seed(seed)
    net = FashionNet(case.backbone, heads=case.heads, landmarks=case.landmarks,
                     backbone_kwargs={"input_size": case.size})
    for head in net.heads.values():
        if head.kind == "gcn":
            c = head.classifier.adjacency.shape[0]
            head.classifier.embeddings.normal_()
            head.classifier.adjacency.copy_(torch.softmax(torch.randn(c, c), dim=1))
    if case.landmarks:
        for glem in net.glem:
            glem.non_local.bn.weight.data.fill_(0.1)
    return net.eval()


def info_for(net: FashionNet) -> ModelInfo:
    names = {k: [f"{k}_{i}" for i in range(h.classifier.weight.shape[0] if h.kind == "linear"
                                           else h.classifier.adjacency.shape[0])]
             for k, h in net.heads.items()}
    return ModelInfo(net.spec, names, net.data_config)


def flops_per_image(net: torch.nn.Module, size: tuple[int, int]) -> float:
    """Forward FLOPs of one image, counted by ``torch.utils.flop_counter.FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.randn(1, 3, *size))
    return float(counter.get_total_flops())


def matmul_flops(device: str = "cpu", n: int = 2048, iters: int = 5) -> float:
    """Measured fp32 matrix-multiply FLOP/s (n x n @ n x n): the machine's practical ceiling."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    t = time_call(lambda: torch.mm(a, b), iters=iters, warmup=2, device=device)
    return 2 * n**3 / t.best


def runners(net: FashionNet, case: ModelCase, device: str, onnx: bool) -> dict[str, Callable]:
    """variant name -> (batch -> outputs): eager fp32, channels-last (+inference_mode), ONNX Runtime."""
    cl_net = build(case).to(device).to(memory_format=torch.channels_last)
    cl_net.load_state_dict(net.state_dict())
    eager_net = net.to(device)

    def eager(x: torch.Tensor):
        with torch.no_grad():
            return eager_net(x)

    def channels_last(x: torch.Tensor):
        with torch.inference_mode():
            return cl_net(x.to(memory_format=torch.channels_last))

    out = {"eager fp32": eager, "channels-last": channels_last}
    if onnx and torch.device(device).type == "cpu":
        out["onnx runtime"] = onnx_runner_for(net)
    return out


def onnx_runner_for(net: FashionNet):
    """Export ``net`` (checked within 1e-4 of PyTorch) to a temporary file and open it in ORT."""
    from fashionlens.inference.export import export_module
    from fashionlens.inference.onnx_runner import OnnxRunner

    with tempfile.TemporaryDirectory() as tmp:
        path = export_module(net, info_for(net), Path(tmp) / "m.onnx")
        return OnnxRunner(path)


def max_diff(a: dict, b: dict) -> float:
    """Largest absolute difference over all outputs of two runners."""
    def arr(v):
        return v.detach().float().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    return max(float(np.abs(arr(a[k]) - arr(b[k])).max()) for k in a)


def infer(run: Callable, size: tuple[int, int], batch: int, iters: int, device: str) -> tuple[Timing, float]:
    """(timing per batch, peak memory MiB) of one runner on a random batch."""
    x = torch.randn(batch, 3, *size, device=device)
    with PeakMemory(device) as mem:
        t = time_call(lambda: run(x), iters=iters, warmup=1, device=device)
    return t, mem.mib


def train_step_timing(case: ModelCase, batch: int, iters: int, device: str, channels_last: bool = False,
                      freeze_stages: int = 0) -> tuple[Timing, float]:
    """One optimisation step (forward, summed losses, backward, AdamW step) per call, fp32.

    ``channels_last`` and ``freeze_stages`` are the training switches ``trainer.channels_last`` and
    ``optim.freeze_stages`` (the stem and the first n EfficientNet stages: no gradient, no backward).
    """
    net = build(case).to(device).train()
    if freeze_stages:
        net.backbone.freeze_stages(freeze_stages)
    x = torch.randn(batch, 3, *case.size, device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = net(x)
        loss = sum(v.float().pow(2).mean() for v in out.values())
        loss.backward()
        opt.step()

    with PeakMemory(device) as mem:
        t = time_call(step, iters=iters, warmup=1, device=device)
    sync(device)
    return t, mem.mib
