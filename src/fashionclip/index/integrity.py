"""Integrity queries of the store, for :mod:`.check` (``fashionclip check --repair``): a mixin
of :class:`~fashionclip.index.store.Store`, kept apart so the store's everyday path stays short."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionclip.index.rows import CatalogDamagedError, StoredProduct

#: Products per SQL ``IN (...)`` list (SQLite allows 32,766 variables; stay far below).
SQL_CHUNK = 900


class IntegrityQueries:
    """What snapshot loading, the integrity checks and the repair need to verify (a segment's
    shape) or salvage (SQL)."""

    if TYPE_CHECKING:

        def connection(self) -> sqlite3.Connection: ...

        def write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def write_segment(
            self, con: sqlite3.Connection, vectors: np.ndarray
        ) -> tuple[int, int]: ...

        def delete_segment_files(
            self, names: Sequence[str], folder: Path | None = None
        ) -> None: ...

    root: Path
    vectors_dir: Path

    def open_segment(self, file: str, n_rows: int, dim: int) -> np.ndarray:
        """A committed segment, memory-mapped and checked to be ``(n_rows, dim)`` float32.

        Raises FileNotFoundError when it is missing (a compaction may have just deleted it)
        and :class:`CatalogDamagedError` when it is truncated or not a float32 array.
        """
        path = self.vectors_dir / file
        try:
            vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError) as exc:
            raise CatalogDamagedError(self.root, f"segment {file} is unreadable ({exc})") from None
        if vectors.shape != (n_rows, dim) or vectors.dtype != np.float32:
            raise CatalogDamagedError(
                self.root,
                f"segment {file} has shape {vectors.shape} {vectors.dtype}, expected "
                f"({n_rows}, {dim}) float32",
            )
        return vectors

    def quick_check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check`` messages (``["ok"]`` when the file is sound)."""
        return [str(row[0]) for row in self.connection().execute("PRAGMA quick_check")]

    def segment_rows(self) -> list[tuple[int, str, int, int, int]]:
        """``(id, file, first_slot, n_rows, dim)`` of every committed segment, in slot order."""
        return (
            self.connection()
            .execute("SELECT id, file, first_slot, n_rows, dim FROM segments ORDER BY first_slot")
            .fetchall()
        )

    def products_in_slots(self, first: int, stop: int) -> list[StoredProduct]:
        """The products whose slot lies in ``[first, stop)``, in slot order."""
        where = "slot >= ? AND slot < ? ORDER BY slot"
        return self._stored_products(where, (first, stop))

    def products_outside_segments(self) -> list[StoredProduct]:
        """Products whose slot no committed segment holds (a damaged catalog has them)."""
        where = (
            "NOT EXISTS (SELECT 1 FROM segments s WHERE products.slot >= s.first_slot "
            "AND products.slot < s.first_slot + s.n_rows)"
        )
        return self._stored_products(where, ())

    def _stored_products(self, where: str, params: Sequence[object]) -> list[StoredProduct]:
        rows = self.connection().execute(
            "SELECT id, slot, content_hash, image, metadata, updated_at FROM products "
            f"WHERE {where}",
            params,
        )
        return [StoredProduct(*row) for row in rows]

    def drop_segments(
        self,
        segment_ids: Sequence[int],
        product_ids: Sequence[str],
        salvaged: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """One transaction (for repair): forget damaged segments and the products that
        pointed at them; ``salvaged = (old_slots, vectors)`` are rows read back intact from
        them, written to a new segment with their products repointed. The damaged files are
        deleted after the commit."""
        files: list[str] = []
        with self.write() as con:
            if salvaged is not None and len(salvaged[0]):
                _, first = self.write_segment(con, salvaged[1])
                con.executemany(
                    "UPDATE products SET slot = ? WHERE slot = ?",
                    [(first + i, int(old)) for i, old in enumerate(salvaged[0])],
                )
            for seg_id in segment_ids:
                row = con.execute("SELECT file FROM segments WHERE id = ?", (seg_id,)).fetchone()
                if row is not None:
                    files.append(row[0])
                    con.execute("DELETE FROM segments WHERE id = ?", (seg_id,))
            for start in range(0, len(product_ids), SQL_CHUNK):
                chunk = list(product_ids[start : start + SQL_CHUNK])
                marks = ",".join("?" * len(chunk))
                con.execute(f"DELETE FROM products WHERE id IN ({marks})", chunk)
        self.delete_segment_files(files)
