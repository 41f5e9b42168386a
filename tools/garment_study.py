"""Seed A's Table 2 on real garment attributes (issue 27; results in docs/real-photos.md).

    # 1. the garment crops with their attributes, then every configuration x seed
    fashionlens data derive-landmarks ../shared/data/ccp runs/ccp-garments
    fashionlens train configs/garments_ours_lite0.yaml --data runs/ccp-garments \
        --out runs/garments/ours-s0 seed=0
    #    (ours, 3like, plain; seeds 0 1 2)
    # 2. score the trained models on a split (each model once; reruns skip what is scored)
    python tools/garment_study.py score runs/garments/*-s*/model.safetensors --data runs/ccp-garments \
        --split val --out runs/garments/scores
    # 3. the baseline: a linear probe on the shipped model's frozen features, scored the same way
    python bench/linear_probe.py --data-format deepfashion --data runs/ccp-garments --model fashionlens-lite \
        --scores runs/garments/scores/val/probe__s0.npz
    python bench/linear_probe.py --data-format deepfashion --data runs/ccp-garments --input-size 192 192 \
        --scores runs/garments/scores/val/probe_imagenet__s0.npz
    # 4. seed A's Table 2 (recall@3/@5 and mAP per attribute type, mean +- std over seeds), the paired
    #    bootstrap of ours minus plain, and the annotator row (the second pass scored against the first)
    python tools/garment_study.py table runs/garments/scores/val \
        --second ../shared/data/ccp/garment_attributes.second-pass.csv

Run folders are named ``ROW-sSEED`` (``ours-s0``, ``3like-s2``, ``plain-s1``): ROW names the table row.
A score file is ``ROW__sSEED.npz`` (``scores``, ``positive``, ``known`` (N, A); ``paths`` (N,);
``names``, ``groups`` (A,)), crops sorted by path, so every row is paired crop by crop.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fashionlens.evaluate.studies import run_name, save_attribute_scores
from fashionlens.fileio import atomic_write_bytes

TYPES = {1: "texture", 2: "fabric", 3: "shape", 4: "part", 6: "colour"}
LOCAL, GLOBAL = ("fabric", "part"), ("texture", "shape")  # seed A's claim: the branch helps the local types
ROWS = {  # table order and the row's name in seed A's terms
    "ours": "Ours: GLEM landmark branch, fused",
    "3like": "[3]-like: landmark branch trained, not fused",
    "plain": "Plain backbone (no landmark branch)",
    "probe_imagenet": (
        "Linear probe on frozen ImageNet Lite0 features, 192 x 192 (the three's backbone and input)"
    ),
    "probe": "Linear probe on the shipped model's frozen features (384 x 288)",
    "shipped": "The shipped model (fashionlens-lite), its attribute head",
}
PAIRS = (("ours", "plain"), ("ours", "3like"), ("3like", "plain"))  # (a, b): a minus b


def crop_key(path: str | Path) -> tuple[str, str]:
    """``img/0005_vest.jpg`` -> ``("0005", "vest")``: the (photo, garment) key of the attribute files."""
    photo, _, garment = Path(path).stem.partition("_")
    return photo, garment


def cmd_score(args) -> None:
    from fashionlens.evaluate.evaluate import evaluate_model
    from fashionlens.inference.predictor import resolve_model_path

    if args.row and len(args.models) != 1:
        raise SystemExit("error: --row names the row of one model file")
    for path in args.models:
        row, seed = (args.row, 0) if args.row else run_name(path)
        path = resolve_model_path(path)
        out = args.out / args.split / f"{row}__s{seed}.npz"
        if out.is_file():
            continue
        report, res = evaluate_model(
            path,
            args.data,
            split=args.split,
            trainer_kwargs={"enable_progress_bar": False},
            data_format="deepfashion",
        )
        o, info = res["outputs"], res["info"]
        if "attributes_scores" not in o:
            raise SystemExit(f"error: {path} has no attribute head with targets in {args.data}")
        known = o["attributes_mask"] > 0
        save_attribute_scores(
            out,
            o["attributes_scores"],
            (o["attributes_targets"] == 1) & known,
            known,
            o["paths"],
            info.label_names["attributes"],
            list(info.attributes.groups),
        )
        context = {
            "model": str(path),
            "category_top1": report.get("category", {}).get("top1"),
            "landmark_NE": report.get("deepfashion", {}).get("landmarks", {}).get("NE"),
        }
        atomic_write_bytes(out.with_suffix(".json"), json.dumps(context, default=float).encode())
        m = type_metrics(*_load_arrays(out))
        print(
            f"{row} s{seed} {args.split}: attributes (41) mAP {m['attributes']['mAP']:.3f}, "
            f"part recall@3 {m['part']['top3']:.3f}"
        )


def _load_arrays(path: Path):
    with np.load(path) as z:
        return z["scores"], z["positive"], z["known"], z["groups"]


def type_metrics(
    scores: np.ndarray, positive: np.ndarray, known: np.ndarray, groups: np.ndarray, ks=(3, 5)
) -> dict[str, dict[str, float]]:
    """Recall@k (Liu & Lu's, pooled over crops, ranked within the type) and masked mAP per attribute type.

    ``attributes`` is seed A's "all" over the four types of the attribute file (texture, fabric, shape,
    part); colours (type 6), when the model has them, are their own column and not in it.
    """
    from fashionlens.metrics import attribute_recall_at_k, average_precision

    ap = average_precision(scores, positive, known)
    columns = {
        name: np.flatnonzero(groups == number) for number, name in TYPES.items() if (groups == number).any()
    }
    columns["attributes"] = np.flatnonzero(np.isin(groups, [1, 2, 3, 4]))
    out = {}
    for name, cols in columns.items():
        if not len(cols):
            continue
        s = np.where(known[:, cols], scores[:, cols], -np.inf)  # an unknown entry is never ranked as a guess
        values = ap[cols][~np.isnan(ap[cols])]
        if not positive[
            :, cols
        ].any():  # nothing to recall (e.g. colours, which the annotators did not label)
            out[name] = {**{f"top{k}": float("nan") for k in ks}, "mAP": float("nan")}
            continue
        out[name] = {
            **{f"top{k}": float(attribute_recall_at_k(s, positive[:, cols], k)) for k in ks},
            "mAP": float(values.mean()) if values.size else float("nan"),
        }
    return out


def load_runs(folder: Path) -> dict[str, list[dict]]:
    """row -> runs (scores, positive, known, paths, names, groups), sorted by seed.

    Every row is on the same crops.
    """
    runs: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*__s*.npz")):
        row, _, seed = path.stem.rpartition("__s")
        with np.load(path) as z:
            run = {k: z[k] for k in z.files}
        runs.setdefault(row, []).append(
            {**run, "row": row, "seed": int(seed), "paths": [str(p) for p in run["paths"]]}
        )
    if not runs:
        raise SystemExit(f"error: no scored runs (ROW__sSEED.npz) in {folder}")
    first = next(iter(runs.values()))[0]
    for row, group in runs.items():
        group.sort(key=lambda r: r["seed"])
        for r in group:
            if [crop_key(p) for p in r["paths"]] != [crop_key(p) for p in first["paths"]]:
                raise SystemExit(f"error: {row} s{r['seed']} was scored on other crops than {first['row']}")
            if list(r["names"]) != list(first["names"]):
                raise SystemExit(
                    f"error: {row} s{r['seed']} has another attribute vocabulary than {first['row']}"
                )
    return dict(sorted(runs.items(), key=lambda kv: list(ROWS).index(kv[0]) if kv[0] in ROWS else len(ROWS)))


def _mean_std(values) -> str:
    v = np.asarray(values, dtype=float) * 100
    if np.isnan(v).any():
        return "-"
    if len(v) < 2:
        return f"{v.mean():.1f}"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def annotator_scores(second, paths, names, groups, prior: np.ndarray) -> np.ndarray:
    """The second pass as a ranking, to be scored like a model against the first.

    Within each garment, the attributes the second pass lists come first, then the rest; inside both,
    by their training-split frequency (``prior``), the guess an annotator's unlisted attributes amount
    to. Colours (not in the attribute files) and crops the second pass did not label get NaN.
    """
    column = {name: c for c, name in enumerate(names)}
    out = np.full((len(paths), len(names)), np.nan)
    labelled = np.isin(groups, [1, 2, 3, 4])
    for i, path in enumerate(paths):
        found = second.rows.get(crop_key(path))
        if found is None:
            continue
        out[i, labelled] = np.asarray(prior, dtype=np.float64)[labelled] * 1e-3
        for name in found:
            out[i, column[name]] += 1.0
    return out


def _row_cells(reports: list[dict], cells: list[tuple[str, str]]) -> list[str]:
    return [_mean_std([rep[t][m] for rep in reports]) if t in reports[0] else "-" for t, m in cells]


def recall_table(
    runs: dict[str, list[dict]], rows: np.ndarray | None = None, annotator: np.ndarray | None = None
) -> list[str]:
    """Seed A's Table 2: recall@3 / @5 per type and over the 41, then mAP per type (percent, mean ± std)."""
    types = [t for t in ("texture", "fabric", "shape", "part", "attributes", "colour")]
    cells = [(t, f"top{k}") for t in types for k in (3, 5)] + [(t, "mAP") for t in types]
    header = [f"{t if t != 'attributes' else 'all 41'} {m.replace('top', '@')}" for t, m in cells]
    lines = ["| model | seeds | " + " | ".join(header) + " |", "|---" * (len(cells) + 2) + "|"]
    for row, group in runs.items():
        take = slice(None) if rows is None else rows
        reports = [
            type_metrics(r["scores"][take], r["positive"][take], r["known"][take], r["groups"]) for r in group
        ]
        lines.append(
            f"| {ROWS.get(row, row)} | {len(group)} | " + " | ".join(_row_cells(reports, cells)) + " |"
        )
    if annotator is not None:
        first = next(iter(runs.values()))[0]
        keep = ~np.isnan(annotator).all(1)
        known = first["known"][keep] & ~np.isnan(annotator[keep])
        report = type_metrics(
            np.nan_to_num(annotator[keep], nan=-1.0), first["positive"][keep] & known, known, first["groups"]
        )
        lines.append(
            "| Annotators: the second pass scored against the first | - | "
            + " | ".join(_row_cells([report], cells))
            + " |"
        )
    return lines


