"""Refit a model's attribute head alone on its frozen backbone, then graft it into a copy of the model.

    # 1. the backbone's maps of the garment crops: the eval view of every train and val crop, then
    #    K views of the training transform (crop jitter + flip) of every train crop, appended
    python tools/refit_attributes.py cache fashionlens-lite --data runs/ccp-garments \\
        --out runs/attr-refit/cache.pt
    python tools/refit_attributes.py cache fashionlens-lite --data runs/ccp-garments --aug 4 \\
        --extend runs/attr-refit/cache.pt --out runs/attr-refit/cache-k4.pt
    # 2. fit one head kind over a grid of epochs x lr x weight decay on the train crops (the eval view
    #    only, or all views), pick the grid point with the best all-41 mAP on val, save that head
    python tools/refit_attributes.py fit runs/attr-refit/cache.pt --views eval --head kind=linear pool=avg \\
        --epochs 10 30 --lr 1e-3 3e-3 --weight-decay 1e-4 1e-2 --out runs/attr-refit/a-linear-avg
    # 3. the base model with that head: every other tensor byte-identical (checked), same header
    python tools/refit_attributes.py graft fashionlens-lite runs/attr-refit/a-linear-avg/head.pt \\
        --out runs/attr-refit/lite-attr-refit.safetensors

The crops and the split are the ones ``fashionlens evaluate MODEL --data runs/ccp-garments --data-format
deepfashion`` builds from the model's own garment source (its crop margin). The head is trained by
:func:`fashionlens.train.frozen.train_head_on_cache`: the engine's attribute loss (BCE weighted by the
training frequencies, unknown entries masked), AdamW, cosine schedule. The backbone runs in eval mode, so
the head sees exactly what it sees inside the model; no other output of the model can change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from fashionlens.checkpoint import load_model_file
from fashionlens.train.frozen import FeatureCache

HEAD_PREFIX = "heads.attributes."
META_KEY = "fashionlens"  # the safetensors metadata key of the model header
TYPES = {1: "texture", 2: "fabric", 3: "shape", 4: "part", 6: "colour"}


# --- 1. cache -------------------------------------------------------------------------------------------


def garment_crops(model_path: str, data: str):
    """The base model and the train / val crops exactly as ``fashionlens evaluate`` builds them."""
    from fashionlens.evaluate.evaluate import config_for_model
    from fashionlens.inference.predictor import resolve_model_path
    from fashionlens.train.data import build_data

    path = resolve_model_path(model_path)
    model, info = load_model_file(path)
    cfg = config_for_model(info, data, 16, data_format="deepfashion")
    cfg["data"]["num_workers"] = 0
    bundle = build_data(cfg, info.data_config, splits=("train", "val"))
    if list(bundle.label_names.get("attributes", [])) != list(info.label_names["attributes"]):
        raise SystemExit(f"error: the attributes of {data} are not the model's (same names, same order)")
    return path, model, info, cfg, bundle


@torch.no_grad()
def map_view(backbone: torch.nn.Module, dataset, transform, seed: int, batch_size: int = 16) -> dict:
    """One view of every crop: the backbone's maps (N, D, h, w) float16 and the (N, A) targets and mask.

    The training transform draws its jitter and flip from torch's global generator, seeded here, so a
    view is the same on every run.
    """
    from tqdm import tqdm

    getattr(dataset, "dataset", dataset).transform = transform
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    n = len(dataset)
    maps = targets = mask = None
    for batch in tqdm(loader, desc=f"view seed {seed}", unit="batch"):
        f = backbone(batch["image"]).half()  # (B, D, h, w)
        if maps is None:
            maps = torch.zeros(n, *f.shape[1:], dtype=torch.float16)
            targets = torch.zeros(n, batch["attributes"].shape[1])
            mask = torch.zeros_like(targets)
        i = batch["index"]
        maps[i], targets[i], mask[i] = f, batch["attributes"], batch["attributes_mask"]
    return {"features": maps, "targets": targets, "mask": mask}


def build_cache(model_path: str, data: str, aug: int, extend: str | None, seed: int = 0) -> FeatureCache:
    """View 0: the eval transform (train and val); views 1..: ``aug`` training-transform views (train)."""
    from fashionlens.data.landmark_transforms import build_joint_transforms

    path, model, info, cfg, bundle = garment_crops(model_path, data)
    backbone = model.backbone.eval()
    margin = float(cfg["data"]["crop_margin"])
    if extend:
        cache = FeatureCache.load(extend)
        if cache.meta["model"] != str(path) or cache.meta["crop_margin"] != margin:
            raise SystemExit(f"error: {extend} was cached from another model or crop margin")
    else:
        splits = {}
        for split in ("train", "val"):
            view = map_view(backbone, bundle.datasets[split], build_joint_transforms(
                info.data_config, train=False, margin=margin), seed)
            splits[split] = {**view, "features": view["features"][:, None], "paths": bundle.paths[split]}
        meta = {"model": str(path), "crop_margin": margin, "head": "attributes",
                "input_size": list(info.data_config.input_size), "views": ["eval"],
                "groups": list(info.attributes.groups)}
        cache = FeatureCache(list(info.label_names["attributes"]), splits, meta)
    train = cache.splits["train"]
    tf = build_joint_transforms(info.data_config, train=True, margin=margin)
    for _ in range(aug):
        k = len(cache.meta["views"])  # a view's seed is its position: extending never repeats a view
        view = map_view(backbone, bundle.datasets["train"], tf, seed + k)
        train["features"] = torch.cat([train["features"], view["features"][:, None]], dim=1)
        cache.meta["views"].append(f"train transform, seed {seed + k}")
    return cache


# --- 2. fit ---------------------------------------------------------------------------------------------


def type_metrics(scores: np.ndarray, positive: np.ndarray, known: np.ndarray, groups: np.ndarray) -> dict:
    """recall@3 and masked mAP per attribute type and over the 41 (types 1-4): tools/garment_study.py's."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from garment_study import type_metrics as study_metrics

    return study_metrics(scores, positive, known, groups)


