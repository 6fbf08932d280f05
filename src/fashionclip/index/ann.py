"""The approximate index's life in a catalog: when it is built, brought up to date or rebuilt,
and which index answers a query.

* **Automatic.** :meth:`Catalog.index` (and ``add_embeddings``) call :func:`update` after every
  write: at or above :attr:`AnnPolicy.min_products` live products an ANN index is built if
  there is none, and otherwise *extended* with the rows of the segments it does not cover yet
  (usearch ``add`` on the loaded graph, saved as a new file: no rebuild of the million to add
  ten thousand). It is rebuilt when it no longer applies (a compaction rewrote its slots), its
  file is missing or unreadable (another format or version), or more than
  :attr:`AnnPolicy.rebuild_dead_fraction` of its keys are tombstones (removed or re-embedded
  products, which search skips).
* **Which index answers** (:func:`choose`): exact search below the threshold, on request
  (``Query.exact=True``, ``--exact``) and for very selective filters; the HNSW index
  otherwise. Under a filter the cheapest of three measured costs wins: an exact scan of just
  the allowed rows (always the true filtered top-k), a scan of the allowed rows' PCA-reduced
  vectors re-ranked exactly (``backends/reduced.py``), or the HNSW index with an over-fetch
  scaled by the filter's selectivity and a retry (``UsearchIndex.search``). The constants are
  measured by ``benchmarks/ann_scale.py``; see docs/design.md, "One machine, 1M products".
* **Bad files.** A missing or unreadable index file never gives a traceback or a wrong answer:
  search falls back to the exact scan (``exact=False`` raises a one-line error) and the next
  :func:`update` rebuilds it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError
from fashionclip.index.backends import AnnInfo, VectorIndex, backend_class
from fashionclip.index.backends import reduced as reduced_backend
from fashionclip.index.backends.base import add_segments
from fashionclip.index.backends.reduced import ReducedIndex
from fashionclip.index.snapshot import Snapshot
from fashionclip.index.store import ANN_DIR, Store, now_iso

log = logging.getLogger(__name__)

#: Catalogs with at least this many live products get an ANN index automatically. Measured
#: (benchmarks/ann_scale.py, 2 loaded cores): the exact scan costs ~0.2 s per million rows, so
#: below 100k it answers in ~20 ms or less, exactly, with no build (~0.5 ms of CPU per vector)
#: and no index bytes (~1.2 KB per product); above it, an ef-2048 query (~10 ms) wins.
DEFAULT_MIN_PRODUCTS = 100_000
#: Environment variable overriding :data:`DEFAULT_MIN_PRODUCTS` ("off": never automatic).
MIN_PRODUCTS_ENV = "FASHIONCLIP_ANN_MIN_PRODUCTS"
#: Rebuild instead of extending when more than this fraction of the index's keys are dead.
DEFAULT_REBUILD_DEAD_FRACTION = 0.25
#: Cost of one HNSW candidate (graph visit plus its exact re-scoring) in units of one row of
#: an exact gather-and-score; measured at 1M (benchmarks/ann_scale.py): an ef-2048 query took
#: 12.5 ms, a gather of 55k rows 71 ms, i.e. ~6 us vs ~1.3 us.
ANN_CANDIDATE_COST = 5.0
#: How much deeper than the selectivity estimate a filtered HNSW search really has to fetch
#: (filters correlate with queries). Measured at 1M under the 5.5% filter: the 10th allowed
#: row ranked 1,769th (text queries, median) and 4,470th (more like this) among all rows,
#: where the estimate fetches 764: x2.3 and x5.9, paid as retries.
FILTER_DEPTH = 4.0
#: Cost of scoring one allowed row on the reduced vectors (backends/reduced.py), same unit;
#: measured at 1M: 7.0 ms for the 55k rows of the 5.5% filter vs 63 ms for the exact gather.
REDUCED_ROW_COST = 0.12
#: Fixed cost of a reduced scan: its exact re-scoring and per-query overhead (~0.25 ms).
REDUCED_FIXED_COST = 200.0


@dataclass(frozen=True)
class AnnPolicy:
    """When a catalog builds and maintains its ANN index by itself.

    ``min_products``: live products from which :func:`update` builds one (None: never
    automatically; ``Catalog.build_ann`` still works). ``backend`` and ``params``: what to
    build. ``rebuild_dead_fraction``: dead keys above which an update rebuilds.
    """

    min_products: int | None = DEFAULT_MIN_PRODUCTS
    backend: str = "usearch"
    rebuild_dead_fraction: float = DEFAULT_REBUILD_DEAD_FRACTION
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_env(cls) -> AnnPolicy:
        """The default policy, with ``FASHIONCLIP_ANN_MIN_PRODUCTS`` applied when set."""
        raw = os.environ.get(MIN_PRODUCTS_ENV, "").strip().lower()
        if not raw:
            return cls()
        if raw in ("off", "none", "never"):
            return cls(min_products=None)
        try:
            return cls(min_products=max(1, int(raw)))
        except ValueError:
            raise FashionCLIPError(
                f"{MIN_PRODUCTS_ENV} must be a number of products or 'off', got {raw!r}"
            ) from None


@dataclass(frozen=True)
class AnnUpdate:
    """What :func:`update` did: "built", "extended" or "kept", the index, the rows added."""

    action: str
    info: AnnInfo
    added: int = 0
    seconds: float = 0.0


def usable_info(snap: Snapshot) -> AnnInfo | None:
    """The ANN record when it is readable and every segment it covers still exists."""
    if not snap.ann:
        return None
    try:
        info = AnnInfo.from_meta(snap.ann)
    except (KeyError, TypeError, ValueError):
        return None  # a record this version cannot read: treated as absent, rebuilt
    present = {s.id for s in snap.segments}
    return info if set(info.segments) <= present else None


def load(root: os.PathLike[str] | str, dim: int, info: AnnInfo, writable: bool = False) -> Any:
    """Load the index file ``info`` describes; a :class:`FashionCLIPError` (one line) when it
    is missing, unreadable or does not match its record."""
    path = os.path.join(root, ANN_DIR, info.file)
    if not os.path.isfile(path):
        raise FashionCLIPError(f"the ANN index file {path} is missing; run `fashionclip index`")
    try:
        cls = backend_class(info.backend)
        return cls.open_for_update(path, dim, info) if writable else cls.load(path, dim, info)
    except FashionCLIPError:
        raise
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise FashionCLIPError(
            f"cannot read the ANN index {path} ({exc}); run `fashionclip index` to rebuild it"
        ) from None


def build(
    store: Store,
    snap: Snapshot,
    dim: int,
    backend: str = "usearch",
    show_progress: bool = False,
    params: dict[str, Any] | None = None,
) -> AnnInfo:
    """Build an index over every live row of ``snap`` and register it (see Catalog.build_ann)."""
    if snap.n_live == 0:
        raise FashionCLIPError("the catalog is empty: nothing to build an ANN index of")
    try:
        index = backend_class(backend)(dim, params)
    except TypeError as exc:
        raise FashionCLIPError(str(exc)) from None
    started = time.perf_counter()
    index.build(snap, show_progress=show_progress)
    return _register(store, index, backend, time.perf_counter() - started)


def update(
    store: Store, snap: Snapshot, dim: int, policy: AnnPolicy, show_progress: bool = False
) -> AnnUpdate | None:
    """Bring the ANN index up to date with ``snap`` per ``policy`` (module docstring).

    None when the catalog is below the threshold (or usearch is not installed and the policy's
    backend needs it): search stays exact.
    """
    if policy.min_products is None or snap.n_live < policy.min_products:
        return None
    info = usable_info(snap)
    started = time.perf_counter()
    reason = _rebuild_reason(snap, info, policy)
    index: VectorIndex | None = None
    if reason is None and info is not None:
        try:
            index = load(store.root, dim, info, writable=True)
        except FashionCLIPError as exc:
            reason = str(exc)
    if index is None or info is None:
        log.info("building the ANN index (%s)", reason)
        try:
            built = build(store, snap, dim, policy.backend, show_progress, dict(policy.params))
        except FashionCLIPError as exc:
            if "usearch" in str(exc):
                log.warning("no automatic ANN index: %s", exc)
                return None
            raise
        return AnnUpdate("built", built, built.size, time.perf_counter() - started)
    covered = set(index.segments)
    new = [s for s in snap.segments if s.id not in covered]
    if not new:
        return AnnUpdate("kept", info)
    before = index.size
    add_segments(index, snap, new, show_progress)
    added = index.size - before
    extended = _register(store, index, info.backend, time.perf_counter() - started)
    return AnnUpdate("extended", extended, added, extended.seconds)


def _rebuild_reason(snap: Snapshot, info: AnnInfo | None, policy: AnnPolicy) -> str | None:
    """Why the index must be rebuilt rather than extended (None: extend it)."""
    if info is None:
        return "none yet, or compacted since"
    if info.backend != policy.backend:
        return f"backend {info.backend} -> {policy.backend}"
    covered = set(info.segments)
    live = sum(
        int(snap.live[s.offset : s.offset + s.n_rows].sum())
        for s in snap.segments
        if s.id in covered
    )
    dead = info.size - live
    if info.size and dead > policy.rebuild_dead_fraction * info.size:
        return f"{dead} of {info.size} keys are removed or replaced products"
    return None


def _register(store: Store, index: VectorIndex, backend: str, seconds: float) -> AnnInfo:
    info = AnnInfo(
        backend=backend,
        file=f"{backend}-{uuid.uuid4().hex[:12]}.index",
        segments=list(index.segments),
        size=index.size,
        params=dict(index.params),
        built_at=now_iso(),
        seconds=round(seconds, 3),
    )
    store.set_ann(info.to_meta(), index.save, info.segments)
    return info


def choose(
    snap: Snapshot,
    candidates: np.ndarray | None,
    exact: bool | None,
    ann: VectorIndex | None,
    reduced: VectorIndex | None = None,
) -> VectorIndex | None:
    """The approximate index that should answer this query, else None (exact scan).

    ``exact=False`` always uses ``ann`` (the caller checks it exists); ``exact=None`` uses it
    unfiltered. Under a filter keeping ``n = len(candidates)`` rows, the cheapest of three
    estimated costs, in rows of an exact gather, wins (:func:`filter_costs`):

    * exact gather: ``n`` (always the true filtered top-k);
    * HNSW with over-fetch: ``ANN_CANDIDATE_COST x max(ef, FILTER_DEPTH x fetch)``, ``fetch``
      growing as the filter keeps fewer rows;
    * ``reduced`` scan (when given): ``REDUCED_ROW_COST x n + rerank + REDUCED_FIXED_COST``.

    At 1M rows: exact below ~0.07% of the catalog, reduced scan up to ~8%, HNSW above.
    """
    if ann is None or exact:
        return None
    if exact is False or candidates is None:
        return ann
    costs = filter_costs(ann, snap.n_live, len(candidates), reduced is not None)
    best = min(costs, key=lambda name: costs[name])
    return {"exact": None, "ann": ann, "reduced": reduced}[best]


def filter_costs(
    ann: VectorIndex, n_live: int, n_candidates: int, with_reduced: bool = True, k: int = 10
) -> dict[str, float]:
    """Estimated cost of each way of answering a query under a filter keeping
    ``n_candidates`` of ``n_live`` rows, in rows of an exact gather (see :func:`choose`)."""
    costs = {"exact": float(n_candidates), "ann": ann_filter_cost(ann, n_live, n_candidates, k)}
    if with_reduced:
        # Read at call time: the re-rank depth is a module setting (tests shrink it).
        rerank = min(n_candidates, max(reduced_backend.RERANK, reduced_backend.RERANK_PER_K * k))
        costs["reduced"] = REDUCED_ROW_COST * n_candidates + rerank + REDUCED_FIXED_COST
    return costs


def ann_filter_cost(ann: VectorIndex, n_live: int, n_candidates: int, k: int = 10) -> float:
    """Estimated cost, in gathered rows, of an HNSW search under a filter keeping
    ``n_candidates`` of ``n_live`` rows: the over-fetch ``UsearchIndex.search`` starts with,
    times the retries a correlated filter costs (:data:`FILTER_DEPTH`)."""
    from fashionclip.index.backends.usearch import FETCH_EXTRA, FETCH_FACTOR

    fetch = max(FETCH_FACTOR * k, k + FETCH_EXTRA) * n_live / max(1, n_candidates)
    ef = float(ann.params.get("expansion_search", 0))
    return ANN_CANDIDATE_COST * max(FILTER_DEPTH * fetch, ef)


class LoadedAnn:
    """A catalog's ANN index, loaded (memory-mapped) once per index file and shared by the
    threads that search it, and its in-memory reduced vectors (filtered search)."""

    def __init__(self, root: os.PathLike[str] | str, dim: int) -> None:
        self.root, self.dim = root, dim
        self._loaded: tuple[str, VectorIndex] | None = None  # (file name, loaded index)
        self._lock = threading.Lock()
        #: PCA-reduced vectors for filtered search (in memory, filled on first use).
        self.reduced = ReducedIndex(dim)

    def warm(self, snap: Snapshot) -> bool:
        """Open the index and project the reduced vectors now, not in the first (filtered)
        query, which would pay seconds for them at 1M. False: ``snap`` has no usable index."""
        if self.get(snap) is None:
            return False
        self.reduced.build(snap)
        return True

    def get(self, snap: Snapshot, required: bool = False) -> VectorIndex | None:
        """The index for ``snap``; None when there is none or its file is bad (exact search
        then; ``required`` raises the one-line reason instead)."""
        info = usable_info(snap)
        if info is None:
            if required:
                raise FashionCLIPError(
                    "exact=False needs a current ANN index: run Catalog.build_ann() "
                    "(or `fashionclip index --ann`)"
                )
            return None
        loaded = self._loaded
        if loaded is not None and loaded[0] == info.file:
            return loaded[1]
        with self._lock:
            loaded = self._loaded
            if loaded is None or loaded[0] != info.file:
                try:
                    index = load(self.root, self.dim, info)
                except FashionCLIPError as exc:
                    if required:
                        raise
                    log.warning("%s; searching exactly", exc)
                    return None
                loaded = self._loaded = (info.file, index)
        return loaded[1]
