"""A headless chromium page for the page tests (Debian's chromium via Playwright)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu"]
#: ``pytestmark`` of every page test: marked ``browser``, skipped without Debian's chromium.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed (/usr/bin/chromium); `make system-deps`",
    ),
]


@contextmanager
def open_page(width: int = 1280, height: int = 900) -> Iterator[tuple[object, list[str]]]:
    """A page at ``width`` x ``height`` and the problems it meets: ``"page error: ..."`` for a
    script error, the URL of every response with a status >= 400."""
    from playwright import sync_api  # after the tests' importorskip

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
            yield page, problems
        finally:
            browser.close()
