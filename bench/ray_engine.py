"""Ray engine vs local engine on the same cores and the same photos, and images/s vs actors.

    .venv/bin/python bench/ray_engine.py [--model fashionlens-lite] [--images 512] [--actors 1,2] [--passes 2]

Real CCP JPEGs from ../shared/data/ccp/photos. The local engine is ``Predictor.predict`` (what
``fashionlens predict`` runs), best of ``--passes`` after a warm-up at the timed batch shape. Each
Ray row is a fresh ``fashionlens predict --engine ray`` run (``ray_engine.run``) into an empty folder
on a local Ray started once with ``num_cpus`` = the cores this process may use: "whole run" counts
the actors' start-up (model load, ONNX Runtime session), "steady" the rate after the first results.
Ratios are against the local engine of the same run. ``uptime`` is printed before and after: another
process loading the machine makes the numbers meaningless.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile

from _common import machine_facts, markdown_table
from pipeline import find_jpegs, predict_rate

from fashionlens.inference.onnx_runner import cpu_cores
from fashionlens.inference.predictor import load_model


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def ray_pass(model: str, files: list[str], actors: int, fuse: bool, batch: int, backend: str):
    """One fresh Ray run into an empty folder: (RunSummary, {path: top-1 category})."""
    import pandas as pd

    from fashionlens.inference.ray_engine import RayOptions, run

    with tempfile.TemporaryDirectory() as out:
        s = run(files, RayOptions(model=model, out_dir=out, num_actors=actors, batch_size=batch, fuse_decode=fuse,
                                  backend=backend, progress=False))
        df = pd.read_parquet(out, columns=["path", "category"])
    return s, dict(zip(df["path"], df["category"], strict=True))


def main(argv: list[str] | None = None) -> list[list[object]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashionlens-lite")
    ap.add_argument("--images", type=int, default=512)
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
    variants = [(n, False) for n in (int(a) for a in args.actors.split(","))] + [(1, True)]
    local_best, local_top1, best = 0.0, {}, {}
    for _ in range(args.passes):  # interleaved, so a load that comes and goes hits every variant alike
        rate, preds = predict_rate(pred, files, passes=1)
        local_best, local_top1 = max(local_best, rate), {p.source: p.category[0].label for p in preds}
        for variant in variants:
            summary, top1 = ray_pass(args.model, files, *variant, args.batch, args.backend)
            if variant not in best or summary.steady_images_per_second > best[variant][0].steady_images_per_second:
                best[variant] = (summary, top1)
    after = uptime()
    rows = [["local (Predictor, decode threads)", round(local_best, 1), round(local_best, 1), 1.0, 0.0, "100%"]]
    for (n, fuse), (s, top1) in best.items():
        agree = sum(local_top1[p] == c for p, c in top1.items()) / len(top1)
        rows.append([f"ray, {n} actor(s)" + (", decoding fused into the actor" if fuse else ""),
                     round(s.images_per_second, 1), round(s.steady_images_per_second, 1),
                     round(s.steady_images_per_second / local_best, 2), round(s.startup_seconds, 2), f"{agree:.0%}"])
    print("\n".join(f"- {k}: {v}" for k, v in machine_facts().items()))
    print(f"- uptime before: {before}\n- uptime after:  {after}")
    print(f"- {len(files)} CCP photos; model {args.model}, backend {pred.backend}, batch {args.batch}, "
          f"{cpu_cores()} cores for both engines; best of {args.passes} interleaved passes\n")
    print(markdown_table(["engine", "images/s (whole run)", "images/s (steady)", "steady x local",
                          "start-up s", "same top-1 as local"], rows))
    return rows


if __name__ == "__main__":
    main()
