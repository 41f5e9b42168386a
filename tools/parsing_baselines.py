"""The parser's two baselines that need no network, scored as ``fashionlens evaluate`` scores the parser.

    python tools/parsing_baselines.py runs/parsing/frozen/model.safetensors --ccp ../shared/data/ccp \\
        [--split val [test]] [--out runs/parsing/baselines.json]

Both are scored on the model's own split of CCP's pixel-level photos, on the same targets as the parser
(each photo's mask of garment groups through the model's ``EvalTransform(...).mask_target``: a quarter of
the network input, 96 x 72 for 384 x 288, 255 where unlabelled) and by the same ``parsing_report`` (pixel
accuracy, mIoU, per-group IoU, garment recall / precision over ``GARMENT_GROUPS``):

- **class prior**: every pixel of every photo is the most frequent group of the training masks
  (background);
- **spatial prior**: each target pixel is the most frequent group at that location over the training
  photos' masks (on the same grid; a location no training mask labels is the class prior).

The training masks are those of the model's training photos (never validation or test).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fashionlens.checkpoint import read_info
from fashionlens.data.ccp import read_ccp_label_list, read_ccp_mask
from fashionlens.data.config import DataConfig
from fashionlens.data.images import BadImageError, load_image
from fashionlens.data.transforms import MASK_IGNORE, EvalTransform, build_transforms, draft_size
from fashionlens.evaluate.evaluate import config_for_model
from fashionlens.garments.groups import GARMENT_GROUPS, GROUP_NAMES, label_to_group
from fashionlens.inference.predictor import resolve_model_path
from fashionlens.metrics import parsing_report
from fashionlens.train.data import build_data


def split_photos(model: str, ccp: str, splits: tuple[str, ...]) -> dict[str, list[tuple[Path, Path]]]:
    """Split -> (photo, mask) of every pixel-level photo of the model's split of CCP (as
    ``tools/garment_eval.py::split_photos``, all splits from one read of the data)."""
    info = read_info(resolve_model_path(model))
    cfg = config_for_model(info, ccp, 8, data_format="ccp")
    cfg["data"].update({"ccp_annotations": "pixel-level", "parsing": True, "styles": None})
    bundle = build_data(cfg, info.data_config, splits=splits)
    out = {}
    for split in splits:
        dataset = bundle.datasets[split]
        dataset = getattr(dataset, "dataset", dataset)
        out[split] = [(p, m) for p, m in zip(dataset.paths, dataset.masks, strict=True) if m is not None]
    return out


def mask_targets(photos: list[tuple[Path, Path]], lut: np.ndarray, transform: EvalTransform,
                 cfg: DataConfig, desc: str) -> np.ndarray:  # fmt: skip
    """(N, H / 4, W / 4) uint8 group targets of the photos, as the model's evaluation data makes them: the
    group map (at the size the photo decodes at, JPEG draft mode included) through ``mask_target``."""
    draft = draft_size(cfg)
    out = []
    for photo, mask_path in tqdm(photos, desc=desc, unit="mask"):
        groups = lut[read_ccp_mask(mask_path, len(lut))]
        mask = Image.fromarray(np.ascontiguousarray(groups))  # mode "L"
        try:
            size = load_image(photo, draft_size=draft).size
        except BadImageError:  # the evaluation data skips a bad photo; so do the baselines
            continue
        if mask.size != size:
            mask = mask.resize(size, Image.Resampling.NEAREST)
        out.append(transform.mask_target(mask).numpy().astype(np.uint8))
    return np.stack(out)


def group_counts(targets: np.ndarray, k: int) -> np.ndarray:
    """(K, H, W) how many of the target maps have each group at each location (255 not counted)."""
    counts = np.zeros((k, *targets.shape[1:]), np.int64)
    for g in range(k):
        counts[g] = (targets == g).sum(axis=0)
    return counts


def baselines(train: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Name -> (H, W) predicted map of every photo: the class prior and the spatial prior."""
    counts = group_counts(train, k)
    prior = int(counts.sum(axis=(1, 2)).argmax())
    spatial = np.where(counts.sum(axis=0) > 0, counts.argmax(axis=0), prior)
    return {"class prior": np.full(train.shape[1:], prior, np.int64), "spatial prior": spatial}


def table(rows: list[dict]) -> str:
    """The Markdown table of the baselines' scores."""
    lines = ["| baseline | split | photos | pixel acc | mIoU | garment recall | garment precision |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip

    def num(v) -> str:
        return "-" if v is None else f"{v:.3f}"

    for r in rows:
        g = r["report"].get("garments", {})
        lines.append(f"| {r['baseline']} | {r['split']} | {r['report']['num_images']} | "
                     f"{num(r['report']['pixel_accuracy'])} | {num(r['report']['mIoU'])} | "
                     f"{num(g.get('recall'))} | {num(g.get('precision'))} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--ccp", default="../shared/data/ccp")
    ap.add_argument("--split", nargs="+", default=["val"], choices=("val", "test"),
                    help="the split(s) to score (default: val)")  # fmt: skip
    ap.add_argument("--out", default="runs/parsing/baselines.json", help="write the report here (JSON)")
    args = ap.parse_args(argv)
    info = read_info(resolve_model_path(args.model))
    names = list(info.label_names.get("parsing", GROUP_NAMES))
    garments = [g for g in GARMENT_GROUPS if g in names]
    photos = split_photos(args.model, args.ccp, ("train", *args.split))
    lut = label_to_group(read_ccp_label_list(Path(args.ccp) / "label_list.mat"))
    transform = build_transforms(info.data_config, train=False)
    train = mask_targets(photos["train"], lut, transform, info.data_config, "train masks")
    predicted = baselines(train, len(names))
    rows = []
    for split in args.split:
        target = mask_targets(photos[split], lut, transform, info.data_config, f"{split} masks")
        for name, pred_map in predicted.items():
            pred = np.broadcast_to(pred_map, target.shape)
            scores = parsing_report(pred, target, names, garments, ignore=MASK_IGNORE)
            rows.append({"baseline": name, "split": split, "report": scores})
    report = {
        "model": str(args.model), "ccp": str(args.ccp), "train_photos": int(len(train)),
        "target_size": list(train.shape[1:]), "class_prior": names[int(predicted["class prior"].flat[0])],
        "spatial_prior": {n: int((predicted["spatial prior"] == g).sum()) for g, n in enumerate(names)},
        "baselines": rows,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=float))
    print(f"{len(train)} training masks at {train.shape[1]} x {train.shape[2]}; class prior: "
          f"{report['class_prior']}; spatial prior covers "
          + ", ".join(f"{n} {c}" for n, c in report["spatial_prior"].items() if c) + " locations")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
