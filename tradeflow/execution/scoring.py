"""Scoring one feature row with the champion, fast enough for every book event.

:func:`scorer_for` takes the model as training registers it and serving loads it (a
``CalibratedClassifierCV`` around a frozen ``LGBMClassifier``, the bare classifier, or the
:class:`models.estimators.CalibratedModel` that holds them) and returns a :class:`Scorer`:

- **LightGBM: the fast path** (:class:`LightGBMScorer`). ``lightgbm.Booster.predict`` with
  ``raw_score=True`` on one preallocated float64 row, then by hand what the wrappers do. The
  Platt calibration of scikit-learn's ``_SigmoidCalibration`` is ``expit(-(a * s + b))`` of
  the base model's response ``s``, which scikit-learn 1.9 takes from ``decision_function``
  when the estimator has one and otherwise from ``predict_proba``'s positive column.
  LightGBM 4.7's ``LGBMClassifier`` has ``decision_function`` (the raw score), so with the
  pinned versions ``s`` is the raw score itself; with a LightGBM without it, ``s`` is
  ``1 / (1 + exp(-sigmoid * raw))``, the binary objective's sigmoid (what ``predict_proba``
  gives). Which one applies is read off the fitted model, not assumed. Uncalibrated, the
  score is that sigmoid. With several calibrated classifiers (``ensemble=True``) their
  probabilities are averaged, as ``CalibratedClassifierCV.predict_proba`` does. No pandas, no
  scikit-learn checks: about 20 µs a row instead of about 2 ms, equal to ``predict_proba`` to
  ~1e-16 (``tests/unit/test_scoring.py`` holds it to 1e-9 on real rows).
- **Anything else: the slow path** (:class:`ProbaScorer`). Random forests, the logistic
  baseline, isotonic calibration: ``predict_proba`` on a one-row DataFrame with the feature
  names, milliseconds a row. Only LightGBM gets the fast path; the decider then scores only
  at decisions, not on every book event (:attr:`Scorer.fast`).

Both expose the model's feature order (:attr:`Scorer.feature_names`): the row given to
:meth:`Scorer.score` must be in that order.

This module imports LightGBM and numpy only (no MLflow, no scikit-learn: the calibrators are
read by their attributes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

import lightgbm
import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["LightGBMScorer", "ProbaScorer", "Scorer", "scorer_for"]

FloatArray = npt.NDArray[np.float64]

_SIGMOID = re.compile(r"^objective=binary(?:\s+sigmoid:([0-9.eE+-]+))?\s*$", re.MULTILINE)


class Scorer(Protocol):
    """Scores one feature row: the model's probability that the price rises."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's features, in the order :meth:`score` reads the row."""
        ...

    @property
    def fast(self) -> bool:
        """Whether a score takes microseconds (LightGBM), not milliseconds."""
        ...

    def score(self, row: FloatArray) -> float:
        """Return the probability of a rise for ``row`` (float64 in :attr:`feature_names` order)."""
        ...


class LightGBMScorer:
    """The fast path: ``Booster.predict`` on a preallocated row, sigmoid and calibration by hand.

    Args:
        booster: The fitted binary booster.
        feature_names: The model's features, in its order.
        calibration: The Platt parameters ``(a, b)`` of each calibrated classifier (their
            probabilities are averaged), or empty for an uncalibrated classifier.
        calibrate_raw: The calibration reads the raw score (the estimator had
            ``decision_function``), not the sigmoid probability.

    Raises:
        ValueError: if the booster's objective is not ``binary``, or its feature count differs.
    """

    def __init__(
        self,
        booster: lightgbm.Booster,
        feature_names: Sequence[str],
        calibration: Sequence[tuple[float, float]] = (),
        calibrate_raw: bool = True,
    ) -> None:
        self.booster = booster
        self._names = tuple(str(name) for name in feature_names)
        if booster.num_feature() != len(self._names):
            raise ValueError(
                f"the booster has {booster.num_feature()} features, {len(self._names)} names given"
            )
        self.sigmoid = _binary_sigmoid(booster)
        self.calibration = tuple((float(a), float(b)) for a, b in calibration)
        self.calibrate_raw = calibrate_raw
        self._batch = np.zeros((1, len(self._names)))  # the preallocated row Booster.predict reads

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's features, in the order :meth:`score` reads the row."""
        return self._names

    @property
    def fast(self) -> bool:
        """Always True: microseconds a row."""
        return True

    def raw(self, row: FloatArray) -> float:
        """Return the booster's raw score (log-odds) for ``row``."""
        batch = self._batch
        batch[0] = row
        return float(self.booster.predict(batch, raw_score=True, num_threads=1)[0])

    def score(self, row: FloatArray) -> float:
        """Return the calibrated probability of a rise for ``row``."""
        raw = self.raw(row)
        calibration = self.calibration
        if not calibration:
            return 1.0 / (1.0 + math.exp(-self.sigmoid * raw))
        response = raw if self.calibrate_raw else 1.0 / (1.0 + math.exp(-self.sigmoid * raw))
        total = 0.0
        for a, b in calibration:
            total += _expit(-(a * response + b))
        return total / len(calibration)


