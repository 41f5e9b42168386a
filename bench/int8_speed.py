"""int8 vs fp32 under ONNX Runtime: the network alone and end to end (Predictor.predict), batch 1 and 32.

    .venv/bin/python bench/int8_speed.py [MODEL] [--int8 FILE.onnx] [--images 128] [--passes 3]

MODEL (default fashionlens-lite) runs as its fp32 ONNX export and as an int8 model (``--int8`` an
existing one, else made here as ``bench/int8_parity.py`` makes it). "network" times the ONNX Runtime
session alone on real photos already prepared; "end to end" is ``Predictor.predict`` on the JPEG
files (decoding, resizing and normalising in the Predictor's threads, overlapped with the network).
"decoding alone" is the Predictor's decoding on its own: with the network time it bounds what any
network speed-up can give end to end. Every figure is the best of ``--passes`` interleaved passes
(fp32 and int8 alternate, so a load that comes and goes hits both alike); ratios are int8 / fp32.
The CPU time per photo (all threads) is measured too: on a machine that other processes load it
is the steadier figure, and on a quiet machine that the work keeps busy, images/s ratios approach
its inverse ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import CpuMeter, machine_facts, markdown_table
from int8_parity import make_int8
from pipeline import find_jpegs

from fashionlens.inference.onnx_runner import INPUT_NAME, OnnxRunner, session_options
from fashionlens.inference.predictor import load_model


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in flags if "vnni" in f or f in ("avx2", "avx512f", "amx_int8")) or "no AVX2/VNNI"


def network_rate(runner: OnnxRunner, x: np.ndarray, iters: int) -> tuple[float, float]:
    """(images/s of the best call, CPU ms per image over all calls)."""
    runner(x)  # warm-up at this shape: ONNX Runtime plans its memory per shape
    best = float("inf")
    with CpuMeter() as cpu:
        for _ in range(iters):
            start = time.perf_counter()
            runner(x)
            best = min(best, time.perf_counter() - start)
    return len(x) / best, 1000 * cpu.seconds / (iters * len(x))


def e2e_rate(predictor, files: list[str]) -> tuple[float, float, list[str]]:
    """(images/s, CPU ms per image, top-1 labels) of one ``predict`` over ``files``."""
    predictor.predict(files[: predictor.batch_size])
    with CpuMeter() as cpu:
        start = time.perf_counter()
        preds = predictor.predict(files)
        rate = len(files) / (time.perf_counter() - start)
    return rate, 1000 * cpu.seconds / len(files), [p.category[0].label if p.category else "" for p in preds]


def op_profile(path: Path, x: np.ndarray, runs: int = 3) -> dict[str, float]:
    """ms per batch spent in each kind of operator (ONNX Runtime's profiler, graph after its fusions).

    Convolutions with ``group > 1`` (Lite0's depthwise convolutions) are counted apart.
    """
    import json

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = session_options()
        so.enable_profiling, so.profile_file_prefix = True, str(Path(tmp) / "profile")
        so.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        session.run(None, {INPUT_NAME: x})  # warm-up, profiled too: subtracted below
        for _ in range(runs):
            session.run(None, {INPUT_NAME: x})
        events = json.loads(Path(session.end_profiling()).read_text())
        groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1)
                  for n in onnx.load(so.optimized_model_filepath).graph.node}
    runs_seen = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    first_end = runs_seen[0]["ts"] + runs_seen[0]["dur"] if runs_seen else 0
    totals: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_end:
            node = e["name"].removesuffix("_kernel_time")
            kind = e["args"].get("op_name", "?") + (" (depthwise)" if groups.get(node, 1) > 1 else "")
            totals[kind] = totals.get(kind, 0.0) + e["dur"] / 1000 / runs
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def print_profile(paths: dict[str, Path], x: np.ndarray) -> None:
    prof = {name: op_profile(p, x) for name, p in paths.items()}
    print(f"\nwhere the time goes, batch {len(x)} (ONNX Runtime profiler, ms per batch):\n")
    rows = [["fp32 " + k, round(v, 1)] for k, v in prof["fp32"].items()]
    rows += [["int8 " + k, round(v, 1)] for k, v in prof["int8"].items()]
    print(markdown_table(["operator", "ms"], rows))
    conv = {n: {k: v for k, v in t.items() if "Conv" in k} for n, t in prof.items()}
    dw = {n: sum(v for k, v in t.items() if "depthwise" in k) for n, t in conv.items()}
    other = {n: sum(t.values()) - dw[n] for n, t in conv.items()}
    print(
        f"\ndense (1x1 and full) convolutions: {other['fp32']:.0f} -> {other['int8']:.0f} ms "
        f"({other['fp32'] / max(other['int8'], 1e-9):.2f}x); depthwise: {dw['fp32']:.0f} -> {dw['int8']:.0f} "
        f"ms ({dw['fp32'] / max(dw['int8'], 1e-9):.2f}x)"
    )


def keep_best(table: dict, key, value) -> None:
    """Keep the highest images/s and the lowest CPU time seen for ``key``."""
    old = table.get(key, (0.0, float("inf")))
    table[key] = (max(old[0], value[0]), min(old[1], value[1]))


def decode_rate(predictor, files: list[str]) -> float:
    with ThreadPoolExecutor(predictor.workers) as pool:
        list(pool.map(predictor.preprocess, files[:8]))
        start = time.perf_counter()
        list(pool.map(predictor.preprocess, files))
    return len(files) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[list[object]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="fashionlens-lite")
    ap.add_argument(
        "--int8", type=Path, default=None, help="an int8 .onnx of MODEL (default: quantise it here)"
    )
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args(argv)
    files = [str(f) for f in find_jpegs(args.images)]
    if not files:
        raise SystemExit("no JPEGs under ../shared/data/ccp/photos")
    with tempfile.TemporaryDirectory() as tmp:
        if args.int8:
            from fashionlens.inference.export import cached_onnx
            from fashionlens.inference.predictor import resolve_model_path

            fp32, int8 = cached_onnx(resolve_model_path(args.model)), args.int8
        else:
            fp32, int8, _ = make_int8(args.model, Path(tmp) / "int8.onnx")
        return measure(args, files, {"fp32": fp32, "int8": int8})


def measure(args, files: list[str], paths: dict[str, Path]) -> list[list[object]]:
    before = uptime()
    predictors = {(name, b): load_model(p, batch_size=b) for name, p in paths.items() for b in (1, 32)}
    x = np.stack([predictors["fp32", 32].preprocess(f)[0].numpy() for f in files[:32]])
    runners = {name: OnnxRunner(p) for name, p in paths.items()}
    net: dict = {}  # (name, batch) -> (best images/s, least CPU ms per image)
    e2e: dict = {}
    labels: dict = {}
    decode = 0.0
    for _ in range(args.passes):
        for batch in (1, 32):
            for name in paths:
                keep_best(
                    net, (name, batch), network_rate(runners[name], x[:batch], 3 if batch == 32 else 20)
                )
                *rate, labels[name] = e2e_rate(predictors[name, batch], files)
                keep_best(e2e, (name, batch), rate)
        decode = max(decode, decode_rate(predictors["fp32", 32], files))
    after = uptime()
    rows = []
    for what, table in (
        ("network (ONNX Runtime session)", net),
        ("end to end (Predictor.predict, JPEGs)", e2e),
    ):
        for batch in (1, 32):
            (f, fc), (q, qc) = table["fp32", batch], table["int8", batch]
            rows.append(
                [
                    what,
                    batch,
                    round(f, 1),
                    round(q, 1),
                    round(q / f, 2),
                    round(fc, 2),
                    round(qc, 2),
                    round(fc / qc, 2),
                ]
            )
    agree = np.mean([a == b for a, b in zip(labels["fp32"], labels["int8"], strict=True)])
    print("\n".join(f"- {k}: {v}" for k, v in machine_facts().items()))
    print(f"- cpu flags: {cpu_flags()}\n- uptime before: {before}\n- uptime after:  {after}")
    print(f"- {len(files)} CCP photos; model {args.model}; best of {args.passes} interleaved passes\n")
    print(
        markdown_table(
            [
                "what",
                "batch",
                "fp32 images/s",
                "int8 images/s",
                "int8 x fp32",
                "fp32 CPU ms/image",
                "int8 CPU ms/image",
                "fp32 CPU / int8 CPU",
            ],
            rows,
        )
    )
    n32 = {name: 1 / net[name, 32][0] for name in paths}
    bound = (1 / decode + n32["fp32"]) / (1 / decode + n32["int8"])
    print(
        f"\ndecoding alone (the Predictor's {predictors['fp32', 32].workers} threads, no network): "
        f"{decode:.1f} images/s; if decoding and network shared the cores without overlap, end to end could "
        f"gain at most {bound:.2f}x at batch 32\ntop-1 of int8 = fp32 on these {len(files)} photos: "
        f"{agree:.1%}"
    )
    print_profile(paths, x)
    return rows


if __name__ == "__main__":
    main()
