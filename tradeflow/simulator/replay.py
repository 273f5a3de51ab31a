"""Turn a recorded candle file into a 1-minute log-price path that can be tiled forever."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tradeflow.simulator.timeframes import MINUTE_MS


@dataclass(frozen=True)
class ReplayRecording:
    """A recording's close path on a 1-minute grid, relative to its first price.

    Attributes:
        rel_log: Log price minus the first log price, one point per minute boundary.
        minute_sigma: Robust std-dev of the recording's log returns, scaled to one minute.
    """

    rel_log: NDArray[np.float64]
    minute_sigma: float


@functools.lru_cache(maxsize=32)
def load_recording(path: Path) -> ReplayRecording:
    """Read a candle parquet and build its 1-minute close path.

    The close of a candle is the price at the end of the candle; coarser files are
    log-interpolated to 1 minute and missing candles are forward-filled.

    Args:
        path: A parquet file with int64 ``timestamp`` (ms) and float ``close`` columns.

    Returns:
        The recording, cached per path.

    Raises:
        ValueError: The file has fewer than two usable candles or irregular timestamps.
    """
    # Imported here so venues without replayed symbols never pay for pyarrow.
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    table = pq.read_table(path, columns=["timestamp", "close"])
    ts = np.asarray(table.column("timestamp").to_numpy(), dtype=np.int64)
    close = np.asarray(table.column("close").to_numpy(), dtype=np.float64)
    keep = np.isfinite(close) & (close > 0)
    ts, close = ts[keep], close[keep]
    order = np.argsort(ts, kind="stable")
    ts, close = ts[order], close[order]
    ts, first = np.unique(ts, return_index=True)
    close = close[first]
    if len(ts) < 2:
        raise ValueError(f"{path}: need at least two candles to replay")
    step = int(np.diff(ts).min())
    if step % MINUTE_MS or np.any((ts - ts[0]) % step):
        raise ValueError(f"{path}: timestamps are not on a whole-minute grid")
    step_minutes = step // MINUTE_MS
    grid = np.arange(ts[0], ts[-1] + 1, step, dtype=np.int64)
    # Forward-fill gaps: a missing candle keeps the last known close.
    pos = np.searchsorted(ts, grid, side="right") - 1
    log_close = np.log(close[pos])
    minutes = np.arange(0, (len(grid) - 1) * step_minutes + 1, dtype=np.float64)
    grid_minutes = np.arange(len(grid), dtype=np.float64) * step_minutes
    rel_log = np.interp(minutes, grid_minutes, log_close) - log_close[0]
    returns = np.diff(log_close)
    moving = returns[returns != 0.0]
    if len(moving) == 0:
        sigma = 1e-4
    else:
        mad = float(np.median(np.abs(moving - np.median(moving))))
        sigma = max(1.4826 * mad, 1e-6) / np.sqrt(step_minutes)
    return ReplayRecording(rel_log=rel_log, minute_sigma=float(sigma))


def palindrome_index(minutes: NDArray[np.int64], length: int, offset: int) -> NDArray[np.int64]:
    """Map absolute minute indices to positions in a palindrome tiling of a recording.

    The tiling is forward copy, reversed copy, forward copy, ... so consecutive tiles share
    their boundary point and the path never jumps.

    Args:
        minutes: Absolute minute indices (minutes since the epoch).
        length: Number of points of the recording (at least 2).
        offset: Minute index at which a forward copy starts.

    Returns:
        Indices into the recording, in [0, length).
    """
    span = length - 1
    r = np.mod(minutes - offset, 2 * span)
    result: NDArray[np.int64] = np.where(r <= span, r, 2 * span - r)
    return result
