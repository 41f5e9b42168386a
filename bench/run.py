"""fashionlens benchmark suite: one entry point, markdown report on stdout (and --out).

Sections (``--sections``, comma-separated):
  ceiling   measured 2048x2048 fp32 matmul FLOP/s
  infer     images/s at batch 1 and 32 + peak memory: eager fp32 vs channels-last vs ONNX Runtime,
            ratio to eager, achieved FLOP/s as a fraction of the matmul ceiling, max |diff|
  train     samples/s of one optimisation step (forward, backward, AdamW), eager fp32
  e2e       the shipped architecture end to end through Predictor.predict (JPEG decoding included)
  pipeline  input pipeline images/s per worker on real JPEGs vs plain PIL
  scaling   ML-GCN head vs number of labels; Lite0 time vs input size
  compile   torch.compile on the shipped architecture (once; slow to compile)

Usage:
    .venv/bin/python bench/run.py --quick
    .venv/bin/python bench/run.py --models lite,seedB224 --iters 5 --sections infer
    fashionlens bench --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from _common import machine_facts, markdown_table  # noqa: E402
from models import CASES, build, flops_per_image, infer, matmul_flops, max_diff, runners, train_step_timing  # noqa: E402

ALL_SECTIONS = ("ceiling", "infer", "train", "e2e", "pipeline", "scaling", "compile")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="fashionlens benchmarks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    ap.add_argument("--quick", action="store_true", help="few iterations and images (minutes on 2 cores)")
    ap.add_argument("--models", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations per measurement")
    ap.add_argument("--batches", default="1,32", help="inference batch sizes")
    ap.add_argument("--train-batch", type=int, default=8, help="batch of the training step")
    ap.add_argument(
        "--sections",
        default=None,
        help=f"comma-separated subset of {','.join(ALL_SECTIONS)} (default: all but compile)",
    )
    ap.add_argument("--images", type=int, default=None, help="JPEGs for the e2e and pipeline sections")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime variants")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown report (and .json) here")
    args = ap.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    unknown = set(args.models) - set(CASES)
    if unknown:
        ap.error(f"unknown model(s) {sorted(unknown)}; choose from {','.join(CASES)}")
    args.sections = (args.sections or ",".join(s for s in ALL_SECTIONS if s != "compile")).split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    args.images = args.images or (64 if args.quick else 256)
    return args


def iters_for(args: argparse.Namespace, key: str, batch: int) -> int:
    """Timed iterations: --iters, else fewer for the heavy networks and big batches."""
    if args.iters:
        return args.iters
    light = key == "lite"
    if args.quick:
        return (5 if batch == 1 else 2) if light else (2 if batch == 1 else 1)
    return (20 if batch == 1 else 5) if light else (5 if batch == 1 else 2)


class Report:
    """Collects markdown sections and raw numbers."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.data: dict = {}

    def add(self, title: str, text: str) -> None:
        block = f"### {title}\n\n{text}\n"
        self.parts.append(block)
        print(block, flush=True)

    def text(self) -> str:
        return "\n".join(self.parts)


def section_machine(report: Report) -> None:
    facts = machine_facts()
    report.data["machine"] = facts
    report.add("Machine", "\n".join(f"- {k}: {v}" for k, v in facts.items()))


def section_ceiling(report: Report, args: argparse.Namespace) -> float:
    peak = matmul_flops(args.device, iters=3 if args.quick else 10)
    report.data["matmul_flops"] = peak
    report.add(
        "Ceiling", f"fp32 matmul 2048x2048 on {args.device}: **{peak / 1e9:.1f} GFLOP/s** (best of runs)"
    )
    return peak


def infer_rows(args: argparse.Namespace, key: str, ceiling: float) -> list[list[object]]:
    """One row per (variant, batch) for one model."""
    case = CASES[key]
    net = build(case)
    flops = flops_per_image(net, case.size)
    variants = runners(net, case, args.device, onnx=not args.no_onnx)
    rows = []
    for batch in args.batches:
        x = torch.randn(batch, 3, *case.size, device=args.device)
        ref, base = None, None
        for name, run in variants.items():  # eager first: it is the reference and the baseline
            t, mib = infer(run, case.size, batch, iters_for(args, key, batch), args.device)
            ips = batch / t.best
            base = base or ips
            out = run(x)
            ref = ref or out
            rows.append([key, name, batch, ips, ips / base, mib, flops * ips / ceiling, max_diff(ref, out)])
    return rows


def section_infer(report: Report, args: argparse.Namespace, ceiling: float) -> None:
    rows: list[list[object]] = []
    for key in args.models:
        t0 = time.perf_counter()
        rows += infer_rows(args, key, ceiling)
        print(f"[infer {key}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    report.data["infer"] = rows
    flops = {key: flops_per_image(build(CASES[key]), CASES[key].size) for key in args.models}
    legend = "\n".join(f"- {k}: {CASES[k].title}; {flops[k] / 1e9:.2f} GFLOP/image" for k in args.models)
    table = markdown_table(
        ["model", "variant", "batch", "images/s", "x eager", "peak MiB", "of matmul FLOP/s", "max abs diff"],
        rows,
    )
    report.add("Inference", legend + "\n\n" + table)


def train_variants(key: str) -> list[tuple[str, dict]]:
    variants = [("eager fp32", {}), ("channels-last", {"channels_last": True})]
    if CASES[key].backbone == "efficientnet_lite0":
        variants.append(("channels-last + freeze_stages=3", {"channels_last": True, "freeze_stages": 3}))
    return variants


def section_train(report: Report, args: argparse.Namespace, ceiling: float) -> None:
    rows = []
    for key in args.models:
        case = CASES[key]
        flops = 3 * flops_per_image(build(case), case.size)  # forward + ~2x backward (all layers)
        base = None
        for name, kw in train_variants(key):
            t, mib = train_step_timing(case, args.train_batch, 1 if args.quick else 3, args.device, **kw)
            base = base or t.best
            rows.append(
                [
                    key,
                    name,
                    args.train_batch,
                    t.best,
                    args.train_batch / t.best,
                    base / t.best,
                    mib,
                    flops * args.train_batch / t.best / ceiling,
                ]
            )
    report.data["train"] = rows
    report.add(
        "Training step (fp32, AdamW)",
        markdown_table(
            [
                "model",
                "variant",
                "batch",
                "s/step",
                "samples/s",
                "x eager",
                "peak MiB",
                "of matmul FLOP/s (~3x fwd)",
            ],
            rows,
        )
        + "\n\nThe FLOP fraction counts the whole network's backward, also where frozen stages skip it.",
    )


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(argv)
    report = Report()
    section_machine(report)
    ceiling = section_ceiling(report, args)
    from sections import section_compile, section_e2e, section_pipeline, section_scaling

    table = {
        "infer": section_infer,
        "train": section_train,
        "e2e": section_e2e,
        "pipeline": section_pipeline,
        "scaling": section_scaling,
        "compile": section_compile,
    }
    for name in args.sections:
        if name in table:
            t0 = time.perf_counter()
            table[name](report, args, ceiling)
            print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.text())
        args.out.with_suffix(".json").write_text(json.dumps(report.data, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
