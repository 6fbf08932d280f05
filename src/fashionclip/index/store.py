"""On-disk format of a catalog: one SQLite file (WAL) plus append-only ``.npy`` vector segments.

Layout of a catalog folder::

    catalog.sqlite        products(id, slot, content_hash, image, metadata JSON, updated_at)
                          segments(id, file, first_slot, n_rows, dim, created_at)
                          meta(key, value): format_version, model, columns, counters, generation
    vectors/seg-000001.npy  float32 (n_rows, dim); row i holds slot first_slot + i
    ann/usearch-*.index   optional approximate index (meta key "ann"), see ann.py
    index-report.json     the last indexing run (counts + failures)

A slot is live when a product row points at it; every other row of a segment is a tombstone.
Crash safety rests on one rule: a segment file is written to a temporary name, fsynced and
renamed *while the SQLite write lock is held*, and only then does the transaction that
references it commit. A file no committed row references is therefore an orphan of an
interrupted writer; openers that can take the write lock delete such files.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionclip.errors import FashionCLIPError

FORMAT_VERSION = 1
DB_NAME = "catalog.sqlite"
VECTORS_DIR = "vectors"
REPORT_NAME = "index-report.json"
ANN_DIR = "ann"

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


class CatalogNotFoundError(FashionCLIPError):
    """The folder is not a catalog (no catalog.sqlite), or it does not exist."""


class CatalogFormatError(FashionCLIPError):
    """The catalog was written by a newer, incompatible version of fashionclip, or is damaged."""


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Segment:
    """One memory-mapped vector file of a snapshot; ``offset`` is its first row position."""

    id: int
    file: str
    first_slot: int
    n_rows: int
    offset: int
    vectors: np.ndarray


@dataclass
class Snapshot:
    """What search needs, loaded once per catalog generation and then shared by all threads.

    Rows are addressed by *position*: segments in slot order, concatenated. ``live`` marks
    positions a product points at; ``dead`` lists the others (tombstones). Per-column value
    codes for filters and facets are built lazily and cached here.
    """

    generation: int
    dim: int
    segments: list[Segment]
    n_rows: int
    live: np.ndarray
    dead: np.ndarray
    n_live: int
    columns: list[str]
    ann: dict[str, Any] | None = None
    column_codes: dict[str, tuple[np.ndarray, list[object], dict[object, int]]] = field(
        default_factory=dict
    )
    filter_cache: dict[tuple, np.ndarray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def positions_of_slots(self, slots: np.ndarray) -> np.ndarray:
        """Row positions of the given slots (all must belong to a segment of this snapshot)."""
        if not self.segments:
            return np.zeros(0, dtype=np.int64)
        firsts = np.array([s.first_slot for s in self.segments], dtype=np.int64)
        offsets = np.array([s.offset for s in self.segments], dtype=np.int64)
        seg = np.searchsorted(firsts, slots, side="right") - 1
        return offsets[seg] + (slots - firsts[seg])

    def slots_of_positions(self, positions: np.ndarray) -> np.ndarray:
        offsets = np.array([s.offset for s in self.segments], dtype=np.int64)
        firsts = np.array([s.first_slot for s in self.segments], dtype=np.int64)
        seg = np.searchsorted(offsets, positions, side="right") - 1
        return firsts[seg] + (positions - offsets[seg])

    def vector_at(self, position: int) -> np.ndarray:
        for seg in self.segments:
            if seg.offset <= position < seg.offset + seg.n_rows:
                return np.array(seg.vectors[position - seg.offset], dtype=np.float32)
        raise IndexError(position)


class Store:
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
        version = self.get_meta("format_version")
        if version is None:
            raise CatalogFormatError(f"{self.db_path} has no format_version: not a catalog?")
        if int(version) > FORMAT_VERSION:
            raise CatalogFormatError(
                f"catalog {self.root} has format version {version}; this fashionclip reads "
                f"up to {FORMAT_VERSION}. Upgrade fashionclip."
            )

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str, con: sqlite3.Connection | None = None) -> object:
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

    # -- reads -------------------------------------------------------------------------------

    def load_snapshot(self) -> Snapshot:
        """Segments (memory-mapped), live mask and columns as of one consistent read."""
        for attempt in range(5):
            try:
                return self._load_snapshot()
            except FileNotFoundError:
                # A compaction deleted a file after our read began; read the new state.
                if attempt == 4:
                    raise
                time.sleep(0.05)
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
                vectors = np.load(self.vectors_dir / file, mmap_mode="r", allow_pickle=False)
                if vectors.shape != (n_rows, seg_dim) or vectors.dtype != np.float32:
                    raise CatalogFormatError(
                        f"segment {file} has shape {vectors.shape} {vectors.dtype}, expected "
                        f"({n_rows}, {seg_dim}) float32: the catalog is damaged"
                    )
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
            snap.live[snap.positions_of_slots(slots)] = True
        snap.dead = np.flatnonzero(~snap.live)
        return snap

    def column_values(self, column: str) -> tuple[np.ndarray, list[object]]:
        """``(slots, values)`` of one metadata column over all products (SQLite json_extract)."""
        path = '$."' + column.replace('"', '""') + '"'
        rows = self.connection().execute(
            "SELECT slot, json_extract(metadata, ?) FROM products", (path,)
        )
        slots: list[int] = []
        values: list[object] = []
        for slot, value in rows:
            slots.append(slot)
            values.append(value)
        return np.array(slots, dtype=np.int64), values


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
