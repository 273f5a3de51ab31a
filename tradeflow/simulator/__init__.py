"""Local exchange venues speaking the Binance spot REST API v3.

Each venue is a real aiohttp server on 127.0.0.1 whose data is a pure function of seeds:
a shared true price path per symbol, plus each venue's own noise, bias, latency and faults.
The unmodified ``ccxt.binance`` client works against it once its API URLs point at a venue.

Example:
    >>> spec = ClusterSpec(symbols=[SymbolSpec(symbol="BTC/USDT", base_price=60000,
    ...     tick_size=0.01, step_size=0.00001)], venues=[VenueSpec(id="a", seed=1)])
    >>> with VenueCluster(spec).start() as running:  # doctest: +SKIP
    ...     running.base_urls["a"]
"""

from __future__ import annotations

from tradeflow.simulator.cluster import RunningCluster, VenueCluster, serve_forever
from tradeflow.simulator.spec import (
    FAULT_PROFILES,
    ClusterSpec,
    DataFaults,
    OutageWindow,
    SymbolSpec,
    TransportFaults,
    VenueSpec,
)
from tradeflow.simulator.venue import SimulatedVenue

__all__ = [
    "FAULT_PROFILES",
    "ClusterSpec",
    "DataFaults",
    "OutageWindow",
    "RunningCluster",
    "SimulatedVenue",
    "SymbolSpec",
    "TransportFaults",
    "VenueCluster",
    "VenueSpec",
    "serve_forever",
]
