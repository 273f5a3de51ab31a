"""Feature matrices in the lake, under the feature set's hash and the snapshot id.

Layout::

    features/<feature set hash>/<snapshot id>/matrix.parquet
    features/<feature set hash>/<snapshot id>/manifest.json

The pair of ids names the content: the same snapshot through the same feature definition gives
the same matrix, so a stored one is reused (after its SHA-256 is checked) instead of rebuilt.
Both objects are written create-only, the manifest last.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from tradeflow.config import Settings
from tradeflow.features.spec import FeatureSpec
from tradeflow.snapshot import Snapshot, summarise
from tradeflow.storage.lake import decode_parquet, encode_parquet
from tradeflow.storage.objectstore import ObjectStore

FEATURE_PREFIX = "features/"


def matrix_folder(feature_hash: str, snapshot_id: str) -> str:
    """Return the folder of one feature matrix."""
    return f"{FEATURE_PREFIX}{feature_hash}/{snapshot_id}"


def read_manifest(store: ObjectStore, feature_hash: str, snapshot_id: str) -> dict[str, Any] | None:
    """Return a stored matrix's manifest, or None if there is none."""
    key = f"{matrix_folder(feature_hash, snapshot_id)}/manifest.json"
    if not store.exists(key):
        return None
    manifest: dict[str, Any] = json.loads(store.get(key))
    return manifest


def load_matrix(
    store: ObjectStore, feature_hash: str, snapshot_id: str
) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """Return a stored matrix and its manifest, or None if there is none (or it changed).

    A matrix whose bytes no longer match the manifest's SHA-256 is not used; it is rebuilt.
    """
    manifest = read_manifest(store, feature_hash, snapshot_id)
    if manifest is None:
        return None
    data = store.get(manifest["key"])
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        return None
    return decode_parquet(data).to_pandas(), manifest


def save_matrix(
    store: ObjectStore, matrix: pd.DataFrame, spec: FeatureSpec, snapshot_id: str, seconds: float
) -> dict[str, Any]:
    """Store a matrix and then its manifest; return the manifest."""
    folder = matrix_folder(spec.hash, snapshot_id)
    data = encode_parquet(pa.Table.from_pandas(matrix, preserve_index=False))
    key = f"{folder}/matrix.parquet"
    store.put_if_absent(key, data)
    stored = store.get(key)  # a concurrent builder may have won; describe what is stored
    manifest = {
        "kind": "feature-matrix",
        "key": key,
        "sha256": hashlib.sha256(stored).hexdigest(),
        "rows": len(matrix),
        "columns": [str(c) for c in matrix.columns],
        "symbols": sorted(str(s) for s in matrix["symbol"].unique()),
        "feature_set": {"name": spec.name, "version": spec.version, "hash": spec.hash},
        "definition": spec.definition(),
        "snapshot_id": snapshot_id,
        "created_at": int(time.time() * 1000),
        "build_seconds": round(seconds, 3),
    }
    store.put_if_absent(f"{folder}/manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    return read_manifest(store, spec.hash, snapshot_id) or manifest


def snapshot_symbols(snapshot: Snapshot, timeframe: str = "1m") -> list[str]:
    """Return the symbols a snapshot holds curated candles of at ``timeframe``."""
    series = summarise(snapshot.manifest)["curated_series"]
    return sorted({name.split("|")[0] for name in series if name.endswith(f"|{timeframe}")})


def snapshot_candles(
    snapshot: Snapshot, symbols: Iterable[str], timeframe: str = "1m"
) -> dict[str, pd.DataFrame]:
    """Return each symbol's curated candles read (and re-hashed) through the snapshot."""
    frames = {}
    for symbol in symbols:
        table = snapshot.candles(symbol, timeframe)
        frames[symbol] = table.select(["timestamp", "open", "high", "low", "close", "volume"]).to_pandas()
    return frames


def snapshot_books(snapshot: Snapshot, symbols: Iterable[str]) -> dict[str, pd.DataFrame]:
    """Return each symbol's order book snapshots (every venue that passed validation), or none."""
    books: dict[str, pd.DataFrame] = {}
    for symbol in symbols:
        objects = snapshot.objects(layer="raw", dataset="order_books", symbol=symbol)
        if objects:
            books[symbol] = snapshot.read_table(objects, sort_column="snapshot_ts").to_pandas()
    return books


def matrix_summary(manifest: Mapping[str, Any]) -> str:
    """Return one line for people: rows, symbols, feature count, ids."""
    features = len([c for c in manifest["columns"] if c not in ("symbol", "timestamp", "regime")])
    return (
        f"{manifest['rows']:,} rows × {features} features for {', '.join(manifest['symbols'])} "
        f"(feature set {manifest['feature_set']['name']} {manifest['feature_set']['hash'][:12]}, "
        f"snapshot {manifest['snapshot_id'][:12]})"
    )


def feature_spec(settings: Settings) -> FeatureSpec:
    """Return the configured feature set (``[features]``: its name and parameter overrides).

    Raises:
        ValueError: naming an unknown or invalid parameter.
    """
    return FeatureSpec.from_mapping({"name": settings.features.name, **settings.features.params})


def load_features(store: ObjectStore, settings: Settings, snapshot_id: str) -> pd.DataFrame:
    """Return the stored matrix of the configured feature set for a snapshot.

    Raises:
        LookupError: if it has not been built (the build-features flow builds it).
    """
    loaded = load_matrix(store, feature_spec(settings).hash, snapshot_id)
    if loaded is None:
        raise LookupError(f"no feature matrix for snapshot {snapshot_id[:12]}: run the build-features flow")
    return loaded[0]
