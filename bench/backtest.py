"""Section 7: the backtester's signals mode next to vectorbt, a parameter sweep, Monte Carlo.

Three questions:

1. **Side by side.** The same moving-average crossover signals (fast 10, slow 50) on 100,000
   seeded random-walk 1-minute bars, and on a recorded Binance 1m file when the real data is
   there: ``tradeflow.backtest.engine.run_signals`` against vectorbt's warm
   ``Portfolio.from_signals``. Goal: tradeflow no slower than vectorbt (ratio <= 1). Both must
   produce the same trades (count, entry and exit times, prices, fees) and the same final equity
   to 1e-9 relative, or the section warns.
2. **A parameter sweep.** A 5 x 4 grid of (fast, slow) crossovers on the same bars: one
   ``run_signals`` per combination, backtests per second; for reference one warm
   ``from_signals`` per combination, and vectorbt's own way (all combinations as columns of one
   call).
3. **Monte Carlo.** ``tradeflow.backtest.montecarlo.monte_carlo`` with 10,000 scenarios of each
   method on 300 trade returns and 2,160 hourly bar returns (90 days): its wall time.

Fairness rules, each for a reason:

- Both sides get their inputs ready before the clock starts: tradeflow a ``MarketData`` (its
  ``from_candles`` is timed apart, shown only) and boolean arrays; vectorbt pandas objects with
  the signals already shifted one bar (tradeflow fills a signal at the next bar's open, vectorbt
  at its own bar's ``price``).
- vectorbt gets its fastest index: the UTC open times as a tz-naive ``DatetimeIndex``. On a
  tz-aware one its wrappers turn the index into ``Timestamp`` objects and ``from_signals`` is
  several times slower; that is shown apart, not used for the goal.
- Warm means compiled: vectorbt's simulation loop is a numba function outside numba's disk
  cache, so its first call in a process compiles it (seconds). One untimed call of each side
  comes first; the first calls are reported apart.
- The two sides alternate and swap order every repetition; ``gc.collect()`` runs before every
  timed call; the medians are compared. In the sweep each backtest is timed that way and the
  grid's times are summed; the same grid in a plain loop (the garbage collector runs when it
  runs) is shown as well.
- What a call returns differs: ``run_signals`` builds its trades, fills and equity curve
  frames; ``from_signals`` builds order records, and vectorbt derives trades and the value curve
  on access. vectorbt with ``pf.trades.records`` and ``pf.value()`` is shown as well.
- The section runs in a child process of its own (``python -m bench.backtest``): vectorbt's
  import and numba's compiles stay out of the parent.
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
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.child import run_section
from bench.workload import REPO, BenchError, base_settings

#: tradeflow's run_signals takes at most this multiple of vectorbt's warm from_signals.
BACKTEST_GOAL = 1.0
#: Parity tolerance (relative) of prices, fees and the final equity.
PARITY_RTOL = 1e-9

#: The full run and --quick: random-walk bars, timed repetitions of the side-by-side calls and of
#: the whole sweep, Monte Carlo scenarios and timed Monte Carlo runs.
FULL = {"bars": 100_000, "runs": 9, "sweep_runs": 3, "scenarios": 10_000, "mc_runs": 3}
QUICK = {"bars": 20_000, "runs": 5, "sweep_runs": 1, "scenarios": 10_000, "mc_runs": 1}

SEED = 20261122
#: The side-by-side crossover: many trades, so the per-trade work shows.
FAST, SLOW = 10, 50
#: The sweep's grid: 5 x 4 = 20 (fast, slow) combinations.
SWEEP_FAST = (5, 10, 20, 40, 60)
SWEEP_SLOW = (120, 240, 480, 960)
FEE = 0.001
EQUITY = 100_000.0
#: Recorded 1m candle files under the real data folder, the first one present is used.
REAL_FILES = ("binance/UNKNOWN-BTC_1m.parquet", "binance/XRP-ETH_1m.parquet")
#: Monte Carlo inputs: trade returns, hourly bar returns (90 days), scenarios' block length.
MC_TRADES, MC_BARS, MC_BLOCK = 300, 90 * 24, 24

_PACKAGES = ("vectorbt", "numba", "numpy", "pandas")
_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_MINUTE_MS = 60_000


# --- results ----------------------------------------------------------------------------------


@dataclass
class Comparison:
    """One data set, both backtesters, the same signals."""

    name: str
    source: str
    bars: int
    holes: int  # missing minutes inside the file's span (the grid is its own timestamps)
    fast: int
    slow: int
    signals: int  # entry and exit signals given
    market_seconds: float  # MarketData.from_candles, not in tradeflow's times
    tradeflow_first: float
    vectorbt_first: float  # includes numba's compile of vectorbt's loop in this process
    tradeflow: list[float]
    tradeflow_engine: list[float]  # BacktestResult.seconds: the simulation without the call's set-up
    vectorbt: list[float]
    vectorbt_full: list[float]  # from_signals + pf.trades.records + pf.value()
    vectorbt_aware: list[float]  # from_signals on a tz-aware (UTC) index
    parity: dict[str, Any]

    @property
    def tradeflow_seconds(self) -> float:
        """Return tradeflow's median seconds."""
        return statistics.median(self.tradeflow)

    @property
    def vectorbt_seconds(self) -> float:
        """Return vectorbt's median seconds (from_signals alone)."""
        return statistics.median(self.vectorbt)

    @property
    def ratio(self) -> float:
        """Return tradeflow / vectorbt at the medians (the goal's ratio)."""
        return self.tradeflow_seconds / self.vectorbt_seconds

    @property
    def full_ratio(self) -> float:
        """Return tradeflow / (vectorbt with trades and value) at the medians."""
        return self.tradeflow_seconds / statistics.median(self.vectorbt_full)

    @property
    def aware_ratio(self) -> float:
        """Return tradeflow / (vectorbt on a tz-aware index) at the medians."""
        return self.tradeflow_seconds / statistics.median(self.vectorbt_aware)


