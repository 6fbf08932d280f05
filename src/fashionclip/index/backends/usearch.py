"""Approximate search with a usearch HNSW index (``pip install fashionclip[scale]``).

The index file lives in ``<catalog>/ann/`` and is described by the ``ann`` meta row. Its keys
are slots, so it stays usable while products are added (segments it does not cover are scanned
exactly and merged in) or removed (dead slots are dropped from its answers); compaction
rewrites slots, after which the catalog falls back to exact search until the index is built
again. Candidates are re-scored exactly, so scores are exact cosine similarities; only recall
is approximate.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fashionclip.errors import FashionCLIPError
from fashionclip.index.backends.base import AnnInfo, VectorIndex, add_segments
from fashionclip.index.backends.exact import gather_scores, select, top_k
from fashionclip.index.snapshot import Snapshot

#: Candidates fetched per query, at least: ``max(FETCH_FACTOR * k, k + FETCH_EXTRA)``, scaled
#: up by the filter's selectivity and by the index's share of dead keys; re-scored exactly.
FETCH_FACTOR = 4
FETCH_EXTRA = 32
#: Threads for graph construction (0: all cores). A multi-threaded build inserts in a different
#: order each run, so the graph (and, rarely, a top-k on a tiny index) differs between runs; tests
#: set 1 for a deterministic graph.
BUILD_THREADS = 0
#: Over-fetch retries (x4 each) when a filter leaves fewer than k hits, before the exact scan.
RETRIES = 2


def require_usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError:
        raise FashionCLIPError(
            "approximate search needs usearch: pip install 'fashionclip[scale]'"
        ) from None
    return Index


@functools.lru_cache(maxsize=8)
def default_dtype(dim: int) -> str:
    """The index's vector storage when none is asked for: ``bf16`` where usearch has a SIMD
    kernel for it on this CPU, else ``f16`` (both 2 bytes per dimension). Measured at 100k
    (benchmarks/ann_scale.py vectors, ef 2048, 2 shared AVX-512-BF16 cores): bf16 7.4 ms p50
    vs f16 9.0 ms for text queries, recall@10 0.998 vs 0.999; without a kernel ("auto": a
    serial loop) bf16 would be the slower one."""
    try:
        probe = require_usearch()(ndim=dim, metric="ip", dtype="bf16")
        return "bf16" if probe.hardware_acceleration not in ("auto", "serial") else "f16"
    except (FashionCLIPError, ValueError, RuntimeError):
        return "f16"


def search_keys(index: Any, q: np.ndarray, count: int) -> np.ndarray:
    """Slots of (about) the ``count`` nearest vectors."""
    matches = index.search(q, count)
    return np.asarray(matches.keys, dtype=np.int64)


class UsearchIndex(VectorIndex):
    """HNSW over inner product; parameters as usearch names them."""

    name = "usearch"
    defaults: ClassVar[dict[str, Any]] = {
        "dtype": "auto",
        "connectivity": 16,
        "expansion_add": 128,
        "expansion_search": 2048,
    }

    def __init__(self, dim: int, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(dim, params)
        if self.params["dtype"] == "auto":
            self.params["dtype"] = default_dtype(dim)
        self.index: Any = None
        self._live_count: tuple[int, int] | None = None

    def _new(self) -> Any:
        return require_usearch()(ndim=self.dim, metric="ip", **self.params)

    def build(self, snapshot: Snapshot, show_progress: bool = False) -> None:
        self.index, self.segments, self.size = self._new(), [], 0
        add_segments(self, snapshot, list(snapshot.segments), show_progress)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if self.index is None:
            self.index = self._new()
        self.index.add(np.asarray(keys).astype(np.uint64), vectors, threads=BUILD_THREADS)
        self.size += len(keys)

    def save(self, path: Path) -> None:
        self.index.save(str(path))

    @classmethod
    def load(cls, path: Path | str, dim: int, info: AnnInfo) -> UsearchIndex:
        """Memory-map a saved index (read-only view: a server opens 1M vectors in seconds)."""
        return cls._restore(path, dim, info, view=True)

    @classmethod
    def open_for_update(cls, path: Path | str, dim: int, info: AnnInfo) -> UsearchIndex:
        """Load a saved index into memory so that :meth:`add` can extend it."""
        return cls._restore(path, dim, info, view=False)

    @classmethod
    def _restore(cls, path: Path | str, dim: int, info: AnnInfo, view: bool) -> UsearchIndex:
        index = cls(dim, info.params)
        usearch_index = require_usearch()
        meta = usearch_index.metadata(str(path))
        if meta is None:
            raise FashionCLIPError(f"{path} is not a usearch index")
        if meta.get("dimensions") != dim or meta.get("count_present") != info.size:
            raise FashionCLIPError(
                f"{path} holds {meta.get('count_present')} vectors of dimension "
                f"{meta.get('dimensions')}, its record says {info.size} of {dim}"
            )
        loaded = usearch_index.restore(str(path), view=view)
        if loaded is None:
            raise FashionCLIPError(f"cannot read the ANN index {path}")
        loaded.expansion_search = index.params["expansion_search"]
        index.index, index.segments, index.size = loaded, list(info.segments), info.size
        return index

    def search(
        self,
        snapshot: Snapshot,
        q: np.ndarray,
        k: int,
        candidates: np.ndarray | None = None,
        exclude: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """ANN candidates (re-scored exactly) merged with an exact scan of the segments added
        after the build; falls back to the exact scan if too few survive the filters."""
        snap = snapshot
        fetch = max(FETCH_FACTOR * k, k + FETCH_EXTRA)
        covered_live = self._covered_live(snap)
        fetch = int(fetch * self.size / max(1, covered_live)) + 1  # dead keys take places
        if candidates is not None:
            fetch = int(fetch * snap.n_live / max(1, len(candidates))) + 1
        uncovered = self._scan_uncovered(snap, q, k, candidates, exclude)
        available = snap.n_live if candidates is None else len(candidates)
        if exclude is not None and (candidates is None or _contains(candidates, exclude)):
            available -= 1
        for _ in range(RETRIES + 1):
            found = self._ann_positions(snap, q, min(fetch, self.size), candidates, exclude)
            parts_pos = [found, *(p for p, _ in uncovered)]
            parts_scores = [gather_scores(snap, found, q), *(s for _, s in uncovered)]
            pool = np.concatenate(parts_scores).astype(np.float32, copy=False)
            positions, scores = select(pool, np.concatenate(parts_pos), k, len(pool))
            if len(positions) >= min(k, available) or fetch >= self.size:
                break
            fetch *= 4  # a filter (or tombstones) left too few: over-fetch more
        if len(positions) < min(k, available):
            return top_k(snap, q, k, candidates, exclude)
        return positions, scores

    def _ann_positions(
        self,
        snap: Snapshot,
        q: np.ndarray,
        count: int,
        candidates: np.ndarray | None,
        exclude: int | None,
    ) -> np.ndarray:
        """Positions of the ``count`` nearest keys that are live, allowed and not excluded."""
        found = snap.positions_in(search_keys(self.index, q, count))
        found = np.unique(found[found >= 0])
        found = found[snap.live[found]]
        if candidates is not None:
            at = np.searchsorted(candidates, found)
            at[at >= len(candidates)] = 0
            found = found[candidates[at] == found] if len(candidates) else found[:0]
        if exclude is not None:
            found = found[found != exclude]
        return found

    def _covered_live(self, snap: Snapshot) -> int:
        """Live rows in the segments this index covers (cached per snapshot generation)."""
        cached = self._live_count
        if cached is not None and cached[0] == snap.generation:
            return cached[1]
        covered = set(self.segments)
        count = sum(
            int(snap.live[s.offset : s.offset + s.n_rows].sum())
            for s in snap.segments
            if s.id in covered
        )
        self._live_count = (snap.generation, count)
        return count

    def _scan_uncovered(
        self,
        snap: Snapshot,
        q: np.ndarray,
        k: int,
        candidates: np.ndarray | None,
        exclude: int | None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Exact top-k of each segment the index does not cover."""
        covered = set(self.segments)
        parts = []
        for seg in snap.segments:
            if seg.id in covered:
                continue
            scores = np.einsum("ij,j->i", seg.vectors, q)
            valid = snap.live[seg.offset : seg.offset + seg.n_rows].copy()
            if candidates is not None:
                lo, hi = np.searchsorted(candidates, [seg.offset, seg.offset + seg.n_rows])
                allowed = np.zeros(seg.n_rows, dtype=bool)
                allowed[candidates[lo:hi] - seg.offset] = True
                valid &= allowed
            if exclude is not None and seg.offset <= exclude < seg.offset + seg.n_rows:
                valid[exclude - seg.offset] = False
            local = np.flatnonzero(valid)
            parts.append(select(scores[local], local + seg.offset, k, len(local)))
        return parts


def _contains(sorted_positions: np.ndarray, position: int) -> bool:
    at = int(np.searchsorted(sorted_positions, position))
    return at < len(sorted_positions) and int(sorted_positions[at]) == position
