"""The shipped fashionlens-lite weights: they load offline by name and tag real photos correctly."""

from __future__ import annotations

import pytest

import fashionlens
from conftest import shared_path


def _validation_photos(per_class: int = 4) -> list[tuple[str, str]]:
    root = shared_path("clothing-small") / "validation"
    photos = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos += [(str(f), folder.name) for f in sorted(folder.glob("*.jpg"))[:per_class]]
    return photos


def test_shipped_model_loads_offline_and_knows_its_heads():
    predictor = fashionlens.load_model("fashionlens-lite", backend="torch")
    assert predictor.heads == ["category", "labels"]
    assert len(predictor.info.label_names["category"]) == 10 and len(predictor.info.label_names["labels"]) == 56
    assert 0.0 < predictor.tag_threshold(None) < 1.0


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_shipped_model_classifies_real_validation_photos(backend):
    photos = _validation_photos()  # 40 photos, the folder name is the true category
    preds = fashionlens.load_model("fashionlens-lite", backend=backend).predict([p for p, _ in photos], top_k=3)
    top1 = sum(p.category[0].label == truth for p, (_, truth) in zip(preds, photos, strict=True)) / len(photos)
    top3 = sum(truth in [c.label for c in p.category] for p, (_, truth) in zip(preds, photos, strict=True)) / len(photos)
    # the whole validation split: 94.1 % top-1; a broken export, a wrong normalisation or a
    # shuffled label list falls far below these bounds (chance: 10 % / 30 %)
    assert top1 >= 0.8, top1
    assert top3 >= 0.95, top3
