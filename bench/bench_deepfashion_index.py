"""Benchmark: load a full-size DeepFashion annotation set (289,222 images x 1000 attributes).

Writes random annotation files in the real layout (no images) into a temporary directory, then
times :func:`fashionlens.data.deepfashion.read_deepfashion` in a fresh subprocess and reports its
peak memory (tracemalloc peak of Python + numpy allocations, and the process's max RSS).

Usage:
    .venv/bin/python bench/bench_deepfashion_index.py [--rows 289222] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_ROWS = 289_222
N_ATTR = 1000
_TOKENS = np.frombuffer(b"-1  0  1 ", dtype=np.uint8).reshape(3, 3)  # value -1, 0, 1 -> "%2d "


def _names(n: int) -> list[str]:
    return [f"img/Synthetic_Benchmark_Product_{i // 5:06d}/img_{i % 5 + 1:08d}.jpg" for i in range(n)]


def _write(path: Path, header: str, n: int, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{n}\n{header}\n")
        f.writelines(r + "\n" for r in rows)


def _write_attr_img(path: Path, names: list[str], rng: np.random.Generator, chunk: int = 20_000) -> None:
    """The 870 MB file, built as byte arrays: fixed-width name column + "%2d " values."""
    width = max(map(len, names)) + 3
    with open(path, "wb") as f:
        f.write(f"{len(names)}\nimage_name  attribute_labels\n".encode())
        for s in range(0, len(names), chunk):
            part = names[s : s + chunk]
            vals = np.where(rng.random((len(part), N_ATTR)) < 0.003, 2, 0)  # 3 positives per image
            vals[rng.random(vals.shape) < 0.001] = 1  # a few unknown
            name_col = np.frombuffer(np.array(part, dtype=f"S{width}").tobytes(), np.uint8).reshape(
                len(part), width
            )
            name_col = np.where(name_col == 0, 32, name_col).astype(np.uint8)  # NUL padding -> spaces
            body = _TOKENS[vals].reshape(len(part), -1)  # (rows, 3000)
            f.write(np.hstack([name_col, body, np.full((len(part), 1), 10, np.uint8)]).tobytes())


def write_annotations(root: Path, n: int, seed: int = 0) -> None:
    """Random DeepFashion-format annotation files with ``n`` rows under ``root``."""
    rng = np.random.default_rng(seed)
    names = _names(n)
    w = max(map(len, names)) + 3
    cats = [(f"Category_{k:02d}", 1 if k < 20 else 2 if k < 36 else 3) for k in range(50)]
    _write(
        root / "Anno/list_category_cloth.txt",
        "category_name  category_type",
        50,
        (f"{c:<20}{t}" for c, t in cats),
    )
    attrs = [(f"attribute number {k:04d}", 1 + k % 5) for k in range(N_ATTR)]
    _write(
        root / "Anno/list_attr_cloth.txt",
        "attribute_name  attribute_type",
        N_ATTR,
        (f"{a:<30}{t}" for a, t in attrs),
    )
    labels = rng.integers(1, 51, n)
    _write(
        root / "Anno/list_category_img.txt",
        "image_name  category_label",
        n,
        (f"{m:<{w}}{c}" for m, c in zip(names, labels, strict=True)),
    )
    box = np.sort(rng.integers(0, 300, (n, 2, 2)), axis=2).reshape(n, 4)[:, [0, 2, 1, 3]] + np.asarray(
        [0, 0, 1, 1]
    )
    _write(
        root / "Anno/list_bbox.txt",
        "image_name  x_1  y_1  x_2  y_2",
        n,
        (f"{m:<{w}}" + " ".join(f"{v:03d}" for v in b) for m, b in zip(names, box.tolist(), strict=True)),
    )
    ctype = np.asarray([cats[c - 1][1] for c in labels])
    lm = rng.integers(0, 300, (n, 8, 2))
    vis = rng.choice(3, (n, 8), p=[0.8, 0.15, 0.05])
    n_trip = {1: 6, 2: 4, 3: 8}
    rows = (f"{m:<{w}}{t}  " + "  ".join(f"{vis[i, k]} {lm[i, k, 0]:03d} {lm[i, k, 1]:03d}" if k < n_trip[t]
                                         else "0 000 000" for k in range(8))
            for i, (m, t) in enumerate(zip(names, ctype.tolist(), strict=True)))  # fmt: skip
    _write(root / "Anno/list_landmarks.txt", "image_name  clothes_type  landmark_visibility_1 ...", n, rows)
    part = np.where(np.arange(n) < n * 209_222 // N_ROWS, "train", np.where(np.arange(n) % 2, "val", "test"))
    _write(
        root / "Eval/list_eval_partition.txt",
        "image_name  evaluation_status",
        n,
        (f"{m:<{w}}{p}" for m, p in zip(names, part, strict=True)),
    )
    _write_attr_img(root / "Anno/list_attr_img.txt", names, rng)


def _child(root: str) -> None:
    """Run in a fresh process: one timed load, with tracemalloc, and print a JSON line."""
    import resource
    import tracemalloc

    from fashionlens.data.deepfashion import read_deepfashion

    t0 = time.perf_counter()
    read_deepfashion(root)
    plain = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    index = read_deepfashion(root)
    traced = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"rows": len(index), "seconds": plain, "seconds_traced": traced, "peak_traced": peak,
                      "max_rss": rss, "attributes_bytes": index.attributes.nbytes}))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=N_ROWS)
    ap.add_argument("--repeats", type=int, default=2, help="fresh-process loads to run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child)
    with tempfile.TemporaryDirectory(prefix="bench_deepfashion_") as tmp:
        t0 = time.perf_counter()
        write_annotations(Path(tmp), args.rows)
        gen = time.perf_counter() - t0
        size = (Path(tmp) / "Anno/list_attr_img.txt").stat().st_size
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", tmp], env=env, check=True,
                                          capture_output=True, text=True).stdout.strip().splitlines()[-1])
                for _ in range(args.repeats)]  # fmt: skip
    print(
        f"machine : {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} "
        "CPUs"
    )
    print(f"command : {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"versions: python {platform.python_version()}, numpy {np.__version__}")
    print(
        f"data    : {args.rows} rows x {N_ATTR} attributes, list_attr_img.txt {size / 2**20:.0f} MiB "
        f"(generated in {gen:.1f} s)"
    )
    print(
        f"{'run':>4} | {'load s':>7} | {'load s (traced)':>15} | {'tracemalloc peak MiB':>20} | "
        f"{'max RSS MiB':>11}"
    )
    for i, r in enumerate(runs):
        print(
            f"{i:>4} | {r['seconds']:7.2f} | {r['seconds_traced']:15.2f} | {r['peak_traced'] / 2**20:20.0f} "
            f"| {r['max_rss'] / 2**20:11.0f}"
        )
    print(f"(the attributes array alone is {runs[0]['attributes_bytes'] / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
