"""A local order book kept in sync with Binance's diff-depth stream.

Binance's documented procedure for the spot ``<symbol>@depth@100ms`` stream, whose events carry
``U`` (first update id), ``u`` (final update id) and absolute quantities per price level, with
the REST snapshot ``GET /api/v3/depth`` carrying ``lastUpdateId``:

1. Buffer the stream's events.
2. Fetch a snapshot. If it is older than the first buffered event, fetch another.
3. Drop buffered events with ``u <= lastUpdateId``.
4. The first applied event must straddle the snapshot: ``U <= lastUpdateId + 1 <= u``.
5. After that, each event's ``U`` must be the previous event's ``u + 1``; otherwise updates were
   lost (a gap): discard the book, buffer again and fetch a new snapshot.
6. Apply each level: set its quantity, remove it at quantity 0.

"Older than the first buffered event" is read exactly as step 4 needs it: a snapshot is rejected
when ``lastUpdateId + 1 < U`` of the first buffered event (updates between the two are missing).
Binance's page words it as ``lastUpdateId < U``, which would also reject ``lastUpdateId == U - 1``,
a snapshot that step 4 accepts and that is exactly right. Events whose ``u`` is not beyond the
book's update id are ignored, as Binance's update procedure says (a replay after a reconnect);
an event that overlaps the book's update id (``U <= id < u``) is applied, which is safe because
quantities are absolute.

Besides gaps, the book also discards itself and resyncs when it is crossed (best bid >= best
ask) after an event, or stale: no event for ``stale_after_ms``, as :meth:`LocalOrderBook.check`
finds when the caller asks.

A snapshot may also arrive before any event (or after all buffered events are older than it):
the book holds it (:attr:`BookState.BRIDGING`) and syncs on the first event that straddles it,
or rejects it if that event is already beyond it.

States (:class:`BookState`):

- ``BUFFERING``: never synced; events are buffered and a snapshot is needed.
- ``BRIDGING``: a snapshot is held; waiting for the event that straddles ``lastUpdateId + 1``.
- ``SYNCED``: the book follows the stream; the only state in which it may be traded on.
- ``RESYNCING``: sync was lost (gap, crossed, stale); the book is empty, events are buffered
  and a new snapshot is needed. Behaves as ``BUFFERING``; kept apart for monitoring.

Every call returns the :class:`BookEvent` values of what happened (``synced``, ``gap``,
``crossed``, ``stale``, ``resync_needed``, ``snapshot_rejected``, ...); see ``EventKind``.

Complexity, with ``m`` levels on a side and ``k`` levels in an event. Each side keeps a dict
(price -> quantity) and its best price: applying an event is O(k); the best price is exact
except after the event removed it, when the first read scans the side once, O(m) (see
``_BookSide``). :meth:`LocalOrderBook.best_bid`, :meth:`~LocalOrderBook.best_ask`,
:meth:`~LocalOrderBook.mid` and :meth:`~LocalOrderBook.spread` are therefore O(1), or O(m) on
the first read after the best level went; :meth:`~LocalOrderBook.top` is O(m log n) and
:meth:`~LocalOrderBook.depth_notional` O(m). :meth:`LocalOrderBook.on_message` applies a decoded
wire message without building intermediate objects: ``bench/book.py`` measures it against a
plain ``json.loads`` + dict baseline.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

#: One price level: (price, quantity).
Level: TypeAlias = tuple[float, float]
#: Price levels as they arrive (an event's updates, a snapshot's side).
Levels: TypeAlias = tuple[Level, ...]
#: A side of the book.
Side: TypeAlias = Literal["bid", "ask"]

#: What a :class:`BookEvent` reports.
#:
#: - ``synced``: the book follows the stream now.
#: - ``gap``: an event's ``U`` is not the previous ``u + 1`` (while synced: followed by a resync;
#:   while buffering: the older buffered events are discarded).
#: - ``crossed``: best bid >= best ask after an event (followed by a resync).
#: - ``stale``: no event for ``stale_after_ms`` (followed by a resync).
#: - ``resync_needed``: the book was discarded; the detail is the reason. A snapshot is needed.
#: - ``snapshot_rejected``: the snapshot is older than the buffered stream; fetch a newer one.
#: - ``snapshot_ignored``: a snapshot that is not needed (already synced, or older than the held one).
#: - ``ignored``: an event the book already has (``u`` not beyond the book's update id).
#: - ``buffer_overflow``: the buffer is full; its oldest event was dropped.
EventKind: TypeAlias = Literal[
    "synced",
    "gap",
    "crossed",
    "stale",
    "resync_needed",
    "snapshot_rejected",
    "snapshot_ignored",
    "ignored",
    "buffer_overflow",
]


def _parse_levels(raw: Iterable[Sequence[Any]]) -> Levels:
    """Parse Binance's ``[["price", "quantity"], ...]`` into float pairs."""
    return tuple((float(level[0]), float(level[1])) for level in raw)


