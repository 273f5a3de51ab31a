"""Prefect tasks of the ``backtest`` flow: load, simulate, report, log to MLflow, audit."""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models.serving import serving, walk_forward_predictions
from models.tracking import tracker_from_settings
from models.training import version_id
from tasks.audit import record_steps
from tradeflow.audit.records import ref
from tradeflow.backtest.report import render_report
from tradeflow.backtest.study import (
    REPORTS_PREFIX,
    StudyInputs,
    audit_item,
    load_inputs,
    report_inputs,
    run_study,
    save_study,
    study_id,
)
from tradeflow.bootstrap import build_store
from tradeflow.canonical import json_safe
from tradeflow.config import Settings
from tradeflow.snapshot import Snapshot

_DEFAULTS: dict[str, Any] = {"cache_policy": NO_CACHE}


def _run_record_key(identifier: str) -> str:
    return f"{REPORTS_PREFIX}/{identifier}/run.json"


@task(name="find-backtest", **_DEFAULTS)
def find_backtest(settings: Settings, snapshot: str) -> dict[str, Any] | None:
    """Return the stored summary of this snapshot's backtest with the champion and this config, if any.

    A study's id is the hash of its inputs' ids (snapshot, model version, strategy and backtest
    config, fees): a nightly re-run on the same snapshot repeats nothing and writes nothing.
    """
    store = build_store(settings)
    version, _ = serving(tracker_from_settings(settings))
    key = _run_record_key(study_id(settings, Snapshot.open(store, snapshot).id, version))
    if not store.exists(key):
        return None
    found: dict[str, Any] = json.loads(store.get(key))
    return found


@task(name="load-backtest-inputs", **_DEFAULTS)
def load_backtest_inputs(settings: Settings, snapshot: str) -> StudyInputs:
    """Read the snapshot's candles, books and features, and the champion's walk-forward predictions."""
    store = build_store(settings)
    tracker = tracker_from_settings(settings)
    version, _ = serving(tracker)
    predictions = walk_forward_predictions(tracker, version)
    return load_inputs(store, settings, Snapshot.open(store, snapshot).id, predictions, version)


@task(name="simulate-and-report", **_DEFAULTS)
def simulate(settings: Settings, inputs: StudyInputs) -> dict[str, Any]:
    """Backtest bar by bar with costs, then Monte Carlo and ablation; save the report; audit and log it."""
    study = run_study(inputs, settings, progress=print)
    html = render_report(report_inputs(study))
    store = build_store(settings)
    keys = save_study(store, study, html)
    tracker = tracker_from_settings(settings)
    summary = study.summary()
    run_id = tracker.log_backtest(study.id, summary, html, inputs.model_version)
    model_id = version_id(tracker, inputs.model_version) if inputs.model_version else None
    refs = [ref(store, keys["report"]), ref(store, keys["summary"])]
    entries = record_steps(settings, [audit_item(study, model_id, run_id, refs)])
    done = summary | {"keys": keys, "mlflow_run": run_id, "report_path": store.describe(keys["report"])}
    # Written last: its presence means the study was saved, logged and audited.
    record = done | {"audit_seqs": [entry["seq"] for entry in entries]}
    store.put_if_absent(_run_record_key(study.id), json.dumps(json_safe(record), indent=1).encode("utf-8"))
    return done | {"audit": entries}


def backtest_markdown(summary: dict[str, Any]) -> str:
    """Return the ``backtest-summary`` artifact: headline metrics, costs, Monte Carlo, ablation."""
    p, c = summary["performance"], summary["costs"]

    def pct(value: Any) -> str:
        return "—" if value is None else f"{value:.2%}"

    def num(value: Any) -> str:
        return "—" if value is None else f"{value:.2f}"

    lines = [
        f"# Backtest `{summary['id'][:16]}`",
        "",
        f"Model v{summary['model_version']} on snapshot `{summary['snapshot_id'][:16]}`.",
        "",
        "| total return | annualised | Sharpe | Sortino | max drawdown | trades | win rate | fees paid |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {pct(p['total_return'])} | {pct(p['annualized_return'])} | {num(p['sharpe'])} | "
        f"{num(p['sortino'])} | {pct(p['max_drawdown'])} | {p['trades']} | {pct(p['win_rate'])} | "
        f"{c['fees']:,.2f} |",
        "",
        f"Slippage: spread {c['spread']:,.2f}, market impact {c['market_impact']:,.2f}; "
        f"{int(c['partial_fills'])} partial fills of {int(c['fills'])}.",
    ]
    carlo = summary.get("monte_carlo")
    if carlo:
        lines += [
            "",
            f"Monte Carlo ({carlo['scenarios']:,} scenarios): final return 5th–95th percentile "
            f"{pct(carlo['bootstrap_final_return_p5'])} to {pct(carlo['bootstrap_final_return_p95'])}, "
            f"VaR 95 {pct(carlo['bootstrap_var_95'])}, CVaR 95 {pct(carlo['bootstrap_cvar_95'])}, "
            f"P(drawdown halt) {pct(carlo['bootstrap_halt_probability'])}.",
        ]
    if summary.get("ablation"):
        lines += ["", "| variant | total return | contribution |", "|---|---:|---:|"]
        lines += [
            f"| {row['variant']} | {pct(row['total_return'])} | {pct(row['contribution'])} |"
            for row in summary["ablation"]
        ]
    lines += ["", f"Report: `{summary['report_path']}`; MLflow run `{summary['mlflow_run']}`."]
    return "\n".join(lines)


@task(name="report-backtest", **_DEFAULTS)
def report_backtest(summary: dict[str, Any]) -> None:
    """Publish the headline metrics and where the HTML report is as a Prefect markdown artifact."""
    create_markdown_artifact(
        key="backtest-summary",
        markdown=backtest_markdown(summary),
        description="Backtest metrics, costs, Monte Carlo and ablation",
    )
