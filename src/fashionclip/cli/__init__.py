"""Command line: thin wrappers over the library, one `_cmd_*` function per subcommand.

Subcommands live by subject (`catalog.py`: info, index, search; `recommend.py`: traverse;
`maintain.py`: check, text-index; `models.py`: classify, evaluate, train; `serve.py`:
serve); each module's ``register`` adds its parsers. User errors (FashionCLIPError) print
one line on stderr and exit with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fashionclip.cli import catalog, maintain, models, recommend, serve
from fashionclip.errors import FashionCLIPError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionclip",
        description="Zero-shot classification, catalog search, training and evaluation "
        "with CLIP-style fashion models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (catalog, recommend, maintain, models, serve):
        module.register(commands)
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
