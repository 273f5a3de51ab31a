"""Applying what a broker reports about an order to the ledger.

One function used by the trading loop (after a submit, a cancel, a paper fill) and by
reconciliation (after a query), so an order's ledger history is built the same way whichever
path learned the news. Fills are recorded idempotently (by venue trade id), and the state moves
only along the ledger's allowed transitions: a venue saying "filled" about an order the ledger
still has as ``staged`` first moves it to ``submitted``, then the fills move it on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tradeflow.ledger.store import ALLOWED_TRANSITIONS, Fill, Ledger, Order

if TYPE_CHECKING:
    from tradeflow.execution.brokers import FillReport, OrderReport

FINAL_STATES = frozenset({"filled", "cancelled", "rejected"})
OPEN_STATES = frozenset({"staged", "submitted", "new", "partially_filled", "unknown"})

_EVENT_FOR_STATE = {
    "submitted": "submitted",
    "new": "acknowledged",
    "partially_filled": "partial_fill",
    "filled": "fill",
    "cancelled": "cancelled",
    "rejected": "rejected",
    "unknown": "timeout",
}


@dataclass(frozen=True)
class Applied:
    """What applying a report changed: the order as it is now and the fills that were new."""

    order: Order
    new_fills: tuple[FillReport, ...]
    moved_from: str


def _move(
    ledger: Ledger,
    order: Order,
    state: str,
    kind: str,
    detail: dict[str, Any],
    venue_order_id: str | None,
    time: int,
) -> Order:
    if state == order.state or state not in ALLOWED_TRANSITIONS[order.state]:
        return order
    return ledger.transition(
        order.client_order_id, state, kind, detail, venue_order_id=venue_order_id, time=time
    )


def apply_report(ledger: Ledger, report: OrderReport, time: int, kind: str | None = None) -> Applied:
    """Bring the ledger's copy of an order up to what ``report`` says.

    Args:
        ledger: The ledger holding the order (staged before it was sent).
        report: The broker's account of the order.
        time: Event time (ms) for the order events.
        kind: Event kind for the state change (default: derived from the new state;
            reconciliation passes ``"reconciled"``).

    Returns:
        The updated order and the fills that were not recorded before.
    """
    order = ledger.order(report.client_order_id)
    if order is None:
        from tradeflow.ledger.store import UnknownOrder

        raise UnknownOrder(report.client_order_id)
    before = order.state
    detail: dict[str, Any] = {"venue_status": report.status, "filled_quantity": report.filled_quantity}
    if report.reason:
        detail["reason"] = report.reason
    if order.state == "staged" and report.status not in ("staged", "rejected", "cancelled"):
        order = _move(ledger, order, "submitted", kind or "submitted", detail, report.venue_order_id, time)
    elif order.state == "unknown" and report.status not in ("unknown",):
        order = _move(ledger, order, "submitted", kind or "queried", detail, report.venue_order_id, time)
    if report.status == "new" or (report.fills and order.state == "submitted"):
        order = _move(ledger, order, "new", kind or "acknowledged", detail, report.venue_order_id, time)
    new_fills = record_fills(ledger, report.fills)
    order = ledger.order(report.client_order_id) or order
    if report.status not in ("submitted", "new", "staged"):
        target = report.status
        if target in ("partially_filled", "filled") and order.state in FINAL_STATES:
            target = order.state
        order = _move(
            ledger,
            order,
            target,
            kind or _EVENT_FOR_STATE.get(target, "queried"),
            detail,
            report.venue_order_id,
            time,
        )
    if report.venue_order_id and order.venue_order_id != report.venue_order_id:
        order = ledger.transition(
            order.client_order_id,
            order.state,
            kind or "queried",
            detail,
            venue_order_id=report.venue_order_id,
            time=time,
        )
    return Applied(order, new_fills, before)


def record_fills(ledger: Ledger, fills: Sequence[FillReport]) -> tuple[FillReport, ...]:
    """Record fills (idempotent by venue trade id); return the ones that were new."""
    new = []
    for fill in fills:
        if ledger.record_fill(
            fill.client_order_id,
            fill.venue_trade_id,
            fill.time_ms,
            fill.quantity,
            fill.price,
            fill.fee,
            fill.fee_asset,
            fill.liquidity,
        ):
            new.append(fill)
    return tuple(new)


def fill_payload(fill: FillReport | Fill, venue: str) -> dict[str, Any]:
    """Return the audit payload of a fill."""
    return {
        "venue": venue,
        "client_order_id": fill.client_order_id,
        "venue_trade_id": fill.venue_trade_id,
        "price": float(fill.price),
        "quantity": float(fill.quantity),
        "fee": float(fill.fee),
        "time_ms": getattr(fill, "time_ms", getattr(fill, "time", 0)),
        "liquidity": fill.liquidity,
    }
