"""A session's graceful stop: open orders cancelled or kept as configured; HALTED cancels them.

Real parts: a local order book synced by Binance's procedure, the paper broker, the pre-trade
checks and a SQLite ledger. The decider is a scripted stand-in that proposes one resting buy far
below the market (the strategy is not what is under test).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tradeflow.execution.book import DepthSnapshot, DepthUpdate, LocalOrderBook
from tradeflow.execution.brokers import PaperBroker
from tradeflow.execution.killswitch import KillSwitch
from tradeflow.execution.risk import OrderIntent, PortfolioView, PreTradeRisk, RiskLimits
from tradeflow.execution.session import SessionConfig, TradingSession
from tradeflow.ledger.store import Ledger
from tradeflow.strategy.signals import Signal

SYMBOL = "BTC/USDT"


SIGNAL = Signal(
    id="signal-0123456789abcdef0123", fingerprint="f" * 64, symbol=SYMBOL, time=1_700_000_000_000,
    direction=1, confidence=1.0, probability=0.61, signal_type="ml+4tf", regime="TRENDING_UP",
    long_threshold=0.55, short_threshold=0.45, alignment=1.0, price=60_000.0, atr=120.0,
    model_version="3", explanation="p(up) 0.61 over 0.55; 4 of 4 timeframes agree",
)  # fmt: skip


class OneRestingBuy:
    """Proposes one GTC buy 0.5 % below the best bid, once, following :data:`SIGNAL`."""

    def __init__(self) -> None:
        self.proposed = False

    def signal_of(self, client_order_id: str) -> Signal | None:
        return SIGNAL if client_order_id.startswith("tf-rest-") else None

    def reason(self, client_order_id: str) -> str | None:
        return "entry: scripted" if client_order_id.startswith("tf-rest-") else None

    def on_bar(self, symbol: str, bar: Any) -> None:
        del symbol, bar

    def on_book(
        self, symbol: str, book: Any, now_ms: int, portfolio: PortfolioView, pending: Mapping[str, float]
    ) -> list[OrderIntent]:
        if self.proposed:
            return []
        self.proposed = True
        price = round(book.best_bid()[0] * 0.995, 2)
        return [OrderIntent(symbol, 1, 0.01, price, client_order_id=f"tf-rest-{now_ms}")]


def _book() -> LocalOrderBook:
    book = LocalOrderBook(SYMBOL, stale_after_ms=60_000)
    now = int(time.time() * 1000)
    book.on_update(DepthUpdate.from_binance(
        {"e": "depthUpdate", "E": now, "s": "BTCUSDT", "U": 11, "u": 12, "b": [["59990.00", "1.0"]], "a": []}
    ))  # fmt: skip
    book.on_snapshot(DepthSnapshot.from_binance(
        {"lastUpdateId": 10, "bids": [["59990.00", "2.0"], ["59980.00", "3.0"]],
         "asks": [["60010.00", "2.0"], ["60020.00", "3.0"]]}
    ))  # fmt: skip
    assert book.in_sync
    return book


async def _session(tmp_path: Path, on_shutdown: str, halt: bool) -> tuple[Any, list[Any]]:
    book = _book()
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    broker = PaperBroker({SYMBOL: book}, latency_ms=0.0)
    switch = KillSwitch(tmp_path / "KILL_SWITCH")
    session = TradingSession(
        SessionConfig(venue="paper", symbols=[SYMBOL], on_shutdown=on_shutdown, time_in_force="GTC"),
        broker=broker,
        decider=OneRestingBuy(),
        risk=PreTradeRisk(RiskLimits()),
        ledger=ledger,
        books={SYMBOL: book},
        kill_switch=switch,
    )
    await session.start()
    session.on_book(SYMBOL)
    await asyncio.sleep(0.05)  # the send task
    if halt:
        stop = asyncio.Event()
        housekeeping = asyncio.create_task(session.housekeeping(stop))
        switch.engage("test", "test")
        await asyncio.sleep(0.6)
        stop.set()
        await housekeeping
    summary = await session.shutdown()
    orders = ledger.orders()
    assert ledger.signal(SIGNAL.id) is not None  # the order's signal is in the ledger too
    ledger.close()
    return summary, orders


@pytest.mark.parametrize(("on_shutdown", "expected"), [("cancel", "cancelled"), ("keep", "new")])
def test_a_graceful_stop_cancels_or_keeps_the_resting_order(
    tmp_path: Path, on_shutdown: str, expected: str
) -> None:
    summary, orders = asyncio.run(_session(tmp_path, on_shutdown, halt=False))
    assert [order.state for order in orders] == [expected]
    assert [(order.signal_id, order.reason) for order in orders] == [(SIGNAL.id, "entry: scripted")]
    assert summary.open_orders_at_stop == 1
    assert summary.cancelled_at_stop == (1 if on_shutdown == "cancel" else 0)


def test_the_kill_switch_halts_and_cancels_open_orders_even_when_stops_keep_them(tmp_path: Path) -> None:
    summary, orders = asyncio.run(_session(tmp_path, "keep", halt=True))
    assert summary.state == "HALTED"
    assert [order.state for order in orders] == ["cancelled"]
    assert any(alert["kind"] == "halt" for alert in summary.alerts)
