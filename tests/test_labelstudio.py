"""Label Studio interop on a hand-written export in Label Studio's documented JSON format
(https://labelstud.io/guide/task_format: a list of tasks, ``data`` + ``annotations[].result[]``)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fashionlens.cli import app as cli_app
from fashionlens.data.errors import DataFormatError
from fashionlens.data.multilabel import read_multilabel
from fashionlens.labelling.labelstudio import PhotoIndex, import_labelstudio, labelstudio_config
from label_fixtures import VOCAB, colour_photos, write_vocab

runner = CliRunner()


def _choice(field: str, values: list[str], to_name: str = "photo") -> dict:
    return {"id": f"r-{field}", "from_name": field, "to_name": to_name, "type": "choices", "origin": "manual",
            "value": {"choices": values}}


def _annotation(
    main: list[str] | None,
    subs: list[str] | None = None,
    ann_id: int = 1,
    cancelled: bool = False,
    ground_truth: bool = False,
    updated: str = "2024-05-01T10:00:00.000000Z",
    main_field: str = "main",
    labels_field: str = "labels",
) -> dict:
    result = ([_choice(main_field, main)] if main is not None else []) + (
        [_choice(labels_field, subs)] if subs else []
    )
    return {
        "id": ann_id,
        "completed_by": 1,
        "result": result,
        "was_cancelled": cancelled,
        "ground_truth": ground_truth,
        "created_at": updated,
        "updated_at": updated,
        "lead_time": 4.2,
        "task": 0,
        "result_count": 0,
    }


def _task(task_id: int, image: str, annotations: list[dict], image_key: str = "image") -> dict:
    return {
        "id": task_id,
        "data": {image_key: image},
        "annotations": annotations,
        "predictions": [],
        "meta": {},
        "created_at": "2024-05-01T09:00:00.000000Z",
        "updated_at": "2024-05-01T10:00:00.000000Z",
        "inner_id": task_id,
        "total_annotations": len(annotations),
        "cancelled_annotations": 0,
        "project": 7,
        "file_upload": None,
    }


@pytest.fixture
def export(tmp_path):
    """Photos in tmp/photos (+ a sub-folder), and an export that reaches them in the usual ways."""
    colour_photos(tmp_path / "photos", 6)
    (tmp_path / "photos" / "shoot2").mkdir()
    (tmp_path / "photos" / "photo05.jpg").rename(tmp_path / "photos" / "shoot2" / "photo05.jpg")
    tasks = [
        _task(1, "/data/upload/7/1a2b3c4d-photo00.jpg", [_annotation(["red"], ["blue", "red"])]),
        _task(2, "/data/local-files/?d=work%2Fphotos%2Fphoto01.jpg", [_annotation(["green"])]),
        _task(
            3,
            "https://example.com/bucket/photo02.jpg?X-Amz-Signature=abc",
            [
                _annotation(["blue"], ann_id=1, updated="2024-05-01T10:00:00Z"),
                # the latest is used
                _annotation(["yellow"], ["red"], ann_id=2, updated="2024-05-02T10:00:00Z"),
            ],
        ),
        _task(
            4,
            "s3://bucket/photo03.jpg",
            [
                _annotation(["red"], ann_id=1, ground_truth=True, updated="2024-04-01T00:00:00Z"),
                _annotation(["green"], ann_id=2),
            ],
        ),  # ground truth wins
        _task(5, "/data/upload/7/photo04.jpg", []),  # not labelled yet
        # skipped in Label Studio
        _task(6, "/data/upload/7/photo04.jpg", [_annotation(None, cancelled=True)]),
        _task(7, "/data/local-files/?d=shoot2/photo05.jpg", [_annotation(["blue"], ["green", "yellow"])]),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, indent=1))
    return tmp_path, path


def test_import_maps_every_task_kind(export):
    tmp_path, path = export
    result = import_labelstudio(path, tmp_path / "photos", vocab=VOCAB)
    got = [(p.relative_to(tmp_path / "photos").as_posix(), r.main, r.labels) for p, r in result.rows]
    assert got == [
        ("photo00.jpg", "red", ("red", "blue")),
        ("photo01.jpg", "green", ("green",)),
        ("photo02.jpg", "yellow", ("yellow", "red")),
        ("photo03.jpg", "red", ("red",)),
        ("shoot2/photo05.jpg", "blue", ("blue", "green", "yellow")),
    ]
    assert (result.unlabelled, result.cancelled, result.several) == (1, 1, 2)


def test_cli_import_then_read_back_and_check(export):
    tmp_path, path = export
    out = tmp_path / "labels.csv"
    write_vocab(tmp_path / "vocab.txt")
    result = runner.invoke(
        cli_app,
        [
            "data",
            "import-labelstudio",
            str(path),
            "--out",
            str(out),
            "--photos",
            str(tmp_path / "photos"),
            "--labels",
            str(tmp_path / "vocab.txt"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "5 photos, 4 labels" in result.output
    assert "1 task(s) without annotation, 1 task(s) skipped in Label Studio" in result.output
    assert "2 task(s) had several annotations" in result.output
    data = read_multilabel(out, label_list=tmp_path / "vocab.txt")
    assert data.label_names == VOCAB and len(data) == 5
    assert out.read_text().splitlines()[1] == "photos/photo00.jpg,red,red|blue"
    check = runner.invoke(cli_app, ["data", "check", str(out), "--label-list", str(tmp_path / "vocab.txt")])
    assert check.exit_code == 0, check.output
    again = runner.invoke(
        cli_app,
        ["data", "import-labelstudio", str(path), "--out", str(out), "--photos", str(tmp_path / "photos")],
    )
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.output
    again = runner.invoke(
        cli_app,
        [
            "data",
            "import-labelstudio",
            str(path),
            "--out",
            str(out),
            "--photos",
            str(tmp_path / "photos"),
            "--overwrite",
        ],
    )
    assert again.exit_code == 0 and "5 photos, 4 labels" in again.output  # vocabulary = the names used


def test_cli_field_names_and_default_photo_folder(tmp_path):
    colour_photos(tmp_path, 2)
    tasks = [
        _task(
            1,
            "/data/upload/1/photo00.jpg",
            [_annotation(["red"], ["green"], main_field="style", labels_field="substyles")],
            image_key="img",
        ),
        _task(
            2,
            "/data/upload/1/photo01.jpg",
            [_annotation(["blue"], main_field="style", labels_field="substyles")],
            image_key="img",
        ),
    ]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    args = ["data", "import-labelstudio", str(tmp_path / "e.json"), "--out", str(tmp_path / "o.csv")]
    result = runner.invoke(cli_app, args)  # default field names do not fit this project
    assert result.exit_code == 1 and "2 task(s) cannot be mapped" in result.output
    assert "task 1: no image reference in data.image (keys: ['img'])" in result.output
    result = runner.invoke(cli_app, [*args, "--image-field", "img"])
    assert result.exit_code == 1 and "expected one choice in field 'main', got none" in result.output
    assert "fields in this task: ['style', 'substyles']" in result.output
    result = runner.invoke(
        cli_app, [*args, "--image-field", "img", "--main-field", "style", "--labels-field", "substyles"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.csv").read_text().splitlines() == [
        "image,main,labels",
        "photo00.jpg,red,red|green",
        "photo01.jpg,blue,blue",
    ]


@pytest.mark.parametrize(
    "task, message",
    [
        (
            _task(1, "/data/upload/1/photo00.jpg", [_annotation(["red", "blue"])]),
            "expected one choice in field 'main', got ['red', 'blue']",
        ),
        (_task(1, "/data/upload/1/photo00.jpg", [_annotation(["purple"])]), "unknown label(s) ['purple']"),
        (
            _task(1, "/data/upload/1/photo00.jpg", [_annotation(["red"], ["mauve"])]),
            "unknown label(s) ['mauve']",
        ),
        (_task(1, "/data/upload/1/nowhere.jpg", [_annotation(["red"])]), "no photo named 'nowhere.jpg'"),
        (_task(1, "https://example.com/", [_annotation(["red"])]), "no file name in it"),
        (
            {
                "id": 1,
                "data": {"image": "photo00.jpg"},
                "annotations": [
                    {
                        "result": [
                            {
                                "from_name": "main",
                                "type": "rectanglelabels",
                                "value": {"rectanglelabels": ["red"]},
                            }
                        ]
                    }
                ],
            },
            "field 'main' has no list of choices (type 'rectanglelabels')",
        ),
        ({"id": 9, "annotations": []}, "task 9: not a task object with a 'data' field"),
        ("just text", "task #1: not a task object"),
    ],
)
def test_unmappable_tasks_are_named(tmp_path, task, message):
    colour_photos(tmp_path / "photos", 2)
    (tmp_path / "e.json").write_text(json.dumps([task]))
    with pytest.raises(DataFormatError) as err:
        import_labelstudio(tmp_path / "e.json", tmp_path / "photos", vocab=VOCAB)
    assert message in str(err.value) and "1 task(s) cannot be mapped" in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "e.json"))


def test_ambiguous_and_duplicate_photos(tmp_path):
    colour_photos(tmp_path / "photos" / "a", 1)
    colour_photos(tmp_path / "photos" / "b", 1)  # two photo00.jpg
    tasks = [
        _task(1, "/data/upload/1/photo00.jpg", [_annotation(["red"])]),
        _task(2, "/data/local-files/?d=a/photo00.jpg", [_annotation(["red"])]),
        _task(3, "/data/local-files/?d=x/a/photo00.jpg", [_annotation(["blue"])]),
    ]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    with pytest.raises(DataFormatError) as err:
        import_labelstudio(tmp_path / "e.json", tmp_path / "photos")
    text = str(err.value)
    assert (
        "2 task(s) cannot be mapped" in text
        and "task 1: image '/data/upload/1/photo00.jpg': 2 photos named 'photo00.jpg'" in text
    )
    assert "task 3: image '/data/local-files/?d=x/a/photo00.jpg' is the same photo as task 2" in text


def test_whole_file_errors(tmp_path):
    (tmp_path / "p").mkdir()
    cases = {
        "bad.json": ("{not json", "not a JSON file"),
        "min.json": (
            json.dumps([{"id": 1, "image": "x.jpg", "main": "red", "annotator": 1, "annotation_id": 3}]),
            "'JSON-MIN' export",
        ),
        "num.json": ("42", "expected a JSON list of tasks"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataFormatError, match=message):
            import_labelstudio(tmp_path / name, tmp_path / "p")
    (tmp_path / "none.json").write_text(json.dumps([_task(1, "a.jpg", [])]))
    result = runner.invoke(
        cli_app,
        [
            "data",
            "import-labelstudio",
            str(tmp_path / "none.json"),
            "--out",
            str(tmp_path / "o.csv"),
            "--photos",
            str(tmp_path / "p"),
        ],
    )
    assert (
        result.exit_code == 1
        and "no annotated task to import (1 without annotation, 0 skipped)" in result.output
    )
    assert not (tmp_path / "o.csv").exists()
    result = runner.invoke(
        cli_app,
        [
            "data",
            "import-labelstudio",
            str(tmp_path / "none.json"),
            "--out",
            str(tmp_path / "o.csv"),
            "--photos",
            str(tmp_path / "nope"),
        ],
    )
    assert result.exit_code == 2 and "photo folder not found" in result.output


def test_reference_paths():
    ref = PhotoIndex.reference_path
    assert ref("/data/local-files/?d=my%20shoot/a%20b.jpg") == "my shoot/a b.jpg"
    assert ref("/data/upload/3/1f2e3d4c-a.jpg") == "/data/upload/3/1f2e3d4c-a.jpg"
    assert ref("gs://bucket/x/y.png") == "/x/y.png"
    assert ref("https://h.example/a/b%2Bc.jpg?sig=1") == "/a/b+c.jpg"


def test_config_and_import_agree(tmp_path):
    """An annotation made with the exported config's field names imports with the default flags."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(labelstudio_config(VOCAB))
    main, subs = (c.get("name") for c in root.iter("Choices"))
    image_key = root.find("Image").get("value").lstrip("$")
    colour_photos(tmp_path, 1)
    task = _task(
        1,
        "/data/upload/1/0a1b2c3d-photo00.jpg",
        [_annotation(["blue"], ["red"], main_field=main, labels_field=subs)],
        image_key=image_key,
    )
    (tmp_path / "e.json").write_text(json.dumps([task]))
    rows = import_labelstudio(tmp_path / "e.json", tmp_path, vocab=VOCAB).rows
    assert [(p.name, r.main, r.labels) for p, r in rows] == [("photo00.jpg", "blue", ("blue", "red"))]
