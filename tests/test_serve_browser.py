"""The page end to end in a real headless Chromium: upload, drop, results, landmarks, API key, screenshot.

Needs Debian's ``chromium`` and the ``playwright`` Python package (a test extra); the browser is the
system one (``tests/browser_fixtures.py``). Without Chromium the module skips, except under ``make
test``, which installs it (``FASHIONLENS_TEST_REQUIRE`` names ``chromium``): there it fails.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import uvicorn  # noqa: F401  (a required dependency: serve_in_thread runs the page with it)
from PIL import Image

from browser_fixtures import launch_chromium, open_page
from fashionlens.inference.predictor import load_model
from fashionlens.serve.app import create_app
from serve_fixtures import (
    CATEGORY_NAMES,
    TAG_NAMES,
    garment_photo_png,
    garment_predictor,
    make_tiny_model,
    photo_bytes,
    serve_in_thread,
)

# Waits use selectors, not wait_for_function: the page's CSP (no 'unsafe-eval') blocks string predicates.

VIEWPORT = {"width": 1100, "height": 760}
CATEGORY_BAR_RGB = (0x25, 0x63, 0xEB)  # --category in style.css
LANDMARK_RGB = (0xF9, 0x73, 0x16)  # --landmark in style.css
UPPER_RGB = (0xE1, 0x1D, 0x48)  # GROUP_COLOURS.upper in app.js
SHOES_RGB = (0x15, 0x80, 0x3D)  # GROUP_COLOURS.shoes
GARMENTS_SCREENSHOT = Path("/tmp/fashionlens_serve_garments.png")  # for a person to look at
SCREENSHOT_COPY = Path("/tmp/fashionlens_serve_page.png")  # for a person to look at


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_model(make_tiny_model(tmp_path_factory.mktemp("browser") / "tiny.safetensors"))


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def page(browser):
    page = open_page(browser, VIEWPORT)
    yield page
    page.close()


def _has_colour(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 6) -> bool:
    return bool((np.abs(pixels.astype(int) - np.array(rgb)).max(axis=-1) <= tol).any())


def _check_screenshot(png: bytes, photo_box: dict) -> None:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (VIEWPORT["width"], VIEWPORT["height"])
    pixels = np.asarray(img.convert("RGB"))
    assert pixels.reshape(-1, 3).std(axis=0).max() > 10, "screenshot is (nearly) uniform"
    outside = pixels.copy()  # the bar colour must come from the bars, not from the photo
    x0, y0 = int(photo_box["x"]), int(photo_box["y"])
    outside[y0 : y0 + int(photo_box["height"]) + 1, x0 : x0 + int(photo_box["width"]) + 1] = 0
    assert _has_colour(outside, CATEGORY_BAR_RGB), "no category bar colour in the screenshot"
    assert _has_colour(pixels, LANDMARK_RGB), "no landmark dot colour in the screenshot"


def test_upload_shows_predictions_and_landmarks(predictor, page, tmp_path):
    photo = tmp_path / "summer-dress.jpg"
    photo.write_bytes(photo_bytes("JPEG", size=(240, 320), seed=3))
    with serve_in_thread(create_app(predictor)) as base:
        page.goto(base + "/")
        page.wait_for_selector("#model-info:has-text('test_tiny')")
        assert page.locator("#api-key-row").is_hidden()
        page.set_input_files("#files", str(photo))
        page.wait_for_selector(".card .head-category .bar.category", timeout=15_000)
        page.wait_for_selector(".card svg circle.landmark")
        card = page.locator(".card")
        assert card.count() == 1 and card.locator("h2").inner_text() == "summer-dress.jpg"
        assert sorted(card.locator(".head-category .name").all_inner_texts()) == sorted(CATEGORY_NAMES)
        widths = [card.locator(".bar.category").nth(i).bounding_box()["width"] for i in range(3)]
        assert all(w > 0 for w in widths) and widths == sorted(widths, reverse=True)
        assert card.locator(".head-tag").count() == 1
        img_box = card.locator(".photo img").bounding_box()
        dots = card.locator("svg circle.landmark")
        assert dots.count() == 8
        for i in range(8):
            box = dots.nth(i).bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            assert img_box["x"] - 1 <= cx <= img_box["x"] + img_box["width"] + 1
            assert img_box["y"] - 1 <= cy <= img_box["y"] + img_box["height"] + 1
        assert "1 of 1 photo analysed" in page.locator("#status").inner_text()
        png = page.screenshot()
    SCREENSHOT_COPY.write_bytes(png)
    _check_screenshot(png, img_box)
    assert page.problems == []


DROP_JS = """([files]) => {
  const dt = new DataTransfer();
  for (const [name, type, b64] of files) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    dt.items.add(new File([bytes], name, { type }));
  }
  document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true }));
}"""


def _drop(page, files: list[tuple[str, str, bytes]]) -> None:
    page.evaluate(DROP_JS, [[[n, t, base64.b64encode(b).decode()] for n, t, b in files]])


def test_drop_several_with_api_key_and_a_bad_file(predictor, page):
    good = photo_bytes("PNG", size=(120, 160), seed=1)
    files = [("a.png", "image/png", good), ("notes.txt", "text/plain", b"<b>not</b> a photo"),
             ("c.png", "image/png", good)]
    # max_files=2: the page must split the three photos into two requests.
    with serve_in_thread(create_app(predictor, api_key="k-123", max_files=2)) as base:
        posts = []
        page.on("request", lambda req: req.method == "POST" and posts.append(req.url))
        page.goto(base + "/")
        page.wait_for_selector("#api-key-row:not([hidden])")
        _drop(page, files[:1])  # no key yet: the card shows the 401 message
        page.wait_for_selector(".card .error")
        assert "API key" in page.locator(".card .error").inner_text()
        page.fill("#api-key", "k-123")
        _drop(page, files)
        page.wait_for_selector("#status:has-text('2 of 3 photos analysed')", timeout=15_000)
        cards = page.locator(".card")
        assert cards.count() == 3
        assert cards.nth(0).locator(".bar.category").count() == 3
        assert "not an image" in cards.nth(1).locator(".error").inner_text()
        assert cards.nth(1).locator("b").count() == 0  # the filename/content is never parsed as HTML
        assert cards.nth(2).locator("svg circle.landmark").count() == 8
        assert "2 of 3 photos analysed" in page.locator("#status").inner_text()
        assert len(posts) == 3 and all("/v1/predict?top_k=5" in url for url in posts)  # 1 refused + 2 batches
    assert page.problems == [] or all("401" in p for p in page.problems)



def test_garment_model_draws_named_landmarks_and_colour_swatches(page, tmp_path):
    """A model with a visibility head and colour attributes: names beside the visible landmarks, chips for
    colours."""
    import torch

    from fashionlens.checkpoint import ModelInfo, save_model
    from fashionlens.colours import COLOURS
    from fashionlens.data.config import DataConfig
    from fashionlens.data.deepfashion import LANDMARK_NAMES
    from fashionlens.model_header import Attributes, Landmarks
    from fashionlens.models.fashion_net import FashionNet

    torch.manual_seed(1)
    net = FashionNet(
        "test_tiny",
        heads={"category": {"num_classes": 3}, "attributes": {"num_classes": len(COLOURS)}},
        landmarks={"fuse": False, "visibility": True, "channels": 8},
    )
    with torch.no_grad():  # four landmarks surely visible, four surely not
        net.visibility_head.weight.zero_()
        net.visibility_head.bias.copy_(torch.tensor([5.0, 5, 5, 5, -5, -5, -5, -5]))
    model = save_model(
        net,
        ModelInfo(
            net.spec,
            {"category": list(CATEGORY_NAMES), "attributes": list(COLOURS)},
            DataConfig(input_size=(32, 32)),
            landmarks=Landmarks(LANDMARK_NAMES),
            attributes=Attributes.for_names(COLOURS),
        ),
        tmp_path / "garments.safetensors",
    )
    photo = tmp_path / "coat.jpg"
    photo.write_bytes(photo_bytes("JPEG", size=(240, 320), seed=5))
    with serve_in_thread(create_app(load_model(model, backend="torch"))) as base:
        page.goto(base + "/")
        page.set_input_files("#files", str(photo))
        page.wait_for_selector(".card .head-colour .chip", timeout=15_000)
        card = page.locator(".card")
        assert card.locator("svg circle.landmark").count() == 8
        assert card.locator("svg circle.landmark.hidden").count() == 4
        names = card.locator("svg text.landmark-name").all_text_contents()
        assert names == ["L collar", "R collar", "L sleeve", "R sleeve"]
        chips = card.locator(".head-colour .chip").all_inner_texts()
        assert len(chips) == 5 and all(c.split()[0] in COLOURS for c in chips)  # top 5 colours, as chips
        assert card.locator(".head-attribute").count() == 0
        assert "4 of 8 landmarks visible" in card.inner_text()
    assert page.problems == []


def test_styles_beside_the_tags_and_garment_attributes_with_colours(page, tmp_path):
    """A model with a styles head and garment attributes + colours: styles with the main one marked, the
    attributes as a 'a · b' line with bars, the colours as chips."""
    import torch

    from fashionlens.checkpoint import ModelInfo, save_model
    from fashionlens.data.config import DataConfig
    from fashionlens.model_header import Attributes, Calibration
    from fashionlens.models.fashion_net import FashionNet

    styles = ["Casual", "Romantic", "Retro", "Modern"]
    attributes = ["striped", "denim", "long-sleeve", "black", "white"]
    torch.manual_seed(2)
    net = FashionNet(
        "test_tiny",
        heads={"labels": {"num_classes": 4}, "styles": {"num_classes": 4}, "attributes": {"num_classes": 5}},
    )
    with torch.no_grad():  # fixed probabilities: styles Retro 0.9, Modern 0.7, Casual 0.2, Romantic 0.1
        for name, probs in (("styles", [0.2, 0.1, 0.9, 0.7]), ("attributes", [0.9, 0.6, 0.2, 0.8, 0.3])):
            head = net.heads[name]
            for p in head.parameters():
                p.zero_()
            [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1].bias.copy_(
                torch.logit(torch.tensor(probs))
            )
    info = ModelInfo(
        net.spec,
        {"labels": TAG_NAMES, "styles": styles, "attributes": attributes},
        DataConfig(input_size=(32, 32)),
        calibration=Calibration(attribute_threshold=0.5, style_threshold=0.5),
        attributes=Attributes.for_names(attributes, [1, 2, 4, 6, 6]),
    )
    model = save_model(net, info, tmp_path / "styles.safetensors")
    photo = tmp_path / "outfit.jpg"
    photo.write_bytes(photo_bytes("JPEG", size=(240, 320), seed=7))
    with serve_in_thread(create_app(load_model(model, backend="torch"))) as base:
        page.goto(base + "/")
        page.set_input_files("#files", str(photo))
        page.wait_for_selector(".card .head-style .bar.style", timeout=15_000)
        card = page.locator(".card")
        names = card.locator(".head-style .name").all_inner_texts()
        # main first, then subs >= 0.5
        assert names == ["Retro\nmain", "Modern"] or names == ["Retromain", "Modern"]
        assert card.locator(".head-style .badge").count() == 1
        assert (
            "the main style (the most likely), then sub styles ≥ 0.50"
            in card.locator(".head-style").inner_text()
        )
        assert card.locator(".head-attribute .summary").inner_text() == "striped · denim"
        assert card.locator(".head-attribute .bar.attribute").count() == 2
        chips = card.locator(".head-colour .chip").all_inner_texts()
        assert len(chips) == 1 and chips[0].startswith("black")
        box = card.locator(".head-tag").bounding_box(), card.locator(".head-style").bounding_box()
        assert box[1]["y"] > box[0]["y"]  # styles shown right after the tags
    assert page.problems == []


def test_garments_drawn_with_outlines_names_colours_and_a_toggle_per_layer(page, tmp_path):
    """A model with a parsing head: each garment's mask outline (decoded from its COCO RLE in the page)
    and name over the photo, its colour chips beside it, the landmarks of the top only; the masks,
    names and landmarks toggles each hide their layer."""
    photo = tmp_path / "outfit.png"
    photo.write_bytes(garment_photo_png())  # 64 x 96: the top at [16,12,48,48], the shoes at [8,72,24,96]
    with serve_in_thread(create_app(garment_predictor(), model_name="parser")) as base:
        page.goto(base + "/")
        page.wait_for_selector("#model-info:has-text('garments')")
        assert page.locator("#show-masks").is_visible() and page.locator("#show-labels").is_visible()
        page.set_input_files("#files", str(photo))
        page.wait_for_selector(".card canvas.garment-masks", timeout=15_000)
        card = page.locator(".card")
        img = card.locator(".photo img").bounding_box()
        sx, sy = img["width"] / 64, img["height"] / 96

        def drawn(x: float, y: float) -> np.ndarray:
            """The screen's pixels around photo pixel (x, y)."""
            clip = {"x": img["x"] + x * sx - 3, "y": img["y"] + y * sy - 3, "width": 6, "height": 6}
            return np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB"))

        labels = card.locator("svg.garment-labels text.garment-label")
        assert labels.all_text_contents() == ["upper", "shoes"]
        first = labels.nth(0).bounding_box()  # at the top's box's top-left corner, inside the box
        assert img["x"] + 16 * sx <= first["x"] <= img["x"] + 18 * sx
        assert img["y"] + 11 * sy <= first["y"] <= img["y"] + 14 * sy
        rows = card.locator(".head-garments .garment").all_inner_texts()
        assert len(rows) == 2
        assert "upper 99%" in rows[0] and "t-shirt 73%" in rows[0] and "blue 100%" in rows[0]
        assert "shoes 98%" in rows[1] and "black 100%" in rows[1]
        # the top's 8 landmarks, inside its crop; not the whole photo's, not the shoes'
        dots = card.locator("svg.landmarks circle.landmark")
        assert dots.count() == 8
        # the outlines: the top's left edge (x 16) and the shoes' left edge (x 8), not the grey between
        assert _has_colour(drawn(16.25, 30), UPPER_RGB, tol=12)
        assert _has_colour(drawn(8.25, 84), SHOES_RGB, tol=12)
        assert not _has_colour(drawn(4, 30), UPPER_RGB, tol=40)
        GARMENTS_SCREENSHOT.write_bytes(page.screenshot())

        page.uncheck("#show-masks")
        assert card.locator("canvas.garment-masks").is_hidden() and labels.nth(0).is_visible()
        assert not _has_colour(drawn(16.25, 30), UPPER_RGB, tol=40)
        page.uncheck("#show-labels")
        assert labels.nth(0).is_hidden() and dots.nth(0).is_visible()
        page.uncheck("#show-landmarks")
        assert dots.nth(0).is_hidden()
        page.check("#show-masks")
        assert card.locator("canvas.garment-masks").is_visible()
        assert _has_colour(drawn(16.25, 30), UPPER_RGB, tol=12)
    assert page.problems == []


def test_garment_toggles_are_hidden_for_a_model_without_a_parsing_head(predictor, page):
    with serve_in_thread(create_app(predictor)) as base:
        page.goto(base + "/")
        page.wait_for_selector("#model-info:has-text('test_tiny')")
        assert page.locator("#show-masks").is_hidden() and page.locator("#show-labels").is_hidden()
        assert page.locator("#show-landmarks").is_visible()