class ProbaScorer:
    """The slow path: ``predict_proba`` on a one-row DataFrame (any scikit-learn style model).

    Args:
        model: A fitted classifier with ``predict_proba`` and ``classes_`` (label 1 = rise).
        feature_names: The model's features, in its order.
    """

    def __init__(self, model: Any, feature_names: Sequence[str]) -> None:
        self.model = model
        self._names = tuple(str(name) for name in feature_names)
        classes = np.asarray(getattr(model, "classes_", [0, 1]))
        self._positive = int(np.flatnonzero(classes == 1)[0])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's features, in the order :meth:`score` reads the row."""
        return self._names

    @property
    def fast(self) -> bool:
        """Always False: milliseconds a row."""
        return False

    def score(self, row: FloatArray) -> float:
        """Return the model's probability of a rise for ``row``."""
        frame = pd.DataFrame(np.asarray(row, dtype=np.float64).reshape(1, -1), columns=list(self._names))
        return float(np.asarray(self.model.predict_proba(frame))[0, self._positive])


def scorer_for(model: Any) -> LightGBMScorer | ProbaScorer:
    """Return the fastest exact scorer for ``model``.

    ``model`` may be a ``CalibratedModel`` (``estimator``, ``calibrator``, ``feature_names``), a
    fitted ``CalibratedClassifierCV``, an ``LGBMClassifier`` or any classifier with
    ``predict_proba`` and ``feature_names_in_``. The LightGBM fast path is taken for a binary
    ``LGBMClassifier``, bare or under sigmoid calibration; everything else gets
    :class:`ProbaScorer`.

    Raises:
        ValueError: if the model's feature names cannot be found.
    """
    if hasattr(model, "calibrator") and hasattr(model, "estimator") and hasattr(model, "feature_names"):
        inner = model.calibrator if model.calibrator is not None else model.estimator
        names = list(model.feature_names)
    else:
        inner, names = model, _feature_names(model)
    fast = _lightgbm_parts(inner)
    if fast is not None:
        booster, calibration, calibrate_raw = fast
        return LightGBMScorer(booster, names, calibration, calibrate_raw)
    return ProbaScorer(inner, names)


def _lightgbm_parts(model: Any) -> tuple[lightgbm.Booster, list[tuple[float, float]], bool] | None:
    """Return the booster, Platt parameters and response kind of a binary LGBMClassifier, or None."""
    if isinstance(model, lightgbm.LGBMClassifier):
        return (model.booster_, [], False) if _binary(model) else None
    pairs = getattr(model, "calibrated_classifiers_", None)
    if getattr(model, "method", None) != "sigmoid" or not pairs:
        return None
    booster: lightgbm.Booster | None = None
    calibration = []
    # scikit-learn calibrates on decision_function when the (wrapped) estimator has it.
    calibrate_raw = all(hasattr(pair.estimator, "decision_function") for pair in pairs)
    for pair in pairs:
        estimator = getattr(pair.estimator, "estimator", pair.estimator)  # FrozenEstimator wraps it
        if not isinstance(estimator, lightgbm.LGBMClassifier) or not _binary(estimator):
            return None
        if booster is None:
            booster = estimator.booster_
        elif (
            estimator.booster_ is not booster
            and estimator.booster_.model_to_string() != booster.model_to_string()
        ):
            return None  # different base models per fold: average them on the slow path
        calibrators = pair.calibrators
        if len(calibrators) != 1 or not hasattr(calibrators[0], "a_"):
            return None
        calibration.append((float(calibrators[0].a_), float(calibrators[0].b_)))
    return (booster, calibration, calibrate_raw) if booster is not None else None


def _binary(estimator: lightgbm.LGBMClassifier) -> bool:
    classes = np.asarray(estimator.classes_)
    return classes.size == 2 and bool(classes[1] == 1) and bool(classes[0] == 0)


def _binary_sigmoid(booster: lightgbm.Booster) -> float:
    """Return the sigmoid parameter of a binary booster's objective.

    Raises:
        ValueError: if the objective is not ``binary``.
    """
    found = _SIGMOID.search(booster.model_to_string(num_iteration=0))
    if found is None:
        raise ValueError("not a binary LightGBM model (objective is not 'binary')")
    return float(found.group(1)) if found.group(1) else 1.0


def _feature_names(model: Any) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is None and isinstance(model, lightgbm.LGBMClassifier):
        names = model.feature_name_
    if names is None:
        raise ValueError(f"cannot tell the feature order of {type(model).__name__}: no feature_names_in_")
    return [str(name) for name in names]


def _expit(value: float) -> float:
    """Return ``1 / (1 + exp(-value))`` without overflow, as scipy's ``expit``."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exponential = math.exp(value)
    return exponential / (1.0 + exponential)
