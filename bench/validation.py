"""Section 4: what validating candles with Great Expectations costs, next to fetching them.

The unit is one venue's batch of one symbol's 1m candles, as ``validate_candle_group`` handles
it: the group's cross-venue preparation (peer moves, aligned closes, deviations over the three
venues), then the candle suite (derived columns, observed values, GX) and the cross-venue suite
(derived frame, observed value, GX). Reading Parquet from the lake, quarantining and writing
curated candles are not included; the consensus step (``build_consensus``) is timed on its own.

Fairness rules, each for a reason:

- The candles are the simulator's own reference (``SimulatedVenue.klines``: exactly what its
  server sends), built in-process, so no fetch is repeated three times per venue; one day of
  them is checked against the same day fetched over HTTP with ccxt.
- The fetches run first, against the running simulator (process mode, as the pipeline runs it)
  after one untimed pass that warms its caches. The fetch the goal compares with is the bare
  loop's: an exchange whose markets are already loaded asking for the day's two pages (1000 +
  440 candles), which is the cheapest way to fetch them; a fresh client (markets request
  included) is shown too.
- The validations run after the simulator has stopped, so the two cores are theirs.
- Each repetition set gets a fresh ``GxValidator``: its creation and its first call (which also
  builds the suites) are reported apart, then the median of the timed repetitions.
- GX's import is a once-per-process cost: timed in a fresh interpreter, never in the medians.
- The whole section runs in a child process of its own (``python -m bench.validation``), so its
  peak RSS is the validation's alone, and GX's objects do not sit in the heap (and the garbage
  collector's passes) of the process that times the ingestion pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import procstat
from bench.baseline import bare_sequential, fetch_series, new_exchange
from bench.child import run_section
from bench.workload import REPO, BenchError, Series, base_settings
from tradeflow.bootstrap import local_venues, simulator_spec, venue_urls
from tradeflow.config import Settings
from tradeflow.ingest import plan_pages, series_window
from tradeflow.timeframes import DAY_MS, MINUTE_MS, iso

TIMEFRAME = "1m"
#: The long batch: a 90-day look-back (the shipped config's) of 1m candles, 129,600 rows.
LONG_DAYS = 90

#: Repetitions of the full run and of --quick: timed validations per batch size (after one
#: warm-up each), consensus runs, fetches of one day and of the long window, GX imports.
FULL = {
    "day": 7,
    "long": 3,
    "consensus": 3,
    "group_day": 5,
    "group_long": 1,
    "fetch_day": 9,
    "fetch_long": 2,
    "imports": 3,
}
QUICK = {
    "day": 3,
    "long": 1,
    "consensus": 1,
    "group_day": 2,
    "group_long": 1,
    "fetch_day": 5,
    "fetch_long": 1,
    "imports": 1,
}

#: The stages of one venue batch, in the order they run.
STAGES = ("group_prep", "candles_derive", "candles_gx", "cross_derive", "cross_gx")
STAGE_LABELS = {
    "group_prep": "group prep (3 venues)",
    "candles_derive": "candles: derive + observe",
    "candles_gx": "candles: GX",
    "cross_derive": "cross-venue: derive + observe",
    "cross_gx": "cross-venue: GX",
}

_IMPORT_GX = "import time; t=time.perf_counter(); import great_expectations; print(time.perf_counter()-t)"


@dataclass
class BatchTimes:
    """Every timed validation of one batch size, with a fresh validator."""

    rows: int
    validator_seconds: float  # GxValidator(...) creation
    warmup: dict[str, float]  # the first call after creation (builds the suites): stage seconds
    runs: list[dict[str, float]] = field(default_factory=list)
    verdict: str = ""

    def stage(self, name: str) -> float:
        """Return the median seconds of one stage over the timed runs."""
        return statistics.median(run[name] for run in self.runs)

    @property
    def totals(self) -> list[float]:
        """Return each timed run's total seconds."""
        return [sum(run.values()) for run in self.runs]

    @property
    def seconds(self) -> float:
        """Return the median total seconds of one venue batch."""
        return statistics.median(self.totals)


