"""Hardening of `fashionclip serve`: bounded image decoding (503 + Retry-After beyond the
queue), reduced decodes, thumbnails served only with the indexed bytes, the caller's limits,
and the typed OpenAPI description."""

from __future__ import annotations

import io
import shutil
import threading
import time

import httpx
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fashionclip.data.tables import ProductRecord  # noqa: E402
from fashionclip.errors import FashionCLIPError, InvalidQueryError  # noqa: E402
from fashionclip.index import Catalog  # noqa: E402
from fashionclip.serve import (  # noqa: E402
    ServiceLimits,
    create_app,
    uploads,  # noqa: E402
)
from fashionclip.serve.app import _status_of  # noqa: E402
from fashionclip.serve.uploads import (  # noqa: E402
    DecodeGate,
    ImageChangedError,
    ServiceBusyError,
)
from serve_support import ServerThread, draw_product, make_products  # noqa: E402


@pytest.fixture(scope="module")
def small(tmp_path_factory, tiny_clip):
    """A catalog of 6 products whose images live in a folder the tests may change."""
    root = tmp_path_factory.mktemp("hardening")
    records = make_products(root / "images", n=6)
    catalog = Catalog.create(root / "catalog", tiny_clip)
    catalog.index(records)
    return root, records, catalog, tiny_clip


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class ConcurrencyProbe:
    """Wraps uploads.decode_reduced: counts decodes running at once, each taking `delay` s."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.now = 0
        self.most = 0
        self.calls = 0
        self.lock = threading.Lock()
        self.original = uploads.decode_reduced

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.delay)
            return self.original(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


def post_images(base: str, data: bytes, n: int) -> list[httpx.Response]:
    """n image searches sent at once from n threads."""
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(n)

    def one() -> None:
        barrier.wait()
        files = {"image": ("a.png", data, "image/png")}
        answers.append(httpx.post(base + "/api/search/image", files=files, timeout=60))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == n
    return answers


def burst(small, monkeypatch, gate: DecodeGate, delay: float, n: int):
    """n concurrent image searches on a served app whose decodes take ``delay`` s more;
    returns (answers, the decode probe, /api/metrics afterwards)."""
    root, records, catalog, model = small
    probe = ConcurrencyProbe(delay=delay)
    monkeypatch.setattr(uploads, "decode_reduced", probe)
    app = create_app(catalog, model, decode_gate=gate)
    data = png(draw_product("Dress", (200, 40, 50), seed=3))
    with ServerThread(app) as base:
        answers = post_images(base, data, n)
        metrics = httpx.get(base + "/api/metrics").json()
    return answers, probe, metrics


def test_concurrent_uploads_are_decoded_one_slot_at_a_time(small, monkeypatch):
    gate = DecodeGate(slots=1, timeout_s=60)
    answers, probe, metrics = burst(small, monkeypatch, gate, delay=0.1, n=6)
    assert [a.status_code for a in answers] == [200] * 6
    assert probe.calls == 6 and probe.most == 1
    assert gate.peak == 1 and gate.active == 0 and gate.waiting == 0
    assert metrics["uploads"]["decode_slots"] == 1 and metrics["uploads"]["peak_decoding"] == 1


def test_uploads_beyond_the_queue_timeout_get_503_with_retry_after(small, monkeypatch):
    gate = DecodeGate(slots=1, timeout_s=0.1)
    answers, probe, metrics = burst(small, monkeypatch, gate, delay=1.0, n=4)
    statuses = sorted(a.status_code for a in answers)
    assert 200 in statuses and 503 in statuses, statuses
    busy = [a for a in answers if a.status_code == 503]
    assert busy and all(a.headers["retry-after"] == "1" for a in busy)
    assert busy and all("busy" in a.json()["error"] for a in busy)
    assert probe.most == 1
    assert metrics["uploads"]["refused_busy"] == len(busy)


def test_status_of_library_errors():
    assert _status_of(ServiceBusyError("busy", 2)) == 503
    assert _status_of(ImageChangedError("changed")) == 409
    assert _status_of(InvalidQueryError("bad")) == 400
    assert _status_of(FashionCLIPError("other")) == 400


def test_large_uploads_are_decoded_reduced_and_still_found(small):
    root, records, catalog, model = small
    client = TestClient(create_app(catalog, model))
    service = client.app.state.service
    target = records[2]
    with Image.open(target.image) as original:
        big = original.convert("RGB").resize((1920, 2560), Image.Resampling.NEAREST)
    decoded = service.decode_upload(png(big))
    assert decoded.mode == "RGB" and min(decoded.size) < 1920
    assert min(decoded.size) >= uploads.DECODE_SIDE
    jpeg = io.BytesIO()
    big.save(jpeg, format="JPEG", quality=95)
    drafted = service.decode_upload(jpeg.getvalue())
    assert drafted.mode == "RGB" and min(drafted.size) < 1920
    files = {"image": ("big.png", png(big), "image/png")}
    found = client.post("/api/search/image", files=files, data={"k": "3"}).json()
    assert found["results"]["results"][0]["id"] == target.id


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("P", "PNG"),
        ("P", "GIF"),
        ("1", "PNG"),
        ("I;16", "PNG"),
        ("L", "GIF"),
        ("RGBA", "PNG"),
        ("CMYK", "JPEG"),
        ("L", "JPEG"),
        ("RGB", "WEBP"),
    ],
)
def test_reduced_decoding_handles_every_mode(mode, fmt):
    image = Image.new("RGB", (1200, 1000), (200, 30, 30)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    decoded = uploads.decode_reduced(buffer.getvalue(), 25_000_000)
    assert decoded.mode == "RGB" and decoded.size == (600, 500)


def test_declared_pixels_are_refused_before_decoding(small, monkeypatch):
    root, records, catalog, model = small
    probe = ConcurrencyProbe(delay=0)
    monkeypatch.setattr(uploads, "decode_reduced", probe)
    client = TestClient(create_app(catalog, model, limits=ServiceLimits(max_image_pixels=10_000)))
    files = {"image": ("a.png", png(Image.new("RGB", (200, 200))), "image/png")}
    response = client.post("/api/search/image", files=files)
    assert response.status_code == 413 and "200x200" in response.json()["error"]
    assert probe.calls == 0


def test_thumbnails_serve_only_the_indexed_bytes(small, tmp_path):
    root, records, catalog, model = small
    client = TestClient(create_app(catalog, model))
    record = records[1]
    original = record.image.read_bytes()
    first = client.get("/api/thumbnails/" + record.id)
    assert first.status_code == 200 and first.content == original
    # the stored path becomes a symlink to another image outside the catalog
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(outside, format="JPEG")
    moved = tmp_path / "original.png"
    shutil.move(record.image, moved)
    try:
        record.image.symlink_to(outside)
        swapped = client.get("/api/thumbnails/" + record.id)
        assert swapped.status_code == 409
        assert "changed since it was indexed" in swapped.json()["error"]
        assert swapped.content != outside.read_bytes()
        # same size, other bytes, even with the old mtime: still refused
        record.image.unlink()
        tampered = bytearray(original)
        tampered[-20] ^= 0xFF
        record.image.write_bytes(bytes(tampered))
        assert client.get("/api/thumbnails/" + record.id).status_code == 409
        record.image.unlink()
        assert client.get("/api/thumbnails/" + record.id).status_code == 404
    finally:
        if record.image.exists() or record.image.is_symlink():
            record.image.unlink()
        shutil.move(moved, record.image)
    again = client.get("/api/thumbnails/" + record.id)
    assert again.status_code == 200 and again.content == original


def test_create_app_keeps_the_callers_upload_limit(small):
    root, records, catalog, model = small
    limits = ServiceLimits(max_upload_bytes=300)
    client = TestClient(create_app(catalog, model, limits=limits))
    assert client.get("/api/info").json()["limits"]["max_upload_bytes"] == 300
    data = png(draw_product("Dress", (200, 40, 50), seed=5))
    assert len(data) > 300
    response = client.post("/api/search/image", files={"image": ("a.png", data, "image/png")})
    assert response.status_code == 413
    # an explicit max_upload_bytes still wins over the limits' value
    explicit = TestClient(create_app(catalog, model, limits=limits, max_upload_bytes=5000))
    assert explicit.get("/api/info").json()["limits"]["max_upload_bytes"] == 5000


def test_openapi_is_typed_and_docs_pages_are_off(small):
    root, records, catalog, model = small
    client = TestClient(create_app(catalog, model))
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"InfoOut", "ReadyOut", "NotReadyOut", "MetricsOut", "UploadMetricsOut"} <= set(schemas)

    def ref(path: str, status: str) -> str:
        content = spec["paths"][path]["get"]["responses"][status]["content"]
        return content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]

    assert ref("/api/info", "200") == "InfoOut"
    assert ref("/api/ready", "200") == "ReadyOut"
    assert ref("/api/ready", "503") == "NotReadyOut"
    assert ref("/api/metrics", "200") == "MetricsOut"
    assert "503" in spec["paths"]["/api/search/image"]["post"]["responses"]
    # /docs and /redoc would load scripts from a CDN: blank offline, so they are off
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/api/ready").json() == {"ready": True, "products": len(records)}


def test_hits_carry_the_content_hash_of_byte_identical_duplicates(small, tmp_path):
    root, records, catalog, model = small
    copy = tmp_path / "copy.png"
    shutil.copy(records[0].image, copy)
    dupes = Catalog.create(tmp_path / "catalog", model)
    dupes.index([*records[:3], ProductRecord("dup", copy, dict(records[0].metadata))])
    client = TestClient(create_app(dupes, model))
    found = client.post("/api/search/like", json={"id": records[1].id, "k": 3}).json()
    hashes = {hit["id"]: hit["content_hash"] for hit in found["results"]["results"]}
    assert set(hashes) == {records[0].id, records[2].id, "dup"}
    assert hashes["dup"] == hashes[records[0].id] != hashes[records[2].id]
