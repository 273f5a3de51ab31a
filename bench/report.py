"""The benchmark's output: rich tables, one verdict line per goal, and the JSON results file."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.audit import BATCH, INGEST_LABELS, INGEST_STAGES, AuditResult
from bench.features import INDICATOR_CALLS, INDICATOR_LABELS, INFERENCE_LABELS, FeaturesResult
from bench.second_run import SecondRunResult
from bench.throughput import BARE_CONCURRENT, BARE_SEQUENTIAL, PIPELINE, ThroughputResult
from bench.validation import STAGE_LABELS, STAGES, ValidationResult

#: The project's stated goal: the pipeline costs at most this multiple of the bare fetch loop.
THROUGHPUT_GOAL = 1.25
#: "Validating a day of 1m candles for one venue and symbol costs less than fetching it."
VALIDATION_GOAL = 1.0
#: Verifying the audit chain costs at most this multiple of the bare SHA-256 work.
AUDIT_VERIFY_GOAL = 3.0
#: The audit chain adds less than this share to a full ingestion run.
AUDIT_SHARE_GOAL = 0.05
#: The indicators both compute cost at most this multiple of TA-Lib's time.
FEATURES_TALIB_GOAL = 2.0
#: One-row LightGBM inference (Booster.predict) has a p99 below this, in microseconds.
INFERENCE_P99_GOAL_US = 1000.0

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


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def validation_table(result: ValidationResult) -> Table:
    """Return the cost of one venue batch by stage: one day, the long batch, per million candles."""
    day, long, days = result.day, result.long, result.long_days
    table = Table(
        title=f"Validation — candle + cross-venue suites on one venue batch ({result.venue} "
        f"{result.symbol} 1m; medians of {len(day.runs)} and {len(long.runs)} runs after a warm-up)",
        caption=f"group prep is per symbol group ({len(result.venues)} venues), counted in full in "
        f"each venue batch; marginal per day = (long − day) / {days - 1}; consensus per million = "
        "per million input candles (all venues)",
        header_style="bold",
    )
    for column in (
        "stage",
        f"1 day ({day.rows:,} rows)",
        f"{days} days ({long.rows:,} rows)",
        "per million candles",
        "marginal per day",
    ):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in STAGES:
        d, q = day.stage(stage), long.stage(stage)
        table.add_row(
            STAGE_LABELS[stage], _ms(d), _ms(q), _ms(q / long.rows * 1e6), _ms((q - d) / (days - 1))
        )
    table.add_row(
        "[bold]total per venue batch[/]",
        f"[bold]{_ms(day.seconds)}[/]",
        f"[bold]{_ms(long.seconds)}[/]",
        f"[bold]{_ms(result.per_million_seconds)}[/]",
        f"[bold]{_ms(result.marginal_day_seconds)}[/]",
    )
    cd, cq = _median(result.consensus_day), _median(result.consensus_long)
    table.add_row(
        f"[dim]consensus, {len(result.venues)} venues (not in total)[/]",
        f"[dim]{_ms(cd)}[/]",
        f"[dim]{_ms(cq)}[/]",
        f"[dim]{_ms(cq / (len(result.venues) * long.rows) * 1e6)}[/]",
        f"[dim]{_ms((cq - cd) / (days - 1))}[/]",
    )
    return table


def validation_group_table(result: ValidationResult) -> Table:
    """Return validate_candle_group end to end: the whole group and per venue."""
    day, long, days = result.group_day, result.group_long, result.long_days
    table = Table(
        title=f"Validation end to end — validate_candle_group on {result.symbol} 1m, {day.venues} venues "
        "(read Parquet, both suites per venue, quarantine, consensus, curated write)",
        header_style="bold",
    )
    for column in ("batch", "group s", "runs (s)", "per venue", "per million candles", "verdicts", "curated"):
        table.add_column(column, justify="left" if column in {"batch", "verdicts"} else "right")
    labels = (f"1 day ({day.rows:,} rows per venue)", f"{days} days ({long.rows:,})")
    for label, group in zip(labels, (day, long), strict=True):
        table.add_row(
            label,
            _ms(group.seconds),
            " ".join(f"{s:.3f}" for s in group.runs),
            _ms(group.per_venue),
            _ms(group.seconds / (group.venues * group.rows) * 1e6) if group is long else "—",
            ", ".join(f"{v} {verdict}" for v, verdict in group.verdicts.items()),
            f"{group.curated_rows:,}",
        )
    table.add_row(
        "[bold]marginal per day, per venue[/]", "", "", f"[bold]{_ms(result.group_marginal_day_seconds)}[/]",
        "", "", "",
    )  # fmt: skip
    return table


def validation_fixed_table(result: ValidationResult) -> Table:
    """Return the once-per-process and once-per-validator costs, and the section's peak RSS."""
    table = Table(title="Validation — fixed costs (not in the batch medians) and memory", header_style="bold")
    for column in ("cost", "value", "detail"):
        table.add_column(column, justify="left" if column != "value" else "right")
    imports = result.import_seconds
    table.add_row(
        "import great_expectations, fresh interpreter (once per process)",
        f"{_median(imports):.2f} s",
        "runs " + " ".join(f"{s:.2f}" for s in imports),
    )
    table.add_row(
        "import expectations.runner in the validation process",
        f"{result.inprocess_import_seconds:.2f} s",
        "GX + the suites module, 1 run",
    )
    for label, batch in (("1-day", result.day), (f"{result.long_days}-day", result.long)):
        table.add_row(f"GxValidator(...) creation, {label} set", _ms(batch.validator_seconds), "")
        table.add_row(
            f"first validation after creation, {label} set",
            _ms(sum(batch.warmup.values())),
            f"GX {_ms(batch.warmup['candles_gx'] + batch.warmup['cross_gx'])} (builds the suites)",
        )
    peaks = list(result.peak_rss_kib.items())
    table.add_row(
        "peak RSS (VmHWM) of the validation process",
        _mib(peaks[-1][1]),
        "; ".join(f"{step}: {_mib(kib)}" for step, kib in peaks),
    )
    return table


