"""The fashionlens model family: backbones registry, FashionNet, heads, GLEM."""

from fashionlens.models import backbones as _backbones  # noqa: F401  (registers the backbones)
from fashionlens.models.fashion_net import HEAD_NAMES, FashionNet, build_model
from fashionlens.models.glem import GLEM, HeatmapHead, NonLocalBlock, heatmaps_to_landmarks
from fashionlens.models.heads import GCNClassifier, GlobalPool, RecognitionHead
from fashionlens.models.pretrained import PretrainedWeightsUnavailable
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
    "GlobalPool",
    "RecognitionHead",
    "PretrainedWeightsUnavailable",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
