"""Multi-label format, protocol steps (top-n, split), CCP and image-folder readers, stats."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA
from fashionlens.data import (
    ClassificationSet,
    DataFormatError,
    LabelledSet,
    Sample,
    format_stats,
    multilabel_stats,
    read_ccp,
    read_ccp_parts,
    read_image_folder,
    read_multilabel,
    select_top_labels,
    split_dataset,
    write_multilabel,
)

SHARED = SHARED_DATA  # ../shared/data beside the checkout (tests skip where it is absent)
CCP = SHARED / "ccp"
CLOTHING_SMALL = SHARED / "clothing-small"


def _touch_images(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / name)


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    _touch_images(tmp_path / "img", ["a.jpg", "b.jpg", "c.jpg"])
    path = tmp_path / "styles.csv"
    path.write_text("image,main,labels\nimg/a.jpg,Casual,Casual|Sexy\nimg/b.jpg,Romantic,Sexy\nimg/c.jpg,,Modern\n")
    return path


def test_read_csv(csv_file: Path) -> None:
    ds = read_multilabel(csv_file)
    assert ds.label_names == ["Casual", "Modern", "Romantic", "Sexy"]
    assert [s.main for s in ds.samples] == ["Casual", "Romantic", None]
    assert ds.samples[1].labels == ("Romantic", "Sexy")  # main added when missing
    assert ds.samples[0].path == (csv_file.parent / "img" / "a.jpg").absolute()
    np.testing.assert_array_equal(ds.targets(), [[1, 0, 0, 1], [0, 0, 1, 1], [0, 1, 0, 0]])
    assert ds.targets().dtype == np.float32
    np.testing.assert_array_equal(ds.main_indices(), [0, 2, -1])
    assert [s.main for s in ds.subset([2, 0]).samples] == [None, "Casual"]


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
def test_round_trip(csv_file: Path, tmp_path: Path, ext: str) -> None:
    ds = read_multilabel(csv_file)
    out = tmp_path / "out" / f"copy.{ext}"
    out.parent.mkdir()
    write_multilabel(ds, out, label_list_path=tmp_path / "out" / "labels.txt")
    back = read_multilabel(out, label_list=tmp_path / "out" / "labels.txt")
    assert back.samples == ds.samples
    assert back.label_names == ds.label_names
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write left no temp


def test_images_root_and_label_list(tmp_path: Path) -> None:
    _touch_images(tmp_path / "photos", ["x.png"])
    path = tmp_path / "meta" / "data.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"image": "x.png", "main": None, "labels": ["b"]}) + "\n\n")
    (tmp_path / "labels.txt").write_text("c\nb\n\na\n")
    ds = read_multilabel(path, images_root=tmp_path / "photos", label_list=tmp_path / "labels.txt")
    assert ds.label_names == ["c", "b", "a"]  # list-file order, unused labels kept
    np.testing.assert_array_equal(ds.targets(), [[0, 1, 0]])


MALFORMED_CSV = {
    "missing column": ("image,main\na.jpg,x\n", 1, "labels"),
    "empty image": ("image,main,labels\na.jpg,x,x\n,y,y\n", 3, "image"),
    "wrong field count": ("image,main,labels\na.jpg,x\n", 2, "fields"),
    "duplicate row": ("image,main,labels\na.jpg,x,x\nb.jpg,y,y\n./a.jpg,z,z\n", 4, "duplicate"),
    "unknown label": ("image,main,labels\na.jpg,x,x|zzz\n", 2, "zzz"),
    "unknown main": ("image,main,labels\na.jpg,qq,x\n", 2, "main"),
    "missing image": ("image,main,labels\na.jpg,x,x\nnope.jpg,y,y\n", 3, "nope.jpg"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CSV))
def test_malformed_csv(tmp_path: Path, case: str) -> None:
    text, line, field = MALFORMED_CSV[case]
    _touch_images(tmp_path, ["a.jpg", "b.jpg"])
    path = tmp_path / "bad.csv"
    path.write_text(text)
    label_list = ["x", "y", "z"] if "unknown" in case else None
    with pytest.raises(DataFormatError) as err:
        read_multilabel(path, label_list=label_list)
    assert f"bad.csv:{line}" in str(err.value) and field in str(err.value)
    assert err.value.line == line and err.value.path == str(path)


MALFORMED_JSONL = {
    "bad json": ('{"image": "a.jpg", "labels": ["x"]}\n{"image": "b.jpg", "labels": [}\n', 2, "JSON"),
    "not an object": ('["a.jpg"]\n', 1, "object"),
    "missing labels": ('{"image": "a.jpg", "main": "x"}\n', 1, "labels"),
    "labels not a list": ('{"image": "a.jpg", "labels": "x|y"}\n', 1, "labels"),
    "empty image": ('\n{"image": "", "labels": ["x"]}\n', 2, "image"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_JSONL))
def test_malformed_jsonl(tmp_path: Path, case: str) -> None:
    text, line, field = MALFORMED_JSONL[case]
    _touch_images(tmp_path, ["a.jpg", "b.jpg"])
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(DataFormatError) as err:
        read_multilabel(path)
    assert f"bad.jsonl:{line}" in str(err.value) and field in str(err.value)


def test_missing_images_listed_and_check_off(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("image,main,labels\n" + "".join(f"m{i}.jpg,x,x\n" for i in range(8)))
    with pytest.raises(DataFormatError, match=r"8 image file\(s\) not found: line 2: .*m0.jpg.*and 3 more"):
        read_multilabel(path)
    assert len(read_multilabel(path, check_images=False)) == 8


def _set(rows: list[tuple[str, str | None, str]]) -> LabelledSet:
    samples = [Sample(Path(f"/d/{name}.jpg"), tuple(labels.split("|")) if labels else (), main)
               for name, main, labels in rows]
    return LabelledSet(samples, sorted({x for s in samples for x in s.labels}), Path("/d"))


def test_select_top_labels_by_main() -> None:
    ds = _set([
        ("i0", "A", "A|B|E"), ("i1", "A", "A"), ("i2", "A", "A|C"),
        ("i3", "B", "B|A"), ("i4", "B", "B"),
        ("i5", "C", "C|A"), ("i6", "C", "C|E"),  # C ties B on 2 main images: B wins by name
        ("i7", "D", "D|A"), ("i8", "E", "E"),
    ])
    top = select_top_labels(ds, 2)
    assert top.label_names == ["A", "B"]
    assert [(s.path.stem, s.main, s.labels) for s in top.samples] == [
        ("i0", "A", ("A", "B")), ("i1", "A", ("A",)), ("i2", "A", ("A",)),
        ("i3", "B", ("B", "A")), ("i4", "B", ("B",)),
    ]
    assert len(select_top_labels(ds, 99)) == len(ds)


def test_select_top_labels_without_main() -> None:
    ds = _set([("i0", None, "A|B"), ("i1", None, "A"), ("i2", None, "C"), ("i3", None, "B|C|D"),
               ("i4", None, "A|D")])  # counts: A 3, B 2, C 2, D 2 -> top 2 = A, B
    top = select_top_labels(ds, 2)
    assert top.label_names == ["A", "B"]
    assert [(s.path.stem, s.labels) for s in top.samples] == [
        ("i0", ("A", "B")), ("i1", ("A",)), ("i3", ("B",)), ("i4", ("A",))]


def test_select_top_labels_counted_over_several_parts() -> None:
    # CCP's two annotation kinds: each alone has another most frequent label; together A leads
    first = _set([("i0", None, "A|B"), ("i1", None, "A"), ("i2", None, "A|C")])  # A 3, B 1, C 1
    second = _set([("j0", None, "C"), ("j1", None, "C|A"), ("j2", None, "B")])  # C 2, A 1, B 1
    assert select_top_labels(second, 1).label_names == ["C"]
    parts = [select_top_labels(d, 1, counted=[first, second]) for d in (first, second)]
    assert [p.label_names for p in parts] == [["A"], ["A"]]  # A 4, C 3, B 2 over both
    assert [s.path.stem for s in parts[1].samples] == ["j1"]


def _main_set(sizes: dict[str, int]) -> LabelledSet:
    rows = [(f"{m}{k}", m, f"{m}|Z") for m, n in sizes.items() for k in range(n)]
    return _set(rows)


def test_split_fractions_disjoint_complete_stratified() -> None:
    ds = _main_set({"A": 500, "B": 200, "C": 100, "D": 30})
    splits = split_dataset(ds, (0.7, 0.1, 0.2), seed=3)
    paths = {k: [s.path for s in v.samples] for k, v in splits.items()}
    everything = paths["train"] + paths["val"] + paths["test"]
    assert len(everything) == len(set(everything)) == len(ds)  # disjoint and complete
    assert set(everything) == {s.path for s in ds.samples}
    for name, frac in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        per_main = Counter(s.main for s in splits[name].samples)
        for main, total in (("A", 500), ("B", 200), ("C", 100), ("D", 30)):
            assert abs(per_main[main] - frac * total) <= 1, (name, main)
        assert splits[name].label_names == ds.label_names


def test_split_deterministic_and_seeded() -> None:
    ds = _main_set({"A": 40, "B": 25, "C": 7})
    first = split_dataset(ds, seed=1)
    again = split_dataset(ds, seed=1)
    other = split_dataset(ds, seed=2)
    assert all(first[k].samples == again[k].samples for k in first)
    assert any(first[k].samples != other[k].samples for k in first)


def test_split_without_main_uses_rarest_label() -> None:
    # "R" is rare (20 images) among images that all also carry the common "C".
    rows = [(f"r{k}", None, "C|R") for k in range(20)] + [(f"c{k}", None, "C") for k in range(80)]
    splits = split_dataset(_set(rows), (0.5, 0.25, 0.25), seed=0)
    for name, frac in (("train", 0.5), ("val", 0.25), ("test", 0.25)):
        assert sum("R" in s.labels for s in splits[name].samples) == 20 * frac
    with pytest.raises(ValueError, match="fractions"):
        split_dataset(_set(rows), (0.5, 0.5, 0.5))


def test_stats_hand_made() -> None:
    d = multilabel_stats(_set([("i0", "A", "A|B"), ("i1", "A", "A|B|C"), ("i2", "B", "B")]))
    assert d["num_images"] == 3 and d["num_labels"] == 3
    assert d["labels_per_image"] == {"mean": 2.0, "min": 1, "max": 3}
    assert d["label_counts"] == [("B", 3), ("A", 2), ("C", 1)]
    assert d["main_counts"] == [("A", 2), ("B", 1)]
    top = d["top_pairs"][0]
    assert (top["a"], top["b"], top["count"], top["p_b_given_a"]) == ("A", "B", 2, 1.0)
    assert top["p_a_given_b"] == pytest.approx(2 / 3)
    assert d["num_rare_labels"] == 3
    text = format_stats(d)
    assert "P(b|a)" in text and "A + B" in text


def test_image_folder_tmp(tmp_path: Path) -> None:
    _touch_images(tmp_path / "train", ["cat/1.jpg", "cat/2.PNG", "dog/x.jpg", "dog/sub/y.jpg"])
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    ds = read_image_folder(tmp_path)
    assert ds.class_names == ["cat", "dog"]
    # by path: sub/ < x
    assert [(p.name, k) for p, k in ds.samples] == [("1.jpg", 0), ("2.PNG", 0), ("y.jpg", 1), ("x.jpg", 1)]
    direct = read_image_folder(tmp_path / "train")  # root may be the split folder itself
    assert direct.samples == ds.samples
    assert multilabel_stats(ds)["class_counts"] == [("cat", 2), ("dog", 2)]
    assert isinstance(ds.subset([3]), ClassificationSet)
    with pytest.raises(DataFormatError, match="split folder 'validation' not found"):
        read_image_folder(tmp_path, split="validation")
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="no images"):
        read_image_folder(tmp_path / "empty")
    (tmp_path / "none" / "train").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="no class folders"):
        read_image_folder(tmp_path / "none")


@pytest.mark.skipif(not CLOTHING_SMALL.is_dir(), reason=f"real data not present at {CLOTHING_SMALL}")
def test_image_folder_clothing_small() -> None:
    train = read_image_folder(CLOTHING_SMALL, "train")
    assert len(train.class_names) == 10 and len(train) == 3068
    val = read_image_folder(CLOTHING_SMALL, "validation", class_names=train.class_names)
    assert val.class_names == train.class_names and len(val) > 0


@pytest.mark.skipif(not CCP.is_dir(), reason=f"real data not present at {CCP}")
def test_ccp_real() -> None:
    parts = read_ccp_parts(CCP)
    assert {k: len(v) for k, v in parts.items()} == {"image-level": 821, "pixel-level": 753}
    ds = read_ccp(CCP)
    assert len(ds) == 1574 and len(ds.label_names) == 56
    assert not {"null", "skin", "hair"} & set(ds.label_names)
    assert not {"null", "skin", "hair"} & {x for s in ds.samples for x in s.labels}
    assert all(s.main is None and s.path.is_file() for s in ds.samples)
    image_level = multilabel_stats(parts["image-level"])["labels_per_image"]["mean"]
    pixel_level = multilabel_stats(parts["pixel-level"])["labels_per_image"]["mean"]
    assert 5.3 < image_level < 6.1, image_level
    assert 5.1 < pixel_level < 5.5, pixel_level  # ../shared/docs/formats.md: about 5.3 tags per masked photo
    # blouse, shoes, skirt, stockings, sunglasses, vest
    first = next(s for s in ds.samples if s.path.stem == "0001")
    assert first.labels == ("blouse", "shoes", "skirt", "stockings", "sunglasses", "vest")
    splits = split_dataset(ds, seed=0)
    assert sum(len(v) for v in splits.values()) == 1574


def test_ccp_annotation_without_photo(tmp_path: Path) -> None:
    import scipy.io as scipy_io
    names = np.empty((1, 4), dtype=object)
    names[0, :] = ["null", "bag", "hair", "hat"]
    scipy_io.savemat(tmp_path / "label_list.mat", {"label_list": names})
    (tmp_path / "annotations" / "image-level").mkdir(parents=True)
    (tmp_path / "photos").mkdir()
    for stem, tags in (("0001", [0, 1, 2, 1]), ("0002", [3])):
        scipy_io.savemat(tmp_path / "annotations" / "image-level" / f"{stem}.mat",
                         {"tags": np.array([tags], np.uint8)})
    _touch_images(tmp_path / "photos", ["0001.jpg", "0003.jpg"])  # 0003 has no annotation: skipped
    with pytest.raises(DataFormatError, match="0002.mat: annotation without a photo"):
        read_ccp(tmp_path)
    _touch_images(tmp_path / "photos", ["0002.jpg"])
    ds = read_ccp(tmp_path)
    assert ds.label_names == ["bag", "hat"]
    assert [(s.path.name, s.labels) for s in ds.samples] == [("0001.jpg", ("bag",)), ("0002.jpg", ("hat",))]
