"""Indexing products into a catalog as three stages: reader -> embedder -> writer.

The *reader* compares each record with the stored product (sha256 of the image bytes) and
decides: unchanged, metadata-only update, needs embedding, or failed (unreadable file). The
*embedder* sends the images to embed to the model in chunks and turns its output into unit
rows. The *writer* commits every ``commit_every`` embedded rows as one segment (one
transaction) and merges the run's segments at the end. Each stage's time is summed into
:attr:`IndexReport.timings` (cf. clip-retrieval's reader/mapper/writer runner). Everything
is stored through :class:`~fashionclip.index.store.Store`'s public methods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from fashionclip.data.tables import CatalogSource, ProductRecord
from fashionclip.index.store import (
    CatalogFormatError,
    MetadataUpdate,
    ProductRow,
    Store,
    StoredProduct,
    now_iso,
)
from fashionclip.utils import normalise_rows, sha256_file

#: Stages reported in :attr:`IndexReport.timings`, in pipeline order.
STAGES = ("read", "embed", "write")


class IndexFailure(NamedTuple):
    """A product that could not be indexed: its id, image path and the reason."""

    id: str
    path: str
    reason: str


@dataclass
class IndexReport:
    """Counts of one :meth:`Catalog.index` run; counts only what was committed.

    ``updated`` products were re-embedded (image bytes changed); ``metadata_updated`` ones
    kept their vector and got new metadata or a new image path (same bytes). ``timings``
    holds the seconds spent in each stage (``read``, ``embed``, ``write``).
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
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    #: What the automatic ANN update did (action "built"/"extended", rows added, seconds).
    ann: dict[str, Any] | None = None

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = [f._asdict() for f in self.failures]
        data["images_per_second"] = round(self.images_per_second, 2)
        data["timings"] = {stage: round(s, 3) for stage, s in self.timings.items()}
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


class _ToEmbed(NamedTuple):
    record: ProductRecord
    digest: str
    is_update: bool


class Reader:
    """Decides what each record needs, from the stored rows and the image bytes' sha256."""

    def __init__(self, store: Store, ids: Sequence[str]) -> None:
        self.existing: dict[str, StoredProduct] = store.products(ids)

    def read(self, record: ProductRecord) -> _ToEmbed | MetadataUpdate | IndexFailure | None:
        """What to do with ``record``; None when it is unchanged."""
        image = str(record.image)
        try:
            digest = sha256_file(record.image)
        except FileNotFoundError:
            return IndexFailure(record.id, image, f"file not found: {image}")
        except OSError as exc:
            return IndexFailure(record.id, image, f"cannot read {image}: {exc.strerror or exc}")
        old = self.existing.get(record.id)
        if old is None or old.content_hash != digest:
            return _ToEmbed(record, digest, old is not None)
        if old.image != image or json.loads(old.metadata_json) != record.metadata:
            meta_json = json.dumps(record.metadata, ensure_ascii=False)
            return MetadataUpdate(record.id, image, meta_json, record.metadata)
        return None


class EmbedResult(NamedTuple):
    """One answer of an embedder: unit rows, their product rows, failures, items consumed."""

    vectors: np.ndarray
    rows: list[ProductRow]
    updates: list[bool]
    failures: list[IndexFailure]
    done: int


