"""Technical indicators as pure functions on numpy arrays.

Every function takes one-dimensional, row-aligned float arrays (a pandas Series works too) and
returns float64 arrays of the same length, with NaN where the indicator is not yet defined (its
warm-up). Periods and windows count rows, not minutes: on a series with holes a 60-row window
spans more than 60 minutes. Inputs must be finite; prices must be positive where a logarithm or
a ratio to the price is taken.

Where TA-Lib defines an indicator (RSI, ATR, MACD, Bollinger Bands, ADX/+DI/-DI, OBV), the function
follows TA-Lib's definition exactly, seeds and warm-up included, and the tests check it against
TA-Lib. The arithmetic differs in the last bits only: a recursion here runs as a first-order IIR
filter, ``y[k] = decay * y[k-1] + gain * x[k]``, through :func:`scipy.signal.lfilter` (C, so a
year of minutes takes milliseconds, where a Python loop would take seconds), while TA-Lib writes
the same step as ``(prev * (n - 1) + x) / n`` (Wilder) or ``(x - prev) * k + prev`` (EMA).

Rolling sums come from cumulative sums taken block by block (:func:`_rolling_sums`): each output
row depends on the rows of its own window and block only, never on a later row, and the rounding
error stays that of a sum over one block rather than over the whole series. Variances are taken
around a reference value per block (:func:`_rolling_mean_variance`), so a price-level series does
not lose its digits to the ``E[x**2] - E[x]**2`` cancellation; the rare windows that still would
(nearly flat prices) are redone in two passes, and a window of identical values has variance
exactly 0. The Bollinger deviation keeps ~13 digits where TA-Lib's running sums keep ~11.
"""

from __future__ import annotations

import math
from typing import NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

FloatArray: TypeAlias = npt.NDArray[np.float64]
#: Anything :func:`numpy.asarray` turns into a 1-D float array: an ndarray, a Series, a list.
Values: TypeAlias = npt.ArrayLike

# Rows per block of the blocked cumulative sums (at least the window): short blocks keep the
# deviations from a block's reference small, so a 20-row variance of a price keeps ~12 digits.
_BLOCK_ROWS = 64
# A window whose variance is below this share of its mean square (around the block reference)
# has lost more than three digits to cancellation; it is recomputed in two passes.
_CANCELLATION = 1e-3
# Values per chunk of that recomputation (rows x window), to bound its memory to ~16 MB.
_CHUNK_VALUES = 1 << 21
_LN_2 = math.log(2.0)


class Macd(NamedTuple):
    """MACD line, signal line and histogram (line minus signal)."""

    line: FloatArray
    signal: FloatArray
    histogram: FloatArray


class Bollinger(NamedTuple):
    """Bollinger Bands and the two features derived from them."""

    middle: FloatArray
    upper: FloatArray
    lower: FloatArray
    percent_b: FloatArray
    width: FloatArray


class DirectionalMovement(NamedTuple):
    """Wilder's directional movement system: ADX, +DI and -DI (all on a 0-100 scale)."""

    adx: FloatArray
    plus_di: FloatArray
    minus_di: FloatArray


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def _as_float(values: Values) -> FloatArray:
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"expected a one-dimensional series, got shape {array.shape}")
    return array


def _check_period(period: int, name: str = "period") -> None:
    if period < 1:
        raise ValueError(f"{name} must be at least 1, got {period}")


def _nan(length: int) -> FloatArray:
    return np.full(length, np.nan)


def _recursion(values: FloatArray, decay: float, gain: float, previous: float) -> FloatArray:
    """Return ``y`` with ``y[k] = decay * y[k-1] + gain * values[k]`` and ``y[-1] = previous``."""
    if values.size == 0:
        return values.copy()
    result, _ = lfilter(np.array([gain]), np.array([1.0, -decay]), values, zi=np.array([decay * previous]))
    return np.asarray(result, dtype=np.float64)


def _seeded_average(values: FloatArray, period: int, seed_end: int, alpha: float) -> FloatArray:
    """Return an exponential average seeded, TA-Lib style, with a simple average.

    The output is NaN before ``seed_end``; at ``seed_end`` it is the mean of the ``period``
    values ending there; after it, ``y[k] = y[k-1] + alpha * (values[k] - y[k-1])``.
    """
    out = _nan(values.size)
    if seed_end >= values.size or seed_end < period - 1:
        return out
    seed = float(np.mean(values[seed_end - period + 1 : seed_end + 1]))
    out[seed_end] = seed
    out[seed_end + 1 :] = _recursion(values[seed_end + 1 :], 1.0 - alpha, alpha, seed)
    return out


