"""The typed sections of a model file's header (schema 2), and the upgrade of a schema-1 header.

:class:`fashionlens.checkpoint.ModelInfo` holds the model spec, label names and data config, and one
section per concern, each a frozen dataclass read (``from_dict``) and written (``to_dict``) here alone:

- :class:`Training`: the experiment, the data section it was trained on (format, split, label subset:
  what the evaluator needs to rebuild the same splits) and its best epoch;
- :class:`Calibration`: the temperature and thresholds the Predictor applies (``tools/ship_model.py``);
- :class:`HeadGraph` per head: how its label graph / word embeddings were built;
- the int8 report of a quantised ONNX model (``inference/quantize.py``), a plain dict, or None;
- :class:`Landmarks`: the names of the landmark slots;
- :class:`Attributes`: each attribute's type id and which attributes are colours;
- :class:`Parsing`: the garment parser's group names, or None.

Schema 1 kept all of these in one untyped ``extra`` dict; :func:`upgrade_header` turns a schema-1
header into a schema-2 one (``tools/upgrade_model.py`` rewrites a file with it).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from fashionlens.colours import COLOUR_TYPE, COLOURS

SCHEMA_VERSION = 2
# the training config's data keys that decide the splits (a model's ``training.data``)
SPLIT_KEYS = (
    "format",
    "top_labels",
    "split_fractions",
    "split_seed",
    "crop_margin",
    "ccp_annotations",
    "min_mask_pixels",
    "parsing",
    "holdout",
    "targets",
)
SECTIONS = ("training", "calibration", "label_graph", "quantization", "landmarks", "attributes", "parsing")


def _from_dict(cls, d: dict, section: str):
    """``cls(**d)`` with a clear error for keys the section does not have."""
    if not isinstance(d, dict):
        raise ValueError(f"header section {section!r} is not a JSON object")
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"header section {section!r} has unknown key(s) {unknown}")
    return cls(**d)


def data_section(cfg: dict) -> dict:
    """A training config's data section as the header keeps it (``Training.data``): what the evaluator
    needs to rebuild the same splits (no paths: data moves between machines)."""
    d = cfg["data"]
    out = {k: d[k] for k in SPLIT_KEYS}
    if d["label_list"]:  # the vocabulary order decides the columns (and ties of the split): keep the names
        from fashionlens.data.multilabel import read_label_list

        out["label_list"] = (
            list(d["label_list"]) if isinstance(d["label_list"], list) else read_label_list(d["label_list"])
        )
    if d["format"] == "mixed":
        out["sources"] = {
            s.get("format", d["format"]): {**{k: s.get(k, d[k]) for k in SPLIT_KEYS}, **_styles_section(s)}
            for s in d["sources"].values()
        }
    out.update(_styles_section(d))
    return out


def _styles_section(d: dict) -> dict:
    """A data section with style labels is rebuilt with the data root's own ``styles.csv`` ("auto")."""
    return {"styles": "auto", "style_sub_target": d.get("style_sub_target", 1.0)} if d.get("styles") else {}


