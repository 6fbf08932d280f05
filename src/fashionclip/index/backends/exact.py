"""Exact search: dot products over every memory-mapped segment, masked, top-k selected.

The reference backend and the default. Scores use ``np.einsum("ij,j->i")``, not BLAS
``gemv``: both are memory-bound on one core, but multi-threaded OpenBLAS gemv stalled when its
threads competed with other requests or processes (see docs/design.md). Large scans are split
into row blocks scored on a small shared thread pool instead (einsum releases the GIL; idle
workers sleep instead of spinning), so that exact search keeps up with a plain multi-threaded
``M @ q`` of the same matrix.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fashionclip.index.backends.base import AnnInfo, VectorIndex
from fashionclip.index.snapshot import Segment, Snapshot

#: Filters keeping fewer than this fraction of rows score only those rows (gather) instead
#: of all rows; measured with benchmarks/search_latency.py.
GATHER_FRACTION = 0.25
#: Scans of at least this many rows are split over :data:`SCAN_THREADS` threads.
PARALLEL_MIN_ROWS = 200_000
#: Threads scoring one large scan (env ``FASHIONCLIP_SCAN_THREADS``; 1: no pool).
SCAN_THREADS = max(1, int(os.environ.get("FASHIONCLIP_SCAN_THREADS", min(8, os.cpu_count() or 1))))
_BLOCK_ROWS = 65_536
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


class ExactIndex(VectorIndex):
    """Brute force over the snapshot itself: nothing to build, add or persist but a marker."""

    name = "exact"
    defaults: ClassVar[dict[str, Any]] = {}

    def build(self, snapshot: Snapshot, show_progress: bool = False) -> None:
        self.segments = [s.id for s in snapshot.segments]
        self.size = snapshot.n_live

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Nothing to do: the rows are scanned from the catalog's segments."""

    def search(
        self,
        snapshot: Snapshot,
        q: np.ndarray,
        k: int,
        candidates: np.ndarray | None = None,
        exclude: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return top_k(snapshot, q, k, candidates, exclude)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"backend": self.name, "dim": self.dim}))

    @classmethod
    def load(cls, path: Path | str, dim: int, info: AnnInfo) -> ExactIndex:
        saved = json.loads(Path(path).read_text())
        if saved.get("backend") != cls.name or saved.get("dim") != dim:
            raise ValueError(f"{path} is not an exact index of dimension {dim}")
        index = cls(dim, info.params)
        index.segments, index.size = list(info.segments), info.size
        return index


def top_k(
    snap: Snapshot, q: np.ndarray, k: int, candidates: np.ndarray | None, exclude: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k positions and scores: dot products segment by segment, masked, merged."""
    if snap.n_rows == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if candidates is not None and len(candidates) < GATHER_FRACTION * snap.n_rows:
        # Selective filter: score only the candidate rows (a gather is cheaper than a full pass).
        pool_positions = candidates if exclude is None else candidates[candidates != exclude]
        pool = gather_scores(snap, pool_positions, q)
        return select(pool, pool_positions, k, len(pool_positions))
    scores = scan_scores(snap, q)
    if candidates is None:
        if len(snap.dead):
            scores[snap.dead] = -np.inf
        n_valid = snap.n_live
        if exclude is not None and snap.live[exclude]:
            scores[exclude] = -np.inf
            n_valid -= 1
        return select(scores, None, k, n_valid)
    pool_positions = candidates if exclude is None else candidates[candidates != exclude]
    return select(scores[pool_positions], pool_positions, k, len(pool_positions))


def scan_scores(snap: Snapshot, q: np.ndarray) -> np.ndarray:
    """Scores of every row (dead ones included), in parallel row blocks when large."""
    scores = np.empty(snap.n_rows, dtype=np.float32)
    blocks = [
        (seg, lo, min(seg.n_rows, lo + _BLOCK_ROWS))
        for seg in snap.segments
        for lo in range(0, seg.n_rows, _BLOCK_ROWS)
    ]

    def score(block: tuple[Segment, int, int]) -> None:
        seg, lo, hi = block
        at = seg.offset
        np.einsum("ij,j->i", seg.vectors[lo:hi], q, out=scores[at + lo : at + hi])

    if SCAN_THREADS > 1 and snap.n_rows >= PARALLEL_MIN_ROWS:
        list(_scan_pool().map(score, blocks))
    else:
        for block in blocks:
            score(block)
    return scores


def _scan_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="fashionclip-scan")
        return _pool


def gather_scores(snap: Snapshot, positions: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact scores of some rows; ``positions`` must be sorted."""
    scores = np.empty(len(positions), dtype=np.float32)
    for seg in snap.segments:
        lo, hi = np.searchsorted(positions, [seg.offset, seg.offset + seg.n_rows])
        if hi > lo:
            rows = seg.vectors[positions[lo:hi] - seg.offset]
            np.einsum("ij,j->i", rows, q, out=scores[lo:hi])
    return scores


def select(
    pool: np.ndarray, pool_positions: np.ndarray | None, k: int, n_valid: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of ``pool`` (best first) as positions; ``n_valid`` entries are not -inf."""
    kk = min(k, n_valid)
    if kk <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if kk < len(pool):
        top = np.argpartition(pool, len(pool) - kk)[len(pool) - kk :]
    else:
        top = np.arange(len(pool))
    top = top[np.argsort(-pool[top], kind="stable")]
    positions = top if pool_positions is None else pool_positions[top]
    return positions.astype(np.int64), pool[top]
