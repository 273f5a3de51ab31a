"""The ``tradeflow`` command line.

Heavy imports (Prefect, the flows) happen inside commands, after
:func:`tradeflow.bootstrap.prepare_environment` has pointed Prefect's home at the data folder.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tradeflow.config import ConfigError, Settings, load_settings
from tradeflow.timeframes import iso, to_ms

app = typer.Typer(
    help="tradeflow: a Prefect-orchestrated pipeline for crypto trading research and execution.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
venues_app = typer.Typer(help="Local simulated exchanges (the offline default).", no_args_is_help=True)
config_app = typer.Typer(help="Show and check the configuration.", no_args_is_help=True)
lake_app = typer.Typer(help="Look at what the lake holds.", no_args_is_help=True)
app.add_typer(venues_app, name="venues")
app.add_typer(config_app, name="config")
snapshot_app = typer.Typer(
    help="Immutable snapshots of validated data: list, show, diff, restore.", no_args_is_help=True
)
audit_app = typer.Typer(
    help="The tamper-evident audit chain: verify, explain, log, keygen.", no_args_is_help=True
)
app.add_typer(lake_app, name="lake")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(audit_app, name="audit")
models_app = typer.Typer(
    help="Registered models: list, compare, promote (the MLflow registry).", no_args_is_help=True
)
app.add_typer(models_app, name="models")

# Off a terminal (CI logs, pipes) rich assumes 80 columns, too narrow for the summary table.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file [default: $TRADEFLOW_CONFIG or ./tradeflow.toml]."),
]
FaultsOption = Annotated[
    str | None,
    typer.Option("--faults", help="Fault profile for every simulated venue: clean, chaos, dirty or down."),
]
EndOption = Annotated[
    datetime | None,
    typer.Option("--end", help="Pin the window's end (UTC), e.g. 2026-11-01T00:00:00; default now.",
                 formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
]  # fmt: skip
JsonOption = Annotated[Path | None, typer.Option("--json", help="Also write the run's result as JSON here.")]
StorageOption = Annotated[
    str | None, typer.Option("--storage", help="Storage URL override: a folder or s3://bucket/prefix.")
]


def _settings(config: Path | None, faults: str | None = None, storage: str | None = None) -> Settings:
    if faults is not None:
        os.environ["TRADEFLOW_SIMULATOR__FAULT_PROFILE"] = faults
    if storage is not None:
        os.environ["TRADEFLOW_STORAGE__URL"] = storage
    try:
        settings = load_settings(config)
    except ConfigError as error:
        err_console.print(f"[bold red]Config error[/]\n{error}")
        raise typer.Exit(2) from None
    from tradeflow.bootstrap import prepare_environment

    prepare_environment(settings)
    return settings


def _end_ms(end: datetime | None) -> int | None:
    if end is None:
        return None
    from datetime import UTC

    return to_ms(end if end.tzinfo else end.replace(tzinfo=UTC))


def _run_ingest(
    settings: Settings, config: Path | None, end: datetime | None, progress: bool
) -> dict[str, Any]:
    from flows.ingest import run_ingest, start_prefect_api_early
    from tradeflow.bootstrap import local_venues
    from tradeflow.progress import ProgressEvent, listening

    config_arg = str(config) if config else None
    api_ready = start_prefect_api_early()  # overlaps Prefect's server start with the venues'

    def flow(**arguments: Any) -> dict[str, Any]:
        api_ready()
        return run_ingest(max_concurrency=settings.ingest.max_concurrency, **arguments)

    with local_venues(settings) as running:
        if running:
            console.print(f"Started {len(running)} local venues: " + ", ".join(
                f"{vid} [dim]{url}[/]" for vid, url in running.items()))  # fmt: skip
        if not progress:
            return flow(config_path=config_arg, running_venues=running, end_ms=_end_ms(end))
        bars = Progress(
            TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("pages"), TimeElapsedColumn(), console=console, transient=True,
        )  # fmt: skip
        overall = bars.add_task("[bold]all series", total=None)
        ids: dict[str, Any] = {}
        done: dict[str, tuple[int, int]] = {}

        def show(event: ProgressEvent) -> None:
            if event.key not in ids:
                ids[event.key] = bars.add_task(event.key, total=event.total)
            bars.update(ids[event.key], completed=event.done, total=event.total)
            done[event.key] = (event.done, event.total)
            bars.update(overall, completed=sum(d for d, _ in done.values()),
                        total=sum(t for _, t in done.values()))  # fmt: skip

        with bars, listening(show):
            return flow(config_path=config_arg, running_venues=running, end_ms=_end_ms(end))


def _print_summary(result: dict[str, Any], settings: Settings) -> None:
    from tradeflow.bootstrap import build_store
    from tradeflow.ingest import SeriesResult, summary_rows

    series = [SeriesResult(**row) for row in result["series"]]
    table = Table(title="Candles ingested in this run", header_style="bold")
    numeric = {"new candles", "pages", "retries", "holes"}
    columns = (
        "venue",
        "symbol",
        "timeframe",
        "status",
        "new candles",
        "pages",
        "retries",
        "holes",
        "window",
        "note",
    )
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left", overflow="fold",
                         max_width=48 if column == "note" else None)  # fmt: skip
    for row in summary_rows(series):
        style = (
            "red"
            if row["status"] in ("failed", "not listed")
            else ("dim" if row["status"] == "up to date" else "")
        )
        table.add_row(*(f"{row[c]:,}" if c in numeric else str(row[c]) for c in columns), style=style)
    console.print(table)
    for venue in result["venues"]:
        if not venue["ok"]:
            console.print(f"[red]Venue {venue['venue']} failed:[/] {venue['error']}")
    for symbol, venues in result["covered"].items():
        console.print(f"[yellow]Failover:[/] {symbol} still covered by {', '.join(venues)}")
    for symbol in result["uncovered"]:
        console.print(f"[red]Not covered:[/] {symbol}: no healthy venue lists it")
    snapshots = result["snapshots"]
    extras = ""
    if snapshots:
        extras = (f"; {sum(s['book_levels'] > 0 for s in snapshots)} order book snapshots and "
                  f"{sum(s['trades'] for s in snapshots):,} new trades")  # fmt: skip
    total = sum(s.candles for s in series)
    manifest = result["manifest"]
    if total == 0:
        console.print(f"[bold green]Candles up to date[/]: nothing new to fetch{extras}.")
    else:
        console.print(f"[bold green]Stored {total:,} new candles[/]{extras}.")
    if manifest is not None:
        console.print(
            f"Published manifest #{manifest['sequence']} ({manifest['batch_id'][:16]}) with "
            f"{manifest['new_objects']} new objects; flow took {result['seconds']:.1f} s."
        )
    else:
        console.print(f"No manifest published: nothing new was written ({result['seconds']:.1f} s).")
    console.print(f"Lake: {build_store(settings).describe()}   config hash: {result['config_hash'][:16]}")


def _run_validation(config: Path | None, ingest_sequence: int | None = None) -> dict[str, Any]:
    """Run the validate-market-data flow; print its summary. A SymbolUnusableError exits 1."""
    from flows.validate import validate_market_data
    from tradeflow.quality.validation import SymbolUnusableError

    with console.status("Validating with Great Expectations: suites, cross-venue checks, consensus..."):
        try:
            result: dict[str, Any] = validate_market_data(
                config_path=str(config) if config else None, ingest_sequence=ingest_sequence
            )
        except SymbolUnusableError as error:
            err_console.print(f"[bold red]Validation failed:[/] {error}")
            raise typer.Exit(1) from None
    _print_validation(result)
    return result


def _print_validation(result: dict[str, Any]) -> None:
    from tradeflow.quality.report import summary_rows
    from tradeflow.quality.validation import BatchReport, GroupResult

    if not result["runs"]:
        console.print(f"Validation: nothing new (ingest batches up to #{result['validated_through']} "
                      "are validated).")  # fmt: skip
        return
    for run in result["runs"]:
        groups = [GroupResult.from_dict(g) for g in run["groups"]]
        table = Table(title=f"Validation of ingest batch #{run['ingest_sequence']}", header_style="bold")
        rows = summary_rows(groups)
        for column in rows[0] if rows else ():
            table.add_column(column, justify="left" if column in ("symbol", "timeframe") else "right")
        for row in rows:
            style = "red" if row["quarantined"] and not (row["passed"] or row["warned"]) else ""
            table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()), style=style)
        console.print(table)
        batches: list[BatchReport] = [b for g in groups for b in g.batches]
        batches += [BatchReport.from_dict(s) for s in run["snapshots"]]
        for batch in batches:
            if batch.verdict == "quarantined":
                console.print(f"[yellow]Quarantined[/] {batch.name}: {', '.join(batch.reasons())}")
        snapshots = run["snapshots"]
        kept = sum(s["verdict"] != "quarantined" for s in snapshots)
        curated = sum(g.curated_rows for g in groups)
        imputed = sum(g.imputed_rows for g in groups)
        console.print(
            f"[bold green]Curated {curated:,} consensus candles[/] ({imputed:,} imputed from other venues); "
            f"{kept}/{len(snapshots)} order book and trade batches passed; "
            f"validation #{run['validation_sequence']} took {run['seconds']:.1f} s."
        )
        if run["data_docs"]:
            console.print(f"Data Docs: {run['data_docs']}")
        console.print(f"Integrity reports: {', '.join(run['reports']['integrity'].values())}")


@app.command()
def run(flow: Annotated[str | None, typer.Argument(
            help="Run this one flow instead (a flow name from [cyan]tradeflow deployments[/], e.g. "
                 "daily-pipeline, ingest-market-data, backtest).", show_default=False)] = None,
        param: Annotated[list[str] | None, typer.Option(
            "--param", "-p", help="A flow parameter, KEY=VALUE (VALUE as JSON, else text); repeatable.",
        )] = None,
        config: ConfigOption = None, faults: FaultsOption = None, end: EndOption = None,
        storage: StorageOption = None,
        trade_seconds: Annotated[float, typer.Option(
            "--trade-seconds", help="Then paper-trade this long against a local venue (0 = skip).")] = 0.0,
        ) -> None:  # fmt: skip
    """Run the main job: ingest, validate, snapshot, train models, backtest, verify the audit chain.

    With --trade-seconds N it ends with a short paper-trading session (the stream-execution flow)
    on the champion against a local venue's websocket streams.

    With a FLOW it runs that one flow now, in this process, on demand (its deployment's schedule
    is not involved): [cyan]tradeflow run daily-pipeline[/],
    [cyan]tradeflow run backtest -p snapshot=latest[/].
    """
    settings = _settings(config, faults, storage)
    if flow is not None:
        _run_one_flow(settings, config, flow, param or [])
        return
    started = time.monotonic()
    result = _run_ingest(settings, config, end, progress=sys.stdout.isatty())
    _print_summary(result, settings)
    _run_validation(config)
    snapshot = _run_snapshot(config)["snapshot"]
    _run_training(config, snapshot["snapshot_id"])
    backtest_result = _run_backtest(config, snapshot["snapshot_id"])
    trade_result = None
    if trade_seconds > 0:
        trade_result = _run_trade(settings, config, "paper", "champion", trade_seconds, False)
    report = _verify(settings, full=False, objects=True)
    _print_verify(report)
    short = snapshot["snapshot_id"][:12]
    trading_hint = (
        "  • [cyan]tradeflow ledger orders[/]      the paper session's orders, fills and risk events\n"
        if trade_result is not None
        else "  • [cyan]make run TRADE=60[/]          adds a 60 s paper-trading session at the end\n"
    )
    console.print(
        f"\n[bold]Done in {time.monotonic() - started:.0f} s.[/] Where to look next:\n"
        "  • the Data Docs link above   every check of every batch, with observed values (GX Data Docs)\n"
        f"  • [cyan]tradeflow snapshot show {short}[/]   what the snapshot froze, per series\n"
        f"  • [cyan]tradeflow audit explain {short}[/]  its lineage back to the raw ingest batches\n"
        "  • [cyan]tradeflow audit log[/]         the newest audit entries ([cyan]audit verify[/]: all)\n"
        f"  • {backtest_result['report_path']}\n"
        "                               the backtest report: equity, drawdown, Monte Carlo, ablation\n"
        "  • [cyan]tradeflow signals[/]           today's signals and target weights, with the reasons\n"
        + trading_hint
        + "  • [cyan]tradeflow trade --paper[/]      paper-trade until Ctrl-C ([cyan]--live[/]: real)\n"
        "  • [cyan]tradeflow models compare[/]    the models side by side; [cyan]make mlflow[/] opens the\n"
        "                               MLflow UI (http://127.0.0.1:5000): runs, fold runs, plots\n"
        "  • [cyan]tradeflow validate FILE[/]     the same suites on any candle file (Parquet or CSV)\n"
        "  • [cyan]make ui[/]                    the Prefect UI (http://127.0.0.1:4200): the flow runs,\n"
        "                               their tasks and artifacts (summaries, the audit trail)\n"
        "  • [cyan]make serve[/]                 every deployment of prefect.yaml on its schedule\n"
        "                               ([cyan]tradeflow deployments[/] lists them)\n"
        "  • [cyan]make run[/] again             fetches and validates only what closed since this run\n"
        "  • [cyan]tradeflow --help[/]           every command"
    )
    failed = [v for v in result["venues"] if not v["ok"]]
    if not report.ok or (failed and result["uncovered"]):
        raise typer.Exit(1)


@app.command()
def validate(
    target: Annotated[str, typer.Argument(
        help="A candle file (Parquet or CSV) or a folder of them; a snapshot id (or 'latest') to "
             "re-run the candle suite on its curated series; or 'lake' to validate the ingest "
             "batches in the lake that no validation covers yet.")] = "lake",
    config: ConfigOption = None,
    timeframe: Annotated[str | None, typer.Option(
        help="Timeframe of the file's candles, e.g. 5m; default: from the file name or timestamps.")] = None,
    as_of: Annotated[datetime | None, typer.Option(
        "--as-of", help="Check freshness: the last candle must have closed shortly before this (UTC).",
        formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"])] = None,
    docs: Annotated[Path | None, typer.Option(help="Also build GX Data Docs into this folder.")] = None,
    json_out: JsonOption = None,
    storage: StorageOption = None,
) -> None:  # fmt: skip
    """Run the validation suites on candle files from any tool, on a snapshot, or on the lake's new batches.

    For a file, prints each check with its outcome and observed value, then the holes and spikes
    found. Exit status: 0 when every file passes (warnings allowed), 1 when a check with a
    ``fail`` policy fails or a file cannot be read.
    """
    settings = _settings(config, storage=storage)
    if target == "lake":
        _run_validation(config)
        return
    from tradeflow.quality.files import CandleFileError, candle_files

    opened = None
    try:
        paths = candle_files(target)
    except CandleFileError as error:
        opened = None if Path(target).exists() else _open_snapshot_quietly(settings, target)
        if opened is None:
            err_console.print(f"[bold red]Error:[/] {error} (nor is it 'lake' or a snapshot id)")
            raise typer.Exit(2) from None
    from expectations.runner import GxValidator
    from tradeflow.quality.validation import validate_candle_file

    validator = GxValidator(settings.validation, "tradeflow-validate")
    reports = []
    if opened is not None:
        from tradeflow.snapshot import validate_snapshot

        console.print(
            f"Validating the curated series of snapshot {opened.id} (each object re-hashed as read)"
        )
        reports = _snapshot_or_exit(
            lambda: validate_snapshot(opened, validator, settings.validation, as_of=_end_ms(as_of))
        )
        for report in reports:
            _print_file_report(report)
    for path in [] if opened is not None else paths:
        report = validate_candle_file(str(path), validator, settings.validation, timeframe=timeframe,
                                      as_of=_end_ms(as_of))  # fmt: skip
        reports.append(report)
        _print_file_report(report)
    if docs is not None and validator.results:
        console.print(f"Data Docs: {validator.build_data_docs(docs.resolve())}")
    if json_out:
        json_out.write_text(json.dumps([r.to_dict() for r in reports], indent=1, default=str))
    bad = [r for r in reports if r.verdict == "quarantined"]
    unit = "series" if opened is not None else "files"
    console.print(f"\n{len(reports) - len(bad)} of {len(reports)} {unit} passed "
                  f"({sum(r.verdict == 'warned' for r in reports)} with warnings).")  # fmt: skip
    if bad:
        raise typer.Exit(1)


def _open_snapshot_quietly(settings: Settings, target: str) -> Any:
    """Return the snapshot ``target`` names (id, prefix or 'latest'), or None if it names none."""
    from tradeflow.bootstrap import build_store
    from tradeflow.snapshot import Snapshot, SnapshotError

    try:
        return Snapshot.open(build_store(settings), target)
    except SnapshotError:
        return None


def _print_file_report(report: Any) -> None:
    from tradeflow.quality.report import short_observed

    if report.error:
        console.print(f"[bold red]Cannot validate[/] {report.error}")
        return
    colour = {"passed": "green", "warned": "yellow", "quarantined": "red"}[report.verdict]
    verdict = "FAILED" if report.verdict == "quarantined" else report.verdict
    table = Table(title=f"{report.symbol} — {report.rows:,} candles, {report.timeframe}: "
                        f"[{colour}]{verdict}[/]", header_style="bold", title_justify="left")  # fmt: skip
    for column in ("check", "outcome", "observed"):
        table.add_column(column, overflow="fold")
    styles = {"failed": "red", "warned": "yellow", "not evaluated": "dim", "ignored": "dim"}
    for outcome in report.suites:
        for result in outcome.checks:
            table.add_row(
                result.check, result.outcome, short_observed(result), style=styles.get(result.outcome, "")
            )
    console.print(table)
    for label, check, key in (
        ("holes", "completeness", "start_utc"),
        ("spikes", "price_spikes", "timestamp_utc"),
    ):
        items = report.check(check).get("listed", [])
        if items:
            shown = ", ".join(
                f"{i[key]} ({i['length']} missing)"
                if check == "completeness"
                else f"{i[key]} ({i['move']:+.1%})"
                for i in items[:8]
            )
            more = f" and {len(items) - 8} more" if len(items) > 8 else ""
            console.print(f"  {label}: {shown}{more}")


@app.command()
def ingest(config: ConfigOption = None, faults: FaultsOption = None, end: EndOption = None,
           storage: StorageOption = None,
           progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
           json_out: JsonOption = None) -> None:  # fmt: skip
    """Run the ingest-market-data flow once (starting local venues if the config has them)."""
    settings = _settings(config, faults, storage)
    result = _run_ingest(settings, config, end, progress=progress)
    _print_summary(result, settings)
    if json_out:
        json_out.write_text(json.dumps(result, indent=1, default=str))
    if result["uncovered"]:
        raise typer.Exit(1)


@venues_app.command("up")
def venues_up(config: ConfigOption = None, faults: FaultsOption = None) -> None:
    """Serve the configured simulated venues until Ctrl-C, for other tools to point at."""
    settings = _settings(config, faults)
    from tradeflow.bootstrap import simulator_spec
    from tradeflow.simulator import serve_forever

    def ready(urls: dict[str, str]) -> None:
        table = Table(title="Local venues (Binance spot API v3)", header_style="bold")
        table.add_column("venue")
        table.add_column("base URL")
        for venue_id, url in urls.items():
            table.add_row(venue_id, url)
        console.print(table)
        first = next(iter(urls.values()), "http://127.0.0.1:PORT")
        console.print(
            "Point ccxt at one: [cyan]from tradeflow.sources.ccxt_source import create_exchange; "
            f"ex = create_exchange('binance', base_url='{first}')[/]\n"
            f"or curl it: [cyan]curl '{first}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3'[/]\n"
            "Ctrl-C stops them."
        )
        sys.stdout.flush()  # the URLs must reach a pipe (a script waiting for them) at once

    serve_forever(simulator_spec(settings), ready)


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration (file + environment) and its hash."""
    settings = _settings(config)
    console.print_json(settings.model_dump_json())
    console.print(f"config hash: {settings.config_hash}")


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration; exit 2 with the offending keys if it is bad."""
    settings = _settings(config)
    console.print(f"[green]OK[/]: {len(settings.venues)} venues, {len(settings.ingest.symbols)} symbols, "
                  f"timeframes {', '.join(settings.ingest.timeframes)}; "
                  f"hash {settings.config_hash[:16]}")  # fmt: skip


@lake_app.command("ls")
def lake_ls(config: ConfigOption = None, storage: StorageOption = None) -> None:
    """List every series in the newest manifest: objects, rows and time range."""
    settings = _settings(config, storage=storage)
    from tradeflow.bootstrap import build_store
    from tradeflow.storage.lake import read_state

    store = build_store(settings)
    state = read_state(store)
    if not state.series:
        console.print(f"The lake at {store.describe()} is empty: run [cyan]make run[/] first.")
        return
    table = Table(title=f"Lake {store.describe()} — manifest #{state.sequence}", header_style="bold")
    for column in ("series", "objects", "rows", "first", "last"):
        table.add_column(column, justify="right" if column in {"objects", "rows"} else "left")
    for key in sorted(state.series):
        entries = state.objects(key)
        table.add_row(key, str(len(entries)), f"{sum(e['rows'] for e in entries):,}",
                      iso(min(e["start"] for e in entries)), iso(max(e["end"] for e in entries)))  # fmt: skip
    console.print(table)


@lake_app.command("compare")
def lake_compare(
    first: Annotated[str, typer.Argument(help="Storage URL of one lake.")],
    second: Annotated[str, typer.Argument(help="Storage URL of the other lake.")],
    dataset: Annotated[str, typer.Option(help="Which series to compare: candles or all.")] = "candles",
) -> None:
    """Compare the content hashes of two lakes; exit 1 if they differ."""
    from tradeflow.storage.lake import content_hashes, read_state
    from tradeflow.storage.objectstore import open_store

    def hashes(url: str) -> dict[str, list[str]]:
        state = read_state(open_store(url))
        keys = [k for k in state.series if dataset == "all" or ":" not in k]
        return content_hashes(state, keys)

    left, right = hashes(first), hashes(second)
    differing = sorted(k for k in set(left) | set(right) if left.get(k) != right.get(k))
    objects = sum(len(v) for v in left.values())
    if differing or not left:
        console.print(
            f"[red]Lakes differ[/] in {len(differing)} series: {', '.join(differing) or '(both empty)'}"
        )
        raise typer.Exit(1)
    console.print(
        f"[green]Identical[/]: {len(left)} series, {objects} objects with the same SHA-256 in both lakes."
    )


# --- snapshots ------------------------------------------------------------------------------------


def _snapshot_or_exit(call: Any) -> Any:
    from tradeflow.snapshot import SnapshotError

    try:
        return call()
    except SnapshotError as error:
        err_console.print(f"[bold red]Snapshot error:[/] {error}")
        raise typer.Exit(1) from None


SnapshotArgument = Annotated[
    str, typer.Argument(help="A snapshot id, a unique prefix of one (6+ characters), or 'latest'.")
]


def _run_snapshot(config: Path | None) -> dict[str, Any]:
    from flows.snapshot import snapshot_market_data
    from tradeflow.snapshot import SnapshotError

    try:
        result: dict[str, Any] = snapshot_market_data(config_path=str(config) if config else None)
    except SnapshotError as error:
        err_console.print(f"[bold red]Snapshot error:[/] {error}")
        raise typer.Exit(1) from None
    index = result["snapshot"]
    summary = index["summary"]
    state = "[bold green]Snapshot[/]" if index["created"] else "[green]Up to date[/]: snapshot"
    console.print(
        f"{state} [bold]{index['snapshot_id']}[/]\n"
        f"  {summary['objects']:,} objects: {summary['curated_rows']:,} curated candles in "
        f"{len(summary['curated_series'])} series, {summary['raw_rows']:,} raw rows "
        f"({summary['quarantined_objects']:,} raw objects quarantined)"
    )
    return result


@snapshot_app.command("create")
def snapshot_create(config: ConfigOption = None, storage: StorageOption = None) -> None:
    """Freeze the newest validated data into a snapshot (runs the snapshot-market-data flow)."""
    _settings(config, storage=storage)
    _run_snapshot(config)


@snapshot_app.command("list")
def snapshot_list(config: ConfigOption = None, storage: StorageOption = None) -> None:
    """List every snapshot, oldest first."""
    settings = _settings(config, storage=storage)
    from tradeflow.bootstrap import build_store
    from tradeflow.snapshot import list_snapshots

    store = build_store(settings)
    snapshots = list_snapshots(store)
    if not snapshots:
        console.print(f"No snapshots in {store.describe()} yet: run [cyan]make run[/] or "
                      "[cyan]tradeflow snapshot create[/].")  # fmt: skip
        return
    table = Table(title=f"Snapshots in {store.describe()}", header_style="bold")
    for column in ("#", "id", "created (UTC)", "validation", "objects", "curated candles", "quarantined"):
        numeric = column in {"#", "objects", "curated candles", "quarantined"}
        table.add_column(column, justify="right" if numeric else "left")
    for index in snapshots:
        summary = index["summary"]
        table.add_row(str(index["sequence"]), index["snapshot_id"][:16], iso(index["created_at"]),
                      index["validation_id"][:12], f"{summary['objects']:,}", f"{summary['curated_rows']:,}",
                      str(summary["quarantined_objects"]))  # fmt: skip
    console.print(table)


@snapshot_app.command("show")
def snapshot_show(
    snapshot: SnapshotArgument = "latest",
    config: ConfigOption = None,
    storage: StorageOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the whole manifest as JSON.")] = False,
) -> None:
    """Show a snapshot: where it came from and what it holds, per series."""
    settings = _settings(config, storage=storage)
    from collections import defaultdict

    from tradeflow.bootstrap import build_store
    from tradeflow.snapshot import load_manifest, summarise

    manifest = _snapshot_or_exit(lambda: load_manifest(build_store(settings), snapshot))
    if json_out:
        print(json.dumps(manifest, indent=1, sort_keys=True))
        return
    summary, validation = summarise(manifest), manifest["validation"]
    console.print(f"[bold]Snapshot {manifest['snapshot_id']}[/]")
    console.print(
        f"  created {iso(manifest['created_at'])}; parent {manifest['parent'] or 'none'}\n"
        f"  validation #{validation['sequence']} ({validation['validation_id'][:16]}), "
        f"ingest batches through #{manifest['ingest']['sequence']} "
        f"({len(manifest['ingest']['new_batches'])} new since the parent); "
        f"config {manifest['config_hash'][:16]}"
    )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for obj in manifest["objects"]:
        name = "|".join(p for p in (obj["venue"] or "consensus", obj["symbol"], obj["timeframe"] or "") if p)
        groups[(f"{obj['layer']}/{obj['dataset']}", name)].append(obj)
    table = Table(header_style="bold")
    for column in ("layer/dataset", "series", "objects", "rows", "first", "last", "quarantined"):
        table.add_column(column, justify="right" if column in {"objects", "rows", "quarantined"} else "left")
    for (dataset, name), objects in sorted(groups.items()):
        table.add_row(dataset, name, str(len(objects)), f"{sum(o['rows'] for o in objects):,}",
                      iso(min(o["start"] for o in objects)), iso(max(o["end"] for o in objects)),
                      str(sum(bool(o.get("quarantined")) for o in objects)))  # fmt: skip
    console.print(table)
    console.print(f"{summary['objects']:,} objects; {summary['curated_rows']:,} curated candles; "
                  f"{summary['raw_rows']:,} raw rows.")  # fmt: skip


@snapshot_app.command("diff")
def snapshot_diff(
    old: Annotated[str, typer.Argument(help="The older snapshot (id, prefix or 'latest').")],
    new: Annotated[str, typer.Argument(help="The newer snapshot (id, prefix or 'latest').")] = "latest",
    config: ConfigOption = None,
    storage: StorageOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the difference as JSON.")] = False,
) -> None:
    """Show what changed between two snapshots, per series: objects and rows added or removed."""
    settings = _settings(config, storage=storage)
    from tradeflow.bootstrap import build_store
    from tradeflow.snapshot import diff, load_manifest

    store = build_store(settings)
    changes = _snapshot_or_exit(lambda: diff(load_manifest(store, old), load_manifest(store, new)))
    if json_out:
        print(json.dumps(changes, indent=1, sort_keys=True))
        return
    console.print(f"[bold]{changes['old'][:16]} → {changes['new'][:16]}[/]  validation "
                  f"#{changes['validation'][0]} → #{changes['validation'][1]}"
                  + ("; [yellow]config changed[/]" if changes["config_changed"] else ""))  # fmt: skip
    if not changes["series"]:
        console.print("No data differs.")
        return
    table = Table(header_style="bold")
    for column in (
        "series",
        "+objects",
        "-objects",
        "+rows",
        "-rows",
        "quarantine changed",
        "last before",
        "last after",
    ):
        table.add_column(
            column, justify="left" if column == "series" or column.startswith("last") else "right"
        )
    for row in changes["series"]:
        table.add_row(row["series"], str(row["added_objects"]), str(row["removed_objects"]),
                      f"{row['added_rows']:,}", f"{row['removed_rows']:,}", str(row["quarantine_changed"]),
                      iso(row["end_before"]) if row["end_before"] else "-",
                      iso(row["end_after"]) if row["end_after"] else "-")  # fmt: skip
    console.print(table)


@snapshot_app.command("restore")
def snapshot_restore(
    destination: Annotated[Path, typer.Argument(help="The folder to write the files into.")],
    snapshot: Annotated[str, typer.Option(help="A snapshot id, unique prefix or 'latest'.")] = "latest",
    config: ConfigOption = None,
    storage: StorageOption = None,
    curated_only: Annotated[
        bool, typer.Option(help="Only the curated candles, not the raw objects.")
    ] = False,
) -> None:
    """Materialise a snapshot's data as files (Parquet, under their lake keys) plus snapshot.json.

    Every object is checked against its SHA-256 before it is written.
    """
    settings = _settings(config, storage=storage)
    from tradeflow.bootstrap import build_store
    from tradeflow.snapshot import Snapshot, restore

    opened = _snapshot_or_exit(lambda: Snapshot.open(build_store(settings), snapshot))
    objects = opened.objects(layer="curated") if curated_only else None
    count = _snapshot_or_exit(lambda: restore(opened, destination, objects))
    console.print(f"[green]Restored[/] {count:,} objects of snapshot {opened.id[:16]} into {destination} "
                  "(each checked against its SHA-256); manifest: "
                  f"{destination / 'snapshot.json'}")  # fmt: skip


# --- the audit chain ----------------------------------------------------------------------------


def _verify(settings: Settings, full: bool, objects: bool) -> Any:
    from tradeflow.audit.signing import SigningKeyError
    from tradeflow.bootstrap import verify_audit

    try:
        report = verify_audit(settings, full=full, check_objects=objects)
    except SigningKeyError as error:
        err_console.print(f"[bold red]Audit key error:[/] {error}")
        raise typer.Exit(2) from None
    if not report.ok:  # [notifications]: the same notification as the verify-audit-chain flow's
        from flows.audit import notify_audit_verify_failed

        notify_audit_verify_failed(settings, report.to_dict())
    return report


def _print_verify(report: Any) -> None:
    if report.ok:
        console.print(
            f"[bold green]Audit chain verified[/] ({report.mode}): "
            f"entries {report.start_seq}..{report.head_seq} "
            f"re-hashed and linked, "
            f"{report.checkpoints} signed checkpoints good (newest at entry {report.newest_checkpoint}), "
            f"{report.objects:,} referenced objects re-hashed. "
            f"Head {report.head_seq}: {report.head_hash[:16]} ({report.seconds:.2f} s)"
        )
        if not report.checkpoints:
            console.print("[yellow]No signed checkpoint yet:[/] a cut-off tail could not be detected. "
                          "Flow runs write one at their end.")  # fmt: skip
        return
    first = report.first_problem
    from tradeflow.audit.verify import DAMAGE

    err_console.print(f"[bold red]Audit chain damaged[/] in {report.store}")
    err_console.print(f"  first bad: [bold]{first.describe()}[/]\n  ({DAMAGE.get(first.kind, first.kind)})")
    for problem in report.problems[1:10]:
        err_console.print(f"  also: {problem.describe()}")
    if len(report.problems) > 10:
        err_console.print(f"  … {len(report.problems) - 10} more")


@audit_app.command("verify")
def audit_verify(
    config: ConfigOption = None,
    storage: StorageOption = None,
    full: Annotated[
        bool, typer.Option(help="Re-verify from the first entry, not from the last trusted checkpoint.")
    ] = False,
    objects: Annotated[
        bool, typer.Option(help="Re-hash the objects entries reference (snapshots, reports).")
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute every hash and link, check every signed checkpoint, re-hash referenced objects.

    After a clean run the newest checkpoint is remembered, and the next run starts from it
    (--full starts from the first entry). Exit status: 0 when intact, 1 when damaged (the first
    bad entry and the kind of damage are named), 2 when a trusted key cannot be read.
    """
    settings = _settings(config, storage=storage)
    report = _verify(settings, full, objects)
    if json_out:
        print(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        _print_verify(report)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("explain")
def audit_explain(
    target: Annotated[str, typer.Argument(
        help="An id (or a unique prefix of 6+ characters), or 'latest' (the newest snapshot): snapshot, "
             "validation, ingest batch, quarantine, config; later also model, signal, order.")],
    config: ConfigOption = None,
    storage: StorageOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the lineage tree as JSON.")] = False,
) -> None:  # fmt: skip
    """Print an id's lineage as a tree: what it was made from, back to the raw ingest batches."""
    settings = _settings(config, storage=storage)
    from rich.markup import escape
    from rich.tree import Tree

    from tradeflow.audit.chain import iter_entries
    from tradeflow.audit.lineage import explain, index_entries
    from tradeflow.bootstrap import build_store

    store = build_store(settings)
    if target == "latest":  # the newest snapshot
        from tradeflow.snapshot import resolve_id

        target = _snapshot_or_exit(lambda: resolve_id(store, "latest"))
    try:
        node = explain(index_entries(iter_entries(store)), target)
    except LookupError as error:
        err_console.print(f"[bold red]Not found:[/] {error}")
        raise typer.Exit(1) from None
    if json_out:
        print(json.dumps(node.to_dict(), indent=1, default=str))
        return

    def grow(tree: Any, current: Any) -> None:
        for child in current.children:
            grow(tree.add(escape(child.label())), child)
        for missing in current.missing:
            tree.add(f"[yellow]{missing[:16]} (no entry in the chain)[/]")
        if current.entry.kind == "ingest_batch" and not current.seen_before:
            for item in current.entry.payload.get("refs", []):
                tree.add(f"[dim]manifest {store.describe(item['key'])} (sha256 {item['sha256'][:12]}), "
                         "listing every raw object with its SHA-256[/]")  # fmt: skip

    root = Tree(f"[bold]{escape(node.label())}[/]")
    grow(root, node)
    console.print(root)
    console.print(
        "[dim]Each line is an audit entry (kind, id, #seq); `tradeflow audit verify` checks them.[/]"
    )


@audit_app.command("log")
def audit_log(
    config: ConfigOption = None,
    storage: StorageOption = None,
    tail: Annotated[int, typer.Option(help="Show the newest N entries.")] = 20,
) -> None:
    """Show the newest entries of the audit chain."""
    settings = _settings(config, storage=storage)
    from collections import deque

    from tradeflow.audit.chain import iter_entries
    from tradeflow.bootstrap import build_store

    store = build_store(settings)
    entries = deque(iter_entries(store), maxlen=tail)
    if not entries:
        console.print(f"The audit chain in {store.describe()} is empty: run [cyan]make run[/] first.")
        return
    table = Table(title=f"Audit chain {store.describe('audit/chain/')}", header_style="bold")
    for column in ("seq", "time (UTC)", "kind", "id", "actor", "hash"):
        table.add_column(column, justify="right" if column == "seq" else "left", overflow="fold")
    for entry in entries:
        table.add_row(str(entry.seq), iso(entry.ts), entry.kind, (entry.subject or "")[:24], entry.actor[:40],
                      entry.hash[:16])  # fmt: skip
    console.print(table)


@audit_app.command("keygen")
def audit_keygen() -> None:
    """Print a new Ed25519 key pair for signing checkpoints in production."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tradeflow.audit.signing import key_id, private_key_text, public_key_text

    key = Ed25519PrivateKey.generate()
    console.print(
        "Keep the private key secret: put it in the environment of every process that writes the chain\n"
        "(TRADEFLOW_AUDIT_SIGNING_KEY, or audit.signing_key_env) or in a Prefect Secret block\n"
        "(audit.signing_key_block). Give the public key to every verifier (audit.public_keys).\n"
    )
    print(f"private key: {private_key_text(key)}")
    print(f"public key:  {public_key_text(key.public_key())}")
    print(f"key id:      {key_id(key.public_key())}")


# --- features and training ----------------------------------------------------------------------

features_app = typer.Typer(help="Feature matrices built from snapshots.", no_args_is_help=True)
app.add_typer(features_app, name="features")
ledger_app = typer.Typer(
    help="The SQL ledger of orders, fills, positions and risk events.", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("status")
def ledger_status(config: ConfigOption = None) -> None:
    """Show where the ledger is and whether its schema is current; exit 1 if it is behind."""
    from tradeflow.bootstrap import ledger_url
    from tradeflow.ledger.store import Ledger

    settings = _settings(config)
    ledger = Ledger(ledger_url(settings))
    try:
        current, head = ledger.schema_revision(), ledger.head_revision()
    finally:
        ledger.close()
    state = "[green]current[/]" if current == head else "[yellow]behind: run `tradeflow ledger upgrade`[/]"
    where = ledger.url.render_as_string(hide_password=True)
    console.print(f"Ledger {where}: schema {current or 'empty'} (newest {head}), {state}")
    if current != head:
        raise typer.Exit(1)


@ledger_app.command("upgrade")
def ledger_upgrade(config: ConfigOption = None) -> None:
    """Create the ledger's tables, or migrate them to the newest schema (Alembic)."""
    from tradeflow.bootstrap import ledger_url
    from tradeflow.ledger.store import Ledger

    settings = _settings(config)
    ledger = Ledger(ledger_url(settings))
    try:
        before = ledger.schema_revision()
        ledger.upgrade()
        after = ledger.schema_revision()
    finally:
        ledger.close()
    console.print(
        f"Ledger {ledger.url.render_as_string(hide_password=True)}: schema {before or 'empty'} → {after}"
    )


@features_app.command("build")
def features_build(
    snapshot: Annotated[str, typer.Option(help="A snapshot id, a unique prefix, or 'latest'.")] = "latest",
    config: ConfigOption = None,
) -> None:
    """Build the feature matrix of a snapshot (runs the build-features flow); reuse it if stored."""
    _settings(config)
    _run_features(config, snapshot)


def _run_on_snapshot(flow: Any, status: str, config: Path | None, snapshot: str) -> dict[str, Any]:
    """Run a flow that takes a snapshot id; a missing snapshot exits 1 with the reason."""
    with console.status(status):
        result: dict[str, Any] = _snapshot_or_exit(
            lambda: flow(config_path=str(config) if config else None, snapshot=snapshot)
        )
    return result


def _print_features(manifest: dict[str, Any]) -> None:
    from tradeflow.features.store import matrix_summary

    state = "reused" if manifest.get("reused") else f"built in {manifest['build_seconds']:.1f} s"
    console.print(f"[bold green]Features[/] ({state}): {matrix_summary(manifest)}")


def _run_features(config: Path | None, snapshot: str) -> dict[str, Any]:
    from flows.features import build_features

    status = "Building features: indicators, 5m/15m/1h/4h bars, volume profile, regime ..."
    result = _run_on_snapshot(build_features, status, config, snapshot)
    _print_features(result["manifest"])
    return result


@features_app.command("show")
def features_show(config: ConfigOption = None) -> None:
    """Print the configured feature set's parameters and hash (`[features] params` overrides them)."""
    settings = _settings(config)
    from tradeflow.features.store import feature_spec

    spec = feature_spec(settings)
    console.print_json(data=spec.definition())
    console.print(f"feature set {spec.name} version {spec.version}: hash {spec.hash}")


@app.command()
def train(
    snapshot: Annotated[str, typer.Option(help="A snapshot id, a unique prefix, or 'latest'.")] = "latest",
    config: ConfigOption = None,
) -> None:
    """Train and compare the models walk-forward on a snapshot, track them in MLflow, promote the best."""
    _settings(config)
    _run_training(config, snapshot)


def _run_training(config: Path | None, snapshot: str) -> dict[str, Any]:
    from flows.training import train_models

    status = "Training: features, labels, walk-forward folds, three models, MLflow ..."
    result = _run_on_snapshot(train_models, status, config, snapshot)
    _print_features(result["features"])
    _print_training(result["training"])
    return result


def _print_training(summary: dict[str, Any]) -> None:
    record, decision = summary["record"], summary["decision"]
    table = Table(title=f"Walk-forward, out of sample ({summary['folds']} folds, {summary['rows']:,} rows)",
                  header_style="bold")  # fmt: skip
    for column in ("model", "version", "ROC AUC", "log loss", "Brier", "accuracy", "Sharpe after fees"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in record["models"]:
        o = model["overall"]
        style = "bold green" if model["version"] == summary["champion"] else ""
        values = [f"{o['roc_auc']:.4f}", f"{o['log_loss']:.4f}", f"{o['brier']:.4f}", f"{o['accuracy']:.3f}",
                  f"{o['sharpe']:.2f}"]  # fmt: skip
        table.add_row(model["name"], model["version"], *values, style=style)
    console.print(table)
    verdict = "[green]promoted to champion[/]" if decision["promote"] else "[yellow]not promoted[/]"
    console.print(f"Best of this run: v{decision['challenger']}, {verdict}: {decision['reason']}.")
    console.print(f"Champion: v{summary['champion']} of {summary['registered_model']}. MLflow run "
                  f"{record['parent_run_id'][:12]} in {summary['tracking_uri']} "
                  "([cyan]make mlflow[/]).")  # fmt: skip


# --- models -------------------------------------------------------------------------------------


def _tracker(settings: Settings) -> Any:
    from models.tracking import tracker_from_settings

    return tracker_from_settings(settings)


def _version_row(version: Any, aliases: dict[str, list[str]]) -> dict[str, str]:
    tags = dict(version.tags or {})
    return {
        "version": str(version.version),
        "model": tags.get("tradeflow.model", "?"),
        "aliases": ", ".join(sorted(aliases.get(str(version.version), []))),
        "created (UTC)": iso(int(version.creation_timestamp)),
        "snapshot": tags.get("tradeflow.snapshot_id", "")[:12],
        "OOS AUC": tags.get("oos_roc_auc", "-"),
        "OOS log loss": tags.get("oos_log_loss", "-"),
        "OOS Sharpe": tags.get("oos_sharpe", "-"),
        "disabled": tags.get("tradeflow.disabled", ""),
    }


@models_app.command("list")
def models_list(config: ConfigOption = None) -> None:
    """List every registered version of the target's model, with aliases and out-of-sample scores."""
    settings = _settings(config)
    tracker = _tracker(settings)
    versions = tracker.versions()
    if not versions:
        console.print(f"No model versions of {tracker.registered_model} yet: run [cyan]make run[/] or "
                      "[cyan]tradeflow train[/].")  # fmt: skip
        return
    rows = [_version_row(v, tracker.aliases()) for v in versions]
    table = Table(title=f"{tracker.registered_model} ({tracker.tracking_uri})", header_style="bold")
    for column in rows[0]:
        table.add_column(column, justify="right" if column.startswith(("OOS", "version")) else "left")
    for row in rows:
        style = "bold green" if "champion" in row["aliases"] else ("dim" if row["disabled"] else "")
        table.add_row(*row.values(), style=style)
    console.print(table)


@models_app.command("compare")
def models_compare(
    versions: Annotated[list[str] | None, typer.Argument(
        help="Versions to compare; default: champion, challenger and the newest run's models.")] = None,
    config: ConfigOption = None,
) -> None:  # fmt: skip
    """Compare model versions side by side: out-of-sample metrics, and per fold when they share a run."""
    settings = _settings(config)
    tracker = _tracker(settings)
    found = {str(v.version): v for v in tracker.versions()}
    if not found:
        console.print("No model versions yet: run [cyan]make run[/] first.")
        return
    wanted = versions or []
    if not wanted:
        newest_run = next(iter(found.values())).tags.get("tradeflow.training_run")
        wanted = [k for k, v in found.items() if v.tags.get("tradeflow.training_run") == newest_run]
        for alias in ("champion", "challenger"):
            holder = tracker.version_by_alias(alias)
            if holder is not None and str(holder.version) not in wanted:
                wanted.append(str(holder.version))
    missing = [w for w in wanted if w not in found]
    if missing:
        err_console.print(f"[bold red]No such version:[/] {', '.join(missing)} (have {', '.join(found)})")
        raise typer.Exit(1)
    metrics = ("roc_auc", "log_loss", "brier", "accuracy", "precision", "recall", "sharpe")
    table = Table(title=f"{tracker.registered_model}: out of sample", header_style="bold")
    table.add_column("metric")
    for name in wanted:
        version = found[name]
        aliases = ", ".join(tracker.aliases().get(name, []))
        label = f"v{name} {version.tags.get('tradeflow.model', '')}" + (f" ({aliases})" if aliases else "")
        table.add_column(label, justify="right")
    for metric in metrics:
        table.add_row(metric, *[found[n].tags.get(f"oos_{metric}", "-") for n in wanted])
    table.add_row("snapshot", *[found[n].tags.get("tradeflow.snapshot_id", "")[:12] for n in wanted])
    table.add_row("feature set", *[found[n].tags.get("tradeflow.feature_set_hash", "")[:12] for n in wanted])
    console.print(table)
    runs = {found[n].tags.get("tradeflow.training_run") for n in wanted}
    if len(runs) == 1 and None not in runs:
        console.print(
            "These versions come from one training run: the same folds, so the numbers compare fairly."
        )
    else:
        console.print(
            "[yellow]These versions come from different training runs (different folds or data).[/]"
        )


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the registry and the audit chain).")],
    config: ConfigOption = None,
) -> None:
    """Make a version the champion by hand; the decision and its reason go to the audit chain."""
    settings = _settings(config)
    tracker = _tracker(settings)
    from models.training import promote_by_hand

    try:
        entry = promote_by_hand(settings, tracker, version, reason)
    except LookupError as error:
        err_console.print(f"[bold red]Error:[/] {error}")
        raise typer.Exit(1) from None
    console.print(f"[green]v{version} is now the champion[/] of {tracker.registered_model}; audit entry "
                  f"#{entry.seq} ({entry.kind}).")  # fmt: skip


