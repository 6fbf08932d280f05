"""Persisted product catalogs and vector search (no HTTP here; see ``fashionclip.serve``)."""

from __future__ import annotations

from fashionclip.index.backends import AnnInfo
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
from fashionclip.index.query import Query, QueryLimits
from fashionclip.index.store import CatalogFormatError, CatalogNotFoundError

__all__ = [
    "AnnInfo",
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
    "Query",
    "QueryLimits",
    "SearchResult",
]
