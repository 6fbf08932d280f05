"""What every subcommand shares: JSON output, model loading and the model options."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fashionclip.errors import FashionCLIPError

if TYPE_CHECKING:
    from fashionclip.models import FashionCLIP


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def load_model(
    name: str | None, device: str | None = None, allow_pickle: bool = False
) -> FashionCLIP:
    from fashionclip.models import load

    return load(name, device=device, allow_pickle=allow_pickle)


def add_model_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
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


def parse_filters(items: Sequence[str] | None) -> dict[str, list[str]]:
    """``col=value`` options; repeating a column accepts any of its values."""
    filters: dict[str, list[str]] = {}
    for item in items or []:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise FashionCLIPError(f"--filter must look like COLUMN=VALUE, got {item!r}")
        filters.setdefault(column.strip(), []).append(value.strip())
    return filters
