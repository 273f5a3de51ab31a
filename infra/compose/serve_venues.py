"""Serve the configured simulated venues on a network interface, at fixed ports, for the stack.

``tradeflow venues up`` binds 127.0.0.1 and picks free ports, which no other container can reach.
The docker-compose ``venues`` service runs this instead. It builds the same simulator spec from the
same config (``tradeflow.bootstrap.simulator_spec``), then binds ``--host`` (0.0.0.0 in the stack)
and gives the simulated venues consecutive ports from ``--first-port``, in config order:
sim-alpha 9101, sim-beta 9102, sim-gamma 9103 with the default tradeflow.toml.
``TRADEFLOW_VENUES`` in infra/docker-compose.yml points the worker at exactly these URLs.

Run it from the repository root (the image's working directory)::

    python infra/compose/serve_venues.py --host 0.0.0.0 --first-port 9101

It prints one JSON line, ``{"event": "ready", "venues": {id: url}}``, once every port is bound, and
stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from tradeflow.bootstrap import simulator_spec
from tradeflow.config import Settings, load_settings


def served_spec(settings: Settings, host: str, first_port: int) -> Any:
    """Return the simulator spec of ``settings`` bound to ``host``, venues on consecutive ports.

    ``first_port`` 0 lets every venue pick a free port (for tests).
    """
    spec = simulator_spec(settings)
    venues = [
        venue.model_copy(update={"port": first_port + index if first_port else 0})
        for index, venue in enumerate(spec.venues)
    ]
    return spec.model_copy(update={"host": host, "venues": venues})


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; return the exit code."""
    parser = argparse.ArgumentParser(prog="serve_venues.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="tradeflow config file (default: as tradeflow does)")
    parser.add_argument("--host", default="0.0.0.0", help="interface to bind (default: 0.0.0.0)")
    parser.add_argument(
        "--first-port", type=int, default=9101, help="port of the first venue (0: free ports)"
    )
    args = parser.parse_args(argv)

    from tradeflow.simulator import serve_forever

    settings = load_settings(args.config)
    if not any(venue.simulated for venue in settings.venues):
        parser.error("the config has no simulated venues (simulated = true)")
    spec = served_spec(settings, args.host, args.first_port)

    def ready(urls: dict[str, str]) -> None:
        sys.stdout.write(json.dumps({"event": "ready", "venues": urls}) + "\n")
        sys.stdout.flush()

    serve_forever(spec, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
