"""Prefect tasks of the ``stream-execution`` flow: load the champion, trade until stopped."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models.serving import serving_model
from models.tracking import tracker_from_settings
from tasks.audit import audit_log
from tasks.notify import halt_sink
from tradeflow.config import Settings
from tradeflow.execution.killswitch import KillSwitch
from tradeflow.execution.runner import kill_switch_path, prepare_trading, run_prepared
from tradeflow.execution.session import SessionSummary

_DEFAULTS: dict[str, Any] = {"cache_policy": NO_CACHE}
KILL_SWITCH_VARIABLE = "tradeflow_kill_switch"
"""A Prefect variable: set it to ``on`` (UI, ``prefect variable set``, an automation) to halt."""


@task(name="load-serving-model", **_DEFAULTS)
def load_serving_model(settings: Settings) -> dict[str, Any]:
    """Load the model that serves signals (the champion unless disabled), for the hot path."""
    return serving_model(tracker_from_settings(settings))


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM (a Prefect cancellation, Ctrl-C) stop the session gracefully."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch_variable(switch: KillSwitch, stopped: threading.Event) -> None:
    """Engage the kill switch file when the Prefect variable says ``on`` (polled every 2 s)."""
    from prefect.variables import Variable

    while not stopped.wait(2.0):
        try:
            value = Variable.get(KILL_SWITCH_VARIABLE, default=None)
        except Exception:
            continue
        if str(value).lower() in ("on", "true", "1", "halt") and not switch.engaged:
            switch.engage(f"Prefect variable {KILL_SWITCH_VARIABLE} = {value}", "prefect")


@task(name="set-kill-switch", **_DEFAULTS)
def set_kill_switch(settings: Settings, engage: bool, reason: str) -> dict[str, Any]:
    """Write or remove the kill switch file and set the Prefect variable sessions elsewhere watch."""
    from prefect.variables import Variable

    switch = KillSwitch(kill_switch_path(settings))
    if engage:
        switch.engage(reason, "prefect")
    else:
        switch.release()
    Variable.set(KILL_SWITCH_VARIABLE, "on" if engage else "off", overwrite=True)
    return {"engaged": switch.engaged, "file": str(switch.path), "variable": "on" if engage else "off"}


@task(name="trade", **_DEFAULTS)
def trade(
    settings: Settings,
    mode: str,
    strategy: str,
    duration_seconds: float | None,
    kill_switch: bool,
    model: dict[str, Any] | None,
    watch_variable: bool = True,
) -> dict[str, Any]:
    """Trade until stopped: reconcile, stream books, decide, check risk, send orders, record everything."""
    switch = KillSwitch(kill_switch_path(settings))
    if kill_switch:
        switch.engage("stream-execution started with kill_switch = true", "prefect")
    prepared = prepare_trading(settings, mode=mode, strategy=strategy, duration_seconds=duration_seconds,
                               model=model, audit=audit_log(settings), progress=print)  # fmt: skip
    stopped = threading.Event()
    watcher = None
    if watch_variable:
        watcher = threading.Thread(target=_watch_variable, args=(switch, stopped), daemon=True)
        watcher.start()

    async def main() -> SessionSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with _stop_on_signals(lambda: loop.call_soon_threadsafe(stop.set)):
            return await run_prepared(
                prepared,
                stop=stop,
                on_ready=lambda info: print(f"trading; health at {info['health_url']}/healthz"),
                alert_sinks=[halt_sink(settings)],  # [notifications] risk_halt; [execution] webhook too
            )

    try:
        summary = asyncio.run(main())
    finally:
        stopped.set()
        prepared.close()
    result = summary.to_dict()
    create_markdown_artifact(key="stream-execution-summary", markdown=summary_markdown(result),
                             description="What the trading session did")  # fmt: skip
    return result


def summary_markdown(result: dict[str, Any]) -> str:
    """Return the session summary as a Markdown table."""
    rows = [
        ("venue / mode", f"{result['venue']} / {result['mode']}"),
        ("events", result["events"]),
        ("decisions (risk-checked)", result["decisions"]),
        ("orders sent", result["orders_sent"]),
        ("fills", result["fills"]),
        ("risk rejections", ", ".join(f"{k}: {v}" for k, v in result["rejections"].items()) or "none"),
        ("reconciliations (differences)", f"{result['reconciliations']} ({result['differences']})"),
        ("resyncs / reconnects", f"{result['resyncs']} / {result['reconnects']}"),
        ("trading state at stop", result["state"]),
        ("positions", ", ".join(f"{k} {v:g}" for k, v in result["positions"].items()) or "flat"),
        ("equity: start -> stop", f"{result['start_equity']:,.2f} -> {result['equity']:,.2f}"),
        (
            "decision latency p50 / p99 (us)",
            f"{result['latency_p50_us'] or 0:.0f} / {result['latency_p99_us'] or 0:.0f}",
        ),
    ]
    lines = ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines)
