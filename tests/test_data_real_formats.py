"""CCP pixel-level masks and the clothing-dataset layout: readers, splits, `data check` / `data stats`."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from conftest import shared_path
from fashionlens.cli import app
from fashionlens.data.ccp import garment_regions, read_ccp, read_ccp_label_list, read_ccp_mask, read_ccp_parts
from fashionlens.data.clothing_dataset import holdout_ids, read_clothing_dataset, split_clothing
from fashionlens.data.config import DataConfig
from fashionlens.data.errors import DataFormatError
from fashionlens.data.multilabel import split_dataset
from fashionlens.train.config import load_config
from fashionlens.train.data import build_data

runner = CliRunner()
NAMES = ["null", "bag", "hair", "hat", "skin", "skirt"]


def _photo(path, w=20, h=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 90, 60)).save(path)


def _ccp_tree(root, tags: dict[str, list[int]], masks: dict[str, np.ndarray]):
    names = np.empty((1, len(NAMES)), dtype=object)
    names[0, :] = NAMES
    scipy.io.savemat(root / "label_list.mat", {"label_list": names})
    for kind in ("image-level", "pixel-level"):
        (root / "annotations" / kind).mkdir(parents=True, exist_ok=True)
    for stem, t in tags.items():
        scipy.io.savemat(
            root / "annotations" / "image-level" / f"{stem}.mat", {"tags": np.array([t], np.uint8)}
        )
        _photo(root / "photos" / f"{stem}.jpg")
    for stem, m in masks.items():
        scipy.io.savemat(root / "annotations" / "pixel-level" / f"{stem}.mat", {"groundtruth": m})
        _photo(root / "photos" / f"{stem}.jpg", m.shape[1], m.shape[0])


def _mask(areas: dict[int, int], h=30, w=20) -> np.ndarray:
    """Row-major runs of each label id with the given pixel counts, the rest null (0)."""
    flat = np.zeros(h * w, np.uint8)
    start = 0
    for k, n in areas.items():
        flat[start : start + n] = k
        start += n
    return flat.reshape(h, w)


def test_mask_tags_use_the_minimum_area(tmp_path):
    # bag 150 px, hat 99 px (below 100), hair 200 px (dropped), skirt 100 px (exactly the minimum)
    _ccp_tree(tmp_path, {"0100": [0, 3]}, {"0001": _mask({1: 150, 3: 99, 2: 200, 5: 100})})
    parts = read_ccp_parts(tmp_path)
    assert [s.labels for s in parts["pixel-level"].samples] == [("bag", "skirt")]
    assert [s.labels for s in parts["image-level"].samples] == [("hat",)]
    assert [s.labels for s in read_ccp_parts(tmp_path, min_pixels=50)["pixel-level"].samples] == [
        ("bag", "hat", "skirt")
    ]
    ds = read_ccp(tmp_path)
    assert [s.path.stem for s in ds.samples] == ["0001", "0100"] and ds.label_names == ["bag", "hat", "skirt"]
    only = read_ccp(tmp_path, annotations="pixel-level")
    assert [s.path.stem for s in only.samples] == ["0001"]


def test_garment_regions_have_tight_inclusive_boxes():
    mask = np.zeros((10, 8), np.uint8)
    mask[2:5, 1:4] = 5  # skirt: rows 2-4, columns 1-3
    mask[7, 6] = 1  # one bag pixel: below min_pixels=2
    mask[0:2, 0:8] = 2  # hair: dropped
    regions = garment_regions(mask, NAMES, min_pixels=2)
    assert [(r.label, r.index, r.area, r.box) for r in regions] == [("skirt", 5, 9, (1, 2, 3, 4))]


@pytest.mark.parametrize("make, message", [
    (lambda p: scipy.io.savemat(p, {"groundtruth": _mask({1: 150}, h=31)}),
     r"mask is 20x31 pixels but its photo 0001.jpg is 20x30"),
    (lambda p: scipy.io.savemat(p, {"groundtruth": _mask({7: 150})}),
     r"label index 7 out of range; expected 0-based indices below 6"),
    (lambda p: p.write_bytes(b"not a mat file"), r"cannot read variable 'groundtruth'"),
    (lambda p: scipy.io.savemat(p, {"tags": np.array([[1]])}),
     r"cannot read variable 'groundtruth' \(not in the file\)"),
    (lambda p: scipy.io.savemat(p, {"groundtruth": np.full((30, 20), 0.5)}),
     r"expected integer label indices"),
    (lambda p: scipy.io.savemat(p, {"groundtruth": np.zeros((2, 30, 20), np.uint8)}),
     r"expected a 2-D H x W mask"),
])  # fmt: skip
def test_bad_masks_are_one_clear_error_naming_the_file(tmp_path, make, message):
    _ccp_tree(tmp_path, {"0100": [1]}, {"0001": _mask({1: 150})})
    make(tmp_path / "annotations" / "pixel-level" / "0001.mat")
    with pytest.raises(DataFormatError, match=r"pixel-level/0001\.mat: .*" + message):
        read_ccp(tmp_path)
    result = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "0001.mat: error" in result.output and "0100.mat" not in result.output, result.output


def test_data_check_lists_every_bad_mask(tmp_path):
    _ccp_tree(
        tmp_path, {"0100": [1]}, {"0001": _mask({1: 150}), "0002": _mask({9: 5}), "0003": _mask({1: 150})}
    )
    _photo(tmp_path / "photos" / "0003.jpg", 21, 30)  # now a different size from its mask
    out = runner.invoke(app, ["data", "check", str(tmp_path), "--no-images"]).output
    assert "0002.mat: error [label]" in out and "0003.mat: error [size]" in out, out
    assert "2 errors" in out


def test_each_annotation_kind_is_split_on_its_own(tmp_path):
    rng = np.random.default_rng(0)
    tags = {f"{1100 + i}": [int(rng.integers(1, 6)), int(rng.integers(1, 6))] for i in range(40)}
    masks = {f"{i:04d}": _mask({int(rng.integers(1, 6)): 150, 5: 120}) for i in range(1, 31)}
    _ccp_tree(tmp_path, tags, masks)
    cfg = load_config(None, [f"data.path={tmp_path}", "data.format=ccp"])
    bundle = build_data(cfg, DataConfig(input_size=(32, 32)))
    alone = split_dataset(read_ccp(tmp_path, annotations="image-level"), seed=0)
    for split in ("train", "val", "test"):
        image_level = [p for p in bundle.paths.get(split, []) if int(p[-8:-4]) >= 1100]
        assert image_level == [str(s.path) for s in alone[split].samples], split
    assert sum(len(v) for v in bundle.paths.values()) == 70


def _clothing_tree(root, rows: list[str], files: list[str]):
    (root / "images").mkdir(parents=True)
    (root / "images.csv").write_text("image,sender_id,label,kids\n" + "\n".join(rows) + "\n")
    for f in files:
        _photo(root / "images" / f"{f}.jpg")


def test_clothing_dataset_skips_unsure_rows_and_keeps_metadata(tmp_path):
    _clothing_tree(tmp_path, ["a,1,T-Shirt,False", "b,2,Not sure,False", "c,2,Dress,True", "d,3,Skip,False",
                              "e,3,Other,False", "f,4,Shoes,false"], ["a", "c", "f"])  # fmt: skip
    ds = read_clothing_dataset(tmp_path)
    assert ds.data.class_names == ["dress", "shoes", "t-shirt"]
    assert [(p.stem, k) for p, k in ds.data.samples] == [("a", 2), ("c", 0), ("f", 1)]
    assert ds.kids.tolist() == [False, True, False] and ds.senders.tolist() == ["1", "2", "4"]
    assert dict(ds.skipped) == {"Not sure": 1, "Skip": 1, "Other": 1}
    out = runner.invoke(app, ["data", "stats", str(tmp_path)]).output
    assert (
        "images: 3   classes: 3" in out
        and "skipped rows: Not sure 1, Other 1, Skip 1; kids' clothes: 1 of 3" in out
    ), out
    out = runner.invoke(app, ["data", "check", str(tmp_path)]).output
    assert (
        "0 errors, 1 warnings" in out and "(format: clothing_dataset)" in out and "3 rows labelled" in out
    ), out


@pytest.mark.parametrize("rows, files, message", [
    (["a,1,Dress,False", "a,2,Hat,False"], ["a"],
     r"images.csv:3: image 'a' is listed twice \(first on line 2\)"),
    (["a,1,Dress,False", "b,1,Hat,False"], ["a"], r"images.csv:3: no image file for 'b'"),
    (["a,1,Dress,maybe"], ["a"], r"images.csv:2: field 'kids': expected True or False, found 'maybe'"),
    (["a,1,Dress"], ["a"], r"images.csv:2: expected 4 fields"),
])  # fmt: skip
def test_clothing_dataset_errors_name_the_line(tmp_path, rows, files, message):
    _clothing_tree(tmp_path, rows, files)
    with pytest.raises(DataFormatError, match=message):
        read_clothing_dataset(tmp_path)
    assert runner.invoke(app, ["data", "check", str(tmp_path)]).exit_code == 1


def test_clothing_split_is_stratified_and_holds_out_photos(tmp_path):
    rows = [f"p{i},{i % 7},{'Dress' if i < 60 else 'Hat'},False" for i in range(100)]
    _clothing_tree(tmp_path, rows, [f"p{i}" for i in range(100)])
    holdout = tmp_path / "val_photos"
    for i in (1, 2, 70):
        _photo(holdout / ("dress" if i < 60 else "hat") / f"p{i}.jpg")
    held = holdout_ids(holdout)
    assert held == {"p1", "p2", "p70"}
    ds = read_clothing_dataset(tmp_path)
    parts = split_clothing(ds, (0.8, 0.1, 0.1), seed=3, holdout=held)
    stems = {k: {p.stem for p, _ in v.data.samples} for k, v in parts.items()}
    assert held <= stems["val"] and not held & (stems["train"] | stems["test"])
    assert sum(map(len, stems.values())) == 100 and not stems["train"] & stems["test"]
    # per class, after the hold-out: dress 58 -> 46 / 6 / 6 (rounded cuts), hat 39 -> 31 / 4 / 4
    counts = {k: np.bincount(v.data.targets(), minlength=2).tolist() for k, v in parts.items()}
    assert counts == {"train": [46, 31], "val": [6 + 2, 4 + 1], "test": [6, 4]}
    assert (
        split_clothing(ds, (0.8, 0.1, 0.1), seed=3, holdout=held)["train"].data.samples
        == parts["train"].data.samples
    )


def test_real_clothing_full_and_ccp():
    full = read_clothing_dataset(shared_path("clothing-full"))
    assert len(full) == 4398 and len(full.data.class_names) == 17 and int(full.kids.sum()) == 339
    held = holdout_ids(shared_path("clothing-small") / "validation")
    parts = split_clothing(full, (0.8, 0.1, 0.1), seed=0, holdout=held)
    assert len(held) == 341 and held <= {p.stem for p, _ in parts["val"].data.samples}
    small_train = holdout_ids(shared_path("clothing-small") / "train")
    assert len(small_train) == 3068 and not held & small_train
    ccp = shared_path("ccp")
    names = read_ccp_label_list(ccp / "label_list.mat")
    regions = garment_regions(
        read_ccp_mask(ccp / "annotations/pixel-level/0001.mat", 59, ccp / "photos/0001.jpg"), names
    )
    assert [r.label for r in regions] == ["blouse", "shoes", "skirt", "stockings", "sunglasses", "vest"]
