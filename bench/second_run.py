"""Sections 2 and 3: the real CLI twice over one pinned window, and its peak memory.

``python -m tradeflow.cli ingest --no-progress --end <pinned> --storage <lake> --json FILE`` runs
as a subprocess, exactly as a user runs it (its own local venues, its own Prefect API server).
The first run fills an empty lake; the second finds nothing new. Both wall times and the flow's
own "seconds" (from ``--json``) are reported: the wall time includes the fixed start-up cost of a
fresh process (imports, simulator, Prefect server), the flow seconds do not.

Peak RSS comes from two places, because a single number would mislead:

- ``VmHWM`` (the kernel's peak-RSS mark) of the pipeline process itself and of each child
  (simulator, Prefect server), sampled from ``/proc`` while they run. It is monotonic, so
  sampling only misses growth in the last interval before exit.
- ``/usr/bin/time -v`` (when installed) around the CLI: its "Maximum resident set size" is the
  largest peak in the CLI's process tree. Not ``getrusage(RUSAGE_CHILDREN)`` or ``os.wait4``
  here: Linux charges a child, at ``exec``, the peak RSS of the process it was forked from, so
  they would report this benchmark process's own (Prefect-loaded) peak instead. ``time`` is a
  small process, so what it reports is the CLI tree's.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import procstat
from bench.workload import REPO, BenchError, Workspace, cli_end

SAMPLE_INTERVAL_SECONDS = 0.05
CLI_TIMEOUT_SECONDS = 900.0
GNU_TIME = "/usr/bin/time"


@dataclass
class ProcessPeak:
    """The highest VmHWM seen for one process."""

    pid: int
    role: str
    command: str
    peak_kib: int


class TreeSampler:
    """Samples VmHWM of a process and its descendants in a background thread until stopped."""

    def __init__(self, root: int, deadline: float, on_deadline: Callable[[], None]) -> None:
        """Watch ``root``; call ``on_deadline()`` once if it is still running at ``deadline``."""
        self.root = root
        self.peaks: dict[int, ProcessPeak] = {}
        self._deadline = deadline
        self._on_deadline = on_deadline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        """Start sampling."""
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in [self.root, *procstat.descendants(self.root)]:
                self._sample(pid)
            if time.monotonic() > self._deadline:
                self._on_deadline()
                self._deadline = float("inf")
            self._stop.wait(SAMPLE_INTERVAL_SECONDS)

    def _sample(self, pid: int) -> None:
        peak = procstat.peak_rss_kib(pid)
        if peak is None:
            return
        known = self.peaks.get(pid)
        if known is None:
            self.peaks[pid] = ProcessPeak(pid, procstat.role(pid), procstat.command(pid), peak)
        elif peak > known.peak_kib:
            known.peak_kib = peak


# --- one CLI run ------------------------------------------------------------------------------


@dataclass
class CliRun:
    """One run of the CLI as a subprocess."""

    label: str
    command: list[str]
    exit_code: int
    seconds: float  # wall time from spawn to exit
    flow_seconds: float | None  # the flow's own "seconds" from --json
    candles: int | None  # new candles stored
    manifest_sequence: int | None
    manifest_new_objects: int | None
    pipeline_peak_kib: int | None  # sampled VmHWM of the CLI process itself
    tree_max_rss_kib: int | None  # GNU time's maximum resident set size over the CLI's tree
    children: list[ProcessPeak] = field(default_factory=list)
    log: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return plain data for the results file."""
        return asdict(self)


