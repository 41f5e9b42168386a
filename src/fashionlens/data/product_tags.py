"""Tags implied by a single-garment product photo: what a clothing-dataset class says about CCP's 56 tags.

A product photo of one garment (clothing-dataset: a T-shirt on a bed, shoes on a floor) shows that
garment and nothing else: no bag, no sunglasses, no skirt. So each class implies, for the 56 Clothing
Co-Parsing tags,

- **present**: the tag that names the garment (``dress`` -> ``dress``);
- **acceptable**: tags a careful annotator could also give it, neither taught as present nor as
  absent (a T-shirt is also a ``top``; an ``outwear`` photo is a ``jacket`` or a ``coat``; shoes are
  ``boots`` or ``sneakers`` as often as ``shoes``): the loss ignores them and a prediction of one
  counts as correct in the product-photo check;
- **absent**: every other tag, accessories included.

``longsleeve`` and ``outwear`` name no single CCP tag, so they have acceptable tags only. The
weight of these implied targets in the loss is a setting (``data.implied_tags``), because they are
weaker evidence than a tag an annotator gave.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fashionlens.errors import ConfigError

TOPS = ("top", "t-shirt", "shirt", "blouse")
KNITS = ("sweater", "jumper", "sweatshirt", "cardigan", "hoodie")
OUTER = ("jacket", "coat", "blazer", "suit", "cape", "vest", "cardigan")
FOOTWEAR = ("shoes", "boots", "clogs", "flats", "heels", "loafers", "pumps", "sandals", "sneakers", "wedges")

# clothing-dataset class -> (present tags, acceptable tags)
IMPLIED_TAGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "blazer": (("blazer",), ("jacket", "suit", "coat")),
    "blouse": (("blouse",), ("shirt", "top")),
    "body": (("bodysuit",), ("top", "romper", "t-shirt", "swimwear", "intimate")),
    "dress": (("dress",), ("romper",)),
    "hat": (("hat",), ()),
    "hoodie": (("hoodie",), ("sweatshirt", "jumper", "sweater", "jacket", "top")),
    "longsleeve": ((), (*TOPS, *KNITS)),
    "outwear": ((), (*OUTER, *KNITS)),
    "pants": (("pants",), ("jeans", "leggings")),
    "polo": ((), ("shirt", "t-shirt", "top")),
    "shirt": (("shirt",), ("blouse", "top")),
    "shoes": ((), FOOTWEAR),
    "shorts": (("shorts",), ("jeans",)),
    "skirt": (("skirt",), ()),
    "t-shirt": (("t-shirt",), ("top", "shirt")),
    "top": (("top",), ("t-shirt", "blouse", "shirt", "vest")),
    "undershirt": ((), ("top", "t-shirt", "vest", "intimate")),
}


def implied_tag_targets(class_names: Sequence[str], tag_names: Sequence[str],
                        weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per class, the implied tag targets and their loss weights.

    Args:
        class_names: the K classes (clothing-dataset spelling, lower case).
        tag_names: the C tags (CCP's 56).
        weight: the loss weight of every known (present or absent) entry.

    Returns:
        ``(targets, weights)``, both (K, C) float32: 1 present / 0 absent, and ``weight`` where known,
        0 where acceptable.

    Raises:
        ValueError: a class without a mapping, or a mapped tag missing from ``tag_names``.
    """
    index = {t: j for j, t in enumerate(tag_names)}
    unknown = [c for c in class_names if c not in IMPLIED_TAGS]
    if unknown:
        raise ConfigError(f"no implied tags for classes {unknown}; known: {sorted(IMPLIED_TAGS)}")
    missing = sorted({t for c in class_names for group in IMPLIED_TAGS[c] for t in group} - set(index))
    if missing:
        raise ConfigError(f"implied tags {missing} are not in the tag vocabulary")
    targets = np.zeros((len(class_names), len(tag_names)), dtype=np.float32)
    weights = np.full((len(class_names), len(tag_names)), float(weight), dtype=np.float32)
    for k, name in enumerate(class_names):
        present, acceptable = IMPLIED_TAGS[name]
        targets[k, [index[t] for t in present]] = 1.0
        weights[k, [index[t] for t in acceptable]] = 0.0
    return targets, weights


def correct_tags(class_name: str) -> set[str]:
    """Tags that are right for a product photo of this class: present or acceptable."""
    present, acceptable = IMPLIED_TAGS[class_name]
    return set(present) | set(acceptable)
