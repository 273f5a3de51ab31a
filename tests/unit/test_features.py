"""The feature matrix: its shape, and each feature family on cases small enough to work out by hand."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.canonical import content_hash
from tradeflow.features import spec as spec_module
from tradeflow.features.build import (
    REGIMES,
    base_features,
    build_feature_matrix,
    cross_asset,
    feature_columns,
    feature_names,
    multi_timeframe,
    order_book_features,
    regime,
    regime_columns,
    resample,
    value_area,
    volume_profile,
)
from tradeflow.features.spec import FeatureSpec

MINUTE = 60_000
START_MS = 1_700_006_400_000  # 2023-11-15 00:00 UTC, a 4h boundary


def random_walk(minutes: int, seed: int, price: float = 100.0, holes: float = 0.0) -> pd.DataFrame:
    """Return 1-minute candles of a random walk (with a share of minutes missing)."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.standard_normal(minutes) * 1e-3))
    open_ = np.concatenate([[price], close])[:minutes]
    frame = pd.DataFrame(
        {
            "timestamp": START_MS + np.arange(minutes, dtype=np.int64) * MINUTE,
            "open": open_,
            "high": np.maximum(open_, close) * (1.0 + rng.exponential(3e-4, minutes)),
            "low": np.minimum(open_, close) * (1.0 - rng.exponential(3e-4, minutes)),
            "close": close,
            "volume": rng.lognormal(1.0, 1.0, minutes),
        }
    )
    return frame[rng.random(minutes) >= holes].reset_index(drop=True)


def flat_candles(prices: list[float], volumes: list[float], start: int = START_MS) -> pd.DataFrame:
    """Return 1-minute candles whose open, high, low and close all equal the given price."""
    return pd.DataFrame(
        {
            "timestamp": start + np.arange(len(prices), dtype=np.int64) * MINUTE,
            "open": prices,
            "high": prices,
            "low": prices,
            "close": prices,
            "volume": volumes,
        }
    )


EIGHT_DAYS = 8 * 24 * 60


def eight_days() -> dict[str, pd.DataFrame]:
    """Eight days of two symbols: enough for every window of the default spec (7-day profile, 4h ADX)."""
    return {
        "ETH/USDT": random_walk(EIGHT_DAYS, seed=2, price=2000.0, holes=0.02),
        "BTC/USDT": random_walk(EIGHT_DAYS, seed=1, price=30000.0),
    }


@pytest.fixture(scope="module")
def matrix() -> pd.DataFrame:
    return build_feature_matrix(eight_days(), FeatureSpec())


# --------------------------------------------------------------------------------------------
# Shape
# --------------------------------------------------------------------------------------------


def test_matrix_has_one_row_per_symbol_and_candle_and_keys_first(matrix: pd.DataFrame) -> None:
    assert list(matrix.columns[:2]) == ["symbol", "timestamp"]
    assert matrix.columns[-1] == "regime"
    counts = matrix.groupby("symbol").size()
    assert counts.to_dict() == {symbol: len(candles) for symbol, candles in eight_days().items()}
    assert counts["ETH/USDT"] < EIGHT_DAYS  # its holes stay holes
    # Sorted by symbol, then time; nothing fabricated for the holes.
    assert list(matrix["symbol"].drop_duplicates()) == ["BTC/USDT", "ETH/USDT"]
    for _, rows in matrix.groupby("symbol"):
        assert rows["timestamp"].is_monotonic_increasing


def test_default_spec_gives_at_least_fifty_float_features(matrix: pd.DataFrame) -> None:
    columns = feature_columns(matrix)
    assert len(columns) >= 50
    assert columns == feature_names(FeatureSpec())
    assert set(matrix.columns) - set(columns) == {"symbol", "timestamp", "regime"}
    assert all(matrix[name].dtype == np.float64 for name in columns)
    assert matrix["timestamp"].dtype == np.int64
    assert set(matrix["regime"]) <= set(REGIMES)
    # Past the warm-up every feature is defined, except the order book's (no books given).
    tail = matrix[columns].iloc[-1000:]
    undefined = {name for name in columns if tail[name].isna().any()}
    assert undefined == {name for name in columns if name.startswith("book_")}