@dataclass
class GroupTimes:
    """``validate_candle_group`` end to end on one symbol's 1m batches of every venue.

    Reads the batches' Parquet objects from a local lake, runs both suites on every venue,
    quarantines what fails, builds the consensus and writes the curated candles.
    """

    rows: int  # per venue
    venues: int
    validator_seconds: float
    warmup: float
    runs: list[float]
    verdicts: dict[str, str]
    curated_rows: int

    @property
    def seconds(self) -> float:
        """Return the median seconds of the whole group."""
        return statistics.median(self.runs)

    @property
    def per_venue(self) -> float:
        """Return the median group seconds divided by the venues in it."""
        return self.seconds / self.venues


@dataclass
class ValidationResult:
    """Everything section 4 measured."""

    end_ms: int
    venue: str
    symbol: str
    venues: list[str]
    quick: bool
    repeats: dict[str, int]
    data_source: str
    data_check: str
    import_seconds: list[float]  # `import great_expectations` in a fresh interpreter
    inprocess_import_seconds: float  # first `import expectations.runner` in this process
    day: BatchTimes
    long: BatchTimes
    consensus_day: list[float]
    consensus_long: list[float]
    group_day: GroupTimes
    group_long: GroupTimes
    fetch_day: list[float]  # warm client, the day's pages
    fetch_day_cold: list[float]  # fresh client: markets request + the day's pages
    fetch_long: list[float]  # warm client, the long window's pages
    fetch_pages: dict[str, int]
    latency_ms: float | None
    peak_rss_kib: dict[str, int | None]  # this process's VmHWM after each step, in order
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationResult:
        """Return the result that ``asdict`` turned into ``data`` (as the child process sends it)."""
        fields = dict(data)
        fields["day"], fields["long"] = BatchTimes(**fields["day"]), BatchTimes(**fields["long"])
        fields["group_day"] = GroupTimes(**fields["group_day"])
        fields["group_long"] = GroupTimes(**fields["group_long"])
        return cls(**fields)

    @property
    def long_days(self) -> int:
        """Return the long batch's length in days."""
        return self.long.rows * MINUTE_MS // DAY_MS

    @property
    def fetch_day_seconds(self) -> float:
        """Return the median fetch of one day with a warm client (the goal's denominator)."""
        return statistics.median(self.fetch_day)

    @property
    def marginal_day_seconds(self) -> float:
        """Return what one more day costs inside the long batch: (long - day) / (days - 1)."""
        return (self.long.seconds - self.day.seconds) / (self.long_days - 1)

    @property
    def group_marginal_day_seconds(self) -> float:
        """Return what one more day costs per venue inside the long group, end to end."""
        return (self.group_long.per_venue - self.group_day.per_venue) / (self.long_days - 1)

    @property
    def per_million_seconds(self) -> float:
        """Return the long batch's seconds per million candles."""
        return self.long.seconds / self.long.rows * 1_000_000

    def ratios(self) -> dict[str, float]:
        """Return validate / fetch for the goal's two readings, and the shown-only ones."""
        fetch = self.fetch_day_seconds
        return {
            "day_batch/fetch_day": self.day.seconds / fetch,
            "marginal_day_in_long/fetch_day": self.marginal_day_seconds / fetch,
            "day_batch/fetch_day_cold": self.day.seconds / statistics.median(self.fetch_day_cold),
            "long_batch/fetch_long": self.long.seconds / statistics.median(self.fetch_long),
            "group_day_per_venue/fetch_day": self.group_day.per_venue / fetch,
            "group_marginal_day_per_venue/fetch_day": self.group_marginal_day_seconds / fetch,
        }

    def to_json(self) -> dict[str, Any]:
        """Return plain data for the results file."""
        batches = {}
        for name, batch in (("day", self.day), ("long", self.long)):
            batches[name] = {
                **asdict(batch),
                "median_seconds": batch.seconds,
                "median_stage_seconds": {s: batch.stage(s) for s in STAGES},
            }
        return {
            "window_end": iso(self.end_ms),
            "venue": self.venue,
            "symbol": self.symbol,
            "venues": self.venues,
            "timeframe": TIMEFRAME,
            "quick": self.quick,
            "repeats": self.repeats,
            "data_source": self.data_source,
            "data_check": self.data_check,
            "gx_import_seconds": self.import_seconds,
            "inprocess_import_seconds": self.inprocess_import_seconds,
            "batches": batches,
            "marginal_day_seconds": self.marginal_day_seconds,
            "seconds_per_million_candles": self.per_million_seconds,
            "consensus_seconds": {"day": self.consensus_day, "long": self.consensus_long},
            "validate_candle_group": {
                name: {**asdict(group), "median_seconds": group.seconds, "per_venue": group.per_venue}
                for name, group in (("day", self.group_day), ("long", self.group_long))
            },
            "group_marginal_day_seconds_per_venue": self.group_marginal_day_seconds,
            "fetch_seconds": {
                "day_warm_client": self.fetch_day,
                "day_fresh_client": self.fetch_day_cold,
                "long_warm_client": self.fetch_long,
            },
            "fetch_pages": self.fetch_pages,
            "simulated_latency_ms": self.latency_ms,
            "ratios": self.ratios(),
            "peak_rss_kib": self.peak_rss_kib,  # the child process (VmHWM) after each step
            "warnings": self.warnings,
        }


