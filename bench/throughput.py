"""Section 1: the whole flow against bare ccxt loops, on one running simulator and one window.

Fairness rules, each for a reason:

- One simulator (process mode, as the pipeline runs it) serves every measurement, so all of
  them pay the same HTTP and generation costs.
- The simulator caches generated day blocks; one untimed pass over the window warms it, so
  whichever method runs first is not charged for generating the data.
- The first flow run of a process starts Prefect's ephemeral API server (seconds). It runs
  untimed-for-the-ratio before the repetitions and is reported on its own as "cold".
- Each repetition runs every method once, in an order rotated per repetition, so none always
  runs first or last; the median over repetitions is reported.
- Every flow run writes to a fresh, empty lake, so it really fetches every page.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from bench import procstat, timeline
from bench.baseline import LoopRun, bare_concurrent, bare_sequential
from bench.pipeline import PipelineRun, run_flow
from bench.profile import Profile, profile_run
from bench.profile import to_json as profile_json
from bench.timeline import Timeline
from bench.workload import BenchError, Series, Workspace, describe_plan, plan_series
from tradeflow.bootstrap import local_venues
from tradeflow.config import Settings
from tradeflow.timeframes import DAY_MS, MINUTE_MS, iso, timeframe_ms

PIPELINE = "pipeline"
BARE_SEQUENTIAL = "bare_sequential"
BARE_CONCURRENT = "bare_concurrent"
METHODS = (PIPELINE, BARE_SEQUENTIAL, BARE_CONCURRENT)

Measurement = LoopRun | PipelineRun
M = TypeVar("M", LoopRun, PipelineRun, Measurement)


@dataclass
class Summary:
    """The median of one method's repetitions."""

    seconds: float
    candles: int
    candles_per_second: float
    runs: list[float]


@dataclass
class ThroughputResult:
    """Everything section 1 measured."""

    end_ms: int
    days: dict[str, int]
    plan: dict[str, Any]
    max_concurrency: int
    repeat: int
    warmup_seconds: dict[str, float]
    import_seconds: float
    cold: PipelineRun
    runs: dict[str, list[Measurement]] = field(default_factory=dict)
    cpu: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # per run, by process role
    order: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)
    timeline: Timeline | None = None

    def summary(self, method: str) -> Summary:
        """Return the median run of ``method`` (seconds and candles/second of the median)."""
        runs = self.runs[method]
        seconds = statistics.median(r.seconds for r in runs)
        candles = runs[0].candles
        return Summary(seconds, candles, candles / seconds if seconds else 0.0, [r.seconds for r in runs])

    def pipeline_runs(self) -> list[PipelineRun]:
        """Return the timed pipeline runs (typed as such)."""
        return [run for run in self.runs.get(PIPELINE, []) if isinstance(run, PipelineRun)]

    def median_cpu(self, method: str) -> dict[str, float]:
        """Return the median CPU seconds per process role over the runs of ``method``."""
        runs = self.cpu.get(method, [])
        roles = sorted({role for run in runs for role in run})
        return {role: statistics.median(run.get(role, 0.0) for run in runs) for role in roles}

    def ratio(self, baseline: str) -> float:
        """Return median pipeline seconds over the median seconds of ``baseline``."""
        return self.summary(PIPELINE).seconds / self.summary(baseline).seconds

    def to_json(self) -> dict[str, Any]:
        """Return plain data for the results file."""
        return {
            "window_end": iso(self.end_ms),
            "window_end_ms": self.end_ms,
            "days": self.days,
            "plan": self.plan,
            "max_concurrency": self.max_concurrency,
            "repeat": self.repeat,
            "warmup_seconds": self.warmup_seconds,
            "import_seconds": self.import_seconds,
            "cold_first_flow_run": _with_rate(self.cold),
            "runs": {m: [_with_rate(r) for r in runs] for m, runs in self.runs.items()},
            "cpu_seconds": self.cpu,
            "order": self.order,
            "median": {m: asdict(self.summary(m)) for m in self.runs},
            "ratios": {
                "pipeline/bare_sequential": self.ratio(BARE_SEQUENTIAL),
                "pipeline/bare_concurrent": self.ratio(BARE_CONCURRENT),
            },
            "warnings": self.warnings,
            "profiles": {m: profile_json(p) for m, p in self.profiles.items()},
            "timeline": None
            if self.timeline is None
            else {
                "phases": self.timeline.phases(),
                "tail_seconds": self.timeline.tail_seconds(),
                "returned": self.timeline.returned,
            },
        }


