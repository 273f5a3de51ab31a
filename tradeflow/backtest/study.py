"""A backtest study: the backtest of a snapshot, its metrics, Monte Carlo, ablation and report.

This composes the pieces for the ``backtest`` flow and ``tradeflow backtest``:

1. :func:`load_inputs` reads a snapshot's curated candles and order books and its feature
   matrix (every object re-hashed through the snapshot).
2. :func:`run_study` trades it bar by bar (:mod:`tradeflow.backtest.engine`) with the model's
   walk-forward predictions, so each period is traded by the model trained without it; then
   computes the metrics and their breakdowns, 10,000 Monte Carlo scenarios, and the same
   backtest with each feature family switched off in turn (the ablation).
3. :func:`save_study` writes the HTML report, the summary and the trades to the lake under
   ``reports/backtests/<id>/``; the id is the hash of what decided the result (snapshot, model
   version, the strategy and backtest config), so the same study is written once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.audit.records import Item
from tradeflow.backtest.costs import CostModel, calibrate_costs
from tradeflow.backtest.engine import BacktestConfig, BacktestResult, Decisions, MarketData, run_backtest
from tradeflow.backtest.metrics import Performance, breakdowns, performance
from tradeflow.backtest.montecarlo import MonteCarloResult, monte_carlo, resample_returns
from tradeflow.backtest.report import ReportInputs, render_report
from tradeflow.canonical import content_hash, json_safe
from tradeflow.config import Settings
from tradeflow.features.store import load_features, snapshot_books, snapshot_candles
from tradeflow.snapshot import Snapshot
from tradeflow.storage.objectstore import ObjectStore
from tradeflow.strategy.settings import (
    allocation_limits,
    decision_minutes,
    exit_config,
    market_rules,
    protection_config,
    signal_config,
)
from tradeflow.strategy.signals import FAMILIES
from tradeflow.timeframes import iso

REPORTS_PREFIX = "reports/backtests"
#: Without model predictions, trading starts this long after the snapshot's first candle (warm-up).
WARM_UP_MS = 7 * 24 * 60 * 60_000


@dataclass
class StudyInputs:
    """What a study reads: the snapshot's data, the model's predictions."""

    snapshot_id: str
    candles: dict[str, pd.DataFrame]
    books: dict[str, pd.DataFrame]
    features: pd.DataFrame
    predictions: pd.DataFrame | None
    model_version: str | None


@dataclass
class Study:
    """A finished study.

    Attributes:
        id: Hash of the snapshot, model version and config that decided it.
        inputs: What it read.
        result: The backtest with every family on.
        performance: Its metrics.
        breakdowns: Its trades broken down by symbol, regime, signal type, session, exit reason.
        monte_carlo: Trade reshuffling and block bootstrap (None when there was nothing to resample).
        ablation: One row per variant (all families, then each switched off).
        benchmark: Equal-weight buy-and-hold equity over the same bars.
    """

    id: str
    inputs: StudyInputs
    result: BacktestResult
    performance: Performance
    breakdowns: dict[str, pd.DataFrame]
    monte_carlo: MonteCarloResult | None
    ablation: pd.DataFrame | None
    benchmark: pd.Series
    facts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Return the headline numbers and provenance as plain values."""
        return {
            "id": self.id,
            "snapshot_id": self.inputs.snapshot_id,
            "model_version": self.inputs.model_version,
            "performance": json_safe(self.performance.to_dict()),
            "costs": self.result.cost_summary(),
            "monte_carlo": None if self.monte_carlo is None else json_safe(self.monte_carlo.to_dict()),
            "ablation": None if self.ablation is None else json_safe(self.ablation.to_dict(orient="records")),
            "family_status": self.result.family_status,
            "no_signal": self.result.no_signal,
            "protection_events": len(self.result.protection_events),
            "rejections": len(self.result.rejections),
            "signals": len(self.result.signals),
            "seconds": self.result.seconds,
            "facts": self.facts,
            "notes": self.notes,
        }


