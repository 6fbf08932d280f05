"""Reading catalog sources: a folder of images, or a table (CSV / Parquet) of products.

Every reader returns a :class:`CatalogSource`: typed :class:`ProductRecord` rows (string id,
image path, metadata) plus human-readable ``warnings``. Problems that affect single rows
(extra commas, unterminated quotes, duplicate ids, ids of a subset file that are not in the
table) become warnings with line numbers, never exceptions, so that one odd line does not stop
a 44,000-row catalog. Mistakes that make the whole source unusable (missing, binary or
undecodable file, missing id column, unknown template field) raise :class:`CatalogSourceError`.

Tables are parsed by :func:`fashionclip.data.csvread.read_rows` (encodings, KAGL's extra-comma
lines, unterminated quotes: see there); this module turns rows into products.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fashionclip.data.csvread import PARQUET_SUFFIXES, ExtraFields, TableError, read_rows

MetadataValue = str | int | float | None

#: File suffixes treated as images when a folder is read.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
#: File suffixes read as tables.
TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".parquet", ".pq"})
#: Where images are looked for when neither an image column nor a template is given.
DEFAULT_IMAGE_TEMPLATE = "images/{id}.jpg"


class CatalogSourceError(TableError):
    """A catalog source cannot be read as a whole (missing file, no id column, bad option)."""


@dataclass(frozen=True)
class ProductRecord:
    """One product to index: its id (always a string), image file and metadata columns."""

    id: str
    image: Path
    metadata: dict[str, MetadataValue] = field(default_factory=dict)


@dataclass
class CatalogSource:
    """Products read from a source, in source order, and the row-level problems met."""

    records: list[ProductRecord]
    warnings: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    source: Path | None = None
    #: Rows (or image files) skipped because their id was already used (each is a warning).
    duplicates: int = 0

    def __len__(self) -> int:
        return len(self.records)

    def ids(self) -> list[str]:
        return [record.id for record in self.records]


@dataclass(frozen=True)
class IdSubset:
    """Select products by id from another table, e.g. one split of ``splits.csv``.

    ``IdSubset("splits.csv", column="split", value="test")`` keeps the ids whose ``split`` is
    ``test``; without ``column`` every id listed in the file is kept. ``value`` may be a list.
    """

    path: Path | str
    column: str | None = None
    value: str | Sequence[str] | None = None
    id_column: str = "id"
    encoding: str | None = None  # None: detected (see fashionclip.data.csvread)

    @classmethod
    def parse(
        cls,
        path: Path | str,
        where: str | None = None,
        id_column: str = "id",
        encoding: str | None = None,
    ) -> IdSubset:
        """Build from CLI-style options: ``where`` is ``COLUMN=VALUE`` (``VALUE`` may be ``a|b``)."""
        if where is None:
            return cls(path, id_column=id_column, encoding=encoding)
        column, sep, value = where.partition("=")
        if not sep or not column.strip():
            raise CatalogSourceError(f"--ids-where must look like COLUMN=VALUE, got {where!r}")
        values = [v.strip() for v in value.split("|")]
        chosen = values if len(values) > 1 else values[0]
        return cls(path, column.strip(), chosen, id_column, encoding)

    def load_ids(self) -> set[str]:
        """The selected ids, as strings."""
        path = Path(self.path)
        header, rows, _ = _read_rows(path, encoding=self.encoding)
        if self.id_column not in header:
            raise CatalogSourceError(
                f"id subset file {path} has no column {self.id_column!r} (columns: {', '.join(header)})"
            )
        id_pos = header.index(self.id_column)
        if self.column is None:
            return {_id_string(row[id_pos]) for _, row in rows if row[id_pos] not in ("", None)}
        if self.column not in header:
            raise CatalogSourceError(
                f"id subset file {path} has no column {self.column!r} (columns: {', '.join(header)})"
            )
        col_pos = header.index(self.column)
        wanted = {self.value} if isinstance(self.value, str) else {str(v) for v in self.value or ()}
        return {
            _id_string(row[id_pos])
            for _, row in rows
            if row[id_pos] not in ("", None) and _cell_string(row[col_pos]) in wanted
        }


def read_catalog_source(
    source: Path | str,
    *,
    id_column: str = "id",
    image_column: str | None = None,
    image_template: str | None = None,
    image_root: Path | str | None = None,
    subset: IdSubset | Iterable[str] | None = None,
    limit: int | None = None,
    extra_fields: ExtraFields = "merge_last",
    encoding: str | None = None,
    follow_symlinks: bool = False,
) -> CatalogSource:
    """Read a folder of images or a CSV/Parquet table into a :class:`CatalogSource`.

    A folder gives one product per image file (id = path relative to the folder, without
    suffix). A table gives one product per row; its image is ``row[image_column]`` or
    ``image_template.format(**row)`` (default ``images/{id}.jpg``), relative to ``image_root``
    (default: the table's folder). ``subset`` keeps only some ids; ``limit`` the first N.
    ``encoding`` is the table's text encoding (default: detected, see
    :func:`fashionclip.data.csvread.decode_table`).
    """
    path = Path(source)
    if not path.exists():
        raise CatalogSourceError(f"catalog source not found: {path}")
    if path.is_dir():
        if image_column or image_template:
            raise CatalogSourceError(
                "--image-column / --image-template apply to tables; a folder is read as images"
            )
        result = read_image_folder(path, follow_symlinks=follow_symlinks)
    else:
        result = read_table(
            path,
            id_column=id_column,
            image_column=image_column,
            image_template=image_template,
            image_root=image_root,
            extra_fields=extra_fields,
            encoding=encoding,
        )
    if subset is not None:
        _apply_subset(result, subset)
    if limit is not None:
        if limit < 0:
            raise CatalogSourceError(f"limit must be >= 0, got {limit}")
        result.records = result.records[:limit]
    missing = [r for r in result.records if not r.image.is_file()]
    if missing:
        examples = ", ".join(f"{r.id} ({r.image})" for r in missing[:3])
        result.warnings.append(
            f"{len(missing)} product(s) have no image file, e.g. {examples}; "
            "indexing will report them as failures"
        )
    return result


def read_image_folder(folder: Path | str, follow_symlinks: bool = False) -> CatalogSource:
    """Every image file under ``folder`` (recursively, sorted); id = relative path without suffix.

    A symbolic link that leads out of the folder (a file, or a linked folder, which is not
    entered) is skipped with a warning unless ``follow_symlinks``: indexing a folder never
    silently reads what lies elsewhere.
    """
    root = Path(folder)
    real_root = root.resolve()
    records: list[ProductRecord] = []
    warnings: list[str] = []
    seen: dict[str, Path] = {}
    duplicates = 0
    hint = "skipped (--follow-symlinks to index it)"
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        kept = []
        for name in sorted(d for d in dirnames if not d.startswith(".")):
            sub = Path(dirpath) / name
            if not follow_symlinks and sub.is_symlink():
                warnings.append(f"{sub}: a link to the folder {sub.resolve()}; {hint}")
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            file = Path(dirpath) / name
            if name.startswith(".") or file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            target = file.resolve()
            if not follow_symlinks and not target.is_relative_to(real_root):
                warnings.append(f"{file}: a link to {target}, outside {root}; {hint}")
                continue
            product_id = file.relative_to(root).with_suffix("").as_posix()
            if product_id in seen:
                warnings.append(
                    f"{file}: id {product_id!r} already used by {seen[product_id]}; skipped"
                )
                duplicates += 1
                continue
            seen[product_id] = file
            records.append(ProductRecord(product_id, target, {}))
    return CatalogSource(records, warnings, [], root, duplicates)


def read_table(
    path: Path | str,
    *,
    id_column: str = "id",
    image_column: str | None = None,
    image_template: str | None = None,
    image_root: Path | str | None = None,
    extra_fields: ExtraFields = "merge_last",
    encoding: str | None = None,
) -> CatalogSource:
    """Read a CSV/TSV/Parquet product table. See :func:`read_catalog_source`."""
    table = Path(path)
    if image_column and image_template:
        raise CatalogSourceError("give either an image column or an image template, not both")
    header, rows, warnings = _read_rows(table, extra_fields, encoding)
    return source_from_rows(
        table, header, rows, warnings, id_column, image_column, image_template, image_root
    )


def source_from_rows(
    table: Path,
    header: list[str],
    rows: Sequence[tuple[int, Sequence[object]]],
    warnings: list[str],
    id_column: str = "id",
    image_column: str | None = None,
    image_template: str | None = None,
    image_root: Path | str | None = None,
    seen: dict[str, int] | None = None,
) -> CatalogSource:
    """Products of ``(line, cells)`` rows of ``table`` (all of it, or one chunk of it).

    ``seen`` (id -> first line) carries duplicate detection across the chunks of one table
    (:mod:`fashionclip.data.chunks`). Parquet cells keep their types; CSV columns are typed
    from the rows given.
    """
    if id_column not in header:
        raise CatalogSourceError(
            f"{table} has no id column {id_column!r} (columns: {', '.join(header)}); "
            "pass --id-column"
        )
    if image_column and image_column not in header:
        raise CatalogSourceError(
            f"{table} has no image column {image_column!r} (columns: {', '.join(header)})"
        )
    template = None if image_column else (image_template or DEFAULT_IMAGE_TEMPLATE)
    if template is not None:
        _check_template(template, header)
    root = Path(image_root) if image_root is not None else table.parent
    root = root.resolve()

    meta_columns = [c for c in header if c not in (id_column, image_column)]
    converters: dict[str, Callable[[object], MetadataValue]]
    if table.suffix.lower() in PARQUET_SUFFIXES:
        converters = {c: _typed_value for c in header}
    else:
        converters = {
            c: _column_converter([row[header.index(c)] for _, row in rows]) for c in header
        }
    id_pos = header.index(id_column)
    records: list[ProductRecord] = []
    seen = {} if seen is None else seen
    duplicates = 0
    for line_no, row in rows:
        raw_id = row[id_pos]
        if raw_id in ("", None):
            warnings.append(f"{table.name} line {line_no}: empty id; skipped")
            continue
        product_id = _id_string(raw_id)
        if product_id in seen:
            warnings.append(
                f"{table.name} line {line_no}: duplicate id {product_id!r} "
                f"(first at line {seen[product_id]}); skipped"
            )
            duplicates += 1
            continue
        seen[product_id] = line_no
        cells = {c: row[i] for i, c in enumerate(header)}
        if image_column:
            value = cells[image_column]
            if value in ("", None):
                warnings.append(f"{table.name} line {line_no}: empty image column; skipped")
                continue
            image = Path(_cell_string(value))
        else:
            strings = {c: _cell_string(v) for c, v in cells.items()}
            strings[id_column] = product_id
            strings.setdefault("id", product_id)
            image = Path(template.format_map(strings))  # type: ignore[union-attr]
        if not image.is_absolute():
            image = root / image
        metadata = {c: converters[c](cells[c]) for c in meta_columns}
        records.append(ProductRecord(product_id, image, metadata))
    return CatalogSource(records, warnings, meta_columns, table, duplicates)


def _apply_subset(result: CatalogSource, subset: IdSubset | Iterable[str]) -> None:
    if isinstance(subset, IdSubset):
        wanted = subset.load_ids()
        label = f"{Path(subset.path).name}"
        if subset.column is not None:
            label += f" where {subset.column}={subset.value}"
    else:
        wanted = {str(i) for i in subset}
        label = "the given ids"
    present = {r.id for r in result.records}
    missing = wanted - present
    result.records = [r for r in result.records if r.id in wanted]
    if missing:
        example = ", ".join(sorted(missing)[:5])
        result.warnings.append(
            f"{len(missing)} id(s) selected by {label} are not in the source (e.g. {example})"
        )


def _read_rows(
    path: Path,
    extra_fields: ExtraFields = "merge_last",
    encoding: str | None = None,
) -> tuple[list[str], list[tuple[int, Sequence[object]]], list[str]]:
    """Header, ``(line_number, cells)`` rows and warnings of a table (see :func:`read_rows`)."""
    try:
        table = read_rows(path, encoding=encoding, extra_fields=extra_fields)
    except TableError as exc:
        raise CatalogSourceError(str(exc)) from None
    return table.columns, table.rows, table.warnings


def _check_template(template: str, header: Sequence[str]) -> None:
    import string

    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise CatalogSourceError(f"bad image template {template!r}: {exc}") from None
    unknown = [f for f in names if f not in header and f != "id"]
    if unknown or any(f == "" for f in names):
        raise CatalogSourceError(
            f"image template {template!r} uses unknown field(s) {unknown or ['{}']}; "
            f"available: {', '.join(header)}"
        )


def _id_string(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _cell_string(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _column_converter(values: list[object]) -> Callable[[object], MetadataValue]:
    """Pick int, float or str for a CSV column from its non-empty values; '' becomes None.

    Integers are recognised only in canonical form, so codes like ``007`` stay strings.
    """
    strings = [v for v in values if isinstance(v, str) and v != ""]
    if strings and all(_is_int(s) for s in strings):
        return lambda v: None if v in ("", None) else int(str(v))
    if strings and all(_is_float(s) for s in strings):
        return lambda v: None if v in ("", None) else _finite(float(str(v)))
    return lambda v: None if v in ("", None) else str(v)


def _typed_value(value: object) -> MetadataValue:
    """Parquet cells keep their stored type; NaN becomes None and numpy scalars Python ones."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _finite(value)
    if hasattr(value, "item"):  # numpy scalar
        return _typed_value(value.item())
    return str(value)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def _is_int(text: str) -> bool:
    try:
        return str(int(text)) == text
    except ValueError:
        return False


def _is_float(text: str) -> bool:
    if _LEADING_ZERO.match(text):  # codes such as 007 are text, not numbers
        return False
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "infinity")


_LEADING_ZERO = re.compile(r"^\s*[+-]?0\d")
