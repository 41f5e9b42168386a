"""Recognition heads: pooled features -> logits, with a linear or an ML-GCN classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fashionlens.models.glem import conv_bn_relu


class GlobalPool(nn.Module):
    """Adaptive global max or average pooling: any input size, (B, C, H, W) -> (B, C)."""

    def __init__(self, kind: str = "avg"):
        super().__init__()
        if kind not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {kind!r}")
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
        adjacency = torch.eye(num_classes) if adjacency is None else torch.as_tensor(adjacency, dtype=torch.float32)
        embeddings = torch.zeros(num_classes, embed_dim) if embeddings is None else torch.as_tensor(embeddings, dtype=torch.float32)
        if adjacency.shape != (num_classes, num_classes):
            raise ValueError(f"adjacency must be ({num_classes}, {num_classes}), got {tuple(adjacency.shape)}")
        if embeddings.shape != (num_classes, embed_dim):
            raise ValueError(f"embeddings must be ({num_classes}, {embed_dim}), got {tuple(embeddings.shape)}")
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
    """Optional conv block (seed A's per-head conv5-like layers) -> global pool -> classifier.

    Args:
        in_channels: channels of the feature map it reads.
        num_classes: outputs (classes, labels or attributes).
        kind: "linear" (a fully connected layer) or "gcn" (ML-GCN classifiers).
        pool: "avg" or "max".
        conv_channels: 0 for none, else the width of a 3x3 conv-BN-ReLU block before pooling.
        dropout: dropout before the classifier.
        embed_dim, gcn_hidden: for kind="gcn".
        detach: read the features without back-propagating into them (the head learns, the backbone
            is shaped only by the other heads). Same as ``grad_scale=0``.
        grad_scale: multiply the gradient this head sends into the shared features (1: plain
            fine-tuning; 0.1: the head shapes the backbone gently; 0: detached).
        norm: "none" or "layer": LayerNorm on the pooled features before the classifier. The head
            then cannot lower every score at once by shrinking all features, the shortcut a
            multi-label loss with mostly negative labels takes into dead ReLU6 features.
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
    ):
        super().__init__()
        if not 0.0 <= float(grad_scale) <= 1.0:
            raise ValueError(f"head grad_scale must be in [0, 1], got {grad_scale!r}")
        self.grad_scale = 0.0 if detach else float(grad_scale)
        self.conv = conv_bn_relu(in_channels, conv_channels) if conv_channels else nn.Identity()
        features = conv_channels or in_channels
        self.pool = GlobalPool(pool)
        if norm not in ("none", "layer"):
            raise ValueError(f"head norm must be 'none' or 'layer', got {norm!r}")
        self.norm = nn.LayerNorm(features) if norm == "layer" else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if kind == "linear":
            self.classifier: nn.Module = nn.Linear(features, num_classes)
            nn.init.normal_(self.classifier.weight, std=0.01)  # small start: predictions begin at the bias
            nn.init.zeros_(self.classifier.bias)
        elif kind == "gcn":
            if embed_dim <= 0:
                raise ValueError("a gcn head needs embed_dim > 0 (the width of the label embeddings)")
            self.classifier = GCNClassifier(features, num_classes, embed_dim, gcn_hidden)
        else:
            raise ValueError(f"head kind must be 'linear' or 'gcn', got {kind!r}")
        self.kind = kind

    def set_prior(self, frequencies, softmax: bool = False) -> None:
        """Start every output at its training prior: bias = log(p / (1 - p)), or log p for softmax."""
        p = torch.as_tensor(frequencies, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            self.classifier.bias.copy_(torch.log(p) if softmax else torch.log(p / (1 - p)))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D)
        if self.grad_scale == 0.0:
            x = x.detach()
        elif self.grad_scale != 1.0 and x.requires_grad:
            x = _ScaleGrad.apply(x, self.grad_scale)
        return self.dropout(self.norm(self.pool(self.conv(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(self.pooled(x))
