"""The search service behind the HTTP API, with no HTTP in it.

:class:`SearchService` holds an opened :class:`~fashionclip.index.Catalog`, its model and,
optionally, a *compare* model with its own catalog of the same products (e.g. plain CLIP next
to FashionCLIP). It validates every input (query text, k, filters, labels, uploaded bytes)
and raises :class:`~fashionclip.errors.FashionCLIPError` subclasses whose messages are meant
for the person who sent the request; the web layer maps them to 4xx responses. A search request
becomes one :class:`~fashionclip.index.Query` (validated once, with the service's limits) that
each catalog runs with an *encode hook*: the query's text or image is encoded under the
model's lock, inside :meth:`Catalog.run`, after the catalog has checked the filters.

Thread safety: request threads run searches in parallel, but each model is entered by one
thread at a time (a lock per model), because tokenizers and torch modules are not safe to
re-enter. Only the encoding of the query runs under that lock; decoding uploads, the vector
search (thread-safe per the catalog's contract) and reading metadata run outside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from fashionclip.errors import FashionCLIPError, InvalidQueryError
from fashionclip.index import Catalog, ProductNotFoundError, Query, QueryLimits, SearchResult
from fashionclip.index.query import FilterValue, check_filters, check_id
from fashionclip.models.prompts import check_labels, check_templates
from fashionclip.serve.responses import (
    Classification,
    ClassifyResponse,
    Hit,
    ProductImage,
    ResultList,
    SearchResponse,
    Timing,
)
from fashionclip.serve.weak_match import weak_match_below

T = TypeVar("T")

#: Columns shown as a product's name, in order of preference (KAGL first).
TITLE_COLUMNS = ("productDisplayName", "name", "title", "product_name", "description")
#: Columns shown under the name on a result card when the catalog has them.
KEY_COLUMNS = ("articleType", "baseColour", "gender", "category", "colour", "color", "brand")

Filters = Mapping[str, FilterValue | Sequence[FilterValue]]


class UploadTooLargeError(FashionCLIPError):
    """An upload over the byte limit, or an image over the pixel limit (decompression bomb)."""


@dataclass(frozen=True)
class ServiceLimits:
    """Bounds on what one request may ask for."""

    max_k: int = 200
    default_k: int = 24
    max_query_chars: int = 512
    max_filter_values: int = 256
    max_labels: int = 64
    max_label_chars: int = 128
    max_templates: int = 16
    #: Largest accepted upload (bytes of the image file itself).
    max_upload_bytes: int = 10 * 1024 * 1024
    #: Largest uploaded image (width x height) we decode; larger ones are refused as bombs.
    max_image_pixels: int = 25_000_000
    #: Catalog images larger than this (longest side, pixels) are served as JPEG thumbnails.
    thumbnail_side: int = 512

    def __post_init__(self) -> None:
        if not 1 <= self.default_k <= self.max_k:
            raise FashionCLIPError(f"default_k must be in 1..max_k, got {self.default_k}")
        if self.max_upload_bytes <= 0 or self.max_image_pixels <= 0:
            raise FashionCLIPError("upload limits must be positive")

    @property
    def query_limits(self) -> QueryLimits:
        """The bounds a search :class:`Query` is validated against."""
        return QueryLimits(
            default_k=self.default_k,
            max_k=self.max_k,
            max_query_chars=self.max_query_chars,
            max_filter_values=self.max_filter_values,
        )


class _GuardedModel:
    """A model behind a lock: one thread at a time runs an encoder."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.lock = threading.Lock()
        self.name = str(getattr(model.identity, "name", model))

    def run(self, work: Callable[[Any], T]) -> tuple[T, float, float]:
        """``work(model)`` under the lock; returns (result, queue seconds, run seconds)."""
        asked = time.perf_counter()
        with self.lock:
            began = time.perf_counter()
            result = work(self.model)
        return result, began - asked, time.perf_counter() - began


@dataclass
class _Side:
    name: str  # "catalog" or "compare"
    catalog: Catalog
    model: _GuardedModel

    def encode_hook(self, timing: dict[str, float]) -> Callable[[Query], Any]:
        """Encodes a query's text or image under the model lock; records the seconds spent
        waiting for the lock (``queue``) and encoding (``encode``) in ``timing``."""

        def encode(query: Query) -> Any:
            def work(model: Any) -> Any:
                if query.text is not None:
                    return model.encode_text(query.text)
                return model.encode_images(query.image)

            vector, timing["queue"], timing["encode"] = self.model.run(work)
            return vector

        return encode