@models_app.command("live")
def models_live(
    snapshot: Annotated[str, typer.Option(help="A snapshot id, a unique prefix, or 'latest'.")] = "latest",
    config: ConfigOption = None,
) -> None:
    """Check the champion's hit rate on data newer than its training; flag (and disable) it under the floor.

    Uses the snapshot's feature matrix (build it with `tradeflow features build`). The floor,
    window and automatic disabling are `training.live_hit_rate_floor`, `live_window`, `auto_disable`.
    """
    settings = _settings(config)
    from models.training import audit_log, check_live, labels_for
    from tradeflow.bootstrap import build_store
    from tradeflow.features.store import load_features, snapshot_candles
    from tradeflow.snapshot import Snapshot

    tracker = _tracker(settings)
    store = build_store(settings)
    opened = _snapshot_or_exit(lambda: Snapshot.open(store, snapshot))
    try:
        matrix = load_features(store, settings, opened.id)
    except LookupError as error:
        err_console.print(
            f"[bold red]Error:[/] {error} (or `tradeflow features build --snapshot {opened.id[:12]}`)"
        )
        raise typer.Exit(1) from None
    labels = labels_for(settings.training, snapshot_candles(opened, sorted(matrix["symbol"].unique())))
    check, items = check_live(settings, tracker, matrix, labels)
    if items:
        log = audit_log(settings)
        log.append_many(items)
        log.checkpoint()
    colour = "red" if check.disabled or (check.status and check.status.below_floor) else "green"
    disabled = " — [bold red]disabled[/]: signals will run without it" if check.disabled else ""
    console.print(f"Champion v{check.version}: [{colour}]{check.reason}[/]{disabled}")
    if check.status is not None and check.status.below_floor:
        raise typer.Exit(1)


