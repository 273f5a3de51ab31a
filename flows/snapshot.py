"""The ``snapshot-market-data`` flow: composition only."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from tasks.audit import checkpoint_audit
from tasks.snapshot import create_snapshot, report_snapshot
from tradeflow.config import Settings, load_settings


@flow(name="snapshot-market-data", log_prints=True)
def snapshot_market_data(config_path: str | None = None) -> dict[str, Any]:
    """Freeze the newest validated data into an immutable snapshot and record it in the audit chain.

    The snapshot lists every curated candle object and every raw object of the validated ingest
    batches, each with its SHA-256, rows, time range and schema; its id is the SHA-256 of that
    list, and features, models and backtests read data only through such an id. When the newest
    validation is already snapshotted, nothing new is written and the existing id is returned.
    The run ends with a signed checkpoint of the audit chain.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
    """
    settings = load_settings(config_path)
    index = snapshot_stage(settings)
    checkpoint = checkpoint_audit(quote(settings), quote(index["audit"]))
    return {"snapshot": index, "checkpoint": checkpoint}


def snapshot_stage(settings: Settings) -> dict[str, Any]:
    """The snapshot flow's composition, without its checkpoint: the snapshot index (with ``audit``)."""
    config = quote(settings)
    index: dict[str, Any] = create_snapshot(config, {"flow_run_id": str(flow_run.id or "")})
    report_snapshot(config, quote(index))
    return index
