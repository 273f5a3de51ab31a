"""The daily pipeline: every stage in one flow run, by id; a re-run on the same window repeats nothing."""

from __future__ import annotations

from pathlib import Path

from tests.flows.test_ingest_flow import artifacts
from tests.integration.test_prefect_server import write_config
from tradeflow.audit.chain import iter_entries
from tradeflow.config import load_settings
from tradeflow.storage.objectstore import open_store


def test_the_daily_pipeline_chains_every_stage_by_id_and_a_rerun_reuses_them_all(tmp_path: Path):
    from flows.pipeline import STAGES, daily_pipeline
    from models.tracking import tracker_from_settings

    config = write_config(tmp_path)
    # Without order book and trade snapshots, the same pinned window is the same data.
    config.write_text(
        config.read_text()
        .replace("order_book_depth = 10", "order_book_depth = 0")
        .replace("trades_limit = 50", "trades_limit = 0")
    )
    settings = load_settings(config)
    store = open_store(settings.storage.url)
    first = daily_pipeline(config_path=str(config))
    assert list(first["seconds"]) == list(STAGES)
    assert first["ingest_sequence"] == 1 and first["validations"] and first["snapshot_id"]
    assert first["training"]["reused"] is False and first["signals_id"].startswith("signals-")
    assert first["allocation_id"].startswith("allocation-") and first["backtest_report"].endswith(
        "report.html"
    )
    entries = list(iter_entries(store))
    kinds = [e.kind for e in entries]
    for kind in ("ingest_batch", "validation", "snapshot", "feature_matrix", "backtest"):
        assert kind in kinds
    # One flow run wrote them all, and its summary artifact lists each stage's ids and time.
    assert len({e.actor for e in entries if e.kind != "config_change"}) == 1
    [summary] = artifacts("daily-pipeline-summary")[:1]
    assert first["snapshot_id"] in summary.data and "| backtest |" in summary.data
    assert first["features"]["feature_set_hash"] and first["features"]["feature_set_hash"] in summary.data

    objects = sorted(store.list(""))
    experiment = first["training"]["parent_run_id"]
    client = tracker_from_settings(settings).client
    runs = len(client.search_runs([client.get_run(experiment).info.experiment_id], max_results=1000))
    again = daily_pipeline(config_path=str(config))
    assert again["ingest_batch"] is None and again["validations"] == []
    assert again["snapshot_id"] == first["snapshot_id"]
    assert again["features"]["reused"] is True and again["training"]["reused"] is True
    assert again["training"]["parent_run_id"] == first["training"]["parent_run_id"]
    assert (again["signals_id"], again["allocation_id"], again["backtest_id"]) == (
        first["signals_id"], first["allocation_id"], first["backtest_id"]
    )  # fmt: skip
    assert again["audit_entries"] == 0
    assert sorted(store.list("")) == objects  # no object written, not even a checkpoint
    assert len(client.search_runs([client.get_run(experiment).info.experiment_id], max_results=1000)) == runs
