"""The ``fashionlens`` command line: train, evaluate, compare, predict, serve, export, label, data tools.

Every command is registered on a :class:`~fashionlens.cli_common.FashionlensTyper`, which turns a
:class:`~fashionlens.errors.FashionlensError` (bad input, a bad file or setting) into one ``error:``
line; the commands themselves only check their own options (:func:`~fashionlens.cli_common.fail`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fashionlens.cli_common import FashionlensTyper, show_info_lines
from fashionlens.cli_common import fail as _fail
from fashionlens.data.formats import detect_format, format_names, get_format
from fashionlens.labelling import cli as _label_cli

app = FashionlensTyper(
    help="fashionlens: fashion image recognition (landmark-aware recognition, ML-GCN multi-label).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = FashionlensTyper(help="Inspect, check and generate data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.command("label")(_label_cli.label_command)
data_app.command("import-labelstudio")(_label_cli.import_labelstudio_command)

# --data-format choices, from the registry (data/formats.py)
_FORMAT_LIST = " | ".join(format_names())
_CHECK_FORMATS = ("auto", *format_names(detection_order=True))
_STATS_FORMATS = ("auto", *format_names(detection_order=True, stats=True))


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML experiment config (see configs/)")],
    data: Annotated[str | None, typer.Option("--data", help="data path (overrides data.path)")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (default runs/<experiment>)")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides, e.g. optim.lr=3e-4")
    ] = None,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="start over even if OUT has a last checkpoint")
    ] = False,
) -> None:
    """Train a model; writes model.safetensors, metrics.json and logs to OUT."""
    from fashionlens.train.config import load_config
    from fashionlens.train.fit import train as run_train

    cfg = load_config(config, list(overrides or []) + ([f"data.path={data}"] if data else []))
    out_dir = out or Path("runs") / cfg["experiment"]
    report = run_train(cfg, out_dir, resume=not no_resume)
    typer.echo(f"model: {out_dir / 'model.safetensors'}")
    _print_headline(report)


@app.command()
def evaluate(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="model file(s) (model.safetensors); one table row each")
    ],
    data: Annotated[str, typer.Option("--data", help="data path (format detected, see --data-format)")],
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("eval"),
    split: Annotated[str, typer.Option("--split", help="val | test | train")] = "val",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    data_format: Annotated[
        str | None,
        typer.Option(
            "--data-format",
            help=f"data format ({_FORMAT_LIST}); "
            "default: detected from the path, the model's own format where the path has its layout",
        ),
    ] = None,
    devices: Annotated[str, typer.Option("--devices", help="devices per node (e.g. 2 under torchrun)")] = "1",
    strategy: Annotated[
        str, typer.Option("--strategy", help="auto | ddp (multi-process, e.g. launched by torchrun)")
    ] = "auto",
    accelerator: Annotated[str, typer.Option("--accelerator", help="auto | cpu | gpu")] = "auto",
) -> None:
    """Evaluate model(s): writes metrics.json, report.md, predictions.csv and plots to OUT.

    Under DDP (e.g. ``torchrun --nproc_per_node 2 -m fashionlens.cli evaluate ... --devices 2
    --strategy ddp``) each rank evaluates a shard, the outputs are gathered before any metric is
    computed, and only rank 0 writes files.
    """
    from fashionlens.evaluate.evaluate import evaluate as run_evaluate

    trainer_kwargs = {
        "devices": int(devices) if devices.isdigit() else devices,
        "strategy": strategy,
        "accelerator": accelerator,
    }
    reports = run_evaluate(
        checkpoints, data, out, split, batch_size, data_format=data_format, trainer_kwargs=trainer_kwargs
    )
    if reports:  # empty on ranks other than 0
        typer.echo((out / "report.md").read_text())
        typer.echo(f"written: {out}/metrics.json, report.md, predictions.csv, plots")


@app.command()
def compare(
    models: Annotated[
        list[Path],
        typer.Argument(help="two or more model files (model.safetensors); the first is the reference"),
    ],
    data: Annotated[str, typer.Option("--data", help="data path the models are scored on")],
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("compare"),
    split: Annotated[str, typer.Option("--split", help="val | test | train")] = "val",
    data_format: Annotated[
        str | None,
        typer.Option(
            "--data-format",
            help=f"data format ({_FORMAT_LIST}); "
            "default: detected from the path, the models' own format where the path has its layout",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    resamples: Annotated[
        int, typer.Option("--resamples", help="paired bootstrap rounds over the photos")
    ] = 1000,
    cases: Annotated[
        int, typer.Option("--cases", help="photos in the case grid (where the models disagree most)")
    ] = 12,
) -> None:
    """Compare models on the same photos: metrics with bootstrap intervals, per-label AP deltas, a case
    grid."""
    from fashionlens.evaluate.compare import compare as run_compare

    if len(models) < 2:
        _fail("compare needs at least two model files")
    if resamples < 10 or cases < 1:
        _fail(f"--resamples must be >= 10 and --cases >= 1, got {resamples} and {cases}")
    run_compare(models, data, out, split, batch_size, data_format, resamples, cases)
    typer.echo((out / "report.md").read_text())
    typer.echo(f"written: {out}/report.md, compare.json, per-label AP CSV and PNGs")


def _print_headline(report: dict) -> None:
    from fashionlens.train.task import flatten_headline

    for key, value in flatten_headline(report).items():
        typer.echo(f"  val/{key:12s} {value:.4f}")


@data_app.command("stats")
def data_stats(
    path: Annotated[
        Path,
        typer.Argument(help="CCP folder, clothing-dataset folder, multi-label CSV/JSONL, or image folder"),
    ],
    data_format: Annotated[str, typer.Option("--data-format", help=" | ".join(_STATS_FORMATS))] = "auto",
    label_list: Annotated[
        Path | None,
        typer.Option(
            "--label-list",
            help="multilabel: the vocabulary (one name a line): "
            "its order, unused labels counted as 0, unknown labels an error",
        ),
    ] = None,
) -> None:
    """Label counts (main and sub labels apart, when the data has main labels) and a co-occurrence summary."""
    from fashionlens.data.stats import format_stats, multilabel_stats

    dataset, notes = _read_any(path, data_format, label_list)
    typer.echo(format_stats(multilabel_stats(dataset)))
    for note in notes:
        typer.echo(note)


@data_app.command("check")
def data_check(
    path: Annotated[
        Path, typer.Argument(help="DeepFashion root, multi-label CSV/JSONL, CCP folder or image folder")
    ],
    data_format: Annotated[
        str,
        typer.Option("--data-format", help=" | ".join(_CHECK_FORMATS)),
    ] = "auto",
    images: Annotated[
        bool, typer.Option("--images/--no-images", help="also check the image files (headers)")
    ] = True,
    label_list: Annotated[
        Path | None, typer.Option("--label-list", help="multilabel: report labels not in this file")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="threads reading image headers")] = 4,
) -> None:
    """List every problem of a data set (file:line, what was expected); exit code 1 if any error."""
    from fashionlens.data.check import run_check

    if data_format not in _CHECK_FORMATS:
        _fail(f"--data-format must be one of {', '.join(_CHECK_FORMATS)}, got {data_format!r}")
    if not path.exists():
        _fail(f"path does not exist: {path}")
    result = run_check(path, data_format, check_images=images, label_list=label_list, workers=workers)
    for problem in result.problems:
        typer.secho(str(problem), fg=typer.colors.RED if problem.severity == "error" else typer.colors.YELLOW)
    typer.echo(f"{result.summary()} (format: {result.fmt})")
    if result.errors:
        raise typer.Exit(1)


def _read_any(path: Path, fmt: str, label_list: Path | None = None):
    """The data set at ``path`` and notes on what its reader did (annotation kinds, skipped rows): the
    format's ``read`` (data/formats.py)."""
    if not path.exists():
        _fail(f"path does not exist: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in _STATS_FORMATS[1:]:
        _fail(f"--data-format must be {', '.join(_STATS_FORMATS)}, got {fmt!r}")
    data_format = get_format(fmt)
    if label_list is not None and not data_format.label_list:
        _fail(f"--label-list is for multilabel data, not {fmt}")
    return data_format.read(path, label_list)


@data_app.command("synth-deepfashion")
def synth_deepfashion(
    out: Annotated[Path, typer.Argument(help="output folder (DeepFashion layout: img/, Anno/, Eval/)")],
    n: Annotated[int, typer.Option("--n", help="number of images")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    size: Annotated[int, typer.Option("--size", help="image side in pixels")] = 128,
) -> None:
    """Write a synthetic data set in the exact DeepFashion layout (drawn garments, known landmarks)."""
    from fashionlens.data.synth import synth_deepfashion as run

    summary = run(out, n=n, seed=seed, image_size=(size, size))
    typer.echo(f"wrote {out}: {summary}")


@data_app.command("derive-landmarks")
def derive_landmarks(
    ccp_root: Annotated[
        Path,
        typer.Argument(help="Clothing Co-Parsing folder (photos/, annotations/pixel-level/, label_list.mat)"),
    ],
    out: Annotated[
        Path,
        typer.Argument(help="output folder: a DeepFashion Category and Attribute tree (img/, Anno/, Eval/)"),
    ],
    pose: Annotated[
        bool,
        typer.Option(
            "--pose",
            help="refine the points with a human-pose model (not available: see docs/real-photos.md)",
        ),
    ] = False,
    margin: Annotated[
        float,
        typer.Option(
            "--margin", help="crop margin on every side, a fraction of the garment box's longer side"
        ),
    ] = 0.1,
    min_area: Annotated[
        float,
        typer.Option("--min-area", help="leave out garments covering less of the photo than this fraction"),
    ] = 0.01,
    split_seed: Annotated[
        int, typer.Option("--split-seed", help="seed of the CCP reader's split (data.split_seed)")
    ] = 0,
    bad: Annotated[str, typer.Option("--bad", help="skip | fail: what a bad mask or photo does")] = "skip",
    workers: Annotated[int, typer.Option("--workers", help="processes")] = 2,
    attributes: Annotated[
        Path | None,
        typer.Option(
            "--attributes",
            help="garment attribute CSV (photo,garment,attributes; "
            "default: CCP_ROOT/garment_attributes.csv when present)",
        ),
    ] = None,
) -> None:
    """Write garment crops with landmarks, boxes, attributes and colours derived from CCP's masks, in
    DeepFashion's layout."""
    from fashionlens.data.derive_tree import derive_landmark_tree

    if bad not in ("skip", "fail"):
        _fail(f"--bad must be skip or fail, got {bad!r}")
    if not ccp_root.is_dir():
        _fail(f"CCP folder not found: {ccp_root}")
    summary = derive_landmark_tree(
        ccp_root,
        out,
        margin=margin,
        min_area=min_area,
        pose=pose,
        split_seed=split_seed,
        bad_masks=bad,
        workers=workers,
        attributes=attributes,
    )
    typer.echo(f"wrote {out}:")
    for line in summary.lines():
        typer.echo(f"  {line}")


def _photos_or_fail(inputs: list[str], none_found: str) -> list:
    """The photos named by files, folders, globs or listings, each once; one error line if none or a bad
    listing."""
    from fashionlens.inference.inputs import expand_inputs, unique_photos

    found = expand_inputs(inputs)  # a bad listing: a ListingError, one line
    if not found:
        _fail(none_found + " ".join(inputs))
    unique = unique_photos(found)
    if len(unique) < len(found):
        typer.echo(
            f"{len(found) - len(unique)} repeated photo(s) named more than once: each is tagged once",
            err=True,
        )
    return unique


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="image files, folders or globs")],
    model: Annotated[
        str, typer.Option("--model", help="shipped model name or model file")
    ] = "fashionlens-lite",
    top_k: Annotated[int, typer.Option("--top-k", help="categories/tags/attributes per image")] = 5,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="tag threshold (default: the model's)")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="table | json | csv | parquet (parquet: needs --out FILE)")
    ] = "table",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="local engine: write to this file instead of stdout; ray: the folder of its Parquet shards",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    backend: Annotated[
        str,
        typer.Option(
            "--backend", help="auto | torch | onnx (auto: ONNX Runtime on the CPU when measured faster)"
        ),
    ] = "auto",
    no_garments: Annotated[
        bool,
        typer.Option(
            "--no-garments",
            help="models with a parsing head: do not find each photo's garments "
            "(box, mask, category, colours, landmarks; faster)",
        ),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine", help="local (this process) | ray (Ray Data: Parquet shards in --out, resumable)"
        ),
    ] = "local",
    num_actors: Annotated[int, typer.Option("--num-actors", help="ray: model replicas (actors)")] = 1,
    num_gpus_per_actor: Annotated[
        float,
        typer.Option("--num-gpus-per-actor", help="ray: GPUs per actor (> 0 runs the PyTorch model on CUDA)"),
    ] = 0.0,
    cpus_per_actor: Annotated[
        float | None,
        typer.Option(
            "--cpus-per-actor",
            help="ray: CPUs reserved per actor (default: at most 1, leaving one for decoding)",
        ),
    ] = None,
    shard_rows: Annotated[
        int,
        typer.Option(
            "--shard-rows",
            help="ray: rows per Parquet shard, at most (fewer "
            "when 30 s passed; a kill loses at most one unwritten shard)",
        ),
    ] = 10_000,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            envvar="RAY_ADDRESS",
            help="ray: cluster to join (default: start Ray on this machine)",
        ),
    ] = None,
) -> None:
    """Tag photos (files, folders, globs, CSV/Parquet listings with a path column) with a trained model.

    Unreadable images are reported and skipped. ``--engine ray --out OUT_DIR`` runs on Ray Data and
    writes Parquet shards; rerunning it skips the photos OUT_DIR already has. A model with a parsing
    head also lists every garment of each photo (JSON and Parquet with its mask as COCO RLE);
    ``--no-garments`` skips that.
    """
    from fashionlens.fileio import check_output_file
    from fashionlens.inference.inputs import check_prediction_options
    from fashionlens.inference.output import format_predictions, parquet_bytes, predictions_table
    from fashionlens.inference.predictor import load_model

    if engine not in ("local", "ray"):
        _fail(f"--engine must be local or ray, got {engine!r}")
    if fmt not in ("table", "json", "csv", "parquet") or (engine == "ray" and fmt != "table"):
        _fail(
            f"--format must be table, json, csv or parquet, got {fmt!r}"
            if engine == "local"
            else "--engine ray writes Parquet shards to --out; --format does not apply"
        )
    if fmt == "parquet" and not out:
        _fail("--format parquet writes a file: give --out FILE.parquet")
    check_prediction_options(top_k, threshold)  # the API's rule (PredictArgumentError: one error line)
    if out and engine == "local":
        check_output_file(out, "--out")  # before the work, not after it (the Ray engine checks its folder)
    files = _photos_or_fail(paths, "no images found in ")
    if engine == "ray":
        from fashionlens.inference.ray_engine import RayOptions

        _predict_ray(
            files,
            RayOptions(
                model=model,
                out_dir=out or Path(),
                batch_size=batch_size,
                num_actors=num_actors,
                num_gpus_per_actor=num_gpus_per_actor,
                cpus_per_actor=cpus_per_actor,
                backend=backend,
                top_k=top_k,
                threshold=threshold,
                shard_rows=shard_rows,
                address=address,
                garments=not no_garments,
            ),
        )
        return
    show_info_lines()  # the "auto" backend's first-load export and timing, said on stderr
    predictor = load_model(model, batch_size=batch_size, backend=backend)
    results = []
    from tqdm import tqdm

    with tqdm(total=len(files), unit="img", disable=len(files) < 2 * batch_size, file=sys.stderr) as bar:
        for pred in predictor.iter_predict(files, top_k=top_k, threshold=threshold, garments=not no_garments):
            if pred.error:
                typer.secho(f"skipped {pred.source}: {pred.error}", fg=typer.colors.YELLOW, err=True)
            else:
                results.append(pred)
            bar.update(1)
    # parquet: one file in the Ray engine's shard schema (output.arrow_schema)
    if fmt == "parquet":
        data = parquet_bytes(predictions_table(results))
    else:
        data = format_predictions(results, fmt).encode()
    if out:
        from fashionlens.fileio import atomic_write_bytes

        try:
            atomic_write_bytes(out, data)
        except OSError as e:  # checked before the work; the disk may still fill up meanwhile
            _fail(f"--out {out} could not be written: {e.strerror or e}")
        typer.echo(f"wrote {len(results)} predictions to {out}", err=True)
    else:
        typer.echo(data.decode())
    if len(results) < len(files):
        typer.echo(f"{len(files) - len(results)} of {len(files)} images could not be read", err=True)


