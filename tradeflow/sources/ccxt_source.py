"""The ccxt adapter: the only module that imports ccxt for market data.

It builds a synchronous ccxt exchange (one per task thread: ccxt instances are not thread-safe),
points it at an optional base URL (testnet, proxy, the local simulator), and turns ccxt's
exceptions and odd payloads into :mod:`tradeflow.sources.base` errors that ingestion knows how to
retry. Shapes are checked here, at the boundary: a truncated JSON body comes back from ccxt as a
plain string rather than an exception, and must not reach storage as data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import ccxt
import numpy as np

from tradeflow.sources.base import (
    OrderBookSnapshot,
    PermanentSourceError,
    RetryableSourceError,
    TradeRecord,
    UnknownSymbolError,
)

T = TypeVar("T")

#: Options every exchange gets; a venue's own ``options`` are merged over them.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    # Spot only: otherwise binance also loads its futures markets from other hosts.
    "binance": {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchTradesMethod": "publicGetTrades",
    },
}

#: Request weights of the calls ingestion makes, in the exchange's own weight units, for the
#: client-side budget. Exchanges not listed count one unit per request.
_BINANCE_DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
REQUEST_WEIGHTS: dict[str, dict[str, int]] = {
    "binance": {"load_markets": 20, "candles": 2, "trades": 25},
}


def rebase_urls(urls: Any, base_url: str) -> Any:
    """Return ccxt's ``urls['api']`` with every URL's scheme and host replaced by ``base_url``.

    The path is kept, so ``https://api.binance.com/api/v3`` becomes ``http://127.0.0.1:9001/api/v3``.
    """
    base = urlsplit(base_url)
    if isinstance(urls, str):
        parts = urlsplit(urls)
        if not parts.scheme:
            return urls
        path = base.path.rstrip("/") + parts.path
        return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))
    if isinstance(urls, Mapping):
        return {key: rebase_urls(value, base_url) for key, value in urls.items()}
    if isinstance(urls, list):
        return [rebase_urls(value, base_url) for value in urls]
    return urls


def create_exchange(
    exchange_id: str,
    *,
    base_url: str | None = None,
    timeout_seconds: float = 10.0,
    options: Mapping[str, Any] | None = None,
    api_key_env: str | None = None,
    secret_env: str | None = None,
) -> Any:
    """Return a configured synchronous ccxt exchange.

    Raises:
        PermanentSourceError: for an unknown exchange id (listing close matches) or a named
            credential variable that is not set.
    """
    if exchange_id not in ccxt.exchanges:
        import difflib

        close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=5)
        raise PermanentSourceError(
            exchange_id, f"unknown ccxt exchange id; close matches: {', '.join(close) or 'none'}"
        )
    merged = {**DEFAULT_OPTIONS.get(exchange_id, {}), **(options or {})}
    params: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(timeout_seconds * 1000),
        "options": merged,
    }
    for field, env_name in (("apiKey", api_key_env), ("secret", secret_env)):
        if env_name:
            value = os.environ.get(env_name)
            if not value:
                raise PermanentSourceError(
                    exchange_id, f"credential variable {env_name} is not set in the environment"
                )
            params[field] = value
    exchange = getattr(ccxt, exchange_id)(params)
    # The adapter reads the last raw and parsed bodies to catch truncated JSON.
    exchange.enableLastHttpResponse = True
    exchange.enableLastJsonResponse = True
    if base_url:
        exchange.urls["api"] = rebase_urls(exchange.urls["api"], base_url)
    return exchange


def _retry_after(exchange: Any) -> float | None:
    headers = getattr(exchange, "last_response_headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class CcxtMarketDataSource:
    """A :class:`~tradeflow.sources.base.MarketDataSource` backed by one ccxt exchange."""

    def __init__(
        self,
        venue: str,
        exchange: Any,
        *,
        acquire: Callable[[int], None] | None = None,
        on_rate_limited: Callable[[float], None] | None = None,
    ) -> None:
        """Wrap ``exchange`` for ``venue``.

        Args:
            venue: The venue id used in errors and storage.
            exchange: A ccxt exchange from :func:`create_exchange`.
            acquire: Called with a request's weight before it is sent (the venue's shared budget).
            on_rate_limited: Called with the Retry-After seconds when the venue answers 429.
        """
        self.venue = venue
        self.exchange = exchange
        self._acquire = acquire or (lambda weight: None)
        self._on_rate_limited = on_rate_limited or (lambda seconds: None)
        self._weights = REQUEST_WEIGHTS.get(exchange.id, {})

    def _weight(self, call: str, depth: int | None = None) -> int:
        if call == "order_book" and self.exchange.id == "binance":
            return next((w for limit, w in _BINANCE_DEPTH_WEIGHTS if (depth or 100) <= limit), 250)
        return self._weights.get(call, 1)

    def _call(self, call: str, function: Callable[[], T], *, weight: int) -> T:
        self._acquire(weight)
        try:
            result = function()
            # ccxt hands back a body it could not parse as JSON (truncated, garbled) as a plain
            # string, and parsers turn that string into an empty list: check the raw body.
            if self.exchange.last_http_response and self.exchange.last_json_response is None:
                raise RetryableSourceError(
                    self.venue,
                    f"{call}: response body is not valid JSON "
                    f"({_short(ValueError(self.exchange.last_http_response), 80)})",
                    kind="malformed",
                )
            return result
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as error:
            retry_after = _retry_after(self.exchange)
            if retry_after is not None:
                self._on_rate_limited(retry_after)
            raise RetryableSourceError(
                self.venue,
                f"{call}: rate limited ({_short(error)})",
                kind="rate_limit",
                retry_after_seconds=retry_after,
            ) from error
        except ccxt.RequestTimeout as error:
            raise RetryableSourceError(self.venue, f"{call}: timed out", kind="timeout") from error
        except ccxt.BadSymbol as error:
            raise PermanentSourceError(self.venue, f"{call}: {_short(error)}") from error
        except (ccxt.ExchangeNotAvailable, ccxt.OnMaintenance) as error:
            raise RetryableSourceError(
                self.venue, f"{call}: venue unavailable ({_short(error)})", kind="unavailable"
            ) from error
        except ccxt.NetworkError as error:
            raise RetryableSourceError(
                self.venue, f"{call}: network error ({_short(error)})", kind="network"
            ) from error
        except (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.BadRequest,
                ccxt.NotSupported) as error:  # fmt: skip
            raise PermanentSourceError(self.venue, f"{call}: {_short(error)}") from error
        except ccxt.OperationFailed as error:
            # Binance's -1001 "Internal error; ... try again" and kin: passing server trouble.
            raise RetryableSourceError(
                self.venue, f"{call}: server error ({_short(error)})", kind="server_error"
            ) from error
        except ccxt.ExchangeError as error:
            # ccxt raises a bare ExchangeError for bodies it cannot read (an HTML error page,
            # an empty 5xx body); these pass, so they are retried.
            raise RetryableSourceError(
                self.venue, f"{call}: bad response ({_short(error)})", kind="bad_response"
            ) from error
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
            # ccxt parsing a body that was not the JSON it expected (truncated, garbled).
            raise RetryableSourceError(
                self.venue, f"{call}: malformed response ({error!r})", kind="malformed"
            ) from error

    def load_markets(self) -> list[str]:
        """Return the symbols the venue lists (loading markets once)."""
        markets = self._call(
            "load_markets", lambda: self.exchange.load_markets(), weight=self._weight("load_markets")
        )
        if not isinstance(markets, dict) or not markets:
            self.exchange.markets = None
            raise RetryableSourceError(self.venue, "load_markets: empty or malformed market list",
                                       kind="malformed")  # fmt: skip
        return sorted(markets)

    def adopt_markets(self, source: CcxtMarketDataSource) -> None:
        """Reuse markets another source already loaded from the same venue (saves a request)."""
        self.exchange.set_markets(source.exchange.markets, source.exchange.currencies)

    def require_symbol(self, symbol: str) -> None:
        """Raise :class:`UnknownSymbolError` (listing what exists) unless the venue lists ``symbol``."""
        if self.exchange.markets is None:
            self.load_markets()
        if symbol not in self.exchange.markets:
            raise UnknownSymbolError(self.venue, symbol, sorted(self.exchange.markets))

    def fetch_candles(self, symbol: str, timeframe: str, since: int, until: int, limit: int) -> np.ndarray:
        """Return candles with ``since <= open time <= until`` (at most ``limit``), oldest first."""
        self.require_symbol(symbol)
        rows = self._call(
            "fetch_ohlcv",
            lambda: self.exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=limit,
                                              params={"until": until}),
            weight=self._weight("candles"),
        )  # fmt: skip
        return _candle_array(self.venue, rows)

    def fetch_order_book(self, symbol: str, depth: int) -> OrderBookSnapshot:
        """Return an order book snapshot with at most ``depth`` levels a side."""
        self.require_symbol(symbol)
        book = self._call(
            "fetch_order_book",
            lambda: self.exchange.fetch_order_book(symbol, limit=depth),
            weight=self._weight("order_book", depth),
        )
        try:
            bids = [(float(p), float(a)) for p, a, *_ in book["bids"]][:depth]
            asks = [(float(p), float(a)) for p, a, *_ in book["asks"]][:depth]
            stamp = book.get("timestamp") or self.exchange.milliseconds()
        except (TypeError, KeyError, ValueError) as error:
            raise RetryableSourceError(self.venue, f"fetch_order_book: malformed ({error!r})",
                                       kind="malformed") from error  # fmt: skip
        return OrderBookSnapshot(timestamp=int(stamp), bids=bids, asks=asks)

    def fetch_trades(self, symbol: str, limit: int) -> list[TradeRecord]:
        """Return up to ``limit`` recent public trades, oldest first."""
        self.require_symbol(symbol)
        trades = self._call(
            "fetch_trades",
            lambda: self.exchange.fetch_trades(symbol, limit=limit),
            weight=self._weight("trades"),
        )
        try:
            records = [
                TradeRecord(id=str(t["id"]), timestamp=int(t["timestamp"]), side=t.get("side"),
                            price=float(t["price"]), amount=float(t["amount"]))
                for t in trades
            ]  # fmt: skip
        except (TypeError, KeyError, ValueError) as error:
            raise RetryableSourceError(self.venue, f"fetch_trades: malformed ({error!r})",
                                       kind="malformed") from error  # fmt: skip
        return sorted(records, key=lambda r: (r.timestamp, r.id))

    def close(self) -> None:
        """Close the HTTP session."""
        session = getattr(self.exchange, "session", None)
        if session is not None:
            session.close()


def _candle_array(venue: str, rows: Any) -> np.ndarray:
    if not isinstance(rows, list):
        raise RetryableSourceError(venue, f"fetch_ohlcv: expected a list, got {type(rows).__name__}",
                                   kind="malformed")  # fmt: skip
    if not rows:
        return np.empty((0, 6))
    try:
        array = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise RetryableSourceError(
            venue, f"fetch_ohlcv: malformed rows ({error})", kind="malformed"
        ) from error
    if array.ndim != 2 or array.shape[1] != 6 or not np.isfinite(array).all():
        raise RetryableSourceError(venue, f"fetch_ohlcv: malformed rows of shape {array.shape}",
                                   kind="malformed")  # fmt: skip
    return array


def _short(error: Exception, limit: int = 160) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
