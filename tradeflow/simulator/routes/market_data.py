"""Market-data endpoints: klines, depth, recent trades and tickers."""

from __future__ import annotations

import numpy as np
from aiohttp import web

from tradeflow.simulator import payloads
from tradeflow.simulator.errors import bad_interval
from tradeflow.simulator.market import VenueMarket
from tradeflow.simulator.routes.params import (
    limit_param,
    market_param,
    markets_param,
    optional_int,
    required_str,
)
from tradeflow.simulator.runtime import runtime_of
from tradeflow.simulator.timeframes import INTERVAL_MINUTES, MINUTE_MS
from tradeflow.simulator.venue import SimulatedVenue

KLINES_DEFAULT_LIMIT = 500
KLINES_MAX_LIMIT = 1000
DEPTH_DEFAULT_LIMIT = 100
DEPTH_MAX_LIMIT = 5000
TRADES_DEFAULT_LIMIT = 500
TRADES_MAX_LIMIT = 1000


def _json(body: str) -> web.Response:
    return web.Response(text=body, content_type="application/json")


async def klines(request: web.Request) -> web.Response:
    """Answer GET /api/v3/klines with Binance's startTime/endTime/limit semantics."""
    rt = runtime_of(request)
    market = market_param(rt.venue, request)
    interval = required_str(request, "interval")
    if interval not in INTERVAL_MINUTES:
        raise bad_interval()
    limit = limit_param(request, KLINES_DEFAULT_LIMIT, KLINES_MAX_LIMIT)
    start = optional_int(request, "startTime")
    end = optional_int(request, "endTime")
    candles = rt.venue.query_klines(
        market.spec.symbol,
        interval,
        start_ms=start,
        end_ms=end,
        limit=limit,
        now_ms=rt.clock(),
    )
    return _json(payloads.klines(candles, market, INTERVAL_MINUTES[interval] * MINUTE_MS))


async def depth(request: web.Request) -> web.Response:
    """Answer GET /api/v3/depth.

    Once the venue's live layer runs (a websocket client connected, or an order arrived), the
    snapshot comes from the live book with the ``lastUpdateId`` of its diff stream, so Binance's
    sync procedure works; before that, from the static per-second model.
    """
    rt = runtime_of(request)
    market = market_param(rt.venue, request)
    limit = limit_param(request, DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT)
    live = rt.live
    if live is not None and live.running:
        symbol = market.spec.exchange_id
        live.depth_requests.append((rt.clock(), symbol))
        return _json(payloads.depth(live.snapshot(symbol, limit), market))
    book = rt.venue.order_book(market.spec.symbol, limit, rt.clock())
    return _json(payloads.depth(book, market))


async def trades(request: web.Request) -> web.Response:
    """Answer GET /api/v3/trades with the most recent trades, oldest first."""
    rt = runtime_of(request)
    market = market_param(rt.venue, request)
    limit = limit_param(request, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
    batch = rt.venue.recent_trades(market.spec.symbol, limit, rt.clock())
    return _json(payloads.trades(batch, market))


def _selected(venue: SimulatedVenue, request: web.Request) -> tuple[list[VenueMarket], bool]:
    markets = markets_param(venue, request)
    single = bool(request.query.get("symbol"))
    if markets is None:
        markets = [venue.market(s.symbol) for s in venue.symbols]
    return markets, single


async def ticker_24hr(request: web.Request) -> web.Response:
    """Answer GET /api/v3/ticker/24hr: an object for ``symbol``, else a list."""
    rt = runtime_of(request)
    markets, single = _selected(rt.venue, request)
    now = rt.clock()
    items = [payloads.ticker_24h(m.ticker_24h(now), m) for m in markets]
    return _json(payloads.dumps(items[0] if single else items))


async def ticker_price(request: web.Request) -> web.Response:
    """Answer GET /api/v3/ticker/price: an object for ``symbol``, else a list."""
    rt = runtime_of(request)
    markets, single = _selected(rt.venue, request)
    now = np.asarray([rt.clock()], dtype=np.int64)
    items = [payloads.ticker_price(m, float(m.price_at(now)[0])) for m in markets]
    return _json(payloads.dumps(items[0] if single else items))


def register(router: web.UrlDispatcher) -> None:
    """Add the market-data endpoints to a router."""
    router.add_get("/api/v3/klines", klines)
    router.add_get("/api/v3/depth", depth)
    router.add_get("/api/v3/trades", trades)
    router.add_get("/api/v3/ticker/24hr", ticker_24hr)
    router.add_get("/api/v3/ticker/price", ticker_price)
