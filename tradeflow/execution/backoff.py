"""Pure pacing rules for a market-data client: reconnect backoff and snapshot request pacing.

- :class:`Backoff`: exponential backoff with *full jitter* (AWS architecture blog, "Exponential
  Backoff And Jitter"): the n-th retry waits a uniform random time in ``[0, min(cap, base * 2**n)]``,
  so clients that lost their connection together do not come back together.
- :class:`RequestPacer`: spaces requests (REST depth snapshots) at least ``min_interval_seconds``
  apart and keeps their total weight inside a budget per sliding window, so a reconnect storm
  over many symbols turns into a queue instead of a burst that exhausts the venue's request
  weight (and gets the client banned).

Both take time and randomness as arguments, so tests drive them with seeded generators and
made-up clocks; the async scheduler around the pacer lives in :mod:`tradeflow.execution.feed`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter.

    Attributes:
        base_seconds: Ceiling of the first retry's wait.
        cap_seconds: Largest ceiling.
        multiplier: Growth of the ceiling per attempt.
    """

    base_seconds: float = 0.1
    cap_seconds: float = 10.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        """Check the parameters."""
        if self.base_seconds <= 0 or self.cap_seconds < self.base_seconds or self.multiplier < 1:
            raise ValueError(
                "need 0 < base_seconds <= cap_seconds and multiplier >= 1, got "
                f"{self.base_seconds}, {self.cap_seconds}, {self.multiplier}"
            )

    def ceiling(self, attempt: int) -> float:
        """Return the largest wait before retry number ``attempt`` (0 for the first retry)."""
        if attempt < 0:
            raise ValueError(f"attempt must not be negative, got {attempt}")
        if self.multiplier == 1:
            return self.base_seconds
        ceiling = self.base_seconds
        for _ in range(attempt):  # stops growing at the cap, so huge attempts cannot overflow
            if ceiling >= self.cap_seconds:
                break
            ceiling *= self.multiplier
        return min(ceiling, self.cap_seconds)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Return the wait before retry number ``attempt``: uniform in ``[0, ceiling(attempt)]``."""
        return rng.uniform(0.0, self.ceiling(attempt))


class RequestPacer:
    """Give each request a start time: spaced, and within a weight budget per sliding window.

    Reservations are first come, first served: each starts no earlier than the previous one plus
    ``min_interval_seconds``, and no earlier than the moment the window's weight (this request
    included) fits the budget.

    Args:
        min_interval_seconds: Least spacing between two requests' start times.
        budget: Most weight started in any window of ``window_seconds``.
        window_seconds: The window (Binance counts REQUEST_WEIGHT per minute).

    Raises:
        ValueError: If a parameter is not positive (the interval may be 0).
    """

    def __init__(self, min_interval_seconds: float, budget: int, window_seconds: float = 60.0) -> None:
        if min_interval_seconds < 0 or budget <= 0 or window_seconds <= 0:
            raise ValueError(
                "need min_interval_seconds >= 0, budget > 0, window_seconds > 0; got "
                f"{min_interval_seconds}, {budget}, {window_seconds}"
            )
        self.min_interval_seconds = min_interval_seconds
        self.budget = budget
        self.window_seconds = window_seconds
        self._starts: deque[tuple[float, int]] = deque()
        self._last: float | None = None

    def reserve(self, now: float, weight: int) -> float:
        """Reserve a start time for a request of ``weight``; return it (``>= now``).

        Raises:
            ValueError: If the weight is not positive or exceeds the whole budget.
        """
        if weight <= 0 or weight > self.budget:
            raise ValueError(f"weight must be in 1..{self.budget}, got {weight}")
        start = now if self._last is None else max(now, self._last + self.min_interval_seconds)
        starts = self._starts
        while True:
            while starts and starts[0][0] <= start - self.window_seconds:
                starts.popleft()
            if sum(w for _, w in starts) + weight <= self.budget:
                break
            # Wait until the oldest request in the window leaves it (popped here: floats may
            # not round-trip ``t + window - window`` exactly, and the loop must make progress).
            oldest, _ = starts.popleft()
            start = max(start, oldest + self.window_seconds)
        starts.append((start, weight))
        self._last = start
        return start

    def used(self, now: float) -> int:
        """Return the weight of the requests started in the window ending at ``now``."""
        return sum(w for t, w in self._starts if now - self.window_seconds < t <= now)
