"""Turn a trained model into a shipped one: calibrate it on validation photos, check it, save fp16.

    python tools/ship_model.py runs/fashionlens-lite/model.safetensors \
        --clothing ../shared/data/clothing-full --ccp ../shared/data/ccp \
        --small ../shared/data/clothing-small --out src/fashionlens/weights/fashionlens-lite.safetensors \
        --report docs/model-card-numbers.json

Calibration, on the validation splits only (the test splits are never looked at):

- **category temperature**: fitted on the clothing-dataset validation split (minimum NLL,
  :func:`fashionlens.inference.calibration.fit_temperature`); the expected calibration error is
  reported before and after, each half of the split scored with the temperature fitted on the other
  half (so the "after" number is not measured on the photos it was fitted on);
- **sub-style threshold** (models with a ``styles`` head): the best OF1 on CCP's validation photos for
  the Predictor's policy (the main style, each photo's most likely, always; the others from the
  threshold on); **garment-attribute threshold** (models whose attributes are more than colours):
  the best OF1 over the known attribute entries of the garment crops' validation split;
- **tag threshold**: one threshold for the 56 tags, chosen on CCP's validation photos together with
  the clothing-dataset validation photos' implied tags, as the best combined OF1 whose product-photo
  precision is at least ``--min-precision``
  (:func:`fashionlens.inference.calibration.choose_tag_threshold`), for the policy the Predictor
  runs: the tags at or above the threshold, and at least each photo's ``--min-tags`` most likely
  ones (default 1: a product photo whose garment tags all score low still gets its best guess).

The checks (written to ``--report`` as JSON): top-1 on clothing-small's validation folder (its 10
classes, scored by the 17-way model), CCP mAP, the product-photo tag check on clothing-small's
validation photos (precision, tags per photo, photos with a correct tag), the styles on CCP's
validation photos (all 23, and seed B's top-5 / top-7 protocol), the garment attributes per type
(recall@3/@5, mAP), colour recall and landmark NE on the garment crops.
``--weights RUN/checkpoints/last.ckpt`` ships the weights of that Lightning checkpoint instead of the
epoch the run's monitor picked; ``--tta flip`` stores flip test-time augmentation in the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from fashionlens.checkpoint import load_model_file, save_model
from fashionlens.data.product_tags import implied_tag_targets
from fashionlens.evaluate.evaluate import config_for_model, evaluate_model
from fashionlens.inference.calibration import (
    choose_f1_threshold,
    choose_tag_threshold,
    fit_temperature,
    product_tag_check,
    returned_tags,
    softmax,
)
from fashionlens.inference.predictor import colour_columns
from fashionlens.metrics import average_precision, expected_calibration_error, multilabel_prf, topk_accuracy
from fashionlens.model_header import Best
from fashionlens.models import build_model
from fashionlens.train.data import build_data, make_loader


def head_outputs(model: torch.nn.Module, info, data: str, fmt: str, split: str = "val") -> dict:
    """Every head's logits (and the data's targets) on one split, in the data's order, plus the paths."""
    cfg = config_for_model(info, data, 32, data_format=fmt)
    bundle = build_data(cfg, info.data_config, splits=(split,))
    loader = make_loader(bundle.datasets[split], 32, 1, False)
    out: dict[str, list] = {}
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            for key, value in model(batch["image"]).items():
                if key in ("category", "labels", "styles", "attributes"):
                    out.setdefault(key, []).append(value.float().numpy())
            for key in ("category", "labels", "styles", "attributes"):
                if key in batch:
                    out.setdefault(f"{key}_targets", []).append(batch[key].numpy())
                if f"{key}_mask" in batch:
                    out.setdefault(f"{key}_mask", []).append(batch[f"{key}_mask"].numpy())
    result = {k: np.concatenate(v) for k, v in out.items()}
    result["paths"] = bundle.paths[split]
    result["names"] = bundle.label_names
    return result


