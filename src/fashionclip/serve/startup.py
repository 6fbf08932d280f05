"""Start-up of ``fashionclip serve``: load the models and open the catalogs once.

Kept out of the CLI so that the benchmark and tests start a server the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionclip.errors import FashionCLIPError
from fashionclip.index import Catalog


@dataclass
class ServingState:
    """Everything ``create_app`` needs, loaded."""

    catalog: Catalog
    model: Any
    compare_model: Any | None = None
    compare_catalog: Catalog | None = None


def load_serving_state(
    catalog_dir: str | Path,
    *,
    model: str | None = None,
    compare_model: str | None = None,
    compare_catalog: str | Path | None = None,
    device: str | None = None,
    allow_pickle: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> ServingState:
    """Open ``catalog_dir`` with its model (``model`` defaults to the one that built it).

    Compare side: ``compare_catalog`` is a catalog of the same products built with another
    model (``compare_model`` defaults to its recorded model); with only ``compare_model``,
    the compare catalog is built or refreshed in ``<catalog_dir>/compare-<fingerprint>/``.
    """
    from fashionclip.index.check import require_healthy
    from fashionclip.models import load

    for folder in (catalog_dir, compare_catalog):  # refuse a damaged catalog in one line
        if folder is not None:
            require_healthy(folder)
    recorded = Catalog.open(catalog_dir)
    name = model or recorded.model_identity.name
    recorded.close()
    log(f"loading model {name} ...")
    main_model = load(name, device=device, allow_pickle=allow_pickle)
    catalog = Catalog.open(catalog_dir, main_model)
    log(f"catalog {catalog.path}: {len(catalog)} products")
    if catalog.warm_up():
        log("ANN index opened; reduced vectors for filtered search ready")
    state = ServingState(catalog, main_model)
    if compare_catalog is not None:
        other = Catalog.open(compare_catalog)
        other_name = compare_model or other.model_identity.name
        other.close()
        log(f"loading compare model {other_name} ...")
        state.compare_model = load(other_name, device=device, allow_pickle=allow_pickle)
        state.compare_catalog = Catalog.open(compare_catalog, state.compare_model)
        log(f"compare catalog {state.compare_catalog.path}: {len(state.compare_catalog)} products")
    elif compare_model is not None:
        from fashionclip.serve.compare import compare_catalog_path, ensure_compare_catalog

        log(f"loading compare model {compare_model} ...")
        state.compare_model = load(compare_model, device=device, allow_pickle=allow_pickle)
        target = compare_catalog_path(catalog, state.compare_model)
        log(f"refreshing the compare catalog {target} (only new or changed images are embedded)")
        build = ensure_compare_catalog(catalog, state.compare_model, show_progress=show_progress)
        log(f"compare catalog: {build.report.summary()}; {build.removed} removed")
        for failure in build.report.failures[:10]:
            log(f"  not in the compare catalog: {failure.id}: {failure.reason}")
        state.compare_catalog = build.catalog
    if state.compare_catalog is not None and len(state.compare_catalog) == 0 and len(catalog):
        raise FashionCLIPError(f"the compare catalog {state.compare_catalog.path} is empty")
    return state
