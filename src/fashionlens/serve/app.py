"""The web service: ``POST /v1/predict`` for photos, ``GET /healthz``, and a page at ``/``.

A request meets the defences in this order: API key (401), an admission bound on requests in flight
(503 + Retry-After), the request Content-Type (415), its declared Content-Length (413), then a
streaming multipart reader that stops at the first byte over a limit (413: per file, per request,
number of files) or after a read timeout (408), then cheap per-file checks before any decoding
(empty 400, not an image by its magic bytes 415, too many pixels declared in the header 413).
Inference runs in a small thread pool behind an ``asyncio.Semaphore``. Every error is a 4xx JSON
``{"error": ...}``; filenames are only echoed back, never opened.

Example:
    >>> from fashionlens.inference.predictor import load_model      # doctest: +SKIP
    >>> app = create_app(load_model("model.safetensors"))           # doctest: +SKIP
    $ curl -F files=@photo.jpg 'http://127.0.0.1:8000/v1/predict?top_k=3'

A model with a parsing head also returns each photo's ``garments`` (box, COCO RLE mask, category, colours,
landmarks; ``GET /healthz`` says ``"garments": true``); ``?garments=false`` skips them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, FastAPI, Header, Query, Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from fashionlens.data.images import BadImageError, ImageTooLargeError, probe_image
from fashionlens.errors import ConfigError
from fashionlens.inference.predictor import Predictor
from fashionlens.serve.webkit import (
    SecurityHeaders,
    UploadError,
    add_page_routes,
    install_error_handlers,
)

MiB = 1024 * 1024
UPLOAD_FIELDS = ("files", "file")
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
# Content types a browser or curl may declare for a photo; anything else is refused before sniffing.
_GENERIC_TYPES = ("", "application/octet-stream")
log = logging.getLogger("fashionlens.serve")


@dataclass
class Limits:
    """Bounds on one request.

    ``max_request_bytes`` defaults to room for 4 files at the size limit (memory held by a server is
    at most about (max_concurrency + max_queue) x max_request_bytes); clients split larger batches.
    """

    max_upload_bytes: int = 10 * MiB
    max_files: int = 16
    max_request_bytes: int | None = None
    read_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1 or self.max_files < 1:
            raise ConfigError("max_upload_bytes and max_files must be >= 1")
        if self.max_request_bytes is None:
            self.max_request_bytes = min(self.max_files, 4) * (self.max_upload_bytes + 4096) + 65536


@dataclass
class Upload:
    """One uploaded file: the client's name for it (echoed only), its declared type and its bytes."""

    filename: str
    content_type: str
    data: bytearray = field(default_factory=bytearray)


def _clean_filename(raw: bytes | None, index: int) -> str:
    """The client's filename for display: decoded, control characters dropped, at most 200 chars."""
    name = (raw or b"").decode("utf-8", "replace")
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or f"upload-{index}"


class _MultipartCollector:
    """Callbacks for python-multipart's streaming parser that keep the upload parts within limits."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.uploads: list[Upload] = []
        self.finished = False
        self._headers: dict[str, str] = {}
        self._name = bytearray()
        self._value = bytearray()
        self._current: Upload | None = None

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
            "on_headers_finished", "on_part_data", "on_end")}

    def on_part_begin(self) -> None:
        self._headers, self._current = {}, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._name.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._name, self._value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        if options.get(b"name", b"").decode("latin-1") not in UPLOAD_FIELDS:
            return  # other form fields are skipped; the request byte limit still bounds them
        if len(self.uploads) >= self.limits.max_files:
            raise UploadError(413, f"too many files: at most {self.limits.max_files} per request")
        self._current = Upload(_clean_filename(options.get(b"filename"), len(self.uploads)),
                               self._headers.get("content-type", ""))
        self.uploads.append(self._current)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None:
            return
        if len(self._current.data) + (end - start) > self.limits.max_upload_bytes:
            raise UploadError(413, f"{self._current.filename}: file larger than the limit of "
                                   f"{self.limits.max_upload_bytes} bytes")
        self._current.data += data[start:end]

    def on_end(self) -> None:
        self.finished = True


async def read_uploads(request: Request, limits: Limits) -> list[Upload]:
    """Stream a multipart body into memory, never holding more than the limits allow.

    Raises:
        UploadError: 415 not multipart, 400 malformed/empty/no file, 413 over a limit, 408 too slow.
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        raise UploadError(415, "expected a multipart/form-data upload with images in the field 'files'")
    if not params.get(b"boundary"):
        raise UploadError(400, "malformed multipart body (no boundary in the Content-Type header)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise UploadError(413, f"request body of {declared} bytes exceeds the limit of "
                               f"{limits.max_request_bytes}")
    collector = _MultipartCollector(limits)
    try:
        parser = MultipartParser(params[b"boundary"], collector.callbacks())
        async with asyncio.timeout(limits.read_timeout_s):
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > limits.max_request_bytes:
                    raise UploadError(
                        413, f"request body exceeds the limit of {limits.max_request_bytes} bytes"
                    )
                parser.write(chunk)
    except TimeoutError:
        raise UploadError(408, f"upload not received within {limits.read_timeout_s:g} s") from None
    except ClientDisconnect:
        raise UploadError(400, "client disconnected during the upload") from None
    except FormParserError as e:
        raise UploadError(400, f"malformed multipart body ({e})") from None
    if not collector.finished:
        raise UploadError(400, "malformed multipart body (no closing boundary)")
    if not collector.uploads:
        raise UploadError(400, "no file in the upload: send images in the multipart field 'files'")
    return collector.uploads


