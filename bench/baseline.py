"""The bare fetch loops the pipeline is measured against.

Nothing but ``exchange.fetch_ohlcv(symbol, tf, since=page.since, limit=..., params={"until":
page.until})`` over the pages the pipeline would request, on exchanges built by the project's
own :func:`~tradeflow.sources.ccxt_source.create_exchange` (same options, same ccxt rate
limiter). No retries, no checks, no parsing beyond ccxt's, no storage: this is the floor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.workload import Series
from tradeflow.config import VenueConfig
from tradeflow.sources.ccxt_source import create_exchange


@dataclass(frozen=True)
class LoopRun:
    """One timed pass of a bare loop."""

    seconds: float
    candles: int
    pages: int

    @property
    def candles_per_second(self) -> float:
        """Return the throughput of the pass."""
        return self.candles / self.seconds if self.seconds > 0 else 0.0


def new_exchange(venue: VenueConfig, base_url: str | None) -> Any:
    """Return a ccxt exchange for ``venue`` set up exactly as the pipeline sets up its own."""
    return create_exchange(
        venue.exchange,
        base_url=base_url or venue.base_url,
        timeout_seconds=venue.timeout_seconds,
        options=venue.options,
    )


def _close(exchanges: Iterable[Any]) -> None:
    for exchange in exchanges:
        session = getattr(exchange, "session", None)
        if session is not None:
            session.close()


def fetch_series(exchange: Any, series: Series, limit: int) -> tuple[int, int]:
    """Fetch every page of one series; return (candles received, pages requested)."""
    candles = 0
    for page in series.pages:
        rows = exchange.fetch_ohlcv(
            series.symbol, series.timeframe, since=page.since, limit=limit, params={"until": page.until}
        )
        candles += len(rows)
    return candles, len(series.pages)


def bare_sequential(plan: Sequence[Series], limit: int) -> LoopRun:
    """Fetch the whole plan one page at a time with one exchange per venue.

    Each exchange loads its venue's markets on its first ``fetch_ohlcv``, as ccxt always does;
    that request is part of the timed work, as the pipeline's ``connect-venue`` task is.
    """
    exchanges: dict[str, Any] = {}
    started = time.perf_counter()
    candles = pages = 0
    try:
        for series in plan:
            exchange = exchanges.get(series.venue.id)
            if exchange is None:
                exchange = exchanges[series.venue.id] = new_exchange(series.venue, series.base_url)
            got, requested = fetch_series(exchange, series, limit)
            candles, pages = candles + got, pages + requested
        return LoopRun(time.perf_counter() - started, candles, pages)
    finally:
        _close(exchanges.values())


class _ThreadExchanges:
    """One exchange per (thread, venue): ccxt instances are not thread-safe.

    Markets are loaded once per venue and handed to every thread's exchange, the way the
    pipeline's series tasks adopt what ``connect-venue`` loaded, so N threads do not spend
    N exchangeInfo requests per venue.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._markets: dict[str, Any] = {}
        self._created: list[Any] = []
        self._lock = threading.Lock()

    def load_markets(self, venue: VenueConfig, base_url: str | None) -> None:
        """Load a venue's markets with a throwaway exchange (one request per venue)."""
        exchange = new_exchange(venue, base_url)
        exchange.load_markets()
        with self._lock:
            self._markets[venue.id] = exchange
            self._created.append(exchange)

    def get(self, venue: VenueConfig, base_url: str | None) -> Any:
        """Return this thread's exchange for ``venue``, created on first use."""
        mine: dict[str, Any] = self._local.__dict__.setdefault("exchanges", {})
        exchange = mine.get(venue.id)
        if exchange is None:
            exchange = mine[venue.id] = new_exchange(venue, base_url)
            loaded = self._markets.get(venue.id)
            if loaded is not None:
                exchange.set_markets(loaded.markets, loaded.currencies)
            with self._lock:
                self._created.append(exchange)
        return exchange

    def close(self) -> None:
        """Close every session this pool opened."""
        _close(self._created)


def bare_concurrent(plan: Sequence[Series], limit: int, workers: int) -> LoopRun:
    """Fetch the plan with ``workers`` threads, one series per job (the pipeline's unit of work).

    Args:
        plan: The series to fetch.
        limit: Candles per request.
        workers: Thread count; the pipeline's ``ingest.max_concurrency``.
    """
    exchanges = _ThreadExchanges()
    venues = {series.venue.id: (series.venue, series.base_url) for series in plan}
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bare") as pool:
            list(pool.map(lambda args: exchanges.load_markets(*args), venues.values()))

            def job(series: Series) -> tuple[int, int]:
                return fetch_series(exchanges.get(series.venue, series.base_url), series, limit)

            results = list(pool.map(job, plan))
        seconds = time.perf_counter() - started
    finally:
        exchanges.close()
    return LoopRun(seconds, sum(r[0] for r in results), sum(r[1] for r in results))
