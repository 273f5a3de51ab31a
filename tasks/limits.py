"""Prefect global concurrency limits: one request budget per venue, one streaming session per venue.

Every flow run on a venue (an ingest every minute, a backfill, a daily pipeline, on one worker
or on several) draws its request weight from the venue's rate limit ``venue-<id>``: a Prefect
global concurrency limit with ``limit`` = the venue's ``weight_per_minute`` and slots that
decay at a minute's pace. A process takes weight from it in blocks (see
:class:`tradeflow.ingest.WeightBudget`). ``stream-execution-<id>`` (limit 1) is held by the
streaming session trading the venue, so a second one, however it was started, refuses to run.

``tradeflow serve`` and ``tradeflow deploy`` create the limits (:func:`ensure_limits`). Where
they do not exist (the ephemeral API of ``make run``) nothing is shared beyond the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency, rate_limit
from prefect.exceptions import ObjectNotFound

from tradeflow.config import Settings, VenueConfig

# Seconds a streaming session's slot outlives its process: the lease is renewed while the session
# runs, so a killed session frees the venue this long after it died.
STREAM_LEASE_SECONDS = 60.0  # the server accepts no shorter lease

_exists: dict[str, bool] = {}
_exists_lock = threading.Lock()


def venue_limit_name(venue_id: str) -> str:
    """Name of the venue's shared request-weight rate limit."""
    return f"venue-{venue_id}"


def stream_limit_name(venue_id: str) -> str:
    """Name of the limit a streaming session on the venue holds."""
    return f"stream-execution-{venue_id}"


def _limit_exists(name: str) -> bool:
    """Whether an active global limit ``name`` exists (asked once per process)."""
    with _exists_lock:
        if name not in _exists:
            try:
                with get_client(sync_client=True) as client:
                    _exists[name] = client.read_global_concurrency_limit_by_name(name).active
            except ObjectNotFound:
                _exists[name] = False
        return _exists[name]


def venue_grant(settings: Settings, venue: VenueConfig) -> Callable[[int], None] | None:
    """Return the grant that takes weight from the venue's global limit, or None where there is none."""
    name = venue_limit_name(venue.id)
    if not settings.orchestration.venue_limits or not _limit_exists(name):
        return None

    def grant(weight: int) -> None:
        rate_limit(name, occupy=min(weight, venue.weight_per_minute), strict=True)

    return grant


class SessionAlreadyRunningError(RuntimeError):
    """Another streaming session holds the venue's limit."""


@contextmanager
def single_session(venue_id: str, wait_seconds: float = 10.0) -> Iterator[None]:
    """Hold ``stream-execution-<venue>`` for the session's life; refuse when another session holds it.

    Raises:
        SessionAlreadyRunningError: naming the limit, when it stays taken for ``wait_seconds``.
    """
    name = stream_limit_name(venue_id)
    if not _limit_exists(name):
        yield
        return
    try:
        with concurrency(name, occupy=1, timeout_seconds=wait_seconds, lease_duration=STREAM_LEASE_SECONDS,
                         strict=True):  # fmt: skip
            yield
    except TimeoutError as error:
        raise SessionAlreadyRunningError(
            f"another stream-execution session is trading {venue_id}: the global concurrency limit "
            f"{name!r} stayed taken for {wait_seconds:.0f} s. Stop that session first (cancel its flow run, "
            f"or Ctrl-C); a killed session frees it within {STREAM_LEASE_SECONDS:.0f} s."
        ) from error


def ensure_limits(settings: Settings) -> dict[str, dict[str, Any]]:
    """Create or update the venue rate limits and the streaming session limits; return them by name."""
    wanted: dict[str, dict[str, Any]] = {}
    for venue in settings.venues:
        wanted[venue_limit_name(venue.id)] = {
            "limit": venue.weight_per_minute,
            "slot_decay_per_second": venue.weight_per_minute / 60.0,
        }
        wanted[stream_limit_name(venue.id)] = {"limit": 1, "slot_decay_per_second": 0.0}
    with get_client(sync_client=True) as client:
        for name, values in wanted.items():
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, **values))
            else:
                client.update_global_concurrency_limit(
                    name, GlobalConcurrencyLimitUpdate(active=True, **values)
                )
    with _exists_lock:
        _exists.clear()
    return wanted
