"""Section: the streaming flow over loopback — venue tick to order acknowledged, and memory.

Two measurements, each a real trading session (websocket feed, local books, decider, pre-trade
risk, ledger on SQLite, /metrics) against local venues in a child process:

1. **End to end**: ``live`` mode through the ccxt broker (signed REST orders over loopback) in
   the churn exercise mode (every symbol's target flips every 0.5 s, so orders flow steadily).
   Per order: the venue's event time ``E`` of the book update the decision was taken on, to the
   moment the venue's answer (the acknowledgement, with its fills) is back in the session. Goal:
   p99 under 10 ms. ``E`` has millisecond resolution, so each figure is uncertain by up to 1 ms.
2. **Memory**: ``paper`` mode with 5 symbols streaming (books at 100 ms, trades, tickers, klines)
   for the soak (10 minutes by default): resident set size sampled every 5 s. Goal: under 500 MB
   and flat (the last minute's average within 10 % of the second minute's). The decider is the
   churn exercise (no model: the feature windows are measured by ``bench.decision``).

Run: ``python -m bench.stream --json PATH [--quick]`` (the lead section of ``make bench`` runs
it in a child process).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tradeflow.config import Settings, VenueConfig
from tradeflow.execution.decider import build_decider
from tradeflow.execution.runner import SIMULATOR_API_KEY, SIMULATOR_API_SECRET, TradingPlan, run_trading
from tradeflow.simulator import FAULT_PROFILES, ClusterSpec, SymbolSpec, VenueCluster, VenueSpec

P99_GOAL_MS = 10.0
RSS_GOAL_MB = 500.0
SYMBOLS = [
    SymbolSpec(symbol="BTC/USDT", base_price=60_000.0, tick_size=0.01, step_size=0.00001),
    SymbolSpec(symbol="ETH/USDT", base_price=3_000.0, tick_size=0.01, step_size=0.0001),
    SymbolSpec(symbol="SOL/USDT", base_price=150.0, tick_size=0.01, step_size=0.001),
    SymbolSpec(symbol="BNB/USDT", base_price=600.0, tick_size=0.01, step_size=0.001),
    SymbolSpec(symbol="XRP/USDT", base_price=0.6, tick_size=0.0001, step_size=0.1),
]
FULL = {"e2e_seconds": 60.0, "soak_seconds": 600.0}
QUICK = {"e2e_seconds": 15.0, "soak_seconds": 90.0}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * q) - 1))]


def _session(base_url: str, mode: str, seconds: float, folder: Path, churn_seconds: float,
             sample: list[tuple[float, float]] | None, count: int = 5) -> tuple[Any, Any]:  # fmt: skip
    symbols = [s.symbol for s in SYMBOLS][:count]
    settings = Settings(
        data_dir=folder,
        ingest={"symbols": symbols[:3]},
        execution={"strategy": "churn", "churn_seconds": churn_seconds, "churn_notional": 50.0,
                   "max_orders_per_minute": 10_000, "reconcile_seconds": 30.0},
    )  # fmt: skip
    os.environ.setdefault("TF_BENCH_SIM_KEY", SIMULATOR_API_KEY)
    os.environ.setdefault("TF_BENCH_SIM_SECRET", SIMULATOR_API_SECRET)
    venue = VenueConfig(id="sim-bench", exchange="binance", base_url=base_url,
                        api_key_env="TF_BENCH_SIM_KEY", secret_env="TF_BENCH_SIM_SECRET")  # fmt: skip
    plan = TradingPlan(venue=venue, base_url=base_url, symbols=symbols, mode=mode, strategy="churn",
                       ledger_url=f"sqlite:///{folder / f'{mode}-{count}-{churn_seconds}.db'}",
                       kill_switch_path=folder / "KILL",
                       duration_seconds=seconds, health_port=0)  # fmt: skip
    decider = build_decider(settings, "churn", symbols, None, {}, session_key=f"bench-{mode}")
    gc.collect()
    gc.freeze()  # as prepare_trading does before a session
    holder: dict[str, Any] = {}

    async def main() -> Any:
        sampler = None
        if sample is not None:

            async def watch() -> None:
                started = time.monotonic()
                while True:
                    sample.append((time.monotonic() - started, _rss_mb()))
                    await asyncio.sleep(5.0)

            sampler = asyncio.create_task(watch())

        def ready(info: dict[str, Any]) -> None:
            holder["health_url"] = info["health_url"]

        try:
            return await run_trading(settings, plan, decider, on_ready=ready, session_hook=holder)
        finally:
            if sampler is not None:
                sampler.cancel()

    summary = asyncio.run(main())
    return summary, holder.get("session")


def _acks(summary: Any, session: Any) -> dict[str, Any]:
    acks = list(session.ack_latencies_ms)[1:]  # the first order also warms the HTTP connection up
    return {
        "orders": summary.orders_sent,
        "fills": summary.fills,
        "acks": len(acks),
        "p50_ms": _percentile(acks, 0.50),
        "p99_ms": _percentile(acks, 0.99),
        "max_ms": max(acks) if acks else math.nan,
        "decision_p50_us": summary.latency_p50_us,
        "decision_p99_us": summary.latency_p99_us,
        "breakdown_p50_ms": [
            _percentile([row[i] for row in session.ack_breakdown[1:]], 0.5) for i in range(4)
        ],
        "breakdown_p99_ms": [
            _percentile([row[i] for row in session.ack_breakdown[1:]], 0.99) for i in range(4)
        ],
    }


def measure(quick: bool) -> dict[str, Any]:
    """Run both measurements and return the raw figures."""
    sizes = QUICK if quick else FULL
    transport, data = FAULT_PROFILES["clean"]
    spec = ClusterSpec(world_seed=7, symbols=SYMBOLS,
                       venues=[VenueSpec(id="sim-bench", seed=5, transport=transport, data=data)],
                       )  # fmt: skip
    console = Console()
    result: dict[str, Any] = {"quick": quick, **sizes}
    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-stream-") as temporary:
        folder = Path(temporary)
        cluster = VenueCluster(spec).start(mode="process")
        try:
            base_url = cluster.base_urls["sim-bench"]
            console.print(
                f"end to end: live orders over loopback, one symbol, for {sizes['e2e_seconds']:.0f} s …"
            )
            summary, session = _session(base_url, "live", sizes["e2e_seconds"], folder, 0.25, None, count=1)
            result["e2e"] = _acks(summary, session)
            console.print(f"end to end: 5 symbols flipping together (bursts), {sizes['e2e_seconds']:.0f} s …")
            summary, session = _session(base_url, "live", sizes["e2e_seconds"], folder, 1.0, None, count=5)
            result["e2e_burst"] = _acks(summary, session)
            console.print(f"memory: paper trading 5 symbols for {sizes['soak_seconds']:.0f} s …")
            samples: list[tuple[float, float]] = []
            summary, _ = _session(base_url, "paper", sizes["soak_seconds"], folder, 5.0, samples)
            early = [mb for t, mb in samples if 60 <= t < 120] or [samples[0][1]]
            late = [mb for t, mb in samples if t >= samples[-1][0] - 60]
            result["memory"] = {
                "events": summary.events,
                "orders": summary.orders_sent,
                "samples": samples,
                "start_mb": samples[0][1],
                "second_minute_mb": sum(early) / len(early),
                "last_minute_mb": sum(late) / len(late),
                "max_mb": max(mb for _, mb in samples),
            }
        finally:
            cluster.stop()
    return result


def verdicts(result: dict[str, Any]) -> list[str]:
    """Return PASS/FAIL lines for the goals."""
    e2e, memory = result["e2e"], result["memory"]
    growth = memory["last_minute_mb"] / memory["second_minute_mb"] - 1
    return [
        f"{'PASS' if e2e['p99_ms'] < P99_GOAL_MS else 'FAIL'} venue tick -> order acknowledged p99 "
        f"{e2e['p99_ms']:.1f} ms (goal < {P99_GOAL_MS:.0f} ms; p50 {e2e['p50_ms']:.1f} ms, "
        f"{e2e['acks']} orders)",
        f"{'PASS' if memory['max_mb'] < RSS_GOAL_MB else 'FAIL'} resident set max {memory['max_mb']:.0f} MB "
        f"(goal < {RSS_GOAL_MB:.0f} MB, 5 symbols, {result['soak_seconds'] / 60:.1f} min)",
        f"{'PASS' if abs(growth) <= 0.10 else 'FAIL'} memory flat: last minute "
        f"{memory['last_minute_mb']:.0f} MB "
        f"vs second minute {memory['second_minute_mb']:.0f} MB ({growth:+.1%}; goal within 10 %)",
    ]


def print_tables(result: dict[str, Any]) -> None:
    """Print the figures."""
    console = Console()
    table = Table(title="Streaming flow over loopback", header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    e2e, burst, memory = result["e2e"], result["e2e_burst"], result["memory"]
    for name, value in (
        ("orders acknowledged (live, 1 symbol flipping every 0.25 s)", f"{e2e['acks']:,}"),
        ("venue tick -> ack p50 / p99 / max",
         f"{e2e['p50_ms']:.1f} / {e2e['p99_ms']:.1f} / {e2e['max_ms']:.1f} ms"),
        ("in-session decision p50 / p99 (incl. queue)",
         f"{e2e['decision_p50_us'] or 0:.0f} / {e2e['decision_p99_us'] or 0:.0f} µs"),
        ("  of which feed / decide+queue / stage / send (p50 each)",
         " / ".join(f"{value:.1f}" for value in e2e["breakdown_p50_ms"]) + " ms"),
        ("  of which feed / decide+queue / stage / send (p99 each)",
         " / ".join(f"{value:.1f}" for value in e2e["breakdown_p99_ms"]) + " ms"),
        ("bursts: 5 symbols flipping together, orders", f"{burst['acks']:,}"),
        ("bursts: venue tick -> ack p50 / p99 / max",
         f"{burst['p50_ms']:.1f} / {burst['p99_ms']:.1f} / {burst['max_ms']:.1f} ms"),
        ("soak: market events processed", f"{memory['events']:,}"),
        ("RSS start / 2nd minute / last minute / max",
         f"{memory['start_mb']:.0f} / {memory['second_minute_mb']:.0f} / {memory['last_minute_mb']:.0f} / "
         f"{memory['max_mb']:.0f} MB"),
    ):  # fmt: skip
        table.add_row(name, value)
    console.print(table)
    for line in verdicts(result):
        console.print(line)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the section and write its JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="where the raw result goes")
    parser.add_argument("--quick", action="store_true", help="15 s end to end, 90 s soak")
    args = parser.parse_args(argv)
    result = measure(args.quick)
    print_tables(result)
    args.json.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
