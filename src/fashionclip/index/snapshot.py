"""The in-memory view of a catalog that search reads: mapped segments, live mask, caches.

:meth:`fashionclip.index.store.Store.load_snapshot` builds one per catalog generation; it is
immutable apart from its lazily filled caches and shared by all threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Segment:
    """One memory-mapped vector file of a snapshot; ``offset`` is its first row position."""

    id: int
    file: str
    first_slot: int
    n_rows: int
    offset: int
    vectors: np.ndarray


@dataclass
class Snapshot:
    """What search needs, loaded once per catalog generation and then shared by all threads.

    Rows are addressed by *position*: segments in slot order, concatenated. ``live`` marks
    positions a product points at; ``dead`` lists the others (tombstones). Per-column value
    codes for filters and facets are built lazily and cached here.
    """

    generation: int
    dim: int
    segments: list[Segment]
    n_rows: int
    live: np.ndarray
    dead: np.ndarray
    n_live: int
    columns: list[str]
    ann: dict[str, Any] | None = None
    column_codes: dict[str, tuple[np.ndarray, list[Any], dict[object, int]]] = field(
        default_factory=dict
    )
    filter_cache: dict[tuple, np.ndarray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def positions_in(self, slots: np.ndarray) -> np.ndarray:
        """Row positions of ``slots``; -1 for slots outside this snapshot's segments."""
        slots = np.asarray(slots, dtype=np.int64)
        if not self.segments or len(slots) == 0:
            return np.full(len(slots), -1, dtype=np.int64)
        firsts = np.array([s.first_slot for s in self.segments], dtype=np.int64)
        sizes = np.array([s.n_rows for s in self.segments], dtype=np.int64)
        offsets = np.array([s.offset for s in self.segments], dtype=np.int64)
        seg = np.searchsorted(firsts, slots, side="right") - 1
        inside = seg >= 0
        seg_c = np.where(inside, seg, 0)
        local = slots - firsts[seg_c]
        inside &= local < sizes[seg_c]
        return np.where(inside, offsets[seg_c] + local, -1)

    def slots_of_positions(self, positions: np.ndarray) -> np.ndarray:
        offsets = np.array([s.offset for s in self.segments], dtype=np.int64)
        firsts = np.array([s.first_slot for s in self.segments], dtype=np.int64)
        seg = np.searchsorted(offsets, positions, side="right") - 1
        return firsts[seg] + (positions - offsets[seg])

    def vector_at(self, position: int) -> np.ndarray:
        for seg in self.segments:
            if seg.offset <= position < seg.offset + seg.n_rows:
                return np.array(seg.vectors[position - seg.offset], dtype=np.float32)
        raise IndexError(position)