def test_column_order_does_not_depend_on_input_order() -> None:
    first = {"A/USDT": random_walk(400, seed=3), "B/USDT": random_walk(400, seed=4)}
    second = dict(reversed(list(first.items())))
    spec = FeatureSpec(leader_symbol="A/USDT")
    pd.testing.assert_frame_equal(build_feature_matrix(first, spec), build_feature_matrix(second, spec))


def test_base_features_keep_the_input_rows_and_index() -> None:
    candles = random_walk(500, seed=5, holes=0.1)
    candles.index = candles.index * 10 + 7
    features = base_features(candles, FeatureSpec())
    assert features.index.equals(candles.index)
    assert features.shape[1] >= 30
    # Holes are reported, not filled.
    gaps = np.diff(candles["timestamp"].to_numpy()) // MINUTE - 1
    np.testing.assert_array_equal(features["gap_minutes"].to_numpy()[1:], gaps)
    assert features["missing_minutes"].dropna().iloc[-1] == (
        (candles["timestamp"].iloc[-1] - candles["timestamp"].iloc[-240]) // MINUTE - 239
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda frame: frame.iloc[::-1], "strictly increasing"),
        (lambda frame: frame.drop(columns="volume"), "volume"),
        (lambda frame: frame.assign(close=frame["close"].where(frame.index != 5, -1.0)), "positive"),
        (lambda frame: frame.assign(timestamp=frame["timestamp"].astype(float)), "integer"),
    ],
)
def test_malformed_candles_are_refused(change: Callable[[pd.DataFrame], pd.DataFrame], message: str) -> None:
    candles = random_walk(50, seed=6)
    with pytest.raises(ValueError, match=message):
        base_features(change(candles), FeatureSpec())


# --------------------------------------------------------------------------------------------
# Regime
# --------------------------------------------------------------------------------------------


def regime_inputs(kinds: str) -> pd.DataFrame:
    """Return regime inputs whose raw label per row is given by a letter: B, S(bearish), V, R, U."""
    rows = {
        "B": (30.0, 30.0, 10.0, 0.5, 0.01),
        "S": (30.0, 10.0, 30.0, 0.5, 0.01),
        "V": (15.0, 20.0, 20.0, 0.95, 0.01),
        "R": (15.0, 20.0, 20.0, 0.5, 0.001),
        "U": (15.0, 20.0, 20.0, 0.5, 0.05),
    }
    return pd.DataFrame(
        [rows[kind] for kind in kinds],
        columns=["adx", "plus_di", "minus_di", "atr_percentile", "bollinger_width"],
    )


def test_regime_labels_follow_adx_direction_volatility_and_width() -> None:
    spec = FeatureSpec(regime_min_dwell=1)
    labels = regime(regime_inputs("BSVRU"), spec)
    assert list(labels) == ["TRENDING_BULLISH", "TRENDING_BEARISH", "VOLATILE", "RANGING", "UNCERTAIN"]
    warm_up = regime_inputs("B").assign(adx=np.nan)
    assert list(regime(warm_up, spec)) == ["UNCERTAIN"]


def test_regime_switches_only_after_the_minimum_dwell() -> None:
    spec = FeatureSpec(regime_min_dwell=3)
    raw = "BBBBSSBBRRRRVVUUU"
    letters = {
        "TRENDING_BULLISH": "B",
        "TRENDING_BEARISH": "S",
        "VOLATILE": "V",
        "RANGING": "R",
        "UNCERTAIN": "U",
    }
    labels = "".join(letters[label] for label in regime(regime_inputs(raw), spec))
    # Starts UNCERTAIN; B confirmed at its 3rd row; the 2-row S flicker and the 2-row V never
    # show; R takes over at its 3rd row; U at its 3rd row.
    assert labels == "UUBBBBBBBBRRRRRRU"


