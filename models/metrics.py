"""How good the predictions are: as a classifier, and as a trading signal after fees.

The economic score trades the predictions: **long** for a row's horizon when its probability of
label 1 is above the threshold, **flat** otherwise (and, only if asked, **short** when it is
below ``1 - threshold``). Each row contributes its ``forward_return`` (a simple return, see
:mod:`models.labels`) times the position, and ``fee_rate`` times the size of every position
change is paid: entering, leaving, or flipping (twice the fee), with the last position closed
at the end so every trade pays its round trip.

Rows one minute apart with four-hour horizons overlap almost entirely: trading all of them would
count the same price move hundreds of times and make the Sharpe ratio's sample look hundreds of
times larger than it is. The score is therefore computed on **non-overlapping** rows, each entered
at or after the previous one's ``label_end`` (:func:`non_overlapping_rows`), which is how the
strategy could actually have been traded with one position per symbol. Several symbols are held
as an equal-weight portfolio (:func:`portfolio_economic_score`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import (  # type: ignore[import-untyped, unused-ignore]
    accuracy_score,
    brier_score_loss,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

__all__ = [
    "YEAR_MS",
    "ClassificationMetrics",
    "EconomicScore",
    "classification_metrics",
    "economic_score",
    "non_overlapping_rows",
    "portfolio_economic_score",
    "positions",
    "sharpe_ratio",
    "strategy_returns",
]

#: Milliseconds in a (365-day) year: crypto trades every day.
YEAR_MS = 365 * 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class ClassificationMetrics:
    """Classification quality of probabilities ``p`` of label 1 against labels ``y``.

    Attributes:
        roc_auc: Area under the ROC curve; NaN when ``y`` holds one class only.
        log_loss: Mean negative log-likelihood (natural log).
        accuracy: Share of rows where ``p > 0.5`` matches the label.
        precision: Of the rows predicted 1 (``p > 0.5``), the share labelled 1 (0 if none).
        recall: Of the rows labelled 1, the share predicted 1 (0 if none).
        brier: Mean squared error of ``p`` against the label.
        rows: The number of rows scored.
        positive_rate: The share of rows labelled 1.
    """

    roc_auc: float
    log_loss: float
    accuracy: float
    precision: float
    recall: float
    brier: float
    rows: int
    positive_rate: float

    def to_dict(self) -> dict[str, float | int]:
        """Return the metrics as plain values."""
        return asdict(self)


@dataclass(frozen=True)
class EconomicScore:
    """What trading the predictions would have earned.

    Attributes:
        sharpe: Annualised Sharpe ratio of the per-period net returns (no risk-free rate); NaN
            with fewer than two periods, 0 when nothing was ever at risk.
        total_return: Compounded net return over all periods.
        trades: The number of position changes (entries, exits, flips and the final close).
        periods: The number of non-overlapping periods traded or sat out.
        exposure: The share of periods with a position.
    """

    sharpe: float
    total_return: float
    trades: int
    periods: int
    exposure: float

    def to_dict(self) -> dict[str, float | int]:
        """Return the score as plain values."""
        return asdict(self)


def classification_metrics(y: npt.ArrayLike, p: npt.ArrayLike) -> ClassificationMetrics:
    """Return the classification metrics of probabilities ``p`` against 0/1 labels ``y``.

    Raises:
        ValueError: If the inputs are empty, differ in length, or ``p`` leaves ``[0, 1]``.
    """
    labels = np.asarray(y).astype(np.int64)
    probabilities = np.asarray(p, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != probabilities.shape:
        raise ValueError("y and p must be one-dimensional and of equal length")
    if labels.size == 0:
        raise ValueError("no rows to score")
    if bool(np.any((probabilities < 0) | (probabilities > 1) | np.isnan(probabilities))):
        raise ValueError("probabilities must lie in [0, 1]")
    predicted = (probabilities > 0.5).astype(np.int64)
    one_class = np.unique(labels).size < 2
    return ClassificationMetrics(
        roc_auc=math.nan if one_class else float(roc_auc_score(labels, probabilities)),
        log_loss=float(log_loss(labels, probabilities, labels=[0, 1])),
        accuracy=float(accuracy_score(labels, predicted)),
        precision=float(precision_score(labels, predicted, zero_division=0)),
        recall=float(recall_score(labels, predicted, zero_division=0)),
        brier=float(brier_score_loss(labels, probabilities, pos_label=1)),
        rows=int(labels.size),
        positive_rate=float(labels.mean()),
    )


def positions(
    probabilities: npt.ArrayLike, threshold: float = 0.5, allow_short: bool = False
) -> npt.NDArray[np.float64]:
    """Return the position each probability asks for: 1 long, 0 flat, -1 short (if allowed).

    Long when ``p > threshold``; short when shorting is allowed and ``p < 1 - threshold``.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    held = (probabilities > threshold).astype(np.float64)
    if allow_short:
        held[probabilities < 1.0 - threshold] = -1.0
    return held


