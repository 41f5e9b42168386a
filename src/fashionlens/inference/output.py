"""Render predictions as a terminal table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

from fashionlens.inference.predictor import Prediction


def _labels(items) -> str:
    return ", ".join(f"{s.label} {s.score:.2f}" for s in items or [])


def format_predictions(preds: list[Prediction], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([p.to_dict() for p in preds], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "category", "category_score", "tags", "attributes"])
        for p in preds:
            top = p.category[0] if p.category else None
            w.writerow([p.source, top.label if top else "", f"{top.score:.4f}" if top else "",
                        "|".join(f"{s.label}:{s.score:.4f}" for s in p.tags or []),
                        "|".join(f"{s.label}:{s.score:.4f}" for s in p.attributes or [])])
        return buf.getvalue()
    lines = []
    for p in preds:
        lines.append(p.source)
        if p.category is not None:
            lines.append(f"  category:   {_labels(p.category)}")
        if p.tags is not None:
            lines.append(f"  tags (>= {p.tag_threshold:.2f}): {_labels(p.tags) or '-'}")
        if p.attributes is not None:
            lines.append(f"  attributes: {_labels(p.attributes)}")
        if p.landmarks is not None:
            lines.append("  landmarks:  " + ", ".join(f"{lm.name}=({lm.x:.0f},{lm.y:.0f})" for lm in p.landmarks))
    return "\n".join(lines)
