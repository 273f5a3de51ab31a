"""Replay mode: a real recording rescaled, tiled as a palindrome, aligned to the anchor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.simulator import ClusterSpec, SimulatedVenue, SymbolSpec, VenueSpec
from tradeflow.simulator.market import clear_caches
from tradeflow.simulator.prices import ReplayPath, true_path
from tradeflow.simulator.replay import load_recording, palindrome_index

from ._support import ANCHOR_MS, BTC, DAY, MINUTE, NOW_MS, make_cluster, real_data_dir

ETH_BTC = "binance/ETH-BTC_5m.parquet"
TRX_BTC = "binance/TRX-BTC_5m.parquet"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    root = real_data_dir()
    if not (root / ETH_BTC).is_file():
        pytest.skip(f"real market data not found at {root} (set TRADEFLOW_REAL_DATA_DIR)")
    return root


def _replay_spec(data_dir: Path, file: str = ETH_BTC, base: float = 0.05) -> SymbolSpec:
    return SymbolSpec(
        symbol="ETH/BTC",
        base_price=base,
        tick_size=0.000001,
        step_size=0.0001,
        min_notional=0.0001,
        replay=file,
    )


def _cluster(data_dir: Path, *symbols: SymbolSpec, venue: VenueSpec | None = None) -> ClusterSpec:
    spec = make_cluster(venue or VenueSpec(id="v", seed=1), symbols=symbols)
    return spec.model_copy(update={"data_root": str(data_dir)})


def test_palindrome_index_bounces_without_jumps() -> None:
    idx = palindrome_index(np.arange(-10, 30, dtype=np.int64), length=5, offset=0)
    assert idx.min() == 0 and idx.max() == 4
    assert np.all(np.abs(np.diff(idx)) == 1)
    np.testing.assert_array_equal(idx[10:19], [0, 1, 2, 3, 4, 3, 2, 1, 0])


def test_recording_is_the_close_path_interpolated_to_one_minute(data_dir: Path) -> None:
    frame = pd.read_parquet(data_dir / ETH_BTC)
    rec = load_recording(data_dir / ETH_BTC)
    assert len(rec.rel_log) == (len(frame) - 1) * 5 + 1
    expected = np.log(frame["close"].to_numpy() / frame["close"].iloc[0])
    np.testing.assert_allclose(rec.rel_log[::5], expected, atol=1e-12)
    # Between two closes the log price moves in equal steps.
    steps = np.diff(rec.rel_log[:6])
    np.testing.assert_allclose(steps, steps[0], atol=1e-12)


def test_gaps_in_a_recording_are_forward_filled(data_dir: Path) -> None:
    frame = pd.read_parquet(data_dir / TRX_BTC)
    ts = frame["timestamp"].to_numpy()
    gap = int(np.flatnonzero(np.diff(ts) > 300_000)[0])
    rec = load_recording(data_dir / TRX_BTC)
    k = int((ts[gap] - ts[0]) // 300_000)
    missing = int((ts[gap + 1] - ts[gap]) // 300_000) - 1
    # The missing candles repeat the last close before the gap.
    flat = rec.rel_log[k * 5 : (k + missing) * 5 + 1]
    np.testing.assert_allclose(flat, flat[0], atol=1e-12)


def test_forward_copy_starts_at_base_price_and_ends_at_the_anchor(
    data_dir: Path,
) -> None:
    sym = _replay_spec(data_dir)
    frame = pd.read_parquet(data_dir / ETH_BTC)
    closes = frame["close"].to_numpy()
    path = true_path(7, sym, str(data_dir), ANCHOR_MS)
    assert isinstance(path, ReplayPath)
    anchor_minute = ANCHOR_MS // MINUTE
    start = anchor_minute - path.length_minutes
    assert path.forward_start_minute == start
    grid = start + 5 * np.arange(len(closes), dtype=np.int64)
    np.testing.assert_allclose(np.exp(path.log_prices_at(grid)), 0.05 * closes / closes[0], rtol=1e-12)
    assert np.exp(path.log_prices_at(np.asarray([start])))[0] == pytest.approx(0.05, rel=1e-12)


def test_tiles_are_continuous_and_mirror_at_their_boundaries(data_dir: Path) -> None:
    sym = _replay_spec(data_dir)
    path = true_path(7, sym, str(data_dir), ANCHOR_MS)
    assert isinstance(path, ReplayPath)
    span = path.length_minutes
    rec = load_recording(data_dir / ETH_BTC)
    largest_step = np.abs(np.diff(rec.rel_log)).max()
    for boundary in (
        path.forward_start_minute,
        path.forward_start_minute + span,
        path.forward_start_minute + 2 * span,
        path.forward_start_minute - 5 * span,
    ):
        around = np.arange(boundary - 50, boundary + 51, dtype=np.int64)
        log_p = path.log_prices_at(around)
        assert np.abs(np.diff(log_p)).max() <= largest_step + 1e-12
        np.testing.assert_allclose(log_p[50 - np.arange(1, 51)], log_p[50 + np.arange(1, 51)], atol=1e-12)


def test_replay_venue_candles_follow_the_recording_and_are_deterministic(
    data_dir: Path,
) -> None:
    sym = _replay_spec(data_dir)
    spec = _cluster(data_dir, sym)
    venue = SimulatedVenue(spec, spec.venues[0])
    start = ANCHOR_MS - 2 * DAY
    rows = venue.klines("ETH/BTC", "5m", start, ANCHOR_MS - 5 * MINUTE, NOW_MS)
    frame = pd.read_parquet(data_dir / ETH_BTC)
    closes = frame["close"].to_numpy()
    recorded = 0.05 * closes[-len(rows) :] / closes[0]
    # Venue noise (3 bps) and tick rounding (1e-6 on ~0.05) are the only differences.
    np.testing.assert_allclose(rows[:, 4], recorded, rtol=2e-3)
    clear_caches()
    again = SimulatedVenue(spec, spec.venues[0]).klines(
        "ETH/BTC", "5m", start, ANCHOR_MS - 5 * MINUTE, NOW_MS
    )
    np.testing.assert_array_equal(rows, again)


def test_replay_file_is_only_needed_by_venues_listing_the_symbol(
    tmp_path: Path,
) -> None:
    ghost = SymbolSpec(
        symbol="ETH/BTC",
        base_price=0.05,
        tick_size=0.000001,
        step_size=0.0001,
        replay="missing.parquet",
    )
    spec = make_cluster(
        VenueSpec(id="plain", seed=1, symbols=["BTC/USDT"]),
        VenueSpec(id="replay", seed=2),
        symbols=(BTC, ghost),
    ).model_copy(update={"data_root": str(tmp_path)})
    plain = SimulatedVenue(spec, spec.venue("plain"))
    assert len(plain.klines("BTC/USDT", "1m", NOW_MS - DAY, NOW_MS, NOW_MS)) > 0
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet"):
        SimulatedVenue(spec, spec.venue("replay"))
