"""Three direction classifiers behind one interface, with probabilities calibrated out of sample.

- ``lightgbm``: gradient-boosted trees (``lightgbm.LGBMClassifier``), missing values handled
  natively. Its ``lightgbm.Booster`` is what gets registered.
- ``logistic``: the baseline; median imputation, standardisation and a logistic regression.
- ``random_forest``: median imputation and a random forest.

All three weight the classes to balance them, which moves their raw scores away from
probabilities; :func:`fit_calibrated` therefore maps the scores to probabilities with a sigmoid
(Platt scaling) fitted on the **latest** rows of the training data, which the base model never
saw. Every model is seeded and uses two threads, so a refit on the same data gives the same
model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import lightgbm
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV  # type: ignore[import-untyped, unused-ignore]
from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped, unused-ignore]
from sklearn.frozen import FrozenEstimator  # type: ignore[import-untyped, unused-ignore]
from sklearn.impute import SimpleImputer  # type: ignore[import-untyped, unused-ignore]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped, unused-ignore]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped, unused-ignore]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "ESTIMATOR_NAMES",
    "DEFAULT_SEED",
    "Classifier",
    "CalibratedModel",
    "default_params",
    "make_estimator",
    "fit_calibrated",
]

#: The models this module builds, by name.
ESTIMATOR_NAMES = ("lightgbm", "logistic", "random_forest")
#: The seed every model uses unless ``params`` names another.
DEFAULT_SEED = 7
_THREADS = 2

FeatureMatrix = pd.DataFrame | npt.NDArray[Any]


class Classifier(Protocol):
    """What the training code needs of a scikit-learn style binary classifier."""

    def fit(self, X: Any, y: Any) -> Any:  # noqa: N803 - scikit-learn's argument name
        """Fit on features ``X`` and labels ``y``."""

    def predict_proba(self, X: Any) -> Any:  # noqa: N803
        """Return an (n, 2) array of class probabilities."""


def default_params(name: str) -> dict[str, Any]:
    """Return the default hyperparameters of the model ``name`` (a fresh dict).

    Raises:
        ValueError: If ``name`` is not one of ``ESTIMATOR_NAMES``.
    """
    if name == "lightgbm":
        return {
            "n_estimators": 200,
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_child_samples": 50,
            "class_weight": "balanced",
            "random_state": DEFAULT_SEED,
            "n_jobs": _THREADS,
            # Same model from the same data on any run: no racy histogram merges.
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
        }
    if name == "logistic":
        return {"C": 1.0, "class_weight": "balanced", "max_iter": 2000, "random_state": DEFAULT_SEED}
    if name == "random_forest":
        return {
            "n_estimators": 200,
            "max_depth": 8,
            "min_samples_leaf": 20,
            # Each tree sees a quarter of the rows: rows with overlapping label windows are
            # near-copies, so full-size bootstraps add little but time (López de Prado, AFML 6.3,
            # sets this to the labels' average uniqueness). About 3x faster on 20k rows.
            "max_samples": 0.25,
            "class_weight": "balanced_subsample",
            "n_jobs": _THREADS,
            "random_state": DEFAULT_SEED,
        }
    raise ValueError(f"unknown estimator {name!r}; expected one of {ESTIMATOR_NAMES}")


def make_estimator(name: str, params: Mapping[str, Any] | None = None) -> Classifier:
    """Return an unfitted classifier ``name`` with the defaults overridden by ``params``.

    ``params`` go to the classifier itself (``LGBMClassifier``, ``LogisticRegression`` or
    ``RandomForestClassifier``), not to the imputation or scaling steps in front of it.

    Raises:
        ValueError: If ``name`` is not one of ``ESTIMATOR_NAMES``.
    """
    merged = {**default_params(name), **(params or {})}
    if name == "lightgbm":
        return lightgbm.LGBMClassifier(**merged)
    # keep_empty_features: an all-missing column stays (as zeros), so importances line up with names.
    imputer = SimpleImputer(strategy="median", keep_empty_features=True)
    if name == "logistic":
        steps = [("impute", imputer), ("scale", StandardScaler()), ("classify", LogisticRegression(**merged))]
    else:
        steps = [("impute", imputer), ("classify", RandomForestClassifier(**merged))]
    pipeline: Classifier = Pipeline(steps)
    return pipeline


def _as_matrix(features: FeatureMatrix) -> tuple[npt.NDArray[np.float64], list[str]]:
    """Return ``features`` as a float matrix (NaN for missing) and its column names."""
    if isinstance(features, pd.DataFrame):
        names = [str(column) for column in features.columns]
        return features.to_numpy(dtype=np.float64, na_value=np.nan), names
    matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"features must be two-dimensional, got shape {matrix.shape}")
    return matrix, [f"feature_{index}" for index in range(matrix.shape[1])]


def _named(matrix: npt.NDArray[np.float64], names: list[str]) -> pd.DataFrame:
    """Return ``matrix`` as a frame with the feature names.

    Models are fitted and asked with named columns, so the booster records the real feature
    names and scikit-learn can check that a prediction gets the columns the model learnt.
    """
    return pd.DataFrame(matrix, columns=names, copy=False)


@dataclass(eq=False)
class CalibratedModel:
    """A fitted base model and the sigmoid calibration fitted on later, held-out rows.

    Attributes:
        name: The model's name, one of ``ESTIMATOR_NAMES``.
        estimator: The fitted base classifier (a ``LGBMClassifier`` or a scikit-learn pipeline).
        calibrator: The fitted ``CalibratedClassifierCV`` around the frozen base model, or None
            when fitted with ``calibration_fraction=0``.
        feature_names: The feature columns, in the order ``predict_proba`` expects them.
        params: The classifier's hyperparameters, defaults included.
        fit_indices: Positions (in the training data) of the rows the base model was fitted on.
        calibration_indices: Positions of the rows the calibration was fitted on, all later than
            every fit row.
    """

    name: str
    estimator: Any
    calibrator: Any
    feature_names: list[str]
    params: dict[str, Any]
    fit_indices: npt.NDArray[np.int64] = field(repr=False)
    calibration_indices: npt.NDArray[np.int64] = field(repr=False)

    @property
    def fit_rows(self) -> int:
        """The number of rows the base model was fitted on."""
        return int(self.fit_indices.size)

    @property
    def calibration_rows(self) -> int:
        """The number of rows the calibration was fitted on."""
        return int(self.calibration_indices.size)

    def predict_proba(self, features: FeatureMatrix) -> npt.NDArray[np.float64]:
        """Return the calibrated probability of label 1 for each row of ``features``."""
        if isinstance(features, pd.DataFrame):
            missing = [name for name in self.feature_names if name not in features.columns]
            if missing:
                raise ValueError(f"features lack the columns {missing}")
            features = features[self.feature_names]
        matrix, _ = _as_matrix(features)
        if matrix.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features, got {matrix.shape[1]}")
        model = self.calibrator if self.calibrator is not None else self.estimator
        frame = _named(matrix, self.feature_names)
        probabilities = np.asarray(model.predict_proba(frame), dtype=np.float64)
        positive = int(np.flatnonzero(np.asarray(model.classes_) == 1)[0])
        return np.ascontiguousarray(probabilities[:, positive])

    def booster(self) -> lightgbm.Booster:
        """Return the LightGBM booster of a ``lightgbm`` model.

        Raises:
            TypeError: For the other models, which have none.
        """
        if not isinstance(self.estimator, lightgbm.LGBMClassifier):
            raise TypeError(f"the {self.name} model has no LightGBM booster")
        return self.estimator.booster_

    def feature_importances(self) -> dict[str, float]:
        """Return each feature's importance, by name.

        LightGBM: total split gain. Logistic: the absolute coefficient on the standardised
        feature. Random forest: mean impurity decrease. The scales differ between models; compare
        shares within a model.
        """
        if isinstance(self.estimator, lightgbm.LGBMClassifier):
            values = self.booster().feature_importance(importance_type="gain")
        elif self.name == "logistic":
            values = np.abs(self.estimator[-1].coef_[0])
        else:
            values = self.estimator[-1].feature_importances_
        return {name: float(value) for name, value in zip(self.feature_names, values, strict=True)}


def _split_rows(
    rows: int,
    calibration_fraction: float,
    timestamps: npt.NDArray[np.int64] | None,
    label_end: npt.NDArray[np.int64] | None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return the positions of the fit rows and the (later) calibration rows."""
    everything = np.arange(rows, dtype=np.int64)
    calibration_count = math.ceil(rows * calibration_fraction) if calibration_fraction > 0 else 0
    if calibration_count == 0:
        return everything, everything[:0]
    if timestamps is None:
        return everything[: rows - calibration_count], everything[rows - calibration_count :]
    # By time: rows sharing the cutoff's timestamp (other symbols) all go to calibration, and
    # fit rows whose label reaches the cutoff are purged, as between training and test.
    cutoff = np.sort(timestamps)[rows - calibration_count]
    fit = timestamps < cutoff
    if label_end is not None:
        fit &= label_end < cutoff
    return np.flatnonzero(fit).astype(np.int64), np.flatnonzero(timestamps >= cutoff).astype(np.int64)


