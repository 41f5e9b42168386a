"""The fashionlens model family: backbones registry, FashionNet, heads, GLEM."""

from fashionlens.models import backbones as _backbones  # noqa: F401  (registers the backbones)
from fashionlens.models.fashion_net import HEAD_NAMES, FashionNet, build_model
from fashionlens.models.glem import GLEM, HeatmapHead, NonLocalBlock, heatmaps_to_landmarks
from fashionlens.models.heads import HEAD_KINDS, GCNClassifier, GlobalPool, RecognitionHead
from fashionlens.models.pretrained import PretrainedWeightsUnavailable
from fashionlens.models.query_heads import MLDecoderClassifier, Query2LabelClassifier
from fashionlens.models.registry import create_backbone, list_backbones, register_backbone

__all__ = [
    "HEAD_NAMES",
    "FashionNet",
    "build_model",
    "GLEM",
    "HeatmapHead",
    "NonLocalBlock",
    "heatmaps_to_landmarks",
    "GCNClassifier",
    "HEAD_KINDS",
    "MLDecoderClassifier",
    "Query2LabelClassifier",
    "GlobalPool",
    "RecognitionHead",
    "PretrainedWeightsUnavailable",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