# --- signals, allocation, backtest --------------------------------------------------------------


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value:.2%}"


def _print_backtest(summary: dict[str, Any]) -> None:
    p, c = summary["performance"], summary["costs"]
    title = (
        f"Backtest {summary['id'][:12]} (model v{summary['model_version']}, held-out walk-forward periods)"
    )
    table = Table(title=title, header_style="bold")
    names = ("total return", "annualised", "Sharpe", "Sortino", "max drawdown", "trades", "win rate",
             "profit factor", "fees paid")  # fmt: skip
    for name in names:
        table.add_column(name, justify="right")

    def num(value: Any) -> str:
        return "—" if value is None else f"{value:.2f}"

    table.add_row(_pct(p["total_return"]), _pct(p["annualized_return"]), num(p["sharpe"]), num(p["sortino"]),
                  _pct(p["max_drawdown"]), str(p["trades"]), _pct(p["win_rate"]), num(p["profit_factor"]),
                  f"{c['fees']:,.2f}")  # fmt: skip
    console.print(table)
    partial = f"{int(c['partial_fills'])} of {int(c['fills'])} fills partial"
    console.print(
        f"Costs: fees {c['fees']:,.2f}, spread {c['spread']:,.2f}, "
        f"market impact {c['market_impact']:,.2f}; {partial}."
    )
    carlo = summary.get("monte_carlo")
    if carlo:
        low, high = _pct(carlo["bootstrap_final_return_p5"]), _pct(carlo["bootstrap_final_return_p95"])
        console.print(
            f"Monte Carlo, {carlo['scenarios']:,} scenarios: "
            f"final return 5th–95th percentile {low} to {high}, "
            f"VaR 95 {_pct(carlo['bootstrap_var_95'])}, "
            f"P(drawdown halt) {_pct(carlo['bootstrap_halt_probability'])}."
        )
    if summary.get("ablation"):
        parts = [f"{row['variant'].removeprefix('without ')} {row['contribution']:+.2%}"
                 for row in summary["ablation"][1:] if row.get("contribution") is not None]  # fmt: skip
        console.print("Each family's contribution to the total return: " + ", ".join(parts) + ".")
    for note in summary.get("notes", []):
        console.print(f"[yellow]{note}[/]")
    console.print(
        f"Report: [cyan]{summary['report_path']}[/] (also in MLflow, run {summary['mlflow_run'][:12]})."
    )


