"""The account and matching engine of a simulated venue (pure: no I/O, no aiohttp).

One :class:`VenueAccount` per venue holds its single trading account: balances per asset, every
order the venue ever accepted, and every trade. It behaves like Binance spot for the order types
the pipeline uses:

- ``LIMIT`` with ``GTC`` / ``IOC`` / ``FOK``, ``LIMIT_MAKER`` (post-only), and ``MARKET`` with a
  base ``quantity`` or a quote amount (``quoteOrderQty``).
- Statuses ``NEW``, ``PARTIALLY_FILLED``, ``FILLED``, ``CANCELED``, ``EXPIRED`` (an IOC or market
  remainder, an FOK that could not fill in full). Orders that fail a check are not accepted:
  they raise :class:`AccountError` (Binance's error code and message) and are logged in
  :attr:`VenueAccount.rejections`, never in :attr:`VenueAccount.orders`.
- Filters from the symbol's exchange info (:class:`SymbolRules`): ``PRICE_FILTER``,
  ``LOT_SIZE`` / ``MARKET_LOT_SIZE`` and ``NOTIONAL`` failures answer -1013.
- A client order id the venue has accepted once is never accepted again, open or not: -2010
  "Duplicate order sent." (Binance itself only refuses ids of open orders; refusing every reuse
  is what makes a client's idempotency testable: an order sent twice cannot go unnoticed).

Matching runs against a book the engine does not own (:class:`BookView`, the venue's live
book): a marketable order walks the opposite side best-first and removes the liquidity it takes
(:meth:`BookView.take`), paying the taker fee; what a ``GTC`` limit order does not fill rests,
and :meth:`VenueAccount.on_tick` fills it, at its own price and paying the maker fee, when the
book moves through it (up to the liquidity beyond its price, which it then removes). Every fill
is reported to the book as a public trade (:meth:`BookView.publish_trade`).

Money. Commissions are charged in the quote asset: ``price * quantity * fee rate``. An account
keeps a total per asset; ``locked`` is derived from the open orders (a limit buy locks
``price * remaining * (1 + max(maker, taker fee))`` of the quote asset, a limit sell its
remaining base quantity) and ``free = total - locked``. So locking on placement and releasing on
cancel or expiry cannot drift, and a placement needs ``free`` to cover its lock. Market orders
execute at once: a market buy needs ``free`` quote for the cost of the fills (fees included), a
market sell ``free`` base for its quantity.

Quantities are whole lots (``LOT_SIZE.stepSize``) internally, so an order's executed quantity is
exactly the sum of its fills on the step grid.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

__all__ = [
    "OPEN_STATUSES",
    "ORDER_STATUSES",
    "AccountError",
    "BookView",
    "NewOrder",
    "Order",
    "Rejection",
    "SymbolRules",
    "Trade",
    "VenueAccount",
]

ORDER_STATUSES = ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED")
"""Binance's spot order statuses (``REJECTED`` is never stored: rejected orders are not accepted)."""

OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
"""Statuses of orders that rest on the book and lock funds."""

ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")
TIMES_IN_FORCE = ("GTC", "IOC", "FOK")
SIDES = ("BUY", "SELL")

CLIENT_ORDER_ID = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")
"""Binance's rule for ``newClientOrderId``."""

_EPSILON = 1e-9


class AccountError(Exception):
    """An order-entry error answered the way Binance answers it (HTTP 400 and a code)."""

    def __init__(self, code: int, msg: str) -> None:
        """Describe the error.

        Args:
            code: Binance error code, e.g. -2010.
            msg: Binance error message.
        """
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg


def _insufficient_balance() -> AccountError:
    return AccountError(-2010, "Account has insufficient balance for requested action.")


def _duplicate_order() -> AccountError:
    return AccountError(-2010, "Duplicate order sent.")


def _filter_failure(name: str) -> AccountError:
    return AccountError(-1013, f"Filter failure: {name}")


