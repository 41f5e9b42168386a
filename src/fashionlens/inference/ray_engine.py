"""Catalogue-scale tagging on Ray Data: ``fashionlens predict PHOTOS --engine ray --out OUT_DIR``.

The pipeline::

    photo paths (driver: folders, globs, listings; minus those OUT_DIR already has)
      -> ray.data.from_arrow                      blocks of paths
      -> map_batches(decode_batch), CPU tasks     read bytes (local or s3:// gs://), decode, resize: uint8
                                                  (+ the decoded photo, for a model with a parsing head)
      -> map_batches(PredictActor), actor pool    normalise, the same Predictor / ONNX Runtime session
                                                  (+ each photo's garments from the decoded photo)
      -> driver: iter_batches -> ShardWriter      Parquet shards in OUT_DIR, each written atomically

Rerunning the same command skips every photo a finished shard already holds, so a crash or a kill
loses at most the rows not yet flushed (``shard_rows`` rows or ``FLUSH_SECONDS``), and every photo
ends up in the output exactly once. A photo that cannot be read is a row with ``error`` set.
The model file's bytes travel to the actors through Ray, so workers need fashionlens installed but
no shared filesystem; OUT_DIR is written by the driver.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fashionlens.errors import ConfigError, FashionlensError
from fashionlens.fileio import OutputDirError, atomic_write_bytes, check_output_dir
from fashionlens.inference.inputs import check_prediction_options

SHARD_GLOB = "part-*.parquet"
FLUSH_SECONDS = 30.0  # a shard is also written when this much time passed since the last one
BATCHES_PER_BLOCK = 2  # photos per decoding task = 2 batches: an actor takes one block per call, so
# small blocks keep every actor busy and results flowing (and at least 2 blocks per actor)
ACTOR_MEMORY = 2 << 30  # bytes reserved per actor: Ray measured up to 1.3 GiB for Lite0 at batch 32
# garments: the decoded photo travels to the actors (its garments' crops and colours are taken from it),
# reduced by an integer factor until its longer side is at most this many times the input's longer side.
# A JPEG decoded in draft mode is already within it (as the local engine decodes it: the same answers);
# a large PNG or WebP is reduced, so that a block of photos stays a few MiB per photo in Ray's store
PHOTO_MAX_SCALE = 4


class RayEngineError(FashionlensError, RuntimeError):
    """Ray could not be started or joined, or the job failed (what was written so far is kept).

    The command line reports it as one line with exit code 1 (not 2): the inputs were fine, the run was not.
    """

    exit_code = 1


@dataclass
class RayOptions:
    """How to run: the model, the actor pool and the output (see ``fashionlens predict --help``)."""

    model: str = "fashionlens-lite"
    out_dir: str | Path = "predictions"
    batch_size: int = 32
    num_actors: int = 1
    num_gpus_per_actor: float = 0.0
    # None: min(1, (cluster CPUs - 1) / actors), leaving a CPU for decoding
    cpus_per_actor: float | None = None
    threads_per_actor: int | None = None  # None: cluster CPUs / actors, capped at the node's cores
    backend: str = "auto"
    top_k: int = 5
    threshold: float | None = None
    shard_rows: int = 10_000
    address: str | None = None
    progress: bool = True
    fuse_decode: bool = False  # let Ray run the decoding inside the actors (measured in bench/ray_engine.py)
    garments: bool = True  # models with a parsing head: each photo's garments (False: skipped, faster)


@dataclass
class RunSummary:
    """What one run did; also written to ``OUT_DIR/_summary.json``."""

    inputs: int  # photos asked for (duplicates counted once)
    already_done: int  # skipped: a shard from an earlier run has them
    written: int  # rows written by this run
    errors: int  # of those, photos that could not be read
    shards: int  # shards written by this run
    seconds: float  # after Ray is up: actors starting, then tagging
    first_results_seconds: float  # until the first results came back (actors loading the model, first batch)
    images_per_second: float  # written / seconds
    out_dir: str
    backend: str
    num_actors: int

    def line(self) -> str:
        return (f"{self.written} photos tagged ({self.errors} unreadable) in {self.seconds:.1f} s, "
                f"{self.images_per_second:.1f} images/s, {self.num_actors} actor(s), backend {self.backend}; "
                f"{self.already_done} of {self.inputs} were already in {self.out_dir}")


# ---------------------------------------------------------------- output folder


def finished_paths(out_dir: Path) -> set[str]:
    """Paths in the finished shards of ``out_dir``; removes temporary files a killed run left.

    Raises:
        OutputDirError: a shard that is not readable Parquet (it was not written by this engine,
            whose writes are atomic); it names the file.
    """
    import pyarrow.parquet as pq

    for tmp in out_dir.glob(".part-*.tmp"):  # atomic_write_bytes's temporaries of a killed run
        tmp.unlink(missing_ok=True)
    done: set[str] = set()
    for shard in sorted(out_dir.glob(SHARD_GLOB)):
        try:
            done.update(pq.read_table(shard, columns=["path"]).column("path").to_pylist())
        except (OSError, ValueError, KeyError) as e:
            raise OutputDirError(f"{shard}: not a readable prediction shard ({type(e).__name__}: {e}); "
                                 "move it away to tag its photos again") from None
    return done


def pending_paths(paths: list[str], done: set[str]) -> list[str]:
    """``paths`` without those in ``done`` and without repeats, in order."""
    seen = set(done)
    out = []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


@contextlib.contextmanager
def exclusive(out_dir: Path) -> Iterator[None]:
    """Hold ``OUT_DIR/.lock`` (released by the OS even on SIGKILL) so two runs never write one folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirError(
                f"{out_dir}: another fashionlens predict is writing to this folder"
            ) from None
        yield


