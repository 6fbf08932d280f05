"""The vector-index protocol every search backend implements, and the ``ann`` meta record.

A backend answers "the k rows most similar to q" over a catalog :class:`Snapshot`, as row
*positions* and exact cosine scores (cf. usearch ``Index``, faiss ``add_with_ids/search``).
Persistent backends key their entries by slot, so an index built at one catalog generation
stays usable later: rows added after the build (segments not in :attr:`VectorIndex.segments`)
are the backend's to scan exactly, removed rows are masked by the snapshot's live mask.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fashionclip.index.snapshot import Segment, Snapshot

#: Keys of the ``ann`` meta row that are not build parameters.
_INFO_KEYS = ("backend", "file", "segments", "size", "built_at", "seconds", "params")


@dataclass(frozen=True)
class AnnInfo:
    """What the ``ann`` meta row records about a persisted vector index.

    Stored flat, as catalogs have always stored it (``file, segments, size, <params...>,
    built_at, seconds``; ``backend`` only when it is not "usearch"), so older fashionclip
    versions keep reading catalogs written by this one.
    """

    backend: str
    file: str
    segments: list[int]
    size: int
    params: dict[str, Any] = field(default_factory=dict)
    built_at: str = ""
    seconds: float = 0.0

    def __getattr__(self, name: str) -> Any:
        """Build parameters read as attributes (``info.connectivity``), as before backends
        were pluggable and ``AnnInfo`` had usearch's parameters as fields."""
        params = self.__dict__.get("params") or {}
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"file": self.file, "segments": self.segments, "size": self.size}
        meta.update(self.params)
        meta.update(built_at=self.built_at, seconds=self.seconds)
        if self.backend != "usearch":
            meta["backend"] = self.backend
        return meta

    @classmethod
    def from_meta(cls, value: Mapping[str, Any]) -> AnnInfo:
        """From a meta row: the flat shape (params inline; no ``backend`` means usearch, as
        in catalogs written before backends were pluggable) or a nested ``params`` dict."""
        params = dict(value.get("params") or {})
        params.update({k: v for k, v in value.items() if k not in _INFO_KEYS})
        return cls(
            backend=str(value.get("backend", "usearch")),
            file=str(value["file"]),
            segments=[int(s) for s in value["segments"]],
            size=int(value["size"]),
            params=params,
            built_at=str(value.get("built_at", "")),
            seconds=float(value.get("seconds", 0.0)),
        )


class VectorIndex(ABC):
    """A vector index over a catalog's rows. Subclasses set :attr:`name` and
    :attr:`defaults` (their build parameters) and register in ``backends.BACKENDS``."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, dim: int, params: Mapping[str, Any] | None = None) -> None:
        unknown = sorted(set(params or {}) - set(self.defaults))
        if unknown:
            raise TypeError(f"unknown {self.name} parameter(s): {', '.join(unknown)}")
        self.dim = dim
        self.params: dict[str, Any] = {**self.defaults, **(params or {})}
        #: Segments whose live rows the index holds, and how many rows that is.
        self.segments: list[int] = []
        self.size = 0

    @abstractmethod
    def build(self, snapshot: Snapshot, show_progress: bool = False) -> None:
        """Index every live row of ``snapshot`` (keys: slots)."""

    @abstractmethod
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows (``keys``: their slots; ``vectors``: unit float32 rows)."""

    @abstractmethod
    def search(
        self,
        snapshot: Snapshot,
        q: np.ndarray,
        k: int,
        candidates: np.ndarray | None = None,
        exclude: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(positions, scores)`` of ``snapshot``, best first, among live rows,
        restricted to the sorted ``candidates`` positions if given, never ``exclude``."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the index to ``path`` (one file)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path | str, dim: int, info: AnnInfo) -> VectorIndex:
        """Read an index saved by :meth:`save` and described by ``info`` (for search: may be
        a read-only memory map)."""

    @classmethod
    def open_for_update(cls, path: Path | str, dim: int, info: AnnInfo) -> VectorIndex:
        """Read an index that :meth:`add` can extend (default: :meth:`load`)."""
        return cls.load(path, dim, info)


def add_segments(
    index: VectorIndex, snap: Snapshot, segments: list[Segment], show_progress: bool = False
) -> None:
    """Add the live rows of ``segments`` (keys: slots) in chunks; mark them covered."""
    from tqdm.auto import tqdm

    chunk = 65_536
    total = sum(int(snap.live[s.offset : s.offset + s.n_rows].sum()) for s in segments)
    bar = tqdm(total=total, unit="vec", desc="ANN index", disable=not show_progress)
    for seg in segments:
        local = np.flatnonzero(snap.live[seg.offset : seg.offset + seg.n_rows])
        for lo in range(0, len(local), chunk):
            part = local[lo : lo + chunk]
            index.add(seg.first_slot + part, np.asarray(seg.vectors[part]))
            bar.update(len(part))
        index.segments.append(seg.id)
    bar.close()
