"""Pre-trade risk checks: one test per check with hand-computed numbers, their order, the property."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.execution.risk import (
    CHECK_NAMES,
    MarketView,
    OrderIntent,
    PortfolioView,
    PreTradeRisk,
    RiskDecision,
    RiskLimits,
)
from tradeflow.strategy.protections import ACTIVE, HALTED, REDUCING

NOW = 1_750_000_000_000
LIMITS = RiskLimits()
# Mid 100.00; a market buy fills at 100.05, a market sell at 99.95.
MARKET = MarketView(book_in_sync=True, best_bid=99.95, best_ask=100.05, time_ms=NOW)
FLAT = PortfolioView(equity=100_000.0, day_start_equity=100_000.0, positions={}, marks={})


def buy(
    quantity: float, price: float | None = 100.0, reduce_only: bool = False, client_order_id: str = ""
) -> OrderIntent:
    return OrderIntent("BTC/USDT", +1, quantity, price, reduce_only, client_order_id)


def sell(
    quantity: float, price: float | None = 100.0, reduce_only: bool = False, client_order_id: str = ""
) -> OrderIntent:
    return OrderIntent("BTC/USDT", -1, quantity, price, reduce_only, client_order_id)


def holding(btc: float, **kwargs: float) -> PortfolioView:
    return replace(FLAT, positions={"BTC/USDT": btc}, marks={"BTC/USDT": 100.0}, **kwargs)


def refused(decision: RiskDecision, check: str, fragment: str) -> bool:
    assert not decision.accepted, decision
    assert decision.check == check, decision
    assert fragment in decision.reason, decision.reason
    return True


def test_a_plain_order_within_every_limit_is_accepted() -> None:
    decision = PreTradeRisk(LIMITS).check(buy(10, client_order_id="c-1"), MARKET, FLAT)
    assert decision == RiskDecision(True, "ok", "", NOW, "BTC/USDT", "c-1")


def test_kill_switch_refuses_new_orders() -> None:
    risk = PreTradeRisk(LIMITS)
    risk.kill_switch = True
    assert refused(risk.check(buy(1), MARKET, FLAT), "kill_switch", "kill switch engaged")
    assert refused(risk.check(sell(1), MARKET, holding(5)), "kill_switch", "only reduce_only")


def test_halted_refuses_everything_not_flagged_reduce_only() -> None:
    risk = PreTradeRisk(LIMITS)
    risk.set_state(HALTED)
    assert refused(risk.check(buy(1), MARKET, FLAT), "trading_state", "HALTED")
    # Even an order that would shrink the position must carry the reduce_only flag when HALTED.
    assert refused(risk.check(sell(1), MARKET, holding(5)), "trading_state", "HALTED")


def test_reducing_passes_only_orders_that_shrink_the_position() -> None:
    risk = PreTradeRisk(LIMITS)
    risk.set_state(REDUCING)
    assert refused(risk.check(buy(1), MARKET, holding(5)), "trading_state", "REDUCING")
    assert refused(risk.check(sell(6), MARKET, holding(5)), "trading_state", "REDUCING")  # would flip
    assert risk.check(sell(5), MARKET, holding(5)).accepted
    assert risk.check(buy(2), MARKET, holding(-5)).accepted


def test_set_state_validates_the_value() -> None:
    risk = PreTradeRisk(LIMITS)
    with pytest.raises(ValueError, match="unknown trading state 'PAUSED'"):
        risk.set_state("PAUSED")
    assert risk.state == ACTIVE


def test_book_not_in_sync_one_sided_or_crossed_is_refused() -> None:
    risk = PreTradeRisk(LIMITS)
    out_of_sync = replace(MARKET, book_in_sync=False)
    assert refused(risk.check(buy(1), out_of_sync, FLAT), "book_not_in_sync", "not in sync")
    no_asks = replace(MARKET, best_ask=None)
    assert refused(risk.check(buy(1), no_asks, FLAT), "book_not_in_sync", "bid 99.95, ask None")
    crossed = replace(MARKET, best_bid=100.10, best_ask=100.05)
    assert refused(risk.check(buy(1), crossed, FLAT), "book_not_in_sync", "no usable quote")


def test_price_collar_refuses_a_limit_price_too_far_from_the_mid() -> None:
    risk = PreTradeRisk(LIMITS)
    # |101.50 - 100.00| / 100.00 = 1.50% > 1.00%
    decision = risk.check(buy(1, 101.5), MARKET, FLAT)
    assert refused(
        decision, "price_collar", "price 101.50 is 1.50% from the mid 100.00, over the collar 1.00%"
    )
    assert refused(risk.check(sell(1, 98.9), MARKET, FLAT), "price_collar", "1.10% from the mid")
    assert risk.check(buy(1, 101.0), MARKET, FLAT).accepted  # exactly at the collar passes


def test_price_collar_uses_the_side_s_best_price_for_a_market_order() -> None:
    risk = PreTradeRisk(LIMITS)
    wide = replace(MARKET, best_bid=99.0, best_ask=101.2)  # mid 100.10; either side is 1.10% away
    assert refused(
        risk.check(buy(1, None), wide, FLAT), "price_collar", "price 101.20 is 1.10% from the mid 100.10"
    )
    assert refused(risk.check(sell(1, None), wide, FLAT), "price_collar", "price 99.00 is 1.10% from the mid")
    assert risk.check(buy(1, None), MARKET, FLAT).accepted


def test_max_order_notional() -> None:
    risk = PreTradeRisk(LIMITS)
    # 312 x 100.00 = 31,200.00
    decision = risk.check(buy(312), MARKET, FLAT)
    assert refused(decision, "max_order_notional", "order notional 31,200.00 over the limit 25,000.00")
    assert risk.check(buy(250), MARKET, FLAT).accepted  # 25,000.00: at the limit passes
    # A market buy is valued at the ask, a market sell at the bid: 250 x 100.05 = 25,012.50 is over,
    # 250 x 99.95 = 24,987.50 is not.
    assert refused(risk.check(buy(250, None), MARKET, FLAT), "max_order_notional", "25,012.50")
    assert risk.check(sell(250, None), MARKET, FLAT).accepted
    # The per-order limit holds for reducing orders too (a fat-finger limit): close in slices.
    assert refused(risk.check(sell(300), MARKET, holding(300)), "max_order_notional", "30,000.00")


def test_max_position_notional() -> None:
    risk = PreTradeRisk(LIMITS)
    # (300 + 240) x 100.00 = 54,000.00 after the order
    decision = risk.check(buy(240), MARKET, holding(300))
    assert refused(
        decision,
        "max_position_notional",
        "BTC/USDT position notional after the order 54,000.00 over the limit 50,000.00",
    )
    assert refused(risk.check(sell(240), MARKET, holding(-300)), "max_position_notional", "54,000.00")
    assert risk.check(buy(200), MARKET, holding(300)).accepted  # 50,000.00: at the limit passes
    # An order shrinking an over-limit position is not refused by it.
    assert risk.check(sell(200), MARKET, holding(700)).accepted


def test_max_gross_exposure() -> None:
    risk = PreTradeRisk(LIMITS)
    # ETH 10 x 2,000 = 20,000 plus BTC 210 x 100 = 21,000: 41,000 / 40,000 = 1.025
    portfolio = PortfolioView(40_000.0, 40_000.0, {"ETH/USDT": 10.0, "BTC/USDT": 0.0}, {"ETH/USDT": 2_000.0})
    decision = risk.check(buy(210), MARKET, portfolio)
    assert refused(
        decision,
        "max_gross_exposure",
        "gross exposure after the order 1.0250 of equity (41,000.00 / 40,000.00)",
    )
    assert "over the limit 1.0000" in decision.reason
    assert risk.check(buy(200), MARKET, portfolio).accepted  # 40,000 / 40,000 = 1.0 passes
    # Only risk-increasing orders: reducing ETH while over the limit passes.
    over = replace(portfolio, positions={"ETH/USDT": 25.0}, marks={"ETH/USDT": 2_000.0, "BTC/USDT": 100.0})
    eth_sell = OrderIntent("ETH/USDT", -1, 5.0, 2_000.0)
    eth_market = replace(MARKET, best_bid=1_999.0, best_ask=2_001.0)
    assert risk.check(eth_sell, eth_market, over).accepted
    # A held symbol without a mark cannot be valued: refused, conservatively.
    unmarked = replace(portfolio, marks={})
    assert refused(
        risk.check(buy(1), MARKET, unmarked), "max_gross_exposure", "no mark price for the ETH/USDT"
    )


def test_daily_loss_limit_refuses_only_risk_increasing_orders() -> None:
    risk = PreTradeRisk(LIMITS)
    down = holding(100, equity=94_000.0)  # 6.00% below the day's start 100,000
    decision = risk.check(buy(1), MARKET, down)
    assert refused(
        decision,
        "daily_loss_limit",
        "equity 94,000.00 is 6.00% below the day's start 100,000.00, at or over the limit 5.00%",
    )
    assert risk.check(sell(50), MARKET, down).accepted  # reduces the long
    assert risk.check(buy(1), MARKET, holding(100, equity=95_100.0)).accepted  # 4.90% down
    off = PreTradeRisk(RiskLimits(daily_loss_limit=0))
    assert off.check(buy(1), MARKET, down).accepted


def test_order_rate_sliding_window() -> None:
    risk = PreTradeRisk(LIMITS)
    for second in range(30):
        market = replace(MARKET, time_ms=NOW + second * 1_000)
        assert risk.check(buy(1), market, FLAT).accepted
        risk.record_sent(market.time_ms)
    # The 31st within the minute is refused...
    late = replace(MARKET, time_ms=NOW + 59_999)
    assert refused(
        risk.check(buy(1), late, FLAT), "order_rate", "30 orders sent in the last 60 s, at the limit 30"
    )
    # ...reducing orders too (the exchange's limit does not care)...
    assert refused(risk.check(sell(1), late, holding(5)), "order_rate", "at the limit 30")
    # ...and one minute after the first was sent it has left the window.
    assert risk.check(buy(1), replace(MARKET, time_ms=NOW + 60_000), FLAT).accepted
    assert risk.sent_in_window(NOW + 60_000) == 29
    # Checks that are not followed by record_sent do not count.
    assert risk.sent_in_window(NOW + 88_999) == 1  # only the one sent at NOW + 29 s is left
    assert risk.sent_in_window(NOW + 89_000) == 0


@pytest.mark.parametrize(
    ("intent", "portfolio", "fragment"),
    [
        (sell(1, reduce_only=True), FLAT, "reduce_only sell of 1 does not reduce the BTC/USDT position 0"),
        (buy(1, reduce_only=True), holding(5), "reduce_only buy of 1 does not reduce"),
        (
            sell(6, reduce_only=True),
            holding(5),
            "reduce_only sell of 6 does not reduce the BTC/USDT position 5",
        ),
    ],
)
def test_reduce_only_that_does_not_reduce_is_refused(
    intent: OrderIntent, portfolio: PortfolioView, fragment: str
) -> None:
    for state in (ACTIVE, REDUCING, HALTED):
        for kill_switch in (False, True):
            risk = PreTradeRisk(LIMITS)
            risk.set_state(state)
            risk.kill_switch = kill_switch
            assert refused(risk.check(intent, MARKET, portfolio), "reduce_only_mismatch", fragment)


def test_reduce_only_orders_that_reduce_pass_reducing_halted_and_the_kill_switch() -> None:
    for state in (REDUCING, HALTED):
        for kill_switch in (False, True):
            risk = PreTradeRisk(LIMITS)
            risk.set_state(state)
            risk.kill_switch = kill_switch
            assert risk.check(sell(5, reduce_only=True), MARKET, holding(5)).accepted
            assert risk.check(buy(2, None, reduce_only=True), MARKET, holding(-5)).accepted
    # They still go through the remaining checks (a stale book refuses them too).
    risk = PreTradeRisk(LIMITS)
    risk.kill_switch = True
    stale = replace(MARKET, book_in_sync=False)
    assert refused(
        risk.check(sell(5, reduce_only=True), stale, holding(5)), "book_not_in_sync", "not in sync"
    )


def test_the_first_failing_check_decides() -> None:
    """Start from an order failing every check, then fix them one at a time, in order."""
    risk = PreTradeRisk(LIMITS)
    risk.kill_switch = True
    risk.set_state(HALTED)
    for second in range(30):
        risk.record_sent(NOW + second * 1_000)
    market = replace(MARKET, book_in_sync=False, time_ms=NOW + 30_000)
    # 260 x 103 = 26,780 > 25,000; BTC (480 + 260) x 103 = 76,220 > 50,000; gross with ETH 20,000
    # over equity 60,000; 40% below the day's start; 30 orders in the window.
    portfolio = PortfolioView(
        60_000.0, 100_000.0, {"BTC/USDT": 480.0, "ETH/USDT": 10.0}, {"BTC/USDT": 100.0, "ETH/USDT": 2_000.0}
    )
    intent = buy(260, 103.0)
    seen = [risk.check(intent, market, portfolio).check]
    risk.kill_switch = False
    seen.append(risk.check(intent, market, portfolio).check)
    risk.set_state(ACTIVE)
    seen.append(risk.check(intent, market, portfolio).check)
    market = replace(market, book_in_sync=True)
    seen.append(risk.check(intent, market, portfolio).check)
    intent = buy(260, 100.0)  # in the collar; 26,000 still over the order limit
    seen.append(risk.check(intent, market, portfolio).check)
    intent = buy(240, 100.0)  # 24,000; position (480 + 240) x 100 = 72,000 still over
    seen.append(risk.check(intent, market, portfolio).check)
    # BTC 44,000 + ETH 20,000 = 64,000 over equity 60,000
    portfolio = replace(portfolio, positions={"BTC/USDT": 200.0, "ETH/USDT": 10.0})
    seen.append(risk.check(intent, market, portfolio).check)
    portfolio = replace(portfolio, equity=90_000.0)  # 0.71 of equity; still 10% below the day's start
    seen.append(risk.check(intent, market, portfolio).check)
    portfolio = replace(portfolio, day_start_equity=92_000.0)  # 2.17% down; the rate window is still full
    seen.append(risk.check(intent, market, portfolio).check)
    market = replace(market, time_ms=NOW + 60_000)  # the first sent order left the window
    seen.append(risk.check(intent, market, portfolio).check)
    assert seen == [
        "kill_switch",
        "trading_state",
        "book_not_in_sync",
        "price_collar",
        "max_order_notional",
        "max_position_notional",
        "max_gross_exposure",
        "daily_loss_limit",
        "order_rate",
        "ok",
    ]
    assert tuple(seen[:-1]) == CHECK_NAMES[2:]  # the documented order


def test_rejections_are_bounded_and_counted() -> None:
    risk = PreTradeRisk(LIMITS)
    risk.kill_switch = True
    for index in range(1_005):
        risk.check(buy(1, client_order_id=f"c-{index}"), replace(MARKET, time_ms=NOW + index), FLAT)
    risk.kill_switch = False
    risk.check(buy(1), MARKET, FLAT)
    rejections = risk.rejections
    assert len(rejections) == 1_000
    assert (rejections[0].client_order_id, rejections[0].time_ms) == ("c-5", NOW + 5)
    assert (rejections[-1].client_order_id, rejections[-1].time_ms) == ("c-1004", NOW + 1_004)
    assert risk.counts == {"kill_switch": 1_005, "ok": 1}


def test_invalid_intents_and_limits_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="side must be"):
        OrderIntent("BTC/USDT", 0, 1.0, None)
    with pytest.raises(ValueError, match="quantity must be positive"):
        OrderIntent("BTC/USDT", 1, 0.0, None)
    with pytest.raises(ValueError, match="price must be None"):
        OrderIntent("BTC/USDT", 1, 1.0, float("nan"))
    with pytest.raises(ValueError, match="max_orders_per_minute"):
        RiskLimits(max_orders_per_minute=0)
    with pytest.raises(ValueError, match="price_collar"):
        RiskLimits(price_collar=-0.01)


SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[OrderIntent, MarketView, PortfolioView]:
    symbol = draw(st.sampled_from(SYMBOLS))
    mid = draw(st.floats(1.0, 5_000.0))
    half_spread = mid * draw(st.floats(0.0, 0.012))
    side = draw(st.sampled_from((1, -1)))
    notional_wanted = draw(st.floats(1.0, 40_000.0))
    offset = draw(st.none() | st.floats(-0.015, 0.015))
    price = None if offset is None else mid * (1 + offset)
    quantity = notional_wanted / mid
    marks = {other: draw(st.floats(1.0, 5_000.0)) for other in SYMBOLS}
    marks[symbol] = mid
    # Held notional per symbol, flat a good share of the time.
    positions = {
        other: draw(st.just(0.0) | st.floats(-60_000.0, 60_000.0)) / marks[other] for other in SYMBOLS
    }
    reduce_only = draw(st.sampled_from((False, False, False, True)))
    intent = OrderIntent(symbol, side, quantity, price, reduce_only=reduce_only)
    market = MarketView(draw(st.integers(0, 9)) > 0, mid - half_spread, mid + half_spread, NOW)
    equity = draw(st.floats(1_000.0, 300_000.0))
    day_start = equity * draw(st.floats(0.9, 1.1))
    return intent, market, PortfolioView(equity, day_start, positions, marks)


def increases_risk(intent: OrderIntent, portfolio: PortfolioView) -> bool:
    position = portfolio.positions.get(intent.symbol, 0.0)
    return abs(position + intent.side * intent.quantity) > abs(position)


@settings(max_examples=400, deadline=None)
@given(scenarios(), st.sampled_from((ACTIVE, REDUCING)))
def test_property_accepted_risk_increasing_orders_stay_within_the_limits(
    scenario: tuple[OrderIntent, MarketView, PortfolioView], state: str
) -> None:
    intent, market, portfolio = scenario
    risk = PreTradeRisk(LIMITS)
    risk.set_state(state)
    decision = risk.check(intent, market, portfolio)
    if not decision.accepted:
        assert decision.check in CHECK_NAMES and decision.reason
        return
    assert market.best_bid is not None and market.best_ask is not None
    price = (
        intent.price
        if intent.price is not None
        else (market.best_ask if intent.side > 0 else market.best_bid)
    )
    tolerance = 1 + 1e-9
    assert intent.quantity * price <= LIMITS.max_order_notional * tolerance
    if not increases_risk(intent, portfolio):
        return
    assert state == ACTIVE and not intent.reduce_only
    after = portfolio.positions.get(intent.symbol, 0.0) + intent.side * intent.quantity
    assert abs(after) * price <= LIMITS.max_position_notional * tolerance
    gross = abs(after) * price + sum(
        abs(quantity) * portfolio.marks[symbol]
        for symbol, quantity in portfolio.positions.items()
        if symbol != intent.symbol
    )
    assert gross <= LIMITS.max_gross_exposure * portfolio.equity * tolerance


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.booleans())
def test_property_halted_never_accepts_a_risk_increasing_order(
    scenario: tuple[OrderIntent, MarketView, PortfolioView], kill_switch: bool
) -> None:
    intent, market, portfolio = scenario
    risk = PreTradeRisk(LIMITS)
    risk.set_state(HALTED)
    risk.kill_switch = kill_switch
    decision = risk.check(intent, market, portfolio)
    if decision.accepted:
        assert intent.reduce_only and not increases_risk(intent, portfolio)


def test_check_micro_timing() -> None:
    """Print the per-call time of check() (information, not an assertion)."""
    risk = PreTradeRisk(LIMITS)
    portfolio = PortfolioView(
        100_000.0, 100_000.0, {"BTC/USDT": 10.0, "ETH/USDT": 3.0}, {"BTC/USDT": 100.0, "ETH/USDT": 2_000.0}
    )
    intent = buy(10)
    calls = 100_000
    started = time.perf_counter()
    for _ in range(calls):
        decision = risk.check(intent, MARKET, portfolio)
    elapsed = time.perf_counter() - started
    assert decision.accepted
    print(f"\nPreTradeRisk.check: {elapsed / calls * 1e6:.2f} us per call over {calls:,} calls")
