"""Landmarks and colours derived from garment masks: hand-made shapes with known points, the mirror
property, malformed input, and derive -> train -> evaluate end to end on a tiny CCP tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from fashionlens.cli import app
from fashionlens.data.deepfashion import read_deepfashion
from fashionlens.data.derive import COLOURS, colour_names, derive_landmarks, garment_colours
from fashionlens.data.derive_tree import crop_box
from fashionlens.data.landmark_transforms import FLIP_PAIRS

runner = CliRunner()
W = 61  # odd width: column 30 is the centre line, so the shapes are exactly symmetric


def _person(h=70):
    """(skin, face) canvases: a face (rows 2-9) and neck (rows 10-19) at columns 27-33."""
    skin = np.zeros((h, W), bool)
    skin[2:10, 25:36] = True
    skin[10:20, 27:34] = True
    return skin


def _t_top(h=70):
    """A T-shirt: torso rows 20-45 x cols 20-40, arms rows 20-26 out to cols 8 and 52, hands beyond."""
    top = np.zeros((h, W), bool)
    top[20:46, 20:41] = True
    top[20:27, 8:53] = True
    skin = _person(h)
    skin[20:27, 5:8] = skin[20:27, 53:56] = True  # hands
    return top, skin


def test_t_shirt_points_by_hand():
    top, skin = _t_top()
    xy, vis = derive_landmarks(top, skin, 1, person=top | skin)
    # collar: the neckline under the neck (cols 27-33, row 20); sleeves: the sleeve pixels within
    # 2 px of a hand (cols 8-9 / 51-52) farthest from the neckline midpoint (30, 20): the bottom
    # corners (8, 26) / (52, 26); hem: the torso's bottom corners.
    assert vis.tolist() == [0, 0, 0, 0, 2, 2, 0, 0]
    assert xy[[0, 1, 2, 3, 6, 7]].tolist() == [[27, 20], [33, 20], [8, 26], [52, 26], [20, 45], [40, 45]]


def test_skirt_points_by_hand():
    skirt = np.zeros((70, W), bool)
    for k, y in enumerate(range(30, 51)):  # a trapezoid: cols 24-36 at row 30, 2 px wider every 7 rows
        half = 6 + k // 7
        skirt[y, 30 - half : 31 + half] = True
    xy, vis = derive_landmarks(skirt, np.zeros_like(skirt), 2)
    # waistline: row round(30 + 0.03 * 21) = 31, cols 24 and 36; hem: the lowest row's ends (cols 22, 38)
    assert vis.tolist() == [2, 2, 2, 2, 0, 0, 0, 0]
    assert xy[4:].tolist() == [[24, 31], [36, 31], [22, 50], [38, 50]]
    covered = np.zeros_like(skirt)
    covered[25:30, 20:41] = True  # a top over the waistband: the waistline is occluded
    assert derive_landmarks(skirt, np.zeros_like(skirt), 2, others=covered)[1].tolist() == [
        2,
        2,
        2,
        2,
        1,
        1,
        0,
        0,
    ]


def test_dress_points_by_hand():
    dress, skin = _t_top()
    dress[40:46] = False
    dress[38:40, 20:41] = False
    dress[38:40, 23:38] = True  # a waist 2 px narrower each side at rows 38-39
    for k, y in enumerate(range(40, 60)):  # the skirt widens from cols 20-40
        dress[y, 20 - k // 4 : 41 + k // 4] = True
    xy, vis = derive_landmarks(dress, skin, 3, person=dress | skin)
    # waistline: the narrowest torso row between 25 % and 55 % of rows 20-59 (rows 30-41) is row 38
    assert vis.tolist() == [0] * 8
    assert xy.tolist() == [[27, 20], [33, 20], [8, 26], [52, 26], [23, 38], [37, 38], [16, 59], [44, 59]]
    # a coat over its top (no skin at the neckline): the collar, sleeves and waist are occluded, the hem not
    skin[10:20] = False
    _, vis = derive_landmarks(dress, skin, 3, person=dress | skin)
    assert vis.tolist() == [1, 1, 1, 1, 1, 1, 0, 0]


def _mirror_pairs(xy, vis):
    m_xy, m_vis = xy.copy(), vis.copy()
    for a, b in FLIP_PAIRS:
        m_xy[[a, b]] = xy[[b, a]]
        m_vis[[a, b]] = vis[[b, a]]
    m_xy[:, 0] = np.where(m_vis < 2, W - 1 - m_xy[:, 0], m_xy[:, 0])
    return m_xy, m_vis


@pytest.mark.parametrize("clothes_type", [1, 2, 3])
def test_mirrored_mask_gives_mirrored_points_with_left_and_right_swapped(clothes_type):
    rng = np.random.default_rng(clothes_type)
    top, skin = _t_top()
    garment = top.copy()
    garment[27:33, 40:47] = True  # an asymmetric bulge (a bag strap, a fold)
    garment[46:60, 22:27] = clothes_type != 1  # one longer panel for the lower / full body cases
    garment &= rng.random(garment.shape) > 0.02  # ragged edges, as real masks have
    skin[30:40, 50:54] = True
    xy, vis = derive_landmarks(garment, skin, clothes_type, person=garment | skin)
    m_xy, m_vis = derive_landmarks(
        garment[:, ::-1], skin[:, ::-1], clothes_type, person=(garment | skin)[:, ::-1]
    )
    want_xy, want_vis = _mirror_pairs(xy, vis)
    assert m_vis.tolist() == want_vis.tolist()
    np.testing.assert_array_equal(m_xy[m_vis < 2], want_xy[want_vis < 2])


def test_points_on_the_photo_border_are_cut_off():
    top, skin = _t_top()
    # the photo cuts the left sleeve
    xy, vis = derive_landmarks(top[:, 8:], skin[:, 8:], 1, person=(top | skin)[:, 8:])
    assert vis[2] == 2 and vis[3] == 0


@pytest.mark.parametrize("args, message", [
    ((np.zeros((5, 5), bool), np.zeros((5, 5), bool), 1), "empty"),
    ((np.ones((5, 5), bool), np.zeros((5, 6), bool), 1), "same shape"),
    ((np.ones((5, 5), bool), np.zeros((5, 5), bool), 4), "clothes_type must be 1"),
])  # fmt: skip
def test_malformed_input_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        derive_landmarks(*args)


@pytest.mark.parametrize("rgb, name", [
    ((0, 0, 0), "black"), ((40, 40, 60), "black"), ((255, 255, 255), "white"), ((128, 128, 128), "grey"),
    ((220, 20, 20), "red"), ((255, 192, 203), "pink"), ((255, 165, 0), "orange"), ((255, 255, 0), "yellow"),
    ((0, 128, 0), "green"), ((0, 0, 128), "blue"), ((128, 0, 128), "purple"), ((100, 50, 20), "brown"),
    ((225, 200, 160), "beige"),
])  # fmt: skip
def test_colour_rule_by_hand(rgb, name):
    assert COLOURS[int(colour_names(np.array([rgb], np.uint8))[0])] == name


def test_garment_colours_present_unknown_absent():
    photo = np.zeros((40, 40, 3), np.uint8)
    photo[:] = (220, 20, 20)
    photo[:, :4] = (0, 0, 200)  # blue: 10 % of the garment -> unknown
    garment = np.ones((40, 40), bool)
    got = dict(zip(COLOURS, garment_colours(photo, garment).tolist(), strict=True))
    # the 2-pixel erosion leaves cols 2-37: blue cols 2-3 = 2 of 36 columns (5.6 %, between 5 and 25 %)
    assert got["red"] == 1 and got["blue"] == 0 and got["green"] == -1 and got["black"] == -1
    # too few pixels
    assert garment_colours(photo[:10, :10], garment[:10, :10]).tolist() == [0] * len(COLOURS)


def test_crop_box_has_the_same_margin_on_every_side_then_clips():
    assert crop_box((10, 20, 29, 59), 0.1, (100, 100)) == (6, 16, 34, 64)  # pad 0.1 * 40 = 4
    assert crop_box((1, 2, 29, 59), 0.1, (31, 62)) == (0, 0, 31, 62)


# ----------------------------------------------------------------------------- end to end


NAMES = ["null", "dress", "hair", "skin", "skirt", "t-shirt", "shoes"]


def _tiny_ccp(root, n=12):
    """Photos of a T-shirt over a skirt, or a dress, with their masks; garment colours vary."""
    root.mkdir(parents=True)
    names = np.empty((1, len(NAMES)), dtype=object)
    names[0, :] = NAMES
    scipy.io.savemat(root / "label_list.mat", {"label_list": names})
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    (root / "photos").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros((70, W), np.uint8)
        top, skin = _t_top()
        mask[skin] = NAMES.index("skin")
        if i % 3 == 2:
            top[46:62, 18:43] = True
            mask[top] = NAMES.index("dress")
        else:
            mask[top] = NAMES.index("t-shirt")
            mask[46:62, 20:41] = NAMES.index("skirt")
        mask[62:66, 22:28] = mask[62:66, 33:39] = NAMES.index("shoes")
        photo = np.full((70, W, 3), 200, np.uint8)
        for k in range(1, len(NAMES)):
            photo[mask == k] = rng.integers(0, 255, 3)
        Image.fromarray(photo).save(root / "photos" / f"{i + 1:04d}.jpg", quality=95)
        scipy.io.savemat(root / "annotations" / "pixel-level" / f"{i + 1:04d}.mat", {"groundtruth": mask})
    return root


def test_derive_tree_reads_back_as_deepfashion(tmp_path):
    ccp = _tiny_ccp(tmp_path / "ccp")
    out = tmp_path / "tree"
    result = runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(out), "--margin", "0.2",
                                 "--workers", "1", "--min-area", "0.02", "--split-seed", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "12 photos -> 20 garments (upper 8, lower 8, full body 4)" in result.output
    index = read_deepfashion(out, check_images=True)
    assert len(index) == 20
    assert sorted(set(index.category_names[index.category])) == ["dress", "skirt", "t-shirt"]
    shirt = np.flatnonzero(index.image_names == "img/0001_t-shirt.jpg")[0]
    # the crop starts at the garment box (cols 8-52, rows 20-45) minus 0.2 x 45 = 9 px, clipped at 0
    assert index.bbox[shirt].tolist() == [8, 9, 52, 34]
    assert index.landmarks[shirt, 0].tolist() == [27, 20 - 11]  # the collar, moved into the crop
    with Image.open(out / "img" / "0001_t-shirt.jpg") as im:
        assert im.size == (61, 44)  # cols 8-52 +- 9 clipped to 0-60, rows 20-45 +- 9 = 11-54
    parts = {
        str(n).split("_")[0].split("/")[1]: p for n, p in zip(index.image_names, index.partition, strict=True)
    }
    assert set(parts.values()) <= {"train", "val", "test"}
    # every garment of a photo is in one split
    for stem in parts:
        assert (
            len({p for n, p in zip(index.image_names, index.partition, strict=True) if f"/{stem}_" in n}) == 1
        )


def test_bad_mask_is_skipped_with_its_name_or_fails(tmp_path):
    ccp = _tiny_ccp(tmp_path / "ccp", n=3)
    (ccp / "annotations" / "pixel-level" / "0002.mat").write_bytes(b"garbage")
    result = runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "a"), "--workers", "1"])
    assert result.exit_code == 0 and "skipped bad mask" in result.output and "0002.mat" in result.output
    assert "1 bad masks" in result.output
    result = runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "b"), "--bad", "fail"])
    assert result.exit_code == 2 and "0002.mat" in result.output
    assert not (tmp_path / "b" / "Anno" / "list_landmarks.txt").exists()  # no half-written tree
    assert (
        runner.invoke(
            app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "c"), "--bad", "maybe"]
        ).exit_code
        == 2
    )


def test_derive_then_train_then_evaluate(tmp_path):
    ccp = _tiny_ccp(tmp_path / "ccp", n=24)
    tree = tmp_path / "tree"
    assert (
        runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tree), "--workers", "2"]).exit_code == 0
    )
    run = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "configs/synth_ours.yaml", "--data", str(tree), "--out", str(run), "data.input_size=[32,32]",
        "data.batch_size=8", "data.num_workers=0", "model.backbone=test_tiny", "model.backbone_kwargs={}",
        "model.heads.category.conv_channels=16", "model.heads.attributes.conv_channels=16",
        "trainer.max_epochs=2", "trainer.accelerator=cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(run / "model.safetensors"), "--data", str(tree),
                                 "--out", str(tmp_path / "ev"), "--split", "train",
                                 "--accelerator", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())["models"]["synth_ours"]
    lm = report["deepfashion"]["landmarks"]
    assert 0 < lm["NE"] < 1 and 0 < lm["NE_mean_baseline"] < 1
    n_train = int((read_deepfashion(tree).partition == "train").sum())
    assert report["num_images"] == n_train and report["category"]["num_images"] == n_train
    # colours are their own type (6); no attribute file
    assert set(report["deepfashion"]["attributes"]) == {"all", "colour"}


def test_pose_says_why_it_is_unavailable(tmp_path):
    ccp = _tiny_ccp(tmp_path / "ccp", n=2)
    result = runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "out"), "--pose"])
    assert result.exit_code == 2 and "protobuf<5" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "Anno").exists()
