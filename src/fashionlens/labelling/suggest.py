"""Model suggestions for the labelling page: pre-selected labels and a most-uncertain-first order.

A trained model (any ``fashionlens.load_model`` file) scores every photo still to label. The head
whose label names match the vocabulary best is used: a multi-label ``labels`` head pre-selects every
label scoring at least the model's threshold (the highest one as main); a ``styles`` head its most
likely style as main and the others at least its style threshold as subs (the shipped model's
policy); a ``category`` head pre-selects its top class when its probability is at least 0.5. Names are matched
ignoring case and ``_``/``-``/space differences; vocabulary names the model does not know get no suggestion,
and the start-up message says which.

Uncertainty (for ``--order uncertain``, a simple form of active learning): the distance of the
closest score to the decision threshold (labels head), the margin between the two best classes
(category head), the smaller of the two (styles head: which main, which subs); the smaller, the
more a label of that photo teaches the next model.

Example:
    >>> s = suggest(load_model("run/model.safetensors"), paths, vocab)   # doctest: +SKIP
    >>> s.by_photo[0].labels                                             # doctest: +SKIP
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fashionlens.errors import FashionlensError


class ModelVocabularyError(FashionlensError, ValueError):
    """A model none of whose heads names a label of the vocabulary (its scores cannot suggest any)."""


CATEGORY_MIN_PROB = 0.5


@dataclass
class Suggestion:
    """One photo's suggestion: labels to pre-select (main first) and every matched label's score."""

    main: str | None
    labels: list[str]
    scores: dict[str, float]

    def to_json(self) -> dict:
        return {"main": self.main, "labels": self.labels, "scores": self.scores}


@dataclass
class Suggestions:
    """Suggestions for a set of photos (keys: the indices passed to :func:`suggest`)."""

    head: str
    matched: list[str]  # vocabulary names the model scores
    missing: list[str]  # vocabulary names it does not
    threshold: float
    by_photo: dict[int, Suggestion] = field(default_factory=dict)
    margin: dict[int, float] = field(default_factory=dict)  # smaller = more uncertain
    errors: dict[int, str] = field(default_factory=dict)  # photos the model could not read

    def note(self) -> str:
        """One line for the terminal and the page: which labels get suggestions."""
        text = (
            f"suggestions from the model's '{self.head}' head for {len(self.matched)} of "
            f"{len(self.matched) + len(self.missing)} labels"
        )
        if self.missing:
            shown = ", ".join(self.missing[:8]) + (" ..." if len(self.missing) > 8 else "")
            text += f"; none for labels the model does not know: {shown}"
        return text


def normalise(name: str) -> str:
    """``Street_Style`` == ``street-style`` == ``street style``."""
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def match_head(label_names: dict[str, list[str]], vocab: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The model head whose names cover most of the vocabulary, and model name -> vocabulary name.

    Raises:
        ModelVocabularyError: no head of the model has a name from the vocabulary (a ValueError).
    """
    wanted = {normalise(v): v for v in vocab}
    best: tuple[str, dict[str, str]] | None = None
    for head in ("labels", "styles", "category"):
        mapping = {n: wanted[normalise(n)] for n in label_names.get(head, []) if normalise(n) in wanted}
        if mapping and (best is None or len(mapping) > len(best[1])):
            best = (head, mapping)
    if best is None:
        known = {h: names[:6] for h, names in label_names.items() if h in ("labels", "styles", "category")}
        raise ModelVocabularyError(
            f"none of the model's label names {known} is in the label list ({list(vocab)[:6]} ...); "
            "train a model on these labels or leave out --model"
        )
    return best


def _from_scores(head: str, scores: dict[str, float], threshold: float) -> tuple[Suggestion, float]:
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if head == "labels":
        chosen = [name for name, p in ranked if p >= threshold]
        margin = min(abs(p - threshold) for p in scores.values())
    elif head == "styles":
        chosen = [ranked[0][0]] + [name for name, p in ranked[1:] if p >= threshold]
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        margin = min([ranked[0][1] - second, *(abs(p - threshold) for _, p in ranked[1:])])
    else:
        chosen = [ranked[0][0]] if ranked[0][1] >= CATEGORY_MIN_PROB else []
        margin = ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else 0.0)
    return Suggestion(
        chosen[0] if chosen else None, chosen, {k: round(v, 4) for k, v in scores.items()}
    ), margin


def suggest(
    predictor,
    paths: Sequence[Path],
    vocab: Sequence[str],
    indices: Sequence[int] | None = None,
    progress: bool = True,
) -> Suggestions:
    """Score ``paths`` with ``predictor`` (a :class:`~fashionlens.inference.predictor.Predictor`).

    Args:
        predictor: the loaded model.
        paths: the photos to score.
        vocab: the session's label names.
        indices: the key of each path in the result (default 0..n-1).
        progress: show a progress bar on stderr.

    Raises:
        ValueError: the model shares no label name with the vocabulary.
    """
    from tqdm import tqdm

    head, mapping = match_head(predictor.info.label_names, vocab)
    matched = set(mapping.values())
    threshold = {"labels": predictor.tag_threshold(None), "styles": predictor.style_threshold(None)}.get(
        head, CATEGORY_MIN_PROB
    )
    result = Suggestions(
        head, [v for v in vocab if v in matched], [v for v in vocab if v not in matched], threshold
    )
    keys = list(indices) if indices is not None else list(range(len(paths)))
    n_names = len(predictor.info.label_names[head])
    stream = predictor.iter_predict([str(p) for p in paths], top_k=n_names, threshold=0.0)
    with tqdm(
        total=len(paths),
        unit="photo",
        desc="model suggestions",
        file=sys.stderr,
        disable=not progress or not paths,
    ) as bar:
        for key, pred in zip(keys, stream, strict=True):
            bar.update(1)
            if pred.error:
                result.errors[key] = pred.error
                continue
            scored = {"labels": pred.tags, "styles": pred.styles}.get(head, pred.category)
            scores = {mapping[s.label]: s.score for s in scored if s.label in mapping}
            result.by_photo[key], result.margin[key] = _from_scores(head, scores, result.threshold)
    return result


def uncertain_first(order: Sequence[int], suggestions: Suggestions) -> list[int]:
    """``order`` with the scored photos first, most uncertain (smallest margin) first; the rest after, in
    order."""
    scored = sorted((i for i in order if i in suggestions.margin), key=lambda i: (suggestions.margin[i], i))
    return scored + [i for i in order if i not in suggestions.margin]
