"""A catalog table in chunks, so that a 10M-row table never sits in one process's memory.

:func:`iter_catalog_chunks` yields :class:`~fashionclip.data.tables.CatalogSource` chunks of
at most ``chunk_rows`` rows. Parquet is streamed record batch by record batch (pyarrow
``iter_batches``): only one chunk of rows, plus the ids met so far (for duplicate detection),
is held at a time. Rows become products exactly as :func:`~fashionclip.data.tables.read_table`
makes them (same ids, image paths, typed metadata), with line numbers counted from 1 over the
whole file.

CSV/TSV tables and image folders come as one chunk: :mod:`fashionclip.data.csvread` needs the
whole text (encoding detection, quoted fields spanning lines, one type per column), so a table
too big for memory should be converted to Parquet first (``pandas.read_csv(...).to_parquet``
in pieces, or any Arrow tool).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from fashionclip.data.csvread import PARQUET_SUFFIXES
from fashionclip.data.tables import (
    CatalogSource,
    CatalogSourceError,
    IdSubset,
    read_catalog_source,
    source_from_rows,
)

#: Rows per chunk when streaming a Parquet table.
DEFAULT_CHUNK_ROWS = 65536


def is_streamable(source: Path | str) -> bool:
    """Whether :func:`iter_catalog_chunks` streams ``source`` (a Parquet file)."""
    path = Path(source)
    return path.is_file() and path.suffix.lower() in PARQUET_SUFFIXES


def iter_catalog_chunks(
    source: Path | str,
    *,
    chunk_rows: int | None = None,
    id_column: str = "id",
    image_column: str | None = None,
    image_template: str | None = None,
    image_root: Path | str | None = None,
    subset: IdSubset | Iterable[str] | None = None,
    limit: int | None = None,
    encoding: str | None = None,
) -> Iterator[CatalogSource]:
    """Chunks of a catalog source; options as :func:`~fashionclip.data.tables.read_catalog_source`.

    A subset's ids (a set) are loaded once; ``limit`` counts products over all chunks.
    ``chunk_rows`` defaults to :data:`DEFAULT_CHUNK_ROWS`.
    """
    chunk_rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows
    if chunk_rows <= 0:
        raise CatalogSourceError(f"chunk_rows must be positive, got {chunk_rows}")
    if limit is not None and limit < 0:
        raise CatalogSourceError(f"limit must be >= 0, got {limit}")
    if not is_streamable(source):
        yield read_catalog_source(
            source,
            id_column=id_column,
            image_column=image_column,
            image_template=image_template,
            image_root=image_root,
            subset=subset,
            limit=limit,
            encoding=encoding,
        )
        return
    if image_column and image_template:
        raise CatalogSourceError("give either an image column or an image template, not both")
    wanted = _wanted_ids(subset)
    seen: dict[str, int] = {}
    remaining = limit
    path = Path(source)
    for _line, header, rows in _parquet_batches(path, chunk_rows):
        if remaining == 0:
            return
        chunk = source_from_rows(
            path, header, rows, [], id_column, image_column, image_template, image_root, seen
        )
        if wanted is not None:
            chunk.records = [r for r in chunk.records if r.id in wanted]
        if remaining is not None:
            chunk.records = chunk.records[:remaining]
            remaining -= len(chunk.records)
        yield chunk
    if wanted is not None and (missing := wanted - seen.keys()):
        example = ", ".join(sorted(missing)[:5])
        note = f"{len(missing)} selected id(s) are not in the source (e.g. {example})"
        yield CatalogSource([], [note], [], path)


def _wanted_ids(subset: IdSubset | Iterable[str] | None) -> set[str] | None:
    if subset is None:
        return None
    if isinstance(subset, IdSubset):
        return subset.load_ids()
    return {str(i) for i in subset}


def _parquet_batches(
    path: Path, chunk_rows: int
) -> Iterator[tuple[int, list[str], list[tuple[int, Sequence[object]]]]]:
    """``(first line, header, rows)`` per record batch; rows numbered from 1 over the file."""
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        header = [str(name) for name in file.schema_arrow.names]
        batches = file.iter_batches(batch_size=chunk_rows)
        line = 1
        for batch in batches:
            data = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            rows: list[tuple[int, Sequence[object]]] = [
                (line + i, [col[i] for col in data]) for i in range(batch.num_rows)
            ]
            yield line, header, rows
            line += batch.num_rows
    except CatalogSourceError:
        raise
    except Exception as exc:  # pyarrow raises many types for unreadable files
        raise CatalogSourceError(f"cannot read Parquet file {path}: {exc}") from None
