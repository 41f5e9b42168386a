"""The labelling session's store, photo finder and suggestions, without a browser or a server."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from fashionlens.data.errors import DataFormatError
from fashionlens.data.multilabel import read_multilabel
from fashionlens.labelling import store as store_mod
from fashionlens.labelling.photos import PhotoAccessError, find_photos, read_inside
from fashionlens.labelling.store import (
    LabelSessionError,
    LabelStore,
    LabelValueError,
    make_record,
    read_vocabulary,
    skipped_path,
)
from fashionlens.labelling.suggest import _from_scores, match_head, normalise, suggest, uncertain_first
from label_fixtures import VOCAB, colour_photos, tiny_model


@pytest.fixture
def photos(tmp_path):
    colour_photos(tmp_path / "photos", 6)
    return find_photos(tmp_path / "photos")


def _open(tmp_path, photos, name="labels.csv") -> LabelStore:
    return LabelStore(tmp_path / name, VOCAB, photos)


def test_make_record_orders_main_first_and_refuses_unknown_names():
    assert make_record(None, ["blue", "red"], VOCAB).labels == ("blue", "red")
    rec = make_record("red", ["blue", "red", "blue"], VOCAB)
    assert rec.main == "red" and rec.labels == ("red", "blue")
    assert make_record("green", [], VOCAB).labels == ("green",)
    with pytest.raises(LabelValueError, match="at least one label"):
        make_record(None, [], VOCAB)
    with pytest.raises(LabelValueError, match=r"unknown label\(s\) \['purple'\]"):
        make_record(None, ["red", "purple"], VOCAB)


def test_vocabulary_errors_name_the_line(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("casual\nstreet\ncasual\n")
    with pytest.raises(DataFormatError, match=r"v.txt:3: label 'casual' listed twice"):
        read_vocabulary(path)
    path.write_text("casual\nboho|chic\n")
    with pytest.raises(DataFormatError, match=r"v.txt:2: label 'boho\|chic' contains '\|'"):
        read_vocabulary(path)
    path.write_text("Casual\n\nStreet style\n")
    assert read_vocabulary(path) == ["Casual", "Street style"]


def test_every_save_is_on_disk_and_read_back_by_the_multilabel_reader(tmp_path, photos):
    store = _open(tmp_path, photos)
    store.save(2, "blue", ["blue", "red"])
    store.save(0, None, ["green"])
    data = read_multilabel(tmp_path / "labels.csv", label_list=VOCAB)
    assert [s.path.name for s in data.samples] == ["photo02.jpg", "photo00.jpg"]  # in labelling order
    assert [(s.main, s.labels) for s in data.samples] == [("blue", ("blue", "red")), ("green", ("green",))]
    assert (tmp_path / "labels.csv").read_text().splitlines()[1] == "photos/photo02.jpg,blue,blue|red"
    store.save(2, "red", ["red"])  # relabelling keeps the row's place
    assert [s.main for s in read_multilabel(tmp_path / "labels.csv").samples] == ["red", "green"]
    assert store.counts() == {"labelled": 2, "skipped": 0, "total": 6, "other_rows": 0}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    store.close()


def test_jsonl_output(tmp_path, photos):
    store = _open(tmp_path, photos, "labels.jsonl")
    store.save(1, "red", ["red", "yellow"])
    store.close()
    data = read_multilabel(tmp_path / "labels.jsonl")
    assert data.samples[0].labels == ("red", "yellow") and data.samples[0].path.name == "photo01.jpg"


def test_existing_file_is_extended_and_other_rows_kept(tmp_path, photos):
    out = tmp_path / "labels.csv"
    out.write_text("image,main,labels\nelsewhere/old.jpg,red,red|blue\nphotos/photo03.jpg,yellow,yellow\n")
    store = _open(tmp_path, photos)
    assert store.record(3).labels == ("yellow",)
    assert store.counts() == {"labelled": 1, "skipped": 0, "total": 6, "other_rows": 1}
    assert store.resume_at(list(range(6))) == 0
    store.save(0, "green", ["green"])
    store.close()
    assert out.read_text().splitlines() == [
        "image,main,labels",
        "elsewhere/old.jpg,red,red|blue",
        "photos/photo03.jpg,yellow,yellow",
        "photos/photo00.jpg,green,green",
    ]


@pytest.mark.parametrize("text", ["", "image,main,labels\n", "\ufeffimage,main,labels\r\n\r\n"])
def test_empty_existing_file_is_a_fresh_start(tmp_path, photos, text):
    (tmp_path / "labels.csv").write_text(text)
    store = _open(tmp_path, photos)
    assert store.counts()["labelled"] == 0
    store.close()


def test_bad_existing_file_is_refused_naming_the_line(tmp_path, photos):
    out = tmp_path / "labels.csv"
    out.write_text("image,main,labels\nphotos/photo00.jpg,red,red\nphotos/photo01.jpg,purple,purple|red\n")
    with pytest.raises(
        LabelSessionError, match=r"labels.csv:3: field 'main': unknown label\(s\) \['purple'\]"
    ):
        _open(tmp_path, photos)
    out.write_text("just some notes, not a table\n")
    with pytest.raises(LabelSessionError, match="labels.csv:1: missing column 'image'"):
        _open(tmp_path, photos)
    assert out.read_text() == "just some notes, not a table\n"  # never overwritten
    assert not (tmp_path / ".labels.csv.lock").exists()  # the failed start released its lock
    with pytest.raises(LabelSessionError, match="expected .csv or .jsonl"):
        _open(tmp_path, photos, "labels.txt")


def test_a_second_session_on_the_same_file_is_refused(tmp_path, photos):
    first = _open(tmp_path, photos)
    with pytest.raises(
        LabelSessionError, match=f"open in another labelling session \\(process {os.getpid()}"
    ):
        _open(tmp_path, photos)
    first.close()
    _open(tmp_path, photos).close()  # free again


def test_skip_resume_and_undo(tmp_path, photos):
    order = [0, 1, 2, 3, 4, 5]
    store = _open(tmp_path, photos)
    store.save(0, "red", ["red"])
    store.skip(1)
    assert store.next_open(order, 0) == 2 and store.is_skipped(1)
    assert skipped_path(tmp_path / "labels.csv").read_text() == "photos/photo01.jpg\n"
    store.skip(0)  # a labelled photo is not skipped (no change, nothing to undo)
    assert store.record(0) is not None and not store.is_skipped(0)
    store.save(2, "blue", ["blue"])
    store.close()
    again = _open(tmp_path, photos)  # restart: labels and skips are read back
    assert again.resume_at(order) == 3 and again.is_skipped(1) and again.record(2).main == "blue"
    assert again.undo() is None  # the undo history belongs to a session
    again.save(1, "green", ["green"])
    assert not again.is_skipped(1) and again.counts()["skipped"] == 0
    assert again.undo() == 1 and again.is_skipped(1) and again.record(1) is None
    again.save(2, "yellow", ["yellow"])
    assert again.undo() == 2 and again.record(2).main == "blue"
    assert [s.main for s in read_multilabel(tmp_path / "labels.csv").samples] == ["red", "blue"]
    for i in (3, 4, 5):
        again.save(i, "red", ["red"])
    assert again.next_open(order, 5) is None and again.resume_at(order) == 1  # only the skipped one is left
    again.close()


def test_a_failed_write_changes_nothing(tmp_path, photos, monkeypatch):
    store = _open(tmp_path, photos)
    store.save(0, "red", ["red"])
    before = (tmp_path / "labels.csv").read_bytes()

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod, "atomic_write_bytes", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save(1, "blue", ["blue"])
    with pytest.raises(OSError):
        store.save(0, "green", ["green"])
    assert store.record(1) is None and store.record(0).main == "red" and store.version == 1
    assert (tmp_path / "labels.csv").read_bytes() == before
    monkeypatch.undo()
    assert store.undo() == 0 and not (tmp_path / "labels.csv").read_text().count("photo00")
    store.close()


def test_concurrent_saves_are_serialised(tmp_path):
    colour_photos(tmp_path / "photos", 40, size=16)
    store = LabelStore(tmp_path / "labels.csv", VOCAB, find_photos(tmp_path / "photos"))
    expected = {i: VOCAB[i % 4] for i in range(40)}
    errors = []

    def worker(part: int) -> None:
        try:
            for i in range(part, 40, 8):
                store.save(i, "red", ["red"])  # first a provisional label, then the final one
                store.save(i, expected[i], [expected[i], VOCAB[(i + 1) % 4]])
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert errors == [] and store.version == 80
    data = read_multilabel(tmp_path / "labels.csv", label_list=VOCAB)
    assert {int(s.path.stem[5:]): s.main for s in data.samples} == expected
    assert all(
        s.labels == (expected[i], VOCAB[(i + 1) % 4])
        for i, s in ((int(s.path.stem[5:]), s) for s in data.samples)
    )


# ------------------------------------------------------------------------------ photos


def test_find_photos_natural_order_hidden_and_non_images_skipped(tmp_path):
    root = tmp_path / "p"
    (root / "sub").mkdir(parents=True)
    for name in ("img10.jpg", "img2.PNG", "notes.txt", ".hidden.jpg", "sub/a.webp"):
        (root / name).write_bytes(b"x")
    (root / ".cache").mkdir()
    (root / ".cache" / "c.jpg").write_bytes(b"x")
    assert [p.rel for p in find_photos(root).items] == ["img2.PNG", "img10.jpg", "sub/a.webp"]
    with pytest.raises(NotADirectoryError):
        find_photos(tmp_path / "missing")


def test_links_out_of_the_folder_are_left_out_and_refused(tmp_path):
    root, outside = tmp_path / "p", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    (outside / "private.jpg").write_bytes(b"SECRET")
    (root / "ok.jpg").write_bytes(b"fine")
    (root / "inner").mkdir()
    (root / "inner" / "x.jpg").write_bytes(b"x")
    os.symlink(outside / "private.jpg", root / "leak.jpg")
    os.symlink(outside, root / "leakdir")
    os.symlink(root / "inner", root / "alias")  # inside: allowed
    os.symlink(root, root / "inner" / "loop")  # a loop back to the top is walked once
    found = find_photos(root)
    # "inner" is the same folder, walked once
    assert [p.rel for p in found.items] == ["alias/x.jpg", "ok.jpg"]
    assert found.escaped == ["leak.jpg", "leakdir/"]
    ok = next(p for p in found.items if p.rel == "ok.jpg")
    assert read_inside(found.root, ok) == b"fine"
    (root / "ok.jpg").unlink()  # swapped for a link after the list was made
    os.symlink(outside / "private.jpg", root / "ok.jpg")
    with pytest.raises(PhotoAccessError, match="outside the photo folder"):
        read_inside(found.root, ok)


# ------------------------------------------------------------------------------ suggestions


def test_match_head_uses_the_best_covering_head_and_normalised_names():
    names = {"labels": ["Red", "green_tone", "purple"], "category": ["red", "blue", "green", "yellow"]}
    assert match_head(names, VOCAB) == (
        "category",
        {"red": "red", "blue": "blue", "green": "green", "yellow": "yellow"},
    )
    head, mapping = match_head({"labels": ["Street_Style", "casual"]}, ["street-style", "formal", "Casual"])
    assert head == "labels" and mapping == {"Street_Style": "street-style", "casual": "Casual"}
    assert normalise(" Street  Style ") == "street style"
    with pytest.raises(ValueError, match="none of the model's label names"):
        match_head({"labels": ["purple"]}, VOCAB)


def test_suggestions_follow_the_model_scores(tmp_path):
    """Pre-selection and uncertainty recomputed here from the model's own raw outputs."""
    import fashionlens

    colour_photos(tmp_path / "photos", 8, size=32)
    photos = find_photos(tmp_path / "photos")
    model = tiny_model(tmp_path / "m.safetensors", ["Red", "green", "purple", "blue"])
    predictor = fashionlens.load_model(model, backend="torch")
    paths = [p.path for p in photos.items]
    result = suggest(predictor, paths, VOCAB, indices=list(range(10, 18)), progress=False)
    assert (
        result.head == "labels"
        and result.matched == ["red", "green", "blue"]
        and result.missing == ["yellow"]
    )
    assert "3 of 4 labels" in result.note() and "yellow" in result.note()
    thr = predictor.tag_threshold(None)
    for k, pred in zip(
        range(10, 18), predictor.predict([str(p) for p in paths], top_k=4, threshold=0.0), strict=True
    ):
        raw = {s.label: s.score for s in pred.tags}
        scores = {"red": raw["Red"], "green": raw["green"], "blue": raw["blue"]}
        want = sorted((n for n in scores if scores[n] >= thr), key=lambda n: -scores[n])
        got = result.by_photo[k]
        assert got.labels == want and got.main == (want[0] if want else None)
        assert result.margin[k] == pytest.approx(min(abs(p - thr) for p in scores.values()), abs=1e-6)
    order = uncertain_first([11, 10, 12, 13, 14, 15, 16, 17, 99], result)
    assert order[-1] == 99 and np.all(np.diff([result.margin[i] for i in order[:-1]]) >= 0)


