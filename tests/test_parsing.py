"""The garment parser's pieces (issue 26): groups, the parsing head, mask targets, the loss, the per-pixel
metrics (against scikit-learn) and a tiny end-to-end train / evaluate / predict on hand-made CCP masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score

from fashionlens.data.transforms import MASK_IGNORE, EvalTransform, TrainTransform
from fashionlens.errors import ConfigError
from fashionlens.garments.groups import GARMENT_GROUPS, GROUP_NAMES, GroupMappingError, label_to_group
from fashionlens.losses import compute_losses, parsing_loss
from fashionlens.metrics import confusion_matrix, parsing_report, segmentation_scores
from fashionlens.models import FashionNet

CCP_NAMES = [
    "null", "accessories", "bag", "belt", "blazer", "blouse", "bodysuit", "boots", "bra", "bracelet", "cape",
    "cardigan", "clogs", "coat", "dress", "earrings", "flats", "glasses", "gloves", "hair", "hat", "heels",
    "hoodie", "intimate", "jacket", "jeans", "jumper", "leggings", "loafers", "necklace", "panties", "pants",
    "pumps", "purse", "ring", "romper", "sandals", "scarf", "shirt", "shoes", "shorts", "skin", "skirt",
    "sneakers", "socks", "stockings", "suit", "sunglasses", "sweater", "sweatshirt", "swimwear", "t-shirt",
    "tie", "tights", "top", "vest", "wallet", "watch", "wedges",
]  # fmt: skip


# ----------------------------------------------------------------------------- groups


def test_every_ccp_label_has_a_group():
    lut = label_to_group(CCP_NAMES)
    group = {n: GROUP_NAMES[g] for n, g in zip(CCP_NAMES, lut, strict=True)}
    assert group["null"] == "background" and group["skin"] == "skin" and group["hair"] == "hair"
    assert {group[n] for n in ("t-shirt", "blouse", "sweater", "top")} == {"upper"}
    assert {group[n] for n in ("blazer", "coat", "jacket", "cardigan")} == {"outer"}
    assert {group[n] for n in ("heels", "sneakers", "boots", "wedges")} == {"shoes"}
    assert group["jeans"] == group["leggings"] == "pants" and group["tights"] == "legwear"
    assert group["sunglasses"] == "glasses" and group["purse"] == "bag"
    assert len(GROUP_NAMES) == 17 and set(GARMENT_GROUPS) == set(GROUP_NAMES) - {"background", "skin", "hair"}


def test_a_label_in_no_group_is_named():
    with pytest.raises(GroupMappingError, match="'kimono'"):
        label_to_group(["null", "kimono"])


# ----------------------------------------------------------------------------- metrics


def test_confusion_and_iou_match_sklearn():
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 5, (4, 9, 7))
    target = rng.integers(0, 5, (4, 9, 7))
    target[0, :2] = MASK_IGNORE
    keep = target != MASK_IGNORE
    c = confusion_matrix(pred, target, 5)
    np.testing.assert_array_equal(c, sk_confusion(target[keep], pred[keep], labels=range(5)))
    s = segmentation_scores(c)
    reference = jaccard_score(target[keep], pred[keep], labels=range(5), average=None)
    np.testing.assert_allclose(s["iou"], reference)
    assert s["mIoU"] == pytest.approx(jaccard_score(target[keep], pred[keep], average="macro"))
    assert s["pixel_accuracy"] == pytest.approx((pred[keep] == target[keep]).mean())


def test_iou_of_an_absent_class_is_left_out():
    # hand-worked: class 2 is neither true nor predicted; classes 0, 1 have IoU 1/2 and 2/3
    pred, target = np.array([0, 1, 1, 0]), np.array([0, 1, 1, 1])
    s = segmentation_scores(confusion_matrix(pred, target, 3))
    assert np.isnan(s["iou"][2]) and s["iou"][:2] == pytest.approx([1 / 2, 2 / 3])
    assert s["mIoU"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_parsing_report_counts_garments():
    names = ["background", "skin", "hair", "upper", "pants"]
    target = np.zeros((1, 40, 40), np.int64)
    target[0, 5:20, 10:30] = 3
    target[0, 20:38, 12:28] = 4
    pred = target.copy()
    pred[0, 20:38, 12:28] = 3  # the pants predicted as upper: a wrong garment, and the upper box grows
    r = parsing_report(pred, target, names, ["upper", "pants"])
    g = r["garments"]
    assert (g["truth"], g["returned"]) == (2, 1)
    assert g["found"] == 0 and g["precision"] == 0.0  # the one returned box covers both: IoU < 0.5 with upper
    assert r["iou"]["pants"] == 0.0 and r["iou"]["hair"] is None


# ----------------------------------------------------------------------------- model


def test_parsing_head_shapes_and_spec_round_trip():
    from fashionlens.models import build_model

    net = FashionNet("test_tiny", heads={"labels": {"num_classes": 3}},
                     parsing={"strides": [], "num_classes": 5})  # fmt: skip
    out = net(torch.zeros(2, 3, 32, 32))
    assert out["parsing"].shape == (2, 5, 8, 8) and out["labels"].shape == (2, 3)
    again = build_model(net.spec)
    assert again.spec["parsing"] == {"num_classes": 5, "kind": "lraspp", "channels": 96, "strides": []}
    linear = FashionNet("test_tiny", heads={}, parsing={"strides": [], "num_classes": 4, "kind": "linear"})
    assert linear(torch.zeros(1, 3, 32, 32))["parsing"].shape == (1, 4, 8, 8)


def test_parsing_head_reads_the_finer_maps_of_an_efficientnet():
    net = FashionNet("efficientnet_lite0", heads={}, parsing={}, backbone_kwargs={"input_size": (64, 48)})
    assert net.eval()(torch.zeros(1, 3, 64, 48))["parsing"].shape == (1, 17, 8, 6)  # stride 8


@pytest.mark.parametrize(
    "parsing, message",
    [({"strides": [], "colour": 1}, "unknown setting"),
     ({"strides": [], "kind": "fcn"}, "model.parsing.kind"),
     ({"strides": [8]}, "no intermediate maps")],
)  # fmt: skip
def test_bad_parsing_settings_are_config_errors(parsing, message):
    with pytest.raises(ConfigError, match=message):
        FashionNet("test_tiny", heads={}, parsing=parsing)


# ----------------------------------------------------------------------------- targets and loss


def _two_colour_photo(h=40, w=32):
    """Left third red (class 1), the rest blue (class 2); the mask says the same."""
    photo = np.zeros((h, w, 3), np.uint8)
    photo[:, : w // 3] = (255, 0, 0)
    photo[:, w // 3 :] = (0, 0, 255)
    mask = np.full((h, w), 2, np.uint8)
    mask[:, : w // 3] = 1
    return Image.fromarray(photo), Image.fromarray(mask)


def test_eval_mask_target_is_a_quarter_nearest_and_letterbox_pads_with_ignore():
    photo, mask = _two_colour_photo()
    t = EvalTransform((40, 32), (0.5,) * 3, (0.5,) * 3)
    target = t.mask_target(mask)
    assert target.shape == (10, 8) and target.dtype == torch.int64
    assert target[:, :2].eq(1).all() and target[:, 3:].eq(2).all()
    wide = EvalTransform((40, 64), (0.5,) * 3, (0.5,) * 3, resize="letterbox")
    padded = wide.mask_target(mask)  # a 32x40 photo in a 64x40 input: bands left and right
    assert padded.shape == (10, 16)
    assert padded[:, 0].eq(MASK_IGNORE).all() and padded[:, -1].eq(MASK_IGNORE).all()
    assert set(padded.unique().tolist()) == {1, 2, MASK_IGNORE}


@pytest.mark.parametrize("seed", range(6))
def test_train_mask_follows_the_photo_through_crop_and_flip(seed):
    torch.manual_seed(seed)
    photo, mask = _two_colour_photo(80, 64)
    t = TrainTransform((40, 32), (0.0,) * 3, (1.0,) * 3, scale=(0.4, 1.0), flip_p=0.5, jitter=0.0)
    x, target = t.with_mask(photo, mask)
    red = x[0].reshape(10, 4, 8, 4).mean(dim=(1, 3))  # the image's red share per target cell
    sure = (red > 0.95) | (red < 0.05)  # cells away from the colour edge
    assert sure.sum() > 40
    assert torch.equal(target[sure] == 1, red[sure] > 0.5)


def test_parsing_loss_ignores_unlabelled_pixels_and_a_batch_without_masks_has_no_term():
    logits = torch.zeros(2, 4, 3, 3)  # uniform over 4 classes: CE = log 4 wherever it is scored
    target = torch.full((2, 6, 6), MASK_IGNORE)
    target[0, :2] = 1
    assert parsing_loss(logits, target).item() == pytest.approx(np.log(4))
    logits[0, 1] = 10.0  # confident and right on the labelled pixels; anything on the ignored ones
    assert parsing_loss(logits, target).item() < 1e-3
    empty = {"parsing": torch.full((2, 6, 6), MASK_IGNORE)}
    assert "parsing" not in compute_losses({"parsing": logits}, empty)


# ----------------------------------------------------------------------------- end to end


def _tiny_ccp(root, n=16):
    """Photos of a person: a top over trousers and shoes, or a dress; each label has its own colour."""
    names = np.empty((1, len(CCP_NAMES)), dtype=object)
    names[0, :] = CCP_NAMES
    root.mkdir(parents=True)
    scipy.io.savemat(root / "label_list.mat", {"label_list": names})
    for kind in ("pixel-level", "image-level"):
        (root / "annotations" / kind).mkdir(parents=True)
    (root / "photos").mkdir()
    colour = {"null": (230, 230, 230), "t-shirt": (200, 30, 30), "jeans": (30, 30, 200),
              "dress": (30, 160, 30),
              "heels": (20, 20, 20), "skin": (230, 180, 150)}  # fmt: skip
    for i in range(n):
        mask = np.zeros((96, 64), np.uint8)
        mask[8:20, 26:38] = CCP_NAMES.index("skin")
        if i % 4 == 3:
            mask[20:80, 16:48] = CCP_NAMES.index("dress")
        else:
            mask[20:50, 16:48] = CCP_NAMES.index("t-shirt")
            mask[50:84, 20:44] = CCP_NAMES.index("jeans")
        mask[86:94, 18:28] = mask[86:94, 36:46] = CCP_NAMES.index("heels")
        photo = np.zeros((96, 64, 3), np.uint8)
        for name, rgb in colour.items():
            photo[mask == CCP_NAMES.index(name)] = rgb
        Image.fromarray(photo).save(root / "photos" / f"{i + 1:04d}.jpg", quality=95)
        scipy.io.savemat(root / "annotations" / "pixel-level" / f"{i + 1:04d}.mat", {"groundtruth": mask})
    for i in range(n, n + 4):  # image-level photos: no mask, their parsing target is all "ignore"
        Image.new("RGB", (64, 96), (120, 120, 120)).save(root / "photos" / f"{i + 1:04d}.jpg")
        scipy.io.savemat(root / "annotations" / "image-level" / f"{i + 1:04d}.mat",
                         {"tags": np.array([[CCP_NAMES.index("t-shirt")]])})  # fmt: skip
    return root


def _tiny_config(path, data):
    path.write_text(json.dumps({
        "experiment": "parse-tiny",
        "data": {"format": "ccp", "path": str(data), "parsing": True, "input_size": [48, 32], "batch_size": 4,
                 "num_workers": 0, "split_fractions": [0.75, 0.25, 0.0], "crop_scale": [0.9, 1.0]},
        "model": {"backbone": "test_tiny", "pretrained": False, "heads": {"labels": {"kind": "linear"}},
                  "parsing": {"strides": [], "channels": 32}},
        "optim": {"lr": 0.01, "head_lr": 0.01},
        "trainer": {"max_epochs": 25, "monitor": "val/parse_mIoU"},
    }))  # fmt: skip
    return path


def test_tiny_train_evaluate_predict_garments(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from fashionlens.cli import app
    from fashionlens.garments.rle import decode_rle
    from fashionlens.inference.predictor import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = _tiny_ccp(tmp_path / "ccp")
    cfg = _tiny_config(tmp_path / "cfg.json", data)
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())["report"]
    p = report["parsing"]
    assert p["num_images"] == 4  # the validation photos with masks; the image-level ones are not scored
    assert p["pixel_accuracy"] > 0.8 and p["iou"]["background"] > 0.8
    model = tmp_path / "run" / "model.safetensors"
    out = tmp_path / "eval"
    result = runner.invoke(
        app, ["evaluate", str(model), "--data", str(data), "--split", "val", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    evaluated = json.loads((out / "metrics.json").read_text())
    evaluated = next(iter(evaluated["models"].values()))
    assert evaluated["parsing"]["mIoU"] == pytest.approx(p["mIoU"], abs=1e-6)
    assert "mIoU" in (out / "report.md").read_text()
    other = tmp_path / "other.safetensors"
    other.write_bytes(model.read_bytes())
    result = runner.invoke(app, ["compare", str(model), str(other), "--data", str(data), "--out",
                                 str(tmp_path / "cmp")])  # fmt: skip
    assert result.exit_code == 0, result.output
    compared = json.loads((tmp_path / "cmp" / "compare.json").read_text())["parsing"]
    first, second = compared["models"]  # both named after the experiment: parse-tiny, parse-tiny-2
    assert compared["num_photos"] == 4 and compared["models"][second]["mIoU"] == pytest.approx(p["mIoU"])
    assert compared["mIoU_difference"][second]["delta"] == 0.0
    assert "## parsing" in (tmp_path / "cmp" / "report.md").read_text()

    pred = load_model(model, backend="torch").predict([data / "photos" / "0001.jpg"], top_k=3)[0]
    assert pred.garments is not None and pred.garments, pred
    upper = [g for g in pred.garments if g.label == "upper"]
    assert upper, [g.label for g in pred.garments]
    mask = decode_rle(upper[0].mask)
    assert mask.shape == (96, 64)
    x0, y0, x1, y1 = upper[0].box
    assert abs(y0 - 20) <= 6 and abs(x0 - 16) <= 6 and abs(x1 - 48) <= 6
    assert upper[0].colours and upper[0].colours[0].label == "red"
    assert all(g.landmarks is None for g in pred.garments)  # the tiny model has no landmark branch
    none = load_model(model, backend="torch").predict([data / "photos" / "0001.jpg"], garments=False)[0]
    assert none.garments is None

    # ONNX and int8 exports carry the parser: the same garments from ONNX Runtime
    from fashionlens.inference.export import export_onnx
    from fashionlens.inference.quantize import quantize_int8

    onnx = export_onnx(model, tmp_path / "parser.onnx")
    int8 = tmp_path / "parser.int8.onnx"
    quantize_int8(model, int8, sorted((data / "photos").glob("*.jpg"))[:8])
    for path in (onnx, int8):
        got = load_model(path, backend="onnx").predict([data / "photos" / "0001.jpg"], top_k=3)[0]
        boxes = {g.label: g.box for g in got.garments}
        assert "upper" in boxes, path
        assert max(abs(a - b) for a, b in zip(boxes["upper"], upper[0].box, strict=True)) <= 4, path
