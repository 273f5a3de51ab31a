"""How a backtest did: returns, risk, drawdowns, trade statistics and their breakdowns.

Everything here is computed from what a backtest produces:

* ``equity``: portfolio equity per bar, indexed by the bar's open time in UTC milliseconds
  (int64, increasing; usually one-minute bars, possibly with gaps);
* ``trades``: closed round trips with ``symbol``, ``direction``, ``entry_time``, ``exit_time``,
  ``quantity``, ``entry_price``, ``exit_price``, ``pnl`` (net of fees), ``fees``, ``return``
  (pnl over the entry notional), ``regime``, ``signal_type`` and ``exit_reason``;
* ``fills``: every execution, with ``time``, ``symbol``, ``side``, ``quantity``, ``price``,
  ``fee`` and ``notional``;
* ``exposure``: gross exposure (sum of absolute position values over equity) per bar.

Ratios follow empyrical's definitions exactly (risk-free rate 0): the Sharpe ratio is the mean
over the sample standard deviation of the bar returns times the square root of the bars per year,
the Sortino ratio the mean over the root mean square of the negative part. Crypto trades every
day, so a year is 365 days of 1,440 minutes and the bars per year come from the median spacing of
the timestamps. Undefined values (no trades, one bar, flat equity) are NaN, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradeflow.timeframes import DAY_MS, MINUTES_PER_YEAR, YEAR_MS

__all__ = [
    "MINUTES_PER_YEAR",
    "YEAR_MS",
    "DAY_MS",
    "SESSIONS",
    "BREAKDOWN_KEYS",
    "Drawdown",
    "Performance",
    "annualized_volatility",
    "bar_returns",
    "breakdown",
    "breakdowns",
    "drawdown_series",
    "longest_drawdown_ms",
    "max_drawdown",
    "performance",
    "periods_per_year",
    "profit_factor",
    "sharpe_ratio",
    "sortino_ratio",
    "trading_session",
]

#: The trading sessions by UTC hour of the entry: [0, 8), [8, 16) and [16, 24).
SESSIONS = ("asia", "europe", "america")
#: The trade attributes :func:`breakdowns` groups by (``session`` is derived from ``entry_time``).
BREAKDOWN_KEYS = ("symbol", "regime", "signal_type", "session", "exit_reason")

_HOUR_MS = 60 * 60_000
_SESSION_HOURS = 8
_BREAKDOWN_COLUMNS = ["trades", "win_rate", "pnl", "fees", "profit_factor", "expectancy", "average_return"]


@dataclass(frozen=True)
class Drawdown:
    """The deepest fall of an equity curve below a previous high.

    Attributes:
        depth: How far equity fell, as a positive fraction of the previous high (0.12 is 12 %);
            0 when it never fell, NaN for an empty curve.
        peak_time: The last bar at the high the fall started from (ms); None when there was no
            fall.
        trough_time: The first bar at the lowest point (ms); None when there was no fall.
        recovery_time: The first bar after the trough back at or above the high (ms); None when
            equity never recovered, or there was no fall.
        duration_ms: From the peak to the recovery, or to the last bar if equity never recovered;
            0 when there was no fall.
    """

    depth: float
    peak_time: int | None
    trough_time: int | None
    recovery_time: int | None
    duration_ms: int

    @property
    def recovered(self) -> bool:
        """Return whether equity got back to the peak (trivially true when it never fell)."""
        return self.recovery_time is not None or self.peak_time is None

    def to_dict(self) -> dict[str, float | int | None]:
        """Return the drawdown as plain values."""
        return asdict(self)


@dataclass(frozen=True)
class Performance:
    """The headline numbers of one backtest.

    Attributes:
        total_return: Final over start equity, minus 1.
        annualized_return: The compound annual growth rate over the wall-clock span of the
            index, ``(1 + total_return) ** (YEAR_MS / span) - 1``; NaN for a zero span.
        annualized_volatility: Sample standard deviation of the bar returns times the square root
            of the bars per year.
        sharpe: Annualised Sharpe ratio of the bar returns (see :func:`sharpe_ratio`).
        sortino: Annualised Sortino ratio of the bar returns (see :func:`sortino_ratio`).
        calmar: ``annualized_return`` over ``max_drawdown``; NaN when there was no drawdown.
        max_drawdown: Depth of the deepest drawdown, a positive fraction.
        max_drawdown_duration_days: Duration of that deepest drawdown, peak to recovery (or to the
            end if never recovered), in days.
        longest_drawdown_days: The longest time spent below a previous high by any drawdown,
            deepest or not, in days.
        trades: The number of closed round trips.
        win_rate: The share of trades with a positive pnl; NaN without trades.
        profit_factor: Gross wins over gross losses (see :func:`profit_factor`).
        expectancy: Mean pnl per trade in quote currency; NaN without trades.
        average_return_per_trade: Mean of the trades' returns on their entry notional.
        exposure: Mean gross exposure per bar.
        turnover: Traded notional over mean equity, per year.
        fees_paid: The sum of every fill's fee (open positions' entries included).
        final_equity: Equity at the last bar.
        start_equity: Equity at the first bar.
        bars: The number of bars.
        start_time: The first bar's time (ms); None without bars.
        end_time: The last bar's time (ms); None without bars.
    """

    total_return: float
    annualized_return: float
    annualized_volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_duration_days: float
    longest_drawdown_days: float
    trades: int
    win_rate: float
    profit_factor: float
    expectancy: float
    average_return_per_trade: float
    exposure: float
    turnover: float
    fees_paid: float
    final_equity: float
    start_equity: float
    bars: int
    start_time: int | None
    end_time: int | None

    def to_dict(self) -> dict[str, float | int | None]:
        """Return the performance as plain values."""
        return asdict(self)


def periods_per_year(index: pd.Index | npt.ArrayLike) -> float:
    """Return how many bars make a year, from the median spacing of timestamps in milliseconds.

    One-minute bars give 525,600. Gaps do not change the median as long as most bars are evenly
    spaced.

    Args:
        index: Bar times in milliseconds, increasing.

    Returns:
        ``YEAR_MS`` over the median spacing; NaN with fewer than two timestamps or a zero spacing.
    """
    times = np.asarray(index, dtype=np.int64)
    if times.size < 2:
        return math.nan
    spacing = float(np.median(np.diff(times)))
    return YEAR_MS / spacing if spacing > 0 else math.nan


def bar_returns(equity: pd.Series) -> pd.Series:
    """Return the simple return of every bar over the previous one (the first bar has none)."""
    values = equity.to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = values[1:] / values[:-1] - 1.0
    return pd.Series(returns, index=equity.index[1:], name="return", dtype=np.float64)


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Return how far equity is below its running high at every bar, as fractions ``<= 0``."""
    values = equity.to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdowns = values / np.fmax.accumulate(values) - 1.0 if values.size else values
    return pd.Series(drawdowns, index=equity.index, name="drawdown", dtype=np.float64)