def test_a_styles_head_suggests_its_main_style_and_the_subs_above_its_threshold(tmp_path):
    """The styles head covers the style vocabulary (the tag head does not): main = the most likely style,
    subs = the others from the style threshold on; uncertainty = the smaller of the main's lead and the
    subs' distance to the threshold. Recomputed here from the model's raw style scores."""
    import fashionlens

    styles = ["Casual", "Retro", "Modern", "Classic"]
    colour_photos(tmp_path / "photos", 8, size=32)
    paths = [p.path for p in find_photos(tmp_path / "photos").items]
    model = tiny_model(tmp_path / "m.safetensors", ["bag", "belt"], style_names=styles, seed=3)
    predictor = fashionlens.load_model(model, backend="torch")
    vocab = ["casual", "retro", "modern", "classic", "sporty"]
    result = suggest(predictor, paths, vocab, progress=False)
    assert result.head == "styles" and result.matched == vocab[:4] and result.missing == ["sporty"]
    thr = predictor.style_threshold(None)
    for k, pred in enumerate(predictor.predict([str(p) for p in paths], top_k=4, threshold=0.0)):
        raw = {s.label.lower(): s.score for s in pred.styles}
        ranked = sorted(raw, key=lambda n: -raw[n])
        got = result.by_photo[k]
        assert got.main == ranked[0] and got.labels == [ranked[0]] + [n for n in ranked[1:] if raw[n] >= thr]
        lead = raw[ranked[0]] - raw[ranked[1]]
        assert result.margin[k] == pytest.approx(
            min([lead, *(abs(raw[n] - thr) for n in ranked[1:])]), abs=1e-6
        )
    order = uncertain_first(list(range(8)), result)
    assert sorted(order) == list(range(8)) and np.all(np.diff([result.margin[i] for i in order]) >= 0)
    s, margin = _from_scores("styles", {"Casual": 0.9, "Retro": 0.6, "Modern": 0.2}, 0.5)
    assert s.main == "Casual" and s.labels == ["Casual", "Retro"] and margin == pytest.approx(0.1)


