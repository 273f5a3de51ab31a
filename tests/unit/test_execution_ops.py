"""The streaming flow's operating parts: /healthz and /metrics, alerts to a webhook, the kill switch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tradeflow.execution.alerts import AlertCenter, webhook_sink
from tradeflow.execution.health import HealthServer, HealthState, Metrics
from tradeflow.execution.killswitch import KillSwitch


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def test_healthz_reports_degraded_until_running_with_books_in_sync_and_fresh_events() -> None:
    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        now = [10_000]
        state = HealthState(mode="paper", venue="sim-alpha")
        server = HealthServer(Metrics(), state, stale_seconds=2.0, clock=lambda: now[0])
        url = await server.start(port=0)
        seen = []
        try:
            for change in (
                lambda: None,  # starting
                lambda: (setattr(state, "phase", "running"), state.books.update({"BTC/USDT": True})),
                lambda: setattr(state, "last_event_ms", 9_500),  # fresh: healthy
                lambda: state.books.update({"ETH/USDT": False}),  # a book out of sync
                lambda: (state.books.update({"ETH/USDT": True}), now.__setitem__(0, 20_000)),  # stale
            ):
                change()
                status, text = await _get(f"{url}/healthz")
                seen.append((status, json.loads(text)))
        finally:
            await server.stop()
        return seen

    seen = asyncio.run(scenario())
    assert [status for status, _ in seen] == [503, 503, 200, 503, 503]
    assert seen[2][1]["status"] == "ok" and seen[2][1]["venue"] == "sim-alpha"
    assert seen[3][1]["books_in_sync"] == {"BTC/USDT": True, "ETH/USDT": False}
    assert seen[4][1]["last_event_age_seconds"] == pytest.approx(10.5)


def test_metrics_endpoint_serves_the_session_metrics_in_prometheus_format() -> None:
    async def scenario() -> str:
        metrics = Metrics()
        metrics.decision_latency.observe(0.0004)
        metrics.resyncs.labels(symbol="BTC/USDT").inc()
        metrics.set_orders({"filled": 3})
        metrics.trading_state.set(2)
        server = HealthServer(metrics, HealthState())
        url = await server.start(port=0)
        try:
            status, text = await _get(f"{url}/metrics")
        finally:
            await server.stop()
        assert status == 200
        return text

    text = asyncio.run(scenario())
    assert 'tradeflow_decision_latency_seconds_bucket{le="0.0005"} 1.0' in text
    assert 'tradeflow_decision_latency_seconds_bucket{le="0.0003"} 0.0' in text
    assert 'tradeflow_resyncs_total{symbol="BTC/USDT"} 1.0' in text
    assert 'tradeflow_orders{state="filled"} 3.0' in text
    assert 'tradeflow_orders{state="new"} 0.0' in text
    assert "tradeflow_trading_state 2.0" in text


def test_alerts_reach_a_local_webhook_and_resyncs_alert_once_per_burst() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], AlertCenter]:
        received: list[dict[str, Any]] = []

        async def hook(request: web.Request) -> web.Response:
            received.append(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        center = AlertCenter([webhook_sink(f"http://127.0.0.1:{port}/hook")], resync_alert_count=3)
        try:
            center.emit("halt", "trading HALTED: kill switch", {"source": "cli"})
            for second in range(5):  # five resyncs within a minute: one alert, at the third
                center.on_resync("BTC/USDT", 1_000 * second)
            center.on_resync("ETH/USDT", 0)
            await center.drain()
        finally:
            await runner.cleanup()
        return received, center

    received, center = asyncio.run(scenario())
    assert sorted(alert["kind"] for alert in received) == ["halt", "resyncs"]  # delivered concurrently
    resync = next(alert for alert in received if alert["kind"] == "resyncs")
    assert resync["detail"] == {"symbol": "BTC/USDT", "count": 3}
    assert resync["text"].startswith("tradeflow: BTC/USDT order book resynced 3 times")
    assert center.failed == 0


def test_an_unreachable_webhook_is_counted_not_raised() -> None:
    async def scenario() -> AlertCenter:
        center = AlertCenter([webhook_sink("http://127.0.0.1:9/nowhere", timeout_seconds=1.0)])
        center.emit("reconciliation", "2 differences")
        await center.drain()
        return center

    center = asyncio.run(scenario())
    assert center.failed == 1
    assert center.sent[0].kind == "reconciliation"


def test_kill_switch_file_round_trip(tmp_path: Path) -> None:
    switch = KillSwitch(tmp_path / "ops" / "KILL_SWITCH")
    assert not switch.engaged and not switch.state().engaged
    engaged = switch.engage("manual stop", "cli")
    state = switch.state()
    assert switch.engaged and state.engaged
    assert (state.reason, state.source, state.time_ms) == ("manual stop", "cli", engaged.time_ms)
    assert switch.release() and not switch.engaged
    assert not switch.release()
    # An operator's `echo stop > KILL_SWITCH` counts too, with its text as the reason.
    switch.path.write_text("stop now\n")
    assert switch.state() == type(state)(True, "stop now", "file", 0)
