"""The feature matrix: one row per (symbol, 1-minute candle), every feature causal.

Inputs are curated 1-minute candles per symbol (``timestamp`` in UTC milliseconds, the candle's
open time, sorted; ``open``, ``high``, ``low``, ``close``, ``volume``; other columns are ignored)
and, optionally, order-book snapshots per symbol. The output of :func:`build_feature_matrix` has
the columns ``symbol``, ``timestamp``, the float64 features in a fixed order, and the regime
label ``regime``.

Causality. A row's features use only what was known when its candle closed (open time + 1
minute): its own candle and earlier ones, higher-timeframe bars that had closed by then, and
order-book snapshots taken by then. ``tests/unit/test_features_lookahead.py`` checks this by
changing every later row and requiring every earlier feature to stay bit-for-bit the same.

Holes. Missing minutes are real (the venue published no candle) and are never filled in: each
indicator runs on the rows as given, so a window of ``n`` rows spans ``n`` candles and, across a
hole, more than ``n`` minutes. Windows count rows because that is what the TA-Lib definitions do
and what the recursions (EMA, Wilder) need; the columns ``gap_minutes`` (minutes missing just
before a row) and ``missing_minutes`` (minutes missing within the last ``vwap_window`` rows) tell
a model where that stretch happened. Three things are time-based instead, because their meaning
is a span of time: the higher-timeframe bars (UTC-aligned periods), the volume profile's
look-back, and the as-of joins (leader returns by timestamp, order books by snapshot time).

Warm-up. A feature is NaN until its window or recursion has enough rows; nothing is back-filled.
Recursive indicators (EMA, Wilder smoothing) depend on where the series starts, as they do in
TA-Lib, with a weight that decays like ``(1 - 1/period)`` per row: build from a few days before
the first row a model needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradeflow.features import indicators
from tradeflow.features.indicators import FloatArray
from tradeflow.features.spec import FeatureSpec
from tradeflow.timeframes import MINUTE_MS, timeframe_ms

IntArray = npt.NDArray[np.int64]

#: Columns every candle frame must have.
CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
#: Columns every order-book frame must have.
BOOK_COLUMNS = ("snapshot_ts", "side", "level", "price", "amount")
#: The regime labels, in the order of their numeric codes (0..4).
REGIMES = ("TRENDING_BULLISH", "TRENDING_BEARISH", "RANGING", "VOLATILE", "UNCERTAIN")
#: Columns of the matrix that are not model inputs.
KEY_COLUMNS = ("symbol", "timestamp")
REGIME_COLUMN = "regime"

_UNCERTAIN = REGIMES.index("UNCERTAIN")
# Volume-profile columns that are relative to the price, hence comparable across symbols and time.
_PROFILE_FEATURES = (
    "profile_point_of_control_distance",
    "profile_value_area_high_distance",
    "profile_value_area_low_distance",
    "profile_value_area_width",
)
# Bin masses are cumulative sums; allow their rounding when testing the value-area share.
_MASS_SLACK = 1e-12


class _Candles(NamedTuple):
    timestamp: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray


def _candle_arrays(candles: pd.DataFrame) -> _Candles:
    """Return the candle columns as arrays, after checking what the features rely on.

    Raises:
        ValueError: if a column is missing, timestamps are not strictly increasing integers,
            a price is not positive and finite, or a volume is negative or not finite.
    """
    missing = [column for column in CANDLE_COLUMNS if column not in candles.columns]
    if missing:
        raise ValueError(f"candles lack column(s) {missing}; need {list(CANDLE_COLUMNS)}")
    timestamps = candles["timestamp"].to_numpy()
    if not np.issubdtype(timestamps.dtype, np.integer):
        raise ValueError(f"candle timestamps must be integer milliseconds, got {timestamps.dtype}")
    timestamps = timestamps.astype(np.int64)
    if timestamps.size > 1 and not bool(np.all(np.diff(timestamps) > 0)):
        raise ValueError("candle timestamps must be strictly increasing (sorted, no duplicates)")
    arrays = {
        column: np.ascontiguousarray(candles[column].to_numpy(dtype=np.float64))
        for column in CANDLE_COLUMNS[1:]
    }
    prices = np.stack([arrays[column] for column in ("open", "high", "low", "close")])
    if not bool(np.all(np.isfinite(prices) & (prices > 0.0))):
        raise ValueError("candle prices must be finite and positive")
    if not bool(np.all(np.isfinite(arrays["volume"]) & (arrays["volume"] >= 0.0))):
        raise ValueError("candle volumes must be finite and non-negative")
    return _Candles(
        timestamps, arrays["open"], arrays["high"], arrays["low"], arrays["close"], arrays["volume"]
    )


def _after_first_row(values: FloatArray, length: int) -> FloatArray:
    """Return ``values``, computed from the second row on, on all ``length`` rows (NaN first)."""
    out = np.full(length, np.nan)
    out[1:] = values
    return out


# --------------------------------------------------------------------------------------------
# 1-minute features
# --------------------------------------------------------------------------------------------


def base_features(candles: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Return the 1-minute indicator features, one row per candle, indexed like ``candles``.

    Columns, in order (``h`` over ``spec.return_horizons``, ``w`` over
    ``spec.volatility_windows``; every period and window counts rows):

    - ``log_return_{h}``, ``simple_return_{h}``: return over ``h`` rows.
    - ``realized_volatility_{w}``: sample std of one-row log returns; ``parkinson_volatility_{w}``.
    - ``atr_relative``: ATR / close; ``atr_percentile``: share of the last
      ``regime_atr_window`` rows' ``atr_relative`` at or below the current one.
    - ``rsi``; ``macd_line_relative``, ``macd_signal_relative``, ``macd_histogram_relative``
      (MACD / close); ``bollinger_percent_b``, ``bollinger_width``; ``adx``, ``plus_di``,
      ``minus_di``.
    - ``obv_flow``: OBV change per unit volume over ``obv_window`` rows; ``volume_zscore``;
      ``return_skew`` (skew of one-row log returns); ``vwap_distance`` (close / VWAP - 1).
    - ``gap_minutes``: minutes missing just before the row; ``missing_minutes``: minutes missing
      within the last ``vwap_window`` rows.

    Price-level indicators (ATR, MACD) are divided by the close, so the columns compare across
    symbols and years. Formulas: :mod:`tradeflow.features.indicators`.
    """
    bars = _candle_arrays(candles)
    return pd.DataFrame(_base_columns(bars, spec), index=candles.index)


