"""Bad and unusual image files: load_image, scan_images, datasets' skip/fail policies, EXIF + landmarks.

Every file is generated here in tmp_path (nothing is copied from real data sets).
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from fashionlens.data.check import scan_images
from fashionlens.data.config import DataConfig
from fashionlens.data.datasets import DeepFashionDataset, MultiLabelDataset
from fashionlens.data.deepfashion import read_deepfashion
from fashionlens.data.images import (
    EXIF_ORIENTATION,
    BadImageError,
    load_image,
    load_image_and_orientation,
    orient_points,
    probe_image,
)
from fashionlens.data.landmark_transforms import FLIP_PAIRS, JointTransform
from fashionlens.data.multilabel import LabelledSet, Sample
from fashionlens.data.synth import synth_deepfashion

W, H = 48, 32  # stored size of the generated images
MARKER = (0, 255, 0)


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A ~60-byte PNG whose IHDR declares width x height RGB pixels (a decompression bomb header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + _png_chunk(b"IEND", b""))  # fmt: skip


def marked(size: tuple[int, int] = (W, H), at: tuple[int, int] = (4, 4), side: int = 8) -> Image.Image:
    """Grey image with a green square whose top-left corner is ``at`` (x, y) on the stored grid."""
    arr = np.full((size[1], size[0], 3), 128, np.uint8)
    arr[at[1] : at[1] + side, at[0] : at[0] + side] = MARKER
    return Image.fromarray(arr)


def with_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return _jpeg(img, exif=exif.tobytes())


def marker_centre(img: Image.Image) -> tuple[float, float]:
    """(x, y) continuous centre of the green pixels."""
    a = np.asarray(img).astype(int)
    ys, xs = np.nonzero((a[..., 1] > 200) & (a[..., 0] < 80) & (a[..., 2] < 80))
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_images")
    good = _jpeg(Image.new("RGB", (W, H), (200, 30, 40)))
    noise = _jpeg(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)))
    palette = Image.new("P", (W, H), 1)
    palette.putpalette([255, 255, 255, 10, 20, 200] + [0] * 762)
    palette.paste(0, (0, 0, W // 2, H))  # left half: index 0, made transparent
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[:, W // 2 :] = (10, 200, 20, 255)  # left half fully transparent
    gray16 = (np.arange(W)[None, :].repeat(H, 0) * 1000).astype(np.uint16)  # 0 .. 47000
    content = {
        "good.jpg": good,
        "empty.jpg": b"",
        "truncated.jpg": good[: len(good) // 2],
        "cut.jpg": noise[: len(noise) * 7 // 10],  # header intact, entropy-coded data cut short
        "text.jpg": b"image_name  category_label\nthis is not an image\n",
        "bomb.png": png_bomb(),
        "cmyk.jpg": _jpeg(Image.new("CMYK", (W, H), (0, 255, 255, 0))),  # pure red in CMYK
        "gray16.png": _png(Image.fromarray(gray16)),
        "palette.png": _png(palette, transparency=0),
        "rgba.png": _png(Image.fromarray(rgba, "RGBA")),
        "gray.jpg": _jpeg(Image.new("L", (W, H), 90)),
    }
    for orientation in (3, 6, 8, 2):
        content[f"exif{orientation}.jpg"] = with_orientation(marked(), orientation)
    for name, data in content.items():
        (d / name).write_bytes(data)
    return {name.split(".")[0]: d / name for name in content}


BAD = {
    "empty": "empty",
    "truncated": "cannot decode",
    "cut": "truncated",
    "text": "not an image",
    "bomb": "decompression bomb",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_raise_with_reason(files: dict[str, Path], name: str) -> None:
    with pytest.raises(BadImageError, match=BAD[name]) as info:
        load_image(files[name])
    assert info.value.source == str(files[name]) and BAD[name] in info.value.reason
    with pytest.raises(BadImageError, match=BAD[name]):  # the same from bytes (uploads)
        load_image(files[name].read_bytes())


def test_bomb_file_is_tiny_and_header_only() -> None:
    data = png_bomb()
    assert len(data) < 100
    assert struct.unpack(">II", data[16:24]) == (30000, 30000)  # IHDR width, height


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("cmyk", lambda a: a[..., 0].min() > 200 and a[..., 1:].max() < 60),
        (
            "gray",
            lambda a: (
                (a[..., 0] == a[..., 1]).all()
                and (a[..., 1] == a[..., 2]).all()
                and abs(int(a[0, 0, 0]) - 90) < 4
            ),
        ),
        (
            "gray16",
            lambda a: (
                a[0, 0, 0] == 0
                and abs(int(a[0, -1, 0]) - 47000 / 65535 * 255) <= 1
                and (np.diff(a[0, :, 0].astype(int)) >= 0).all()
            ),
        ),
        ("palette", lambda a: (a[:, : W // 2] == 255).all() and tuple(a[0, -1]) == (10, 20, 200)),
        ("rgba", lambda a: (a[:, : W // 2] == 255).all() and tuple(a[0, -1]) == (10, 200, 20)),
    ],
)
def test_unusual_modes_become_8bit_rgb(files: dict[str, Path], name: str, check) -> None:
    img = load_image(files[name])
    assert img.mode == "RGB" and img.size == (W, H)
    arr = np.asarray(img)
    assert arr.dtype == np.uint8 and check(arr), arr[0, :4]


@pytest.mark.parametrize(
    ("orientation", "size", "corner"),
    [
        (3, (W, H), "bottom-right"),
        (6, (H, W), "top-right"),
        (8, (H, W), "bottom-left"),
        (2, (W, H), "top-right"),
    ],
)
def test_exif_orientation_is_applied(files: dict[str, Path], orientation: int, size, corner: str) -> None:
    img, applied = load_image_and_orientation(files[f"exif{orientation}"])
    assert applied == orientation and img.size == size and img.mode == "RGB"
    x, y = marker_centre(img)
    expect_x = size[0] - 8 if "right" in corner else 8  # the marker (stored at the top-left) moved here
    expect_y = size[1] - 8 if "bottom" in corner else 8
    assert abs(x - expect_x) < 1.5 and abs(y - expect_y) < 1.5
    moved = orient_points(np.array([[8.0, 8.0]]), orientation, (W, H))[0]  # the stored marker centre
    assert abs(moved[0] - x) < 1.5 and abs(moved[1] - y) < 1.5


def test_orient_points_matches_pil_for_every_orientation() -> None:
    rng = np.random.default_rng(0)
    for orientation in range(1, 9):
        at = (int(rng.integers(0, W - 8)), int(rng.integers(0, H - 8)))
        stored = marked(at=at)
        exif = stored.getexif()
        exif[EXIF_ORIENTATION] = orientation
        stored.info["exif"] = exif.tobytes()
        img, applied = load_image_and_orientation(Image.open(io.BytesIO(_png(stored, exif=exif))))
        assert applied == orientation
        expected = orient_points(np.array([at]) + 4.0, orientation, (W, H))[0]
        np.testing.assert_allclose(marker_centre(img), expected, atol=1e-4)


def test_scan_images_is_header_only_and_finds_every_bad_file(files: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda *a, **k: pytest.fail("decoded pixels"))
    bad = scan_images(files.values())
    assert set(bad) == {str(files[n]) for n in BAD}
    assert "decompression bomb" in bad[str(files["bomb"])] and "end-of-image" in bad[str(files["cut"])]
    assert scan_images(files.values(), workers=2) == bad
    assert probe_image(files["exif6"], verify=True) == (W, H)  # the stored grid: what annotations refer to
    with pytest.raises(BadImageError, match="decompression bomb"):
        probe_image(files["bomb"], verify=True)
    with pytest.raises(BadImageError, match="file not found") as info:
        probe_image(Path("/nonexistent.jpg"))
    assert info.value.source == "/nonexistent.jpg"


def test_scan_images_agrees_with_load_image(files: dict[str, Path]) -> None:
    decoded_bad = set()
    for path in files.values():
        try:
            load_image(path)
        except BadImageError:
            decoded_bad.add(str(path))
    assert set(scan_images(files.values())) == decoded_bad


# ----------------------------------------------------------------------------- dataset policies


def _dataset(files: dict[str, Path], names: list[str], policy: str) -> MultiLabelDataset:
    samples = [Sample(files[n], ("a",), None) for n in names]
    return MultiLabelDataset(
        LabelledSet(samples, ["a"], files["good"].parent), None, DataConfig(input_size=(16, 16)), policy
    )


ORDER = ["good", "empty", "cmyk", "truncated", "text", "bomb", "cut", "palette", "exif6"]


def test_skip_policy_reports_each_bad_file_once_and_counts_it(
    files, caplog: pytest.LogCaptureFixture
) -> None:
    ds = _dataset(files, ORDER, "skip")
    with caplog.at_level(logging.WARNING, logger="fashionlens.data.datasets"):
        for _epoch in range(2):
            got = [ds[i]["index"] for i in range(len(ds))]
    assert got == [0, 2, 2, 7, 7, 7, 7, 7, 8]  # a bad sample is replaced by the next good one
    assert ds.bad_files == {files[n] for n in BAD}
    warned = [r.getMessage() for r in caplog.records if "skipping bad image" in r.getMessage()]
    assert len(warned) == len(BAD)  # once per file, not once per access
    assert all(any(str(files[n]) in m for m in warned) for n in BAD)


def test_fail_policy_stops_at_first_bad_file_naming_it(files: dict[str, Path]) -> None:
    ds = _dataset(files, ORDER, "fail")
    assert ds[0]["image"].shape == (3, 16, 16) and ds[2]["index"] == 2
    with pytest.raises(BadImageError, match="empty.jpg"):
        [ds[i] for i in range(len(ds))]


# ----------------------------------------------------------------------------- DeepFashion + EXIF


@pytest.fixture(scope="module")
def df_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("df_exif")
    synth_deepfashion(root, n=4, seed=3, image_size=(96, 80))
    return root


def _central_landmark(idx, j: int) -> int:
    """A visible landmark slot well inside the image, whose marker fits."""
    vis = np.flatnonzero(idx.landmark_visibility[j] == 0)
    d = np.abs(idx.landmarks[j, vis] - np.array([40.0, 48.0])).sum(axis=1)
    return int(vis[np.argmin(d)])


@pytest.mark.parametrize("orientation", [1, 3, 6, 8, 2, 5])
def test_deepfashion_landmarks_follow_exif_orientation(df_root: Path, orientation: int) -> None:
    idx = read_deepfashion(df_root)
    j = 0
    slot = _central_landmark(idx, j)
    x, y = idx.landmarks[j, slot].astype(int)  # pixel indices on the stored grid
    stored = np.asarray(load_image(df_root / idx.image_names[j])).copy()
    stored[y - 3 : y + 4, x - 3 : x + 4] = MARKER  # 7x7 marker centred on the landmark pixel
    path = df_root / "img" / f"exif{orientation}.jpg"
    path.write_bytes(with_orientation(Image.fromarray(stored), orientation))
    one = idx.subset([j])
    one.image_names = np.asarray([str(path.relative_to(df_root))], dtype=object)
    transform = JointTransform((64, 64), mean=(0, 0, 0), std=(1, 1, 1), margin=0.1)
    sample = DeepFashionDataset(one, df_root, transform, bad_images="fail")[0]
    image = (sample["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (64, 64, 3)
    out_slot = (
        dict(FLIP_PAIRS + tuple((b, a) for a, b in FLIP_PAIRS))[slot] if orientation in (2, 5) else slot
    )
    assert sample["landmark_visible"][out_slot] == 1
    lx, ly = (sample["landmarks"][out_slot] * torch.tensor([64.0, 64.0])).tolist()
    mx, my = marker_centre(Image.fromarray(image))
    assert abs(lx - mx) < 2.0 and abs(ly - my) < 2.0, (orientation, (lx, ly), (mx, my))


def test_deepfashion_skip_records_reason_and_fail_names_file(df_root: Path, files: dict[str, Path]) -> None:
    idx = read_deepfashion(df_root)
    one = idx.subset([0, 1, 2])
    names = [f"img/bad_{n}.jpg" for n in ("bomb", "text")] + [str(idx.image_names[2])]
    for name, src in zip(names[:2], ("bomb", "text"), strict=False):
        (df_root / name).write_bytes(files[src].read_bytes())
    one.image_names = np.asarray(names, dtype=object)
    cfg = DataConfig(input_size=(16, 16))
    ds = DeepFashionDataset(one, df_root, None, cfg, bad_images="skip")
    with pytest.warns(UserWarning) as record:
        assert ds[0]["index"] == 2  # skips bad_bomb, then bad_text
    assert sorted(Path(str(w.message).split(": ")[0].split()[-1]).name for w in record) == [
        "bad_bomb.jpg",
        "bad_text.jpg",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once per file only
        assert ds[1]["index"] == 2
    assert {Path(p).name: r.split(" ")[0] for p, r in ds.bad_files.items()} == {
        "bad_bomb.jpg": "decompression",
        "bad_text.jpg": "not",
    }
    with pytest.raises(BadImageError, match="bad_bomb.jpg"):
        DeepFashionDataset(one, df_root, None, cfg, bad_images="fail")[0]


def test_probe_image_reads_uploads_too_and_says_too_large_apart(files: dict[str, Path]) -> None:
    from fashionlens.data.images import ImageTooLargeError

    assert probe_image(files["exif6"].read_bytes()) == (W, H)
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        probe_image(files["bomb"].read_bytes(), name="bomb.png")
    with pytest.raises(BadImageError, match="upload.jpg: not an image file PIL can identify"):
        probe_image(b"plain text", name="upload.jpg")


def test_every_photo_finder_uses_the_one_list_of_image_extensions(tmp_path: Path) -> None:
    from fashionlens.data.images import IMAGE_EXTENSIONS
    from fashionlens.inference.inputs import expand_inputs
    from fashionlens.labelling.photos import find_photos

    folder = tmp_path / "photos"
    folder.mkdir()
    names = [f"p{i}{ext.upper() if i % 2 else ext}" for i, ext in enumerate(IMAGE_EXTENSIONS)]
    for name in [*names, "notes.txt", "labels.csv"]:
        (folder / name).write_bytes(b"x")
    assert sorted(Path(p).name for p in expand_inputs([str(folder)])) == sorted(names)
    assert sorted(p.rel for p in find_photos(folder).items) == sorted(names)
