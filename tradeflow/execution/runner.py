"""The composition root of the streaming flow: build a trading session from the config and run it.

:func:`run_trading` is what the ``stream-execution`` Prefect flow and ``tradeflow trade`` call.
It chooses the implementations (paper, ccxt or staging broker; the champion's decider or the
churn exercise), connects the websocket feed to the session through a queue, serves
``/healthz`` and ``/metrics``, and runs until the duration is up, the stop event is set (SIGINT,
SIGTERM, a Prefect cancellation) or the feed fails for good; then it shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from tradeflow.config import ConfigError, Settings, VenueConfig
from tradeflow.execution.alerts import AlertCenter, Sink, webhook_sink
from tradeflow.execution.feed import (
    BarEvent,
    BookUpdate,
    FeedConfig,
    MarketFeed,
    StatusEvent,
    TickerEvent,
    TradeEvent,
)
from tradeflow.execution.health import HealthServer, HealthState, Metrics
from tradeflow.execution.killswitch import KillSwitch
from tradeflow.execution.risk import PreTradeRisk, RiskLimits
from tradeflow.execution.session import Audit, Decider, SessionConfig, SessionSummary, TradingSession
from tradeflow.ledger.store import Ledger

log = logging.getLogger(__name__)

#: Credentials every local venue accepts (not secrets: the simulator's documented defaults).
SIMULATOR_API_KEY = "tradeflow-sim-key"
SIMULATOR_API_SECRET = "tradeflow-sim-secret"
CLIENT_PREFIX = "tf"


@dataclass
class TradingPlan:
    """Everything :func:`run_trading` needs besides the settings, resolved up front."""

    venue: VenueConfig
    base_url: str | None
    symbols: list[str]
    mode: str
    strategy: str
    ledger_url: str
    kill_switch_path: Path
    duration_seconds: float | None = None
    health_port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def trading_venue(settings: Settings) -> VenueConfig:
    """Return the venue ``[execution] venue`` names (default: the first venue).

    Raises:
        ConfigError: No venue has that id.
    """
    wanted = settings.execution.venue
    if wanted is None:
        return settings.venues[0]
    for venue in settings.venues:
        if venue.id == wanted:
            return venue
    known = ", ".join(v.id for v in settings.venues)
    raise ConfigError(f"execution.venue = {wanted!r} is not a configured venue; choose one of: {known}")


def trading_symbols(settings: Settings) -> list[str]:
    """Return ``[execution] symbols`` (default: ``[ingest] symbols``)."""
    return list(settings.execution.symbols or settings.ingest.symbols)


def kill_switch_path(settings: Settings) -> Path:
    """Return the kill switch file (relative paths live under ``data_dir``)."""
    path = settings.execution.kill_switch_file
    return path if path.is_absolute() else settings.data_dir / path


def credentials(venue: VenueConfig) -> tuple[str, str]:
    """Return the venue's API key and secret: from the environment, or the simulator's defaults.

    Raises:
        ConfigError: A real venue without ``api_key_env`` / ``secret_env``, or with those
            variables unset.
    """
    if venue.simulated and not venue.api_key_env:
        return SIMULATOR_API_KEY, SIMULATOR_API_SECRET
    if not venue.api_key_env or not venue.secret_env:
        raise ConfigError(
            f"live trading on venue {venue.id!r} needs credentials: set venues.api_key_env and "
            "venues.secret_env to the names of environment variables holding the API key and secret"
        )
    key, secret = os.environ.get(venue.api_key_env), os.environ.get(venue.secret_env)
    missing = [name for name, value in ((venue.api_key_env, key), (venue.secret_env, secret)) if not value]
    if missing:
        raise ConfigError(f"venue {venue.id!r}: environment variable(s) {', '.join(missing)} not set")
    assert key is not None and secret is not None
    return key, secret


def paper_balances(ledger: Ledger, venue: str, initial: Mapping[str, float]) -> dict[str, float]:
    """Return the paper account as the ledger left it: the initial balances plus every fill.

    The paper broker keeps its account in memory, so a restarted paper session rebuilds it from
    the ledger (the record of every paper fill) instead of starting from scratch.
    """
    balances = {asset: Decimal(repr(amount)) for asset, amount in initial.items()}
    orders = {order.client_order_id: order for order in ledger.orders() if order.venue == venue}
    for fill in ledger.fills():
        order = orders.get(fill.client_order_id)
        if order is None:
            continue
        base, quote = order.symbol.split("/")
        sign = 1 if order.side == "buy" else -1
        balances[base] = balances.get(base, Decimal(0)) + sign * fill.quantity
        balances[quote] = balances.get(quote, Decimal(0)) - sign * fill.quantity * fill.price
        balances[fill.fee_currency] = balances.get(fill.fee_currency, Decimal(0)) - fill.fee
    return {asset: float(amount) for asset, amount in balances.items()}


def build_broker(plan: TradingPlan, settings: Settings, books: Mapping[str, Any], ledger: Ledger) -> Any:
    """Return the broker of the plan's mode."""
    from tradeflow.execution.brokers import PaperBroker, StagingBroker

    if plan.mode == "staging":
        return StagingBroker(balances=settings.execution.paper_balances)
    if plan.mode == "paper":
        return PaperBroker(
            books,
            latency_ms=settings.execution.paper_latency_ms,
            maker_fee=plan.venue.maker_fee,
            taker_fee=plan.venue.taker_fee,
            balances=paper_balances(ledger, plan.venue.id, settings.execution.paper_balances),
        )
    from tradeflow.execution.ccxt_broker import CcxtBroker
    from tradeflow.execution.exchange import create_pro_exchange

    key, secret = credentials(plan.venue)
    exchange = create_pro_exchange(
        plan.venue.exchange,
        base_url=plan.base_url,
        api_key=key,
        secret=secret,
        timeout_seconds=settings.execution.order_timeout_seconds,
        options=plan.venue.options,
    )
    # ccxt's client-side throttle spaces every request by its rate limit (about 10 ms per order
    # here): latency on the hot path. The order rate is the pre-trade checks' job, and a venue's
    # 429 is retried with its Retry-After.
    exchange.enableRateLimit = False
    return CcxtBroker(exchange)


