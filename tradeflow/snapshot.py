"""Immutable snapshots: a frozen, content-addressed list of the data every later stage reads.

A snapshot freezes what one validation run left usable: every curated candle object, and every
raw object (candles, order books, trades) of the ingest batches it validated, each with its key,
SHA-256, rows, time range and schema, and a ``quarantined`` flag on raw objects that failed.
The manifest also names the config hash, the validation run, the ingest batches new since the
parent snapshot, and the parent. Its id is the SHA-256 of its canonical JSON, so the id alone
pins the data: :class:`Snapshot` re-hashes every object it reads and refuses one that changed.

Layout::

    snapshots/<snapshot id>.json            the manifest (create-only)
    manifests/snapshot/00000001.json, ...   a numbered index: sequence, id, parent, summary
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tradeflow.canonical import canonical_json, content_hash
from tradeflow.config import ValidationConfig
from tradeflow.quality.checks import Validator
from tradeflow.quality.consensus import CURATED_SCHEMA
from tradeflow.quality.validation import VALIDATION_PREFIX, BatchReport, validate_candle_frame
from tradeflow.storage.lake import (
    MANIFEST_PREFIX,
    SCHEMAS,
    decode_parquet,
    latest_manifest,
    publish_numbered,
    read_manifest,
)
from tradeflow.storage.objectstore import ObjectStore

SNAPSHOT_PREFIX = "snapshots/"
SNAPSHOT_INDEX_PREFIX = "manifests/snapshot/"
FORMAT = 1


class SnapshotError(RuntimeError):
    """A snapshot cannot be found, made or read intact."""


def _schema_fields(schema: pa.Schema) -> list[list[str]]:
    return [[f.name, str(f.type)] for f in schema]


#: Every object's ``schema`` names one of these.
SCHEMA_TABLE = {
    **{f"raw/{name}": _schema_fields(schema) for name, schema in SCHEMAS.items()},
    "curated/candles": _schema_fields(CURATED_SCHEMA),
}


def snapshot_key(snapshot_id: str) -> str:
    """Return the object key of a snapshot's manifest."""
    return f"{SNAPSHOT_PREFIX}{snapshot_id}.json"


def _object(entry: Mapping[str, Any], layer: str, quarantined: bool | None = None) -> dict[str, Any]:
    item = {
        "key": entry["key"],
        "sha256": entry["sha256"],
        "layer": layer,
        "dataset": entry["dataset"],
        "venue": entry.get("venue") or None,
        "symbol": entry["symbol"],
        "timeframe": entry.get("timeframe"),
        "rows": int(entry["rows"]),
        "start": int(entry["start"]),
        "end": int(entry["end"]),
        "schema": f"{layer}/{entry['dataset']}",
    }
    if quarantined is not None:
        item["quarantined"] = quarantined
    return item


def _validation_manifests(store: ObjectStore, after: int, through: int) -> list[dict[str, Any]]:
    found = []
    for sequence in range(after + 1, through + 1):
        manifest = read_manifest(store, VALIDATION_PREFIX, sequence)
        if manifest is not None:
            found.append(manifest)
    return found


def latest_snapshot(store: ObjectStore) -> dict[str, Any] | None:
    """Return the newest snapshot index entry, or None if there is no snapshot yet."""
    return latest_manifest(store, SNAPSHOT_INDEX_PREFIX)


