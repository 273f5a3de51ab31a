"""Test controls of the websocket streams: disconnect, sequence gap, stall (under ``/_sim/``).

- ``POST /_sim/streams/disconnect[?symbol=BTCUSDT]``: close every websocket connection, or those
  subscribed to a symbol's streams. Answers ``{"disconnected": n}``.
- ``POST /_sim/streams/gap?symbol=BTCUSDT&skip=5``: the symbol's next depth diff skips ``skip``
  update ids (a client in sync sees ``U > previous u + 1``).
- ``POST /_sim/streams/stall?symbol=BTCUSDT&seconds=3``: no depth diffs for the symbol for that
  long; connections stay open and other streams keep flowing. The book keeps changing; the held
  changes go out in one diff when the stall ends.
- ``GET /_sim/streams``: the live layer's state: whether it runs, open connections, each
  symbol's update id, and the time and symbol of every REST depth request served from it.

They start the live layer if it is not running yet. The server's middleware lets ``/_sim/``
through without weight, latency or faults.
"""

from __future__ import annotations

import json

from aiohttp import web

from tradeflow.simulator.errors import BinanceError, bad_symbol, illegal_chars, mandatory_param
from tradeflow.simulator.live import live_of
from tradeflow.simulator.routes.streams import hub_of
from tradeflow.simulator.runtime import runtime_of


def _json(body: object) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), content_type="application/json")


def _symbol(request: web.Request, symbols: list[str], *, required: bool) -> str | None:
    raw = request.query.get("symbol")
    if not raw:
        if required:
            raise mandatory_param("symbol")
        return None
    name = raw.replace("/", "").upper()
    if name not in symbols:
        raise bad_symbol()
    return name


def _number(request: web.Request, name: str) -> float:
    raw = request.query.get(name)
    if not raw:
        raise mandatory_param(name)
    try:
        value = float(raw)
    except ValueError:
        raise illegal_chars(name) from None
    if value <= 0:
        raise BinanceError(400, -1130, f"Data sent for parameter '{name}' is not valid.")
    return value


async def disconnect(request: web.Request) -> web.Response:
    """Close websocket connections (all, or those subscribed to ``symbol``)."""
    hub = hub_of(runtime_of(request))
    symbol = _symbol(request, live_of(runtime_of(request)).symbols, required=False)
    return _json({"disconnected": await hub.disconnect(symbol)})


async def gap(request: web.Request) -> web.Response:
    """Make the next depth diff of ``symbol`` skip ``skip`` update ids."""
    live = live_of(runtime_of(request))
    symbol = _symbol(request, live.symbols, required=True)
    assert symbol is not None
    skip = int(_number(request, "skip"))
    live.inject_gap(symbol, skip)
    return _json({"symbol": symbol, "skip": skip})


async def stall(request: web.Request) -> web.Response:
    """Hold back the depth diffs of ``symbol`` for ``seconds``."""
    live = live_of(runtime_of(request))
    symbol = _symbol(request, live.symbols, required=True)
    assert symbol is not None
    seconds = _number(request, "seconds")
    live.stall(symbol, seconds)
    return _json({"symbol": symbol, "seconds": seconds})


async def status(request: web.Request) -> web.Response:
    """Describe the live layer (for tests and operators)."""
    rt = runtime_of(request)
    live = live_of(rt)
    hub = rt.streams
    return _json(
        {
            "running": live.running,
            "steps": live.steps,
            "connections": 0 if hub is None else hub.connections,
            "update_ids": {symbol: live.update_id(symbol) for symbol in live.symbols},
            "depth_requests": [[t, symbol] for t, symbol in live.depth_requests],
        }
    )


def register(router: web.UrlDispatcher) -> None:
    """Add the stream controls to a router."""
    router.add_post("/_sim/streams/disconnect", disconnect)
    router.add_post("/_sim/streams/gap", gap)
    router.add_post("/_sim/streams/stall", stall)
    router.add_get("/_sim/streams", status)
