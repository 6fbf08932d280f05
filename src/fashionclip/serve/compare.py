"""Compare catalogs: the same products embedded with a second model, for side-by-side search.

Vectors of two models never mix in one catalog, so comparing FashionCLIP with, say, plain
CLIP needs a second catalog of the same products built with the compare model. Given only
the compare model, :func:`ensure_compare_catalog` builds it next to the main catalog, in
``<catalog>/compare-<fingerprint>/`` (the fingerprint is the compare model's weights hash),
from the main catalog's product list: ids, image paths and metadata. Indexing is the
catalog's own incremental indexing, so a restart embeds only products added or whose image
changed since the last run, and products removed from the main catalog are removed there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionclip.data.tables import ProductRecord
from fashionclip.errors import FashionCLIPError
from fashionclip.index import Catalog, CatalogModel, IndexReport


@dataclass(frozen=True)
class CompareBuild:
    """The compare catalog (opened with its model) and what the refresh did."""

    catalog: Catalog
    report: IndexReport
    removed: int
    skipped_without_image: int


def compare_catalog_path(catalog: Catalog, compare_model: Any) -> Path:
    """Where the compare catalog of ``compare_model`` lives: ``<catalog>/compare-<fp>``."""
    return catalog.path / f"compare-{CatalogModel.of(compare_model).fingerprint}"


def ensure_compare_catalog(
    catalog: Catalog,
    compare_model: Any,
    *,
    path: str | Path | None = None,
    batch_size: int = 32,
    show_progress: bool = True,
) -> CompareBuild:
    """Build or refresh the compare catalog of ``catalog``'s products with ``compare_model``.

    Incremental: only new products and changed images are embedded; products no longer in
    the main catalog are removed. Products whose image fails to decode are listed in the
    report and left out (the service reports them as missing on the compare side).
    """
    main_identity = catalog.model_identity
    other = CatalogModel.of(compare_model)
    if other.fingerprint == main_identity.fingerprint:
        raise FashionCLIPError(
            f"the compare model {other.describe()} is the catalog's own model; "
            "compare with a different model"
        )
    target = Path(path) if path is not None else compare_catalog_path(catalog, compare_model)
    records: list[ProductRecord] = []
    skipped = 0
    for product_id in catalog.ids():
        product = catalog.get(product_id)
        if product is None:  # removed while we read
            continue
        if product.image is None:
            skipped += 1
            continue
        records.append(ProductRecord(product.id, product.image, product.metadata))
    try:
        compare = Catalog.open_or_create(target, compare_model)
        report = compare.index(records, batch_size=batch_size, show_progress=show_progress)
        wanted = {record.id for record in records}
        stale = [pid for pid in compare.ids() if pid not in wanted]
        removed = compare.remove(stale) if stale else 0
    except PermissionError as exc:
        raise FashionCLIPError(
            f"cannot write the compare catalog at {target} ({exc.strerror}); build it elsewhere "
            "with `fashionclip index --model COMPARE_MODEL` and pass --compare-catalog DIR"
        ) from None
    return CompareBuild(compare, report, removed, skipped)