def test_regime_one_hot_columns_match_the_labels() -> None:
    labels = pd.Series(["RANGING", "VOLATILE", "RANGING"], index=[4, 5, 6])
    one_hot = regime_columns(labels)
    assert list(one_hot.columns) == [f"regime_{label.lower()}" for label in REGIMES]
    assert one_hot.index.equals(labels.index)
    assert one_hot["regime_ranging"].tolist() == [1.0, 0.0, 1.0]
    assert one_hot.sum(axis=1).tolist() == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------------------------
# Volume profile
# --------------------------------------------------------------------------------------------


def test_value_area_is_the_narrowest_run_around_the_point_of_control() -> None:
    # Total 22, 70 % = 15.4. Width 3 is the narrowest; [0..3] and [1..4] both hold 16, so the
    # lower run wins the tie. (Greedy expansion from the POC would stop elsewhere.)
    point, low, high = value_area([1, 2, 10, 3, 1, 0, 5], 0.70)
    assert (point.tolist(), low.tolist(), high.tolist()) == ([2], [0], [3])
    # Among equally narrow runs the heavier wins: [1..2] holds 13, [2..3] holds 14.
    point, low, high = value_area([[0, 3, 10, 4, 0]], 0.75)
    assert (point.tolist(), low.tolist(), high.tolist()) == ([2], [2], [3])
    point, low, high = value_area([[0, 0, 0]], 0.7)
    assert (point.tolist(), low.tolist(), high.tolist()) == ([-1], [-1], [-1])


def test_volume_profile_levels_on_a_hand_made_window() -> None:
    # Ten-minute window, refreshed every five minutes, five bins. The first refresh whose
    # window the series covers is minute 10: its window is minutes 1..10 (minute 0 is out).
    # Those prices span 100..110, bins of 2: b0 [100,102) holds 1+1+2, b1 [102,104) 5+5+2+4,
    # b2 [104,106) 1+1, b4 (110, the top) 1: 4, 16, 2, 0, 1 of 23. POC b1 (mid 103). 70 % is
    # 16.1: b1 alone holds 16; of the two-bin runs [b0,b1] holds 20 and [b1,b2] 18, so the value
    # area is 100..104. Minutes 11..14 are after the refresh and must not count.
    prices = [120.0, 100, 101, 102, 102, 103, 104, 105, 102, 101, 110, 50, 50, 200, 200]
    volumes = [50.0, 1, 1, 5, 5, 2, 1, 1, 4, 2, 1, 99, 99, 99, 99]
    spec = FeatureSpec(
        volume_profile_window_minutes=10,
        volume_profile_refresh_minutes=5,
        volume_profile_bins=5,
        volume_profile_value_area=0.70,
    )
    profile = volume_profile(flat_candles(prices, volumes), spec)
    assert profile.iloc[:10].isna().all().all()
    for row in range(10, 15):
        assert profile["profile_point_of_control"].iloc[row] == 103.0
        assert profile["profile_value_area_low"].iloc[row] == 100.0
        assert profile["profile_value_area_high"].iloc[row] == 104.0
        assert profile["profile_point_of_control_distance"].iloc[row] == prices[row] / 103.0 - 1.0
        assert profile["profile_value_area_high_distance"].iloc[row] == prices[row] / 104.0 - 1.0
        assert profile["profile_value_area_low_distance"].iloc[row] == prices[row] / 100.0 - 1.0
    assert profile["profile_value_area_width"].iloc[10] == (104.0 - 100.0) / 103.0


# --------------------------------------------------------------------------------------------
# Higher timeframes
# --------------------------------------------------------------------------------------------


