"""The one table reader: CSV / TSV / Parquet files as a header and ``(line, cells)`` rows.

Catalog indexing (:mod:`fashionclip.data.tables`), the KAGL folder (:mod:`fashionclip.data.kagl`)
and training tables (:mod:`fashionclip.train.data`) all read tables through :func:`read_rows`,
so a file is parsed the same way everywhere. Row-level problems never stop a read: each one is a
:class:`TableProblem` with the line number, and every other row is kept.

Rules:

* **Encoding** (:func:`decode_table`): an explicit ``encoding`` is used as given. Otherwise a
  byte-order mark wins (UTF-8, UTF-16); then strict UTF-8. A file that is not UTF-8 is read as
  cp1252 (Windows Western European, a superset of latin-1's printable characters) only when that
  is unambiguous: every byte is defined in cp1252, there are no control characters, and no run
  of 3+ non-ASCII characters (Western European text has isolated accented letters; whole words
  of high bytes mean Cyrillic, Greek, CJK... in some other legacy encoding). The fallback is
  reported as a note. Anything else is a :class:`TableError` naming the byte and its line and
  asking for the encoding. latin-1 is never guessed: it differs from cp1252 only in bytes
  0x80-0x9f, which are invisible control codes in latin-1.
* **Binary data** (a NUL byte, e.g. an image or a spreadsheet given as CSV): :class:`TableError`.
* **More fields than columns** (KAGL's ``styles.csv`` has 22 lines with unquoted commas in
  ``productDisplayName``): ``extra_fields="merge_last"`` keeps the row, the first
  ``n_columns - 1`` fields are the columns and the rest, re-joined with the delimiter, is the
  last column (``line.split(",", n_columns - 1)`` for unquoted lines); ``"skip"`` drops it.
* **Fewer fields**: ``missing_fields="pad"`` fills the missing columns with ``""``; ``"skip"``.
* **A quote that never closes** would swallow the following rows into one field. A quoted
  field may span lines only if it closes, the record then has exactly ``n_columns`` fields,
  and the lines inside it do not each look like a complete row; otherwise its first line is
  reported and dropped, and reading goes on at the next line. Text after a closing quote
  (``"a"b``) is reported and the line dropped as well.
* Blank lines are ignored. Line numbers are physical (the header is line 1) and name the first
  line of a record. Parquet rows are numbered from 1 and keep their Python types (None for null).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from fashionclip.errors import FashionCLIPError

ExtraFields = Literal["merge_last", "skip"]
MissingFields = Literal["pad", "skip"]
ProblemKind = Literal["extra_fields", "missing_fields", "unterminated_quote", "bad_quote"]

#: File suffixes read as delimited text; everything else but Parquet is refused.
TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
#: A quoted field spanning more lines than this is taken as an unterminated quote.
MAX_RECORD_LINES = 1000


class TableError(FashionCLIPError):
    """A table cannot be read at all: missing, empty, binary, unknown encoding or format."""


@dataclass(frozen=True)
class TableProblem:
    """One line that did not fit the header; ``kept`` says whether its row is in the table."""

    line: int
    kind: ProblemKind
    kept: bool
    message: str


@dataclass
class RawTable:
    """A table as read: header, ``(line, cells)`` rows in file order, problems, encoding.

    CSV cells are strings (``""`` when empty); Parquet cells keep their Python types.
    """

    path: Path
    columns: list[str]
    rows: list[tuple[int, Sequence[object]]]
    problems: list[TableProblem] = field(default_factory=list)
    encoding: str | None = None  # None for Parquet
    notes: list[str] = field(default_factory=list)  # e.g. the cp1252 fallback

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def warnings(self) -> list[str]:
        """Notes, then one line per problem (``<file> line N: ...``), in file order."""
        return self.notes + [p.message for p in self.problems]

    def problem_lines(self, kind: ProblemKind, *, kept: bool | None = None) -> list[int]:
        """Line numbers of the problems of one kind (optionally only kept / dropped rows)."""
        return [
            p.line for p in self.problems if p.kind == kind and (kept is None or p.kept == kept)
        ]

    def records(self) -> list[dict[str, object]]:
        """Rows as ``{column: cell}`` dicts."""
        return [dict(zip(self.columns, cells, strict=True)) for _, cells in self.rows]


def read_rows(
    path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    extra_fields: ExtraFields = "merge_last",
    missing_fields: MissingFields = "pad",
) -> RawTable:
    """Read a CSV (``,``), TSV (tab) or Parquet file by its suffix. See the module rules."""
    table = Path(path)
    if not table.is_file():
        raise TableError(f"table not found: {table}")
    suffix = table.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(table)
    if suffix not in TEXT_SUFFIXES:
        raise TableError(
            f"unsupported table format {table.suffix!r} ({table}); use .csv, .tsv or .parquet"
        )
    text, used, notes = decode_table(table.read_bytes(), table.name, encoding)
    parser = _Parser(table.name, "\t" if suffix == ".tsv" else ",", extra_fields, missing_fields)
    columns, rows = parser.parse(text)
    if not columns:
        raise TableError(f"empty table: {table}")
    if len(set(columns)) != len(columns):
        raise TableError(f"{table} has duplicate column names: {columns}")
    return RawTable(table, columns, rows, parser.problems, used, notes)


def print_warnings(warnings: Sequence[str], limit: int = 10, file: TextIO | None = None) -> None:
    """Print the first ``limit`` warnings as ``warning: ...`` lines (stderr) and how many more."""
    out = file if file is not None else sys.stderr
    for warning in warnings[:limit]:
        print(f"warning: {warning}", file=out)
    if len(warnings) > limit:
        print(f"warning: ... {len(warnings) - limit} more", file=out)


def decode_table(data: bytes, name: str, encoding: str | None = None) -> tuple[str, str, list[str]]:
    """Text of a table file, the encoding used and notes (see the module rules)."""
    if encoding is not None:
        return _decode_as(data, name, encoding), encoding, []
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _decode_as(data, name, codec), codec, []
    nul = data.find(b"\x00")
    if nul >= 0:
        raise TableError(
            f"{name} looks like a binary file, not a text table (NUL byte at line "
            f"{_line_of(data, nul)}); give a CSV/TSV (UTF-8) or Parquet file"
        )
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError as exc:
        where = f"byte 0x{data[exc.start]:02x} at line {_line_of(data, exc.start)}"
    text = _as_cp1252(data)
    if text is None:
        raise TableError(
            f"{name} is not UTF-8 text ({where}) and its encoding is not clear; give it, "
            "e.g. --encoding cp1252, latin-1 or cp1251"
        )
    note = (
        f"{name} is not UTF-8 ({where}); read as cp1252 (Windows Western European). "
        "If accented letters look wrong, give the encoding (--encoding)"
    )
    return text, "cp1252", [note]


def _decode_as(data: bytes, name: str, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except LookupError:
        raise TableError(f"unknown encoding {encoding!r} for {name}") from None
    except UnicodeDecodeError as exc:
        raise TableError(
            f"{name} is not valid {encoding} (byte 0x{data[exc.start]:02x} at line "
            f"{_line_of(data, exc.start)}); give its encoding (--encoding)"
        ) from None
    return text.removeprefix("\ufeff")


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_HIGH_RUN = re.compile(r"[^\x00-\x7f]{3,}")


def _as_cp1252(data: bytes) -> str | None:
    """``data`` as cp1252 when that reading is unambiguous (see the module rules), else None."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d are undefined in cp1252
        return None
    if _CONTROL.search(text) or _HIGH_RUN.search(text):
        return None
    return text


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


