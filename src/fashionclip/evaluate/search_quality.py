"""Search quality of a catalog: P@10, nDCG@10 and MRR per search mode and query slice.

Queries are JSONL (the shipped set: ``fashionclip/data/search_queries.jsonl``), one object a
line: ``{"query": "red dress", "slice": "colour+type", "split": "dev" | "test",
"relevant": {"baseColour": ["Red"], "articleType": ["Dresses"]}}``. A product is relevant
when, for every listed column, its value is one of the listed values; the special key
``name_contains`` lists words of which one must be a word of the product's name
(``productDisplayName``, case-insensitive). P@10 divides by ``min(10, #relevant)``; nDCG@10
is binary; MRR is the reciprocal rank of the first relevant product in the top 10.

Choose weights on the ``dev`` queries; report ``test`` once (``benchmarks/hybrid_search.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fashionclip.index.query import MODES
from fashionclip.index.text import WORD

NAME_KEY = "name_contains"
NAME_COLUMN = "productDisplayName"
CUTOFF = 10
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class SearchQuery:
    """One labelled query (see the module docstring)."""

    query: str
    slice: str
    split: str
    relevant: dict[str, list[str]]

    def is_relevant(self, metadata: Mapping[str, Any]) -> bool:
        for column, values in self.relevant.items():
            if column == NAME_KEY:
                words = {w.lower() for w in WORD.findall(str(metadata.get(NAME_COLUMN, "")))}
                if not words & {v.lower() for v in values}:
                    return False
            elif str(metadata.get(column)) not in values:
                return False
        return True


def load_queries(path: str | Path | None = None) -> list[SearchQuery]:
    """The queries of a JSONL file (None: the shipped ``search_queries.jsonl``)."""
    if path is None:
        text = (
            resources.files("fashionclip.data")
            .joinpath("search_queries.jsonl")
            .read_text(encoding="utf-8")
        )
    else:
        text = Path(path).read_text(encoding="utf-8")
    queries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        split = row.get("split", "test")
        if split not in SPLITS or not isinstance(row.get("relevant"), dict):
            raise ValueError(f"query line {n}: needs split dev|test and a relevant mapping")
        relevant = {str(c): [str(v) for v in vs] for c, vs in row["relevant"].items()}
        queries.append(
            SearchQuery(str(row["query"]), str(row.get("slice", "all")), split, relevant)
        )
    return queries


def query_metrics(ranked_relevant: Sequence[bool], n_relevant: int) -> dict[str, float]:
    """P@10, nDCG@10 and MRR of one ranking (``ranked_relevant[i]``: hit i is relevant)."""
    top = list(ranked_relevant)[:CUTOFF]
    ideal = min(CUTOFF, n_relevant)
    if ideal == 0:
        raise ValueError("a query with no relevant product cannot be scored")
    dcg = sum(1.0 / math.log2(i + 2) for i, hit in enumerate(top) if hit)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(ideal))
    first = next((i for i, hit in enumerate(top) if hit), None)
    return {
        "p@10": sum(top) / ideal,
        "ndcg@10": dcg / idcg,
        "mrr": 0.0 if first is None else 1.0 / (first + 1),
    }


#: ``search(text, mode) -> metadata of the hits, best first``.
SearchFn = Callable[[str, str], list[Mapping[str, Any]]]


@dataclass
class SearchQualityReport:
    """Per-query metrics and their means per (split, mode, slice)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def table(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """``{split: {mode: {slice or "all": {metric: mean, "n": count}}}}``."""
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for row in self.rows:
            for slice_ in (row["slice"], "all"):
                groups.setdefault((row["split"], row["mode"], slice_), []).append(row)
        out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for (split, mode, slice_), rows in sorted(groups.items()):
            means = {m: sum(r[m] for r in rows) / len(rows) for m in ("p@10", "ndcg@10", "mrr")}
            out.setdefault(split, {}).setdefault(mode, {})[slice_] = {**means, "n": len(rows)}
        return out


def evaluate_search(
    search: SearchFn,
    products: Iterable[Mapping[str, Any]],
    queries: Sequence[SearchQuery],
    modes: Sequence[str] = MODES,
    splits: Sequence[str] = SPLITS,
) -> SearchQualityReport:
    """Run every query of ``splits`` in every mode; ``products`` are all catalog metadata
    (to count the relevant ones). Queries with no relevant product are skipped and listed."""
    catalog = list(products)
    report = SearchQualityReport()
    for q in queries:
        if q.split not in splits:
            continue
        n_relevant = sum(q.is_relevant(m) for m in catalog)
        if n_relevant == 0:
            report.skipped.append(q.query)
            continue
        for mode in modes:
            hits = search(q.query, mode)
            metrics = query_metrics([q.is_relevant(m) for m in hits], n_relevant)
            report.rows.append(
                {"query": q.query, "split": q.split, "slice": q.slice, "mode": mode,
                 "relevant": n_relevant, **metrics}
            )  # fmt: skip
    return report


def catalog_search(catalog: Any, k: int = CUTOFF) -> SearchFn:
    """A :data:`SearchFn` over a :class:`~fashionclip.index.Catalog` (with its model)."""

    def search(text: str, mode: str) -> list[Mapping[str, Any]]:
        return [r.metadata for r in catalog.search(text, k=k, mode=mode)]

    return search


def catalog_metadata(catalog: Any) -> list[dict[str, Any]]:
    """Metadata of every product of a catalog."""
    stored = catalog.store.products(catalog.ids())
    return [json.loads(p.metadata_json) for p in stored.values()]


@dataclass
class SearchQualityEvaluator:
    """Evaluator (see :mod:`.base`) of a catalog's search: ``evaluator(model)`` attaches the
    model to the catalog and returns ``{"<split>/<mode>/<slice>/<metric>": value}``."""

    catalog: Any
    queries: Sequence[SearchQuery] = field(default_factory=load_queries)
    modes: Sequence[str] = MODES
    splits: Sequence[str] = ("test",)
    name: str = "search-quality"
    primary_metric: str = "test/hybrid/all/p@10"

    def __call__(self, model: Any) -> dict[str, Any]:
        if model is not None:
            self.catalog.attach_model(model)
        report = evaluate_search(
            catalog_search(self.catalog),
            catalog_metadata(self.catalog),
            self.queries,
            self.modes,
            self.splits,
        )
        flat: dict[str, Any] = {}
        for split, by_mode in report.table().items():
            for mode, by_slice in by_mode.items():
                for slice_, metrics in by_slice.items():
                    for metric, value in metrics.items():
                        flat[f"{split}/{mode}/{slice_}/{metric}"] = value
        flat["skipped"] = list(report.skipped)
        return flat
