"""The ``build-features`` flow: composition only."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from tasks.audit import checkpoint_audit
from tasks.features import build_matrix, plan_features, read_symbol, report_features
from tradeflow.config import Settings, load_settings


@flow(name="build-features", task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True)
def build_features(config_path: str | None = None, snapshot: str = "latest") -> dict[str, Any]:
    """Build the feature matrix of a snapshot, or reuse the stored one when nothing changed.

    Reads each symbol's curated 1m candles (and order books) through the snapshot, every object
    re-hashed, then builds the configured feature set: returns, volatility, ATR, RSI, MACD,
    Bollinger, ADX, OBV and more, the same on 5m/15m/1h/4h bars that had closed, volume
    profile, regime, cross-asset and order-book features. The matrix is stored under the
    feature set's hash and the snapshot id; a matrix already there is reused.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        snapshot: A snapshot id, a unique prefix, or ``latest``.
    """
    settings = load_settings(config_path)
    result = features_stage(settings, snapshot)
    checkpoint = checkpoint_audit(quote(settings), quote(result["manifest"]["audit"]))
    return result | {"checkpoint": checkpoint}


def features_stage(settings: Settings, snapshot: str) -> dict[str, Any]:
    """The features flow's composition, without its checkpoint: ``snapshot_id`` and ``manifest``."""
    config = quote(settings)
    plan = plan_features(config, snapshot)
    if plan["manifest"] is not None:
        manifest = plan["manifest"] | {"reused": True, "audit": []}
    else:
        futures = [read_symbol.submit(config, plan["snapshot_id"], symbol) for symbol in plan["symbols"]]
        manifest = build_matrix(config, plan["snapshot_id"], quote([f.result() for f in futures]))
    report_features(quote(manifest))
    return {"snapshot_id": plan["snapshot_id"], "manifest": manifest}
