"""From the parsing head's logits of one photo to its garments in photo pixels.

    logits (K, h, w) at stride 8 of the network input
        -> bilinear x4 (a half of the input's size) -> softmax -> the group of each pixel and its probability
        -> the photo's part of the input (letterbox padding cut off)
        -> garments (``garments_from_labels``: regions, fragments dropped, a pair of shoes one garment)
        -> each garment's mask and box scaled to the photo (nearest neighbour)

Instances are found at the half-input resolution (192 x 144 for a 384 x 288 input) and only each garment's
mask is brought to the photo's size: a 17-class softmax at the photo's own resolution would cost ~100x more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fashionlens.data.config import DataConfig
from fashionlens.data.transforms import letterbox_box
from fashionlens.garments.groups import GARMENT_RULE
from fashionlens.garments.instances import Garment, garments_from_labels

# which of the category head's classes (clothing-dataset's 17) a garment of each group may be
GROUP_CATEGORIES: dict[str, tuple[str, ...]] = {
    "upper": ("blouse", "body", "hoodie", "longsleeve", "polo", "shirt", "t-shirt", "top", "undershirt"),
    "outer": ("blazer", "hoodie", "outwear"),
    "dress": ("dress",),
    "skirt": ("skirt",),
    "pants": ("pants",),
    "shorts": ("shorts",),
    "shoes": ("shoes",),
    "hat": ("hat",),
}
DECODE_SCALE = 4  # the label map is found at 4x the logits' resolution (stride 2 of the input)
# which garments are returned: mean group probability >= 0.4 and >= 1 % of the photo. Chosen on CCP's 78
# validation photos (tools/garment_eval.py --sweep): against returning every garment of the rule, recall
# 0.757 either way, precision 0.642 -> 0.710 (docs/garments.md)
RETURN_MIN_SCORE = 0.4
RETURN_MIN_FRACTION = 0.01


@dataclass
class PhotoGarment:
    """A garment in photo pixels: its group, mean probability, box (x0, y0, x1, y1; x1, y1 exclusive) and
    (H, W) bool mask over the upright photo."""

    label: str
    score: float
    box: tuple[int, int, int, int]
    mask: np.ndarray
    fraction: float  # of the photo's pixels
    small_mask: np.ndarray | None = None  # the same garment on the (h, w) map it was found on (colours)


def photo_garments(
    logits: np.ndarray,
    photo_size: tuple[int, int],
    cfg: DataConfig,
    names: Sequence[str],
    garment_groups: Sequence[str],
    min_fraction: float | None = None,
    min_score: float = RETURN_MIN_SCORE,
    min_return_fraction: float = RETURN_MIN_FRACTION,
) -> list[PhotoGarment]:
    """The garments of one photo from its (K, h, w) parsing logits.

    Args:
        logits: the parsing head's output for the photo (the whole photo was the input).
        photo_size: (width, height) of the upright photo.
        cfg: the model's data config (input size and resize mode: where the photo lies in the input).
        names: the K group names; garment_groups: those returned as garments.
        min_fraction: smaller regions are fragments (default: :data:`GARMENT_RULE`'s).
        min_score: garments whose mean group probability is lower are not returned.
        min_return_fraction: nor garments covering less of the photo (earrings, rings, most glasses).
    """
    t = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))[None]
    h, w = t.shape[-2] * DECODE_SCALE, t.shape[-1] * DECODE_SCALE
    probs = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False).softmax(1)[0]
    if cfg.resize == "letterbox":  # keep the photo's part of the input
        left, top, pw, ph = letterbox_box(*photo_size, cfg.input_size, cfg.max_stretch)
        sy, sx = h / cfg.input_size[0], w / cfg.input_size[1]
        y0, x0 = round(top * sy), round(left * sx)
        probs = probs[:, y0 : max(y0 + 1, round((top + ph) * sy)), x0 : max(x0 + 1, round((left + pw) * sx))]
    labels = probs.argmax(0).numpy().astype(np.uint8)
    rule = dict(GARMENT_RULE)
    if min_fraction is not None:
        rule["min_fraction"] = min_fraction
    found = garments_from_labels(labels, names, garment_groups, probs.numpy(), **rule)
    return [_to_photo(g, labels.shape, photo_size) for g in found
            if g.score >= min_score and g.fraction >= min_return_fraction]  # fmt: skip


def _to_photo(g: Garment, shape: tuple[int, int], photo_size: tuple[int, int]) -> PhotoGarment:
    width, height = photo_size
    sy, sx = height / shape[0], width / shape[1]
    mask = np.asarray(
        Image.fromarray(g.mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    ) > 0
    x0, y0, x1, y1 = g.box
    box = (int(x0 * sx), int(y0 * sy), min(width, int(np.ceil(x1 * sx))), min(height, int(np.ceil(y1 * sy))))
    return PhotoGarment(g.label, float(g.score), box, mask, float(g.area / (shape[0] * shape[1])), g.mask)
