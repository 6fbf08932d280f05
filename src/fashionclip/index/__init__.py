"""Persisted product catalogs and vector search (no HTTP here; see ``fashionclip.serve``)."""

from __future__ import annotations

from fashionclip.index.backends import AnnInfo
from fashionclip.index.catalog import Catalog
from fashionclip.index.indexer import IndexFailure, IndexReport
from fashionclip.index.lock import CatalogLockedError
from fashionclip.index.query import Query, QueryLimits
from fashionclip.index.store import CatalogDamagedError, CatalogFormatError, CatalogNotFoundError
from fashionclip.index.types import (
    CatalogExistsError,
    CatalogModel,
    CatalogProduct,
    CatalogStats,
    CompactReport,
    ProductNotFoundError,
    SearchResult,
)

__all__ = [
    "AnnInfo",
    "Catalog",
    "CatalogDamagedError",
    "CatalogExistsError",
    "CatalogFormatError",
    "CatalogLockedError",
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
