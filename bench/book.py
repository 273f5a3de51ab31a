"""Section: book maintenance — parse + apply of wire depth updates, events/s per core.

The question: how many ``depthUpdate`` messages per second can one core turn from JSON text, as
it arrives on the websocket, into an up-to-date local order book? Goal: at least 20,000 events/s,
and at least as fast as a plain-Python baseline measured side by side.

The workload is what a paper-trading session against the local venues receives: the
``<symbol>@depth@100ms`` messages of the default simulator symbols (BTC/USDT, ETH/USDT,
SOL/USDT) as one venue sends them, interleaved, produced by the venue's own live layer and
stream formatter (:mod:`tradeflow.simulator.live`, :func:`depth_update_json`) from a fixed seed
and a fixed clock, so every run sees the same bytes. Before the clock starts, each side gets the
REST snapshots of the three books (parsed, untimed).

The two sides:

- **baseline**: the simplest correct implementation: ``json.loads``, a dict per side
  (``float(price) -> float(quantity)``, quantity 0 removes), dropping events the book already
  has and refusing a gap (``U != last u + 1``). No ordering structure, no crossed-book check.
- **tradeflow**: what :class:`tradeflow.execution.feed.MarketFeed` does per message: decode with
  the parser ccxt.pro uses for websocket frames (``orjson`` when importable, else ``json``), then
  :meth:`LocalOrderBook.on_message` — the full sync state machine, heaps for O(1) best prices,
  and the crossed-book check after every event.

Shown only: tradeflow decoding with ``json.loads`` (same parser as the baseline), the baseline
with ``orjson``, the typed path (``DepthUpdate.from_binance`` + ``on_update``), and the feed's path
plus a read of the best bid and ask after every event (the book resolves a removed best price
lazily, on the next read: this row shows what that read costs).

Fairness: single thread (per core), inputs are ready ``str`` objects, every side replays the
same messages from the same snapshots, ``gc.collect()`` before each timed pass, sides alternate
and swap order each repetition, medians compared. After every pass the final books of all sides
must be equal (and equal to the venue's own levels), or the section warns.

Run alone: ``python -m bench.book --json PATH [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.child import run_section
from bench.workload import BenchError

#: tradeflow's parse + apply must reach this many events/s ...
EVENTS_PER_SECOND_GOAL = 20_000.0
#: ... and be at least this fast relative to the baseline (tradeflow / baseline events/s).
BASELINE_RATIO_GOAL = 1.0

FULL = {"steps": 10_000, "runs": 7}
QUICK = {"steps": 3_000, "runs": 3}

#: The default simulator symbols (tradeflow.toml [[simulator.symbols]]).
SYMBOLS = (
    ("BTC/USDT", 60_000.0, 0.55, 0.01, 0.00001),
    ("ETH/USDT", 3_000.0, 0.7, 0.01, 0.0001),
    ("SOL/USDT", 150.0, 0.9, 0.01, 0.001),
)
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SEED = 11

Books = dict[str, tuple[dict[float, float], dict[float, float]]]


@dataclass
class Workload:
    """The messages, the snapshots they continue, and the venue's books at the end."""

    messages: list[str]
    snapshots: dict[str, str]
    final: Books
    levels_per_event: float
    bytes_per_event: float


@dataclass
class BookBenchResult:
    """What the section measured (seconds per pass over all messages)."""

    events: int
    symbols: list[str]
    levels_per_event: float
    bytes_per_event: float
    parser: str
    baseline: list[float] = field(default_factory=list)
    tradeflow: list[float] = field(default_factory=list)
    tradeflow_json: list[float] = field(default_factory=list)
    baseline_orjson: list[float] = field(default_factory=list)
    typed: list[float] = field(default_factory=list)
    reading: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def rate(self, seconds: list[float]) -> float:
        """Return events per second at the median pass."""
        return self.events / statistics.median(seconds) if seconds else float("nan")

    @property
    def ratio(self) -> float:
        """Return tradeflow's events/s over the baseline's (the goal's ratio)."""
        return self.rate(self.tradeflow) / self.rate(self.baseline)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BookBenchResult:
        """Rebuild a result from :meth:`to_json`'s output."""
        return cls(**dict(data))

    def to_json(self) -> dict[str, Any]:
        """Return the raw result plus the derived rates."""
        raw = asdict(self)
        raw["rates"] = {
            name: self.rate(getattr(self, name))
            for name in ("baseline", "tradeflow", "tradeflow_json", "baseline_orjson", "typed", "reading")
        }
        raw["ratio"] = self.ratio
        return raw


