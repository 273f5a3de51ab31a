"""Binance request weights and the per-venue REQUEST_WEIGHT budget per UTC minute."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from tradeflow.simulator.timeframes import MINUTE_MS

API_PREFIX = "/api/v3"

_FIXED_WEIGHTS: dict[str, int] = {
    "/ping": 1,
    "/time": 1,
    "/exchangeInfo": 20,
    "/klines": 2,
    "/trades": 25,
    "/account": 20,
    "/myTrades": 20,
    "/allOrders": 20,
}


def _symbols_count(query: Mapping[str, str]) -> int | None:
    raw = query.get("symbols")
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return 1
    return len(parsed) if isinstance(parsed, list) else 1


def depth_weight(limit: int) -> int:
    """Return the weight of /depth for a limit (Binance: 5/25/50/250)."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def request_weight(path: str, query: Mapping[str, str]) -> int:
    """Return the documented Binance spot weight of a request.

    Args:
        path: Request path, e.g. "/api/v3/depth".
        query: Query parameters.

    Returns:
        The weight; unknown endpoints weigh 1.
    """
    endpoint = path.removeprefix(API_PREFIX)
    fixed = _FIXED_WEIGHTS.get(endpoint)
    if fixed is not None:
        return fixed
    if endpoint == "/depth":
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = 100
        return depth_weight(limit)
    if endpoint == "/ticker/24hr":
        if "symbol" in query:
            return 2
        count = _symbols_count(query)
        if count is None:
            return 80
        return 2 if count <= 20 else 40 if count <= 100 else 80
    if endpoint == "/openOrders":
        return 6 if "symbol" in query else 80
    if endpoint == "/ticker/price":
        return 2 if "symbol" in query else 4
    return 1


@dataclass(frozen=True)
class WeightDecision:
    """Outcome of charging a request against the budget.

    Attributes:
        allowed: Whether the request may proceed.
        used: Weight used in the current window after this decision (the header value).
        retry_after_seconds: Whole seconds until the window resets (at least 1).
    """

    allowed: bool
    used: int
    retry_after_seconds: int


class WeightBudget:
    """A fixed REQUEST_WEIGHT window aligned to the UTC minute."""

    def __init__(self, limit_per_minute: int) -> None:
        """Create an empty budget of ``limit_per_minute`` weight per UTC minute."""
        self.limit = limit_per_minute
        self._window = -1
        self._used = 0
        self._lock = threading.Lock()

    def _roll(self, now_ms: int) -> None:
        window = now_ms // MINUTE_MS
        if window != self._window:
            self._window = window
            self._used = 0

    def used(self, now_ms: int) -> int:
        """Return the weight used in the window containing ``now_ms``."""
        with self._lock:
            self._roll(now_ms)
            return self._used

    def charge(self, weight: int, now_ms: int) -> WeightDecision:
        """Charge a request; refuse it, without charging, if it would exceed the limit."""
        with self._lock:
            self._roll(now_ms)
            retry_after = max(1, -(-(MINUTE_MS - now_ms % MINUTE_MS) // 1000))
            if self._used + weight > self.limit:
                return WeightDecision(False, self._used, retry_after)
            self._used += weight
            return WeightDecision(True, self._used, retry_after)