def _base_columns(bars: _Candles, spec: FeatureSpec) -> dict[str, FloatArray]:
    close, high, low, volume = bars.close, bars.high, bars.low, bars.volume
    columns: dict[str, FloatArray] = {}
    for horizon in spec.return_horizons:
        columns[f"log_return_{horizon}"] = indicators.log_returns(close, horizon)
    for horizon in spec.return_horizons:
        columns[f"simple_return_{horizon}"] = indicators.simple_returns(close, horizon)
    for window in spec.volatility_windows:
        columns[f"realized_volatility_{window}"] = indicators.realized_volatility(close, window)
    for window in spec.volatility_windows:
        columns[f"parkinson_volatility_{window}"] = indicators.parkinson_volatility(high, low, window)
    atr_relative = indicators.atr(high, low, close, spec.atr_period) / close
    columns["atr_relative"] = atr_relative
    columns["atr_percentile"] = indicators.rolling_percentile(
        atr_relative, spec.regime_atr_window, spec.regime_atr_min_periods
    )
    columns["rsi"] = indicators.rsi(close, spec.rsi_period)
    macd = indicators.macd(close, spec.macd_fast, spec.macd_slow, spec.macd_signal)
    columns["macd_line_relative"] = macd.line / close
    columns["macd_signal_relative"] = macd.signal / close
    columns["macd_histogram_relative"] = macd.histogram / close
    bands = indicators.bollinger(close, spec.bollinger_period, spec.bollinger_deviations)
    columns["bollinger_percent_b"] = bands.percent_b
    columns["bollinger_width"] = bands.width
    directional = indicators.directional_movement(high, low, close, spec.adx_period)
    columns["adx"] = directional.adx
    columns["plus_di"] = directional.plus_di
    columns["minus_di"] = directional.minus_di
    columns["obv_flow"] = indicators.obv_flow(close, volume, spec.obv_window)
    columns["volume_zscore"] = indicators.volume_zscore(volume, spec.volume_zscore_window)
    one_row = columns["log_return_1"]
    columns["return_skew"] = _after_first_row(
        indicators.rolling_skew(one_row[1:], spec.skew_window), close.size
    )
    columns["vwap_distance"] = indicators.vwap_distance(high, low, close, volume, spec.vwap_window)
    minutes = bars.timestamp.astype(np.float64) / MINUTE_MS
    gap = np.full(close.size, np.nan)
    gap[1:] = np.diff(minutes) - 1.0
    columns["gap_minutes"] = gap
    window = spec.vwap_window
    missing = np.full(close.size, np.nan)
    if close.size >= window:
        missing[window - 1 :] = minutes[window - 1 :] - minutes[: close.size - window + 1] - (window - 1)
    columns["missing_minutes"] = missing
    return columns


