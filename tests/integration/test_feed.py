"""The market feed against local venues: sequence gaps, disconnects, stalls and reconnect storms.

Every fault is injected by the venue itself (``/_sim/streams/...``) while the feed runs over real
websockets and HTTP; the feed must notice, refuse trading while its book is not in sync, resync
with a fresh snapshot, and end with a book equal to the venue's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from tradeflow.execution.backoff import Backoff
from tradeflow.execution.book import DepthSnapshot
from tradeflow.execution.feed import (
    BookUpdate,
    FeedConfig,
    FeedEvent,
    MarketFeed,
    StatusEvent,
    TickerEvent,
    TradeEvent,
)
from tradeflow.simulator import (
    ClusterSpec,
    OutageWindow,
    SymbolSpec,
    TransportFaults,
    VenueCluster,
    VenueSpec,
    control,
)

from .conftest import SYMBOLS

STORM_SYMBOLS = [
    *SYMBOLS,
    SymbolSpec(symbol="SOL/USDT", base_price=150.0, tick_size=0.01, step_size=0.001),
    SymbolSpec(symbol="BNB/USDT", base_price=600.0, tick_size=0.01, step_size=0.001),
    SymbolSpec(symbol="XRP/USDT", base_price=0.6, tick_size=0.0001, step_size=0.1),
]
BOOK_ONLY = {"trades": False, "ticker": False, "bars": False}

Levels = dict[float, float]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    spec = ClusterSpec(world_seed=7, symbols=STORM_SYMBOLS, venues=[VenueSpec(id="feed", seed=21)])
    with VenueCluster(spec).start(mode="thread") as cluster:
        yield cluster.base_urls["feed"]


@dataclass
class Recorder:
    """The feed's sink: every event with the symbol's ``in_sync`` at that moment, and book copies."""

    feed: MarketFeed | None = None
    events: list[tuple[FeedEvent, bool]] = field(default_factory=list)
    copies: dict[int, tuple[Levels, Levels]] = field(default_factory=dict)
    copy_symbol: str | None = None

    def __call__(self, event: FeedEvent) -> None:
        assert self.feed is not None
        in_sync = self.feed.in_sync(event.symbol)
        self.events.append((event, in_sync))
        if isinstance(event, BookUpdate) and event.symbol == self.copy_symbol and event.in_sync:
            assert event.update_id is not None
            self.copies[event.update_id] = levels(self.feed, event.symbol)

    def statuses(self, symbol: str) -> list[tuple[StatusEvent, bool]]:
        return [(e, s) for e, s in self.events if isinstance(e, StatusEvent) and e.symbol == symbol]

    def index(self, predicate: Callable[[FeedEvent], bool], start: int = 0) -> int | None:
        for i in range(start, len(self.events)):
            if predicate(self.events[i][0]):
                return i
        return None


def levels(feed: MarketFeed, symbol: str) -> tuple[Levels, Levels]:
    bids, asks = feed.book(symbol).top(100_000)
    return dict(bids), dict(asks)


def make_feed(url: str, symbols: list[str], **config: object) -> tuple[MarketFeed, Recorder]:
    recorder = Recorder()
    settings = {"seed": 3, **config}
    feed = MarketFeed("sim", symbols, base_url=url, sink=recorder, config=FeedConfig(**settings))  # type: ignore[arg-type]
    recorder.feed = feed
    return feed, recorder


@asynccontextmanager
async def running(feed: MarketFeed) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(feed.run())
    try:
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll until ``predicate`` holds; fail after ``timeout`` s (a hang guard, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def depth_snapshot(url: str, symbol: str) -> DepthSnapshot:
    with urllib.request.urlopen(f"{url}/api/v3/depth?symbol={symbol}&limit=5000", timeout=10) as response:
        return DepthSnapshot.from_binance(json.loads(response.read()))


async def assert_book_equals_the_venue(url: str, feed: MarketFeed, recorder: Recorder, symbol: str) -> None:
    """Fetch the venue's book and check ours was exactly that when it reached the same update id."""
    recorder.copy_symbol = symbol
    current = feed.book(symbol).last_update_id
    if current is not None:
        recorder.copies[current] = levels(feed, symbol)
    venue_book = await asyncio.to_thread(depth_snapshot, url, symbol.replace("/", ""))
    target = venue_book.last_update_id

    def reached() -> bool:
        last = feed.book(symbol).last_update_id
        return last is not None and last >= target

    await wait_for(reached)
    assert target in recorder.copies, "the book never stood at the venue's update id"
    assert recorder.copies[target] == (dict(venue_book.bids), dict(venue_book.asks))


