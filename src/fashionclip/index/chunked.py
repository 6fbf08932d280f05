"""Indexing a source chunk by chunk (a streamed Parquet table), as one run with one report.

Each chunk goes through :meth:`Catalog.index <fashionclip.index.Catalog.index>` (reader ->
embedder -> writer, commits every ``commit_every`` rows), so memory holds one chunk at a time
and an interrupted run keeps every committed batch; a rerun skips them as usual. The chunk
reports are summed into one :class:`~fashionclip.index.indexer.IndexReport`, written to
``<catalog>/index-report.json`` at the end (also when the run stops early: then with the
committed counts of the chunk that stopped, read back from the report it wrote).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from fashionclip.data.tables import CatalogSource
from fashionclip.index.indexer import IndexFailure, IndexReport

_COUNTS = ("total", "added", "updated", "metadata_updated", "unchanged", "duplicates", "embedded")


def add_report(total: IndexReport, part: IndexReport) -> None:
    """Add ``part``'s counts, failures and times to ``total`` (the later run's end time)."""
    for name in _COUNTS:
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.failures.extend(part.failures)
    total.failed = len(total.failures)
    total.seconds += part.seconds
    total.finished_at = part.finished_at
    for stage, seconds in part.timings.items():
        total.timings[stage] = total.timings.get(stage, 0.0) + seconds


def _written_report(folder: Path) -> IndexReport:
    """The report a stopped ``Catalog.index`` wrote (its counts are of committed rows)."""
    from fashionclip.index.store import REPORT_NAME

    data = json.loads((folder / REPORT_NAME).read_text(encoding="utf-8"))
    data.pop("images_per_second", None)
    data["failures"] = [IndexFailure(**f) for f in data.get("failures", [])]
    return IndexReport(**data)


def index_chunks(
    catalog: Any,
    chunks: Iterable[CatalogSource],
    *,
    on_warnings: Callable[[Sequence[str]], None] | None = None,
    **index_options: Any,
) -> IndexReport:
    """Index every chunk into ``catalog``; ``index_options`` go to ``Catalog.index``."""
    from fashionclip.index.store import now_iso

    report = IndexReport(
        catalog=str(catalog.path), model=catalog.model_identity.name, started_at=now_iso()
    )
    try:
        for chunk in chunks:
            if on_warnings is not None and chunk.warnings:
                on_warnings(chunk.warnings)
            if not (chunk.records or chunk.duplicates):
                continue
            try:  # each chunk's report is written, then replaced by the sum at the end
                part = catalog.index(chunk, write_report=True, **index_options)
            except BaseException:
                add_report(report, _written_report(catalog.path))  # what it committed
                raise
            add_report(report, part)
    except BaseException:
        report.interrupted = True
        raise
    finally:
        report.finished_at = report.finished_at or now_iso()
        catalog.store.write_report(report.to_dict())
    return report
