"""The same lake code against S3 (moto's server, over real HTTP)."""

import numpy as np

from tradeflow.storage.lake import (
    candles_table,
    publish_manifest,
    read_series,
    read_state,
    series_key,
    write_partitioned,
)
from tradeflow.storage.objectstore import open_store
from tradeflow.timeframes import MINUTE_MS

DAY0 = 1_700_006_400_000


def rows(count):
    times = DAY0 + MINUTE_MS * np.arange(count)
    return np.column_stack(
        [
            times,
            np.full(count, 1.0),
            np.full(count, 2.0),
            np.full(count, 0.5),
            np.full(count, 1.5),
            np.full(count, 10.0),
        ]
    )


def test_create_only_writes_use_conditional_puts_and_encryption(moto_server, s3_bucket):
    store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    assert store.put_if_absent("a/b.bin", b"first")
    assert not store.put_if_absent("a/b.bin", b"second")  # If-None-Match: * refused it
    assert store.get("a/b.bin") == b"first"
    import boto3

    head = boto3.client("s3", endpoint_url=moto_server).head_object(Bucket=s3_bucket, Key="lake/a/b.bin")
    assert head["ServerSideEncryption"] == "AES256"
    assert list(store.list("a/")) == ["a/b.bin"] and not store.exists("a/c.bin")


def test_the_lake_on_s3_round_trips_and_dedupes(moto_server, s3_bucket):
    store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    objects = write_partitioned(
        store, "candles", candles_table(rows(100)), venue="v", symbol="BTC/USDT", timeframe="1m"
    )
    manifest = publish_manifest(store, read_state(store), objects, created_at=1, config_hash="h", run={})
    assert manifest["sequence"] == 1
    state = read_state(store)
    table = read_series(store, state, series_key("v", "BTC/USDT", "1m"))
    assert table.num_rows == 100 and table.column("close").to_pylist()[0] == 1.5
    again = write_partitioned(
        store, "candles", candles_table(rows(100)), venue="v", symbol="BTC/USDT", timeframe="1m"
    )
    assert not any(o.written for o in again)
    assert publish_manifest(store, state, again, created_at=2, config_hash="h", run={}) is None
    assert store.describe().startswith(f"s3://{s3_bucket}/lake")


def test_two_runs_cannot_both_publish_the_same_manifest_on_s3(moto_server, s3_bucket):
    import pytest

    from tradeflow.storage.lake import ConcurrentPublishError, LakeState

    store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    first = write_partitioned(
        store, "candles", candles_table(rows(10)), venue="a", symbol="X/Y", timeframe="1m"
    )
    second = write_partitioned(
        store, "candles", candles_table(rows(10)), venue="b", symbol="X/Y", timeframe="1m"
    )
    publish_manifest(store, LakeState(), first, created_at=1, config_hash="h", run={})
    with pytest.raises(ConcurrentPublishError):
        publish_manifest(store, LakeState(), second, created_at=2, config_hash="h", run={})
    assert list(read_state(store).series) == ["a|X/Y|1m"]  # the first writer's history stands
