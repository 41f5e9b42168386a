"""``fashionlens compare``: two or more models on the same photos, side by side.

One report (``report.md`` + PNGs + ``compare.json``) per comparison: for each head the models share
(category, labels/tags, attributes), the metrics with paired-bootstrap intervals and each model's
difference from the first, the per-label AP differences as a sorted bar chart, and a case grid like
seed B's Fig. 7: the photos on which the models disagree most, each with every model's top labels
and the truth. Outputs come from :func:`fashionlens.evaluate.evaluate.evaluate_model`, so each model
sees its own input size and the split its header describes.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashionlens.errors import ConfigError
from fashionlens.evaluate.compare_plots import plot_ap_deltas, plot_cases
from fashionlens.fileio import atomic_write_bytes, check_output_dir
from fashionlens.metrics import (
    attribute_recall_at_k,
    average_precision,
    mean_average_precision,
    multilabel_prf,
    paired_bootstrap,
    topk_accuracy,
    topk_recall,
)
from fashionlens.train.data import DataMismatchError

HEADS = ("category", "labels", "styles", "attributes")


@dataclass
class HeadOutputs:
    """One head's outputs of every model on the same photos (rows in the same order)."""

    head: str
    label_names: list[str]
    scores: list[np.ndarray]  # per model (N, C)
    targets: np.ndarray  # (N,) class indices for category, else (N, C) 0/1 (unknown attributes as 0)
    paths: list[str]

    def multi_hot(self) -> np.ndarray:
        if self.head != "category":
            return self.targets
        out = np.zeros((len(self.targets), len(self.label_names)), dtype=np.int64)
        out[np.arange(len(self.targets)), self.targets] = 1
        return out


def head_metrics(head: str, num_classes: int) -> dict:
    """The metrics compared for a head: name -> ``fn(scores, targets) -> float``."""
    if head == "category":
        out = {"top-1": lambda s, t: topk_accuracy(s, t, 1)}
        if num_classes > 3:
            out["top-3"] = lambda s, t: topk_accuracy(s, t, 3)
        return out
    if head == "attributes":
        return {"mAP": mean_average_precision, "recall@3": lambda s, t: attribute_recall_at_k(s, t, 3),
                "recall@5": lambda s, t: attribute_recall_at_k(s, t, 5)}
    return {
        "mAP": mean_average_precision,
        "CF1": lambda s, t: multilabel_prf(s, t)["CF1"],
        "OF1": lambda s, t: multilabel_prf(s, t)["OF1"],
        "top-1 any": lambda s, t: topk_recall(s, t, 1, "any"),
        "top-3 any": lambda s, t: topk_recall(s, t, 3, "any"),
    }


