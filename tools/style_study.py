"""Seed B's experiment on real style labels (issue 23; results in docs/styles.md).

    # 1. train every row x seed (configs/styles_top{5,7}_*.yaml), e.g.
    fashionlens train configs/styles_top5_mlgcn.yaml --out runs/styles/top5/mlgcn-s0 seed=0
    # 2. score the trained models on a split (each model once; reruns skip what is scored)
    python tools/style_study.py score runs/styles/top5/*/model.safetensors \
        --data ../shared/data/ccp/styles.csv --split val --out runs/styles/scores
    # 3. seed B's Tables 3 and 5 (mean +- std over seeds), the paired bootstrap of ML-GCN minus the
    #    linear head, and the annotator row (the second labelling scored against the first, same photos)
    python tools/style_study.py table runs/styles/scores/val/top5 \
        --second ../shared/data/ccp/styles.second-pass.csv
    # 4. Fig. 6 (style correlation on the training split) and Fig. 7 (a case grid of test photos)
    python tools/style_study.py figures --data ../shared/data/ccp/styles.csv --out docs \
        --cases runs/styles/scores/test/top5 --rows lite0 mlgcn

Run folders are named ``ROW-sSEED`` (``lite0-s0``, ``mlgcn_lite2-s2``, ...): ROW names the table row.
The test split is scored once, after every choice was made on the validation split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fashionlens.evaluate.studies import run_name
from fashionlens.fileio import atomic_write_bytes

COLUMNS = ("top1_any", "top2_all", "top2_any", "top3_all", "top3_any", "mAP")
ROWS = {  # table order and the row's name in seed B's terms
    "basic_cnn": "Basic CNN (from scratch)",
    "lite0": "Transfer baseline: Lite0 + linear (fine-tuned)",
    "lite2": "Transfer baseline: Lite2 + linear (fine-tuned)",
    "mlgcn": "ML-GCN on Lite0 (fine-tuned)",
    "mlgcn_lite2": "ML-GCN on Lite2 (fine-tuned)",
    "query2label": "Query2Label + ASL on Lite0 (fine-tuned)",
}
SHORT = {  # the rows' names in the case grid, short enough for a line under a photo
    "basic_cnn": "basic CNN",
    "lite0": "Lite0 linear",
    "lite2": "Lite2 linear",
    "mlgcn": "Lite0 ML-GCN",
    "mlgcn_lite2": "Lite2 ML-GCN",
    "query2label": "Lite0 Q2L",
}
PAIRS = (("mlgcn", "lite0"), ("mlgcn_lite2", "lite2"), ("query2label", "lite0"))  # (a, b): a minus b


def cmd_score(args) -> None:
    """Each model's scores on one split, photos in one (sorted) order, as ``table`` reads them."""
    from fashionlens.checkpoint import read_info
    from fashionlens.evaluate.evaluate import evaluate_model
    from fashionlens.metrics import multilabel_report

    for path in args.models:
        row, seed = run_name(path)
        subset = f"top{read_info(path).training.top_labels or 'all'}"
        out = args.out / args.split / subset / f"{row}__s{seed}"
        if out.with_suffix(".json").is_file():
            continue
        _, res = evaluate_model(
            path, args.data, split=args.split, trainer_kwargs={"enable_progress_bar": False}
        )
        o, names = res["outputs"], list(res["info"].label_names["labels"])
        order = np.argsort(o["paths"])  # one photo order for every model: the bootstrap pairs rows
        scores, targets = o["labels_scores"][order], o["labels_targets"][order]
        report = multilabel_report(scores, targets, names)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out.with_suffix(".npz"), scores=scores, targets=targets, paths=np.asarray(o["paths"][order]))
        summary = {
            "row": row,
            "seed": seed,
            "split": args.split,
            "subset": subset,
            "model": str(path),
            "labels": names,
            "report": report,
        }
        atomic_write_bytes(out.with_suffix(".json"), json.dumps(summary, indent=1, default=float).encode())
        print(
            f"{row} s{seed} {args.split} {subset}: mAP {report['mAP']:.3f} top-1 any "
            f"{report['topk']['top1_any']:.3f}"
        )


