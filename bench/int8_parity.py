"""int8 vs fp32 accuracy of a model on the validation photos: top-1 agreement, top-1 and tag mAP change.

    .venv/bin/python bench/int8_parity.py [MODEL] [--int8 OUT.onnx] [--calibration-images 256] \
        [--method minmax]

MODEL (default: the shipped fashionlens-lite) is quantised with ``quantize_int8`` (what
``fashionlens export --int8`` runs), calibrated on *training* photos: a seeded sample of
clothing-small ``train/`` and of the CCP training split. Both models are then run through ONNX
Runtime on photos prepared by the model's own eval transform:

- category: clothing-small ``validation/`` (top-1 accuracy of each, and how often they agree);
- tags: the CCP validation split that training used (the split settings stored in the model's
  header), mAP with ``fashionlens.metrics.mean_average_precision``.

It also lists the operators of the int8 graph after ONNX Runtime's optimisations: those that are
not integer kernels run in fp32. Data from ../shared/data.
"""

from __future__ import annotations

import argparse
import collections
import random
import tempfile
from pathlib import Path

import numpy as np

from fashionlens.checkpoint import ModelInfo
from fashionlens.data.ccp import MIN_MASK_PIXELS, read_ccp_parts
from fashionlens.data.image_folder import read_image_folder
from fashionlens.data.multilabel import split_by_kind
from fashionlens.inference.onnx_runner import OnnxRunner, read_onnx_model, session_options
from fashionlens.inference.predictor import resolve_model_path
from fashionlens.inference.quantize import calibration_inputs, quantize_int8
from fashionlens.metrics import mean_average_precision

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
INT8_OPS = {
    "QLinearConv",
    "QLinearAdd",
    "QLinearMul",
    "QGemm",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "QLinearGlobalAveragePool",
    "QLinearAveragePool",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearConcat",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
}


def ccp_split(info: ModelInfo, split: str):
    """The CCP split the model was trained / selected on (split settings from its header)."""
    training = info.training
    settings = training.split_for("ccp") if "ccp" in training.source_formats else training.data
    # as training splits it: each annotation kind on its own, with the same fractions and seed
    kinds = read_ccp_parts(
        SHARED / "ccp",
        annotations=settings.get("ccp_annotations", "both"),
        min_pixels=int(settings.get("min_mask_pixels", MIN_MASK_PIXELS)),
    )
    fractions, seed = (
        tuple(settings.get("split_fractions", (0.7, 0.1, 0.2))),
        int(settings.get("split_seed", 0)),
    )
    return split_by_kind(list(kinds.values()), fractions, seed=seed)[split]


def calibration_photos(info: ModelInfo, n: int, seed: int = 0) -> list[str]:
    """3/4 clothing-small train/, 1/4 CCP training split: the two kinds of photo the shipped model sees."""
    rng = random.Random(seed)
    photos: list[str] = []
    if "category" in info.label_names and (SHARED / "clothing-small" / "train").is_dir():
        train = [str(p) for p, _ in read_image_folder(SHARED / "clothing-small", "train").samples]
        photos += rng.sample(train, min(len(train), n * 3 // 4 if "labels" in info.label_names else n))
    if "labels" in info.label_names and (SHARED / "ccp").is_dir():
        train = [str(s.path) for s in ccp_split(info, "train").samples]
        photos += rng.sample(train, min(len(train), n - len(photos)))
    return photos


def outputs(runner: OnnxRunner, x: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    parts = [runner(x[i : i + batch]) for i in range(0, len(x), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def category_rows(info: ModelInfo, fp32: OnnxRunner, int8: OnnxRunner) -> list[list[object]]:
    data = read_image_folder(SHARED / "clothing-small", "validation")
    index = {name: i for i, name in enumerate(info.label_names["category"])}
    truth = np.array([index[data.class_names[k]] for _, k in data.samples])
    x, bad = calibration_inputs(info, [p for p, _ in data.samples], max_images=len(data))
    assert bad == 0, "unreadable validation photos"
    a, b = (outputs(r, x)["category"].argmax(1) for r in (fp32, int8))
    n = len(truth)
    return [
        [
            f"clothing-small validation ({n} photos): top-1 accuracy",
            round(float((a == truth).mean()), 4),
            round(float((b == truth).mean()), 4),
            round(float((b == truth).mean() - (a == truth).mean()), 4),
        ],
        [
            "int8 top-1 = fp32 top-1",
            "",
            round(float((a == b).mean()), 4),
            f"{int((a != b).sum())} of {n} differ",
        ],
    ]


def tag_rows(info: ModelInfo, fp32: OnnxRunner, int8: OnnxRunner) -> list[list[object]]:
    val = ccp_split(info, "val")
    columns = [val.label_names.index(name) for name in info.label_names["labels"]]  # model order
    targets = val.targets()[:, columns]
    x, bad = calibration_inputs(info, [s.path for s in val.samples], max_images=len(val))
    assert bad == 0, "unreadable validation photos"
    maps = [mean_average_precision(outputs(r, x)["labels"], targets) for r in (fp32, int8)]
    return [
        [
            f"CCP validation split ({len(val)} photos): tag mAP",
            round(maps[0], 4),
            round(maps[1], 4),
            round(maps[1] - maps[0], 4),
        ]
    ]


def fp32_operators(path: Path) -> dict[str, int]:
    """Operator counts of the int8 graph as ONNX Runtime runs it (after its fusions), non-integer ones
    only."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = session_options()
        so.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath).graph
    counts = collections.Counter(n.op_type for n in graph.node)
    return {op: c for op, c in sorted(counts.items()) if op not in INT8_OPS}


def make_int8(model: str, out: Path, images: int = 256, method: str = "minmax") -> tuple[Path, Path, dict]:
    """(fp32 .onnx, int8 .onnx, quantisation report) of ``model``, calibrated on training photos."""
    from fashionlens.inference.export import cached_onnx

    path = resolve_model_path(model)
    fp32 = path if path.suffix == ".onnx" else cached_onnx(path)
    info = read_onnx_model(fp32)[1]
    photos = calibration_photos(info, images)
    if not photos:
        raise SystemExit(f"no calibration photos: ../shared/data not found at {SHARED}")
    return fp32, out, quantize_int8(fp32, out, photos, max_images=images, method=method)


def main(argv: list[str] | None = None) -> list[list[object]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="fashionlens-lite")
    ap.add_argument(
        "--int8", type=Path, default=None, help="where to keep the int8 model (default: a temporary file)"
    )
    ap.add_argument("--calibration-images", type=int, default=256)
    ap.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8, report = make_int8(
            args.model, args.int8 or Path(tmp) / "int8.onnx", args.calibration_images, args.method
        )
        info = read_onnx_model(fp32)[1]
        runners = OnnxRunner(fp32), OnnxRunner(int8)
        rows = []
        if "category" in info.label_names:
            rows += category_rows(info, *runners)
        if "labels" in info.label_names:
            rows += tag_rows(info, *runners)
        others = fp32_operators(int8)
    from _common import machine_facts, markdown_table

    print("\n".join(f"- {k}: {v}" for k, v in machine_facts().items()))
    print(f"- model {args.model}; calibration {report['calibration']}\n")
    print(markdown_table(["", "fp32", "int8", "change"], rows))
    print(f"\nint8 graph after ONNX Runtime's fusions, operators that are not integer kernels: {others}")
    return rows


if __name__ == "__main__":
    main()
