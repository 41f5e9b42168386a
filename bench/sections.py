"""Report sections beyond the per-network tables: end to end, input pipeline, scaling, torch.compile."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _common import markdown_table, time_call
from models import CASES, build, flops_per_image, train_step_timing
from pipeline import SIZE_HW, find_jpegs, pipeline_rates, predict_rate
from scaling import gcn_label_scaling, input_size_scaling

from fashionlens.inference.predictor import Predictor, load_model, resolve_model_path
from fashionlens.models import build_model


def _eager_baseline(path: Path) -> Predictor:
    """The plain predictor: eager fp32, contiguous memory, no_grad, one decoding thread."""
    pred = load_model(path, backend="torch")
    net = build_model(pred.model.spec).eval()
    net.load_state_dict({k: v.float().contiguous() for k, v in pred.model.state_dict().items()})

    def run(batch: torch.Tensor) -> dict:
        with torch.no_grad():
            return {k: v.numpy() for k, v in net(batch).items()}

    pred.runner, pred.backend, pred.workers = run, "eager fp32 (1 decode thread)", 1
    return pred


def _e2e_predictors(path: Path) -> dict[str, Predictor]:
    return {"eager fp32, 1 decode thread": _eager_baseline(path),
            "torch channels-last + inference_mode": load_model(path, backend="torch"),
            "onnx runtime (backend onnx)": load_model(path, backend="onnx"),
            "auto (the default)": load_model(path, backend="auto")}


def section_e2e(report, args, ceiling: float) -> None:
    """The shipped model through Predictor.predict on real JPEGs (what `fashionlens predict` runs)."""
    files = find_jpegs(args.images)
    if not files:
        report.add("End to end", "skipped: no JPEGs under ../shared/data/ccp/photos")
        return
    rows, tops = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FASHIONLENS_CACHE"] = str(Path(tmp) / "cache")  # a fresh ONNX export, timed apart
        path = Path(tmp) / "fashionlens-lite.safetensors"
        shutil.copyfile(resolve_model_path("fashionlens-lite"), path)
        predictors = _e2e_predictors(path)
        baseline = next(iter(predictors.values()))
        size = tuple(baseline.info.data_config.input_size)
        flops = flops_per_image(baseline.model, size)
        for name, pred in predictors.items():
            ips, preds = predict_rate(pred, files, passes=2 if args.quick else 3, top_k=1)
            tops[name] = [p.category[0].label for p in preds]
            base = rows[0][1] if rows else ips
            rows.append([name, ips, ips / base, flops * ips / ceiling, pred.backend])
    same = all(t == next(iter(tops.values())) for t in tops.values())
    report.data["e2e"] = rows
    report.add(
        "End to end: Predictor.predict, the shipped fashionlens-lite weights, real JPEGs",
        f"{len(files)} CCP photos (~550x830) -> {size[1]}x{size[0]} (W x H), batch 32, decoding included; "
        f"top-1 identical across variants: **{same}**\n\n"
        + markdown_table(
            ["variant", "images/s", "x eager", "network FLOP/s of matmul (whole run)", "backend"], rows
        ),
    )


def section_pipeline(report, args, ceiling: float) -> None:
    files = find_jpegs(args.images * 2)
    if not files:
        report.add("Input pipeline", "skipped: no JPEGs under ../shared/data/ccp/photos")
        return
    rates = pipeline_rates(files)
    base = next(iter(rates.values()))
    rows = [[name, r, r / base] for name, r in rates.items()]
    t, _ = train_step_timing(CASES["seedA"], args.train_batch, 1, args.device)
    consumed = args.train_batch / t.best
    loader = rates["load_image(draft) + train transform (crop, flip, jitter)"]
    report.data["pipeline"] = {"rows": rows, "seedA_train_samples_per_s": consumed}
    report.add(
        "Input pipeline (one worker, one thread)",
        f"{len(files)} CCP JPEGs -> {SIZE_HW[1]}x{SIZE_HW[0]} (W x H)\n\n"
        + markdown_table(["pipeline", "images/s/worker", "x plain PIL"], rows)
        + f"\n\nseed A training step consumes {consumed:.2f} samples/s (batch {args.train_batch}); one "
        f"loader worker delivers {loader:.0f} images/s = **{loader / consumed:.0f}x** that",
    )


def section_scaling(report, args, ceiling: float) -> None:
    iters = 2 if args.quick else 5
    rows = gcn_label_scaling(iters=iters)
    report.data["scaling_labels"] = rows
    report.add(
        "ML-GCN head vs number of labels C (Lite0 features 320x224, batch 8)",
        markdown_table(
            [
                "C",
                "label classifiers ms (GCN)",
                "head alone ms (eager)",
                "whole model ms (eager)",
                "whole model ms (ORT)",
            ],
            rows,
        ),
    )
    rows = input_size_scaling(iters=iters)
    report.data["scaling_size"] = rows
    report.add(
        "Lite0 (shipped heads) vs input size (square, batch 8)",
        markdown_table(
            ["side", "GFLOP/image", "eager ms/batch", "ORT ms/batch", "ORT images/s", "ORT x eager"], rows
        ),
    )


def section_compile(report, args, ceiling: float) -> None:
    case = CASES["lite"]
    net = build(case).to(memory_format=torch.channels_last)
    x = torch.randn(32, 3, *case.size).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = time_call(lambda: net(x), iters=2)
        start = time.perf_counter()
        compiled = torch.compile(net)
        compiled(x)
        compile_s = time.perf_counter() - start
        comp = time_call(lambda: compiled(x), iters=2)
    rows = [
        ["eager channels-last", 32 / eager.best, 1.0, 0.0],
        ["torch.compile (inductor)", 32 / comp.best, eager.best / comp.best, compile_s],
    ]
    report.data["compile"] = rows
    report.add(
        "torch.compile (shipped architecture, batch 32)",
        markdown_table(["variant", "images/s", "x eager channels-last", "compile s"], rows),
    )
