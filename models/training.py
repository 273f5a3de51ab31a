"""Training as one call: labels, walk-forward, MLflow, the registry's aliases, the audit chain's items.

The Prefect tasks in ``tasks/training.py`` wrap these functions; a test of the logic never
needs Prefect. Everything MLflow-specific is in :mod:`models.tracking`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from models.labels import direction_labels, labels_by_symbol, triple_barrier_labels
from models.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    Candidate,
    Decision,
    LiveStatus,
    decide,
    live_status,
)
from models.splits import WalkForwardSpec
from models.tracking import LoggedModel, MlflowTracker, ModelOutcome, TrainingContext, TrainingRecord
from models.walkforward import WalkForwardResult, fold_report, run_walk_forward
from tradeflow.audit.chain import AuditLog, Entry
from tradeflow.bootstrap import audit_signing_key, build_audit_log
from tradeflow.canonical import content_hash, json_safe
from tradeflow.config import Settings, TrainingConfig
from tradeflow.features.build import feature_columns
from tradeflow.storage.objectstore import ObjectStore

Item = tuple[str, dict[str, Any]]


def version_id(tracker: MlflowTracker, version: str) -> str:
    """Return a model version's id in the audit chain: ``<registered model>/<version>``."""
    return f"{tracker.registered_model}/{version}"


def champion(tracker: MlflowTracker) -> tuple[str, str] | None:
    """Return the champion's ``(version, spec_id)``, or None if there is none."""
    holder = tracker.version_by_alias(CHAMPION_ALIAS)
    if holder is None:
        return None
    return str(holder.version), str((holder.tags or {}).get("tradeflow.spec_id", ""))


def promotion(
    tracker: MlflowTracker, logged: list[LoggedModel], metric: str, margin: float
) -> tuple[Decision, list[Item]]:
    """Apply the promotion rule to a training's models and set the aliases; return it and audit items."""
    candidates = [Candidate(m.name, m.version, m.spec_id, m.overall) for m in logged]
    decision = decide(candidates, champion(tracker), metric, margin)
    if decision.promote:
        tracker.set_alias(CHAMPION_ALIAS, decision.challenger)
        holder = tracker.version_by_alias(CHALLENGER_ALIAS)
        if holder is not None and str(holder.version) == decision.challenger:
            tracker.remove_alias(CHALLENGER_ALIAS)
    else:
        tracker.set_alias(CHALLENGER_ALIAS, decision.challenger)
    items: list[Item] = []
    if decision.promote:
        items.append(
            (
                "model_promotion",
                {
                    "id": f"{version_id(tracker, decision.challenger)}@champion",
                    "parents": [version_id(tracker, decision.challenger)],
                    "version": decision.challenger,
                    "previous_champion": decision.champion_before,
                    "evidence": decision.to_dict(),
                    "by": "promotion rule",
                },
            )
        )
    return decision, items


def promote_by_hand(settings: Settings, tracker: MlflowTracker, version: str, reason: str) -> Entry:
    """Make ``version`` the champion because a person said so; record it; return the audit entry.

    Raises:
        LookupError: if there is no such version.
    """
    known = {str(v.version): v for v in tracker.versions()}
    if version not in known:
        raise LookupError(
            f"{tracker.registered_model} has no version {version!r} (versions: {', '.join(known) or 'none'})"
        )
    before = champion(tracker)
    tracker.set_alias(CHAMPION_ALIAS, version)
    holder = tracker.version_by_alias(CHALLENGER_ALIAS)
    if holder is not None and str(holder.version) == version:
        tracker.remove_alias(CHALLENGER_ALIAS)
    tracker.tag_version(version, "tradeflow.promoted_by_hand", reason)
    log = audit_log(settings)
    entry = log.append(
        "model_promotion",
        {
            "id": f"{version_id(tracker, version)}@champion",
            "parents": [version_id(tracker, version)],
            "version": version,
            "previous_champion": None if before is None else before[0],
            "by": "hand",
            "reason": reason,
        },
    )
    log.checkpoint()
    return entry