def _coded(run: dict) -> np.ndarray:
    """Targets packed for the bootstrap: 1 positive, -1 known negative, 0 unknown."""
    return np.where(run["known"], np.where(run["positive"], 1, -1), 0).astype(np.int8)


def bootstrap_table(runs: dict[str, list[dict]], resamples: int) -> list[str]:
    """Paired bootstrap over crops (seed-averaged) of each pair a minus b: recall@3 and mAP per type, and
    seed A's claim as one number, the gain on fabric and part minus the gain on texture and shape."""
    from fashionlens.metrics import paired_bootstrap

    groups = next(iter(runs.values()))[0]["groups"]

    def metric(type_name: str, key: str):
        def fn(scores, coded):
            return type_metrics(scores, coded == 1, coded != 0, groups, ks=(3,))[type_name][key]

        return fn

    def claim(scores, coded):
        m = type_metrics(scores, coded == 1, coded != 0, groups, ks=(3,))
        return np.mean([m[t]["top3"] for t in LOCAL]) - np.mean([m[t]["top3"] for t in GLOBAL])

    present = [TYPES[g] for g in (1, 2, 3, 4) if (groups == g).any()]
    fns = {f"{t} r@3": metric(t, "top3") for t in present}
    fns.update({f"{t} mAP": metric(t, "mAP") for t in present})
    fns["all 41 mAP"] = metric("attributes", "mAP")
    if all(t in present for t in LOCAL + GLOBAL):
        fns["local - global r@3"] = claim
    lines = ["| a minus b | " + " | ".join(f"Δ {c}" for c in fns) + " |", "|---" * (len(fns) + 1) + "|"]
    for a, b in PAIRS:
        if a not in runs or b not in runs:
            continue
        coded = _coded(runs[a][0])
        cells = []
        for fn in fns.values():
            result = paired_bootstrap(
                fn, [[r["scores"] for r in runs[b]], [r["scores"] for r in runs[a]]], coded, resamples, seed=0
            )
            d = result.difference(1, 0)
            cells.append(
                f"{d['delta'] * 100:+.1f} [{d['lo'] * 100:+.1f}, {d['hi'] * 100:+.1f}]"
                f" (p {d['p_not_better']:.2f})"
            )
        lines.append(f"| {a} minus {b} | " + " | ".join(cells) + " |")
    return lines


