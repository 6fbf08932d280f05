"""The faces of Catalog.traverse: `fashionclip traverse` and POST /api/traverse.

A catalog of 1,100 random vectors stored with the tiny CLIP model's identity (the walk needs
more products than GradREC's population of 1,000), with KAGL-like metadata and no images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fashionclip.cli import main  # noqa: E402
from fashionclip.index import Catalog  # noqa: E402
from fashionclip.serve import create_app  # noqa: E402

N = 1100
TYPES = ("Shirts", "Dress", "Heels")


@pytest.fixture(scope="module")
def walk_catalog(tiny_clip: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("walk") / "cat"
    catalog = Catalog.create(path, tiny_clip)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(N, tiny_clip.embedding_dim)).astype(np.float32)
    meta = [{"articleType": TYPES[i % 3], "usage": "Casual", "name": f"item {i}"} for i in range(N)]
    catalog.add_embeddings([f"p{i}" for i in range(N)], vectors, meta)
    catalog.close()
    return path


@pytest.fixture(scope="module")
def client(walk_catalog: Path, tiny_clip: Any) -> TestClient:
    return TestClient(create_app(Catalog.open(walk_catalog, tiny_clip), tiny_clip))


def _cli(catalog: Path, *options: str) -> int:
    return main(["traverse", "--catalog", str(catalog), "--like", "p5", *options])


def test_cli_json_steps(walk_catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(walk_catalog, "--from", "light", "--to", "dark", "--steps", "3", "--json") == 0
    steps = json.loads(capsys.readouterr().out)
    assert 1 <= len(steps) <= 3 and all(step for step in steps)
    hits = [hit for step in steps for hit in step]
    assert all(set(hit) == {"id", "score", "image", "metadata"} for hit in hits)
    assert len({hit["id"] for hit in hits}) == len(hits) and "p5" not in {h["id"] for h in hits}
    assert {hit["metadata"]["articleType"] for hit in hits} == {TYPES[5 % 3]}  # default keep


def test_cli_text_and_no_keep(walk_catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _cli(walk_catalog, "--from", "casual", "--to", "formal", "--keep", "", "--steps", "2")
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("step 1:") and "item " in out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--from", "dark", "--to", "Dark"], "the same"),
        (["--from", "", "--to", "dark"], "start phrase is empty"),
        (["--from", "light", "--to", "dark", "--steps", "0"], "steps"),
        (["--from", "light", "--to", "dark", "--steps", "100000"], "steps"),
        (["--from", "light", "--to", "dark", "--keep", "colour"], "unknown filter column"),
    ],
)
def test_cli_bad_input(
    walk_catalog: Path, options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(walk_catalog, *options) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_unknown_product(walk_catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["traverse", "--catalog", str(walk_catalog), "--like", "nope",
                 "--from", "light", "--to", "dark"])  # fmt: skip
    assert code == 2 and "no product 'nope'" in capsys.readouterr().err


def test_http_traverse(client: TestClient) -> None:
    response = client.post("/api/traverse", json={"id": "p5", "from": "light", "to": "dark"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["seed"]["id"] == "p5" and body["from"] == "light" and body["to"] == "dark"
    assert body["keep"] == "articleType" and body["method"] == "gradrec"
    hits = [hit for step in body["steps"] for hit in step]
    assert hits and all(hit["image_url"].startswith("/api/thumbnails/") for hit in hits)
    assert len({hit["id"] for hit in hits}) == len(hits)
    again = client.post(
        "/api/traverse",
        json={"id": "p5", "from": "light", "to": "dark", "method": "arithmetic", "keep": "",
              "steps": 2, "per_step": 3, "filters": {"usage": "Casual"}},
    )  # fmt: skip
    assert again.status_code == 200 and again.json()["keep"] is None
    assert 1 <= len(again.json()["steps"]) <= 2
    assert all(len(step) <= 3 for step in again.json()["steps"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"id": "nope", "from": "light", "to": "dark"}, 404),
        ({"id": "p5", "from": "", "to": "dark"}, 400),
        ({"id": "p5", "from": "dark", "to": "dark"}, 400),
        ({"id": "p5", "from": "light", "to": "dark", "steps": 0}, 400),
        ({"id": "p5", "from": "light", "to": "dark", "steps": 10**9}, 400),
        ({"id": "p5", "from": "light", "to": "dark", "per_step": -1}, 400),
        ({"id": "p5", "from": "light", "to": "dark", "method": "x"}, 400),
        ({"id": "p5", "from": "light", "to": "dark", "keep": "colour"}, 400),
        ({"id": "p5", "from": "light", "to": "dark", "filters": {"x": 1}}, 400),
        ({"id": "p5", "from": "light", "to": "dark", "steps": "many"}, 422),
        ({"id": "p5", "to": "dark"}, 422),
    ],
)
def test_http_bad_input_is_4xx(client: TestClient, body: dict[str, Any], status: int) -> None:
    response = client.post("/api/traverse", json=body)
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_http_catalog_too_small(tiny_clip: Any, tmp_path: Path) -> None:
    catalog = Catalog.create(tmp_path / "small", tiny_clip)
    vectors = np.random.default_rng(1).normal(size=(50, tiny_clip.embedding_dim))
    catalog.add_embeddings([f"s{i}" for i in range(50)], vectors, [{"articleType": "Dress"}] * 50)
    small = TestClient(create_app(catalog, tiny_clip))
    response = small.post("/api/traverse", json={"id": "s1", "from": "light", "to": "dark"})
    assert response.status_code == 400 and "at least 1001" in response.json()["error"]
    arithmetic = small.post(
        "/api/traverse", json={"id": "s1", "from": "light", "to": "dark", "method": "arithmetic"}
    )
    assert arithmetic.status_code == 200
