"""Loopback load test of ``fashionlens serve``: good photos mixed with hostile uploads.

Starts the server itself on 127.0.0.1 (a tiny random model by default, or ``--model``), sends a
bounded number of requests from concurrent clients, stops the server, and prints one table:
machine, command, versions, requests/s, errors on good requests (must be 0), status codes of the
bad ones, p50/p99 latency of good requests, and the server's peak RSS (VmHWM).

    .venv/bin/python bench/load_serve.py --requests 300 --concurrency 8 --timeout 60
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_fixtures import free_loopback_socket, make_tiny_model, photo_bytes  # noqa: E402

SERVER_CODE = ("from fashionlens.serve.app import serve_command; "
               "serve_command(host='127.0.0.1', port={port}, model={model!r}, max_upload_mb={mb}, "
               "max_concurrency={conc}, max_queue={queue})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=300, help="total requests sent")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent client threads")
    p.add_argument("--timeout", type=float, default=60.0, help="stop sending after this many seconds")
    p.add_argument("--model", default=None, help="model file (default: a tiny random test model)")
    p.add_argument(
        "--photo",
        default=None,
        help="a real JPEG to send as the good JPEG (default: a generated 320x240 one)",
    )
    p.add_argument("--bad-every", type=int, default=4, help="every Nth request is a bad upload")
    p.add_argument("--max-upload-mb", type=float, default=1.0, help="server upload limit")
    p.add_argument("--server-concurrency", type=int, default=2, help="server inference concurrency")
    p.add_argument("--server-queue", type=int, default=16, help="server queue bound (beyond it: 503)")
    return p.parse_args(argv)


def build_payloads(max_upload_mb: float, photo: str | None = None) -> dict[str, tuple[str, bytes, str]]:
    """Named uploads: two good photos (the JPEG from ``photo`` when given) and four kinds of bad upload."""
    oversized = b"\xff\xd8\xff" + os.urandom(int(max_upload_mb * 1024 * 1024 * 1.5))
    jpeg = Path(photo).read_bytes() if photo else photo_bytes("JPEG", size=(320, 240), seed=1)
    return {
        "good_jpeg": ("photo.jpg", jpeg, "image/jpeg"),
        "good_png": ("photo.png", photo_bytes("PNG", size=(200, 260), seed=2), "image/png"),
        "bad_empty": ("empty.jpg", b"", "image/jpeg"),
        "bad_not_image": ("notes.txt", b"certainly not a photo " * 20, "text/plain"),
        "bad_oversized": ("huge.jpg", oversized, "image/jpeg"),
        "bad_truncated": ("cut.jpg", photo_bytes("JPEG", size=(320, 240), seed=3)[:900], "image/jpeg"),
    }


def request_plan(n: int, bad_every: int, jpeg_only: bool = False) -> list[str]:
    goods = ["good_jpeg"] if jpeg_only else ["good_jpeg", "good_png"]
    bads = ["bad_empty", "bad_not_image", "bad_oversized", "bad_truncated"]
    plan, g, b = [], 0, 0
    for i in range(n):
        if bad_every > 0 and i % bad_every == bad_every - 1:
            plan.append(bads[b % len(bads)])
            b += 1
        else:
            plan.append(goods[g % len(goods)])
            g += 1
    return plan


def start_server(model: str, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    sock = free_loopback_socket()
    port = sock.getsockname()[1]
    sock.close()  # the server binds it again a moment later; fine on a quiet loopback
    code = SERVER_CODE.format(
        port=port, model=model, mb=args.max_upload_mb, conc=args.server_concurrency, queue=args.server_queue
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start within 60 s")


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_load(base: str, plan: list[str], payloads: dict, args: argparse.Namespace) -> tuple[list, float]:
    """Send the plan from ``args.concurrency`` threads; returns (kind, status, seconds) and wall time."""
    clients = collections.defaultdict(lambda: httpx.Client(base_url=base, timeout=30))
    stop_at = time.monotonic() + args.timeout

    def one(kind: str):
        if time.monotonic() > stop_at:
            return kind, "skipped", 0.0
        client = clients[threading.get_ident()]
        t0 = time.perf_counter()
        try:
            status = client.post("/v1/predict", files={"files": payloads[kind]}).status_code
        except httpx.HTTPError as e:
            status = type(e).__name__
        return kind, status, time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = [f.result() for f in as_completed([pool.submit(one, k) for k in plan])]
    wall = time.perf_counter() - t0
    for client in list(clients.values()):
        client.close()
    return results, wall


def versions() -> str:
    names = ["fashionlens", "torch", "fastapi", "starlette", "uvicorn", "python-multipart", "httpx"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} ?")
    return f"python {platform.python_version()}, " + ", ".join(found)


def report(results: list, wall: float, rss: float | None, args: argparse.Namespace, model: str) -> bool:
    done = [r for r in results if r[1] != "skipped"]
    good = [r for r in done if r[0].startswith("good")]
    good_errors = [r for r in good if r[1] != 200]
    latencies = np.array([r[2] for r in good if r[1] == 200]) * 1000
    bad_codes = collections.Counter((r[0], r[1]) for r in done if r[0].startswith("bad"))
    rows = [
        ("machine", f"{platform.platform()}, {os.cpu_count()} CPUs"),
        ("command", " ".join([Path(sys.executable).name, *sys.argv])),
        ("versions", versions()),
        ("model", model),
        ("requests sent", f"{len(done)} of {len(results)} in {wall:.1f} s, {args.concurrency} clients"),
        ("requests/s", f"{len(done) / wall:.1f}"),
        (
            "good requests",
            f"{len(good)}, errors: {len(good_errors)}"
            + (f" {collections.Counter(r[1] for r in good_errors)}" if good_errors else ""),
        ),
        (
            "good latency p50 / p99",
            f"{np.percentile(latencies, 50):.1f} / {np.percentile(latencies, 99):.1f} ms"
            if latencies.size
            else "n/a",
        ),
        *[
            (f"bad {kind[4:]}", f"{n} x HTTP {code}")
            for (kind, code), n in sorted(bad_codes.items(), key=str)
        ],
        ("server peak RSS", f"{rss:.0f} MiB" if rss is not None else "n/a"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"| {k:<{width}} | {v} |" for k, v in rows))
    bad_ok = all(isinstance(code, int) and 400 <= code < 500 for (_, code) in bad_codes)
    return not good_errors and bad_ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_tiny_model(Path(tmp) / "tiny.safetensors"))
        proc, base = start_server(model, args)
        try:
            results, wall = run_load(
                base,
                request_plan(args.requests, args.bad_every, jpeg_only=bool(args.photo)),
                build_payloads(args.max_upload_mb, args.photo),
                args,
            )
            alive = httpx.get(base + "/healthz", timeout=5).status_code == 200
            rss = peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    ok = report(results, wall, rss, args, args.model or "tiny random test model (test_tiny, 32x32)")
    print(f"server alive after the run: {alive}")
    return 0 if ok and alive else 1


if __name__ == "__main__":
    sys.exit(main())
