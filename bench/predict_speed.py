"""Images/s of ``Predictor.predict`` (what ``fashionlens predict`` runs) at batch 1 and 32, decoding included.

    .venv/bin/python bench/predict_speed.py [--model fashionlens-lite] [--images 64]

Real CCP JPEGs from ../shared/data/ccp/photos; one warm-up at the timed batch shape, best of 2 passes.
"""

from __future__ import annotations

import argparse

from _common import machine_facts, markdown_table
from pipeline import find_jpegs, predict_rate

from fashionlens.inference.predictor import load_model


def main(argv: list[str] | None = None) -> list[list[object]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashionlens-lite")
    ap.add_argument("--images", type=int, default=64)
    args = ap.parse_args(argv)
    files = find_jpegs(args.images)
    if not files:
        raise SystemExit("no JPEGs under ../shared/data/ccp/photos")
    rows = []
    for backend in ("auto", "torch"):
        for batch in (1, 32):
            pred = load_model(args.model, backend=backend, batch_size=batch)
            best, _ = predict_rate(pred, files, passes=2)
            rows.append([pred.backend, batch, round(best, 1)])
    print("\n".join(f"- {k}: {v}" for k, v in machine_facts().items()))
    print(f"- {len(files)} photos; model {args.model}\n")
    print(markdown_table(["backend", "batch", "images/s"], rows))
    return rows


if __name__ == "__main__":
    main()
