"""Flow tests run under one Prefect test harness for the whole session (a real API on SQLite)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    """One ephemeral Prefect API for every flow test (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


BASE_CONFIG = """
data_dir = "{data}"
[storage]
url = "{lake}"
{storage_extra}
[history]
days = 1
days_by_timeframe = {{ "1h" = 3 }}
end = "2026-11-20T12:00:00Z"
[ingest]
symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
timeframes = ["1m", "1h"]
order_book_depth = 10
trades_limit = 50
[retry]
max_attempts = 6
base_delay_seconds = 0.02
max_delay_seconds = 0.2
[simulator]
mode = "thread"
fault_profile = "{profile}"
"""

VENUE = """
[[venues]]
id = "{id}"
simulated = true
timeout_seconds = 1.0
{symbols}
simulator = {{ seed = {seed}{extra} }}
"""


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., str]:
    """Write a small offline config; returns its path. Venues: (id, seed, symbols, extra)."""

    def write(
        name: str = "tradeflow.toml",
        *,
        lake: str | None = None,
        profile: str = "clean",
        venues: list[tuple[str, int, list[str] | None, str]] | None = None,
        storage_extra: str = "",
    ) -> str:
        venues = venues or [
            ("sim-alpha", 11, None, ""),
            ("sim-beta", 22, None, ""),
            ("sim-gamma", 33, None, ""),
        ]
        text = BASE_CONFIG.format(
            data=tmp_path / "data",
            lake=lake or tmp_path / "lake",
            profile=profile,
            storage_extra=storage_extra,
        )
        for venue_id, seed, symbols, extra in venues:
            text += VENUE.format(
                id=venue_id,
                seed=seed,
                extra=extra,
                symbols=f"symbols = {symbols!r}".replace("'", '"') if symbols else "",
            )
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


DIRTY = [
    ("sim-alpha", 11, None, ", hole_rate = 0.01, spike_rate = 0.002, stale_rate = 0.12"),
    ("sim-beta", 22, None, ", hole_rate = 0.01, spike_rate = 0.002, stale_rate = 0.12"),
    ("sim-gamma", 33, None, ", drift_bps_per_day = 30.0"),
    ("sim-delta", 44, None, ""),
]


@pytest.fixture(scope="session")
def dirty_run(tmp_path_factory):
    """Ingest one pinned window from four venues (two dirty, one drifting), then validate it."""
    from flows.ingest import ingest_market_data
    from flows.validate import validate_market_data
    from tradeflow.storage.objectstore import open_store

    root = tmp_path_factory.mktemp("dirty")
    text = BASE_CONFIG.format(data=root / "data", lake=root / "lake", profile="clean", storage_extra="")
    text = text.replace('timeframes = ["1m", "1h"]', 'timeframes = ["1m"]')
    for venue_id, seed, _, extra in DIRTY:
        text += VENUE.format(id=venue_id, seed=seed, extra=extra, symbols="")
    config = root / "tradeflow.toml"
    config.write_text(text)
    ingest_market_data(config_path=str(config))
    result = validate_market_data(config_path=str(config))
    return {"config": str(config), "store": open_store(str(root / "lake")), "result": result}
