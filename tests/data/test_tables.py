"""Catalog readers: KAGL styles.csv as it is, generic CSV/Parquet tables, image folders, subsets."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashionclip.data.tables import (
    CatalogSourceError,
    IdSubset,
    read_catalog_source,
    read_image_folder,
    read_table,
)
from fashionclip.errors import FashionCLIPError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ KAGL


@pytest.mark.slow
def test_kagl_styles_read_as_is(kagl_dir):
    source = read_catalog_source(kagl_dir / "styles.csv")
    assert len(source) == 44_446
    extra = [w for w in source.warnings if "fields for 10 columns" in w]
    assert len(extra) == 22
    assert any(w.startswith("styles.csv line 6044:") for w in extra)
    assert any(w.startswith("styles.csv line 15076: 12 fields") for w in extra)
    by_id = {r.id: r for r in source.records}
    # Line 6044: the first 9 commas separate columns, the rest belongs to the name.
    perfume = by_id["44065"]
    assert perfume.metadata["productDisplayName"] == (
        "Boss Men Perfume, After Shave Balm and Shower Gel Set"
    )
    assert perfume.metadata["usage"] == "Casual"
    assert by_id["23124"].metadata["productDisplayName"] == (
        "Converse Unisex Navy Blue Liv,Laugh,Love Flip-flops"
    )
    first = source.records[0]
    assert first.id == "15970" and isinstance(first.id, str)
    assert first.image == (kagl_dir / "images" / "15970.jpg").resolve()
    assert first.metadata["year"] == 2011
    assert "id" not in first.metadata
    assert source.columns[-1] == "productDisplayName"
    # 374 rows have no image (SOURCE.md): reported once, kept for the indexer to report.
    assert any(w.startswith("374 product(s) have no image file") for w in source.warnings)


@pytest.mark.slow
def test_kagl_test_split_subset(kagl_dir):
    subset = IdSubset(kagl_dir / "splits.csv", column="split", value="test")
    source = read_catalog_source(kagl_dir / "styles.csv", subset=subset)
    assert len(source) == 4_419
    assert source.records and all(r.image.is_file() for r in source.records)
    assert not any("have no image file" in w for w in source.warnings)


# ------------------------------------------------------------------------------------ CSV


def test_csv_extra_fields_quotes_and_types(tmp_path):
    table = _write(
        tmp_path / "products.csv",
        "id,gender,year,price,code,name\n"
        "1,Women,2012,9.5,007,Plain dress\n"
        '2,Men,2011,10,012,"Shirt, quoted"\n'
        "3,Men,,11.25,100,Tie, cufflinks, and square\n"
        "4,Women,2013,12\n"
        "1,Women,2014,1,001,duplicate of 1\n"
        ",Men,2015,1,002,no id\n",
    )
    source = read_table(table)
    assert source.ids() == ["1", "2", "3", "4"]
    rows = {r.id: r.metadata for r in source.records}
    assert rows["2"]["name"] == "Shirt, quoted"  # quoted commas are not extra fields
    assert rows["3"]["name"] == "Tie, cufflinks, and square"
    assert rows["3"]["year"] is None  # empty cell
    assert rows["1"]["year"] == 2012 and isinstance(rows["1"]["year"], int)
    assert rows["2"]["price"] == 10.0 and isinstance(rows["2"]["price"], float)
    assert rows["1"]["code"] == "007"  # not canonical ints: the column stays text
    assert rows["4"]["name"] is None
    text = "\n".join(source.warnings)
    assert "line 4: 8 fields for 6 columns" in text
    assert "line 5: 4 fields for 6 columns" in text
    assert "line 6: duplicate id '1' (first at line 2)" in text
    assert "line 7: empty id" in text
    assert source.records[0].image == (tmp_path / "images" / "1.jpg").resolve()


def test_unterminated_quote_loses_one_product_only(tmp_path):
    rows = [f"{i},Product {i},Men" for i in range(1, 8)]
    rows[2] = '3,"Product 3,Men'
    table = _write(tmp_path / "products.csv", "id,name,gender\n" + "\n".join(rows) + "\n")
    source = read_table(table)
    assert source.ids() == ["1", "2", "4", "5", "6", "7"]
    assert source.records[2].metadata == {"name": "Product 4", "gender": "Men"}
    assert source.warnings == [
        "products.csv line 4: a quote opens a field and never closes (it would swallow the "
        "next rows); skipped"
    ]


def test_duplicate_ids_are_counted(tmp_path):
    table = _write(tmp_path / "t.csv", "id,name\n1,a\n2,b\n1,c\n2,d\n1,e\n")
    source = read_catalog_source(table)
    assert source.ids() == ["1", "2"] and source.duplicates == 3
    assert sum("duplicate id" in w for w in source.warnings) == 3
    assert read_catalog_source(_write(tmp_path / "u.csv", "id\n1\n2\n")).duplicates == 0
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ["a.jpg", "a.png", "b.jpg"]:
        (folder / name).write_bytes(b"x")
    images = read_image_folder(folder)
    assert images.ids() == ["a", "b"] and images.duplicates == 1


def test_csv_extra_fields_can_be_skipped(tmp_path):
    table = _write(tmp_path / "t.csv", "id,name\n1,a\n2,b,c\n")
    source = read_catalog_source(table, extra_fields="skip")
    assert source.ids() == ["1"]
    assert any("line 3: 3 fields for 2 columns; skipped" in w for w in source.warnings)


def test_image_column_and_template(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(b"x")
    table = _write(tmp_path / "t.csv", "sku,path,colour\nA1,pics/a.png,red\nB2,/abs/b.png,blue\n")
    by_column = read_table(table, id_column="sku", image_column="path")
    assert [r.image for r in by_column.records] == [tmp_path / "pics" / "a.png", Path("/abs/b.png")]
    assert by_column.records[0].metadata == {"colour": "red"}
    by_template = read_table(table, id_column="sku", image_template="{colour}/{sku}.jpg")
    assert by_template.records[1].image == tmp_path / "blue" / "B2.jpg"
    rooted = read_table(table, id_column="sku", image_template="{id}.jpg", image_root="/data")
    assert rooted.records[0].image == Path("/data/A1.jpg")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id_column": "nope"}, "no id column 'nope'"),
        ({"image_column": "nope"}, "no image column 'nope'"),
        ({"image_template": "images/{sku}.jpg"}, "unknown field(s) ['sku']"),
        ({"image_template": "x.jpg", "image_column": "name"}, "not both"),
    ],
)
def test_table_option_errors(tmp_path, kwargs, message):
    table = _write(tmp_path / "t.csv", "id,name\n1,a\n")
    with pytest.raises(CatalogSourceError, match=None) as info:
        read_table(table, **kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, FashionCLIPError)


def test_missing_and_unsupported_sources(tmp_path):
    with pytest.raises(CatalogSourceError, match="not found"):
        read_catalog_source(tmp_path / "missing.csv")
    with pytest.raises(CatalogSourceError, match="unsupported table format"):
        read_catalog_source(_write(tmp_path / "t.json", "{}"))
    with pytest.raises(CatalogSourceError, match="empty table"):
        read_catalog_source(_write(tmp_path / "empty.csv", ""))
    with pytest.raises(CatalogSourceError, match="limit"):
        read_catalog_source(_write(tmp_path / "t.csv", "id\n1\n"), limit=-1)


# ------------------------------------------------------------------------------------ Parquet


def test_parquet_keeps_types(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "id": [15970, 39386],
            "gender": ["Men", None],
            "year": [2011, 2012],
            "price": [1.5, float("nan")],
            "code": ["2012", "007"],
        }
    )
    path = tmp_path / "styles.parquet"
    frame.to_parquet(path)
    source = read_catalog_source(path)
    assert source.ids() == ["15970", "39386"]
    first, second = (r.metadata for r in source.records)
    assert first == {"gender": "Men", "year": 2011, "price": 1.5, "code": "2012"}
    assert second["gender"] is None and second["price"] is None
    assert isinstance(first["year"], int) and isinstance(first["code"], str)
    assert source.records[0].image == (tmp_path / "images" / "15970.jpg").resolve()


# ------------------------------------------------------------------------------------ folders


def test_image_folder(tmp_path):
    for rel in ["b.jpg", "a.PNG", "sub/c.webp", "notes.txt", ".hidden.jpg", "sub/.cache/d.jpg"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    source = read_image_folder(tmp_path)
    assert source.ids() == ["a", "b", "sub/c"]
    assert source.records[0].image == (tmp_path / "a.PNG").resolve()
    assert source.records[0].metadata == {}
    with pytest.raises(CatalogSourceError, match="apply to tables"):
        read_catalog_source(tmp_path, image_template="{id}.jpg")


# ------------------------------------------------------------------------------------ subsets


def test_id_subset(tmp_path):
    table = _write(tmp_path / "t.csv", "id,name\n1,a\n2,b\n3,c\n4,d\n")
    splits = _write(tmp_path / "splits.csv", "id,split\n1,train\n2,test\n3,val\n4,test\n9,test\n")
    test = read_catalog_source(table, subset=IdSubset(splits, "split", "test"))
    assert test.ids() == ["2", "4"]
    assert any("1 id(s) selected by splits.csv where split=test" in w for w in test.warnings)
    both = read_catalog_source(table, subset=IdSubset.parse(splits, "split=val|test"))
    assert both.ids() == ["2", "3", "4"]
    every = read_catalog_source(table, subset=IdSubset.parse(splits))
    assert every.ids() == ["1", "2", "3", "4"]
    assert read_catalog_source(table, subset=["3", 1]).ids() == ["1", "3"]
    assert read_catalog_source(table, subset=IdSubset(splits, "split", "test"), limit=1).ids() == [
        "2"
    ]
    with pytest.raises(CatalogSourceError, match="COLUMN=VALUE"):
        IdSubset.parse(splits, "split")
    with pytest.raises(CatalogSourceError, match="no column 'fold'"):
        read_catalog_source(table, subset=IdSubset(splits, "fold", "1"))


def test_folder_links_leading_outside_are_skipped_with_a_warning(tmp_path):
    """Regression (issue 15.7): folder indexing followed symlinks out of the folder silently."""
    from PIL import Image

    folder, elsewhere = tmp_path / "shop", tmp_path / "elsewhere"
    (folder / "inner").mkdir(parents=True)
    elsewhere.mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(folder / "inner" / "a.png")
    Image.new("RGB", (8, 8), (0, 200, 0)).save(elsewhere / "secret.png")
    (folder / "b.png").symlink_to(elsewhere / "secret.png")  # a file link leading out
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)  # a folder link
    (folder / "c.png").symlink_to(folder / "inner" / "a.png")  # a link that stays inside

    source = read_image_folder(folder)
    assert sorted(r.id for r in source.records) == ["c", "inner/a"]
    assert any(
        "b.png" in w and "outside" in w and "--follow-symlinks" in w for w in source.warnings
    )
    assert any("linked" in w and "--follow-symlinks" in w for w in source.warnings)

    followed = read_image_folder(folder, follow_symlinks=True)
    assert sorted(r.id for r in followed.records) == ["b", "c", "inner/a", "linked/secret"]
    assert not followed.warnings
