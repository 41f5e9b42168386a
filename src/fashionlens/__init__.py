"""fashionlens: fashion image recognition on PyTorch.

One model family (backbone -> optional landmark branch -> pooled features -> heads) covering
landmark-aware clothing recognition (seed A) and ML-GCN multi-label style recognition (seed B).
"""

from fashionlens.errors import FashionlensError

__all__ = ["FashionlensError", "load_model"]
__version__ = "0.1.0"


def load_model(
    name_or_path="fashionlens-lite",
    device: str = "cpu",
    batch_size: int = 32,
    backend: str = "auto",
    threads: int | None = None,
):
    """Load a shipped model by name, or a model file, into a :class:`~fashionlens.inference.Predictor`.

    :func:`fashionlens.inference.predictor.load_model`, imported on first use (``import fashionlens``
    stays light); its arguments, the same signature (a test holds the two together).
    """
    from fashionlens.inference.predictor import load_model as _load

    return _load(name_or_path, device=device, batch_size=batch_size, backend=backend, threads=threads)
