"""``Catalog.traverse``: a comparative walk ("like this, but darker") over a catalog.

The numbers live in :mod:`fashionclip.index.traverse`; this module finds them in a catalog's
snapshot: the seed's vector, the candidate rows allowed by the filters (and by ``keep``, the
seed's own value of a column), the phrases' direction — with ``keep``, GradREC's direction is
estimated within each value of the kept column; cached per catalog generation, model
fingerprint, phrase pair, method, ``start_n`` / ``end_n`` and that column — and the seed's
nearest products further along it, then turns the walk's positions into :class:`SearchResult`
steps.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fashionclip.errors import InvalidQueryError
from fashionclip.index import filters as filtering
from fashionclip.index.query import check_columns, check_filters
from fashionclip.index.snapshot import Snapshot
from fashionclip.index.traverse import (
    WalkSettings,
    arithmetic_direction,
    check_method,
    check_phrases,
    gradrec_from_sets,
    gradrec_within,
    top,
    walk,
    within_sets,
)
from fashionclip.index.types import SearchResult

if TYPE_CHECKING:
    from fashionclip.index.catalog import Catalog

#: ``encode_texts(list_of_prompts) -> (n, D)`` unit rows, e.g. ``model.encode_text``.
TextEncoder = Callable[[list[str]], np.ndarray]


class DirectionCache:
    """Directions by (catalog, generation, model, phrases, method, start_n, end_n); LRU."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> np.ndarray | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], direction: np.ndarray) -> None:
        with self._lock:
            self._items[key] = direction
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


DIRECTIONS = DirectionCache()
_DEFAULT = WalkSettings()


def traverse(
    catalog: Catalog,
    product_id: str,
    start: str = "light",
    end: str = "dark",
    *,
    steps: int = _DEFAULT.steps,
    per_step: int = _DEFAULT.per_step,
    step_size: float | None = _DEFAULT.step_size,
    neighbourhood: int = _DEFAULT.neighbourhood,
    start_n: int = _DEFAULT.start_n,
    end_n: int = _DEFAULT.end_n,
    filters: Mapping[str, Any] | None = None,
    keep: str | None = None,
    method: str = "gradrec",
    encode_texts: TextEncoder | None = None,
) -> list[list[SearchResult]]:
    """Steps from ``product_id`` along ``start`` -> ``end``, each a list of results.

    ``steps`` steps of up to ``per_step`` products, none shown twice, the seed never, nor two
    products of one picture (byte-identical images, by content hash) or the seed's picture; see
    :class:`~fashionclip.index.traverse.WalkSettings` for ``step_size``, ``neighbourhood``,
    ``start_n`` and ``end_n``. ``filters`` limit what may be shown (as in search); ``keep``
    names a column whose value must stay the seed's (``keep="articleType"``); GradREC's
    direction is then estimated within each value of that column. ``method``: ``"gradrec"``
    (default) or ``"arithmetic"`` (text-vector difference, the baseline).
    ``encode_texts`` encodes the prompts (default: the catalog's model).
    """
    start, end = check_phrases(start, end)
    method = check_method(method)
    settings = WalkSettings(steps, per_step, step_size, neighbourhood, start_n, end_n)
    snap, seed_position = catalog._position_of(str(product_id))
    settings.check(snap.n_live, needs_population=method == "gradrec")
    wanted = check_filters(filters)
    if keep is not None:
        wanted[keep] = _kept(catalog, str(product_id), keep, snap.columns, wanted.get(keep))
    check_columns(list(wanted), snap.columns)
    candidates = filtering.candidates(snap, wanted, catalog.store.column_values)
    direction = direction_for(catalog, snap, start, end, method, settings, encode_texts, keep)
    seed = snap.vector_at(seed_position)
    pool = _pool(snap, seed, seed_position, direction, candidates, settings.neighbourhood)
    pool = _one_per_picture(catalog, snap, seed_position, pool)
    path = walk(seed, _rows(snap, pool), direction, settings)
    found: list[list[SearchResult]] = []
    for step in path:
        positions = np.array([pool[i] for i, _ in step], np.int64)
        scores = np.array([score for _, score in step], np.float32)
        found.append(catalog._results(snap, positions, scores))
    return found