@dataclass(frozen=True)
class Best:
    """The epoch whose weights the file holds, and why: the monitored metric's value, or a note."""

    epoch: int
    monitor: str | None = None
    value: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class Training:
    """How the model was trained: experiment name, data section (``train.fit.data_description``).

    ``data`` holds the training config's data keys that decide the splits (format, top_labels,
    split_fractions, split_seed, crop_margin, ...; no paths), and for a ``mixed`` model the same per
    source under ``sources`` (format -> keys). Read it through the methods below.
    """

    experiment: str | None = None
    data: dict = field(default_factory=dict)
    best: Best | None = None
    note: str | None = None  # where the model came from, when not from ``fashionlens train``
    attribute_refit: dict | None = None  # provenance of a refit attribute head (tools/refit_attributes.py)

    @property
    def format(self) -> str | None:
        """The data format trained on (``mixed``: several sources); None when the header has no data."""
        return self.data.get("format")

    @property
    def top_labels(self) -> int | None:
        """The tag subset trained on (the N most frequent tags), None for all."""
        return self.data.get("top_labels")

    @property
    def source_formats(self) -> list[str]:
        """The formats of a mixed model's sources (empty for a one-format model)."""
        return list(self.data.get("sources", {}))

    def format_for(self, detected: str) -> str | None:
        """The format to evaluate data of layout ``detected`` as: None (the model's own, when the layout
        is its format), ``detected`` (another format, or the source of a mixed model that has it)."""
        own = self.data.get("format", "mixed")
        if own != "mixed":
            return None if detected == own else detected
        return detected if detected in self.data.get("sources", {}) else None

    def split_for(self, data_format: str | None = None) -> dict:
        """The data keys that rebuild the splits of ``data_format`` data as training saw them (the
        model's own format: None; another: that source's keys of a mixed model, else just the format)."""
        if data_format and data_format != self.data.get("format"):
            return {**self.data.get("sources", {}).get(data_format, {}), "format": data_format}
        return copy.deepcopy(self.data)

    @property
    def box_margin(self) -> float:
        """The margin garment crops were trained with (its DeepFashion data's ``crop_margin``; 0.1)."""
        d = self.data
        garments = d.get("sources", {}).get("deepfashion", d if d.get("format") == "deepfashion" else {})
        return float(garments.get("crop_margin", 0.1))

    def with_ccp_parsing(self) -> Training:
        """This training section with parsing masks on its CCP data (a grafted garment parser)."""
        data = copy.deepcopy(self.data)
        for source in data.get("sources", {}).values():
            if source.get("format") == "ccp":
                source["parsing"] = True
        if data.get("format") == "ccp":
            data["parsing"] = True
        return replace(self, data=data)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Training:
        d = dict(d)
        best = d.pop("best", None)
        out = _from_dict(cls, d, "training")
        return replace(out, best=None if best is None else _from_dict(Best, best, "training.best"))


@dataclass(frozen=True)
class Calibration:
    """What the Predictor applies to the logits (defaults: uncalibrated).

    ``temperature`` divides the category logits; ``threshold`` and ``min_tags`` decide the tags
    returned; ``style_threshold`` the sub styles; ``attribute_threshold`` the non-colour attributes
    (None: the top k); ``threshold_selection`` says how the tag threshold was chosen.
    """

    temperature: float = 1.0
    threshold: float = 0.5
    min_tags: int = 0
    style_threshold: float = 0.5
    attribute_threshold: float | None = None
    threshold_selection: str | None = None

    def __post_init__(self):
        for name in ("temperature", "threshold", "style_threshold"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "min_tags", int(self.min_tags))
        if self.attribute_threshold is not None:
            object.__setattr__(self, "attribute_threshold", float(self.attribute_threshold))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return _from_dict(cls, d, "calibration")


@dataclass(frozen=True)
class HeadGraph:
    """How a head's label inputs were built: word embeddings (provider, dimension) and, for a GCN head,
    the co-occurrence graph (kind, tau, p, number of edges). Query heads have embeddings only."""

    embeddings: str
    embed_dim: int
    kind: str | None = None
    tau: float | None = None
    p: float | None = None
    num_edges: int | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> HeadGraph:
        return _from_dict(cls, d, "label_graph")


@dataclass(frozen=True)
class Landmarks:
    """The names of the model's landmark slots, in output order (empty: no landmark branch)."""

    names: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(self.names))

    def name(self, i: int) -> str:
        """The name of slot ``i`` (``landmark_<i>`` past the named slots)."""
        return self.names[i] if i < len(self.names) else f"landmark_{i}"

    def to_dict(self) -> dict:
        return {"names": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict) -> Landmarks:
        return _from_dict(cls, d, "landmarks")


