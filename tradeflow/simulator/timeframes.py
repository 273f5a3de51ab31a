"""Kline intervals and UTC time-grid arithmetic."""

from __future__ import annotations

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
DAY_MINUTES = 1440

INTERVAL_MINUTES: dict[str, int] = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
}
"""Supported Binance intervals; each divides a UTC day, so every candle lies inside one day."""


def interval_ms(interval: str) -> int:
    """Return an interval's length in milliseconds.

    Raises:
        KeyError: The interval is not supported.
    """
    return INTERVAL_MINUTES[interval] * MINUTE_MS


def floor_to(t_ms: int, step_ms: int) -> int:
    """Return the largest multiple of ``step_ms`` not after ``t_ms``."""
    return t_ms - t_ms % step_ms


def ceil_to(t_ms: int, step_ms: int) -> int:
    """Return the smallest multiple of ``step_ms`` not before ``t_ms``."""
    return -((-t_ms) // step_ms) * step_ms
