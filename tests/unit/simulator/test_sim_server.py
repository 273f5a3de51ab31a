"""The HTTP layer of one venue, driven in-process with a controllable clock."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from tradeflow.simulator import (
    OutageWindow,
    SimulatedVenue,
    TransportFaults,
    VenueSpec,
    payloads,
)
from tradeflow.simulator.runtime import VenueRuntime
from tradeflow.simulator.server import build_app

from ._support import MINUTE, NOW_MS, make_cluster

KLINES = "/api/v3/klines"
NOW_MINUTE = NOW_MS - NOW_MS % MINUTE


class FakeClock:
    """A settable server clock."""

    def __init__(self, now: int = NOW_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _runtime(venue: VenueSpec | None = None, clock: FakeClock | None = None) -> VenueRuntime:
    spec = make_cluster(venue or VenueSpec(id="v", seed=1))
    vspec = spec.venues[0]
    return VenueRuntime(SimulatedVenue(spec, vspec), vspec, clock=clock or FakeClock())


def _run(runtime: VenueRuntime, body: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(build_app(runtime))) as client:
            await body(client)

    asyncio.run(main())


async def _json(resp: ClientResponse) -> Any:
    return json.loads(await resp.text())


def test_klines_rows_have_binance_shape_and_match_the_reference() -> None:
    rt = _runtime()

    async def body(client: TestClient[Any, Any]) -> None:
        resp = await client.get(KLINES, params={"symbol": "BTCUSDT", "interval": "1m"})
        assert resp.status == 200 and resp.content_type == "application/json"
        rows = await _json(resp)
        assert len(rows) == 500, "Binance's default limit"
        first = rows[0]
        assert len(first) == 12
        assert isinstance(first[0], int) and isinstance(first[6], int) and isinstance(first[8], int)
        assert all(isinstance(first[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))
        assert first[6] == first[0] + MINUTE - 1
        assert all(len(first[i].split(".")[1]) == 8 for i in (1, 2, 3, 4, 5))
        assert float(first[9]) <= float(first[5])
        reference = rt.venue.klines("BTC/USDT", "1m", rows[0][0], NOW_MS, NOW_MS)
        parsed = np.array([[r[0], *map(float, r[1:6])] for r in rows])
        np.testing.assert_array_equal(parsed, reference)
        assert rows[-1][0] == NOW_MINUTE

    _run(rt, body)


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        (KLINES, {"symbol": "BTCUSDT", "interval": "1m", "limit": "1001"}, 400, -1130),
        (KLINES, {"symbol": "BTCUSDT", "interval": "1m", "limit": "0"}, 400, -1130),
        (KLINES, {"symbol": "BTCUSDT", "interval": "1m", "limit": "ten"}, 400, -1100),
        (KLINES, {"symbol": "BTCUSDT", "interval": "2m"}, 400, -1120),
        (KLINES, {"symbol": "BTCUSDT", "interval": "1w"}, 400, -1120),
        (KLINES, {"symbol": "DOGEUSDT", "interval": "1m"}, 400, -1121),
        (KLINES, {"interval": "1m"}, 400, -1102),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "5001"}, 400, -1130),
        ("/api/v3/trades", {"symbol": "BTCUSDT", "limit": "1001"}, 400, -1130),
        ("/api/v3/ticker/24hr", {"symbol": "NOPE"}, 400, -1121),
        ("/api/v3/exchangeInfo", {"symbol": "NOPE"}, 400, -1121),
        ("/api/v3/avgPrice", {"symbol": "BTCUSDT"}, 404, -1000),
        ("/sapi/v1/capital/config/getall", {}, 404, -1000),
    ],
)
def test_bad_requests_get_binance_error_codes(
    path: str, params: dict[str, str], status: int, code: int
) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        resp = await client.get(path, params=params)
        assert resp.status == status
        assert resp.content_type == "application/json"
        payload = await _json(resp)
        assert payload["code"] == code and payload["msg"]
        assert int(resp.headers["X-MBX-USED-WEIGHT-1M"]) >= 1

    _run(_runtime(), body)


def test_weight_budget_refuses_with_429_and_retry_after_then_resets() -> None:
    clock = FakeClock(NOW_MINUTE + 44_500)
    rt = _runtime(VenueSpec(id="v", seed=1, weight_limit_per_minute=30), clock)

    async def body(client: TestClient[Any, Any]) -> None:
        used = []
        for _ in range(5):
            resp = await client.get("/api/v3/depth", params={"symbol": "BTCUSDT"})
            assert resp.status == 200
            used.append(int(resp.headers["X-MBX-USED-WEIGHT-1M"]))
        assert used == [5, 10, 15, 20, 25]
        resp = await client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "200"})
        assert resp.status == 429
        assert (await _json(resp))["code"] == -1003
        assert resp.headers["Retry-After"] == "16"
        assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "25"
        ok = await client.get("/api/v3/ping")  # a lighter request still fits
        assert ok.status == 200 and ok.headers["X-MBX-USED-WEIGHT-1M"] == "26"
        clock.now = NOW_MINUTE + MINUTE
        fresh = await client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "200"})
        assert fresh.status == 200 and fresh.headers["X-MBX-USED-WEIGHT-1M"] == "25"

    _run(rt, body)


def test_general_endpoints() -> None:
    rt = _runtime(VenueSpec(id="v", seed=1, weight_limit_per_minute=1234))

    async def body(client: TestClient[Any, Any]) -> None:
        assert await _json(await client.get("/api/v3/ping")) == {}
        assert await _json(await client.get("/api/v3/time")) == {"serverTime": NOW_MS}
        info = await _json(await client.get("/api/v3/exchangeInfo"))
        assert info["timezone"] == "UTC" and info["serverTime"] == NOW_MS
        weight = [r for r in info["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT"]
        assert weight == [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 1234,
            }
        ]
        assert {r["rateLimitType"] for r in info["rateLimits"]} == {
            "REQUEST_WEIGHT",
            "ORDERS",
            "RAW_REQUESTS",
        }
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
        btc = info["symbols"][0]
        assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == (
            "TRADING",
            "BTC",
            "USDT",
        )
        assert btc["permissionSets"] == [["SPOT"]] and btc["isSpotTradingAllowed"]
        filters = {f["filterType"]: f for f in btc["filters"]}
        assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
        assert filters["LOT_SIZE"]["minQty"] == "0.00001000"
        assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
        assert {
            "MARKET_LOT_SIZE",
            "PERCENT_PRICE_BY_SIDE",
            "MAX_NUM_ORDERS",
            "ICEBERG_PARTS",
        } <= set(filters)
        one = await _json(await client.get("/api/v3/exchangeInfo", params={"symbols": '["ETHUSDT"]'}))
        assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]

    _run(rt, body)


def test_depth_is_sorted_tick_aligned_and_stable_within_a_second() -> None:
    clock = FakeClock()
    rt = _runtime(clock=clock)

    async def body(client: TestClient[Any, Any]) -> None:
        params = {"symbol": "BTCUSDT", "limit": "500"}
        first = await client.get("/api/v3/depth", params=params)
        assert first.headers["X-MBX-USED-WEIGHT-1M"] == "25"
        book = await _json(first)
        bids = np.array(book["bids"], dtype=float)
        asks = np.array(book["asks"], dtype=float)
        assert len(bids) == len(asks) == 500
        assert np.all(np.diff(bids[:, 0]) < 0) and np.all(np.diff(asks[:, 0]) > 0)
        assert bids[0, 0] < asks[0, 0]
        mid = rt.venue.price_at("BTC/USDT", NOW_MS - NOW_MS % 1000)
        assert abs(mid / ((bids[0, 0] + asks[0, 0]) / 2) - 1) < 1e-3
        counts = np.concatenate([bids[:, 0], asks[:, 0]]) / 0.01
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
        assert np.all(bids[:, 1] > 0) and np.all(asks[:, 1] > 0)
        clock.now += 1
        assert await _json(await client.get("/api/v3/depth", params=params)) == book
        clock.now += 1000
        later = await _json(await client.get("/api/v3/depth", params=params))
        assert later["lastUpdateId"] > book["lastUpdateId"]
        small = await _json(await client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5"}))
        assert len(small["bids"]) == 5 and small["bids"] == later["bids"][:5]

    _run(rt, body)


def test_recent_trades_follow_the_price_path_up_to_now() -> None:
    rt = _runtime()

    async def body(client: TestClient[Any, Any]) -> None:
        trades = await _json(await client.get("/api/v3/trades", params={"symbol": "BTCUSDT"}))
        assert len(trades) == 500
        ids = [t["id"] for t in trades]
        times = [t["time"] for t in trades]
        assert ids == list(range(ids[0], ids[0] + 500)), "contiguous ids, oldest first"
        assert times == sorted(times) and times[-1] <= NOW_MS and times[0] > NOW_MS - 3_600_000
        assert set(trades[0]) == {
            "id",
            "price",
            "qty",
            "quoteQty",
            "time",
            "isBuyerMaker",
            "isBestMatch",
        }
        candles = rt.venue.klines("BTC/USDT", "1m", times[0], NOW_MINUTE - MINUTE, NOW_MS)
        by_minute = {int(r[0]): r for r in candles}
        for t in trades:
            row = by_minute.get(t["time"] - t["time"] % MINUTE)
            if row is not None:
                assert row[3] <= float(t["price"]) <= row[2]
            assert float(t["quoteQty"]) == pytest.approx(float(t["price"]) * float(t["qty"]))
        again = await _json(await client.get("/api/v3/trades", params={"symbol": "BTCUSDT"}))
        assert again == trades

    _run(rt, body)


def test_tickers_agree_with_klines() -> None:
    rt = _runtime()

    async def body(client: TestClient[Any, Any]) -> None:
        ticker = await _json(await client.get("/api/v3/ticker/24hr", params={"symbol": "BTCUSDT"}))
        assert set(ticker) >= {
            "priceChange", "priceChangePercent", "weightedAvgPrice", "prevClosePrice", "lastPrice",
            "lastQty", "bidPrice", "bidQty", "askPrice", "askQty", "openPrice", "highPrice",
            "lowPrice", "volume", "quoteVolume", "openTime", "closeTime", "firstId", "lastId", "count",
        }  # fmt: skip
        last = float(ticker["lastPrice"])
        candles = rt.venue.klines("BTC/USDT", "1m", NOW_MS - 86_400_000, NOW_MS, NOW_MS)
        assert last == candles[-1, 4]
        assert float(ticker["lowPrice"]) <= last <= float(ticker["highPrice"])
        assert float(ticker["highPrice"]) == pytest.approx(candles[:, 2].max(), rel=1e-3)
        assert float(ticker["volume"]) == pytest.approx(candles[:, 5].sum(), rel=0.01)
        assert ticker["closeTime"] - ticker["openTime"] == 86_400_000
        assert ticker["count"] == ticker["lastId"] - ticker["firstId"] + 1
        assert float(ticker["priceChange"]) == pytest.approx(last - float(ticker["openPrice"]), abs=1e-6)
        price = await _json(await client.get("/api/v3/ticker/price", params={"symbol": "BTCUSDT"}))
        assert price == {"symbol": "BTCUSDT", "price": ticker["lastPrice"]}
        everything = await _json(await client.get("/api/v3/ticker/price"))
        assert [p["symbol"] for p in everything] == ["BTCUSDT", "ETHUSDT"]

    _run(rt, body)


def _faulty(kind: str, **extra: object) -> VenueRuntime:
    faults = TransportFaults(**{kind: 1.0, "max_consecutive_faults": 1, **extra})  # type: ignore[arg-type]
    return _runtime(VenueSpec(id="v", seed=1, transport=faults))


def test_malformed_json_is_a_truncated_200_and_the_retry_is_whole() -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        params = {"symbol": "BTCUSDT", "interval": "1m", "limit": "20"}
        bad = await client.get(KLINES, params=params)
        good = await client.get(KLINES, params=params)
        assert bad.status == good.status == 200
        assert bad.content_type == "application/json"
        assert "X-MBX-USED-WEIGHT-1M" in bad.headers
        text, whole = await bad.text(), await good.text()
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        assert 0 < len(text) < len(whole) and whole.startswith(text)

    _run(_faulty("malformed_json"), body)


def test_html_error_is_a_cdn_502_page() -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        resp = await client.get("/api/v3/time")
        assert resp.status == 502 and resp.content_type == "text/html"
        assert "<HTML>" in await resp.text()
        assert (await client.get("/api/v3/time")).status == 200

    _run(_faulty("html_error"), body)


def test_server_errors_vary_status_and_body_deterministically() -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        seen = set()
        for i in range(40):
            resp = await client.get(
                "/api/v3/klines",
                params={"symbol": "BTCUSDT", "interval": "1m", "startTime": str(i)},
            )
            assert resp.status in (500, 502, 503)
            text = await resp.text()
            seen.add((resp.status, bool(text)))
            if text:
                assert json.loads(text)["code"] == -1001
        assert {s for s, _ in seen} == {500, 502, 503}
        assert {has_body for _, has_body in seen} == {True, False}

    _run(_faulty("server_error_5xx"), body)


def test_fault_429_carries_the_configured_retry_after() -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        resp = await client.get("/api/v3/ping")
        assert resp.status == 429 and resp.headers["Retry-After"] == "7"
        assert (await _json(resp))["code"] == -1003

    _run(_faulty("rate_limit_429", retry_after_seconds=7), body)


@pytest.mark.parametrize(
    ("kind", "seconds_field"),
    [("slow", "slow_seconds"), ("timeout", "timeout_seconds")],
)
def test_slow_and_timeout_delay_a_correct_answer(kind: str, seconds_field: str) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        started = time.perf_counter()
        resp = await client.get("/api/v3/time")
        delayed = time.perf_counter() - started
        assert resp.status == 200 and await _json(resp) == {"serverTime": NOW_MS}
        started = time.perf_counter()
        await client.get("/api/v3/time")
        assert delayed >= 0.3 > time.perf_counter() - started

    _run(_faulty(kind, **{seconds_field: 0.3}), body)


def test_outage_windows_follow_the_server_clock_and_down_fails_everything() -> None:
    clock = FakeClock()
    faults = TransportFaults(outages=[OutageWindow(start_seconds=60, duration_seconds=30)])
    rt = _runtime(VenueSpec(id="v", seed=1, transport=faults), clock)

    async def body(client: TestClient[Any, Any]) -> None:
        statuses = []
        for offset in (0, 59_000, 60_000, 89_999, 90_000):
            clock.now = NOW_MS + offset
            statuses.append((await client.get("/api/v3/ping")).status)
        assert statuses == [200, 200, 503, 503, 200]

    _run(rt, body)

    async def down(client: TestClient[Any, Any]) -> None:
        for path in ("/api/v3/ping", "/api/v3/exchangeInfo", KLINES):
            assert (await client.get(path)).status == 503

    _run(_runtime(VenueSpec(id="v", seed=1, transport=TransportFaults(down=True))), down)


def test_latency_is_added_to_every_request() -> None:
    rt = _runtime(VenueSpec(id="v", seed=1, latency_ms=150, latency_jitter_ms=20))

    async def body(client: TestClient[Any, Any]) -> None:
        started = time.perf_counter()
        await client.get("/api/v3/ping")
        assert time.perf_counter() - started >= 0.13

    _run(rt, body)


def test_one_1000_minute_klines_response_takes_milliseconds() -> None:
    rt = _runtime()
    venue, market = rt.venue, rt.venue.market("BTC/USDT")
    start = NOW_MINUTE - 2000 * MINUTE
    venue.query_klines("BTC/USDT", "1m", start_ms=start, end_ms=None, limit=1000, now_ms=NOW_MS)
    timings = []
    for i in range(30):
        began = time.perf_counter()
        candles = venue.query_klines(
            "BTC/USDT",
            "1m",
            start_ms=start + i * MINUTE,
            end_ms=None,
            limit=1000,
            now_ms=NOW_MS,
        )
        body = payloads.klines(candles, market, MINUTE)
        timings.append(time.perf_counter() - began)
    assert len(json.loads(body)) == 1000
    # A few ms on a laptop; the bound is loose so a busy CI box does not flake.
    assert statistics.median(timings) < 0.025
