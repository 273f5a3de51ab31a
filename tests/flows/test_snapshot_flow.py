"""Snapshots and the audit chain through the real flows: ingest → validate → snapshot, under Prefect."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from flows.snapshot import snapshot_market_data
from tests.flows.test_ingest_flow import artifacts
from tradeflow.audit.chain import iter_entries
from tradeflow.audit.lineage import explain, index_entries
from tradeflow.audit.signing import key_id, private_key_text
from tradeflow.audit.verify import verify_chain
from tradeflow.bootstrap import trusted_public_keys
from tradeflow.canonical import content_hash
from tradeflow.cli import app
from tradeflow.config import load_settings
from tradeflow.snapshot import Snapshot, SnapshotError, list_snapshots, load_manifest, snapshot_key
from tradeflow.storage.lake import decode_parquet
from tradeflow.storage.objectstore import open_store

runner = CliRunner()


@pytest.fixture(scope="module")
def snapshotted(dirty_run):
    """The dirty run's lake after the snapshot flow ran once."""
    result = snapshot_market_data(config_path=dirty_run["config"])
    return dirty_run | {"snapshot": result["snapshot"], "checkpoint": result["checkpoint"]}


@pytest.fixture
def lake_copy(snapshotted, tmp_path):
    """A copy of the snapshotted lake (and its config) to damage without touching the shared one."""
    lake = tmp_path / "lake"
    shutil.copytree(snapshotted["store"].describe(), lake)
    text = Path(snapshotted["config"]).read_text().replace(snapshotted["store"].describe(), str(lake))
    config = tmp_path / "tradeflow.toml"
    config.write_text(text)
    return {"config": str(config), "store": open_store(str(lake)), "root": lake}


def test_a_snapshot_freezes_curated_and_raw_objects_under_the_hash_of_its_manifest(snapshotted):
    store, index = snapshotted["store"], snapshotted["snapshot"]
    assert index["created"] is True
    manifest = load_manifest(store, index["snapshot_id"])
    assert content_hash({k: v for k, v in manifest.items() if k != "snapshot_id"}) == index["snapshot_id"]
    layers = {o["layer"] for o in manifest["objects"]}
    assert layers == {"raw", "curated"}
    for obj in manifest["objects"][:50]:
        data = store.get(obj["key"])
        assert hashlib.sha256(data).hexdigest() == obj["sha256"]
        assert decode_parquet(data).num_rows == obj["rows"]
        assert obj["schema"] in manifest["schemas"]
    validation = snapshotted["result"]["runs"][0]
    assert manifest["validation"]["validation_id"] == validation["validation_id"]
    assert manifest["ingest"]["new_batches"] and manifest["parent"] is None
    # The drifting venue was quarantined: its raw objects are in the snapshot, flagged, and kept
    # out of what readers get by default.
    flagged = {o["venue"] for o in manifest["objects"] if o.get("quarantined")}
    assert flagged == {"sim-gamma"}
    opened = Snapshot.open(store, index["snapshot_id"][:10])
    assert not any(o["venue"] == "sim-gamma" for o in opened.objects(layer="raw", dataset="candles"))
    assert any(o["venue"] == "sim-gamma" for o in opened.objects(layer="raw", include_quarantined=True))


def test_reading_through_a_snapshot_gives_the_curated_series_and_a_rerun_makes_no_new_one(snapshotted):
    store, index = snapshotted["store"], snapshotted["snapshot"]
    candles = Snapshot.open(store, "latest").candles("BTC/USDT", "1m")
    validation = snapshotted["result"]["runs"][0]
    btc = next(g for g in validation["groups"] if g["symbol"] == "BTC/USDT" and g["timeframe"] == "1m")
    assert candles.num_rows == btc["curated_rows"] > 1000
    assert candles.column_names[:6] == ["timestamp", "open", "high", "low", "close", "volume"]
    with pytest.raises(SnapshotError, match="has no curated DOGE/USDT 1m candles"):
        Snapshot.open(store, "latest").candles("DOGE/USDT", "1m")

    again = snapshot_market_data(config_path=snapshotted["config"])["snapshot"]
    assert again["created"] is False and again["snapshot_id"] == index["snapshot_id"]
    assert len(list_snapshots(store)) == 1


