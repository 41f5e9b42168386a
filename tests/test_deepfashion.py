"""DeepFashion reader (malformed files, FLD variant), joint landmark transforms, heatmaps, dataset."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionlens.data.config import DataConfig
from fashionlens.data.datasets import DeepFashionDataset
from fashionlens.data.deepfashion import (
    _fast_ints,
    _sign_digits,
    _slow_ints,
    read_deepfashion,
)
from fashionlens.data.errors import DataFormatError
from fashionlens.data.images import BadImageError
from fashionlens.data.landmark_transforms import (
    FLIP_PAIRS,
    JointTransform,
    build_joint_transforms,
    crop_box,
    hflip,
)
from fashionlens.data.synth import synth_deepfashion
from fashionlens.losses import gaussian_targets, heatmap_loss

N = 12


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("df_pristine")
    synth_deepfashion(root, n=N, seed=5, image_size=(72, 64))
    return root


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    """A fresh copy that a test may break."""
    return Path(shutil.copytree(pristine, tmp_path / "df"))


def _edit_line(path: Path, lineno: int, edit) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = edit(lines[lineno - 1])
    path.write_text("\n".join(lines) + "\n")


def _expect_error(root: Path, rel: str, line: int | None, *words: str, **kw) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        read_deepfashion(root, **kw)
    err = info.value
    assert err.path == str(root / rel) and err.line == line, str(err)
    assert str(err).startswith(f"{root / rel}:{line}: " if line else f"{root / rel}: ")
    for w in words:
        assert w in str(err)
    return err


# ----------------------------------------------------------------------------- reader


def test_error_str_and_pickle():
    import pickle

    err = DataFormatError("Anno/list_bbox.txt", 7, "expected 4 integers")
    assert str(err) == "Anno/list_bbox.txt:7: expected 4 integers"
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.line, again.message) == ("Anno/list_bbox.txt", 7, "expected 4 integers")
    assert str(DataFormatError("one message")) == "one message"


def test_reads_partitions_and_subsets(pristine):
    full = read_deepfashion(pristine)
    assert len(full) == N and full.attributes.shape == (N, 1000) and full.attributes.dtype == np.int8
    assert full.landmarks.shape == (N, 8, 2) and full.landmarks.dtype == np.float32
    assert full.bbox.dtype == np.int32 and full.category.dtype == np.int64
    assert len(full.category_names) == 50 and len(full.attribute_types) == 1000
    np.testing.assert_array_equal(full.landmark_visible, full.landmark_visibility == 0)
    for part in ("train", "val", "test"):
        sub = read_deepfashion(pristine, partition=part)
        assert len(sub) == int((full.partition == part).sum()) and set(sub.partition) == {part}
    sub = full.subset([3, 1])
    assert list(sub.image_names) == [full.image_names[3], full.image_names[1]]
    assert sub.attribute_names is full.attribute_names


def test_attribute_names_with_spaces(root):
    path = root / "Anno/list_attr_cloth.txt"
    lines = path.read_text().splitlines()
    lines[2] = "abstract  chevron print            1"
    path.write_text("\n".join(lines) + "\n")
    idx = read_deepfashion(root)
    assert idx.attribute_names[0] == "abstract  chevron print" and idx.attribute_types[0] == 1
    assert "stripe print" in list(idx.attribute_names)


@pytest.mark.parametrize("count", ["13", "abc"])
def test_wrong_count_line(root, count):
    _edit_line(root / "Anno/list_bbox.txt", 1, lambda _: count)
    _expect_error(root, "Anno/list_bbox.txt", 1, count, *(["12"] if count == "13" else []))


def test_wrong_number_of_attribute_values(root):
    _edit_line(root / "Anno/list_attr_img.txt", 7, lambda s: s.rsplit(maxsplit=1)[0])
    _expect_error(root, "Anno/list_attr_img.txt", 7, "expected 1000 attribute values", "found 999")


@pytest.mark.parametrize("bad", ["x", "2", "1.0"])
def test_bad_attribute_value(root, bad):
    _edit_line(root / "Anno/list_attr_img.txt", 5, lambda s: s[: s.rfind(" ") + 1] + bad)
    _expect_error(root, "Anno/list_attr_img.txt", 5, "attribute values")


def test_unknown_clothes_type(root):
    _edit_line(
        root / "Anno/list_landmarks.txt",
        4,
        lambda s: s.replace(" 1  ", " 4  ", 1).replace(" 2  ", " 4  ", 1).replace(" 3  ", " 4  ", 1),
    )
    _expect_error(root, "Anno/list_landmarks.txt", 4, "unknown clothes type 4")


def test_non_numeric_bbox(root):
    _edit_line(root / "Anno/list_bbox.txt", 9, lambda s: s[:-3] + "0x7")
    _expect_error(root, "Anno/list_bbox.txt", 9, "integer bbox", "'0x7'")


def test_bbox_must_not_be_empty(root):
    _edit_line(root / "Anno/list_bbox.txt", 3, lambda s: s.split()[0] + "  050 010 050 060")
    _expect_error(root, "Anno/list_bbox.txt", 3, "x_1 < x_2")


@pytest.mark.parametrize("label", ["0", "51"])
def test_category_label_out_of_range(root, label):
    _edit_line(root / "Anno/list_category_img.txt", 6, lambda s: s.split()[0] + "   " + label)
    _expect_error(root, "Anno/list_category_img.txt", 6, "1..50", label)


def test_missing_image_file(root):
    idx = read_deepfashion(root)
    (root / idx.image_names[4]).unlink()
    read_deepfashion(root)  # not checked by default
    _expect_error(root, "Anno/list_category_img.txt", 4 + 3, str(idx.image_names[4]), check_images=True)


def test_image_missing_from_one_file(root):
    path = root / "Anno/list_bbox.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([str(N - 1), lines[1], *lines[2:5], *lines[6:]]) + "\n")
    _expect_error(root, "Anno/list_bbox.txt", None, "missing")


def test_rows_in_another_order_are_joined_by_name(root, pristine):
    path = root / "Anno/list_landmarks.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + lines[2:][::-1]) + "\n")
    a, b = read_deepfashion(pristine), read_deepfashion(root)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.clothes_type, b.clothes_type)


def test_fld_variation_type_and_unpadded_rows(root, pristine):
    """FLD rows: name, clothes_type, variation_type, then only the clothes type's triples."""
    path = root / "Anno/list_landmarks.txt"
    lines = path.read_text().splitlines()
    rows = []
    for line in lines[2:]:
        name, ctype, *vals = line.split()
        n_trip = {"1": 6, "2": 4, "3": 8}[ctype]
        rows.append(f"{name}  {ctype}  2  " + " ".join(vals[: 3 * n_trip]))
    path.write_text("\n".join([lines[0], "image_name clothes_type variation_type ...", *rows]) + "\n")
    a, b = read_deepfashion(pristine), read_deepfashion(root)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.landmark_visibility, b.landmark_visibility)


