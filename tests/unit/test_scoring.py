"""The fast scorer: Booster.predict plus the calibration by hand equals predict_proba."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from models.estimators import fit_calibrated
from tradeflow.execution.scoring import LightGBMScorer, ProbaScorer, scorer_for
from tradeflow.features.build import build_feature_matrix, feature_columns
from tradeflow.features.spec import FeatureSpec

PARITY = 1e-9
# One thread: OpenMP threads spin when the machine is busy (seconds instead of a fraction of one).
FAST = {"n_estimators": 40, "num_leaves": 15, "min_child_samples": 20, "n_jobs": 1}


@pytest.fixture(scope="module")
def real_rows(real_data: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature rows of recorded Binance minutes (default feature set); whether the close rose 15 rows on."""
    candles = pd.read_parquet(real_data / "binance" / "UNKNOWN-BTC_1m.parquet")
    matrix = build_feature_matrix({"BTC/USDT": candles}, FeatureSpec())
    close = candles["close"].to_numpy()
    ahead = np.full(close.size, np.nan)
    ahead[:-15] = close[15:] / close[:-15] - 1.0
    keep = ~np.isnan(ahead)
    rows = matrix.loc[keep, feature_columns(matrix)].reset_index(drop=True)
    return rows, (ahead[keep] > 0).astype(int)


def scores(scorer: Any, rows: pd.DataFrame) -> np.ndarray:
    values = rows[list(scorer.feature_names)].to_numpy(dtype=np.float64)
    return np.array([scorer.score(values[index]) for index in range(len(values))])


def test_lightgbm_fast_path_equals_the_calibrated_models_predict_proba_on_real_rows(
    real_rows: tuple[pd.DataFrame, np.ndarray],
) -> None:
    rows, labels = real_rows
    model = fit_calibrated("lightgbm", rows, labels, params=FAST)
    scorer = scorer_for(model)
    assert isinstance(scorer, LightGBMScorer) and scorer.fast
    assert scorer.feature_names == tuple(model.feature_names)
    assert scorer.calibration, "the model is calibrated; the scorer must apply it"
    sample = rows.iloc[::7]
    assert np.isnan(sample.to_numpy()).any(), "real rows have missing features; they must score too"
    expected = model.predict_proba(sample)
    assert np.abs(scores(scorer, sample) - expected).max() < PARITY
    # What MLflow serves is the CalibratedClassifierCV itself: the same scorer, the same numbers.
    served = scorer_for(model.calibrator)
    assert np.abs(scores(served, sample) - expected).max() < PARITY


def test_uncalibrated_lightgbm_scores_as_predict_proba(real_rows: tuple[pd.DataFrame, np.ndarray]) -> None:
    rows, labels = real_rows
    model = fit_calibrated("lightgbm", rows, labels, calibration_fraction=0.0, params=FAST)
    scorer = scorer_for(model)
    assert isinstance(scorer, LightGBMScorer) and not scorer.calibration
    sample = rows.iloc[::11]
    assert np.abs(scores(scorer, sample) - model.predict_proba(sample)).max() < PARITY


class _NoDecisionFunction(lightgbm.LGBMClassifier):
    """A LightGBM classifier as older versions were: no ``decision_function``."""

    def __getattribute__(self, name: str) -> Any:
        if name == "decision_function":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_calibration_on_predict_proba_is_followed_for_an_estimator_without_decision_function(
    real_rows: tuple[pd.DataFrame, np.ndarray],
) -> None:
    """scikit-learn calibrates on decision_function when there is one, else on predict_proba."""
    rows, labels = real_rows
    cut = int(len(rows) * 0.8)
    base = _NoDecisionFunction(**FAST, verbose=-1, random_state=7).fit(rows.iloc[:cut], labels[:cut])
    assert not hasattr(base, "decision_function")
    calibrated = CalibratedClassifierCV(FrozenEstimator(base), method="sigmoid").fit(
        rows.iloc[cut:], labels[cut:]
    )
    scorer = scorer_for(calibrated)
    assert isinstance(scorer, LightGBMScorer) and not scorer.calibrate_raw
    sample = rows.iloc[::13]
    assert np.abs(scores(scorer, sample) - calibrated.predict_proba(sample)[:, 1]).max() < PARITY
    # Reading the raw score instead would be a different model: the check above can tell.
    wrong = LightGBMScorer(scorer.booster, scorer.feature_names, scorer.calibration, calibrate_raw=True)
    assert np.abs(scores(wrong, sample) - calibrated.predict_proba(sample)[:, 1]).max() > 1e-3


@pytest.mark.parametrize("name", ["logistic", "random_forest"])
def test_other_models_take_the_slow_path_with_the_same_numbers(
    name: str, real_rows: tuple[pd.DataFrame, np.ndarray]
) -> None:
    rows, labels = real_rows
    part = rows.iloc[:3000]
    params = {"n_estimators": 10, "n_jobs": 1} if name == "random_forest" else None
    model = fit_calibrated(name, part, labels[:3000], params=params)
    scorer = scorer_for(model)
    assert isinstance(scorer, ProbaScorer) and not scorer.fast
    sample = part.iloc[::300]
    assert np.abs(scores(scorer, sample) - model.predict_proba(sample)).max() < PARITY


def test_the_row_is_read_in_the_models_feature_order(real_rows: tuple[pd.DataFrame, np.ndarray]) -> None:
    """A model trained on shuffled columns reads its own order; the scorer says which."""
    rows, labels = real_rows
    shuffled = rows[list(np.random.default_rng(5).permutation(rows.columns))]
    model = fit_calibrated("lightgbm", shuffled, labels, params=FAST)
    scorer = scorer_for(model)
    assert scorer.feature_names == tuple(shuffled.columns)
    sample = rows.iloc[::17]
    assert np.abs(scores(scorer, sample) - model.predict_proba(sample)).max() < PARITY


def test_a_model_of_another_width_is_refused() -> None:
    rng = np.random.default_rng(0)
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1},
        lightgbm.Dataset(rng.normal(size=(200, 3)), rng.integers(0, 2, 200)),
        num_boost_round=2,
    )
    with pytest.raises(ValueError, match="3 features"):
        LightGBMScorer(booster, ["a", "b"])