@dataclass
class Sweep:
    """The (fast, slow) grid on one set of bars; seconds are per whole grid."""

    bars: int
    combos: list[list[int]]
    tradeflow: list[float]
    vectorbt: list[float]  # one from_signals per combination
    vectorbt_columns: list[float]  # one from_signals, the combinations as columns
    tradeflow_loop: list[float]  # the same backtests in a plain loop (no gc.collect() between them)
    vectorbt_loop: list[float]
    vectorbt_columns_first: float
    trades: list[int]  # closed trades per combination (tradeflow's)
    mismatches: list[str]

    def rate(self, seconds: list[float]) -> float:
        """Return backtests per second at the median of ``seconds``."""
        return len(self.combos) / statistics.median(seconds)


@dataclass
class MonteCarloTimes:
    """``monte_carlo`` wall times."""

    scenarios: int
    trades: int
    bars: int
    block_length: int
    seconds: list[float]
    engine_seconds: list[float]  # MonteCarloResult.seconds

    @property
    def median(self) -> float:
        """Return the median wall seconds."""
        return statistics.median(self.seconds)


@dataclass
class BacktestBenchResult:
    """Everything section 7 measured."""

    quick: bool
    repeats: dict[str, int]
    vectorbt_import_seconds: float
    comparisons: list[Comparison]
    sweep: Sweep
    monte_carlo: MonteCarloTimes
    real_data: str  # what was used, or why not
    packages: dict[str, str | None]
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestBenchResult:
        """Return the result that ``asdict`` turned into ``data`` (as the child process sends it)."""
        fields = dict(data)
        fields["comparisons"] = [Comparison(**c) for c in fields["comparisons"]]
        fields["sweep"] = Sweep(**fields["sweep"])
        fields["monte_carlo"] = MonteCarloTimes(**fields["monte_carlo"])
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        """Return plain data for the results file."""
        data = asdict(self)
        for item, raw in zip(self.comparisons, data["comparisons"], strict=True):
            raw.update(
                tradeflow_median_seconds=item.tradeflow_seconds,
                vectorbt_median_seconds=item.vectorbt_seconds,
                ratio=item.ratio,
                ratio_vs_vectorbt_with_trades_and_value=item.full_ratio,
                ratio_vs_vectorbt_tz_aware_index=item.aware_ratio,
                passed=item.ratio <= BACKTEST_GOAL,
            )
        sweep = self.sweep
        data["sweep"].update(
            tradeflow_backtests_per_second=sweep.rate(sweep.tradeflow),
            vectorbt_backtests_per_second=sweep.rate(sweep.vectorbt),
            vectorbt_columns_backtests_per_second=sweep.rate(sweep.vectorbt_columns),
            tradeflow_loop_backtests_per_second=sweep.rate(sweep.tradeflow_loop),
            vectorbt_loop_backtests_per_second=sweep.rate(sweep.vectorbt_loop),
        )
        data["monte_carlo"]["median_seconds"] = self.monte_carlo.median
        data["goal"] = {"tradeflow_over_vectorbt_max": BACKTEST_GOAL, "parity_rtol": PARITY_RTOL}
        return data


