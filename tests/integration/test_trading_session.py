"""A trading session in process against a local venue's websocket streams (paper and staging).

The feed, the books, the decider (churn exercise mode), the pre-trade risk checks, the ledger,
/healthz and /metrics are all real; only the broker differs by mode. The kill switch file halts
the running session, which then refuses new entries and records why.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.conftest import venue
from tradeflow.config import Settings, VenueConfig
from tradeflow.execution.decider import build_decider
from tradeflow.execution.feed import FeedConfig
from tradeflow.execution.killswitch import KillSwitch
from tradeflow.execution.runner import TradingPlan, run_trading
from tradeflow.ledger.store import Ledger

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        ingest={"symbols": SYMBOLS},
        execution={
            "strategy": "churn",
            "churn_seconds": 1.0,
            "churn_notional": 100.0,
            "reconcile_seconds": 2.0,
        },
    )


def _plan(settings: Settings, base_url: str, mode: str, tmp_path: Path, seconds: float) -> TradingPlan:
    return TradingPlan(
        venue=VenueConfig(id="sim-session", exchange="binance", base_url=base_url),
        base_url=base_url,
        symbols=SYMBOLS,
        mode=mode,
        strategy="churn",
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        kill_switch_path=tmp_path / "KILL_SWITCH",
        duration_seconds=seconds,
        health_port=0,
    )


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _run(settings: Settings, plan: TradingPlan, during: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    decider = build_decider(settings, "churn", SYMBOLS, None, {}, session_key="test")
    seen: dict[str, Any] = {}

    async def main() -> Any:
        def ready(info: dict[str, Any]) -> None:
            seen.update(info)
            if during is not None:
                asyncio.get_running_loop().create_task(asyncio.to_thread(during, info))

        feed = FeedConfig(stale_after_ms=3_000, check_interval_seconds=0.1)
        return await run_trading(settings, plan, decider, on_ready=ready, feed_config=feed)

    return asyncio.run(main()), seen


def test_paper_session_trades_serves_health_and_halts_on_the_kill_switch(
    start_venues: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    base_url = start_venues(venue("sim-session", 3))["sim-session"]
    settings = _settings(tmp_path)
    plan = _plan(settings, base_url, "paper", tmp_path, 9.0)
    observed: dict[str, Any] = {}

    def during(info: dict[str, Any]) -> None:
        import time

        time.sleep(4.0)
        observed["healthz"] = _get(f"{info['health_url']}/healthz")
        observed["metrics"] = _get(f"{info['health_url']}/metrics")
        KillSwitch(plan.kill_switch_path).engage("test halt", "test")
        time.sleep(2.0)
        observed["halted"] = _get(f"{info['health_url']}/healthz")

    summary, _ = _run(settings, plan, during)

    status, body = observed["healthz"]
    assert status == 200, body
    health = json.loads(body)
    assert health["books_in_sync"] == dict.fromkeys(SYMBOLS, True)
    metrics = observed["metrics"][1]
    assert "tradeflow_decision_latency_seconds_count" in metrics
    assert 'tradeflow_orders{state="filled"}' in metrics
    assert json.loads(observed["halted"][1])["trading_state"] == "HALTED"
    assert summary.orders_sent >= 2 and summary.fills >= 2
    assert summary.state == "HALTED"
    assert any(alert["kind"] == "halt" for alert in summary.alerts)
    ledger = Ledger.open(plan.ledger_url)
    try:
        kinds = [event.kind for event in ledger.risk_events()]
        assert "state_change" in kinds
        orders = ledger.orders()
        # After the halt only reduce-only exits may go out: every entry was decided before it.
        halted_at = max(e.time for e in ledger.risk_events() if e.kind == "state_change")
        entries_after = [o for o in orders if o.side == "buy" and o.created_at > halted_at]
        assert entries_after == []
        assert all(o.state in ("filled", "cancelled", "rejected") for o in orders)
    finally:
        ledger.close()


def test_staging_mode_records_decisions_and_sends_nothing(
    start_venues: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    base_url = start_venues(venue("sim-session", 4))["sim-session"]
    settings = _settings(tmp_path)
    summary, _ = _run(settings, _plan(settings, base_url, "staging", tmp_path, 5.0))
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        orders = ledger.orders()
    finally:
        ledger.close()
    assert orders and all(order.state == "staged" for order in orders)
    assert summary.orders_sent == 0 and summary.fills == 0
    from tradeflow.simulator.control_orders import received_orders

    assert received_orders(base_url) == []
