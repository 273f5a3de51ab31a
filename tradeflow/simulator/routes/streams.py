"""Binance-format websocket market streams served from the venue's live layer.

Endpoints, as on ``stream.binance.com``:

- ``/ws`` and ``/ws/<streams>``: raw streams; events are sent bare. A path segment that is a
  stream name (``/ws/btcusdt@trade``, several joined by ``/``) subscribes at connect; anything
  else (ccxt.pro connects to ``/ws/0``, ``/ws/1``, ...) just opens a connection.
- ``/stream?streams=a/b``: combined streams; events are wrapped as ``{"stream": .., "data": ..}``.

On any connection the client may send ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE", "params": [..],
"id": 1}`` (answered ``{"result": null, "id": 1}``), ``LIST_SUBSCRIPTIONS``, and
``SET_PROPERTY``/``GET_PROPERTY`` for ``combined``.

Streams per symbol (lower-case exchange id):

- ``<s>@depth@100ms`` and ``<s>@depth`` (1000 ms): ``depthUpdate`` diffs with ``U``/``u``. The
  1000 ms stream merges the 100 ms diffs of a second, but never across a skipped id, so a gap
  stays visible.
- ``<s>@depth5|10|20[@100ms]``: partial book (``lastUpdateId``, ``bids``, ``asks``).
- ``<s>@trade``, ``<s>@aggTrade`` (one trade per aggregate).
- ``<s>@ticker`` (``24hrTicker`` with ``b``/``B``/``a``/``A``), ``<s>@miniTicker``, once a second;
  ``<s>@bookTicker`` with every book change.
- ``<s>@kline_<interval>``: the venue's kline for the running interval once a second
  (``x: false``) and the finished one (``x: true``) as soon as the interval ends. Klines are the
  same model as REST ``/api/v3/klines``.

The server pings every 20 s (aiohttp's heartbeat; ccxt answers with pongs) and answers pings.
A connection whose send queue backs up beyond :data:`MAX_QUEUED` messages is closed, as Binance
drops slow consumers. Server-side compression is off: it would cost more CPU than it saves on
loopback, and Binance does not compress these streams either.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from tradeflow.simulator import payloads
from tradeflow.simulator.live import DepthDiff, LiveTrade, LiveVenue, live_of
from tradeflow.simulator.market import VenueMarket
from tradeflow.simulator.runtime import VenueRuntime, runtime_of
from tradeflow.simulator.timeframes import INTERVAL_MINUTES, MINUTE_MS

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 20.0
"""Server ping interval (Binance pings every 20 s)."""

MAX_QUEUED = 20_000
"""A connection with more unsent messages than this is too slow and is closed."""

_PARTIAL_LEVELS = {"depth5": 5, "depth10": 10, "depth20": 20}


@dataclass(eq=False)  # hashed by identity: connections live in sets
class _Connection:
    """One websocket client: its subscriptions and an ordered send queue."""

    ws: web.WebSocketResponse
    combined: bool
    streams: set[str] = field(default_factory=set)
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    closing: bool = False
    closer: asyncio.Task[bool] | None = None  # kept so the closing task is not garbage-collected

    def send(self, text: str) -> None:
        if self.closing:
            return
        if self.queue.qsize() >= MAX_QUEUED:
            log.warning("closing a websocket client that is %d messages behind", MAX_QUEUED)
            self.closing = True
            self.closer = asyncio.get_running_loop().create_task(
                self.ws.close(code=WSCloseCode.POLICY_VIOLATION)
            )
            return
        self.queue.put_nowait(text)

    async def write(self) -> None:
        queue, ws = self.queue, self.ws
        while True:
            text = await queue.get()
            if text is None or ws.closed:
                return
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return


@dataclass
class _DepthWindow:
    """Diffs of one symbol merged for the 1000 ms depth stream."""

    first: int = 0
    last: int = 0
    event_time: int = 0
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.last == 0


def parse_stream(name: str, symbols: Iterable[str]) -> tuple[str, str] | None:
    """Split a stream name into (exchange id, channel), or None when it is not one we serve.

    Args:
        name: E.g. ``btcusdt@depth@100ms``, ``ethusdt@kline_1m``.
        symbols: The venue's exchange ids (upper case).

    Returns:
        (``BTCUSDT``, ``depth@100ms``), or None.
    """
    symbol, sep, channel = name.partition("@")
    if not sep or symbol != symbol.lower() or symbol.upper() not in symbols:
        return None
    if channel in ("depth", "depth@1000ms", "depth@100ms", "trade", "aggTrade", "ticker", "miniTicker"):
        return symbol.upper(), channel
    if channel == "bookTicker":
        return symbol.upper(), channel
    base, _, speed = channel.partition("@")
    if base in _PARTIAL_LEVELS and speed in ("", "100ms", "1000ms"):
        return symbol.upper(), channel
    if channel.startswith("kline_") and channel[len("kline_") :] in INTERVAL_MINUTES:
        return symbol.upper(), channel
    return None


class StreamHub:
    """Every websocket connection of one venue, fed by its live layer."""

    def __init__(self, runtime: VenueRuntime, live: LiveVenue) -> None:
        self._runtime = runtime
        self._live = live
        self._symbols = set(live.symbols)
        self._connections: set[_Connection] = set()
        self._subscribers: dict[str, set[_Connection]] = {}
        self._windows: dict[str, _DepthWindow] = {s: _DepthWindow() for s in live.symbols}
        self._kline_open: dict[str, int] = {}
        self._second = 0
        self._formats: dict[str, tuple[str, str]] = {}
        self.messages_sent = 0
        live.add_listener(self)

    # -- connections -------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Return the number of open websocket connections."""
        return len(self._connections)

    def add(self, connection: _Connection) -> None:
        """Register a new connection (no subscriptions yet)."""
        self._connections.add(connection)

    def remove(self, connection: _Connection) -> None:
        """Forget a connection and its subscriptions."""
        self._connections.discard(connection)
        for stream in connection.streams:
            subscribers = self._subscribers.get(stream)
            if subscribers is not None:
                subscribers.discard(connection)
                if not subscribers:
                    del self._subscribers[stream]
        connection.streams.clear()

    def subscribe(self, connection: _Connection, streams: Iterable[str]) -> list[str]:
        """Subscribe a connection; return the names that are not streams we serve."""
        unknown: list[str] = []
        for stream in streams:
            if parse_stream(stream, self._symbols) is None:
                unknown.append(stream)
                continue
            connection.streams.add(stream)
            self._subscribers.setdefault(stream, set()).add(connection)
        return unknown

    def unsubscribe(self, connection: _Connection, streams: Iterable[str]) -> None:
        """Remove streams from a connection's subscriptions (unknown names are ignored)."""
        for stream in streams:
            connection.streams.discard(stream)
            subscribers = self._subscribers.get(stream)
            if subscribers is not None:
                subscribers.discard(connection)
                if not subscribers:
                    del self._subscribers[stream]

    async def disconnect(self, symbol: str | None = None) -> int:
        """Close every connection (or those subscribed to a symbol's streams); return how many."""
        prefix = None if symbol is None else self._live.exchange_id(symbol).lower() + "@"
        chosen = [
            c
            for c in self._connections
            if prefix is None or any(stream.startswith(prefix) for stream in c.streams)
        ]
        for connection in chosen:
            connection.closing = True
            self.remove(connection)
            connection.queue.put_nowait(None)
        await asyncio.gather(
            *(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"disconnected by the venue") for c in chosen),
            return_exceptions=True,
        )
        return len(chosen)

    async def close_all(self) -> None:
        """Close every connection (server shutdown)."""
        await self.disconnect(None)

    # -- method messages ---------------------------------------------------------------------

    def handle_text(self, connection: _Connection, text: str) -> str:
        """Answer one client message (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, ...)."""
        try:
            message = json.loads(text)
        except ValueError as exc:
            return _error(3, f"Invalid JSON: {exc}", None)
        if not isinstance(message, dict):
            return _error(2, "Invalid request: expected an object", None)
        request_id = message.get("id")
        if request_id is not None and not isinstance(request_id, int | str):
            return _error(2, "Invalid request: request ID must be an unsigned integer", None)
        method = message.get("method")
        params = message.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return _error(2, "Invalid request: params must be a list of stream names", request_id)
            if method == "UNSUBSCRIBE":
                self.unsubscribe(connection, params)
                return _result(None, request_id)
            unknown = self.subscribe(connection, params)
            if unknown:
                return _error(2, f"Invalid request: unknown stream(s) {', '.join(unknown)}", request_id)
            return _result(None, request_id)
        if method == "LIST_SUBSCRIPTIONS":
            return _result(sorted(connection.streams), request_id)
        if method == "SET_PROPERTY":
            if isinstance(params, list) and len(params) == 2 and params[0] == "combined":
                if not isinstance(params[1], bool):
                    return _error(1, "Invalid value type: expected Boolean", request_id)
                connection.combined = params[1]
                return _result(None, request_id)
            return _error(0, "Unknown property", request_id)
        if method == "GET_PROPERTY":
            if isinstance(params, list) and params == ["combined"]:
                return _result(connection.combined, request_id)
            return _error(0, "Unknown property", request_id)
        return _error(2, f"Invalid request: unknown method {method!r}", request_id)

    # -- publishing (LiveListener) -----------------------------------------------------------

    def on_depth(self, diff: DepthDiff) -> None:
        """Publish a 100 ms diff, fold it into the 1000 ms window, update book tickers."""
        lower = diff.symbol.lower()
        self._publish(f"{lower}@depth@100ms", lambda: self._depth_text(diff))
        if lower + "@depth" in self._subscribers or lower + "@depth@1000ms" in self._subscribers:
            window = self._windows[diff.symbol]
            if not window.empty and diff.first_update_id != window.last + 1:
                self._flush_window(diff.symbol)  # never merge across skipped ids: keep a gap visible
                window = self._windows[diff.symbol]
            if window.empty:
                window.first = diff.first_update_id
            window.last = diff.final_update_id
            window.event_time = diff.event_time
            window.bids.update(diff.bids)
            window.asks.update(diff.asks)
        self._publish(f"{lower}@bookTicker", lambda: self._book_ticker_text(diff))
        for levels in _PARTIAL_LEVELS:
            self._publish(
                f"{lower}@{levels}@100ms", functools.partial(self._partial_text, diff.symbol, levels)
            )

    def on_trade(self, trade: LiveTrade) -> None:
        """Publish a trade on the trade and aggTrade streams."""
        lower = trade.symbol.lower()
        self._publish(f"{lower}@trade", lambda: self._trade_text(trade, aggregate=False))
        self._publish(f"{lower}@aggTrade", lambda: self._trade_text(trade, aggregate=True))

    def on_step(self, now_ms: int) -> None:
        """Close finished klines; once a second, publish tickers, klines and 1000 ms depth."""
        if not self._subscribers:
            self._second = now_ms // 1000
            return
        for stream, (symbol, channel) in self._kline_streams():
            width = INTERVAL_MINUTES[channel[len("kline_") :]] * MINUTE_MS
            open_ms = now_ms - now_ms % width
            previous = self._kline_open.get(stream)
            if previous is not None and previous < open_ms:
                self._kline_open[stream] = open_ms
                self._publish(stream, functools.partial(self._kline_text, symbol, channel, previous, now_ms))
        second = now_ms // 1000
        if second == self._second:
            return
        self._second = second
        for symbol in self._live.symbols:
            lower = symbol.lower()
            self._flush_window(symbol)
            self._publish(f"{lower}@ticker", functools.partial(self._ticker_text, symbol, now_ms, full=True))
            self._publish(
                f"{lower}@miniTicker", functools.partial(self._ticker_text, symbol, now_ms, full=False)
            )
            for levels in _PARTIAL_LEVELS:
                for suffix in ("", "@1000ms"):
                    self._publish(
                        f"{lower}@{levels}{suffix}", functools.partial(self._partial_text, symbol, levels)
                    )
        for stream, (symbol, channel) in self._kline_streams():
            width = INTERVAL_MINUTES[channel[len("kline_") :]] * MINUTE_MS
            open_ms = now_ms - now_ms % width
            self._kline_open[stream] = open_ms
            self._publish(stream, functools.partial(self._kline_text, symbol, channel, open_ms, now_ms))

    # -- internals ---------------------------------------------------------------------------

    def _kline_streams(self) -> list[tuple[str, tuple[str, str]]]:
        out: list[tuple[str, tuple[str, str]]] = []
        for stream in self._subscribers:
            if "@kline_" in stream:
                parsed = parse_stream(stream, self._symbols)
                if parsed is not None:
                    out.append((stream, parsed))
        return out

    def _publish(self, stream: str, render: Callable[[], str]) -> None:
        subscribers = self._subscribers.get(stream)
        if not subscribers:
            return
        data = render()
        if not data:
            return
        wrapped: str | None = None
        for connection in subscribers:
            if connection.combined:
                if wrapped is None:
                    wrapped = f'{{"stream":"{stream}","data":{data}}}'
                connection.send(wrapped)
            else:
                connection.send(data)
            self.messages_sent += 1

    def _format(self, symbol: str) -> tuple[str, str]:
        fmt = self._formats.get(symbol)
        if fmt is None:
            market = self._live.market(symbol)
            fmt = (market.tick.fmt, market.step.fmt)
            self._formats[symbol] = fmt
        return fmt

    def _depth_text(self, diff: DepthDiff) -> str:
        return depth_update_json(diff, *self._format(diff.symbol))

    def _flush_window(self, symbol: str) -> None:
        window = self._windows[symbol]
        if window.empty:
            return
        diff = DepthDiff(
            symbol=symbol,
            event_time=window.event_time,
            first_update_id=window.first,
            final_update_id=window.last,
            bids=list(window.bids.items()),
            asks=list(window.asks.items()),
        )
        self._windows[symbol] = _DepthWindow()
        lower = symbol.lower()
        text = self._depth_text(diff)
        self._publish(f"{lower}@depth", lambda: text)
        self._publish(f"{lower}@depth@1000ms", lambda: text)

    def _book_ticker_text(self, diff: DepthDiff) -> str:
        bid, ask = self._live.best(diff.symbol)
        if bid is None or ask is None:
            return ""
        price_fmt, qty_fmt = self._format(diff.symbol)
        return (
            f'{{"u":{diff.final_update_id},"s":"{diff.symbol}","b":"{price_fmt % bid[0]}",'
            f'"B":"{qty_fmt % bid[1]}","a":"{price_fmt % ask[0]}","A":"{qty_fmt % ask[1]}"}}'
        )

    def _partial_text(self, symbol: str, levels: str) -> str:
        book = self._live.snapshot(symbol, _PARTIAL_LEVELS[levels.partition("@")[0]])
        market = self._live.market(symbol)
        return payloads.depth(book, market)

    def _trade_text(self, trade: LiveTrade, *, aggregate: bool) -> str:
        price_fmt, qty_fmt = self._format(trade.symbol)
        price, qty = price_fmt % trade.price, qty_fmt % trade.quantity
        maker = "true" if trade.buyer_is_maker else "false"
        now = self._runtime.clock()
        if aggregate:
            return (
                f'{{"e":"aggTrade","E":{now},"s":"{trade.symbol}","a":{trade.trade_id},"p":"{price}",'
                f'"q":"{qty}","f":{trade.trade_id},"l":{trade.trade_id},"T":{trade.time},"m":{maker},"M":true}}'
            )
        return (
            f'{{"e":"trade","E":{now},"s":"{trade.symbol}","t":{trade.trade_id},"p":"{price}",'
            f'"q":"{qty}","T":{trade.time},"m":{maker},"M":true}}'
        )

    def _ticker_text(self, symbol: str, now_ms: int, *, full: bool) -> str:
        market = self._live.market(symbol)
        stats = payloads.ticker_24h(self._live.ticker(symbol, now_ms), market)
        if not full:
            return payloads.dumps(
                {
                    "e": "24hrMiniTicker",
                    "E": now_ms,
                    "s": symbol,
                    "c": stats["lastPrice"],
                    "o": stats["openPrice"],
                    "h": stats["highPrice"],
                    "l": stats["lowPrice"],
                    "v": stats["volume"],
                    "q": stats["quoteVolume"],
                }
            )
        return payloads.dumps(
            {
                "e": "24hrTicker",
                "E": now_ms,
                "s": symbol,
                "p": stats["priceChange"],
                "P": stats["priceChangePercent"],
                "w": stats["weightedAvgPrice"],
                "x": stats["prevClosePrice"],
                "c": stats["lastPrice"],
                "Q": stats["lastQty"],
                "b": stats["bidPrice"],
                "B": stats["bidQty"],
                "a": stats["askPrice"],
                "A": stats["askQty"],
                "o": stats["openPrice"],
                "h": stats["highPrice"],
                "l": stats["lowPrice"],
                "v": stats["volume"],
                "q": stats["quoteVolume"],
                "O": stats["openTime"],
                "C": stats["closeTime"],
                "F": stats["firstId"],
                "L": stats["lastId"],
                "n": stats["count"],
            }
        )

    def _kline_text(self, symbol: str, channel: str, open_ms: int, now_ms: int) -> str:
        interval = channel[len("kline_") :]
        width = INTERVAL_MINUTES[interval] * MINUTE_MS
        market: VenueMarket = self._live.market(symbol)
        candles = self._runtime.venue.query_klines(
            symbol, interval, start_ms=open_ms, end_ms=open_ms, limit=1, now_ms=now_ms
        )
        if not len(candles):
            return ""  # a hole in the venue's klines: REST has no candle either
        closed = now_ms >= open_ms + width
        price_fmt, qty_fmt = market.tick.fmt, market.step.fmt
        k = {
            "t": open_ms,
            "T": open_ms + width - 1,
            "s": symbol,
            "i": interval,
            "f": -1,  # the kline model does not track trade ids
            "L": -1,
            "o": price_fmt % float(candles.open[0]),
            "c": price_fmt % float(candles.close[0]),
            "h": price_fmt % float(candles.high[0]),
            "l": price_fmt % float(candles.low[0]),
            "v": qty_fmt % float(candles.volume[0]),
            "n": int(candles.trades[0]),
            "x": closed,
            "q": f"{float(candles.quote_volume[0]):.8f}",
            "V": qty_fmt % float(candles.taker_base[0]),
            "Q": f"{float(candles.taker_quote[0]):.8f}",
            "B": "0",
        }
        return payloads.dumps({"e": "kline", "E": now_ms, "s": symbol, "k": k})


