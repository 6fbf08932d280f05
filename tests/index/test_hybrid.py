"""Keyword and hybrid search: the FTS5 text index's consistency, modes, filters, query
understanding, composed queries and hostile query strings."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from fashionclip.errors import InvalidQueryError
from fashionclip.index import Catalog, Query
from fashionclip.index.hybrid import relax
from fashionclip.index.store import Store
from fashionclip.index.text import META_KEY, TextIndex, match_expression
from fashionclip.index.understand import Vocabulary

DIM = 8
COLOURS = ["Red", "Black", "White", "Navy Blue"]
TYPES = ["Dresses", "Handbags", "Casual Shoes", "Watches", "Tshirts"]
GENDERS = ["Men", "Women"]


def _meta(i: int) -> dict[str, object]:
    colour, kind, gender = COLOURS[i % 4], TYPES[i % 5], GENDERS[i % 2]
    name = f"Brand{i % 3} {gender} {colour} {kind[:-1] if kind.endswith('s') else kind}"
    return {
        "gender": gender,
        "articleType": kind,
        "baseColour": colour,
        "productDisplayName": name,
    }


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class _TextModel:
    """Encodes a text as a fixed pseudo-random unit vector (hash of the text)."""

    identity = {"name": "t", "kind": "test", "embedding_dim": DIM, "fingerprint": "t"}

    def encode_text(self, text: str) -> np.ndarray:
        seed = sum(map(ord, text)) % 2**32
        return _vectors(1, seed)[0]

    def encode_images(self, image: object) -> np.ndarray:
        return _vectors(1, 7)[0]


@pytest.fixture
def shop(tmp_path):
    cat = Catalog.create(tmp_path / "shop", _TextModel.identity)
    cat.attach_model(_TextModel())
    cat.add_embeddings([f"p{i}" for i in range(40)], _vectors(40), [_meta(i) for i in range(40)])
    yield cat
    cat.close()


def _text_rows(cat: Catalog) -> dict[int, str]:
    con = cat.store.connection()
    rows = con.execute("SELECT rowid, * FROM product_text").fetchall()
    return {int(r[0]): " ".join(str(x) for x in r[1:] if x is not None) for r in rows}


def _slots(cat: Catalog) -> set[int]:
    return {int(r[0]) for r in cat.store.connection().execute("SELECT slot FROM products")}


def test_text_index_follows_add_update_remove_and_compact(shop):
    shop.build_text_index()
    assert set(_text_rows(shop)) == _slots(shop) and len(_slots(shop)) == 40
    shop.add_embeddings(["p1"], _vectors(1, 3), [{**_meta(1), "productDisplayName": "Zebra"}])
    shop.add_embeddings(["new"], _vectors(1, 4), [{**_meta(2), "productDisplayName": "Quokka"}])
    shop.remove(["p2", "p3"])
    assert set(_text_rows(shop)) == _slots(shop) and len(_slots(shop)) == 39
    hits = shop.search("zebra", mode="keyword")
    assert [h.id for h in hits] == ["p1"]
    assert shop.search("quokka", mode="keyword")[0].id == "new"
    assert shop.search("Brand0", mode="keyword", k=100) and "p3" not in {
        h.id for h in shop.search("brand0", k=100, mode="keyword")
    }
    shop.compact()  # slots move: the triggers move the text rows with them
    assert set(_text_rows(shop)) == _slots(shop)
    assert [h.id for h in shop.search("zebra", mode="keyword")] == ["p1"]


def test_failed_commit_leaves_text_index_and_vectors_agreeing(shop, monkeypatch):
    shop.build_text_index()
    before = (_text_rows(shop), _slots(shop), len(shop.snapshot().segments))

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("crash between the upsert and the commit")

    monkeypatch.setattr(Store, "_add_columns", boom)
    with pytest.raises(RuntimeError):
        shop.add_embeddings(["x1"], _vectors(1, 9), [{"productDisplayName": "Walrus"}])
    monkeypatch.undo()
    assert (_text_rows(shop), _slots(shop)) == before[:2]
    assert shop.search("walrus", mode="keyword") == []


def test_old_catalog_gets_its_text_index_on_first_use(shop):
    shop.hybrid.text.drop()  # a catalog written before the text index existed
    assert shop.store.get_meta(META_KEY) is None
    hits = shop.search("red dress", k=5)
    assert hits.mode == "hybrid" and len(hits) == 5
    assert shop.store.get_meta(META_KEY) is not None
    assert set(_text_rows(shop)) == _slots(shop)


def test_new_column_rebuilds_automatic_fields(shop):
    shop.build_text_index()
    shop.add_embeddings(["b"], _vectors(1, 5), [{**_meta(0), "brand": "Tigerlily"}])
    assert [h.id for h in shop.search("tigerlily", mode="keyword")] == ["b"]
    shop.build_text_index({"productDisplayName": 2.0})  # explicit fields stay as chosen
    assert shop.search("tigerlily", mode="keyword") == []


@pytest.mark.parametrize(
    "text",
    [
        '"red dress',
        "red AND dress OR NOT",
        "NEAR(red dress, 2)",
        "red* -dress",
        "(red) : dress ^ {x}",
        "gender:Women",
        "red\x00dress\x07\t\n",
        "red 👗 dress 🔥",
        "'\"\"'",
        "ab" * 5000,
        "***",
    ],
)
def test_hostile_query_strings_are_searched_as_words(shop, text):
    for mode in ("keyword", "hybrid", "vector"):
        hits = shop.search(text, k=5, mode=mode)
        assert isinstance(hits, list)


def test_match_expression_quotes_every_word():
    assert match_expression('red" OR dress*') == '"red" OR "dress"'
    assert match_expression("*** -- ()") is None
    assert match_expression("the dress") == '"dress"'


def test_unknown_mode_lists_the_modes(shop):
    with pytest.raises(InvalidQueryError, match="vector, keyword, hybrid"):
        shop.search("red", mode="semantic")
    with pytest.raises(InvalidQueryError, match="needs query text"):
        shop.search(vector=_vectors(1)[0], mode="keyword")


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_filters_apply_in_every_mode(shop, mode):
    hits = shop.search("red dress", k=40, mode=mode, filters={"gender": "Men"})
    assert hits and all(h.metadata["gender"] == "Men" for h in hits)
    none = shop.search("red dress", k=5, mode=mode, filters={"gender": "Nobody"})
    assert none == []


def test_understood_query_and_soft_boost(shop):
    hits = shop.search("ladies red dresses", k=5)
    assert hits.understood == {"gender": "Women", "articleType": "Dresses", "baseColour": "Red"}
    assert hits[0].metadata["articleType"] == "Dresses"
    assert hits[0].metadata["baseColour"] == "Red"
    # soft, not a filter: products without the understood values still rank
    many = shop.search("ladies red dresses", k=40)
    assert len(many) > 8 and any(h.metadata["baseColour"] != "Red" for h in many)
    assert shop.search("men's navy tee", mode="vector").understood == {
        "gender": "Men",
        "baseColour": "Navy Blue",
        "articleType": "Tshirts",
    }


def test_vocabulary_plurals_possessives_synonyms_and_misspellings():
    vocab = Vocabulary.build(
        {
            "gender": ["Men", "Women"],
            "articleType": ["Casual Shoes", "Sports Shoes", "Tshirts", "Sunglasses", "Dresses"],
            "subCategory": ["Dress", "Shoes"],
            "baseColour": ["Navy Blue", "Blue", "Red"],
            "year": ["2012"],
        }
    )
    assert vocab.understand("women's sneakers") == {
        "gender": ["Women"],
        "articleType": ["Casual Shoes", "Sports Shoes"],
    }
    assert vocab.understand("navy blue t shirt") == {
        "baseColour": ["Navy Blue"],
        "articleType": ["Tshirts"],
    }
    assert vocab.understand("sunglases") == {"articleType": ["Sunglasses"]}
    assert vocab.understand("red dress") == {"baseColour": ["Red"], "articleType": ["Dresses"]}
    assert vocab.understand("2012 zzz") == {}


def test_composed_queries(shop):
    base = shop.search(like="p0", k=5, mode="vector")
    assert "p0" not in {h.id for h in base}
    refined = shop.search(like="p0", text="black", k=5)
    assert refined.mode == "hybrid" and refined.understood == {"baseColour": "Black"}
    assert "p0" not in {h.id for h in refined}
    assert refined[0].metadata["baseColour"] == "Black"
    assert Query(like="p0", text="red").kind == "like"
    image = shop.search(image=b"img", text="white", k=3)
    assert image[0].metadata["baseColour"] == "White"


def test_keyword_mode_needs_no_model(tmp_path):
    cat = Catalog.create(tmp_path / "c", _TextModel.identity)
    cat.add_embeddings(["a", "b"], _vectors(2), [_meta(0), _meta(1)])
    cat.close()
    reopened = Catalog.open(tmp_path / "c")
    assert [h.id for h in reopened.search("black", mode="keyword")] == ["b"]
    reopened.close()


def test_text_index_row_count_matches(shop):
    assert TextIndex(shop.store).row_count() == 0  # not built yet
    shop.build_text_index()
    assert TextIndex(shop.store).row_count() == len(shop)
    with pytest.raises(sqlite3.OperationalError):
        shop.store.connection().execute("SELECT * FROM product_text WHERE product_text MATCH '\"'")


def test_ignored_understood_column_is_not_used_and_not_a_filter(shop):
    full = shop.search("red dresses", k=40)
    assert full.understood == {"baseColour": "Red", "articleType": "Dresses"}
    reds = [h.metadata["baseColour"] == "Red" for h in full[:12]]
    left = shop.search("red dresses", k=40, ignore_understood=["baseColour"])
    assert left.understood == {"articleType": "Dresses"}
    assert len(left) == len(full) == 40  # nothing filtered
    # red non-dresses were boosted by the colour; without it only the red dresses remain
    assert sum(h.metadata["baseColour"] == "Red" for h in left[:12]) < sum(reds)
    assert left[0].metadata["articleType"] == "Dresses"  # the kept chip still boosts
    vector = shop.search("red dresses", mode="vector", ignore_understood="articleType")
    assert vector.understood == {"baseColour": "Red"}
    with pytest.raises(InvalidQueryError, match="ignore_understood"):
        Query(text="red", ignore_understood=[3])


def test_a_word_of_the_catalogs_own_text_is_never_read_as_a_misspelling(tmp_path):
    # Session 13: KAGL's brands "Jackie", "Shree" and "Bwitch" were read as misspelt "jacket",
    # "saree" and "watch" (soft boosts for Jackets, Sarees, Watches on a brand query)
    cat = Catalog.create(tmp_path / "brands", _TextModel.identity)
    cat.attach_model(_TextModel())
    meta = [
        {"articleType": "Jackets", "productDisplayName": "Roadster Men Black Jacket"},
        {"articleType": "Kurtas", "productDisplayName": "Jackie Women Green Kurta"},
        {"articleType": "Sarees", "productDisplayName": "Mona Red Saree"},
    ]
    cat.add_embeddings(["j", "k", "s"], _vectors(3), meta)
    assert cat.search("jackie kurta", k=3).understood == {"articleType": "Kurtas"}
    assert cat.search("jackets", k=3).understood == {"articleType": "Jackets"}
    assert cat.search("jaket", k=3).understood == {"articleType": "Jackets"}  # still corrected
    assert cat.search("sarre", k=3).understood == {"articleType": "Sarees"}
    cat.add_embeddings(
        ["s2"], _vectors(1, 5), [{"articleType": "Tops", "productDisplayName": "Sarre Top"}]
    )
    assert cat.search("sarre", k=3).understood == {}  # now a word of the catalog
    cat.close()


def test_relax_keeps_the_rarest_columns_some_products_share():
    jackets = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    black = np.array([1, 0, 0, 1, 1, 1, 0, 0], bool)
    winter = np.array([0, 0, 0, 1, 1, 1, 1, 1], bool)
    both = {"articleType": jackets, "baseColour": black}
    assert relax(both) is both  # some product carries every value: unchanged
    # no black winter jacket: Black + Jackets (rarer) is kept, not Black + Winter
    assert list(relax({"baseColour": black, "season": winter, "articleType": jackets})) == [
        "baseColour",
        "articleType",
    ]
    assert list(relax({"season": winter, "articleType": jackets})) == ["articleType"]


def test_a_query_whose_values_no_product_shares_ranks_by_the_telling_ones(tmp_path):
    # Session 13: "winter coat" on KAGL (no jacket of the Winter season) boosted the season as
    # much as the article type, and Winter sunglasses and earrings led
    cat = Catalog.create(tmp_path / "coats", _TextModel.identity)
    cat.attach_model(_TextModel())
    kinds = [("Jackets", "Fall", "Roadster Jacket")] * 4
    kinds += [("Sunglasses", "Winter", "Winter Shades")] * 6
    kinds += [("Shirts", "Summer", "Cotton Shirt")] * 110
    meta = [{"articleType": a, "season": s, "productDisplayName": n} for a, s, n in kinds]
    cat.add_embeddings([f"p{i}" for i in range(len(meta))], _vectors(len(meta), 3), meta)
    hits = cat.search("winter coat", k=4)
    assert hits.understood == {"season": "Winter", "articleType": "Jackets"}
    assert [h.metadata["articleType"] for h in hits] == ["Jackets"] * 4
    # Session 14: the page showed "Winter" as a chip in use; it is reported as set aside
    assert hits.set_aside == ["season"]
    assert cat.search("fall coat", k=4).set_aside == []  # Fall jackets exist: both used
    assert cat.search("winter coat", k=4, mode="vector").set_aside == []  # hybrid only
    cat.close()
