"""Shared fixtures: tiny generated data sets (made here, never copied) and paths to ../shared/data."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Optional extras that must be present in this run: `make test` installs them and sets this
# (comma-separated), so a broken install step fails the suite instead of turning into skips.
REQUIRED_EXTRAS = frozenset(filter(None, os.environ.get("FASHIONLENS_TEST_REQUIRE", "").split(",")))
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` imported as a module (the tools are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_path(name: str) -> Path:
    """A data set under ../shared/data, or skip the test saying where it was looked for."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {name!r} not found at {path} (only on machines with ../shared/data)")
    return path


def missing_extra(extra: str, reason: str) -> None:
    """Skip a test (or, at module level, a module) whose optional ``extra`` is absent, saying why.

    Where the run requires ``extra`` (``FASHIONLENS_TEST_REQUIRE``, set by ``make test``), fail instead.
    Only for optional extras (the sentence model, the system Chromium), never for a required dependency.
    """
    if extra in REQUIRED_EXTRAS:
        pytest.fail(
            f"{reason}; this run requires it (FASHIONLENS_TEST_REQUIRE={','.join(sorted(REQUIRED_EXTRAS))})",
            pytrace=False,
        )
    pytest.skip(reason, allow_module_level=True)


def draw_colour_patches(rng: np.random.Generator, labels: list[str], size: int = 32) -> Image.Image:
    """A grey image with one coloured square per label, at random places."""
    img = np.full((size, size, 3), 128, dtype=np.uint8)
    img += rng.integers(0, 20, size=img.shape, dtype=np.uint8)
    for name in labels:
        s = size // 3
        y, x = rng.integers(0, size - s, size=2)
        img[y : y + s, x : x + s] = COLOURS[name]
    return Image.fromarray(img)


@pytest.fixture(scope="session")
def colour_csv(tmp_path_factory) -> Path:
    """A multi-label CSV data set: 120 images, labels = the colours of the squares drawn in them."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    names = list(COLOURS)
    rows = ["image,main,labels"]
    for i in range(120):
        k = int(rng.integers(1, 3))
        labels = list(rng.choice(names, size=k, replace=False))
        draw_colour_patches(rng, labels).save(root / f"{i:04d}.jpg", quality=95)
        rows.append(f"{i:04d}.jpg,{labels[0]},{'|'.join(labels)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"
