"""The labelling page and its small JSON API (``fashionlens label``).

Routes: ``/`` (the page), ``/static/{name}`` (a fixed list), ``GET /api/state``, ``GET
/api/photo/{index}`` (the photo re-encoded as JPEG; ``?size=thumb`` for the grid), and ``POST
/api/save``, ``/api/skip``, ``/api/undo`` with small JSON bodies. Photos are named by index only,
nothing is uploaded (no route reads a file from a request; bodies over 16 KiB are refused), a POST
must declare ``application/json`` (so a page on another site cannot post a plain form here), and
on a loopback address only loopback ``Host`` headers are answered (no DNS rebinding).

Example:
    >>> session = open_session("shoots/", "styles.txt", "styles.csv")   # doctest: +SKIP
    >>> run_label_server(session, "127.0.0.1", 8001)                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from fashionlens.data.images import IMAGE_EXTENSIONS, BadImageError
from fashionlens.errors import ConfigError, FashionlensError, InputNotFoundError
from fashionlens.labelling.photos import (
    THUMB_SIDE,
    VIEW_SIDE,
    PhotoAccessError,
    PhotoList,
    find_photos,
    render_photo,
)
from fashionlens.labelling.store import LabelStore, LabelValueError, read_vocabulary
from fashionlens.labelling.suggest import Suggestions, suggest, uncertain_first
from fashionlens.serve.webkit import SecurityHeaders, add_page_routes, install_error_handlers
from fashionlens.serve.webkit import UploadError as ClientError

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"label.js": "text/javascript; charset=utf-8", "label.css": "text/css; charset=utf-8"}
MAX_BODY_BYTES = 16 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ORDERS = ("file", "uncertain")
log = logging.getLogger("fashionlens.labelling")


@dataclass
class LabelSession:
    """Everything a labelling page serves: the store, the photo order, suggestions and start-up notes."""

    store: LabelStore
    order: list[int]
    suggestions: Suggestions | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def photos(self) -> PhotoList:
        return self.store.photos

    def close(self) -> None:
        self.store.close()


def open_session(photos_dir: str | Path, labels: str | Path, out: str | Path, model: str | None = None,
                 order: str = "file", progress: bool = True) -> LabelSession:
    """Read the vocabulary, find the photos, read an existing output, and score photos with ``model``.

    Raises:
        FashionlensError: a one-line reason the session cannot start (LabelSessionError,
            DataFormatError, ConfigError, PhotoFolderError, InputNotFoundError, OutputDirError, ...).
    """
    if order not in ORDERS:
        raise ConfigError(f"--order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "uncertain" and model is None:
        raise ConfigError("--order uncertain needs --model (the uncertainty comes from the model's scores)")
    vocab = read_vocabulary(labels)
    photos = find_photos(photos_dir)
    if not photos.items:
        raise InputNotFoundError(
            f"no photos in {photos.root} (looked for {' '.join(IMAGE_EXTENSIONS)} files)"
        )
    store = LabelStore(out, vocab, photos)
    try:
        session = LabelSession(store, list(range(len(photos.items))))
        _describe(session)
        if model is not None:
            _add_suggestions(session, model, order, progress)
    except BaseException:
        store.close()
        raise
    return session


def _describe(session: LabelSession) -> None:
    counts, photos = session.store.counts(), session.photos
    session.notes.append(
        f"{counts['total']} photos in {photos.root}; {counts['labelled']} already labelled, "
        f"{counts['skipped']} skipped; writing {session.store.out}"
    )
    if counts["other_rows"]:
        session.notes.append(
            f"{counts['other_rows']} rows of {session.store.out.name} name photos outside "
            f"{photos.root}: kept as they are"
        )
    if photos.escaped:
        shown = ", ".join(photos.escaped[:5]) + (" ..." if len(photos.escaped) > 5 else "")
        session.notes.append(
            f"left out {len(photos.escaped)} link(s) pointing outside the photo folder: {shown}"
        )


def _add_suggestions(session: LabelSession, model: str, order: str, progress: bool) -> None:
    from fashionlens.inference.predictor import load_model

    predictor = load_model(model)
    todo = [i for i in session.order if session.store.record(i) is None]
    paths = [session.photos.items[i].path for i in todo]
    session.suggestions = suggest(predictor, paths, session.store.vocab, indices=todo, progress=progress)
    session.notes.append(session.suggestions.note())
    if session.suggestions.errors:
        session.notes.append(
            f"the model could not read {len(session.suggestions.errors)} photo(s); "
            "they are shown last and without suggestions"
        )
    if order == "uncertain":
        session.order = uncertain_first(session.order, session.suggestions)
        session.notes.append("order: most uncertain first")


# ------------------------------------------------------------------------------------------ API


class _PhotoCache:
    """The last rendered JPEGs (the page prefetches the next photo; going back is instant)."""

    def __init__(self, size: int = 48):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key: tuple, make: Callable[[], bytes]) -> bytes:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        data = make()
        with self.lock:
            self.items[key] = data
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return data


async def _json_body(request: Request) -> dict:
    """The request's JSON object, within MAX_BODY_BYTES; 415 / 413 / 400 otherwise."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ClientError(
            415, "expected a JSON body (Content-Type: application/json); nothing is uploaded here"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ClientError(413, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise ClientError(400, "malformed JSON body") from None
    if not isinstance(value, dict):
        raise ClientError(400, "expected a JSON object")
    return value


def _photo_index(session: LabelSession, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(session.photos.items):
        raise ClientError(
            404, f"no photo {value!r}: expected an index from 0 to {len(session.photos.items) - 1}"
        )
    return value


def _state(session: LabelSession) -> dict:
    store, sugg = session.store, session.suggestions
    photos = []
    for i, photo in enumerate(session.photos.items):
        record = store.record(i)
        item = {
            "name": photo.rel,
            "record": record.to_json() if record else None,
            "skipped": store.is_skipped(i),
        }
        if sugg is not None and i in sugg.by_photo:
            item["suggestion"] = sugg.by_photo[i].to_json()
        photos.append(item)
    return {
        "labels": store.vocab,
        "photos": photos,
        "order": session.order,
        "start": store.resume_at(session.order),
        "counts": store.counts(),
        "version": store.version,
        "out": store.out.name,
        "suggestions": sugg.note() if sugg else None,
    }


def _progress(session: LabelSession, after: int | None) -> dict:
    store = session.store
    return {"next": store.next_open(session.order, after), "counts": store.counts(), "version": store.version}


def _add_api_routes(app: FastAPI, session: LabelSession) -> None:
    store, cache = session.store, _PhotoCache()

    @app.get("/api/state")
    def state() -> dict:
        """The vocabulary, every photo with its labels / skip / suggestion, the order and where to start."""
        return _state(session)

    @app.get("/api/photo/{index}")
    def photo(index: int, size: str = Query("view", pattern="^(view|thumb)$")) -> Response:
        """The photo as JPEG (upright, at most 1280 px; ``size=thumb``: 240 px)."""
        item = session.photos.items[_photo_index(session, index)]
        side = THUMB_SIDE if size == "thumb" else VIEW_SIDE
        try:
            mtime = os.stat(item.path).st_mtime_ns
            data = cache.get((index, side, mtime), lambda: render_photo(session.photos.root, item, side))
        except PhotoAccessError as e:
            raise ClientError(403, str(e)) from None
        except (BadImageError, OSError) as e:
            raise ClientError(
                422, f"{item.rel}: cannot show this photo ({getattr(e, 'reason', e)}); skip it"
            ) from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})

    @app.post("/api/save")
    async def save(request: Request) -> dict:
        """Body ``{"photo": i, "main": name, "labels": [names]}``: label the photo, write the file."""
        body = await _json_body(request)
        index = _photo_index(session, body.get("photo"))
        labels, main = body.get("labels", []), body.get("main")
        if (
            not isinstance(labels, list)
            or not all(isinstance(x, str) for x in labels)
            or not (main is None or isinstance(main, str))
        ):
            raise ClientError(400, "expected 'labels': a list of names and 'main': a name or null")
        try:
            record = await run_in_threadpool(store.save, index, main, labels)
        except LabelValueError as e:
            raise ClientError(400, str(e)) from None
        except OSError as e:
            raise ClientError(500, f"could not write {store.out}: {e}; the label was not saved") from None
        return {"photo": index, "record": record.to_json(), **_progress(session, index)}

    @app.post("/api/skip")
    async def skip(request: Request) -> dict:
        """Body ``{"photo": i}``: mark the photo skipped (it comes back after the open ones)."""
        index = _photo_index(session, (await _json_body(request)).get("photo"))
        try:
            await run_in_threadpool(store.skip, index)
        except OSError as e:
            raise ClientError(500, f"could not write the skip list: {e}") from None
        return {"photo": index, "skipped": store.is_skipped(index), **_progress(session, index)}

    @app.post("/api/undo")
    async def undo(request: Request) -> dict:
        """Revert the last save or skip (of any tab); 409 when there is nothing to undo."""
        await _json_body(request)
        try:
            index = await run_in_threadpool(store.undo)
        except OSError as e:
            raise ClientError(500, f"could not write {store.out}: {e}") from None
        if index is None:
            raise ClientError(409, "nothing to undo in this session")
        record = store.record(index)
        return {
            "photo": index,
            "record": record.to_json() if record else None,
            "skipped": store.is_skipped(index),
            **_progress(session, index),
        }