def photo_correctness(head: str, scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per photo, how right a model is: top-1 correct (category), else the share of its true labels
    among its k best scores with k = the number of true labels (NaN for photos without a label)."""
    if head == "category":
        return (scores.argmax(1) == targets).astype(float)
    k = targets.sum(1).astype(int)  # (N,)
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = np.take_along_axis(targets, order, axis=1).cumsum(1)  # (N, C) true labels within the top j+1
    found = hits[np.arange(len(k)), np.maximum(k - 1, 0)]
    return np.where(k > 0, found / np.maximum(k, 1), np.nan)


def disagreement_order(out: HeadOutputs) -> np.ndarray:
    """Photos by how much the models disagree: spread of their correctness, then of their scores."""
    correct = np.stack([photo_correctness(out.head, s, out.targets) for s in out.scores])  # (M, N)
    labelled = ~np.isnan(correct).any(0)
    spread = np.where(labelled, correct.max(0) - correct.min(0), -1.0)
    scores = np.stack(out.scores)  # (M, N, C)
    distance = np.abs(scores - scores.mean(0, keepdims=True)).mean((0, 2))  # (N,)
    order = np.lexsort((-distance, -spread))
    return order[labelled[order]]


def gather_outputs(results: list[dict], names: list[str]) -> tuple[list[HeadOutputs], list[str]]:
    """Put every model's outputs on the photos they share, in one order; returns notes on what was dropped."""
    notes = []
    heads = [h for h in HEADS if all(f"{h}_scores" in r["outputs"] for r in results)]
    if not heads and all("parsing_pred" in r["outputs"] for r in results):
        return [], notes  # parsers only: compare_parsing compares them
    if not heads:
        raise DataMismatchError(
            "the models share no head with targets in this data: "
            + "; ".join(f"{n}: {sorted(r['info'].label_names)}" for n, r in zip(names, results, strict=True))
        )
    outs = []
    for head in heads:
        label_names = list(results[0]["info"].label_names[head])
        for name, r in zip(names[1:], results[1:], strict=True):
            other = set(r["info"].label_names[head])
            if head == "category" and other != set(label_names):
                raise DataMismatchError(
                    f"{head}: {name} has other classes than {names[0]} "
                    f"({len(other)} vs {len(label_names)}); they cannot be compared class by class"
                )
            # e.g. a colour-only attribute head against one with colours + garment attributes
            if other != set(label_names):
                shared_names = [n for n in label_names if n in other]
                if not shared_names:
                    raise DataMismatchError(
                        f"{head}: {name} and {names[0]} share no label; they cannot be compared label by "
                        "label"
                    )
                notes.append(
                    f"{head}: compared on the {len(shared_names)} labels both models have "
                    f"(of {len(label_names)} and {len(other)})"
                )
                label_names = shared_names
        rows = [_rows_by_path(r["outputs"], head) for r in results]
        shared = [p for p in rows[0] if all(p in other for other in rows[1:])]
        if not shared:
            raise DataMismatchError(
                f"{head}: the models were scored on different photos (other splits?); nothing to compare"
            )
        if any(len(r) != len(shared) for r in rows):
            notes.append(
                f"{head}: {len(shared)} photos shared by all models (of "
                f"{', '.join(str(len(r)) for r in rows)})"
            )
        scores = []
        for r, by_path in zip(results, rows, strict=True):
            cols = [list(r["info"].label_names[head]).index(n) for n in label_names]
            s = r["outputs"][f"{head}_scores"][[by_path[p] for p in shared]]
            scores.append(s[:, cols])  # columns in the first model's label order
        first = results[0]["outputs"]
        own = (
            [list(results[0]["info"].label_names[head]).index(n) for n in label_names]
            if head != "category"
            else None
        )
        targets = first[f"{head}_targets"][[rows[0][p] for p in shared]]
        if head == "attributes":
            mask = first["attributes_mask"][[rows[0][p] for p in shared]]
            targets = np.where(mask > 0, targets, 0)
        if own is not None:
            targets = targets[:, own]
        # soft sub styles: present
        targets = (targets > 0).astype(np.int64) if head != "category" else targets.astype(np.int64)
        outs.append(HeadOutputs(head, label_names, scores, targets, shared))
    return outs, notes


def compare_parsing(results: list[dict], names: list[str], resamples: int, seed: int = 0) -> dict | None:
    """The parsers of the models that have one, on the photos they share: pixel accuracy, mIoU and garment
    recall / precision each, and a paired bootstrap over the photos of each mIoU minus the first parser's."""
    from fashionlens.garments.groups import GARMENT_GROUPS, GROUP_NAMES
    from fashionlens.metrics import confusion_matrix, parsing_report, segmentation_scores

    have = [(n, r) for n, r in zip(names, results, strict=True) if "parsing_pred" in r["outputs"]]
    if not have:
        return None
    rows = [_rows_by_path(r["outputs"], "parsing") for _, r in have]
    shared = [p for p in rows[0] if all(p in other for other in rows[1:])]
    if not shared:
        raise DataMismatchError("parsing: the models were scored on different photos; nothing to compare")
    k = len(GROUP_NAMES)
    target = have[0][1]["outputs"]["parsing_target"][[rows[0][p] for p in shared]].astype(np.int64)
    out: dict = {"num_photos": len(shared), "models": {}, "mIoU_difference": {}}
    per_photo = []
    for (name, r), by_path in zip(have, rows, strict=True):
        pred = r["outputs"]["parsing_pred"][[by_path[p] for p in shared]].astype(np.int64)
        rep = parsing_report(pred, target, GROUP_NAMES, GARMENT_GROUPS)
        g = rep.get("garments", {})
        out["models"][name] = {"pixel_accuracy": rep["pixel_accuracy"], "mIoU": rep["mIoU"],
                               "garment_recall": g.get("recall"), "garment_precision": g.get("precision")}
        per_photo.append(np.stack([confusion_matrix(a, b, k) for a, b in zip(pred, target, strict=True)]))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(shared), size=(resamples, len(shared)))
    miou = np.array([[segmentation_scores(c[d].sum(0))["mIoU"] for d in draws] for c in per_photo])
    for m, (name, _) in enumerate(have[1:], start=1):
        delta = miou[m] - miou[0]
        out["mIoU_difference"][name] = {
            "delta": out["models"][name]["mIoU"] - out["models"][have[0][0]]["mIoU"],
            "lo": float(np.percentile(delta, 2.5)), "hi": float(np.percentile(delta, 97.5)),
            "p_not_better": float((delta <= 0).mean()),
        }  # fmt: skip
    return out


