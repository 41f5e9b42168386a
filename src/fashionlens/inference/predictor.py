"""The Predictor: a model file -> typed, JSON-serialisable predictions for any kind of image input."""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fashionlens.checkpoint import ModelFile, ModelInfo
from fashionlens.colours import COLOURS, PRESENT_SHARE, colour_names
from fashionlens.data.images import BadImageError, ImageSource, load_image, photo_size
from fashionlens.data.transforms import build_transforms, draft_size, input_to_photo
from fashionlens.errors import FashionlensError
from fashionlens.inference.calibration import returned_tags
from fashionlens.inference.inputs import check_per_image, check_prediction_options, read_source
from fashionlens.inference.onnx_runner import cpu_cores, onnxruntime_available
from fashionlens.models.glem import heatmaps_to_landmarks

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "weights"
logger = logging.getLogger(__name__)  # the "auto" backend's one-time export and timing (the CLI shows INFO)
BACKENDS = ("auto", "torch", "onnx")


class ModelNotFoundError(FashionlensError, FileNotFoundError):
    """No model file at the path given, and no shipped model of that name."""


class BackendError(FashionlensError, ValueError):
    """A backend that is unknown, or that the model file or the device cannot run."""

Runner = Callable[[torch.Tensor], dict[str, np.ndarray]]  # batch (B, 3, H, W) -> outputs (B, ...)


@dataclass
class ScoredLabel:
    label: str
    score: float


@dataclass
class Landmark:
    name: str
    x: float  # pixels in the original (upright, full-resolution) image
    y: float
    score: float  # probability that the landmark is visible (visibility head), else the heatmap peak
    visible: bool | None = None  # score >= 0.5, for models with a visibility head


@dataclass
class GarmentPrediction:
    """One garment the parser found in a photo (see :mod:`fashionlens.garments`)."""

    label: str  # its garment group: upper, outer, dress, skirt, pants, shorts, shoes, bag, hat, ...
    score: float  # the group's mean probability over the garment's pixels
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels of the upright photo; x1, y1 exclusive
    mask: dict  # COCO run-length encoding over the upright photo: {"size": [H, W], "counts": str}
    # upper, outer, dress, skirt, pants, shorts (and shoes, hat for the category): from the garment's own
    # crop, as the model's garment crops were trained
    category: list[ScoredLabel] | None = None  # the category head's classes that fit the group
    colours: list[ScoredLabel] | None = None  # share of the garment's own pixels per colour name
    attributes: list[ScoredLabel] | None = None
    landmarks: list[Landmark] | None = None  # only the groups that have them (not shoes, bags, hats, ...)


@dataclass
class Prediction:
    """What one image was predicted to show; ``None`` for heads the model does not have."""

    source: str
    category: list[ScoredLabel] | None = None
    tags: list[ScoredLabel] | None = None
    tag_threshold: float | None = None
    # the main style (the most likely) first, then sub styles >= style_threshold
    styles: list[ScoredLabel] | None = None
    style_threshold: float | None = None
    attributes: list[ScoredLabel] | None = None  # garment attributes (texture, fabric, shape, part, ...)
    colours: list[ScoredLabel] | None = None  # models with colour attributes: those at >= 0.5
    landmarks: list[Landmark] | None = None
    image_size: tuple[int, int] | None = None  # (width, height) of the upright photo, full resolution
    # the crop (x0, y0, x1, y1) predicted on, when a box was given
    box: tuple[int, int, int, int] | None = None
    # models with a parsing head, on a whole photo: every garment it shows, largest first
    garments: list[GarmentPrediction] | None = None
    error: str | None = None

    @property
    def main_style(self) -> str | None:
        """The most likely style (the first of ``styles``), or None."""
        return self.styles[0].label if self.styles else None

    def to_dict(self) -> dict:
        """The JSON record of the CLI and the web service (absent heads are left out)."""
        d = {"path": self.source}
        for key in ("category", "tags", "styles", "attributes", "colours", "landmarks"):
            value = getattr(self, key)
            if value is not None:
                d[key] = [asdict(v) for v in value]
        if self.tags is not None:
            d["tag_threshold"] = self.tag_threshold
        if self.styles is not None:
            d["main_style"] = self.main_style
            d["style_threshold"] = self.style_threshold
        if self.image_size is not None:
            d["image_size"] = list(self.image_size)
        if self.box is not None:
            d["box"] = list(self.box)
        if self.garments is not None:
            d["garments"] = [_garment_dict(g) for g in self.garments]
        if self.error is not None:
            d["error"] = self.error
        return d