def risk_limits(settings: Settings) -> RiskLimits:
    """Return the pre-trade limits of ``[execution]`` and ``[strategy]``."""
    execution = settings.execution
    return RiskLimits(
        max_order_notional=execution.max_order_notional,
        max_position_notional=execution.max_position_notional,
        max_gross_exposure=execution.max_gross_exposure,
        price_collar=execution.price_collar,
        max_orders_per_minute=execution.max_orders_per_minute,
        daily_loss_limit=settings.strategy.daily_loss_limit,
    )


def fetch_warm_up(
    settings: Settings, venue: VenueConfig, base_url: str | None, symbols: Sequence[str], minutes: int
) -> dict[str, Any]:
    """Return the last ``minutes`` closed 1-minute candles per symbol from the venue's REST API.

    The ingestion machinery does it: the pages that cover the window exactly once, the ccxt
    adapter's shape checks, and the ``[retry]`` policy.
    """
    import pandas as pd

    from tradeflow.bootstrap import build_source
    from tradeflow.ingest import RetryPolicy, call_with_retry, plan_pages

    source = build_source(venue, base_url)
    policy = RetryPolicy.from_config(settings.retry)
    limit = settings.ingest.page_limit
    end = int(time.time() * 1000)
    frames: dict[str, Any] = {}
    try:
        for symbol in symbols:
            pages = plan_pages(end - minutes * 60_000, end, 60_000, limit)
            chunks = [
                call_with_retry(
                    functools.partial(source.fetch_candles, symbol, "1m", page.since, page.until, limit),
                    policy,
                    venue=venue.id,
                )
                for page in pages
            ]
            rows = [chunk for chunk in chunks if len(chunk)]
            frame = pd.DataFrame(
                np.concatenate(rows) if rows else np.empty((0, 6)),
                columns=["timestamp", "open", "high", "low", "close", "volume"],
            )
            frame["timestamp"] = frame["timestamp"].astype("int64")
            frames[symbol] = frame.drop_duplicates("timestamp").reset_index(drop=True)
    finally:
        source.close()
    return frames


