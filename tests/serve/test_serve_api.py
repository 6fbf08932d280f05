"""The HTTP API of `fashionclip serve`: search, facets, thumbnails, errors, limits, threads.

A tiny random CLIP model and a catalog of 40 generated product images (with metadata) built in
a temporary folder; a second tiny model (other seed) is the compare model.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import fashionclip  # noqa: E402
from fashionclip.data.tables import ProductRecord  # noqa: E402
from fashionclip.errors import FashionCLIPError  # noqa: E402
from fashionclip.index import Catalog, Query  # noqa: E402
from fashionclip.models.testing import build_tiny_clip  # noqa: E402
from fashionclip.serve import SearchService, ServiceLimits, create_app  # noqa: E402
from fashionclip.serve.compare import compare_catalog_path, ensure_compare_catalog  # noqa: E402

KINDS = ["Dress", "Shirts", "Heels", "Jeans", "Watches"]
COLOURS = {
    "Red": (200, 40, 50),
    "Blue": (40, 80, 190),
    "Black": (30, 30, 30),
    "Green": (40, 150, 70),
    "Yellow": (230, 190, 40),
}
N_PRODUCTS = 40
MAX_UPLOAD = 200_000


def draw_product(kind: str, colour: tuple[int, int, int], seed: int) -> Image.Image:
    """A 96x128 drawing of a garment on white (distinct per product)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (96, 128), (250, 250, 248))
    d = ImageDraw.Draw(image)
    jitter = int(rng.integers(-6, 7))
    if kind == "Dress":
        d.polygon([(38, 14), (58, 14), (80 + jitter, 116), (16 - jitter, 116)], fill=colour)
    elif kind == "Shirts":
        d.polygon(
            [(30, 16), (66, 16), (90, 40), (78, 50), (70, 42), (70, 110), (26, 110), (26, 42)],
            fill=colour,
        )
        d.polygon([(26, 42), (18, 50), (6, 40), (30, 16)], fill=colour)
    elif kind == "Heels":
        d.polygon([(10, 80), (70, 60 + jitter), (88, 92), (14, 96)], fill=colour)
        d.rectangle([74, 92, 80, 116], fill=colour)
    elif kind == "Jeans":
        d.polygon(
            [(26, 10), (70, 10), (78, 118), (54, 118), (48, 50), (42, 118), (18, 118)], fill=colour
        )
    else:
        d.rectangle([40, 8, 56, 120], fill=(90, 70, 50))
        d.ellipse([24 + jitter, 40, 72 + jitter, 88], fill=colour, outline=(20, 20, 20), width=3)
    # a few random dots so that no two products have the same bytes
    for _ in range(6):
        x, y = int(rng.integers(0, 96)), int(rng.integers(0, 128))
        d.point((x, y), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def make_products(folder: Path, n: int = N_PRODUCTS) -> list[ProductRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    names = list(COLOURS)
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        colour = names[(i // len(KINDS)) % len(names)]
        gender = "Women" if i % 2 else "Men"
        path = folder / f"{i:03d}.png"
        draw_product(kind, COLOURS[colour], seed=i).save(path)
        metadata = {
            "gender": gender,
            "articleType": kind,
            "baseColour": colour,
            "year": 2010 + i % 3,
            "productDisplayName": f"Acme {gender} {colour} {kind} {i}",
        }
        records.append(ProductRecord(f"p{i:03d}", path, metadata))
    return records


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clip):
    """Catalog + compare catalog + app; returns a namespace of everything."""
    root = tmp_path_factory.mktemp("serve")
    records = make_products(root / "images")
    # One large image, served as a scaled JPEG thumbnail.
    big = root / "images" / "big.png"
    draw_product("Dress", (120, 20, 160), seed=99).resize((900, 1200)).save(big)
    records.append(
        ProductRecord(
            "big",
            big,
            {
                "gender": "Women",
                "articleType": "Dress",
                "baseColour": "Purple",
                "year": 2012,
                "productDisplayName": "Acme Women Purple Dress big",
            },
        )
    )
    catalog = Catalog.create(root / "catalog", tiny_clip)
    report = catalog.index(records)
    assert report.failed == 0 and len(catalog) == len(records)
    compare_model = fashionclip.load(
        build_tiny_clip(root / "compare-model", seed=1), device="cpu", precision="fp32"
    )
    build = ensure_compare_catalog(catalog, compare_model, show_progress=False)
    app = create_app(
        catalog,
        tiny_clip,
        compare_model=compare_model,
        compare_catalog=build.catalog,
        max_upload_bytes=MAX_UPLOAD,
    )

    class World:
        pass

    w = World()
    w.root, w.records, w.catalog, w.model = root, records, catalog, tiny_clip
    w.compare_model, w.compare_catalog, w.build, w.app = (
        compare_model,
        build.catalog,
        build,
        app,
    )
    w.client = TestClient(app)
    return w


@pytest.fixture(scope="module")
def client(world) -> TestClient:
    return world.client


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def ids_of(block: dict) -> list[str]:
    return [hit["id"] for hit in block["results"]]


def assert_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


# -- contract and happy paths ----------------------------------------------------------------


def test_openapi_publishes_every_route(client):
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/api/search/text",
        "/api/search/image",
        "/api/search/like",
        "/api/classify",
        "/api/facets",
        "/api/info",
        "/api/health",
        "/api/ready",
        "/api/metrics",
        "/api/products/{product_id}",
        "/api/thumbnails/{product_id}",
    } <= paths
    form = spec["paths"]["/api/search/image"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form


def test_health_ready_info(client, world):
    assert client.get("/api/health").json() == {"status": "ok"}
    ready = client.get("/api/ready").json()
    assert ready == {
        "ready": True,
        "products": len(world.records),
        "compare_products": len(world.records),
    }
    info = client.get("/api/info").json()
    assert info["products"] == len(world.records)
    assert info["model"] == world.model.identity.name
    assert info["compare"]["model"] == world.compare_model.identity.name
    assert info["title_column"] == "productDisplayName"
    assert info["key_columns"] == ["articleType", "baseColour", "gender"]
    assert info["limits"]["max_upload_bytes"] == MAX_UPLOAD


def test_text_search_matches_the_library_and_is_ranked(client, world):
    body = client.post("/api/search/text", json={"query": "red dress", "k": 7}).json()
    expected = world.catalog.search("red dress", k=7)
    assert ids_of(body["results"]) == [r.id for r in expected]
    scores = [hit["score"] for hit in body["results"]["results"]]
    assert scores == sorted(scores, reverse=True)
    assert scores == pytest.approx([r.score for r in expected], abs=1e-5)
    hit = body["results"]["results"][0]
    assert hit["title"] == hit["metadata"]["productDisplayName"]
    assert hit["image_url"] == f"/api/thumbnails/{hit['id']}"
    assert body["kind"] == "text" and body["k"] == 7 and body["compare"] is None
    assert body["took_ms"] > 0 and body["results"]["timing"]["encode_ms"] > 0
    # default k
    default = client.post("/api/search/text", json={"query": "red dress"}).json()
    assert len(default["results"]["results"]) == 24


def test_filters_restrict_results(client, world):
    body = client.post(
        "/api/search/text",
        json={
            "query": "shoes",
            "k": 50,
            "filters": {"gender": "Women", "articleType": ["Heels", "Dress"]},
        },
    ).json()
    hits = body["results"]["results"]
    expected = {
        r.id
        for r in world.records
        if r.metadata["gender"] == "Women" and r.metadata["articleType"] in ("Heels", "Dress")
    }
    assert {h["id"] for h in hits} == expected
    # numbers compare by their text form: "2011" matches the integer 2011
    years = client.post(
        "/api/search/text", json={"query": "shoes", "k": 50, "filters": {"year": "2011"}}
    ).json()
    assert {h["metadata"]["year"] for h in years["results"]["results"]} == {2011}


def test_more_like_this(client, world):
    body = client.post("/api/search/like", json={"id": "p004", "k": 5}).json()
    assert "p004" not in ids_of(body["results"])
    assert ids_of(body["results"]) == [r.id for r in world.catalog.more_like_this("p004", k=5)]
    assert body["query"] == {"id": "p004", "title": "Acme Men Red Watches 4"}


def test_image_search_finds_the_same_product(client, world):
    record = world.records[12]
    data = record.image.read_bytes()
    response = client.post(
        "/api/search/image",
        files={"image": ("query.png", data, "image/png")},
        data={"k": "3"},
    )
    body = response.json()
    assert response.status_code == 200, body
    assert body["results"]["results"][0]["id"] == record.id
    assert body["results"]["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert body["query"]["image"] == "query.png"
    # with a JSON filter in the form that excludes the product
    other = "Men" if record.metadata["gender"] == "Women" else "Women"
    filtered = client.post(
        "/api/search/image",
        files={"image": ("query.png", data, "image/png")},
        data={"k": "40", "filters": json.dumps({"gender": other})},
    ).json()
    assert record.id not in ids_of(filtered["results"])
    assert {h["metadata"]["gender"] for h in filtered["results"]["results"]} == {other}


def test_compare_side_uses_the_compare_model_and_catalog(client, world):
    body = client.post(
        "/api/search/text", json={"query": "blue jeans", "k": 6, "compare": True}
    ).json()
    assert body["results"]["model"] == world.model.identity.name
    assert body["compare"]["model"] == world.compare_model.identity.name
    vector = world.compare_model.encode_text("blue jeans")
    # text queries default to hybrid mode: the same query, encoded by the compare model
    query = Query(text="blue jeans", k=6)
    expected = world.compare_catalog.run(query, encode=lambda q: vector)
    assert ids_of(body["compare"]) == [r.id for r in expected]
    assert ids_of(body["results"]) == [r.id for r in world.catalog.search("blue jeans", k=6)]
    like = client.post("/api/search/like", json={"id": "p001", "k": 4, "compare": True}).json()
    assert ids_of(like["compare"]) == [
        r.id for r in world.compare_catalog.more_like_this("p001", k=4)
    ]


def test_classify(client, world):
    record = world.records[0]
    labels = ["dress", "shirt", "shoes"]
    response = client.post(
        "/api/classify",
        files={"image": ("x.png", record.image.read_bytes(), "image/png")},
        data={"labels": "dress, shirt, shoes", "compare": "true"},
    )
    body = response.json()
    assert response.status_code == 200, body
    assert body["labels"] == labels
    expected = world.model.zero_shot_classification(str(record.image), labels)[0]
    scores = {s["label"]: s["score"] for s in body["result"]["scores"]}
    assert scores == pytest.approx(expected.scores, abs=1e-5)
    assert body["result"]["label"] == expected.label
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert body["compare"]["model"] == world.compare_model.identity.name
    # labels as repeated form fields, and a template
    repeated = client.post(
        "/api/classify",
        files={"image": ("x.png", record.image.read_bytes(), "image/png")},
        data={"labels": labels, "templates": ["a product photo of a {}"]},
    )
    assert repeated.status_code == 200 and repeated.json()["compare"] is None


def test_facets_and_product(client, world):
    facets = {f["column"]: f for f in client.get("/api/facets").json()["facets"]}
    assert set(facets) == {"gender", "articleType", "baseColour", "year", "productDisplayName"}
    gender = {v["value"]: v["count"] for v in facets["gender"]["values"]}
    assert gender == {"Men": 20, "Women": 21}
    limited = client.get("/api/facets", params={"limit": 2}).json()["facets"]
    article = next(f for f in limited if f["column"] == "articleType")
    assert len(article["values"]) == 2 and article["truncated"] is True
    product = client.get("/api/products/p003").json()
    assert product["metadata"]["articleType"] == "Jeans"
    assert product["image_url"] == "/api/thumbnails/p003"


def test_thumbnail_is_the_catalog_image(client, world):
    response = client.get("/api/thumbnails/p002")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == world.records[2].image.read_bytes()
    big = client.get("/api/thumbnails/big")
    assert big.status_code == 200 and big.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(big.content)) as thumb:
        assert max(thumb.size) == 512


def test_metrics_count_requests_per_endpoint(world):
    client = TestClient(world.app)
    before = client.get("/api/metrics").json()["endpoints"].get("POST /api/search/text", {})
    client.post("/api/search/text", json={"query": "dress", "k": 3})
    client.post("/api/search/text", json={"query": "", "k": 3})
    after = client.get("/api/metrics").json()
    text = after["endpoints"]["POST /api/search/text"]
    assert text["count"] == before.get("count", 0) + 2
    assert text["client_errors"] == before.get("client_errors", 0) + 1
    assert text["p50_ms"] > 0 and text["max_ms"] >= text["p95_ms"] >= text["p50_ms"]
    # ids in paths do not create new endpoint names
    client.get("/api/thumbnails/p001")
    names = client.get("/api/metrics").json()["endpoints"]
    assert "GET /api/thumbnails/{product_id:path}" in names
    assert not any("p001" in name for name in names)


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert (
        "/static/app.js" in page.text
        and "script-src 'self'" in page.headers["content-security-policy"]
    )
    assert "//" not in page.text.replace("http://", "").split("<body>")[0].replace(
        'content="width=device-width', ""
    )  # no external (CDN) resources
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").status_code == 200


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


# -- compare catalog built next to the main one ------------------------------------------------


def test_compare_catalog_is_incremental(world, tmp_path):
    build = world.build
    assert build.catalog.path == compare_catalog_path(world.catalog, world.compare_model)
    assert build.catalog.path.parent == world.catalog.path
    assert build.report.added == len(world.records)
    # Build a small main catalog, its compare catalog, then change the main one.
    records = make_products(tmp_path / "imgs", n=6)
    main = Catalog.create(tmp_path / "main", world.model)
    main.index(records)
    first = ensure_compare_catalog(main, world.compare_model, show_progress=False)
    assert (first.report.added, len(first.catalog)) == (6, 6)
    again = ensure_compare_catalog(main, world.compare_model, show_progress=False)
    assert (again.report.added, again.report.unchanged, again.removed) == (0, 6, 0)
    main.remove(["p000"])
    draw_product("Heels", (0, 0, 0), seed=1234).save(records[1].image)  # new bytes
    third = ensure_compare_catalog(main, world.compare_model, show_progress=False)
    assert (third.report.updated, third.removed, len(third.catalog)) == (1, 1, 5)
    with pytest.raises(FashionCLIPError, match="own model"):
        ensure_compare_catalog(main, world.model, show_progress=False)


# -- concurrency ----------------------------------------------------------------------------


class ReentryCheckingModel:
    """Wraps a model; records the most threads ever inside an encoder at once."""

    def __init__(self, model) -> None:
        self._model = model
        self.identity = model.identity
        self.embedding_dim = model.embedding_dim
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.calls = 0

    def _enter(self):
        with self._lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(0.002)  # widen the window in which re-entry would be seen

    def _leave(self):
        with self._lock:
            self.active -= 1

    def encode_text(self, *args, **kwargs):
        self._enter()
        try:
            return self._model.encode_text(*args, **kwargs)
        finally:
            self._leave()

    def encode_images(self, *args, **kwargs):
        self._enter()
        try:
            return self._model.encode_images(*args, **kwargs)
        finally:
            self._leave()


class ServerThread:
    """uvicorn on a free loopback port in a background thread."""

    def __init__(self, app) -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_concurrent_requests_are_correct_and_never_reenter_the_model(world):
    guarded = ReentryCheckingModel(world.model)
    catalog = Catalog.open(world.catalog.path, guarded)
    app = create_app(catalog, guarded, max_upload_bytes=MAX_UPLOAD)
    queries = ["red dress", "blue jeans", "black heels", "green shirt", "watch", "yellow dress"]
    expected = {q: [r.id for r in world.catalog.search(q, k=5)] for q in queries}
    like_expected = {
        pid: [r.id for r in world.catalog.more_like_this(pid, k=5)] for pid in ("p001", "p007")
    }
    image = world.records[3].image.read_bytes()
    failures: list[str] = []

    def worker(index: int, base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            for j in range(6):
                q = queries[(index + j) % len(queries)]
                kind = (index + j) % 3
                if kind == 0:
                    r = http.post("/api/search/text", json={"query": q, "k": 5})
                    if r.status_code != 200 or ids_of(r.json()["results"]) != expected[q]:
                        failures.append(f"text {q}: {r.status_code} {r.text[:200]}")
                elif kind == 1:
                    pid = "p001" if j % 2 else "p007"
                    r = http.post("/api/search/like", json={"id": pid, "k": 5})
                    if r.status_code != 200 or ids_of(r.json()["results"]) != like_expected[pid]:
                        failures.append(f"like {pid}: {r.status_code} {r.text[:200]}")
                else:
                    r = http.post(
                        "/api/search/image",
                        files={"image": ("a.png", image, "image/png")},
                        data={"k": "1"},
                    )
                    if r.status_code != 200 or ids_of(r.json()["results"]) != ["p003"]:
                        failures.append(f"image: {r.status_code} {r.text[:200]}")

    with ServerThread(app) as base:
        threads = [threading.Thread(target=worker, args=(i, base)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        metrics = httpx.get(base + "/api/metrics").json()
    assert not failures, failures[:5]
    assert guarded.calls >= 40
    assert guarded.max_active == 1, "the model was entered by two threads at once"
    assert sum(e["server_errors"] for e in metrics["endpoints"].values()) == 0


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_serve_builds_the_compare_catalog_and_binds_loopback(world, tmp_path, monkeypatch):
    import uvicorn

    from fashionclip.cli import main

    records = make_products(tmp_path / "imgs", n=5)
    with Catalog.create(tmp_path / "cat", world.model) as catalog:
        catalog.index(records)
    compare_dir = build_tiny_clip(tmp_path / "cmp", seed=2)
    captured = {}

    def fake_run(app, host, port, log_level):
        captured.update(app=app, host=host, port=port)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    code = main(
        [
            "serve",
            "--catalog",
            str(tmp_path / "cat"),
            "--model",
            str(world.model.identity.name),
            "--device",
            "cpu",
            "--compare-model",
            str(compare_dir),
            "--port",
            "8123",
            "--no-progress",
        ]
    )
    assert code == 0
    assert captured["host"] == "127.0.0.1" and captured["port"] == 8123
    built = list((tmp_path / "cat").glob("compare-*"))
    assert len(built) == 1 and (built[0] / "catalog.sqlite").is_file()
    http = TestClient(captured["app"])
    body = http.post("/api/search/text", json={"query": "dress", "k": 3, "compare": True}).json()
    assert len(body["results"]["results"]) == 3 and len(body["compare"]["results"]) == 3
    # a missing catalog is a clear error (exit 2), not a traceback
    assert main(["serve", "--catalog", str(tmp_path / "nope")]) == 2
