"""The labelling page's HTTP API and the ``fashionlens label`` command: saves, safety, faults."""

from __future__ import annotations

import io
import os
import socket
import threading
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from fashionlens.cli import app as cli_app
from fashionlens.data.multilabel import read_multilabel
from fashionlens.labelling import store as store_mod
from fashionlens.labelling.app import create_label_app, open_session
from label_fixtures import VOCAB, ServerPool, colour_photos, tiny_model, write_vocab
from serve_fixtures import serve_in_thread

runner = CliRunner()


@pytest.fixture
def start_server():
    with ServerPool() as pool:
        yield pool.start


@pytest.fixture
def workspace(tmp_path):
    truth = colour_photos(tmp_path / "photos", 5)
    write_vocab(tmp_path / "labels.txt")
    return tmp_path, truth


@pytest.fixture
def client(workspace):
    tmp_path, _ = workspace
    session = open_session(tmp_path / "photos", tmp_path / "labels.txt", tmp_path / "labels.csv")
    with TestClient(create_label_app(session)) as c:
        c.session = session
        yield c
    session.close()


def _save(client, photo, labels, main=None):
    return client.post("/api/save", json={"photo": photo, "main": main, "labels": labels})


def test_state_save_skip_undo_round_trip(client, workspace):
    tmp_path, _ = workspace
    st = client.get("/api/state").json()
    assert st["labels"] == VOCAB and [p["name"] for p in st["photos"]] == [f"photo0{i}.jpg" for i in range(5)]
    assert st["start"] == 0 and st["counts"] == {"labelled": 0, "skipped": 0, "total": 5, "other_rows": 0}
    r = _save(client, 0, ["blue", "red"], main="red")
    assert r.status_code == 200, r.text
    assert r.json() == {"photo": 0, "record": {"main": "red", "labels": ["red", "blue"]}, "next": 1,
                        "counts": {"labelled": 1, "skipped": 0, "total": 5, "other_rows": 0}, "version": 1}
    assert client.post("/api/skip", json={"photo": 1}).json()["next"] == 2
    assert (tmp_path / "labels.skipped.txt").read_text() == "photos/photo01.jpg\n"
    r = client.post("/api/undo", json={})
    assert r.json()["photo"] == 1 and r.json()["skipped"] is False and r.json()["version"] == 3
    assert client.post("/api/undo", json={}).json() == {
        "photo": 0,
        "record": None,
        "skipped": False,
        "next": 1,
        "counts": {"labelled": 0, "skipped": 0, "total": 5, "other_rows": 0},
        "version": 4,
    }
    r = client.post("/api/undo", json={})
    assert r.status_code == 409 and "nothing to undo" in r.json()["error"]
    assert _save(client, 4, ["green"]).json()["next"] == 0  # wraps round to the first open photo
    assert [s.main for s in read_multilabel(tmp_path / "labels.csv").samples] == ["green"]


