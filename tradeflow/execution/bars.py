"""Per-symbol 1-minute bar history for the streaming flow, bounded to what the features look back.

The streaming flow computes each new bar's features with the batch code
(:mod:`tradeflow.features.build`) on a tail of the bars, so it needs the bars that tail reaches
back to and nothing older. :class:`Lookback` derives that from the :class:`FeatureSpec`;
:class:`BarHistory` keeps it, with the row index of every bar counted from the series' first
bar (the warm-up's first candle), because the tail must start on the batch code's block grid to
give the batch's values bit for bit (:func:`tradeflow.features.build.rolling_block_rows`).

What is kept, for the default spec (``Lookback.from_spec(FeatureSpec())``):

- ``rows`` = 1,441: the newest row's features look back at most that many rows: the longest
  row window (``realized_volatility_1440`` needs 1,441 closes), at least one block of the
  blocked sums (1,440 rows for the 1,440-row window), and the rows after which a recursion's
  start weighs less than 2**-60 (Wilder's ADX, two nested averages of period 14: 1,152 rows;
  MACD 26/9: 763), so the recursions agree with the whole series' to the last bit.
- ``alignment`` = 2,880: the tail starts on a multiple of the least common multiple of the
  blocks (64, 240, 1,440), counted from the series' first row; with the ``rows`` behind the
  newest, a tail has 1,441 to 4,320 rows.
- ``minutes`` = 10,080: the volume profile's window (7 days, wall clock), plus one row before it.
- ``atr_values`` = 43,200: the ATR percentile's window of ``atr_relative`` values (kept as floats
  by :mod:`tradeflow.execution.live_features`, not as bars).
- ``timeframe_rows`` = 1,152 and ``timeframe_alignment`` = 64: the same rule for the closed
  higher-timeframe bars (kept by the live features too).

So a symbol keeps ``max(rows + alignment + max horizon, minutes + 1)`` = 10,081 bars for the
default spec: about 0.5 MB of arrays, preallocated at twice that and compacted when full
(amortised O(1) per bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradeflow.features.build import CANDLE_COLUMNS, rolling_block_rows
from tradeflow.features.spec import FeatureSpec
from tradeflow.timeframes import MINUTE_MS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: A recursion's start weighs less than 2**-SETTLE_BITS after the rows :func:`settle_rows` gives.
SETTLE_BITS = 60


class Bar(NamedTuple):
    """One closed 1-minute candle: open time (UTC ms) and OHLCV."""

    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarArrays(NamedTuple):
    """Consecutive bars as arrays (views into a :class:`BarHistory`; do not keep them)."""

    timestamp: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def frame(self) -> pd.DataFrame:
        """Return the bars as a candle frame (copies), as the feature code takes them."""
        columns = zip(CANDLE_COLUMNS, self, strict=True)
        return pd.DataFrame({name: np.array(values) for name, values in columns})

    def head(self, count: int) -> BarArrays:
        """Return the first ``count`` bars."""
        return BarArrays(
            self.timestamp[:count],
            self.open[:count],
            self.high[:count],
            self.low[:count],
            self.close[:count],
            self.volume[:count],
        )


def settle_rows(decay: float) -> int:
    """Return the rows after which a recursion ``y[k] = decay * y[k-1] + ...`` forgets its start.

    After that many rows the start's weight, ``decay ** rows``, is below 2**-:data:`SETTLE_BITS`,
    far under a float64's resolution, so a recursion started that far back agrees with one
    started at the series' first row.
    """
    return math.ceil(SETTLE_BITS * math.log(2.0) / -math.log(decay))


def _recursion_rows(spec: FeatureSpec) -> int:
    """Return the rows the spec's recursive indicators need behind a row to forget their start."""

    def wilder(period: int) -> int:
        return settle_rows(1.0 - 1.0 / period) + period

    def ema(period: int) -> int:
        return settle_rows(1.0 - 2.0 / (period + 1)) + period

    return max(
        wilder(spec.atr_period),
        wilder(spec.rsi_period),
        2 * wilder(spec.adx_period),  # ADX: a Wilder average of DX made of Wilder sums
        ema(spec.macd_slow) + ema(spec.macd_signal),  # the signal line averages the MACD line
    )


