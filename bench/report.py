"""The benchmark's output: rich tables, one verdict line per goal, and the JSON results file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.second_run import SecondRunResult
from bench.throughput import BARE_CONCURRENT, BARE_SEQUENTIAL, PIPELINE, ThroughputResult

#: The project's stated goal: the pipeline costs at most this multiple of the bare fetch loop.
THROUGHPUT_GOAL = 1.25

_LABELS = {
    PIPELINE: "pipeline (whole Prefect flow)",
    BARE_SEQUENTIAL: "bare loop, sequential",
    BARE_CONCURRENT: "bare loop, {workers} threads",
}


_SMALL_KIB = 16 * 1024


def _mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:,.0f} MiB"


def throughput_table(result: ThroughputResult) -> Table:
    """Return the per-method table: median seconds, spread, candles and candles per second."""
    plan = result.plan
    days = ", ".join(f"{d} d of {tf}" for tf, d in result.days.items())
    table = Table(
        title=f"Ingestion throughput — {plan['series']} series, {plan['pages']:,} pages, "
        f"{plan['candles']:,} candles ({days}), window end {result.to_json()['window_end']}",
        header_style="bold",
    )
    for column in ("method", "median s", "runs (s)", "candles", "candles/s", "vs pipeline"):
        table.add_column(column, justify="left" if column == "method" else "right")
    pipeline = result.summary(PIPELINE).seconds
    for method in (PIPELINE, BARE_SEQUENTIAL, BARE_CONCURRENT):
        summary = result.summary(method)
        table.add_row(
            _LABELS[method].format(workers=result.max_concurrency),
            f"{summary.seconds:.2f}",
            " ".join(f"{s:.2f}" for s in summary.runs),
            f"{summary.candles:,}",
            f"{summary.candles_per_second:,.0f}",
            f"{pipeline / summary.seconds:.2f}×",
        )
    cold = result.cold
    table.add_row(
        "[dim]pipeline, cold first run[/]",
        f"[dim]{cold.seconds:.2f}[/]",
        "[dim]1 run[/]",
        f"[dim]{cold.candles:,}[/]",
        f"[dim]{cold.candles_per_second:,.0f}[/]",
        f"[dim]{cold.seconds / pipeline:.2f}×[/]",
    )
    return table


def ratio_table(result: ThroughputResult) -> Table:
    """Return the ratios against each baseline, with PASS/MISS for the like-for-like one."""
    table = Table(title=f"Pipeline cost vs bare fetch loop (goal ≤ {THROUGHPUT_GOAL}×)", header_style="bold")
    for column in ("ratio", "value", "verdict"):
        table.add_column(column, justify="left" if column == "ratio" else "right")
    concurrent = result.ratio(BARE_CONCURRENT)
    table.add_row(
        f"pipeline / bare concurrent ({result.max_concurrency} threads, like-for-like)",
        f"{concurrent:.2f}×",
        _pass(concurrent),
    )
    table.add_row("pipeline / bare sequential", f"{result.ratio(BARE_SEQUENTIAL):.2f}×", "[dim]shown only[/]")
    return table


def _pass(ratio: float) -> str:
    return "[bold green]PASS[/]" if ratio <= THROUGHPUT_GOAL else "[bold red]MISS[/]"


def pipeline_details(result: ThroughputResult) -> Table:
    """Return where the pipeline's time goes besides fetching: flow-internal time, waits, retries."""
    table = Table(title="Pipeline runs in detail", header_style="bold")
    for column in (
        "run",
        "wall s",
        "flow-internal s",
        "outside the flow s",
        "budget waits (thread-s)",
        "retries",
        "pages",
    ):
        table.add_column(column, justify="left" if column == "run" else "right")
    runs = [("cold", result.cold)] + [(f"rep {i + 1}", r) for i, r in enumerate(result.pipeline_runs())]
    for label, run in runs:
        table.add_row(
            label,
            f"{run.seconds:.2f}",
            f"{run.flow_seconds:.2f}",
            f"{run.seconds - run.flow_seconds:.2f}",
            f"{run.budget_wait_seconds:.2f}",
            str(run.retries),
            f"{run.pages:,}",
        )
    return table


