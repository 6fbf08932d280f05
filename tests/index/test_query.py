"""Query: validated once, in one place; Catalog.search and Catalog.run share it."""

from __future__ import annotations

import numpy as np
import pytest

from fashionclip.errors import FashionCLIPError, InvalidQueryError, ModelMismatchError
from fashionclip.index import Catalog, Query, QueryLimits
from fashionclip.index.query import check_columns

SERVICE = QueryLimits(default_k=24, max_k=200, max_query_chars=20, max_filter_values=3)


def test_exactly_one_input_and_kind():
    with pytest.raises(InvalidQueryError, match="exactly one"):
        Query()
    with pytest.raises(InvalidQueryError, match="exactly one"):
        Query(vector=[1.0], like="p1")  # text + like is a composed query, not an error
    assert [Query(text="a").kind, Query(like="p").kind] == ["text", "like"]
    assert Query(vector=[1.0, 0.0]).kind == "vector" and Query(image=b"x").kind == "image"
    assert Query(text="a").needs_encoding and not Query(like="p").needs_encoding
    with pytest.raises(InvalidQueryError, match="mode"):
        Query(text="a", mode="fuzzy")


def test_k_with_and_without_limits():
    assert Query(text="a").k == 10 and Query(text="a", limits=SERVICE).k == 24
    assert Query(text="a", k=np.int64(5)).k == 5 and Query(text="a", k=10_000).k == 10_000
    for bad in (0, -1, 2.5, "5", True):
        with pytest.raises(InvalidQueryError, match="k must be a positive integer"):
            Query(text="a", k=bad)
    with pytest.raises(InvalidQueryError, match="between 1 and 200"):
        Query(text="a", k=201, limits=SERVICE)
    with pytest.raises(InvalidQueryError, match="between 1 and 200"):
        Query(text="a", k=0, limits=SERVICE)


def test_text_is_folded_and_limited():
    assert Query(text="  red \n heels ").text == "red heels"
    for blank in ("", "  \t\n"):
        with pytest.raises(InvalidQueryError, match="empty"):
            Query(text=blank)
    with pytest.raises(InvalidQueryError, match="the limit is 20"):
        Query(text="x" * 21, limits=SERVICE)
    with pytest.raises(InvalidQueryError, match="must be a string"):
        Query(text=42)  # type: ignore[arg-type]


def test_filters_shape_and_values():
    query = Query(text="a", filters={"gender": "Women", "year": [2012, np.int64(2013)]})
    assert query.filters == {"gender": ["Women"], "year": [2012, 2013]}
    assert Query(text="a").filter_values == {}
    with pytest.raises(InvalidQueryError, match="no values.*empty list"):
        Query(text="a", filters={"gender": []})
    with pytest.raises(InvalidQueryError, match="mapping"):
        Query(text="a", filters=["gender"])  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError, match="column names must be strings"):
        Query(text="a", filters={1: "x"})  # type: ignore[dict-item]
    for bad in (None, float("nan"), {"a": 1}):
        with pytest.raises(InvalidQueryError, match="strings or numbers"):
            Query(text="a", filters={"gender": bad})
    with pytest.raises(InvalidQueryError, match="lists 4 values; the limit is 3"):
        Query(text="a", filters={"gender": ["a", "b", "c", "d"]}, limits=SERVICE)


def test_ids_vectors_and_columns():
    for bad in ("", 7, "x" * 1025):
        with pytest.raises(InvalidQueryError, match="product id"):
            Query(like=bad)  # type: ignore[arg-type]
    vector = Query(vector=[3.0, 4.0]).vector
    np.testing.assert_allclose(vector, [0.6, 0.8])
    assert vector.dtype == np.float32
    for bad in ([0.0, 0.0], [np.inf, 1.0]):
        with pytest.raises(InvalidQueryError, match="zero or not finite"):
            Query(vector=bad)
    with pytest.raises(InvalidQueryError, match="unknown filter column 'x'; known columns: a, b"):
        Query(text="t", filters={"x": 1}).check_columns(["a", "b"])
    with pytest.raises(InvalidQueryError, match="columns 'x', 'y'; the compare catalog has"):
        check_columns(["x", "y"], ["a"], "compare catalog")
    check_columns(["a"], ["a", "b"])  # no error


def test_search_and_run_are_one_path(vector_catalog):
    cat, vectors = vector_catalog
    q = vectors[3] * 5.0
    via_search = cat.search(q, k=7, filters={"half": "a"})
    via_run = cat.run(Query(vector=q, k=7, filters={"half": ["a"]}))
    assert [h.id for h in via_search] == [h.id for h in via_run] and len(via_run) == 7
    assert via_run and all(h.metadata["half"] == "a" for h in via_run)
    with pytest.raises(InvalidQueryError, match="exactly one"):
        cat.search(q, vector=q)
    with pytest.raises(InvalidQueryError, match="dimension 3, catalog has 16"):
        cat.run(Query(vector=[1.0, 2.0, 3.0]))
    like = cat.run(Query(like="v3", k=5))
    assert len(like) == 5 and "v3" not in {h.id for h in like}


def test_encode_hook_runs_after_the_catalog_checks(vector_catalog):
    cat, vectors = vector_catalog
    seen: list[Query] = []

    def encode(query: Query) -> np.ndarray:
        seen.append(query)
        return vectors[5] * 3.0  # not unit: the catalog normalises once

    query = Query(text="anything", k=3, mode="vector")  # cosine scores: the vector mode
    hits = cat.run(query, encode=encode)  # no model attached: the hook encodes
    assert seen == [query] and hits[0].id == "v5" and abs(hits[0].score - 1.0) < 1e-5
    with pytest.raises(InvalidQueryError, match="unknown filter column"):
        cat.run(Query(text="x", filters={"nope": 1}), encode=encode)
    assert len(seen) == 1  # refused before encoding
    with pytest.raises(FashionCLIPError, match="opened without a model"):
        cat.run(Query(text="x"))


def test_attach_model_checks_identity(vector_catalog):
    cat, _ = vector_catalog
    reopened = Catalog.open(cat.path)
    other = dict(cat.model_identity.__dict__, fingerprint="other")
    with pytest.raises(ModelMismatchError, match="was built with model"):
        reopened.attach_model(other)
    assert reopened.model is None
    reopened.check_model(cat.model_identity)  # same identity: no error
    reopened.close()


def test_facets_check_columns(vector_catalog):
    cat, _ = vector_catalog
    assert cat.facets(["half"]) == {"half": {"a": 150, "b": 150}}
    with pytest.raises(InvalidQueryError, match="unknown filter column 'nope'"):
        cat.facets(["nope"])
