"""Indexing a source chunk by chunk: one catalog and one report, as if it were read whole."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fashionclip.data.tables import CatalogSource, ProductRecord
from fashionclip.index import Catalog
from fashionclip.index.chunked import index_chunks


def _records(tmp_path, n):
    records = []
    for i in range(n):
        path = tmp_path / f"img{i}.bin"
        path.write_bytes(f"image number {i}".encode())
        records.append(ProductRecord(f"p{i}", path, {"i": i}))
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"bad bytes")
    return [*records, ProductRecord("broken", bad, {"i": -1})]


def test_chunks_index_like_one_run(tmp_path, fake_model):
    records = _records(tmp_path, 7)
    whole = Catalog.create(tmp_path / "whole", fake_model())
    expected = whole.index(records, commit_every=2)
    chunked = Catalog.create(tmp_path / "chunked", fake_model())
    parts = [CatalogSource(records[i : i + 3], [f"note {i}"]) for i in range(0, 8, 3)]
    parts[1].duplicates = 1
    notes = []
    report = index_chunks(chunked, parts, on_warnings=notes.extend, commit_every=2)
    assert notes == ["note 0", "note 3", "note 6"]
    assert chunked.ids() == whole.ids() and len(whole) == 7
    np.testing.assert_array_equal(chunked.vector("p5"), whole.vector("p5"))
    assert (report.total, report.added, report.failed, report.embedded) == (8, 7, 1, 7)
    assert report.duplicates == 1 and expected.duplicates == 0
    assert [f.id for f in report.failures] == ["broken"]
    saved = json.loads((chunked.path / "index-report.json").read_text())
    assert saved["added"] == 7 and saved["interrupted"] is False

    again = index_chunks(chunked, parts, commit_every=2)
    assert (again.added, again.unchanged) == (0, 7)


def test_a_failing_chunk_keeps_what_was_committed(tmp_path, fake_model):
    records = _records(tmp_path, 4)

    def chunks():
        yield CatalogSource(records[:2])
        raise KeyboardInterrupt

    cat = Catalog.create(tmp_path / "cat", fake_model())
    with pytest.raises(KeyboardInterrupt):
        index_chunks(cat, chunks(), commit_every=1)
    saved = json.loads((cat.path / "index-report.json").read_text())
    assert saved["interrupted"] is True and saved["added"] == 2 and len(cat) == 2


def test_a_chunk_stopped_mid_way_counts_its_committed_rows(tmp_path, fake_model):
    records = _records(tmp_path, 6)[:6]

    class DiesOnFourthCall(fake_model):  # batch_size=1: one image per call
        def try_encode_images(self, images, batch_size=32):
            if self.calls == 3:
                raise KeyboardInterrupt
            return super().try_encode_images(images, batch_size)

    cat = Catalog.create(tmp_path / "cat", DiesOnFourthCall())
    parts = [CatalogSource(records[:2]), CatalogSource(records[2:])]
    with pytest.raises(KeyboardInterrupt):
        index_chunks(cat, parts, batch_size=1, commit_every=1)
    saved = json.loads((cat.path / "index-report.json").read_text())
    # two from the first chunk, one committed by the second before it stopped
    assert saved["interrupted"] is True and saved["added"] == len(cat) == 3
