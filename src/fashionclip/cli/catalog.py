"""Catalog commands: `info`, `index` (build or update a catalog) and `search`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashionclip.cli.common import add_model_options, load_model, parse_filters, print_json
from fashionclip.errors import FashionCLIPError, ModelMismatchError
from fashionclip.index.lock import writer_lock
from fashionclip.index.query import MODES

if TYPE_CHECKING:
    from fashionclip.index import Catalog


# ---------------------------------------------------------------------------------------- info
def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    from fashionclip import __version__
    from fashionclip.models.loading import DEFAULT_MODEL, default_model_path

    info: dict[str, Any] = {
        "fashionclip": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "default_model": str(default_model_path() or f"{DEFAULT_MODEL} (not installed)"),
    }
    if args.model is not None or args.catalog is None:
        model = load_model(args.model, args.device, args.allow_pickle)
        identity = model.identity
        info["model"] = {
            "name": identity.name,
            "kind": identity.kind,
            "embedding_dim": identity.embedding_dim,
            "fingerprint": identity.fingerprint,
            "device": str(model.device),
        }
    if args.catalog is not None:
        from fashionclip.index import Catalog

        catalog = Catalog.open(args.catalog)
        info["catalog"] = catalog.describe()
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for sub_key, sub_value in value.items():
                    print(f"  {sub_key}: {sub_value}")
            else:
                print(f"{key}: {value}")
    return 0


# ---------------------------------------------------------------------------------------- index
def _open_for_indexing(args: argparse.Namespace, catalog_dir: Path) -> Catalog:
    """The catalog to index into, opened once, with the model attached (created if new)."""
    from fashionclip.index import Catalog
    from fashionclip.index.store import DB_NAME

    # Opened without a model to learn which model built it, then the model is attached.
    catalog = Catalog.open(catalog_dir) if (catalog_dir / DB_NAME).is_file() else None
    try:
        model_name = args.model or (catalog.model_identity.name if catalog else None)
        model = load_model(model_name, args.device, args.allow_pickle)
        if catalog is not None and args.rebuild_if_model_changed:
            try:
                catalog.check_model(model)
            except ModelMismatchError as exc:
                print(
                    f"{exc}\n--rebuild-if-model-changed: removing it and embedding every "
                    "product again",
                    file=sys.stderr,
                )
                catalog.close()
                catalog = None
                Catalog.delete(catalog_dir)
        if catalog is None:
            catalog = Catalog.create(catalog_dir, model)
        else:
            catalog.attach_model(model)
    except BaseException:
        if catalog is not None:
            catalog.close()
        raise
    return catalog


def _index_engine(args: argparse.Namespace) -> Any:
    """A context giving the engine for ``--engine``: None (here) or a connected RayEngine."""
    import contextlib

    if args.engine == "local":
        given = [f"--{n}" for n in ("address", "workers") if getattr(args, n) is not None]
        given += [
            f"--ray-num-{n}" for n in ("cpus", "gpus") if getattr(args, f"ray_num_{n}") is not None
        ]
        if given:
            raise FashionCLIPError(f"{', '.join(given)} need --engine ray")
        return contextlib.nullcontext()
    from fashionclip.index.distributed import RayEngine, RayOptions

    options = RayOptions(
        address=args.address,
        workers=args.workers,
        num_cpus=1.0 if args.ray_num_cpus is None else args.ray_num_cpus,
        num_gpus=args.ray_num_gpus or 0.0,
    )
    return RayEngine(options, factory=None)


def _model_spec(args: argparse.Namespace, name: str) -> Any:
    """What a Ray worker loads: the driver's model, a local folder made absolute."""
    from fashionclip.index.distributed import ModelSpec

    path = Path(name).expanduser()
    return ModelSpec(str(path.resolve()) if path.exists() else name, args.device, args.allow_pickle)


