"""Turn a trained model into a shipped one: calibrate the tag threshold on the validation split, save fp16.

    python tools/ship_model.py runs/fashionlens-lite/model.safetensors --ccp ../shared/data/ccp \
        --out src/fashionlens/weights/fashionlens-lite.safetensors

``--tta flip`` stores flip test-time augmentation in the model (see ``FashionNet``); the threshold
is then calibrated with it. ``--weights RUN/checkpoints/last.ckpt`` ships the weights of that Lightning checkpoint (e.g. the final
epoch) in the model file's architecture instead of the epoch the run's monitor picked.

The tag threshold is the one that maximises OF1 on the CCP *validation* split (the split the model
was selected on; the test split is never looked at). It is stored in the model header, where the
Predictor reads it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from fashionlens.checkpoint import load_model_file, save_model
from fashionlens.metrics import multilabel_prf
from fashionlens.models import build_model
from fashionlens.train.evaluate import evaluate_model


def calibrate_threshold(model_path: str, ccp: str) -> tuple[float, float]:
    _, ctx = evaluate_model(model_path, ccp, split="val", data_format="ccp", trainer_kwargs={"enable_progress_bar": False})
    scores, targets = ctx["outputs"]["labels_scores"], ctx["outputs"]["labels_targets"]
    grid = np.round(np.arange(0.05, 0.95, 0.025), 3)
    of1 = [multilabel_prf(scores, targets, threshold=float(t))["OF1"] for t in grid]
    best = int(np.argmax(of1))
    return float(grid[best]), float(of1[best])


def load_lightning_weights(model: torch.nn.Module, ckpt_path: str) -> int:
    """Load the ``model.*`` weights of a fashionlens Lightning checkpoint; returns its epoch."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights, strict=True)
    return int(state["epoch"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--ccp", required=True, help="Clothing Co-Parsing root (for the threshold)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--weights", default=None, help="a Lightning checkpoint (last.ckpt) whose weights to ship")
    ap.add_argument("--tta", choices=["none", "flip"], default=None, help="store this test-time augmentation in the model")
    args = ap.parse_args(argv)
    model, info = load_model_file(args.model)
    if args.weights:
        epoch = load_lightning_weights(model, args.weights)
        info.extra["best"] = {"epoch": epoch, "note": f"weights of {Path(args.weights).name} (epoch {epoch})"}
    if args.tta:
        rebuilt = build_model({**model.spec, "tta": args.tta})
        rebuilt.load_state_dict(model.state_dict())
        model = rebuilt
    with tempfile.TemporaryDirectory() as tmp:  # calibrate on these weights (saved in fp16 below)
        model_path = save_model(model, info, Path(tmp) / "model.safetensors")
        threshold, of1 = calibrate_threshold(str(model_path), args.ccp)
    info.extra["threshold"] = threshold
    info.extra["threshold_selection"] = f"max OF1 on the CCP validation split: {of1:.4f}"
    save_model(model, info, args.out, half=True)
    print(f"threshold {threshold} (val OF1 {of1:.4f}); wrote {args.out}")


if __name__ == "__main__":
    main()