def sniff_image_format(data: bytes | bytearray) -> str | None:
    """The image format named by the file's magic bytes, or None if it is not one we decode."""
    head = bytes(data[:12])
    signatures = {
        b"\xff\xd8\xff": "JPEG",
        b"\x89PNG\r\n\x1a\n": "PNG",
        b"GIF87a": "GIF",
        b"GIF89a": "GIF",
        b"BM": "BMP",
        b"II*\x00": "TIFF",
        b"MM\x00*": "TIFF",
    }
    for magic, fmt in signatures.items():
        if head.startswith(magic):
            return fmt
    return "WEBP" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


def check_upload(upload: Upload) -> UploadError | None:
    """Cheap checks before decoding: empty 400, declared or sniffed non-image 415, too many pixels 413."""
    name = upload.filename
    if not upload.data:
        return UploadError(400, f"{name}: empty upload (0 bytes)")
    declared = upload.content_type.split(";")[0].strip().lower()
    if not (declared.startswith("image/") or declared in _GENERIC_TYPES):
        return UploadError(415, f"{name}: declared content type {declared!r} is not an image")
    if sniff_image_format(upload.data) is None:
        return UploadError(415, f"{name}: not an image (expected JPEG, PNG, GIF, WebP, BMP or TIFF)")
    try:
        probe_image(upload.data, name=name)  # reads the header only
    except ImageTooLargeError as e:
        too_many = (
            e.reason if e.__cause__ is None else "image has too many pixels (decompression bomb refused)"
        )
        return UploadError(413, f"{name}: {too_many}")
    except BadImageError as e:
        return UploadError(422, f"{name}: cannot read the image header ({type(e.__cause__ or e).__name__})")
    return None


class _Gate:
    """Admission bound (requests in flight) and the inference semaphore + thread pool."""

    def __init__(self, max_concurrency: int, max_queue: int):
        if max_concurrency < 1 or max_queue < 0:
            raise ConfigError("max_concurrency must be >= 1 and max_queue >= 0")
        self.max_in_flight = max_concurrency + max_queue
        self.in_flight = 0
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.executor = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="fashionlens-infer"
        )

    @asynccontextmanager
    async def admit(self):
        if self.in_flight >= self.max_in_flight:
            raise UploadError(
                503, "server busy: too many requests in flight, retry shortly", {"Retry-After": "1"}
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def run(self, fn, *args):
        async with self.semaphore:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """The ``box`` query parameter: "x1,y1,x2,y2" in pixels of the photo, or None."""
    if text is None or not text.strip():
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not (values[0] < values[2] and values[1] < values[3]):
        raise UploadError(422, f"box must be 'x1,y1,x2,y2' in pixels with x1 < x2 and y1 < y2, got {text!r}")
    return values  # type: ignore[return-value]


async def predict_uploads(
    predictor: Predictor,
    gate: _Gate,
    uploads: list[Upload],
    top_k: int,
    threshold: float | None,
    box: tuple[float, float, float, float] | None = None,
    garments: bool = True,
) -> list[dict]:
    """One record per upload, in order; a lone upload that fails raises its UploadError instead.

    ``garments``: a model with a parsing head also finds each whole photo's garments (not for a ``box``).
    """
    problems = [check_upload(u) for u in uploads]
    if len(uploads) == 1 and problems[0] is not None:
        raise problems[0]
    good = [u for u, p in zip(uploads, problems, strict=True) if p is None]

    def infer() -> list:
        return predictor.predict(
            [bytes(u.data) for u in good],
            top_k=top_k,
            threshold=threshold,
            names=[u.filename for u in good],
            boxes=None if box is None else [box] * len(good),
            garments=garments,
        )

    predictions = iter(await gate.run(infer) if good else [])
    records = [
        next(predictions).to_dict() if p is None else {"path": u.filename, "error": p.message}
        for u, p in zip(uploads, problems, strict=True)
    ]
    if len(uploads) == 1 and "error" in records[0]:
        raise UploadError(422, f"{uploads[0].filename}: {records[0]['error']}")
    return records


_PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}