def audit_log(settings: Settings, actor: str | None = None) -> AuditLog:
    """Return an audit log for a process outside Prefect (the CLI)."""
    return build_audit_log(settings, actor, audit_signing_key(settings))


def version_items(
    tracker: MlflowTracker, logged: list[LoggedModel], training_id: str, facts: Mapping[str, Any]
) -> list[Item]:
    """Return the audit items of a training run and of each version it registered."""
    items: list[Item] = [("training_run", {"id": training_id, **facts})]
    for model in logged:
        items.append(
            (
                "model_version",
                {
                    "id": version_id(tracker, model.version),
                    "parents": [training_id],
                    "model": model.name,
                    "run_id": model.run_id,
                    "spec_id": model.spec_id,
                    "out_of_sample": {k: round(v, 6) for k, v in model.overall.items()},
                },
            )
        )
    return items


# --- one training, end to end ------------------------------------------------------------------


def labels_for(config: TrainingConfig, candles: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Return the configured labels of every symbol's candles."""
    if config.label == "triple_barrier":
        labeller = partial(
            triple_barrier_labels,
            take_profit=config.take_profit,
            stop_loss=config.stop_loss,
            max_minutes=config.horizon_minutes,
            fee_rate=config.fee_rate,
        )
        return labels_by_symbol(candles, labeller)
    return labels_by_symbol(candles, partial(direction_labels, horizon_minutes=config.horizon_minutes,
                                             fee_rate=config.fee_rate))  # fmt: skip


def label_definition(config: TrainingConfig) -> dict[str, Any]:
    """Return what defines the labels (part of every model's spec id)."""
    definition: dict[str, Any] = {"label": config.label, "horizon_minutes": config.horizon_minutes,
                                  "fee_rate": config.fee_rate}  # fmt: skip
    if config.label == "triple_barrier":
        definition |= {"take_profit": config.take_profit, "stop_loss": config.stop_loss}
    return definition


def walk_forward_spec(config: TrainingConfig) -> WalkForwardSpec:
    """Return the walk-forward spec of the config."""
    return WalkForwardSpec(n_folds=config.folds, mode=config.window, embargo_minutes=config.embargo_minutes)


def evaluate(
    matrix: pd.DataFrame, labels: pd.DataFrame, config: TrainingConfig, model_names: list[str]
) -> WalkForwardResult:
    """Run the walk-forward evaluation of ``model_names`` (each on the very same folds)."""
    return run_walk_forward(
        matrix,
        labels,
        feature_columns(matrix),
        walk_forward_spec(config),
        model_names,
        fee_rate=config.fee_rate,
        row_step=config.row_step,
        calibration_fraction=config.calibration_fraction,
    )


def merge(results: list[WalkForwardResult]) -> WalkForwardResult:
    """Return one result holding the models of several runs over the same folds and rows."""
    first = results[0]
    for other in results[1:]:
        if [f.to_dict() for f in other.folds] != [f.to_dict() for f in first.folds]:
            raise ValueError("walk-forward results to merge were cut into different folds")
    return replace(
        first,
        model_names=[name for r in results for name in r.model_names],
        results=sorted((x for r in results for x in r.results), key=lambda x: (x.fold, x.model)),
        predictions=pd.concat([r.predictions for r in results], ignore_index=True),
        importances=pd.concat([r.importances for r in results], ignore_index=True),
        overall={k: v for r in results for k, v in r.overall.items()},
        final_models={k: v for r in results for k, v in r.final_models.items()},
        seconds=max(r.seconds for r in results),
    )


def spec_id(model: str, params: Mapping[str, Any], feature_hash: str, labels: Mapping[str, Any]) -> str:
    """Return what makes two trained models "the same model": name, parameters, features, labels."""
    return content_hash({"model": model, "params": {k: repr(v) for k, v in params.items()},
                         "feature_set_hash": feature_hash, "labels": dict(labels)})  # fmt: skip


def outcomes(result: WalkForwardResult, feature_hash: str, config: TrainingConfig) -> list[ModelOutcome]:
    """Return each model's walk-forward outcome in the tracker's terms."""
    found = []
    for name in result.model_names:
        final = result.final_models[name]
        mine = result.predictions[result.predictions["model"] == name]
        folds = [r.to_dict() for r in result.results if r.model == name]
        found.append(
            ModelOutcome(
                name=name,
                spec_id=spec_id(name, final.params, feature_hash, label_definition(config)),
                params=dict(final.params),
                folds=folds,
                overall={k: float(v) for k, v in result.overall[name].to_dict().items()},
                importances={str(k): float(v) for k, v in result.mean_importances(name).items()},
                oos_labels=mine["label"].to_numpy(dtype=np.int64),
                oos_probabilities=mine["probability"].to_numpy(dtype=np.float64),
                final_model=final.calibrator if final.calibrator is not None else final.estimator,
                input_example=pd.DataFrame(
                    np.zeros((2, len(final.feature_names))), columns=final.feature_names
                ),
                oos_predictions=mine[["symbol", "timestamp", "fold", "probability"]].reset_index(drop=True),
            )
        )
    return found


@dataclass
class TrainingSummary:
    """What one training did: MLflow ids, each model's out-of-sample scores, the promotion."""

    record: TrainingRecord
    decision: Decision
    champion: str | None
    rows: int
    folds: int
    seconds: float
    train_end: int
    audit_items: list[Item]

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (for the artifact, the CLI and JSON)."""
        return {
            "record": self.record.to_dict(),
            "decision": self.decision.to_dict(),
            "champion": self.champion,
            "rows": self.rows,
            "folds": self.folds,
            "seconds": self.seconds,
            "train_end": self.train_end,
        }


def record_training(
    settings: Settings,
    tracker: MlflowTracker,
    result: WalkForwardResult,
    context: TrainingContext,
    labelled_through: int | None = None,
) -> TrainingSummary:
    """Log a walk-forward result to MLflow, apply the promotion rule; return the summary and audit items."""
    config = settings.training
    report = fold_report(result)
    record = tracker.log_training(context, outcomes(result, context.feature_set_hash, config), report)
    # The newest labelled row the run could have used (thinning may have skipped it): live
    # accuracy is measured on rows after it, which no fold and no final model has seen.
    train_end = (
        labelled_through if labelled_through is not None else max(f.test_end for f in result.folds) - 1
    )
    for model in record.models:
        tracker.tag_version(model.version, "tradeflow.training_run", record.parent_run_id)
        tracker.tag_version(model.version, "tradeflow.train_end", str(train_end))
    decision, promotions = promotion(tracker, record.models, config.promotion_metric, config.promotion_margin)
    facts = {
        "parents": [context.snapshot_id],
        "experiment_id": record.experiment_id,
        "feature_set_hash": context.feature_set_hash,
        "config_hash": context.config_hash,
        "rows": result.rows,
        "folds": len(result.folds),
        "models": [m.name for m in record.models],
    }
    items = version_items(tracker, record.models, record.parent_run_id, facts) + promotions
    holder = champion(tracker)
    return TrainingSummary(record, decision, None if holder is None else holder[0], result.rows,
                           len(result.folds), result.seconds, train_end, items)  # fmt: skip


# --- live accuracy ------------------------------------------------------------------------------


@dataclass
class LiveCheck:
    """The champion's hit rate on data newer than its training, and what was done about it."""

    version: str | None
    status: LiveStatus | None
    disabled: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return plain data."""
        return {
            "version": self.version,
            "status": None if self.status is None else self.status.to_dict(),
            "disabled": self.disabled,
            "reason": self.reason,
        }


def serving_version(tracker: MlflowTracker) -> str | None:
    """Return the champion's version unless it is disabled; the signal stage then runs without a model."""
    holder = tracker.version_by_alias(CHAMPION_ALIAS)
    if holder is None or (holder.tags or {}).get("tradeflow.disabled") == "true":
        return None
    return str(holder.version)


def check_live(
    settings: Settings, tracker: MlflowTracker, matrix: pd.DataFrame, labels: pd.DataFrame
) -> tuple[LiveCheck, list[Item]]:
    """Score the champion on every labelled row newer than its training data; flag it under the floor.

    With ``training.auto_disable`` a flagged champion is disabled (tag ``tradeflow.disabled``)
    and :func:`serving_version` stops returning it. Returns the check and its audit items.
    """
    config = settings.training
    holder = tracker.version_by_alias(CHAMPION_ALIAS)
    if holder is None:
        return LiveCheck(None, None, False, "no champion yet"), []
    version, tags = str(holder.version), dict(holder.tags or {})
    train_end = int(tags.get("tradeflow.train_end", "0"))
    rows = matrix.merge(labels, on=["symbol", "timestamp"], how="inner")
    rows = rows[(rows["timestamp"] > train_end) & rows["label"].notna()].sort_values("timestamp")
    if rows.empty:
        return LiveCheck(version, None, False, "no labelled data newer than its training yet"), []
    model = tracker.load_version(version)
    columns = list(model.feature_names_in_)
    probabilities = model.predict_proba(rows[columns])[:, 1]
    outcomes_seen = rows["label"].astype(int).tolist()
    status = live_status(
        outcomes_seen, probabilities.tolist(), config.live_hit_rate_floor, config.live_window
    )
    if not status.below_floor:
        verdict = "a full window" if status.enough else f"{status.predictions} of {config.live_window} needed"
        return LiveCheck(version, status, False, f"hit rate {status.hit_rate:.1%} ({verdict})"), []
    rate, floor = f"{status.hit_rate:.1%}", f"{status.floor:.0%}"
    reason = f"live hit rate {rate} over {status.predictions} predictions, under the floor {floor}"
    tracker.tag_version(version, "tradeflow.flagged", reason)
    if config.auto_disable:
        tracker.tag_version(version, "tradeflow.disabled", "true")
    subject = version_id(tracker, version)
    payload = {"id": f"{subject}@flag", "parents": [subject], "status": status.to_dict(),
               "disabled": config.auto_disable, "reason": reason}  # fmt: skip
    item: Item = ("model_flag", payload)
    return LiveCheck(version, status, config.auto_disable, reason), [item]


TRAINING_RECORDS_PREFIX = "records/training"


def training_key(settings: Settings, snapshot_id: str, feature_set_hash: str, code_version: str) -> str:
    """Return the id of a training's inputs: the snapshot, feature set, training config and code.

    These fix the training (up to floating-point noise in the last bits of multi-threaded fits), so
    a second training with the same key would only repeat work and add duplicate MLflow runs,
    model versions and audit entries.
    """
    return content_hash(
        {
            "snapshot": snapshot_id,
            "feature_set_hash": feature_set_hash,
            "training": settings.training.model_dump(mode="json"),
            "code_version": code_version,
        }
    )


def load_training_record(store: ObjectStore, key: str) -> dict[str, Any] | None:
    """Return the stored summary of a finished training with this key, or None."""
    path = f"{TRAINING_RECORDS_PREFIX}/{key}.json"
    if not store.exists(path):
        return None
    loaded: dict[str, Any] = json.loads(store.get(path))
    return loaded


def save_training_record(store: ObjectStore, key: str, summary: Mapping[str, Any]) -> str:
    """Write a finished training's summary create-only under its key (the last step of a training)."""
    path = f"{TRAINING_RECORDS_PREFIX}/{key}.json"
    store.put_if_absent(path, json.dumps(json_safe(dict(summary)), indent=1, sort_keys=True).encode("utf-8"))
    return path
