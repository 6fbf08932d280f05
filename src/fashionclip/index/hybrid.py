"""Keyword and hybrid search: BM25 (the catalog's FTS5 text index) fused with the vector
ranking, plus soft boosts from the understood query.

A hybrid query ranks the union of several lists of ``depth`` products each:

- the vector ranking (the model's cosine similarity; the filters apply);
- the keyword ranking (BM25 over the text index; the filters apply);
- the *attribute* ranking: the vector ranking restricted to the products that carry every
  understood value ("red dress" -> baseColour Red and articleType Dresses), when any exist;
- with two or more understood columns, one such ranking per column (weight ``columns``).

The lists are fused by reciprocal rank (``fusion="rrf"``: sum of ``w / (rrf_k + rank)``) or by
min-max normalised scores (``fusion="score"``), and every pooled product gains ``boost`` times
the (weighted) fraction of understood columns it matches; with ``adaptive``, a column weighs
the share of the vector ranking that misses its value (see :func:`column_needs`). Understood values are never filters: a product
that matches none of them still ranks when its vector or its words are close. The weights
(:data:`DEFAULT_WEIGHTS`) were chosen on the dev queries of ``data/search_queries.jsonl`` with
``benchmarks/hybrid_search.py``; see docs/design.md.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fashionclip.errors import InvalidQueryError
from fashionclip.index import filters as filtering
from fashionclip.index.backends.exact import GATHER_FRACTION
from fashionclip.index.query import Query, check_dimension, unit_vector
from fashionclip.index.snapshot import Snapshot
from fashionclip.index.store import Store
from fashionclip.index.text import MAX_DF_FRACTION, TextIndex
from fashionclip.index.understand import Understood, Vocabulary, chips

#: Runs keyword queries next to the vector scan (see HybridSearch.search).
_KEYWORD_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fashionclip-keyword")
#: ``(n, candidates) -> (positions, scores)``: the vector ranking, best first.
VectorSearch = Callable[[int, "np.ndarray | None"], tuple[np.ndarray, np.ndarray]]
FUSIONS = ("rrf", "score")
#: Words whose presence in the catalog's text is remembered (per generation) before starting over.
_MAX_WORDS = 10_000
#: RRF constant of Cormack et al. (2009); also the evaluation harness's fusion.
RRF_K = 60
#: Weight of the words' vector in a composed query ("like 4025, but red"): product + w * text.
COMPOSE_TEXT_WEIGHT = 1.0


@dataclass(frozen=True)
class FusionWeights:
    """How hybrid search fuses its lists (see the module docstring)."""

    fusion: str = "rrf"
    vector: float = 1.0
    keyword: float = 1.0
    attributes: float = 1.0
    columns: float = 0.0
    boost: float = 0.0
    adaptive: bool = False
    depth: int = 100
    deep: int = 1000
    #: Hybrid leaves out words in more than this share of products from its keyword list
    #: (speed; the understood query covers such catalog words). Keyword mode keeps all.
    keyword_max_df: float = MAX_DF_FRACTION
    rrf_k: int = RRF_K

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise InvalidQueryError(f"unknown fusion {self.fusion!r}; known: {FUSIONS}")
        if self.depth < 1 or self.rrf_k < 0:
            raise InvalidQueryError("fusion depth must be >= 1 and rrf_k >= 0")

    def with_(self, **changes: Any) -> FusionWeights:
        return replace(self, **changes)


#: Chosen on the dev queries only (``benchmarks/hybrid_search.py quality --select``: 288
#: configurations ranked by dev macro P@10, then the top-10 colour count of the dev colour
#: queries, then nDCG@10; ties broken towards fewer lists). Never tuned on test queries.
DEFAULT_WEIGHTS = FusionWeights(
    fusion="score", vector=0.5, keyword=1.0, attributes=0.5, columns=0.0, boost=4.0, adaptive=True
)


class HybridSearch:
    """Keyword ranking, query understanding and fusion over one catalog's store."""

    def __init__(self, store: Store, weights: FusionWeights = DEFAULT_WEIGHTS) -> None:
        self._store = store
        self.text = TextIndex(store)
        self.weights = weights
        self._vocab: tuple[int, Vocabulary] | None = None
        self._words: tuple[int, dict[str, bool]] | None = None
        self._lock = threading.Lock()

    # -- understanding -------------------------------------------------------------------------

    def vocabulary(self, snap: Snapshot) -> Vocabulary:
        """The attribute values of ``snap`` as a vocabulary (cached per generation)."""
        cached = self._vocab
        if cached is not None and cached[0] == snap.generation:
            return cached[1]
        with self._lock:
            cached = self._vocab
            if cached is None or cached[0] != snap.generation:
                values = {
                    column: filtering.column_codes(snap, column, self._read)[1]
                    for column in snap.columns
                }
                cached = self._vocab = (snap.generation, Vocabulary.build(values))
        return cached[1]

    def understand(self, snap: Snapshot, text: str, ignore: Collection[str] = ()) -> Understood:
        """The understood query, without the columns in ``ignore``; a word the catalog's own
        text holds (a brand such as "Jackie") is never read as a misspelling ("jacket")."""
        found = self.vocabulary(snap).understand(text, self._catalog_words(snap))
        return {c: v for c, v in found.items() if c not in ignore}

    def _catalog_words(self, snap: Snapshot) -> Callable[[str], bool]:
        """``word -> whether a product's text holds it``, cached per catalog generation."""
        cached = self._words
        if cached is None or cached[0] != snap.generation or len(cached[1]) > _MAX_WORDS:
            cached = self._words = (snap.generation, {})
        known = cached[1]

        def holds(word: str) -> bool:
            if word not in known:
                known[word] = self.text.contains(word)
            return known[word]

        return holds

    # -- rankings ------------------------------------------------------------------------------

    def keyword(
        self,
        snap: Snapshot,
        text: str,
        n: int,
        candidates: np.ndarray | None,
        exclude: int | None = None,
        max_df: float = 1.0,
        keep_rarest: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The BM25 ranking (positions, scores) of live products, filters applied, best first
        (words in more than ``max_df`` of the products are not searched, see TextIndex)."""
        limited = candidates is None and exclude is None
        slots, scores = self.text.search(
            text, n if limited else None, snap.n_live, max_df, keep_rarest
        )
        positions = snap.positions_in(slots)
        keep = positions >= 0
        keep[keep] &= snap.live[positions[keep]]
        if candidates is not None:
            keep &= np.isin(positions, candidates)
        if exclude is not None:
            keep &= positions != exclude
        return positions[keep][:n], scores[keep][:n]

    def column_matches(self, snap: Snapshot, understood: Understood) -> dict[str, np.ndarray]:
        """Per understood column, a boolean per position: carries one of its values."""
        out = {}
        for column, values in understood.items():
            codes, _, lookup = filtering.column_codes(snap, column, self._read)
            wanted = [lookup[k] for k in map(filtering.value_key, values) if k in lookup]
            out[column] = np.isin(codes, wanted) & snap.live
        return out

    def search(
        self,
        snap: Snapshot,
        text: str,
        k: int,
        vector_search: VectorSearch,
        candidates: np.ndarray | None,
        exclude: int | None = None,
        ignore: Collection[str] = (),
    ) -> Ranked:
        """The fused top ``k``; the understood columns in ``ignore`` are left out (no
        attribute list, no boost; never a filter)."""
        w = self.weights
        n = max(w.depth, k)
        understood = self.understand(snap, text, ignore)
        # The keyword query runs in a worker thread while the vector pass runs here: SQLite
        # and numpy's scan both release the GIL, so on two free cores they overlap.
        pending = (
            _KEYWORD_POOL.submit(
                self.keyword, snap, text, n, candidates, exclude, w.keyword_max_df, False
            )
            if w.keyword > 0
            else None
        )
        # One deep vector pass; the attribute rankings are read from it (no second scan)
        # unless it holds too few of their products and those are few enough to gather.
        deep = vector_search(max(n, w.deep), candidates) if understood else None
        vector = (deep[0][:n], deep[1][:n]) if deep else vector_search(n, candidates)
        lists: list[tuple[float, np.ndarray, np.ndarray]] = [(w.vector, *vector)]
        if pending is not None:
            lists.append((w.keyword, *pending.result()))
        matches, carry_all = _relaxed(self.column_matches(snap, understood))
        need = column_needs(matches, vector[0], w.adaptive)
        masks: list[tuple[float, np.ndarray]] = []
        if carry_all is not None and w.attributes > 0:
            masks.append((w.attributes, carry_all))
        if w.columns > 0 and len(matches) > 1:
            masks += [(w.columns * need[c], m) for c, m in matches.items() if need[c] > 0]
        for weight, mask in masks:
            ranked = self._restricted(snap, mask, deep, n, vector_search, candidates, exclude)
            if len(ranked[0]):
                lists.append((weight, *ranked))
        positions, fused = fuse(lists, w)
        if matches and w.boost > 0 and len(positions):
            unit = 1.0 / (w.rrf_k + 1) if w.fusion == "rrf" else 1.0
            total = sum(need.values()) or 1.0
            gain = sum(need[c] * m[positions] for c, m in matches.items()) / total
            fused = fused + w.boost * unit * gain
        order = np.lexsort((positions, -fused))[:k]
        set_aside = tuple(c for c in understood if c not in matches)
        return Ranked(positions[order], fused[order].astype(np.float32), understood, set_aside)

    def _restricted(
        self,
        snap: Snapshot,
        mask: np.ndarray,
        deep: tuple[np.ndarray, np.ndarray] | None,
        n: int,
        vector_search: VectorSearch,
        candidates: np.ndarray | None,
        exclude: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The vector ranking of the products in ``mask`` (top ``n``)."""
        if deep is not None:
            inside = mask[deep[0]]
            if inside.sum() >= n:
                return deep[0][inside][:n], deep[1][inside][:n]
        allowed = self._allowed(mask, candidates, exclude)
        if deep is not None and len(allowed) >= GATHER_FRACTION * snap.n_rows:
            inside = mask[deep[0]]  # common values: what the deep pass found is enough
            return deep[0][inside][:n], deep[1][inside][:n]
        if len(allowed) == 0:
            return allowed, np.zeros(0, np.float32)
        return vector_search(n, allowed)

    @staticmethod
    def _allowed(
        mask: np.ndarray, candidates: np.ndarray | None, exclude: int | None
    ) -> np.ndarray:
        """Positions of ``mask`` within the filters, without the excluded product."""
        allowed = np.flatnonzero(mask)
        if candidates is not None:
            allowed = np.intersect1d(allowed, candidates, assume_unique=True)
        return allowed[allowed != exclude] if exclude is not None else allowed

    def _read(self, column: str) -> tuple[np.ndarray, list[Any]]:
        return self._store.column_values(column)


@dataclass(frozen=True)
class Ranked:
    """What a search mode returns: catalog positions and scores, best first, the understood
    query, and ``set_aside``: understood columns hybrid search did not use because no product
    carries their values together with the others' (:func:`relax`; "winter" in "winter coat"
    on a catalog without winter jackets). People are shown those apart from the chips in use."""

    positions: np.ndarray
    scores: np.ndarray
    understood: Understood
    set_aside: tuple[str, ...] = ()

    @property
    def chips(self) -> dict[str, str | list[str]]:
        """The understood query as shown to people (:func:`understand.chips`)."""
        return chips(self.understood)


def relax(matches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The understood columns some product carries all together. When none carries every one
    ("black winter coat" on a catalog without winter jackets), the largest set of columns that
    some products share is kept, the one with the rarest values among sets of that size (the
    most telling words, as BM25's idf: Black and Jackets, not Black and Winter). A dropped
    column is neither ranked nor boosted; its words are still searched by BM25."""
    return _relaxed(matches)[0]


def _relaxed(
    matches: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """:func:`relax`'s columns and the products that carry all of them (None when no column
    is kept): the conjunction relax tests is the attribute list hybrid search ranks, so it is
    computed once."""
    if not matches:
        return matches, None
    every = np.logical_and.reduce(list(matches.values()))
    if len(matches) < 2 or every.any():
        return matches, every
    n = len(every)
    idf = {c: float(np.log((n + 1) / (int(m.sum()) + 1))) for c, m in matches.items()}
    for size in range(len(matches) - 1, 0, -1):
        shared = []
        for combo in itertools.combinations(matches, size):
            carry = np.logical_and.reduce([matches[c] for c in combo])
            if carry.any():
                shared.append((combo, carry))
        if shared:
            best, carry = max(shared, key=lambda s: (sum(idf[c] for c in s[0]), s[0]))
            return {c: matches[c] for c in best}, carry
    return {}, None


def column_needs(
    matches: dict[str, np.ndarray], vector_top: np.ndarray, adaptive: bool
) -> dict[str, float]:
    """How much each understood column needs the catalog's help: 1 each, or with
    ``adaptive``, the share of the vector ranking's top that does *not* carry the value (the
    model already finds "dresses" for "red dress" but not "red": red gets the weight)."""
    if not adaptive or len(vector_top) == 0:
        return dict.fromkeys(matches, 1.0)
    return {c: 1.0 - float(m[vector_top].mean()) for c, m in matches.items()}


def fuse(
    lists: Sequence[tuple[float, np.ndarray, np.ndarray]], weights: FusionWeights
) -> tuple[np.ndarray, np.ndarray]:
    """Pool of positions and their fused scores from weighted ``(w, positions, scores)``."""
    pooled: dict[int, float] = {}
    for weight, positions, scores in lists:
        if weight <= 0 or len(positions) == 0:
            continue
        if weights.fusion == "rrf":
            contrib = weight / (weights.rrf_k + 1.0 + np.arange(len(positions)))
        else:
            s = np.asarray(scores, dtype=np.float64)
            span = float(s.max() - s.min())
            contrib = weight * ((s - s.min()) / span if span > 0 else np.ones_like(s))
        for pos, value in zip(positions.tolist(), contrib.tolist(), strict=True):
            pooled[pos] = pooled.get(pos, 0.0) + value
    if not pooled:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    keys = np.fromiter(pooled.keys(), dtype=np.int64, count=len(pooled))
    values = np.fromiter(pooled.values(), dtype=np.float64, count=len(pooled))
    return keys, values


def query_vector(
    query: Query, snap: Snapshot, exclude: int | None, encode: Callable[[Query], Any], dim: int
) -> np.ndarray:
    """The query's unit vector: its product's (``exclude``), its own, or its encoded text or
    image; a composed query adds its words' vector. Keyword mode needs none (zeros)."""
    if query.mode == "keyword":
        return np.zeros(dim, np.float32)
    if exclude is not None:
        q = snap.vector_at(exclude)
    elif query.vector is not None:
        q = check_dimension(query.vector, dim)
    else:
        q = unit_vector(encode(query.part(query.kind)), dim)
    if query.kind != "text" and query.text is not None:
        q = compose_vector(q, unit_vector(encode(query.part("text")), dim))
    return q


def compose_vector(base: np.ndarray, words: np.ndarray) -> np.ndarray:
    """A composed query's vector: the unit sum of an image's or product's vector and its words'."""
    q = np.asarray(base, np.float32) + COMPOSE_TEXT_WEIGHT * np.asarray(words, np.float32)
    norm = float(np.linalg.norm(q))
    return q / norm if norm > 0 else np.asarray(base, np.float32)


def ranking(
    hybrid: HybridSearch,
    snap: Snapshot,
    query: Query,
    vector_search: VectorSearch,
    candidates: np.ndarray | None,
    exclude: int | None,
) -> Ranked:
    """Positions and scores of ``query`` in its mode, with the understood query."""
    k = int(query.k or 0)
    text = query.text
    ignore = tuple(query.ignore_understood or ())
    if query.mode == "hybrid" and text is not None:
        return hybrid.search(snap, text, k, vector_search, candidates, exclude, ignore)
    understood = hybrid.understand(snap, text, ignore) if text is not None else {}
    if query.mode == "keyword" and text is not None:
        positions, scores = hybrid.keyword(snap, text, k, candidates, exclude)
    else:
        positions, scores = vector_search(k, candidates)
    return Ranked(positions, scores, understood)
