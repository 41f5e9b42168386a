"""FashionNet: the one model family of fashionlens.

    image -> backbone -> feature map F (B, C, h, w)
          -> [landmark branch: F (or a finer map) -> GLEM x n -> G (B, C', h', w') -> heatmap head
              -> (B, L, h'', w''); optional visibility logits (B, L)]
          -> head input: F, or concat(G, F) when fused (B, C' + C, h, w)
          -> [parsing head: the last map + the stride-16 and -8 maps -> (B, K, H/8, W/8) garment-group logits]
          -> heads: "category" (softmax), "labels" (multi-label tags), "styles" (multi-label styles),
                    "attributes" (multi-label, weighted BCE); each linear or ML-GCN on pooled
                    features, or ML-Decoder / Query2Label on the map

Seed A's fused model, its "[3]-like" (landmarks trained, not fused) and plain baselines, and seed B's
ML-GCN / linear / basic-CNN models are all configurations of this class.
"""

from __future__ import annotations

import copy
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from fashionlens.data.config import DataConfig
from fashionlens.errors import ConfigError
from fashionlens.models.glem import GLEM, HeatmapHead, conv_bn_relu
from fashionlens.models.heads import RecognitionHead
from fashionlens.models.parsing import PARSING_DEFAULTS, ParsingHead
from fashionlens.models.registry import create_backbone

HEAD_NAMES = ("category", "labels", "styles", "attributes")
_LANDMARK_DEFAULTS = {"num_landmarks": 8, "num_glem": 1, "num_upsample": 1, "fuse": True, "channels": None,
                      "visibility": False, "stride": None}


def _build_head(name: str, in_channels: int, settings: dict) -> RecognitionHead:
    """The ``name`` head; a setting it does not take or a bad value is a ConfigError naming
    ``model.heads.<name>``."""
    known = set(inspect.signature(RecognitionHead).parameters) - {"in_channels"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"model.heads.{name}: unknown setting(s) {unknown}; known: {', '.join(sorted(known))}"
        )
    try:
        return RecognitionHead(in_channels, **settings)
    except ConfigError as e:
        raise ConfigError(f"model.heads.{name}: {e}") from None


