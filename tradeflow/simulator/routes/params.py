"""Query-parameter parsing with Binance's error codes."""

from __future__ import annotations

import json

from aiohttp import web

from tradeflow.simulator.errors import (
    bad_symbol,
    illegal_chars,
    invalid_parameter,
    mandatory_param,
)
from tradeflow.simulator.market import VenueMarket
from tradeflow.simulator.venue import SimulatedVenue, UnknownSymbolError


def optional_int(request: web.Request, name: str) -> int | None:
    """Return an integer parameter, or None if absent.

    Raises:
        BinanceError: -1100 if it is not a non-negative integer.
    """
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise illegal_chars(name)
    return int(raw)


def limit_param(request: web.Request, default: int, maximum: int) -> int:
    """Return ``limit``, checked against Binance's range 1..maximum.

    Raises:
        BinanceError: -1100 if not an integer, -1130 if out of range.
    """
    limit = optional_int(request, "limit")
    if limit is None:
        return default
    if limit < 1 or limit > maximum:
        raise invalid_parameter("limit")
    return limit


def required_str(request: web.Request, name: str) -> str:
    """Return a mandatory string parameter.

    Raises:
        BinanceError: -1102 if absent or empty.
    """
    raw = request.query.get(name)
    if not raw:
        raise mandatory_param(name)
    return raw


def market_param(venue: SimulatedVenue, request: web.Request) -> VenueMarket:
    """Return the market named by the mandatory ``symbol`` parameter.

    Raises:
        BinanceError: -1102 if absent, -1121 if the venue does not list it.
    """
    return lookup_market(venue, required_str(request, "symbol"))


def lookup_market(venue: SimulatedVenue, exchange_id: str) -> VenueMarket:
    """Return a market by exchange id such as "BTCUSDT".

    Raises:
        BinanceError: -1121 if the venue does not list it.
    """
    if "/" in exchange_id:
        raise bad_symbol()
    try:
        return venue.market(exchange_id)
    except UnknownSymbolError:
        raise bad_symbol() from None


def markets_param(venue: SimulatedVenue, request: web.Request) -> list[VenueMarket] | None:
    """Return the markets selected by ``symbol`` or ``symbols`` (a JSON array), None if neither.

    Raises:
        BinanceError: -1121 for an unlisted symbol, -1100 for a malformed ``symbols``.
    """
    if request.query.get("symbol"):
        return [market_param(venue, request)]
    raw = request.query.get("symbols")
    if raw is None:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        raise illegal_chars("symbols") from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise illegal_chars("symbols")
    return [lookup_market(venue, name) for name in names]
