"""The unmodified ccxt.binance client against simulated venues over real HTTP.

How transport faults surface in ccxt (sync, 4.5):

* fault 429 and weight-budget 429 -> ``DDoSProtection`` (binance.handle_errors checks the status
  before the body), Retry-After readable in ``exchange.last_response_headers``;
* 5xx with a Binance JSON body (-1001) -> ``OperationFailed``; 5xx with an empty body ->
  ``ExchangeNotAvailable``; CDN-style HTML 502 page -> ``ExchangeNotAvailable``;
* timeout fault -> ``RequestTimeout`` once the client's own timeout passes; slow -> success;
* truncated JSON (HTTP 200) -> **no exception**: ccxt cannot parse it, hands the raw string to
  the parser and returns garbage (``fetch_ohlcv`` rows of ``None``, ``load_markets`` -> ``{}``,
  ``fetch_time`` -> ``None``); raw ``publicGet*`` calls return the truncated ``str``. Callers
  must validate shapes themselves;
* a down venue -> ``ExchangeNotAvailable`` (503, plain text) on every call.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt
import ccxt.async_support as accxt
import numpy as np
import pytest

from tradeflow.simulator import (
    FAULT_PROFILES,
    ClusterSpec,
    RunningCluster,
    SimulatedVenue,
    SymbolSpec,
    VenueCluster,
    VenueSpec,
)
from tradeflow.simulator.faults import (
    FaultKind,
    fault_for_attempt,
    request_key,
    variant,
)

MINUTE = 60_000

BTC = SymbolSpec(symbol="BTC/USDT", base_price=60_000.0, tick_size=0.01, step_size=0.00001)
ETH_BTC = SymbolSpec(
    symbol="ETH/BTC",
    base_price=0.05,
    tick_size=0.000001,
    step_size=0.0001,
    min_notional=0.0001,
)


def point_at(exchange: ccxt.binance, base_url: str) -> None:
    """Rewrite the origin of every API URL of ``exchange`` to ``base_url``, keeping paths."""
    origin = urlsplit(base_url)

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: rewrite(item) for key, item in value.items()}
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            parts = urlsplit(value)
            return urlunsplit((origin.scheme, origin.netloc, parts.path, parts.query, parts.fragment))
        return value

    exchange.urls["api"] = rewrite(exchange.urls["api"])


def binance(base_url: str, timeout_ms: int = 10_000) -> ccxt.binance:
    """Return a sync ccxt.binance configured as the pipeline configures it."""
    exchange = ccxt.binance(
        {
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchTradesMethod": "publicGetTrades",
            },
            "timeout": timeout_ms,
            "enableRateLimit": False,
        }
    )
    point_at(exchange, base_url)
    return exchange


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((parts.hostname or "", parts.port or 0)) == 0


@pytest.fixture(scope="module")
def cluster() -> Iterator[RunningCluster]:
    spec = ClusterSpec(
        world_seed=7,
        symbols=[BTC, ETH_BTC],
        venues=[
            VenueSpec(id="alpha", seed=11),
            VenueSpec(id="beta", seed=22, bias_bps=4.0),
        ],
    )
    with VenueCluster(spec).start("thread") as running:
        yield running


@pytest.fixture(scope="module")
def faulty() -> Iterator[RunningCluster]:
    chaos_transport, chaos_data = FAULT_PROFILES["chaos"]
    spec = ClusterSpec(
        symbols=[BTC],
        venues=[
            VenueSpec(id="chaos", seed=5, transport=chaos_transport, data=chaos_data),
            VenueSpec(id="down", seed=6, transport=FAULT_PROFILES["down"][0]),
            VenueSpec(id="tight", seed=7, weight_limit_per_minute=60),
        ],
    )
    with VenueCluster(spec).start("thread") as running:
        yield running


def _reference(running: RunningCluster, venue_id: str) -> SimulatedVenue:
    return SimulatedVenue(running.spec, running.spec.venue(venue_id))


def test_load_markets_reads_precision_and_limits_from_the_filters(
    cluster: RunningCluster,
) -> None:
    markets = binance(cluster.base_urls["alpha"]).load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/BTC"}
    btc, eth = markets["BTC/USDT"], markets["ETH/BTC"]
    assert btc["id"] == "BTCUSDT" and btc["spot"] and btc["active"]
    assert btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["amount"]["min"] == 0.00001 and btc["limits"]["cost"]["min"] == 5.0
    assert btc["limits"]["price"]["min"] == 0.01 and btc["limits"]["price"]["max"] > 60_000
    assert eth["precision"]["price"] == 0.000001 and eth["precision"]["amount"] == 0.0001
    assert eth["limits"]["cost"]["min"] == 0.0001


def test_fetch_ohlcv_paginates_3000_candles_equal_to_the_reference(
    cluster: RunningCluster,
) -> None:
    exchange = binance(cluster.base_urls["alpha"])
    exchange.load_markets()
    now = exchange.milliseconds()
    since = now - now % MINUTE - 3001 * MINUTE
    candles: list[list[float]] = []
    cursor = since
    while len(candles) < 3000:
        page = exchange.fetch_ohlcv("BTC/USDT", "1m", since=cursor, limit=1000)
        assert page, "the venue stopped serving before 3000 candles"
        candles.extend(page)
        cursor = int(page[-1][0]) + MINUTE
    got = np.array(candles[:3000], dtype=float)
    times = got[:, 0].astype(np.int64)
    assert np.all(np.diff(times) == MINUTE), "no gaps, no duplicates"
    expected = _reference(cluster, "alpha").klines("BTC/USDT", "1m", since, since + 2999 * MINUTE, now)
    np.testing.assert_array_equal(got, expected)
    # The other venue prices the same market a few bps away (bias 4 bps plus noise).
    other = np.array(
        binance(cluster.base_urls["beta"]).fetch_ohlcv("BTC/USDT", "1m", since=since, limit=1000)
    )
    gap_bps = np.log(other[:, 4] / got[:1000, 4]) * 1e4
    assert 1.0 < float(np.median(gap_bps)) < 8.0 and float(np.abs(gap_bps).max()) < 40.0


def test_order_book_trades_ticker_and_time_parse(cluster: RunningCluster) -> None:
    exchange = binance(cluster.base_urls["alpha"])
    exchange.load_markets()
    book = exchange.fetch_order_book("BTC/USDT", limit=100)
    assert len(book["bids"]) == len(book["asks"]) == 100
    assert book["bids"][0][0] < book["asks"][0][0] and isinstance(book["nonce"], int)
    trades = exchange.fetch_trades("BTC/USDT", limit=500)
    assert len(trades) == 500
    assert all(t["side"] in ("buy", "sell") and t["price"] > 0 and t["amount"] > 0 for t in trades)
    assert [t["timestamp"] for t in trades] == sorted(t["timestamp"] for t in trades)
    ticker = exchange.fetch_ticker("BTC/USDT")
    assert ticker["symbol"] == "BTC/USDT"
    assert ticker["low"] <= ticker["last"] <= ticker["high"]
    assert ticker["bid"] < ticker["ask"] and ticker["baseVolume"] > 0 and ticker["vwap"] > 0
    assert abs(ticker["last"] / book["bids"][0][0] - 1) < 0.01
    server_time = exchange.fetch_time()
    assert abs(server_time - exchange.milliseconds()) < 5_000


def test_invalid_requests_raise_ccxt_errors(cluster: RunningCluster) -> None:
    exchange = binance(cluster.base_urls["alpha"])
    exchange.load_markets()
    with pytest.raises(ccxt.BadRequest, match="-1130"):
        exchange.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "limit": 1001})
    with pytest.raises(ccxt.BadRequest):
        exchange.fetch_order_book("BTC/USDT", limit=5001)
    # fetch_ohlcv itself clamps limit to 1000 before sending, so it cannot send 1001.
    assert len(exchange.fetch_ohlcv("BTC/USDT", "1m", limit=1001)) == 1000
    with pytest.raises(ccxt.BadSymbol):
        exchange.publicGetKlines({"symbol": "DOGEUSDT", "interval": "1m"})
    with pytest.raises(ccxt.BadSymbol):
        exchange.fetch_ohlcv("DOGE/USDT", "1m")  # rejected by ccxt's own market table
    with pytest.raises(ccxt.BadRequest, match="-1120"):
        exchange.publicGetKlines({"symbol": "BTCUSDT", "interval": "7m"})


def test_weight_budget_answers_429_with_retry_after(faulty: RunningCluster) -> None:
    exchange = binance(faulty.base_urls["tight"])
    exchange.load_markets()  # weight 20 of 60
    used = []

    def spend_until_refused() -> None:
        for i in range(200):
            exchange.fetch_ohlcv("BTC/USDT", "1m", limit=5, since=1_700_000_000_000 + i * MINUTE)
            used.append(int(exchange.last_response_headers["X-MBX-USED-WEIGHT-1M"]))

    with pytest.raises(ccxt.DDoSProtection, match="-1003"):
        spend_until_refused()
    headers = exchange.last_response_headers
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) > 50
    increments = {b - a for a, b in itertools.pairwise(used) if b > a}
    assert increments <= {2}, "each klines request weighs 2 (drops are minute resets)"


def _find_fault_requests(seed: int, limit: int = 5) -> dict[FaultKind, int]:
    """Return, per fault kind, a startTime whose first klines attempt gets that fault."""
    chaos = FAULT_PROFILES["chaos"][0]
    found: dict[FaultKind, int] = {}
    first = 1_699_999_980_000  # a minute open in November 2023
    for since in range(first, first + 5000 * MINUTE, MINUTE):
        query = {
            "interval": "1m",
            "limit": str(limit),
            "symbol": "BTCUSDT",
            "startTime": str(since),
        }
        kind = fault_for_attempt(chaos, seed, request_key("GET", "/api/v3/klines", query.items()), 0)
        if kind is not None and kind not in found:
            found[kind] = since
        if len(found) == len(FaultKind):
            break
    return found


def _load_markets(exchange: ccxt.binance) -> None:
    # A chaos venue may fault exchangeInfo too; ccxt even caches {} from a truncated body.
    for _ in range(4):
        try:
            if "BTC/USDT" in exchange.load_markets(reload=True):
                return
        except ccxt.BaseError:
            continue
    raise AssertionError("exchangeInfo never got through the chaos schedule")


def test_chaos_venue_produces_each_transport_fault_as_a_ccxt_outcome(
    faulty: RunningCluster,
) -> None:
    exchange = binance(faulty.base_urls["chaos"], timeout_ms=2_000)
    _load_markets(exchange)
    requests = _find_fault_requests(seed=5)
    assert set(requests) == set(FaultKind)

    def fetch(kind: FaultKind) -> Any:
        return exchange.fetch_ohlcv("BTC/USDT", "1m", since=requests[kind], limit=5)

    with pytest.raises(ccxt.DDoSProtection):
        fetch(FaultKind.RATE_LIMIT_429)
    assert exchange.last_response_headers["Retry-After"] == "1"

    key = request_key(
        "GET",
        "/api/v3/klines",
        {
            "interval": "1m",
            "limit": "5",
            "symbol": "BTCUSDT",
            "startTime": str(requests[FaultKind.SERVER_ERROR_5XX]),
        }.items(),
    )
    json_body = variant(5, key, 0, 6) < 3
    with pytest.raises(ccxt.OperationFailed) as server_error:
        fetch(FaultKind.SERVER_ERROR_5XX)
    assert isinstance(server_error.value, ccxt.ExchangeNotAvailable) != json_body

    with pytest.raises(ccxt.ExchangeNotAvailable, match="502"):
        fetch(FaultKind.HTML_ERROR)

    started = time.monotonic()
    with pytest.raises(ccxt.RequestTimeout):
        fetch(FaultKind.TIMEOUT)
    assert time.monotonic() - started >= 1.9

    started = time.monotonic()
    assert len(fetch(FaultKind.SLOW)) == 5
    assert time.monotonic() - started >= 1.0

    # Truncated JSON raises nothing: ccxt parses the raw string's characters as candles and,
    # given `since`, filters them all out, so the page looks like "no data".
    assert fetch(FaultKind.MALFORMED_JSON) == []
    raw_since = _find_fault_requests(seed=5, limit=7)[FaultKind.MALFORMED_JSON]
    raw = exchange.publicGetKlines(
        {"symbol": "BTCUSDT", "interval": "1m", "startTime": raw_since, "limit": 7}
    )
    assert isinstance(raw, str) and raw.startswith("[[")

    # The schedule lets every request through after at most max_consecutive_faults (2) faults.
    reference = _reference(faulty, "chaos")
    for kind, since in requests.items():
        for _ in range(3):
            try:
                rows = fetch(kind)
            except ccxt.BaseError:
                continue
            if rows and None not in rows[0]:
                break
        else:
            raise AssertionError(f"{kind} never got through")
        expected = reference.klines("BTC/USDT", "1m", since, since + 4 * MINUTE, exchange.milliseconds())
        np.testing.assert_array_equal(np.array(rows, dtype=float), expected)


def test_down_venue_fails_every_call(faulty: RunningCluster) -> None:
    exchange = binance(faulty.base_urls["down"])
    with pytest.raises(ccxt.ExchangeNotAvailable):
        exchange.load_markets()
    with pytest.raises(ccxt.ExchangeNotAvailable):
        exchange.fetch_time()
    with pytest.raises(ccxt.ExchangeNotAvailable):
        exchange.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m"})


def test_thread_mode_stop_releases_ports_and_threads() -> None:
    def serving_threads() -> int:
        return sum(t.name == "venue-cluster" and t.is_alive() for t in threading.enumerate())

    before = serving_threads()
    spec = ClusterSpec(symbols=[BTC], venues=[VenueSpec(id="solo", seed=1)])
    running = VenueCluster(spec).start("thread")
    url = running.base_urls["solo"]
    assert _port_open(url) and serving_threads() == before + 1
    running.stop()
    running.stop()
    assert not _port_open(url)
    assert serving_threads() == before


def test_process_mode_starts_serves_and_stops() -> None:
    spec = ClusterSpec(
        symbols=[BTC, ETH_BTC],
        venues=[VenueSpec(id="p1", seed=3), VenueSpec(id="p2", seed=4)],
    )
    running = VenueCluster(spec).start("process")
    try:
        assert running.mode == "process" and set(running.base_urls) == {"p1", "p2"}
        exchange = binance(running.base_urls["p2"])
        exchange.load_markets()
        now = exchange.milliseconds()
        since = now - now % MINUTE - 1001 * MINUTE
        rows = np.array(exchange.fetch_ohlcv("ETH/BTC", "1m", since=since, limit=1000), dtype=float)
        expected = _reference(running, "p2").klines("ETH/BTC", "1m", since, since + 999 * MINUTE, now)
        np.testing.assert_array_equal(rows, expected)
    finally:
        running.stop()
    running.stop()
    assert not any(_port_open(url) for url in running.base_urls.values())
    assert running.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(running.pid, 0)


def test_async_ccxt_works_too(cluster: RunningCluster) -> None:

    async def main() -> Any:
        exchange = accxt.binance(
            {
                "options": {
                    "fetchMarkets": {"types": ["spot"]},
                    "fetchCurrencies": False,
                },
                "timeout": 10_000,
                "enableRateLimit": False,
            }
        )
        point_at(exchange, cluster.base_urls["beta"])
        try:
            await exchange.load_markets()
            return await exchange.fetch_ohlcv("BTC/USDT", "1h", limit=24)
        finally:
            await exchange.close()

    rows = np.array(asyncio.run(main()), dtype=float)
    assert len(rows) == 24
    now = int(time.time() * 1000)
    expected = _reference(cluster, "beta").klines("BTC/USDT", "1h", int(rows[0, 0]), int(rows[-2, 0]), now)
    np.testing.assert_array_equal(rows[:-1], expected)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_busy_port_fails_start_with_a_clear_error(mode: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = ClusterSpec(symbols=[BTC], venues=[VenueSpec(id="clash", seed=1, port=port)])
        with pytest.raises(RuntimeError) as failure:
            VenueCluster(spec).start(mode)  # type: ignore[arg-type]
    detail = str(failure.value) + repr(failure.value.__cause__)
    assert "Address already in use" in detail or "98" in detail