def strategy_returns(
    probabilities: npt.ArrayLike,
    forward_returns: npt.ArrayLike,
    fee_rate: float,
    threshold: float = 0.5,
    allow_short: bool = False,
) -> tuple[npt.NDArray[np.float64], int]:
    """Return the net return of each period and the number of trades.

    Period ``i`` earns ``position_i * forward_return_i - fee_rate * |position_i - position_{i-1}|``
    (starting flat); the last period also pays for closing its position.

    Args:
        probabilities: P(label 1) of consecutive, non-overlapping periods of one instrument.
        forward_returns: Each period's simple return.
        fee_rate: The fee per side as a fraction of the traded value.
        threshold: The probability above which to be long.
        allow_short: Also be short when the probability is below ``1 - threshold``.
    """
    returns = np.asarray(forward_returns, dtype=np.float64)
    held = positions(probabilities, threshold, allow_short)
    if held.shape != returns.shape:
        raise ValueError("probabilities and forward_returns must be of equal length")
    if held.size == 0:
        return np.zeros(0), 0
    changes = np.abs(np.diff(held, prepend=0.0))
    net = held * returns - fee_rate * changes
    net[-1] -= fee_rate * abs(held[-1])
    trades = int(np.count_nonzero(changes) + (held[-1] != 0))
    return net, trades


def sharpe_ratio(period_returns: npt.ArrayLike, periods_per_year: float) -> float:
    """Return the annualised Sharpe ratio of ``period_returns`` (sample std, no risk-free rate).

    NaN with fewer than two periods or a constant non-zero return; 0 when every return is 0
    (nothing was ever at risk).
    """
    returns = np.asarray(period_returns, dtype=np.float64)
    if returns.size < 2:
        return math.nan
    deviation = float(returns.std(ddof=1))
    if deviation == 0.0:
        return 0.0 if not bool(np.any(returns)) else math.nan
    return float(returns.mean() / deviation * math.sqrt(periods_per_year))


def economic_score(
    probabilities: npt.ArrayLike,
    forward_returns: npt.ArrayLike,
    fee_rate: float,
    *,
    periods_per_year: float,
    threshold: float = 0.5,
    allow_short: bool = False,
) -> EconomicScore:
    """Return what trading ``probabilities`` over consecutive non-overlapping periods earns.

    Args:
        probabilities: P(label 1) per period, in time order, one instrument. The periods must not
            overlap (pick them with :func:`non_overlapping_rows`).
        forward_returns: Each period's simple return.
        fee_rate: The fee per side, paid on every position change.
        periods_per_year: How many such periods make a year (``YEAR_MS / horizon_ms``), to
            annualise the Sharpe ratio.
        threshold: Long above it; flat otherwise.
        allow_short: Also short below ``1 - threshold``.
    """
    net, trades = strategy_returns(probabilities, forward_returns, fee_rate, threshold, allow_short)
    held = positions(probabilities, threshold, allow_short)
    return EconomicScore(
        sharpe=sharpe_ratio(net, periods_per_year),
        total_return=float(np.prod(1.0 + net) - 1.0),
        trades=trades,
        periods=int(net.size),
        exposure=float(np.count_nonzero(held) / held.size) if held.size else 0.0,
    )


