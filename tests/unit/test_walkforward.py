"""Metrics against scikit-learn and hand-made trades; the walk-forward run end to end."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from models.labels import direction_labels, labels_by_symbol
from models.metrics import (
    YEAR_MS,
    classification_metrics,
    economic_score,
    non_overlapping_rows,
    portfolio_economic_score,
)
from models.splits import WalkForwardSpec
from models.walkforward import REPORT_METRICS, fold_report, run_walk_forward, training_frame
from tradeflow.progress import ProgressEvent

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % (60 * MINUTE)
FOUR_HOURS_PER_YEAR = 365 * 6


# --- metrics -------------------------------------------------------------------------------


def test_classification_metrics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=500)
    probabilities = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1)
    metrics = classification_metrics(labels, probabilities)
    predicted = probabilities > 0.5
    assert metrics.roc_auc == pytest.approx(roc_auc_score(labels, probabilities))
    assert metrics.log_loss == pytest.approx(log_loss(labels, probabilities))
    assert metrics.accuracy == pytest.approx(accuracy_score(labels, predicted))
    assert metrics.precision == pytest.approx(precision_score(labels, predicted))
    assert metrics.recall == pytest.approx(recall_score(labels, predicted))
    assert metrics.brier == pytest.approx(brier_score_loss(labels, probabilities))
    assert metrics.rows == 500 and metrics.positive_rate == pytest.approx(labels.mean())


def test_classification_metrics_with_one_class_have_no_auc_but_the_rest() -> None:
    metrics = classification_metrics([1, 1, 1], [0.9, 0.4, 0.6])
    assert math.isnan(metrics.roc_auc)
    assert metrics.accuracy == pytest.approx(2 / 3)
    assert metrics.recall == pytest.approx(2 / 3) and metrics.precision == 1.0
    assert metrics.log_loss == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.6])))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classification_metrics([0, 1], [0.5, 1.5])


def test_economic_score_on_hand_made_trades() -> None:
    probabilities = [0.7, 0.8, 0.3, 0.9]  # long, long, flat, long
    returns = [0.01, -0.02, 0.05, 0.03]
    score = economic_score(probabilities, returns, fee_rate=0.001, periods_per_year=FOUR_HOURS_PER_YEAR)
    # Net per period: enter (-fee), hold, exit (-fee), enter and close at the end (-2 fee).
    net = [0.009, -0.02, -0.001, 0.028]
    assert score.total_return == pytest.approx(1.009 * 0.98 * 0.999 * 1.028 - 1, abs=1e-15)
    assert score.trades == 4 and score.periods == 4 and score.exposure == 0.75
    mean, deviation = 0.004, math.sqrt((0.005**2 + 0.024**2 + 0.005**2 + 0.024**2) / 3)
    assert np.mean(net) == pytest.approx(mean)
    assert score.sharpe == pytest.approx(mean / deviation * math.sqrt(FOUR_HOURS_PER_YEAR), rel=1e-12)
    assert score.sharpe == pytest.approx(9.35168, rel=1e-5)

    free = economic_score(probabilities, returns, fee_rate=0.0, periods_per_year=FOUR_HOURS_PER_YEAR)
    assert free.total_return == pytest.approx(1.01 * 0.98 * 1.03 - 1, abs=1e-15)
    assert free.sharpe > score.sharpe and free.total_return > score.total_return


def test_economic_score_short_side_and_never_trading() -> None:
    probabilities = [0.7, 0.8, 0.3, 0.9]
    returns = [0.01, -0.02, 0.05, 0.03]
    short = economic_score(
        probabilities, returns, fee_rate=0.001, periods_per_year=FOUR_HOURS_PER_YEAR, allow_short=True
    )
    # Long, long, flip to short (2 fees), flip back long (2 fees) and close (1 fee).
    assert short.total_return == pytest.approx(1.009 * 0.98 * 0.948 * 1.027 - 1, abs=1e-15)
    assert short.trades == 4 and short.exposure == 1.0
    idle = economic_score([0.1, 0.2, 0.3], [0.05, -0.05, 0.01], fee_rate=0.001, periods_per_year=100)
    assert idle.sharpe == 0.0 and idle.total_return == 0.0 and idle.trades == 0


def test_non_overlapping_rows_enter_when_the_previous_label_ends() -> None:
    times = np.array([0, 1, 2, 5, 6, 10]) * MINUTE
    ends = np.array([3, 2, 4, 9, 6, 12]) * MINUTE
    assert non_overlapping_rows(times, ends).tolist() == [0, 3, 5]
    # A zero-length label still moves on to the next row.
    assert non_overlapping_rows(times[:3], times[:3]).tolist() == [0, 1, 2]


def test_portfolio_economic_score_is_an_equal_weight_mix_of_non_overlapping_trades() -> None:
    minutes = [0, 60, 120, 180]
    frame = pd.DataFrame(
        {
            "symbol": ["A"] * 4 + ["B"] * 4,
            "timestamp": [T0 + m * MINUTE for m in minutes * 2],
            "probability": [0.9, 0.1, 0.9, 0.1, 0.2, 0.9, 0.8, 0.9],
            "forward_return": [0.02, 0.5, -0.01, 0.5, 0.05, 0.5, 0.05, 0.5],
        }
    )
    frame["label_end"] = frame["timestamp"] + 120 * MINUTE
    score = portfolio_economic_score(frame.sample(frac=1, random_state=1), fee_rate=0.0)
    # Rows at minutes 0 and 120 are traded; A: +2 %, -1 %; B: flat, +5 %. Portfolio: +1 %, +2 %.
    assert score.total_return == pytest.approx(1.01 * 1.02 - 1)
    assert score.periods == 2 and score.trades == 4 and score.exposure == 0.75
    periods_per_year = YEAR_MS / (120 * MINUTE)
    assert score.sharpe == pytest.approx(0.015 / math.sqrt(0.00005) * math.sqrt(periods_per_year))


# --- walk-forward ---------------------------------------------------------------------------


def synthetic_market(
    days: int, symbols: tuple[str, ...], seed: int
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Candles whose drift persists for hours, and a matrix where ``trend`` reveals the drift."""
    rng = np.random.default_rng(seed)
    rows = days * 1440
    timestamps = T0 + np.arange(rows, dtype=np.int64) * MINUTE
    candles, frames = {}, []
    for symbol in symbols:
        persistent = lfilter([1.0], [1.0, -0.998], rng.normal(size=rows))
        drift = persistent / persistent.std() * 1e-4
        close = 100 * np.exp(np.cumsum(drift + rng.normal(scale=1e-3, size=rows)))
        candles[symbol] = pd.DataFrame(
            {
                "timestamp": timestamps,
                "open": close,
                "high": close,
                "low": close,
                "close": close,
                "volume": 1.0,
            }
        )
        features = {"trend": drift / 1e-4 + rng.normal(scale=0.5, size=rows)}
        features |= {f"noise_{index}": rng.normal(size=rows) for index in range(4)}
        features["noise_0"][rng.random(rows) < 0.05] = np.nan
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "timestamp": timestamps,
                    **features,
                    "regime": np.where(drift > 0, "up", "down"),
                }
            )
        )
    matrix = pd.concat(frames, ignore_index=True).sort_values(["timestamp", "symbol"], ignore_index=True)
    return candles, matrix