def headline(metrics: dict) -> dict[str, float]:
    """The issue's five numbers: all-41 mAP, part / texture / colour recall@3, fabric mAP."""
    return {
        "all41_mAP": metrics["attributes"]["mAP"],
        "part_r3": metrics["part"]["top3"],
        "texture_r3": metrics["texture"]["top3"],
        "fabric_mAP": metrics["fabric"]["mAP"],
        "colour_r3": metrics.get("colour", {}).get("top3", float("nan")),
    }


def score_val(scores: np.ndarray, cache: FeatureCache) -> dict[str, float]:
    val = cache.splits["val"]
    known = val["mask"].numpy() > 0
    positive = (val["targets"].numpy() > 0) & known
    return headline(type_metrics(scores, positive, known, np.asarray(cache.meta["groups"])))


def with_views(cache: FeatureCache, views: str) -> FeatureCache:
    """The cache whose training crops keep the eval view only ("eval") or every view ("all")."""
    if views == "all":
        return cache
    train = {**cache.splits["train"], "features": cache.splits["train"]["features"][:, :1]}
    return FeatureCache(cache.label_names, {**cache.splits, "train": train}, cache.meta)


def base_head(cache: FeatureCache) -> tuple[dict, dict]:
    """The base model's own attribute head: its settings and weights."""
    model, _ = load_model_file(cache.meta["model"])
    settings = {k: v for k, v in model.spec["heads"]["attributes"].items() if k != "num_classes"}
    state = {k[len(HEAD_PREFIX):]: v for k, v in model.state_dict().items() if k.startswith(HEAD_PREFIX)}
    return settings, state


def sweep(cache: FeatureCache, head: dict, epochs, lrs, decays, seed: int = 0, init: dict | None = None):
    """Every grid point trained once on train, scored on val; returns (rows, the best row's head)."""
    from fashionlens.train.frozen import predict_on_cache, train_head_on_cache

    rows, best, best_model = [], -1.0, None
    for n in epochs:
        for lr in lrs:
            for wd in decays:
                res = train_head_on_cache(cache, head, seed=seed, epochs=n, lr=lr, weight_decay=wd,
                                          progress=False, init=init)
                scores = predict_on_cache(res["model"], cache.splits["val"]["features"][:, 0])
                row = {"epochs": n, "lr": lr, "weight_decay": wd, **score_val(scores, cache),
                       "seconds": round(res["seconds"], 1)}
                rows.append(row)
                print(json.dumps(row))
                if row["all41_mAP"] > best:
                    best, best_model = row["all41_mAP"], res["model"]
    return rows, best_model


def parse_head(items: list[str]) -> dict:
    """``kind=linear pool=avg conv_channels=256`` -> RecognitionHead settings (numbers parsed as JSON)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# --- 3. graft -------------------------------------------------------------------------------------------


def graft(base_path: str, head_file: str, out: str) -> dict:
    """Write the base model with the refit attribute head; every other tensor and the header unchanged.

    The base file's tensors are copied as stored (no float32 round trip) and its JSON header as written,
    but for ``spec.heads.attributes``; so the graft does not depend on the header's schema. How the head
    was fitted goes into the file's own metadata key ``attribute_refit`` (loaders read only
    ``fashionlens``).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    from fashionlens.fileio import atomic_write_bytes
    from fashionlens.inference.predictor import resolve_model_path

    base_path = str(resolve_model_path(base_path))
    with safe_open(base_path, framework="pt") as f:
        meta = dict(f.metadata() or {})
    header = json.loads(meta[META_KEY])
    saved = torch.load(head_file, map_location="cpu", weights_only=True)
    num = len(header["label_names"]["attributes"])
    header["spec"]["heads"]["attributes"] = {**saved["head"], "num_classes": num}
    tensors = {k: v for k, v in load_file(base_path).items() if not k.startswith(HEAD_PREFIX)}
    for name, t in saved["state"].items():  # float16 like the base (save_model's half), counters as they are
        half = t.is_floating_point() and "num_batches_tracked" not in name
        tensors[HEAD_PREFIX + name] = (t.half() if half else t).detach().contiguous().clone()
    meta.update({META_KEY: json.dumps(header), "attribute_refit": json.dumps(saved["provenance"])})
    atomic_write_bytes(out, save(tensors, metadata=meta))
    load_model_file(out)  # the model builds from the file alone, every tensor of the head's shape
    return {**check_graft(base_path, out), "head": header["spec"]["heads"]["attributes"]}


