"""General endpoints: connectivity, server time and exchange information."""

from __future__ import annotations

from aiohttp import web

from tradeflow.simulator import payloads
from tradeflow.simulator.routes.params import markets_param
from tradeflow.simulator.runtime import runtime_of


def _json(body: str) -> web.Response:
    return web.Response(text=body, content_type="application/json")


async def ping(request: web.Request) -> web.Response:
    """Answer GET /api/v3/ping with ``{}``."""
    return _json("{}")


async def server_time(request: web.Request) -> web.Response:
    """Answer GET /api/v3/time with the server time."""
    return _json(payloads.dumps({"serverTime": runtime_of(request).clock()}))


async def exchange_info(request: web.Request) -> web.Response:
    """Answer GET /api/v3/exchangeInfo, optionally filtered by ``symbol``/``symbols``."""
    rt = runtime_of(request)
    markets = markets_param(rt.venue, request)
    if markets is None:
        markets = [rt.venue.market(s.symbol) for s in rt.venue.symbols]
    body = payloads.exchange_info(markets, rt.spec.weight_limit_per_minute, rt.clock())
    return _json(body)


def register(router: web.UrlDispatcher) -> None:
    """Add the general endpoints to a router."""
    router.add_get("/api/v3/ping", ping)
    router.add_get("/api/v3/time", server_time)
    router.add_get("/api/v3/exchangeInfo", exchange_info)
