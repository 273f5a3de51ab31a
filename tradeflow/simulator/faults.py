"""Deterministic transport-fault schedule of a venue.

Whether an attempt fails is a hash of (venue seed, request key, attempt number of that key),
never a global counter or wall-clock randomness: concurrent clients cannot change which of a
request's attempts fail, and a retry loop meets the same schedule on every run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode

from tradeflow.simulator import rng
from tradeflow.simulator.spec import TransportFaults


class FaultKind(StrEnum):
    """Kinds of per-request transport faults, named like the TransportFaults fields."""

    RATE_LIMIT_429 = "rate_limit_429"
    SERVER_ERROR_5XX = "server_error_5xx"
    SLOW = "slow"
    TIMEOUT = "timeout"
    MALFORMED_JSON = "malformed_json"
    HTML_ERROR = "html_error"


def request_key(method: str, path: str, query: Iterable[tuple[str, str]]) -> str:
    """Return the canonical key of a request: method, path and sorted query string."""
    return f"{method} {path}?{urlencode(sorted(query))}"


def fault_for_attempt(faults: TransportFaults, seed: int, key: str, attempt: int) -> FaultKind | None:
    """Return the fault drawn for one attempt, ignoring the consecutive-fault cap.

    Args:
        faults: Fault probabilities.
        seed: Venue seed.
        key: Request key from :func:`request_key`.
        attempt: How many times the venue had seen this key before (0 for the first).
    """
    if faults.total_probability <= 0.0:
        return None
    u = rng.unit(seed, "fault", key, attempt)
    for kind in FaultKind:
        p = float(getattr(faults, kind.value))
        if u < p:
            return kind
        u -= p
    return None


def fault_schedule(faults: TransportFaults, seed: int, key: str, attempts: int) -> list[FaultKind | None]:
    """Return the faults of a key's first ``attempts`` attempts, cap applied.

    After ``max_consecutive_faults`` faulted attempts in a row the next attempt succeeds.
    """
    out: list[FaultKind | None] = []
    consecutive = 0
    for attempt in range(attempts):
        kind = None
        if consecutive < faults.max_consecutive_faults:
            kind = fault_for_attempt(faults, seed, key, attempt)
        consecutive = consecutive + 1 if kind is not None else 0
        out.append(kind)
    return out


def variant(seed: int, key: str, attempt: int, choices: int) -> int:
    """Return a deterministic choice in ``range(choices)`` for an attempt, e.g. a 5xx status."""
    return int(rng.unit(seed, "variant", key, attempt) * choices) % choices


def latency_seconds(mean_ms: float, jitter_ms: float, seed: int, key: str, attempt: int) -> float:
    """Return the added latency of an attempt: mean plus a deterministic uniform jitter."""
    if mean_ms <= 0 and jitter_ms <= 0:
        return 0.0
    u = rng.unit(seed, "latency", key, attempt)
    return max(0.0, mean_ms + jitter_ms * (2.0 * u - 1.0)) / 1000.0


def in_outage(faults: TransportFaults, seconds_since_start: float) -> bool:
    """Return whether the venue is in a scheduled outage (or down for good)."""
    if faults.down:
        return True
    return any(
        w.start_seconds <= seconds_since_start < w.start_seconds + w.duration_seconds for w in faults.outages
    )


@dataclass(frozen=True)
class FaultDecision:
    """The fault layer's verdict for one request.

    Attributes:
        attempt: How many times this key had been seen before.
        kind: The fault to inject, or None to answer normally.
    """

    attempt: int
    kind: FaultKind | None


class FaultScheduler:
    """Track attempts per request key and hand out the venue's fault schedule."""

    def __init__(self, faults: TransportFaults, seed: int) -> None:
        """Start with no request seen."""
        self.faults = faults
        self.seed = seed
        self._attempts: dict[str, int] = {}
        self._consecutive: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, key: str) -> FaultDecision:
        """Register an attempt of ``key`` and return its fault."""
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            consecutive = self._consecutive.get(key, 0)
            kind = None
            if consecutive < self.faults.max_consecutive_faults:
                kind = fault_for_attempt(self.faults, self.seed, key, attempt)
            if kind is None:
                self._consecutive.pop(key, None)
            else:
                self._consecutive[key] = consecutive + 1
            return FaultDecision(attempt, kind)
