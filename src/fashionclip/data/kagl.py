"""The one reader of the KAGL folder (Fashion Product Images, small): ``styles.csv`` and ``splits.csv``.

``styles.csv`` has 22 lines whose product name holds unquoted commas; every line is parsed with
``line.split(",", 9)``, so the name (the last column) keeps its commas. Such lines are kept and
reported as warnings with their line numbers; lines with too few fields are skipped and reported.
``splits.csv`` (id, split, image_sha256) is the canonical train / val / test split.
Evaluation (:mod:`fashionclip.evaluate.datasets`) and training (:mod:`fashionclip.train.data`)
both read KAGL through this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    skipped_lines: list[int] = field(default_factory=list)  # too few fields: dropped
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
    kagl_dir: str | os.PathLike, name: str, what: str, columns: tuple[str, ...], hint: str
) -> tuple[Path, list[str]]:
    """Path and data lines (without line endings) of a KAGL table whose header must be ``columns``."""
    path = Path(kagl_dir) / name
    if not path.is_file():
        raise FashionCLIPError(f"KAGL {what} not found: {path}{hint}")
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
        lines = [line.rstrip("\r\n") for line in handle]
    if tuple(header) != columns:
        raise FashionCLIPError(f"{path}: unexpected header {header}, expected {list(columns)}")
    return path, lines


def read_kagl_styles(kagl_dir: str | os.PathLike, *, hint: str = "") -> KaglStyles:
    """Read ``<kagl_dir>/styles.csv``; ``hint`` is appended to the not-found message."""
    path, lines = _read_table(kagl_dir, "styles.csv", "styles table", KAGL_COLUMNS, hint)
    result = KaglStyles(path=path, rows={})
    n = len(KAGL_COLUMNS)
    for line_no, line in enumerate(lines, start=2):
        if not line:
            continue
        fields = line.split(",", n - 1)
        if len(fields) != n:
            result.skipped_lines.append(line_no)
            result.warnings.append(
                f"{path.name} line {line_no}: {len(fields)} fields for {n} columns; skipped"
            )
            continue
        if "," in fields[-1]:
            result.malformed_lines.append(line_no)
            result.warnings.append(
                f"{path.name} line {line_no}: unquoted ',' in {KAGL_COLUMNS[-1]!r}; kept as "
                f"{fields[-1]!r}"
            )
        if fields[0] in result.rows:
            result.warnings.append(
                f"{path.name} line {line_no}: duplicate id {fields[0]!r}; the later row is kept"
            )
        result.rows[fields[0]] = dict(zip(KAGL_COLUMNS, fields, strict=True))
    return result


def read_kagl_splits(kagl_dir: str | os.PathLike, *, hint: str = "") -> KaglSplits:
    """Read ``<kagl_dir>/splits.csv``; ``hint`` is appended to the not-found message."""
    path, lines = _read_table(kagl_dir, "splits.csv", "split table", SPLITS_COLUMNS, hint)
    result = KaglSplits(path=path, entries={})
    for line_no, line in enumerate(lines, start=2):
        fields = line.strip().split(",")
        if len(fields) != len(SPLITS_COLUMNS):
            if line.strip():
                result.warnings.append(
                    f"{path.name} line {line_no}: {len(fields)} fields for "
                    f"{len(SPLITS_COLUMNS)} columns; skipped"
                )
            continue
        if fields[0] in result.entries:
            result.warnings.append(
                f"{path.name} line {line_no}: duplicate id {fields[0]!r}; the later row is kept"
            )
        result.entries[fields[0]] = (fields[1], fields[2])
    return result
