"""Prefect tasks of the ``ingest-market-data`` flow.

Each is retries, logging and artifacts around one core call in :mod:`tradeflow.ingest`.

Request-level retries (backoff, jitter, Retry-After) happen inside the core, per request; a
venue's failure comes back as a result, not an exception, so the flow can fail over. Prefect's
own task retries are for what is left: a crash while writing to storage, say.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from tasks.audit import record_steps
from tasks.limits import venue_grant
from tradeflow.audit.records import ingest_items
from tradeflow.bootstrap import build_source, build_store
from tradeflow.config import Settings, VenueConfig
from tradeflow.ingest import (
    RetryPolicy,
    SeriesResult,
    SnapshotResult,
    VenueFailedError,
    VenueStatus,
    call_with_retry,
    ingest_candle_series,
    snapshot_market,
    stored_object,
    summary_markdown,
    summary_rows,
    unlisted_symbols,
)
from tradeflow.sources.base import PermanentSourceError
from tradeflow.sources.ccxt_source import CcxtMarketDataSource
from tradeflow.storage.lake import LakeState, publish_manifest, read_state

# No Prefect timeout_seconds here: these tasks run in worker threads, where Prefect cannot
# interrupt a blocked request (it only warns). Time is bounded where it can be: every request has
# the venue's timeout, retries are capped, and a series has ingest.series_timeout_seconds.
_TASK_DEFAULTS: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "cache_policy": NO_CACHE,
}

# Markets loaded by connect_venue, reused by the series tasks of the same process, so each task
# does not spend a heavy exchangeInfo request. Other processes simply load their own.
_markets: dict[tuple[str, str | None], CcxtMarketDataSource] = {}
_markets_lock = threading.Lock()
# One ccxt client per (task thread, venue): clients are not thread-safe, and building one costs
# milliseconds of CPU that 30 tasks would otherwise pay again and again.
_thread_sources = threading.local()


def _source(settings: Settings, venue: VenueConfig, base_url: str | None) -> CcxtMarketDataSource:
    cache: dict[tuple[str, str | None], CcxtMarketDataSource] = _thread_sources.__dict__.setdefault(
        "by_venue", {}
    )
    source = cache.get((venue.id, base_url))
    if source is None:
        source = build_source(venue, base_url, venue_grant(settings, venue))
        with _markets_lock:
            loaded = _markets.get((venue.id, base_url))
        if loaded is not None:
            source.adopt_markets(loaded)
        cache[(venue.id, base_url)] = source
    return source


def _remember_markets(venue: VenueConfig, base_url: str | None, source: CcxtMarketDataSource) -> None:
    """Keep a connected venue's markets for the series tasks of this process.

    Not inline in connect_venue: a Dask task runner ships a task's function by value with the
    module globals it names, and a lock cannot be pickled. A module-level function travels by
    reference, so this one uses the worker process's own cache and lock.
    """
    with _markets_lock:
        _markets[(venue.id, base_url)] = source


@task(name="read-lake-state", **_TASK_DEFAULTS)
def read_lake_state(settings: Settings) -> LakeState:
    """Read the newest ingest manifest: what each series already holds."""
    return read_state(build_store(settings))


@task(name="connect-venue", **_TASK_DEFAULTS)
def connect_venue(settings: Settings, venue: VenueConfig, base_url: str | None) -> VenueStatus:
    """Load a venue's markets (with retries) and check it lists the configured symbols."""
    logger = get_run_logger()
    source = build_source(venue, base_url, venue_grant(settings, venue))
    policy = RetryPolicy.from_config(settings.retry)
    try:
        listed = call_with_retry(source.load_markets, policy, venue=venue.id)
    except (VenueFailedError, PermanentSourceError) as error:
        logger.warning("venue %s failed: %s", venue.id, error)
        source.close()
        return VenueStatus(venue.id, ok=False, base_url=base_url, error=str(error))
    _remember_markets(venue, base_url, source)
    unlisted = unlisted_symbols(venue.id, settings.venue_symbols(venue), listed)
    for message in unlisted.values():
        logger.warning("%s", message)
    logger.info("venue %s: %d markets", venue.id, len(listed))
    return VenueStatus(venue.id, ok=True, base_url=base_url, symbols_listed=listed, unlisted=unlisted)


