"""Cross-venue comparison and curated consensus candles (pure pandas/numpy).

For one symbol and timeframe, the venues' candles are aligned on their open time. Each venue's
close is compared with the median close of the venues at that candle; with at least
``min_venues`` venues present, a close further than the threshold flags that venue and candle
(with two venues, neither can be said to be the one that is off).

Curated candles combine the venues whose batches passed validation, candle by candle, leaving
out the venue-candles that were flagged. Each row records which venues contributed and whether it
was ``imputed``: some passing venue had no usable candle there (a hole, a flagged candle) and the
others filled it. A candle no venue has stays missing; nothing is ever synthesised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from tradeflow.quality.candles import MAX_LISTED, close_moves
from tradeflow.storage.lake import CANDLE_SCHEMA
from tradeflow.timeframes import iso

#: The raw candle schema plus per-row provenance.
CURATED_SCHEMA = pa.schema(
    [
        *CANDLE_SCHEMA,
        pa.field("venue_count", pa.int32(), nullable=False),
        pa.field("venues", pa.string(), nullable=False),
        pa.field("imputed", pa.bool_(), nullable=False),
    ]
)


def _unique_sorted(candles: pd.DataFrame) -> pd.DataFrame:
    return candles.drop_duplicates("timestamp", keep="first").sort_values("timestamp")


def row_median(frame: pd.DataFrame) -> pd.Series:
    """Return the median across columns of each row, NaN where a row has no value (no warning)."""
    values = frame.to_numpy(dtype=np.float64)
    result = np.full(len(values), np.nan)
    has = ~np.isnan(values).all(axis=1) if values.size else np.zeros(len(values), dtype=bool)
    if has.any():
        result[has] = np.nanmedian(values[has], axis=1)
    return pd.Series(result, index=frame.index)


def aligned(batches: Mapping[str, pd.DataFrame], column: str) -> pd.DataFrame:
    """Return one column of every venue's candles side by side: index timestamp, a column per venue."""
    series = {venue: _unique_sorted(frame).set_index("timestamp")[column] for venue, frame in batches.items()}
    return pd.DataFrame(series).sort_index()


