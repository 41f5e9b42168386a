"""Loss terms against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from fashionlens.losses import compute_losses


def test_category_label_smoothing_matches_the_hand_worked_value():
    # logits (2, 0), target 0, smoothing 0.2 -> target distribution (0.9, 0.1)
    lse = math.log(math.exp(2.0) + 1.0)
    expected = -(0.9 * (2.0 - lse) + 0.1 * (0.0 - lse))
    out = {"category": torch.tensor([[2.0, 0.0]])}
    batch = {"category": torch.tensor([0])}
    assert compute_losses(out, batch, label_smoothing=0.2)["category"].item() == pytest.approx(expected, abs=1e-6)
    assert compute_losses(out, batch)["category"].item() == pytest.approx(lse - 2.0, abs=1e-6)
