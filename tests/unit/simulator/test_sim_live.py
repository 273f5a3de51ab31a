"""The venue's live layer, stepped by hand with a fake clock: the book, its diffs, the controls."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import numpy as np
import pytest

from tradeflow.simulator import SimulatedVenue
from tradeflow.simulator.live import MAX_LEVELS, DepthDiff, LiveTrade, LiveVenue, live_of
from tradeflow.simulator.routes.streams import StreamHub, _Connection, parse_stream
from tradeflow.simulator.runtime import VenueRuntime

from ._support import MINUTE, NOW_MS, make_cluster

Book = dict[float, float]


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make_live(start: int = NOW_MS) -> tuple[LiveVenue, Clock, VenueRuntime]:
    spec = make_cluster()
    clock = Clock(start)
    runtime = VenueRuntime(SimulatedVenue(spec, spec.venues[0]), spec.venues[0], clock=clock)
    return live_of(runtime), clock, runtime  # no running loop: created, not started


def as_dicts(levels: tuple[list[tuple[float, float]], list[tuple[float, float]]]) -> tuple[Book, Book]:
    return dict(levels[0]), dict(levels[1])


def apply(book: tuple[Book, Book], diff: DepthDiff) -> None:
    for side, changes in zip(book, (diff.bids, diff.asks), strict=True):
        for price, quantity in changes:
            if quantity == 0:
                side.pop(price, None)
            else:
                side[price] = quantity


def run(live: LiveVenue, clock: Clock, steps: int, each: Callable[[], None] | None = None) -> list[DepthDiff]:
    diffs: list[DepthDiff] = []
    for _ in range(steps):
        clock.now += 100
        diffs.extend(live.step())
        if each is not None:
            each()
    return diffs


def test_book_stays_uncrossed_on_the_grids_and_bounded() -> None:
    live, clock, _ = make_live()
    tick = live.market("BTCUSDT").tick.size
    step = live.market("BTCUSDT").step.size

    def check() -> None:
        for symbol in live.symbols:
            bids, asks = live.levels(symbol)
            assert bids[0][0] < asks[0][0]
            assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
            assert [p for p, _ in asks] == sorted(p for p, _ in asks)
            assert 0 < len(bids) <= MAX_LEVELS
            assert 0 < len(asks) <= MAX_LEVELS
            assert all(q > 0 for _, q in bids + asks)
        bids, asks = live.levels("BTCUSDT")
        prices = np.asarray([p for p, _ in bids + asks])
        quantities = np.asarray([q for _, q in bids + asks])
        assert np.allclose(prices / tick, np.rint(prices / tick), atol=1e-6)
        assert np.allclose(quantities / step, np.rint(quantities / step), atol=1e-6)

    run(live, clock, 300, check)


def test_mid_follows_the_venue_price() -> None:
    live, clock, _ = make_live()
    market = live.market("BTC/USDT")
    for _ in range(20):
        run(live, clock, 10)
        bids, asks = live.levels("BTC/USDT")
        mid = (bids[0][0] + asks[0][0]) / 2
        price = float(market.price_at(np.asarray([clock.now], dtype=np.int64))[0])
        # Interpolated inside the second, plus a spread of about a basis point.
        assert abs(mid - price) / price < 5e-4


def test_diffs_replayed_on_a_snapshot_reproduce_the_book_with_contiguous_ids() -> None:
    live, clock, _ = make_live()
    run(live, clock, 5)
    snapshot = live.snapshot("ETHUSDT", 5000)
    book = (
        dict(zip(snapshot.bid_price.tolist(), snapshot.bid_qty.tolist(), strict=True)),
        dict(zip(snapshot.ask_price.tolist(), snapshot.ask_qty.tolist(), strict=True)),
    )
    last = snapshot.last_update_id
    for diff in run(live, clock, 200):
        if diff.symbol != "ETHUSDT":
            continue
        assert diff.first_update_id == last + 1
        assert diff.final_update_id >= diff.first_update_id
        last = diff.final_update_id
        apply(book, diff)
    assert last == live.update_id("ETHUSDT")
    assert book == as_dicts(live.levels("ETHUSDT"))


def test_take_removes_liquidity_in_the_next_diff_and_ticks_call_back() -> None:
    live, clock, _ = make_live()
    ticks: list[tuple[str, int]] = []
    live.on_tick(lambda symbol, now: ticks.append((symbol, now)))
    run(live, clock, 1)
    _bids, asks = live.levels("BTC/USDT")
    price, quantity = asks[3]
    taken = quantity / 2 if quantity > 2 * live.market("BTCUSDT").step.size else quantity
    before = live.update_id("BTCUSDT")
    live.take("BTC/USDT", "ask", price, taken)
    assert live.update_id("BTCUSDT") == before + 1
    remaining = dict(live.levels("BTCUSDT")[1]).get(price, 0.0)
    assert remaining == pytest.approx(quantity - taken)
    snapshot = live.snapshot("BTCUSDT", 5000)
    assert snapshot.last_update_id == before + 1  # the snapshot includes the unpublished change
    diffs = [d for d in run(live, clock, 1) if d.symbol == "BTCUSDT"]
    assert diffs[0].first_update_id == before + 1
    assert ticks[-2:] == [("BTCUSDT", clock.now), ("ETHUSDT", clock.now)]
    with pytest.raises(ValueError, match="side"):
        live.take("BTCUSDT", "buy", price, taken)


def test_gap_control_skips_update_ids_once() -> None:
    live, clock, _ = make_live()
    previous = [d for d in run(live, clock, 3) if d.symbol == "BTCUSDT"][-1]
    live.inject_gap("BTCUSDT", 7)
    gapped, after = [d for d in run(live, clock, 2) if d.symbol == "BTCUSDT"]
    assert gapped.first_update_id == previous.final_update_id + 1 + 7
    assert after.first_update_id == gapped.final_update_id + 1
    assert live.snapshot("BTCUSDT", 10).last_update_id == after.final_update_id
    with pytest.raises(ValueError, match="skip"):
        live.inject_gap("BTCUSDT", 0)


def test_stall_holds_diffs_and_releases_them_as_one_continuous_diff() -> None:
    live, clock, _ = make_live()
    previous = [d for d in run(live, clock, 3) if d.symbol == "ETHUSDT"][-1]
    live.stall("ETHUSDT", 1.0)
    held = run(live, clock, 9)
    assert [d.symbol for d in held] == ["BTCUSDT"] * 9
    released = [d for d in run(live, clock, 2) if d.symbol == "ETHUSDT"]
    assert released[0].first_update_id == previous.final_update_id + 1
    assert released[0].final_update_id > released[0].first_update_id


def test_public_trades_take_the_best_level_and_ids_increase() -> None:
    live, clock, _ = make_live()
    trades: list[LiveTrade] = []

    class Listener:
        def on_depth(self, diff: DepthDiff) -> None:
            pass

        def on_trade(self, trade: LiveTrade) -> None:
            trades.append(trade)

        def on_step(self, now_ms: int) -> None:
            pass

    live.add_listener(Listener())
    run(live, clock, 100)
    btc = [t for t in trades if t.symbol == "BTCUSDT"]
    assert 15 <= len(btc) <= 60  # about 3.5 a second
    assert [t.trade_id for t in btc] == list(range(btc[0].trade_id, btc[0].trade_id + len(btc)))
    live.publish_trade("BTC/USDT", 1.0, 2.0, True, clock.now)
    assert trades[-1].trade_id == btc[-1].trade_id + 1
    assert trades[-1].buyer_is_maker


class FakeSocket:
    closed = False


def hub_with(streams: list[str]) -> tuple[StreamHub, _Connection, Clock, LiveVenue]:
    live, clock, runtime = make_live(NOW_MS - NOW_MS % MINUTE + 58_000)  # 2 s before a minute ends
    hub = StreamHub(runtime, live)
    connection = _Connection(FakeSocket(), combined=True)  # type: ignore[arg-type]
    hub.add(connection)
    assert hub.subscribe(connection, streams) == []
    return hub, connection, clock, live


def drain(connection: _Connection) -> list[dict[str, object]]:
    out = []
    while not connection.queue.empty():
        text = connection.queue.get_nowait()
        assert text is not None
        out.append(json.loads(text))
    return out


def test_kline_stream_closes_the_bar_at_the_minute_boundary() -> None:
    _hub, connection, clock, live = hub_with(["btcusdt@kline_1m"])
    run(live, clock, 40)  # crosses the minute boundary
    klines = [m["data"]["k"] for m in drain(connection)]  # type: ignore[index]
    closed = [k for k in klines if k["x"]]
    assert len(closed) == 1
    boundary = NOW_MS - NOW_MS % MINUTE + MINUTE
    assert closed[0]["t"] == boundary - MINUTE
    assert closed[0]["T"] == boundary - 1
    assert all(k["t"] == boundary for k in klines[klines.index(closed[0]) + 1 :])
    rest = live.market("BTCUSDT")
    candle = rest.klines(1, boundary - MINUTE, boundary - MINUTE, 1, clock.now, from_end=False)
    assert float(closed[0]["c"]) == float(candle.close[0])  # the same model as REST klines


def test_depth_streams_ticker_and_methods() -> None:
    hub, connection, clock, live = hub_with(["ethusdt@depth", "ethusdt@depth@100ms", "ethusdt@ticker"])
    run(live, clock, 25)
    messages = drain(connection)
    fast = [m["data"] for m in messages if m["stream"] == "ethusdt@depth@100ms"]
    slow = [m["data"] for m in messages if m["stream"] == "ethusdt@depth"]
    tickers = [m["data"] for m in messages if m["stream"] == "ethusdt@ticker"]
    assert len(fast) == 25
    assert 2 <= len(slow) <= 3  # one a second
    assert slow[0]["U"] == fast[0]["U"]  # type: ignore[index]
    for previous, current in itertools.pairwise(slow):
        assert current["U"] == previous["u"] + 1  # type: ignore[index, operator]
    assert tickers
    assert {"b", "B", "a", "A"} <= set(tickers[-1])  # type: ignore[arg-type]
    reply = json.loads(hub.handle_text(connection, '{"method":"LIST_SUBSCRIPTIONS","id":3}'))
    assert reply == {"result": ["ethusdt@depth", "ethusdt@depth@100ms", "ethusdt@ticker"], "id": 3}
    reply = json.loads(
        hub.handle_text(connection, '{"method":"UNSUBSCRIBE","params":["ethusdt@ticker"],"id":4}')
    )
    assert reply == {"result": None, "id": 4}
    reply = json.loads(
        hub.handle_text(connection, '{"method":"SUBSCRIBE","params":["xrpusdt@trade"],"id":5}')
    )
    assert reply["error"]["code"] == 2
    assert json.loads(hub.handle_text(connection, "not json"))["error"]["code"] == 3


def test_stream_names() -> None:
    symbols = {"BTCUSDT"}
    assert parse_stream("btcusdt@depth@100ms", symbols) == ("BTCUSDT", "depth@100ms")
    assert parse_stream("btcusdt@kline_15m", symbols) == ("BTCUSDT", "kline_15m")
    assert parse_stream("btcusdt@depth20@100ms", symbols) == ("BTCUSDT", "depth20@100ms")
    assert parse_stream("BTCUSDT@trade", symbols) is None
    assert parse_stream("btcusdt@kline_7m", symbols) is None
    assert parse_stream("ethusdt@trade", symbols) is None
    assert parse_stream("0", symbols) is None
