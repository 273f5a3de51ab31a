"""Ingestion through the real ccxt client, over real HTTP, against local simulated venues."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.integration.conftest import SYMBOLS, venue
from tradeflow.ingest import RetryPolicy, ingest_candle_series, snapshot_market
from tradeflow.simulator import ClusterSpec, SimulatedVenue
from tradeflow.sources.base import PermanentSourceError, UnknownSymbolError
from tradeflow.sources.ccxt_source import CcxtMarketDataSource, create_exchange, rebase_urls
from tradeflow.storage.lake import decode_parquet
from tradeflow.storage.objectstore import LocalObjectStore
from tradeflow.timeframes import HOUR_MS, MINUTE_MS, floor_ms

FAST_RETRIES = RetryPolicy(max_attempts=6, base_delay_seconds=0.01, max_delay_seconds=0.05)


def source(venue_id: str, url: str, timeout_seconds: float = 5.0) -> CcxtMarketDataSource:
    return CcxtMarketDataSource(
        venue_id, create_exchange("binance", base_url=url, timeout_seconds=timeout_seconds)
    )


def stored_rows(store: LocalObjectStore, result) -> np.ndarray:
    tables = [decode_parquet(store.get(o["key"])) for o in result.objects]
    return np.vstack([np.column_stack([t.column(c).to_numpy() for c in t.column_names]) for t in tables])


def test_rebase_urls_keeps_paths_and_replaces_origins():
    urls = {
        "public": "https://api.binance.com/api/v3",
        "sapi": {"x": "https://api.binance.com/sapi/v1"},
        "n": 3,
    }
    rebased = rebase_urls(urls, "http://127.0.0.1:9001")
    assert rebased == {
        "public": "http://127.0.0.1:9001/api/v3",
        "sapi": {"x": "http://127.0.0.1:9001/sapi/v1"},
        "n": 3,
    }


def test_a_series_is_stored_exactly_as_the_venue_serves_its_closed_candles(start_venues, tmp_path):
    urls = start_venues(venue("a", 1))
    store = LocalObjectStore(tmp_path)
    end = int(time.time() * 1000)
    start = end - 2500 * MINUTE_MS  # three pages of 1000
    result = ingest_candle_series(
        source("a", urls["a"]),
        store,
        symbol="BTC/USDT",
        timeframe="1m",
        start=start,
        end=end,
        page_limit=1000,
        policy=FAST_RETRIES,
    )
    assert result.status == "stored" and result.pages == 3 and result.holes == 0 and result.retries == 0
    rows = stored_rows(store, result)
    reference = SimulatedVenue(
        ClusterSpec(world_seed=7, symbols=SYMBOLS, venues=[venue("a", 1)]), venue("a", 1)
    )
    last_closed = floor_ms(end, MINUTE_MS) - MINUTE_MS
    expected = reference.klines(
        "BTC/USDT",
        "1m",
        start - start % MINUTE_MS + (MINUTE_MS if start % MINUTE_MS else 0),
        last_closed,
        now_ms=end,
    )
    assert rows.shape == expected.shape == (result.candles, 6)
    np.testing.assert_array_equal(rows, expected)
    assert rows[-1, 0] + MINUTE_MS <= end  # the forming candle was not stored
    assert len(np.unique(rows[:, 0])) == len(rows)


def test_hourly_candles_agree_with_minutes_across_the_pipeline(start_venues, tmp_path):
    urls = start_venues(venue("a", 1))
    store = LocalObjectStore(tmp_path)
    end = floor_ms(int(time.time() * 1000), HOUR_MS)
    src = source("a", urls["a"])
    hours = ingest_candle_series(
        src,
        store,
        symbol="ETH/USDT",
        timeframe="1h",
        start=end - 5 * HOUR_MS,
        end=end,
        page_limit=1000,
        policy=FAST_RETRIES,
    )
    minutes = ingest_candle_series(
        src,
        LocalObjectStore(tmp_path / "m"),
        symbol="ETH/USDT",
        timeframe="1m",
        start=end - 5 * HOUR_MS,
        end=end,
        page_limit=1000,
        policy=FAST_RETRIES,
    )
    h = stored_rows(store, hours)
    m = stored_rows(LocalObjectStore(tmp_path / "m"), minutes).reshape(5, 60, 6)
    np.testing.assert_allclose(h[:, 2], m[:, :, 2].max(axis=1))  # high
    np.testing.assert_allclose(h[:, 3], m[:, :, 3].min(axis=1))  # low
    np.testing.assert_allclose(h[:, 4], m[:, -1, 4])  # close


def test_a_chaos_venue_yields_the_same_objects_as_a_clean_one(start_venues, tmp_path):
    # Same seed, so the same prices; one venue fails requests in every transport way.
    urls = start_venues(venue("clean", 5), venue("chaos", 5, "chaos"))
    end = floor_ms(int(time.time() * 1000), HOUR_MS)
    results = {}
    for venue_id in ("clean", "chaos"):
        store = LocalObjectStore(tmp_path / venue_id)
        # A 1 s client timeout, so the simulator's 3 s hangs are real timeouts.
        results[venue_id] = ingest_candle_series(
            source(venue_id, urls[venue_id], timeout_seconds=1.0),
            store,
            symbol="BTC/USDT",
            timeframe="1m",
            start=end - 8000 * MINUTE_MS,
            end=end,
            page_limit=1000,
            policy=FAST_RETRIES,
        )
    clean, chaos = results["clean"], results["chaos"]
    assert chaos.status == clean.status == "stored"
    assert chaos.retries > 0 and clean.retries == 0
    assert [o["sha256"] for o in chaos.objects] == [o["sha256"] for o in clean.objects]


def test_a_down_venue_fails_with_the_reason_after_retries(start_venues, tmp_path):
    urls = start_venues(venue("gone", 3, "down"))
    end = int(time.time() * 1000)
    result = ingest_candle_series(
        source("gone", urls["gone"]),
        LocalObjectStore(tmp_path),
        symbol="BTC/USDT",
        timeframe="1m",
        start=end - 100 * MINUTE_MS,
        end=end,
        page_limit=1000,
        policy=RetryPolicy(max_attempts=3, base_delay_seconds=0.01),
    )
    assert result.status == "failed" and result.objects == []
    assert "gave up after 3 attempts" in result.error and "gone" in result.error


def test_an_unknown_symbol_lists_what_the_venue_has(start_venues):
    urls = start_venues(venue("a", 1))
    with pytest.raises(
        UnknownSymbolError, match=r"'DOGE/USDT' is not listed; it lists 2 symbols: BTC/USDT, ETH/USDT"
    ):
        source("a", urls["a"]).require_symbol("DOGE/USDT")


def test_an_unknown_exchange_id_suggests_close_ones():
    with pytest.raises(PermanentSourceError, match="unknown ccxt exchange id; close matches: binance"):
        create_exchange("binanse")


def test_order_book_and_new_trades_are_stored(start_venues, tmp_path):
    urls = start_venues(venue("a", 1))
    store = LocalObjectStore(tmp_path)
    result = snapshot_market(
        source("a", urls["a"]),
        store,
        symbol="BTC/USDT",
        depth=20,
        trades_limit=100,
        last_trade_timestamp=None,
        policy=FAST_RETRIES,
    )
    assert result.status == "stored" and result.book_levels == 40 and result.trades == 100
    book = decode_parquet(store.get(next(o["key"] for o in result.objects if o["dataset"] == "order_books")))
    bids = [
        p
        for s, p in zip(book.column("side").to_pylist(), book.column("price").to_pylist(), strict=True)
        if s == "bid"
    ]
    asks = [
        p
        for s, p in zip(book.column("side").to_pylist(), book.column("price").to_pylist(), strict=True)
        if s == "ask"
    ]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    trades = decode_parquet(store.get(next(o["key"] for o in result.objects if o["dataset"] == "trades")))
    newest = max(trades.column("timestamp").to_pylist())
    again = snapshot_market(
        source("a", urls["a"]),
        store,
        symbol="BTC/USDT",
        depth=0,
        trades_limit=100,
        last_trade_timestamp=newest,
        policy=FAST_RETRIES,
    )
    assert again.trades < 100  # only trades newer than the stored ones


def test_a_crash_before_the_manifest_leaves_nothing_visible_and_the_rerun_adopts_the_objects(
    start_venues, tmp_path
):
    from tradeflow.ingest import stored_object
    from tradeflow.storage.lake import publish_manifest, read_state

    urls = start_venues(venue("a", 1))
    store = LocalObjectStore(tmp_path)
    end = floor_ms(int(time.time() * 1000), HOUR_MS)
    window = {"symbol": "BTC/USDT", "timeframe": "1m", "start": end - 1500 * MINUTE_MS, "end": end}
    crashed = ingest_candle_series(
        source("a", urls["a"]), store, page_limit=1000, policy=FAST_RETRIES, **window
    )
    assert crashed.objects_written > 0
    assert read_state(store).series == {}  # the run died here: nothing is visible

    rerun = ingest_candle_series(
        source("a", urls["a"]), store, page_limit=1000, policy=FAST_RETRIES, **window
    )
    assert rerun.objects_written == 0  # the same bytes were already there
    manifest = publish_manifest(store, read_state(store), [stored_object(o) for o in rerun.objects],
                                created_at=1, config_hash="h", run={})  # fmt: skip
    assert manifest is not None
    assert read_state(store).last_timestamp("a|BTC/USDT|1m") == end - MINUTE_MS


def test_a_dirty_venues_holes_are_reported_not_patched(start_venues, tmp_path):
    urls = start_venues(venue("dirty", 9, "dirty"))
    store = LocalObjectStore(tmp_path)
    end = floor_ms(int(time.time() * 1000), HOUR_MS)
    result = ingest_candle_series(
        source("dirty", urls["dirty"]), store, symbol="ETH/USDT", timeframe="1m",
        start=end - 5 * 1440 * MINUTE_MS, end=end, page_limit=1000, policy=FAST_RETRIES,
    )  # fmt: skip
    rows = stored_rows(store, result)
    assert result.holes > 0 and result.candles == len(rows) == 5 * 1440 - result.holes
    gaps = np.diff(rows[:, 0]) // MINUTE_MS
    assert int((gaps - 1).sum()) == result.holes  # every missing minute is still missing in storage
