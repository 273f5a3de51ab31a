"""The deterministic transport-fault schedule and the per-minute weight budget."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.simulator import FAULT_PROFILES, OutageWindow, TransportFaults
from tradeflow.simulator.faults import (
    FaultKind,
    FaultScheduler,
    fault_for_attempt,
    fault_schedule,
    in_outage,
    latency_seconds,
    request_key,
)
from tradeflow.simulator.weights import WeightBudget, request_weight

CHAOS = FAULT_PROFILES["chaos"][0]


def _key(i: int) -> str:
    return request_key("GET", "/api/v3/klines", [("symbol", "BTCUSDT"), ("startTime", str(i))])


def test_request_key_ignores_query_order() -> None:
    a = request_key("GET", "/api/v3/klines", [("symbol", "X"), ("limit", "5")])
    b = request_key("GET", "/api/v3/klines", [("limit", "5"), ("symbol", "X")])
    assert a == b
    assert a != request_key("GET", "/api/v3/klines", [("limit", "6"), ("symbol", "X")])


def test_fault_rates_match_the_chaos_profile() -> None:
    n = 20_000
    counts = Counter(fault_for_attempt(CHAOS, 11, _key(i), 0) for i in range(n))
    for kind in FaultKind:
        p = float(getattr(CHAOS, kind.value))
        assert abs(counts[kind] / n - p) < 5 * (p * (1 - p) / n) ** 0.5 + 1e-3, kind
    assert abs(counts[None] / n - (1 - CHAOS.total_probability)) < 0.02


def test_clean_faults_never_fire() -> None:
    assert all(fault_for_attempt(TransportFaults(), 1, _key(i), 0) is None for i in range(1000))


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    key=st.text(min_size=1, max_size=30),
    cap=st.integers(0, 4),
    p=st.floats(0.0, 1.0),
)
def test_schedule_never_exceeds_the_consecutive_fault_cap(seed: int, key: str, cap: int, p: float) -> None:
    faults = TransportFaults(server_error_5xx=p, max_consecutive_faults=cap)
    schedule = fault_schedule(faults, seed, key, 30)
    run = 0
    for kind in schedule:
        run = run + 1 if kind is not None else 0
        assert run <= cap
    assert schedule == fault_schedule(faults, seed, key, 30)


def test_always_failing_requests_get_through_after_the_cap() -> None:
    faults = TransportFaults(server_error_5xx=1.0, max_consecutive_faults=3)
    scheduler = FaultScheduler(faults, seed=1)
    kinds = [scheduler.next("k").kind for _ in range(8)]
    assert kinds == [FaultKind.SERVER_ERROR_5XX] * 3 + [None] + [FaultKind.SERVER_ERROR_5XX] * 3 + [None]


def test_interleaving_of_requests_does_not_change_which_attempts_fail() -> None:
    keys = [_key(i) for i in range(50)]
    attempts = [k for k in keys for _ in range(4)]
    outcomes: list[dict[str, list[FaultKind | None]]] = []
    for order_seed in (1, 2):
        shuffled = attempts[:]
        random.Random(order_seed).shuffle(shuffled)
        scheduler = FaultScheduler(CHAOS, seed=3)
        seen: dict[str, list[FaultKind | None]] = {}
        for key in shuffled:
            seen.setdefault(key, []).append(scheduler.next(key).kind)
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == {k: fault_schedule(CHAOS, 3, k, 4) for k in keys}
    assert any(kind is not None for kinds in outcomes[0].values() for kind in kinds)


def test_seed_changes_the_schedule() -> None:
    a = [fault_for_attempt(CHAOS, 1, _key(i), 0) for i in range(300)]
    b = [fault_for_attempt(CHAOS, 2, _key(i), 0) for i in range(300)]
    assert a != b


def test_outage_windows_and_down() -> None:
    faults = TransportFaults(outages=[OutageWindow(start_seconds=10, duration_seconds=5)])
    assert [in_outage(faults, s) for s in (9.9, 10.0, 14.9, 15.0)] == [
        False,
        True,
        True,
        False,
    ]
    assert in_outage(TransportFaults(down=True), 0.0)


def test_latency_is_mean_plus_bounded_deterministic_jitter() -> None:
    values = [latency_seconds(50, 20, 1, _key(i), 0) for i in range(500)]
    assert min(values) >= 0.030 and max(values) <= 0.070
    assert 0.045 < sum(values) / len(values) < 0.055
    assert values == [latency_seconds(50, 20, 1, _key(i), 0) for i in range(500)]


@pytest.mark.parametrize(
    ("path", "query", "weight"),
    [
        ("/api/v3/ping", {}, 1),
        ("/api/v3/time", {}, 1),
        ("/api/v3/exchangeInfo", {}, 20),
        ("/api/v3/klines", {"limit": "1000"}, 2),
        ("/api/v3/depth", {}, 5),
        ("/api/v3/depth", {"limit": "100"}, 5),
        ("/api/v3/depth", {"limit": "101"}, 25),
        ("/api/v3/depth", {"limit": "1000"}, 50),
        ("/api/v3/depth", {"limit": "5000"}, 250),
        ("/api/v3/trades", {"limit": "1000"}, 25),
        ("/api/v3/ticker/24hr", {"symbol": "BTCUSDT"}, 2),
        ("/api/v3/ticker/24hr", {}, 80),
        ("/api/v3/ticker/price", {"symbol": "BTCUSDT"}, 2),
        ("/api/v3/ticker/price", {}, 4),
        ("/api/v3/nope", {}, 1),
    ],
)
def test_documented_binance_weights(path: str, query: dict[str, str], weight: int) -> None:
    assert request_weight(path, query) == weight


def test_weight_window_refuses_overflow_and_resets_each_utc_minute() -> None:
    budget = WeightBudget(100)
    minute = 1_767_270_840_000
    assert budget.charge(60, minute + 1_000).used == 60
    refused = budget.charge(50, minute + 44_500)
    assert not refused.allowed
    assert refused.used == 60, "a refused request is not charged"
    assert refused.retry_after_seconds == 16  # 15.5 s left, rounded up
    assert budget.charge(40, minute + 59_999).used == 100
    last = budget.charge(1, minute + 59_999)
    assert not last.allowed and last.retry_after_seconds == 1
    fresh = budget.charge(1, minute + 60_000)
    assert fresh.allowed and fresh.used == 1
    assert budget.used(minute + 61_000) == 1
