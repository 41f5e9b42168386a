"""Frozen-feature head x loss comparison with seeds (issue 16; results in docs/multilabel-heads.md).

    # 1. cache the backbone's maps of every photo (and its mirror) once
    python tools/head_study.py cache configs/ccp_heads_lite0.yaml --data ../shared/data/ccp \
        --out runs/head_study/cache.pt
    #    (--model fashionlens-lite: the shipped model's fine-tuned backbone and input size instead)
    # 2. train every head x loss x seed of a study file on the cache, score the validation split
    python tools/head_study.py run configs/studies/ccp_frozen.yaml --cache runs/head_study/cache.pt \
        --out runs/head_study/frozen [--top-labels 5] [--only mldecoder]
    # 3. only at the end: score the test split with the trained heads
    python tools/head_study.py score runs/head_study/frozen/val/all --cache runs/head_study/cache.pt \
        --split test
    # fine-tuned models (fashionlens train ... --out runs/ft_heads/HEAD-LOSS-sSEED), in the same form
    # for table
    python tools/head_study.py score-models runs/ft_heads/*/model.safetensors --data ../shared/data/ccp \
        --split val --out runs/ft_heads/scores
    # any trained head as a model file (Lite0 + the head), e.g. for fashionlens compare
    python tools/head_study.py export runs/head_study/frozen/val/all/mldecoder__asl__s0.json \
        --config configs/ccp_heads_lite0.yaml --out runs/head_study/models/mldecoder-asl.safetensors
    # 5. the table (mean +- std over seeds) and the paired bootstrap over photos
    python tools/head_study.py table runs/head_study/frozen/val/all --out runs/head_study/frozen_val.md

Every finished run is a file (``HEAD__LOSS__sSEED.npz`` with the scores, ``.json`` with the
metrics, ``.pt`` with the head's weights): a rerun skips it, so the study resumes after an
interruption. Runs are scored on the validation split; the test split only by ``score``, with the
trained heads, after every choice was made on the validation split.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from fashionlens.fileio import atomic_write_bytes

HEADLINE = ("mAP", "CF1", "OF1", "top3_any")


def headline(report: dict) -> dict[str, float]:
    """mAP, CF1 and OF1 at 0.5, top-3 any-recall (+ the seed B top-k recalls) of a multilabel report."""
    return {"mAP": report["mAP"], "CF1": report["prf"]["CF1"], "OF1": report["prf"]["OF1"], **report["topk"]}


def read_study(path: Path) -> dict:
    study = yaml.safe_load(path.read_text())
    for key in ("heads", "losses", "seeds", "train"):
        if key not in study:
            raise SystemExit(f"error: {path}: missing key {key!r} (heads, losses, seeds, train)")
    return study


def cmd_cache(args) -> None:
    from fashionlens.train.config import load_config
    from fashionlens.train.frozen import build_feature_cache

    overrides = list(args.overrides or []) + ([f"data.path={args.data}"] if args.data else [])
    cfg = load_config(args.config, overrides)
    model_file = None
    if args.model:
        from fashionlens.inference.predictor import resolve_model_path

        try:
            model_file = resolve_model_path(args.model)
        except FileNotFoundError as e:
            raise SystemExit(f"error: {e}") from None
    cache = build_feature_cache(
        cfg, args.out, batch_size=args.batch_size, model_file=model_file, head=args.head
    )
    sizes = ", ".join(f"{k} {len(v['paths'])}" for k, v in cache.splits.items())
    print(
        f"wrote {args.out}: {sizes} photos, {len(cache.label_names)} labels, maps "
        f"{tuple(cache.splits['train']['features'].shape[2:])}"
    )


def _save_run(out: Path, result: dict, settings: dict) -> None:
    if "model" in result:  # the trained head, so another split can be scored later without retraining
        buf = io.BytesIO()
        torch.save(result["model"].state_dict(), buf)
        atomic_write_bytes(out.with_suffix(".pt"), buf.getvalue())
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        scores=result["scores"].astype(np.float32),
        targets=result["targets"].astype(np.uint8),
        paths=np.asarray(result["paths"]),
    )
    atomic_write_bytes(out.with_suffix(".npz"), buf.getvalue())
    summary = {
        "settings": settings,
        "headline": headline(result["report"]),
        "seconds": result["seconds"],
        "AP": result["report"]["AP"],
    }
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(summary, indent=1).encode())


def _print_run(head: str, loss: str, seed: int, result: dict) -> None:
    h = headline(result["report"])
    took = f"  ({result['seconds']:.0f} s)" if result["seconds"] else ""
    print(
        f"{head:12s} {loss:5s} seed {seed}: " + "  ".join(f"{k} {h[k]:.4f}" for k in HEADLINE) + took,
        flush=True,
    )


def cmd_run(args) -> None:
    from fashionlens.train.frozen import train_head_on_cache

    torch.set_num_threads(args.threads)
    study = read_study(args.study)
    cache, subset = _load_cache(args.cache, args.top_labels)
    out_dir = args.out / "val" / subset
    train = study["train"]
    for head_name, head in study["heads"].items():
        if args.only and head_name not in args.only:
            continue
        for loss_name, loss in study["losses"].items():
            if args.losses and loss_name not in args.losses:
                continue
            for seed in study["seeds"]:
                out = out_dir / f"{head_name}__{loss_name}__s{seed}"
                if out.with_suffix(".json").is_file():
                    continue
                lr = study.get("lr", {}).get(head_name, train["lr"])
                settings = {
                    "head": head,
                    "loss": loss,
                    "seed": seed,
                    **train,
                    "lr": lr,
                    "split": "val",
                    "subset": subset,
                    "labels": study.get("labels"),
                }
                result = train_head_on_cache(
                    cache,
                    head,
                    loss,
                    seed=seed,
                    epochs=train["epochs"],
                    lr=lr,
                    weight_decay=train.get("weight_decay", 1e-4),
                    batch_size=train.get("batch_size", 32),
                    eval_split="val",
                    labels_cfg=study.get("labels"),
                    progress=False,
                )
                _save_run(out, result, settings)
                _print_run(head_name, loss_name, seed, result)


def _load_cache(path: Path, top_labels: int | None):
    from fashionlens.train.frozen import FeatureCache

    cache = FeatureCache.load(path)
    if not top_labels:
        return cache, "all"
    cache = cache.restrict_to_top_labels(top_labels)
    print(
        f"top-{top_labels} labels: {', '.join(cache.label_names)}; "
        + ", ".join(f"{k} {len(v['paths'])}" for k, v in cache.splits.items())
    )
    return cache, f"top{top_labels}"


def cmd_score(args) -> None:
    """Score another split with the heads a ``run`` trained (the final check on the test split)."""
    from fashionlens.train.frozen import rebuild_head, score_split

    torch.set_num_threads(args.threads)
    runs = sorted(args.runs.glob("*.json"))
    if not runs:
        raise SystemExit(f"error: no runs (*.json) in {args.runs}")
    subset = json.loads(runs[0].read_text())["settings"]["subset"]
    cache, _ = _load_cache(args.cache, None if subset == "all" else int(subset.removeprefix("top")))
    out_dir = args.runs.parent.parent / args.split / subset
    for path in runs:
        summary = json.loads(path.read_text())
        settings = summary["settings"]
        state = torch.load(path.with_suffix(".pt"), map_location="cpu", weights_only=True)
        model = rebuild_head(cache, settings["head"], state, settings.get("labels"))
        result = {**score_split(model, cache, args.split), "seconds": summary["seconds"]}  # the training time
        _save_run(out_dir / path.stem, result, {**settings, "split": args.split})
    print(f"scored {len(runs)} heads on the {args.split} split: {out_dir}")


def cmd_score_models(args) -> None:
    """Score fine-tuned model files (``.../HEAD-LOSS-sSEED/model.safetensors``) on one split, as runs
    ``table`` reads."""
    from fashionlens.evaluate.evaluate import evaluate_model
    from fashionlens.metrics.reports import multilabel_report

    torch.set_num_threads(args.threads)
    for path in args.models:
        try:
            head, loss, seed = path.parent.name.split("-")
            seed = int(seed.removeprefix("s"))
        except ValueError:
            raise SystemExit(
                f"error: {path}: its folder should be named HEAD-LOSS-sSEED (e.g. linear-bce-s0)"
            ) from None
        out = args.out / args.split / "all" / f"{head}__{loss}__s{seed}"
        if out.with_suffix(".json").is_file():
            continue
        _, res = evaluate_model(
            path, args.data, split=args.split, trainer_kwargs={"enable_progress_bar": False}
        )
        o, names = res["outputs"], list(res["info"].label_names["labels"])
        order = np.argsort(o["paths"])  # one photo order for every model, as the bootstrap pairs rows
        scores, targets, paths = (
            o["labels_scores"][order],
            o["labels_targets"][order],
            list(o["paths"][order]),
        )
        result = {
            "report": multilabel_report(scores, targets, names),
            "scores": scores,
            "targets": targets,
            "paths": paths,
            "seconds": 0.0,  # the training time is not known here: "-" in the table
        }
        settings = {
            "head": {"kind": head},
            "loss": {"kind": loss},
            "seed": seed,
            "split": args.split,
            "subset": "all",
            "model": str(path),
            "finetuned": True,
        }
        _save_run(out, result, settings)
        _print_run(head, loss, seed, result)


def cmd_export(args) -> None:
    """A head trained on the cache + the cache's backbone = an ordinary model file (evaluate, compare,
    predict)."""
    from fashionlens.checkpoint import ModelInfo, save_model
    from fashionlens.model_header import Training
    from fashionlens.models import FashionNet
    from fashionlens.train.config import load_config
    from fashionlens.train.fit import backbone_kwargs, build_backbone, data_description

    summary = json.loads(args.run.read_text())
    state = torch.load(args.run.with_suffix(".pt"), map_location="cpu", weights_only=True)
    cfg = load_config(args.config)
    if summary["settings"]["subset"] != "all":
        cfg["data"]["top_labels"] = int(summary["settings"]["subset"].removeprefix("top"))
    backbone = build_backbone(cfg)
    backbone.data_config = backbone.data_config.replace(
        resize=cfg["data"]["resize"], max_stretch=cfg["data"]["max_stretch"]
    )
    names = list(summary["AP"])
    head = {**summary["settings"]["head"], "num_classes": len(names)}
    if "classifier.embeddings" in state:
        head["embed_dim"] = int(state["classifier.embeddings"].shape[1])
    model = FashionNet(
        cfg["model"]["backbone"],
        {"labels": head},
        backbone_kwargs=backbone_kwargs(cfg),
        backbone_module=backbone,
    )
    model.heads["labels"].load_state_dict(state)
    experiment = args.name or args.run.stem.replace("__", "-")
    info = ModelInfo(
        model.spec,
        {"labels": names},
        backbone.data_config,
        training=Training(
            experiment,
            data_description(cfg),
            note=f"head trained on frozen features (tools/head_study.py): {args.run}",
        ),
    )
    save_model(model.eval(), info, args.out)
    print(f"wrote {args.out} ({experiment})")


def load_results(folder: Path) -> dict[tuple[str, str], list[dict]]:
    """(head, loss) -> runs (settings, headline, scores, targets, paths), sorted by seed."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(folder.glob("*.json")):
        head, loss, _ = path.stem.split("__")
        summary = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as z:
            summary.update(scores=z["scores"], targets=z["targets"], paths=list(z["paths"]))
        runs.setdefault((head, loss), []).append(summary)
    if not runs:
        raise SystemExit(f"error: no results (*.json) in {folder}")
    for group in runs.values():
        group.sort(key=lambda r: r["settings"]["seed"])
    return runs


