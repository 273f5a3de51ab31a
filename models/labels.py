"""Labels for the direction models: what happened after each candle, net of trading fees.

Every label is attached to a candle's open time ``t`` (the ``timestamp`` of the feature row it is
learnt from) and describes a trade entered at that candle's close. Each label also carries
``label_end``: the open time of the last candle whose data decided the label. The walk-forward
splits use it to purge training rows whose outcome overlaps a test fold
(:mod:`models.splits`).

Returns are **simple** returns (``close_later / close_now - 1``), not log returns: they are what a
position earns, and a round trip's fees subtract from them directly (``2 * fee_rate``), which
keeps the "net of fees" rule and the economic score (:mod:`models.metrics`) on the same footing.

Holes in the candles are never patched: a label whose outcome needs a missing candle is NaN, and
the training code drops it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from tradeflow.timeframes import MINUTE_MS

__all__ = [
    "LABEL_COLUMNS",
    "direction_labels",
    "triple_barrier_labels",
    "labels_by_symbol",
]

#: The columns of every label frame, in order (``labels_by_symbol`` puts ``symbol`` first).
LABEL_COLUMNS = ("timestamp", "forward_return", "label", "label_end")

# Rows per block of the triple-barrier scan: block x window booleans stay a few megabytes.
_BARRIER_BLOCK_ROWS = 8192


def _sorted_candles(candles: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Return ``candles`` sorted by ``timestamp``, refusing missing columns and duplicate times."""
    missing = [column for column in ("timestamp", *columns) if column not in candles.columns]
    if missing:
        raise ValueError(f"candles lack the columns {missing}")
    ordered = candles.sort_values("timestamp", kind="stable").reset_index(drop=True)
    timestamps = ordered["timestamp"].to_numpy(dtype=np.int64)
    if timestamps.size > 1 and bool(np.any(np.diff(timestamps) == 0)):
        raise ValueError("candles hold duplicate timestamps; labels need one candle per open time")
    return ordered


def direction_labels(
    candles: pd.DataFrame, horizon_minutes: int = 240, fee_rate: float = 0.001
) -> pd.DataFrame:
    """Return the fixed-horizon direction label of every candle.

    ``forward_return`` at ``t`` is the simple return from the close of the candle opening at
    ``t`` to the close of the candle opening at exactly ``t + horizon``. It is NaN when that
    candle is missing (a hole) or lies beyond the end of the data; no nearby candle stands in.

    ``label`` is 1 iff the return beats a round trip's fees, ``forward_return - 2 * fee_rate > 0``,
    and 0 otherwise. The band between ``-2 * fee_rate`` and ``+2 * fee_rate`` is therefore 0: a
    long position there loses money after fees, and the models only decide whether to be long.
    Exactly ``+2 * fee_rate`` (break-even) is 0 too. ``label`` is a float column so that it can
    hold NaN where the return is unknown.

    Args:
        candles: One symbol's candles with at least ``timestamp`` (int64 UTC ms, open time) and
            ``close``; any order, no duplicate timestamps.
        horizon_minutes: How far ahead the return is measured.
        fee_rate: The fee per side as a fraction of the traded value (0.001 = 10 bp).

    Returns:
        One row per candle, in time order: ``timestamp``, ``forward_return``, ``label``
        (1.0, 0.0 or NaN) and ``label_end`` (``t + horizon`` in ms, the open time of the candle
        whose close decides the label).

    Raises:
        ValueError: If a column is missing, timestamps repeat, or an argument is out of range.
    """
    if horizon_minutes <= 0:
        raise ValueError(f"horizon_minutes must be positive, got {horizon_minutes}")
    if fee_rate < 0:
        raise ValueError(f"fee_rate must not be negative, got {fee_rate}")
    ordered = _sorted_candles(candles, ("close",))
    timestamps = ordered["timestamp"].to_numpy(dtype=np.int64)
    close = ordered["close"].to_numpy(dtype=np.float64)
    horizon_ms = int(horizon_minutes) * MINUTE_MS
    label_end = timestamps + horizon_ms

    # The candle opening exactly at t + horizon, if there is one.
    position = np.searchsorted(timestamps, label_end)
    inside = position < timestamps.size
    found = np.zeros(timestamps.size, dtype=bool)
    found[inside] = timestamps[position[inside]] == label_end[inside]
    forward_return = np.full(timestamps.size, np.nan)
    forward_return[found] = close[position[found]] / close[found] - 1.0

    label = np.where(np.isnan(forward_return), np.nan, (forward_return - 2.0 * fee_rate > 0).astype(float))
    return pd.DataFrame(
        {
            "timestamp": timestamps,
            "forward_return": forward_return,
            "label": label,
            "label_end": label_end,
        }
    )


