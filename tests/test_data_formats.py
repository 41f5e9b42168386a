"""The data-format registry: one record per format, the lists of formats derived from it, and a new
format added with one registration."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fashionlens.data import formats
from fashionlens.data.check import run_check
from fashionlens.data.formats import DataFormat, detect_format, format_names, get_format, register_format
from fashionlens.errors import ConfigError
from fashionlens.train.config import DATA_FORMATS


def test_every_list_of_formats_comes_from_the_registry() -> None:
    assert format_names() == ("ccp", "multilabel", "image_folder", "clothing_dataset", "deepfashion")
    assert DATA_FORMATS == (*format_names(), "mixed")
    assert format_names(detection_order=True, stats=True) == ("ccp", "clothing_dataset", "multilabel",
                                                               "image_folder")  # fmt: skip
    with pytest.raises(ConfigError, match="--data-format must be one of ccp, multilabel"):
        get_format("coco")


def test_detection(tmp_path: Path) -> None:
    (tmp_path / "file.csv").write_text("image,main,labels\n")
    assert detect_format(tmp_path / "file.csv") == "multilabel"
    for name, make in (("deepfashion", lambda p: (p / "Anno").mkdir()),
                       ("ccp", lambda p: (p / "label_list.mat").write_bytes(b"")),
                       ("clothing_dataset", lambda p: (p / "images.csv").write_text(""))):  # fmt: skip
        (tmp_path / name).mkdir()
        make(tmp_path / name)
        assert detect_format(tmp_path / name) == name
    assert detect_format(tmp_path) == "image_folder"  # the fallback


def test_a_new_format_is_one_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "FORMATS", dict(formats.FORMATS))  # leave the real registry as it was
    register_format(DataFormat(
        "flat", "a folder of photos and a flat.txt", detect=lambda p: (p / "flat.txt").is_file(),
        check=f"{__name__}:_check_flat", bundle="flat_module:flat_bundle", priority=5,
    ))  # fmt: skip
    (tmp_path / "flat.txt").write_text("")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.jpg")
    assert detect_format(tmp_path) == "flat" and "flat" in format_names()
    result = run_check(tmp_path)
    assert result.fmt == "flat" and result.summary() == "0 errors, 0 warnings in 1 files"
    with pytest.raises(ConfigError, match="already registered"):
        register_format(formats.FORMATS["flat"])


def _check_flat(path: Path, result, check_images: bool, label_list=None, workers: int = 0) -> None:
    result.files.add(str(path / "flat.txt"))
