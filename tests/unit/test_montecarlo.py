"""Monte Carlo of a backtest: trade reshuffling and block bootstrap, checked on cases known by hand."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from tradeflow.backtest.montecarlo import (
    MonteCarloResult,
    _block_indices,
    conditional_value_at_risk,
    monte_carlo,
    path_max_drawdowns,
    resample_returns,
    value_at_risk,
)

MINUTE = 60_000
ARRAYS = (
    "reshuffle_max_drawdown",
    "reshuffle_final_return",
    "bootstrap_final_return",
    "bootstrap_max_drawdown",
)


def sample_returns(trades: int = 300, bars: int = 2000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    return generator.normal(0.002, 0.02, trades), generator.normal(0.0, 0.002, bars)


def result_of(final_returns: list[float], drawdowns: list[float], halt: float = 0.2) -> MonteCarloResult:
    finals = np.asarray(final_returns, dtype=np.float64)
    falls = np.asarray(drawdowns, dtype=np.float64)
    return MonteCarloResult(
        scenarios=finals.size,
        trades=0,
        bars=0,
        block_length=1,
        seed=0,
        drawdown_halt=halt,
        seconds=0.0,
        reshuffle_max_drawdown=falls,
        reshuffle_final_return=np.zeros(finals.size),
        bootstrap_final_return=finals,
        bootstrap_max_drawdown=falls,
    )


def test_same_seed_same_scenarios_other_seed_other_scenarios() -> None:
    trades, bars = sample_returns()
    first = monte_carlo(trades, bars, scenarios=500, seed=3)
    again = monte_carlo(trades, bars, scenarios=500, seed=3)
    other = monte_carlo(trades, bars, scenarios=500, seed=4)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name), err_msg=name)
    assert not np.array_equal(first.reshuffle_max_drawdown, other.reshuffle_max_drawdown)
    assert not np.array_equal(first.bootstrap_final_return, other.bootstrap_final_return)
    summary, repeated = first.summary(), again.summary()
    del summary["seconds"], repeated["seconds"]
    assert summary == repeated


def test_chunking_never_changes_the_result() -> None:
    trades, bars = sample_returns()
    whole = monte_carlo(trades, bars, scenarios=1000, chunk=1000)
    for chunk in (1, 7, 333, 999, 5000):
        pieces = monte_carlo(trades, bars, scenarios=1000, chunk=chunk)
        for name in ARRAYS:
            np.testing.assert_array_equal(
                getattr(pieces, name), getattr(whole, name), err_msg=f"{name} {chunk}"
            )


def test_every_reshuffle_compounds_to_the_same_product() -> None:
    trades, bars = sample_returns()
    result = monte_carlo(trades, bars, scenarios=2000)
    product = float(np.prod(1.0 + trades) - 1.0)
    np.testing.assert_allclose(result.reshuffle_final_return, product, rtol=1e-12)
    assert result.summary()["reshuffle_final_return"] == pytest.approx(product, rel=1e-12)
    assert np.unique(result.reshuffle_max_drawdown).size > 100  # the order matters for the path


def test_drawdown_of_known_sequences() -> None:
    # 1 -> 1.1 -> 0.55 -> 0.66: half of the high of 1.1 lost
    assert path_max_drawdowns(np.asarray([0.1, -0.5, 0.2])).tolist() == pytest.approx([0.5])
    # the starting equity counts as a high: a first loss is a drawdown
    assert path_max_drawdowns(np.asarray([-0.1, 0.05])).tolist() == pytest.approx([0.1])
    # 1 -> 0.9 -> 1.08 -> 0.54: the second fall is deeper
    assert path_max_drawdowns(np.asarray([[-0.1, 0.2, -0.5], [0.01, 0.01, 0.01]])).tolist() == pytest.approx(
        [0.5, 0.0]
    )
    returns = np.asarray([0.1, -0.5, 0.2])
    path_max_drawdowns(returns)
    assert returns.tolist() == [0.1, -0.5, 0.2]  # the input is left alone


def test_reshuffled_drawdowns_are_those_of_the_permutations() -> None:
    # +100 %, -50 %, -20 %: the six orders give drawdowns of 0.6 (four orders) or 0.5 (two)
    trades = np.asarray([1.0, -0.5, -0.2])
    by_hand = {order: path_max_drawdowns(np.asarray(order))[0] for order in itertools.permutations(trades)}
    assert sorted(round(value, 12) for value in by_hand.values()) == [0.5, 0.5, 0.6, 0.6, 0.6, 0.6]
    result = monte_carlo(trades, np.zeros(0), scenarios=6000)
    assert set(np.round(result.reshuffle_max_drawdown, 12)) == {0.5, 0.6}
    assert np.mean(np.isclose(result.reshuffle_max_drawdown, 0.6)) == pytest.approx(2 / 3, abs=0.03)
    assert result.summary()["reshuffle_max_drawdown_p50"] == pytest.approx(0.6)


def test_bootstrap_of_equal_returns_is_degenerate() -> None:
    gain = monte_carlo(np.zeros(0), np.full(100, 0.001), scenarios=500, block_length=24)
    np.testing.assert_allclose(gain.bootstrap_final_return, 1.001**100 - 1, rtol=1e-12)
    np.testing.assert_array_equal(gain.bootstrap_max_drawdown, 0.0)
    summary = gain.summary()
    for percentile in (5, 25, 50, 75, 95):
        assert summary[f"bootstrap_final_return_p{percentile}"] == pytest.approx(1.001**100 - 1, rel=1e-12)
    assert summary["bootstrap_var_95"] == pytest.approx(-(1.001**100 - 1), rel=1e-12)  # a sure gain
    loss = monte_carlo(np.zeros(0), np.full(100, -0.001), scenarios=500, block_length=7)
    np.testing.assert_allclose(loss.bootstrap_max_drawdown, 1 - 0.999**100, rtol=1e-12)
    assert loss.summary()["bootstrap_var_99"] == pytest.approx(1 - 0.999**100, rel=1e-12)


def test_bootstrap_rows_are_circular_blocks() -> None:
    rows = _block_indices(np.random.default_rng(0), length=50, block_length=8, count=200)
    assert rows.shape == (200, 50)
    steps = (np.diff(rows, axis=1) % 50)[:, np.arange(49) % 8 != 7]  # inside a block: the next bar
    assert bool(np.all(steps == 1))
    assert set(np.unique(rows[:, ::8])) == set(range(50))  # every start drawn
    longer = _block_indices(np.random.default_rng(0), length=5, block_length=24, count=3)
    assert bool(np.all(np.diff(longer, axis=1) % 5 == 1))  # a block longer than the history wraps


def test_value_at_risk_and_conditional_value_at_risk_on_a_constructed_distribution() -> None:
    finals = -np.arange(100) / 100  # losses 0.00, 0.01, ..., 0.99
    assert value_at_risk(finals, 0.95) == pytest.approx(0.9405)  # linear between 0.94 and 0.95
    assert conditional_value_at_risk(finals, 0.95) == pytest.approx(0.97)  # mean of 0.95..0.99
    assert value_at_risk(finals, 0.99) == pytest.approx(0.9801)
    assert conditional_value_at_risk(finals, 0.99) == pytest.approx(0.99)
    summary = result_of(finals.tolist(), [0.0] * 100).summary()
    assert summary["bootstrap_var_95"] == pytest.approx(0.9405)
    assert summary["bootstrap_cvar_95"] == pytest.approx(0.97)
    assert summary["bootstrap_var_99"] == pytest.approx(0.9801)
    assert summary["bootstrap_cvar_99"] == pytest.approx(0.99)
    assert summary["bootstrap_final_return_p5"] == pytest.approx(-0.9405)
    assert summary["bootstrap_final_return_p50"] == pytest.approx(-0.495)
    assert math.isnan(value_at_risk([], 0.95)) and math.isnan(conditional_value_at_risk([], 0.95))


def test_halt_probability() -> None:
    trades, bars = sample_returns()
    never = monte_carlo(trades, bars, scenarios=300, drawdown_halt=1.0).summary()
    assert never["reshuffle_halt_probability"] == 0.0 and never["bootstrap_halt_probability"] == 0.0
    always = monte_carlo(trades, bars, scenarios=300, drawdown_halt=0.0).summary()
    assert always["reshuffle_halt_probability"] == 1.0 and always["bootstrap_halt_probability"] == 1.0
    counted = result_of([0.0] * 4, [0.1, 0.2, 0.25, 0.19], halt=0.2).summary()
    assert counted["bootstrap_halt_probability"] == 0.5  # reaching the halt counts


def test_ten_thousand_scenarios_on_thousands_of_returns() -> None:
    trades, bars = sample_returns(trades=2000, bars=3000)
    result = monte_carlo(trades, bars)
    assert result.scenarios == 10_000 and (result.trades, result.bars) == (2000, 3000)
    for name in ARRAYS:
        values = getattr(result, name)
        assert values.shape == (10_000,) and bool(np.all(np.isfinite(values))), name


def test_summary_and_to_dict_are_plain() -> None:
    trades, bars = sample_returns()
    result = monte_carlo(trades, bars, scenarios=200, drawdown_halt=0.1)
    plain = result.to_dict()
    assert all(type(value) in (float, int) for value in plain.values())
    assert json.loads(json.dumps(plain)) == pytest.approx(plain)
    assert {"scenarios", "block_length", "seed", "drawdown_halt"} <= set(plain)
    expected = {
        *(f"bootstrap_final_return_p{p}" for p in (5, 25, 50, 75, 95)),
        *(f"bootstrap_{kind}_{level}" for kind in ("var", "cvar") for level in (95, 99)),
        *(f"{method}_max_drawdown_p{p}" for method in ("reshuffle", "bootstrap") for p in (50, 95, 99)),
        "reshuffle_halt_probability",
        "bootstrap_halt_probability",
        "reshuffle_final_return",
        "seconds",
    }
    assert set(result.summary()) == expected
    summary = result.summary()
    assert summary["bootstrap_max_drawdown_p50"] <= summary["bootstrap_max_drawdown_p95"]
    assert summary["bootstrap_var_99"] >= summary["bootstrap_var_95"]
    assert summary["bootstrap_cvar_95"] >= summary["bootstrap_var_95"]


def test_empty_inputs_are_a_strategy_that_never_moved() -> None:
    result = monte_carlo([], [], scenarios=50)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(result, name), np.zeros(50), err_msg=name)
    summary = result.summary()
    assert summary["bootstrap_var_95"] == 0.0 and summary["reshuffle_halt_probability"] == 0.0
    only_trades = monte_carlo([0.1, -0.2], [], scenarios=10)
    np.testing.assert_allclose(only_trades.reshuffle_final_return, 1.1 * 0.8 - 1)
    np.testing.assert_array_equal(only_trades.bootstrap_final_return, 0.0)
    nothing = monte_carlo([0.1], [0.01], scenarios=0)
    assert all(getattr(nothing, name).size == 0 for name in ARRAYS)
    assert all(math.isnan(value) for key, value in nothing.summary().items() if key != "seconds")


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        monte_carlo([0.1, np.nan], [0.0])
    with pytest.raises(ValueError, match="finite"):
        monte_carlo([0.1], [np.inf])
    with pytest.raises(ValueError, match="at least 1"):
        monte_carlo([0.1], [0.0], block_length=0)
    with pytest.raises(ValueError, match="at least 1"):
        monte_carlo([0.1], [0.0], chunk=0)
    with pytest.raises(ValueError, match="negative"):
        monte_carlo([0.1], [0.0], scenarios=-1)


def test_resample_returns_per_hour() -> None:
    start = 1_709_251_200_000  # 2024-03-01 00:00 UTC, on the hour
    times = [start + m * MINUTE for m in (0, 30, 59, 60, 61, 119, 240, 241)]  # hours 0, 1, 4 (2 and 3 empty)
    equity = pd.Series([100.0, 105.0, 110.0, 99.0, 100.0, 121.0, 110.0, 132.0], index=pd.Index(times))
    returns = resample_returns(equity, minutes=60)
    # hour 0 from the first bar: 110/100; hour 1: 121/110; hour 4 (after the gap): 132/121
    np.testing.assert_allclose(returns, [0.10, 0.10, 132 / 121 - 1], rtol=1e-12)
    assert np.prod(1 + returns) == pytest.approx(1.32, rel=1e-12)  # compounds to the total return


def test_resample_returns_when_the_first_bar_closes_its_bucket() -> None:
    start = 1_709_251_200_000
    equity = pd.Series(
        [100.0, 110.0, 99.0], index=pd.Index([start + 59 * MINUTE, start + 60 * MINUTE, start + 61 * MINUTE])
    )
    np.testing.assert_allclose(resample_returns(equity, minutes=60), [-0.01], rtol=1e-12)  # no 0 for hour 0
    minute_bars = pd.Series([100.0, 101.0, 99.0], index=pd.Index([start, start + MINUTE, start + 2 * MINUTE]))
    np.testing.assert_allclose(resample_returns(minute_bars, minutes=1), [0.01, 99 / 101 - 1], rtol=1e-12)
    assert resample_returns(equity.iloc[:1]).size == 0 and resample_returns(equity.iloc[:0]).size == 0
    with pytest.raises(ValueError, match="minutes"):
        resample_returns(equity, minutes=0)
