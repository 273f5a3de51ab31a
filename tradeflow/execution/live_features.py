"""The newest feature row of every symbol, bar by bar, bit for bit the batch matrix's.

:class:`LiveFeatures` keeps, per symbol, a bounded :class:`~tradeflow.execution.bars.BarHistory`
and the little state the long windows need, and after every closed 1-minute bar computes that
bar's row of :func:`tradeflow.features.build.build_feature_matrix`, with the batch code itself:

- 1-minute indicators: :func:`~tradeflow.features.build.base_features` on a tail of the bars
  that starts on the blocked sums' grid (:meth:`~tradeflow.execution.bars.Lookback.tail_start`),
  long enough for every window and for the recursions to forget their start; the last row is
  the batch's, bit for bit.
- ``atr_percentile``: incremental: the last ``regime_atr_window`` values of ``atr_relative`` in
  arrival order and sorted, the rank by bisection; the same numbers as pandas' rolling rank.
- Regime: the raw label of the newest row by :func:`~tradeflow.features.build.regime` (with a
  dwell of 1), then the dwell rule incrementally (the current run's label and length, the last
  confirmed label).
- Higher timeframes: the bars of each timeframe, built as the 1-minute bars arrive; when one
  closes, :func:`~tradeflow.features.build.timeframe_indicators` on a tail of the closed bars
  (same rule as above) gives its values, which every row uses until the next one closes.
- Volume profile: recomputed at the first row of every refresh period by
  :func:`~tradeflow.features.build.volume_profile` on exactly the window's bars; rows in
  between reuse its levels with their own close.
- Cross-asset: :func:`~tradeflow.features.build.cross_asset` on the symbol's and the leader's
  recent returns, when the row is read (:meth:`LiveFeatures.row`): the leader's bar of the same
  minute may arrive after the symbol's. Until the leader's bar of that minute (or a later one)
  is in, the row's cross-asset columns are provisional and recomputed on the next read.
- Order book: NaN, as in a matrix built without stored books. The streaming flow's decider
  fills them in from the live book per event (:mod:`tradeflow.execution.decider`).

"Bit for bit" holds against a matrix built from the same candles: the warm-up's plus the bars
appended since (``tests/unit/test_live_features.py`` streams real Binance minutes with their
holes and requires every row equal), as long as the leader's kept bars (at least the volume
profile's 7 days) reach back over a symbol's last two correlation windows of rows, which only a
symbol with a candle every few minutes at most could outrun. Against a matrix built from a
longer history the recursions agree to far below float64 resolution and the block sums to
about 1e-14 relative; ``atr_percentile`` and the regime, which look back 30 days, agree once the
warm-up covers that window (:func:`tradeflow.execution.decider.warm_up_minutes`).

Cost per bar and symbol, default spec: about 5 ms (the 1-minute tail of 1,441 to 4,320 rows
dominates), plus a few ms when a higher-timeframe bar closes or the profile refreshes. Warm-up
computes the batch features over all the candles it is given once.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradeflow.execution.bars import Bar, BarHistory, Lookback
from tradeflow.features import indicators
from tradeflow.features.build import (
    CANDLE_COLUMNS,
    REGIMES,
    base_features,
    cross_asset,
    feature_names,
    regime,
    resample,
    timeframe_indicators,
    volume_profile,
)
from tradeflow.features.spec import FeatureSpec
from tradeflow.timeframes import MINUTE_MS, timeframe_ms

FloatArray = npt.NDArray[np.float64]

_PROFILE_LEVELS = ("profile_point_of_control", "profile_value_area_high", "profile_value_area_low")
_TIMEFRAME_COLUMNS = (
    "log_return_1",
    "rsi",
    "atr_relative",
    "macd_histogram_relative",
    "bollinger_percent_b",
    "adx",
)
_UNCERTAIN = "UNCERTAIN"


class _PercentileWindow:
    """The share of the last ``window`` values at or below the newest, as pandas' rolling rank.

    ``rank(method="max", pct=True)`` over a rolling window with ``min_periods``: NaN values are
    left out of the window's count; a NaN newest value, or fewer than ``min_periods`` values,
    gives NaN.
    """

    def __init__(self, window: int, min_periods: int) -> None:
        self.window, self.min_periods = window, min_periods
        self._arrived: deque[float] = deque()
        self._sorted: list[float] = []

    def push(self, value: float) -> float:
        """Add the newest value; return its percentile."""
        arrived, ordered = self._arrived, self._sorted
        arrived.append(value)
        if not math.isnan(value):
            bisect.insort(ordered, value)
        if len(arrived) > self.window:
            oldest = arrived.popleft()
            if not math.isnan(oldest):
                del ordered[bisect.bisect_left(ordered, oldest)]
        if math.isnan(value) or len(ordered) < self.min_periods:
            return math.nan
        return bisect.bisect_right(ordered, value) / len(ordered)

    def load(self, values: npt.NDArray[np.float64]) -> None:
        """Start from the last ``window`` values of a series (oldest first)."""
        kept = values[-self.window :]
        self._arrived = deque(float(value) for value in kept)
        self._sorted = sorted(float(value) for value in kept if not math.isnan(value))


@dataclass
class _Dwell:
    """The regime's dwell rule, one row at a time (see ``tradeflow.features.build._with_dwell``)."""

    min_dwell: int
    confirmed: str = _UNCERTAIN
    run_label: str = ""
    run_length: int = 0

    def push(self, raw: str) -> str:
        """Take the newest row's raw label; return the regime."""
        if raw == self.run_label:
            self.run_length += 1
        else:
            self.run_label, self.run_length = raw, 1
        if self.run_length == self.min_dwell:
            self.confirmed = raw
        return self.confirmed


