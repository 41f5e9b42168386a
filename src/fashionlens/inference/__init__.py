"""fashionlens.inference: the Predictor API (and model export)."""

from fashionlens.inference.predictor import Landmark, Prediction, Predictor, ScoredLabel, load_model

__all__ = ["Landmark", "Prediction", "Predictor", "ScoredLabel", "load_model"]
