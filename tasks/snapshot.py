"""Prefect tasks of the ``snapshot-market-data`` flow: freeze, record, report."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.audit import record_steps
from tradeflow.audit.records import snapshot_items
from tradeflow.bootstrap import build_store
from tradeflow.config import Settings
from tradeflow.snapshot import build_manifest, latest_snapshot, load_manifest, publish_snapshot
from tradeflow.timeframes import iso


@task(name="create-snapshot", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def create_snapshot(settings: Settings, run: dict[str, Any]) -> dict[str, Any]:
    """Freeze the newest validation's curated and raw objects into a snapshot, and audit it.

    Returns the snapshot's index entry with ``created`` (False when the newest validation is
    already snapshotted; then it is the existing snapshot) and ``audit`` (the entries written).
    """
    store = build_store(settings)
    manifest = build_manifest(
        store, created_at=int(time.time() * 1000), config_hash=settings.config_hash, run=run
    )
    if manifest is None:
        latest = latest_snapshot(store)
        assert latest is not None  # build_manifest returns None only when one exists
        return latest | {"created": False, "audit": []}
    index = publish_snapshot(store, manifest)
    entries = record_steps(settings, snapshot_items(store, index, load_manifest(store, index["snapshot_id"])))
    return index | {"created": True, "audit": entries}


def snapshot_markdown(index: dict[str, Any], store_description: str) -> str:
    """Return the ``snapshot-summary`` artifact for a snapshot's index entry."""
    summary = index["summary"]
    state = "New snapshot" if index.get("created") else "Up to date: the newest validation is already in"
    lines = [
        f"# {state} `{index['snapshot_id'][:16]}`",
        "",
        f"- id: `{index['snapshot_id']}`",
        f"- created: {iso(index['created_at'])}",
        f"- parent snapshot: `{(index.get('parent') or 'none')[:16]}`",
        f"- objects: {summary['objects']:,} ({summary['quarantined_objects']:,} raw objects "
        "quarantined, kept out of reads)",
        f"- curated candles: {summary['curated_rows']:,} in {len(summary['curated_series'])} series; "
        f"raw rows: {summary['raw_rows']:,}",
        f"- manifest: `{store_description}`",
        "",
        f"Read it from code with `Snapshot.open(store, '{index['snapshot_id'][:16]}')`; from a terminal: "
        f"`tradeflow snapshot show {index['snapshot_id'][:16]}`, `tradeflow audit explain "
        f"{index['snapshot_id'][:16]}`.",
    ]
    return "\n".join(lines)


@task(name="report-snapshot", cache_policy=NO_CACHE)
def report_snapshot(settings: Settings, index: dict[str, Any]) -> None:
    """Publish the snapshot's summary as a Prefect markdown artifact."""
    create_markdown_artifact(
        key="snapshot-summary",
        markdown=snapshot_markdown(index, build_store(settings).describe(index["key"])),
        description="The snapshot this run made (or found up to date)",
    )
