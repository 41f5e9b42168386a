"""Self-describing model files: safetensors weights + one JSON header, no pickle anywhere.

The JSON (stored in the safetensors metadata under "fashionlens") holds the schema version, the model
spec (backbone name and kwargs, heads, landmark branch), label names per head, the data config and one
typed section per concern (:mod:`fashionlens.model_header`: training data and its split, calibration,
label graph, quantisation, landmark names, attribute meaning, garment parsing). Graph buffers
(adjacency, embeddings) are ordinary tensors of the state dict. Loading needs the file alone.

A schema-1 file (its sections in one untyped ``extra`` dict) is refused with the command that
upgrades it: ``python tools/upgrade_model.py OLD [NEW]`` (:func:`upgrade_model_file`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

import torch

from fashionlens.data.config import DataConfig
from fashionlens.errors import FashionlensError
from fashionlens.fileio import atomic_write_bytes  # the home of atomic writes; still importable from here
from fashionlens.model_header import (
    SCHEMA_VERSION,
    SECTIONS,
    Attributes,
    Calibration,
    HeadGraph,
    Landmarks,
    Parsing,
    Training,
    upgrade_header,
)
from fashionlens.models.fashion_net import FashionNet, build_model

_META_KEY = "fashionlens"
UPGRADE_COMMAND = "python tools/upgrade_model.py"


class CheckpointError(FashionlensError, ValueError):
    """A model file that is missing, truncated, tampered with or of an unknown schema."""


@dataclass
class ModelInfo:
    """Everything about a model except its weights: spec, label names, data config, and the typed
    header sections (keyword-only; see :mod:`fashionlens.model_header`)."""

    spec: dict
    label_names: dict[str, list[str]]
    data_config: DataConfig
    _: KW_ONLY
    training: Training = field(default_factory=Training)
    calibration: Calibration = field(default_factory=Calibration)
    label_graph: dict[str, HeadGraph] = field(default_factory=dict)
    quantization: dict | None = None  # the int8 report (inference/quantize.py) of a quantised ONNX model
    landmarks: Landmarks = field(default_factory=Landmarks)
    attributes: Attributes = field(default_factory=Attributes)
    parsing: Parsing | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema_version": SCHEMA_VERSION,
                "spec": self.spec,
                "label_names": self.label_names,
                "data_config": self.data_config.to_dict(),
                "training": self.training.to_dict(),
                "calibration": self.calibration.to_dict(),
                "label_graph": {head: g.to_dict() for head, g in self.label_graph.items()},
                "quantization": self.quantization,
                "landmarks": self.landmarks.to_dict(),
                "attributes": self.attributes.to_dict(),
                "parsing": None if self.parsing is None else self.parsing.to_dict(),
            }
        )

    @classmethod
    def from_json(cls, text: str, source: str = "<model>") -> ModelInfo:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{source}: model header is not valid JSON ({e})") from None
        version = d.get("schema_version")
        if version == 1:
            raise CheckpointError(
                f"{source}: a schema-1 model file (this fashionlens reads schema {SCHEMA_VERSION}); upgrade "
                f"it with `{UPGRADE_COMMAND} {source}` (tensors unchanged)"
            )
        if version != SCHEMA_VERSION:
            raise CheckpointError(
                f"{source}: schema_version {version!r}, this fashionlens reads {SCHEMA_VERSION}"
            )
        for key in ("spec", "label_names", "data_config"):
            if key not in d:
                raise CheckpointError(f"{source}: model header has no {key!r}")
        unknown = sorted(set(d) - {"schema_version", "spec", "label_names", "data_config", *SECTIONS})
        if unknown:
            raise CheckpointError(f"{source}: model header has unknown key(s) {unknown}")
        try:
            return cls._from_header(d)
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{source}: model header is malformed ({e})") from None

    @classmethod
    def _from_header(cls, d: dict) -> ModelInfo:
        parsing = d.get("parsing")
        return cls(
            d["spec"],
            d["label_names"],
            DataConfig.from_dict(d["data_config"]),
            training=Training.from_dict(d.get("training", {})),
            calibration=Calibration.from_dict(d.get("calibration", {})),
            label_graph={head: HeadGraph.from_dict(g) for head, g in d.get("label_graph", {}).items()},
            quantization=d.get("quantization"),
            landmarks=Landmarks.from_dict(d.get("landmarks", {})),
            attributes=Attributes.from_dict(d.get("attributes", {})),
            parsing=None if parsing is None else Parsing.from_dict(parsing),
        )


def save_model(model: FashionNet, info: ModelInfo, path: str | Path, half: bool = False) -> Path:
    """Save weights + header as one safetensors file, atomically."""
    from safetensors.torch import save

    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        if half and t.is_floating_point() and "num_batches_tracked" not in name:
            t = t.half()
        tensors[name] = t.clone()
    info.spec = model.spec
    atomic_write_bytes(path, save(tensors, metadata={_META_KEY: info.to_json()}))
    return Path(path)


def read_info(path: str | Path) -> ModelInfo:
    """Read only the header of a model file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path}: not a readable safetensors model file ({e})") from None
    if _META_KEY not in meta:
        raise CheckpointError(
            f"{path}: safetensors file without a fashionlens header (not a fashionlens model)"
        )
    return ModelInfo.from_json(meta[_META_KEY], str(path))


