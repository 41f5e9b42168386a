"""``fashionlens data check``: a clean synthetic DeepFashion tree passes; every injected problem is
listed with its file name and line, and the exit code is non-zero. Also multi-label, CCP, image folder.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from fashionlens.cli import app
from fashionlens.data.check import Problem, check_dataset, detect_format, run_check
from fashionlens.data.deepfashion import read_deepfashion
from fashionlens.data.errors import DataFormatError
from fashionlens.data.synth import synth_deepfashion

runner = CliRunner()
N = 30


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("check_pristine")
    synth_deepfashion(root, n=N, seed=1, image_size=(64, 64))
    return root


@pytest.fixture
def tree(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "df"
    shutil.copytree(pristine, root)
    return root


def check(*args: str):
    return runner.invoke(app, ["data", "check", *map(str, args)])


def edit_line(path: Path, lineno: int, change: Callable[[list[str]], list[str]]) -> None:
    """Replace line ``lineno`` (1-based) of ``path`` by ``change(its tokens)`` joined by spaces."""
    lines = path.read_text().splitlines()
    lines[lineno - 1] = " ".join(change(lines[lineno - 1].split()))
    path.write_text("\n".join(lines) + "\n")


def image_of(root: Path, lineno: int) -> Path:
    return root / (root / "Anno/list_category_img.txt").read_text().splitlines()[lineno - 1].split()[0]


def test_clean_tree_checks_clean(tree: Path) -> None:
    result = check(tree)
    assert result.exit_code == 0, result.output
    assert f"0 errors, 0 warnings in {N + 7} files (format: deepfashion)" in result.output
    assert check_dataset(tree) == []


def _set(i: int, value: str) -> Callable[[list[str]], list[str]]:
    return lambda t: t[:i] + [value] + t[i + 1 :]


def _landmark_far_outside_bbox(root: Path) -> None:
    idx = read_deepfashion(root)
    j = 6  # line 9 of list_landmarks.txt
    slot = int(np.flatnonzero(idx.landmark_visibility[j] < 2)[0])
    k = 2 + 3 * list(np.flatnonzero(idx.landmark_visibility[j] < 2)).index(slot) + 1  # token of its x
    x1 = int(idx.bbox[j, 0])
    assert x1 >= 2, "the synthetic garment touches the border"
    edit_line(root / "Anno/list_landmarks.txt", 9, lambda t: t[:k] + [str(0)] + t[k + 1 :])


# (name, what to do, file named in the output, line, kind, the reader refuses it too)
INJECTIONS = [
    (
        "count line",
        lambda r: edit_line(r / "Anno/list_bbox.txt", 1, lambda t: ["31"]),
        "list_bbox.txt",
        1,
        "count",
        True,
    ),
    (
        "count not a number",
        lambda r: edit_line(r / "Eval/list_eval_partition.txt", 1, lambda t: ["thirty"]),
        "list_eval_partition.txt",
        1,
        "count",
        True,
    ),
    (
        "column count",
        lambda r: edit_line(r / "Anno/list_bbox.txt", 5, lambda t: t[:-1]),
        "list_bbox.txt",
        5,
        "columns",
        True,
    ),
    (
        "not an integer",
        lambda r: edit_line(r / "Anno/list_bbox.txt", 6, _set(2, "07a")),
        "list_bbox.txt",
        6,
        "value",
        True,
    ),
    (
        "bbox x1 >= x2",
        lambda r: edit_line(r / "Anno/list_bbox.txt", 4, lambda t: [t[0], t[3], t[2], t[1], t[4]]),
        "list_bbox.txt",
        4,
        "value",
        True,
    ),
    (
        "attribute value range",
        lambda r: edit_line(r / "Anno/list_attr_img.txt", 8, _set(17, "2")),
        "list_attr_img.txt",
        8,
        "value",
        True,
    ),
    (
        "attribute columns",
        lambda r: edit_line(r / "Anno/list_attr_img.txt", 11, lambda t: t + ["1"]),
        "list_attr_img.txt",
        11,
        "columns",
        True,
    ),
    (
        "unknown category label",
        lambda r: edit_line(r / "Anno/list_category_img.txt", 6, _set(1, "77")),
        "list_category_img.txt",
        6,
        "label",
        True,
    ),
    (
        "attribute type range",
        lambda r: edit_line(r / "Anno/list_attr_cloth.txt", 40, lambda t: t[:-1] + ["7"]),
        "list_attr_cloth.txt",
        40,
        "value",
        True,
    ),
    (
        "clothes type",
        lambda r: edit_line(r / "Anno/list_landmarks.txt", 13, _set(1, "4")),
        "list_landmarks.txt",
        13,
        "value",
        True,
    ),
    (
        "landmark visibility",
        lambda r: edit_line(r / "Anno/list_landmarks.txt", 14, _set(2, "5")),
        "list_landmarks.txt",
        14,
        "value",
        True,
    ),
    (
        "landmark triples",
        lambda r: edit_line(r / "Anno/list_landmarks.txt", 15, lambda t: t[:5]),
        "list_landmarks.txt",
        15,
        "columns",
        True,
    ),
    (
        "partition value",
        lambda r: edit_line(r / "Eval/list_eval_partition.txt", 16, _set(1, "training")),
        "list_eval_partition.txt",
        16,
        "value",
        True,
    ),
    (
        "duplicate row",
        lambda r: edit_line(
            r / "Eval/list_eval_partition.txt",
            12,
            lambda t: [image_of(r, 11).relative_to(r).as_posix(), t[1]],
        ),
        "list_eval_partition.txt",
        12,
        "duplicate",
        True,
    ),
    (
        "unknown image",
        lambda r: edit_line(r / "Anno/list_bbox.txt", 17, _set(0, "img/nowhere/img_1.jpg")),
        "list_bbox.txt",
        17,
        "unknown_image",
        True,
    ),
    (
        "missing image",
        lambda r: image_of(r, 10).unlink(),
        "list_category_img.txt",
        10,
        "missing_image",
        False,
    ),
    (
        "unreadable image",
        lambda r: image_of(r, 18).write_bytes(b"not a jpeg"),
        "list_category_img.txt",
        18,
        "image",
        False,
    ),
    (
        "bbox outside the image",
        lambda r: edit_line(r / "Anno/list_bbox.txt", 7, _set(3, "500")),
        "list_bbox.txt",
        7,
        "bbox",
        False,
    ),
    ("landmark outside the bbox", _landmark_far_outside_bbox, "list_landmarks.txt", 9, "landmark", False),
]


@pytest.mark.parametrize(("inject", "filename", "line", "kind", "reader_refuses"),
                         [pytest.param(*i[1:], id=i[0]) for i in INJECTIONS])  # fmt: skip
def test_injected_problem_is_listed_with_file_and_line(
    tree, inject, filename, line, kind, reader_refuses
) -> None:
    inject(tree)
    result = check(tree)
    assert result.exit_code == 1, result.output
    assert re.search(rf"{re.escape(filename)}:{line}: error \[{kind}\] ", result.output), result.output
    assert re.search(r"^[1-9]\d* errors, \d+ warnings in \d+ files", result.output, re.M), result.output
    if reader_refuses:  # the checker agrees with the reader, which stops at the first problem
        with pytest.raises(DataFormatError):
            read_deepfashion(tree)


def test_every_problem_is_listed_not_just_the_first(tree: Path) -> None:
    for inject in (
        INJECTIONS[2][1],
        INJECTIONS[5][1],
        INJECTIONS[7][1],
        INJECTIONS[15][1],
        INJECTIONS[17][1],
    ):
        inject(tree)
    problems = check_dataset(tree)
    where = {(Path(p.path).name, p.line, p.kind) for p in problems}
    assert {("list_bbox.txt", 5, "columns"), ("list_attr_img.txt", 8, "value"),
            ("list_category_img.txt", 6, "label"), ("list_category_img.txt", 10, "missing_image"),
            ("list_bbox.txt", 7, "bbox")} <= where  # fmt: skip
    assert all(isinstance(p, Problem) and p.severity == "error" for p in problems)
    assert str(problems[0]).startswith(f"{problems[0].path}:{problems[0].line}: error [")


def test_missing_rows_and_files_are_reported(tree: Path) -> None:
    (tree / "Anno/list_landmarks.txt").unlink()
    lines = (tree / "Anno/list_bbox.txt").read_text().splitlines()
    (tree / "Anno/list_bbox.txt").write_text("\n".join([str(N - 1)] + lines[1:5] + lines[6:]) + "\n")
    missing = image_of(tree, 6).relative_to(tree).as_posix()
    out = check(tree).output
    assert "list_landmarks.txt: error [file] file not found" in out
    assert f"list_bbox.txt: error [missing_row] no row for '{missing}' (Anno/list_category_img.txt:6)" in out


def test_landmark_slightly_outside_bbox_is_a_warning(tree: Path) -> None:
    idx = read_deepfashion(tree)
    j = 3  # line 6 of list_landmarks.txt: "image clothes_type  v x y  v x y ..."
    tokens = (tree / "Anno/list_landmarks.txt").read_text().splitlines()[5].split()
    # x of the first not-cut-off landmark
    k = next(i + 1 for i in range(2, len(tokens), 3) if tokens[i] != "2")
    x1, y1, x2, y2 = (int(v) for v in idx.bbox[j])
    assert x1 >= 2 and 0.05 * max(x2 - x1, y2 - y1) >= 1, (
        "the fixture must allow 1 px left of the box, inside the image"
    )
    # 1 px outside
    edit_line(tree / "Anno/list_landmarks.txt", 6, lambda t: t[:k] + [str(x1 - 1)] + t[k + 1 :])
    result = check(tree)
    assert result.exit_code == 0, result.output  # a warning only: no error
    assert re.search(r"list_landmarks.txt:6: warning \[landmark\] .*outside the bbox", result.output), (
        result.output
    )
    assert f"0 errors, 1 warnings in {N + 7} files" in result.output


def test_no_images_skips_image_checks(tree: Path) -> None:
    image_of(tree, 10).unlink()
    assert check(tree, "--no-images").exit_code == 0
    result = check(tree, "--images", "--data-format", "deepfashion", "--workers", "2")
    assert result.exit_code == 1 and "list_category_img.txt:10: error [missing_image]" in result.output


def test_bad_arguments(tmp_path: Path) -> None:
    assert check(tmp_path, "--data-format", "coco").exit_code == 2
    assert check(tmp_path / "nothing").exit_code == 2
    with pytest.raises(ValueError, match="fmt"):
        run_check(tmp_path, "coco")


# ----------------------------------------------------------------------------- other formats


def _jpeg(path: Path, colour=(200, 20, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), colour).save(path, quality=90)


def test_multilabel_csv(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _jpeg(tmp_path / name)
    (tmp_path / "d.jpg").write_bytes(b"")
    csv = tmp_path / "labels.csv"
    csv.write_text("image,main,labels\na.jpg,shirt,shirt|red\nb.jpg,dress\nc.jpg,,blue\na.jpg,shirt,shirt\n"
                   "missing.jpg,hat,hat\nd.jpg,hat,hat|coat\n")  # fmt: skip
    (tmp_path / "vocab.txt").write_text("shirt\nred\nhat\nblue\n")
    assert detect_format(csv) == "multilabel"
    result = check(csv, "--label-list", tmp_path / "vocab.txt")
    out = result.output
    assert result.exit_code == 1
    for expected in ("labels.csv:3: error [columns] expected 3 fields", "labels.csv:5: error [duplicate]",
                     "labels.csv:6: error [missing_image]", "labels.csv:7: error [image]",
                     "labels.csv:7: error [label] unknown label(s) ['coat']"):  # fmt: skip
        assert expected in out, out
    assert "5 errors, 0 warnings in 5 files (format: multilabel)" in out  # csv + a, c, missing, d


def test_multilabel_jsonl_and_encoding(tmp_path: Path) -> None:
    _jpeg(tmp_path / "a.jpg")
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(
        '{"image": "a.jpg", "labels": ["x"]}\n{"image": "a.jpg"\n["not", "an object"]\n{"image": 3, '
        '"labels": []}\n'
    )
    out = check(jsonl, "--data-format", "multilabel").output
    assert (
        "labels.jsonl:2: error [value] bad JSON" in out
        and "labels.jsonl:3: error [value] expected a JSON object" in out
    )
    assert "labels.jsonl:4: error [value] field 'image'" in out
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"image,main,labels\na.jpg,,x\na.jpg,,caf\xe9\n")
    assert "latin1.csv:3: error [encoding] invalid UTF-8" in check(bad).output
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfimage,main,labels\na.jpg,,x\n")  # as written by Excel
    assert check(bom).exit_code == 0


def _ccp(root: Path, tags: dict[str, list[int]], photos: list[str]) -> None:
    names = np.empty((1, 5), dtype=object)
    names[0, :] = ["null", "bag", "hair", "hat", "skin"]
    scipy.io.savemat(root / "label_list.mat", {"label_list": names})
    (root / "annotations" / "image-level").mkdir(parents=True)
    for stem, t in tags.items():
        scipy.io.savemat(
            root / "annotations" / "image-level" / f"{stem}.mat", {"tags": np.array([t], np.uint8)}
        )
    for stem in photos:
        _jpeg(root / "photos" / f"{stem}.jpg")


def test_ccp(tmp_path: Path) -> None:
    _ccp(tmp_path, {"0001": [0, 1, 3], "0002": [1, 9], "0003": [2]}, ["0001", "0002", "0004"])
    (tmp_path / "annotations" / "image-level" / "0005.mat").write_bytes(b"MATLAB? no")
    _jpeg(tmp_path / "photos" / "0005.jpg")
    assert detect_format(tmp_path) == "ccp"
    result = check(tmp_path)
    out = result.output
    assert result.exit_code == 1
    assert re.search(r"0002\.mat: error \[label\] tag indices \[1, 9\] outside 0\.\.4", out), out
    assert "0003.mat: error [missing_image] annotation without a photo" in out
    assert "0005.mat: error [value] cannot read variable 'tags'" in out
    _jpeg(tmp_path / "photos" / "0003.jpg")
    (tmp_path / "annotations" / "image-level" / "0005.mat").unlink()
    scipy.io.savemat(
        tmp_path / "annotations" / "image-level" / "0002.mat", {"tags": np.array([[1, 4]], np.uint8)}
    )
    assert check(tmp_path, "--data-format", "ccp").exit_code == 0


def test_image_folder(tmp_path: Path) -> None:
    for split in ("train", "validation"):
        _jpeg(tmp_path / split / "dress" / "1.jpg")
        (tmp_path / split / "hat").mkdir(parents=True)
    (tmp_path / "validation" / "dress" / "2.jpg").write_text("oops")
    assert detect_format(tmp_path) == "image_folder"
    result = check(tmp_path, "--data-format", "image_folder")
    out = result.output
    assert result.exit_code == 1
    assert re.search(r"validation/dress/2\.jpg: error \[image\] unreadable image .*not an image", out), out
    assert re.search(r"train/hat: warning \[empty_class\]", out)
    assert "1 errors, 2 warnings in 3 files" in out
    (tmp_path / "validation" / "dress" / "2.jpg").unlink()
    assert check(tmp_path).exit_code == 0


def test_data_format_option(tmp_path: Path) -> None:
    """--data-format picks the reader of data check / data stats; the old hidden --format alias is gone."""
    for name in ("dress", "hat"):
        _jpeg(tmp_path / "train" / name / "1.jpg")
    assert check(tmp_path, "--data-format", "image_folder").exit_code == 0
    forced = check(tmp_path, "--data-format", "ccp")
    assert forced.exit_code == 1 and "photos: error [file] folder not found" in forced.output
    old = check(tmp_path, "--format", "ccp")
    assert old.exit_code == 2 and "No such option: --format" in old.output
    stats = runner.invoke(app, ["data", "stats", str(tmp_path), "--data-format", "image_folder"])
    assert stats.exit_code == 0 and "images: 2   classes: 2" in stats.output
    assert runner.invoke(app, ["data", "stats", str(tmp_path), "--data-format", "ccp"]).exit_code == 2