def peer_moves(batches: Mapping[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """Return, per venue, the median close-to-close move of the *other* venues at each candle."""
    moves = pd.DataFrame(
        {
            venue: pd.Series(close_moves(c).to_numpy(), index=c["timestamp"].to_numpy())
            for venue, frame in batches.items()
            for c in [_unique_sorted(frame)]
        }
    ).sort_index()
    result: dict[str, pd.Series] = {}
    for venue in moves.columns:
        others = moves.drop(columns=venue)
        result[str(venue)] = row_median(others) if others.shape[1] else pd.Series(np.nan, index=moves.index)
    return result


def deviations(closes: pd.DataFrame, min_venues: int) -> tuple[pd.Series, pd.DataFrame]:
    """Return the venues' median close per candle and each venue's relative deviation from it.

    Deviations are NaN where fewer than ``min_venues`` venues have the candle.
    """
    median = row_median(closes)
    present = closes.notna().sum(axis=1)
    deviation = (closes.div(median, axis=0) - 1.0).abs()
    deviation[present < min_venues] = np.nan
    return median, deviation


def derive_cross_venue(
    venue: str, closes: pd.DataFrame, median: pd.Series, deviation: pd.DataFrame
) -> pd.DataFrame:
    """Return the frame the cross-venue suite reads for one venue's batch."""
    mine = closes[venue].dropna()
    return pd.DataFrame(
        {
            "timestamp": mine.index.to_numpy(dtype=np.int64),
            "close": mine.to_numpy(dtype=np.float64),
            "median_close": median.reindex(mine.index).to_numpy(dtype=np.float64),
            "venues_present": closes.loc[mine.index].notna().sum(axis=1).to_numpy(dtype=np.int64),
            "deviation": deviation.loc[mine.index, venue].to_numpy(dtype=np.float64),
        }
    )


def observe_cross_venue(frame: pd.DataFrame, threshold: float, max_fraction: float) -> dict[str, Any]:
    """Return the cross-venue check's observed value for one venue's batch."""
    dev = frame["deviation"].to_numpy(dtype=np.float64)
    compared = int(np.count_nonzero(~np.isnan(dev)))
    flagged_idx = np.flatnonzero(np.nan_to_num(dev, nan=0.0) > threshold)
    ts = frame["timestamp"].to_numpy(dtype=np.int64)
    close = frame["close"].to_numpy(dtype=np.float64)
    median = frame["median_close"].to_numpy(dtype=np.float64)
    flagged = [
        {
            "timestamp": int(ts[i]),
            "timestamp_utc": iso(int(ts[i])),
            "close": float(close[i]),
            "median_close": float(median[i]),
            "deviation": round(float(dev[i]), 6),
        }
        for i in flagged_idx
    ]
    return {
        "threshold": threshold,
        "max_fraction": max_fraction,
        "compared": compared,
        "undecided": int(len(dev) - compared),
        "flagged": len(flagged),
        "fraction": round(len(flagged) / compared, 4) if compared else 0.0,
        "listed": flagged[:MAX_LISTED],
        "truncated": max(0, len(flagged) - MAX_LISTED),
    }


def build_consensus(
    batches: Mapping[str, pd.DataFrame],
    excluded: Mapping[str, Sequence[int]],
    *,
    method: Literal["median", "volume_weighted"] = "median",
    after: int | None = None,
) -> pd.DataFrame:
    """Return curated candles from the passing venues' batches, with per-row provenance.

    Args:
        batches: The candles of every venue whose batch passed, by venue id.
        excluded: Per venue, open times of its candles that were flagged and must not count.
        method: ``median`` of each field across venues, or ``volume_weighted`` means of the prices
            (volume is the venues' median either way, so a venue dropping out does not halve it).
            Both keep ``low <= open, close <= high``: an order statistic or weighted mean of
            values that each satisfy it satisfies it too.
        after: Keep only candles strictly after this open time (already curated before).

    Returns:
        A frame in CURATED_SCHEMA's columns, sorted by timestamp; no row where no venue had a
        usable candle.
    """
    venues = sorted(batches)
    fields = ("open", "high", "low", "close", "volume")
    if not venues:
        return pd.DataFrame(
            {
                name: pd.Series(dtype=t.to_pandas_dtype())
                for name, t in zip(CURATED_SCHEMA.names, CURATED_SCHEMA.types, strict=True)
            }
        )
    matrices = {name: aligned(batches, name)[venues] for name in fields}
    index = matrices["close"].index
    usable = matrices["close"].notna().to_numpy(copy=True)
    for column, venue in enumerate(venues):
        drop = index.isin(np.asarray(list(excluded.get(venue, ())), dtype=np.int64))
        usable[drop, column] = False
    values = {name: np.where(usable, m.to_numpy(dtype=np.float64), np.nan) for name, m in matrices.items()}
    counts = usable.sum(axis=1)
    keep = counts > 0
    if after is not None:
        keep &= index.to_numpy() > after
    with np.errstate(all="ignore"):
        combined = (
            {name: np.nanmedian(values[name][keep], axis=1) for name in fields}
            if keep.any()
            else {name: np.empty(0) for name in fields}
        )
        if method == "volume_weighted" and keep.any():
            weights = np.nan_to_num(values["volume"][keep], nan=0.0)
            total = weights.sum(axis=1)
            for name in ("open", "high", "low", "close"):
                weighted = np.nansum(np.nan_to_num(values[name][keep]) * weights, axis=1) / np.where(
                    total > 0, total, np.nan
                )
                combined[name] = np.where(total > 0, weighted, combined[name])
    codes = (usable[keep] * (1 << np.arange(len(venues)))).sum(axis=1)
    names = {
        int(code): ",".join(v for bit, v in enumerate(venues) if code >> bit & 1) for code in np.unique(codes)
    }
    return pd.DataFrame(
        {
            "timestamp": index.to_numpy(dtype=np.int64)[keep],
            **combined,
            "venue_count": counts[keep].astype(np.int32),
            "venues": [names[int(code)] for code in codes],
            "imputed": counts[keep] < len(venues),
        }
    )


def unfilled_holes(curated_ts: np.ndarray, start: int, end: int, timeframe_ms: int) -> list[dict[str, Any]]:
    """Return the holes no venue could fill: runs of missing open times in ``[start, end]``."""
    if end < start:
        return []
    expected = np.arange(start, end + 1, timeframe_ms, dtype=np.int64)
    missing = expected[~np.isin(expected, curated_ts)]
    if missing.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(missing) != timeframe_ms) + 1
    runs = np.split(missing, breaks)
    return [{"start": int(r[0]), "start_utc": iso(int(r[0])), "length": int(r.size)} for r in runs]
