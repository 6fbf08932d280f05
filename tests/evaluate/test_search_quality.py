"""The search-quality evaluator: query file, relevance rule, metrics, per-mode tables."""

from __future__ import annotations

import json
import math

import pytest

from fashionclip.evaluate.search_quality import (
    SearchQuery,
    evaluate_search,
    load_queries,
    query_metrics,
)


def test_shipped_queries_are_package_data_and_split():
    queries = load_queries()
    assert len(queries) >= 80
    splits = {q.split for q in queries}
    assert splits == {"dev", "test"}
    slices = {q.slice for q in queries}
    assert {"catalog-words", "paraphrase", "colour+type", "gender+type", "brand"} <= slices
    assert "misspelling" in slices
    for split in ("dev", "test"):
        assert {q.slice for q in queries if q.split == split} == slices  # every slice in both
    assert len({q.query for q in queries}) == len(queries)


def test_relevance_rule_columns_and_name_words():
    q = SearchQuery("nike shoes", "brand", "dev", {"name_contains": ["nike"], "gender": ["Men"]})
    assert q.is_relevant({"productDisplayName": "Nike Men Air Shoes", "gender": "Men"})
    assert not q.is_relevant({"productDisplayName": "Nikeland Men Shoes", "gender": "Men"})
    assert not q.is_relevant({"productDisplayName": "Nike Women Shoes", "gender": "Women"})
    year = SearchQuery("x", "s", "dev", {"year": ["2012"]})
    assert year.is_relevant({"year": 2012})


def test_query_metrics():
    m = query_metrics([False, True, False, True], n_relevant=2)
    assert m["p@10"] == 1.0 and m["mrr"] == 0.5
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    many = query_metrics([True] * 5 + [False] * 5, n_relevant=50)
    assert many["p@10"] == 0.5  # denominator min(10, #relevant)
    assert query_metrics([False] * 10, 3) == {"p@10": 0.0, "ndcg@10": 0.0, "mrr": 0.0}
    with pytest.raises(ValueError):
        query_metrics([True], 0)


def test_evaluate_search_tables_and_skips(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [
        {"query": "red", "slice": "colour", "split": "dev", "relevant": {"c": ["Red"]}},
        {"query": "blue", "slice": "colour", "split": "test", "relevant": {"c": ["Blue"]}},
        {"query": "none", "slice": "colour", "split": "dev", "relevant": {"c": ["Nope"]}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    products = [{"c": "Red"}, {"c": "Blue"}, {"c": "Red"}]

    def search(text: str, mode: str) -> list[dict]:
        order = [0, 2, 1] if mode == "good" else [1, 0, 2]
        return [products[i] for i in order]

    report = evaluate_search(search, products, load_queries(path), ("good", "bad"), ("dev",))
    table = report.table()
    assert report.skipped == ["none"] and set(table) == {"dev"}
    assert table["dev"]["good"]["all"]["p@10"] == 1.0
    assert table["dev"]["bad"]["colour"]["mrr"] == 0.5 and table["dev"]["bad"]["all"]["n"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "x", "split": "train", "relevant": {}}))
    with pytest.raises(ValueError, match="split"):
        load_queries(bad)
