"""Reconciliation against a real (paper) broker: the documented rule, one difference at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.test_session_shutdown import SYMBOL, _book
from tradeflow.execution.brokers import OrderRequest, PaperBroker
from tradeflow.execution.reconcile import reconcile
from tradeflow.ledger.store import Ledger


def test_reconciliation_adopts_our_unknown_open_orders_marks_the_never_sent_and_copies_balances(
    tmp_path: Path,
) -> None:
    async def scenario() -> tuple[object, Ledger]:
        broker = PaperBroker({SYMBOL: _book()}, latency_ms=0.0, balances={"USDT": 1_000.0, "BTC": 0.5})
        ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
        # At the venue only (the ledger lost it): ours by prefix, and someone else's.
        await broker.submit(OrderRequest("tf-lost", SYMBOL, "sell", 0.02, 61_000.0))
        await broker.submit(OrderRequest("manual-1", SYMBOL, "sell", 0.01, 62_000.0))
        # In the ledger only: staged before a crash, never sent.
        ledger.stage_order("tf-never", "paper", SYMBOL, "buy", "limit", 0.01, 59_000.0, time=1)
        return await reconcile(ledger, broker, "paper", [SYMBOL], "tf", 10_000), ledger

    result, ledger = asyncio.run(scenario())
    kinds = sorted((d.kind, d.client_order_id) for d in result.differences)  # type: ignore[attr-defined]
    assert kinds == [
        ("adopted_open_order", "tf-lost"),
        ("foreign_open_order", "manual-1"),
        ("never_sent", "tf-never"),
    ]
    adopted = ledger.order("tf-lost")
    assert adopted is not None and (adopted.side, float(adopted.quantity), adopted.state) == (
        "sell",
        0.02,
        "new",
    )
    assert ledger.order("manual-1") is None
    never = ledger.order("tf-never")
    assert never is not None and never.state == "rejected"
    usdt = ledger.balance("paper", "USDT")
    assert usdt is not None and float(usdt.free + usdt.locked) == 1_000.0
    ledger.close()
