"""Found garments scored against true ones: per-photo matching counts and the detection report.

Per photo, predictions and true garments are matched one to one, greedily by box IoU (the highest
pair first), a pair needing the same ``label`` and an IoU of at least ``iou``. Every true garment
takes part in the matching, but only those covering at least ``min_fraction`` of the photo count
for recall (a tiny true garment, an earring, is neither required nor a false positive when found).

* ``truth``: true garments with ``fraction >= min_fraction``; ``found``: those matched.
* ``returned``: predictions; ``real``: predictions matched to a true garment of any size (a second
  prediction of an already matched garment is not real).

Recall is ``found / truth`` and precision ``real / returned``, summed over the photos first (NaN when
the denominator is 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from fashionlens.garments.instances import Garment, GarmentError, box_iou

COUNTS = ("truth", "found", "returned", "real")


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def match_garments(
    pred: Sequence[Garment], truth: Sequence[Garment], iou: float = 0.5, min_fraction: float = 0.02
) -> dict:
    """The matching counts of one photo.

    Args:
        pred: the garments found.
        truth: the true garments (all sizes: the tiny ones are matched but not required).
        iou: the least box IoU of a match.
        min_fraction: a true garment covering less of the photo does not count for recall.

    Returns:
        ``{"truth", "found", "returned", "real"}`` counts (see the module docstring) and ``"per_label"``:
        ``{label: the same four counts}`` for every label of ``pred`` or ``truth``.
    """
    pairs = sorted(
        (
            (box_iou(p.box, t.box), i, j)
            for i, p in enumerate(pred)
            for j, t in enumerate(truth)
            if p.label == t.label
        ),
        key=lambda x: (-x[0], x[1], x[2]),
    )
    pred_matched: set[int] = set()
    truth_matched: set[int] = set()
    for value, i, j in pairs:
        if value < iou:
            break
        if i not in pred_matched and j not in truth_matched:
            pred_matched.add(i)
            truth_matched.add(j)
    labels = dict.fromkeys([g.label for g in truth] + [g.label for g in pred])
    per_label = {label: dict.fromkeys(COUNTS, 0) for label in labels}
    for j, t in enumerate(truth):
        if t.fraction >= min_fraction:
            per_label[t.label]["truth"] += 1
            per_label[t.label]["found"] += j in truth_matched
    for i, p in enumerate(pred):
        per_label[p.label]["returned"] += 1
        per_label[p.label]["real"] += i in pred_matched
    totals = {key: sum(c[key] for c in per_label.values()) for key in COUNTS}
    return {**totals, "per_label": per_label}


def garment_detection_report(per_photo: Sequence[Mapping], labels: Sequence[str] | None = None) -> dict:
    """Recall and precision of the garments found, over all photos and per label.

    Args:
        per_photo: :func:`match_garments` results, one per photo.
        labels: the labels of ``per_label`` (those missing from every photo with zero counts); None: the
            labels seen, in order of first appearance.

    Returns:
        ``{"recall", "precision", "truth", "found", "returned", "real", "per_label"}``, ``per_label``
        mapping each label to the same keys; recall = found / truth, precision = real / returned,
        NaN where the denominator is 0.

    Raises:
        GarmentError: a photo's result lacks a count or ``per_label``.

    The overall counts are those of every label, also of labels left out of ``per_label``.
    """
    sums: dict[str, dict[str, int]] = {label: dict.fromkeys(COUNTS, 0) for label in labels or ()}
    for n, photo in enumerate(per_photo):
        if any(key not in photo for key in (*COUNTS, "per_label")) or any(
            key not in counts for counts in photo["per_label"].values() for key in COUNTS
        ):
            raise GarmentError(
                f"per_photo[{n}]: expected a match_garments result with 'per_label' counts {COUNTS}"
            )
        for label, counts in photo["per_label"].items():
            if labels is not None and label not in sums:
                continue
            total = sums.setdefault(label, dict.fromkeys(COUNTS, 0))
            for key in COUNTS:
                total[key] += int(counts[key])

    def scored(counts: Mapping[str, int]) -> dict:
        return {
            "recall": _ratio(counts["found"], counts["truth"]),
            "precision": _ratio(counts["real"], counts["returned"]),
            **{key: counts[key] for key in COUNTS},
        }

    overall = {key: sum(int(photo[key]) for photo in per_photo) for key in COUNTS}  # every label
    return {**scored(overall), "per_label": {label: scored(c) for label, c in sums.items()}}
