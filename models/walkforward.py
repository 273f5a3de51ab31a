"""Walk-forward evaluation: fit every model on each fold's past, score it on the fold's future.

:func:`run_walk_forward` joins the feature matrix to the labels, thins the rows, cuts time into
purged and embargoed folds (:mod:`models.splits`), fits each model per fold with its calibration
held out (:mod:`models.estimators`), and scores it in sample (its own training rows) and out of
sample (the fold's test rows), as a classifier and as a trading signal (:mod:`models.metrics`).
A model's ``overall`` score is computed on all its out-of-sample predictions together. Finally
each model is refitted on all rows, for registration.

Everything here is plain data in, plain data out: the Prefect task that runs it and the MLflow
adapter that records it live elsewhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.estimators import ESTIMATOR_NAMES, CalibratedModel, fit_calibrated
from models.metrics import (
    ClassificationMetrics,
    EconomicScore,
    classification_metrics,
    portfolio_economic_score,
)
from models.splits import Fold, WalkForwardSpec, walk_forward_splits
from tradeflow.progress import ProgressEvent, emit
from tradeflow.timeframes import MINUTE_MS

__all__ = [
    "PROGRESS_KEY",
    "Scores",
    "FoldModelResult",
    "WalkForwardResult",
    "training_frame",
    "run_walk_forward",
    "fold_report",
]

#: The key of the progress events :func:`run_walk_forward` emits.
PROGRESS_KEY = "walk-forward"
_KEYS = ["symbol", "timestamp"]
_LABEL_COLUMNS = ["forward_return", "label", "label_end"]


@dataclass(frozen=True)
class Scores:
    """A model's classification metrics and economic score on one set of rows."""

    classification: ClassificationMetrics
    economic: EconomicScore

    def to_dict(self) -> dict[str, float | int]:
        """Return all metrics in one flat mapping (``rows`` from the classification side)."""
        return {**self.classification.to_dict(), **self.economic.to_dict()}


