"""The persistent product catalog: index images once, search them by text, image or product.

A :class:`Catalog` is a folder (see :mod:`fashionclip.index.store` for the format). This
module is the facade: opening and creating, reads, facets, and delegation of the rest —
indexing to :mod:`.indexer`, storage to :mod:`.store`, filters to :mod:`.filters`, query
validation to :mod:`.query` and vector search to :mod:`.backends` (exact scan, or a persisted
approximate index). Indexing is incremental and interruptible; search is exact unless an ANN
index was built.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fashionclip.data.tables import CatalogSource, MetadataValue, ProductRecord
from fashionclip.errors import FashionCLIPError, ModelMismatchError
from fashionclip.index import ann as ann_life
from fashionclip.index import filters as filtering
from fashionclip.index.backends import AnnInfo, ExactIndex
from fashionclip.index.hybrid import HybridSearch, query_vector, ranking
from fashionclip.index.indexer import IndexFailure as IndexFailure  # re-exported
from fashionclip.index.indexer import IndexReport, run_indexing
from fashionclip.index.lock import writer_lock, writes
from fashionclip.index.query import (
    EncodeHook,
    Query,
    check_columns,
    check_filters,
    require_one_input,
)
from fashionclip.index.snapshot import Snapshot
from fashionclip.index.store import (
    ANN_DIR,
    DB_NAME,
    REPORT_NAME,
    VECTORS_DIR,
    CatalogFormatError,
    CatalogNotFoundError,
    ProductRow,
    Store,
    now_iso,
)
from fashionclip.index.types import (
    CatalogExistsError,
    CatalogModel,
    CatalogProduct,
    CatalogStats,
    CompactReport,
    ProductNotFoundError,
    SearchResult,
    SearchResults,
)
from fashionclip.utils import normalise_rows


class Catalog:
    """A product catalog on disk: SQLite for products, ``.npy`` segments for vectors.

    Create with :meth:`create`, open with :meth:`open`. Reads (search, get, facets) are safe
    from several threads; writes are serialised.
    """

    def __init__(self, store: Store, model: Any | None, identity: CatalogModel) -> None:
        self._store = store
        self._model = model
        self._identity = identity
        self._snapshot: Snapshot | None = None
        self._snapshot_lock = threading.Lock()
        self._exact = ExactIndex(identity.embedding_dim)
        self._ann = ann_life.LoadedAnn(store.root, identity.embedding_dim)  # memory-mapped
        self.hybrid = HybridSearch(store)  # keyword index, query understanding, fusion weights
        #: When :meth:`index` and :meth:`add_embeddings` build and extend the ANN index.
        self.ann_policy = ann_life.AnnPolicy.from_env()

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], model: Any) -> Catalog:
        """Create an empty catalog at ``path`` for ``model`` (a model or its identity)."""
        root = Path(path)
        if (root / DB_NAME).exists():
            raise CatalogExistsError(f"a catalog already exists at {root}; open it instead")
        if root.exists() and not root.is_dir():
            raise FashionCLIPError(f"catalog path {root} is a file, not a folder")
        identity = CatalogModel.of(model)
        root.mkdir(parents=True, exist_ok=True)
        with writer_lock(root, action="creating"):  # two creators: one wins, one is refused
            if (root / DB_NAME).exists():
                raise CatalogExistsError(f"a catalog already exists at {root}; open it instead")
            store = Store.initialise(root, {"model": asdict(identity)})
        has_encoders = hasattr(model, "encode_text")
        return cls(store, model if has_encoders else None, identity)

    @classmethod
    def open(cls, path: str | os.PathLike[str], model: Any | None = None) -> Catalog:
        """Open an existing catalog; with ``model``, check it is the model that built it.

        Without a model, metadata work, "more like this" and vector queries still work (see
        :meth:`attach_model` to add one later). Raises :class:`CatalogNotFoundError` or
        :class:`ModelMismatchError`.
        """
        root = Path(path)
        if not (root / DB_NAME).is_file():
            raise CatalogNotFoundError(
                f"no catalog at {root} (expected {root / DB_NAME}); "
                "build one with `fashionclip index`"
            )
        store = Store(root)
        store.check_format()
        recorded = store.get_meta("model")
        if not recorded:
            raise CatalogFormatError(f"catalog {root} records no model identity")
        catalog = cls(store, None, CatalogModel.of(recorded))
        if model is not None:
            catalog.attach_model(model)
        store.remove_orphans()
        return catalog

    @classmethod
    def delete(cls, path: str | os.PathLike[str]) -> None:
        """Delete the catalog at ``path``: only the files a catalog consists of, nothing else.

        For rebuilding with another model (a catalog's vectors only make sense for the model
        that made them). Raises :class:`CatalogNotFoundError` when ``path`` holds no catalog.
        """
        root = Path(path)
        if not (root / DB_NAME).is_file():
            raise CatalogNotFoundError(f"no catalog at {root} (expected {root / DB_NAME})")
        for folder in (VECTORS_DIR, ANN_DIR):
            shutil.rmtree(root / folder, ignore_errors=True)
        for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", REPORT_NAME):
            (root / name).unlink(missing_ok=True)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike[str], model: Any) -> Catalog:
        root = Path(path)
        if (root / DB_NAME).exists():
            return cls.open(root, model)
        return cls.create(root, model)

    def check_model(self, model: Any) -> None:
        """Raise :class:`ModelMismatchError` unless ``model`` (a model or an identity) is the
        one that embedded this catalog (same fingerprint and dimension)."""
        try:
            other = CatalogModel.of(model)
        except (AttributeError, KeyError, TypeError) as exc:
            raise FashionCLIPError(f"not a model (no identity): {exc}") from None
        if (
            other.fingerprint != self._identity.fingerprint
            or other.embedding_dim != self._identity.embedding_dim
        ):
            raise ModelMismatchError(
                f"catalog {self.path} was built with model {self._identity.describe()}, "
                f"but the given model is {other.describe()}. Use the catalog's model or "
                "index into a new catalog."
            )

    def attach_model(self, model: Any) -> None:
        """Use ``model`` for text/image queries and indexing (checked with :meth:`check_model`);
        for a catalog opened without one, e.g. to read which model it needs first."""
        self.check_model(model)
        self._model = model

    def close(self) -> None:
        self._store.close()
        self._snapshot = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r}, model={self._identity.name!r})"

    # -- properties and reads ----------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._store.root

    @property
    def store(self) -> Store:
        """The storage layer (SQLite + segment files), for tools that need raw access."""
        return self._store

    @property
    def model_identity(self) -> CatalogModel:
        return self._identity

    @property
    def model(self) -> Any | None:
        return self._model

    @property
    def embedding_dim(self) -> int:
        return self._identity.embedding_dim

    @property
    def columns(self) -> list[str]:
        """Metadata column names, in order of first appearance."""
        return self._store.columns()

    def __len__(self) -> int:
        return self.snapshot().n_live

    def __contains__(self, product_id: object) -> bool:
        return self._store.slot_of(str(product_id)) is not None

    def ids(self) -> list[str]:
        return self._store.product_ids()

    def get(self, product_id: str) -> CatalogProduct | None:
        """The stored product, or None if the id is unknown."""
        row = self._store.product(str(product_id))
        if row is None:
            return None
        image = Path(row.image) if row.image else None
        return CatalogProduct(
            row.id, image, json.loads(row.metadata_json), row.content_hash, row.updated_at
        )

    def image_path(self, product_id: str) -> Path:
        """The image file of a catalog product (only paths recorded in the catalog)."""
        product = self.get(product_id)
        if product is None:
            raise ProductNotFoundError(f"no product {product_id!r} in catalog {self.path}")
        if product.image is None:
            raise ProductNotFoundError(f"product {product_id!r} has no image")
        return product.image

    def vector(self, product_id: str) -> np.ndarray:
        """The stored embedding of a product (float32, L2-normalised)."""
        snap, position = self._position_of(product_id)
        return snap.vector_at(position)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (path, model, counts, columns) for ``fashionclip info``."""
        stats = self.stats()
        ann = self.ann_info
        return {
            "path": str(self.path),
            "products": stats.products,
            "model": asdict(stats.model),
            "segments": stats.segments,
            "tombstones": stats.tombstones,
            "vector_bytes": stats.vector_bytes,
            "columns": stats.columns,
            "ann": None if ann is None else ann.to_meta(),
        }

    def stats(self) -> CatalogStats:
        snap = self.snapshot()
        return CatalogStats(
            products=snap.n_live,
            rows=snap.n_rows,
            tombstones=snap.n_rows - snap.n_live,
            segments=len(snap.segments),
            embedding_dim=self.embedding_dim,
            model=self._identity,
            columns=list(snap.columns),
            vector_bytes=snap.n_rows * self.embedding_dim * 4,
        )

    def snapshot(self) -> Snapshot:
        """The current read view (mapped segments, live mask), reloaded after any write."""
        generation = self._store.generation()
        snap = self._snapshot
        if snap is None or snap.generation != generation:
            with self._snapshot_lock:
                snap = self._snapshot
                if snap is None or snap.generation != generation:
                    snap = self._store.load_snapshot()
                    self._snapshot = snap
        return snap

    def facets(
        self,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[MetadataValue, int]]:
        """Distinct values per metadata column with product counts, most frequent first.

        ``limit`` keeps the top values of each column (free-text columns have many). With
        ``filters``, each column counts the products the other columns' filters allow (see
        :func:`fashionclip.index.filters.filtered_value_counts`).
        """
        snap = self.snapshot()
        names = list(snap.columns) if columns is None else list(columns)
        check_columns(names, snap.columns)
        read = self._store.column_values
        if filters:
            wanted = check_filters(filters)
            check_columns(list(wanted), snap.columns)
            count = filtering.filtered_value_counts
            return {name: count(snap, name, read, wanted, limit) for name in names}
        return {name: filtering.value_counts(snap, name, read, limit) for name in names}

    # -- writes ------------------------------------------------------------------------------

    @writes("indexing")
    def index(
        self,
        records: CatalogSource | Iterable[ProductRecord],
        *,
        batch_size: int = 32,
        commit_every: int = 1024,
        show_progress: bool = False,
        write_report: bool = True,
        engine: Any = None,
    ) -> IndexReport:
        """Add or update products, embedding only new ids and changed images.

        An image counts as changed when the sha256 of its bytes differs from the stored
        ``content_hash``; same bytes with other metadata or path only update the row. Bad
        images are skipped and listed in the report (an already indexed product whose new
        image is bad keeps its old vector). Every ``commit_every`` embedded images form a
        committed segment, so an interrupted run keeps its finished batches; at the end the
        run's segments are merged into one. The report (with seconds per stage in
        ``timings``) is also written to ``<catalog>/index-report.json``. ``engine``: Indexer's.
        """
        model = self._require_model("index images")
        self.snapshot()  # a damaged catalog is refused before anything is embedded
        if batch_size <= 0 or commit_every <= 0:
            raise FashionCLIPError("batch_size and commit_every must be positive")
        return run_indexing(
            self._store,
            model,
            self.embedding_dim,
            IndexReport(catalog=str(self.path), model=self._identity.name, started_at=now_iso()),
            records,
            batch_size=batch_size,
            commit_every=commit_every,
            show_progress=show_progress,
            write_report=write_report,
            engine=engine,
            finish=lambda report: setattr(report, "ann", self._update_ann_report(show_progress)),
        )

    @writes("adding embeddings")
    def add_embeddings(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        metadata: Sequence[Mapping[str, MetadataValue]] | None = None,
        images: Sequence[str | os.PathLike[str] | None] | None = None,
        content_hashes: Sequence[str | None] | None = None,
        *,
        update_ann: bool = True,
    ) -> None:
        """Store precomputed embeddings (one segment, one transaction), replacing same ids.

        For embeddings computed elsewhere (a GPU job, a benchmark). They must come from the
        catalog's model; rows are L2-normalised before storing. Then the ANN index is brought
        up to date (:meth:`update_ann`) unless ``update_ann=False`` (bulk loads: call it once
        at the end).
        """
        vectors = np.asarray(embeddings, dtype=np.float32)
        n = len(ids)
        if vectors.ndim != 2 or vectors.shape != (n, self.embedding_dim):
            raise FashionCLIPError(
                f"embeddings must have shape ({n}, {self.embedding_dim}), got {vectors.shape}"
            )
        if len(set(map(str, ids))) != n:
            raise FashionCLIPError("ids passed to add_embeddings must be unique")
        if n == 0:
            return
        metas = [dict(m) for m in metadata] if metadata is not None else [{} for _ in range(n)]
        paths = list(images) if images is not None else [None] * n
        hashes = list(content_hashes) if content_hashes is not None else [None] * n
        if not (len(metas) == len(paths) == len(hashes) == n):
            raise FashionCLIPError("ids, embeddings, metadata, images must have equal lengths")
        rows = [
            ProductRow(
                str(pid), None if img is None else str(img), json.dumps(m, ensure_ascii=False), h, m
            )
            for pid, img, m, h in zip(ids, paths, metas, hashes, strict=True)
        ]
        self._store.commit_batch(normalise_rows(vectors), rows)
        if update_ann:
            self.update_ann()

    @writes("removing")
    def remove(self, ids: Iterable[str]) -> int:
        """Remove products (their vectors become tombstones). Returns how many existed."""
        return self._store.remove_products([str(i) for i in ids])

    @writes("compacting")
    def compact(self) -> CompactReport:
        """Rewrite live vectors into fresh segments and drop tombstones and old files."""
        snap = self.snapshot()
        before = CompactReport(len(snap.segments), snap.n_rows, snap.n_rows, snap.n_rows)
        if len(snap.segments) <= 1 and snap.n_rows == snap.n_live:
            return before
        self._store.merge_segments([s.id for s in snap.segments])
        after = self.snapshot()
        return CompactReport(len(snap.segments), len(after.segments), snap.n_rows, after.n_rows)

    @writes("building the ANN index")
    def build_ann(
        self, *, backend: str = "usearch", show_progress: bool = False, **params: Any
    ) -> AnnInfo:
        """Build and persist an approximate index over the live vectors now, whatever the size.

        Default: usearch HNSW (``[scale]`` extra), parameters in ``UsearchIndex.defaults``.
        Built without locks, registered in one short write transaction; :meth:`update_ann`
        extends it as products are added (removed ones are skipped at search time).
        """
        if backend == self.ann_policy.backend:
            params = {**dict(self.ann_policy.params), **params}
        return ann_life.build(
            self._store, self.snapshot(), self.embedding_dim, backend, show_progress, params
        )

    def update_ann(self, show_progress: bool = False) -> ann_life.AnnUpdate | None:
        """Build, extend or rebuild the ANN index per :attr:`ann_policy` (see
        :mod:`fashionclip.index.ann`); None below its size threshold. :meth:`index` and
        :meth:`add_embeddings` call it."""
        return ann_life.update(
            self._store, self.snapshot(), self.embedding_dim, self.ann_policy, show_progress
        )

    @writes("dropping the ANN index")
    def drop_ann(self) -> None:
        """Remove the ANN index (search becomes exact only)."""
        self._store.drop_ann()

    @property
    def ann_info(self) -> AnnInfo | None:
        """The ANN index's description, or None (also None when it no longer applies)."""
        return ann_life.usable_info(self.snapshot())

    # -- search ------------------------------------------------------------------------------

    def search(
        self,
        query: str | os.PathLike[str] | bytes | np.ndarray | Any | None = None,
        *,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        image: Any | None = None,
        like: str | None = None,
        vector: np.ndarray | Sequence[float] | None = None,
        exact: bool | None = None,
        text: str | None = None,
        mode: str | None = None,
        ignore_understood: Sequence[str] | None = None,
    ) -> SearchResults:
        """The ``k`` products most similar to a query, best first.

        ``query`` is a text (``str``), an image (``pathlib.Path``, bytes, PIL image) or a
        vector (numpy array). Use ``image=`` for an image given as a string path, ``like=``
        for "more like this" from a product id (the product itself is excluded) and
        ``vector=`` for a raw embedding. ``filters`` maps a metadata column to a value or a
        list of accepted values (``{"gender": "Women", "articleType": ["Heels", "Flats"]}``).

        Search is exact unless the catalog has an ANN index (:meth:`build_ann`): then, with
        ``exact=None``, unfiltered and broadly filtered queries use it (scores stay exact,
        recall is approximate). ``exact=True`` forces the exact scan; ``exact=False``
        requires the ANN index. Same as ``run(Query(...))``.

        ``mode``: vector, keyword or hybrid (None: hybrid for text; :mod:`.hybrid`). ``text=``
        with ``like=`` or an image composes them. ``ignore_understood``: understood columns
        not to use (their soft boost is dropped; never a filter). Returns SearchResults.
        """
        inputs: dict[str, Any] = {"text": text, "image": image, "vector": vector, "like": like}
        if query is not None:
            slot = "text" if isinstance(query, str) else "image"
            slot = "vector" if isinstance(query, np.ndarray) else slot
            if inputs[slot] is not None:
                require_one_input(query, inputs[slot])
            inputs[slot] = query
        return self.run(
            Query(
                **inputs,
                k=k,
                filters=filters,
                exact=exact,
                mode=mode,
                ignore_understood=ignore_understood,
            )
        )

    def more_like_this(
        self, product_id: str, *, k: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[SearchResult]:
        """Products most similar to ``product_id`` (which is excluded from the results)."""
        return self.search(like=product_id, k=k, filters=filters)

    def traverse(
        self, product_id: str, start: str = "light", end: str = "dark", **options: Any
    ) -> list[list[SearchResult]]:
        """Like ``product_id`` but further along start -> end ("darker"): a list of steps, each
        a list of results, no product twice. Options: steps, per_step, step_size,
        neighbourhood, start_n, end_n, filters, keep (a column: stay at the seed's value),
        method ("gradrec" | "arithmetic"), encode_texts; see :mod:`.traverse_catalog`."""
        from fashionclip.index.traverse_catalog import traverse

        return traverse(self, product_id, start, end, **options)

    def build_text_index(self, fields: Mapping[str, float] | None = None) -> list[str]:
        """(Re)build the keyword index over ``fields`` (column -> BM25 weight; None: every
        column). Returns the indexed columns (see :mod:`.text`)."""
        return self.hybrid.text.build(fields).columns

    def warm_up(self) -> bool:
        """Load what the first search would (:meth:`.ann.LoadedAnn.warm`); False: no ANN."""
        return self._ann.warm(self.snapshot())

    def run(self, query: Query, encode: EncodeHook | None = None) -> SearchResults:
        """Run a validated :class:`Query`. ``encode(query)`` turns its text or image into a
        vector (default: the catalog's model); filter columns and the vector's dimension are
        checked against this catalog, before anything is encoded."""
        snap = self.snapshot()
        exclude: int | None = None
        if query.like is not None:
            snap, exclude = self._position_of(query.like, snap)
        query.check_columns(snap.columns)
        candidates = filtering.candidates(snap, query.filters, self._store.column_values)
        q = query_vector(query, snap, exclude, encode or self._encode, self.embedding_dim)
        ann = None if query.exact else self._ann.get(snap, required=query.exact is False)

        def vector_search(n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            index = ann_life.choose(snap, allowed, query.exact, ann, self._ann.reduced)
            index = index or self._exact
            return index.search(snap, q, n, allowed, exclude)

        ranked = ranking(self.hybrid, snap, query, vector_search, candidates, exclude)
        found = self._results(snap, ranked.positions, ranked.scores)
        return SearchResults(
            found, mode=str(query.mode), understood=ranked.chips, set_aside=ranked.set_aside
        )

    # -- internals ---------------------------------------------------------------------------

    def _update_ann_report(self, show_progress: bool) -> dict[str, Any] | None:
        done = self.update_ann(show_progress)
        if done is None or done.action == "kept":
            return None
        return {"action": done.action, "added": done.added, "seconds": done.seconds}

    def _require_model(self, action: str) -> Any:
        if self._model is None:
            raise FashionCLIPError(
                f"this catalog was opened without a model; open it with the model "
                f"{self._identity.name!r} to {action}"
            )
        return self._model

    def _encode(self, query: Query) -> Any:
        """The default encode hook: the catalog's own model."""
        if query.text is not None:
            return self._require_model("search by text").encode_text(query.text)
        return self._require_model("search by image").encode_images(query.image)

    def _position_of(self, product_id: str, snap: Snapshot | None = None) -> tuple[Snapshot, int]:
        """The snapshot and row position holding a product's vector."""
        current: Snapshot | None = snap
        for _ in range(3):
            slot = self._store.slot_of(str(product_id))
            if slot is None:
                raise ProductNotFoundError(f"no product {product_id!r} in catalog {self.path}")
            current = current or self.snapshot()
            pos = int(current.positions_in(np.array([slot], dtype=np.int64))[0])
            if pos >= 0 and current.live[pos]:
                return current, pos
            current = None  # written since the snapshot was taken: reload and retry
        raise ProductNotFoundError(f"product {product_id!r} is being rewritten; try again")

    def _results(
        self, snap: Snapshot, positions: np.ndarray, scores: np.ndarray
    ) -> list[SearchResult]:
        if len(positions) == 0:
            return []
        slots = [int(s) for s in snap.slots_of_positions(positions)]
        by_slot = self._store.products_at(slots)
        results = []
        for slot, score in zip(slots, scores, strict=True):
            row = by_slot.get(slot)
            if row is None:  # removed or updated since the snapshot was taken
                continue
            image = Path(row.image) if row.image else None
            metadata = json.loads(row.metadata_json)
            results.append(SearchResult(row.id, float(score), metadata, image, row.content_hash))
        return results
