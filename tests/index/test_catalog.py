"""The persisted catalog: incremental indexing, bad images, crashes, search, filters, threads."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionclip.data.tables import ProductRecord, read_image_folder
from fashionclip.errors import FashionCLIPError, InvalidQueryError, ModelMismatchError
from fashionclip.index import (
    Catalog,
    CatalogExistsError,
    CatalogModel,
    CatalogNotFoundError,
    ProductNotFoundError,
)

COLOURS = ["Red", "Blue", "Black", "White"]
TYPES = ["Heels", "Flats", "Shirts", "Watches", "Jeans"]


class RecordingModel:
    """Wraps a real model: counts the images it embeds and can crash after some calls."""

    def __init__(self, model, crash_after_calls: int | None = None) -> None:
        self.model = model
        self.identity = model.identity
        self.embedding_dim = model.embedding_dim
        self.crash_after_calls = crash_after_calls
        self.calls = 0
        self.embedded: list[str] = []

    def try_encode_images(self, images, batch_size=32, show_progress=False):
        if self.crash_after_calls is not None and self.calls >= self.crash_after_calls:
            raise KeyboardInterrupt("simulated Ctrl-C in the middle of a run")
        self.calls += 1
        result = self.model.try_encode_images(images, batch_size=batch_size)
        self.embedded.extend(str(images[i]) for i in result.ok_indices)
        return result

    def encode_images(self, images, **kwargs):
        return self.model.encode_images(images, **kwargs)

    def encode_text(self, texts, **kwargs):
        return self.model.encode_text(texts, **kwargs)


def make_products(folder: Path, n: int, seed: int = 0) -> list[ProductRecord]:
    """``n`` small random PNG images with metadata, written under ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        path = folder / f"p{i:03d}.png"
        pixels = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        metadata = {
            "gender": "Women" if i % 2 else "Men",
            "articleType": TYPES[i % len(TYPES)],
            "baseColour": COLOURS[i % len(COLOURS)],
            "year": 2010 + i % 3,
        }
        records.append(ProductRecord(f"p{i:03d}", path, metadata))
    return records


def bomb_png(path: Path, width: int = 20_000, height: int = 20_000) -> None:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


@pytest.fixture
def products(tmp_path) -> list[ProductRecord]:
    return make_products(tmp_path / "images", 20)


@pytest.fixture
def catalog(tmp_path, tiny_clip, products):
    cat = Catalog.create(tmp_path / "catalog", tiny_clip)
    cat.index(products, batch_size=8)
    yield cat
    cat.close()


# ------------------------------------------------------------------------------ lifecycle


def test_create_index_open(tmp_path, tiny_clip, products, catalog):
    assert len(catalog) == 20
    assert catalog.columns == ["gender", "articleType", "baseColour", "year"]
    product = catalog.get("p003")
    assert product is not None and product.metadata["articleType"] == "Watches"
    assert product.image == products[3].image and len(product.content_hash) == 64
    assert catalog.get("nope") is None and "p003" in catalog and "nope" not in catalog
    assert catalog.image_path("p003") == products[3].image
    with pytest.raises(ProductNotFoundError):
        catalog.image_path("../../etc/passwd")
    vector = catalog.vector("p003")
    expected = tiny_clip.encode_images(products[3].image)
    np.testing.assert_allclose(vector, expected, atol=1e-5)
    assert sorted(os.listdir(catalog.path / "vectors")) == ["seg-000001.npy"]
    catalog.close()

    reopened = Catalog.open(tmp_path / "catalog")  # no model: metadata work only
    assert len(reopened) == 20 and reopened.model_identity == CatalogModel.of(tiny_clip)
    assert reopened.describe()["products"] == 20
    with pytest.raises(FashionCLIPError, match="opened without a model"):
        reopened.search("red heels")
    assert len(reopened.search(like="p001", k=3)) == 3
    with pytest.raises(CatalogExistsError):
        Catalog.create(tmp_path / "catalog", tiny_clip)
    with pytest.raises(CatalogNotFoundError, match="no catalog"):
        Catalog.open(tmp_path / "elsewhere")


