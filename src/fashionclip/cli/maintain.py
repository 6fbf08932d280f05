"""Catalog maintenance commands: `check` (integrity, `--repair`) and `text-index`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fashionclip.cli.common import add_model_options, load_model, print_json
from fashionclip.errors import FashionCLIPError


def _cmd_check(args: argparse.Namespace) -> int:
    from fashionclip.index.check import check_catalog, damage_error, repair_catalog

    report = check_catalog(args.catalog)
    if args.repair and report.fatal:
        print(f"{args.catalog}: {damage_error(Path(args.catalog), report)}")
        return 1
    if not (args.repair and report.problems):
        return _print_check(args, report)

    def load(name: str) -> Any:
        return load_model(args.model or name, args.device, args.allow_pickle)

    repaired = repair_catalog(args.catalog, load)
    after = check_catalog(args.catalog)
    if args.json:
        extra = {"before": report.to_dict(), "repair": repaired.to_dict()}
        return _print_check(args, after, extra)
    for problem in report.problems:
        print(f"was damaged ({problem.check}): {problem.message}")
    print(
        f"repaired: dropped {len(repaired.dropped_segments)} damaged segments, salvaged "
        f"{repaired.salvaged} intact vectors, re-embedded {repaired.reembedded} products, "
        f"ANN index {repaired.ann}"
    )
    for lost in repaired.lost[: args.max_failures]:
        print(f"not recovered {lost['id']} ({lost['image']}): {lost['reason']}")
    if repaired.lost:
        print(f"{len(repaired.lost)} products not recovered; listed in repair-report.json")
    return _print_check(args, after)


def _print_check(args: argparse.Namespace, report: Any, extra: dict[str, Any] | None = None) -> int:
    """Print a check report (text or JSON); the exit status: 0 healthy, 1 damaged."""
    from fashionclip.index.check import damage_error

    if args.json:
        print_json({**report.to_dict(), **(extra or {})})
        return 0 if report.ok else 1
    for problem in report.problems:
        print(f"damaged ({problem.check}): {problem.message}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    if report.ok:
        print(
            f"{args.catalog}: ok ({report.products} products in {report.segments} segments; "
            f"checked {', '.join(report.checks)})"
        )
        return 0
    if report.fatal:
        print(f"{args.catalog}: {damage_error(Path(args.catalog), report)}")
    else:
        print(f"{args.catalog}: damaged; run again with --repair to salvage it")
    return 1


def _add_check(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="check a catalog's integrity; --repair salvages a damaged one",
        description="Check that the database is sound, every committed segment is present "
        "with the right shape, every product points at a live slot and the ANN index is "
        "readable. Exit status 0 when healthy, 1 when damaged. --repair keeps the intact rows "
        "of damaged segments, re-embeds the other products they held from their stored image "
        "paths (with --model, default the catalog's model) and rebuilds a broken ANN index; "
        "intact vectors are never dropped.",
    )
    add_model_options(check)
    check.add_argument("--catalog", required=True, help="catalog folder")
    check.add_argument("--repair", action="store_true", help="salvage a damaged catalog")
    check.add_argument("--max-failures", type=int, default=20, help="lost products to print")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=_cmd_check)


def _cmd_text_index(args: argparse.Namespace) -> int:
    from fashionclip.index import Catalog

    fields = None
    if args.field:
        fields = {}
        for item in args.field:
            column, _, weight = item.partition("=")
            try:
                fields[column.strip()] = float(weight) if weight else 1.0
            except ValueError:
                raise FashionCLIPError(
                    f"--field must look like COLUMN[=WEIGHT], got {item!r}"
                ) from None
    with Catalog.open(args.catalog) as catalog:
        columns = catalog.build_text_index(fields)
    print(f"{args.catalog}: text index built over {', '.join(columns)}")
    return 0


def _add_text_index(commands: Any) -> None:
    text = commands.add_parser(
        "text-index",
        help="(re)build a catalog's keyword index",
        description="Build the keyword (full-text) index of a catalog now instead of at its "
        "first keyword or hybrid search; --field chooses the columns and BM25 weights.",
    )
    text.add_argument("--catalog", required=True, help="catalog folder")
    text.add_argument(
        "--field",
        action="append",
        metavar="COLUMN[=WEIGHT]",
        help="index this metadata column (weight 1 by default); repeat. Default: every column",
    )
    text.set_defaults(handler=_cmd_text_index)


def register(commands: Any) -> None:
    """Add this module's subcommands to the ``fashionclip`` parser."""
    _add_text_index(commands)
    _add_check(commands)
