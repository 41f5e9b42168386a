"""Ray engine vs local engine on the same cores and the same photos, and images/s vs actors.

    .venv/bin/python bench/ray_engine.py [--model fashionlens-lite] [--images 1024] [--actors 1,2] \
        [--passes 2]

Real CCP JPEGs from ../shared/data/ccp/photos. The local engine is ``Predictor.predict`` (what
``fashionlens predict`` runs). Each Ray run is a fresh ``fashionlens predict --engine ray``
(``ray_engine.run``) into an empty folder, on a local Ray started once with all the cores this
process may use. Every variant tags a small job (a quarter of the photos) and the whole job: the
*marginal* rate, (N - N/4) / (T(N) - T(N/4)), is what a long run approaches, free of the fixed
start-up (Ray's actors importing fashionlens and loading the model, while the decoding tasks run
ahead). "x local" compares marginal rates. Passes are interleaved (every variant once, then again)
and the best is kept, so a load that comes and goes hits every variant alike; ``uptime`` is
printed before and after.

Wall-clock rates on a machine that other processes load say more about the scheduler than about
the engines (more processes get a larger share of a busy machine), so the CPU time the engine
spends per photo is measured too: this process and every process under it (Ray's GCS, raylet,
task workers and actors), sampled every 0.1 s. On an otherwise idle machine that both engines keep
busy, the images/s ratio approaches the inverse ratio of CPU time per photo.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time

import numpy as np
from _common import CpuMeter, machine_facts, markdown_table
from pipeline import find_jpegs

from fashionlens.inference.onnx_runner import cpu_cores
from fashionlens.inference.predictor import load_model


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def ray_run(model: str, files: list[str], actors: int, fuse: bool, batch: int, backend: str):
    """One fresh Ray run into an empty folder: (wall s after Ray is up, CPU s, {path: top-1 category})."""
    import pandas as pd

    from fashionlens.inference.ray_engine import RayOptions, run

    with tempfile.TemporaryDirectory() as out:
        with CpuMeter() as cpu:
            s = run(
                files,
                RayOptions(
                    model=model,
                    out_dir=out,
                    num_actors=actors,
                    batch_size=batch,
                    fuse_decode=fuse,
                    backend=backend,
                    progress=False,
                ),
            )
        df = pd.read_parquet(out, columns=["path", "category"])
    return s.seconds, cpu.seconds, dict(zip(df["path"], df["category"], strict=True))


def local_run(predictor, files: list[str]):
    with CpuMeter() as cpu:
        start = time.perf_counter()
        preds = predictor.predict(files)
        wall = time.perf_counter() - start
    return wall, cpu.seconds, {p.source: p.category[0].label for p in preds}


def marginal(small: int, large: int, t_small: float, t_large: float) -> float:
    """Photos per second of the extra photos of the large job."""
    return (large - small) / max(t_large - t_small, 1e-9)


def main(argv: list[str] | None = None) -> list[list[object]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashionlens-lite")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--actors", default="1,2")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--backend", default="onnx", help="auto | torch | onnx, for both engines")
    args = ap.parse_args(argv)
    files = [str(f) for f in find_jpegs(args.images)]
    if not files:
        raise SystemExit("no JPEGs under ../shared/data/ccp/photos")
    from fashionlens.inference.ray_engine import init_ray

    before = uptime()
    init_ray(None)
    pred = load_model(args.model, batch_size=args.batch, backend=args.backend)
    pred.predict(files[: args.batch])  # warm-up at the timed batch shape
    # Ray Data's own actors start once
    ray_run(args.model, files[: 2 * args.batch], 1, False, args.batch, args.backend)
    sizes = (len(files) // 4, len(files))
    variants = (
        [("local", 0, False)] + [("ray", int(n), False) for n in args.actors.split(",")] + [("ray", 1, True)]
    )
    wall: dict = {}
    cpu: dict = {}
    top1: dict = {}
    for _ in range(args.passes):  # interleaved
        for v in variants:
            for n in sizes:
                if v[0] == "local":
                    w, c, top1[v] = local_run(pred, files[:n])
                else:
                    w, c, top1[v] = ray_run(args.model, files[:n], v[1], v[2], args.batch, args.backend)
                wall[v, n] = min(wall.get((v, n), float("inf")), w)
                cpu[v, n] = min(cpu.get((v, n), float("inf")), c)
    after = uptime()
    print("\n".join(f"- {k}: {v}" for k, v in machine_facts().items()))
    print(f"- uptime before: {before}\n- uptime after:  {after}")
    print(
        f"- {sizes[0]} and {sizes[1]} CCP photos; model {args.model}, backend {pred.backend}, batch "
        f"{args.batch}, {cpu_cores()} cores for both engines; best of {args.passes} interleaved passes\n"
    )
    rows = table(variants, sizes, wall, cpu, top1)
    print(
        markdown_table(
            [
                "engine",
                f"images/s ({sizes[1]} photos, whole run)",
                "images/s (marginal)",
                "marginal x local",
                "fixed start-up s",
                "CPU ms / photo (marginal)",
                "CPU x local",
                "same top-1 as local",
            ],
            rows,
        )
    )
    return rows


def table(variants, sizes, wall, cpu, top1) -> list[list[object]]:
    rate = {v: marginal(*sizes, wall[v, sizes[0]], wall[v, sizes[1]]) for v in variants}
    cpu_ms = {v: 1000 * (cpu[v, sizes[1]] - cpu[v, sizes[0]]) / (sizes[1] - sizes[0]) for v in variants}
    local = variants[0]
    rows = []
    for v in variants:
        name = (
            "local (Predictor, decode threads)"
            if v[0] == "local"
            else f"ray, {v[1]} actor(s)" + (", decoding fused into the actor" if v[2] else "")
        )
        t = wall[v, sizes[1]]
        agree = np.mean([top1[local][p] == c for p, c in top1[v].items()])
        rows.append(
            [
                name,
                round(sizes[1] / t, 1),
                round(rate[v], 1),
                round(rate[v] / rate[local], 2),
                round(max(t - sizes[1] / rate[v], 0.0), 1),
                round(cpu_ms[v], 1),
                round(cpu_ms[v] / cpu_ms[local], 2),
                f"{agree:.0%}",
            ]
        )
    return rows


if __name__ == "__main__":
    main()