class _Timeframe:
    """One higher timeframe: its closed bars (bounded), the bar being built, the latest values."""

    def __init__(self, name: str, spec: FeatureSpec, lookback: Lookback) -> None:
        self.name = name
        self.step = timeframe_ms(name)
        self.spec, self.lookback = spec, lookback
        self.closed: deque[tuple[int, float, float, float, float, float]] = deque(
            maxlen=lookback.timeframe_rows + lookback.timeframe_alignment
        )
        self.closed_count = 0  # closed bars since the series' start
        self.forming: list[float] | None = None  # [open time, open, high, low, close, volume]
        self.values: dict[str, float] = dict.fromkeys(_TIMEFRAME_COLUMNS, math.nan)

    def push(self, bar: Bar) -> bool:
        """Take the newest 1-minute bar; return whether a bar of this timeframe closed."""
        period_open = bar.timestamp // self.step * self.step
        closed = False
        forming = self.forming
        if forming is not None and forming[0] != period_open:
            self._close()
            closed = True
            forming = None
        if forming is None:
            self.forming = [period_open, bar.open, bar.high, bar.low, bar.close, bar.volume]
        else:
            forming[2] = max(forming[2], bar.high)
            forming[3] = min(forming[3], bar.low)
            forming[4] = bar.close
            forming[5] += bar.volume
        # A row takes the latest bar whose close (open + step) is at most its own close.
        if bar.timestamp + MINUTE_MS >= period_open + self.step:
            self._close()
            closed = True
        if closed:
            self._recompute()
        return closed

    def load(self, candles: pd.DataFrame) -> None:
        """Start from a warm-up's candles (the series' first ones)."""
        bars = resample(candles, self.name)
        if bars.empty:
            return
        last_close_time = int(candles["timestamp"].iloc[-1]) + MINUTE_MS
        opens = bars["timestamp"].to_numpy(dtype=np.int64)
        is_closed = opens + self.step <= last_close_time
        columns = [bars[name].to_numpy() for name in CANDLE_COLUMNS]
        rows = list(zip(*(column.tolist() for column in columns), strict=True))
        closed_rows = [row for row, done in zip(rows, is_closed.tolist(), strict=True) if done]
        self.closed_count = len(closed_rows)
        self.closed.extend(closed_rows)
        if not bool(is_closed[-1]):
            self.forming = [float(value) for value in rows[-1]]
        if closed_rows:
            self._recompute()

    def _close(self) -> None:
        forming = self.forming
        assert forming is not None
        self.closed.append((int(forming[0]), forming[1], forming[2], forming[3], forming[4], forming[5]))
        self.closed_count += 1
        self.forming = None

    def _recompute(self) -> None:
        lookback = self.lookback
        newest = self.closed_count - 1
        start = lookback.tail_start(newest, lookback.timeframe_rows, lookback.timeframe_alignment)
        first_kept = self.closed_count - len(self.closed)
        rows = list(self.closed)[start - first_kept :]
        frame = pd.DataFrame(rows, columns=list(CANDLE_COLUMNS))
        computed = timeframe_indicators(frame, self.spec)
        self.values = {name: float(computed[name].iloc[-1]) for name in _TIMEFRAME_COLUMNS}