def test_sequence_gap_stops_trading_until_a_fresh_snapshot_resyncs_the_book(base_url: str) -> None:
    async def main() -> None:
        feed, recorder = make_feed(base_url, ["BTC/USDT", "ETH/USDT"], **BOOK_ONLY)
        async with running(feed):
            await wait_for(lambda: feed.in_sync("BTC/USDT") and feed.in_sync("ETH/USDT"))
            snapshots = feed.counters.snapshots
            requests = len((await asyncio.to_thread(control.stream_status, base_url))["depth_requests"])
            before = len(recorder.events)

            await asyncio.to_thread(control.gap, base_url, "BTCUSDT", 5)

            def gap_reported(event: FeedEvent) -> bool:
                return (
                    isinstance(event, StatusEvent) and event.status == "resyncing" and event.reason == "gap"
                )

            await wait_for(lambda: recorder.index(gap_reported, before) is not None)
            gap_at = recorder.index(gap_reported, before)
            assert gap_at is not None

            def resynced(event: FeedEvent) -> bool:
                return (
                    isinstance(event, StatusEvent)
                    and event.symbol == "BTC/USDT"
                    and event.status == "in_sync"
                )

            await wait_for(lambda: recorder.index(resynced, gap_at) is not None)
            back_at = recorder.index(resynced, gap_at)
            assert back_at is not None

            # Detected, and no trading in between: the book reported itself out of sync.
            status, in_sync_then = recorder.events[gap_at]
            assert status.symbol == "BTC/USDT"
            assert not in_sync_then
            between = [(e, s) for e, s in recorder.events[gap_at:back_at] if e.symbol == "BTC/USDT"]
            assert all(not in_sync for _, in_sync in between)
            assert any(
                isinstance(e, BookUpdate) and not e.in_sync and e.update_id is None for e, _ in between
            )
            assert feed.counters.gaps == 1
            assert feed.counters.resyncs == 1
            # ... resynced with exactly one fresh snapshot, which the venue served ...
            assert feed.counters.snapshots == snapshots + 1
            served = (await asyncio.to_thread(control.stream_status, base_url))["depth_requests"][requests:]
            assert [symbol for _, symbol in served] == ["BTCUSDT"]
            # ... the other symbol never noticed ...
            assert not any(
                e.symbol == "ETH/USDT" for e, _ in recorder.events[before:] if isinstance(e, StatusEvent)
            )
            assert feed.in_sync("ETH/USDT")
            # ... and the book is the venue's again.
            assert feed.in_sync("BTC/USDT")
            await assert_book_equals_the_venue(base_url, feed, recorder, "BTC/USDT")

    asyncio.run(main())


def test_stalled_stream_goes_stale_and_resyncs_without_a_reconnect(base_url: str) -> None:
    async def main() -> None:
        feed, recorder = make_feed(
            base_url, ["ETH/USDT"], stale_after_ms=800, check_interval_seconds=0.1, **BOOK_ONLY
        )
        async with running(feed):
            await wait_for(lambda: feed.in_sync("ETH/USDT"))
            before = len(recorder.events)
            await asyncio.to_thread(control.stall, base_url, "ETHUSDT", 2.0)

            def stale(event: FeedEvent) -> bool:
                return (
                    isinstance(event, StatusEvent) and event.status == "resyncing" and event.reason == "stale"
                )

            await wait_for(lambda: recorder.index(stale, before) is not None)
            stale_at = recorder.index(stale, before)
            assert stale_at is not None
            assert not recorder.events[stale_at][1]  # not tradable from the moment it went stale
            await wait_for(lambda: feed.in_sync("ETH/USDT"))
            statuses = [e.status for e, _ in recorder.statuses("ETH/USDT")[-2:]]
            assert statuses == ["resyncing", "in_sync"]
            assert "disconnected" not in [e.status for e, _ in recorder.statuses("ETH/USDT")]
            assert feed.counters.resyncs == 1
            assert feed.counters.gaps == 0
            assert feed.counters.reconnects == 0
            await assert_book_equals_the_venue(base_url, feed, recorder, "ETH/USDT")

    asyncio.run(main())


