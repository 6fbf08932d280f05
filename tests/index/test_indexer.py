"""Indexer: reader -> embedder -> writer, each stage timed in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashionclip.data.tables import ProductRecord
from fashionclip.index import Catalog
from fashionclip.index.indexer import IndexFailure, Reader
from fashionclip.index.store import MetadataUpdate

#: Keys of index-report.json before stage timings were added (all must stay).
REPORT_KEYS = {
    "catalog",
    "model",
    "total",
    "added",
    "updated",
    "metadata_updated",
    "unchanged",
    "failed",
    "duplicates",
    "failures",
    "embedded",
    "seconds",
    "interrupted",
    "started_at",
    "finished_at",
    "images_per_second",
}


def _records(folder: Path, n: int) -> list[ProductRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        path = folder / f"p{i}.img"
        path.write_bytes(i.to_bytes(8, "little") + b"pixels")
        records.append(ProductRecord(f"p{i}", path, {"n": i % 3}))
    return records


def test_stage_timings_are_reported(tmp_path, fake_model):
    model = fake_model(delay=0.05)
    records = _records(tmp_path / "img", 12)
    with Catalog.create(tmp_path / "cat", model) as cat:
        report = cat.index(records, batch_size=4, commit_every=4)
        assert (report.added, report.embedded, len(cat)) == (12, 12, 12)
        assert set(report.timings) == {"read", "embed", "write"}
        assert report.timings["embed"] >= 0.05 * model.calls > 0
        assert report.timings["write"] > 0 and report.timings["read"] > 0
        assert sum(report.timings.values()) <= report.seconds + 1e-3
        saved = json.loads((cat.path / "index-report.json").read_text())
        assert set(saved) >= REPORT_KEYS and set(saved["timings"]) == set(report.timings)
        calls = model.calls
        again = cat.index(records)
        assert again.unchanged == 12 and model.calls == calls
        assert again.timings["embed"] == 0.0 and again.timings["read"] > 0
        assert len(cat.snapshot().segments) == 1  # the three commits were merged


def test_reader_decides_per_record(tmp_path, fake_model):
    model = fake_model()
    records = _records(tmp_path / "img", 3)
    with Catalog.create(tmp_path / "cat", model) as cat:
        cat.index(records[:2])
        moved = ProductRecord("p0", records[0].image, {"n": 99})
        records[1].image.write_bytes(b"new bytes")
        missing = ProductRecord("gone", tmp_path / "none.img", {})
        reader = Reader(cat.store, ["p0", "p1", "p2", "gone"])
        assert isinstance(reader.read(moved), MetadataUpdate)
        changed = reader.read(records[1])
        assert changed is not None and changed.is_update  # type: ignore[union-attr]
        new = reader.read(records[2])
        assert new is not None and not new.is_update  # type: ignore[union-attr]
        failure = reader.read(missing)
        assert isinstance(failure, IndexFailure) and "not found" in failure.reason
        assert reader.read(ProductRecord("p0", records[0].image, {"n": 0})) is None


def test_embedder_failures_keep_the_old_vector(tmp_path, fake_model):
    model = fake_model()
    records = _records(tmp_path / "img", 4)
    with Catalog.create(tmp_path / "cat", model) as cat:
        cat.index(records)
        before = cat.vector("p2")
        records[2].image.write_bytes(b"bad image")
        report = cat.index(records)
        assert (report.failed, report.unchanged) == (1, 3)
        assert report.failures[0].id == "p2" and report.failures[0].reason == "not an image"
        assert (cat.vector("p2") == before).all()


def test_wrong_dimension_is_refused(tmp_path, fake_model):
    model = fake_model()
    with Catalog.create(tmp_path / "cat", model) as cat:
        model.dim = 8
        with pytest.raises(Exception, match="8-d embeddings"):
            cat.index(_records(tmp_path / "img", 2))
