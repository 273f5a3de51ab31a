"""Test controls of the order endpoints (under ``/_sim/``: no weight, latency or transport faults).

- ``POST /_sim/orders/fault?kind=K&count=N[&seconds=S]`` queues ``N`` (default 1) faults of kind
  ``K`` for the next order placements (``POST /api/v3/order``), in order:

  - ``timeout_after_accept``: the order is accepted and matched, but the answer is held back
    ``S`` seconds (default 30, longer than any sane client timeout): the client times out not
    knowing the outcome.
  - ``error_after_accept``: the order is accepted and matched, then the answer is an HTTP 503
    (plain text, as a load balancer sends it): the outcome is unknown to the client.
  - ``reject``: the placement is refused before the matching engine sees it, with an HTTP 503
    and Binance's -1001 "Internal error": nothing is recorded, a retry may succeed.

  ``kind=clear`` drops the queued faults. The answer lists the queue.
- ``GET /_sim/orders``: every order the venue ever accepted (as ``GET /api/v3/order`` prints
  it, plus its ``fills``), every refused placement (``rejections``: time, symbol,
  clientOrderId, code, msg) and the account's ``balances`` (asset -> free, locked).
"""

from __future__ import annotations

from aiohttp import web

from tradeflow.simulator import payloads
from tradeflow.simulator.routes.orders import FAULT_KINDS, desk_of, order_json, trade_json
from tradeflow.simulator.runtime import runtime_of

MAX_FAULT_COUNT = 1000


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(text=payloads.dumps(body), status=status, content_type="application/json")


def _bad(message: str) -> web.Response:
    return _json({"error": message}, status=400)


async def order_fault(request: web.Request) -> web.Response:
    """Queue (or clear) faults of the next order placements."""
    desk = desk_of(runtime_of(request))
    kind = request.query.get("kind", "")
    if kind == "clear":
        desk.faults.clear()
        return _json({"pending": list(desk.faults)})
    if kind not in FAULT_KINDS:
        return _bad(f"kind must be one of {', '.join(FAULT_KINDS)} or clear, got {kind!r}")
    try:
        count = int(request.query.get("count", "1"))
        seconds = float(request.query["seconds"]) if "seconds" in request.query else None
    except ValueError:
        return _bad("count must be an integer and seconds a number")
    if not 1 <= count <= MAX_FAULT_COUNT:
        return _bad(f"count must be in 1..{MAX_FAULT_COUNT}, got {count}")
    if seconds is not None:
        if seconds < 0:
            return _bad(f"seconds must not be negative, got {seconds}")
        desk.fault_seconds = seconds
    desk.faults.extend([kind] * count)
    return _json({"pending": list(desk.faults), "seconds": desk.fault_seconds})


async def received_orders(request: web.Request) -> web.Response:
    """List every accepted order (with fills), every refused placement and the balances."""
    desk = desk_of(runtime_of(request))
    account = desk.account
    orders = []
    for order in account.orders:
        tick, step = desk.formats[order.symbol]
        item = order_json(order, tick, step)
        item["fills"] = [trade_json(t, tick, step) for t in order.trades]
        orders.append(item)
    rejections = [
        {
            "time": r.time_ms,
            "symbol": r.symbol,
            "clientOrderId": r.client_order_id,
            "code": r.code,
            "msg": r.msg,
        }
        for r in account.rejections
    ]
    balances = {
        asset: {"free": free, "locked": locked} for asset, (free, locked) in account.balances().items()
    }
    return _json({"orders": orders, "rejections": rejections, "balances": balances})


def register(router: web.UrlDispatcher) -> None:
    """Add the order test controls to a router."""
    router.add_post("/_sim/orders/fault", order_fault)
    router.add_get("/_sim/orders", received_orders)
