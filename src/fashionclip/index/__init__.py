"""Persisted product catalogs and vector search (no HTTP here; see ``fashionclip.serve``)."""

from __future__ import annotations

from fashionclip.index.catalog import (
    Catalog,
    CatalogExistsError,
    CatalogModel,
    CatalogProduct,
    CatalogStats,
    CompactReport,
    IndexFailure,
    IndexReport,
    ProductNotFoundError,
    SearchResult,
)
from fashionclip.index.store import CatalogFormatError, CatalogNotFoundError

__all__ = [
    "Catalog",
    "CatalogExistsError",
    "CatalogFormatError",
    "CatalogModel",
    "CatalogNotFoundError",
    "CatalogProduct",
    "CatalogStats",
    "CompactReport",
    "IndexFailure",
    "IndexReport",
    "ProductNotFoundError",
    "SearchResult",
]
