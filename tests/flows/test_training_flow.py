"""build-features and train-models under Prefect, tracked in a real MLflow store (SQLite)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.flows.conftest import BASE_CONFIG, VENUE
from tests.flows.test_ingest_flow import artifacts
from tradeflow.audit.chain import iter_entries
from tradeflow.audit.lineage import explain, index_entries
from tradeflow.audit.verify import verify_chain
from tradeflow.bootstrap import trusted_public_keys
from tradeflow.cli import app
from tradeflow.config import load_settings
from tradeflow.storage.objectstore import open_store

runner = CliRunner()

TRAINING = """
[features]
params = { volume_profile_window_minutes = 1440, regime_atr_window = 1440, regime_atr_min_periods = 240 }
[training]
horizon_minutes = 60
folds = 3
embargo_minutes = 30
row_step = 5
models = ["lightgbm", "logistic"]
promotion_margin = 0.0
live_window = 50
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Four days of 1m candles from three clean venues: ingested, validated, snapshotted, trained."""
    from flows.ingest import ingest_market_data
    from flows.snapshot import snapshot_market_data
    from flows.training import train_models
    from flows.validate import validate_market_data

    root = tmp_path_factory.mktemp("training")
    text = BASE_CONFIG.format(data=root / "data", lake=root / "lake", profile="clean", storage_extra="")
    text = text.replace('timeframes = ["1m", "1h"]', 'timeframes = ["1m"]').replace("days = 1", "days = 4")
    text = text.replace("[ingest]", TRAINING + "[ingest]")
    for venue_id, seed in (("sim-alpha", 11), ("sim-beta", 22), ("sim-gamma", 33)):
        text += VENUE.format(id=venue_id, seed=seed, extra="", symbols="")
    config = root / "tradeflow.toml"
    config.write_text(text)
    ingest_market_data(config_path=str(config))
    validate_market_data(config_path=str(config))
    snapshot_market_data(config_path=str(config))
    first = train_models(config_path=str(config))
    return {"config": str(config), "root": root, "first": first, "store": open_store(str(root / "lake"))}


def tracker(trained):
    from models.tracking import tracker_from_settings

    return tracker_from_settings(load_settings(trained["config"]))


def test_a_training_is_tracked_with_nested_fold_runs_and_a_registered_champion(trained):
    summary = trained["first"]["training"]
    client = tracker(trained).client
    parent = client.get_run(summary["record"]["parent_run_id"])
    assert parent.data.tags["tradeflow.snapshot_id"] == trained["first"]["snapshot_id"]
    assert (
        parent.data.tags["tradeflow.feature_set_hash"] == trained["first"]["features"]["feature_set"]["hash"]
    )
    children = client.search_runs(
        [summary["record"]["experiment_id"]], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 3 * 2 + 2  # a run per fold and model, one per model over all folds
    versions = tracker(trained).versions()
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    champion = tracker(trained).version_by_alias("champion")
    best = max(summary["record"]["models"], key=lambda m: m["overall"]["roc_auc"])
    assert str(champion.version) == best["version"] == summary["champion"]
    assert summary["decision"]["promote"] and "no champion yet" in summary["decision"]["reason"]
    plots = {a.path for a in client.list_artifacts(best["run_id"], "plots")}
    assert "plots/calibration.png" in plots and "plots/feature_importance.png" in plots
    assert any("MLflow" in a.data for a in artifacts("training-summary"))


def test_the_audit_chain_explains_a_model_version_down_to_the_ingest_batch(trained):
    store = trained["store"]
    index = index_entries(iter_entries(store))
    registered = tracker(trained).registered_model
    tree = explain(index, f"{registered}/{trained['first']['training']['champion']}")
    kinds = []

    def walk(node):
        kinds.append(node.entry.kind)
        for child in node.children:
            walk(child)

    walk(tree)
    assert kinds[:3] == ["model_version", "training_run", "snapshot"]
    assert "ingest_batch" in kinds and "config_change" in kinds
    assert any(e.kind == "model_promotion" for e in index.values())
    assert any(e.kind == "feature_matrix" for e in index.values())
    report = verify_chain(store, trusted_public_keys(load_settings(trained["config"])))
    assert report.ok, [p.describe() for p in report.problems]


def test_a_rerun_with_the_same_inputs_reuses_the_training_and_writes_nothing(trained):
    from flows.training import train_models

    client, first = tracker(trained).client, trained["first"]["training"]
    experiment = first["record"]["experiment_id"]
    runs_before = len(client.search_runs([experiment], max_results=1000))
    versions_before = len(client.search_model_versions(f"name = '{first['registered_model']}'"))
    kinds_before = [e.kind for e in iter_entries(trained["store"])]
    again = train_models(config_path=trained["config"])
    assert again["features"]["reused"] is True and again["training"]["reused"] is True
    assert again["training"]["record"]["parent_run_id"] == first["record"]["parent_run_id"]
    assert again["training"]["training_key"] == first["training_key"]
    # No MLflow run, model version or audit entry is added (a checkpoint of nothing is not written).
    assert len(client.search_runs([experiment], max_results=1000)) == runs_before
    assert len(client.search_model_versions(f"name = '{first['registered_model']}'")) == versions_before
    assert [e.kind for e in iter_entries(trained["store"])] == kinds_before


def test_a_rerun_with_another_training_config_retrains_and_keeps_a_fair_champion(trained):
    from flows.training import train_models

    other = trained["root"] / "margin.toml"
    other.write_text(
        Path(trained["config"]).read_text().replace("promotion_margin = 0.0", "promotion_margin = 0.01")
    )
    again = train_models(config_path=str(other))
    assert again["training"]["reused"] is False
    assert again["training"]["training_key"] != trained["first"]["training"]["training_key"]
    assert again["features"]["reused"] is True
    assert again["features"]["key"] == trained["first"]["features"]["key"]
    decision = again["training"]["decision"]
    # The same models on the same data and folds score the same: the champion's model is still
    # the best, or the challenger does not beat it; either way nothing is promoted.
    assert not decision["promote"] and decision["champion_score"] is not None
    assert again["training"]["champion"] == trained["first"]["training"]["champion"]
    assert tracker(trained).version_by_alias("challenger") is not None


def test_the_backtest_trades_held_out_periods_and_saves_an_audited_report(trained):
    from flows.backtest import backtest
    from models.tracking import PREDICTIONS_ARTIFACT

    result = backtest(config_path=trained["config"])
    store, champion = trained["store"], trained["first"]["training"]["champion"]
    assert result["model_version"] == champion
    # Trading starts where the first walk-forward test fold starts: every decision is out of sample.
    folds = [f for m in trained["first"]["training"]["record"]["models"] for f in m.get("folds", [])]
    predictions = tracker(trained).oos_predictions(champion)
    assert predictions is not None and len(predictions) > 0 and PREDICTIONS_ARTIFACT.endswith(".parquet")
    equity = pd.read_parquet(io.BytesIO(store.get(result["keys"]["equity"])))
    assert int(equity["timestamp"].min()) == int(predictions["timestamp"].min())
    del folds
    html = store.get(result["keys"]["report"]).decode()
    assert html.count("<svg") >= 5 and "Monte Carlo" in html and "without ml" in html
    assert result["performance"]["trades"] == len(
        pd.read_parquet(io.BytesIO(store.get(result["keys"]["trades"])))
    )
    assert result["monte_carlo"]["scenarios"] == 10_000
    if result["performance"]["trades"] == 0:
        assert result["notes"] and result["notes"][0].startswith("No trades")
    assert [row["variant"] for row in result["ablation"]][:2] == ["all families", "without ml"]
    fills = pd.read_parquet(io.BytesIO(store.get(result["keys"]["fills"])))
    assert fills["fee"].sum() == pytest.approx(result["costs"]["fees"])
    # Audited with its lineage, logged to MLflow, summarised in a Prefect artifact.
    [entry] = [e for e in result["audit"] if e["kind"] == "backtest"]
    assert entry["payload"]["parents"][0] == trained["first"]["snapshot_id"]
    assert entry["payload"]["parents"][1].endswith(f"/{champion}")
    run = tracker(trained).client.get_run(result["mlflow_run"])
    assert "total_return" in run.data.metrics
    assert any(
        a.path == "backtest_report.html" for a in tracker(trained).client.list_artifacts(run.info.run_id)
    )
    assert artifacts("backtest-summary")
    # The same study again (here from the CLI) writes nothing new.
    before = sorted(store.list("reports/backtests/"))
    outcome = runner.invoke(app, ["backtest", "--config", trained["config"]], terminal_width=200)
    assert outcome.exit_code == 0, outcome.output
    assert "total return" in outcome.output and "Monte Carlo, 10,000 scenarios" in outcome.output
    assert result["keys"]["report"].split("/")[-2][:12] in outcome.output
    assert sorted(store.list("reports/backtests/")) == before
    # Reused as a whole: not simulated, logged or audited again.
    again = backtest(config_path=trained["config"])
    assert again["reused"] is True and again["id"] == result["id"] and again["audit"] == []
    assert again["mlflow_run"] == result["mlflow_run"]
    assert sum(e.kind == "backtest" for e in iter_entries(store)) == 1


def test_signals_and_target_weights_are_decided_audited_and_explained(trained):
    outcome = runner.invoke(app, ["signals", "--config", trained["config"]], terminal_width=200)
    assert outcome.exit_code == 0, outcome.output
    assert "target weight" in outcome.output and "p(up)" in outcome.output
    settings = load_settings(trained["config"])
    entries = list(iter_entries(trained["store"]))
    [allocation] = [e for e in entries if e.kind == "allocation"][-1:]
    weights = allocation.payload["weights"]
    assert set(weights) == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    assert all(abs(w) <= settings.strategy.max_symbol_weight + 1e-12 for w in weights.values())
    assert artifacts("target-weights") and artifacts("signals")
    for parent in allocation.payload["parents"]:
        assert parent.startswith("signal") or parent.startswith("signals-")


def test_models_commands_list_compare_and_promote_by_hand(trained):
    config = trained["config"]
    listed = runner.invoke(app, ["models", "list", "--config", config])
    assert listed.exit_code == 0 and "champion" in listed.output and "lightgbm" in listed.output
    compared = runner.invoke(app, ["models", "compare", "1", "2", "--config", config])
    assert compared.exit_code == 0 and "roc_auc" in compared.output and "same folds" in compared.output
    other = "1" if trained["first"]["training"]["champion"] == "2" else "2"
    promoted = runner.invoke(app, ["models", "promote", other, "--reason", "review", "--config", config])
    assert promoted.exit_code == 0, promoted.output
    assert str(tracker(trained).version_by_alias("champion").version) == other
    entry = [e for e in iter_entries(trained["store"]) if e.kind == "model_promotion"][-1]
    assert entry.payload["by"] == "hand" and entry.payload["reason"] == "review"
    missing = runner.invoke(app, ["models", "promote", "99", "--reason", "x", "--config", config])
    assert missing.exit_code == 1 and "no version '99'" in missing.output


def test_a_champion_under_the_live_floor_is_flagged_and_disabled(trained):
    from models.training import check_live, labels_for, serving_version
    from tradeflow.features.store import load_features, snapshot_candles
    from tradeflow.snapshot import Snapshot

    settings = load_settings(trained["config"])
    found = tracker(trained)
    version = str(found.version_by_alias("champion").version)
    snapshot = Snapshot.open(trained["store"], "latest")
    matrix = load_features(trained["store"], settings, snapshot.id)
    labels = labels_for(settings.training, snapshot_candles(snapshot, sorted(matrix["symbol"].unique())))
    fresh, items = check_live(settings, found, matrix, labels)
    assert fresh.status is None and not items  # trained up to the end: nothing newer yet
    # Pretend it was trained a day earlier, with a floor nobody reaches: the last day is "live".
    found.tag_version(version, "tradeflow.train_end", str(int(matrix["timestamp"].max()) - 86_400_000))
    strict = settings.model_copy(
        update={"training": settings.training.model_copy(update={"live_hit_rate_floor": 0.99})}
    )
    check, items = check_live(strict, found, matrix, labels)
    assert check.status is not None and check.status.enough and check.status.below_floor
    assert check.disabled and items[0][0] == "model_flag"
    assert serving_version(found) is None  # the signal stage runs without it


def test_features_commands_reuse_the_stored_matrix_and_show_the_hash(trained):
    config = trained["config"]
    built = runner.invoke(app, ["features", "build", "--config", config])
    assert built.exit_code == 0, built.output
    assert "Features (reused)" in built.output and "77 features" in built.output
    shown = runner.invoke(app, ["features", "show", "--config", config])
    assert trained["first"]["features"]["feature_set"]["hash"] in shown.output
    unknown = runner.invoke(app, ["features", "build", "--snapshot", "ffffff", "--config", config])
    assert unknown.exit_code == 1 and "no snapshot 'ffffff'" in unknown.output
