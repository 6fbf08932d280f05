"""Shared set-up of the HTTP API tests: generated product images, the served world, helpers.

A tiny random CLIP model and a catalog of 40 generated product images (with metadata) built in
a temporary folder; a second tiny model (other seed) is the compare model.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

import fashionclip
from fashionclip.data.tables import ProductRecord
from fashionclip.index import Catalog
from fashionclip.models.testing import build_tiny_clip
from fashionclip.serve import create_app
from fashionclip.serve.compare import ensure_compare_catalog

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


def build_world(root: Path, tiny_clip):
    """Catalog + compare catalog + app under ``root``; returns a namespace of everything."""
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