def cmd_table(args) -> None:
    from fashionlens.data.garment_attributes import read_garment_attributes

    runs = load_runs(args.scores)
    first = next(iter(runs.values()))[0]
    n = len(first["paths"])
    text = [f"### {args.scores.name} split: {n} garment crops, {len(first['names'])} attributes", ""]
    text += recall_table(runs) + [""]
    if args.second:
        second = read_garment_attributes(args.second, args.vocabulary)
        prior = _training_prior(args.train_prior, first) if args.train_prior else first["positive"].mean(0)
        ann = annotator_scores(second, first["paths"], list(first["names"]), first["groups"], prior)
        rows = ~np.isnan(ann).all(1)
        text += [
            f"The same models on the {int(rows.sum())} of these crops that the second pass labelled, "
            "beside the "
            "annotators (the ceiling):",
            "",
        ]
        text += recall_table(runs, rows, annotator=ann) + [""]
    if args.second and args.first:
        text += annotator_everywhere(args.first, second, prior, list(first["names"])) + [""]
    text += [
        f"Paired bootstrap over the {n} crops ({args.resamples} rounds, seed-averaged metrics), points, "
        "[95 % interval] (p = the share of rounds in which a was not better):",
        "",
    ]
    text += bootstrap_table(runs, args.resamples) + [""]
    out = "\n".join(text)
    print(out)
    if args.out:
        atomic_write_bytes(args.out, out.encode())