def _normalise_symbol(symbol: str) -> str:
    """Return a symbol as Binance spells it: ``BTC/USDT`` and ``btcusdt`` become ``BTCUSDT``."""
    return "".join(character for character in symbol.upper() if character.isalnum())


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    """One diff-depth stream event: absolute quantities of the levels that changed.

    Attributes:
        first_update_id: ``U``, the first update id in the event.
        final_update_id: ``u``, the final update id in the event.
        event_time: ``E``, the exchange's event time in epoch milliseconds.
        bids: Bid levels (price, quantity); quantity 0 removes the level.
        asks: Ask levels (price, quantity); quantity 0 removes the level.
        symbol: ``s``, the venue's symbol, when known (checked against the book's).
    """

    first_update_id: int
    final_update_id: int
    event_time: int
    bids: Levels
    asks: Levels
    symbol: str | None = None

    def __post_init__(self) -> None:
        if self.final_update_id < self.first_update_id:
            raise ValueError(
                f"final update id {self.final_update_id} < first update id {self.first_update_id}"
            )

    @classmethod
    def from_binance(cls, payload: Mapping[str, Any]) -> DepthUpdate:
        """Parse a Binance ``depthUpdate`` event (or a combined stream's ``{"stream", "data"}``).

        Args:
            payload: ``{"e": "depthUpdate", "E": .., "s": .., "U": .., "u": .., "b": .., "a": ..}``
                with prices and quantities as strings.

        Returns:
            The event.

        Raises:
            ValueError: If the payload is another kind of event.
        """
        data: Mapping[str, Any] = payload["data"] if "stream" in payload and "data" in payload else payload
        kind = data.get("e", "depthUpdate")
        if kind != "depthUpdate":
            raise ValueError(f"not a depthUpdate event: {kind!r}")
        symbol = data.get("s")
        return cls(
            first_update_id=int(data["U"]),
            final_update_id=int(data["u"]),
            event_time=int(data["E"]),
            bids=_parse_levels(data.get("b", ())),
            asks=_parse_levels(data.get("a", ())),
            symbol=None if symbol is None else str(symbol),
        )


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """A REST depth snapshot.

    Attributes:
        last_update_id: ``lastUpdateId``, the last update id the snapshot includes.
        bids: Bid levels (price, quantity).
        asks: Ask levels (price, quantity).
    """

    last_update_id: int
    bids: Levels
    asks: Levels

    @classmethod
    def from_binance(cls, payload: Mapping[str, Any]) -> DepthSnapshot:
        """Parse the body of ``GET /api/v3/depth``.

        Args:
            payload: ``{"lastUpdateId": .., "bids": [["price", "qty"], ..], "asks": [..]}``.

        Returns:
            The snapshot.
        """
        return cls(
            last_update_id=int(payload["lastUpdateId"]),
            bids=_parse_levels(payload.get("bids", ())),
            asks=_parse_levels(payload.get("asks", ())),
        )


class BookState(enum.Enum):
    """Where a :class:`LocalOrderBook` stands in the sync procedure (see the module docstring)."""

    BUFFERING = "buffering"
    BRIDGING = "bridging"
    SYNCED = "synced"
    RESYNCING = "resyncing"


@dataclass(frozen=True, slots=True)
class BookEvent:
    """Something the book reports: a sync, a gap, a resync, a rejected snapshot, ...

    Attributes:
        kind: What happened (see ``EventKind``).
        detail: A human-readable detail; for ``resync_needed`` the reason (``gap``, ``crossed``,
            ``stale``).
    """

    kind: EventKind
    detail: str = ""


_NO_BID = float("-inf")
_NO_ASK = float("inf")


