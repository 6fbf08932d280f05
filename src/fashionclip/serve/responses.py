"""The values the search service returns (its HTTP responses are their ``to_dict()``): hits,
result lists, search and classification responses, timings, product images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionclip.index.query import FilterValue


@dataclass(frozen=True)
class Timing:
    """Milliseconds spent: waiting for the model, encoding the query, searching."""

    queue_ms: float = 0.0
    encode_ms: float = 0.0
    search_ms: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "queue_ms": round(self.queue_ms, 3),
            "encode_ms": round(self.encode_ms, 3),
            "search_ms": round(self.search_ms, 3),
        }


@dataclass(frozen=True)
class Hit:
    """One result: id, display title, metadata and cosine similarity."""

    id: str
    title: str
    score: float
    metadata: dict[str, Any]
    content_hash: str | None = None  # equal for byte-identical duplicates (the page groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "score": round(self.score, 6),
            "metadata": self.metadata,
            "content_hash": self.content_hash,
        }


@dataclass(frozen=True)
class ResultList:
    """The hits of one model for one query. ``error`` is set (and ``hits`` empty) only for
    the compare side, when it could not answer (e.g. the product is missing there)."""

    side: str
    model: str
    hits: list[Hit]
    timing: Timing
    error: str | None = None
    mode: str | None = None
    understood: dict[str, Any] = field(default_factory=dict)
    set_aside: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "model": self.model,
            "results": [hit.to_dict() for hit in self.hits],
            "timing": self.timing.to_dict(),
            "error": self.error,
            "mode": self.mode,
            "understood": self.understood,
            "set_aside": self.set_aside,
        }


@dataclass(frozen=True)
class SearchResponse:
    """A query, its results (catalog model) and optionally the compare model's results."""

    kind: str
    query: dict[str, Any]
    k: int
    filters: dict[str, list[FilterValue]]
    results: ResultList
    compare: ResultList | None
    took_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "query": self.query,
            "k": self.k,
            "filters": self.filters,
            "results": self.results.to_dict(),
            "compare": None if self.compare is None else self.compare.to_dict(),
            "took_ms": round(self.took_ms, 3),
            "mode": self.results.mode,
            "understood": self.results.understood,
            "set_aside": self.results.set_aside,
        }


@dataclass(frozen=True)
class Classification:
    """Zero-shot result of one model: best label and every label's probability, best first."""

    side: str
    model: str
    label: str
    scores: list[tuple[str, float]]
    timing: Timing

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "model": self.model,
            "label": self.label,
            "scores": [{"label": label, "score": round(p, 6)} for label, p in self.scores],
            "timing": self.timing.to_dict(),
        }


@dataclass(frozen=True)
class ClassifyResponse:
    labels: list[str]
    result: Classification
    compare: Classification | None
    took_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "result": self.result.to_dict(),
            "compare": None if self.compare is None else self.compare.to_dict(),
            "took_ms": round(self.took_ms, 3),
        }


@dataclass(frozen=True)
class ProductImage:
    """What to send for a product's picture: a file as it is, or re-encoded JPEG bytes."""

    media_type: str
    path: Path | None = None
    data: bytes | None = None
