"""Reconnect backoff with full jitter, and the snapshot request pacer, as pure functions."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeflow.execution.backoff import Backoff, RequestPacer


def test_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    backoff = Backoff(base_seconds=0.1, cap_seconds=2.0)
    assert [backoff.ceiling(n) for n in range(7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert backoff.ceiling(10**9) == 2.0  # huge attempt counts neither overflow nor hang


@given(
    base=st.floats(0.001, 5.0),
    factor=st.floats(1.0, 100.0),
    multiplier=st.floats(1.0, 4.0),
    attempt=st.integers(0, 200),
    seed=st.integers(0, 2**32),
)
def test_delay_is_uniform_below_a_capped_growing_ceiling(
    base: float, factor: float, multiplier: float, attempt: int, seed: int
) -> None:
    backoff = Backoff(base_seconds=base, cap_seconds=base * factor, multiplier=multiplier)
    ceiling = backoff.ceiling(attempt)
    assert base <= ceiling <= backoff.cap_seconds
    assert backoff.ceiling(attempt + 1) >= ceiling
    delay = backoff.delay(attempt, random.Random(seed))
    assert 0.0 <= delay <= ceiling
    assert delay == backoff.delay(attempt, random.Random(seed))  # seeded: reproducible


def test_full_jitter_spreads_clients_that_fail_together() -> None:
    backoff = Backoff(base_seconds=1.0, cap_seconds=1.0)
    rng = random.Random(7)
    delays = sorted(backoff.delay(0, rng) for _ in range(1000))
    # Uniform on [0, 1]: every tenth of the range is used, none is crowded.
    counts = [sum(1 for d in delays if k / 10 <= d < (k + 1) / 10) for k in range(10)]
    assert min(counts) > 60
    assert max(counts) < 140


@pytest.mark.parametrize(
    ("base", "cap", "multiplier"),
    [(0.0, 1.0, 2.0), (2.0, 1.0, 2.0), (0.1, 1.0, 0.5)],
)
def test_backoff_rejects_bad_parameters(base: float, cap: float, multiplier: float) -> None:
    with pytest.raises(ValueError, match="base_seconds"):
        Backoff(base_seconds=base, cap_seconds=cap, multiplier=multiplier)


def test_pacer_spaces_a_burst_by_the_minimum_interval() -> None:
    pacer = RequestPacer(min_interval_seconds=0.5, budget=1000)
    starts = [pacer.reserve(10.0, 50) for _ in range(5)]
    assert starts == pytest.approx([10.0, 10.5, 11.0, 11.5, 12.0])
    assert pacer.reserve(20.0, 50) == 20.0  # idle since: no wait


def test_pacer_waits_for_the_window_when_the_budget_is_spent() -> None:
    pacer = RequestPacer(min_interval_seconds=0.0, budget=100, window_seconds=60.0)
    assert [pacer.reserve(0.0, 50), pacer.reserve(1.0, 50)] == [0.0, 1.0]
    assert pacer.reserve(2.0, 50) == 60.0  # the first request leaves the window
    assert pacer.reserve(2.0, 50) == 61.0
    assert pacer.used(61.0) == 100
    with pytest.raises(ValueError, match="weight"):
        pacer.reserve(0.0, 101)


@given(
    interval=st.floats(0.0, 2.0),
    budget=st.integers(50, 500),
    requests=st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(1, 50)), min_size=1, max_size=60),
)
def test_pacer_never_breaks_spacing_or_budget(
    interval: float, budget: int, requests: list[tuple[float, int]]
) -> None:
    pacer = RequestPacer(min_interval_seconds=interval, budget=budget, window_seconds=10.0)
    now = 0.0
    granted: list[tuple[float, int]] = []
    for advance, weight in requests:
        now += advance
        start = pacer.reserve(now, weight)
        assert start >= now
        granted.append((start, weight))
    starts = [s for s, _ in granted]
    assert starts == sorted(starts)  # first come, first served
    for earlier, later in itertools.pairwise(starts):
        assert later - earlier >= interval - 1e-9
    for start, _ in granted:  # any window ending at a start holds at most the budget
        assert sum(w for s, w in granted if start - 10.0 + 1e-9 < s <= start) <= budget
