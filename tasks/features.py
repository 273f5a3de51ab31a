"""Prefect tasks of the ``build-features`` flow: read a snapshot per symbol, build, store, audit."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.audit import record_steps
from tradeflow.audit.records import ref
from tradeflow.bootstrap import build_store
from tradeflow.config import Settings
from tradeflow.features.build import build_feature_matrix
from tradeflow.features.store import (
    feature_spec,
    matrix_summary,
    read_manifest,
    save_matrix,
    snapshot_books,
    snapshot_candles,
    snapshot_symbols,
)
from tradeflow.snapshot import Snapshot

_DEFAULTS: dict[str, Any] = {"retries": 1, "retry_delay_seconds": 2, "cache_policy": NO_CACHE}


@task(name="plan-features", **_DEFAULTS)
def plan_features(settings: Settings, snapshot: str) -> dict[str, Any]:
    """Resolve the snapshot and say whether its matrix for this feature set is already stored."""
    store = build_store(settings)
    opened = Snapshot.open(store, snapshot)
    spec = feature_spec(settings)
    symbols = snapshot_symbols(opened)
    manifest = read_manifest(store, spec.hash, opened.id)
    return {"snapshot_id": opened.id, "feature_hash": spec.hash, "symbols": symbols, "manifest": manifest}


@task(name="read-symbol", **_DEFAULTS)
def read_symbol(settings: Settings, snapshot_id: str, symbol: str) -> dict[str, Any]:
    """Read one symbol's curated 1m candles and order books through the snapshot (each object re-hashed)."""
    opened = Snapshot.open(build_store(settings), snapshot_id)
    return {
        "symbol": symbol,
        "candles": snapshot_candles(opened, [symbol])[symbol],
        "books": snapshot_books(opened, [symbol]).get(symbol),
    }


@task(name="build-matrix", **_DEFAULTS)
def build_matrix(settings: Settings, snapshot_id: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the feature matrix of every symbol (cross-asset features need them all), store it, audit it."""
    store = build_store(settings)
    spec = feature_spec(settings)
    started = time.perf_counter()
    candles = {i["symbol"]: i["candles"] for i in inputs}
    books = {i["symbol"]: i["books"] for i in inputs if i["books"] is not None}
    matrix = build_feature_matrix(candles, spec, books or None)
    manifest = save_matrix(store, matrix, spec, snapshot_id, time.perf_counter() - started)
    entries = record_steps(
        settings,
        [
            (
                "feature_matrix",
                {
                    "id": f"{spec.hash}/{snapshot_id}",
                    "parents": [snapshot_id],
                    "feature_set": spec.name,
                    "feature_set_hash": spec.hash,
                    "rows": manifest["rows"],
                    "features": len(manifest["columns"]) - 3,
                    "refs": [ref(store, manifest["key"])],
                },
            )
        ],
    )
    return manifest | {"reused": False, "audit": entries}


@task(name="report-features", cache_policy=NO_CACHE)
def report_features(manifest: dict[str, Any]) -> None:
    """Publish the matrix's summary as a Prefect markdown artifact."""
    state = (
        "Reused the stored matrix"
        if manifest.get("reused")
        else f"Built in {manifest['build_seconds']:.1f} s"
    )
    create_markdown_artifact(
        key="feature-matrix",
        markdown=f"# Feature matrix\n\n{state}: {matrix_summary(manifest)}\n\n- object: `{manifest['key']}`\n"
        f"- SHA-256: `{manifest['sha256']}`\n- feature set hash: `{manifest['feature_set']['hash']}`\n",
        description="The feature matrix this run built or reused",
    )
