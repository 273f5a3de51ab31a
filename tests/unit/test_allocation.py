"""Portfolio allocation: each rule on hand-computed numbers, and the caps as properties of any input."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.strategy.allocation import (
    Allocation,
    AllocationInput,
    AllocationLimits,
    MarketRules,
    allocate,
    correlated_groups,
    correlation_matrix,
    round_price,
)
from tradeflow.timeframes import HOUR_MS, MINUTE_MS

# Large enough that neither the gross cap nor the risk budget interferes with a rule under test.
LOOSE = AllocationLimits(risk_budget=10.0)
EQUITY = 100_000.0


def signal(
    symbol: str,
    direction: int = 1,
    confidence: float = 1.0,
    volatility: float = 0.8,
    regime: str = "TREND",
    price: float = 1.0,
    rules: MarketRules | None = None,
) -> AllocationInput:
    return AllocationInput(symbol, direction, confidence, volatility, regime, price, rules or MarketRules())


def correlations(symbols: Sequence[str], pairs: dict[tuple[str, str], float]) -> pd.DataFrame:
    matrix = pd.DataFrame(np.eye(len(symbols)), index=list(symbols), columns=list(symbols))
    for (first, second), value in pairs.items():
        matrix.loc[first, second] = matrix.loc[second, first] = value
    return matrix


def weight_of(allocation: Allocation, symbol: str) -> float:
    return allocation.weights[symbol].weight


# --- One rule at a time --------------------------------------------------------------------------


def test_volatility_targeting_sizes_to_target_over_volatility():
    allocation = allocate([signal("BTC", volatility=0.8)], None, EQUITY, LOOSE)
    target = allocation.weights["BTC"]
    assert target.weight == pytest.approx(0.25)  # 0.20 / 0.80
    assert target.quantity == pytest.approx(25_000.0) and target.notional == pytest.approx(25_000.0)
    assert target.reasons == ("volatility target (long): 0.20 / 0.80 x confidence 1.00 = 25%",)


def test_confidence_scales_the_weight_and_direction_signs_it():
    allocation = allocate(
        [
            signal("BTC", confidence=0.5, volatility=0.8),
            signal("ETH", direction=-1, confidence=0.7, volatility=0.65),
        ],
        None,
        EQUITY,
        LOOSE,
    )
    assert weight_of(allocation, "BTC") == pytest.approx(0.125)  # 0.20 / 0.80 x 0.5
    assert weight_of(allocation, "ETH") == pytest.approx(-0.2 / 0.65 * 0.7)  # -21.54%
    assert allocation.weights["ETH"].quantity == pytest.approx(-0.2 / 0.65 * 0.7 * EQUITY)
    assert allocation.weights["ETH"].reasons[0] == (
        "volatility target (short): 0.20 / 0.65 x confidence 0.70 = -21.5%"
    )


def test_a_symbol_is_capped_at_40_percent():
    allocation = allocate([signal("BTC", volatility=0.25)], None, EQUITY, LOOSE)  # 0.20 / 0.25 = 80%
    assert weight_of(allocation, "BTC") == pytest.approx(0.40)
    assert allocation.weights["BTC"].reasons[-1] == "per-symbol cap 40%: 80% -> 40%"


def test_the_volatile_regime_halves_the_size():
    allocation = allocate(
        [signal("BTC", volatility=0.8, regime="VOLATILE"), signal("ETH", volatility=0.8, regime="RANGE")],
        None,
        EQUITY,
        LOOSE,
    )
    assert weight_of(allocation, "BTC") == pytest.approx(0.125)  # 25% halved
    assert weight_of(allocation, "ETH") == pytest.approx(0.25)
    assert allocation.weights["BTC"].reasons[-1] == "VOLATILE regime: half size -> 12.5%"


def test_a_correlated_group_of_three_is_scaled_to_50_percent_together():
    symbols = ["BTC", "ETH", "SOL", "XRP"]
    # BTC-SOL is under the threshold, but both exceed it with ETH: one group of three.
    matrix = correlations(
        symbols, {("BTC", "ETH"): 0.9, ("ETH", "SOL"): 0.8, ("BTC", "SOL"): 0.6, ("BTC", "XRP"): 0.2}
    )
    # Each: 0.20 / 0.50 x 0.75 = 30%; the group holds 90%, scaled x 0.5 / 0.9 to 16.67% each.
    inputs = [signal(symbol, confidence=0.75, volatility=0.5) for symbol in symbols]
    allocation = allocate(inputs, matrix, EQUITY, LOOSE)
    assert allocation.groups == (("BTC", "ETH", "SOL"),)
    for symbol in ("BTC", "ETH", "SOL"):
        assert weight_of(allocation, symbol) == pytest.approx(0.5 / 3)
        assert allocation.weights[symbol].reasons[-1] == (
            "correlated group BTC+ETH+SOL at 90% over 50%: scaled x0.556 -> 16.7%"
        )
    assert weight_of(allocation, "XRP") == pytest.approx(0.30)
    assert allocation.gross_weight == pytest.approx(0.8)


def test_a_group_already_within_its_cap_is_left_alone():
    matrix = correlations(["BTC", "ETH"], {("BTC", "ETH"): 0.95})
    inputs = [signal("BTC", confidence=0.5, volatility=0.5), signal("ETH", confidence=0.5, volatility=0.5)]
    allocation = allocate(inputs, matrix, EQUITY, LOOSE)  # 20% + 20% = 40% <= 50%
    assert allocation.groups == (("BTC", "ETH"),)
    assert weight_of(allocation, "BTC") == pytest.approx(0.2) and len(allocation.weights["BTC"].reasons) == 1


def test_the_gross_weight_is_capped_at_one():
    inputs = [signal(symbol, volatility=0.5) for symbol in ("A", "B", "C", "D")]  # 40% each = 160%
    allocation = allocate(inputs, correlations("ABCD", {}), EQUITY, LOOSE)
    assert [weight_of(allocation, symbol) for symbol in "ABCD"] == pytest.approx([0.25] * 4)
    assert allocation.weights["A"].reasons[-1] == "gross weight 160% over 100%: scaled x0.625 -> 25%"


def test_the_risk_budget_scales_every_weight():
    # Two uncorrelated 40% positions at 50% volatility: sqrt(2 x 0.2^2) = 28.28% > 25%.
    matrix = correlations(["BTC", "ETH"], {("BTC", "ETH"): 0.0})
    inputs = [signal("BTC", volatility=0.5), signal("ETH", direction=-1, volatility=0.5)]
    allocation = allocate(inputs, matrix, EQUITY)
    factor = 0.25 / (0.2 * math.sqrt(2))  # 0.8839
    assert weight_of(allocation, "BTC") == pytest.approx(0.4 * factor)
    assert weight_of(allocation, "ETH") == pytest.approx(-0.4 * factor)
    assert allocation.portfolio_volatility == pytest.approx(0.25)
    assert allocation.weights["BTC"].reasons[-1] == (
        "portfolio volatility 28.3% over budget 25%: scaled x0.884 -> 35.4%"
    )


def test_unknown_correlations_count_as_one_for_the_risk_budget():
    # No matrix: perfectly correlated, 0.2 + 0.2 = 40% volatility, scaled x0.625 to 25%.
    inputs = [signal("BTC", volatility=0.5), signal("ETH", volatility=0.5)]
    allocation = allocate(inputs, None, EQUITY)
    assert allocation.groups == ()  # no matrix, no groups
    assert [weight_of(allocation, "BTC"), weight_of(allocation, "ETH")] == pytest.approx([0.25, 0.25])
    # A NaN correlation is the same: 1.0 for the risk budget, but no group link.
    matrix = correlations(["BTC", "ETH"], {("BTC", "ETH"): math.nan})
    same = allocate(inputs, matrix, EQUITY)
    assert same.groups == () and weight_of(same, "BTC") == pytest.approx(0.25)


def test_lot_rounding_is_toward_zero_for_longs_and_shorts():
    rules = MarketRules(quantity_step=0.001)
    inputs = [
        signal("BTC", volatility=0.8, price=30_000.0, rules=rules),  # 25% of 10,000 = 0.083333 BTC
        signal("ETH", direction=-1, volatility=0.8, price=30_000.0, rules=rules),
    ]
    allocation = allocate(inputs, correlations(["BTC", "ETH"], {}), 10_000.0, LOOSE)
    assert allocation.weights["BTC"].quantity == 0.083 and allocation.weights["ETH"].quantity == -0.083
    assert weight_of(allocation, "BTC") == pytest.approx(0.249)  # 0.083 x 30,000 / 10,000
    assert weight_of(allocation, "ETH") == pytest.approx(-0.249)
    assert allocation.weights["BTC"].notional == pytest.approx(2_490.0)
    assert allocation.weights["BTC"].reasons[-1] == (
        "rounded toward zero to lot 0.001: quantity 0.0833333 -> 0.083, weight 25% -> 24.9%"
    )


def test_an_exact_number_of_lots_is_not_rounded_down_by_float_noise():
    # 30% of 1,000 at price 1,000 is 0.3, which float division makes 2.9999999999999996 lots of 0.1.
    inputs = [
        signal("ETH", confidence=0.6, volatility=0.4, price=1_000.0, rules=MarketRules(quantity_step=0.1))
    ]
    allocation = allocate(inputs, None, 1_000.0, LOOSE)
    assert allocation.weights["ETH"].quantity == 0.3 and weight_of(allocation, "ETH") == pytest.approx(0.3)
    assert abs(weight_of(allocation, "ETH")) <= 0.3


def test_orders_under_the_venue_minimums_are_not_traded():
    inputs = [
        signal("BTC", volatility=0.8, price=50.0, rules=MarketRules(min_notional=50.0)),  # 25% of 100 = 25
        signal("ETH", volatility=0.8, price=50.0, rules=MarketRules(min_quantity=1.0)),  # 0.5 < 1
        signal("SOL", volatility=0.8, price=50.0, rules=MarketRules(quantity_step=1.0)),  # 0.5 -> 0 lots
        signal("XRP", volatility=0.8, price=5.0, rules=MarketRules(min_notional=5.0, min_quantity=5.0)),
    ]
    allocation = allocate(inputs, correlations(["BTC", "ETH", "SOL", "XRP"], {}), 100.0, LOOSE)
    for symbol in ("BTC", "ETH", "SOL"):
        target = allocation.weights[symbol]
        assert (target.weight, target.quantity, target.notional) == (0.0, 0.0, 0.0)
    assert allocation.weights["BTC"].reasons[-1] == "notional 25 below min notional 50: not traded"
    assert allocation.weights["ETH"].reasons[-1] == "quantity 0.5 below min quantity 1: not traded"
    assert (
        allocation.weights["SOL"].reasons[-1] == "quantity 0.5 rounded toward zero to lot 1 is 0: not traded"
    )
    xrp = allocation.weights["XRP"]  # exactly at both minimums (5 units, notional 25): traded
    assert xrp.quantity == pytest.approx(5.0) and xrp.notional == pytest.approx(25.0)


def test_flat_zero_confidence_and_unusable_inputs_get_weight_zero_with_a_reason():
    inputs = [
        signal("FLAT", direction=0),
        signal("UNSURE", confidence=0.0),
        signal("NANVOL", volatility=math.nan),
        signal("ZEROVOL", volatility=0.0),
        signal("NANPRICE", price=math.nan),
        signal("NEGPRICE", price=-3.0),
    ]
    allocation = allocate(inputs, None, EQUITY, LOOSE)
    reasons = {symbol: target.reasons for symbol, target in allocation.weights.items()}
    assert all(target.weight == 0 and target.quantity == 0 for target in allocation.weights.values())
    assert reasons["FLAT"] == ("flat: no signal",)
    assert reasons["UNSURE"] == ("confidence 0: no position",)
    assert reasons["NANVOL"] == ("volatility nan unusable: cannot size, weight 0",)
    assert reasons["ZEROVOL"] == ("volatility 0.0 unusable: cannot size, weight 0",)
    assert reasons["NANPRICE"] == ("price nan unusable: cannot size, weight 0",)
    assert reasons["NEGPRICE"] == ("price -3.0 unusable: cannot size, weight 0",)
    assert allocation.gross_weight == 0 and allocation.portfolio_volatility == 0


def test_a_dropped_hedge_leg_makes_the_budget_be_checked_again_after_rounding():
    # Two longs with correlation -0.99 hedge each other: 0.02 x sqrt(2) = 2.8% volatility before
    # rounding. ETH is under its venue's minimum, which leaves BTC alone at 40% x 50% = 20% > 10%.
    matrix = correlations(["BTC", "ETH"], {("BTC", "ETH"): -0.99})
    inputs = [
        signal("BTC", volatility=0.5),
        signal("ETH", volatility=0.5, rules=MarketRules(min_notional=1e9)),
    ]
    allocation = allocate(inputs, matrix, EQUITY, AllocationLimits(risk_budget=0.10))
    assert weight_of(allocation, "BTC") == pytest.approx(0.2)  # scaled x0.5 and rounded again
    assert weight_of(allocation, "ETH") == 0.0
    assert allocation.portfolio_volatility == pytest.approx(0.10)
    assert allocation.weights["BTC"].reasons[-1] == (
        "portfolio volatility after rounding 20% over budget 10%: scaled x0.5 -> 20% and rounded again"
    )


def test_six_symbols_through_every_step():
    symbols = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA"]
    pairs = {("BTC", "ETH"): 0.9, ("ETH", "SOL"): 0.8, ("BTC", "SOL"): 0.6}
    pairs |= {(other, "XRP"): 0.1 for other in ("BTC", "ETH", "SOL")}
    inputs = [
        signal("BTC", 1, 1.0, 0.4, "TREND", 50_000.0, MarketRules(quantity_step=0.001, min_notional=5.0)),
        signal("ETH", 1, 0.8, 0.5, "TREND", 2_000.0, MarketRules(quantity_step=0.01)),
        signal("SOL", -1, 0.6, 0.8, "VOLATILE", 100.0),
        signal("XRP", -1, 0.9, 0.6, "RANGE", 0.5, MarketRules(quantity_step=1.0)),
        signal("DOGE", 0, 0.5, 0.9, "TREND", 0.1),
        signal("ADA", 1, 0.7, math.nan, "TREND", 0.4),
    ]
    allocation = allocate(inputs, correlations(symbols, pairs), EQUITY, AllocationLimits(risk_budget=0.20))

    # 1-3. BTC 0.2/0.4 = 50% capped to 40%; ETH 0.2/0.5 x 0.8 = 32%; SOL -0.2/0.8 x 0.6 = -15%,
    #      halved to -7.5%; XRP -0.2/0.6 x 0.9 = -30%; DOGE flat; ADA unusable volatility.
    # 4.   Group BTC+ETH+SOL (via ETH) holds 40 + 32 + 7.5 = 79.5% > 50%: x 0.5/0.795 = 0.62893
    #      -> BTC 25.157%, ETH 20.126%, SOL -4.717%. Gross 50 + 30 = 80% <= 100%.
    # 5-6. Exposures w x vol: 0.100629, 0.100629, -0.037736, -0.18; with the correlations above
    #      the portfolio volatility is 23.619% > 20%: x 0.20/0.23619 = 0.846787
    #      -> BTC 21.3029%, ETH 17.0423%, SOL -3.99428%, XRP -25.4036%.
    # 7.   BTC 0.426058 -> 0.426 (21.3%); ETH 8.52115 -> 8.52 (17.04%); SOL any quantity;
    #      XRP 50807.2 -> 50807 (-25.4035%).
    group, risk = 0.5 / 0.795, 0.20 / 0.2361867938
    assert allocation.groups == (("BTC", "ETH", "SOL"),)
    assert weight_of(allocation, "BTC") == pytest.approx(0.213)
    assert allocation.weights["BTC"].quantity == pytest.approx(0.426)
    assert weight_of(allocation, "ETH") == pytest.approx(0.1704)
    assert allocation.weights["ETH"].quantity == pytest.approx(8.52)
    assert weight_of(allocation, "SOL") == pytest.approx(-0.075 * group * risk)
    assert weight_of(allocation, "SOL") == pytest.approx(-0.0399428, rel=1e-5)
    assert weight_of(allocation, "XRP") == pytest.approx(-0.254035)
    assert allocation.weights["XRP"].quantity == -50_807.0
    assert weight_of(allocation, "DOGE") == 0 and weight_of(allocation, "ADA") == 0
    assert allocation.gross_weight == pytest.approx(0.213 + 0.1704 + 0.0399428 + 0.254035, rel=1e-6)
    assert allocation.portfolio_volatility <= 0.20
    assert allocation.weights["BTC"].reasons == (
        "volatility target (long): 0.20 / 0.40 x confidence 1.00 = 50%",
        "per-symbol cap 40%: 50% -> 40%",
        "correlated group BTC+ETH+SOL at 79.5% over 50%: scaled x0.629 -> 25.2%",
        "portfolio volatility 23.6% over budget 20%: scaled x0.847 -> 21.3%",
        "rounded toward zero to lot 0.001: quantity 0.426057 -> 0.426, weight 21.3028% -> 21.3%",
    )
    assert allocation.weights["SOL"].reasons[1] == "VOLATILE regime: half size -> -7.5%"

    frame = allocation.to_frame()
    assert list(frame.columns) == ["symbol", "weight", "quantity", "notional", "reasons"]
    assert list(frame["symbol"]) == symbols
    assert frame.loc[0, "reasons"] == "; ".join(allocation.weights["BTC"].reasons)


# --- Validation and helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_volatility", 0.0),
        ("max_symbol_weight", 1.5),
        ("correlation_threshold", -0.2),
        ("correlated_group_weight", 0.0),
        ("risk_budget", math.nan),
        ("max_gross_weight", 2.0),
        ("volatile_regime_factor", 1.5),
    ],
)
def test_invalid_limits_are_refused_naming_the_field(field: str, value: float):
    with pytest.raises(ValueError, match=field):
        AllocationLimits(**{field: value})


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="direction"):
        signal("BTC", direction=2)
    with pytest.raises(ValueError, match="confidence"):
        signal("BTC", confidence=1.2)
    with pytest.raises(ValueError, match="quantity_step"):
        MarketRules(quantity_step=-1.0)
    with pytest.raises(ValueError, match="repeated: BTC"):
        allocate([signal("BTC"), signal("BTC")], None, EQUITY)
    with pytest.raises(ValueError, match="equity"):
        allocate([signal("BTC")], None, 0.0)


def test_no_inputs_give_an_empty_allocation():
    allocation = allocate([], None, EQUITY)
    assert allocation.weights == {} and allocation.gross_weight == 0 and allocation.portfolio_volatility == 0
    assert list(allocation.to_frame().columns) == ["symbol", "weight", "quantity", "notional", "reasons"]


def test_correlated_groups_are_connected_components():
    symbols = ["A", "B", "C", "D", "E", "F"]
    matrix = correlations(
        symbols[:5], {("A", "C"): 0.8, ("C", "E"): 0.75, ("B", "D"): 0.9, ("A", "B"): math.nan}
    )
    # F is missing from the matrix; A-E is linked only through C; equal to the threshold is no link.
    matrix.loc["A", "D"] = matrix.loc["D", "A"] = 0.7
    assert correlated_groups(matrix, symbols, 0.7) == (("A", "C", "E"), ("B", "D"))
    assert correlated_groups(matrix, symbols, 0.85) == (("B", "D"),)


def test_round_price_goes_to_the_nearest_tick():
    assert round_price(101.234, MarketRules(price_step=0.01)) == 101.23
    assert round_price(101.236, MarketRules(price_step=0.01)) == 101.24
    assert round_price(0.30000000000000004, MarketRules(price_step=0.1)) == 0.3
    assert round_price(27_123.0, MarketRules(price_step=5.0)) == 27_125.0
    assert round_price(101.234, MarketRules()) == 101.234


# --- correlation_matrix --------------------------------------------------------------------------


def close_frame(hours: int, seed: int = 0) -> pd.DataFrame:
    """Return 15-minute closes over ``hours``: A a random walk, B = 3 A, C = 1 / A."""
    generator = np.random.default_rng(seed)
    timestamps = np.arange(hours * 4) * 15 * MINUTE_MS
    first = 100 * np.exp(np.cumsum(generator.normal(0, 0.01, timestamps.size)))
    return pd.DataFrame({"A": first, "B": 3 * first, "C": 1 / first}, index=timestamps)


def test_perfectly_correlated_and_anticorrelated_series():
    closes = close_frame(48)
    result = correlation_matrix(closes, end=int(closes.index[-1]), window_days=2)
    assert list(result.index) == ["A", "B", "C"] and list(result.columns) == ["A", "B", "C"]
    assert result.loc["A", "B"] == pytest.approx(1.0)
    assert result.loc["A", "C"] == pytest.approx(-1.0)
    assert result.loc["B", "C"] == pytest.approx(-1.0)


def test_only_the_close_at_the_end_of_each_bucket_counts():
    closes = close_frame(48)
    # D matches A at each hour's last 15-minute close and is noise in between.
    noisy = closes["A"].to_numpy() * np.exp(np.random.default_rng(1).normal(0, 0.05, len(closes)))
    last_of_hour = (closes.index.to_numpy() // HOUR_MS) != (
        (closes.index.to_numpy() + 15 * MINUTE_MS) // HOUR_MS
    )
    closes["D"] = np.where(last_of_hour, closes["A"], noisy)
    result = correlation_matrix(closes, end=int(closes.index[-1]), window_days=2)
    assert result.loc["A", "D"] == pytest.approx(1.0)


def test_rows_after_end_are_ignored():
    closes = close_frame(72)
    end = int(closes.index[47 * 4])  # hour 47
    before = correlation_matrix(closes, end=end, window_days=2)
    changed = closes.copy()
    later = changed.index > end
    changed.loc[later, "B"] = np.random.default_rng(7).uniform(1, 1000, later.sum())
    changed.loc[later, "C"] = math.nan
    after = correlation_matrix(changed, end=end, window_days=2)
    pd.testing.assert_frame_equal(before, after)
    # The window matters too: a row just after end would have changed the answer.
    assert not correlation_matrix(changed, end=end + 15 * MINUTE_MS, window_days=2).equals(before)


def test_too_few_points_give_nan():
    closes = close_frame(48)
    # A 10-hour window holds 10 hourly closes, 9 returns: one short of the minimum.
    few = correlation_matrix(closes, end=int(closes.index[-1]), window_days=10 / 24)
    assert few.isna().all().all()
    enough = correlation_matrix(closes, end=int(closes.index[-1]), window_days=11 / 24)
    assert enough.loc["A", "B"] == pytest.approx(1.0)
    # Missing closes are pairwise-complete: B's gaps do not remove A-C points.
    gappy = closes.copy()
    gappy.iloc[: len(gappy) - 36, gappy.columns.get_loc("B")] = math.nan  # 9 hours left: 8 returns
    result = correlation_matrix(gappy, end=int(gappy.index[-1]), window_days=2)
    assert math.isnan(result.loc["A", "B"]) and result.loc["A", "C"] == pytest.approx(-1.0)


# --- Properties over any input -------------------------------------------------------------------

REGIMES = ["TREND", "RANGE", "VOLATILE", "CALM"]
STEPS = [0.0, 1e-8, 0.001, 0.01, 0.1, 0.5, 1.0, 10.0]
MINIMUMS = [0.0, 1e-5, 0.01, 1.0, 5.0, 100.0]
NOTIONALS = [0.0, 1.0, 5.0, 10.0, 100.0, 10_000.0]


def recomputed_groups(matrix: np.ndarray, threshold: float) -> list[list[int]]:
    """Union-find over "correlation > threshold", independent of the module's search."""
    parent = list(range(len(matrix)))

    def root(node: int) -> int:
        while parent[node] != node:
            node = parent[node]
        return node

    for first in range(len(matrix)):
        for second in range(first + 1, len(matrix)):
            if matrix[first, second] > threshold:  # NaN compares False: not correlated
                parent[root(first)] = root(second)
    members: dict[int, list[int]] = {}
    for node in range(len(matrix)):
        members.setdefault(root(node), []).append(node)
    return [group for group in members.values() if len(group) > 1]