# --- fetching ---------------------------------------------------------------------------------


def _series(settings: Settings, running: Mapping[str, str], end_ms: int, days: int) -> Series:
    venue = settings.venues[0]
    start, stop = series_window(None, end_ms, MINUTE_MS, days)
    pages = plan_pages(start, stop, MINUTE_MS, settings.ingest.page_limit)
    base_url = venue_urls(settings, running)[venue.id]
    return Series(venue, base_url, settings.ingest.symbols[0], TIMEFRAME, tuple(pages))


def _timed(action: Callable[[], object], times: int) -> list[float]:
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def measure_fetches(
    settings: Settings, end_ms: int, repeats: Mapping[str, int], console: Console
) -> tuple[dict[str, list[float]], dict[str, int], list[list[float]]]:
    """Time the day's and the long window's fetches; return them, the pages and the day's rows."""
    limit = settings.ingest.page_limit
    with local_venues(settings, "process") as running:
        day = _series(settings, running, end_ms, 1)
        long = _series(settings, running, end_ms, LONG_DAYS)
        exchange = new_exchange(day.venue, day.base_url)
        try:
            exchange.load_markets()
            console.print(f"Warming the simulator: one untimed pass over {long.expected_candles:,} candles …")
            fetch_series(exchange, long, limit)
            rows: list[list[float]] = []
            for page in day.pages:  # untimed: the candles, to check against the reference
                rows += exchange.fetch_ohlcv(
                    day.symbol, TIMEFRAME, since=page.since, limit=limit, params={"until": page.until}
                )
            got = fetch_series(exchange, day, limit)[0]
            if got != day.expected_candles:
                raise BenchError(
                    f"fetching one day returned {got:,} candles, expected {day.expected_candles:,}"
                )
            seconds = {
                "day": _timed(lambda: fetch_series(exchange, day, limit), repeats["fetch_day"]),
                "day_cold": [bare_sequential([day], limit).seconds for _ in range(repeats["fetch_day"])],
                "long": _timed(lambda: fetch_series(exchange, long, limit), repeats["fetch_long"]),
            }
        finally:
            session = getattr(exchange, "session", None)
            if session is not None:
                session.close()
    pages = {"day": len(day.pages), "long": len(long.pages), "day_candles": day.expected_candles}
    return seconds, pages, rows


# --- the candles ------------------------------------------------------------------------------


