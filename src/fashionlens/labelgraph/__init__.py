"""Label vocabulary tools for the ML-GCN head: the co-occurrence graph and label word embeddings.

Example:
    >>> import numpy as np
    >>> from fashionlens.labelgraph import build_label_graph, label_embeddings
    >>> graph = build_label_graph(np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0]]), tau=0.4, p=0.2)
    >>> emb = label_embeddings(["Casual", "Sexy", "Romantic"], provider="onehot")
    >>> graph.adjacency.shape, emb.shape
    ((3, 3), (3, 3))
"""

from fashionlens.labelgraph.embeddings import (
    DEFAULT_ALIASES,
    EmbeddingProvider,
    GloveProvider,
    LabelEmbeddingError,
    OneHotProvider,
    SentenceProvider,
    WordVectors,
    available_providers,
    create_provider,
    label_embeddings,
    load_glove_text,
    load_packaged_glove,
    register_provider,
    resolve_label_words,
    split_label_name,
    word_break,
)
from fashionlens.labelgraph.graph import (
    GRAPH_KINDS,
    LabelGraph,
    binarize,
    build_label_graph,
    conditional_probability,
    cooccurrence,
    correlation_matrix,
    normalize_adjacency,
)

__all__ = [
    "DEFAULT_ALIASES",
    "GRAPH_KINDS",
    "EmbeddingProvider",
    "GloveProvider",
    "LabelEmbeddingError",
    "LabelGraph",
    "OneHotProvider",
    "SentenceProvider",
    "WordVectors",
    "available_providers",
    "binarize",
    "build_label_graph",
    "conditional_probability",
    "cooccurrence",
    "correlation_matrix",
    "create_provider",
    "label_embeddings",
    "load_glove_text",
    "load_packaged_glove",
    "normalize_adjacency",
    "register_provider",
    "resolve_label_words",
    "split_label_name",
    "word_break",
]
