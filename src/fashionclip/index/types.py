"""Value types of the catalog API: model identity, products, results, stats, errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionclip.data.tables import MetadataValue
from fashionclip.errors import FashionCLIPError


class ProductNotFoundError(FashionCLIPError):
    """A product id that is not in the catalog."""


class CatalogExistsError(FashionCLIPError):
    """``Catalog.create`` on a folder that already holds a catalog."""


@dataclass(frozen=True)
class CatalogModel:
    """The identity of the model that embedded a catalog (cf. ``FashionCLIP.identity``)."""

    name: str
    kind: str
    embedding_dim: int
    fingerprint: str

    @classmethod
    def of(cls, model: Any) -> CatalogModel:
        """From a model (anything with ``.identity``) or an identity-like object or dict."""
        ident = getattr(model, "identity", model)
        if isinstance(ident, Mapping):
            return cls(
                str(ident["name"]),
                str(ident["kind"]),
                int(ident["embedding_dim"]),
                str(ident["fingerprint"]),
            )
        return cls(
            str(ident.name), str(ident.kind), int(ident.embedding_dim), str(ident.fingerprint)
        )

    def describe(self) -> str:
        return (
            f"{self.name!r} ({self.kind}, dim {self.embedding_dim}, "
            f"fingerprint {self.fingerprint[:12]})"
        )


@dataclass(frozen=True)
class SearchResult:
    """One hit, best first in a result list; ``score`` is the cosine similarity (vector
    mode) or the fused / BM25 score (hybrid / keyword mode)."""

    id: str
    score: float
    metadata: dict[str, MetadataValue]
    image: Path | None
    #: sha256 of the image bytes (not part of ``to_dict``: the CLI JSON contract).
    content_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "image": None if self.image is None else str(self.image),
            "metadata": self.metadata,
        }


class SearchResults(list[SearchResult]):
    """The hits of a search, best first (a plain list), plus how the query was run.

    ``mode``: the search mode used ("vector", "keyword" or "hybrid"). ``understood``: the
    catalog values recognised in the query text, e.g. ``{"baseColour": "Red", "articleType":
    "Dresses"}`` (a list when several values of a column were recognised); used as soft
    boosts by hybrid search and meant to be shown as removable chips. ``set_aside``: the
    understood columns hybrid search did not use, because no product carries their values
    together with the others' ("winter coat" where no jacket is of the Winter season); their
    words still count as keywords. In hybrid and keyword modes ``score`` is the fused or BM25
    score, not a cosine similarity.
    """

    def __init__(
        self,
        hits: Iterable[SearchResult] = (),
        *,
        mode: str = "vector",
        understood: Mapping[str, str | list[str]] | None = None,
        set_aside: Iterable[str] = (),
    ) -> None:
        super().__init__(hits)
        self.mode = mode
        self.understood: dict[str, str | list[str]] = dict(understood or {})
        self.set_aside: list[str] = list(set_aside)


@dataclass(frozen=True)
class CatalogProduct:
    """A stored product (what :meth:`Catalog.get` returns)."""

    id: str
    image: Path | None
    metadata: dict[str, MetadataValue]
    content_hash: str | None
    updated_at: str


@dataclass(frozen=True)
class CompactReport:
    segments_before: int
    segments_after: int
    rows_before: int
    rows_after: int


@dataclass(frozen=True)
class CatalogStats:
    products: int
    rows: int
    tombstones: int
    segments: int
    embedding_dim: int
    model: CatalogModel
    columns: list[str]
    vector_bytes: int
