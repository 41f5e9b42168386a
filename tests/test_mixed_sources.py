"""One model from several data sets: product photos' implied tags, sources that label some heads only,
the landmark visibility head, and the losses they use (hand-worked values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from fashionlens.data.config import DataConfig
from fashionlens.data.product_tags import IMPLIED_TAGS, correct_tags, implied_tag_targets
from fashionlens.data.synth import synth_deepfashion
from fashionlens.losses import compute_losses, weighted_mean_bce
from fashionlens.models.fashion_net import FashionNet
from fashionlens.train.config import load_config
from fashionlens.train.data import build_data
from fashionlens.train.fit import train

TAGS = ["bag", "dress", "hat", "romper", "skirt"]


def test_implied_tags_by_hand():
    targets, weights = implied_tag_targets(["dress", "hat", "skirt"], TAGS, weight=0.5)
    # dress: dress present, romper acceptable (weight 0), the rest absent at weight 0.5
    assert targets.tolist() == [[0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]
    assert weights.tolist() == [[0.5, 0.5, 0.5, 0, 0.5], [0.5] * 5, [0.5] * 5]
    assert correct_tags("shoes") >= {"shoes", "boots", "sneakers"} and "bag" not in correct_tags("shoes")


def test_every_clothing_class_maps_onto_ccp_tags():
    from conftest import shared_path
    from fashionlens.data.ccp import DROPPED_LABELS, read_ccp_label_list
    from fashionlens.data.clothing_dataset import read_clothing_dataset

    tags = [n for n in read_ccp_label_list(shared_path("ccp") / "label_list.mat") if n not in DROPPED_LABELS]
    classes = read_clothing_dataset(shared_path("clothing-full")).data.class_names
    assert set(classes) == set(IMPLIED_TAGS)
    targets, weights = implied_tag_targets(classes, tags)
    assert targets.sum() == sum(len(IMPLIED_TAGS[c][0]) for c in classes)
    assert (weights[:, tags.index("bag")] == 1).all()  # no product photo shows a bag


@pytest.mark.parametrize("args, message", [
    ((["gown"], TAGS), r"no implied tags for classes \['gown'\]"),
    ((["shoes"], TAGS), r"implied tags \['boots'"),
])  # fmt: skip
def test_implied_tags_refuse_what_they_cannot_map(args, message):
    with pytest.raises(ValueError, match=message):
        implied_tag_targets(*args)


def test_weighted_mean_bce_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    # BCE: log 2 = 0.693147 for the first, log(1 + e^2) = 2.126928 for the second
    assert weighted_mean_bce(logits, targets, None).item() == pytest.approx(
        (0.693147 + 2.126928) / 2, abs=1e-5
    )
    assert weighted_mean_bce(logits, targets, torch.tensor([[0.5, 0.0]])).item() == pytest.approx(
        0.693147 * 0.5 / 2, abs=1e-5
    )


def test_visibility_loss_and_output():
    net = FashionNet("test_tiny", heads={}, landmarks={"num_upsample": 0, "visibility": True, "channels": 8})
    out = net(torch.zeros(2, 3, 32, 32))
    assert out["landmark_visibility"].shape == (2, 8) and out["heatmaps"].shape == (2, 8, 8, 8)
    batch = {"landmarks": torch.full((2, 8, 2), 0.5), "landmark_visible": torch.zeros(2, 8)}
    terms = compute_losses({"landmark_visibility": torch.zeros(2, 8), "heatmaps": out["heatmaps"]}, batch)
    assert terms["visibility"].item() == pytest.approx(np.log(2), abs=1e-6)  # logit 0 vs target 0


def _photo(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 40), colour).save(path)


@pytest.fixture()
def sources(tmp_path):
    """A clothing-dataset tree (3 classes), a tag CSV with the same 5-tag vocabulary, a synthetic DeepFashion
    tree."""
    clothing = tmp_path / "clothing"
    rows = ["image,sender_id,label,kids"]
    for i in range(30):
        label = ("Dress", "Hat", "Skirt")[i % 3]
        rows.append(f"p{i},1,{label},False")
        _photo(clothing / "images" / f"p{i}.jpg", ((200, 30, 30), (30, 200, 30), (30, 30, 200))[i % 3])
    (clothing / "images.csv").write_text("\n".join(rows) + "\n")
    tags = tmp_path / "tags"
    csv = ["image,main,labels"]
    rng = np.random.default_rng(0)
    for i in range(30):
        labels = list(rng.choice(TAGS, size=2, replace=False))
        _photo(tags / f"t{i}.jpg", tuple(int(v) for v in rng.integers(0, 255, 3)))
        csv.append(f"t{i}.jpg,,{'|'.join(labels)}")
    (tags / "labels.csv").write_text("\n".join(csv) + "\n")
    (tags / "labels.txt").write_text("\n".join(TAGS) + "\n")
    synth_deepfashion(tmp_path / "garments", n=40, image_size=(48, 48))
    return {"clothing": clothing, "tags": tags, "garments": tmp_path / "garments"}


def _mixed_config(sources, implied=0.5) -> dict:
    return {
        "experiment": "mixed",
        "data": {"format": "mixed", "input_size": [32, 32], "num_workers": 0,
                 "split_fractions": [0.6, 0.2, 0.2],
                 "sources": {
                     "clothing": {"format": "clothing_dataset", "path": str(sources["clothing"]),
                                  "batch_size": 6, "implied_tags": implied},
                     "tags": {"format": "multilabel", "path": str(sources["tags"] / "labels.csv"),
                              "batch_size": 6, "label_list": str(sources["tags"] / "labels.txt")},
                     "garments": {"format": "deepfashion", "path": str(sources["garments"]), "batch_size": 6,
                                  "targets": ["attributes", "landmarks"]}}},
        "model": {"backbone": "test_tiny", "pretrained": False,
                  "landmarks": {"num_upsample": 1, "fuse": False, "visibility": True, "channels": 8},
                  "heads": {"category": {"kind": "linear"}, "labels": {"kind": "linear"},
                            "attributes": {"kind": "linear"}}},
        "optim": {"scheduler": "none", "lr": 1e-3, "head_lr": 1e-3},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "checkpoint_every_n_steps": 0,
                    "monitor": "val/cat_top1", "log_every_n_steps": 1},
    }  # fmt: skip


def test_mixed_bundle_shares_the_tag_head_and_filters_targets(tmp_path, sources):
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(_mixed_config(sources)))
    bundle = build_data(load_config(path), DataConfig(input_size=(32, 32)))
    assert bundle.label_names["labels"] == TAGS and bundle.label_names["category"] == [
        "dress",
        "hat",
        "skirt",
    ]
    clothing = bundle.sources["clothing"]
    sample = clothing.datasets["train"][0]
    cls = clothing.label_names["category"][int(sample["category"])]
    want_targets, want_weights = implied_tag_targets([cls], TAGS, 0.5)
    assert (
        sample["labels"].tolist() == want_targets[0].tolist()
        and sample["labels_mask"].tolist() == want_weights[0].tolist()
    )
    assert "labels" not in clothing.datasets["val"][0]  # implied tags train; they are not validation data
    # the label graph and priors see only observed tags: the CSV's training rows
    assert len(bundle.train_targets["labels"]) == len(bundle.sources["tags"].datasets["train"])
    garment = bundle.sources["garments"].datasets["train"][0]
    assert set(garment) == {
        "image",
        "index",
        "attributes",
        "attributes_mask",
        "landmarks",
        "landmark_visible",
    }
    assert "category" not in bundle.sources["garments"].label_names
    assert bundle.attribute_groups is not None and len(bundle.attribute_groups) == len(
        bundle.label_names["attributes"]
    )


def test_mixed_training_trains_every_head(tmp_path, sources):
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(_mixed_config(sources)))
    report = train(load_config(path), tmp_path / "run")
    assert {"category", "labels", "deepfashion"} <= set(report)
    logged = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()[0]
    for term in (
        "train/loss_category",
        "train/loss_labels",
        "train/loss_attributes",
        "train/loss_landmarks",
        "train/loss_visibility",
    ):
        assert term in logged, logged


def test_a_mixed_model_is_evaluated_on_the_source_whose_layout_the_path_has(tmp_path, sources):
    """No --data-format: a clothing-dataset folder scores the category head, a DeepFashion tree the
    attributes and landmarks (each source of the mixed model, detected from the path)."""
    from fashionlens.evaluate.evaluate import evaluate_model

    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(_mixed_config(sources)))
    train(load_config(path), tmp_path / "run")
    model = tmp_path / "run" / "model.safetensors"
    quiet = {"enable_progress_bar": False}
    on_clothing, _ = evaluate_model(model, sources["clothing"], "val", 8, quiet)
    assert "category" in on_clothing and "deepfashion" not in on_clothing
    on_garments, _ = evaluate_model(model, sources["garments"], "val", 8, quiet)
    assert "landmarks" in on_garments["deepfashion"] and "labels" not in on_garments
