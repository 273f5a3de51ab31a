"""The ``backtest`` flow: composition only."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.utilities.annotations import quote

from tasks.audit import checkpoint_audit
from tasks.backtest import find_backtest, load_backtest_inputs, report_backtest, simulate
from tradeflow.config import Settings, load_settings


@flow(name="backtest", log_prints=True)
def backtest(config_path: str | None = None, snapshot: str = "latest") -> dict[str, Any]:
    """Backtest the champion on held-out data, with real trading costs; report, Monte Carlo, ablation.

    Each walk-forward test period is traded with the probabilities of the model trained without
    it, bar by bar over the snapshot's 1-minute candles: the same signal, allocation, exit and
    protection rules as live trading, fees per venue, slippage from the spread and a market
    impact calibrated from stored order books, fills limited to a share of each bar's volume and
    no earlier than the bar after the decision. Then 10,000 Monte Carlo scenarios and the same
    backtest with each feature family switched off. The HTML report is saved to the lake and
    logged to MLflow; the ``backtest-summary`` artifact has the headline numbers.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        snapshot: A snapshot id, a unique prefix, or ``latest``.
    """
    settings = load_settings(config_path)
    summary = backtest_stage(settings, snapshot)
    checkpoint = checkpoint_audit(quote(settings), quote(summary["audit"]))
    return summary | {"checkpoint": checkpoint}


def backtest_stage(settings: Settings, snapshot: str) -> dict[str, Any]:
    """The backtest flow's composition, without its checkpoint: the summary (with ``audit``)."""
    config = quote(settings)
    found = find_backtest(config, snapshot)
    if found is not None:
        report_backtest(quote(found))
        return found | {"reused": True, "audit": []}
    inputs = load_backtest_inputs(config, snapshot)
    summary: dict[str, Any] = simulate(config, quote(inputs))
    report_backtest(quote(summary))
    return summary | {"reused": False}