class ShardWriter:
    """Buffer result tables; write ``part-<run>-<n>.parquet`` atomically: ``shard_rows`` rows each (a
    larger block is split), or the rows buffered when ``flush_seconds`` passed (a smaller shard)."""

    def __init__(self, out_dir: Path, shard_rows: int, flush_seconds: float = FLUSH_SECONDS):
        self.out_dir = out_dir
        self.shard_rows = max(1, int(shard_rows))
        self.flush_seconds = flush_seconds
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.tables: list = []
        self.rows = self.written = self.errors = self.shards = 0
        self.last_flush = time.monotonic()

    def add(self, table) -> None:
        self.tables.append(table)
        self.rows += table.num_rows
        while self.rows >= self.shard_rows:  # a block may hold more rows than a shard: split it
            self._write(self.shard_rows)
        if self.rows and time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row (at most ``shard_rows`` per shard)."""
        while self.rows:
            self._write(min(self.rows, self.shard_rows))
        self.last_flush = time.monotonic()

    def _write(self, rows: int) -> None:
        """Write the first ``rows`` buffered rows as one shard; keep the rest buffered."""
        import pyarrow as pa

        from fashionlens.inference.output import parquet_bytes

        self.last_flush = time.monotonic()
        buffered = pa.concat_tables(self.tables)
        table, rest = buffered.slice(0, rows), buffered.slice(rows)
        shard = self.out_dir / f"part-{self.run_id}-{self.shards:05d}.parquet"
        atomic_write_bytes(shard, parquet_bytes(table))
        self.written += table.num_rows
        self.errors += table.num_rows - table.column("error").null_count
        self.shards += 1
        self.tables, self.rows = ([rest] if rest.num_rows else []), rest.num_rows


# ---------------------------------------------------------------- Ray stages


def decode_batch(
    batch: dict[str, np.ndarray], data_config: dict, photos: bool = False
) -> dict[str, np.ndarray]:
    """Ray task: read and decode each photo, resize it as the model's eval transform does (uint8).

    Sending the resized uint8 pixels (not normalised floats) to the actors moves 4x fewer bytes.
    A photo that cannot be read gets zero pixels and its reason in ``error`` ("" when fine).

    Args:
        batch: ``path``: the photos' paths or URIs.
        data_config: the model's data config (``DataConfig.to_dict()``).
        photos: also return each decoded photo (for the garments of a model with a parsing head):
            ``photo`` its RGB bytes (H x W x 3 uint8, empty for a photo that cannot be read) and
            ``photo_shape`` its (H, W), at most :data:`PHOTO_MAX_SCALE` x the input's longer side.
    """
    from fashionlens.data.config import DataConfig
    from fashionlens.data.images import BadImageError, load_image, photo_size
    from fashionlens.data.transforms import build_transforms, draft_size
    from fashionlens.inference.inputs import read_source

    cfg = DataConfig.from_dict(data_config)
    transform, draft = build_transforms(cfg, train=False), draft_size(cfg)
    paths = [str(p) for p in batch["path"]]
    height, width = cfg.input_size
    pixels = np.zeros((len(paths), height, width, 3), dtype=np.uint8)
    sizes = np.zeros((len(paths), 2), dtype=np.int32)
    errors = [""] * len(paths)
    decoded = [b""] * len(paths)
    shapes = np.zeros((len(paths), 2), dtype=np.int32)
    for i, path in enumerate(paths):
        try:
            img = load_image(read_source(path), draft_size=draft)
            pixels[i] = np.asarray(transform.fit(img))
            sizes[i] = photo_size(img)
            if photos:
                photo = _reduced(img, PHOTO_MAX_SCALE * max(height, width))
                decoded[i], shapes[i] = photo.tobytes(), (photo.height, photo.width)
        except BadImageError as e:
            errors[i] = e.reason
        except (OSError, ValueError) as e:  # a URI pyarrow cannot open (its errors derive from these)
            errors[i] = f"cannot read ({type(e).__name__}: {e})"
    out = {
        "path": np.asarray(paths, dtype=object),
        "pixels": pixels,
        "size": sizes,
        "error": np.asarray(errors, dtype=object),
    }
    if photos:
        out["photo"], out["photo_shape"] = np.asarray(decoded, dtype=object), shapes
    return out


def _reduced(img, max_side: int):
    """``img`` (RGB) reduced by the smallest integer factor that brings its longer side to ``max_side``."""
    factor = math.ceil(max(img.size) / max_side)
    return img.reduce(factor) if factor > 1 else img


def _photo(data: bytes, shape: np.ndarray):
    """A decoded photo sent by :func:`decode_batch`, as a PIL image."""
    from PIL import Image

    h, w = (int(v) for v in shape)
    return Image.fromarray(np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3), "RGB")


class PredictActor:
    """Ray actor: one Predictor (ONNX Runtime session or PyTorch model) for the actor's lifetime."""

    def __init__(
        self,
        model_ref: list,
        suffix: str,
        backend: str,
        device: str,
        threads: int,
        batch_size: int,
        top_k: int,
        threshold: float | None,
        garments: bool = False,
    ):
        import ray
        import torch

        from fashionlens.inference.onnx_runner import cpu_cores
        from fashionlens.inference.predictor import load_model

        folder = Path(tempfile.mkdtemp(prefix="fashionlens-actor-"))
        path = folder / f"model{suffix}"
        path.write_bytes(ray.get(model_ref[0]))  # a list, so Ray passes the reference and not the bytes
        threads = max(1, min(threads, cpu_cores()))
        torch.set_num_threads(threads)
        self.predictor = load_model(
            path, device=device, backend=backend, batch_size=batch_size, threads=threads
        )
        self.mean, self.std = self.predictor.info.data_config.mean, self.predictor.info.data_config.std
        self.top_k, self.threshold = top_k, threshold
        self.garments = garments  # the batches carry the decoded photos (decode_batch(photos=True))

    def __call__(self, batch: dict[str, np.ndarray]):
        import torch

        from fashionlens.data.transforms import normalize_pixels
        from fashionlens.inference.output import predictions_table
        from fashionlens.inference.predictor import Prediction

        paths, errors = [str(p) for p in batch["path"]], [str(e) for e in batch["error"]]
        good = [i for i, e in enumerate(errors) if not e]
        preds: list[Prediction] = [
            Prediction(source=p, error=e or None) for p, e in zip(paths, errors, strict=True)
        ]
        if good:
            x = torch.from_numpy(normalize_pixels(batch["pixels"][good], self.mean, self.std))
            sizes = [tuple(int(v) for v in batch["size"][i]) for i in good]
            images = (
                [_photo(batch["photo"][i], batch["photo_shape"][i]) for i in good]
                if self.garments and "photo" in batch
                else None
            )
            names = [paths[i] for i in good]
            for i, pred in zip(
                good,
                self.predictor.predict_batch(x, names, sizes, self.top_k, self.threshold, images=images),
                strict=True,
            ):
                preds[i] = pred
        return predictions_table(preds)


