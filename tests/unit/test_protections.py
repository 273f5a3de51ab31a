"""Protections: drawdown halt, daily loss limit, stop-loss guard, cooldown; vectorised breach search."""

from __future__ import annotations

import numpy as np

from tradeflow.strategy.protections import (
    ACTIVE,
    DAY_MS,
    HALTED,
    REDUCING,
    ProtectionConfig,
    Protections,
    first_breach,
)
from tradeflow.timeframes import MINUTE_MS

DAY = 20_000 * DAY_MS


def test_drawdown_halt_stops_entries_for_good() -> None:
    protections = Protections(ProtectionConfig(max_drawdown=0.2, daily_loss_limit=0))
    protections.on_equity(DAY, 100.0)
    protections.on_equity(DAY + MINUTE_MS, 120.0)
    [event] = protections.on_equity(DAY + 2 * MINUTE_MS, 96.0)
    assert (event.kind, protections.state) == ("max_drawdown", HALTED)
    assert "20.0%" in event.reason
    assert protections.entry_allowed(DAY + 10 * DAY_MS, "BTC/USDT")[0] is False
    protections.reset(DAY + 10 * DAY_MS)
    assert protections.entry_allowed(DAY + 10 * DAY_MS, "BTC/USDT") == (True, "")


def test_daily_loss_limit_pauses_entries_until_the_next_utc_day() -> None:
    protections = Protections(ProtectionConfig(max_drawdown=0, daily_loss_limit=0.05))
    protections.on_equity(DAY, 100.0)
    [event] = protections.on_equity(DAY + 60 * MINUTE_MS, 94.9)
    assert (event.kind, protections.state) == ("daily_loss_limit", REDUCING)
    allowed, why = protections.entry_allowed(DAY + 23 * 60 * MINUTE_MS, "ETH/USDT")
    assert not allowed and "daily loss limit" in why
    [resumed] = protections.on_equity(DAY + DAY_MS, 94.9)
    assert resumed.kind == "resume" and protections.state == ACTIVE


def test_stop_guard_pauses_after_three_stops_in_the_window() -> None:
    protections = Protections(
        ProtectionConfig(
            stop_guard_count=3, stop_guard_window_minutes=60, stop_guard_pause_minutes=120, cooldown_minutes=0
        )
    )
    assert protections.on_exit(DAY, "A", "stop", True) == []
    assert protections.on_exit(DAY + 10 * MINUTE_MS, "B", "take_profit_1", False) == []
    assert protections.on_exit(DAY + 20 * MINUTE_MS, "C", "trailing_stop", True) == []
    [event] = protections.on_exit(DAY + 30 * MINUTE_MS, "D", "stop", True)
    assert event.kind == "stop_guard"
    assert not protections.entry_allowed(DAY + 100 * MINUTE_MS, "E")[0]
    assert protections.entry_allowed(DAY + 151 * MINUTE_MS, "E")[0]


def test_stops_outside_the_window_do_not_count() -> None:
    protections = Protections(ProtectionConfig(stop_guard_count=3, stop_guard_window_minutes=60))
    for minute in (0, 61, 122):
        assert protections.on_exit(DAY + minute * MINUTE_MS, "A", "stop", True) == []


def test_cooldown_blocks_only_the_closed_symbol() -> None:
    protections = Protections(ProtectionConfig(cooldown_minutes=30))
    protections.on_exit(DAY, "BTC/USDT", "take_profit_3", True)
    assert not protections.entry_allowed(DAY + 29 * MINUTE_MS, "BTC/USDT")[0]
    assert protections.entry_allowed(DAY + 29 * MINUTE_MS, "ETH/USDT")[0]
    assert protections.entry_allowed(DAY + 30 * MINUTE_MS, "BTC/USDT")[0]


def test_first_breach_matches_stepping() -> None:
    rng = np.random.default_rng(3)
    times = DAY + MINUTE_MS * np.arange(1, 2000, dtype=np.int64)
    equity = 100.0 * np.exp(np.cumsum(rng.normal(-0.0004, 0.003, times.size)))
    stepping = Protections(ProtectionConfig(max_drawdown=0.1, daily_loss_limit=0.5))
    stepping.on_equity(DAY, 100.0)
    scanning = Protections(ProtectionConfig(max_drawdown=0.1, daily_loss_limit=0.5))
    scanning.on_equity(DAY, 100.0)
    expected = next(i for i, value in enumerate(equity) if stepping.on_equity(int(times[i]), float(value)))
    assert first_breach(scanning, times, equity) == expected
