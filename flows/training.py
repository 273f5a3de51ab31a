"""The ``train-models`` flow: composition only."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows.features import build_features
from tasks.audit import checkpoint_audit
from tasks.training import evaluate_model, find_training, log_training, prepare_training, report_training
from tradeflow.config import Settings, load_settings


@flow(name="train-models", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def train_models(config_path: str | None = None, snapshot: str = "latest") -> dict[str, Any]:
    """Train and compare the configured models on a snapshot, walk-forward, and track them in MLflow.

    Labels are the direction of the forward return net of fees (or triple-barrier). Each model
    (LightGBM, logistic regression, random forest) is walked forward over the same folds, with
    purging and an embargo so no training label overlaps a test fold, calibrated on held-out
    data, and scored in and out of sample (ROC AUC, log loss, Brier, precision/recall and the
    Sharpe of trading its predictions after fees). The training is one MLflow parent run with
    nested runs per fold and model, plots, and every model registered; the best one replaces
    the champion only when it beats it on the same folds by the configured margin.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        snapshot: A snapshot id, a unique prefix, or ``latest``.
    """
    settings = load_settings(config_path)
    features = build_features(config_path=config_path, snapshot=snapshot)  # reused when nothing changed
    summary = training_stage(settings, features["snapshot_id"])
    checkpoint = checkpoint_audit(quote(settings), quote(summary["audit"]))
    return {
        "snapshot_id": features["snapshot_id"],
        "features": features["manifest"],
        "training": summary,
        "checkpoint": checkpoint,
    }


def training_stage(settings: Settings, snapshot_id: str) -> dict[str, Any]:
    """The training flow's composition after its features, without its checkpoint: the summary."""
    config = quote(settings)
    found = find_training(config, snapshot_id)
    if found["summary"] is not None:
        summary: dict[str, Any] = found["summary"] | {"reused": True, "audit": []}
        report_training(quote(summary))
        return summary
    data = prepare_training(config, snapshot_id)
    futures = [
        evaluate_model.submit(config, quote(data), model, found["key"]) for model in settings.training.models
    ]
    summary = log_training(
        config, snapshot_id, quote([f.result() for f in futures]), data["labelled_through"], found["key"]
    )
    report_training(quote(summary))
    return summary | {"reused": False}