def cpu_table(result: ThroughputResult) -> Table:
    """Return the median CPU seconds each process spent per run: which one set the pace."""
    roles = ["client", "simulator", "prefect server"]
    table = Table(title="CPU seconds per run, by process (median over runs)", header_style="bold")
    table.add_column("method")
    table.add_column("wall s", justify="right")
    for role in roles:
        table.add_column(f"{role} CPU s", justify="right")
    table.add_column("client CPU / wall", justify="right")
    rows = [
        (m, result.summary(m).seconds, result.median_cpu(m))
        for m in (PIPELINE, BARE_SEQUENTIAL, BARE_CONCURRENT)
    ]
    rows.append(("cold", result.cold.seconds, result.median_cpu("cold")))
    for method, wall, cpu in rows:
        label = _LABELS.get(method, "pipeline, cold first run").format(workers=result.max_concurrency)
        table.add_row(
            label,
            f"{wall:.2f}",
            *(f"{cpu.get(r, 0.0):.2f}" for r in roles),
            f"{cpu.get('client', 0.0) / wall:.0%}",
        )
    return table


def profile_table(result: ThroughputResult) -> Table | None:
    """Return GIL seconds by category for the profiled pipeline and bare concurrent runs."""
    if not result.profiles:
        return None
    pipeline, bare = result.profiles.get(PIPELINE), result.profiles.get(BARE_CONCURRENT)
    table = Table(
        title="Where the GIL went (py-spy --gil, one extra run each; seconds holding the GIL)",
        header_style="bold",
    )
    for column in ("category", "pipeline", "bare concurrent", "pipeline − bare"):
        table.add_column(column, justify="left" if column == "category" else "right")
    names = list(
        dict.fromkeys([*(pipeline.categories if pipeline else {}), *(bare.categories if bare else {})])
    )
    for name in names:
        p = pipeline.categories.get(name, 0.0) if pipeline else 0.0
        b = bare.categories.get(name, 0.0) if bare else 0.0
        table.add_row(name, f"{p:.2f}", f"{b:.2f}", f"{p - b:+.2f}")
    for label, attr in (
        ("total GIL-seconds", "gil_seconds"),
        ("wall seconds of the profiled run", "wall_seconds"),
    ):
        p = getattr(pipeline, attr, 0.0)
        b = getattr(bare, attr, 0.0)
        table.add_row(f"[bold]{label}[/]", f"[bold]{p:.2f}[/]", f"[bold]{b:.2f}[/]", f"[bold]{p - b:+.2f}[/]")
    return table


def top_frames_table(result: ThroughputResult) -> Table | None:
    """Return the pipeline profile's innermost frames holding the GIL the longest."""
    profile = result.profiles.get(PIPELINE)
    if profile is None:
        return None
    table = Table(
        title=f"Pipeline run: top innermost frames holding the GIL (raw: {profile.raw})", header_style="bold"
    )
    table.add_column("GIL s", justify="right")
    table.add_column("frame")
    for frame, seconds in profile.top_frames:
        table.add_row(f"{seconds:.2f}", frame)
    return table


