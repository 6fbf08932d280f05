"""Filtered search on PCA-reduced vectors (backends/reduced.py) and the three-way cost rule
that picks it (ann.choose)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import clustered
from fashionclip.index import Catalog
from fashionclip.index import ann as ann_life
from fashionclip.index.backends import reduced as reduced_mod
from fashionclip.index.backends.exact import top_k
from fashionclip.index.backends.reduced import ReducedIndex

DIM = 32


def low_rank(n: int, seed: int, rank: int = 6) -> np.ndarray:
    """Unit rows near a ``rank``-dimensional subspace (as embeddings are: most of their
    variance lies in a few directions)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, rank)) @ np.random.default_rng(0).normal(size=(rank, DIM))
    rows += 0.05 * rng.normal(size=(n, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _catalog(tmp_path, n: int = 2000, seed: int = 1, name: str = "red") -> Catalog:
    identity = {"name": "synthetic", "kind": "test", "embedding_dim": DIM, "fingerprint": "s"}
    cat = Catalog.create(tmp_path / name, identity)
    cat.ann_policy = ann_life.AnnPolicy(min_products=None)
    _add(cat, low_rank(n, seed), 0)
    return cat


def _add(cat: Catalog, vectors: np.ndarray, start: int) -> None:
    ids = [f"v{start + i}" for i in range(len(vectors))]
    meta = [{"tenth": (start + i) % 10} for i in range(len(ids))]
    cat.add_embeddings(ids, vectors, meta)


@pytest.fixture
def small_rerank(monkeypatch):
    """Re-score only 20 rows, so that the reduced scores decide on small catalogs."""
    monkeypatch.setattr(reduced_mod, "RERANK", 20)
    monkeypatch.setattr(reduced_mod, "RERANK_PER_K", 2)


def test_reduced_search_gives_exact_scores_and_high_recall(tmp_path, small_rerank):
    cat = _catalog(tmp_path)
    snap = cat.snapshot()
    index = ReducedIndex(DIM, {"dims": 8})
    allowed = np.flatnonzero(np.arange(snap.n_rows) % 10 == 3)  # 200 rows, 20 re-scored
    queries = low_rank(30, seed=2)
    overlap = []
    for i, q in enumerate(queries):
        exclude = int(allowed[i])
        positions, scores = index.search(snap, q, 5, allowed, exclude)
        want, _ = top_k(snap, q, 5, allowed, exclude)
        assert len(positions) == 5 and exclude not in positions
        assert set(positions) <= set(allowed)
        exact = np.array([snap.vector_at(int(p)) @ q for p in positions])
        np.testing.assert_allclose(scores, exact, rtol=1e-5, atol=1e-6)  # exact scores
        assert list(scores) == sorted(scores, reverse=True)
        overlap.append(len(set(positions) & set(want)) / 5)
    assert len(overlap) == 30 and np.mean(overlap) >= 0.95
    assert index.fitted
    cat.close()


def test_small_allowed_sets_are_scored_exactly(tmp_path):
    cat = _catalog(tmp_path, n=600)
    snap = cat.snapshot()
    index = ReducedIndex(DIM, {"dims": 2})  # a poor projection: must not matter here
    allowed = np.arange(0, 600, 3)  # 200 rows <= RERANK: all re-scored
    for q in clustered(5, DIM, seed=3):
        got, _ = index.search(snap, q, 10, allowed)
        want, _ = top_k(snap, q, 10, allowed, None)
        assert list(got) == list(want)
    assert not index.fitted  # nothing to reduce: no fit, no projection
    cat.close()


def test_filtered_rows_are_reused_per_generation_and_checked(tmp_path, small_rerank, monkeypatch):
    cat = _catalog(tmp_path)
    snap = cat.snapshot()
    index = ReducedIndex(DIM, {"dims": 8})
    calls = []
    real = reduced_mod._gather_reduced
    monkeypatch.setattr(
        reduced_mod, "_gather_reduced", lambda *a: calls.append(len(a[2])) or real(*a)
    )
    q = clustered(1, DIM, seed=4)[0]
    a = np.arange(0, 2000, 4)
    index.search(snap, q, 5, a)
    index.search(snap, q, 5, a)
    assert calls == [500]  # the same filter again: reused
    # Same length, first, middle and last position, other rows: must not be reused.
    b = a.copy()
    b[1] += 1
    got, _ = index.search(snap, q, 5, b)
    assert calls == [500, 500]
    assert set(got) <= set(b)
    _add(cat, clustered(100, DIM, seed=5), 2000)  # a write: new generation
    new = cat.snapshot()
    index.search(new, q, 5, a)
    assert calls == [500, 500, 500]
    cat.close()


def test_segment_projections_follow_adds_and_compaction(tmp_path, small_rerank):
    cat = _catalog(tmp_path, n=500)
    index = ReducedIndex(DIM, {"dims": 8})
    q = clustered(1, DIM, seed=6)[0]
    index.search(cat.snapshot(), q, 5, np.arange(0, 500, 2))
    first = index.projected_segments()
    assert len(first) == 1
    _add(cat, clustered(300, DIM, seed=7), 500)
    snap = cat.snapshot()
    got, _ = index.search(snap, q, 5, np.arange(0, 800, 2))
    second = index.projected_segments()
    assert len(second) == 2 and first[0] in second  # only the new segment projected
    assert list(got) == list(top_k(snap, q, 5, np.arange(0, 800, 2), None)[0])
    cat.remove([f"v{i}" for i in range(0, 100)])
    cat.compact()
    snap = cat.snapshot()
    allowed = np.flatnonzero(snap.live)[::2]
    index.search(snap, q, 5, allowed)
    keys = index.projected_segments()
    assert keys == sorted((s.id, s.file, s.n_rows) for s in snap.segments)  # old ones dropped
    cat.close()


class _Hnsw:
    """Stands in for a loaded HNSW index in the cost rule."""

    params = {"expansion_search": 2048}


class _Snap:
    n_live = 1_000_000


def _pick(n: int | None, exact: bool | None = None, with_reduced: bool = True) -> str:
    hnsw, red = _Hnsw(), ReducedIndex(DIM)
    allowed = None if n is None else np.arange(n)
    got = ann_life.choose(_Snap(), allowed, exact, hnsw, red if with_reduced else None)  # type: ignore[arg-type]
    return "exact" if got is None else "ann" if got is hnsw else "reduced"


def test_cost_rule_at_a_million_products():
    assert _pick(None) == "ann"  # unfiltered
    assert _pick(500) == "exact"  # 0.05%: exact gather
    assert _pick(1_200) == "reduced"  # 0.12%
    assert _pick(55_000) == "reduced"  # 5.5%
    assert _pick(400_000) == "ann"  # 40%: HNSW over-fetch
    assert _pick(55_000, exact=True) == "exact"
    assert _pick(55_000, exact=False) == "ann"  # exact=False: the HNSW index, as before
    assert _pick(55_000, with_reduced=False) == "ann"  # without it: the two-way rule
    assert _pick(2_000, with_reduced=False) == "exact"
    costs = ann_life.filter_costs(_Hnsw(), 1_000_000, 55_000)  # type: ignore[arg-type]
    assert costs["reduced"] < costs["ann"] < costs["exact"]


def test_catalog_search_uses_the_reduced_scan_for_mid_filters(tmp_path, small_rerank, monkeypatch):
    pytest.importorskip("usearch")
    monkeypatch.setattr(ann_life, "REDUCED_FIXED_COST", 0.0)  # small catalog: reduced pays
    cat = _catalog(tmp_path, n=3000)
    cat.build_ann()
    queries = clustered(20, DIM, seed=8)
    overlap = []
    for q in queries:
        want = [h.id for h in cat.search(vector=q, k=5, filters={"tenth": 3}, exact=True)]
        got = cat.search(vector=q, k=5, filters={"tenth": 3})
        assert all(int(h.id[1:]) % 10 == 3 for h in got) and len(got) == 5
        overlap.append(len({h.id for h in got} & set(want)) / 5)
    assert cat._ann.reduced.fitted  # the reduced scan answered
    assert len(overlap) == 20 and np.mean(overlap) >= 0.95
    like = cat.search(like="v3", k=5, filters={"tenth": 3})
    assert "v3" not in [h.id for h in like] and len(like) == 5
    cat.close()


def test_warm_up_fills_the_reduced_vectors_before_the_first_query(tmp_path):
    """A server warms the catalog up at start: the ANN index opened and the reduced vectors
    projected, so that the first filtered query does not pay for them (3-6 s at 1M)."""
    pytest.importorskip("usearch")
    cat = _catalog(tmp_path, n=600)
    assert cat.warm_up() is False  # no ANN index: nothing to warm
    cat.build_ann()
    assert not cat._ann.reduced.fitted
    assert cat.warm_up() is True
    assert cat._ann.reduced.fitted and cat._ann.reduced.projected_segments()
    cat.close()
