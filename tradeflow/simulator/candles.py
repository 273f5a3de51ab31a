"""Column-oriented candle batches and their aggregation to longer intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Candles:
    """A batch of klines, one array per Binance kline column (closeTime is derived)."""

    open_time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    quote_volume: FloatArray
    taker_base: FloatArray
    taker_quote: FloatArray
    trades: IntArray

    def __len__(self) -> int:
        """Return the number of candles."""
        return len(self.open_time)

    def take(self, index: slice | IntArray | BoolArray) -> Candles:
        """Return the candles selected by a slice, integer index or boolean mask."""
        return Candles(*(getattr(self, f.name)[index] for f in fields(self)))

    def ohlcv(self) -> FloatArray:
        """Return an ``(n, 6)`` array ``[open_time, open, high, low, close, volume]``."""
        out = np.empty((len(self), 6), dtype=np.float64)
        out[:, 0] = self.open_time
        out[:, 1] = self.open
        out[:, 2] = self.high
        out[:, 3] = self.low
        out[:, 4] = self.close
        out[:, 5] = self.volume
        return out

    @staticmethod
    def concat(parts: Sequence[Candles]) -> Candles:
        """Concatenate batches in order."""
        if not parts:
            return EMPTY
        if len(parts) == 1:
            return parts[0]
        return Candles(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Candles)))

    def freeze(self) -> Candles:
        """Make every column read-only so cached batches cannot be corrupted by callers."""
        for f in fields(self):
            getattr(self, f.name).setflags(write=False)
        return self


EMPTY = Candles(
    open_time=np.empty(0, dtype=np.int64),
    open=np.empty(0),
    high=np.empty(0),
    low=np.empty(0),
    close=np.empty(0),
    volume=np.empty(0),
    quote_volume=np.empty(0),
    taker_base=np.empty(0),
    taker_quote=np.empty(0),
    trades=np.empty(0, dtype=np.int64),
).freeze()


def aggregate(minutes: Candles, present: BoolArray, group: int) -> tuple[Candles, BoolArray]:
    """Aggregate consecutive groups of 1m candles into longer candles.

    Missing minutes (``present`` False) are skipped: open is the first present minute's open,
    close the last present minute's close, high/low the extremes and volumes the sums over
    present minutes. A group without any present minute yields a candle marked absent.

    Args:
        minutes: 1m candles; their count must be a multiple of ``group``.
        present: Which minutes exist.
        group: Minutes per output candle.

    Returns:
        The aggregated candles and which of them exist.
    """
    n = len(minutes)
    if group == 1:
        return minutes, present
    if n % group:
        raise ValueError("minute count must be a multiple of the group size")
    rows = n // group
    mask = present.reshape(rows, group)
    exists: BoolArray = np.asarray(mask.any(axis=1), dtype=bool)
    first = np.argmax(mask, axis=1)
    last = group - 1 - np.argmax(mask[:, ::-1], axis=1)
    base = np.arange(rows) * group

    def pick(col: FloatArray, at: IntArray) -> FloatArray:
        result: FloatArray = col[base + at]
        return result

    def total(col: FloatArray) -> FloatArray:
        result: FloatArray = np.where(mask, col.reshape(rows, group), 0.0).sum(axis=1)
        return result

    high = np.where(mask, minutes.high.reshape(rows, group), -np.inf).max(axis=1)
    low = np.where(mask, minutes.low.reshape(rows, group), np.inf).min(axis=1)
    trades = np.where(mask, minutes.trades.reshape(rows, group), 0).sum(axis=1)
    out = Candles(
        open_time=minutes.open_time[base],
        open=pick(minutes.open, first),
        high=np.where(exists, high, np.nan),
        low=np.where(exists, low, np.nan),
        close=pick(minutes.close, last),
        volume=total(minutes.volume),
        quote_volume=total(minutes.quote_volume),
        taker_base=total(minutes.taker_base),
        taker_quote=total(minutes.taker_quote),
        trades=trades.astype(np.int64),
    )
    return out, exists
