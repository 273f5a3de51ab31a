"""Alerts from the streaming flow: a halt, repeated resyncs, reconciliation differences.

An alert is a small JSON document. The webhook sink POSTs it (Slack-compatible: the ``text``
field carries the summary); sending never raises into the trading loop, a failed delivery is
logged and counted. Every alert is also kept in :attr:`AlertCenter.sent` so the flow can publish
them (the Prefect layer turns them into events that automations and notifications act on).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

RESYNC_WINDOW_MS = 5 * 60_000


@dataclass(frozen=True)
class Alert:
    """One alert: ``kind`` is ``halt``, ``resyncs`` or ``reconciliation``."""

    kind: str
    summary: str
    time_ms: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON body sent to a webhook."""
        return {
            "source": "tradeflow",
            "kind": self.kind,
            "text": f"tradeflow: {self.summary}",
            "time_ms": self.time_ms,
            "detail": self.detail,
        }


Sink = Callable[[Alert], Awaitable[None]]


def webhook_sink(url: str, timeout_seconds: float = 5.0) -> Sink:
    """Return a sink that POSTs each alert as JSON to ``url``."""

    async def send(alert: Alert) -> None:
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json=alert.to_dict()) as response,
        ):
            if response.status >= 300:
                raise RuntimeError(f"webhook answered HTTP {response.status}")

    return send


class AlertCenter:
    """Decides when to alert and delivers alerts to the configured sinks in the background."""

    def __init__(self, sinks: list[Sink], resync_alert_count: int = 3) -> None:
        """Deliver to ``sinks``; alert when a symbol resyncs ``resync_alert_count`` times in 5 minutes."""
        self.sinks = sinks
        self.resync_alert_count = resync_alert_count
        self.sent: list[Alert] = []
        self.failed = 0
        self._resyncs: dict[str, deque[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(
        self, kind: str, summary: str, detail: dict[str, Any] | None = None, time_ms: int | None = None
    ) -> Alert:
        """Record an alert and deliver it to every sink without waiting."""
        alert = Alert(
            kind, summary, time.time_ns() // 1_000_000 if time_ms is None else time_ms, detail or {}
        )
        self.sent.append(alert)
        log.warning("alert (%s): %s", kind, summary)
        for sink in self.sinks:
            task = asyncio.get_running_loop().create_task(self._deliver(sink, alert))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return alert

    async def _deliver(self, sink: Sink, alert: Alert) -> None:
        try:
            await sink(alert)
        except Exception as error:  # never into the trading loop
            self.failed += 1
            log.error("could not deliver the %s alert: %s", alert.kind, error)

    def on_resync(self, symbol: str, time_ms: int) -> Alert | None:
        """Count a resync; alert (once per window) when a symbol resyncs too often."""
        window = self._resyncs.setdefault(symbol, deque())
        window.append(time_ms)
        while window and window[0] < time_ms - RESYNC_WINDOW_MS:
            window.popleft()
        if len(window) == self.resync_alert_count:
            return self.emit(
                "resyncs",
                f"{symbol} order book resynced {len(window)} times within 5 minutes",
                {"symbol": symbol, "count": len(window)},
                time_ms,
            )
        return None

    async def drain(self, timeout_seconds: float = 5.0) -> None:
        """Wait (bounded) for alerts still being delivered."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_seconds)
