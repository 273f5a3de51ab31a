"""The ``daily-pipeline`` flow: every research stage in one flow run, passing ids, not data."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows.backtest import backtest_stage
from flows.features import features_stage
from flows.ingest import ingest_stage
from flows.snapshot import snapshot_stage
from flows.strategy import allocation_stage, signals_stage
from flows.training import training_stage
from flows.validate import validate_stage
from tasks.audit import checkpoint_audit
from tradeflow.config import load_settings
from tradeflow.quality.validation import SymbolUnusableError

T = TypeVar("T")

STAGES = ("ingest", "validate", "snapshot", "features", "train", "signals", "allocate", "backtest")


@flow(name="daily-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def daily_pipeline(
    config_path: str | None = None,
    running_venues: dict[str, str] | None = None,
    end_ms: int | None = None,
    backtest: bool = True,
) -> dict[str, Any]:
    """Ingest, validate, snapshot, featurize, train, decide signals, allocate and backtest the latest data.

    One flow run whose stages are tasks (a flow run per stage would add about a second of
    orchestration each): ingest the candles that closed since the last run, validate and curate
    them, freeze a snapshot, build its feature matrix (reused when stored), train and compare
    the models on it (reused when this snapshot was already trained with this config), decide
    today's signals with the champion, turn them into target weights, and backtest the champion
    on the snapshot. Stages hand each other ids (the ingest batch, the snapshot, the signal
    set), never data; the lineage of every id is in the audit chain, which gets one signed
    checkpoint at the end. The ``daily-pipeline-summary`` artifact lists the ids and each
    stage's wall time.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        running_venues: Base URLs of already running local venues (venue id → URL). When None
            and the config has simulated venues, ingest starts them for its own duration.
        end_ms: Pin the ingest window's end (UTC ms); default now.
        backtest: Run the backtest stage (the slowest); False stops after the allocation.
    """
    settings = load_settings(config_path)
    seconds: dict[str, float] = {}
    entries: list[dict[str, Any]] = []

    def timed(name: str, call: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            return call()
        finally:
            seconds[name] = round(time.monotonic() - started, 3)

    ingest = timed("ingest", lambda: ingest_stage(settings, running_venues, end_ms))
    entries += ingest["audit"]
    validation = timed("validate", lambda: validate_stage(settings, None))
    entries += validation["audit"]
    if validation["unusable"]:
        checkpoint_audit(quote(settings), quote(entries))
        raise SymbolUnusableError(
            f"{validation['unusable']}\nThe batches are in quarantine/ with their reports; "
            "the pipeline stopped before the snapshot."
        )
    snapshot = timed("snapshot", lambda: snapshot_stage(settings))
    entries += snapshot["audit"]
    snapshot_id = snapshot["snapshot_id"]
    features = timed("features", lambda: features_stage(settings, snapshot_id))
    entries += features["manifest"]["audit"]
    training = timed("train", lambda: training_stage(settings, snapshot_id))
    entries += training["audit"]
    signals = timed("signals", lambda: signals_stage(settings, snapshot_id))
    entries += signals["audit"]
    allocation = timed("allocate", lambda: allocation_stage(settings, signals["id"], None))
    entries += allocation["audit"]
    study = timed("backtest", lambda: backtest_stage(settings, snapshot_id)) if backtest else None
    entries += study["audit"] if study else []
    checkpoint = checkpoint_audit(quote(settings), quote(entries))
    manifest = ingest["manifest"] or {}
    result = {
        "ingest_batch": manifest.get("batch_id"),
        "ingest_sequence": manifest.get("sequence"),
        "validations": [run["validation_id"] for run in validation["runs"]],
        "snapshot_id": snapshot_id,
        "features": {
            "feature_set": features["manifest"]["feature_set"]["name"],
            "feature_set_hash": features["manifest"]["feature_set"]["hash"],
            "reused": features["manifest"]["reused"],
        },
        "training": {
            "parent_run_id": training["record"]["parent_run_id"],
            "champion": training["champion"],
            "reused": training.get("reused", False),
        },
        "signals_id": signals["id"],
        "allocation_id": allocation["id"],
        "backtest_id": study["id"] if study else None,
        "backtest_report": study["report_path"] if study else None,
        "audit_entries": len(entries),
        "checkpoint": checkpoint,
        "seconds": seconds,
    }
    create_markdown_artifact(
        key="daily-pipeline-summary",
        markdown=pipeline_markdown(result),
        description="The ids each stage produced and each stage's wall time",
    )
    return result


def pipeline_markdown(result: dict[str, Any]) -> str:
    """Return the ``daily-pipeline-summary`` artifact: ids per stage, wall time per stage."""
    ids = [
        ("ingest batch", f"#{result['ingest_sequence']} `{result['ingest_batch']}`"
         if result["ingest_batch"] else "nothing new"),
        ("validations", ", ".join(f"`{v}`" for v in result["validations"]) or "nothing new"),
        ("snapshot", f"`{result['snapshot_id']}`"),
        ("feature set", f"`{result['features']['feature_set_hash']}`"
         + (" (reused)" if result["features"]["reused"] else "")),
        ("training (MLflow run)", f"`{result['training']['parent_run_id']}`"
         + (" (reused)" if result["training"]["reused"] else "")
         + f", champion v{result['training']['champion']}"),
        ("signals", f"`{result['signals_id']}`"),
        ("allocation", f"`{result['allocation_id']}`"),
        ("backtest", f"`{result['backtest_id']}`: {result['backtest_report']}" if result["backtest_id"]
         else "skipped"),
    ]  # fmt: skip
    lines = ["# Daily pipeline", "", "| stage | id |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in ids]
    lines += ["", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in result["seconds"].items()]
    lines += ["", f"{result['audit_entries']} audit entries, one signed checkpoint."]
    return "\n".join(lines)
