"""Estimators: three models behind one interface, calibrated on held-out later rows only."""

from __future__ import annotations

import math

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from models.estimators import ESTIMATOR_NAMES, fit_calibrated, make_estimator


def separable(rows: int, seed: int, missing: float = 0.03) -> tuple[pd.DataFrame, np.ndarray]:
    """Two informative features (``signal``, ``echo``), three noise ones, some values missing."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            "signal": signal,
            "echo": signal * 0.5 + rng.normal(scale=0.5, size=rows),
            "noise_a": rng.normal(size=rows),
            "noise_b": rng.normal(size=rows),
            "noise_c": rng.normal(size=rows),
        }
    )
    labels = (signal + rng.normal(scale=0.5, size=rows) > 0.3).astype(int)  # ~40 % positive
    frame = frame.mask(rng.random(frame.shape) < missing)
    return frame, labels


@pytest.mark.parametrize("name", ESTIMATOR_NAMES)
def test_each_model_fits_and_gives_calibrated_probabilities_that_rank_well(name: str) -> None:
    train, train_labels = separable(3000, seed=1)
    test, test_labels = separable(2000, seed=2)
    model = fit_calibrated(name, train, train_labels, calibration_fraction=0.2)
    probabilities = model.predict_proba(test)

    assert probabilities.shape == (2000,)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert roc_auc_score(test_labels, probabilities) > 0.8
    # Calibrated: the mean probability is close to the real positive rate, despite class weights.
    assert abs(probabilities.mean() - test_labels.mean()) < 0.05
    importances = model.feature_importances()
    assert list(importances) == list(train.columns)
    assert max(importances, key=importances.__getitem__) == "signal"
    assert model.fit_rows == 2400 and model.calibration_rows == 600


@pytest.mark.parametrize("name", ESTIMATOR_NAMES)
def test_base_model_never_sees_the_calibration_rows(name: str) -> None:
    features, labels = separable(2000, seed=3)
    model = fit_calibrated(name, features, labels, calibration_fraction=0.25)
    np.testing.assert_array_equal(model.fit_indices, np.arange(1500))
    np.testing.assert_array_equal(model.calibration_indices, np.arange(1500, 2000))
    # By construction: the same model fitted on the first 1500 rows alone is the same model
    # (every model is seeded and deterministic).
    alone = make_estimator(name).fit(features.iloc[:1500], labels[:1500])
    probe, _ = separable(500, seed=4)
    np.testing.assert_allclose(model.estimator.predict_proba(probe), alone.predict_proba(probe), rtol=1e-12)


def test_calibration_is_fitted_on_the_last_rows() -> None:
    # The last fifth is labelled backwards: if the sigmoid is fitted there, it flips the ranking.
    features, labels = separable(3000, seed=5)
    flipped = labels.copy()
    flipped[2400:] = 1 - flipped[2400:]
    model = fit_calibrated("logistic", features, flipped, calibration_fraction=0.2)
    probe, probe_labels = separable(1000, seed=6)
    base = model.estimator.predict_proba(probe)[:, 1]
    assert roc_auc_score(probe_labels, base) > 0.8
    assert roc_auc_score(probe_labels, model.predict_proba(probe)) < 0.2


def test_cut_by_time_keeps_a_timestamp_together_and_purges_labels_reaching_the_calibration() -> None:
    features, labels = separable(1000, seed=7)
    # Two symbols: rows 2k and 2k+1 share minute k; labels end 10 minutes later.
    timestamps = np.repeat(np.arange(500, dtype=np.int64) * 60_000, 2)
    model = fit_calibrated(
        "lightgbm", features, labels, 0.2, timestamps=timestamps, label_end=timestamps + 10 * 60_000
    )
    # The cut is at minute 400: calibration 400..499 (200 rows), fit 0..389 (purged 390..399).
    np.testing.assert_array_equal(model.calibration_indices, np.arange(800, 1000))
    np.testing.assert_array_equal(model.fit_indices, np.arange(780))


def test_lightgbm_exposes_its_booster_with_feature_names_and_others_refuse() -> None:
    features, labels = separable(800, seed=8)
    model = fit_calibrated("lightgbm", features, labels)
    booster = model.booster()
    assert isinstance(booster, lightgbm.Booster)
    assert booster.feature_name() == list(features.columns)
    assert booster.num_trees() == 200
    with pytest.raises(TypeError, match="no LightGBM booster"):
        fit_calibrated("logistic", features, labels).booster()


def test_refit_is_deterministic_and_params_override_the_defaults() -> None:
    features, labels = separable(1000, seed=9)
    first = fit_calibrated("random_forest", features, labels, params={"n_estimators": 20})
    second = fit_calibrated("random_forest", features, labels, params={"n_estimators": 20})
    assert len(first.estimator[-1].estimators_) == 20
    assert first.params["max_depth"] == 8 and first.params["n_estimators"] == 20
    # Equal up to rounding: two threads add up the trees' votes in either order.
    np.testing.assert_allclose(first.predict_proba(features), second.predict_proba(features), rtol=1e-12)


def test_predict_takes_a_frame_in_any_column_order_or_a_plain_array() -> None:
    features, labels = separable(800, seed=10)
    model = fit_calibrated("logistic", features, labels)
    expected = model.predict_proba(features)
    np.testing.assert_allclose(model.predict_proba(features[features.columns[::-1]]), expected)
    np.testing.assert_allclose(model.predict_proba(features.to_numpy()), expected)
    with pytest.raises(ValueError, match="lack the columns"):
        model.predict_proba(features.drop(columns="signal"))


def test_an_all_missing_feature_keeps_importances_aligned_with_names() -> None:
    features, labels = separable(800, seed=11)
    features["empty"] = math.nan
    for name in ("logistic", "random_forest"):
        importances = fit_calibrated(name, features, labels).feature_importances()
        assert list(importances) == list(features.columns)
        assert importances["empty"] == 0.0


def test_a_calibration_set_with_one_class_is_refused() -> None:
    features, labels = separable(1000, seed=12)
    labels[800:] = 0
    with pytest.raises(ValueError, match="calibration rows"):
        fit_calibrated("logistic", features, labels, calibration_fraction=0.2)
    with pytest.raises(ValueError, match="unknown estimator"):
        make_estimator("svm")
