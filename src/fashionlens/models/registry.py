"""One registry of backbones and one factory, in the manner of timm's ``create_model``.

Every backbone is a nn.Module that maps images (B, 3, H, W) to a feature map (B, C, H/s, W/s) and
exposes ``out_channels`` (C), ``stride`` (s) and ``data_config`` (input size, mean/std). Variants are
registered by small builder functions; tiny ``test_*`` variants are registered beside the real ones.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fashionlens.errors import FashionlensError

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


class UnknownBackboneError(FashionlensError, KeyError):
    """A backbone name that is not registered (a KeyError, as a missing registry key)."""

    __str__ = Exception.__str__  # the message itself, not KeyError's quoted repr of it


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its function name."""
    if fn.__name__ in _BACKBONES:
        raise ValueError(f"backbone {fn.__name__!r} is registered twice")
    _BACKBONES[fn.__name__] = fn
    return fn


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    return sorted(_BACKBONES)


def create_backbone(name: str, pretrained: bool | str = False, **kwargs) -> nn.Module:
    """Build a registered backbone.

    Args:
        name: a name from :func:`list_backbones`.
        pretrained: False (random init), True (the default weights for this backbone: offline
            package weights where they exist, else the hub), or a path to a local weights file.
        **kwargs: passed to the backbone's builder.

    Example:
        >>> bb = create_backbone("test_tiny")
        >>> bb.out_channels, bb.stride
        (32, 4)
    """
    if name not in _BACKBONES:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; registered backbones: {', '.join(list_backbones())}"
        )
    return _BACKBONES[name](pretrained=pretrained, **kwargs)
