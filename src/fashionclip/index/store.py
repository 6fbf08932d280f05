"""On-disk format of a catalog: one SQLite file (WAL) plus append-only ``.npy`` vector segments.

Layout of a catalog folder::

    catalog.sqlite        products(id, slot, content_hash, image, metadata JSON, updated_at)
                          segments(id, file, first_slot, n_rows, dim, created_at)
                          meta(key, value): format_version, model, columns, counters, generation
    vectors/seg-000001.npy  float32 (n_rows, dim); row i holds slot first_slot + i
    ann/<backend>-*.index optional approximate index (meta key "ann"), see backends/
    index-report.json     the last indexing run (counts + failures)

A slot is live when a product row points at it; every other row of a segment is a tombstone.
Crash safety rests on one rule: a segment file is written to a temporary name, fsynced and
renamed *while the SQLite write lock is held*, and only then does the transaction that
references it commit. A file no committed row references is therefore an orphan of an
interrupted writer; openers that can take the write lock delete such files.

Every SQL statement and every file of a catalog is written here; :mod:`.catalog` and
:mod:`.indexer` call the public methods of :class:`Store`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError
from fashionclip.index.integrity import SQL_CHUNK, IntegrityQueries
from fashionclip.index.rows import (
    DB_NAME,
    CatalogDamagedError,
    CatalogFormatError,
    CatalogNotFoundError,
    MetadataUpdate,
    ProductRow,
    StoredProduct,
    now_iso,
)
from fashionclip.index.snapshot import Segment, Snapshot

FORMAT_VERSION = 1
VECTORS_DIR = "vectors"
REPORT_NAME = "index-report.json"
ANN_DIR = "ann"

#: Largest segment that merging writes (rows); 262,144 x 512 float32 = 512 MiB.
MAX_SEGMENT_ROWS = 262_144

_UPSERT = (
    "INSERT INTO products(id, slot, content_hash, image, metadata, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET slot = excluded.slot, "
    "content_hash = excluded.content_hash, image = excluded.image, "
    "metadata = excluded.metadata, updated_at = excluded.updated_at"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    id         INTEGER PRIMARY KEY,
    file       TEXT    NOT NULL UNIQUE,
    first_slot INTEGER NOT NULL UNIQUE,
    n_rows     INTEGER NOT NULL,
    dim        INTEGER NOT NULL,
    created_at TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    id           TEXT PRIMARY KEY,
    slot         INTEGER NOT NULL UNIQUE,
    content_hash TEXT,
    image        TEXT,
    metadata     TEXT NOT NULL DEFAULT '{}',
    updated_at   TEXT NOT NULL
);
"""