def load_scores(folder: Path) -> dict[str, list[dict]]:
    """row -> runs (summary + scores, targets, paths), sorted by seed."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.json")):
        summary = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as z:
            summary.update(scores=z["scores"], targets=z["targets"], paths=[str(p) for p in z["paths"]])
        runs.setdefault(summary["row"], []).append(summary)
    if not runs:
        raise SystemExit(f"error: no scored runs (*.json) in {folder}")
    for group in runs.values():
        group.sort(key=lambda r: r["seed"])
    paths = next(iter(runs.values()))[0]["paths"]
    for row, group in runs.items():
        if any(r["paths"] != paths for r in group):
            raise SystemExit(f"error: {row} was scored on other photos than the other rows")
    return dict(sorted(runs.items(), key=lambda kv: list(ROWS).index(kv[0]) if kv[0] in ROWS else len(ROWS)))


def _metric(report: dict, column: str) -> float:
    return report["mAP"] if column == "mAP" else report["topk"][column]


def _mean_std(values) -> str:
    v = np.asarray(values, dtype=float) * 100
    return f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0:.1f}"


def rows_table(runs: dict[str, list[dict]], rows_subset: np.ndarray | None = None) -> list[str]:
    """Seed B's Table 3: one row per model (mean ± std over seeds, percent), optionally on some photos
    only."""
    from fashionlens.metrics import multilabel_report

    lines = ["| model | seeds | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for row, group in runs.items():
        reports = [
            r["report"]
            if rows_subset is None
            else multilabel_report(r["scores"][rows_subset], r["targets"][rows_subset], r["labels"])
            for r in group
        ]
        cells = [_mean_std([_metric(rep, c) for rep in reports]) for c in COLUMNS]
        lines.append(f"| {ROWS.get(row, row)} | {len(group)} | " + " | ".join(cells) + " |")
    return lines


def per_style_table(runs: dict[str, list[dict]]) -> list[str]:
    """Seed B's Table 5: per-style top-2 all-recall, mean over seeds (percent), with the style's support."""
    first = next(iter(runs.values()))[0]
    names = first["labels"]
    support = first["report"]["per_label_top2_all"]
    lines = [
        "| style (photos) | " + " | ".join(ROWS.get(r, r) for r in runs) + " |",
        "|---" * (len(runs) + 1) + "|",
    ]
    for name in names:
        cells = []
        for group in runs.values():
            v = [r["report"]["per_label_top2_all"][name]["recall"] for r in group]
            cells.append("n/a" if any(x is None for x in v) else _mean_std(v))
        lines.append(f"| {name} ({support[name]['support']}) | " + " | ".join(cells) + " |")
    return lines


def bootstrap_table(runs: dict[str, list[dict]], resamples: int) -> list[str]:
    """Paired bootstrap over photos (seed-averaged metrics) of each (a, b) in PAIRS that was run: a minus
    b."""
    from fashionlens.metrics import mean_average_precision, paired_bootstrap, topk_recall

    fns = {
        "mAP": mean_average_precision,
        "top1_any": lambda s, t: topk_recall(s, t, 1, "any"),
        "top2_all": lambda s, t: topk_recall(s, t, 2, "all"),
        "top3_any": lambda s, t: topk_recall(s, t, 3, "any"),
    }
    lines = [
        "| a minus b | " + " | ".join(f"Δ{c} [95 % CI] (p)" for c in fns) + " |",
        "|---" * (len(fns) + 1) + "|",
    ]
    for a, b in PAIRS:
        if a not in runs or b not in runs:
            continue
        targets = runs[a][0]["targets"]
        cells = []
        for fn in fns.values():
            result = paired_bootstrap(
                fn,
                [[r["scores"] for r in runs[b]], [r["scores"] for r in runs[a]]],
                targets,
                resamples,
                seed=0,
            )
            d = result.difference(1, 0)  # scores were given as [b, a]: a minus b
            cells.append(
                f"{d['delta'] * 100:+.1f} [{d['lo'] * 100:+.1f}, {d['hi'] * 100:+.1f}] "
                f"({d['p_not_better']:.3f})"
            )
        lines.append(f"| {ROWS.get(a, a)} minus {ROWS.get(b, b)} | " + " | ".join(cells) + " |")
    return lines


def annotator_rows(runs: dict[str, list[dict]], second_path: Path) -> tuple[list[str], np.ndarray]:
    """The second labelling scored like a model against the first on the photos both labelled; the rows of
    those photos."""
    from fashionlens.data.styles import annotator_scores, read_styles
    from fashionlens.metrics import multilabel_report

    first = next(iter(runs.values()))[0]
    second = read_styles(second_path)
    scores = annotator_scores(second, first["paths"], first["labels"])
    rows = ~np.isnan(scores).any(1)
    report = multilabel_report(scores[rows], first["targets"][rows], first["labels"])
    cells = [f"{_metric(report, c) * 100:.1f}" for c in COLUMNS]
    return [
        "| Annotators: the second labelling scored against the first | - | " + " | ".join(cells) + " |"
    ], rows


def cmd_table(args) -> None:
    text = []
    for folder in args.scores:
        runs = load_scores(folder)
        first = next(iter(runs.values()))[0]
        n = len(first["paths"])
        text += [
            f"### {first['subset']}, {first['split']} split ({n} photos; styles: "
            f"{', '.join(first['labels'])})",
            "",
        ]
        text += rows_table(runs) + [""]
        if args.second:
            ann, rows = annotator_rows(runs, args.second)
            text += [
                f"The same models on the {int(rows.sum())} of these photos that the second pass labelled, "
                "beside the annotators (the ceiling):",
                "",
            ]
            text += rows_table(runs, rows) + ann + [""]
        text += ["Per-style top-2 all-recall (seed B's Table 5):", ""] + per_style_table(runs) + [""]
        text += (
            [
                f"Paired bootstrap over the {n} photos ({args.resamples} rounds, seed-averaged metrics; p = "
                "the share of rounds in which a was not better), points:",
                "",
            ]
            + bootstrap_table(runs, args.resamples)
            + [""]
        )
    out = "\n".join(text)
    print(out)
    if args.out:
        atomic_write_bytes(args.out, out.encode())


def cmd_figures(args) -> None:
    """Fig. 6: P(j | i) over the training split of the top-5, top-7 and all styles; Fig. 7: a case grid."""
    from fashionlens.data.multilabel import select_top_labels, split_dataset
    from fashionlens.data.styles import read_styles
    from fashionlens.evaluate.tables import plot_correlation
    from fashionlens.labelgraph import cooccurrence

    styles = read_styles(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    for n in (5, 7, None):
        subset = select_top_labels(styles, n) if n else styles
        train = split_dataset(subset, (0.7, 0.1, 0.2), seed=0)["train"]
        counts, nums = cooccurrence(train.targets())
        conditional = np.divide(
            counts, nums[:, None], out=np.zeros_like(counts, dtype=np.float64), where=nums[:, None] > 0
        )
        np.fill_diagonal(conditional, 1.0)
        name = f"top{n}" if n else "all"
        plot_correlation(
            conditional,
            subset.label_names,
            args.out / f"styles-correlation-{name}.png",
            f"Style correlation P(j | i)\nCCP-Styles training split ({name}, {len(train)} photos)",
        )
        print(f"wrote {args.out / f'styles-correlation-{name}.png'}")
    if args.cases:
        _case_grid(load_scores(args.cases), args.rows, args.out / "styles-cases.png", args.n)


def _case_grid(runs: dict[str, list[dict]], rows: list[str], path: Path, n: int) -> None:
    """Seed B's Fig. 7: the photos where the rows disagree most (seed 0 of each), top-3 styles and the
    truth."""
    from fashionlens.evaluate.compare import HeadOutputs, disagreement_order
    from fashionlens.evaluate.compare_plots import plot_cases

    missing = [r for r in rows if r not in runs]
    if missing:
        raise SystemExit(f"error: no scored runs of {missing} (scored: {sorted(runs)})")
    first = runs[rows[0]][0]
    out = HeadOutputs(
        "labels",
        first["labels"],
        [runs[r][0]["scores"] for r in rows],
        first["targets"].astype(np.int64),
        first["paths"],
    )
    plot_cases(out, [SHORT.get(r, r) for r in rows], disagreement_order(out)[:n], path, columns=3)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score trained models (ROW-sSEED/model.safetensors) on a split")
    s.add_argument("models", nargs="+", type=Path)
    s.add_argument("--data", required=True, help="the style CSV the models were trained on")
    s.add_argument("--split", default="val", choices=["val", "test"])
    s.add_argument("--out", type=Path, required=True)
    t = sub.add_parser(
        "table", help="seed B's Tables 3 and 5, the bootstrap and the annotator row, as Markdown"
    )
    t.add_argument("scores", nargs="+", type=Path, help="folders written by score (OUT/SPLIT/topN)")
    t.add_argument("--second", type=Path, default=None, help="the second labelling (styles.second-pass.csv)")
    t.add_argument("--resamples", type=int, default=2000)
    t.add_argument("--out", type=Path, default=None)
    f = sub.add_parser("figures", help="style correlation matrices (Fig. 6) and a case grid (Fig. 7) as PNGs")
    f.add_argument("--data", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--cases", type=Path, default=None, help="a folder written by score, for the case grid")
    f.add_argument("--rows", nargs="+", default=["lite0", "mlgcn"])
    f.add_argument("--n", type=int, default=12, help="photos in the case grid")
    args = ap.parse_args(argv)
    {"score": cmd_score, "table": cmd_table, "figures": cmd_figures}[args.command](args)


if __name__ == "__main__":
    main()
