"""Issue 15 page items over HTTP: the per-model weak-match threshold in /api/info, and
facet counts that follow the filters (/api/facets?filters=...)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fashionclip.index import Catalog  # noqa: E402
from fashionclip.serve import create_app  # noqa: E402
from fashionclip.serve.weak_match import SETTINGS_FILE, weak_match_below  # noqa: E402
from serve_support import make_products  # noqa: E402


@pytest.fixture(scope="module")
def app_and_catalog(tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("faults")
    catalog = Catalog.create(root / "catalog", tiny_clip)
    catalog.index(make_products(root / "images", n=24))
    yield create_app(catalog, tiny_clip), catalog
    catalog.close()


def test_weak_match_threshold_is_read_per_model_and_fingerprint(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    model = SimpleNamespace(name=str(folder), identity=SimpleNamespace(fingerprint="abc"))
    assert weak_match_below(model) is None  # no settings file: no hint
    settings = {"fingerprint": "abc", "weak_match_below": 0.3}  # a bare number: vector mode
    (folder / SETTINGS_FILE).write_text(json.dumps(settings))
    assert weak_match_below(model) == {"vector": 0.3}
    settings["weak_match_below"] = {"vector": 0.3, "hybrid": 4.9}
    (folder / SETTINGS_FILE).write_text(json.dumps(settings))
    assert weak_match_below(model) == {"vector": 0.3, "hybrid": 4.9}
    model.identity.fingerprint = "retrained"  # other weights: the value does not apply
    assert weak_match_below(model) is None
    (folder / SETTINGS_FILE).write_text("{not json")
    model.identity.fingerprint = "abc"
    assert weak_match_below(model) is None


def test_shipped_default_model_has_its_thresholds_for_its_own_weights():
    """Regression: the thresholds are per search mode (text search is hybrid by default, whose
    fused scores are not cosines) and recorded for the shipped weights' fingerprint."""
    import fashionclip
    from fashionclip.models.loading import default_model_path

    if default_model_path() is None:
        pytest.skip("the default model is not installed")
    model = fashionclip.load(device="cpu")
    cuts = weak_match_below(model)
    assert cuts is not None and set(cuts) == {"vector", "hybrid"}
    assert 0 < cuts["vector"] < 1 < cuts["hybrid"]


def test_info_reports_the_threshold(app_and_catalog):
    app, _ = app_and_catalog
    client = TestClient(app)
    assert client.get("/api/info").json()["weak_match_below"] is None  # tiny model: none
    app.state.service.weak_match_below = {"vector": 0.25, "hybrid": 4.0}
    try:
        assert client.get("/api/info").json()["weak_match_below"] == {"vector": 0.25, "hybrid": 4.0}
    finally:
        app.state.service.weak_match_below = None


def _counts(response) -> dict[str, dict[object, int]]:
    assert response.status_code == 200, response.text
    return {
        f["column"]: {v["value"]: v["count"] for v in f["values"]}
        for f in response.json()["facets"]
    }


def test_facet_counts_follow_the_filters(app_and_catalog):
    app, catalog = app_and_catalog
    client = TestClient(app)
    everything = _counts(client.get("/api/facets"))
    women = everything["gender"]["Women"]
    assert 0 < women < len(catalog)
    filtered = _counts(client.get("/api/facets", params={"filters": '{"gender": "Women"}'}))
    assert filtered["gender"] == everything["gender"]  # its own filter does not narrow it
    assert sum(filtered["baseColour"].values()) == women  # the others count Women only
    assert sum(filtered["articleType"].values()) == women
    assert set(filtered["articleType"]) == set(everything["articleType"])  # zeros listed
    both = '{"gender": "Women", "baseColour": ["Red", "Blue"]}'
    narrowed = _counts(client.get("/api/facets", params={"filters": both}))
    metas = [catalog.get(pid).metadata for pid in catalog.ids()]
    expected = sum(m["gender"] == "Women" and m["baseColour"] in {"Red", "Blue"} for m in metas)
    assert expected > 0 and sum(narrowed["articleType"].values()) == expected
    assert catalog.facets(filters={"gender": "Women"})["year"] == filtered["year"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{nope", "JSON"),
        ('{"size": "M"}', "unknown filter column"),
        ('{"gender": []}', "no values"),
    ],
)
def test_facet_filters_are_validated(app_and_catalog, raw, message):
    app, _ = app_and_catalog
    response = TestClient(app).get("/api/facets", params={"filters": raw})
    assert response.status_code == 400 and message in response.json()["error"]


def test_serve_option_sets_thresholds_per_mode():
    from fashionclip.cli.serve import _weak_match_option
    from fashionclip.errors import FashionCLIPError

    assert _weak_match_option(["0.5"]) == {"vector": 0.5}
    assert _weak_match_option(["vector=0.5", "hybrid=4.9"]) == {"vector": 0.5, "hybrid": 4.9}
    assert _weak_match_option(["off"]) is None
    with pytest.raises(FashionCLIPError, match="unknown mode 'fuzzy'"):
        _weak_match_option(["fuzzy=1"])
    with pytest.raises(FashionCLIPError, match="not a number"):
        _weak_match_option(["hybrid=high"])