def _run_backtest(config: Path | None, snapshot: str) -> dict[str, Any]:
    from flows.backtest import backtest as backtest_flow

    status = "Backtesting: bar by bar with fees and slippage, 10,000 Monte Carlo scenarios, ablation ..."
    result = _run_on_snapshot(backtest_flow, status, config, snapshot)
    _print_backtest(result)
    return result


@app.command()
def backtest(
    config: ConfigOption = None,
    snapshot: Annotated[str, typer.Option(help="A snapshot id, a unique prefix, or 'latest'.")] = "latest",
    open_report: Annotated[bool, typer.Option("--open", help="Open the HTML report in a browser.")] = False,
) -> None:
    """Backtest the champion on its held-out walk-forward periods; write the HTML report.

    Bar by bar over the snapshot's 1-minute candles with the same signal, allocation, exit and
    protection rules as live trading; fees per venue, slippage and market impact, partial fills
    and latency. Then Monte Carlo and the ablation of each feature family. Needs a trained model
    (`tradeflow train`); without one the timeframes alone decide.
    """
    result = _run_backtest(config, snapshot)
    if open_report:
        import webbrowser

        webbrowser.open(Path(result["report_path"]).resolve().as_uri())


@app.command()
def signals(
    config: ConfigOption = None,
    snapshot: Annotated[str, typer.Option(help="A snapshot id, a unique prefix, or 'latest'.")] = "latest",
    equity: Annotated[
        float | None, typer.Option(help="Equity to size against; default backtest.initial_equity.")
    ] = None,
) -> None:
    """Decide today's signals on the newest bar and turn them into target weights, with the reasons."""
    from flows.strategy import allocate_portfolio, generate_signals

    made = _run_on_snapshot(generate_signals, "Deciding signals with the champion ...", config, snapshot)
    with console.status("Allocating within the risk limits ..."):
        result = allocate_portfolio(
            config_path=str(config) if config else None, signals_id=made["signals_id"], equity=equity
        )
    settings = _settings(config)
    from tradeflow.bootstrap import build_store
    from tradeflow.strategy.decide import SIGNALS_PREFIX, load_document

    document = load_document(build_store(settings), SIGNALS_PREFIX, made["signals_id"])
    table = Table(title=f"Signals {made['signals_id']} and target weights {result['allocation_id']}",
                  header_style="bold")  # fmt: skip
    for column in ("symbol", "signal", "p(up)", "target weight", "why"):
        table.add_column(column, justify="right" if column in ("p(up)", "target weight") else "left")
    weights = {w["symbol"]: w for w in result["weights"]}
    for evaluation in document["evaluations"]:
        signal, weight = evaluation["signal"], weights[evaluation["symbol"]]
        side = (
            "—"
            if signal is None
            else f"{'long' if signal['direction'] > 0 else 'short'} {signal['confidence']:.1f}"
        )
        chance = "—" if evaluation["probability"] is None else f"{evaluation['probability']:.3f}"
        why = evaluation["reason"] + ("; " + "; ".join(weight["reasons"]) if weight["reasons"] else "")
        table.add_row(evaluation["symbol"], side, chance, _pct(weight["weight"]), why)
    console.print(table)


