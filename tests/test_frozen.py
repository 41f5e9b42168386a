"""Heads on cached frozen features (fashionlens.train.frozen) and the study tool built on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import load_tool
from fashionlens.models import create_backbone
from fashionlens.train.config import load_config
from fashionlens.train.frozen import FeatureCache, build_feature_cache, train_head_on_cache


def _cfg(colour_csv):
    return load_config(None, ["data.format=multilabel", f"data.path={colour_csv}", "data.input_size=[32, 32]",
                              "data.num_workers=0", "model.backbone=test_tiny", "model.pretrained=false"])


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory, colour_csv):
    path = tmp_path_factory.mktemp("cache") / "cache.pt"
    torch.manual_seed(0)
    build_feature_cache(_cfg(colour_csv), path, batch_size=16)
    return path


def test_cache_holds_every_photo_and_its_mirror(cache_file, colour_csv):
    cache = FeatureCache.load(cache_file)
    assert cache.label_names == ["blue", "green", "red", "yellow"]
    assert sum(len(p["paths"]) for p in cache.splits.values()) == 120
    train = cache.splits["train"]
    assert train["features"].dtype == torch.float16 and train["features"].shape[1:3] == (2, 32)
    # view 1 is the backbone's map of the mirrored photo (the same test_tiny weights: seeded)
    from fashionlens.data.images import load_image
    from fashionlens.data.transforms import build_transforms

    torch.manual_seed(0)
    backbone = create_backbone("test_tiny", input_size=(32, 32)).eval()
    x = build_transforms(backbone.data_config, train=False)(load_image(train["paths"][0]))[None]
    with torch.no_grad():
        plain, mirror = backbone(x)[0], backbone(x.flip(-1))[0]
    assert torch.allclose(train["features"][0, 0].float(), plain, atol=1e-2)
    assert torch.allclose(train["features"][0, 1].float(), mirror, atol=1e-2)
    assert train["targets"].shape == (len(train["paths"]), 4)


def test_heads_learn_on_the_cache(cache_file):
    cache = FeatureCache.load(cache_file)
    for head, loss in (
        ({"kind": "linear"}, None),
        ({"kind": "mldecoder", "decoder": {"width": 16, "num_heads": 2, "ffn": 32}}, {"kind": "asl"}),
    ):
        result = train_head_on_cache(
            cache, head, loss, seed=0, epochs=25, lr=1e-2, batch_size=16, progress=False
        )
        # 4 colours, 1-2 a photo: chance mAP is about 0.4; colour survives even random conv features
        assert result["report"]["mAP"] > 0.6, (head, result["report"]["mAP"])
        assert result["scores"].shape == (len(cache.splits["val"]["paths"]), 4)
    again = train_head_on_cache(
        cache, {"kind": "linear"}, None, seed=0, epochs=2, lr=1e-2, batch_size=16, progress=False
    )
    same = train_head_on_cache(
        cache, {"kind": "linear"}, None, seed=0, epochs=2, lr=1e-2, batch_size=16, progress=False
    )
    np.testing.assert_array_equal(again["scores"], same["scores"])  # a seed is a run


def test_top_label_subset(cache_file):
    cache = FeatureCache.load(cache_file)
    counts = sum(p["targets"].sum(0) for p in cache.splits.values())
    top2 = cache.restrict_to_top_labels(2)
    expected = sorted(np.asarray(cache.label_names)[np.argsort(-counts.numpy(), kind="stable")[:2]])
    assert top2.label_names == expected and top2.meta["top_labels"] == 2
    for part in top2.splits.values():
        assert part["targets"].shape[1] == 2 and (part["targets"].sum(1) > 0).all()
        assert len(part["paths"]) == len(part["features"])


def _tool():
    return load_tool("head_study")


def test_study_tool_runs_resumes_and_tabulates(tmp_path, cache_file, colour_csv, capsys):
    tool = _tool()
    study = {
        "heads": {"linear": {"kind": "linear"}, "gcn": {"kind": "gcn", "gcn_hidden": 8}},
        "losses": {"bce": {"kind": "bce"}, "asl": {"kind": "asl"}},
        "seeds": [0, 1],
        "train": {"epochs": 2, "lr": 1e-2, "batch_size": 16},
        "lr": {"gcn": 3e-3},
        "labels": {
            "graph": {"kind": "cooccurrence", "tau": 0.4, "p": 0.2},
            "embeddings": {"provider": "onehot"},
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "res"
    tool.main(
        ["run", str(path), "--cache", str(cache_file), "--out", str(out), "--only", "gcn", "--losses", "asl"]
    )
    done = sorted(p.name for p in (out / "val" / "all").glob("*.json"))
    assert done == ["gcn__asl__s0.json", "gcn__asl__s1.json"]
    tool.main(["run", str(path), "--cache", str(cache_file), "--out", str(out), "--only", "gcn"])
    done = sorted(p.name for p in (out / "val" / "all").glob("*.json"))
    assert done == ["gcn__asl__s0.json", "gcn__asl__s1.json", "gcn__bce__s0.json", "gcn__bce__s1.json"]
    assert json.loads((out / "val" / "all" / "gcn__bce__s0.json").read_text())["settings"]["lr"] == 3e-3
    capsys.readouterr()
    tool.main(["run", str(path), "--cache", str(cache_file), "--out", str(out)])  # resumes: only linear left
    assert "gcn" not in capsys.readouterr().out
    tool.main(
        [
            "run",
            str(path),
            "--cache",
            str(cache_file),
            "--out",
            str(out),
            "--top-labels",
            "2",
            "--threads",
            "1",
        ]
    )
    tool.main(
        ["score", str(out / "val" / "top2"), "--cache", str(cache_file), "--split", "test", "--threads", "1"]
    )
    assert len(list((out / "test" / "top2").glob("*.npz"))) == 8
    val = json.loads((out / "val" / "top2" / "gcn__asl__s1.json").read_text())
    test = json.loads((out / "test" / "top2" / "gcn__asl__s1.json").read_text())
    assert test["settings"] == {**val["settings"], "split": "test"} and test["headline"] != val["headline"]
    # the scores of the saved head are those of the head as trained (same photos: val re-scored)
    tool.main(["score", str(out / "val" / "top2"), "--cache", str(cache_file), "--split", "val"])
    assert json.loads((out / "val" / "top2" / "gcn__asl__s1.json").read_text())["headline"] == val["headline"]
    table = tmp_path / "table.md"
    tool.main(
        [
            "table",
            str(out / "val" / "all"),
            str(out / "test" / "top2"),
            "--out",
            str(table),
            "--resamples",
            "20",
        ]
    )
    text = table.read_text()
    assert "| linear | bce | 2 |" in text and "Best by mean mAP" in text and "top2_all" in text
    assert text.count("Paired bootstrap over the") == 2

    # a trained head + the (same, seeded) backbone as a model file scores the photos as in the study
    model = tmp_path / "gcn.safetensors"
    torch.manual_seed(0)
    tool.main(
        [
            "export",
            str(out / "val" / "all" / "gcn__bce__s1.json"),
            "--config",
            str(_cfg_file(tmp_path)),
            "--out",
            str(model),
            "--name",
            "exported",
        ]
    )
    from fashionlens.evaluate.evaluate import evaluate_model

    val_all = json.loads((out / "val" / "all" / "gcn__bce__s1.json").read_text())
    _, ctx = evaluate_model(model, colour_csv, "val", trainer_kwargs={"enable_progress_bar": False})
    assert ctx["info"].training.experiment == "exported"
    with np.load(out / "val" / "all" / "gcn__bce__s1.npz") as z:
        assert list(ctx["outputs"]["paths"]) == list(z["paths"])
        np.testing.assert_allclose(ctx["outputs"]["labels_scores"], z["scores"], atol=2e-3)
        frozen_scores, frozen_paths = z["scores"], list(z["paths"])

    # score-models: model files in HEAD-LOSS-sSEED folders, written as runs `table` reads (photos sorted)
    ft = tmp_path / "ft" / "gcn-bce-s1"
    ft.mkdir(parents=True)
    (ft / "model.safetensors").write_bytes(model.read_bytes())
    tool.main(
        [
            "score-models",
            str(ft / "model.safetensors"),
            "--data",
            str(colour_csv),
            "--split",
            "val",
            "--out",
            str(tmp_path / "scores"),
            "--threads",
            "1",
        ]
    )
    with np.load(tmp_path / "scores" / "val" / "all" / "gcn__bce__s1.npz") as z:
        assert list(z["paths"]) == sorted(frozen_paths)
        order = [frozen_paths.index(p) for p in z["paths"]]
        np.testing.assert_allclose(z["scores"], frozen_scores[order], atol=2e-3)
    scored = json.loads((tmp_path / "scores" / "val" / "all" / "gcn__bce__s1.json").read_text())
    assert scored["settings"]["seed"] == 1 and scored["settings"]["finetuned"] is True
    assert abs(scored["headline"]["mAP"] - val_all["headline"]["mAP"]) < 0.02
    capsys.readouterr()
    tool.main(["table", str(tmp_path / "scores" / "val" / "all"), "--resamples", "10"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| gcn | bce | 1 |"))
    assert row.endswith("| - |")  # no training time is known for a scored model file
    bad = tmp_path / "ft" / "misnamed"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(model.read_bytes())
    with pytest.raises(SystemExit, match="HEAD-LOSS-sSEED"):
        tool.main(
            [
                "score-models",
                str(bad / "model.safetensors"),
                "--data",
                str(colour_csv),
                "--out",
                str(tmp_path / "s2"),
            ]
        )

    cache_out = tmp_path / "cache2.pt"
    tool.main(
        [
            "cache",
            str(_cfg_file(tmp_path)),
            "--data",
            str(colour_csv),
            "--out",
            str(cache_out),
            "--batch-size",
            "32",
            "--set",
            "data.num_workers=0",
        ]
    )
    assert FeatureCache.load(cache_out).meta["input_size"] == [32, 32]

    # --model: the trained backbone of a model file (here the exported one) instead of the config's
    from fashionlens.checkpoint import load_model_file
    from fashionlens.data.images import load_image
    from fashionlens.data.transforms import build_transforms

    cache_model = tmp_path / "cache3.pt"
    tool.main(
        [
            "cache",
            str(_cfg_file(tmp_path)),
            "--data",
            str(colour_csv),
            "--out",
            str(cache_model),
            "--model",
            str(model),
            "--set",
            "data.num_workers=0",
        ]
    )
    cached = FeatureCache.load(cache_model)
    assert cached.meta["backbone"] == f"test_tiny of {model}"
    net, info = load_model_file(model)
    train = cached.splits["train"]
    x = build_transforms(info.data_config, train=False)(load_image(train["paths"][0]))[None]
    with torch.no_grad():
        expected = net.backbone.eval()(x)[0]
    assert torch.allclose(train["features"][0, 0].float(), expected, atol=1e-2)
    with pytest.raises(SystemExit, match="no model named"):
        tool.main(
            [
                "cache",
                str(_cfg_file(tmp_path)),
                "--data",
                str(colour_csv),
                "--out",
                str(cache_model),
                "--model",
                "nope",
            ]
        )


def _cfg_file(tmp_path):
    cfg = {
        "data": {"format": "multilabel", "input_size": [32, 32]},
        "model": {"backbone": "test_tiny", "pretrained": False},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_deepfashion_attributes_cache_keeps_the_unknown_mask(tmp_path):
    from fashionlens.data.deepfashion import read_deepfashion
    from fashionlens.data.synth import synth_deepfashion

    tree = tmp_path / "df"
    synth_deepfashion(tree, n=40, seed=3, image_size=(64, 64))
    cfg = load_config(
        None,
        [
            "data.format=deepfashion",
            f"data.path={tree}",
            "data.input_size=[32, 32]",
            "data.num_workers=0",
            "model.backbone=test_tiny",
            "model.pretrained=false",
        ],
    )
    cache = build_feature_cache(cfg, tmp_path / "c.pt", batch_size=8)
    index = read_deepfashion(tree)
    assert cache.meta["head"] == "attributes" and cache.label_names == [str(n) for n in index.attribute_names]
    train = cache.splits["train"]
    raw = index.subset(index.partition == "train").attributes
    np.testing.assert_array_equal(train["targets"].numpy(), raw > 0)
    np.testing.assert_array_equal(train["mask"].numpy(), raw != 0)
    result = train_head_on_cache(
        cache, {"kind": "linear"}, {"kind": "asl"}, epochs=2, lr=1e-2, batch_size=8, progress=False
    )
    val = cache.splits["val"]
    np.testing.assert_array_equal(result["targets"], (val["targets"] * val["mask"]).numpy())
    assert result["scores"].shape == tuple(val["targets"].shape)