def _predict_ray(files: list[str], opts) -> None:
    """``predict --engine ray``: run the Ray engine, print its summary; one-line errors."""
    if opts.out_dir == Path():
        _fail("--engine ray needs --out OUT_DIR (a folder for the Parquet shards)")
    for name in ("num_actors", "batch_size", "shard_rows"):
        if getattr(opts, name) < 1:
            _fail(f"--{name.replace('_', '-')} must be at least 1, got {getattr(opts, name)}")
    try:
        import ray.data  # noqa: F401 - the engine imports it lazily; say here that it is missing

        from fashionlens.inference.ray_engine import run
    except ImportError as e:
        _fail(f"--engine ray needs Ray Data: pip install 'fashionlens[ray]' ({e})")
    summary = run(files, opts)  # RayEngineError (Ray itself failed): one line, exit code 1
    typer.echo(summary.line(), err=True)
    if summary.errors:
        typer.echo(f"{summary.errors} unreadable photo(s): rows with 'error' set in {opts.out_dir}", err=True)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="interface to bind (127.0.0.1 keeps it on this machine)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    model: Annotated[
        str, typer.Option("--model", help="shipped model name or model file")
    ] = "fashionlens-lite",
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="FASHIONLENS_API_KEY", help="require this X-API-Key on /v1/predict"),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="largest accepted photo, MiB")
    ] = 10.0,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", help="inference calls at once")] = 2,
) -> None:
    """Serve a model over HTTP: POST /v1/predict, GET /healthz, and an upload page at /."""
    from fashionlens.serve.app import serve_command

    show_info_lines()
    serve_command(host, port, model, api_key, max_upload_mb, max_concurrency)


