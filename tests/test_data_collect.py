"""The readers' collecting mode: with ``problems=`` every bad line is recorded with its file, line, kind
and field and reading goes on; without it the first problem raises, as it always did."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fashionlens.data.ccp import read_ccp_parts
from fashionlens.data.clothing_dataset import read_clothing_dataset
from fashionlens.data.deepfashion import read_deepfashion
from fashionlens.data.errors import DataFormatError, Problems
from fashionlens.data.multilabel import read_multilabel
from fashionlens.data.synth import synth_deepfashion


def _edit(path: Path, lineno: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_deepfashion_three_bad_lines_are_all_reported(tmp_path: Path) -> None:
    synth_deepfashion(tmp_path, n=12, seed=0, image_size=(48, 48))
    bbox = tmp_path / "Anno/list_bbox.txt"
    rows = bbox.read_text().splitlines()
    _edit(bbox, 4, rows[3].rsplit(maxsplit=1)[0])  # 3 coordinates
    _edit(bbox, 7, " ".join(rows[6].split()[:2] + ["x7"] + rows[6].split()[3:]))
    _edit(bbox, 9, " ".join([rows[8].split()[0], "50", "1", "10", "20"]))  # x_1 > x_2
    with pytest.raises(DataFormatError, match=r"list_bbox.txt:4: expected 4 bbox coordinates"):
        read_deepfashion(tmp_path)
    found = Problems()
    index = read_deepfashion(tmp_path, problems=found)
    assert [(Path(p.path).name, p.line, p.kind) for p in found.found] == [
        ("list_bbox.txt", 4, "columns"), ("list_bbox.txt", 7, "value"), ("list_bbox.txt", 9, "value")
    ]  # fmt: skip
    assert len(index) == 12 and index.lines["bbox"].tolist() == [3, 0, 5, 6, 0, 8, 0, 10, 11, 12, 13, 14]
    assert (index.bbox[[1, 4, 6]] == 0).all() and len(found.files) == 7


def test_deepfashion_join_problems_are_listed_per_row(tmp_path: Path) -> None:
    synth_deepfashion(tmp_path, n=6, seed=0, image_size=(48, 48))
    part = tmp_path / "Eval/list_eval_partition.txt"
    rows = part.read_text().splitlines()
    first = rows[2].split()[0]
    _edit(part, 5, f"{first} train")  # a duplicate, and the image of line 5 has no row
    found = Problems()
    read_deepfashion(tmp_path, problems=found)
    kinds = [(p.line, p.kind) for p in found.found]
    assert kinds == [(5, "duplicate"), (None, "missing_row")], found.found
    assert "first on line 3" in found.found[0].message


def test_multilabel_collects_every_row(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("image,main,labels\na.jpg,x,x\nb.jpg\nc.jpg,y,y|zzz\na.jpg,x,x\n,x,x\n")
    (tmp_path / "vocab.txt").write_text("x\ny\n")
    with pytest.raises(DataFormatError, match=r"labels.csv:3: expected 3 fields"):
        read_multilabel(csv, label_list=tmp_path / "vocab.txt", check_images=False)
    found = Problems()
    ds = read_multilabel(csv, label_list=tmp_path / "vocab.txt", check_images=False, problems=found)
    assert [(p.line, p.kind, p.field) for p in found.found] == [
        (3, "columns", None), (4, "label", "labels"), (5, "duplicate", "image"), (6, "value", None)
    ]  # fmt: skip
    assert "labels.csv:4: error [label] unknown label(s) ['zzz']" in str(found.found[1])
    assert [(s.path.name, s.labels, s.line) for s in ds.samples] == [
        ("a.jpg", ("x",), 2),
        ("c.jpg", ("y",), 4),
    ]


def test_clothing_dataset_collects_every_row(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for name in ("a", "c"):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{name}.jpg")
    (tmp_path / "images.csv").write_text(
        "image,sender_id,label,kids\na,1,Dress,False\nb,1,Hat,False\nc,2,Hat,maybe\na,3,Dress,False\n"
    )
    with pytest.raises(DataFormatError, match=r"images.csv:4: field 'kids'"):
        read_clothing_dataset(tmp_path)
    found = Problems()
    ds = read_clothing_dataset(tmp_path, problems=found)
    assert [(p.line, p.kind) for p in found.found] == [(4, "value"), (3, "missing_image"), (5, "duplicate")]
    assert len(ds) == 1 and ds.lines.tolist() == [2]


def test_ccp_collects_every_annotation(tmp_path: Path) -> None:
    names = np.empty((1, 4), dtype=object)
    names[0, :] = ["null", "bag", "hair", "hat"]
    scipy.io.savemat(tmp_path / "label_list.mat", {"label_list": names})
    (tmp_path / "annotations/image-level").mkdir(parents=True)
    (tmp_path / "photos").mkdir()
    for stem, tags in {"0001": [1], "0002": [7], "0003": [3], "0004": [1, 3]}.items():
        scipy.io.savemat(
            tmp_path / f"annotations/image-level/{stem}.mat", {"tags": np.array([tags], np.uint8)}
        )
        if stem != "0003":
            Image.new("RGB", (8, 8)).save(tmp_path / "photos" / f"{stem}.jpg")
    with pytest.raises(DataFormatError, match=r"0003.mat: annotation without a photo"):
        read_ccp_parts(tmp_path)
    found = Problems()
    parts = read_ccp_parts(tmp_path, problems=found)
    assert [(Path(p.path).name, p.kind, p.field) for p in found.found] == [
        ("0003.mat", "missing_image", None), ("0002.mat", "label", "tags")
    ]  # fmt: skip
    assert [s.path.stem for s in parts["image-level"].samples] == ["0001", "0004"]


def test_the_error_keeps_kind_and_field_through_pickling() -> None:
    e = DataFormatError("a.csv", 2, "unknown label(s) ['q']", kind="label", field="labels")
    back = pickle.loads(pickle.dumps(e))
    assert (str(back), back.kind, back.field) == (str(e), "label", "labels")
    assert str(e) == "a.csv:2: field 'labels': unknown label(s) ['q']"
