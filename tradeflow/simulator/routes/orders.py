"""Signed Binance spot order endpoints: new, query, cancel, open and all orders, account, trades.

Each venue has one account (:class:`~tradeflow.simulator.accounts.VenueAccount`) that matches
orders against the venue's live book (:func:`~tradeflow.simulator.live.live_of`); resting
orders fill on the live book's 100 ms ticks. Requests are signed the way Binance signs them and
``ccxt.binance`` sends them: the ``X-MBX-APIKEY`` header, then HMAC-SHA256 (hex) with the
venue's secret over the query string followed by the body, without the ``signature`` parameter,
a ``timestamp`` within ``recvWindow`` (default 5000 ms) of the venue's clock and not more than
1000 ms ahead of it. Errors answer Binance's codes: -2014 (no or malformed key), -2015 (unknown
key), -1022 (bad signature), -1021 (timestamp), -1102 (missing parameter), -2010 (refused
order: insufficient balance, duplicate client id, post-only that would take), -1013 (filters),
-2011 (cancel of an unknown or closed order), -2013 (query of an unknown order).

The endpoints sit behind the server's middleware like every other endpoint (weights, latency,
transport faults); order placements also obey the test faults set through
:mod:`tradeflow.simulator.routes.order_control`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

from tradeflow.simulator import payloads
from tradeflow.simulator.accounts import AccountError, NewOrder, Order, SymbolRules, Trade, VenueAccount
from tradeflow.simulator.errors import BinanceError, error_response, illegal_chars, mandatory_param
from tradeflow.simulator.live import live_of
from tradeflow.simulator.quantize import Quantizer
from tradeflow.simulator.routes.params import limit_param
from tradeflow.simulator.runtime import VenueRuntime, runtime_of

__all__ = [
    "FAULT_KINDS",
    "OrderDesk",
    "desk_of",
    "order_json",
    "register",
    "trade_json",
]

DEFAULT_RECV_WINDOW_MS = 5_000
MAX_RECV_WINDOW_MS = 60_000
MAX_AHEAD_MS = 1_000
ALL_ORDERS_DEFAULT_LIMIT = 500
MY_TRADES_DEFAULT_LIMIT = 500
MAX_LIST_LIMIT = 1000

FAULT_KINDS = ("timeout_after_accept", "error_after_accept", "reject")
"""Test faults of order placements (see :mod:`tradeflow.simulator.routes.order_control`)."""

_P = ParamSpec("_P")
_T = TypeVar("_T")
_NUMBER = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")


@dataclass
class OrderDesk:
    """A venue's order state: its account plus the pending test faults of order placements.

    Attributes:
        account: The venue's account and matching engine.
        formats: Exchange id -> (price grid, quantity grid) used to print values.
        faults: Fault kinds to apply to the next placements, in order.
        fault_seconds: How long ``timeout_after_accept`` holds its answer back.
    """

    account: VenueAccount
    formats: dict[str, tuple[Quantizer, Quantizer]]
    faults: deque[str] = field(default_factory=deque)
    fault_seconds: float = 30.0

    def next_fault(self, *, accepted: bool) -> str | None:
        """Pop the next fault that applies: ``reject`` before acceptance, the others after it."""
        if not self.faults:
            return None
        kind = self.faults[0]
        if (kind == "reject") != (not accepted):
            return None
        self.faults.popleft()
        return kind


_DESKS: dict[int, OrderDesk] = {}


def desk_of(runtime: VenueRuntime) -> OrderDesk:
    """Return a venue's order desk, creating its account (and starting its live book) on first use.

    Call it from the server's loop (a route handler), like :func:`live_of`.
    """
    desk = _DESKS.get(id(runtime))
    if desk is not None:
        return desk
    live = live_of(runtime)
    spec = runtime.spec
    markets = [runtime.venue.market(s.symbol) for s in runtime.venue.symbols]
    account = VenueAccount(
        [SymbolRules.from_symbol_info(payloads.symbol_info(m)) for m in markets],
        live,
        balances=spec.initial_balances,
        maker_fee=spec.maker_fee,
        taker_fee=spec.taker_fee,
        clock=runtime.clock,
    )

    def match_resting(symbol: str, now_ms: int) -> None:
        account.on_tick(symbol, now_ms)

    live.on_tick(match_resting)
    desk = OrderDesk(account, {m.spec.exchange_id: (m.tick, m.step) for m in markets})
    key = id(runtime)
    _DESKS[key] = desk

    async def forget() -> None:  # the desk holds the runtime (through the live book): drop it
        if _DESKS.get(key) is desk:
            del _DESKS[key]

    runtime.on_close.append(forget)
    return desk


# -- signatures ---------------------------------------------------------------------------------


def _without_signature(raw: str) -> tuple[str, str | None]:
    """Return ``raw`` (an encoded parameter string) without its signature, and the signature."""
    if not raw:
        return "", None
    kept: list[str] = []
    signature = None
    for part in raw.split("&"):
        if part.startswith("signature="):
            signature = part.removeprefix("signature=")
        else:
            kept.append(part)
    return "&".join(kept), signature


async def signed_params(request: web.Request) -> dict[str, str]:
    """Authenticate a signed request and return its parameters (query and body).

    Raises:
        BinanceError: -2014/-2015 for the key, -1102 for a missing signature or timestamp,
            -1022 for a bad signature, -1021/-1131 for the timestamp window.
    """
    rt = runtime_of(request)
    key = request.headers.get("X-MBX-APIKEY")
    if not key:
        raise BinanceError(401, -2014, "API-key format invalid.")
    if not hmac.compare_digest(key.encode(), rt.spec.api_key.encode()):
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    raw_query = request.rel_url.raw_query_string
    body = await request.text() if request.body_exists else ""
    query_part, query_signature = _without_signature(raw_query)
    body_part, body_signature = _without_signature(body)
    signature = body_signature or query_signature
    if not signature:
        raise mandatory_param("signature")
    expected = hmac.new(rt.spec.api_secret.encode(), (query_part + body_part).encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
        raise BinanceError(400, -1022, "Signature for this request is not valid.")
    params = dict(parse_qsl(raw_query, keep_blank_values=True))
    params.update(parse_qsl(body, keep_blank_values=True))
    params.pop("signature", None)
    _check_timestamp(params, rt.clock())
    return params


def _check_timestamp(params: Mapping[str, str], now_ms: int) -> None:
    raw = params.get("timestamp")
    if not raw:
        raise mandatory_param("timestamp")
    if not raw.isdigit():
        raise illegal_chars("timestamp")
    timestamp = int(raw)
    window_raw = params.get("recvWindow")
    window = DEFAULT_RECV_WINDOW_MS
    if window_raw:
        if not window_raw.isdigit():
            raise illegal_chars("recvWindow")
        window = int(window_raw)
        if window > MAX_RECV_WINDOW_MS:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
    if timestamp > now_ms + MAX_AHEAD_MS:
        raise BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if now_ms - timestamp > window:
        raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")


# -- parameters ---------------------------------------------------------------------------------


def _number(params: Mapping[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _NUMBER.match(raw):
        raise BinanceError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is "
            "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    return float(raw)


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise mandatory_param(name)
    return value


def _integer(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise illegal_chars(name)
    return int(raw)


def _order_ref(params: Mapping[str, str]) -> tuple[int | None, str | None]:
    order_id = _integer(params, "orderId")
    client_id = params.get("origClientOrderId") or None
    if order_id is None and client_id is None:
        raise BinanceError(
            400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
        )
    return order_id, client_id


def _account_call(call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    try:
        return call(*args, **kwargs)
    except AccountError as err:
        raise BinanceError(400, err.code, err.msg) from None


# -- rendering ----------------------------------------------------------------------------------


def _fmt8(value: float) -> str:
    return f"{value:.8f}"


def order_json(order: Order, tick: Quantizer, step: Quantizer) -> dict[str, Any]:
    """Return an order as ``GET /api/v3/order`` prints it."""
    return {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "price": tick.format(order.price),
        "origQty": step.format(order.orig_qty),
        "executedQty": step.format(order.executed_qty),
        "cummulativeQuoteQty": _fmt8(order.cumulative_quote_qty),
        "status": order.status,
        "timeInForce": order.time_in_force or "GTC",
        "type": order.type,
        "side": order.side,
        "stopPrice": tick.format(0.0),
        "icebergQty": step.format(0.0),
        "time": order.time_ms,
        "updateTime": order.update_ms,
        "isWorking": True,
        "workingTime": order.time_ms,
        "origQuoteOrderQty": _fmt8(order.orig_quote_order_qty),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def _placement_json(order: Order, tick: Quantizer, step: Quantizer, response_type: str) -> dict[str, Any]:
    ack: dict[str, Any] = {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": order.time_ms,
    }
    if response_type == "ACK":
        return ack
    full = order_json(order, tick, step)
    result = {
        **ack,
        **{
            key: full[key]
            for key in (
                "price",
                "origQty",
                "executedQty",
                "origQuoteOrderQty",
                "cummulativeQuoteQty",
                "status",
                "timeInForce",
                "type",
                "side",
                "workingTime",
                "selfTradePreventionMode",
            )
        },
    }
    if response_type == "FULL":
        result["fills"] = [
            {
                "price": tick.format(t.price),
                "qty": step.format(t.quantity),
                "commission": _fmt8(t.commission),
                "commissionAsset": t.commission_asset,
                "tradeId": t.trade_id,
            }
            for t in order.trades
        ]
    return result


def trade_json(trade: Trade, tick: Quantizer, step: Quantizer) -> dict[str, Any]:
    """Return a fill as ``GET /api/v3/myTrades`` prints it."""
    return {
        "symbol": trade.symbol,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "orderListId": -1,
        "price": tick.format(trade.price),
        "qty": step.format(trade.quantity),
        "quoteQty": _fmt8(trade.quote_quantity),
        "commission": _fmt8(trade.commission),
        "commissionAsset": trade.commission_asset,
        "time": trade.time_ms,
        "isBuyer": trade.side == "BUY",
        "isMaker": trade.is_maker,
        "isBestMatch": True,
    }


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(text=payloads.dumps(body), status=status, content_type="application/json")


# -- handlers -----------------------------------------------------------------------------------


async def new_order(request: web.Request) -> web.StreamResponse:
    """Answer POST /api/v3/order: check, accept and match an order (obeying test faults)."""
    params = await signed_params(request)
    rt = runtime_of(request)
    desk = desk_of(rt)
    account = desk.account
    symbol = _required(params, "symbol")
    side = _required(params, "side")
    kind = _required(params, "type")
    response_type = params.get("newOrderRespType") or "FULL"
    if response_type not in ("ACK", "RESULT", "FULL"):
        raise BinanceError(400, -1130, "Data sent for parameter 'newOrderRespType' is not valid.")
    if desk.next_fault(accepted=False) == "reject":
        # Refused before the matching engine saw it: nothing is recorded.
        return error_response(503, -1001, "Internal error; unable to process your request. Please try again.")
    new = NewOrder(
        symbol=symbol,
        side=side,
        type=kind,
        quantity=_number(params, "quantity"),
        quote_order_qty=_number(params, "quoteOrderQty"),
        price=_number(params, "price"),
        time_in_force=params.get("timeInForce") or None,
        client_order_id=params.get("newClientOrderId") or None,
    )
    order = _account_call(account.place, new)
    fault = desk.next_fault(accepted=True)
    if fault == "timeout_after_accept":
        # The order stands; the answer comes after the client has given up (and the handler is
        # cancelled when the client disconnects).
        await asyncio.sleep(desk.fault_seconds)
    elif fault == "error_after_accept":
        return web.Response(status=503, text="503 Service Temporarily Unavailable", content_type="text/plain")
    tick, step = desk.formats[order.symbol]
    return _json(_placement_json(order, tick, step, response_type))


async def query_order(request: web.Request) -> web.Response:
    """Answer GET /api/v3/order by ``orderId`` or ``origClientOrderId``."""
    params = await signed_params(request)
    desk = desk_of(runtime_of(request))
    symbol = _required(params, "symbol")
    order_id, client_id = _order_ref(params)
    order = _account_call(desk.account.order, symbol, order_id=order_id, client_order_id=client_id)
    tick, step = desk.formats[order.symbol]
    return _json(order_json(order, tick, step))


async def cancel_order(request: web.Request) -> web.Response:
    """Answer DELETE /api/v3/order: cancel an open order."""
    params = await signed_params(request)
    desk = desk_of(runtime_of(request))
    symbol = _required(params, "symbol")
    order_id, client_id = _order_ref(params)
    order = _account_call(desk.account.cancel, symbol, order_id=order_id, client_order_id=client_id)
    tick, step = desk.formats[order.symbol]
    body = _placement_json(order, tick, step, "RESULT")
    body["origClientOrderId"] = order.client_order_id
    body["clientOrderId"] = params.get("newClientOrderId") or f"cancel{order.order_id}"
    body["transactTime"] = order.update_ms
    return _json(body)


async def open_orders(request: web.Request) -> web.Response:
    """Answer GET /api/v3/openOrders, of one symbol or all."""
    params = await signed_params(request)
    desk = desk_of(runtime_of(request))
    symbol = params.get("symbol") or None
    orders = _account_call(desk.account.open_orders, symbol)
    return _json([order_json(o, *desk.formats[o.symbol]) for o in orders])


async def all_orders(request: web.Request) -> web.Response:
    """Answer GET /api/v3/allOrders (``orderId`` = from this id on; ``startTime``/``endTime``)."""
    params = await signed_params(request)
    desk = desk_of(runtime_of(request))
    symbol = _required(params, "symbol")
    limit = limit_param(request, ALL_ORDERS_DEFAULT_LIMIT, MAX_LIST_LIMIT)
    from_id = _integer(params, "orderId")
    start, end = _integer(params, "startTime"), _integer(params, "endTime")
    orders = _account_call(desk.account.orders_of, symbol)
    selected = [
        o
        for o in orders
        if (from_id is None or o.order_id >= from_id)
        and (start is None or o.time_ms >= start)
        and (end is None or o.time_ms <= end)
    ]
    selected = selected[:limit] if from_id is not None or start is not None else selected[-limit:]
    return _json([order_json(o, *desk.formats[o.symbol]) for o in selected])


async def account_info(request: web.Request) -> web.Response:
    """Answer GET /api/v3/account: commissions and balances (free, locked) per asset."""
    params = await signed_params(request)
    rt = runtime_of(request)
    desk = desk_of(rt)
    omit_zero = params.get("omitZeroBalances", "").lower() == "true"
    balances = [
        {"asset": asset, "free": _fmt8(free), "locked": _fmt8(locked)}
        for asset, (free, locked) in desk.account.balances().items()
        if not (omit_zero and free == 0 and locked == 0)
    ]
    maker, taker = rt.spec.maker_fee, rt.spec.taker_fee
    return _json(
        {
            "makerCommission": round(maker * 10_000),
            "takerCommission": round(taker * 10_000),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": _fmt8(maker),
                "taker": _fmt8(taker),
                "buyer": _fmt8(0.0),
                "seller": _fmt8(0.0),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": rt.clock(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }
    )


async def my_trades(request: web.Request) -> web.Response:
    """Answer GET /api/v3/myTrades (``orderId``, ``fromId``, ``startTime``/``endTime``, ``limit``)."""
    params = await signed_params(request)
    desk = desk_of(runtime_of(request))
    symbol = _required(params, "symbol")
    limit = limit_param(request, MY_TRADES_DEFAULT_LIMIT, MAX_LIST_LIMIT)
    order_id = _integer(params, "orderId")
    from_id = _integer(params, "fromId")
    start, end = _integer(params, "startTime"), _integer(params, "endTime")
    trades = _account_call(desk.account.trades_of, symbol)
    selected = [
        t
        for t in trades
        if (order_id is None or t.order_id == order_id)
        and (from_id is None or t.trade_id >= from_id)
        and (start is None or t.time_ms >= start)
        and (end is None or t.time_ms <= end)
    ]
    selected = selected[:limit] if from_id is not None or start is not None else selected[-limit:]
    return _json([trade_json(t, *desk.formats[t.symbol]) for t in selected])


def register(router: web.UrlDispatcher) -> None:
    """Add the signed order endpoints to a router."""
    router.add_post("/api/v3/order", new_order)
    router.add_get("/api/v3/order", query_order)
    router.add_delete("/api/v3/order", cancel_order)
    router.add_get("/api/v3/openOrders", open_orders)
    router.add_get("/api/v3/allOrders", all_orders)
    router.add_get("/api/v3/account", account_info)
    router.add_get("/api/v3/myTrades", my_trades)
