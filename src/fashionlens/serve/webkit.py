"""The web kit both pages share (the web service, ``serve/app.py``, and the labelling page,
``labelling/app.py``): the 4xx error a request is refused with, JSON error handlers, security headers, and
the page routes that serve a fixed list of static files.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException

from fashionlens.errors import FashionlensError

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
log = logging.getLogger("fashionlens.serve")


class UploadError(FashionlensError):
    """A request refused with a 4xx status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra
) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON ``{"error": ...}``; an unexpected one is logged and becomes a 500."""

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = [
            "{}: {}".format(".".join(str(p) for p in e.get("loc", ())), e.get("msg", ""))
            for e in exc.errors()
        ]
        return error_response(422, "invalid request: " + "; ".join(msgs))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s", request.url.path)
        return error_response(500, "internal server error")


class SecurityHeaders:
    """ASGI middleware: nosniff and no-referrer on every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def add_page_routes(app: FastAPI, static_dir: Path, files: dict[str, str],
                    not_found: type[Exception] = HTTPException) -> None:  # fmt: skip
    """``/`` (``static_dir/index.html``) and the static ``files`` (name -> media type), from that fixed
    list: no path from the request touches the disk. The web service's page and the labelling page."""

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            static_dir / "index.html",
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in files:
            raise not_found(404, "not found")
        return FileResponse(static_dir / name, media_type=files[name], headers={"Cache-Control": "no-cache"})