@task(
    name="fetch-candle-series",
    task_run_name="fetch {venue.id} {symbol} {timeframe}",
    **_TASK_DEFAULTS,
)
def fetch_candle_series(
    settings: Settings,
    venue: VenueConfig,
    base_url: str | None,
    symbol: str,
    timeframe: str,
    start: int,
    end: int,
    failover_for: str | None = None,
) -> SeriesResult:
    """Fetch one series' closed candles in [start, end), page by page, and store them."""
    source = _source(settings, venue, base_url)
    result = ingest_candle_series(
        source,
        build_store(settings),
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        page_limit=settings.ingest.page_limit,
        policy=RetryPolicy.from_config(settings.retry),
        failover_for=failover_for,
        timeout_seconds=settings.ingest.series_timeout_seconds,
    )
    if result.status == "failed":
        get_run_logger().warning("%s failed: %s", result.key, result.error)
    return result


@task(name="snapshot-market", task_run_name="snapshot {venue.id} {symbol}", **_TASK_DEFAULTS)  # fmt: skip
def snapshot_market_task(
    settings: Settings,
    venue: VenueConfig,
    base_url: str | None,
    symbol: str,
    last_trade_timestamp: int | None,
) -> SnapshotResult:
    """Store an order book snapshot and the new recent trades of one symbol on one venue."""
    return snapshot_market(
        _source(settings, venue, base_url),
        build_store(settings),
        symbol=symbol,
        depth=settings.ingest.order_book_depth,
        trades_limit=settings.ingest.trades_limit,
        last_trade_timestamp=last_trade_timestamp,
        policy=RetryPolicy.from_config(settings.retry),
    )


@task(name="publish-manifest", **_TASK_DEFAULTS)
def publish_batch(
    settings: Settings,
    parent: LakeState,
    series: list[SeriesResult],
    snapshots: list[SnapshotResult],
    run: dict[str, Any],
) -> dict[str, Any] | None:
    """Publish the batch manifest last, making this run's objects visible at once.

    The batch (and a config change, if the config differs from the previous batch's) is then
    recorded in the audit chain before the task returns. The returned manifest carries the
    entries under ``audit``.
    """
    entries = [entry for result in series for entry in result.objects]
    entries += [entry for snapshot in snapshots for entry in snapshot.objects]
    store = build_store(settings)
    manifest = publish_manifest(
        store,
        parent,
        [stored_object(entry) for entry in entries],
        created_at=int(time.time() * 1000),
        config_hash=settings.config_hash,
        run=run,
    )
    if manifest is not None:
        manifest["audit"] = record_steps(settings, ingest_items(store, manifest))
    return manifest


@task(name="report-ingest", **_TASK_DEFAULTS)
def report_ingest(
    settings: Settings,
    venues: list[VenueStatus],
    series: list[SeriesResult],
    snapshots: list[SnapshotResult],
    covered: dict[str, list[str]],
    uncovered: list[str],
    manifest: dict[str, Any] | None,
    seconds: float,
) -> str:
    """Publish the run's table and markdown artifacts; return the markdown."""
    markdown = summary_markdown(
        venues=venues,
        series=series,
        snapshots=snapshots,
        covered=covered,
        uncovered=uncovered,
        manifest=manifest,
        store_location=build_store(settings).describe(),
        config_hash=settings.config_hash,
        seconds=seconds,
    )
    create_table_artifact(
        key="ingest-series",
        table=summary_rows(series),
        description="Candles per venue / symbol / timeframe in this run: new rows, pages, "
        "retries, holes, failovers.",
    )
    create_markdown_artifact(key="ingest-summary", markdown=markdown,
                             description="What this ingest run stored, and what failed.")  # fmt: skip
    return markdown