def _metric_fns(columns: tuple[str, ...]) -> dict:
    from fashionlens.metrics import multilabel_prf, topk_recall
    from fashionlens.metrics.functional import mean_average_precision

    fns = {
        "mAP": mean_average_precision,
        "CF1": lambda s, t: multilabel_prf(s, t)["CF1"],
        "OF1": lambda s, t: multilabel_prf(s, t)["OF1"],
    }
    for k in (1, 2, 3):
        for mode in ("all", "any"):
            fns[f"top{k}_{mode}"] = lambda s, t, k=k, mode=mode: topk_recall(s, t, k, mode)
    return {c: fns[c] for c in columns}


def summary_table(runs: dict, columns: tuple[str, ...]) -> tuple[list[str], tuple[str, str]]:
    """Markdown rows: mean +- sample std over seeds per (head, loss); and the best (head, loss) by mAP."""
    lines = [
        "| head | loss | seeds | " + " | ".join(columns) + " | s/run |",
        "|---" * (len(columns) + 4) + "|",
    ]
    means = {}
    for key, group in runs.items():
        cells = []
        for c in columns:
            v = np.array([r["headline"][c] for r in group], dtype=float)
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
            if c == "mAP":
                means[key] = v.mean()
        secs = np.mean([r["seconds"] for r in group])  # 0: not known (score-models does not time training)
        lines.append(
            f"| {key[0]} | {key[1]} | {len(group)} | "
            + " | ".join(cells)
            + f" | {f'{secs:.0f}' if secs else '-'} |"
        )
    return lines, max(means, key=means.get)


