"""Vector-index backends on their own: exact and usearch agree; save/load round trips;
the ``ann`` meta row keeps its old shape."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from fashionclip.errors import FashionCLIPError
from fashionclip.index import Catalog
from fashionclip.index.backends import BACKENDS, AnnInfo, ExactIndex, backend_class

LEGACY_ANN = {
    "file": "usearch-0123456789ab.index",
    "segments": [1, 2],
    "size": 300,
    "dtype": "f16",
    "connectivity": 16,
    "expansion_add": 128,
    "expansion_search": 64,
    "built_at": "2026-01-01T00:00:00+0000",
    "seconds": 0.5,
}


def _queries(vectors: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(9)
    return vectors[:10] + 0.05 * rng.normal(size=(10, vectors.shape[1])).astype(np.float32)


def test_exact_backend_matches_brute_force(vector_catalog):
    cat, vectors = vector_catalog
    snap = cat.snapshot()
    index = ExactIndex(cat.embedding_dim)
    index.build(snap)
    assert index.size == 300
    for q in _queries(vectors):
        positions, scores = index.search(snap, q, 5)
        expected = np.argsort(-(vectors @ q), kind="stable")[:5]
        assert list(positions) == list(expected)
        np.testing.assert_allclose(scores, (vectors @ q)[expected], rtol=1e-5)
    candidates = np.arange(0, 300, 2)
    positions, _ = index.search(snap, vectors[0], 5, candidates=candidates, exclude=0)
    assert len(positions) == 5 and all(p % 2 == 0 and p != 0 for p in positions)


def test_usearch_agrees_with_exact_and_round_trips(vector_catalog, tmp_path):
    pytest.importorskip("usearch")
    cat, vectors = vector_catalog
    snap = cat.snapshot()
    exact = ExactIndex(cat.embedding_dim)
    ann = backend_class("usearch")(cat.embedding_dim, {"connectivity": 8})
    ann.build(snap)
    assert ann.size == 300 and ann.params["connectivity"] == 8
    path = tmp_path / "u.index"
    ann.save(path)
    info = AnnInfo("usearch", path.name, ann.segments, ann.size, dict(ann.params))
    loaded = backend_class("usearch").load(path, cat.embedding_dim, info)
    overlap = []
    for q in _queries(vectors):
        want, _ = exact.search(snap, q, 10)
        got, scores = ann.search(snap, q, 10)
        again, _ = loaded.search(snap, q, 10)
        assert list(got) == list(again)
        np.testing.assert_allclose(scores, vectors[got] @ q, rtol=1e-4)  # exact re-scoring
        overlap.append(len(set(want) & set(got)) / 10)
    assert np.mean(overlap) >= 0.9


def test_exact_backend_save_load(tmp_path, vector_catalog):
    cat, _ = vector_catalog
    index = ExactIndex(cat.embedding_dim)
    index.build(cat.snapshot())
    index.save(tmp_path / "e.index")
    info = AnnInfo("exact", "e.index", index.segments, index.size)
    loaded = ExactIndex.load(tmp_path / "e.index", cat.embedding_dim, info)
    assert (loaded.segments, loaded.size) == (index.segments, index.size)
    with pytest.raises(ValueError):
        ExactIndex.load(tmp_path / "e.index", cat.embedding_dim + 1, info)


def test_ann_info_reads_and_writes_the_old_meta_shape():
    info = AnnInfo.from_meta(LEGACY_ANN)
    assert (info.backend, info.size, info.params["connectivity"]) == ("usearch", 300, 16)
    assert info.connectivity == 16 and info.expansion_search == 64  # old attribute names
    assert list(info.to_meta().items()) == list(LEGACY_ANN.items())  # same keys, same order
    other = AnnInfo("faiss", "f.index", [1], 3, {"nlist": 4})
    assert other.to_meta()["backend"] == "faiss"
    assert AnnInfo.from_meta(other.to_meta()) == other
    nested = {
        "backend": "faiss",
        "file": "f.index",
        "segments": [1],
        "size": 3,
        "params": {"nlist": 4},
    }
    assert AnnInfo.from_meta(nested).params == {"nlist": 4}
    with pytest.raises(AttributeError):
        _ = info.nonsense


def test_registry_and_catalog_build_with_exact_backend(vector_catalog):
    cat, vectors = vector_catalog
    assert set(BACKENDS) >= {"exact", "usearch"}
    with pytest.raises(FashionCLIPError, match="unknown vector index backend 'nope'"):
        backend_class("nope")
    with pytest.raises(FashionCLIPError, match="unknown exact parameter"):
        cat.build_ann(backend="exact", connectivity=3)
    info = cat.build_ann(backend="exact")
    assert cat.ann_info == info and info.file.startswith("exact-")
    raw = _raw_ann_meta(cat)
    assert raw["backend"] == "exact"
    q = vectors[4]
    via_index = [h.id for h in cat.search(vector=q, k=5, exact=False)]
    assert via_index == [h.id for h in cat.search(vector=q, k=5, exact=True)]


def test_legacy_ann_meta_of_an_old_catalog_opens(vector_catalog):
    pytest.importorskip("usearch")
    cat, vectors = vector_catalog
    info = cat.build_ann(connectivity=8)
    raw = _raw_ann_meta(cat)
    assert list(raw) == list(LEGACY_ANN)  # the on-disk shape did not change
    path = cat.path
    cat.close()
    reopened = Catalog.open(path)
    assert reopened.ann_info == info and reopened.describe()["ann"] == raw
    assert len(reopened.search(vector=vectors[0], k=5, exact=False)) == 5
    reopened.close()


def _raw_ann_meta(cat: Catalog) -> dict:
    import json

    con = sqlite3.connect(cat.path / "catalog.sqlite")
    try:
        (value,) = con.execute("SELECT value FROM meta WHERE key = 'ann'").fetchone()
    finally:
        con.close()
    return json.loads(value)


def test_parallel_scan_matches_the_serial_scan(vector_catalog, monkeypatch):
    from fashionclip.index.backends import exact

    cat, vectors = vector_catalog
    snap = cat.snapshot()
    q = vectors[3]
    serial = exact.scan_scores(snap, q)
    monkeypatch.setattr(exact, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(exact, "SCAN_THREADS", 3)
    monkeypatch.setattr(exact, "_BLOCK_ROWS", 7)  # many blocks, a short last one
    parallel = exact.scan_scores(snap, q)
    np.testing.assert_allclose(parallel, serial, rtol=1e-6)
    np.testing.assert_allclose(parallel, vectors @ q, rtol=1e-5, atol=1e-6)
    positions, _ = exact.top_k(snap, q, 5, None, None)
    assert list(positions) == list(np.argsort(-(vectors @ q), kind="stable")[:5])