class Predictor:
    """Run a FashionNet on images: paths, PIL images, numpy arrays or encoded bytes.

    Example:
        >>> predictor = load_model("fashionlens-lite")          # doctest: +SKIP
        >>> predictor.predict(["photo.jpg"])[0].to_dict()       # doctest: +SKIP
    """

    def __init__(
        self,
        model: torch.nn.Module | None,
        info: ModelInfo,
        device: str = "cpu",
        batch_size: int = 32,
        runner: Runner | None = None,
        backend: str | None = None,
        workers: int | None = None,
    ):
        if model is None and runner is None:
            raise ValueError("a Predictor needs a model or a runner")
        self.model = None if model is None else model.to(device).eval().to(memory_format=torch.channels_last)
        self.info = info
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.transform = build_transforms(info.data_config, train=False)
        self.crop_transform = self.transform  # the parser's second pass on each garment's crop
        self._draft = draft_size(info.data_config)
        self.runner: Runner = runner or self._torch_forward
        self.backend = backend or ("torch" if runner is None else "custom")
        self.workers = workers or min(cpu_cores(), 4)  # threads decoding images (PIL releases the GIL)
        self.box_margin = info.training.box_margin  # the margin its garment crops were trained with
        self._colour_columns = colour_columns(info)
        self.parsing = info.parsing  # the garment parser's groups, garments, landmark_groups; or None

    @property
    def heads(self) -> list[str]:
        return list(self.info.label_names)

    def _torch_forward(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.model(batch.to(self.device, memory_format=torch.channels_last))
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def preprocess(
        self, src: ImageSource, box: Sequence[float] | None = None
    ) -> tuple[torch.Tensor, tuple[int, int], Box | None]:
        """(input tensor, upright photo size, crop or None): the whole photo, or ``box`` with a margin.

        ``box`` is (x1, y1, x2, y2) in pixels of the upright photo; the crop grows it by the margin
        the model's garment crops were trained with on every side and is clamped to the photo.
        """
        return self._preprocess(src, box)[:3]

    def _preprocess(self, src: ImageSource, box: Sequence[float] | None = None):
        """:meth:`preprocess` plus the decoded photo (for the garments' crops and colours), or None."""
        src = read_source(src)  # a URI's bytes; a folder or an unsupported scheme is a BadImageError
        if box is None:
            img = load_image(src, draft_size=self._draft)
            return self.transform(img), photo_size(img), None, img
        img = load_image(src)  # full resolution: a garment may be a small part of the photo
        size = photo_size(img)
        crop = garment_crop(box, size, self.box_margin)
        return self.transform(img.crop(crop)), size, crop, None

    def predict(
        self,
        images: ImageSource | Sequence[ImageSource],
        top_k: int = 5,
        threshold: float | None = None,
        names: Sequence[str] | None = None,
        boxes: Sequence[Sequence[float] | None] | None = None,
        garments: bool = True,
    ) -> list[Prediction]:
        """Predict every image; an unreadable image (or a box outside it) yields a Prediction with ``error``
        set.

        Each image is checked on its own (:func:`fashionlens.data.images.load_image`): ``None``, a
        number, an empty (0-pixel) or NaN array, a closed PIL image get a Prediction with ``error``
        set, the other images their predictions.

        Args:
            images: paths, PIL images, numpy arrays or encoded bytes (or one of them).
            top_k: categories/tags/styles/attributes/colours per image.
            threshold: the threshold of every multi-label head (tags, styles, attributes, colours),
                applied exactly; default: the model's own calibrated ones (the most likely tag and
                style are returned even below them).
            names: the ``source`` of each prediction (default: the path, or ``<image i>``).
            boxes: per image, None (the whole photo) or a garment box (x1, y1, x2, y2) in pixels of the
                upright photo: the model then sees that garment (plus a margin), and its landmarks
                are returned in photo pixels.
            garments: models with a parsing head: also find every garment of each whole photo
                (``Prediction.garments``); False skips it (faster). Ignored for boxes.

        Raises:
            PredictArgumentError: before any work: ``top_k`` < 1, ``threshold`` outside [0, 1] or
                NaN, ``boxes`` or ``names`` not one per image.
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
            boxes = None if boxes is None else [boxes]
        return list(self.iter_predict(images, top_k, threshold, names, boxes, garments))

    def iter_predict(self, images: Iterable[ImageSource], top_k: int = 5, threshold: float | None = None,
                     names: Sequence[str] | None = None,
                     boxes: Sequence[Sequence[float] | None] | None = None,
                     garments: bool = True,
                     ) -> Iterator[Prediction]:  # fmt: skip
        """Like :meth:`predict`, streaming results batch by batch (for progress bars).

        Each batch of ``batch_size`` images is decoded by ``workers`` threads, then run as one batch;
        the next batch is decoded while the network runs on the current one.

        Raises:
            PredictArgumentError: as :meth:`predict`, before the first image is read.
        """
        check_prediction_options(top_k, threshold)
        if boxes is not None or names is not None:  # one per image: count the images first
            images = list(images)
            check_per_image("boxes", boxes, len(images))
            check_per_image("names", names, len(images))
        return self._iter_predict(images, top_k, threshold, names, boxes, garments)

    def _iter_predict(self, images: Iterable[ImageSource], top_k: int, threshold: float | None,
                      names: Sequence[str] | None, boxes,
                      garments: bool = True) -> Iterator[Prediction]:  # fmt: skip
        indexed = enumerate(images)
        pending: list[tuple[str, Future]] = []  # the batch submitted last, decoding in the pool
        with ThreadPoolExecutor(self.workers) as pool:
            while True:
                chunk = list(itertools.islice(indexed, self.batch_size))
                submitted = [(names[i] if names is not None else _source_name(src, i),
                              pool.submit(self._try_preprocess, src, None if boxes is None else boxes[i]))
                             for i, src in chunk]  # fmt: skip
                if pending:
                    yield from self._run_chunk(
                        [n for n, _ in pending], [f.result() for _, f in pending], top_k, threshold, garments
                    )
                if not submitted:
                    return
                pending = submitted

    def _try_preprocess(
        self, src: ImageSource, box=None
    ) -> tuple[torch.Tensor, tuple[int, int], Box | None, object] | BadImageError:
        try:
            return self._preprocess(src, box)
        except BadImageError as e:
            return e
        except BoxError as e:
            return BadImageError(_source_name(src, 0), str(e))

    def _run_chunk(
        self, names: list[str], loaded: list, top_k: int, threshold: float | None, garments: bool = True
    ) -> Iterator[Prediction]:
        good = [i for i, item in enumerate(loaded) if not isinstance(item, BadImageError)]
        preds = (
            self.predict_batch(
                torch.stack([loaded[i][0] for i in good]),
                [names[i] for i in good],
                [loaded[i][1] for i in good],
                top_k,
                threshold,
                [loaded[i][2] for i in good],
                images=[loaded[i][3] for i in good] if garments else None,
            )
            if good
            else []
        )
        rows = {i: row for row, i in enumerate(good)}
        for i, (name, item) in enumerate(zip(names, loaded, strict=True)):
            if isinstance(item, BadImageError):
                yield Prediction(source=name, error=item.reason)
            else:
                yield preds[rows[i]]

    def predict_batch(self, batch: torch.Tensor, names: Sequence[str], sizes: Sequence[tuple[int, int]],
                      top_k: int = 5, threshold: float | None = None,
                      crops: Sequence[Box | None] | None = None,
                      images: Sequence | None = None) -> list[Prediction]:  # fmt: skip
        """Predict a batch that is already decoded and transformed (what the Ray engine's actors run).

        Args:
            batch: (B, 3, H, W) float32, the model's eval transform of each photo (or of its crop).
            names: the ``source`` of each prediction.
            sizes: (width, height) of each upright photo, for the landmarks.
            top_k: categories/tags/attributes per image.
            threshold: tag threshold (default: the model's own).
            crops: per photo, the crop (x0, y0, x1, y1) the input was made from, or None (the whole photo).
            images: models with a parsing head: per photo, the decoded PIL image (the whole photo) or None;
                given, each whole photo's garments are found (:meth:`_garments`). None: no garments.
        """
        outputs = self.runner(batch)
        crops = crops if crops is not None else [None] * len(names)
        preds = [
            self._decode(outputs, row, name, size, top_k, threshold, crop)
            for row, (name, size, crop) in enumerate(zip(names, sizes, crops, strict=True))
        ]
        if images is not None and self.parsing and "parsing" in outputs:
            self._garments(preds, outputs, images, top_k, threshold)
        return preds

    def _garments(self, preds: list[Prediction], outputs: dict[str, np.ndarray], images: Sequence,
                  top_k: int, threshold: float | None) -> None:  # fmt: skip
        """Fill ``pred.garments`` of each whole photo: the parser's garments, and for the garment groups that
        have landmarks (upper, outer, dress, skirt, pants, shorts), the model's category (among the group's
        classes), attributes and landmarks on the garment's own crop; shoes and hats (one class each, no
        landmarks) take their category from the whole photo's scores, without a second pass.

        A garment whose crop (box plus the garment-crop margin) covers at least
        :data:`WHOLE_PHOTO_SHARE` of the photo (a product photo of one garment) takes the whole photo's
        answers instead of a second pass: the crop would be nearly the same input.
        """
        from fashionlens.garments.decode import GROUP_CATEGORIES, photo_garments
        from fashionlens.garments.rle import encode_rle

        pending: list[tuple[GarmentPrediction, int, Box]] = []  # garments that need a pass on their crop
        for row, (pred, img) in enumerate(zip(preds, images, strict=True)):
            if img is None or pred.box is not None:
                continue
            found = photo_garments(outputs["parsing"][row], pred.image_size, self.info.data_config,
                                   list(self.parsing.groups), list(self.parsing.garments))  # fmt: skip
            # colours at the resolution the garments were found at (a half of the input): the same shares
            small = found[0].small_mask.shape if found else None
            pixels = None
            if small:
                pixels = np.asarray(img.convert("RGB").resize(small[::-1], Image.Resampling.BILINEAR))
            pred.garments = []
            for g in found:
                garment = GarmentPrediction(g.label, round(g.score, 6), g.box, encode_rle(g.mask),
                                            colours=_pixel_colours(pixels, g.small_mask, top_k))  # fmt: skip
                pred.garments.append(garment)
                if g.label not in GROUP_CATEGORIES:
                    continue
                crop = garment_crop(g.box, pred.image_size, self.box_margin)
                share = (crop[2] - crop[0]) * (crop[3] - crop[1]) / (pred.image_size[0] * pred.image_size[1])
                if g.label not in self.parsing.landmark_groups:  # shoes, hat: one class, no crop
                    self._describe(garment, outputs, row, None, top_k)
                elif share >= WHOLE_PHOTO_SHARE:
                    self._describe(garment, outputs, row, pred, top_k)  # pred: that row, decoded already
                else:
                    pending.append((garment, row, crop))
        if not pending:
            return
        scaled = []
        for _, row, crop in pending:  # the decoded photo may be a JPEG draft, smaller than the photo
            img = images[row]
            sx, sy = img.size[0] / preds[row].image_size[0], img.size[1] / preds[row].image_size[1]
            box = (crop[0] * sx, crop[1] * sy, crop[2] * sx, crop[3] * sy)
            scaled.append(self.crop_transform(img.crop(box)))
        for start in range(0, len(pending), self.batch_size):
            part = pending[start : start + self.batch_size]
            out = self.runner(torch.stack(scaled[start : start + self.batch_size]))
            for k, (garment, row, crop) in enumerate(part):
                size = preds[row].image_size
                answer = self._decode(out, k, preds[row].source, size, top_k, threshold, crop)
                self._describe(garment, out, k, answer, top_k)

    def _describe(self, garment: GarmentPrediction, out: dict[str, np.ndarray], row: int,
                  answer: Prediction | None, top_k: int) -> None:  # fmt: skip
        """A garment's category (among its group's classes, from row ``row`` of ``out``), attributes and
        landmarks (from ``answer``, that row decoded; None: the garment's group has none)."""
        from fashionlens.garments.decode import GROUP_CATEGORIES

        if "category" in out:
            allowed = GROUP_CATEGORIES[garment.label]
            names = self.info.label_names["category"]
            temperature = self.info.calibration.temperature
            probs = _softmax(out["category"][row] / temperature)
            keep = np.array([n in allowed for n in names])
            if keep.any():
                sub = probs[keep] / probs[keep].sum()
                garment.category = _top(sub, [n for n, k in zip(names, keep, strict=True) if k], top_k)
        if answer is not None and garment.label in self.parsing.landmark_groups:
            garment.attributes = answer.attributes
            garment.landmarks = answer.landmarks


    def tag_threshold(self, threshold: float | None) -> float:
        return threshold if threshold is not None else self.info.calibration.threshold

    def style_threshold(self, threshold: float | None) -> float:
        """The threshold of sub styles: ``threshold``, else the model's calibrated one (0.5 if none)."""
        return threshold if threshold is not None else self.info.calibration.style_threshold

    @property
    def min_tags(self) -> int:
        """Tags returned even below the model's threshold (its most likely ones; 0 unless calibrated so)."""
        return self.info.calibration.min_tags

    def _decode(self, out: dict[str, np.ndarray], row: int, name: str, size, top_k: int, threshold,
                crop: Box | None = None) -> Prediction:  # fmt: skip
        pred = Prediction(source=name, image_size=size, box=crop)
        names = self.info.label_names
        if "category" in out:
            temperature = self.info.calibration.temperature  # calibrated: tools/ship_model.py
            pred.category = _top(_softmax(out["category"][row] / temperature), names["category"], top_k)
        if "labels" in out:
            thr = self.tag_threshold(threshold)
            # the model's own tag policy: its threshold, and at least its ``min_tags`` most likely tags
            # (tools/ship_model.py); a threshold the caller gives is applied as it is
            least = self.min_tags if threshold is None else 0
            probs = _sigmoid(out["labels"][row])
            kept = {names["labels"][i] for i in np.flatnonzero(returned_tags(probs[None], thr, least)[0])}
            pred.tags = [s for s in _top(probs, names["labels"], top_k) if s.label in kept]
            pred.tag_threshold = thr
        if "styles" in out:
            # the main style always (a photo has one), then the sub styles at or above the threshold
            thr = self.style_threshold(threshold)
            probs = _sigmoid(out["styles"][row])
            kept = {
                names["styles"][i]
                for i in np.flatnonzero(returned_tags(probs[None], thr, 1 if threshold is None else 0)[0])
            }
            pred.styles = [s for s in _top(probs, names["styles"], top_k) if s.label in kept]
            pred.style_threshold = thr
        if "attributes" in out:
            pred.attributes, pred.colours = self._attributes(
                _sigmoid(out["attributes"][row]), top_k, threshold
            )
        if "heatmaps" in out:
            pred.landmarks = self._landmarks(out, row, size, crop)
        return pred

    def _attributes(self, probs: np.ndarray, top_k: int, threshold: float | None):
        """(attributes, colours) of one photo from its attribute probabilities.

        Colour attributes: those at or above 0.5 (or ``threshold``), at most ``top_k``. The other
        attributes: the ``top_k`` most likely, at or above ``threshold`` or the model's calibrated
        ``attribute_threshold`` (none: the top k, DeepFashion's protocol). A model whose attributes
        are all colours returns its top k colours as ``attributes`` too.
        """
        names = np.asarray(self.info.label_names["attributes"], dtype=object)
        colour = self._colour_columns
        colours = None
        if colour.any():
            thr = 0.5 if threshold is None else threshold
            colours = [s for s in _top(probs[colour], list(names[colour]), top_k) if s.score >= thr]
        if colour.all():
            return _top(probs, list(names), top_k), colours
        thr = threshold if threshold is not None else self.info.calibration.attribute_threshold
        attributes = _top(probs[~colour], list(names[~colour]), top_k)
        return [s for s in attributes if thr is None or s.score >= float(thr)], colours

    def _landmarks(self, out: dict[str, np.ndarray], row: int, size, crop: Box | None) -> list[Landmark]:
        """Heatmap peaks in photo pixels, scored by the visibility head when the model has one."""
        hm = torch.from_numpy(out["heatmaps"][row : row + 1])
        xy = heatmaps_to_landmarks(hm)[0].numpy()
        if crop is None:
            xy = input_to_photo(xy, size, self.info.data_config)
        else:  # the input was the crop: map into it, then move by its corner
            xy = input_to_photo(xy, (crop[2] - crop[0], crop[3] - crop[1]), self.info.data_config) + (
                crop[0],
                crop[1],
            )
        if "landmark_visibility" in out:
            score = _sigmoid(out["landmark_visibility"][row])
            visible = [bool(p >= 0.5) for p in score]
        else:
            score, visible = hm.flatten(2).amax(-1)[0].numpy(), [None] * len(xy)
        return [
            Landmark(
                self.info.landmarks.name(i),
                round(float(x), 2),
                round(float(y), 2),
                round(float(p), 6),
                v,
            )
            for i, ((x, y), p, v) in enumerate(zip(xy, score, visible, strict=True))
        ]


Box = tuple[int, int, int, int]
WHOLE_PHOTO_SHARE = 0.6  # a garment crop covering this share of the photo reuses the whole photo's answers


def _garment_dict(g: GarmentPrediction) -> dict:
    d = {"label": g.label, "score": g.score, "box": list(g.box), "mask": g.mask}
    for key in ("category", "colours", "attributes", "landmarks"):
        value = getattr(g, key)
        if value is not None:
            d[key] = [asdict(v) for v in value]
    return d


def _pixel_colours(pixels: np.ndarray, mask: np.ndarray, top_k: int) -> list[ScoredLabel]:
    """The colour names (``fashionlens.colours.COLOURS``) covering at least a quarter of a garment's own
    pixels, scored by their share. ``pixels`` (h, w, 3) and ``mask`` (h, w) are on the garment's map."""
    if not mask.any():
        return []
    share = np.bincount(colour_names(pixels[mask]), minlength=len(COLOURS)) / mask.sum()
    return [s for s in _top(share, list(COLOURS), top_k) if s.score >= PRESENT_SHARE]


class BoxError(FashionlensError, ValueError):
    """A garment box that is malformed or outside its photo."""


def colour_columns(info: ModelInfo) -> np.ndarray:
    """Which attribute columns are colours (the header's ``attributes.colours``)."""
    return info.attributes.colour_mask(len(info.label_names.get("attributes", [])))


def garment_crop(box: Sequence[float], size: tuple[int, int], margin: float) -> Box:
    """``box`` (x1, y1, x2, y2) grown by ``margin`` of its width / height on each side, clamped to the
    photo."""
    from fashionlens.data.landmark_transforms import crop_box

    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise BoxError(f"a box is 4 numbers x1, y1, x2, y2 in pixels, got {box!r}") from None
    width, height = size
    if not np.isfinite([x1, y1, x2, y2]).all():
        raise BoxError(f"box {[x1, y1, x2, y2]}: expected finite numbers (no NaN or infinity)")
    if not (x1 < x2 and y1 < y2):
        raise BoxError(f"box {[x1, y1, x2, y2]}: expected x1 < x2 and y1 < y2")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise BoxError(f"box {[x1, y1, x2, y2]} lies outside the {width}x{height} photo")
    return crop_box((x1, y1, x2, y2), size, margin)


def _source_name(src: ImageSource, i: int) -> str:
    return str(src) if isinstance(src, (str, Path)) else f"<image {i}>"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _top(probs: np.ndarray, names: list[str], k: int) -> list[ScoredLabel]:
    order = np.argsort(-probs, kind="stable")[: max(k, 0)]
    return [ScoredLabel(names[i], round(float(probs[i]), 6)) for i in order]


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model name (e.g. "fashionlens-lite") or a path to a .safetensors/.onnx file."""
    p = Path(name_or_path)
    if p.suffix in (".safetensors", ".onnx") or p.exists():
        if not p.is_file():
            raise ModelNotFoundError(f"model file not found: {p}")
        return p
    shipped = SHIPPED_DIR / f"{name_or_path}.safetensors"
    if shipped.is_file():
        return shipped
    available = sorted(f.stem for f in SHIPPED_DIR.glob("*.safetensors")) if SHIPPED_DIR.is_dir() else []
    raise ModelNotFoundError(
        f"no model named {str(name_or_path)!r}: not a file, and shipped models are {available or 'none'}"
    )


def load_model(
    name_or_path: str | Path = "fashionlens-lite",
    device: str = "cpu",
    batch_size: int = 32,
    backend: str = "auto",
    threads: int | None = None,
) -> Predictor:
    """Load a shipped model by name or a model file (``.safetensors`` or ``.onnx``) into a :class:`Predictor`.

    Args:
        name_or_path: a shipped model name or a model file.
        device: "cpu" or a torch device (the ONNX path runs on the CPU only).
        batch_size: images per forward pass.
        backend: "torch" (eager PyTorch, channels-last), "onnx" (ONNX Runtime; a ``.safetensors``
            model is exported once to :func:`fashionlens.inference.export.cache_dir`) or "auto":
            ONNX Runtime on the CPU when it is installed and was measured faster for this model
            (measured once, at export, and remembered), else PyTorch.
        threads: ONNX Runtime intra-op threads (default: the cores this process may use); a
            process that shares its machine with other inference workers (a Ray actor) sets it.

    Raises:
        BackendError: unknown backend, or a backend the file or device cannot serve (a ValueError).
        ModelNotFoundError: no such file or shipped model (a FileNotFoundError).
        CheckpointError: the model file is missing, corrupt or was tampered with.
    """
    if backend not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = resolve_model_path(name_or_path)
    on_cpu = torch.device(device).type == "cpu"
    if path.suffix == ".onnx":
        if backend == "torch" or not on_cpu:
            raise BackendError(
                f"{path}: an .onnx model runs with backend 'onnx' on the CPU only "
                "(use the .safetensors file for PyTorch)"
            )
        return _onnx_predictor(path, batch_size, threads)
    if backend == "onnx" and not on_cpu:
        raise BackendError("backend 'onnx' runs on the CPU only; use backend 'torch' for other devices")
    file = ModelFile(path)  # read once: its header, digest and weights serve every step below
    if backend == "onnx" or (backend == "auto" and on_cpu and onnxruntime_available()):
        onnx_path = _cached_export(file, required=backend == "onnx")
        if onnx_path is not None and (backend == "onnx" or _onnx_is_faster(file, onnx_path, batch_size)):
            return _onnx_predictor(onnx_path, batch_size, threads)
    return Predictor(file.model(device), file.info, device=device, batch_size=batch_size)


def _onnx_predictor(onnx_path: Path, batch_size: int, threads: int | None = None) -> Predictor:
    from fashionlens.inference.onnx_runner import OnnxRunner, read_onnx_model

    proto, info = read_onnx_model(onnx_path)
    return Predictor(
        None, info, batch_size=batch_size, runner=OnnxRunner(proto, threads=threads), backend="onnx"
    )


def _cached_export(file: ModelFile, required: bool) -> Path | None:
    """The cached ONNX export of ``file``; ``None`` (with a warning) if "auto" cannot export it."""
    from fashionlens.inference.export import cached_onnx

    if required:
        return cached_onnx(file)
    try:
        return cached_onnx(file)
    except Exception as e:  # noqa: BLE001 - "auto" falls back to PyTorch whatever went wrong
        warnings.warn(
            f"ONNX export of {file.path} failed, using PyTorch ({type(e).__name__}: {e})", stacklevel=3
        )
        return None


def _onnx_is_faster(file: ModelFile, onnx_path: Path, batch_size: int) -> bool:
    """Time both backends once per model, machine and library versions; remember the answer."""
    import onnxruntime

    from fashionlens.inference.export import read_sidecar, write_sidecar

    key = f"torch{torch.__version__}-ort{onnxruntime.__version__}-cores{cpu_cores()}-b{min(batch_size, 8)}"
    notes = read_sidecar(onnx_path)
    if key not in notes:
        onnx_pred = _onnx_predictor(onnx_path, batch_size)
        batch = torch.randn(min(batch_size, 8), 3, *file.info.data_config.input_size)
        timings = {
            name: _best_time(runner, batch)
            for name, runner in (
                ("torch", Predictor(file.model(), file.info).runner),
                ("onnx", onnx_pred.runner),
            )
        }
        notes[key] = {"seconds_per_batch": timings, "onnx_faster": timings["onnx"] < timings["torch"]}
        write_sidecar(onnx_path, notes)
        logger.info(
            "backend auto: timed %s once (batch %d): PyTorch %.3f s, ONNX Runtime %.3f s a batch; "
            "remembered in %s (--backend torch|onnx pins it)",
            file.path.name, len(batch), timings["torch"], timings["onnx"], onnx_path.with_suffix(".json"),
        )  # fmt: skip
    onnx_faster = bool(notes[key]["onnx_faster"])
    logger.debug("backend auto: %s runs on %s", file.path.name, "ONNX Runtime" if onnx_faster else "PyTorch")
    return onnx_faster


def _best_time(runner: Runner, batch: torch.Tensor, repeats: int = 3) -> float:
    runner(batch)  # warm-up: allocations, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        runner(batch)
        best = min(best, time.perf_counter() - start)
    return best
