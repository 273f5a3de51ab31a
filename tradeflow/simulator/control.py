"""A small synchronous client for a venue's test controls (``/_sim/...``).

Tests and demos call these against a running venue's base URL, e.g.::

    control.gap("http://127.0.0.1:8001", "BTCUSDT", skip=5)

Stream controls: :func:`disconnect`, :func:`gap`, :func:`stall`, :func:`stream_status`.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_TIMEOUT_SECONDS = 10.0


def call(base_url: str, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
    """Send one control request to a venue (None parameters are left out); return its JSON answer."""
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
    url = base_url.rstrip("/") + path + (f"?{query}" if query else "")
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=DEFAULT_TIMEOUT_SECONDS) as response:
        return json.loads(response.read().decode())


def disconnect(base_url: str, symbol: str | None = None) -> int:
    """Close the venue's websocket connections (all, or those on a symbol's streams).

    Args:
        base_url: The venue, e.g. ``http://127.0.0.1:8001``.
        symbol: ``BTCUSDT`` or ``BTC/USDT``; None closes every connection.

    Returns:
        How many connections were closed.
    """
    return int(call(base_url, "POST", "/_sim/streams/disconnect", {"symbol": symbol})["disconnected"])


def gap(base_url: str, symbol: str, skip: int = 5) -> None:
    """Make the symbol's next depth diff skip ``skip`` update ids (a sequence gap)."""
    call(base_url, "POST", "/_sim/streams/gap", {"symbol": symbol, "skip": skip})


def stall(base_url: str, symbol: str, seconds: float) -> None:
    """Stop the symbol's depth diffs for ``seconds``; connections stay open."""
    call(base_url, "POST", "/_sim/streams/stall", {"symbol": symbol, "seconds": seconds})


def stream_status(base_url: str) -> dict[str, Any]:
    """Return the live layer's state: running, connections, update ids, REST depth requests."""
    result: dict[str, Any] = call(base_url, "GET", "/_sim/streams")
    return result
