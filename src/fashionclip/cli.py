"""Command line: thin wrappers over the library. Each subcommand is one `_cmd_*` function.

User errors (FashionCLIPError) print one line on stderr and exit with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashionclip.errors import FashionCLIPError, ModelMismatchError

if TYPE_CHECKING:
    from fashionclip.models import FashionCLIP


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def _load_model(
    name: str | None, device: str | None = None, allow_pickle: bool = False
) -> FashionCLIP:
    from fashionclip.models import load

    return load(name, device=device, allow_pickle=allow_pickle)


def _add_model_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--model",
        required=required,
        default=None,
        help="model folder or Hugging Face id (default: the shipped fashion-clip-mini)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow loading pickle (.bin) weights; only for checkpoints you trust",
    )


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
        model = _load_model(args.model, args.device, args.allow_pickle)
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
        _print_json(info)
    else:
        for key, value in info.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for sub_key, sub_value in value.items():
                    print(f"  {sub_key}: {sub_value}")
            else:
                print(f"{key}: {value}")
    return 0


# ---------------------------------------------------------------------------------------- classify
def _cmd_classify(args: argparse.Namespace) -> int:
    """Classify the images that decode; the others are reported. None readable: exit 2."""
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    model = _load_model(args.model, args.device, args.allow_pickle)
    label_vectors = model.label_embeddings(labels, args.template or None)
    images = [Path(p) for p in args.images]
    outcome = model.try_encode_images(
        images, batch_size=args.batch_size, show_progress=args.progress
    )
    if not outcome.ok_indices:
        shown = "; ".join(
            f.reason if f.source in f.reason else f"{f.source}: {f.reason}"
            for f in outcome.failures[:3]
        )
        more = f"; ... {len(outcome.failures) - 3} more" if len(outcome.failures) > 3 else ""
        raise FashionCLIPError(f"no readable image: {shown}{more}")
    predictions = model.predictions(outcome.embeddings, labels, label_vectors)
    rows: list[dict[str, Any]] = [
        {
            "image": str(images[index]),
            "label": prediction.label,
            "scores": {
                label: round(score, 6)
                for label, score in sorted(prediction.scores.items(), key=lambda kv: -kv[1])
            },
        }
        for index, prediction in zip(outcome.ok_indices, predictions, strict=True)
    ]
    failures = [{"image": f.source, "error": f.reason} for f in outcome.failures]
    if args.json:
        _print_json({"predictions": rows, "failures": failures})
    else:
        for row in rows:
            best = row["label"]
            print(f"{row['image']}\t{best}\t{row['scores'][best]:.3f}")
        for failure in failures:
            print(f"skipped {failure['image']}: {failure['error']}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------- index
def _cmd_index(args: argparse.Namespace) -> int:
    from fashionclip.data.csvread import print_warnings
    from fashionclip.data.tables import IdSubset, read_catalog_source
    from fashionclip.index import Catalog
    from fashionclip.index.store import DB_NAME, REPORT_NAME

    if args.ids_where and not args.ids_file:
        raise FashionCLIPError("--ids-where needs --ids-file")
    subset = (
        IdSubset.parse(args.ids_file, args.ids_where, encoding=args.encoding)
        if args.ids_file
        else None
    )
    source = read_catalog_source(
        args.source,
        id_column=args.id_column,
        image_column=args.image_column,
        image_template=args.image_template,
        subset=subset,
        limit=args.limit,
        encoding=args.encoding,
    )
    print_warnings(source.warnings, args.max_warnings)
    catalog_dir = Path(args.catalog)
    # Opened once: without a model to learn which model built it, then the model is attached.
    catalog = Catalog.open(catalog_dir) if (catalog_dir / DB_NAME).is_file() else None
    try:
        model_name = args.model or (catalog.model_identity.name if catalog else None)
        model = _load_model(model_name, args.device, args.allow_pickle)
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
    with catalog:
        report = catalog.index(
            source,
            batch_size=args.batch_size,
            commit_every=args.commit_every,
            show_progress=not args.no_progress,
        )
        total = len(catalog)
        ann = catalog.build_ann(show_progress=not args.no_progress) if args.ann else None
    if args.json:
        summary = {**report.to_dict(), "catalog_size": total, "warnings": source.warnings}
        if ann is not None:
            summary["ann"] = ann.to_meta()
        _print_json(summary)
    else:
        print(f"{catalog_dir}: {report.summary()}; the catalog holds {total} products")
        if ann is not None:
            print(f"ANN index of {ann.size} vectors built in {ann.seconds:.1f}s")
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
def _parse_filters(items: Sequence[str] | None) -> dict[str, list[str]]:
    """``col=value`` options; repeating a column accepts any of its values."""
    filters: dict[str, list[str]] = {}
    for item in items or []:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise FashionCLIPError(f"--filter must look like COLUMN=VALUE, got {item!r}")
        filters.setdefault(column.strip(), []).append(value.strip())
    return filters


def _cmd_search(args: argparse.Namespace) -> int:
    from fashionclip.errors import InvalidQueryError
    from fashionclip.index import Catalog, Query

    given = [x for x in (args.query, args.image, args.like) if x is not None]
    if len(given) != 1:
        raise InvalidQueryError("give exactly one of: a query text, --image PATH or --like ID")
    with Catalog.open(args.catalog) as catalog:
        filters = _parse_filters(args.filter)
        for column, values in _parse_filters(args.filter_if_present).items():
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
        )
        if query.needs_encoding:
            name = args.model or catalog.model_identity.name
            catalog.attach_model(_load_model(name, args.device, args.allow_pickle))
        results = catalog.run(query)
    if args.json:
        _print_json([r.to_dict() for r in results])
    else:
        for rank, result in enumerate(results, 1):
            meta = result.metadata
            title = meta.get(args.title_column) if args.title_column else None
            label = title if title is not None else ", ".join(f"{v}" for v in meta.values())
            print(f"{rank:>3}. {result.score:.4f}  {result.id}  {label}")
        if not results:
            print("no results", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------- evaluate
def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shlex

    from fashionclip.evaluate.runner import EvaluationConfig, run_evaluation, stderr_log
    from fashionclip.evaluate.zero_shot import DEFAULT_TEMPLATES, ENSEMBLE_TEMPLATES

    def csv(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]

    templates = list(args.template or [])
    if args.template_ensemble:
        templates += [t for t in ENSEMBLE_TEMPLATES if t not in templates]
    config = EvaluationConfig(
        models=list(args.model or []),
        out_dir=Path(args.out),
        tasks=csv(args.tasks),
        datasets=csv(args.datasets),
        attributes=csv(args.attributes),
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        limit=args.limit,
        probe_train_size=args.probe_train_size,
        min_class_size=args.min_class_size,
        templates=templates or list(DEFAULT_TEMPLATES),
        category_template=args.category_template,
        baselines=not args.no_baselines,
        plots=not args.no_plots,
        batch_size=args.batch_size,
        device=args.device,
        allow_pickle=args.allow_pickle,
        seed=args.seed,
        show_progress=not args.quiet,
        command=shlex.join(["fashionclip", *sys.argv[1:]]),
    )
    run = run_evaluation(config, log=None if args.quiet else stderr_log)
    if args.json:
        _print_json(
            {
                "results": run.results_path,
                "report": run.report_path,
                "plots": [str(p) for p in run.plots],
                "seconds": run.seconds,
                "records": [dataclasses.asdict(record) for record in run.records],
            }
        )
        return 0
    print(f"results: {run.results_path}")
    print(f"report:  {run.report_path}")
    print(f"plots:   {len(run.plots)} PNG file(s) in {run.out_dir / 'plots'}")
    print(f"Total run time: {run.seconds:.1f} s ({run.seconds / 60:.1f} min)")
    return 0


# ---------------------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from fashionclip.train import load_train_config, train

    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.quiet:
        overrides.append("progress=false")
    result = train(load_train_config(args.config, overrides))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        _print_json(
            {
                "finished": result.finished,
                "global_step": result.global_step,
                "total_steps": result.total_steps,
                "epochs_completed": result.epochs_completed,
                "samples_per_second": result.samples_per_second,
                "train_size": result.train_size,
                "val_size": result.val_size,
                "skipped_train": result.skipped_train,
                "skipped_val": result.skipped_val,
                "best_checkpoint": result.best_checkpoint,
                "best_metric": result.best_metric,
                "best_epoch": result.best_epoch,
                "last_checkpoint": result.last_checkpoint,
                "log": result.log_path,
                "last_validation": next(
                    (row for row in reversed(result.history) if row.get("type") == "val"), None
                ),
            }
        )
        return 0
    status = "finished" if result.finished else "stopped (run the same command to resume)"
    print(
        f"training {status}: step {result.global_step}/{result.total_steps}, "
        f"{result.epochs_completed} epoch(s), {result.samples_per_second:.1f} samples/s"
    )
    if result.skipped_train:
        print(f"skipped training rows: {result.skipped_train}")
    if result.best_checkpoint is not None:
        print(
            f"best: {result.best_checkpoint} ({result.best_metric:.4f}, epoch {result.best_epoch})"
        )
    print(f"last: {result.last_checkpoint}")
    print(f"log:  {result.log_path}")
    return 0


# ---------------------------------------------------------------------------------------- serve
def _cmd_serve(args: argparse.Namespace) -> int:
    import ipaddress

    import uvicorn

    from fashionclip.serve.app import create_app
    from fashionclip.serve.startup import load_serving_state

    if args.port < 0 or args.port > 65535:
        raise FashionCLIPError(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise FashionCLIPError("--max-upload-mb must be positive")
    state = load_serving_state(
        args.catalog,
        model=args.model,
        compare_model=args.compare_model,
        compare_catalog=args.compare_catalog,
        device=args.device,
        allow_pickle=args.allow_pickle,
        show_progress=not args.no_progress,
        log=lambda line: print(line, file=sys.stderr),
    )
    app = create_app(
        state.catalog,
        state.model,
        compare_model=state.compare_model,
        compare_catalog=state.compare_catalog,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
    )
    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(
            f"warning: listening on {args.host}: other machines can reach this server "
            "(it has no authentication)",
            file=sys.stderr,
        )
    print(
        f"serving on http://{args.host}:{args.port}/ (API schema at /openapi.json)", file=sys.stderr
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


# ---------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionclip",
        description="Zero-shot classification, catalog search, training and evaluation "
        "with CLIP-style fashion models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="versions, device, model and catalog details")
    _add_model_options(info)
    info.add_argument("--catalog", default=None, help="also describe this catalog folder")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=_cmd_info)

    classify = commands.add_parser("classify", help="zero-shot classify images into labels")
    _add_model_options(classify)
    classify.add_argument("images", nargs="+", help="image files")
    classify.add_argument(
        "--labels", required=True, help="comma-separated labels, e.g. 'flat shoes,high-heel shoes'"
    )
    classify.add_argument(
        "--template",
        action="append",
        help="prompt template with {} for the label (repeat to ensemble); default 'a photo of a {}'",
    )
    classify.add_argument("--batch-size", type=int, default=32)
    classify.add_argument("--progress", action="store_true", help="show a progress bar")
    classify.add_argument("--json", action="store_true", help="machine-readable output")
    classify.set_defaults(handler=_cmd_classify)

    # Subcommands of other parts register below (one block each).
    index = commands.add_parser(
        "index",
        help="build or update a catalog from a table (CSV/Parquet) or image folder",
        description="Build or update a catalog. Only new products and changed images are "
        "embedded. --model defaults to the catalog's model when the catalog exists.",
    )
    _add_model_options(index)
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
        "--rebuild-if-model-changed",
        action="store_true",
        help="if the catalog was built with other model weights (e.g. an upgraded default "
        "model), delete it and embed every product again instead of failing",
    )
    index.set_defaults(handler=_cmd_index)

    search = commands.add_parser(
        "search",
        help="search a catalog by text, image or product",
        description="Search a catalog. --model defaults to the model that built the catalog.",
    )
    _add_model_options(search)
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
    search.set_defaults(handler=_cmd_search)

    evaluate = commands.add_parser(
        "evaluate",
        help="benchmark models against baselines: zero-shot, linear probe, retrieval",
        description="Evaluate one or more models on the KAGL test split and Fashion-MNIST, "
        "with majority, random-embedding, BM25 and hybrid baselines. Writes OUT/results.json, "
        "OUT/report.md and OUT/plots/*.png; image embeddings are cached per model in OUT/cache.",
    )
    evaluate.add_argument(
        "--model",
        action="append",
        help="model folder or Hugging Face id; repeat to compare (default: the shipped model)",
    )
    evaluate.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    evaluate.add_argument(
        "--allow-pickle", action="store_true", help="allow pickle (.bin) weights you trust"
    )
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument(
        "--tasks", default="zero-shot,linear-probe,retrieval", help="comma-separated tasks"
    )
    evaluate.add_argument(
        "--datasets",
        default="kagl,fashion-mnist",
        help="comma-separated: kagl, fashion-mnist, ccp-garments",
    )
    evaluate.add_argument(
        "--attributes",
        default="articleType,subCategory,masterCategory,baseColour,gender,usage",
        help="KAGL attributes to classify",
    )
    evaluate.add_argument(
        "--data-dir", default=None, help="folder with kagl/ and fashion_mnist/ (default: "
        "$FASHIONCLIP_DATA_DIR or ../shared/data)"
    )  # fmt: skip
    evaluate.add_argument("--cache-dir", default=None, help="embedding cache (default OUT/cache)")
    evaluate.add_argument(
        "--limit", type=int, default=None, help="at most N items per split (quick runs)"
    )
    evaluate.add_argument(
        "--probe-train-size", type=int, default=10_000, help="linear-probe training items"
    )
    evaluate.add_argument(
        "--min-class-size", type=int, default=10, help="drop classes with fewer test items"
    )
    evaluate.add_argument(
        "--template",
        action="append",
        help="zero-shot prompt with {} for the class; repeat to ensemble "
        "(default 'a photo of a {}')",
    )
    evaluate.add_argument(
        "--template-ensemble", action="store_true", help="add the built-in prompt ensemble"
    )
    evaluate.add_argument(
        "--category-template", default="a photo of {}", help="category-to-product query"
    )
    evaluate.add_argument("--batch-size", type=int, default=64, help="images per model batch")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling and baseline seed")
    evaluate.add_argument("--no-baselines", action="store_true", help="models only")
    evaluate.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    evaluate.add_argument("--quiet", action="store_true", help="no progress output")
    evaluate.add_argument(
        "--json", action="store_true", help="print every result record as JSON at the end"
    )
    evaluate.set_defaults(handler=_cmd_evaluate)

    train = commands.add_parser(
        "train",
        help="fine-tune a CLIP-style model on image-caption pairs",
        description="Contrastive fine-tuning from a TOML/JSON config (see configs/); resumes "
        "from OUTPUT_DIR/last when it exists. Multi-GPU: torchrun --nproc_per_node N "
        "-m fashionclip.cli train ...",
    )
    train.add_argument("--config", required=True, help="training config (.toml or .json)")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set epochs=3 --set optim.lr=1e-4 (repeatable)",
    )
    train.add_argument("--output-dir", default=None, help="override output_dir")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--json", action="store_true", help="print the run's summary as JSON at the end"
    )
    train.set_defaults(handler=_cmd_train)

    serve = commands.add_parser(
        "serve",
        help="web page and JSON API for searching a catalog",
        description="Serve a catalog over HTTP: a search page at / and a JSON API (its "
        "the API schema at /openapi.json). Loads the model and catalog once. --model defaults to "
        "the model that built the catalog. For side-by-side results give --compare-catalog "
        "(the same products indexed with another model) or just --compare-model, which "
        "builds/refreshes CATALOG/compare-<fingerprint>/ at start-up (incremental).",
    )
    _add_model_options(serve)
    serve.add_argument("--catalog", required=True, help="catalog folder")
    serve.add_argument(
        "--compare-model", default=None, help="second model (folder or hub id) to compare with"
    )
    serve.add_argument(
        "--compare-catalog", default=None, help="catalog of the same products, compare model"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default loopback only)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--max-upload-mb", type=float, default=10.0, help="largest accepted image upload (MiB)"
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level",
    )
    serve.add_argument("--no-progress", action="store_true", help="no progress bars")
    serve.set_defaults(handler=_cmd_serve)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except FashionCLIPError as exc:
        print(f"fashionclip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fashionclip {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