@app.command("export")
def export(
    checkpoint: Annotated[Path, typer.Argument(help="model file (model.safetensors)")],
    fmt: Annotated[str, typer.Option("--format", help="export format (onnx)")] = "onnx",
    out: Annotated[
        Path | None, typer.Option("--out", help="output file (default: CHECKPOINT with .onnx)")
    ] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (>= 18)")] = 18,
    static_batch: Annotated[
        bool, typer.Option("--static-batch", help="fixed batch size 2 instead of dynamic")
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="statically quantised int8 model (QDQ, per-channel weights) "
            "for the CPU; needs --calibration",
        ),
    ] = False,
    calibration: Annotated[
        list[str] | None,
        typer.Option(
            "--calibration",
            help="int8: photos to measure activation ranges on (folder, glob or listing; repeatable)",
        ),
    ] = None,
) -> None:
    """Export a model to ONNX (header included), checked against PyTorch with ONNX Runtime.

    ``--int8 --calibration PHOTOS`` writes an int8 model instead (default CHECKPOINT.int8.onnx), checked
    against the fp32 model on the calibration photos.
    """
    if fmt != "onnx":
        _fail(f"--format must be onnx, got {fmt!r}")
    try:
        from fashionlens.inference.export import export_onnx
    except ImportError as e:
        _fail(f"ONNX export needs the onnx, onnxscript and onnxruntime packages ({e})")
    if int8 or calibration:
        _export_int8(checkpoint, out or checkpoint.with_suffix(".int8.onnx"), int8, calibration or [])
        return
    target = out or checkpoint.with_suffix(".onnx")
    export_onnx(checkpoint, target, opset=opset, dynamic_batch=not static_batch)
    typer.echo(f"wrote {target} (outputs checked against PyTorch with ONNX Runtime)")


