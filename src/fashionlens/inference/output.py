"""Render predictions as a terminal table, JSON, CSV or Parquet rows.

Models with a parsing head also report each photo's garments (``Prediction.garments``): one table line
per garment, a ``garments`` CSV column (label, score and box; the masks only in JSON and Parquet) and a
``garments`` Parquet column (everything, the mask as its COCO RLE size and counts).
"""

from __future__ import annotations

import csv
import io
import json

from fashionlens.inference.predictor import GarmentPrediction, Prediction


def _labels(items) -> str:
    return ", ".join(f"{s.label} {s.score:.2f}" for s in items or [])


def _cell(items) -> str:
    """A CSV cell: ``label:score|label:score``."""
    return "|".join(f"{s.label}:{s.score:.4f}" for s in items or [])


def _box(box) -> str:
    return ",".join(str(int(v)) for v in box)


def _garments_cell(garments: list[GarmentPrediction] | None) -> str:
    """A CSV cell: ``label:score@x0,y0,x1,y1|...`` (the box in photo pixels, x1 and y1 exclusive)."""
    return "|".join(f"{g.label}:{g.score:.4f}@{_box(g.box)}" for g in garments or [])


def _garment_line(g: GarmentPrediction) -> str:
    """One table line: ``upper 0.93 [x0,y0,x1,y1] t-shirt 0.71 · blue 0.62, white 0.30 · 8 landmarks``."""
    parts = [f"{g.label} {g.score:.2f} [{_box(g.box)}]" + (
        f" {g.category[0].label} {g.category[0].score:.2f}" if g.category else "")]  # fmt: skip
    if g.colours:
        parts.append(_labels(g.colours))
    if g.landmarks is not None:
        hidden = sum(lm.visible is False for lm in g.landmarks)
        parts.append(f"{len(g.landmarks)} landmarks" + (f" ({hidden} not visible)" if hidden else ""))
    return " · ".join(parts)


def format_predictions(preds: list[Prediction], fmt: str) -> str:
    """The predictions as ``fmt``: "json" (the records of :meth:`Prediction.to_dict`), "csv" (one row per
    photo; a ``garments`` column when a prediction has garments) or anything else: a terminal table."""
    if fmt == "json":
        return json.dumps([p.to_dict() for p in preds], indent=2)
    if fmt == "csv":
        garments = any(p.garments is not None for p in preds)  # models with a parsing head
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(
            ["path", "category", "category_score", "tags", "main_style", "styles", "attributes", "colours"]
            + (["garments"] if garments else [])
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
                + ([_garments_cell(p.garments)] if garments else [])
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
        if p.garments is not None:
            if not p.garments:
                lines.append("  garments:   none found")
            lines.extend(f"  garment:    {_garment_line(g)}" for g in p.garments)
    return "\n".join(lines)


def _scored(items) -> list[dict] | None:
    return None if items is None else [{"label": s.label, "score": s.score} for s in items]


def _landmark_rows(landmarks) -> list[dict] | None:
    return None if landmarks is None else [
        {"name": lm.name, "x": lm.x, "y": lm.y, "score": lm.score, "visible": lm.visible} for lm in landmarks
    ]  # fmt: skip


def _garment_row(g: GarmentPrediction) -> dict:
    return {
        "label": g.label,
        "score": g.score,
        "box": [int(v) for v in g.box],
        "mask_size": [int(v) for v in g.mask["size"]],
        "mask_counts": g.mask["counts"],
        "category": _scored(g.category),
        "colours": _scored(g.colours),
        "attributes": _scored(g.attributes),
        "landmarks": _landmark_rows(g.landmarks),
    }


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
        "landmarks": _landmark_rows(pred.landmarks),
        "garments": None if pred.garments is None else [_garment_row(g) for g in pred.garments],
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
    ``garments`` (models with a parsing head, null otherwise or when garments were not asked for) each
    garment's group ``label``, ``score``, ``box`` [x0, y0, x1, y1] in photo pixels (x1, y1 exclusive), its
    mask as a COCO compressed RLE (``{"size": mask_size, "counts": mask_counts}``, e.g. for
    :func:`fashionlens.garments.rle.decode_rle` or ``pycocotools.mask.decode``), its ``category``,
    ``colours``, ``attributes`` and ``landmarks`` (null where its group has none);
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
    garment = pa.struct(
        [
            ("label", pa.string()),
            ("score", pa.float64()),
            ("box", pa.list_(pa.int32())),
            ("mask_size", pa.list_(pa.int32())),
            ("mask_counts", pa.string()),
            ("category", scored),
            ("colours", scored),
            ("attributes", scored),
            ("landmarks", pa.list_(landmark)),
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
            ("garments", pa.list_(garment)),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("error", pa.string()),
        ]
    )


def predictions_table(preds: list[Prediction]):
    """The predictions as a ``pyarrow.Table`` with :func:`arrow_schema`."""
    import pyarrow as pa

    return pa.Table.from_pylist([prediction_row(p) for p in preds], schema=arrow_schema())


def parquet_bytes(table) -> bytes:
    """A ``pyarrow.Table`` as the bytes of one Parquet file (zstd): ``predict --format parquet`` and the
    Ray engine's shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue().to_pybytes()
