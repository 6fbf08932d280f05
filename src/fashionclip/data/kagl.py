"""The one reader of the KAGL folder (Fashion Product Images, small): ``styles.csv`` and ``splits.csv``.

Both are read by :func:`fashionclip.data.csvread.read_rows`, the reader every table goes
through. ``styles.csv`` has 22 lines whose product name holds unquoted commas: the first nine
commas separate the columns and the name (the last column) keeps the rest
(``line.split(",", 9)``). Such lines are kept and reported as warnings with their line numbers;
lines with too few fields (or an unterminated quote) are skipped and reported.
``splits.csv`` (id, split, image_sha256) is the canonical train / val / test split; its lines
with too many or too few fields are skipped and reported.
Evaluation (:mod:`fashionclip.evaluate.datasets`) and training (:mod:`fashionclip.train.data`)
both read KAGL through this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fashionclip.data.csvread import ExtraFields, RawTable, read_rows
from fashionclip.errors import FashionCLIPError

KAGL_COLUMNS = (
    "id",
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "year",
    "usage",
    "productDisplayName",
)
SPLITS_COLUMNS = ("id", "split", "image_sha256")


def default_data_dir() -> Path:
    """``$FASHIONCLIP_DATA_DIR`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get("FASHIONCLIP_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def kagl_dir_default() -> Path:
    """The KAGL folder inside :func:`default_data_dir`."""
    return default_data_dir() / "kagl"


@dataclass
class KaglStyles:
    """Rows of ``styles.csv`` by id (file order), and the line-level problems met."""

    path: Path
    rows: dict[str, dict[str, str]]
    malformed_lines: list[int] = field(default_factory=list)  # extra commas: kept
    skipped_lines: list[int] = field(default_factory=list)  # too few fields, bad quotes: dropped
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class KaglSplits:
    """``splits.csv``: id -> (split, image_sha256), in file order."""

    path: Path
    entries: dict[str, tuple[str, str]]
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        """The split names present, sorted."""
        return sorted({split for split, _ in self.entries.values()})

    def ids(self, split: str) -> list[str]:
        """Ids of one split in file order (empty if the split is absent)."""
        return [i for i, (s, _) in self.entries.items() if s == split]


def _read_table(
    kagl_dir: str | os.PathLike[str],
    name: str,
    what: str,
    columns: tuple[str, ...],
    hint: str,
    extra_fields: ExtraFields,
) -> RawTable:
    """A KAGL table read by :func:`read_rows`; its header must be ``columns``."""
    path = Path(kagl_dir) / name
    if not path.is_file():
        raise FashionCLIPError(f"KAGL {what} not found: {path}{hint}")
    table = read_rows(path, extra_fields=extra_fields, missing_fields="skip")
    if tuple(table.columns) != columns:
        raise FashionCLIPError(
            f"{path}: unexpected header {table.columns}, expected {list(columns)}"
        )
    return table


def _dropped_lines(table: RawTable) -> list[int]:
    return [p.line for p in table.problems if not p.kept]


def _duplicate_warning(path: Path, line_no: int, product_id: str) -> str:
    return f"{path.name} line {line_no}: duplicate id {product_id!r}; the later row is kept"


def read_kagl_styles(kagl_dir: str | os.PathLike[str], *, hint: str = "") -> KaglStyles:
    """Read ``<kagl_dir>/styles.csv``; ``hint`` is appended to the not-found message."""
    table = _read_table(kagl_dir, "styles.csv", "styles table", KAGL_COLUMNS, hint, "merge_last")
    result = KaglStyles(
        path=table.path,
        rows={},
        malformed_lines=table.problem_lines("extra_fields", kept=True),
        skipped_lines=_dropped_lines(table),
        warnings=table.warnings,
    )
    for line_no, cells in table.rows:
        row = dict(zip(KAGL_COLUMNS, map(str, cells), strict=True))
        if row["id"] in result.rows:
            result.warnings.append(_duplicate_warning(table.path, line_no, row["id"]))
        result.rows[row["id"]] = row
    return result


def read_kagl_splits(kagl_dir: str | os.PathLike[str], *, hint: str = "") -> KaglSplits:
    """Read ``<kagl_dir>/splits.csv``; ``hint`` is appended to the not-found message."""
    table = _read_table(kagl_dir, "splits.csv", "split table", SPLITS_COLUMNS, hint, "skip")
    result = KaglSplits(path=table.path, entries={}, warnings=table.warnings)
    for line_no, cells in table.rows:
        product_id, split, sha = (str(c) for c in cells)
        if product_id in result.entries:
            result.warnings.append(_duplicate_warning(table.path, line_no, product_id))
        result.entries[product_id] = (split, sha)
    return result
