"""Recognition heads: feature map -> logits.

``linear`` and ``gcn`` (ML-GCN) classify globally pooled features; ``mldecoder`` and
``query2label`` (see :mod:`fashionlens.models.query_heads`) read the spatial map itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fashionlens.errors import ConfigError
from fashionlens.models.glem import conv_bn_relu
from fashionlens.models.query_heads import (
    MLDECODER_DEFAULTS,
    QUERY2LABEL_DEFAULTS,
    MLDecoderClassifier,
    Query2LabelClassifier,
)

HEAD_KINDS = ("linear", "gcn", "mldecoder", "query2label")
SPATIAL_KINDS = ("mldecoder", "query2label")  # heads that read the map, not pooled features
QUERY_INITS = ("random", "embeddings")


class GlobalPool(nn.Module):
    """Adaptive global max or average pooling: any input size, (B, C, H, W) -> (B, C)."""

    def __init__(self, kind: str = "avg"):
        super().__init__()
        if kind not in ("avg", "max"):
            raise ConfigError(f"pool must be 'avg' or 'max', got {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return torch.amax(x, dim=(2, 3))
        return x.mean(dim=(2, 3))


class GraphConvolution(nn.Module):
    """One graph convolution ``H' = A H W`` over a fixed, normalised adjacency A."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        bound = 1.0 / out_features**0.5
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:  # (C, Din) -> (C, Dout)
        return adjacency @ (h @ self.weight)


