"""Export a fashionlens model to a self-describing ONNX file, checked against PyTorch.

The ``.onnx`` file has one input ``image`` (B, 3, H, W) (float32, normalised as the model's data
config says; B dynamic by default) and one output per model output, named as the keys of
``FashionNet.forward`` ("heatmaps", "category", "labels", "styles", "attributes", ...). The model's JSON
header (:meth:`ModelInfo.to_json`) and a digest of graph + header are stored as ONNX ``metadata_props``.

Export uses the ``torch.export``-based exporter: the legacy TorchScript exporter produced wrong
outputs (max abs diff ~2.5) for EfficientNet-Lite0's dynamic 'same' padding with a dynamic batch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fashionlens.checkpoint import ModelFile, ModelInfo
from fashionlens.errors import ConfigError, FashionlensError
from fashionlens.fileio import atomic_write_bytes
from fashionlens.inference.onnx_runner import (
    INPUT_NAME,
    META_DIGEST,
    META_HEADER,
    OnnxRunner,
    content_digest,
    graph_bytes,
)

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
MIN_OPSET = 18  # the torch.export-based exporter emits 18; its down-conversion to 17 fails (ReduceMax axes)


class ExportError(FashionlensError, RuntimeError):
    """The exported ONNX model does not reproduce the PyTorch model's outputs."""


class _TupleOutputs(nn.Module):
    """Return the model's output dict as a tuple in a fixed order (ONNX outputs are positional)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[name] for name in self.names)


def _example_input(info: ModelInfo, batch: int, seed: int = 0) -> torch.Tensor:
    height, width = info.data_config.input_size
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, int(height), int(width), generator=gen)  # (B, 3, H, W), ~normalised pixels


def _to_onnx(model: nn.Module, example: torch.Tensor, names: list[str], opset: int, dynamic_batch: bool):
    """torch.export-based export, quiet; returns an ``onnx.ModelProto``."""
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} is not supported: the exporter needs opset >= {MIN_OPSET}")
    dynamic = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _TupleOutputs(model, names).eval(),
            (example,),
            None,
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_shapes=dynamic,
            opset_version=opset,
            optimize=True,
            verbose=False,
            external_data=False,
        )
    return program.model_proto


def attach_header(proto, info: ModelInfo) -> None:
    """Store the JSON header and the graph + header digest in ``proto.metadata_props`` (in place)."""
    header = info.to_json()
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in (META_HEADER, META_DIGEST)]
    del proto.metadata_props[:]
    for key, value in keep + [
        (META_HEADER, header),
        (META_DIGEST, content_digest(graph_bytes(proto), header)),
    ]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "fashionlens"


def max_abs_diff(model: nn.Module, runner: OnnxRunner, x: torch.Tensor) -> dict[str, float]:
    """Largest |ONNX - PyTorch| per output, and the largest |PyTorch| as ``<name>.scale``."""
    with torch.inference_mode():
        ref = {k: v.float().numpy() for k, v in model(x).items()}
    got = runner(x)
    diffs: dict[str, float] = {}
    for name, value in ref.items():
        diffs[name] = float(np.abs(got[name] - value).max())
        diffs[f"{name}.scale"] = float(np.abs(value).max())
    return diffs


def verify_onnx(
    model: nn.Module, runner: OnnxRunner, info: ModelInfo, batches=(1, 5), atol: float = 1e-4
) -> None:
    """Raise :class:`ExportError` unless ONNX Runtime matches PyTorch on random inputs.

    An output matches when ``max|onnx - torch| <= atol * max(1, max|torch|)``: absolute for
    outputs of magnitude up to 1 (probabilities, heatmaps, typical logits), relative beyond.
    """
    for batch in batches:
        diffs = max_abs_diff(model, runner, _example_input(info, batch, seed=batch))
        for name in (k for k in diffs if not k.endswith(".scale")):
            limit = atol * max(1.0, diffs[f"{name}.scale"])
            if not diffs[name] <= limit:  # also catches NaN
                raise ExportError(
                    f"ONNX output {name!r} differs from PyTorch by {diffs[name]:.3g} at batch {batch} "
                    f"(limit {limit:.3g}); the exported graph is wrong, do not use it"
                )


def export_module(
    model: nn.Module,
    info: ModelInfo,
    out_path: str | Path,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export an in-memory FashionNet (see :func:`export_onnx`) and write it atomically."""
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    example = _example_input(info, 2)
    with torch.inference_mode():
        names = list(model(example))
    proto = _to_onnx(model, example, names, opset, dynamic_batch)
    attach_header(proto, info)
    data = proto.SerializeToString()
    verify_onnx(model, OnnxRunner(data), info, (1, 5) if dynamic_batch else (2,), atol)
    atomic_write_bytes(out_path, data)
    return Path(out_path)


