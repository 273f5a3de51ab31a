"""The ``generate-signals`` and ``allocate-portfolio`` flows: composition only."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.utilities.annotations import quote

from tasks.audit import checkpoint_audit
from tasks.strategy import allocate_weights, generate, report_allocation, report_signals
from tradeflow.config import Settings, load_settings


@flow(name="generate-signals", log_prints=True)
def generate_signals(config_path: str | None = None, snapshot: str = "latest") -> dict[str, Any]:
    """Decide a signal per symbol on the snapshot's newest decision bar, with the champion model.

    Each symbol's newest bar is scored by the champion (unless it is disabled) and goes through
    the same signal rules as the backtest: the model's probability against thresholds that adapt
    to volatility, multi-timeframe alignment for the confidence, the regime and the volume
    profile. Every signal is stored, audited with its fingerprint, and listed in the ``signals``
    artifact with the reason for each symbol that got none.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        snapshot: A snapshot id, a unique prefix, or ``latest``.
    """
    settings = load_settings(config_path)
    signals = signals_stage(settings, snapshot)
    checkpoint = checkpoint_audit(quote(settings), quote(signals["audit"]))
    return {"signals_id": signals["id"], "key": signals["key"], "checkpoint": checkpoint}


def signals_stage(settings: Settings, snapshot: str) -> dict[str, Any]:
    """The signals flow's composition, without its checkpoint: the stored signal set."""
    signals: dict[str, Any] = generate(quote(settings), snapshot)
    report_signals(quote(signals))
    return signals


@flow(name="allocate-portfolio", log_prints=True)
def allocate_portfolio(
    config_path: str | None = None, signals_id: str | None = None, equity: float | None = None
) -> dict[str, Any]:
    """Turn a signal set into target weights within every risk limit, and say why each weight is what it is.

    Volatility targeting scaled by each signal's confidence, at most 40 % in one symbol, at most
    50 % in a group of symbols correlated above 0.7 over 30 days, a cap on the portfolio's
    volatility, half size in a VOLATILE regime, and the venue's lot sizes and minimums. Without
    ``signals_id`` it first generates signals from the latest snapshot.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        signals_id: A stored signal set (from ``generate-signals``); default: generate one now.
        equity: Portfolio equity to size against; default ``backtest.initial_equity``.
    """
    settings = load_settings(config_path)
    entries: list[dict[str, Any]] = []
    if signals_id is None:
        signals = signals_stage(settings, "latest")
        signals_id, entries = signals["id"], signals["audit"]
    allocation = allocation_stage(settings, signals_id, equity)
    checkpoint = checkpoint_audit(quote(settings), quote(entries + allocation["audit"]))
    return {
        "signals_id": signals_id,
        "allocation_id": allocation["id"],
        "key": allocation["key"],
        "weights": allocation["document"]["weights"],
        "checkpoint": checkpoint,
    }


def allocation_stage(settings: Settings, signals_id: str, equity: float | None) -> dict[str, Any]:
    """The allocation flow's composition after its signals, without its checkpoint: the allocation."""
    allocation: dict[str, Any] = allocate_weights(
        quote(settings), signals_id, equity or settings.backtest.initial_equity
    )
    report_allocation(quote(allocation))
    return allocation
