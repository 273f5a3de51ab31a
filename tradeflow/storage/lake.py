"""The Parquet lake: content-addressed data objects and the manifests that make them visible.

Layout under the storage URL::

    raw/candles/venue=V/symbol=BTC-USDT/timeframe=1m/day=2026-11-20/<sha256>.parquet
    raw/candles/venue=V/symbol=BTC-USDT/timeframe=1h/month=2026-11/<sha256>.parquet
    raw/order_books/venue=V/symbol=BTC-USDT/day=2026-11-20/<sha256>.parquet
    raw/trades/venue=V/symbol=BTC-USDT/day=2026-11-20/<sha256>.parquet
    manifests/ingest/00000001.json, 00000002.json, ...

Intraday timeframes below one hour are partitioned by UTC day (a 1m day is 1,440 rows); 1h and
longer by UTC month, so that no object holds a mere 24 rows: thousands of tiny objects cost far
more to write and to list than the data in them.

A data object's name is the SHA-256 of its bytes, and it is written create-only, so writing the
same candles twice stores nothing new. Nothing is visible until a manifest lists it. Manifests
are numbered; each one is written create-only under the next number and carries the whole state
of the lake (every visible object per series, and each series' last candle), so the newest
manifest alone answers "what do we have". A crash before the manifest leaves only unreferenced
objects, which the next run finds already written. Two concurrent writers cannot both publish
the same number: the second one fails loudly instead of forking history.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tradeflow.canonical import content_hash
from tradeflow.storage.objectstore import ObjectStore
from tradeflow.timeframes import partition_period

MANIFEST_PREFIX = "manifests/ingest/"

CANDLE_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
    ]
)
ORDER_BOOK_SCHEMA = pa.schema(
    [
        pa.field("snapshot_ts", pa.int64(), nullable=False),
        pa.field("side", pa.string(), nullable=False),
        pa.field("level", pa.int32(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
    ]
)
TRADE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("side", pa.string(), nullable=True),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
    ]
)
SCHEMAS = {"candles": CANDLE_SCHEMA, "order_books": ORDER_BOOK_SCHEMA, "trades": TRADE_SCHEMA}


class ConcurrentPublishError(RuntimeError):
    """Another run published a manifest with the same number first."""


def series_key(venue: str, symbol: str, timeframe: str | None = None) -> str:
    """Return the manifest's name for a series: ``venue|symbol|timeframe`` (or ``venue|symbol``)."""
    return f"{venue}|{symbol}|{timeframe}" if timeframe else f"{venue}|{symbol}"


def encode_parquet(table: pa.Table) -> bytes:
    """Return deterministic Parquet (zstd) bytes for a table: same rows, same bytes."""
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=3,
        write_statistics=True,
        store_schema=False,
    )
    return sink.getvalue()


def decode_parquet(data: bytes) -> pa.Table:
    """Return the table stored in Parquet bytes."""
    return pq.read_table(io.BytesIO(data))