# --- data and signals -------------------------------------------------------------------------


def random_walk(bars: int, seed: int = SEED, start: float = 30_000.0) -> Any:
    """Return seeded 1-minute candles on a full grid: a log-normal walk, opens near the last close."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, 0.001, bars)))
    open_ = np.concatenate([[start], close[:-1]]) * np.exp(rng.normal(0.0, 0.0002, bars))
    wick = np.abs(rng.normal(0.0, 0.0005, bars))
    return pd.DataFrame({
        "timestamp": _START_MS + _MINUTE_MS * np.arange(bars, dtype=np.int64),
        "open": open_, "high": np.maximum(open_, close) * (1 + wick),
        "low": np.minimum(open_, close) * (1 - wick), "close": close, "volume": rng.uniform(1.0, 50.0, bars),
    })  # fmt: skip


def crossover(close: Any, fast: int, slow: int) -> tuple[Any, Any]:
    """Return (entries, exits): the fast simple average crosses above the slow one, and back.

    An entry and an exit never fall on the same bar (the two backtesters resolve that
    differently).
    """
    import numpy as np
    import pandas as pd

    series = pd.Series(close)
    above = (series.rolling(fast).mean() > series.rolling(slow).mean()).to_numpy()
    before = np.concatenate([[False], above[:-1]])
    return above & ~before, ~above & before


def real_candles() -> tuple[str, Any | None]:
    """Return (what was used or why not, the candles): the first of :data:`REAL_FILES` present."""
    import pandas as pd

    folder = Path(base_settings().real_data_dir)
    folder = folder if folder.is_absolute() else (REPO / folder).resolve()
    if not (folder / "MANIFEST.json").is_file():
        return f"real data not found at {folder} (set TRADEFLOW_REAL_DATA_DIR)", None
    for name in REAL_FILES:
        path = folder / name
        if path.is_file():
            frame = pd.read_parquet(path)
            frame["timestamp"] = frame["timestamp"].astype("int64")
            return name, frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return f"none of {', '.join(REAL_FILES)} under {folder}", None


class Inputs:
    """One data set's inputs for both sides, built before any clock starts."""

    def __init__(self, candles: Any, fast: int, slow: int) -> None:
        import numpy as np
        import pandas as pd

        from tradeflow.backtest.costs import CostModel
        from tradeflow.backtest.engine import MarketData

        started = time.perf_counter()
        self.market = MarketData.from_candles({"PAIR": candles})
        self.market_seconds = time.perf_counter() - started
        self.costs = {
            "PAIR": CostModel(taker_fee=FEE, maker_fee=FEE, half_spread=0.0, impact_coefficient=0.0)
        }
        # UTC open times as a tz-naive DatetimeIndex: vectorbt is several times slower on a
        # tz-aware one (its wrappers turn the index into Timestamp objects); that is shown apart.
        self.index = pd.to_datetime(self.market.times, unit="ms")
        self.close = pd.Series(self.market.close[0], index=self.index)
        self.open = pd.Series(self.market.open[0], index=self.index)
        aware = self.index.tz_localize("UTC")
        self.aware = (self.close.set_axis(aware), self.open.set_axis(aware))
        self.entries, self.exits = crossover(self.market.close[0], fast, slow)
        self.shifted = self.shift(self.entries, self.exits)
        self.aware_shifted = tuple(side.set_axis(aware) for side in self.shifted)
        if np.any(self.entries & self.exits):
            raise BenchError("an entry and an exit on one bar: the two backtesters resolve that differently")

    def shift(self, entries: Any, exits: Any) -> tuple[Any, Any]:
        """Return the signals as vectorbt gets them: pandas on the index, one bar later."""
        import pandas as pd

        frame = pd.Series if entries.ndim == 1 else pd.DataFrame
        index = self.index

        def shifted(values: Any) -> Any:
            return frame(values.T if values.ndim == 2 else values, index=index).shift(1, fill_value=False)

        return shifted(entries), shifted(exits)

    def tradeflow(self, entries: Any = None, exits: Any = None) -> Any:
        """Run ``run_signals`` (with this set's signals unless given)."""
        from tradeflow.backtest.engine import run_signals

        entries = self.entries if entries is None else entries
        exits = self.exits if exits is None else exits
        return run_signals(self.market, entries[None, :], exits[None, :], self.costs)

    def vectorbt(self, shifted: tuple[Any, Any] | None = None, close: Any = None, price: Any = None) -> Any:
        """Run vectorbt's ``from_signals`` on already shifted signals."""
        import vectorbt as vbt

        entries, exits = self.shifted if shifted is None else shifted
        return vbt.Portfolio.from_signals(
            close=self.close if close is None else close,
            entries=entries,
            exits=exits,
            price=self.open if price is None else price,
            fees=FEE,
            init_cash=EQUITY,
            direction="longonly",
            accumulate=False,
            freq="1min",
        )


