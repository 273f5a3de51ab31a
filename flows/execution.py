"""The ``stream-execution`` flow: composition only."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow
from prefect.utilities.annotations import quote

from tasks.audit import checkpoint_audit
from tasks.execution import load_serving_model, set_kill_switch, trade
from tasks.limits import single_session
from tradeflow.config import load_settings


@flow(name="stream-execution", log_prints=True)
def stream_execution(
    config_path: str | None = None,
    mode: Literal["paper", "live", "staging"] | None = None,
    strategy: Literal["champion", "churn"] | None = None,
    duration_seconds: float | None = None,
    kill_switch: bool = False,
) -> dict[str, Any]:
    """Trade one venue from live websocket data until stopped: paper, live or staged (dry run).

    Reconciles with the venue first (open orders, recent fills, balances), then streams order
    books, trades and closed bars; every book event runs the champion (Booster.predict), the
    signal, allocation and exit rules of the backtest and the pre-trade risk checks; accepted
    orders are staged in the ledger before they are sent, under a deterministic client order id,
    so a restart never sends one twice. The session holds the global concurrency limit
    ``stream-execution-<venue>`` (created by ``tradeflow serve`` / ``deploy``): a second session on
    the same venue refuses to start. Cancel the run (or Ctrl-C) to stop gracefully: open
    orders are cancelled or kept as ``[execution] on_shutdown`` says. ``kill_switch = true``
    starts HALTED; so does the Prefect variable ``tradeflow_kill_switch = on`` while running.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        mode: paper, live or staging; default ``[execution] mode``.
        strategy: champion or churn (order-path exercise); default ``[execution] strategy``.
        duration_seconds: Stop after this long; default: run until cancelled.
        kill_switch: Engage the kill switch before trading starts.
    """
    settings = load_settings(config_path)
    chosen = strategy or settings.execution.strategy
    venue = settings.execution.venue or settings.venues[0].id
    with single_session(venue):  # never two sessions on one venue, whoever started them
        model = load_serving_model(quote(settings)) if chosen == "champion" else None
        summary = trade(
            quote(settings),
            mode or settings.execution.mode,
            chosen,
            duration_seconds,
            kill_switch,
            quote(model),
        )
    checkpoint = checkpoint_audit(quote(settings), [])
    return summary | {"checkpoint": checkpoint}


@flow(name="kill-switch", log_prints=True)
def kill_switch(
    config_path: str | None = None, engage: bool = True, reason: str = "automation"
) -> dict[str, Any]:
    """Engage (or release) the kill switch of every stream-execution session on this machine.

    Writes or removes the kill switch file the running sessions poll (HALTED within a second:
    no new entries, open orders cancelled) and sets the Prefect variable
    ``tradeflow_kill_switch``, which sessions on other machines watch. Deploy it, and a Prefect
    automation (a "run deployment" action on, say, a failed flow run or a metric alert) becomes
    a kill switch.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        engage: True to halt, False to release.
        reason: Recorded with the switch, in the ledger and the audit chain when a session halts.
    """
    settings = load_settings(config_path)
    return set_kill_switch(quote(settings), engage, reason)
