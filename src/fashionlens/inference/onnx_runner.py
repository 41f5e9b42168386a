"""ONNX Runtime inference: a self-describing ``.onnx`` model file -> a ``Predictor.runner``.

A fashionlens ``.onnx`` file (written by :func:`fashionlens.inference.export.export_onnx`) carries the
same JSON header as a ``.safetensors`` model (:meth:`ModelInfo.to_json`) in its ``metadata_props``,
plus a SHA-256 digest of the graph and that header, so a Predictor can be built from the file alone
and an edited or corrupted file is refused with a clear message instead of predicting nonsense.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from fashionlens.checkpoint import CheckpointError, ModelInfo

META_HEADER = "fashionlens"
META_DIGEST = "fashionlens_sha256"
INPUT_NAME = "image"


def onnxruntime_available() -> bool:
    """True when both ``onnx`` and ``onnxruntime`` can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def content_digest(graph_bytes: bytes, header: str) -> str:
    """SHA-256 over the serialised graph (weights included) and the JSON header."""
    h = hashlib.sha256()
    h.update(graph_bytes)
    h.update(b"\0fashionlens-header\0")
    h.update(header.encode("utf-8"))
    return h.hexdigest()


def graph_bytes(model) -> bytes:
    """The deterministic serialisation of an ``onnx.ModelProto``'s graph (what the digest covers)."""
    return model.graph.SerializeToString(deterministic=True)


def read_onnx_model(path: str | Path):
    """Load and check a fashionlens ``.onnx`` file.

    Args:
        path: the ``.onnx`` file.

    Returns:
        (``onnx.ModelProto``, :class:`ModelInfo`).

    Raises:
        CheckpointError: missing, not ONNX, no fashionlens header, or graph/header edited after export.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if META_HEADER not in meta:
        raise CheckpointError(
            f"{path}: ONNX file without a fashionlens header (export it with `fashionlens export`)"
        )
    if meta.get(META_DIGEST) != content_digest(graph_bytes(model), meta[META_HEADER]):
        raise CheckpointError(
            f"{path}: the ONNX graph or its fashionlens header was modified after export "
            "(digest mismatch); export the model again"
        )
    return model, ModelInfo.from_json(meta[META_HEADER], str(path))


def session_options(threads: int | None = None, spin: bool = False):
    """ORT session options: intra-op threads = cores, sequential execution, all graph optimisations.

    ``spin=False`` makes ORT's idle intra-op threads sleep instead of busy-waiting for work. On a
    2-core machine shared with other processes (or with the Predictor's own decoding threads,
    or a second session in the web service) a spinning thread holds a core that the thread it
    waits for needs: Lite0 at batch 1 took 23 ms with spinning and 7.4 ms without, and the
    Predictor end to end ran 1.3x (batch 32) to 2.7x (batch 1) faster (docs/performance.md).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or cpu_cores()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return so


class OnnxRunner:
    """An ONNX Runtime session usable as ``Predictor.runner``: batch (B, 3, H, W) -> dict of arrays.

    Args:
        model: a path to an ``.onnx`` file, its bytes, or an ``onnx.ModelProto``.
        threads: intra-op threads (default: the cores this process may use).
        providers: ORT execution providers (default: CPU only).
        spin: let idle intra-op threads busy-wait (see :func:`session_options`).

    Example:
        >>> runner = OnnxRunner("model.onnx")                      # doctest: +SKIP
        >>> runner(torch.zeros(2, 3, 256, 192))["category"].shape   # doctest: +SKIP
        (2, 10)
    """

    def __init__(
        self, model, threads: int | None = None, providers: list[str] | None = None, spin: bool = False
    ):
        import onnxruntime as ort

        if hasattr(model, "SerializeToString"):
            model = model.SerializeToString()
        elif isinstance(model, Path):
            model = str(model)
        self.threads = threads or cpu_cores()
        self.session = ort.InferenceSession(
            model, session_options(self.threads, spin), providers=providers or ["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, batch: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        x = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else batch
        x = np.ascontiguousarray(x, dtype=np.float32)  # (B, 3, H, W)
        outputs = self.session.run(self.output_names, {self.input_name: x})
        return dict(zip(self.output_names, outputs, strict=True))

    def __repr__(self) -> str:
        return f"OnnxRunner(outputs={self.output_names}, threads={self.threads})"