def reference_candles(settings: Settings, end_ms: int, days: int) -> dict[str, Any]:
    """Return every simulated venue's 1m candles of the first symbol over ``days`` before ``end_ms``.

    The simulator's reference (what its server sends for the range), as the DataFrames the
    validation reads from the lake: timestamp int64 ms, then float64 prices and volume.
    """
    import pandas as pd

    from tradeflow.simulator import market
    from tradeflow.simulator.venue import SimulatedVenue

    spec = simulator_spec(settings).resolved()
    symbol = settings.ingest.symbols[0]
    frames = {}
    for venue in spec.venues:
        array = SimulatedVenue(spec, venue).klines(
            symbol, TIMEFRAME, end_ms - days * DAY_MS, end_ms - MINUTE_MS, end_ms
        )
        frame = pd.DataFrame(array[:, 1:], columns=["open", "high", "low", "close", "volume"])
        frame.insert(0, "timestamp", array[:, 0].astype("int64"))
        frames[venue.id] = frame
    market.clear_caches()  # the generated day blocks are not needed any more
    return frames


def _last_days(frames: Mapping[str, Any], end_ms: int, days: int) -> dict[str, Any]:
    start = end_ms - days * DAY_MS
    return {v: f[f["timestamp"] >= start].reset_index(drop=True) for v, f in frames.items()}


def _check_rows(reference: Any, fetched: list[list[float]]) -> tuple[bool, str]:
    """Return whether the fetched day equals the reference day, and a line saying so."""
    import numpy as np

    got = np.asarray(fetched, dtype=np.float64)
    want = reference.to_numpy(dtype=np.float64)
    if got.shape == want.shape and np.array_equal(got, want):
        return True, f"the day fetched with ccxt equals the reference ({len(fetched):,} rows)"
    return False, (
        f"the day fetched with ccxt ({got.shape[0]:,} rows) differs from the reference "
        f"({want.shape[0]:,} rows): the validated candles are not what the venue serves"
    )


# --- validating -------------------------------------------------------------------------------


class _Batch:
    """One venue's batch inside its symbol's group, in the steps of ``validate_candle_group``.

    The steps mirror that function (as of this benchmark's commit) so each can be timed: the
    group's shared work (peer moves, every venue's own suspicious candles, aligned closes, the
    reference and the deviations) is charged in full to this venue's batch; the other venues'
    derived columns, which the reference needs, are their own batches' cost and are left out.
    """

    def __init__(self, frames: Mapping[str, Any], venue: str, settings: Settings, end_ms: int) -> None:
        from tradeflow.quality.candles import CandleRules

        self.frames, self.venue, self.end_ms = frames, venue, end_ms
        self.config = settings.validation
        self.rules = CandleRules.from_config(self.config, TIMEFRAME)
        self.rows = len(frames[venue])
        self.name = f"candles {venue} {settings.ingest.symbols[0]} {TIMEFRAME}"

    def validate(self, validator: Any, label: str) -> tuple[dict[str, float], str]:
        """Validate once; return the seconds of each stage and the batch's verdict."""
        import numpy as np

        from tradeflow.quality.candles import derive_candles, observe_candles
        from tradeflow.quality.checks import verdict
        from tradeflow.quality.consensus import (
            aligned,
            derive_cross_venue,
            deviations,
            observe_cross_venue,
            peer_moves,
        )

        config, rules, venue = self.config, self.rules, self.venue
        batch = f"{self.name} ({label})"
        stages = dict.fromkeys([*STAGES, "others"], 0.0)
        clock = [time.perf_counter()]

        def charge(stage: str) -> None:
            clock.append(time.perf_counter())
            stages[stage] += clock[-1] - clock[-2]

        moves = peer_moves(self.frames)
        charge("group_prep")
        derived, suspicious = {}, {}
        for name, candles in self.frames.items():
            derived[name] = derive_candles(
                candles, rules, previous_timestamp=None, as_of=self.end_ms, peer_moves=moves.get(name)
            )
            charge("candles_derive" if name == venue else "others")
            frame = derived[name]
            odd = (frame["unconfirmed_move"].to_numpy() > rules.spike_threshold) | (
                frame["frozen_run"].to_numpy() >= rules.frozen_run_candles
            )
            suspicious[name] = set(frame["timestamp"].to_numpy()[odd].tolist())
            charge("group_prep")
        closes = aligned(self.frames, "close")
        reference = closes.copy()
        for name, times in suspicious.items():
            reference.loc[reference.index.isin(list(times)), name] = np.nan
        median, deviation = deviations(reference, config.min_venues_for_discrepancy)
        charge("group_prep")
        observed = observe_candles(derived[venue], rules, as_of=self.end_ms)
        charge("candles_derive")
        candles = validator.validate(
            "candles", derived[venue], batch=batch, observed=observed, timeframe=TIMEFRAME
        )
        charge("candles_gx")
        cross = derive_cross_venue(venue, closes, median, deviation)
        cross_observed = observe_cross_venue(
            cross, config.discrepancy_threshold, config.discrepancy_max_fraction
        )
        charge("cross_derive")
        outcome = validator.validate(
            "cross_venue", cross, batch=batch, observed={"cross_venue_discrepancy": cross_observed}
        )
        charge("cross_gx")
        _check_evaluated([candles, outcome])
        del stages["others"]
        return stages, verdict([candles, outcome])


