"""Derived columns and findings of the candle suite (pure pandas/numpy, no GX).

Great Expectations has no built-in expectation for "no holes", "no unconfirmed spike" or "no
frozen feed", so each of those is a derived column that a built-in expectation then bounds:
``missing_before`` (candles missing right before this one) must be 0, ``unconfirmed_move`` at
most the spike threshold, ``frozen_run`` shorter than a frozen run. The same columns give the
report its details (each hole's start and length, each spike's move), so what GX counts and what
the report lists can never disagree.

Rows are taken in the order given: nothing is sorted, deduplicated or filled here, because the
suite must see the batch exactly as it arrived.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.config import ValidationConfig
from tradeflow.timeframes import MINUTE_MS, iso, timeframe_ms

CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
DERIVED_COLUMNS = (
    "body_high",
    "body_low",
    "timestamp_offset",
    "missing_before",
    "close_move",
    "peer_move",
    "unconfirmed_move",
    "volume_zscore",
    "frozen_run",
    "candle_age_seconds",
)
#: Longest list of holes, spikes, frozen runs or discrepancies a report entry holds; counts are
#: always exact, and ``truncated`` says how many were left out.
MAX_LISTED = 10_000
#: Volume anomalies are common in heavy-tailed crypto volume: only the first few are listed.
MAX_LISTED_ANOMALIES = 200


@dataclass(frozen=True)
class CandleRules:
    """The candle suite's thresholds for one timeframe."""

    timeframe: str
    timeframe_ms: int
    spike_threshold: float
    spike_confirmation: float
    volume_zscore: float
    volume_window: int
    volume_anomaly_max_fraction: float
    frozen_run_candles: int
    staleness_ms: int

    @classmethod
    def from_config(cls, config: ValidationConfig, timeframe: str) -> CandleRules:
        """Return the rules of ``timeframe`` under ``config``."""
        tf_ms = timeframe_ms(timeframe)
        return cls(
            timeframe=timeframe,
            timeframe_ms=tf_ms,
            spike_threshold=config.spike_threshold,
            spike_confirmation=config.spike_confirmation,
            volume_zscore=config.volume_zscore,
            volume_window=config.volume_window,
            volume_anomaly_max_fraction=config.volume_anomaly_max_fraction,
            frozen_run_candles=max(3, math.ceil(config.frozen_minutes * MINUTE_MS / tf_ms)),
            staleness_ms=config.staleness_candles * tf_ms,
        )


def close_moves(candles: pd.DataFrame) -> pd.Series:
    """Return each candle's close-to-close move against the row before it (first row NaN)."""
    close = candles["close"].to_numpy(dtype=np.float64)
    moves = np.full(len(close), np.nan)
    if len(close) > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            moves[1:] = close[1:] / close[:-1] - 1.0
    return pd.Series(moves, index=candles.index)


