"""Helpers shared by the labelling tests and bench/label_speed.py: generated photos whose true labels
are known, a tiny model with chosen label names, and ``fashionlens label`` in a subprocess."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}
VOCAB = list(COLOURS)
URL_PATTERN = re.compile(r"http://\S+/")


def colour_photos(folder: Path, n: int, seed: int = 0, size: int = 96) -> dict[str, list[str]]:
    """Write ``n`` JPEGs (one or two coloured squares on grey) into ``folder``; name -> true colours."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        k = 1 + int(rng.integers(0, 2))
        names = [VOCAB[j] for j in rng.choice(len(VOCAB), size=k, replace=False)]
        img = np.full((size, size, 3), 128, dtype=np.uint8) + rng.integers(
            0, 20, (size, size, 3), dtype=np.uint8
        )
        for j, name in enumerate(names):
            x0 = 8 + j * size // 2
            img[16 : size - 16, x0 : x0 + size // 2 - 16] = COLOURS[name]
        Image.fromarray(img).save(folder / f"photo{i:02d}.jpg", quality=92)
        truth[f"photo{i:02d}.jpg"] = names
    return truth


def write_vocab(path: Path, names: list[str] = VOCAB) -> Path:
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return path


def tiny_model(
    path: Path,
    tag_names: list[str],
    category_names: list[str] | None = None,
    seed: int = 0,
    style_names: list[str] | None = None,
) -> Path:
    """A randomly initialised test_tiny FashionNet with a ``labels`` head named ``tag_names`` (and a
    ``category`` / ``styles`` head when their names are given)."""
    import torch

    from fashionlens.checkpoint import ModelInfo, save_model
    from fashionlens.data.config import DataConfig
    from fashionlens.models.fashion_net import FashionNet

    torch.manual_seed(seed)
    heads = {"labels": {"num_classes": len(tag_names)}}
    names = {"labels": list(tag_names)}
    if category_names:
        heads["category"] = {"num_classes": len(category_names)}
        names["category"] = list(category_names)
    if style_names:
        heads["styles"] = {"num_classes": len(style_names)}
        names["styles"] = list(style_names)
    net = FashionNet("test_tiny", heads=heads)
    return save_model(net, ModelInfo(net.spec, names, DataConfig(input_size=(32, 32))), path)


class LabelServer:
    """``fashionlens label ... --port 0`` in a subprocess; ``url`` is read from its first output lines."""

    def __init__(self, args: list[str], timeout_s: float = 120.0, cwd: Path | None = None):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "fashionlens.cli", "label", *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
        )
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self.url = self._wait_for_url(timeout_s)

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _wait_for_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            found = URL_PATTERN.search(line)
            if found:
                return found.group(0).rstrip("/")
        self.proc.kill()
        raise RuntimeError("fashionlens label did not start:\n" + "\n".join(self.lines))

    def output(self) -> str:
        """Everything the process printed (call after it has exited)."""
        self._pump_thread.join(timeout=10)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)

    def kill(self) -> None:
        """SIGKILL: no clean-up code runs, as in a crash or a power cut of the process."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM (a clean stop, like Ctrl-C); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=20)


class ServerPool:
    """Starts LabelServers; on exit kills every one still running (a failed test leaves none behind)."""

    def __init__(self):
        self.started: list[LabelServer] = []

    def start(self, args: list[str]) -> LabelServer:
        self.started.append(LabelServer(args))
        return self.started[-1]

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(timeout=10)
