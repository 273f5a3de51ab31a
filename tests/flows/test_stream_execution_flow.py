"""The stream-execution flow under Prefect: a short paper session on a local venue, audited.

Runs the real flow (the session's websockets, decider, risk checks and paper broker) against a
venue it starts itself, with the ledger on SQLite and on the machine's PostgreSQL; then checks
the ledger, the audit chain (orders, fills, reconciliations, state changes) and the Prefect
artifact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.postgres import fresh_database


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_database("tradeflow_flow") as url:
        yield url


@pytest.mark.parametrize("ledger", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_stream_execution_paper_session_is_recorded_in_ledger_and_audit(
    write_config: Callable[..., str], tmp_path: Path, ledger: str, request: pytest.FixtureRequest
) -> None:
    from prefect.client.orchestration import get_client

    from flows.execution import stream_execution
    from tradeflow.audit.chain import iter_entries
    from tradeflow.bootstrap import build_store, ledger_url
    from tradeflow.config import load_settings
    from tradeflow.ledger.store import Ledger

    config = write_config(venues=[("sim-alpha", 11, None, "")])
    url = request.getfixturevalue("postgres_url") if ledger == "postgresql" else None
    extra = (
        '\n[execution]\nstrategy = "churn"\nchurn_seconds = 1.0\nchurn_notional = 100.0\nhealth_port = 0\n'
    )
    if url:
        extra += f'[ledger]\nurl = "{url}"\n'
    Path(config).write_text(Path(config).read_text().replace("[[venues]]", extra + "\n[[venues]]", 1))

    result = stream_execution(config_path=config, mode="paper", duration_seconds=6.0)

    assert result["orders_sent"] >= 2 and result["fills"] >= 2, result
    assert result["reconciliations"] >= 2  # on start and at the stop
    settings = load_settings(config)
    with Ledger.open(ledger_url(settings)) as book:
        orders = book.orders()
        assert len(orders) == result["orders_sent"]
        assert all(order.state in ("filled", "cancelled", "rejected") for order in orders)
        assert sum(len(book.fills(o.client_order_id)) for o in orders) == result["fills"]
    kinds = Counter(entry.kind for entry in iter_entries(build_store(settings)))
    assert kinds["order"] >= 2 * result["orders_sent"]  # staged, then its outcome
    assert kinds["fill"] == result["fills"]
    assert kinds["reconciliation"] >= 2
    assert kinds["trading_state"] >= 2  # session start and stop

    async def artifact() -> str:
        async with get_client() as client:
            found = await client.read_latest_artifacts()
            return next(a.data for a in found if a.key == "stream-execution-summary")

    import asyncio

    markdown = asyncio.run(artifact())
    assert f"| orders sent | {result['orders_sent']} |" in markdown


def test_the_kill_switch_flow_writes_the_file_and_the_variable(write_config: Callable[..., str]) -> None:
    from prefect.variables import Variable

    from flows.execution import kill_switch
    from tradeflow.config import load_settings
    from tradeflow.execution.killswitch import KillSwitch
    from tradeflow.execution.runner import kill_switch_path

    config = write_config()
    switch = KillSwitch(kill_switch_path(load_settings(config)))
    assert not switch.engaged
    kill_switch(config_path=config, engage=True, reason="latency alert")
    assert switch.state().engaged and switch.state().reason == "latency alert"
    assert Variable.get("tradeflow_kill_switch") == "on"
    kill_switch(config_path=config, engage=False)
    assert not switch.engaged
    assert Variable.get("tradeflow_kill_switch") == "off"
