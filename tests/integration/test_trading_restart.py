"""The kill/restart test: SIGKILL the trading flow at random points, restart it, lose nothing.

A local venue runs in this process (thread mode) and outlives the trader. The trader is the real
CLI (`tradeflow trade --live`, the Prefect flow `stream-execution`) in its own process group,
placing real signed orders over HTTP in the churn exercise mode (a small position that flips
every second, so orders are always in flight). It is killed with SIGKILL several times, each
time after a random number of new orders and a random delay, then restarted; a last run stops
gracefully. Then the venue's own record of every order it received is compared with the
ledger: zero lost orders, zero duplicated orders, the same fills, and positions that match the
venue's balances.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import venue
from tradeflow.ledger.store import Ledger
from tradeflow.simulator.control_orders import inject_fault, venue_orders

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def _venue(base_url: str) -> dict[str, Any]:
    return venue_orders(base_url)


def _count(base_url: str) -> int:
    return len(venue_orders(base_url)["orders"])


def _config(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "tradeflow.toml"
    path.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
[storage]
url = "{tmp_path / "data" / "lake"}"
[ingest]
symbols = {json.dumps(SYMBOLS)}
[execution]
mode = "live"
strategy = "churn"
churn_seconds = 1.0
churn_notional = 100.0
health_port = 0
reconcile_seconds = 3.0
max_orders_per_minute = 600
[[venues]]
id = "sim-restart"
exchange = "binance"
base_url = "{base_url}"
api_key_env = "TF_TEST_SIM_KEY"
secret_env = "TF_TEST_SIM_SECRET"
"""
    )
    return path


def _start(config: Path, tmp_path: Path, duration: float | None, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "TF_TEST_SIM_KEY": "tradeflow-sim-key",
        "TF_TEST_SIM_SECRET": "tradeflow-sim-secret",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    command = [sys.executable, "-m", "tradeflow.cli", "trade", "--live", "-c", str(config)]
    if duration is not None:
        command += ["--duration", str(duration)]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_for(
    condition: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"the trader exited ({process.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    start_venues: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    base_url = start_venues(venue("sim-restart", 5))["sim-restart"]
    config = _config(tmp_path, base_url)
    log = tmp_path / "trader.log"
    chooser = random.Random(20261122)
    kills = 4
    for round_number in range(kills):
        before = _count(base_url)
        wanted = before + chooser.randint(2, 5)
        process = _start(config, tmp_path, None, log)
        _wait_for(lambda w=wanted: _count(base_url) >= w, 120, f"order {wanted} (kill {round_number + 1})",
                  process, log)  # fmt: skip
        if round_number % 2 == 0:
            # Kill with an order in flight: the venue accepts the next order but holds its answer,
            # so the trader dies between sending it and hearing back.
            inject_fault(base_url, "timeout_after_accept", count=1, seconds=30)
            held = _count(base_url) + 1
            _wait_for(lambda h=held: _count(base_url) >= h, 60, "an order in flight", process, log)
        time.sleep(chooser.uniform(0.0, 0.4))  # land anywhere: mid-request, mid-ledger write, idle
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    final = _start(config, tmp_path, 6.0, log)
    assert final.wait(timeout=120) == 0, log.read_text()[-4000:]

    state = _venue(base_url)
    venue_orders_list = state["orders"]
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'data' / 'ledger.db'}")
    try:
        ledger_orders = {order.client_order_id: order for order in ledger.orders()}
        ledger_fills = ledger.fills()
        positions = {p.symbol: p.quantity for p in ledger.positions()}
        differences = Counter(e.reason for e in ledger.risk_events() if e.kind == "reconciliation")
        balances = {}
        for symbol in SYMBOLS:
            row = ledger.balance("sim-restart", symbol.split("/")[0])
            balances[symbol.split("/")[0]] = Decimal(0) if row is None else row.free + row.locked
    finally:
        ledger.close()

    received = Counter(str(order["clientOrderId"]) for order in venue_orders_list)
    assert len(venue_orders_list) >= kills * 2
    # Zero duplicated: the venue never accepted the same client order id twice, and never even
    # saw a second attempt (it would refuse it as "Duplicate order sent." and record that).
    assert [cid for cid, count in received.items() if count > 1] == []
    assert [r for r in state["rejections"] if "uplicate" in json.dumps(r)] == []
    # Zero lost: every order the venue has is in the ledger ...
    assert sorted(set(received) - set(ledger_orders)) == []
    # ... and every ledger order the venue does not have was settled as never sent, not left open.
    for cid, order in ledger_orders.items():
        if cid not in received:
            assert order.state == "rejected", (cid, order.state)
    # Every order is settled, and states agree with the venue's.
    status_map = {"FILLED": "filled", "CANCELED": "cancelled", "EXPIRED": "cancelled", "REJECTED": "rejected",
                  "NEW": "new", "PARTIALLY_FILLED": "partially_filled"}  # fmt: skip
    for order in venue_orders_list:
        assert ledger_orders[str(order["clientOrderId"])].state == status_map[str(order["status"])], order
    # Same fills: ledger filled quantity per order equals the venue's executed quantity.
    for order in venue_orders_list:
        ledger_order = ledger_orders[str(order["clientOrderId"])]
        assert ledger_order.filled_quantity == Decimal(str(order["executedQty"])), order
    assert len({(f.venue, f.venue_trade_id) for f in ledger_fills}) == len(ledger_fills)
    # Positions match the venue's balances (the account started with quote currency only).
    venue_balances = state["balances"]
    for symbol in SYMBOLS:
        base = symbol.split("/")[0]
        held_at_venue = venue_balances.get(base, {"free": 0, "locked": 0})
        total = Decimal(str(held_at_venue["free"])) + Decimal(str(held_at_venue["locked"]))
        assert positions.get(symbol, Decimal(0)) == total, (symbol, positions, venue_balances)
        assert balances[base] == total  # and the ledger's copy of the venue's balance
    # The kills really landed with orders in flight: reconciliation found and adopted them.
    assert differences.get("sent_unconfirmed", 0) + differences.get("state_changed", 0) >= 1, differences