def test_model_mismatch(tmp_path, tiny_clip, catalog):
    import fashionclip
    from fashionclip.models.testing import build_tiny_clip

    other = fashionclip.load(build_tiny_clip(tmp_path / "other", seed=1), device="cpu")
    with pytest.raises(ModelMismatchError) as info:
        Catalog.open(catalog.path, other)
    message = str(info.value)
    assert tiny_clip.identity.fingerprint[:12] in message
    assert other.identity.fingerprint[:12] in message
    # Same weights loaded again (other object): accepted.
    assert len(Catalog.open(catalog.path, fashionclip.load(tiny_clip.name, device="cpu"))) == 20


# ------------------------------------------------------------------------------ re-indexing


def test_reindex_embeds_only_changes(tmp_path, tiny_clip, products, catalog):
    model = RecordingModel(tiny_clip)
    cat = Catalog.open(catalog.path, model)
    report = cat.index(products)
    assert (report.added, report.updated, report.unchanged, report.failed) == (0, 0, 20, 0)
    assert model.embedded == []

    # One image file changes: only it is embedded again; its old row becomes a tombstone.
    old_vector = cat.vector("p005")
    Image.new("RGB", (10, 12), (250, 10, 10)).save(products[5].image)
    # One product changes only metadata; another is new.
    changed = list(products)
    changed[7] = ProductRecord("p007", products[7].image, {**products[7].metadata, "year": 1999})
    changed.append(ProductRecord("new", products[0].image, {"gender": "Women", "season": "Fall"}))
    report = cat.index(changed)
    assert (report.added, report.updated, report.metadata_updated, report.unchanged) == (
        1,
        1,
        1,
        18,
    )
    assert sorted(model.embedded) == sorted([str(products[5].image), str(products[0].image)])
    assert not np.allclose(cat.vector("p005"), old_vector)
    assert cat.get("p007").metadata["year"] == 1999
    assert "season" in cat.columns
    stats = cat.stats()
    assert stats.products == 21 and stats.tombstones == 1
    saved = json.loads((cat.path / "index-report.json").read_text())
    assert saved["updated"] == 1 and saved["added"] == 1 and saved["metadata_updated"] == 1


def test_remove_and_compact(catalog):
    query = catalog.vector("p000")
    before = [r.id for r in catalog.search(vector=query, k=20)]
    assert catalog.remove(["p001", "p002", "unknown"]) == 2
    assert len(catalog) == 18 and catalog.get("p001") is None
    hits = [r.id for r in catalog.search(vector=query, k=20)]
    assert hits == [i for i in before if i not in ("p001", "p002")]
    assert catalog.stats().tombstones == 2
    report = catalog.compact()
    assert (report.rows_before, report.rows_after, report.segments_after) == (20, 18, 1)
    assert [r.id for r in catalog.search(vector=query, k=20)] == hits
    assert sorted(os.listdir(catalog.path / "vectors")) == ["seg-000002.npy"]
    assert catalog.stats().tombstones == 0


def test_each_run_adds_one_segment(tmp_path, tiny_clip):
    records = make_products(tmp_path / "img", 30)
    cat = Catalog.create(tmp_path / "cat", tiny_clip)
    cat.index(records[:20], batch_size=4, commit_every=4)  # 5 commits, merged at the end
    assert cat.stats().segments == 1
    files_before = {p.name: p.stat().st_mtime_ns for p in (cat.path / "vectors").iterdir()}
    cat.index(records, batch_size=4, commit_every=4)
    files_after = {p.name: p.stat().st_mtime_ns for p in (cat.path / "vectors").iterdir()}
    assert len(files_after) == 2 and cat.stats().segments == 2
    for name, mtime in files_before.items():  # the old segment is never rewritten
        assert files_after[name] == mtime
    assert len(cat) == 30


# ------------------------------------------------------------------------------ bad images


