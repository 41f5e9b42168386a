"""The Predictor on garments: a box to predict in, landmark visibility, calibrated category scores,
and the same through the web API."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from fashionlens.checkpoint import ModelInfo
from fashionlens.colours import COLOURS
from fashionlens.data.config import DataConfig
from fashionlens.data.deepfashion import LANDMARK_NAMES
from fashionlens.inference.predictor import Predictor, garment_crop
from fashionlens.model_header import Attributes, Calibration, Landmarks
from fashionlens.models.fashion_net import FashionNet
from fashionlens.serve.app import create_app


def _predictor(calibration: Calibration | None = None) -> Predictor:
    torch.manual_seed(0)
    net = FashionNet(
        "test_tiny",
        heads={"category": {"num_classes": 3}, "attributes": {"num_classes": len(COLOURS)}},
        landmarks={"fuse": False, "visibility": True, "channels": 8},
    )
    info = ModelInfo(
        net.spec,
        {"category": ["dress", "skirt", "t-shirt"], "attributes": list(COLOURS)},
        DataConfig(input_size=(32, 32)),
        calibration=calibration or Calibration(),
        landmarks=Landmarks(LANDMARK_NAMES),
        attributes=Attributes.for_names(COLOURS),
    )
    return Predictor(net.eval(), info)


def _photo(w=64, h=48) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8))


def test_garment_crop_by_hand():
    # box 30 x 30 centred at (25, 20), 10 % on each side -> 36 x 36 from (7, 2)
    assert garment_crop((10, 5, 40, 35), (64, 48), 0.1) == (7, 2, 43, 38)
    assert garment_crop((50, 30, 70, 60), (64, 48), 0.0) == (50, 30, 64, 48)  # clamped to the photo


def test_box_predicts_on_the_crop_and_maps_landmarks_back():
    predictor = _predictor()
    photo = _photo()
    boxed = predictor.predict([photo], boxes=[(10, 5, 40, 35)], top_k=3)[0]
    assert boxed.error is None and boxed.box == (7, 2, 43, 38) and boxed.image_size == (64, 48)
    alone = predictor.predict([photo.crop((7, 2, 43, 38))], top_k=3)[0]  # the crop as a photo of its own
    assert [c.label for c in boxed.category] == [c.label for c in alone.category]
    assert [c.score for c in boxed.category] == pytest.approx([c.score for c in alone.category], abs=1e-6)
    for a, b in zip(boxed.landmarks, alone.landmarks, strict=True):
        assert (a.x, a.y) == pytest.approx((b.x + 7, b.y + 2), abs=1e-4)
    assert boxed.to_dict()["box"] == [7, 2, 43, 38]


def test_a_bad_box_is_that_image_error_only():
    predictor = _predictor()
    preds = predictor.predict([_photo(), _photo()], boxes=[(40, 5, 10, 35), None])
    assert "expected x1 < x2" in preds[0].error and preds[1].error is None
    assert "outside the 64x48 photo" in predictor.predict([_photo()], boxes=[(100, 100, 120, 120)])[0].error


def test_visibility_scores_and_flags():
    predictor = _predictor()
    photo = _photo()
    logits = predictor.model(predictor.preprocess(photo)[0][None])["landmark_visibility"][0].detach().numpy()
    marks = predictor.predict([photo])[0].landmarks
    prob = 1 / (1 + np.exp(-logits))
    assert [m.score for m in marks] == pytest.approx(prob.tolist(), abs=1e-6)
    assert [m.visible for m in marks] == [bool(p >= 0.5) for p in prob]
    assert [m.name for m in marks][:2] == ["left_collar", "right_collar"]


def test_category_scores_use_the_calibrated_temperature():
    plain, warm = _predictor(), _predictor(Calibration(temperature=2.0))
    photo = _photo()
    logits = plain.model(plain.preprocess(photo)[0][None])["category"][0].detach().numpy()
    want = np.exp(logits / 2) / np.exp(logits / 2).sum()
    got = {c.label: c.score for c in warm.predict([photo], top_k=3)[0].category}
    assert [got[n] for n in ["dress", "skirt", "t-shirt"]] == pytest.approx(want.tolist(), abs=1e-5)
    assert [c.label for c in warm.predict([photo], top_k=3)[0].category] == [
        c.label for c in plain.predict([photo], top_k=3)[0].category
    ]


def test_api_box_parameter():
    client = TestClient(create_app(_predictor()))
    buf = io.BytesIO()
    _photo().save(buf, format="JPEG")
    files = {"files": ("a.jpg", buf.getvalue(), "image/jpeg")}
    record = client.post("/v1/predict", params={"box": "10,5,40,35"}, files=files).json()["results"][0]
    assert record["box"] == [7, 2, 43, 38] and len(record["landmarks"]) == 8
    assert {"name", "x", "y", "score", "visible"} <= set(record["landmarks"][0])
    bad = client.post("/v1/predict", params={"box": "10,5,4"}, files=files)
    assert bad.status_code == 422 and "x1,y1,x2,y2" in bad.json()["error"]


def test_colours_and_visible_landmarks_in_every_output_format():
    from fashionlens.inference.output import format_predictions, prediction_row

    predictor = _predictor()
    with torch.no_grad():  # black and white surely present, the rest surely not; two landmarks hidden
        head = predictor.model.heads["attributes"].classifier
        head.weight.zero_()
        head.bias.copy_(torch.tensor([4.0, 3.0] + [-4.0] * (len(COLOURS) - 2)))
        predictor.model.visibility_head.weight.zero_()
        predictor.model.visibility_head.bias.copy_(torch.tensor([3.0] * 6 + [-3.0] * 2))
    pred = predictor.predict([_photo()], top_k=3)[0]
    assert [c.label for c in pred.colours] == ["black", "white"]
    assert pred.colours[0].score == pytest.approx(1 / (1 + np.exp(-4.0)), abs=1e-6)
    table = format_predictions([pred], "table")
    assert "  colours:    black 0.98, white 0.95" in table and "(2 not visible)" in table
    assert table.count("=(") == 6
    header, row = format_predictions([pred], "csv").splitlines()
    assert header.endswith(",colours") and row.endswith("black:0.9820|white:0.9526")
    parquet = prediction_row(pred)
    assert [c["label"] for c in parquet["colours"]] == ["black", "white"]
    assert [lm["visible"] for lm in parquet["landmarks"]] == [True] * 6 + [False] * 2
