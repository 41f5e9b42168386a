"""The colour palette that fashionlens names garments with, and its pixel rule.

One fixed HSV rule (:func:`colour_names`) names every pixel with one of :data:`COLOURS`. The data
generator (:mod:`fashionlens.data.derive`) labels garments' colour attributes with it, and inference
names a garment's pixel colours with it (a colour covering :data:`PRESENT_SHARE` of its pixels), so it
lives here, apart from both: inference never imports the data generators.
"""

from __future__ import annotations

import numpy as np

COLOURS = (
    "black",
    "white",
    "grey",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "beige",
)
PRESENT_SHARE = 0.25  # a colour covering this share of a garment's pixels is present
COLOUR_TYPE = 6  # the attribute type of colours (DeepFashion's types are 1-5; data/deepfashion.py)


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """Name each pixel with one of :data:`COLOURS`: (N, 3) uint8 RGB -> (N,) indices into COLOURS.

    The rule, on HSV (hue in degrees, saturation and value in [0, 1]), first match wins:
    value < 0.22, or value < 0.4 with saturation < 0.35 (dark, nearly grey: the shadows of a black
    garment): black; saturation < 0.15: white (value > 0.8), else grey; hue 15-50 with
    saturation < 0.4 and value > 0.6: beige; hue < 45 or >= 345 with value < 0.5: brown (dark
    reds and oranges); then by hue: red < 15 or >= 345 (pink when saturation < 0.5 and value > 0.7),
    orange < 45, yellow < 70, green < 170, blue < 260, purple < 320, pink < 345.
    """
    x = np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0
    mx, mn = x.max(axis=1), x.min(axis=1)
    v, c = mx, mx - mn
    s = np.divide(c, mx, out=np.zeros_like(mx), where=mx > 0)
    r, g, b = x.T
    safe = np.where(c > 0, c, 1.0)
    hue = (
        np.select(
            [c == 0, mx == r, mx == g], [0.0, ((g - b) / safe) % 6, (b - r) / safe + 2], (r - g) / safe + 4
        )
        * 60.0
    )
    idx = {n: i for i, n in enumerate(COLOURS)}
    by_hue = np.select(
        [(hue < 15) | (hue >= 345), hue < 45, hue < 70, hue < 170, hue < 260, hue < 320],
        [np.where((s < 0.5) & (v > 0.7), idx["pink"], idx["red"]), idx["orange"], idx["yellow"], idx["green"],
         idx["blue"], idx["purple"]],
        idx["pink"],
    )  # fmt: skip
    return np.select(
        [(v < 0.22) | ((v < 0.4) & (s < 0.35)), (s < 0.15) & (v > 0.8), s < 0.15,
         (hue >= 15) & (hue < 50) & (s < 0.4) & (v > 0.6), ((hue < 45) | (hue >= 345)) & (v < 0.5)],
        [idx["black"], idx["white"], idx["grey"], idx["beige"], idx["brown"]],
        by_hue,
    ).astype(np.int64)  # fmt: skip
