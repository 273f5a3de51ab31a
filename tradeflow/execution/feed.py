"""One venue's live market data: ccxt.pro websockets plus our own order book, as typed events.

:class:`MarketFeed` watches, for each symbol, the order book (``watch_order_book``: the
``<symbol>@depth@100ms`` diff stream with a REST snapshot), the trades (``watch_trades``), the full
24 h ticker (``watch_ticker`` with ``name="ticker"``: the default mini ticker has no bid/ask) and
1-minute klines (``watch_ohlcv``), and delivers :data:`FeedEvent` values to a callback or a queue.

How ccxt.pro is hooked, and why this way. ccxt.pro keeps its own order book, but it is not ours
to reason about: it does not notice a crossed or a silent book, and its resync on a gap fetches
a snapshot whenever it likes. So the exchange object is ccxt's own ``binance`` class (built by
:func:`~tradeflow.execution.exchange.create_pro_exchange`, then given a subclass that adds the
mixin :class:`_FeedHooks`), whose overrides call ccxt's own method after ours:

- ``handle_order_book``: every raw ``depthUpdate`` message (already JSON-decoded by ccxt, with
  orjson when installed) goes to our :class:`~tradeflow.execution.book.LocalOrderBook` first
  (:meth:`~tradeflow.execution.book.LocalOrderBook.on_message`, its hot path), then to ccxt as
  before. Our book follows Binance's documented procedure and is the only authority on "may we
  trade": a gap, a crossed book or a stale book makes it discard itself, and
  :meth:`MarketFeed.in_sync` is False until a fresh snapshot bridges the stream again.
- ``fetch_rest_order_book_safe``: ccxt calls this for the snapshot of every (re)subscription.
  Ours takes a slot from the venue's :class:`SnapshotScheduler` first (spacing and a weight
  budget), fetches the raw ``GET /api/v3/depth`` body once, hands it to our book and returns it,
  parsed, to ccxt. One snapshot per resync serves both books, and every snapshot is paced.
- ``handle_ohlcv``: the kline's ``x`` flag (ccxt drops it) marks a closed bar, delivered as a
  :class:`BarEvent`.
- ``handle_message``: counts messages.

Taking the snapshot ourselves beside ccxt's (or reading ccxt's book) was the alternative: two
snapshot requests per resync, or a book whose resyncs we cannot pace or observe.

Resyncs all go the same way: ccxt's own (it rejects ``watch_order_book`` with a ``ChecksumError``
on a gap) and ours (crossed, stale, or a rejected snapshot: :meth:`MarketFeed._force_resync`
drops ccxt's subscription the way ccxt itself does on a gap). The next ``watch_order_book`` call
subscribes again, and ccxt asks for the snapshot through the hook above.

Reconnects: ccxt opens one websocket per watched stream; when one closes, the loop that watches
it sleeps a :class:`~tradeflow.execution.backoff.Backoff` delay (exponential, full jitter) and
calls ``watch_*`` again, which reconnects. The book is invalidated when its connection drops
(diffs are lost meanwhile).

The stale check compares the venue's event time (``E``) with the local clock, so it assumes
clocks agree to well within ``stale_after_ms`` (true on loopback; NTP does it for an exchange).

Cancelling :meth:`MarketFeed.run` cancels every loop and closes the exchange (websockets and the
HTTP session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import ccxt.pro as ccxtpro
from ccxt.base.errors import BaseError, ChecksumError

from tradeflow.execution.backoff import Backoff, RequestPacer
from tradeflow.execution.book import BookEvent, DepthSnapshot, LocalOrderBook
from tradeflow.execution.exchange import create_pro_exchange

log = logging.getLogger(__name__)

#: A symbol's market-data status, as :class:`StatusEvent` reports it.
#:
#: - ``connected``: its depth stream delivers again (after the start or a disconnect).
#: - ``disconnected``: its depth stream's connection dropped; the book was discarded.
#: - ``resyncing``: the book was discarded (gap, crossed, stale); awaiting a snapshot.
#: - ``in_sync``: the book follows the stream; the only status to trade on.
Status: TypeAlias = Literal["connected", "disconnected", "resyncing", "in_sync"]

#: Resync reasons our book finds that ccxt's does not (so the feed makes ccxt resubscribe).
_FORCE_REASONS = frozenset({"crossed", "stale"})


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """The symbol's book changed (or was re-synced).

    Attributes:
        venue: The feed's venue id.
        symbol: Unified symbol, e.g. ``BTC/USDT``.
        event_time_ms: The venue's event time ``E`` of the diff (for a sync by snapshot: of the
            last diff applied).
        received_ns: Local ``time.time_ns()`` when the message was handled.
        in_sync: Whether the book may be traded on after this update.
        update_id: The book's update id, None while not in sync.
    """

    venue: str
    symbol: str
    event_time_ms: int
    received_ns: int
    in_sync: bool
    update_id: int | None


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """A public trade.

    Attributes:
        venue: Venue id.
        symbol: Unified symbol.
        trade_id: The venue's trade id.
        price: Price.
        amount: Base quantity.
        side: Taker side, ``buy`` or ``sell``.
        time_ms: Trade time (ms).
        received_ns: Local receive time.
    """

    venue: str
    symbol: str
    trade_id: str
    price: float
    amount: float
    side: str
    time_ms: int
    received_ns: int


@dataclass(frozen=True, slots=True)
class TickerEvent:
    """A 24 h ticker update with the best bid and ask.

    Attributes:
        venue: Venue id.
        symbol: Unified symbol.
        bid: Best bid price (None if the venue sent none).
        bid_amount: Quantity at the best bid.
        ask: Best ask price.
        ask_amount: Quantity at the best ask.
        last: Last trade price.
        time_ms: The venue's time of the ticker.
        received_ns: Local receive time.
    """

    venue: str
    symbol: str
    bid: float | None
    bid_amount: float | None
    ask: float | None
    ask_amount: float | None
    last: float | None
    time_ms: int | None
    received_ns: int


@dataclass(frozen=True, slots=True)
class BarEvent:
    """A closed kline (the venue sent it with ``x: true``).

    Attributes:
        venue: Venue id.
        symbol: Unified symbol.
        timeframe: E.g. ``1m``.
        open_time_ms: The bar's open time.
        open: Open price.
        high: High price.
        low: Low price.
        close: Close price.
        volume: Base volume.
        received_ns: Local receive time.
    """

    venue: str
    symbol: str
    timeframe: str
    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    received_ns: int


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A symbol's status changed.

    Attributes:
        venue: Venue id.
        symbol: Unified symbol.
        status: The new status.
        reason: Why (``gap``, ``stale``, ``crossed``, ``disconnected``, a snapshot detail, ...).
        received_ns: Local time of the change.
    """

    venue: str
    symbol: str
    status: Status
    reason: str
    received_ns: int


