"""Seed A's landmark branch: the Global-Local Embedding Module (GLEM) and the heatmap head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias, "same" padding) -> BatchNorm -> ReLU: the one conv-BN-ReLU of the model family.

    Used by the GLEM, the heatmap head, heads and backbones; a backbone that needs the three layers
    flat in its own ``nn.Sequential`` (state-dict names ``body.0``, ``body.1``, ...) unpacks it
    with ``*conv_bn_relu(...)``.
    """
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block with a residual connection (Wang et al., 2018).

    theta/phi/g are 1x1 convs to C/2 channels; attention = softmax(theta^T phi) over positions;
    the output 1x1 conv + BatchNorm is added to the input. The BatchNorm's scale starts at zero,
    so the block starts as the identity and learns how much global context to add.
    """

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        inner = max(channels // reduction, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        phi = self.phi(x).flatten(2)  # (B, C', HW)
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        attn = torch.softmax(theta @ phi, dim=-1)  # (B, HW, HW)
        y = (attn @ g).transpose(1, 2).reshape(b, -1, h, w)  # (B, C', H, W)
        return x + self.bn(self.out(y))


class GLEM(nn.Module):
    """Global-Local Embedding Module: non-local block, then two 3x3 conv-BN-ReLU in sequence.

    Unlike the public GLE code, the convolutions read the non-local block's output (not its input),
    so the global context actually reaches the landmark features.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.non_local = NonLocalBlock(channels)
        self.conv1 = conv_bn_relu(channels, channels)
        self.conv2 = conv_bn_relu(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        x = self.non_local(x)
        x = self.conv1(x)
        return self.conv2(x)


class HeatmapHead(nn.Module):
    """Landmark heatmaps: 1x1 conv to 64, 3x3 convs, transposed convs (x2 each), 1x1 to L maps."""

    def __init__(self, in_channels: int, num_landmarks: int = 8, num_upsample: int = 1, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = [
            conv_bn_relu(in_channels, width, 1),
            conv_bn_relu(width, width),
            conv_bn_relu(width, width),
        ]
        for _ in range(num_upsample):
            layers += [
                nn.ConvTranspose2d(width, width, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(width, num_landmarks, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, L, h * 2^up, w * 2^up)
        return self.net(x)


def heatmaps_to_landmarks(heatmaps: torch.Tensor) -> torch.Tensor:
    """Landmark coordinates normalised to [0, 1] from heatmaps (B, L, h, w) -> (B, L, 2) as (x, y).

    Argmax with a quarter-pixel shift towards the higher neighbour (the usual sub-pixel refinement),
    measured at pixel centres: column j maps to (j + 0.5) / w.
    """
    b, num, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, num, -1)
    idx = flat.argmax(-1)  # (B, L)
    ys, xs = (idx // w).float(), (idx % w).float()
    padded = F.pad(heatmaps, (1, 1, 1, 1), mode="replicate")
    bi = torch.arange(b, device=heatmaps.device)[:, None].expand(b, num)
    li = torch.arange(num, device=heatmaps.device)[None, :].expand(b, num)
    yi, xi = ys.long() + 1, xs.long() + 1
    dx = padded[bi, li, yi, xi + 1] - padded[bi, li, yi, xi - 1]
    dy = padded[bi, li, yi + 1, xi] - padded[bi, li, yi - 1, xi]
    # no refinement on the border, where one neighbour does not exist
    dx = torch.where((xs > 0) & (xs < w - 1), dx, torch.zeros_like(dx))
    dy = torch.where((ys > 0) & (ys < h - 1), dy, torch.zeros_like(dy))
    xs = xs + 0.25 * torch.sign(dx)
    ys = ys + 0.25 * torch.sign(dy)
    return torch.stack([(xs + 0.5) / w, (ys + 0.5) / h], dim=-1)
