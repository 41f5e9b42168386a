"""Training-step cost of each multi-label head kind on a Lite0 feature map, at 1 and 2 torch threads.

One AdamW step (forward, BCE, backward, update) of the head alone on a (B, 1280, 10, 7) map, the
EfficientNet-Lite0 output at 320 x 224 (the frozen-feature study of docs/multilabel-heads.md), and,
with ``--backbone``, one fine-tuning step of Lite0 + linear head (3 stages frozen, channels-last).
Every row is timed in this one process at each thread count, so the ratios hold on a shared machine
whose absolute speed drifts.

    python bench/head_cost.py [--batch 32] [--iters 3] [--threads 1 2] [--backbone]
"""

from __future__ import annotations

import argparse
import os

import torch
from _common import cpu_model, markdown_table, time_call

from fashionlens.losses import compute_losses
from fashionlens.models import FashionNet, RecognitionHead

HEADS = {
    "linear": {"kind": "linear"},
    "gcn (hidden 1024)": {"kind": "gcn", "embed_dim": 50},
    "mldecoder (width 256, ffn 1024)": {"kind": "mldecoder", "decoder": {"width": 256, "ffn": 1024}},
    "mldecoder (width 768, ffn 2048)": {"kind": "mldecoder"},
    "query2label (width 256, 1 enc + 2 dec)": {"kind": "query2label"},
}


def head_step(kw: dict, batch: int):
    head = RecognitionHead(1280, 56, **kw)
    opt = torch.optim.AdamW(head.parameters(), 1e-3)
    x = torch.randn(batch, 1280, 10, 7)
    t = (torch.rand(batch, 56) > 0.9).float()

    def step():
        loss = compute_losses({"labels": head(x)}, {"labels": t})["labels"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in head.parameters())


def backbone_step(batch: int):
    net = FashionNet(
        "efficientnet_lite0",
        heads={"labels": {"num_classes": 56}},
        backbone_kwargs={"input_size": (320, 224)},
    )
    net.backbone.freeze_stages(3)
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-4)
    x = torch.randn(batch, 3, 320, 224).contiguous(memory_format=torch.channels_last)
    t = (torch.rand(batch, 56) > 0.9).float()

    def step():
        loss = compute_losses(net(x), {"labels": t})["labels"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in net.parameters() if p.requires_grad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backbone", action="store_true", help="also a Lite0 fine-tuning step (batch 16)")
    args = ap.parse_args()
    rows = []
    cases = [(name, lambda kw=kw: head_step(kw, args.batch)) for name, kw in HEADS.items()]
    if args.backbone:
        cases.append(("Lite0 fine-tuning step, batch 16 (3 stages frozen)", lambda: backbone_step(16)))
    for name, build in cases:
        step, params = build()
        times = []
        for n in args.threads:
            torch.set_num_threads(n)
            times.append(time_call(step, args.iters).median)
        rows.append(
            [name, f"{params / 1e6:.2f} M"]
            + [f"{1000 * s:.0f}" for s in times]
            + ([f"{times[-1] / times[0]:.1f}x"] if len(times) > 1 else [])
        )
    headers = [f"head (batch {args.batch})", "trainable"] + [f"ms/step, {n} thread(s)" for n in args.threads]
    headers += [f"{args.threads[-1]} vs {args.threads[0]} threads"] if len(args.threads) > 1 else []
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; load average {os.getloadavg()[0]:.1f} at the "
        "end"
    )
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