def test_resample_aggregates_ohlcv_and_counts_candles_of_bars_with_holes() -> None:
    candles = random_walk(20, seed=8).drop(index=[7]).reset_index(drop=True)  # minute 7 missing
    bars = resample(candles, "5m")
    assert bars["timestamp"].tolist() == [START_MS + k * 5 * MINUTE for k in range(4)]
    assert bars["candles"].tolist() == [5, 4, 5, 5]
    second = candles[
        (candles["timestamp"] >= START_MS + 5 * MINUTE) & (candles["timestamp"] < START_MS + 10 * MINUTE)
    ]
    assert bars.loc[1, "open"] == second["open"].iloc[0]
    assert bars.loc[1, "high"] == second["high"].max()
    assert bars.loc[1, "low"] == second["low"].min()
    assert bars.loc[1, "close"] == second["close"].iloc[-1]
    assert bars.loc[1, "volume"] == pytest.approx(second["volume"].sum(), rel=1e-15)


def test_multi_timeframe_joins_only_bars_closed_by_the_rows_close() -> None:
    # 5m bars close at minutes 5, 10, 15, 20. The bar return of bar k is ln(close_k / close_k-1).
    prices = [100.0 + minute for minute in range(20)]
    candles = flat_candles(prices, [1.0] * 20)
    spec = FeatureSpec(higher_timeframes=("5m",))
    joined = multi_timeframe(candles, spec)["tf5m_log_return_1"]
    bar_close = {k: prices[5 * k + 4] for k in range(4)}
    # Minute 12 (bar 2 still open): the latest closed bar is bar 1, closed at minute 10.
    assert joined.iloc[12] == math.log(bar_close[1] / bar_close[0])
    # Using the open bar would have given a different value.
    assert joined.iloc[12] != math.log(prices[12] / bar_close[1])
    # Minute 14 completes bar 2 (its close, minute 15, is the row's close): now bar 2 counts.
    assert joined.iloc[14] == math.log(bar_close[2] / bar_close[1])
    assert joined.iloc[13] == math.log(bar_close[1] / bar_close[0])
    # Before the second bar closes there is no bar return at all.
    assert joined.iloc[:9].isna().all()


