"""The trading ledger on the machine's real PostgreSQL: the same behaviours as on SQLite.

The core tests are imported from the SQLite module and collected here again, where the ``url``
and ``ledger`` fixtures below point them at a fresh database created for this module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from tests.postgres import fresh_database
from tests.unit.test_ledger import (  # noqa: F401 - collected again here, on PostgreSQL
    test_a_fill_recorded_twice_counts_once,
    test_allowed_transitions_append_numbered_events,
    test_amounts_keep_eighteen_decimals_exactly,
    test_balances_are_inserted_then_updated,
    test_migrations_create_every_table_and_round_trip,
    test_migrations_match_the_models,
    test_open_without_migrating_a_current_database_works,
    test_open_without_migrating_a_schema_behind_is_refused,
    test_order_counts_by_state_and_venue,
    test_partial_then_full_fill_moves_order_and_position,
    test_refused_transitions_name_both_states,
    test_risk_events_are_recorded_in_time_order,
    test_signals_are_recorded_once_and_orders_point_at_them,
    test_staging_the_same_client_order_id_twice_keeps_one_order,
    test_two_threads_recording_the_same_fill_count_it_once,
    test_two_threads_staging_the_same_order_make_one_row,
)
from tradeflow.ledger import Ledger, LedgerSchemaError

pytestmark = pytest.mark.postgres

LEDGER_TABLES = "signals, orders, order_events, fills, positions, balances, risk_events"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """Create a uniquely named database for this module; drop it afterwards."""
    with fresh_database("tradeflow_test") as url:
        yield url


@pytest.fixture
def url(server_url: str) -> str:
    """Give each test the module's database with an up-to-date, empty ledger."""
    with Ledger.open(server_url) as ledger:
        ledger.upgrade()
        engine = create_engine(server_url)
        try:
            with engine.begin() as connection:
                connection.execute(text(f"TRUNCATE {LEDGER_TABLES} RESTART IDENTITY CASCADE"))
        finally:
            engine.dispose()
    return server_url


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    with Ledger.open(url) as opened:
        yield opened


def test_open_without_migrating_an_empty_postgres_database_explains_what_to_do(server_url: str) -> None:
    with Ledger.open(server_url) as ledger:
        ledger.downgrade("base")
        with pytest.raises(LedgerSchemaError) as raised:
            Ledger.open(server_url, migrate=False)
        assert "empty database" in str(raised.value) and "tradeflow ledger upgrade" in str(raised.value)
        ledger.upgrade()


def test_amounts_are_numeric_38_18(url: str, ledger: Ledger) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns "
                    "WHERE table_name = 'fills' AND column_name = 'price'"
                )
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == ("numeric", 38, 18)
