"""Properties of ingestion over real recorded candles (Binance ADA-BTC 5m, January 2018).

A recorded source serves the real candles, with their real holes, and fails requests on a
schedule that Hypothesis draws. Whatever the schedule, as long as it eventually lets each
request through, the stored objects are byte-identical to a clean run's.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeflow.ingest import RetryPolicy, ingest_candle_series
from tradeflow.sources.base import RetryableSourceError
from tradeflow.storage.objectstore import LocalObjectStore
from tradeflow.timeframes import MINUTE_MS

FAULT_KINDS = ["rate_limit", "timeout", "unavailable", "malformed", "server_error", "network"]
POLICY = RetryPolicy(max_attempts=4, base_delay_seconds=0.01)


class RecordedSource:
    """Serves recorded candles by window, failing requests as a schedule says."""

    venue = "recorded"

    def __init__(self, rows: np.ndarray, schedule: list[list[str]] | None = None) -> None:
        self.rows = rows
        self.schedule = [list(faults) for faults in schedule or []]
        self.requests = 0

    def fetch_candles(self, symbol, timeframe, since, until, limit):
        # Each logical request is retried until its scheduled faults are used up.
        faults = self.schedule[self.requests] if self.requests < len(self.schedule) else []
        if faults:
            kind = faults.pop(0)
            raise RetryableSourceError(
                self.venue,
                f"scheduled {kind}",
                kind=kind,
                retry_after_seconds=1.0 if kind == "rate_limit" else None,
            )
        self.requests += 1
        inside = (self.rows[:, 0] >= since) & (self.rows[:, 0] <= until)
        return self.rows[inside][:limit]


@pytest.fixture(scope="module")
def ada_btc(real_data):
    table = pq.read_table(real_data / "binance" / "ADA-BTC_5m.parquet")
    return np.column_stack(
        [table.column(c).to_numpy() for c in ("timestamp", "open", "high", "low", "close", "volume")]
    ).astype(float)


def ingest(rows, schedule, sleeps):
    with tempfile.TemporaryDirectory() as folder:
        start, end = int(rows[0, 0]), int(rows[-1, 0]) + 5 * MINUTE_MS
        result = ingest_candle_series(
            RecordedSource(rows, schedule),
            LocalObjectStore(folder),
            symbol="ADA/BTC",
            timeframe="5m",
            start=start,
            end=end,
            page_limit=1000,
            policy=POLICY,
            sleep=sleeps.append,
        )
        return result


def test_real_holes_are_counted_not_patched(ada_btc):
    result = ingest(ada_btc, [], [])
    slots = (ada_btc[-1, 0] - ada_btc[0, 0]) // (5 * MINUTE_MS) + 1
    assert result.candles == len(ada_btc)  # every recorded candle, none invented
    assert result.holes == slots - len(ada_btc) > 0  # the recording's real gaps, reported


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    schedule=st.lists(st.lists(st.sampled_from(FAULT_KINDS), max_size=POLICY.max_attempts - 1), max_size=8)
)
def test_any_recoverable_fault_schedule_stores_what_a_clean_run_stores(ada_btc, schedule):
    clean = ingest(ada_btc, [], [])
    sleeps: list[float] = []
    faulty = ingest(ada_btc, schedule, sleeps)
    assert faulty.status == clean.status == "stored"
    assert [o["sha256"] for o in faulty.objects] == [o["sha256"] for o in clean.objects]
    assert faulty.retries == sum(len(faults) for faults in schedule[: clean.pages])
    waited_for_rate_limits = [s for s in sleeps if s >= 1.0]
    assert len(waited_for_rate_limits) >= sum(f.count("rate_limit") for f in schedule[: clean.pages])


def test_a_schedule_that_never_lets_a_request_through_fails_the_series(ada_btc):
    result = ingest(ada_btc, [["timeout"] * POLICY.max_attempts], [])
    assert result.status == "failed" and "gave up after 4 attempts" in result.error
    assert result.objects == []  # nothing half-stored


def test_a_series_that_outlives_its_timeout_fails_between_requests(ada_btc):
    ticks = iter(range(0, 10_000, 10))  # every clock read advances 10 s

    with tempfile.TemporaryDirectory() as folder:
        result = ingest_candle_series(
            RecordedSource(ada_btc),
            LocalObjectStore(folder),
            symbol="ADA/BTC",
            timeframe="5m",
            start=int(ada_btc[0, 0]),
            end=int(ada_btc[-1, 0]),
            page_limit=1000,
            policy=POLICY,
            timeout_seconds=25,
            clock=lambda: next(ticks),
        )
    assert result.status == "failed" and result.objects == []
    assert "timed out after 25 s with 2 of 6 pages (ingest.series_timeout_seconds)" in result.error
