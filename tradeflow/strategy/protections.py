"""Protections: the portfolio-level brakes, applied the same way in backtests and live.

- **Max drawdown halt**: equity ``max_drawdown`` below its peak halts trading (state HALTED):
  open positions are closed and no entry is allowed until someone resets it.
- **Daily loss limit**: equity ``daily_loss_limit`` below where the UTC day started pauses
  entries until the next UTC day (state REDUCING: exits still run).
- **Stop-loss guard**: ``stop_guard_count`` stop-outs within ``stop_guard_window_minutes`` pause
  entries for ``stop_guard_pause_minutes``.
- **Cooldown**: after a position in a symbol closes, no new entry in it for
  ``cooldown_minutes``.

:class:`Protections` is fed equity marks and exits as they happen and answers
:meth:`Protections.entry_allowed`; each trigger is kept in :attr:`Protections.events` with its
reason. :func:`first_breach` finds, vectorised, the first bar of a stretch whose equity would trip
the drawdown halt or the daily loss limit, so the backtest can skip bars where nothing happens.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tradeflow.timeframes import DAY_MS, MINUTE_MS

ACTIVE, REDUCING, HALTED = "ACTIVE", "REDUCING", "HALTED"
STOP_KINDS = frozenset({"stop", "trailing_stop", "breakeven_stop"})


@dataclass(frozen=True)
class ProtectionConfig:
    """Limits of the protections (fractions of equity; 0 switches one off)."""

    max_drawdown: float = 0.20
    daily_loss_limit: float = 0.05
    stop_guard_count: int = 3
    stop_guard_window_minutes: int = 6 * 60
    stop_guard_pause_minutes: int = 2 * 60
    cooldown_minutes: int = 30


@dataclass(frozen=True)
class ProtectionEvent:
    """A protection that triggered."""

    time: int
    kind: str
    state: str
    reason: str
    symbol: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the event as plain values."""
        return dict(self.__dict__)