def _export_int8(checkpoint: Path, target: Path, int8: bool, calibration: list[str]) -> None:
    """``export --int8``: quantise with ONNX Runtime, report the agreement with fp32."""
    from fashionlens.inference.quantize import quantize_int8

    if not int8:
        _fail("--calibration is for --int8 export")
    if not calibration:
        _fail(
            "--int8 needs --calibration PHOTOS: a few hundred photos like those the model will tag "
            "(a folder, glob or listing); the int8 activation ranges are measured on them"
        )
    photos = _photos_or_fail(calibration, "no calibration photos found in ")
    report = quantize_int8(checkpoint, target, photos)
    cal, agree = report["calibration"], report["fp32_agreement_on_calibration"]
    typer.echo(
        f"wrote {target} (int8, calibrated on {cal['images']} photos; agreement with fp32 on them: "
        + ", ".join(f"{k} {v}" for k, v in agree.items())
        + ")"
    )


@app.command(
    "bench",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Run the benchmark suite (bench/run.py of a source checkout, in a subprocess); arguments are passed
    on."""
    import subprocess

    script = Path(__file__).resolve().parents[2] / "bench" / "run.py"
    if not script.is_file():
        _fail(f"bench/run.py not found at {script}: the benchmarks live in the source checkout")
    code = subprocess.run([sys.executable, str(script), *ctx.args], check=False).returncode
    if code:
        raise typer.Exit(code)


@app.command("models")
def list_models() -> None:
    """List the registered backbones."""
    from fashionlens.models import list_backbones

    for name in list_backbones():
        typer.echo(name)


def main(argv: list[str] | None = None) -> None:
    """Entry point usable from Python: ``main(["train", "configs/x.yaml"])``."""
    app(args=argv if argv is not None else sys.argv[1:], standalone_mode=True)


if __name__ == "__main__":
    main()
