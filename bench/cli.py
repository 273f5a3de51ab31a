"""``python -m bench``: argument parsing and the order of the benchmark sections."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.workload import REPO, Workspace, base_settings, last_whole_hour_ms
from tradeflow.bootstrap import prepare_environment
from tradeflow.timeframes import iso, to_ms

RESULTS_DIR = REPO / "bench" / "results"
SECTIONS = (
    "throughput",
    "second-run",
    "validation",
    "audit",
    "features",
    "backtest",
    "orchestration",
    "execution",
)

#: The full run and the --quick smoke run: look-back days of 1m and 1h, and repetitions.
FULL = {"days_1m": 30, "days_1h": 180, "repeat": 3}
QUICK = {"days_1m": 3, "days_1h": 30, "repeat": 1}

#: Environment overrides the benchmark sets itself: a stray one would silently change the window
#: or point every run at the same (non-empty) lake.
_CONTROLLED_ENV = ("TRADEFLOW_CONFIG", "TRADEFLOW_STORAGE__URL", "TRADEFLOW_DATA_DIR", "TRADEFLOW_HISTORY__")


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Benchmark tradeflow against its local simulated venues.\n\n"
            "throughput  the whole ingest-market-data flow (fetch, parse, store, manifest, under\n"
            "            Prefect) vs a bare loop of ccxt fetch_ohlcv calls over the same pages of\n"
            "            the same running simulator: sequential, and with a thread pool of\n"
            "            ingest.max_concurrency. Goal: pipeline <= 1.25x the bare concurrent loop.\n"
            "second-run  the real CLI (python -m tradeflow.cli ingest) twice over one pinned\n"
            "            window; the second finds nothing new. Wall times, the flow's own seconds,\n"
            "            their ratios, and the pipeline process's peak RSS.\n"
            "validation  the Great Expectations candle + cross-venue suites on one venue's batch of\n"
            "            1m candles: one day (1,440 rows) and 90 days (129,600 rows), the consensus\n"
            "            step, GX's import time; against fetching the same day with the bare ccxt\n"
            "            loop. Goal: validating a day costs less than fetching it.\n"
            "audit       the audit chain: append throughput (local folder and S3 on a moto server,\n"
            "            one entry per segment and 1,000), verify throughput vs bare SHA-256 (goal:\n"
            "            <= 3x), and the chain's work in an ingestion run over the first run's flow\n"
            "            seconds (goal: < 5 %; measured by second-run, else bench/README.md's).\n"
            "features    the feature matrix (build_feature_matrix, default spec) on 5 symbols x 1 year\n"
            "            of 1m candles: median build time and peak RSS; RSI, ATR, MACD, BBANDS,\n"
            "            ADX/DI and OBV vs TA-Lib on the same arrays (goal: <= 2x TA-Lib); per-fold\n"
            "            fit seconds of lightgbm, logistic and random_forest in run_walk_forward; one-row\n"
            "            LightGBM Booster.predict latency (goal: p99 < 1 ms).\n"
            "backtest    the backtester's signals mode (run_signals) vs vectorbt's warm\n"
            "            Portfolio.from_signals on the same MA-crossover signals, 100,000 random-walk 1m\n"
            "            bars and a recorded Binance 1m file (goal: <= 1x vectorbt, same trades and final\n"
            "            equity); a 20-combination parameter sweep in backtests/s; monte_carlo with\n"
            "            10,000 scenarios.\n"
            "orchestration the daily-pipeline flow on the embedded default, end to end: a real Prefect\n"
            "            flow run vs the same composition with Prefect taken out (plain calls, a thread\n"
            "            pool), alternating, each in a fresh process and data folder; the overhead's share\n"
            "            of the wall time (goal: < 10 %), per task run, and the API start-up apart.\n"
            "execution   the streaming flow: book maintenance events/s (parse + apply, vs a plain-Python\n"
            "            book; goal >= 20,000/s and >= baseline), the decision hot path book event ->\n"
            "            order decision with a LightGBM champion (goal p99 < 1 ms at >= 5,000 events/s),\n"
            "            venue tick -> order acknowledged over loopback (goal p99 < 10 ms) and the\n"
            "            resident set over a 10-minute soak with 5 symbols (goal < 500 MB, flat)."
        ),
        epilog=(
            "Results: tables on stdout and bench/results/<UTC timestamp>.json.\n"
            "The default run takes about 8 minutes on 2 cores (the validation section about\n"
            "45 s of it, the audit section about 50 s, the features section about 3¾ minutes),\n"
            "--quick about 2½-3. The execution section adds about 14 minutes (10 of them the\n"
            "memory soak), --quick about 3.\n\n"
            "examples:\n"
            "  python -m bench --quick\n"
            "  python -m bench --only throughput --repeat 5 --days-1m 14\n"
            "  python -m bench --only validation\n"
            "  python -m bench --only audit --quick\n"
            "  python -m bench --only features --quick\n"
            "  python -m bench --only backtest\n"
            "  python -m bench --only orchestration\n"
            "  make bench"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK['days_1m']} days of 1m, {QUICK['days_1h']} days of 1h, "
        f"repeat {QUICK['repeat']}, fewer validation repetitions, smaller audit chains, "
        "5 symbols x 60 days of 1m for the features section, 20,000 bars for the backtest section "
        "(explicit options still win)",
    )
    parser.add_argument("--only", choices=SECTIONS, help="run one section only (default: all)")
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="timed repetitions per throughput method; the median is reported "
        f"(default {FULL['repeat']}; the validation section has its own counts); for the "
        "orchestration section: (prefect, bare) pairs (default 3, --quick 1)",
    )
    parser.add_argument(
        "--days-1m",
        type=int,
        metavar="DAYS",
        help=f"look-back of the 1m series in days (default {FULL['days_1m']})",
    )
    parser.add_argument(
        "--days-1h",
        type=int,
        metavar="DAYS",
        help=f"look-back of the 1h series in days (default {FULL['days_1h']})",
    )
    parser.add_argument(
        "--end",
        type=_utc,
        metavar="YYYY-MM-DDTHH:MM:SS",
        help="pin the window end (UTC; default: the last whole hour)",
    )
    parser.add_argument(
        "--small-fraction",
        type=float,
        default=0.25,
        metavar="RATIO",
        help="second/first wall-time ratio read as 'a small fraction' (default 0.25)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the timed runs, profile one more pipeline run and one more bare "
        "concurrent run with py-spy (GIL samples), and show where the time went",
    )
    parser.add_argument("--py-spy", metavar="PATH", help="py-spy executable for --profile (default: on PATH)")
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="parent folder of the temporary configs and lakes (default: system temp)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary configs, lakes and CLI logs")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        metavar="DIR",
        help="where the JSON results go (default bench/results)",
    )
    return parser


def _utc(text: str) -> int:
    moment = datetime.fromisoformat(text)
    return to_ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def resolve_options(args: argparse.Namespace) -> dict[str, int]:
    """Return days_1m, days_1h and repeat: explicit options, else --quick's, else the full run's."""
    preset = QUICK if args.quick else FULL
    options = {
        key: getattr(args, key) if getattr(args, key) is not None else value for key, value in preset.items()
    }
    for key, value in options.items():
        if value < 1:
            raise SystemExit(f"python -m bench: error: --{key.replace('_', '-')} must be at least 1")
    return options


def prepare_process(console: Console) -> None:
    """Set up the environment as ``make bench`` does, and drop overrides the bench controls.

    Prefect's home defaults to the project's ``data/prefect`` (what the Makefile exports), via
    the project's own :func:`prepare_environment`; values already set (by make) win.
    """
    for name in list(os.environ):
        if name.startswith(_CONTROLLED_ENV):
            console.print(f"[yellow]note:[/] ignoring {name} (the benchmark sets its own)")
            del os.environ[name]
    prepare_environment(base_settings().model_copy(update={"data_dir": REPO / "data"}))
    if str(REPO) not in sys.path:  # `flows` and `tasks` are imported from the repository
        sys.path.insert(0, str(REPO))


_PACKAGES = (
    "prefect",
    "ccxt",
    "numpy",
    "pandas",
    "pyarrow",
    "aiohttp",
    "great_expectations",
    "scipy",
    "ta-lib",
    "lightgbm",
    "scikit-learn",
)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Return what the numbers depend on: machine, interpreter, packages, commit."""
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
            ).stdout.strip()
            or None
        )
    except OSError:
        commit = None
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "packages": {p: _version(p) for p in _PACKAGES},
        "commit": commit,
        "prefect_home": os.environ.get("PREFECT_HOME"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the process exit code (0 when it ran, whatever the verdicts)."""
    args = build_parser().parse_args(argv)
    options = resolve_options(args)
    # Off a terminal (make, CI, a pipe) rich assumes 80 columns and folds the tables.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    started_at, started = datetime.now(UTC), time.perf_counter()
    prepare_process(console)

    from bench import report
    from bench.backtest import BACKTEST_GOAL
    from bench.orchestration import ORCHESTRATION_GOAL
    from bench.throughput import measure_throughput
    from bench.workload import BenchError

    profile_to = _profile_target(args, started_at) if args.profile else None
    end_ms = args.end if args.end is not None else last_whole_hour_ms()
    days = {"1m": options["days_1m"], "1h": options["days_1h"]}
    workspace = Workspace(base_settings(), days, root=args.workdir)
    console.print(
        f"[bold]tradeflow bench[/]: window end {iso(end_ms)}, {days['1m']} d of 1m, "
        f"{days['1h']} d of 1h, repeat {options['repeat']}; workspace {workspace.path}"
    )
    throughput = second = validation = audit = features = backtest = orchestration = None
    execution: dict[str, Any] | None = None
    # The look-back of the first run the audit section measures its share of: the shipped
    # config's, or the smoke run's window when --quick's second-run section used that.
    shipped = {tf: workspace.base.history.days_for(tf) for tf in days}
    audit_days = shipped
    try:
        # The CLI runs go first: this process has not started Prefect's API server yet, so they
        # get the machine (and the Prefect database) to themselves.
        if args.only in (None, "second-run"):
            from bench.second_run import measure_second_run

            # A second `make run` is about the shipped config, so this section uses its
            # look-back (the --quick smoke run keeps its small window).
            second_space = workspace if args.quick else Workspace(workspace.base, shipped, root=args.workdir)
            audit_days = dict(second_space.days)
            try:
                second = measure_second_run(second_space, end_ms, console)
            finally:
                if second_space is not workspace and not args.keep:
                    second_space.cleanup()
        if args.only in (None, "throughput"):
            _, settings = workspace.new_run("simulator")
            throughput = measure_throughput(
                workspace, settings, end_ms, options["repeat"], console, profile_to
            )
        if args.only in (None, "validation"):
            # In a child process: GX's import, heap and peak RSS stay out of this one.
            from bench.validation import run_in_child

            validation = run_in_child(end_ms, args.quick)
        if args.only in (None, "audit"):
            # In a child process too: no Prefect threads or heap next to the timed hashing.
            from bench.audit import run_in_child as run_audit

            audit = run_audit(end_ms, audit_days, args.quick, _audit_reference(second), args.workdir)
        if args.only in (None, "features"):
            # In a child process too: the matrix (GBs) and the models stay out of this heap, and
            # the peak RSS reported is the section's own.
            from bench.features import run_in_child as run_features

            features = run_features(end_ms, args.quick)
        if args.only in (None, "backtest"):
            # In a child process too: vectorbt's import and numba's compiles stay out of this one.
            from bench.backtest import run_in_child as run_backtest

            backtest = run_backtest(args.quick)
        if args.only in (None, "orchestration"):
            # A child process per run: alternating Prefect flow runs and bare runs of the pipeline.
            from bench.orchestration import run_in_child as run_orchestration

            orchestration = run_orchestration(
                end_ms, args.quick, console, args.workdir, args.keep, pairs=args.repeat
            )
        if args.only in (None, "execution"):
            # Three child processes: book maintenance, the decision hot path, the flow over loopback.
            from bench.execution_sections import run_execution

            execution = run_execution(args.quick, console)
    except BenchError as error:
        console.print(f"[bold red]benchmark invalid:[/] {error}")
        return 2
    finally:
        if not args.keep:
            workspace.cleanup()

    _print_tables(console, report, throughput, second, validation, audit, features, backtest, orchestration)
    elapsed = time.perf_counter() - started
    payload = {
        "started_at": started_at.isoformat(),
        "elapsed_seconds": elapsed,
        "argv": list(sys.argv if argv is None else argv),
        "options": {**options, "end": iso(end_ms), "only": args.only, "small_fraction": args.small_fraction},
        "environment": environment(),
        "throughput": None if throughput is None else throughput.to_json(),
        "second_run": None if second is None else second.to_json(),
        "validation": None if validation is None else validation.to_json(),
        "audit": None if audit is None else audit.to_json(),
        "features": None if features is None else features.to_json(),
        "backtest": None if backtest is None else backtest.to_json(),
        "orchestration": None if orchestration is None else orchestration.to_json(),
        "execution": execution,
        "goal": {
            "throughput_ratio_max": report.THROUGHPUT_GOAL,
            "validation_over_fetch_below": report.VALIDATION_GOAL,
            "audit_verify_over_sha256_max": report.AUDIT_VERIFY_GOAL,
            "audit_share_of_ingest_flow_below": report.AUDIT_SHARE_GOAL,
            "features_indicators_over_talib_max": report.FEATURES_TALIB_GOAL,
            "features_booster_predict_p99_us_below": report.INFERENCE_P99_GOAL_US,
            "backtest_run_signals_over_vectorbt_max": BACKTEST_GOAL,
            "orchestration_overhead_share_below": ORCHESTRATION_GOAL,
        },
    }
    lines = report.verdicts(throughput, second, args.small_fraction)
    if validation is not None:
        lines += report.validation_verdicts(validation)
    if audit is not None:
        lines += report.audit_verdicts(audit)
    if features is not None:
        lines += report.features_verdicts(features)
    if backtest is not None:
        from bench.backtest import verdicts as backtest_verdicts

        lines += backtest_verdicts(backtest)
    if orchestration is not None:
        from bench.orchestration import verdicts as orchestration_verdicts

        lines += orchestration_verdicts(orchestration)
    if execution is not None:
        from bench.execution_sections import execution_verdicts

        lines += execution_verdicts(execution)
    payload["verdicts"] = [Console(width=400).render_str(line).plain for line in lines]
    path = report.write_results(args.results, started_at, payload)
    console.rule("Verdict")
    for line in lines:
        console.print(line)
    console.print(f"\nResults: {path}   (whole benchmark: {elapsed:.0f} s)")
    return 0


def _profile_target(args: argparse.Namespace, started_at: datetime) -> tuple[str, Path]:
    from bench.profile import find_py_spy

    py_spy = find_py_spy(args.py_spy)
    if py_spy is None:
        raise SystemExit(
            "python -m bench: error: --profile needs py-spy (pip install py-spy, or --py-spy PATH)"
        )
    return py_spy, args.results / f"{started_at.strftime('%Y%m%dT%H%M%SZ')}-profile"


def _audit_reference(second: Any) -> dict[str, Any]:
    """Return the ingestion run the audit chain's share is taken of.

    The second-run section's first CLI run when it ran in this benchmark (the same kind of run
    as the one recorded in bench/README.md), else that recorded run.
    """
    from bench.audit import README_FIRST_RUN

    if second is None or not second.first.flow_seconds:
        return dict(README_FIRST_RUN)
    first = second.first
    return {
        "source": f"this benchmark's second-run section: its first CLI run ({first.candles or 0:,} candles, "
        f"{first.manifest_new_objects or 0:,} objects, window end {second.end} UTC)",
        "measured": True,
        "flow_seconds": first.flow_seconds,
        "wall_seconds": first.seconds,
        "objects": first.manifest_new_objects,
        "candles": first.candles,
    }


def _print_tables(
    console: Console,
    report: Any,
    throughput: Any,
    second: Any,
    validation: Any,
    audit: Any,
    features: Any = None,
    backtest: Any = None,
    orchestration: Any = None,
) -> None:
    console.print()
    if throughput is not None:
        for warning in throughput.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        console.print(report.throughput_table(throughput))
        console.print(report.ratio_table(throughput))
        console.print(report.pipeline_details(throughput))
        console.print(report.cpu_table(throughput))
        tables = (
            report.profile_table(throughput),
            report.top_frames_table(throughput),
            report.timeline_table(throughput),
        )
        for table in tables:
            if table is not None:
                console.print(table)
    if second is not None:
        console.print(report.second_run_table(second))
        console.print(report.memory_table(second))
    if validation is not None:
        for warning in validation.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        console.print(report.validation_table(validation))
        console.print(report.validation_group_table(validation))
        console.print(report.validation_fixed_table(validation))
        console.print(report.validation_goal_table(validation))
    if audit is not None:
        for warning in audit.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        console.print(report.audit_append_table(audit))
        console.print(report.audit_verify_table(audit))
        console.print(report.audit_ingest_table(audit))
    if features is not None:
        for warning in features.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        console.print(report.features_matrix_table(features))
        console.print(report.features_talib_table(features))
        console.print(report.features_training_table(features))
        console.print(report.features_inference_table(features))
    if backtest is not None:
        from bench.backtest import tables as backtest_tables

        for warning in backtest.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        for table in backtest_tables(backtest):
            console.print(table)
    if orchestration is not None:
        from bench.orchestration import tables as orchestration_tables

        for warning in orchestration.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        for table in orchestration_tables(orchestration):
            console.print(table)
