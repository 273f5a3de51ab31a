"""The trading ledger on SQLite: migrations, idempotency, order states, fills and positions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from tradeflow.ledger import InvalidTransition, Ledger, LedgerSchemaError, default_url
from tradeflow.ledger.schema import Base

TABLES = {"signals", "orders", "order_events", "fills", "positions", "balances", "risk_events"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return default_url(tmp_path / "data")


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    with Ledger.open(url) as opened:
        yield opened


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def stage(ledger: Ledger, client_order_id: str = "c-1", side: str = "buy", quantity: str = "2") -> None:
    ledger.stage_order(client_order_id, "sim", "BTC/USDT", side, "limit", quantity, price="100")
    ledger.transition(client_order_id, "submitted", "submitted", venue_order_id=f"v-{client_order_id}")


def fill(ledger: Ledger, client_order_id: str, trade_id: str, quantity: str, price: str) -> bool:
    return ledger.record_fill(client_order_id, trade_id, 1_000, quantity, price, "0.01", "USDT", "taker")


def run_together(count: int, work: Callable[[int], object]) -> list[object]:
    """Run work(i) on count threads released at the same moment; return results in order."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


def test_migrations_create_every_table_and_round_trip(url: str, ledger: Ledger) -> None:
    assert ledger.schema_revision() == ledger.head_revision() == "0001"
    assert table_names(url) == TABLES | {"alembic_version"}

    ledger.downgrade("base")
    assert ledger.schema_revision() is None
    assert table_names(url) == {"alembic_version"}

    ledger.upgrade()
    assert table_names(url) == TABLES | {"alembic_version"}
    stage(ledger)
    assert ledger.order("c-1") is not None


def test_migrations_match_the_models(url: str, ledger: Ledger) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_open_without_migrating_an_empty_database_explains_what_to_do(url: str) -> None:
    with pytest.raises(LedgerSchemaError) as raised:
        Ledger.open(url, migrate=False)
    message = str(raised.value)
    assert "empty database" in message and "0001" in message
    assert "tradeflow ledger upgrade" in message


def test_open_without_migrating_a_current_database_works(url: str, ledger: Ledger) -> None:
    with Ledger.open(url, migrate=False) as again:
        assert again.schema_revision() == "0001"


def test_open_without_migrating_a_schema_behind_is_refused(url: str, ledger: Ledger) -> None:
    ledger.downgrade("base")
    with pytest.raises(LedgerSchemaError, match="tradeflow ledger upgrade"):
        Ledger.open(url, migrate=False)


def test_staging_the_same_client_order_id_twice_keeps_one_order(ledger: Ledger) -> None:
    first = ledger.stage_order("c-1", "sim", "BTC/USDT", "buy", "limit", "1", price="100")
    second = ledger.stage_order("c-1", "sim", "BTC/USDT", "buy", "limit", "1", price="100")
    assert first == second
    assert first.state == "staged" and first.quantity == Decimal(1)
    assert len(ledger.orders()) == 1
    assert [event.kind for event in ledger.events("c-1")] == ["created"]


def test_order_counts_by_state_and_venue(ledger: Ledger) -> None:
    for cid, venue in (("a", "sim"), ("b", "sim"), ("c", "other")):
        ledger.stage_order(cid, venue, "BTC/USDT", "buy", "limit", "1", price="100")
    ledger.transition("b", "submitted", "submitted")
    assert ledger.order_counts("sim") == {"staged": 1, "submitted": 1}
    assert ledger.order_counts() == {"staged": 2, "submitted": 1}


