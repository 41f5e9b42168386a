"""tools/garment_pass_levers.py: a garment's mask-pooled vector on hand-made maps, and the size parser."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_tool
from fashionlens.data.transforms import EvalTransform


@pytest.fixture(scope="module")
def tool():
    return load_tool("garment_pass_levers")


class _Backbone:
    def forward_with_taps(self, x):
        assert x.shape == (1, 3, 8, 8)
        feats = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)  # stride 4 here: 2 x 2 cells
        fine = torch.arange(16.0).view(1, 1, 4, 4)  # stride 2: 4 x 4 cells
        return feats, {16: fine}


class _Model:
    backbone = _Backbone()

    @staticmethod
    def glem(x):
        return -x  # the "context": the fine map negated, so its part is told apart


def test_mask_pooled_averages_each_map_over_the_cells_the_mask_covers(tool):
    transform = EvalTransform((8, 8), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="nearest")
    photo = Image.new("RGB", (8, 8))
    left = np.zeros((8, 8), bool)
    left[:, :4] = True  # the left half: cells 1 and 3 of the coarse map, columns 0-1 of the fine one
    corner = np.zeros((8, 8), bool)
    corner[:2, :2] = True  # a quarter of the coarse top-left cell, all of the fine top-left cell
    pooled = tool.mask_pooled(_Model(), transform, photo, [left, corner], (8, 8))
    fine_left = np.mean([0, 1, 4, 5, 8, 9, 12, 13])  # = 6.5
    assert pooled.shape == (2, 3)
    assert pooled[0].tolist() == pytest.approx([2.0, fine_left, -fine_left])
    assert pooled[1].tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_parse_size():
    tool = load_tool("garment_pass_levers")
    assert tool.parse_size("384x288") == (384, 288)
    assert tool.parse_size("256X192") == (256, 192)
    with pytest.raises(ValueError):
        tool.parse_size("256")
