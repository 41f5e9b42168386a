"""Mean and spread over seeds of `fashionlens evaluate` reports: one Markdown row per configuration.

    python tools/seed_table.py runs/garments/eval-s0/metrics.json runs/garments/eval-s1/metrics.json \
        runs/garments/eval-s2/metrics.json --metrics category.top1 category.top3 \
        deepfashion.attributes.all.top3 deepfashion.landmarks.NE deepfashion.landmarks.NE_mean_baseline

Each file holds one evaluation (of one seed) with a row per model; models are matched across files
by name. A cell is ``mean +- sd (min-max)`` over the files that have it (sd: sample standard deviation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def lookup(report: dict, dotted: str) -> float | None:
    node = report
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return None if node is None else float(node)


def seed_table(files: list[Path], metrics: list[str], percent: bool = True) -> str:
    runs = [json.loads(Path(f).read_text())["models"] for f in files]
    models = list(dict.fromkeys(name for run in runs for name in run))
    lines = ["| model | seeds | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for model in models:
        cells = []
        for metric in metrics:
            values = np.array(
                [v for run in runs if model in run if (v := lookup(run[model], metric)) is not None]
            )
            scale = 100.0 if percent and "NE" not in metric else 1.0
            if not values.size:
                cells.append("-")
                continue
            v = values * scale
            fmt = "{:.1f}" if scale == 100.0 else "{:.4f}"
            spread = fmt.format(v.std(ddof=1)) if v.size > 1 else "-"
            cells.append(f"{fmt.format(v.mean())} +- {spread} ({fmt.format(v.min())}-{fmt.format(v.max())})")
        seeds = sum(model in run for run in runs)
        lines.append(f"| {model} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "files", nargs="+", type=Path, help="metrics.json of `fashionlens evaluate`, one per seed"
    )
    ap.add_argument("--metrics", nargs="+", required=True, help="dotted keys into each model's report")
    ap.add_argument("--raw", action="store_true", help="fractions, not percent")
    args = ap.parse_args(argv)
    print(seed_table(args.files, args.metrics, percent=not args.raw))


if __name__ == "__main__":
    main()
