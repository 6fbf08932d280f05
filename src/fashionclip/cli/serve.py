"""The `serve` command: the HTTP service and its web page over a catalog."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fashionclip.cli.common import add_model_options
from fashionclip.errors import FashionCLIPError


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
    if args.weak_match_below:  # overrides the model's own ("off" turns the hint off)
        app.state.service.weak_match_below = _weak_match_option(args.weak_match_below)
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


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="web page and JSON API for searching a catalog",
        description="Serve a catalog over HTTP: a search page at / and a JSON API (schema at "
        "/openapi.json). Loads the model and catalog once. --model defaults to "
        "the model that built the catalog. For side-by-side results give --compare-catalog "
        "(the same products indexed with another model) or just --compare-model, which "
        "builds/refreshes CATALOG/compare-<fingerprint>/ at start-up (incremental).",
    )
    add_model_options(serve)
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
    serve.add_argument(
        "--weak-match-below",
        action="append",
        metavar="[MODE=]SCORE",
        help="best text-query score under which the page says nothing matches well, per search "
        "mode (repeatable, e.g. vector=0.5 hybrid=4.9; a bare SCORE is the vector mode's; "
        "default: the model's serving.json; 'off' turns the hint off)",
    )
    serve.add_argument("--no-progress", action="store_true", help="no progress bars")
    serve.set_defaults(handler=_cmd_serve)


def register(commands: Any) -> None:
    """Add this module's subcommands to the ``fashionclip`` parser."""
    _add_serve(commands)


def _weak_match_option(items: list[str]) -> dict[str, float] | None:
    """``--weak-match-below`` values as ``{mode: score}``; None for ``off``."""
    from fashionclip.index.query import MODES

    if items == ["off"]:
        return None
    cuts: dict[str, float] = {}
    for item in items:
        mode, sep, value = item.rpartition("=")
        mode = mode.strip() if sep else "vector"
        if mode not in MODES:
            raise FashionCLIPError(
                f"--weak-match-below: unknown mode {mode!r} ({', '.join(MODES)})"
            )
        try:
            cuts[mode] = float(value)
        except ValueError:
            raise FashionCLIPError(f"--weak-match-below: {value!r} is not a number") from None
    return cuts
