"""int8 models for the CPU: static quantisation of a fashionlens ONNX model with ONNX Runtime.

``fashionlens export MODEL --format onnx --int8 --calibration PHOTOS`` writes a QDQ model: int8
per-channel weights, uint8 activations whose ranges (min / max) are measured by running the fp32
model on real photos prepared by the model's own eval transform. ONNX Runtime fuses the QDQ pairs
into integer kernels (QLinearConv, QLinearAdd, QGemm), which use the AVX-512 VNNI / AVX-VNNI dot
product instructions where the CPU has them. The file carries the model's header like any
fashionlens ``.onnx`` file, plus the header's ``quantization``: how it was made and how closely it
agreed with the fp32 model on the calibration photos, so ``load_model``, ``predict``, ``serve`` and
``predict --engine ray`` take it as they take any other model.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fashionlens.checkpoint import ModelInfo
from fashionlens.data.images import BadImageError, ImageSource, load_image
from fashionlens.data.transforms import build_transforms, draft_size
from fashionlens.errors import ConfigError, FashionlensError
from fashionlens.fileio import atomic_write_bytes
from fashionlens.inference.export import ExportError, attach_header, cached_onnx
from fashionlens.inference.onnx_runner import INPUT_NAME, OnnxRunner, read_onnx_model


class QuantizeError(FashionlensError, ValueError):
    """int8 quantisation cannot start: no readable calibration photo, or a model that is already quantised."""


DEFAULT_MAX_IMAGES = 256  # MinMax ranges settle after ~100 photos; more only costs time
MIN_AGREEMENT = 0.9  # top-1 agreement with fp32 on the calibration photos below this: refuse to write
CALIBRATION_BATCH = 16
METHODS = ("minmax", "percentile", "entropy")


def calibration_inputs(info: ModelInfo, photos: Sequence[ImageSource], max_images: int = DEFAULT_MAX_IMAGES,
                       seed: int = 0) -> tuple[np.ndarray, int]:
    """The photos as the model sees them: (N, 3, H, W) float32, and how many could not be read.

    More than ``max_images`` photos are sampled (seeded) so that a big folder gives a mix, not its
    first sub-folder.

    Raises:
        ValueError: no photo could be read.
    """
    photos = list(photos)
    if len(photos) > max_images:
        photos = random.Random(seed).sample(photos, max_images)
    transform, draft = build_transforms(info.data_config, train=False), draft_size(info.data_config)
    arrays, bad = [], 0
    for photo in photos:
        try:
            arrays.append(transform(load_image(photo, draft_size=draft)).numpy())
        except BadImageError:
            bad += 1
    if not arrays:
        raise QuantizeError(f"none of the {len(photos)} calibration photos could be read")
    return np.stack(arrays), bad


def _reader(x: np.ndarray):
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        """Feeds the calibration photos to ONNX Runtime's calibrator, a batch at a time."""

        def __init__(self):
            self.start = 0

        def get_next(self) -> dict | None:
            if self.start >= len(x):
                return None
            batch = x[self.start : self.start + CALIBRATION_BATCH]
            self.start += CALIBRATION_BATCH
            return {INPUT_NAME: batch}

    return Batches()


def _fp32_onnx(model_path: Path) -> tuple[Path, ModelInfo]:
    """The fp32 ONNX file of a ``.safetensors`` model (exported once, cached) or of an ``.onnx`` model."""
    if model_path.suffix == ".onnx":
        _, info = read_onnx_model(model_path)
        if info.quantization is not None:
            raise QuantizeError(
                f"{model_path} is already quantised ({info.quantization.get('format')}); "
                "quantise the fp32 model"
            )
        return model_path, info
    onnx_path = cached_onnx(model_path)
    return onnx_path, read_onnx_model(onnx_path)[1]


