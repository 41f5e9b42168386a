"""The data config a model carries: everything needed to turn a photo into its input tensor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from fashionlens.errors import ConfigError

RESIZE_MODES = ("squash", "letterbox")


def check_resize(resize: str, max_stretch: float) -> None:
    """Raise :class:`ConfigError` (a ValueError) unless ``resize`` is a known mode and ``max_stretch`` a
    number >= 1."""
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if isinstance(max_stretch, bool) or not isinstance(max_stretch, (int, float)) or max_stretch < 1:
        raise ConfigError(f"max_stretch must be a number >= 1, got {max_stretch!r}")


@dataclass(frozen=True)
class DataConfig:
    """Input geometry and normalisation of a model (timm's "pretrained_cfg" in miniature).

    Args:
        input_size: (height, width) of the network input in pixels.
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel standard deviation divided by after that.
        interpolation: resize filter name ("bilinear" or "bicubic").
        resize: how a photo becomes ``input_size``: "squash" stretches it to fill the input (the
            aspect ratio is lost: a landscape photo in a portrait input is squeezed sideways);
            "letterbox" scales it to fit inside and pads the rest with the mean colour.
        max_stretch: letterbox only: first stretch the photo towards the input's aspect ratio by up
            to this factor, then pad what remains (1.0: never stretch; 1.15: a 2:3 photo fills a
            320 x 224 input, a 4:3 landscape photo is stretched 1.15x and padded).
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    resize: str = "squash"
    max_stretch: float = 1.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        check_resize(self.resize, self.max_stretch)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        return cls(
            input_size=tuple(d.get("input_size", (224, 224))),
            mean=tuple(d.get("mean", (0.485, 0.456, 0.406))),
            std=tuple(d.get("std", (0.229, 0.224, 0.225))),
            interpolation=d.get("interpolation", "bilinear"),
            resize=d.get("resize", "squash"),  # models saved before letterboxing existed squash
            max_stretch=float(d.get("max_stretch", 1.0)),
            extra=dict(d.get("extra", {})),
        )

    def replace(self, **kw) -> DataConfig:
        d = self.to_dict()
        d.update(kw)
        return DataConfig.from_dict(d)