def max_drawdown(equity: pd.Series) -> Drawdown:
    """Return the deepest drawdown of ``equity``, with when it started, bottomed and recovered.

    Equity at the first bar counts as a high. Among equally deep troughs the first one is taken.

    Raises:
        ValueError: If the timestamps decrease.
    """
    values = equity.to_numpy(dtype=np.float64)
    times = _times(equity.index)
    if values.size == 0:
        return Drawdown(math.nan, None, None, None, 0)
    highs = np.fmax.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdowns = values / highs - 1.0
    trough = int(np.nanargmin(drawdowns)) if not bool(np.all(np.isnan(drawdowns))) else 0
    depth = -float(drawdowns[trough])
    if not depth > 0.0:  # never fell (0, or -0.0), or no finite equity at all (NaN)
        return Drawdown(depth if math.isnan(depth) else 0.0, None, None, None, 0)
    high = highs[trough]
    peak = int(np.flatnonzero(values[: trough + 1] >= high)[-1])
    recoveries = np.flatnonzero(values[trough + 1 :] >= high)
    recovery = int(times[trough + 1 + int(recoveries[0])]) if recoveries.size else None
    end = int(times[-1]) if recovery is None else recovery
    return Drawdown(
        depth=depth,
        peak_time=int(times[peak]),
        trough_time=int(times[trough]),
        recovery_time=recovery,
        duration_ms=end - int(times[peak]),
    )