def fit_calibrated(
    name: str,
    X_train: FeatureMatrix,  # noqa: N803 - scikit-learn's argument name
    y_train: npt.ArrayLike,
    calibration_fraction: float = 0.2,
    params: Mapping[str, Any] | None = None,
    *,
    timestamps: npt.ArrayLike | None = None,
    label_end: npt.ArrayLike | None = None,
) -> CalibratedModel:
    """Fit model ``name`` on the earlier training rows and calibrate it on the latest ones.

    Without ``timestamps`` the rows must be in time order: the base model is fitted on the
    first ``1 - calibration_fraction`` of them and the sigmoid calibration on the rest. With
    ``timestamps`` the cut is by time (all rows at one timestamp fall on the same side), and
    with ``label_end`` too, fit rows whose label window reaches the calibration period are
    dropped, as the walk-forward purge does between training and test.

    Args:
        name: One of ``ESTIMATOR_NAMES``.
        X_train: The training features (a DataFrame keeps its column names). NaN marks missing.
        y_train: The labels, 0 or 1.
        calibration_fraction: The share of the latest rows held out for calibration, in
            ``[0, 1)``; 0 skips calibration and returns the base model's scores.
        params: Hyperparameters overriding the defaults (see :func:`make_estimator`).
        timestamps: Each row's time (ms), to cut by time instead of row order.
        label_end: Each row's label end (ms), to purge fit rows; needs ``timestamps``.

    Returns:
        The fitted model, calibrated.

    Raises:
        ValueError: On mismatched lengths, a fraction out of range, or a fit or calibration set
            without both classes.
    """
    if not 0.0 <= calibration_fraction < 1.0:
        raise ValueError(f"calibration_fraction must be in [0, 1), got {calibration_fraction}")
    matrix, names = _as_matrix(X_train)
    labels = np.asarray(y_train)
    if labels.ndim != 1 or labels.size != matrix.shape[0]:
        raise ValueError(f"y_train has {labels.size} labels for {matrix.shape[0]} rows")
    if bool(np.any((labels != 0) & (labels != 1))):
        raise ValueError("labels must be 0 or 1")
    labels = labels.astype(np.int64)
    times = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    ends = None if label_end is None else np.asarray(label_end, dtype=np.int64)
    if ends is not None and times is None:
        raise ValueError("label_end needs timestamps")
    for values, what in ((times, "timestamps"), (ends, "label_end")):
        if values is not None and values.shape != labels.shape:
            raise ValueError(f"{what} has {values.size} values for {labels.size} rows")

    fit_indices, calibration_indices = _split_rows(labels.size, calibration_fraction, times, ends)
    for indices, what in ((fit_indices, "fit"), (calibration_indices, "calibration")):
        if what == "calibration" and calibration_fraction == 0:
            continue
        classes = np.unique(labels[indices])
        if classes.size < 2:
            raise ValueError(
                f"the {what} rows of {name} ({indices.size}) hold only the classes {classes.tolist()}; "
                "both 0 and 1 are needed"
            )

    merged = {**default_params(name), **(params or {})}
    estimator = make_estimator(name, merged)
    estimator.fit(_named(matrix[fit_indices], names), labels[fit_indices])
    calibrator = None
    if calibration_indices.size:
        calibrator = CalibratedClassifierCV(FrozenEstimator(estimator), method="sigmoid")
        calibrator.fit(_named(matrix[calibration_indices], names), labels[calibration_indices])
    return CalibratedModel(
        name=name,
        estimator=estimator,
        calibrator=calibrator,
        feature_names=names,
        params=merged,
        fit_indices=fit_indices,
        calibration_indices=calibration_indices,
    )
