"""Prefect tasks of the ``train-models`` flow: labels, a walk-forward per model, MLflow, promotion."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models.tracking import TrainingContext, tracker_from_settings
from models.training import (
    TrainingSummary,
    evaluate,
    labels_for,
    load_training_record,
    merge,
    record_training,
    save_training_record,
    training_key,
)
from models.walkforward import WalkForwardResult
from tasks.audit import record_steps
from tradeflow.bootstrap import build_store
from tradeflow.config import Settings
from tradeflow.features.store import feature_spec, load_features, snapshot_candles
from tradeflow.snapshot import Snapshot

_DEFAULTS: dict[str, Any] = {"cache_policy": NO_CACHE}


def code_version() -> str:
    """Return the code's git commit (with ``-dirty`` for uncommitted changes), or ``unknown``."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              timeout=5, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


@task(name="find-training", **_DEFAULTS)
def find_training(settings: Settings, snapshot_id: str) -> dict[str, Any]:
    """Key this training by its inputs' ids; return the key and the stored summary if it already ran."""
    key = training_key(settings, snapshot_id, feature_spec(settings).hash, code_version())
    return {"key": key, "summary": load_training_record(build_store(settings), key)}


def _evaluation_key(context: Any, parameters: dict[str, Any]) -> str:
    return f"evaluate-model-{parameters['training_key']}-{parameters['model']}"


@task(name="prepare-training", **_DEFAULTS)
def prepare_training(settings: Settings, snapshot_id: str) -> dict[str, Any]:
    """Load the snapshot's feature matrix and label its candles (read and re-hashed through the snapshot)."""
    matrix = load_features(build_store(settings), settings, snapshot_id)
    symbols = sorted(matrix["symbol"].unique())
    candles = snapshot_candles(Snapshot.open(build_store(settings), snapshot_id), symbols)
    labels = labels_for(settings.training, candles)
    known = labels.loc[labels["label"].notna(), "timestamp"]
    return {"matrix": matrix, "labels": labels, "labelled_through": int(known.max()) if len(known) else None}


# Cached by the training's input ids and the model: a re-run after a failure further on (MLflow
# down, say) reuses each walk-forward instead of repeating minutes of fitting.
@task(
    name="evaluate-model",
    cache_key_fn=_evaluation_key,
    cache_expiration=timedelta(days=7),
    persist_result=True,
)
def evaluate_model(
    settings: Settings, data: dict[str, Any], model: str, training_key: str
) -> WalkForwardResult:
    """Walk one model forward (fit, calibrate, score in and out of sample), then fit it on all rows.

    ``training_key`` (from :func:`find_training`) names the inputs; with the model it is the cache key.
    """
    return evaluate(data["matrix"], data["labels"], settings.training, [model])


@task(name="log-training", **_DEFAULTS)
def log_training(
    settings: Settings,
    snapshot_id: str,
    results: list[WalkForwardResult],
    labelled_through: int | None,
    training_key: str,
) -> dict[str, Any]:
    """Log the training to MLflow (nested fold runs, plots, registered versions), promote, audit it.

    The summary is then stored under ``training_key``, so a re-run with the same inputs reuses it.
    """
    result = merge(results)
    spec = feature_spec(settings)
    config = settings.training
    context = TrainingContext(
        target=config.target,
        snapshot_id=snapshot_id,
        feature_set=spec.name,
        feature_set_hash=spec.hash,
        config_hash=settings.config_hash,
        code_version=code_version(),
        params={
            "label": config.label,
            "horizon_minutes": config.horizon_minutes,
            "fee_rate": config.fee_rate,
            "folds": config.folds,
            "window": config.window,
            "embargo_minutes": config.embargo_minutes,
            "row_step": config.row_step,
            "calibration_fraction": config.calibration_fraction,
            "models": ",".join(config.models),
            "rows": result.rows,
            "features": len(result.feature_columns),
        },
    )
    tracker = tracker_from_settings(settings)
    summary: TrainingSummary = record_training(settings, tracker, result, context, labelled_through)
    entries = record_steps(settings, summary.audit_items)
    document = summary.to_dict() | {
        "tracking_uri": tracker.tracking_uri,
        "registered_model": tracker.registered_model,
        "training_key": training_key,
        "audit_seqs": [entry["seq"] for entry in entries],
    }
    save_training_record(build_store(settings), training_key, document)
    return document | {"audit": entries}


def training_markdown(summary: dict[str, Any]) -> str:
    """Return the ``training-summary`` artifact: headline metrics and where to look."""
    record, decision = summary["record"], summary["decision"]
    lines = [
        f"# Training of {summary['registered_model']}",
        "",
        f"{summary['rows']:,} rows, {summary['folds']} walk-forward folds, {summary['seconds']:.1f} s.",
        "",
        "| model | version | OOS ROC AUC | OOS log loss | OOS Brier | OOS Sharpe (after fees) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model in record["models"]:
        o = model["overall"]
        lines.append(
            f"| {model['name']} | {model['version']} | {o.get('roc_auc', float('nan')):.4f} | "
            f"{o.get('log_loss', float('nan')):.4f} | {o.get('brier', float('nan')):.4f} | "
            f"{o.get('sharpe', float('nan')):.2f} |"
        )
    verdict = "promoted to champion" if decision["promote"] else "not promoted"
    lines += [
        "",
        f"Best of this run: v{decision['challenger']}, {verdict}: {decision['reason']}.",
        f"Champion now: v{summary['champion']}.",
        "",
        f"MLflow: experiment {record['experiment_id']}, run `{record['parent_run_id']}` "
        f"(`{summary['tracking_uri']}`; open it with `make mlflow`, then {record['run_url']}).",
    ]
    return "\n".join(lines)


@task(name="report-training", **_DEFAULTS)
def report_training(summary: dict[str, Any]) -> None:
    """Publish the headline metrics and the MLflow link as a Prefect markdown artifact."""
    create_markdown_artifact(
        key="training-summary",
        markdown=training_markdown(summary),
        description="Out-of-sample scores per model, the promotion decision, the MLflow run",
    )
