"""Health and metrics of the streaming flow: ``/healthz`` and Prometheus ``/metrics`` on localhost.

The metrics live in a registry of their own (not prometheus_client's global one), so two
sessions in one process, or a test and a session, never share counters. The HTTP side is a small
aiohttp app on the session's own loop; it only reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Decision latency buckets, in seconds: 25 µs to 10 ms, then coarse.
LATENCY_BUCKETS = (
    25e-6, 50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3, 0.25, 1.0,
)  # fmt: skip
TRADING_STATE_CODES = {"ACTIVE": 0, "REDUCING": 1, "HALTED": 2}


@dataclass
class Metrics:
    """The streaming flow's Prometheus metrics (names prefixed ``tradeflow_``)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        """Register every metric in this instance's registry."""
        r = self.registry
        self.event_lag = Gauge(
            "tradeflow_event_lag_seconds", "Receive time minus venue event time of the last book event.",
            ["symbol"], registry=r,
        )  # fmt: skip
        self.decision_latency = Histogram(
            "tradeflow_decision_latency_seconds", "Book event received to order decision (risk checked).",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "tradeflow_queue_depth", "Market events waiting to be processed.", registry=r
        )
        self.events = Counter("tradeflow_events", "Market events processed.", ["kind"], registry=r)
        self.reconnects = Counter("tradeflow_reconnects", "Websocket reconnects.", ["venue"], registry=r)
        self.resyncs = Counter("tradeflow_resyncs", "Order book resyncs.", ["symbol"], registry=r)
        self.book_in_sync = Gauge(
            "tradeflow_book_in_sync", "1 while the local book is in sync.", ["symbol"], registry=r
        )
        self.orders = Gauge("tradeflow_orders", "Orders in the ledger by state.", ["state"], registry=r)
        self.orders_sent = Counter("tradeflow_orders_sent", "Orders sent to the broker.", registry=r)
        self.fills = Counter("tradeflow_fills", "Fills recorded.", ["symbol"], registry=r)
        self.rejections = Counter(
            "tradeflow_risk_rejections", "Pre-trade risk rejections.", ["check"], registry=r
        )
        self.reconciliation_differences = Counter(
            "tradeflow_reconciliation_differences",
            "Differences found by reconciliation.",
            ["kind"],
            registry=r,
        )
        self.realized_pnl = Gauge("tradeflow_realized_pnl", "Realized PnL, quote currency.", registry=r)
        self.unrealized_pnl = Gauge("tradeflow_unrealized_pnl", "Unrealized PnL, quote currency.", registry=r)
        self.equity = Gauge("tradeflow_equity", "Equity, quote currency.", registry=r)
        self.trading_state = Gauge("tradeflow_trading_state", "0 ACTIVE, 1 REDUCING, 2 HALTED.", registry=r)
        self.last_event_time = Gauge(
            "tradeflow_last_event_timestamp_seconds", "Wall time of the last market event.", registry=r
        )

    def set_orders(self, counts: Mapping[str, int]) -> None:
        """Set the orders-by-state gauge (states missing from ``counts`` read 0)."""
        from tradeflow.ledger.schema import ORDER_STATES

        for state in ORDER_STATES:
            self.orders.labels(state=state).set(counts.get(state, 0))

    def exposition(self) -> bytes:
        """Return the registry in the Prometheus text format."""
        return generate_latest(self.registry)


@dataclass
class HealthState:
    """What ``/healthz`` reports; the session updates it as it runs."""

    phase: str = "starting"
    trading_state: str = "ACTIVE"
    mode: str = "paper"
    venue: str = ""
    books: dict[str, bool] = field(default_factory=dict)
    last_event_ms: int = 0
    last_reconciliation_ms: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def healthy(self, now_ms: int, stale_ms: int) -> bool:
        """Running, every book in sync, and a market event within ``stale_ms``."""
        fresh = self.last_event_ms > 0 and now_ms - self.last_event_ms <= stale_ms
        return self.phase == "running" and all(self.books.values()) and fresh

    def to_dict(self, now_ms: int, stale_ms: int) -> dict[str, Any]:
        """Return the JSON body of ``/healthz``."""
        return {
            "status": "ok" if self.healthy(now_ms, stale_ms) else "degraded",
            "phase": self.phase,
            "trading_state": self.trading_state,
            "mode": self.mode,
            "venue": self.venue,
            "books_in_sync": dict(self.books),
            "last_event_age_seconds": None
            if not self.last_event_ms
            else (now_ms - self.last_event_ms) / 1000,
            "last_reconciliation_ms": self.last_reconciliation_ms or None,
            **self.detail,
        }


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class HealthServer:
    """``GET /healthz`` (200 when healthy, 503 otherwise, JSON either way) and ``GET /metrics``."""

    def __init__(
        self,
        metrics: Metrics,
        state: HealthState,
        stale_seconds: float = 5.0,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Serve ``metrics`` and ``state``; a market event older than ``stale_seconds`` is unhealthy."""
        self.metrics = metrics
        self.state = state
        self.stale_ms = int(stale_seconds * 1000)
        self.clock = clock
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _healthz(self, _request: web.Request) -> web.Response:
        now = self.clock()
        body = self.state.to_dict(now, self.stale_ms)
        status = 200 if body["status"] == "ok" else 503
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    async def _metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; return the base URL (with the real port when ``port`` is 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
