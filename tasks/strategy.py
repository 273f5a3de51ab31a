"""Prefect tasks of the ``generate-signals`` and ``allocate-portfolio`` flows."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from models.serving import probabilities, serving
from models.tracking import tracker_from_settings
from tasks.audit import record_steps
from tradeflow.audit.records import ref
from tradeflow.bootstrap import build_store
from tradeflow.config import Settings
from tradeflow.features.store import load_features
from tradeflow.snapshot import Snapshot
from tradeflow.strategy.decide import (
    ALLOCATIONS_PREFIX,
    SIGNALS_PREFIX,
    allocation_item,
    close_frame,
    decide_signals,
    load_document,
    newest_bars,
    save_document,
    signal_items,
    target_weights,
)
from tradeflow.strategy.settings import allocation_limits, decision_minutes, market_rules, signal_config

_DEFAULTS: dict[str, Any] = {"cache_policy": NO_CACHE}


@task(name="decide-signals", **_DEFAULTS)
def generate(settings: Settings, snapshot_id: str) -> dict[str, Any]:
    """Score the newest bar of each symbol with the champion and decide its signal; store and audit it."""
    store = build_store(settings)
    snapshot = Snapshot.open(store, snapshot_id)
    rows, closes = newest_bars(
        snapshot, load_features(store, settings, snapshot.id), decision_minutes(settings)
    )
    tracker = tracker_from_settings(settings)
    version, model_id = serving(tracker)
    document = decide_signals(
        rows, closes, probabilities(tracker, version, rows), signal_config(settings), version
    )
    document |= {"snapshot_id": snapshot.id, "model_id": model_id}
    # Content-addressed: the same snapshot and model decide the same set, stored and audited once.
    existed = store.exists(f"{SIGNALS_PREFIX}/{document['id']}.json")
    key = save_document(store, SIGNALS_PREFIX, document)
    items = signal_items(document, [snapshot.id, *([model_id] if model_id else [])], [ref(store, key)])
    entries = record_steps(settings, items) if items and not existed else []
    return {"id": document["id"], "key": key, "document": document, "audit": entries, "reused": existed}


@task(name="report-signals", **_DEFAULTS)
def report_signals(signals: dict[str, Any]) -> None:
    """Publish the signal set as a Prefect table artifact."""
    document = signals["document"]
    rows = [
        {
            "symbol": e["symbol"],
            "signal": ("long" if e["signal"]["direction"] > 0 else "short") if e["signal"] else "none",
            "confidence": e["signal"]["confidence"] if e["signal"] else None,
            "probability": e["probability"],
            "why": e["reason"],
        }
        for e in document["evaluations"]
    ]
    create_table_artifact(
        key="signals", table=rows, description=f"Signals {signals['id']} (model v{document['model_version']})"
    )


@task(name="allocate-weights", **_DEFAULTS)
def allocate_weights(settings: Settings, signals_id: str, equity: float) -> dict[str, Any]:
    """Turn a stored signal set into target weights within every risk limit; store and audit them."""
    store = build_store(settings)
    signals = load_document(store, SIGNALS_PREFIX, signals_id)
    closes = close_frame(
        Snapshot.open(store, signals["snapshot_id"]), [e["symbol"] for e in signals["evaluations"]]
    )
    document = target_weights(
        signals,
        closes,
        equity,
        allocation_limits(settings),
        market_rules(settings),
        settings.strategy.correlation_window_days,
    )
    existed = store.exists(f"{ALLOCATIONS_PREFIX}/{document['id']}.json")
    key = save_document(store, ALLOCATIONS_PREFIX, document)
    entries = (
        [] if existed else record_steps(settings, [allocation_item(document, signals_id, [ref(store, key)])])
    )
    return {"id": document["id"], "key": key, "document": document, "audit": entries, "reused": existed}


@task(name="report-allocation", **_DEFAULTS)
def report_allocation(allocation: dict[str, Any]) -> None:
    """Publish the target weights and why each is what it is as a Prefect markdown artifact."""
    document = allocation["document"]
    lines = [
        f"# Target weights `{allocation['id']}`",
        "",
        f"Gross {document['gross_weight']:.1%}, portfolio volatility {document['portfolio_volatility']:.1%}"
        f" (annualised), equity {document['equity']:,.0f}.",
        "",
        "| symbol | weight | quantity | why |",
        "|---|---:|---:|---|",
    ]
    for weight in document["weights"]:
        lines.append(
            f"| {weight['symbol']} | {weight['weight']:.2%} | {weight['quantity']:.6g} | "
            f"{'; '.join(weight['reasons'])} |"
        )
    create_markdown_artifact(
        key="target-weights", markdown="\n".join(lines), description="Target weights within the risk limits"
    )
