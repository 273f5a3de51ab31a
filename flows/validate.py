"""The ``validate-market-data`` flow: composition only (ordering, fan-out, the loud failure)."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from tasks.audit import checkpoint_audit
from tasks.validate import (
    build_data_docs,
    plan_validation,
    publish_validation_task,
    read_ingest_batch,
    report_validation,
    validate_candles,
    validate_snapshot,
)
from tradeflow.config import Settings, load_settings
from tradeflow.quality.validation import SymbolUnusableError, curated_last, unusable_message


@flow(name="validate-market-data", task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True)
def validate_market_data(
    config_path: str | None = None, ingest_sequence: int | None = None
) -> dict[str, Any]:
    """Validate every ingest batch not validated yet, then curate consensus candles from it.

    For each batch: the candle suite (schema, OHLC consistency, timestamps, holes, spikes, volume
    anomalies, staleness, frozen prices) and the cross-venue suite run on every venue's series;
    the order book and trades suites on every snapshot. A check that fails under a ``fail``
    policy quarantines its batch (copied to ``quarantine/`` with its report); ``warn`` keeps it
    and flags it. Curated candles are the consensus of the venues that passed, with provenance.
    GX Data Docs, JSON results and an integrity report per symbol go into the store, and the
    validation manifest is published last; the validation and every quarantine are recorded in
    the audit chain, which is checkpointed at the end of the run. The run fails, naming the
    suite and checks, when a symbol has no venue left that passed; a single bad venue covered
    by others does not fail it.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        ingest_sequence: Validate up to this ingest manifest; default the newest.
    """
    settings = load_settings(config_path)
    result = validate_stage(settings, ingest_sequence)
    checkpoint = checkpoint_audit(quote(settings), quote(result.pop("audit")))
    message = result.pop("unusable")
    if message:
        raise SymbolUnusableError(
            f"{message}\nThe batches are in quarantine/ with their reports; nothing was curated for these."
        )
    return result | {"checkpoint": checkpoint}


def validate_stage(settings: Settings, ingest_sequence: int | None) -> dict[str, Any]:
    """The validation flow's composition, without its checkpoint or its loud failure.

    Returns the flow's result plus ``audit`` (the entries written) and ``unusable`` (the
    message naming symbols with no venue left that passed; empty when all are usable).
    """
    config = quote(settings)
    plan = plan_validation(config, ingest_sequence)
    previous = plan["previous"]
    runs: list[dict[str, Any]] = []
    all_groups = []
    for sequence in plan["pending"]:
        started = time.monotonic()
        batch = read_ingest_batch(config, sequence)
        run_name = f"{flow_run.id or 'local'}-{batch.tag}"
        group_futures = [
            validate_candles.submit(config, run_name, quote(batch), symbol, timeframe,
                                    curated_last(previous, symbol, timeframe))
            for symbol, timeframe in sorted(batch.candle_series)
        ]  # fmt: skip
        snapshot_futures = [
            validate_snapshot.submit(config, run_name, quote(batch), dataset, venue, symbol)
            for dataset, venue, symbol in sorted(batch.snapshots)
        ]
        groups = [f.result() for f in group_futures]
        snapshots = [f.result() for f in snapshot_futures]
        docs = build_data_docs(config, run_name, batch.tag)
        run = {"flow_run_id": str(flow_run.id or ""), "ingest_sequence": sequence}
        manifest = publish_validation_task(config, quote(batch), quote(previous), quote(groups),
                                           quote(snapshots), docs, run)  # fmt: skip
        report_validation(quote(batch), quote(groups), quote(snapshots), docs, quote(manifest))
        previous = manifest
        all_groups += groups
        runs.append(
            {
                "ingest_sequence": sequence,
                "validation_sequence": manifest["sequence"],
                "validation_id": manifest["validation_id"],
                "groups": [g.to_dict() for g in groups],
                "snapshots": [s.to_dict() for s in snapshots],
                "data_docs": docs,
                "reports": manifest["reports"],
                "audit": manifest["audit"],
                "seconds": time.monotonic() - started,
            }
        )
    return {
        "validated": plan["pending"],
        "validated_through": plan["validated_through"],
        "runs": runs,
        "audit": [entry for run in runs for entry in run["audit"]],
        "unusable": unusable_message(all_groups),
    }
