"""Shared benchmark helpers: timing (with CUDA synchronisation), peak memory, machine facts, tables."""

from __future__ import annotations

import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def sync(device: torch.device | str = "cpu") -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@dataclass
class Timing:
    """Seconds per call (best and median of ``n`` calls after warm-up)."""

    best: float
    median: float
    n: int


def time_call(fn: Callable[[], object], iters: int, warmup: int = 1, device: str = "cpu") -> Timing:
    """Run ``fn`` ``warmup`` times, then time ``iters`` calls one by one."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(max(1, iters)):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return Timing(times[0], times[len(times) // 2], len(times))


class PeakMemory:
    """Peak memory while the block runs: CUDA allocator peak on a GPU, sampled RSS growth on the CPU.

    On the CPU a thread samples the process's resident set size every 2 ms (psutil); the figure is
    the peak above the RSS at entry, i.e. what the measured work itself needed.
    """

    def __init__(self, device: str = "cpu"):
        self.device = torch.device(device)
        self.peak_bytes = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        import psutil

        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._peak = self._base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_bytes = self._peak - self._base

    @property
    def mib(self) -> float:
        return self.peak_bytes / 2**20


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, str]:
    """Platform, CPU, cores, GPU, load and library versions for the report header."""
    from fashionlens.inference.onnx_runner import cpu_cores

    facts = {
        "platform": platform.platform(),
        "cpu": f"{cpu_model()}, {cpu_cores()} cores usable ({os.cpu_count()} logical)",
        "gpu": torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else "none (no CUDA device on this machine)",
        "load average (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg())
        if hasattr(os, "getloadavg")
        else "n/a",
        "torch threads": str(torch.get_num_threads()),
        "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
    }
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("onnxruntime", "onnx", "timm", "PIL"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = "not installed"
    facts["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    return facts


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table; floats get 3 significant figures (1 decimal from 100 on)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class CpuMeter:
    """CPU seconds (user + system) of this process and all its descendants while the block runs.

    Processes that start during the block count from zero; one that ends counts up to its last
    sample (an actor exits idle, after the work).
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.start: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()

    def _sample(self) -> dict[int, float]:
        import psutil

        me = psutil.Process(os.getpid())
        out = {}
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.last.update(self._sample())

    def __enter__(self) -> CpuMeter:
        self.start = self._sample()
        self.last = dict(self.start)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.last.update(self._sample())

    @property
    def seconds(self) -> float:
        return sum(v - self.start.get(pid, 0.0) for pid, v in self.last.items())
