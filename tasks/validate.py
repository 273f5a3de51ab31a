"""Prefect tasks of the ``validate-market-data`` flow.

Each is retries, logging and artifacts around one core call in :mod:`tradeflow.quality.validation`.
The GX adapter (:mod:`expectations.runner`) is imported here, once per process: Great
Expectations takes seconds to import, and a validation run then costs milliseconds to set up.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from expectations.runner import GxValidator
from expectations.suites import SUITE_VERSION
from tasks.audit import record_steps
from tasks.notify import notify_quarantined
from tradeflow.audit.records import validation_items
from tradeflow.bootstrap import build_store
from tradeflow.config import Settings
from tradeflow.quality.report import summary_markdown, summary_rows
from tradeflow.quality.validation import (
    REPORT_PREFIX,
    VALIDATION_PREFIX,
    BatchReport,
    GroupResult,
    PendingBatch,
    pending_batch,
    plan_pending,
    publish_validation,
    validate_candle_group,
    validate_snapshot_batch,
    write_reports,
)

_TASK_DEFAULTS: dict[str, Any] = {"retries": 1, "retry_delay_seconds": 2, "cache_policy": NO_CACHE}

# One GX validator per validation run, shared by that run's tasks in this process.
_validators: dict[str, GxValidator] = {}
_validators_lock = threading.Lock()


def _validator(settings: Settings, run_name: str) -> GxValidator:
    with _validators_lock:
        if run_name not in _validators:
            _validators[run_name] = GxValidator(settings.validation, run_name)
        return _validators[run_name]


@task(name="plan-validation", **_TASK_DEFAULTS)
def plan_validation(settings: Settings, ingest_sequence: int | None) -> dict[str, Any]:
    """Find the ingest batches no validation covers yet (up to the one asked for)."""
    return plan_pending(build_store(settings), ingest_sequence)


@task(name="read-ingest-batch", task_run_name="read ingest batch {ingest_sequence}", **_TASK_DEFAULTS)
def read_ingest_batch(settings: Settings, ingest_sequence: int) -> PendingBatch:
    """Read what one ingest manifest added, grouped by symbol/timeframe and by snapshot."""
    return pending_batch(build_store(settings), ingest_sequence)


@task(name="validate-candles", task_run_name="validate {symbol} {timeframe}", **_TASK_DEFAULTS)
def validate_candles(
    settings: Settings,
    run_name: str,
    batch: PendingBatch,
    symbol: str,
    timeframe: str,
    last_curated: int | None,
) -> GroupResult:
    """Run the candle and cross-venue suites on every venue's batch; quarantine; curate."""
    logger = get_run_logger()
    result = validate_candle_group(
        build_store(settings), _validator(settings, run_name), settings.validation, batch, symbol, timeframe,
        curated_last=last_curated,
    )  # fmt: skip
    for report in result.batches:
        if report.verdict == "quarantined":
            logger.warning("quarantined %s: %s", report.name, ", ".join(report.reasons()))
        elif report.verdict == "warned":
            logger.info("%s kept with warnings: %s", report.name, ", ".join(report.warnings()))
    logger.info("%s %s: %d curated candles (%d imputed)", symbol, timeframe, result.curated_rows,
                result.imputed_rows)  # fmt: skip
    return result


@task(name="validate-snapshot", task_run_name="validate {dataset} {venue} {symbol}", **_TASK_DEFAULTS)
def validate_snapshot(
    settings: Settings, run_name: str, batch: PendingBatch, dataset: str, venue: str, symbol: str
) -> BatchReport:
    """Run the order book or trades suite on one venue's snapshot of one symbol."""
    report = validate_snapshot_batch(
        build_store(settings),
        _validator(settings, run_name),
        settings.validation,
        batch,
        dataset,
        venue,
        symbol,
    )
    if report.verdict == "quarantined":
        get_run_logger().warning("quarantined %s: %s", report.name, ", ".join(report.reasons()))
    return report


@task(name="build-data-docs", **_TASK_DEFAULTS)
def build_data_docs(settings: Settings, run_name: str, tag: str) -> str | None:
    """Render GX Data Docs for the run and copy them into the store; return the index's location."""
    with _validators_lock:
        validator = _validators.pop(run_name, None)
    if validator is None or not validator.results:
        return None
    store = build_store(settings)
    prefix = f"{REPORT_PREFIX}{tag}/data_docs"
    with tempfile.TemporaryDirectory(prefix="tradeflow-docs-") as directory:
        root = Path(directory)
        validator.build_data_docs(root)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            store.put_if_absent(f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())
    return store.describe(f"{prefix}/index.html")


@task(name="publish-validation", **_TASK_DEFAULTS)
def publish_validation_task(
    settings: Settings,
    batch: PendingBatch,
    previous: dict[str, Any] | None,
    groups: list[GroupResult],
    snapshots: list[BatchReport],
    docs: str | None,
    run: dict[str, Any],
) -> dict[str, Any]:
    """Write the JSON results and integrity reports, publish the validation manifest, audit it.

    The validation run and every quarantined batch are recorded in the audit chain before the
    task returns; the returned manifest carries the entries under ``audit``. Quarantined batches
    are then reported in one notification (``[notifications]``, event ``batch_quarantined``).
    """
    store = build_store(settings)
    gx_results = [o.gx_result for g in groups for b in g.batches for o in b.suites if o.gx_result]
    gx_results += [o.gx_result for s in snapshots for o in s.suites if o.gx_result]
    reports = write_reports(store, batch, groups, snapshots, gx_results)
    reports["data_docs"] = docs
    manifest = publish_validation(
        store, batch, previous, groups, snapshots, reports, created_at=int(time.time() * 1000),
        config_hash=settings.config_hash, suite_version=SUITE_VERSION, run=run,
    )  # fmt: skip
    entries = record_steps(settings, validation_items(store, manifest, VALIDATION_PREFIX))
    notify_quarantined(settings, manifest, store.describe)  # [notifications]: once the manifest is out
    return manifest | {"audit": entries}


@task(name="report-validation", **_TASK_DEFAULTS)
def report_validation(
    batch: PendingBatch,
    groups: list[GroupResult],
    snapshots: list[BatchReport],
    docs: str | None,
    manifest: dict[str, Any],
) -> None:
    """Publish the run's summary and per-series table as Prefect artifacts, linking Data Docs."""
    docs_url = None if docs is None else (Path(docs).as_uri() if docs.startswith("/") else docs)
    create_markdown_artifact(
        key="validation-summary",
        markdown=summary_markdown(
            groups, snapshots, tag=batch.tag, docs_url=docs_url, reports=manifest["reports"]["integrity"]
        ),
        description=f"Validation of ingest batch {batch.tag}",
    )
    create_table_artifact(
        key="validation-series",
        table=summary_rows(groups),
        description=f"Per symbol and timeframe: venue verdicts, findings, curated candles ({batch.tag})",
    )
