"""End to end on real KAGL data: `fashionclip index` / `fashionclip search` with a tiny model."""

from __future__ import annotations

import json

import pytest

from fashionclip.cli import main
from fashionclip.index import Catalog

pytestmark = pytest.mark.slow

N_PRODUCTS = 200


@pytest.fixture(scope="module")
def kagl_catalog(tmp_path_factory, kagl_dir, tiny_clip_dir):
    """~200 products of the KAGL test split indexed through the CLI; returns (folder, summary)."""
    folder = tmp_path_factory.mktemp("kagl") / "catalog"
    args = [
        "index",
        str(kagl_dir / "styles.csv"),
        "--catalog",
        str(folder),
        "--model",
        str(tiny_clip_dir),
        "--device",
        "cpu",
        "--ids-file",
        str(kagl_dir / "splits.csv"),
        "--ids-where",
        "split=test",
        "--limit",
        str(N_PRODUCTS),
        "--no-progress",
        "--json",
    ]
    return folder, args


def _run(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_index_search_and_reindex(kagl_catalog, kagl_dir, capsys):
    folder, args = kagl_catalog
    code, out, err = _run(capsys, args)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["added"], summary["failed"], summary["catalog_size"]) == (N_PRODUCTS, 0, 200)
    # The 22 malformed styles.csv lines are reported, with line numbers.
    assert sum("fields for 10 columns" in w for w in summary["warnings"]) == 22
    assert "styles.csv line 6044" in err
    assert json.loads((folder / "index-report.json").read_text())["added"] == N_PRODUCTS

    test_ids = {
        line.split(",")[0]
        for line in (kagl_dir / "splits.csv").read_text().splitlines()[1:]
        if line.split(",")[1] == "test"
    }
    catalog = Catalog.open(folder)
    assert len(catalog) == N_PRODUCTS and set(catalog.ids()) <= test_ids
    n_women = catalog.facets(["gender"])["gender"]["Women"]

    # Search with filters, --json contract: list best first with id, score, metadata.
    base = ["search", "--catalog", str(folder), "--device", "cpu", "--json"]
    code, out, err = _run(
        capsys, [*base, "--top-k", "5", "--filter", "gender=Women", "women red heels"]
    )
    assert code == 0, err
    hits = json.loads(out)
    assert len(hits) == min(5, n_women)
    assert all({"id", "score", "metadata"} <= set(h) for h in hits)
    assert all(h["metadata"]["gender"] == "Women" for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    code, out, _ = _run(
        capsys,
        [
            *base,
            "-k",
            "50",
            "--filter",
            "masterCategory=Footwear",
            "--filter",
            "year=2012",
            "shoes",
        ],
    )
    assert code == 0
    hits = json.loads(out)
    assert hits and all(h["metadata"]["masterCategory"] == "Footwear" for h in hits)
    assert all(h["metadata"]["year"] == 2012 for h in hits)

    first = hits[0]["id"]
    code, out, _ = _run(capsys, [*base, "-k", "3", "--like", first])
    like = json.loads(out)
    assert code == 0 and len(like) == 3 and first not in [h["id"] for h in like]

    image = catalog.image_path(first)
    code, out, _ = _run(capsys, [*base, "-k", "1", "--image", str(image)])
    assert code == 0 and json.loads(out)[0]["id"] == first

    code, out, _ = _run(capsys, ["search", "--catalog", str(folder), "-k", "2", "dress"])
    assert code == 0 and out.count("\n") == 2  # human-readable: one line per hit

    # Rerun: nothing is embedded again; --ann adds the optional approximate index.
    code, out, _ = _run(capsys, [*args, "--ann"])
    summary = json.loads(out)
    assert (summary["added"], summary["unchanged"], summary["embedded"]) == (0, N_PRODUCTS, 0)
    assert summary["ann"]["size"] == N_PRODUCTS
    code, out, _ = _run(capsys, [*base, "-k", "3", "--like", first])
    assert code == 0 and [h["id"] for h in json.loads(out)] == [h["id"] for h in like]
    code, out, _ = _run(capsys, [*base, "-k", "3", "--exact", "--like", first])
    assert code == 0 and [h["id"] for h in json.loads(out)] == [h["id"] for h in like]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--top-k", "0", "shirt"], "k must be a positive integer"),
        (["--filter", "colour=Red", "shirt"], "known columns: gender, masterCategory"),
        (["   "], "query text is empty"),
        ([], "give exactly one of"),
        (["--like", "no-such-id"], "no product 'no-such-id'"),
    ],
)
def test_search_errors_exit_2(kagl_catalog, capsys, extra, message):
    folder, args = kagl_catalog
    if not (folder / "catalog.sqlite").exists():
        assert main(args) == 0
        capsys.readouterr()
    code, out, err = _run(capsys, ["search", "--catalog", str(folder), "--device", "cpu", *extra])
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_missing_catalog_exits_2(tmp_path, capsys):
    code, _, err = _run(capsys, ["search", "--catalog", str(tmp_path / "none"), "shirt"])
    assert code == 2 and "no catalog at" in err


