"""Search quality and latency of the search modes (vector, keyword, hybrid).

Quality (needs a KAGL test-split catalog built with the default model)::

    python benchmarks/hybrid_search.py quality --catalog /tmp/kagl-test [--select] [--test]

prints P@10 / nDCG@10 / MRR per mode and query slice on the dev queries of
``fashionclip/data/search_queries.jsonl`` (``--test``: also on the test queries, to be run
once, after the weights are fixed) and the colour counts of five colour queries ('red dress',
'black handbag', 'white sneakers', 'blue jeans', 'gold watch': top-10 results of the asked
colour). ``--select`` grid-searches the fusion weights on the dev queries only.

Latency::

    python benchmarks/hybrid_search.py latency [--size 50000] [--queries 200]

builds a catalog of ``size`` products (KAGL styles.csv metadata repeated with new ids,
synthetic clustered vectors) and times ``Catalog.run`` for the same text queries in vector and
hybrid mode, same run; the query vector is precomputed (the model's encoding time, identical in
both modes, is left out, so the ratio is the strictest form).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fashionclip.evaluate.search_quality import (
    SearchQuery,
    catalog_metadata,
    evaluate_search,
    load_queries,
)
from fashionclip.index import Catalog, Query
from fashionclip.index.hybrid import DEFAULT_WEIGHTS, FusionWeights

COLOUR_QUERIES = {
    "red dress": "Red",
    "black handbag": "Black",
    "white sneakers": "White",
    "blue jeans": "Blue",
    "gold watch": "Gold",
}
MODES = ("vector", "keyword", "hybrid")


class CachedEncoder:
    """Encodes each distinct text once (the grid reruns the same queries)."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, query: Query) -> np.ndarray:
        key = str(query.text)
        if key not in self.cache:
            self.cache[key] = self.model.encode_text(key)  # type: ignore[attr-defined]
        return self.cache[key]


def searcher(catalog: Catalog, encode: CachedEncoder):
    def search(text: str, mode: str) -> list[dict]:
        return [r.metadata for r in catalog.run(Query(text=text, k=10, mode=mode), encode)]

    return search


def print_table(title: str, table: dict) -> None:
    print(f"\n## {title}")
    for split, by_mode in table.items():
        slices = sorted(next(iter(by_mode.values())))
        print(f"\n{split}: P@10 / nDCG@10 / MRR")
        print(f"{'slice':<14} " + " ".join(f"{m:>22}" for m in by_mode))
        for s in [x for x in slices if x != "all"] + ["all"]:
            cells = []
            for mode in by_mode:
                m = by_mode[mode][s]
                cells.append(f"{m['p@10']:.3f}/{m['ndcg@10']:.3f}/{m['mrr']:.3f}")
            n = next(iter(by_mode.values()))[s]["n"]
            print(f"{s + f' ({n})':<14} " + " ".join(f"{c:>22}" for c in cells))


def colour_counts(catalog: Catalog, encode: CachedEncoder) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for mode in ("vector", "hybrid"):
        counts = {}
        for text, colour in COLOUR_QUERIES.items():
            hits = catalog.run(Query(text=text, k=10, mode=mode), encode)
            counts[text] = sum(h.metadata.get("baseColour") == colour for h in hits)
        counts["total"] = sum(counts.values())
        out[mode] = counts
    return out


def dev_score(
    catalog: Catalog, encode: CachedEncoder, products: list, queries: list
) -> tuple[float, int, float]:
    """Selection key on dev only: macro P@10 over dev slices, then the top-10 colour count of
    the dev colour queries (red dress, white sneakers, gold watch), then macro nDCG@10."""
    report = evaluate_search(searcher(catalog, encode), products, queries, ("hybrid",), ("dev",))
    table = report.table()["dev"]["hybrid"]
    slices = [m for s, m in table.items() if s != "all"]
    colour = 0
    for q in queries:
        if q.split == "dev" and q.query in COLOUR_QUERIES:
            hits = catalog.run(Query(text=q.query, k=10, mode="hybrid"), encode)
            colour += sum(h.metadata.get("baseColour") == COLOUR_QUERIES[q.query] for h in hits)
    p10 = float(np.mean([m["p@10"] for m in slices]))
    ndcg = float(np.mean([m["ndcg@10"] for m in slices]))
    return round(p10, 3), colour, round(ndcg, 3)


def select(catalog: Catalog, encode: CachedEncoder, products: list, queries: list) -> None:
    grid = itertools.product(
        ("rrf", "score"), (0.5, 1.0), (0.5, 1.0), (0.5, 1.0), (0.0, 1.0, 2.0), (0.0, 2.0, 4.0),
        (False, True),
    )  # fmt: skip
    scored = []
    for fusion, vector, keyword, attributes, columns, boost, adaptive in grid:
        weights = FusionWeights(fusion, vector, keyword, attributes, columns, boost, adaptive)
        catalog.hybrid.weights = weights
        scored.append((dev_score(catalog, encode, products, queries), weights))
    scored.sort(key=lambda x: x[0], reverse=True)
    for score, weights in scored[:15]:
        print(f"dev macro P@10 {score[0]:.3f} colour {score[1]}/30 nDCG {score[2]:.3f}  {weights}")
    catalog.hybrid.weights = DEFAULT_WEIGHTS


