"""A small synchronous client for a venue's order test controls (``/_sim/orders...``).

Tests call these against a running venue's base URL, e.g.::

    control_orders.inject_fault("http://127.0.0.1:8001", "timeout_after_accept", count=1, seconds=5)
    orders = control_orders.received_orders("http://127.0.0.1:8001")

See :mod:`tradeflow.simulator.routes.order_control` for what each fault does.
"""

from __future__ import annotations

from typing import Any, Literal

from tradeflow.simulator.control import call

OrderFaultKind = Literal["timeout_after_accept", "error_after_accept", "reject"]


def inject_fault(
    base_url: str, kind: OrderFaultKind, count: int = 1, seconds: float | None = None
) -> list[str]:
    """Queue ``count`` faults of ``kind`` for the venue's next order placements.

    Args:
        base_url: The venue, e.g. ``http://127.0.0.1:8001``.
        kind: ``timeout_after_accept`` (accept, answer after ``seconds``), ``error_after_accept``
            (accept, answer HTTP 503) or ``reject`` (refuse with HTTP 503 before accepting).
        count: How many placements the fault applies to.
        seconds: How long ``timeout_after_accept`` holds its answer (the venue keeps the last
            value; default 30).

    Returns:
        The queued fault kinds, next first.
    """
    body = call(base_url, "POST", "/_sim/orders/fault", {"kind": kind, "count": count, "seconds": seconds})
    return [str(k) for k in body["pending"]]


def clear_faults(base_url: str) -> None:
    """Drop the venue's queued order faults."""
    call(base_url, "POST", "/_sim/orders/fault", {"kind": "clear"})


def venue_orders(base_url: str) -> dict[str, Any]:
    """Return ``{"orders": [...], "rejections": [...], "balances": {...}}`` of the venue.

    ``orders`` holds every order the venue ever accepted, as ``GET /api/v3/order`` prints it
    plus its ``fills``; ``rejections`` every refused placement.
    """
    result: dict[str, Any] = call(base_url, "GET", "/_sim/orders")
    return result


def received_orders(base_url: str) -> list[dict[str, Any]]:
    """Return every order the venue ever accepted (oldest first)."""
    return list(venue_orders(base_url)["orders"])