def build_manifest(
    store: ObjectStore, *, created_at: int, config_hash: str, run: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """Return the manifest of a snapshot of the newest validation, or None if one exists already.

    Raises:
        SnapshotError: if nothing has been validated yet.
    """
    validation = latest_manifest(store, VALIDATION_PREFIX)
    if validation is None:
        raise SnapshotError(
            f"nothing to snapshot in {store.describe()}: no validation run yet "
            "(run `tradeflow run`, or `tradeflow ingest` then `tradeflow validate`)"
        )
    previous = latest_snapshot(store)
    if previous is not None and previous["validation_id"] == validation["validation_id"]:
        return None
    parent = load_manifest(store, previous["snapshot_id"]) if previous is not None else None
    ingest_sequence = int(validation["ingest"]["sequence"])
    ingest = read_manifest(store, MANIFEST_PREFIX, ingest_sequence)
    if ingest is None:
        raise SnapshotError(
            f"ingest manifest {ingest_sequence} named by validation {validation['sequence']} is gone"
        )

    # Quarantined raw objects: the parent's, plus those of every validation since the parent's.
    quarantined = {o["key"] for o in (parent or {}).get("objects", []) if o.get("quarantined")}
    since = int(parent["validation"]["sequence"]) if parent else 0
    for manifest in _validation_manifests(store, since, int(validation["sequence"])):
        for batch in manifest["batches"]:
            if batch.get("quarantine"):
                quarantined.update(batch["objects"])
    objects = [
        _object(entry, "raw", entry["key"] in quarantined)
        for series in ingest["series"].values()
        for entry in series["objects"]
    ]
    objects += [
        _object(entry, "curated") for series in validation["curated"].values() for entry in series["objects"]
    ]
    objects.sort(key=lambda o: o["key"])

    parent_ingest = int(parent["ingest"]["sequence"]) if parent else 0
    new_batches = []
    for sequence in range(parent_ingest + 1, ingest_sequence + 1):
        batch = ingest if sequence == ingest_sequence else read_manifest(store, MANIFEST_PREFIX, sequence)
        if batch is not None:
            new_batches.append(batch["batch_id"])
    return {
        "kind": "snapshot",
        "format": FORMAT,
        "created_at": created_at,
        "config_hash": config_hash,
        "parent": previous["snapshot_id"] if previous else None,
        "validation": {
            "sequence": int(validation["sequence"]),
            "validation_id": validation["validation_id"],
            "key": f"{VALIDATION_PREFIX}{int(validation['sequence']):08d}.json",
            "suite_version": validation.get("suite_version"),
        },
        "ingest": {"sequence": ingest_sequence, "batch_id": ingest["batch_id"], "new_batches": new_batches},
        "run": dict(run or {}),
        "schemas": SCHEMA_TABLE,
        "objects": objects,
    }


def snapshot_id(manifest: Mapping[str, Any]) -> str:
    """Return a manifest's id: the SHA-256 of its canonical JSON (without the id itself)."""
    return content_hash({k: v for k, v in manifest.items() if k != "snapshot_id"})


def summarise(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Return counts for people: objects, rows per layer, series, quarantined objects."""
    rows: dict[str, int] = defaultdict(int)
    series: set[str] = set()
    for obj in manifest["objects"]:
        rows[obj["layer"]] += obj["rows"]
        if obj["layer"] == "curated":
            series.add(f"{obj['symbol']}|{obj['timeframe']}")
    return {
        "objects": len(manifest["objects"]),
        "curated_rows": rows["curated"],
        "raw_rows": rows["raw"],
        "curated_series": sorted(series),
        "quarantined_objects": sum(bool(o.get("quarantined")) for o in manifest["objects"]),
    }


def publish_snapshot(store: ObjectStore, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Write a snapshot manifest create-only, then its index entry; return the index entry.

    Raises:
        ConcurrentPublishError: if another run published the same index number first.
    """
    body = dict(manifest)
    body["snapshot_id"] = snapshot_id(body)
    data = json.dumps(body, indent=1, sort_keys=True).encode()
    key = snapshot_key(body["snapshot_id"])
    store.put_if_absent(key, data)  # same id, same content: an existing one is this one
    previous = latest_snapshot(store)
    index = {
        "kind": "snapshot-index",
        "sequence": (int(previous["sequence"]) if previous else 0) + 1,
        "snapshot_id": body["snapshot_id"],
        "parent": body["parent"],
        "created_at": body["created_at"],
        "validation_id": body["validation"]["validation_id"],
        "key": key,
        "sha256": hashlib.sha256(store.get(key)).hexdigest(),
        "summary": summarise(body),
    }
    return publish_numbered(store, SNAPSHOT_INDEX_PREFIX, index, "index_id")


def list_snapshots(store: ObjectStore) -> list[dict[str, Any]]:
    """Return every snapshot's index entry, oldest first."""
    return [json.loads(store.get(k)) for k in store.list(SNAPSHOT_INDEX_PREFIX) if k.endswith(".json")]


def resolve_id(store: ObjectStore, wanted: str) -> str:
    """Return the full id of a snapshot given its id, a unique prefix (6+ characters) or ``latest``.

    Raises:
        SnapshotError: if none or several match.
    """
    if wanted == "latest":
        newest = latest_snapshot(store)
        if newest is None:
            raise SnapshotError(f"no snapshot in {store.describe()} yet: run `tradeflow snapshot create`")
        return str(newest["snapshot_id"])
    if len(wanted) == 64 and store.exists(snapshot_key(wanted)):  # a full id: no need to list
        return wanted
    snapshots = list_snapshots(store)
    matches = sorted({s["snapshot_id"] for s in snapshots if s["snapshot_id"].startswith(wanted)})
    if len(wanted) >= 6 and len(matches) == 1:
        return str(matches[0])
    if store.exists(snapshot_key(wanted)):
        return wanted
    if not matches or len(wanted) < 6:
        raise SnapshotError(
            f"no snapshot {wanted!r} in {store.describe()} (`tradeflow snapshot list` shows them; "
            "give at least 6 characters of an id, or 'latest')"
        )
    raise SnapshotError(f"{wanted!r} matches {len(matches)} snapshots; give more characters")


def load_manifest(store: ObjectStore, wanted: str) -> dict[str, Any]:
    """Return a snapshot's manifest after checking that it still hashes to its id.

    Raises:
        SnapshotError: if it is missing or its content no longer matches its id.
    """
    full = resolve_id(store, wanted)
    try:
        manifest: dict[str, Any] = json.loads(store.get(snapshot_key(full)))
    except KeyError:
        raise SnapshotError(
            f"snapshot {full} is listed but its manifest {snapshot_key(full)} is gone"
        ) from None
    if manifest.get("snapshot_id") != full or snapshot_id(manifest) != full:
        raise SnapshotError(
            f"snapshot manifest {store.describe(snapshot_key(full))} does not hash to its id {full[:16]}: "
            "it was changed after it was written (run `tradeflow audit verify`)"
        )
    return manifest


@dataclass
class Snapshot:
    """A snapshot opened for reading: every object is checked against its SHA-256 as it is read."""

    store: ObjectStore
    manifest: dict[str, Any]

    @classmethod
    def open(cls, store: ObjectStore, wanted: str = "latest") -> Snapshot:
        """Open a snapshot by id, unique prefix, or ``latest``."""
        return cls(store, load_manifest(store, wanted))

    @property
    def id(self) -> str:
        """Return the snapshot id."""
        return str(self.manifest["snapshot_id"])

    def objects(
        self,
        *,
        layer: str | None = None,
        dataset: str | None = None,
        symbol: str | None = None,
        timeframe: str | None = None,
        venue: str | None = None,
        include_quarantined: bool = False,
    ) -> list[dict[str, Any]]:
        """Return the objects that match every given filter (quarantined raw objects left out)."""
        return [
            o
            for o in self.manifest["objects"]
            if (layer is None or o["layer"] == layer)
            and (dataset is None or o["dataset"] == dataset)
            and (symbol is None or o["symbol"] == symbol)
            and (timeframe is None or o["timeframe"] == timeframe)
            and (venue is None or o["venue"] == venue)
            and (include_quarantined or not o.get("quarantined"))
        ]

    def read_object(self, obj: Mapping[str, Any]) -> bytes:
        """Return one object's bytes after checking its SHA-256.

        Raises:
            SnapshotError: if the object is gone or changed.
        """
        try:
            data = self.store.get(obj["key"])
        except KeyError:
            raise SnapshotError(f"snapshot {self.id[:16]}: object {obj['key']} is gone") from None
        if hashlib.sha256(data).hexdigest() != obj["sha256"]:
            raise SnapshotError(
                f"snapshot {self.id[:16]}: object {self.store.describe(obj['key'])} changed since the "
                "snapshot was taken (its SHA-256 differs); run `tradeflow audit verify`"
            )
        return data

    def read_table(self, objects: Sequence[Mapping[str, Any]], sort_column: str = "timestamp") -> pa.Table:
        """Return the rows of ``objects``, each checked, concatenated and sorted."""
        if not objects:
            raise SnapshotError(f"snapshot {self.id[:16]} has no such objects")
        table = pa.concat_tables([decode_parquet(self.read_object(o)) for o in objects])
        return table.sort_by(sort_column)

    def candles(self, symbol: str, timeframe: str) -> pa.Table:
        """Return the curated consensus candles of one series.

        Raises:
            SnapshotError: if the snapshot has no such series, naming the ones it has.
        """
        objects = self.objects(layer="curated", dataset="candles", symbol=symbol, timeframe=timeframe)
        if not objects:
            have = ", ".join(summarise(self.manifest)["curated_series"]) or "none"
            raise SnapshotError(
                f"snapshot {self.id[:16]} has no curated {symbol} {timeframe} candles (has: {have})"
            )
        return self.read_table(objects)


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Return what changed between two snapshot manifests, per series (layer, dataset, venue ...)."""

    def series_of(obj: Mapping[str, Any]) -> str:
        parts = [
            obj["layer"],
            obj["dataset"],
            obj.get("venue") or "",
            obj["symbol"],
            obj.get("timeframe") or "",
        ]
        return "|".join(p for p in parts if p)

    def by_series(manifest: Mapping[str, Any]) -> dict[str, dict[str, Mapping[str, Any]]]:
        grouped: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
        for obj in manifest["objects"]:
            grouped[series_of(obj)][obj["key"]] = obj
        return grouped

    left, right = by_series(old), by_series(new)
    changes = []
    for name in sorted(set(left) | set(right)):
        before, after = left.get(name, {}), right.get(name, {})
        added = [after[k] for k in sorted(set(after) - set(before))]
        removed = [before[k] for k in sorted(set(before) - set(after))]
        flagged = [
            k
            for k in set(after) & set(before)
            if bool(after[k].get("quarantined")) != bool(before[k].get("quarantined"))
        ]
        if added or removed or flagged:
            changes.append(
                {
                    "series": name,
                    "added_objects": len(added),
                    "removed_objects": len(removed),
                    "added_rows": sum(o["rows"] for o in added),
                    "removed_rows": sum(o["rows"] for o in removed),
                    "quarantine_changed": len(flagged),
                    "end_before": max((o["end"] for o in before.values()), default=None),
                    "end_after": max((o["end"] for o in after.values()), default=None),
                }
            )
    return {
        "old": old["snapshot_id"],
        "new": new["snapshot_id"],
        "config_changed": old["config_hash"] != new["config_hash"],
        "validation": [old["validation"]["sequence"], new["validation"]["sequence"]],
        "series": changes,
    }


def restore(snapshot: Snapshot, destination: Path, objects: Iterable[Mapping[str, Any]] | None = None) -> int:
    """Materialise a snapshot's objects as files under ``destination`` (keys as paths); return the count.

    Every object is checked against its SHA-256 first; ``snapshot.json`` (the manifest) goes
    beside them. Existing files with the right content are kept; a file with other content is
    an error, so a restore never silently mixes two snapshots.

    Raises:
        SnapshotError: if an object changed, or ``destination`` holds a different file at a key.
    """
    destination.mkdir(parents=True, exist_ok=True)
    count = 0
    for obj in snapshot.manifest["objects"] if objects is None else objects:
        target = destination / obj["key"]
        if target.is_file():
            if hashlib.sha256(target.read_bytes()).hexdigest() != obj["sha256"]:
                raise SnapshotError(f"{target} exists with other content; restore into an empty folder")
            count += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.partial")
        temporary.write_bytes(snapshot.read_object(obj))
        shutil.move(temporary, target)
        count += 1
    (destination / "snapshot.json").write_bytes(canonical_json(snapshot.manifest) + b"\n")
    return count


def validate_snapshot(
    snapshot: Snapshot, validator: Validator, config: ValidationConfig, *, as_of: int | None = None
) -> list[BatchReport]:
    """Run the candle suite on every curated series of a snapshot, read (and re-hashed) through it.

    Returns one report per series, named ``snapshot <id> <symbol> <timeframe>``.
    """
    reports = []
    for name in summarise(snapshot.manifest)["curated_series"]:
        symbol, timeframe = name.split("|")
        objects = snapshot.objects(layer="curated", dataset="candles", symbol=symbol, timeframe=timeframe)
        report = BatchReport(
            "candles", f"snapshot {snapshot.id[:16]}", symbol, timeframe, [o["key"] for o in objects]
        )
        table = snapshot.read_table(objects).select(["timestamp", "open", "high", "low", "close", "volume"])
        reports.append(
            validate_candle_frame(report, table.to_pandas(), timeframe, validator, config, as_of=as_of)
        )
    return reports
