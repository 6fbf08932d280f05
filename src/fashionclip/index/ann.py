"""Optional approximate index (usearch HNSW) over a catalog's vectors: ``pip install fashionclip[scale]``.

The ANN file lives in ``<catalog>/ann/`` and is described by the ``ann`` meta row: the file
name, the segments it covers and its build parameters. Its keys are slots, so it stays usable
while products are added (new segments are scanned exactly and merged in) or removed
(tombstoned slots are dropped from its answers); compaction rewrites slots, after which the
catalog falls back to exact search until :meth:`Catalog.build_ann` runs again. Candidates are
re-scored exactly, so returned scores are exact cosine similarities; only recall is
approximate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError


@dataclass(frozen=True)
class AnnInfo:
    """What the ``ann`` meta row records about the approximate index."""

    file: str
    segments: list[int]
    size: int
    dtype: str
    connectivity: int
    expansion_add: int
    expansion_search: int
    built_at: str
    seconds: float

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, value: dict[str, Any]) -> AnnInfo:
        return cls(**value)


def require_usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError:
        raise FashionCLIPError(
            "approximate search needs usearch: pip install 'fashionclip[scale]'"
        ) from None
    return Index


def new_index(
    dim: int, dtype: str, connectivity: int, expansion_add: int, expansion_search: int
) -> Any:
    index_cls = require_usearch()
    return index_cls(
        ndim=dim,
        metric="ip",
        dtype=dtype,
        connectivity=connectivity,
        expansion_add=expansion_add,
        expansion_search=expansion_search,
    )


def load_index(path: Path, expansion_search: int) -> Any:
    """Memory-map a saved index (read-only view)."""
    index_cls = require_usearch()
    index = index_cls.restore(str(path), view=True)
    if index is None:
        raise FashionCLIPError(f"cannot read the ANN index {path}")
    index.expansion_search = expansion_search
    return index


def search_keys(index: Any, q: np.ndarray, count: int) -> np.ndarray:
    """Slots of (about) the ``count`` nearest vectors."""
    matches = index.search(q, count)
    return np.asarray(matches.keys, dtype=np.int64)