def validation_goal_table(result: ValidationResult) -> Table:
    """Return validate / fetch ratios, with PASS/FAIL for the goal's two readings."""
    ratios = result.ratios()
    pages = result.fetch_pages
    table = Table(
        title="Validating vs fetching one day of 1m candles, one venue and symbol "
        f"(goal: validate / fetch < {VALIDATION_GOAL:g}); fetch = bare ccxt loop against the local "
        f"simulator ({result.latency_ms:g} ms simulated latency), {pages['day']} pages",
        header_style="bold",
    )
    for column in ("comparison", "validate", "fetch", "ratio", "verdict"):
        table.add_column(column, justify="left" if column == "comparison" else "right")
    fetch = result.fetch_day_seconds
    cold = _median(result.fetch_day_cold)
    long_fetch = _median(result.fetch_long)
    rows = [
        ("(a) a one-day batch / fetching the day (client with markets loaded)", result.day.seconds, fetch,
         ratios["day_batch/fetch_day"], _verdict(ratios["day_batch/fetch_day"])),
        (f"(b) one more day inside a {result.long_days}-day batch (marginal) / fetching a day",
         result.marginal_day_seconds, fetch, ratios["marginal_day_in_long/fetch_day"],
         _verdict(ratios["marginal_day_in_long/fetch_day"])),
        ("a one-day batch / fetching the day with a fresh client (+ markets request)", result.day.seconds,
         cold, ratios["day_batch/fetch_day_cold"], "[dim]shown only[/]"),
        (f"a {result.long_days}-day batch / fetching {result.long_days} days ({pages['long']} pages)",
         result.long.seconds, long_fetch, ratios["long_batch/fetch_long"], "[dim]shown only[/]"),
        ("end to end (validate_candle_group), one day, per venue / fetching the day",
         result.group_day.per_venue, fetch, ratios["group_day_per_venue/fetch_day"], "[dim]shown only[/]"),
        (f"end to end, one more day per venue inside the {result.long_days}-day group / fetching a day",
         result.group_marginal_day_seconds, fetch, ratios["group_marginal_day_per_venue/fetch_day"],
         "[dim]shown only[/]"),
    ]  # fmt: skip
    for label, validate, fetched, ratio, verdict in rows:
        table.add_row(label, _ms(validate), _ms(fetched), f"{ratio:.2f}×", verdict)
    return table


def _verdict(ratio: float) -> str:
    return "[bold green]PASS[/]" if ratio < VALIDATION_GOAL else "[bold red]FAIL[/]"


