"""The web page end to end in a real headless browser (Debian's chromium via Playwright).

Starts `create_app` under uvicorn on a free loopback port, then: types a query and waits for
the result images to load, applies a filter and sees the results change, clicks a product and
gets similar products, searches by a dropped and by a chosen image, turns on the side-by-side
comparison; the URL holds the search (``/?q=...`` opens it, Back/Forward walk searches); the
articleType filter with more than 60 values and its type-ahead; phone width without horizontal
overflow after an image search; an error clears the old results. Screenshots at desktop and
phone width go under tmp_path (and are copied to $FASHIONCLIP_ARTIFACTS when that is set).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from browser_support import BROWSER_MARKS, CHROMIUM

pytestmark = BROWSER_MARKS
pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from serve_support import ServerThread, make_products  # noqa: E402

#: Products in the page's catalog: each has its own articleType, so that column has > 60 values.
N_PRODUCTS = 72
#: The running app per base URL, for tests that change a service setting.
APPS: dict[str, object] = {}

import fashionclip  # noqa: E402
from fashionclip.index import Catalog  # noqa: E402
from fashionclip.models.testing import build_tiny_clip  # noqa: E402
from fashionclip.serve import create_app  # noqa: E402
from fashionclip.serve.compare import ensure_compare_catalog  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]

# The first `n` result images of each result list (one, or two side by side) have loaded;
# images further down load lazily when scrolled to.
IMAGES_LOADED = """(n) => {
  const sides = [...document.querySelectorAll('#results .side')];
  return sides.length > 0 && sides.every((side) => {
    const imgs = [...side.querySelectorAll('.card img')].slice(0, n);
    return imgs.length > 0 && imgs.every((img) => img.complete && img.naturalWidth > 0);
  });
}"""
CARD_IDS = "() => [...document.querySelectorAll('#results .card')].map((c) => c.dataset.id)"


def compact(ids: list[str]) -> str:
    """The JSON text that JavaScript's JSON.stringify gives for the same list."""
    return json.dumps(ids, separators=(",", ":"))


def save_artifact(path: Path) -> Path:
    target_dir = os.environ.get("FASHIONCLIP_ARTIFACTS")
    if target_dir:
        Path(target_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(target_dir) / path.name)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("browser")
    records = make_products(root / "images", n=N_PRODUCTS)
    for i, record in enumerate(records):  # articleType gets more values than a short list holds
        record.metadata["articleType"] = f"{record.metadata['articleType']} {i:02d}"
    catalog = Catalog.create(root / "catalog", tiny_clip)
    catalog.index(records)
    compare_model = fashionclip.load(
        build_tiny_clip(root / "compare-model", seed=1), device="cpu", precision="fp32"
    )
    compare = ensure_compare_catalog(catalog, compare_model, show_progress=False).catalog
    app = create_app(catalog, tiny_clip, compare_model=compare_model, compare_catalog=compare)
    with ServerThread(app) as base:
        APPS[base] = app
        yield base, records


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