def _mandatory(name: str) -> AccountError:
    return AccountError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _not_required(name: str) -> AccountError:
    return AccountError(-1106, f"Parameter '{name}' sent when not required.")


def unknown_order() -> AccountError:
    """Return -2011 CANCEL_REJECTED "Unknown order sent." (cancel of an unknown or closed order)."""
    return AccountError(-2011, "Unknown order sent.")


def order_does_not_exist() -> AccountError:
    """Return -2013 NO_SUCH_ORDER "Order does not exist."."""
    return AccountError(-2013, "Order does not exist.")


def bad_symbol() -> AccountError:
    """Return -1121 BAD_SYMBOL."""
    return AccountError(-1121, "Invalid symbol.")


class BookView(Protocol):
    """What the engine needs of a venue's live book (:class:`tradeflow.simulator.live.LiveVenue`)."""

    def levels(self, symbol: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Return (bids best-first, asks best-first) as (price, quantity)."""
        ...

    def take(self, symbol: str, side: str, price: float, quantity: float) -> None:
        """Remove liquidity at a level of side ``"bid"`` or ``"ask"``."""
        ...

    def publish_trade(
        self, symbol: str, price: float, quantity: float, buyer_is_maker: bool, time_ms: int
    ) -> None:
        """Publish a public trade."""
        ...


class _Grid:
    """A tick or step grid; values are rebuilt as ``units * unit_int / 10**decimals`` (exact prints)."""

    def __init__(self, size: float) -> None:
        self._decimal = Decimal(repr(size)).normalize()
        exponent = self._decimal.as_tuple().exponent
        assert isinstance(exponent, int)
        self.size = size
        self.scale = 10.0 ** max(0, -exponent)
        self.unit_int = round(size * self.scale)

    def units(self, value: float) -> int:
        return round(value / self.size)

    def floor_units(self, value: float) -> int:
        return int(value / self.size + _EPSILON)

    def on_grid(self, value: float) -> bool:
        # Clients send decimal strings; a float's repr is the shortest string that parses back
        # to it, so the decimal remainder is exact.
        return Decimal(repr(value)) % self._decimal == 0

    def value(self, units: int) -> float:
        return units * self.unit_int / self.scale


def _filter(filters: Iterable[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    for item in filters:
        if item.get("filterType") == name:
            return item
    raise ValueError(f"symbol info has no {name} filter")


@dataclass(frozen=True)
class SymbolRules:
    """The trading rules of one symbol, as its exchange-info entry states them.

    Attributes:
        symbol: Exchange id, e.g. ``BTCUSDT``.
        base: Base asset, e.g. ``BTC``.
        quote: Quote asset, e.g. ``USDT``.
        tick_size: ``PRICE_FILTER.tickSize``.
        min_price: ``PRICE_FILTER.minPrice``.
        max_price: ``PRICE_FILTER.maxPrice``.
        step_size: ``LOT_SIZE.stepSize``.
        min_qty: ``LOT_SIZE.minQty``.
        max_qty: ``LOT_SIZE.maxQty``.
        market_max_qty: ``MARKET_LOT_SIZE.maxQty``.
        min_notional: ``NOTIONAL.minNotional`` (applied to market orders too).
    """

    symbol: str
    base: str
    quote: str
    tick_size: float
    min_price: float
    max_price: float
    step_size: float
    min_qty: float
    max_qty: float
    market_max_qty: float
    min_notional: float

    @classmethod
    def from_symbol_info(cls, info: Mapping[str, Any]) -> SymbolRules:
        """Read the rules from a ``GET /api/v3/exchangeInfo`` symbol entry.

        Raises:
            ValueError: A filter the engine needs is missing.
        """
        filters = info["filters"]
        price = _filter(filters, "PRICE_FILTER")
        lot = _filter(filters, "LOT_SIZE")
        market_lot = _filter(filters, "MARKET_LOT_SIZE")
        notional = _filter(filters, "NOTIONAL")
        return cls(
            symbol=str(info["symbol"]),
            base=str(info["baseAsset"]),
            quote=str(info["quoteAsset"]),
            tick_size=float(price["tickSize"]),
            min_price=float(price["minPrice"]),
            max_price=float(price["maxPrice"]),
            step_size=float(lot["stepSize"]),
            min_qty=float(lot["minQty"]),
            max_qty=float(lot["maxQty"]),
            market_max_qty=float(market_lot["maxQty"]),
            min_notional=float(notional["minNotional"]),
        )


@dataclass(frozen=True)
class NewOrder:
    """An order placement as ``POST /api/v3/order`` receives it (parsed, not yet checked).

    Attributes:
        symbol: Exchange id (``BTCUSDT``) or unified symbol.
        side: ``BUY`` or ``SELL``.
        type: ``LIMIT``, ``LIMIT_MAKER`` or ``MARKET``.
        quantity: Base quantity (None for a market order by quote amount).
        quote_order_qty: Quote amount of a market order, else None.
        price: Limit price; None for market orders.
        time_in_force: ``GTC``, ``IOC`` or ``FOK`` for ``LIMIT``; None otherwise.
        client_order_id: ``newClientOrderId``; None lets the venue make one up.
    """

    symbol: str
    side: str
    type: str
    quantity: float | None = None
    quote_order_qty: float | None = None
    price: float | None = None
    time_in_force: str | None = None
    client_order_id: str | None = None


@dataclass(frozen=True)
class Trade:
    """One fill of one of the account's orders.

    Attributes:
        trade_id: Venue-wide increasing id.
        order_id: The order's venue id.
        client_order_id: The order's client id.
        symbol: Exchange id.
        side: The order's side, ``BUY`` or ``SELL``.
        price: Fill price.
        quantity: Base quantity.
        quote_quantity: ``price * quantity`` (8 decimals).
        commission: Fee charged (8 decimals).
        commission_asset: The asset the fee was charged in (the quote asset).
        time_ms: Fill time.
        is_maker: Whether the order was resting (maker) when it filled.
    """

    trade_id: int
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    price: float
    quantity: float
    quote_quantity: float
    commission: float
    commission_asset: str
    time_ms: int
    is_maker: bool


@dataclass
class Order:
    """An order the venue accepted; mutated as it fills, is cancelled or expires.

    Attributes:
        order_id: Venue-wide increasing id.
        client_order_id: The client's id (or one the venue made up).
        symbol: Exchange id.
        side: ``BUY`` or ``SELL``.
        type: ``LIMIT``, ``LIMIT_MAKER`` or ``MARKET``.
        time_in_force: ``GTC``/``IOC``/``FOK``; ``GTC`` for ``LIMIT_MAKER``; None for market.
        price: Limit price; 0.0 for market orders (as Binance prints it).
        orig_qty: Ordered base quantity (for a market order by quote amount: what it bought or sold).
        orig_quote_order_qty: ``quoteOrderQty`` or 0.0.
        status: One of :data:`ORDER_STATUSES`.
        time_ms: Acceptance time.
        update_ms: Time of the last change.
        executed_qty: Filled base quantity.
        cumulative_quote_qty: Sum of ``price * quantity`` of the fills.
        trades: The fills, oldest first.
        locked: Amount of ``locked_asset`` the order holds while open.
        locked_asset: The asset it locks (quote for buys, base for sells).
    """

    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str | None
    price: float
    orig_qty: float
    orig_quote_order_qty: float
    status: str
    time_ms: int
    update_ms: int
    executed_qty: float = 0.0
    cumulative_quote_qty: float = 0.0
    trades: list[Trade] = field(default_factory=list)
    locked: float = 0.0
    locked_asset: str = ""
    orig_units: int = field(default=0, repr=False)
    executed_units: int = field(default=0, repr=False)

    @property
    def is_open(self) -> bool:
        """Return whether the order rests on the book."""
        return self.status in OPEN_STATUSES

    @property
    def remaining_units(self) -> int:
        """Return the unfilled quantity in lots."""
        return self.orig_units - self.executed_units


@dataclass(frozen=True)
class Rejection:
    """A placement the venue refused (it never became an order).

    Attributes:
        time_ms: When it was refused.
        symbol: As sent.
        client_order_id: As sent, or None.
        code: Binance error code.
        msg: Binance error message.
    """

    time_ms: int
    symbol: str
    client_order_id: str | None
    code: int
    msg: str


@dataclass
class _Market:
    rules: SymbolRules
    tick: _Grid
    step: _Grid
    open: dict[int, Order] = field(default_factory=dict)


class VenueAccount:
    """The venue's one trading account and its matching engine.

    Args:
        rules: The listed symbols' trading rules.
        book: The live book orders match against.
        balances: Initial total per asset (all free).
        maker_fee: Commission rate of resting fills.
        taker_fee: Commission rate of marketable fills.
        clock: Venue time in ms.
        first_order_id: Id of the first accepted order.
        first_trade_id: Id of the first fill.

    Calls may come from several threads (a lock serialises them); in the simulator every call
    runs on the server's event loop.
    """

    def __init__(
        self,
        rules: Iterable[SymbolRules],
        book: BookView,
        *,
        balances: Mapping[str, float],
        maker_fee: float,
        taker_fee: float,
        clock: Callable[[], int],
        first_order_id: int = 1,
        first_trade_id: int = 1,
    ) -> None:
        self._markets = {r.symbol: _Market(r, _Grid(r.tick_size), _Grid(r.step_size)) for r in rules}
        self._book = book
        self._totals: dict[str, float] = {asset: float(amount) for asset, amount in balances.items()}
        for market in self._markets.values():
            self._totals.setdefault(market.rules.base, 0.0)
            self._totals.setdefault(market.rules.quote, 0.0)
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self._lock_rate = 1.0 + max(maker_fee, taker_fee)
        self._clock = clock
        self._next_order_id = first_order_id
        self._next_trade_id = first_trade_id
        self._orders: list[Order] = []
        self._by_id: dict[int, Order] = {}
        self._by_client: dict[str, Order] = {}
        self._trades: list[Trade] = []
        self._rejections: list[Rejection] = []
        self._mutex = threading.RLock()

    # -- reading -----------------------------------------------------------------------------

    @property
    def orders(self) -> list[Order]:
        """Return every order the venue ever accepted, oldest first."""
        with self._mutex:
            return list(self._orders)

    @property
    def trades(self) -> list[Trade]:
        """Return every fill, oldest first."""
        with self._mutex:
            return list(self._trades)

    @property
    def rejections(self) -> list[Rejection]:
        """Return every refused placement, oldest first."""
        with self._mutex:
            return list(self._rejections)

    def rules(self, symbol: str) -> SymbolRules:
        """Return a symbol's rules (exchange id or unified symbol).

        Raises:
            AccountError: -1121 if the venue does not list it.
        """
        return self._market(symbol).rules

    def balances(self) -> dict[str, tuple[float, float]]:
        """Return asset -> (free, locked)."""
        with self._mutex:
            locked = self._locked_by_asset()
            return {
                asset: (max(total - locked.get(asset, 0.0), 0.0), locked.get(asset, 0.0))
                for asset, total in sorted(self._totals.items())
            }

    def order(self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None) -> Order:
        """Return an order by venue id or client id.

        Raises:
            AccountError: -2013 if there is no such order of that symbol; -1121 unknown symbol.
        """
        with self._mutex:
            market = self._market(symbol)
            found = self._find(order_id, client_order_id)
            if found is None or found.symbol != market.rules.symbol:
                raise order_does_not_exist()
            return found

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return the open orders (of one symbol, or all), oldest first."""
        with self._mutex:
            if symbol is not None:
                return list(self._market(symbol).open.values())
            return sorted(
                (o for m in self._markets.values() for o in m.open.values()), key=lambda o: o.order_id
            )

    def orders_of(self, symbol: str) -> list[Order]:
        """Return every accepted order of a symbol, oldest first."""
        with self._mutex:
            exchange_id = self._market(symbol).rules.symbol
            return [o for o in self._orders if o.symbol == exchange_id]

    def trades_of(self, symbol: str) -> list[Trade]:
        """Return every fill of a symbol, oldest first."""
        with self._mutex:
            exchange_id = self._market(symbol).rules.symbol
            return [t for t in self._trades if t.symbol == exchange_id]

    # -- order entry -------------------------------------------------------------------------

    def place(self, new: NewOrder) -> Order:
        """Check, accept and match a new order.

        Returns:
            The accepted order, after its immediate fills.

        Raises:
            AccountError: The venue refuses it (the refusal is logged in :attr:`rejections`).
        """
        with self._mutex:
            try:
                return self._place(new)
            except AccountError as err:
                self._rejections.append(
                    Rejection(self._clock(), new.symbol, new.client_order_id, err.code, err.msg)
                )
                raise

    def cancel(
        self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> Order:
        """Cancel an open order and release what it locked.

        Raises:
            AccountError: -2011 if there is no such open order; -1121 unknown symbol.
        """
        with self._mutex:
            market = self._market(symbol)
            found = self._find(order_id, client_order_id)
            if found is None or found.symbol != market.rules.symbol or not found.is_open:
                raise unknown_order()
            self._close(market, found, "CANCELED", self._clock())
            return found

    def on_tick(self, symbol: str, now_ms: int) -> list[Trade]:
        """Fill resting orders of a symbol that the book has moved through (maker fills).

        A resting buy at price P fills, at P, against the asks at or below P (at most their
        quantity, which it removes from the book); a sell symmetrically against the bids.

        Returns:
            The fills made.
        """
        with self._mutex:
            market = self._markets.get(_exchange_id(symbol))
            if market is None or not market.open:
                return []
            bids, asks = self._book.levels(market.rules.symbol)
            books = {"BUY": _units_levels(asks, market), "SELL": _units_levels(bids, market)}
            fills: list[Trade] = []
            for order in list(market.open.values()):
                price = order.price
                ticks = market.tick.units(price)
                levels = books[order.side]
                before = remaining = order.remaining_units
                for index, (level_ticks, level_units) in enumerate(levels):
                    if remaining <= 0:
                        break
                    crosses = level_ticks <= ticks if order.side == "BUY" else level_ticks >= ticks
                    if not crosses:
                        break
                    if level_units <= 0:
                        continue
                    units = min(level_units, remaining)
                    levels[index] = (level_ticks, level_units - units)
                    book_side = "ask" if order.side == "BUY" else "bid"
                    self._book.take(
                        market.rules.symbol,
                        book_side,
                        market.tick.value(level_ticks),
                        market.step.value(units),
                    )
                    fills.append(self._fill(market, order, price, units, maker=True, now_ms=now_ms))
                    remaining -= units
                if remaining != before:
                    self._settle(market, order, now_ms)
            return fills

    # -- internals ---------------------------------------------------------------------------

    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(_exchange_id(symbol))
        if market is None:
            raise bad_symbol()
        return market

    def _find(self, order_id: int | None, client_order_id: str | None) -> Order | None:
        if order_id is not None:
            found = self._by_id.get(order_id)
            if found is not None and client_order_id is not None and found.client_order_id != client_order_id:
                return None
            return found
        if client_order_id is not None:
            return self._by_client.get(client_order_id)
        return None

    def _locked_by_asset(self) -> dict[str, float]:
        locked: dict[str, float] = {}
        for market in self._markets.values():
            for order in market.open.values():
                locked[order.locked_asset] = locked.get(order.locked_asset, 0.0) + order.locked
        return locked

    def _free(self, asset: str) -> float:
        return self._totals.get(asset, 0.0) - self._locked_by_asset().get(asset, 0.0)

    def _place(self, new: NewOrder) -> Order:
        market = self._market(new.symbol)
        rules = market.rules
        side, kind, tif = new.side, new.type, new.time_in_force
        if side not in SIDES:
            raise AccountError(-1117, "Invalid side.")
        if kind not in ORDER_TYPES:
            raise AccountError(-1116, "Invalid orderType.")
        client_id = new.client_order_id
        if client_id is not None and not CLIENT_ORDER_ID.match(client_id):
            raise AccountError(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                "'^[a-zA-Z0-9-_]{1,36}$'.",
            )
        if kind == "MARKET":
            self._check_market_params(new)
        else:
            if new.quantity is None:
                raise _mandatory("quantity")
            if new.price is None:
                raise _mandatory("price")
            if new.quote_order_qty is not None:
                raise _not_required("quoteOrderQty")
            if kind == "LIMIT":
                if tif is None:
                    raise _mandatory("timeInForce")
                if tif not in TIMES_IN_FORCE:
                    raise AccountError(-1115, "Invalid timeInForce.")
            elif tif is not None:
                raise _not_required("timeInForce")
            self._check_price(market, new.price)
        if new.quantity is not None:
            self._check_quantity(market, new.quantity, market_order=kind == "MARKET")
        if client_id is not None and client_id in self._by_client:
            raise _duplicate_order()
        now = self._clock()
        opposite = self._opposite(market, side)
        if kind == "MARKET":
            order_units, fills = self._plan_market(market, new, opposite)
            self._check_market_funds(market, new, order_units, fills)
        else:
            assert new.price is not None and new.quantity is not None
            order_units = market.step.units(new.quantity)
            if new.price * new.quantity < rules.min_notional - _EPSILON:
                raise _filter_failure("NOTIONAL")
            limit_ticks = market.tick.units(new.price)
            fills = _sweep(opposite, side, limit_ticks, order_units)
            if kind == "LIMIT_MAKER" and fills:
                raise AccountError(-2010, "Order would immediately match and take.")
            if tif == "FOK" and sum(units for _, units in fills) < order_units:
                fills = []
            need = (
                new.price * new.quantity * self._lock_rate
                if side == "BUY"
                else market.step.value(order_units)
            )
            asset = rules.quote if side == "BUY" else rules.base
            if need > self._free(asset) + _EPSILON:
                raise _insufficient_balance()
        order = self._accept(market, new, order_units, now)
        book_side = "ask" if side == "BUY" else "bid"
        for ticks, units in fills:
            price = market.tick.value(ticks)
            self._book.take(rules.symbol, book_side, price, market.step.value(units))
            self._fill(market, order, price, units, maker=False, now_ms=now)
        self._finish_placement(market, order, now)
        return order

    def _check_market_params(self, new: NewOrder) -> None:
        if new.quantity is None and new.quote_order_qty is None:
            raise AccountError(
                -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
            )
        if new.quantity is not None and new.quote_order_qty is not None:
            raise _not_required("quoteOrderQty")
        if new.price is not None:
            raise _not_required("price")
        if new.time_in_force is not None:
            raise _not_required("timeInForce")
        if new.quote_order_qty is not None and new.quote_order_qty <= 0:
            raise AccountError(-1013, "Invalid quoteOrderQty.")

    def _check_price(self, market: _Market, price: float) -> None:
        rules = market.rules
        if price <= 0 or price < rules.min_price - _EPSILON or price > rules.max_price + _EPSILON:
            raise _filter_failure("PRICE_FILTER")
        if not market.tick.on_grid(price):
            raise _filter_failure("PRICE_FILTER")

    def _check_quantity(self, market: _Market, quantity: float, *, market_order: bool) -> None:
        rules = market.rules
        name = "MARKET_LOT_SIZE" if market_order else "LOT_SIZE"
        maximum = rules.market_max_qty if market_order else rules.max_qty
        if quantity < rules.min_qty - _EPSILON or quantity > maximum + _EPSILON:
            raise _filter_failure(name)
        if not market.step.on_grid(quantity):
            raise _filter_failure(name)

    def _opposite(self, market: _Market, side: str) -> list[tuple[int, int]]:
        bids, asks = self._book.levels(market.rules.symbol)
        return _units_levels(asks if side == "BUY" else bids, market)

    def _plan_market(
        self, market: _Market, new: NewOrder, opposite: list[tuple[int, int]]
    ) -> tuple[int, list[tuple[int, int]]]:
        rules = market.rules
        if new.quote_order_qty is not None:
            if new.quote_order_qty < rules.min_notional - _EPSILON:
                raise _filter_failure("NOTIONAL")
            fills = _sweep_quote(opposite, market, new.quote_order_qty)
            return sum(units for _, units in fills), fills
        assert new.quantity is not None
        order_units = market.step.units(new.quantity)
        best = opposite[0][0] if opposite else None
        if best is not None and market.tick.value(best) * new.quantity < rules.min_notional - _EPSILON:
            raise _filter_failure("NOTIONAL")
        return order_units, _sweep(opposite, new.side, None, order_units)

    def _check_market_funds(
        self, market: _Market, new: NewOrder, order_units: int, fills: list[tuple[int, int]]
    ) -> None:
        rules = market.rules
        if new.side == "BUY":
            cost = sum(market.tick.value(t) * market.step.value(u) for t, u in fills) * (1.0 + self.taker_fee)
            if cost > self._free(rules.quote) + _EPSILON:
                raise _insufficient_balance()
        elif market.step.value(order_units) > self._free(rules.base) + _EPSILON:
            raise _insufficient_balance()

    def _accept(self, market: _Market, new: NewOrder, order_units: int, now: int) -> Order:
        order_id = self._next_order_id
        self._next_order_id += 1
        client_id = new.client_order_id or f"sim{order_id:012d}"
        while client_id in self._by_client:  # a made-up id never collides with a client's
            client_id = f"sim{order_id:012d}x{len(self._orders)}"
        tif = new.time_in_force if new.type == "LIMIT" else ("GTC" if new.type == "LIMIT_MAKER" else None)
        order = Order(
            order_id=order_id,
            client_order_id=client_id,
            symbol=market.rules.symbol,
            side=new.side,
            type=new.type,
            time_in_force=tif,
            price=new.price if new.price is not None else 0.0,
            orig_qty=market.step.value(order_units),
            orig_quote_order_qty=new.quote_order_qty or 0.0,
            status="NEW",
            time_ms=now,
            update_ms=now,
            locked_asset=market.rules.quote if new.side == "BUY" else market.rules.base,
            orig_units=order_units,
        )
        self._orders.append(order)
        self._by_id[order_id] = order
        self._by_client[client_id] = order
        return order

    def _fill(
        self, market: _Market, order: Order, price: float, units: int, *, maker: bool, now_ms: int
    ) -> Trade:
        rules = market.rules
        quantity = market.step.value(units)
        quote = round(price * quantity, 8)
        commission = round(quote * (self.maker_fee if maker else self.taker_fee), 8)
        if order.side == "BUY":
            self._totals[rules.quote] -= quote + commission
            self._totals[rules.base] += quantity
        else:
            self._totals[rules.base] -= quantity
            self._totals[rules.quote] += quote - commission
        trade = Trade(
            trade_id=self._next_trade_id,
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            symbol=rules.symbol,
            side=order.side,
            price=price,
            quantity=quantity,
            quote_quantity=quote,
            commission=commission,
            commission_asset=rules.quote,
            time_ms=now_ms,
            is_maker=maker,
        )
        self._next_trade_id += 1
        self._trades.append(trade)
        order.trades.append(trade)
        order.executed_units += units
        order.executed_qty = market.step.value(order.executed_units)
        order.cumulative_quote_qty = round(order.cumulative_quote_qty + quote, 8)
        order.update_ms = now_ms
        # The resting order is the maker: a resting buy means the buyer was the maker.
        buyer_is_maker = maker == (order.side == "BUY")
        self._book.publish_trade(rules.symbol, price, quantity, buyer_is_maker, now_ms)
        return trade

    def _finish_placement(self, market: _Market, order: Order, now: int) -> None:
        if order.type == "MARKET":
            if order.orig_quote_order_qty:
                # By quote amount: what was bought or sold is the order's quantity.
                order.orig_units = order.executed_units
                order.orig_qty = order.executed_qty
                done = self._quote_spent(market, order)
            else:
                done = order.remaining_units == 0
            order.status = "FILLED" if done and order.executed_units > 0 else "EXPIRED"
            return
        if order.remaining_units == 0:
            order.status = "FILLED"
            return
        if order.time_in_force in ("IOC", "FOK"):
            order.status = "EXPIRED"
            return
        market.open[order.order_id] = order
        self._settle(market, order, now)

    def _quote_spent(self, market: _Market, order: Order) -> bool:
        """Return whether a market order by quote amount spent all it could (not stopped by depth)."""
        left = order.orig_quote_order_qty - order.cumulative_quote_qty
        last = order.trades[-1].price if order.trades else 0.0
        return bool(order.trades) and left < last * market.rules.step_size + _EPSILON

    def _settle(self, market: _Market, order: Order, now: int) -> None:
        """Update an open order's status and lock after fills."""
        if order.remaining_units == 0:
            self._close(market, order, "FILLED", now)
            return
        order.status = "PARTIALLY_FILLED" if order.executed_units else "NEW"
        remaining = market.step.value(order.remaining_units)
        order.locked = order.price * remaining * self._lock_rate if order.side == "BUY" else remaining

    def _close(self, market: _Market, order: Order, status: str, now: int) -> None:
        order.status = status
        order.locked = 0.0
        order.update_ms = now
        market.open.pop(order.order_id, None)


def _exchange_id(symbol: str) -> str:
    return symbol.replace("/", "").upper()


def _units_levels(levels: list[tuple[float, float]], market: _Market) -> list[tuple[int, int]]:
    tick, step = market.tick, market.step
    return [(tick.units(price), step.units(quantity)) for price, quantity in levels if quantity > 0]


def _sweep(
    opposite: list[tuple[int, int]], side: str, limit_ticks: int | None, order_units: int
) -> list[tuple[int, int]]:
    """Return the (price ticks, lots) an order takes walking the opposite side best-first."""
    fills: list[tuple[int, int]] = []
    remaining = order_units
    for ticks, units in opposite:
        if remaining <= 0:
            break
        if limit_ticks is not None and (ticks > limit_ticks if side == "BUY" else ticks < limit_ticks):
            break
        take = min(units, remaining)
        if take > 0:
            fills.append((ticks, take))
            remaining -= take
    return fills


def _sweep_quote(opposite: list[tuple[int, int]], market: _Market, quote: float) -> list[tuple[int, int]]:
    """Return the (price ticks, lots) a market order spending ``quote`` takes, best-first."""
    fills: list[tuple[int, int]] = []
    left = quote
    for ticks, units in opposite:
        price = market.tick.value(ticks)
        affordable = market.step.floor_units(left / price) if price > 0 else 0
        take = min(units, affordable)
        if take <= 0:
            break
        fills.append((ticks, take))
        left -= price * market.step.value(take)
    return fills
