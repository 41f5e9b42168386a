"""``fashionlens data stats``, ``data synth-deepfashion`` and ``models`` through the CLI: every option's
effect.

The expected numbers are worked out by hand from tiny data sets written here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from fashionlens.cli import app
from fashionlens.data.deepfashion import ANNO_FILES
from fashionlens.data.synth import synth_deepfashion
from fashionlens.models import list_backbones

runner = CliRunner()


def _jpeg(path: Path, colour=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), colour).save(path, quality=90)


def stats(*args) -> tuple[int, list[str], str]:
    """Exit code, the output's lines and the output of ``fashionlens data stats ARGS``."""
    result = runner.invoke(app, ["data", "stats", *map(str, args)])
    return result.exit_code, result.output.splitlines(), result.output


def table(lines: list[str], title: str) -> list[list[str]]:
    """The rows (split on runs of 2+ spaces) of the table under ``title``, up to the next blank line."""
    start = lines.index(title) + 3  # title, header, dashes
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return [re.split(r"\s{2,}", ln.strip()) for ln in lines[start:end]]


# ----------------------------------------------------------------------------- hand-made data sets
# multi-label: 4 images; casual 3 (a b d), street 3 (a c d), sporty 2 (c d); labels per image 2 1 2 3;
# main labels casual 2, street 1, sporty 1; pairs casual+street 2 (a d), street+sporty 2 (c d),
# casual+sporty 1 (d): P(street|casual) = 2/3, P(sporty|street) = 2/3, P(casual|sporty) = 1/2.
CSV_ROWS = ["image,main,labels", "a.jpg,casual,casual|street", "b.jpg,casual,casual",
            "c.jpg,street,street|sporty", "d.jpg,sporty,sporty|casual|street"]  # fmt: skip


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    for name in "abcd":
        _jpeg(tmp_path / f"{name}.jpg")
    path = tmp_path / "styles.csv"
    path.write_text("\n".join(CSV_ROWS) + "\n")
    return path


def _ccp(root: Path) -> Path:
    """A 3-photo Clothing Co-Parsing folder: bag (0001), bag + hat (0002), hat (0003); null/hair/skin
    dropped."""
    root.mkdir(parents=True, exist_ok=True)
    names = np.empty((1, 5), dtype=object)
    names[0, :] = ["null", "bag", "hair", "hat", "skin"]
    scipy.io.savemat(root / "label_list.mat", {"label_list": names})
    (root / "annotations" / "image-level").mkdir(parents=True)
    for stem, tags in (("0001", [0, 1, 2, 4]), ("0002", [1, 3, 0]), ("0003", [3])):
        scipy.io.savemat(
            root / "annotations" / "image-level" / f"{stem}.mat", {"tags": np.array([tags], np.uint8)}
        )
        _jpeg(root / "photos" / f"{stem}.jpg")
    return root


def _image_folder(root: Path) -> Path:
    """train/red: 2 images, train/blue: 1."""
    for rel in ("train/red/1.jpg", "train/red/2.jpg", "train/blue/1.jpg"):
        _jpeg(root / rel)
    return root


def test_stats_of_a_multilabel_csv_by_hand(csv_file: Path) -> None:
    code, lines, out = stats(csv_file)  # a file: auto-detected as multi-label
    assert code == 0, out
    assert lines[0] == "images: 4   labels: 3   labels per image: mean 2.00, min 1, max 3"
    # per label: images, %, as the main label (a, b: casual; c: street; d: sporty), as a sub label
    assert table(lines, "images per label (as the main label / as a sub label)") == [
        ["casual", "3", "75.0", "2", "1"],
        ["street", "3", "75.0", "1", "2"],
        ["sporty", "2", "50.0", "1", "1"],
    ]
    assert table(lines, "most frequent label pairs") == [
        ["casual + street", "2", "0.67", "0.67"],
        ["sporty + street", "2", "1.00", "0.67"],
        ["casual + sporty", "1", "0.33", "0.50"],
    ]
    assert lines[-1] == "3 label(s) with < 5 images: casual, sporty, street"
    # the same data as JSONL, and --data-format multilabel named explicitly: the same report
    jsonl = csv_file.with_suffix(".jsonl")
    jsonl.write_text(
        "".join(
            f'{{"image": "{r.split(",")[0]}", "main": "{r.split(",")[1]}", "labels": '
            f"{str(r.split(',')[2].split('|')).replace(chr(39), chr(34))}}}\n"
            for r in CSV_ROWS[1:]
        )
    )
    assert stats(jsonl)[2] == out
    assert stats(csv_file, "--data-format", "multilabel")[2] == out


