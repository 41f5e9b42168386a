"""The labelling page end to end in a real headless Chromium, driven by the keyboard.

A ``fashionlens label`` subprocess is SIGKILLed in the middle of a session and restarted; the CSV it
leaves is read by the multi-label reader, passes ``fashionlens data check`` and trains a tiny model
with ``configs/styles_top5_mlgcn.yaml``. Needs Debian's ``chromium`` and the ``playwright`` package
(the system browser, ``tests/browser_fixtures.py``): without Chromium the module skips, except under
``make test``, which requires it, as for test_serve_browser.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from browser_fixtures import launch_chromium, open_page
from fashionlens.checkpoint import read_info
from fashionlens.cli import app as cli_app
from fashionlens.data.multilabel import read_multilabel
from fashionlens.labelling.app import create_label_app, open_session
from label_fixtures import VOCAB, ServerPool, colour_photos, tiny_model, write_vocab
from serve_fixtures import serve_in_thread

VIEWPORT = {"width": 1280, "height": 860}
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "styles_top5_mlgcn.yaml"
SCREENSHOT_COPY = Path("/tmp/fashionlens_label_page.png")  # for a person to look at
N_PHOTOS = 24
runner = CliRunner()


@pytest.fixture
def start_server():
    with ServerPool() as pool:
        yield pool.start


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as browser:
        yield browser


def _page(browser):
    return open_page(browser, VIEWPORT)


def _wait_photo(page, index: int) -> None:
    page.wait_for_selector(f"#viewer[data-ready='{index}']", timeout=15_000)


def _key(name: str) -> str:
    return str(VOCAB.index(name) + 1)


def _label(page, names: list[str], main_last: bool = False) -> None:
    """Choose ``names`` (main first) by keyboard; ``main_last`` picks the sub first, then Shift+digit."""
    if main_last and len(names) > 1:
        for name in [*names[1:], names[0]]:
            page.keyboard.press(_key(name))
        page.keyboard.press(f"Shift+{_key(names[0])}")
    else:
        for name in names:
            page.keyboard.press(_key(name))


def _selected(page) -> tuple[str | None, list[str]]:
    main = page.locator(".lab.main")
    names = page.eval_on_selector_all(".lab.selected", "els => els.map(e => e.dataset.name)")
    return (main.get_attribute("data-name") if main.count() else None), names


def _rows(out: Path) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    return {s.path.name: (s.main, s.labels) for s in read_multilabel(out, label_list=VOCAB).samples}


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        str(tmp_path / "photos"),
        "--labels",
        str(tmp_path / "labels.txt"),
        "--out",
        str(tmp_path / "styles.csv"),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *extra,
    ]


def test_keyboard_session_survives_a_kill_and_trains(browser, tmp_path, start_server):
    truth = colour_photos(tmp_path / "photos", N_PHOTOS)
    names = sorted(truth)
    want = {n: (truth[n][0], tuple(truth[n])) for n in names}
    write_vocab(tmp_path / "labels.txt")
    out = tmp_path / "styles.csv"
    page = _page(browser)

    server = start_server(_args(tmp_path))
    page.goto(server.url + "/")
    _wait_photo(page, 0)
    assert page.locator("#progress").inner_text() == "0 of 24 labelled"
    assert page.locator("#photo-name").inner_text() == "photo00.jpg"
    for i in range(5):
        _label(page, truth[names[i]], main_last=i == 2)
        assert _selected(page) == (truth[names[i]][0], sorted(truth[names[i]], key=VOCAB.index))
        page.keyboard.press("Enter")
        _wait_photo(page, i + 1)
    assert _rows(out) == {n: want[n] for n in names[:5]}  # on disk after every save

    page.keyboard.press("s")  # skip photo 5
    _wait_photo(page, 6)
    assert page.locator("#progress").inner_text() == "5 of 24 labelled · 1 skipped"
    wrong = next(v for v in VOCAB if v not in truth[names[6]])
    page.keyboard.press(_key(wrong))
    page.keyboard.press("Enter")
    _wait_photo(page, 7)
    assert _rows(out)[names[6]] == (wrong, (wrong,))
    page.keyboard.press("u")  # undo the wrong save: back on photo 6, unlabelled again
    _wait_photo(page, 6)
    assert "Undone: photo06.jpg is unlabelled again" in page.locator("#status").inner_text()
    assert _selected(page) == (None, []) and names[6] not in _rows(out)
    _label(page, truth[names[6]])
    page.keyboard.press("Enter")
    _wait_photo(page, 7)
    page.keyboard.press("Backspace")  # back to photo 6: its saved labels are shown
    _wait_photo(page, 6)
    assert (
        page.locator("#photo-state").inner_text() == "labelled" and _selected(page)[0] == truth[names[6]][0]
    )
    page.keyboard.press("Enter")  # saving it unchanged moves on to the next open photo
    _wait_photo(page, 7)
    for i in (7, 8):
        _label(page, truth[names[i]])
        page.keyboard.press("Enter")
        _wait_photo(page, i + 1)
    page.keyboard.press("g")
    page.wait_for_selector("#grid:not([hidden]) figure")
    assert page.locator("#grid figure").count() == 9 and page.locator("#grid figure.skipped").count() == 1
    assert page.locator("#grid figure").first.locator(".g-main").inner_text() == truth[names[0]][0]
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer:not([hidden])")

    # ---- the server dies while photo 9 is half labelled
    _label(page, truth[names[9]])
    server.kill()
    page.keyboard.press("Enter")
    page.wait_for_selector("#status.bad")
    assert "cannot be reached" in page.locator("#status").inner_text()
    assert _selected(page)[0] == truth[names[9]][0]  # the unsaved choice is still on the page
    assert _rows(out) == {n: want[n] for n in names[:9] if n != names[5]}
    assert (tmp_path / "styles.skipped.txt").read_text() == "photos/photo05.jpg\n"
    page.problems.clear()  # the refused connection is logged by the browser: expected here

    # ---- restart: labelling resumes at the first photo neither labelled nor skipped
    server = start_server(_args(tmp_path))
    page.goto(server.url + "/")
    _wait_photo(page, 9)
    assert page.locator("#progress").inner_text() == "8 of 24 labelled · 1 skipped"
    for i in range(9, N_PHOTOS):
        _label(page, truth[names[i]], main_last=i % 5 == 0)
        page.keyboard.press("Enter")
        if i < N_PHOTOS - 1:
            _wait_photo(page, i + 1)
    page.wait_for_selector("#status:has-text('All photos are done')")
    page.keyboard.press("g")
    page.locator("#grid figure.skipped").click()
    _wait_photo(page, 5)
    _label(page, truth[names[5]])
    page.keyboard.press("Enter")
    page.wait_for_selector("#progress:has-text('24 of 24 labelled')")
    assert "All photos are done: 24 labelled" in page.locator("#status").inner_text()
    SCREENSHOT_COPY.write_bytes(page.screenshot())
    assert server.stop() == 0
    assert "stopped: 24 of 24 photos labelled" in server.output()
    assert page.problems == []
    page.close()

    # ---- the loop closes: reader, data check, training, all on the page's output unchanged
    assert _rows(out) == want
    check = runner.invoke(cli_app, ["data", "check", str(out), "--label-list", str(tmp_path / "labels.txt")])
    assert check.exit_code == 0 and "0 errors" in check.output, check.output
    run = tmp_path / "run"
    result = runner.invoke(
        cli_app,
        [
            "train",
            str(CONFIG),
            "--data",
            str(out),
            "--out",
            str(run),
            "data.label_list=null",
            "optim.freeze_stages=0",
            "model.backbone=test_tiny",
            "model.pretrained=false",
            "data.input_size=[32,32]",
            "data.batch_size=8",
            "data.num_workers=0",
            "model.heads.labels.gcn_hidden=16",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert read_info(run / "model.safetensors").label_names["labels"] == sorted(VOCAB)


def test_two_tabs_see_each_others_labels(browser, tmp_path):
    colour_photos(tmp_path / "photos", 6, size=32)
    write_vocab(tmp_path / "labels.txt")
    session = open_session(tmp_path / "photos", tmp_path / "labels.txt", tmp_path / "styles.csv")
    with serve_in_thread(create_label_app(session)) as base:
        a, b = _page(browser), _page(browser)
        for page in (a, b):
            page.goto(base + "/")
            _wait_photo(page, 0)
        a.keyboard.press("3")
        a.keyboard.press("Enter")
        _wait_photo(a, 1)
        b.keyboard.press("ArrowRight")  # tab B moves on without saving, then saves photo 1
        _wait_photo(b, 1)
        b.keyboard.press("2")
        b.keyboard.press("Enter")
        _wait_photo(b, 2)  # the next photo is shown once the save (and the merge of A's label) is done
        assert b.locator("#progress").inner_text() == "2 of 6 labelled"
        b.keyboard.press("g")  # B learnt of A's save (the version jumped) and shows it in its grid
        b.wait_for_selector("#grid figure >> nth=1")
        assert b.locator("#grid .g-main").all_inner_texts() == ["blue", "green"]
        assert a.problems == [] and b.problems == []
        a.close()
        b.close()
    session.close()
    assert [(s.path.name, s.main) for s in read_multilabel(tmp_path / "styles.csv").samples] == [
        ("photo00.jpg", "blue"),
        ("photo01.jpg", "green"),
    ]


def test_model_suggestions_are_accepted_with_enter(browser, tmp_path, start_server):
    colour_photos(tmp_path / "photos", 8, size=32)
    write_vocab(tmp_path / "labels.txt")
    model = tiny_model(tmp_path / "m.safetensors", ["Red", "green", "BLUE", "magenta"], seed=1)
    server = start_server(_args(tmp_path, "--model", str(model), "--order", "uncertain"))
    try:
        assert any("3 of 4 labels" in line and "yellow" in line for line in server.lines)
        assert "order: most uncertain first" in server.lines
        st = httpx.get(server.url + "/api/state").json()
        first = st["order"][0]
        suggestion = st["photos"][first]["suggestion"]
        assert st["start"] == first and suggestion["labels"], suggestion
        page = _page(browser)
        page.goto(server.url + "/")
        _wait_photo(page, first)
        assert _selected(page) == (suggestion["main"], sorted(suggestion["labels"], key=VOCAB.index))
        assert page.locator(".lab.suggested").count() == len(suggestion["labels"])
        assert page.locator("#photo-state").inner_text() == "suggested"
        page.keyboard.press("Enter")
        _wait_photo(page, st["order"][1])
        assert page.problems == []
        page.close()
    finally:
        server.stop()
    row = read_multilabel(tmp_path / "styles.csv").samples[0]
    assert (row.path.name, row.main, list(row.labels)) == (
        st["photos"][first]["name"],
        suggestion["main"],
        suggestion["labels"],
    )


def test_labels_past_the_ninth_and_an_unreadable_photo(browser, tmp_path):
    """12 labels: ] moves the digits to labels 10-12; a broken photo says so and can be skipped."""
    colour_photos(tmp_path / "photos", 2, size=32)
    (tmp_path / "photos" / "photo01.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    vocab = [f"style{k:02d}" for k in range(1, 13)]
    write_vocab(tmp_path / "labels.txt", vocab)
    session = open_session(tmp_path / "photos", tmp_path / "labels.txt", tmp_path / "styles.csv")
    with serve_in_thread(create_label_app(session)) as base:
        page = _page(browser)
        page.goto(base + "/")
        _wait_photo(page, 0)
        assert page.locator(".bank").count() == 2 and "labels 1–9" in page.locator("#bank-info").inner_text()
        page.keyboard.press("2")  # style02
        page.keyboard.press("]")
        assert "labels 10–12" in page.locator("#bank-info").inner_text()
        page.keyboard.press("3")  # style12
        page.keyboard.press("Shift+1")  # style10, made the main label
        page.keyboard.press("9")  # past the last label: nothing
        assert _selected(page) == ("style10", ["style02", "style10", "style12"])
        page.keyboard.press("[")
        page.keyboard.press("Escape")  # clears the choice
        assert _selected(page) == (None, [])
        page.keyboard.press("Enter")  # nothing chosen: refused with a message, nothing written
        page.wait_for_selector("#status.bad:has-text('Choose at least one label')")
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        _wait_photo(page, 1)
        page.wait_for_selector("#photo-error:not([hidden]):has-text('photo01.jpg: cannot show this photo')")
        page.keyboard.press("s")
        page.wait_for_selector("#status:has-text('All photos are done: 1 labelled, 1 skipped')")
        problems = [p for p in page.problems if "422" not in p]  # the refused photo request is logged
        assert problems == []
        page.close()
    session.close()
    rows = read_multilabel(tmp_path / "styles.csv").samples
    assert [(s.path.name, s.labels) for s in rows] == [("photo00.jpg", ("style01",))]