def backtest_config(settings: Settings, families: frozenset[str] | None = None) -> BacktestConfig:
    """Return the backtest's config from ``[backtest]`` and ``[strategy]`` (optionally other families)."""
    section = settings.backtest
    signal = signal_config(settings)
    if families is not None:
        signal = signal.with_families(families)
    return BacktestConfig(
        initial_equity=section.initial_equity,
        decision_minutes=decision_minutes(settings),
        latency_ms=section.latency_ms,
        participation=section.participation,
        order_timeout_bars=section.order_timeout_bars,
        correlation_window_days=settings.strategy.correlation_window_days,
        signal=signal,
        allocation=allocation_limits(settings),
        exits=exit_config(settings),
        protections=protection_config(settings),
    )


def cost_models(
    settings: Settings, books: Mapping[str, pd.DataFrame | None], symbols: list[str]
) -> dict[str, CostModel]:
    """Return each symbol's costs: the venue's fees, and slippage calibrated from stored books."""
    section = settings.backtest
    venue = settings.venue(section.venue) if section.venue else settings.venues[0]
    default = CostModel(venue.taker_fee, venue.maker_fee, section.half_spread, section.impact_coefficient)
    return {s: calibrate_costs(books.get(s), venue.taker_fee, venue.maker_fee, default) for s in symbols}


def load_inputs(
    store: ObjectStore,
    settings: Settings,
    snapshot_id: str,
    predictions: pd.DataFrame | None,
    model_version: str | None,
) -> StudyInputs:
    """Read a snapshot's candles, books and feature matrix (building none: run build-features first)."""
    snapshot = Snapshot.open(store, snapshot_id)
    features = load_features(store, settings, snapshot.id)
    symbols = sorted(features["symbol"].unique())
    candles = snapshot_candles(snapshot, symbols)
    books = {s: b for s, b in snapshot_books(snapshot, symbols).items() if b is not None}
    if predictions is not None:
        predictions = predictions[predictions["symbol"].isin(symbols)]
    return StudyInputs(snapshot.id, candles, books, features, predictions, model_version)


def study_id(settings: Settings, snapshot_id: str, model_version: str | None) -> str:
    """Return the id of the study of ``snapshot_id`` with ``model_version`` under this config."""
    config = {
        "strategy": settings.strategy.model_dump(mode="json"),
        "backtest": settings.backtest.model_dump(mode="json"),
        "fees": [(v.id, v.maker_fee, v.taker_fee) for v in settings.venues],
    }
    return content_hash({"snapshot": snapshot_id, "model_version": model_version, "config": config})