def _parsing_markdown(p: dict) -> list[str]:
    names = list(p["models"])
    lines = [f"## parsing (garment groups, {p['num_photos']} photos)", "",
             "| model | pixel acc | mIoU | garments found (recall) | returned real (precision) | "
             f"Δ mIoU vs {names[0]} [95 % CI] (p) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for n, m in p["models"].items():
        d = p["mIoU_difference"].get(n)
        diff = (
            ""
            if d is None
            else f"{d['delta']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] ({d['p_not_better']:.3f})"
        )
        cells = [_fmt3(m[k]) for k in ("pixel_accuracy", "mIoU", "garment_recall", "garment_precision")]
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {diff} |")
    return lines + [""]


def _fmt3(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _rows_by_path(outputs: dict, head: str) -> dict[str, int]:
    index = outputs[f"{head}_index"].astype(int)
    position = {int(i): row for row, i in enumerate(outputs["index"].astype(int))}
    return {str(outputs["paths"][position[i]]): row for row, i in enumerate(index)}


def compare_head(out: HeadOutputs, resamples: int, seed: int = 0) -> dict:
    """Metrics with intervals and differences from the first model; per-label AP of every model."""
    metrics = {}
    for metric, fn in head_metrics(out.head, len(out.label_names)).items():
        b = paired_bootstrap(fn, out.scores, out.targets, resamples, seed)
        metrics[metric] = {
            "value": b.observed.tolist(),
            "interval": [b.interval(m) for m in range(len(out.scores))],
            "difference": [None] + [b.difference(m, 0) for m in range(1, len(out.scores))],
        }
    truth = out.multi_hot()
    ap = [average_precision(s, truth) for s in out.scores]
    return {
        "num_photos": len(out.paths),
        "metrics": metrics,
        "per_label": {"support": truth.sum(0).tolist(), "AP": [a.tolist() for a in ap]},
    }


def compare(
    paths: list[str | Path],
    data: str | Path,
    out_dir: str | Path,
    split: str = "val",
    batch_size: int = 32,
    data_format: str | None = None,
    resamples: int = 1000,
    cases: int = 12,
    trainer_kwargs: dict | None = None,
) -> dict:
    """Evaluate each model and write the comparison to ``out_dir``; returns the ``compare.json`` content."""
    from fashionlens.evaluate.evaluate import evaluate_model, model_name

    if len(paths) < 2:
        raise ConfigError("compare needs at least two models")
    out = check_output_dir(out_dir, "--out")  # before evaluating the models, not after
    results, names = [], []
    for path in paths:
        _, ctx = evaluate_model(
            path,
            data,
            split,
            batch_size,
            {"enable_progress_bar": False, **(trainer_kwargs or {})},
            data_format=data_format,
        )
        results.append(ctx)
        names.append(_unique(model_name(path, ctx["info"]), names))
    heads, notes = gather_outputs(results, names)
    parsing = compare_parsing(results, names, resamples)
    summary = {
        "split": split,
        "data": str(data),
        "models": dict(zip(names, map(str, paths), strict=True)),
        "resamples": resamples,
        "notes": notes,
        "heads": {},
    }
    for h in heads:
        summary["heads"][h.head] = compare_head(h, resamples)
        _write_per_label_csv(
            out / f"{h.head}_per_label_ap.csv", h, names, summary["heads"][h.head]["per_label"]
        )
        plot_ap_deltas(
            h.label_names,
            summary["heads"][h.head]["per_label"],
            names,
            out / f"{h.head}_ap_delta.png",
            f"{h.head}: per-label AP, each model minus {names[0]} ({split} split)",
        )
        chosen = disagreement_order(h)[:cases]
        plot_cases(h, names, chosen, out / f"{h.head}_cases.png")
        summary["heads"][h.head]["cases"] = [h.paths[i] for i in chosen]
    if parsing is not None:
        summary["parsing"] = parsing
    atomic_write_bytes(out / "compare.json", json.dumps(summary, indent=1, default=_json_float).encode())
    atomic_write_bytes(out / "report.md", markdown(summary, heads, names).encode())
    return summary


def _unique(name: str, taken: list[str]) -> str:
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def _json_float(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)


def _write_per_label_csv(path: Path, h: HeadOutputs, names: list[str], per_label: dict) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["label", "support"] + [f"AP {n}" for n in names] + [f"delta {n}" for n in names[1:]])
    ap = per_label["AP"]
    for c, label in enumerate(h.label_names):
        row = (
            [label, per_label["support"][c]]
            + [_fmt(a[c]) for a in ap]
            + [_fmt(a[c] - ap[0][c]) for a in ap[1:]]
        )
        w.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode())