def test_fast_and_slow_parsers_agree():
    rng = np.random.default_rng(0)
    vals = rng.choice([-1, 0, 1], (50, 30))
    rests = [("\t" if i % 3 == 0 else "").encode() + "  ".join(f"{v:2d}" for v in row).encode() + b" \r\n"
             for i, row in enumerate(vals)]  # fmt: skip
    np.testing.assert_array_equal(_sign_digits(rests, 30), vals)
    np.testing.assert_array_equal(_fast_ints(rests, 30), vals)
    np.testing.assert_array_equal(_slow_ints(Path("x"), rests, list(range(50)), 30, "v")[0], vals)
    for bad in ([b"1 -1 11\n"], [b"1 - 1\n"], [b"1 -1\n"], [b"1 1-1\n"], [b"1 a 1\n"], [b"--1 1 1\n"]):
        assert _sign_digits(bad, 3) is None, bad


# ----------------------------------------------------------------------------- transforms


def _marker_image(w: int, h: int, points: np.ndarray) -> Image.Image:
    """Black image with pixel (int(x), int(y)) of landmark k set to a colour unique to k."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    for k, (x, y) in enumerate(points):
        arr[int(y), int(x)] = (255, 20 * k, 255 - 20 * k)
    return Image.fromarray(arr)


def test_hflip_is_exact_and_swaps_left_right():
    w, h = 37, 23
    pix = np.array([[2, 3], [30, 4], [5, 10], [33, 11], [9, 15], [25, 15], [12, 21], [20, 20]])
    lm = pix + 0.5  # pixel centres (continuous convention)
    vis = np.array([1, 1, 0, 1, 1, 1, 1, 0], dtype=bool)
    img = _marker_image(w, h, pix)
    img2, lm2, vis2 = hflip(img, lm, vis)
    arr, arr2 = np.asarray(img), np.asarray(img2)
    for a, b in FLIP_PAIRS:
        for src, dst in ((a, b), (b, a)):  # what was landmark `src` is now in slot `dst`
            assert lm2[dst, 0] == w - lm[src, 0] and lm2[dst, 1] == lm[src, 1]
            assert vis2[dst] == vis[src]
            x, y = np.floor(lm2[dst]).astype(int)
            assert (arr2[y, x] == arr[pix[src, 1], pix[src, 0]]).all() and arr2[y, x].any()
    img3, lm3, vis3 = hflip(img2, lm2, vis2)
    assert (np.asarray(img3) == arr).all()
    np.testing.assert_array_equal(lm3, lm)
    np.testing.assert_array_equal(vis3, vis)


def test_joint_transform_flip_matches_pixels():
    w = h = 16
    pix = np.array([[2, 3], [12, 3], [1, 8], [14, 8], [4, 10], [11, 10], [3, 14], [12, 14]])
    t = JointTransform(size=(h, w), mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest", flip_p=1.0)
    img_t, lm, vis = t(_marker_image(w, h, pix), pix + 0.5, np.ones(8, bool))
    assert vis.all()
    for k in range(8):
        x, y = (lm[k].numpy() * [w, h]).astype(int)
        src = pix[[1, 0, 3, 2, 5, 4, 7, 6][k]]
        assert img_t[0, y, x] == 1.0 and (x, y) == (w - 1 - src[0], src[1])


@pytest.mark.parametrize("interp", ["nearest", "bilinear"])
def test_crop_and_resize_move_landmarks_with_the_image(interp):
    w, h = 120, 90
    pix = np.array([[40, 20], [70, 22], [35, 40], [80, 41], [45, 55], [66, 56], [50, 70], [75, 72]])
    bbox = (30, 15, 90, 80)
    out = (150, 110) if interp == "nearest" else (48, 40)  # (H, W): upscale for exactness / downscale
    t = JointTransform(size=out, mean=(0, 0, 0), std=(1, 1, 1), interpolation=interp, margin=0.05)
    arr = np.zeros((h, w, 3), np.uint8)
    for x, y in pix:
        arr[y - 1 : y + 2, x - 1 : x + 2] = 255  # 3x3 markers
    img_t, lm, vis = t(Image.fromarray(arr), pix + 0.5, np.ones(8, bool), bbox)
    assert img_t.shape == (3, *out) and vis.all()
    x0, y0, x1, y1 = crop_box(bbox, (w, h), 0.05)
    expect = (pix + 0.5 - [x0, y0]) * [out[1] / (x1 - x0), out[0] / (y1 - y0)] / [out[1], out[0]]
    np.testing.assert_allclose(lm.numpy(), expect, rtol=1e-5)
    for k in range(8):
        x, y = (lm[k].numpy() * [out[1], out[0]]).astype(int)
        if interp == "nearest":
            assert img_t[0, y, x] == 1.0
        else:  # the brightest pixel of the marker's neighbourhood is at the landmark (+- 1 px)
            win = img_t[0, max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4]
            iy, ix = np.unravel_index(int(win.argmax()), win.shape)
            assert abs(max(y - 3, 0) + iy - y) <= 1 and abs(max(x - 3, 0) + ix - x) <= 1


def test_landmarks_outside_the_crop_become_invisible():
    t = JointTransform(size=(32, 32), margin=0.0)
    lm = np.array([[15.0, 15.0], [90.0, 15.0]] + [[20.0, 20.0]] * 6)
    _, out, vis = t(Image.new("RGB", (100, 60)), lm, np.ones(8, bool), (10, 10, 30, 30))
    assert vis[0] and not vis[1]
    assert ((out >= 0) & (out <= 1)).all()


def test_presets():
    cfg = DataConfig(input_size=(40, 32))
    ev, tr = build_joint_transforms(cfg, train=False), build_joint_transforms(cfg, train=True)
    assert ev.flip_p == 0 and ev.jitter_scale == 0 and tr.flip_p == 0.5 and tr.jitter_scale > 0
    img, lm, vis = Image.new("RGB", (50, 60), (10, 200, 30)), np.full((8, 2), 25.0), np.ones(8, bool)
    a, b = ev(img, lm, vis, (5, 5, 45, 55)), ev(img, lm, vis, (5, 5, 45, 55))
    assert a[0].shape == (3, 40, 32) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    r1, r2 = tr(img, lm, vis, (5, 5, 45, 55), g1), tr(img, lm, vis, (5, 5, 45, 55), g2)
    assert all(torch.equal(x, y) for x, y in zip(r1, r2, strict=True))


def test_gaussian_targets():
    lm = torch.tensor([[0.33, 0.61], [0.5, 0.5], [0.91, 0.1]])  # 0 and 2 not on pixel borders
    hm = gaussian_targets(lm, (16, 20), sigma=1.5)
    assert hm.shape == (3, 16, 20) and hm.dtype == torch.float32
    assert hm[1, 7, 9] == pytest.approx(hm[1, 8, 10].item())  # centre on a pixel corner: four equal peaks
    for k in (0, 2):
        iy, ix = np.unravel_index(int(hm[k].argmax()), (16, 20))
        assert (iy, ix) == (int(lm[k, 1] * 16), int(lm[k, 0] * 20))
        assert 0.5 < hm[k].max() <= 1.0
    centred = gaussian_targets(torch.tensor([[6.5 / 20, 3.5 / 16]]), (16, 20), sigma=1.0)
    assert centred[0, 3, 6] == pytest.approx(1.0)
    assert centred[0, 3, 7] == pytest.approx(math.exp(-0.5))  # one pixel away: exp(-1 / (2 sigma^2))
    assert gaussian_targets(lm.expand(4, 3, 2), (8, 8), 1.0).shape == (4, 3, 8, 8)


def test_heatmap_loss_counts_visible_landmarks_only():
    lm = torch.tensor([[[0.33, 0.61], [0.5, 0.5], [0.91, 0.1]]])
    vis = torch.tensor([[1.0, 0.0, 1.0]])
    pred = gaussian_targets(lm, (16, 20), 1.5)
    pred[0, 1] = 5.0  # the invisible landmark's map: any prediction costs nothing
    assert heatmap_loss(pred, lm, vis, 1.5).item() == pytest.approx(0.0, abs=1e-7)
    pred[0, 0] += 1.0  # squared error 1 at every pixel of one of the two visible maps
    assert heatmap_loss(pred, lm, vis, 1.5).item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------- dataset


def test_the_dataset_has_one_home():
    from fashionlens.data import deepfashion

    assert DeepFashionDataset.__module__ == "fashionlens.data.datasets"
    assert not hasattr(deepfashion, "DeepFashionDataset")  # the reader module no longer re-exports it


def test_dataset_samples(pristine):
    idx = read_deepfashion(pristine)
    idx.attributes[0, :5] = [1, -1, 0, 1, 0]
    cfg = DataConfig(input_size=(48, 40))
    ds = DeepFashionDataset(idx, pristine, build_joint_transforms(cfg, train=True), cfg)
    s = ds[0]
    assert set(s) == {
        "image",
        "category",
        "attributes",
        "attributes_mask",
        "landmarks",
        "landmark_visible",
        "index",
    }
    assert s["image"].shape == (3, 48, 40) and s["image"].dtype == torch.float32
    assert s["category"].dtype == torch.int64 and s["category"].ndim == 0 and s["index"] == 0
    assert s["attributes"].shape == s["attributes_mask"].shape == (1000,)
    assert s["attributes"][:5].tolist() == [1, 0, 0, 1, 0] and s["attributes_mask"][:5].tolist() == [
        1,
        1,
        0,
        1,
        0,
    ]
    assert s["landmarks"].shape == (8, 2) and s["landmarks"].dtype == torch.float32
    assert ((s["landmarks"] >= 0) & (s["landmarks"] <= 1)).all()
    assert s["landmark_visible"].shape == (8,) and s["landmark_visible"].dtype == torch.float32
    assert s["landmark_visible"].sum() <= idx.landmark_visible[0].sum()
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 48, 40) and batch["landmarks"].shape == (4, 8, 2)


def test_dataset_bad_images(root):
    idx = read_deepfashion(root)
    (root / idx.image_names[2]).write_bytes(b"not a jpeg")
    ds = DeepFashionDataset(idx, root, None, DataConfig(input_size=(32, 32)), bad_images="skip")
    with pytest.warns(UserWarning, match="img_"):
        s = ds[2]
    assert s["index"] == 3 and list(ds.bad_files) == [str(root / idx.image_names[2])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per file only
        assert ds[2]["index"] == 3
    strict = DeepFashionDataset(idx, root, None, DataConfig(input_size=(32, 32)), bad_images="fail")
    with pytest.raises(BadImageError, match=str(idx.image_names[2])):
        strict[2]