class FashionNet(nn.Module):
    """Backbone -> optional landmark branch -> (fused) features -> any set of heads.

    Args:
        backbone: a registered backbone name (see ``fashionlens.models.list_backbones``).
        heads: head name ("category", "labels", "styles" or "attributes") -> RecognitionHead kwargs
            (``num_classes`` required; ``kind``, ``pool``, ``conv_channels``, ``dropout``,
            ``embed_dim``, ``gcn_hidden``, ``detach``, ``grad_scale``, ``norm``, ``query_init``,
            ``decoder`` optional); an unknown setting or a bad value is a ConfigError naming
            ``model.heads.<name>``.
        landmarks: None for no landmark branch, else ``num_landmarks``, ``num_glem`` (stacked GLEMs),
            ``num_upsample`` (heatmap resolution = feature resolution x 2^num_upsample), ``fuse`` and
            ``channels``: None (the GLEM works at the backbone's width, as in seed A's 512-channel
            conv4) or a width the features are first reduced to by a 1x1 conv-BN-ReLU (a 1280-channel
            EfficientNet map would make each 3x3 GLEM conv 15 M parameters), ``visibility``: also
            predict whether each landmark is visible (a linear layer on the pooled landmark
            features; output ``landmark_visibility``, logits (B, L)), ``stride``: None (the branch
            reads the backbone's last map, as seed A's shared conv4) or a finer stride (e.g. 16) of
            an EfficientNet's intermediate map, for finer landmarks; fused features are then
            average-pooled to the last map's size.
        parsing: None for no parsing head, else ``num_classes`` (the garment groups), ``kind``
            ("lraspp" or "linear"), ``channels`` and ``strides`` (the intermediate maps it reads, coarse
            to fine; [] for the last map only): per-pixel logits, output ``parsing`` (B, K, H/s, W/s).
        backbone_kwargs: passed to the backbone builder (e.g. ``input_size``).
        pretrained: backbone weights: False, True (its default source) or a local file path.
        backbone_module: an already built backbone of that name (saves building it twice).
        tta: "none", or "flip": in eval mode the outputs are the mean logits of each photo and its
            horizontal mirror (2x the compute; training is unchanged). Stored in the spec, so a
            model file, its ONNX export and ``fashionlens evaluate`` all use it.

    Example:
        >>> net = FashionNet("test_tiny", heads={"labels": {"num_classes": 5, "kind": "linear"}})
        >>> net(torch.zeros(2, 3, 32, 32))["labels"].shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        backbone: str,
        heads: dict[str, dict],
        landmarks: dict | None = None,
        backbone_kwargs: dict | None = None,
        pretrained: bool | str = False,
        backbone_module: nn.Module | None = None,
        tta: str = "none",
        parsing: dict | None = None,
    ):
        super().__init__()
        if not heads and not landmarks and parsing is None:
            raise ConfigError("FashionNet needs at least one head, a landmark branch or a parsing head")
        unknown = set(heads) - set(HEAD_NAMES)
        if unknown:
            raise ConfigError(f"unknown head(s) {sorted(unknown)}; heads are {HEAD_NAMES}")
        if tta not in ("none", "flip"):
            raise ConfigError(f"tta must be 'none' or 'flip', got {tta!r}")
        if tta == "flip" and (landmarks or parsing is not None):
            raise ConfigError(
                "tta='flip' is for models without a landmark branch or parsing head (flipped heatmaps "
                "would need left/right swaps)"
            )
        self.tta = tta
        self._spec = {
            "backbone": backbone,
            "backbone_kwargs": dict(backbone_kwargs or {}),
            "heads": copy.deepcopy(heads),
            "landmarks": None if landmarks is None else {**_LANDMARK_DEFAULTS, **landmarks},
        }
        if tta != "none":
            self._spec["tta"] = tta
        if parsing is not None:
            unknown = sorted(set(parsing) - set(PARSING_DEFAULTS))
            if unknown:
                raise ConfigError(
                    f"model.parsing: unknown setting(s) {unknown}; known: {sorted(PARSING_DEFAULTS)}"
                )
            self._spec["parsing"] = {**PARSING_DEFAULTS, **parsing}
        self.backbone = backbone_module or create_backbone(
            backbone, pretrained=pretrained, **self._spec["backbone_kwargs"]
        )
        channels = self.backbone.out_channels
        lm = self._spec["landmarks"]
        self.fuse = bool(lm and lm["fuse"])
        width = channels
        if lm:
            source = self.backbone.tap(lm["stride"]) if lm["stride"] else channels
            width = int(lm["channels"] or source)
            reduce = [conv_bn_relu(source, width, 1)] if lm["channels"] or source != width else []
            self.glem = nn.Sequential(*reduce, *[GLEM(width) for _ in range(lm["num_glem"])])
            self.heatmap_head = HeatmapHead(width, lm["num_landmarks"], lm["num_upsample"])
            if lm["visibility"]:
                self.visibility_head = nn.Linear(width, lm["num_landmarks"])
        head_in = channels + width if self.fuse else channels
        ps = self._spec.get("parsing")
        if ps is not None:
            skip_channels = [self.backbone.tap(int(t)) for t in ps["strides"]]
            self.parsing_head = ParsingHead(
                channels, skip_channels, int(ps["num_classes"]), ps["kind"], int(ps["channels"])
            )
        self.heads = nn.ModuleDict({name: _build_head(name, head_in, kw) for name, kw in heads.items()})

    @property
    def spec(self) -> dict:
        """JSON-serialisable constructor arguments (everything but the weights)."""
        return copy.deepcopy(self._spec)

    @property
    def data_config(self) -> DataConfig:
        return self.backbone.data_config

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.tta == "flip" and not self.training:  # average the logits of the photo and its mirror image
            out = self._forward(torch.cat([x, x.flip(-1)]))
            n = x.shape[0]
            return {k: (v[:n] + v[n:]) / 2 for k, v in out.items()}
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        lm = self._spec["landmarks"]
        ps = self._spec.get("parsing")
        if (lm and lm["stride"]) or (ps and ps["strides"]):
            # (B, C, h, w), {stride t: (B, C_t, H/t, W/t)}
            feats, taps = self.backbone.forward_with_taps(x)
        else:
            feats, taps = self.backbone(x), {}  # (B, C, h, w)
        fine = taps[int(lm["stride"])] if lm and lm["stride"] else feats
        out: dict[str, torch.Tensor] = {}
        if ps is not None:
            out["parsing"] = self.parsing_head(feats, [taps[int(t)] for t in ps["strides"]])  # (B, K, h', w')
        head_in = feats
        if lm:
            context = self.glem(fine)  # (B, C', h', w'), C' = landmarks.channels or the map's
            out["heatmaps"] = self.heatmap_head(context)  # (B, L, h', w')
            if self._spec["landmarks"]["visibility"]:
                out["landmark_visibility"] = self.visibility_head(context.mean(dim=(2, 3)))  # (B, L) logits
            if self.fuse:
                if context.shape[-2:] != feats.shape[-2:]:
                    context = F.adaptive_avg_pool2d(context, feats.shape[-2:])
                head_in = torch.cat([context, feats], dim=1)  # (B, C' + C, h, w)
        for name, head in self.heads.items():
            out[name] = head(head_in)  # (B, num_classes)
        return out


def build_model(spec: dict, pretrained: bool | str = False) -> FashionNet:
    """Rebuild a FashionNet from its ``spec`` (as stored in checkpoints)."""
    return FashionNet(
        backbone=spec["backbone"],
        heads=spec.get("heads", {}),
        landmarks=spec.get("landmarks"),
        backbone_kwargs=spec.get("backbone_kwargs"),
        pretrained=pretrained,
        tta=spec.get("tta", "none"),
        parsing=spec.get("parsing"),
    )