@dataclass
class Protections:
    """The protections' state, updated incrementally."""

    config: ProtectionConfig = field(default_factory=ProtectionConfig)
    peak: float = math.nan
    day: int = -1
    day_start_equity: float = math.nan
    halted: bool = False
    paused_until: int = -1
    pause_reason: str = ""
    stop_times: deque[int] = field(default_factory=deque)
    cooldowns: dict[str, int] = field(default_factory=dict)
    events: list[ProtectionEvent] = field(default_factory=list)

    @property
    def state(self) -> str:
        """Return ACTIVE, REDUCING (entries paused) or HALTED."""
        if self.halted:
            return HALTED
        return REDUCING if self.paused_until >= 0 else ACTIVE

    def on_equity(self, time: int, equity: float) -> list[ProtectionEvent]:
        """Take in the equity marked at the close of the bar opening at ``time``."""
        found: list[ProtectionEvent] = []
        day = time // DAY_MS
        if day != self.day:
            self.day, self.day_start_equity = day, equity
            if self.pause_reason == "daily loss limit":
                self._resume(time, found)
        if self.paused_until >= 0 and time >= self.paused_until and self.pause_reason != "daily loss limit":
            self._resume(time, found)
        self.peak = equity if math.isnan(self.peak) else max(self.peak, equity)
        config = self.config
        if not self.halted and config.max_drawdown > 0 and equity <= self.peak * (1 - config.max_drawdown):
            self.halted = True
            reason = f"drawdown {1 - equity / self.peak:.1%} reached the halt at {config.max_drawdown:.0%}"
            found.append(self._event(time, "max_drawdown", reason))
        limit = config.daily_loss_limit
        if (
            not self.halted
            and limit > 0
            and self.pause_reason != "daily loss limit"
            and equity <= self.day_start_equity * (1 - limit)
        ):
            self.paused_until, self.pause_reason = (day + 1) * DAY_MS, "daily loss limit"
            reason = f"day's loss {1 - equity / self.day_start_equity:.1%} reached the limit {limit:.0%}"
            found.append(self._event(time, "daily_loss_limit", reason))
        return found

    def on_exit(self, time: int, symbol: str, kind: str, closed: bool) -> list[ProtectionEvent]:
        """Take in an exit (``closed``: the position is now flat) at the bar opening at ``time``."""
        found: list[ProtectionEvent] = []
        config = self.config
        if closed and config.cooldown_minutes > 0:
            self.cooldowns[symbol] = time + MINUTE_MS + config.cooldown_minutes * MINUTE_MS
        if kind in STOP_KINDS and config.stop_guard_count > 0:
            window = config.stop_guard_window_minutes * MINUTE_MS
            self.stop_times.append(time)
            while self.stop_times and self.stop_times[0] <= time - window:
                self.stop_times.popleft()
            if len(self.stop_times) >= config.stop_guard_count and not self.halted:
                until = time + MINUTE_MS + config.stop_guard_pause_minutes * MINUTE_MS
                if until > self.paused_until:
                    self.paused_until, self.pause_reason = until, "stop-loss guard"
                    reason = (
                        f"{len(self.stop_times)} stops within {config.stop_guard_window_minutes} min: "
                        f"entries paused {config.stop_guard_pause_minutes} min"
                    )
                    found.append(self._event(time, "stop_guard", reason, symbol))
                self.stop_times.clear()
        return found

    def entry_allowed(self, time: int, symbol: str) -> tuple[bool, str]:
        """Return whether a new entry in ``symbol`` may be decided at the close of bar ``time``."""
        if self.halted:
            return False, "trading halted: " + next(
                (e.reason for e in reversed(self.events) if e.kind == "max_drawdown"), "max drawdown"
            )
        if self.paused_until >= 0 and time + MINUTE_MS < self.paused_until:
            return False, f"entries paused ({self.pause_reason})"
        until = self.cooldowns.get(symbol, -1)
        if time + MINUTE_MS < until:
            return False, f"cooldown after the last exit ({(until - time - MINUTE_MS) // MINUTE_MS} min left)"
        return True, ""

    def reset(self, time: int) -> ProtectionEvent:
        """Lift a halt or a pause by hand (the peak restarts from the next equity mark)."""
        self.halted, self.peak = False, math.nan
        found: list[ProtectionEvent] = []
        self._resume(time, found)
        return found[0] if found else self._event(time, "reset", "reset by hand")

    def _resume(self, time: int, found: list[ProtectionEvent]) -> None:
        if self.paused_until >= 0:
            reason = f"{self.pause_reason} over"
            self.paused_until, self.pause_reason = -1, ""
            found.append(self._event(time, "resume", reason))

    def _event(self, time: int, kind: str, reason: str, symbol: str | None = None) -> ProtectionEvent:
        event = ProtectionEvent(time, kind, self.state, reason, symbol)
        self.events.append(event)
        return event


def first_breach(
    protections: Protections, times: npt.NDArray[np.int64], equity: npt.NDArray[np.float64]
) -> int:
    """Return the first index whose equity mark would change the protections' state, or ``len(times)``.

    Conservative: also stops at the first bar of a new UTC day (the day's start equity changes)
    and when a pause ends. Does not change ``protections``.
    """
    count = times.size
    if count == 0:
        return 0
    config = protections.config
    days = times // DAY_MS
    stops = [count]
    new_day = np.flatnonzero(days != protections.day)
    if new_day.size:
        stops.append(int(new_day[0]))
    if protections.paused_until >= 0:
        ended = np.flatnonzero(times >= protections.paused_until)
        if ended.size:
            stops.append(int(ended[0]))
    if not protections.halted:
        start = equity[0] if math.isnan(protections.peak) else protections.peak
        peak = np.maximum.accumulate(np.maximum(equity, start))
        if config.max_drawdown > 0:
            hit = np.flatnonzero(equity <= peak * (1 - config.max_drawdown))
            if hit.size:
                stops.append(int(hit[0]))
        if config.daily_loss_limit > 0 and protections.pause_reason != "daily loss limit":
            hit = np.flatnonzero(equity <= protections.day_start_equity * (1 - config.daily_loss_limit))
            if hit.size:
                stops.append(int(hit[0]))
    return min(stops)
