"""The HTTP API of `fashionclip serve`: search, facets, thumbnails, errors, limits, threads.

A tiny random CLIP model and a catalog of 40 generated product images (with metadata) built in
a temporary folder; a second tiny model (other seed) is the compare model.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time

import httpx
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fashionclip.errors import FashionCLIPError  # noqa: E402
from fashionclip.index import Catalog, Query  # noqa: E402
from fashionclip.models.testing import build_tiny_clip  # noqa: E402
from fashionclip.serve import create_app  # noqa: E402
from fashionclip.serve.compare import compare_catalog_path, ensure_compare_catalog  # noqa: E402
from serve_support import (  # noqa: E402
    MAX_UPLOAD,
    ServerThread,
    draw_product,
    ids_of,
    make_products,
)

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
    # every script and style sheet the page names is served (the page is split in files)
    linked = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert "/static/history.js" in linked and "/static/filters.js" in linked
    for url in linked:
        assert client.get(url).status_code == 200, url


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
