"""The ANN index's life in a catalog: automatic build above a threshold, incremental
extension, rebuild rules, filtered search, bad files, recall for text-like queries."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from conftest import clustered
from fashionclip.errors import FashionCLIPError
from fashionclip.index import Catalog
from fashionclip.index.ann import MIN_PRODUCTS_ENV, AnnPolicy, usable_info

pytest.importorskip("usearch")
DIM = 16


def _catalog(tmp_path, threshold: int | None = 50) -> Catalog:
    identity = {"name": "synthetic", "kind": "test", "embedding_dim": DIM, "fingerprint": "s"}
    cat = Catalog.create(tmp_path / "ann", identity)
    cat.ann_policy = AnnPolicy(min_products=threshold, params=(("connectivity", 8),))
    return cat


def _add(cat: Catalog, vectors: np.ndarray, start: int, **kwargs) -> list[str]:
    ids = [f"v{start + i}" for i in range(len(vectors))]
    meta = [{"tenth": (start + i) % 10, "rare": (start + i) % 97 == 0} for i in range(len(ids))]
    cat.add_embeddings(ids, vectors, meta, **kwargs)
    return ids


def _ids(hits) -> list[str]:
    return [h.id for h in hits]


def _ann_file(cat: Catalog):
    info = cat.ann_info
    assert info is not None
    return cat.path / "ann" / info.file


def test_builds_automatically_above_the_threshold_and_extends_without_rebuild(
    tmp_path, monkeypatch
):
    from usearch.index import Index

    from fashionclip.index.backends.usearch import UsearchIndex

    cat = _catalog(tmp_path)
    vectors = clustered(120, DIM, seed=3)
    _add(cat, vectors[:40], 0)
    assert cat.ann_info is None  # below the threshold: exact only
    _add(cat, vectors[40:60], 40)
    first = cat.ann_info
    assert first is not None and first.size == 60
    first_bytes = _ann_file(cat).stat().st_size

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the index was rebuilt instead of extended")

    monkeypatch.setattr(UsearchIndex, "build", no_rebuild)
    _add(cat, vectors[60:120], 60)
    second = cat.ann_info
    assert second is not None and second.size == 120 and second.file != first.file
    assert _ann_file(cat).stat().st_size > first_bytes  # the file grew
    assert not (cat.path / "ann" / first.file).exists()  # the old file is gone
    raw = Index.restore(str(_ann_file(cat)), view=True)
    slots = cat.store.connection().execute("SELECT slot FROM products ORDER BY slot")
    assert all(raw.contains(int(s)) for (s,) in slots)  # old keys stay, new ones are in
    overlap = [
        len(set(_ids(cat.search(vector=q, k=5))) & set(_ids(cat.search(vector=q, k=5, exact=True))))
        for q in vectors[:20]
    ]
    assert len(overlap) == 20 and np.mean(overlap) >= 4.5  # approximate, but close
    cat.close()


def test_index_run_reports_the_automatic_build(tmp_path, fake_model):
    root = tmp_path / "imgs"
    root.mkdir()
    from fashionclip.data.tables import ProductRecord

    records = []
    for i in range(6):
        path = root / f"{i}.jpg"
        path.write_bytes(bytes([i + 1]) * 16)
        records.append(ProductRecord(id=f"p{i}", image=str(path), metadata={}))
    cat = Catalog.create(tmp_path / "cat", fake_model())
    cat.ann_policy = AnnPolicy(min_products=5)
    report = cat.index(records, write_report=False)
    assert report.ann is not None and report.ann["action"] == "built"
    assert cat.ann_info is not None and cat.ann_info.size == 6
    cat.close()


def test_filtered_search_returns_the_true_filtered_top_k(tmp_path):
    cat = _catalog(tmp_path)
    vectors = clustered(400, DIM, seed=4)
    _add(cat, vectors, 0)
    assert cat.ann_info is not None
    queries = clustered(10, DIM, seed=5)
    found = total = 0
    for filters in ({"rare": True}, {"tenth": 3}, {"tenth": [1, 2, 3]}):
        for q in queries:
            want = _ids(cat.search(vector=q, k=5, filters=filters, exact=True))
            assert want  # the filter keeps something
            # The default path (the cost rule's choice) is exact at this size.
            assert _ids(cat.search(vector=q, k=5, filters=filters)) == want
            # HNSW forced: candidates are picked by the index's (bf16/f16) distances, so a
            # near-tie at the over-fetch boundary may swap one hit; recall is the contract.
            got = _ids(cat.search(vector=q, k=5, filters=filters, exact=False))
            assert len(got) == len(want)
            found, total = found + len(set(got) & set(want)), total + len(want)
    assert found / total >= 0.95
    cat.close()


def test_missing_or_unreadable_index_file_falls_back_to_exact_then_rebuilds(tmp_path, caplog):
    cat = _catalog(tmp_path)
    vectors = clustered(100, DIM, seed=6)
    _add(cat, vectors, 0)
    path = _ann_file(cat)
    q = vectors[7]
    want = _ids(cat.search(vector=q, k=5, exact=True))
    for damage in ("missing", "garbage"):
        cat.close()
        if damage == "missing":
            path.unlink()
        else:
            path.write_bytes(b"an index from an older format" * 10)
        cat = Catalog.open(tmp_path / "ann")
        cat.ann_policy = AnnPolicy(min_products=50)
        assert _ids(cat.search(vector=q, k=5)) == want  # exact, not a wrong answer
        with pytest.raises(FashionCLIPError) as err:
            cat.search(vector=q, k=5, exact=False)
        assert "\n" not in str(err.value) and "ANN index" in str(err.value)
        done = cat.update_ann()
        assert done is not None and done.action == "built"
        path = _ann_file(cat)
        assert _ids(cat.search(vector=q, k=5, exact=False)) == want
    cat.close()


def test_an_ann_record_of_an_older_format_is_ignored_then_rebuilt(tmp_path):
    cat = _catalog(tmp_path)
    _add(cat, clustered(60, DIM, seed=7), 0)
    cat.close()
    con = sqlite3.connect(tmp_path / "ann" / "catalog.sqlite")
    con.execute("UPDATE meta SET value = ? WHERE key = 'ann'", (json.dumps({"size": 3}),))
    con.commit()
    con.close()
    cat = Catalog.open(tmp_path / "ann")
    cat.ann_policy = AnnPolicy(min_products=50)
    assert cat.ann_info is None and usable_info(cat.snapshot()) is None
    assert len(cat.search(vector=np.ones(DIM, np.float32), k=3)) == 3
    done = cat.update_ann()
    assert done is not None and done.action == "built" and done.info.size == 60
    cat.close()


def test_tombstones_and_compaction_trigger_a_rebuild(tmp_path):
    cat = _catalog(tmp_path)
    ids = _add(cat, clustered(100, DIM, seed=8), 0)
    cat.remove(ids[:10])
    done = cat.update_ann()
    assert done is not None and done.action == "kept"  # 10% dead: keep, skip at search
    assert "v0" not in _ids(cat.search(vector=cat.vector("v50"), k=100))
    cat.remove(ids[10:40])
    done = cat.update_ann()
    assert done is not None and done.action == "built" and done.info.size == 60
    cat.compact()
    assert cat.ann_info is None  # slots rewritten: the index no longer applies
    done = cat.update_ann()
    assert done is not None and done.action == "built"
    cat.close()


def test_exact_below_threshold_and_on_request(tmp_path):
    cat = _catalog(tmp_path, threshold=None)
    vectors = clustered(80, DIM, seed=9)
    _add(cat, vectors, 0)
    assert cat.ann_info is None and cat.update_ann() is None
    cat.build_ann()  # explicit build works whatever the policy
    assert cat.ann_info is not None and cat.ann_info.params["connectivity"] == 8
    q = vectors[3]
    assert _ids(cat.search(vector=q, k=5, exact=True)) == _ids(cat.search(vector=q, k=5))
    cat.close()


def test_policy_from_environment(monkeypatch):
    monkeypatch.delenv(MIN_PRODUCTS_ENV, raising=False)
    assert AnnPolicy.from_env().min_products == AnnPolicy().min_products
    monkeypatch.setenv(MIN_PRODUCTS_ENV, "off")
    assert AnnPolicy.from_env().min_products is None
    monkeypatch.setenv(MIN_PRODUCTS_ENV, "5000")
    assert AnnPolicy.from_env().min_products == 5000
    monkeypatch.setenv(MIN_PRODUCTS_ENV, "lots")
    with pytest.raises(FashionCLIPError, match=MIN_PRODUCTS_ENV):
        AnnPolicy.from_env()


def test_recall_for_text_like_queries_offset_from_the_data(tmp_path):
    """Queries far from every vector (a constant offset, as text is from images)."""
    dim = 32
    identity = {"name": "synthetic", "kind": "test", "embedding_dim": dim, "fingerprint": "s"}
    cat = Catalog.create(tmp_path / "recall", identity)
    cat.ann_policy = AnnPolicy(min_products=1000)
    vectors = clustered(4000, dim, seed=10, clusters=60)
    cat.add_embeddings([f"v{i}" for i in range(4000)], vectors, update_ann=False)
    assert cat.update_ann() is not None
    rng = np.random.default_rng(11)
    offset = rng.normal(size=dim)
    offset *= 2.0 / np.linalg.norm(offset)
    queries = vectors[rng.choice(4000, 50)] + 0.3 * rng.normal(size=(50, dim)) + offset
    overlap = []
    for q in queries.astype(np.float32):
        want = set(_ids(cat.search(vector=q, k=10, exact=True)))
        got = set(_ids(cat.search(vector=q, k=10, exact=False)))
        overlap.append(len(want & got) / 10)
    assert len(overlap) == 50 and np.mean(overlap) >= 0.98
    cat.close()


def test_default_vector_storage_is_bf16_where_the_cpu_has_a_kernel(tmp_path, monkeypatch):
    from fashionclip.index.backends import usearch as backend

    backend.default_dtype.cache_clear()
    expected = backend.default_dtype(DIM)
    assert expected in ("bf16", "f16")
    assert backend.UsearchIndex(DIM).params["dtype"] == expected
    assert backend.UsearchIndex(DIM, {"dtype": "f16"}).params["dtype"] == "f16"
    cat = _catalog(tmp_path)
    _add(cat, clustered(60, DIM, seed=12), 0)
    info = cat.ann_info
    assert info is not None and info.params["dtype"] == expected  # recorded concretely

    class NoKernel:
        hardware_acceleration = "auto"

        def __init__(self, **kwargs):
            pass

    monkeypatch.setattr(backend, "require_usearch", lambda: NoKernel)
    backend.default_dtype.cache_clear()
    try:
        assert backend.default_dtype(DIM) == "f16"  # a serial bf16 loop would be slower
    finally:
        backend.default_dtype.cache_clear()
    cat.close()