def test_every_flow_records_its_steps_and_the_chain_verifies_with_a_checkpoint_per_run(snapshotted):
    store = snapshotted["store"]
    entries = list(iter_entries(store))
    kinds = [e.kind for e in entries]
    assert kinds[:2] == ["config_change", "ingest_batch"]
    assert "quarantine" in kinds and "validation" in kinds and kinds[-1] == "snapshot"
    assert kinds.index("quarantine") < kinds.index("validation") < kinds.index("snapshot")
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert all(e.actor.startswith("flow-run:") for e in entries)
    quarantine = next(e for e in entries if e.kind == "quarantine")
    assert "sim-gamma" in quarantine.payload["batch"] and quarantine.payload["parents"]

    keys = trusted_public_keys(load_settings(snapshotted["config"]))
    report = verify_chain(store, keys)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.checkpoints >= 3  # the ingest, validation and snapshot runs each signed one
    assert report.newest_checkpoint == report.head_seq == len(entries)
    assert report.objects > len(load_manifest(store, "latest")["objects"])  # refs and snapshot objects

    snapshot_id = snapshotted["snapshot"]["snapshot_id"]
    trail = [a for a in artifacts("audit-trail") if snapshot_id[:24] in a.data]
    assert trail and "| snapshot |" in trail[0].data and "Signed checkpoint" in trail[0].data


def test_explain_walks_a_snapshot_back_to_the_ingest_batch_and_its_config(snapshotted):
    store, index = snapshotted["store"], snapshotted["snapshot"]
    tree = explain(index_entries(iter_entries(store)), index["snapshot_id"][:12])
    assert tree.entry.kind == "snapshot"
    validation = next(c for c in tree.children if c.entry.kind == "validation")
    kinds = {c.entry.kind for c in validation.children}
    assert kinds == {"ingest_batch", "quarantine"}
    ingest = next(c for c in validation.children if c.entry.kind == "ingest_batch")
    assert [c.entry.kind for c in ingest.children] == ["config_change"]
    assert ingest.entry.payload["refs"][0]["key"] == "manifests/ingest/00000001.json"

    shown = runner.invoke(app, ["audit", "explain", "latest", "--config", snapshotted["config"]])
    assert shown.exit_code == 0, shown.output
    assert "snapshot" in shown.output and "ingest_batch" in shown.output and "config_change" in shown.output
    as_json = runner.invoke(app, ["audit", "explain", index["snapshot_id"][:8], "--json", "--config",
                                  snapshotted["config"]])  # fmt: skip
    assert json.loads(as_json.output)["id"] == index["snapshot_id"]
    missing = runner.invoke(app, ["audit", "explain", "ffffffffff", "--config", snapshotted["config"]])
    assert missing.exit_code == 1 and "no entry in the audit chain" in missing.output


def test_a_replaced_snapshot_object_is_refused_on_read_and_caught_by_audit_verify(lake_copy):
    store = lake_copy["store"]
    opened = Snapshot.open(store, "latest")
    target = opened.objects(layer="curated", symbol="ETH/USDT", timeframe="1m")[0]
    path = lake_copy["root"] / target["key"]
    other = opened.objects(layer="curated", symbol="BTC/USDT", timeframe="1m")[0]
    path.chmod(0o644)
    path.write_bytes((lake_copy["root"] / other["key"]).read_bytes())  # valid Parquet, wrong data

    with pytest.raises(SnapshotError, match="changed since the snapshot was taken"):
        opened.candles("ETH/USDT", "1m")
    result = runner.invoke(app, ["audit", "verify", "--full", "--config", lake_copy["config"]])
    assert result.exit_code == 1
    assert "object_altered" in result.output and target["key"] in result.output.replace("\n", "")
    snapshot_seq = next(e.seq for e in iter_entries(store) if e.kind == "snapshot")
    assert f"entry {snapshot_seq}" in result.output