def _fmt(x: float) -> str:
    return "" if x is None or np.isnan(x) else f"{x:.4f}"


def markdown(summary: dict, heads: list[HeadOutputs], names: list[str]) -> str:
    """The report: per head a metrics table (value [95 % interval]; difference from the first model)."""
    lines = [
        f"# fashionlens compare: {' vs '.join(names)}",
        "",
        f"{summary['split']} split of `{summary['data']}`. Intervals: 95 % percentile intervals of a paired "
        f"bootstrap over the photos ({summary['resamples']} rounds; every model scored on the same resampled "
        f"photos). Δ: the model minus {names[0]}; p: the share of rounds in which it was not better.",
        "",
    ]
    lines += [f"- {n}: `{p}`" for n, p in summary["models"].items()] + [""]
    lines += [f"Note: {n}" for n in summary["notes"]]
    if "parsing" in summary:
        lines += _parsing_markdown(summary["parsing"])
    for h in heads:
        s = summary["heads"][h.head]
        lines += [
            f"## {h.head} ({len(h.label_names)} {'classes' if h.head == 'category' else 'labels'}, "
            f"{s['num_photos']} photos)",
            "",
        ]
        header = ["metric"] + names + [f"Δ {n} [95 % CI] (p)" for n in names[1:]]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for metric, m in s["metrics"].items():
            cells = [
                f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, (lo, hi) in zip(m["value"], m["interval"], strict=True)
            ]
            cells += [
                f"{d['delta']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] ({d['p_not_better']:.3f})"
                for d in m["difference"][1:]
            ]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines += [
            "",
            _ap_sentence(h, s["per_label"], names),
            "",
            f"![per-label AP differences]({h.head}_ap_delta.png)",
            "",
            f"The {len(s['cases'])} photos on which the models disagree most (each model's top labels, ✓ = "
            "true; then the truth):",
            "",
            f"![cases]({h.head}_cases.png)",
            "",
        ]
    return "\n".join(lines)


def _ap_sentence(h: HeadOutputs, per_label: dict, names: list[str]) -> str:
    ap = [np.asarray(a, dtype=float) for a in per_label["AP"]]
    parts = []
    for m in range(1, len(names)):
        d = ap[m] - ap[0]
        ok = ~np.isnan(d)
        order = np.argsort(d[ok])
        labels = np.asarray(h.label_names)[ok]
        best = ", ".join(f"{labels[i]} {d[ok][i]:+.2f}" for i in order[::-1][:3])
        worst = ", ".join(f"{labels[i]} {d[ok][i]:+.2f}" for i in order[:3])
        parts.append(
            f"{names[m]} vs {names[0]}: AP higher on {int((d[ok] > 0).sum())} of {int(ok.sum())} "
            f"{'classes' if h.head == 'category' else 'labels'} (most: {best}; least: {worst})."
        )
    return " ".join(parts)