FEATURES = ["trend", "noise_0", "noise_1", "noise_2", "noise_3"]
FAST = {"lightgbm": {"n_estimators": 60}, "random_forest": {"n_estimators": 40}}
SPEC = WalkForwardSpec(n_folds=3, min_train_fraction=0.4, embargo_minutes=60)


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame]:
    candles, matrix = synthetic_market(days=16, symbols=("AAA/USDT", "BBB/USDT"), seed=3)
    labels = labels_by_symbol(
        candles, functools.partial(direction_labels, horizon_minutes=120, fee_rate=0.001)
    )
    return matrix, labels


def test_walk_forward_end_to_end(market: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    matrix, labels = market
    events: list[ProgressEvent] = []
    result = run_walk_forward(
        matrix, labels, FEATURES, SPEC, fee_rate=0.001, row_step=10, progress=events.append, params=FAST
    )

    # 16 days x 144 kept minutes x 2 symbols, less the last two hours without a label.
    assert result.rows == 2 * (16 * 144 - 12)
    assert result.symbols == ["AAA/USDT", "BBB/USDT"]
    report = fold_report(result)
    assert report.shape == (9, 6 + 2 * len(REPORT_METRICS) + 3)
    assert report[["fold", "model"]].value_counts().max() == 1
    assert set(report["model"]) == {"lightgbm", "logistic", "random_forest"}
    assert (report["train_rows"].diff().dropna() >= 0).all()  # expanding
    # Inside each fold, fit rows whose label reaches the calibration rows are purged too.
    assert all(item.fit_rows + item.calibration_rows < item.train_rows for item in result.results)

    # Out-of-sample predictions are exactly the test rows, inside their fold's period.
    predictions = result.predictions
    assert len(predictions) == 3 * sum(fold.test_indices.size for fold in result.folds)
    for fold in result.folds:
        mine = predictions[predictions["fold"] == fold.index]
        assert mine["timestamp"].between(fold.test_start, fold.test_end - 1).all()
    assert predictions["probability"].between(0, 1).all()
    assert set(predictions["regime"]) == {"up", "down"}

    for name, scores in result.overall.items():
        assert scores.classification.rows == (predictions["model"] == name).sum()
        assert scores.classification.roc_auc > 0.6, name  # ``trend`` carries real signal
        assert scores.economic.trades > 0
    # Trees fit their own training rows better than the future; the linear baseline barely does.
    lightgbm_rows = report[report["model"] == "lightgbm"]
    assert lightgbm_rows["in_sample_roc_auc"].mean() > lightgbm_rows["out_of_sample_roc_auc"].mean()
    assert lightgbm_rows["overfit_gap"].mean() > report[report["model"] == "logistic"]["overfit_gap"].mean()
    assert result.mean_importances("lightgbm").index[0] == "trend"

    final = result.final_models["lightgbm"]
    assert final.fit_rows + final.calibration_rows <= result.rows
    assert final.fit_rows > max(item.fit_rows for item in result.results)
    assert [event.done for event in events] == list(range(1, 13))
    assert events[-1].finished and events[-1].total == 12
    json.dumps(result.to_dict())


def test_a_fold_never_depends_on_data_after_it(market: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    matrix, labels = market
    first = run_walk_forward(
        matrix, labels, FEATURES, SPEC, model_names=["lightgbm", "logistic"], row_step=10, params=FAST
    )
    cut = first.folds[0].test_end
    # Scramble every feature and label from the end of fold 0 on; its predictions must not move.
    rng = np.random.default_rng(9)
    later_matrix, later_labels = matrix.copy(), labels.copy()
    future = later_matrix["timestamp"] >= cut
    later_matrix.loc[future, FEATURES] = rng.normal(size=(int(future.sum()), len(FEATURES)))
    future_labels = (later_labels["timestamp"] >= cut) & later_labels["label"].notna()
    later_labels.loc[future_labels, "label"] = rng.integers(0, 2, size=int(future_labels.sum())).astype(float)
    second = run_walk_forward(
        later_matrix,
        later_labels,
        FEATURES,
        SPEC,
        model_names=["lightgbm", "logistic"],
        row_step=10,
        params=FAST,
    )
    for fold in (0, 1):
        before = first.predictions[first.predictions["fold"] == fold]["probability"].to_numpy()
        after = second.predictions[second.predictions["fold"] == fold]["probability"].to_numpy()
        if fold == 0:
            np.testing.assert_array_equal(before, after)
        else:  # the scrambled data is fold 1's test period: its predictions do change
            assert not np.array_equal(before, after)


def test_training_frame_thins_joins_and_cleans(market: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    matrix, labels = market
    matrix = matrix.copy()
    matrix.loc[0, "noise_1"] = np.inf
    frame = training_frame(matrix, labels, FEATURES, row_step=15)
    assert ((frame["timestamp"] // MINUTE) % 15 == 0).all()
    assert frame["label"].isin([0, 1]).all() and frame["label"].dtype == np.int64
    assert frame["timestamp"].is_monotonic_increasing
    assert math.isnan(frame.loc[0, "noise_1"])
    assert list(frame.columns) == [
        "symbol",
        "timestamp",
        *FEATURES,
        "regime",
        "forward_return",
        "label",
        "label_end",
    ]
    with pytest.raises(ValueError, match="duplicate"):
        training_frame(pd.concat([matrix.head(3), matrix.head(1)]), labels, FEATURES)
    with pytest.raises(ValueError, match="lacks the columns"):
        training_frame(matrix, labels, ["missing"])