# --- the workload -----------------------------------------------------------------------------


def build_workload(steps: int) -> Workload:
    """Step a simulated venue's live layer ``steps`` times (100 ms each) and record its stream."""
    from tradeflow.simulator import ClusterSpec, SimulatedVenue, SymbolSpec, VenueSpec
    from tradeflow.simulator.live import LiveVenue
    from tradeflow.simulator.payloads import depth
    from tradeflow.simulator.routes.streams import depth_update_json
    from tradeflow.simulator.runtime import VenueRuntime

    symbols = [
        SymbolSpec(symbol=s, base_price=p, annual_volatility=v, tick_size=t, step_size=q)
        for s, p, v, t, q in SYMBOLS
    ]
    spec = ClusterSpec(world_seed=7, symbols=symbols, venues=[VenueSpec(id="bench", seed=SEED)])
    spec = spec.model_copy(update={"history_anchor_ms": START_MS - START_MS % 86_400_000})
    now = [START_MS]
    runtime = VenueRuntime(SimulatedVenue(spec, spec.venues[0]), spec.venues[0], clock=lambda: now[0])
    live = LiveVenue(runtime)
    formats = {s: (live.market(s).tick.fmt, live.market(s).step.fmt) for s in live.symbols}
    now[0] += 100
    live.step()  # the first step moves the seed book to the live layer's mid: not typical
    snapshots = {s: depth(live.snapshot(s, 5000), live.market(s)) for s in live.symbols}
    messages: list[str] = []
    levels = 0
    for _ in range(steps):
        now[0] += 100
        for diff in live.step():
            messages.append(depth_update_json(diff, *formats[diff.symbol]))
            levels += len(diff.bids) + len(diff.asks)
    final: Books = {}
    for symbol in live.symbols:
        bids, asks = live.levels(symbol)
        final[symbol] = (dict(bids), dict(asks))
    return Workload(
        messages=messages,
        snapshots=snapshots,
        final=final,
        levels_per_event=levels / len(messages),
        bytes_per_event=sum(map(len, messages)) / len(messages),
    )


# --- the contenders ---------------------------------------------------------------------------


def baseline(workload: Workload, loads: Callable[[str], Any] = json.loads) -> Books:
    """Apply every message with json.loads and dicts: the simplest correct local book."""
    books: Books = {}
    last: dict[str, int] = {}
    for symbol, text in workload.snapshots.items():
        snapshot = json.loads(text)
        books[symbol] = (
            {float(p): float(q) for p, q in snapshot["bids"]},
            {float(p): float(q) for p, q in snapshot["asks"]},
        )
        last[symbol] = snapshot["lastUpdateId"]
    for text in workload.messages:
        message = loads(text)
        symbol = message["s"]
        final = message["u"]
        if final <= last[symbol]:
            continue
        if message["U"] != last[symbol] + 1:
            raise BenchError(f"baseline: gap in {symbol} at U={message['U']}")
        bids, asks = books[symbol]
        for price, quantity in message["b"]:
            p, q = float(price), float(quantity)
            if q == 0.0:
                bids.pop(p, None)
            else:
                bids[p] = q
        for price, quantity in message["a"]:
            p, q = float(price), float(quantity)
            if q == 0.0:
                asks.pop(p, None)
            else:
                asks[p] = q
        last[symbol] = final
    return books


