"""Train / eval transform presets and the torch Datasets (including bad-image handling)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from fashionlens.data import (
    BadImageError,
    ClassificationDataset,
    DataConfig,
    LabelledSet,
    MultiLabelDataset,
    Sample,
    build_transforms,
    draft_size,
    read_image_folder,
)

CFG = DataConfig(input_size=(40, 32), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))


def test_draft_size_is_width_height() -> None:
    assert draft_size(CFG) == (32, 40)


@pytest.mark.parametrize("train", [False, True])
def test_shape_dtype(train: bool) -> None:
    out = build_transforms(CFG, train=train)(Image.new("RGB", (123, 77), (200, 10, 90)))
    assert out.shape == (3, 40, 32) and out.dtype == torch.float32


def test_eval_constant_colour_normalisation() -> None:
    rgb = (255, 102, 0)
    out = build_transforms(CFG, train=False)(Image.new("RGB", (90, 60), rgb))
    expected = [(v / 255 - m) / s for v, m, s in zip(rgb, CFG.mean, CFG.std, strict=True)]
    for c in range(3):
        torch.testing.assert_close(out[c], torch.full((40, 32), expected[c]), atol=1e-5, rtol=0)


def test_eval_is_deterministic_and_resizes_without_crop() -> None:
    img = Image.new("RGB", (64, 40), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 8, 40))  # white strip on the left eighth
    t = build_transforms(CFG, train=False)
    a, b = t(img), t(img)
    assert torch.equal(a, b)
    left = a[0, :, 0] * CFG.std[0] + CFG.mean[0]
    assert torch.all(left > 0.9)  # the border survives: no centre crop


def test_train_random_but_bounded() -> None:
    torch.manual_seed(0)
    t = build_transforms(CFG, train=True)
    img = Image.effect_noise((80, 120), 60).convert("RGB")
    outs = [t(img) for _ in range(5)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    lo = min((0 - m) / s for m, s in zip(CFG.mean, CFG.std, strict=True))
    hi = max((1 - m) / s for m, s in zip(CFG.mean, CFG.std, strict=True))
    assert all(o.min() >= lo - 1e-5 and o.max() <= hi + 1e-5 for o in outs)


def test_train_crop_box_inside_image() -> None:
    t = build_transforms(DataConfig(input_size=(224, 224)), train=True)
    torch.manual_seed(1)
    for w, h in ((550, 830), (300, 200), (7, 5)):
        for _ in range(50):
            left, top, right, bottom = t.crop_box(w, h)
            assert 0 <= left < right <= w and 0 <= top < bottom <= h
            area = (right - left) * (bottom - top) / (w * h)
            assert area <= 1.0 and (w < 10 or area > 0.45)


def test_unknown_interpolation() -> None:
    with pytest.raises(ValueError, match="interpolation"):
        build_transforms(DataConfig(interpolation="cubic-ish"), train=False)


def _write_jpg(path: Path, rgb: tuple[int, int, int]) -> Path:
    Image.new("RGB", (60, 50), rgb).save(path, quality=95)
    return path


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    good0 = _write_jpg(tmp_path / "good0.jpg", (250, 0, 0))
    good1 = _write_jpg(tmp_path / "good1.jpg", (0, 250, 0))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good0.read_bytes()[:200])
    return {"good0": good0, "good1": good1, "empty": empty, "truncated": truncated}


def _labelled(images: dict[str, Path], order: list[str]) -> LabelledSet:
    labels = {"good0": ("a",), "good1": ("b",), "empty": ("a", "b"), "truncated": ("b",)}
    return LabelledSet(
        [Sample(images[k], labels[k], None) for k in order], ["a", "b"], images["good0"].parent
    )


def test_multilabel_dataset_sample(images: dict[str, Path]) -> None:
    ds = MultiLabelDataset(_labelled(images, ["good0", "good1"]), build_transforms(CFG, False), CFG)
    sample = ds[1]
    assert set(sample) == {"image", "labels", "index"}
    assert sample["image"].shape == (3, 40, 32) and sample["image"].dtype == torch.float32
    assert sample["labels"].tolist() == [0.0, 1.0] and sample["labels"].dtype == torch.float32
    assert sample["index"] == 1


def test_bad_images_skip(images: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    ds = MultiLabelDataset(_labelled(images, ["good0", "empty", "truncated", "good1"]), None, CFG, "skip")
    with caplog.at_level(logging.WARNING, logger="fashionlens.data.datasets"):
        first = ds[1]
        again = ds[2]
    assert first["index"] == again["index"] == 3  # the next good sample, deterministically
    assert first["labels"].tolist() == [0.0, 1.0]
    assert torch.equal(first["image"], again["image"])
    assert ds.bad_files == {images["empty"], images["truncated"]}
    assert len([r for r in caplog.records if "skipping bad image" in r.message]) == 2  # once per file
    only_bad_then_good = MultiLabelDataset(_labelled(images, ["empty", "good1"]), None, CFG)
    assert only_bad_then_good[0]["index"] == 1
    all_bad = MultiLabelDataset(_labelled(images, ["empty", "truncated"]), None, CFG)
    with pytest.raises(BadImageError, match="all 2 images"):
        all_bad[0]


@pytest.mark.parametrize("bad", ["empty", "truncated"])
def test_bad_images_fail(images: dict[str, Path], bad: str) -> None:
    ds = MultiLabelDataset(_labelled(images, ["good0", bad]), None, CFG, bad_images="fail")
    assert ds[0]["index"] == 0
    with pytest.raises(BadImageError, match=f"{bad}.jpg"):
        ds[1]
    with pytest.raises(ValueError, match="bad_images"):
        MultiLabelDataset(_labelled(images, ["good0"]), None, CFG, bad_images="ignore")


def test_classification_dataset(tmp_path: Path) -> None:
    for cls, rgb in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / "train" / cls).mkdir(parents=True)
        _write_jpg(tmp_path / "train" / cls / "1.jpg", rgb)
    (tmp_path / "train" / "b" / "2.jpg").write_bytes(b"")
    ds = ClassificationDataset(read_image_folder(tmp_path), build_transforms(CFG, True), CFG)
    sample = ds[1]
    assert set(sample) == {"image", "category", "index"}
    assert sample["category"].dtype == torch.int64 and sample["category"].shape == ()
    assert int(sample["category"]) == 1 and sample["image"].shape == (3, 40, 32)
    assert ds[2]["index"] == 0  # bad last file wraps around to the first good one
    batch = torch.utils.data.default_collate([ds[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 40, 32) and batch["category"].tolist() == [0, 1, 0]


LETTERBOX = DataConfig(input_size=(40, 32), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), resize="letterbox")


def test_letterbox_keeps_a_landscape_photo_undistorted() -> None:
    # 64 x 48 landscape photo into a 32 wide x 40 high input: scaled by 1/2 to 32 x 24, bands of 8 rows
    img = Image.new("RGB", (64, 48), (255, 255, 255))
    out = build_transforms(LETTERBOX, train=False)(img)
    assert out.shape == (3, 40, 32)
    pixels = out * torch.tensor(LETTERBOX.std).view(3, 1, 1) + torch.tensor(LETTERBOX.mean).view(3, 1, 1)
    torch.testing.assert_close(pixels[:, 8:32], torch.ones(3, 24, 32), atol=1e-5, rtol=0)
    pad = torch.tensor([round(255 * m) / 255 for m in LETTERBOX.mean]).view(3, 1, 1)
    for band in (pixels[:, :8], pixels[:, 32:]):  # mean-colour padding: (almost) zero after normalising
        torch.testing.assert_close(band, pad.expand_as(band), atol=1e-5, rtol=0)


def test_letterbox_squashes_nothing_when_the_aspect_already_matches() -> None:
    img = Image.effect_noise((64, 80), 60).convert("RGB")  # 4:5, the input's own aspect
    a = build_transforms(LETTERBOX, train=False)(img)
    b = build_transforms(CFG, train=False)(img)
    assert torch.equal(a, b)


def test_letterbox_training_crops_are_padded_not_stretched() -> None:
    torch.manual_seed(0)
    t = build_transforms(LETTERBOX.replace(extra={"crop_scale": [0.9, 1.0]}), train=True)
    t.jitter = 0.0
    img = Image.new("RGB", (120, 60), (255, 255, 255))  # 2:1 landscape: crops stay about 2:1
    for _ in range(5):
        pixels = t(img) * torch.tensor(LETTERBOX.std).view(3, 1, 1) + torch.tensor(LETTERBOX.mean).view(
            3, 1, 1
        )
        white_rows = int((pixels.min(0).values.min(1).values > 0.99).sum())
        assert 12 <= white_rows <= 20, white_rows  # about 32 / 2 = 16 rows of photo, the rest padding


def test_letterbox_box_and_input_to_photo_invert_each_other() -> None:
    from fashionlens.data.transforms import input_to_photo, letterbox_box

    assert letterbox_box(400, 300, (320, 224)) == (0, 76, 224, 168)  # hand-worked: 224 / 400 = 0.56
    assert letterbox_box(300, 600, (320, 224)) == (32, 0, 160, 320)  # tall photo: bands left and right
    # 2:3 within 1.15x of 10:7
    assert letterbox_box(550, 825, (320, 224), max_stretch=1.15) == (0, 0, 224, 320)
    for cfg in (LETTERBOX, LETTERBOX.replace(max_stretch=1.3), CFG):
        width, height = 640, 200
        photo = torch.tensor([[0.0, 0.0], [320.0, 100.0], [640.0, 200.0], [17.0, 150.0]]).numpy()
        if cfg.resize == "letterbox":
            left, top, w, h = letterbox_box(width, height, cfg.input_size, cfg.max_stretch)
            normalised = (photo * [w / width, h / height] + [left, top]) / [
                cfg.input_size[1],
                cfg.input_size[0],
            ]
        else:
            normalised = photo / [width, height]
        torch.testing.assert_close(
            torch.from_numpy(input_to_photo(normalised, (width, height), cfg)),
            torch.from_numpy(photo).double(),
        )


def test_unknown_resize_mode_is_named() -> None:
    with pytest.raises(ValueError, match="resize must be one of"):
        DataConfig(resize="crop")
    with pytest.raises(ValueError, match="max_stretch"):
        DataConfig(resize="letterbox", max_stretch=0.5)
    old = DataConfig.from_dict({"input_size": [8, 8]})  # a model saved before the options existed
    assert (old.resize, old.max_stretch) == ("squash", 1.0)


def test_max_stretch_stretches_a_little_and_pads_the_rest() -> None:
    # 64 x 48 landscape into 32 x 40: stretched 1.25x to 64 x 60, fitted to 32 x 30, bands of 5 rows
    cfg = LETTERBOX.replace(max_stretch=1.25)
    pixels = build_transforms(cfg, train=False)(Image.new("RGB", (64, 48), (255, 255, 255)))
    pixels = pixels * torch.tensor(cfg.std).view(3, 1, 1) + torch.tensor(cfg.mean).view(3, 1, 1)
    white_rows = (pixels.min(0).values.min(1).values > 0.99).nonzero().flatten().tolist()
    assert white_rows == list(range(5, 35))
    # 4:3 vs the input's 5:4: within 1.25x, squashed
    portrait = Image.effect_noise((60, 80), 60).convert("RGB")
    assert torch.equal(
        build_transforms(cfg, train=False)(portrait), build_transforms(CFG, train=False)(portrait)
    )
