"""A real ``prefect server`` (and process workers) for the tests that need one, stopped by process id.

The session's other flow tests share one ephemeral API (``prefect_test_harness``); these start
the real thing, as an operator would: ``prefect server start`` on a free port, on SQLite in a
temporary home or on a database of the machine's PostgreSQL, with its scheduler and triggers
services running. Everything started here runs in its own process group and is stopped through
its process id, whatever state it is in.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrefectServer:
    """A running ``prefect server``: its URLs, home and the environment that points clients at it."""

    url: str
    home: Path
    env: dict[str, str]
    log: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        """The API's base URL (``PREFECT_API_URL``)."""
        return f"{self.url}/api"

    def start(
        self, args: list[str], name: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a process against this server (a worker, ``tradeflow serve``); stopped with the server."""
        log = (self.home / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args, cwd=REPO, env=self.env | (extra_env or {}), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def logs(self, name: str = "server") -> str:
        """Return the end of a process's log (for failure messages)."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""


TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_for_flow_run(
    api: Any,
    run_id: str,
    deadline_seconds: float,
    log: Callable[[], str],
    check: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Poll ``GET /flow_runs/{id}`` until the run is terminal; fail with ``log()`` if the deadline passes.

    ``check`` runs on every poll (e.g. fail at once if the serving process died).
    """
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        check()
        run: dict[str, Any] = api.get(f"/flow_runs/{run_id}").json()
        if run["state_type"] in TERMINAL:
            return run
        time.sleep(1)
    pytest.fail(f"flow run {run_id} not finished in {deadline_seconds:.0f} s; log:\n{log()}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a process and its group by its id: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    """Wait until ``GET /api/health`` answers; raise with the server's log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


@contextmanager
def prefect_server(
    database_url: str | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[PrefectServer]:
    """Start ``prefect server start`` on a free port; yield it; stop it and its children by process id.

    Args:
        database_url: ``postgresql+asyncpg://…`` for PostgreSQL; default SQLite in the temp home.
        extra_env: More environment for the server and every process started through it.
    """
    home = Path(tempfile.mkdtemp(prefix="tradeflow-prefect-server-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRADEFLOW_"))}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        # New deployments are scheduled within seconds, not at the next minute's loop.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "5",
    }
    if "TRADEFLOW_REAL_DATA_DIR" in os.environ:
        env["TRADEFLOW_REAL_DATA_DIR"] = os.environ["TRADEFLOW_REAL_DATA_DIR"]
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    env |= extra_env or {}
    server = PrefectServer(url=url, home=home, env=env, log=home / "server.log")
    process = server.start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], "server"
    )
    try:
        wait_healthy(url, process, 120, server.log)
        yield server
    finally:
        for child in reversed(server.processes):
            stop_process(child)
        shutil.rmtree(home, ignore_errors=True)