def test_signals_are_recorded_once_and_orders_point_at_them(ledger: Ledger) -> None:
    fields = {
        "signal_id": "signal-ab12",
        "fingerprint": "f" * 64,
        "symbol": "BTC/USDT",
        "time": 1_700_000_000_000,
        "direction": 1,
        "confidence": 0.7,
        "signal_type": "entry",
        "explanation": "momentum",
    }
    ledger.record_signal(**fields)  # type: ignore[arg-type]
    ledger.record_signal(**fields)  # type: ignore[arg-type]
    recorded = ledger.signal("signal-ab12")
    assert recorded is not None and recorded.direction == 1 and recorded.probability is None
    order = ledger.stage_order("c-1", "sim", "BTC/USDT", "buy", "market", "1", signal_id="signal-ab12")
    assert order.signal_id == "signal-ab12"
    with pytest.raises(ValueError, match="direction"):
        ledger.record_signal(**{**fields, "signal_id": "signal-x", "direction": 0})  # type: ignore[arg-type]


def test_allowed_transitions_append_numbered_events(ledger: Ledger) -> None:
    ledger.stage_order("c-1", "sim", "BTC/USDT", "sell", "limit", "1", price="100")
    ledger.transition("c-1", "submitted", "submitted", time=10)
    ledger.transition("c-1", "new", "acknowledged", venue_order_id="v-9", time=11)
    ledger.transition("c-1", "new", "cancel_requested", detail={"why": "stale"}, time=12)
    order = ledger.transition("c-1", "cancelled", "cancelled", time=13)
    assert order.state == "cancelled" and order.venue_order_id == "v-9" and order.updated_at == 13
    events = ledger.events("c-1")
    assert [(event.sequence, event.kind, event.state) for event in events] == [
        (1, "created", "staged"),
        (2, "submitted", "submitted"),
        (3, "acknowledged", "new"),
        (4, "cancel_requested", "new"),
        (5, "cancelled", "cancelled"),
    ]
    assert events[3].detail == {"why": "stale"}
    assert ledger.open_orders() == []


def test_refused_transitions_name_both_states(ledger: Ledger) -> None:
    ledger.stage_order("c-1", "sim", "BTC/USDT", "buy", "market", "1")
    with pytest.raises(InvalidTransition, match="from staged to filled"):
        ledger.transition("c-1", "filled", "fill")
    ledger.transition("c-1", "rejected", "rejected")
    with pytest.raises(InvalidTransition, match="from rejected to submitted"):
        ledger.transition("c-1", "submitted", "submitted")
    assert ledger.order("c-1").state == "rejected"  # type: ignore[union-attr]
    assert len(ledger.events("c-1")) == 2


def test_a_fill_recorded_twice_counts_once(ledger: Ledger) -> None:
    stage(ledger)
    assert fill(ledger, "c-1", "t-1", "0.5", "100") is True
    assert fill(ledger, "c-1", "t-1", "0.5", "100") is False
    assert len(ledger.fills("c-1")) == 1
    assert ledger.order("c-1").filled_quantity == Decimal("0.5")  # type: ignore[union-attr]
    assert ledger.position("sim", "BTC/USDT").quantity == Decimal("0.5")  # type: ignore[union-attr]


def test_partial_then_full_fill_moves_order_and_position(ledger: Ledger) -> None:
    stage(ledger, "buy-1", "buy", "2")
    assert fill(ledger, "buy-1", "t-1", "0.5", "100")
    assert ledger.order("buy-1").state == "partially_filled"  # type: ignore[union-attr]
    assert fill(ledger, "buy-1", "t-2", "1.5", "104")
    assert ledger.order("buy-1").state == "filled"  # type: ignore[union-attr]
    assert [event.kind for event in ledger.events("buy-1")][-2:] == ["partial_fill", "fill"]
    # (0.5 * 100 + 1.5 * 104) / 2 = 103
    position = ledger.position("sim", "BTC/USDT")
    assert position is not None
    assert (position.quantity, position.average_price, position.realized_pnl) == (2, 103, 0)

    # Selling 1 at 110 realizes 1 * (110 - 103) = 7 and keeps the average.
    stage(ledger, "sell-1", "sell", "1")
    assert fill(ledger, "sell-1", "t-3", "1", "110")
    position = ledger.position("sim", "BTC/USDT")
    assert position is not None
    assert (position.quantity, position.average_price, position.realized_pnl) == (1, 103, 7)

    # Selling 2 at 90 closes 1 (realizing 90 - 103 = -13, total -6) and opens a short of 1 at 90.
    stage(ledger, "sell-2", "sell", "2")
    assert fill(ledger, "sell-2", "t-4", "2", "90")
    position = ledger.position("sim", "BTC/USDT")
    assert position is not None
    assert (position.quantity, position.average_price, position.realized_pnl) == (-1, 90, -6)
    assert [order.client_order_id for order in ledger.open_orders()] == []
    assert len(ledger.fills()) == 4


