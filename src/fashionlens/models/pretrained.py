"""Where pretrained weights come from: offline packages, local files, or the hub when online.

Offline (``HF_HUB_OFFLINE=1`` or no route to the hub) a hub request fails at once with a message
that says what to pass instead, rather than retrying for most of a minute.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import nn

from fashionlens.errors import FashionlensError, InputNotFoundError


class PretrainedWeightsUnavailable(FashionlensError, RuntimeError):
    """Pretrained weights were asked for but cannot be had here."""


class PretrainedWeightsError(FashionlensError, ValueError):
    """A weights file (``model.pretrained``) that cannot be read or does not fit the backbone."""


def hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    """True when the model hub can be reached (and offline mode is not forced)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def require_hub(backbone: str) -> None:
    """Raise a clear error unless hub weights can be downloaded now."""
    if not hub_reachable():
        raise PretrainedWeightsUnavailable(
            f"pretrained weights for {backbone!r} come from the model hub, which is unreachable "
            "(offline or HF_HUB_OFFLINE=1). Pass a local weights file instead, e.g. "
            f"model.pretrained=/path/to/{backbone}.pth (or .safetensors), or pretrained=false."
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file (.safetensors, or .pth/.pt/.bin loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"pretrained weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors and torch.load raise their own types for a corrupt file
        raise PretrainedWeightsError(
            f"{path}: not a readable weights file ({type(e).__name__}: {e})"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise PretrainedWeightsError(
            f"{path}: expected a state dict (name -> tensor), got {type(sd).__name__}"
        )
    return sd


def load_matching(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> int:
    """Load every tensor whose name (after stripping common prefixes) and shape match.

    Returns the number of tensors loaded; raises if none of the module's tensors were found.
    """
    own = module.state_dict()
    loaded = {}
    for key, value in state_dict.items():
        for prefix in ("", "module.", "model.", "backbone.", "features."):
            name = key[len(prefix) :] if key.startswith(prefix) else None
            if name is not None and name in own and own[name].shape == value.shape:
                loaded[name] = value
                break
    if not loaded:
        raise PretrainedWeightsError(
            f"{source}: none of its {len(state_dict)} tensors match this backbone's parameters"
        )
    module.load_state_dict(loaded, strict=False)
    return len(loaded)