def test_an_edited_snapshot_manifest_no_longer_opens(lake_copy):
    store = lake_copy["store"]
    snapshot_id = list_snapshots(store)[-1]["snapshot_id"]
    path = lake_copy["root"] / snapshot_key(snapshot_id)
    manifest = json.loads(path.read_text())
    manifest["objects"] = manifest["objects"][1:]  # quietly drop an object
    path.write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match="does not hash to its id"):
        Snapshot.open(store, snapshot_id)


def test_snapshot_commands_list_show_diff_and_restore(snapshotted, tmp_path):
    config = snapshotted["config"]
    snapshot_id = snapshotted["snapshot"]["snapshot_id"]
    listed = runner.invoke(app, ["snapshot", "list", "--config", config])
    assert listed.exit_code == 0 and snapshot_id[:16] in listed.output
    shown = runner.invoke(app, ["snapshot", "show", snapshot_id[:8], "--config", config])
    assert shown.exit_code == 0 and "curated/candles" in shown.output and "sim-gamma" in shown.output
    same = runner.invoke(app, ["snapshot", "diff", snapshot_id[:8], "latest", "--config", config])
    assert same.exit_code == 0 and "No data differs" in same.output

    target = tmp_path / "restored"
    restored = runner.invoke(app, ["snapshot", "restore", str(target), "--curated-only", "--config", config])
    assert restored.exit_code == 0, restored.output
    manifest = json.loads((target / "snapshot.json").read_text())
    curated = [o for o in manifest["objects"] if o["layer"] == "curated"]
    for obj in curated:
        assert hashlib.sha256((target / obj["key"]).read_bytes()).hexdigest() == obj["sha256"]
    assert not (target / "raw").exists()
    unknown = runner.invoke(app, ["snapshot", "show", "abcdef0", "--config", config])
    assert unknown.exit_code == 1 and "no snapshot 'abcdef0'" in unknown.output


def test_in_production_the_checkpoint_key_comes_from_a_prefect_secret_block(lake_copy):
    from prefect.blocks.system import Secret

    from tradeflow.audit.signing import Checkpoint, public_key_text

    key = Ed25519PrivateKey.generate()
    Secret(value=private_key_text(key)).save("tradeflow-audit-test-key", overwrite=True)
    shutil.rmtree(lake_copy["root"] / "manifests" / "snapshot")  # so the flow has a step to record
    config = Path(lake_copy["config"])
    config.write_text(config.read_text() + "\n[audit]\nmode = \"production\"\n"
                      "signing_key_block = \"tradeflow-audit-test-key\"\n"
                      f"public_keys = [\"{public_key_text(key.public_key())}\"]\n")  # fmt: skip
    result = snapshot_market_data(config_path=str(config))
    written = Checkpoint.from_bytes(lake_copy["store"].get(result["checkpoint"]["checkpoint"]))
    assert written.seq == result["checkpoint"]["head_seq"]
    assert written.key_id == key_id(key.public_key())
    report = verify_chain(lake_copy["store"], trusted_public_keys(load_settings(str(config))))
    assert report.ok and report.newest_checkpoint == written.seq


def test_validate_runs_the_candle_suite_on_a_snapshots_curated_series(snapshotted):
    snapshot_id = snapshotted["snapshot"]["snapshot_id"]
    result = runner.invoke(app, ["validate", snapshot_id[:10], "--config", snapshotted["config"]])
    assert result.exit_code == 0, result.output
    assert f"snapshot {snapshot_id}" in result.output.replace("\n", "")
    assert "BTC/USDT" in result.output and "completeness" in result.output
    assert "3 of 3 series passed" in result.output
    unknown = runner.invoke(app, ["validate", "no-such-thing", "--config", snapshotted["config"]])
    assert unknown.exit_code == 2 and "nor is it 'lake' or a snapshot id" in " ".join(unknown.output.split())
