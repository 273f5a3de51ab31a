"""A venue's market data as pure functions of its spec and a given "now" (no I/O)."""

from __future__ import annotations

import time

import numpy as np

from tradeflow.simulator.candles import Candles, FloatArray
from tradeflow.simulator.market import OrderBook, Ticker24h, Trades, VenueMarket
from tradeflow.simulator.prices import true_path
from tradeflow.simulator.spec import ClusterSpec, SymbolSpec, VenueSpec
from tradeflow.simulator.timeframes import (
    DAY_MS,
    INTERVAL_MINUTES,
    MINUTE_MS,
    ceil_to,
    floor_to,
)

DRIFT_ANCHOR_LOOKBACK_MS = 30 * DAY_MS
"""The drift anchor sits this long before the history anchor, inside recently served history."""


def now_ms() -> int:
    """Return the wall-clock time in integer milliseconds."""
    return time.time_ns() // 1_000_000


class UnknownSymbolError(KeyError):
    """The venue does not list this symbol."""


class SimulatedVenue:
    """Everything one venue serves, computed on demand from seeds.

    The HTTP server is a thin layer over this class, so tests can use it as the reference for
    what a venue served: ``klines`` returns exactly the candles the server sends for a range.
    """

    def __init__(self, cluster_spec: ClusterSpec, venue_spec: VenueSpec) -> None:
        """Build the venue.

        Args:
            cluster_spec: The cluster: world seed, symbols, data root, history anchor.
            venue_spec: This venue's seed, noise, bias and data faults.

        Raises:
            FileNotFoundError: A listed symbol replays a file that does not exist.
        """
        cluster = cluster_spec.resolved()
        self.cluster_spec = cluster
        self.spec = venue_spec
        assert cluster.history_anchor_ms is not None
        anchor = cluster.history_anchor_ms
        drift_anchor = anchor - DRIFT_ANCHOR_LOOKBACK_MS
        wanted = set(venue_spec.symbols) if venue_spec.symbols is not None else None
        self._markets: dict[str, VenueMarket] = {}
        self._by_id: dict[str, VenueMarket] = {}
        for sym in cluster.symbols:
            if wanted is not None and sym.symbol not in wanted:
                continue
            path = true_path(cluster.world_seed, sym, cluster.data_root, anchor)
            key = (
                cluster.world_seed,
                sym,
                cluster.data_root,
                anchor,
                venue_spec.seed,
                venue_spec.noise_bps,
                venue_spec.bias_bps,
                venue_spec.data,
            )
            market = VenueMarket(sym, path, venue_spec, drift_anchor, key)
            self._markets[sym.symbol] = market
            self._by_id[sym.exchange_id] = market

    @property
    def symbols(self) -> list[SymbolSpec]:
        """Return the specs of the symbols this venue lists."""
        return [m.spec for m in self._markets.values()]

    def market(self, symbol: str) -> VenueMarket:
        """Return a market by unified symbol ("BTC/USDT") or exchange id ("BTCUSDT").

        Raises:
            UnknownSymbolError: The venue does not list it.
        """
        market = self._markets.get(symbol) or self._by_id.get(symbol)
        if market is None:
            raise UnknownSymbolError(symbol)
        return market

    def query_klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None,
        end_ms: int | None,
        limit: int | None,
        now_ms: int,
    ) -> Candles:
        """Answer a klines request with Binance semantics.

        With ``start_ms`` the first ``limit`` candles with open time at or after it (and at or
        before ``end_ms`` if given); otherwise the last ``limit`` candles with open time at or
        before ``end_ms`` (or now). The candle containing ``now_ms`` is included, partial.

        Args:
            symbol: Unified symbol or exchange id.
            interval: One of :data:`~tradeflow.simulator.timeframes.INTERVAL_MINUTES`.
            start_ms: startTime, or None.
            end_ms: endTime, or None.
            limit: Maximum number of candles, or None for all.
            now_ms: Server time.

        Returns:
            Candles, oldest first.

        Raises:
            UnknownSymbolError: The venue does not list the symbol.
            KeyError: The interval is not supported.
        """
        market = self.market(symbol)
        group = INTERVAL_MINUTES[interval]
        width = group * MINUTE_MS
        lo = 0 if start_ms is None else ceil_to(max(start_ms, 0), width)
        hi = floor_to(now_ms, width)
        if end_ms is not None:
            hi = min(hi, floor_to(end_ms, width))
        return market.klines(group, lo, hi, limit, now_ms, from_end=start_ms is None)

    def klines(self, symbol: str, interval: str, start_ms: int, end_ms: int, now_ms: int) -> FloatArray:
        """Return every candle the venue serves with open time in ``[start_ms, end_ms]``.

        Exactly what the server sends for that range when asked at ``now_ms``, after data
        faults and rounding, including the partial candle containing ``now_ms`` if in range.

        Returns:
            An ``(n, 6)`` float array ``[open_time, open, high, low, close, volume]``.
        """
        candles = self.query_klines(
            symbol,
            interval,
            start_ms=start_ms,
            end_ms=end_ms,
            limit=None,
            now_ms=now_ms,
        )
        return candles.ohlcv()

    def price_at(self, symbol: str, t_ms: int) -> float:
        """Return the venue's last price at a time (ms)."""
        return float(self.market(symbol).price_at(np.asarray([t_ms], dtype=np.int64))[0])

    def true_closes(self, symbol: str, start_ms: int, end_ms: int) -> FloatArray:
        """Return the shared true path's price at the end of each minute in a range.

        Args:
            symbol: Unified symbol or exchange id.
            start_ms: First minute open time (aligned down to the minute).
            end_ms: Last minute open time.

        Returns:
            One price per minute: the true price at that minute's close.
        """
        market = self.market(symbol)
        minutes = np.arange(start_ms // MINUTE_MS, end_ms // MINUTE_MS + 1, dtype=np.int64) + 1
        result: FloatArray = np.exp(market.true_log_prices(minutes))
        return result

    def recent_trades(self, symbol: str, limit: int, now_ms: int) -> Trades:
        """Return the last ``limit`` public trades up to ``now_ms``, oldest first."""
        return self.market(symbol).recent_trades(limit, now_ms)

    def order_book(self, symbol: str, limit: int, now_ms: int) -> OrderBook:
        """Return the top ``limit`` levels of each side of the book at ``now_ms``."""
        book = self.market(symbol).order_book(now_ms)
        return OrderBook(
            last_update_id=book.last_update_id,
            bid_price=book.bid_price[:limit],
            bid_qty=book.bid_qty[:limit],
            ask_price=book.ask_price[:limit],
            ask_qty=book.ask_qty[:limit],
        )

    def ticker_24h(self, symbol: str, now_ms: int) -> Ticker24h:
        """Return rolling 24-hour statistics of a symbol ending at ``now_ms``."""
        return self.market(symbol).ticker_24h(now_ms)