def test_the_shipped_model_suggests_ccp_styles_from_its_styles_head():
    from fashionlens.checkpoint import read_info
    from fashionlens.inference.predictor import resolve_model_path

    vocab_file = Path(__file__).resolve().parents[2] / "shared" / "data" / "ccp" / "styles.txt"
    if not vocab_file.is_file():
        pytest.skip(f"no style vocabulary at {vocab_file} (../shared/data is not on this machine)")
    vocab = [line.strip() for line in vocab_file.read_text().splitlines() if line.strip()]
    head, mapping = match_head(read_info(resolve_model_path("fashionlens-lite")).label_names, vocab)
    assert head == "styles" and len(vocab) == 23 and mapping == {v: v for v in vocab}


def test_category_head_suggests_its_top_class(tmp_path):
    from fashionlens.labelling.suggest import Suggestion, _from_scores

    s, margin = _from_scores("category", {"red": 0.7, "blue": 0.2, "green": 0.1}, 0.5)
    assert s == Suggestion(
        "red", ["red"], {"red": 0.7, "blue": 0.2, "green": 0.1}
    ) and margin == pytest.approx(0.5)
    s, margin = _from_scores("category", {"red": 0.4, "blue": 0.35}, 0.5)
    assert s.labels == [] and s.main is None and margin == pytest.approx(0.05)


def test_unreadable_photo_gets_no_suggestion(tmp_path):
    import fashionlens

    colour_photos(tmp_path / "photos", 2, size=32)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    photos = find_photos(tmp_path / "photos")
    predictor = fashionlens.load_model(tiny_model(tmp_path / "m.safetensors", VOCAB), backend="torch")
    result = suggest(predictor, [p.path for p in photos.items], VOCAB, progress=False)
    broken = [p.rel for p in photos.items].index("broken.jpg")
    assert set(result.errors) == {broken} and set(result.by_photo) == {0, 1, 2} - {broken}
    assert uncertain_first([0, 1, 2], result)[-1] == broken


def test_store_root_is_absolute(tmp_path, photos, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = LabelStore(Path("labels.csv"), VOCAB, find_photos("photos"))
    store.save(0, "red", ["red"])
    store.close()
    assert (tmp_path / "labels.csv").read_text().splitlines()[1].startswith("photos/photo00.jpg,")
