"""Holes, spikes and stale hours: configured rates, determinism, and what a client would see."""

from __future__ import annotations

import math

import numpy as np

from tradeflow.simulator import FAULT_PROFILES, DataFaults, SimulatedVenue, VenueSpec
from tradeflow.simulator.market import clear_caches

from ._support import DAY, HOUR, MINUTE, NOW_MS, make_cluster

START = NOW_MS - NOW_MS % DAY - 30 * DAY
END = START + 30 * DAY - MINUTE  # 43200 closed minutes


def _venue(data: DataFaults, seed: int = 5, **kwargs: object) -> SimulatedVenue:
    spec = make_cluster(VenueSpec(id="v", seed=seed, data=data, **kwargs))  # type: ignore[arg-type]
    return SimulatedVenue(spec, spec.venues[0])


def _minutes(venue: SimulatedVenue, start: int = START, end: int = END) -> np.ndarray:
    return venue.klines("BTC/USDT", "1m", start, end, NOW_MS)


def _within_binomial(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    mean = n * p
    return abs(count - mean) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_holes_appear_at_the_configured_rate() -> None:
    rows = _minutes(_venue(DataFaults(holes=0.05)))
    n = 30 * 1440
    missing = n - len(rows)
    assert _within_binomial(missing, n, 0.05)


def test_dirty_profile_rates_over_ninety_days() -> None:
    dirty = FAULT_PROFILES["dirty"][1]
    start = NOW_MS - NOW_MS % DAY - 90 * DAY
    end = start + 90 * DAY - MINUTE
    faulty, clean = _venue(dirty), _venue(DataFaults())
    got, ref = _minutes(faulty, start, end), _minutes(clean, start, end)
    n = 90 * 1440
    assert _within_binomial(n - len(got), n, dirty.holes)
    hours = ref[:, 0] - ref[:, 0] % HOUR
    frozen = _stale_hours(got)
    assert len(frozen) > 0 and _within_binomial(len(frozen), 90 * 24, dirty.stale)
    assert set(frozen) <= set(hours.tolist())


def _stale_hours(rows: np.ndarray) -> list[int]:
    hours = rows[:, 0] - rows[:, 0] % HOUR
    flat = (rows[:, 1] == rows[:, 2]) & (rows[:, 2] == rows[:, 3]) & (rows[:, 3] == rows[:, 4])
    flat &= rows[:, 5] == 0
    out = []
    for hour in np.unique(hours):
        sel = hours == hour
        if flat[sel].all() and len(np.unique(rows[sel, 1])) == 1:
            out.append(int(hour))
    return out


def test_holes_are_deterministic_and_independent_of_the_window() -> None:
    faults = DataFaults(holes=0.05)
    first = _minutes(_venue(faults))
    clear_caches()
    again = _minutes(_venue(faults), START + 7 * DAY + 123 * MINUTE, START + 9 * DAY)
    sel = (first[:, 0] >= again[0, 0]) & (first[:, 0] <= again[-1, 0])
    np.testing.assert_array_equal(again, first[sel])
    other_seed = _minutes(_venue(faults, seed=6))
    assert set(first[:, 0].tolist()) != set(other_seed[:, 0].tolist())


def test_spikes_displace_high_or_low_and_close_at_the_configured_rate() -> None:
    faults = DataFaults(spikes=0.01, spike_size=0.2)
    spiky, clean = _minutes(_venue(faults)), _minutes(_venue(DataFaults()))
    changed = np.any(spiky != clean, axis=1)
    n = len(clean)
    assert _within_binomial(int(changed.sum()), n, 0.01)
    up = spiky[changed, 2] / clean[changed, 2]
    down = spiky[changed, 3] / clean[changed, 3]
    is_up = up > 1.1
    assert 0.3 < is_up.mean() < 0.7, "spikes go both ways"
    np.testing.assert_allclose(up[is_up], 1.2, rtol=1e-3)
    np.testing.assert_allclose(down[~is_up], 0.8, rtol=1e-3)
    close_ratio = spiky[changed, 4] / clean[changed, 4]
    np.testing.assert_allclose(np.where(is_up, close_ratio, 2.0 - close_ratio), 1.2, rtol=1e-3)
    # Opens are untouched, so the spike shows as a jump back on the next candle.
    np.testing.assert_array_equal(spiky[:, 1], clean[:, 1])


def test_stale_hours_freeze_at_the_last_price_before_them() -> None:
    faults = DataFaults(stale=0.05)
    stale_rows, clean_rows = _minutes(_venue(faults)), _minutes(_venue(DataFaults()))
    frozen = _stale_hours(stale_rows)
    assert _within_binomial(len(frozen), 30 * 24, 0.05)
    by_time = {int(t): row for t, row in zip(clean_rows[:, 0], clean_rows, strict=True)}
    for hour in frozen:
        run_start = hour
        while run_start - HOUR in frozen:
            run_start -= HOUR
        price = stale_rows[stale_rows[:, 0] == hour][0, 1]
        assert price == by_time[run_start][1], "frozen at the price the run started from"
    # Outside stale hours the data is untouched.
    hours = stale_rows[:, 0] - stale_rows[:, 0] % HOUR
    live = ~np.isin(hours, frozen)
    np.testing.assert_array_equal(stale_rows[live], clean_rows[live])


def test_chaos_venue_serves_exactly_the_clean_data() -> None:
    transport, data = FAULT_PROFILES["chaos"]
    chaos = _venue(data, transport=transport)
    clean = _venue(DataFaults())
    np.testing.assert_array_equal(_minutes(chaos), _minutes(clean))
