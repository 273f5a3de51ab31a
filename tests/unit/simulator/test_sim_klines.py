"""Binance klines semantics: windows, limits, intervals, the partial candle, aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.simulator import DataFaults, SimulatedVenue, VenueSpec
from tradeflow.simulator.timeframes import INTERVAL_MINUTES

from ._support import DAY, HOUR, MINUTE, NOW_MS, make_cluster

NOW_MINUTE = NOW_MS - NOW_MS % MINUTE


def _venue(data: DataFaults | None = None, seed: int = 1) -> SimulatedVenue:
    spec = make_cluster(VenueSpec(id="v", seed=seed, data=data or DataFaults()))
    return SimulatedVenue(spec, spec.venues[0])


def _query(
    venue: SimulatedVenue,
    interval: str = "1m",
    start: int | None = None,
    end: int | None = None,
    limit: int | None = 500,
    now: int = NOW_MS,
) -> np.ndarray:
    candles = venue.query_klines("BTC/USDT", interval, start_ms=start, end_ms=end, limit=limit, now_ms=now)
    return candles.ohlcv()


def test_start_time_returns_the_first_limit_candles_from_it() -> None:
    venue = _venue()
    start = NOW_MINUTE - 2 * DAY + 30_000  # not aligned: Binance rounds up to the next open
    rows = _query(venue, start=start, limit=1000)
    assert len(rows) == 1000
    assert rows[0, 0] == start + 30_000
    np.testing.assert_array_equal(np.diff(rows[:, 0]), MINUTE)


def test_start_and_end_time_bound_the_window_inclusively() -> None:
    venue = _venue()
    start, end = NOW_MINUTE - 5 * HOUR, NOW_MINUTE - 4 * HOUR
    rows = _query(venue, start=start, end=end, limit=1000)
    assert (rows[0, 0], rows[-1, 0], len(rows)) == (start, end, 61)


def test_only_end_time_returns_the_last_limit_candles_before_it() -> None:
    venue = _venue()
    end = NOW_MINUTE - DAY + 15_000
    rows = _query(venue, end=end, limit=300)
    assert len(rows) == 300
    assert rows[-1, 0] == end - 15_000
    assert rows[0, 0] == end - 15_000 - 299 * MINUTE


def test_without_window_the_most_recent_candles_include_the_forming_one() -> None:
    venue = _venue()
    rows = _query(venue, limit=500)
    assert len(rows) == 500
    assert rows[-1, 0] == NOW_MINUTE
    # The forming candle closes at the price "now", which differs from its final close.
    later = _query(venue, start=NOW_MINUTE, limit=1, now=NOW_MINUTE + MINUTE)
    assert rows[-1, 4] == venue.price_at("BTC/USDT", NOW_MS)
    assert rows[-1, 1] == later[0, 1]
    assert later[0, 3] <= rows[-1, 3] <= rows[-1, 2] <= later[0, 2]
    assert rows[-1, 5] <= later[0, 5]


def test_forming_candle_at_the_first_millisecond_is_flat_and_empty() -> None:
    rows = _query(_venue(), limit=1, now=NOW_MINUTE)
    _, o, h, low, c, v = rows[-1]
    assert o == h == low == c and v == 0


def test_no_candle_from_the_future() -> None:
    venue = _venue()
    rows = _query(venue, start=NOW_MINUTE - 10 * MINUTE, end=NOW_MS + DAY, limit=1000)
    assert rows[-1, 0] == NOW_MINUTE and len(rows) == 11
    assert len(_query(venue, start=NOW_MS + MINUTE, limit=10)) == 0


def test_no_candle_before_listing() -> None:
    listing = 1_700_000_000_000 - 1_700_000_000_000 % DAY + 3 * HOUR + 30 * MINUTE
    spec = make_cluster(VenueSpec(id="v", seed=1))
    sym = spec.symbols[0].model_copy(update={"listed_since_ms": listing})
    spec = spec.model_copy(update={"symbols": [sym]})
    venue = SimulatedVenue(spec, spec.venues[0])
    rows = _query(venue, start=listing - DAY, limit=5)
    assert rows[0, 0] == listing
    hourly = _query(venue, interval="1h", start=listing - DAY, limit=2)
    # The hour containing the listing exists but holds only the listed minutes.
    assert hourly[0, 0] == listing - 30 * MINUTE
    assert hourly[0, 1] == rows[0, 1]
    assert len(_query(venue, end=listing - 1, limit=10)) == 0


@pytest.mark.parametrize("interval", ["3m", "5m", "15m", "1h", "4h", "1d"])
def test_higher_intervals_are_aggregates_of_the_1m_candles(interval: str) -> None:
    venue = _venue(DataFaults(holes=0.3))
    width = INTERVAL_MINUTES[interval] * MINUTE
    start = NOW_MS - NOW_MS % DAY - 3 * DAY
    end = NOW_MINUTE - NOW_MINUTE % width - width  # only closed candles
    minutes = pd.DataFrame(
        venue.klines("BTC/USDT", "1m", start, end + width - MINUTE, NOW_MS),
        columns=["t", "o", "h", "l", "c", "v"],
    )
    minutes["bucket"] = minutes["t"] - minutes["t"] % width
    expected = minutes.groupby("bucket").agg(
        o=("o", "first"),
        h=("h", "max"),
        l=("l", "min"),
        c=("c", "last"),
        v=("v", "sum"),
    )
    got = venue.klines("BTC/USDT", interval, start, end, NOW_MS)
    np.testing.assert_array_equal(got[:, 0], expected.index.to_numpy())
    np.testing.assert_array_equal(got[:, 1:5], expected[["o", "h", "l", "c"]].to_numpy())
    np.testing.assert_allclose(got[:, 5], expected["v"].to_numpy(), rtol=1e-12)


def test_an_hour_whose_minutes_are_all_missing_has_no_candle() -> None:
    venue = _venue(DataFaults(holes=0.95))
    start = NOW_MS - NOW_MS % DAY - 5 * DAY
    minutes = venue.klines("BTC/USDT", "1m", start, start + 5 * DAY - MINUTE, NOW_MS)
    hours_with_minutes = set((minutes[:, 0] - minutes[:, 0] % HOUR).tolist())
    hourly = venue.klines("BTC/USDT", "1h", start, start + 5 * DAY - HOUR, NOW_MS)
    assert set(hourly[:, 0].tolist()) == hours_with_minutes
    assert len(hours_with_minutes) < 120, "with 95 % holes some hours must be empty"


def test_limit_counts_existing_candles_across_holes() -> None:
    venue = _venue(DataFaults(holes=0.5))
    rows = _query(venue, start=NOW_MINUTE - 5 * DAY, limit=1000)
    assert len(rows) == 1000
    assert rows[-1, 0] - rows[0, 0] > 1500 * MINUTE


# A window is drawn around the fixed NOW; Hypothesis explores starts/ends/limits/intervals.
_windows = st.tuples(
    st.sampled_from(sorted(INTERVAL_MINUTES)),
    st.one_of(st.none(), st.integers(-4 * DAY, DAY)),
    st.one_of(st.none(), st.integers(-4 * DAY, DAY)),
    st.integers(1, 1000),
    st.integers(0, MINUTE - 1),
)


@settings(max_examples=80, deadline=None)
@given(window=_windows)
def test_any_window_returns_aligned_sorted_in_range_non_future_candles(
    window: tuple[str, int | None, int | None, int, int],
) -> None:
    interval, start_off, end_off, limit, jitter = window
    width = INTERVAL_MINUTES[interval] * MINUTE
    limit = min(limit, 20 * DAY // width)  # keeps the reference range cheap to generate
    now = NOW_MINUTE + jitter
    start = None if start_off is None else now + start_off
    end = None if end_off is None else now + end_off
    venue = _venue(DataFaults(holes=0.05))
    rows = _query(venue, interval, start, end, limit, now)
    times = rows[:, 0].astype(np.int64)
    assert len(rows) <= limit
    assert np.all(times % width == 0)
    assert np.all(np.diff(times) > 0)
    assert np.all(times <= now)
    if start is not None:
        assert np.all(times >= start)
    if end is not None:
        assert np.all(times <= end)
    assert np.all(rows[:, 2] >= np.maximum(rows[:, 1], rows[:, 4]))
    assert np.all(rows[:, 3] <= np.minimum(rows[:, 1], rows[:, 4]))
    # Equal to the matching slice of the full reference range.
    hi = min(end, now) if end is not None else now
    lo = start if start is not None else hi - (2 * limit + 10) * width
    full = venue.klines("BTC/USDT", interval, lo, hi, now)
    expected = full[:limit] if start is not None else full[-limit:]
    np.testing.assert_array_equal(rows, expected)
