"""The MLflow adapter against a real tracking store (SQLite in a temp folder)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from models.tracking import CHAMPION, MlflowTracker, ModelOutcome, TrainingContext


@pytest.fixture
def tracker(tmp_path):
    return MlflowTracker(f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "artifacts"), "tradeflow-test")


def outcome(name: str, seed: int) -> ModelOutcome:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    y = (x["a"] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    p = model.predict_proba(x)[:, 1]
    folds = [
        {"fold": k, "train_rows": 200, "test_rows": 50, "in_sample": {"roc_auc": 0.9, "log_loss": 0.3},
         "out_of_sample": {"roc_auc": 0.8 - k / 100, "log_loss": 0.4}}
        for k in range(2)
    ]  # fmt: skip
    return ModelOutcome(name, f"{name}-spec", {"C": 1.0}, folds, {"roc_auc": 0.79, "log_loss": 0.41},
                        {"a": 3.0, "b": 0.2, "c": 0.1}, y.to_numpy(), p, model, x.head(3))  # fmt: skip


def test_a_training_is_one_parent_run_with_nested_fold_runs_plots_and_registered_versions(tracker):
    context = TrainingContext("direction_4h", "s" * 64, "default", "f" * 64, "c" * 64, "test", {"folds": 2})
    report = pd.DataFrame({"fold": [0, 1, 0, 1], "model": ["m1", "m1", "m2", "m2"],
                           "in_sample_roc_auc": [0.9] * 4,
                           "out_of_sample_roc_auc": [0.8, 0.79, 0.7, 0.71]})  # fmt: skip
    record = tracker.log_training(context, [outcome("m1", 1), outcome("m2", 2)], report)

    client = tracker.client
    runs = client.search_runs([record.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == record.parent_run_id]
    assert len(children) == 2 * 2 + 2  # a run per fold and model, and one per model over all folds
    parent = client.get_run(record.parent_run_id)
    assert parent.data.tags["tradeflow.snapshot_id"] == "s" * 64
    assert parent.data.tags["tradeflow.feature_set_hash"] == "f" * 64
    assert parent.data.metrics["m1_oos_roc_auc"] == pytest.approx(0.79)
    model_run = client.get_run(record.models[0].run_id)
    artifacts = {a.path for a in client.list_artifacts(model_run.info.run_id, "plots")}
    assert artifacts == {f"plots/{n}.png" for n in ("feature_importance", "calibration", "fold_report",
                                                     "confusion_matrix")}  # fmt: skip
    versions = tracker.versions()
    assert [str(v.version) for v in versions] == ["2", "1"]
    assert versions[-1].tags["tradeflow.spec_id"] == "m1-spec" and versions[-1].tags["oos_roc_auc"] == "0.79"

    tracker.set_alias(CHAMPION, "1")
    assert str(tracker.version_by_alias(CHAMPION).version) == "1"
    tracker.remove_alias(CHAMPION)
    assert tracker.version_by_alias(CHAMPION) is None

    import mlflow

    loaded = mlflow.sklearn.load_model(f"models:/tradeflow-test/{versions[0].version}")
    assert loaded.predict_proba(outcome("m2", 2).input_example).shape == (3, 2)
