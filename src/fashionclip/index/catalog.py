"""The persistent product catalog: index images once, search them by text, image or product.

A :class:`Catalog` is a folder (see :mod:`fashionclip.index.store` for the format). Indexing is
incremental and interruptible: only new products and products whose image bytes changed are
embedded, work is committed every ``commit_every`` images, and a crash leaves the catalog as
it was after the last commit. Search is exact (brute-force dot product over memory-mapped
segments), optionally restricted by metadata filters.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import numpy as np

from fashionclip.data.tables import CatalogSource, MetadataValue, ProductRecord
from fashionclip.errors import FashionCLIPError, InvalidQueryError, ModelMismatchError
from fashionclip.index.ann import AnnInfo, load_index, new_index, search_keys
from fashionclip.index.store import (
    ANN_DIR,
    DB_NAME,
    REPORT_NAME,
    VECTORS_DIR,
    CatalogFormatError,
    CatalogNotFoundError,
    Snapshot,
    Store,
    now_iso,
)

#: Products per SQL ``IN (...)`` list (SQLite allows 32,766 variables; stay far below).
_SQL_CHUNK = 900
#: Filters keeping fewer than this fraction of rows score only those rows (gather) instead
#: of all rows; measured with benchmarks/search_latency.py.
_GATHER_FRACTION = 0.25
#: Largest segment that compaction writes (rows); 262,144 x 512 float32 = 512 MiB.
_MAX_SEGMENT_ROWS = 262_144

_UPSERT = (
    "INSERT INTO products(id, slot, content_hash, image, metadata, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET slot = excluded.slot, "
    "content_hash = excluded.content_hash, image = excluded.image, "
    "metadata = excluded.metadata, updated_at = excluded.updated_at"
)


class ProductNotFoundError(FashionCLIPError):
    """A product id that is not in the catalog."""


class CatalogExistsError(FashionCLIPError):
    """``Catalog.create`` on a folder that already holds a catalog."""


@dataclass(frozen=True)
class CatalogModel:
    """The identity of the model that embedded a catalog (cf. ``FashionCLIP.identity``)."""

    name: str
    kind: str
    embedding_dim: int
    fingerprint: str

    @classmethod
    def of(cls, model: Any) -> CatalogModel:
        """From a model (anything with ``.identity``) or an identity-like object or dict."""
        ident = getattr(model, "identity", model)
        if isinstance(ident, Mapping):
            return cls(
                str(ident["name"]),
                str(ident["kind"]),
                int(ident["embedding_dim"]),
                str(ident["fingerprint"]),
            )
        return cls(
            str(ident.name), str(ident.kind), int(ident.embedding_dim), str(ident.fingerprint)
        )

    def describe(self) -> str:
        return (
            f"{self.name!r} ({self.kind}, dim {self.embedding_dim}, "
            f"fingerprint {self.fingerprint[:12]})"
        )


@dataclass(frozen=True)
class SearchResult:
    """One hit, best first in a result list; ``score`` is the cosine similarity."""

    id: str
    score: float
    metadata: dict[str, MetadataValue]
    image: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "image": None if self.image is None else str(self.image),
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class CatalogProduct:
    """A stored product (what :meth:`Catalog.get` returns)."""

    id: str
    image: Path | None
    metadata: dict[str, MetadataValue]
    content_hash: str | None
    updated_at: str


class IndexFailure(NamedTuple):
    """A product that could not be indexed: its id, image path and the reason."""

    id: str
    path: str
    reason: str


@dataclass
class IndexReport:
    """Counts of one :meth:`Catalog.index` run; counts only what was committed.

    ``updated`` products were re-embedded (image bytes changed); ``metadata_updated`` ones
    kept their vector and got new metadata or a new image path (same bytes).
    """

    catalog: str
    model: str
    total: int = 0
    added: int = 0
    updated: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    failed: int = 0
    duplicates: int = 0
    failures: list[IndexFailure] = field(default_factory=list)
    embedded: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    started_at: str = ""
    finished_at: str = ""

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = [f._asdict() for f in self.failures]
        data["images_per_second"] = round(self.images_per_second, 2)
        return data

    def summary(self) -> str:
        text = (
            f"{self.added} added, {self.updated} updated, {self.metadata_updated} metadata "
            f"updated, {self.unchanged} unchanged, {self.failed} failed "
            f"({self.total} products in {self.seconds:.1f}s, "
            f"{self.images_per_second:.1f} images/s embedded)"
        )
        if self.duplicates:
            text += f"; {self.duplicates} duplicate id(s) skipped"
        if self.interrupted:
            text += "; INTERRUPTED: rerun to finish"
        return text


@dataclass(frozen=True)
class CompactReport:
    segments_before: int
    segments_after: int
    rows_before: int
    rows_after: int


@dataclass(frozen=True)
class CatalogStats:
    products: int
    rows: int
    tombstones: int
    segments: int
    embedding_dim: int
    model: CatalogModel
    columns: list[str]
    vector_bytes: int


class _Existing(NamedTuple):
    content_hash: str | None
    image: str | None
    metadata: str


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
        self._ann: tuple[str, Any] | None = None  # (file name, loaded usearch index)
        self._ann_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, model: Any) -> Catalog:
        """Create an empty catalog at ``path`` for ``model`` (a model or its identity)."""
        root = Path(path)
        if (root / DB_NAME).exists():
            raise CatalogExistsError(f"a catalog already exists at {root}; open it instead")
        if root.exists() and not root.is_dir():
            raise FashionCLIPError(f"catalog path {root} is a file, not a folder")
        identity = CatalogModel.of(model)
        store = Store.initialise(root, {"model": asdict(identity)})
        has_encoders = hasattr(model, "encode_text")
        return cls(store, model if has_encoders else None, identity)

    @classmethod
    def open(cls, path: str | os.PathLike, model: Any | None = None) -> Catalog:
        """Open an existing catalog; with ``model``, check it is the model that built it.

        Without a model, metadata work, "more like this" and vector queries still work.
        Raises :class:`CatalogNotFoundError` or :class:`ModelMismatchError`.
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
        identity = CatalogModel.of(recorded)
        catalog = cls(store, None, identity)
        if model is not None:
            catalog._check_model(model)
            catalog._model = model
        store.remove_orphans()
        return catalog

    @classmethod
    def delete(cls, path: str | os.PathLike) -> None:
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
    def open_or_create(cls, path: str | os.PathLike, model: Any) -> Catalog:
        root = Path(path)
        if (root / DB_NAME).exists():
            return cls.open(root, model)
        return cls.create(root, model)

    def close(self) -> None:
        self._store.close()
        self._snapshot = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r}, model={self._identity.name!r})"

    # -- properties --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._store.root

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
        return list(self._store.get_meta("columns") or [])

    def __len__(self) -> int:
        return self._current().n_live

    def __contains__(self, product_id: object) -> bool:
        row = (
            self._store.connection()
            .execute("SELECT 1 FROM products WHERE id = ?", (str(product_id),))
            .fetchone()
        )
        return row is not None

    def ids(self) -> list[str]:
        return [r[0] for r in self._store.connection().execute("SELECT id FROM products")]

    def get(self, product_id: str) -> CatalogProduct | None:
        """The stored product, or None if the id is unknown."""
        row = (
            self._store.connection()
            .execute(
                "SELECT id, image, metadata, content_hash, updated_at FROM products WHERE id = ?",
                (str(product_id),),
            )
            .fetchone()
        )
        if row is None:
            return None
        return CatalogProduct(
            row[0], Path(row[1]) if row[1] else None, json.loads(row[2]), row[3], row[4]
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
        return {
            "path": str(self.path),
            "products": stats.products,
            "model": asdict(stats.model),
            "segments": stats.segments,
            "tombstones": stats.tombstones,
            "vector_bytes": stats.vector_bytes,
            "columns": stats.columns,
            "ann": None if self.ann_info is None else asdict(self.ann_info),
        }

    def stats(self) -> CatalogStats:
        snap = self._current()
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

    def facets(
        self, columns: Sequence[str] | None = None, limit: int | None = None
    ) -> dict[str, dict[MetadataValue, int]]:
        """Distinct values per metadata column with product counts, most frequent first.

        ``limit`` keeps the top values of each column (free-text columns have many).
        """
        snap = self._current()
        names = list(snap.columns) if columns is None else list(columns)
        self._check_columns(snap, names)
        result: dict[str, dict[MetadataValue, int]] = {}
        for name in names:
            codes, values, _ = self._column_codes(snap, name)
            valid = codes[codes >= 0]
            counts = np.bincount(valid, minlength=len(values))
            order = np.argsort(-counts, kind="stable")
            facet: dict[MetadataValue, int] = {}
            for code in order:
                if counts[code] == 0 or values[code] is None:
                    continue
                facet[values[code]] = int(counts[code])  # type: ignore[index]
                if limit is not None and len(facet) >= limit:
                    break
            result[name] = facet
        return result

    # -- writes ------------------------------------------------------------------------------

    def index(
        self,
        records: CatalogSource | Iterable[ProductRecord],
        *,
        batch_size: int = 32,
        commit_every: int = 1024,
        show_progress: bool = False,
        write_report: bool = True,
    ) -> IndexReport:
        """Add or update products, embedding only new ids and changed images.

        An image counts as changed when the sha256 of its bytes differs from the stored
        ``content_hash``; same bytes with other metadata or path only update the row. Bad
        images are skipped and listed in the report (an already indexed product whose new
        image is bad keeps its old vector). Every ``commit_every`` embedded images form a
        committed segment, so an interrupted run keeps its finished batches; at the end the
        run's segments are merged into one. The report is also written to
        ``<catalog>/index-report.json``.
        """
        model = self._require_model("index images")
        if batch_size <= 0 or commit_every <= 0:
            raise FashionCLIPError("batch_size and commit_every must be positive")
        items = records.records if isinstance(records, CatalogSource) else list(records)
        report = IndexReport(
            catalog=str(self.path), model=self._identity.name, started_at=now_iso()
        )
        unique: dict[str, ProductRecord] = {}
        for record in items:
            if record.id in unique:
                report.duplicates += 1
            else:
                unique[record.id] = record
        report.total = len(unique)
        existing = self._existing(list(unique))
        run = _IndexRun(self, model, report, batch_size, commit_every)
        started = time.perf_counter()
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(unique),
            unit="img",
            desc="indexing",
            disable=not show_progress,
            dynamic_ncols=True,
        )
        run.bar = bar
        try:
            for record in unique.values():
                run.visit(record, existing.get(record.id))
            run.finish()
        except BaseException:
            report.interrupted = True
            raise
        finally:
            bar.close()
            report.seconds = time.perf_counter() - started
            report.failed = len(report.failures)
            report.finished_at = now_iso()
            if write_report:
                self._write_report(report)
        return report

    def add_embeddings(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        metadata: Sequence[Mapping[str, MetadataValue]] | None = None,
        images: Sequence[str | os.PathLike | None] | None = None,
        content_hashes: Sequence[str | None] | None = None,
    ) -> None:
        """Store precomputed embeddings (one segment, one transaction), replacing same ids.

        For embeddings computed elsewhere (a GPU job, a benchmark). They must come from the
        catalog's model; rows are L2-normalised before storing.
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
            (
                str(pid),
                None if img is None else str(img),
                json.dumps(m, ensure_ascii=False),
                h,
                m,
            )
            for pid, img, m, h in zip(ids, paths, metas, hashes, strict=True)
        ]
        self._commit_batch(_normalise_rows(vectors), rows, [])

    def remove(self, ids: Iterable[str]) -> int:
        """Remove products (their vectors become tombstones). Returns how many existed."""
        wanted = [str(i) for i in ids]
        removed = 0
        with self._store.write() as con:
            for start in range(0, len(wanted), _SQL_CHUNK):
                chunk = wanted[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor = con.execute(f"DELETE FROM products WHERE id IN ({marks})", chunk)
                removed += cursor.rowcount
        return removed

    def compact(self) -> CompactReport:
        """Rewrite live vectors into fresh segments and drop tombstones and old files."""
        snap = self._current()
        before = CompactReport(len(snap.segments), snap.n_rows, snap.n_rows, snap.n_rows)
        if len(snap.segments) <= 1 and snap.n_rows == snap.n_live:
            return before
        self._merge_segments([s.id for s in snap.segments])
        after = self._current()
        return CompactReport(len(snap.segments), len(after.segments), snap.n_rows, after.n_rows)

    def build_ann(
        self,
        *,
        dtype: str = "f16",
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        show_progress: bool = False,
    ) -> AnnInfo:
        """Build the optional usearch HNSW index over the live vectors (``[scale]`` extra).

        The build runs without locks; the file is written and registered in one short write
        transaction. Products added later are scanned exactly next to it and removed ones
        are skipped; after :meth:`compact`, build it again.
        """
        from tqdm.auto import tqdm

        snap = self._current()
        if snap.n_live == 0:
            raise FashionCLIPError("the catalog is empty: nothing to build an ANN index of")
        index = new_index(self.embedding_dim, dtype, connectivity, expansion_add, expansion_search)
        started = time.perf_counter()
        bar = tqdm(total=snap.n_live, unit="vec", desc="ANN index", disable=not show_progress)
        for seg in snap.segments:
            local = np.flatnonzero(snap.live[seg.offset : seg.offset + seg.n_rows])
            for lo in range(0, len(local), 65_536):
                part = local[lo : lo + 65_536]
                keys = (seg.first_slot + part).astype(np.uint64)
                index.add(keys, np.asarray(seg.vectors[part]), threads=0)
                bar.update(len(part))
        bar.close()
        seconds = time.perf_counter() - started
        info = AnnInfo(
            file=f"usearch-{uuid.uuid4().hex[:12]}.index",
            segments=[s.id for s in snap.segments],
            size=snap.n_live,
            dtype=dtype,
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
            built_at=now_iso(),
            seconds=round(seconds, 3),
        )
        old = None
        with self._store.write() as con:
            present = {row[0] for row in con.execute("SELECT id FROM segments")}
            if not set(info.segments) <= present:
                raise FashionCLIPError(
                    "the catalog was compacted while the ANN index was built; build it again"
                )
            self._store.write_file(self.path / ANN_DIR, info.file, lambda p: index.save(str(p)))
            old = self._store.get_meta("ann", con)
            self._store.set_meta(con, "ann", info.to_meta())
        if isinstance(old, dict) and old.get("file") != info.file:
            self._store.delete_segment_files([old["file"]], self.path / ANN_DIR)
        return info

    def drop_ann(self) -> None:
        """Remove the ANN index (search becomes exact only)."""
        with self._store.write() as con:
            old = self._store.get_meta("ann", con)
            con.execute("DELETE FROM meta WHERE key = 'ann'")
        if isinstance(old, dict):
            self._store.delete_segment_files([old["file"]], self.path / ANN_DIR)

    @property
    def ann_info(self) -> AnnInfo | None:
        """The ANN index's description, or None (also None when it no longer applies)."""
        snap = self._current()
        return None if self._ann_usable(snap) is None else AnnInfo.from_meta(snap.ann or {})

    # -- search ------------------------------------------------------------------------------

    def search(
        self,
        query: str | os.PathLike | bytes | np.ndarray | Any | None = None,
        *,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        image: Any | None = None,
        like: str | None = None,
        vector: np.ndarray | Sequence[float] | None = None,
        exact: bool | None = None,
    ) -> list[SearchResult]:
        """The ``k`` products most similar to a query, best first.

        ``query`` is a text (``str``), an image (``pathlib.Path``, bytes, PIL image) or a
        vector (numpy array). Use ``image=`` for an image given as a string path, ``like=``
        for "more like this" from a product id (the product itself is excluded) and
        ``vector=`` for a raw embedding. ``filters`` maps a metadata column to a value or a
        list of accepted values (``{"gender": "Women", "articleType": ["Heels", "Flats"]}``).

        Search is exact unless the catalog has an ANN index (:meth:`build_ann`): then, with
        ``exact=None``, unfiltered and broadly filtered queries use it (scores stay exact,
        recall is approximate). ``exact=True`` forces the exact scan; ``exact=False``
        requires the ANN index.
        """
        given = [x for x in (query, image, like, vector) if x is not None]
        if len(given) != 1:
            raise InvalidQueryError(
                "give exactly one of: a text or image query, image=, like= or vector="
            )
        k = _check_k(k)
        snap = self._current()
        exclude: int | None = None
        if like is not None:
            snap, exclude = self._position_of(like, snap)
        candidates = self._candidates(snap, filters)  # validates filters before encoding
        if exclude is not None:
            q = snap.vector_at(exclude)
        elif vector is not None:
            q = self._as_vector(vector)
        elif image is not None:
            q = self._encode_image(image)
        elif isinstance(query, str):
            q = self._encode_text(query)
        elif isinstance(query, np.ndarray):
            q = self._as_vector(query)
        else:
            q = self._encode_image(query)
        ann = None if exact else self._ann_for(snap)
        if exact is False and ann is None:
            raise FashionCLIPError(
                "exact=False needs a current ANN index: run Catalog.build_ann() "
                "(or `fashionclip index --ann`)"
            )
        selective = candidates is not None and len(candidates) < _GATHER_FRACTION * snap.n_rows
        if ann is not None and (exact is False or not selective):
            positions, scores = _ann_top_k(snap, ann[0], ann[1], q, k, candidates, exclude)
        else:
            positions, scores = _top_k(snap, q, k, candidates, exclude)
        return self._results(snap, positions, scores)

    def more_like_this(
        self, product_id: str, *, k: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[SearchResult]:
        """Products most similar to ``product_id`` (which is excluded from the results)."""
        return self.search(like=product_id, k=k, filters=filters)

    # -- internals: ANN ----------------------------------------------------------------------

    def _ann_usable(self, snap: Snapshot) -> AnnInfo | None:
        """The ANN info when every segment it covers still exists (compaction invalidates)."""
        if not snap.ann:
            return None
        info = AnnInfo.from_meta(snap.ann)
        present = {s.id for s in snap.segments}
        return info if set(info.segments) <= present else None

    def _ann_for(self, snap: Snapshot) -> tuple[AnnInfo, Any] | None:
        info = self._ann_usable(snap)
        if info is None:
            return None
        cached = self._ann
        if cached is not None and cached[0] == info.file:
            return info, cached[1]
        with self._ann_lock:
            cached = self._ann
            if cached is None or cached[0] != info.file:
                index = load_index(self.path / ANN_DIR / info.file, info.expansion_search)
                cached = self._ann = (info.file, index)
        return info, cached[1]

    # -- internals: model --------------------------------------------------------------------

    def _check_model(self, model: Any) -> None:
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

    def _require_model(self, action: str) -> Any:
        if self._model is None:
            raise FashionCLIPError(
                f"this catalog was opened without a model; open it with the model "
                f"{self._identity.name!r} to {action}"
            )
        return self._model

    def _encode_text(self, text: str) -> np.ndarray:
        if not text.strip():
            raise InvalidQueryError("the query text is empty")
        model = self._require_model("search by text")
        return self._as_vector(model.encode_text(text))

    def _encode_image(self, image: Any) -> np.ndarray:
        model = self._require_model("search by image")
        if isinstance(image, PurePath):
            image = str(image)
        return self._as_vector(model.encode_images(image))

    def _as_vector(self, value: Any) -> np.ndarray:
        q = np.asarray(value, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.embedding_dim:
            raise InvalidQueryError(
                f"query vector has dimension {q.shape[0]}, catalog has {self.embedding_dim}"
            )
        norm = float(np.linalg.norm(q))
        if not np.isfinite(norm) or norm == 0.0:
            raise InvalidQueryError("query vector is zero or not finite")
        return q / norm

    # -- internals: snapshot, filters, results ----------------------------------------------

    def _current(self) -> Snapshot:
        generation = self._store.generation()
        snap = self._snapshot
        if snap is None or snap.generation != generation:
            with self._snapshot_lock:
                snap = self._snapshot
                if snap is None or snap.generation != generation:
                    snap = self._store.load_snapshot()
                    self._snapshot = snap
        return snap

    def _position_of(self, product_id: str, snap: Snapshot | None = None) -> tuple[Snapshot, int]:
        """The snapshot and row position holding a product's vector."""
        for _ in range(3):
            row = (
                self._store.connection()
                .execute("SELECT slot FROM products WHERE id = ?", (str(product_id),))
                .fetchone()
            )
            if row is None:
                raise ProductNotFoundError(f"no product {product_id!r} in catalog {self.path}")
            snap = snap or self._current()
            pos = int(_positions_in(snap, np.array([row[0]], dtype=np.int64))[0])
            if pos >= 0 and snap.live[pos]:
                return snap, pos
            snap = None  # written since the snapshot was taken: reload and retry
        raise ProductNotFoundError(f"product {product_id!r} is being rewritten; try again")

    def _check_columns(self, snap: Snapshot, names: Iterable[str]) -> None:
        unknown = [n for n in names if n not in snap.columns]
        if unknown:
            known = ", ".join(snap.columns) or "(none: the catalog has no metadata)"
            raise InvalidQueryError(
                f"unknown filter column(s) {', '.join(map(repr, unknown))}; known columns: {known}"
            )

    def _column_codes(
        self, snap: Snapshot, column: str
    ) -> tuple[np.ndarray, list[object], dict[object, int]]:
        """Per-position value codes of one column (-1: dead row), built once per snapshot."""
        cached = snap.column_codes.get(column)
        if cached is not None:
            return cached
        with snap.lock:
            cached = snap.column_codes.get(column)
            if cached is not None:
                return cached
            slots, raw = self._store.column_values(column)
            positions = _positions_in(snap, slots)
            codes = np.full(snap.n_rows, -1, dtype=np.int32)
            values: list[object] = []
            lookup: dict[object, int] = {}
            row_codes = np.empty(len(raw), dtype=np.int32)
            for i, value in enumerate(raw):
                key = _value_key(value)
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

    def _candidates(self, snap: Snapshot, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        """Positions allowed by ``filters`` (None: all live rows)."""
        if not filters:
            return None
        if not isinstance(filters, Mapping):
            raise InvalidQueryError("filters must be a mapping of column -> value(s)")
        self._check_columns(snap, filters)
        key_parts = []
        for column in sorted(filters):
            raw = filters[column]
            values = list(raw) if isinstance(raw, (list, tuple, set, frozenset)) else [raw]
            if not values:
                raise InvalidQueryError(f"filter {column!r} has an empty list of values")
            key_parts.append((column, tuple(sorted({str(_value_key(v)) for v in values}))))
        cache_key = tuple(key_parts)
        cached = snap.filter_cache.get(cache_key)
        if cached is not None:
            return cached
        mask = snap.live.copy()
        for column in sorted(filters):
            raw = filters[column]
            values = list(raw) if isinstance(raw, (list, tuple, set, frozenset)) else [raw]
            codes, _, lookup = self._column_codes(snap, column)
            wanted = [lookup[_value_key(v)] for v in values if _value_key(v) in lookup]
            if not wanted:
                mask[:] = False
                break
            if len(wanted) == 1:
                mask &= codes == wanted[0]
            else:
                mask &= np.isin(codes, wanted)
        candidates = np.flatnonzero(mask)
        if len(snap.filter_cache) > 256:
            snap.filter_cache.clear()
        snap.filter_cache[cache_key] = candidates
        return candidates

    def _results(
        self, snap: Snapshot, positions: np.ndarray, scores: np.ndarray
    ) -> list[SearchResult]:
        if len(positions) == 0:
            return []
        slots = [int(s) for s in snap.slots_of_positions(positions)]
        marks = ",".join("?" * len(slots))
        rows = self._store.connection().execute(
            f"SELECT slot, id, image, metadata FROM products WHERE slot IN ({marks})", slots
        )
        by_slot = {row[0]: row[1:] for row in rows}
        results = []
        for slot, score in zip(slots, scores, strict=True):
            row = by_slot.get(slot)
            if row is None:  # removed or updated since the snapshot was taken
                continue
            pid, image, metadata = row
            results.append(
                SearchResult(
                    pid, float(score), json.loads(metadata), Path(image) if image else None
                )
            )
        return results

    # -- internals: writes -------------------------------------------------------------------

    def _existing(self, ids: list[str]) -> dict[str, _Existing]:
        con = self._store.connection()
        found: dict[str, _Existing] = {}
        for start in range(0, len(ids), _SQL_CHUNK):
            chunk = ids[start : start + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            for pid, digest, image, metadata in con.execute(
                f"SELECT id, content_hash, image, metadata FROM products WHERE id IN ({marks})",
                chunk,
            ):
                found[pid] = _Existing(digest, image, metadata)
        return found

    def _commit_batch(
        self,
        vectors: np.ndarray | None,
        rows: list[tuple[str, str | None, str, str | None, Mapping[str, Any]]],
        metadata_updates: list[tuple[str, str | None, str, Mapping[str, Any]]],
    ) -> int | None:
        """One transaction: a new segment for ``rows`` (id, image, metadata JSON, hash, meta)
        plus metadata-only updates (id, image, metadata JSON, meta). Returns the segment id."""
        stamp = now_iso()
        seg_id = None
        with self._store.write() as con:
            columns = list(self._store.get_meta("columns", con) or [])
            known = set(columns)
            if vectors is not None and len(rows):
                seg_id, first = self._store.write_segment(con, vectors)
                con.executemany(
                    _UPSERT,
                    [
                        (pid, first + i, digest, image, meta_json, stamp)
                        for i, (pid, image, meta_json, digest, _) in enumerate(rows)
                    ],
                )
            con.executemany(
                "UPDATE products SET image = ?, metadata = ?, updated_at = ? WHERE id = ?",
                [(image, meta_json, stamp, pid) for pid, image, meta_json, _ in metadata_updates],
            )
            for meta in [r[4] for r in rows] + [u[3] for u in metadata_updates]:
                for name in meta:
                    if name not in known:
                        known.add(name)
                        columns.append(name)
            if len(columns) != len(self._store.get_meta("columns", con) or []):
                self._store.set_meta(con, "columns", columns)
        return seg_id

    def _merge_segments(self, segment_ids: Sequence[int]) -> None:
        """Rewrite the live rows of some segments into new ones, then drop the old ones."""
        if not segment_ids:
            return
        old_files: list[str] = []
        with self._store.write() as con:
            marks = ",".join("?" * len(segment_ids))
            segs = con.execute(
                f"SELECT id, file, first_slot, n_rows FROM segments WHERE id IN ({marks}) "
                "ORDER BY first_slot",
                list(segment_ids),
            ).fetchall()
            pending_slots: list[int] = []
            pending_vectors: list[np.ndarray] = []
            pending_count = 0

            def write_pending() -> None:
                nonlocal pending_count
                if not pending_slots:
                    return
                vectors = np.concatenate(pending_vectors)
                _, first = self._store.write_segment(con, vectors)
                con.executemany(
                    "UPDATE products SET slot = ? WHERE slot = ?",
                    [(first + i, old) for i, old in enumerate(pending_slots)],
                )
                pending_slots.clear()
                pending_vectors.clear()
                pending_count = 0

            for _seg_id, file, first_slot, n_rows in segs:
                live = np.array(
                    [
                        r[0]
                        for r in con.execute(
                            "SELECT slot FROM products WHERE slot >= ? AND slot < ? ORDER BY slot",
                            (first_slot, first_slot + n_rows),
                        )
                    ],
                    dtype=np.int64,
                )
                old_files.append(file)
                if len(live) == 0:
                    continue
                data = np.load(self._store.vectors_dir / file, mmap_mode="r")
                start = 0
                while start < len(live):
                    take = min(len(live) - start, _MAX_SEGMENT_ROWS - pending_count)
                    part = live[start : start + take]
                    pending_vectors.append(np.asarray(data[part - first_slot]))
                    pending_slots.extend(int(s) for s in part)
                    pending_count += take
                    start += take
                    if pending_count >= _MAX_SEGMENT_ROWS:
                        write_pending()
            write_pending()
            con.execute(f"DELETE FROM segments WHERE id IN ({marks})", list(segment_ids))
        self._store.delete_segment_files(old_files)

    def _write_report(self, report: IndexReport) -> None:
        target = self.path / REPORT_NAME
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)


class _IndexRun:
    """State of one :meth:`Catalog.index` call: pending images, embedded rows, counts."""

    def __init__(
        self, catalog: Catalog, model: Any, report: IndexReport, batch_size: int, commit_every: int
    ) -> None:
        self.catalog = catalog
        self.model = model
        self.report = report
        self.batch_size = batch_size
        self.commit_every = commit_every
        # Images handed to the model per call: several batches, so that it can decode the
        # next batch while it encodes one, yet small enough for a lively progress bar.
        self.embed_chunk = min(commit_every, max(batch_size, 256))
        self.pending: list[tuple[ProductRecord, str, bool]] = []
        self.vectors: list[np.ndarray] = []
        self.rows: list[tuple[str, str | None, str, str | None, Mapping[str, Any]]] = []
        self.row_is_update: list[bool] = []
        self.metadata_updates: list[tuple[str, str | None, str, Mapping[str, Any]]] = []
        self.segments: list[int] = []
        self.bar: Any = None

    def visit(self, record: ProductRecord, old: _Existing | None) -> None:
        image = str(record.image)
        try:
            digest = _sha256_file(record.image)
        except FileNotFoundError:
            self._fail(record, f"file not found: {image}")
            return
        except OSError as exc:
            self._fail(record, f"cannot read {image}: {exc.strerror or exc}")
            return
        if old is not None and old.content_hash == digest:
            if old.image != image or json.loads(old.metadata) != record.metadata:
                meta_json = json.dumps(record.metadata, ensure_ascii=False)
                self.metadata_updates.append((record.id, image, meta_json, record.metadata))
                if len(self.metadata_updates) >= 10 * self.commit_every:
                    self.commit()
            else:
                self.report.unchanged += 1
            self._advance(1)
            return
        self.pending.append((record, digest, old is not None))
        if len(self.pending) >= self.embed_chunk:
            self.embed()

    def embed(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        encoding = self.model.try_encode_images(
            [str(record.image) for record, _, _ in batch], batch_size=self.batch_size
        )
        embeddings = _normalise_rows(np.asarray(encoding.embeddings, dtype=np.float32))
        if len(embeddings) and embeddings.shape[1] != self.catalog.embedding_dim:
            raise CatalogFormatError(
                f"the model returned {embeddings.shape[1]}-d embeddings; the catalog holds "
                f"{self.catalog.embedding_dim}-d ones"
            )
        for row, index in enumerate(encoding.ok_indices):
            record, digest, is_update = batch[index]
            self.vectors.append(embeddings[row])
            self.rows.append(
                (
                    record.id,
                    str(record.image),
                    json.dumps(record.metadata, ensure_ascii=False),
                    digest,
                    record.metadata,
                )
            )
            self.row_is_update.append(is_update)
        for failure in encoding.failures:
            record = batch[failure.index][0]
            self.report.failures.append(IndexFailure(record.id, str(record.image), failure.reason))
        self._advance(len(batch))
        if len(self.rows) >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        if not self.rows and not self.metadata_updates:
            return
        vectors = np.stack(self.vectors) if self.rows else None
        seg_id = self.catalog._commit_batch(vectors, self.rows, self.metadata_updates)
        if seg_id is not None:
            self.segments.append(seg_id)
        updates = sum(self.row_is_update)
        self.report.updated += updates
        self.report.added += len(self.rows) - updates
        self.report.embedded += len(self.rows)
        self.report.metadata_updated += len(self.metadata_updates)
        self.vectors, self.rows, self.row_is_update, self.metadata_updates = [], [], [], []

    def finish(self) -> None:
        self.embed()
        self.commit()
        if len(self.segments) > 1:
            self.catalog._merge_segments(self.segments)

    def _fail(self, record: ProductRecord, reason: str) -> None:
        self.report.failures.append(IndexFailure(record.id, str(record.image), reason))
        self._advance(1)

    def _advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)


def _top_k(
    snap: Snapshot, q: np.ndarray, k: int, candidates: np.ndarray | None, exclude: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k positions and scores: dot products segment by segment, masked, merged."""
    if snap.n_rows == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if candidates is not None and len(candidates) < _GATHER_FRACTION * snap.n_rows:
        # Selective filter: score only the candidate rows (a gather is cheaper than a full pass).
        pool_positions = candidates if exclude is None else candidates[candidates != exclude]
        pool = _gather_scores(snap, pool_positions, q)
        return _select(pool, pool_positions, k, len(pool_positions))
    scores = np.empty(snap.n_rows, dtype=np.float32)
    for seg in snap.segments:
        # einsum, not BLAS gemv: single-threaded and memory-bound, it is as fast as gemv on
        # one core and does not stall when BLAS threads compete with other requests or
        # processes (multi-threaded OpenBLAS gemv was 2-10x slower under load; see design.md).
        np.einsum("ij,j->i", seg.vectors, q, out=scores[seg.offset : seg.offset + seg.n_rows])
    if candidates is None:
        if len(snap.dead):
            scores[snap.dead] = -np.inf
        n_valid = snap.n_live
        if exclude is not None and snap.live[exclude]:
            scores[exclude] = -np.inf
            n_valid -= 1
        pool, pool_positions = scores, None
    else:
        pool_positions = candidates if exclude is None else candidates[candidates != exclude]
        pool = scores[pool_positions]
        n_valid = len(pool_positions)
    return _select(pool, pool_positions, k, n_valid)


def _gather_scores(snap: Snapshot, positions: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact scores of some rows; ``positions`` must be sorted."""
    scores = np.empty(len(positions), dtype=np.float32)
    for seg in snap.segments:
        lo, hi = np.searchsorted(positions, [seg.offset, seg.offset + seg.n_rows])
        if hi > lo:
            rows = seg.vectors[positions[lo:hi] - seg.offset]
            np.einsum("ij,j->i", rows, q, out=scores[lo:hi])
    return scores


def _ann_top_k(
    snap: Snapshot,
    info: AnnInfo,
    index: Any,
    q: np.ndarray,
    k: int,
    candidates: np.ndarray | None,
    exclude: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k from the ANN index (re-scored exactly) merged with an exact scan of the segments
    added after it was built; falls back to the exact path if too few survive the filters."""
    fetch = max(4 * k, k + 32)
    if candidates is not None:
        fetch = int(fetch * snap.n_live / max(1, len(candidates))) + 1
    keys = search_keys(index, q, min(fetch, info.size))
    found = _positions_in(snap, keys)
    found = np.unique(found[found >= 0])
    found = found[snap.live[found]]
    if candidates is not None:
        at = np.searchsorted(candidates, found)
        at[at >= len(candidates)] = 0
        found = found[candidates[at] == found] if len(candidates) else found[:0]
    if exclude is not None:
        found = found[found != exclude]
    parts_pos = [found]
    parts_scores = [_gather_scores(snap, found, q)]
    covered = set(info.segments)
    for seg in snap.segments:
        if seg.id in covered:
            continue
        scores = np.einsum("ij,j->i", seg.vectors, q)
        valid = snap.live[seg.offset : seg.offset + seg.n_rows].copy()
        if candidates is not None:
            lo, hi = np.searchsorted(candidates, [seg.offset, seg.offset + seg.n_rows])
            allowed = np.zeros(seg.n_rows, dtype=bool)
            allowed[candidates[lo:hi] - seg.offset] = True
            valid &= allowed
        if exclude is not None and seg.offset <= exclude < seg.offset + seg.n_rows:
            valid[exclude - seg.offset] = False
        local = np.flatnonzero(valid)
        top_pos, top_scores = _select(scores[local], local + seg.offset, k, len(local))
        parts_pos.append(top_pos)
        parts_scores.append(top_scores)
    pool_positions = np.concatenate(parts_pos)
    pool = np.concatenate(parts_scores).astype(np.float32, copy=False)
    positions, scores = _select(pool, pool_positions, k, len(pool))
    if len(positions) < k:
        available = snap.n_live if candidates is None else len(candidates)
        if exclude is not None and (candidates is None or exclude in candidates):
            available -= 1
        if len(positions) < min(k, available):
            return _top_k(snap, q, k, candidates, exclude)
    return positions, scores


def _select(
    pool: np.ndarray, pool_positions: np.ndarray | None, k: int, n_valid: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of ``pool`` (best first) as positions; ``n_valid`` entries are not -inf."""
    kk = min(k, n_valid)
    if kk <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if kk < len(pool):
        top = np.argpartition(pool, len(pool) - kk)[len(pool) - kk :]
    else:
        top = np.arange(len(pool))
    top = top[np.argsort(-pool[top], kind="stable")]
    positions = top if pool_positions is None else pool_positions[top]
    return positions.astype(np.int64), pool[top]


def _positions_in(snap: Snapshot, slots: np.ndarray) -> np.ndarray:
    """Positions of ``slots`` in ``snap``; -1 for slots outside its segments."""
    if not snap.segments or len(slots) == 0:
        return np.full(len(slots), -1, dtype=np.int64)
    firsts = np.array([s.first_slot for s in snap.segments], dtype=np.int64)
    sizes = np.array([s.n_rows for s in snap.segments], dtype=np.int64)
    offsets = np.array([s.offset for s in snap.segments], dtype=np.int64)
    seg = np.searchsorted(firsts, slots, side="right") - 1
    inside = seg >= 0
    seg_c = np.where(inside, seg, 0)
    local = slots - firsts[seg_c]
    inside &= local < sizes[seg_c]
    return np.where(inside, offsets[seg_c] + local, -1)


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidQueryError(f"k must be a positive integer, got {k!r}")
    if k <= 0:
        raise InvalidQueryError(f"k must be a positive integer, got {k}")
    return int(k)


def _value_key(value: object) -> object:
    """Comparable form of a metadata value, so that filter "2012" matches the int 2012."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    if vectors.size == 0:
        return vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32, copy=False)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
