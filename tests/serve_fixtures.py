"""Helpers shared by the web-service tests and the load benchmark: a tiny model file, generated
photos, hostile uploads, and a uvicorn server on a free loopback port in a background thread."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORY_NAMES = ["blouse", "skirt", "jacket"]
TAG_NAMES = ["floral", "striped", "denim", "lace"]


def make_tiny_model(path: Path) -> Path:
    """Save a randomly initialised tiny FashionNet (category + tags + fused landmarks) to ``path``."""
    import torch

    from fashionlens.checkpoint import ModelInfo, save_model
    from fashionlens.data.config import DataConfig
    from fashionlens.models.fashion_net import FashionNet

    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 3}, "labels": {"num_classes": 4}},
                     landmarks={"fuse": True})
    info = ModelInfo(net.spec, {"category": list(CATEGORY_NAMES), "labels": list(TAG_NAMES)},
                     DataConfig(input_size=(32, 32)))
    return save_model(net, info, path)


def photo_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    """A small generated 'photo' (noise plus a coloured garment-like block) encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(90, 160, size=(h, w, 3), dtype=np.uint8)
    arr[h // 5 : 4 * h // 5, w // 4 : 3 * w // 4] = rng.integers(0, 255, size=3, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def png_bomb_bytes(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression-bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def free_loopback_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a port the OS picked (handed to uvicorn: no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_in_thread(app, timeout_s: float = 20.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 in a daemon thread; yields the base URL, stops on exit."""
    import uvicorn

    sock = free_loopback_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