def annotator_everywhere(first_path: Path, second, prior: np.ndarray, names: list[str]) -> list[str]:
    """The annotator row on every garment both passes labelled (all splits: no model is scored there)."""
    from fashionlens.data.garment_attributes import read_garment_attributes

    first = read_garment_attributes(first_path, None)
    keys = sorted(k for k in second.rows if k in first.rows)
    groups = np.asarray(first.types)
    positive = np.array([[a in first.rows[k] for a in first.names] for k in keys], dtype=bool)
    column = {name: c for c, name in enumerate(names)}
    own_prior = np.array([prior[column[a]] if a in column else 0.0 for a in first.names])
    ann = annotator_scores(second, [f"img/{p}_{g}.jpg" for p, g in keys], first.names, groups, own_prior)
    report = type_metrics(ann, positive, np.ones_like(positive), groups)
    cells = [
        (t, m) for t in ("texture", "fabric", "shape", "part", "attributes") for m in ("top3", "top5", "mAP")
    ]
    header = [f"{t if t != 'attributes' else 'all 41'} {m.replace('top', '@')}" for t, m in cells]
    return [
        f"The annotators on all {len(keys)} garments both passes labelled (every split):",
        "",
        "| | " + " | ".join(header) + " |",
        "|---" * (len(cells) + 1) + "|",
        "| second pass against the first | " + " | ".join(_row_cells([report], cells)) + " |",
    ]


def _training_prior(tree: Path, first: dict) -> np.ndarray:
    """Each attribute's share of positives on the tree's training split (the annotator's fallback order)."""
    from fashionlens.data.deepfashion import read_deepfashion

    index = read_deepfashion(tree)
    position = {name: i for i, name in enumerate(index.attribute_names)}
    values = np.asarray(index.attributes)[np.asarray(index.partition) == "train"]
    prior = np.zeros(len(first["names"]))
    for c, name in enumerate(first["names"]):
        if name in position:
            prior[c] = float((values[:, position[name]] == 1).mean())
    return prior


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score trained models (ROW-sSEED/model.safetensors) on a split")
    s.add_argument("models", nargs="+", type=Path)
    s.add_argument("--data", required=True, help="the garment tree the models were trained on")
    s.add_argument("--split", default="val", choices=["val", "test"])
    s.add_argument("--out", type=Path, required=True)
    s.add_argument(
        "--row",
        default=None,
        help="the table row of one model file not in a ROW-sSEED folder "
        "(e.g. --row shipped for fashionlens-lite); its seed is 0",
    )
    t = sub.add_parser("table", help="seed A's Table 2, the bootstrap and the annotator row, as Markdown")
    t.add_argument("scores", type=Path, help="a folder written by score (OUT/SPLIT)")
    t.add_argument(
        "--second", type=Path, default=None, help="the second pass (garment_attributes.second-pass.csv)"
    )
    t.add_argument(
        "--vocabulary", type=Path, default=None, help="garment_attributes.txt (default: beside --second)"
    )
    t.add_argument(
        "--first",
        type=Path,
        default=None,
        help="the first pass (garment_attributes.csv): also score the annotators on every garment "
        "both labelled",
    )
    t.add_argument(
        "--train-prior",
        type=Path,
        default=None,
        help="the garment tree: order the annotator's unlisted attributes by their training-split frequency "
        "(default: by their frequency on the scored crops)",
    )
    t.add_argument("--resamples", type=int, default=1000)
    t.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    {"score": cmd_score, "table": cmd_table}[args.command](args)


if __name__ == "__main__":
    main()