def test_bad_saves_are_4xx_with_a_message(client):
    cases = [
        ({"photo": 0, "labels": ["purple"]}, 400, "unknown label"),
        ({"photo": 0, "labels": []}, 400, "at least one label"),
        ({"photo": 0, "labels": "red"}, 400, "list of names"),
        ({"photo": 0, "labels": ["red"], "main": 3}, 400, "list of names"),
        ({"photo": 5, "labels": ["red"]}, 404, "expected an index from 0 to 4"),
        ({"photo": -1, "labels": ["red"]}, 404, "no photo"),
        ({"photo": "0", "labels": ["red"]}, 404, "no photo"),
        ({"photo": True, "labels": ["red"]}, 404, "no photo"),
    ]
    for body, status, message in cases:
        r = client.post("/api/save", json=body)
        assert r.status_code == status and message in r.json()["error"], (body, r.text)
    r = client.post("/api/save", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    r = client.post("/api/save", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON object" in r.json()["error"]
    assert client.get("/api/state").json()["version"] == 0


def test_photos_are_served_as_jpeg_by_index(client):
    r = client.get("/api/photo/2")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (96, 96)
    thumb = client.get("/api/photo/2?size=thumb")
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).format == "JPEG"
    assert client.get("/api/photo/2?size=huge").status_code == 422
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/label.js").status_code == 200
    assert client.get("/static/label.css").headers["content-type"].startswith("text/css")


def test_an_unreadable_photo_is_a_message_not_a_crash(workspace):
    tmp_path, _ = workspace
    (tmp_path / "photos" / "photo99.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    session = open_session(tmp_path / "photos", tmp_path / "labels.txt", tmp_path / "labels.csv")
    with TestClient(create_label_app(session)) as c:
        r = c.get("/api/photo/5")
        assert r.status_code == 422 and "photo99.jpg: cannot show this photo" in r.json()["error"]
        assert c.post("/api/skip", json={"photo": 5}).status_code == 200
    session.close()


TRAVERSALS = [
    "/api/photo/..%2F..%2Fsecret.jpg",
    "/api/photo/0%2F..%2F..%2Fsecret.jpg",
    "/api/photo/../../secret.jpg",
    "/api/photo/%2e%2e",
    "/static/..%2Fapp.py",
    "/static/../app.py",
    "/static/%2e%2e%2fstore.py",
    "/photos/photo00.jpg",
    "/secret.jpg",
    "/..%2Fsecret.jpg",
    "/api/photo/1e3",
    "/api/photo/0x1",
]


def test_path_escape_attempts_never_reach_the_disk_outside(workspace):
    tmp_path, _ = workspace
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(secret)
    os.symlink(secret, tmp_path / "photos" / "zz_link.jpg")  # a link out: never listed
    session = open_session(tmp_path / "photos", tmp_path / "labels.txt", tmp_path / "labels.csv")
    assert any("zz_link.jpg" in note for note in session.notes)
    with TestClient(create_label_app(session)) as c:
        assert [p["name"] for p in c.get("/api/state").json()["photos"]] == [
            f"photo0{i}.jpg" for i in range(5)
        ]
        for url in TRAVERSALS:
            r = c.get(url)
            assert r.status_code in (404, 422), (url, r.status_code)
            assert b"def " not in r.content and r.headers["content-type"].startswith("application/json"), url
        # a listed photo swapped for a link out after start-up is refused when opened
        (tmp_path / "photos" / "photo03.jpg").unlink()
        os.symlink(secret, tmp_path / "photos" / "photo03.jpg")
        r = c.get("/api/photo/3")
        assert r.status_code == 403 and "outside the photo folder" in r.json()["error"]
    session.close()


def test_nothing_is_uploaded(client):
    photo = b"\xff\xd8\xff\xe0" + b"0" * 100
    r = client.post("/api/save", files={"files": ("a.jpg", photo, "image/jpeg")})
    assert r.status_code == 415 and "nothing is uploaded" in r.json()["error"]
    r = client.post("/api/save", data={"photo": "0", "labels": "red"})  # a plain HTML form (cross-site)
    assert r.status_code == 415
    assert client.put("/api/photo/0", content=photo).status_code == 405
    assert client.post("/api/photo/0", content=photo).status_code == 405
    assert client.post("/api/upload", files={"files": ("a.jpg", photo)}).status_code == 404
    big = b'{"photo": 0, "labels": ["red"], "pad": "' + b"x" * 20000 + b'"}'
    r = client.post("/api/save", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/state").json()["version"] == 0


def test_only_loopback_host_headers_when_bound_to_loopback(workspace):
    tmp_path, _ = workspace
    session = open_session(tmp_path / "photos", tmp_path / "labels.txt", tmp_path / "labels.csv")
    app = create_label_app(session, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8001") as c:
        assert c.get("/api/state").status_code == 200
        assert c.get("/api/state", headers={"Host": "attacker.example:8001"}).status_code == 400
    session.close()


def test_write_failure_is_reported_and_nothing_is_half_saved(client, workspace, monkeypatch):
    tmp_path, _ = workspace
    assert _save(client, 0, ["red"]).status_code == 200

    def read_only(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store_mod, "atomic_write_bytes", read_only)
    r = _save(client, 1, ["blue"])
    assert (
        r.status_code == 500
        and "could not write" in r.json()["error"]
        and "Permission denied" in r.json()["error"]
    )
    assert "was not saved" in r.json()["error"]
    monkeypatch.undo()
    assert client.get("/api/state").json()["counts"]["labelled"] == 1
    assert [s.main for s in read_multilabel(tmp_path / "labels.csv").samples] == ["red"]


def test_two_tabs_saving_at_once_over_http(tmp_path):
    """64 saves from 16 threads through a real server while another thread keeps reading the file:
    every save lands, the file is never torn."""
    colour_photos(tmp_path / "photos", 32, size=16)
    write_vocab(tmp_path / "labels.txt")
    session = open_session(tmp_path / "photos", tmp_path / "labels.txt", tmp_path / "labels.csv")
    torn = []

    def reader(stop: threading.Event) -> None:  # reads the file while it is being replaced
        while not stop.is_set():
            try:
                read_multilabel(tmp_path / "labels.csv", check_images=False)
            except FileNotFoundError:
                pass
            except Exception as e:  # noqa: BLE001 - any parse error is a torn file
                torn.append(e)

    with serve_in_thread(create_label_app(session)) as base:
        stop = threading.Event()
        watcher = threading.Thread(target=reader, args=(stop,))
        watcher.start()

        def post(i: int) -> tuple[int, int]:  # a provisional label, then the final one
            with httpx.Client(base_url=base, timeout=30) as h:
                first = h.post("/api/save", json={"photo": i, "labels": ["red"]}).status_code
                body = {"photo": i, "main": VOCAB[i % 4], "labels": [VOCAB[i % 4], "yellow"]}
                return first, h.post("/api/save", json=body).status_code

        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(post, range(32)))
        stop.set()
        watcher.join()
    session.close()
    assert codes == [(200, 200)] * 32 and torn == [] and session.store.version == 64
    data = read_multilabel(tmp_path / "labels.csv", label_list=VOCAB)
    assert sorted((s.path.name, s.main) for s in data.samples) == sorted(
        (f"photo{i:02d}.jpg", VOCAB[i % 4]) for i in range(32)
    )


def test_killed_during_a_burst_of_saves_keeps_every_acknowledged_label(tmp_path, start_server):
    """SIGKILL while saves are in flight: the file parses and holds every save that got its 200."""
    colour_photos(tmp_path / "photos", 60, size=16)
    write_vocab(tmp_path / "labels.txt")
    out = tmp_path / "labels.csv"
    server = start_server(
        [str(tmp_path / "photos"), "--labels", str(tmp_path / "labels.txt"), "--out", str(out), "--port", "0"]
    )
    acknowledged, lock = {}, threading.Lock()

    def post(i: int) -> None:
        try:
            r = httpx.post(server.url + "/api/save", json={"photo": i, "labels": [VOCAB[i % 4]]}, timeout=10)
        except httpx.HTTPError:
            return  # the server died under this request: it was never acknowledged
        if r.status_code == 200:
            with lock:
                acknowledged[f"photo{i:02d}.jpg"] = VOCAB[i % 4]
                if len(acknowledged) == 25:
                    server.kill()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(post, range(60)))
    assert server.proc.returncode == -9 and 25 <= len(acknowledged) < 60
    data = read_multilabel(out, label_list=VOCAB)
    on_disk = {s.path.name: s.main for s in data.samples}
    assert acknowledged.items() <= on_disk.items()
    restarted = start_server(
        [str(tmp_path / "photos"), "--labels", str(tmp_path / "labels.txt"), "--out", str(out), "--port", "0"]
    )
    try:
        st = httpx.get(restarted.url + "/api/state").json()
        assert st["counts"]["labelled"] == len(on_disk)
        assert st["start"] == min(i for i in range(60) if f"photo{i:02d}.jpg" not in on_disk)
    finally:
        assert restarted.stop() == 0
    assert not (tmp_path / ".labels.csv.lock").exists()  # a clean stop removes the lock file


# ------------------------------------------------------------------------------ the command


def _cli(*args):
    return runner.invoke(cli_app, ["label", *map(str, args)])


def test_export_labelstudio_config(tmp_path):
    write_vocab(tmp_path / "labels.txt", ["Casual", "Rock & Roll", 'Say "hi"'])
    result = _cli("--labels", tmp_path / "labels.txt", "--export-labelstudio", tmp_path / "ls.xml")
    assert result.exit_code == 0, result.output
    assert "import-labelstudio" in result.output
    root = ET.fromstring((tmp_path / "ls.xml").read_text())
    choices = {c.get("name"): c for c in root.iter("Choices")}
    assert set(choices) == {"main", "labels"}
    assert choices["main"].get("choice") == "single-radio" and choices["labels"].get("choice") == "multiple"
    for c in choices.values():
        assert [x.get("value") for x in c.iter("Choice")] == ["Casual", "Rock & Roll", 'Say "hi"']
        assert c.get("toName") == root.find("Image").get("name")
    assert root.find("Image").get("value") == "$image"


def test_command_errors_are_one_line(workspace):
    tmp_path, _ = workspace
    photos, labels, out = tmp_path / "photos", tmp_path / "labels.txt", tmp_path / "labels.csv"
    cases = [
        ((photos, "--labels", labels), "give PHOTOS_DIR and --out"),
        ((photos, "--labels", tmp_path / "none.txt", "--out", out), "none.txt"),
        ((tmp_path / "nowhere", "--labels", labels, "--out", out), "photo folder not found"),
        (
            (photos, "--labels", labels, "--out", out, "--order", "uncertain"),
            "--order uncertain needs --model",
        ),
        (
            (photos, "--labels", labels, "--out", out, "--order", "random"),
            "--order must be one of file, uncertain",
        ),
        ((photos, "--labels", labels, "--out", tmp_path / "l.xlsx"), "expected .csv or .jsonl"),
        (
            (photos, "--labels", labels, "--out", out, "--model", tmp_path / "missing.safetensors"),
            "model file not found",
        ),
        ((photos, "--labels", labels, "--out", out, "--model", tmp_path / "labels.txt"), "labels.txt"),
    ]
    for args, message in cases:
        result = _cli(*args)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, (
            args,
            result.output,
        )
    (tmp_path / "empty").mkdir()
    result = _cli(tmp_path / "empty", "--labels", labels, "--out", out)
    assert result.exit_code == 2 and "no photos in" in result.output
    labels.write_text("red\nblue\nred\n")
    result = _cli(photos, "--labels", labels, "--out", out)
    assert result.exit_code == 2 and "labels.txt:3: label 'red' listed twice" in result.output
    write_vocab(labels)
    out.write_text("image,main,labels\nphotos/photo00.jpg,red,red\nphotos/photo01.jpg,blue,blue|mauve\n")
    result = _cli(photos, "--labels", labels, "--out", out)
    assert (
        result.exit_code == 2 and "labels.csv:3: field 'labels': unknown label(s) ['mauve']" in result.output
    )


def test_model_without_a_matching_name_is_refused(workspace):
    tmp_path, _ = workspace
    model = tiny_model(tmp_path / "m.safetensors", ["purple", "mauve"])
    result = _cli(
        tmp_path / "photos",
        "--labels",
        tmp_path / "labels.txt",
        "--out",
        tmp_path / "o.csv",
        "--model",
        model,
    )
    assert result.exit_code == 2 and "none of the model's label names" in result.output


def test_port_in_use_is_a_clear_error(workspace):
    tmp_path, _ = workspace
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        result = _cli(
            tmp_path / "photos",
            "--labels",
            tmp_path / "labels.txt",
            "--out",
            tmp_path / "o.csv",
            "--host",
            "127.0.0.1",
            "--port",
            busy.getsockname()[1],
        )
    finally:
        busy.close()
    assert (
        result.exit_code == 2
        and "cannot listen on 127.0.0.1" in result.output
        and "pick another --port" in result.output
    )
    assert not (tmp_path / ".o.csv.lock").exists()


def test_model_suggestions_and_uncertainty_order_in_the_state(workspace):
    tmp_path, _ = workspace
    (tmp_path / "labels.csv").write_text("image,main,labels\nphotos/photo02.jpg,red,red\n")
    model = tiny_model(tmp_path / "m.safetensors", ["red", "green", "blue", "yellow"], seed=3)
    session = open_session(
        tmp_path / "photos",
        tmp_path / "labels.txt",
        tmp_path / "labels.csv",
        model=str(model),
        order="uncertain",
        progress=False,
    )
    sugg = session.suggestions
    assert set(sugg.by_photo) == {0, 1, 3, 4}  # the labelled photo is not scored
    margins = [sugg.margin[i] for i in session.order[:4]]
    assert margins == sorted(margins) and session.order[4] == 2
    assert "order: most uncertain first" in session.notes and any("4 of 4 labels" in n for n in session.notes)
    with TestClient(create_label_app(session)) as c:
        st = c.get("/api/state").json()
    session.close()
    assert st["order"] == session.order and st["start"] == session.order[0]
    assert "suggestion" not in st["photos"][2]
    for i in (0, 1, 3, 4):
        got = st["photos"][i]["suggestion"]
        assert got["labels"] == sugg.by_photo[i].labels and set(got["scores"]) == set(VOCAB)
