"""The validate-market-data flow under Prefect, on data the local venues made dirty on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flows.ingest import ingest_market_data
from flows.validate import validate_market_data
from tradeflow.quality.validation import VALIDATION_PREFIX, SymbolUnusableError
from tradeflow.storage.lake import decode_parquet, latest_manifest, read_series, read_state, series_key
from tradeflow.storage.objectstore import open_store

MINUTE = 60_000
HOUR = 60 * MINUTE


def _batches(run, timeframe="1m"):
    return {
        (g["symbol"], b["venue"]): b
        for g in run["groups"] if g["timeframe"] == timeframe for b in g["batches"]
    }  # fmt: skip


def _check(batch, name):
    return next(c for c in batch["checks"] if c["check"] == name)


def test_holes_are_reported_exactly_where_the_stored_series_has_gaps(dirty_run):
    store = dirty_run["store"]
    state = read_state(store)
    batches = _batches(dirty_run["result"]["runs"][0])
    found_any = False
    for (symbol, venue), batch in batches.items():
        ts = read_series(store, state, series_key(venue, symbol, "1m")).column("timestamp").to_numpy()
        gaps = np.diff(ts)
        expected = [(int(ts[i] + MINUTE), int(gaps[i] // MINUTE - 1)) for i in np.flatnonzero(gaps > MINUTE)]
        holes = _check(batch, "completeness")["observed"]["listed"]
        assert [(h["start"], h["length"]) for h in holes] == expected
        found_any |= bool(expected)
        if venue in ("sim-gamma", "sim-delta"):
            assert expected == []
    assert found_any


def test_spikes_and_frozen_hours_are_flagged_and_kept_out_of_the_consensus(dirty_run):
    store = dirty_run["store"]
    run = dirty_run["result"]["runs"][0]
    manifest = latest_manifest(store, VALIDATION_PREFIX)
    spikes = frozen = 0
    for (symbol, venue), batch in _batches(run).items():
        if venue not in ("sim-alpha", "sim-beta"):
            continue
        assert batch["verdict"] == "warned"
        curated = {}
        for obj in manifest["curated"][f"{symbol}|1m"]["objects"]:
            table = decode_parquet(store.get(obj["key"])).to_pandas()
            curated.update(table.set_index("timestamp")[["close", "venues", "imputed"]].to_dict("index"))
        for spike in _check(batch, "price_spikes")["observed"]["listed"]:
            spikes += 1
            assert not spike["confirmed"]
            row = curated[spike["timestamp"]]
            assert venue not in row["venues"].split(",") and row["imputed"]
        for run_ in _check(batch, "frozen_prices")["observed"]["listed"]:
            frozen += 1
            assert run_["length"] >= 30 and run_["start"] % HOUR <= MINUTE  # a frozen simulator hour
            inside = [
                curated[t] for t in range(run_["start"], run_["start"] + run_["length"] * MINUTE, MINUTE)
            ]
            assert all(venue not in row["venues"].split(",") for row in inside)
    assert spikes > 0 and frozen > 0


def test_the_drifting_venue_is_quarantined_and_the_others_carry_the_symbol(dirty_run):
    store = dirty_run["store"]
    run = dirty_run["result"]["runs"][0]
    for timeframe in ("1m",):
        for (_, venue), batch in _batches(run, timeframe).items():
            if venue != "sim-gamma":
                assert batch["verdict"] != "quarantined", batch["reasons"]
                continue
            assert batch["reasons"] == ["cross_venue/cross_venue_discrepancy"]
            observed = _check(batch, "cross_venue_discrepancy")["observed"]
            assert observed["fraction"] > 0.9
            folder = batch["quarantine"]
            report = json.loads(store.get(f"{folder}/report.json"))
            assert report["verdict"] == "quarantined" and report["reasons"] == batch["reasons"]
            copied = sorted(k.rsplit("/", 1)[-1] for k in store.list(folder) if k.endswith(".parquet"))
            assert copied == sorted(k.rsplit("/", 1)[-1] for k in batch["objects"])
            assert all(store.exists(k) for k in batch["objects"])  # nothing deleted from raw/
    manifest = latest_manifest(store, VALIDATION_PREFIX)
    for entry in manifest["curated"].values():
        for obj in entry["objects"]:
            venues = set(
                ",".join(decode_parquet(store.get(obj["key"])).column("venues").to_pylist()).split(",")
            )
            assert "sim-gamma" not in venues


def test_reports_data_docs_and_the_manifest_are_in_the_store(dirty_run):
    store = dirty_run["store"]
    run = dirty_run["result"]["runs"][0]
    assert run["data_docs"].endswith("reports/validation/00000001/data_docs/index.html")
    index = store.get("reports/validation/00000001/data_docs/index.html").decode()
    assert "cross_venue" in index and "candles_1m" in index
    results = json.loads(store.get(run["reports"]["results"]))
    assert len(results["great_expectations"]) == 3 * 4 * 2 + 2 * 3 * 4  # candle + cross-venue, snapshots
    integrity = json.loads(store.get(run["reports"]["integrity"]["BTC/USDT"]))
    assert integrity["venues"]["sim-gamma"]["1m"]["verdict"] == "quarantined"
    assert integrity["days"] and integrity["curated"]["1m"]["rows"] > 0
    manifest = latest_manifest(store, VALIDATION_PREFIX)
    assert manifest["ingest"]["sequence"] == 1 and manifest["sequence"] == 1


def test_the_summary_artifact_links_the_data_docs(dirty_run):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["validation-summary"]))
        )
    assert any("data_docs/index.html" in (a.data or "") for a in artifacts)


def test_a_rerun_has_nothing_to_validate(dirty_run):
    again = validate_market_data(config_path=dirty_run["config"])
    assert again["runs"] == [] and again["validated_through"] == 1


def test_a_symbol_no_venue_can_vouch_for_fails_the_flow_naming_suite_and_check(write_config):
    config = write_config(venues=[("sim-alpha", 11, ["BTC/USDT"], ", spike_rate = 0.01")])
    path = Path(config)
    text = path.read_text().replace(
        'symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]', 'symbols = ["BTC/USDT"]'
    )
    path.write_text(text + '\n[validation]\npolicies = { price_spikes = "fail" }\n')
    ingest_market_data(config_path=config)
    expected = r"BTC/USDT 1m: no venue passed validation \(sim-alpha: candles/price_spikes"
    with pytest.raises(SymbolUnusableError, match=expected):
        validate_market_data(config_path=config)


def test_validation_writes_quarantine_curated_candles_and_data_docs_to_s3(
    write_config, moto_server, s3_bucket
):
    config = write_config(
        lake=f"s3://{s3_bucket}/lake",
        storage_extra=f's3_endpoint_url = "{moto_server}"',
        venues=[
            ("sim-alpha", 11, None, ""),
            ("sim-beta", 22, None, ""),
            ("sim-gamma", 33, None, ", drift_bps_per_day = 30.0"),
        ],
    )
    ingest_market_data(config_path=config)
    result = validate_market_data(config_path=config)
    store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    run = result["runs"][0]
    assert run["data_docs"] == f"s3://{s3_bucket}/lake/reports/validation/00000001/data_docs/index.html"
    assert "candles_1m" in store.get("reports/validation/00000001/data_docs/index.html").decode()
    gamma = [b for g in run["groups"] for b in g["batches"] if b["venue"] == "sim-gamma"]
    assert gamma and all(b["verdict"] == "quarantined" for b in gamma)
    assert all(store.exists(f"{b['quarantine']}/report.json") for b in gamma)
    manifest = latest_manifest(store, VALIDATION_PREFIX)
    assert set(manifest["curated"]) == {
        f"{s}|{t}" for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT") for t in ("1m", "1h")
    }
