"""The HTTP layer: a FastAPI app over :class:`~fashionclip.serve.search.SearchService`.

Routes (JSON unless noted). The OpenAPI description is at ``/openapi.json``; there is no
``/docs`` or ``/redoc`` page, because those load their scripts from a CDN and would be blank
offline (open ``/openapi.json`` in any OpenAPI viewer instead):

* ``GET /`` the web page; ``GET /static/{name}`` its script and style sheet
* ``GET /api/health`` liveness; ``GET /api/ready`` readiness; ``GET /api/metrics`` counters
* ``GET /api/info`` models, product count, columns, limits; ``GET /api/facets`` filter values
* ``POST /api/search/text`` ``{"query", "k", "filters", "compare"}``
* ``POST /api/search/image`` multipart: ``image`` file, ``k``, ``filters`` (JSON), ``compare``
* ``POST /api/search/like`` ``{"id", "k", "filters", "compare"}`` ("more like this")
* ``POST /api/classify`` multipart: ``image``, ``labels`` (repeat or comma-separated), ...
* ``GET /api/products/{id}`` a product; ``GET /api/thumbnails/{id}`` its image

Every error is ``{"error": "..."}`` with a 4xx status for bad input, 409 for a catalog
image whose file changed since it was indexed, and 503 with ``Retry-After`` when every image
decode slot stayed busy (uploads are decoded a few at a time to bound memory; see uploads). Images are only ever
served by product id through the catalog (never from a client-given path), request bodies
are capped (``Content-Length`` and the streamed size), and each model is entered by one
thread at a time (see the service).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fashionclip import __version__
from fashionclip.errors import (
    FashionCLIPError,
    ImageDecodeError,
    InvalidQueryError,
)
from fashionclip.index import Catalog, ProductNotFoundError
from fashionclip.serve.metrics import RequestMetrics
from fashionclip.serve.schemas import (
    FILTERS_DOC,
    ClassifyOut,
    ErrorOut,
    FacetsOut,
    InfoOut,
    LikeSearchIn,
    MetricsOut,
    NotReadyOut,
    ProductOut,
    ReadyOut,
    SearchOut,
    TextSearchIn,
    TraverseIn,
    TraverseOut,
)
from fashionclip.serve.search import SearchService, ServiceLimits, UploadTooLargeError
from fashionclip.serve.uploads import (
    DecodeGate,
    ImageChangedError,
    ServiceBusyError,
    bind_gate,
    gate_for,
)

log = logging.getLogger("fashionclip.serve")

#: Default cap on an uploaded image file (bytes).
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Room for multipart headers and small form fields on top of the file itself.
_MULTIPART_SLACK = 64 * 1024
#: Cap on JSON request bodies.
_MAX_JSON_BYTES = 256 * 1024
_UPLOAD_PATHS = frozenset({"/api/search/image", "/api/classify"})
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "faults.js": "text/javascript; charset=utf-8",
    "filters.js": "text/javascript; charset=utf-8",
    "history.js": "text/javascript; charset=utf-8",
    "hybrid.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "traverse.js": "text/javascript; charset=utf-8",
    "traverse.css": "text/css; charset=utf-8",
}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Bad input (empty query, unknown filter, k...)"},
    404: {"model": ErrorOut, "description": "Unknown product"},
    413: {"model": ErrorOut, "description": "Upload or image too large"},
    422: {"model": ErrorOut, "description": "Malformed request or unreadable image"},
}
_BUSY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorOut,
        "description": "Every image decode slot stayed busy; retry after `Retry-After` seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    }
}


# -- middleware -------------------------------------------------------------------------------


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a request body passes its limit (answered with 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit:,} bytes")


class BodyLimitMiddleware:
    """Caps request bodies: a declared ``Content-Length`` over the limit is refused before
    anything is read, and the streamed size is counted (chunked bodies have no length)."""

    def __init__(self, app: ASGIApp, upload_limit: int, json_limit: int) -> None:
        self.app = app
        self.upload_limit = upload_limit
        self.json_limit = json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in _UPLOAD_PATHS else self.json_limit
        declared: int | None = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


class MetricsMiddleware:
    """Counts requests and their latency per route template (see RequestMetrics)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.started()
        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            name = f"{scope['method']} {path}" if path else "unmatched"
            self.metrics.record(name, time.perf_counter() - started, status)