def recomputed_volatility(weights: np.ndarray, volatilities: np.ndarray, matrix: np.ndarray | None) -> float:
    """sqrt(w' Σ w) with NaN or missing correlations as 1.0, on the matrix as given (no repair)."""
    filled = np.ones((len(weights), len(weights))) if matrix is None else np.nan_to_num(matrix, nan=1.0)
    np.fill_diagonal(filled, 1.0)
    exposures = weights * np.where(weights != 0, volatilities, 0.0)
    return math.sqrt(max(float(exposures @ filled @ exposures), 0.0))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[AllocationInput], np.ndarray | None, float, AllocationLimits]:
    count = draw(st.integers(5, 12))
    inputs = [
        AllocationInput(
            symbol=f"S{index}/USDT",
            direction=draw(st.sampled_from([-1, 0, 1])),
            confidence=draw(st.floats(0, 1)),
            volatility=draw(st.floats(0.01, 5)),
            regime=draw(st.sampled_from(REGIMES)),
            price=10 ** draw(st.floats(-6, 6)),
            rules=MarketRules(
                min_notional=draw(st.sampled_from(NOTIONALS)),
                min_quantity=draw(st.sampled_from(MINIMUMS)),
                quantity_step=draw(st.sampled_from(STEPS)),
            ),
        )
        for index in range(count)
    ]
    matrix: np.ndarray | None = None
    if draw(st.integers(0, 5)) > 0:  # now and then no matrix at all
        values = st.one_of(st.floats(-1, 1), st.just(math.nan), st.sampled_from([-1.0, 0.0, 0.69, 0.71, 1.0]))
        matrix = np.eye(count)
        for first in range(count):
            for second in range(first + 1, count):
                matrix[first, second] = matrix[second, first] = draw(values)
    equity = draw(st.floats(100, 1e9))
    limits = AllocationLimits(
        target_volatility=draw(st.floats(0.01, 2)),
        max_symbol_weight=draw(st.floats(0.01, 1)),
        correlation_threshold=draw(st.floats(0.05, 1)),
        correlated_group_weight=draw(st.floats(0.01, 1)),
        risk_budget=draw(st.floats(0.01, 2)),
        max_gross_weight=draw(st.floats(0.01, 1)),
        volatile_regime_factor=draw(st.floats(0, 1)),
    )
    return inputs, matrix, equity, limits


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_every_cap_holds_for_any_input(scenario):
    inputs, matrix, equity, limits = scenario
    symbols = [item.symbol for item in inputs]
    frame = None if matrix is None else pd.DataFrame(matrix, index=symbols, columns=symbols)
    allocation = allocate(inputs, frame, equity, limits)

    assert list(allocation.weights) == symbols
    weights = np.array([allocation.weights[symbol].weight for symbol in symbols])
    assert np.all(np.isfinite(weights))
    assert np.all(np.abs(weights) <= limits.max_symbol_weight + 1e-12)
    if matrix is not None:
        for group in recomputed_groups(matrix, limits.correlation_threshold):
            assert np.abs(weights[group]).sum() <= limits.correlated_group_weight + 1e-12
        assert sorted(allocation.groups) == sorted(
            tuple(symbols[index] for index in group)
            for group in recomputed_groups(matrix, limits.correlation_threshold)
        )
    else:
        assert allocation.groups == ()
    assert np.abs(weights).sum() <= limits.max_gross_weight + 1e-12
    assert allocation.gross_weight == pytest.approx(np.abs(weights).sum())
    volatilities = np.array([item.volatility for item in inputs])
    assert recomputed_volatility(weights, volatilities, matrix) <= limits.risk_budget + 1e-9
    assert allocation.portfolio_volatility <= limits.risk_budget + 1e-9

    for item, weight in zip(inputs, weights, strict=True):
        target = allocation.weights[item.symbol]
        assert np.sign(weight) in (item.direction, 0)
        assert np.sign(target.quantity) == np.sign(weight)
        step = item.rules.quantity_step
        if step > 0:
            lots = target.quantity / step
            assert abs(lots - round(lots)) <= 1e-9 * max(1.0, abs(lots))
        if weight != 0:
            assert target.notional >= item.rules.min_notional
            assert abs(target.quantity) >= item.rules.min_quantity
            assert target.notional == pytest.approx(abs(target.quantity) * item.price)
            assert abs(weight) == pytest.approx(target.notional / equity, rel=1e-6)
            assert target.reasons  # every nonzero weight says how it was set
        else:
            assert target.quantity == 0 and target.reasons


def test_the_bisection_fallback_also_ends_within_the_budget(monkeypatch: pytest.MonkeyPatch):
    # Without direct rescales, step 8 bisects on the scale: just under the budget, never over.
    monkeypatch.setattr("tradeflow.strategy.allocation._RESCALE_ATTEMPTS", 0)
    matrix = correlations(["BTC", "ETH"], {("BTC", "ETH"): -0.99})
    inputs = [
        signal("BTC", volatility=0.5),
        signal("ETH", volatility=0.5, rules=MarketRules(min_notional=1e9)),
    ]
    allocation = allocate(inputs, matrix, EQUITY, AllocationLimits(risk_budget=0.10))
    assert weight_of(allocation, "BTC") == pytest.approx(0.2, rel=1e-9)
    assert allocation.portfolio_volatility <= 0.10