def test_bad_images_are_skipped_and_reported(tmp_path, tiny_clip, products):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(jpeg, format="JPEG")
    (bad / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    rng = np.random.default_rng(0)
    (bad / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(300))
    (bad / "text.jpg").write_text("this is not an image\n")
    bomb_png(bad / "bomb.png")
    broken = {
        "missing": (bad / "missing.jpg", "not found"),
        "zero": (bad / "zero.jpg", "empty"),
        "truncated": (bad / "truncated.jpg", "truncated"),
        "corrupt": (bad / "corrupt.jpg", ""),
        "text": (bad / "text.jpg", "not an image"),
        "bomb": (bad / "bomb.png", "bomb"),
    }
    records = list(products[:5])
    for i, (pid, (path, _)) in enumerate(broken.items()):
        records.insert(i, ProductRecord(pid, path, {"gender": "Women"}))
    cat = Catalog.create(tmp_path / "cat", tiny_clip)
    report = cat.index(records, batch_size=4)
    assert (report.added, report.failed, report.total) == (5, 6, 11)
    reasons = {f.id: f.reason for f in report.failures}
    assert set(reasons) == set(broken)
    for pid, (path, words) in broken.items():
        assert words in reasons[pid], (pid, reasons[pid])
        assert next(f for f in report.failures if f.id == pid).path == str(path)
    assert len(cat) == 5 and cat.get("bomb") is None
    saved = json.loads((cat.path / "index-report.json").read_text())
    assert saved["failed"] == 6 and {f["id"] for f in saved["failures"]} == set(broken)
    # A later run retries them (still failing) and skips the good ones.
    again = cat.index(records)
    assert (again.unchanged, again.failed, again.added) == (5, 6, 0)


def test_indexed_product_keeps_vector_when_new_image_is_bad(tmp_path, tiny_clip, products):
    cat = Catalog.create(tmp_path / "cat", tiny_clip)
    cat.index(products[:3])
    vector = cat.vector("p001")
    products[1].image.write_bytes(b"garbage")
    report = cat.index(products[:3])
    assert report.failed == 1 and report.unchanged == 2
    np.testing.assert_array_equal(cat.vector("p001"), vector)


# ------------------------------------------------------------------------------ crash safety


def test_interrupted_run_keeps_finished_batches(tmp_path, tiny_clip):
    records = make_products(tmp_path / "img", 24)
    cat = Catalog.create(tmp_path / "cat", RecordingModel(tiny_clip, crash_after_calls=3))
    with pytest.raises(KeyboardInterrupt):
        cat.index(records, batch_size=4, commit_every=4)
    cat.close()
    saved = json.loads((tmp_path / "cat" / "index-report.json").read_text())
    assert saved["interrupted"] is True and saved["added"] == 12

    model = RecordingModel(tiny_clip)
    reopened = Catalog.open(tmp_path / "cat", model)
    assert len(reopened) == 12  # three committed batches of four
    assert reopened.ids() == [r.id for r in records[:12]]
    report = reopened.index(records, batch_size=4, commit_every=4)
    assert (report.added, report.unchanged) == (12, 12)
    assert len(model.embedded) == 12 and len(reopened) == 24


def test_orphan_segment_files_are_ignored_and_removed(catalog, tiny_clip):
    vectors = catalog.path / "vectors"
    np.save(vectors / "seg-000099.npy", np.ones((5, tiny_clip.embedding_dim), np.float32))
    (vectors / ".seg-000100.npy.123-abc.tmp").write_bytes(b"partial")
    path = catalog.path
    catalog.close()
    reopened = Catalog.open(path, tiny_clip)
    assert sorted(os.listdir(vectors)) == ["seg-000001.npy"]
    assert len(reopened) == 20 and len(reopened.search("red", k=50)) == 20


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import fashionclip
    from fashionclip.index import Catalog
    from fashionclip.data.tables import read_image_folder

    model = fashionclip.load(sys.argv[1], device="cpu", precision="fp32")
    real = model.try_encode_images

    def slow(images, **kwargs):  # leave time to be killed between commits
        time.sleep(0.15)
        return real(images, **kwargs)

    model.try_encode_images = slow
    catalog = Catalog.open_or_create(sys.argv[2], model)
    catalog.index(read_image_folder(sys.argv[3]), batch_size=4, commit_every=4)
    print("finished")
    """
)


def test_kill_9_mid_index_then_rerun(tmp_path, tiny_clip, tiny_clip_dir):
    make_products(tmp_path / "img", 60)
    script = tmp_path / "index.py"
    script.write_text(_KILL_SCRIPT)
    args = [
        sys.executable,
        str(script),
        str(tiny_clip_dir),
        str(tmp_path / "cat"),
        str(tmp_path / "img"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            db = tmp_path / "cat" / "catalog.sqlite"
            if db.exists() and len(list((tmp_path / "cat" / "vectors").glob("seg-*.npy"))) >= 2:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the indexing subprocess never committed a batch")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    cat = Catalog.open(tmp_path / "cat", tiny_clip)
    done = len(cat)
    # Two segment files on disk mean at least one committed batch: the second file may be an
    # orphan if the kill came between its rename and its commit (it is swept on open).
    assert 4 <= done < 60 and done % 4 == 0  # only whole committed batches
    assert len(cat.search("shirt", k=100)) == done
    report = cat.index(read_image_folder(tmp_path / "img"))
    assert report.added == 60 - done and report.unchanged == done and len(cat) == 60
    referenced = {s.file for s in cat.snapshot().segments}
    assert {p.name for p in (cat.path / "vectors").iterdir()} == referenced


# ------------------------------------------------------------------------------ search


def test_text_image_and_like_queries(catalog, products, tiny_clip):
    hits = catalog.search("red heels", k=5, mode="vector")  # the default for text is hybrid
    assert len(hits) == 5
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    expected = np.array([catalog.vector(p.id) for p in products]) @ tiny_clip.encode_text(
        "red heels"
    )
    assert [h.id for h in hits] == [products[i].id for i in np.argsort(-expected)[:5]]
    assert hits[0].metadata == catalog.get(hits[0].id).metadata

    by_path = catalog.search(products[4].image, k=1)  # a Path is an image query
    assert by_path[0].id == "p004" and by_path[0].score > 0.999
    assert catalog.search(image=str(products[4].image), k=1)[0].id == "p004"
    assert catalog.search(image=products[4].image.read_bytes(), k=1)[0].id == "p004"

    like = catalog.more_like_this("p004", k=19)
    assert "p004" not in [h.id for h in like] and len(like) == 19
    assert [h.id for h in catalog.search(like="p004", k=3)] == [h.id for h in like[:3]]
    with pytest.raises(ProductNotFoundError):
        catalog.search(like="nope")


def test_filters(catalog):
    women = catalog.search("shirt", k=50, filters={"gender": "Women"})
    assert len(women) == 10 and all(h.metadata["gender"] == "Women" for h in women)
    shoes = catalog.search("shirt", k=50, filters={"articleType": ["Heels", "Flats"]})
    assert {h.metadata["articleType"] for h in shoes} == {"Heels", "Flats"} and len(shoes) == 8
    both = catalog.search("x", k=50, filters={"gender": "Men", "articleType": ["Heels", "Flats"]})
    assert all(h.metadata["gender"] == "Men" for h in both) and len(both) == 4
    assert len(catalog.search("x", k=50, filters={"year": "2011"})) == 7  # str matches int
    assert catalog.search("x", k=50, filters={"year": 2011}) == catalog.search(
        "x", k=50, filters={"year": "2011"}
    )
    assert catalog.search("x", k=5, filters={"gender": "Nobody"}) == []
    like = catalog.search(like="p001", k=50, filters={"gender": "Women"})
    assert len(like) == 9 and "p001" not in [h.id for h in like]
    with pytest.raises(InvalidQueryError, match="known columns: gender, articleType"):
        catalog.search("x", filters={"colour": "Red"})
    with pytest.raises(InvalidQueryError, match="empty list"):
        catalog.search("x", filters={"gender": []})


def test_invalid_queries(catalog):
    for bad_k in (0, -3, 2.5, True):
        with pytest.raises(InvalidQueryError, match="k must be"):
            catalog.search("shirt", k=bad_k)
    for empty in ("", "   \n"):
        with pytest.raises(InvalidQueryError, match="empty"):
            catalog.search(empty)
    with pytest.raises(InvalidQueryError, match="exactly one"):
        catalog.search()
    with pytest.raises(InvalidQueryError, match="exactly one"):
        catalog.search(vector=np.ones(catalog.embedding_dim), like="p001")
    with pytest.raises(InvalidQueryError, match="dimension"):
        catalog.search(vector=np.ones(3))
    with pytest.raises(InvalidQueryError, match="zero"):
        catalog.search(vector=np.zeros(catalog.embedding_dim))


def test_facets(catalog):
    facets = catalog.facets()
    assert facets["gender"] == {"Men": 10, "Women": 10}
    assert facets["articleType"] == dict.fromkeys(TYPES, 4)
    assert facets["year"] == {2010: 7, 2011: 7, 2012: 6}
    assert list(catalog.facets(["year"], limit=1)["year"]) == [2010]
    catalog.remove(["p000"])
    assert catalog.facets(["gender"])["gender"] == {"Women": 10, "Men": 9}


def test_exact_search_matches_brute_force(tmp_path):
    """Vectors added directly (several segments, tombstones, filters) vs. numpy ground truth."""
    rng = np.random.default_rng(7)
    dim = 16
    identity = {"name": "synthetic", "kind": "test", "embedding_dim": dim, "fingerprint": "f0"}
    cat = Catalog.create(tmp_path / "cat", identity)
    all_vectors, all_ids, all_meta = [], [], []
    for part in range(3):
        vectors = rng.normal(size=(100, dim)).astype(np.float32)
        ids = [f"{part}-{i}" for i in range(100)]
        meta = [{"group": str(i % 7)} for i in range(100)]
        cat.add_embeddings(ids, vectors, meta)
        all_vectors.append(vectors)
        all_ids += ids
        all_meta += meta
    cat.add_embeddings(["1-5"], rng.normal(size=(1, dim)), [{"group": "3"}])  # replace
    cat.remove(["2-10", "0-0"])
    vectors = np.concatenate(all_vectors)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = dict(zip(all_ids, vectors, strict=True))
    meta = dict(zip(all_ids, all_meta, strict=True))
    truth["1-5"] = cat.vector("1-5")
    meta["1-5"] = {"group": "3"}
    del truth["2-10"], truth["0-0"]
    assert len(cat) == len(truth) == 298 and cat.stats().segments == 4
    for _ in range(5):
        q = rng.normal(size=dim).astype(np.float32)
        qn = q / np.linalg.norm(q)
        # No filter, a broad filter (full pass) and a selective one (< 25%: rows gathered).
        for filters in (None, {"group": ["3", "5"]}, {"group": ["2"]}):
            ids = [i for i in truth if filters is None or meta[i]["group"] in filters["group"]]
            scores = np.array([truth[i] @ qn for i in ids])
            expected = [ids[j] for j in np.argsort(-scores)[:10]]
            got = cat.search(vector=q, k=10, filters=filters)
            assert [h.id for h in got] == expected
            np.testing.assert_allclose(
                [h.score for h in got], np.sort(scores)[::-1][:10], atol=1e-5
            )
    assert len(cat.search(vector=q, k=1000)) == 298
    group_2 = [i for i in truth if meta[i]["group"] == "2"]
    like = cat.search(like=group_2[0], k=1000, filters={"group": "2"})
    assert sorted(h.id for h in like) == sorted(group_2[1:])
    scores = [h.score for h in like]
    assert scores == sorted(scores, reverse=True)


def test_concurrent_reads_while_writing(catalog, products):
    expected = [h.id for h in catalog.search("blue", k=5, filters={"gender": "Women"})]
    errors: list[BaseException] = []
    results: list[list[str]] = []

    def reader() -> None:
        try:
            for _ in range(30):
                hits = catalog.search("blue", k=5, filters={"gender": "Women"})
                results.append([h.id for h in hits])
                catalog.facets(["gender"])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    # Writes from the main thread meanwhile: men's products only, so women's results stay.
    for pid in ("p000", "p002", "p004"):
        catalog.remove([pid])
        catalog.index([products[int(pid[1:])]])
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 180 and all(r == expected for r in results)


# ------------------------------------------------------------------------------ ANN (optional)


def test_ann_index(tmp_path, monkeypatch):
    pytest.importorskip("usearch")
    import fashionclip.index.backends.usearch as usearch_module

    ann_calls = []
    real_search_keys = usearch_module.search_keys

    def counting_search_keys(index, q, count):
        ann_calls.append(count)
        return real_search_keys(index, q, count)

    monkeypatch.setattr(usearch_module, "search_keys", counting_search_keys)
    rng = np.random.default_rng(3)
    dim, n = 24, 3000
    centres = rng.normal(size=(60, dim))
    vectors = centres[rng.integers(0, 60, size=n)] + 0.3 * rng.normal(size=(n, dim))
    identity = {"name": "synthetic", "kind": "test", "embedding_dim": dim, "fingerprint": "a"}
    cat = Catalog.create(tmp_path / "cat", identity)
    meta = [{"half": "a" if i % 2 else "b", "tenth": str(i % 10)} for i in range(n)]
    cat.add_embeddings([f"v{i}" for i in range(n)], vectors, meta)
    with pytest.raises(FashionCLIPError, match="needs a current ANN index"):
        cat.search(vector=vectors[0], exact=False)
    info = cat.build_ann(connectivity=8)
    assert info.size == n and (cat.path / "ann" / info.file).is_file()
    assert cat.ann_info == info

    queries = centres[:20] + 0.3 * rng.normal(size=(20, dim))
    recall = []
    for q in queries:
        exact = cat.search(vector=q, k=10, exact=True)
        approx = cat.search(vector=q, k=10)  # auto: uses the ANN index
        recall.append(len({h.id for h in exact} & {h.id for h in approx}) / 10)
        scores = [h.score for h in approx]
        assert scores == sorted(scores, reverse=True)
        for hit in approx:  # scores are exact even when recall is not
            expected = cat.vector(hit.id) @ (q / np.linalg.norm(q))
            assert abs(hit.score - expected) < 1e-5
    assert np.mean(recall) >= 0.9
    assert len(ann_calls) == 20  # the automatic mode used the ANN index, exact=True did not

    # Broad filters go through the ANN index, selective ones through the exact gather.
    hits = cat.search(vector=queries[0], k=10, filters={"half": "a"}, exact=False)
    assert len(hits) == 10 and all(h.metadata["half"] == "a" for h in hits)
    calls = len(ann_calls)
    hits = cat.search(vector=queries[0], k=10, filters={"tenth": "3"})
    assert len(ann_calls) == calls
    assert [h.id for h in hits] == [
        h.id for h in cat.search(vector=queries[0], k=10, filters={"tenth": "3"}, exact=True)
    ]

    # Added products (a new segment) are scanned exactly; removed ones never come back.
    new = rng.normal(size=(5, dim))
    cat.add_embeddings([f"new{i}" for i in range(5)], new)
    assert cat.ann_info is not None
    for i in range(5):
        top = cat.search(vector=new[i], k=1, exact=False)[0]
        assert top.id == f"new{i}" and top.score > 0.9999
    victim = cat.search(vector=queries[1], k=1, exact=False)[0].id
    cat.remove([victim])
    assert victim not in [h.id for h in cat.search(vector=queries[1], k=50, exact=False)]
    like = cat.search(like="v7", k=5, exact=False)
    assert len(like) == 5 and "v7" not in [h.id for h in like]

    # The ANN file survives the orphan sweep; compaction makes it inapplicable.
    path = cat.path
    cat.close()
    cat = Catalog.open(path)
    assert (path / "ann" / info.file).is_file() and cat.ann_info is not None
    cat.compact()
    assert cat.ann_info is None
    assert len(cat.search(vector=queries[0], k=10)) == 10  # exact again
    second = cat.build_ann(connectivity=8)
    assert sorted(os.listdir(path / "ann")) == [second.file]
    cat.drop_ann()
    assert cat.ann_info is None and os.listdir(path / "ann") == []


def test_report_counts_duplicate_ids_the_table_reader_skipped(tmp_path, tiny_clip):
    """Regression: index-report.json said "duplicates": 0 while the reader skipped a repeat."""
    from fashionclip.data.tables import read_catalog_source

    make_products(tmp_path / "images", 3)
    table = tmp_path / "products.csv"
    table.write_text(
        "id,image,gender\np000,images/p000.png,Men\np001,images/p001.png,Women\n"
        "p000,images/p002.png,Men\n",
        encoding="utf-8",
    )
    source = read_catalog_source(table, image_column="image")
    assert source.duplicates == 1
    with Catalog.create(tmp_path / "catalog", tiny_clip) as cat:
        report = cat.index(source)
    assert report.duplicates == 1
    assert "1 duplicate id(s) skipped" in report.summary()
    saved = json.loads((tmp_path / "catalog" / "index-report.json").read_text())
    assert saved["duplicates"] == 1
