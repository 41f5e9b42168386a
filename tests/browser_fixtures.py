"""The system Chromium driven by Playwright, shared by the page tests (serve and label).

The browser is Debian's ``chromium`` (``make test`` installs it as root), never a downloaded one;
``FASHIONLENS_CHROMIUM`` names another binary. Importing this module skips the importing test
module when Chromium is absent, except where the run requires it (``FASHIONLENS_TEST_REQUIRE``
names ``chromium``, as under ``make test``): there it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright import sync_api

from conftest import missing_extra

CHROMIUM = Path(os.environ.get("FASHIONLENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
if not CHROMIUM.is_file():
    missing_extra("chromium", f"no Chromium at {CHROMIUM} (apt-get install chromium)")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def launch_chromium() -> Iterator[sync_api.Browser]:
    """A headless system Chromium for the length of the block."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: sync_api.Browser, viewport: dict) -> sync_api.Page:
    """A new page that records console errors (CSP violations, failed requests) and uncaught exceptions
    in ``page.problems``, so a test can assert there were none."""
    page = browser.new_page(viewport=viewport)
    page.problems = []
    page.on("console", lambda msg: msg.type == "error" and page.problems.append(msg.text))
    page.on("pageerror", lambda exc: page.problems.append(str(exc)))
    return page
