"""The MLflow adapter: one parent run per training, nested runs per fold and model, the registry.

Everything MLflow-specific lives here, so the rest of ``models`` stays plain Python. The tracking
URI is always set explicitly (``sqlite:///<data>/mlflow.db`` by default; MLflow refuses its file
store), models are logged with a signature, an input example and explicit pip requirements
(inferring them costs seconds per model), and each model is registered as a version of one
registered model per target.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before MLflow is imported
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the CLI shows its own status

import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.models import infer_signature

from tradeflow.config import Settings

CHAMPION, CHALLENGER = "champion", "challenger"  # the registry aliases


@dataclass(frozen=True)
class TrainingContext:
    """What a training run was made from: recorded as tags on every run and model version."""

    target: str
    snapshot_id: str
    feature_set: str
    feature_set_hash: str
    config_hash: str
    code_version: str
    params: dict[str, Any]

    def tags(self) -> dict[str, str]:
        """Return the MLflow tags."""
        return {
            "tradeflow.target": self.target,
            "tradeflow.snapshot_id": self.snapshot_id,
            "tradeflow.feature_set": self.feature_set,
            "tradeflow.feature_set_hash": self.feature_set_hash,
            "tradeflow.config_hash": self.config_hash,
            "tradeflow.code_version": self.code_version,
        }


#: The artifact holding a model's walk-forward out-of-sample predictions.
PREDICTIONS_ARTIFACT = "oos_predictions.parquet"


@dataclass
class ModelOutcome:
    """One model's walk-forward result, as the tracker logs it."""

    name: str
    spec_id: str  # model name + params + feature set + label: what "the same model" means
    params: dict[str, Any]
    folds: list[
        dict[str, Any]
    ]  # {"fold", "train_rows", "test_rows", "in_sample": {...}, "out_of_sample": {...}}
    overall: dict[str, float]  # out-of-sample metrics over every fold's predictions
    importances: dict[str, float]
    oos_labels: np.ndarray
    oos_probabilities: np.ndarray
    final_model: Any  # fitted on all rows; predict_proba(DataFrame) -> (n, 2)
    input_example: pd.DataFrame
    # symbol, timestamp, fold, probability: each row predicted by the fold's model, trained without it
    oos_predictions: pd.DataFrame | None = None


@dataclass
class LoggedModel:
    """Where one model ended up: its nested run and registered version."""

    name: str
    run_id: str
    version: str
    overall: dict[str, float]
    spec_id: str