# ---------------------------------------------------------------- driver


def actor_model(model: str, backend: str, gpus: bool, batch_size: int) -> tuple[Path, str, dict, bool]:
    """The model file the actors load, their backend, the model's data config, and whether it has a
    parsing head (it finds garments).

    Resolved once on the driver: for ONNX Runtime the export (and the "auto" timing) is done here
    and cached, instead of once per actor.

    Raises:
        FileNotFoundError, ValueError, CheckpointError: as :func:`fashionlens.load_model`.
    """
    from fashionlens.inference.predictor import BackendError, load_model, resolve_model_path

    path = resolve_model_path(model)
    if gpus:
        if path.suffix == ".onnx":
            raise BackendError(f"{path}: GPU actors run the PyTorch model; pass its .safetensors file")
        predictor = load_model(path, backend="torch")
        return path, "torch", predictor.info.data_config.to_dict(), _has_parsing(predictor)
    predictor = load_model(path, backend=backend, batch_size=batch_size)
    if predictor.backend == "onnx" and path.suffix != ".onnx":
        from fashionlens.inference.export import cached_onnx

        path = cached_onnx(path)
    return path, predictor.backend, predictor.info.data_config.to_dict(), _has_parsing(predictor)


def _has_parsing(predictor) -> bool:
    """Whether the model finds garments: a parsing head and its group names (the header's ``parsing``)."""
    return predictor.info.parsing is not None and "parsing" in predictor.info.spec