class SearchService:
    """Text, image and "more like this" search, facets and zero-shot classification.

    ``catalog`` must have been built with ``model`` (checked). ``compare_model`` and
    ``compare_catalog`` go together: a catalog of the same products embedded with the compare
    model (see :func:`fashionclip.serve.compare.ensure_compare_catalog`).
    """

    def __init__(
        self,
        catalog: Catalog,
        model: Any,
        *,
        compare_model: Any | None = None,
        compare_catalog: Catalog | None = None,
        limits: ServiceLimits | None = None,
        title_column: str | None = None,
        key_columns: Sequence[str] | None = None,
    ) -> None:
        if (compare_model is None) != (compare_catalog is None):
            raise FashionCLIPError(
                "compare_model and compare_catalog go together: the compare model needs its "
                "own catalog of the same products (see fashionclip.serve.compare)"
            )
        self.limits = limits or ServiceLimits()
        catalog.check_model(model)
        guards: dict[int, _GuardedModel] = {}

        def guard(m: Any) -> _GuardedModel:
            return guards.setdefault(id(m), _GuardedModel(m))

        self._primary = _Side("catalog", catalog, guard(model))
        self._compare: _Side | None = None
        if compare_model is not None and compare_catalog is not None:
            compare_catalog.check_model(compare_model)
            self._compare = _Side("compare", compare_catalog, guard(compare_model))
        columns = catalog.columns
        if title_column is not None and title_column not in columns:
            raise FashionCLIPError(
                f"title column {title_column!r} is not a catalog column ({', '.join(columns)})"
            )
        self.title_column = title_column or next((c for c in TITLE_COLUMNS if c in columns), None)
        if key_columns is None:
            preferred = [c for c in KEY_COLUMNS if c in columns]
            others = [c for c in columns if c != self.title_column and c not in preferred]
            key_columns = (preferred + others)[:3]
        unknown = [c for c in key_columns if c not in columns]
        if unknown:
            raise FashionCLIPError(f"key column(s) {unknown} are not catalog columns")
        self.key_columns = list(key_columns)
        #: Below this best score a text query is a weak match (per model; None: no hint).
        self.weak_match_below = weak_match_below(model)

    # -- description -------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        return self._primary.catalog

    @property
    def has_compare(self) -> bool:
        return self._compare is not None

    def info(self) -> dict[str, Any]:
        """What a client needs to build its page: models, size, columns, limits."""
        catalog = self._primary.catalog
        compare = None
        if self._compare is not None:
            compare = {
                "model": self._compare.model.name,
                "products": len(self._compare.catalog),
                "embedding_dim": self._compare.catalog.embedding_dim,
            }
        return {
            "model": self._primary.model.name,
            "model_kind": catalog.model_identity.kind,
            "embedding_dim": catalog.embedding_dim,
            "products": len(catalog),
            "columns": catalog.columns,
            "title_column": self.title_column,
            "key_columns": self.key_columns,
            "compare": compare,
            "weak_match_below": self.weak_match_below,
            "limits": {
                "max_k": self.limits.max_k,
                "default_k": self.limits.default_k,
                "max_query_chars": self.limits.max_query_chars,
                "max_labels": self.limits.max_labels,
                "max_upload_bytes": self.limits.max_upload_bytes,
                "max_image_pixels": self.limits.max_image_pixels,
            },
        }

    def ready(self) -> dict[str, Any]:
        """Readiness: the catalogs answer (a SQLite read each) and the models are loaded."""
        status = {"ready": True, "products": len(self._primary.catalog)}
        if self._compare is not None:
            status["compare_products"] = len(self._compare.catalog)
        return status

    def facets(self, limit: int = 100, filters: Filters | None = None) -> list[dict[str, Any]]:
        """Per column: its most frequent values with counts (``truncated`` if there are more);
        with ``filters``, counted over the products the other columns' filters allow."""
        if not 1 <= limit <= 10_000:
            raise InvalidQueryError(f"limit must be in 1..10000, got {limit}")
        if filters is not None:
            filters = check_filters(filters, self.limits.query_limits.max_filter_values)
        raw = self._primary.catalog.facets(limit=limit + 1, filters=filters)
        return [
            {
                "column": column,
                "values": [{"value": v, "count": n} for v, n in list(values.items())[:limit]],
                "truncated": len(values) > limit,
            }
            for column, values in raw.items()
        ]

    def product(self, product_id: str) -> dict[str, Any]:
        """A product's title and metadata; ProductNotFoundError if unknown."""
        stored = self._primary.catalog.get(check_id(product_id))
        if stored is None:
            raise ProductNotFoundError(f"no product {product_id!r} in the catalog")
        return {
            "id": stored.id,
            "title": self._title(stored.id, stored.metadata),
            "metadata": stored.metadata,
            "has_image": stored.image is not None,
        }

    # -- search ------------------------------------------------------------------------------

    def search_text(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        compare: bool = False,
        mode: str | None = None,
        ignore_understood: Sequence[str] | None = None,
    ) -> SearchResponse:
        """Products matching a text query, best first (``mode``: see Query)."""
        started = time.perf_counter()
        query_ = self._query(
            compare,
            text=query,
            k=k,
            filters=filters,
            mode=mode,
            ignore_understood=ignore_understood,
        )
        lists = [self._search_side(side, query_) for side in self._sides(compare)]
        return self._response({"text": query_.text}, query_, lists, started)

    def search_image(
        self,
        data: bytes,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        compare: bool = False,
        filename: str | None = None,
        text: str | None = None,
        mode: str | None = None,
        ignore_understood: Sequence[str] | None = None,
    ) -> SearchResponse:
        """Products that look like an uploaded image (its bytes), best first; with ``text``
        a composed query."""
        started = time.perf_counter()
        image = self.decode_upload(data)
        query = self._query(
            compare, image=image, k=k, filters=filters, text=text, mode=mode,
            ignore_understood=ignore_understood,
        )  # fmt: skip
        lists = [self._search_side(side, query) for side in self._sides(compare)]
        shown = {"image": filename or "upload", "width": image.width, "height": image.height}
        if query.text is not None:
            shown["text"] = query.text
        return self._response(shown, query, lists, started)

    def more_like_this(
        self,
        product_id: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        compare: bool = False,
        text: str | None = None,
        mode: str | None = None,
        ignore_understood: Sequence[str] | None = None,
    ) -> SearchResponse:
        """Products most similar to a catalog product (excluded from its own results);
        with ``text``, a composed query ("like this, but red")."""
        started = time.perf_counter()
        query = self._query(
            compare, like=product_id, k=k, filters=filters, text=text, mode=mode,
            ignore_understood=ignore_understood,
        )  # fmt: skip
        lists = [self._like_side(side, query) for side in self._sides(compare)]
        product = self._primary.catalog.get(str(query.like))
        title = self._title(str(query.like), product.metadata if product else {})
        shown = {"id": query.like, "title": title}
        if query.text is not None:
            shown["text"] = query.text
        return self._response(shown, query, lists, started)

    def traverse(
        self,
        product_id: str,
        start: str,
        end: str,
        *,
        steps: int | None = None,
        per_step: int | None = None,
        method: str = "gradrec",
        keep: str | None = None,
        filters: Filters | None = None,
    ) -> dict[str, Any]:
        """Like a product but further along start -> end: steps of hits (see Catalog.traverse).

        ``keep`` (default: articleType when the catalog has it; "" for none) stays at the
        seed's value of that column. Phrases are encoded under the model lock.
        """
        from fashionclip.index.traverse import DEFAULT_KEEP, WalkSettings

        started = time.perf_counter()
        catalog = self._primary.catalog
        stored = catalog.get(check_id(product_id))
        if stored is None:
            raise ProductNotFoundError(f"no product {product_id!r} in the catalog")
        if keep is None:
            keep = DEFAULT_KEEP if DEFAULT_KEEP in catalog.columns else ""
        checked = Query(like=stored.id, filters=filters, limits=self.limits.query_limits)
        default = WalkSettings()

        def encode_texts(prompts: list[str]) -> np.ndarray:
            return np.asarray(self._primary.model.run(lambda m: m.encode_text(prompts))[0])

        found = catalog.traverse(
            stored.id,
            start,
            end,
            steps=default.steps if steps is None else steps,
            per_step=default.per_step if per_step is None else per_step,
            method=method,
            keep=keep or None,
            filters=checked.filter_values,
            encode_texts=encode_texts,
        )
        return {
            "seed": {"id": stored.id, "title": self._title(stored.id, stored.metadata)},
            "from": " ".join(start.split()),
            "to": " ".join(end.split()),
            "method": method,
            "keep": keep or None,
            "steps": [[hit.to_dict() for hit in self._hits(step)] for step in found],
            "took_ms": round(1000 * (time.perf_counter() - started), 3),
        }

    def classify(
        self,
        data: bytes,
        labels: Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        compare: bool = False,
    ) -> ClassifyResponse:
        """Zero-shot classification of an uploaded image against the given labels."""
        started = time.perf_counter()
        limits = self.limits
        labels_ = check_labels(labels, limits.max_labels, limits.max_label_chars)
        templates_ = check_templates(templates, limits.max_templates, limits.max_query_chars)
        sides = self._sides(compare)
        image = self.decode_upload(data)
        results = []
        for side in sides:

            def work(model: Any) -> np.ndarray:
                image_vector = np.asarray(model.encode_images(image), dtype=np.float32)
                label_vectors = model.label_embeddings(labels_, templates_)
                return model.label_probabilities(image_vector[None, :], label_vectors)[0]

            probs, queued, ran = side.model.run(work)
            order = np.argsort(-probs, kind="stable")
            scores = [(labels_[int(i)], float(probs[i])) for i in order]
            results.append(
                Classification(
                    side.name,
                    side.model.name,
                    scores[0][0],
                    scores,
                    Timing(queue_ms=1000 * queued, encode_ms=1000 * ran),
                )
            )
        return ClassifyResponse(
            labels_,
            results[0],
            results[1] if len(results) > 1 else None,
            1000 * (time.perf_counter() - started),
        )

    # -- images ------------------------------------------------------------------------------

    def decode_upload(self, data: bytes) -> Image.Image:
        """Decode uploaded bytes safely: size and pixel limits (bombs), at most one decode per
        core at once (503 when the queue times out), reduced size; see serve.uploads."""
        from fashionclip.serve import uploads  # here: uploads imports this module

        return uploads.decode_upload(data, self.limits, uploads.gate_for(self))

    def image_path(self, product_id: str) -> Path:
        """The image file of a catalog product: only paths the catalog recorded, by id."""
        from fashionclip.serve import uploads

        return uploads.image_path(self._primary.catalog, check_id(product_id))

    def product_image(self, product_id: str) -> ProductImage:
        """The picture of a product for a browser, only if its bytes are the indexed ones: the
        file itself when it is a web format no larger than ``thumbnail_side``, else a JPEG
        thumbnail (cached); see serve.uploads."""
        from fashionclip.serve import uploads

        catalog, product_id = self._primary.catalog, check_id(product_id)
        gate = uploads.gate_for(self)
        media_type, data = uploads.product_image(catalog, product_id, self.limits, gate)
        return ProductImage(media_type, data=data)

    # -- internals ---------------------------------------------------------------------------

    def _sides(self, compare: bool) -> list[_Side]:
        if not compare:
            return [self._primary]
        if self._compare is None:
            raise InvalidQueryError(
                "no compare model is configured (start the server with --compare-model)"
            )
        return [self._primary, self._compare]

    def _query(self, compare: bool, **inputs: Any) -> Query:
        """The request as a :class:`Query` (validated with the service's limits), its filter
        columns checked against every catalog that will run it."""
        query = Query(**inputs, limits=self.limits.query_limits)
        for side in self._sides(compare):
            where = "catalog" if side is self._primary else "compare catalog"
            query.check_columns(side.catalog.columns, where)
        return query

    def _search_side(self, side: _Side, query: Query) -> ResultList:
        timing = {"queue": 0.0, "encode": 0.0}
        began = time.perf_counter()
        found = side.catalog.run(query, encode=side.encode_hook(timing))
        searched = time.perf_counter() - began - timing["queue"] - timing["encode"]
        times = Timing(1000 * timing["queue"], 1000 * timing["encode"], 1000 * searched)
        mode = getattr(found, "mode", query.mode)
        understood = dict(getattr(found, "understood", {}))
        set_aside = list(getattr(found, "set_aside", []))
        return ResultList(
            side.name, side.model.name, self._hits(found), times, None, mode, understood, set_aside
        )

    def _like_side(self, side: _Side, query: Query) -> ResultList:
        try:
            return self._search_side(side, query)
        except ProductNotFoundError:
            if side is self._primary:
                raise ProductNotFoundError(f"no product {query.like!r} in the catalog") from None
            return ResultList(
                side.name,
                side.model.name,
                [],
                Timing(),
                error=f"product {query.like!r} is not in the compare catalog",
            )

    def _response(
        self, shown: dict[str, Any], query: Query, lists: list[ResultList], started: float
    ) -> SearchResponse:
        return SearchResponse(
            query.kind,
            shown,
            int(query.k or 0),
            query.filter_values,
            lists[0],
            lists[1] if len(lists) > 1 else None,
            1000 * (time.perf_counter() - started),
        )

    def _hits(self, found: Sequence[SearchResult]) -> list[Hit]:
        return [
            Hit(
                r.id,
                self._title(r.id, r.metadata),
                float(r.score),
                dict(r.metadata),
                r.content_hash,
            )
            for r in found
        ]

    def _title(self, product_id: str, metadata: Mapping[str, Any]) -> str:
        if self.title_column is not None:
            value = metadata.get(self.title_column)
            if value not in (None, ""):
                return str(value)
        return product_id


def _declared_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header (see serve.uploads.declared_size)."""
    from fashionclip.serve.uploads import declared_size

    return declared_size(data)
