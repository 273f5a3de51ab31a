"""The async ccxt.pro exchange the streaming flow talks to (market data websockets and orders).

One instance per venue, used from one asyncio loop. It points REST calls at ``base_url`` and
websocket streams at the same host (``ws://`` instead of ``http://``), so the same code talks to
the local venues or, without ``base_url``, to the real exchange.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt.pro as ccxtpro

from tradeflow.sources.ccxt_source import DEFAULT_OPTIONS, rebase_urls

#: Options the streaming flow adds for an exchange (merged over :data:`DEFAULT_OPTIONS`).
STREAM_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        # Spot only, and the full ticker stream (the default mini ticker has no bid/ask).
        "defaultType": "spot",
        "watchTicker": {"name": "ticker"},
        "watchTickers": {"name": "ticker"},  # ccxt 4.5 routes watch_ticker through watch_tickers
        "warnOnFetchOpenOrdersWithoutSymbol": False,
        # Spot only: no margin pairs (a sapi call the local venues do not serve).
        "fetchMargins": False,
    },
}


def websocket_url(url: str, base_url: str) -> str:
    """Return ``url`` (a ``wss://`` stream address) moved to ``base_url``'s host, as ``ws://``.

    ``https`` bases keep TLS (``wss://``).
    """
    base = urlsplit(base_url)
    parts = urlsplit(url)
    scheme = "wss" if base.scheme == "https" else "ws"
    return urlunsplit((scheme, base.netloc, parts.path, parts.query, parts.fragment))


def _rebase_ws(urls: Any, base_url: str) -> Any:
    if isinstance(urls, str):
        return websocket_url(urls, base_url) if urls.startswith(("ws://", "wss://")) else urls
    if isinstance(urls, Mapping):
        return {key: _rebase_ws(value, base_url) for key, value in urls.items()}
    return urls


def create_pro_exchange(
    exchange_id: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    secret: str | None = None,
    timeout_seconds: float = 10.0,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Return a configured ``ccxt.pro`` exchange (async; close it with ``await ex.close()``).

    Args:
        exchange_id: A ccxt id with websocket support, e.g. ``"binance"``.
        base_url: Origin of a local venue or proxy (``http://127.0.0.1:PORT``); REST goes there
            and websockets to the same host and path under ``ws://``.
        api_key: Key for signed endpoints (orders, balances); None for market data only.
        secret: Secret for signing.
        timeout_seconds: REST request timeout.
        options: Exchange options merged over the defaults.

    Raises:
        ValueError: The exchange id is not a ccxt.pro exchange.
    """
    if exchange_id not in ccxtpro.exchanges:
        raise ValueError(
            f"{exchange_id!r} has no ccxt.pro (websocket) support; choose one of ccxt.pro.exchanges"
        )
    merged = {
        **DEFAULT_OPTIONS.get(exchange_id, {}),
        **STREAM_OPTIONS.get(exchange_id, {}),
        **(options or {}),
    }
    params: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(timeout_seconds * 1000),
        "options": merged,
    }
    if api_key:
        params["apiKey"] = api_key
    if secret:
        params["secret"] = secret
    exchange = getattr(ccxtpro, exchange_id)(params)
    if base_url:
        api = dict(exchange.urls["api"])
        ws = api.pop("ws", None)
        api = rebase_urls(api, base_url)
        if ws is not None:
            api["ws"] = _rebase_ws(ws, base_url)
        exchange.urls["api"] = api
    return exchange