def agreement(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, float]:
    """How closely ``candidate`` outputs follow ``reference`` (both: name -> (N, ...) arrays).

    ``category_top1``: fraction of rows with the same arg-max; ``labels_max_abs_prob`` /
    ``labels_mean_abs_prob``: sigmoid-probability differences of the tags (likewise styles and attributes);
    ``<name>_max_abs``: largest raw difference for every other output (heatmaps).
    """
    out: dict[str, float] = {}
    for name, ref in reference.items():
        got = candidate[name]
        if name == "category":
            out["category_top1"] = float((ref.argmax(1) == got.argmax(1)).mean())
        elif name in ("labels", "styles", "attributes"):
            diff = np.abs(1 / (1 + np.exp(-ref)) - 1 / (1 + np.exp(-got)))
            out[f"{name}_max_abs_prob"] = float(diff.max())
            out[f"{name}_mean_abs_prob"] = float(diff.mean())
        else:
            out[f"{name}_max_abs"] = float(np.abs(ref - got).max())
    return {k: round(v, 6) for k, v in out.items()}


def _run_batched(runner: OnnxRunner, x: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    parts = [runner(x[i : i + batch]) for i in range(0, len(x), batch)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def quantize_int8(
    model_path: str | Path,
    out_path: str | Path,
    calibration: Sequence[ImageSource],
    max_images: int = DEFAULT_MAX_IMAGES,
    method: str = "minmax",
    seed: int = 0,
) -> dict:
    """Write a statically quantised (QDQ) int8 ONNX model of ``model_path``, checked against fp32.

    Args:
        model_path: a fashionlens ``.safetensors`` model or its fp32 ``.onnx`` export.
        out_path: the int8 ``.onnx`` file to write (atomically).
        calibration: photos (paths, bytes, PIL images, arrays) like those the model will see;
            at most ``max_images`` of them are used (a seeded sample).
        method: activation ranges from "minmax" (ONNX Runtime's default), "percentile" or "entropy"
            (histograms: slower and far more memory).
        seed: the calibration sample.

    Returns:
        the header's ``quantization`` of the written model: settings, photos used, and its agreement
        with the fp32 model on them (see :func:`agreement`).

    Raises:
        ValueError: unknown method, an already quantised model, or no readable calibration photo.
        CheckpointError: ``model_path`` is not a fashionlens model.
        ExportError: the int8 model disagrees with fp32 on more than 10 % of the calibration
            photos' categories (nothing is written then).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    fp32_path, info = _fp32_onnx(Path(model_path))
    x, bad = calibration_inputs(info, calibration, max_images, seed)
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    with tempfile.TemporaryDirectory(prefix="fashionlens-int8-") as tmp:
        prepared, quantised = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # shape inference + ORT's basic graph optimisations (constant folding: the ML-GCN classifiers)
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        # reduce_range: 7-bit weights, so that ORT's uint8 x int8 kernels cannot saturate their 16-bit
        # sums on x86 CPUs without VNNI (the int8 file may run on another CPU than the one that made it)
        quantize_static(
            str(prepared),
            str(quantised),
            _reader(x),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate,
        )
        import onnx

        proto = onnx.load(str(quantised))
    report = {
        "format": "QDQ",
        "weights": "int8 (7-bit range), per channel",
        "activations": "uint8, per tensor",
        "calibration": {"method": method, "images": int(len(x)), "unreadable": bad, "seed": seed},
        "runtime": _ort_version(),
    }
    report["fp32_agreement_on_calibration"] = agreement(
        _run_batched(OnnxRunner(fp32_path), x), _run_batched(OnnxRunner(proto.SerializeToString()), x)
    )
    top1 = report["fp32_agreement_on_calibration"].get("category_top1", 1.0)
    if top1 < MIN_AGREEMENT:
        raise ExportError(
            f"the int8 model picks another category than fp32 for {1 - top1:.0%} of the calibration "
            f"photos (limit {1 - MIN_AGREEMENT:.0%}); not written"
        )
    qinfo = dataclasses.replace(info, quantization=copy.deepcopy(report))
    attach_header(proto, qinfo)
    atomic_write_bytes(out_path, proto.SerializeToString())
    return report


def _ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
