"""Backtest metrics: hand-computed small cases, edge cases, and empyrical as an independent reference.

empyrical-reloaded is a separate implementation of the same definitions (risk-free rate 0, Sharpe
with the sample deviation, Sortino with the downside deviation over all periods), so Sharpe,
Sortino, maximum drawdown and annualised volatility are checked against it on a seeded random
walk, one with a crash, and the closes of real exchange candles used as an equity curve.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import empyrical
import numpy as np
import pandas as pd
import pytest

from tradeflow.backtest.metrics import (
    BREAKDOWN_KEYS,
    DAY_MS,
    MINUTES_PER_YEAR,
    YEAR_MS,
    Drawdown,
    annualized_volatility,
    bar_returns,
    breakdown,
    breakdowns,
    drawdown_series,
    longest_drawdown_ms,
    max_drawdown,
    performance,
    periods_per_year,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
    trading_session,
)

MINUTE = 60_000
HOUR = 60 * MINUTE
START = int(pd.Timestamp("2024-03-01", tz="UTC").value // 1_000_000)
TRADE_COLUMNS = [
    "symbol", "direction", "entry_time", "exit_time", "quantity", "entry_price", "exit_price", "pnl",
    "fees", "return", "regime", "signal_type", "exit_reason",
]  # fmt: skip
FILL_COLUMNS = ["time", "symbol", "side", "quantity", "price", "fee", "notional"]
PERIODS = float(MINUTES_PER_YEAR)
UNDEFINED_WITHOUT_TRADES = ("win_rate", "profit_factor", "expectancy", "average_return_per_trade")
RELATIVE = 1e-9


def curve(values: list[float], step: int = MINUTE, times: list[int] | None = None) -> pd.Series:
    index = (
        [START + t for t in times] if times is not None else [START + i * step for i in range(len(values))]
    )
    return pd.Series(values, index=pd.Index(index, dtype=np.int64), dtype=np.float64)


def no_trades() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in TRADE_COLUMNS})


def no_fills() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in FILL_COLUMNS})


def make_trades(rows: list[dict[str, object]]) -> pd.DataFrame:
    defaults: dict[str, object] = {
        "symbol": "BTC/USDT", "direction": 1, "entry_time": START, "exit_time": START + HOUR,
        "quantity": 1.0, "entry_price": 100.0, "exit_price": 100.0, "pnl": 0.0, "fees": 0.0,
        "return": 0.0, "regime": "trend", "signal_type": "breakout", "exit_reason": "target",
    }  # fmt: skip
    return pd.DataFrame([defaults | row for row in rows], columns=TRADE_COLUMNS)


def walk(seed: int, crash: bool) -> pd.Series:
    """A seeded random walk of 20,000 one-minute returns (and optionally a 35 % crash), as equity."""
    generator = np.random.default_rng(seed)
    returns = generator.normal(2e-6, 8e-4, 20_000)
    if crash:
        returns[12_000] = -0.35
        returns[12_001:12_300] -= 2e-3
    equity = 10_000.0 * np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    return curve(equity.tolist())


# --- periods per year, returns, drawdowns ---------------------------------------------------------


def test_periods_per_year_follows_the_median_spacing() -> None:
    minutes = START + np.arange(100) * MINUTE
    assert periods_per_year(minutes) == 525_600 == MINUTES_PER_YEAR
    assert periods_per_year(pd.Index(START + np.arange(10) * 5 * MINUTE)) == 105_120
    assert periods_per_year(START + np.arange(10) * HOUR) == 8_760
    with_gaps = np.concatenate((minutes[:40], minutes[60:]))  # a 21-minute hole
    assert periods_per_year(with_gaps) == 525_600
    assert math.isnan(periods_per_year(np.asarray([START])))
    assert math.isnan(periods_per_year(np.asarray([], dtype=np.int64)))
    assert math.isnan(periods_per_year(np.asarray([START, START])))


def test_bar_returns_drop_the_first_bar() -> None:
    equity = curve([100.0, 110.0, 99.0])
    returns = bar_returns(equity)
    assert returns.index.tolist() == [START + MINUTE, START + 2 * MINUTE]
    np.testing.assert_allclose(returns.to_numpy(), [0.1, -0.1], rtol=1e-12)
    assert bar_returns(curve([100.0])).empty and bar_returns(curve([])).empty


def test_drawdown_series_is_the_fall_below_the_running_high() -> None:
    series = drawdown_series(curve([100.0, 120.0, 90.0, 120.0, 130.0, 117.0]))
    np.testing.assert_allclose(series.to_numpy(), [0.0, 0.0, -0.25, 0.0, 0.0, -0.1], atol=1e-15)
    assert bool((series <= 0).all())
    assert drawdown_series(curve([])).empty


def test_max_drawdown_recovered() -> None:
    drawdown = max_drawdown(curve([100.0, 120.0, 90.0, 100.0, 120.0, 130.0]))
    assert drawdown.depth == pytest.approx(0.25, rel=1e-12)
    assert drawdown.peak_time == START + MINUTE
    assert drawdown.trough_time == START + 2 * MINUTE
    assert drawdown.recovery_time == START + 4 * MINUTE  # back at 120: recovered
    assert drawdown.duration_ms == 3 * MINUTE
    assert drawdown.recovered


def test_max_drawdown_starts_at_the_last_bar_at_the_high_and_takes_the_first_of_equal_troughs() -> None:
    drawdown = max_drawdown(curve([100.0, 120.0, 110.0, 120.0, 60.0, 90.0, 60.0, 130.0]))
    assert drawdown.depth == pytest.approx(0.5, rel=1e-12)
    assert drawdown.peak_time == START + 3 * MINUTE
    assert drawdown.trough_time == START + 4 * MINUTE
    assert drawdown.recovery_time == START + 7 * MINUTE
    assert drawdown.duration_ms == 4 * MINUTE


def test_max_drawdown_never_recovered_runs_to_the_end_across_gaps() -> None:
    equity = curve([100.0, 80.0, 90.0, 70.0, 75.0], times=[0, MINUTE, 5 * MINUTE, 6 * MINUTE, 3 * HOUR])
    drawdown = max_drawdown(equity)
    assert drawdown.depth == pytest.approx(0.30, rel=1e-12)
    assert drawdown.peak_time == START
    assert drawdown.trough_time == START + 6 * MINUTE
    assert drawdown.recovery_time is None and not drawdown.recovered
    assert drawdown.duration_ms == 3 * HOUR


def test_max_drawdown_of_a_rising_flat_or_empty_curve() -> None:
    for values in ([100.0, 101.0, 102.0], [100.0, 100.0, 100.0], [100.0]):
        assert max_drawdown(curve(values)) == Drawdown(0.0, None, None, None, 0)
    empty = max_drawdown(curve([]))
    assert math.isnan(empty.depth) and empty.peak_time is None and empty.duration_ms == 0
    with pytest.raises(ValueError, match="increasing"):
        max_drawdown(curve([1.0, 2.0], times=[MINUTE, 0]))


def test_longest_drawdown_can_be_another_than_the_deepest() -> None:
    # A shallow fall lasting 10 minutes, then a deep one lasting 2.
    equity = curve(
        [100.0, 99.0, 100.0, 101.0, 50.0, 102.0],
        times=[0, MINUTE, 10 * MINUTE, 11 * MINUTE, 12 * MINUTE, 13 * MINUTE],
    )
    assert max_drawdown(equity).duration_ms == 2 * MINUTE
    assert longest_drawdown_ms(equity) == 10 * MINUTE
    # A fall never recovered counts to the last bar.
    assert longest_drawdown_ms(curve([100.0, 101.0, 99.0, 100.0, 100.5])) == 3 * MINUTE
    assert longest_drawdown_ms(curve([100.0, 101.0, 102.0])) == 0
    assert longest_drawdown_ms(curve([])) == 0


# --- ratios -------------------------------------------------------------------------------------


def test_sharpe_sortino_and_volatility_by_hand() -> None:
    returns = np.asarray([0.01, -0.02, 0.03, 0.0])
    # mean 0.005; squared deviations 2.5e-5 + 6.25e-4 + 6.25e-4 + 2.5e-5 = 1.3e-3 over 3 degrees of freedom
    deviation = math.sqrt(1.3e-3 / 3)
    assert sharpe_ratio(returns, 252) == pytest.approx(0.005 / deviation * math.sqrt(252), rel=1e-12)
    # downside: mean of (0, 0.02², 0, 0) = 1e-4 -> 0.01
    assert sortino_ratio(returns, 252) == pytest.approx(0.005 / 0.01 * math.sqrt(252), rel=1e-12)
    assert annualized_volatility(returns, 252) == pytest.approx(deviation * math.sqrt(252), rel=1e-12)
    assert sharpe_ratio(pd.Series(returns), 252) == sharpe_ratio(returns, 252)


@pytest.mark.parametrize(
    "returns",
    [
        [],
        [0.01],
        [0.0, 0.0, 0.0],
        [0.01, 0.01, 0.01],
        [-0.01, -0.01],
        [0.01, 0.02, 0.0],
        [0.01, np.nan, -0.02],
    ],
)
def test_ratio_edge_cases_match_empyrical(returns: list[float]) -> None:
    values = np.asarray(returns, dtype=np.float64)
    ours = (sharpe_ratio(values, PERIODS), sortino_ratio(values, PERIODS))
    theirs = (
        empyrical.sharpe_ratio(values, annualization=PERIODS),
        empyrical.sortino_ratio(values, annualization=PERIODS),
    )
    np.testing.assert_allclose(ours, theirs, rtol=RELATIVE)  # NaN == NaN, inf == inf here


def test_profit_factor() -> None:
    assert profit_factor([30.0, -10.0, 20.0, -5.0]) == pytest.approx(50.0 / 15.0, rel=1e-12)
    assert profit_factor([30.0, 20.0]) == math.inf  # wins, no losses
    assert profit_factor([30.0, 0.0]) == math.inf
    assert profit_factor([-30.0, -20.0]) == 0.0
    assert math.isnan(profit_factor([0.0, 0.0]))
    assert math.isnan(profit_factor([]))


# --- performance ----------------------------------------------------------------------------------


def six_hourly_backtest() -> tuple[pd.Series, pd.DataFrame, pd.DataFrame, pd.Series]:
    equity = curve([1000.0, 1010.0, 990.0, 1005.0, 1020.0], step=6 * HOUR)  # one day
    trades = make_trades(
        [
            {"pnl": 30.0, "return": 0.03, "fees": 1.0},
            {"pnl": -10.0, "return": -0.01, "fees": 1.0},
            {"pnl": 20.0, "return": 0.02, "fees": 1.0},
            {"pnl": -5.0, "return": -0.005, "fees": 1.0},
        ]
    )
    fills = pd.DataFrame(
        {
            "time": [START, START + 6 * HOUR, START + 12 * HOUR, START + 18 * HOUR],
            "symbol": "BTC/USDT",
            "side": ["buy", "sell", "sell", "buy"],
            "quantity": 1.0,
            "price": [1000.0, 1030.0, 500.0, 490.0],
            "fee": [0.5, 0.5, 0.25, 0.25],
            "notional": [1000.0, 1030.0, 500.0, 490.0],
        }
    )
    exposure = pd.Series([0.0, 1.0, 1.0, 0.5, 0.0], index=equity.index)
    return equity, trades, fills, exposure


def test_performance_by_hand() -> None:
    equity, trades, fills, exposure = six_hourly_backtest()
    result = performance(equity, trades, fills, exposure)
    assert result.total_return == pytest.approx(0.02, rel=1e-12)
    assert result.annualized_return == pytest.approx(1.02**365 - 1, rel=1e-12)  # the span is one day
    depth = 20.0 / 1010.0  # 1010 at 06:00 down to 990 at 12:00, back above 1010 at 24:00
    assert result.max_drawdown == pytest.approx(depth, rel=1e-12)
    assert result.max_drawdown_duration_days == pytest.approx(0.75, rel=1e-12)
    assert result.longest_drawdown_days == pytest.approx(0.75, rel=1e-12)
    assert result.calmar == pytest.approx((1.02**365 - 1) / depth, rel=1e-12)
    returns = np.asarray([1010 / 1000, 990 / 1010, 1005 / 990, 1020 / 1005]) - 1
    assert result.sharpe == pytest.approx(returns.mean() / returns.std(ddof=1) * math.sqrt(1460), rel=1e-12)
    assert result.annualized_volatility == pytest.approx(returns.std(ddof=1) * math.sqrt(1460), rel=1e-12)
    assert result.trades == 4
    assert result.win_rate == 0.5
    assert result.profit_factor == pytest.approx(50.0 / 15.0, rel=1e-12)
    assert result.expectancy == pytest.approx(8.75, rel=1e-12)
    assert result.average_return_per_trade == pytest.approx(0.00875, rel=1e-12)
    assert result.exposure == pytest.approx(0.5, rel=1e-12)
    # 3,020 traded over a mean equity of 1,005 in one day -> 365 times that a year
    assert result.turnover == pytest.approx(3020.0 / 1005.0 * 365, rel=1e-12)
    assert result.fees_paid == pytest.approx(1.5, rel=1e-12)
    assert (result.start_equity, result.final_equity, result.bars) == (1000.0, 1020.0, 5)
    assert (result.start_time, result.end_time) == (START, START + DAY_MS)


def test_performance_to_dict_is_plain_json() -> None:
    result = performance(*six_hourly_backtest())
    plain = result.to_dict()
    assert set(plain) == set(result.__dataclass_fields__)
    assert all(type(value) in (float, int) for value in plain.values())
    assert json.loads(json.dumps(plain)) == pytest.approx(plain)


def test_performance_without_trades_one_bar_flat_or_empty_does_not_crash() -> None:
    flat = curve([1000.0] * 10)
    result = performance(flat, no_trades(), no_fills(), flat * 0)
    assert result.trades == 0 and result.fees_paid == 0.0 and result.turnover == 0.0
    assert result.total_return == 0.0 and result.max_drawdown == 0.0 and result.annualized_volatility == 0.0
    for name in (*UNDEFINED_WITHOUT_TRADES, "sharpe", "sortino", "calmar"):
        assert math.isnan(getattr(result, name)), name

    one = performance(curve([1000.0]), no_trades(), no_fills(), curve([0.0]))
    assert one.bars == 1 and one.total_return == 0.0 and one.start_time == one.end_time == START
    for name in ("annualized_return", "annualized_volatility", "sharpe", "sortino", "turnover"):
        assert math.isnan(getattr(one, name)), name

    empty = performance(curve([]), no_trades(), no_fills(), curve([]))
    assert empty.bars == 0 and empty.start_time is None and math.isnan(empty.total_return)
    assert json.dumps(empty.to_dict())


def test_a_big_gain_over_minutes_annualises_to_infinity_not_an_error() -> None:
    result = performance(curve([100.0, 150.0]), no_trades(), no_fills(), curve([0.0, 0.0]))
    assert result.annualized_return == math.inf


def test_total_loss_annualises_to_minus_one() -> None:
    result = performance(curve([100.0, 50.0, 0.0]), no_trades(), no_fills(), curve([0.0, 0.0, 0.0]))
    assert result.annualized_return == -1.0 and result.max_drawdown == 1.0


# --- breakdowns -----------------------------------------------------------------------------------


def at(hour: int, minute: int = 0) -> int:
    return START + hour * HOUR + minute * MINUTE


def test_sessions_at_their_boundaries() -> None:
    times = [at(0), at(7, 59), at(8), at(15, 59), at(16), at(23, 59), at(24), at(-1)]
    assert trading_session(times).tolist() == [
        "asia", "asia", "europe", "europe", "america", "america", "asia", "america",
    ]  # fmt: skip
    assert trading_session(pd.Series([at(8) - 1])).tolist() == ["asia"]  # 07:59:59.999
    assert trading_session([]).size == 0


def sample_trades() -> pd.DataFrame:
    return make_trades(
        [
            {"symbol": "BTC/USDT", "pnl": 30.0, "return": 0.03, "fees": 1.0, "entry_time": at(7, 59)},
            {"symbol": "BTC/USDT", "pnl": -10.0, "return": -0.01, "fees": 1.0, "entry_time": at(8),
             "regime": "range", "exit_reason": "stop"},
            {"symbol": "ETH/USDT", "pnl": 5.0, "return": 0.01, "fees": 0.5, "entry_time": at(16)},
            {"symbol": "ETH/USDT", "pnl": 25.0, "return": 0.02, "fees": 0.5, "entry_time": at(2),
             "signal_type": "reversion"},
            {"symbol": "SOL/USDT", "pnl": -40.0, "return": -0.04, "fees": 2.0, "entry_time": at(9),
             "regime": "range", "exit_reason": "stop"},
        ]
    )  # fmt: skip


def test_breakdown_by_symbol_sorted_by_pnl() -> None:
    frame = breakdown(sample_trades(), "symbol")
    assert frame.index.name == "symbol"
    assert frame.index.tolist() == ["ETH/USDT", "BTC/USDT", "SOL/USDT"]  # pnl 30, 20, -40
    assert frame.columns.tolist() == [
        "trades", "win_rate", "pnl", "fees", "profit_factor", "expectancy", "average_return",
    ]  # fmt: skip
    btc = frame.loc["BTC/USDT"]
    assert btc["trades"] == 2 and btc["win_rate"] == 0.5 and btc["pnl"] == 20.0 and btc["fees"] == 2.0
    assert btc["profit_factor"] == 3.0 and btc["expectancy"] == 10.0
    assert btc["average_return"] == pytest.approx(0.01, rel=1e-12)
    eth = frame.loc["ETH/USDT"]
    assert eth["profit_factor"] == math.inf and eth["win_rate"] == 1.0
    sol = frame.loc["SOL/USDT"]
    assert sol["profit_factor"] == 0.0 and sol["win_rate"] == 0.0
    assert frame["trades"].dtype == np.int64


def test_breakdown_by_session_regime_and_the_rest() -> None:
    trades = sample_trades()
    sessions = breakdown(trades, "session")
    assert sessions.index.tolist() == ["asia", "america", "europe"]  # 55, 5, -50
    assert sessions["trades"].tolist() == [2, 1, 2]
    assert sessions.loc["europe", "pnl"] == -50.0
    regimes = breakdown(trades, "regime")
    assert regimes.loc["range", "trades"] == 2 and regimes.loc["trend", "pnl"] == 60.0
    every = breakdowns(trades)
    assert tuple(every) == BREAKDOWN_KEYS == ("symbol", "regime", "signal_type", "session", "exit_reason")
    assert all(int(frame["trades"].sum()) == 5 for frame in every.values())
    assert every["exit_reason"].index.tolist() == ["target", "stop"]
    tied = make_trades([{"symbol": "XRP/USDT", "pnl": 1.0}, {"symbol": "ADA/USDT", "pnl": 1.0}])
    assert breakdown(tied, "symbol").index.tolist() == ["ADA/USDT", "XRP/USDT"]  # ties by group value
    with pytest.raises(ValueError, match="direction_of_moon"):
        breakdown(trades, "direction_of_moon")


def test_breakdowns_of_no_trades_are_empty() -> None:
    for by, frame in breakdowns(no_trades()).items():
        assert frame.empty and frame.index.name == by
        assert "profit_factor" in frame.columns


# --- empyrical as the reference -------------------------------------------------------------------


def assert_matches_empyrical(equity: pd.Series, periods: float) -> None:
    returns = bar_returns(equity)
    values = returns.to_numpy()
    assert sharpe_ratio(values, periods) == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=periods), rel=RELATIVE
    )
    assert sortino_ratio(values, periods) == pytest.approx(
        empyrical.sortino_ratio(returns, annualization=periods), rel=RELATIVE
    )
    assert annualized_volatility(values, periods) == pytest.approx(
        empyrical.annual_volatility(returns, annualization=periods), rel=RELATIVE
    )
    assert max_drawdown(equity).depth == pytest.approx(-empyrical.max_drawdown(returns), rel=RELATIVE)
    np.testing.assert_allclose(
        drawdown_series(equity).to_numpy()[1:],
        empyrical.stats.drawdown_series(returns).to_numpy(),
        atol=1e-12,
    )
    result = performance(equity, no_trades(), no_fills(), equity * 0)
    assert result.sharpe == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=periods), rel=RELATIVE
    )
    assert result.sortino == pytest.approx(
        empyrical.sortino_ratio(returns, annualization=periods), rel=RELATIVE
    )
    assert result.max_drawdown == pytest.approx(-empyrical.max_drawdown(returns), rel=RELATIVE)
    assert result.annualized_volatility == pytest.approx(
        empyrical.annual_volatility(returns, annualization=periods), rel=RELATIVE
    )


@pytest.mark.parametrize("crash", [False, True], ids=["random-walk", "crash"])
def test_ratios_and_drawdown_match_empyrical_on_a_random_walk(crash: bool) -> None:
    equity = walk(seed=11, crash=crash)
    assert periods_per_year(equity.index) == 525_600
    assert_matches_empyrical(equity, 525_600.0)
    if crash:
        assert max_drawdown(equity).depth > 0.35
    # empyrical's CAGR uses the bar count; ours the wall-clock span, identical without gaps
    span_years = (equity.index[-1] - equity.index[0]) / YEAR_MS
    result = performance(equity, no_trades(), no_fills(), equity * 0)
    assert span_years * 525_600 == len(equity) - 1
    assert result.annualized_return == pytest.approx(
        empyrical.annual_return(bar_returns(equity), annualization=525_600), rel=1e-7
    )


@pytest.mark.parametrize(("name", "periods"), [("UNKNOWN-BTC_1m", 525_600.0), ("TRX-BTC_5m", 105_120.0)])
def test_ratios_and_drawdown_match_empyrical_on_real_closes(
    real_data: Path, name: str, periods: float
) -> None:
    path = real_data / "binance" / f"{name}.parquet"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}: see {real_data / 'README.md'}")
    candles = pd.read_parquet(path)
    equity = pd.Series(candles["close"].to_numpy(), index=pd.Index(candles["timestamp"].to_numpy(np.int64)))
    assert periods_per_year(equity.index) == periods  # holes do not move the median spacing
    assert_matches_empyrical(equity, periods)
    drawdown = max_drawdown(equity)
    assert 0 < drawdown.depth < 1
    assert drawdown.peak_time is not None and drawdown.trough_time is not None
    assert drawdown.peak_time <= drawdown.trough_time