#: Everything a feed delivers.
FeedEvent: TypeAlias = BookUpdate | TradeEvent | TickerEvent | BarEvent | StatusEvent


@dataclass
class FeedCounters:
    """What a feed counted since it started.

    Attributes:
        reconnects: Websocket connections re-established after a drop (all streams).
        resyncs: Times a book was discarded (gap, crossed, stale, disconnect).
        gaps: Sequence gaps seen on a depth stream.
        snapshots: REST depth snapshots fetched.
        messages: Websocket messages received.
        last_event_lag_ms: Local receive time minus the venue's event time of the last diff.
    """

    reconnects: int = 0
    resyncs: int = 0
    gaps: int = 0
    snapshots: int = 0
    messages: int = 0
    last_event_lag_ms: float | None = None


@dataclass(frozen=True)
class FeedConfig:
    """How a feed watches a venue.

    Attributes:
        snapshot_limit: Levels per side of the REST snapshot (Binance recommends 1000 for a
            local book; weight 50).
        stale_after_ms: A synced book with no diff for this long resyncs.
        check_interval_seconds: How often the books are checked for staleness.
        resync_timeout_seconds: A book still waiting for a snapshot this long asks again.
        backoff: Reconnect delays.
        snapshot_min_interval_seconds: Least spacing of two snapshot requests to the venue.
        snapshot_weight_budget: Most snapshot request weight per minute (Binance allows 6000 in
            total; the default leaves most of it to orders and everything else).
        trades: Watch trades.
        ticker: Watch the 24 h ticker.
        bars: Watch 1-minute klines (closed bars).
        seed: Seed of the jitter's random generator (None: from the OS).
    """

    snapshot_limit: int = 1000
    stale_after_ms: int = 5_000
    check_interval_seconds: float = 0.25
    resync_timeout_seconds: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    snapshot_min_interval_seconds: float = 0.25
    snapshot_weight_budget: int = 1_200
    trades: bool = True
    ticker: bool = True
    bars: bool = True
    seed: int | None = None