def depth_update_json(diff: DepthDiff, price_format: str, quantity_format: str) -> str:
    """Return a diff as Binance's ``depthUpdate`` message text, exactly as the streams send it.

    Args:
        diff: The diff.
        price_format: The symbol's price %-format (its tick grid), e.g. ``%.2f000000``.
        quantity_format: The symbol's quantity %-format (its step grid).
    """
    level = f'["{price_format}","{quantity_format}"]'
    bids = ",".join(map(level.__mod__, diff.bids))
    asks = ",".join(map(level.__mod__, diff.asks))
    return (
        f'{{"e":"depthUpdate","E":{diff.event_time},"s":"{diff.symbol}","U":{diff.first_update_id},'
        f'"u":{diff.final_update_id},"b":[{bids}],"a":[{asks}]}}'
    )


def _result(result: object, request_id: object) -> str:
    return payloads.dumps({"result": result, "id": request_id})


def _error(code: int, message: str, request_id: object) -> str:
    return payloads.dumps({"error": {"code": code, "msg": message}, "id": request_id})


def hub_of(runtime: VenueRuntime) -> StreamHub:
    """Return the venue's stream hub, creating it (and starting the live layer) on first use."""
    live = live_of(runtime)
    hub = runtime.streams
    if hub is None:
        hub = StreamHub(runtime, live)
        runtime.streams = hub
        runtime.on_close.append(hub.close_all)
    return hub