def check_graft(base_path: str, grafted_path: str) -> dict:
    """Every tensor outside the attribute head byte-identical, same dtype; the header the same but for
    ``spec.heads.attributes``. Raises SystemExit naming what differs."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    a, b = load_file(base_path), load_file(grafted_path)
    others = sorted(k for k in a if not k.startswith(HEAD_PREFIX))
    if sorted(k for k in b if not k.startswith(HEAD_PREFIX)) != others:
        raise SystemExit("error: the grafted model's tensors outside the attribute head are not the base's")
    changed = [k for k in others if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    if changed:
        raise SystemExit(f"error: {len(changed)} tensor(s) outside the attribute head changed: {changed[:5]}")
    headers = []
    for path in (base_path, grafted_path):
        with safe_open(path, framework="pt") as f:
            header = json.loads(f.metadata()[META_KEY])
        header["spec"]["heads"].pop("attributes")
        headers.append(header)
    if headers[0] != headers[1]:
        keys = sorted(k for k in {*headers[0], *headers[1]} if headers[0].get(k) != headers[1].get(k))
        raise SystemExit(f"error: the headers differ beyond the attribute head: {keys}")
    return {"identical_tensors": len(others), "head_tensors": sum(k.startswith(HEAD_PREFIX) for k in b)}


# --- command line ---------------------------------------------------------------------------------------


def cmd_cache(args) -> None:
    cache = build_cache(args.model, args.data, args.aug, args.extend, args.seed)
    cache.save(args.out)
    print(f"written: {args.out} (train {tuple(cache.splits['train']['features'].shape)}, "
          f"val {tuple(cache.splits['val']['features'].shape)})")


def cmd_fit(args) -> None:
    from fashionlens.train.frozen import predict_on_cache

    cache = with_views(FeatureCache.load(args.cache), args.views)
    head = parse_head(args.head)
    settings, state = base_head(cache)
    init = None
    if args.init == "base":
        if {"kind": "linear", **settings} != {"kind": "linear", **head}:
            raise SystemExit(f"error: --init base needs the base head's settings {settings}, got {head}")
        init = state
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = predict_on_cache(_rebuild(cache, settings, state), cache.splits["val"]["features"][:, 0])
    base_row = {"base head on the cache": score_val(base, cache)}
    print(json.dumps(base_row))
    rows, model = sweep(cache, head, args.epochs, args.lr, args.weight_decay, args.seed, init)
    best = max(rows, key=lambda r: r["all41_mAP"])
    provenance = {"tool": "tools/refit_attributes.py", "cache_views": cache.meta["views"][
        : 1 if args.views == "eval" else None], "init": args.init, "seed": args.seed, **best}
    torch.save({"head": head, "state": model.state_dict(), "provenance": provenance}, out / "head.pt")
    summary = {**base_row, "head": head, "views": args.views, "init": args.init, "best": best, "grid": rows}
    (out / "sweep.json").write_text(json.dumps(summary, indent=1))
    print(f"best on val: {json.dumps(best)}\nwritten: {out / 'head.pt'}, {out / 'sweep.json'}")


def _rebuild(cache: FeatureCache, settings: dict, state: dict) -> torch.nn.Module:
    from fashionlens.models.heads import RecognitionHead

    head = RecognitionHead(int(cache.splits["val"]["features"].shape[2]), len(cache.label_names), **settings)
    head.load_state_dict(state)
    return head


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="cache the frozen backbone's maps of the garment crops")
    c.add_argument("model", help="the base model (a path or a shipped name, e.g. fashionlens-lite)")
    c.add_argument("--data", required=True, help="the garment tree (DeepFashion layout)")
    c.add_argument("--aug", type=int, default=0, help="training-transform views of each train crop")
    c.add_argument("--extend", default=None, help="append the --aug views to this cache")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True)
    f = sub.add_parser("fit", help="fit the attribute head over a grid, pick on val")
    f.add_argument("cache")
    f.add_argument("--views", choices=["eval", "all"], default="eval")
    f.add_argument("--head", nargs="+", default=["kind=linear", "pool=avg"], help="key=value settings")
    f.add_argument("--init", choices=["prior", "base"], default="prior",
                   help="start at the training priors, or at the base model's own head")
    f.add_argument("--epochs", type=int, nargs="+", default=[20])
    f.add_argument("--lr", type=float, nargs="+", default=[1e-3])
    f.add_argument("--weight-decay", type=float, nargs="+", default=[1e-4])
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True, help="folder for head.pt and sweep.json")
    g = sub.add_parser("graft", help="the base model with a refit attribute head")
    g.add_argument("base")
    g.add_argument("head", help="head.pt written by fit")
    g.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "graft":
        print(json.dumps(graft(args.base, args.head, args.out)))
    else:
        {"cache": cmd_cache, "fit": cmd_fit}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
