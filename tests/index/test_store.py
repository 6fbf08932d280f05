"""Store: every SQL statement and file of a catalog, through its public methods."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fashionclip.errors import FashionCLIPError
from fashionclip.index.store import MetadataUpdate, ProductRow, Store


def _rows(ids: list[str], meta: dict | None = None) -> list[ProductRow]:
    m = meta if meta is not None else {"colour": "red"}
    return [ProductRow(i, f"/img/{i}.png", json.dumps(m), f"h-{i}", m) for i in ids]


@pytest.fixture
def store(tmp_path):
    store = Store.initialise(tmp_path / "cat", {"model": {"embedding_dim": 4}})
    yield store
    store.close()


def test_commit_batch_writes_segment_rows_and_columns(store):
    vectors = np.eye(4, dtype=np.float32)[:3]
    seg = store.commit_batch(vectors, _rows(["a", "b", "c"]))
    assert seg == 1 and store.columns() == ["colour"]
    assert sorted(store.product_ids()) == ["a", "b", "c"]
    assert store.slot_of("b") == 1 and store.slot_of("zzz") is None
    product = store.product("c")
    assert product is not None and (product.slot, product.image) == (2, "/img/c.png")
    assert set(store.products(["a", "c", "nope"])) == {"a", "c"}
    assert {s: p.id for s, p in store.products_at([0, 2, 99]).items()} == {0: "a", 2: "c"}
    new_meta = {"colour": "blue", "size": "M"}
    update = MetadataUpdate("a", "/img/new.png", json.dumps(new_meta), new_meta)
    assert store.commit_batch(None, [], [update]) is None
    assert store.columns() == ["colour", "size"]
    assert json.loads(store.product("a").metadata_json) == new_meta
    snap = store.load_snapshot()
    assert (snap.n_rows, snap.n_live, len(snap.segments)) == (3, 3, 1)
    np.testing.assert_array_equal(snap.vector_at(1), vectors[1])


def test_merge_segments_keeps_live_rows_only(store):
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(4, 4)), rng.normal(size=(3, 4))
    store.commit_batch(first.astype(np.float32), _rows(["a", "b", "c", "d"]))
    store.commit_batch(second.astype(np.float32), _rows(["e", "f", "g"]))
    assert store.remove_products(["b", "f", "missing"]) == 2
    before = store.load_snapshot()
    kept = {
        pid: before.vector_at(int(before.positions_in(np.array([store.slot_of(pid)]))[0]))
        for pid in ["a", "c", "d", "e", "g"]
    }
    store.merge_segments([s.id for s in before.segments], max_rows=3)
    after = store.load_snapshot()
    assert [s.n_rows for s in after.segments] == [3, 2] and after.n_rows == after.n_live == 5
    for pid, vector in kept.items():
        slot = store.slot_of(pid)
        assert slot is not None
        np.testing.assert_array_equal(
            after.vector_at(int(after.positions_in(np.array([slot]))[0])), vector
        )
    files = sorted(p.name for p in store.vectors_dir.iterdir())
    assert files == sorted(s.file for s in after.segments)


def test_ann_registration_and_report(store, tmp_path):
    store.commit_batch(np.eye(4, dtype=np.float32)[:2], _rows(["a", "b"]))
    seg_ids = [s.id for s in store.load_snapshot().segments]
    meta = {"file": "x-1.index", "segments": seg_ids, "size": 2}
    store.set_ann(meta, lambda path: path.write_bytes(b"one"), seg_ids)
    assert store.get_meta("ann") == meta and (store.root / "ann" / "x-1.index").is_file()
    store.set_ann({**meta, "file": "x-2.index"}, lambda path: path.write_bytes(b"two"), seg_ids)
    assert sorted(p.name for p in (store.root / "ann").iterdir()) == ["x-2.index"]
    with pytest.raises(FashionCLIPError, match="compacted"):
        store.set_ann({**meta, "file": "x-3.index"}, lambda path: path.write_bytes(b""), [99])
    assert store.remove_orphans() == []  # the registered ANN file is not an orphan
    store.drop_ann()
    assert store.get_meta("ann") is None and list((store.root / "ann").iterdir()) == []
    store.write_report({"added": 2})
    assert json.loads((store.root / "index-report.json").read_text()) == {"added": 2}


def test_positions_in_marks_outside_slots(store):
    store.commit_batch(np.eye(4, dtype=np.float32)[:2], _rows(["a", "b"]))
    store.commit_batch(np.eye(4, dtype=np.float32)[2:], _rows(["c", "d"]))
    snap = store.load_snapshot()
    assert list(snap.positions_in(np.array([0, 3, 4, -1]))) == [0, 3, -1, -1]
    assert list(snap.slots_of_positions(np.array([1, 2]))) == [1, 2]