def longest_drawdown_ms(equity: pd.Series) -> int:
    """Return the longest time equity spent below a previous high, in milliseconds.

    Each spell runs from the last bar at a high to the first bar back at or above it, or to the
    last bar if equity never got back; 0 when equity never fell.

    Raises:
        ValueError: If the timestamps decrease.
    """
    values = equity.to_numpy(dtype=np.float64)
    times = _times(equity.index)
    if values.size == 0:
        return 0
    at_high = np.flatnonzero(values >= np.fmax.accumulate(values))
    if at_high.size == 0:
        return 0
    spells = [times[at_high[1:]] - times[at_high[:-1]]]
    spells[0] = spells[0][np.diff(at_high) > 1]
    if at_high[-1] < values.size - 1:
        spells.append(np.asarray([times[-1] - times[at_high[-1]]], dtype=np.int64))
    longest = np.concatenate(spells)
    return int(longest.max()) if longest.size else 0


def sharpe_ratio(returns: pd.Series | npt.ArrayLike, periods: float) -> float:
    """Return the annualised Sharpe ratio of ``returns``, as empyrical defines it.

    ``mean / std(ddof=1) * sqrt(periods)`` with a risk-free rate of 0; NaN values are ignored.

    Args:
        returns: Simple returns per period.
        periods: Periods per year.

    Returns:
        The ratio; NaN with fewer than two returns or when every return is 0, plus or minus
        infinity when every return is the same non-zero value.
    """
    values = _finite(returns)
    if values.size < 2:
        return math.nan
    mean = float(values.mean())
    deviation = _deviation(values)
    if deviation == 0.0:
        return math.copysign(math.inf, mean) if mean != 0.0 else math.nan
    return mean / deviation * math.sqrt(periods)


def sortino_ratio(returns: pd.Series | npt.ArrayLike, periods: float) -> float:
    """Return the annualised Sortino ratio of ``returns``, as empyrical defines it.

    ``mean / sqrt(mean(min(r, 0) ** 2)) * sqrt(periods)``: the downside deviation averages the
    squared negative returns over *all* periods, with a required return of 0. NaN values are
    ignored.

    Args:
        returns: Simple returns per period.
        periods: Periods per year.

    Returns:
        The ratio; NaN with fewer than two returns or when every return is 0, infinity when no
        return is negative and the mean is positive.
    """
    values = _finite(returns)
    if values.size < 2:
        return math.nan
    mean = float(values.mean())
    downside = math.sqrt(float(np.mean(np.square(np.minimum(values, 0.0)))))
    if downside == 0.0:
        return math.inf if mean > 0.0 else math.nan
    return mean * periods / (downside * math.sqrt(periods))


def annualized_volatility(returns: pd.Series | npt.ArrayLike, periods: float) -> float:
    """Return the sample standard deviation of ``returns`` times ``sqrt(periods)``.

    NaN values are ignored; NaN with fewer than two returns.
    """
    values = _finite(returns)
    if values.size < 2:
        return math.nan
    return _deviation(values) * math.sqrt(periods)


def profit_factor(pnl: pd.Series | npt.ArrayLike) -> float:
    """Return gross wins over the absolute gross losses of per-trade ``pnl``.

    Returns:
        The ratio; infinity with wins and no losses, NaN without trades or when every pnl is 0.
    """
    values = np.asarray(pnl, dtype=np.float64)
    if values.size == 0:
        return math.nan
    wins = float(values[values > 0].sum())
    losses = -float(values[values < 0].sum())
    if losses == 0.0:
        return math.inf if wins > 0.0 else math.nan
    return wins / losses