async def _serve(request: web.Request, streams: list[str], combined: bool) -> web.StreamResponse:
    hub = hub_of(runtime_of(request))
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    connection = _Connection(ws, combined)
    hub.add(connection)
    hub.subscribe(connection, streams)
    writer = asyncio.get_running_loop().create_task(connection.write())
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                connection.send(hub.handle_text(connection, message.data))
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        hub.remove(connection)
        connection.queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return ws


async def raw_streams(request: web.Request) -> web.StreamResponse:
    """Serve ``/ws`` and ``/ws/<anything>``: raw streams, subscribing to a stream path."""
    rt = runtime_of(request)
    tail = request.match_info.get("tail", "")
    symbols = set(live_of(rt).symbols)
    streams = [name for name in tail.split("/") if name and parse_stream(name, symbols) is not None]
    return await _serve(request, streams, combined=False)


async def combined_streams(request: web.Request) -> web.StreamResponse:
    """Serve ``/stream?streams=a/b``: combined streams."""
    names = [name for name in request.query.get("streams", "").split("/") if name]
    return await _serve(request, names, combined=True)


def register(router: web.UrlDispatcher) -> None:
    """Add the websocket endpoints to a router."""
    router.add_get("/ws", raw_streams)
    router.add_get("/ws/{tail:.*}", raw_streams)
    router.add_get("/stream", combined_streams)
