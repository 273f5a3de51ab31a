"""Pre-trade risk: the per-order checks that run right before an order is sent.

:class:`PreTradeRisk` answers, for one :class:`OrderIntent` and what is known right now (a
:class:`MarketView` of the local order book and a :class:`PortfolioView`), whether the order may
go out, as a :class:`RiskDecision`. It complements the portfolio protections of
:mod:`tradeflow.strategy.protections` (whose trading states ``ACTIVE`` / ``REDUCING`` /
``HALTED`` it reuses): those decide *whether to trade*, these decide *whether this order is sane*.

The checks run in this order and the first failure decides:

0. ``reduce_only_mismatch``: an order flagged ``reduce_only`` that does not shrink the existing
   position (wrong side, no position, or larger than the position) is a malformed intent and is
   refused before anything else.
1. ``kill_switch``: with the kill switch engaged every order is refused except ``reduce_only``
   ones.
2. ``trading_state``: REDUCING lets through only orders that shrink an existing position (flagged
   ``reduce_only`` or not); HALTED only orders flagged ``reduce_only``.
3. ``book_not_in_sync``: the local book is out of sync, one-sided, or crossed.
4. ``price_collar``: the limit price (or, for a market order, the side's best price) is more than
   ``price_collar`` away from the book's mid.
5. ``max_order_notional``: the order's notional is over the per-order limit (every order).
6. ``max_position_notional``: the symbol's position notional after the order is over the limit.
7. ``max_gross_exposure``: the sum of ``|position value|`` over equity after the order is over
   the limit.
8. ``daily_loss_limit``: equity is ``daily_loss_limit`` or more below the UTC day's start.
9. ``order_rate``: ``max_orders_per_minute`` orders were already sent in the last 60 s.

Checks 6 to 8 refuse only risk-increasing orders (those that increase ``|position|``): refusing
an order that shrinks an over-limit position would only make things worse. Notional uses the
order's limit price, or for a market order the side's best price (ask for a buy, bid for a sell);
other symbols' positions are valued at the portfolio's marks.

Everything is pure Python on plain floats (no pandas, no numpy, no I/O): the whole decision is on
the hot path of the streaming execution flow, a few microseconds per call.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass

from tradeflow.strategy.protections import ACTIVE, HALTED, REDUCING

__all__ = [
    "CHECK_NAMES",
    "MarketView",
    "OrderIntent",
    "PortfolioView",
    "PreTradeRisk",
    "RiskDecision",
    "RiskLimits",
]

RATE_WINDOW_MS = 60_000
MAX_KEPT_REJECTIONS = 1_000
TRADING_STATES = (ACTIVE, REDUCING, HALTED)
#: Every check name a decision can carry, in the order the checks run (``ok`` for an accepted order).
CHECK_NAMES = (
    "ok",
    "reduce_only_mismatch",
    "kill_switch",
    "trading_state",
    "book_not_in_sync",
    "price_collar",
    "max_order_notional",
    "max_position_notional",
    "max_gross_exposure",
    "daily_loss_limit",
    "order_rate",
)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits of the pre-trade checks (notional in quote currency, fractions as fractions).

    Attributes:
        max_order_notional: Largest notional of one order.
        max_position_notional: Largest notional of one symbol's position after the order.
        max_gross_exposure: Largest ``sum |position value| / equity`` after the order.
        price_collar: Largest distance of the order's price from the book's mid, as a fraction
            of the mid.
        max_orders_per_minute: Orders sent within a sliding 60 s window, all symbols together.
        daily_loss_limit: Equity this fraction below the UTC day's start refuses risk-increasing
            orders (0 switches it off).
    """

    max_order_notional: float = 25_000.0
    max_position_notional: float = 50_000.0
    max_gross_exposure: float = 1.0
    price_collar: float = 0.01
    max_orders_per_minute: int = 30
    daily_loss_limit: float = 0.05

    def __post_init__(self) -> None:
        """Validate the limits.

        Raises:
            ValueError: if a limit is negative, not finite, or the rate limit is below 1.
        """
        for name in ("max_order_notional", "max_position_notional", "max_gross_exposure", "price_collar"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not (math.isfinite(self.daily_loss_limit) and 0 <= self.daily_loss_limit < 1):
            raise ValueError(f"daily_loss_limit must be in [0, 1), got {self.daily_loss_limit!r}")
        if self.max_orders_per_minute < 1:
            raise ValueError(f"max_orders_per_minute must be at least 1, got {self.max_orders_per_minute!r}")


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order about to be sent.

    Attributes:
        symbol: The market, e.g. ``"BTC/USDT"``.
        side: +1 to buy, -1 to sell.
        quantity: Base quantity, positive.
        price: Limit price, or ``None`` for a market order.
        reduce_only: The order may only shrink the existing position.
        client_order_id: The caller's id of the order, carried into the decision.
    """

    symbol: str
    side: int
    quantity: float
    price: float | None
    reduce_only: bool = False
    client_order_id: str = ""

    def __post_init__(self) -> None:
        """Validate the intent (once, at construction, so the checks need not).

        Raises:
            ValueError: if the side is not +1/-1, the quantity not positive and finite, or the
                price neither ``None`` nor positive and finite.
        """
        if self.side not in (1, -1):
            raise ValueError(f"side must be +1 (buy) or -1 (sell), got {self.side!r}")
        if not (math.isfinite(self.quantity) and self.quantity > 0):
            raise ValueError(f"quantity must be positive and finite, got {self.quantity!r}")
        if self.price is not None and not (math.isfinite(self.price) and self.price > 0):
            raise ValueError(f"price must be None (market) or positive and finite, got {self.price!r}")


@dataclass(frozen=True, slots=True)
class MarketView:
    """What the checks need to know about the symbol's market right now.

    Attributes:
        book_in_sync: The local order book is in sync with the exchange.
        best_bid: Best bid price, ``None`` when the bid side is empty.
        best_ask: Best ask price, ``None`` when the ask side is empty.
        time_ms: Now, in UTC milliseconds (the rate limit's clock).
    """

    book_in_sync: bool
    best_bid: float | None
    best_ask: float | None
    time_ms: int


@dataclass(frozen=True, slots=True)
class PortfolioView:
    """What the checks need to know about the portfolio right now.

    Attributes:
        equity: Current equity.
        day_start_equity: Equity at the start of the current UTC day.
        positions: Signed base quantity per symbol.
        marks: Mark price per symbol (values the positions of symbols other than the order's).
    """

    equity: float
    day_start_equity: float
    positions: Mapping[str, float]
    marks: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The answer of the pre-trade checks for one order.

    Attributes:
        accepted: The order may be sent.
        check: ``"ok"`` or the name of the failing check (one of :data:`CHECK_NAMES`).
        reason: Human-readable, with the numbers (empty when accepted).
        time_ms: When the decision was made (the market view's time).
        symbol: The order's symbol.
        client_order_id: The order's client id.
    """

    accepted: bool
    check: str
    reason: str
    time_ms: int = 0
    symbol: str = ""
    client_order_id: str = ""


class PreTradeRisk:
    """The per-order pre-trade checks, with their kill switch, trading state and rate window.

    Attributes:
        limits: The limits checked.
        kill_switch: Settable; while engaged everything is refused except ``reduce_only`` orders
            (which must really shrink the position).
        counts: Decisions made per check name (``"ok"`` counts accepted orders), for metrics.
    """

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self.kill_switch = False
        self.counts: Counter[str] = Counter()
        self._state = ACTIVE
        self._sent_times: deque[int] = deque()
        self._rejections: deque[RiskDecision] = deque(maxlen=MAX_KEPT_REJECTIONS)

    @property
    def state(self) -> str:
        """Return the trading state: ACTIVE, REDUCING or HALTED."""
        return self._state

    def set_state(self, state: str) -> None:
        """Set the trading state.

        ACTIVE lets every order through to the remaining checks; REDUCING only orders that shrink
        an existing position; HALTED only orders flagged ``reduce_only``.

        Args:
            state: One of ``ACTIVE``, ``REDUCING``, ``HALTED``.

        Raises:
            ValueError: if the state is not one of those.
        """
        if state not in TRADING_STATES:
            raise ValueError(f"unknown trading state {state!r}; expected one of {', '.join(TRADING_STATES)}")
        self._state = state

    @property
    def rejections(self) -> list[RiskDecision]:
        """Return the last 1,000 refusals, oldest first, each with its time."""
        return list(self._rejections)

    def record_sent(self, time_ms: int) -> None:
        """Count an order sent at ``time_ms`` towards the rate limit (call it only for sent orders)."""
        self._sent_times.append(time_ms)
        self._prune(time_ms)

    def sent_in_window(self, time_ms: int) -> int:
        """Return how many recorded orders fall in the 60 s window ending at ``time_ms``."""
        self._prune(time_ms)
        return len(self._sent_times)

    def check(self, intent: OrderIntent, market: MarketView, portfolio: PortfolioView) -> RiskDecision:
        """Decide whether ``intent`` may be sent now; the first failing check decides.

        Refusals are kept (see :attr:`rejections`) and every decision is counted (:attr:`counts`).
        Checking does not count towards the rate limit; call :meth:`record_sent` once the order
        has actually been sent.

        Args:
            intent: The order about to be sent.
            market: The symbol's book and the time now.
            portfolio: Equity, positions and marks now.

        Returns:
            The decision, ``check == "ok"`` when accepted.
        """
        failed = self._first_failure(intent, market, portfolio)
        if failed is None:
            self.counts["ok"] += 1
            return RiskDecision(True, "ok", "", market.time_ms, intent.symbol, intent.client_order_id)
        check, reason = failed
        decision = RiskDecision(False, check, reason, market.time_ms, intent.symbol, intent.client_order_id)
        self.counts[check] += 1
        self._rejections.append(decision)
        return decision

    def _first_failure(
        self, intent: OrderIntent, market: MarketView, portfolio: PortfolioView
    ) -> tuple[str, str] | None:
        limits = self.limits
        side, quantity, symbol = intent.side, intent.quantity, intent.symbol
        position = portfolio.positions.get(symbol, 0.0)
        after = position + side * quantity
        # Shrinks an existing position without crossing zero.
        reduces = position * side < 0 and quantity <= abs(position)
        if intent.reduce_only and not reduces:
            return "reduce_only_mismatch", (
                f"reduce_only {'buy' if side > 0 else 'sell'} of {quantity:,.8g} does not reduce "
                f"the {symbol} position {position:,.8g}"
            )
        if self.kill_switch and not intent.reduce_only:
            return "kill_switch", "kill switch engaged: only reduce_only orders pass"
        state = self._state
        if state == HALTED and not intent.reduce_only:
            return "trading_state", "trading HALTED: only reduce_only orders pass"
        if state == REDUCING and not reduces:
            return "trading_state", f"trading REDUCING: the order does not shrink the {symbol} position"

        bid, ask = market.best_bid, market.best_ask
        if not market.book_in_sync:
            return "book_not_in_sync", f"the {symbol} order book is not in sync"
        if bid is None or ask is None or bid <= 0 or ask < bid:
            return "book_not_in_sync", f"the {symbol} order book has no usable quote (bid {bid}, ask {ask})"

        price = intent.price
        if price is None:
            price = ask if side > 0 else bid
        mid = 0.5 * (bid + ask)
        distance = abs(price - mid) / mid
        if distance > limits.price_collar:
            return "price_collar", (
                f"price {price:,.2f} is {distance:.2%} from the mid {mid:,.2f}, "
                f"over the collar {limits.price_collar:.2%}"
            )

        notional = quantity * price
        if notional > limits.max_order_notional:
            return "max_order_notional", (
                f"order notional {notional:,.2f} over the limit {limits.max_order_notional:,.2f}"
            )

        if abs(after) > abs(position):  # risk-increasing
            position_notional = abs(after) * price
            if position_notional > limits.max_position_notional:
                return "max_position_notional", (
                    f"{symbol} position notional after the order {position_notional:,.2f} "
                    f"over the limit {limits.max_position_notional:,.2f}"
                )
            gross = position_notional
            marks = portfolio.marks
            for other, other_position in portfolio.positions.items():
                if other == symbol or other_position == 0:
                    continue
                mark = marks.get(other)
                if mark is None:
                    return "max_gross_exposure", f"no mark price for the {other} position to value it"
                gross += abs(other_position) * mark
            equity = portfolio.equity
            if equity <= 0:
                return "max_gross_exposure", f"gross exposure {gross:,.2f} against equity {equity:,.2f}"
            exposure = gross / equity
            if exposure > limits.max_gross_exposure:
                return "max_gross_exposure", (
                    f"gross exposure after the order {exposure:.4f} of equity "
                    f"({gross:,.2f} / {equity:,.2f}) over the limit {limits.max_gross_exposure:.4f}"
                )
            loss_limit = limits.daily_loss_limit
            day_start = portfolio.day_start_equity
            if loss_limit > 0 and day_start > 0 and equity <= day_start * (1 - loss_limit):
                return "daily_loss_limit", (
                    f"equity {equity:,.2f} is {1 - equity / day_start:.2%} below the day's start "
                    f"{day_start:,.2f}, at or over the limit {loss_limit:.2%}"
                )

        sent = self.sent_in_window(market.time_ms)
        if sent >= limits.max_orders_per_minute:
            return "order_rate", (
                f"{sent} orders sent in the last 60 s, at the limit {limits.max_orders_per_minute} per minute"
            )
        return None

    def _prune(self, time_ms: int) -> None:
        sent_times, horizon = self._sent_times, time_ms - RATE_WINDOW_MS
        while sent_times and sent_times[0] <= horizon:
            sent_times.popleft()