def test_balances_are_inserted_then_updated(ledger: Ledger) -> None:
    ledger.set_balance("sim", "USDT", "1000", "0", time=1)
    ledger.set_balance("sim", "USDT", "900.5", "99.5", time=2)
    balance = ledger.balance("sim", "USDT")
    assert balance is not None
    assert (balance.free, balance.locked, balance.updated_at) == (Decimal("900.5"), Decimal("99.5"), 2)
    assert ledger.balance("sim", "BTC") is None


def test_risk_events_are_recorded_in_time_order(ledger: Ledger) -> None:
    ledger.record_risk_event(2, "kill_switch", "drawdown 12%", detail={"drawdown": 0.12}, state="HALTED")
    ledger.record_risk_event(1, "rejection", "position limit", symbol="BTC/USDT")
    events = ledger.risk_events()
    assert [(event.kind, event.state) for event in events] == [("rejection", None), ("kill_switch", "HALTED")]
    assert events[1].detail == {"drawdown": 0.12}
    with pytest.raises(ValueError, match="state"):
        ledger.record_risk_event(3, "state_change", "bad", state="PANIC")


def test_amounts_keep_eighteen_decimals_exactly(ledger: Ledger) -> None:
    ledger.set_balance("sim", "ETH", "123456789.123456789012345678", "0.1", time=1)
    balance = ledger.balance("sim", "ETH")
    assert balance is not None
    assert balance.free == Decimal("123456789.123456789012345678") and balance.locked == Decimal("0.1")


def test_two_threads_staging_the_same_order_make_one_row(url: str, ledger: Ledger) -> None:
    ledgers = [ledger, Ledger.open(url)]
    try:
        results = run_together(
            2, lambda index: ledgers[index].stage_order("same", "sim", "BTC/USDT", "buy", "market", "1")
        )
    finally:
        ledgers[1].close()
    assert results[0] == results[1]
    assert len(ledger.orders()) == 1
    assert len(ledger.events("same")) == 1


def test_two_threads_recording_the_same_fill_count_it_once(url: str, ledger: Ledger) -> None:
    stage(ledger)
    ledgers = [ledger, Ledger.open(url)]
    try:
        results = run_together(2, lambda index: fill(ledgers[index], "c-1", "t-1", "1", "100"))
    finally:
        ledgers[1].close()
    assert sorted(results) == [False, True]  # type: ignore[type-var]
    assert ledger.position("sim", "BTC/USDT").quantity == 1  # type: ignore[union-attr]


def test_ledger_commands_create_then_report_a_current_schema(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tradeflow.cli import app

    config = tmp_path / "tradeflow.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[ledger]\nurl = "sqlite:///{tmp_path / "l.db"}"\n')
    runner = CliRunner()
    behind = runner.invoke(app, ["ledger", "status", "--config", str(config)], terminal_width=200)
    assert (
        behind.exit_code == 1
        and "schema empty" in behind.output
        and "tradeflow ledger upgrade" in behind.output
    )
    upgraded = runner.invoke(app, ["ledger", "upgrade", "--config", str(config)], terminal_width=200)
    assert upgraded.exit_code == 0 and "empty → 0001" in upgraded.output
    current = runner.invoke(app, ["ledger", "status", "--config", str(config)], terminal_width=200)
    assert current.exit_code == 0 and "current" in current.output
