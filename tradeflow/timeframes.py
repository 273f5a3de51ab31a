"""Timeframes and UTC time helpers.

Timestamps are integers in UTC milliseconds at rest (the ccxt convention) and tz-aware UTC
datetimes in memory. Nothing naive.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
#: Minutes in a 365-day year: crypto trades every day, so returns annualise over all of them.
MINUTES_PER_YEAR = 365 * 24 * 60
#: Milliseconds in a 365-day year.
YEAR_MS = MINUTES_PER_YEAR * MINUTE_MS

_UNIT_MS = {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}
_TIMEFRAME = re.compile(r"^(\d+)([mhd])$")

#: Timeframes the pipeline accepts; every one divides a UTC day, so day partitions hold whole
#: candles.
SUPPORTED_TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")


def timeframe_ms(timeframe: str) -> int:
    """Return the length of a ccxt timeframe string (``"1m"``, ``"1h"``, ...) in milliseconds.

    Raises:
        ValueError: if the timeframe is not one of ``SUPPORTED_TIMEFRAMES``.
    """
    match = _TIMEFRAME.match(timeframe)
    if match is None or timeframe not in SUPPORTED_TIMEFRAMES:
        raise ValueError(f"unsupported timeframe {timeframe!r}; use one of {', '.join(SUPPORTED_TIMEFRAMES)}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def partition_period(timeframe: str | None) -> str:
    """Return how a dataset of this timeframe is partitioned in the lake: ``day`` or ``month``.

    Candles under one hour (and order books and trades, which have no timeframe) go by UTC
    day; 1h and longer by UTC month, so an object holds hundreds of rows rather than 24.
    """
    if timeframe is None or timeframe_ms(timeframe) < HOUR_MS:
        return "day"
    return "month"


def floor_ms(ts_ms: int, step_ms: int) -> int:
    """Return ``ts_ms`` rounded down to a multiple of ``step_ms``."""
    return ts_ms - ts_ms % step_ms


def to_datetime(ts_ms: int) -> datetime:
    """Return the tz-aware UTC datetime of a millisecond timestamp."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def to_ms(moment: datetime) -> int:
    """Return the UTC millisecond timestamp of a tz-aware datetime.

    Raises:
        ValueError: if ``moment`` is naive (it would be read in the machine's local zone).
    """
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: give a timezone (UTC) explicitly")
    return int(moment.timestamp() * 1000)


def iso(ts_ms: int) -> str:
    """Return a compact ISO-8601 UTC rendering of a millisecond timestamp, for people."""
    return to_datetime(ts_ms).strftime("%Y-%m-%d %H:%M")