def create_label_app(session: LabelSession, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The FastAPI app of a labelling session.

    Args:
        session: from :func:`open_session`.
        allowed_hosts: answer only requests whose ``Host`` is one of these (None: any).
    """
    app = FastAPI(title="fashionlens label", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    add_page_routes(app, STATIC_DIR, STATIC_FILES, ClientError)
    _add_api_routes(app, session)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(SecurityHeaders)
    return app


class ListenError(FashionlensError, OSError):
    """The page's address cannot be listened on (the port is taken, the host is not this machine's)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: one the OS picks), for uvicorn to serve on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # connections wait in the backlog until uvicorn runs: the announced URL works at once
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ListenError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port"
        ) from None
    return sock


def run_label_server(
    session: LabelSession, host: str, port: int, announce: Callable[[str], None] = print
) -> None:
    """Serve the page until interrupted (Ctrl-C); ``announce`` gets the URL once listening is set up."""
    import uvicorn

    sock = bind_socket(host, port)
    loopback = host in LOOPBACK
    app = create_label_app(
        session, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"] if loopback else None
    )
    if not loopback:
        log.warning(
            "labelling page on %s: anyone who can reach it can see the photos and change the labels", host
        )
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"labelling page: http://{shown}:{sock.getsockname()[1]}/  (Ctrl-C stops it; every save is on disk)"
    )
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", server_header=False, timeout_keep_alive=5)
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM then ends the process
    # before the caller can release the output lock, so it is turned into a KeyboardInterrupt, like Ctrl-C.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        sock.close()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
