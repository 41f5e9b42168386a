"""fashionlens.metrics: each metric once as a pure function, report bundles, and a DDP collector.

Each function's docstring gives its exact definition (the seeds' evaluation protocols).
"""

from fashionlens.metrics.bootstrap import BootstrapResult, paired_bootstrap
from fashionlens.metrics.collector import ScoreCollector
from fashionlens.metrics.functional import (
    attribute_recall_at_k,
    average_precision,
    confusion_matrix,
    expected_calibration_error,
    landmark_detection_rate,
    landmark_normalized_error,
    mean_average_precision,
    multilabel_prf,
    per_label_topk_recall,
    segmentation_scores,
    topk_accuracy,
    topk_recall,
)
from fashionlens.metrics.reports import (
    ATTRIBUTE_TYPES,
    classification_report,
    deepfashion_report,
    multilabel_report,
    parsing_report,
)

__all__ = [
    "ATTRIBUTE_TYPES",
    "BootstrapResult",
    "ScoreCollector",
    "attribute_recall_at_k",
    "average_precision",
    "classification_report",
    "confusion_matrix",
    "deepfashion_report",
    "expected_calibration_error",
    "landmark_detection_rate",
    "landmark_normalized_error",
    "mean_average_precision",
    "multilabel_prf",
    "multilabel_report",
    "parsing_report",
    "segmentation_scores",
    "paired_bootstrap",
    "per_label_topk_recall",
    "topk_accuracy",
    "topk_recall",
]