def quality(args: argparse.Namespace) -> None:
    from fashionclip import load

    queries: list[SearchQuery] = load_queries(args.queries)
    catalog = Catalog.open(args.catalog, load(args.model))
    encode = CachedEncoder(catalog.model)
    products = catalog_metadata(catalog)
    print(f"catalog {args.catalog}: {len(products)} products; weights {catalog.hybrid.weights}")
    if args.select:
        select(catalog, encode, products, queries)
        return
    if args.max_df:
        for value in args.max_df:
            catalog.hybrid.weights = DEFAULT_WEIGHTS.with_(keyword_max_df=value)
            score = dev_score(catalog, encode, products, queries)
            print(f"keyword_max_df {value}: dev macro P@10 {score[0]:.3f} colour {score[1]}/30 "
                  f"nDCG {score[2]:.3f}")  # fmt: skip
        catalog.hybrid.weights = DEFAULT_WEIGHTS
        return
    splits = ("dev", "test") if args.test else ("dev",)
    report = evaluate_search(searcher(catalog, encode), products, queries, MODES, splits)
    print_table("search quality", report.table())
    if report.skipped:
        print("skipped (no relevant product):", report.skipped)
    print("\n## colour queries (top-10 results of the asked colour)")
    print(json.dumps(colour_counts(catalog, encode), indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"table": report.table(), "rows": report.rows}))


def kagl_metadata(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v for k, v in r.items() if k != "id" and k is not None} for r in rows]


def latency(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from search_latency import clustered_vectors

    metas = kagl_metadata(Path(args.styles))
    n = args.size
    vectors, _, centres = clustered_vectors(n, args.dim, seed=0)
    texts = [q.query for q in load_queries(None)]
    rng = np.random.default_rng(1)
    qvecs = {t: centres[rng.integers(len(centres))] for t in texts}
    identity = {"name": "synthetic", "kind": "synthetic", "embedding_dim": args.dim,
                "fingerprint": "synthetic"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog.create(Path(tmp) / "c", identity)
        ids = [f"p{i}" for i in range(n)]
        started = time.perf_counter()
        for start in range(0, n, 10_000):
            stop = min(n, start + 10_000)
            catalog.add_embeddings(
                ids[start:stop], vectors[start:stop], [metas[i % len(metas)] for i in range(start, stop)]
            )  # fmt: skip
        print(f"{n} products added in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        catalog.build_text_index()
        print(f"text index built in {time.perf_counter() - started:.2f}s")
        extra = 1000
        started = time.perf_counter()
        catalog.add_embeddings([f"x{i}" for i in range(extra)], vectors[:extra], metas[:extra])
        print(f"adding {extra} more with the text index: {time.perf_counter() - started:.2f}s")

        def encode(query: Query) -> np.ndarray:
            return qvecs[str(query.text)]

        times: dict[str, list[float]] = {m: [] for m in MODES}
        picks = [texts[i % len(texts)] for i in range(args.queries)]
        for mode in MODES:
            for text in picks[:5]:  # warm-up (snapshot, column codes, vocabulary)
                catalog.run(Query(text=text, k=10, mode=mode), encode)
        for text in picks:  # interleaved: both modes see the same machine state
            for mode in MODES:
                began = time.perf_counter()
                catalog.run(Query(text=text, k=10, mode=mode), encode)
                times[mode].append(1000 * (time.perf_counter() - began))
        p50 = {m: float(np.percentile(t, 50)) for m, t in times.items()}
        p95 = {m: float(np.percentile(t, 95)) for m, t in times.items()}
        for m in MODES:
            print(f"{m:<8} p50 {p50[m]:.2f} ms  p95 {p95[m]:.2f} ms")
        print(f"hybrid / vector p50 ratio: {p50['hybrid'] / p50['vector']:.2f} (target <= 1.5)")
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--catalog", required=True)
    q.add_argument("--model", default=None)
    q.add_argument("--queries", default=None, help="JSONL (default: the shipped queries)")
    q.add_argument("--select", action="store_true", help="grid-search weights on dev")
    q.add_argument("--test", action="store_true", help="also report the test queries")
    q.add_argument(
        "--max-df", type=float, nargs="*", help="dev scores for these keyword_max_df values"
    )
    q.add_argument("--json", default=None, help="write the table and per-query rows here")
    lat = sub.add_parser("latency")
    lat.add_argument("--size", type=int, default=50_000)
    lat.add_argument("--dim", type=int, default=512)
    lat.add_argument("--queries", type=int, default=200)
    lat.add_argument("--styles", default="../shared/data/kagl/styles.csv")
    args = parser.parse_args()
    quality(args) if args.what == "quality" else latency(args)


if __name__ == "__main__":
    main()
