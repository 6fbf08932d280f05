"""The shared KAGL reader (styles.csv + splits.csv): real data and a tiny hand-written folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashionclip.data.kagl import (
    KAGL_COLUMNS,
    default_data_dir,
    kagl_dir_default,
    read_kagl_splits,
    read_kagl_styles,
)
from fashionclip.errors import FashionCLIPError
from fashionclip.evaluate.datasets import load_kagl
from fashionclip.train.data import read_kagl_split

HEADER = ",".join(KAGL_COLUMNS)


def test_real_kagl_tables(kagl_dir: Path) -> None:
    styles = read_kagl_styles(kagl_dir)
    assert len(styles) == 44446
    assert len(styles.malformed_lines) == 22 and not styles.skipped_lines
    assert len(styles.warnings) == 22
    assert styles.malformed_lines[:2] == [6044, 6569]
    assert "line 6044" in styles.warnings[0]
    assert styles.rows["44065"]["productDisplayName"] == (
        "Boss Men Perfume, After Shave Balm and Shower Gel Set"
    )
    assert styles.rows["44065"]["usage"] == "Casual"

    splits = read_kagl_splits(kagl_dir)
    assert not splits.warnings
    counts = {name: len(splits.ids(name)) for name in splits.names()}
    assert counts == {"train": 35209, "val": 4444, "test": 4419}
    assert splits.entries and all(i in styles.rows for i in splits.entries)
    assert splits.entries and all(len(sha) == 64 for _, sha in list(splits.entries.values())[:100])

    # Evaluation and training see the same products of a split, with the same attributes.
    test = load_kagl("test", kagl_dir.parent)
    rows = read_kagl_split(kagl_dir, "test")
    assert test.ids == [r["id"] for r in rows] == splits.ids("test")
    assert test.names == [r["productDisplayName"] for r in rows]


def _write(folder: Path, styles: list[str], splits: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "styles.csv").write_text("\n".join(styles) + "\n", encoding="utf-8")
    (folder / "splits.csv").write_text("\n".join(splits) + "\n", encoding="utf-8")
    return folder


def test_tiny_kagl_with_malformed_lines(tmp_path: Path) -> None:
    kagl = _write(
        tmp_path / "kagl",
        [
            HEADER,
            "2,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,Plain Blue Shirt",
            "10,Women,Apparel,Topwear,Tops,Red,Summer,2012,Casual,Top, Red, Sleeveless",
            "11,Men,Apparel,Topwear",  # too few fields: skipped
            "",
            "1,Women,Footwear,Shoes,Heels,Black,Winter,2013,Party,Black Heels",
        ],
        ["id,split,image_sha256", "10,train,aa", "2,train,bb", "1,test,cc", "3,val"],
    )
    styles = read_kagl_styles(kagl)
    assert list(styles.rows) == ["2", "10", "1"]
    assert styles.rows["10"]["productDisplayName"] == "Top, Red, Sleeveless"
    assert styles.rows["10"]["usage"] == "Casual"
    assert styles.malformed_lines == [3] and styles.skipped_lines == [4]
    assert len(styles.warnings) == 2 and "line 3" in styles.warnings[0]

    splits = read_kagl_splits(kagl)
    assert splits.entries == {"10": ("train", "aa"), "2": ("train", "bb"), "1": ("test", "cc")}
    assert splits.names() == ["test", "train"] and splits.ids("train") == ["10", "2"]
    assert len(splits.warnings) == 1 and "line 5" in splits.warnings[0]

    # Training rows are sorted by numeric id; evaluation keeps splits.csv order.
    rows = read_kagl_split(kagl, "train")
    assert [r["id"] for r in rows] == ["2", "10"]
    assert rows[1]["_image"] == str(kagl / "images" / "10.jpg")
    assert "_image" not in styles.rows["10"]
    assert load_kagl("train", tmp_path).ids == ["10", "2"]
    with pytest.raises(FashionCLIPError, match="split 'val' not in"):
        read_kagl_split(kagl, "val")
    with pytest.raises(FashionCLIPError, match="no products in split 'val'"):
        load_kagl("val", tmp_path)


def test_errors_and_default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FashionCLIPError, match=r"styles table not found: .*styles.csv \(hint\)"):
        read_kagl_styles(tmp_path, hint=" (hint)")
    with pytest.raises(FashionCLIPError, match="split table not found"):
        read_kagl_splits(tmp_path)
    bad = _write(tmp_path / "bad", ["id,name", "1,x"], ["id,part", "1,train"])
    with pytest.raises(FashionCLIPError, match="unexpected header"):
        read_kagl_styles(bad)
    with pytest.raises(FashionCLIPError, match="unexpected header"):
        read_kagl_splits(bad)

    monkeypatch.setenv("FASHIONCLIP_DATA_DIR", str(tmp_path / "data"))
    assert default_data_dir() == tmp_path / "data"
    assert kagl_dir_default() == tmp_path / "data" / "kagl"
    monkeypatch.delenv("FASHIONCLIP_DATA_DIR")
    assert default_data_dir() == Path(__file__).resolve().parents[2].parent / "shared" / "data"