class Store(IntegrityQueries):
    """SQLite connections (one per thread), write transactions and segment files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self.vectors_dir = self.root / VECTORS_DIR
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.RLock()

    # -- connections -------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections must not be shared across threads)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA busy_timeout = 30000")
            con.execute("PRAGMA synchronous = FULL")
            self._local.con = con
            with self._connections_lock:
                self._connections.append(con)
        return con

    def close(self) -> None:
        with self._connections_lock:
            for con in self._connections:
                with suppress(sqlite3.Error):
                    con.close()
            self._connections.clear()
        self._local = threading.local()

    @classmethod
    def initialise(cls, root: Path, meta: dict[str, object]) -> Store:
        """Create the folder, schema and meta rows of a new catalog."""
        root.mkdir(parents=True, exist_ok=True)
        (root / VECTORS_DIR).mkdir(exist_ok=True)
        store = cls(root)
        con = store.connection()
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            rows = {
                "format_version": FORMAT_VERSION,
                "created_at": now_iso(),
                "generation": 0,
                "next_slot": 0,
                "next_segment": 1,
                "columns": [],
                **meta,
            }
            con.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in rows.items()],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return store

    def check_format(self) -> None:
        try:
            version = self.get_meta("format_version")
        except sqlite3.DatabaseError as exc:
            what = f"{DB_NAME} is unreadable ({exc})"
            raise CatalogDamagedError(self.root, what, repairable=False) from None
        if version is None:
            what = f"{DB_NAME} has no format_version"
            raise CatalogDamagedError(self.root, what, repairable=False)
        if int(version) > FORMAT_VERSION:
            raise CatalogFormatError(
                f"catalog {self.root} has format version {version}; this fashionclip reads "
                f"up to {FORMAT_VERSION}. Upgrade fashionclip."
            )

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str, con: sqlite3.Connection | None = None) -> Any:
        """A meta value (decoded JSON), None when the key is absent."""
        row = (
            (con or self.connection())
            .execute("SELECT value FROM meta WHERE key = ?", (key,))
            .fetchone()
        )
        return None if row is None else json.loads(row[0])

    @staticmethod
    def set_meta(con: sqlite3.Connection, key: str, value: object) -> None:
        con.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # -- writes ------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``) that bumps the catalog generation.

        Segment files must be written inside it (see the module docstring).
        """
        with self._write_lock:
            con = self.connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                generation = int(self.get_meta("generation", con) or 0) + 1
                self.set_meta(con, "generation", generation)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def write_file(self, folder: Path, name: str, write: Any) -> Path:
        """Create ``folder/name`` atomically: ``write(tmp_path)``, fsync, rename, fsync dir.

        Call it inside a write transaction so that the orphan sweep never sees the file
        before the transaction that references it commits.
        """
        folder.mkdir(exist_ok=True)
        final = folder / name
        tmp = folder / f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            write(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(folder)
        return final

    def write_segment(self, con: sqlite3.Connection, vectors: np.ndarray) -> tuple[int, int]:
        """Write ``vectors`` as a new segment inside the write transaction ``con``.

        Returns ``(segment_id, first_slot)``; the caller points products at
        ``first_slot + i`` before committing.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"a segment needs a non-empty 2-D array, got shape {vectors.shape}")
        seg_id = int(self.get_meta("next_segment", con))
        first_slot = int(self.get_meta("next_slot", con))
        name = f"seg-{seg_id:06d}.npy"

        def write(path: Path) -> None:
            with open(path, "wb") as handle:
                np.lib.format.write_array(handle, vectors, allow_pickle=False)

        self.write_file(self.vectors_dir, name, write)
        con.execute(
            "INSERT INTO segments(id, file, first_slot, n_rows, dim, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (seg_id, name, first_slot, len(vectors), vectors.shape[1], now_iso()),
        )
        self.set_meta(con, "next_segment", seg_id + 1)
        self.set_meta(con, "next_slot", first_slot + len(vectors))
        return seg_id, first_slot

    def remove_orphans(self) -> list[str]:
        """Delete vector files that no committed segment row references.

        Runs only if the write lock can be taken at once: a writer holds it from the moment it
        creates a file until its transaction commits, so no in-flight file is ever deleted.
        """
        if not self.vectors_dir.is_dir():
            return []
        con = self.connection()
        con.execute("PRAGMA busy_timeout = 0")
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return []  # another writer is active; the next open cleans up
        finally:
            con.execute("PRAGMA busy_timeout = 30000")
        removed: list[str] = []
        try:
            known = {row[0] for row in con.execute("SELECT file FROM segments")}
            ann = self.get_meta("ann", con)
            if isinstance(ann, dict):
                known.add(ann.get("file"))
            for folder in (self.vectors_dir, self.root / ANN_DIR):
                if not folder.is_dir():
                    continue
                for entry in os.scandir(folder):
                    if entry.is_file() and entry.name not in known:
                        try:
                            os.unlink(entry.path)
                            removed.append(entry.name)
                        except OSError:
                            pass
        finally:
            con.execute("COMMIT")
        return removed

    def delete_segment_files(self, names: Sequence[str], folder: Path | None = None) -> None:
        for name in names:
            # A file that cannot be deleted stays an orphan; a later open removes it.
            with suppress(OSError):
                ((folder or self.vectors_dir) / name).unlink()

    def commit_batch(
        self,
        vectors: np.ndarray | None,
        rows: Sequence[ProductRow],
        metadata_updates: Sequence[MetadataUpdate] = (),
    ) -> int | None:
        """One transaction: a new segment holding ``vectors`` for ``rows`` (upserted, row i
        at the segment's slot i) plus metadata-only updates; new metadata columns are added
        to the ``columns`` meta row. Returns the new segment's id (None without rows)."""
        stamp = now_iso()
        seg_id = None
        with self.write() as con:
            if vectors is not None and len(rows):
                seg_id, first = self.write_segment(con, vectors)
                con.executemany(
                    _UPSERT,
                    [
                        (r.id, first + i, r.content_hash, r.image, r.metadata_json, stamp)
                        for i, r in enumerate(rows)
                    ],
                )
            con.executemany(
                "UPDATE products SET image = ?, metadata = ?, updated_at = ? WHERE id = ?",
                [(u.image, u.metadata_json, stamp, u.id) for u in metadata_updates],
            )
            metas = [r.metadata for r in rows] + [u.metadata for u in metadata_updates]
            self._add_columns(con, metas)
        return seg_id

    def _add_columns(self, con: sqlite3.Connection, metas: Iterable[Mapping[str, Any]]) -> None:
        columns = list(self.get_meta("columns", con) or [])
        count = len(columns)
        known = set(columns)
        for meta in metas:
            for name in meta:
                if name not in known:
                    known.add(name)
                    columns.append(name)
        if len(columns) != count:
            self.set_meta(con, "columns", columns)

    def merge_segments(self, segment_ids: Sequence[int], max_rows: int = MAX_SEGMENT_ROWS) -> None:
        """Rewrite the live rows of some segments into new ones (at most ``max_rows`` rows
        each), repoint their products, then drop the old segments and files."""
        if not segment_ids:
            return
        old_files: list[str] = []
        with self.write() as con:
            marks = ",".join("?" * len(segment_ids))
            segs = con.execute(
                f"SELECT file, first_slot, n_rows FROM segments WHERE id IN ({marks}) "
                "ORDER BY first_slot",
                list(segment_ids),
            ).fetchall()
            pending = _PendingSegment(self, con, max_rows)
            for file, first_slot, n_rows in segs:
                old_files.append(file)
                live = np.fromiter(
                    (
                        r[0]
                        for r in con.execute(
                            "SELECT slot FROM products WHERE slot >= ? AND slot < ? ORDER BY slot",
                            (first_slot, first_slot + n_rows),
                        )
                    ),
                    dtype=np.int64,
                )
                if len(live):
                    data = np.load(self.vectors_dir / file, mmap_mode="r")
                    pending.extend(live, data, first_slot)
            pending.flush()
            con.execute(f"DELETE FROM segments WHERE id IN ({marks})", list(segment_ids))
        self.delete_segment_files(old_files)

    def remove_products(self, ids: Sequence[str]) -> int:
        """Delete product rows (their vectors become tombstones); returns how many existed."""
        removed = 0
        with self.write() as con:
            for start in range(0, len(ids), SQL_CHUNK):
                chunk = list(ids[start : start + SQL_CHUNK])
                marks = ",".join("?" * len(chunk))
                cursor = con.execute(f"DELETE FROM products WHERE id IN ({marks})", chunk)
                removed += cursor.rowcount
        return removed

    def set_ann(
        self, meta: dict[str, Any], write: Callable[[Path], None], segment_ids: Iterable[int]
    ) -> None:
        """Write the ANN file ``meta["file"]`` and record ``meta`` in one transaction; the
        previous ANN file is deleted. Refused when a segment it covers is gone (compacted)."""
        with self.write() as con:
            present = {row[0] for row in con.execute("SELECT id FROM segments")}
            if not set(segment_ids) <= present:
                raise FashionCLIPError(
                    "the catalog was compacted while the ANN index was built; build it again"
                )
            self.write_file(self.root / ANN_DIR, str(meta["file"]), write)
            old = self.get_meta("ann", con)
            self.set_meta(con, "ann", meta)
        old_file = old.get("file") if isinstance(old, dict) else None
        if isinstance(old_file, str) and old_file != meta["file"]:
            self.delete_segment_files([old_file], self.root / ANN_DIR)

    def drop_ann(self) -> None:
        """Forget the ANN index and delete its file."""
        with self.write() as con:
            old = self.get_meta("ann", con)
            con.execute("DELETE FROM meta WHERE key = 'ann'")
        if isinstance(old, dict) and isinstance(old.get("file"), str):
            self.delete_segment_files([old["file"]], self.root / ANN_DIR)

    def write_report(self, data: Mapping[str, Any]) -> None:
        """Replace ``index-report.json`` (best effort: a read-only folder keeps the old one)."""
        target = self.root / REPORT_NAME
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)

    # -- product reads -----------------------------------------------------------------------

    def product(self, product_id: str) -> StoredProduct | None:
        return self._products_where("id", [product_id]).get(product_id)

    def products(self, ids: Sequence[str]) -> dict[str, StoredProduct]:
        """The stored rows of those ``ids`` that exist, by id."""
        return {p.id: p for p in self._products_where("id", ids).values()}

    def products_at(self, slots: Sequence[int]) -> dict[int, StoredProduct]:
        """The products at ``slots``, by slot (slots no product points at are left out)."""
        found = self._products_where("slot", [int(s) for s in slots])
        return {p.slot: p for p in found.values()}

    def _products_where(self, column: str, values: Sequence[object]) -> dict[object, StoredProduct]:
        """Rows whose ``column`` ("id" or "slot") is one of ``values``, keyed by that value."""
        con = self.connection()
        found: dict[object, StoredProduct] = {}
        for start in range(0, len(values), SQL_CHUNK):
            chunk = list(values[start : start + SQL_CHUNK])
            marks = ",".join("?" * len(chunk))
            for row in con.execute(
                "SELECT id, slot, content_hash, image, metadata, updated_at FROM products "
                f"WHERE {column} IN ({marks})",
                chunk,
            ):
                product = StoredProduct(*row)
                found[getattr(product, column)] = product
        return found

    def slot_of(self, product_id: str) -> int | None:
        row = (
            self.connection()
            .execute("SELECT slot FROM products WHERE id = ?", (product_id,))
            .fetchone()
        )
        return None if row is None else int(row[0])

    def product_ids(self) -> list[str]:
        return [r[0] for r in self.connection().execute("SELECT id FROM products")]

    def columns(self) -> list[str]:
        """Metadata column names, in order of first appearance."""
        return list(self.get_meta("columns") or [])

    # -- reads -------------------------------------------------------------------------------

    def load_snapshot(self) -> Snapshot:
        """Segments (memory-mapped), live mask and columns as of one consistent read."""
        for attempt in range(5):
            try:
                return self._load_snapshot()
            except FileNotFoundError as exc:
                # A compaction deleted a file after our read began; read the new state.
                if attempt == 4:
                    name = Path(exc.filename or "?").name
                    raise CatalogDamagedError(self.root, f"segment {name} is missing") from None
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                what = f"{DB_NAME} is unreadable ({exc})"
                raise CatalogDamagedError(self.root, what, repairable=False) from None
        raise AssertionError("unreachable")

    def _load_snapshot(self) -> Snapshot:
        con = self.connection()
        con.execute("BEGIN")
        try:
            generation = int(self.get_meta("generation", con) or 0)
            model = self.get_meta("model", con) or {}
            columns = list(self.get_meta("columns", con) or [])
            ann = self.get_meta("ann", con)
            seg_rows = con.execute(
                "SELECT id, file, first_slot, n_rows, dim FROM segments ORDER BY first_slot"
            ).fetchall()
            slots = np.fromiter(
                (row[0] for row in con.execute("SELECT slot FROM products")), dtype=np.int64
            )
            segments: list[Segment] = []
            offset = 0
            dim = int(model.get("embedding_dim", 0))
            for seg_id, file, first_slot, n_rows, seg_dim in seg_rows:
                vectors = self.open_segment(file, n_rows, seg_dim)
                if dim and seg_dim != dim:
                    raise CatalogFormatError(
                        f"segment {file} has dimension {seg_dim}, catalog has {dim}"
                    )
                segments.append(Segment(seg_id, file, first_slot, n_rows, offset, vectors))
                offset += n_rows
        finally:
            con.execute("COMMIT")
        snap = Snapshot(
            generation=generation,
            dim=dim,
            segments=segments,
            n_rows=offset,
            live=np.zeros(offset, dtype=bool),
            dead=np.zeros(0, dtype=np.int64),
            n_live=len(slots),
            columns=columns,
            ann=ann if isinstance(ann, dict) else None,
        )
        if len(slots):
            positions = snap.positions_in(slots)
            if (positions < 0).any():
                n = int((positions < 0).sum())
                raise CatalogDamagedError(self.root, f"{n} products point at no committed segment")
            snap.live[positions] = True
        snap.dead = np.flatnonzero(~snap.live)
        return snap

    def column_values(self, column: str) -> tuple[np.ndarray, list[Any]]:
        """``(slots, values)`` of one metadata column over all products (SQLite json_extract)."""
        path = '$."' + column.replace('"', '""') + '"'
        rows = self.connection().execute(
            "SELECT slot, json_extract(metadata, ?) FROM products", (path,)
        )
        slots: list[int] = []
        values: list[Any] = []
        for slot, value in rows:
            slots.append(slot)
            values.append(value)
        return np.array(slots, dtype=np.int64), values


class _PendingSegment:
    """Rows being gathered into merged segments of at most ``max_rows`` rows."""

    def __init__(self, store: Store, con: sqlite3.Connection, max_rows: int) -> None:
        self.store, self.con, self.max_rows = store, con, max_rows
        self.slots: list[int] = []
        self.vectors: list[np.ndarray] = []

    def extend(self, slots: np.ndarray, vectors: np.ndarray, first_slot: int) -> None:
        """Queue the rows of ``slots`` from a segment (``vectors``) starting at ``first_slot``."""
        start = 0
        while start < len(slots):
            part = slots[start : start + self.max_rows - len(self.slots)]
            self.vectors.append(np.asarray(vectors[part - first_slot]))
            self.slots.extend(int(s) for s in part)
            start += len(part)
            if len(self.slots) >= self.max_rows:
                self.flush()

    def flush(self) -> None:
        if not self.slots:
            return
        _, first = self.store.write_segment(self.con, np.concatenate(self.vectors))
        self.con.executemany(
            "UPDATE products SET slot = ? WHERE slot = ?",
            [(first + i, old) for i, old in enumerate(self.slots)],
        )
        self.slots, self.vectors = [], []


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "DB_NAME",
    "CatalogDamagedError",
    "CatalogFormatError",
    "CatalogNotFoundError",
    "MetadataUpdate",
    "ProductRow",
    "Store",
    "StoredProduct",
    "now_iso",
]