def _cmd_index(args: argparse.Namespace) -> int:
    from fashionclip.data.chunks import is_streamable, iter_catalog_chunks
    from fashionclip.data.csvread import print_warnings
    from fashionclip.data.tables import IdSubset, read_catalog_source
    from fashionclip.index.store import REPORT_NAME

    if args.ids_where and not args.ids_file:
        raise FashionCLIPError("--ids-where needs --ids-file")
    subset = (
        IdSubset.parse(args.ids_file, args.ids_where, encoding=args.encoding)
        if args.ids_file
        else None
    )
    read_options: dict[str, Any] = dict(
        id_column=args.id_column,
        image_column=args.image_column,
        image_template=args.image_template,
        subset=subset,
        limit=args.limit,
        encoding=args.encoding,
    )
    warnings: list[str] = []

    def warn(new: Sequence[str]) -> None:
        print_warnings(new, args.max_warnings)
        warnings.extend(new)

    # The Ray engine streams a Parquet table in chunks; otherwise the table is read whole.
    streamed = args.engine == "ray" and is_streamable(args.source)
    source = (
        None
        if streamed
        else read_catalog_source(args.source, follow_symlinks=args.follow_symlinks, **read_options)
    )
    if source is not None:
        warn(source.warnings)
    catalog_dir = Path(args.catalog)
    index_options = dict(
        batch_size=args.batch_size,
        commit_every=args.commit_every,
        show_progress=not args.no_progress,
    )
    with _index_engine(args) as engine:  # a Ray cluster is reached before anything is written
        catalog_dir.mkdir(parents=True, exist_ok=True)
        lock = writer_lock(catalog_dir, wait=args.wait, action="indexing")  # one writer
        with lock, _open_for_indexing(args, catalog_dir) as catalog:
            if engine is not None:  # the workers load what the driver loaded
                engine.factory = _model_spec(args, catalog.model_identity.name)
            if source is not None:
                report = catalog.index(source, engine=engine, **index_options)
            else:
                from fashionclip.index.chunked import index_chunks

                chunks = iter_catalog_chunks(args.source, **read_options)
                report = index_chunks(
                    catalog, chunks, on_warnings=warn, engine=engine, **index_options
                )
            total = len(catalog)
            ann = catalog.build_ann(show_progress=not args.no_progress) if args.ann else None
    if args.json:
        summary = {**report.to_dict(), "catalog_size": total, "warnings": warnings}
        if ann is not None:
            summary["ann"] = ann.to_meta()
        print_json(summary)
    else:
        print(f"{catalog_dir}: {report.summary()}; the catalog holds {total} products")
        if ann is not None:
            print(f"ANN index of {ann.size} vectors built in {ann.seconds:.1f}s")
        elif report.ann is not None:  # the automatic update above the size threshold
            done = report.ann
            print(f"ANN index {done['action']} (+{done['added']} vectors, {done['seconds']:.1f}s)")
        for failure in report.failures[: args.max_failures]:
            print(f"failed {failure.id} ({failure.path}): {failure.reason}")
        if len(report.failures) > args.max_failures:
            print(
                f"... {len(report.failures) - args.max_failures} more failures in "
                f"{catalog_dir / REPORT_NAME}"
            )
    usable = report.added + report.updated + report.metadata_updated + report.unchanged
    return 1 if report.failed and not usable else 0


# ---------------------------------------------------------------------------------------- search
def _cmd_search(args: argparse.Namespace) -> int:
    from fashionclip.errors import InvalidQueryError
    from fashionclip.index import Catalog, Query

    given = [x for x in (args.image, args.like) if x is not None]
    if len(given) > 1 or (not given and args.query is None):
        raise InvalidQueryError(
            "give exactly one of: a query text, --image PATH or --like ID "
            "(a query text may also refine --image or --like)"
        )
    with Catalog.open(args.catalog) as catalog:
        filters = parse_filters(args.filter)
        for column, values in parse_filters(args.filter_if_present).items():
            if column in catalog.columns:
                filters.setdefault(column, []).extend(values)
            else:
                print(
                    f"note: the catalog has no column {column!r}; --filter-if-present ignored",
                    file=sys.stderr,
                )
        query = Query(  # validated before any model is loaded
            text=args.query,
            image=args.image,
            like=args.like,
            k=args.top_k,
            filters=filters,
            exact=True if args.exact else None,
            mode=args.mode,
            ignore_understood=args.ignore_understood,
        )
        if query.needs_encoding and query.mode != "keyword":
            name = args.model or catalog.model_identity.name
            catalog.attach_model(load_model(name, args.device, args.allow_pickle))
        results = catalog.run(query)
    if args.json:
        print_json([r.to_dict() for r in results])
    else:
        for rank, result in enumerate(results, 1):
            meta = result.metadata
            title = meta.get(args.title_column) if args.title_column else None
            label = title if title is not None else ", ".join(f"{v}" for v in meta.values())
            print(f"{rank:>3}. {result.score:.4f}  {result.id}  {label}")
        if not results:
            print("no results", file=sys.stderr)
        if getattr(results, "understood", None):
            print(f"understood: {json.dumps(results.understood)}", file=sys.stderr)
        if getattr(results, "set_aside", None):
            print(
                f"set aside (no product carries it with the rest): {', '.join(results.set_aside)}",
                file=sys.stderr,
            )
    return 0


def _add_info(commands: Any) -> None:
    info = commands.add_parser("info", help="versions, device, model and catalog details")
    add_model_options(info)
    info.add_argument("--catalog", default=None, help="also describe this catalog folder")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=_cmd_info)


