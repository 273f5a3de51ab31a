"""Exit rules of one position: each rule by hand, and scanning agrees with stepping bar by bar."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.strategy.exits import ExitConfig, PositionExits
from tradeflow.timeframes import MINUTE_MS

T0 = 1_700_000_000_000 - (1_700_000_000_000 % MINUTE_MS)


def long_position(**config: object) -> PositionExits:
    return PositionExits(1, 100.0, T0, 1.0, 9.0, "RANGING", ExitConfig(**config))  # type: ignore[arg-type]


def test_initial_stop_is_two_atr_below_a_long_entry() -> None:
    position = long_position()
    assert position.stop_level() == (98.0, "stop")
    [action] = position.on_bar(100.5, 97.9, T0 + MINUTE_MS, "RANGING")
    assert (action.kind, action.quantity, action.price, action.resting) == ("stop", 9.0, 98.0, True)
    assert position.remaining == 0


def test_take_profit_ladder_closes_thirds_then_the_rest() -> None:
    position = long_position(trailing_atr=0.0)
    actions = position.on_bar(101.6, 99.5, T0 + MINUTE_MS, "RANGING")
    assert [(a.kind, a.quantity, a.price) for a in actions] == [("take_profit_1", 3.0, 101.5)]
    actions = position.on_bar(105.2, 101.0, T0 + 2 * MINUTE_MS, "RANGING")
    assert [(a.kind, a.quantity, a.price) for a in actions] == [
        ("take_profit_2", 3.0, 103.0),
        ("take_profit_3", 3.0, 105.0),
    ]
    assert position.remaining == 0


def test_breakeven_after_two_atr_then_trailing_three_atr_behind_the_best_price() -> None:
    position = long_position(take_profit_atr=(10.0,), take_profit_fractions=(1.0,))
    position.on_bar(102.5, 100.0, T0 + MINUTE_MS, "RANGING")
    assert position.stop_level() == (100.0, "breakeven_stop")
    position.on_bar(104.0, 102.0, T0 + 2 * MINUTE_MS, "RANGING")
    assert position.stop_level() == (101.0, "trailing_stop")
    [action] = position.on_bar(103.0, 100.9, T0 + 3 * MINUTE_MS, "RANGING")
    assert (action.kind, action.price) == ("trailing_stop", 101.0)


def test_a_bar_reaching_stop_and_target_counts_as_stopped() -> None:
    position = long_position()
    [action] = position.on_bar(102.0, 97.0, T0 + MINUTE_MS, "RANGING")
    assert action.kind == "stop"


def test_time_exit_after_24_hours_and_regime_exit_on_an_adverse_regime() -> None:
    position = long_position()
    assert position.on_bar(100.1, 99.9, T0 + 60 * MINUTE_MS, "TRENDING_BULLISH") == []
    [action] = position.on_bar(100.1, 99.9, T0 + 60 * MINUTE_MS, "VOLATILE")
    assert (action.kind, action.resting) == ("regime", False)
    position = long_position()
    [action] = position.on_bar(100.1, 99.9, T0 + (24 * 60 - 1) * MINUTE_MS, "RANGING")
    assert (action.kind, math.isnan(action.price)) == ("time", True)


def test_a_short_mirrors_a_long() -> None:
    position = PositionExits(-1, 100.0, T0, 1.0, 9.0, None, ExitConfig())
    assert position.stop_level() == (102.0, "stop")
    assert position.next_target() == 98.5
    [action] = position.on_bar(100.2, 98.4, T0 + MINUTE_MS, None)
    assert (action.kind, action.price) == ("take_profit_1", 98.5)


@settings(max_examples=150, deadline=None)
@given(
    direction=st.sampled_from([1, -1]),
    seed=st.integers(0, 2**32 - 1),
    bars=st.integers(1, 400),
    volatility=st.floats(0.05, 2.0),
    time_exit=st.sampled_from([0, 30, 24 * 60]),
    holes=st.floats(0.0, 0.3),
)
def test_scan_finds_the_first_bar_stepping_acts_on(
    direction: int, seed: int, bars: int, volatility: float, time_exit: int, holes: float
) -> None:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0, volatility, bars))
    high = close + rng.uniform(0, volatility, bars)
    low = close - rng.uniform(0, volatility, bars)
    missing = rng.random(bars) < holes
    high[missing] = low[missing] = np.nan
    times = T0 + MINUTE_MS * np.arange(1, bars + 1, dtype=np.int64)
    regimes = rng.choice(
        ["RANGING", "VOLATILE", "TRENDING_BULLISH", "TRENDING_BEARISH"], bars, p=[0.9, 0.04, 0.03, 0.03]
    )
    config = ExitConfig(time_exit_minutes=time_exit)
    scanned = PositionExits(direction, 100.0, T0, 1.0, 3.0, "RANGING", config)
    stepped = PositionExits(direction, 100.0, T0, 1.0, 3.0, "RANGING", config)
    first = scanned.scan(high, low, times, regimes)
    acted = bars
    for index in range(bars):
        if np.isnan(high[index]):
            continue
        if stepped.on_bar(float(high[index]), float(low[index]), int(times[index]), str(regimes[index])):
            acted = index
            break
    assert first == acted
    scanned.skip(high[:first], low[:first])
    expected = stepped.best if acted == bars else None
    if expected is not None:
        assert scanned.best == expected
