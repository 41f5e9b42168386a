"""Garments everywhere a user looks: the Prediction, JSON, CSV, Parquet and the terminal table, and the
``predict`` command with and without ``--no-garments``; every mask decoded by pycocotools (the reference).

Most tests use ``serve_fixtures.garment_predictor``, whose parser finds exactly a top (``UPPER_BOX``) and
a pair of shoes (``SHOES_BOX``) in the garment photo; the last ones a saved model with a real parsing head
(``make_parsing_model``: red pixels are "upper") through the command line.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from typer.testing import CliRunner

from fashionlens.cli import app
from fashionlens.garments.instances import box_iou
from fashionlens.garments.rle import decode_rle
from fashionlens.inference import predictor as predictor_module
from fashionlens.inference.output import arrow_schema, format_predictions, prediction_row, predictions_table
from fashionlens.inference.predictor import GarmentPrediction, Prediction, load_model
from serve_fixtures import (
    GARMENT_PHOTO_SIZE,
    RED_BOX,
    SHOES_BOX,
    UPPER_BOX,
    expected_mask,
    garment_photo_png,
    garment_predictor,
    make_parsing_model,
    make_tiny_model,
    red_garment_photo,
)

runner = CliRunner()


def coco_decode(rle: dict) -> np.ndarray:
    """The mask of a COCO compressed RLE, decoded by pycocotools."""
    return coco_mask.decode({"size": list(rle["size"]), "counts": rle["counts"].encode()}).astype(bool)


@pytest.fixture(scope="module")
def prediction() -> Prediction:
    return garment_predictor().predict([garment_photo_png()], names=["outfit.png"], top_k=3)[0]


def test_the_prediction_has_each_garment_with_its_box_mask_category_colours_and_landmarks(prediction):
    assert prediction.error is None and prediction.image_size == GARMENT_PHOTO_SIZE
    upper, shoes = prediction.garments  # largest first
    assert (upper.label, upper.box, shoes.label, shoes.box) == ("upper", UPPER_BOX, "shoes", SHOES_BOX)
    for garment, box in ((upper, UPPER_BOX), (shoes, SHOES_BOX)):
        assert garment.mask["size"] == [96, 64]
        np.testing.assert_array_equal(coco_decode(garment.mask), expected_mask(box))
        np.testing.assert_array_equal(decode_rle(garment.mask), expected_mask(box))
        assert 0.9 < garment.score <= 1.0
    # the category among the group's classes only: t-shirt and shirt renormalised (logits 2 and 1)
    assert [c.label for c in upper.category] == ["t-shirt", "shirt"]
    assert upper.category[0].score == pytest.approx(np.exp(2) / (np.exp(2) + np.exp(1)), abs=1e-5)
    assert [(c.label, c.score) for c in shoes.category] == [("shoes", 1.0)]
    assert [(c.label, c.score) for c in upper.colours] == [("blue", 1.0)]  # its own pixels
    assert [(c.label, c.score) for c in shoes.colours] == [("black", 1.0)]
    assert len(upper.landmarks) == 8 and shoes.landmarks is None  # no landmarks on shoes
    assert prediction.category[0].label == "dress"  # the whole photo's answers stay as they are
    assert len(prediction.landmarks) == 8


def test_garments_false_skips_them(prediction):
    pred = garment_predictor().predict([garment_photo_png()], top_k=3, garments=False)[0]
    assert pred.garments is None and "garments" not in pred.to_dict()
    assert [c.label for c in pred.category] == [c.label for c in prediction.category]


def test_json_carries_every_garment_and_its_mask(prediction):
    record = json.loads(format_predictions([prediction], "json"))[0]
    assert [g["label"] for g in record["garments"]] == ["upper", "shoes"]
    upper, shoes = record["garments"]
    assert upper["box"] == list(UPPER_BOX) and shoes["box"] == list(SHOES_BOX)
    np.testing.assert_array_equal(coco_decode(upper["mask"]), expected_mask(UPPER_BOX))
    np.testing.assert_array_equal(coco_decode(shoes["mask"]), expected_mask(SHOES_BOX))
    assert upper["category"][0] == {"label": "t-shirt", "score": pytest.approx(0.731059, abs=1e-5)}
    assert upper["colours"] == [{"label": "blue", "score": 1.0}]
    assert len(upper["landmarks"]) == 8 and {"name", "x", "y", "score"} <= set(upper["landmarks"][0])
    assert "landmarks" not in shoes and "attributes" not in shoes  # the model has no attributes head


def test_table_has_one_line_per_garment(prediction):
    lines = format_predictions([prediction], "table").splitlines()
    assert lines[0] == "outfit.png"
    garments = [line for line in lines if line.startswith("  garment:")]
    assert garments == [
        "  garment:    upper 0.99 [16,12,48,48] t-shirt 0.73 · blue 1.00 · 8 landmarks",
        "  garment:    shoes 0.98 [8,72,24,96] shoes 1.00 · black 1.00",
    ]
    empty = Prediction("plain.png", image_size=(10, 10), garments=[])
    assert format_predictions([empty], "table").splitlines() == ["plain.png", "  garments:   none found"]


def test_table_counts_hidden_landmarks():
    from fashionlens.inference.predictor import Landmark

    g = GarmentPrediction("pants", 0.5, (0, 0, 4, 4), {"size": [4, 4], "counts": "0@"},
                          colours=[], landmarks=[Landmark("left_hem", 1, 2, 0.9, True),
                                                 Landmark("right_hem", 3, 2, 0.1, False)])  # fmt: skip
    line = format_predictions([Prediction("a.jpg", garments=[g])], "table").splitlines()[1]
    assert line == "  garment:    pants 0.50 [0,0,4,4] · 2 landmarks (1 not visible)"


def test_csv_has_a_garments_column_of_labels_scores_and_boxes(prediction, tmp_path):
    header, row = csv.reader(io.StringIO(format_predictions([prediction], "csv")))
    assert header[-1] == "garments" and len(row) == len(header)
    assert row[-1] == "upper:0.9894@16,12,48,48|shoes:0.9842@8,72,24,96"
    assert [g.score for g in prediction.garments] == pytest.approx([0.989388, 0.984202], abs=1e-6)
    # a model without a parsing head: the columns it always had
    plain = load_model(make_tiny_model(tmp_path / "tiny.safetensors"), backend="torch")
    header, _ = csv.reader(io.StringIO(format_predictions(plain.predict([garment_photo_png()]), "csv")))
    assert header == ["path", "category", "category_score", "tags", "main_style", "styles", "attributes",
                      "colours"]  # fmt: skip


def test_parquet_has_a_garments_column_with_the_masks(prediction, tmp_path):
    skipped = garment_predictor().predict([garment_photo_png()], names=["off.png"], garments=False)[0]
    bad = Prediction("bad.jpg", error="not an image")
    pq.write_table(predictions_table([prediction, skipped, bad]), tmp_path / "p.parquet")
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.schema.equals(arrow_schema())
    garment_type = table.schema.field("garments").type.value_type
    assert [garment_type.field(i).name for i in range(garment_type.num_fields)] == [
        "label", "score", "box", "mask_size", "mask_counts", "category", "colours", "attributes", "landmarks"
    ]  # fmt: skip
    rows = table.to_pylist()
    upper, shoes = rows[0]["garments"]
    assert (upper["label"], upper["box"], shoes["label"], shoes["box"]) == (
        "upper", list(UPPER_BOX), "shoes", list(SHOES_BOX)
    )  # fmt: skip
    for garment, box in ((upper, UPPER_BOX), (shoes, SHOES_BOX)):
        assert garment["mask_size"] == [96, 64]
        rle = {"size": garment["mask_size"], "counts": garment["mask_counts"]}
        np.testing.assert_array_equal(coco_decode(rle), expected_mask(box))
    assert [c["label"] for c in upper["category"]] == ["t-shirt", "shirt"]
    assert upper["colours"] == [{"label": "blue", "score": 1.0}] and upper["attributes"] is None
    assert len(upper["landmarks"]) == 8 and shoes["landmarks"] is None
    assert upper["score"] == pytest.approx(prediction.garments[0].score)
    assert rows[1]["garments"] is None and rows[2]["garments"] is None  # skipped; unreadable
    assert prediction_row(Prediction("x.jpg", image_size=(3, 3)))["garments"] is None  # no parsing head
    assert pa.types.is_list(table.schema.field("garments").type)


@pytest.fixture
def fake_model(monkeypatch):
    """``predict --model anything`` loads the garment predictor."""
    monkeypatch.setattr(predictor_module, "load_model", lambda *args, **kwargs: garment_predictor())


def test_predict_command_writes_garments_in_each_format(fake_model, tmp_path):
    photo = tmp_path / "outfit.png"
    photo.write_bytes(garment_photo_png())
    out = tmp_path / "p.json"
    result = runner.invoke(app, ["predict", str(photo), "--format", "json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())[0]
    assert [(g["label"], g["box"]) for g in record["garments"]] == [
        ("upper", list(UPPER_BOX)), ("shoes", list(SHOES_BOX))
    ]  # fmt: skip
    np.testing.assert_array_equal(coco_decode(record["garments"][0]["mask"]), expected_mask(UPPER_BOX))
    result = runner.invoke(app, ["predict", str(photo), "--format", "csv", "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert row["garments"] == "upper:0.9894@16,12,48,48|shoes:0.9842@8,72,24,96"
    parquet = tmp_path / "p.parquet"
    result = runner.invoke(app, ["predict", str(photo), "--format", "parquet", "--out", str(parquet)])
    assert result.exit_code == 0, result.output
    garments = pq.read_table(parquet).to_pylist()[0]["garments"]
    assert [(g["label"], g["box"]) for g in garments] == [
        ("upper", list(UPPER_BOX)), ("shoes", list(SHOES_BOX))
    ]  # fmt: skip
    result = runner.invoke(app, ["predict", str(photo)])
    assert result.exit_code == 0, result.output
    assert "  garment:    upper 0.99 [16,12,48,48] t-shirt 0.73 · blue 1.00 · 8 landmarks" in result.output


def test_no_garments_flag(fake_model, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(garment_photo_png())
    out = tmp_path / "p.json"
    result = runner.invoke(
        app, ["predict", str(photo), "--no-garments", "--format", "json", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())[0]
    assert "garments" not in record and record["category"][0]["label"] == "dress"
    result = runner.invoke(app, ["predict", str(photo), "--no-garments", "--format", "csv"])
    assert result.exit_code == 0 and ",garments" not in result.output
    result = runner.invoke(app, ["predict", str(photo), "--no-garments"])
    assert result.exit_code == 0 and "category:   dress" in result.output
    assert "garment:" not in result.output and "garments:" not in result.output
    assert "--no-garments" in runner.invoke(app, ["predict", "--help"]).output


def test_a_saved_model_with_a_parsing_head_end_to_end(tmp_path):
    """A real FashionNet parsing head (red pixels are "upper"), through the command line on a JPEG and a
    PNG: the garment is found where the red block is."""
    model = make_parsing_model(tmp_path / "parsing.safetensors")
    photos = []
    for name, size in (("small.png", (64, 96)), ("large.jpg", (320, 480))):
        Image.fromarray(red_garment_photo(size)).save(tmp_path / name, quality=95)
        photos.append(tmp_path / name)
    out = tmp_path / "p.json"
    result = runner.invoke(app, ["predict", *map(str, photos), "--model", str(model), "--backend", "torch",
                                 "--format", "json", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    for record, size in zip(json.loads(out.read_text()), ((64, 96), (320, 480)), strict=True):
        (garment,) = record["garments"]
        scale = size[0] / 64
        red = tuple(round(v * scale) for v in RED_BOX)
        assert garment["label"] == "upper" and box_iou(tuple(garment["box"]), red) > 0.7, garment["box"]
        mask = coco_decode(garment["mask"])
        assert mask.shape == (size[1], size[0])
        inside = np.zeros_like(mask)
        inside[red[1] : red[3], red[0] : red[2]] = True
        assert (mask & inside).sum() / inside.sum() == 1.0  # every red pixel
        assert (mask & inside).sum() / mask.sum() > 0.75  # a thin rim around it (the network's stride)
        assert garment["colours"][0]["label"] == "red" and [c["label"] for c in garment["category"]] == [
            "t-shirt"
        ]  # fmt: skip
        assert len(garment["landmarks"]) == 8
    result = runner.invoke(app, ["predict", str(photos[0]), "--model", str(model), "--backend", "torch",
                                 "--format", "json", "--no-garments"])  # fmt: skip
    assert result.exit_code == 0 and '"garments"' not in result.output


def test_no_garments_reaches_the_ray_engine(monkeypatch, tmp_path):
    """``--engine ray``: the flag becomes ``RayOptions.garments`` (the engine itself: test_ray_engine.py)."""
    import fashionlens.cli as cli_module

    photo = tmp_path / "outfit.png"
    photo.write_bytes(garment_photo_png())
    seen = []
    monkeypatch.setattr(cli_module, "_predict_ray", lambda files, opts: seen.append(opts.garments))
    for extra, want in (([], True), (["--no-garments"], False)):
        args = ["predict", str(photo), "--engine", "ray", "--out", str(tmp_path / "out"), *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert seen.pop() is want