def test_reconnect_storm_spaces_the_snapshot_requests(base_url: str) -> None:
    symbols = [s.symbol for s in STORM_SYMBOLS]

    async def main() -> None:
        feed, _ = make_feed(
            base_url, symbols, snapshot_min_interval_seconds=0.3, snapshot_limit=100, **BOOK_ONLY
        )
        async with running(feed):
            await wait_for(lambda: all(feed.in_sync(s) for s in symbols))
            granted = len(feed.scheduler.grants)
            requests = len((await asyncio.to_thread(control.stream_status, base_url))["depth_requests"])

            assert await asyncio.to_thread(control.disconnect, base_url) == len(symbols)

            await wait_for(
                lambda: feed.counters.reconnects == len(symbols) and all(feed.in_sync(s) for s in symbols)
            )
            storm = feed.scheduler.grants[granted:]
            assert sorted(label for _, label, _ in storm) == sorted(symbols)  # one snapshot per symbol
            starts = [start for start, _, _ in storm]
            assert all(later - earlier >= 0.3 - 1e-9 for earlier, later in itertools.pairwise(starts))
            assert all(weight == 5 for _, _, weight in storm)
            # The venue saw exactly these requests: nothing bypassed the scheduler.
            served = (await asyncio.to_thread(control.stream_status, base_url))["depth_requests"][requests:]
            assert sorted(symbol for _, symbol in served) == sorted(s.replace("/", "") for s in symbols)

    asyncio.run(main())


def test_feed_delivers_trades_tickers_and_closes_cleanly(base_url: str) -> None:
    async def main() -> None:
        feed, recorder = make_feed(base_url, ["BTC/USDT"], bars=True)
        async with running(feed):

            def seen(kind: type) -> bool:
                return any(isinstance(e, kind) for e, _ in recorder.events)

            await wait_for(lambda: seen(TradeEvent) and seen(TickerEvent) and feed.in_sync("BTC/USDT"))
            ticker = next(e for e, _ in recorder.events if isinstance(e, TickerEvent))
            assert ticker.bid is not None
            assert ticker.ask is not None
            assert ticker.bid < ticker.ask
            assert ticker.bid_amount
            assert feed.counters.messages > 0
            assert feed.counters.last_event_lag_ms is not None
            await wait_for(lambda: control.stream_status(base_url)["connections"] == 4)
        # Cancelled: every websocket of the feed is closed.
        await wait_for(lambda: control.stream_status(base_url)["connections"] == 0)

    asyncio.run(main())


def test_disconnect_reconnects_with_growing_jittered_backoff_while_the_venue_is_down() -> None:
    outage_from, outage_for = 2.0, 3.0
    spec = ClusterSpec(
        world_seed=7,
        symbols=SYMBOLS,
        venues=[
            VenueSpec(
                id="flaky",
                seed=4,
                transport=TransportFaults(
                    outages=[OutageWindow(start_seconds=outage_from, duration_seconds=outage_for)]
                ),
            )
        ],
    )
    started = time.monotonic()
    with VenueCluster(spec).start(mode="thread") as cluster:
        url = cluster.base_urls["flaky"]
        backoff = Backoff(base_seconds=0.1, cap_seconds=0.8)

        async def main() -> None:
            feed, recorder = make_feed(url, ["BTC/USDT"], backoff=backoff, **BOOK_ONLY)
            async with running(feed):
                await wait_for(lambda: feed.in_sync("BTC/USDT"))
                await asyncio.sleep(max(0.0, started + outage_from + 0.2 - time.monotonic()))
                before = len(recorder.events)
                assert await asyncio.to_thread(control.disconnect, url) == 1
                await wait_for(lambda: feed.status("BTC/USDT") == "disconnected")
                await wait_for(lambda: feed.in_sync("BTC/USDT") and feed.counters.reconnects == 1)
                assert [e.status for e, _ in recorder.statuses("BTC/USDT")[-3:]] == [
                    "disconnected",
                    "connected",
                    "in_sync",
                ]
                down_at = recorder.index(
                    lambda e: isinstance(e, StatusEvent) and e.status == "disconnected", before
                )
                up_at = recorder.index(lambda e: isinstance(e, StatusEvent) and e.status == "in_sync", before)
                assert down_at is not None
                assert up_at is not None
                assert all(not in_sync for _, in_sync in recorder.events[down_at:up_at])
                retries = [
                    (attempt, delay) for what, attempt, delay in feed.retries if what == "order book BTC/USDT"
                ]
                # Consecutive failures while the venue refused connections: attempts count up, and
                # each wait is drawn from [0, ceiling(attempt)].
                attempts = [attempt for attempt, _ in retries]
                assert attempts[:3] == [0, 1, 2]
                assert all(0 <= delay <= backoff.ceiling(attempt) for attempt, delay in retries)
                await assert_book_equals_the_venue(url, feed, recorder, "BTC/USDT")

        asyncio.run(main())