kill_switch_app = typer.Typer(
    help="The kill switch: while engaged, trading is HALTED (no entries, open orders cancelled).",
    no_args_is_help=True,
)
app.add_typer(kill_switch_app, name="kill-switch")


@kill_switch_app.command("on")
def kill_switch_on(
    reason: Annotated[str, typer.Option(help="Why; recorded in the ledger and the audit chain.")] = "manual",
    config: ConfigOption = None,
) -> None:
    """Engage the kill switch; a running session halts within a second."""
    from tradeflow.execution.killswitch import KillSwitch
    from tradeflow.execution.runner import kill_switch_path

    path = kill_switch_path(_settings(config))
    KillSwitch(path).engage(reason, "cli")
    console.print(f"[red]Kill switch ENGAGED[/] ({path}): trading halts; open orders are cancelled.")


@kill_switch_app.command("off")
def kill_switch_off(config: ConfigOption = None) -> None:
    """Release the kill switch (trading resumes unless the protections keep it halted)."""
    from tradeflow.execution.killswitch import KillSwitch
    from tradeflow.execution.runner import kill_switch_path

    path = kill_switch_path(_settings(config))
    released = KillSwitch(path).release()
    console.print("Kill switch released." if released else "The kill switch was not engaged.")


@kill_switch_app.command("status")
def kill_switch_status(config: ConfigOption = None) -> None:
    """Show whether the kill switch is engaged; exit 1 if it is."""
    from tradeflow.execution.killswitch import KillSwitch
    from tradeflow.execution.runner import kill_switch_path

    path = kill_switch_path(_settings(config))
    state = KillSwitch(path).state()
    if state.engaged:
        console.print(f"[red]ENGAGED[/] by {state.source or 'file'}: {state.reason} ({path})")
        raise typer.Exit(1)
    console.print(f"Not engaged ({path} absent).")