def performance(
    equity: pd.Series, trades: pd.DataFrame, fills: pd.DataFrame, exposure: pd.Series
) -> Performance:
    """Return the headline numbers of a backtest.

    Args:
        equity: Portfolio equity per bar, indexed by bar time (ms, increasing).
        trades: Closed round trips (needs ``pnl`` and ``return``); may be empty.
        fills: Executions (needs ``notional`` and ``fee``); may be empty.
        exposure: Gross exposure per bar.

    Raises:
        ValueError: If the equity's timestamps decrease.
    """
    values = equity.to_numpy(dtype=np.float64)
    times = _times(equity.index)
    bars = int(values.size)
    span_ms = int(times[-1] - times[0]) if bars else 0
    periods = periods_per_year(times)
    returns = bar_returns(equity).to_numpy(dtype=np.float64)
    start_equity = float(values[0]) if bars else math.nan
    final_equity = float(values[-1]) if bars else math.nan
    total_return = final_equity / start_equity - 1.0 if bars and start_equity != 0.0 else math.nan
    growth = _annualized_return(total_return, span_ms)
    drawdown = max_drawdown(equity)
    calmar = growth / drawdown.depth if drawdown.depth > 0.0 else math.nan
    statistics = _trade_statistics(trades)
    notional = _column_sum(fills, "notional", absolute=True)
    mean_equity = float(values.mean()) if bars else math.nan
    turnover = notional / mean_equity * (YEAR_MS / span_ms) if span_ms > 0 and mean_equity > 0.0 else math.nan
    gross = exposure.to_numpy(dtype=np.float64)
    return Performance(
        total_return=total_return,
        annualized_return=growth,
        annualized_volatility=annualized_volatility(returns, periods),
        sharpe=sharpe_ratio(returns, periods),
        sortino=sortino_ratio(returns, periods),
        calmar=calmar,
        max_drawdown=drawdown.depth,
        max_drawdown_duration_days=drawdown.duration_ms / DAY_MS,
        longest_drawdown_days=longest_drawdown_ms(equity) / DAY_MS,
        trades=int(statistics["trades"]),
        win_rate=statistics["win_rate"],
        profit_factor=statistics["profit_factor"],
        expectancy=statistics["expectancy"],
        average_return_per_trade=statistics["average_return"],
        exposure=float(np.nanmean(gross)) if bool(np.any(~np.isnan(gross))) else math.nan,
        turnover=turnover,
        fees_paid=_column_sum(fills, "fee"),
        final_equity=final_equity,
        start_equity=start_equity,
        bars=bars,
        start_time=int(times[0]) if bars else None,
        end_time=int(times[-1]) if bars else None,
    )