def _synced_books(workload: Workload) -> dict[str, Any]:
    from tradeflow.execution.book import DepthSnapshot, LocalOrderBook

    books = {}
    for symbol, text in workload.snapshots.items():
        book = LocalOrderBook(symbol, stale_after_ms=10**12)
        book.on_snapshot(DepthSnapshot.from_binance(json.loads(text)))
        books[symbol] = book
    return books


def tradeflow(workload: Workload, loads: Callable[[str], Any]) -> Books:
    """Apply every message the way the feed does: decode, then ``LocalOrderBook.on_message``."""
    books = _synced_books(workload)
    for text in workload.messages:
        message = loads(text)
        books[message["s"]].on_message(message)
    return _levels(books)


def reading(workload: Workload, loads: Callable[[str], Any]) -> Books:
    """The feed's path, plus reading the best bid and ask after every event (shown only)."""
    books = _synced_books(workload)
    for text in workload.messages:
        message = loads(text)
        book = books[message["s"]]
        book.on_message(message)
        book.best_bid()
        book.best_ask()
    return _levels(books)


def typed(workload: Workload, loads: Callable[[str], Any]) -> Books:
    """Apply every message through ``DepthUpdate.from_binance`` and ``on_update`` (shown only)."""
    from tradeflow.execution.book import DepthUpdate

    books = _synced_books(workload)
    for text in workload.messages:
        message = loads(text)
        books[message["s"]].on_update(DepthUpdate.from_binance(message))
    return _levels(books)


def _levels(books: Mapping[str, Any]) -> Books:
    out: Books = {}
    for symbol, book in books.items():
        if not book.in_sync:
            raise BenchError(f"tradeflow's {symbol} book fell out of sync ({book.state.value})")
        bids, asks = book.top(10**9)
        out[symbol] = (dict(bids), dict(asks))
    return out


def _parser() -> tuple[str, Callable[[str], Any]]:
    """Return the websocket frame parser ccxt.pro uses: orjson when importable, else json."""
    try:
        import orjson
    except ImportError:
        return "json", json.loads
    return "orjson", orjson.loads


# --- measuring --------------------------------------------------------------------------------


def measure_book(quick: bool, console: Console) -> BookBenchResult:
    """Build the workload, time every side, check they agree; return the raw result."""
    size = QUICK if quick else FULL
    console.print(f"[dim]book: building {size['steps']:,} steps of the simulator's depth streams ...[/]")
    workload = build_workload(size["steps"])
    parser_name, parse = _parser()
    _, orjson_loads = _parser()
    result = BookBenchResult(
        events=len(workload.messages),
        symbols=[s for s, *_ in SYMBOLS],
        levels_per_event=workload.levels_per_event,
        bytes_per_event=workload.bytes_per_event,
        parser=parser_name,
    )
    sides: dict[str, Callable[[], Books]] = {
        "baseline": lambda: baseline(workload),
        "tradeflow": lambda: tradeflow(workload, parse),
        "tradeflow_json": lambda: tradeflow(workload, json.loads),
        "baseline_orjson": lambda: baseline(workload, orjson_loads),
        "typed": lambda: typed(workload, parse),
        "reading": lambda: reading(workload, parse),
    }
    for name, side in sides.items():  # warm-up, and the parity check
        books = side()
        if books != workload.final:
            result.warnings.append(f"{name}: the final books differ from the venue's")
    order = list(sides)
    for run in range(size["runs"]):
        for name in order if run % 2 == 0 else reversed(order):
            gc.collect()
            start = time.perf_counter()
            sides[name]()
            getattr(result, name).append(time.perf_counter() - start)
        ours, theirs = result.events / result.tradeflow[-1], result.events / result.baseline[-1]
        console.print(
            f"[dim]book: run {run + 1}/{size['runs']}: tradeflow {ours:,.0f}/s, baseline {theirs:,.0f}/s[/]"
        )
    return result


# --- reporting --------------------------------------------------------------------------------


