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

``--garments runs/ccp-garments`` (the tree ``fashionlens data derive-landmarks`` writes) also scores the
garments' landmarks, colours and attributes against the derived labels of the same split, two ways: on
the garments the parser found (the returned garment of the garment's group with the highest box IoU,
>= 0.5, with the derived garment's mask box; the others count as not found) and on the derived
(oracle) boxes passed to ``predict(boxes=...)``. NE is in units of the derived crop's width and height
(both ways); colour recall@3: the found garment's pixel colours (those covering >= 25 % of it, most
first) vs the colour head's top 3 on the oracle crop; attribute mAP over the 41 garment attributes.
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


def oracle_comparison(predictor, tree: str, ccp: str, split: str, photos_found: dict) -> dict:
    """Landmark NE, colour recall@3 and attribute mAP of found garments vs oracle boxes (module doc)."""
    from PIL import Image

    from fashionlens.data.deepfashion import read_deepfashion
    from fashionlens.garments.instances import box_iou
    from fashionlens.metrics import average_precision, landmark_normalized_error

    index = read_deepfashion(tree)
    names = read_ccp_label_list(Path(ccp) / "label_list.mat")
    lut = label_to_group(names)
    colour = index.attribute_types == 6
    rows = np.flatnonzero(index.partition == split)
    cols = {"found": [], "oracle": []}
    targets = {"lm": [], "vis": [], "colour": [], "attr": [], "known": []}
    found_flags = []
    for j in tqdm(rows, desc="oracle garments", unit="garment"):
        stem, label = Path(str(index.image_names[j])).stem.split("_", 1)
        mask = read_ccp_mask(Path(ccp) / "annotations" / "pixel-level" / f"{stem}.mat", len(names))
        ys, xs = np.nonzero(mask == names.index(label))
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        offset = np.array([xs.min() - index.bbox[j, 0], ys.min() - index.bbox[j, 1]], dtype=np.float64)
        crop_w, crop_h = Image.open(Path(tree) / str(index.image_names[j])).size
        scale = np.array([crop_w, crop_h], dtype=np.float64)
        group = GROUP_NAMES[lut[names.index(label)]]
        photo = Path(ccp) / "photos" / f"{stem}.jpg"
        oracle = predictor.predict([photo], top_k=100, threshold=0.0, boxes=[box])[0]
        candidates = [g for g in photos_found.get(stem, []) if g.label == group]
        best = max(candidates, key=lambda g: box_iou(g.box, box), default=None)
        hit = best is not None and box_iou(best.box, box) >= 0.5
        found_flags.append(hit)
        targets["lm"].append((index.landmarks[j] + 0.5 + offset) / scale)
        targets["vis"].append(index.landmark_visible[j])
        targets["colour"].append(index.attributes[j][colour] == 1)
        targets["attr"].append(index.attributes[j][~colour] == 1)
        targets["known"].append(index.attributes[j][~colour] != 0)
        cols["oracle"].append(
            _answers(oracle.landmarks, oracle.colours, oracle.attributes, index, colour, scale)
        )
        cols["found"].append(_answers(best.landmarks, best.colours, best.attributes, index, colour, scale)
                             if hit else None)  # fmt: skip
    hit = np.array(found_flags)
    out = {"garments": int(len(rows)), "found": int(hit.sum())}
    for way in ("found", "oracle"):
        keep = hit if way == "found" else np.ones_like(hit)
        got = [c for c, k in zip(cols[way], keep, strict=True) if k]
        tgt = {k: np.asarray(v)[keep] for k, v in targets.items()}
        res: dict = {"garments": int(keep.sum())}
        with_lm = [i for i, c in enumerate(got) if c["lm"] is not None]
        if with_lm:
            res["landmark_NE"] = landmark_normalized_error(
                np.stack([got[i]["lm"] for i in with_lm]), tgt["lm"][with_lm], tgt["vis"][with_lm])[1]
        top3 = np.stack([c["colour_top3"] for c in got])
        res["colour_recall_top3"] = float((top3 & tgt["colour"]).sum() / max(tgt["colour"].sum(), 1))
        with_attr = [i for i, c in enumerate(got) if c["attr"] is not None]
        if with_attr:
            ap = average_precision(np.stack([got[i]["attr"] for i in with_attr]), tgt["attr"][with_attr],
                                   tgt["known"][with_attr])  # fmt: skip
            res["attribute_mAP"] = float(np.nanmean(ap))
        out[way] = res
    # the oracle on the found garments only: the same garments both ways
    same = [c for c, k in zip(cols["oracle"], hit, strict=True) if k]
    if same and any(c["lm"] is not None for c in same):
        idx = [i for i, c in enumerate(same) if c["lm"] is not None]
        out["oracle_on_found"] = {"landmark_NE": landmark_normalized_error(
            np.stack([same[i]["lm"] for i in idx]), np.asarray(targets["lm"])[hit][idx],
            np.asarray(targets["vis"])[hit][idx])[1]}  # fmt: skip
    return out


