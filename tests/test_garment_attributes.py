"""Garment attributes (texture, fabric, shape, part): the file reader, derive-landmarks writing them
into the DeepFashion tree beside the colours, the per-type report, and the attribute threshold."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import shared_path
from fashionlens.cli import app
from fashionlens.data.deepfashion import read_deepfashion
from fashionlens.data.errors import DataFormatError
from fashionlens.data.garment_attributes import read_attribute_vocabulary, read_garment_attributes
from fashionlens.inference.calibration import choose_f1_threshold
from fashionlens.metrics import deepfashion_report
from test_derive_landmarks import _tiny_ccp

runner = CliRunner()
VOCAB = "solid texture\nstriped texture\ndenim fabric\nmini shape\nlong-sleeve part\n"


def _files(tmp_path, rows: str, vocab: str = VOCAB):
    (tmp_path / "garment_attributes.txt").write_text(vocab)
    path = tmp_path / "garment_attributes.csv"
    path.write_text("photo,garment,attributes\n" + rows)
    return path


def test_read_known_unknown_and_negative(tmp_path):
    table = read_garment_attributes(
        _files(tmp_path, "0001,t-shirt,striped|long-sleeve\n0001,skirt,solid|mini\n0002,dress,\n")
    )
    assert table.names == ["solid", "striped", "denim", "mini", "long-sleeve"] and table.types == [
        1,
        1,
        2,
        3,
        4,
    ]
    assert table.values("0001", "t-shirt") == [-1, 1, -1, -1, 1]
    assert table.values("0002", "dress") == [-1] * 5  # a row with no attribute: every one negative
    assert table.values("0003", "dress") == [0] * 5  # no row: unknown, not negative


@pytest.mark.parametrize("rows, message", [
    ("0001,top,solid|velvet\n",
     r"garment_attributes.csv:2: field 'attributes': unknown attribute\(s\) \['velvet'\]"),
    ("0001,top,solid\n0001,top,striped\n", r"csv:3: garment 0001_top is listed twice \(first on line 2\)"),
    ("0001,,solid\n", r"csv:2: empty field 'garment'"),
    ("0001,top\n", r"csv:2: expected 3 fields"),
])  # fmt: skip
def test_bad_rows_name_the_line(tmp_path, rows, message):
    with pytest.raises(DataFormatError, match=message):
        read_garment_attributes(_files(tmp_path, rows))


def test_bad_vocabulary_and_header(tmp_path):
    (tmp_path / "v.txt").write_text("solid texture\nglossy sheen\n")
    with pytest.raises(DataFormatError, match=r"v.txt:2: expected 'name type'"):
        read_attribute_vocabulary(tmp_path / "v.txt")
    (tmp_path / "v.txt").write_text("solid 1\nsolid 2\n")
    with pytest.raises(DataFormatError, match="listed twice"):
        read_attribute_vocabulary(tmp_path / "v.txt")
    path = _files(tmp_path, "")
    path.write_text("image,labels\n")
    with pytest.raises(DataFormatError, match="expected the header photo,garment,attributes"):
        read_garment_attributes(path)


def test_derive_landmarks_writes_the_attributes_beside_the_colours(tmp_path):
    ccp = _tiny_ccp(tmp_path / "ccp", n=3)  # 0001, 0002: t-shirt + skirt; 0003: dress
    attributes = _files(
        tmp_path, "0001,t-shirt,striped|long-sleeve\n0001,skirt,denim|mini\n0003,dress,solid\n"
    )
    out = tmp_path / "tree"
    result = runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(out), "--workers", "1",
                                 "--min-area", "0.02", "--attributes", str(attributes)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "attributes: 3 of 5 garments labelled" in result.output
    index = read_deepfashion(out)
    names = list(index.attribute_names)
    assert names[:5] == ["solid", "striped", "denim", "mini", "long-sleeve"] and len(names) == 5 + 12
    assert index.attribute_types.tolist() == [1, 1, 2, 3, 4] + [6] * 12  # colours: type 6
    row = {str(n): a for n, a in zip(index.image_names, index.attributes, strict=True)}
    assert row["img/0001_t-shirt.jpg"][:5].tolist() == [-1, 1, -1, -1, 1]
    assert row["img/0001_skirt.jpg"][:5].tolist() == [-1, -1, 1, 1, -1]
    assert row["img/0002_skirt.jpg"][:5].tolist() == [0] * 5  # no row: unknown
    assert set(row["img/0002_skirt.jpg"][5:].tolist()) <= {-1, 0, 1}  # the colours are still derived
    # found beside the masks without the option; a malformed file stops the command with its line
    (ccp / "garment_attributes.txt").write_text(VOCAB)
    (ccp / "garment_attributes.csv").write_text("photo,garment,attributes\n0002,skirt,tweedish\n")
    result = runner.invoke(
        app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "t2"), "--workers", "1"]
    )
    assert (
        result.exit_code == 2 and "garment_attributes.csv:2" in result.output and "tweedish" in result.output
    )


def test_per_type_report_by_hand():
    # 2 garments, attributes: texture solid/striped, part collar/hood, colour black/white
    scores = np.array([[0.9, 0.2, 0.6, 0.1, 0.8, 0.3], [0.3, 0.7, 0.2, 0.4, 0.1, 0.9]])
    coded = np.array([[1, -1, -1, 1, 1, -1], [-1, 1, 0, -1, -1, 1]])  # garment 1's collar unknown
    groups = np.array([1, 1, 4, 4, 6, 6])
    report = deepfashion_report(attr_scores=scores, attr_targets=coded, attr_groups=groups, ks=(1,))[
        "attributes"
    ]
    # top-1 per type: texture g0 solid (hit), g1 striped (hit) -> 2/2; part g0 collar (miss; hood is the
    # positive), g1 hood 0.4 > collar 0.2 but hood is negative, collar unknown -> 0 of 1 positive; colour: 2/2
    assert (
        report["texture"]["top1"] == 1.0 and report["part"]["top1"] == 0.0 and report["colour"]["top1"] == 1.0
    )
    # part mAP: collar has no positive among its known rows (no AP); hood: positive g0 (0.1) below negative g1
    # (0.4) -> 1/2
    assert report["part"]["mAP"] == pytest.approx(0.5)
    assert report["texture"]["mAP"] == 1.0 and set(report) == {"all", "texture", "part", "colour"}


def test_f1_threshold_by_hand():
    scores = np.array([[0.9, 0.6, 0.2], [0.8, 0.3, 0.55]])
    targets = np.array([[1, 1, 0], [1, 0, 0]])
    # at 0.5: returned (0,0) (0,1) (1,0) (1,2): tp 3, fp 1, fn 0 -> OF1 6/7; at 0.6: tp 3, fp 0 -> 1.0
    threshold, info = choose_f1_threshold(scores, targets, grid=np.array([0.5, 0.6, 0.85]))
    assert threshold == 0.6 and info["OF1"] == 1.0
    # with the top label always returned and 0.85: (0,0) and (1,0) -> tp 2, fn 1 -> 0.8; 0.6 still wins
    assert choose_f1_threshold(scores, targets, min_labels=1, grid=np.array([0.85]))[1][
        "OF1"
    ] == pytest.approx(0.8)
    known = np.array([[1, 1, 1], [1, 1, 0]])  # (1,2) unknown: at 0.5 no false positive left
    assert choose_f1_threshold(scores, targets, known, grid=np.array([0.5]))[1]["OF1"] == 1.0


def test_ccp_garment_attributes_read_with_the_project_reader():
    ccp = shared_path("ccp")
    if not (ccp / "garment_attributes.csv").is_file():
        pytest.skip(f"no garment attributes at {ccp} (../shared/data/ccp/garment_attributes.csv)")
    table = read_garment_attributes(ccp / "garment_attributes.csv")
    assert len(table.names) == 41 and sorted(set(table.types)) == [1, 2, 3, 4] and len(table.rows) == 1637
    second = read_garment_attributes(
        ccp / "garment_attributes.second-pass.csv", ccp / "garment_attributes.txt"
    )
    assert len(second.rows) == 154 and set(second.rows) <= set(table.rows)