@dataclass(frozen=True)
class Attributes:
    """What the attribute vocabulary means: each attribute's type id (``groups``, DeepFashion's
    ``ATTRIBUTE_TYPES``: 1 texture ... 6 colour; None when unknown) and the indices of the colours."""

    groups: tuple[int, ...] | None = None
    colours: tuple[int, ...] = ()

    def __post_init__(self):
        if self.groups is not None:
            object.__setattr__(self, "groups", tuple(int(g) for g in self.groups))
        object.__setattr__(self, "colours", tuple(int(i) for i in self.colours))

    @classmethod
    def for_names(cls, names, groups=None) -> Attributes:
        """The section for attributes ``names`` of type ids ``groups``: the colours are those of the
        colour type, or (no colour type among the groups) every attribute when all are colour names."""
        names = list(names)
        if groups is not None and COLOUR_TYPE in list(groups):
            colours = [i for i, g in enumerate(groups) if int(g) == COLOUR_TYPE]
        else:
            colours = list(range(len(names))) if names and set(names) <= set(COLOURS) else []
        return cls(None if groups is None else tuple(groups), tuple(colours))

    def colour_mask(self, n: int) -> np.ndarray:
        """(n,) bool: which of the ``n`` attribute columns are colours."""
        mask = np.zeros(n, dtype=bool)
        mask[[i for i in self.colours if i < n]] = True
        return mask

    def to_dict(self) -> dict:
        return {"groups": None if self.groups is None else list(self.groups), "colours": list(self.colours)}

    @classmethod
    def from_dict(cls, d: dict) -> Attributes:
        return _from_dict(cls, d, "attributes")


@dataclass(frozen=True)
class Parsing:
    """The garment parser's classes (``groups``), which of them are garments, and which garments get
    landmarks and attributes from a crop (``landmark_groups``)."""

    groups: tuple[str, ...]
    garments: tuple[str, ...]
    landmark_groups: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("groups", "garments", "landmark_groups"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Parsing:
        return _from_dict(cls, d, "parsing")


# --- schema 1 -> 2 ----------------------------------------------------------------------------------

_CALIBRATION_KEYS = tuple(f.name for f in fields(Calibration))
_TRAINING_KEYS = ("experiment", "data", "best", "note", "attribute_refit")
_V1_KEYS = {*_CALIBRATION_KEYS, *_TRAINING_KEYS, "graph", "quantization", "attribute_groups", "parsing"}


def _best_v1(best: dict) -> dict:
    """Schema 1's ``{"epoch": e, <monitor>: value}`` or ``{"epoch": e, "note": ...}``."""
    rest = {k: v for k, v in best.items() if k not in ("epoch", "note")}
    if len(rest) > 1:
        raise ValueError(f"extra.best has more than one metric: {sorted(rest)}")
    monitor, value = next(iter(rest.items()), (None, None))
    return {"epoch": int(best["epoch"]), "monitor": monitor, "value": value, "note": best.get("note")}


def upgrade_header(d: dict) -> dict:
    """A schema-1 header (parsed JSON) as the schema-2 header that means the same.

    ``extra``'s keys move to their sections; the landmark names (schema 1: DeepFashion's 8 slots, by
    convention) and the colour attributes (schema 1: decided at load time from the type ids or the
    colour names) are written out.

    Raises:
        ValueError: ``d`` is not a schema-1 header, or ``extra`` holds a key no section takes.
    """
    from fashionlens.data.deepfashion import LANDMARK_NAMES  # the convention schema-1 files relied on

    if d.get("schema_version") != 1:
        raise ValueError(f"not a schema-1 header (schema_version {d.get('schema_version')!r})")
    extra = dict(d.get("extra", {}))
    unknown = sorted(set(extra) - _V1_KEYS)
    if unknown:
        raise ValueError(f"extra holds key(s) no schema-2 section takes: {unknown}")
    training = {k: extra[k] for k in _TRAINING_KEYS if k in extra}
    if "best" in training:
        training["best"] = _best_v1(training["best"])
    lm = (d.get("spec") or {}).get("landmarks")
    names = d.get("label_names", {}).get("attributes", [])
    out = {k: v for k, v in d.items() if k != "extra"}
    out["schema_version"] = SCHEMA_VERSION
    out["training"] = Training.from_dict(training).to_dict()
    out["calibration"] = Calibration(**{k: extra[k] for k in _CALIBRATION_KEYS if k in extra}).to_dict()
    out["label_graph"] = {h: HeadGraph.from_dict(g).to_dict() for h, g in extra.get("graph", {}).items()}
    out["quantization"] = extra.get("quantization")
    out["landmarks"] = Landmarks(LANDMARK_NAMES[: lm.get("num_landmarks", 8)] if lm else ()).to_dict()
    out["attributes"] = Attributes.for_names(names, extra.get("attribute_groups")).to_dict()
    out["parsing"] = None if not extra.get("parsing") else Parsing.from_dict(extra["parsing"]).to_dict()
    return out