def bootstrap_lines(runs: dict, best: tuple[str, str], columns: tuple[str, ...], resamples: int) -> list[str]:
    """Paired bootstrap over photos (seed-averaged metrics): the best (head, loss) against the others."""
    from fashionlens.metrics import paired_bootstrap

    keys = (
        [best]
        + [k for k in runs if k != best and k[0] in ("linear", "gcn")]
        + [k for k in runs if k != best and k[0] not in ("linear", "gcn")]
    )
    paths = runs[best][0]["paths"]
    for k in keys:
        if any(r["paths"] != paths for r in runs[k]):
            raise SystemExit(f"error: {k} was scored on other photos than {best}")
    targets = runs[best][0]["targets"]
    lines = [
        f"Paired bootstrap over the {len(paths)} photos ({resamples} rounds, each run's metric on the same "
        f"resampled photos, averaged over seeds): {best[0]} + {best[1]} minus each other head x loss, "
        "95 % interval, and the share of rounds in which it was not better.",
        "",
        "| minus | " + " | ".join(f"Δ{c} [95 % CI] (p)" for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    results = {
        c: paired_bootstrap(fn, [[r["scores"] for r in runs[k]] for k in keys], targets, resamples, seed=0)
        for c, fn in _metric_fns(columns).items()
    }
    for m, key in enumerate(keys[1:], start=1):
        cells = []
        for c in columns:
            d = results[c].difference(0, m)
            cells.append(f"{d['delta']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] ({d['p_not_better']:.3f})")
        lines.append(f"| {key[0]} + {key[1]} | " + " | ".join(cells) + " |")
    return lines


def cmd_table(args) -> None:
    text = []
    for folder in args.results:
        runs = load_results(folder)
        subset = next(iter(runs.values()))[0]["settings"]["subset"]
        seed_b = subset != "all" or args.seed_b
        columns = ("mAP", "top1_any", "top2_all", "top2_any", "top3_all", "top3_any") if seed_b else HEADLINE
        rows, best = summary_table(runs, columns)
        text += [f"### {folder}", "", *rows, "", f"Best by mean mAP: **{best[0]} + {best[1]}**.", ""]
        text += bootstrap_lines(
            runs, best, ("mAP", "top1_any", "top2_all", "top3_any") if seed_b else columns[:4], args.resamples
        ) + [""]
    out = "\n".join(text)
    print(out)
    if args.out:
        atomic_write_bytes(args.out, out.encode())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="cache the backbone's feature maps of every photo and its mirror")
    c.add_argument("config", type=Path)
    c.add_argument("--data", default=None)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument(
        "--model",
        default=None,
        help="a model file (or fashionlens-lite) whose trained backbone and input size to cache",
    )
    c.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    c.add_argument(
        "--head",
        default=None,
        choices=["labels", "styles", "attributes"],
        help="the targets to cache (styles: a CCP config with data.styles)",
    )
    r = sub.add_parser("run", help="train every head x loss x seed of a study file on the cache")
    r.add_argument("study", type=Path)
    r.add_argument("--cache", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)"
    )
    r.add_argument(
        "--top-labels", type=int, default=None, help="keep the n most frequent labels (seed B's protocol)"
    )
    r.add_argument("--only", nargs="*", default=None, help="only these heads of the study file")
    r.add_argument("--losses", nargs="*", default=None, help="only these losses of the study file")
    s = sub.add_parser("score", help="score another split with the heads a run trained")
    s.add_argument("runs", type=Path, help="a run folder, e.g. OUT/val/all")
    s.add_argument("--cache", type=Path, required=True)
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.add_argument("--threads", type=int, default=1)
    m = sub.add_parser(
        "score-models", help="score fine-tuned model files (HEAD-LOSS-sSEED/model.safetensors) for table"
    )
    m.add_argument("models", type=Path, nargs="+")
    m.add_argument("--data", required=True)
    m.add_argument("--split", default="val", choices=["val", "test"])
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--threads", type=int, default=2)
    e = sub.add_parser("export", help="a trained head + the cache's backbone as a model file")
    e.add_argument("run", type=Path, help="a run's .json, e.g. OUT/val/all/mldecoder__asl__s0.json")
    e.add_argument("--config", type=Path, required=True, help="the config the cache was made with")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--name", default=None, help="experiment name in the model header")
    t = sub.add_parser("table", help="mean +- std over seeds and the paired bootstrap, as Markdown")
    t.add_argument("results", type=Path, nargs="+")
    t.add_argument("--out", type=Path, default=None)
    t.add_argument("--resamples", type=int, default=2000)
    t.add_argument(
        "--seed-b", action="store_true", help="seed B's top-k recall columns (a cache of a top-n config)"
    )
    args = ap.parse_args(argv)
    {
        "cache": cmd_cache,
        "run": cmd_run,
        "score": cmd_score,
        "score-models": cmd_score_models,
        "export": cmd_export,
        "table": cmd_table,
    }[args.command](args)


if __name__ == "__main__":
    main()
