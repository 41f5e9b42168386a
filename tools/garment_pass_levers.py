"""Issue 26's speed levers for the garments' second pass, measured (results: docs/garments.md).

The parser's garments of the groups with landmarks take a second forward pass on their own crop for
their attributes, category and landmarks; that pass is most of the time of ``predict`` with garments.
Two ways to make it cheaper, each measured on the shipped model's validation garment crops (the ones
``fashionlens evaluate MODEL --data runs/ccp-garments --data-format deepfashion`` scores):

    # 1. one pass: the whole photo's maps pooled over each garment's true mask (stride 32, + the
    #    stride-16 map and the landmark branch's context), a linear attribute head fitted on the pooled
    #    vectors of the train garments, scored on the val garments beside the crop pass
    python tools/garment_pass_levers.py pooled fashionlens-lite --data runs/ccp-garments \\
        --ccp ../shared/data/ccp --out runs/pooled
    # 2. the crop pass at a smaller input: the shipped model's attributes on the val crops at each size
    python tools/garment_pass_levers.py crop-size fashionlens-lite --data runs/ccp-garments \\
        --sizes 384x288 320x240 256x192
    # and predict's speed with the crop pass at each size (PyTorch, batch 32, 64 CCP photos, one run)
    python tools/garment_pass_levers.py speed fashionlens-lite --ccp ../shared/data/ccp \\
        --sizes 384x288 320x240 256x192
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refit_attributes import garment_crops, score_val  # noqa: E402

from fashionlens.train.frozen import FeatureCache  # noqa: E402

MAPS = ("stride 32", "stride 16", "landmark context")


def parse_size(text: str) -> tuple[int, int]:
    """``384x288`` -> (384, 288): height x width, as ``data.input_size``."""
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


def mask_pooled(model, transform, photo: Image.Image, masks: list[np.ndarray], size) -> torch.Tensor:
    """(G, D) the photo's maps (:data:`MAPS`) averaged over each garment mask, weighted by how much of
    each cell the mask covers; the three maps' vectors concatenated."""
    height, width = size
    with torch.inference_mode():
        feats, taps = model.backbone.forward_with_taps(transform(photo)[None])
        maps = [feats[0], taps[16][0], model.glem(taps[16])[0]]
    out = []
    for mask in masks:
        fitted = transform.fit(
            Image.fromarray(mask.astype(np.uint8) * 255, "L"), resample=Image.Resampling.BILINEAR, fill=0
        )
        share = np.asarray(fitted, np.float32) / 255
        parts = []
        for m in maps:
            h, w = m.shape[-2:]
            cover = torch.from_numpy(share.reshape(h, height // h, w, width // w).mean((1, 3)))
            parts.append((m * cover).sum((-1, -2)) / cover.sum().clamp_min(1e-6))
        out.append(torch.cat(parts))
    return torch.stack(out)


def pooled_cache(model_name: str, data: str, ccp: Path) -> tuple[FeatureCache, list[int]]:
    """The pooled vectors of every train / val garment crop's own garment in its whole photo."""
    from fashionlens.data.ccp import read_ccp_label_list, read_ccp_mask
    from fashionlens.data.images import load_image
    from fashionlens.data.transforms import build_transforms, draft_size

    path, model, info, _, bundle = garment_crops(model_name, data)
    names = read_ccp_label_list(ccp / "label_list.mat")
    transform = build_transforms(info.data_config, train=False)
    splits, widths = {}, []
    for split in ("train", "val"):
        ds, paths = bundle.datasets[split], [str(p) for p in bundle.paths[split]]
        items = [ds[i] for i in range(len(ds))]
        by_photo = defaultdict(list)  # crops are img/<photo>_<CCP garment label>.jpg
        for i, p in enumerate(paths):
            photo, garment = Path(p).stem.split("_", 1)
            by_photo[photo].append((i, names.index(garment)))
        vectors: list[torch.Tensor | None] = [None] * len(paths)
        for photo, garments in by_photo.items():
            img = load_image(ccp / "photos" / f"{photo}.jpg", draft_size=draft_size(info.data_config))
            mask = read_ccp_mask(ccp / "annotations" / "pixel-level" / f"{photo}.mat", len(names))
            pooled = mask_pooled(model, transform, img, [mask == k for _, k in garments],
                                 info.data_config.input_size)  # fmt: skip
            for (i, _), v in zip(garments, pooled, strict=True):
                vectors[i] = v
        feats = torch.stack(vectors)
        splits[split] = {"features": feats.half()[:, None, :, None, None], "paths": paths,
                         "targets": torch.stack([it["attributes"] for it in items]),
                         "mask": torch.stack([it["attributes_mask"] for it in items])}  # fmt: skip
        print(f"{split}: {len(paths)} garments of {len(by_photo)} photos", flush=True)
    with torch.inference_mode():
        feats, taps = model.backbone.forward_with_taps(torch.zeros(1, 3, *info.data_config.input_size))
        widths = [feats.shape[1], taps[16].shape[1], model.glem(taps[16]).shape[1]]
    meta = {"model": str(path), "head": "attributes", "views": ["pooled over the true mask"],
            "groups": list(info.attributes.groups), "maps": list(MAPS), "widths": widths}  # fmt: skip
    return FeatureCache(list(info.label_names["attributes"]), splits, meta), widths


def cmd_pooled(args) -> None:
    from fashionlens.train.frozen import predict_on_cache, train_head_on_cache

    torch.manual_seed(0)
    cache, widths = pooled_cache(args.model, args.data, Path(args.ccp))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache.save(out / "pooled-cache.pt")
    edges = np.cumsum([0, *widths])
    choices = {"stride 32": slice(0, edges[1]), "all three maps": slice(0, edges[3])}
    rows = []
    for name, cols in choices.items():
        sub = {k: {**v, "features": v["features"][:, :, cols]} for k, v in cache.splits.items()}
        part = FeatureCache(cache.label_names, sub, cache.meta)
        for lr in args.lr:
            for norm in (None, "layer"):
                head = {"kind": "linear", "pool": "avg", **({"norm": norm} if norm else {})}
                res = train_head_on_cache(
                    part, head, epochs=args.epochs, lr=lr, weight_decay=0.05, progress=False
                )
                scores = predict_on_cache(res["model"], part.splits["val"]["features"][:, 0])
                row = {"maps": name, "lr": lr, "norm": norm or "-", **score_val(scores, part)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    (out / "pooled.json").write_text(json.dumps(rows, indent=1))


def crop_scores(model_name: str, data: str, sizes: list[tuple[int, int]]) -> list[dict]:
    """The model's attribute headline numbers on the val crops, the crops made at each input size."""
    from fashionlens.data.landmark_transforms import build_joint_transforms

    _, model, info, cfg, bundle = garment_crops(model_name, data)
    ds = bundle.datasets["val"]
    rows = []
    for size in sizes:
        dc = dataclasses.replace(info.data_config, input_size=size)
        getattr(ds, "dataset", ds).transform = build_joint_transforms(
            dc, train=False, margin=float(cfg["data"]["crop_margin"])
        )
        loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=0)
        scores, targets, masks = [], [], []
        with torch.inference_mode():
            for b in loader:
                scores.append(torch.sigmoid(model(b["image"])["attributes"]))
                targets.append(b["attributes"])
                masks.append(b["attributes_mask"])
        val = {"val": {"targets": torch.cat(targets), "mask": torch.cat(masks)}}
        cache = FeatureCache(
            list(info.label_names["attributes"]), val, {"groups": list(info.attributes.groups)}
        )
        rows.append({"size": "x".join(map(str, size)), **score_val(torch.cat(scores).numpy(), cache)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def cmd_crop_size(args) -> None:
    crop_scores(args.model, args.data, [parse_size(s) for s in args.sizes])


def cmd_speed(args) -> None:
    """Images/s of predict (PyTorch) with the crop pass at each size, and without garments; best of 2."""
    from fashionlens.data.transforms import build_transforms
    from fashionlens.inference.predictor import load_model

    photos = [p.read_bytes() for p in sorted((Path(args.ccp) / "photos").glob("*.jpg"))[: args.images]]
    pred = load_model(args.model, backend="torch", batch_size=32)  # an ONNX graph has one input size
    pred.predict(photos[:32])  # warm-up
    runs = {"no garments": None, **{s: parse_size(s) for s in args.sizes}}
    rates = defaultdict(list)
    for _ in range(2):
        for name, size in runs.items():
            if size is not None:
                dc = dataclasses.replace(pred.info.data_config, input_size=size)
                pred.crop_transform = build_transforms(dc, train=False)
            start = time.perf_counter()
            pred.predict(photos, garments=size is not None)
            rates[name].append(len(photos) / (time.perf_counter() - start))
    base = max(rates["no garments"])
    for name in runs:
        print(f"{name:12s} {max(rates[name]):6.2f} images/s  {max(rates[name]) / base:.2f}x no garments")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pooled", help="one pass: attributes from the photo's maps pooled over the mask")
    p.add_argument("model")
    p.add_argument("--data", required=True, help="the derive-landmarks tree the model's crops come from")
    p.add_argument("--ccp", required=True, help="CCP's folder (photos and pixel-level masks)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, nargs="+", default=[1e-3, 3e-3])
    p.set_defaults(run=cmd_pooled)
    p = sub.add_parser("crop-size", help="the model's attributes on the val crops at each input size")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--sizes", nargs="+", default=["384x288", "320x240", "256x192"])
    p.set_defaults(run=cmd_crop_size)
    p = sub.add_parser("speed", help="predict's images/s with the crop pass at each input size")
    p.add_argument("model")
    p.add_argument("--ccp", required=True)
    p.add_argument("--sizes", nargs="+", default=["384x288", "320x240", "256x192"])
    p.add_argument("--images", type=int, default=64)
    p.set_defaults(run=cmd_speed)
    args = ap.parse_args(argv)
    torch.set_num_threads(1 if args.command != "speed" else torch.get_num_threads())
    args.run(args)


if __name__ == "__main__":
    main()
