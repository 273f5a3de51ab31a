"""Specs, constants and helpers shared by the simulator unit tests."""

from __future__ import annotations

import os
from pathlib import Path

from tradeflow.simulator import ClusterSpec, SymbolSpec, VenueSpec

REPO_ROOT = Path(__file__).resolve().parents[3]

# A fixed "now" mid-minute (2026-01-01T12:34:56.789Z) keeps every test independent of the clock.
NOW_MS = 1_767_270_896_789
ANCHOR_MS = NOW_MS - NOW_MS % 86_400_000
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000

BTC = SymbolSpec(symbol="BTC/USDT", base_price=60_000.0, tick_size=0.01, step_size=0.00001)
ETH = SymbolSpec(symbol="ETH/USDT", base_price=3_000.0, tick_size=0.01, step_size=0.0001)


def real_data_dir() -> Path:
    """Return the directory of the recorded market data (may not exist)."""
    default = REPO_ROOT / ".." / "shared" / "data" / "real"
    return Path(os.environ.get("TRADEFLOW_REAL_DATA_DIR", str(default))).resolve()


def make_cluster(*venues: VenueSpec, symbols: tuple[SymbolSpec, ...] = (BTC, ETH)) -> ClusterSpec:
    """Return a cluster with a pinned history anchor."""
    return ClusterSpec(
        world_seed=7,
        symbols=list(symbols),
        venues=list(venues) or [VenueSpec(id="a", seed=1)],
        history_anchor_ms=ANCHOR_MS,
    )