def _answers(landmarks, colours, attributes, index, colour: np.ndarray, scale: np.ndarray) -> dict:
    """One garment's answers as arrays: landmarks (8, 2) in crop units, colour top-3 (C,) bool, attribute
    scores (A,) in the derived tree's column order (None where the garment has none)."""
    colour_names = list(index.attribute_names[colour])
    top3 = np.zeros(len(colour_names), bool)
    for s in (colours or [])[:3]:
        top3[colour_names.index(s.label)] = True
    attr = None
    if attributes:
        names = list(index.attribute_names[~colour])
        attr = np.zeros(len(names))
        for s in attributes:
            if s.label in names:
                attr[names.index(s.label)] = s.score
    lm = None if not landmarks else np.array([[p.x, p.y] for p in landmarks[:8]]) / scale
    return {"lm": lm, "colour_top3": top3, "attr": attr}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--ccp", default="../shared/data/ccp")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--sweep", action="store_true", help="also score stricter return rules (score, area)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--garments", help="the derived garment tree: also score landmarks, colours, attributes")
    ap.add_argument("--out", help="write the report here (JSON)")
    args = ap.parse_args(argv)
    photos = split_photos(args.model, args.ccp, args.split)
    lut = label_to_group(read_ccp_label_list(Path(args.ccp) / "label_list.mat"))
    predictor = load_model(args.model, backend=args.backend, batch_size=16)
    truth = [true_garments(m, lut) for _, m in tqdm(photos, desc="true garments", unit="photo")]
    top_k, threshold = (100, 0.0) if args.garments else (3, None)  # every attribute scored, for AP
    preds = list(tqdm(predictor.iter_predict([p for p, _ in photos], top_k=top_k, threshold=threshold),
                      total=len(photos), desc="predict", unit="photo"))  # fmt: skip
    found = [returned(p) for p in preds]
    report = {"model": str(args.model), "split": args.split, "photos": len(photos),
              "garments": garment_detection_report(
                  [match_garments(f, t) for f, t in zip(found, truth, strict=True)])}  # fmt: skip
    if args.sweep:
        report["sweep"] = []
        for s in SCORES:
            for frac in FRACTIONS:
                kept = [[g for g in f if g.score >= s and g.fraction >= frac] for f in found]
                r = garment_detection_report([match_garments(k, t) for k, t in zip(kept, truth, strict=True)])
                report["sweep"].append({"min_score": s, "min_fraction": frac, "recall": r["recall"],
                                        "precision": r["precision"], "returned": r["returned"]})  # fmt: skip
    if args.garments:
        by_stem = {Path(p).stem: pred.garments or [] for (p, _), pred in zip(photos, preds, strict=True)}
        report["oracle"] = oracle_comparison(predictor, args.garments, args.ccp, args.split, by_stem)
        print(json.dumps(report["oracle"], indent=1, default=float))
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        Path(args.out).write_text(text)
    g = report["garments"]
    print(f"{args.split}: {len(photos)} photos, {g['truth']} true garments >= 2 %, {g['returned']} returned; "
          f"recall {g['recall']:.3f}, precision {g['precision']:.3f}")
    for row in report.get("sweep", []):
        print(f"  score >= {row['min_score']:.1f}, area >= {row['min_fraction']:.3f}: "
              f"recall {row['recall']:.3f} "
              f"precision {row['precision']:.3f} ({row['returned']} returned)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
