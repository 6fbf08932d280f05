"""Model commands: `classify` (zero-shot), `evaluate` (benchmarks) and `train`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from fashionclip.cli.common import add_model_options, load_model, print_json
from fashionclip.errors import FashionCLIPError


# ---------------------------------------------------------------------------------------- classify
def _cmd_classify(args: argparse.Namespace) -> int:
    """Classify the images that decode; the others are reported. None readable: exit 2."""
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    model = load_model(args.model, args.device, args.allow_pickle)
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
        print_json({"predictions": rows, "failures": failures})
    else:
        for row in rows:
            best = row["label"]
            print(f"{row['image']}\t{best}\t{row['scores'][best]:.3f}")
        for failure in failures:
            print(f"skipped {failure['image']}: {failure['error']}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------- evaluate
def _cmd_search_quality(args: argparse.Namespace) -> int:
    """`evaluate --tasks search-quality --catalog DIR`: P@10, nDCG@10, MRR per mode and slice."""
    import json

    from fashionclip.evaluate.search_quality import SearchQualityEvaluator, load_queries
    from fashionclip.index import Catalog

    if args.catalog is None:
        raise FashionCLIPError("--tasks search-quality needs --catalog DIR (a built catalog)")
    with Catalog.open(args.catalog) as catalog:
        name = (args.model or [None])[0] or catalog.model_identity.name
        model = load_model(name, args.device, args.allow_pickle)
        splits = tuple(s.strip() for s in args.search_splits.split(",") if s.strip())
        evaluator = SearchQualityEvaluator(catalog, load_queries(args.queries), splits=splits)
        metrics = evaluator(model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search-quality.json").write_text(json.dumps(metrics, indent=2))
    print_json(metrics)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shlex

    if args.tasks.strip() == "search-quality":
        return _cmd_search_quality(args)

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
        print_json(
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
        print_json(
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


def _add_classify(commands: Any) -> None:
    classify = commands.add_parser("classify", help="zero-shot classify images into labels")
    add_model_options(classify)
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


def _add_evaluate(commands: Any) -> None:
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
        "--tasks",
        default="zero-shot,linear-probe,retrieval",
        help="comma-separated tasks; or search-quality (with --catalog)",
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
    evaluate.add_argument(
        "--catalog", default=None, help="catalog folder for --tasks search-quality"
    )
    evaluate.add_argument(
        "--queries", default=None, help="search-quality queries, JSONL (default: shipped set)"
    )
    evaluate.add_argument(
        "--search-splits", default="test", help="search-quality query splits: dev, test or both"
    )
    evaluate.set_defaults(handler=_cmd_evaluate)


def _add_train(commands: Any) -> None:
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


def register(commands: Any) -> None:
    """Add this module's subcommands to the ``fashionclip`` parser."""
    _add_classify(commands)
    _add_evaluate(commands)
    _add_train(commands)
