"""Integrity check and repair of a catalog (``fashionclip check [--repair]``).

Like ``git fsck`` or SQLite's ``integrity_check``: a list of named checks (:data:`CHECKS`),
each a function of a :class:`_Context` returning :class:`Problem` s, run in order; a
``fatal`` problem stops the later checks (they read what it found broken). A new index
kind (e.g. a text index) adds one ``(name, function)`` entry.

Repair salvages what is intact and never drops a committed, intact vector: the rows of a
damaged segment that still read back whole and of unit length (a truncated file keeps its
prefix) move to a new segment, the damaged segments are forgotten, the other products that
pointed at them are written to ``repair-report.json`` (id, image path, metadata) and
re-embedded from their stored image paths with the catalog's model, and a missing or stale ANN index is rebuilt (dropped when
its backend is unavailable). A garbage or empty ``catalog.sqlite`` cannot be repaired: the
segments are raw vectors without product ids.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionclip.data.tables import ProductRecord
from fashionclip.errors import FashionCLIPError
from fashionclip.index.backends import AnnInfo, backend_class
from fashionclip.index.lock import writer_lock
from fashionclip.index.store import (
    ANN_DIR,
    DB_NAME,
    VECTORS_DIR,
    CatalogDamagedError,
    CatalogNotFoundError,
    Store,
    StoredProduct,
)

REPAIR_REPORT = "repair-report.json"


@dataclass
class Problem:
    """One thing found wrong: which check, a one-line message, the products it costs."""

    check: str
    message: str
    products: list[str] = field(default_factory=list)
    fatal: bool = False


@dataclass
class CheckReport:
    """What :func:`check_catalog` found; ``ok`` when there is no problem (warnings allowed)."""

    catalog: str
    checks: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    products: int = 0
    segments: int = 0
    damaged_segments: dict[int, str] = field(default_factory=dict)  # segment id -> file

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)

    def lost_products(self) -> list[str]:
        """Ids of the products whose vectors are gone (sorted, unique)."""
        return sorted({pid for p in self.problems for pid in p.products})

    def to_dict(self) -> dict[str, Any]:
        return {
            "catalog": self.catalog,
            "ok": self.ok,
            "checks": self.checks,
            "problems": [{**asdict(p), "products": len(p.products)} for p in self.problems],
            "warnings": self.warnings,
            "products": self.products,
            "segments": self.segments,
            "damaged_segments": sorted(self.damaged_segments.values()),
            "lost_products": len(self.lost_products()),
        }


@dataclass
class _Context:
    """State shared by the checks: the store and what earlier checks found."""

    root: Path
    store: Store
    damaged_segments: dict[int, str] = field(default_factory=dict)  # id -> file
    warnings: list[str] = field(default_factory=list)
    dim: int = 0


# ---------------------------------------------------------------------------------- checks


def _check_database(ctx: _Context) -> list[Problem]:
    """catalog.sqlite is a sound SQLite file with the catalog's tables and meta rows."""
    try:
        messages = ctx.store.quick_check()
        ctx.store.check_format()
        model = ctx.store.get_meta("model")
        ctx.store.segment_rows()
        ctx.store.products_in_slots(0, 0)
    except (sqlite3.DatabaseError, CatalogDamagedError) as exc:
        what = getattr(exc, "what", None) or f"{DB_NAME} is unreadable ({exc})"
        return [Problem("database", what, fatal=True)]
    if messages != ["ok"]:
        what = f"{DB_NAME} fails SQLite's quick_check ({'; '.join(messages[:3])})"
        return [Problem("database", what, fatal=True)]
    if not isinstance(model, dict) or "embedding_dim" not in model:
        return [Problem("database", f"{DB_NAME} records no model identity", fatal=True)]
    ctx.dim = int(model["embedding_dim"])
    return []


def _check_segments(ctx: _Context) -> list[Problem]:
    """Every committed segment file is present, readable and (n_rows, dim) float32."""
    problems = []
    for seg_id, file, first_slot, n_rows, dim in ctx.store.segment_rows():
        what = None
        if dim != ctx.dim:
            what = f"segment {file} has dimension {dim}, the catalog {ctx.dim}"
        else:
            try:
                ctx.store.open_segment(file, n_rows, dim)
            except FileNotFoundError:
                if seg_id not in {row[0] for row in ctx.store.segment_rows()}:
                    continue  # a writer's compaction replaced it since we listed segments
                what = f"segment {VECTORS_DIR}/{file} is missing"
            except CatalogDamagedError as exc:
                what = exc.what
        if what is not None:
            ctx.damaged_segments[seg_id] = file
            lost = [p.id for p in ctx.store.products_in_slots(first_slot, first_slot + n_rows)]
            problems.append(Problem("segments", f"{what} ({len(lost)} products point at it)", lost))
    return problems


def _check_products(ctx: _Context) -> list[Problem]:
    """Every product points at a slot that a committed segment holds."""
    lost = [p.id for p in ctx.store.products_outside_segments()]
    if not lost:
        return []
    return [Problem("products", f"{len(lost)} products point at no committed segment", lost)]