class Embedder:
    """Runs the model over images and returns unit rows, ready for the writer.

    Another engine (:mod:`fashionclip.index.distributed`) subclasses it and overrides
    :meth:`embed_stream`; the reader and the writer stay the same.
    """

    def __init__(self, model: Any, embedding_dim: int, batch_size: int) -> None:
        self.model = model
        self.embedding_dim = embedding_dim
        self.batch_size = batch_size

    def embed(
        self, batch: Sequence[_ToEmbed]
    ) -> tuple[np.ndarray, list[ProductRow], list[bool], list[IndexFailure]]:
        """``(vectors, rows, is_update per row, failures)`` for a chunk of images."""
        encoding = self.model.try_encode_images(
            [str(item.record.image) for item in batch], batch_size=self.batch_size
        )
        failed = [(f.index, f.reason) for f in encoding.failures]
        return self.assemble(batch, encoding.embeddings, encoding.ok_indices, failed)

    def embed_stream(self, batch: Sequence[_ToEmbed]) -> Iterator[EmbedResult]:
        """Results for ``batch`` as they come: here one, another engine may yield several."""
        yield EmbedResult(*self.embed(batch), len(batch))

    def assemble(
        self,
        batch: Sequence[_ToEmbed],
        embeddings: Any,
        ok_indices: Sequence[int],
        failed: Sequence[tuple[int, str]],
    ) -> tuple[np.ndarray, list[ProductRow], list[bool], list[IndexFailure]]:
        """Writer-ready output from a model's answer: unit rows for ``batch[ok_indices]``."""
        vectors = normalise_rows(np.asarray(embeddings, dtype=np.float32))
        if len(vectors) and vectors.shape[1] != self.embedding_dim:
            raise CatalogFormatError(
                f"the model returned {vectors.shape[1]}-d embeddings; the catalog holds "
                f"{self.embedding_dim}-d ones"
            )
        rows, updates = [], []
        for index in ok_indices:
            record, digest, is_update = batch[index]
            meta_json = json.dumps(record.metadata, ensure_ascii=False)
            rows.append(
                ProductRow(record.id, str(record.image), meta_json, digest, record.metadata)
            )
            updates.append(is_update)
        failures = [
            IndexFailure(batch[index].record.id, str(batch[index].record.image), reason)
            for index, reason in failed
        ]
        return vectors, rows, updates, failures


class Writer:
    """Buffers embedded rows and metadata updates; commits them in batches."""

    def __init__(self, store: Store, report: IndexReport) -> None:
        self.store = store
        self.report = report
        self.vectors: list[np.ndarray] = []
        self.rows: list[ProductRow] = []
        self.row_is_update: list[bool] = []
        self.metadata_updates: list[MetadataUpdate] = []
        self.segments: list[int] = []

    def add(self, vectors: np.ndarray, rows: Sequence[ProductRow], updates: Sequence[bool]) -> None:
        if len(rows):
            self.vectors.append(vectors)
            self.rows.extend(rows)
            self.row_is_update.extend(updates)

    def update(self, update: MetadataUpdate) -> int:
        """Buffer a metadata-only update; returns how many are buffered."""
        self.metadata_updates.append(update)
        return len(self.metadata_updates)

    def commit(self) -> None:
        """One transaction for everything buffered; counts go to the report once committed."""
        if not self.rows and not self.metadata_updates:
            return
        vectors = np.concatenate(self.vectors) if self.rows else None
        seg_id = self.store.commit_batch(vectors, self.rows, self.metadata_updates)
        if seg_id is not None:
            self.segments.append(seg_id)
        updates = sum(self.row_is_update)
        self.report.updated += updates
        self.report.added += len(self.rows) - updates
        self.report.embedded += len(self.rows)
        self.report.metadata_updated += len(self.metadata_updates)
        self.vectors, self.rows, self.row_is_update, self.metadata_updates = [], [], [], []

    def finish(self) -> None:
        """Commit the rest and merge this run's segments into one."""
        self.commit()
        if len(self.segments) > 1:
            self.store.merge_segments(self.segments)