def _add_index(commands: Any) -> None:
    index = commands.add_parser(
        "index",
        help="build or update a catalog from a table (CSV/Parquet) or image folder",
        description="Build or update a catalog. Only new products and changed images are "
        "embedded. --model defaults to the catalog's model when the catalog exists.",
    )
    add_model_options(index)
    index.add_argument("source", help="CSV/Parquet table of products, or a folder of images")
    index.add_argument("--catalog", required=True, help="catalog folder (created if missing)")
    index.add_argument(
        "--image-template",
        default=None,
        help="image path from row fields, relative to the table (default 'images/{id}.jpg')",
    )
    index.add_argument("--image-column", default=None, help="column holding image paths")
    index.add_argument("--id-column", default="id", help="column holding product ids")
    index.add_argument(
        "--encoding",
        default=None,
        help="text encoding of the table and --ids-file (default: UTF-8, or cp1252 when "
        "that is unambiguous)",
    )
    index.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="index links in an image folder that lead outside it (skipped, with a warning, "
        "by default)",
    )
    index.add_argument("--ids-file", default=None, help="table of ids to keep (e.g. splits.csv)")
    index.add_argument(
        "--ids-where", default=None, help="COLUMN=VALUE row filter for --ids-file (split=test)"
    )
    index.add_argument("--limit", type=int, default=None, help="only the first N products")
    index.add_argument("--batch-size", type=int, default=32, help="images per model batch")
    index.add_argument(
        "--commit-every", type=int, default=1024, help="images per committed (crash-safe) batch"
    )
    index.add_argument(
        "--ann", action="store_true", help="also (re)build the approximate index (needs [scale])"
    )
    index.add_argument("--no-progress", action="store_true", help="no progress bar")
    index.add_argument("--max-warnings", type=int, default=10, help="source warnings to print")
    index.add_argument("--max-failures", type=int, default=20, help="failures to print")
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.add_argument(
        "--wait",
        action="store_true",
        help="if another process is writing to the catalog, wait for it instead of failing",
    )
    index.add_argument(
        "--rebuild-if-model-changed",
        action="store_true",
        help="if the catalog was built with other model weights (e.g. an upgraded default "
        "model), delete it and embed every product again instead of failing",
    )
    _add_engine_options(index)
    index.set_defaults(handler=_cmd_index)


def _add_engine_options(index: argparse.ArgumentParser) -> None:
    group = index.add_argument_group("engine (embedding beyond one process)")
    group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: embed in this process; ray: embed on a Ray cluster with Ray Data "
        "(needs [ray]); the catalog is written here either way",
    )
    group.add_argument(
        "--address",
        default=None,
        help="Ray cluster address HOST:PORT, or 'auto' (default: start a local Ray)",
    )
    group.add_argument(
        "--workers", type=int, default=None, help="Ray actors (default: as many as fit)"
    )
    group.add_argument(
        "--ray-num-cpus", type=float, default=None, help="CPUs per actor (default 1; may be 0.5)"
    )
    group.add_argument(
        "--ray-num-gpus", type=float, default=None, help="GPUs per actor (e.g. 1 on GPU nodes)"
    )


def _add_search(commands: Any) -> None:
    search = commands.add_parser(
        "search",
        help="search a catalog by text, image or product",
        description="Search a catalog. --model defaults to the model that built the catalog.",
    )
    add_model_options(search)
    search.add_argument("query", nargs="?", default=None, help="text query")
    search.add_argument("--catalog", required=True, help="catalog folder")
    search.add_argument("--top-k", "-k", type=int, default=10, help="number of results")
    search.add_argument(
        "--filter",
        action="append",
        metavar="COLUMN=VALUE",
        help="keep products whose COLUMN equals VALUE; repeat a column to accept several values",
    )
    search.add_argument(
        "--filter-if-present",
        action="append",
        metavar="COLUMN=VALUE",
        help="like --filter, but ignored (with a note) when the catalog has no such column",
    )
    search.add_argument("--image", default=None, help="search by this image file")
    search.add_argument("--like", default=None, metavar="ID", help="products similar to ID")
    search.add_argument(
        "--exact", action="store_true", help="exact scan even if the catalog has an ANN index"
    )
    search.add_argument(
        "--title-column", default="productDisplayName", help="metadata column shown per hit"
    )
    search.add_argument("--json", action="store_true", help="print a JSON list, best first")
    search.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help="vector (embeddings), keyword (BM25 over the text index) or hybrid (both, with "
        "query understanding); default: hybrid for a text, vector otherwise",
    )
    search.add_argument(
        "--ignore-understood",
        action="append",
        metavar="COLUMN",
        help="do not use what was understood for this column (no boost, never a filter); "
        "repeatable",
    )
    search.set_defaults(handler=_cmd_search)


def register(commands: Any) -> None:
    """Add this module's subcommands to the ``fashionclip`` parser."""
    _add_info(commands)
    _add_index(commands)
    _add_search(commands)