def _add_api_routes(
    app: FastAPI, predictor: Predictor, gate: _Gate, limits: Limits, name: str, api_key: str | None
) -> None:
    """``GET /healthz`` and ``POST /v1/predict`` (behind the optional API key)."""
    has_landmarks = bool(predictor.info.spec.get("landmarks"))
    has_garments = predictor.info.parsing is not None  # a parsing head and its garment groups

    async def require_key(
        x_api_key: str | None = Header(None, description="the API key, when the service has one"),
    ) -> None:
        if api_key is not None and not hmac.compare_digest((x_api_key or "").encode(), api_key.encode()):
            raise UploadError(401, "missing or wrong API key (header X-API-Key)")

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness and what the model predicts."""
        return {
            "status": "ok",
            "model": name,
            "heads": predictor.heads,
            "landmarks": has_landmarks,
            "garments": has_garments,
            "api_key_required": api_key is not None,
            "limits": {
                "max_upload_bytes": limits.max_upload_bytes,
                "max_files": limits.max_files,
                "max_request_bytes": limits.max_request_bytes,
            },
        }

    @app.post("/v1/predict", dependencies=[Depends(require_key)], openapi_extra=_PREDICT_OPENAPI)
    async def predict(
        request: Request,
        top_k: int = Query(5, ge=1, le=50),
        threshold: float | None = Query(None, ge=0.0, le=1.0),
        box: str | None = Query(
            None,
            description="a garment box 'x1,y1,x2,y2' in pixels of the photo: "
            "predict on that garment (its landmarks in photo pixels)",
        ),
        garments: bool = Query(
            True,
            description="models with a parsing head: also find every garment of each photo (its box, "
            "mask as COCO RLE, category, colours, landmarks); false skips it (faster)",
        ),
    ) -> dict:
        """Predict every uploaded photo (multipart field ``files``); one record per photo, in order."""
        garment = parse_box(box)
        async with gate.admit():
            uploads = await read_uploads(request, limits)
            records = await predict_uploads(predictor, gate, uploads, top_k, threshold, garment, garments)
        return {"model": name, "results": records}


def create_app(
    predictor: Predictor,
    api_key: str | None = None,
    max_upload_bytes: int = 10 * MiB,
    max_files: int = 16,
    max_concurrency: int = 2,
    max_queue: int = 16,
    model_name: str | None = None,
    read_timeout_s: float = 30.0,
) -> FastAPI:
    """The FastAPI app serving ``predictor``.

    Args:
        predictor: the loaded model (see :func:`fashionlens.inference.predictor.load_model`).
        api_key: when set, ``POST /v1/predict`` needs the header ``X-API-Key`` (``/`` and ``/healthz`` stay
            open).
        max_upload_bytes: largest accepted file; larger uploads stop being read at that byte (413).
        max_files: most files in one request (413 beyond).
        max_concurrency: inference calls running at once (each in a worker thread).
        max_queue: requests that may wait for inference beyond those running; more get 503 + Retry-After.
        model_name: the name reported by the service (default: the model's backbone).
        read_timeout_s: time allowed to receive one upload (408 beyond).
    """
    limits = Limits(max_upload_bytes, max_files, read_timeout_s=read_timeout_s)
    gate = _Gate(max_concurrency, max_queue)
    name = model_name or predictor.info.spec.get("backbone", "model")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        gate.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="fashionlens",
        version="1",
        lifespan=lifespan,
        description="Fashion image recognition: categories, tags, attributes, landmarks and garments.",
    )
    install_error_handlers(app)
    add_page_routes(app, STATIC_DIR, STATIC_FILES)
    _add_api_routes(app, predictor, gate, limits, name, api_key)
    app.add_middleware(SecurityHeaders)
    return app


def serve_command(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str = "fashionlens-lite",
    api_key: str | None = None,
    max_upload_mb: float = 10.0,
    max_concurrency: int = 2,
    max_queue: int = 16,
) -> None:
    """Load ``model`` and serve it with uvicorn until interrupted (the ``fashionlens serve`` command).

    Args:
        host: interface to bind; 127.0.0.1 (default) keeps the service on this machine.
        port: TCP port.
        model: a shipped model name or a model file.
        api_key: require this key in the ``X-API-Key`` header of ``POST /v1/predict``.
        max_upload_mb: largest accepted file, in MiB.
        max_concurrency: inference calls running at once.
        max_queue: requests allowed to wait beyond those running; more get 503 + Retry-After.
    """
    import uvicorn

    from fashionlens.inference.predictor import load_model

    predictor = load_model(model)
    app = create_app(
        predictor,
        api_key=api_key,
        max_upload_bytes=int(max_upload_mb * MiB),
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        model_name=Path(model).stem,
    )
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach it can use it", host)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        server_header=False,
        timeout_keep_alive=5,
        limit_concurrency=64 + max_concurrency + max_queue,
    )
