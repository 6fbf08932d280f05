"""The catalog's full-text index: SQLite FTS5 over chosen metadata columns, kept in step by
triggers.

Layout (inside ``catalog.sqlite``, next to the products table)::

    product_text          FTS5 table, rowid = product slot, one column per indexed field
                          (tokenizer: porter stemming over unicode61, diacritics removed)
    fc_text_ai/_au/_ad    triggers on products: insert / update of slot or metadata / delete
    meta "text_index"     {"fields": [[column, weight], ...], "auto": bool, "built_at": ...}

Why triggers: every write to ``products`` (``Store.commit_batch``, ``merge_segments``,
``remove_products``, and even an older fashionclip that knows nothing of this table) updates
the text rows inside the *same* SQLite transaction, so a crash can never leave the text index
and the vectors disagreeing, and adding 10,000 products touches only their 10,000 text rows.
A catalog created before the text index existed gets it on first use (:meth:`TextIndex.ensure`)
or from ``fashionclip text-index``; building is one write transaction.

Query text is never passed to FTS5 as syntax: :func:`match_expression` keeps only words
(letters and digits) and quotes each one, so quotes, AND/OR/NEAR, ``*``, ``-``, parentheses
and ``:`` are searched as the words they contain.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError
from fashionclip.index.store import Store, now_iso

TABLE = "product_text"
META_KEY = "text_index"
TOKENIZER = "porter unicode61 remove_diacritics 2"
#: Columns with at most this many distinct values are "attributes" (weight 1); above it a
#: column is free text such as a product name (weight NAME_WEIGHT).
MAX_ATTRIBUTE_VALUES = 300
NAME_WEIGHT = 1.0
#: Words longer than this are cut (FTS5 tokens are bounded anyway); at most MAX_TERMS words.
MAX_WORD_CHARS = 64
#: Query words matching more than this share of the products are not searched (see search).
MAX_DF_FRACTION = 0.2
MIN_PRUNE_PRODUCTS = 1000
MAX_TERMS = 32
#: English words that carry no product information in a shopping query.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "show",
        "some",
        "that",
        "the",
        "to",
        "with",
        "without",
        "want",
        "looking",
        "need",
    ]
)
#: A word: letters and digits (any script), nothing else.
WORD = re.compile(r"[^\W_]+", re.UNICODE)


class TextIndexError(FashionCLIPError):
    """The text index cannot be built (e.g. a read-only catalog) or SQLite lacks FTS5."""


@dataclass(frozen=True)
class TextFields:
    """Indexed columns with their BM25 weights, and whether they were chosen automatically
    (then a new metadata column makes the next search rebuild the index)."""

    fields: tuple[tuple[str, float], ...]
    auto: bool = True

    @property
    def columns(self) -> list[str]:
        return [c for c, _ in self.fields]

    def to_meta(self) -> dict[str, Any]:
        return {"fields": [[c, w] for c, w in self.fields], "auto": self.auto}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TextFields:
        return cls(tuple((str(c), float(w)) for c, w in meta["fields"]), bool(meta["auto"]))


def query_words(text: str) -> list[str]:
    """The words of a query (lower case, no stop words), at most MAX_TERMS of them."""
    words = [w.lower()[:MAX_WORD_CHARS] for w in WORD.findall(text)]
    words = [w for w in words if w != "s"]  # "men's" -> "men", not "men" and "s"
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))[:MAX_TERMS]


def match_expression(text: str) -> str | None:
    """An FTS5 MATCH expression: every word quoted, ORed (None when there is no word)."""
    words = query_words(text)
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def _json_path(column: str) -> str:
    return '$."' + column.replace('"', '""') + '"'


class TextIndex:
    """SQL of the FTS5 text index of one catalog's :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._df: dict[str, int] = {}
        self._df_products = 0

    def fields(self) -> TextFields | None:
        """The indexed fields, or None when the catalog has no text index yet."""
        meta = self._store.get_meta(META_KEY)
        return TextFields.from_meta(meta) if isinstance(meta, dict) else None

    def auto_fields(self, columns: Sequence[str]) -> TextFields:
        """Every metadata column: attributes at weight 1, free-text columns at NAME_WEIGHT."""
        con = self._store.connection()
        fields = []
        for column in columns:
            (distinct,) = con.execute(
                "SELECT COUNT(DISTINCT json_extract(metadata, ?)) FROM products",
                (_json_path(column),),
            ).fetchone()
            fields.append((column, NAME_WEIGHT if distinct > MAX_ATTRIBUTE_VALUES else 1.0))
        return TextFields(tuple(fields), auto=True)

    def ensure(self) -> TextFields:
        """The text index, built first when missing or when automatic fields miss a column."""
        current = self.fields()
        columns = self._store.columns()
        if current is not None and (not current.auto or set(columns) <= set(current.columns)):
            return current
        return self.build(None)

    def build(self, fields: Mapping[str, float] | None = None) -> TextFields:
        """(Re)build the index over ``fields`` (column -> weight; None: every column) in one
        write transaction: table, triggers, all rows and the meta record together."""
        chosen = (
            self.auto_fields(self._store.columns())
            if fields is None
            else TextFields(tuple((str(c), float(w)) for c, w in fields.items()), auto=False)
        )
        if not chosen.fields:
            chosen = TextFields((("", 1.0),), auto=True)  # an empty catalog: one empty field
        if any(w < 0 for _, w in chosen.fields):
            raise TextIndexError("text index weights must be >= 0")
        try:
            with self._store.write() as con:
                self._drop(con)
                self._create(con, chosen)
                self._store.set_meta(con, META_KEY, {**chosen.to_meta(), "built_at": now_iso()})
        except sqlite3.OperationalError as exc:
            raise TextIndexError(f"cannot build the catalog's text index: {exc}") from None
        return chosen

    def drop(self) -> None:
        """Remove the text index (table, triggers, meta record)."""
        with self._store.write() as con:
            self._drop(con)
            con.execute("DELETE FROM meta WHERE key = ?", (META_KEY,))

    @staticmethod
    def _drop(con: sqlite3.Connection) -> None:
        for suffix in ("ai", "au", "ad"):
            con.execute(f"DROP TRIGGER IF EXISTS fc_text_{suffix}")
        con.execute(f"DROP TABLE IF EXISTS {TABLE}")

    @staticmethod
    def _create(con: sqlite3.Connection, chosen: TextFields) -> None:
        names = [f"f{i}" for i in range(len(chosen.fields))]
        con.execute(
            f"CREATE VIRTUAL TABLE {TABLE} USING fts5({', '.join(names)}, tokenize = '{TOKENIZER}')"
        )
        # Column paths are written into the trigger text as SQL string literals.
        paths = ["'" + _json_path(c).replace("'", "''") + "'" for c in chosen.columns]
        values = ", ".join(f"json_extract(new.metadata, {p})" for p in paths)
        insert = f"INSERT INTO {TABLE}(rowid, {', '.join(names)}) VALUES (new.slot, {values});"
        delete = f"DELETE FROM {TABLE} WHERE rowid = old.slot;"
        con.execute(f"CREATE TRIGGER fc_text_ai AFTER INSERT ON products BEGIN {insert} END")
        con.execute(f"CREATE TRIGGER fc_text_ad AFTER DELETE ON products BEGIN {delete} END")
        con.execute(
            "CREATE TRIGGER fc_text_au AFTER UPDATE OF slot, metadata ON products "
            f"BEGIN {delete} {insert} END"
        )
        selected = ", ".join(f"json_extract(metadata, {p})" for p in paths)
        con.execute(
            f"INSERT INTO {TABLE}(rowid, {', '.join(names)}) SELECT slot, {selected} FROM products"
        )

    def search(
        self,
        text: str,
        limit: int | None,
        n_products: int = 0,
        max_df: float = MAX_DF_FRACTION,
        keep_rarest: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(slots, scores)`` of the products matching any word of ``text``, best first
        (score = -bm25, higher is better); at most ``limit`` (None: all). Words found in more
        than ``max_df`` of ``n_products`` are left out (BM25 gives them little weight and
        scoring their many matches is what makes an FTS5 query slow: about 3 us per matching
        row), unless every word is that common (then, with ``keep_rarest``, the rarest one
        is kept)."""
        fields = self.ensure()
        words = self._informative(text, n_products, max_df, keep_rarest)
        expression = match_expression(" ".join(words))
        if expression is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        weights = ", ".join(repr(float(w)) for _, w in fields.fields)
        sql = (
            f"SELECT rowid, -bm25({TABLE}, {weights}) AS s FROM {TABLE} "
            f"WHERE {TABLE} MATCH ? ORDER BY s DESC"
        )
        params: list[Any] = [expression]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        try:
            rows = self._store.connection().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:  # never expected: the expression is quoted
            raise TextIndexError(f"text search failed: {exc}") from None
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        data = np.array(rows, dtype=np.float64)
        return data[:, 0].astype(np.int64), data[:, 1].astype(np.float32)

    def _informative(
        self, text: str, n_products: int, max_df: float, keep_rarest: bool
    ) -> list[str]:
        words = query_words(text)
        if n_products < MIN_PRUNE_PRODUCTS or (len(words) < 2 and keep_rarest):
            return words  # pruning is for speed: small catalogs search every word
        if abs(n_products - self._df_products) > 0.1 * max(1, self._df_products):
            self._df.clear()  # document frequencies are cached until the catalog grows 10%
            self._df_products = n_products
        for word in words:
            if word not in self._df:
                self._df[word] = self.document_frequency(word)
        kept = [w for w in words if self._df[w] <= max_df * n_products]
        if kept or not keep_rarest or not words:
            return kept
        return [min(words, key=lambda w: self._df[w])]

    def document_frequency(self, word: str) -> int:
        """How many products' text holds ``word`` (porter-stemmed, as searched); not cached."""
        expression = match_expression(word)
        if expression is None:
            return 0
        sql = f"SELECT COUNT(*) FROM {TABLE} WHERE {TABLE} MATCH ?"
        return int(self._store.connection().execute(sql, (expression,)).fetchone()[0])

    def contains(self, word: str) -> bool:
        """Whether any product's text holds ``word`` (one row read, however common it is)."""
        expression = match_expression(word)
        if expression is None:
            return False
        self.ensure()
        sql = f"SELECT 1 FROM {TABLE} WHERE {TABLE} MATCH ? LIMIT 1"
        return self._store.connection().execute(sql, (expression,)).fetchone() is not None

    def row_count(self) -> int:
        """Rows in the text index (equals the product count when consistent)."""
        if self.fields() is None:
            return 0
        (n,) = self._store.connection().execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()
        return int(n)

    def disagreement(self) -> tuple[int, int]:
        """``(products without a text row, text rows without a product)``: (0, 0) when the
        index is current. Raises ``sqlite3.DatabaseError`` when the table is unreadable."""
        con = self._store.connection()
        (missing,) = con.execute(
            f"SELECT COUNT(*) FROM products WHERE slot NOT IN (SELECT rowid FROM {TABLE})"
        ).fetchone()
        (stale,) = con.execute(
            f"SELECT COUNT(*) FROM {TABLE} WHERE rowid NOT IN (SELECT slot FROM products)"
        ).fetchone()
        return int(missing), int(stale)