@dataclass
class TrainingRecord:
    """What a training run logged: ids to find it again."""

    experiment_id: str
    parent_run_id: str
    registered_model: str
    models: list[LoggedModel] = field(default_factory=list)
    run_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return plain data."""
        return {
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "registered_model": self.registered_model,
            "run_url": self.run_url,
            "models": [m.__dict__ for m in self.models],
        }


def pip_requirements() -> list[str]:
    """Return the exact packages a logged model needs (so MLflow does not infer them)."""
    import cloudpickle
    import lightgbm
    import sklearn

    return [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
    ]


def _plots(outcome: ModelOutcome, report: pd.DataFrame, folder: Path) -> list[Path]:
    """Write the model's plots into ``folder``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import ConfusionMatrixDisplay

    paths = []
    top = sorted(outcome.importances.items(), key=lambda kv: kv[1], reverse=True)[:20]
    figure, axes = plt.subplots(figsize=(7, 6))
    axes.barh([k for k, _ in reversed(top)], [v for _, v in reversed(top)])
    axes.set_title(f"{outcome.name}: feature importance (top {len(top)})")
    figure.tight_layout()
    paths.append(folder / "feature_importance.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(5, 5))
    if len(np.unique(outcome.oos_labels)) > 1:
        observed, predicted = calibration_curve(outcome.oos_labels, outcome.oos_probabilities, n_bins=10)
        axes.plot(predicted, observed, marker="o", label=outcome.name)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axes.set_xlabel("predicted probability")
    axes.set_ylabel("observed frequency")
    axes.set_title("calibration, out of sample")
    axes.legend()
    figure.tight_layout()
    paths.append(folder / "calibration.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)

    mine = report[report["model"] == outcome.name]
    figure, axes = plt.subplots(figsize=(7, 4))
    for column, style in (("in_sample_roc_auc", "-o"), ("out_of_sample_roc_auc", "-s")):
        if column in mine:
            axes.plot(
                mine["fold"], mine[column], style, label=column.replace("_roc_auc", "").replace("_", " ")
            )
    axes.axhline(0.5, color="grey", linestyle="--")
    axes.set_xlabel("fold")
    axes.set_ylabel("ROC AUC")
    axes.set_title(f"{outcome.name}: in-sample vs out-of-sample per fold")
    axes.legend()
    figure.tight_layout()
    paths.append(folder / "fold_report.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        outcome.oos_labels, (outcome.oos_probabilities > 0.5).astype(int), ax=axes, colorbar=False
    )
    axes.set_title(f"{outcome.name}: out of sample")
    figure.tight_layout()
    paths.append(folder / "confusion_matrix.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)
    return paths


def _metrics(prefix: str, values: Mapping[str, Any]) -> dict[str, float]:
    found = {}
    for key, value in values.items():
        if isinstance(value, int | float | np.floating | np.integer) and np.isfinite(value):
            found[f"{prefix}{key}"] = float(value)
    return found


class MlflowTracker:
    """Log trainings to MLflow and keep the registry's aliases."""

    def __init__(self, tracking_uri: str, artifact_location: str | None, registered_model: str) -> None:
        """Use the tracking store at ``tracking_uri`` (set explicitly, never MLflow's default)."""
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.registered_model = registered_model
        # MLflow chats at INFO/WARNING about environments it is not asked to infer; keep errors.
        logging.getLogger("mlflow").setLevel(logging.ERROR)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def experiment(self, target: str) -> str:
        """Return the id of the target's experiment, creating it if needed."""
        name = f"tradeflow/{target}"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        return str(self.client.create_experiment(name, artifact_location=self.artifact_location))

    def log_training(
        self, context: TrainingContext, outcomes: Sequence[ModelOutcome], report: pd.DataFrame
    ) -> TrainingRecord:
        """Log one walk-forward training: the parent run, a nested run per fold and model, models.

        Every model is logged (signature, input example, explicit requirements) and registered as
        a new version of the target's registered model, tagged with what it was made from.
        """
        experiment_id = self.experiment(context.target)
        record = TrainingRecord(experiment_id, "", self.registered_model)
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"train {context.snapshot_id[:12]}", tags=context.tags()
        ) as parent:
            record.parent_run_id = parent.info.run_id
            mlflow.log_params({k: str(v) for k, v in context.params.items()})
            with tempfile.TemporaryDirectory(prefix="tradeflow-mlflow-") as folder:
                report_path = Path(folder) / "fold_report.csv"
                report.to_csv(report_path, index=False)
                mlflow.log_artifact(str(report_path))
            for outcome in outcomes:
                for fold in outcome.folds:
                    with mlflow.start_run(
                        experiment_id=experiment_id,
                        run_name=f"fold {fold['fold']} · {outcome.name}",
                        nested=True,
                        tags=context.tags()
                        | {"tradeflow.model": outcome.name, "tradeflow.fold": str(fold["fold"])},
                    ):
                        sizes = {"train_rows": fold["train_rows"], "test_rows": fold["test_rows"]}
                        mlflow.log_params({"model": outcome.name, "fold": fold["fold"], **sizes})
                        mlflow.log_metrics(
                            _metrics("in_sample_", fold["in_sample"])
                            | _metrics("oos_", fold["out_of_sample"])
                        )
                record.models.append(self._log_model(experiment_id, context, outcome, report))
            mlflow.log_metrics(
                {f"{m.name}_oos_{k}": v for m in record.models for k, v in _metrics("", m.overall).items()}
            )
        run = self.client.get_run(record.parent_run_id)
        record.run_url = f"#/experiments/{experiment_id}/runs/{run.info.run_id}"
        return record

    def _log_model(
        self, experiment_id: str, context: TrainingContext, outcome: ModelOutcome, report: pd.DataFrame
    ) -> LoggedModel:
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{outcome.name} · all folds",
            nested=True,
            tags=context.tags() | {"tradeflow.model": outcome.name, "tradeflow.spec_id": outcome.spec_id},
        ) as run:
            mlflow.log_params(
                {f"model.{k}": str(v) for k, v in outcome.params.items()} | {"model": outcome.name}
            )
            mlflow.log_metrics(_metrics("oos_", outcome.overall))
            with tempfile.TemporaryDirectory(prefix="tradeflow-mlflow-") as folder:
                for path in _plots(outcome, report, Path(folder)):
                    mlflow.log_artifact(str(path), artifact_path="plots")
                importance = Path(folder) / "feature_importance.csv"
                pd.Series(outcome.importances, name="importance").sort_values(ascending=False).to_csv(
                    importance
                )
                mlflow.log_artifact(str(importance))
                if outcome.oos_predictions is not None:
                    predictions = Path(folder) / PREDICTIONS_ARTIFACT
                    outcome.oos_predictions.to_parquet(predictions, index=False)
                    mlflow.log_artifact(str(predictions))
            example = outcome.input_example
            signature = infer_signature(example, outcome.final_model.predict_proba(example))
            info = mlflow.sklearn.log_model(
                outcome.final_model,
                name="model",
                # skops refuses LightGBM's and the calibrator's classes unless each is trusted by
                # name; the model is loaded by this project from its own registry.
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
            )
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                # register_model prints "Successfully registered ..." itself; the CLI says it better.
                version = mlflow.register_model(
                    info.model_uri,
                    self.registered_model,
                    tags=context.tags()
                    | {"tradeflow.model": outcome.name, "tradeflow.spec_id": outcome.spec_id}
                    | {f"oos_{k}": f"{v:.6g}" for k, v in _metrics("", outcome.overall).items()},
                )
            return LoggedModel(outcome.name, run.info.run_id, str(version.version), dict(outcome.overall),
                               outcome.spec_id)  # fmt: skip

    # --- the registry -------------------------------------------------------------------------

    def version_by_alias(self, alias: str) -> Any | None:
        """Return the model version holding ``alias``, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.registered_model, alias)
        except MlflowException:
            return None

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``."""
        self.client.set_registered_model_alias(self.registered_model, alias, version)

    def remove_alias(self, alias: str) -> None:
        """Remove ``alias`` if it is set."""
        if self.version_by_alias(alias) is not None:
            self.client.delete_registered_model_alias(self.registered_model, alias)

    def versions(self) -> list[Any]:
        """Return every version of the registered model, newest first."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name = '{self.registered_model}'")
        except MlflowException:
            return []
        return sorted(found, key=lambda v: int(v.version), reverse=True)  # versions are str or int

    def aliases(self) -> dict[str, list[str]]:
        """Return the aliases of each version (version -> aliases)."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.registered_model)
        except MlflowException:
            return {}
        found: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            found.setdefault(str(version), []).append(alias)
        return found

    def tag_version(self, version: str, key: str, value: str) -> None:
        """Set a tag on one model version."""
        self.client.set_model_version_tag(self.registered_model, version, key, value)

    def load_version(self, version: str) -> Any:
        """Return a registered version's model (the logged scikit-learn object)."""
        return mlflow.sklearn.load_model(f"models:/{self.registered_model}/{version}")

    def log_backtest(self, study_id: str, summary: Mapping[str, Any], html: str, version: str | None) -> str:
        """Log a backtest as a run of ``tradeflow/backtests``: metrics, the HTML report; return its id."""
        experiment_id = self.experiment("backtests")
        tags = {"tradeflow.study": study_id, "tradeflow.snapshot_id": str(summary.get("snapshot_id")),
                "tradeflow.model_version": str(version)}  # fmt: skip
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"backtest {study_id[:12]}", tags=tags
        ) as run:
            numbers = {
                **summary.get("performance", {}),
                **{f"cost_{k}": v for k, v in summary.get("costs", {}).items()},
            }
            carlo = summary.get("monte_carlo") or {}
            numbers |= {f"mc_{k}": v for k, v in carlo.items()}
            mlflow.log_metrics(_metrics("", {k: v for k, v in numbers.items() if isinstance(v, int | float)}))
            with tempfile.TemporaryDirectory(prefix="tradeflow-mlflow-") as folder:
                path = Path(folder) / "backtest_report.html"
                path.write_text(html, encoding="utf-8")
                mlflow.log_artifact(str(path))
            return str(run.info.run_id)

    def oos_predictions(self, version: str) -> pd.DataFrame | None:
        """Return a version's walk-forward out-of-sample predictions, or None if it has none.

        ``symbol``, ``timestamp``, ``fold``, ``probability``: every row was predicted by the
        model of the fold whose test period holds it, trained without that period.
        """
        from mlflow.exceptions import MlflowException

        run_id = self.client.get_model_version(self.registered_model, version).run_id
        try:
            with tempfile.TemporaryDirectory(prefix="tradeflow-mlflow-") as folder:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path=PREDICTIONS_ARTIFACT,
                    dst_path=folder,
                    tracking_uri=self.tracking_uri,
                )
                return pd.read_parquet(path)
        except (MlflowException, OSError):
            return None

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """Return a run's metrics."""
        return dict(self.client.get_run(run_id).data.metrics)


def tracking_uri(settings: Settings) -> str:
    """Return the configured tracking URI, or the default SQLite store in the data folder."""
    configured = settings.mlflow.tracking_uri
    return configured or f"sqlite:///{(settings.data_dir.resolve() / 'mlflow.db').as_posix()}"


def tracker_from_settings(settings: Settings) -> MlflowTracker:
    """Return the tracker the config names (always an explicit URI; local artifacts by default)."""
    artifacts = settings.mlflow.artifact_location or (settings.data_dir.resolve() / "mlartifacts").as_uri()
    name = settings.mlflow.registered_model.format(target=settings.training.target)
    settings.data_dir.resolve().mkdir(parents=True, exist_ok=True)
    return MlflowTracker(tracking_uri(settings), artifacts, name)
