"""Command line of the simulator: ``python -m tradeflow.simulator serve --spec cluster.json``.

On start it prints exactly one JSON line to stdout, ``{"event": "ready", "venues": {...}}``,
once every port is bound; logs go to stderr. It exits cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from tradeflow.simulator.cluster import serve_forever
from tradeflow.simulator.spec import ClusterSpec


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tradeflow.simulator")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a cluster of venues until SIGTERM/SIGINT")
    serve.add_argument("--spec", required=True, type=Path, help="ClusterSpec as a JSON file")
    serve.add_argument("--log-level", default="WARNING", help="logging level for stderr")
    serve.add_argument(
        "--stop-on-stdin-eof",
        action="store_true",
        help="also stop when stdin closes (used when a parent process owns the server)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        spec = ClusterSpec.model_validate_json(args.spec.read_text())
    except (OSError, ValidationError) as error:
        parser.error(f"cannot load --spec {args.spec}: {error}")

    def on_ready(urls: dict[str, str]) -> None:
        sys.stdout.write(json.dumps({"event": "ready", "venues": urls}) + "\n")
        sys.stdout.flush()

    serve_forever(spec, on_ready, stop_on_stdin_eof=args.stop_on_stdin_eof)
    return 0


if __name__ == "__main__":
    sys.exit(main())
