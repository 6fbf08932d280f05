"""Catalog tables in chunks: a streamed Parquet table gives the products a whole read gives."""

from __future__ import annotations

import pandas as pd
import pytest

from fashionclip.data import chunks
from fashionclip.data.chunks import is_streamable, iter_catalog_chunks
from fashionclip.data.tables import CatalogSourceError, read_catalog_source


@pytest.fixture
def table(tmp_path):
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 2, 5, 6, 7],
            "colour": ["Red", None, "Blue", "dup", "Black", "White", "Red"],
            "year": [2010, 2011, 2012, 2013, 2014, 2015, 2016],
            "price": [1.5, float("nan"), 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    path = tmp_path / "products.parquet"
    frame.to_parquet(path)
    return path


def _flat(sources):
    return [record for source in sources for record in source.records]


def test_streamed_parquet_equals_a_whole_read(table):
    whole = read_catalog_source(table)
    parts = list(iter_catalog_chunks(table, chunk_rows=3))
    assert len(parts) == 3  # 7 rows in chunks of 3
    assert _flat(parts) == whole.records and len(whole.records) == 6
    assert sum(p.duplicates for p in parts) == whole.duplicates == 1
    dup_warnings = [w for p in parts for w in p.warnings if "duplicate" in w]
    assert dup_warnings == [w for w in whole.warnings if "duplicate" in w]
    assert dup_warnings and "line 4" in dup_warnings[0]  # numbered over the whole file


def test_subset_and_limit_span_chunks(table):
    parts = list(iter_catalog_chunks(table, chunk_rows=2, subset=["3", "6", "7", "99"], limit=2))
    assert [r.id for r in _flat(parts)] == ["3", "6"]
    parts = list(iter_catalog_chunks(table, chunk_rows=2, subset=["3", "99"]))
    assert [r.id for r in _flat(parts)] == ["3"]
    assert any("1 selected id(s) are not in the source (e.g. 99)" in w for w in parts[-1].warnings)


def test_default_chunk_size_is_read_at_call_time(table, monkeypatch):
    monkeypatch.setattr(chunks, "DEFAULT_CHUNK_ROWS", 4)
    assert len(list(iter_catalog_chunks(table))) == 2


def test_csv_and_folders_come_whole(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("id,colour\n1,Red\n2,Blue\n", encoding="utf-8")
    assert not is_streamable(csv) and not is_streamable(tmp_path)
    parts = list(iter_catalog_chunks(csv, chunk_rows=1))
    assert len(parts) == 1 and [r.id for r in parts[0].records] == ["1", "2"]


def test_bad_input(table, tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not parquet")
    with pytest.raises(CatalogSourceError, match="cannot read Parquet file"):
        list(iter_catalog_chunks(broken))
    with pytest.raises(CatalogSourceError, match="no id column 'sku'"):
        list(iter_catalog_chunks(table, id_column="sku"))
    with pytest.raises(CatalogSourceError, match="chunk_rows"):
        list(iter_catalog_chunks(table, chunk_rows=0))
    with pytest.raises(CatalogSourceError, match="either"):
        list(iter_catalog_chunks(table, image_column="a", image_template="{id}"))