def _gnu_time_max_rss(path: Path) -> int | None:
    try:
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", path.read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def run_cli(
    label: str, command: Sequence[str], env: Mapping[str, str], run_dir: Path, json_path: Path | None
) -> CliRun:
    """Run ``command`` (under ``/usr/bin/time -v`` if installed), time it and sample its memory."""
    log_path, time_path = run_dir / f"{label}.log", run_dir / f"{label}.time"
    wrapper = [GNU_TIME, "-v", "-o", str(time_path)] if shutil.which(GNU_TIME) else []
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*wrapper, *command],
            cwd=REPO,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        # A hung run is killed with its whole tree: under `time`, the CLI is a grandchild.
        on_timeout = functools.partial(procstat.kill_tree, proc.pid)
        with TreeSampler(proc.pid, time.monotonic() + CLI_TIMEOUT_SECONDS, on_timeout) as sampler:
            exit_code = proc.wait()
        seconds = time.perf_counter() - started
    result = json.loads(json_path.read_text()) if json_path and json_path.is_file() else None
    manifest = None if result is None else result["manifest"]
    pipeline = next((p for p in sampler.peaks.values() if p.role == "pipeline (CLI)"), None)
    return CliRun(
        label=label,
        command=list(command),
        exit_code=exit_code,
        seconds=seconds,
        flow_seconds=None if result is None else float(result["seconds"]),
        candles=None if result is None else sum(s["candles"] for s in result["series"]),
        manifest_sequence=None if manifest is None else int(manifest["sequence"]),
        manifest_new_objects=None if manifest is None else int(manifest["new_objects"]),
        pipeline_peak_kib=None if pipeline is None else pipeline.peak_kib,
        tree_max_rss_kib=_gnu_time_max_rss(time_path) if wrapper else None,
        # Everything but the root (the time wrapper, or the CLI itself) and the pipeline process.
        children=[p for p in sampler.peaks.values() if p.pid != proc.pid and p is not pipeline],
        log=str(log_path),
    )


# --- the section ------------------------------------------------------------------------------


@dataclass
class SecondRunResult:
    """Both CLI runs and the import floor of a fresh interpreter."""

    end: str
    first: CliRun
    second: CliRun
    import_seconds: float

    @property
    def wall_ratio(self) -> float:
        """Return second-run wall time over first-run wall time."""
        return self.second.seconds / self.first.seconds

    @property
    def flow_ratio(self) -> float | None:
        """Return second-run flow seconds over first-run flow seconds."""
        if not self.first.flow_seconds or self.second.flow_seconds is None:
            return None
        return self.second.flow_seconds / self.first.flow_seconds

    def to_json(self) -> dict[str, Any]:
        """Return plain data for the results file."""
        return {
            "end": self.end,
            "first": self.first.to_json(),
            "second": self.second.to_json(),
            "import_seconds": self.import_seconds,
            "ratio_wall_second_over_first": self.wall_ratio,
            "ratio_flow_second_over_first": self.flow_ratio,
        }


def _checked(run: CliRun) -> CliRun:
    if run.exit_code != 0 or run.flow_seconds is None:
        tail = Path(run.log).read_text(errors="replace")[-3000:]
        raise BenchError(f"{run.label} CLI run: `{' '.join(run.command)}` exited {run.exit_code}\n{tail}")
    if (run.label == "first") != bool(run.candles):
        raise BenchError(
            f"{run.label} CLI run stored {run.candles} new candles: the first run must fill "
            "an empty lake and the second must find nothing new"
        )
    return run


def _import_floor(python: str, env: Mapping[str, str]) -> float:
    """Return the wall time of a fresh interpreter importing the CLI and the flow (a fixed cost)."""
    started = time.perf_counter()
    subprocess.run(
        [python, "-c", "import tradeflow.cli, flows.ingest"],
        cwd=REPO,
        env=dict(env),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def measure_second_run(workspace: Workspace, end_ms: int, console: Console) -> SecondRunResult:
    """Run the CLI into an empty lake, then again over the same window; return both runs.

    Args:
        workspace: Holds the config file, the lake, the logs and the JSON results.
        end_ms: The pinned window end.
        console: Where progress lines go.
    """
    config_path, _ = workspace.new_run("second-run")
    run_dir = config_path.parent
    lake = run_dir / "lake"
    python = sys.executable  # the project's .venv interpreter when run as `make bench`
    env = {**os.environ, "TRADEFLOW_CONFIG": str(config_path)}
    end = cli_end(end_ms)
    runs = []
    for label in ("first", "second"):
        json_path = run_dir / f"{label}.json"
        command = [
            python,
            "-m",
            "tradeflow.cli",
            "ingest",
            "--no-progress",
            "--end",
            end,
            "--storage",
            str(lake),
            "--json",
            str(json_path),
        ]
        console.print(f"CLI {label} run: [dim]TRADEFLOW_CONFIG={config_path} {' '.join(command)}[/]")
        run = _checked(run_cli(label, command, env, run_dir, json_path))
        console.print(
            f"  {run.seconds:7.2f} s wall, {run.flow_seconds:.2f} s in the flow, "
            f"{run.candles:,} new candles, peak RSS {run.pipeline_peak_kib or 0:,} KiB"
        )
        runs.append(run)
    import_seconds = _import_floor(python, env)
    return SecondRunResult(end=end, first=runs[0], second=runs[1], import_seconds=import_seconds)