def export_onnx(
    model_path: str | Path | ModelFile,
    out_path: str | Path,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> Path:
    """Export a ``.safetensors`` fashionlens model to ONNX, checked with ONNX Runtime.

    Args:
        model_path: the model file (or a :class:`~fashionlens.checkpoint.ModelFile` already read).
        out_path: where to write the ``.onnx`` file (atomically).
        opset: ONNX opset version (>= 18).
        dynamic_batch: a dynamic batch dimension (else fixed at 2, the export example's batch).

    Returns:
        ``out_path``.

    Raises:
        CheckpointError: ``model_path`` is not a readable fashionlens model.
        ValueError: ``opset`` below 18.
        ExportError: ONNX Runtime's outputs differ from PyTorch's by more than 1e-4 (see
            :func:`verify_onnx`); nothing is written then.

    Example:
        >>> export_onnx("runs/lite/model.safetensors", "lite.onnx")   # doctest: +SKIP
        PosixPath('lite.onnx')
    """
    file = model_path if isinstance(model_path, ModelFile) else ModelFile(model_path)
    return export_module(file.model(), file.info, out_path, opset=opset, dynamic_batch=dynamic_batch)


def cache_dir() -> Path:
    """``$FASHIONLENS_CACHE`` or ``$XDG_CACHE_HOME/fashionlens`` (default ``~/.cache/fashionlens``)."""
    if os.environ.get("FASHIONLENS_CACHE"):
        return Path(os.environ["FASHIONLENS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fashionlens"


def cached_onnx(model_path: str | Path | ModelFile, opset: int = DEFAULT_OPSET) -> Path:
    """The ONNX export of a ``.safetensors`` model, made once and kept in :func:`cache_dir`.

    The cache file is named by the model file's SHA-256 (and the opset and onnxruntime version),
    so a retrained model never reuses a stale export. ``model_path`` may be a
    :class:`~fashionlens.checkpoint.ModelFile` already read (its digest and weights are reused).
    """
    import onnxruntime

    file = model_path if isinstance(model_path, ModelFile) else ModelFile(model_path)  # read once
    key = f"{file.sha256[:24]}-opset{opset}-ort{onnxruntime.__version__}"
    out = cache_dir() / "onnx" / f"{key}.onnx"
    if not out.is_file():
        logger.info("exporting %s to ONNX once (kept in %s)", file.path, out.parent)
        export_onnx(file, out, opset=opset)
    return out


def read_sidecar(onnx_path: Path) -> dict:
    """The JSON notes kept next to a cached export (e.g. the measured backend choice)."""
    side = onnx_path.with_suffix(".json")
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError):
        return {}


def write_sidecar(onnx_path: Path, notes: dict) -> None:
    """Write the JSON notes next to a cached export (best effort: a read-only cache is fine)."""
    with contextlib.suppress(OSError):
        atomic_write_bytes(onnx_path.with_suffix(".json"), json.dumps(notes, indent=1).encode())