# --------------------------------------------------------------------------------------------
# Higher timeframes
# --------------------------------------------------------------------------------------------


def resample(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Return OHLCV bars of ``timeframe`` built from 1-minute candles, labelled by open time.

    Bars are aligned to UTC (a 4h bar opens at 00:00, 04:00, ...): first open, highest high,
    lowest low, last close, summed volume, and ``candles``, the number of 1-minute candles it
    holds (fewer than the timeframe's minutes when the bar has holes). A period without any
    candle yields no bar. Every bar is emitted, the last one even if its period has not ended:
    a bar closes at ``timestamp + timeframe``, and :func:`multi_timeframe` joins only bars that
    had closed by then.
    """
    return _resample(_candle_arrays(candles), timeframe)


def _resample(bars: _Candles, timeframe: str) -> pd.DataFrame:
    step = timeframe_ms(timeframe)
    period = bars.timestamp // step
    starts = _run_starts(period)
    ends = np.append(starts[1:], period.size).astype(np.int64) - 1 if starts.size else starts
    has_rows = starts.size > 0
    return pd.DataFrame(
        {
            "timestamp": period[starts] * step,
            "open": bars.open[starts],
            "high": np.maximum.reduceat(bars.high, starts) if has_rows else np.zeros(0),
            "low": np.minimum.reduceat(bars.low, starts) if has_rows else np.zeros(0),
            "close": bars.close[ends],
            "volume": np.add.reduceat(bars.volume, starts) if has_rows else np.zeros(0),
            "candles": ends - starts + 1,
        }
    )


def _run_starts(keys: npt.NDArray[np.integer]) -> IntArray:
    """Return the index of the first row of every run of equal consecutive keys."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])).astype(np.int64)


def _timeframe_columns(frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, FloatArray]:
    """Return the indicators computed on one timeframe's bars (one value per bar)."""
    close = frame["close"].to_numpy(dtype=np.float64)
    high = frame["high"].to_numpy(dtype=np.float64)
    low = frame["low"].to_numpy(dtype=np.float64)
    return {
        "log_return_1": indicators.log_returns(close, 1),
        "rsi": indicators.rsi(close, spec.rsi_period),
        "atr_relative": indicators.atr(high, low, close, spec.atr_period) / close,
        "macd_histogram_relative": indicators.macd(
            close, spec.macd_fast, spec.macd_slow, spec.macd_signal
        ).histogram
        / close,
        "bollinger_percent_b": indicators.bollinger(
            close, spec.bollinger_period, spec.bollinger_deviations
        ).percent_b,
        "adx": indicators.directional_movement(high, low, close, spec.adx_period).adx,
    }


def timeframe_indicators(bars: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Return the indicators :func:`multi_timeframe` computes on one timeframe's bars, one row per bar.

    ``bars`` are higher-timeframe bars as :func:`resample` returns them (``high``, ``low``,
    ``close``; oldest first). Columns, unprefixed: ``log_return_1``, ``rsi``, ``atr_relative``,
    ``macd_histogram_relative``, ``bollinger_percent_b``, ``adx``. Each row depends on its bar
    and earlier ones only, so the streaming flow can recompute the newest closed bar's values
    from its own bounded bar history.
    """
    return pd.DataFrame(_timeframe_columns(bars, spec), index=bars.index)


def multi_timeframe(candles: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Return higher-timeframe indicators aligned to the 1-minute rows, indexed like ``candles``.

    For each timeframe ``tf`` of ``spec.higher_timeframes`` the bars of :func:`resample` get a
    one-bar log return, RSI, ATR / close, MACD histogram / close, Bollinger %b and ADX, with the
    spec's periods counted in bars (a bar with holes counts as one). A
    1-minute row with open time ``t`` takes the latest bar whose close time (its open plus
    ``tf``) is at most ``t + 1 minute``, the row's own close: the bar the row completes is used,
    a bar still open is not. Columns are prefixed ``tf5m_``, ``tf1h_``, ...
    """
    return pd.DataFrame(_multi_timeframe_columns(_candle_arrays(candles), spec), index=candles.index)


def _multi_timeframe_columns(bars: _Candles, spec: FeatureSpec) -> dict[str, FloatArray]:
    columns: dict[str, FloatArray] = {}
    for timeframe in spec.higher_timeframes:
        step = timeframe_ms(timeframe)
        frame = _resample(bars, timeframe)
        opens = frame["timestamp"].to_numpy(dtype=np.int64)
        latest_closed = np.searchsorted(opens, bars.timestamp + MINUTE_MS - step, side="right") - 1
        known = latest_closed >= 0
        where = np.maximum(latest_closed, 0)
        for name, values in _timeframe_columns(frame, spec).items():
            column = np.full(bars.timestamp.size, np.nan)
            if values.size:
                column[known] = values[where[known]]
            columns[f"tf{timeframe}_{name}"] = column
    return columns


# --------------------------------------------------------------------------------------------
# Volume profile
# --------------------------------------------------------------------------------------------


def value_area(
    histogram: npt.ArrayLike, fraction: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return the point-of-control bin and the value area's first and last bins, per histogram.

    ``histogram`` is ``(n, bins)`` (or one histogram of ``bins``) of volume per price bin, low
    prices first. The point of control is the bin with the most volume (the lowest such bin on a
    tie). The value area is the narrowest run of contiguous bins that contains the point of
    control and holds at least ``fraction`` of the volume; among equally narrow runs, the one
    holding more volume, then the lower one. Empty histograms get -1 everywhere.
    """
    volumes = np.atleast_2d(np.asarray(histogram, dtype=np.float64))
    count, bins = volumes.shape
    if count == 0 or bins == 0:
        nothing = np.full(count, -1, dtype=np.int64)
        return nothing, nothing.copy(), nothing.copy()
    cumulative = np.zeros((count, bins + 1))
    np.cumsum(volumes, axis=1, out=cumulative[:, 1:])
    total = cumulative[:, -1:]
    target = fraction * total * (1.0 - _MASS_SLACK)
    point = np.argmax(volumes, axis=1)
    index = np.arange(bins)
    first, last = index[None, :, None], index[None, None, :]
    # mass[k, a, b] = volume of bins a..b of histogram k.
    mass = cumulative[:, None, 1:] - cumulative[:, :-1, None]
    anchor = point[:, None, None]
    candidate = (first <= anchor) & (last >= anchor) & (last >= first) & (mass >= target[:, :, None])
    width = np.where(candidate, last - first, bins + 1)
    narrowest = width == width.min(axis=(1, 2), keepdims=True)
    choice = np.where(candidate & narrowest, mass, -np.inf).reshape(count, -1).argmax(axis=1)
    low_bin, high_bin = np.divmod(choice, bins)
    empty = total[:, 0] <= 0.0
    for array in (point, low_bin, high_bin):
        array[empty] = -1
    return point.astype(np.int64), low_bin.astype(np.int64), high_bin.astype(np.int64)


def volume_profile(candles: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Return the rolling volume profile's levels and the close's distance to them.

    The profile is recomputed at the first row of every ``volume_profile_refresh_minutes``
    period (UTC-aligned, so it does not depend on where the series starts) from the candles of
    the ``volume_profile_window_minutes`` ending at that row, that row included and nothing
    after it; the rows up to the next refresh reuse it, with their own close. Recomputing per
    period rather than per row keeps a year of minutes to a few thousand histograms.

    Each candle's volume goes to the bin of its typical price ``(high + low + close) / 3``; the
    ``volume_profile_bins`` bins split the window's lowest low to highest high evenly. The point
    of control is the middle of the fullest bin, the value area runs from the low edge of its
    first bin to the high edge of its last (:func:`value_area`). NaN until the series covers a
    whole window, or where the window traded no volume.

    Columns: ``profile_point_of_control``, ``profile_value_area_high``,
    ``profile_value_area_low`` (prices), ``profile_point_of_control_distance``,
    ``profile_value_area_high_distance``, ``profile_value_area_low_distance``
    (``close / level - 1``) and ``profile_value_area_width`` ((high - low) / point of control).
    """
    return pd.DataFrame(_profile_columns(_candle_arrays(candles), spec), index=candles.index)


def _profile_columns(bars: _Candles, spec: FeatureSpec) -> dict[str, FloatArray]:
    length, bins = bars.timestamp.size, spec.volume_profile_bins
    window_ms = spec.volume_profile_window_minutes * MINUTE_MS
    refresh_ms = spec.volume_profile_refresh_minutes * MINUTE_MS
    levels = np.full((3, length), np.nan)  # point of control, value area high, value area low
    if length:
        refreshes = _run_starts(bars.timestamp // refresh_ms)
        # The window is the minutes (t - window, t]; the series must reach back to its start.
        covered = bars.timestamp[refreshes] - window_ms + MINUTE_MS >= bars.timestamp[0]
        refreshes = refreshes[covered]
        starts = np.searchsorted(bars.timestamp, bars.timestamp[refreshes] - window_ms, side="right")
        typical = (bars.high + bars.low + bars.close) / 3.0
        # Lowest low and highest high of every window in one call each: reduceat over the
        # interleaved (start, stop) pairs, keeping the even results; the appended sentinel makes
        # a stop at the end of the series a valid index.
        bounds = np.empty(2 * refreshes.size, dtype=np.int64)
        bounds[0::2], bounds[1::2] = starts, refreshes + 1
        bottoms, tops = np.zeros(refreshes.size), np.zeros(refreshes.size)
        if refreshes.size:
            bottoms = np.minimum.reduceat(np.append(bars.low, np.inf), bounds)[0::2]
            tops = np.maximum.reduceat(np.append(bars.high, -np.inf), bounds)[0::2]
        histograms = np.zeros((refreshes.size, bins + 1))
        for k, (start, row) in enumerate(zip(starts, refreshes, strict=True)):
            bottom, top = bottoms[k], tops[k]
            if top > bottom:
                where = typical[start : row + 1] - bottom
                where *= bins / (top - bottom)
                index = where.astype(np.int64)  # truncation: the lowest typical price is bin 0
            else:
                index = np.zeros(row + 1 - start, dtype=np.int64)
            histograms[k] = np.bincount(index, weights=bars.volume[start : row + 1], minlength=bins + 1)
        # Only a typical price equal to the highest high lands past the last bin; it belongs in it.
        histograms[:, bins - 1] += histograms[:, bins]
        histograms = histograms[:, :bins]
        refreshed = np.full((3, refreshes.size), np.nan)
        for chunk in range(0, refreshes.size, 256):
            part = slice(chunk, chunk + 256)
            point, low_bin, high_bin = value_area(histograms[part], spec.volume_profile_value_area)
            bottom, size = bottoms[part], (tops[part] - bottoms[part]) / bins
            has_volume = point >= 0
            refreshed[0, part] = np.where(has_volume, bottom + (point + 0.5) * size, np.nan)
            refreshed[1, part] = np.where(has_volume, bottom + (high_bin + 1) * size, np.nan)
            refreshed[2, part] = np.where(has_volume, bottom + low_bin * size, np.nan)
        # Each row takes the latest refresh at or before it (when that refresh was computable).
        latest = np.searchsorted(refreshes, np.arange(length), side="right") - 1
        usable = latest >= 0
        levels[:, usable] = refreshed[:, latest[usable]]
    point_of_control, high, low = levels
    close = bars.close
    return {
        "profile_point_of_control": point_of_control,
        "profile_value_area_high": high,
        "profile_value_area_low": low,
        "profile_point_of_control_distance": close / point_of_control - 1.0,
        "profile_value_area_high_distance": close / high - 1.0,
        "profile_value_area_low_distance": close / low - 1.0,
        "profile_value_area_width": (high - low) / point_of_control,
    }


# --------------------------------------------------------------------------------------------
# Regime
# --------------------------------------------------------------------------------------------


def regime(features: pd.DataFrame, spec: FeatureSpec) -> pd.Series:
    """Return the market regime of each row, one of :data:`REGIMES`, indexed like ``features``.

    ``features`` needs the columns ``adx``, ``plus_di``, ``minus_di``, ``atr_percentile`` and
    ``bollinger_width`` of :func:`base_features`. Each row first gets a raw label:

    - ``TRENDING_BULLISH`` / ``TRENDING_BEARISH``: ADX at least ``regime_adx_trend``, with +DI
      above -DI / -DI above +DI;
    - else ``VOLATILE``: ATR percentile at least ``regime_high_volatility_percentile``;
    - else ``RANGING``: Bollinger width at most ``regime_bollinger_width_max``;
    - else ``UNCERTAIN`` (also wherever an input is still NaN, e.g. in the warm-up).

    The regime starts ``UNCERTAIN`` and switches to a raw label only once that label has held for
    ``regime_min_dwell`` consecutive rows, so a one-row flicker never shows. The switch depends on
    earlier rows only. :func:`regime_columns` turns the labels into one-hot model inputs.
    """
    needed = ("adx", "plus_di", "minus_di", "atr_percentile", "bollinger_width")
    codes = _regime_codes({name: features[name].to_numpy(dtype=np.float64) for name in needed}, spec)
    return pd.Series(np.asarray(REGIMES, dtype=object)[codes], index=features.index, name=REGIME_COLUMN)


def _regime_codes(features: Mapping[str, FloatArray], spec: FeatureSpec) -> npt.NDArray[np.intp]:
    adx, plus_di, minus_di = features["adx"], features["plus_di"], features["minus_di"]
    percentile, width = features["atr_percentile"], features["bollinger_width"]
    trending = adx >= spec.regime_adx_trend
    calm = ~trending & ~np.isnan(adx)
    raw = np.select(
        [
            trending & (plus_di > minus_di),
            trending & (minus_di > plus_di),
            calm & (percentile >= spec.regime_high_volatility_percentile),
            calm
            & (percentile < spec.regime_high_volatility_percentile)
            & (width <= spec.regime_bollinger_width_max),
        ],
        [REGIMES.index(label) for label in ("TRENDING_BULLISH", "TRENDING_BEARISH", "VOLATILE", "RANGING")],
        default=_UNCERTAIN,
    ).astype(np.intp)
    return _with_dwell(raw, spec.regime_min_dwell)


def _with_dwell(raw: npt.NDArray[np.intp], min_dwell: int) -> npt.NDArray[np.intp]:
    """Return ``raw`` smoothed so a label takes over only after ``min_dwell`` consecutive rows.

    A run of one label that reaches ``min_dwell`` rows becomes the regime at its
    ``min_dwell``-th row and stays until another run does; before the first, UNCERTAIN.
    """
    length = raw.size
    run_starts = _run_starts(raw)
    run_lengths = np.diff(np.concatenate([run_starts, [length]]))
    confirmed = run_starts[run_lengths >= min_dwell] + (min_dwell - 1)
    latest = np.searchsorted(confirmed, np.arange(length), side="right")
    return np.concatenate([[_UNCERTAIN], raw[confirmed]]).astype(np.intp)[latest]


def regime_columns(labels: pd.Series) -> pd.DataFrame:
    """Return the regime labels one-hot, as float64 columns ``regime_trending_bullish``, ...

    One column per entry of :data:`REGIMES`, in that order, indexed like ``labels``.
    """
    return pd.DataFrame(_one_hot(labels.to_numpy(dtype=object)), index=labels.index)


def _one_hot(labels: npt.NDArray[np.object_]) -> dict[str, FloatArray]:
    return {f"regime_{label.lower()}": (labels == label).astype(np.float64) for label in REGIMES}


# --------------------------------------------------------------------------------------------
# Cross-asset
# --------------------------------------------------------------------------------------------


def cross_asset(features_by_symbol: Mapping[str, pd.DataFrame], spec: FeatureSpec) -> dict[str, pd.DataFrame]:
    """Return each symbol's co-movement with ``spec.leader_symbol``, indexed like its frame.

    Each frame needs ``timestamp`` and the ``log_return_{h}`` columns of :func:`base_features`.
    The leader's returns are matched by timestamp (NaN where the leader has no candle).

    - ``leader_correlation``: Pearson correlation of one-row log returns with the leader's over
      the last ``correlation_window`` rows, leaving out rows without both returns; NaN with
      fewer than half a window of pairs, or no variance.
    - ``relative_strength_{h}`` for ``h`` in ``relative_strength_horizons``: the symbol's log
      return over ``h`` rows minus the leader's at the same timestamp.

    The leader is computed like every other symbol, against itself: its correlation is exactly 1
    and its relative strength exactly 0 wherever they are defined, which tells a model it is the
    leader. Without the leader among the symbols every column is NaN.
    """
    needed = ["timestamp", *(f"log_return_{horizon}" for horizon in (1, *spec.relative_strength_horizons))]
    arrays = {
        symbol: {name: frame[name].to_numpy() for name in dict.fromkeys(needed)}
        for symbol, frame in features_by_symbol.items()
    }
    return {
        symbol: pd.DataFrame(
            _cross_asset_columns(arrays[symbol], arrays.get(spec.leader_symbol), spec), index=frame.index
        )
        for symbol, frame in features_by_symbol.items()
    }


def _cross_asset_columns(
    own: Mapping[str, npt.NDArray[np.generic]],
    leader: Mapping[str, npt.NDArray[np.generic]] | None,
    spec: FeatureSpec,
) -> dict[str, FloatArray]:
    timestamps = np.asarray(own["timestamp"], dtype=np.int64)
    length = timestamps.size
    names = {horizon: f"log_return_{horizon}" for horizon in spec.relative_strength_horizons}
    if leader is None:
        return {"leader_correlation": np.full(length, np.nan)} | {
            f"relative_strength_{horizon}": np.full(length, np.nan) for horizon in names
        }
    leader_timestamps = np.asarray(leader["timestamp"], dtype=np.int64)
    position = np.minimum(np.searchsorted(leader_timestamps, timestamps), max(leader_timestamps.size - 1, 0))
    if leader_timestamps.size:
        matched = leader_timestamps[position] == timestamps
    else:
        matched = np.zeros(length, dtype=bool)

    def aligned(name: str) -> FloatArray:
        values = np.asarray(leader[name], dtype=np.float64)
        out = np.full(length, np.nan)
        out[matched] = values[position[matched]]
        return out

    window = spec.correlation_window
    columns = {
        "leader_correlation": indicators.rolling_correlation(
            np.asarray(own["log_return_1"], dtype=np.float64),
            aligned("log_return_1"),
            window,
            min_periods=max(2, window // 2),
        )
    }
    for horizon, name in names.items():
        columns[f"relative_strength_{horizon}"] = np.asarray(own[name], dtype=np.float64) - aligned(name)
    return columns


# --------------------------------------------------------------------------------------------
# Order book
# --------------------------------------------------------------------------------------------


def order_book_features(
    books: pd.DataFrame | None, timestamps: npt.ArrayLike, levels: tuple[int, ...] = (1, 5, 10)
) -> pd.DataFrame:
    """Return order-book features joined as-of to 1-minute rows (one row per timestamp).

    Each row with open time ``t`` takes the latest snapshot taken at or before its close,
    ``t + 1 minute``; NaN where there is none (or no ``books`` at all).

    - ``book_spread_relative``: (best ask - best bid) / mid, from level 0 of each side.
    - ``book_imbalance_{n}`` for ``n`` in ``levels``: ``(bid - ask) / (bid + ask)`` of the
      amounts summed over the best ``n`` levels of each side; in [-1, 1].
    - ``book_age_seconds``: how old that snapshot was at the row's close.

    Args:
        books: Snapshots of one symbol: ``snapshot_ts`` (UTC ms), ``side`` (``"bid"`` or
            ``"ask"``), ``level`` (0 = best), ``price``, ``amount``; any order.
        timestamps: The 1-minute rows' open times (UTC ms).
        levels: Depths of the imbalance columns.
    """
    return pd.DataFrame(_book_columns(books, np.asarray(timestamps, dtype=np.int64), levels))


def _book_columns(
    books: pd.DataFrame | None, times: IntArray, levels: tuple[int, ...]
) -> dict[str, FloatArray]:
    names = ["book_spread_relative", *(f"book_imbalance_{depth}" for depth in levels), "book_age_seconds"]
    out = {name: np.full(times.size, np.nan) for name in names}
    if books is None or books.empty:
        return out
    missing = [column for column in BOOK_COLUMNS if column not in books.columns]
    if missing:
        raise ValueError(f"order books lack column(s) {missing}; need {list(BOOK_COLUMNS)}")
    snapshot_times, snapshot = np.unique(books["snapshot_ts"].to_numpy(dtype=np.int64), return_inverse=True)
    count = snapshot_times.size
    side = books["side"].to_numpy(dtype=object)
    level = books["level"].to_numpy(dtype=np.int64)
    price = books["price"].to_numpy(dtype=np.float64)
    amount = books["amount"].to_numpy(dtype=np.float64)
    bid, ask = side == "bid", side == "ask"

    def best(mask: npt.NDArray[np.bool_]) -> FloatArray:
        values = np.full(count, np.nan)
        chosen = mask & (level == 0)
        values[snapshot[chosen]] = price[chosen]
        return values

    best_bid, best_ask = best(bid), best(ask)
    per_snapshot = {"book_spread_relative": (best_ask - best_bid) / ((best_ask + best_bid) / 2.0)}
    for depth in levels:
        within = level < depth
        bid_depth = np.bincount(snapshot[bid & within], weights=amount[bid & within], minlength=count)
        ask_depth = np.bincount(snapshot[ask & within], weights=amount[ask & within], minlength=count)
        total = bid_depth + ask_depth
        with np.errstate(invalid="ignore", divide="ignore"):
            per_snapshot[f"book_imbalance_{depth}"] = np.where(
                total > 0.0, (bid_depth - ask_depth) / total, np.nan
            )
    closes = times + MINUTE_MS
    latest = np.searchsorted(snapshot_times, closes, side="right") - 1
    known = latest >= 0
    for name, values in per_snapshot.items():
        out[name][known] = values[latest[known]]
    out["book_age_seconds"][known] = (closes[known] - snapshot_times[latest[known]]) / 1000.0
    return out


# --------------------------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------------------------


def build_feature_matrix(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    spec: FeatureSpec,
    books_by_symbol: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Return the feature matrix: one row per (symbol, 1-minute candle), sorted by both.

    Columns: ``symbol``, ``timestamp`` (the candle's open time, UTC ms), then the float64
    features in a fixed order — :func:`base_features`, :func:`multi_timeframe`, the relative
    columns of :func:`volume_profile`, :func:`regime_columns`, :func:`cross_asset`,
    :func:`order_book_features` — and last the label ``regime``. The columns are the same
    whatever the data: order-book columns are NaN for symbols without books. Use
    :func:`feature_columns` for the model inputs.

    Raises:
        ValueError: if a candle frame is malformed (see :func:`base_features`).
    """
    symbols = sorted(candles_by_symbol)
    if not symbols:
        raise ValueError("no symbols: candles_by_symbol is empty")
    bars_by_symbol = {symbol: _candle_arrays(candles_by_symbol[symbol]) for symbol in symbols}
    leader_bars = bars_by_symbol.get(spec.leader_symbol)
    leader = None if leader_bars is None else _returns_for_cross_asset(leader_bars, spec)
    sizes = [bars_by_symbol[symbol].timestamp.size for symbol in symbols]
    names = feature_names(spec)
    # One (features x rows) array, filled symbol by symbol (so only one symbol's intermediate
    # columns are alive at a time) and handed to pandas as a single block.
    values = np.empty((len(names), sum(sizes)))
    labels = np.empty(sum(sizes), dtype=object)
    offset = 0
    for symbol, size in zip(symbols, sizes, strict=True):
        books = None if books_by_symbol is None else books_by_symbol.get(symbol)
        features, symbol_labels = _symbol_features(bars_by_symbol[symbol], leader, books, spec)
        for row, name in enumerate(names):
            values[row, offset : offset + size] = features[name]
        labels[offset : offset + size] = symbol_labels
        offset += size
    matrix = pd.DataFrame(values.T, columns=names, copy=False)
    matrix.insert(0, "timestamp", np.concatenate([bars_by_symbol[symbol].timestamp for symbol in symbols]))
    matrix.insert(0, "symbol", pd.Series(np.repeat(np.asarray(symbols, dtype=object), sizes), dtype="str"))
    matrix[REGIME_COLUMN] = pd.Series(labels, dtype="str")
    return matrix


def rolling_block_rows(window: int) -> int:
    """Return the rows per block of the blocked cumulative sums behind a rolling ``window``.

    The rolling sums and variances of :mod:`tradeflow.features.indicators` add up their rows
    block by block, counted from the series' first row. A rolling feature recomputed on a tail
    of the rows that starts on a block boundary (a multiple of this, counted from the series'
    first row) and reaches at least one block before the row wanted is therefore bit for bit
    the whole series' value: the streaming flow relies on it (:mod:`tradeflow.execution.bars`).
    """
    return max(indicators._BLOCK_ROWS, window)  # the block rule of indicators._block_segments


def feature_names(spec: FeatureSpec) -> list[str]:
    """Return the feature columns :func:`build_feature_matrix` gives for ``spec``, in order.

    The float64 model inputs, without ``symbol``, ``timestamp`` and ``regime``; the same list
    :func:`feature_columns` reads off a built matrix.
    """
    nothing = np.zeros(0)
    empty = _Candles(np.zeros(0, dtype=np.int64), nothing, nothing, nothing, nothing, nothing)
    features, _ = _symbol_features(empty, None, None, spec)
    return list(features)


def _returns_for_cross_asset(bars: _Candles, spec: FeatureSpec) -> dict[str, npt.NDArray[np.generic]]:
    """Return the timestamps and the log returns that :func:`cross_asset` compares."""
    horizons = dict.fromkeys((1, *spec.relative_strength_horizons))
    return {"timestamp": bars.timestamp} | {
        f"log_return_{horizon}": indicators.log_returns(bars.close, horizon) for horizon in horizons
    }


def _symbol_features(
    bars: _Candles,
    leader: Mapping[str, npt.NDArray[np.generic]] | None,
    books: pd.DataFrame | None,
    spec: FeatureSpec,
) -> tuple[dict[str, FloatArray], npt.NDArray[np.object_]]:
    """Return one symbol's feature columns, in matrix order, and its regime labels."""
    features = _base_columns(bars, spec)
    labels = np.asarray(REGIMES, dtype=object)[_regime_codes(features, spec)]
    own_returns = {"timestamp": bars.timestamp} | {
        name: values for name, values in features.items() if name.startswith("log_return_")
    }
    profile = _profile_columns(bars, spec)
    features |= _multi_timeframe_columns(bars, spec)
    features |= {name: profile[name] for name in _PROFILE_FEATURES}
    features |= _one_hot(labels)
    features |= _cross_asset_columns(own_returns, leader, spec)
    features |= _book_columns(books, bars.timestamp, spec.order_book_levels)
    return features, labels


def feature_columns(matrix: pd.DataFrame) -> list[str]:
    """Return the numeric model-input columns of a feature matrix, in matrix order.

    Every column but ``symbol``, ``timestamp`` and the ``regime`` label (which is also present
    one-hot as ``regime_*``).
    """
    excluded = {*KEY_COLUMNS, REGIME_COLUMN}
    return [
        str(name)
        for name in matrix.columns
        if name not in excluded and pd.api.types.is_float_dtype(matrix[name].dtype)
    ]