def _check_ann(ctx: _Context) -> list[Problem]:
    """The ANN index, when there is one, is present and readable. One that covers segments a
    compaction replaced is out of date, not damaged (search ignores it): a warning."""
    meta = ctx.store.get_meta("ann")
    if not isinstance(meta, dict):
        return []
    info = AnnInfo.from_meta(meta)
    path = ctx.root / ANN_DIR / info.file
    if not path.is_file():
        return [Problem("ann", f"ANN index file {ANN_DIR}/{info.file} is missing")]
    if not set(info.segments) <= {row[0] for row in ctx.store.segment_rows()}:
        ctx.warnings.append(
            "the ANN index predates a compaction: search is exact until it is rebuilt "
            "(`fashionclip index --ann` or Catalog.build_ann)"
        )
        return []
    if info.backend == "usearch" and importlib.util.find_spec("usearch") is None:
        ctx.warnings.append("usearch is not installed: the ANN index file was not read")
        return []
    try:
        backend_class(info.backend).load(path, ctx.dim, info)
    except (FashionCLIPError, OSError, ValueError, RuntimeError) as exc:
        return [Problem("ann", f"ANN index {ANN_DIR}/{info.file} is unreadable ({exc})")]
    return []


def _check_text(ctx: _Context) -> list[Problem]:
    """The keyword index, when there is one, holds exactly one row per product (the triggers
    keep it so; a disagreement means the file was edited or damaged behind SQLite's back)."""
    from fashionclip.index.text import TextIndex

    text = TextIndex(ctx.store)
    try:
        if text.fields() is None:
            return []
        missing, stale = text.disagreement()
    except sqlite3.DatabaseError as exc:
        return [Problem("text", f"the keyword index is unreadable ({exc})")]
    if missing or stale:
        what = f"{missing} products have no keyword row, {stale} keyword rows no product"
        return [Problem("text", f"the keyword index disagrees with the products ({what})")]
    return []


#: The checks, in order; a new index kind adds an entry here.
CHECKS: list[tuple[str, Callable[[_Context], list[Problem]]]] = [
    ("database", _check_database),
    ("segments", _check_segments),
    ("products", _check_products),
    ("ann", _check_ann),
    ("text", _check_text),
]


def check_catalog(path: str | Path) -> CheckReport:
    """Run :data:`CHECKS` on the catalog at ``path`` (read-only; takes no lock)."""
    root = Path(path)
    if not (root / DB_NAME).is_file():
        raise CatalogNotFoundError(f"no catalog at {root} (expected {root / DB_NAME})")
    store = Store(root)
    report = CatalogReportBuilder(root, store).run()
    store.close()
    return report


class CatalogReportBuilder:
    """Runs the checks one by one, stopping after a fatal problem."""

    def __init__(self, root: Path, store: Store) -> None:
        self.ctx = _Context(root, store)
        self.report = CheckReport(str(root))

    def run(self) -> CheckReport:
        for name, check in CHECKS:
            self.report.checks.append(name)
            found = check(self.ctx)
            self.report.problems.extend(found)
            if any(p.fatal for p in found):
                return self.report
        self.report.damaged_segments = dict(self.ctx.damaged_segments)
        self.report.warnings = list(self.ctx.warnings)
        store = self.ctx.store
        self.report.segments = len(store.segment_rows())
        self.report.products = len(store.product_ids())
        return self.report


def damage_error(root: Path, report: CheckReport) -> CatalogDamagedError:
    """The one-line error naming the first problem of a damaged catalog."""
    first = report.problems[0]
    more = len(report.problems) - 1
    what = first.message + (f" (and {more} more problems)" if more else "")
    return CatalogDamagedError(root, what, repairable=not first.fatal)


def require_healthy(path: str | Path) -> None:
    """Raise :class:`CatalogDamagedError` naming the first problem (``serve`` start-up)."""
    report = check_catalog(path)
    if report.problems:
        raise damage_error(Path(path), report)


# ---------------------------------------------------------------------------------- repair


@dataclass
class RepairReport:
    """What :func:`repair_catalog` did."""

    catalog: str
    dropped_segments: list[str] = field(default_factory=list)
    salvaged: int = 0  # vectors read back intact from damaged segments
    reembedded: int = 0
    lost: list[dict[str, Any]] = field(default_factory=list)  # id, image, metadata, reason
    ann: str = "unchanged"  # unchanged | rebuilt | dropped
    text: str = "unchanged"  # unchanged | rebuilt

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def repair_catalog(path: str | Path, load_model: Callable[[str], Any]) -> RepairReport:
    """Salvage the catalog at ``path``; ``load_model(name)`` gives the model to re-embed
    with (called only when products were lost). Raises :class:`CatalogDamagedError` when the
    database itself is broken (nothing to salvage from)."""
    root = Path(path)
    with writer_lock(root, action="repairing"):
        found = check_catalog(root)
        if found.fatal:
            raise damage_error(root, found)
        report = RepairReport(str(root))
        if found.ok:
            return report
        store = Store(root)
        try:
            slots, vectors, kept = _salvage(store, found)
            lost = [p for p in store.products(found.lost_products()).values() if p.id not in kept]
            model = None
            if lost:
                model_name = str((store.get_meta("model") or {}).get("name"))
                model = load_model(model_name)  # before anything is changed
            report.dropped_segments = sorted(found.damaged_segments.values())
            report.salvaged = len(slots)
            _write_report(root, report, lost, "repair in progress")
            store.drop_segments(
                list(found.damaged_segments), [p.id for p in lost], (slots, vectors)
            )
        finally:
            store.close()
        _reembed(root, model, lost, report)
        _repair_ann(root, report, found)
        _repair_text(root, report, found)
        _write_report(root, report, [], "done")
    return report


