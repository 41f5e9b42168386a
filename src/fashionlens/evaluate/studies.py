"""Shared pieces of the study tools (``tools/style_study.py``, ``tools/garment_study.py``) and the probe
that feeds them (``bench/linear_probe.py``): run folder names and the attribute score files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def run_name(path: str | Path) -> tuple[str, int]:
    """``runs/x/mlgcn-s2/model.safetensors`` -> ``("mlgcn", 2)``: a study's run folders are ``ROW-sSEED``."""
    path = Path(path)
    row, _, seed = path.parent.name.rpartition("-s")
    if not row or not seed.isdigit():
        raise SystemExit(f"error: {path}: its folder should be named ROW-sSEED (e.g. ours-s0)")
    return row, int(seed)


def save_attribute_scores(
    out: str | Path, scores, positive, known, paths: Sequence[str], names: Sequence[str], groups
) -> None:
    """One scored run as ``tools/garment_study.py table`` reads it: ``scores``, ``positive``, ``known``
    (N, A), ``paths`` (N,), ``names``, ``groups`` (A,); crops sorted by path, so rows pair crop by crop."""
    order = np.argsort(np.asarray(paths, dtype=str))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        scores=np.asarray(scores, dtype=np.float64)[order],
        positive=np.asarray(positive, dtype=bool)[order],
        known=np.asarray(known, dtype=bool)[order],
        paths=np.asarray(paths, dtype=str)[order],
        names=np.asarray(names, dtype=str),
        groups=np.asarray(groups, dtype=np.int64),
    )
