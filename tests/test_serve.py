"""The web service through FastAPI's TestClient: predictions, every kind of hostile upload, the API key."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

# fastapi and python-multipart are required dependencies (pyproject.toml): imported, never skipped
import python_multipart  # noqa: F401
from fastapi.testclient import TestClient

from fashionlens.inference.predictor import load_model
from fashionlens.serve import app as serve_app
from fashionlens.serve.app import UploadError, _Gate, create_app
from serve_fixtures import CATEGORY_NAMES, TAG_NAMES, make_tiny_model, photo_bytes, png_bomb_bytes


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_model(make_tiny_model(tmp_path_factory.mktemp("serve") / "tiny.safetensors"))


@pytest.fixture
def make_client(predictor):
    clients = []

    def make(**kwargs) -> TestClient:
        client = TestClient(create_app(predictor, **kwargs), raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def assert_error(response: httpx.Response, statuses: tuple[int, ...]) -> None:
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["error"], str) and response.json()["error"]


def assert_alive(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"


def test_healthz(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["model"] == "test_tiny"
    assert body["heads"] == ["category", "labels"] and body["landmarks"] is True
    assert body["api_key_required"] is False and body["limits"]["max_files"] == 16
    assert body["garments"] is False  # no parsing head


def test_predict_one_jpeg(client):
    r = client.post("/v1/predict", files={"files": ("shirt.jpg", photo_bytes("JPEG"), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "test_tiny" and len(body["results"]) == 1
    rec = body["results"][0]
    assert rec["path"] == "shirt.jpg" and rec["image_size"] == [64, 48] and "error" not in rec
    assert sorted(c["label"] for c in rec["category"]) == sorted(CATEGORY_NAMES)
    assert abs(sum(c["score"] for c in rec["category"]) - 1) < 1e-4
    assert all(t["label"] in TAG_NAMES and t["score"] >= rec["tag_threshold"] for t in rec["tags"])
    assert len(rec["landmarks"]) == 8
    assert all(0 <= lm["x"] <= 64 and 0 <= lm["y"] <= 48 for lm in rec["landmarks"])


def test_predict_several_in_order_and_field_file(client):
    files = [("files", (f"p{i}.{fmt.lower()}", photo_bytes(fmt, seed=i), f"image/{fmt.lower()}"))
             for i, fmt in enumerate(["PNG", "JPEG", "PNG"])]
    r = client.post("/v1/predict", files=files, params={"top_k": 2, "threshold": 0.0})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [rec["path"] for rec in results] == ["p0.png", "p1.jpeg", "p2.png"]
    assert all(len(rec["category"]) == 2 and len(rec["tags"]) == 2 for rec in results)
    assert all(rec["tag_threshold"] == 0.0 for rec in results)
    single = client.post(
        "/v1/predict", files={"file": ("x.png", photo_bytes("PNG"), "application/octet-stream")}
    )
    assert single.status_code == 200 and single.json()["results"][0]["path"] == "x.png"


def test_one_bad_image_among_several_gets_an_error_record(client):
    files = [
        ("files", ("good.png", photo_bytes("PNG"), "image/png")),
        ("files", ("broken.jpg", photo_bytes("JPEG", size=(200, 200))[:400], "image/jpeg")),
        ("files", ("notes.txt", b"hello", "text/plain")),
        ("files", ("empty.png", b"", "image/png")),
        ("files", ("good2.jpg", photo_bytes("JPEG"), "image/jpeg")),
    ]
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [("error" in rec) for rec in results] == [False, True, True, True, False]
    assert results[4]["category"] and results[4]["path"] == "good2.jpg"


@pytest.mark.parametrize("params", [{"top_k": 0}, {"top_k": 51}, {"threshold": 1.5}, {"top_k": "many"}])
def test_bad_query_parameters(client, params):
    r = client.post("/v1/predict", params=params, files={"files": ("a.png", photo_bytes("PNG"), "image/png")})
    assert_error(r, (422,))


ABUSE = {
    "empty": ({"files": ("e.jpg", b"", "image/jpeg")}, (400,)),
    "text": ({"files": ("t.jpg", b"just some text, not a photo", "image/jpeg")}, (415,)),
    "declared_text": ({"files": ("t.png", photo_bytes("PNG"), "text/html")}, (415,)),
    "truncated_jpeg": (
        {"files": ("cut.jpg", photo_bytes("JPEG", size=(300, 300))[:700], "image/jpeg")},
        (422,),
    ),
    "bad_header": ({"files": ("h.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png")}, (422,)),
    "bomb": ({"files": ("bomb.png", png_bomb_bytes(), "image/png")}, (413,)),
    "bomb_below_pil_error": ({"files": ("b.png", png_bomb_bytes(12000, 12000), "image/png")}, (413,)),
    "too_many": ([("files", (f"{i}.png", b"x", "image/png")) for i in range(17)], (413,)),
    "no_file_field": ({"other": ("a.png", photo_bytes("PNG"), "image/png")}, (400,)),
}


@pytest.mark.parametrize("case", list(ABUSE))
def test_abuse_gets_4xx_json_and_server_lives(client, case):
    files, statuses = ABUSE[case]
    assert_error(client.post("/v1/predict", files=files), statuses)
    assert_alive(client)


def test_oversized_upload_stops_at_the_limit(make_client):
    client = make_client(max_upload_bytes=2000, max_files=2)
    big = photo_bytes("PNG", size=(200, 200))
    assert len(big) > 2000
    assert_error(client.post("/v1/predict", files={"files": ("big.png", big, "image/png")}), (413,))
    # A body larger than the request limit is refused from its Content-Length, before reading.
    r = client.post(
        "/v1/predict",
        content=b"x" * 10,
        headers={"content-type": "multipart/form-data; boundary=abc", "content-length": str(10**9)},
    )
    assert_error(r, (413,))
    # Without a Content-Length (chunked), the stream is cut at the request limit.
    r = client.post(
        "/v1/predict",
        content=iter([b"y" * 4096] * 64),
        headers={"content-type": "multipart/form-data; boundary=abc"},
    )
    assert_error(r, (413,))
    assert_alive(client)


def test_request_byte_limit_bounds_many_files_under_the_file_limit(make_client):
    client = make_client(max_upload_bytes=100_000)
    limit = client.get("/healthz").json()["limits"]["max_request_bytes"]
    files = [("files", (f"{i}.jpg", b"\xff\xd8\xff" + bytes(90_000), "image/jpeg")) for i in range(6)]
    assert 6 * 90_000 > limit
    assert_error(client.post("/v1/predict", files=files), (413,))
    assert_alive(client)


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data; boundary=XyZ", b"this is not multipart at all\r\n\r\n"),
        (
            "multipart/form-data; boundary=XyZ",
            b'--XyZ\r\nContent-Disposition: form-data; name="files"; '
            b'filename="a.png"\r\n\r\n\x89PNG-and-no-closing-boundary',
        ),
        ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nbroken header line without colon\r\n\r\n"),
        ("multipart/form-data", b"--XyZ\r\n\r\n"),  # no boundary parameter
        ("multipart/form-data; boundary=XyZ", b""),
    ],
)
def test_malformed_multipart(client, content_type, body):
    r = client.post("/v1/predict", content=body, headers={"content-type": content_type})
    assert_error(r, (400, 422))
    assert_alive(client)


@pytest.mark.parametrize("content_type", ["application/json", "image/jpeg", ""])
def test_request_that_is_not_multipart(client, content_type):
    r = client.post("/v1/predict", content=photo_bytes("JPEG"), headers={"content-type": content_type})
    assert_error(r, (415,))


def test_api_key(make_client):
    client = make_client(api_key="s3cret")
    files = {"files": ("a.png", photo_bytes("PNG"), "image/png")}
    assert_error(client.post("/v1/predict", files=files), (401,))
    assert_error(client.post("/v1/predict", files=files, headers={"X-API-Key": "wrong"}), (401,))
    assert client.post("/v1/predict", files=files, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/healthz").json()["api_key_required"] is True
    assert client.get("/").status_code == 200


def test_path_like_filenames_are_only_echoed(client, tmp_path):
    real = tmp_path / "real.png"
    real.write_bytes(photo_bytes("PNG", size=(99, 77)))
    upload = photo_bytes("PNG", size=(40, 30))
    r = client.post(
        "/v1/predict",
        files=[
            ("files", ("../../etc/passwd", upload, "image/png")),
            ("files", (str(real), upload, "image/png")),
        ],
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [rec["path"] for rec in results] == ["../../etc/passwd", str(real)]
    assert all(rec["image_size"] == [40, 30] for rec in results)  # the uploaded bytes, not the file
    # Content that is not an image is refused even when its name is the path of a real image.
    assert_error(client.post("/v1/predict", files={"files": (str(real), b"nope", "image/png")}), (415,))


def test_page_static_files_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'id="files"' in page.text and "/static/app.js" in page.text
    assert "http" not in page.text.split("<footer")[0]  # nothing loaded from another host
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").status_code == 200
    for bad in ("/static/index.html", "/static/..%2fapp.py", "/static/%2e%2e/app.py", "/nope"):
        assert_error(client.get(bad), (404,))
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_unexpected_error_is_json_500(make_client, predictor, monkeypatch):
    client = make_client()
    monkeypatch.setattr(predictor, "predict", lambda *a, **k: 1 / 0)
    assert_error(
        client.post("/v1/predict", files={"files": ("a.png", photo_bytes("PNG"), "image/png")}), (500,)
    )
    assert_alive(client)


def test_gate_refuses_beyond_the_queue_bound():
    async def scenario():
        gate = _Gate(max_concurrency=1, max_queue=1)
        async with gate.admit(), gate.admit():
            with pytest.raises(UploadError) as info:
                async with gate.admit():
                    pass
        assert info.value.status == 503 and info.value.headers == {"Retry-After": "1"}
        assert gate.in_flight == 0

    asyncio.run(scenario())


def test_concurrent_requests_are_bounded(predictor, monkeypatch):
    running, peak, lock = [0], [0], threading.Lock()
    original = predictor.predict

    def slow_predict(*args, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return original(*args, **kwargs)

    monkeypatch.setattr(predictor, "predict", slow_predict)
    app = create_app(predictor, max_concurrency=2, max_queue=2)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            files = {"files": ("a.png", photo_bytes("PNG"), "image/png")}
            return await asyncio.gather(*[ac.post("/v1/predict", files=files) for _ in range(10)])

    responses = asyncio.run(scenario())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(200) >= 2, codes
    assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 503)
    assert peak[0] <= 2


def test_slow_upload_times_out(predictor):
    app = create_app(predictor, read_timeout_s=0.2)

    async def slow_body():
        yield b"--XyZ\r\n"
        await asyncio.sleep(1.0)
        yield b"never"

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as ac:
            return await ac.post(
                "/v1/predict",
                content=slow_body(),
                headers={"content-type": "multipart/form-data; boundary=XyZ"},
            )

    assert_error(asyncio.run(scenario()), (408,))


def test_serve_command_binds_loopback_by_default(monkeypatch, tmp_path):
    import uvicorn

    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    model = make_tiny_model(tmp_path / "m.safetensors")
    serve_app.serve_command(model=str(model), api_key="k", max_upload_mb=0.5, max_concurrency=3)
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8000
    client = TestClient(calls["app"])
    health = client.get("/healthz").json()
    assert health["model"] == "m" and health["api_key_required"] is True
    assert health["limits"]["max_upload_bytes"] == 512 * 1024
    serve_app.serve_command(host="0.0.0.0", port=9999, model=str(model), max_queue=0)
    assert calls["host"] == "0.0.0.0" and calls["port"] == 9999 and calls["limit_concurrency"] == 66


# ----------------------------------------------------------------------------- garments


def _coco_decode(rle: dict):
    from pycocotools import mask as coco_mask

    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_garments_in_the_api_and_garments_false_skips_them():
    """A model with a parsing head: each photo's garments (boxes, masks as COCO RLE) unless garments=false."""
    import numpy as np

    from serve_fixtures import SHOES_BOX, UPPER_BOX, expected_mask, garment_photo_png, garment_predictor

    files = [("files", (name, garment_photo_png(), "image/png")) for name in ("a.png", "b.png")]
    with TestClient(create_app(garment_predictor(), model_name="parser")) as client:
        assert client.get("/healthz").json()["garments"] is True
        r = client.post("/v1/predict", files=files, params={"top_k": 2})
        assert r.status_code == 200, r.text
        for rec in r.json()["results"]:
            assert [(g["label"], g["box"]) for g in rec["garments"]] == [
                ("upper", list(UPPER_BOX)), ("shoes", list(SHOES_BOX))
            ]  # fmt: skip
            upper, shoes = rec["garments"]
            np.testing.assert_array_equal(_coco_decode(upper["mask"]), expected_mask(UPPER_BOX))
            np.testing.assert_array_equal(_coco_decode(shoes["mask"]), expected_mask(SHOES_BOX))
            assert [c["label"] for c in upper["category"]] == ["t-shirt", "shirt"]  # top_k 2
            assert upper["colours"] == [{"label": "blue", "score": 1.0}] and len(upper["landmarks"]) == 8
            assert "landmarks" not in shoes
        off = client.post("/v1/predict", files=files, params={"garments": "false"})
        assert off.status_code == 200, off.text
        assert all("garments" not in rec and rec["category"] for rec in off.json()["results"])
        on = client.post("/v1/predict", files=files[:1], params={"garments": "true"})
        assert len(on.json()["results"][0]["garments"]) == 2
        boxed = client.post("/v1/predict", files=files[:1], params={"box": "16,12,48,48"})
        assert boxed.status_code == 200 and "garments" not in boxed.json()["results"][0]  # one garment asked
        bad = client.post("/v1/predict", files=files[:1], params={"garments": "maybe"})
        assert_error(bad, (422,))
        assert "garments" in bad.json()["error"]
