"""What ``fashionlens predict`` tags: files, folders, globs and CSV / Parquet listings (both engines)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from fashionlens.cli import app
from fashionlens.inference.inputs import ListingError, expand_inputs, is_listing, is_uri, read_listing
from serve_fixtures import make_tiny_model


@pytest.fixture()
def tree(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.jpg", "a/b/2.PNG", "3.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="PNG")
    (tmp_path / "a" / "notes.txt").write_text("not an image: a folder search skips it")
    return tmp_path


def test_folders_globs_files_and_listings_in_order(tree):
    (tree / "list.csv").write_text("shop,path\nx,3.jpg\ny,/abs/4.jpg\nz,s3://bucket/5.jpg\n")
    pq.write_table(pa.table({"path": ["a/1.jpg"], "image": ["ignored.jpg"]}), tree / "list.parquet")
    found = expand_inputs(
        [
            str(tree / "a"),
            str(tree / "*.jpg"),
            str(tree / "list.csv"),
            str(tree / "list.parquet"),
            "missing.jpg",
        ]
    )
    assert found == [
        str(tree / "a/1.jpg"),
        str(tree / "a/b/2.PNG"),
        str(tree / "3.jpg"),
        # relative to the listing's folder
        str(tree / "3.jpg"),
        "/abs/4.jpg",
        "s3://bucket/5.jpg",
        str(tree / "a/1.jpg"),
        "missing.jpg",
    ]


def test_image_column_of_a_multilabel_csv_is_a_listing(tree):
    (tree / "labels.csv").write_text("image,main,labels\n3.jpg,red,red|blue\n")
    assert read_listing(str(tree / "labels.csv")) == [str(tree / "3.jpg")]


def test_uris_and_listing_detection(tree):
    assert is_uri("s3://b/k.jpg") and is_uri("gs://b/k") and not is_uri("/a/b.jpg") and not is_uri("C://x")
    assert is_listing("s3://bucket/list.parquet") and is_listing(str(tree / "l.csv")) is False
    assert not is_listing(str(tree / "absent.csv"))  # a missing local listing is just a missing file


@pytest.mark.parametrize(
    "content, message",
    [
        ("file\na.jpg\n", "no 'path' column (columns: file)"),
        ("path,x\na.jpg,1\n,2\n", "bad.csv:line 3: empty 'path'"),
        ("path,x\na.jpg,1\nb.jpg\n", "not a readable listing"),  # a row with one column of two
    ],
)
def test_listing_errors_name_the_file_and_line(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(ListingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_listing(str(tmp_path / "bad.csv"))


def test_local_engine_reads_a_listing(tmp_path):
    model = make_tiny_model(tmp_path / "tiny.safetensors")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
    (tmp_path / "list.csv").write_text("path\n0.jpg\n1.jpg\n2.jpg\n")
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "list.csv"),
            "--model",
            str(model),
            "--format",
            "json",
            "--out",
            str(tmp_path / "out.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in json.loads((tmp_path / "out.json").read_text())] == [
        str(tmp_path / f"{i}.jpg") for i in range(3)
    ]
    (tmp_path / "nopath.csv").write_text("file\n0.jpg\n")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "nopath.csv"), "--model", str(model)])
    assert result.exit_code == 2 and "no 'path' column" in result.output