class _BookSide:
    """One side's levels: a dict (price -> quantity) and its best price, resolved lazily.

    Setting a level better than the best makes it the best (one comparison per level). Removing
    the best level only marks the best *stale*: it stays an upper bound of the true best bid (a
    lower bound of the true best ask), and the side is scanned once, O(m), when the best price is
    next read. A moving price removes the best level in most events on one side, and a scan per
    read is far cheaper than keeping an ordered structure (a heap, a sorted list) up to date for
    every level added and removed. The crossed-book check needs no scan while the bounds are
    apart, which is almost always. An empty side's best is -inf (bids) or +inf (asks), so the
    loops compare without a None check.
    """

    __slots__ = ("_best", "_descending", "_empty", "_levels", "_stale")

    def __init__(self, descending: bool) -> None:
        self._descending = descending
        self._empty = _NO_BID if descending else _NO_ASK
        self._levels: dict[float, float] = {}
        self._best = self._empty
        self._stale = False

    def __len__(self) -> int:
        return len(self._levels)

    def apply(self, levels: Iterable[Level]) -> None:
        """Set each level's quantity (0 removes it)."""
        book = self._levels
        best, stale = self._best, self._stale
        if self._descending:
            for price, quantity in levels:
                if quantity:
                    book[price] = quantity
                    if price > best:
                        best, stale = price, False
                else:
                    book.pop(price, None)
                    if price == best:
                        stale = True
        else:
            for price, quantity in levels:
                if quantity:
                    book[price] = quantity
                    if price < best:
                        best, stale = price, False
                else:
                    book.pop(price, None)
                    if price == best:
                        stale = True
        self._best, self._stale = best, stale

    def apply_raw(self, raw: Iterable[Sequence[Any]]) -> None:
        """Like :meth:`apply`, from a message's ``[["price", "quantity"], ...]`` (the hot path)."""
        book = self._levels
        best, stale = self._best, self._stale
        if self._descending:
            for price_text, quantity_text in raw:
                price = float(price_text)
                quantity = float(quantity_text)
                if quantity:
                    book[price] = quantity
                    if price > best:
                        best, stale = price, False
                else:
                    book.pop(price, None)
                    if price == best:
                        stale = True
        else:
            for price_text, quantity_text in raw:
                price = float(price_text)
                quantity = float(quantity_text)
                if quantity:
                    book[price] = quantity
                    if price < best:
                        best, stale = price, False
                else:
                    book.pop(price, None)
                    if price == best:
                        stale = True
        self._best, self._stale = best, stale

    def load(self, levels: Iterable[Level]) -> None:
        """Replace every level (zero quantities are skipped)."""
        self._levels = {price: quantity for price, quantity in levels if quantity != 0.0}
        self._stale = True
        self.best_price()

    def clear(self) -> None:
        """Remove every level."""
        self._levels = {}
        self._best, self._stale = self._empty, False

    @property
    def bound(self) -> float:
        """Return the best price, or a bound of it that is never better (no scan)."""
        return self._best

    def best_price(self) -> float:
        """Return the exact best price (-inf/+inf when empty); scans once after the best was removed."""
        if self._stale:
            book = self._levels
            if not book:
                self._best = self._empty
            else:
                self._best = max(book) if self._descending else min(book)
            self._stale = False
        return self._best

    def best(self) -> Level | None:
        """Return the best level, or None when the side is empty (O(1) after the first read)."""
        best = self.best_price()
        if best == self._empty:
            return None
        return (best, self._levels[best])

    def top(self, count: int) -> list[Level]:
        """Return the best ``count`` levels, best first."""
        if self._descending:
            return heapq.nlargest(count, self._levels.items())
        return heapq.nsmallest(count, self._levels.items())

    def items(self) -> Iterable[Level]:
        """Iterate over the levels, unordered."""
        return self._levels.items()


def _crossed(bids: _BookSide, asks: _BookSide) -> bool:
    """Return whether the best bid is at or above the best ask (both sides non-empty)."""
    # The bounds are never better than the true best prices, so apart bounds settle it.
    return bids.bound >= asks.bound and bids.best_price() >= asks.best_price()


