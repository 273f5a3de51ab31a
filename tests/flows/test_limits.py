"""Prefect global concurrency limits: a venue's request budget shared across runs, one session per venue."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound

from tasks import limits
from tasks.limits import SessionAlreadyRunningError, ensure_limits, single_session, venue_limit_name
from tradeflow.config import load_settings
from tradeflow.ingest import shared_budget


@contextmanager
def removed_afterwards(*names: str) -> Iterator[None]:
    """Delete these global limits after the test, so no other test of the session meets them."""
    try:
        yield
    finally:
        with get_client(sync_client=True) as client:
            for name in names:
                with suppress(ObjectNotFound):
                    client.delete_global_concurrency_limit_by_name(name)
        limits._exists.clear()


def test_ensure_limits_creates_a_rate_limit_per_venue_and_a_session_limit_and_is_idempotent(
    write_config: Callable[..., str],
) -> None:
    settings = load_settings(write_config(venues=[("sim-budget", 11, None, "")]))
    with removed_afterwards("venue-sim-budget", "stream-execution-sim-budget"):
        ensure_limits(settings)
        ensure_limits(settings)
        with get_client(sync_client=True) as client:
            venue = client.read_global_concurrency_limit_by_name("venue-sim-budget")
            session = client.read_global_concurrency_limit_by_name("stream-execution-sim-budget")
            named = [x.name for x in client.read_global_concurrency_limits(limit=200)]
        weight = settings.venue("sim-budget").weight_per_minute
        assert (venue.limit, venue.slot_decay_per_second) == (weight, pytest.approx(weight / 60))
        assert (session.limit, session.slot_decay_per_second) == (1, 0)
        assert named.count("venue-sim-budget") == 1


def test_an_ingest_run_takes_its_request_weight_from_the_venues_global_limit(
    write_config: Callable[..., str],
) -> None:
    from flows.ingest import ingest_market_data

    config = write_config(venues=[("sim-shared", 11, ["BTC/USDT"], "")])
    settings = load_settings(config)
    name = venue_limit_name("sim-shared")
    with removed_afterwards(name):
        # A limit whose slots barely decay, so what the run took can be read back afterwards.
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=settings.venue("sim-shared").weight_per_minute,
                                             slot_decay_per_second=0.001)
            )  # fmt: skip
        limits._exists.clear()
        result = ingest_market_data(config_path=config)
        assert {s["status"] for s in result["series"]} == {"stored"}
        budget = shared_budget("sim-shared", settings.venue("sim-shared").weight_per_minute)
        assert budget.granted >= budget.grant_block  # the run drew weight from the global limit...
        with get_client(sync_client=True) as client:
            taken = client.read_global_concurrency_limit_by_name(name).active_slots
        assert abs(taken - budget.granted) <= 1  # ...and the server holds exactly what it granted


def test_a_second_streaming_session_on_a_venue_refuses_to_start_naming_the_limit(
    write_config: Callable[..., str],
) -> None:
    from flows.execution import stream_execution

    config = write_config(venues=[("sim-solo", 11, None, "")])
    with removed_afterwards("venue-sim-solo", "stream-execution-sim-solo"):
        ensure_limits(load_settings(config))
        with (
            single_session("sim-solo"),  # a session already trading the venue
            pytest.raises(SessionAlreadyRunningError, match="stream-execution-sim-solo"),
        ):
            stream_execution(config_path=config, mode="paper", duration_seconds=1.0)
        with single_session("sim-solo"):  # released when that session ended
            pass
