"""Features never see the future: changing anything after t leaves every feature at or before t as it was.

Hypothesis picks a cut-off t and a way to rewrite every candle (and order-book snapshot) of every
symbol after it: new prices (still consistent, high >= max(open, close) >= min(open, close) >=
low > 0), new volumes, optionally dropped candles. The whole matrix is rebuilt and every feature
of every row with timestamp <= t must be bit-for-bit identical (NaN equal to NaN).

The series is 3 symbols x 3 days of 1-minute candles with holes, and the spec's long windows are
shrunk so that every feature family, the 4h bars, the volume profile and the ATR percentile
included, has values inside those 3 days.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeflow.features.build import build_feature_matrix, feature_columns
from tradeflow.features.spec import FeatureSpec

START_MS = 1_700_006_400_000  # 2023-11-15 00:00 UTC, a 4h boundary
MINUTES = 3 * 24 * 60
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")

SPEC = FeatureSpec(
    name="lookahead",
    macd_fast=6,
    macd_slow=13,
    macd_signal=5,
    adx_period=7,
    bollinger_period=14,
    volume_profile_window_minutes=12 * 60,
    volume_profile_bins=20,
    regime_atr_window=720,
    regime_atr_min_periods=120,
    regime_min_dwell=15,
)


def _candles(seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(MINUTES) * 0.001
    frames = {}
    for k, symbol in enumerate(SYMBOLS):
        returns = common * (1.0 if k == 0 else 0.6) + rng.standard_normal(MINUTES) * 0.0006 * k
        close = 100.0 * (k + 1) * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[close[0]], close[:-1]])
        high = np.maximum(open_, close) * (1.0 + np.abs(rng.standard_normal(MINUTES)) * 4e-4)
        low = np.minimum(open_, close) * (1.0 - np.abs(rng.standard_normal(MINUTES)) * 4e-4)
        volume = rng.lognormal(1.0, 1.0, MINUTES)
        keep = rng.random(MINUTES) > 0.01  # real data has holes
        frames[symbol] = pd.DataFrame(
            {
                "timestamp": START_MS + np.arange(MINUTES, dtype=np.int64) * 60_000,
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": volume,
            }
        )[keep].reset_index(drop=True)
    return frames


def _books(seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed + 1)
    snapshots = START_MS + np.cumsum(rng.integers(20_000, 90_000, size=MINUTES // 2))
    snapshots = snapshots[snapshots < START_MS + MINUTES * 60_000]
    frames = {}
    for k, symbol in enumerate(SYMBOLS[:2]):  # the third symbol has no books
        rows = []
        for side, sign in (("bid", -1.0), ("ask", 1.0)):
            for level in range(10):
                rows.append(
                    pd.DataFrame(
                        {
                            "snapshot_ts": snapshots,
                            "side": side,
                            "level": level,
                            "price": 100.0 * (k + 1) * (1.0 + sign * 1e-4 * (level + 1)),
                            "amount": rng.lognormal(0.0, 1.0, snapshots.size),
                        }
                    )
                )
        frames[symbol] = pd.concat(rows, ignore_index=True)
    return frames


@cache
def _original() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], pd.DataFrame]:
    candles, books = _candles(7), _books(7)
    return candles, books, build_feature_matrix(candles, SPEC, books)


def _rewrite_after(
    candles: pd.DataFrame, cutoff: int, rng: np.random.Generator, drift: float, drop: float
) -> pd.DataFrame:
    later = candles["timestamp"].to_numpy() > cutoff
    count = int(later.sum())
    changed = candles.copy()
    if count == 0:
        return changed
    base = candles["close"].to_numpy()[~later][-1] if (~later).any() else candles["close"].iloc[0]
    close = base * np.exp(np.cumsum(rng.standard_normal(count) * drift))
    open_ = close * np.exp(rng.standard_normal(count) * drift)
    high = np.maximum(open_, close) * (1.0 + rng.exponential(drift, count))
    low = np.minimum(open_, close) * (1.0 - np.minimum(rng.exponential(drift, count), 0.5))
    changed.loc[later, "open"] = open_
    changed.loc[later, "high"] = high
    changed.loc[later, "low"] = low
    changed.loc[later, "close"] = close
    changed.loc[later, "volume"] = rng.lognormal(3.0, 2.0, count)
    dropped = later & (rng.random(len(candles)) < drop)
    return changed[~dropped].reset_index(drop=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    minute=st.integers(min_value=0, max_value=MINUTES - 1),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    drift=st.sampled_from([1e-5, 1e-3, 0.05]),
    drop=st.sampled_from([0.0, 0.3]),
)
def test_features_at_or_before_t_ignore_everything_after_t(
    minute: int, seed: int, drift: float, drop: float
) -> None:
    candles, books, original = _original()
    cutoff = START_MS + minute * 60_000
    rng = np.random.default_rng(seed)
    changed_candles = {
        symbol: _rewrite_after(frame, cutoff, rng, drift, drop) for symbol, frame in candles.items()
    }
    changed_books = {}
    for symbol, frame in books.items():
        # A snapshot at or before t + 1 minute may feed row t; every later one is rewritten.
        later = frame["snapshot_ts"].to_numpy() > cutoff + 60_000
        rewritten = frame.copy()
        rewritten.loc[later, "amount"] = rng.lognormal(2.0, 2.0, int(later.sum()))
        rewritten.loc[later, "price"] = rewritten.loc[later, "price"] * (1.0 + drift)
        changed_books[symbol] = rewritten
    changed = build_feature_matrix(changed_candles, SPEC, changed_books)

    columns = feature_columns(original)
    assert columns == feature_columns(changed)
    before = original["timestamp"].to_numpy() <= cutoff
    changed_before = changed["timestamp"].to_numpy() <= cutoff
    pd.testing.assert_frame_equal(
        original.loc[before, ["symbol", "timestamp", "regime"]].reset_index(drop=True),
        changed.loc[changed_before, ["symbol", "timestamp", "regime"]].reset_index(drop=True),
    )
    np.testing.assert_array_equal(
        original.loc[before, columns].to_numpy(), changed.loc[changed_before, columns].to_numpy()
    )


def test_the_series_exercises_every_feature() -> None:
    """Guard the property above against vacuity: the shrunk spec gives every feature values."""
    _, _, original = _original()
    columns = feature_columns(original)
    defined = original[columns].notna().any()
    assert defined.all(), f"never defined in 3 days: {list(defined[~defined].index)}"
    assert set(original["regime"]) > {"UNCERTAIN"}