def depth_weight(limit: int) -> int:
    """Return Binance's request weight of ``GET /api/v3/depth`` with ``limit``."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


class SnapshotScheduler:
    """Paces one venue's REST snapshot requests (see :class:`~tradeflow.execution.backoff.RequestPacer`).

    Args:
        pacer: The spacing and budget rule.
        clock: Monotonic seconds.

    Attributes:
        grants: ``(start time, label, weight)`` of every request let through, in order.
    """

    def __init__(self, pacer: RequestPacer, clock: Callable[[], float] = time.monotonic) -> None:
        self.pacer = pacer
        self._clock = clock
        self.grants: list[tuple[float, str, int]] = []

    @classmethod
    def from_config(cls, config: FeedConfig) -> SnapshotScheduler:
        """Return a scheduler with the config's spacing and budget."""
        return cls(RequestPacer(config.snapshot_min_interval_seconds, config.snapshot_weight_budget))

    async def acquire(self, label: str, weight: int) -> float:
        """Wait for this request's slot; return its (monotonic) start time."""
        now = self._clock()
        start = self.pacer.reserve(now, weight)
        if start > now:
            await asyncio.sleep(start - now)
        self.grants.append((start, label, weight))
        return start


@dataclass
class _SymbolState:
    symbol: str
    book: LocalOrderBook
    status: Status | None = None
    snapshot_pending: bool = False
    waiting_since: float | None = None  # monotonic time the book started waiting for a snapshot
    last_event_time: int = 0


class _FeedHooks:
    """Overrides of ccxt.pro binance's depth, kline and snapshot handling (see the module doc)."""

    feed: MarketFeed | None = None

    def handle_message(self, client: Any, message: Any) -> Any:
        feed = self.feed
        if feed is not None:
            feed.counters.messages += 1
        return super().handle_message(client, message)  # type: ignore[misc]

    def handle_order_book(self, client: Any, message: Any) -> Any:
        feed = self.feed
        if feed is not None:
            feed._on_depth(message)
        return super().handle_order_book(client, message)  # type: ignore[misc]

    def handle_ohlcv(self, client: Any, message: Any) -> Any:
        feed = self.feed
        if feed is not None:
            feed._on_kline(message)
        return super().handle_ohlcv(client, message)  # type: ignore[misc]

    async def fetch_rest_order_book_safe(
        self, symbol: str, limit: int | None = None, params: dict[str, Any] | None = None
    ) -> Any:
        feed = self.feed
        if feed is None:
            return await super().fetch_rest_order_book_safe(symbol, limit, params or {})  # type: ignore[misc]
        return await feed._fetch_snapshot(symbol, limit)


_HOOKED: dict[type, type] = {}


def _hooked(exchange: Any, feed: MarketFeed) -> Any:
    """Give a ccxt.pro binance instance the feed's hooks (a subclass with :class:`_FeedHooks`)."""
    if not isinstance(exchange, ccxtpro.binance):
        raise ValueError(f"MarketFeed speaks Binance's stream format; got {type(exchange).__name__}")
    cls = type(exchange)
    hooked = _HOOKED.get(cls)
    if hooked is None:
        hooked = type(f"Feed{cls.__name__}", (_FeedHooks, cls), {})
        _HOOKED[cls] = hooked
    exchange.__class__ = hooked
    exchange.feed = feed
    return exchange