@dataclass(frozen=True)
class Lookback:
    """How far back the newest row's features reach, derived from a :class:`FeatureSpec`.

    Attributes:
        rows: 1-minute rows behind the newest row, itself included, that its row-counted
            features read (longest window, one block of the blocked sums, recursions settled).
        alignment: A tail of 1-minute rows must start on a multiple of this, counted from the
            series' first row, for the blocked sums to match the batch bit for bit.
        horizon: The longest return horizon: returns at the tail's first rows need that many
            rows before it.
        minutes: Wall-clock minutes of the volume profile's window (one row before it is kept
            too).
        refresh_minutes: The volume profile's refresh period.
        atr_values: ``atr_relative`` values of the ATR percentile's window.
        timeframe_rows: Closed higher-timeframe bars behind the newest that their indicators read.
        timeframe_alignment: The block period of the higher-timeframe indicators' sums.
        correlation_rows: Rows behind the newest that the correlation with the leader reads.
        correlation_alignment: The block period of that correlation's sums.
    """

    rows: int
    alignment: int
    horizon: int
    minutes: int
    refresh_minutes: int
    atr_values: int
    timeframe_rows: int
    timeframe_alignment: int
    correlation_rows: int
    correlation_alignment: int

    @classmethod
    def from_spec(cls, spec: FeatureSpec) -> Lookback:
        """Return the look-back of ``spec``'s features (see the module docstring for the default's)."""
        rolling = (
            *spec.volatility_windows,
            spec.bollinger_period,
            spec.obv_window,
            spec.volume_zscore_window,
            spec.skew_window,
            spec.vwap_window,
        )
        blocks = [rolling_block_rows(window) for window in rolling]
        windows = max(
            max(spec.return_horizons) + 1,
            max(spec.volatility_windows) + 1,  # a return per row: one close more than the window
            spec.bollinger_period,
            spec.obv_window + 1,
            spec.volume_zscore_window,
            spec.skew_window + 1,
            spec.vwap_window,
        )
        recursion = _recursion_rows(spec)
        correlation_block = rolling_block_rows(spec.correlation_window)
        timeframe_block = rolling_block_rows(spec.bollinger_period)
        return cls(
            rows=max(windows, recursion, max(blocks) + 1),
            alignment=math.lcm(*blocks),
            horizon=max(spec.return_horizons),
            minutes=spec.volume_profile_window_minutes,
            refresh_minutes=spec.volume_profile_refresh_minutes,
            atr_values=spec.regime_atr_window,
            timeframe_rows=max(recursion, spec.bollinger_period, timeframe_block + 1, 2),
            timeframe_alignment=timeframe_block,
            correlation_rows=max(spec.correlation_window, correlation_block) + 1,
            correlation_alignment=correlation_block,
        )

    @property
    def kept_rows(self) -> int:
        """Return the 1-minute rows a history keeps whatever their times: the longest tail."""
        return self.rows + self.alignment + self.horizon

    def tail_start(self, newest: int, rows: int | None = None, alignment: int | None = None) -> int:
        """Return the row index a tail must start at to give row ``newest`` its batch value.

        The latest multiple of ``alignment`` at least ``rows`` rows before ``newest`` (row
        indices count from the series' first row, 0), or 0. Defaults: the 1-minute features'.
        """
        rows = self.rows if rows is None else rows
        alignment = self.alignment if alignment is None else alignment
        return max(0, (newest + 1 - rows) // alignment * alignment)


class BarHistory:
    """One symbol's 1-minute bars, oldest first, bounded to a look-back.

    Keeps at least ``keep_rows`` bars, and every bar of the last ``keep_minutes`` minutes plus
    the one before them. Every bar has a row index counted from the first bar ever given (the
    series' start), which stays valid as old bars are dropped.

    Args:
        keep_rows: Bars always kept behind the newest, itself included.
        keep_minutes: Minutes of bars always kept behind the newest (and one bar before them).
    """

    def __init__(self, keep_rows: int, keep_minutes: int = 0) -> None:
        if keep_rows < 1 or keep_minutes < 0:
            raise ValueError(f"keep_rows must be positive and keep_minutes not negative, got {keep_rows}, "
                             f"{keep_minutes}")  # fmt: skip
        self.keep_rows = keep_rows
        self.keep_minutes = keep_minutes
        self._capacity = 2 * max(keep_rows, keep_minutes + 1, 32)
        self._timestamp = np.zeros(self._capacity, dtype=np.int64)
        self._values = np.zeros((5, self._capacity))  # open, high, low, close, volume
        self._start = 0  # array position of the oldest kept bar
        self._end = 0  # array position after the newest
        self._offset = 0  # row index of the bar at array position 0
        self.series_start: int | None = None  # open time of the series' first bar

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def capacity(self) -> int:
        """Return how many bars the arrays hold before they are compacted."""
        return self._capacity

    @property
    def first_row(self) -> int:
        """Return the row index of the oldest kept bar."""
        return self._offset + self._start

    @property
    def newest_row(self) -> int:
        """Return the row index of the newest bar (-1 before any)."""
        return self._offset + self._end - 1

    @property
    def last_timestamp(self) -> int | None:
        """Return the newest bar's open time, or None before any."""
        return int(self._timestamp[self._end - 1]) if self._end > self._start else None

    @property
    def last_close(self) -> float:
        """Return the newest bar's close (NaN before any)."""
        return float(self._values[3, self._end - 1]) if self._end > self._start else math.nan

    def append(self, bar: Bar) -> bool:
        """Add a closed bar; return False (and keep nothing) unless it is newer than the newest.

        Raises:
            ValueError: if a price is not positive and finite or the volume negative or not finite.
        """
        last = self.last_timestamp
        if last is not None and bar.timestamp <= last:
            return False
        _check_bar(bar)
        if self._end == self._capacity:
            self._compact(int(bar.timestamp))
        position = self._end
        self._timestamp[position] = bar.timestamp
        self._values[:, position] = bar[1:]
        self._end += 1
        if self.series_start is None:
            self.series_start = int(bar.timestamp)
        return True

    def extend(self, candles: pd.DataFrame) -> int:
        """Add candles (``timestamp``, OHLCV; sorted) newer than the newest bar; return how many.

        Raises:
            ValueError: if timestamps are not strictly increasing integers or a value is invalid.
        """
        timestamps = candles["timestamp"].to_numpy()
        if timestamps.size and not np.issubdtype(timestamps.dtype, np.integer):
            raise ValueError(f"candle timestamps must be integer milliseconds, got {timestamps.dtype}")
        timestamps = timestamps.astype(np.int64)
        if timestamps.size > 1 and not bool(np.all(np.diff(timestamps) > 0)):
            raise ValueError("candle timestamps must be strictly increasing (sorted, no duplicates)")
        last = self.last_timestamp
        newer = (
            slice(0, None)
            if last is None
            else slice(int(np.searchsorted(timestamps, last, side="right")), None)
        )
        stamps = timestamps[newer]
        values = np.stack([candles[name].to_numpy(dtype=np.float64)[newer] for name in CANDLE_COLUMNS[1:]])
        _check_values(values)
        for chunk in range(0, stamps.size, self._capacity // 2):
            part = slice(chunk, chunk + self._capacity // 2)
            count = stamps[part].size
            if self._end + count > self._capacity:
                self._compact(int(stamps[part][-1]), incoming=count)
            self._timestamp[self._end : self._end + count] = stamps[part]
            self._values[:, self._end : self._end + count] = values[:, part]
            self._end += count
        if stamps.size and self.series_start is None:
            self.series_start = int(stamps[0])
        return int(stamps.size)

    def arrays(self, first_row: int | None = None) -> BarArrays:
        """Return the bars from row index ``first_row`` (default: the oldest kept) to the newest.

        Raises:
            ValueError: if ``first_row`` is older than the oldest kept bar.
        """
        first = self.first_row if first_row is None else first_row
        if first < self.first_row:
            raise ValueError(f"row {first} is no longer kept (oldest kept: {self.first_row})")
        begin = first - self._offset
        values = self._values[:, begin : self._end]
        return BarArrays(self._timestamp[begin : self._end], *values)

    def row_at_or_before(self, timestamp: int) -> int | None:
        """Return the row index of the newest kept bar opening at or before ``timestamp``, or None."""
        kept = self._timestamp[self._start : self._end]
        position = int(np.searchsorted(kept, timestamp, side="right")) - 1
        return None if position < 0 else self.first_row + position

    def _compact(self, incoming_timestamp: int, incoming: int = 1) -> None:
        """Drop the bars no longer needed and move the rest to the front of the arrays."""
        keep_from = self._end - self.keep_rows + incoming
        if self.keep_minutes:
            horizon = incoming_timestamp - self.keep_minutes * MINUTE_MS
            before = int(np.searchsorted(self._timestamp[self._start : self._end], horizon, side="right")) - 1
            keep_from = min(keep_from, self._start + max(before, 0))
        keep_from = max(keep_from, self._start)
        count = self._end - keep_from
        if count + incoming > self._capacity:
            raise ValueError(
                f"{count + incoming} bars needed at once, more than the capacity {self._capacity}"
            )
        self._timestamp[:count] = self._timestamp[keep_from : self._end]
        self._values[:, :count] = self._values[:, keep_from : self._end]
        self._offset += keep_from
        self._start, self._end = 0, count


def _check_bar(bar: Bar) -> None:
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(math.isfinite(price) and price > 0 for price in prices):
        raise ValueError(f"bar prices must be finite and positive, got {bar}")
    if not (math.isfinite(bar.volume) and bar.volume >= 0):
        raise ValueError(f"bar volume must be finite and non-negative, got {bar}")


def _check_values(values: FloatArray) -> None:
    if not bool(np.all(np.isfinite(values[:4]) & (values[:4] > 0))):
        raise ValueError("candle prices must be finite and positive")
    if not bool(np.all(np.isfinite(values[4]) & (values[4] >= 0))):
        raise ValueError("candle volumes must be finite and non-negative")