def direction_for(
    catalog: Catalog,
    snap: Snapshot,
    start: str,
    end: str,
    method: str,
    settings: WalkSettings,
    encode_texts: TextEncoder | None = None,
    within: str | None = None,
) -> np.ndarray:
    """The unit direction start -> end for this catalog generation, from the cache if there.

    ``within``: a column (the kept one); GradREC's direction is then estimated within each of
    its values (:func:`~fashionclip.index.traverse.gradrec_within`), else over the catalog.
    """
    from fashionclip.models.prompts import ENSEMBLE_TEMPLATES, build_zero_shot_classifier

    key = (
        str(catalog.path.resolve()),
        snap.generation,
        catalog.model_identity.fingerprint,
        start,
        end,
        method,
        settings.start_n,
        settings.end_n,
        within if method == "gradrec" else None,
    )
    cached = DIRECTIONS.get(key)
    if cached is not None:
        return cached
    encode = encode_texts or catalog._require_model("walk from a phrase to another").encode_text
    phrases = build_zero_shot_classifier(encode, [start, end], ENSEMBLE_TEMPLATES)
    if phrases.shape[1] != snap.dim:
        raise InvalidQueryError(
            f"the phrases embed to {phrases.shape[1]} dimensions; the catalog holds {snap.dim}"
        )
    if method == "arithmetic":
        direction = arithmetic_direction(phrases[0], phrases[1])
    else:
        scores = _score_all(snap, phrases)
        scores[~snap.live] = -np.inf
        found = None if within is None else _within(catalog, snap, scores, within)
        if found is None:
            exemplars = _rows(snap, top(scores[:, 0], settings.start_n))
            population = _rows(snap, top(scores[:, 1], settings.end_n))
            found = gradrec_from_sets(exemplars, population)
        direction = found
    DIRECTIONS.put(key, direction)
    return direction


def _within(catalog: Catalog, snap: Snapshot, scores: np.ndarray, column: str) -> np.ndarray | None:
    """GradREC's direction within each value of ``column``; None when no value has enough
    products (the caller then falls back to the catalog-wide direction)."""
    codes, values, _ = filtering.column_codes(snap, column, catalog.store.column_values)
    missing = np.array([value is None or value == "" for value in values] + [True])
    groups = np.where(missing[codes], -1, codes)  # code -1 (dead row) indexes the last True
    sets = within_sets(scores, groups)
    return gradrec_within((_rows(snap, e), _rows(snap, p)) for e, p in sets)


def _kept(
    catalog: Catalog,
    product_id: str,
    column: str,
    columns: Sequence[str],
    filtered: Sequence[Any] | None,
) -> list[Any]:
    """The filter values for ``keep=column``: the seed's value, and only if a filter on the
    same column (``filtered``) allows it too (else none: nothing may be shown). Clear errors
    when the seed has no value."""
    check_columns([column], columns)
    product = catalog.get(product_id)
    value = None if product is None else product.metadata.get(column)
    if value is None or value == "":
        raise InvalidQueryError(f"product {product_id!r} has no {column!r} value to keep")
    if filtered is not None and filtering.value_key(value) not in {
        filtering.value_key(v) for v in filtered
    }:
        return []
    return [value]


def _pool(
    snap: Snapshot,
    seed: np.ndarray,
    seed_position: int,
    direction: np.ndarray,
    candidates: np.ndarray | None,
    size: int,
) -> np.ndarray:
    """Positions of the ``size`` products nearest the seed among those further along."""
    scores = _score_all(snap, np.stack([seed, direction]))
    allowed = snap.live.copy()
    if candidates is not None:
        allowed[:] = False
        allowed[candidates] = True
    allowed[seed_position] = False
    allowed &= scores[:, 1] > float(seed @ direction)
    similarity = np.where(allowed, scores[:, 0], -np.inf)
    found = top(similarity, min(size, int(allowed.sum())))
    return found.astype(np.int64)


def _one_per_picture(
    catalog: Catalog, snap: Snapshot, seed_position: int, pool: np.ndarray
) -> np.ndarray:
    """The pool without a second product of one picture (byte-identical images under other
    ids: the nearest is kept) and without the seed's own picture: to the eye they are the same
    product, and the seed's is no step further. Products without a content hash all stay."""
    positions = np.concatenate([[seed_position], pool]).astype(np.int64)
    slots = [int(s) for s in snap.slots_of_positions(positions)]
    stored = catalog.store.products_at(slots)
    seen: set[str] = set()
    keep = np.ones(len(positions), dtype=bool)
    for i, slot in enumerate(slots):  # the seed first: its picture is seen before any other
        row = stored.get(slot)
        picture = row.content_hash if row is not None else None
        if picture:
            keep[i] = picture not in seen
            seen.add(picture)
    return pool[keep[1:]]


def _score_all(snap: Snapshot, queries: np.ndarray) -> np.ndarray:
    """(n_rows, n_queries) dot products of every row of the snapshot (dead rows included)."""
    queries = np.asarray(queries, np.float32)
    out = np.empty((snap.n_rows, len(queries)), np.float32)
    for seg in snap.segments:
        # einsum, not BLAS: see backends/exact.py on threaded BLAS stalls under load
        np.einsum("ij,kj->ik", seg.vectors, queries, out=out[seg.offset : seg.offset + seg.n_rows])
    return out


def _rows(snap: Snapshot, positions: np.ndarray) -> np.ndarray:
    """The vectors at ``positions`` (any order), as a float32 array."""
    positions = np.asarray(positions, np.int64)
    out = np.empty((len(positions), snap.dim), np.float32)
    for seg in snap.segments:
        inside = (positions >= seg.offset) & (positions < seg.offset + seg.n_rows)
        if inside.any():
            out[inside] = seg.vectors[positions[inside] - seg.offset]
    return out