class _Pump:
    """Moves feed events from the feed's callback through a queue into the session."""

    def __init__(self, session: TradingSession, feed: MarketFeed, broker: Any, metrics: Metrics) -> None:
        self.session = session
        self.feed = feed
        self.broker = broker
        self.metrics = metrics
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._was_disconnected: set[str] = set()

    def put(self, event: Any) -> None:
        self.queue.put_nowait(event)

    async def run(self) -> None:
        session, metrics = self.session, self.metrics
        paper_book = getattr(self.broker, "on_book", None)
        while True:
            event = await self.queue.get()
            metrics.queue_depth.set(self.queue.qsize())
            if isinstance(event, BookUpdate):
                metrics.events.labels(kind="book").inc()
                session.on_event_time(event.symbol, event.event_time_ms, event.received_ns // 1_000_000)
                if paper_book is not None:
                    filled = {fill.client_order_id for fill in paper_book(event.symbol)}
                    for cid in filled:
                        report = await self.broker.query(cid, event.symbol)
                        if report is not None:
                            session.settle(report)
                if event.in_sync:
                    session.on_book(event.symbol, event.received_ns)
            elif isinstance(event, BarEvent):
                session.on_bar(event.symbol, event)
            elif isinstance(event, StatusEvent):
                if event.status == "disconnected":
                    self._was_disconnected.add(event.symbol)
                elif event.status == "connected" and event.symbol in self._was_disconnected:
                    self._was_disconnected.discard(event.symbol)
                    session.on_status(event.symbol, "reconnect")
                session.on_status(event.symbol, event.status)
            elif isinstance(event, TradeEvent):
                metrics.events.labels(kind="trade").inc()
            elif isinstance(event, TickerEvent):
                metrics.events.labels(kind="ticker").inc()


async def run_trading(
    settings: Settings,
    plan: TradingPlan,
    decider: Decider,
    *,
    audit: Audit | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    alert_sinks: list[Sink] | None = None,
    feed_config: FeedConfig | None = None,
    session_hook: dict[str, Any] | None = None,
) -> SessionSummary:
    """Run one trading session until ``plan.duration_seconds`` pass or ``stop`` is set.

    Args:
        settings: The configuration.
        plan: Venue, symbols, mode and where things live.
        decider: Turns book events into order intents (warmed up by the caller).
        audit: The audit chain (None: no audit entries, e.g. in benchmarks).
        stop: Set it to stop gracefully.
        on_ready: Called once trading starts, with the health URL and the reconciliation.
        alert_sinks: Extra alert destinations (the webhook of ``[execution]`` is added).
        feed_config: Feed tuning (tests shorten intervals).
        session_hook: If given, ``session_hook["session"]`` is set to the session (benchmarks
            read its latencies).

    Returns:
        What the session did.
    """
    stop = stop or asyncio.Event()
    ledger = Ledger.open(plan.ledger_url)
    metrics = Metrics()
    health = HealthState(mode=plan.mode, venue=plan.venue.id)
    sinks = list(alert_sinks or [])
    if settings.execution.alert_webhook_url:
        sinks.append(webhook_sink(settings.execution.alert_webhook_url))
    alerts = AlertCenter(sinks, settings.execution.resync_alert_count)
    pump: _Pump | None = None

    def sink(event: Any) -> None:
        if pump is not None:
            pump.put(event)

    config = feed_config or FeedConfig(stale_after_ms=int(settings.execution.stale_book_seconds * 1000))
    feed = MarketFeed(plan.venue.id, plan.symbols, base_url=plan.base_url, exchange_id=plan.venue.exchange,
                      sink=sink, config=config)  # fmt: skip
    books = {symbol: feed.book(symbol) for symbol in plan.symbols}
    broker = build_broker(plan, settings, books, ledger)
    from tradeflow.strategy.protections import Protections
    from tradeflow.strategy.settings import protection_config

    session = TradingSession(
        SessionConfig(
            venue=plan.venue.id,
            symbols=plan.symbols,
            mode=plan.mode,
            client_prefix=CLIENT_PREFIX,
            on_shutdown=settings.execution.on_shutdown,
            reconcile_seconds=settings.execution.reconcile_seconds,
            strategy=plan.strategy,
        ),
        broker=broker,
        decider=decider,
        risk=PreTradeRisk(risk_limits(settings)),
        ledger=ledger,
        books=books,
        audit=audit,
        metrics=metrics,
        health=health,
        alerts=alerts,
        kill_switch=KillSwitch(plan.kill_switch_path),
        protections=Protections(protection_config(settings)),
    )
    if session_hook is not None:
        session_hook["session"] = session
    pump = _Pump(session, feed, broker, metrics)
    server = HealthServer(metrics, health, settings.execution.stale_book_seconds)
    tasks: list[asyncio.Task[Any]] = []
    try:
        url = await server.start(settings.execution.health_host, plan.health_port)
        startup = await session.start()
        if on_ready is not None:
            on_ready({"health_url": url, "reconciliation": startup.summary()})
        tasks = [
            asyncio.create_task(feed.run(), name="feed"),
            asyncio.create_task(pump.run(), name="pump"),
            asyncio.create_task(session.housekeeping(stop), name="housekeeping"),
        ]
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait(), name="stop")]
        done, _ = await asyncio.wait(
            [*waiters, tasks[0], tasks[1]], timeout=plan.duration_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in tasks and task.exception() is not None:
                log.error("the %s task failed: %s", task.get_name(), task.exception())
        stop.set()
        for task in waiters:
            task.cancel()
        tasks[0].cancel()  # the feed: no new events
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await tasks[0]
        summary = await session.shutdown()
        counters = feed.counters
        summary.resyncs, summary.reconnects = counters.resyncs, counters.reconnects
        return summary
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await broker.close()
        await server.stop()
        ledger.close()


@dataclass
class PreparedTrading:
    """A session ready to run: its plan, its warmed-up decider, and what must be closed after."""

    settings: Settings
    plan: TradingPlan
    decider: Decider
    audit: Audit | None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Stop what :func:`prepare_trading` started (local venues)."""
        while self.closers:
            with contextlib.suppress(Exception):
                self.closers.pop()()


def prepare_trading(
    settings: Settings,
    *,
    mode: str,
    strategy: str,
    duration_seconds: float | None = None,
    model: Mapping[str, Any] | None = None,
    audit: Audit | None = None,
    progress: Callable[[str], None] = print,
) -> PreparedTrading:
    """Resolve the plan, start the local venues if the venue is simulated, warm the decider up.

    Raises:
        ConfigError: An unknown venue, or live trading without credentials.
    """
    from tradeflow.bootstrap import ledger_url, local_venues
    from tradeflow.execution.decider import build_decider, warm_up_minutes

    venue = trading_venue(settings)
    if mode == "live":
        credentials(venue)  # fail before anything starts
    closers: list[Callable[[], None]] = []
    base_url = venue.base_url
    if venue.simulated:
        only = settings.model_copy(update={"venues": [venue]})
        stack = contextlib.ExitStack()
        urls = stack.enter_context(local_venues(only))
        closers.append(stack.close)
        base_url = urls[venue.id]
        progress(f"local venue {venue.id} at {base_url}")
    symbols = trading_symbols(settings)
    plan = TradingPlan(
        venue=venue,
        base_url=base_url,
        symbols=symbols,
        mode=mode,
        strategy=strategy,
        ledger_url=ledger_url(settings),
        kill_switch_path=kill_switch_path(settings),
        duration_seconds=duration_seconds,
        health_port=settings.execution.health_port,
    )
    try:
        history: dict[str, Any] = {}
        if strategy == "champion":
            minutes = warm_up_minutes(settings)
            progress(
                f"warming up on the last {minutes:,} closed 1-minute bars of {len(symbols)} symbol(s) ..."
            )
            history = fetch_warm_up(settings, venue, base_url, symbols, minutes)
        decider = build_decider(
            settings, strategy, symbols, model, history, session_key=f"{venue.id}:{strategy}"
        )
        del history
        # The warm-up's and the model's objects live as long as the session: move them out of
        # the collector's reach, or a full collection walks them all (ms pauses on the hot path).
        gc.collect()
        gc.freeze()
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    return PreparedTrading(settings, plan, decider, audit, closers)


async def run_prepared(
    prepared: PreparedTrading,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    alert_sinks: list[Sink] | None = None,
    feed_config: FeedConfig | None = None,
) -> SessionSummary:
    """Run a prepared session (see :func:`run_trading`)."""
    return await run_trading(
        prepared.settings, prepared.plan, prepared.decider, audit=prepared.audit, stop=stop,
        on_ready=on_ready, alert_sinks=alert_sinks, feed_config=feed_config,
    )  # fmt: skip
