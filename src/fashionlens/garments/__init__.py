"""Garments of a photo from its per-pixel garment-group label map, pure numpy.

* :mod:`~fashionlens.garments.instances`: the label map -> :class:`Garment` instances (regions of a group
  joined across small gaps, fragments dropped, one garment per pair group such as shoes).
* :mod:`~fashionlens.garments.rle`: COCO run-length encoding of masks (the strings of ``pycocotools``).
* :mod:`~fashionlens.garments.matching`: found garments scored against true ones (recall, precision).
"""

from fashionlens.garments.instances import Garment, GarmentError, box_iou, garments_from_labels
from fashionlens.garments.matching import garment_detection_report, match_garments
from fashionlens.garments.rle import RLEError, decode_rle, encode_rle, rle_area

__all__ = [
    "Garment",
    "GarmentError",
    "RLEError",
    "box_iou",
    "decode_rle",
    "encode_rle",
    "garment_detection_report",
    "garments_from_labels",
    "match_garments",
    "rle_area",
]