def _goal(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"


def tables(result: BookBenchResult) -> list[Table]:
    """Return the section's table."""
    table = Table(
        title=f"Book maintenance — parse + apply of {result.events:,} wire depthUpdate messages "
        f"({', '.join(result.symbols)}; {result.levels_per_event:.0f} levels, "
        f"{result.bytes_per_event / 1000:.1f} kB per event), one core "
        f"(goal: ≥ {EVENTS_PER_SECOND_GOAL:,.0f}/s and ≥ {BASELINE_RATIO_GOAL:g}× the baseline)",
        caption=f"medians of {len(result.tradeflow)} passes; ratio = events/s over the baseline's",
        header_style="bold",
    )
    for column in ("implementation", "parser", "events/s", "levels/s", "µs/event", "ratio"):
        table.add_column(column, justify="left" if column in ("implementation", "parser") else "right")
    base = result.rate(result.baseline)
    rows = (
        ("[bold]tradeflow: LocalOrderBook.on_message (the feed's path)[/]", result.parser, result.tradeflow),
        ("[bold]baseline: json.loads + dicts[/]", "json", result.baseline),
        ("tradeflow, same parser as the baseline", "json", result.tradeflow_json),
        ("baseline with orjson", "orjson", result.baseline_orjson),
        ("tradeflow typed path: DepthUpdate.from_binance + on_update", result.parser, result.typed),
        ("tradeflow + best bid and ask read after every event", result.parser, result.reading),
    )
    for label, parser, seconds in rows:
        if not seconds:
            continue
        rate = result.rate(seconds)
        table.add_row(
            label,
            parser,
            f"{rate:,.0f}",
            f"{rate * result.levels_per_event:,.0f}",
            f"{1e6 / rate:.1f}",
            f"{rate / base:.2f}×",
        )
    return [table]


def verdicts(result: BookBenchResult) -> list[str]:
    """Return the section's verdict line (rich markup)."""
    rate = result.rate(result.tradeflow)
    ok = rate >= EVENTS_PER_SECOND_GOAL and result.ratio >= BASELINE_RATIO_GOAL
    same_parser = result.rate(result.tradeflow_json) / result.rate(result.baseline)
    line = (
        f"Book maintenance ({result.levels_per_event:.0f} levels/event): tradeflow {rate:,.0f} events/s "
        f"({result.parser}), baseline {result.rate(result.baseline):,.0f}/s = {result.ratio:.2f}× "
        f"(goal ≥ {EVENTS_PER_SECOND_GOAL:,.0f}/s and ≥ {BASELINE_RATIO_GOAL:g}×) → {_goal(ok)}; "
        f"same parser as the baseline: {same_parser:.2f}×; reading the best bid and ask after every event: "
        f"{result.rate(result.reading):,.0f}/s."
    )
    return [line, *(f"[red]book: {warning}[/]" for warning in result.warnings)]


# --- the child process ------------------------------------------------------------------------

#: A hung child is killed after this long.
CHILD_TIMEOUT_SECONDS = 600.0


def run_in_child(quick: bool) -> BookBenchResult:
    """Run the section in a fresh ``python -m bench.book`` and return what it measured.

    Raises:
        BenchError: if the child fails or times out.
    """
    arguments = ["--quick"] if quick else []
    raw = run_section("book", arguments, CHILD_TIMEOUT_SECONDS)
    raw.pop("rates", None)
    raw.pop("ratio", None)
    return BookBenchResult.from_dict(raw)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child: measure, print, write the raw result as JSON, return the exit code."""
    description = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.book", description=description)
    parser.add_argument("--json", type=Path, required=True, help="where the raw result goes")
    parser.add_argument("--quick", action="store_true", help="3,000 steps instead of 10,000, fewer passes")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=140)
    try:
        result = measure_book(args.quick, console)
    except BenchError as error:
        print(f"benchmark invalid: {error}", file=sys.stderr)
        return 2
    for table in tables(result):
        console.print(table)
    for line in verdicts(result):
        console.print(line)
    args.json.write_text(json.dumps(result.to_json()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