# -- the app ----------------------------------------------------------------------------------


#: HTTP status of each library error; any other FashionCLIPError (InvalidQueryError,
#: ModelMismatchError...) is about the client's input: 400.
_STATUS_OF: tuple[tuple[type[FashionCLIPError], int], ...] = (
    (ProductNotFoundError, 404),
    (ImageChangedError, 409),
    (UploadTooLargeError, 413),
    (ImageDecodeError, 422),
    (ServiceBusyError, 503),
)


def _status_of(exc: FashionCLIPError) -> int:
    return next((status for kind, status in _STATUS_OF if isinstance(exc, kind)), 400)


def _image_url(product_id: str) -> str:
    from urllib.parse import quote

    return "/api/thumbnails/" + quote(product_id, safe="")


def _with_urls(response: dict[str, Any]) -> dict[str, Any]:
    """Each hit gets its image URL (its ``content_hash`` comes with the search result)."""
    for side in ("results", "compare"):
        block = response.get(side)
        if block:
            for hit in block["results"]:
                hit["image_url"] = _image_url(hit["id"])
    return response


def _parse_form_filters(raw: str | None) -> dict[str, Any] | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidQueryError(f"filters must be a JSON object: {exc.msg}") from None
    if not isinstance(value, dict):
        raise InvalidQueryError("filters must be a JSON object")
    return value


def _read_upload(upload: UploadFile, limit: int) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLargeError(f"the uploaded file is larger than the limit of {limit:,} bytes")
    return data


def _load_page(name: str) -> bytes:
    return resources.files("fashionclip.serve").joinpath("static", name).read_bytes()