class SymbolFeatures:
    """One symbol's bars and the state behind its newest feature row (all but cross-asset).

    Args:
        symbol: The symbol.
        spec: The feature set.
        lookback: Its look-back (:meth:`Lookback.from_spec`).
    """

    def __init__(self, symbol: str, spec: FeatureSpec, lookback: Lookback) -> None:
        self.symbol, self.spec, self.lookback = symbol, spec, lookback
        self.bars = BarHistory(lookback.kept_rows, lookback.minutes)
        self.percentile = _PercentileWindow(spec.regime_atr_window, spec.regime_atr_min_periods)
        self.dwell = _Dwell(spec.regime_min_dwell)
        self.timeframes = [_Timeframe(name, spec, lookback) for name in spec.higher_timeframes]
        self.profile_levels = (math.nan, math.nan, math.nan)
        self._raw_spec = dataclasses.replace(spec, regime_min_dwell=1)
        # The tail's own atr_percentile is replaced by the incremental one: skip its rolling rank.
        self._tail_spec = dataclasses.replace(spec, regime_atr_window=1, regime_atr_min_periods=1)
        self.values: dict[str, float] = {}  # the newest row, without the cross-asset columns
        self.regime = _UNCERTAIN
        self.timestamp: int | None = None

    def warm_up(self, candles: pd.DataFrame) -> None:
        """Start from candles (``timestamp``, OHLCV, sorted), the series' first; compute its newest row.

        Raises:
            ValueError: if bars were already given, or the candles are malformed.
        """
        if len(self.bars) or self.bars.series_start is not None:
            raise ValueError(f"{self.symbol}: warm_up must come before any bar")
        candles = candles.loc[:, list(CANDLE_COLUMNS)].reset_index(drop=True)
        if candles.empty:
            return
        base = base_features(candles, self.spec)  # validates the candles
        self.bars.extend(candles)
        self.percentile.load(base["atr_relative"].to_numpy(dtype=np.float64))
        raw = regime(base, self._raw_spec).to_numpy(dtype=object)
        self.dwell.confirmed = str(regime(base, self.spec).iloc[-1])
        run = np.flatnonzero(raw != raw[-1])
        self.dwell.run_label = str(raw[-1])
        self.dwell.run_length = int(raw.size - (run[-1] + 1 if run.size else 0))
        for timeframe in self.timeframes:
            timeframe.load(candles)
        self._refresh_profile()
        newest = base.iloc[-1]
        self._compute_row(newest, float(newest["atr_percentile"]), self.dwell.confirmed)

    def on_bar(self, bar: Bar) -> bool:
        """Take a closed bar; return False (nothing changes) unless it is newer than the newest."""
        previous = self.bars.last_timestamp
        if not self.bars.append(bar):
            return False
        for timeframe in self.timeframes:
            timeframe.push(bar)
        refresh = self.spec.volume_profile_refresh_minutes * MINUTE_MS
        if previous is None or previous // refresh != bar.timestamp // refresh:
            self._refresh_profile()
        lookback, history = self.lookback, self.bars
        start = lookback.tail_start(history.newest_row)
        tail = base_features(history.arrays(start).frame(), self._tail_spec)
        newest = tail.iloc[-1]
        percentile = self.percentile.push(float(newest["atr_relative"]))
        inputs = {name: [float(newest[name])] for name in ("adx", "plus_di", "minus_di", "bollinger_width")}
        raw = str(regime(pd.DataFrame(inputs | {"atr_percentile": [percentile]}), self._raw_spec).iloc[0])
        self._compute_row(newest, percentile, self.dwell.push(raw))
        return True

    def _compute_row(self, base: pd.Series, percentile: float, label: str) -> None:
        """Assemble the newest row (without cross-asset) from its base features and the state."""
        values = {str(name): float(value) for name, value in base.items()}
        values["atr_percentile"] = percentile
        self.regime = label
        for timeframe in self.timeframes:
            for name, value in timeframe.values.items():
                values[f"tf{timeframe.name}_{name}"] = value
        close = self.bars.last_close
        point, high, low = self.profile_levels
        values["profile_point_of_control_distance"] = close / point - 1.0
        values["profile_value_area_high_distance"] = close / high - 1.0
        values["profile_value_area_low_distance"] = close / low - 1.0
        values["profile_value_area_width"] = (high - low) / point
        for label in REGIMES:
            values[f"regime_{label.lower()}"] = 1.0 if label == self.regime else 0.0
        self.values = values
        self.timestamp = self.bars.last_timestamp

    def _refresh_profile(self) -> None:
        """Recompute the volume profile at the newest row, the first of its refresh period."""
        history, spec = self.bars, self.spec
        newest = history.last_timestamp
        series_start = history.series_start
        if newest is None or series_start is None:
            return
        refresh = spec.volume_profile_refresh_minutes * MINUTE_MS
        window = spec.volume_profile_window_minutes * MINUTE_MS
        # The refresh row: the first row of the newest row's period (the newest itself on a bar;
        # after a warm-up, possibly an earlier row).
        period_start = newest // refresh * refresh
        refresh_row = history.row_at_or_before(period_start - 1)
        refresh_row = history.first_row if refresh_row is None else refresh_row + 1
        arrays = history.arrays(history.first_row)
        refresh_time = int(arrays.timestamp[refresh_row - history.first_row])
        if refresh_time - window + MINUTE_MS < series_start:
            self.profile_levels = (math.nan, math.nan, math.nan)
            return
        before = history.row_at_or_before(refresh_time - window)
        first = history.first_row if before is None else before
        window_bars = history.arrays(first)
        count = refresh_row - first + 1
        frame = window_bars.head(count).frame()
        levels = volume_profile(frame, spec).iloc[-1]
        self.profile_levels = (
            float(levels[_PROFILE_LEVELS[0]]),
            float(levels[_PROFILE_LEVELS[1]]),
            float(levels[_PROFILE_LEVELS[2]]),
        )