class GCNClassifier(nn.Module):
    """ML-GCN: a 2-layer GCN over the label graph turns label word embeddings into classifiers.

    ``logits = x @ W_gcn^T`` with ``W_gcn = A LeakyReLU(A E W1) W2`` (C x D). The normalised
    adjacency A (C x C) and the embeddings E (C x d) are buffers: saved with the model, not trained.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        embed_dim: int,
        hidden: int = 1024,
        adjacency: torch.Tensor | None = None,
        embeddings: torch.Tensor | None = None,
    ):
        super().__init__()
        adjacency = (
            torch.eye(num_classes) if adjacency is None else torch.as_tensor(adjacency, dtype=torch.float32)
        )
        embeddings = (
            torch.zeros(num_classes, embed_dim)
            if embeddings is None
            else torch.as_tensor(embeddings, dtype=torch.float32)
        )
        if adjacency.shape != (num_classes, num_classes):
            raise ValueError(
                f"adjacency must be ({num_classes}, {num_classes}), got {tuple(adjacency.shape)}"
            )
        if embeddings.shape != (num_classes, embed_dim):
            raise ValueError(
                f"embeddings must be ({num_classes}, {embed_dim}), got {tuple(embeddings.shape)}"
            )
        self.register_buffer("adjacency", adjacency)
        self.register_buffer("embeddings", embeddings)
        self.gc1 = GraphConvolution(embed_dim, hidden)
        self.gc2 = GraphConvolution(hidden, in_features)
        # ML-GCN's init gives logits with a standard deviation of several units on max-pooled
        # features, which saturates the sigmoid and wrecks a pretrained backbone in the first steps;
        # start the label classifiers small instead (the GCN still learns their scale).
        self.gc2.weight.data.mul_(0.1)
        # A per-label bias (not in ML-GCN) lets the head start at the label priors (set_prior).
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def label_classifiers(self) -> torch.Tensor:  # (C, D)
        h = F.leaky_relu(self.gc1(self.embeddings, self.adjacency), 0.2)
        return self.gc2(h, self.adjacency)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C)
        return x @ self.label_classifiers().t() + self.bias

    def load_label_embeddings(self, embeddings, adjacency=None) -> None:
        """Set the (C, d) word embeddings and, when given, the (C, C) normalised adjacency."""
        self.embeddings.copy_(torch.as_tensor(embeddings, dtype=torch.float32))
        if adjacency is not None:
            self.adjacency.copy_(torch.as_tensor(adjacency, dtype=torch.float32))


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the gradient by a constant."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class RecognitionHead(nn.Module):
    """Optional conv block (seed A's per-head conv5-like layers) -> classifier.

    ``linear`` and ``gcn`` classify globally pooled features; ``mldecoder`` and ``query2label``
    receive the whole (B, C, H, W) map (after the conv block), so every kind works on any backbone
    at any input size.

    Args:
        in_channels: channels of the feature map it reads.
        num_classes: outputs (classes, labels or attributes).
        kind: "linear" (a fully connected layer), "gcn" (ML-GCN classifiers), "mldecoder"
            (ML-Decoder) or "query2label" (Query2Label).
        pool: "avg" or "max" (linear and gcn).
        conv_channels: 0 for none, else the width of a 3x3 conv-BN-ReLU block before the classifier.
        dropout: dropout before the classifier (linear and gcn; the query heads take
            ``decoder.dropout``).
        embed_dim: width of the label word embeddings: required for kind="gcn", and for the query
            heads with ``query_init="embeddings"``.
        gcn_hidden: for kind="gcn".
        detach: read the features without back-propagating into them (the head learns, the backbone
            is shaped only by the other heads). Same as ``grad_scale=0``.
        grad_scale: multiply the gradient this head sends into the shared features (1: plain
            fine-tuning; 0.1: the head shapes the backbone gently; 0: detached).
        norm: "none" or "layer": LayerNorm on the pooled features before the classifier (linear and
            gcn). The head then cannot lower every score at once by shrinking all features, the
            shortcut a multi-label loss with mostly negative labels takes into dead ReLU6 features.
        query_init: "random" or "embeddings": where the query heads' queries come from.
        decoder: settings of the query heads, over ``MLDECODER_DEFAULTS`` / ``QUERY2LABEL_DEFAULTS``
            (width, num_heads, ffn, dropout; mldecoder: num_queries; query2label: encoder_layers,
            decoder_layers).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        kind: str = "linear",
        pool: str = "avg",
        conv_channels: int = 0,
        dropout: float = 0.0,
        embed_dim: int = 0,
        gcn_hidden: int = 1024,
        detach: bool = False,
        grad_scale: float = 1.0,
        norm: str = "none",
        query_init: str = "random",
        decoder: dict | None = None,
    ):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ConfigError(f"head kind must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")
        if not 0.0 <= float(grad_scale) <= 1.0:
            raise ConfigError(f"head grad_scale must be in [0, 1], got {grad_scale!r}")
        if norm not in ("none", "layer"):
            raise ConfigError(f"head norm must be 'none' or 'layer', got {norm!r}")
        if query_init not in QUERY_INITS:
            raise ConfigError(f"head query_init must be one of {', '.join(QUERY_INITS)}, got {query_init!r}")
        self.kind = kind
        self.spatial = kind in SPATIAL_KINDS
        if not self.spatial and (decoder or query_init != "random"):
            raise ConfigError(
                f"decoder / query_init are settings of the mldecoder and query2label heads, not of {kind!r}"
            )
        if self.spatial and norm != "none":
            raise ConfigError(
                "norm applies to pooled features; the mldecoder and query2label heads have their own "
                "LayerNorms"
            )
        self.grad_scale = 0.0 if detach else float(grad_scale)
        self.conv = conv_bn_relu(in_channels, conv_channels) if conv_channels else nn.Identity()
        features = conv_channels or in_channels
        self.pool = GlobalPool(pool)
        self.norm = nn.LayerNorm(features) if norm == "layer" else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = _make_classifier(
            kind, features, num_classes, embed_dim, gcn_hidden, query_init, decoder or {}
        )

    def set_prior(self, frequencies, softmax: bool = False) -> None:
        """Start every output at its training prior: bias = log(p / (1 - p)), or log p for softmax."""
        p = torch.as_tensor(frequencies, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            self.classifier.bias.copy_(torch.log(p) if softmax else torch.log(p / (1 - p)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the classifier reads: pooled features (B, D), or the map (B, D, H, W) for query heads."""
        if self.grad_scale == 0.0:
            x = x.detach()
        elif self.grad_scale != 1.0 and x.requires_grad:
            x = _ScaleGrad.apply(x, self.grad_scale)
        x = self.conv(x)
        if self.spatial:
            return x
        return self.dropout(self.norm(self.pool(x)))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D)
        """Globally pooled features (linear and gcn heads)."""
        if self.spatial:
            raise ValueError(f"a {self.kind} head reads the spatial map, not pooled features")
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(self.features(x))


def _make_classifier(
    kind: str,
    features: int,
    num_classes: int,
    embed_dim: int,
    gcn_hidden: int,
    query_init: str,
    decoder: dict,
) -> nn.Module:
    if kind == "linear":
        linear = nn.Linear(features, num_classes)
        nn.init.normal_(linear.weight, std=0.01)  # small start: predictions begin at the bias
        nn.init.zeros_(linear.bias)
        return linear
    if kind == "gcn" or query_init == "embeddings":
        if embed_dim <= 0:
            raise ValueError(
                f"a {kind} head {'with query_init: embeddings ' if kind != 'gcn' else ''}needs "
                "embed_dim > 0 (the width of the label embeddings)"
            )
    if kind == "gcn":
        return GCNClassifier(features, num_classes, embed_dim, gcn_hidden)
    defaults = MLDECODER_DEFAULTS if kind == "mldecoder" else QUERY2LABEL_DEFAULTS
    unknown = set(decoder) - set(defaults)
    if unknown:
        raise ConfigError(
            f"unknown {kind} decoder setting(s) {sorted(unknown)}; known: {', '.join(sorted(defaults))}"
        )
    kw = {**defaults, **decoder}
    if kind == "mldecoder":
        return MLDecoderClassifier(
            features, num_classes, embed_dim=embed_dim if query_init == "embeddings" else 0, **kw
        )
    return Query2LabelClassifier(features, num_classes, **kw)
