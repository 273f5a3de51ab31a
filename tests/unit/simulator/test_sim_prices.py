"""The shared true path and each venue's noisy copy of it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tradeflow.simulator import DataFaults, SimulatedVenue, VenueSpec
from tradeflow.simulator.market import clear_caches
from tradeflow.simulator.prices import RandomWalkPath

from ._support import ANCHOR_MS, BTC, DAY, ETH, MINUTE, NOW_MS, make_cluster

NOW_MINUTE = NOW_MS - NOW_MS % MINUTE
START = NOW_MINUTE - 3 * DAY


def _venue(seed: int, **kwargs: object) -> SimulatedVenue:
    spec = make_cluster(VenueSpec(id="v", seed=seed, **kwargs))  # type: ignore[arg-type]
    return SimulatedVenue(spec, spec.venues[0])


def test_same_seeds_give_identical_candles_without_any_cache() -> None:
    first = _venue(1).klines("BTC/USDT", "1m", START, NOW_MS, NOW_MS)
    clear_caches()
    second = _venue(1).klines("BTC/USDT", "1m", START, NOW_MS, NOW_MS)
    assert len(first) == 3 * 1440 + 1
    np.testing.assert_array_equal(first, second)


def test_candles_do_not_depend_on_the_requested_window() -> None:
    venue = _venue(1)
    wide = venue.klines("BTC/USDT", "1m", START, NOW_MS, NOW_MS)
    clear_caches()
    narrow = _venue(1).klines("BTC/USDT", "1m", START + 777 * MINUTE, START + 900 * MINUTE, NOW_MS)
    np.testing.assert_array_equal(narrow, wide[777:901])


def test_venues_with_other_seeds_differ_by_a_few_bps() -> None:
    a = _venue(1).klines("BTC/USDT", "1m", START, NOW_MINUTE - MINUTE, NOW_MS)
    b = _venue(2).klines("BTC/USDT", "1m", START, NOW_MINUTE - MINUTE, NOW_MS)
    np.testing.assert_array_equal(a[:, 0], b[:, 0])
    diff_bps = np.abs(np.log(a[:, 4] / b[:, 4])) * 1e4
    assert np.mean(diff_bps > 0) > 0.9, "venues must not be copies of each other"
    # Two independent 3 bps noises: typical gap ~3.4 bps, never more than a handful of sigmas.
    assert 1.0 < float(np.median(diff_bps)) < 6.0
    assert float(diff_bps.max()) < 30.0


def test_venue_closes_track_the_shared_true_path() -> None:
    for seed in (1, 2):
        venue = _venue(seed)
        candles = venue.klines("ETH/USDT", "1m", START, NOW_MINUTE - MINUTE, NOW_MS)
        true = venue.true_closes("ETH/USDT", START, NOW_MINUTE - MINUTE)
        gap_bps = np.log(candles[:, 4] / true) * 1e4
        assert abs(float(np.mean(gap_bps))) < 0.5
        assert float(np.abs(gap_bps).max()) < 20.0
    np.testing.assert_array_equal(
        _venue(1).true_closes("BTC/USDT", START, NOW_MS),
        _venue(9).true_closes("BTC/USDT", START, NOW_MS),
    )


def test_bias_shifts_a_venue_by_a_constant() -> None:
    plain = _venue(1).klines("BTC/USDT", "1m", START, NOW_MINUTE - MINUTE, NOW_MS)
    biased = _venue(1, bias_bps=10.0).klines("BTC/USDT", "1m", START, NOW_MINUTE - MINUTE, NOW_MS)
    shift = np.log(biased[:, 4] / plain[:, 4]) * 1e4
    np.testing.assert_allclose(shift, 10.0, atol=0.01)


def test_drift_grows_linearly_from_the_anchor() -> None:
    drift_anchor = ANCHOR_MS - 30 * DAY
    faults = DataFaults(drift_bps_per_day=4.0)
    plain, drifting = _venue(1), _venue(1, data=faults)
    for days_after, expected in ((-5, 0.0), (10, 40.0), (25, 100.0)):
        t = drift_anchor + days_after * DAY
        a = plain.klines("BTC/USDT", "1m", t, t, NOW_MS)
        b = drifting.klines("BTC/USDT", "1m", t, t, NOW_MS)
        assert np.log(b[0, 1] / a[0, 1]) * 1e4 == pytest.approx(expected, abs=0.01)


def test_candles_are_continuous_tick_aligned_and_consistent() -> None:
    candles = _venue(3).klines("BTC/USDT", "1m", START, NOW_MINUTE - MINUTE, NOW_MS)
    t, o, h, low, c, v = candles.T
    np.testing.assert_array_equal(np.diff(t), MINUTE)
    # The close of one minute is the open of the next, across UTC midnights too.
    np.testing.assert_array_equal(c[:-1], o[1:])
    assert np.all(h >= np.maximum(o, c)) and np.all(low <= np.minimum(o, c)) and np.all(low > 0)
    assert np.mean(h > np.maximum(o, c)) > 0.8, "wicks should usually extend past the body"
    for col, size in ((o, BTC.tick_size), (h, BTC.tick_size), (v, BTC.step_size)):
        counts = col / size
        np.testing.assert_allclose(counts, np.round(counts), rtol=0, atol=1e-6)
        # Exactly the float a client gets by parsing our 8-decimal string.
        assert all(float(f"{x:.8f}") == x for x in col[:200])
    assert np.all(v > 0)


def test_volume_grows_with_the_size_of_the_move() -> None:
    candles = _venue(3).klines("BTC/USDT", "1m", START, NOW_MINUTE - MINUTE, NOW_MS)
    move = np.abs(np.log(candles[:, 4] / candles[:, 1]))
    volume = candles[:, 5]
    big, small = move > np.quantile(move, 0.8), move < np.quantile(move, 0.2)
    assert volume[big].mean() > 2 * volume[small].mean()


def test_random_walk_realises_roughly_its_annual_volatility() -> None:
    path = RandomWalkPath(7, BTC)
    days = range(20_000, 20_060)
    returns = np.concatenate([np.diff(path.day_log_prices(d)) for d in days])
    annualised = returns.std() * np.sqrt(365 * 1440)
    assert 0.35 < annualised < 0.95


def test_random_walk_stays_around_its_base_price_for_years() -> None:
    path = RandomWalkPath(7, BTC)
    listing_day = BTC.listed_since_ms // DAY
    levels = np.exp([path.anchor(d) for d in range(listing_day, NOW_MS // DAY, 7)])
    assert np.all(levels > BTC.base_price / 8) and np.all(levels < BTC.base_price * 8)
    assert levels.std() > 0.05 * BTC.base_price, "the walk must actually move"


def test_any_day_since_listing_is_computable_and_90_days_are_cheap() -> None:
    venue = _venue(1)
    old = venue.klines("BTC/USDT", "1m", BTC.listed_since_ms, BTC.listed_since_ms + 59 * MINUTE, NOW_MS)
    assert len(old) == 60 and old[0, 0] == BTC.listed_since_ms
    assert len(venue.klines("BTC/USDT", "1m", 0, BTC.listed_since_ms - 1, NOW_MS)) == 0
    started = time.perf_counter()
    history = venue.klines("ETH/USDT", "1m", NOW_MINUTE - 90 * DAY, NOW_MS, NOW_MS)
    elapsed = time.perf_counter() - started
    assert len(history) == 90 * 1440 + 1
    assert elapsed < 3.0, f"90 days of 1m candles took {elapsed:.2f}s"


def test_venue_listing_only_some_symbols() -> None:
    spec = make_cluster(VenueSpec(id="v", seed=1, symbols=["ETH/USDT"]), symbols=(BTC, ETH))
    venue = SimulatedVenue(spec, spec.venues[0])
    assert [s.symbol for s in venue.symbols] == ["ETH/USDT"]
    with pytest.raises(KeyError):
        venue.klines("BTC/USDT", "1m", START, NOW_MS, NOW_MS)
