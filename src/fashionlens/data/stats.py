"""Summary statistics of a data set, as a dict and as a plain-text table."""

from __future__ import annotations

from collections import Counter

import numpy as np

from fashionlens.data.image_folder import ClassificationSet
from fashionlens.data.multilabel import LabelledSet

RARE_THRESHOLD = 5


def _sorted_counts(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _top_pairs(targets: np.ndarray, names: list[str], top: int) -> list[dict]:
    """Most frequent label pairs with both conditional probabilities."""
    co = targets.T @ targets  # (C, C): co[i, j] = images with both i and j; diagonal = counts
    counts = np.diag(co)
    i, j = np.triu_indices(len(names), k=1)
    order = sorted(
        (k for k in range(len(i)) if co[i[k], j[k]] > 0), key=lambda k: (-co[i[k], j[k]], i[k], j[k])
    )
    pairs = []
    for k in order[:top]:
        a, b, n = int(i[k]), int(j[k]), int(co[i[k], j[k]])
        pairs.append(
            {
                "a": names[a],
                "b": names[b],
                "count": n,
                "p_b_given_a": n / float(counts[a]),
                "p_a_given_b": n / float(counts[b]),
            }
        )
    return pairs


def _classification_stats(ds: ClassificationSet, rare_threshold: int) -> dict:
    counts = ds.class_counts()
    return {
        "kind": "classification",
        "num_images": len(ds),
        "num_classes": len(ds.class_names),
        "class_counts": _sorted_counts(counts),
        "rare_threshold": rare_threshold,
        "rare_labels": sorted(name for name, c in counts.items() if c < rare_threshold),
    }


def multilabel_stats(
    ds: LabelledSet | ClassificationSet, top_pairs: int = 10, rare_threshold: int = RARE_THRESHOLD
) -> dict:
    """Counts that describe a data set.

    Args:
        ds: a multi-label set, or a classification set (then only image and class counts).
        top_pairs: how many co-occurring label pairs to list.
        rare_threshold: labels with fewer images than this are listed as rare.

    Returns:
        For a :class:`LabelledSet`: ``num_images``, ``num_labels``, ``labels_per_image``
        (mean / min / max), ``label_counts`` and ``main_counts`` ((name, count) sorted by count
        desc then name; ``main_counts`` is None without main labels), ``top_pairs`` (dicts with
        ``a``, ``b``, ``count``, ``p_b_given_a`` = P(b | a), ``p_a_given_b``), ``rare_labels`` and
        ``num_rare_labels`` (labels with < ``rare_threshold`` images, unused ones included).
    """
    if isinstance(ds, ClassificationSet):
        return _classification_stats(ds, rare_threshold)
    targets = ds.targets().astype(np.float64)  # (N, C)
    per_image = targets.sum(axis=1) if len(ds) else np.zeros(1)
    counts = dict(zip(ds.label_names, targets.sum(axis=0).astype(int).tolist(), strict=True))
    mains = Counter(s.main for s in ds.samples if s.main)
    rare = sorted(name for name, c in counts.items() if c < rare_threshold)
    return {
        "kind": "multilabel",
        "num_images": len(ds),
        "num_labels": len(ds.label_names),
        "labels_per_image": {
            "mean": float(per_image.mean()),
            "min": int(per_image.min()),
            "max": int(per_image.max()),
        },
        "label_counts": _sorted_counts(counts),
        "main_counts": _sorted_counts(dict(mains)) if mains else None,
        "top_pairs": _top_pairs(targets, ds.label_names, top_pairs),
        "rare_threshold": rare_threshold,
        "rare_labels": rare,
        "num_rare_labels": len(rare),
    }


def _table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]

    def line(row: tuple[str, ...]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(
            v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths, strict=True))
        )

    return ["", title, line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _count_rows(counts: list[tuple[str, int]], total: int) -> list[tuple[str, ...]]:
    return [(name, str(c), f"{100.0 * c / max(total, 1):.1f}") for name, c in counts]


def format_stats(d: dict) -> str:
    """A readable plain-text report of :func:`multilabel_stats`'s dict."""
    n = d["num_images"]
    if d.get("kind") == "classification":
        out = [f"images: {n}   classes: {d['num_classes']}"]
        out += _table("images per class", _count_rows(d["class_counts"], n), ("class", "images", "%"))
    else:
        lpi = d["labels_per_image"]
        out = [
            f"images: {n}   labels: {d['num_labels']}   labels per image: mean {lpi['mean']:.2f}, "
            f"min {lpi['min']}, max {lpi['max']}"
        ]
        if d.get("main_counts"):  # main vs sub: how often each label is a photo's main label, and a sub label
            mains = dict(d["main_counts"])
            rows = [
                (*row, str(mains.get(name, 0)), str(c - mains.get(name, 0)))
                for row, (name, c) in zip(_count_rows(d["label_counts"], n), d["label_counts"], strict=True)
            ]
            out += _table(
                "images per label (as the main label / as a sub label)",
                rows,
                ("label", "images", "%", "main", "sub"),
            )
        else:
            out += _table("images per label", _count_rows(d["label_counts"], n), ("label", "images", "%"))
        if d["top_pairs"]:
            rows = [
                (
                    f"{p['a']} + {p['b']}",
                    str(p["count"]),
                    f"{p['p_b_given_a']:.2f}",
                    f"{p['p_a_given_b']:.2f}",
                )
                for p in d["top_pairs"]
            ]
            out += _table("most frequent label pairs", rows, ("pair a + b", "images", "P(b|a)", "P(a|b)"))
    rare = d["rare_labels"]
    out += [
        "",
        f"{len(rare)} label(s) with < {d['rare_threshold']} images"
        + (f": {', '.join(rare)}" if rare else ""),
    ]
    return "\n".join(out)