def parsing_checks(p: dict) -> dict:
    """The parser's headline numbers on CCP's validation masks (pixel accuracy, mIoU, garments found)."""
    g = p.get("garments", {})
    return {
        "photos": p["num_images"],
        "pixel_accuracy": p["pixel_accuracy"],
        "mIoU": p["mIoU"],
        "garment_recall": g.get("recall"),
        "garment_precision": g.get("precision"),
        "iou": p["iou"],
    }


def calibrate_temperature(logits: np.ndarray, labels: np.ndarray) -> dict:
    """The temperature, and ECE before / after with two-fold cross-fitting (seeded halves)."""
    order = np.random.default_rng(0).permutation(len(labels))
    halves = [order[: len(order) // 2], order[len(order) // 2 :]]
    probs_after = np.empty(logits.shape)
    for fit, score in (halves, halves[::-1]):
        t = fit_temperature(logits[fit], labels[fit])
        probs_after[score] = softmax(logits[score], t)
    return {
        "temperature": fit_temperature(logits, labels),
        "ece_before": expected_calibration_error(softmax(logits), labels),
        "ece_after_cross_fitted": expected_calibration_error(probs_after, labels),
        "photos": int(len(labels)),
    }


def check_model(model_path: str, ccp: str, small: str, garments: str | None) -> dict:
    """Validation numbers of a model file (for the model card); every head it has."""
    model, info = load_model_file(model_path)
    report: dict = {}
    names = info.label_names
    if "category" in names:
        ev, _ = evaluate_model(
            model_path,
            small,
            "val",
            data_format="image_folder",
            trainer_kwargs={"enable_progress_bar": False},
        )
        report["clothing_small_val"] = {
            "top1": ev["category"]["top1"],
            "top3": ev["category"].get("top3"),
            "photos": ev["category"]["num_images"],
        }
    if "styles" in names:
        report["styles_val"] = style_checks(model, info, ccp)
    if "labels" in names:
        ev, _ = evaluate_model(
            model_path, ccp, "val", data_format="ccp", trainer_kwargs={"enable_progress_bar": False}
        )
        r = ev["labels"]
        if "parsing" in ev:  # models with a parsing head: CCP's validation masks (issue 26)
            report["parsing_val"] = parsing_checks(ev["parsing"])
        report["ccp_val"] = {
            "mAP": r["mAP"],
            "CF1": r["prf"]["CF1"],
            "OF1": r["prf"]["OF1"],
            **r["topk"],
            "photos": ev["num_images"],
        }
        threshold, min_tags = info.calibration.threshold, info.calibration.min_tags
        out = head_outputs(model, info, small, "image_folder")
        tags = 1 / (1 + np.exp(-out["labels"]))
        report["product_tags_clothing_small_val"] = {
            "threshold": threshold,
            "min_tags": min_tags,
            **product_tag_check(
                tags, out["category_targets"], out["names"]["category"], names["labels"], threshold, min_tags
            ),
        }
        street, street_targets = _ccp_scores(model, info, ccp)  # OF1 of the tags the Predictor returns
        report["ccp_val"]["OF1_at_threshold"] = multilabel_prf(
            returned_tags(street, threshold, min_tags).astype(float), street_targets, threshold=0.5
        )["OF1"]
    if "attributes" in names and garments:
        ev, _ = evaluate_model(
            model_path,
            garments,
            "val",
            data_format="deepfashion",
            trainer_kwargs={"enable_progress_bar": False},
        )
        d = ev["deepfashion"]
        per_type = attribute_checks(d, names["attributes"])
        report["garments_val"] = {
            "colour_recall_top3": per_type["colour"]["top3"],
            "colour_recall_top5": per_type["colour"]["top5"],
            "attributes": per_type,
        }
        garment_attrs = [t for t in per_type if t != "colour"]
        if garment_attrs:  # mAP over the garment attributes (not the colours), unknown entries left out
            out = head_outputs(model, info, garments, "deepfashion")
            cols = ~colour_columns(info)
            known = out["attributes_mask"][:, cols] > 0
            ap = average_precision(
                _sigmoid(out["attributes"][:, cols]), out["attributes_targets"][:, cols] > 0, known
            )
            report["garments_val"]["attribute_mAP"] = float(np.nanmean(ap))
        if "landmarks" in d:
            report["garments_val"].update(
                {
                    "landmark_NE": d["landmarks"]["NE"],
                    "landmark_NE_mean_baseline": d["landmarks"].get("NE_mean_baseline"),
                }
            )
    return report


def style_checks(model, info, ccp: str) -> dict:
    """The styles head on CCP's validation photos: all styles, and seed B's top-5 / top-7 protocol
    (the photos whose main style is one of the 5 / 7 most frequent main styles, scored on those styles)."""
    from fashionlens.data.styles import find_styles_file, read_styles, top_main_rows
    from fashionlens.metrics import multilabel_report

    out = head_outputs(model, info, ccp, "ccp")
    known = out["styles_mask"][:, 0] > 0
    scores, targets = _sigmoid(out["styles"])[known], out["styles_targets"][known] > 0
    paths = [p for p, k in zip(out["paths"], known, strict=True) if k]
    names = info.label_names["styles"]
    report = {"all": _style_headline(multilabel_report(scores, targets, names)), "photos": int(known.sum())}
    styles = read_styles(find_styles_file(ccp, "auto"))
    for n in (5, 7):
        rows, top = top_main_rows(paths, styles, n)
        cols = [names.index(t) for t in top]
        r = multilabel_report(scores[rows][:, cols], targets[rows][:, cols], top)
        report[f"top{n}"] = {
            **_style_headline(r),
            "photos": int(rows.sum()),
            "styles": top,
            "per_style_top2_all": {k: v["recall"] for k, v in r["per_label_top2_all"].items()},
        }
    threshold = info.calibration.style_threshold
    report["OF1_returned"] = multilabel_prf(
        returned_tags(scores, threshold, 1).astype(float), targets, threshold=0.5
    )["OF1"]
    return report


def _style_headline(r: dict) -> dict:
    return {"mAP": r["mAP"], **r["topk"], "CF1": r["prf"]["CF1"], "OF1": r["prf"]["OF1"]}


def attribute_checks(report: dict, names: list[str]) -> dict:
    """Per-type attribute recall@3/@5 and mAP of a DeepFashion report; colours apart (or all, for a
    colour-only model)."""
    from fashionlens.colours import COLOURS

    attrs = report["attributes"]
    colour = attrs.get("colour") or (attrs["all"] if set(names) <= set(COLOURS) else None)
    out = {
        t: {k: v for k, v in attrs[t].items()}
        for t in ("texture", "fabric", "shape", "part")
        if t in attrs and not set(names) <= set(COLOURS)
    }
    if colour is not None:
        out["colour"] = dict(colour)
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _ccp_scores(model, info, ccp: str) -> tuple[np.ndarray, np.ndarray]:
    out = head_outputs(model, info, ccp, "ccp")
    return 1 / (1 + np.exp(-out["labels"])), out["labels_targets"]


def calibrate(model: torch.nn.Module, info, clothing: str, ccp: str, min_precision: float, min_tags: int = 0,
              garments: str | None = None) -> dict:  # fmt: skip
    """Temperature on the clothing validation split; the tag threshold on CCP + product validation photos;
    the sub-style threshold on CCP's validation photos; the garment-attribute threshold on the crops'."""
    product = head_outputs(model, info, clothing, "clothing_dataset")
    result = {"category": calibrate_temperature(product["category"], product["category_targets"])}
    if "styles" in info.label_names:
        out = head_outputs(model, info, ccp, "ccp")
        known = out["styles_mask"][:, 0] > 0
        threshold, chosen = choose_f1_threshold(
            _sigmoid(out["styles"][known]), out["styles_targets"][known], min_labels=1
        )
        result["styles"] = {"threshold": threshold, **chosen, "photos": int(known.sum())}
    cols = ~colour_columns(info) if "attributes" in info.label_names else np.zeros(0, bool)
    if garments and cols.any():
        out = head_outputs(model, info, garments, "deepfashion")
        threshold, chosen = choose_f1_threshold(
            _sigmoid(out["attributes"][:, cols]),
            out["attributes_targets"][:, cols],
            out["attributes_mask"][:, cols],
        )
        result["attributes"] = {"threshold": threshold, **chosen, "garments": int(len(out["attributes"]))}
    if "labels" in product:
        street_scores, street_targets = _ccp_scores(model, info, ccp)
        targets, weights = implied_tag_targets(product["names"]["category"], info.label_names["labels"])
        classes = product["category_targets"]
        threshold, chosen = choose_tag_threshold(
            street_scores,
            street_targets,
            1 / (1 + np.exp(-product["labels"])),
            targets[classes],
            weights[classes],
            min_precision,
            min_tags=min_tags,
        )
        result["tags"] = {
            "threshold": threshold,
            "min_tags": min_tags,
            **chosen,
            "street_photos": int(len(street_targets)),
            "product_photos": int(len(classes)),
        }
    result["category"]["top1_val"] = topk_accuracy(product["category"], product["category_targets"], 1)
    return result


def load_lightning_weights(model: torch.nn.Module, ckpt_path: str) -> int:
    """Load the ``model.*`` weights of a fashionlens Lightning checkpoint; returns its epoch."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights, strict=True)
    return int(state["epoch"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument(
        "--clothing", required=True, help="clothing-dataset root (temperature, product-photo tags)"
    )
    ap.add_argument("--ccp", required=True, help="Clothing Co-Parsing root (tag threshold, mAP)")
    ap.add_argument(
        "--small", required=True, help="clothing-dataset-small root (its validation folder is checked)"
    )
    ap.add_argument("--garments", default=None, help="the derived garment tree (colours, landmarks)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", default=None, help="write the calibration and checks as JSON here")
    ap.add_argument(
        "--check-only",
        action="store_true",
        help="only the checks of MODEL as it is (e.g. the previous shipped model)",
    )
    ap.add_argument(
        "--min-precision",
        type=float,
        default=0.85,
        help="product-photo tag precision the threshold must reach",
    )
    ap.add_argument(
        "--min-tags",
        type=int,
        default=1,
        help="every photo gets at least its N most likely tags, even below the threshold (0: none)",
    )
    ap.add_argument(
        "--weights", default=None, help="a Lightning checkpoint (last.ckpt) whose weights to ship"
    )
    ap.add_argument(
        "--tta", choices=["none", "flip"], default=None, help="store this test-time augmentation in the model"
    )
    args = ap.parse_args(argv)
    if args.check_only:
        found = check_model(args.model, args.ccp, args.small, args.garments)
        checks = json.dumps(found, indent=2, default=float)
        print(checks)
        if args.report:
            Path(args.report).write_text(checks + "\n")
        return
    model, info = load_model_file(args.model)
    if args.weights:
        epoch = load_lightning_weights(model, args.weights)
        note = f"weights of {Path(args.weights).name} (epoch {epoch})"
        info.training = dataclasses.replace(info.training, best=Best(epoch, note=note))
    if args.tta:
        rebuilt = build_model({**model.spec, "tta": args.tta})
        rebuilt.load_state_dict(model.state_dict())
        model = rebuilt
    calibration = calibrate(
        model, info, args.clothing, args.ccp, args.min_precision, args.min_tags, args.garments
    )
    found = {"temperature": calibration["category"]["temperature"]}
    if "styles" in calibration:
        found["style_threshold"] = calibration["styles"]["threshold"]
    if "attributes" in calibration:
        found["attribute_threshold"] = calibration["attributes"]["threshold"]
    if "tags" in calibration:
        found["threshold"] = calibration["tags"]["threshold"]
        found["min_tags"] = args.min_tags
        found["threshold_selection"] = (
            f"max OF1 on CCP + product validation photos with product precision >= "
            f"{args.min_precision}: {calibration['tags']}"
        )
    info.calibration = dataclasses.replace(info.calibration, **found)
    out = save_model(model, info, args.out, half=True)
    checks = check_model(str(out), args.ccp, args.small, args.garments)
    summary = {"calibration": calibration, "checks": checks}
    print(json.dumps(summary, indent=2, default=float))
    if args.report:
        Path(args.report).write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
