"""The ``ingest-market-data`` flow: composition only (ordering, fan-out, failover)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from prefect import flow
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows.runners import task_runner
from tasks.audit import checkpoint_audit
from tasks.ingest import (
    connect_venue,
    fetch_candle_series,
    publish_batch,
    read_lake_state,
    report_ingest,
    snapshot_market_task,
)
from tradeflow.bootstrap import local_venues, venue_urls
from tradeflow.config import ConfigError, Settings, load_settings
from tradeflow.ingest import (
    SeriesResult,
    VenueStatus,
    final_statuses,
    lost_symbols,
    plan_failover,
    series_window,
    unlisted_results,
)
from tradeflow.storage.lake import series_key
from tradeflow.timeframes import timeframe_ms


def configured_task_runner() -> TaskRunner[Any]:
    """The fan-out's task runner from ``[orchestration]`` of the default config (threads if it is unreadable).

    Read when the module is imported, because a deployment's worker imports the flow and runs it
    with the runner it was declared with; a broken config fails the run itself, loudly, later.
    """
    try:
        settings = load_settings(None)
    except ConfigError:
        return ThreadPoolTaskRunner(max_workers=8)
    return task_runner(settings, settings.ingest.max_concurrency)


@flow(name="ingest-market-data", task_runner=configured_task_runner(), log_prints=True)
def ingest_market_data(
    config_path: str | None = None,
    running_venues: dict[str, str] | None = None,
    end_ms: int | None = None,
) -> dict[str, Any]:
    """Fetch candles, order books and trades from every configured venue into the lake.

    For each (venue, symbol, timeframe) it fetches the closed candles since the last stored one
    (or the configured look-back), 1000 per request, concurrently across venues, within each
    venue's shared request-weight budget. A venue that keeps failing after retries is marked
    failed for this run, the others carry on, and its symbols are fetched from other venues
    that list them. Order book snapshots and recent trades are taken alongside. The batch
    manifest is published last. A re-run of the same window writes no candle object again and
    reports the candles "up to date" (a fresh book snapshot is, by nature, always new). The
    batch is recorded in the audit chain, and the run ends with a signed checkpoint of it.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        running_venues: Base URLs of already running local venues (venue id → URL). When None
            and the config has simulated venues, the flow starts them for its own duration.
        end_ms: Pin the window's end (UTC ms), overriding ``history.end``; default now.
    """
    settings = load_settings(config_path)
    result = ingest_stage(settings, running_venues, end_ms)
    result["checkpoint"] = checkpoint_audit(quote(settings), quote(result["audit"]))
    return result


def ingest_stage(
    settings: Settings, running_venues: dict[str, str] | None, end_ms: int | None
) -> dict[str, Any]:
    """The ingest flow's composition, without its checkpoint; called inside a flow run.

    ``daily-pipeline`` calls it too, so the pipeline runs these tasks in its own flow run
    instead of paying for a flow run per stage.
    """
    started = time.monotonic()
    own_venues = running_venues is None and any(v.simulated for v in settings.venues)
    with local_venues(settings) if own_venues else nullcontext(running_venues or {}) as running:
        urls = venue_urls(settings, running)
        end = end_ms or settings.history.end_ms() or int(time.time() * 1000)
        # quote(): the settings and result lists are plain data with no futures inside, and
        # letting Prefect walk them on every task call costs seconds on a large run.
        config = quote(settings)
        state = read_lake_state(config)

        connections = {v.id: connect_venue.submit(config, v, urls[v.id]) for v in settings.venues}
        statuses: dict[str, VenueStatus] = {vid: f.result() for vid, f in connections.items()}
        requested = {v.id: settings.venue_symbols(v) for v in settings.venues}

        # Snapshots run alongside the candle series, on every venue that connected.
        snapshot_futures = [
            snapshot_market_task.submit(
                config, settings.venue(vid), urls[vid], symbol,
                state.last_timestamp(f"trades:{series_key(vid, symbol)}"),
            )
            for vid, status in statuses.items() if status.ok
            for symbol in requested[vid] if symbol not in status.unlisted
            if settings.ingest.order_book_depth or settings.ingest.trades_limit
        ]  # fmt: skip

        def submit_series(
            venue_id: str, symbol: str, failover_for: str | None = None
        ) -> list[PrefectFuture[SeriesResult]]:
            venue = settings.venue(venue_id)
            futures = []
            for timeframe in settings.ingest.timeframes:
                start, stop = series_window(
                    state.last_timestamp(series_key(venue_id, symbol, timeframe)),
                    end, timeframe_ms(timeframe), settings.history.days_for(timeframe),
                )  # fmt: skip
                future = fetch_candle_series.submit(
                    config, venue, urls[venue_id], symbol, timeframe, start, stop, failover_for
                )
                futures.append(future)
            return futures

        futures = [f for vid, status in statuses.items() if status.ok
                   for symbol in requested[vid] if symbol not in status.unlisted
                   for f in submit_series(vid, symbol)]  # fmt: skip
        series: list[SeriesResult] = [f.result() for f in futures]
        series += [r for s in statuses.values() for r in unlisted_results(s, settings.ingest.timeframes)]

        lost = lost_symbols(requested, statuses, series)
        listings = {vid: s.symbols_listed for vid, s in statuses.items() if s.ok and vid not in lost}
        assignments, covered, uncovered = plan_failover(requested, lost, listings)
        series += [f.result() for a in assignments
                   for f in submit_series(a.venue, a.symbol, a.failover_for)]  # fmt: skip
        snapshots = [f.result() for f in snapshot_futures]

    venues = final_statuses(statuses, series)
    run = {"flow_run_id": str(flow_run.id or ""), "end": end,
           "venues": {v.venue: v.ok for v in venues}}  # fmt: skip
    manifest = publish_batch(config, quote(state), quote(series), quote(snapshots), run)
    seconds = time.monotonic() - started
    report_ingest(config, venues, quote(series), quote(snapshots), covered, uncovered,
                  quote(manifest), seconds)  # fmt: skip
    return {
        "venues": [v.__dict__ for v in venues],
        "series": [r.to_dict() for r in series],
        "snapshots": [s.to_dict() for s in snapshots],
        "covered": covered,
        "uncovered": uncovered,
        "manifest": None
        if manifest is None
        else {k: manifest[k] for k in ("sequence", "batch_id", "parent", "created_at", "config_hash")}
        | {"new_objects": len(manifest["new_objects"])},
        "end": end,
        "seconds": seconds,
        "config_hash": settings.config_hash,
        "audit": [] if manifest is None else manifest["audit"],
    }


def run_ingest(
    config_path: str | None,
    running_venues: dict[str, str] | None,
    end_ms: int | None,
    max_concurrency: int,
) -> dict[str, Any]:
    """Run ``ingest-market-data`` once with ``max_concurrency`` task threads, or on Dask (the CLI's entry)."""
    settings = load_settings(config_path)
    flow_with_workers = ingest_market_data.with_options(task_runner=task_runner(settings, max_concurrency))
    return flow_with_workers(config_path=config_path, running_venues=running_venues, end_ms=end_ms)


def start_prefect_api_early() -> Callable[[], None]:
    """Start Prefect's temporary API server in the background; return a function that waits for it.

    Without ``PREFECT_API_URL`` every process starts its own temporary server at its first flow
    run, which takes seconds. Starting it while the caller does other work (the local venues,
    imports) overlaps that wait. Call the returned function before the first flow run: the
    server object marks itself running before it is ready. The wait re-raises a failed start.
    With an API URL set, this does nothing.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return lambda: None

    failures: list[BaseException] = []

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        try:
            server.start()
        except BaseException as error:
            # Prefect leaves a server that timed out running; stop it, or the flow run's own
            # attempt would start a second one racing it for the same SQLite database.
            server.stop()
            failures.append(error)

    thread = threading.Thread(target=start, name="prefect-api-start", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failures:
            raise failures[0]

    return wait
