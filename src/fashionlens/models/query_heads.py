"""Label-query heads on the spatial feature map: ML-Decoder and Query2Label.

Both read the backbone's map (B, D, H, W) as H*W tokens (any backbone, any input size) and let a
set of queries attend to them:

* :class:`MLDecoderClassifier` (Ridnik et al., "ML-Decoder", WACV 2023): tokens -> Linear + ReLU to
  the decoder width; K = min(100, C) *fixed* queries; one decoder layer with cross-attention only
  (no self-attention); "group fully-connected" output: query k scores its own group of
  ceil(C / K) labels.
* :class:`Query2LabelClassifier` (Liu et al., "Query2Label", 2021): tokens -> Linear to the width
  (+ a 2-D sine positional encoding), an optional transformer encoder, a small transformer decoder
  (self-attention between label queries, cross-attention to the tokens); one *learned* query per
  label, each output scored by its own linear classifier.

Either may take its queries from the label word embeddings (``load_label_embeddings``). Every
classifier has a per-label ``bias`` so :meth:`RecognitionHead.set_prior` can start it at the label
priors, and starts its label weights small so the first predictions are those priors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fashionlens.errors import ConfigError

MLDECODER_DEFAULTS = {"width": 768, "num_heads": 8, "ffn": 2048, "dropout": 0.1, "num_queries": 100}
QUERY2LABEL_DEFAULTS = {"width": 256, "num_heads": 4, "ffn": 1024, "dropout": 0.1, "encoder_layers": 1,
                        "decoder_layers": 2}


def tokens_of(x: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) feature map -> (B, H*W, D) tokens, row-major (row 0 first)."""
    return x.flatten(2).transpose(1, 2)


def sine_position_encoding(height: int, width: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised 2-D sine encoding: (H*W, dim), the first dim/2 channels for y, the rest for x.

    Row i has ``y = 2 pi (i + 1) / H`` (columns likewise), channel pair j of each half holds
    ``sin(y / T^(2j / (dim/2)))`` and ``cos(...)`` of the same angle. Defined for any H, W, so the
    head works at any input size.
    """
    if dim % 4:
        raise ConfigError(f"the positional encoding needs a width divisible by 4, got {dim}")
    half = dim // 2
    y = (torch.arange(height, dtype=torch.float32) + 1) / height * 2 * math.pi  # (H,)
    x = (torch.arange(width, dtype=torch.float32) + 1) / width * 2 * math.pi  # (W,)
    freq = temperature ** (2 * torch.arange(half // 2, dtype=torch.float32) / half)  # (half/2,)

    def encode(angle: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, half), sin/cos interleaved
        a = angle[:, None] / freq[None, :]
        return torch.stack([a.sin(), a.cos()], dim=-1).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, half)
    pos_x = encode(x)[None, :, :].expand(height, width, half)
    return torch.cat([pos_y, pos_x], dim=-1).reshape(height * width, dim)


class CrossAttentionLayer(nn.Module):
    """ML-Decoder's decoder layer: no self-attention, cross-attention to the tokens, then an FFN.

    Post-norm as in the reference implementation, which keeps the self-attention slot's residual
    and LayerNorm (``q = LN(q + dropout(q))``) though the attention itself is removed.
    """

    def __init__(self, width: int, num_heads: int, ffn: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(width, ffn)
        self.linear2 = nn.Linear(ffn, width)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.dropout1, self.dropout2, self.dropout3 = (
            nn.Dropout(dropout),
            nn.Dropout(dropout),
            nn.Dropout(dropout),
        )

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:  # (B, K, d), (B, N, d)
        q = self.norm1(queries + self.dropout1(queries))
        attended = self.attn(q, tokens, tokens, need_weights=False)[0]  # (B, K, d)
        q = self.norm2(q + self.dropout2(attended))
        q = self.norm3(q + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(q))))))
        return q


class MLDecoderClassifier(nn.Module):
    """ML-Decoder: K fixed queries cross-attend to the spatial tokens; group FC scores C labels.

    Args:
        in_features: channels D of the feature map.
        num_classes: labels C.
        width: decoder width (tokens are projected to it by Linear + ReLU).
        num_heads: attention heads (``width`` must be divisible by it).
        ffn: hidden width of the feed-forward block.
        dropout: dropout inside the decoder layer.
        num_queries: K is ``min(num_queries, C)``; each query scores ``ceil(C / K)`` labels.
        embed_dim: 0 for fixed random queries (the paper's default); > 0 to take one query per label
            from the label word embeddings (a buffer of shape (C, embed_dim), filled by
            :meth:`load_label_embeddings`) through a learned Linear + ReLU, the paper's zero-shot
            form; K is then C.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        width: int = 768,
        num_heads: int = 8,
        ffn: int = 2048,
        dropout: float = 0.1,
        num_queries: int = 100,
        embed_dim: int = 0,
    ):
        super().__init__()
        if num_queries < 1:
            raise ConfigError(f"mldecoder num_queries must be >= 1, got {num_queries}")
        self.num_classes = num_classes
        self.num_queries = num_classes if embed_dim > 0 else min(int(num_queries), num_classes)
        self.group_size = math.ceil(num_classes / self.num_queries)
        self.embed = nn.Linear(in_features, width)
        if embed_dim > 0:
            self.register_buffer("embeddings", torch.zeros(num_classes, embed_dim))
            self.query_proj: nn.Module | None = nn.Linear(embed_dim, width)
        else:
            # fixed, not learned (ML-Decoder's non-learnable queries); a buffer, so saved with the model
            self.register_buffer("queries", torch.randn(self.num_queries, width))
            self.query_proj = None
        self.layer = CrossAttentionLayer(width, num_heads, ffn, dropout)
        # group FC: query k has its own (width x group_size) weights; small start (predictions = priors)
        self.group_weight = nn.Parameter(torch.randn(self.num_queries, width, self.group_size) * 0.01)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def load_label_embeddings(self, embeddings) -> None:
        """Set the (C, embed_dim) label word embeddings the queries are made from."""
        if self.query_proj is None:
            raise ValueError("this mldecoder head uses fixed random queries (no embed_dim)")
        self.embeddings.copy_(torch.as_tensor(embeddings, dtype=torch.float32))

    def query_matrix(self) -> torch.Tensor:  # (K, width)
        if self.query_proj is None:
            return self.queries
        return F.relu(self.query_proj(self.embeddings))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, H, W) -> (B, C)
        tokens = F.relu(self.embed(tokens_of(x)))  # (B, H*W, width)
        queries = self.query_matrix().unsqueeze(0).expand(x.shape[0], -1, -1)  # (B, K, width)
        h = self.layer(queries, tokens)  # (B, K, width)
        out = torch.einsum("bkd,kdg->bkg", h, self.group_weight).flatten(1)  # (B, K * group_size)
        return out[:, : self.num_classes] + self.bias