@app.command()
def trade(
    paper: Annotated[
        bool, typer.Option("--paper", help="Paper trading: fills simulated on the live book.")
    ] = False,
    live: Annotated[
        bool, typer.Option("--live", help="Real orders at the venue (needs credentials).")
    ] = False,
    stage: Annotated[
        bool, typer.Option("--stage", help="Dry run: decisions recorded, nothing sent.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds; default: until Ctrl-C.")
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="champion (the serving model with the backtest's rules) or churn (exercises the order path)."
        ),
    ] = None,
    venue: Annotated[
        str | None, typer.Option(help="Venue id; default: the execution.venue setting, else the first venue.")
    ] = None,
    kill_switch: Annotated[
        bool, typer.Option("--kill-switch", help="Start with the kill switch engaged.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Trade from live websocket data until stopped (the CLI twin of the stream-execution flow).

    Reconciles with the venue first, then streams books, trades and bars; each book event runs the
    model, the signal/allocation/exit rules and the pre-trade risk checks; orders go to the paper,
    live or staging broker and everything lands in the ledger and the audit chain. Ctrl-C stops
    gracefully. `tradeflow kill-switch on` halts it from another terminal.
    """
    chosen = [name for name, flag in (("paper", paper), ("live", live), ("staging", stage)) if flag]
    if len(chosen) > 1:
        err_console.print("[red]Choose one of --paper, --live and --stage.[/]")
        raise typer.Exit(2)
    overrides: dict[str, Any] = {}
    if venue:
        overrides["venue"] = venue
    settings = _settings(config)
    if overrides:
        settings = settings.model_copy(update={"execution": settings.execution.model_copy(update=overrides)})
    result = _run_trade(settings, config, chosen[0] if chosen else None, strategy, duration, kill_switch)
    if result.get("state") == "HALTED":
        raise typer.Exit(3)


def _run_trade(settings: Settings, config: Path | None, mode: str | None, strategy: str | None,
               duration: float | None, kill_switch: bool) -> dict[str, Any]:  # fmt: skip
    from flows.execution import stream_execution

    mode = mode or settings.execution.mode
    strategy = strategy or settings.execution.strategy
    if strategy not in ("champion", "churn"):
        err_console.print(f"[red]--strategy must be champion or churn, not {strategy!r}.[/]")
        raise typer.Exit(2)
    console.print(
        f"[bold]Trading[/] ({mode}, {strategy}) on {settings.execution.venue or settings.venues[0].id}"
        + (f" for {duration:.0f} s" if duration else " until Ctrl-C")
        + " ..."
    )
    try:
        result: dict[str, Any] = stream_execution(
            config_path=str(config) if config else None, mode=mode, strategy=strategy,  # type: ignore[call-overload]
            duration_seconds=duration, kill_switch=kill_switch,
        )  # fmt: skip
    except ConfigError as error:
        err_console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from error
    _print_trade(result)
    return result


def _parse_params(items: list[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            err_console.print(f"[red]--param {item!r}: expected KEY=VALUE, e.g. -p snapshot=latest[/]")
            raise typer.Exit(2)
        try:
            parameters[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            parameters[key.strip()] = value
    return parameters


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return (
            f"{{{len(value)} keys}}"
            if len(json.dumps(value, default=str)) > 90
            else json.dumps(value, default=str)
        )
    if isinstance(value, list):
        return (
            f"[{len(value)} items]"
            if len(json.dumps(value, default=str)) > 90
            else json.dumps(value, default=str)
        )
    return str(value)


def _deployment_specs(settings: Settings, names: list[str]) -> list[Any]:
    """The deployments of prefect.yaml (all, or those named); exit 2 naming a bad override or name."""
    from flows.deployments import load_specs, select

    try:
        return select(load_specs(settings), names)
    except ConfigError as error:
        err_console.print(f"[red]Config error[/]\n{error}")
        raise typer.Exit(2) from None


def _run_one_flow(settings: Settings, config: Path | None, name: str, items: list[str]) -> None:
    """Run one flow of prefect.yaml by name, now, in this process; print its result's headline values."""
    from flows.deployments import load_flow

    parameters = _parse_params(items)
    [spec, *_] = _deployment_specs(settings, [name])

    flow = load_flow(spec.entrypoint)
    unknown = sorted(set(parameters) - set(flow.parameters.properties))
    if unknown:
        err_console.print(f"[red]{spec.flow_name} has no parameter {', '.join(unknown)}; it takes "
                          f"{', '.join(flow.parameters.properties)}.[/]")  # fmt: skip
        raise typer.Exit(2)
    if config is not None and "config_path" in flow.parameters.properties:
        parameters.setdefault("config_path", str(config))
    given = ", ".join(f"{k}={v}" for k, v in parameters.items())
    console.print(f"[bold]Running {spec.flow_name}[/] on demand" + (f" with {given}" if given else ""))
    started = time.monotonic()
    try:
        result = flow(**parameters)
    except ConfigError as error:
        err_console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    table = Table(title=f"{spec.flow_name}: done in {time.monotonic() - started:.1f} s", header_style="bold")
    table.add_column("result")
    table.add_column("value", overflow="fold")
    for key, value in result.items() if isinstance(result, dict) else [("result", result)]:
        table.add_row(str(key), _short(value))
    console.print(table)
    console.print("The run, its tasks and artifacts: [cyan]make ui[/] (http://127.0.0.1:4200).")


def _deployment_table(specs: list[Any], title: str) -> Table:
    table = Table(title=title, header_style="bold")
    table.add_column("deployment")
    table.add_column("schedule")
    table.add_column("what it does", overflow="fold")
    for spec in specs:
        first = spec.description.split(". ")[0].removesuffix(".") + "."
        table.add_row(spec.full_name, spec.schedule_text(), escape(first))
    return table


DeploymentsArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Deployments (flow/deployment, or a flow name); default: all of prefect.yaml.",
                   show_default=False),
]  # fmt: skip


