"""The orchestration section: what Prefect's orchestration costs the ``daily-pipeline`` flow, end to end.

The issue: "Prefect adds about a second per flow run and a few milliseconds per task on this
machine: design the daily pipeline as few flows with many tasks. Benchmark the daily pipeline on
the embedded default end to end and report how much of its wall time is orchestration overhead
(goal: under 10 %)."

An A/B on identical work, each run in a fresh child process (``python -m bench.orchestration``)
with a fresh data folder:

- **prefect**: ``daily_pipeline(config_path, running_venues, end_ms)``, a real flow run on
  Prefect's temporary (ephemeral) API, whose stages are task runs.
- **bare**: the same composition with Prefect taken out: ``daily_pipeline.fn(...)`` with every
  Prefect task the stages use replaced by a plain call of its function (``.submit()`` by a
  ``ThreadPoolExecutor`` future of the flow's task-runner width, ``quote(x)`` unwrapped), the
  artifact calls by no-ops, ``get_run_logger`` by a standard logger, ``flow_run.id`` by None and
  the venue rate-limit lookup (a Prefect global concurrency limit, absent on the temporary API)
  by "no limit". The names are patched in the ``flows.*`` and ``tasks.*`` modules inside the
  child; nothing in those files changes.

Fairness rules:

- The workload is the embedded default (the repository's ``tradeflow.toml``: three simulated
  venues, three symbols, 90 days of 1m and 180 days of 1h) with only the data folder, the lake
  and the window's end (``history.end`` and the flow's ``end_ms``) overridden, so every run
  fetches the same candles into an empty lake.
- Before the clock starts, in both arms: the imports, the local venues (started and passed as
  ``running_venues``) and, in the prefect arm, Prefect's temporary API server (in production a
  server is already running; its start-up is reported apart). Each prefect run gets a fresh
  ``PREFECT_HOME``, so no task's result cache (``evaluate-model`` persists its results) carries
  over from an earlier run.
- The prefect arm's time includes draining Prefect's event and log workers after the flow
  returns (what a worker's flow-run process waits for before it exits); the time to return is
  shown apart.
- The arms alternate (prefect, bare, prefect, bare, ...); the medians are compared, and each pair.
- Both arms must do the same work, or the section fails: the bare arm's task calls must match
  the prefect arm's task runs by name and count, and the runs' outputs must be equal (every
  candle object's SHA-256 and rows, the feature matrix's SHA-256, the models' scores, the
  champion, the signals and weights, the backtest's trades and bars, the audit entries by kind).
  Not compared: the snapshot, signal-set, allocation and backtest ids (they embed wall-clock
  times, run ids or the probabilities' last bits, so no two runs of any kind share them);
  probabilities and scores beyond 10 significant digits (two trainings on the same data differ
  in the last bits); the order books' and trades' contents (a live venue serves them as of the
  moment they are fetched: only their count and rows are compared) and so the backtest's costs
  and final equity, whose slippage and impact are calibrated from those books (shown only).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.child import run_section
from bench.procstat import cpu_by_role, cpu_delta
from bench.workload import DEFAULT_CONFIG, REPO, BenchError

#: The issue's goal: orchestration is less than this share of the pipeline's wall time.
ORCHESTRATION_GOAL = 0.10

PREFECT = "prefect"
BARE = "bare"
ARMS = (PREFECT, BARE)

#: (prefect, bare) pairs: the full run and the --quick run (``--repeat N`` sets it). Never a smaller
#: workload. Three, not two: two pairs on the busy 2-core machine measured +19 % and +7 %.
FULL_PAIRS = 3
QUICK_PAIRS = 1

#: A hung child is killed after this long (one run takes about 2 minutes on 2 cores).
CHILD_TIMEOUT_SECONDS = 1_200.0

#: The fingerprint's part that depends on the live venues' order books: shown, not compared.
LIVE = "live_market"

STAGES = ("ingest", "validate", "snapshot", "features", "train", "signals", "allocate", "backtest")

#: The modules whose names the bare arm patches: the pipeline's composition and its tasks.
FLOW_MODULES = (
    "flows.pipeline",
    "flows.ingest",
    "flows.validate",
    "flows.snapshot",
    "flows.features",
    "flows.training",
    "flows.strategy",
    "flows.backtest",
)
TASK_MODULES = (
    "tasks.audit",
    "tasks.ingest",
    "tasks.validate",
    "tasks.snapshot",
    "tasks.features",
    "tasks.training",
    "tasks.strategy",
    "tasks.backtest",
    "tasks.notify",
)


# --- the bare arm: Prefect taken out of the same composition ---------------------------------


class BareCalls:
    """Counts the task calls the bare arm made, and the seconds spent in them, by task name (thread-safe)."""

    def __init__(self) -> None:
        """Start with no calls."""
        self.counts: Counter[str] = Counter()
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        """Count one call of the task ``name``."""
        with self._lock:
            self.counts[name] += 1

    def spent(self, name: str, seconds: float) -> None:
        """Add the seconds one call of ``name`` took, from its start to its return."""
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds


def _unquote(value: Any) -> Any:
    from prefect.utilities.annotations import BaseAnnotation

    return value.unwrap() if isinstance(value, BaseAnnotation) else value


class BareTask:
    """A Prefect task's function, called plainly: ``task(...)`` inline, ``task.submit(...)`` on a pool."""

    def __init__(self, task: Any, pool: Callable[[], ThreadPoolExecutor], calls: BareCalls) -> None:
        """Wrap ``task``.

        Args:
            task: The Prefect task whose ``fn`` is called.
            pool: Returns the executor ``.submit()`` uses (the bare flow's, created per run).
            calls: Where each call is counted, by the task's name.
        """
        self.task = task
        self.fn = task.fn
        self.name = task.name
        self._pool = pool
        self._calls = calls

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        self._calls.add(self.name)
        return [_unquote(a) for a in args], {k: _unquote(v) for k, v in kwargs.items()}

    def _timed(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self._calls.spent(self.name, time.perf_counter() - started)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function in this thread, as a Prefect task called inside a flow does."""
        positional, named = self._arguments(args, kwargs)
        return self._timed(*positional, **named)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function on the pool; return its ``concurrent.futures.Future``."""
        positional, named = self._arguments(args, kwargs)
        return self._pool().submit(self._timed, *positional, **named)


def _no_artifact(*args: Any, **kwargs: Any) -> None:
    return None


def _identity(value: Any) -> Any:
    return value


_BARE_LOGGER = logging.getLogger("tradeflow.bench.bare")


@contextlib.contextmanager
def prefect_taken_out(
    workers: int, modules: Sequence[str] = FLOW_MODULES + TASK_MODULES
) -> Iterator[BareCalls]:
    """Patch Prefect out of ``modules`` (the pipeline's) for the duration; yield the call counter.

    In each module: every Prefect task becomes a :class:`BareTask`; ``quote`` the identity;
    ``flow_run`` an object whose ``id`` is None; the artifact functions no-ops;
    ``get_run_logger`` a standard logger; ``venue_grant`` (the venue's Prefect global rate
    limit, which the temporary API does not have) "no limit".

    A fresh ``ThreadPoolExecutor(workers)`` serves ``.submit()`` and is shut down (waiting) on
    exit, as a flow's task runner is at the end of its run. Reaching for Prefect's API (its
    temporary server) while patched raises :class:`BenchError`: the bare arm must not use it.
    """
    import importlib

    import prefect
    from prefect.server.api.server import SubprocessASGIServer

    calls = BareCalls()
    executor: list[ThreadPoolExecutor] = []

    def pool() -> ThreadPoolExecutor:
        if not executor:
            executor.append(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bare-task"))
        return executor[0]

    saved: list[tuple[ModuleType | type, str, Any]] = []

    def patch(target: ModuleType | type, name: str, value: Any) -> None:
        saved.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    no_run = SimpleNamespace(id=None)
    replacements: dict[str, Any] = {
        "quote": _identity,
        "flow_run": no_run,
        "create_markdown_artifact": _no_artifact,
        "create_table_artifact": _no_artifact,
        "get_run_logger": lambda: _BARE_LOGGER,
        "venue_grant": lambda settings, venue: None,
    }
    for module in (importlib.import_module(name) for name in modules):
        for name, value in list(vars(module).items()):
            if isinstance(value, prefect.Task):
                patch(module, name, BareTask(value, pool, calls))
            elif name in replacements:
                patch(module, name, replacements[name])

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise BenchError("the bare arm reached for Prefect's API (its temporary server started)")

    patch(SubprocessASGIServer, "start", refuse)
    try:
        yield calls
    finally:
        if executor:
            executor[0].shutdown(wait=True)
        for target, name, value in reversed(saved):
            setattr(target, name, value)


# --- one run, in the child process -------------------------------------------------------------


def run_environment(run_dir: Path, end_ms: int) -> dict[str, str]:
    """Return the environment overrides of one run: a fresh data folder, lake and Prefect home.

    Everything else is the embedded default, read from the repository's ``tradeflow.toml``.
    """
    end = datetime.fromtimestamp(end_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "TRADEFLOW_DATA_DIR": str(run_dir / "data"),
        "TRADEFLOW_STORAGE__URL": str(run_dir / "data" / "lake"),
        "TRADEFLOW_HISTORY__END": end,
        "PREFECT_HOME": str(run_dir / "prefect"),
    }


def _isolate(run_dir: Path, end_ms: int) -> None:
    """Point this process at the run's fresh folders; must run before Prefect is imported."""
    for name in list(os.environ):
        if name.startswith(("TRADEFLOW_", "PREFECT_API_URL", "PREFECT_API_KEY")):
            del os.environ[name]
    os.environ.update(run_environment(run_dir, end_ms))
    from tradeflow.bootstrap import prepare_environment
    from tradeflow.config import load_settings

    prepare_environment(load_settings(DEFAULT_CONFIG))


def api_idle_cpu(seconds: float = 10.0) -> float | None:
    """Return the CPU seconds per second Prefect's API server spends with no run going on.

    Its background services poll on their own: on a 2-core machine that CPU is taken from the
    pipeline whether or not a flow runs.
    """
    before = cpu_by_role().get("prefect server")
    time.sleep(seconds)
    after = cpu_by_role().get("prefect server")
    return None if before is None or after is None else (after - before) / seconds


def _drain_prefect() -> None:
    """Wait until Prefect's event and log workers have sent everything (what a run's process waits for)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    EventsWorker.drain_all(timeout=60)
    APILogWorker.drain_all(timeout=60)


def _read_runs(settle_seconds: float = 20.0) -> dict[str, Any]:
    """Return the flow runs and task runs the temporary API holds (this run's fresh database).

    Task runs reach the API as events, recorded by the server a moment later: the counts are
    read until they stop changing. Task runs are counted by task name (through each task's
    ``task_key``, since tasks with a ``task_run_name`` have run names of their own).
    """
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + settle_seconds
    previous: tuple[int, int] | None = None
    with get_client(sync_client=True) as client:
        while True:
            flow_runs = client.read_flow_runs(limit=200)
            task_runs = _all_task_runs(client)
            current = (len(flow_runs), len(task_runs))
            if current == previous or time.monotonic() > deadline:
                break
            previous = current
            time.sleep(1.0)
    names = task_names_by_key()
    by_name = Counter(names.get(run.task_key, run.task_key) for run in task_runs)
    seconds: Counter[str] = Counter()
    for run in task_runs:
        if run.start_time is not None and run.end_time is not None:
            seconds[names.get(run.task_key, run.task_key)] += (run.end_time - run.start_time).total_seconds()
    return {
        "flow_runs": [{"name": r.name, "state": r.state_name} for r in flow_runs],
        "task_runs": len(task_runs),
        "task_runs_by_name": dict(sorted(by_name.items())),
        "task_seconds": dict(sorted(seconds.items())),
        "task_run_states": dict(Counter(str(r.state_name) for r in task_runs)),
        "task_runs_retried": sum(1 for r in task_runs if (r.run_count or 0) > 1),
    }


def _all_task_runs(client: Any, page: int = 200) -> list[Any]:
    """Return every task run, page by page (the API returns at most 200 at a time)."""
    runs: list[Any] = []
    while True:
        batch = client.read_task_runs(limit=page, offset=len(runs))
        runs += batch
        if len(batch) < page:
            return runs


def task_names_by_key(modules: Sequence[str] = TASK_MODULES) -> dict[str, str]:
    """Return each task's ``task_key`` (what a task run records) → its name, over ``modules``."""
    import importlib

    import prefect

    return {
        value.task_key: value.name
        for module_name in modules
        for value in vars(importlib.import_module(module_name)).values()
        if isinstance(value, prefect.Task)
    }


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def fingerprint(settings: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    """Return what a run produced, without ids that embed wall-clock times or run ids.

    Read from the run's lake after the clock stopped. Two runs of the same window must agree on
    every field of it.
    """
    from tradeflow.audit.chain import iter_entries
    from tradeflow.bootstrap import build_store
    from tradeflow.snapshot import load_manifest
    from tradeflow.strategy.decide import ALLOCATIONS_PREFIX, SIGNALS_PREFIX, load_document

    store = build_store(settings)
    manifest = load_manifest(store, result["snapshot_id"])
    candles = sorted(
        (o["layer"], o["key"], o["sha256"], o["rows"], bool(o.get("quarantined")))
        for o in manifest["objects"]
        if o["dataset"] == "candles"
    )
    others = sorted(
        (o["layer"], o["dataset"], o.get("venue") or "", o["symbol"], o["rows"], bool(o.get("quarantined")))
        for o in manifest["objects"]
        if o["dataset"] != "candles"
    )
    entries = list(iter_entries(store))
    signals = load_document(store, SIGNALS_PREFIX, result["signals_id"])
    allocation = load_document(store, ALLOCATIONS_PREFIX, result["allocation_id"])
    training = _training_record(store, result)
    backtest = _backtest_record(store, result)
    performance = backtest.get("performance") or {}
    feature_hash = _feature_hash(result)
    plain: dict[str, Any] = _plain(
        {
            "candle_objects": candles,
            "other_objects": others,
            "validations": len(result["validations"]),
            "features": {
                **result["features"],
                **{k: _feature_manifest(store, result).get(k) for k in ("rows", "sha256", "columns")},
            },
            "training": {
                "champion": result["training"]["champion"],
                "models": [
                    {"name": m["name"], "version": m["version"], "overall": _rounded(m["overall"])}
                    for m in training["record"]["models"]
                ],
                "promote": training["decision"]["promote"],
                "rows": training.get("rows"),
            },
            # Probabilities (and the ids hashed over them) vary in the last bits between any two
            # trainings on the same data: compared to 10 significant digits, without those hashes.
            "signals": _rounded(
                [
                    {
                        "symbol": e.get("symbol"),
                        "probability": e.get("probability"),
                        "reason": e.get("reason"),
                        "signal": None
                        if e.get("signal") is None
                        else {k: v for k, v in e["signal"].items() if k not in ("id", "fingerprint")},
                    }
                    for e in signals["evaluations"]
                ]
            ),
            "weights": _rounded(
                [
                    {k: w.get(k) for k in ("symbol", "weight", "quantity", "reasons")}
                    for w in allocation["weights"]
                ]
            ),
            "backtest": {
                "model_version": backtest.get("model_version"),
                **{
                    k: performance.get(k)
                    for k in ("trades", "bars", "start_time", "end_time", "start_equity")
                },
            },
            "feature_set_hash": feature_hash,
            "audit_entries": result["audit_entries"],
            "audit_chain_by_kind": dict(sorted(Counter(e.kind for e in entries).items())),
            "checkpoint_entries": result["checkpoint"]["entries"],
            # Not compared: the backtest's slippage and impact are calibrated from the order books
            # stored at ingest, which a live venue serves as of the moment they are fetched.
            LIVE: {
                "final_equity": performance.get("final_equity"),
                "costs": backtest.get("costs"),
            },
        }
    )
    return plain


def _rounded(value: Any, digits: int = 10) -> Any:
    """Return ``value`` with every float rounded to ``digits`` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v, digits) for v in value]
    return value


def _feature_hash(result: Mapping[str, Any]) -> str:
    # The flow's result names the feature set's hash under "feature_set" (its "feature_set_hash" is empty).
    features = result["features"]
    return str(features.get("feature_set_hash") or (features.get("feature_set") or {}).get("hash"))


def _feature_manifest(store: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    from tradeflow.features.store import read_manifest

    found: dict[str, Any] | None = read_manifest(store, _feature_hash(result), result["snapshot_id"])
    return found or {}


def _training_record(store: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    from models.training import TRAINING_RECORDS_PREFIX

    for key in store.list(f"{TRAINING_RECORDS_PREFIX}/"):
        record: dict[str, Any] = json.loads(store.get(key))
        if record["record"]["parent_run_id"] == result["training"]["parent_run_id"]:
            return record
    raise BenchError(f"no training record of MLflow run {result['training']['parent_run_id']}")


def _backtest_record(store: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    from tasks.backtest import _run_record_key

    record: dict[str, Any] = json.loads(store.get(_run_record_key(result["backtest_id"])))
    return record


def run_arm(arm: str, run_dir: Path, end_ms: int, console: Console) -> dict[str, Any]:
    """Run the daily pipeline once in this process, as ``arm``; return its timings and fingerprint."""
    started_child = time.perf_counter()
    load_before = os.getloadavg()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise BenchError(f"{run_dir} is not empty: every run needs a fresh data folder and Prefect home")
    _isolate(run_dir, end_ms)
    from tradeflow.bootstrap import local_venues
    from tradeflow.config import load_settings

    began = time.perf_counter()
    import flows.pipeline  # noqa: F401  (every stage's flows and tasks, GX, the models)
    from flows.ingest import start_prefect_api_early
    from flows.pipeline import daily_pipeline

    import_seconds = time.perf_counter() - began
    settings = load_settings(DEFAULT_CONFIG)
    api_seconds = None
    if arm == PREFECT:
        began = time.perf_counter()
        start_prefect_api_early()()
        api_seconds = time.perf_counter() - began
    workers = int(getattr(daily_pipeline.task_runner, "_max_workers", 8))
    idle_cpu = api_idle_cpu() if arm == PREFECT else None
    began = time.perf_counter()
    with local_venues(settings) as running:
        venues_seconds = time.perf_counter() - began
        console.print(
            f"  {arm}: imports {import_seconds:.1f} s"
            + (f", Prefect API start-up {api_seconds:.1f} s" if api_seconds is not None else "")
            + f", venues {venues_seconds:.1f} s; running the daily pipeline ..."
        )
        parameters: dict[str, Any] = {
            "config_path": str(DEFAULT_CONFIG),
            "running_venues": dict(running),
            "end_ms": end_ms,
        }
        printed = io.StringIO()
        gc.collect()
        drain_seconds = 0.0
        cpu_before = cpu_by_role()
        if arm == PREFECT:
            began = time.perf_counter()
            with contextlib.redirect_stdout(printed):
                result = daily_pipeline(**parameters)
            returned = time.perf_counter() - began
            _drain_prefect()
            seconds = time.perf_counter() - began
            drain_seconds = seconds - returned
            calls: dict[str, int] | None = None
            task_seconds = {}
        else:
            began = time.perf_counter()
            with prefect_taken_out(workers) as counter, contextlib.redirect_stdout(printed):
                result = daily_pipeline.fn(**parameters)
            seconds = returned = time.perf_counter() - began
            calls = dict(sorted(counter.counts.items()))
            task_seconds = dict(sorted(counter.seconds.items()))
        cpu = cpu_delta(cpu_before, cpu_by_role())
    runs = _read_runs() if arm == PREFECT else None
    outcome = {
        "arm": arm,
        "end_ms": end_ms,
        "seconds": seconds,
        "returned_seconds": returned,
        "drain_seconds": drain_seconds,
        "cpu_seconds": cpu,
        "stage_seconds": dict(result["seconds"]),
        "import_seconds": import_seconds,
        "api_start_seconds": api_seconds,
        "venues_start_seconds": venues_seconds,
        "workers": workers,
        "task_calls": calls,
        "task_seconds": task_seconds or (runs or {}).get("task_seconds", {}),
        "api_idle_cpu_per_second": idle_cpu,
        "runs": runs,
        "ids": {
            "snapshot_id": result["snapshot_id"],
            "feature_set_hash": _feature_hash(result),
            "signals_id": result["signals_id"],
            "allocation_id": result["allocation_id"],
            "backtest_id": result["backtest_id"],
            "training_run": result["training"]["parent_run_id"],
        },
        "fingerprint": fingerprint(settings, result),
        "printed_lines": printed.getvalue().count("\n"),
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "child_seconds": time.perf_counter() - started_child,
    }
    return outcome


# --- the section, in the parent ---------------------------------------------------------------


@dataclass
class OrchestrationResult:
    """Every run of both arms, in the order they ran."""

    window_end: str
    end_ms: int
    pairs: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrchestrationResult:
        """Return the result from its JSON form."""
        return cls(**dict(data))

    def to_json(self) -> dict[str, Any]:
        """Return the result as plain data (the summary included)."""
        return asdict(self) | {"summary": self.summary()}

    def arm(self, arm: str) -> list[dict[str, Any]]:
        """Return the runs of one arm, in order."""
        return [run for run in self.runs if run["arm"] == arm]

    def median(self, arm: str, key: str = "seconds") -> float:
        """Return the median of ``key`` over the arm's runs."""
        return float(statistics.median(run[key] for run in self.arm(arm)))

    def stage_median(self, arm: str, stage: str) -> float:
        """Return the median seconds of one stage over the arm's runs."""
        return float(statistics.median(run["stage_seconds"].get(stage, 0.0) for run in self.arm(arm)))

    @property
    def task_runs(self) -> int:
        """Return the task runs of a prefect run (all equal, checked)."""
        return int(self.arm(PREFECT)[0]["runs"]["task_runs"])

    @property
    def flow_runs(self) -> int:
        """Return the flow runs of a prefect run."""
        return len(self.arm(PREFECT)[0]["runs"]["flow_runs"])

    @property
    def overhead(self) -> float:
        """Return (prefect - bare) / prefect on the medians."""
        prefect = self.median(PREFECT)
        return (prefect - self.median(BARE)) / prefect

    def task_seconds(self, arm: str, name: str) -> float:
        """Return the median over the arm's runs of the seconds spent inside task ``name``."""
        return float(statistics.median(run.get("task_seconds", {}).get(name, 0.0) for run in self.arm(arm)))

    def cpu_median(self, arm: str) -> float:
        """Return the median CPU seconds of the arm's runs, over all processes (the API server's too)."""
        return float(statistics.median(sum(run["cpu_seconds"].values()) for run in self.arm(arm)))

    def pair_overheads(self) -> list[float]:
        """Return (prefect - bare) / prefect of each alternating pair."""
        return [
            (a["seconds"] - b["seconds"]) / a["seconds"]
            for a, b in zip(self.arm(PREFECT), self.arm(BARE), strict=False)
        ]

    def summary(self) -> dict[str, Any]:
        """Return the headline numbers."""
        prefect, bare = self.median(PREFECT), self.median(BARE)
        return {
            "prefect_median_seconds": prefect,
            "bare_median_seconds": bare,
            "bare_over_prefect": bare / prefect,
            "overhead_fraction": self.overhead,
            "overhead_seconds": prefect - bare,
            "pair_overheads": self.pair_overheads(),
            "pair_overhead_median": statistics.median(self.pair_overheads()),
            "task_runs": self.task_runs,
            "flow_runs": self.flow_runs,
            "per_task_ms": (prefect - bare) / self.task_runs * 1000 if self.task_runs else None,
            "api_start_seconds": [r["api_start_seconds"] for r in self.arm(PREFECT)],
            "prefect_cpu_seconds": self.cpu_median(PREFECT),
            "bare_cpu_seconds": self.cpu_median(BARE),
            "cpu_overhead_fraction": (self.cpu_median(PREFECT) - self.cpu_median(BARE))
            / self.cpu_median(PREFECT),
            "goal_below": ORCHESTRATION_GOAL,
            "passed": self.overhead < ORCHESTRATION_GOAL,
        }


def _differences(left: Any, right: Any, path: str = "") -> list[str]:
    """Return where two fingerprints differ (paths and both values, shortened)."""
    if isinstance(left, dict) and isinstance(right, dict):
        found: list[str] = []
        for key in sorted(set(left) | set(right)):
            found += _differences(left.get(key), right.get(key), f"{path}.{key}" if path else str(key))
        return found
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        found = []
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            found += _differences(a, b, f"{path}[{index}]")
        return found
    if left != right:
        return [f"{path}: {str(left)[:160]} != {str(right)[:160]}"]
    return []


def _compared(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fingerprint.items() if k != LIVE}


def check_same_work(runs: Sequence[Mapping[str, Any]]) -> None:
    """Fail unless every run did the same work as the first prefect run.

    The same outputs (fingerprints), the same task runs in every prefect run, and the bare arm's
    task calls equal to the prefect arm's task runs, by name and count.

    Raises:
        BenchError: naming what differs.
    """
    reference = next(r for r in runs if r["arm"] == PREFECT)
    problems: list[str] = []
    for index, run in enumerate(runs, 1):
        label = f"run {index} ({run['arm']})"
        problems += [
            f"{label}: {d}"
            for d in _differences(_compared(reference["fingerprint"]), _compared(run["fingerprint"]))
        ]
        if run["arm"] == PREFECT:
            if run["runs"]["task_runs_by_name"] != reference["runs"]["task_runs_by_name"]:
                problems.append(f"{label}: task runs {run['runs']['task_runs_by_name']} differ from run 1's")
            if len(run["runs"]["flow_runs"]) != 1:
                problems.append(f"{label}: {len(run['runs']['flow_runs'])} flow runs, expected 1")
        elif run["task_calls"] != reference["runs"]["task_runs_by_name"]:
            problems += [
                f"{label}: task {name}: {run['task_calls'].get(name, 0)} bare calls vs "
                f"{reference['runs']['task_runs_by_name'].get(name, 0)} task runs"
                for name in sorted(set(run["task_calls"]) | set(reference["runs"]["task_runs_by_name"]))
                if run["task_calls"].get(name, 0) != reference["runs"]["task_runs_by_name"].get(name, 0)
            ]
    if problems:
        raise BenchError("the arms did not do the same work:\n  " + "\n  ".join(problems[:40]))


def measure_orchestration(
    end_ms: int, pairs: int, console: Console, workdir: Path | None = None, keep: bool = False
) -> OrchestrationResult:
    """Run ``pairs`` alternating (prefect, bare) child runs; check they did the same work.

    Args:
        end_ms: The pinned window end (the same for every run).
        pairs: How many (prefect, bare) pairs; at least 1.
        console: Where progress goes.
        workdir: Parent of the runs' temporary folders (default: system temp).
        keep: Keep each run's data folder.

    Every run's raw result is written to ``runs.json`` in the section's folder as it arrives;
    the folder (without the runs' data unless ``keep``) is left in place when the section fails.

    Raises:
        BenchError: if a child fails, or the runs did not do the same work.
    """
    from tradeflow.timeframes import iso

    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="tradeflow-bench-orchestration-", dir=workdir))
    result = OrchestrationResult(window_end=iso(end_ms), end_ms=end_ms, pairs=pairs)
    result.load_before = list(os.getloadavg())
    console.print(
        f"[bold]orchestration[/]: daily-pipeline on the embedded default, window end {iso(end_ms)} UTC, "
        f"{pairs} × (prefect, bare), each in a fresh process and data folder under {root}"
    )
    try:
        for index in range(pairs):
            for arm in ARMS:
                run_dir = root / f"{index + 1}-{arm}"
                arguments = ["--arm", arm, "--run-dir", str(run_dir), "--end-ms", str(end_ms)]
                run = run_section("orchestration", arguments, CHILD_TIMEOUT_SECONDS)
                console.print(
                    f"  {arm} #{index + 1}: {run['seconds']:.1f} s"
                    + (f" ({run['runs']['task_runs']} task runs)" if run["runs"] else "")
                    + f"; load {run['load_before'][0]:.1f} → {run['load_after'][0]:.1f}"
                )
                result.runs.append(run)
                (root / "runs.json").write_text(json.dumps(result.runs, indent=1) + "\n")
                if not keep:
                    shutil.rmtree(run_dir, ignore_errors=True)
        result.load_after = list(os.getloadavg())
        check_same_work(result.runs)
    except BenchError as error:
        raise BenchError(f"{error}\n(raw results of the runs so far: {root / 'runs.json'})") from error
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    for run in result.arm(PREFECT):
        retried = run["runs"]["task_runs_retried"]
        if retried:
            result.warnings.append(f"{retried} task runs were retried by Prefect in one prefect run")
    return result


# --- output ------------------------------------------------------------------------------------


def _goal(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"


def _cpu(seconds: Mapping[str, float]) -> str:
    server = seconds.get("prefect server")
    return f"{sum(seconds.values()):.1f}" + (f" ({server:.1f})" if server is not None else "")


def _spread(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    middle = statistics.median(values)
    return f"{low:.1f}–{high:.1f} (±{(high - low) / 2 / middle:.1%})" if len(values) > 1 else "1 run"


def tables(result: OrchestrationResult) -> list[Table]:
    """Return the section's tables: every run, the arms side by side, the overhead, the stages."""
    every = Table(
        title=f"Orchestration — daily-pipeline on the embedded default, window end {result.window_end} UTC",
        caption="wall s: the flow call (prefect: until it returned, plus draining Prefect's event and log "
        "workers); CPU s: user + system seconds of every process of the run in that time (in brackets: "
        "Prefect's API server); load: the machine's 1-minute load average before → after the run",
        header_style="bold",
    )
    for column in (
        "#",
        "arm",
        "wall s",
        "returned s",
        "drain s",
        *STAGES,
        "task runs / calls",
        "CPU s",
        "load",
    ):
        every.add_column(column, justify="left" if column in ("arm",) else "right")
    for index, run in enumerate(result.runs, 1):
        count = run["runs"]["task_runs"] if run["runs"] else sum((run["task_calls"] or {}).values())
        every.add_row(
            str(index),
            run["arm"],
            f"{run['seconds']:.1f}",
            f"{run['returned_seconds']:.1f}",
            f"{run['drain_seconds']:.2f}",
            *(f"{run['stage_seconds'].get(stage, 0.0):.1f}" for stage in STAGES),
            str(count),
            _cpu(run["cpu_seconds"]),
            f"{run['load_before'][0]:.1f} → {run['load_after'][0]:.1f}",
        )
    side = Table(
        title="Daily pipeline: Prefect flow run vs the same composition without Prefect",
        caption="vs baseline: bare / prefect (1.00× = no orchestration cost)",
        header_style="bold",
    )
    for column in ("arm", "median s", "runs (s)", "spread", "vs baseline"):
        side.add_column(column, justify="left" if column == "arm" else "right")
    bare = result.median(BARE)
    for arm, label in ((PREFECT, "prefect (flow run, task runs)"), (BARE, "bare (plain calls, thread pool)")):
        values = [run["seconds"] for run in result.arm(arm)]
        side.add_row(
            label,
            f"{result.median(arm):.1f}",
            " ".join(f"{v:.1f}" for v in values),
            _spread(values),
            f"{bare / result.median(arm):.2f}×",
        )
    summary = result.summary()
    head = Table(
        title=f"Orchestration overhead (goal < {ORCHESTRATION_GOAL:.0%} of the wall time)",
        header_style="bold",
    )
    for column in ("measure", "value"):
        head.add_column(column, justify="left" if column == "measure" else "right")
    pairs = ", ".join(f"{p:+.1%}" for p in summary["pair_overheads"])
    head.add_row("overhead (prefect − bare) / prefect, medians", f"{summary['overhead_fraction']:+.1%}")
    head.add_row(
        "… each alternating pair (their median)", f"{pairs} ({summary['pair_overhead_median']:+.1%})"
    )
    head.add_row("overhead seconds (medians)", f"{summary['overhead_seconds']:+.2f}")
    head.add_row(
        "CPU seconds, all processes (medians): prefect / bare → share",
        f"{summary['prefect_cpu_seconds']:.1f} / {summary['bare_cpu_seconds']:.1f} → "
        f"{summary['cpu_overhead_fraction']:+.1%}",
    )
    equity = [run["fingerprint"][LIVE]["final_equity"] for run in result.runs]
    if all(isinstance(e, int | float) for e in equity):
        head.add_row(
            "backtest final equity across runs (impact from live order books; not compared)",
            f"{min(equity):,.2f} – {max(equity):,.2f}",
        )
    head.add_row("flow runs / task runs per pipeline run", f"{summary['flow_runs']} / {summary['task_runs']}")
    per_task = summary["per_task_ms"]
    head.add_row(
        "per task run ≈ (prefect − bare) / task runs", "—" if per_task is None else f"{per_task:+.1f} ms"
    )
    drains = [run["drain_seconds"] for run in result.arm(PREFECT)]
    head.add_row(
        "draining Prefect's workers after the flow returned (in the wall)",
        f"{statistics.median(drains):.2f} s",
    )
    api = [run["api_start_seconds"] for run in result.arm(PREFECT)]
    head.add_row(
        "Prefect temporary API start-up (fresh database; not in the wall)",
        " ".join(f"{s:.1f}" for s in api) + " s",
    )
    idle = [run.get("api_idle_cpu_per_second") for run in result.arm(PREFECT)]
    if all(isinstance(v, int | float) for v in idle):
        head.add_row(
            "API server's CPU while idle, before the run (CPU s per s)", " ".join(f"{v:.3f}" for v in idle)
        )
    imports = [run["import_seconds"] for run in result.runs]
    head.add_row("imports of flows.pipeline (not in the wall)", f"{statistics.median(imports):.1f} s")
    head.add_row("verdict", _goal(summary["passed"]))
    stages = Table(title="Per stage, medians (s): where the difference sits", header_style="bold")
    for column in ("stage", "prefect", "bare", "prefect − bare", "task runs"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    by_stage = stage_task_runs(result)
    for stage in STAGES:
        a, b = result.stage_median(PREFECT, stage), result.stage_median(BARE, stage)
        stages.add_row(stage, f"{a:.2f}", f"{b:.2f}", f"{a - b:+.2f}", str(by_stage.get(stage, "")))
    names = Table(
        title="By task: task runs, and seconds inside them (summed over the task's runs; medians over runs)",
        caption="prefect: each task run's start → end as the API recorded it; bare: each call's start → "
        "return. Concurrent tasks overlap, so the sums exceed the wall time",
        header_style="bold",
    )
    for column in ("task", "stage", "task runs", "bare calls", "prefect s", "bare s", "prefect − bare s"):
        names.add_column(column, justify="left" if column in ("task", "stage") else "right")
    calls = result.arm(BARE)[0]["task_calls"] or {}
    for name, count in result.arm(PREFECT)[0]["runs"]["task_runs_by_name"].items():
        a, b = result.task_seconds(PREFECT, name), result.task_seconds(BARE, name)
        names.add_row(
            name,
            TASK_STAGE.get(name, "—"),
            str(count),
            str(calls.get(name, 0)),
            f"{a:.2f}",
            f"{b:.2f}",
            f"{a - b:+.2f}",
        )
    return [every, side, head, stages, names]


#: Which stage each task belongs to (``checkpoint-audit`` ends the flow, outside every stage).
TASK_STAGE = {
    "read-lake-state": "ingest", "connect-venue": "ingest", "fetch-candle-series": "ingest",
    "snapshot-market": "ingest", "publish-manifest": "ingest", "report-ingest": "ingest",
    "plan-validation": "validate", "read-ingest-batch": "validate", "validate-candles": "validate",
    "validate-snapshot": "validate", "build-data-docs": "validate", "publish-validation": "validate",
    "report-validation": "validate",
    "create-snapshot": "snapshot", "report-snapshot": "snapshot",
    "plan-features": "features", "read-symbol": "features", "build-matrix": "features",
    "report-features": "features",
    "find-training": "train", "prepare-training": "train", "evaluate-model": "train",
    "log-training": "train", "report-training": "train",
    "decide-signals": "signals", "report-signals": "signals",
    "allocate-weights": "allocate", "report-allocation": "allocate",
    "find-backtest": "backtest", "load-backtest-inputs": "backtest", "simulate-and-report": "backtest",
    "report-backtest": "backtest",
}  # fmt: skip


def stage_task_runs(result: OrchestrationResult) -> dict[str, int]:
    """Return the task runs of one prefect run per stage (tasks outside the map under ``other``)."""
    counts: Counter[str] = Counter()
    for name, count in result.arm(PREFECT)[0]["runs"]["task_runs_by_name"].items():
        counts[TASK_STAGE.get(name, "other")] += count
    return dict(counts)


def verdicts(result: OrchestrationResult) -> list[str]:
    """Return the section's verdict line (rich markup)."""
    s = result.summary()
    per_task = "—" if s["per_task_ms"] is None else f"{s['per_task_ms']:+.1f} ms"
    pairs = ", ".join(f"{p:+.1%}" for p in s["pair_overheads"])
    return [
        f"Orchestration (daily-pipeline, embedded default): prefect {s['prefect_median_seconds']:.1f} s "
        f"vs bare {s['bare_median_seconds']:.1f} s (medians of {result.pairs}; "
        f"bare/prefect {s['bare_over_prefect']:.2f}×) "
        f"= {s['overhead_fraction']:+.1%} overhead (pairs: {pairs}) with {s['flow_runs']} flow run and "
        f"{s['task_runs']} task runs, ≈ {per_task} per task run (goal < {ORCHESTRATION_GOAL:.0%}) → "
        f"{_goal(s['passed'])}; same outputs in every run."
    ]


def run_in_child(
    end_ms: int,
    quick: bool,
    console: Console,
    workdir: Path | None = None,
    keep: bool = False,
    pairs: int | None = None,
) -> OrchestrationResult:
    """Run the section (each run in a child ``python -m bench.orchestration``) and return it.

    ``pairs`` defaults to :data:`FULL_PAIRS` (``quick``: :data:`QUICK_PAIRS`).
    """
    count = pairs if pairs is not None else QUICK_PAIRS if quick else FULL_PAIRS
    return measure_orchestration(end_ms, count, console, workdir, keep)


# --- the child process ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a child: one run of one arm; write its raw result as JSON; return the exit code."""
    description = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.orchestration", description=description)
    parser.add_argument(
        "--arm", choices=ARMS, required=True, help="prefect: a flow run; bare: Prefect taken out"
    )
    parser.add_argument("--run-dir", type=Path, required=True, help="a fresh folder for the run's data")
    parser.add_argument("--end-ms", type=int, required=True, help="the pinned window end (UTC ms)")
    parser.add_argument("--json", type=Path, required=True, help="where the raw result goes")
    args = parser.parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    console = Console() if sys.stdout.isatty() else Console(width=120)
    try:
        outcome = run_arm(args.arm, args.run_dir, args.end_ms, console)
    except BenchError as error:
        print(f"benchmark invalid: {error}", file=sys.stderr)
        return 2
    args.json.write_text(json.dumps(outcome, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
