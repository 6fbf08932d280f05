"""One machine, 1M products: the catalog's automatic ANN index on realistic vectors.

Run:  python benchmarks/ann_scale.py --embeddings /tmp/ann/kagl_img.npy --size 1000000
      python benchmarks/ann_scale.py --embeddings /tmp/ann/kagl_img.npy --size 200000 --sweep

Vectors. ``--embeddings`` is the default model's embeddings of all 44,072 KAGL images, in
``styles.csv`` order of the ids that have an image (``--embed`` computes and caches it, ~10 min
on 2 CPU cores). They are expanded to ``--size`` rows keeping their cluster structure: row
``i < 44072`` is image ``i``; every further row is a random image's vector plus isotropic
Gaussian noise whose expected norm is ``--noise`` (default 0.5) times the median
nearest-neighbour distance between the original vectors, renormalised. So a copy sits closer to
its source than the source's nearest other image, and the catalog keeps the real images'
clusters, density and metadata (each row carries its source product's KAGL columns).

Queries (never the ones used for tuning: ``--sweep`` tunes on even-numbered samples, the
measured run uses odd ones):

* text: the default model's text embeddings of real product names (``productDisplayName``)
  and article-type phrases ("a photo of {articleType}"); these sit far from image vectors;
* more like this: ``Catalog.search(like=id)`` of random products (image-to-image).

Measured in one run: catalog load (``add_embeddings``), automatic ANN build (time, peak RSS),
add-10k (incremental update), open time (``Catalog.open`` + first ANN query, memory-mapped),
bytes per product, and p50/p99 latency plus recall@10 against exact search for unfiltered, 5%
(``baseColour=Red``) and 0.1% (``articleType=Boxers``) filters, text and more-like-this
queries, next to a plain numpy scan (``M @ q``, ``argpartition``) of the same matrix in RAM.
Per filter also: the path the catalog's rule picks (exact / reduced / ann = HNSW), the first
query's time (cold: the first filtered query fits and projects the reduced vectors, and each
filter gathers its reduced rows once), and the HNSW index forced (``exact=False``).
``--sweep`` instead measures recall/latency of raw usearch indexes for several dtypes and
``expansion_search`` values (the tuning behind the defaults).
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np

KAGL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kagl"
FILTERS = {
    "none": None,
    "5% (baseColour=Red)": {"baseColour": "Red"},
    "0.1% (articleType=Boxers)": {"articleType": "Boxers"},
}
COLUMNS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "year")


def rss_gb() -> float:
    """Peak resident set size of this process so far, GB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def kagl_rows(kagl: Path) -> list[dict[str, str]]:
    """styles.csv rows whose image exists, in file order (the embeddings' order)."""
    images = {p.stem for p in (kagl / "images").iterdir()}
    with open(kagl / "styles.csv", newline="", encoding="utf-8") as handle:
        return [r for r in csv.DictReader(handle) if r["id"] in images]


def embed_images(kagl: Path, out: Path) -> None:
    import fashionclip

    rows = kagl_rows(kagl)
    model = fashionclip.load()
    paths = [kagl / "images" / f"{r['id']}.jpg" for r in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.asarray(model.encode_images(paths, batch_size=64), dtype=np.float32))


