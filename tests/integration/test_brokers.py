"""The ccxt broker against a simulated venue: idempotent placement under lost answers, and the rest.

THE IDEMPOTENCY TEST of the streaming-execution issue: the venue accepts an order and then the
answer is lost (the client times out, or gets an HTTP 503). The broker must find the order by
its client id and adopt it: exactly one order at the venue, the report is that order, and the
placement was sent once. When the venue refused the order before accepting it, the broker
finds nothing and sends it again, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from tradeflow.execution.brokers import OrderReport, OrderRequest, client_order_id
from tradeflow.execution.ccxt_broker import CcxtBroker
from tradeflow.execution.exchange import create_pro_exchange
from tradeflow.simulator import VenueSpec, control_orders

T = TypeVar("T")
TIMEOUT_SECONDS = 1.0


def broker(base_url: str) -> CcxtBroker:
    exchange = create_pro_exchange(
        "binance",
        base_url=base_url,
        api_key="tradeflow-sim-key",
        secret="tradeflow-sim-secret",
        timeout_seconds=TIMEOUT_SECONDS,
        options={"fetchMargins": False},
    )
    return CcxtBroker(exchange, backoff_seconds=0.05, seed=1)


def run(scenario: Callable[[CcxtBroker], Awaitable[T]], base_url: str) -> T:
    async def main() -> T:
        subject = broker(base_url)
        try:
            return await scenario(subject)
        finally:
            await subject.close()

    return asyncio.run(main())


@pytest.fixture
def venue(start_venues: Callable[..., dict[str, str]]) -> str:
    return start_venues(VenueSpec(id="a", seed=5))["a"]


def orders_with(base_url: str, cid: str) -> list[dict[str, Any]]:
    return [o for o in control_orders.received_orders(base_url) if o["clientOrderId"] == cid]


@pytest.mark.parametrize("fault", ["timeout_after_accept", "error_after_accept"])
def test_an_order_whose_answer_is_lost_is_adopted_never_sent_twice(venue: str, fault: str) -> None:
    control_orders.inject_fault(venue, fault, count=1, seconds=3 * TIMEOUT_SECONDS)  # type: ignore[arg-type]
    request = OrderRequest(client_order_id("session-1", "BTC/USDT", 1), "BTC/USDT", "buy", 0.02)

    async def scenario(subject: CcxtBroker) -> tuple[OrderReport, int]:
        report = await subject.submit(request)
        return report, subject.create_calls[request.client_order_id]

    report, sent = run(scenario, venue)
    at_venue = orders_with(venue, request.client_order_id)
    assert len(at_venue) == 1  # exactly one order for that client id
    assert sent == 1  # the broker found it by query and did not send it again
    assert report.venue_order_id == str(at_venue[0]["orderId"])
    assert (report.status, report.filled_quantity) == ("filled", 0.02)
    assert sorted(f.venue_trade_id for f in report.fills) == sorted(
        str(f["id"]) for f in at_venue[0]["fills"]
    )
    assert sum(f.quantity for f in report.fills) == pytest.approx(0.02)


def test_an_order_the_venue_refused_before_accepting_is_sent_again_once(venue: str) -> None:
    control_orders.inject_fault(venue, "reject", count=1)
    request = OrderRequest(client_order_id("session-1", "BTC/USDT", 2), "BTC/USDT", "buy", 0.02)

    async def scenario(subject: CcxtBroker) -> tuple[OrderReport, int]:
        report = await subject.submit(request)
        return report, subject.create_calls[request.client_order_id]

    report, sent = run(scenario, venue)
    assert sent == 2  # the first was refused (the query found nothing), the second accepted
    assert len(orders_with(venue, request.client_order_id)) == 1
    assert report.status == "filled"


def test_resubmitting_a_decision_from_a_new_broker_adopts_the_existing_order(venue: str) -> None:
    request = OrderRequest(client_order_id("session-2", "ETH/USDT", 7), "ETH/USDT", "buy", 0.5)

    async def first(subject: CcxtBroker) -> OrderReport:
        return await subject.submit(request)

    async def again(subject: CcxtBroker) -> OrderReport:  # e.g. after a restart
        return await subject.submit(request)

    original = run(first, venue)
    repeated = run(again, venue)
    assert len(orders_with(venue, request.client_order_id)) == 1
    assert repeated.venue_order_id == original.venue_order_id
    assert (repeated.status, repeated.filled_quantity) == ("filled", 0.5)
    assert {f.venue_trade_id for f in repeated.fills} == {f.venue_trade_id for f in original.fills}


def test_resting_order_query_open_orders_cancel_and_balances(venue: str) -> None:
    async def scenario(subject: CcxtBroker) -> dict[str, Any]:
        bid = (await subject.exchange.fetch_order_book("BTC/USDT", 5))["bids"][0][0]
        price = round(bid * 0.9, 2)
        request = OrderRequest("rest-1", "BTC/USDT", "buy", 0.1, price)
        return {
            "price": price,
            "placed": await subject.submit(request),
            "queried": await subject.query("rest-1", "BTC/USDT"),
            "open": await subject.open_orders(["BTC/USDT", "ETH/USDT"]),
            "locked": await subject.balances(),
            "cancelled": await subject.cancel("rest-1", "BTC/USDT"),
            "cancelled_again": await subject.cancel("rest-1", "BTC/USDT"),
            "never": await subject.query("never-sent", "BTC/USDT"),
            "cancel_never": await subject.cancel("never-sent", "BTC/USDT"),
            "released": await subject.balances(),
        }

    seen = run(scenario, venue)
    assert seen["placed"].status == "new" and seen["placed"].venue_order_id is not None
    assert seen["queried"] == seen["placed"]
    assert [(r.client_order_id, r.status) for r in seen["open"]] == [("rest-1", "new")]
    assert seen["locked"]["USDT"][1] == pytest.approx(seen["price"] * 0.1 * 1.001)
    assert seen["cancelled"].status == "cancelled"
    assert seen["cancelled_again"].status == "cancelled"  # finished: its final report
    assert seen["never"] is None
    assert (seen["cancel_never"].status, seen["cancel_never"].reason) == ("cancelled", "not at the venue")
    assert seen["released"]["USDT"] == (100_000.0, 0.0)


def test_fills_since_maps_trades_to_client_ids_and_refusals_are_rejected(venue: str) -> None:
    async def scenario(subject: CcxtBroker) -> dict[str, Any]:
        start = await subject.exchange.fetch_time()
        bought = await subject.submit(OrderRequest("buy-1", "BTC/USDT", "buy", 0.03))
        bid = (await subject.exchange.fetch_order_book("BTC/USDT", 5))["bids"][0][0]
        too_big = await subject.submit(OrderRequest("buy-2", "BTC/USDT", "buy", 10.0, bid))
        fresh = broker(subject.exchange.urls["api"]["public"].rsplit("/api/", 1)[0])
        try:  # a new broker (as after a restart) knows no venue order ids yet
            fills = await fresh.fills_since(["BTC/USDT", "ETH/USDT"], start)
        finally:
            await fresh.close()
        return {"bought": bought, "too_big": too_big, "fills": fills, "balances": await subject.balances()}

    seen = run(scenario, venue)
    assert seen["too_big"].status == "rejected" and "InsufficientFunds" in seen["too_big"].reason
    assert len(orders_with(venue, "buy-2")) == 0
    fills = seen["fills"]
    assert {f.client_order_id for f in fills} == {"buy-1"}
    assert sorted(fills, key=lambda f: f.venue_trade_id) == sorted(
        seen["bought"].fills, key=lambda f: f.venue_trade_id
    )
    assert all(f.fee_asset == "USDT" and f.liquidity == "taker" for f in fills)
    assert seen["balances"]["BTC"] == (pytest.approx(0.03), 0.0)