def test_index_with_changed_model_fails_or_rebuilds(kagl_dir, tiny_clip_dir, tmp_path, capsys):
    """A catalog built with other weights is refused, or rebuilt on request; other files stay."""
    from fashionclip.models.testing import build_tiny_clip

    folder = tmp_path / "catalog"
    base = [
        "index",
        str(kagl_dir / "styles.csv"),
        "--catalog",
        str(folder),
        "--device",
        "cpu",
        "--limit",
        "20",
        "--no-progress",
        "--json",
    ]
    assert _run(capsys, [*base, "--model", str(tiny_clip_dir)])[0] == 0
    (folder / "notes.txt").write_text("mine")
    other = build_tiny_clip(tmp_path / "other", seed=1)
    code, _, err = _run(capsys, [*base, "--model", str(other)])
    assert code != 0 and "was built with model" in err
    code, out, err = _run(capsys, [*base, "--model", str(other), "--rebuild-if-model-changed"])
    assert code == 0, err
    assert "embedding every product again" in err
    assert (json.loads(out)["added"], json.loads(out)["catalog_size"]) == (20, 20)
    assert (folder / "notes.txt").read_text() == "mine"
    assert Catalog.open(folder).model_identity.name == str(other)
    # Same model again: nothing to rebuild, nothing re-embedded.
    code, out, err = _run(capsys, [*base, "--model", str(other), "--rebuild-if-model-changed"])
    assert code == 0 and json.loads(out)["unchanged"] == 20 and "again" not in err


def test_cli_opens_each_catalog_once(kagl_dir, tiny_clip_dir, tmp_path, capsys, monkeypatch):
    """`index` (model read from the catalog) and `search` open the catalog once, not 2-3x."""
    folder = tmp_path / "catalog"
    base = ["index", str(kagl_dir / "styles.csv"), "--catalog", str(folder), "--device", "cpu"]
    base += ["--limit", "8", "--no-progress", "--json"]
    assert _run(capsys, [*base, "--model", str(tiny_clip_dir)])[0] == 0
    opened: list[str] = []
    real_open = Catalog.open.__func__  # type: ignore[attr-defined]

    def counting_open(cls, path, model=None):
        opened.append(str(path))
        return real_open(cls, path, model)

    monkeypatch.setattr(Catalog, "open", classmethod(counting_open))
    code, out, err = _run(capsys, [*base, "--rebuild-if-model-changed"])
    assert code == 0 and json.loads(out)["unchanged"] == 8, err
    assert len(opened) == 1
    opened.clear()
    code, out, err = _run(capsys, ["search", "--catalog", str(folder), "--device", "cpu", "shirt"])
    assert code == 0 and out, err
    assert len(opened) == 1