def _check_evaluated(outcomes: Sequence[Any]) -> None:
    """Refuse a run in which GX skipped a check (a failed metric is fast, and not the real cost)."""
    errors = [
        f"{c.suite}/{c.check}: {c.note}"
        for o in outcomes
        for c in o.checks
        if c.success is None and c.note != "ignored by policy"
    ]
    if errors:
        raise BenchError(f"GX did not evaluate every check, so the timing is not real: {errors}")


def measure_batch(batch: _Batch, repeat: int, run_name: str, console: Console) -> BatchTimes:
    """Create a fresh validator, validate once to warm up, then ``repeat`` timed times."""
    from expectations.runner import GxValidator

    started = time.perf_counter()
    validator = GxValidator(batch.config, run_name)
    created = time.perf_counter() - started
    warmup, verdict = batch.validate(validator, "warm-up")
    result = BatchTimes(rows=batch.rows, validator_seconds=created, warmup=warmup, verdict=verdict)
    for i in range(repeat):
        stages, verdict = batch.validate(validator, f"rep {i + 1}")
        if verdict != result.verdict:
            raise BenchError(f"{run_name}: verdict changed between runs ({result.verdict} → {verdict})")
        result.runs.append(stages)
    console.print(
        f"  {batch.rows:>9,} rows: validator {created * 1000:.0f} ms, first call "
        f"{sum(warmup.values()):.3f} s, median of {repeat} {result.seconds:.3f} s "
        f"({' '.join(f'{s:.3f}' for s in result.totals)}); verdict {result.verdict}"
    )
    return result


def _group_lake(root: Path, frames: Mapping[str, Any], symbol: str, end_ms: int) -> tuple[Any, Any]:
    """Write every venue's candles into a lake at ``root`` as ingestion does; return it and the batch."""
    import numpy as np

    from tradeflow.quality.validation import PendingBatch
    from tradeflow.storage.lake import candles_table, write_partitioned
    from tradeflow.storage.objectstore import open_store

    store = open_store(str(root))
    series = {}
    for venue, frame in frames.items():
        table = candles_table(frame.to_numpy(dtype=np.float64))
        objects = write_partitioned(store, "candles", table, venue=venue, symbol=symbol, timeframe=TIMEFRAME)
        series[venue] = [o.to_json() for o in objects]
    batch = PendingBatch(
        ingest_sequence=1,
        ingest_batch_id="bench",
        as_of=end_ms,
        candle_series={(symbol, TIMEFRAME): series},
        previous_last={},
        snapshots={},
    )
    return store, batch


