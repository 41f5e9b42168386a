"""tools/garment_study.py (seed A's Table 2 on garment attributes): per-type metrics by hand, the
annotator row, and the table with its bootstrap on made-up score files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import load_tool
from fashionlens.data.garment_attributes import GarmentAttributes
from fashionlens.evaluate.studies import save_attribute_scores


@pytest.fixture(scope="module")
def tool():
    return load_tool("garment_study")


GROUPS = np.array([1, 1, 2, 2, 6])  # a, b texture; c, d fabric; e a colour
SCORES = np.array([[0.9, 0.1, 0.2, 0.8, 0.5], [0.3, 0.6, 0.7, 0.4, 0.9]])
POSITIVE = np.array([[1, 0, 1, 0, 1], [0, 1, 0, 1, 0]], dtype=bool)
KNOWN = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 1, 1]], dtype=bool)  # crop 1's "c" is unknown


def test_type_metrics_by_hand(tool):
    m = tool.type_metrics(SCORES, POSITIVE, KNOWN, GROUPS, ks=(1, 2))
    # texture @1: crop 0 ranks a (positive) first, crop 1 b (positive): 2 of 2
    assert m["texture"]["top1"] == 1.0
    # fabric @1: crop 0 ranks d (negative) over c; crop 1's unknown c is not ranked, so d (positive): 1 of 2
    assert m["fabric"]["top1"] == 0.5
    # the four types together @2: crop 0 {a, d} holds a of {a, c}; crop 1 {b, d} holds both: 3 of 4
    assert m["attributes"]["top2"] == 0.75
    # APs: a 1, b 1, c 1 (its one known crop is positive), d 1/2 (the positive ranks second)
    assert m["texture"]["mAP"] == 1.0 and m["fabric"]["mAP"] == 0.75 and m["attributes"]["mAP"] == 0.875
    # the colour is its own column, not in "attributes": e's positive ranks second
    assert m["colour"]["mAP"] == 0.5 and m["colour"]["top1"] == 1.0
    assert "shape" not in m  # no attribute of that type


def test_crop_key(tool):
    assert tool.crop_key("runs/ccp-garments/img/0005_t-shirt.jpg") == ("0005", "t-shirt")


def test_annotator_scores_rank_listed_attributes_first(tool):
    second = GarmentAttributes(["a", "b", "c", "d"], [1, 1, 2, 2], {("0005", "vest"): frozenset({"b", "d"})})
    prior = np.array([0.5, 0.1, 0.4, 0.2, 0.3])
    out = tool.annotator_scores(
        second, ["img/0005_vest.jpg", "img/0006_skirt.jpg"], list("abcde"), GROUPS, prior
    )
    assert np.isnan(out[1]).all()  # not labelled by the second pass
    assert np.isnan(out[0, 4])  # colours are not in the attribute files
    order = np.argsort(-out[0, :4])
    assert order.tolist() == [3, 1, 0, 2]  # listed d, b (by prior), then a, c (by prior)


def _write_run(tool, folder: Path, row: str, seed: int, scores, positive, paths):
    save_attribute_scores(
        folder / f"{row}__s{seed}.npz", scores, positive, np.ones_like(positive), paths, list("abcde"), GROUPS
    )


def test_table_bootstrap_and_annotator_row(tool, tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 40
    positive = np.zeros((n, 5), dtype=bool)
    positive[np.arange(n), rng.integers(0, 2, n)] = True  # one texture
    positive[np.arange(n), 2 + rng.integers(0, 2, n)] = True  # one fabric
    positive[:, 4] = rng.random(n) < 0.5
    paths = [f"img/{i:04d}_top.jpg" for i in range(n)][::-1]  # saved sorted: the tool pairs crops by path
    folder = tmp_path / "val"
    for seed in (0, 1):
        _write_run(
            tool, folder, "ours", seed, positive + 0.1 * rng.random((n, 5)), positive, paths
        )  # perfect ranking
        _write_run(tool, folder, "plain", seed, rng.random((n, 5)), positive, paths)  # chance
    rows = "\n".join(
        f"{i:04d},top,{'|'.join(np.array(list('abcd'))[positive[n - 1 - i, :4]])}" for i in range(0, n, 2)
    )
    (tmp_path / "garment_attributes.txt").write_text("a texture\nb texture\nc fabric\nd fabric\n")
    (tmp_path / "second.csv").write_text("photo,garment,attributes\n" + rows + "\n")
    every = "\n".join(
        f"{i:04d},top,{'|'.join(np.array(list('abcd'))[positive[n - 1 - i, :4]])}" for i in range(n)
    )
    (tmp_path / "garment_attributes.csv").write_text("photo,garment,attributes\n" + every + "\n")
    out = tmp_path / "table.md"
    tool.main(
        [
            "table",
            str(folder),
            "--second",
            str(tmp_path / "second.csv"),
            "--vocabulary",
            str(tmp_path / "garment_attributes.txt"),
            "--first",
            str(tmp_path / "garment_attributes.csv"),
            "--resamples",
            "100",
            "--out",
            str(out),
        ]
    )
    text = out.read_text()
    assert text in capsys.readouterr().out  # printed too
    ours = next(line for line in text.splitlines() if line.startswith("| Ours"))
    cells = [c.strip() for c in ours.strip("|").split("|")]
    assert cells[1] == "2" and cells[2] == "100.0 ± 0.0"  # texture recall@3 of a perfect ranking, 2 seeds
    assert "The same models on the 20 of these crops" in text
    annotators = next(line for line in text.splitlines() if line.startswith("| Annotators"))
    # the second pass copies the first on these 20 crops: texture recall@3 and mAP are perfect
    assert [c.strip() for c in annotators.strip("|").split("|")][2] == "100.0"
    assert "The annotators on all 20 garments both passes labelled" in text
    everywhere = next(
        line for line in text.splitlines() if line.startswith("| second pass against the first")
    )
    assert [c.strip() for c in everywhere.strip("|").split("|")][1:4] == [
        "100.0",
        "100.0",
        "100.0",
    ]  # texture
    gain = next(line for line in text.splitlines() if line.startswith("| ours minus plain"))
    assert "(p 0.00)" in gain and "+" in gain.split("|")[2]  # ours beats chance on texture recall@3


def test_mismatched_crops_are_an_error(tool, tmp_path):
    positive = np.eye(5, dtype=bool)[:2]
    _write_run(tool, tmp_path, "ours", 0, SCORES, positive, ["img/0001_top.jpg", "img/0002_top.jpg"])
    _write_run(tool, tmp_path, "plain", 0, SCORES, positive, ["img/0001_top.jpg", "img/0003_top.jpg"])
    with pytest.raises(SystemExit, match="plain s0 was scored on other crops than ours"):
        tool.load_runs(tmp_path)
