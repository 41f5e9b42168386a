"""``fashionlens compare`` on tiny models: tags, category and attributes; numbers against sklearn."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fashionlens.checkpoint import ModelInfo, save_model
from fashionlens.cli import app
from fashionlens.data.synth import synth_deepfashion
from fashionlens.evaluate.compare import HeadOutputs, disagreement_order, photo_correctness
from fashionlens.evaluate.evaluate import evaluate_model
from fashionlens.model_header import Attributes, Training
from fashionlens.models import FashionNet, create_backbone
from fashionlens.train.config import load_config
from fashionlens.train.fit import data_description

runner = CliRunner()
COLOURS = ["blue", "green", "red", "yellow"]


def _tiny_model(path, name, heads, label_names, data_overrides, seed, attributes=None):
    torch.manual_seed(seed)
    net = FashionNet("test_tiny", heads=heads).eval()
    data_config = create_backbone("test_tiny").data_config.replace(input_size=(32, 32))
    cfg = load_config(None, data_overrides)
    info = ModelInfo(
        net.spec,
        label_names,
        data_config,
        training=Training(name, data_description(cfg)),
        attributes=attributes or Attributes(),
    )
    return save_model(net, info, path)


@pytest.fixture(scope="module")
def colour_models(tmp_path_factory, colour_csv):
    root = tmp_path_factory.mktemp("cmp_models")
    over = ["data.format=multilabel"]
    lin = _tiny_model(
        root / "lin.safetensors",
        "linear",
        {"labels": {"num_classes": 4, "kind": "linear"}},
        {"labels": COLOURS},
        over,
        0,
    )
    mld = _tiny_model(
        root / "mld.safetensors",
        "mldecoder",
        {
            "labels": {
                "num_classes": 4,
                "kind": "mldecoder",
                "decoder": {"width": 16, "num_heads": 2, "ffn": 16},
            }
        },
        {"labels": COLOURS},
        over,
        1,
    )
    return lin, mld


def _sk_ap(scores, targets):
    from sklearn.metrics import average_precision_score

    return np.array(
        [
            average_precision_score(targets[:, c], scores[:, c]) if targets[:, c].any() else np.nan
            for c in range(targets.shape[1])
        ]
    )


def test_compare_tags_report_and_numbers(tmp_path, colour_csv, colour_models):
    out = tmp_path / "cmp"
    args = [
        "compare",
        *map(str, colour_models),
        "--data",
        str(colour_csv),
        "--out",
        str(out),
        "--split",
        "test",
        "--batch-size",
        "8",
        "--resamples",
        "50",
        "--cases",
        "5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads((out / "compare.json").read_text())
    assert list(summary["models"]) == ["linear", "mldecoder"] and summary["split"] == "test"
    head = summary["heads"]["labels"]
    # the same numbers from the evaluator's outputs and sklearn
    aps = []
    for path in colour_models:
        _, ctx = evaluate_model(path, colour_csv, "test", trainer_kwargs={"enable_progress_bar": False})
        o = ctx["outputs"]
        aps.append(_sk_ap(o["labels_scores"], o["labels_targets"].astype(int)))
    assert head["num_photos"] == len(o["paths"])
    assert head["metrics"]["mAP"]["value"] == pytest.approx([np.nanmean(a) for a in aps], abs=1e-6)
    delta = head["metrics"]["mAP"]["difference"][1]
    assert delta["delta"] == pytest.approx(np.nanmean(aps[1]) - np.nanmean(aps[0]), abs=1e-6)
    assert delta["lo"] <= delta["delta"] <= delta["hi"]
    for (lo, hi), v in zip(head["metrics"]["mAP"]["interval"], head["metrics"]["mAP"]["value"], strict=True):
        assert lo <= v <= hi
    rows = list(csv.DictReader((out / "labels_per_label_ap.csv").open()))
    assert [r["label"] for r in rows] == COLOURS
    assert [float(r["delta mldecoder"]) for r in rows] == pytest.approx(list(aps[1] - aps[0]), abs=1e-4)
    assert len(head["cases"]) == 5
    text = (out / "report.md").read_text()
    assert "| mAP |" in text and "Δ mldecoder" in text and "![cases](labels_cases.png)" in text
    assert (out / "labels_ap_delta.png").stat().st_size > 5000 and (
        out / "labels_cases.png"
    ).stat().st_size > 20000
    assert "written:" in result.output


def test_compare_category_and_attributes(tmp_path):
    tree = tmp_path / "df"
    synth_deepfashion(tree, n=40, seed=2, image_size=(64, 64))
    _, ctx = evaluate_model(
        _df_model(tmp_path, tree, 0), tree, "val", trainer_kwargs={"enable_progress_bar": False}
    )
    assert {"category_scores", "attributes_scores"} <= set(ctx["outputs"])
    out = tmp_path / "cmp"
    a, b = _df_model(tmp_path, tree, 0), _df_model(tmp_path, tree, 1, kind="query2label")
    result = runner.invoke(
        app,
        [
            "compare",
            str(a),
            str(b),
            "--data",
            str(tree),
            "--out",
            str(out),
            "--resamples",
            "20",
            "--cases",
            "3",
            "--data-format",
            "deepfashion",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads((out / "compare.json").read_text())
    assert set(summary["heads"]) == {"category", "attributes"}
    assert set(summary["heads"]["category"]["metrics"]) == {"top-1", "top-3"}
    assert set(summary["heads"]["attributes"]["metrics"]) == {"mAP", "recall@3", "recall@5"}
    for head in ("category", "attributes"):
        assert (out / f"{head}_cases.png").is_file() and (out / f"{head}_ap_delta.png").is_file()


def _df_model(tmp_path, tree, seed, kind="linear"):
    from fashionlens.data.deepfashion import read_deepfashion

    index = read_deepfashion(tree)
    attr = {"num_classes": len(index.attribute_names), "kind": kind}
    if kind == "query2label":
        attr["decoder"] = {"width": 16, "num_heads": 2, "ffn": 16, "encoder_layers": 0, "decoder_layers": 1}
    heads = {"category": {"num_classes": len(index.category_names)}, "attributes": attr}
    names = {"category": list(index.category_names), "attributes": list(index.attribute_names)}
    return _tiny_model(
        tmp_path / f"df_{seed}_{kind}.safetensors",
        f"df_{kind}",
        heads,
        names,
        ["data.format=deepfashion"],
        seed,
        Attributes.for_names(names["attributes"], index.attribute_types),
    )


def test_photo_correctness_and_disagreement_hand_worked():
    targets = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    a = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.9], [0.3, 0.9, 0.1], [0.5, 0.5, 0.5]])
    b = np.array([[0.9, 0.1, 0.8], [0.1, 0.2, 0.9], [0.9, 0.3, 0.1], [0.1, 0.2, 0.3]])
    # photo 0: a has both true labels in its top 2, b one of them; photo 2: a misses, b hits; photo 3: no
    # label
    np.testing.assert_allclose(photo_correctness("labels", a, targets), [1.0, 1.0, 0.0, np.nan])
    np.testing.assert_allclose(photo_correctness("labels", b, targets), [0.5, 1.0, 1.0, np.nan])
    order = disagreement_order(
        HeadOutputs("labels", ["x", "y", "z"], [a, b], targets, ["p0", "p1", "p2", "p3"])
    )
    assert order.tolist() == [2, 0, 1]  # spread 1, then 0.5, then 0; the unlabelled photo is left out
    assert photo_correctness("category", a, np.array([0, 2, 0, 1])).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_compare_errors_are_one_line(tmp_path, colour_csv, colour_models):
    result = runner.invoke(app, ["compare", str(colour_models[0]), "--data", str(colour_csv)])
    assert result.exit_code == 2 and "needs at least two model files" in result.output
    result = runner.invoke(
        app, ["compare", *map(str, colour_models), "--data", str(colour_csv), "--resamples", "3"]
    )
    assert result.exit_code == 2 and "--resamples must be >= 10" in result.output
    result = runner.invoke(
        app,
        [
            "compare",
            str(colour_models[0]),
            str(tmp_path / "missing.safetensors"),
            "--data",
            str(colour_csv),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "missing.safetensors" in result.output