def test_multi_timeframe_bars_of_real_candles_match_the_exchanges_own(real_data: Path) -> None:
    folder = real_data / "binance"
    minutes = pd.read_parquet(folder / "XRP-ETH_1m.parquet")
    exchange = pd.read_parquet(folder / "XRP-ETH_5m.parquet").set_index("timestamp")
    ours = resample(minutes, "5m").set_index("timestamp")
    complete = ours[ours["candles"] == 5].index.intersection(exchange.index)
    assert len(complete) > 100
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(ours.loc[complete, column], exchange.loc[complete, column])
    np.testing.assert_allclose(ours.loc[complete, "volume"], exchange.loc[complete, "volume"], rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Order book
# --------------------------------------------------------------------------------------------


def book(snapshot_ts: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> pd.DataFrame:
    rows = [("bid", level, price, amount) for level, (price, amount) in enumerate(bids)]
    rows += [("ask", level, price, amount) for level, (price, amount) in enumerate(asks)]
    frame = pd.DataFrame(rows, columns=["side", "level", "price", "amount"])
    return frame.assign(snapshot_ts=snapshot_ts)


def test_order_book_features_join_the_latest_snapshot_taken_by_the_rows_close() -> None:
    rows = np.array([0, 1, 2, 3], dtype=np.int64) * MINUTE + START_MS  # closes at +1, +2, +3, +4 min
    first = book(START_MS + 90_000, [(99.0, 3.0), (98.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)])
    at_close = book(START_MS + 2 * MINUTE, [(99.5, 1.0)], [(100.5, 3.0)])
    later = book(START_MS + 3 * MINUTE + 1, [(90.0, 1.0)], [(110.0, 1.0)])
    books = pd.concat([later, first, at_close], ignore_index=True)  # any order
    features = order_book_features(books, rows, levels=(1, 5))
    assert list(features.columns) == [
        "book_spread_relative",
        "book_imbalance_1",
        "book_imbalance_5",
        "book_age_seconds",
    ]
    # Row 0 closes at +60 s, before any snapshot.
    assert features.iloc[0].isna().all()
    # Row 1 closes at +120 s: the snapshot taken exactly then counts, the one at +90 s is older.
    assert features["book_spread_relative"].iloc[1] == (100.5 - 99.5) / 100.0
    assert features["book_imbalance_1"].iloc[1] == (1.0 - 3.0) / 4.0
    assert features["book_age_seconds"].iloc[1] == 0.0
    # Row 2 closes at +180 s; the +180.001 s snapshot is after it.
    assert features["book_imbalance_5"].iloc[2] == (1.0 - 3.0) / 4.0
    assert features["book_age_seconds"].iloc[2] == 60.0
    # Row 3 sees the latest one.
    assert features["book_spread_relative"].iloc[3] == 20.0 / 100.0
    only_first = order_book_features(first, rows, levels=(1, 5))
    assert only_first["book_imbalance_5"].iloc[1] == (4.0 - 2.0) / 6.0
    assert only_first["book_imbalance_1"].iloc[1] == (3.0 - 1.0) / 4.0


def test_without_books_the_columns_are_present_and_nan() -> None:
    features = order_book_features(None, np.array([START_MS]), levels=(1, 5, 10))
    assert features.shape == (1, 5)
    assert features.isna().all().all()


# --------------------------------------------------------------------------------------------
# Cross-asset
# --------------------------------------------------------------------------------------------


def test_a_copy_of_the_leader_correlates_at_one_and_its_inverse_at_minus_one() -> None:
    leader = random_walk(600, seed=9, holes=0.05)
    inverse = leader.assign(
        open=1.0 / leader["open"],
        high=1.0 / leader["low"],
        low=1.0 / leader["high"],
        close=1.0 / leader["close"],
    )
    spec = FeatureSpec(leader_symbol="BTC/USDT", correlation_window=60)
    frames = {
        symbol: base_features(candles, spec).assign(timestamp=candles["timestamp"])
        for symbol, candles in {"BTC/USDT": leader, "COPY/USDT": leader.copy(), "INV/USDT": inverse}.items()
    }
    cross = cross_asset(frames, spec)
    for symbol in ("BTC/USDT", "COPY/USDT"):
        correlation = cross[symbol]["leader_correlation"].dropna()
        assert len(correlation) > 500
        assert (correlation == 1.0).all()
        strength = cross[symbol]["relative_strength_60"].dropna()
        assert len(strength) > 500
        assert (strength == 0.0).all()
    np.testing.assert_allclose(cross["INV/USDT"]["leader_correlation"].dropna(), -1.0, atol=1e-12)


def test_cross_asset_matches_the_leader_by_timestamp() -> None:
    leader = random_walk(300, seed=10)
    other = random_walk(300, seed=11).iloc[1::2].reset_index(drop=True)  # every other minute
    spec = FeatureSpec(leader_symbol="BTC/USDT", correlation_window=20)
    frames = {
        "BTC/USDT": base_features(leader, spec).assign(timestamp=leader["timestamp"]),
        "ALT/USDT": base_features(other, spec).assign(timestamp=other["timestamp"]),
    }
    cross = cross_asset(frames, spec)["ALT/USDT"]
    leader_return = frames["BTC/USDT"].set_index("timestamp")["log_return_15"]
    expected = (
        frames["ALT/USDT"]["log_return_15"].to_numpy() - leader_return.loc[other["timestamp"]].to_numpy()
    )
    np.testing.assert_array_equal(cross["relative_strength_15"].to_numpy(), expected)


def test_without_the_leader_cross_asset_columns_are_nan() -> None:
    candles = random_walk(300, seed=12)
    spec = FeatureSpec(leader_symbol="BTC/USDT")
    cross = cross_asset(
        {"ALT/USDT": base_features(candles, spec).assign(timestamp=candles["timestamp"])}, spec
    )
    assert cross["ALT/USDT"].isna().all().all()
    assert list(cross["ALT/USDT"].columns) == ["leader_correlation"] + [
        f"relative_strength_{horizon}" for horizon in spec.relative_strength_horizons
    ]


# --------------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------------


def test_spec_hash_is_stable_and_is_the_hash_of_its_definition() -> None:
    spec = FeatureSpec()
    assert spec.hash == FeatureSpec().hash == content_hash(spec.definition())
    assert len(spec.hash) == 64
    assert spec.definition()["feature_code_version"] == spec_module.FEATURE_CODE_VERSION
    # A spec read back from its own JSON definition is the same spec.
    assert FeatureSpec.from_mapping(spec.definition()["spec"]) == spec
    assert FeatureSpec.from_mapping(spec.definition()["spec"]).hash == spec.hash


def changed_value(value: object) -> object:
    """Return a valid value different from ``value``."""
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, float):
        return value / 2.0
    if isinstance(value, int):
        return value + 1
    if isinstance(value, tuple):
        return value[:-1]
    raise AssertionError(f"no change known for {value!r}")


@pytest.mark.parametrize("field", [field.name for field in dataclasses.fields(FeatureSpec)])
def test_spec_hash_changes_with_every_parameter(field: str) -> None:
    spec = FeatureSpec()
    # Dropping 240 from the return horizons would orphan a relative-strength horizon.
    new = (*spec.return_horizons, 1440) if field == "return_horizons" else changed_value(getattr(spec, field))
    assert new != getattr(spec, field)
    assert dataclasses.replace(spec, **{field: new}).hash != spec.hash


def test_spec_hash_changes_with_the_feature_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = FeatureSpec().hash
    monkeypatch.setattr(spec_module, "FEATURE_CODE_VERSION", "999")
    assert FeatureSpec().hash != before


def test_spec_from_mapping_refuses_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match=r"rsi_perod.*did you mean 'rsi_period'"):
        FeatureSpec.from_mapping({"rsi_perod": 10})
    with pytest.raises(ValueError, match="rsi_period must be a positive integer"):
        FeatureSpec.from_mapping({"rsi_period": 0})
    with pytest.raises(ValueError, match="unsupported timeframe"):
        FeatureSpec.from_mapping({"higher_timeframes": ["7m"]})
    with pytest.raises(ValueError, match="relative_strength_horizons"):
        FeatureSpec.from_mapping({"relative_strength_horizons": [30]})
    spec = FeatureSpec.from_mapping({"return_horizons": [1, 3], "relative_strength_horizons": [3]})
    assert spec.return_horizons == (1, 3)


def test_spec_from_toml_like_values_hashes_like_the_same_spec_in_code() -> None:
    read = FeatureSpec.from_mapping(
        {"bollinger_deviations": 2, "higher_timeframes": ["5m", "15m", "1h", "4h"]}
    )
    assert read == FeatureSpec()
    assert read.hash == FeatureSpec().hash
    assert isinstance(read.bollinger_deviations, float)


@pytest.mark.parametrize("minutes", [0, 1, 2, 12])
def test_a_short_history_gives_the_same_columns_and_nan_warm_up(minutes: int, matrix: pd.DataFrame) -> None:
    short = build_feature_matrix({"BTC/USDT": random_walk(minutes, seed=13)}, FeatureSpec())
    assert list(short.columns) == list(matrix.columns)
    assert len(short) == minutes
    assert (short["regime"] == "UNCERTAIN").all()
    assert short[["rsi", "adx", "tf5m_rsi", "profile_value_area_width"]].isna().all().all()