def non_overlapping_rows(timestamps: npt.ArrayLike, label_end: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Return the positions of a greedy run of non-overlapping rows of one instrument.

    Starting at the first row, each next row is the first one at or after the previous row's
    ``label_end``: the trade entered at the close decided by the previous label.

    Args:
        timestamps: Row times (ms), ascending.
        label_end: Each row's label end (ms).
    """
    times = np.asarray(timestamps, dtype=np.int64)
    ends = np.asarray(label_end, dtype=np.int64)
    if times.size > 1 and bool(np.any(np.diff(times) < 0)):
        raise ValueError("timestamps must be ascending")
    following = np.maximum(np.searchsorted(times, ends, side="left"), np.arange(times.size) + 1)
    chosen: list[int] = []
    row = 0
    while row < times.size:
        chosen.append(row)
        row = int(following[row])
    return np.asarray(chosen, dtype=np.int64)


def portfolio_economic_score(
    predictions: pd.DataFrame,
    fee_rate: float,
    *,
    threshold: float = 0.5,
    allow_short: bool = False,
    probability_column: str = "probability",
) -> EconomicScore:
    """Return the economic score of an equal-weight portfolio over the symbols in ``predictions``.

    Per symbol, non-overlapping rows are chosen (:func:`non_overlapping_rows`) and traded as in
    :func:`economic_score`. The portfolio's return in each period is the mean of the net returns
    of the symbols trading a period starting at that time. The Sharpe ratio is annualised with the
    median label horizon as the period length.

    Args:
        predictions: Columns ``symbol``, ``timestamp``, ``label_end``, ``forward_return`` and
            ``probability_column``; any order.
        fee_rate: The fee per side.
        threshold: Long above it; flat otherwise.
        allow_short: Also short below ``1 - threshold``.
        probability_column: The column holding P(label 1).
    """
    if predictions.empty:
        return EconomicScore(sharpe=math.nan, total_return=0.0, trades=0, periods=0, exposure=0.0)
    ordered = predictions.sort_values(["symbol", "timestamp"], kind="stable")
    pieces = []
    trades = 0
    held_periods = 0
    symbol_periods = 0
    for _, rows in ordered.groupby("symbol", sort=True):
        chosen = rows.iloc[non_overlapping_rows(rows["timestamp"], rows["label_end"])]
        probabilities = chosen[probability_column].to_numpy(dtype=np.float64)
        net, symbol_trades = strategy_returns(
            probabilities,
            chosen["forward_return"].to_numpy(dtype=np.float64),
            fee_rate,
            threshold,
            allow_short,
        )
        trades += symbol_trades
        held_periods += int(np.count_nonzero(positions(probabilities, threshold, allow_short)))
        symbol_periods += int(net.size)
        pieces.append(pd.Series(net, index=chosen["timestamp"].to_numpy(dtype=np.int64)))
    portfolio = pd.concat(pieces).groupby(level=0).mean().sort_index().to_numpy(dtype=np.float64)
    horizon = float(
        np.median(ordered["label_end"].to_numpy(np.int64) - ordered["timestamp"].to_numpy(np.int64))
    )
    periods_per_year = YEAR_MS / horizon if horizon > 0 else math.nan
    return EconomicScore(
        sharpe=sharpe_ratio(portfolio, periods_per_year),
        total_return=float(np.prod(1.0 + portfolio) - 1.0),
        trades=trades,
        periods=int(portfolio.size),
        exposure=held_periods / symbol_periods if symbol_periods else 0.0,
    )