class LocalOrderBook:
    """A local copy of one symbol's order book, synced from the diff-depth stream and snapshots.

    Feed it every stream event (:meth:`on_update`) and the snapshots it asks for
    (:attr:`needs_snapshot`, :meth:`on_snapshot`); call :meth:`check` now and then to catch a
    silent stream. No order is placed on a book that is not in sync (:attr:`in_sync`): while it
    is not, the book is empty.

    Args:
        symbol: The symbol (``BTC/USDT`` or ``BTCUSDT``); events for another symbol are refused.
        stale_after_ms: The book resyncs when :meth:`check` finds no event for longer than this.
        max_buffer: At most this many events are buffered while awaiting a snapshot (the oldest
            go first).

    Raises:
        ValueError: If ``stale_after_ms`` or ``max_buffer`` is not positive.
    """

    def __init__(self, symbol: str, stale_after_ms: int = 5_000, max_buffer: int = 10_000) -> None:
        if stale_after_ms <= 0:
            raise ValueError(f"stale_after_ms must be positive, got {stale_after_ms}")
        if max_buffer <= 0:
            raise ValueError(f"max_buffer must be positive, got {max_buffer}")
        self.symbol = symbol
        self.stale_after_ms = stale_after_ms
        self.max_buffer = max_buffer
        self._venue_symbol = _normalise_symbol(symbol)
        self._bids = _BookSide(descending=True)
        self._asks = _BookSide(descending=False)
        self._buffer: deque[DepthUpdate] = deque()
        self._held_snapshot: DepthSnapshot | None = None
        self._state = BookState.BUFFERING
        self._last_update_id: int | None = None
        self._last_event_time: int | None = None
        self._resyncs = 0

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> BookState:
        """Return where the book stands in the sync procedure."""
        return self._state

    @property
    def last_event_time(self) -> int | None:
        """Return the venue event time (ms) of the last diff applied, or None."""
        return self._last_event_time

    @property
    def in_sync(self) -> bool:
        """Return whether the book follows the stream (the only state to trade on)."""
        return self._state is BookState.SYNCED

    @property
    def needs_snapshot(self) -> bool:
        """Return whether the caller should fetch a snapshot and pass it to :meth:`on_snapshot`."""
        return self._state is BookState.BUFFERING or self._state is BookState.RESYNCING

    @property
    def last_update_id(self) -> int | None:
        """Return the update id the book is at, or None while it is not in sync."""
        return self._last_update_id

    @property
    def resyncs(self) -> int:
        """Return how many times the book was discarded (gap, crossed, stale)."""
        return self._resyncs

    @property
    def buffered(self) -> int:
        """Return how many events are buffered awaiting a snapshot."""
        return len(self._buffer)

    # -- feeding -----------------------------------------------------------------------------

    def on_update(self, update: DepthUpdate) -> list[BookEvent]:
        """Take one stream event: apply it when in sync, else buffer it (or bridge a held snapshot).

        Args:
            update: The event.

        Returns:
            What happened, in order (empty when the event was simply applied or buffered).

        Raises:
            ValueError: If the event is for another symbol.
        """
        if update.symbol is not None and _normalise_symbol(update.symbol) != self._venue_symbol:
            raise ValueError(f"depth update for {update.symbol} fed to the {self.symbol} book")
        self._last_event_time = update.event_time
        if self._state is BookState.SYNCED:
            return self._apply(update)
        if self._state is BookState.BRIDGING:
            return self._bridge(update)
        return self._buffer_update(update)

    def on_message(self, payload: Mapping[str, Any]) -> list[BookEvent]:
        """Take a decoded ``depthUpdate`` message as it came off the wire (the hot path).

        The same as ``on_update(DepthUpdate.from_binance(payload))``, but an event that simply
        continues a synced book is applied straight from the message, without building a
        :class:`DepthUpdate` or tuples of levels first.

        Args:
            payload: The decoded message (or a combined stream's ``{"stream", "data"}``).

        Returns:
            What happened, as :meth:`on_update` reports it.

        Raises:
            ValueError: If it is another kind of event or for another symbol.
        """
        data: Mapping[str, Any] = payload["data"] if "stream" in payload and "data" in payload else payload
        last_update_id = self._last_update_id
        if (
            self._state is BookState.SYNCED
            and last_update_id is not None
            and data.get("s") == self._venue_symbol
            and data.get("e") == "depthUpdate"
        ):
            first, final = data["U"], data["u"]  # JSON integers
            if last_update_id < final and first <= last_update_id + 1 and first <= final:
                self._last_event_time = data["E"]
                bids, asks = self._bids, self._asks
                bids.apply_raw(data["b"])
                asks.apply_raw(data["a"])
                self._last_update_id = final
                if _crossed(bids, asks):
                    detail = f"best bid {bids.bound} >= best ask {asks.bound} at update id {final}"
                    return [BookEvent("crossed", detail), *self._resync("crossed")]
                return []
        return self.on_update(DepthUpdate.from_binance(data))

    def on_snapshot(self, snapshot: DepthSnapshot) -> list[BookEvent]:
        """Take a snapshot: drop older buffered events, sync from the first straddling one.

        Args:
            snapshot: The snapshot.

        Returns:
            What happened: ``synced`` (and anything replaying the buffer found), or
            ``snapshot_rejected`` when the snapshot is older than the buffered stream (the book
            still needs a snapshot), or ``snapshot_ignored``; empty when the snapshot is held
            until the event that straddles it arrives.
        """
        last_update_id = snapshot.last_update_id
        if self._state is BookState.SYNCED:
            return [BookEvent("snapshot_ignored", f"already in sync at update id {self._last_update_id}")]
        if self._state is BookState.BRIDGING:
            held = self._held_snapshot
            assert held is not None
            if last_update_id <= held.last_update_id:
                return [
                    BookEvent(
                        "snapshot_ignored",
                        f"lastUpdateId {last_update_id} is not newer than the held {held.last_update_id}",
                    )
                ]
            self._held_snapshot = snapshot
            return []
        buffer = self._buffer
        while buffer and buffer[0].final_update_id <= last_update_id:
            buffer.popleft()
        if not buffer:
            self._held_snapshot = snapshot
            self._state = BookState.BRIDGING
            return []
        first = buffer[0]
        if first.first_update_id > last_update_id + 1:
            return [
                BookEvent(
                    "snapshot_rejected",
                    f"lastUpdateId {last_update_id} + 1 < first buffered U {first.first_update_id}",
                )
            ]
        buffer.popleft()
        return self._install(snapshot, first)

    def invalidate(self, reason: str) -> list[BookEvent]:
        """Discard the book because its stream was interrupted (a dropped connection, say).

        Updates may have been lost in between, so a synced (or bridging) book resyncs; a book
        that is buffering drops its buffer, since the events after it may be missing.

        Args:
            reason: Why, e.g. ``disconnected``; reported as the ``resync_needed`` detail.

        Returns:
            ``resync_needed`` when the book was synced or bridging, else nothing.
        """
        if self._state is BookState.SYNCED or self._state is BookState.BRIDGING:
            return self._resync(reason)
        self._buffer.clear()
        return []

    def check(self, now_ms: int) -> list[BookEvent]:
        """Resync a synced book that has had no event for longer than ``stale_after_ms``.

        The last event's time is the exchange's ``E``, so ``now_ms`` should be on the same clock
        (the exchange's time as the caller estimates it).

        Args:
            now_ms: The current time in epoch milliseconds.

        Returns:
            ``stale`` and ``resync_needed`` when the book went stale, else nothing.
        """
        if self._state is not BookState.SYNCED or self._last_event_time is None:
            return []
        silence = now_ms - self._last_event_time
        if silence <= self.stale_after_ms:
            return []
        return [
            BookEvent("stale", f"no event for {silence} ms (limit {self.stale_after_ms} ms)"),
            *self._resync("stale"),
        ]

    # -- reading -----------------------------------------------------------------------------

    def best_bid(self) -> Level | None:
        """Return the best bid (price, quantity), or None (O(1) amortised)."""
        return self._bids.best()

    def best_ask(self) -> Level | None:
        """Return the best ask (price, quantity), or None (O(1) amortised)."""
        return self._asks.best()

    def mid(self) -> float | None:
        """Return the mid price, or None unless both sides have a level."""
        bid, ask = self._bids.best(), self._asks.best()
        if bid is None or ask is None:
            return None
        return (bid[0] + ask[0]) / 2.0

    def spread(self) -> float | None:
        """Return best ask minus best bid, or None unless both sides have a level."""
        bid, ask = self._bids.best(), self._asks.best()
        if bid is None or ask is None:
            return None
        return ask[0] - bid[0]

    def top(self, count: int) -> tuple[list[Level], list[Level]]:
        """Return the best ``count`` levels of each side: bids descending, asks ascending."""
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        return self._bids.top(count), self._asks.top(count)

    def depth_notional(self, side: Side, within_fraction: float) -> float:
        """Return the notional (price times quantity) of one side within a fraction of the mid.

        Args:
            side: ``bid`` (levels at or above ``mid * (1 - within_fraction)``) or ``ask`` (levels
                at or below ``mid * (1 + within_fraction)``).
            within_fraction: The band, e.g. 0.001 for 10 basis points.

        Returns:
            The notional in quote currency; 0.0 without a mid.

        Raises:
            ValueError: If the fraction is negative or the side unknown.
        """
        if within_fraction < 0:
            raise ValueError(f"within_fraction must not be negative, got {within_fraction}")
        mid = self.mid()
        if mid is None:
            return 0.0
        if side == "bid":
            floor = mid * (1.0 - within_fraction)
            return sum(price * quantity for price, quantity in self._bids.items() if price >= floor)
        if side == "ask":
            ceiling = mid * (1.0 + within_fraction)
            return sum(price * quantity for price, quantity in self._asks.items() if price <= ceiling)
        raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")

    # -- the procedure -----------------------------------------------------------------------

    def _apply(self, update: DepthUpdate) -> list[BookEvent]:
        """Apply an event to the synced book (steps 5 and 6), resyncing on a gap or a cross."""
        last_update_id = self._last_update_id
        assert last_update_id is not None
        if update.final_update_id <= last_update_id:
            return [BookEvent("ignored", f"u={update.final_update_id} <= book update id {last_update_id}")]
        if update.first_update_id > last_update_id + 1:
            gap = BookEvent("gap", f"expected U={last_update_id + 1}, got U={update.first_update_id}")
            return [gap, *self._resync("gap", keep=update)]
        bids, asks = self._bids, self._asks
        bids.apply(update.bids)
        asks.apply(update.asks)
        self._last_update_id = update.final_update_id
        if _crossed(bids, asks):
            crossed = BookEvent(
                "crossed",
                f"best bid {bids.bound} >= best ask {asks.bound} at update id {update.final_update_id}",
            )
            return [crossed, *self._resync("crossed")]
        return []

    def _bridge(self, update: DepthUpdate) -> list[BookEvent]:
        """Take an event while a snapshot is held: drop it, sync on it, or reject the snapshot."""
        held = self._held_snapshot
        assert held is not None
        if update.final_update_id <= held.last_update_id:
            return []
        if update.first_update_id > held.last_update_id + 1:
            self._held_snapshot = None
            self._state = BookState.RESYNCING if self._resyncs else BookState.BUFFERING
            rejected = BookEvent(
                "snapshot_rejected",
                f"lastUpdateId {held.last_update_id} + 1 < first event U {update.first_update_id}",
            )
            return [rejected, *self._buffer_update(update)]
        return self._install(held, update)

    def _install(self, snapshot: DepthSnapshot, first: DepthUpdate) -> list[BookEvent]:
        """Load the snapshot, apply the straddling event and then the rest of the buffer."""
        self._bids.load(snapshot.bids)
        self._asks.load(snapshot.asks)
        self._last_update_id = snapshot.last_update_id
        self._held_snapshot = None
        self._state = BookState.SYNCED
        pending = [first, *self._buffer]
        self._buffer.clear()
        events: list[BookEvent] = []
        for index, update in enumerate(pending):
            events.extend(self._apply(update))
            if self._state is not BookState.SYNCED:
                for later in pending[index + 1 :]:
                    events.extend(self._buffer_update(later))
                return events
        events.append(
            BookEvent(
                "synced",
                f"snapshot lastUpdateId {snapshot.last_update_id}, {len(pending)} buffered event(s) "
                f"applied, book at update id {self._last_update_id}",
            )
        )
        return events

    def _buffer_update(self, update: DepthUpdate) -> list[BookEvent]:
        """Buffer an event; a gap in the buffer discards the older events (no snapshot can use them)."""
        buffer = self._buffer
        events: list[BookEvent] = []
        if buffer:
            newest = buffer[-1]
            if update.final_update_id <= newest.final_update_id:
                return []
            if update.first_update_id > newest.final_update_id + 1:
                events.append(
                    BookEvent(
                        "gap",
                        f"expected U={newest.final_update_id + 1}, got U={update.first_update_id} "
                        f"while buffering; {len(buffer)} older buffered event(s) discarded",
                    )
                )
                buffer.clear()
        if len(buffer) >= self.max_buffer:
            dropped = buffer.popleft()
            events.append(BookEvent("buffer_overflow", f"dropped buffered event u={dropped.final_update_id}"))
        buffer.append(update)
        return events

    def _resync(self, reason: str, keep: DepthUpdate | None = None) -> list[BookEvent]:
        """Discard the book and the buffer; buffer ``keep`` (the event that revealed a gap)."""
        self._bids.clear()
        self._asks.clear()
        self._buffer.clear()
        self._held_snapshot = None
        self._last_update_id = None
        self._state = BookState.RESYNCING
        self._resyncs += 1
        events = [BookEvent("resync_needed", reason)]
        if keep is not None:
            events.extend(self._buffer_update(keep))
        return events