def measure_group(
    frames: Mapping[str, Any],
    settings: Settings,
    end_ms: int,
    repeat: int,
    root: Path,
    console: Console,
) -> GroupTimes:
    """Time ``validate_candle_group`` on every venue's batch: fresh validator, warm-up, ``repeat`` runs.

    The curated and quarantine folders are emptied (untimed) before each run, so every run
    writes them as a first validation of the batch does.
    """
    from expectations.runner import GxValidator
    from tradeflow.quality.validation import validate_candle_group

    symbol, config = settings.ingest.symbols[0], settings.validation
    store, batch = _group_lake(root, frames, symbol, end_ms)
    started = time.perf_counter()
    validator = GxValidator(config, f"bench-group-{root.name}")
    created = time.perf_counter() - started

    def once() -> tuple[float, Any]:
        for folder in ("curated", "quarantine"):
            shutil.rmtree(root / folder, ignore_errors=True)
        started = time.perf_counter()
        result = validate_candle_group(store, validator, config, batch, symbol, TIMEFRAME, curated_last=None)
        return time.perf_counter() - started, result

    warmup, result = once()
    _check_evaluated([o for b in result.batches for o in b.suites])
    verdicts = {b.venue: b.verdict for b in result.batches}
    runs = []
    for _ in range(repeat):
        seconds, again = once()
        if {b.venue: b.verdict for b in again.batches} != verdicts:
            raise BenchError("validate_candle_group: verdicts changed between runs")
        runs.append(seconds)
    times = GroupTimes(
        rows=len(next(iter(frames.values()))),
        venues=len(frames),
        validator_seconds=created,
        warmup=warmup,
        runs=runs,
        verdicts=verdicts,
        curated_rows=result.curated_rows,
    )
    console.print(
        f"  group of {times.venues} venues × {times.rows:>7,} rows: first call {warmup:.3f} s, median of "
        f"{repeat} {times.seconds:.3f} s ({times.per_venue:.3f} s per venue); "
        + ", ".join(f"{v} {verdict}" for v, verdict in verdicts.items())
    )
    return times


def gx_import_seconds(times: int) -> list[float]:
    """Return ``import great_expectations`` times, each in a fresh interpreter of this venv."""
    seconds = []
    for _ in range(times):
        done = subprocess.run(
            [sys.executable, "-c", _IMPORT_GX], cwd=REPO, capture_output=True, text=True, check=True
        )
        seconds.append(float(done.stdout.strip().splitlines()[-1]))
    return seconds


