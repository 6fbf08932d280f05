"""One search request, validated once: :class:`Query`.

Every caller that searches a catalog (``Catalog.search``, the HTTP service, the CLI) builds a
``Query``; its constructor checks and normalises everything that does not need the catalog
(k, filter shape and values, query text, product id, vector), raising
:class:`~fashionclip.errors.InvalidQueryError` with a message meant for the person who typed
it. What needs the catalog (filter columns, vector dimension) is checked by
:meth:`Query.check_columns` and :func:`unit_vector`, once per catalog the query runs on.
:class:`QueryLimits` carries the bounds: none by default, the service's via ``ServiceLimits``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from fashionclip.errors import InvalidQueryError

FilterValue = str | int | float | bool
#: Search modes: embedding similarity, BM25 over the text index, and their fusion (the
#: default for queries with text; see :mod:`fashionclip.index.hybrid`).
MODES = ("vector", "keyword", "hybrid")
#: Longest product id accepted in a query.
MAX_ID_CHARS = 1024
#: Most understood columns a query may ask to ignore.
MAX_IGNORED = 64
#: Encodes the text or image of a query into a vector (e.g. under a service's model lock).
EncodeHook = Callable[["Query"], Any]


@dataclass(frozen=True)
class QueryLimits:
    """Bounds on a query; None means unbounded."""

    default_k: int = 10
    max_k: int | None = None
    max_query_chars: int | None = None
    max_filter_values: int | None = None


@dataclass(frozen=True, eq=False)
class Query:
    """Exactly one of ``text``, ``image``, ``vector`` or ``like`` (a product id), plus ``k``
    and ``filters`` (column -> accepted values, ANDed across columns). ``text`` may also come
    with ``image`` or ``like``: a composed query ("like 4025, but red").

    ``mode`` is one of :data:`MODES`; None means "hybrid" when there is text, else "vector".
    ``ignore_understood``: columns whose understood values the search must not use (a chip
    the person removed): their soft boost is dropped; never a filter.

    After construction ``text`` is white-space folded, ``vector`` is a unit float32 row,
    ``k`` an int and ``filters`` a dict of column -> list of values (empty: no filter).
    ``exact``: None lets the catalog choose (ANN index when there is one), True forces the
    exact scan, False requires the ANN index.
    """

    text: str | None = None
    image: Any | None = None
    vector: Any | None = None
    like: str | None = None
    k: int | None = None
    filters: Mapping[str, Any] | None = None
    mode: str | None = None
    exact: bool | None = None
    ignore_understood: Collection[str] | None = None
    limits: QueryLimits = field(default_factory=QueryLimits, repr=False)

    def __post_init__(self) -> None:
        composable = self.text is not None and (self.image is not None or self.like is not None)
        if composable:
            require_one_input(self.image, self.vector, self.like)
        else:
            require_one_input(self.text, self.image, self.vector, self.like)
        limits = self.limits
        set_ = object.__setattr__
        set_(self, "mode", check_mode(self.mode, self.text is not None))
        if self.text is not None:
            set_(self, "text", check_text(self.text, limits.max_query_chars))
        if self.like is not None:
            set_(self, "like", check_id(self.like))
        set_(self, "k", check_k(self.k, limits))
        set_(self, "filters", check_filters(self.filters, limits.max_filter_values))
        set_(self, "ignore_understood", check_ignored(self.ignore_understood))
        if self.vector is not None:
            set_(self, "vector", unit_vector(self.vector))
        if isinstance(self.image, PurePath):
            set_(self, "image", str(self.image))

    @property
    def kind(self) -> str:
        """ "text", "image", "vector" or "like" (a composed query: its image or product)."""
        for name in ("like", "image", "vector", "text"):
            if getattr(self, name) is not None:
                return name
        raise AssertionError("unreachable: a query has exactly one input")

    def part(self, name: str) -> Query:
        """This query's ``name`` input ("text" or "image") alone: what an encode hook gets
        for each half of a composed query (the query itself when it is not composed)."""
        if self.kind == name and (name == "text" or self.text is None):
            return self
        return Query(**{name: getattr(self, name)}, mode="vector")

    @property
    def needs_encoding(self) -> bool:
        return self.text is not None or self.image is not None

    @property
    def filter_values(self) -> dict[str, list[FilterValue]]:
        """The checked filters (column -> values); empty without filters."""
        return dict(self.filters or {})

    def check_columns(self, columns: Collection[str], where: str = "catalog") -> None:
        """Raise :class:`InvalidQueryError` naming the known columns when a filter column is
        not one of ``columns`` (the catalog's metadata columns)."""
        check_columns(list(self.filters or {}), columns, where)


def require_one_input(*inputs: object) -> None:
    """Exactly one of the query inputs (text, image, vector, like) must be given."""
    if sum(x is not None for x in inputs) != 1:
        raise InvalidQueryError(
            "give exactly one of: a text or image query, image=, like= or vector="
        )


def check_mode(mode: object, has_text: bool) -> str:
    """The search mode (None: "hybrid" with text, else "vector"); keyword and hybrid need text."""
    if mode is None:
        return "hybrid" if has_text else "vector"
    if mode not in MODES:
        raise InvalidQueryError(f"unknown search mode {mode!r}; the modes are: {', '.join(MODES)}")
    if mode != "vector" and not has_text:
        raise InvalidQueryError(f"search mode {mode!r} needs query text (words to search for)")
    return str(mode)


def check_columns(names: Collection[str], columns: Collection[str], where: str = "catalog") -> None:
    """InvalidQueryError naming the known ``columns`` when one of ``names`` is not one."""
    unknown = [c for c in names if c not in columns]
    if unknown:
        listed = ", ".join(map(repr, unknown))
        plural = "s" if len(unknown) > 1 else ""
        known = ", ".join(columns) or "(none: the catalog has no metadata)"
        prefix = "" if where == "catalog" else f"the {where} has no such column; "
        raise InvalidQueryError(
            f"unknown filter column{plural} {listed}; {prefix}known columns: {known}"
        )


def check_k(k: object, limits: QueryLimits) -> int:
    """``k`` as an int in 1..max_k (None: the default)."""
    if k is None:
        return limits.default_k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidQueryError(f"k must be a positive integer, got {k!r}")
    if limits.max_k is not None and not 1 <= int(k) <= limits.max_k:
        raise InvalidQueryError(f"k must be between 1 and {limits.max_k}, got {k}")
    if k <= 0:
        raise InvalidQueryError(f"k must be a positive integer, got {k}")
    return int(k)


def check_text(text: object, max_chars: int | None = None) -> str:
    """Query text with white space folded; not empty, at most ``max_chars`` characters."""
    if not isinstance(text, str):
        raise InvalidQueryError("the query must be a string")
    folded = " ".join(text.split())
    if not folded:
        raise InvalidQueryError("the query text is empty")
    if max_chars is not None and len(folded) > max_chars:
        raise InvalidQueryError(f"the query is {len(folded)} characters; the limit is {max_chars}")
    return folded


def check_id(product_id: object) -> str:
    """A product id: a non-empty string of at most 1024 characters."""
    if not isinstance(product_id, str) or not product_id:
        raise InvalidQueryError("the product id must be a non-empty string")
    if len(product_id) > MAX_ID_CHARS:
        raise InvalidQueryError(f"the product id is longer than {MAX_ID_CHARS} characters")
    return product_id


def check_ignored(columns: object) -> tuple[str, ...]:
    """Column names (a string or a list of them) whose understood values are not used."""
    if columns is None:
        return ()
    names = [columns] if isinstance(columns, str) else columns
    if not isinstance(names, list | tuple | set | frozenset) or not all(
        isinstance(c, str) and 0 < len(c) <= MAX_ID_CHARS for c in names
    ):
        raise InvalidQueryError("ignore_understood must be a list of column names")
    if len(names) > MAX_IGNORED:
        raise InvalidQueryError(f"ignore_understood lists more than {MAX_IGNORED} columns")
    return tuple(dict.fromkeys(sorted(names)))


def check_filters(filters: object, max_values: int | None = None) -> dict[str, list[FilterValue]]:
    """``{column: [values]}`` from a mapping of column -> value or list of values."""
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise InvalidQueryError(
            "filters must be a mapping of a column to a value or a list of values, "
            'e.g. {"gender": "Women", "articleType": ["Heels", "Flats"]}'
        )
    checked: dict[str, list[FilterValue]] = {}
    for column, raw in filters.items():
        if not isinstance(column, str):
            raise InvalidQueryError(f"filter column names must be strings, got {column!r}")
        values = list(raw) if isinstance(raw, (list, tuple, set, frozenset)) else [raw]
        if not values:
            raise InvalidQueryError(
                f"the filter on {column!r} lists no values (an empty list matches nothing)"
            )
        if max_values is not None and len(values) > max_values:
            raise InvalidQueryError(
                f"the filter on {column!r} lists {len(values)} values; the limit is {max_values}"
            )
        checked[column] = [_check_value(column, value) for value in values]
    return checked


def _check_value(column: str, value: object) -> FilterValue:
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (str, int, float, bool)) or (
        isinstance(value, float) and not np.isfinite(value)
    ):
        raise InvalidQueryError(
            f"filter values must be strings or numbers; {column!r} has {value!r}"
        )
    return value


def check_dimension(q: np.ndarray, dim: int) -> np.ndarray:
    """``q`` when it has ``dim`` components (the catalog's), else InvalidQueryError."""
    if q.shape[0] != dim:
        raise InvalidQueryError(f"query vector has dimension {q.shape[0]}, catalog has {dim}")
    return q


def unit_vector(value: Any, dim: int | None = None) -> np.ndarray:
    """A query vector as a float32 unit row; checks its dimension when ``dim`` is given."""
    q = np.asarray(value, dtype=np.float32).reshape(-1)
    if dim is not None:
        check_dimension(q, dim)
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidQueryError("query vector is zero or not finite")
    return q / norm
