"""Run a cluster of venues: in a background thread, a child process, or the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

from aiohttp import web

from tradeflow.simulator.runtime import VenueRuntime
from tradeflow.simulator.server import build_app
from tradeflow.simulator.spec import ClusterSpec
from tradeflow.simulator.venue import SimulatedVenue

READY_TIMEOUT_SECONDS = 60.0
_SHUTDOWN_GRACE_SECONDS = 0.5


@dataclass
class _Serving:
    runners: list[web.AppRunner]
    base_urls: dict[str, str]


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def _start_venues(spec: ClusterSpec) -> _Serving:
    """Bind every venue's port and start serving; undo everything if one venue fails."""
    serving = _Serving(runners=[], base_urls={})
    try:
        for venue_spec in spec.venues:
            sock = _bind(spec.host, venue_spec.port)
            runtime = VenueRuntime(SimulatedVenue(spec, venue_spec), venue_spec)
            # Handlers stuck in a "timeout" fault are cancelled when their client gives up.
            runner = web.AppRunner(
                build_app(runtime),
                access_log=None,
                handler_cancellation=True,
                shutdown_timeout=_SHUTDOWN_GRACE_SECONDS,
            )
            await runner.setup()
            serving.runners.append(runner)
            site = web.SockSite(runner, sock)
            await site.start()
            port = sock.getsockname()[1]
            serving.base_urls[venue_spec.id] = f"http://{spec.host}:{port}"
    except BaseException:
        await _stop_venues(serving)
        raise
    return serving


async def _stop_venues(serving: _Serving) -> None:
    for runner in serving.runners:
        await runner.cleanup()
    serving.runners.clear()


def _with_ports(spec: ClusterSpec, base_urls: dict[str, str]) -> ClusterSpec:
    venues = [v.model_copy(update={"port": int(base_urls[v.id].rsplit(":", 1)[1])}) for v in spec.venues]
    return spec.model_copy(update={"venues": venues})


async def _serve_until(
    spec: ClusterSpec, stop: asyncio.Event, on_ready: Callable[[dict[str, str]], None]
) -> None:
    serving = await _start_venues(spec)
    try:
        on_ready(dict(serving.base_urls))
        await stop.wait()
    finally:
        await _stop_venues(serving)


def serve_forever(
    spec: ClusterSpec,
    on_ready: Callable[[dict[str, str]], None],
    *,
    stop_on_stdin_eof: bool = False,
) -> None:
    """Serve a cluster in the foreground until SIGINT or SIGTERM.

    Signals are only caught when called from the main thread.

    Args:
        spec: The cluster; its history anchor is pinned at start if unset.
        on_ready: Called once with venue id -> base URL when every port is bound.
        stop_on_stdin_eof: Also stop when stdin closes, so a child server never outlives a
            parent that died without sending SIGTERM.
    """
    spec = spec.resolved()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        if stop_on_stdin_eof:
            fd = sys.stdin.fileno()

            def on_stdin() -> None:
                if not os.read(fd, 4096):
                    loop.remove_reader(fd)
                    stop.set()

            loop.add_reader(fd, on_stdin)
        await _serve_until(spec, stop, on_ready)

    asyncio.run(main())


class RunningCluster:
    """A started cluster; stop it explicitly or use it as a context manager.

    Attributes:
        base_urls: Venue id -> "http://127.0.0.1:PORT".
        spec: The cluster spec as served: history anchor pinned and real ports filled in,
            so ``SimulatedVenue(spec, spec.venue(id))`` reproduces what a venue serves.
        mode: "thread" or "process".
        pid: The serving child's process id in process mode, else None.
    """

    def __init__(
        self,
        base_urls: dict[str, str],
        spec: ClusterSpec,
        mode: Literal["thread", "process"],
        stopper: Callable[[], None],
        pid: int | None = None,
    ) -> None:
        """Wrap a started cluster; ``stopper`` tears it down and is called at most once."""
        self.base_urls = base_urls
        self.spec = spec
        self.mode = mode
        self.pid = pid
        self._stopper: Callable[[], None] | None = stopper
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Return whether stop() has not been called yet."""
        return self._stopper is not None

    def stop(self) -> None:
        """Stop every venue and release threads, processes and ports; safe to call twice."""
        with self._lock:
            stopper, self._stopper = self._stopper, None
        if stopper is not None:
            stopper()

    def __enter__(self) -> Self:
        """Return the running cluster."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the cluster."""
        self.stop()


