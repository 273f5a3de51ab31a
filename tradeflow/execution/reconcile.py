"""Reconciliation: bring the ledger in line with the venue before trading (re)starts.

The rule, applied on every start and periodically while trading:

1. **The venue is the truth** for orders, fills and balances. The ledger is corrected to it and
   every correction is recorded as a *difference* (a ledger risk event of kind
   ``reconciliation`` and an audit entry), and alerted.
2. **Orders the ledger has as open** (staged, submitted, new, partially filled, unknown) are
   queried by client order id. Found: their fills are recorded and their state follows the
   venue's (a ``staged`` order found at the venue is the "sent, answer lost" case:
   ``sent_unconfirmed``). Not found: the order never reached the venue; it is marked
   ``rejected`` with that reason (``never_sent``) and is **not** re-sent — the next decision is
   made afresh from the market as it is then.
3. **Open orders at the venue that the ledger does not have**: ones carrying our client id
   prefix are adopted into the ledger (``adopted_open_order``); others are someone else's and are
   reported (``foreign_open_order``) and left alone.
4. **Recent fills** of our orders at the venue that the ledger lacks are recorded
   (``missed_fill``); fills are idempotent by venue trade id, so a fill is never counted twice.
5. **Balances** are copied from the venue.

Orders with a submit in flight (the session's own, at a periodic reconciliation) and orders
younger than a grace period are skipped: their answer is still on its way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tradeflow.execution.orders import apply_report, record_fills
from tradeflow.ledger.store import Ledger

if TYPE_CHECKING:
    from tradeflow.execution.brokers import Broker, OrderReport

DIFFERENCE_KINDS = (
    "sent_unconfirmed",
    "state_changed",
    "never_sent",
    "adopted_open_order",
    "foreign_open_order",
    "missed_fill",
)


@dataclass(frozen=True)
class Difference:
    """One way the ledger differed from the venue, and what was done about it."""

    kind: str
    client_order_id: str | None
    symbol: str | None
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "kind": self.kind,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            **self.detail,
        }


@dataclass
class Reconciliation:
    """The outcome of one reconciliation."""

    time_ms: int
    checked_orders: int = 0
    differences: list[Difference] = field(default_factory=list)
    balances: dict[str, tuple[float, float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Return a JSON-ready summary (counts by kind, then the differences)."""
        counts: dict[str, int] = {}
        for difference in self.differences:
            counts[difference.kind] = counts.get(difference.kind, 0) + 1
        return {
            "time_ms": self.time_ms,
            "checked_orders": self.checked_orders,
            "difference_counts": counts,
            "differences": [d.to_dict() for d in self.differences[:100]],
        }


async def reconcile(
    ledger: Ledger,
    broker: Broker,
    venue: str,
    symbols: Sequence[str],
    client_prefix: str,
    now_ms: int,
    *,
    in_flight: Collection[str] = (),
    grace_ms: int = 0,
    fills_lookback_ms: int = 24 * 3_600_000,
) -> Reconciliation:
    """Reconcile the ledger's orders, fills and balances of ``venue`` with the broker's.

    Args:
        ledger: The ledger (corrected in place).
        broker: The venue's broker.
        venue: Venue id as the ledger records it.
        symbols: Symbols traded.
        client_prefix: Prefix of our client order ids (adopt open orders that carry it).
        now_ms: Current time.
        in_flight: Client ids with a submit under way (skipped).
        grace_ms: Skip orders updated this recently.
        fills_lookback_ms: How far back to look for fills when the ledger has none.

    Returns:
        What was checked and every difference found.
    """
    result = Reconciliation(now_ms)
    traded = set(symbols)
    for order in ledger.open_orders(venue):
        if order.client_order_id in in_flight or order.symbol not in traded:
            continue
        if grace_ms and now_ms - order.updated_at < grace_ms:
            continue
        result.checked_orders += 1
        report = await broker.query(order.client_order_id, order.symbol)
        if report is None:
            if order.state in ("staged", "submitted", "unknown"):
                ledger.transition(
                    order.client_order_id, "rejected", "reconciled",
                    {"reason": "never reached the venue (not found by client order id)"}, time=now_ms,
                )  # fmt: skip
                result.differences.append(
                    Difference(
                        "never_sent", order.client_order_id, order.symbol, {"ledger_state": order.state}
                    )
                )
            continue
        applied = apply_report(ledger, report, now_ms, kind="reconciled")
        if applied.order.state != order.state or applied.new_fills:
            kind = "sent_unconfirmed" if order.state == "staged" else "state_changed"
            result.differences.append(
                Difference(
                    kind,
                    order.client_order_id,
                    order.symbol,
                    {
                        "ledger_state": order.state,
                        "venue_state": report.status,
                        "new_fills": len(applied.new_fills),
                    },
                )
            )
    known = {order.client_order_id for order in ledger.orders() if order.venue == venue}
    for report in await broker.open_orders(list(symbols)):
        if report.client_order_id in known or report.client_order_id in in_flight:
            continue
        if report.client_order_id.startswith(client_prefix):
            ledger.stage_order(
                report.client_order_id, venue, report.symbol, report.side or _fill_side(report), "limit",
                report.quantity or max(report.filled_quantity, 1e-12), None,
                reason="adopted by reconciliation", time=now_ms,
            )  # fmt: skip
            apply_report(ledger, report, now_ms, kind="reconciled")
            kind = "adopted_open_order"
        else:
            kind = "foreign_open_order"
        result.differences.append(
            Difference(kind, report.client_order_id, report.symbol, {"venue_state": report.status})
        )
    last = max((fill.time for fill in ledger.fills() if fill.venue == venue), default=None)
    since = now_ms - fills_lookback_ms if last is None else last - 60_000
    known = {order.client_order_id for order in ledger.orders() if order.venue == venue}
    ours = [fill for fill in await broker.fills_since(list(symbols), since) if fill.client_order_id in known]
    for fill in record_fills(ledger, ours):
        result.differences.append(
            Difference(
                "missed_fill", fill.client_order_id, fill.symbol, {"venue_trade_id": fill.venue_trade_id}
            )
        )
    result.balances = await broker.balances()
    for asset, (free, locked) in result.balances.items():
        ledger.set_balance(venue, asset, free, locked, now_ms)
    return result


def _fill_side(report: OrderReport) -> str:
    """The side of a report without one: its fills', else buy."""
    return report.fills[0].side if report.fills else "buy"
