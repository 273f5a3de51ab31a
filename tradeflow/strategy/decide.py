"""The scheduled decision: the latest bar of a snapshot → signals → target weights.

The ``generate-signals`` and ``allocate-portfolio`` flows call these on the newest decision bar of
each symbol (the latest bar whose minute is a multiple of the decision interval), with the same
:class:`~tradeflow.strategy.signals.SignalGenerator` and
:func:`~tradeflow.strategy.allocation.allocate` as the backtest. Signals and allocations are
stored as JSON documents under content-hash ids, so running twice on the same data writes
nothing new.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tradeflow.audit.records import Item
from tradeflow.canonical import content_hash, json_safe
from tradeflow.features.store import snapshot_candles
from tradeflow.snapshot import Snapshot
from tradeflow.storage.objectstore import ObjectStore
from tradeflow.strategy.allocation import (
    AllocationInput,
    AllocationLimits,
    MarketRules,
    allocate,
    correlation_matrix,
)
from tradeflow.strategy.signals import SignalConfig, SignalGenerator
from tradeflow.timeframes import MINUTE_MS, MINUTES_PER_YEAR

SIGNALS_PREFIX = "signals"
ALLOCATIONS_PREFIX = "allocations"


def latest_rows(matrix: pd.DataFrame, decision_minutes: int) -> pd.DataFrame:
    """Return each symbol's newest feature row on a decision bar (minute multiple of the interval)."""
    on_grid = matrix[(matrix["timestamp"] // MINUTE_MS) % decision_minutes == 0]
    return on_grid.sort_values("timestamp").groupby("symbol", sort=True).tail(1).reset_index(drop=True)


def newest_bars(
    snapshot: Snapshot, matrix: pd.DataFrame, decision_minutes: int
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Return each symbol's newest decision-bar feature row and that bar's close (NaN if missing)."""
    rows = latest_rows(matrix, decision_minutes)
    candles = snapshot_candles(snapshot, list(rows["symbol"]))
    closes = {}
    for symbol, time in zip(rows["symbol"].astype(str), rows["timestamp"], strict=True):
        frame = candles[symbol]
        match = frame.loc[frame["timestamp"] == time, "close"]
        closes[symbol] = float(match.iloc[0]) if len(match) else math.nan
    return rows, closes


def close_frame(snapshot: Snapshot, symbols: list[str]) -> pd.DataFrame:
    """Return the symbols' 1-minute closes side by side (index: UTC ms), for the correlations."""
    candles = snapshot_candles(snapshot, symbols)
    return pd.DataFrame(
        {s: frame.set_index("timestamp")["close"] for s, frame in candles.items()}
    ).sort_index()


def signal_items(document: Mapping[str, Any], parents: list[str], refs: list[dict[str, Any]]) -> list[Item]:
    """Return one ``signal`` audit item per signal of a stored signal set."""
    return [
        (
            "signal",
            {
                "id": e["signal"]["id"],
                "parents": parents,
                "symbol": e["symbol"],
                "time": e["time"],
                "direction": e["signal"]["direction"],
                "confidence": e["signal"]["confidence"],
                "fingerprint": e["signal"]["fingerprint"],
                "refs": refs,
            },
        )
        for e in document["evaluations"]
        if e["signal"] is not None
    ]


def allocation_item(document: Mapping[str, Any], signals_id: str, refs: list[dict[str, Any]]) -> Item:
    """Return the ``allocation`` audit item of stored target weights (parents: the signals)."""
    weights = {w["symbol"]: round(w["weight"], 8) for w in document["weights"]}
    payload = {"id": document["id"], "parents": document["signal_ids"] or [signals_id], "weights": weights,
               "refs": refs}  # fmt: skip
    return ("allocation", payload)


def decide_signals(
    rows: pd.DataFrame,
    closes: Mapping[str, float],
    probabilities: Mapping[str, float | None],
    config: SignalConfig,
    model_version: str | None,
) -> dict[str, Any]:
    """Evaluate each row's signal; return the document stored as the signal set.

    ``rows``: one feature row per symbol (:func:`latest_rows`); ``closes``: each symbol's close
    on that bar; ``probabilities``: the model's probability per symbol (None without a model).
    """
    generator = SignalGenerator(config, model_version)
    evaluations = []
    for row in rows.to_dict(orient="records"):
        symbol, time = str(row["symbol"]), int(row["timestamp"])
        features = {str(k): v for k, v in row.items()} | {"close": closes.get(symbol, math.nan)}
        evaluation = generator.evaluate(symbol, time, features, probabilities.get(symbol))
        evaluations.append(
            {
                "symbol": symbol,
                "time": time,
                "reason": evaluation.reason,
                "probability": probabilities.get(symbol),
                "signal": None if evaluation.signal is None else evaluation.signal.to_dict(),
                "volatility": float(row.get("realized_volatility_1440", math.nan))
                * math.sqrt(MINUTES_PER_YEAR),
                "regime": str(row.get("regime", "")),
                "close": closes.get(symbol, math.nan),
            }
        )
    document = {
        "model_version": model_version,
        "families": {name: status.to_dict() for name, status in generator.family_status.items()},
        "threshold_adjustments": [a.to_dict() for a in generator.adjustments],
        "evaluations": evaluations,
    }
    return document | {"id": "signals-" + content_hash(document)[:24]}


def target_weights(
    signals: Mapping[str, Any],
    closes: pd.DataFrame,
    equity: float,
    limits: AllocationLimits,
    rules: Mapping[str, MarketRules],
    correlation_window_days: float = 30.0,
) -> dict[str, Any]:
    """Turn a signal set into target weights; return the document stored as the allocation.

    ``closes``: index UTC ms, one column of closes per symbol (for the 30-day correlations).
    """
    evaluations = signals["evaluations"]
    end = max((int(e["time"]) for e in evaluations), default=0)
    correlation = (
        correlation_matrix(closes, end, window_days=correlation_window_days) if len(closes) else None
    )
    inputs = []
    for evaluation in evaluations:
        signal = evaluation["signal"]
        direction, confidence = (
            (0, 0.0) if signal is None else (int(signal["direction"]), float(signal["confidence"]))
        )
        regime = "" if signal is None or signal["regime"] is None else str(signal["regime"])
        inputs.append(
            AllocationInput(
                evaluation["symbol"],
                direction,
                confidence,
                float(evaluation["volatility"]),
                regime,
                float(evaluation["close"]),
                rules.get(evaluation["symbol"], MarketRules()),
            )
        )
    allocation = allocate(inputs, correlation, equity, limits)
    weights = [
        {
            "symbol": t.symbol,
            "weight": t.weight,
            "quantity": t.quantity,
            "notional": t.notional,
            "reasons": list(t.reasons),
        }
        for t in allocation.weights.values()
    ]
    document = {
        "signals_id": signals["id"],
        "signal_ids": [e["signal"]["id"] for e in evaluations if e["signal"] is not None],
        "equity": equity,
        "gross_weight": allocation.gross_weight,
        "portfolio_volatility": allocation.portfolio_volatility,
        "groups": [list(group) for group in allocation.groups],
        "weights": weights,
    }
    return document | {"id": "allocation-" + content_hash(document)[:24]}


def save_document(store: ObjectStore, prefix: str, document: Mapping[str, Any]) -> str:
    """Write a signal set or allocation create-only under ``<prefix>/<id>.json``; return the key."""
    key = f"{prefix}/{document['id']}.json"
    store.put_if_absent(key, json.dumps(json_safe(document), indent=2, sort_keys=True).encode("utf-8"))
    return key


def load_document(store: ObjectStore, prefix: str, identifier: str) -> dict[str, Any]:
    """Read a stored signal set or allocation by id."""
    loaded: dict[str, Any] = json.loads(store.get(f"{prefix}/{identifier}.json"))
    return loaded
