"""Labels: exact values on hand-made candles, holes, the fee band, and the triple barrier."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest

from models import labels as labels_module
from models.labels import direction_labels, labels_by_symbol, triple_barrier_labels

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
MINUTE = 60_000


def candles(closes: list[float], minutes: list[int] | None = None, **columns: list[float]) -> pd.DataFrame:
    minutes = list(range(len(closes))) if minutes is None else minutes
    frame = pd.DataFrame({"timestamp": [T0 + m * MINUTE for m in minutes], "close": closes})
    frame["open"] = frame["close"]
    frame["high"] = columns.get("high", closes)
    frame["low"] = columns.get("low", closes)
    frame["volume"] = 1.0
    return frame


def test_direction_labels_exact_on_a_series_with_a_hole_and_the_fee_band() -> None:
    # Minute 4 is missing: the labels at minutes 2 (needs 4) and 4 itself have no row / NaN.
    closes = [100.0, 101.0, 100.3, 100.1, 99.0, 103.0, 104.0]
    minutes = [0, 1, 2, 3, 5, 6, 7]
    labels = direction_labels(candles(closes, minutes), horizon_minutes=2, fee_rate=0.001)

    assert labels["timestamp"].tolist() == [T0 + m * MINUTE for m in minutes]
    assert labels["label_end"].tolist() == [T0 + (m + 2) * MINUTE for m in minutes]
    expected = [
        100.3 / 100.0 - 1,  # +0.30 %: beats the 0.20 % round trip -> 1
        100.1 / 101.0 - 1,  # -0.89 % -> 0
        math.nan,  # minute 4 is a hole: no stand-in candle
        99.0 / 100.1 - 1,  # minute 5 -> -1.1 % -> 0
        104.0 / 99.0 - 1,  # minute 7 -> +5.05 % -> 1
        math.nan,  # minute 8 is past the end
        math.nan,  # minute 9 is past the end
    ]
    np.testing.assert_allclose(labels["forward_return"], expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(labels["label"], [1.0, 0.0, np.nan, 0.0, 1.0, np.nan, np.nan])


@pytest.mark.parametrize(
    ("later_close", "label"),
    [
        (100.25, 1.0),  # +0.25 % > 2 x fee
        (100.15, 0.0),  # +0.15 %: a gain before fees, a loss after them
        (100.0, 0.0),  # flat
        (99.9, 0.0),  # -0.10 %
        (99.5, 0.0),  # -0.50 %
    ],
)
def test_direction_label_is_one_only_when_the_return_beats_a_round_trip(
    later_close: float, label: float
) -> None:
    labels = direction_labels(candles([100.0, later_close]), horizon_minutes=1, fee_rate=0.001)
    assert labels["label"].iloc[0] == label
    assert labels["forward_return"].iloc[0] == pytest.approx(later_close / 100.0 - 1)


def test_direction_labels_sort_their_input_and_refuse_duplicate_times() -> None:
    shuffled = candles([100.0, 110.0, 121.0]).iloc[[2, 0, 1]]
    labels = direction_labels(shuffled, horizon_minutes=1, fee_rate=0.0)
    assert labels["timestamp"].is_monotonic_increasing
    np.testing.assert_allclose(labels["forward_return"], [0.1, 0.1, np.nan])
    with pytest.raises(ValueError, match="duplicate"):
        direction_labels(candles([1.0, 2.0], minutes=[0, 0]))
    with pytest.raises(ValueError, match="positive"):
        direction_labels(candles([1.0, 2.0]), horizon_minutes=0)


def test_labels_by_symbol_stacks_symbols_with_their_own_labels() -> None:
    one_minute = functools.partial(direction_labels, horizon_minutes=1)
    stacked = labels_by_symbol({"B": candles([10.0, 20.0]), "A": candles([10.0, 5.0])}, one_minute)
    assert stacked["symbol"].tolist() == ["A", "A", "B", "B"]
    assert stacked["label"].tolist()[::2] == [0.0, 1.0]


def barrier_candles() -> pd.DataFrame:
    # Entry closes are 100 everywhere except where the test's scenario needs the path.
    closes = [100.0, 100.5, 100.2, 101.0, 100.0, 100.0, 100.1, 100.1, 100.0]
    highs = [100.0, 100.6, 102.5, 101.0, 100.0, 100.0, 100.2, 100.1, 100.0]
    lows = [100.0, 100.4, 99.5, 98.5, 100.0, 100.0, 100.0, 100.0, 100.0]
    return candles(closes, high=highs, low=lows)


def test_triple_barrier_first_touch_on_a_tiny_series() -> None:
    # take-profit +2 %, stop -1 %, at most 3 minutes, 0.1 % fee per side.
    labels = triple_barrier_labels(
        barrier_candles(), take_profit=0.02, stop_loss=0.01, max_minutes=3, fee_rate=0.001
    )
    rows = labels.set_index((labels["timestamp"] - T0) // MINUTE)

    # Minute 0 (entry 100): minute 2's high 102.5 touches +2 % before minute 3's low 98.5.
    assert rows.loc[0, "label"] == 1.0
    assert rows.loc[0, "forward_return"] == pytest.approx(0.02)
    assert rows.loc[0, "label_end"] == T0 + 2 * MINUTE
    # Minute 1 (entry 100.5): upper 102.51 missed by 102.5; minute 3's low 98.5 < 99.495 stops it.
    assert rows.loc[1, "label"] == 0.0
    assert rows.loc[1, "forward_return"] == pytest.approx(-0.01)
    assert rows.loc[1, "label_end"] == T0 + 3 * MINUTE
    # Minute 3 (entry 101): no touch by minute 6; close 100.1 is a loss -> 0 at the time limit.
    assert rows.loc[3, "label"] == 0.0
    assert rows.loc[3, "forward_return"] == pytest.approx(100.1 / 101.0 - 1)
    assert rows.loc[3, "label_end"] == T0 + 6 * MINUTE
    # Minute 4: +0.1 % at the limit is inside the fee band -> 0.
    assert rows.loc[4, "label"] == 0.0
    assert rows.loc[4, "forward_return"] == pytest.approx(0.001)
    # Minutes 6-8: the path runs past the data without a touch -> unknowable.
    assert rows.loc[6:8, "label"].isna().all()


def test_triple_barrier_both_barriers_in_one_candle_counts_as_the_stop() -> None:
    frame = candles([100.0, 100.0], high=[100.0, 103.0], low=[100.0, 97.0])
    labels = triple_barrier_labels(frame, take_profit=0.02, stop_loss=0.02, max_minutes=1, fee_rate=0.0005)
    assert labels["label"].iloc[0] == 0.0
    assert labels["forward_return"].iloc[0] == pytest.approx(-0.02)


def test_triple_barrier_time_limit_with_a_gain_beyond_fees_is_one() -> None:
    frame = candles([100.0, 100.3, 100.5], high=[100.0, 100.4, 100.6], low=[100.0, 100.0, 100.4])
    labels = triple_barrier_labels(frame, take_profit=0.02, stop_loss=0.02, max_minutes=2, fee_rate=0.001)
    assert labels["label"].iloc[0] == 1.0
    assert labels["forward_return"].iloc[0] == pytest.approx(0.005)
    assert labels["label_end"].iloc[0] == T0 + 2 * MINUTE


def test_triple_barrier_hole_before_the_touch_is_unknown_but_a_touch_before_the_hole_counts() -> None:
    # Minute 2 is missing. From minute 0: the hole comes before minute 3's touch -> NaN.
    # From minute 0 with a touch at minute 1 (second frame) the hole does not matter.
    late_touch = candles(
        [100.0, 100.0, 100.0, 100.0], minutes=[0, 1, 3, 4], high=[100.0, 100.0, 105.0, 100.0]
    )
    labels = triple_barrier_labels(late_touch, take_profit=0.02, stop_loss=0.02, max_minutes=4)
    assert math.isnan(labels["label"].iloc[0])
    early_touch = candles(
        [100.0, 100.0, 100.0, 100.0], minutes=[0, 1, 3, 4], high=[100.0, 105.0, 100.0, 100.0]
    )
    labels = triple_barrier_labels(early_touch, take_profit=0.02, stop_loss=0.02, max_minutes=4)
    assert labels["label"].iloc[0] == 1.0
    assert labels["label_end"].iloc[0] == T0 + MINUTE


def test_triple_barrier_refuses_a_take_profit_inside_the_fees() -> None:
    with pytest.raises(ValueError, match="round trip"):
        triple_barrier_labels(
            barrier_candles(), take_profit=0.001, stop_loss=0.01, max_minutes=3, fee_rate=0.001
        )


def reference_triple_barrier(
    frame: pd.DataFrame, take_profit: float, stop_loss: float, max_minutes: int, fee_rate: float
) -> list[tuple[float, float, int]]:
    """A plain loop over rows and minutes, written from the docstring's rules."""
    by_minute = {
        int((t - T0) // MINUTE): row for t, row in zip(frame["timestamp"], frame.itertuples(), strict=True)
    }
    out = []
    for minute, row in sorted(by_minute.items()):
        upper, lower = row.close * (1 + take_profit), row.close * (1 - stop_loss)
        result: tuple[float, float, int] = (math.nan, math.nan, T0 + (minute + max_minutes) * MINUTE)
        for step in range(1, max_minutes + 1):
            later = by_minute.get(minute + step)
            if later is None:
                break
            end = T0 + (minute + step) * MINUTE
            if later.low <= lower:
                result = (-stop_loss, 0.0, end)
                break
            if later.high >= upper:
                result = (take_profit, 1.0, end)
                break
            if step == max_minutes:
                change = later.close / row.close - 1
                result = (change, float(change - 2 * fee_rate > 0), end)
        out.append(result)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_triple_barrier_matches_a_plain_loop_on_random_candles_with_holes(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    minutes = np.sort(rng.choice(3000, size=2600, replace=False)).tolist()
    close = 100 * np.exp(np.cumsum(rng.normal(scale=0.002, size=len(minutes))))
    high = close * (1 + np.abs(rng.normal(scale=0.002, size=close.size)))
    low = close * (1 - np.abs(rng.normal(scale=0.002, size=close.size)))
    frame = candles(close.tolist(), minutes, high=high.tolist(), low=low.tolist())
    # Small blocks, so that block boundaries are crossed many times.
    monkeypatch.setattr(labels_module, "_BARRIER_BLOCK_ROWS", 97)
    labels = triple_barrier_labels(frame, take_profit=0.006, stop_loss=0.004, max_minutes=7, fee_rate=0.001)
    expected = reference_triple_barrier(frame, 0.006, 0.004, 7, 0.001)
    np.testing.assert_allclose(labels["forward_return"], [e[0] for e in expected], rtol=1e-12)
    np.testing.assert_array_equal(labels["label"], [e[1] for e in expected])
    known = labels["label"].notna().to_numpy()
    np.testing.assert_array_equal(
        labels["label_end"].to_numpy()[known], np.array([e[2] for e in expected])[known]
    )
    assert 0.2 < labels["label"].mean() < 0.8 and labels["label"].isna().mean() < 0.5