def text_queries(kagl: Path, rows: list[dict[str, str]], n: int, part: int) -> np.ndarray:
    """Default-model text embeddings of product names and article-type phrases; ``part`` 0
    (even samples: tuning) or 1 (odd samples: measuring)."""
    import fashionclip

    rng = np.random.default_rng(7)
    names = [r["productDisplayName"] for r in rows if r.get("productDisplayName")]
    picked = [names[i] for i in rng.choice(len(names), size=2 * n, replace=False)][part::2]
    types = sorted({r["articleType"] for r in rows})
    phrases = [f"a photo of {t.lower()}" for t in types][part::2]
    texts = picked[: n - n // 4] + phrases[: n // 4]
    model = fashionclip.load()
    vectors = np.stack([np.asarray(model.encode_text(t), dtype=np.float32) for t in texts])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def nn_distance(base: np.ndarray, sample: int = 2000) -> float:
    """Median distance from an image vector to its nearest other image vector."""
    rng = np.random.default_rng(1)
    rows = rng.choice(len(base), size=min(sample, len(base)), replace=False)
    sims = base[rows] @ base.T
    sims[np.arange(len(rows)), rows] = -np.inf
    return float(np.median(np.sqrt(np.maximum(0.0, 2 - 2 * sims.max(axis=1)))))


def expand(base: np.ndarray, size: int, noise: float, seed: int = 0):
    """Yield ``(source_rows, vectors)`` chunks of the expanded set (module docstring)."""
    n0, dim = base.shape
    sigma = noise * nn_distance(base) / np.sqrt(dim)
    rng = np.random.default_rng(seed)
    yield np.arange(min(n0, size)), base[: min(n0, size)]
    for lo in range(n0, size, 100_000):
        hi = min(size, lo + 100_000)
        src = rng.integers(0, n0, size=hi - lo)
        block = base[src] + rng.normal(scale=sigma, size=(hi - lo, dim)).astype(np.float32)
        yield src, block / np.linalg.norm(block, axis=1, keepdims=True)


def timed(fn, queries) -> tuple[np.ndarray, list]:
    """Per-query seconds and outputs (after 3 warm-up calls)."""
    for q in queries[:3]:
        fn(q)
    times, outs = [], []
    for q in queries:
        start = time.perf_counter()
        outs.append(fn(q))
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000, outs


def recall(got: list[list[str]], want: list[list[str]], k: int) -> float:
    return float(
        np.mean(
            [len(set(g) & set(w)) / max(1, min(k, len(w))) for g, w in zip(got, want, strict=True)]
        )
    )


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load_catalog(folder: Path, base, rows, size: int, noise: float, hold_out: int):
    """Create the catalog with ``size - hold_out`` rows (no ANN yet); returns the held-out
    chunk (ids, vectors, metadata) and the seconds spent adding."""
    from fashionclip.index import Catalog

    shutil.rmtree(folder, ignore_errors=True)
    identity = {"name": "fashion-clip-mini", "kind": "bench", "embedding_dim": base.shape[1],
                "fingerprint": "kagl"}  # fmt: skip
    catalog = Catalog.create(folder, identity)
    seconds, held, at = 0.0, None, 0
    for src, vectors in expand(base, size, noise):
        ids = [f"p{at + i}" for i in range(len(src))]
        meta = [{c: rows[s][c] for c in COLUMNS} | {"source": rows[s]["id"]} for s in src]
        at += len(src)
        if at > size - hold_out and held is None:
            cut = len(src) - (at - (size - hold_out))
            held = (ids[cut:], vectors[cut:], meta[cut:])
            ids, vectors, meta = ids[:cut], vectors[:cut], meta[:cut]
        start = time.perf_counter()
        catalog.add_embeddings(ids, vectors, meta, update_ann=False)
        seconds += time.perf_counter() - start
    return catalog, held, seconds


def measure(args: argparse.Namespace) -> dict:
    from fashionclip.index import Catalog

    rows = kagl_rows(args.kagl)
    base = np.load(args.embeddings)
    assert len(base) == len(rows), (base.shape, len(rows))
    folder = args.workdir / f"catalog-{args.size}"
    out: dict = {"size": args.size, "noise": args.noise, "nn_distance": nn_distance(base)}
    catalog, held, out["add_s"] = load_catalog(folder, base, rows, args.size, args.noise, 10_000)
    print(f"catalog of {len(catalog):,} loaded in {out['add_s']:.1f}s, peak RSS {rss_gb():.2f} GB",
          flush=True)  # fmt: skip
    start = time.perf_counter()
    done = catalog.update_ann(show_progress=False)
    out["build_s"], out["build_peak_rss_gb"] = time.perf_counter() - start, rss_gb()
    assert done is not None and done.action == "built", done
    print(f"ANN built in {out['build_s']:.1f}s, peak RSS {rss_gb():.2f} GB", flush=True)
    start = time.perf_counter()
    catalog.add_embeddings(*held)  # the automatic update: extends the index
    out["add_10k_s"] = time.perf_counter() - start
    info = catalog.ann_info
    assert info is not None and info.size == args.size, info
    print(f"added 10k (index extended) in {out['add_10k_s']:.1f}s", flush=True)
    catalog.close()
    start = time.perf_counter()
    catalog = Catalog.open(folder)
    some_id = "p0"
    catalog.search(like=some_id, k=10)
    out["open_s"] = time.perf_counter() - start
    n = len(catalog)
    out["bytes_per_product"] = {
        "vectors": folder_bytes(folder / "vectors") / n,
        "ann": folder_bytes(folder / "ann") / n,
        "sqlite": sum(p.stat().st_size for p in folder.glob("catalog.sqlite*")) / n,
    }
    out["params"] = info.params
    out["cases"] = query_cases(catalog, folder, rows, args)
    out["peak_rss_gb"] = rss_gb()
    catalog.close()
    return out


def query_cases(catalog, folder: Path, rows, args) -> dict:
    """Latency and recall per (filter, query kind), exact vs default (ANN) vs numpy."""
    snap = catalog.snapshot()
    matrix = np.concatenate([np.asarray(s.vectors) for s in snap.segments])  # naive: in RAM
    ids = np.array([f"p{i}" for i in range(len(matrix))])  # positions == slots == p<i> here
    texts = text_queries(args.kagl, rows, args.queries, part=1)
    rng = np.random.default_rng(11)
    likes = [f"p{i}" for i in rng.choice(len(matrix), size=args.queries, replace=False)]
    cases = {}
    for label, filt in FILTERS.items():
        share = 1.0 if filt is None else len(catalog.search(vector=texts[0], k=10**7, filters=filt,
                                                            exact=True)) / len(matrix)  # fmt: skip
        for kind, queries in (("text", list(texts)), ("more like this", likes)):

            def run(q, exact, f=filt, kind=kind):
                if kind == "text":
                    hits = catalog.search(vector=q, k=10, filters=f, exact=exact)
                else:
                    hits = catalog.search(like=q, k=10, filters=f, exact=exact)
                return [h.id for h in hits]

            first_ms = None
            if filt is not None:  # cold: the filter's first query (and the first ever: the fit)
                start = time.perf_counter()
                run(queries[0], None)
                first_ms = 1000 * (time.perf_counter() - start)
            ex_t, ex_out = timed(lambda q: run(q, True), queries)
            an_t, an_out = timed(lambda q: run(q, None), queries)
            row = {
                "path": chosen_path(catalog, filt),
                "filter_share": share,
                "exact_p50_ms": float(np.percentile(ex_t, 50)),
                "exact_p99_ms": float(np.percentile(ex_t, 99)),
                "default_p50_ms": float(np.percentile(an_t, 50)),
                "default_p99_ms": float(np.percentile(an_t, 99)),
                "recall_at_10": recall(an_out, ex_out, 10),
            }
            if first_ms is not None:
                row["default_first_ms"] = first_ms
            if filt is not None:  # the HNSW index forced (exact=False), whatever the rule picks
                fo_t, fo_out = timed(lambda q: run(q, False), queries)
                row["ann_forced_p50_ms"] = float(np.percentile(fo_t, 50))
                row["ann_forced_recall"] = recall(fo_out, ex_out, 10)
            if filt is None and kind == "text":
                np_t, np_out = timed(lambda q: list(ids[_numpy_top(matrix, q, 10)]), queries)
                row["numpy_p50_ms"] = float(np.percentile(np_t, 50))
                row["numpy_p99_ms"] = float(np.percentile(np_t, 99))
                row["exact_matches_numpy"] = recall(ex_out, np_out, 10)
            cases[f"{label} | {kind}"] = row
            print(f"{label:>28} | {kind:>14}: " + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  flush=True)  # fmt: skip
    return cases


def chosen_path(catalog, filt) -> str:
    """Which index the catalog's rule picks for ``filt`` (exact, reduced or ann: HNSW)."""
    from fashionclip.index import ann as ann_life
    from fashionclip.index import filters

    snap = catalog.snapshot()
    ann = catalog._ann.get(snap)
    wanted = None if filt is None else {c: [v] for c, v in filt.items()}
    allowed = filters.candidates(snap, wanted, catalog.store.column_values)
    index = ann_life.choose(snap, allowed, None, ann, catalog._ann.reduced)
    return "exact" if index is None else index.name


def _numpy_top(matrix: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = matrix @ q
    top = np.argpartition(scores, len(scores) - k)[-k:]
    return top[np.argsort(-scores[top])]


def sweep(args: argparse.Namespace) -> dict:
    """Recall@10 / latency of raw usearch indexes per dtype and expansion_search (tuning)."""
    from usearch.index import Index

    rows = kagl_rows(args.kagl)
    base = np.load(args.embeddings)
    matrix = np.concatenate([v for _, v in expand(base, args.size, args.noise)])
    texts = text_queries(args.kagl, rows, args.queries, part=0)
    rng = np.random.default_rng(5)
    images = matrix[rng.choice(len(matrix), size=args.queries, replace=False)]
    truth = {
        kind: [_numpy_top(matrix, q, 10) for q in qs]
        for kind, qs in (("text", texts), ("image", images))
    }
    results = {}
    for dtype in args.dtypes:
        for conn in args.connectivity:
            index = Index(ndim=matrix.shape[1], metric="ip", dtype=dtype, connectivity=conn,
                          expansion_add=128)  # fmt: skip
            start = time.perf_counter()
            for lo in range(0, len(matrix), 65_536):
                hi = min(len(matrix), lo + 65_536)
                index.add(np.arange(lo, hi, dtype=np.uint64), matrix[lo:hi], threads=0)
            build = time.perf_counter() - start
            print(f"{dtype} M={conn}: built {len(matrix):,} in {build:.1f}s, RSS {rss_gb():.2f}")
            for ef in args.efs:
                index.expansion_search = ef
                for fetch in (40, 100):
                    for kind, qs in (("text", texts), ("image", images)):
                        got, times = [], []
                        for q in qs:
                            t0 = time.perf_counter()
                            keys = np.asarray(index.search(q, fetch).keys, dtype=np.int64)
                            top = keys[np.argsort(-(matrix[keys] @ q))[:10]]
                            times.append(time.perf_counter() - t0)
                            got.append(top)
                        r = recall([list(g) for g in got], [list(t) for t in truth[kind]], 10)
                        key = f"{dtype} M={conn} ef={ef} fetch={fetch} {kind}"
                        results[key] = {"recall": r, "p50_ms": 1000 * float(np.median(times)),
                                        "build_s": build}  # fmt: skip
                        print(f"{key}: recall@10 {r:.3f} p50 {results[key]['p50_ms']:.2f} ms",
                              flush=True)  # fmt: skip
            del index
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kagl", type=Path, default=KAGL)
    parser.add_argument("--embeddings", type=Path, default=Path("/tmp/ann/kagl_img.npy"))
    parser.add_argument("--embed", action="store_true", help="compute --embeddings first")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ann/bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--dtypes", nargs="+", default=["f16", "i8"])
    parser.add_argument("--connectivity", type=int, nargs="+", default=[16])
    parser.add_argument("--efs", type=int, nargs="+", default=[64, 128, 256, 512])
    args = parser.parse_args()
    if args.embed:
        embed_images(args.kagl, args.embeddings)
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = sweep(args) if args.sweep else measure(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
