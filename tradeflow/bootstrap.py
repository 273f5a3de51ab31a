"""The composition root: the one module that decides which implementation a run gets.

Everything else receives a store, a source or a set of venue URLs; only here does the config
turn into a local folder or S3, a real exchange or a local simulated one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from tradeflow.config import Settings, VenueConfig
from tradeflow.ingest import shared_budget
from tradeflow.sources.ccxt_source import CcxtMarketDataSource, create_exchange
from tradeflow.storage.objectstore import ObjectStore, open_store


def prepare_environment(settings: Settings) -> None:
    """Keep Prefect's home and database in the data folder and turn off telemetry.

    Must run before Prefect is imported; values already set in the environment win.
    """
    data_dir = settings.data_dir.resolve()
    defaults = {
        "PREFECT_HOME": str(data_dir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # A first run migrates a new database; 20 s (Prefect's default) is tight on 2 busy cores.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


def build_store(settings: Settings) -> ObjectStore:
    """Return the object store named by ``storage.url``."""
    return open_store(
        settings.storage.url,
        s3_endpoint_url=settings.storage.s3_endpoint_url,
        server_side_encryption=settings.storage.s3_server_side_encryption,
    )


def build_source(venue: VenueConfig, base_url: str | None) -> CcxtMarketDataSource:
    """Return a market data source for one venue, drawing on the venue's shared budget."""
    exchange = create_exchange(
        venue.exchange,
        base_url=base_url or venue.base_url,
        timeout_seconds=venue.timeout_seconds,
        options=venue.options,
        api_key_env=venue.api_key_env,
        secret_env=venue.secret_env,
    )
    budget = shared_budget(venue.id, venue.weight_per_minute)
    return CcxtMarketDataSource(venue.id, exchange, acquire=budget.acquire, on_rate_limited=budget.pause)


def simulator_spec(settings: Settings):  # type: ignore[no-untyped-def]  # ClusterSpec, imported lazily
    """Return the simulator cluster spec for the config's simulated venues."""
    from tradeflow.simulator import FAULT_PROFILES, ClusterSpec, SymbolSpec, VenueSpec

    venues = []
    for venue in settings.venues:
        if not venue.simulated or venue.simulator is None:
            continue
        sim = venue.simulator
        transport, data = FAULT_PROFILES[sim.fault_profile or settings.simulator.fault_profile]
        overrides = {"holes": sim.hole_rate, "spikes": sim.spike_rate, "stale": sim.stale_rate,
                     "drift_bps_per_day": sim.drift_bps_per_day or None}  # fmt: skip
        data = data.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        venues.append(
            VenueSpec(
                id=venue.id,
                seed=sim.seed,
                latency_ms=sim.latency_ms,
                noise_bps=sim.noise_bps,
                bias_bps=sim.bias_bps,
                weight_limit_per_minute=sim.weight_limit_per_minute,
                transport=transport,
                data=data,
            )
        )
    symbols = [SymbolSpec(**spec.model_dump()) for spec in settings.simulator.symbols]
    return ClusterSpec(
        world_seed=settings.simulator.world_seed,
        symbols=symbols,
        venues=venues,
        data_root=str(settings.real_data_dir.resolve()),
    )


@contextmanager
def local_venues(
    settings: Settings, mode: Literal["process", "thread"] | None = None
) -> Iterator[dict[str, str]]:
    """Start the simulated venues of ``settings`` and yield venue id → base URL.

    Yields an empty mapping when no venue is simulated (real exchanges only).
    """
    if not any(venue.simulated for venue in settings.venues):
        yield {}
        return
    from tradeflow.simulator import VenueCluster

    cluster = VenueCluster(simulator_spec(settings)).start(mode=mode or settings.simulator.mode)
    try:
        yield dict(cluster.base_urls)
    finally:
        cluster.stop()


def venue_urls(settings: Settings, running: Mapping[str, str]) -> dict[str, str | None]:
    """Return each venue's base URL: the running simulator's, the configured one, or None."""
    urls: dict[str, str | None] = {}
    for venue in settings.venues:
        if venue.simulated:
            if venue.id not in running:
                raise RuntimeError(
                    f"venue {venue.id} is simulated but no local venue is running for it; "
                    "start them with `tradeflow venues up` or let the command start them"
                )
            urls[venue.id] = running[venue.id]
        else:
            urls[venue.id] = venue.base_url
    return urls
