"""Which keyword engine for the catalog's text index: SQLite FTS5, tantivy or bm25s.

Run:  python benchmarks/text_engines.py [--size 50000] [--styles ../shared/data/kagl/styles.csv]
(tantivy is optional: ``pip install tantivy``; it is skipped when missing).

Documents are KAGL products (name + attribute values, repeated with new ids up to ``size``);
queries are the shipped search queries. Measured in one run, per engine: building the index,
adding 1,000 products to it (bm25s has no incremental update: it rebuilds), p50/p95 latency of
a top-100 query, and the index's size on disk.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fashionclip.evaluate.search_quality import load_queries
from fashionclip.index.text import TOKENIZER, match_expression

FIELDS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season",
          "usage", "productDisplayName")  # fmt: skip


def documents(styles: Path, size: int) -> list[dict[str, str]]:
    with open(styles, newline="", encoding="utf-8") as handle:
        rows = [{f: r.get(f) or "" for f in FIELDS} for r in csv.DictReader(handle)]
    return [rows[i % len(rows)] for i in range(size)]


def folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def latencies(search: Callable[[str], object], queries: list[str]) -> tuple[float, float]:
    for q in queries[:5]:
        search(q)
    samples = []
    for q in queries:
        started = time.perf_counter()
        search(q)
        samples.append(1000 * (time.perf_counter() - started))
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 95))


def fts5(docs: list[dict[str, str]], extra: list[dict[str, str]], tmp: Path, queries: list[str]):
    path = tmp / "fts.sqlite"
    con = sqlite3.connect(path, isolation_level=None)
    cols = ", ".join(f"f{i}" for i in range(len(FIELDS)))
    marks = ", ".join("?" * (len(FIELDS) + 1))

    def insert(rows: list[dict[str, str]], first: int) -> None:
        con.execute("BEGIN")
        con.executemany(
            f"INSERT INTO t(rowid, {cols}) VALUES ({marks})",
            [(first + i, *(r[f] for f in FIELDS)) for i, r in enumerate(rows)],
        )
        con.execute("COMMIT")

    def build() -> None:
        con.execute(f"CREATE VIRTUAL TABLE t USING fts5({cols}, tokenize = '{TOKENIZER}')")
        insert(docs, 0)

    build_s = timed(build)
    add_s = timed(lambda: insert(extra, len(docs)))

    def search(q: str) -> object:
        expr = match_expression(q)
        if expr is None:
            return []
        return con.execute(
            "SELECT rowid, bm25(t) AS s FROM t WHERE t MATCH ? ORDER BY s LIMIT 100", (expr,)
        ).fetchall()

    p50, p95 = latencies(search, queries)
    return build_s, add_s, p50, p95, folder_size(path)


def bm25s_engine(docs, extra, tmp: Path, queries: list[str]):
    import bm25s

    texts = [" ".join(d[f] for f in FIELDS) for d in docs]
    state: dict[str, object] = {}

    def build(rows: list[str]) -> None:
        tokens = bm25s.tokenize(rows, stopwords="en", show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        retriever.save(str(tmp / "bm25s"))
        state["r"] = retriever

    build_s = timed(lambda: build(texts))
    all_texts = texts + [" ".join(d[f] for f in FIELDS) for d in extra]
    add_s = timed(lambda: build(all_texts))  # no incremental update: rebuild

    def search(q: str) -> object:
        tokens = bm25s.tokenize([q], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        return state["r"].retrieve(tokens, k=100, show_progress=False)  # type: ignore[attr-defined]

    p50, p95 = latencies(search, queries)
    return build_s, add_s, p50, p95, folder_size(tmp / "bm25s")


def tantivy_engine(docs, extra, tmp: Path, queries: list[str]):
    import tantivy

    builder = tantivy.SchemaBuilder()
    for f in FIELDS:
        builder.add_text_field(f, stored=False, tokenizer_name="en_stem")
    builder.add_unsigned_field("slot", stored=True, indexed=True)
    schema = builder.build()
    folder = tmp / "tantivy"
    folder.mkdir()
    index = tantivy.Index(schema, path=str(folder))

    def add(rows: list[dict[str, str]], first: int) -> None:
        writer = index.writer(heap_size=50_000_000, num_threads=1)
        for i, r in enumerate(rows):
            doc = tantivy.Document()
            doc.add_unsigned("slot", first + i)
            for f in FIELDS:
                doc.add_text(f, r[f])
            writer.add_document(doc)
        writer.commit()
        writer.wait_merging_threads()

    build_s = timed(lambda: add(docs, 0))
    add_s = timed(lambda: add(extra, len(docs)))
    index.reload()
    searcher = index.searcher()

    def search(q: str) -> object:
        expr = match_expression(q)
        if expr is None:
            return []
        parsed = index.parse_query(expr, list(FIELDS))
        return searcher.search(parsed, 100).hits

    p50, p95 = latencies(search, queries)
    return build_s, add_s, p50, p95, folder_size(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--styles", default="../shared/data/kagl/styles.csv")
    args = parser.parse_args()
    docs = documents(Path(args.styles), args.size + 1000)
    base, extra = docs[: args.size], docs[args.size :]
    queries = [q.query for q in load_queries(None)] * 3
    engines = {"sqlite-fts5": fts5, "bm25s": bm25s_engine, "tantivy": tantivy_engine}
    print(
        f"{args.size} documents, {len(queries)} queries (top-100), sqlite {sqlite3.sqlite_version}"
    )
    print(f"{'engine':<12} {'build s':>8} {'+1000 s':>8} {'p50 ms':>7} {'p95 ms':>7} {'MiB':>6}")
    for name, engine in engines.items():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                build_s, add_s, p50, p95, size = engine(base, extra, Path(tmp), queries)
            except ImportError as exc:
                print(f"{name:<12} skipped ({exc})")
                continue
            print(
                f"{name:<12} {build_s:>8.2f} {add_s:>8.3f} {p50:>7.2f} {p95:>7.2f} "
                f"{size / 2**20:>6.1f}"
            )


if __name__ == "__main__":
    main()