def upgraded_header(text: str, source: str = "<model>") -> str:
    """A schema-1 header (JSON text) rewritten as schema 2 (:func:`fashionlens.model_header.upgrade_header`),
    checked by reading it back.

    Raises:
        CheckpointError: not a schema-1 header, or one whose ``extra`` a schema-2 section cannot take.
    """
    try:
        new = json.dumps(upgrade_header(json.loads(text)))
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{source}: cannot upgrade its header ({e})") from None
    ModelInfo.from_json(new, source)
    return new


def upgrade_model_file(old: str | Path, new: str | Path | None = None) -> Path:
    """Rewrite a schema-1 ``.safetensors`` model's header as schema 2, written atomically to ``new``
    (default: in place). Only the header changes: the tensor bytes are copied as they are.

    Raises:
        CheckpointError: ``old`` is no safetensors file with a schema-1 fashionlens header.
    """
    old = Path(old)
    raw = old.read_bytes() if old.is_file() else b""
    header = _raw_header(raw)
    n = int.from_bytes(raw[:8], "little")  # _raw_header checked it (else header is None)
    meta = header.get("__metadata__") if header is not None else None
    if not isinstance(meta, dict) or _META_KEY not in meta:
        raise CheckpointError(f"{old}: not a safetensors model file with a fashionlens header")
    meta[_META_KEY] = upgraded_header(meta[_META_KEY], str(old))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the tensor data to 8 bytes
    out = Path(new) if new is not None else old
    atomic_write_bytes(out, len(text).to_bytes(8, "little") + text + raw[8 + n :])
    return out


class ModelFile:
    """A ``.safetensors`` model file read once: its bytes, its header, its digest and its weights.

    The loading path (:func:`fashionlens.load_model`) reads the file here, once, and every later step
    (the ONNX cache key, the export, the backend timing, the PyTorch model) uses these bytes.

    Raises (at construction):
        CheckpointError: the file is missing, is no safetensors file, or has no fashionlens header.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"model file not found: {self.path}")
        self.data = self.path.read_bytes()
        self.info = ModelInfo.from_json(_header_text(self.data, self.path), str(self.path))
        self._sha256: str | None = None

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file's bytes (computed once)."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self.data).hexdigest()
        return self._sha256

    def tensors(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        try:
            return load(self.data)
        except Exception as e:
            raise CheckpointError(f"{self.path}: weights are truncated or corrupt ({e})") from None

    def model(self, device: str | torch.device = "cpu") -> FashionNet:
        """The model its header describes, with its weights (cast back to float32), in eval mode."""
        return _build_with_weights(self.info, self.tensors(), self.path).to(device).eval()


def _raw_header(raw: bytes) -> dict | None:
    """The JSON header of a safetensors file's bytes (an 8-byte little-endian length, then that many bytes
    of JSON), or None when the bytes hold none."""
    n = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
    try:
        header = json.loads(raw[8 : 8 + n]) if 0 < n <= len(raw) - 8 else None
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def _header_text(raw: bytes, path: Path) -> str:
    """The fashionlens JSON header inside a safetensors file's bytes."""
    header = _raw_header(raw)
    if header is None:
        raise CheckpointError(f"{path}: not a readable safetensors model file (its header is not JSON)")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or _META_KEY not in meta:
        raise CheckpointError(
            f"{path}: safetensors file without a fashionlens header (not a fashionlens model)"
        )
    return meta[_META_KEY]


def _build_with_weights(info: ModelInfo, tensors: dict[str, torch.Tensor], path: Path) -> FashionNet:
    model = build_model(info.spec, pretrained=False)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the model spec (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]})"
        )
    for name, t in tensors.items():
        if t.shape != own[name].shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {tuple(t.shape)}, expected {tuple(own[name].shape)}"
            )
        if t.is_floating_point():
            tensors[name] = t.float()
    model.load_state_dict(tensors)
    return model


def load_model_file(path: str | Path, device: str | torch.device = "cpu") -> tuple[FashionNet, ModelInfo]:
    """Rebuild the model from the file alone and load its weights (cast back to float32).

    The low-level loader (model + header); :func:`fashionlens.load_model` gives a ``Predictor``.
    """
    file = ModelFile(path)
    return file.model(device), file.info


def warm_start(
    model: FashionNet, label_names: dict[str, list[str]], path: str | Path
) -> tuple[int, list[str]]:
    """Start ``model`` from a model file's weights (``model.init_from``): fine-tune a trained model.

    Every tensor of the file whose name and shape match is copied (cast to the model's dtype). A head
    whose label names differ from the file's (another vocabulary or order) starts fresh, even where
    its shapes match, so no row of a classifier is given another label's weights.

    Returns:
        (number of tensors copied, the names of the model's tensors that start fresh).

    Raises:
        CheckpointError: the file cannot be read or none of its tensors match the model.
    """
    file = ModelFile(path)
    info, tensors = file.info, file.tensors()
    other = {
        head for head, names in label_names.items() if list(info.label_names.get(head) or []) != list(names)
    }
    own = model.state_dict()
    take = {
        name: t.to(own[name].dtype)
        for name, t in tensors.items()
        if name in own
        and t.shape == own[name].shape
        and name.split(".")[:2] not in [["heads", h] for h in other]
    }
    if not take:
        raise CheckpointError(
            f"{path}: none of its {len(tensors)} tensors match this model (model.init_from)"
        )
    model.load_state_dict(take, strict=False)
    return len(take), sorted(set(own) - set(take))