@app.command()
def deployments(config: ConfigOption = None) -> None:
    """List the deployments of prefect.yaml with their schedules (after [orchestration] schedules)."""
    settings = _settings(config)
    console.print(_deployment_table(_deployment_specs(settings, []), "Deployments (prefect.yaml)"))


@app.command()
def serve(
    names: DeploymentsArgument = None,
    config: ConfigOption = None,
    port: Annotated[
        int, typer.Option(help="Port of the Prefect server started when none is running.")
    ] = 4200,
) -> None:
    """Run the deployments' schedules from this one process, with the Prefect UI, until Ctrl-C.

    Uses the Prefect server at $PREFECT_API_URL, or one already on 127.0.0.1:PORT ([cyan]make ui[/]),
    or starts one (stopped on exit). Starts the config's local venues for the scheduled runs to
    share, creates the venue request budgets, the streaming session limit and the notification
    automation, then serves every schedule of prefect.yaml (or the NAMES given): the runs appear
    in the UI with their artifacts. Nothing to register, no work pool; for workers use
    [cyan]tradeflow deploy[/].
    """
    settings = _settings(config)
    if config is not None:
        os.environ["TRADEFLOW_CONFIG"] = str(config.resolve())
    # The runs' logs are what the UI shows under each run; keep INFO (make's default is WARNING).
    os.environ["PREFECT_LOGGING_LEVEL"] = os.environ.get("TRADEFLOW_SERVE_LOGGING_LEVEL", "INFO")
    # SIGTERM (a service manager, `kill`) stops serving like Ctrl-C, so the server started here stops too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from flows.deployments import (
        prefect_api,
        prepare_server,
        runner_deployments,
        serve_deployments,
    )
    from tradeflow.bootstrap import local_venues

    try:
        with prefect_api(Path(os.environ["PREFECT_HOME"]), port) as (ui, started_here):
            specs = _deployment_specs(settings, names or [])
            console.print(
                f"Prefect server: {ui}" + (" (started here; stopped on exit)" if started_here else "")
            )
            with local_venues(settings) as running:
                if running:
                    console.print(f"Started {len(running)} local venues: " + ", ".join(
                        f"{vid} [dim]{url}[/]" for vid, url in running.items()))  # fmt: skip
                prepare_server(settings)
                deployments = runner_deployments(specs, running)
                console.print(_deployment_table(specs, "Serving"))
                console.print(
                    f"Open [cyan]{ui}/deployments[/] for the schedules, [cyan]{ui}/runs[/] for the runs and "
                    "their artifacts. Run one now: [cyan]prefect deployment run 'FLOW/DEPLOYMENT'[/] "
                    "(with PREFECT_API_URL set) or [cyan]tradeflow run FLOW[/]. Ctrl-C stops."
                )
                serve_deployments(deployments)
    except KeyboardInterrupt:
        console.print("Stopped serving.")
    except RuntimeError as error:
        err_console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None


