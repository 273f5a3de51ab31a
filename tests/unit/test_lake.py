"""The lake: content-addressed objects, create-only writes, manifests published last."""

import numpy as np
import pytest

from tradeflow.storage.lake import (
    ConcurrentPublishError,
    LakeState,
    candles_table,
    publish_manifest,
    read_series,
    read_state,
    series_key,
    write_partitioned,
)
from tradeflow.storage.objectstore import LocalObjectStore
from tradeflow.timeframes import DAY_MS, MINUTE_MS

DAY0 = 1_700_006_400_000  # 2023-11-15 00:00 UTC


def candles(start, count, price=100.0):
    times = start + MINUTE_MS * np.arange(count)
    close = price + np.arange(count, dtype=float)
    return np.column_stack([times, close, close + 1, close - 1, close, np.ones(count)])


def test_objects_split_by_day_and_named_by_content(tmp_path):
    store = LocalObjectStore(tmp_path)
    rows = candles(DAY0 + DAY_MS - 10 * MINUTE_MS, 30)  # 10 on day 0, 20 on day 1
    objects = write_partitioned(
        store, "candles", candles_table(rows), venue="v", symbol="BTC/USDT", timeframe="1m"
    )
    assert [o.rows for o in objects] == [10, 20]
    assert [o.partition for o in objects] == ["2023-11-15", "2023-11-16"]
    assert all(o.key.startswith("raw/candles/venue=v/symbol=BTC-USDT/timeframe=1m/day=") for o in objects)
    assert all(o.key.endswith(f"/{o.sha256}.parquet") and o.written for o in objects)
    again = write_partitioned(
        store, "candles", candles_table(rows), venue="v", symbol="BTC/USDT", timeframe="1m"
    )
    assert [o.key for o in again] == [o.key for o in objects]  # same rows, same bytes, same keys
    assert not any(o.written for o in again)  # and nothing was written twice


def test_hourly_and_longer_candles_are_partitioned_by_month(tmp_path):
    store = LocalObjectStore(tmp_path)
    hours = 24 * 45  # 2023-11-15 .. 2023-12-29: two months
    times = DAY0 + 3_600_000 * np.arange(hours)
    rows = np.column_stack([times, *(np.ones(hours) for _ in range(5))])
    objects = write_partitioned(
        store, "candles", candles_table(rows), venue="v", symbol="BTC/USDT", timeframe="1h"
    )
    assert [(o.partition, o.rows) for o in objects] == [("2023-11", 16 * 24), ("2023-12", 29 * 24)]
    assert all("/timeframe=1h/month=" in o.key for o in objects)


def test_nothing_is_visible_until_the_manifest_and_reruns_publish_nothing(tmp_path):
    store = LocalObjectStore(tmp_path)
    objects = write_partitioned(
        store, "candles", candles_table(candles(DAY0, 50)), venue="v", symbol="BTC/USDT", timeframe="1m"
    )
    assert read_state(store).series == {}  # written but unpublished: invisible
    manifest = publish_manifest(store, read_state(store), objects, created_at=1, config_hash="h", run={})
    assert manifest is not None and manifest["sequence"] == 1
    state = read_state(store)
    key = series_key("v", "BTC/USDT", "1m")
    assert state.last_timestamp(key) == DAY0 + 49 * MINUTE_MS
    assert read_series(store, state, key).num_rows == 50
    assert publish_manifest(store, state, objects, created_at=2, config_hash="h", run={}) is None


def test_manifests_chain_and_carry_the_whole_state(tmp_path):
    store = LocalObjectStore(tmp_path)
    first = write_partitioned(
        store, "candles", candles_table(candles(DAY0, 10)), venue="v", symbol="X/Y", timeframe="1m"
    )
    m1 = publish_manifest(store, read_state(store), first, created_at=1, config_hash="h", run={})
    second = write_partitioned(
        store,
        "candles",
        candles_table(candles(DAY0 + 10 * MINUTE_MS, 10, 200)),
        venue="v",
        symbol="X/Y",
        timeframe="1m",
    )
    m2 = publish_manifest(store, read_state(store), second, created_at=2, config_hash="h", run={})
    assert m2["parent"] == m1["batch_id"] and m2["sequence"] == 2
    table = read_series(store, read_state(store), series_key("v", "X/Y", "1m"))
    assert table.column("timestamp").to_pylist() == [DAY0 + i * MINUTE_MS for i in range(20)]


def test_a_second_writer_cannot_publish_the_same_sequence(tmp_path):
    store = LocalObjectStore(tmp_path)
    objects = write_partitioned(
        store, "candles", candles_table(candles(DAY0, 5)), venue="v", symbol="X/Y", timeframe="1m"
    )
    publish_manifest(store, LakeState(), objects, created_at=1, config_hash="h", run={})
    other = write_partitioned(
        store, "candles", candles_table(candles(DAY0, 5, 7)), venue="w", symbol="X/Y", timeframe="1m"
    )
    with pytest.raises(ConcurrentPublishError, match="published by another run"):
        publish_manifest(store, LakeState(), other, created_at=2, config_hash="h", run={})


def test_local_store_refuses_keys_outside_its_root(tmp_path):
    store = LocalObjectStore(tmp_path)
    with pytest.raises(ValueError):
        store.put_if_absent("../escape", b"x")