def candles_table(rows: np.ndarray) -> pa.Table:
    """Return a candle table from an (n, 6) array in ccxt OHLCV order."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    columns = [pa.array(rows[:, 0].astype(np.int64))] + [pa.array(rows[:, i]) for i in range(1, 6)]
    return pa.Table.from_arrays(columns, schema=CANDLE_SCHEMA)


@dataclass(frozen=True)
class StoredObject:
    """One data object as a manifest records it."""

    key: str
    sha256: str
    dataset: str
    venue: str
    symbol: str
    timeframe: str | None
    partition: str  # "2026-11-20" for a day partition, "2026-11" for a month
    rows: int
    start: int
    end: int
    written: bool = True  # False when the object already existed (a re-run or a resumed crash)

    def to_json(self) -> dict[str, Any]:
        """Return the manifest entry (``written`` is run-local, not recorded)."""
        return {
            "key": self.key,
            "sha256": self.sha256,
            "dataset": self.dataset,
            "venue": self.venue,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "partition": self.partition,
            "rows": self.rows,
            "start": self.start,
            "end": self.end,
        }


def _partition(
    dataset: str, venue: str, symbol: str, timeframe: str | None, period: str, value: str, layer: str = "raw"
) -> str:
    parts = [f"{layer}/{dataset}"]
    if venue:
        parts.append(f"venue={venue}")
    parts.append(f"symbol={symbol.replace('/', '-')}")
    if timeframe:
        parts.append(f"timeframe={timeframe}")
    parts.append(f"{period}={value}")
    return "/".join(parts)


def write_partitioned(
    store: ObjectStore,
    dataset: str,
    table: pa.Table,
    *,
    venue: str,
    symbol: str,
    timeframe: str | None = None,
    time_column: str = "timestamp",
    layer: str = "raw",
    schema: pa.Schema | None = None,
) -> list[StoredObject]:
    """Split ``table`` by UTC day (or month, see :func:`partition_period`) and write each part.

    ``layer`` is ``raw`` (exchange data, per venue) or ``curated`` (consensus, venue ``""``);
    ``schema`` defaults to the raw dataset's.

    Returns one :class:`StoredObject` per partition; the object name is the SHA-256 of its bytes.
    """
    if table.num_rows == 0:
        return []
    expected = schema if schema is not None else SCHEMAS[dataset]
    if table.schema != expected:
        raise ValueError(f"{dataset} table schema {table.schema} differs from {expected}")
    times = table.column(time_column).to_numpy()
    period = partition_period(timeframe)
    unit = "D" if period == "day" else "M"
    buckets = times.astype("datetime64[ms]").astype(f"datetime64[{unit}]")
    objects: list[StoredObject] = []
    for bucket in np.unique(buckets):
        mask = buckets == bucket
        part = table.filter(pa.array(mask))
        data = encode_parquet(part)
        digest = hashlib.sha256(data).hexdigest()
        value = str(bucket)
        key = f"{_partition(dataset, venue, symbol, timeframe, period, value, layer)}/{digest}.parquet"
        written = store.put_if_absent(key, data)
        part_times = part.column(time_column).to_numpy()
        objects.append(
            StoredObject(
                key=key,
                sha256=digest,
                dataset=dataset,
                venue=venue,
                symbol=symbol,
                timeframe=timeframe,
                partition=value,
                rows=part.num_rows,
                start=int(part_times.min()),
                end=int(part_times.max()),
                written=written,
            )
        )
    return objects


@dataclass
class LakeState:
    """What the newest manifest says is in the lake."""

    sequence: int = 0
    batch_id: str | None = None
    series: dict[str, dict[str, Any]] = field(default_factory=dict)

    def last_timestamp(self, key: str) -> int | None:
        """Return the newest stored timestamp of a series, or None if it has none."""
        entry = self.series.get(key)
        return None if entry is None else int(entry["last"])

    def objects(self, key: str) -> list[dict[str, Any]]:
        """Return the manifest entries of every object of a series, oldest first."""
        entry = self.series.get(key)
        return [] if entry is None else list(entry["objects"])


def read_state(store: ObjectStore) -> LakeState:
    """Return the lake's state from its newest manifest (empty if there is none)."""
    keys = [k for k in store.list(MANIFEST_PREFIX) if k.endswith(".json")]
    if not keys:
        return LakeState()
    manifest = json.loads(store.get(keys[-1]))
    return LakeState(
        sequence=int(manifest["sequence"]),
        batch_id=manifest["batch_id"],
        series=manifest["series"],
    )


