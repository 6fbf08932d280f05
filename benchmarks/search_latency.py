"""Search latency of a catalog at 50k and 1M synthetic clustered vectors vs. naive baselines.

Run:  python benchmarks/search_latency.py [--sizes 50000 1000000] [--dim 512] [--queries 200]

The vectors are clustered like product embeddings (a few thousand "styles", Zipf-sized, plus
noise), not uniform random, and carry KAGL-like metadata correlated with the cluster. Queries
are perturbed cluster centres. Measured in the same run, on the same data:

* ``catalog``: ``Catalog.search(vector=q, k)`` end to end (dot products over memory-mapped
  segments, tombstone/filter masks, argpartition top-k, metadata of the k hits from SQLite);
* ``naive``: the matrix in RAM, ``scores = M @ q`` then a full ``argsort`` (and, with a
  filter, a pandas boolean mask built per query);
* ``sql-filter``: the filter evaluated per query with ``json_extract`` in SQLite, which is the
  alternative to the per-column code arrays the catalog caches.

With ``--ann-max-size N``, sizes up to N also build the optional usearch HNSW index and report
its latency and recall@k against the exact results.

Text encoding is not included (it is the model's cost, not the store's). Results (top-k ids)
of the catalog are checked against the naive ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def clustered_vectors(n: int, dim: int, seed: int, n_clusters: int = 2000):
    """``(vectors, cluster_of_row, centres)``: L2-normalised float32 rows around Zipf clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    cluster = rng.choice(n_clusters, size=n, p=weights / weights.sum())
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        noise = rng.normal(scale=0.7 / np.sqrt(dim), size=(stop - start, dim)).astype(np.float32)
        block = centres[cluster[start:stop]] + noise
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors, cluster, centres


