"""Photos labelled per minute by keyboard on the labelling page (``fashionlens label``), in headless Chromium.

    .venv/bin/python bench/label_speed.py [--photos 60] [--screenshot docs/label_page.png]

Generated garment photos (``fashionlens data synth-deepfashion``, 360x480) and seed B's 23 styles.
The page is driven the way a person labels: two digit keys (main, then one sub label) and Enter per
photo, waiting each time until the next photo is on screen; with ``--model``-style suggestions, Enter
alone accepts them (one digit first where nothing was suggested). The figure is the tool's ceiling,
with no thinking time: how much of a person's labelling minute the page itself takes.

The stand-in model for suggestions is a random ``test_tiny`` network whose output bias carries label
priors (Casual common, the rest rare), so its scores look like a real model's; it knows nothing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_facts, markdown_table
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from label_fixtures import LabelServer, write_vocab  # noqa: E402

STYLES = [
    "Casual",
    "Romantic",
    "Sexy",
    "Ethnic",
    "Elegant",
    "Natural",
    "Sporty",
    "Retro",
    "Classic",
    "Businesscasual",
    "Exotic",
    "Modern",
    "Sophisticated",
    "Glamorous",
    "Manish",
    "Hippie",
    "Gothpunkrocker",
    "Military",
    "Tomboy",
    "Kitschkidult",
    "Hiphop",
    "Grunge",
    "Preppy",
]
PRIOR_LOGITS = {"Casual": 2.5, "Romantic": 0.3, "Elegant": -0.4}  # every other style: RARE
RARE = -3.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 900}


def make_photos(root: Path, n: int) -> Path:
    from fashionlens.data.synth import synth_deepfashion

    synth_deepfashion(root / "synth", n=n, seed=7, image_size=(480, 360))
    return root / "synth" / "img"


def make_model(path: Path) -> Path:
    """A test_tiny network with a 23-style labels head whose bias holds the style priors."""
    import torch

    from fashionlens.checkpoint import ModelInfo, save_model
    from fashionlens.data.config import DataConfig
    from fashionlens.models.fashion_net import FashionNet

    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"labels": {"num_classes": len(STYLES)}})
    with torch.no_grad():
        bias = next(p for name, p in net.named_parameters() if name.endswith("labels.classifier.bias"))
        bias.copy_(torch.tensor([PRIOR_LOGITS.get(s, RARE) for s in STYLES]))
    return save_model(net, ModelInfo(net.spec, {"labels": STYLES}, DataConfig(input_size=(64, 48))), path)


def _ready(page, index: int) -> None:
    page.wait_for_selector(f"#viewer[data-ready='{index}']", timeout=30_000)


def label_session(browser, url: str, n: int, use_suggestions: bool) -> dict:
    """Label ``n`` photos by keyboard; returns photos/min and per-photo latency (Enter -> next photo
    shown)."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url + "/")
    state = page.evaluate("fetch('/api/state').then(r => r.json())")
    order = state["order"]
    _ready(page, order[0])
    latencies, keys = [], 0
    start = time.perf_counter()
    for k in range(n):
        index = order[k]
        suggested = state["photos"][index].get("suggestion", {}).get("labels") if use_suggestions else None
        if not suggested:
            for digit in (str(1 + k % 9), str(1 + (k + 4) % 9)):
                page.keyboard.press(digit)
                keys += 1
        t0 = time.perf_counter()
        page.keyboard.press("Enter")
        keys += 1
        if k + 1 < n:
            _ready(page, order[k + 1])
        else:
            page.wait_for_selector(f"#progress:has-text('{n} of ')")
        latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    page.close()
    ms = sorted(1000 * x for x in latencies)
    return {
        "photos": n,
        "seconds": round(seconds, 2),
        "photos_per_min": round(60 * n / seconds, 1),
        "keys_per_photo": round(keys / n, 2),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
    }


def screenshot(browser, url: str, target: Path) -> None:
    """The page mid-session: a few photos labelled, the current one with suggestions and a chosen sub
    label."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url + "/")
    state = page.evaluate("fetch('/api/state').then(r => r.json())")
    order = state["order"]
    _ready(page, order[0])
    for k in range(7):
        page.keyboard.press("Enter") if state["photos"][order[k]].get("suggestion", {}).get(
            "labels"
        ) else page.keyboard.press(str(1 + k % 9))
        if not state["photos"][order[k]].get("suggestion", {}).get("labels"):
            page.keyboard.press("Enter")
        _ready(page, order[k + 1])
    page.keyboard.press("5")  # add a sub label (Elegant) to the suggestion
    page.wait_for_timeout(400)  # let the progress bar finish its transition
    target.parent.mkdir(parents=True, exist_ok=True)
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    # 256 colours: a 2.5x smaller file for the docs, no visible loss on a page of flat colours
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        target, optimize=True
    )
    page.close()


def main(argv: list[str] | None = None) -> list[list[object]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=60, help="photos labelled per run")
    ap.add_argument("--screenshot", type=Path, default=None, help="also write a screenshot of the page here")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        root = Path(tmp)
        photos = make_photos(root, args.photos + 8)
        vocab = write_vocab(root / "styles.txt", STYLES)
        model = make_model(root / "styles_model.safetensors")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        runs = [("two keys + Enter", [], False), ("suggestions, Enter", ["--model", str(model)], True)]
        for k, (name, extra, use) in enumerate(runs):
            server = LabelServer(
                [
                    str(photos),
                    "--labels",
                    str(vocab),
                    "--out",
                    str(root / f"run{k}.csv"),
                    "--port",
                    "0",
                    *extra,
                ]
            )
            try:
                r = label_session(browser, server.url, args.photos, use)
            finally:
                server.stop()
            rows.append(
                [
                    name,
                    r["photos"],
                    r["seconds"],
                    r["photos_per_min"],
                    r["keys_per_photo"],
                    r["p50_ms"],
                    r["p95_ms"],
                ]
            )
        if args.screenshot:
            server = LabelServer(
                [
                    str(photos),
                    "--labels",
                    str(vocab),
                    "--out",
                    str(root / "shot.csv"),
                    "--port",
                    "0",
                    "--model",
                    str(model),
                ]
            )
            try:
                screenshot(browser, server.url, args.screenshot)
            finally:
                server.stop()
        browser.close()
    print("\n".join(f"- {k}: {v}" for k, v in machine_facts().items()))
    print(f"- {args.photos} generated photos per run, 23 styles, headless Chromium\n")
    print(
        markdown_table(
            ["mode", "photos", "seconds", "photos/min", "keys/photo", "Enter->next p50 ms", "p95 ms"], rows
        )
    )
    return rows


if __name__ == "__main__":
    main()
