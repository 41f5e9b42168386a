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


# ----------------------------------------------------------------------------- models with a parsing head

GARMENT_CATEGORIES = ["dress", "t-shirt", "shirt", "skirt", "shoes"]
# the garment photo (PNG, 64 x 96) and what the parser of `garment_predictor` finds in it: a blue top and
# black shoes on grey, boxes (x0, y0, x1, y1) in photo pixels, x1 and y1 exclusive
GARMENT_PHOTO_SIZE = (64, 96)
UPPER_BOX = (16, 12, 48, 48)
SHOES_BOX = (8, 72, 24, 96)
UPPER_RGB = (30, 30, 220)
SHOES_RGB = (10, 10, 10)


def parsing_section():
    """The header's ``parsing`` of a model with a parsing head: its group names, garments, landmark groups."""
    from fashionlens.garments.groups import GARMENT_GROUPS, GROUP_NAMES, LANDMARK_GROUPS
    from fashionlens.model_header import Parsing

    return Parsing(GROUP_NAMES, GARMENT_GROUPS, LANDMARK_GROUPS)


def garment_photo_png() -> bytes:
    """The garment photo: grey, the top's box blue, the shoes' box black (PNG: no JPEG blur)."""
    w, h = GARMENT_PHOTO_SIZE
    arr = np.full((h, w, 3), 128, dtype=np.uint8)
    for (x0, y0, x1, y1), rgb in ((UPPER_BOX, UPPER_RGB), (SHOES_BOX, SHOES_RGB)):
        arr[y0:y1, x0:x1] = rgb
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def expected_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    """The (H, W) mask of the garment photo that is exactly ``box``."""
    w, h = GARMENT_PHOTO_SIZE
    mask = np.zeros((h, w), bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    return mask


def _parsing_runner(batch):
    """Fixed outputs for any input: category logits, 8 heatmap peaks, and parsing logits on an 8 x 8 grid
    whose decoded (x4, bilinear) label map is exactly the top on cells rows 1-3, columns 2-5 and the shoes
    on rows 6-7, columns 1-2, the rest background (the garment photo's boxes once scaled to 64 x 96).

    Inside a garment its group scores 16, outside -10, the background 0: the zero crossings of the
    bilinear upsampling then fall on the cell edges, corners included.
    """
    from fashionlens.garments.groups import GROUP_NAMES

    b = batch.shape[0]
    logits = np.full((b, len(GROUP_NAMES), 8, 8), -30.0, np.float32)
    logits[:, GROUP_NAMES.index("background")] = 0.0
    for group, rows, cols in (("upper", slice(1, 4), slice(2, 6)), ("shoes", slice(6, 8), slice(1, 3))):
        k = GROUP_NAMES.index(group)
        logits[:, k] = -10.0
        logits[:, k, rows, cols] = 16.0
    heatmaps = np.zeros((b, 8, 8, 8), np.float32)
    for i in range(8):
        heatmaps[:, i, i, (3 * i) % 8] = 5.0
    category = np.tile(np.array([3.0, 2.0, 1.0, 0.0, 0.5], np.float32), (b, 1))  # dress, then t-shirt
    return {"category": category, "parsing": logits, "heatmaps": heatmaps}


def garment_predictor():
    """A Predictor whose parser finds exactly the garment photo's top (``UPPER_BOX``: category t-shirt
    0.73 among the upper group's classes, colour blue, 8 landmarks) and shoes (``SHOES_BOX``: category
    shoes, colour black, no landmarks), whatever the photo."""
    from fashionlens.checkpoint import ModelInfo
    from fashionlens.data.config import DataConfig
    from fashionlens.inference.predictor import Predictor

    info = ModelInfo({"backbone": "test_parsing", "landmarks": {"fuse": False}},
                     {"category": list(GARMENT_CATEGORIES)}, DataConfig(input_size=(32, 32)),
                     parsing=parsing_section())  # fmt: skip
    return Predictor(None, info, runner=_parsing_runner)


# the red-garment photos of `make_parsing_model`: a red block (the "top") on grey
RED_BOX = (16, 24, 48, 72)


def red_garment_photo(size: tuple[int, int] = (64, 96)) -> np.ndarray:
    """(H, W, 3) uint8: grey, ``RED_BOX`` (scaled from 64 x 96 to ``size``) red."""
    w, h = size
    arr = np.full((h, w, 3), 128, dtype=np.uint8)
    x0, y0, x1, y1 = (round(v * s) for v, s in zip(RED_BOX, (w / 64, h / 96, w / 64, h / 96), strict=True))
    arr[y0:y1, x0:x1] = (220, 30, 30)
    return arr


def make_parsing_model(path: Path) -> Path:
    """Save a tiny FashionNet with a (linear) parsing head that calls red pixels "upper": the backbone's
    first channel is red minus blue, the head scores "upper" 10 x that - 10 (background 0, the rest -30).
    A category head (dress, t-shirt, shoes) and landmarks, randomly initialised."""
    import torch

    from fashionlens.checkpoint import ModelInfo, save_model
    from fashionlens.data.config import DataConfig
    from fashionlens.garments.groups import GROUP_NAMES
    from fashionlens.models.fashion_net import FashionNet

    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"category": {"num_classes": 3}}, landmarks={"fuse": False},
                     parsing={"strides": [], "num_classes": len(GROUP_NAMES), "kind": "linear"})  # fmt: skip
    convs = [m for m in net.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for conv in convs:
            conv.weight.zero_()
            if conv.bias is not None:
                conv.bias.zero_()
        convs[0].weight[0, 0, 1, 1], convs[0].weight[0, 2, 1, 1] = 1.0, -1.0  # R - B (normalised)
        convs[1].weight[0, 0, 1, 1] = 1.0
        head = net.parsing_head.classifier
        head.weight.zero_()
        head.bias.fill_(-30.0)
        head.bias[GROUP_NAMES.index("background")] = 0.0
        head.weight[GROUP_NAMES.index("upper"), 0] = 10.0
        head.bias[GROUP_NAMES.index("upper")] = -10.0
    info = ModelInfo(net.spec, {"category": ["dress", "t-shirt", "shoes"]}, DataConfig(input_size=(32, 32)),
                     parsing=parsing_section())  # fmt: skip
    return save_model(net.eval(), info, path)
