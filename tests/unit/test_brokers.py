"""Broker value types, deterministic client order ids, the staging broker, status mapping."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeflow.execution.brokers import (
    BROKER_STATUSES,
    OrderRequest,
    StagingBroker,
    client_order_id,
)
from tradeflow.execution.ccxt_broker import BINANCE_STATUSES, ledger_status
from tradeflow.ledger.schema import ORDER_STATES

BINANCE_CLIENT_ID = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")


@given(st.text(max_size=40), st.sampled_from(["BTC/USDT", "ETH/USDT"]), st.integers(0, 10**12))
def test_client_order_ids_are_deterministic_and_valid_for_binance(
    session: str, symbol: str, sequence: int
) -> None:
    cid = client_order_id(session, symbol, sequence)
    assert cid == client_order_id(session, symbol, sequence)
    assert BINANCE_CLIENT_ID.match(cid)
    assert cid != client_order_id(session, symbol, sequence + 1)
    assert cid != client_order_id(session + "x", symbol, sequence)


def test_client_order_ids_keep_field_boundaries() -> None:
    assert client_order_id("a", "bc", 1) != client_order_id("ab", "c", 1)


@pytest.mark.parametrize(
    "fields",
    [
        {"client_order_id": "has space"},
        {"client_order_id": "x" * 37},
        {"side": "long"},
        {"quantity": 0.0},
        {"price": -1.0},
        {"time_in_force": "DAY"},
    ],
)
def test_malformed_order_requests_are_refused(fields: dict[str, object]) -> None:
    base: dict[str, object] = {"client_order_id": "tf1", "symbol": "BTC/USDT", "side": "buy", "quantity": 1.0}
    with pytest.raises(ValueError):
        OrderRequest(**{**base, **fields})  # type: ignore[arg-type]


def test_broker_statuses_are_ledger_states() -> None:
    assert set(BROKER_STATUSES) <= set(ORDER_STATES)
    assert set(BINANCE_STATUSES.values()) <= set(BROKER_STATUSES)


@pytest.mark.parametrize(
    ("venue", "unified", "filled", "expected"),
    [
        ("NEW", "open", 0.0, "new"),
        ("PARTIALLY_FILLED", "open", 0.5, "partially_filled"),
        ("FILLED", "closed", 1.0, "filled"),
        ("CANCELED", "canceled", 0.3, "cancelled"),
        ("EXPIRED", "expired", 0.3, "cancelled"),
        ("REJECTED", "rejected", 0.0, "rejected"),
        (None, "open", 0.2, "partially_filled"),
        (None, "open", 0.0, "new"),
        (None, "closed", 1.0, "filled"),
        (None, None, 0.0, "unknown"),
    ],
)
def test_venue_statuses_map_to_ledger_states(
    venue: str | None, unified: str | None, filled: float, expected: str
) -> None:
    assert ledger_status(venue, unified, filled) == expected


def test_the_staging_broker_records_everything_and_sends_nothing() -> None:
    async def scenario() -> None:
        broker = StagingBroker(balances={"USDT": 500.0})
        request = OrderRequest("tf1", "BTC/USDT", "buy", 0.1, 60_000.0)
        staged = await broker.submit(request)
        assert (staged.status, staged.venue_order_id, staged.fills) == ("staged", None, ())
        assert await broker.submit(request) == staged  # idempotent
        assert broker.requests == [request, request]
        assert await broker.query("tf1", "BTC/USDT") == staged
        assert await broker.query("tf2", "BTC/USDT") is None
        assert await broker.open_orders(["BTC/USDT"]) == [staged]
        assert (await broker.cancel("tf1", "BTC/USDT")).status == "cancelled"
        assert await broker.open_orders(["BTC/USDT"]) == []
        assert await broker.fills_since(["BTC/USDT"], 0) == []
        assert await broker.balances() == {"USDT": (500.0, 0.0)}
        await broker.close()

    asyncio.run(scenario())
