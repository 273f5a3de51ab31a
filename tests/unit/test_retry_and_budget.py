"""Request retries (backoff, jitter, Retry-After) and the shared per-venue weight budget."""

import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeflow.ingest import RetryPolicy, RetryStats, VenueFailedError, WeightBudget, call_with_retry
from tradeflow.sources.base import PermanentSourceError, RetryableSourceError


class FlakyRequest:
    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "payload"


def rate_limited(seconds=None):
    return RetryableSourceError("v", "429", kind="rate_limit", retry_after_seconds=seconds)


def test_retries_until_success_and_counts_by_kind():
    sleeps = []
    request = FlakyRequest([rate_limited(), RetryableSourceError("v", "x", kind="timeout")])
    stats = RetryStats()
    result = call_with_retry(
        request,
        RetryPolicy(max_attempts=3),
        venue="v",
        stats=stats,
        sleep=sleeps.append,
        rng=random.Random(1),
    )
    assert result == "payload"
    assert request.calls == 3
    assert stats.retries == 2 and stats.by_kind == {"rate_limit": 1, "timeout": 1}
    assert len(sleeps) == 2


def test_retry_after_is_a_floor_on_the_wait():
    sleeps = []
    call_with_retry(
        FlakyRequest([rate_limited(seconds=7)]),
        RetryPolicy(base_delay_seconds=0.1),
        venue="v",
        sleep=sleeps.append,
        rng=random.Random(0),
    )
    assert sleeps == [pytest.approx(7.0)]


def test_gives_up_after_max_attempts_naming_the_venue():
    request = FlakyRequest([rate_limited()] * 10)
    with pytest.raises(VenueFailedError, match="v: gave up after 4 attempts") as caught:
        call_with_retry(request, RetryPolicy(max_attempts=4), venue="v", sleep=lambda s: None)
    assert request.calls == 4 and caught.value.attempts == 4


def test_an_excessive_retry_after_fails_the_venue_at_once():
    request = FlakyRequest([rate_limited(seconds=3600)])
    with pytest.raises(VenueFailedError, match="asked to wait 3600s"):
        call_with_retry(request, RetryPolicy(max_retry_after_seconds=60), venue="v", sleep=lambda s: None)
    assert request.calls == 1


def test_permanent_errors_are_not_retried():
    request = FlakyRequest([PermanentSourceError("v", "bad symbol")])
    with pytest.raises(PermanentSourceError):
        call_with_retry(request, RetryPolicy(), venue="v", sleep=lambda s: None)
    assert request.calls == 1


@given(retry=st.integers(1, 30), seed=st.integers(0, 2**32))
def test_backoff_grows_exponentially_within_jitter_and_cap(retry, seed):
    policy = RetryPolicy(base_delay_seconds=0.25, max_delay_seconds=10, jitter=0.5)
    delay = policy.delay(retry, None, random.Random(seed))
    nominal = min(10, 0.25 * 2 ** (retry - 1))
    assert nominal * 0.5 <= delay <= nominal * 1.5


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.lock = threading.Lock()

    def time(self):
        return self.now

    def sleep(self, seconds):
        with self.lock:
            self.now += seconds


def test_budget_spends_no_more_than_its_rate():
    clock = FakeClock()
    budget = WeightBudget(600, burst_seconds=1, clock=clock.time, sleep=clock.sleep)  # 10/s
    for _ in range(100):
        budget.acquire(2)
    # 200 weight at 10/s with a 10-weight burst: at least 19 s must have passed.
    assert clock.now >= 19.0 - 1e-9
    assert clock.now <= 20.0 + 1e-9


def test_a_pause_holds_every_request_until_retry_after():
    clock = FakeClock()
    budget = WeightBudget(60_000, clock=clock.time, sleep=clock.sleep)
    budget.pause(5.0)
    budget.acquire(1)
    assert clock.now >= 5.0


def test_budget_is_shared_across_threads():
    budget = WeightBudget(6000, burst_seconds=0.5)  # 100 weight/s, 50 burst
    import time

    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [budget.acquire(5) for _ in range(6)]) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 150 weight with 50 of burst at 100/s needs about a second in total, whoever spends it.
    assert time.monotonic() - started >= 0.9
