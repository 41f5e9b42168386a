"""fashionlens: fashion image recognition on PyTorch.

One model family (backbone -> optional landmark branch -> pooled features -> heads) covering
landmark-aware clothing recognition (seed A) and ML-GCN multi-label style recognition (seed B).
"""

__version__ = "0.1.0"
