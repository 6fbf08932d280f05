"""Approximate search with a usearch HNSW index (``pip install fashionclip[scale]``).

The index file lives in ``<catalog>/ann/`` and is described by the ``ann`` meta row. Its keys
are slots, so it stays usable while products are added (segments it does not cover are scanned
exactly and merged in) or removed (dead slots are dropped from its answers); compaction
rewrites slots, after which the catalog falls back to exact search until the index is built
again. Candidates are re-scored exactly, so scores are exact cosine similarities; only recall
is approximate.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fashionclip.errors import FashionCLIPError
from fashionclip.index.backends.base import AnnInfo, VectorIndex
from fashionclip.index.backends.exact import gather_scores, select, top_k
from fashionclip.index.snapshot import Snapshot

#: Rows handed to usearch per ``add`` call while building.
_ADD_CHUNK = 65_536


def require_usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError:
        raise FashionCLIPError(
            "approximate search needs usearch: pip install 'fashionclip[scale]'"
        ) from None
    return Index


def search_keys(index: Any, q: np.ndarray, count: int) -> np.ndarray:
    """Slots of (about) the ``count`` nearest vectors."""
    matches = index.search(q, count)
    return np.asarray(matches.keys, dtype=np.int64)


class UsearchIndex(VectorIndex):
    """HNSW over inner product; parameters as usearch names them."""

    name = "usearch"
    defaults: ClassVar[dict[str, Any]] = {
        "dtype": "f16",
        "connectivity": 16,
        "expansion_add": 128,
        "expansion_search": 64,
    }

    def __init__(self, dim: int, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(dim, params)
        self.index: Any = None

    def _new(self) -> Any:
        return require_usearch()(ndim=self.dim, metric="ip", **self.params)

    def build(self, snapshot: Snapshot, show_progress: bool = False) -> None:
        from tqdm.auto import tqdm

        self.index = self._new()
        bar = tqdm(total=snapshot.n_live, unit="vec", desc="ANN index", disable=not show_progress)
        for seg in snapshot.segments:
            local = np.flatnonzero(snapshot.live[seg.offset : seg.offset + seg.n_rows])
            for lo in range(0, len(local), _ADD_CHUNK):
                part = local[lo : lo + _ADD_CHUNK]
                self.add(seg.first_slot + part, np.asarray(seg.vectors[part]))
                bar.update(len(part))
        bar.close()
        self.segments = [s.id for s in snapshot.segments]

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if self.index is None:
            self.index = self._new()
        self.index.add(np.asarray(keys).astype(np.uint64), vectors, threads=0)
        self.size += len(keys)

    def save(self, path: Path) -> None:
        self.index.save(str(path))

    @classmethod
    def load(cls, path: Path, dim: int, info: AnnInfo) -> UsearchIndex:
        """Memory-map a saved index (read-only view)."""
        index = cls(dim, info.params)
        loaded = require_usearch().restore(str(path), view=True)
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
        fetch = max(4 * k, k + 32)
        if candidates is not None:
            fetch = int(fetch * snap.n_live / max(1, len(candidates))) + 1
        found = snap.positions_in(search_keys(self.index, q, min(fetch, self.size)))
        found = np.unique(found[found >= 0])
        found = found[snap.live[found]]
        if candidates is not None:
            at = np.searchsorted(candidates, found)
            at[at >= len(candidates)] = 0
            found = found[candidates[at] == found] if len(candidates) else found[:0]
        if exclude is not None:
            found = found[found != exclude]
        parts_pos = [found]
        parts_scores = [gather_scores(snap, found, q)]
        for positions, scores in self._scan_uncovered(snap, q, k, candidates, exclude):
            parts_pos.append(positions)
            parts_scores.append(scores)
        pool = np.concatenate(parts_scores).astype(np.float32, copy=False)
        positions, scores = select(pool, np.concatenate(parts_pos), k, len(pool))
        if len(positions) < k:
            available = snap.n_live if candidates is None else len(candidates)
            if exclude is not None and (candidates is None or exclude in candidates):
                available -= 1
            if len(positions) < min(k, available):
                return top_k(snap, q, k, candidates, exclude)
        return positions, scores

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