@dataclass(frozen=True)
class FoldModelResult:
    """One model's result on one fold.

    Attributes:
        fold: The fold's number.
        model: The model's name.
        train_rows: Training rows after purging and the embargo.
        test_rows: Test rows.
        fit_rows: Training rows the base model was fitted on.
        calibration_rows: The latest training rows, held out to calibrate it.
        train_start: The first training time (ms).
        train_end: The training window's end (ms, exclusive).
        test_start: The test period's first time (ms).
        test_end: The test period's end (ms, exclusive).
        in_sample: Scores on the training rows.
        out_of_sample: Scores on the test rows.
        fit_seconds: Time spent fitting and calibrating.
    """

    fold: int
    model: str
    train_rows: int
    test_rows: int
    fit_rows: int
    calibration_rows: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int
    in_sample: Scores
    out_of_sample: Scores
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain values, the scores nested."""
        return {
            "fold": self.fold,
            "model": self.model,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "fit_rows": self.fit_rows,
            "calibration_rows": self.calibration_rows,
            "train_start": self.train_start,
            "train_end": self.train_end,
            "test_start": self.test_start,
            "test_end": self.test_end,
            "in_sample": self.in_sample.to_dict(),
            "out_of_sample": self.out_of_sample.to_dict(),
            "fit_seconds": self.fit_seconds,
        }


@dataclass(eq=False)
class WalkForwardResult:
    """Everything a walk-forward run produced.

    Attributes:
        spec: How time was cut.
        feature_columns: The features, in the order the models take them.
        model_names: The models evaluated.
        fee_rate: The fee per side the economic scores paid.
        row_step: Every ``row_step``-th minute was kept.
        rows: Labelled rows used (after thinning).
        symbols: The symbols present.
        folds: The folds, with their row positions into the thinned, time-ordered rows.
        results: One entry per fold and model, fold by fold.
        predictions: Out-of-sample predictions: ``symbol``, ``timestamp``, ``fold``, ``model``,
            ``probability``, ``label``, ``forward_return``, ``label_end`` (and ``regime`` when the
            matrix has it).
        importances: ``fold``, ``model``, ``feature``, ``importance`` (the model's own measure)
            and ``share`` (of the fold's total for that model).
        overall: Per model, the scores on all its out-of-sample predictions together.
        final_models: Per model, fitted on all rows (calibrated on the latest), for registration.
        seconds: Wall-clock time of the run.
    """

    spec: WalkForwardSpec
    feature_columns: list[str]
    model_names: list[str]
    fee_rate: float
    row_step: int
    rows: int
    symbols: list[str]
    folds: list[Fold]
    results: list[FoldModelResult]
    predictions: pd.DataFrame = field(repr=False)
    importances: pd.DataFrame = field(repr=False)
    overall: dict[str, Scores]
    final_models: dict[str, CalibratedModel] = field(repr=False)
    seconds: float

    def mean_importances(self, model: str) -> pd.Series:
        """Return ``model``'s mean importance share per feature across folds, largest first."""
        rows = self.importances[self.importances["model"] == model]
        return rows.groupby("feature")["share"].mean().sort_values(ascending=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the run's summary as plain values (no models, predictions or importances)."""
        return {
            "spec": self.spec.to_dict(),
            "feature_columns": list(self.feature_columns),
            "model_names": list(self.model_names),
            "fee_rate": self.fee_rate,
            "row_step": self.row_step,
            "rows": self.rows,
            "symbols": list(self.symbols),
            "folds": [fold.to_dict() for fold in self.folds],
            "results": [result.to_dict() for result in self.results],
            "overall": {name: scores.to_dict() for name, scores in self.overall.items()},
            "seconds": self.seconds,
        }


def training_frame(
    matrix: pd.DataFrame, labels: pd.DataFrame, feature_columns: Sequence[str], row_step: int = 1
) -> pd.DataFrame:
    """Return the labelled rows to learn from, in time order.

    Keeps the rows whose minute (since the epoch, so every symbol and every run picks the same
    ones) is a multiple of ``row_step``, joins the labels on ``(symbol, timestamp)``, drops rows
    whose label is unknown, and treats infinite feature values as missing.

    Args:
        matrix: ``symbol``, ``timestamp`` (int ms), the feature columns, optionally ``regime``.
        labels: ``symbol``, ``timestamp``, ``forward_return``, ``label`` (0, 1 or NaN) and
            ``label_end``, e.g. from :func:`models.labels.labels_by_symbol`.
        feature_columns: The numeric feature columns to keep.
        row_step: Keep every ``row_step``-th minute; 1 keeps all.

    Returns:
        ``symbol``, ``timestamp``, the features, ``regime`` (if present), ``forward_return``,
        ``label`` (int) and ``label_end`` (int ms), sorted by timestamp then symbol.

    Raises:
        ValueError: On missing columns, non-numeric features, duplicate keys or a bad step.
    """
    features = list(feature_columns)
    if row_step < 1:
        raise ValueError(f"row_step must be at least 1, got {row_step}")
    if not features:
        raise ValueError("no feature columns")
    for frame, needed, what in (
        (matrix, [*_KEYS, *features], "matrix"),
        (labels, [*_KEYS, *_LABEL_COLUMNS], "labels"),
    ):
        missing = [column for column in needed if column not in frame.columns]
        if missing:
            raise ValueError(f"the {what} lacks the columns {missing}")
    not_numeric = [column for column in features if not pd.api.types.is_numeric_dtype(matrix[column])]
    if not_numeric:
        raise ValueError(f"feature columns must be numeric: {not_numeric}")

    extra = ["regime"] if "regime" in matrix.columns and "regime" not in features else []
    kept_matrix = matrix.loc[(matrix["timestamp"] // MINUTE_MS) % row_step == 0, [*_KEYS, *features, *extra]]
    kept_labels = labels.loc[labels["label"].notna(), [*_KEYS, *_LABEL_COLUMNS]]
    for frame, what in ((kept_matrix, "matrix"), (kept_labels, "labels")):
        if frame.duplicated(_KEYS).any():
            raise ValueError(f"the {what} holds duplicate (symbol, timestamp) rows")
    joined = kept_matrix.merge(kept_labels, on=_KEYS, how="inner", validate="one_to_one")
    joined = joined.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)
    joined["timestamp"] = joined["timestamp"].astype(np.int64)
    joined["label"] = joined["label"].astype(np.int64)
    joined["label_end"] = joined["label_end"].astype(np.int64)
    values = joined[features].to_numpy(dtype=np.float64, na_value=np.nan)
    if not bool(np.isfinite(values[~np.isnan(values)]).all()):
        joined[features] = np.where(np.isinf(values), np.nan, values)
    return joined


def _scores(
    rows: pd.DataFrame, probabilities: npt.NDArray[np.float64], fee_rate: float, threshold: float, short: bool
) -> Scores:
    """Return the scores of ``probabilities`` on ``rows`` (with their labels and returns)."""
    scored = rows[["symbol", "timestamp", "label_end", "forward_return"]].assign(probability=probabilities)
    return Scores(
        classification=classification_metrics(rows["label"].to_numpy(), probabilities),
        economic=portfolio_economic_score(scored, fee_rate, threshold=threshold, allow_short=short),
    )


def _importance_rows(fold: int, model: CalibratedModel) -> list[dict[str, Any]]:
    """Return one importance row per feature, with its share of the model's total."""
    importances = model.feature_importances()
    total = sum(importances.values())
    return [
        {
            "fold": fold,
            "model": model.name,
            "feature": feature,
            "importance": value,
            "share": value / total if total > 0 else math.nan,
        }
        for feature, value in importances.items()
    ]


def run_walk_forward(
    matrix: pd.DataFrame,
    labels: pd.DataFrame,
    feature_columns: Sequence[str],
    spec: WalkForwardSpec,
    model_names: Sequence[str] = ESTIMATOR_NAMES,
    fee_rate: float = 0.001,
    row_step: int = 1,
    progress: Callable[[ProgressEvent], None] | None = None,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    calibration_fraction: float = 0.2,
    threshold: float = 0.5,
    allow_short: bool = False,
) -> WalkForwardResult:
    """Evaluate each model walk-forward and fit its final version on all rows.

    Args:
        matrix: The feature matrix: ``symbol``, ``timestamp``, features, optionally ``regime``.
        labels: The labels of the same symbols (see :func:`training_frame`).
        feature_columns: The features to learn from.
        spec: How to cut time into folds.
        model_names: Models from ``models.estimators.ESTIMATOR_NAMES``.
        fee_rate: The fee per side, for the economic scores (use the one the labels used).
        row_step: Keep every ``row_step``-th minute: fewer, less overlapping rows.
        progress: Receives a ``ProgressEvent`` after each fit; by default events go to
            ``tradeflow.progress.emit``.
        params: Per model name, hyperparameters overriding the defaults.
        calibration_fraction: The share of each training set held out to calibrate.
        threshold: Long above this probability, for the economic scores.
        allow_short: Also short below ``1 - threshold``.

    Returns:
        The folds, per-fold results, out-of-sample predictions, importances, overall scores and
        final models.

    Raises:
        ValueError: On bad inputs, or a fold or calibration set without both classes.
    """
    started = time.perf_counter()
    names = list(model_names)
    unknown = [name for name in names if name not in ESTIMATOR_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown or no models {unknown}; expected some of {ESTIMATOR_NAMES}")
    report = progress if progress is not None else emit
    params = params or {}
    features = list(feature_columns)
    rows = training_frame(matrix, labels, features, row_step)
    if rows.empty:
        raise ValueError("no labelled rows to learn from")
    timestamps = rows["timestamp"].to_numpy(dtype=np.int64)
    label_end = rows["label_end"].to_numpy(dtype=np.int64)
    values = rows[features].to_numpy(dtype=np.float64)
    target = rows["label"].to_numpy(dtype=np.int64)
    folds = walk_forward_splits(timestamps, label_end, spec)

    total = len(folds) * len(names) + len(names)
    done = 0
    results: list[FoldModelResult] = []
    prediction_frames: list[pd.DataFrame] = []
    importance_rows: list[dict[str, Any]] = []
    kept = ["symbol", "timestamp", "label", "forward_return", "label_end"]
    if "regime" in rows.columns:
        kept.append("regime")
    for fold in folds:
        train, test = fold.train_indices, fold.test_indices
        train_rows, test_rows = rows.iloc[train], rows.iloc[test]
        for name in names:
            fit_started = time.perf_counter()
            model = fit_calibrated(
                name,
                pd.DataFrame(values[train], columns=features, copy=False),
                target[train],
                calibration_fraction,
                params.get(name),
                timestamps=timestamps[train],
                label_end=label_end[train],
            )
            fit_seconds = time.perf_counter() - fit_started
            in_probabilities = model.predict_proba(values[train])
            out_probabilities = model.predict_proba(values[test])
            results.append(
                FoldModelResult(
                    fold=fold.index,
                    model=name,
                    train_rows=int(train.size),
                    test_rows=int(test.size),
                    fit_rows=model.fit_rows,
                    calibration_rows=model.calibration_rows,
                    train_start=fold.train_start,
                    train_end=fold.train_end,
                    test_start=fold.test_start,
                    test_end=fold.test_end,
                    in_sample=_scores(train_rows, in_probabilities, fee_rate, threshold, allow_short),
                    out_of_sample=_scores(test_rows, out_probabilities, fee_rate, threshold, allow_short),
                    fit_seconds=fit_seconds,
                )
            )
            prediction_frames.append(
                test_rows[kept].assign(fold=fold.index, model=name, probability=out_probabilities)
            )
            importance_rows.extend(_importance_rows(fold.index, model))
            done += 1
            report(ProgressEvent(PROGRESS_KEY, done, total))

    predictions = pd.concat(prediction_frames, ignore_index=True)
    predictions = predictions[["symbol", "timestamp", "fold", "model", "probability", *kept[2:]]].reset_index(
        drop=True
    )
    overall = {}
    for name in names:
        mine = predictions[predictions["model"] == name]
        overall[name] = _scores(mine, mine["probability"].to_numpy(), fee_rate, threshold, allow_short)

    final_models = {}
    everything = pd.DataFrame(values, columns=features, copy=False)
    for name in names:
        final_models[name] = fit_calibrated(
            name,
            everything,
            target,
            calibration_fraction,
            params.get(name),
            timestamps=timestamps,
            label_end=label_end,
        )
        done += 1
        report(ProgressEvent(PROGRESS_KEY, done, total, finished=done == total))

    return WalkForwardResult(
        spec=spec,
        feature_columns=features,
        model_names=names,
        fee_rate=fee_rate,
        row_step=row_step,
        rows=len(rows),
        symbols=sorted(rows["symbol"].astype(str).unique().tolist()),
        folds=folds,
        results=results,
        predictions=predictions,
        importances=pd.DataFrame(
            importance_rows, columns=["fold", "model", "feature", "importance", "share"]
        ),
        overall=overall,
        final_models=final_models,
        seconds=time.perf_counter() - started,
    )


#: The metrics ``fold_report`` puts side by side.
REPORT_METRICS = (
    "roc_auc",
    "log_loss",
    "accuracy",
    "precision",
    "recall",
    "brier",
    "sharpe",
    "total_return",
    "trades",
)


def fold_report(result: WalkForwardResult) -> pd.DataFrame:
    """Return one row per fold and model with in-sample and out-of-sample metrics side by side.

    Columns: ``fold``, ``model``, ``train_rows``, ``test_rows``, ``test_start``, ``test_end``,
    then ``in_sample_<metric>`` and ``out_of_sample_<metric>`` for each of ``REPORT_METRICS``,
    then the overfit gaps: ``overfit_gap`` (in-sample minus out-of-sample ROC AUC),
    ``overfit_gap_log_loss`` (out-of-sample minus in-sample log loss) and
    ``overfit_gap_sharpe`` (in-sample minus out-of-sample Sharpe). Positive gaps mean the model
    looks better on data it learnt from.
    """
    records = []
    for item in result.results:
        inside, outside = item.in_sample.to_dict(), item.out_of_sample.to_dict()
        record: dict[str, Any] = {
            "fold": item.fold,
            "model": item.model,
            "train_rows": item.train_rows,
            "test_rows": item.test_rows,
            "test_start": item.test_start,
            "test_end": item.test_end,
        }
        for metric in REPORT_METRICS:
            record[f"in_sample_{metric}"] = inside[metric]
            record[f"out_of_sample_{metric}"] = outside[metric]
        record["overfit_gap"] = inside["roc_auc"] - outside["roc_auc"]
        record["overfit_gap_log_loss"] = outside["log_loss"] - inside["log_loss"]
        record["overfit_gap_sharpe"] = inside["sharpe"] - outside["sharpe"]
        records.append(record)
    return pd.DataFrame.from_records(records)
