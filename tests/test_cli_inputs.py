"""CLI input faults: bad tables, unreadable images, the demo's optional filter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashionclip.cli import main


def _one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fashionclip {command}: error: ") and "Traceback" not in err
    return lines[0]


def _index(model_dir: Path, tmp_path: Path, table: Path, *options: str) -> int:
    """`fashionclip index --json` of ``table`` into ``tmp_path/cat`` (images product_{id}.png)."""
    return main(
        ["index", "--catalog", str(tmp_path / "cat"), "--model", str(model_dir), "--no-progress",
         "--image-template", "product_{id}.png", "--json", *options, str(table)]
    )  # fmt: skip


def test_index_binary_table_is_one_line_rc_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "some.csv"
    table.write_bytes(bytes(range(256)) * 4)
    code = main(["index", "--catalog", str(tmp_path / "c"), str(table)])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err, "index")
    assert "some.csv looks like a binary file" in line and "line 1" in line
    assert not (tmp_path / "c").exists()


def test_index_encoding_option(
    tiny_clip_dir: Path,
    product_images: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = tmp_path / "products.csv"
    table.write_bytes("id,name\n0,Платье\n1,Рубашка\n".encode("cp1251"))
    assert _index(tiny_clip_dir, tmp_path, table) == 2
    line = _one_error_line(capsys.readouterr().err, "index")
    assert "not UTF-8 text (byte 0xcf at line 2)" in line and "--encoding" in line
    assert _index(tiny_clip_dir, tmp_path, table, "--encoding", "cp1251") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["added"] == 2 and summary["warnings"] == []
    code = main(["search", "--catalog", str(tmp_path / "cat"), "--json", "dress"])
    assert code == 0
    hits = json.loads(capsys.readouterr().out)
    assert {hit["metadata"]["name"] for hit in hits} == {"Платье", "Рубашка"}


def test_index_unterminated_quote_keeps_other_rows(
    tiny_clip_dir: Path,
    product_images: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = tmp_path / "products.csv"
    table.write_text('id,name\n0,a\n1,"b\n2,c\n3,d\n', encoding="utf-8")
    assert _index(tiny_clip_dir, tmp_path, table) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["added"] == 3
    assert "products.csv line 3: a quote opens a field and never closes" in captured.err


def test_classify_without_readable_image(
    tiny_clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "mistyped.jpg"
    code = main(
        ["classify", "--model", str(tiny_clip_dir), "--labels", "shirt,dress", str(missing)]
    )
    assert code == 2
    line = _one_error_line(capsys.readouterr().err, "classify")
    assert "no readable image" in line and "mistyped.jpg" in line


def test_classify_some_bad_images(
    tiny_clip_dir: Path,
    product_images: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    images = [
        str(bad),
        str(product_images[0]),
        str(tmp_path / "missing.png"),
        str(product_images[1]),
    ]
    code = main(["classify", "--model", str(tiny_clip_dir), "--labels", "shirt,dress", *images])
    assert code == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert [line.split("\t")[0] for line in out] == [images[1], images[3]]
    assert "skipped " + images[0] in captured.err and "skipped " + images[2] in captured.err


def _catalog(tiny_clip_dir: Path, tmp_path: Path, header: str, rows: list[str]) -> str:
    table = tmp_path / "products.csv"
    table.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    assert _index(tiny_clip_dir, tmp_path, table) == 0
    return str(tmp_path / "cat")


def test_search_filter_if_present_without_the_column(
    tiny_clip_dir: Path,
    product_images: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`make demo SOURCE=products.csv IDS=` on a table without `gender`."""
    catalog = _catalog(tiny_clip_dir, tmp_path, "id,name", ["0,a", "1,b", "2,c"])
    capsys.readouterr()
    code = main(
        ["search", "--catalog", catalog, "--top-k", "5", "--filter-if-present", "gender=Men",
         "--json", "running shoes"]
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 3
    assert "no column 'gender'; --filter-if-present ignored" in captured.err
    # --filter keeps failing loudly on an unknown column.
    code = main(["search", "--catalog", catalog, "--filter", "gender=Men", "shoes"])
    assert code == 2


def test_search_filter_if_present_with_the_column(
    tiny_clip_dir: Path,
    product_images: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalog = _catalog(
        tiny_clip_dir, tmp_path, "id,gender", ["0,Men", "1,Women", "2,Men", "3,Women"]
    )
    capsys.readouterr()
    code = main(
        ["search", "--catalog", catalog, "--filter-if-present", "gender=Men", "--json", "shoes"]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert sorted(hit["id"] for hit in json.loads(captured.out)) == ["0", "2"]
    assert "ignored" not in captured.err
