"""Markdown tables laid out like the seeds' result tables, and the PNG plots of an evaluation.

The numbers come from :mod:`fashionlens.metrics.reports` (metric dicts); this module only lays them out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fashionlens.data.deepfashion import ATTRIBUTE_TYPES

# Seed A, table 1-2 (DeepFashion, top-3 / top-5, percent): published, for reference only.
PUBLISHED_SEED_A = {
    "[1] FashionNet (CVPR'16)": (
        "82.58/90.17",
        "45.52/54.61",
        "37.46/49.52",
        "39.30/49.84",
        "39.41/48.59",
        "44.13/54.02",
        "66.43/73.16",
    ),
    "[2] Wang et al. (CVPR'18)": (
        "90.99/95.78",
        "51.53/60.95",
        "50.31/65.48",
        "40.31/48.23",
        "53.32/61.05",
        "40.65/56.32",
        "68.70/74.25",
    ),
    "[3] GLE (ICCVW'19)": (
        "91.37/95.26",
        "47.70/57.28",
        "56.95/66.24",
        "44.03/54.21",
        "56.87/66.25",
        "44.89/55.15",
        "33.98/42.21",
    ),
    "[4] Liu & Lu (ECCVW'18)": (
        "91.16/96.12",
        "54.69/63.74",
        "56.17/65.83",
        "43.20/53.52",
        "58.28/67.80",
        "46.97/57.42",
        "68.82/74.13",
    ),
    "Seed A (Ours)": (
        "90.46/95.27",
        "27.30/35.61",
        "57.07/66.47",
        "44.52/55.17",
        "59.52/68.62",
        "47.93/58.28",
        "33.67/42.57",
    ),
}
PUBLISHED_SEED_B = {  # top-5 labels / top-7 labels
    "Basic CNN": ("63.85 / 56.87", "61.08 / 54.39", "79.98 / 72.48", "78.10 / 71.89", "89.49 / 81.67"),
    "ResNet-50": ("80.58 / 74.19", "79.10 / 72.64", "91.43 / 86.68", "90.82 / 85.81", "95.66 / 92.66"),
    "ML-GCN": ("82.75 / 77.83", "83.61 / 75.50", "92.73 / 89.22", "92.34 / 88.15", "96.62 / 94.84"),
}
ATTRIBUTE_COLUMNS = ("all", *ATTRIBUTE_TYPES.values())


def pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def multilabel_tables(runs: dict[str, dict], what: str = "Multi-label recognition") -> list[str]:
    """Seed B tables 3-5: top-k any/all recall per model, ML-GCN metrics, per-label top-2 all recall."""
    out = [f"## {what} (seed B protocol, percent)", ""]
    header = [
        "Model",
        "Top-1 any",
        "Top-2 all",
        "Top-2 any",
        "Top-3 all",
        "Top-3 any",
        "mAP",
        "CF1",
        "OF1",
        "CF1 (top-3)",
        "OF1 (top-3)",
    ]
    rows = []
    for name, r in runs.items():
        t = r["topk"]
        rows.append(
            [name]
            + [pct(t.get(k)) for k in ("top1_any", "top2_all", "top2_any", "top3_all", "top3_any")]
            + [
                pct(r["mAP"]),
                pct(r["prf"]["CF1"]),
                pct(r["prf"]["OF1"]),
                pct(r["prf_top3"]["CF1"]),
                pct(r["prf_top3"]["OF1"]),
            ]
        )
    out += _table(header, rows)
    out += [
        "",
        "Published (seed B, its own 23-style SNS data set, top-5 / top-7 label subsets; not comparable "
        "data):",
        "",
    ]
    out += _table(header[:6], [[f"{k} (published)"] + list(v) for k, v in PUBLISHED_SEED_B.items()])
    out += ["", "### Per-label top-2 all-recall (support)", ""]
    names = list(next(iter(runs.values()))["per_label_top2_all"])
    rows = []
    for label in names:
        cells = []
        for r in runs.values():
            v = r["per_label_top2_all"].get(label)
            cells.append("n/a" if not v or not v["support"] else f"{pct(v['recall'])} ({v['support']})")
        rows.append([label] + cells)
    out += _table(["Label"] + list(runs), rows)
    return out


def classification_table(runs: dict[str, dict]) -> list[str]:
    out = ["## Category (single-label, percent)", ""]
    ks = [k for k in ("top1", "top3", "top5") if k in next(iter(runs.values()))]
    return out + _table(["Model"] + ks, [[n] + [pct(r[k]) for k in ks] for n, r in runs.items()])


def deepfashion_tables(runs: dict[str, dict], category: dict[str, dict]) -> list[str]:
    """Seed A tables 1-2: category and attribute top-3/top-5 per type, then landmark NE."""
    out = ["## DeepFashion category and attributes (top-3/top-5, percent)", ""]
    header = ["Method", "Category"] + [
        f"Attr. {t}" if t == "all" else t.capitalize() for t in ATTRIBUTE_COLUMNS
    ]
    rows = []
    for name, r in runs.items():
        cat = category.get(name, {})
        cells = [f"{pct(cat.get('top3'))}/{pct(cat.get('top5'))}" if cat else "n/a"]
        attrs = r.get("attributes", {})
        for t in ATTRIBUTE_COLUMNS:
            v = attrs.get(t)
            cells.append(f"{pct(v['top3'])}/{pct(v['top5'])}" if v else "n/a")
        rows.append([name] + cells)
    rows += [[f"{k} (published)"] + list(v) for k, v in PUBLISHED_SEED_A.items()]
    out += _table(header, rows)
    types = [
        t
        for t in ATTRIBUTE_COLUMNS
        if any("mAP" in (r.get("attributes", {}).get(t) or {}) for r in runs.values())
    ]
    if types:
        out += ["", "## Attribute mAP per type (percent; unknown entries left out)", ""]
        out += _table(
            ["Method"] + types,
            [
                [n] + [pct((r.get("attributes", {}).get(t) or {}).get("mAP")) for t in types]
                for n, r in runs.items()
            ],
        )
    lm = {n: r["landmarks"] for n, r in runs.items() if "landmarks" in r}
    if lm:
        out += ["", "## Landmarks (normalised error, lower is better)", ""]
        slots = ["L collar", "R collar", "L sleeve", "R sleeve", "L waist", "R waist", "L hem", "R hem"]
        rows = [
            [n, f"{v['NE']:.4f}", _ne(v.get("NE_mean_baseline")), pct(v.get("detection_rate"))]
            + [_ne(x) for x in v["NE_per_landmark"]]
            for n, v in lm.items()
        ]
        out += _table(["Model", "NE", "NE of mean landmark", "Det. rate"] + slots, rows)
        out += ["", "Published NE: FashionNet 0.0872, Wang et al. 0.0484, Liu & Lu 0.0474, GLE 0.0393."]
    return out


def _ne(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.4f}"


def markdown_report(reports: dict[str, dict], title: str) -> str:
    """One Markdown document for the evaluated models (one row each)."""
    lines = [f"# {title}", ""]
    first = next(iter(reports.values()))
    lines += [f"Images evaluated: {first.get('num_images')}", ""]
    if "labels" in first:
        lines += multilabel_tables({n: r["labels"] for n, r in reports.items()}) + [""]
    if "styles" in first:
        lines += multilabel_tables({n: r["styles"] for n, r in reports.items()}, "Styles") + [""]
    if "category" in first and "deepfashion" not in first:
        lines += classification_table({n: r["category"] for n, r in reports.items()}) + [""]
    if "deepfashion" in first:
        lines += deepfashion_tables(
            {n: r["deepfashion"] for n, r in reports.items()},
            {n: r.get("category", {}) for n, r in reports.items()},
        ) + [""]
    if "parsing" in first:
        lines += parsing_tables({n: r["parsing"] for n, r in reports.items()}) + [""]
    return "\n".join(lines)


def parsing_tables(reports: dict[str, dict]) -> list[str]:
    """The garment parser: pixel accuracy, mean IoU and garments found / real; then IoU per group."""

    def pct(v) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    lines = ["## Garment parsing", "",
             "| model | photos | pixel acc | mIoU | garments found (recall) | returned real (precision) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in reports.items():
        g = r.get("garments", {})
        lines.append(f"| {name} | {r['num_images']} | {pct(r['pixel_accuracy'])} | {pct(r['mIoU'])} | "
                     f"{pct(g.get('recall'))} | {pct(g.get('precision'))} |")  # fmt: skip
    groups = list(next(iter(reports.values()))["iou"])
    lines += ["", "IoU per group (%):", "", "| model | " + " | ".join(groups) + " |",
              "|---|" + "---|" * len(groups)]  # fmt: skip
    for name, r in reports.items():
        lines.append(f"| {name} | " + " | ".join(pct(r["iou"][k]) for k in groups) + " |")
    return lines


def plot_correlation(conditional: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """Seed B Fig. 6: the label correlation matrix P(j | i) as a heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    size = max(5.0, min(0.22 * n + 3, 24))
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(conditional, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("label j")
    ax.set_ylabel("label i")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="P(j | i)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_label_recall(per_label: dict[str, dict], path: Path, title: str) -> None:
    """Bars of per-label top-2 all-recall, with the support written beside each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(k, v) for k, v in per_label.items() if v and v["support"]]
    items.sort(key=lambda kv: -kv[1]["support"])
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.25 * len(items) + 1)))
    ys = np.arange(len(items))
    ax.barh(ys, [100 * v["recall"] for _, v in items], color="#4477aa")
    ax.set_yticks(ys, [f"{k} ({v['support']})" for k, v in items], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("top-2 all-recall (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_landmarks(dataset, outputs: dict, data_config, path: Path, title: str, n: int = 8) -> None:
    """Predicted (red x) vs true (green o, visible only) landmarks on the first ``n`` evaluated inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = outputs["landmarks_index"].astype(int)[:n]
    mean, std = np.asarray(data_config.mean), np.asarray(data_config.std)
    fig, axes = plt.subplots(1, len(idx), figsize=(2.2 * len(idx), 2.6), squeeze=False)
    for ax, row, i in zip(axes[0], range(len(idx)), idx, strict=True):
        img = dataset[int(i)]["image"].numpy().transpose(1, 2, 0) * std + mean  # (H, W, 3) in [0, 1]
        h, w = img.shape[:2]
        ax.imshow(np.clip(img, 0, 1))
        true, pred = outputs["landmarks_target"][row], outputs["landmarks_pred"][row]
        vis = outputs["landmarks_visible"][row] > 0
        ax.scatter(
            true[vis, 0] * w, true[vis, 1] * h, s=28, facecolors="none", edgecolors="lime", linewidths=1.5
        )
        ax.scatter(pred[vis, 0] * w, pred[vis, 1] * h, s=28, marker="x", c="red", linewidths=1.5)
        ax.axis("off")
    fig.suptitle(f"{title}: predicted (x) vs true (o) landmarks", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
