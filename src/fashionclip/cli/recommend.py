"""The `traverse` command: "like this, but darker" walks through a catalog (GradREC)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fashionclip.cli.common import add_model_options, load_model, parse_filters, print_json


# ------------------------------------------------------------------------------------ traverse
def _cmd_traverse(args: argparse.Namespace) -> int:
    from fashionclip.index import Catalog, ProductNotFoundError
    from fashionclip.index.traverse import DEFAULT_KEEP, check_method, check_phrases

    check_phrases(args.start, args.end)  # before any model is loaded
    check_method(args.method)
    with Catalog.open(args.catalog) as catalog:
        if catalog.get(args.like) is None:  # before loading the model
            raise ProductNotFoundError(f"no product {args.like!r} in catalog {args.catalog}")
        keep = args.keep
        if keep is None:
            keep = DEFAULT_KEEP if DEFAULT_KEEP in catalog.columns else ""
        name = args.model or catalog.model_identity.name
        catalog.attach_model(load_model(name, args.device, args.allow_pickle))
        steps = catalog.traverse(
            args.like,
            args.start,
            args.end,
            steps=args.steps,
            per_step=args.per_step,
            step_size=args.step_size,
            neighbourhood=args.neighbourhood,
            filters=parse_filters(args.filter),
            keep=keep or None,
            method=args.method,
        )
    if args.json:
        print_json([[r.to_dict() for r in step] for step in steps])
        return 0
    for number, step in enumerate(steps, 1):
        print(f"step {number}:")
        for result in step:
            title = result.metadata.get(args.title_column) if args.title_column else None
            label = title if title is not None else ", ".join(map(str, result.metadata.values()))
            print(f"  {result.score:.4f}  {result.id}  {label}")
    if not steps:
        print(f"nothing lies further towards {args.end!r} near {args.like}", file=sys.stderr)
    return 0


def _add_traverse(commands: Any) -> None:
    from fashionclip.index.traverse import DEFAULT_KEEP, METHODS, WalkSettings

    default = WalkSettings()
    walk = commands.add_parser(
        "traverse",
        help="like this product, but more END than START (e.g. --from light --to dark)",
        description="Comparative recommendations (GradREC): walk from a product along the "
        "direction that turns the --from phrase into the --to phrase and print, step by step, "
        "real products a little further along. See docs/recommend.md.",
    )
    add_model_options(walk)
    walk.add_argument("--catalog", required=True, help="catalog folder")
    walk.add_argument("--like", required=True, metavar="ID", help="the seed product")
    walk.add_argument("--from", dest="start", required=True, help="start phrase ('light')")
    walk.add_argument("--to", dest="end", required=True, help="end phrase ('dark')")
    walk.add_argument(
        "--steps", type=int, default=default.steps, help="number of steps (default %(default)s)"
    )
    walk.add_argument(
        "--per-step",
        type=int,
        default=default.per_step,
        help="products shown per step (default %(default)s)",
    )
    walk.add_argument(
        "--step-size",
        type=float,
        default=None,
        help="step width in standard deviations along the direction (default: the reach is "
        "split into equal steps)",
    )
    walk.add_argument(
        "--neighbourhood",
        type=int,
        default=default.neighbourhood,
        help="how many of the seed's nearest products further along the walk may show",
    )
    walk.add_argument(
        "--keep",
        default=None,
        metavar="COLUMN",
        help=f"stay at the seed's value of COLUMN (default {DEFAULT_KEEP} when the catalog has "
        "it; '' for none)",
    )
    walk.add_argument("--filter", action="append", metavar="COLUMN=VALUE", help="as in search")
    walk.add_argument("--method", default="gradrec", choices=METHODS, help="the direction")
    walk.add_argument(
        "--title-column", default="productDisplayName", help="metadata column shown per hit"
    )
    walk.add_argument(
        "--json", action="store_true", help="print a JSON list of steps, each a list of hits"
    )
    walk.set_defaults(handler=_cmd_traverse)


def register(commands: Any) -> None:
    """Add this module's subcommands to the ``fashionclip`` parser."""
    _add_traverse(commands)