def _block_segments(values: FloatArray, window: int) -> tuple[FloatArray, int]:
    """Return overlapping segments (one per block of output rows) and the block length.

    Segment ``j`` holds the ``window - 1`` rows before block ``j`` and the block itself, so every
    window ending inside the block lies inside the segment. The series is padded at the front
    with its first value and at the back with its last; callers mask the rows that see padding.
    """
    block = max(_BLOCK_ROWS, window)
    blocks = -(-values.size // block)
    padded = np.empty(window - 1 + blocks * block)
    padded[: window - 1] = values[0]
    padded[window - 1 : window - 1 + values.size] = values
    padded[window - 1 + values.size :] = values[-1]
    return sliding_window_view(padded, block + window - 1)[::block], block


def _window_sums(segments: FloatArray, window: int, block: int) -> FloatArray:
    """Return, per segment, the sums of the ``window`` values ending at each row of its block."""
    cumulative = np.empty((segments.shape[0], segments.shape[1] + 1))
    cumulative[:, 0] = 0.0
    np.cumsum(segments, axis=1, out=cumulative[:, 1:])
    return cumulative[:, window : window + block] - cumulative[:, :block]


def _rolling_sums(values: FloatArray, window: int) -> FloatArray:
    """Return the sum of each row's trailing ``window`` values (NaN for the first ``window - 1``).

    Suits series without a large common offset (returns, volumes, counts); use
    :func:`_rolling_mean_variance` for the spread of a price level.
    """
    _check_period(window, "window")
    out = _nan(values.size)
    if values.size < window:
        return out
    segments, block = _block_segments(values, window)
    out[window - 1 :] = _window_sums(segments, window, block).ravel()[window - 1 : values.size]
    return out


def _rolling_mean_variance(values: FloatArray, window: int) -> tuple[FloatArray, FloatArray]:
    """Return the rolling mean and population variance over each row's trailing ``window`` values.

    Each segment's values are taken relative to its first value (a value at or before every row
    of the block, so nothing later leaks in), which keeps the ``E[d**2] - E[d]**2`` form well
    conditioned for price levels; the few windows where it still cancels badly (nearly flat
    prices) are recomputed in two passes. A window whose values are all identical gets variance
    exactly 0 and that value as its mean.
    """
    _check_period(window, "window")
    length = values.size
    mean, variance = _nan(length), _nan(length)
    if length < window:
        return mean, variance
    segments, block = _block_segments(values, window)
    first = segments[:, :1]
    deviations = segments - first
    local_mean = _window_sums(deviations, window, block)
    local_mean /= window
    np.multiply(deviations, deviations, out=deviations)
    mean_square = _window_sums(deviations, window, block)
    mean_square /= window
    spread = mean_square - local_mean * local_mean
    np.maximum(spread, 0.0, out=spread)
    local_mean += first
    mean[window - 1 :] = local_mean.ravel()[window - 1 : length]
    variance[window - 1 :] = spread.ravel()[window - 1 : length]
    # Where the variance is a small part of the mean square, the subtraction above cancelled
    # most digits (a nearly flat stretch of prices): redo those windows with two passes.
    ill_conditioned = (spread < _CANCELLATION * mean_square).ravel()[:length]
    ill_conditioned[: window - 1] = False
    rows = np.flatnonzero(ill_conditioned)
    windows = sliding_window_view(values, window)
    chunk_rows = max(1, _CHUNK_VALUES // window)
    for chunk in range(0, rows.size, chunk_rows):
        part = rows[chunk : chunk + chunk_rows]
        exact = windows[part - (window - 1)]
        centre = exact.mean(axis=1)
        exact = exact - centre[:, None]
        mean[part] = centre
        variance[part] = np.mean(exact * exact, axis=1)
    # A flat window would still keep a few ulps of variance; count its changes exactly instead.
    changes = np.zeros(length, dtype=np.int64)
    np.cumsum(values[1:] != values[:-1], out=changes[1:])
    flat = np.flatnonzero(changes[window - 1 :] == changes[: length - window + 1]) + (window - 1)
    variance[flat] = 0.0
    mean[flat] = values[flat]
    return mean, variance


# --------------------------------------------------------------------------------------------
# Returns and volatility
# --------------------------------------------------------------------------------------------


def simple_returns(close: Values, horizon: int) -> FloatArray:
    """Return the simple return over ``horizon`` rows: ``close[t] / close[t - h] - 1``.

    NaN for the first ``horizon`` rows.
    """
    _check_period(horizon, "horizon")
    prices = _as_float(close)
    out = _nan(prices.size)
    out[horizon:] = prices[horizon:] / prices[:-horizon] - 1.0
    return out


def log_returns(close: Values, horizon: int) -> FloatArray:
    """Return the log return over ``horizon`` rows: ``ln(close[t] / close[t - h])``.

    NaN for the first ``horizon`` rows.
    """
    _check_period(horizon, "horizon")
    prices = _as_float(close)
    out = _nan(prices.size)
    out[horizon:] = np.log(prices[horizon:] / prices[:-horizon])
    return out


def realized_volatility(close: Values, window: int) -> FloatArray:
    """Return the rolling sample standard deviation of one-row log returns.

    ``sigma[t] = std(r[t - w + 1 .. t], ddof=1)`` with ``r[k] = ln(close[k] / close[k - 1])``;
    per row, not annualised. NaN for the first ``window`` rows (row 0 has no return).
    """
    _check_period(window, "window")
    if window < 2:
        raise ValueError("a sample standard deviation needs a window of at least 2")
    prices = _as_float(close)
    out = _nan(prices.size)
    if prices.size < 2:
        return out
    _, variance = _rolling_mean_variance(np.log(prices[1:] / prices[:-1]), window)
    out[1:] = np.sqrt(variance * (window / (window - 1)))
    return out


def parkinson_volatility(high: Values, low: Values, window: int) -> FloatArray:
    """Return Parkinson's range-based volatility over the trailing ``window`` rows.

    ``sigma[t] = sqrt(mean(ln(high / low)**2 over the window) / (4 ln 2))``; per row, not
    annualised. NaN for the first ``window - 1`` rows.
    """
    log_range = np.log(_as_float(high) / _as_float(low))
    return np.sqrt(np.maximum(_rolling_sums(log_range * log_range, window), 0.0) / (4.0 * _LN_2 * window))


# --------------------------------------------------------------------------------------------
# TA-Lib's indicators
# --------------------------------------------------------------------------------------------


def true_range(high: Values, low: Values, close: Values) -> FloatArray:
    """Return the true range: ``max(high - low, |high - close[t-1]|, |low - close[t-1]|)``.

    NaN at row 0 (no previous close), as TA-Lib's ``TRANGE``.
    """
    highs, lows, closes = _as_float(high), _as_float(low), _as_float(close)
    out = _nan(highs.size)
    previous = closes[:-1]
    out[1:] = np.maximum(
        highs[1:] - lows[1:], np.maximum(np.abs(highs[1:] - previous), np.abs(lows[1:] - previous))
    )
    return out


def atr(high: Values, low: Values, close: Values, period: int = 14) -> FloatArray:
    """Return Wilder's average true range, as TA-Lib's ``ATR``.

    ``ATR[n] = mean(TR[1..n])``; then ``ATR[t] = (ATR[t-1] * (n - 1) + TR[t]) / n``.
    NaN for the first ``period`` rows.
    """
    _check_period(period)
    ranges = true_range(high, low, close)
    out = _nan(ranges.size)
    out[1:] = _seeded_average(ranges[1:], period, period - 1, 1.0 / period)
    return out


def rsi(close: Values, period: int = 14) -> FloatArray:
    """Return Wilder's relative strength index (0-100), as TA-Lib's ``RSI``.

    With ``d[t] = close[t] - close[t-1]``, ``G`` and ``L`` are Wilder averages of ``max(d, 0)``
    and ``max(-d, 0)``: seeded with the mean of the first ``period`` changes, then
    ``G[t] = (G[t-1] * (n - 1) + gain[t]) / n``. ``RSI = 100 * G / (G + L)``, and 0 where
    ``G + L`` is 0 (a flat window), as TA-Lib. NaN for the first ``period`` rows.
    """
    _check_period(period)
    prices = _as_float(close)
    out = _nan(prices.size)
    if prices.size <= period:
        return out
    change = np.diff(prices)
    gains = _seeded_average(np.maximum(change, 0.0), period, period - 1, 1.0 / period)
    losses = _seeded_average(np.maximum(-change, 0.0), period, period - 1, 1.0 / period)
    total = gains + losses
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = np.where(total > 0.0, 100.0 * gains / total, 0.0)
    out[:period] = np.nan
    return out


def ema(values: Values, period: int) -> FloatArray:
    """Return the exponential moving average, as TA-Lib's ``EMA``.

    ``k = 2 / (period + 1)``; seeded with the simple mean of the first ``period`` values, then
    ``EMA[t] = EMA[t-1] + k * (x[t] - EMA[t-1])``. NaN for the first ``period - 1`` rows.
    """
    _check_period(period)
    return _seeded_average(_as_float(values), period, period - 1, 2.0 / (period + 1))


def macd(close: Values, fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
    """Return the MACD line, signal and histogram, as TA-Lib's ``MACD``.

    ``line = EMA_fast(close) - EMA_slow(close)``, ``signal = EMA_signal(line)``,
    ``histogram = line - signal``, with ``k = 2 / (period + 1)``. As in TA-Lib, both price EMAs
    are seeded at row ``slow - 1`` (the fast one with the mean of its last ``fast`` closes
    there, not of the first ones), the signal EMA with the mean of the first ``signal`` line
    values, and all three outputs start at row ``slow + signal - 2``.
    """
    for value, name in ((fast, "fast"), (slow, "slow"), (signal, "signal")):
        _check_period(value, name)
    if fast >= slow:
        raise ValueError(f"the fast period ({fast}) must be shorter than the slow one ({slow})")
    prices = _as_float(close)
    fast_ema = _seeded_average(prices, fast, slow - 1, 2.0 / (fast + 1))
    slow_ema = _seeded_average(prices, slow, slow - 1, 2.0 / (slow + 1))
    line = fast_ema - slow_ema
    signal_line = _nan(prices.size)
    if prices.size > slow - 1:
        signal_line[slow - 1 :] = _seeded_average(line[slow - 1 :], signal, signal - 1, 2.0 / (signal + 1))
    start = min(slow + signal - 2, prices.size)
    line[:start] = np.nan
    return Macd(line, signal_line, line - signal_line)


def bollinger(close: Values, period: int = 20, deviations: float = 2.0) -> Bollinger:
    """Return Bollinger Bands (as TA-Lib's ``BBANDS`` with a simple average) and %b and width.

    ``middle = mean(close over period)``, ``sd`` the population standard deviation over the
    same rows, ``upper/lower = middle +/- deviations * sd``; ``percent_b = (close - lower) /
    (upper - lower)`` (0.5 where the bands touch, i.e. a flat window) and
    ``width = (upper - lower) / middle``. NaN for the first ``period - 1`` rows.
    """
    _check_period(period)
    prices = _as_float(close)
    middle, variance = _rolling_mean_variance(prices, period)
    spread = deviations * np.sqrt(variance)
    upper, lower = middle + spread, middle - spread
    band = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        percent_b = np.where(band > 0.0, (prices - lower) / band, 0.5)
        width = band / middle
    percent_b[np.isnan(middle)] = np.nan
    return Bollinger(middle, upper, lower, percent_b, width)


def directional_movement(high: Values, low: Values, close: Values, period: int = 14) -> DirectionalMovement:
    """Return ADX, +DI and -DI, as TA-Lib's ``ADX``, ``PLUS_DI`` and ``MINUS_DI``.

    ``up = high[t] - high[t-1]``, ``down = low[t-1] - low[t]``; ``+DM = up`` where
    ``up > down`` and ``up > 0``, ``-DM = down`` where ``down > up`` and ``down > 0``, else 0.
    ``+DM``, ``-DM`` and the true range are Wilder sums: the plain sum of rows ``1..n-1``, then
    ``S[t] = S[t-1] - S[t-1] / n + x[t]``. ``+DI = 100 * S(+DM) / S(TR)`` (0 where ``S(TR)`` is
    0) and likewise ``-DI``, from row ``n``. ``DX = 100 * |+DI - -DI| / (+DI + -DI)``;
    ``ADX`` is the mean of the first ``n`` DX (rows ``n..2n-1``), then
    ``ADX[t] = (ADX[t-1] * (n - 1) + DX[t]) / n``, from row ``2n - 1``. As in TA-Lib, a row
    whose DX is undefined (no range, or no directional movement in the window) keeps the previous
    ADX, and counts as 0 among the first ``n``.
    """
    _check_period(period)
    highs, lows = _as_float(high), _as_float(low)
    length = highs.size
    adx_out, plus_out, minus_out = _nan(length), _nan(length), _nan(length)
    if length <= period:
        return DirectionalMovement(adx_out, plus_out, minus_out)
    up = highs[1:] - highs[:-1]
    down = lows[:-1] - lows[1:]
    plus_dm = np.where((up > 0.0) & (up > down), up, 0.0)
    minus_dm = np.where((down > 0.0) & (down > up), down, 0.0)
    ranges = true_range(highs, lows, close)[1:]
    decay = 1.0 - 1.0 / period

    def wilder_sum(movement: FloatArray) -> FloatArray:
        seed = float(np.sum(movement[: period - 1]))
        return _recursion(movement[period - 1 :], decay, 1.0, seed)

    # Arrays below start at row `period` of the input.
    smoothed_range = wilder_sum(ranges)
    has_range = smoothed_range > 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        plus_di = np.where(has_range, 100.0 * wilder_sum(plus_dm) / smoothed_range, 0.0)
        minus_di = np.where(has_range, 100.0 * wilder_sum(minus_dm) / smoothed_range, 0.0)
        total = plus_di + minus_di
        defined = has_range & (total > 0.0)
        dx = np.where(defined, 100.0 * np.abs(plus_di - minus_di) / total, 0.0)
    plus_out[period:] = plus_di
    minus_out[period:] = minus_di
    if dx.size >= period:
        adx_seed = float(np.sum(dx[:period])) / period
        later_dx, later_defined = dx[period:], defined[period:]
        smoothed = _recursion(later_dx[later_defined], decay, 1.0 / period, adx_seed)
        # Rows whose DX is undefined hold the latest ADX (the seed before the first defined one).
        latest = np.cumsum(later_defined) - 1
        held = np.concatenate([[adx_seed], smoothed])[latest + 1]
        adx_out[2 * period - 1] = adx_seed
        adx_out[2 * period :] = held
    return DirectionalMovement(adx_out, plus_out, minus_out)


def obv(close: Values, volume: Values) -> FloatArray:
    """Return on-balance volume, as TA-Lib's ``OBV``.

    ``OBV[0] = volume[0]``; then ``OBV[t] = OBV[t-1] + sign(close[t] - close[t-1]) * volume[t]``.
    The level depends on where the series starts; :func:`obv_flow` is the start-free form.
    """
    prices, volumes = _as_float(close), _as_float(volume)
    if prices.size == 0:
        return prices.copy()
    signed = np.empty(prices.size)
    signed[0] = volumes[0]
    signed[1:] = np.sign(np.diff(prices)) * volumes[1:]
    return np.cumsum(signed)


def obv_flow(close: Values, volume: Values, window: int) -> FloatArray:
    """Return the change of OBV over the trailing ``window`` rows, per unit of volume traded.

    ``(OBV[t] - OBV[t-w]) / sum(volume[t-w+1 .. t])``, in [-1, 1]: +1 when every row closed up.
    NaN for the first ``window`` rows, or where no volume traded.
    """
    prices, volumes = _as_float(close), _as_float(volume)
    signed = np.zeros(prices.size)
    signed[1:] = np.sign(np.diff(prices)) * volumes[1:]
    flow, traded = _rolling_sums(signed, window), _rolling_sums(volumes, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(traded > 0.0, flow / traded, np.nan)
    out[: min(window, out.size)] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# Volume, distribution and cross-series statistics
# --------------------------------------------------------------------------------------------


def volume_zscore(volume: Values, window: int) -> FloatArray:
    """Return ``(volume[t] - mean) / sd`` over the trailing ``window`` rows (current row included).

    Population standard deviation; 0 where the window's volumes are all equal. NaN for the first
    ``window - 1`` rows.
    """
    volumes = _as_float(volume)
    mean, variance = _rolling_mean_variance(volumes, window)
    deviation = np.sqrt(variance)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(deviation > 0.0, (volumes - mean) / deviation, 0.0)
    out[np.isnan(mean)] = np.nan
    return out


def rolling_skew(values: Values, window: int) -> FloatArray:
    """Return the rolling sample skewness (adjusted Fisher-Pearson, as pandas' ``skew``).

    Over the trailing ``window`` values with ``m2``, ``m3`` the central moments,
    ``G1 = m3 / m2**1.5 * sqrt(w (w - 1)) / (w - 2)``; 0 where the window is flat. Raw moments
    are summed without a reference, so the series should be roughly centred (returns are).
    Rows whose window holds a NaN are NaN.
    """
    _check_period(window, "window")
    if window < 3:
        raise ValueError("a skewness needs a window of at least 3")
    series = _as_float(values)
    missing = ~np.isfinite(series)
    clean = np.where(missing, 0.0, series)
    count_missing = _rolling_sums(missing.astype(np.float64), window)
    sum_1 = _rolling_sums(clean, window) / window
    sum_2 = _rolling_sums(clean * clean, window) / window
    sum_3 = _rolling_sums(clean * clean * clean, window) / window
    m2 = np.maximum(sum_2 - sum_1 * sum_1, 0.0)
    m3 = sum_3 - 3.0 * sum_1 * sum_2 + 2.0 * sum_1**3
    adjust = math.sqrt(window * (window - 1)) / (window - 2)
    # Below this, m2 is rounding noise of the raw sums and the ratio would be too.
    noise = 1e-14 * np.maximum(sum_2, np.finfo(np.float64).tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(m2 > noise, adjust * m3 / m2**1.5, 0.0)
    out[~(count_missing == 0.0)] = np.nan
    return out


def vwap_distance(high: Values, low: Values, close: Values, volume: Values, window: int) -> FloatArray:
    """Return the distance of the close from the rolling VWAP: ``close / VWAP - 1``.

    ``VWAP = sum(typical * volume) / sum(volume)`` over the trailing ``window`` rows, with
    ``typical = (high + low + close) / 3``. NaN for the first ``window - 1`` rows, or where no
    volume traded in the window.
    """
    closes, volumes = _as_float(close), _as_float(volume)
    typical = (_as_float(high) + _as_float(low) + closes) / 3.0
    traded = _rolling_sums(volumes, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = _rolling_sums(typical * volumes, window) / traded
        return np.where(traded > 0.0, closes / vwap - 1.0, np.nan)


def rolling_correlation(x: Values, y: Values, window: int, min_periods: int | None = None) -> FloatArray:
    """Return the Pearson correlation of ``x`` and ``y`` over the trailing ``window`` rows.

    Pairs with a NaN on either side are left out; a row needs ``min_periods`` complete pairs
    (default: the whole window) and variance on both sides, else NaN. Computed as
    ``(n Sxy - Sx Sy) / sqrt((n Sxx - Sx**2) (n Syy - Sy**2))`` on raw sums, so the series should
    be roughly centred (returns are); a series correlates with itself at exactly 1.
    """
    _check_period(window, "window")
    needed = window if min_periods is None else min_periods
    first, second = _as_float(x), _as_float(y)
    if first.size != second.size:
        raise ValueError(f"x and y differ in length: {first.size} != {second.size}")
    complete = np.isfinite(first) & np.isfinite(second)
    xs, ys = np.where(complete, first, 0.0), np.where(complete, second, 0.0)
    count = _rolling_sums(complete.astype(np.float64), window)
    sum_x, sum_y = _rolling_sums(xs, window), _rolling_sums(ys, window)
    spread_x = count * _rolling_sums(xs * xs, window) - sum_x * sum_x
    spread_y = count * _rolling_sums(ys * ys, window) - sum_y * sum_y
    co_spread = count * _rolling_sums(xs * ys, window) - sum_x * sum_y
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = co_spread / np.sqrt(spread_x * spread_y)
    valid = (count >= needed) & (spread_x > 0.0) & (spread_y > 0.0)
    return np.where(valid, np.clip(correlation, -1.0, 1.0), np.nan)


def rolling_percentile(values: Values, window: int, min_periods: int) -> FloatArray:
    """Return the share of the trailing ``window`` values (current row included) at or below the current.

    In (0, 1]; NaN values are left out, and rows with fewer than ``min_periods`` values are NaN.
    """
    _check_period(window, "window")
    ranked = (
        pd.Series(_as_float(values))
        .rolling(window, min_periods=min_periods)
        .rank(method="max", ascending=True, pct=True)
    )
    return np.asarray(ranked.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
