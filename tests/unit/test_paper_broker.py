"""The paper broker: fills against the local order book after a latency, partially, with fees."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from tradeflow.execution.book import DepthSnapshot, DepthUpdate, LocalOrderBook
from tradeflow.execution.brokers import BrokerError, OrderReport, OrderRequest, PaperBroker

T = TypeVar("T")
FEE = 0.001
NOW = 1_767_270_896_789


class Feed:
    """A synced local book of BTC/USDT fed the way the stream feeds it (snapshot, then diffs)."""

    def __init__(self, bids: dict[float, float], asks: dict[float, float]) -> None:
        self.book = LocalOrderBook("BTC/USDT")
        self.update_id = 100
        self.book.on_snapshot(DepthSnapshot(100, tuple(bids.items()), tuple(asks.items())))
        self.update()
        assert self.book.in_sync

    def update(self, bids: dict[float, float] | None = None, asks: dict[float, float] | None = None) -> None:
        """Apply one diff (quantity 0 removes a level)."""
        self.update_id += 1
        self.book.on_update(
            DepthUpdate(
                self.update_id,
                self.update_id,
                NOW,
                tuple((bids or {}).items()),
                tuple((asks or {}).items()),
            )
        )


def paper(feed: Feed, **kwargs: object) -> PaperBroker:
    options: dict[str, object] = {"maker_fee": FEE, "taker_fee": FEE, "clock": lambda: NOW, **kwargs}
    return PaperBroker({"BTC/USDT": feed.book}, **options)  # type: ignore[arg-type]


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def buy(cid: str, quantity: float, price: float | None = None, tif: str = "GTC") -> OrderRequest:
    return OrderRequest(cid, "BTC/USDT", "buy", quantity, price, tif)


def sell(cid: str, quantity: float, price: float | None = None, tif: str = "GTC") -> OrderRequest:
    return OrderRequest(cid, "BTC/USDT", "sell", quantity, price, tif)


def test_an_order_fills_against_the_book_as_it_is_after_the_latency() -> None:
    feed = Feed(bids={99.0: 1.0}, asks={100.0: 1.0, 103.0: 5.0})
    slept: list[float] = []

    async def latency(seconds: float) -> None:  # the market moves while the order travels
        slept.append(seconds)
        feed.update(asks={100.0: 0.0, 102.0: 0.5})

    broker = paper(feed, latency_ms=25.0, sleep=latency)
    report = run(broker.submit(buy("b1", 1.0)))
    assert slept == [0.025]
    assert [(f.price, f.quantity) for f in report.fills] == [(102.0, 0.5), (103.0, 0.5)]
    assert report.status == "filled" and report.average_price == pytest.approx(102.5)


def test_a_market_order_walks_the_levels_pays_taker_fees_and_moves_balances() -> None:
    feed = Feed(bids={99.0: 1.0}, asks={100.0: 1.0, 101.0: 2.0})
    broker = paper(feed, balances={"USDT": 1_000.0})
    report = run(broker.submit(buy("b1", 2.5)))
    assert [(f.price, f.quantity, f.liquidity, f.fee_asset) for f in report.fills] == [
        (100.0, 1.0, "taker", "USDT"),
        (101.0, 1.5, "taker", "USDT"),
    ]
    assert [f.fee for f in report.fills] == [pytest.approx(0.1), pytest.approx(0.1515)]
    assert (report.status, report.filled_quantity) == ("filled", 2.5)
    assert report.average_price == pytest.approx(251.5 / 2.5)
    balances = run(broker.balances())
    assert balances["BTC"] == (2.5, 0.0)
    assert balances["USDT"] == (pytest.approx(1_000.0 - 251.5 * (1 + FEE)), 0.0)
    # What it took stays taken until the venue changes the level: the next buy pays 101.
    again = run(broker.submit(buy("b2", 0.5)))
    assert [(f.price, f.quantity) for f in again.fills] == [(101.0, 0.5)]
    feed.update(asks={100.0: 2.0})  # the venue refills the level
    third = run(broker.submit(buy("b3", 0.5)))
    assert [(f.price, f.quantity) for f in third.fills] == [(100.0, 0.5)]


def test_a_limit_order_takes_what_crosses_rests_and_fills_as_maker_on_later_books() -> None:
    feed = Feed(bids={99.0: 1.0}, asks={100.0: 1.0, 101.0: 2.0})
    broker = paper(feed, balances={"USDT": 1_000.0})
    report = run(broker.submit(buy("b1", 3.0, 100.5)))
    assert (report.status, report.filled_quantity) == ("partially_filled", 1.0)
    assert [(r.client_order_id, r.status) for r in run(broker.open_orders(["BTC/USDT"]))] == [
        ("b1", "partially_filled")
    ]
    assert run(broker.balances())["USDT"][1] == pytest.approx(100.5 * 2.0 * (1 + FEE))
    assert broker.on_book("BTC/USDT") == []  # nothing new crosses
    feed.update(asks={100.2: 0.5})
    fills = broker.on_book("BTC/USDT")
    assert [(f.price, f.quantity, f.liquidity) for f in fills] == [(100.5, 0.5, "maker")]
    assert fills[0].fee == pytest.approx(100.5 * 0.5 * FEE)
    assert run(broker.query("b1", "BTC/USDT")).filled_quantity == 1.5  # type: ignore[union-attr]
    cancelled = run(broker.cancel("b1", "BTC/USDT"))
    assert (cancelled.status, cancelled.filled_quantity) == ("cancelled", 1.5)
    assert run(broker.balances())["USDT"][1] == 0.0
    assert run(broker.open_orders(["BTC/USDT"])) == []
    fills_seen = run(broker.fills_since(["BTC/USDT"], NOW))
    assert [(f.liquidity, f.quantity) for f in fills_seen] == [("taker", 1.0), ("maker", 0.5)]


def test_a_resting_sell_fills_completely_when_bids_reach_it() -> None:
    feed = Feed(bids={99.0: 1.0}, asks={101.0: 1.0})
    broker = paper(feed, balances={"BTC": 2.0})
    assert run(broker.submit(sell("s1", 2.0, 100.0))).status == "new"
    assert run(broker.balances())["BTC"] == (0.0, 2.0)
    feed.update(bids={100.0: 1.5, 100.5: 1.0})
    fills = broker.on_book("BTC/USDT")
    assert [(f.price, f.quantity) for f in fills] == [(100.0, 1.0), (100.0, 1.0)]
    report = run(broker.query("s1", "BTC/USDT"))
    assert report is not None and report.status == "filled"
    assert run(broker.balances()) == {"BTC": (0.0, 0.0), "USDT": (pytest.approx(200.0 * (1 - FEE)), 0.0)}


def test_ioc_cancels_its_remainder_and_fok_fills_all_or_nothing() -> None:
    feed = Feed(bids={99.0: 1.0}, asks={100.0: 1.0, 102.0: 5.0})
    broker = paper(feed)
    fok = run(broker.submit(buy("f1", 2.0, 100.5, "FOK")))
    assert (fok.status, fok.filled_quantity, fok.fills) == ("cancelled", 0.0, ())
    ioc = run(broker.submit(buy("i1", 2.0, 100.5, "IOC")))
    assert (ioc.status, ioc.filled_quantity) == ("cancelled", 1.0)
    assert run(broker.open_orders(["BTC/USDT"])) == []


def test_submitting_a_known_client_id_never_fills_twice() -> None:
    feed = Feed(bids={99.0: 1.0}, asks={100.0: 10.0})
    broker = paper(feed)
    first = run(broker.submit(buy("same", 1.0)))
    second = run(broker.submit(buy("same", 1.0)))
    assert second == first
    assert len(run(broker.fills_since(["BTC/USDT"], 0))) == 1
    assert run(broker.balances())["BTC"] == (1.0, 0.0)


def test_refusals_insufficient_funds_and_a_book_out_of_sync() -> None:
    feed = Feed(bids={99.0: 1.0}, asks={100.0: 10.0})
    broker = paper(feed, balances={"USDT": 150.0})
    poor = run(broker.submit(buy("b1", 2.0)))
    assert (poor.status, poor.reason) == ("rejected", "insufficient balance")
    assert run(broker.submit(sell("s1", 0.1))).status == "rejected"  # no BTC
    feed.book.check(NOW + 60_000)  # silent for a minute: stale, resync needed
    assert not feed.book.in_sync
    market = run(broker.submit(buy("b2", 0.1)))
    assert (market.status, market.reason) == ("rejected", "book not in sync")
    resting = run(broker.submit(buy("b3", 0.1, 99.5)))  # GTC rests until the book is back
    assert resting.status == "new"
    with pytest.raises(BrokerError, match="no book for ETH/USDT"):
        run(broker.submit(OrderRequest("e1", "ETH/USDT", "buy", 1.0)))


def test_a_cancel_while_the_order_travels_stops_it() -> None:
    feed = Feed(bids={99.0: 1.0}, asks={100.0: 10.0})
    in_flight = asyncio.Event()
    release = asyncio.Event()

    async def latency(seconds: float) -> None:
        in_flight.set()
        await release.wait()

    broker = paper(feed, latency_ms=5.0, sleep=latency)

    async def scenario() -> tuple[OrderReport, OrderReport]:
        submitted = asyncio.ensure_future(broker.submit(buy("b1", 1.0)))
        await in_flight.wait()
        broker.latency_ms = 0.0  # the cancel itself arrives at once
        cancelled = await broker.cancel("b1", "BTC/USDT")
        release.set()
        return cancelled, await submitted

    cancelled, final = asyncio.run(scenario())
    assert cancelled.status == final.status == "cancelled"
    assert final.fills == () and run(broker.fills_since(["BTC/USDT"], 0)) == []
    assert run(broker.query("never", "BTC/USDT")) is None
