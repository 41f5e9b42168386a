"""The ``fashionlens`` command line: train, evaluate, data tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="fashionlens: fashion image recognition (landmark-aware recognition, ML-GCN multi-label).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Inspect, check and generate data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML experiment config (see configs/)")],
    data: Annotated[str | None, typer.Option("--data", help="data path (overrides data.path)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output folder (default runs/<experiment>)")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. optim.lr=3e-4")] = None,
    no_resume: Annotated[bool, typer.Option("--no-resume", help="start over even if OUT has a last checkpoint")] = False,
) -> None:
    """Train a model; writes model.safetensors, metrics.json and logs to OUT."""
    from fashionlens.train.config import ConfigError, load_config
    from fashionlens.train.data import DataPathError
    from fashionlens.train.fit import OutputDirError
    from fashionlens.train.fit import train as run_train

    try:
        cfg = load_config(config, list(overrides or []) + ([f"data.path={data}"] if data else []))
        out_dir = out or Path("runs") / cfg["experiment"]
        report = run_train(cfg, out_dir, resume=not no_resume)
    except (ConfigError, DataPathError, OutputDirError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(f"model: {out_dir / 'model.safetensors'}")
    _print_headline(report)


@app.command()
def evaluate(
    checkpoints: Annotated[list[Path], typer.Argument(help="model file(s) (model.safetensors); one table row each")],
    data: Annotated[str, typer.Option("--data", help="data path, same format the model was trained on")],
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("eval"),
    split: Annotated[str, typer.Option("--split", help="val | test | train")] = "val",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
) -> None:
    """Evaluate model(s): writes metrics.json, report.md, predictions.csv and plots to OUT."""
    from fashionlens.checkpoint import CheckpointError
    from fashionlens.train.data import DataPathError
    from fashionlens.train.evaluate import evaluate as run_evaluate

    try:
        reports = run_evaluate(checkpoints, data, out, split, batch_size)
    except (CheckpointError, DataPathError, FileNotFoundError) as e:
        _fail(str(e))
    if reports:
        typer.echo((out / "report.md").read_text())
        typer.echo(f"written: {out}/metrics.json, report.md, predictions.csv, plots")


def _print_headline(report: dict) -> None:
    from fashionlens.train.task import flatten_headline

    for key, value in flatten_headline(report).items():
        typer.echo(f"  val/{key:12s} {value:.4f}")


@data_app.command("stats")
def data_stats(
    path: Annotated[Path, typer.Argument(help="CCP folder, multi-label CSV/JSONL, or image folder")],
    fmt: Annotated[str, typer.Option("--format", help="auto | ccp | multilabel | image_folder")] = "auto",
) -> None:
    """Label counts and a co-occurrence summary of a data set."""
    from fashionlens.data.stats import format_stats, multilabel_stats

    dataset = _read_any(path, fmt)
    typer.echo(format_stats(multilabel_stats(dataset)))


def _read_any(path: Path, fmt: str):
    from fashionlens.data.ccp import read_ccp
    from fashionlens.data.image_folder import read_image_folder
    from fashionlens.data.multilabel import read_multilabel

    if not path.exists():
        _fail(f"path does not exist: {path}")
    if fmt == "auto":
        if path.is_file():
            fmt = "multilabel"
        elif (path / "label_list.mat").is_file():
            fmt = "ccp"
        else:
            fmt = "image_folder"
    readers = {"ccp": read_ccp, "multilabel": read_multilabel, "image_folder": read_image_folder}
    if fmt not in readers:
        _fail(f"--format must be auto, ccp, multilabel or image_folder, got {fmt!r}")
    try:
        return readers[fmt](path)
    except ValueError as e:
        _fail(str(e))


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
