"""Synthetic DeepFashion: layout, determinism, and a round trip through the reader."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fashionlens.data.deepfashion import ANNO_FILES, read_deepfashion
from fashionlens.data.synth import (
    SIGNAL_ATTRIBUTES,
    synth_attributes,
    synth_categories,
    synth_deepfashion,
    synth_plan,
)

N, SIZE = 40, (96, 80)  # (H, W): not square, so a swapped axis shows


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth_df")
    return root, synth_deepfashion(root, n=N, seed=3, image_size=SIZE)


def test_layout_and_summary(synth_root):
    root, summary = synth_root
    for rel in ANNO_FILES.values():
        assert (root / rel).is_file(), rel
    images = sorted(p.relative_to(root).as_posix() for p in root.glob("img/*/*.jpg"))
    assert len(images) == N
    assert all(re.fullmatch(r"img/[A-Za-z_-]+/img_\d{8}\.jpg", name) for name in images)
    assert summary["n_images"] == N and sum(summary["categories"].values()) == N
    assert len(summary["categories"]) <= 6 and set(summary["signal_attributes"]) == set(SIGNAL_ATTRIBUTES)
    lines = (root / "Anno/list_attr_img.txt").read_text().splitlines()
    assert lines[0] == str(N) and lines[1] == "image_name  attribute_labels" and len(lines) == N + 2


def test_vocabularies_match_the_real_proportions():
    cats = synth_categories()
    assert len(cats) == 50 and len({n for n, _ in cats}) == 50
    assert Counter(t for _, t in cats) == {1: 20, 2: 16, 3: 14}
    attrs = synth_attributes()
    assert len(attrs) == 1000 and len({n for n, _ in attrs}) == 1000
    assert Counter(t for _, t in attrs) == {1: 156, 2: 218, 3: 180, 4: 216, 5: 230}
    assert all(" " in n for n, _ in attrs)  # every name has a space: exercises rsplit parsing
    assert {n: t for n, t in attrs if n in SIGNAL_ATTRIBUTES} == SIGNAL_ATTRIBUTES


def test_round_trip_through_the_reader(synth_root):
    root, summary = synth_root
    plan = synth_plan(N, seed=3, image_size=SIZE)
    idx = read_deepfashion(root, check_images=True)
    assert list(idx.image_names) == [r.name for r in plan]
    np.testing.assert_array_equal(idx.category, [r.category for r in plan])
    np.testing.assert_array_equal(idx.clothes_type, [r.clothes_type for r in plan])
    np.testing.assert_array_equal(idx.bbox, np.stack([r.bbox for r in plan]))
    np.testing.assert_array_equal(idx.landmark_visibility, np.stack([r.visibility for r in plan]))
    present = idx.landmark_visibility < 2
    np.testing.assert_array_equal(
        idx.landmarks[present], np.stack([r.landmark_indices for r in plan])[present]
    )
    assert (idx.landmarks[~present] == 0).all()
    assert Counter(idx.partition.tolist()) == summary["partition"] == {"train": 28, "val": 6, "test": 6}
    names = list(idx.attribute_names)
    for row, rec in zip(idx.attributes, plan, strict=True):
        assert {names[j] for j in np.flatnonzero(row == 1)} == set(rec.positives) - {
            names[j] for j in rec.unknown
        }
    assert {names[j] for j in np.flatnonzero((idx.attributes == 1).any(0))} <= set(SIGNAL_ATTRIBUTES)
    # Landmarks and boxes lie inside the image; clothes types fill the documented slots.
    assert (idx.bbox[:, 2] < SIZE[1]).all() and (idx.bbox[:, 3] < SIZE[0]).all()
    np.testing.assert_array_equal(present.sum(1), [{1: 6, 2: 4, 3: 8}[t] for t in idx.clothes_type])


def test_landmark_rows_are_zero_padded_like_the_real_file(synth_root):
    root, _ = synth_root
    rows = (root / "Anno/list_landmarks.txt").read_text().splitlines()[2:]
    assert all(len(r.split()) == 1 + 1 + 24 for r in rows)
    lower = next(r for r in rows if r.split()[1] == "2")
    assert lower.split()[-12:] == ["0", "000", "000"] * 4


def test_deterministic_for_a_seed(tmp_path):
    a = synth_deepfashion(tmp_path / "a", n=6, seed=11, image_size=(64, 64))
    b = synth_deepfashion(tmp_path / "b", n=6, seed=11, image_size=(64, 64))
    c = synth_plan(6, seed=12, image_size=(64, 64))
    assert a["categories"] == b["categories"]
    for rel in [
        *ANNO_FILES.values(),
        *(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").glob("img/*/*.jpg")),
    ]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert [r.name for r in c] != [r.name for r in synth_plan(6, seed=11, image_size=(64, 64))]


def test_signal_is_drawn_where_the_landmarks_say(synth_root):
    """The collar colour attribute is visible at the collar landmarks (a local cue)."""
    from PIL import Image

    from fashionlens.data.synth import _COLLAR_COLOURS

    root, _ = synth_root
    hits = 0
    for rec in synth_plan(N, seed=3, image_size=SIZE):
        collar = rec.style["collar"]
        if not collar or (rec.visibility[:2] != 0).any():
            continue
        img = np.asarray(Image.open(root / rec.name).convert("RGB"), dtype=np.int64)
        x, y = rec.landmarks[0]
        patch = img[max(int(y) - 1, 0) : int(y) + 3, max(int(x) - 1, 0) : int(x) + 3].reshape(-1, 3)
        hits += int((np.abs(patch - _COLLAR_COLOURS[collar]).sum(1) < 90).any())
    assert hits >= 5
