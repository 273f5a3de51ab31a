"""Section: in-process decision latency, book event → order decision, with a LightGBM champion.

What one book event costs the streaming flow's hot path: :meth:`Decider.on_book` (the book's top
levels, six order-book features, the champion's ``Booster.predict`` on a preallocated row, the
decision when one is due, the target check and the intent) and :meth:`PreTradeRisk.check` on
every intent, with the portfolio view built per event as the session builds it. Goal: p99 under
1 ms while processing at least 5,000 events/s.

The setup: 5 symbols of seeded trending random-walk minutes, 8 days warm-up with the default
feature set (77 features), a LightGBM champion with the default hyperparameters (200 trees)
trained on those days and sigmoid-calibrated, the default strategy configs, local order books of
100 levels a side kept in sync by pre-built diff-depth events (1 to 3 levels each, the top
moving with the minute's path), market rules of a typical spot venue. Accepted intents fill at
once at their price (the ledger's positions follow), so entries, exits and cut-backs happen.

Two runs:

1. **Paced**: 5,000 events/s against the wall clock, the simulated clock = the wall clock (a
   decision when a minute boundary passes, as live). Service time per event (the hot path above)
   and lateness (how long an event waited past its scheduled arrival: the loop keeping up).
2. **Unpaced, compressed minutes**: events back to back, 2,000 per simulated minute and a decision
   every minute, so the decision path (5 signals, the allocation; the correlations once a day)
   runs hundreds of times. Service time of every event, of the decision events apart, the loop's
   events/s; and apart, the closed bars (:meth:`Decider.on_bar`, 5 symbols a minute), which are
   not book events (in production one per symbol per minute, ~300,000 book events apart at
   5,000/s).

The clock is ``time.perf_counter_ns``; a few hundred untimed events warm up first. The garbage
collector runs as it comes, after ``gc.freeze()`` once the warm-up and the champion are loaded:
without it a full collection walks the ~300,000 objects that loading pandas, scikit-learn and
LightGBM leaves behind (several ms, every few thousand events). The streaming runner should do
the same after its warm-up. The machine's other load shows in the tails (p99.9, max): run it on
a quiet machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.child import run_section
from bench.workload import BenchError

#: Goals: the hot path's p99, and the event rate it must sustain.
P99_GOAL_US = 1_000.0
RATE_GOAL = 5_000

FULL = {"paced_seconds": 20.0, "events": 200_000, "trees": 200}
QUICK = {"paced_seconds": 5.0, "events": 40_000, "trees": 100}

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT")
WARM_DAYS = 8
#: Book events per simulated minute in the unpaced run (a decision every minute).
EVENTS_PER_MINUTE = 2_000
LEVELS = 100
TICK = 0.01
SEED = 20261122
WARMUP_EVENTS = 500


@dataclass
class Latency:
    """Service times of one kind of call, in microseconds."""

    name: str
    count: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float

    @classmethod
    def of(cls, name: str, nanoseconds: Sequence[int]) -> Latency:
        import numpy as np

        if not nanoseconds:
            return cls(name, 0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
        micro = np.asarray(nanoseconds, dtype=np.float64) / 1000.0
        p50, p90, p99, p999 = (float(np.percentile(micro, q)) for q in (50, 90, 99, 99.9))
        return cls(name, int(micro.size), p50, p90, p99, p999, float(micro.max()), float(micro.mean()))


@dataclass
class Run:
    """One run of the hot path."""

    name: str
    events: int
    wall_seconds: float
    events_per_second: float
    service: Latency
    decisions: Latency
    lateness: Latency | None
    bars: Latency | None
    intents: int
    accepted: int
    refused: dict[str, int]


@dataclass
class DecisionBenchResult:
    """What the section measured."""

    quick: bool
    symbols: int
    features: int
    trees: int
    book_levels: int
    warm_up_seconds: float
    training_seconds: float
    paced: Run
    unpaced: Run
    decisions_made: int
    signals: int
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionBenchResult:
        def run(item: dict[str, Any]) -> Run:
            fields = dict(item)
            for key in ("service", "decisions", "lateness", "bars"):
                if fields[key] is not None:
                    fields[key] = Latency(**fields[key])
            return Run(**fields)

        values = dict(data)
        values["paced"], values["unpaced"] = run(values["paced"]), run(values["unpaced"])
        return cls(**values)


# --- the market -------------------------------------------------------------------------------


def candles(minutes: int, start: int) -> dict[str, Any]:
    """Seeded correlated random walks with 3-hour trends, one frame of 1m candles per symbol."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    # Mostly rising 3-hour trends: the long-only champion then has something to trade.
    trend = np.repeat(rng.choice([-1.0, 1.0, 1.0, 1.0, 0.0], minutes // 180 + 1), 180)[:minutes]
    common = np.cumsum(rng.normal(0, 0.0008, minutes) + 0.0002 * trend)
    frames = {}
    for index, symbol in enumerate(SYMBOLS):
        close = 50.0 * (index + 1) * np.exp(common + np.cumsum(rng.normal(0, 0.0006, minutes)))
        open_ = np.concatenate([[close[0]], close[:-1]])
        spread = np.abs(rng.normal(0, 0.0004, minutes)) * close
        frames[symbol] = pd.DataFrame(
            {
                "timestamp": start + 60_000 * np.arange(minutes, dtype=np.int64),
                "open": open_,
                "high": np.maximum(open_, close) + spread,
                "low": np.minimum(open_, close) - spread,
                "close": close,
                "volume": rng.uniform(50, 500, minutes),
            }
        )
    return frames


class BookStream:
    """Pre-built diff-depth events that keep a 100-level book moving along a price path."""

    def __init__(self, symbol: str, first_price: float, seed: int) -> None:
        import random

        from tradeflow.execution.book import DepthSnapshot, LocalOrderBook

        self.symbol = symbol
        self.random = random.Random(seed)
        self.bid = math.floor(first_price / TICK) * TICK
        self.update_id = 100
        bids = tuple((self._price(self.bid, -i), self._quantity()) for i in range(LEVELS))
        asks = tuple((self._price(self.bid, i + 1), self._quantity()) for i in range(LEVELS))
        self.book = LocalOrderBook(symbol, stale_after_ms=10**12)
        self.book.on_snapshot(DepthSnapshot(self.update_id, bids, asks))
        self.book.on_update(self._update(0, (), ()))
        if not self.book.in_sync:
            raise BenchError(f"the {symbol} book did not sync")

    @staticmethod
    def _price(bid: float, ticks: int) -> float:
        return round(bid + ticks * TICK, 2)

    def _quantity(self) -> float:
        return round(self.random.uniform(0.5, 20.0), 3)

    def _update(
        self, time_ms: int, bids: tuple[tuple[float, float], ...], asks: tuple[tuple[float, float], ...]
    ) -> Any:
        from tradeflow.execution.book import DepthUpdate

        self.update_id += 1
        return DepthUpdate(self.update_id, self.update_id, time_ms, bids, asks, None)

    def next(self, price: float, time_ms: int) -> Any:
        """Return the diff that moves the book's top to ``price`` and touches 1-3 levels."""
        new_bid = math.floor(price / TICK) * TICK
        bids: dict[float, float] = {}
        asks: dict[float, float] = {}
        moves = round((new_bid - self.bid) / TICK)
        # The book stays LEVELS deep on each side, as a venue's published depth does: a level that
        # falls out of the depth is removed.
        if moves > 0:  # the bid rises: asks at or below it go, new bids come, the deepest bids go
            for tick in range(1, moves + 1):
                asks[self._price(self.bid, tick)] = 0.0
                bids[self._price(self.bid, tick)] = self._quantity()
                bids[self._price(self.bid, tick - LEVELS)] = 0.0
                asks[self._price(self.bid, tick + LEVELS)] = self._quantity()
        elif moves < 0:
            for tick in range(0, moves, -1):
                bids[self._price(self.bid, tick)] = 0.0
                asks[self._price(self.bid, tick)] = self._quantity()
                asks[self._price(self.bid, tick + LEVELS)] = 0.0
                bids[self._price(self.bid, tick - LEVELS)] = self._quantity()
        self.bid = new_bid
        for _ in range(self.random.randint(1, 3)):
            ticks = self.random.randint(0, 9)
            if self.random.random() < 0.5:
                bids[self._price(new_bid, -ticks)] = self._quantity()
            else:
                asks[self._price(new_bid, ticks + 1)] = self._quantity()
        return self._update(time_ms, tuple(bids.items()), tuple(asks.items()))


# --- the parts --------------------------------------------------------------------------------


def champion(frames: dict[str, Any], spec: Any, trees: int) -> Any:
    """Train the LightGBM champion (default hyperparameters, ``trees`` trees) on the warm-up days."""
    import numpy as np

    from models.estimators import fit_calibrated
    from tradeflow.features.build import build_feature_matrix, feature_columns

    matrix = build_feature_matrix(frames, spec)
    labels = []
    for symbol in sorted(frames):
        close = frames[symbol]["close"].to_numpy()
        ahead = np.full(close.size, np.nan)
        ahead[:-15] = close[15:] / close[:-15] - 1.0
        labels.append(ahead)
    change = np.concatenate(labels)  # the matrix is sorted by symbol, then time, as the frames are
    keep = ~np.isnan(change) & (matrix["timestamp"].to_numpy() >= matrix["timestamp"].min() + 2 * 86_400_000)
    rows = matrix.loc[keep, feature_columns(matrix)]
    return fit_calibrated("lightgbm", rows, (change[keep] > 0).astype(int), params={"n_estimators": trees})


def build(trees: int, stream_minutes: int, console: Console) -> tuple[Any, dict[str, Any], int, float, float]:
    """Return a warmed-up decider, the streamed minutes' candles, the first streamed minute, timings."""
    from tradeflow.execution.decider import Decider, DeciderConfig
    from tradeflow.execution.scoring import scorer_for
    from tradeflow.features.spec import FeatureSpec
    from tradeflow.strategy.allocation import AllocationLimits, MarketRules
    from tradeflow.strategy.exits import ExitConfig
    from tradeflow.strategy.protections import ProtectionConfig
    from tradeflow.strategy.signals import SignalConfig

    start = 1_790_000_000_000 - 1_790_000_000_000 % 86_400_000
    warm_minutes = WARM_DAYS * 1440
    frames = candles(warm_minutes + stream_minutes, start)
    warm = {s: f.iloc[:warm_minutes].reset_index(drop=True) for s, f in frames.items()}
    spec = FeatureSpec()
    started = time.perf_counter()
    model = champion(warm, spec, trees)
    training = time.perf_counter() - started
    console.print(
        f"  champion: LightGBM, {trees} trees, {len(model.feature_names)} features, "
        f"calibrated; trained in {training:.1f} s"
    )
    rules = {
        symbol: MarketRules(min_notional=10.0, quantity_step=0.001, price_step=TICK) for symbol in SYMBOLS
    }
    # Low thresholds and no volume-profile filter: the champion must trade for the intent and risk
    # path to be measured (this measures latency, not a strategy).
    signal = SignalConfig(
        long_threshold=0.3,
        short_threshold=0.2,
        long_threshold_bounds=(0.25, 0.5),
        short_threshold_bounds=(0.1, 0.22),
        cooldown_minutes=5,
        families=frozenset({"ml", "multi_timeframe", "regime", "adaptive_thresholds"}),
    )
    decider = Decider(
        spec,
        signal,
        AllocationLimits(),
        ExitConfig(),
        ProtectionConfig(),
        rules,
        scorer_for(model),
        DeciderConfig(decision_minutes=1, correlation_window_days=7.0),
        model_version="bench",
    )
    started = time.perf_counter()
    for symbol, frame in warm.items():
        decider.warm_up(symbol, frame)
    warm_up = time.perf_counter() - started
    console.print(f"  warm-up: {len(SYMBOLS)} × {warm_minutes:,} minutes in {warm_up:.1f} s")
    streamed = {s: f.iloc[warm_minutes:].reset_index(drop=True) for s, f in frames.items()}
    return decider, streamed, start + warm_minutes * 60_000, warm_up, training


class Ledger:
    """The ledger stand-in: accepted intents fill at once at their price."""

    def __init__(self, decider: Any) -> None:
        self.decider = decider
        self.cash = 100_000.0
        self.positions = dict.fromkeys(SYMBOLS, 0.0)
        self.marks = {symbol: decider.features.close(symbol) for symbol in SYMBOLS}

    def view(self) -> Any:
        from tradeflow.execution.risk import PortfolioView

        equity = self.cash + sum(q * self.marks[s] for s, q in self.positions.items() if q)
        return PortfolioView(equity, 100_000.0, self.positions, self.marks)

    def fill(self, intent: Any, now: int) -> None:
        self.positions[intent.symbol] += intent.side * intent.quantity
        self.cash -= intent.side * intent.quantity * intent.price
        self.decider.on_fill(intent.symbol, intent.side, intent.quantity, intent.price, now)


def run(
    name: str,
    decider: Any,
    streamed: dict[str, Any],
    first_minute: int,
    events: int,
    rate: float | None,
) -> Run:
    """Feed ``events`` book events (and the closed bars) through the hot path; time it."""
    from tradeflow.execution.bars import Bar
    from tradeflow.execution.risk import PreTradeRisk, RiskLimits

    clock = time.perf_counter_ns
    risk = PreTradeRisk(
        RiskLimits(
            max_order_notional=100_000.0, max_position_notional=100_000.0, max_orders_per_minute=10_000
        )
    )
    ledger = Ledger(decider)
    streams = {s: BookStream(s, float(streamed[s]["open"].iloc[0]), SEED + i) for i, s in enumerate(SYMBOLS)}
    arrays = {s: (f["open"].to_numpy(), f["close"].to_numpy()) for s, f in streamed.items()}
    per_minute = EVENTS_PER_MINUTE if rate is None else int(rate * 60)
    step_ms = 60_000 / per_minute
    minutes = len(next(iter(streamed.values())))
    # Pre-build every diff, so building them is not timed.
    updates = []
    for index in range(events + WARMUP_EVENTS):
        symbol = SYMBOLS[index % len(SYMBOLS)]
        minute = min(int(index * step_ms // 60_000), minutes - 1)
        fraction = (index * step_ms % 60_000) / 60_000
        open_, close = arrays[symbol]
        price = open_[minute] + (close[minute] - open_[minute]) * fraction
        updates.append((symbol, minute, streams[symbol].next(price, first_minute + int(index * step_ms))))
    service: list[int] = []
    decisions: list[int] = []
    lateness: list[int] = []
    bars: list[int] = []
    intents = accepted = 0
    refused: dict[str, int] = {}
    fed_minute = -1
    gc.collect()
    gc.freeze()  # the pre-built events are input, not the system: keep them out of the collections
    started = clock()
    schedule = started
    period = 0 if rate is None else round(1e9 / rate)
    for index, (symbol, minute, update) in enumerate(updates):
        now = first_minute + int(index * step_ms)
        if minute > fed_minute + 1:  # the minute before closed: its bars
            closed = minute - 1
            for name_ in SYMBOLS:
                row = streamed[name_].iloc[closed]
                bar = Bar(first_minute + closed * 60_000, row.open, row.high, row.low, row.close, row.volume)
                began = clock()
                decider.on_bar(name_, bar)
                if index >= WARMUP_EVENTS:
                    bars.append(clock() - began)
                ledger.marks[name_] = float(row.close)
            fed_minute = closed
        if period:
            schedule += period
            while clock() < schedule:
                pass
        stream = streams[symbol]
        stream.book.on_update(update)
        decided_before = decider._decided
        began = clock()
        portfolio = ledger.view()
        proposed = decider.on_book(symbol, stream.book, now, portfolio, {})
        outcomes = []
        for intent in proposed:
            outcomes.append(risk.check(intent, decider.market_view(symbol, now), portfolio))
        ended = clock()
        if index < WARMUP_EVENTS:
            if index == WARMUP_EVENTS - 1:
                started = clock()
                schedule = started
            continue
        service.append(ended - began)
        if period:
            lateness.append(max(0, began - schedule))
        if decider._decided != decided_before:
            decisions.append(ended - began)
        for intent, outcome in zip(proposed, outcomes, strict=True):
            intents += 1
            if outcome.accepted:
                accepted += 1
                risk.record_sent(now)
                ledger.fill(intent, now)
            else:
                refused[outcome.check] = refused.get(outcome.check, 0) + 1
    wall = (clock() - started) / 1e9
    return Run(
        name=name,
        events=len(service),
        wall_seconds=wall,
        events_per_second=len(service) / wall if wall else math.nan,
        service=Latency.of("book event → decision (incl. risk)", service),
        decisions=Latency.of("events that took the portfolio decision", decisions),
        lateness=Latency.of("lateness past the scheduled arrival", lateness) if period else None,
        bars=Latency.of("closed bar (per symbol)", bars) if bars else None,
        intents=intents,
        accepted=accepted,
        refused=refused,
    )


def measure_decision(quick: bool, console: Console) -> DecisionBenchResult:
    """Run the section and return its measurements."""
    repeats = QUICK if quick else FULL
    paced_events = int(repeats["paced_seconds"] * RATE_GOAL)
    unpaced_minutes = repeats["events"] // EVENTS_PER_MINUTE + 2
    console.print(
        f"Decision latency: {len(SYMBOLS)} symbols, default feature set, {LEVELS}-level books; "
        f"paced {paced_events:,} events at {RATE_GOAL:,}/s, then {repeats['events']:,} unpaced …"
    )
    paced_minutes = int(repeats["paced_seconds"] // 60) + 2
    decider, streamed, first, warm_up, training = build(
        repeats["trees"], paced_minutes + unpaced_minutes, console
    )
    gc.collect()
    gc.freeze()  # what the runner should do after its warm-up (see the module docstring)
    paced = run("paced", decider, streamed, first, paced_events, RATE_GOAL)
    console.print(
        f"  paced: p50 {paced.service.p50_us:.0f} µs, p99 {paced.service.p99_us:.0f} µs, "
        f"{paced.events_per_second:,.0f} events/s"
    )
    # The unpaced run goes on from the minute after the paced run's last one.
    rest = {s: f.iloc[paced_minutes:].reset_index(drop=True) for s, f in streamed.items()}
    unpaced = run("unpaced", decider, rest, first + paced_minutes * 60_000, repeats["events"], None)
    console.print(
        f"  unpaced: p50 {unpaced.service.p50_us:.0f} µs, p99 {unpaced.service.p99_us:.0f} µs, "
        f"{unpaced.events_per_second:,.0f} events/s, {unpaced.decisions.count} decisions"
    )
    log = list(decider.log)
    warnings = []
    if unpaced.intents == 0:
        warnings.append("no intent was proposed: the intent and risk path went unmeasured")
    if paced.events_per_second < RATE_GOAL * 0.99:
        warnings.append(f"the paced run fell behind: {paced.events_per_second:,.0f} events/s")
    return DecisionBenchResult(
        quick=quick,
        symbols=len(SYMBOLS),
        features=len(decider.scorer.feature_names) if decider.scorer is not None else 0,
        trees=repeats["trees"],
        book_levels=LEVELS,
        warm_up_seconds=warm_up,
        training_seconds=training,
        paced=paced,
        unpaced=unpaced,
        decisions_made=sum(1 for d in log if d.kind in ("no_signal", "signal")),
        signals=sum(1 for d in log if d.kind == "signal"),
        warnings=warnings,
    )


# --- the report -------------------------------------------------------------------------------


def _goal(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"


def tables(result: DecisionBenchResult) -> list[Table]:
    """Return the section's table: one row per measured kind of call."""
    table = Table(
        title=f"Decision latency — book event → order decision incl. PreTradeRisk.check, "
        f"{result.symbols} symbols, LightGBM champion ({result.trees} trees, {result.features} features), "
        f"{result.book_levels}-level books (goal: p99 < {P99_GOAL_US:,.0f} µs at ≥ {RATE_GOAL:,} events/s)",
        caption="paced: 5,000 events/s on the wall clock, the simulated clock = the wall clock; unpaced: "
        f"back to back, {EVENTS_PER_MINUTE:,} events per simulated minute and a portfolio decision every "
        "minute; bars are not book events (timed apart)",
        header_style="bold",
    )
    for column in ("run", "what", "count", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "events/s"):
        table.add_column(column, justify="left" if column in ("run", "what") else "right")
    for item in (result.paced, result.unpaced):
        rows = [item.service, item.decisions, item.lateness, item.bars]
        for index, latency in enumerate(row for row in rows if row is not None and row.count):
            table.add_row(
                item.name if index == 0 else "",
                latency.name,
                f"{latency.count:,}",
                f"[bold]{latency.p50_us:,.1f}[/]",
                f"[bold]{latency.p99_us:,.1f}[/]",
                f"{latency.p999_us:,.1f}",
                f"{latency.max_us:,.0f}",
                f"{item.events_per_second:,.0f}" if index == 0 else "",
            )
    return [table]


def verdicts(result: DecisionBenchResult) -> list[str]:
    """Return the section's verdict lines (rich markup)."""
    lines = []
    for item in (result.paced, result.unpaced):
        # Paced, the rate is the schedule's: it kept up if it came within 1 % of it.
        rate = RATE_GOAL * (0.99 if item.lateness is not None else 1.0)
        ok = item.service.p99_us < P99_GOAL_US and item.events_per_second >= rate
        lines.append(
            f"Decision latency ({item.name}, {item.events:,} events): p50 {item.service.p50_us:,.1f} µs, "
            f"p99 {item.service.p99_us:,.1f} µs, max {item.service.max_us:,.0f} µs at "
            f"{item.events_per_second:,.0f} events/s (goal p99 < {P99_GOAL_US:,.0f} µs at ≥ {RATE_GOAL:,}/s)"
            " → "
            f"{_goal(ok)}; {item.intents} intents ({item.accepted} accepted), "
            f"{item.decisions.count} portfolio decisions (p50 {item.decisions.p50_us:,.0f} µs, "
            f"max {item.decisions.max_us:,.0f} µs)."
        )
    return lines


# --- the child process ------------------------------------------------------------------------

CHILD_TIMEOUT_SECONDS = 600.0


def run_in_child(quick: bool) -> DecisionBenchResult:
    """Run the section in a fresh ``python -m bench.decision`` and return what it measured.

    Raises:
        BenchError: if the child fails or times out.
    """
    arguments = ["--quick"] if quick else []
    return DecisionBenchResult.from_dict(run_section("decision", arguments, CHILD_TIMEOUT_SECONDS))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child: measure, print, write the raw result as JSON, return the exit code."""
    description = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.decision", description=description)
    parser.add_argument("--json", type=Path, required=True, help="where the raw result goes")
    parser.add_argument("--quick", action="store_true", help="5 s paced, 40,000 unpaced events, 100 trees")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=140)
    try:
        result = measure_decision(args.quick, console)
    except BenchError as error:
        print(f"benchmark invalid: {error}", file=sys.stderr)
        return 2
    for table in tables(result):
        console.print(table)
    for line in verdicts(result):
        console.print(line)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    args.json.write_text(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
