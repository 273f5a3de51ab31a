"""What each pipeline step records in the audit chain: payloads built from its published manifest.

Payloads carry ids, hashes and small facts only. ``id`` is what the entry is about,
``parents`` the ids it was made from (for ``audit explain``), and ``refs`` the stored objects it
vouches for, by key and SHA-256 (``audit verify`` re-hashes them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from tradeflow.audit.chain import AuditLog, Entry
from tradeflow.storage.lake import MANIFEST_PREFIX, read_manifest
from tradeflow.storage.objectstore import ObjectStore

Item = tuple[str, dict[str, Any]]


def ref(store: ObjectStore, key: str, **extra: Any) -> dict[str, Any]:
    """Return a reference to a stored object: its key and the SHA-256 of its bytes now."""
    return {"key": key, "sha256": hashlib.sha256(store.get(key)).hexdigest(), **extra}


def ingest_items(store: ObjectStore, manifest: Mapping[str, Any]) -> list[Item]:
    """Return the entries of a published ingest manifest: a config change if any, then the batch."""
    sequence = int(manifest["sequence"])
    parent = read_manifest(store, MANIFEST_PREFIX, sequence - 1)
    items: list[Item] = []
    previous_config = None if parent is None else parent.get("config_hash")
    if previous_config != manifest["config_hash"]:
        items.append(("config_change", {"id": manifest["config_hash"], "previous": previous_config}))
    new_objects = manifest["new_objects"]
    candles = sum(int(o["rows"]) for o in new_objects if o["dataset"] == "candles")
    items.append(
        (
            "ingest_batch",
            {
                "id": manifest["batch_id"],
                "parents": [manifest["config_hash"]],
                "sequence": sequence,
                "parent_batch": manifest.get("parent"),
                "new_objects": len(new_objects),
                "candles": candles,
                "venues": manifest.get("run", {}).get("venues", {}),
                "refs": [ref(store, f"{MANIFEST_PREFIX}{sequence:08d}.json")],
            },
        )
    )
    return items


def validation_items(store: ObjectStore, manifest: Mapping[str, Any], prefix: str) -> list[Item]:
    """Return the entries of a published validation manifest: one per quarantine, then the run."""
    sequence = int(manifest["sequence"])
    batch_id = manifest["ingest"]["batch_id"]
    items: list[Item] = []
    verdicts = [b["verdict"] for b in manifest["batches"]]
    for batch in manifest["batches"]:
        if not batch.get("quarantine"):
            continue
        items.append(
            (
                "quarantine",
                {
                    "id": batch["quarantine"],
                    "parents": [batch_id],
                    "batch": batch["batch"],
                    "reasons": batch["reasons"],
                    "objects": len(batch["objects"]),
                    "refs": [ref(store, f"{batch['quarantine']}/report.json")],
                },
            )
        )
    reports = manifest.get("reports", {})
    refs = [ref(store, f"{prefix}{sequence:08d}.json")]
    if reports.get("results"):
        refs.append(ref(store, reports["results"]))
    refs += [ref(store, key) for key in sorted(reports.get("integrity", {}).values())]
    curated_rows = sum(int(o["rows"]) for o in manifest.get("new_curated_objects", []))
    items.append(
        (
            "validation",
            {
                "id": manifest["validation_id"],
                "parents": [batch_id, *[i[1]["id"] for i in items]],
                "sequence": sequence,
                "suite_version": manifest.get("suite_version"),
                "passed": verdicts.count("passed"),
                "warned": verdicts.count("warned"),
                "quarantined": verdicts.count("quarantined"),
                "unusable": manifest.get("unusable", []),
                "curated_rows": curated_rows,
                "refs": refs,
            },
        )
    )
    return items


def snapshot_items(store: ObjectStore, index: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[Item]:
    """Return the entry of a published snapshot (its manifest lists every object it freezes)."""
    summary = index["summary"]
    parents = [manifest["validation"]["validation_id"], *manifest["ingest"]["new_batches"]]
    return [
        (
            "snapshot",
            {
                "id": manifest["snapshot_id"],
                "parents": parents,
                "parent_snapshot": manifest.get("parent"),
                "config_hash": manifest["config_hash"],
                "objects": summary["objects"],
                "curated_rows": summary["curated_rows"],
                "raw_rows": summary["raw_rows"],
                "quarantined_objects": summary["quarantined_objects"],
                "refs": [
                    {"key": index["key"], "sha256": index["sha256"], "lists_objects": True},
                ],
            },
        )
    ]


def record(log: AuditLog, items: list[Item]) -> list[Entry]:
    """Commit ``items`` as one segment; return the entries once they are durable."""
    return log.append_many(items)