class Indexer:
    """One indexing run over unique records: reader -> embedder -> writer, each timed."""

    def __init__(
        self,
        store: Store,
        model: Any,
        embedding_dim: int,
        report: IndexReport,
        *,
        batch_size: int = 32,
        commit_every: int = 1024,
        progress: Any = None,
        engine: Any = None,
    ) -> None:
        self.store = store
        self.report = report
        # engine: None embeds here; else an object with ``embedder(model, dim, batch_size)``
        # and ``window`` (e.g. fashionclip.index.distributed.RayEngine).
        self.embedder = (
            engine.embedder(model, embedding_dim, batch_size)
            if engine is not None
            else Embedder(model, embedding_dim, batch_size)
        )
        self.writer = Writer(store, report)
        self.commit_every = commit_every
        # Images handed to the model per call: several batches, so that it can decode the
        # next batch while it encodes one, yet small enough for a lively progress bar.
        # Another engine streams a bigger window through its workers (embed_stream).
        self.embed_chunk = (
            engine.window if engine is not None else min(commit_every, max(batch_size, 256))
        )
        self.pending: list[_ToEmbed] = []
        self.progress = progress

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.report.timings[name] += time.perf_counter() - started

    def run(self, records: Sequence[ProductRecord]) -> None:
        """Index ``records`` (ids unique); interrupted runs keep their committed batches."""
        with self._stage("read"):
            reader = Reader(self.store, [r.id for r in records])
        for record in records:
            with self._stage("read"):
                action = reader.read(record)
            if isinstance(action, _ToEmbed):
                self.pending.append(action)
                if len(self.pending) >= self.embed_chunk:
                    self._embed()
                continue
            if isinstance(action, IndexFailure):
                self.report.failures.append(action)
            elif isinstance(action, MetadataUpdate):
                # Cheap rows: committed in larger batches than embedded ones.
                if self.writer.update(action) >= 10 * self.commit_every:
                    self._commit()
            else:
                self.report.unchanged += 1
            self._advance(1)
        self._embed()
        with self._stage("write"):
            self.writer.finish()

    def _embed(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        results = self.embedder.embed_stream(batch)
        while True:
            with self._stage("embed"):
                result = next(results, None)
            if result is None:
                break
            self.writer.add(result.vectors, result.rows, result.updates)
            self.report.failures.extend(result.failures)
            self._advance(result.done)
            if len(self.writer.rows) >= self.commit_every:
                self._commit()

    def _commit(self) -> None:
        with self._stage("write"):
            self.writer.commit()

    def _advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.update(n)


def run_indexing(
    store: Store,
    model: Any,
    dim: int,
    report: IndexReport,
    records: CatalogSource | Iterable[ProductRecord],
    *,
    batch_size: int,
    commit_every: int,
    show_progress: bool,
    write_report: bool,
    engine: Any = None,
    finish: Callable[[IndexReport], None] | None = None,
) -> IndexReport:
    """One indexing run (what :meth:`Catalog.index` does): repeated ids dropped and counted,
    then :class:`Indexer` over the rest with a progress bar, ``finish(report)`` (the ANN
    update) inside the timed run, and the report written even when the run is interrupted."""
    from tqdm.auto import tqdm

    items = records.records if isinstance(records, CatalogSource) else list(records)
    unique: dict[str, ProductRecord] = {}
    for record in items:
        if record.id in unique:
            report.duplicates += 1
        else:
            unique[record.id] = record
    report.total = len(unique)
    if isinstance(records, CatalogSource):  # ids the reader already dropped as repeats
        report.duplicates += records.duplicates
    bar = tqdm(
        total=len(unique),
        unit="img",
        desc="indexing",
        disable=not show_progress,
        dynamic_ncols=True,
    )
    indexer = Indexer(
        store,
        model,
        dim,
        report,
        batch_size=batch_size,
        commit_every=commit_every,
        progress=bar,
        engine=engine,
    )
    started = time.perf_counter()
    try:
        indexer.run(list(unique.values()))
        if finish is not None:
            finish(report)
    except BaseException:
        report.interrupted = True
        raise
    finally:
        bar.close()
        report.seconds = time.perf_counter() - started
        report.failed = len(report.failures)
        report.finished_at = now_iso()
        if write_report:
            store.write_report(report.to_dict())
    return report
