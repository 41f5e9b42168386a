"""The Predictor: a model file -> typed, JSON-serialisable predictions for any kind of image input."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fashionlens.checkpoint import ModelInfo
from fashionlens.checkpoint import load_model as load_model_file
from fashionlens.data.images import BadImageError, ImageSource, load_image
from fashionlens.data.transforms import build_transforms, draft_size
from fashionlens.models.glem import heatmaps_to_landmarks

LANDMARK_NAMES = ("left_collar", "right_collar", "left_sleeve", "right_sleeve",
                  "left_waistline", "right_waistline", "left_hem", "right_hem")
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "weights"


@dataclass
class ScoredLabel:
    label: str
    score: float


@dataclass
class Landmark:
    name: str
    x: float  # pixels in the original image
    y: float
    score: float  # heatmap peak value


@dataclass
class Prediction:
    """What one image was predicted to show; ``None`` for heads the model does not have."""

    source: str
    category: list[ScoredLabel] | None = None
    tags: list[ScoredLabel] | None = None
    tag_threshold: float | None = None
    attributes: list[ScoredLabel] | None = None
    landmarks: list[Landmark] | None = None
    image_size: tuple[int, int] | None = None  # (width, height)
    error: str | None = None

    def to_dict(self) -> dict:
        """The JSON record of the CLI and the web service (absent heads are left out)."""
        d = {"path": self.source}
        for key in ("category", "tags", "attributes", "landmarks"):
            value = getattr(self, key)
            if value is not None:
                d[key] = [asdict(v) for v in value]
        if self.tags is not None:
            d["tag_threshold"] = self.tag_threshold
        if self.image_size is not None:
            d["image_size"] = list(self.image_size)
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclass
class PredictorOptions:
    top_k: int = 5
    threshold: float | None = None  # None: the model's own (calibrated) threshold, else 0.5
    batch_size: int = 32
    extra: dict = field(default_factory=dict)


class Predictor:
    """Run a FashionNet on images: paths, PIL images, numpy arrays or encoded bytes.

    Example:
        >>> predictor = load_model("fashionlens-lite")          # doctest: +SKIP
        >>> predictor.predict(["photo.jpg"])[0].to_dict()       # doctest: +SKIP
    """

    def __init__(self, model: torch.nn.Module, info: ModelInfo, device: str = "cpu", batch_size: int = 32):
        self.model = model.to(device).eval().to(memory_format=torch.channels_last)
        self.info = info
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.transform = build_transforms(info.data_config, train=False)
        self._draft = draft_size(info.data_config)
        self.runner = self._torch_forward

    @property
    def heads(self) -> list[str]:
        return list(self.info.label_names)

    def _torch_forward(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.model(batch.to(self.device, memory_format=torch.channels_last))
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def preprocess(self, src: ImageSource) -> tuple[torch.Tensor, tuple[int, int]]:
        img = load_image(src, draft_size=self._draft)
        return self.transform(img), img.size

    def predict(self, images: ImageSource | Sequence[ImageSource], top_k: int = 5, threshold: float | None = None,
                names: Sequence[str] | None = None) -> list[Prediction]:
        """Predict every image; an unreadable image yields a Prediction with ``error`` set."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        return list(self.iter_predict(images, top_k, threshold, names))

    def iter_predict(self, images: Iterable[ImageSource], top_k: int = 5, threshold: float | None = None,
                     names: Sequence[str] | None = None) -> Iterator[Prediction]:
        """Like :meth:`predict`, streaming results batch by batch (for progress bars)."""
        pending: list[tuple[str, torch.Tensor, tuple[int, int]]] = []
        for i, src in enumerate(images):
            name = names[i] if names is not None else (str(src) if isinstance(src, (str, Path)) else f"<image {i}>")
            try:
                tensor, size = self.preprocess(src)
            except BadImageError as e:
                yield from self._flush(pending, top_k, threshold)
                pending = []
                yield Prediction(source=name, error=e.reason)
                continue
            pending.append((name, tensor, size))
            if len(pending) == self.batch_size:
                yield from self._flush(pending, top_k, threshold)
                pending = []
        yield from self._flush(pending, top_k, threshold)

    def _flush(self, pending, top_k: int, threshold: float | None) -> Iterator[Prediction]:
        if not pending:
            return
        outputs = self.runner(torch.stack([t for _, t, _ in pending]))
        for row, (name, _, size) in enumerate(pending):
            yield self._decode(outputs, row, name, size, top_k, threshold)

    def tag_threshold(self, threshold: float | None) -> float:
        return threshold if threshold is not None else float(self.info.extra.get("threshold", 0.5))

    def _decode(self, out: dict[str, np.ndarray], row: int, name: str, size, top_k: int, threshold) -> Prediction:
        pred = Prediction(source=name, image_size=size)
        names = self.info.label_names
        if "category" in out:
            pred.category = _top(_softmax(out["category"][row]), names["category"], top_k)
        if "labels" in out:
            thr = self.tag_threshold(threshold)
            probs = _sigmoid(out["labels"][row])
            pred.tags = [s for s in _top(probs, names["labels"], top_k) if s.score >= thr]
            pred.tag_threshold = thr
        if "attributes" in out:
            pred.attributes = _top(_sigmoid(out["attributes"][row]), names["attributes"], top_k)
        if "heatmaps" in out:
            hm = torch.from_numpy(out["heatmaps"][row : row + 1])
            xy = heatmaps_to_landmarks(hm)[0].numpy()
            peak = hm.flatten(2).amax(-1)[0].numpy()
            w, h = size
            pred.landmarks = [Landmark(LANDMARK_NAMES[i] if i < 8 else f"landmark_{i}", float(x * w), float(y * h), float(p))
                              for i, ((x, y), p) in enumerate(zip(xy, peak, strict=True))]
        return pred


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _top(probs: np.ndarray, names: list[str], k: int) -> list[ScoredLabel]:
    order = np.argsort(-probs, kind="stable")[: max(k, 0)]
    return [ScoredLabel(names[i], round(float(probs[i]), 6)) for i in order]


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model name (e.g. "fashionlens-lite") or a path to a .safetensors/.onnx file."""
    p = Path(name_or_path)
    if p.suffix in (".safetensors", ".onnx") or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p}")
        return p
    shipped = SHIPPED_DIR / f"{name_or_path}.safetensors"
    if shipped.is_file():
        return shipped
    available = sorted(f.stem for f in SHIPPED_DIR.glob("*.safetensors")) if SHIPPED_DIR.is_dir() else []
    raise FileNotFoundError(f"no model named {str(name_or_path)!r}: not a file, and shipped models are {available or 'none'}")


def load_model(name_or_path: str | Path = "fashionlens-lite", device: str = "cpu", batch_size: int = 32) -> Predictor:
    """Load a shipped model by name or a model file into a :class:`Predictor`."""
    model, info = load_model_file(resolve_model_path(name_or_path), device=device)
    return Predictor(model, info, device=device, batch_size=batch_size)