def metadata_for(cluster: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    genders = np.array(["Men", "Women", "Unisex", "Boys", "Girls"])
    gender_p = np.array([0.5, 0.41, 0.05, 0.02, 0.02])
    cluster_gender = rng.choice(len(genders), size=cluster.max() + 1, p=gender_p)
    article_types = np.array([f"type{i:03d}" for i in range(141)])
    colours = np.array([f"colour{i:02d}" for i in range(46)])
    return {
        "gender": genders[cluster_gender[cluster]],
        "articleType": article_types[cluster % 141],
        "baseColour": colours[rng.integers(0, 46, size=len(cluster))],
        "year": rng.integers(2007, 2020, size=len(cluster)),
    }


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench(fn, queries, repeat_warmup: int = 3) -> tuple[list[float], list]:
    for q in queries[:repeat_warmup]:
        fn(q)
    times, outputs = [], []
    for q in queries:
        start = time.perf_counter()
        out = fn(q)
        times.append(time.perf_counter() - start)
        outputs.append(out)
    return times, outputs


def build_catalog(folder: Path, vectors: np.ndarray, meta: dict[str, np.ndarray], ids: np.ndarray):
    """Write the vectors and metadata as a catalog, reopen it; ``(catalog, timings)``."""
    from fashionclip.index import Catalog

    shutil.rmtree(folder, ignore_errors=True)
    identity = {
        "name": "synthetic",
        "kind": "bench",
        "embedding_dim": vectors.shape[1],
        "fingerprint": "0",
    }
    catalog = Catalog.create(folder, identity)
    start = time.perf_counter()
    chunk = 100_000
    for lo in range(0, len(ids), chunk):
        hi = min(len(ids), lo + chunk)
        rows = [
            {
                "gender": str(meta["gender"][i]),
                "articleType": str(meta["articleType"][i]),
                "baseColour": str(meta["baseColour"][i]),
                "year": int(meta["year"][i]),
            }
            for i in range(lo, hi)
        ]
        catalog.add_embeddings(list(ids[lo:hi]), vectors[lo:hi], rows)
    build_s = time.perf_counter() - start
    catalog.close()
    start = time.perf_counter()
    catalog = Catalog.open(folder)
    _ = len(catalog)
    open_s = time.perf_counter() - start
    start = time.perf_counter()
    catalog.facets(["gender"])
    column_s = time.perf_counter() - start
    print(
        f"catalog: built in {build_s:.1f}s ({catalog.stats().segments} segments), "
        f"opened in {open_s * 1000:.0f} ms, first filter column cached in {column_s * 1000:.0f} ms",
        flush=True,
    )
    return catalog, {
        "build_s": build_s,
        "open_ms": open_s * 1000,
        "first_column_ms": column_s * 1000,
    }


def naive_search(in_ram: np.ndarray, ids: np.ndarray, frame, k: int):
    """The baseline: the matrix in RAM, a full argsort, a pandas mask built per query."""

    def search(q, filt=None):
        if filt is None:
            return list(ids[np.argsort(-(in_ram @ q))[:k]])
        mask = np.ones(len(ids), dtype=bool)
        for column, values in filt.items():
            mask &= frame[column].isin(values if isinstance(values, list) else [values]).to_numpy()
        rows = np.flatnonzero(mask)
        return list(ids[rows[np.argsort(-(in_ram[rows] @ q))[:k]]])

    return search


def sql_filter_search(catalog, k: int):
    """The alternative to cached code arrays: the filter as ``json_extract`` in SQLite per query."""
    con = catalog.store.connection()
    segments = catalog.snapshot().segments

    def search(q, filt):
        ((column, value),) = filt.items()
        query = "SELECT slot FROM products WHERE json_extract(metadata, ?) = ?"
        rows = con.execute(query, (f"$.{column}", value))
        slots = np.fromiter((r[0] for r in rows), dtype=np.int64)
        scores = np.concatenate([seg.vectors @ q for seg in segments])[slots]
        return list(slots[np.argsort(-scores)[:k]])

    return search


def filter_cases(catalog, naive, sql_filter, queries: np.ndarray, k: int) -> dict[str, dict]:
    """Catalog vs naive (and SQL filter) latency, and agreement of the top k, per filter case."""
    cases = [
        ("no filter", None),
        ("gender=Women", {"gender": "Women"}),
        ("articleType in 2", {"articleType": ["type000", "type007"]}),
    ]
    figures: dict[str, dict] = {}
    for label, filt in cases:
        ours_t, ours_out = bench(
            lambda q, f=filt: [r.id for r in catalog.search(vector=q, k=k, filters=f)], queries
        )
        naive_t, naive_out = bench(lambda q, f=filt: naive(q, f), queries)
        agree = np.mean([a == b for a, b in zip(ours_out, naive_out, strict=True)])
        row = {
            "catalog_p50_ms": percentiles(ours_t)[0],
            "catalog_p99_ms": percentiles(ours_t)[1],
            "naive_p50_ms": percentiles(naive_t)[0],
            "naive_p99_ms": percentiles(naive_t)[1],
            "same_top_k": float(agree),
        }
        if filt is not None and len(filt) == 1 and not isinstance(next(iter(filt.values())), list):
            sql_t, _ = bench(
                lambda q, f=filt: sql_filter(q, f), queries[: max(10, len(queries) // 10)]
            )
            row["sql_filter_p50_ms"], row["sql_filter_p99_ms"] = percentiles(sql_t)
        figures[label] = row
        line = (
            f"{label:>18}: catalog p50 {row['catalog_p50_ms']:7.2f} ms  p99 "
            f"{row['catalog_p99_ms']:7.2f} ms | naive p50 {row['naive_p50_ms']:7.2f} ms  p99 "
            f"{row['naive_p99_ms']:7.2f} ms | speed-up p50 x{row['naive_p50_ms'] / row['catalog_p50_ms']:.1f}"
        )
        if "sql_filter_p50_ms" in row:
            line += (
                f" | json_extract filter p50 {row['sql_filter_p50_ms']:.1f} ms "
                f"(x{row['sql_filter_p50_ms'] / row['catalog_p50_ms']:.1f})"
            )
        line += f" | same top-{k}: {agree:.0%}"
        print(line, flush=True)
    return figures


def ann_case(catalog, queries: np.ndarray, k: int) -> dict:
    """Build the usearch index; its latency and recall@k against exact search."""
    start = time.perf_counter()
    info = catalog.build_ann()
    build_ann_s = time.perf_counter() - start
    exact_t, exact_out = bench(
        lambda q: [r.id for r in catalog.search(vector=q, k=k, exact=True)], queries
    )
    ann_t, ann_out = bench(
        lambda q: [r.id for r in catalog.search(vector=q, k=k, exact=False)], queries
    )
    recall = np.mean([len(set(a) & set(e)) / k for a, e in zip(ann_out, exact_out, strict=True)])
    row = {
        "build_s": build_ann_s,
        "exact_p50_ms": percentiles(exact_t)[0],
        "ann_p50_ms": percentiles(ann_t)[0],
        "ann_p99_ms": percentiles(ann_t)[1],
        f"recall_at_{k}": float(recall),
        "dtype": info.params["dtype"],
        "connectivity": info.params["connectivity"],
        "expansion_search": info.params["expansion_search"],
    }
    print(
        f"{'ANN (usearch)':>18}: built in {build_ann_s:.1f}s | p50 {row['ann_p50_ms']:.2f} ms "
        f"p99 {row['ann_p99_ms']:.2f} ms vs exact p50 {row['exact_p50_ms']:.2f} ms "
        f"(x{row['exact_p50_ms'] / row['ann_p50_ms']:.1f}) | recall@{k} {recall:.3f}",
        flush=True,
    )
    return row


def run_size(
    n: int, dim: int, n_queries: int, k: int, workdir: Path, seed: int, ann: bool = False
) -> dict:
    """Every measurement at one catalog size."""
    import pandas as pd

    print(f"\n=== {n:,} vectors x {dim} (clustered), {n_queries} queries, k={k} ===", flush=True)
    start = time.perf_counter()
    vectors, cluster, centres = clustered_vectors(n, dim, seed)
    meta = metadata_for(cluster, seed)
    print(f"generated in {time.perf_counter() - start:.1f}s", flush=True)
    ids = np.array([f"p{i}" for i in range(n)])
    catalog, timings = build_catalog(workdir / f"catalog-{n}", vectors, meta, ids)

    rng = np.random.default_rng(seed + 2)
    picks = rng.choice(len(centres), size=n_queries)
    queries = centres[picks] + rng.normal(scale=0.7 / np.sqrt(dim), size=(n_queries, dim))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    frame = pd.DataFrame({"id": ids, **meta})
    # the naive baseline holds the matrix in memory
    naive = naive_search(np.array(vectors), ids, frame, k)
    figures = filter_cases(catalog, naive, sql_filter_search(catalog, k), queries, k)
    ann_row = ann_case(catalog, queries, k) if ann else None
    catalog.close()
    return {"ann": ann_row, "n": n, "dim": dim, **timings, "cases": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    parser.add_argument(
        "--ann-max-size",
        type=int,
        default=0,
        help="also build and measure the optional usearch index for sizes up to this",
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fashionclip-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in args.sizes:
            queries = args.queries if n <= 100_000 else max(20, args.queries // 4)
            ann = n <= args.ann_max_size
            results.append(run_size(n, args.dim, queries, args.k, workdir, args.seed, ann))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
