"""The ccxt broker: real orders at a venue through an async ccxt exchange, sent at most once.

The :class:`~tradeflow.execution.brokers.Broker` implementation for live trading (and for the
local venues in tests). It keeps ccxt inside this adapter: callers see only the broker types.

Idempotency. Every order carries its deterministic client order id (Binance's
``newClientOrderId``). When a placement's outcome is unknown (a timeout, a network error, an
HTTP 5xx or a garbled answer: ccxt's ``OperationFailed`` family), the broker does not resend: it
first asks the venue for the order by client id (``origClientOrderId``):

- the venue has it: the broker adopts it (reports it, with its fills) and never sends it again;
- the venue does not know it (-2013): it was never placed, so the broker sends it again, after
  a backoff with jitter, at most ``max_attempts`` placements in all;
- the venue cannot be asked (the query fails ``query_attempts`` times): the report says
  ``unknown`` and nothing more is sent; reconciliation settles it later.

A "Duplicate order sent." answer (the venue already has this id) is resolved the same way, by
query. A definite refusal (insufficient balance, a filter, a post-only that would take) is
reported ``rejected`` with the venue's message; bad credentials or an unknown symbol raise
:class:`~tradeflow.execution.brokers.BrokerError` (a configuration problem, not an outcome).

Fills. A placement's answer carries its immediate (taker) fills (Binance ``newOrderRespType``
``FULL``); orders found by query, cancelled after partial fills or filled later get theirs from
the account's trade list (``fetch_my_trades`` by order id). :meth:`CcxtBroker.fills_since` reads
the trade list per symbol and maps venue order ids back to client ids (asking the venue for
orders it has not seen).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ccxt.base.errors import (
    ArgumentsRequired,
    AuthenticationError,
    BadSymbol,
    DuplicateOrderId,
    ExchangeError,
    NotSupported,
    OperationFailed,
    OrderNotFound,
)

from tradeflow.execution.brokers import BrokerError, FillReport, OrderReport, OrderRequest

__all__ = ["BINANCE_STATUSES", "CcxtBroker", "ledger_status"]

_T = TypeVar("_T")

BINANCE_STATUSES = {
    "NEW": "new",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "cancelled",
    "EXPIRED": "cancelled",
    "EXPIRED_IN_MATCH": "cancelled",
    "REJECTED": "rejected",
}
"""Binance order status -> ledger state (an expired IOC or market remainder is ``cancelled``)."""

_UNIFIED_STATUSES = {
    "closed": "filled",
    "canceled": "cancelled",
    "expired": "cancelled",
    "rejected": "rejected",
}
_CONFIGURATION_ERRORS = (AuthenticationError, BadSymbol, NotSupported, ArgumentsRequired)
_TRADES_PAGE = 1000


def ledger_status(venue_status: str | None, unified_status: str | None, filled: float) -> str:
    """Return the ledger state of an order from the venue's status (else ccxt's unified one)."""
    if venue_status and venue_status in BINANCE_STATUSES:
        return BINANCE_STATUSES[venue_status]
    if unified_status == "open":
        return "partially_filled" if filled > 0 else "new"
    if unified_status in _UNIFIED_STATUSES:
        return _UNIFIED_STATUSES[unified_status]
    return "unknown"


def _is_duplicate(err: Exception) -> bool:
    return isinstance(err, DuplicateOrderId) or "Duplicate order sent" in str(err)


class _UnresolvedError(Exception):
    """The venue could not be asked (every attempt failed)."""


class CcxtBroker:
    """Places orders through an async ccxt exchange, idempotently (see the module docstring).

    Args:
        exchange: An async ccxt (``ccxt.pro``) exchange with credentials, e.g. from
            :func:`tradeflow.execution.exchange.create_pro_exchange`; the broker owns it
            (:meth:`close` closes it).
        max_attempts: Placements sent at most per order (only after the venue confirmed it does
            not have the order).
        query_attempts: Attempts of each read (query by client id, open orders, trades, balances).
        backoff_seconds: First backoff; doubles per attempt, with jitter (50-100 %).
        max_backoff_seconds: Backoff ceiling.
        sleep: Awaits a backoff (``asyncio.sleep``).
        seed: Seed of the jitter (None: unseeded).

    Attributes:
        create_calls: Client order id -> how many placements were sent for it.
    """

    name = "ccxt"

    def __init__(
        self,
        exchange: Any,
        *,
        max_attempts: int = 4,
        query_attempts: int = 4,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        seed: int | None = None,
    ) -> None:
        if max_attempts < 1 or query_attempts < 1:
            raise ValueError("max_attempts and query_attempts must be at least 1")
        self.exchange = exchange
        self.max_attempts = max_attempts
        self.query_attempts = query_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep
        self._random = random.Random(seed)
        self._client_ids: dict[tuple[str, str], str] = {}
        self.create_calls: Counter[str] = Counter()

    # -- the Broker interface ----------------------------------------------------------------

    async def submit(self, request: OrderRequest) -> OrderReport:
        """Place an order at most once; report it (adopting it if a lost answer had placed it)."""
        cid, symbol = request.client_order_id, request.symbol
        kind = "market" if request.price is None else "limit"
        params: dict[str, Any] = {"newClientOrderId": cid}
        if request.price is not None:
            params["timeInForce"] = request.time_in_force
        last = ""
        for attempt in range(self.max_attempts):
            if attempt:
                await self._backoff(attempt)
            self.create_calls[cid] += 1
            try:
                raw = await self.exchange.create_order(
                    symbol, kind, request.side, request.quantity, request.price, params
                )
            except OperationFailed as err:
                last = f"{type(err).__name__}: {err}"
                try:
                    found = await self._lookup(cid, symbol)
                except _UnresolvedError:
                    return self._unknown(request, f"placement outcome unknown ({last}); query failed")
                if found is not None:
                    return found
                continue  # the venue does not have it: sending again is safe
            except _CONFIGURATION_ERRORS as err:
                raise BrokerError(f"{self.exchange.id}: {type(err).__name__}: {err}") from err
            except ExchangeError as err:
                if _is_duplicate(err):
                    try:
                        found = await self._lookup(cid, symbol)
                    except _UnresolvedError:
                        found = None
                    return found or self._unknown(request, f"venue reports a duplicate it cannot show: {err}")
                return OrderReport(
                    cid, symbol, None, "rejected", 0.0, None, (), f"{type(err).__name__}: {err}"
                )
            return await self._report(raw, symbol, cid, placed=True)
        return self._unknown(request, f"not placed after {self.max_attempts} attempts; last: {last}")

    async def cancel(self, client_order_id: str, symbol: str) -> OrderReport:
        """Cancel an order by client id; report its final state."""
        reason = ""
        for attempt in range(self.max_attempts):
            if attempt:
                await self._backoff(attempt)
            try:
                raw = await self.exchange.cancel_order("", symbol, {"origClientOrderId": client_order_id})
            except OperationFailed as err:  # unknown: cancelling again is harmless
                reason = f"{type(err).__name__}: {err}"
                continue
            except _CONFIGURATION_ERRORS as err:
                raise BrokerError(f"{self.exchange.id}: {type(err).__name__}: {err}") from err
            except ExchangeError as err:  # unknown to the venue, or already finished
                reason = f"{type(err).__name__}: {err}"
                break
            return await self._report(raw, symbol, client_order_id, placed=False)
        try:
            found = await self._lookup(client_order_id, symbol)
        except _UnresolvedError:
            return OrderReport(
                client_order_id, symbol, None, "unknown", 0.0, None, (), f"cancel not confirmed: {reason}"
            )
        if found is None:
            return OrderReport(client_order_id, symbol, None, "cancelled", 0.0, None, (), "not at the venue")
        return found

    async def query(self, client_order_id: str, symbol: str) -> OrderReport | None:
        """Report an order by client id (with its fills); None when the venue never received it.

        Raises:
            BrokerError: The venue could not be asked.
        """
        try:
            return await self._lookup(client_order_id, symbol)
        except _UnresolvedError as err:
            raise BrokerError(f"query of {client_order_id} failed: {err}") from err

    async def open_orders(self, symbols: Sequence[str]) -> list[OrderReport]:
        """Report the venue's open orders of these symbols (without fills)."""
        reports: list[OrderReport] = []
        for symbol in symbols:
            raws = await self._read(self.exchange.fetch_open_orders, symbol)
            for raw in raws:
                cid = str(raw.get("clientOrderId") or "")
                reports.append(await self._report(raw, symbol, cid, placed=False, with_fills=False))
        return reports

    async def fills_since(self, symbols: Sequence[str], since_ms: int) -> list[FillReport]:
        """Return the account's fills of these symbols at or after ``since_ms``, oldest first."""
        fills: list[FillReport] = []
        for symbol in symbols:
            since, seen = since_ms, set()
            while True:
                trades = await self._read(self.exchange.fetch_my_trades, symbol, since, _TRADES_PAGE)
                fresh = [t for t in trades if str(t["id"]) not in seen]
                for trade in fresh:
                    seen.add(str(trade["id"]))
                    cid = await self._client_id_of(symbol, str(trade["order"]))
                    fills.append(self._fill(trade, symbol, cid))
                if len(trades) < _TRADES_PAGE or not fresh:
                    break
                since = max(int(t["timestamp"]) for t in trades)
        fills.sort(key=lambda f: (f.time_ms, f.venue_trade_id))
        return fills

    async def balances(self) -> dict[str, tuple[float, float]]:
        """Return asset -> (free, locked) as the venue reports it."""
        raw = await self._read(self.exchange.fetch_balance)
        free, used = raw.get("free") or {}, raw.get("used") or {}
        return {
            str(asset): (float(free.get(asset) or 0.0), float(used.get(asset) or 0.0))
            for asset in sorted(raw.get("total") or {})
        }

    async def close(self) -> None:
        """Close the exchange's connections."""
        await self.exchange.close()

    # -- internals ---------------------------------------------------------------------------

    async def _backoff(self, attempt: int) -> None:
        delay = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        await self._sleep(delay * (0.5 + 0.5 * self._random.random()))

    async def _read(self, call: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """Run a read, retrying network failures; raise BrokerError when every attempt failed."""
        last: Exception | None = None
        for attempt in range(self.query_attempts):
            if attempt:
                await self._backoff(attempt)
            try:
                return await call(*args)
            except OperationFailed as err:
                last = err
            except _CONFIGURATION_ERRORS as err:
                raise BrokerError(f"{self.exchange.id}: {type(err).__name__}: {err}") from err
        raise BrokerError(f"{self.exchange.id}: read failed {self.query_attempts} times: {last}")

    async def _lookup(self, client_order_id: str, symbol: str) -> OrderReport | None:
        """Return the venue's order with this client id (with fills), None if it has none."""
        last: Exception | None = None
        for attempt in range(self.query_attempts):
            if attempt:
                await self._backoff(attempt)
            try:
                raw = await self.exchange.fetch_order("", symbol, {"origClientOrderId": client_order_id})
            except OrderNotFound:
                return None
            except OperationFailed as err:
                last = err
                continue
            except _CONFIGURATION_ERRORS as err:
                raise BrokerError(f"{self.exchange.id}: {type(err).__name__}: {err}") from err
            try:
                return await self._report(raw, symbol, client_order_id, placed=False)
            except BrokerError as err:  # its fills could not be read
                last = err
        raise _UnresolvedError(str(last))

    async def _report(
        self, raw: dict[str, Any], symbol: str, cid: str, *, placed: bool, with_fills: bool = True
    ) -> OrderReport:
        info = raw.get("info") or {}
        venue_id = str(raw["id"]) if raw.get("id") is not None else None
        if venue_id is not None and cid:
            self._client_ids[(symbol, venue_id)] = cid
        filled = float(raw.get("filled") or 0.0)
        status = ledger_status(info.get("status"), raw.get("status"), filled)
        fills: tuple[FillReport, ...] = ()
        if with_fills and filled > 0:
            if placed:  # the placement's answer lists its immediate (taker) fills
                fills = tuple(self._placement_fills(raw, symbol, cid))
            if sum(f.quantity for f in fills) < filled * (1 - 1e-9) and venue_id is not None:
                fills = tuple(await self._order_fills(symbol, venue_id, cid))
        average = raw.get("average")
        if average is None and filled > 0 and raw.get("cost"):
            average = float(raw["cost"]) / filled
        return OrderReport(
            client_order_id=cid,
            symbol=symbol,
            venue_order_id=venue_id,
            status=status,
            filled_quantity=filled,
            average_price=float(average) if average is not None else None,
            fills=fills,
            side=str(raw["side"]) if raw.get("side") in ("buy", "sell") else None,
            quantity=float(raw["amount"]) if raw.get("amount") else None,
        )

    def _placement_fills(self, raw: dict[str, Any], symbol: str, cid: str) -> list[FillReport]:
        side = str(raw.get("side") or "")
        time_ms = int(raw.get("timestamp") or 0)
        fills = []
        for trade in raw.get("trades") or []:
            if trade.get("id") is None or trade.get("price") is None or trade.get("amount") is None:
                return []
            fee = trade.get("fee") or {}
            fills.append(
                FillReport(
                    venue_trade_id=str(trade["id"]),
                    client_order_id=cid,
                    symbol=symbol,
                    side=side,
                    price=float(trade["price"]),
                    quantity=float(trade["amount"]),
                    fee=float(fee.get("cost") or 0.0),
                    fee_asset=str(fee.get("currency") or ""),
                    time_ms=int(trade.get("timestamp") or time_ms),
                    liquidity=str(trade.get("takerOrMaker") or "taker"),
                )
            )
        return fills

    async def _order_fills(self, symbol: str, venue_order_id: str, cid: str) -> list[FillReport]:
        trades = await self._read(
            self.exchange.fetch_my_trades, symbol, None, None, {"orderId": venue_order_id}
        )
        return [self._fill(t, symbol, cid) for t in trades if str(t.get("order")) == venue_order_id]

    async def _client_id_of(self, symbol: str, venue_order_id: str) -> str:
        known = self._client_ids.get((symbol, venue_order_id))
        if known is not None:
            return known
        raw = await self._read(self.exchange.fetch_order, venue_order_id, symbol)
        cid = str(raw.get("clientOrderId") or "")
        self._client_ids[(symbol, venue_order_id)] = cid
        return cid

    @staticmethod
    def _fill(trade: dict[str, Any], symbol: str, cid: str) -> FillReport:
        fee = trade.get("fee") or {}
        return FillReport(
            venue_trade_id=str(trade["id"]),
            client_order_id=cid,
            symbol=symbol,
            side=str(trade.get("side") or ""),
            price=float(trade["price"]),
            quantity=float(trade["amount"]),
            fee=float(fee.get("cost") or 0.0),
            fee_asset=str(fee.get("currency") or ""),
            time_ms=int(trade.get("timestamp") or 0),
            liquidity=str(trade.get("takerOrMaker") or "taker"),
        )

    @staticmethod
    def _unknown(request: OrderRequest, reason: str) -> OrderReport:
        return OrderReport(request.client_order_id, request.symbol, None, "unknown", 0.0, None, (), reason)
