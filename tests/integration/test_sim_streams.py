"""The venues' Binance-format websocket streams over real sockets: ccxt.pro, raw clients, controls."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tradeflow.execution.book import DepthSnapshot, DepthUpdate, LocalOrderBook
from tradeflow.execution.exchange import create_pro_exchange
from tradeflow.simulator import ClusterSpec, VenueCluster, control

from .conftest import SYMBOLS, venue

Levels = dict[float, float]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    spec = ClusterSpec(world_seed=7, symbols=SYMBOLS, venues=[venue("streams", 11)])
    with VenueCluster(spec).start(mode="thread") as cluster:
        yield cluster.base_urls["streams"]


def ws_url(base_url: str, path: str) -> str:
    return base_url.replace("http://", "ws://") + path


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``predicate`` holds; fail after ``timeout`` seconds (a hang guard, not a timing check)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), 10)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    result: dict[str, Any] = json.loads(message.data)
    return result


async def depth_messages(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    while True:
        data = await receive(ws)
        if data.get("e") == "depthUpdate":
            yield data


async def closing(ws: aiohttp.ClientWebSocketResponse) -> int:
    """Read what was already on its way; return the close code the server sent."""
    while True:
        message = await asyncio.wait_for(ws.receive(), 10)
        if message.type != aiohttp.WSMsgType.TEXT:
            assert message.type == aiohttp.WSMsgType.CLOSE, message
            return int(message.data)


def levels_of(book: LocalOrderBook) -> tuple[Levels, Levels]:
    bids, asks = book.top(100_000)
    return dict(bids), dict(asks)


def snapshot_levels(snapshot: DepthSnapshot) -> tuple[Levels, Levels]:
    return dict(snapshot.bids), dict(snapshot.asks)


def test_ccxt_pro_watchers_work_unchanged(base_url: str) -> None:
    async def main() -> None:
        exchange = create_pro_exchange("binance", base_url=base_url)
        try:
            book = await exchange.watch_order_book("BTC/USDT")
            first_nonce = book["nonce"]
            for _ in range(3):
                book = await exchange.watch_order_book("BTC/USDT")
            assert book["nonce"] > first_nonce
            assert book["bids"][0][0] < book["asks"][0][0]
            assert len(book["bids"]) > 100
            trades = await exchange.watch_trades("ETH/USDT")
            assert trades[-1]["symbol"] == "ETH/USDT"
            assert trades[-1]["side"] in ("buy", "sell")
            assert trades[-1]["price"] > 0
            ticker = await exchange.watch_ticker("BTC/USDT", {"name": "ticker"})
            assert ticker["info"]["e"] == "24hrTicker"
            assert ticker["bid"] < ticker["ask"]
            assert ticker["bidVolume"] > 0
            assert ticker["askVolume"] > 0
            candles = await exchange.watch_ohlcv("BTC/USDT", "1m")
            open_time, open_, high, low, close, volume = candles[-1]
            assert open_time % 60_000 == 0
            assert low <= min(open_, close) <= max(open_, close) <= high
            assert volume >= 0
        finally:
            await exchange.close()

    asyncio.run(main())


def test_rest_snapshot_and_diffs_reproduce_the_venue_book_at_an_update_id(base_url: str) -> None:
    async def main() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(base_url, "/ws/btcusdt@depth@100ms")) as ws,
        ):
            book = LocalOrderBook("BTC/USDT")
            copies: dict[int, tuple[Levels, Levels]] = {}
            stream = depth_messages(ws)
            first = await anext(stream)
            book.on_update(DepthUpdate.from_binance(first))
            async with session.get(f"{base_url}/api/v3/depth?symbol=BTCUSDT&limit=5000") as response:
                snapshot = DepthSnapshot.from_binance(await response.json())
            book.on_snapshot(snapshot)
            for _ in range(100):
                if book.in_sync:
                    break
                book.on_update(DepthUpdate.from_binance(await anext(stream)))
            assert book.last_update_id is not None
            copies[book.last_update_id] = levels_of(book)
            # A second snapshot, taken while the stream runs: the book must pass through it exactly.
            async with session.get(f"{base_url}/api/v3/depth?symbol=BTCUSDT&limit=5000") as response:
                later = DepthSnapshot.from_binance(await response.json())
            while book.last_update_id < later.last_update_id:
                events = book.on_update(DepthUpdate.from_binance(await anext(stream)))
                assert book.in_sync, events
                assert book.last_update_id is not None
                copies[book.last_update_id] = levels_of(book)
        assert snapshot.last_update_id < later.last_update_id
        assert later.last_update_id in copies
        assert copies[later.last_update_id] == snapshot_levels(later)

    asyncio.run(main())


def test_combined_streams_and_subscription_methods(base_url: str) -> None:
    async def main() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(base_url, "/stream?streams=ethusdt@trade/ethusdt@depth@100ms")) as ws,
        ):
            await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
            seen: set[str] = set()
            while True:
                data = await receive(ws)
                if data.get("id") == 1:
                    assert data["result"] == ["ethusdt@depth@100ms", "ethusdt@trade"]
                    break
            await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@bookTicker"],"id":2}')
            await ws.send_str('{"method":"UNSUBSCRIBE","params":["ethusdt@depth@100ms"],"id":3}')
            replies: dict[int, Any] = {}
            while len(replies) < 2 or "btcusdt@bookTicker" not in seen:
                data = await receive(ws)
                if "id" in data:
                    replies[data["id"]] = data
                else:
                    assert set(data) == {"stream", "data"}
                    seen.add(data["stream"])
            assert replies == {2: {"result": None, "id": 2}, 3: {"result": None, "id": 3}}
            await ws.send_str('{"method":"SUBSCRIBE","params":["dogeusdt@trade"],"id":4}')
            while True:
                data = await receive(ws)
                if data.get("id") == 4:
                    assert data["error"]["code"] == 2
                    break

    asyncio.run(main())


def test_gap_control_makes_the_next_diff_skip_update_ids(base_url: str) -> None:
    async def main() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(base_url, "/ws/ethusdt@depth@100ms")) as ws,
        ):
            stream = depth_messages(ws)
            previous = await anext(stream)
            await asyncio.to_thread(control.gap, base_url, "ETH/USDT", 9)
            skipped = 0
            async for message in stream:
                jump = message["U"] - (previous["u"] + 1)
                previous = message
                if jump:
                    skipped += jump
                    break
            assert skipped == 9
            after = await anext(stream)
            assert after["U"] == previous["u"] + 1

    asyncio.run(main())


def test_stall_control_holds_diffs_while_the_connection_stays_open(base_url: str) -> None:
    async def main() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(base_url, "/ws/btcusdt@depth@100ms/btcusdt@ticker")) as ws,
        ):
            previous = None
            while previous is None:
                data = await receive(ws)
                if data.get("e") == "depthUpdate":
                    previous = data
            await asyncio.to_thread(control.stall, base_url, "BTCUSDT", 1.5)
            stalled_at = (await asyncio.to_thread(control.stream_status, base_url))["update_ids"]["BTCUSDT"]
            kinds: list[str] = []
            while True:
                data = await receive(ws)
                kinds.append(data["e"])
                if data["e"] != "depthUpdate":
                    continue
                if data["u"] <= stalled_at:  # published before the stall began, still on its way
                    previous = data
                    continue
                break
        # The held changes arrive as one diff that continues the stream, 1.5 s of venue time later.
        assert data["U"] == previous["u"] + 1
        assert data["E"] - previous["E"] >= 1_500
        assert "24hrTicker" in kinds  # other streams kept flowing on the same connection

    asyncio.run(main())


def test_disconnect_control_closes_the_chosen_connections(base_url: str) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            btc = await session.ws_connect(ws_url(base_url, "/ws/btcusdt@trade"))
            eth = await session.ws_connect(ws_url(base_url, "/ws/ethusdt@trade"))
            await receive(btc)
            await receive(eth)
            closed = await asyncio.to_thread(control.disconnect, base_url, "BTC/USDT")
            assert closed == 1
            assert await closing(btc) == 1001
            assert (await receive(eth))["e"] == "trade"
            assert await asyncio.to_thread(control.disconnect, base_url) >= 1
            assert await closing(eth) == 1001
            await btc.close()
            await eth.close()
        status = await asyncio.to_thread(control.stream_status, base_url)
        assert status["running"]
        assert status["connections"] == 0

    asyncio.run(main())


def test_controls_and_streams_ignore_the_weight_budget(
    start_venues: Callable[..., dict[str, str]],
) -> None:
    url = start_venues(venue("tight", 5, weight_limit_per_minute=30))["tight"]
    with urllib.request.urlopen(f"{url}/api/v3/exchangeInfo", timeout=10):
        pass
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/v3/exchangeInfo", timeout=10)
    assert refused.value.code == 429
    control.gap(url, "BTCUSDT", 3)
    control.stall(url, "BTCUSDT", 0.1)
    assert control.stream_status(url)["running"]

    async def main() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(ws_url(url, "/ws/btcusdt@trade")) as ws,
        ):
            assert (await receive(ws))["e"] == "trade"

    asyncio.run(main())


def test_control_rejects_unknown_symbols(base_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        control.gap(base_url, "DOGEUSDT", 3)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["code"] == -1121