def publish_manifest(
    store: ObjectStore,
    parent: LakeState,
    objects: Sequence[StoredObject],
    *,
    created_at: int,
    config_hash: str,
    run: Mapping[str, Any],
) -> dict[str, Any] | None:
    """Publish the next manifest listing ``objects`` on top of ``parent``; return it.

    Returns None (and writes nothing) when there is nothing new: the lake is up to date.

    Raises:
        ConcurrentPublishError: if another run published this sequence number first.
    """
    known = {entry["key"] for key in parent.series for entry in parent.objects(key)}
    new_objects = [obj for obj in objects if obj.key not in known]
    if not new_objects:
        return None
    series = {key: {"last": value["last"], "objects": list(value["objects"])}
              for key, value in parent.series.items()}  # fmt: skip
    for obj in sorted(new_objects, key=lambda o: (o.dataset, o.venue, o.symbol, o.start, o.key)):
        key = series_key(obj.venue, obj.symbol, obj.timeframe)
        if obj.dataset != "candles":
            key = f"{obj.dataset}:{key}"
        entry = series.setdefault(key, {"last": obj.end, "objects": []})
        entry["last"] = max(int(entry["last"]), obj.end)
        entry["objects"].append(obj.to_json())
    body: dict[str, Any] = {
        "kind": "ingest-batch",
        "sequence": parent.sequence + 1,
        "parent": parent.batch_id,
        "created_at": created_at,
        "config_hash": config_hash,
        "run": dict(run),
        "new_objects": [obj.to_json() for obj in new_objects],
        "series": series,
    }
    body["batch_id"] = content_hash(body)
    key = f"{MANIFEST_PREFIX}{body['sequence']:08d}.json"
    if not store.put_if_absent(key, json.dumps(body, indent=1, sort_keys=True).encode()):
        raise ConcurrentPublishError(
            f"manifest {key} was published by another run while this one was ingesting; "
            "its data objects are safe (content-addressed). Run ingestion again to publish them."
        )
    return body


def read_series(store: ObjectStore, state: LakeState, key: str) -> pa.Table:
    """Return every stored row of one series (a candle series key, or ``dataset:venue|symbol``)."""
    entries = state.objects(key)
    dataset = key.split(":", 1)[0] if ":" in key else "candles"
    if not entries:
        return SCHEMAS[dataset].empty_table()
    tables = [decode_parquet(store.get(entry["key"])) for entry in entries]
    table = pa.concat_tables(tables)
    sort_column = "snapshot_ts" if dataset == "order_books" else "timestamp"
    return table.sort_by(sort_column)


def content_hashes(state: LakeState, keys: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Return the sorted object hashes per series, to compare two lakes' contents."""
    chosen = state.series.keys() if keys is None else keys
    return {key: sorted(entry["sha256"] for entry in state.objects(key)) for key in sorted(chosen)}


def read_manifest(store: ObjectStore, prefix: str, sequence: int) -> dict[str, Any] | None:
    """Return manifest number ``sequence`` under ``prefix``, or None if there is none."""
    key = f"{prefix}{sequence:08d}.json"
    if sequence < 1 or not store.exists(key):
        return None
    manifest: dict[str, Any] = json.loads(store.get(key))
    return manifest


def latest_manifest(store: ObjectStore, prefix: str) -> dict[str, Any] | None:
    """Return the newest manifest under ``prefix``, or None if there is none."""
    keys = [k for k in store.list(prefix) if k.endswith(".json")]
    if not keys:
        return None
    manifest: dict[str, Any] = json.loads(store.get(keys[-1]))
    return manifest


def publish_numbered(store: ObjectStore, prefix: str, body: dict[str, Any], id_field: str) -> dict[str, Any]:
    """Publish ``body`` create-only as manifest ``body["sequence"]``; its id is its content hash.

    Raises:
        ConcurrentPublishError: if another run published this sequence number first.
    """
    body = dict(body)
    body[id_field] = content_hash(body)
    key = f"{prefix}{body['sequence']:08d}.json"
    if not store.put_if_absent(key, json.dumps(body, indent=1, sort_keys=True).encode()):
        raise ConcurrentPublishError(
            f"manifest {key} was published by another run first; nothing of this run is visible. "
            "Run it again to publish on top of the other one."
        )
    return body