def readable_rows(path: Path, n_rows: int, dim: int) -> np.ndarray:
    """The whole rows a damaged ``.npy`` segment still holds (a truncated file keeps its
    prefix); empty when its header is unreadable or not the expected float32 array."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
            if shape != (n_rows, dim) or fortran or dtype != np.dtype("<f4"):
                return np.zeros((0, dim), np.float32)
            data = handle.read(n_rows * dim * 4)
    except (OSError, ValueError):
        return np.zeros((0, dim), np.float32)
    whole = len(data) // (dim * 4)
    return np.frombuffer(data[: whole * dim * 4], dtype="<f4").reshape(whole, dim)


def _salvage(store: Store, found: CheckReport) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """``(old_slots, vectors, product ids)`` of the live rows of damaged segments that read
    back intact: present in the file, finite and of unit length (every stored row is)."""
    slots: list[int] = []
    rows: list[np.ndarray] = []
    ids: set[str] = set()
    for seg_id, file, first_slot, n_rows, dim in store.segment_rows():
        if seg_id not in found.damaged_segments:
            continue
        data = readable_rows(store.vectors_dir / file, n_rows, dim)
        norms = np.linalg.norm(data, axis=1) if len(data) else np.zeros(0)
        intact = np.isfinite(norms) & (np.abs(norms - 1.0) < 1e-3)
        for product in store.products_in_slots(first_slot, first_slot + len(data)):
            if intact[product.slot - first_slot]:
                slots.append(product.slot)
                rows.append(data[product.slot - first_slot])
                ids.add(product.id)
    dim = int((store.get_meta("model") or {}).get("embedding_dim", 0))
    vectors = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    return np.array(slots, dtype=np.int64), vectors, ids


def _reembed(root: Path, model: Any, lost: list[StoredProduct], report: RepairReport) -> None:
    """Index the lost products again from their stored image paths and metadata."""
    from fashionclip.index.catalog import Catalog

    if not lost:
        return
    records = []
    for p in lost:
        if p.image:
            records.append(ProductRecord(p.id, Path(p.image), json.loads(p.metadata_json)))
        else:
            report.lost.append(_lost_entry(p, "no image path recorded: add it again"))
    with Catalog.open(root, model) as catalog:
        result = catalog.index(records, write_report=False)
    report.reembedded = result.added
    by_id = {p.id: p for p in lost}
    for failure in result.failures:
        report.lost.append(_lost_entry(by_id[failure.id], failure.reason))


def _repair_ann(root: Path, report: RepairReport, found: CheckReport) -> None:
    """Rebuild a missing or unreadable ANN index, or one that covered a dropped segment, with
    its parameters; drop it when that fails (e.g. its backend is not installed)."""
    from fashionclip.index.catalog import Catalog

    with Catalog.open(root) as catalog:
        meta = catalog.store.get_meta("ann")
        if not isinstance(meta, dict):
            return
        info = AnnInfo.from_meta(meta)
        broken = any(p.check == "ann" for p in found.problems)
        if not broken and not set(info.segments) & set(found.damaged_segments):
            return
        try:
            if len(catalog) == 0:
                raise FashionCLIPError("empty catalog")
            catalog.build_ann(backend=info.backend, **info.params)
            report.ann = "rebuilt"
        except (FashionCLIPError, ImportError):
            catalog.drop_ann()
            report.ann = "dropped"


def _repair_text(root: Path, report: RepairReport, found: CheckReport) -> None:
    """Rebuild a keyword index that disagrees with the products, with its fields."""
    from fashionclip.index.text import TextIndex

    if not any(p.check == "text" for p in found.problems):
        return
    store = Store(root)
    try:
        text = TextIndex(store)
        fields = text.fields()
        text.build(None if fields is None or fields.auto else dict(fields.fields))
        report.text = "rebuilt"
    finally:
        store.close()


def _lost_entry(p: StoredProduct, reason: str) -> dict[str, Any]:
    return {"id": p.id, "image": p.image, "metadata": json.loads(p.metadata_json), "reason": reason}


def _write_report(
    root: Path, report: RepairReport, pending: list[StoredProduct], state: str
) -> None:
    """``repair-report.json``: written before the database changes (listing every product
    about to be re-embedded, so a crash loses no metadata) and again at the end."""
    data = {"state": state, **report.to_dict()}
    if pending:
        data["pending"] = [_lost_entry(p, "being re-embedded") for p in pending]
    Store(root).write_file(
        root, REPAIR_REPORT, lambda tmp: tmp.write_text(json.dumps(data, indent=2))
    )
