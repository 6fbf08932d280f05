"""The one table reader: encodings, binary files, bad quoting, extra / missing fields."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from fashionclip.data import csvread
from fashionclip.data.csvread import TableError, decode_table, print_warnings, read_rows
from fashionclip.data.tables import CatalogSourceError, read_table
from fashionclip.errors import FashionCLIPError

SEVEN_ROWS = [
    "id,name,colour",
    "1,Plain dress,red",
    "2,Blue shirt,blue",
    '3,"Shirt, Men,green',  # the quote never closes
    "4,Tie,black",
    "5,Belt,brown",
    "6,Cap,white",
    "7,Scarf,grey",
]


def _write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


# ------------------------------------------------------------------------------------ quoting


def test_unterminated_quote_drops_only_its_line(tmp_path: Path) -> None:
    table = read_rows(_write(tmp_path / "t.csv", SEVEN_ROWS))
    assert [line for line, _ in table.rows] == [2, 3, 5, 6, 7, 8]
    assert [cells[0] for _, cells in table.rows] == ["1", "2", "4", "5", "6", "7"]
    assert len(table.problems) == 1
    problem = table.problems[0]
    assert problem.line == 4 and problem.kind == "unterminated_quote" and not problem.kept
    assert table.warnings == [
        "t.csv line 4: a quote opens a field and never closes (it would swallow the next "
        "rows); skipped"
    ]


def test_unterminated_quote_closed_by_a_later_quote(tmp_path: Path) -> None:
    """A later quoted field must not end the swallowed field: the rows in between are kept."""
    lines = SEVEN_ROWS[:6] + ['6,"Cap, wool",white', "7,Scarf,grey"]
    table = read_rows(_write(tmp_path / "t.csv", lines))
    assert [cells[0] for _, cells in table.rows] == ["1", "2", "4", "5", "6", "7"]
    assert table.rows[4][1] == ["6", "Cap, wool", "white"]
    assert table.problem_lines("unterminated_quote") == [4]


def test_swallowed_rows_closing_cleanly_are_detected(tmp_path: Path) -> None:
    """The quote closes at a later line's end and the field count fits, but the lines inside
    the field are whole rows: still an unterminated quote."""
    lines = ["id,name", '1,"abc', "2,def", "3,ghi", '4,jkl"', "5,mno"]
    table = read_rows(_write(tmp_path / "t.csv", lines))
    assert [cells[0] for _, cells in table.rows] == ["2", "3", "4", "5"]
    assert table.rows[2][1] == ["4", 'jkl"']  # a quote inside an unquoted field is text
    assert table.problem_lines("unterminated_quote") == [2]


def test_multiline_quoted_field_is_kept(tmp_path: Path) -> None:
    lines = ["id,name,notes", '1,Dress,"long text', 'over two lines, with a comma"', "2,Tie,x"]
    table = read_rows(_write(tmp_path / "t.csv", lines))
    assert table.rows == [
        (2, ["1", "Dress", "long text\nover two lines, with a comma"]),
        (4, ["2", "Tie", "x"]),
    ]
    assert not table.problems


def test_text_after_a_closing_quote(tmp_path: Path) -> None:
    lines = ["id,name", '1,"Shirt" blue', "2,ok", '3,Nike 3.5" Short']
    table = read_rows(_write(tmp_path / "t.csv", lines))
    assert table.rows == [(3, ["2", "ok"]), (4, ["3", 'Nike 3.5" Short'])]
    assert [(p.line, p.kind, p.kept) for p in table.problems] == [(2, "bad_quote", False)]


def test_long_open_quote_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvread, "MAX_RECORD_LINES", 3)
    lines = ["id,name", '1,"a', "b", "c", 'd"', "2,e"]
    table = read_rows(_write(tmp_path / "t.csv", lines))
    assert table.problem_lines("unterminated_quote") == [2]
    assert [cells[0] for _, cells in table.rows] == ["b", "c", 'd"', "2"]


def test_consecutive_unterminated_quotes(tmp_path: Path) -> None:
    lines = ["id,name", '0,"open', '1,"open', '2,"open', "9,ok"]
    table = read_rows(_write(tmp_path / "t.csv", lines))
    assert table.problem_lines("unterminated_quote") == [2, 3, 4]
    assert table.rows == [(5, ["9", "ok"])]


# ------------------------------------------------------------------------------------ fields


def test_extra_and_missing_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", ["id,a,name", "1,x,Tie, cufflinks", "2,y", "", "3,z,ok"])
    merged = read_rows(path)
    assert merged.rows == [
        (2, ["1", "x", "Tie, cufflinks"]),
        (3, ["2", "y", ""]),
        (5, ["3", "z", "ok"]),
    ]
    assert merged.problem_lines("extra_fields", kept=True) == [2]
    assert merged.problem_lines("missing_fields", kept=True) == [3]
    strict = read_rows(path, extra_fields="skip", missing_fields="skip")
    assert [line for line, _ in strict.rows] == [5]
    assert strict.problem_lines("extra_fields", kept=False) == [2]
    assert strict.records() == [{"id": "3", "a": "z", "name": "ok"}]


def test_tsv_and_header_errors(tmp_path: Path) -> None:
    tsv = tmp_path / "t.tsv"
    tsv.write_text(" id \tname\n1\ta, b\n", encoding="utf-8")
    assert read_rows(tsv).records() == [{"id": "1", "name": "a, b"}]
    with pytest.raises(TableError, match="duplicate column names"):
        read_rows(_write(tmp_path / "dup.csv", ["id,id", "1,2"]))
    with pytest.raises(TableError, match="empty table"):
        read_rows(_write(tmp_path / "blank.csv", ["", ""]))
    with pytest.raises(TableError, match="line 1: bad header: malformed quoting"):
        read_rows(_write(tmp_path / "head.csv", ['"id"x,name', "1,2"]))
    with pytest.raises(TableError, match="line 2: bad header: a quote opens a field and never"):
        read_rows(_write(tmp_path / "open.csv", ["", '"id,name', "1,2"]))


# ------------------------------------------------------------------------------------ encodings


def test_binary_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8")
    with pytest.raises(TableError, match=r"photo.csv looks like a binary file.*NUL byte at line 3"):
        read_rows(path)
    # The catalog reader raises its own error type (same message).
    with pytest.raises(CatalogSourceError, match="binary file"):
        read_table(path)


def test_cp1252_is_read_when_unambiguous(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", ["id,name", "1,Café crème", "2,Größe 42 – €9"], "cp1252")
    table = read_rows(path)
    assert table.encoding == "cp1252"
    assert [cells[1] for _, cells in table.rows] == ["Café crème", "Größe 42 – €9"]
    assert len(table.warnings) == 1
    assert "not UTF-8 (byte 0xe9 at line 2); read as cp1252" in table.warnings[0]
    source = read_table(path)
    assert source.records[1].metadata["name"] == "Größe 42 – €9"


@pytest.mark.parametrize(
    ("text", "codec"),
    [("1,Привет мир", "cp1251"), ("1,Ελληνικά", "cp1253"), ("1,ok\x81", "latin-1")],
)
def test_ambiguous_encodings_ask_for_one(tmp_path: Path, text: str, codec: str) -> None:
    path = _write(tmp_path / "t.csv", ["id,name", text], codec)
    with pytest.raises(TableError, match=r"is not UTF-8 text \(byte 0x.. at line 2\).*--encoding"):
        read_rows(path)
    assert read_rows(path, encoding=codec).rows == [(2, text.split(",", 1))]


def test_byte_order_marks_and_explicit_encodings(tmp_path: Path) -> None:
    for codec in ("utf-8-sig", "utf-16"):
        path = _write(tmp_path / f"{codec}.csv", ["id,name", "1,Café"], codec)
        table = read_rows(path)
        assert table.columns == ["id", "name"] and table.rows == [(2, ["1", "Café"])]
    assert decode_table("\ufeffid\n".encode(), "x.csv", "utf-8")[0] == "id\n"
    with pytest.raises(TableError, match="unknown encoding 'nope'"):
        decode_table(b"id\n", "x.csv", "nope")
    with pytest.raises(TableError, match=r"not valid utf-8 \(byte 0xe9 at line 2\)"):
        decode_table(b"id\ncaf\xe9\n", "x.csv", "utf-8")
    assert isinstance(TableError("x"), FashionCLIPError)


def test_parquet_and_unsupported(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path = tmp_path / "t.parquet"
    pd.DataFrame({"id": [1, 2], "name": ["a", None]}).to_parquet(path)
    table = read_rows(path)
    assert table.encoding is None and table.rows == [(1, [1, "a"]), (2, [2, None])]
    with pytest.raises(TableError, match="unsupported table format"):
        read_rows(_write(tmp_path / "t.json", ["{}"]))
    with pytest.raises(TableError, match="not found"):
        read_rows(tmp_path / "missing.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(TableError, match="cannot read Parquet file"):
        read_rows(bad)


def test_print_warnings_caps_the_list() -> None:
    out = io.StringIO()
    print_warnings([f"w{i}" for i in range(5)], limit=2, file=out)
    assert out.getvalue().splitlines() == ["warning: w0", "warning: w1", "warning: ... 3 more"]


# ------------------------------------------------------------------------------------ callers


def test_training_tables_use_the_same_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fashionclip.train.data import read_pairs_table

    lines = [
        "image,caption",
        "a.jpg,red dress",
        "b.jpg,shirt, blue, slim",
        '"c.jpg,x',
        "/d.jpg,tie",
    ]
    path = _write(tmp_path / "pairs.csv", lines)
    rows = read_pairs_table(path, "image", ["caption"])
    assert [(r["_image"], r["caption"]) for r in rows] == [
        (str(tmp_path / "a.jpg"), "red dress"),
        (str(tmp_path / "b.jpg"), "shirt, blue, slim"),  # KAGL's rule: kept
        ("/d.jpg", "tie"),
    ]
    err = capsys.readouterr().err
    assert "warning: pairs.csv line 3: 4 fields for 2 columns" in err
    assert "warning: pairs.csv line 4: a quote opens a field and never closes" in err
    with pytest.raises(FashionCLIPError, match="caption column 'text' not found"):
        read_pairs_table(path, "image", ["text"])
