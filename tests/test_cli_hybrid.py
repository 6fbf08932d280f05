"""CLI: search modes, composed queries, the text-index command; the --json contract keeps its
shape (a list of {id, score, image, metadata}, best first) in the default (hybrid) mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashionclip.cli import main

ROWS = ["0,Men,Red,Acme Men Red Shirt", "1,Women,Green,Acme Women Green Dress",
        "2,Men,Blue,Zorba Men Blue Shirt", "3,Women,White,Acme Women White Dress"]  # fmt: skip


@pytest.fixture
def catalog(tiny_clip_dir: Path, product_images: list[Path], tmp_path: Path) -> str:
    table = tmp_path / "products.csv"
    table.write_text("\n".join(["id,gender,baseColour,productDisplayName", *ROWS]) + "\n")
    code = main(
        ["index", "--catalog", str(tmp_path / "cat"), "--model", str(tiny_clip_dir),
         "--no-progress", "--image-template", "product_{id}.png", "--json", str(table)]
    )  # fmt: skip
    assert code == 0
    return str(tmp_path / "cat")


def _search(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["search", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_contract_in_default_mode(catalog: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _search(capsys, "--catalog", catalog, "--top-k", "3", "--json", "zorba shirt")
    assert code == 0
    hits = json.loads(out)
    assert isinstance(hits, list) and len(hits) == 3
    assert all(set(h) == {"id", "score", "image", "metadata"} for h in hits)
    assert hits[0]["id"] == "2"  # the only "Zorba": hybrid finds the name's word
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_modes_composed_and_errors(catalog: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _search(capsys, "--catalog", catalog, "--mode", "keyword", "women's dress")
    assert code == 0 and "Dress" in out
    assert 'understood: {"gender": "Women"' in err
    code, out, _ = _search(capsys, "--catalog", catalog, "--json", "--like", "1", "white")
    hits = json.loads(out)
    assert code == 0 and hits[0]["id"] == "3" and "1" not in {h["id"] for h in hits}
    with pytest.raises(SystemExit) as exit_:
        _search(capsys, "--catalog", catalog, "--mode", "fuzzy", "x")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "'vector', 'keyword', 'hybrid'" in err
    code, _, err = _search(capsys, "--catalog", catalog, "--mode", "keyword", "--like", "1")
    assert code == 2 and "needs query text" in err
    code, _, err = _search(capsys, "--catalog", catalog, "--mode", "keyword", '"AND (*')
    assert code == 0


def test_text_index_command(catalog: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["text-index", "--catalog", catalog, "--field", "productDisplayName=2"]) == 0
    assert "text index built over productDisplayName" in capsys.readouterr().out
    code, out, _ = _search(capsys, "--catalog", catalog, "--mode", "keyword", "--json", "green")
    assert code == 0 and [h["id"] for h in json.loads(out)] == ["1"]
    assert main(["text-index", "--catalog", catalog, "--field", "x=heavy"]) == 2


def test_set_aside_columns_are_reported(catalog: str, capsys: pytest.CaptureFixture[str]) -> None:
    # no product is a Men's dress: the gender is understood but set aside, and said so
    code, out, err = _search(capsys, "--catalog", catalog, "--top-k", "2", "men's green dress")
    assert code == 0 and "set aside (no product carries it with the rest): gender" in err
    code, out, err = _search(capsys, "--catalog", catalog, "--top-k", "2", "women's green dress")
    assert code == 0 and "set aside" not in err


def test_ignore_understood(catalog: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _search(
        capsys, "--catalog", catalog, "--top-k", "4", "--ignore-understood", "gender",
        "women's red shirt",
    )  # fmt: skip
    assert code == 0 and len(out.splitlines()) == 4  # no filter: every product still listed
    assert 'understood: {"baseColour": "Red"}' in err
