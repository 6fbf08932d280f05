"""The hybrid parts of the web page (serve/static/hybrid.js) in headless chromium: the search
mode switch, the understood chips (shown, removed, used again: removal re-runs the search with
``ignore_understood`` and never a filter), "like this, but ..." from a product, and words
added to an image search ("but in red")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from browser_support import BROWSER_MARKS

pytestmark = BROWSER_MARKS
pytest.importorskip("fastapi")
pytest.importorskip("playwright.sync_api")

from browser_support import open_page  # noqa: E402
from fashionclip.index import Catalog  # noqa: E402
from fashionclip.serve import create_app  # noqa: E402
from serve_support import ServerThread, make_products  # noqa: E402

CARD_COLOURS = (
    "() => [...document.querySelectorAll('#results .card .meta')].map((m) => m.textContent)"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_clip: object) -> object:
    root = tmp_path_factory.mktemp("hybrid-page")
    records = make_products(root / "images", n=40)
    catalog = Catalog.create(root / "catalog", tiny_clip)
    catalog.index(records)
    with ServerThread(create_app(catalog, tiny_clip)) as url:
        yield url, records


#: Keeps the text fields of every multipart (FormData) request the page sends: the browser
#: does not hand a body holding a file to the request event.
RECORD_FORMS = """
window.__forms = [];
const plainFetch = window.fetch;
window.fetch = (url, options) => {
  const body = options && options.body;
  if (body instanceof FormData) {
    const fields = {};
    for (const [name, value] of body.entries()) if (typeof value === "string") fields[name] = value;
    window.__forms.push(fields);
  }
  return plainFetch(url, options);
};
"""


class Searches:
    """The search requests the page sends: (path, JSON body or multipart text fields)."""

    def __init__(self, page: object) -> None:
        self.page = page
        self.sent: list[tuple[str, dict | None]] = []
        page.add_init_script(RECORD_FORMS)  # type: ignore[attr-defined]
        page.on("request", self._record)  # type: ignore[attr-defined]

    def _record(self, request: object) -> None:
        url = request.url  # type: ignore[attr-defined]
        if "/api/search/" in url:
            path = url.split("/api/search/")[1]
            raw = None if path == "image" else request.post_data  # type: ignore[attr-defined]
            self.sent.append((path, None if raw is None else json.loads(raw)))

    def last(self) -> tuple[str, dict]:
        assert self.sent, "no search request was sent"
        path, body = self.sent[-1]
        if body is None:
            script = "() => window.__forms[window.__forms.length - 1]"
            body = self.page.evaluate(script)  # type: ignore[attr-defined]
        return path, body


def searched(page: object) -> object:
    """Context manager: wait for the search response that the action inside triggers."""
    return page.expect_response(lambda r: "/api/search/" in r.url)  # type: ignore[attr-defined]


def chip_columns(page: object, which: str) -> list[str]:
    """The columns of the understood chips matching ``which`` (a CSS suffix), sorted."""
    chips = page.locator("#understood .chip" + which)  # type: ignore[attr-defined]
    return sorted(chips.evaluate_all("(cs) => cs.map((c) => c.dataset.column)"))


def test_mode_switch_and_removable_chips(site: tuple[str, list], browser_page: object) -> None:
    base, _ = site
    page = browser_page
    searches = Searches(page)
    page.goto(base + "/?q=red%20dress")
    page.wait_for_selector("#understood .chip")
    path, body = searches.last()
    assert path == "text" and body["query"] == "red dress" and "mode" not in body
    assert chip_columns(page, ":not(.removed)") == ["articleType", "baseColour"]

    # the mode switch re-runs the search in the chosen mode
    with searched(page):
        page.select_option("#search-mode", "keyword")
    assert searches.last()[1].get("mode") == "keyword"
    with searched(page):
        page.select_option("#search-mode", "hybrid")
    assert searches.last()[1].get("mode") == "hybrid"
    page.wait_for_selector("#understood .chip[data-column='baseColour']:not(.removed)")

    # removing the colour chip re-runs without using it: not a filter
    sent = len(searches.sent)
    page.locator("#understood .chip[data-column='baseColour']").click()
    page.wait_for_selector("#understood .chip.removed[data-column='baseColour']")
    assert len(searches.sent) == sent + 1
    path, body = searches.last()
    assert body["ignore_understood"] == ["baseColour"] and body["filters"] == {}
    assert page.input_value("#filter-baseColour") == ""  # no filter was set on the page
    colours = " ".join(page.evaluate(CARD_COLOURS))
    assert any(c in colours for c in ("Blue", "Black", "Green", "Yellow"))  # other colours rank
    assert page.locator("#understood .chip[data-column='articleType']:not(.removed)").count() == 1

    # a removed chip can be used again
    page.locator("#understood .chip.removed[data-column='baseColour']").click()
    page.wait_for_selector("#understood .chip[data-column='baseColour']:not(.removed)")
    assert "ignore_understood" not in searches.last()[1]

    # a new query forgets the removed chips
    page.locator("#understood .chip[data-column='articleType']").click()
    page.wait_for_selector("#understood .chip.removed[data-column='articleType']")
    page.fill("#q", "black jeans")
    page.press("#q", "Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#understood .chip')].some("
        "(c) => c.textContent.startsWith('Black'))"
    )
    assert "ignore_understood" not in searches.last()[1]
    assert page.locator("#understood .chip.removed").count() == 0


def test_a_set_aside_chip_is_shown_apart(site: tuple[str, list], browser_page: object) -> None:
    # The only green dress (p015) is Women's: "men green dress" uses Green and Dress, and the
    # page shows Men as set aside ("words only"), not as a chip the results match
    base, _ = site
    page = browser_page
    searches = Searches(page)
    page.goto(base + "/?q=men%20green%20dress")
    page.wait_for_selector("#understood .chip.aside[data-column='gender']")
    aside = page.locator("#understood .chip.aside")
    assert aside.count() == 1 and "words only" in aside.inner_text()
    assert "No product is Men together" in (aside.get_attribute("title") or "")
    assert chip_columns(page, ":not(.aside)") == ["articleType", "baseColour"]
    # removing it works like any chip
    with searched(page):
        aside.click()
    assert searches.last()[1]["ignore_understood"] == ["gender"]
    page.wait_for_selector("#understood .chip.removed[data-column='gender']")
    assert page.locator("#understood .chip.aside").count() == 0


def test_like_this_but_from_a_product(site: tuple[str, list], browser_page: object) -> None:
    base, _ = site
    page = browser_page
    searches = Searches(page)
    page.goto(base + "/?q=dress")
    page.wait_for_selector("#results .details-button")
    page.locator("#results .details-button").first.click()
    product = page.evaluate("() => state.detail.id")
    page.fill("#refine-text", "yellow")
    page.click("#refine-form button[type=submit]")
    page.wait_for_selector("#understood .chip[data-column='baseColour']")
    path, body = searches.last()
    assert path == "like" and body["id"] == product and body["text"] == "yellow"
    assert ", but yellow" in page.inner_text("#query-banner")
    ids = page.evaluate(
        "() => [...document.querySelectorAll('#results .card')].map((c) => c.dataset.id)"
    )
    assert ids and product not in ids
    assert "Yellow" in page.evaluate(CARD_COLOURS)[0]
    page.locator("#understood .chip[data-column='baseColour']").click()
    page.wait_for_selector("#understood .chip.removed[data-column='baseColour']")
    path, body = searches.last()
    assert path == "like" and body["ignore_understood"] == ["baseColour"]
    assert body["filters"] == {}


def test_image_plus_words(site: tuple[str, list], browser_page: object) -> None:
    base, records = site
    page = browser_page
    searches = Searches(page)
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='true']")
    assert page.locator("#image-words-form").is_hidden()
    page.set_input_files("#file", str(records[0].image))
    page.wait_for_selector("#image-words-form:not([hidden])")
    path, fields = searches.last()
    assert path == "image" and "text" not in fields
    assert page.locator("#understood").count() == 0  # an image alone: nothing understood

    page.fill("#image-words", "but in green")
    page.click("#image-words-form button[type=submit]")
    page.wait_for_selector("#understood .chip[data-column='baseColour']")
    path, fields = searches.last()
    assert path == "image" and fields["text"] == "but in green"
    assert "\u201cbut in green\u201d" in page.inner_text("#query-banner")
    assert "Green" in page.evaluate(CARD_COLOURS)[0]

    page.locator("#understood .chip[data-column='baseColour']").click()
    page.wait_for_selector("#understood .chip.removed[data-column='baseColour']")
    path, fields = searches.last()
    assert fields["ignore_understood"] == "baseColour" and fields["filters"] == "{}"
    assert fields["text"] == "but in green"

    # another image starts without the words
    page.set_input_files("#file", str(records[3].image))
    page.wait_for_function("() => !document.getElementById('image-words-shown')")
    assert "text" not in searches.last()[1] and page.input_value("#image-words") == ""


@pytest.fixture
def browser_page(tmp_path: Path) -> object:
    with open_page() as (page, problems):
        yield page
        page.screenshot(path=str(tmp_path / "hybrid-page.png"))
    assert not problems, problems