class _Parser:
    """Splits decoded text into records, applying the rules of the module docstring."""

    def __init__(
        self, name: str, delimiter: str, extra: ExtraFields, missing: MissingFields
    ) -> None:
        self.name = name
        self.delimiter = delimiter
        self.extra = extra
        self.missing = missing
        self.problems: list[TableProblem] = []
        self.columns: list[str] = []
        self.rows: list[tuple[int, Sequence[object]]] = []

    def parse(self, text: str) -> tuple[list[str], list[tuple[int, Sequence[object]]]]:
        """Header and rows; after a bad record, reading restarts on the line after its first."""
        lines = list(io.StringIO(text, newline=""))
        start: int | None = 0
        while start is not None:
            start = self._parse_from(lines, start)
        return self.columns, self.rows

    def _parse_from(self, lines: list[str], base: int) -> int | None:
        """Read from line index ``base``; where to restart after a bad record (None: at the end).

        Lines inside a bad record are read again from the line after its first; as a quote
        char ends any swallowed field, the spans of bad records hardly overlap.
        """
        reader = csv.reader(
            itertools.islice(lines, base, None), delimiter=self.delimiter, strict=True
        )
        n, rows, done = len(self.columns) or -1, self.rows, 0  # done: lines of finished records
        try:
            for fields in reader:
                span, first = reader.line_num - done, base + done + 1
                if span == 1 and len(fields) == n:  # the common case, kept fast
                    rows.append((first, fields))
                elif span > MAX_RECORD_LINES or (
                    span > 1 and self._swallowed(lines[first - 1 : base + reader.line_num], fields)
                ):
                    self._bad_record(first, span, "")
                    return first
                elif fields and (len(fields) > 1 or fields[0].strip()):  # blank lines: ignored
                    if not self.columns:
                        self.columns = [c.strip() for c in fields]
                        n = len(fields)
                    else:
                        self._add(first, fields)
                done = reader.line_num
        except csv.Error as exc:
            self._bad_record(base + done + 1, reader.line_num - done, str(exc))
            return base + done + 1
        return None

    def _swallowed(self, record: Sequence[str], fields: Sequence[str]) -> bool:
        """Whether a record spanning lines is an unterminated quote that ate whole rows."""
        n = len(self.columns)
        if len(fields) != n:
            return True
        inner = record[1:-1]
        return bool(inner) and all(
            line.strip() and line.count(self.delimiter) == n - 1 for line in inner
        )

    def _bad_record(self, line: int, span: int, error: str) -> None:
        """Report a record with broken quoting (dropped); in the header it is an error."""
        if span > 1 or not error or "end of data" in error:
            kind: ProblemKind = "unterminated_quote"
            text = "a quote opens a field and never closes (it would swallow the next rows)"
        else:
            kind, text = "bad_quote", f"malformed quoting ({error})"
        if not self.columns:
            raise TableError(f"{self.name} line {line}: bad header: {text}")
        self._report(line, kind, False, f"{text}; skipped")

    def _add(self, line: int, fields: list[str]) -> None:
        """Add a row whose field count differs from the header's, fitted or dropped."""
        columns = self.columns
        n, count = len(columns), len(fields)
        head = f"{count} fields for {n} columns"
        if count > n:
            if self.extra == "skip":
                self._report(line, "extra_fields", False, f"{head}; skipped")
                return
            fields = fields[: n - 1] + [self.delimiter.join(fields[n - 1 :])]
            self._report(
                line,
                "extra_fields",
                True,
                f"{head} (unquoted {self.delimiter!r} in the last column); kept, extra fields "
                f"joined into {columns[-1]!r}: {fields[-1]!r}",
            )
        elif count < n:
            if self.missing == "skip":
                self._report(line, "missing_fields", False, f"{head}; skipped")
                return
            self._report(line, "missing_fields", True, f"{head}; missing columns left empty")
            fields = fields + [""] * (n - count)
        self.rows.append((line, fields))

    def _report(self, line: int, kind: ProblemKind, kept: bool, text: str) -> None:
        self.problems.append(TableProblem(line, kind, kept, f"{self.name} line {line}: {text}"))


def _read_parquet(path: Path) -> RawTable:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types for unreadable files
        raise TableError(f"cannot read Parquet file {path}: {exc}") from None
    columns = [str(c) for c in table.column_names]
    data = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows: list[tuple[int, Sequence[object]]] = [
        (i + 1, [col[i] for col in data]) for i in range(table.num_rows)
    ]
    return RawTable(path, columns, rows)
