"""The indicators against TA-Lib, the reference implementation, on recorded real candles.

Each indicator must give TA-Lib's value on every row TA-Lib gives one (the same warm-up: NaN on
exactly the same rows) to within 1e-9 relative, plus an absolute allowance of 1e-9 on the
0-100 and 0-1 scales and of 1e-12 times the median price for price-level outputs (ATR, MACD),
whose values near zero carry only absolute rounding.

The differences that remain are floating-point evaluation order, nothing else: the recursions
here are ``k * x + (1 - k) * prev`` in scipy's lfilter where TA-Lib writes
``(prev * (n - 1) + x) / n`` or ``(x - prev) * k + prev`` (1 ulp per step, damped by the
recursion), and the Bollinger variance is taken around a block reference (two passes where that
would cancel) rather than from TA-Lib's running sums of x and x**2. Measured worst cases on these
files: ~1e-13 for RSI, ADX and DI; ~1e-15 of the price for ATR and MACD; ~4e-11 for %b, and
there TA-Lib is the less exact side (its deviation is off by up to 4e-11 relative to a two-pass
one in exact arithmetic, ours by 6e-13). OBV and the true range are exact.

The real files have holes; indicators are row-based, so both sides run on the rows as given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.features import indicators

talib = pytest.importorskip("talib")

FILES = [
    "binance/ETH-BTC_5m.parquet",  # 2018 sell-off: volatile, with holes
    "binance/XRP-ETH_1m.parquet",  # 1-minute, price ~0.0014, hundreds of holes
    "binance/UNKNOWN-BTC_1m.parquet",  # 1-minute, many missing minutes, nearly flat stretches
    "binance/NXT-BTC_5m.parquet",  # price ~3e-5: tiny absolute moves
]
RTOL = 1e-9
ATOL_BOUNDED = 1e-9  # RSI, ADX, DI (0-100), %b (around 0-1), width


@pytest.fixture(scope="module", params=FILES)
def candles(request: pytest.FixtureRequest, real_data: Path) -> pd.DataFrame:
    frame = pd.read_parquet(real_data / request.param)
    assert len(frame) > 1000
    return frame


def columns(candles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return tuple(candles[name].to_numpy(dtype=np.float64) for name in ("high", "low", "close", "volume"))  # type: ignore[return-value]


def assert_matches(ours: np.ndarray, reference: np.ndarray, atol: float) -> None:
    """Same warm-up (NaN on the same rows) and the same values within tolerance on the rest."""
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference), err_msg="warm-up differs")
    defined = ~np.isnan(reference)
    assert defined.sum() > len(reference) // 2
    np.testing.assert_allclose(ours[defined], reference[defined], rtol=RTOL, atol=atol)


def price_atol(close: np.ndarray) -> float:
    return 1e-12 * float(np.median(close))


@pytest.mark.parametrize("period", [14, 7, 30])
def test_rsi(candles: pd.DataFrame, period: int) -> None:
    _, _, close, _ = columns(candles)
    assert_matches(indicators.rsi(close, period), talib.RSI(close, timeperiod=period), ATOL_BOUNDED)


@pytest.mark.parametrize("period", [14, 5])
def test_atr(candles: pd.DataFrame, period: int) -> None:
    high, low, close, _ = columns(candles)
    assert_matches(
        indicators.atr(high, low, close, period),
        talib.ATR(high, low, close, timeperiod=period),
        price_atol(close),
    )


def test_true_range(candles: pd.DataFrame) -> None:
    high, low, close, _ = columns(candles)
    assert_matches(indicators.true_range(high, low, close), talib.TRANGE(high, low, close), 0.0)


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5)])
def test_macd(candles: pd.DataFrame, fast: int, slow: int, signal: int) -> None:
    _, _, close, _ = columns(candles)
    ours = indicators.macd(close, fast, slow, signal)
    line, signal_line, histogram = talib.MACD(close, fastperiod=fast, slowperiod=slow, signalperiod=signal)
    assert_matches(ours.line, line, price_atol(close))
    assert_matches(ours.signal, signal_line, price_atol(close))
    assert_matches(ours.histogram, histogram, price_atol(close))


def test_ema(candles: pd.DataFrame) -> None:
    _, _, close, _ = columns(candles)
    assert_matches(indicators.ema(close, 30), talib.EMA(close, timeperiod=30), price_atol(close))


@pytest.mark.parametrize(("period", "deviations"), [(20, 2.0), (10, 1.5)])
def test_bollinger(candles: pd.DataFrame, period: int, deviations: float) -> None:
    _, _, close, _ = columns(candles)
    ours = indicators.bollinger(close, period, deviations)
    upper, middle, lower = talib.BBANDS(
        close, timeperiod=period, nbdevup=deviations, nbdevdn=deviations, matype=0
    )
    assert_matches(ours.middle, middle, price_atol(close))
    assert_matches(ours.upper, upper, price_atol(close))
    assert_matches(ours.lower, lower, price_atol(close))
    # A flat window (every close equal) has no band: TA-Lib's bands touch, our %b is the middle
    # (0.5) rather than 0/0, and the width is 0.
    flat = upper == lower
    np.testing.assert_array_equal(ours.percent_b[flat], 0.5)
    np.testing.assert_array_equal(ours.width[flat], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        percent_b = np.where(flat, 0.5, (close - lower) / (upper - lower))
    assert_matches(ours.percent_b, percent_b, ATOL_BOUNDED)
    assert_matches(ours.width, (upper - lower) / middle, ATOL_BOUNDED)


@pytest.mark.parametrize("period", [14, 7])
def test_adx_and_directional_indicators(candles: pd.DataFrame, period: int) -> None:
    high, low, close, _ = columns(candles)
    ours = indicators.directional_movement(high, low, close, period)
    assert_matches(ours.adx, talib.ADX(high, low, close, timeperiod=period), ATOL_BOUNDED)
    assert_matches(ours.plus_di, talib.PLUS_DI(high, low, close, timeperiod=period), ATOL_BOUNDED)
    assert_matches(ours.minus_di, talib.MINUS_DI(high, low, close, timeperiod=period), ATOL_BOUNDED)


def test_obv(candles: pd.DataFrame) -> None:
    _, _, close, volume = columns(candles)
    np.testing.assert_array_equal(indicators.obv(close, volume), talib.OBV(close, volume))


def test_returns_and_rolling_volatility(candles: pd.DataFrame) -> None:
    """TA-Lib's ROCR and STDDEV cover the simple returns and the rolling deviation of log returns."""
    _, _, close, _ = columns(candles)
    assert_matches(indicators.simple_returns(close, 5) + 1.0, talib.ROCR(close, timeperiod=5), ATOL_BOUNDED)
    log_return = indicators.log_returns(close, 1)
    window = 30
    population = talib.STDDEV(log_return, timeperiod=window, nbdev=1.0)
    # TA-Lib's STDDEV is the population deviation, ours the sample one; TA-Lib also takes it from
    # running sums, so compare where its variance is not rounding noise.
    ours = indicators.realized_volatility(close, window) * np.sqrt((window - 1) / window)
    assert_matches(ours, population, 1e-12)
