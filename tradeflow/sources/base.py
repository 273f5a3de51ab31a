"""The market data source port: what ingestion needs from an exchange, and how it fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SourceError(Exception):
    """A market data request failed."""

    def __init__(self, venue: str, message: str) -> None:
        """Record which venue failed and why."""
        super().__init__(f"{venue}: {message}")
        self.venue = venue


class RetryableSourceError(SourceError):
    """A failure that may pass: rate limit, timeout, 5xx, outage, a malformed body."""

    def __init__(
        self, venue: str, message: str, *, kind: str, retry_after_seconds: float | None = None
    ) -> None:
        """Record the failure ``kind`` (e.g. ``rate_limit``) and any Retry-After the venue sent."""
        super().__init__(venue, message)
        self.kind = kind
        self.retry_after_seconds = retry_after_seconds


class PermanentSourceError(SourceError):
    """A failure that retrying cannot fix: a bad request, bad credentials, unsupported call."""


class UnknownSymbolError(PermanentSourceError):
    """The venue does not list a symbol."""

    def __init__(self, venue: str, symbol: str, available: list[str]) -> None:
        """Name the symbol and list what the venue does have."""
        shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
        super().__init__(
            venue, f"symbol {symbol!r} is not listed; it lists {len(available)} symbols: {shown}"
        )
        self.symbol = symbol
        self.available = available


@dataclass(frozen=True)
class OrderBookSnapshot:
    """One order book snapshot: levels as (price, amount), best first."""

    timestamp: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


@dataclass(frozen=True)
class TradeRecord:
    """One public trade."""

    id: str
    timestamp: int
    side: str | None
    price: float
    amount: float


class MarketDataSource(Protocol):
    """An exchange's public market data, as ingestion uses it."""

    venue: str

    def load_markets(self) -> list[str]:
        """Return the unified symbols the venue lists."""
        ...

    def fetch_candles(self, symbol: str, timeframe: str, since: int, until: int, limit: int) -> np.ndarray:
        """Return candles with ``since <= open time <= until`` as an (n, 6) OHLCV array."""
        ...

    def fetch_order_book(self, symbol: str, depth: int) -> OrderBookSnapshot:
        """Return an order book snapshot with at most ``depth`` levels a side."""
        ...

    def fetch_trades(self, symbol: str, limit: int) -> list[TradeRecord]:
        """Return up to ``limit`` recent public trades, oldest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