def run_study(
    inputs: StudyInputs,
    settings: Settings,
    *,
    ablation: bool | None = None,
    scenarios: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Study:
    """Backtest the inputs, then compute metrics, Monte Carlo and (optionally) the ablation.

    Args:
        inputs: From :func:`load_inputs`.
        settings: The config (``[strategy]``, ``[backtest]``, venues' fees).
        ablation: Also run each family switched off; default ``backtest.ablation``.
        scenarios: Monte Carlo scenarios; default ``backtest.monte_carlo_scenarios``.
        progress: Called with a line of text as each stage starts.
    """
    say = progress or (lambda _: None)
    section = settings.backtest
    config = backtest_config(settings)
    symbols = sorted(inputs.candles)
    start = _start(inputs)
    market = MarketData.from_candles(inputs.candles, start=start)
    decisions = Decisions.build(market, inputs.features, inputs.predictions, config.decision_minutes)
    costs = cost_models(settings, inputs.books, symbols)
    rules = market_rules(settings)
    say(f"backtest: {len(symbols)} symbols, {market.times.size:,} bars, {decisions.times.size:,} decisions")
    result = run_backtest(market, decisions, config, costs, rules, inputs.model_version)
    equity = result.equity_series
    perf = _performance(result)
    scenario_count = section.monte_carlo_scenarios if scenarios is None else scenarios
    carlo = None
    if len(equity) > 1 and scenario_count > 0:
        say(f"Monte Carlo: {scenario_count:,} scenarios")
        trade_returns = _trade_returns_on_equity(result)
        carlo = monte_carlo(
            trade_returns,
            resample_returns(equity, section.monte_carlo_block_minutes),
            scenarios=scenario_count,
            drawdown_halt=config.protections.max_drawdown or 1.0,
        )
    table = None
    if section.ablation if ablation is None else ablation:
        rows = [_variant_row("all families", result, perf)]
        for family in FAMILIES:
            say(f"ablation: without {family}")
            variant_config = replace(
                config, signal=config.signal.with_families(config.signal.families - {family})
            )
            variant = run_backtest(market, decisions, variant_config, costs, rules, inputs.model_version)
            rows.append(_variant_row(f"without {family}", variant, _performance(variant)))
        table = pd.DataFrame(rows)
        table["contribution"] = table["total_return"].iloc[0] - table["total_return"]
    benchmark = _buy_and_hold(market, config.initial_equity)
    identifier = study_id(settings, inputs.snapshot_id, inputs.model_version)
    facts = {
        "study": identifier[:16],
        "snapshot": inputs.snapshot_id[:16],
        "model version": inputs.model_version or "none (no champion: timeframes decide)",
        "period": f"{iso(int(market.times[0]))} → {iso(int(market.times[-1]))}" if market.times.size else "—",
        "symbols": ", ".join(symbols),
        "decisions": f"every {config.decision_minutes} min, {decisions.times.size:,} in all",
        "fees": ", ".join(
            sorted({f"taker {c.taker_fee:.2%} / maker {c.maker_fee:.2%}" for c in costs.values()})
        ),
        "slippage": "; ".join(f"{s}: {c.source}" for s, c in costs.items()),
        "latency": f"{config.latency_ms} ms (fills from the next bar at the earliest)",
        "participation": f"{config.participation:.0%} of bar volume",
        "config hash": settings.config_hash[:16],
    }
    breakdown_tables = breakdowns(result.trades)
    notes = _notes(inputs, result, config)
    return Study(identifier, inputs, result, perf, breakdown_tables, carlo, table, benchmark, facts, notes)


def _notes(inputs: StudyInputs, result: BacktestResult, config: BacktestConfig) -> list[str]:
    """Return what a reader should know about the result, e.g. why there were no trades."""
    if len(result.trades) or len(result.fills):
        return []
    signals = result.signals
    if len(signals):
        outcomes = signals["outcome"].str.replace(r" \(.*\)$", "", regex=True).value_counts().head(3)
        listed = ", ".join(f"{outcome} ({count})" for outcome, count in outcomes.items())
        return [f"No trades: {len(signals)} signals, none of which could be entered: {listed}."]
    reasons = ", ".join(f"{reason} ({count:,})" for reason, count in list(result.no_signal.items())[:4])
    predictions = inputs.predictions
    if "ml" in config.signal.families and predictions is not None and len(predictions):
        highest = float(predictions["probability"].max())
        return [
            f"No trades: no decision produced a signal. The model's highest probability of a rise was "
            f"{highest:.3f} (long threshold {config.signal.long_threshold:.2f}, adapting within "
            f"{config.signal.long_threshold_bounds[0]:.2f}–{config.signal.long_threshold_bounds[1]:.2f}); "
            f"why decisions gave none: {reasons}. A model without an edge should not trade; the "
            "ablation shows what the other feature families alone would have done."
        ]
    if reasons:
        return [f"No trades: no decision produced a signal; why: {reasons}."]
    return ["No trades: no bar produced a signal."]


def _performance(result: BacktestResult) -> Performance:
    """Return a backtest's metrics from its equity, trades, fills and exposure."""
    equity = result.equity_series
    exposure = pd.Series(result.equity["exposure"].to_numpy(), index=equity.index)
    return performance(equity, result.trades, result.fills, exposure)


def _start(inputs: StudyInputs) -> int:
    if inputs.predictions is not None and not inputs.predictions.empty:
        return int(inputs.predictions["timestamp"].min())
    first = min(int(frame["timestamp"].iloc[0]) for frame in inputs.candles.values() if len(frame))
    return first + WARM_UP_MS


def _trade_returns_on_equity(result: BacktestResult) -> np.ndarray:
    """Return each trade's P&L as a fraction of the equity when it closed, in closing order."""
    trades = result.trades.sort_values("exit_time")
    if trades.empty:
        return np.zeros(0)
    equity = result.equity_series
    position = np.searchsorted(equity.index.to_numpy(), trades["exit_time"].to_numpy(), side="left")
    before = equity.to_numpy()[np.maximum(position - 1, 0)]
    return np.asarray(trades["pnl"].to_numpy() / before, dtype=np.float64)


def _variant_row(name: str, result: BacktestResult, perf: Performance) -> dict[str, Any]:
    return {
        "variant": name,
        "total_return": perf.total_return,
        "sharpe": perf.sharpe,
        "max_drawdown": perf.max_drawdown,
        "trades": perf.trades,
        "fees_paid": perf.fees_paid,
        "signals": len(result.signals),
    }


def _buy_and_hold(market: MarketData, initial: float) -> pd.Series:
    """Return the equity of holding every symbol equally from the first bar (no costs)."""
    marks = pd.DataFrame(market.mark.T).bfill().to_numpy().T
    relative = marks / marks[:, :1]
    return pd.Series(initial * np.nanmean(relative, axis=0), index=market.times)


def report_inputs(study: Study, title: str | None = None) -> ReportInputs:
    """Return what the HTML report shows for ``study``."""
    result = study.result
    equity = result.equity[["timestamp", "equity", "drawdown", "exposure"]].copy()
    equity["benchmark"] = study.benchmark.to_numpy()
    carlo = None
    if study.monte_carlo is not None:
        mc = study.monte_carlo
        carlo = {
            "summary": mc.summary(),
            "bootstrap_final_return": mc.bootstrap_final_return,
            "bootstrap_max_drawdown": mc.bootstrap_max_drawdown,
            "reshuffle_max_drawdown": mc.reshuffle_max_drawdown,
            "drawdown_halt": mc.drawdown_halt,
            "scenarios": mc.scenarios,
        }
    adjustments = result.threshold_adjustments
    if not adjustments.empty:
        adjustments = adjustments.rename(columns={"base_long": "base", "long_threshold": "adjusted"})
    rejections = pd.concat(
        [
            result.rejections[["time", "symbol", "reason"]],
            result.protection_events[["time", "symbol", "reason"]],
        ],
        ignore_index=True,
    )
    status = result.family_status
    notes = [
        f"Feature family {name}: {s['state']}" + (f" ({s['reason']})" if s["reason"] else "")
        for name, s in status.items()
    ]
    notes.append(
        "Each period is traded with the probabilities of the walk-forward fold model that was "
        "trained without it; the simulator's prices are random walks, so expect no edge there."
    )
    return ReportInputs(
        title=title or f"Backtest {study.id[:12]}",
        facts=study.facts,
        equity=equity,
        weights=result.weights,
        performance=study.performance.to_dict(),
        breakdowns=study.breakdowns,
        trades=result.trades,
        monte_carlo=carlo,
        ablation=study.ablation,
        costs=result.cost_summary(),
        notes=notes,
        rejections=rejections.sort_values("time").reset_index(drop=True),
        threshold_adjustments=adjustments,
    )


def audit_item(study: Study, model_id: str | None, mlflow_run: str, refs: list[dict[str, Any]]) -> Item:
    """Return the ``backtest`` audit item: the study, with the snapshot and model version as parents."""
    payload = {
        "id": f"backtest-{study.id[:24]}",
        "parents": [study.inputs.snapshot_id, *([model_id] if model_id else [])],
        "mlflow_run": mlflow_run,
        "total_return": json_safe(study.performance.total_return),
        "refs": refs,
    }
    return ("backtest", payload)


def save_study(store: ObjectStore, study: Study, html: str | None = None) -> dict[str, str]:
    """Write the report, summary, trades, fills, equity and signals under ``reports/backtests/<id>/``.

    Create-only: a study already written is left as it is. Returns the keys.
    """
    folder = f"{REPORTS_PREFIX}/{study.id}"
    html = html if html is not None else render_report(report_inputs(study))
    tables = {
        "trades": study.result.trades,
        "fills": study.result.fills,
        "equity": study.result.equity,
        "signals": study.result.signals,
    }
    keys = {"report": f"{folder}/report.html", "summary": f"{folder}/summary.json"}
    for name, frame in tables.items():
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        keys[name] = f"{folder}/{name}.parquet"
        store.put_if_absent(keys[name], buffer.getvalue())
    store.put_if_absent(keys["report"], html.encode("utf-8"))
    summary = study.summary() | {"keys": keys}
    store.put_if_absent(keys["summary"], json.dumps(json_safe(summary), indent=2, sort_keys=True).encode())
    return keys
