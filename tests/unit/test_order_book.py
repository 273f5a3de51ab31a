"""The local order book: Binance's diff-depth sync procedure, step by step and as a property."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import event as note_case
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.execution.book import (
    BookEvent,
    BookState,
    DepthSnapshot,
    DepthUpdate,
    Level,
    LocalOrderBook,
)


def update(
    first: int,
    final: int,
    bids: Iterable[Level] = (),
    asks: Iterable[Level] = (),
    event_time: int = 1_000,
) -> DepthUpdate:
    return DepthUpdate(
        first_update_id=first,
        final_update_id=final,
        event_time=event_time,
        bids=tuple(bids),
        asks=tuple(asks),
    )


def snapshot(last_update_id: int, bids: Iterable[Level] = (), asks: Iterable[Level] = ()) -> DepthSnapshot:
    return DepthSnapshot(last_update_id=last_update_id, bids=tuple(bids), asks=tuple(asks))


def kinds(events: list[BookEvent]) -> list[str]:
    return [event.kind for event in events]


def synced_book(last_update_id: int = 100) -> LocalOrderBook:
    """A book synced at ``last_update_id + 5`` over a 100/101 market, two levels a side."""
    book = LocalOrderBook("BTC/USDT")
    book.on_update(update(last_update_id - 2, last_update_id + 5, event_time=1_000))
    events = book.on_snapshot(
        snapshot(last_update_id, bids=[(100.0, 1.0), (99.0, 2.0)], asks=[(101.0, 1.0), (102.0, 3.0)])
    )
    assert kinds(events) == ["synced"]
    return book


# -- the procedure, step by step ---------------------------------------------------------------


def test_events_are_buffered_until_a_snapshot_arrives() -> None:
    book = LocalOrderBook("BTCUSDT")
    assert book.state is BookState.BUFFERING
    assert book.needs_snapshot and not book.in_sync
    assert book.on_update(update(101, 103, bids=[(100.0, 1.0)])) == []
    assert book.on_update(update(104, 106, asks=[(101.0, 1.0)])) == []
    assert book.buffered == 2
    assert not book.in_sync
    assert book.best_bid() is None and book.best_ask() is None and book.mid() is None
    assert book.last_update_id is None


def test_snapshot_drops_buffered_events_it_already_includes() -> None:
    book = LocalOrderBook("BTCUSDT")
    # Already in the snapshot (u <= 102): applying it would wrongly set 99.0 back to 9.
    book.on_update(update(95, 100, bids=[(99.0, 9.0)]))
    book.on_update(update(101, 103, bids=[(100.0, 2.0)]))
    book.on_update(update(104, 105, asks=[(102.0, 0.0)]))
    events = book.on_snapshot(
        snapshot(102, bids=[(100.0, 1.0), (99.0, 4.0)], asks=[(101.0, 1.0), (102.0, 3.0)])
    )
    assert kinds(events) == ["synced"]
    assert book.in_sync and book.state is BookState.SYNCED and not book.needs_snapshot
    assert book.last_update_id == 105
    assert book.top(10) == ([(100.0, 2.0), (99.0, 4.0)], [(101.0, 1.0)])
    assert book.buffered == 0


@pytest.mark.parametrize("last_update_id", [100, 102, 104])
def test_first_applied_event_straddles_the_snapshot(last_update_id: int) -> None:
    # U <= lastUpdateId + 1 <= u with U = 101, u = 105; lastUpdateId = 100 is U - 1 (accepted,
    # although Binance's page phrases the check as lastUpdateId < U).
    book = LocalOrderBook("BTCUSDT")
    book.on_update(update(101, 105, bids=[(100.0, 5.0)]))
    events = book.on_snapshot(snapshot(last_update_id, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)]))
    assert kinds(events) == ["synced"]
    assert book.last_update_id == 105
    assert book.best_bid() == (100.0, 5.0)


def test_snapshot_older_than_the_first_buffered_event_asks_for_another() -> None:
    book = LocalOrderBook("BTCUSDT")
    book.on_update(update(101, 105, bids=[(100.0, 5.0)]))
    book.on_update(update(106, 107, asks=[(101.0, 2.0)]))
    events = book.on_snapshot(snapshot(99, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)]))
    assert kinds(events) == ["snapshot_rejected"]
    assert "99" in events[0].detail and "101" in events[0].detail
    assert book.needs_snapshot and not book.in_sync
    assert book.state is BookState.BUFFERING
    assert book.buffered == 2
    assert book.best_bid() is None
    # A newer snapshot syncs.
    assert kinds(book.on_snapshot(snapshot(106, bids=[(100.0, 5.0)], asks=[(101.0, 1.0)]))) == ["synced"]
    assert book.last_update_id == 107
    assert book.best_ask() == (101.0, 2.0)


def test_snapshot_newer_than_every_buffered_event_waits_for_the_bridging_event() -> None:
    book = LocalOrderBook("BTCUSDT")
    book.on_update(update(101, 105))
    assert book.on_snapshot(snapshot(110, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)])) == []
    assert book.state is BookState.BRIDGING
    assert not book.needs_snapshot and not book.in_sync
    assert book.best_bid() is None
    assert book.on_update(update(106, 110, bids=[(100.0, 7.0)])) == []  # included in the snapshot
    assert not book.in_sync
    assert kinds(book.on_update(update(111, 112, bids=[(99.0, 1.0)]))) == ["synced"]
    assert book.last_update_id == 112
    assert book.top(5)[0] == [(100.0, 1.0), (99.0, 1.0)]


def test_held_snapshot_is_rejected_when_the_stream_is_already_beyond_it() -> None:
    book = LocalOrderBook("BTCUSDT")
    assert book.on_snapshot(snapshot(100)) == []  # before any event: held
    assert book.state is BookState.BRIDGING
    events = book.on_update(update(105, 106))
    assert kinds(events) == ["snapshot_rejected"]
    assert book.needs_snapshot and book.buffered == 1
    assert kinds(book.on_snapshot(snapshot(105, bids=[(1.0, 1.0)], asks=[(2.0, 1.0)]))) == ["synced"]


def test_a_gap_resyncs_the_book() -> None:
    book = synced_book()
    assert book.last_update_id == 105
    events = book.on_update(update(108, 110, bids=[(100.0, 3.0)], event_time=2_000))
    assert events == [BookEvent("gap", "expected U=106, got U=108"), BookEvent("resync_needed", "gap")]
    assert not book.in_sync
    assert book.state is BookState.RESYNCING and book.needs_snapshot
    assert book.resyncs == 1
    assert book.best_bid() is None and book.best_ask() is None and book.last_update_id is None
    assert book.buffered == 1  # the event that revealed the gap starts the new buffer
    book.on_update(update(111, 111, asks=[(101.0, 4.0)]))
    assert kinds(book.on_snapshot(snapshot(109, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)]))) == ["synced"]
    assert book.in_sync and book.last_update_id == 111
    assert book.best_bid() == (100.0, 3.0) and book.best_ask() == (101.0, 4.0)
    assert book.resyncs == 1


def test_events_the_book_already_has_are_ignored() -> None:
    book = synced_book()
    events = book.on_update(update(104, 105, bids=[(100.0, 9.0)]))
    assert kinds(events) == ["ignored"]
    assert book.in_sync and book.best_bid() == (100.0, 1.0)
    # An event overlapping the book's update id carries absolute quantities: it is applied.
    assert book.on_update(update(105, 107, bids=[(100.0, 6.0)])) == []
    assert book.best_bid() == (100.0, 6.0) and book.last_update_id == 107


def test_a_crossed_book_resyncs() -> None:
    book = synced_book()
    events = book.on_update(update(106, 106, bids=[(101.5, 1.0)]))
    assert kinds(events) == ["crossed", "resync_needed"]
    assert events[1].detail == "crossed"
    assert not book.in_sync and book.needs_snapshot and book.resyncs == 1
    assert book.buffered == 0 and book.best_bid() is None


def test_a_touching_book_counts_as_crossed() -> None:
    book = synced_book()
    assert kinds(book.on_update(update(106, 106, asks=[(100.0, 1.0)]))) == ["crossed", "resync_needed"]


def test_a_silent_stream_makes_the_book_stale() -> None:
    book = synced_book()  # last event at 1_000 ms
    assert book.check(6_000) == []
    events = book.check(6_001)
    assert kinds(events) == ["stale", "resync_needed"]
    assert events[1].detail == "stale"
    assert not book.in_sync and book.needs_snapshot and book.resyncs == 1
    assert book.check(100_000) == []  # only a synced book goes stale


def test_staleness_counts_from_the_latest_event() -> None:
    book = LocalOrderBook("BTCUSDT", stale_after_ms=500)
    book.on_update(update(101, 101, event_time=1_000))
    book.on_snapshot(snapshot(100, bids=[(1.0, 1.0)], asks=[(2.0, 1.0)]))
    book.on_update(update(102, 102, event_time=1_400))
    assert book.check(1_900) == []
    assert kinds(book.check(1_901)) == ["stale", "resync_needed"]


def test_quantity_zero_removes_a_level() -> None:
    book = synced_book()
    assert book.on_update(update(106, 106, bids=[(100.0, 0.0)], asks=[(101.0, 0.0), (150.0, 0.0)])) == []
    assert book.best_bid() == (99.0, 2.0)
    assert book.best_ask() == (102.0, 3.0)
    assert book.top(10) == ([(99.0, 2.0)], [(102.0, 3.0)])
    # And back.
    book.on_update(update(107, 107, bids=[(100.0, 0.5)]))
    assert book.best_bid() == (100.0, 0.5)


def test_a_gap_while_buffering_discards_the_older_events() -> None:
    book = LocalOrderBook("BTCUSDT")
    book.on_update(update(101, 102))
    events = book.on_update(update(105, 106))
    assert kinds(events) == ["gap"]
    assert book.buffered == 1 and book.resyncs == 0
    assert book.on_update(update(103, 106)) == []  # nothing newer than the buffer: dropped
    assert book.buffered == 1
    assert kinds(book.on_snapshot(snapshot(102))) == ["snapshot_rejected"]


def test_the_buffer_is_bounded() -> None:
    book = LocalOrderBook("BTCUSDT", max_buffer=3)
    for update_id in range(1, 4):
        assert book.on_update(update(update_id, update_id)) == []
    assert kinds(book.on_update(update(4, 4))) == ["buffer_overflow"]
    assert book.buffered == 3
    assert kinds(book.on_snapshot(snapshot(0))) == ["snapshot_rejected"]
    assert kinds(book.on_snapshot(snapshot(1, bids=[(1.0, 1.0)], asks=[(2.0, 1.0)]))) == ["synced"]


def test_snapshots_that_are_not_needed_are_ignored() -> None:
    book = synced_book()
    assert kinds(book.on_snapshot(snapshot(500))) == ["snapshot_ignored"]
    bridging = LocalOrderBook("BTCUSDT")
    bridging.on_snapshot(snapshot(100))
    assert kinds(bridging.on_snapshot(snapshot(90))) == ["snapshot_ignored"]
    assert bridging.on_snapshot(snapshot(120, bids=[(1.0, 1.0)], asks=[(2.0, 1.0)])) == []  # newer: held
    assert bridging.on_update(update(101, 120)) == []
    assert kinds(bridging.on_update(update(121, 121))) == ["synced"]


def test_reading_the_book() -> None:
    book = synced_book()
    assert book.best_bid() == (100.0, 1.0)
    assert book.best_ask() == (101.0, 1.0)
    assert book.mid() == 100.5
    assert book.spread() == 1.0
    assert book.top(1) == ([(100.0, 1.0)], [(101.0, 1.0)])
    assert book.top(0) == ([], [])
    # Within 1% of 100.5: bids >= 99.495 (100 only), asks <= 101.505 (101 only).
    assert book.depth_notional("bid", 0.01) == pytest.approx(100.0)
    assert book.depth_notional("ask", 0.01) == pytest.approx(101.0)
    assert book.depth_notional("bid", 0.05) == pytest.approx(100.0 + 99.0 * 2.0)
    assert book.depth_notional("ask", 0.05) == pytest.approx(101.0 + 102.0 * 3.0)
    with pytest.raises(ValueError, match="within_fraction"):
        book.depth_notional("bid", -0.1)
    assert LocalOrderBook("BTCUSDT").depth_notional("ask", 0.1) == 0.0


def test_best_levels_survive_heavy_churn() -> None:
    # The best price is kept exact while levels come and go, the best one included.
    book = LocalOrderBook("BTCUSDT")
    book.on_update(update(1, 1))
    book.on_snapshot(snapshot(0, bids=[(1.0, 1.0)], asks=[(1_000.0, 1.0)]))
    bids = {1.0: 1.0}
    update_id = 2
    for round_number in range(300):
        price = 2.0 + (round_number * 37) % 400
        for quantity in (1.0, 0.0, 2.0, 0.0) if round_number % 3 else (1.0, 0.0, 3.0):
            book.on_update(update(update_id, update_id, bids=[(price, quantity)]))
            update_id += 1
            if quantity:
                bids[price] = quantity
            else:
                bids.pop(price, None)
            best_price = max(bids)
            assert book.best_bid() == (best_price, bids[best_price])
    assert book.in_sync


def test_events_for_another_symbol_are_refused() -> None:
    book = LocalOrderBook("BTC/USDT")
    book.on_update(DepthUpdate(1, 1, 0, (), (), symbol="BTCUSDT"))
    with pytest.raises(ValueError, match="ETHUSDT"):
        book.on_update(DepthUpdate(2, 2, 0, (), (), symbol="ETHUSDT"))


def test_update_ids_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="final update id"):
        update(10, 9)


# -- parsing Binance payloads ------------------------------------------------------------------

DEPTH_UPDATE = {
    "e": "depthUpdate",
    "E": 1_700_000_000_123,
    "s": "BNBBTC",
    "U": 157,
    "u": 160,
    "b": [["0.0024", "10"], ["0.0023", "0.00000000"]],
    "a": [["0.0026", "100"]],
}

DEPTH_SNAPSHOT = {
    "lastUpdateId": 1_027_024,
    "bids": [["4.00000000", "431.00000000"]],
    "asks": [["4.00000200", "12.00000000"]],
}


def test_depth_update_from_binance() -> None:
    parsed = DepthUpdate.from_binance(DEPTH_UPDATE)
    assert parsed == DepthUpdate(
        first_update_id=157,
        final_update_id=160,
        event_time=1_700_000_000_123,
        bids=((0.0024, 10.0), (0.0023, 0.0)),
        asks=((0.0026, 100.0),),
        symbol="BNBBTC",
    )
    # A combined stream wraps the event.
    assert DepthUpdate.from_binance({"stream": "bnbbtc@depth@100ms", "data": DEPTH_UPDATE}) == parsed
    with pytest.raises(ValueError, match="aggTrade"):
        DepthUpdate.from_binance({**DEPTH_UPDATE, "e": "aggTrade"})


def test_depth_snapshot_from_binance() -> None:
    parsed = DepthSnapshot.from_binance(DEPTH_SNAPSHOT)
    assert parsed == DepthSnapshot(1_027_024, bids=((4.0, 431.0),), asks=((4.000002, 12.0),))


def test_parsed_payloads_drive_the_book() -> None:
    book = LocalOrderBook("BNB/BTC")
    book.on_update(DepthUpdate.from_binance(DEPTH_UPDATE))
    events = book.on_snapshot(
        DepthSnapshot.from_binance(
            {"lastUpdateId": 158, "bids": [["0.0023", "5"]], "asks": [["0.0026", "1"], ["0.0027", "2"]]}
        )
    )
    assert kinds(events) == ["synced"]
    assert book.top(5) == ([(0.0024, 10.0)], [(0.0026, 100.0), (0.0027, 2.0)])


# -- the property: the local book equals the true book --------------------------------------------

BID_PRICES = [100.0 + 0.5 * index for index in range(10)]
ASK_PRICES = [105.0 + 0.5 * index for index in range(10)]  # above every bid: the true book never crosses
QUANTITIES = [0.0, 0.25, 1.0, 2.5, 7.0]

Book = tuple[dict[float, float], dict[float, float]]


class Market:
    """A true book evolving one level change per update id, streamed as grouped events."""

    def __init__(
        self, base_id: int, initial: Book, changes: list[tuple[str, float, float]], boundaries: list[bool]
    ) -> None:
        self.base_id = base_id
        bids, asks = dict(initial[0]), dict(initial[1])
        self.states: list[Book] = [(dict(bids), dict(asks))]
        for side, price, quantity in changes:
            levels = bids if side == "bid" else asks
            if quantity:
                levels[price] = quantity
            else:
                levels.pop(price, None)
            self.states.append((dict(bids), dict(asks)))
        # Group consecutive update ids into events; each carries the final quantity of every
        # level it touched, as Binance's 100 ms aggregation does.
        self.events: list[DepthUpdate] = []
        start = 0
        for index in range(len(changes)):
            if index == len(changes) - 1 or boundaries[index]:
                touched: dict[tuple[str, float], float] = {}
                for side, price, quantity in changes[start : index + 1]:
                    touched[(side, price)] = quantity
                self.events.append(
                    DepthUpdate(
                        first_update_id=base_id + start + 1,
                        final_update_id=base_id + index + 1,
                        event_time=10_000 + 100 * len(self.events),
                        bids=tuple((price, q) for (side, price), q in touched.items() if side == "bid"),
                        asks=tuple((price, q) for (side, price), q in touched.items() if side == "ask"),
                    )
                )
                start = index + 1

    @property
    def final_id(self) -> int:
        return self.base_id + len(self.states) - 1

    def snapshot(self, update_id: int) -> DepthSnapshot:
        bids, asks = self.states[update_id - self.base_id]
        return DepthSnapshot(update_id, bids=tuple(bids.items()), asks=tuple(asks.items()))

    def sorted_levels(self, update_id: int) -> tuple[list[Level], list[Level]]:
        bids, asks = self.states[update_id - self.base_id]
        return sorted(bids.items(), reverse=True), sorted(asks.items())


@st.composite
def markets(draw: st.DrawFn) -> Market:
    base_id = draw(st.integers(0, 10**9))
    quantity = st.sampled_from(QUANTITIES[1:])
    initial = (
        draw(st.dictionaries(st.sampled_from(BID_PRICES), quantity, max_size=6)),
        draw(st.dictionaries(st.sampled_from(ASK_PRICES), quantity, max_size=6)),
    )
    change = st.one_of(
        st.tuples(st.just("bid"), st.sampled_from(BID_PRICES), st.sampled_from(QUANTITIES)),
        st.tuples(st.just("ask"), st.sampled_from(ASK_PRICES), st.sampled_from(QUANTITIES)),
    )
    changes = draw(st.lists(change, min_size=8, max_size=60))
    boundaries = draw(st.lists(st.booleans(), min_size=len(changes), max_size=len(changes)))
    return Market(base_id, initial, changes, boundaries)


@settings(max_examples=200, deadline=None)
@given(market=markets(), data=st.data())
def test_the_local_book_follows_the_true_book(market: Market, data: st.DataObject) -> None:
    """Once synced, the book is the true book at every step; a dropped event costs one resync.

    The stream starts at a random event, the first snapshot arrives after a random number of
    events at a random update id (too old, straddling, or newer than the stream), old events are
    replayed now and then, and optionally one event after the sync is dropped. The driver knows
    which snapshot the book must accept, so sync and the need for a snapshot are checked exactly.
    """
    events = market.events
    start = data.draw(st.integers(0, len(events) // 2), label="stream starts at event")
    stream = events[start:]
    soon = st.integers(0, min(3, len(stream)))
    countdown = data.draw(
        st.one_of(soon, st.integers(0, len(stream))), label="events buffered before the snapshot"
    )
    # Mostly near the stream delivered by then (too old by a little, straddling, a little newer).
    delivered_until = stream[countdown - 1].final_update_id if countdown else stream[0].first_update_id
    near = st.integers(
        max(market.base_id, stream[0].first_update_id - 3), min(market.final_id, delivered_until + 3)
    )
    anywhere = st.integers(market.base_id, market.final_id)
    first_snapshot_id = data.draw(st.one_of(near, near, anywhere), label="first snapshot id")
    wants_drop = data.draw(st.booleans(), label="drop an event")

    book = LocalOrderBook("BTCUSDT")
    contiguous_from = stream[0].first_update_id  # U of the first event since the stream (re)started
    accepted: int | None = None  # the snapshot the book must have taken
    last_final: int | None = None  # u of the last event delivered
    drop_index: int | None = None
    gaps = 0
    snapshots_sent = 0

    def supply_snapshot_when_due() -> None:
        nonlocal accepted, snapshots_sent
        if countdown > 0 or not book.needs_snapshot:
            return
        if snapshots_sent == 0:
            snapshot_id = first_snapshot_id
        else:
            assert last_final is not None
            snapshot_id = data.draw(st.integers(contiguous_from - 1, last_final), label="snapshot id")
        snapshots_sent += 1
        outcome = book.on_snapshot(market.snapshot(snapshot_id))
        note_case(f"snapshot: {'/'.join(kinds(outcome)) or book.state.value}")
        # Accepted unless updates between the snapshot and the stream are missing; a rejection
        # may only show once the first event arrives (a snapshot held before any event).
        accepted = snapshot_id if snapshot_id + 1 >= contiguous_from else None
        if accepted is None and last_final is not None:
            assert book.needs_snapshot  # rejected at once
            supply_snapshot_when_due()

    def check_against_truth() -> None:
        expected_in_sync = accepted is not None and last_final is not None and last_final > accepted
        assert book.in_sync == expected_in_sync
        assert book.resyncs == gaps
        if book.in_sync:
            assert book.last_update_id == last_final
            assert last_final is not None
            assert book.top(100) == market.sorted_levels(last_final)
            bids, asks = market.sorted_levels(last_final)
            assert book.best_bid() == (bids[0] if bids else None)
            assert book.best_ask() == (asks[0] if asks else None)
        else:
            assert book.top(100) == ([], []) and book.best_bid() is None and book.last_update_id is None
            assert book.needs_snapshot == (accepted is None)

    supply_snapshot_when_due()
    for index, event in enumerate(stream):
        if index == drop_index:
            continue
        returned = book.on_update(event)
        if drop_index is not None and index == drop_index + 1:
            # The gap shows on the first event after the dropped one.
            assert last_final is not None
            assert returned[:2] == [
                BookEvent("gap", f"expected U={last_final + 1}, got U={event.first_update_id}"),
                BookEvent("resync_needed", "gap"),
            ]
            assert not book.in_sync and book.needs_snapshot
            gaps += 1
            note_case("an event was dropped after syncing")
            accepted = None
            contiguous_from = event.first_update_id
            countdown = data.draw(st.integers(0, 3), label="events buffered before the new snapshot")
            snapshots_sent = max(snapshots_sent, 1)  # the new snapshot is taken from the true book now
        else:
            assert "gap" not in [returned_event.kind for returned_event in returned]
        last_final = event.final_update_id
        if data.draw(st.integers(0, 7), label="replay an old event (a reconnect)") == 0:
            replayed = data.draw(st.sampled_from(stream[: index + 1]), label="replayed event")
            if replayed is not event and stream.index(replayed) != drop_index:
                assert all(kind == "ignored" for kind in kinds(book.on_update(replayed)))
        countdown = max(countdown - 1, 0)
        supply_snapshot_when_due()
        check_against_truth()
        if index == len(stream) - 1:
            note_case(f"at the end: {book.state.value}, {gaps} gap(s)")
        if wants_drop and drop_index is None and book.in_sync and index + 2 < len(stream):
            drop_index = data.draw(st.integers(index + 1, len(stream) - 2), label="dropped event")


# -- the hot path: decoded wire messages ----------------------------------------------------------


def wire(event: DepthUpdate, symbol: str = "BTCUSDT") -> dict[str, object]:
    """The decoded message Binance would send for an event (prices and quantities as strings)."""
    return {
        "e": "depthUpdate",
        "E": event.event_time,
        "s": symbol,
        "U": event.first_update_id,
        "u": event.final_update_id,
        "b": [[repr(price), repr(quantity)] for price, quantity in event.bids],
        "a": [[repr(price), repr(quantity)] for price, quantity in event.asks],
    }


@settings(max_examples=150, deadline=None)
@given(market=markets(), data=st.data())
def test_messages_and_parsed_updates_drive_the_book_identically(market: Market, data: st.DataObject) -> None:
    """``on_message`` (decoded wire dicts) and ``on_update`` agree at every step, gaps and replays too."""
    events = market.events
    order = data.draw(
        st.lists(st.integers(0, len(events) - 1), min_size=1, max_size=2 * len(events)),
        label="delivery order",
    )
    snapshot_at = data.draw(st.integers(0, len(order)), label="snapshot after this many events")
    snapshot_id = data.draw(st.integers(market.base_id, market.final_id), label="snapshot id")
    parsed, raw = LocalOrderBook("BTC/USDT"), LocalOrderBook("BTC/USDT")
    for step, index in enumerate([*order, None]):
        if step == snapshot_at or (parsed.needs_snapshot and step > snapshot_at):
            snapshot = market.snapshot(snapshot_id if step == snapshot_at else market.final_id)
            assert parsed.on_snapshot(snapshot) == raw.on_snapshot(snapshot)
        if index is None:
            break
        event = events[index]
        assert parsed.on_update(event) == raw.on_message(wire(event))
        assert parsed.state == raw.state
        assert parsed.last_update_id == raw.last_update_id
        assert parsed.top(100) == raw.top(100)
        assert parsed.best_bid() == raw.best_bid()
        assert parsed.best_ask() == raw.best_ask()


def test_a_crossing_message_resyncs_and_others_are_refused() -> None:
    book = synced_book()
    crossing = update(106, 106, bids=[(101.5, 1.0)])
    assert kinds(book.on_message(wire(crossing))) == ["crossed", "resync_needed"]
    assert not book.in_sync
    combined = {"stream": "btcusdt@depth@100ms", "data": wire(update(107, 107))}
    assert kinds(book.on_message(combined)) == []  # buffered while resyncing
    assert book.buffered == 1
    with pytest.raises(ValueError, match="ETHUSDT"):
        synced_book().on_message(wire(update(106, 107), symbol="ETHUSDT"))


def test_invalidate_discards_a_synced_book_and_a_buffer() -> None:
    book = synced_book()
    assert book.invalidate("disconnected") == [BookEvent("resync_needed", "disconnected")]
    assert not book.in_sync
    assert book.needs_snapshot
    assert book.resyncs == 1
    book.on_update(update(200, 201))
    assert book.buffered == 1
    assert book.invalidate("disconnected") == []
    assert book.buffered == 0
    assert book.resyncs == 1


def test_the_book_tells_the_venue_time_of_its_last_diff() -> None:
    """The live ``book_age_seconds`` feature reads it (training joins snapshots by their age)."""
    book = LocalOrderBook("BTC/USDT")
    assert book.last_event_time is None
    book.on_update(DepthUpdate.from_binance(
        {"e": "depthUpdate", "E": 1_000, "s": "BTCUSDT", "U": 11, "u": 12, "b": [["10.0", "1.0"]], "a": []}
    ))  # fmt: skip
    book.on_snapshot(
        DepthSnapshot.from_binance({"lastUpdateId": 10, "bids": [["10.0", "2.0"]], "asks": [["11.0", "1"]]})
    )
    book.on_update(DepthUpdate.from_binance(
        {"e": "depthUpdate", "E": 1_100, "s": "BTCUSDT", "U": 13, "u": 13, "b": [], "a": [["11.0", "2.0"]]}
    ))  # fmt: skip
    assert book.in_sync
    assert book.last_event_time == 1_100
