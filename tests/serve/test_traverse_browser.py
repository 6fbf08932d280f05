"""The "Like this, but…" strip of the web page (serve/static/traverse.js) in headless chromium.

1,100 products (GradREC needs more than its population of 1,000): 40 drawn product images,
indexed with the tiny model, and 1,060 stored vectors that reuse those images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from browser_support import BROWSER_MARKS

pytestmark = BROWSER_MARKS
pytest.importorskip("fastapi")
pytest.importorskip("playwright.sync_api")

from browser_support import open_page  # noqa: E402
from fashionclip.index import Catalog  # noqa: E402
from fashionclip.serve import create_app  # noqa: E402
from serve_support import ServerThread, make_products  # noqa: E402

EXTRA = 1060


def save_to(tmp_path: Path) -> Path:
    """Where screenshots go: $FASHIONCLIP_ARTIFACTS when set, else the test's tmp_path."""
    import os

    folder = Path(os.environ.get("FASHIONCLIP_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, tiny_clip: object) -> object:
    root = tmp_path_factory.mktemp("walk-page")
    records = make_products(root / "images", n=40)
    catalog = Catalog.create(root / "catalog", tiny_clip)
    catalog.index(records)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(EXTRA, catalog.embedding_dim))
    metadata = [dict(records[i % 40].metadata) for i in range(EXTRA)]
    stored = [catalog.get(records[i % 40].id) for i in range(EXTRA)]
    images = [s.image if s else None for s in stored]
    hashes = [s.content_hash if s else None for s in stored]
    catalog.add_embeddings([f"x{i}" for i in range(EXTRA)], vectors, metadata, images, hashes)
    with ServerThread(create_app(catalog, tiny_clip)) as url:
        yield url


def test_walk_strip(base: str, tmp_path: Path) -> None:
    with open_page() as (page, problems):
        page.goto(base + "/?q=dress")
        page.wait_for_selector("#results .details-button")
        page.locator("#results .details-button").first.click()
        page.wait_for_selector("#traverse .walk-buttons button")
        first_title = page.text_content("#detail-title")

        page.get_by_role("button", name="darker").click()
        page.wait_for_selector("#traverse-result .walk-strip")
        steps = page.locator("#traverse-result .walk-step:not(.seed)")
        assert steps.count() >= 1
        assert page.locator("#traverse-result .walk-step.seed .walk-item").count() == 1
        ids = page.eval_on_selector_all(
            "#traverse-result .walk-step:not(.seed) .walk-item", "(items) => items.length"
        )
        assert ids >= 1
        assert "From \u201clight\u201d to \u201cdark\u201d" in page.text_content(".walk-note")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#traverse-result img')]"
            ".every((img) => img.complete && img.naturalWidth > 0)"
        )
        page.screenshot(path=str(save_to(tmp_path) / "traverse-strip.png"))

        # a product of the strip opens in the panel, and the old strip goes
        steps.first.locator(".walk-item").first.click()
        page.wait_for_function("() => !document.querySelector('#traverse-result .walk-strip')")
        assert page.locator("#detail").is_visible()

        # free text: the same phrase twice is refused with the server's message
        page.fill("#walk-from", "dark")
        page.fill("#walk-to", "Dark")
        page.click(".walk-form button[type=submit]")
        page.wait_for_selector("#traverse-result .error")
        assert "the same" in page.text_content("#traverse-result .error")
        assert first_title
        assert problems == [base + "/api/traverse"]  # the refused walk's 400, nothing else