def derive_candles(
    candles: pd.DataFrame,
    rules: CandleRules,
    *,
    previous_timestamp: int | None = None,
    as_of: int | None = None,
    peer_moves: pd.Series | None = None,
) -> pd.DataFrame:
    """Return ``candles`` with the derived columns the candle suite reads.

    Args:
        candles: The batch: CANDLE_COLUMNS in arrival order.
        rules: Thresholds for the batch's timeframe.
        previous_timestamp: The newest candle stored before this batch, so a hole at the
            batch's start is found too.
        as_of: The time the batch should be fresh at (the ingest window's end), in UTC ms;
            None leaves ``candle_age_seconds`` empty and staleness unevaluated.
        peer_moves: Per timestamp, the median close-to-close move of the other venues; a move
            they share is a confirmed one, not a spike.
    """
    frame = candles.loc[:, list(CANDLE_COLUMNS)].copy()
    ts = frame["timestamp"].to_numpy(dtype=np.int64)
    opens = frame["open"].to_numpy(dtype=np.float64)
    closes = frame["close"].to_numpy(dtype=np.float64)
    tf = rules.timeframe_ms

    frame["body_high"] = np.fmax(opens, closes)
    frame["body_low"] = np.fmin(opens, closes)
    frame["timestamp_offset"] = ts % tf

    previous = np.empty(len(ts), dtype=np.int64)
    if len(ts):
        previous[1:] = ts[:-1]
        previous[0] = previous_timestamp if previous_timestamp is not None else ts[0] - tf
    step = ts - previous
    frame["missing_before"] = np.where(step > 0, (step - 1) // tf, 0).astype(np.int64)

    moves = close_moves(frame)
    frame["close_move"] = moves
    peers = (
        pd.Series(np.nan, index=frame.index)
        if peer_moves is None
        else pd.Series(peer_moves.reindex(ts).to_numpy(dtype=np.float64), index=frame.index)
    )
    frame["peer_move"] = peers
    confirmed = (np.sign(peers) == np.sign(moves)) & (
        peers.abs() >= rules.spike_threshold * rules.spike_confirmation
    )
    frame["unconfirmed_move"] = np.where(confirmed, 0.0, moves.abs())

    frame["volume_zscore"] = volume_zscores(frame["volume"], rules.volume_window)
    frame["frozen_run"] = frozen_run_lengths(frame)
    if as_of is None:
        frame["candle_age_seconds"] = np.nan
    else:
        frame["candle_age_seconds"] = (as_of - (ts + tf)) / 1000.0
    return frame


def volume_zscores(volume: pd.Series, window: int) -> pd.Series:
    """Return the robust z-score of each volume against its trailing window (median and MAD).

    NaN during warm-up and wherever the window's MAD is zero (a flat window has no scale).
    """
    values = volume.astype(np.float64)
    minimum = max(5, window // 4)
    median = values.rolling(window, min_periods=minimum).median()
    mad = (values - median).abs().rolling(window, min_periods=minimum).median()
    scale = 1.4826 * mad
    z = (values - median) / scale.where(scale > 0)
    return z.astype(np.float64)


def frozen_run_lengths(candles: pd.DataFrame) -> np.ndarray:
    """Return, per candle, the length of its run of frozen candles (0 when it moved).

    A frozen candle is flat (open = high = low = close) at the previous candle's close: the
    feed repeats a price without trading at it.
    """
    o, h, lo, c = (candles[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
    flat = (o == h) & (h == lo) & (lo == c)
    unchanged = np.zeros(len(c), dtype=bool)
    unchanged[1:] = c[1:] == c[:-1]
    frozen = flat & unchanged
    lengths = np.zeros(len(c), dtype=np.int64)
    if not frozen.any():
        return lengths
    edges = np.diff(np.concatenate(([0], frozen.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for start, end in zip(starts, ends, strict=True):
        lengths[start:end] = end - start
    return lengths


def _listed(items: list[dict[str, Any]], limit: int = MAX_LISTED) -> dict[str, Any]:
    return {"listed": items[:limit], "truncated": max(0, len(items) - limit)}


def observe_candles(
    frame: pd.DataFrame, rules: CandleRules, *, as_of: int | None
) -> dict[str, dict[str, Any]]:
    """Return the observed value of each candle check that has details beyond GX's counts."""
    ts = frame["timestamp"].to_numpy(dtype=np.int64)
    tf = rules.timeframe_ms
    missing = frame["missing_before"].to_numpy(dtype=np.int64)
    holes = [
        {"start": int(t - m * tf), "start_utc": iso(int(t - m * tf)), "length": int(m)}
        for t, m in zip(ts[missing > 0], missing[missing > 0], strict=True)
    ]
    first = int(ts[0] - missing[0] * tf) if len(ts) else 0
    expected = int((ts.max() - first) // tf + 1) if len(ts) else 0
    present = int(np.unique(ts[(ts >= first) & (ts % tf == 0)]).size) if len(ts) else 0

    moves = frame["close_move"].to_numpy(dtype=np.float64)
    peers = frame["peer_move"].to_numpy(dtype=np.float64)
    big = np.flatnonzero(np.abs(moves) > rules.spike_threshold)
    unconfirmed_moves = frame["unconfirmed_move"].to_numpy(dtype=np.float64)
    spikes = [
        {
            "timestamp": int(ts[i]),
            "timestamp_utc": iso(int(ts[i])),
            "move": round(float(moves[i]), 6),
            "peer_move": None if np.isnan(peers[i]) else round(float(peers[i]), 6),
            "confirmed": bool(unconfirmed_moves[i] == 0.0),
        }
        for i in big
    ]

    z = frame["volume_zscore"].to_numpy(dtype=np.float64)
    anomalous = np.flatnonzero(np.nan_to_num(z, nan=0.0) > rules.volume_zscore)
    scored = int(np.count_nonzero(~np.isnan(z)))
    anomalies = [
        {"timestamp": int(ts[i]), "timestamp_utc": iso(int(ts[i])), "zscore": round(float(z[i]), 2)}
        for i in anomalous
    ]

    runs = frame["frozen_run"].to_numpy(dtype=np.int64)
    starts = np.flatnonzero((runs >= rules.frozen_run_candles) & (np.r_[0, runs[:-1]] == 0))
    closes = frame["close"].to_numpy(dtype=np.float64)
    frozen = [
        {"start": int(ts[i]), "start_utc": iso(int(ts[i])), "length": int(runs[i]), "price": float(closes[i])}
        for i in starts
    ]

    observed: dict[str, dict[str, Any]] = {
        "columns": {"required": list(CANDLE_COLUMNS), "derived": list(DERIVED_COLUMNS)},
        "completeness": {
            "expected": expected,
            "present": present,
            "missing": int(missing.sum()),
            "holes": len(holes),
            **_listed(holes),
        },
        "price_spikes": {
            "threshold": rules.spike_threshold,
            "spikes": len(spikes),
            "unconfirmed": sum(not s["confirmed"] for s in spikes),
            "confirmed": sum(s["confirmed"] for s in spikes),
            **_listed(spikes),
        },
        "volume_anomalies": {
            "zscore_above": rules.volume_zscore,
            "window": rules.volume_window,
            "anomalies": len(anomalies),
            "scored": scored,
            "fraction": round(len(anomalies) / scored, 4) if scored else 0.0,
            "max_fraction": rules.volume_anomaly_max_fraction,
            **_listed(anomalies, MAX_LISTED_ANOMALIES),
        },
        "frozen_prices": {
            "min_run": rules.frozen_run_candles,
            "runs": len(frozen),
            "frozen_candles": int(runs[runs >= rules.frozen_run_candles].size),
            **_listed(frozen),
        },
    }
    if as_of is not None and len(ts):
        last = int(ts.max())
        observed["staleness"] = {
            "as_of": as_of,
            "as_of_utc": iso(as_of),
            "last_candle": last,
            "last_candle_utc": iso(last),
            "age_seconds": (as_of - (last + tf)) / 1000.0,
            "allowed_seconds": rules.staleness_ms / 1000.0,
        }
    return observed
