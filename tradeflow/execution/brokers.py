"""Brokers: one interface for paper trading, real venues (through ccxt) and dry runs.

The streaming flow talks to a :class:`Broker` only. Every broker is async (the flow is one
asyncio loop) and speaks in three small value types: an :class:`OrderRequest` goes in, an
:class:`OrderReport` (the order's state, in the ledger's state names) and :class:`FillReport`
values come out.

Implementations:

- :class:`PaperBroker` (``name="paper"``): fills against the flow's own local order books
  (:class:`~tradeflow.execution.book.LocalOrderBook`) after a simulated latency, with partial
  fills, resting limit orders, maker/taker fees and in-memory balances.
- :class:`~tradeflow.execution.ccxt_broker.CcxtBroker` (``name="ccxt"``): real orders through a
  ccxt exchange (the local venues in tests), idempotent by deterministic client order ids. It
  lives in its own module so that ccxt stays inside its adapter.
- :class:`StagingBroker` (``name="staging"``): dry runs; records every request and sends nothing.

Contracts shared by all brokers:

- **Idempotency.** ``client_order_id`` is the order's identity (use :func:`client_order_id`, a
  deterministic id per decision). Submitting an id the broker already knows never places a second
  order: it reports the existing one.
- **Statuses** are the ledger's (:mod:`tradeflow.ledger.store`): ``submitted`` (sent, nothing
  known yet), ``new``, ``partially_filled``, ``filled``, ``cancelled`` (also for an expired IOC or
  market remainder and an FOK that could not fill: ``filled_quantity`` tells what did fill),
  ``rejected`` (definitively not placed; ``reason`` says why), ``unknown`` (the outcome could not
  be established; reconcile later) and, from the staging broker only, ``staged``.
- **Queries.** :meth:`Broker.query` returns None when the venue never received the order.
  :meth:`Broker.cancel` of an order the venue does not know reports ``cancelled`` with a reason
  (nothing can fill it); of an order that already finished, its final report.
- **Fills** carry the venue's trade id (unique per venue), so recording them twice is harmless.
  ``open_orders`` reports carry no fills; use ``fills_since`` (or the submit/cancel reports).
- Fees are in the quote asset for the paper and staging brokers; for the ccxt broker they are
  whatever the venue charged (``fee_asset``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from tradeflow.execution.book import LocalOrderBook

__all__ = [
    "BROKER_STATUSES",
    "OPEN_STATUSES",
    "Broker",
    "BrokerError",
    "FillReport",
    "OrderReport",
    "OrderRequest",
    "PaperBroker",
    "StagingBroker",
    "client_order_id",
]

BROKER_STATUSES = (
    "staged",
    "submitted",
    "new",
    "partially_filled",
    "filled",
    "cancelled",
    "rejected",
    "unknown",
)
"""Statuses an :class:`OrderReport` may carry (the ledger's order states)."""

OPEN_STATUSES = frozenset({"submitted", "new", "partially_filled"})
"""Statuses of orders that may still fill."""

TERMINAL_STATUSES = frozenset({"filled", "cancelled", "rejected"})

TIMES_IN_FORCE = ("GTC", "IOC", "FOK")
CLIENT_ORDER_ID = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")
"""Binance's rule for client order ids (other venues accept at least these)."""

_EPSILON = 1e-12
_MAX_TAKEN_LEVELS = 256


class BrokerError(Exception):
    """The broker cannot work at all (bad credentials, an unknown symbol): not an order outcome."""


def client_order_id(session: str, symbol: str, sequence: int) -> str:
    """Return the deterministic client order id of a decision: same inputs, same id.

    ``"tf"`` plus 30 hex digits of SHA-256 over the inputs: 32 characters, valid for Binance
    (``^[a-zA-Z0-9-_]{1,36}$``) and unique enough (120 bits) across sessions.

    Args:
        session: The trading session (e.g. the flow run or strategy id); keeps sessions apart.
        symbol: The order's symbol.
        sequence: The decision's sequence number within the session.
    """
    digest = hashlib.sha256(f"{session}\x1f{symbol}\x1f{sequence}".encode()).hexdigest()
    return "tf" + digest[:30]


@dataclass(frozen=True)
class OrderRequest:
    """An order to place.

    Attributes:
        client_order_id: The order's identity (see :func:`client_order_id`).
        symbol: Unified symbol, e.g. ``"BTC/USDT"``.
        side: ``"buy"`` or ``"sell"``.
        quantity: Base quantity, positive.
        price: Limit price; None for a market order.
        time_in_force: ``"GTC"``, ``"IOC"`` or ``"FOK"`` (limit orders only).

    Raises:
        ValueError: A field is malformed.
    """

    client_order_id: str
    symbol: str
    side: str
    quantity: float
    price: float | None = None
    time_in_force: str = "GTC"

    def __post_init__(self) -> None:
        if not CLIENT_ORDER_ID.match(self.client_order_id):
            raise ValueError(
                f"client_order_id must match {CLIENT_ORDER_ID.pattern}, got {self.client_order_id!r}"
            )
        if self.side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {self.side!r}")
        if not self.quantity > 0:
            raise ValueError(f"quantity must be positive, got {self.quantity}")
        if self.price is not None and not self.price > 0:
            raise ValueError(f"price must be positive or None, got {self.price}")
        if self.time_in_force not in TIMES_IN_FORCE:
            raise ValueError(f"time_in_force must be one of {TIMES_IN_FORCE}, got {self.time_in_force!r}")

    @property
    def is_market(self) -> bool:
        """Return whether this is a market order."""
        return self.price is None


@dataclass(frozen=True)
class FillReport:
    """One fill (trade) of an order.

    Attributes:
        venue_trade_id: The venue's trade id (unique per venue and symbol).
        client_order_id: The order's client id.
        symbol: Unified symbol.
        side: ``"buy"`` or ``"sell"``.
        price: Fill price.
        quantity: Base quantity.
        fee: Commission charged.
        fee_asset: The asset the fee was charged in.
        time_ms: Fill time (UTC ms).
        liquidity: ``"maker"`` or ``"taker"``.
    """

    venue_trade_id: str
    client_order_id: str
    symbol: str
    side: str
    price: float
    quantity: float
    fee: float
    fee_asset: str
    time_ms: int
    liquidity: str


@dataclass(frozen=True)
class OrderReport:
    """What a broker knows about an order.

    Attributes:
        client_order_id: The order's client id.
        symbol: Unified symbol.
        venue_order_id: The venue's id; None when the venue never took the order.
        status: One of :data:`BROKER_STATUSES`.
        filled_quantity: Base quantity filled so far.
        average_price: Volume-weighted fill price, None before any fill.
        fills: Fills known from this call (may be a subset; see the module docstring).
        reason: Why an order was rejected, cancelled by the broker, or is unknown.
        side: ``buy`` or ``sell`` when known (reconciliation adopts unknown orders with it).
        quantity: The order's base quantity when known.
    """

    client_order_id: str
    symbol: str
    venue_order_id: str | None
    status: str
    filled_quantity: float
    average_price: float | None
    fills: tuple[FillReport, ...] = ()
    reason: str = ""
    side: str | None = None
    quantity: float | None = None

    @property
    def is_open(self) -> bool:
        """Return whether the order may still fill."""
        return self.status in OPEN_STATUSES

    @property
    def is_terminal(self) -> bool:
        """Return whether the order is finished (filled, cancelled or rejected)."""
        return self.status in TERMINAL_STATUSES


class Broker(Protocol):
    """Places, cancels and looks up orders at one venue (or pretends to)."""

    name: str
    """``"paper"``, ``"ccxt"`` or ``"staging"``."""

    async def submit(self, request: OrderRequest) -> OrderReport:
        """Place an order (idempotent per client order id) and report what became of it."""
        ...

    async def cancel(self, client_order_id: str, symbol: str) -> OrderReport:
        """Cancel an order and report its final state."""
        ...

    async def query(self, client_order_id: str, symbol: str) -> OrderReport | None:
        """Report an order's state; None when the venue never received it."""
        ...

    async def open_orders(self, symbols: Sequence[str]) -> list[OrderReport]:
        """Report the open orders of these symbols (without fills)."""
        ...

    async def fills_since(self, symbols: Sequence[str], since_ms: int) -> list[FillReport]:
        """Return the fills of these symbols at or after ``since_ms``, oldest first."""
        ...

    async def balances(self) -> dict[str, tuple[float, float]]:
        """Return asset -> (free, locked)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _quote_of(symbol: str) -> str:
    return symbol.split("/")[1].split(":")[0] if "/" in symbol else ""


def _base_of(symbol: str) -> str:
    return symbol.split("/")[0]


# -- staging ------------------------------------------------------------------------------------


class StagingBroker:
    """Dry runs: every order is recorded and reported ``staged``; nothing is sent, nothing fills.

    The contract, so a dry run goes through the same flow code as a live one:

    - ``submit`` records the request and reports status ``staged`` (the ledger's initial state,
      so the ledger keeps the order staged), no venue id, no fills. Submitting a known id
      reports the recorded order again.
    - ``query`` reports a recorded order (None for an unknown id); ``open_orders`` the recorded
      orders not cancelled; ``cancel`` marks a recorded order ``cancelled``.
    - ``fills_since`` is always empty; ``balances`` are the given ones, unchanged.

    Args:
        balances: What :meth:`balances` reports (asset -> free); default none.
    """

    name = "staging"

    def __init__(self, balances: Mapping[str, float] | None = None) -> None:
        self._balances = {asset: (float(amount), 0.0) for asset, amount in (balances or {}).items()}
        self._orders: dict[str, OrderReport] = {}
        self.requests: list[OrderRequest] = []
        """Every request submitted, in order (including repeats)."""

    async def submit(self, request: OrderRequest) -> OrderReport:
        """Record the request; report it ``staged``."""
        self.requests.append(request)
        known = self._orders.get(request.client_order_id)
        if known is not None:
            return known
        report = OrderReport(
            request.client_order_id, request.symbol, None, "staged", 0.0, None, (), "staging"
        )
        self._orders[request.client_order_id] = report
        return report

    async def cancel(self, client_order_id: str, symbol: str) -> OrderReport:
        """Mark a recorded order cancelled."""
        known = self._orders.get(client_order_id)
        if known is None:
            return OrderReport(client_order_id, symbol, None, "cancelled", 0.0, None, (), "unknown order")
        cancelled = replace(known, status="cancelled")
        self._orders[client_order_id] = cancelled
        return cancelled

    async def query(self, client_order_id: str, symbol: str) -> OrderReport | None:
        """Report a recorded order, None for an unknown id."""
        return self._orders.get(client_order_id)

    async def open_orders(self, symbols: Sequence[str]) -> list[OrderReport]:
        """Report the recorded, uncancelled orders of these symbols."""
        wanted = set(symbols)
        return [r for r in self._orders.values() if r.symbol in wanted and r.status == "staged"]

    async def fills_since(self, symbols: Sequence[str], since_ms: int) -> list[FillReport]:
        """Return no fills: nothing is ever sent."""
        return []

    async def balances(self) -> dict[str, tuple[float, float]]:
        """Return the balances given at construction."""
        return dict(self._balances)

    async def close(self) -> None:
        """Do nothing."""


# -- paper --------------------------------------------------------------------------------------


@dataclass
class _PaperOrder:
    request: OrderRequest
    venue_order_id: str
    status: str = "submitted"
    filled: float = 0.0
    cost: float = 0.0
    fills: list[FillReport] = field(default_factory=list)
    locked: float = 0.0
    reason: str = ""

    @property
    def remaining(self) -> float:
        return self.request.quantity - self.filled

    def report(self) -> OrderReport:
        request = self.request
        average = self.cost / self.filled if self.filled > 0 else None
        return OrderReport(
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            venue_order_id=self.venue_order_id,
            status=self.status,
            filled_quantity=self.filled,
            average_price=average,
            fills=tuple(self.fills),
            reason=self.reason,
            side=request.side,
            quantity=request.quantity,
        )


class PaperBroker:
    """Paper trading against the flow's local order books.

    An order reaches the (pretend) venue ``latency_ms`` after :meth:`submit` is called and is
    matched against the book *as it is then*:

    - A marketable order walks the opposite side best-first, taking at most each level's
      quantity, at the level's price, paying ``taker_fee`` (partial fills across levels). A limit
      order takes only levels at or better than its price.
    - What a ``GTC`` limit order does not take rests; :meth:`on_book` (call it after each update
      of a symbol's book) fills it at its own price, paying ``maker_fee``, when the book moves
      through it, up to the quantity beyond its price. An ``IOC`` remainder and a market order's
      unfilled rest are cancelled; an ``FOK`` order that cannot fill in full is cancelled whole.
    - Liquidity the broker took stays taken until the book changes that level (so two orders
      cannot both take the same displayed quantity).
    - Funds: fees are charged in the quote asset. A limit buy locks ``price * quantity * (1 +
      max fee)`` of the quote asset, a limit sell its quantity; a market buy needs the cost of its
      fills (fees included) free, a market sell its quantity. Short of funds: ``rejected``.
    - A book that is not in sync refuses market, IOC and FOK orders (``rejected``); GTC orders
      rest until it is back.

    Args:
        books: Unified symbol -> the flow's local book of it (read only).
        latency_ms: Delay between submit and matching (and of a cancel).
        maker_fee: Commission rate of resting fills.
        taker_fee: Commission rate of marketable fills.
        balances: Initial free balance per asset (default 100,000 USDT).
        depth: How many levels of the opposite side a taker order may walk.
        clock: Time in UTC ms (fill times).
        sleep: Awaits the latency (``asyncio.sleep``; tests may substitute one that changes the
            book meanwhile).
    """

    name = "paper"

    def __init__(
        self,
        books: Mapping[str, LocalOrderBook],
        *,
        latency_ms: float = 0.0,
        maker_fee: float = 0.001,
        taker_fee: float = 0.001,
        balances: Mapping[str, float] | None = None,
        depth: int = 1000,
        clock: Callable[[], int] = _now_ms,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, got {latency_ms}")
        self._books = books
        self.latency_ms = latency_ms
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self._lock_rate = 1.0 + max(maker_fee, taker_fee)
        self._depth = depth
        self._clock = clock
        self._sleep = sleep
        start = {"USDT": 100_000.0} if balances is None else balances
        self._totals: dict[str, float] = {asset: float(amount) for asset, amount in start.items()}
        self._orders: dict[str, _PaperOrder] = {}
        self._resting: dict[str, dict[str, _PaperOrder]] = {}
        self._fills: list[FillReport] = []
        self._taken: dict[str, dict[tuple[bool, float], tuple[float, float]]] = {}
        self._next_order = 1
        self._next_trade = 1

    # -- the Broker interface ----------------------------------------------------------------

    async def submit(self, request: OrderRequest) -> OrderReport:
        """Place a paper order: match it after the latency; report its state then."""
        known = self._orders.get(request.client_order_id)
        if known is not None:
            return known.report()
        if request.symbol not in self._books:
            raise BrokerError(f"the paper broker has no book for {request.symbol}")
        order = _PaperOrder(request, f"paper-{self._next_order}")
        self._next_order += 1
        self._orders[request.client_order_id] = order
        if self.latency_ms > 0:
            await self._sleep(self.latency_ms / 1000.0)
        if order.status == "submitted":  # not cancelled while in flight
            self._arrive(order)
        return order.report()

    async def cancel(self, client_order_id: str, symbol: str) -> OrderReport:
        """Cancel a resting (or in-flight) order and release its funds."""
        if self.latency_ms > 0:
            await self._sleep(self.latency_ms / 1000.0)
        order = self._orders.get(client_order_id)
        if order is None:
            return OrderReport(client_order_id, symbol, None, "cancelled", 0.0, None, (), "unknown order")
        if order.status in OPEN_STATUSES:
            self._resting.get(order.request.symbol, {}).pop(client_order_id, None)
            order.status = "cancelled"
            order.locked = 0.0
        return order.report()

    async def query(self, client_order_id: str, symbol: str) -> OrderReport | None:
        """Report an order, None for an id the broker never received."""
        order = self._orders.get(client_order_id)
        return None if order is None else order.report()

    async def open_orders(self, symbols: Sequence[str]) -> list[OrderReport]:
        """Report the resting orders of these symbols (without fills)."""
        return [
            replace(order.report(), fills=())
            for symbol in symbols
            for order in self._resting.get(symbol, {}).values()
        ]

    async def fills_since(self, symbols: Sequence[str], since_ms: int) -> list[FillReport]:
        """Return the fills of these symbols at or after ``since_ms``, oldest first."""
        wanted = set(symbols)
        return [f for f in self._fills if f.symbol in wanted and f.time_ms >= since_ms]

    async def balances(self) -> dict[str, tuple[float, float]]:
        """Return asset -> (free, locked)."""
        locked = self._locked()
        return {
            asset: (max(total - locked.get(asset, 0.0), 0.0), locked.get(asset, 0.0))
            for asset, total in sorted(self._totals.items())
        }

    async def close(self) -> None:
        """Do nothing (no connections)."""

    # -- book updates ------------------------------------------------------------------------

    def on_book(self, symbol: str) -> list[FillReport]:
        """Fill resting orders of ``symbol`` that its book has moved through; return the fills."""
        resting = self._resting.get(symbol)
        if not resting:
            return []
        book = self._books[symbol]
        if not book.in_sync:
            return []
        fills: list[FillReport] = []
        for order in list(resting.values()):
            price = order.request.price
            assert price is not None
            buying = order.request.side == "buy"
            for level_price, available, shown in self._levels(symbol, book, taking_asks=buying):
                if order.remaining <= _EPSILON:
                    break
                if (level_price > price) if buying else (level_price < price):
                    break
                quantity = min(available, order.remaining)
                self._take(symbol, buying, level_price, shown, quantity)
                fills.append(self._fill(order, price, quantity, maker=True))
            self._after_fills(order)
        return fills

    # -- internals ---------------------------------------------------------------------------

    def _arrive(self, order: _PaperOrder) -> None:
        request = order.request
        symbol = request.symbol
        book = self._books[symbol]
        buying = request.side == "buy"
        resting_allowed = not request.is_market and request.time_in_force == "GTC"
        if not book.in_sync and not resting_allowed:
            self._reject(order, "book not in sync")
            return
        plan: list[tuple[float, float, float]] = []
        if book.in_sync:
            remaining = request.quantity
            for level_price, available, shown in self._levels(symbol, book, taking_asks=buying):
                if remaining <= _EPSILON:
                    break
                if request.price is not None and (
                    (level_price > request.price) if buying else (level_price < request.price)
                ):
                    break
                quantity = min(available, remaining)
                plan.append((level_price, quantity, shown))
                remaining -= quantity
        planned = sum(q for _, q, _ in plan)
        if request.time_in_force == "FOK" and not request.is_market and planned < request.quantity - _EPSILON:
            order.status = "cancelled"
            order.reason = "FOK order could not fill in full"
            return
        if not self._affordable(request, plan):
            self._reject(order, "insufficient balance")
            return
        for level_price, quantity, shown in plan:
            self._take(symbol, buying, level_price, shown, quantity)
            self._fill(order, level_price, quantity, maker=False)
        if order.remaining <= _EPSILON:
            order.status = "filled"
        elif resting_allowed:
            self._resting.setdefault(symbol, {})[request.client_order_id] = order
            self._after_fills(order)
        else:
            order.status = "cancelled"
            order.reason = "no liquidity for the rest" if request.is_market else "IOC remainder cancelled"

    def _affordable(self, request: OrderRequest, plan: list[tuple[float, float, float]]) -> bool:
        locked = self._locked()
        if request.side == "sell":
            asset = _base_of(request.symbol)
            need = request.quantity
        else:
            asset = _quote_of(request.symbol)
            if request.price is not None:
                need = request.price * request.quantity * self._lock_rate
            else:
                need = sum(p * q for p, q, _ in plan) * (1.0 + self.taker_fee)
        return need <= self._totals.get(asset, 0.0) - locked.get(asset, 0.0) + 1e-9

    def _reject(self, order: _PaperOrder, reason: str) -> None:
        order.status = "rejected"
        order.reason = reason

    def _levels(
        self, symbol: str, book: LocalOrderBook, *, taking_asks: bool
    ) -> list[tuple[float, float, float]]:
        """Return (price, available, shown) of the opposite side best-first.

        ``available`` is the shown quantity less what the broker already took from the level.
        """
        bids, asks = book.top(self._depth)
        taken = self._taken.setdefault(symbol, {})
        out: list[tuple[float, float, float]] = []
        for price, shown in asks if taking_asks else bids:
            key = (taking_asks, price)
            available = shown
            seen = taken.get(key)
            if seen is not None:
                if seen[0] != shown:  # the venue changed the level: our taking is history
                    del taken[key]
                else:
                    available -= seen[1]
            if available > _EPSILON:
                out.append((price, available, shown))
        if len(taken) > _MAX_TAKEN_LEVELS:  # forget levels the book no longer shows
            showing = {(True, p) for p, _ in asks} | {(False, p) for p, _ in bids}
            for key in [k for k in taken if k not in showing]:
                del taken[key]
        return out

    def _take(self, symbol: str, from_asks: bool, price: float, shown: float, quantity: float) -> None:
        taken = self._taken.setdefault(symbol, {})
        previous = taken.get((from_asks, price))
        already = previous[1] if previous is not None and previous[0] == shown else 0.0
        taken[(from_asks, price)] = (shown, already + quantity)

    def _fill(self, order: _PaperOrder, price: float, quantity: float, *, maker: bool) -> FillReport:
        request = order.request
        base, quote = _base_of(request.symbol), _quote_of(request.symbol)
        notional = price * quantity
        fee = notional * (self.maker_fee if maker else self.taker_fee)
        if request.side == "buy":
            self._totals[quote] = self._totals.get(quote, 0.0) - notional - fee
            self._totals[base] = self._totals.get(base, 0.0) + quantity
        else:
            self._totals[base] = self._totals.get(base, 0.0) - quantity
            self._totals[quote] = self._totals.get(quote, 0.0) + notional - fee
        fill = FillReport(
            venue_trade_id=f"paper-{self._next_trade}",
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            price=price,
            quantity=quantity,
            fee=fee,
            fee_asset=quote,
            time_ms=self._clock(),
            liquidity="maker" if maker else "taker",
        )
        self._next_trade += 1
        order.filled += quantity
        order.cost += notional
        order.fills.append(fill)
        self._fills.append(fill)
        return fill

    def _after_fills(self, order: _PaperOrder) -> None:
        """Update a resting order's status and lock after fills."""
        request = order.request
        if order.remaining <= _EPSILON:
            order.status = "filled"
            order.locked = 0.0
            self._resting.get(request.symbol, {}).pop(request.client_order_id, None)
            return
        order.status = "partially_filled" if order.filled > 0 else "new"
        assert request.price is not None
        order.locked = (
            request.price * order.remaining * self._lock_rate if request.side == "buy" else order.remaining
        )

    def _locked(self) -> dict[str, float]:
        locked: dict[str, float] = {}
        for symbol, resting in self._resting.items():
            for order in resting.values():
                asset = _quote_of(symbol) if order.request.side == "buy" else _base_of(symbol)
                locked[asset] = locked.get(asset, 0.0) + order.locked
        return locked
