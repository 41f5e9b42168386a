"""``fashionlens predict --engine ray``: same predictions as the local engine, resumable, bad images as rows.

One local Ray (2 CPUs) is shared by the whole module (starting Ray takes seconds); command-line runs
join it with ``--address`` / ``RAY_ADDRESS``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq  # a required dependency: imported, never skipped
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

ray = pytest.importorskip(
    "ray", reason="Ray is an extra: pip install 'fashionlens[ray]' (make test installs it)"
)

import fashionlens  # noqa: E402
from fashionlens.checkpoint import ModelInfo, save_model  # noqa: E402
from fashionlens.cli import app  # noqa: E402
from fashionlens.data.config import DataConfig  # noqa: E402
from fashionlens.data.deepfashion import LANDMARK_NAMES  # noqa: E402
from fashionlens.garments.instances import box_iou  # noqa: E402
from fashionlens.inference.ray_engine import OutputDirError, RayOptions, finished_paths, pending_paths, run  # noqa: E402
from fashionlens.model_header import Calibration, Landmarks  # noqa: E402
from fashionlens.models import FashionNet  # noqa: E402

cli = CliRunner()
CATEGORIES = ["dress", "hat", "pants"]
TAGS = ["bag", "belt", "shoes", "skirt"]
COLUMNS = [
    "path",
    "category",
    "scores",
    "tags",
    "main_style",
    "styles",
    "attributes",
    "colours",
    "landmarks",
    "garments",
    "width",
    "height",
    "error",
]


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module: 2 CPUs, as on the development machines."""
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
            break
        except Exception as e:  # Ray raises a plain Exception when its processes do not start in time
            ray.shutdown()
            if attempt == 2:
                # Ray's raylet waits a fixed 15-30 s for its agents (ray-project/ray#65983); a machine
                # that other jobs saturate can exceed that. Nothing of fashionlens runs before this point.
                pytest.skip(
                    f"Ray did not start on this machine, 3 tries ({e}); the machine is probably overloaded"
                )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    net = FashionNet(
        "test_tiny",
        heads={"category": {"num_classes": 3}, "labels": {"num_classes": 4}},
        landmarks={"fuse": True},
    )
    info = ModelInfo(
        net.spec,
        {"category": CATEGORIES, "labels": TAGS},
        DataConfig(input_size=(32, 24)),
        calibration=Calibration(threshold=0.3),
        landmarks=Landmarks(LANDMARK_NAMES),
    )
    return save_model(net.eval(), info, tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _photos(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (30, 40)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"p{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """21 photos of several sizes (one landscape PNG), a corrupt JPEG and an empty file."""
    root = tmp_path_factory.mktemp("photos")
    paths = _photos(root, 19)
    Image.fromarray(np.full((20, 50, 3), 200, dtype=np.uint8)).save(root / "wide.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "empty.jpg").write_bytes(b"")
    return paths + [str(root / "wide.png"), str(root / "broken.jpg"), str(root / "empty.jpg")]


def _rows(out: Path) -> dict[str, dict]:
    table = pq.read_table(out)
    assert table.column_names == COLUMNS
    rows = table.to_pylist()
    assert len({r["path"] for r in rows}) == len(rows), "a photo appears twice in the output"
    return {r["path"]: r for r in rows}


def test_ray_engine_gives_the_local_engines_predictions(ray_address, tiny_model, photos, tmp_path):
    missing = str(tmp_path / "no-such-photo.jpg")
    summary = run(
        photos + [missing],
        RayOptions(
            model=str(tiny_model),
            out_dir=tmp_path / "out",
            batch_size=4,
            backend="onnx",
            top_k=3,
            progress=False,
        ),
    )
    local = {
        p.source: p
        for p in fashionlens.load_model(tiny_model, backend="onnx").predict(photos + [missing], top_k=3)
    }
    rows = _rows(tmp_path / "out")
    assert set(rows) == set(local)
    assert (summary.written, summary.errors, summary.already_done) == (len(local), 3, 0)
    for path, pred in local.items():
        row = rows[path]
        if pred.error:
            assert row["error"] == pred.error and row["category"] is None and row["scores"] is None
            continue
        assert row["error"] is None
        assert row["category"] == pred.category[0].label
        assert [s["label"] for s in row["scores"]] == [s.label for s in pred.category]
        np.testing.assert_allclose(
            [s["score"] for s in row["scores"]], [s.score for s in pred.category], atol=1e-5
        )
        assert [t["label"] for t in row["tags"]] == [t.label for t in pred.tags]
        assert (row["width"], row["height"]) == pred.image_size
        np.testing.assert_allclose(
            [[lm["x"], lm["y"]] for lm in row["landmarks"]],
            [[lm.x, lm.y] for lm in pred.landmarks],
            atol=1e-3,
        )
        assert row["attributes"] is None and row["colours"] is None  # heads this model does not have
        assert row["garments"] is None  # no parsing head
    assert rows[missing]["error"] == "file not found"
    assert rows[photos[-1]]["error"].startswith("empty file")
    assert rows[photos[-3]]["width"] == 50  # the landscape PNG: its own size, not the input's


def test_ray_engine_carries_the_garments_the_local_engine_finds(ray_address, tmp_path):
    """A model with a parsing head (red pixels are "upper"): the decoded photos travel to the actors, and
    each row's garments are the local engine's (box, mask, category, colours, landmarks)."""
    from fashionlens.inference.output import prediction_row
    from fashionlens.inference.ray_engine import PHOTO_MAX_SCALE
    from serve_fixtures import RED_BOX, make_parsing_model, red_garment_photo

    model = make_parsing_model(tmp_path / "parsing.safetensors")
    photos = []
    # within PHOTO_MAX_SCALE x the 32-pixel input (the photo as decoded locally), then a larger PNG
    for name, size in (("a.png", (64, 96)), ("b.jpg", (80, 120)), ("big.png", (200, 300))):
        Image.fromarray(red_garment_photo(size)).save(tmp_path / name, quality=95)
        photos.append(str(tmp_path / name))
    assert max(200, 300) > PHOTO_MAX_SCALE * 32 >= 120
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    opts = RayOptions(model=str(model), out_dir=tmp_path / "out", batch_size=2, backend="torch", top_k=3,
                      progress=False)  # fmt: skip
    summary = run(photos + [str(tmp_path / "broken.jpg")], opts)
    assert (summary.written, summary.errors) == (4, 1)
    rows = _rows(tmp_path / "out")
    local = {p.source: prediction_row(p) for p in fashionlens.load_model(model, backend="torch").predict(
        photos, top_k=3)}  # fmt: skip
    for path, (w, h) in zip(photos, ((64, 96), (80, 120), (200, 300)), strict=True):
        (got,), (want,) = rows[path]["garments"], local[path]["garments"]
        assert got["label"] == want["label"] == "upper"
        red = [round(v * w / 64) for v in RED_BOX]
        assert got["box"] == want["box"] and box_iou(tuple(got["box"]), tuple(red)) > 0.7
        assert (got["mask_size"], got["mask_counts"]) == ([h, w], want["mask_counts"])
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert [c["label"] for c in got["category"]] == ["t-shirt"] and got["colours"][0]["label"] == "red"
        assert len(got["landmarks"]) == 8
        if path.endswith("big.png"):
            continue  # reduced for the trip to the actors: its crop's answers may differ a little
        assert got["colours"] == want["colours"]
        np.testing.assert_allclose([[lm["x"], lm["y"]] for lm in got["landmarks"]],
                                   [[lm["x"], lm["y"]] for lm in want["landmarks"]], atol=1e-3)  # fmt: skip
    assert rows[str(tmp_path / "broken.jpg")]["garments"] is None

    off = run(photos[:1], RayOptions(**{**opts.__dict__, "out_dir": tmp_path / "off", "garments": False}))
    assert off.written == 1 and _rows(tmp_path / "off")[photos[0]]["garments"] is None


def test_rerun_skips_what_is_written_and_tags_only_new_photos(ray_address, tiny_model, photos, tmp_path):
    out = tmp_path / "out"
    opts = RayOptions(model=str(tiny_model), out_dir=out, batch_size=8, progress=False)
    first = run(photos[:10], opts)
    again = run(photos[:10], opts)
    assert (first.written, again.written, again.already_done) == (10, 0, 10)
    more = run(photos + photos[:3], opts)  # repeated inputs are tagged once
    assert (more.written, more.already_done, more.inputs) == (len(photos) - 10, 10, len(photos))
    assert set(_rows(out)) == set(photos)
    assert len(list(out.glob("part-*.parquet"))) == 2


def test_two_actors_with_half_a_cpu_each(ray_address, tiny_model, photos, tmp_path):
    summary = run(
        photos,
        RayOptions(
            model=str(tiny_model),
            out_dir=tmp_path / "out",
            batch_size=2,
            num_actors=2,
            cpus_per_actor=0.5,
            shard_rows=5,
            progress=False,
        ),
    )
    assert summary.written == len(photos) and summary.num_actors == 2
    assert set(_rows(tmp_path / "out")) == set(photos)
    assert summary.shards >= 2  # --shard-rows 5: several shards


def test_int8_model_runs_on_the_ray_engine(ray_address, tiny_model, photos, tmp_path):
    from fashionlens.inference.quantize import quantize_int8

    int8 = tmp_path / "tiny.int8.onnx"
    quantize_int8(tiny_model, int8, photos[:16])
    run(photos, RayOptions(model=str(int8), out_dir=tmp_path / "out", batch_size=4, progress=False))
    rows = _rows(tmp_path / "out")
    local = {p.source: p for p in fashionlens.load_model(int8).predict(photos)}
    assert {p: r["category"] for p, r in rows.items()} == {
        p: (x.category[0].label if x.category else None) for p, x in local.items()
    }


def test_a_failing_job_keeps_the_rows_received_and_says_how_to_resume(
    ray_address, tiny_model, photos, tmp_path, monkeypatch
):
    from fashionlens.inference import ray_engine
    from fashionlens.inference.output import predictions_table
    from fashionlens.inference.predictor import Prediction

    def failing_dataset(paths, *args, **kwargs):
        def tag_or_crash(batch):
            if any(str(p).endswith("p0005.jpg") for p in batch["path"]):
                raise RuntimeError("the actor crashed")
            return predictions_table(
                [Prediction(source=str(p), error="not tagged in this test") for p in batch["path"]]
            )

        ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths))
        return ds.map_batches(tag_or_crash, batch_size=None, batch_format="numpy")

    monkeypatch.setattr(ray_engine, "build_dataset", failing_dataset)
    out = tmp_path / "out"
    result = cli.invoke(
        app,
        [
            "predict",
            *photos,
            "--engine",
            "ray",
            "--out",
            str(out),
            "--model",
            str(tiny_model),
            "--shard-rows",
            "1000",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "the Ray job failed after" in result.output and "rerun the same command" in result.output
    # the cause, or Ray's wrapper
    assert "the actor crashed" in result.output or "UDF failed" in result.output
    written = int(result.output.split("failed after ")[1].split()[0])
    rows = _rows(out) if written else {}
    assert len(rows) == written and not any(p.endswith("p0005.jpg") for p in rows)


def test_a_uri_nobody_can_open_is_a_row_with_its_error(ray_address, tiny_model, photos, tmp_path):
    summary = run(
        [photos[0], "nosuchscheme://bucket/photo.jpg"],
        RayOptions(model=str(tiny_model), out_dir=tmp_path / "out", progress=False),
    )
    rows = _rows(tmp_path / "out")
    assert summary.errors == 1 and rows[photos[0]]["error"] is None
    assert rows["nosuchscheme://bucket/photo.jpg"]["error"].startswith(  # as the local engine says
        "unsupported URI scheme 'nosuchscheme://' (photos are local files or s3://"
    )


def test_leftovers_of_a_killed_write_are_removed_and_a_foreign_file_is_named(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".part-x-00000.parquet.abc123.tmp").write_bytes(b"half a shard")
    assert finished_paths(out) == set()
    assert not list(out.glob("*.tmp"))
    (out / "part-bad-00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(OutputDirError, match="part-bad-00000.parquet"):
        finished_paths(out)


def test_pending_paths_keeps_order_and_drops_repeats():
    assert pending_paths(["a", "b", "a", "c", "d", "b"], {"c"}) == ["a", "b", "d"]


def test_gpu_actors_without_a_gpu_are_refused(ray_address, tiny_model, photos, tmp_path):
    with pytest.raises(ValueError, match="0 GPU"):
        run(
            photos[:2],
            RayOptions(model=str(tiny_model), out_dir=tmp_path / "out", num_gpus_per_actor=1, progress=False),
        )


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fashionlens.cli", "predict", *args]


def test_kill_during_a_run_then_rerun_tags_every_photo_exactly_once(ray_address, tiny_model, tmp_path):
    """SIGKILL the command while it writes shards; the same command again finishes the rest."""
    paths = _photos(tmp_path / "photos", 240, size=(320, 240))
    out = tmp_path / "out"
    args = [
        str(tmp_path / "photos"),
        "--engine",
        "ray",
        "--out",
        str(out),
        "--model",
        str(tiny_model),
        "--batch-size",
        "4",
        "--shard-rows",
        "8",
    ]
    env = {**os.environ, "FASHIONLENS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        _cli(*args, "--address", ray_address), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 600  # seconds on a quiet machine; minutes when others load it
    while not list(out.glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    log = proc.communicate()[0].decode(errors="replace")
    before = len(finished_paths(out)) if out.is_dir() else 0
    assert 0 < before < len(paths), f"the kill should land mid-run (rows before the kill: {before})\n{log}"
    rerun = subprocess.run(
        _cli(*args), env={**env, "RAY_ADDRESS": ray_address}, capture_output=True, text=True, timeout=900
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{before} of {len(paths)} were already in" in rerun.stderr
    rows = _rows(out)  # asserts no photo twice
    assert set(rows) == set(paths)
    assert all(r["error"] is None for r in rows.values())
    print(f"killed after {before} of {len(paths)} photos; the rerun wrote the other {len(paths) - before}")


def test_cli_listing_files_and_errors(ray_address, tiny_model, photos, tmp_path):
    import pyarrow as pa

    good = photos[:5]
    (tmp_path / "list.csv").write_text("path,shop\n" + "".join(f"{Path(p).name},x\n" for p in good))
    for p in good:  # relative paths in a listing are relative to the listing's folder
        (tmp_path / Path(p).name).write_bytes(Path(p).read_bytes())
    pq.write_table(pa.table({"path": photos[5:8]}), tmp_path / "list.parquet")
    result = cli.invoke(
        app,
        [
            "predict",
            str(tmp_path / "list.csv"),
            str(tmp_path / "list.parquet"),
            "--engine",
            "ray",
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(tiny_model),
            "--address",
            ray_address,
            "--num-actors",
            "1",
            "--cpus-per-actor",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert set(_rows(tmp_path / "out")) == {str(tmp_path / Path(p).name) for p in good} | set(photos[5:8])

    (tmp_path / "nopath.csv").write_text("file\na.jpg\n")
    (tmp_path / "hole.csv").write_text('path\na.jpg\n""\n')
    for listing, message in (
        ("nopath.csv", "no 'path' column (columns: file)"),
        ("hole.csv", "hole.csv:line 3: empty 'path'"),
    ):
        result = cli.invoke(
            app,
            [
                "predict",
                str(tmp_path / listing),
                "--engine",
                "ray",
                "--out",
                str(tmp_path / "o2"),
                "--model",
                str(tiny_model),
            ],
        )
        assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--engine", "spark"], "--engine must be local or ray"),
        (["--engine", "ray"], "--engine ray needs --out"),
        (["--engine", "ray", "--out", "OUT", "--format", "json"], "--format does not apply"),
        (["--engine", "ray", "--out", "OUT", "--num-actors", "0"], "--num-actors must be at least 1"),
        (
            ["--engine", "ray", "--out", "OUT", "--num-gpus-per-actor", "1", "--model", "MODEL_ONNX"],
            "GPU actors run the PyTorch model",
        ),
    ],
)
def test_cli_option_errors(tiny_model, photos, tmp_path, extra, message):
    onnx_model = tmp_path / "m.onnx"
    if "MODEL_ONNX" in extra:
        from fashionlens.inference.export import export_onnx

        export_onnx(tiny_model, onnx_model)
    extra = [
        str(onnx_model) if a == "MODEL_ONNX" else str(tmp_path / "out") if a == "OUT" else a for a in extra
    ]
    args = ["predict", photos[0]] + (["--model", str(tiny_model)] if "--model" not in extra else []) + extra
    result = cli.invoke(app, args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_second_run_on_the_same_folder_is_refused(tiny_model, photos, tmp_path):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        result = cli.invoke(
            app, ["predict", photos[0], "--engine", "ray", "--out", str(out), "--model", str(tiny_model)]
        )
    assert result.exit_code == 2 and "another fashionlens predict is writing" in result.output


def test_without_ray_installed_the_command_says_which_extra_to_install(
    tiny_model, photos, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "ray.data", None)  # what `import ray.data` meets without the extra
    result = cli.invoke(
        app,
        ["predict", photos[0], "--engine", "ray", "--out", str(tmp_path / "out"), "--model", str(tiny_model)],
    )
    assert result.exit_code == 2 and "pip install 'fashionlens[ray]'" in result.output
