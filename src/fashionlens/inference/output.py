"""Render predictions as a terminal table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

from fashionlens.inference.predictor import Prediction


def _labels(items) -> str:
    return ", ".join(f"{s.label} {s.score:.2f}" for s in items or [])


def _cell(items) -> str:
    """A CSV cell: ``label:score|label:score``."""
    return "|".join(f"{s.label}:{s.score:.4f}" for s in items or [])


def format_predictions(preds: list[Prediction], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([p.to_dict() for p in preds], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(
            ["path", "category", "category_score", "tags", "main_style", "styles", "attributes", "colours"]
        )
        for p in preds:
            top = p.category[0] if p.category else None
            w.writerow(
                [
                    p.source,
                    top.label if top else "",
                    f"{top.score:.4f}" if top else "",
                    _cell(p.tags),
                    p.main_style or "",
                    _cell(p.styles),
                    _cell(p.attributes),
                    _cell(p.colours),
                ]
            )
        return buf.getvalue()
    lines = []
    for p in preds:
        lines.append(p.source)
        if p.category is not None:
            lines.append(f"  category:   {_labels(p.category)}")
        if p.tags is not None:
            below = any(t.score < p.tag_threshold for t in p.tags)  # the model's min_tags best guesses
            lines.append(
                f"  tags (>= {p.tag_threshold:.2f}{', else the best' if below else ''}): "
                f"{_labels(p.tags) or '-'}"
            )
        if p.styles is not None:
            lines.append(f"  styles (main, then >= {p.style_threshold:.2f}): {_labels(p.styles) or '-'}")
        if p.attributes is not None:
            lines.append(f"  attributes: {_labels(p.attributes) or '-'}")
        if p.colours is not None:
            lines.append(f"  colours:    {_labels(p.colours) or '-'}")
        if p.landmarks is not None:
            shown = [lm for lm in p.landmarks if lm.visible is not False]
            hidden = len(p.landmarks) - len(shown)
            lines.append(
                "  landmarks:  "
                + ", ".join(f"{lm.name}=({lm.x:.0f},{lm.y:.0f})" for lm in shown)
                + (f" ({hidden} not visible)" if hidden else "")
            )
    return "\n".join(lines)


def _scored(items) -> list[dict] | None:
    return None if items is None else [{"label": s.label, "score": s.score} for s in items]


def prediction_row(pred: Prediction) -> dict:
    """One Parquet row (see :func:`arrow_schema`); heads the model does not have are null."""
    size = pred.image_size or (None, None)
    return {
        "path": pred.source,
        "category": pred.category[0].label if pred.category else None,
        "scores": _scored(pred.category),
        "tags": _scored(pred.tags),
        "main_style": pred.main_style,
        "styles": _scored(pred.styles),
        "attributes": _scored(pred.attributes),
        "colours": _scored(pred.colours),
        "landmarks": None
        if pred.landmarks is None
        else [
            {"name": lm.name, "x": lm.x, "y": lm.y, "score": lm.score, "visible": lm.visible}
            for lm in pred.landmarks
        ],
        "width": size[0],
        "height": size[1],
        "error": pred.error,
    }


def arrow_schema():
    """Columns of the Ray engine's Parquet shards, one row per photo.

    ``category`` is the top-1 label and ``scores`` the top-k categories with their probabilities;
    ``tags`` the tags at or above the tag threshold (within the top k); ``main_style`` the most likely
    style and ``styles`` it and the sub styles at or above the style threshold (within the top k);
    ``attributes`` the garment attributes; ``colours`` the colour
    attributes at >= 0.5 (models with colour attributes); ``landmarks`` in pixels of the upright photo
    of ``width`` x ``height``, with a visibility score (and flag, for models with a visibility head);
    ``error`` is set (and the rest null) for a photo that could not be read.
    """
    import pyarrow as pa

    scored = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
    landmark = pa.struct(
        [
            ("name", pa.string()),
            ("x", pa.float64()),
            ("y", pa.float64()),
            ("score", pa.float64()),
            ("visible", pa.bool_()),
        ]
    )
    return pa.schema(
        [
            ("path", pa.string()),
            ("category", pa.string()),
            ("scores", scored),
            ("tags", scored),
            ("main_style", pa.string()),
            ("styles", scored),
            ("attributes", scored),
            ("colours", scored),
            ("landmarks", pa.list_(landmark)),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("error", pa.string()),
        ]
    )


def predictions_table(preds: list[Prediction]):
    """The predictions as a ``pyarrow.Table`` with :func:`arrow_schema`."""
    import pyarrow as pa

    return pa.Table.from_pylist([prediction_row(p) for p in preds], schema=arrow_schema())
