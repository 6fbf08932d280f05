"""Command line: thin wrappers over the library. Each subcommand is one `_cmd_*` function.

User errors (FashionCLIPError) print one line on stderr and exit with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashionclip.errors import FashionCLIPError


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def _load_model(name: str | None, device: str | None = None, allow_pickle: bool = False):
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
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    model = _load_model(args.model, args.device, args.allow_pickle)
    images = [Path(p) for p in args.images]
    outcome = model.try_encode_images(
        images, batch_size=args.batch_size, show_progress=args.progress
    )
    label_vectors = model.label_embeddings(labels, args.template or None)
    probabilities = model.label_probabilities(outcome.embeddings, label_vectors)
    rows = []
    for index, row in zip(outcome.ok_indices, probabilities, strict=True):
        order = row.argsort()[::-1]
        rows.append(
            {
                "image": str(images[index]),
                "label": labels[int(order[0])],
                "scores": {labels[int(i)]: round(float(row[i]), 6) for i in order},
            }
        )
    failures = [{"image": f.source, "error": f.reason} for f in outcome.failures]
    if args.json:
        _print_json({"predictions": rows, "failures": failures})
    else:
        for row in rows:
            best = row["label"]
            print(f"{row['image']}\t{best}\t{row['scores'][best]:.3f}")
        for failure in failures:
            print(f"skipped {failure['image']}: {failure['error']}", file=sys.stderr)
    return 0 if rows or not failures else 1


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
