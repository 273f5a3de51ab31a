"""The ingest-market-data flow, run for real under Prefect against local venues."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.ingest import ingest_market_data
from tradeflow.storage.lake import content_hashes, read_series, read_state
from tradeflow.storage.objectstore import LocalObjectStore, open_store

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def artifacts(key: str):
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_a_run_stores_every_series_and_a_rerun_is_up_to_date(write_config, tmp_path):
    config = write_config()
    first = ingest_market_data(config_path=config)
    series = first["series"]
    assert len(series) == 3 * 3 * 2
    assert {s["status"] for s in series} == {"stored"}
    assert all(s["holes"] == 0 and s["retries"] == 0 for s in series)
    one_minute = [s for s in series if s["timeframe"] == "1m"]
    assert all(s["candles"] == 1440 for s in one_minute)  # one day of closed 1m candles
    assert first["manifest"]["sequence"] == 1

    store = LocalObjectStore(tmp_path / "lake")
    state = read_state(store)
    for venue in ("sim-alpha", "sim-beta", "sim-gamma"):
        for symbol in SYMBOLS:
            table = read_series(store, state, f"{venue}|{symbol}|1h")
            assert table.num_rows == 72  # three days of hourly candles
    books = [k for k in state.series if k.startswith("order_books:")]
    assert len(books) == 9

    second = ingest_market_data(config_path=config)
    assert {s["status"] for s in second["series"]} == {"up to date"}
    assert sum(s["candles"] for s in second["series"]) == 0
    # Only the new trades and book snapshots are stored: no candle object was written again.
    after = read_state(store)
    candle_keys = [k for k in after.series if ":" not in k]
    assert content_hashes(after, candle_keys) == content_hashes(state, candle_keys)

    table = artifacts("ingest-series")
    assert table, "the flow publishes a table artifact"
    summary = artifacts("ingest-summary")
    assert "Up to date" in summary[0].data or "Stored" in summary[0].data


def test_chaos_venues_store_exactly_what_clean_venues_store(write_config, tmp_path):
    clean = ingest_market_data(config_path=write_config("clean.toml", lake=str(tmp_path / "clean")))
    chaos = ingest_market_data(
        config_path=write_config("chaos.toml", lake=str(tmp_path / "chaos"), profile="chaos")
    )
    assert sum(s["retries"] for s in chaos["series"]) > 0
    assert {s["status"] for s in chaos["series"]} == {"stored"}
    clean_state = read_state(LocalObjectStore(tmp_path / "clean"))
    chaos_state = read_state(LocalObjectStore(tmp_path / "chaos"))
    candle_keys = [k for k in clean_state.series if ":" not in k]
    assert len(candle_keys) == 18
    assert content_hashes(chaos_state, candle_keys) == content_hashes(clean_state, candle_keys)
    assert clean["manifest"]["sequence"] == chaos["manifest"]["sequence"] == 1


def test_a_down_venue_fails_over_to_one_that_lists_its_symbol(write_config, tmp_path):
    config = write_config(venues=[
        ("sim-alpha", 11, ["BTC/USDT", "ETH/USDT"], ""),
        ("sim-beta", 22, ["BTC/USDT"], ""),
        ("sim-down", 33, ["SOL/USDT"], ', fault_profile = "down"'),
    ])  # fmt: skip
    result = ingest_market_data(config_path=config)
    venues = {v["venue"]: v for v in result["venues"]}
    assert not venues["sim-down"]["ok"] and "gave up after 6 attempts" in venues["sim-down"]["error"]
    assert venues["sim-alpha"]["ok"] and venues["sim-beta"]["ok"]
    takeover = [s for s in result["series"] if s["failover_for"] == "sim-down"]
    assert {(s["venue"], s["symbol"]) for s in takeover} == {("sim-alpha", "SOL/USDT")}
    assert {s["status"] for s in takeover} == {"stored"} and len(takeover) == 2
    assert result["covered"] == {"SOL/USDT": ["sim-alpha"]} and result["uncovered"] == []
    state = read_state(LocalObjectStore(tmp_path / "lake"))
    assert state.last_timestamp("sim-alpha|SOL/USDT|1m") is not None


def test_the_flow_writes_the_same_lake_to_s3(write_config, moto_server, s3_bucket):
    config = write_config(
        lake=f"s3://{s3_bucket}/lake",
        storage_extra=f's3_endpoint_url = "{moto_server}"',
        venues=[("sim-alpha", 11, ["BTC/USDT"], "")],
    )
    result = ingest_market_data(config_path=config)
    assert {s["status"] for s in result["series"]} == {"stored"}
    store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    state = read_state(store)
    assert read_series(store, state, "sim-alpha|BTC/USDT|1m").num_rows == 1440
    again = ingest_market_data(config_path=config)
    assert {s["status"] for s in again["series"]} == {"up to date"}  # on S3 too
    assert sum(s["candles"] for s in again["series"]) == 0


@pytest.mark.parametrize("bad", ["[ingest]\ntimeframes = ['2m']\n"])
def test_a_bad_config_fails_the_flow_naming_the_key(tmp_path, bad):
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(Exception, match=r"ingest.timeframes: unknown timeframe '2m'"):
        ingest_market_data(config_path=str(path))


def test_with_snapshots_off_a_rerun_publishes_nothing(write_config, tmp_path):
    path = write_config(venues=[("sim-alpha", 11, ["BTC/USDT"], "")])
    config = Path(path)
    text = config.read_text()
    config.write_text(
        text.replace("order_book_depth = 10", "order_book_depth = 0").replace(
            "trades_limit = 50", "trades_limit = 0"
        )
    )
    assert ingest_market_data(config_path=path)["manifest"]["sequence"] == 1
    assert ingest_market_data(config_path=path)["manifest"] is None  # up to date: nothing written
    assert list(LocalObjectStore(tmp_path / "lake").list("manifests/")) == ["manifests/ingest/00000001.json"]


def test_an_unlisted_symbol_fails_alone_and_fails_over(tmp_path):
    from tests.flows.conftest import BASE_CONFIG
    from tradeflow.simulator import ClusterSpec, SymbolSpec, VenueCluster, VenueSpec

    # An "exchange" reached through a base-URL override, listing only BTC and ETH.
    spec = ClusterSpec(
        symbols=[
            SymbolSpec(symbol="BTC/USDT", base_price=60_000.0, tick_size=0.01, step_size=0.00001),
            SymbolSpec(symbol="ETH/USDT", base_price=3_000.0, tick_size=0.01, step_size=0.0001),
        ],
        venues=[VenueSpec(id="ext", seed=4)],
    )
    with VenueCluster(spec).start(mode="thread") as external:
        config = tmp_path / "tradeflow.toml"
        config.write_text(
            BASE_CONFIG.format(
                data=tmp_path / "data", lake=tmp_path / "lake", profile="clean", storage_extra=""
            )
            + f'[[venues]]\nid = "ext"\nexchange = "binance"\nbase_url = "{external.base_urls["ext"]}"\n'
            'symbols = ["BTC/USDT", "SOL/USDT"]\n'
            '[[venues]]\nid = "sim-alpha"\nsimulated = true\nsymbols = ["ETH/USDT"]\n'
            "simulator = { seed = 11 }\n"
        )
        result = ingest_market_data(config_path=str(config))
    venues = {v["venue"]: v for v in result["venues"]}
    assert venues["ext"]["ok"] and venues["sim-alpha"]["ok"]  # an unlisted symbol fails alone
    unlisted = [s for s in result["series"] if s["status"] == "not listed"]
    assert {(s["venue"], s["symbol"]) for s in unlisted} == {("ext", "SOL/USDT")}
    assert "'SOL/USDT' is not listed; it lists 2 symbols: BTC/USDT, ETH/USDT" in unlisted[0]["error"]
    takeover = [s for s in result["series"] if s["failover_for"] == "ext"]
    assert {(s["venue"], s["symbol"], s["status"]) for s in takeover} == {("sim-alpha", "SOL/USDT", "stored")}
    assert result["covered"] == {"SOL/USDT": ["sim-alpha"]}
    stored = {(s["venue"], s["symbol"]) for s in result["series"] if s["status"] == "stored"}
    assert {("ext", "BTC/USDT"), ("sim-alpha", "ETH/USDT"), ("sim-alpha", "SOL/USDT")} <= stored