def _with_rate(run: Measurement) -> dict[str, Any]:
    return {**asdict(run), "candles_per_second": run.candles_per_second}


def rotated(repetition: int) -> list[str]:
    """Return the order of the methods in one repetition: rotated by one each time."""
    shift = repetition % len(METHODS)
    return list(METHODS[shift:] + METHODS[:shift])


def _check(method: str, run: Measurement, expected: int) -> None:
    failed = getattr(run, "failed", [])
    if failed:
        raise BenchError(f"{method}: the run failed, so it cannot be compared: {'; '.join(failed)}")
    if run.candles != expected:
        raise BenchError(
            f"{method}: got {run.candles:,} candles, expected {expected:,}; "
            "the methods did not fetch the same window"
        )


def cache_warnings(plan: Sequence[Series]) -> list[str]:
    """Warn when the window is too big for the simulator's block caches to stay warm.

    The simulator keeps a bounded LRU of generated day blocks; past it, every pass regenerates
    data and the simulator's CPU (not the client) sets the pace of every method.
    """
    try:
        from tradeflow.simulator import market
    except ImportError:  # pragma: no cover - the simulator ships with tradeflow
        return []
    minute_days = sum(_days_spanned(s) for s in plan if timeframe_ms(s.timeframe) == MINUTE_MS)
    coarse_days = sum(_days_spanned(s) for s in plan if timeframe_ms(s.timeframe) > MINUTE_MS)
    warnings = []
    for name, needed in (("_BLOCKS", minute_days), ("_INTERVAL_DAYS", coarse_days)):
        capacity = getattr(getattr(market, name, None), "maxsize", None)
        if capacity is not None and needed > capacity:
            warnings.append(
                f"the simulator's {name} cache holds {capacity} day blocks but the window needs "
                f"{needed}: warm-up cannot keep it warm, data generation is timed in every method"
            )
    return warnings