class VenueCluster:
    """Start the venues of a :class:`ClusterSpec`."""

    def __init__(self, spec: ClusterSpec) -> None:
        """Prepare to serve ``spec`` (nothing is bound until :meth:`start`)."""
        self.spec = spec

    def start(self, mode: Literal["thread", "process"] = "thread") -> RunningCluster:
        """Bind every venue and return once all of them accept connections.

        Args:
            mode: "thread" serves every venue from one asyncio loop in a daemon thread (for
                tests); "process" runs ``python -m tradeflow.simulator serve`` so the simulator
                does not compete with the caller for the GIL.

        Raises:
            RuntimeError: The servers did not come up (the cause is chained or quoted).
        """
        spec = self.spec.resolved()
        if mode == "thread":
            return _start_thread(spec)
        if mode == "process":
            return _start_process(spec)
        raise ValueError(f"unknown mode {mode!r}")


def _start_thread(spec: ClusterSpec) -> RunningCluster:
    ready = threading.Event()
    state: dict[str, object] = {}
    loop_box: list[asyncio.AbstractEventLoop] = []
    stop_box: list[asyncio.Event] = []

    def on_ready(urls: dict[str, str]) -> None:
        state["urls"] = urls
        ready.set()

    async def main() -> None:
        loop_box.append(asyncio.get_running_loop())
        stop = asyncio.Event()
        stop_box.append(stop)
        await _serve_until(spec, stop, on_ready)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            state["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="venue-cluster", daemon=True)
    thread.start()
    if not ready.wait(READY_TIMEOUT_SECONDS):
        raise RuntimeError("venue cluster thread did not become ready in time")
    error = state.get("error")
    if error is not None or "urls" not in state:
        thread.join(5)
        raise RuntimeError("venue cluster failed to start") from (
            error if isinstance(error, BaseException) else None
        )

    def stopper() -> None:
        loop, stop = loop_box[0], stop_box[0]
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        if thread.is_alive():
            raise RuntimeError("venue cluster thread did not stop")

    urls = state["urls"]
    assert isinstance(urls, dict)
    return RunningCluster(urls, _with_ports(spec, urls), "thread", stopper)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _read_ready_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("simulator process did not report ready in time")
            if not sel.select(timeout=min(remaining, 0.5)):
                if proc.poll() is not None:
                    raise EOFError
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


def _tail(stream: IO[bytes], limit: int = 4000) -> str:
    stream.seek(0)
    return stream.read().decode(errors="replace")[-limit:]


def _start_process(spec: ClusterSpec) -> RunningCluster:
    # Both files outlive this function: the child reads them until the cluster stops.
    spec_file = tempfile.NamedTemporaryFile(  # noqa: SIM115
        "w", prefix="tradeflow-venues-", suffix=".json", delete=False
    )
    with spec_file:
        spec_file.write(spec.model_dump_json())
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    env = dict(os.environ)
    root = str(_repo_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tradeflow.simulator",
            "serve",
            "--spec",
            spec_file.name,
            "--stop-on-stdin-eof",
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        # The child watches this pipe: it closes when we exit, however we exit.
        stdin=subprocess.PIPE,
        env=env,
    )

    def cleanup() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        stderr.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spec_file.name)

    try:
        line = _read_ready_line(proc, time.monotonic() + READY_TIMEOUT_SECONDS)
        message = json.loads(line)
        urls = {str(k): str(v) for k, v in message["venues"].items()}
    except (EOFError, TimeoutError, ValueError, KeyError) as exc:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        code = proc.returncode
        detail = _tail_safely(stderr)
        cleanup()
        raise RuntimeError(
            f"simulator process failed to start (exit code {code}): {exc!r}\n{detail}"
        ) from exc
    return RunningCluster(urls, _with_ports(spec, urls), "process", cleanup, pid=proc.pid)


def _tail_safely(stream: IO[bytes]) -> str:
    try:
        return _tail(stream)
    except (ValueError, OSError):
        return "(stderr unavailable)"