def trading_session(times_ms: pd.Series | npt.ArrayLike) -> npt.NDArray[np.str_]:
    """Return the trading session of each time: "asia", "europe" or "america".

    Asia is 00:00-08:00 UTC, Europe 08:00-16:00 and America 16:00-24:00; each interval includes
    its start and excludes its end, so 07:59 is Asia and 08:00 Europe.

    Args:
        times_ms: Times in milliseconds since the Unix epoch (UTC).
    """
    times = np.asarray(times_ms, dtype=np.int64)
    hours = (times // _HOUR_MS) % 24
    return np.asarray(SESSIONS)[hours // _SESSION_HOURS]


def breakdown(trades: pd.DataFrame, by: str) -> pd.DataFrame:
    """Return the trade statistics of each value of ``by``, the most profitable first.

    Args:
        trades: Closed round trips (needs ``pnl``, ``fees``, ``return`` and ``entry_time`` or the
            ``by`` column).
        by: A trade column such as "symbol", "regime", "signal_type" or "exit_reason", or
            "session" (the :func:`trading_session` of ``entry_time``).

    Returns:
        One row per group value (the index, named ``by``; missing values form their own group)
        with columns ``trades``, ``win_rate``, ``pnl``, ``fees``, ``profit_factor``,
        ``expectancy`` and ``average_return``, sorted by ``pnl`` descending (ties by group value).
        Empty when there are no trades.

    Raises:
        ValueError: If ``by`` is neither "session" nor a column of ``trades``.
    """
    if by == "session":
        if "entry_time" not in trades.columns:
            raise ValueError("a session breakdown needs the trades' entry_time")
        keys = pd.Series(trading_session(trades["entry_time"]), index=trades.index, name=by)
    elif by in trades.columns:
        keys = trades[by].rename(by)
    else:
        raise ValueError(f"cannot break trades down by {by!r}: no such column")
    rows: dict[object, dict[str, float]] = {}
    for key, group in trades.groupby(keys, sort=True, dropna=False):
        rows[key] = _trade_statistics(group)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=_BREAKDOWN_COLUMNS)
    frame = frame.astype(dict.fromkeys(_BREAKDOWN_COLUMNS, np.float64) | {"trades": np.int64})
    frame.index.name = by
    return frame.sort_values("pnl", ascending=False, kind="stable")


def breakdowns(trades: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return the :func:`breakdown` of ``trades`` by each of :data:`BREAKDOWN_KEYS`."""
    return {by: breakdown(trades, by) for by in BREAKDOWN_KEYS}


def _times(index: pd.Index) -> npt.NDArray[np.int64]:
    """Return the bar times of ``index`` as int64 milliseconds, checking they never decrease."""
    times = np.asarray(index, dtype=np.int64)
    if times.size > 1 and bool(np.any(np.diff(times) < 0)):
        raise ValueError("equity timestamps must be increasing")
    return times


def _finite(returns: pd.Series | npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return ``returns`` as a float array without its NaN values."""
    values = np.asarray(returns, dtype=np.float64).ravel()
    return values[~np.isnan(values)]


def _deviation(values: npt.NDArray[np.float64]) -> float:
    """Return the sample standard deviation, exactly 0 when every value is equal.

    Identical values can leave a residue of about 1e-18 around their floating-point mean, which
    would turn an infinite ratio into an arbitrary huge one (empyrical guards the same way).
    """
    if float(values.max()) == float(values.min()):
        return 0.0
    return float(values.std(ddof=1))


def _annualized_return(total_return: float, span_ms: int) -> float:
    """Return the compound annual growth rate of ``total_return`` earned over ``span_ms``."""
    if span_ms <= 0 or math.isnan(total_return):
        return math.nan
    if total_return <= -1.0:
        return -1.0
    try:
        return float((1.0 + total_return) ** (YEAR_MS / span_ms) - 1.0)
    except OverflowError:  # a big gain over a short span: the rate is beyond any float
        return math.inf


def _column_sum(frame: pd.DataFrame, column: str, *, absolute: bool = False) -> float:
    """Return the sum of ``column`` (of its absolute values if asked); 0 for an empty frame."""
    if frame.empty:
        return 0.0
    values = frame[column].to_numpy(dtype=np.float64)
    return float(np.nansum(np.abs(values) if absolute else values))


def _trade_statistics(trades: pd.DataFrame) -> dict[str, float]:
    """Return the count, win rate, pnl, fees, profit factor, expectancy and mean return of trades."""
    count = len(trades)
    if count == 0:
        return dict.fromkeys(_BREAKDOWN_COLUMNS, math.nan) | {"trades": 0.0, "pnl": 0.0, "fees": 0.0}
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    return {
        "trades": float(count),
        "win_rate": float(np.count_nonzero(pnl > 0) / count),
        "pnl": float(pnl.sum()),
        "fees": float(trades["fees"].to_numpy(dtype=np.float64).sum()) if "fees" in trades else math.nan,
        "profit_factor": profit_factor(pnl),
        "expectancy": float(pnl.mean()),
        "average_return": float(trades["return"].to_numpy(dtype=np.float64).mean()),
    }