def watch(page, base: str) -> list[str]:
    """Collect console errors, page errors and any request that leaves the server."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on(
        "response",
        lambda res: problems.append(f"HTTP {res.status}: {res.url}") if res.status >= 400 else None,
    )
    page.on(
        "request",
        lambda req: (
            None
            if req.url.startswith(base) or req.url.startswith(("blob:", "data:"))
            else problems.append(f"external request: {req.url}")
        ),
    )
    return problems


def test_search_filter_similar_image_compare(server, browser, tmp_path):
    base, records = server
    by_id = {r.id: r for r in records}
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = watch(page, base)
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='true']")
    page.wait_for_selector("#filter-gender")  # filters are built from the facets

    # 1. text query: results with loaded images, name, key metadata, score, latency
    page.fill("#q", "red dress")
    page.press("#q", "Enter")
    page.wait_for_selector("#results .card")
    page.wait_for_function(IMAGES_LOADED, arg=8)
    first = page.evaluate(CARD_IDS)
    assert len(first) == 24
    card = page.locator("#results .card").first
    assert card.locator(".title").inner_text().startswith("Acme ")
    assert card.locator(".score").inner_text().startswith("score ")
    assert "ms" in page.inner_text("#status")
    genders = {by_id[i].metadata["gender"] for i in first}
    assert genders == {"Men", "Women"}

    # 2. filter: results change and all match
    page.select_option("#filter-gender", "Women")
    page.wait_for_function(f"(prev) => JSON.stringify(({CARD_IDS})()) !== prev", arg=compact(first))
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results .card .meta')].every("
        "(m) => m.textContent.includes('Women')) && document.querySelectorAll('#results .card').length > 0"
    )
    filtered = page.evaluate(CARD_IDS)
    assert filtered != first
    assert {by_id[i].metadata["gender"] for i in filtered} == {"Women"}
    page.wait_for_function(IMAGES_LOADED, arg=8)

    # 3. click a product: similar products (the product itself excluded), filter kept
    clicked = filtered[0]
    page.locator(f"#results .card[data-id='{clicked}']").click()
    page.wait_for_selector("#query-banner:not([hidden])")
    assert "Similar to" in page.inner_text("#query-banner")
    assert by_id[clicked].metadata["productDisplayName"] in page.inner_text("#query-banner")
    page.wait_for_function(
        f"() => !({CARD_IDS})().includes('{clicked}') && ({CARD_IDS})().length > 0"
    )
    similar = page.evaluate(CARD_IDS)
    assert clicked not in similar and {by_id[i].metadata["gender"] for i in similar} == {"Women"}
    page.wait_for_function(IMAGES_LOADED, arg=8)

    # 4. drop an image (a catalog product's own picture): that product comes first
    dropped = "p005"
    data_transfer = page.evaluate_handle(
        """async (id) => {
          const blob = await (await fetch('/api/thumbnails/' + id)).blob();
          const dt = new DataTransfer();
          dt.items.add(new File([blob], 'dropped.png', { type: 'image/png' }));
          return dt;
        }""",
        dropped,
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": data_transfer})
    page.wait_for_function(f"() => ({CARD_IDS})()[0] === '{dropped}'")
    assert "Searching by image" in page.inner_text("#query-banner")
    page.wait_for_function(IMAGES_LOADED, arg=8)
    by_image = tmp_path / "serve-desktop-image-search.png"
    page.screenshot(path=str(by_image))
    save_artifact(by_image)

    # 5. choose an image file: same, through the file input
    chosen = by_id["p009"]
    page.set_input_files("#file", str(chosen.image))
    page.wait_for_function(f"() => ({CARD_IDS})()[0] === '{chosen.id}'")
    page.wait_for_function(IMAGES_LOADED, arg=8)

    # 6. side by side with the compare model, for a text query
    page.select_option("#filter-gender", "")
    page.fill("#q", "blue jeans")
    page.press("#q", "Enter")
    page.check("#compare")
    page.wait_for_selector("#results.compare section[data-side='compare'] .card")
    headings = [h.lower() for h in page.locator("#results .side h2").all_inner_texts()]
    assert len(headings) == 2 and "catalog model" in headings[0] and "compare model" in headings[1]
    page.wait_for_function(IMAGES_LOADED, arg=8)

    desktop = tmp_path / "serve-desktop.png"
    page.screenshot(path=str(desktop), full_page=False)
    save_artifact(desktop)
    assert not problems, problems
    page.close()


def test_phone_width_layout(server, browser, tmp_path):
    base, _ = server
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    page = context.new_page()
    problems = watch(page, base)
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='true']")
    page.fill("#q", "black heels")
    page.press("#q", "Enter")
    page.wait_for_selector("#results .card")
    page.wait_for_function(IMAGES_LOADED, arg=4)
    # nothing wider than the screen, and two result columns
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    columns = page.evaluate(
        "getComputedStyle(document.querySelector('#results .grid')).gridTemplateColumns"
    )
    assert len(columns.split()) == 2
    phone = tmp_path / "serve-phone.png"
    page.screenshot(path=str(phone))
    save_artifact(phone)
    page.check("#compare")
    page.wait_for_selector("#results.compare section[data-side='compare'] .card")
    page.wait_for_function(IMAGES_LOADED, arg=2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    phone_compare = tmp_path / "serve-phone-compare.png"
    page.screenshot(path=str(phone_compare))
    save_artifact(phone_compare)
    assert not problems, problems
    context.close()


def open_desktop(browser, base: str, path: str):
    """A 1366x768 page at ``path``, ready; and the list its problems are collected in."""
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    problems = watch(page, base)
    page.goto(base + path)
    page.wait_for_selector("body[data-ready='true']")
    return page, problems


def wait_results(page, n: int = 4) -> list[str]:
    page.wait_for_selector("#results .card")
    page.wait_for_function(IMAGES_LOADED, arg=n)
    return page.evaluate(CARD_IDS)


def shot(page, tmp_path: Path, name: str, full_page: bool = False) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    save_artifact(path)


def test_url_holds_the_search_and_back_restores_it(server, browser, tmp_path):
    base, records = server
    by_id = {r.id: r for r in records}
    page, problems = open_desktop(browser, base, "/?q=red+dress")
    red = wait_results(page)
    assert page.input_value("#q") == "red dress" and len(red) == 24
    page.fill("#q", "blue jeans")
    page.press("#q", "Enter")
    page.wait_for_function("() => location.search === '?q=blue+jeans'")
    page.wait_for_function(f"(prev) => JSON.stringify(({CARD_IDS})()) !== prev", arg=compact(red))
    blue = wait_results(page)
    page.go_back()
    page.wait_for_function("() => location.search === '?q=red+dress'")
    page.wait_for_function(f"(want) => JSON.stringify(({CARD_IDS})()) === want", arg=compact(red))
    assert page.input_value("#q") == "red dress"
    page.go_forward()
    page.wait_for_function(f"(want) => JSON.stringify(({CARD_IDS})()) === want", arg=compact(blue))
    assert page.input_value("#q") == "blue jeans"
    # filters and "similar to" are in the URL too
    page.select_option("#filter-gender", "Women")
    page.wait_for_function("() => location.search.includes('f.gender=Women')")
    # the URL changes before the filtered results arrive: wait for the new cards
    page.wait_for_function(f"(prev) => JSON.stringify(({CARD_IDS})()) !== prev", arg=compact(blue))
    clicked = wait_results(page)[0]
    assert by_id[clicked].metadata["gender"] == "Women"
    page.locator(f"#results .card[data-id='{clicked}']").click()
    page.wait_for_function(f"() => location.search.includes('like={clicked}')")
    assert page.input_value("#q") == ""  # the box does not claim the old text
    page.reload()
    page.wait_for_selector("#query-banner:not([hidden])")
    assert "Similar to" in page.inner_text("#query-banner")
    assert page.input_value("#filter-gender") == "Women"
    similar = wait_results(page)
    assert clicked not in similar
    assert {by_id[i].metadata["gender"] for i in similar} == {"Women"}
    shot(page, tmp_path, "serve-desktop-similar.png")
    assert not problems, problems
    page.close()


def test_long_article_type_filter_with_type_ahead(server, browser, tmp_path):
    base, records = server
    by_id = {r.id: r for r in records}
    page, problems = open_desktop(browser, base, "/?q=shoes")
    wait_results(page)
    options = page.locator("#filter-articleType option").count()
    assert options - 1 == N_PRODUCTS > 60  # every value, plus "Any"
    labels = page.locator("#filter-list label").all_inner_texts()
    assert "Article type" in labels and "Colour" in labels and "articleType" not in labels
    page.fill("#filter-articleType-find", "heels 1")
    visible = page.evaluate(
        "() => [...document.querySelectorAll('#filter-articleType option')]"
        ".filter((o) => o.value && !o.hidden).map((o) => o.value)"
    )
    assert visible and all(v.lower().startswith("heels 1") for v in visible)
    shot(page, tmp_path, "serve-desktop-article-type.png")
    page.press("#filter-articleType-find", "Enter")
    page.wait_for_function("() => location.search.includes('f.articleType=Heels+1')")
    page.wait_for_function(f"() => ({CARD_IDS})().length === 1")
    (only,) = page.evaluate(CARD_IDS)
    assert by_id[only].metadata["articleType"] == visible[0]
    assert not problems, problems
    page.close()


def test_phone_image_search_fits_the_screen(server, browser, tmp_path):
    base, records = server
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    problems = watch(page, base)
    page.goto(base + "/?q=black+heels")
    page.wait_for_selector("body[data-ready='true']")
    wait_results(page, 2)
    top = page.evaluate("document.querySelector('#results .card').getBoundingClientRect().top")
    assert top < 300, top  # a compact header: the first result is on the first screen
    assert page.is_visible("text=Choose photo") and not page.is_visible("#dropzone")
    long_name = tmp_path / (
        "a-photo-with-a-rather-long-file-name-from-a-phone-camera-" * 2 + ".png"
    )
    shutil.copy(records[9].image, long_name)
    page.set_input_files("#file", str(long_name))
    page.wait_for_function(f"() => ({CARD_IDS})()[0] === '{records[9].id}'")
    page.wait_for_function(IMAGES_LOADED, arg=2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    close = page.locator("#clear-query").bounding_box()
    assert close is not None and close["x"] + close["width"] <= 390
    assert page.input_value("#q") == ""
    shot(page, tmp_path, "serve-phone-image-search.png")
    assert not problems, problems
    context.close()


def test_error_clears_the_old_results(server, browser, tmp_path):
    base, _ = server
    page, problems = open_desktop(browser, base, "/?q=red+dress")
    wait_results(page)
    not_an_image = tmp_path / "broken.png"
    not_an_image.write_bytes(b"this is not a picture at all")
    page.set_input_files("#file", str(not_an_image))
    page.wait_for_selector("#error:not([hidden])")
    assert "not a readable image" in page.inner_text("#error")
    assert page.locator("#results .card").count() == 0
    page.wait_for_function("() => document.querySelector('#query-img').hidden")
    shot(page, tmp_path, "serve-desktop-error.png")
    unexpected = [p for p in problems if "422" not in p]
    assert not unexpected, unexpected
    page.close()


def test_detail_panel_more_of_this_type(server, browser, tmp_path):
    base, records = server
    by_id = {r.id: r for r in records}
    page, problems = open_desktop(browser, base, "/?q=green+watch")
    first = wait_results(page)[0]
    page.locator(f"#results .item:has(.card[data-id='{first}']) .details-button").click()
    page.wait_for_selector("#detail[open]")
    assert page.inner_text("#detail-title") == by_id[first].metadata["productDisplayName"]
    details = page.inner_text("#detail-meta")
    assert "Article type" in details and by_id[first].metadata["articleType"] in details
    page.wait_for_function("() => document.querySelector('#detail-img').naturalWidth > 0")
    shot(page, tmp_path, "serve-desktop-detail.png")
    page.click("#detail-type")
    page.wait_for_function("() => !document.querySelector('#detail').open")
    kind = by_id[first].metadata["articleType"]
    page.wait_for_function("() => location.search.includes('f.articleType=')")
    assert page.input_value("#filter-articleType") == kind
    page.wait_for_function(f"() => ({CARD_IDS})().length === 1")
    assert page.evaluate(CARD_IDS) == [first]
    assert not problems, problems
    page.close()


def test_weak_match_hint_and_filter_counts_follow_the_filters(server, browser, tmp_path):
    base, records = server
    service = APPS[base].state.service  # type: ignore[attr-defined]
    try:
        # Thresholds are per mode: only the searched mode's applies (here the default, hybrid).
        service.weak_match_below = {"vector": 2.0}  # every cosine is below; hybrid: no cut
        page, problems = open_desktop(browser, base, "/?q=spaceship+engine")
        wait_results(page)
        assert page.locator("#weak-match").count() == 0
        page.close()
        service.weak_match_below = {"vector": -2.0, "hybrid": 100.0}  # every fused score is below
        page, problems1 = open_desktop(browser, base, "/?q=spaceship+engine")
        wait_results(page)
        page.wait_for_selector("#weak-match")
        note = page.inner_text("#weak-match")
        assert "matches \u201cspaceship engine\u201d well" in note and "100.000" in note
        shot(page, tmp_path, "serve-desktop-weak-match.png")
        page.close()

        service.weak_match_below = {"vector": -2.0, "hybrid": -100.0}  # no score is below
        page, problems2 = open_desktop(browser, base, "/?q=red+dress")
        wait_results(page)
        assert page.locator("#weak-match").count() == 0
        # Counts follow the filters: with gender=Women, the articleType counts are Women's.
        page.select_option("#filter-gender", "Women")
        wanted = '{"gender":"Women"}'
        page.wait_for_selector(f"#filter-list[data-counted-for='{wanted}']")
        men, women = records[0].metadata, records[1].metadata
        assert men["gender"] == "Men" and women["gender"] == "Women"
        options = page.locator("#filter-articleType option")
        texts = dict(
            zip(
                options.evaluate_all("os => os.map(o => o.value)"),
                options.all_inner_texts(),
                strict=True,
            )
        )
        assert texts[men["articleType"]].endswith("(0)")
        assert texts[women["articleType"]].endswith("(1)")
        genders = page.locator("#filter-gender option").all_inner_texts()
        assert any(t.startswith("Men (") and not t.endswith("(0)") for t in genders)
        page.close()
    finally:
        service.weak_match_below = None
    assert not problems and not problems1 and not problems2, problems + problems1 + problems2
