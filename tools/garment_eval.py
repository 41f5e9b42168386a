"""Garments found in whole photos, end to end: ``Predictor.predict`` against CCP's masks, in photo pixels.

    python tools/garment_eval.py runs/lite-joint-shipped.safetensors --ccp ../shared/data/ccp --split val \\
        --sweep --out runs/garment-eval.json

For every photo of the split that has a pixel-level mask (the model's own split of CCP), the true
garments are the mask's garment groups (``garments/groups.py``) cut into instances by the same rule the
predictor uses (``garments_from_labels``); the predicted ones are what ``predict`` returns. Scored as in
issue 26: a true garment covering >= 2 % of the photo is *found* when a returned garment of the same
group has box IoU >= 0.5 with it (one-to-one, greedy by IoU); a returned garment is *real* when it is
matched to a true garment of its group (any size). ``--sweep`` also scores stricter return rules (a
minimum score and area) on the same predictions, to choose the predictor's rule on validation photos.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fashionlens.checkpoint import read_info
from fashionlens.data.ccp import read_ccp_label_list, read_ccp_mask
from fashionlens.evaluate.evaluate import config_for_model
from fashionlens.garments.groups import GARMENT_GROUPS, GARMENT_RULE, GROUP_NAMES, label_to_group
from fashionlens.garments.instances import Garment, garments_from_labels
from fashionlens.garments.matching import garment_detection_report, match_garments
from fashionlens.garments.rle import decode_rle
from fashionlens.inference.predictor import load_model, resolve_model_path
from fashionlens.train.data import build_data

SCORES = (0.0, 0.4, 0.5, 0.6, 0.7)
FRACTIONS = (0.005, 0.01, 0.02)


def split_photos(model: str, ccp: str, split: str) -> list[tuple[Path, Path]]:
    """(photo, mask) of every pixel-level photo of the model's ``split`` of CCP."""
    info = read_info(resolve_model_path(model))
    cfg = config_for_model(info, ccp, 8, data_format="ccp")
    cfg["data"].update({"ccp_annotations": "pixel-level", "parsing": True, "styles": None})
    dataset = build_data(cfg, info.data_config, splits=(split,)).datasets[split]
    dataset = getattr(dataset, "dataset", dataset)
    return [(p, m) for p, m in zip(dataset.paths, dataset.masks, strict=True) if m is not None]


def true_garments(mask_path: Path, lut: np.ndarray) -> list[Garment]:
    groups = lut[read_ccp_mask(mask_path, len(lut))]
    return garments_from_labels(groups, GROUP_NAMES, GARMENT_GROUPS, **GARMENT_RULE)


def returned(pred) -> list[Garment]:
    out = []
    for g in pred.garments or []:
        mask = decode_rle(g.mask)
        out.append(Garment(g.label, GROUP_NAMES.index(g.label), g.score, tuple(g.box), mask, int(mask.sum())))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--ccp", default="../shared/data/ccp")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--sweep", action="store_true", help="also score stricter return rules (score, area)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", help="write the report here (JSON)")
    args = ap.parse_args(argv)
    photos = split_photos(args.model, args.ccp, args.split)
    lut = label_to_group(read_ccp_label_list(Path(args.ccp) / "label_list.mat"))
    predictor = load_model(args.model, backend=args.backend, batch_size=16)
    truth = [true_garments(m, lut) for _, m in tqdm(photos, desc="true garments", unit="photo")]
    preds = list(tqdm(predictor.iter_predict([p for p, _ in photos], top_k=3), total=len(photos),
                      desc="predict", unit="photo"))  # fmt: skip
    found = [returned(p) for p in preds]
    report = {"model": str(args.model), "split": args.split, "photos": len(photos),
              "garments": garment_detection_report([match_garments(f, t) for f, t in zip(found, truth, strict=True)])}
    if args.sweep:
        report["sweep"] = []
        for s in SCORES:
            for frac in FRACTIONS:
                kept = [[g for g in f if g.score >= s and g.fraction >= frac] for f in found]
                r = garment_detection_report([match_garments(k, t) for k, t in zip(kept, truth, strict=True)])
                report["sweep"].append({"min_score": s, "min_fraction": frac, "recall": r["recall"],
                                        "precision": r["precision"], "returned": r["returned"]})  # fmt: skip
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        Path(args.out).write_text(text)
    g = report["garments"]
    print(f"{args.split}: {len(photos)} photos, {g['truth']} true garments >= 2 %, {g['returned']} returned; "
          f"recall {g['recall']:.3f}, precision {g['precision']:.3f}")
    for row in report.get("sweep", []):
        print(f"  score >= {row['min_score']:.1f}, area >= {row['min_fraction']:.3f}: recall {row['recall']:.3f} "
              f"precision {row['precision']:.3f} ({row['returned']} returned)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