def measure_validation(settings: Settings, end_ms: int, quick: bool, console: Console) -> ValidationResult:
    """Run section 4 and return its measurements.

    Args:
        settings: The shipped config (venues, simulator, validation thresholds and policies).
        end_ms: The pinned window end: the batches' last candle opens a minute before it, and
            it is their as-of time (staleness).
        quick: Fewer repetitions (the --quick smoke run).
        console: Where progress lines go.
    """
    repeats = QUICK if quick else FULL
    rss: dict[str, int | None] = {"start": procstat.peak_rss_kib(os.getpid())}
    venue, symbol = settings.venues[0], settings.ingest.symbols[0]
    console.print(
        f"Fetching one day and {LONG_DAYS} days of {symbol} {TIMEFRAME} from {venue.id} with ccxt "
        "(local simulator) …"
    )
    fetched, pages, day_rows = measure_fetches(settings, end_ms, repeats, console)
    rss["fetched"] = procstat.peak_rss_kib(os.getpid())
    console.print(
        f"  one day ({pages['day']} pages): median {statistics.median(fetched['day']) * 1000:.1f} ms "
        f"warm client, {statistics.median(fetched['day_cold']) * 1000:.1f} ms fresh client; "
        f"{LONG_DAYS} days ({pages['long']} pages): median {statistics.median(fetched['long']):.2f} s"
    )

    console.print(f"Importing great_expectations in {repeats['imports']} fresh interpreter(s) …")
    imports = gx_import_seconds(repeats["imports"])
    started = time.perf_counter()
    import expectations.runner  # noqa: F401  (the import is what is timed)

    inprocess_import = time.perf_counter() - started
    rss["GX imported"] = procstat.peak_rss_kib(os.getpid())
    console.print(
        f"  {' '.join(f'{s:.2f}' for s in imports)} s; in this process (expectations.runner) "
        f"{inprocess_import:.2f} s"
    )

    long_frames = reference_candles(settings, end_ms, LONG_DAYS)
    day_frames = _last_days(long_frames, end_ms, 1)
    rss["candles built"] = procstat.peak_rss_kib(os.getpid())
    same, check = _check_rows(day_frames[venue.id], day_rows)
    warnings = [] if same else [check]
    console.print(f"Validating (candle + cross-venue suites, {venue.id} {symbol} {TIMEFRAME}); {check} …")
    day = measure_batch(_Batch(day_frames, venue.id, settings, end_ms), repeats["day"], "bench-day", console)
    rss["1-day batches"] = procstat.peak_rss_kib(os.getpid())
    long = measure_batch(
        _Batch(long_frames, venue.id, settings, end_ms), repeats["long"], "bench-long", console
    )
    rss[f"{LONG_DAYS}-day batches"] = procstat.peak_rss_kib(os.getpid())

    from tradeflow.quality.consensus import build_consensus

    def consensus(frames: Mapping[str, Any]) -> list[float]:
        build_consensus(frames, {}, method=settings.validation.consensus)  # warm-up
        return _timed(
            lambda: build_consensus(frames, {}, method=settings.validation.consensus), repeats["consensus"]
        )

    consensus_day, consensus_long = consensus(day_frames), consensus(long_frames)
    rss["consensus"] = procstat.peak_rss_kib(os.getpid())

    console.print("End to end: validate_candle_group (read Parquet, both suites, quarantine, curate) …")
    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-lake-") as folder:
        group_day = measure_group(
            day_frames, settings, end_ms, repeats["group_day"], Path(folder) / "day", console
        )
        group_long = measure_group(
            long_frames, settings, end_ms, repeats["group_long"], Path(folder) / "long", console
        )
    rss["validate_candle_group"] = procstat.peak_rss_kib(os.getpid())
    console.print(
        f"  consensus of {len(long_frames)} venues: one day "
        f"{statistics.median(consensus_day) * 1000:.1f} ms, {LONG_DAYS} days "
        f"{statistics.median(consensus_long):.3f} s"
    )
    latency = venue.simulator.latency_ms if venue.simulator is not None else None
    return ValidationResult(
        end_ms=end_ms,
        venue=venue.id,
        symbol=symbol,
        venues=list(long_frames),
        quick=quick,
        repeats=dict(repeats),
        data_source="simulator reference (SimulatedVenue.klines, what its server sends)",
        data_check=check,
        import_seconds=imports,
        inprocess_import_seconds=inprocess_import,
        day=day,
        long=long,
        consensus_day=consensus_day,
        consensus_long=consensus_long,
        group_day=group_day,
        group_long=group_long,
        fetch_day=fetched["day"],
        fetch_day_cold=fetched["day_cold"],
        fetch_long=fetched["long"],
        fetch_pages=pages,
        latency_ms=latency,
        peak_rss_kib=rss,
        warnings=warnings,
    )


# --- the child process ------------------------------------------------------------------------

#: A hung child is killed after this long (the full section takes about 40 s on 2 cores).
CHILD_TIMEOUT_SECONDS = 600.0


def run_in_child(end_ms: int, quick: bool) -> ValidationResult:
    """Run the section in a fresh ``python -m bench.validation`` and return what it measured.

    Raises:
        BenchError: if the child fails or times out.
    """
    arguments = ["--end-ms", str(end_ms), *(["--quick"] if quick else [])]
    return ValidationResult.from_dict(run_section("validation", arguments, CHILD_TIMEOUT_SECONDS))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child: measure, write the raw result as JSON, return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.validation", description=__doc__.split("\n")[0])
    parser.add_argument("--end-ms", type=int, required=True, help="the pinned window end, UTC ms")
    parser.add_argument("--json", type=Path, required=True, help="where the raw result goes")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=120)
    try:
        result = measure_validation(base_settings(), args.end_ms, args.quick, console)
    except BenchError as error:
        print(f"benchmark invalid: {error}", file=sys.stderr)
        return 2
    args.json.write_text(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
