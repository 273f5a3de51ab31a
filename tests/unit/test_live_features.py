"""Streaming bar features: every streamed row equals the batch feature matrix's, bit for bit."""

from __future__ import annotations

import math
from itertools import groupby
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.execution.bars import Bar, BarHistory, Lookback
from tradeflow.execution.live_features import LiveFeatures
from tradeflow.features.build import build_feature_matrix
from tradeflow.features.spec import FeatureSpec
from tradeflow.timeframes import DAY_MS, MINUTE_MS

#: A small feature set whose windows are short enough that the bar history is compacted many
#: times within a few thousand bars (the default spec keeps 10,081 bars).
SMALL = FeatureSpec(
    return_horizons=(1, 5, 15),
    volatility_windows=(15, 60),
    vwap_window=60,
    obv_window=30,
    volume_zscore_window=30,
    skew_window=30,
    volume_profile_window_minutes=240,
    volume_profile_refresh_minutes=30,
    regime_atr_window=600,
    regime_atr_min_periods=120,
    regime_min_dwell=10,
    correlation_window=60,
    relative_strength_horizons=(5, 15),
    rsi_period=6,
    atr_period=6,
    adx_period=5,
    macd_fast=4,
    macd_slow=9,
    macd_signal=3,
    bollinger_period=10,
)


def random_walk(seed: int, minutes: int, holes: float, start: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, minutes)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.0005, minutes)) * close
    frame = pd.DataFrame(
        {
            "timestamp": start + MINUTE_MS * np.arange(minutes, dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(1.0, 10.0, minutes),
        }
    )
    keep = rng.random(minutes) >= holes
    keep[0] = True
    return frame[keep].reset_index(drop=True)


def bars_after(candles: dict[str, pd.DataFrame], split: int) -> list[tuple[int, str, Bar]]:
    """Every candle from ``split`` on as (time, symbol, bar), by time; the leader's last in a minute."""
    events = [
        (
            int(row.timestamp),
            symbol,
            Bar(int(row.timestamp), row.open, row.high, row.low, row.close, row.volume),
        )
        for symbol, frame in candles.items()
        for row in frame[frame["timestamp"] >= split].itertuples()
    ]
    return sorted(events, key=lambda event: (event[0], event[1] == "BTC/USDT", event[1]))


def stream_and_compare(
    spec: FeatureSpec, candles: dict[str, pd.DataFrame], split: int, early_reads: bool = False
) -> tuple[int, LiveFeatures]:
    """Warm up on the candles before ``split``, stream the rest; require every row to be the batch's."""
    matrix = build_feature_matrix(candles, spec).set_index(["symbol", "timestamp"])
    live = LiveFeatures(spec, candles)
    for symbol, frame in candles.items():
        live.warm_up(symbol, frame[frame["timestamp"] < split])
    names = live.names
    compared = 0
    for time, group in groupby(bars_after(candles, split), key=lambda event: event[0]):
        minute = list(group)
        for _, symbol, bar in minute:
            assert live.on_bar(symbol, bar)
            if early_reads:
                live.row(symbol)  # before the leader's bar of the minute: provisional cross-asset columns
        for _, symbol, _ in minute:
            row = live.row(symbol)
            assert row is not None
            expected = matrix.loc[(symbol, time), names].to_numpy(dtype=np.float64)
            same = (row == expected) | (np.isnan(row) & np.isnan(expected))
            assert same.all(), f"{symbol} at {time}: " + ", ".join(
                f"{names[i]} {row[i]!r} != {expected[i]!r}" for i in np.flatnonzero(~same)[:5]
            )
            assert live.regime(symbol) == matrix.loc[(symbol, time), "regime"]
            compared += 1
    return compared, live


def test_streamed_rows_of_real_candles_equal_the_batch_matrix_bit_for_bit(real_data: Path) -> None:
    """Real Binance minutes with their holes, the default feature set: the leader and another symbol.

    The second file's minutes are moved onto the first's last days so the two overlap, with
    their own, different holes (the cross-asset join by timestamp meets both kinds of miss).
    """
    leader = pd.read_parquet(real_data / "binance" / "UNKNOWN-BTC_1m.parquet")
    other = pd.read_parquet(real_data / "binance" / "XRP-ETH_1m.parquet")
    shift = int(leader["timestamp"].iloc[-1]) - int(other["timestamp"].iloc[-1])
    other = other.assign(timestamp=other["timestamp"] + shift - shift % MINUTE_MS)
    candles = {"BTC/USDT": leader, "XRP/ETH": other}
    split = int(leader["timestamp"].iloc[-240])
    compared, live = stream_and_compare(FeatureSpec(), candles, split)
    assert compared > 300
    # The window of the volume profile (7 days) is covered, so its columns are numbers.
    values = live.values("BTC/USDT")
    assert not math.isnan(values["profile_value_area_high_distance"])
    assert not math.isnan(values["tf4h_macd_histogram_relative"])
    assert values["leader_correlation"] == 1.0


def test_streamed_rows_equal_the_batch_matrix_through_compactions_and_late_leader_bars() -> None:
    """A short-window feature set: the history is trimmed again and again, and rows read before
    the leader's bar of their minute arrives are corrected once it does."""
    start = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS + 37 * MINUTE_MS
    candles = {
        "BTC/USDT": random_walk(1, 1500, holes=0.03, start=start),
        "ETH/USDT": random_walk(2, 1500, holes=0.25, start=start),
    }
    split = start + 200 * MINUTE_MS
    compared, live = stream_and_compare(SMALL, candles, split, early_reads=True)
    assert compared > 2000
    history = live.symbol("BTC/USDT").bars
    assert history.first_row > 700, "the history was never trimmed"
    assert len(history) <= history.capacity


def test_a_bar_not_newer_than_the_newest_is_ignored() -> None:
    start = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS
    candles = random_walk(3, 400, holes=0.0, start=start)
    live = LiveFeatures(SMALL, ["BTC/USDT"])
    live.warm_up("BTC/USDT", candles)
    before = live.row("BTC/USDT")
    assert before is not None
    snapshot = before.copy()
    last = candles.iloc[-1]
    repeated = Bar(int(last["timestamp"]), 1.0, 2.0, 0.5, 1.5, 3.0)
    assert not live.on_bar("BTC/USDT", repeated)
    after = live.row("BTC/USDT")
    assert after is not None
    assert np.array_equal(after, snapshot, equal_nan=True)


def test_the_default_look_back_is_what_the_module_documents() -> None:
    """The bounded memory the streaming flow promises: 10,081 bars per symbol for the default spec."""
    lookback = Lookback.from_spec(FeatureSpec())
    assert (lookback.rows, lookback.alignment, lookback.minutes, lookback.atr_values) == (
        1441,
        2880,
        10080,
        43200,
    )
    assert (lookback.timeframe_rows, lookback.timeframe_alignment) == (1152, 64)
    history = BarHistory(lookback.kept_rows, lookback.minutes)
    start = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS
    history.extend(random_walk(4, 30_000, holes=0.0, start=start))
    assert len(history) == 10_081  # the profile's 7 days and the bar before them
    assert history.capacity == 2 * 10_081
    assert history.newest_row == 29_999


def test_bar_history_rejects_malformed_bars() -> None:
    history = BarHistory(10)
    with pytest.raises(ValueError, match="positive"):
        history.append(Bar(0, 1.0, 1.0, -1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="increasing"):
        history.extend(
            pd.DataFrame(
                {"timestamp": [2, 1], "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
            )
        )
