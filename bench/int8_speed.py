"""int8 vs fp32 under ONNX Runtime: the network alone and end to end (Predictor.predict), batch 1 and 32.

    .venv/bin/python bench/int8_speed.py [MODEL] [--int8 FILE.onnx] [--images 128] [--passes 3]

MODEL (default fashionlens-lite) runs as its fp32 ONNX export and as an int8 model (``--int8`` an
existing one, else made here as ``bench/int8_parity.py`` makes it). "network" times the ONNX Runtime
session alone on real photos already prepared; "end to end" is ``Predictor.predict`` on the JPEG
files (decoding, resizing and normalising in the Predictor's threads, overlapped with the network).
"decoding alone" is the Predictor's decoding on its own: with the network time it bounds what any
network speed-up can give end to end. Every figure is the best of ``--passes`` interleaved passes
(fp32 and int8 alternate, so a load that comes and goes hits both alike); ratios are int8 / fp32.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import machine_facts, markdown_table
from int8_parity import make_int8
from pipeline import find_jpegs

from fashionlens.inference.onnx_runner import OnnxRunner
from fashionlens.inference.predictor import load_model


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in flags if "vnni" in f or f in ("avx2", "avx512f", "amx_int8")) or "no AVX2/VNNI"


def network_rate(runner: OnnxRunner, x: np.ndarray, iters: int) -> float:
    runner(x)  # warm-up at this shape: ONNX Runtime plans its memory per shape
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        runner(x)
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def e2e_rate(predictor, files: list[str]) -> tuple[float, list[str]]:
    predictor.predict(files[: predictor.batch_size])
    start = time.perf_counter()
    preds = predictor.predict(files)
    return len(files) / (time.perf_counter() - start), [p.category[0].label if p.category else "" for p in preds]


def decode_rate(predictor, files: list[str]) -> float:
    with ThreadPoolExecutor(predictor.workers) as pool:
        list(pool.map(predictor.preprocess, files[:8]))
        start = time.perf_counter()
        list(pool.map(predictor.preprocess, files))
    return len(files) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[list[object]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="fashionlens-lite")
    ap.add_argument("--int8", type=Path, default=None, help="an int8 .onnx of MODEL (default: quantise it here)")
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
    net: dict = {}
    e2e: dict = {}
    labels: dict = {}
    decode = 0.0
    for _ in range(args.passes):
        for batch in (1, 32):
            for name in paths:
                net[name, batch] = max(net.get((name, batch), 0.0), network_rate(runners[name], x[:batch], 3 if batch == 32 else 20))
                rate, labels[name] = e2e_rate(predictors[name, batch], files)
                e2e[name, batch] = max(e2e.get((name, batch), 0.0), rate)
        decode = max(decode, decode_rate(predictors["fp32", 32], files))
    after = uptime()
    rows = []
    for what, table in (("network (ONNX Runtime session)", net), ("end to end (Predictor.predict, JPEGs)", e2e)):
        for batch in (1, 32):
            f, q = table["fp32", batch], table["int8", batch]
            rows.append([what, batch, round(f, 1), round(q, 1), round(q / f, 2)])
    agree = np.mean([a == b for a, b in zip(labels["fp32"], labels["int8"], strict=True)])
    print("\n".join(f"- {k}: {v}" for k, v in machine_facts().items()))
    print(f"- cpu flags: {cpu_flags()}\n- uptime before: {before}\n- uptime after:  {after}")
    print(f"- {len(files)} CCP photos; model {args.model}; best of {args.passes} interleaved passes\n")
    print(markdown_table(["what", "batch", "fp32 images/s", "int8 images/s", "int8 x fp32"], rows))
    n32 = {name: 1 / net[name, 32] for name in paths}
    bound = (1 / decode + n32["fp32"]) / (1 / decode + n32["int8"])
    print(f"\ndecoding alone (the Predictor's {predictors['fp32', 32].workers} threads, no network): {decode:.1f} images/s; "
          f"if decoding and network shared the cores without overlap, end to end could gain at most {bound:.2f}x "
          f"at batch 32\ntop-1 of int8 = fp32 on these {len(files)} photos: {agree:.1%}")
    return rows


if __name__ == "__main__":
    main()
