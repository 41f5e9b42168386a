"""The ``fashionlens label`` command and ``fashionlens data import-labelstudio`` (registered in cli.py).

Both keep their heavy imports inside the function, so ``fashionlens --help`` stays fast. Registered
on cli.py's app, they report a :class:`~fashionlens.errors.FashionlensError` as one ``error:`` line
like every command (:mod:`fashionlens.cli_common`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fashionlens.cli_common import fail as _fail


def _export_config(labels: Path, target: Path) -> None:
    from fashionlens.fileio import atomic_write_bytes, check_output_file
    from fashionlens.labelling.labelstudio import labelstudio_config
    from fashionlens.labelling.store import read_vocabulary

    config = labelstudio_config(read_vocabulary(labels))
    # a folder or a read-only folder: an OutputDirError line
    check_output_file(target, "--export-labelstudio")
    atomic_write_bytes(target, config.encode("utf-8"))
    typer.echo(
        f"wrote {target}: Label Studio labelling config (photo in data.image, choices 'main' and 'labels'); "
        f"read its JSON export back with: fashionlens data import-labelstudio EXPORT.json --out LABELS.csv"
    )


def label_command(
    photos_dir: Annotated[
        Path | None, typer.Argument(help="folder of photos to label (searched recursively)")
    ] = None,
    labels: Annotated[Path, typer.Option("--labels", help="label vocabulary: one name per line")] = ...,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="multi-label CSV (image,main,labels) written after "
            "every save; read and extended when it exists",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="model file (or shipped name) whose scores pre-select likely labels"),
    ] = None,
    order: Annotated[
        str, typer.Option("--order", help="file | uncertain (most uncertain first; needs --model)")
    ] = "file",
    host: Annotated[
        str, typer.Option("--host", help="interface to bind (127.0.0.1 keeps it on this machine)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port)")] = 8001,
    export_labelstudio: Annotated[
        Path | None,
        typer.Option(
            "--export-labelstudio",
            help="write the matching Label Studio labelling config (XML) here and exit",
        ),
    ] = None,
) -> None:
    """Label photos in the browser (one main label, any sub labels), keyboard first; writes the multi-label
    CSV."""
    from fashionlens.labelling.app import open_session, run_label_server

    if export_labelstudio is not None:
        _export_config(labels, export_labelstudio)
        return
    if photos_dir is None or out is None:
        _fail("give PHOTOS_DIR and --out LABELS.csv (or --export-labelstudio CONFIG.xml)")
    session = open_session(photos_dir, labels, out, model=model, order=order)
    try:
        for note in session.notes:
            typer.echo(note)
        # a taken port: ListenError
        run_label_server(session, host, port, announce=lambda line: typer.echo(line))
    finally:
        session.close()
    counts = session.store.counts()
    typer.echo(
        f"stopped: {counts['labelled']} of {counts['total']} photos labelled, all saved in "
        f"{session.store.out}"
    )


def import_labelstudio_command(
    export: Annotated[
        Path, typer.Argument(help="Label Studio export in the 'JSON' format (a list of tasks)")
    ],
    out: Annotated[Path, typer.Option("--out", help="multi-label CSV (or .jsonl) to write")],
    photos: Annotated[
        Path | None,
        typer.Option(
            "--photos", help="folder where the photos are on this machine (default: the folder of --out)"
        ),
    ] = None,
    main_field: Annotated[
        str, typer.Option("--main-field", help="name of the single-choice control holding the main label")
    ] = "main",
    labels_field: Annotated[
        str, typer.Option("--labels-field", help="name of the multiple-choice control holding the sub labels")
    ] = "labels",
    image_field: Annotated[
        str, typer.Option("--image-field", help="key of the photo in each task's data")
    ] = "image",
    label_list: Annotated[
        Path | None, typer.Option("--labels", help="vocabulary file: refuse other names, keep this order")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out file")] = False,
) -> None:
    """Read a Label Studio JSON export (one main choice + a multi-choice field) into image,main,labels."""
    from fashionlens.data import multilabel as ml
    from fashionlens.data.errors import DataFormatError
    from fashionlens.labelling.labelstudio import import_labelstudio
    from fashionlens.labelling.store import read_vocabulary

    if out.exists() and not overwrite:
        _fail(f"{out} exists; pass --overwrite to replace it")
    photos = photos or out.absolute().parent
    if not photos.is_dir():
        _fail(f"photo folder not found: {photos}")
    try:
        vocab = read_vocabulary(label_list) if label_list is not None else None
        result = import_labelstudio(export, photos, main_field, labels_field, image_field, vocab)
    except (DataFormatError, OSError) as e:  # this command's own contract: an unusable export is exit code 1
        _fail(str(e), code=1)
    if not result.rows:
        _fail(
            f"{export}: no annotated task to import ({result.unlabelled} without annotation, "
            f"{result.cancelled} skipped)",
            code=1,
        )
    names = vocab or sorted({x for _, r in result.rows for x in r.labels})
    samples = [ml.Sample(path, record.labels, record.main) for path, record in result.rows]
    ml.write_multilabel(ml.LabelledSet(samples, names, photos), out)
    typer.echo(f"wrote {out}: {len(samples)} photos, {len(names)} labels")
    left = [
        f"{n} {what}"
        for n, what in (
            (result.unlabelled, "task(s) without annotation"),
            (result.cancelled, "task(s) skipped in Label Studio"),
        )
        if n
    ]
    if left:
        typer.echo("left out: " + ", ".join(left))
    if result.several:
        typer.echo(
            f"{result.several} task(s) had several annotations: used the ground-truth one, else the latest"
        )