def _days_spanned(series: Series) -> int:
    if not series.pages:
        return 0
    return (series.pages[-1].until // DAY_MS) - (series.pages[0].since // DAY_MS) + 1


def warm_up(plan: Sequence[Series], limit: int, workers: int) -> tuple[dict[str, float], int]:
    """Fetch the whole window once, untimed, to fill the simulator's caches.

    Returns the seconds per timeframe and the candles the venues served: fewer than the window
    holds when a venue has data faults (holes), and every timed method must fetch exactly these.

    Coarse timeframes go first: they are served from aggregated blocks cached on their own, and
    generating them touches every 1m day block of their long window, which would evict the 1m
    blocks of the short window if those were fetched first.
    """
    seconds: dict[str, float] = {}
    served = 0
    for timeframe in sorted({s.timeframe for s in plan}, key=timeframe_ms, reverse=True):
        group = [s for s in plan if s.timeframe == timeframe]
        run = bare_concurrent(group, limit, workers)
        seconds[timeframe], served = run.seconds, served + run.candles
    return seconds, served


def _import_flow() -> float:
    started = time.perf_counter()
    import flows.ingest  # noqa: F401  (the import is what is timed)

    return time.perf_counter() - started


def measure_throughput(
    workspace: Workspace,
    settings: Settings,
    end_ms: int,
    repeat: int,
    console: Console,
    profile_to: tuple[str, Path] | None = None,
) -> ThroughputResult:
    """Run section 1 and return its measurements.

    Args:
        workspace: Where each flow run gets its config and fresh lake.
        settings: The benchmark config (window, venues, concurrency).
        end_ms: The pinned window end.
        repeat: Timed repetitions of every method.
        console: Where progress lines go.
        profile_to: (py-spy executable, output folder) to also profile one extra pipeline run
            and one extra bare concurrent run, after the timed ones; None to skip.
    """
    limit, workers = settings.ingest.page_limit, settings.ingest.max_concurrency
    with local_venues(settings, "process") as running:
        plan = plan_series(settings, running, end_ms)
        expected = sum(s.expected_candles for s in plan)
        result_warnings = cache_warnings(plan)
        for warning in result_warnings:
            console.print(f"[yellow]warning:[/] {warning}")

        console.print(f"Warming the simulator: one untimed pass over {expected:,} candles …")
        warm, served = warm_up(plan, limit, workers)
        if served != expected:
            result_warnings.append(
                f"the venues serve {served:,} of the window's {expected:,} candles (a venue with data "
                "faults has holes); every method is checked against what they serve"
            )
            console.print(f"[yellow]warning:[/] {result_warnings[-1]}")
            expected = served
        import_seconds = _import_flow()
        console.print(
            "  warm-up "
            + ", ".join(f"{tf} {seconds:.2f} s" for tf, seconds in warm.items())
            + f"; importing the flow module {import_seconds:.2f} s (untimed)"
        )

        def pipeline() -> PipelineRun:
            config_path, run_settings = workspace.new_run(PIPELINE)
            try:
                return run_flow(config_path, run_settings, running, end_ms)
            finally:
                workspace.discard(config_path)

        methods: dict[str, Callable[[], Measurement]] = {
            PIPELINE: pipeline,
            BARE_SEQUENTIAL: lambda: bare_sequential(plan, limit),
            BARE_CONCURRENT: lambda: bare_concurrent(plan, limit, workers),
        }
        console.print("Cold first flow run (starts Prefect's ephemeral API server) …")
        cold, cold_cpu = _timed(pipeline)
        _check("cold pipeline run", cold, expected)
        _progress(console, "cold", PIPELINE, cold)

        result = ThroughputResult(
            end_ms=end_ms,
            days=dict(workspace.days),
            plan=describe_plan(plan),
            max_concurrency=workers,
            repeat=repeat,
            warmup_seconds=warm,
            import_seconds=import_seconds,
            cold=cold,
            warnings=result_warnings,
            cpu={"cold": [cold_cpu]},
        )
        _repetitions(result, methods, expected, console)
        if profile_to is not None:
            _profiles(result, methods, profile_to, console)
    return result


def _repetitions(
    result: ThroughputResult,
    methods: Mapping[str, Callable[[], Measurement]],
    expected: int,
    console: Console,
) -> None:
    for repetition in range(result.repeat):
        order = rotated(repetition)
        result.order.append(order)
        for method in order:
            run, cpu = _timed(methods[method])
            _check(method, run, expected)
            result.runs.setdefault(method, []).append(run)
            result.cpu.setdefault(method, []).append(cpu)
            _progress(console, f"{repetition + 1}/{result.repeat}", method, run)


def _profiles(
    result: ThroughputResult,
    methods: Mapping[str, Callable[[], Measurement]],
    profile_to: tuple[str, Path],
    console: Console,
) -> None:
    """Profile one more run of the pipeline and of the bare concurrent loop (not in the medians).

    The pipeline run also records when each of its tasks ran.
    """
    py_spy, folder = profile_to

    def traced_pipeline() -> Measurement:
        with timeline.recording() as recorded:
            run = methods[PIPELINE]()
        result.timeline = recorded
        return run

    runners = {PIPELINE: traced_pipeline, BARE_CONCURRENT: methods[BARE_CONCURRENT]}
    for method, runner in runners.items():
        console.print(f"Profiling one more {method} run with py-spy (GIL samples) …")
        _, profile = profile_run(py_spy, method, folder / f"{method}-gil.txt", runner)
        result.profiles[method] = profile


def _timed(method: Callable[[], M]) -> tuple[M, dict[str, float]]:
    """Run one measurement; also return the CPU seconds each process spent meanwhile.

    The split (client / simulator / Prefect server) shows which one set the pace.
    """
    before = procstat.cpu_by_role()
    run = method()
    return run, procstat.cpu_delta(before, procstat.cpu_by_role())


def _progress(console: Console, label: str, method: str, run: Measurement) -> None:
    extra = ""
    if isinstance(run, PipelineRun):
        extra = (
            f"  (flow-internal {run.flow_seconds:.2f} s, budget waits {run.budget_wait_seconds:.2f} thread-s)"
        )
    console.print(
        f"  [dim]{label:>5}[/] {method:<16} {run.seconds:7.2f} s  "
        f"{run.candles_per_second:>10,.0f} candles/s{extra}"
    )
