"""The typed model header (schema 2): every section round-trips, the defaults are the uncalibrated
ones, a schema-1 file is refused with the command that upgrades it, the upgrade keeps every tensor byte
for byte, and inference reads landmark names and colours from the header, not from the data modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save

from fashionlens.checkpoint import (
    CheckpointError,
    ModelInfo,
    load_model_file,
    read_info,
    save_model,
    upgrade_model_file,
)
from fashionlens.colours import COLOURS
from fashionlens.data.config import DataConfig
from fashionlens.data.deepfashion import LANDMARK_NAMES
from fashionlens.model_header import (
    SCHEMA_VERSION,
    Attributes,
    Best,
    Calibration,
    HeadGraph,
    Landmarks,
    Parsing,
    Training,
    upgrade_header,
)
from fashionlens.models import FashionNet

TOOL = Path(__file__).resolve().parents[1] / "tools" / "upgrade_model.py"
MIXED = {
    "format": "mixed",
    "top_labels": 20,
    "sources": {"deepfashion": {"format": "deepfashion", "crop_margin": 0.05}, "ccp": {"format": "ccp"}},
}


def _full_info(spec: dict) -> ModelInfo:
    return ModelInfo(
        spec,
        {"category": ["a", "b"], "attributes": ["striped", "red", "blue"]},
        DataConfig(input_size=(32, 32)),
        training=Training("exp", MIXED, Best(3, "val/mAP", 0.5), note="n", attribute_refit={"epochs": 2}),
        calibration=Calibration(0.7, 0.3, 1, 0.4, 0.6, "max OF1"),
        label_graph={
            "labels": HeadGraph("onehot", 4, "cooccurrence", 0.4, 0.2, 5),
            "styles": HeadGraph("glove", 8),
        },
        quantization={"format": "QDQ", "calibration": {"images": 8}},
        landmarks=Landmarks(LANDMARK_NAMES),
        attributes=Attributes.for_names(["striped", "red", "blue"], [1, 6, 6]),
        parsing=Parsing(("background", "upper"), ("upper",), ("upper",)),
    )


def test_every_section_round_trips_through_json():
    info = _full_info({"backbone": "test_tiny"})
    back = ModelInfo.from_json(info.to_json())
    assert back == info
    d = json.loads(info.to_json())
    assert d["schema_version"] == SCHEMA_VERSION == 2 and "extra" not in d
    assert d["training"]["best"] == {"epoch": 3, "monitor": "val/mAP", "value": 0.5, "note": None}
    assert d["calibration"] == {"temperature": 0.7, "threshold": 0.3, "min_tags": 1, "style_threshold": 0.4,
                                "attribute_threshold": 0.6, "threshold_selection": "max OF1"}  # fmt: skip
    assert d["label_graph"]["styles"] == {"embeddings": "glove", "embed_dim": 8}
    assert d["attributes"] == {"groups": [1, 6, 6], "colours": [1, 2]}
    assert d["landmarks"]["names"][:2] == ["left_collar", "right_collar"]
    assert d["parsing"] == {
        "groups": ["background", "upper"],
        "garments": ["upper"],
        "landmark_groups": ["upper"],
    }


def test_defaults_are_the_uncalibrated_model():
    info = ModelInfo.from_json(ModelInfo({"backbone": "x"}, {}, DataConfig()).to_json())
    c = info.calibration
    assert (c.temperature, c.threshold, c.style_threshold, c.min_tags, c.attribute_threshold) == (
        1.0,
        0.5,
        0.5,
        0,
        None,
    )
    assert (
        info.training == Training() and info.training.box_margin == 0.1 and info.training.top_labels is None
    )
    assert info.quantization is None and info.parsing is None and info.label_graph == {}
    assert info.landmarks.names == () and info.landmarks.name(2) == "landmark_2"
    assert info.attributes.groups is None and not info.attributes.colour_mask(3).any()


def test_training_section_answers_for_the_data_shape():
    t = Training("exp", MIXED)
    assert t.format == "mixed" and t.top_labels == 20 and t.source_formats == ["deepfashion", "ccp"]
    assert t.box_margin == 0.05  # the deepfashion source's crop margin
    assert t.format_for("ccp") == "ccp" and t.format_for("image_folder") is None
    assert t.split_for("deepfashion") == {"format": "deepfashion", "crop_margin": 0.05}
    assert t.split_for("clothing_dataset") == {"format": "clothing_dataset"}
    assert t.split_for(None) == MIXED
    assert (
        t.with_ccp_parsing().data["sources"]["ccp"]["parsing"] is True
        and "parsing" not in MIXED["sources"]["ccp"]
    )
    one = Training("exp", {"format": "deepfashion", "crop_margin": 0.2})
    assert one.box_margin == 0.2 and one.format_for("deepfashion") is None and one.format_for("ccp") == "ccp"


def test_colour_attributes_by_type_or_by_name():
    assert Attributes.for_names(["striped", "red"], [1, 6]).colours == (1,)
    assert Attributes.for_names(list(COLOURS)).colours == tuple(range(len(COLOURS)))  # a colour-only model
    assert Attributes.for_names(["striped", "red"]).colours == ()
    assert Attributes.for_names(["red", "blue"], [1, 2]).colours == (0, 1)  # no colour type: by the names
    assert Attributes((1, 6), (1,)).colour_mask(2).tolist() == [False, True]


def test_unknown_keys_and_malformed_sections_are_checkpoint_errors():
    d = json.loads(ModelInfo({"backbone": "x"}, {}, DataConfig()).to_json())
    with pytest.raises(
        CheckpointError, match=r"m.safetensors: model header has unknown key\(s\) \['extra'\]"
    ):
        ModelInfo.from_json(json.dumps({**d, "extra": {}}), "m.safetensors")
    with pytest.raises(CheckpointError, match=r"malformed .*calibration.* unknown key\(s\) \['temp'\]"):
        ModelInfo.from_json(json.dumps({**d, "calibration": {"temp": 2}}), "m.safetensors")


def _schema1_file(path: Path) -> tuple[Path, dict]:
    """A schema-1 model file as fashionlens 0.1 wrote it: every section in ``extra``."""
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 2}, "attributes": {"num_classes": 3}},
                     landmarks={"fuse": False, "visibility": True, "channels": 8})  # fmt: skip
    graph = {"kind": "cooccurrence", "tau": 0.4, "p": 0.2, "num_edges": 5}
    graph.update(embeddings="onehot", embed_dim=4)
    extra = {
        "graph": {"labels": graph},
        "data": MIXED,
        "experiment": "old",
        "attribute_groups": [1, 6, 6],
        "best": {"epoch": 2, "val/cat_top1": 0.75},
        "temperature": 0.6,
        "threshold": 0.3,
        "min_tags": 1,
        "threshold_selection": "max OF1",
        "parsing": {"groups": ["background", "upper"], "garments": ["upper"], "landmark_groups": ["upper"]},
    }
    header = {"schema_version": 1, "spec": net.spec, "label_names": {"category": ["a", "b"],
              "attributes": ["striped", "red", "blue"]}, "data_config": DataConfig((32, 32)).to_dict(),
              "extra": extra}  # fmt: skip
    tensors = {
        k: v.detach().clone().half() if v.is_floating_point() else v.clone()
        for k, v in net.state_dict().items()
    }
    path.write_bytes(save(tensors, metadata={"fashionlens": json.dumps(header)}))
    return path, header


def test_a_schema1_file_names_itself_its_version_and_the_upgrade(tmp_path):
    old, _ = _schema1_file(tmp_path / "old.safetensors")
    with pytest.raises(CheckpointError) as e:
        read_info(old)
    msg = str(e.value)
    assert str(old) in msg and "schema-1" in msg and f"python tools/upgrade_model.py {old}" in msg
    with pytest.raises(CheckpointError, match="schema-1"):
        load_model_file(old)


def test_upgrade_keeps_the_tensors_byte_for_byte_and_fills_the_sections(tmp_path):
    old, header = _schema1_file(tmp_path / "old.safetensors")
    new = upgrade_model_file(old, tmp_path / "new.safetensors")
    a, b = load_file(str(old)), load_file(str(new))
    assert sorted(a) == sorted(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    raw_a, raw_b = old.read_bytes(), new.read_bytes()
    data = [r[8 + int.from_bytes(r[:8], "little") :] for r in (raw_a, raw_b)]
    assert data[0] == data[1]  # the tensor bytes themselves
    info = read_info(new)
    assert info.training == Training("old", MIXED, Best(2, "val/cat_top1", 0.75))
    assert info.calibration == Calibration(0.6, 0.3, 1, threshold_selection="max OF1")
    assert info.label_graph == {"labels": HeadGraph("onehot", 4, "cooccurrence", 0.4, 0.2, 5)}
    assert info.landmarks.names == LANDMARK_NAMES and info.attributes == Attributes((1, 6, 6), (1, 2))
    assert (
        info.parsing == Parsing(("background", "upper"), ("upper",), ("upper",)) and info.quantization is None
    )
    assert info.spec == header["spec"] and info.label_names == header["label_names"]
    model, _ = load_model_file(new)
    assert model.heatmap_head is not None


def test_upgrade_refuses_what_it_cannot_place(tmp_path):
    with pytest.raises(ValueError, match=r"no schema-2 section takes: \['mystery'\]"):
        upgrade_header({"schema_version": 1, "spec": {}, "label_names": {}, "extra": {"mystery": 1}})
    new = tmp_path / "new.safetensors"
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 2}})
    save_model(net, ModelInfo(net.spec, {"category": ["a", "b"]}, DataConfig((32, 32))), new)
    with pytest.raises(CheckpointError, match="cannot upgrade its header"):
        upgrade_model_file(new)


def test_upgrade_tool_in_place_then_the_model_predicts(tmp_path):
    old, _ = _schema1_file(tmp_path / "m.safetensors")
    before = load_file(str(old))
    run = subprocess.run([sys.executable, str(TOOL), str(old)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"upgraded {old} -> {old} (schema 2, {len(before)} tensors unchanged)"
    with safe_open(str(old), framework="pt") as f:
        assert json.loads(f.metadata()["fashionlens"])["schema_version"] == 2
    again = subprocess.run([sys.executable, str(TOOL), str(old)], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "not a schema-1 header" in again.stderr

    from fashionlens.inference.predictor import Predictor

    model, info = load_model_file(old)
    pred = Predictor(model, info).predict([Image.new("RGB", (30, 40), (90, 90, 90))], top_k=2)[0]
    assert [m.name for m in pred.landmarks][:2] == ["left_collar", "right_collar"]


def test_the_predictor_imports_no_data_generator():
    code = (
        "import sys, fashionlens.inference.predictor, fashionlens.serve.app\n"
        "gens = ('fashionlens.data.derive', 'fashionlens.data.deepfashion')\n"
        "print(sorted(m for m in gens if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