class LiveFeatures:
    """Every symbol's newest feature row, kept current bar by bar (see the module docstring).

    Args:
        spec: The feature set (the one the model was trained on).
        symbols: The symbols; the spec's leader, if among them, gives the cross-asset columns.
    """

    def __init__(self, spec: FeatureSpec, symbols: Iterable[str]) -> None:
        self.spec = spec
        self.lookback = Lookback.from_spec(spec)
        self.names: list[str] = feature_names(spec)
        self._index = {name: position for position, name in enumerate(self.names)}
        self.symbols = sorted(set(symbols))
        self._features = {symbol: SymbolFeatures(symbol, spec, self.lookback) for symbol in self.symbols}
        self._rows: dict[str, FloatArray] = {}
        self._cross_final: dict[str, bool] = {}
        self._versions = dict.fromkeys(self.symbols, 0)
        self._cross_names = [name for name in self.names if name == "leader_correlation"
                             or name.startswith("relative_strength_")]  # fmt: skip
        self.leader = spec.leader_symbol if spec.leader_symbol in self._features else None

    def symbol(self, symbol: str) -> SymbolFeatures:
        """Return one symbol's state (its bars, regime, newest row without cross-asset)."""
        return self._features[symbol]

    def warm_up(self, symbol: str, candles: pd.DataFrame) -> None:
        """Start ``symbol`` from candles (see :meth:`SymbolFeatures.warm_up`)."""
        self._features[symbol].warm_up(candles)
        self._invalidate(symbol)
        self.row(symbol)

    def on_bar(self, symbol: str, bar: Bar) -> bool:
        """Take ``symbol``'s closed bar; return False unless it is newer than its newest.

        The row is assembled here, cross-asset columns included (and, for the leader's bar, the
        other symbols' provisional ones redone), so reading it on a book event costs nothing.
        """
        if not self._features[symbol].on_bar(bar):
            return False
        self._invalidate(symbol)
        self.row(symbol)
        if symbol == self.leader:
            for other in self.symbols:
                if other != symbol and other in self._rows and not self._cross_final.get(other, True):
                    self.row(other)
        return True

    def timestamp(self, symbol: str) -> int | None:
        """Return the open time of ``symbol``'s newest row, or None before any bar."""
        return self._features[symbol].timestamp

    def regime(self, symbol: str) -> str:
        """Return ``symbol``'s regime at its newest row."""
        return self._features[symbol].regime

    def close(self, symbol: str) -> float:
        """Return ``symbol``'s newest close (NaN before any bar)."""
        return self._features[symbol].bars.last_close

    def row(self, symbol: str) -> FloatArray | None:
        """Return ``symbol``'s newest row in :attr:`names` order (None before any bar).

        The array is the decider's to read, not to keep: it changes with the next bar.
        """
        state = self._features[symbol]
        if state.timestamp is None:
            return None
        row = self._rows.get(symbol)
        if row is None:
            row = np.fromiter((state.values.get(name, math.nan) for name in self.names), np.float64,
                              len(self.names))  # fmt: skip
            self._rows[symbol] = row
            self._cross_final[symbol] = False
        if not self._cross_final[symbol]:
            self._cross_final[symbol] = self._fill_cross_asset(symbol, row)
            self._versions[symbol] += 1
        return row

    def version(self, symbol: str) -> int:
        """Return a number that changes whenever ``symbol``'s row may have changed (read the row first)."""
        return self._versions[symbol]

    def values(self, symbol: str) -> Mapping[str, float]:
        """Return ``symbol``'s newest row as a mapping (every feature name; cross-asset current)."""
        row = self.row(symbol)
        if row is None:
            return {}
        return dict(zip(self.names, row.tolist(), strict=True))

    def _invalidate(self, symbol: str) -> None:
        self._rows.pop(symbol, None)
        self._versions[symbol] += 1

    def _fill_cross_asset(self, symbol: str, row: FloatArray) -> bool:
        """Write the cross-asset columns into ``row``; return whether they are final."""
        names = self._cross_names
        if not names:
            return True
        own = self._features[symbol]
        leader_name = self.leader
        if leader_name is None:
            for name in names:
                row[self._index[name]] = math.nan
            return True
        leader = self._features[leader_name]
        own_time = own.timestamp
        leader_time = leader.bars.last_timestamp
        final = leader_time is not None and own_time is not None and leader_time >= own_time
        lookback = self.lookback
        newest = own.bars.newest_row
        start = lookback.tail_start(newest, lookback.correlation_rows, lookback.correlation_alignment)
        frames = {symbol: _returns_frame(own.bars, start, self.spec)}
        if leader_name != symbol:
            first_time = int(frames[symbol]["timestamp"].iloc[0])
            leader_start = leader.bars.row_at_or_before(first_time - 1)
            leader_start = leader.bars.first_row if leader_start is None else leader_start + 1
            if leader.bars.newest_row >= leader_start:
                frames[leader_name] = _returns_frame(leader.bars, leader_start, self.spec)
        columns = cross_asset(frames, self.spec)[symbol].iloc[-1]
        for name in names:
            row[self._index[name]] = float(columns[name])
        return final


def _returns_frame(bars: BarHistory, start: int, spec: FeatureSpec) -> pd.DataFrame:
    """Return the timestamps and log returns (1 and the relative-strength horizons) from row ``start``."""
    horizons = dict.fromkeys((1, *spec.relative_strength_horizons))
    reach = max(horizons)
    first = max(bars.first_row, start - reach)
    arrays = bars.arrays(first)
    skip = start - first
    frame: dict[str, npt.NDArray[np.generic]] = {"timestamp": arrays.timestamp[skip:]}
    for horizon in horizons:
        frame[f"log_return_{horizon}"] = indicators.log_returns(arrays.close, horizon)[skip:]
    return pd.DataFrame(frame)
