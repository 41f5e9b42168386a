"""The garment groups of the parsing head: CCP's 59 mask labels merged into 17 classes, in one place.

CCP labels 56 garments and accessories per pixel, plus ``null`` (background), ``skin`` and ``hair``.
Many of the 56 are rare (``cape``, ``clogs``, ``romper`` cover a few photos each) or differ in ways a
mask cannot see (``t-shirt`` / ``top`` / ``blouse``; ``heels`` / ``pumps`` / ``wedges``). The parser
predicts 17 groups instead; the category head names the garment within its group afterwards.

==========  =======================================================================================
group       CCP labels
==========  =======================================================================================
background  null
skin        skin
hair        hair
upper       blouse, bodysuit, bra, hoodie, jumper, shirt, sweater, sweatshirt, t-shirt, top, vest
outer       blazer, cape, cardigan, coat, jacket, suit
dress       dress, romper
skirt       skirt
pants       jeans, leggings, pants
shorts      shorts
legwear     socks, stockings, tights
shoes       boots, clogs, flats, heels, loafers, pumps, sandals, shoes, sneakers, wedges
bag         bag, purse, wallet
hat         hat
belt        belt
scarf       scarf, tie
glasses     glasses, sunglasses
accessory   accessories, bracelet, earrings, gloves, intimate, necklace, panties, ring, swimwear, watch
==========  =======================================================================================

``legwear`` is a group of its own (the issue's list has none): tights and stockings cover whole legs,
and merged into ``accessory`` they would make that group half leg, half jewellery.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fashionlens.errors import FashionlensError

IGNORE_INDEX = 255  # a pixel (or a photo) without a parsing label

GROUPS: dict[str, tuple[str, ...]] = {
    "background": ("null",),
    "skin": ("skin",),
    "hair": ("hair",),
    "upper": ("blouse", "bodysuit", "bra", "hoodie", "jumper", "shirt", "sweater", "sweatshirt", "t-shirt",
              "top", "vest"),
    "outer": ("blazer", "cape", "cardigan", "coat", "jacket", "suit"),
    "dress": ("dress", "romper"),
    "skirt": ("skirt",),
    "pants": ("jeans", "leggings", "pants"),
    "shorts": ("shorts",),
    "legwear": ("socks", "stockings", "tights"),
    "shoes": ("boots", "clogs", "flats", "heels", "loafers", "pumps", "sandals", "shoes", "sneakers",
              "wedges"),
    "bag": ("bag", "purse", "wallet"),
    "hat": ("hat",),
    "belt": ("belt",),
    "scarf": ("scarf", "tie"),
    "glasses": ("glasses", "sunglasses"),
    "accessory": ("accessories", "bracelet", "earrings", "gloves", "intimate", "necklace", "panties", "ring",
                  "swimwear", "watch"),
}
GROUP_NAMES: tuple[str, ...] = tuple(GROUPS)
# the groups that are garments (returned by the parser); background, skin and hair are not
GARMENT_GROUPS: tuple[str, ...] = GROUP_NAMES[3:]
# the garment groups with seed A's 8 landmarks (collar, sleeves, waist, hem); shoes, bags, hats... have none
LANDMARK_GROUPS: tuple[str, ...] = ("upper", "outer", "dress", "skirt", "pants", "shorts")

# the rule that cuts a label map into garments (``garments_from_labels``), used for the predicted and the
# true garments alike; chosen on CCP's validation photos (docs/garments.md). One photo shows one person, so
# each group but bags and accessories is one garment: an open jacket's two panels, a top split by a bag strap
# or the two shoes of a pair are one garment each; a piece under ``min_share`` of its group's largest piece
# is a stray patch, not a garment.
GARMENT_RULE: dict = {
    "min_fraction": 0.005,
    "merge_radius": 0.02,
    "pairs": tuple(g for g in GARMENT_GROUPS if g not in ("bag", "accessory")),
    "min_share": 0.2,
}


class GroupMappingError(FashionlensError, ValueError):
    """A mask label that no garment group takes."""


def label_to_group(label_names: Sequence[str]) -> np.ndarray:
    """A lookup table: CCP label index -> group index (uint8), ``label_names`` in ``label_list.mat`` order.

    Raises:
        GroupMappingError: a label name that is in no group (the mapping above must cover every label).

    Example:
        >>> label_to_group(["null", "skin", "jeans", "heels"]).tolist()
        [0, 1, 7, 10]
    """
    where = {label: g for g, labels in enumerate(GROUPS.values()) for label in labels}
    missing = [n for n in label_names if n not in where]
    if missing:
        raise GroupMappingError(
            f"mask label(s) {missing} are in no garment group; groups: {', '.join(GROUP_NAMES)} "
            "(fashionlens/garments/groups.py)"
        )
    return np.array([where[n] for n in label_names], dtype=np.uint8)