def timeline_table(result: ThroughputResult) -> Table | None:
    """Return when the flow's tasks ran in the profiled pipeline run (seconds from the call)."""
    recorded = result.timeline
    if recorded is None:
        return None
    table = Table(
        title=f"Pipeline phases (profiled run; flow returned at {recorded.returned:.2f} s, "
        f"{recorded.tail_seconds():.2f} s after the last candle series ended)",
        header_style="bold",
    )
    for column in ("task", "calls", "first start s", "last end s", "mean s", "max s"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for row in recorded.phases():
        table.add_row(
            row["task"],
            str(row["calls"]),
            f"{row['first_start']:.2f}",
            f"{row['last_end']:.2f}",
            f"{row['mean_seconds']:.2f}",
            f"{row['max_seconds']:.2f}",
        )
    return table


def second_run_table(result: SecondRunResult) -> Table:
    """Return the two CLI runs: wall time, flow-internal time, candles, and the ratios."""
    table = Table(title=f"Second run (real CLI, window end {result.end} UTC)", header_style="bold")
    for column in ("run", "wall s", "flow-internal s", "outside the flow s", "new candles", "manifest"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for run in (result.first, result.second):
        flow = run.flow_seconds or 0.0
        manifest = (
            "—"
            if run.manifest_sequence is None
            else f"#{run.manifest_sequence} (+{run.manifest_new_objects} objects)"
        )
        table.add_row(
            f"{run.label} run",
            f"{run.seconds:.2f}",
            f"{flow:.2f}",
            f"{run.seconds - flow:.2f}",
            f"{run.candles or 0:,}",
            manifest,
        )
    flow_ratio = "—" if result.flow_ratio is None else f"{result.flow_ratio:.3f}"
    table.add_row(
        "[bold]second / first[/]", f"[bold]{result.wall_ratio:.3f}[/]", f"[bold]{flow_ratio}[/]", "", "", ""
    )
    table.add_row(
        "[dim]fresh interpreter importing the CLI + flow[/]",
        f"[dim]{result.import_seconds:.2f}[/]",
        "",
        "",
        "",
        "",
    )
    return table


def memory_table(result: SecondRunResult) -> Table:
    """Return peak RSS per CLI run: the pipeline process, the tree maximum, and each child."""
    table = Table(title="Peak RSS of the CLI runs (no target)", header_style="bold")
    for column in (
        "run",
        "pipeline process (VmHWM)",
        "largest in tree (/usr/bin/time -v)",
        "children (VmHWM)",
    ):
        table.add_column(column, justify="left" if column in {"run", "children (VmHWM)"} else "right")
    for run in (result.first, result.second):
        # Short-lived helpers (e.g. `file -b` spawned by a library) are noise next to hundreds of MiB.
        shown = [c for c in run.children if c.peak_kib >= _SMALL_KIB]
        children = "; ".join(f"{c.role} {_mib(c.peak_kib)}" for c in shown) or "—"
        table.add_row(f"{run.label} run", _mib(run.pipeline_peak_kib), _mib(run.tree_max_rss_kib), children)
    return table


def verdicts(
    throughput: ThroughputResult | None, second: SecondRunResult | None, small_fraction: float
) -> list[str]:
    """Return one line per goal (rich markup)."""
    lines = []
    if throughput is not None:
        concurrent, sequential = throughput.ratio(BARE_CONCURRENT), throughput.ratio(BARE_SEQUENTIAL)
        lines.append(
            f"Throughput: pipeline costs {concurrent:.2f}× the bare concurrent fetch loop "
            f"(goal ≤ {THROUGHPUT_GOAL}×) → {_pass(concurrent)}; "
            f"vs the bare sequential loop {sequential:.2f}×."
        )
    if second is not None:
        flow = second.flow_ratio
        holds = (
            "[bold green]HOLDS[/]" if second.wall_ratio <= small_fraction else "[bold red]DOES NOT HOLD[/]"
        )
        flow_holds = (
            ""
            if flow is None
            else f"; flow-internal {flow:.3f} " + ("(holds)" if flow <= small_fraction else "(does not hold)")
        )
        lines.append(
            f"Second run: {second.second.seconds:.1f} s vs {second.first.seconds:.1f} s wall = "
            f"{second.wall_ratio:.3f} of the first (reading 'small fraction' as ≤ {small_fraction}) "
            f"→ {holds}{flow_holds}."
        )
        lines.append(
            f"Memory: pipeline process peak RSS {_mib(second.first.pipeline_peak_kib)} (first run), "
            f"{_mib(second.second.pipeline_peak_kib)} (second run); no target."
        )
    return lines


def write_results(directory: Path, started: datetime, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``directory/<UTC timestamp>.json`` and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path