def parity(ours: Any, pf: Any) -> dict[str, Any]:
    """Return how far tradeflow's trades and final equity are from vectorbt's (column 0 / one column)."""
    import numpy as np
    import pandas as pd

    records = pf.trades.records_readable
    if "Column" in records and records["Column"].nunique() > 1:
        raise BenchError("parity() compares one column")
    closed = records[records["Status"] == "Closed"]
    trades = ours.trades
    times = {
        "entry": pd.DatetimeIndex(closed["Entry Timestamp"]).as_unit("ms").asi8,
        "exit": pd.DatetimeIndex(closed["Exit Timestamp"]).as_unit("ms").asi8,
    }
    same_count = len(trades) == len(closed)

    def worst(mine: Any, theirs: Any) -> float:
        mine, theirs = np.asarray(mine, float), np.asarray(theirs, float)
        if not same_count or mine.size == 0:
            return 0.0 if same_count else float("inf")
        return float(np.max(np.abs(mine - theirs) / np.abs(theirs)))

    times_equal = same_count and all(
        np.array_equal(trades[f"{side}_time"].to_numpy(np.int64), times[side]) for side in ("entry", "exit")
    )
    final_ours = float(ours.equity["equity"].iloc[-1])
    final_theirs = float(np.sum(pf.final_value()))
    out = {
        "trades_tradeflow": len(trades),
        "trades_vectorbt": len(closed),
        "open_tradeflow": int(len(ours.fills) % 2),
        "open_vectorbt": int((records["Status"] == "Open").sum()),
        "times_equal": bool(times_equal),
        "worst_price_rel": max(
            worst(trades["entry_price"], closed["Avg Entry Price"]),
            worst(trades["exit_price"], closed["Avg Exit Price"]),
        ),
        "worst_fee_rel": worst(trades["fees"], closed["Entry Fees"] + closed["Exit Fees"]),
        "final_tradeflow": final_ours,
        "final_vectorbt": final_theirs,
        "final_rel": abs(final_ours - final_theirs) / abs(final_theirs),
    }
    out["equal"] = bool(
        same_count
        and times_equal
        and out["open_tradeflow"] == out["open_vectorbt"]
        and out["worst_price_rel"] <= PARITY_RTOL
        and out["worst_fee_rel"] <= PARITY_RTOL
        and out["final_rel"] <= PARITY_RTOL
    )
    return out


