"""Scaling figures: time vs number of labels for the ML-GCN head, time vs input size for Lite0."""

from __future__ import annotations

import torch
from _common import time_call
from models import CASES, ModelCase, build, flops_per_image, onnx_runner_for

from fashionlens.models.heads import RecognitionHead


def gcn_label_scaling(labels=(10, 100, 1000), batch: int = 8, iters: int = 3) -> list[list[object]]:
    """Rows: C, head-alone forward ms (eager; classifiers recomputed per call), whole model ms (eager,
    ORT)."""
    rows = []
    base = CASES["lite"]
    for c in labels:
        torch.manual_seed(0)
        head = RecognitionHead(1280, c, kind="gcn", pool="max", embed_dim=50).eval()
        feats = torch.randn(batch, 1280, base.size[0] // 32, base.size[1] // 32)  # (B, C, h, w) of Lite0
        with torch.no_grad():
            t_head = time_call(lambda h=head, f=feats: h(f), iters=iters * 3)
            t_cls = time_call(lambda h=head: h.classifier.label_classifiers(), iters=iters * 3)
        case = ModelCase(
            f"lite_c{c}", "", base.backbone, {"labels": {**base.heads["labels"], "num_classes": c}}, base.size
        )
        net = build(case)
        x = torch.randn(batch, 3, *case.size)
        with torch.no_grad():
            t_net = time_call(lambda n=net, x=x: n(x), iters=iters)
        ort = onnx_runner_for(net)
        t_ort = time_call(lambda r=ort, x=x: r(x), iters=iters)
        rows.append([c, 1e3 * t_cls.best, 1e3 * t_head.best, 1e3 * t_net.best, 1e3 * t_ort.best])
    return rows


def input_size_scaling(sizes=(160, 224, 320, 448), batch: int = 8, iters: int = 3) -> list[list[object]]:
    """Rows: side, GFLOPs/image, eager ms/batch, ORT ms/batch, ORT images/s (Lite0, square input)."""
    rows = []
    base = CASES["lite"]
    for side in sizes:
        case = ModelCase(f"lite_{side}", "", base.backbone, base.heads, (side, side))
        net = build(case)
        x = torch.randn(batch, 3, side, side)
        with torch.no_grad():
            t_eager = time_call(lambda n=net, x=x: n(x), iters=iters)
        ort = onnx_runner_for(net)
        t_ort = time_call(lambda r=ort, x=x: r(x), iters=iters)
        rows.append(
            [
                side,
                flops_per_image(net, case.size) / 1e9,
                1e3 * t_eager.best,
                1e3 * t_ort.best,
                batch / t_ort.best,
                t_eager.best / t_ort.best,
            ]
        )
    return rows
