"""The HTTP API's answers to bad input: nothing outside the catalog readable, 4xx with
``{"error": ...}`` for every malformed query or upload, never a 500 (world: serve_support).
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fashionclip.errors import FashionCLIPError  # noqa: E402
from fashionclip.serve import SearchService, ServiceLimits, create_app  # noqa: E402
from serve_support import (  # noqa: E402
    MAX_UPLOAD,
    assert_error,
)

# -- safety: nothing outside the catalog is readable ----------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/thumbnails/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/thumbnails/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/api/thumbnails/../../etc/passwd",
        "/api/thumbnails/%2Fetc%2Fpasswd",
        "/api/thumbnails//etc/passwd",
        "/api/thumbnails/p001%2F..%2F..%2Fcatalog%2Fcatalog.sqlite",
        "/api/thumbnails/p001/../../catalog/catalog.sqlite",
        "/api/thumbnails/..%5C..%5Cetc%5Cpasswd",
        "/api/thumbnails/%252E%252E%252Fetc%252Fpasswd",
        "/api/products/..%2F..%2Fetc%2Fpasswd",
        "/static/..%2Fapp.py",
        "/static/%2E%2E%2Fsearch.py",
        "/static/../search.py",
        "/static//etc/passwd",
        "/etc/passwd",
        "/api/../../etc/passwd",
    ],
)
def test_no_path_traversal(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "root:" not in response.text and "SQLite" not in response.text
    assert_error(response, 404)


def test_absolute_paths_of_real_files_are_not_ids(client, world):
    real = world.records[0].image
    for candidate in [str(real), str(real).lstrip("/"), str(world.catalog.path / "catalog.sqlite")]:
        from urllib.parse import quote

        response = client.get("/api/thumbnails/" + quote(candidate, safe=""))
        assert_error(response, 404)
        assert response.content != real.read_bytes()


# -- bad input: 4xx with {"error": ...}, never a 500 -----------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"query": ""}, 400, "empty"),
        ({"query": "   \n\t "}, 400, "empty"),
        ({"query": "x" * 600}, 400, "limit"),
        ({"query": "dress", "k": 0}, 400, "between 1 and 200"),
        ({"query": "dress", "k": -3}, 400, "between 1 and 200"),
        ({"query": "dress", "k": 201}, 400, "between 1 and 200"),
        ({"query": "dress", "k": 10**12}, 400, "between 1 and 200"),
        ({"query": "dress", "k": "abc"}, 422, "k"),
        ({"query": "dress", "k": 2.5}, 422, "k"),
        ({"query": "dress", "k": True}, 422, "k"),
        ({"query": "dress", "k": "5"}, 422, "k"),
        ({"query": "dress", "filters": {"nope": "x"}}, 400, "unknown filter column 'nope'"),
        ({"query": "dress", "filters": {"gender": []}}, 400, "no values"),
        ({"query": "dress", "filters": {"gender": {"a": 1}}}, 422, "filters"),
        ({"query": "dress", "filters": ["gender"]}, 422, "filters"),
        ({"query": 42}, 422, "query"),
        ({}, 422, "query"),
        ({"query": "dress", "compare": "maybe"}, 422, "compare"),
    ],
)
def test_bad_text_queries(client, body, status, needle):
    error = assert_error(client.post("/api/search/text", json=body), status)
    assert needle in error


def test_bad_requests_of_other_kinds(client):
    assert "not valid JSON" in assert_error(
        client.post(
            "/api/search/text", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
    )
    assert "JSON object" in assert_error(
        client.post(
            "/api/search/text", content=b'{"query": "x"}', headers={"content-type": "text/plain"}
        ),
        422,
    )
    assert_error(client.post("/api/search/like", json={"id": "no-such-product"}), 404)
    assert_error(client.post("/api/search/like", json={"id": ""}), 400)
    assert_error(client.get("/api/products/no-such-product"), 404)
    assert_error(client.get("/api/facets", params={"limit": 0}), 422)
    assert_error(client.get("/api/nothing-here"), 404)
    assert_error(client.delete("/api/search/text"), 405)
    assert_error(client.get("/api/search/text"), 405)


def _upload(client, data: bytes, **form):
    return client.post(
        "/api/search/image",
        files={"image": ("up.bin", data, "application/octet-stream")},
        data=form,
    )


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A small PNG whose header declares a huge image (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 16, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def test_bad_uploads(client, world):
    good = world.records[0].image.read_bytes()
    assert "not a readable image" in assert_error(_upload(client, b"hello, not an image"), 422)
    assert "not a readable image" in assert_error(_upload(client, b"%PDF-1.4\n" + b"x" * 500), 422)
    assert "empty" in assert_error(_upload(client, b""), 400)
    assert_error(_upload(client, good[: len(good) // 2]), 422)  # truncated PNG
    assert "pixels" in assert_error(_upload(client, bomb_png()), 413)  # beyond PIL's own limit
    assert "6000x6000 pixels" in assert_error(_upload(client, bomb_png(6000, 6000)), 413)
    assert "k must be" in assert_error(_upload(client, good, k="0"), 400)
    assert "JSON" in assert_error(_upload(client, good, filters="{oops"), 400)
    assert "JSON object" in assert_error(_upload(client, good, filters="[1, 2]"), 400)
    assert_error(client.post("/api/search/image", data={"k": "3"}), 422)  # no file
    # compare is configured here; classify errors
    files = {"image": ("x.png", good, "image/png")}
    assert "two labels" in assert_error(
        client.post("/api/classify", files=files, data={"labels": "dress"}), 400
    )
    assert "distinct" in assert_error(
        client.post("/api/classify", files=files, data={"labels": "dress, dress"}), 400
    )
    assert "{}" in assert_error(
        client.post(
            "/api/classify", files=files, data={"labels": "a, b", "templates": "photo of {0}"}
        ),
        400,
    )
    assert_error(client.post("/api/classify", files=files), 422)  # no labels


def test_upload_over_the_limit_is_413(client):
    too_big = b"\x89PNG" + b"\0" * (MAX_UPLOAD + 70_000)
    assert "request body is larger" in assert_error(_upload(client, too_big), 413)
    # A file over the limit in a body that is under the body limit (multipart slack)
    just_over = b"\x89PNG" + b"\0" * (MAX_UPLOAD + 10)
    assert "uploaded file is larger" in assert_error(_upload(client, just_over), 413)
    at_limit = b"\x89PNG" + b"\0" * (MAX_UPLOAD - 4)
    assert "not a readable image" in assert_error(_upload(client, at_limit), 422)

    # Streamed (chunked, no Content-Length): counted as it arrives.
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def chunks():
        yield head
        for _ in range(40):
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/api/search/image",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "request body is larger" in assert_error(response, 413)
    # JSON bodies have their own (smaller) cap
    assert_error(client.post("/api/search/text", json={"query": "x" * 300_000}), 413)


def test_declared_content_length_is_refused_before_reading(world):
    """A huge Content-Length gets 413 without the body being read at all."""
    received: list[dict] = []
    sent: list[dict] = []

    async def receive():
        received.append({"type": "http.request"})
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/search/image",
        "raw_path": b"/api/search/image",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"multipart/form-data; boundary=abc"),
            (b"content-length", str(10**9).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(world.app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413 and "request body is larger" in json.loads(body)["error"]
    assert received == []


def test_compare_requires_configuration(world):
    plain = TestClient(create_app(world.catalog, world.model))
    error = assert_error(
        plain.post("/api/search/text", json={"query": "dress", "compare": True}), 400
    )
    assert "compare" in error
    assert plain.get("/api/info").json()["compare"] is None


def test_service_refuses_mismatched_models(world):
    with pytest.raises(FashionCLIPError):
        SearchService(world.catalog, world.compare_model)
    with pytest.raises(FashionCLIPError, match="go together"):
        SearchService(world.catalog, world.model, compare_model=world.compare_model)
    with pytest.raises(FashionCLIPError, match="default_k"):
        ServiceLimits(default_k=500)