def init_ray(address: str | None) -> None:
    """Join ``address`` (or ``$RAY_ADDRESS``) or start Ray on this machine; quiet logs, no Ray progress
    bars."""
    import logging

    import ray

    if not ray.is_initialized():
        target = address or os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(
                address=target,
                logging_level=logging.WARNING,
                log_to_driver=False,
                include_dashboard=False,
                configure_logging=True,
            )
        except Exception as e:  # noqa: BLE001 - Ray raises plain Exception for a start-up timeout
            where = f"join the Ray cluster at {target}" if target else "start Ray on this machine"
            hint = (
                "" if target else "; on a very busy machine Ray's processes can start too slowly: try again"
            )
            raise RayEngineError(f"could not {where} ({type(e).__name__}: {_first_line(e)}){hint}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts photos written, theirs count blocks per operator
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def _root_cause(e: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (``RayTaskError.cause``, ``__cause__``)."""
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        inner = getattr(e, "cause", None) or e.__cause__ or e.__context__
        if not isinstance(inner, BaseException):
            break
        e = inner
    return e


def pool_sizes(opts: RayOptions, cluster_cpus: float) -> tuple[float, int]:
    """(CPUs reserved per actor, intra-op threads per actor) for the actor pool.

    By default each actor reserves at most one CPU and the actors together leave one CPU of the
    cluster for the decoding tasks (on 2 cores, 2 actors reserve 0.5 each); the threads share the
    cluster's CPUs among the actors (each actor caps them at its node's cores).
    """
    actors = max(1, opts.num_actors)
    cpus = opts.cpus_per_actor
    if cpus is None:
        cpus = min(1.0, max(0.1, (cluster_cpus - 1) / actors))
    threads = opts.threads_per_actor or max(1, round(cluster_cpus / actors))
    return float(cpus), int(threads)


def build_dataset(
    paths: list[str],
    opts: RayOptions,
    model_path: Path,
    backend: str,
    data_config: dict,
    cluster_cpus: float,
    garments: bool = False,
):
    """The Ray Data pipeline from paths to result tables (lazy; nothing runs until iterated).

    ``garments``: the decoding tasks also send each decoded photo and the actors find its garments
    (a model with a parsing head, and ``opts.garments``).
    """
    import pyarrow as pa
    import ray

    per_block = BATCHES_PER_BLOCK * max(8, opts.batch_size)  # >= 16 photos: a Ray task costs milliseconds
    blocks = max(math.ceil(len(paths) / per_block), min(len(paths), 2 * max(1, opts.num_actors)))
    ds = ray.data.from_arrow(pa.table({"path": pa.array(paths, pa.string())}), override_num_blocks=blocks)
    ds = ds.map_batches(
        decode_batch,
        batch_size=None,
        fn_kwargs={"data_config": data_config, "photos": garments},
        compute=ray.data.TaskPoolStrategy(),
        num_cpus=1,
        batch_format="numpy",
    )
    cpus, threads = pool_sizes(opts, cluster_cpus)
    gpus = opts.num_gpus_per_actor > 0
    return ds.map_batches(
        PredictActor,
        batch_size=opts.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=max(1, opts.num_actors)),
        fn_constructor_kwargs={
            "model_ref": [ray.put(model_path.read_bytes())],
            "suffix": model_path.suffix,
            "backend": backend,
            "device": "cuda" if gpus else "cpu",
            "threads": threads,
            "batch_size": opts.batch_size,
            "top_k": opts.top_k,
            "threshold": opts.threshold,
            "garments": garments,
        },
        num_cpus=cpus,
        num_gpus=opts.num_gpus_per_actor or None,
        # a memory reservation (a model replica, its runtime's arenas and a batch's activations) also
        # keeps Ray from fusing the decoding tasks into the actors (it fuses map stages whose
        # resources are equal), so decoding scales with the cluster's CPUs, not with the replicas
        memory=None if opts.fuse_decode else ACTOR_MEMORY,
    )


def _check_gpus(opts: RayOptions) -> None:
    """Refuse GPU actors where Ray on this machine has no GPU (they would wait for one forever).

    On a cluster given by ``--address`` / ``RAY_ADDRESS`` an autoscaler may still add GPU nodes.
    """
    import ray

    have = float(ray.cluster_resources().get("GPU", 0.0))
    if opts.num_gpus_per_actor > have and not (opts.address or os.environ.get("RAY_ADDRESS")):
        raise ConfigError(
            f"--num-gpus-per-actor {opts.num_gpus_per_actor:g}: Ray on this machine has {have:g} GPU(s)"
        )


def _summary(
    inputs: int,
    todo: int,
    writer: ShardWriter,
    seconds: float,
    first: float | None,
    backend: str,
    opts: RayOptions,
) -> RunSummary:
    rate = writer.written / seconds if seconds > 0 else 0.0
    return RunSummary(
        inputs,
        inputs - todo,
        writer.written,
        writer.errors,
        writer.shards,
        round(seconds, 3),
        round(first if first is not None else seconds, 3),
        round(rate, 2),
        str(writer.out_dir),
        backend,
        max(1, opts.num_actors),
    )


def run(paths: list[str], opts: RayOptions) -> RunSummary:
    """Tag ``paths`` into Parquet shards in ``opts.out_dir``, skipping photos it already has.

    Args:
        paths: photo paths or URIs (see :func:`fashionlens.inference.inputs.expand_inputs`).
        opts: model, actor pool and output settings.

    Returns:
        What this run did (also written to ``OUT_DIR/_summary.json``).

    Raises:
        PredictArgumentError: ``top_k`` or ``threshold`` out of range (as the Python API's).
        OutputDirError: OUT_DIR is not a writable folder (checked before any work), holds a shard
            that is not readable, or another run writes to it.
        RayEngineError: Ray cannot be started or joined, or the job failed (the rows received are
            written first, so a rerun resumes).
        FileNotFoundError, ValueError, CheckpointError: the model cannot be loaded.
    """
    check_prediction_options(opts.top_k, opts.threshold)
    out_dir = check_output_dir(opts.out_dir, "--out")
    with exclusive(out_dir):
        todo = pending_paths(paths, finished_paths(out_dir))
        model_path, backend, data_config, parsing = actor_model(
            opts.model, opts.backend, opts.num_gpus_per_actor > 0, opts.batch_size
        )
        writer = ShardWriter(out_dir, opts.shard_rows)
        garments = parsing and opts.garments
        seconds, first = (
            _tag(todo, opts, model_path, backend, data_config, writer, garments) if todo else (0.0, None)
        )
        summary = _summary(len(set(paths)), len(todo), writer, seconds, first, backend, opts)
        atomic_write_bytes(out_dir / "_summary.json", json.dumps(asdict(summary), indent=1).encode())
    return summary


def _tag(
    todo: list[str],
    opts: RayOptions,
    model_path: Path,
    backend: str,
    data_config: dict,
    writer: ShardWriter,
    garments: bool = False,
) -> tuple[float, float | None]:
    """Run the pipeline over ``todo`` into ``writer``: (seconds, seconds until the first results)."""
    import ray
    from tqdm import tqdm

    init_ray(opts.address)
    _check_gpus(opts)
    ds = build_dataset(
        todo, opts, model_path, backend, data_config, float(ray.cluster_resources().get("CPU", 1.0)), garments
    )
    start, first = time.perf_counter(), None
    with tqdm(total=len(todo), unit="img", file=sys.stderr, disable=not opts.progress) as bar:
        try:
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                first = time.perf_counter() - start if first is None else first
                writer.add(table)
                bar.update(table.num_rows)
        except Exception as e:  # noqa: BLE001 - Ray wraps task and actor failures in its own types
            writer.flush()  # the rows received are complete: keep them
            cause = _root_cause(e)
            raise RayEngineError(
                f"the Ray job failed after {writer.written} photos were written "
                f"({type(cause).__name__}: {_first_line(cause)}); rerun the same command "
                "to tag the rest"
            ) from e
    writer.flush()
    return time.perf_counter() - start, first