class MarketFeed:
    """Live market data of one venue: books, trades, tickers and closed bars, as events.

    Args:
        venue: The venue id put on every event.
        symbols: Unified symbols, e.g. ``["BTC/USDT"]``.
        base_url: The venue's origin (a local venue); None for the real exchange.
        exchange_id: A ccxt.pro id speaking Binance's stream format.
        sink: Called with each event, on the feed's loop; None queues them on :attr:`events`.
        config: Limits, intervals and what to watch.
        scheduler: The venue's snapshot scheduler (share one between feeds of a venue); by
            default one from ``config``.
        exchange_factory: Builds the ccxt.pro exchange (for tests); default
            :func:`~tradeflow.execution.exchange.create_pro_exchange`.

    Example:
        >>> feed = MarketFeed("a", ["BTC/USDT"], base_url=url)  # doctest: +SKIP
        >>> task = asyncio.create_task(feed.run())  # doctest: +SKIP
        >>> event = await feed.events.get()  # doctest: +SKIP
    """

    def __init__(
        self,
        venue: str,
        symbols: Sequence[str],
        *,
        base_url: str | None = None,
        exchange_id: str = "binance",
        sink: Callable[[FeedEvent], None] | None = None,
        config: FeedConfig | None = None,
        scheduler: SnapshotScheduler | None = None,
        exchange_factory: Callable[[], Any] | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("a feed needs at least one symbol")
        self.venue = venue
        self.config = config or FeedConfig()
        self.scheduler = scheduler or SnapshotScheduler.from_config(self.config)
        self.counters = FeedCounters()
        self.events: asyncio.Queue[FeedEvent] = asyncio.Queue()
        self._sink = sink
        self._states = {
            s: _SymbolState(s, LocalOrderBook(s, stale_after_ms=self.config.stale_after_ms)) for s in symbols
        }
        self._by_id: dict[str, _SymbolState] = {}
        self._random = random.Random(self.config.seed)
        self._factory = exchange_factory or (lambda: create_pro_exchange(exchange_id, base_url=base_url))
        self._exchange: Any = None
        self.retries: deque[tuple[str, int, float]] = deque(maxlen=1000)
        """(stream, attempt, delay seconds) of the latest retries, for monitoring and tests."""

    # -- reading -----------------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        """Return the watched symbols."""
        return list(self._states)

    def book(self, symbol: str) -> LocalOrderBook:
        """Return our book of a symbol (read it only on the feed's loop)."""
        return self._states[symbol].book

    def in_sync(self, symbol: str) -> bool:
        """Return whether orders may be placed on the symbol's book now."""
        return self._states[symbol].book.in_sync

    def status(self, symbol: str) -> Status | None:
        """Return the symbol's last reported status (None before its stream connected)."""
        return self._states[symbol].status

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch every stream until cancelled; the exchange is closed on the way out.

        Raises:
            Exception: A bug in a loop (ccxt's errors are handled: backoff and retry).
        """
        exchange = _hooked(self._factory(), self)
        self._exchange = exchange
        try:
            await self._load_markets()
            async with asyncio.TaskGroup() as group:
                for state in self._states.values():
                    group.create_task(self._book_loop(state), name=f"book {state.symbol}")
                    if self.config.trades:
                        group.create_task(self._trades_loop(state.symbol), name=f"trades {state.symbol}")
                    if self.config.ticker:
                        group.create_task(self._ticker_loop(state.symbol), name=f"ticker {state.symbol}")
                    if self.config.bars:
                        group.create_task(self._bars_loop(state.symbol), name=f"bars {state.symbol}")
                group.create_task(self._check_loop(), name="book checks")
        finally:
            exchange.feed = None
            with contextlib.suppress(Exception):
                await exchange.close()

    async def _load_markets(self) -> None:
        attempt = 0
        while True:
            try:
                await self._exchange.load_markets()
                break
            except BaseError as exc:
                delay = self.config.backoff.delay(attempt, self._random)
                log.warning("%s: loading markets failed (%s); retrying in %.2f s", self.venue, exc, delay)
                attempt += 1
                await asyncio.sleep(delay)
        for symbol, state in self._states.items():
            self._by_id[self._exchange.market(symbol)["id"]] = state

    async def _watch(
        self,
        what: str,
        watch: Callable[[], Awaitable[Any]],
        handle: Callable[[Any], None] | None = None,
        *,
        resubscribe: tuple[type[BaseException], ...] = (),
        lost: Callable[[BaseException], bool] | None = None,
    ) -> None:
        """Call ``watch`` forever, handing each result to ``handle``; back off on ccxt errors.

        ``resubscribe`` errors retry at once (a resync, not a failure). ``lost`` tells whether an
        error means the connection dropped (default: every error does); the first success after a
        drop counts as a reconnect.
        """
        attempt, down = 0, False
        while True:
            try:
                result = await watch()
            except resubscribe:
                continue
            except BaseError as exc:
                dropped = lost is None or lost(exc)
                down = down or dropped
                await self._sleep_backoff(attempt, what, exc)
                attempt += 1
                continue
            attempt = 0
            if down:
                down = False
                self.counters.reconnects += 1
            if handle is not None:
                handle(result)

    async def _book_loop(self, state: _SymbolState) -> None:
        symbol = state.symbol

        def lost(exc: BaseException) -> bool:
            if self._book_connection_open(symbol):
                return False
            self._on_disconnect(state, str(exc))
            return True

        # A ChecksumError is a resync (ccxt's on a gap, or ours): the next call subscribes again.
        await self._watch(
            f"order book {symbol}",
            lambda: self._exchange.watch_order_book(symbol, self.config.snapshot_limit),
            resubscribe=(ChecksumError,),
            lost=lost,
        )

    async def _trades_loop(self, symbol: str) -> None:
        def handle(trades: Any) -> None:
            received = time.time_ns()
            for trade in trades:
                self._emit(
                    TradeEvent(
                        venue=self.venue,
                        symbol=symbol,
                        trade_id=str(trade.get("id")),
                        price=float(trade["price"]),
                        amount=float(trade["amount"]),
                        side=str(trade.get("side")),
                        time_ms=int(trade.get("timestamp") or 0),
                        received_ns=received,
                    )
                )

        await self._watch(f"trades {symbol}", lambda: self._exchange.watch_trades(symbol), handle)

    async def _ticker_loop(self, symbol: str) -> None:
        def handle(ticker: Any) -> None:
            self._emit(
                TickerEvent(
                    venue=self.venue,
                    symbol=symbol,
                    bid=_optional_float(ticker.get("bid")),
                    bid_amount=_optional_float(ticker.get("bidVolume")),
                    ask=_optional_float(ticker.get("ask")),
                    ask_amount=_optional_float(ticker.get("askVolume")),
                    last=_optional_float(ticker.get("last")),
                    time_ms=ticker.get("timestamp"),
                    received_ns=time.time_ns(),
                )
            )

        # ``name`` explicitly: ccxt routes watch_ticker through watch_tickers and loses the
        # ``watchTicker`` option on the way, falling back to the mini ticker (no bid/ask).
        await self._watch(
            f"ticker {symbol}", lambda: self._exchange.watch_ticker(symbol, {"name": "ticker"}), handle
        )

    async def _bars_loop(self, symbol: str) -> None:
        # Closed bars are delivered by the kline hook; this loop keeps the subscription alive.
        await self._watch(f"bars {symbol}", lambda: self._exchange.watch_ohlcv(symbol, "1m"))

    async def _check_loop(self) -> None:
        interval = self.config.check_interval_seconds
        timeout = self.config.resync_timeout_seconds
        while True:
            await asyncio.sleep(interval)
            now_ms = time.time_ns() // 1_000_000
            now = time.monotonic()
            for state in self._states.values():
                events = state.book.check(now_ms)
                if events:
                    self._book_events(state, events)
                waiting = state.waiting_since
                if (
                    state.book.needs_snapshot
                    and not state.snapshot_pending
                    and waiting is not None
                    and now - waiting > timeout
                ):
                    state.waiting_since = now
                    self._force_resync(state.symbol, "no snapshot arrived")

    async def _sleep_backoff(self, attempt: int, what: str, exc: BaseException) -> None:
        delay = self.config.backoff.delay(attempt, self._random)
        self.retries.append((what, attempt, delay))
        log.info("%s %s: %s; retrying in %.3f s", self.venue, what, exc, delay)
        await asyncio.sleep(delay)

    # -- hooks (called by the exchange) ------------------------------------------------------

    def _on_depth(self, message: Mapping[str, Any]) -> None:
        state = self._by_id.get(str(message.get("s")))
        if state is None:
            return
        try:
            self._apply_depth(state, message)
        except Exception as exc:  # a malformed message: never trade on what it may have done
            log.exception("%s %s: bad depth message", self.venue, state.symbol)
            events = state.book.invalidate(f"bad message: {exc}")
            if events:
                self._book_events(state, events)
            asyncio.get_running_loop().call_soon(self._force_resync, state.symbol, "bad message")

    def _apply_depth(self, state: _SymbolState, message: Mapping[str, Any]) -> None:
        received = time.time_ns()
        event_time = int(message["E"])
        self.counters.last_event_lag_ms = received / 1e6 - event_time
        state.last_event_time = event_time
        if state.status is None or state.status == "disconnected":
            self._set_status(state, "connected", "depth stream delivers", received)
        book = state.book
        events = book.on_message(message)
        if events:
            self._book_events(state, events)
        self._emit(
            BookUpdate(self.venue, state.symbol, event_time, received, book.in_sync, book.last_update_id)
        )

    def _on_kline(self, message: Mapping[str, Any]) -> None:
        kline = message.get("k")
        if not isinstance(kline, Mapping) or not kline.get("x"):
            return
        state = self._by_id.get(str(kline.get("s", message.get("s"))))
        if state is None:
            return
        self._emit(
            BarEvent(
                venue=self.venue,
                symbol=state.symbol,
                timeframe=str(kline["i"]),
                open_time_ms=int(kline["t"]),
                open=float(kline["o"]),
                high=float(kline["h"]),
                low=float(kline["l"]),
                close=float(kline["c"]),
                volume=float(kline["v"]),
                received_ns=time.time_ns(),
            )
        )

    async def _fetch_snapshot(self, symbol: str, limit: int | None) -> Any:
        exchange = self._exchange
        state = self._states.get(symbol)
        if state is None:  # not one of ours: ccxt's own behaviour
            return await exchange.fetch_order_book(symbol, limit)
        limit = limit or self.config.snapshot_limit
        state.snapshot_pending = True
        try:
            await self.scheduler.acquire(symbol, depth_weight(limit))
            raw = await exchange.publicGetDepth({"symbol": exchange.market(symbol)["id"], "limit": limit})
        finally:
            state.snapshot_pending = False
        self.counters.snapshots += 1
        snapshot = DepthSnapshot.from_binance(raw)
        events = state.book.on_snapshot(snapshot)
        if events:
            self._book_events(state, events)
        if state.book.in_sync:
            self._emit(
                BookUpdate(
                    self.venue,
                    symbol,
                    state.last_event_time,
                    time.time_ns(),
                    True,
                    state.book.last_update_id,
                )
            )
        orderbook = exchange.parse_order_book(raw, symbol, exchange.safe_integer(raw, "T"))
        orderbook["nonce"] = snapshot.last_update_id
        return orderbook

    # -- book events and status --------------------------------------------------------------

    def _book_events(self, state: _SymbolState, events: list[BookEvent]) -> None:
        received = time.time_ns()
        for event in events:
            kind = event.kind
            if kind == "gap":
                self.counters.gaps += 1
            elif kind == "resync_needed":
                self.counters.resyncs += 1
                state.waiting_since = time.monotonic()
                if state.status != "disconnected":
                    self._set_status(state, "resyncing", event.detail, received)
                if event.detail in _FORCE_REASONS:
                    # After ccxt has handled the current message: then drop its subscription.
                    asyncio.get_running_loop().call_soon(self._force_resync, state.symbol, event.detail)
            elif kind == "snapshot_rejected":
                state.waiting_since = time.monotonic()
                asyncio.get_running_loop().call_soon(self._force_resync, state.symbol, event.detail)
            elif kind == "synced":
                state.waiting_since = None
                self._set_status(state, "in_sync", event.detail, received)

    def _on_disconnect(self, state: _SymbolState, reason: str) -> None:
        received = time.time_ns()
        events = state.book.invalidate("disconnected")
        if events:
            self.counters.resyncs += 1
        state.waiting_since = None
        if state.status != "disconnected":
            self._set_status(state, "disconnected", reason, received)

    def _set_status(self, state: _SymbolState, status: Status, reason: str, received_ns: int) -> None:
        if state.status == status:
            return
        state.status = status
        self._emit(StatusEvent(self.venue, state.symbol, status, reason, received_ns))

    def _force_resync(self, symbol: str, reason: str) -> None:
        """Make ccxt drop its book subscription, as it does itself on a gap, so it resubscribes."""
        exchange = self._exchange
        if exchange is None:
            return
        message_hash = "orderbook::" + symbol
        if symbol in exchange.orderbooks:
            del exchange.orderbooks[symbol]
        for client in list((exchange.clients or {}).values()):
            if message_hash in client.subscriptions:
                del client.subscriptions[message_hash]
                client.reject(ChecksumError(f"{self.venue} {symbol}: resync ({reason})"), message_hash)

    def _book_connection_open(self, symbol: str) -> bool:
        """Return whether the websocket carrying the symbol's depth stream is open."""
        exchange = self._exchange
        stream = exchange.options.get("streamBySubscriptionsHash", {}).get("multipleOrderbook::" + symbol)
        if stream is None:
            return False
        url = exchange.urls["api"]["ws"]["spot"] + "/" + str(stream)
        client = (exchange.clients or {}).get(url)
        return client is not None and not client.closed()

    def _emit(self, event: FeedEvent) -> None:
        sink = self._sink
        if sink is None:
            self.events.put_nowait(event)
            return
        try:
            sink(event)
        except Exception:
            log.exception("%s: the feed's event sink failed on %r", self.venue, event)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


__all__ = [
    "BarEvent",
    "BookUpdate",
    "FeedConfig",
    "FeedCounters",
    "FeedEvent",
    "MarketFeed",
    "SnapshotScheduler",
    "Status",
    "StatusEvent",
    "TickerEvent",
    "TradeEvent",
    "depth_weight",
]
