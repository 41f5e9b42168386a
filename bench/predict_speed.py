"""Images/s of ``Predictor.predict`` (what ``fashionlens predict`` runs) at batch 1 and 32, decoding included.

    .venv/bin/python bench/predict_speed.py [--model fashionlens-lite] [--images 64]
    # the same model with other backbones (untrained weights: the speed only), in the same session
    .venv/bin/python bench/predict_speed.py --backbone efficientnet_lite1 \
        --backbone efficientnet_lite2:320x224

Real CCP JPEGs from ../shared/data/ccp/photos; one warm-up at the timed batch shape, best of 2 passes.
A model with a parsing head is timed with its garments (the default of ``predict``) and without
(``--no-garments``); ``--baseline OLD`` times another model in the same run and prints each row's ratio to
its batch-32 rate (issue 26's goal: with garments >= 0.75x the previous shipped model, batch 32, ONNX):

    .venv/bin/python bench/predict_speed.py --model runs/lite-joint-shipped.safetensors \
        --baseline runs/lite3-shipped.safetensors --backends auto
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
    ap.add_argument("--baseline", help="also time this model (e.g. the previous shipped one) in the same run")
    ap.add_argument("--backends", default="auto,torch", help="comma-separated: auto, torch, onnx")
    args = ap.parse_args(argv)
    files = find_jpegs(args.images)
    if not files:
        raise SystemExit("no JPEGs under ../shared/data/ccp/photos")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [(args.model, args.model)] + [
            (b, with_backbone(args.model, b, Path(tmp))) for b in args.backbone
        ]
        if args.baseline:
            models.append((args.baseline, args.baseline))
        for label, path in models:
            backends = args.backends.split(",") if not args.backbone else ("auto",)
            for backend in backends:
                for batch in (1, 32):
                    pred = load_model(path, backend=backend, batch_size=batch)
                    for garments in (True, False) if pred.parsing else (None,):
                        kw = {} if garments is None else {"garments": garments}
                        best, _ = predict_rate(pred, files, passes=2, **kw)
                        shown = "-" if garments is None else ("on" if garments else "off")
                        rows.append([label, pred.backend, batch, shown, round(best, 1)])
    if args.baseline:  # each row over the baseline's rate at the same backend and batch
        base = {(r[1], r[2]): r[4] for r in rows if r[0] == args.baseline}
        rows = [r + [round(r[4] / base[(r[1], r[2])], 2) if (r[1], r[2]) in base else ""] for r in rows]
    print("\n".join(f"- {k}: {v}" for k, v in machine_facts().items()))
    print(f"- {len(files)} photos; model {args.model}\n")
    head = ["model", "backend", "batch", "garments", "images/s"] + (["x baseline"] if args.baseline else [])
    print(markdown_table(head, rows))
    return rows


if __name__ == "__main__":
    main()
