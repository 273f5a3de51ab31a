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

from tradeflow.canonical import content_hash
from tradeflow.storage.objectstore import ObjectStore
from tradeflow.strategy.allocation import (
    AllocationInput,
    AllocationLimits,
    MarketRules,
    allocate,
    correlation_matrix,
)
from tradeflow.strategy.signals import SignalConfig, SignalGenerator
from tradeflow.timeframes import MINUTE_MS

SIGNALS_PREFIX = "signals"
ALLOCATIONS_PREFIX = "allocations"
MINUTES_PER_YEAR = 365 * 24 * 60


def latest_rows(matrix: pd.DataFrame, decision_minutes: int) -> pd.DataFrame:
    """Return each symbol's newest feature row on a decision bar (minute multiple of the interval)."""
    on_grid = matrix[(matrix["timestamp"] // MINUTE_MS) % decision_minutes == 0]
    return on_grid.sort_values("timestamp").groupby("symbol", sort=True).tail(1).reset_index(drop=True)


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
    store.put_if_absent(key, json.dumps(_plain(document), indent=2, sort_keys=True).encode("utf-8"))
    return key


def load_document(store: ObjectStore, prefix: str, identifier: str) -> dict[str, Any]:
    """Read a stored signal set or allocation by id."""
    loaded: dict[str, Any] = json.loads(store.get(f"{prefix}/{identifier}.json"))
    return loaded


def _plain(value: Any) -> Any:
    """Return ``value`` JSON-safe: NaN and infinities as None, numpy scalars as Python ones."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
