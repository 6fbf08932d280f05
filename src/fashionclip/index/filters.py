"""Metadata filters: per-column value codes (cached per snapshot) and the row positions a
filter allows.

A filter maps a column to accepted values (``{"gender": ["Women"], "year": [2012]}``), ANDed
across columns. Values are compared by their text form, so the text ``"2012"`` matches the
integer 2012. Filters arrive validated by :class:`fashionclip.index.query.Query`; this module
only evaluates them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fashionclip.data.tables import MetadataValue
from fashionclip.index.snapshot import Snapshot

#: ``column -> (slots, raw values)`` over all products (``Store.column_values``).
ColumnReader = Callable[[str], tuple[np.ndarray, list[Any]]]
#: Per-position codes (-1: dead row), the distinct raw values, and value key -> code.
ColumnCodes = tuple[np.ndarray, list[MetadataValue], dict[object, int]]
#: Candidate arrays cached per snapshot; cleared when it grows past this many filters.
_FILTER_CACHE_SIZE = 256


def value_key(value: object) -> object:
    """Comparable form of a metadata value, so that filter "2012" matches the int 2012."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def column_codes(snap: Snapshot, column: str, read: ColumnReader) -> ColumnCodes:
    """Per-position value codes of one column, built once per snapshot (thread-safe)."""
    cached = snap.column_codes.get(column)
    if cached is not None:
        return cached
    with snap.lock:
        cached = snap.column_codes.get(column)
        if cached is not None:
            return cached
        slots, raw = read(column)
        positions = snap.positions_in(slots)
        codes = np.full(snap.n_rows, -1, dtype=np.int32)
        values: list[MetadataValue] = []
        lookup: dict[object, int] = {}
        row_codes = np.empty(len(raw), dtype=np.int32)
        for i, value in enumerate(raw):
            key = value_key(value)
            code = lookup.get(key)
            if code is None:
                code = lookup[key] = len(values)
                values.append(value)
            row_codes[i] = code
        ok = positions >= 0
        codes[positions[ok]] = row_codes[ok]
        codes[~snap.live] = -1
        cached = (codes, values, lookup)
        snap.column_codes[column] = cached
        return cached


def candidates(
    snap: Snapshot, filters: Mapping[str, Sequence[object]] | None, read: ColumnReader
) -> np.ndarray | None:
    """Sorted positions allowed by ``filters`` (None: no filter, every live row)."""
    if not filters:
        return None
    cache_key = tuple(
        (column, tuple(sorted({str(value_key(v)) for v in filters[column]})))
        for column in sorted(filters)
    )
    cached = snap.filter_cache.get(cache_key)
    if cached is not None:
        return cached
    mask = snap.live.copy()
    for column in sorted(filters):
        codes, _, lookup = column_codes(snap, column, read)
        keys = [value_key(v) for v in filters[column]]
        wanted = [lookup[key] for key in keys if key in lookup]
        if not wanted:
            mask[:] = False
            break
        if len(wanted) == 1:
            mask &= codes == wanted[0]
        else:
            mask &= np.isin(codes, wanted)
    found = np.flatnonzero(mask)
    if len(snap.filter_cache) > _FILTER_CACHE_SIZE:
        snap.filter_cache.clear()
    snap.filter_cache[cache_key] = found
    return found


def value_counts(
    snap: Snapshot,
    column: str,
    read: ColumnReader,
    limit: int | None = None,
    positions: np.ndarray | None = None,
) -> dict[MetadataValue, int]:
    """Distinct non-null values of a column over live rows (or only ``positions``) with
    counts, most frequent first."""
    codes, values, _ = column_codes(snap, column, read)
    if positions is not None:
        codes = codes[positions]
    counts = np.bincount(codes[codes >= 0], minlength=len(values))
    order = np.argsort(-counts, kind="stable")
    facet: dict[MetadataValue, int] = {}
    for code in order:
        if counts[code] == 0 or values[code] is None:
            continue
        facet[values[code]] = int(counts[code])
        if limit is not None and len(facet) >= limit:
            break
    return facet


def filtered_value_counts(
    snap: Snapshot,
    column: str,
    read: ColumnReader,
    filters: Mapping[str, Sequence[object]],
    limit: int | None = None,
) -> dict[MetadataValue, int]:
    """Value counts of ``column`` over the products the *other* columns' filters allow.

    The usual "disjunctive" facet: with ``gender=Women`` chosen, the gender counts still
    list Men (how many a switch would give) while every other column counts Women only.
    """
    others = {c: v for c, v in filters.items() if c != column}
    positions = candidates(snap, others, read)
    counts = value_counts(snap, column, read, None, positions)
    if positions is not None:  # values the filters rule out entirely still get listed, at 0
        for value in value_counts(snap, column, read):
            counts.setdefault(value, 0)
    return dict(list(counts.items())[:limit]) if limit is not None else counts
