"""Vector-index backends: name -> class. A new backend (faiss, a keyword index) is one new
module implementing :class:`VectorIndex` plus one entry in :data:`BACKENDS`."""

from __future__ import annotations

from fashionclip.errors import FashionCLIPError
from fashionclip.index.backends.base import AnnInfo, VectorIndex
from fashionclip.index.backends.exact import ExactIndex
from fashionclip.index.backends.usearch import UsearchIndex

BACKENDS: dict[str, type[VectorIndex]] = {
    ExactIndex.name: ExactIndex,
    UsearchIndex.name: UsearchIndex,
}


def backend_class(name: str) -> type[VectorIndex]:
    """The backend registered as ``name``."""
    try:
        return BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise FashionCLIPError(f"unknown vector index backend {name!r}; known: {known}") from None


__all__ = ["BACKENDS", "AnnInfo", "ExactIndex", "UsearchIndex", "VectorIndex", "backend_class"]
