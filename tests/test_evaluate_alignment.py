"""Evaluation scores the model's columns against the data's labels by name, whatever their order."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from fashionlens.checkpoint import read_info
from fashionlens.evaluate.evaluate import align_targets, evaluate_model
from fashionlens.train.config import load_config
from fashionlens.train.fit import train


def _bundle(head, names, targets, train_targets):
    ds = SimpleNamespace(targets=torch.as_tensor(targets))
    return SimpleNamespace(
        label_names={head: list(names)}, datasets={"val": ds}, train_targets={head: np.asarray(train_targets)}
    )


def test_category_subset_is_mapped_to_the_model_indices():
    # data: 3 classes (clothing-small style); model: 5 classes in another order
    bundle = _bundle("category", ["dress", "hat", "t-shirt"], [0, 2, 1, 2], [1, 1, 0])
    align_targets(bundle, {"category": ["blouse", "t-shirt", "dress", "polo", "hat"]}, "val")
    assert bundle.datasets["val"].targets.tolist() == [2, 1, 4, 1]
    assert bundle.train_targets["category"].tolist() == [4, 4, 2]
    assert bundle.label_names["category"] == ["blouse", "t-shirt", "dress", "polo", "hat"]


def test_label_columns_are_reordered_by_name():
    bundle = _bundle("labels", ["a", "b", "c"], [[1, 0, 0], [0, 1, 1]], [[0, 0, 1]])
    align_targets(bundle, {"labels": ["c", "a", "b"]}, "val")
    assert bundle.datasets["val"].targets.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert bundle.train_targets["labels"].tolist() == [[1, 0, 0]]


@pytest.mark.parametrize("head, data, model, message", [
    ("category", ["dress", "gown"], ["dress", "hat"], r"unknown to the model \['gown'\]"),
    ("labels", ["a", "b"], ["a", "b", "c"], r"missing from the data \['c'\]"),
])  # fmt: skip
def test_names_the_model_does_not_know_are_an_error(head, data, model, message):
    targets = [0, 1] if head == "category" else [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match=message):
        align_targets(_bundle(head, data, targets, targets), {head: model}, "val")


def test_unsorted_label_list_evaluates_the_same_columns_as_training(tmp_path, colour_csv):
    """Issue 17.1: a label_list in non-sorted order must reach evaluation (it scored permuted columns)."""
    order = ["yellow", "red", "green", "blue"]  # not the sorted order
    (tmp_path / "labels.txt").write_text("\n".join(order) + "\n")
    cfg = load_config(None, [
        f"data.path={colour_csv}", "data.format=multilabel", f"data.label_list={tmp_path / 'labels.txt'}",
        "data.input_size=[32,32]", "data.num_workers=0", "model.backbone=test_tiny", "model.pretrained=false",
        "model.heads={labels: {kind: linear, pool: max}}", "optim.lr=3e-3", "optim.head_lr=3e-3",
        "optim.scheduler=none", "trainer.max_epochs=3", "trainer.accelerator=cpu",
        "trainer.checkpoint_every_n_steps=0",
    ])  # fmt: skip
    train(cfg, tmp_path / "run")
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())["report"]["labels"]
    report, _ = evaluate_model(
        tmp_path / "run" / "model.safetensors", colour_csv, "val", trainer_kwargs={"accelerator": "cpu"}
    )
    assert report["labels"]["mAP"] == pytest.approx(trained["mAP"], abs=1e-6)
    assert report["labels"]["AP"] == pytest.approx(trained["AP"], abs=1e-6)
    info = read_info(tmp_path / "run" / "model.safetensors")
    assert info.label_names["labels"] == order
    assert info.training.data["label_list"] == order
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["label_list"] == str(
        tmp_path / "labels.txt"
    )