class Query2LabelClassifier(nn.Module):
    """Query2Label: one learned query per label through a small transformer decoder.

    Tokens are projected to ``width`` (a 1x1 convolution) and get a 2-D sine positional encoding
    (added once to the tokens, where the reference adds it inside every attention); an optional
    encoder refines them; the decoder's layers (PyTorch's post-norm ``TransformerDecoderLayer``:
    self-attention between the label queries, cross-attention to the tokens, FFN) turn the C queries
    into C label features, and label c is scored by its own classifier ``w_c . h_c + b_c``.

    Args:
        in_features: channels D of the feature map.
        num_classes: labels C (= queries).
        width: model width (divisible by 4 for the positional encoding, and by ``num_heads``).
        num_heads, ffn, dropout: of every transformer layer.
        encoder_layers: transformer encoder layers over the tokens (0 for none).
        decoder_layers: transformer decoder layers.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        width: int = 256,
        num_heads: int = 4,
        ffn: int = 1024,
        dropout: float = 0.1,
        encoder_layers: int = 1,
        decoder_layers: int = 2,
    ):
        super().__init__()
        if decoder_layers < 1 or encoder_layers < 0:
            raise ConfigError(
                f"query2label needs decoder_layers >= 1 and encoder_layers >= 0, got {decoder_layers}, "
                f"{encoder_layers}"
            )
        if width % 4:
            raise ConfigError(f"query2label width must be divisible by 4 (2-D sine encoding), got {width}")
        self.width = width
        self.input_proj = nn.Linear(in_features, width)
        layer = dict(d_model=width, nhead=num_heads, dim_feedforward=ffn, dropout=dropout, batch_first=True)
        # enable_nested_tensor=False: the nested-tensor fast path is for padded batches; ours are dense
        self.encoder = (
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(**layer), encoder_layers, enable_nested_tensor=False
            )
            if encoder_layers
            else None
        )
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), decoder_layers)
        self.queries = nn.Parameter(torch.randn(num_classes, width))  # nn.Embedding's N(0, 1) start
        # small start: predictions = priors
        self.weight = nn.Parameter(torch.randn(num_classes, width) * 0.01)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    @torch.no_grad()
    def load_label_embeddings(self, embeddings, seed: int = 0) -> None:
        """Start the queries from the (C, e) label word embeddings.

        A fixed random Gaussian projection e -> width keeps the embeddings' geometry (angles and
        relative distances, approximately); the result is standardised to the N(0, 1) scale of the
        default start. The queries stay trainable.
        """
        emb = torch.as_tensor(embeddings, dtype=torch.float32)  # (C, e)
        if emb.shape[0] != self.queries.shape[0]:
            raise ValueError(f"expected {self.queries.shape[0]} label embeddings, got {emb.shape[0]}")
        proj = torch.randn(emb.shape[1], self.width, generator=torch.Generator().manual_seed(seed))
        q = emb @ proj  # (C, width)
        self.queries.copy_((q - q.mean()) / q.std().clamp_min(1e-8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, H, W) -> (B, C)
        b, _, height, width = x.shape
        pos = sine_position_encoding(height, width, self.width).to(device=x.device, dtype=x.dtype)
        memory = self.input_proj(tokens_of(x)) + pos  # (B, H*W, width)
        if self.encoder is not None:
            memory = self.encoder(memory)
        h = self.decoder(self.queries.unsqueeze(0).expand(b, -1, -1), memory)  # (B, C, width)
        return (h * self.weight).sum(-1) + self.bias
