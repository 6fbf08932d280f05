"""HTTP: search modes, the understood query and composed "like this, but ..." queries."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fashionclip.index import Catalog  # noqa: E402
from fashionclip.serve import create_app  # noqa: E402

COLOURS = ["Red", "Black", "White", "Blue"]
TYPES = ["Dresses", "Handbags", "Watches"]


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_clip) -> TestClient:
    root = tmp_path_factory.mktemp("hybrid-serve")
    catalog = Catalog.create(root / "catalog", tiny_clip)
    n = 24
    rows = np.random.default_rng(0).normal(size=(n, tiny_clip.embedding_dim))
    metas = [
        {
            "gender": "Women" if i % 2 else "Men",
            "articleType": TYPES[i % 3],
            "baseColour": COLOURS[i % 4],
            "productDisplayName": f"Acme {COLOURS[i % 4]} {TYPES[i % 3]} {i}",
        }
        for i in range(n)
    ]
    catalog.add_embeddings([f"p{i}" for i in range(n)], rows, metas)
    return TestClient(create_app(catalog, tiny_clip))


def test_text_search_modes_and_understood(client):
    body = client.post("/api/search/text", json={"query": "ladies red dress", "k": 5}).json()
    assert body["mode"] == "hybrid" and body["results"]["mode"] == "hybrid"
    assert body["understood"] == {"gender": "Women", "baseColour": "Red", "articleType": "Dresses"}
    for mode in ("vector", "keyword", "hybrid"):
        got = client.post("/api/search/text", json={"query": "red", "k": 3, "mode": mode})
        assert got.status_code == 200 and got.json()["mode"] == mode


def test_unknown_mode_and_hostile_text_are_400_or_200_never_500(client):
    bad = client.post("/api/search/text", json={"query": "red", "mode": "semantic"})
    assert bad.status_code == 400 and "vector, keyword, hybrid" in bad.json()["error"]
    for text in ['"red AND (dress', "NEAR(a b) * - :", "red\x00\x07", "👗" * 50, "x" * 10_000]:
        got = client.post("/api/search/text", json={"query": text, "k": 3, "mode": "keyword"})
        assert got.status_code in (200, 400), got.text
        got = client.post("/api/search/text", json={"query": text, "k": 3})
        assert got.status_code in (200, 400), got.text


def test_composed_like_with_text(client):
    got = client.post("/api/search/like", json={"id": "p0", "text": "black", "k": 4}).json()
    assert got["understood"] == {"baseColour": "Black"} and got["query"]["text"] == "black"
    hits = got["results"]["results"]
    assert hits and hits[0]["metadata"]["baseColour"] == "Black"
    assert "p0" not in {h["id"] for h in hits}
    plain = client.post("/api/search/like", json={"id": "p0", "k": 4}).json()
    assert plain["mode"] == "vector" and plain["understood"] == {}


def test_page_loads_hybrid_script(client):
    page = client.get("/").text
    assert "/static/hybrid.js" in page
    script = client.get("/static/hybrid.js")
    assert script.status_code == 200 and "fcHybrid" in script.text


def test_composed_image_with_text(client):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="PNG")
    files = {"image": ("red.png", buffer.getvalue(), "image/png")}
    got = client.post("/api/search/image", files=files, data={"text": "white", "k": "3"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["understood"] == {"baseColour": "White"} and body["query"]["text"] == "white"
    assert body["results"]["results"][0]["metadata"]["baseColour"] == "White"


def test_columns_no_product_carries_together_are_set_aside(client):
    # Red products are all Men's (i % 4 == 0): "ladies red dress" uses Red and Dresses, and
    # reports Women as set aside instead of showing it as a chip in use
    body = client.post("/api/search/text", json={"query": "ladies red dress", "k": 5}).json()
    assert body["understood"] == {"gender": "Women", "baseColour": "Red", "articleType": "Dresses"}
    assert body["set_aside"] == ["gender"] and body["results"]["set_aside"] == ["gender"]
    assert {h["metadata"]["baseColour"] for h in body["results"]["results"][:2]} == {"Red"}
    body = client.post("/api/search/text", json={"query": "red dress", "k": 5}).json()
    assert body["set_aside"] == []
    vector = {"query": "ladies red dress", "k": 5, "mode": "vector"}
    assert client.post("/api/search/text", json=vector).json()["set_aside"] == []


def test_ignored_understood_column_drops_its_boost_and_is_never_a_filter(client):
    """A removed chip: the column is neither boosted nor filtered (other colours rank)."""
    text = {"query": "red dress", "k": 24, "mode": "hybrid"}
    boosted = client.post("/api/search/text", json=text).json()
    assert boosted["understood"] == {"baseColour": "Red", "articleType": "Dresses"}
    got = client.post("/api/search/text", json={**text, "ignore_understood": ["baseColour"]})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["understood"] == {"articleType": "Dresses"} and body["filters"] == {}
    hits = body["results"]["results"]
    assert len(hits) == 24  # every product still ranks: nothing was filtered
    top = [h["metadata"]["baseColour"] for h in hits[:6]]
    assert top != ["Red"] * 6 and set(top) != {"Red"}
    like = {"id": "p0", "text": "black", "k": 4, "ignore_understood": ["baseColour"]}
    assert client.post("/api/search/like", json=like).json()["understood"] == {}
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="PNG")
    files = {"image": ("red.png", buffer.getvalue(), "image/png")}
    form = {"text": "white watch", "k": "3", "ignore_understood": "baseColour"}
    image = client.post("/api/search/image", files=files, data=form).json()
    assert image["understood"] == {"articleType": "Watches"}
    bad = client.post("/api/search/text", json={**text, "ignore_understood": [""]})
    assert bad.status_code in (400, 422)