def triple_barrier_labels(
    candles: pd.DataFrame,
    take_profit: float,
    stop_loss: float,
    max_minutes: int,
    fee_rate: float = 0.001,
) -> pd.DataFrame:
    """Return the triple-barrier label of every candle: which barrier a long entry touches first.

    A long position is entered at the close of the candle opening at ``t``. The barriers are
    ``close * (1 + take_profit)`` above, ``close * (1 - stop_loss)`` below, and the time limit,
    the candle opening at ``t + max_minutes``. The path is the candles opening in
    ``(t, t + max_minutes]``, scanned in order with their highs and lows:

    - a high at or above the upper barrier first: ``label`` 1, ``forward_return`` = take_profit;
    - a low at or below the lower barrier first: ``label`` 0, ``forward_return`` = -stop_loss;
    - both inside the same candle: the order within the candle is unknown, so the stop is assumed
      (the conservative reading), ``label`` 0;
    - neither by the time limit: ``forward_return`` is the close at the limit over the entry
      close, and ``label`` is 1 iff it beats a round trip's fees (``> 2 * fee_rate``), else 0.

    ``label_end`` is the open time of the touching candle, or ``t + max_minutes`` at the limit.
    The label is NaN (and ``forward_return`` NaN) whenever the outcome is not knowable: a hole in
    the path before the first touch (the missing candle might have touched a barrier), or a path
    that runs past the end of the data without a touch. Candles are assumed one minute apart.

    The scan works in blocks of rows over a dense one-minute grid (NumPy sliding windows), so half
    a million candles with a four-hour limit take about a second.

    Args:
        candles: One symbol's candles with ``timestamp``, ``high``, ``low`` and ``close``.
        take_profit: The upper barrier as a fraction of the entry close (0.01 = +1 %). It must
            exceed the round trip's fees, or a "take-profit" would be a loss.
        stop_loss: The lower barrier as a fraction of the entry close (0.01 = -1 %).
        max_minutes: The time limit in minutes.
        fee_rate: The fee per side as a fraction of the traded value.

    Returns:
        One row per candle, in time order: ``timestamp``, ``forward_return``, ``label`` (1.0, 0.0
        or NaN) and ``label_end`` (ms).

    Raises:
        ValueError: If a column is missing, timestamps repeat or are off the minute grid, or an
            argument is out of range.
    """
    if max_minutes <= 0:
        raise ValueError(f"max_minutes must be positive, got {max_minutes}")
    if stop_loss <= 0:
        raise ValueError(f"stop_loss must be positive, got {stop_loss}")
    if fee_rate < 0:
        raise ValueError(f"fee_rate must not be negative, got {fee_rate}")
    if take_profit <= 2.0 * fee_rate:
        raise ValueError(
            f"take_profit {take_profit} must exceed a round trip's fees {2.0 * fee_rate}: "
            "otherwise touching it loses money"
        )
    ordered = _sorted_candles(candles, ("high", "low", "close"))
    timestamps = ordered["timestamp"].to_numpy(dtype=np.int64)
    rows = timestamps.size
    max_minutes = int(max_minutes)
    result = pd.DataFrame(
        {
            "timestamp": timestamps,
            "forward_return": np.full(rows, np.nan),
            "label": np.full(rows, np.nan),
            "label_end": timestamps + max_minutes * MINUTE_MS,
        }
    )
    if rows == 0:
        return result
    offsets = timestamps - timestamps[0]
    if bool(np.any(offsets % MINUTE_MS)):
        raise ValueError("triple_barrier_labels needs candles on a one-minute grid")
    slots = offsets // MINUTE_MS

    # A dense grid with NaN in the holes, padded past the end so every window has full length;
    # the padding reads as a hole, which makes paths running past the data unknowable.
    grid = int(slots[-1]) + 1 + max_minutes
    high = np.full(grid, np.nan)
    low = np.full(grid, np.nan)
    close = np.full(grid, np.nan)
    high[slots] = ordered["high"].to_numpy(dtype=np.float64)
    low[slots] = ordered["low"].to_numpy(dtype=np.float64)
    close[slots] = ordered["close"].to_numpy(dtype=np.float64)
    # Window of row at slot s: the candles at slots s+1 … s+max_minutes.
    high_windows = np.lib.stride_tricks.sliding_window_view(high[1:], max_minutes)
    low_windows = np.lib.stride_tricks.sliding_window_view(low[1:], max_minutes)

    forward_return = np.full(rows, np.nan)
    label = np.full(rows, np.nan)
    touch_offset = np.full(rows, max_minutes, dtype=np.int64)
    never = max_minutes  # sentinel: "not within the window"
    for start in range(0, rows, _BARRIER_BLOCK_ROWS):
        block = slots[start : start + _BARRIER_BLOCK_ROWS]
        entry = close[block]
        window_high = high_windows[block]
        window_low = low_windows[block]
        hits_upper = window_high >= (entry * (1.0 + take_profit))[:, None]
        hits_lower = window_low <= (entry * (1.0 - stop_loss))[:, None]
        holes = np.isnan(window_high) | np.isnan(window_low)
        first_upper = np.where(hits_upper.any(axis=1), hits_upper.argmax(axis=1), never)
        first_lower = np.where(hits_lower.any(axis=1), hits_lower.argmax(axis=1), never)
        first_hole = np.where(holes.any(axis=1), holes.argmax(axis=1), never)
        first_touch = np.minimum(first_upper, first_lower)

        block_return = np.full(block.size, np.nan)
        block_label = np.full(block.size, np.nan)
        # Knowable: a real entry close and no hole before the first touch (or anywhere, if none).
        known = ~np.isnan(entry) & ((first_hole > first_touch) | (first_hole == never))
        stopped = known & (first_lower <= first_upper) & (first_lower < never)
        profited = known & (first_upper < first_lower)
        timed_out = known & (first_touch == never)
        block_return[stopped] = -stop_loss
        block_label[stopped] = 0.0
        block_return[profited] = take_profit
        block_label[profited] = 1.0
        limit_close = close[block + max_minutes]
        block_return[timed_out] = limit_close[timed_out] / entry[timed_out] - 1.0
        block_label[timed_out] = (block_return[timed_out] - 2.0 * fee_rate > 0).astype(float)

        forward_return[start : start + block.size] = block_return
        label[start : start + block.size] = block_label
        # Offsets are 0-based within the window; the touching candle opens at t + (offset+1) min.
        touch_offset[start : start + block.size] = np.where(first_touch < never, first_touch + 1, max_minutes)

    result["forward_return"] = forward_return
    result["label"] = label
    result["label_end"] = timestamps + touch_offset * MINUTE_MS
    return result


def labels_by_symbol(
    candles: Mapping[str, pd.DataFrame],
    labeller: Callable[[pd.DataFrame], pd.DataFrame] = direction_labels,
) -> pd.DataFrame:
    """Return the labels of several symbols stacked, with a leading ``symbol`` column.

    Args:
        candles: Each symbol's curated candles.
        labeller: Turns one symbol's candles into labels, e.g. ``direction_labels`` or
            ``functools.partial(triple_barrier_labels, take_profit=0.02, ...)``.

    Returns:
        ``symbol`` plus the labeller's columns, sorted by symbol then timestamp: the shape
        :func:`models.walkforward.run_walk_forward` joins to the feature matrix.
    """
    frames = []
    for symbol in sorted(candles):
        labels = labeller(candles[symbol])
        labels.insert(0, "symbol", symbol)
        frames.append(labels)
    if not frames:
        return pd.DataFrame(columns=["symbol", *LABEL_COLUMNS])
    return pd.concat(frames, ignore_index=True)
