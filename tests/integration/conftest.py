"""Local venues for integration tests: the simulator in thread mode, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tradeflow.simulator import FAULT_PROFILES, ClusterSpec, SymbolSpec, VenueCluster, VenueSpec

SYMBOLS = [
    SymbolSpec(symbol="BTC/USDT", base_price=60_000.0, tick_size=0.01, step_size=0.00001),
    SymbolSpec(symbol="ETH/USDT", base_price=3_000.0, tick_size=0.01, step_size=0.0001),
]


def venue(venue_id: str, seed: int, profile: str = "clean", **extra: object) -> VenueSpec:
    transport, data = FAULT_PROFILES[profile]
    return VenueSpec(id=venue_id, seed=seed, transport=transport, data=data, **extra)


@pytest.fixture
def start_venues() -> Iterator[Callable[..., dict[str, str]]]:
    """Start simulated venues; yields a function taking VenueSpecs and returning their URLs."""
    running = []

    def start(*venues: VenueSpec, symbols: list[SymbolSpec] | None = None) -> dict[str, str]:
        spec = ClusterSpec(world_seed=7, symbols=symbols or SYMBOLS, venues=list(venues))
        cluster = VenueCluster(spec).start(mode="thread")
        running.append(cluster)
        return dict(cluster.base_urls)

    yield start
    for cluster in running:
        cluster.stop()
