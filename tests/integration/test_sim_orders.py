"""The unmodified ccxt.binance client places, queries and cancels orders at a simulated venue.

Signed requests go over real HTTP through the venue's middleware; the venue matches them
against its live book. Raw requests check the signature and timestamp rules ccxt never breaks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import ccxt
import pytest

from tradeflow.simulator import VenueSpec, control_orders
from tradeflow.sources.ccxt_source import DEFAULT_OPTIONS, rebase_urls

KEY, SECRET = "tradeflow-sim-key", "tradeflow-sim-secret"


def binance(base_url: str, *, key: str = KEY, secret: str = SECRET) -> Any:
    exchange = ccxt.binance(
        {
            "apiKey": key,
            "secret": secret,
            # With credentials, binance also loads margin pairs from /sapi, which venues do not serve.
            "options": {**DEFAULT_OPTIONS["binance"], "fetchMargins": False},
            "timeout": 5_000,
            "enableRateLimit": False,
        }
    )
    exchange.urls["api"] = rebase_urls(exchange.urls["api"], base_url)
    return exchange


def raw_request(
    base_url: str,
    method: str,
    path: str,
    params: dict[str, Any],
    *,
    key: str | None = KEY,
    secret: str = SECRET,
    timestamp_ms: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send a signed request the way Binance documents it; return (HTTP status, JSON body)."""
    query = urllib.parse.urlencode({**params, "timestamp": timestamp_ms or int(time.time() * 1000)})
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    url = f"{base_url}{path}?{query}&signature={signature}"
    request = urllib.request.Request(url, method=method, headers={"X-MBX-APIKEY": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def venue(start_venues: Callable[..., dict[str, str]]) -> str:
    urls = start_venues(VenueSpec(id="a", seed=3, initial_balances={"USDT": 50_000.0, "ETH": 2.0}))
    return urls["a"]


def test_limit_order_rests_is_found_by_client_id_and_cancelled(venue: str) -> None:
    exchange = binance(venue)
    bid = exchange.fetch_order_book("BTC/USDT", 5)["bids"][0][0]
    price = round(bid * 0.9, 2)  # far below the market: it rests
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.1, price, {"newClientOrderId": "rest-1"})
    assert (placed["status"], placed["clientOrderId"], placed["filled"]) == ("open", "rest-1", 0.0)
    balance = exchange.fetch_balance()
    assert balance["USDT"]["used"] == pytest.approx(price * 0.1 * 1.001)
    assert balance["USDT"]["free"] == pytest.approx(50_000.0 - price * 0.1 * 1.001)
    found = exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "rest-1"})
    assert (found["id"], found["status"], found["price"], found["amount"]) == (
        placed["id"],
        "open",
        price,
        0.1,
    )
    assert [o["clientOrderId"] for o in exchange.fetch_open_orders("BTC/USDT")] == ["rest-1"]
    cancelled = exchange.cancel_order(None, "BTC/USDT", {"origClientOrderId": "rest-1"})
    assert (cancelled["id"], cancelled["status"]) == (placed["id"], "canceled")
    assert exchange.fetch_open_orders("BTC/USDT") == []
    assert exchange.fetch_order(placed["id"], "BTC/USDT")["status"] == "canceled"
    assert exchange.fetch_balance()["USDT"] == {"free": 50_000.0, "used": 0.0, "total": 50_000.0}


def test_market_orders_fill_against_the_book_and_show_in_trades_and_balances(venue: str) -> None:
    exchange = binance(venue)
    bought = exchange.create_order("BTC/USDT", "market", "buy", 0.05, None, {"newClientOrderId": "mkt-1"})
    assert (bought["status"], bought["filled"]) == ("closed", 0.05)
    assert bought["fee"]["currency"] == "USDT"
    assert bought["fee"]["cost"] == pytest.approx(bought["cost"] * 0.001)
    sold = exchange.create_order("ETH/USDT", "market", "sell", 1.5)
    assert (sold["status"], sold["filled"]) == ("closed", 1.5)
    trades = exchange.fetch_my_trades("BTC/USDT")
    assert {t["order"] for t in trades} == {bought["id"]}
    assert sum(t["amount"] for t in trades) == pytest.approx(0.05)
    assert all(t["takerOrMaker"] == "taker" and t["side"] == "buy" for t in trades)
    balance = exchange.fetch_balance()
    assert balance["BTC"]["total"] == pytest.approx(0.05)
    assert balance["ETH"]["total"] == pytest.approx(0.5)
    spent = bought["cost"] * 1.001 - sold["cost"] * 0.999
    assert balance["USDT"]["total"] == pytest.approx(50_000.0 - spent)
    every = exchange.fetch_orders("BTC/USDT")
    assert [o["clientOrderId"] for o in every] == ["mkt-1"]
    received = control_orders.received_orders(venue)
    assert [(o["symbol"], o["side"], o["status"]) for o in received] == [
        ("BTCUSDT", "BUY", "FILLED"),
        ("ETHUSDT", "SELL", "FILLED"),
    ]
    assert received[0]["clientOrderId"] == "mkt-1" and len(received[0]["fills"]) == len(trades)


def test_refusals_surface_as_ccxt_exceptions(venue: str) -> None:
    exchange = binance(venue)
    exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "once"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "once"})
    with pytest.raises(ccxt.InsufficientFunds):
        exchange.create_order("BTC/USDT", "market", "buy", 5.0)
    with pytest.raises(ccxt.OrderNotFound):
        exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "never-sent"})
    with pytest.raises(ccxt.OrderNotFound):
        exchange.cancel_order(None, "BTC/USDT", {"origClientOrderId": "once"})  # already filled
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):  # ccxt rounds; a raw call does not
        exchange.privatePostOrder(
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.01",
                "price": "100.001",
            }
        )
    rejections = control_orders.venue_orders(venue)["rejections"]
    assert [r["code"] for r in rejections] == [-2010, -2010, -1013]


def test_bad_credentials_and_stale_timestamps_are_refused(venue: str) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        binance(venue, secret="wrong").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        binance(venue, key="someone-else").fetch_balance()
    assert raw_request(venue, "GET", "/api/v3/account", {}, key=None) == (
        401,
        {"code": -2014, "msg": "API-key format invalid."},
    )
    stale = int(time.time() * 1000) - 60_000
    status, body = raw_request(venue, "GET", "/api/v3/account", {"recvWindow": 5000}, timestamp_ms=stale)
    assert (status, body["code"]) == (400, -1021)
    status, body = raw_request(venue, "GET", "/api/v3/account", {})
    assert (
        status == 200 and {"asset": "ETH", "free": "2.00000000", "locked": "0.00000000"} in body["balances"]
    )
    assert raw_request(venue, "GET", "/api/v3/order", {"symbol": "BTCUSDT"})[1]["code"] == -1102


def test_order_faults_accept_or_refuse_as_asked(venue: str) -> None:
    exchange = binance(venue)
    control_orders.inject_fault(venue, "reject")
    with pytest.raises(ccxt.OperationFailed):
        exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "f-1"})
    assert control_orders.received_orders(venue) == []  # refused before acceptance
    assert control_orders.inject_fault(venue, "error_after_accept", count=2) == ["error_after_accept"] * 2
    with pytest.raises(ccxt.ExchangeNotAvailable):
        exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "f-1"})
    assert [o["clientOrderId"] for o in control_orders.received_orders(venue)] == ["f-1"]
    control_orders.clear_faults(venue)
    assert exchange.create_order("BTC/USDT", "market", "buy", 0.01)["status"] == "closed"
