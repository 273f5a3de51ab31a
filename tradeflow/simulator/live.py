"""The live layer of a venue: an order book per symbol that evolves every 100 ms.

The REST endpoints serve a venue's market data as pure functions of seeds and "now"; a trading
client also needs a book that *changes* and tells it what changed, the way an exchange's
diff-depth stream does. :class:`LiveVenue` keeps one such book per symbol:

- It starts from the venue's static model (:meth:`VenueMarket.order_book`, trimmed to a few
  hundred levels a side) and every 100 ms moves so that its mid follows
  :meth:`VenueMarket.price_at` (interpolated inside the second), with a small random spread;
  levels the price moved through are consumed, fresh levels appear on the other side, a few
  quantities change, and some levels appear and disappear at random.
- Prices are integer tick counts and quantities integer lot counts internally, so every value
  printed is exactly on the tick and step grids and a client's float equals ours.
- Every level change takes the next update id, as on Binance, where each order action is one
  update. Changes are collected and published once per step as one diff (``U`` = first id in the
  window, ``u`` = last), so a REST snapshot taken between steps carries ``lastUpdateId`` equal to
  the last published ``u`` and the documented sync procedure works.
- A few public trades per second hit the best level (taking its liquidity, so trades and book
  agree); orders matched by the order endpoints report theirs through :meth:`publish_trade`.
- Test controls: :meth:`inject_gap` makes the next diff skip update ids, :meth:`stall` holds
  diffs back (changes still accumulate and are published in one diff when the stall ends).

Everything runs on the server's event loop: :func:`live_of` creates the layer on first use and
starts its ticker there; route handlers and tick callbacks run on the same loop, so no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tradeflow.simulator import rng
from tradeflow.simulator.market import OrderBook, Ticker24h, VenueMarket
from tradeflow.simulator.quantize import Quantizer

if TYPE_CHECKING:
    from tradeflow.simulator.runtime import VenueRuntime

log = logging.getLogger(__name__)

STEP_MS = 100
"""The book moves and publishes a diff every this many milliseconds."""

MAX_LEVELS = 250
"""At most this many levels a side (the farthest are removed beyond it)."""

MIN_LEVELS = 150
"""At least this many levels a side (far levels are added below it)."""

TRADE_PROBABILITY = 0.35
"""Chance of a public trade per symbol and step: about 3.5 trades per second."""

_GAP_LOG = math.log(0.45)  # level gaps are geometric, as in the static model's book


@dataclass(frozen=True, slots=True)
class DepthDiff:
    """One published diff: the absolute quantities of the levels that changed in a step.

    Attributes:
        symbol: Exchange id, e.g. ``BTCUSDT``.
        event_time: Venue time of the step (ms).
        first_update_id: ``U``.
        final_update_id: ``u``.
        bids: Changed bid levels (price, quantity); quantity 0 removes a level.
        asks: Changed ask levels.
    """

    symbol: str
    event_time: int
    first_update_id: int
    final_update_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class LiveTrade:
    """One public trade.

    Attributes:
        symbol: Exchange id.
        trade_id: Increasing per symbol.
        price: Trade price (tick grid).
        quantity: Base quantity (step grid).
        time: Trade time (ms).
        buyer_is_maker: True when the seller took liquidity.
    """

    symbol: str
    trade_id: int
    price: float
    quantity: float
    time: int
    buyer_is_maker: bool


class LiveListener(Protocol):
    """Receives what the live layer publishes (the websocket hub is one)."""

    def on_depth(self, diff: DepthDiff) -> None:
        """Take a published depth diff."""

    def on_trade(self, trade: LiveTrade) -> None:
        """Take a public trade."""

    def on_step(self, now_ms: int) -> None:
        """Run after every step of every symbol (e.g. for once-a-second streams)."""


def _grid(quantizer: Quantizer) -> tuple[int, float]:
    """Return (grid integer, scale) so that ``count * grid / scale`` equals ``Quantizer.from_counts``."""
    scale = 10.0**quantizer.decimals
    return round(quantizer.size * scale), scale


class _SymbolBook:
    """One symbol's live book: tick counts -> lot counts per side, plus pending changes."""

    def __init__(self, market: VenueMarket, seed: int, now_ms: int) -> None:
        self.market = market
        self.symbol = market.spec.exchange_id
        self.tick, self.step = market.tick, market.step
        self._tick_grid, self._tick_scale = _grid(self.tick)
        self._step_grid, self._step_scale = _grid(self.step)
        self.random = random.Random(rng.key128(seed, self.symbol, "live"))
        self.qbase = max(1.0, market._vbase / 20.0 / self.step.size)
        seed_book = market.order_book(now_ms)
        self.update_id = int(seed_book.last_update_id)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        for prices, quantities, side in (
            (seed_book.bid_price, seed_book.bid_qty, self.bids),
            (seed_book.ask_price, seed_book.ask_qty, self.asks),
        ):
            counts = np.rint(prices[:MAX_LEVELS] / self.tick.size).astype(np.int64).tolist()
            lots = np.rint(quantities[:MAX_LEVELS] / self.step.size).astype(np.int64).tolist()
            side.update((c, max(1, q)) for c, q in zip(counts, lots, strict=True) if c > 0)
        self.pending_first: int | None = None
        self.pending_bids: dict[int, int] = {}
        self.pending_asks: dict[int, int] = {}
        self.gap_skip = 0
        self.stalled_until_ms = 0
        recent = market.recent_trades(1, now_ms)
        self.trade_id = int(recent.id[-1]) + 1 if len(recent) else 1
        self._price_second = -1
        self._price_pair = (0.0, 0.0)

    # -- conversions -------------------------------------------------------------------------

    def price(self, count: int) -> float:
        return count * self._tick_grid / self._tick_scale

    def quantity(self, lots: int) -> float:
        return lots * self._step_grid / self._step_scale

    def price_count(self, price: float) -> int:
        return round(price / self.tick.size)

    def lot_count(self, quantity: float) -> int:
        return round(quantity / self.step.size)

    # -- mutation ----------------------------------------------------------------------------

    def set_level(self, is_bid: bool, count: int, lots: int) -> None:
        """Set a level (0 removes it) and take the next update id."""
        side = self.bids if is_bid else self.asks
        if lots <= 0:
            if side.pop(count, None) is None:
                return
            lots = 0
        elif side.get(count) == lots:
            return
        else:
            side[count] = lots
        self.update_id += 1
        if self.pending_first is None:
            self.pending_first = self.update_id
        (self.pending_bids if is_bid else self.pending_asks)[count] = lots

    def _size(self, depth: float) -> int:
        return max(1, int(self.qbase * math.exp(0.8 * self.random.gauss(0.0, 1.0)) * (1.0 + depth / 50.0)))

    def _gap(self) -> int:
        return 1 + int(math.log(1.0 - self.random.random()) / _GAP_LOG)

    def _mid(self, now_ms: int) -> float:
        """Return the mid in tick units: ``price_at`` interpolated inside the second."""
        second = now_ms // 1000
        if second != self._price_second:
            times = np.asarray([second * 1000, second * 1000 + 1000], dtype=np.int64)
            pair = self.market.price_at(times)
            self._price_pair = (float(pair[0]), float(pair[1]))
            self._price_second = second
        p0, p1 = self._price_pair
        frac = (now_ms - second * 1000) / 1000.0
        return (p0 + (p1 - p0) * frac) / self.tick.size

    def _fill(self, is_bid: bool, start: int, stop: int, mid: float) -> None:
        """Add levels from ``start`` away from the mid up to (not including) ``stop``."""
        direction = -1 if is_bid else 1
        side = self.bids if is_bid else self.asks
        count = start
        added = 0
        while (count - stop) * direction < 0 and added < MAX_LEVELS and count > 0:
            if count not in side:
                self.set_level(is_bid, count, self._size(abs(count - mid) / 1.8))
            added += 1
            count += direction * self._gap()

    def evolve(self, now_ms: int) -> None:
        """Move the book one step towards the venue's price at ``now_ms``."""
        mid = self._mid(now_ms)
        r = self.random
        half = max(mid * 0.5e-4 * (0.5 + r.random()), 0.5)
        best_bid = max(math.floor(mid - half), 1)
        best_ask = max(math.ceil(mid + half), best_bid + 1)
        bids, asks = self.bids, self.asks
        # Levels the price moved through are consumed.
        for count in [c for c in bids if c > best_bid]:
            self.set_level(True, count, 0)
        for count in [c for c in asks if c < best_ask]:
            self.set_level(False, count, 0)
        # Fresh levels fill the space between the new best price and the old one.
        self._fill(True, best_bid, max(bids, default=best_bid - MAX_LEVELS * 2), mid)
        self._fill(False, best_ask, min(asks, default=best_ask + MAX_LEVELS * 2), mid)
        for is_bid, side in ((True, bids), (False, asks)):
            ordered = sorted(side, reverse=is_bid)
            near = ordered[:50]
            if near:
                for _ in range(r.randint(2, 6)):  # quantities change near the top
                    count = near[r.randrange(len(near))]
                    self.set_level(is_bid, count, self._size(abs(count - mid) / 1.8))
                for _ in range(r.randint(0, 2)):  # some levels disappear (never the best)
                    if len(near) > 1:
                        self.set_level(is_bid, near[r.randrange(1, len(near))], 0)
                edge = near[-1]
                for _ in range(r.randint(0, 2)):  # and others appear
                    count = r.randint(min(edge, near[0]), max(edge, near[0]))
                    if count not in side and count > 0:
                        self.set_level(is_bid, count, self._size(abs(count - mid) / 1.8))
            ordered = sorted(side, reverse=is_bid)
            for count in ordered[MAX_LEVELS:]:
                self.set_level(is_bid, count, 0)
            if ordered and len(ordered) < MIN_LEVELS:
                far = ordered[min(len(ordered), MAX_LEVELS) - 1]
                step = -1 if is_bid else 1
                target = far + step * 2 * (MIN_LEVELS - len(ordered))
                self._fill(is_bid, far + step * self._gap(), target, mid)

    def take(self, is_bid: bool, count: int, lots: int) -> int:
        """Remove up to ``lots`` at a level; return the lots removed."""
        side = self.bids if is_bid else self.asks
        resting = side.get(count, 0)
        taken = min(resting, max(lots, 0))
        if taken:
            self.set_level(is_bid, count, resting - taken)
        return taken

    def flush(self, now_ms: int) -> DepthDiff | None:
        """Return the pending changes as one diff (None while stalled or unchanged)."""
        if self.pending_first is None or now_ms < self.stalled_until_ms:
            return None
        first = self.pending_first
        if self.gap_skip:
            # The skipped ids are simply never published: a client in sync sees U > u + 1.
            first += self.gap_skip
            self.update_id += self.gap_skip
            self.gap_skip = 0
        price, quantity = self.price, self.quantity
        diff = DepthDiff(
            symbol=self.symbol,
            event_time=now_ms,
            first_update_id=first,
            final_update_id=self.update_id,
            bids=[(price(c), quantity(q)) for c, q in self.pending_bids.items()],
            asks=[(price(c), quantity(q)) for c, q in self.pending_asks.items()],
        )
        self.pending_first = None
        self.pending_bids = {}
        self.pending_asks = {}
        return diff

    # -- reading -----------------------------------------------------------------------------

    def sorted_levels(self, limit: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bid_counts = sorted(self.bids, reverse=True)[:limit]
        ask_counts = sorted(self.asks)[:limit]
        return (
            [(c, self.bids[c]) for c in bid_counts],
            [(c, self.asks[c]) for c in ask_counts],
        )

    def best(self, is_bid: bool) -> tuple[int, int] | None:
        side = self.bids if is_bid else self.asks
        if not side:
            return None
        count = max(side) if is_bid else min(side)
        return count, side[count]


class LiveVenue:
    """The live books of one venue's symbols, stepped every 100 ms on the server's loop.

    Args:
        runtime: The venue's runtime (its venue model and clock).
    """

    def __init__(self, runtime: VenueRuntime) -> None:
        self._runtime = runtime
        self._clock = runtime.clock
        now = self._clock()
        venue = runtime.venue
        self._books: dict[str, _SymbolBook] = {}
        self._aliases: dict[str, str] = {}
        for spec in venue.symbols:
            book = _SymbolBook(venue.market(spec.symbol), runtime.spec.seed, now)
            self._books[spec.exchange_id] = book
            self._aliases[spec.symbol] = spec.exchange_id
            self._aliases[spec.exchange_id] = spec.exchange_id
            self._aliases[spec.exchange_id.lower()] = spec.exchange_id
        self._callbacks: list[Callable[[str, int], None]] = []
        self._listeners: list[LiveListener] = []
        self._task: asyncio.Task[None] | None = None
        self.steps = 0
        self.last_step_ms = now
        self.depth_requests: deque[tuple[int, str]] = deque(maxlen=10_000)
        """(time ms, symbol) of the REST depth snapshots served from the live books (the last 10,000)."""

    # -- the public API (used by the order endpoints and the streams) ------------------------

    @property
    def symbols(self) -> list[str]:
        """Return the exchange ids of the live symbols."""
        return list(self._books)

    @property
    def running(self) -> bool:
        """Return whether the 100 ms ticker is running."""
        return self._task is not None and not self._task.done()

    def exchange_id(self, symbol: str) -> str:
        """Return the exchange id of a unified symbol or exchange id.

        Raises:
            KeyError: The venue does not list the symbol.
        """
        return self._aliases[symbol] if symbol in self._aliases else self._aliases[symbol.upper()]

    def market(self, symbol: str) -> VenueMarket:
        """Return the venue's market model of a symbol."""
        return self._book(symbol).market

    def levels(self, symbol: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Return (bids best-first, asks best-first) as (price, quantity) floats on the grids."""
        book = self._book(symbol)
        bids, asks = book.sorted_levels()
        price, quantity = book.price, book.quantity
        return (
            [(price(c), quantity(q)) for c, q in bids],
            [(price(c), quantity(q)) for c, q in asks],
        )

    def take(self, symbol: str, side: str, price: float, quantity: float) -> None:
        """Remove liquidity at a level; the change shows in the next depth diff.

        Args:
            symbol: Unified symbol or exchange id.
            side: ``"bid"`` or ``"ask"``: the side whose resting liquidity is taken.
            price: The level's price.
            quantity: How much to remove (at most what rests there).

        Raises:
            ValueError: If the side is unknown.
        """
        if side not in ("bid", "ask"):
            raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")
        book = self._book(symbol)
        book.take(side == "bid", book.price_count(price), book.lot_count(quantity))

    def on_tick(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(symbol, now_ms)`` after each 100 ms book step of each symbol."""
        self._callbacks.append(callback)

    def publish_trade(
        self, symbol: str, price: float, quantity: float, buyer_is_maker: bool, time_ms: int
    ) -> None:
        """Publish a public trade (e.g. a fill of an order the venue matched) on the streams."""
        book = self._book(symbol)
        self._emit_trade(book, price, quantity, buyer_is_maker, time_ms)

    # -- what the streams and REST read ------------------------------------------------------

    def add_listener(self, listener: LiveListener) -> None:
        """Receive every published diff and trade, and a call after every step."""
        self._listeners.append(listener)

    def snapshot(self, symbol: str, limit: int) -> OrderBook:
        """Return the top ``limit`` levels a side with the update id they are at (REST depth)."""
        book = self._book(symbol)
        bids, asks = book.sorted_levels(limit)
        tick, step = book.tick, book.step

        def arrays(levels: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
            counts = np.asarray([c for c, _ in levels], dtype=np.float64)
            lots = np.asarray([q for _, q in levels], dtype=np.float64)
            return tick.from_counts(counts), step.from_counts(lots)

        bid_price, bid_qty = arrays(bids)
        ask_price, ask_qty = arrays(asks)
        return OrderBook(
            last_update_id=book.update_id,  # pending (unpublished) changes are in the book already
            bid_price=bid_price,
            bid_qty=bid_qty,
            ask_price=ask_price,
            ask_qty=ask_qty,
        )

    def update_id(self, symbol: str) -> int:
        """Return the last update id of a symbol's book (published or not)."""
        return self._book(symbol).update_id

    def best(self, symbol: str) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
        """Return the best bid and best ask (price, quantity), None for an empty side."""
        book = self._book(symbol)
        out: list[tuple[float, float] | None] = []
        for is_bid in (True, False):
            level = book.best(is_bid)
            out.append(None if level is None else (book.price(level[0]), book.quantity(level[1])))
        return out[0], out[1]

    def ticker(self, symbol: str, now_ms: int) -> Ticker24h:
        """Return the venue's rolling 24 h statistics with the live book's best bid and ask."""
        book = self._book(symbol)
        stats = book.market.ticker_24h(now_ms)
        bid, ask = self.best(symbol)
        return dataclasses.replace(
            stats,
            bid_price=bid[0] if bid else 0.0,
            bid_qty=bid[1] if bid else 0.0,
            ask_price=ask[0] if ask else 0.0,
            ask_qty=ask[1] if ask else 0.0,
        )

    # -- test controls -----------------------------------------------------------------------

    def inject_gap(self, symbol: str, skip: int) -> None:
        """Make the next published diff of a symbol skip ``skip`` update ids.

        Raises:
            ValueError: If ``skip`` is not positive.
        """
        if skip <= 0:
            raise ValueError(f"skip must be positive, got {skip}")
        self._book(symbol).gap_skip += skip

    def stall(self, symbol: str, seconds: float) -> None:
        """Publish no diffs of a symbol for ``seconds`` (its book keeps changing meanwhile)."""
        book = self._book(symbol)
        book.stalled_until_ms = max(book.stalled_until_ms, self._clock() + int(seconds * 1000))

    # -- stepping ----------------------------------------------------------------------------

    def step(self, now_ms: int | None = None) -> list[DepthDiff]:
        """Move every book one step, run the tick callbacks, publish the diffs.

        The ticker calls this every 100 ms; tests may call it directly.

        Returns:
            The diffs published in this step.
        """
        now = self._clock() if now_ms is None else now_ms
        diffs: list[DepthDiff] = []
        for book in self._books.values():
            book.evolve(now)
            self._maybe_trade(book, now)
            for callback in self._callbacks:
                try:
                    callback(book.symbol, now)
                except Exception:
                    log.exception("live tick callback failed for %s", book.symbol)
            diff = book.flush(now)
            if diff is not None:
                diffs.append(diff)
                for listener in self._listeners:
                    listener.on_depth(diff)
        self.steps += 1
        self.last_step_ms = now
        for listener in self._listeners:
            listener.on_step(now)
        return diffs

    def start(self) -> None:
        """Start the 100 ms ticker on the running loop (no-op if it runs already)."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="live-venue-ticker")

    async def stop(self) -> None:
        """Stop the ticker."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = STEP_MS / 1000.0
        deadline = loop.time()
        while True:
            deadline += interval
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:  # fell behind: step now and keep the cadence from here
                deadline = loop.time()
                await asyncio.sleep(0)
            try:
                self.step()
            except Exception:
                log.exception("live venue step failed")

    # -- internals ---------------------------------------------------------------------------

    def _book(self, symbol: str) -> _SymbolBook:
        return self._books[self.exchange_id(symbol)]

    def _maybe_trade(self, book: _SymbolBook, now_ms: int) -> None:
        r = book.random
        if r.random() >= TRADE_PROBABILITY:
            return
        buyer_is_maker = r.random() < 0.5  # a seller hits the best bid
        level = book.best(buyer_is_maker)
        if level is None:
            return
        count, resting = level
        lots = min(resting, max(1, int(book.qbase * r.expovariate(1.0) * 0.3)))
        book.take(buyer_is_maker, count, lots)
        self._emit_trade(book, book.price(count), book.quantity(lots), buyer_is_maker, now_ms)

    def _emit_trade(
        self, book: _SymbolBook, price: float, quantity: float, buyer_is_maker: bool, time_ms: int
    ) -> None:
        trade = LiveTrade(
            symbol=book.symbol,
            trade_id=book.trade_id,
            price=price,
            quantity=quantity,
            time=time_ms,
            buyer_is_maker=buyer_is_maker,
        )
        book.trade_id += 1
        for listener in self._listeners:
            listener.on_trade(trade)


def live_of(runtime: VenueRuntime) -> LiveVenue:
    """Return the venue's live layer, creating it and starting its 100 ms ticker on first use.

    Call it from the server's event loop (a route handler); outside a running loop the layer is
    created but not started (tests may then call :meth:`LiveVenue.step`).
    """
    live = runtime.live
    if live is None:
        live = LiveVenue(runtime)
        runtime.live = live
        runtime.on_close.append(live.stop)
    with contextlib.suppress(RuntimeError):  # no running loop
        asyncio.get_running_loop()
        live.start()
    return live


__all__ = ["STEP_MS", "DepthDiff", "LiveListener", "LiveTrade", "LiveVenue", "live_of"]
