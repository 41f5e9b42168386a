"""Linear probe on frozen ImageNet features: the baseline the shipped model must beat.

Extracts globally average-pooled features of a pretrained backbone (no fine-tuning) for the train and
validation splits fashionlens uses, fits scikit-learn logistic regression (one-vs-rest for
multi-label data) on the training features, tunes C on nothing but the training split (fixed
C grid, 3-fold CV on train), and reports the same metrics as ``fashionlens evaluate``.

    python bench/linear_probe.py --data-format ccp --data ../shared/data/ccp --input-size 224 160
    python bench/linear_probe.py --data-format image_folder --data ../shared/data/clothing-small
    # the shipped model's fine-tuned backbone, frozen, at its own input size; scores saved for
    # tools/garment_study.py table (the garment attributes' baseline row)
    python bench/linear_probe.py --data-format deepfashion --data runs/ccp-garments --model fashionlens-lite \
        --scores runs/garments/scores/val/probe__s0.npz
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from fashionlens.models import create_backbone
from fashionlens.train.config import load_config
from fashionlens.train.data import build_data


def features(
    backbone: torch.nn.Module, dataset, batch_size: int = 32
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=1)
    feats, targets = [], {}
    with torch.inference_mode():
        for batch in loader:
            feats.append(backbone(batch["image"]).mean(dim=(2, 3)).numpy())  # (B, C)
            for key in ("labels", "category", "attributes", "attributes_mask"):
                if key in batch:
                    targets.setdefault(key, []).append(batch[key].numpy())
    return np.concatenate(feats), {k: np.concatenate(v) for k, v in targets.items()}


def fit_probe(x_train, y_train, multilabel: bool):
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if multilabel:
        keep = y_train.sum(0) > 0  # labels absent from training cannot be fitted: score 0 for them
        clf = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=0.01, max_iter=2000)))
        clf.fit(x_train, y_train[:, keep])
        return clf, keep
    clf = make_pipeline(
        StandardScaler(), LogisticRegressionCV(Cs=[0.001, 0.01, 0.1, 1.0], cv=3, max_iter=2000)
    )
    return clf.fit(x_train, y_train), None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-format",
        dest="format",
        required=True,
        choices=["ccp", "image_folder", "multilabel", "clothing_dataset", "deepfashion"],
    )
    ap.add_argument(
        "--holdout", default=None, help="clothing_dataset: photos kept for validation (data.holdout)"
    )
    ap.add_argument(
        "--eval-folder",
        default=None,
        help="category probes: also score this image folder (e.g. clothing-small/validation) by class name",
    )
    ap.add_argument("--data", required=True)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument(
        "--model",
        default=None,
        help="probe this model file's backbone (a path or a shipped name, e.g. fashionlens-lite) at its own "
        "input size instead of --backbone's ImageNet weights",
    )
    ap.add_argument("--input-size", type=int, nargs=2, default=[224, 160], metavar=("H", "W"))
    ap.add_argument(
        "--resize", default="squash", choices=["squash", "letterbox"], help="how a photo becomes the input"
    )
    ap.add_argument(
        "--max-stretch", type=float, default=1.0, help="letterbox: stretch by up to this, then pad"
    )
    ap.add_argument("--out", default=None, help="write the report as JSON here")
    ap.add_argument(
        "--scores",
        default=None,
        help="attributes: write the validation scores as NPZ here (the score files of "
        "tools/garment_study.py)",
    )
    args = ap.parse_args(argv)

    from fashionlens.metrics import classification_report, multilabel_report

    t0 = time.perf_counter()
    if args.model:
        from fashionlens.checkpoint import load_model_file
        from fashionlens.inference.predictor import resolve_model_path

        backbone = load_model_file(resolve_model_path(args.model))[0].backbone.eval()
        args.backbone, args.input_size = f"{args.model} (its backbone)", list(backbone.data_config.input_size)
    else:
        backbone = create_backbone(args.backbone, pretrained=True, input_size=tuple(args.input_size)).eval()
    backbone.data_config = backbone.data_config.replace(resize=args.resize, max_stretch=args.max_stretch)
    overrides = [f"data.format={args.format}", f"data.path={args.data}", "data.num_workers=0"]
    if args.holdout:
        overrides += [f"data.holdout={args.holdout}", "data.split_fractions=[0.8,0.1,0.1]"]
    cfg = load_config(None, overrides)
    bundle = build_data(cfg, backbone.data_config, splits=("train", "val"))
    for split in ("train", "val"):  # frozen features: no augmentation
        bundle.datasets[split].transform = _eval_transform(
            backbone.data_config, args.format, cfg["data"]["crop_margin"]
        )
    x_tr, y_tr = features(backbone, bundle.datasets["train"])
    x_va, y_va = features(backbone, bundle.datasets["val"])
    head = next(h for h in ("labels", "attributes", "category") if h in y_tr and h in bundle.label_names)
    clf, keep = fit_probe(x_tr, y_tr[head], multilabel=head != "category")
    if head != "category":
        scores = np.zeros_like(y_va[head], dtype=np.float64)
        scores[:, keep] = clf.predict_proba(x_va)
        report = multilabel_report(scores, y_va[head], bundle.label_names[head])
        headline = {
            "mAP": report["mAP"],
            "CF1": report["prf"]["CF1"],
            "OF1": report["prf"]["OF1"],
            **report["topk"],
        }
        if head == "attributes":
            from fashionlens.metrics import attribute_recall_at_k

            headline.update({f"recall@{k}": attribute_recall_at_k(scores, y_va[head], k) for k in (3, 5)})
            if bundle.attribute_groups is not None:
                from fashionlens.metrics import deepfashion_report

                known = y_va["attributes_mask"] > 0
                report["deepfashion"] = deepfashion_report(
                    attr_scores=scores,
                    attr_targets=np.where(known, y_va[head], 0),
                    attr_groups=bundle.attribute_groups,
                    attr_known=known,
                )
            if args.scores:
                from fashionlens.evaluate.studies import save_attribute_scores

                known = y_va["attributes_mask"] > 0
                groups = (
                    bundle.attribute_groups
                    if bundle.attribute_groups is not None
                    else np.zeros(scores.shape[1], int)
                )
                save_attribute_scores(
                    args.scores,
                    scores,
                    (y_va[head] > 0) & known,
                    known,
                    [str(p) for p in bundle.paths["val"]],
                    bundle.label_names[head],
                    groups,
                )
    else:
        report = classification_report(clf.predict_proba(x_va), y_va[head], bundle.label_names[head])
        headline = {k: v for k, v in report.items() if k.startswith("top")}
        if args.eval_folder:
            headline["eval_folder"] = _score_folder(backbone, clf, bundle.label_names[head], args.eval_folder)
    result = {
        "probe": f"{args.backbone} frozen, logistic regression",
        "format": args.format,
        "input_size": args.input_size,
        "resize": args.resize,
        "max_stretch": args.max_stretch,
        "train_images": len(x_tr),
        "val_images": len(x_va),
        "headline": headline,
        "seconds": time.perf_counter() - t0,
        "machine": f"{platform.platform()}, {torch.get_num_threads()} threads",
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**result, "report": report}, f, indent=2)
    return result


def _eval_transform(cfg, fmt: str, margin: float):
    if fmt == "deepfashion":  # crop to the garment box, as evaluation does
        from fashionlens.data.landmark_transforms import build_joint_transforms

        return build_joint_transforms(cfg, train=False, margin=margin)
    from fashionlens.data.transforms import build_transforms

    return build_transforms(cfg, train=False)


def _score_folder(backbone, clf, class_names: list[str], folder: str) -> dict:
    """Top-1/top-3 of a category probe on an image folder whose classes are some of the probe's."""
    from fashionlens.data.datasets import ClassificationDataset
    from fashionlens.data.image_folder import read_image_folder
    from fashionlens.metrics import topk_accuracy

    data = read_image_folder(folder, split="")
    position = {n: i for i, n in enumerate(class_names)}
    dataset = ClassificationDataset(
        data, _eval_transform(backbone.data_config, "image_folder", 0.0), backbone.data_config
    )
    x, y = features(backbone, dataset)
    labels = np.array([position[data.class_names[k]] for k in y["category"]])
    proba = clf.predict_proba(x)
    return {
        "folder": folder,
        "images": len(labels),
        "top1": topk_accuracy(proba, labels, 1),
        "top3": topk_accuracy(proba, labels, 3),
    }


if __name__ == "__main__":
    main()
