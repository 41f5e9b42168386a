"""Images/s of ``Predictor.predict`` (what ``fashionlens predict`` runs) at batch 1 and 32, decoding included.

    .venv/bin/python bench/predict_speed.py [--model fashionlens-lite] [--images 64]
    # the same model with other backbones (untrained weights: the speed only), in the same session
    .venv/bin/python bench/predict_speed.py --backbone efficientnet_lite1 \
        --backbone efficientnet_lite2:320x224

Real CCP JPEGs from ../shared/data/ccp/photos; one warm-up at the timed batch shape, best of 2 passes.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
from pathlib import Path

from _common import machine_facts, markdown_table
from pipeline import find_jpegs, predict_rate

from fashionlens.checkpoint import read_info, save_model
from fashionlens.inference.predictor import load_model, resolve_model_path
from fashionlens.models.fashion_net import build_model


def with_backbone(model: str, backbone: str, out_dir: Path) -> Path:
    """``model``'s heads on another backbone (``NAME`` or ``NAME:HxW`` for another input size, H x W as in
    ``data.input_size``), untrained."""
    name, _, size = backbone.partition(":")
    info = read_info(resolve_model_path(model))
    spec = copy.deepcopy(info.spec)
    spec["backbone"] = name
    if size:
        h, w = (int(v) for v in size.lower().split("x"))
        spec["backbone_kwargs"]["input_size"] = [h, w]
        info.data_config = dataclasses.replace(info.data_config, input_size=(h, w))
    path = out_dir / f"{backbone.replace(':', '-')}.safetensors"
    save_model(build_model(spec, pretrained=False).eval(), info, path, half=True)
    return path


def main(argv: list[str] | None = None) -> list[list[object]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashionlens-lite")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument(
        "--backbone",
        action="append",
        default=[],
        metavar="NAME[:HxW]",
        help="also time the model on this backbone (untrained; repeatable)",
    )
    args = ap.parse_args(argv)
    files = find_jpegs(args.images)
    if not files:
        raise SystemExit("no JPEGs under ../shared/data/ccp/photos")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [(args.model, args.model)] + [
            (b, with_backbone(args.model, b, Path(tmp))) for b in args.backbone
        ]
        for label, path in models:
            backends = ("auto", "torch") if not args.backbone else ("auto",)
            for backend in backends:
                for batch in (1, 32):
                    pred = load_model(path, backend=backend, batch_size=batch)
                    best, _ = predict_rate(pred, files, passes=2)
                    rows.append([label, pred.backend, batch, round(best, 1)])
    print("\n".join(f"- {k}: {v}" for k, v in machine_facts().items()))
    print(f"- {len(files)} photos; model {args.model}\n")
    print(markdown_table(["model", "backend", "batch", "images/s"], rows))
    return rows


if __name__ == "__main__":
    main()
