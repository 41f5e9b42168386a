"""The parsing head: per-pixel garment groups from the backbone's stride-32, -16 and -8 maps.

``kind: lraspp`` (the default), after LR-ASPP (Howard et al., "Searching for MobileNetV3", 2019) with
one more skip::

    last map (B, C32, h, w) -> 1x1 conv-BN-ReLU -> (B, D, h, w) x sigmoid(1x1 conv(global mean))  [the gate]
        -> x2 up + 1x1 conv-BN-ReLU(stride-16 map) -> 3x3 conv-BN-ReLU          (B, D, 2h, 2w)
        -> x2 up + 1x1 conv-BN-ReLU(stride-8 map)  -> 3x3 conv-BN-ReLU -> 1x1   (B, K, 4h, 4w) logits

``kind: linear``: the frozen-feature probe, one 1x1 conv over the maps upsampled to the finest one
and concatenated (no hidden layer, no normalisation).

With ``strides: []`` (a backbone without intermediate maps, e.g. ``test_tiny``) only the last map is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fashionlens.errors import ConfigError
from fashionlens.models.glem import conv_bn_relu

PARSING_DEFAULTS = {"num_classes": 17, "kind": "lraspp", "channels": 96, "strides": [16, 8]}
PARSING_KINDS = ("lraspp", "linear")


class ParsingHead(nn.Module):
    """Per-pixel logits (B, K, H/s, W/s) at the finest tapped stride ``s`` (the last map's without taps).

    Args:
        last_channels: channels of the backbone's last map.
        skip_channels: channels of each tapped map, coarse to fine (e.g. stride 16 then 8).
        num_classes: the groups (``fashionlens.garments.groups.GROUP_NAMES``).
        kind: "lraspp" or "linear" (see the module docstring).
        channels: the decoder's width (lraspp).
    """

    def __init__(self, last_channels: int, skip_channels: list[int], num_classes: int, kind: str = "lraspp",
                 channels: int = 96):
        super().__init__()
        if kind not in PARSING_KINDS:
            raise ConfigError(f"model.parsing.kind must be one of {PARSING_KINDS}, got {kind!r}")
        self.kind = kind
        if kind == "linear":
            self.classifier = nn.Conv2d(last_channels + sum(skip_channels), num_classes, 1)
            return
        self.reduce = conv_bn_relu(last_channels, channels, 1)
        self.gate = nn.Conv2d(last_channels, channels, 1)
        self.skips = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in skip_channels)
        self.refine = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in skip_channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, last: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        if self.kind == "linear":
            size = skips[-1].shape[-2:] if skips else last.shape[-2:]
            maps = [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in (last, *skips)]
            return self.classifier(torch.cat(maps, dim=1))
        x = self.reduce(last) * torch.sigmoid(self.gate(last.mean(dim=(2, 3), keepdim=True)))
        for skip, project, refine in zip(skips, self.skips, self.refine, strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = refine(x + project(skip))
        return self.classifier(x)
