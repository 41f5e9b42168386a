"""``fashionlens data derive-landmarks``: a DeepFashion Category and Attribute tree from CCP's garment masks.

One sample per garment label of a pixel-level photo (only labels with a clothes type, see
:data:`fashionlens.data.derive.CLOTHES_TYPES`, covering at least ``min_area`` of the photo):

- ``img/<photo stem>_<label>.jpg``: the photo cropped to the garment's mask box plus the same margin
  on every side (``margin`` x the box's longer side, clipped to the photo);
- ``Anno/list_bbox.txt``: the mask box in crop coordinates; ``Anno/list_category_*``: the garment
  label (category) and its clothes type; ``Anno/list_landmarks.txt``: DeepFashion's 6 / 4 / 8
  landmarks from the mask geometry (:func:`fashionlens.data.derive.derive_landmarks`);
  ``Anno/list_attr_*``: the garment's attributes when an attribute file is given or found
  (texture / fabric / shape / part, :mod:`fashionlens.data.garment_attributes`), then its colours
  (:func:`fashionlens.data.derive.garment_colours`, type 6);
- ``Eval/list_eval_partition.txt``: the split of the CCP reader for pixel-level photos (same seed and
  fractions: :func:`fashionlens.data.multilabel.split_dataset` over the photos' mask tags), so every
  garment of a photo is in one split and a model trained on both this tree and CCP's tags never
  sees a validation photo's garments in training.

The DeepFashion reader, configs and ``evaluate`` take the tree unchanged. Crops are written as they
are made; the annotation files are written last, each atomically, so an interrupted run leaves no
tree that looks complete.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fashionlens.data.ccp import (
    DROPPED_LABELS,
    MIN_MASK_PIXELS,
    garment_regions,
    photo_index,
    read_ccp_label_list,
    read_ccp_mask,
)
from fashionlens.data.deepfashion import ATTRIBUTE_TYPES, CLOTHES_TYPE_SLOTS, LANDMARK_NAMES
from fashionlens.data.derive import CLOTHES_TYPES, COLOURS, derive_landmarks, garment_colours
from fashionlens.data.errors import DataFormatError
from fashionlens.data.garment_attributes import (
    GarmentAttributes,
    find_attributes_file,
    read_garment_attributes,
)
from fashionlens.data.images import BadImageError, load_stored_image
from fashionlens.data.multilabel import LabelledSet, Sample, split_dataset
from fashionlens.errors import ConfigError, FashionlensError
from fashionlens.fileio import atomic_write_bytes, check_output_dir

TYPE_NAMES = {1: "upper", 2: "lower", 3: "full body"}
COLOUR_TYPE = next(k for k, v in ATTRIBUTE_TYPES.items() if v == "colour")


class PoseUnavailable(FashionlensError, RuntimeError):
    """``--pose`` was asked for but no pose model can run in this environment."""


@dataclass
class Garment:
    """One derived sample (coordinates in its crop)."""

    name: str  # img/<stem>_<label>.jpg
    stem: str
    category: str
    clothes_type: int
    bbox: tuple[int, int, int, int]
    landmarks: np.ndarray  # (8, 2) pixel indices in the crop
    visibility: np.ndarray  # (8,) DeepFashion codes
    colours: np.ndarray  # (len(COLOURS),) 1 / -1 / 0
    origin: tuple[int, int] = (0, 0)  # the crop's top-left corner in the photo


@dataclass
class DeriveSummary:
    """What a run wrote and skipped."""

    photos: int = 0
    garments: int = 0
    per_type: Counter = field(default_factory=Counter)
    visible_per_slot: Counter = field(default_factory=Counter)
    small: int = 0  # garment regions under min_area
    bad: dict[str, str] = field(default_factory=dict)  # mask file -> reason
    bad_photos: dict[str, str] = field(default_factory=dict)  # photo file -> reason
    partitions: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    attributes: tuple[str, int] | None = None  # (attribute file, garments it labels)

    def lines(self) -> list[str]:
        types = ", ".join(f"{TYPE_NAMES[t]} {self.per_type[t]}" for t in sorted(TYPE_NAMES))
        slots = ", ".join(f"{n} {self.visible_per_slot[n]}" for n in LANDMARK_NAMES)
        parts = ", ".join(f"{k} {self.partitions[k]}" for k in ("train", "val", "test"))
        if self.attributes:
            attributes = (f"attributes: {self.attributes[1]} of {self.garments} garments labelled by "
                          f"{self.attributes[0]} (the others unknown)")
        else:
            attributes = "attributes: colours only (no garment attribute file)"
        return [f"{self.photos} photos -> {self.garments} garments ({types}); {parts}",
                f"visible points per slot: {slots}",
                f"skipped: {self.small} garment regions under the minimum area, {len(self.bad)} bad masks, "
                f"{len(self.bad_photos)} bad photos",
                attributes,
                f"{self.seconds:.0f} s"]  # fmt: skip


def crop_box(
    box: tuple[int, int, int, int], margin: float, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """``box`` (x1, y1, x2, y2 inclusive) grown by ``margin`` x its longer side on every side, clipped.

    Returns (left, top, right, bottom) with right/bottom exclusive, as ``PIL.Image.crop`` takes them.
    """
    x1, y1, x2, y2 = box
    pad = int(round(margin * max(x2 - x1 + 1, y2 - y1 + 1)))
    w, h = size
    return max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + 1 + pad), min(h, y2 + 1 + pad)


def _garment_ids(names: list[str]) -> dict[int, int]:
    """Label index -> clothes type, for the garment labels of ``label_list.mat``."""
    return {i: CLOTHES_TYPES[n] for i, n in enumerate(names) if n in CLOTHES_TYPES}


def derive_photo(photo_path: Path, mask: np.ndarray, names: list[str], margin: float, min_area: float,
                 out_img: Path | None,
                 photo: Image.Image | None = None) -> tuple[list[Garment], int]:  # fmt: skip
    """The garments of one photo (crops saved under ``out_img`` when given); also returns how many were
    too small.

    ``photo``: its stored pixels already decoded (default: decoded here). Raises BadImageError for
    a photo that cannot be decoded (truncated, not an image).
    """
    stem = photo_path.stem
    photo = load_stored_image(photo_path) if photo is None else photo  # the masks index the stored pixels
    pixels = np.asarray(photo)
    types = _garment_ids(names)
    skin = mask == names.index("skin")
    person = mask != names.index("null")
    covers = np.isin(mask, [i for i, t in types.items() if t != 2])  # what may hide a waistline
    garments, small = [], 0
    for region in garment_regions(mask, names, DROPPED_LABELS, MIN_MASK_PIXELS):
        if region.index not in types:
            continue
        if region.area < min_area * mask.size:
            small += 1
            continue
        g = mask == region.index
        xy, vis = derive_landmarks(g, skin, types[region.index], covers & ~g, person)
        left, top, right, bottom = crop_box(region.box, margin, photo.size)
        name = f"img/{stem}_{region.label}.jpg"
        if out_img is not None:
            photo.crop((left, top, right, bottom)).save(out_img / Path(name).name, quality=95)
        x1, y1, x2, y2 = region.box
        local = np.where(vis[:, None] < 2, np.round(xy - (left, top)), 0)
        garments.append(Garment(name, stem, region.label, types[region.index],
                                (x1 - left, y1 - top, x2 - left, y2 - top), local.astype(np.int64), vis,
                                garment_colours(pixels, g), (left, top)))  # fmt: skip
    return garments, small


def _work(args) -> tuple[str, list[Garment] | None, int, tuple[str, str] | None, list[int]]:
    """One photo in a worker process: (stem, garments or None, small count, error, mask tags).

    The error is ("photo" | "mask", message naming the file): the photo is decoded first, so a
    truncated or unreadable photo is counted as a bad photo, not as a bad mask.
    """
    ann, photo_path, names, margin, min_area, out_img = args
    try:
        photo = load_stored_image(photo_path)
    except BadImageError as e:
        return ann.stem, None, 0, ("photo", str(e)), []
    try:
        mask = read_ccp_mask(ann, len(names), photo_path)
    except DataFormatError as e:
        return ann.stem, None, 0, ("mask", str(e)), []
    tags = np.flatnonzero(np.bincount(mask.ravel(), minlength=len(names)) >= MIN_MASK_PIXELS).tolist()
    garments, small = derive_photo(photo_path, mask, names, margin, min_area, out_img, photo)
    return ann.stem, garments, small, None, tags


def derive_landmark_tree(ccp_root: str | Path, out: str | Path, margin: float = 0.1, min_area: float = 0.01,
                         pose: bool = False, split_seed: int = 0, split_fractions=(0.7, 0.1, 0.2),
                         bad_masks: str = "skip", workers: int = 1, progress: bool = True,
                         attributes: str | Path | None = None) -> DeriveSummary:  # fmt: skip
    """Write the DeepFashion-layout tree of CCP's pixel-level garments to ``out``.

    Args:
        ccp_root: the CCP folder (``photos/``, ``annotations/pixel-level/``, ``label_list.mat``).
        out: the tree to write (``img/``, ``Anno/``, ``Eval/``); created, existing files replaced.
        margin: crop margin on every side, as a fraction of the garment box's longer side.
        min_area: garments covering less of the photo than this fraction are left out.
        pose: refine the points with a human-pose model: not available (raises :class:`PoseUnavailable`,
            saying why).
        split_seed, split_fractions: the CCP reader's split settings (``data.split_seed`` /
            ``split_fractions``).
        bad_masks: what a bad mask or photo (truncated, not an image) does: "skip" (report and count
            each, go on) or "fail" (stop at the first, naming it).
        workers: processes.
        progress: show a progress bar.
        attributes: a garment attribute CSV (:mod:`fashionlens.data.garment_attributes`); default
            the CCP root's ``garment_attributes.csv`` when it has one. Its attributes are written
            before the colours in ``list_attr_*`` (types 1-4, colours type 6); a garment without
            a row gets 0 (unknown) for each of them.

    Raises:
        DataFormatError: missing folders or label list; a bad mask when ``bad_masks="fail"``; a
            malformed attribute file; a bad photo when ``bad_masks="fail"``; nothing to derive (no
            masks, every photo skipped, or no garment reaching ``min_area``): no tree is written.
        OutputDirError: ``out`` is a file or not writable (before any work).
    """
    if bad_masks not in ("skip", "fail"):
        raise ConfigError(f"bad_masks must be 'skip' or 'fail', got {bad_masks!r}")
    if pose:
        raise PoseUnavailable(
            "--pose is not available: the only offline pose model (mediapipe 0.10.14, the last release that "
            "ships pose_landmark_full.tflite) needs protobuf<5, and fashionlens's onnx needs protobuf>=6.31, "
            "so they cannot share one environment; derive without --pose"
        )
    if not 0 <= margin <= 2:
        raise ConfigError(f"margin must be in [0, 2] (a fraction of the garment box), got {margin}")
    start = time.perf_counter()
    root, out = Path(ccp_root), Path(out)
    names = read_ccp_label_list(root / "label_list.mat")
    ann_dir = root / "annotations" / "pixel-level"
    if not ann_dir.is_dir():
        raise DataFormatError(
            f"annotation folder not found: {ann_dir} (derive-landmarks needs CCP's pixel-level masks)"
        )
    photos = photo_index(root / "photos")
    attribute_path = find_attributes_file(root, attributes)
    table = read_garment_attributes(attribute_path) if attribute_path else None
    anns = sorted(ann_dir.glob("*.mat"))
    if not anns:
        raise DataFormatError(
            ann_dir, None, "no .mat masks: nothing to derive (expected CCP's pixel-level annotations)"
        )
    missing = [a for a in anns if a.stem not in photos]
    if missing:
        raise DataFormatError(
            missing[0], None, f"annotation without a photo; expected {root / 'photos' / missing[0].stem}.jpg"
        )
    check_output_dir(out, "output folder")  # before any work: a file or a read-only folder is one error line
    check_output_dir(out / "img", "output folder")
    jobs = [(a, photos[a.stem], names, margin, min_area, out / "img") for a in anns]
    summary, results = DeriveSummary(), {}
    for stem, garments, small, error, tags in _run(jobs, workers, progress):
        if error is not None:
            kind, message = error
            if bad_masks == "fail":
                raise DataFormatError(message)
            print(f"skipped bad {kind}: {message}")
            (summary.bad if kind == "mask" else summary.bad_photos)[stem] = message
            continue
        results[stem] = (garments, tags)
        summary.small += small
    _check_derived(results, summary, len(anns), min_area)
    partition = _partition(results, photos, names, split_seed, split_fractions, root)
    samples = [g for stem in sorted(results) for g in results[stem][0]]
    write_annotations(out, samples, partition, [n for n in names if n in CLOTHES_TYPES], table)
    summary.photos = len(results)
    if table is not None:
        summary.attributes = (str(attribute_path), sum((g.stem, g.category) in table.rows for g in samples))
    summary.garments = len(samples)
    for g in samples:
        summary.per_type[g.clothes_type] += 1
        summary.partitions[partition[g.stem]] += 1
        for slot in np.flatnonzero(g.visibility == 0):
            summary.visible_per_slot[LANDMARK_NAMES[slot]] += 1
    summary.seconds = time.perf_counter() - start
    return summary


def _check_derived(results: dict, summary: DeriveSummary, masks: int, min_area: float) -> None:
    """Refuse to write an empty tree: every mask or photo was bad, or no garment reached ``min_area``."""
    if not results:
        raise DataFormatError(
            f"nothing derived: all {masks} photos were skipped ({len(summary.bad)} bad masks, "
            f"{len(summary.bad_photos)} bad photos)"
        )
    if not any(garments for garments, _ in results.values()):
        raise DataFormatError(
            f"nothing derived: no garment of the {len(results)} photos covers --min-area {min_area:g} "
            f"of its photo ({summary.small} smaller garment regions left out)"
        )


def _run(jobs: list, workers: int, progress: bool):
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="photo", desc="derive-landmarks", disable=not progress)
    if workers <= 1:
        for job in jobs:
            yield _work(job)
            bar.update(1)
    else:
        with ProcessPoolExecutor(workers) as pool:
            for result in pool.map(_work, jobs, chunksize=4):
                yield result
                bar.update(1)
    bar.close()


def _partition(
    results: dict, photos: dict[str, Path], names: list[str], seed: int, fractions, root: Path
) -> dict[str, str]:
    """Photo stem -> train / val / test, exactly as the CCP reader splits its pixel-level photos."""
    dropped = set(DROPPED_LABELS)
    samples = [Sample(photos[stem], tuple(names[i] for i in tags if names[i] not in dropped), None)
               for stem, (_, tags) in sorted(results.items())]  # fmt: skip
    labelled = LabelledSet(samples, [n for n in names if n not in dropped], root)
    parts = split_dataset(labelled, tuple(fractions), seed=seed)
    return {s.path.stem: split for split, part in parts.items() for s in part.samples}


def _table(header: str, rows: list[str]) -> bytes:
    return (f"{len(rows)}\n{header}\n" + "".join(r + "\n" for r in rows)).encode()


def write_annotations(out: Path, samples: list[Garment], partition: dict[str, str], categories: list[str],
                      attributes: GarmentAttributes | None = None) -> None:  # fmt: skip
    """The DeepFashion list files for ``samples``, each written atomically.

    ``list_attr_*`` holds ``attributes``' vocabulary with its types (when given), then the 12 colours
    (type 6); a garment's values are 1 / -1 / 0 (applies, does not, unknown).
    """
    cat_index = {c: k + 1 for k, c in enumerate(categories)}
    attr_names = [*(attributes.names if attributes else []), *COLOURS]
    attr_types = [*(attributes.types if attributes else []), *[COLOUR_TYPE] * len(COLOURS)]

    def attr_values(s: Garment) -> list[int]:
        return [*(attributes.values(s.stem, s.category) if attributes else []), *s.colours]

    width = max([len(s.name) for s in samples] + [10]) + 2
    files = {
        "Anno/list_category_cloth.txt": _table("category_name  category_type",
                                               [f"{c:<16}{CLOTHES_TYPES[c]}" for c in categories]),
        "Anno/list_category_img.txt": _table("image_name  category_label",
                                             [f"{s.name:<{width}}{cat_index[s.category]}" for s in samples]),
        "Anno/list_attr_cloth.txt": _table("attribute_name  attribute_type",
                                           [f"{c:<16}{t}"
                                            for c, t in zip(attr_names, attr_types, strict=True)]),
        "Anno/list_attr_img.txt": _table("image_name  attribute_labels",
                                         [f"{s.name:<{width}}" + " ".join(f"{v:2d}" for v in attr_values(s))
                                          for s in samples]),
        "Anno/list_bbox.txt": _table("image_name  x_1  y_1  x_2  y_2",
                                     [f"{s.name:<{width}}" + " ".join(f"{v:03d}" for v in s.bbox)
                                      for s in samples]),
        "Anno/list_landmarks.txt": _table(
            "image_name  clothes_type  " + "  ".join(f"landmark_visibility_{k} landmark_location_x_{k} "
                                                     f"landmark_location_y_{k}"
                                                     for k in range(1, 9)),
            [f"{s.name:<{width}}{s.clothes_type}  " + _landmark_cells(s) for s in samples]),
        "Eval/list_eval_partition.txt": _table("image_name  evaluation_status",
                                               [f"{s.name:<{width}}{partition[s.stem]}" for s in samples]),
    }  # fmt: skip
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / rel, data)


def _landmark_cells(s: Garment) -> str:
    """The type's (visibility, x, y) triples in file order, padded with zeros to 8 like DeepFashion's rows."""
    slots = CLOTHES_TYPE_SLOTS[s.clothes_type]
    cells = [
        f"{int(s.visibility[k])} {int(s.landmarks[k, 0]):03d} {int(s.landmarks[k, 1]):03d}" for k in slots
    ]
    cells += ["0 000 000"] * (8 - len(slots))
    return "  ".join(cells)