@app.command()
def deploy(
    names: DeploymentsArgument = None,
    config: ConfigOption = None,
    pool: Annotated[
        str, typer.Option(help="The work pool (a process pool is created if missing).")
    ] = "tradeflow",
) -> None:
    """Register the deployments of prefect.yaml with a work pool on a Prefect server (production).

    Needs a server: $PREFECT_API_URL, or one on 127.0.0.1:4200 ([cyan]make ui[/]). Creates the work
    pool (process type) if missing, the venue request budgets, the streaming session limit and
    the notification automation, then runs [cyan]prefect deploy --all[/] on prefect.yaml (with the
    [orchestration] schedules overrides). Then start workers where the code is:
    [cyan]prefect worker start --pool tradeflow[/].
    """
    settings = _settings(config)
    from flows.deployments import deploy as register
    from flows.deployments import ensure_work_pool, prepare_server, server_healthy

    if not os.environ.get("PREFECT_API_URL"):
        if not server_healthy("http://127.0.0.1:4200"):
            err_console.print(
                "[red]No Prefect server: set PREFECT_API_URL, or start one with [cyan]make ui[/].[/]"
            )
            raise typer.Exit(2)
        os.environ["PREFECT_API_URL"] = "http://127.0.0.1:4200/api"
    specs = _deployment_specs(settings, names or [])
    if ensure_work_pool(pool):
        console.print(f"Created the process work pool {pool!r}.")
    prepare_server(settings)
    try:
        register(specs, pool, config)
    except RuntimeError as error:
        err_console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    console.print(_deployment_table(specs, f"Deployed to work pool {pool!r}"))
    console.print(
        f"Start a worker where this code and config are: [cyan]prefect worker start --pool {pool}[/]"
    )


def _print_trade(result: dict[str, Any]) -> None:
    table = Table(title=f"Trading session on {result['venue']} ({result['mode']})", header_style="bold")
    table.add_column("what")
    table.add_column("value", justify="right")
    rejections = ", ".join(f"{k} {v}" for k, v in result["rejections"].items()) or "none"
    for name, value in (
        ("market events", f"{result['events']:,}"),
        ("decisions (risk-checked orders)", f"{result['decisions']:,}"),
        ("orders sent / fills", f"{result['orders_sent']:,} / {result['fills']:,}"),
        ("risk rejections", rejections),
        ("reconciliations (differences)", f"{result['reconciliations']} ({result['differences']})"),
        ("resyncs / reconnects", f"{result['resyncs']} / {result['reconnects']}"),
        (
            "decision latency p50 / p99",
            f"{result['latency_p50_us'] or 0:.0f} / {result['latency_p99_us'] or 0:.0f} µs",
        ),
        ("trading state", result["state"]),
        ("positions", ", ".join(f"{k} {v:g}" for k, v in result["positions"].items()) or "flat"),
        ("equity start → stop", f"{result['start_equity']:,.2f} → {result['equity']:,.2f}"),
    ):
        table.add_row(name, value)
    console.print(table)
    kinds = result.get("decision_kinds") or {}
    if kinds:
        console.print("Decider: " + ", ".join(f"{kind} {count:,}" for kind, count in sorted(kinds.items())))
    probabilities = {k: v for k, v in (result.get("probabilities") or {}).items() if v is not None}
    if probabilities:
        console.print(
            "Champion's latest p(up): " + ", ".join(f"{k} {v:.3f}" for k, v in probabilities.items())
        )
    for reason in result.get("last_reasons", []):
        console.print(f"  {reason['kind']} {reason['symbol'] or 'portfolio'}: {reason['reason']}")
    if not result["orders_sent"] and result["mode"] != "staging":
        why = (
            "the decider proposed none (its newest reasons above); on the simulator's random walk the "
            "champion rarely crosses its thresholds."
            if result.get("last_reasons")
            else "no decision bar closed during the session (the strategy decides at the close of every "
            "decision bar, 15 minutes by default), so nothing was due."
        )
        console.print(f"No orders: {why} [cyan]--strategy churn[/] exercises the order path.")
    for alert in result.get("alerts", []):
        console.print(f"[yellow]alert[/] {alert['kind']}: {alert['summary']}")
    console.print("Orders, fills and risk events: [cyan]tradeflow ledger orders[/]; the audit trail: "
                  "[cyan]tradeflow audit log[/].")  # fmt: skip


@ledger_app.command("orders")
def ledger_orders(
    limit: Annotated[int, typer.Option(help="Show the newest this many orders.")] = 20,
    config: ConfigOption = None,
) -> None:
    """Show the newest orders with their state and fills, then positions and recent risk events."""
    from tradeflow.bootstrap import ledger_url
    from tradeflow.ledger.store import Ledger

    ledger = Ledger.open(ledger_url(_settings(config)))
    try:
        orders = sorted(ledger.orders(), key=lambda o: o.created_at)[-limit:]
        table = Table(title=f"Newest {len(orders)} orders", header_style="bold")
        for column in (
            "time (UTC)",
            "venue",
            "symbol",
            "side",
            "quantity",
            "price",
            "filled",
            "state",
            "client id",
        ):
            table.add_column(column, justify="right" if column in ("quantity", "price", "filled") else "left")
        for order in orders:
            table.add_row(iso(order.created_at), order.venue, order.symbol, order.side, f"{order.quantity:g}",
                          "market" if order.price is None else f"{order.price:g}",
                          f"{order.filled_quantity:g}",
                          order.state, order.client_order_id)  # fmt: skip
        console.print(table)
        positions = [p for p in ledger.positions() if p.quantity or p.realized_pnl]
        for position in positions:
            console.print(f"position {position.venue} {position.symbol}: {position.quantity:g} at "
                          f"{position.average_price:.2f}, realized {position.realized_pnl:,.2f}")  # fmt: skip
        for event in ledger.risk_events()[-5:]:
            console.print(f"risk event {iso(event.time)} {event.kind}: {event.reason}")
    finally:
        ledger.close()


def main() -> None:
    """Run the CLI."""
    app()


if __name__ == "__main__":
    main()