# --- 1. side by side --------------------------------------------------------------------------


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def compare(name: str, source: str, candles: Any, runs: int, console: Console) -> Comparison:
    """Time both sides on one data set, alternating; check that they agree."""
    import numpy as np

    data = Inputs(candles, FAST, SLOW)
    stamps = data.market.times
    holes = int(((stamps[-1] - stamps[0]) // _MINUTE_MS + 1) - stamps.size)
    tradeflow_first, ours = _timed(data.tradeflow)
    vectorbt_first, pf = _timed(data.vectorbt)
    check = parity(ours, pf)
    times: dict[str, list[float]] = {
        k: [] for k in ("tradeflow", "engine", "vectorbt", "vectorbt_full", "aware")
    }

    def run_ours() -> None:
        seconds, result = _timed(data.tradeflow)
        times["tradeflow"].append(seconds)
        times["engine"].append(result.seconds)

    def run_theirs() -> None:
        times["vectorbt"].append(_timed(data.vectorbt)[0])

    def run_theirs_full() -> None:
        def call() -> None:
            portfolio = data.vectorbt()
            _ = portfolio.trades.records, portfolio.value()

        times["vectorbt_full"].append(_timed(call)[0])

    def run_theirs_aware() -> None:
        close, price = data.aware
        times["aware"].append(_timed(lambda: data.vectorbt(data.aware_shifted, close, price))[0])

    run_theirs_full()  # untimed: value() and trades compile on their first call
    run_theirs_aware()
    times["vectorbt_full"].clear()
    times["aware"].clear()
    sides = [run_ours, run_theirs, run_theirs_full, run_theirs_aware]
    for rep in range(runs):
        for call in sides if rep % 2 == 0 else sides[::-1]:
            call()
    item = Comparison(
        name=name,
        source=source,
        bars=int(stamps.size),
        holes=holes,
        fast=FAST,
        slow=SLOW,
        signals=int(np.sum(data.entries) + np.sum(data.exits)),
        market_seconds=data.market_seconds,
        tradeflow_first=tradeflow_first,
        vectorbt_first=vectorbt_first,
        tradeflow=times["tradeflow"],
        tradeflow_engine=times["engine"],
        vectorbt=times["vectorbt"],
        vectorbt_full=times["vectorbt_full"],
        vectorbt_aware=times["aware"],
        parity=check,
    )
    console.print(
        f"  {name}: {item.bars:,} bars, {check['trades_tradeflow']:,} trades; tradeflow "
        f"{item.tradeflow_seconds * 1000:.1f} ms, vectorbt {item.vectorbt_seconds * 1000:.1f} ms "
        f"→ {item.ratio:.2f}×; parity {'equal' if check['equal'] else 'DIFFERENT'} "
        f"(final equity {check['final_tradeflow']:,.2f} vs {check['final_vectorbt']:,.2f})"
    )
    return item


# --- 2. the sweep -----------------------------------------------------------------------------


def sweep(candles: Any, runs: int, console: Console) -> Sweep:
    """Backtest every (fast, slow) of the grid with each side; median seconds of the whole grid."""
    import numpy as np
    import pandas as pd

    data = Inputs(candles, FAST, SLOW)
    combos = [(f, s) for f in SWEEP_FAST for s in SWEEP_SLOW]
    signals = [crossover(data.market.close[0], f, s) for f, s in combos]
    shifted = [data.shift(e, x) for e, x in signals]
    columns = pd.MultiIndex.from_tuples(combos, names=["fast", "slow"])
    wide = [
        pd.DataFrame(np.stack(side, axis=1), index=data.index, columns=columns)
        for side in zip(*signals, strict=True)
    ]
    wide_shifted = (wide[0].shift(1, fill_value=False), wide[1].shift(1, fill_value=False))

    mismatches, trades = [], []
    for (fast, slow), (entries, exits), given in zip(combos, signals, shifted, strict=True):
        check = parity(data.tradeflow(entries, exits), data.vectorbt(given))  # untimed: first calls, parity
        trades.append(check["trades_tradeflow"])
        if not check["equal"]:
            mismatches.append(f"({fast}, {slow}): {check}")
    first, pf = _timed(lambda: data.vectorbt(wide_shifted))
    finals = np.asarray(pf.final_value())
    ours_finals = [float(data.tradeflow(e, x).equity["equity"].iloc[-1]) for e, x in signals]
    if not np.allclose(finals, ours_finals, rtol=PARITY_RTOL, atol=0):
        mismatches.append("vectorbt's one-call sweep (columns) ends on other final equities")

    times: dict[str, list[float]] = {k: [] for k in ("tradeflow", "vectorbt", "columns", "loop", "vloop")}

    def run_ours() -> None:  # each backtest timed on its own, after a gc.collect()
        times["tradeflow"].append(sum(_timed(lambda e=e, x=x: data.tradeflow(e, x))[0] for e, x in signals))

    def run_theirs() -> None:
        times["vectorbt"].append(sum(_timed(lambda g=g: data.vectorbt(g))[0] for g in shifted))

    def run_columns() -> None:
        times["columns"].append(_timed(lambda: data.vectorbt(wide_shifted))[0])

    def loop_ours() -> None:  # a plain loop: the garbage collector runs when it runs
        times["loop"].append(_timed(lambda: [data.tradeflow(e, x) for e, x in signals])[0])

    def loop_theirs() -> None:
        times["vloop"].append(_timed(lambda: [data.vectorbt(g) for g in shifted])[0])

    sides = [run_ours, run_theirs, run_columns, loop_ours, loop_theirs]
    for rep in range(runs):
        for call in sides if rep % 2 == 0 else sides[::-1]:
            call()
    result = Sweep(
        bars=int(data.market.times.size),
        combos=[list(c) for c in combos],
        tradeflow=times["tradeflow"],
        vectorbt=times["vectorbt"],
        vectorbt_columns=times["columns"],
        tradeflow_loop=times["loop"],
        vectorbt_loop=times["vloop"],
        vectorbt_columns_first=first,
        trades=trades,
        mismatches=mismatches,
    )
    console.print(
        f"  {len(combos)} combinations on {result.bars:,} bars ({min(trades):,}–{max(trades):,} trades each):"
        f" tradeflow {result.rate(result.tradeflow):.1f} backtests/s, vectorbt "
        f"{result.rate(result.vectorbt):.1f}/s one call each, {result.rate(result.vectorbt_columns):.1f}/s "
        f"as columns of one call; in a plain loop {result.rate(result.tradeflow_loop):.1f} and "
        f"{result.rate(result.vectorbt_loop):.1f}/s"
    )
    return result


# --- 3. Monte Carlo ---------------------------------------------------------------------------


def monte_carlo_times(scenarios: int, runs: int, console: Console) -> MonteCarloTimes:
    """Time ``monte_carlo`` on seeded trade and hourly bar returns, after one small untimed call."""
    import numpy as np

    from tradeflow.backtest.montecarlo import monte_carlo

    rng = np.random.default_rng(SEED)
    trade_returns = rng.normal(0.0005, 0.01, MC_TRADES)
    bar_returns = rng.normal(0.00002, 0.003, MC_BARS)
    monte_carlo(trade_returns, bar_returns, scenarios=100, block_length=MC_BLOCK)
    seconds, engine = [], []
    for _ in range(runs):
        wall, result = _timed(
            lambda: monte_carlo(trade_returns, bar_returns, scenarios=scenarios, block_length=MC_BLOCK)
        )
        seconds.append(wall)
        engine.append(result.seconds)
    item = MonteCarloTimes(scenarios, MC_TRADES, MC_BARS, MC_BLOCK, seconds, engine)
    console.print(
        f"  monte_carlo: {scenarios:,} scenarios × 2 methods on {MC_TRADES} trades and {MC_BARS:,} hourly "
        f"bars: {item.median:.2f} s"
    )
    return item


# --- the section ------------------------------------------------------------------------------


def _package(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def measure_backtest(quick: bool, console: Console) -> BacktestBenchResult:
    """Run section 7 and return its measurements."""
    repeats = QUICK if quick else FULL
    started = time.perf_counter()
    import vectorbt  # noqa: F401  (timed: a once-per-process cost)

    import_seconds = time.perf_counter() - started
    bars = repeats["bars"]
    console.print(
        f"Backtest: run_signals vs vectorbt's from_signals, MA({FAST}, {SLOW}) crossover, fee {FEE}; "
        f"{bars:,} random-walk 1m bars, median of {repeats['runs']} "
        f"(vectorbt imported in {import_seconds:.1f} s)"
    )
    candles = random_walk(bars)
    comparisons = [
        compare("random walk", f"seeded random walk (seed {SEED})", candles, repeats["runs"], console)
    ]
    used, real = real_candles()
    if real is not None:
        name = f"real: {Path(used).stem}"
        comparisons.append(compare(name, f"{used} (Binance, as recorded)", real, repeats["runs"], console))
    else:
        console.print(f"  [yellow]no real data:[/] {used}")
    warnings = [
        f"{c.name}: tradeflow and vectorbt differ: {c.parity}" for c in comparisons if not c.parity["equal"]
    ]
    console.print(
        f"Sweep: {len(SWEEP_FAST) * len(SWEEP_SLOW)} crossovers, median of {repeats['sweep_runs']} …"
    )
    grid = sweep(candles, repeats["sweep_runs"], console)
    warnings += [f"sweep: {m}" for m in grid.mismatches]
    console.print("Monte Carlo …")
    mc = monte_carlo_times(repeats["scenarios"], repeats["mc_runs"], console)
    return BacktestBenchResult(
        quick=quick,
        repeats=dict(repeats),
        vectorbt_import_seconds=import_seconds,
        comparisons=comparisons,
        sweep=grid,
        monte_carlo=mc,
        real_data=used,
        packages={p: _package(p) for p in _PACKAGES},
        warnings=warnings,
    )


# --- the report -------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def _goal(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"


def tables(result: BacktestBenchResult) -> list[Table]:
    """Return the section's tables: side by side, parity, the sweep, Monte Carlo."""
    side = Table(
        title=f"Backtest — run_signals vs vectorbt's warm Portfolio.from_signals, MA({FAST}, {SLOW}) "
        f"crossover, fee {FEE} (goal: tradeflow ≤ {BACKTEST_GOAL:g}× vectorbt)",
        caption=f"medians of {len(result.comparisons[0].tradeflow)}; tradeflow's ratio in brackets. "
        "vectorbt: tz-naive UTC index (its fastest); +trades, value: then pf.trades.records and pf.value(); "
        "tz-aware: a UTC index (both shown only)",
        header_style="bold",
    )
    for column in ("data", "bars", "trades", "tradeflow", "vectorbt", "ratio", "verdict",
                   "vectorbt +trades, value", "vectorbt tz-aware"):  # fmt: skip
        side.add_column(column, justify="left" if column == "data" else "right")
    for item in result.comparisons:
        full, aware = statistics.median(item.vectorbt_full), statistics.median(item.vectorbt_aware)
        side.add_row(
            item.name,
            f"{item.bars:,}" + (f" ({item.holes:,} holes)" if item.holes else ""),
            f"{item.parity['trades_tradeflow']:,}",
            f"[bold]{_ms(item.tradeflow_seconds)}[/]",
            f"[bold]{_ms(item.vectorbt_seconds)}[/]",
            f"[bold]{item.ratio:.2f}×[/]",
            _goal(item.ratio <= BACKTEST_GOAL),
            f"{_ms(full)} ({item.tradeflow_seconds / full:.2f}×)",
            f"{_ms(aware)} ({item.tradeflow_seconds / aware:.2f}×)",
        )
    fixed = Table(title="Backtest — one-off costs (not in the medians)", header_style="bold")
    for column in ("data", "import vectorbt", "first run_signals", "first from_signals (numba compile)",
                   "MarketData.from_candles", "run_signals' own seconds (median)"):  # fmt: skip
        fixed.add_column(column, justify="left" if column == "data" else "right")
    for index, item in enumerate(result.comparisons):
        fixed.add_row(
            item.name,
            f"{result.vectorbt_import_seconds:.2f} s" if index == 0 else "",
            _ms(item.tradeflow_first),
            f"{item.vectorbt_first:.2f} s",
            _ms(item.market_seconds),
            _ms(statistics.median(item.tradeflow_engine)),
        )
    agree = Table(title=f"Parity (same signals; prices, fees, final equity to {PARITY_RTOL:g} relative)",
                  header_style="bold")  # fmt: skip
    for column in ("data", "trades", "open at end", "times", "worst price", "worst fees", "final equity",
                   "difference", "verdict"):  # fmt: skip
        agree.add_column(column, justify="left" if column == "data" else "right")
    for item in result.comparisons:
        p = item.parity
        agree.add_row(
            item.name,
            f"{p['trades_tradeflow']:,} / {p['trades_vectorbt']:,}",
            f"{p['open_tradeflow']} / {p['open_vectorbt']}",
            "equal" if p["times_equal"] else "[red]differ[/]",
            f"{p['worst_price_rel']:.1e}",
            f"{p['worst_fee_rel']:.1e}",
            f"{p['final_tradeflow']:,.4f} / {p['final_vectorbt']:,.4f}",
            f"{p['final_rel']:.1e}",
            "[green]equal[/]" if p["equal"] else "[bold red]DIFFERENT[/]",
        )
    grid = result.sweep
    sweep_table = Table(
        title=f"Sweep — {len(grid.combos)} MA crossovers (fast {', '.join(map(str, SWEEP_FAST))} × slow "
        f"{', '.join(map(str, SWEEP_SLOW))}) on {grid.bars:,} random-walk bars, "
        f"median of {len(grid.tradeflow)}",
        caption="per combination: each backtest timed on its own after gc.collect(), summed; "
        f"{min(grid.trades):,}–{max(grid.trades):,} trades per combination; "
        + ("every combination's trades and final equity equal on both sides" if not grid.mismatches
           else f"[red]{len(grid.mismatches)} combinations differ[/]"),
        header_style="bold",
    )  # fmt: skip
    for column in ("how", "whole grid", "backtests/s", "vs tradeflow"):
        sweep_table.add_column(column, justify="left" if column == "how" else "right")
    base = statistics.median(grid.tradeflow)
    rows = (
        ("[bold]tradeflow: run_signals per combination[/]", grid.tradeflow),
        ("vectorbt: from_signals per combination (warm)", grid.vectorbt),
        ("vectorbt: one from_signals, combinations as columns (warm)", grid.vectorbt_columns),
        ("tradeflow, plain loop (garbage collector as it comes)", grid.tradeflow_loop),
        ("vectorbt, plain loop (garbage collector as it comes)", grid.vectorbt_loop),
    )
    for label, seconds in rows:
        sweep_table.add_row(label, _ms(statistics.median(seconds)), f"[bold]{grid.rate(seconds):,.1f}[/]",
                            f"{statistics.median(seconds) / base:.2f}×")  # fmt: skip
    mc = result.monte_carlo
    mc_table = Table(
        title=f"Monte Carlo — monte_carlo(), {mc.scenarios:,} scenarios of each method (trade reshuffling, "
        f"block bootstrap of {mc.block_length})",
        header_style="bold",
    )
    for column in ("inputs", "wall (median)", "runs", "target"):
        mc_table.add_column(column, justify="left" if column == "inputs" else "right")
    mc_table.add_row(
        f"{mc.trades} trade returns, {mc.bars:,} hourly bar returns (90 days)",
        f"[bold]{mc.median:.2f} s[/]",
        " ".join(f"{s:.2f}" for s in mc.seconds),
        "none",
    )
    return [side, fixed, agree, sweep_table, mc_table]


def verdicts(result: BacktestBenchResult) -> list[str]:
    """Return the section's verdict lines (rich markup)."""
    lines = []
    for item in result.comparisons:
        p = item.parity
        lines.append(
            f"Backtest ({item.name}, {item.bars:,} bars, {p['trades_tradeflow']:,} trades): run_signals "
            f"{_ms(item.tradeflow_seconds)} vs vectorbt's warm from_signals {_ms(item.vectorbt_seconds)} = "
            f"{item.ratio:.2f}× (goal ≤ {BACKTEST_GOAL:g}×) → {_goal(item.ratio <= BACKTEST_GOAL)}; parity: "
            + ("trades and final equity equal" if p["equal"] else f"[bold red]DIFFERENT[/] ({p})")
            + "."
        )
    grid, mc = result.sweep, result.monte_carlo
    lines.append(
        f"Backtest sweep ({len(grid.combos)} combinations, {grid.bars:,} bars): tradeflow "
        f"{grid.rate(grid.tradeflow):,.1f} backtests/s, vectorbt {grid.rate(grid.vectorbt):,.1f}/s one call "
        f"each, {grid.rate(grid.vectorbt_columns):,.1f}/s as columns of one call (shown only)."
    )
    lines.append(
        f"Monte Carlo: {mc.scenarios:,} scenarios × 2 methods on {mc.trades} trades and {mc.bars:,} hourly "
        f"bars in {mc.median:.2f} s (no target)."
    )
    return lines


# --- the child process ------------------------------------------------------------------------

#: A hung child is killed after this long (the full section takes about a minute on 2 cores).
CHILD_TIMEOUT_SECONDS = 900.0


def run_in_child(quick: bool) -> BacktestBenchResult:
    """Run the section in a fresh ``python -m bench.backtest`` and return what it measured.

    Raises:
        BenchError: if the child fails or times out.
    """
    arguments = ["--quick"] if quick else []
    return BacktestBenchResult.from_dict(run_section("backtest", arguments, CHILD_TIMEOUT_SECONDS))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child: measure, write the raw result as JSON, return the exit code."""
    description = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.backtest", description=description)
    parser.add_argument("--json", type=Path, required=True, help="where the raw result goes")
    parser.add_argument(
        "--quick", action="store_true", help="20,000 bars instead of 100,000, fewer repetitions"
    )
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=120)
    try:
        result = measure_backtest(args.quick, console)
    except BenchError as error:
        print(f"benchmark invalid: {error}", file=sys.stderr)
        return 2
    args.json.write_text(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