def test_stats_with_a_label_list(csv_file: Path) -> None:
    vocab = csv_file.parent / "styles.txt"
    vocab.write_text("sporty\ncasual\nstreet\nretro\n")  # retro is never used
    code, lines, out = stats(csv_file, "--label-list", vocab)
    assert code == 0, out
    assert lines[0] == "images: 4   labels: 4   labels per image: mean 2.00, min 1, max 3"
    rows = table(lines, "images per label (as the main label / as a sub label)")
    assert rows[-1] == ["retro", "0", "0.0", "0", "0"] and len(rows) == 4
    vocab.write_text("sporty\ncasual\n")  # street is not in it: the row that uses it is named
    code, _, out = stats(csv_file, "--label-list", vocab)
    assert code == 2 and "styles.csv:2" in out and "street" in out
    code, _, out = stats(_image_folder(csv_file.parent / "folder"), "--label-list", vocab)
    assert code == 2 and "--label-list is for multilabel data" in out


def test_stats_auto_detects_ccp_and_image_folders(tmp_path: Path) -> None:
    code, lines, out = stats(_ccp(tmp_path / "ccp"))  # label_list.mat: Clothing Co-Parsing
    assert code == 0, out
    assert lines[0] == "images: 3   labels: 2   labels per image: mean 1.33, min 1, max 2"
    assert table(lines, "images per label") == [["bag", "2", "66.7"], ["hat", "2", "66.7"]]
    assert table(lines, "most frequent label pairs") == [["bag + hat", "1", "0.50", "0.50"]]
    assert not any("main label" in line for line in lines)  # CCP has no main label

    code, lines, out = stats(_image_folder(tmp_path / "folder"))  # any other folder: class folders
    assert code == 0, out
    assert lines[0] == "images: 3   classes: 2"
    assert table(lines, "images per class") == [["red", "2", "66.7"], ["blue", "1", "33.3"]]
    assert lines[-1] == "2 label(s) with < 5 images: blue, red"


def test_stats_format_overrides_auto_detection(tmp_path: Path) -> None:
    root = _image_folder(_ccp(tmp_path / "both"))  # a CCP folder that also has train/<class>/
    assert stats(root)[1][0].startswith("images: 3   labels: 2")  # auto: label_list.mat wins
    code, lines, out = stats(root, "--data-format", "image_folder")
    assert code == 0, out
    assert lines[0] == "images: 3   classes: 2" and table(lines, "images per class")[0] == [
        "red",
        "2",
        "66.7",
    ]
    assert stats(root, "--data-format", "ccp")[2] == stats(root)[2]


def test_stats_errors_are_one_line_with_exit_code_2(tmp_path: Path, csv_file: Path) -> None:
    code, _, out = stats(csv_file, "--data-format", "coco")
    assert code == 2 and out == (
        "error: --data-format must be auto, ccp, clothing_dataset, multilabel, image_folder, got 'coco'\n"
    )
    code, _, out = stats(tmp_path / "nowhere")
    assert code == 2 and f"path does not exist: {tmp_path / 'nowhere'}" in out
    (tmp_path / "d.jpg").unlink()
    code, _, out = stats(csv_file)
    assert code == 2 and "d.jpg" in out and "Traceback" not in out


# ----------------------------------------------------------------------------- synth-deepfashion


def _synth(out: Path, *args) -> str:
    result = runner.invoke(app, ["data", "synth-deepfashion", str(out), *map(str, args)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_synth_deepfashion_options(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    text = _synth(out, "--n", 5, "--seed", 7, "--size", 40)
    assert text.startswith(f"wrote {out}: ") and "'n_images': 5" in text
    images = sorted(out.glob("img/*/*.jpg"))
    assert len(images) == 5 and all(Image.open(p).size == (40, 40) for p in images)  # --n, --size
    # --seed: the tree is the one the Python API writes for that seed, and another seed gives another
    ref = tmp_path / "api"
    synth_deepfashion(ref, n=5, seed=7, image_size=(40, 40))
    for rel in ANNO_FILES.values():
        assert (out / rel).read_bytes() == (ref / rel).read_bytes(), rel
    other = tmp_path / "seed8"
    _synth(other, "--n", 5, "--seed", 8, "--size", 40)
    assert (other / ANNO_FILES["bbox"]).read_bytes() != (out / ANNO_FILES["bbox"]).read_bytes()
    # the defaults: seed 0 and 128 px (--n kept small here)
    default = tmp_path / "default"
    _synth(default, "--n", 2)
    assert {Image.open(p).size for p in default.glob("img/*/*.jpg")} == {(128, 128)}
    ref0 = tmp_path / "api0"
    synth_deepfashion(ref0, n=2, seed=0, image_size=(128, 128))
    assert (default / ANNO_FILES["landmarks"]).read_bytes() == (ref0 / ANNO_FILES["landmarks"]).read_bytes()


# ----------------------------------------------------------------------------- models


def test_models_lists_every_registered_backbone() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == list_backbones()
    assert {"resnet50", "vgg19_conv4", "basic_cnn", "efficientnet_lite0", "test_tiny"} <= set(lines)