def create_app(
    catalog: Catalog,
    model: Any,
    *,
    compare_model: Any | None = None,
    compare_catalog: Catalog | None = None,
    max_upload_bytes: int | None = None,
    limits: ServiceLimits | None = None,
    title_column: str | None = None,
    key_columns: list[str] | None = None,
    decode_gate: DecodeGate | None = None,
) -> FastAPI:
    """The ASGI app serving ``catalog`` (built with ``model``) and its web page.

    ``compare_model`` + ``compare_catalog`` (a catalog of the same products built with the
    compare model) enable side-by-side results. ``limits`` sets the bounds (k, labels, upload
    bytes, pixels; see ServiceLimits); ``max_upload_bytes``, when given, overrides its upload
    cap (default: the limits' own, 10 MiB). ``decode_gate`` bounds concurrent image decodes
    (default: the process-wide gate, one slot per CPU core; see serve.uploads).
    """
    limits = limits or ServiceLimits(max_upload_bytes=DEFAULT_MAX_UPLOAD_BYTES)
    if max_upload_bytes is not None and max_upload_bytes != limits.max_upload_bytes:
        limits = dataclasses.replace(limits, max_upload_bytes=max_upload_bytes)
    service = SearchService(
        catalog,
        model,
        compare_model=compare_model,
        compare_catalog=compare_catalog,
        limits=limits,
        title_column=title_column,
        key_columns=key_columns,
    )
    if decode_gate is not None:
        bind_gate(service, decode_gate)
    gate = gate_for(service)
    metrics = RequestMetrics()
    static = {name: _load_page(name) for name in _STATIC}
    index_html = _load_page("index.html")

    app = FastAPI(
        title="fashionclip search",
        version=__version__,
        description="Search a product catalog by text, image or product with a CLIP-style "
        "model; zero-shot classification of uploaded images. Errors are "
        '`{"error": "..."}`. This description is `/openapi.json` (no /docs page: it would '
        "need scripts from a CDN).",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.metrics = metrics
    app.add_middleware(
        BodyLimitMiddleware,
        upload_limit=limits.max_upload_bytes + _MULTIPART_SLACK,
        json_limit=_MAX_JSON_BYTES,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    _add_error_handlers(app)
    _add_page_routes(app, static, index_html)
    _add_operation_routes(app, service, metrics, gate)
    _add_catalog_routes(app, service)
    _add_search_routes(app, service)
    _add_classify_route(app, service)
    _add_traverse_routes(app, service)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers {"error": "..."} with the status its cause deserves."""

    @app.exception_handler(FashionCLIPError)
    async def _library_error(request: Request, exc: FashionCLIPError) -> JSONResponse:
        headers = None
        if isinstance(exc, ServiceBusyError):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"error": str(exc)}, status_code=_status_of(exc), headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts: list[str] = []
        for error in exc.errors():
            where = list(error.get("loc", ()))
            if where and where[0] in ("body", "query", "path", "header", "cookie", "form"):
                where = where[1:]  # where the field came from; its name is what people need
            if error.get("type") == "json_invalid":
                detail = (error.get("ctx") or {}).get("error", "")
                message = f"the request body is not valid JSON ({detail})"
            elif where and where[0] == "filters":
                # one error per member of the value union: say it once, plainly
                message = f"filters: {FILTERS_DOC}"
            elif not where:
                message = f"request body: {error.get('msg', 'invalid')} (send a JSON object)"
            else:
                message = f"{'.'.join(str(p) for p in where)}: {error.get('msg', 'invalid')}"
            if message not in parts:
                parts.append(message)
        return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)


def _add_page_routes(app: FastAPI, static: dict[str, bytes], index_html: bytes) -> None:
    """The search page and its packaged static files (nothing else on disk is reachable)."""

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(index_html, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in static:  # a fixed set of packaged files; nothing else is reachable
            raise HTTPException(404, f"no static file {name!r}")
        return Response(static[name], media_type=_STATIC[name], headers=_PAGE_HEADERS)


def _add_operation_routes(
    app: FastAPI, service: SearchService, metrics: RequestMetrics, gate: DecodeGate
) -> None:
    """Health, readiness, metrics and the service's info."""

    @app.get("/api/health", tags=["operations"], summary="Liveness")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/api/ready",
        tags=["operations"],
        summary="Readiness: catalogs and models usable",
        response_model=ReadyOut,
        responses={503: {"model": NotReadyOut, "description": "A catalog cannot be read"}},
    )
    def ready() -> JSONResponse:
        try:
            return JSONResponse(ReadyOut(**service.ready()).model_dump(exclude_none=True))
        except Exception as exc:  # a catalog that cannot be read: not ready, not a crash
            log.warning("readiness check failed: %s", exc)
            return JSONResponse({"ready": False, "error": str(exc)}, status_code=503)

    @app.get(
        "/api/metrics",
        tags=["operations"],
        summary="Request counts and latency; image decode slots",
        response_model=MetricsOut,
    )
    def get_metrics() -> dict[str, Any]:
        return {**metrics.snapshot(), "uploads": gate.snapshot()}

    @app.get(
        "/api/info",
        tags=["catalog"],
        summary="Models, size, columns and limits",
        response_model=InfoOut,
    )
    def info() -> dict[str, Any]:
        return service.info()


def _add_catalog_routes(app: FastAPI, service: SearchService) -> None:
    """Facets, products and their thumbnails."""

    @app.get("/api/facets", tags=["catalog"], response_model=FacetsOut, responses=_ERRORS)
    def facets(
        limit: Annotated[int, Query(ge=1, le=10_000, description="Values per column")] = 100,
        filters: Annotated[
            str | None, Query(description="JSON object; counts follow it. " + FILTERS_DOC)
        ] = None,
    ) -> dict[str, Any]:
        """Values of each metadata column with product counts, most frequent first. With
        ``filters``, each column counts the products that the other columns' filters allow
        (the query text does not narrow a vector search, so counts follow the filters)."""
        return {"facets": service.facets(limit, _parse_form_filters(filters))}

    @app.get(
        "/api/products/{product_id:path}",
        tags=["catalog"],
        response_model=ProductOut,
        responses=_ERRORS,
    )
    def product(product_id: str) -> dict[str, Any]:
        """A product's title and metadata."""
        found = service.product(product_id)
        return {**found, "image_url": _image_url(found["id"])}

    @app.get(
        "/api/thumbnails/{product_id:path}",
        tags=["catalog"],
        responses={
            **_ERRORS,
            **_BUSY,
            409: {"model": ErrorOut, "description": "The file changed since it was indexed"},
            200: {"content": {"image/*": {}}, "description": "The image"},
        },
    )
    def thumbnail(product_id: str) -> Response:
        """The image of a catalog product (looked up by id; larger images are scaled down).
        Only the bytes that were indexed are served (sha256 checked against the catalog)."""
        image = service.product_image(product_id)
        headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
        if image.path is not None:
            return FileResponse(image.path, media_type=image.media_type, headers=headers)
        return Response(image.data, media_type=image.media_type, headers=headers)


def _add_search_routes(app: FastAPI, service: SearchService) -> None:
    """Text, product and image search."""

    @app.post("/api/search/text", tags=["search"], response_model=SearchOut, responses=_ERRORS)
    def search_text(body: TextSearchIn) -> dict[str, Any]:
        """Products matching a text query, best first."""
        found = service.search_text(
            body.query,
            k=body.k,
            filters=body.filters,
            compare=body.compare,
            mode=body.mode,
            ignore_understood=body.ignore_understood,
        )
        return _with_urls(found.to_dict())

    @app.post("/api/search/like", tags=["search"], response_model=SearchOut, responses=_ERRORS)
    def search_like(body: LikeSearchIn) -> dict[str, Any]:
        """More like this: products most similar to a catalog product."""
        found = service.more_like_this(
            body.id,
            k=body.k,
            filters=body.filters,
            compare=body.compare,
            text=body.text,
            mode=body.mode,
            ignore_understood=body.ignore_understood,
        )
        return _with_urls(found.to_dict())

    @app.post(
        "/api/search/image",
        tags=["search"],
        response_model=SearchOut,
        responses={**_ERRORS, **_BUSY},
    )
    def search_image(
        image: Annotated[UploadFile, File(description="An image file (JPEG, PNG, WebP...)")],
        k: Annotated[int | None, Form(description="Number of results, 1..max_k")] = None,
        filters: Annotated[str | None, Form(description="JSON object; " + FILTERS_DOC)] = None,
        compare: Annotated[bool, Form(description="Also answer with the compare model")] = False,
        text: Annotated[str | None, Form(description="Words refining the image (composed)")] = None,
        mode: Annotated[str | None, Form(description="vector, keyword or hybrid")] = None,
        ignore_understood: Annotated[
            list[str] | None, Form(description="Understood columns not to use (repeat the field)")
        ] = None,
    ) -> dict[str, Any]:
        """Products that look like an uploaded image (with ``text``: "like this, but red")."""
        data = _read_upload(image, service.limits.max_upload_bytes)
        found = service.search_image(
            data,
            k=k,
            filters=_parse_form_filters(filters),
            compare=compare,
            filename=image.filename,
            text=text,
            mode=mode,
            ignore_understood=ignore_understood,
        )
        return _with_urls(found.to_dict())


def _add_classify_route(app: FastAPI, service: SearchService) -> None:
    """Zero-shot classification of an uploaded image against labels the caller gives."""

    @app.post(
        "/api/classify", tags=["search"], response_model=ClassifyOut, responses={**_ERRORS, **_BUSY}
    )
    def classify(
        image: Annotated[UploadFile, File(description="An image file")],
        labels: Annotated[
            list[str],
            Form(description="Candidate labels: repeat the field, or one comma-separated value"),
        ],
        templates: Annotated[
            list[str] | None,
            Form(description="Prompt templates with {} (default 'a photo of a {}')"),
        ] = None,
        compare: Annotated[bool, Form(description="Also classify with the compare model")] = False,
    ) -> dict[str, Any]:
        """Zero-shot classification of an uploaded image against the given labels."""
        if len(labels) == 1 and "," in labels[0]:
            labels = [part.strip() for part in labels[0].split(",")]
        data = _read_upload(image, service.limits.max_upload_bytes)
        return service.classify(data, labels, templates=templates, compare=compare).to_dict()


def _add_traverse_routes(app: FastAPI, service: SearchService) -> None:
    """Comparative recommendations: like this product, but darker (docs/recommend.md)."""

    @app.post(
        "/api/traverse",
        tags=["search"],
        response_model=TraverseOut,
        response_model_by_alias=True,
        responses=_ERRORS,
    )
    def traverse(body: TraverseIn) -> dict[str, Any]:
        """Walk from a product towards the `to` phrase and away from `from`, step by step."""
        found = service.traverse(
            body.id,
            body.start,
            body.end,
            steps=body.steps,
            per_step=body.per_step,
            method=body.method,
            keep=body.keep,
            filters=body.filters,
        )
        for step in found["steps"]:
            _with_urls({"results": {"results": step}})
        return found
