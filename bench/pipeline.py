"""Input pipeline throughput per worker (one thread, one core) on real JPEGs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from fashionlens.data.config import DataConfig
from fashionlens.data.images import load_image
from fashionlens.data.transforms import build_transforms, draft_size

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SIZE_HW = (320, 224)  # ccp photos ~550x830 (W x H) -> 224 wide, 320 high


def find_jpegs(limit: int) -> list[Path]:
    """Up to ``limit`` CCP photos from ../shared/data (empty if the data is not there)."""
    photos = SHARED / "ccp" / "photos"
    return sorted(photos.glob("*.jpg"))[:limit] if photos.is_dir() else []


def predict_rate(predictor, files: list[Path], passes: int = 2, **predict_kw) -> tuple[float, list]:
    """Best images/s of ``predictor.predict(files)`` over ``passes`` (this machine is shared), and the
    last pass's predictions. Warms up at the timed batch shape first: ONNX Runtime plans memory per shape."""
    predictor.predict(files[: predictor.batch_size])
    best, preds = 0.0, []
    for _ in range(passes):
        start = time.perf_counter()
        preds = predictor.predict(files, **predict_kw)
        best = max(best, len(files) / (time.perf_counter() - start))
    return best, preds


def _rate(fn: Callable[[Path], object], files: list[Path]) -> float:
    for f in files[:3]:  # warm the page cache and the code paths
        fn(f)
    start = time.perf_counter()
    for f in files:
        fn(f)
    return len(files) / (time.perf_counter() - start)


def pipeline_rates(files: list[Path], interpolation: str = "bilinear") -> dict[str, float]:
    """images/s of one worker for: plain PIL, and fashionlens decode (+/- draft) + eval/train transforms.

    Runs with one torch thread, as in a DataLoader worker (DataLoader sets it so): with the default
    (one thread per core) the normalisation's tensor ops fork onto every core and, on a loaded
    machine, wait for the busiest one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _rates(files, interpolation)
    finally:
        torch.set_num_threads(threads)


def _rates(files: list[Path], interpolation: str) -> dict[str, float]:
    cfg = DataConfig(input_size=SIZE_HW, interpolation=interpolation)
    height, width = SIZE_HW
    eval_t = build_transforms(cfg, train=False)
    train_t = build_transforms(cfg, train=True)
    draft = draft_size(cfg)
    filt = Image.Resampling.BICUBIC if interpolation == "bicubic" else Image.Resampling.BILINEAR
    variants = {
        "plain PIL open+convert+resize (no normalise)": lambda f: (
            Image.open(f).convert("RGB").resize((width, height), filt)
        ),
        "load_image (full decode) + eval transform": lambda f: eval_t(load_image(f)),
        "load_image(draft) + eval transform": lambda f: eval_t(load_image(f, draft_size=draft)),
        "load_image(draft) + train transform (crop, flip, jitter)": lambda f: train_t(
            load_image(f, draft_size=draft)
        ),
    }
    return {name: _rate(fn, files) for name, fn in variants.items()}
