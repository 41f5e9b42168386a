"""End to end through the CLI: train -> model.safetensors -> evaluate -> reports, on tiny data."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from fashionlens.checkpoint import read_info
from fashionlens.cli import app
from fashionlens.train.config import ConfigError, load_config

runner = CliRunner()


def _config(tmp_path, head_kind="gcn", provider="onehot", **extra):
    cfg = {
        "experiment": f"colours_{head_kind}",
        "data": {"format": "multilabel", "input_size": [32, 32], "batch_size": 16, "num_workers": 0},
        "model": {
            "backbone": "test_tiny",
            "pretrained": False,
            "heads": {"labels": {"kind": head_kind, "pool": "max", "gcn_hidden": 16}},
        },
        "labels": {"embeddings": {"provider": provider}, "graph": {"tau": 0.3}},
        "optim": {"lr": 3.0e-3, "head_lr": 3.0e-3, "scheduler": "none"},
        "trainer": {"max_epochs": 6, "accelerator": "cpu", "log_every_n_steps": 1},
        **extra,
    }
    path = tmp_path / f"{head_kind}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(tmp_path, colour_csv, head_kind, provider="onehot"):
    out = tmp_path / f"run_{head_kind}"
    result = runner.invoke(
        app,
        ["train", str(_config(tmp_path, head_kind, provider)), "--data", str(colour_csv), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result


def test_train_then_evaluate_gcn(tmp_path, colour_csv):
    out, result = _train(tmp_path, colour_csv, "gcn")
    assert "val/mAP" in result.output
    model = out / "model.safetensors"
    info = read_info(model)
    assert info.label_names["labels"] == ["blue", "green", "red", "yellow"]
    graph = info.label_graph["labels"]
    assert graph.kind == "cooccurrence" and graph.tau == 0.3 and graph.embed_dim == 4
    assert graph.num_edges == _edges_by_hand(tmp_path, model, colour_csv, tau=0.3)
    # the adjacency buffer the head uses has exactly those edges off its diagonal
    adjacency = next(t for k, t in load_file(model).items() if k.endswith("adjacency"))
    assert int((adjacency * (1 - torch.eye(4)) != 0).sum()) == graph.num_edges
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "logs" / "metrics.csv").is_file()

    ev = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(model),
            "--data",
            str(colour_csv),
            "--out",
            str(ev),
            "--split",
            "test",
            "--data-format",
            "multilabel",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((ev / "metrics.json").read_text())
    report = metrics["models"]["colours_gcn"]["labels"]
    # 4 colours, 1-2 per image: chance mAP is about 0.4; the colour squares are easy to learn
    assert report["mAP"] > 0.6, report["mAP"]
    text = (ev / "report.md").read_text()
    assert "Top-2 all" in text and "ML-GCN (published)" in text
    assert (ev / "label_correlation.png").stat().st_size > 1000
    assert (ev / "per_label_recall.png").stat().st_size > 1000
    rows = (ev / "predictions.csv").read_text().splitlines()
    assert rows[0] == "image,labels_predicted,labels_true"
    assert len(rows) - 1 == metrics["models"]["colours_gcn"]["num_images"]


def _edges_by_hand(tmp_path, model, colour_csv, tau: float) -> int:
    """Edges i -> j with P(j | i) >= tau, counted over the training split's true labels.

    ``evaluate --split train`` lists the training images with their true labels; the counting is
    done here with plain loops, independently of fashionlens.labelgraph.
    """
    ev = tmp_path / "eval_train"
    result = runner.invoke(
        app, ["evaluate", str(model), "--data", str(colour_csv), "--out", str(ev), "--split", "train"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    with open(ev / "predictions.csv", newline="") as f:
        label_sets = [set(row["labels_true"].split("|")) for row in csv.DictReader(f)]
    assert abs(len(label_sets) - 84) <= 1  # 70 % of 120, rounded per main label
    names = ["blue", "green", "red", "yellow"]
    edges = 0
    for a in names:
        with_a = [s for s in label_sets if a in s]
        for b in names:
            if b != a and with_a and sum(b in s for s in with_a) / len(with_a) >= tau:
                edges += 1
    return edges


def test_evaluate_several_models_gives_one_row_each(tmp_path, colour_csv):
    gcn, _ = _train(tmp_path, colour_csv, "gcn")
    lin, _ = _train(tmp_path, colour_csv, "linear")
    ev = tmp_path / "cmp"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(gcn / "model.safetensors"),
            str(lin / "model.safetensors"),
            "--data",
            str(colour_csv),
            "--out",
            str(ev),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    text = (ev / "report.md").read_text()
    assert "| colours_gcn |" in text and "| colours_linear |" in text


def test_train_without_data_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHIONLENS_DATA", raising=False)
    result = runner.invoke(app, ["train", str(_config(tmp_path)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--data PATH" in result.output


def test_unknown_config_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim: {lrate: 0.1}\n")
    with pytest.raises(ConfigError, match="optim.*lrate"):
        load_config(path)
    with pytest.raises(ConfigError, match="'trainer.max_epoch'"):
        load_config(None, ["trainer.max_epoch=3"])
    cfg = load_config(None, ["optim.lr=3e-4", "model.heads.labels.kind=gcn"])
    assert cfg["optim"]["lr"] == pytest.approx(3e-4) and cfg["model"]["heads"]["labels"]["kind"] == "gcn"


def test_shipped_configs_parse():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 10
    for path in configs:
        cfg = load_config(path)
        assert cfg["model"]["heads"] or cfg["model"]["landmarks"] or cfg["model"]["parsing"] is not None, path


def test_bad_images_are_reported_before_training(tmp_path, colour_csv):
    """skip: each bad file reported once and counted, training runs; fail: stops naming the file."""
    lines = colour_csv.read_text().splitlines()
    root = colour_csv.parent
    rows = [lines[0]] + [f"{root / ln.split(',', 1)[0]},{ln.split(',', 1)[1]}" for ln in lines[1:61]]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rows.append(f"{tmp_path / 'broken.jpg'},red,red")
    csv_path = tmp_path / "with_bad.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    cfg = _config(tmp_path, "linear")
    result = runner.invoke(
        app,
        ["train", str(cfg), "--data", str(csv_path), "--out", str(tmp_path / "skip"), "trainer.max_epochs=1"],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "broken.jpg" in result.output and "1 of 61 images are unreadable" in result.output
    result = runner.invoke(
        app,
        [
            "train",
            str(cfg),
            "--data",
            str(csv_path),
            "--out",
            str(tmp_path / "fail"),
            "trainer.max_epochs=1",
            "data.bad_images=fail",
        ],
    )
    assert result.exit_code == 2 and "broken.jpg" in result.output
    assert not (tmp_path / "fail" / "model.safetensors").exists()


def test_letterbox_setting_travels_from_config_to_the_model_header(tmp_path, colour_csv):
    out = tmp_path / "run_lb"
    args = [
        "train",
        str(_config(tmp_path, "linear")),
        "--data",
        str(colour_csv),
        "--out",
        str(out),
        "trainer.max_epochs=1",
        "data.resize=letterbox",
        "data.max_stretch=1.2",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    cfg = read_info(out / "model.safetensors").data_config
    assert (cfg.resize, cfg.max_stretch) == ("letterbox", 1.2)
    for override, message in (
        ("data.resize=crop", "data.resize must be one of squash, letterbox, got 'crop'"),
        ("data.max_stretch=0.5", "data.max_stretch must be a number >= 1, got 0.5"),
    ):
        bad = runner.invoke(app, [*args[:6], override])
        assert bad.exit_code == 2 and message in bad.output, bad.output


def test_warm_start_copies_matching_tensors_and_restarts_other_vocabularies(tmp_path):
    from fashionlens.checkpoint import CheckpointError, ModelInfo, save_model, warm_start
    from fashionlens.data.config import DataConfig
    from fashionlens.models.fashion_net import FashionNet

    torch.manual_seed(0)
    heads = {"category": {"num_classes": 3}, "labels": {"num_classes": 4}}
    trained = FashionNet("test_tiny", heads=heads)
    names = {"category": ["a", "b", "c"], "labels": ["w", "x", "y", "z"]}
    path = save_model(
        trained, ModelInfo(trained.spec, names, DataConfig(input_size=(32, 32))), tmp_path / "m.safetensors"
    )
    torch.manual_seed(1)
    fresh = FashionNet("test_tiny", heads=heads)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    # the tag head's vocabulary is in another order: its rows would mean other tags, so it starts fresh
    copied, restarted = warm_start(fresh, {"category": ["a", "b", "c"], "labels": ["x", "w", "y", "z"]}, path)
    own, src = fresh.state_dict(), trained.state_dict()
    assert restarted == ["heads.labels.classifier.bias", "heads.labels.classifier.weight"]
    assert copied == len(own) - 2
    assert all(torch.equal(own[k], src[k]) for k in own if k not in restarted)
    assert all(torch.equal(own[k], before[k]) for k in restarted)
    with pytest.raises(CheckpointError, match="none of its .* tensors match"):
        warm_start(torch.nn.Linear(2, 2), {}, path)


def test_train_init_from_a_model_file(tmp_path, colour_csv):
    out, _ = _train(tmp_path, colour_csv, "linear")
    cfg = _config(tmp_path, "linear")
    # with zero learning rates, one epoch from the trained weights must give back exactly those weights
    result = runner.invoke(
        app,
        [
            "train",
            str(cfg),
            "--data",
            str(colour_csv),
            "--out",
            str(tmp_path / "again"),
            f"model.init_from={out / 'model.safetensors'}",
            "trainer.max_epochs=1",
            "optim.lr=0",
            "optim.head_lr=0",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "model.init_from: " in result.output and "starting fresh" not in result.output
    first, again = load_file(out / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    params = [k for k in first if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params and all(torch.equal(first[k], again[k]) for k in params)
    result = runner.invoke(
        app,
        [
            "train",
            str(cfg),
            "--data",
            str(colour_csv),
            "--out",
            str(tmp_path / "bad"),
            "model.init_from=no-such-model",
        ],
    )
    assert result.exit_code == 2 and "no model named 'no-such-model'" in result.output