def validation_verdicts(result: ValidationResult) -> list[str]:
    """Return the validation goal's verdict lines (rich markup)."""
    ratios = result.ratios()
    a, b = ratios["day_batch/fetch_day"], ratios["marginal_day_in_long/fetch_day"]
    return [
        f"Validation (a): a one-day batch ({result.day.rows:,} 1m candles, one venue and symbol) takes "
        f"{_ms(result.day.seconds)} to validate vs {_ms(result.fetch_day_seconds)} to fetch = {a:.2f}× "
        f"(goal < {VALIDATION_GOAL:g}×) → {_verdict(a)}; end to end (validate_candle_group, per venue) "
        f"{ratios['group_day_per_venue/fetch_day']:.2f}×.",
        f"Validation (b): one more day inside a {result.long_days}-day batch costs "
        f"{_ms(result.marginal_day_seconds)} vs {_ms(result.fetch_day_seconds)} to fetch a day = {b:.2f}× "
        f"(goal < {VALIDATION_GOAL:g}×) → {_verdict(b)}; end to end "
        f"{ratios['group_marginal_day_per_venue/fetch_day']:.2f}×; "
        f"{_ms(result.per_million_seconds)} per million candles; "
        f"GX import {_median(result.import_seconds):.2f} s once per process.",
    ]


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _goal(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"


def audit_append_table(result: AuditResult) -> Table:
    """Return append throughput: local folder and S3, one entry per segment and batched."""
    table = Table(
        title=f"Audit chain — append throughput (AuditLog, empty chain, no checkpointer; "
        f"~{result.line_bytes:.0f}-byte lines; local = {result.filesystem}, fsync per segment; "
        "S3 = moto server on 127.0.0.1 in its own process)",
        header_style="bold",
    )
    for column in ("store", "how", "entries", "segments", "seconds", "entries/s", "ms per segment"):
        table.add_column(column, justify="left" if column in {"store", "how"} else "right")
    labels = {"unbatched": "append (1 entry per segment)", "batched": f"append_many ({BATCH:,} per segment)"}
    for run in result.appends:
        table.add_row(
            "local folder" if run.backend == "local" else "S3 (moto)",
            labels[run.mode],
            f"{run.entries:,}",
            f"{run.segments:,}",
            f"{run.seconds:.2f}",
            _rate(run.rate),
            f"{run.seconds / run.segments * 1000:.2f}",
        )
    for backend, seconds in result.checkpoint_seconds.items():
        table.add_row(
            "[dim]local folder[/]" if backend == "local" else "[dim]S3 (moto)[/]",
            "[dim]a checkpoint: Ed25519 sign + create-only write[/]",
            f"[dim]{len(seconds)}[/]",
            "",
            "",
            "",
            f"[dim]{_median(seconds) * 1000:.2f} (median)[/]",
        )
    return table


def audit_verify_table(result: AuditResult) -> Table:
    """Return verify throughput next to the bare SHA-256 loop, with the goal's ratio."""
    table = Table(
        title="Audit chain — verify_chain(check_objects=False) vs bare SHA-256 "
        f"(goal: ≤ {AUDIT_VERIFY_GOAL:g}× the bare work); verify hashes ~{result.hashed_bytes:.0f} bytes "
        f"per entry ({result.sha_blocks(result.hashed_bytes)} SHA-256 blocks), the baseline "
        f"{result.baseline_bytes} ({result.sha_blocks(result.baseline_bytes)} blocks)",
        header_style="bold",
    )
    table.add_column("what", min_width=46)
    for column in ("entries", "segments", "median s", "runs (s)", "per second", "baseline / this", "verdict"):
        table.add_column(column, justify="right")
    base = result.baseline_rate
    table.add_row(
        f"bare sha256(x).hexdigest(), {result.baseline_bytes}-byte strings",
        f"{result.baseline_count:,}",
        "",
        f"{result.baseline_seconds:.3f}",
        " ".join(f"{s:.3f}" for s in result.baseline_runs),
        _rate(base),
        "1.00×",
        "",
    )
    for index, run in enumerate(result.verifies):
        ratio = base / run.rate
        verdict = _goal(ratio <= AUDIT_VERIFY_GOAL) if index == 0 else "[dim]shown only[/]"
        table.add_row(
            run.label,
            f"{run.entries:,}",
            f"{run.segments:,}",
            f"{run.seconds:.3f}",
            " ".join(f"{s:.3f}" for s in run.runs),
            _rate(run.rate),
            f"{ratio:.2f}×",
            verdict,
        )
    return table


def audit_ingest_table(result: AuditResult) -> Table:
    """Return the chain's work in one ingestion run, by stage, and its share of the flow."""
    reference = result.reference or {}
    table = Table(
        title="Audit chain — its work in one ingestion run (publish-manifest's ingest_items + "
        "record_steps, then checkpoint-audit; Prefect's task overhead and the artifact not included)",
        header_style="bold",
    )
    table.add_column("stage")
    for item in result.ingest:
        backend = "local" if item.backend == "local" else "S3 (moto)"
        table.add_column(f"{item.label}, {backend}", justify="right")
    for stage in INGEST_STAGES:
        table.add_row(INGEST_LABELS[stage], *(_ms(item.stage(stage)) for item in result.ingest))
    table.add_row(
        f"[bold]total (median of {len(result.ingest[0].runs)})[/]",
        *(f"[bold]{_ms(item.seconds)}[/]" for item in result.ingest),
    )
    table.add_row("runs (ms)", *(" ".join(f"{s * 1000:.0f}" for s in item.totals) for item in result.ingest))
    table.add_row("new objects in the manifest", *(f"{item.objects:,}" for item in result.ingest))
    table.add_row("manifest size", *(f"{item.manifest_bytes / 1024:,.0f} KiB" for item in result.ingest))
    table.add_row("chain segments before the run", *(f"{item.segments_before:,}" for item in result.ingest))
    table.add_row(
        "entries appended / checkpoints signed", *(f"{i.entries} / {i.checkpoints}" for i in result.ingest)
    )
    table.add_row(
        "one listing of the chain's segments",
        *(_ms(_median(i.listing_seconds)) if i.listing_seconds else "—" for i in result.ingest),
    )
    shares = result.shares()
    if shares is not None:
        flow, wall = reference["flow_seconds"], reference["wall_seconds"]
        table.add_row(
            f"[bold]share of the first run's flow ({flow:.1f} s)[/]",
            f"[bold]{shares['of_flow']:.2%} → {_goal(shares['of_flow'] < AUDIT_SHARE_GOAL)}[/]",
            *([""] * (len(result.ingest) - 1)),
        )
        table.add_row(
            f"share of the first run's wall time ({wall:.1f} s)",
            f"{shares['of_wall']:.2%}",
            *([""] * (len(result.ingest) - 1)),
        )
    table.caption = f"denominator: {reference.get('source', 'none')}"
    return table


def audit_verdicts(result: AuditResult) -> list[str]:
    """Return the audit goals' verdict lines (rich markup)."""
    goal, ratio = result.verifies[0], result.verify_ratio
    lines = [
        f"Audit verify: {_rate(goal.rate)} entries/s ({goal.entries:,} entries, {goal.label}) vs bare "
        f"SHA-256 {_rate(result.baseline_rate)}/s = {ratio:.2f}× the bare work "
        f"(goal ≤ {AUDIT_VERIFY_GOAL:g}×) → {_goal(ratio <= AUDIT_VERIFY_GOAL)}.",
        "Audit append: "
        + "; ".join(
            f"{'local' if a.backend == 'local' else 'S3 (moto)'} {a.mode} {_rate(a.rate)} entries/s"
            for a in result.appends
        )
        + " (no target).",
    ]
    shares, first = result.shares(), result.ingest[0]
    if shares is not None and result.reference is not None:
        lines.append(
            f"Audit share of an ingestion run: {_ms(first.seconds)} of chain work ({first.objects:,}-object "
            f"first-run manifest, local) / {result.reference['flow_seconds']:.1f} s flow = "
            f"{shares['of_flow']:.2%} (goal < {AUDIT_SHARE_GOAL:.0%}) → "
            f"{_goal(shares['of_flow'] < AUDIT_SHARE_GOAL)}; {shares['of_wall']:.2%} of the wall time. "
            f"Denominator: {result.reference['source']}."
        )
    for item in result.ingest[1:]:
        backend = "local" if item.backend == "local" else "S3 (moto)"
        lines.append(f"  shown only: {item.label}, {backend}: {_ms(item.seconds)} per run.")
    return lines


def _features_goal(ratio: float) -> str:
    return _goal(ratio <= FEATURES_TALIB_GOAL)


def features_matrix_table(result: FeaturesResult) -> Table:
    """Return the full matrix's build time, size and the child's peak RSS."""
    size = f"{len(result.symbols)} symbols × {result.days} days of 1m ({result.rows:,} rows)"
    table = Table(
        title=f"Feature matrix — build_feature_matrix(candles, FeatureSpec()), {size}, "
        f"median of {len(result.build_seconds)}",
        caption=f"candles: {result.data_source}",
        header_style="bold",
    )
    for column in ("what", "value", "detail"):
        table.add_column(column, justify="right" if column == "value" else "left")
    table.add_row(
        "[bold]full matrix build (median)[/]",
        f"[bold]{result.build_median:.2f} s[/]",
        "runs " + " ".join(f"{s:.2f}" for s in result.build_seconds),
    )
    table.add_row(
        "rows per second",
        f"{result.rows / result.build_median:,.0f}",
        f"{result.columns} columns, {result.features} float64 features",
    )
    table.add_row(
        "per symbol-year",
        f"{result.build_median / len(result.symbols) * 365 / result.days:.2f} s",
        "median / symbols × 365 / days",
    )
    table.add_row("untimed warm-up build (2 days per symbol)", _ms(result.warmup_build_seconds), "")
    table.add_row(
        "matrix vs TA-Lib's common indicators (shown only)",
        f"{result.matrix_over_talib:,.0f}×",
        f"{result.build_median:.2f} s vs {_ms(result.talib_common_seconds)}; the matrix computes "
        f"{result.features} features, TA-Lib 6 indicators",
    )
    peaks = list(result.peak_rss_kib.items())
    table.add_row(
        "[bold]peak RSS (VmHWM) once the matrix is built[/]",
        f"[bold]{_mib(result.build_peak_kib)}[/]",
        "; ".join(f"{step}: {_mib(kib)}" for step, kib in peaks),
    )
    return table


def features_talib_table(result: FeaturesResult) -> Table:
    """Return tradeflow's indicators next to TA-Lib's on the same arrays, with the goal's ratios."""
    runs = len(result.indicators[0].tradeflow)
    size = f"{len(result.symbols)} symbols × {result.rows_per_symbol[result.symbols[0]]:,} rows"
    table = Table(
        title="Indicators — tradeflow.features.indicators vs TA-Lib on the same arrays "
        f"({size} per run, median of {runs}; "
        f"goal: tradeflow ≤ {FEATURES_TALIB_GOAL:g}× TA-Lib)",
        caption="agreement: worst |difference| as a share of the TA-Lib tests' tolerance (≤ 1: agree)",
        header_style="bold",
    )
    for column in (
        "indicator",
        "tradeflow call",
        "TA-Lib call",
        "tradeflow",
        "TA-Lib",
        "ratio",
        "verdict",
        "agreement",
    ):
        table.add_column(column, justify="left" if "call" in column or column == "indicator" else "right")
    for item in result.indicators:
        ours, theirs = INDICATOR_CALLS[item.name]
        table.add_row(
            INDICATOR_LABELS[item.name],
            ours,
            theirs,
            _ms(item.tradeflow_seconds),
            _ms(item.talib_seconds),
            f"{item.ratio:.2f}×",
            _features_goal(item.ratio),
            f"{item.tolerance_share:.2g}" + ("" if item.nan_rows_equal else " (warm-up differs)"),
        )
    ratio = result.common_ratio
    table.add_row(
        "[bold]all six (sum of medians)[/]",
        "",
        "",
        f"[bold]{_ms(result.tradeflow_common_seconds)}[/]",
        f"[bold]{_ms(result.talib_common_seconds)}[/]",
        f"[bold]{ratio:.2f}×[/]",
        f"[bold]{_features_goal(ratio)}[/]",
        "",
    )  # fmt: skip
    return table


def features_training_table(result: FeaturesResult) -> Table:
    """Return each model's fit seconds per fold and its final fit."""
    info = result.training
    spec = info["spec"]
    table = Table(
        title=f"Training — run_walk_forward on the matrix: {info['label']} labels (horizon "
        f"{info['horizon_minutes']} min, fee {info['fee_rate']}), {spec['n_folds']} {spec['mode']} folds, "
        f"embargo {spec['embargo_minutes']} min, row step {info['row_step']}: {info['rows']:,} labelled rows "
        f"of {info['matrix_rows']:,}, {info['features']} features",
        caption=f"fit = fit_calibrated (base model + sigmoid calibration on the latest "
        f"{info['calibration_fraction']:.0%}); run = the model's whole run_walk_forward (fits, "
        "predictions, scores), one model at a time; OOS ROC AUC for reference only",
        header_style="bold",
    )
    for column in (
        "model",
        "median fit per fold",
        "fits per fold (s)",
        "fold fit rows",
        "final fit",
        "final fit rows",
        "run",
        "OOS ROC AUC",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for item in result.models:
        table.add_row(
            item.model,
            f"[bold]{item.median_fold_fit:.2f} s[/]",
            " ".join(f"{s:.2f}" for s in item.fold_fit_seconds),
            " ".join(f"{r / 1000:.1f}k" for r in item.fold_fit_rows),
            f"{item.final_fit_seconds:.2f} s",
            f"{item.final_fit_rows:,} + {item.final_calibration_rows:,}",
            f"{item.run_seconds:.1f} s",
            f"{item.out_of_sample_roc_auc:.3f}",
        )  # fmt: skip
    return table


def features_inference_table(result: FeaturesResult) -> Table:
    """Return one-row inference latencies, with the goal's verdict for the booster."""
    table = Table(
        title=f"Inference — one row of the LightGBM model fitted on all rows (goal: Booster.predict p99 < "
        f"{INFERENCE_P99_GOAL_US:,.0f} µs)",
        caption=f"row: {result.inference_row}; {result.inference_check}",
        header_style="bold",
    )
    for column in ("call", "calls", "p50 µs", "p90 µs", "p99 µs", "max µs", "verdict"):
        table.add_column(column, justify="left" if column == "call" else "right")
    for index, item in enumerate(result.inference):
        verdict = _goal(item.p99_us < INFERENCE_P99_GOAL_US) if index == 0 else "[dim]shown only[/]"
        table.add_row(
            INFERENCE_LABELS[item.name],
            f"{item.calls:,}",
            f"{item.p50_us:,.1f}",
            f"{item.p90_us:,.1f}",
            f"{item.p99_us:,.1f}",
            f"{item.max_us:,.0f}",
            verdict,
        )
    return table


def features_verdicts(result: FeaturesResult) -> list[str]:
    """Return the features section's verdict lines (rich markup)."""
    ratio, booster = result.common_ratio, result.latency("booster")
    per = "; ".join(f"{INDICATOR_LABELS[i.name]} {i.ratio:.2f}×" for i in result.indicators)
    passing = sum(i.ratio <= FEATURES_TALIB_GOAL for i in result.indicators)
    fits = "; ".join(
        f"{m.model} {m.median_fold_fit:.2f} s per fold, final {m.final_fit_seconds:.2f} s"
        for m in result.models
    )
    return [
        f"Features vs TA-Lib: the six common indicators take {_ms(result.tradeflow_common_seconds)} vs "
        f"{_ms(result.talib_common_seconds)} = {ratio:.2f}× (goal ≤ {FEATURES_TALIB_GOAL:g}×) → "
        f"{_features_goal(ratio)}; per indicator {per} ({passing} of {len(result.indicators)} within "
        f"{FEATURES_TALIB_GOAL:g}×).",
        f"Feature matrix: {result.rows:,} rows ({len(result.symbols)} symbols × {result.days} days of 1m), "
        f"{result.features} features in {result.build_median:.2f} s (median of {len(result.build_seconds)}); "
        f"{result.matrix_over_talib:,.0f}× TA-Lib's time for the six indicators (shown only); peak RSS "
        f"{_mib(result.build_peak_kib)} (no target).",
        f"Training ({result.training['rows']:,} rows, median fit per fold): {fits} (no target).",
        f"Inference: Booster.predict on one row p50 {booster.p50_us:,.1f} µs, p99 {booster.p99_us:,.1f} µs "
        f"(goal p99 < {INFERENCE_P99_GOAL_US:,.0f} µs) → {_goal(booster.p99_us < INFERENCE_P99_GOAL_US)}; "
        + "; ".join(
            f"{INFERENCE_LABELS[i.name].split(',')[0]} p99 {i.p99_us:,.0f} µs" for i in result.inference[1:]
        )
        + " (shown only).",
    ]


def write_results(directory: Path, started: datetime, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``directory/<UTC timestamp>.json`` and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path
