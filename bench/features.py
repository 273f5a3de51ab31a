"""Section 6: the feature matrix, its indicators next to TA-Lib, training per fold, one-row inference.

Four questions, on one set of candles:

1. **The feature matrix.** How long ``build_feature_matrix(candles_by_symbol, FeatureSpec())``
   takes on 5 symbols x 1 year of 1m candles (525,600 rows per symbol), median of 3, and the
   child process's peak RSS (VmHWM).
2. **TA-Lib side by side.** The indicators both compute (RSI, ATR, MACD, Bollinger Bands,
   ADX/+DI/-DI, OBV) with the matrix's periods, timed on the very same float64 arrays:
   :mod:`tradeflow.features.indicators` vs ``talib``. Goal: within 2x of TA-Lib.
3. **Training.** ``run_walk_forward`` with the shipped training defaults (direction labels,
   horizon 240, fee 0.001; 4 expanding folds, embargo 60; every 15th minute) on that matrix:
   per model the median ``fit_seconds`` per fold and the final fit on all rows.
4. **Inference.** The LightGBM model fitted in (3): ``Booster.predict`` on one row (a
   1 x n_features float64 array), the call a streaming flow makes per new candle. Goal: p99
   under 1 ms. The scikit-learn wrapper and the calibrated model on one row are shown too.

Fairness rules, each for a reason:

- The candles are the simulator's own reference (``SimulatedVenue.klines`` of the clean venue
  sim-alpha, what its server sends), built in-process before any clock starts: fat-tailed
  one-minute returns with a seeded volatility regime per day, quantised to the tick. The shipped
  config lists 3 symbols; two more (BNB/USDT, XRP/USDT) are added to the simulator's list.
- Every timed block gets a ``gc.collect()`` first; nothing else runs in the child process.
- The matrix is built once untimed on two days per symbol (first calls), then 3 timed builds,
  each after the previous matrix is dropped; the last one is kept for training.
- TA-Lib and tradeflow run on the same contiguous float64 arrays, every symbol per repetition,
  after an untimed call of each; the two sides alternate and swap order every repetition, and
  the medians are compared. Their outputs are checked to agree as the TA-Lib tests require
  (same warm-up rows, values within 1e-9 relative plus a small absolute allowance). Where one
  tradeflow call returns what TA-Lib needs several calls for (ADX, +DI and -DI), the TA-Lib
  side makes all of them. tradeflow's Bollinger function also returns %b
  and the width (what the matrix uses); TA-Lib's returns the bands only.
- Each model gets its own ``run_walk_forward`` (as the training flow's ``evaluate-model`` task
  does), one after the other, so no fit shares the two cores with another model's threads.
  The final fits are not timed by ``run_walk_forward``; they are timed by wrapping
  ``models.walkforward.fit_calibrated`` in this process (the wrapper's fold timings are
  reported next to ``fit_seconds`` to show they agree). A ``gc.collect()`` runs in the progress
  callback, which ``run_walk_forward`` calls just before the next fit starts.
- Inference: each call is timed on its own with ``perf_counter_ns`` after 200 untimed calls; the
  row is built before the clock starts. The scikit-learn wrapper gets a one-row DataFrame with
  the feature names (it was fitted with them; a bare array makes it warn on every call).
- The whole section runs in a child process of its own (``python -m bench.features``), so its
  peak RSS is its own and the matrix does not sit in the heap of the process that timed the
  ingestion pipeline.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import procstat
from bench.child import run_section
from bench.workload import BenchError, base_settings
from tradeflow.config import Settings
from tradeflow.timeframes import DAY_MS, MINUTE_MS, iso

#: The full run and --quick: days of 1m candles per symbol, timed matrix builds, timed
#: repetitions per indicator side, timed one-row calls of the booster and of the two wrappers.
FULL = {"days": 365, "builds": 3, "indicator_runs": 7, "booster_calls": 5000, "wrapper_calls": 2000}
QUICK = {"days": 60, "builds": 3, "indicator_runs": 5, "booster_calls": 5000, "wrapper_calls": 300}
#: Untimed calls before each latency measurement.
WARMUP_CALLS = 200
#: Days per symbol of the untimed warm-up build.
WARMUP_DAYS = 2
#: The venue whose reference candles are used: the shipped config's first, clean, venue.
VENUE_INDEX = 0

#: Symbols added to the shipped config's three, so the matrix has five.
EXTRA_SYMBOLS: tuple[dict[str, Any], ...] = (
    {"symbol": "BNB/USDT", "base_price": 600.0, "annual_volatility": 0.65, "tick_size": 0.01,
     "step_size": 0.001},
    {"symbol": "XRP/USDT", "base_price": 0.6, "annual_volatility": 0.8, "tick_size": 0.0001,
     "step_size": 0.1},
)  # fmt: skip
SYMBOLS = 5

#: The indicators both sides compute, in the order they are reported.
INDICATORS = ("rsi", "atr", "macd", "bbands", "adx", "obv")
INDICATOR_LABELS = {
    "rsi": "RSI(14)",
    "atr": "ATR(14)",
    "macd": "MACD(12,26,9)",
    "bbands": "BBANDS(20,2)",
    "adx": "ADX/PLUS_DI/MINUS_DI(14)",
    "obv": "OBV",
}
#: What each side calls, per symbol and repetition.
INDICATOR_CALLS = {
    "rsi": ("indicators.rsi", "talib.RSI"),
    "atr": ("indicators.atr", "talib.ATR"),
    "macd": ("indicators.macd", "talib.MACD"),
    "bbands": ("indicators.bollinger (bands, %b, width)", "talib.BBANDS (bands)"),
    "adx": ("indicators.directional_movement (all 3)", "talib.ADX + PLUS_DI + MINUS_DI"),
    "obv": ("indicators.obv", "talib.OBV"),
}

#: The one-row inference paths, in the order they are reported; the first is the goal's.
INFERENCE = ("booster", "sklearn", "calibrated")
INFERENCE_LABELS = {
    "booster": "lightgbm.Booster.predict, 1×n float64 array",
    "sklearn": "LGBMClassifier.predict_proba, 1-row DataFrame",
    "calibrated": "CalibratedModel.predict_proba, 1×n array (calibrated)",
}

_PACKAGES = ("numpy", "scipy", "pandas", "ta-lib", "lightgbm", "scikit-learn")


# --- results ----------------------------------------------------------------------------------


@dataclass
class IndicatorTimes:
    """One indicator, both sides, every symbol per repetition."""

    name: str
    tradeflow: list[float]  # seconds per repetition (all symbols)
    talib: list[float]
    nan_rows_equal: bool  # the same warm-up rows on both sides
    tolerance_share: float  # worst |difference| / the TA-Lib tests' tolerance (<= 1: they agree)

    @property
    def tradeflow_seconds(self) -> float:
        """Return tradeflow's median seconds per repetition."""
        return statistics.median(self.tradeflow)

    @property
    def talib_seconds(self) -> float:
        """Return TA-Lib's median seconds per repetition."""
        return statistics.median(self.talib)

    @property
    def ratio(self) -> float:
        """Return tradeflow / TA-Lib at the medians."""
        return self.tradeflow_seconds / self.talib_seconds


@dataclass
class ModelTimes:
    """One model's fits in the walk-forward run."""

    model: str
    fold_fit_seconds: list[float]  # FoldModelResult.fit_seconds, fold by fold
    fold_wrapped_seconds: list[float]  # the same fits, timed by the wrapper
    fold_train_rows: list[int]
    fold_fit_rows: list[int]
    fold_calibration_rows: list[int]
    final_fit_seconds: float
    final_fit_rows: int
    final_calibration_rows: int
    out_of_sample_roc_auc: float
    run_seconds: float  # the whole run_walk_forward of this model (fits, predictions, scores)

    @property
    def median_fold_fit(self) -> float:
        """Return the median fit seconds per fold."""
        return statistics.median(self.fold_fit_seconds)


@dataclass
class Latency:
    """Per-call latency of one inference path, in microseconds."""

    name: str
    calls: int
    warmup: int
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float


@dataclass
class FeaturesResult:
    """Everything section 6 measured."""

    end_ms: int
    quick: bool
    repeats: dict[str, int]
    data_source: str
    venue: str
    symbols: list[str]
    days: int
    rows_per_symbol: dict[str, int]
    candles_seconds: float  # generating the reference candles (untimed for the goals)
    features: int
    columns: int
    warmup_build_seconds: float
    build_seconds: list[float]
    indicators: list[IndicatorTimes]
    labels_seconds: float
    training: dict[str, Any]  # rows, row step, spec, folds, the run's wall seconds
    models: list[ModelTimes]
    inference: list[Latency]
    inference_row: str
    inference_check: str
    peak_rss_kib: dict[str, int | None]  # this process's VmHWM after each step, in order
    packages: dict[str, str | None]
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeaturesResult:
        """Return the result that ``asdict`` turned into ``data`` (as the child process sends it)."""
        fields = dict(data)
        fields["indicators"] = [IndicatorTimes(**i) for i in fields["indicators"]]
        fields["models"] = [ModelTimes(**m) for m in fields["models"]]
        fields["inference"] = [Latency(**i) for i in fields["inference"]]
        return cls(**fields)

    @property
    def rows(self) -> int:
        """Return the matrix's rows (every symbol)."""
        return sum(self.rows_per_symbol.values())

    @property
    def build_median(self) -> float:
        """Return the median seconds of one full matrix build."""
        return statistics.median(self.build_seconds)

    @property
    def tradeflow_common_seconds(self) -> float:
        """Return the sum of tradeflow's medians over the common indicators."""
        return sum(i.tradeflow_seconds for i in self.indicators)

    @property
    def talib_common_seconds(self) -> float:
        """Return the sum of TA-Lib's medians over the common indicators."""
        return sum(i.talib_seconds for i in self.indicators)

    @property
    def common_ratio(self) -> float:
        """Return tradeflow / TA-Lib over the common indicators (the goal's ratio)."""
        return self.tradeflow_common_seconds / self.talib_common_seconds

    @property
    def matrix_over_talib(self) -> float:
        """Return the full matrix's median build over TA-Lib's common indicators (shown only)."""
        return self.build_median / self.talib_common_seconds

    def latency(self, name: str) -> Latency:
        """Return the inference path ``name``."""
        return next(item for item in self.inference if item.name == name)

    @property
    def build_peak_kib(self) -> int | None:
        """Return the child's peak RSS once the matrix builds are done."""
        return self.peak_rss_kib.get("matrix built")

    def to_json(self) -> dict[str, Any]:
        """Return plain data for the results file."""
        data = asdict(self)
        data["window_end"] = iso(self.end_ms)
        data["rows"] = self.rows
        data["build_median_seconds"] = self.build_median
        data["indicators"] = [
            {
                **asdict(i),
                "label": INDICATOR_LABELS[i.name],
                "calls": INDICATOR_CALLS[i.name],
                "tradeflow_median_seconds": i.tradeflow_seconds,
                "talib_median_seconds": i.talib_seconds,
                "ratio": i.ratio,
            }
            for i in self.indicators
        ]
        data["models"] = [{**asdict(m), "median_fold_fit_seconds": m.median_fold_fit} for m in self.models]
        data["ratios"] = {
            "tradeflow/talib_common_indicators": self.common_ratio,
            "matrix/talib_common_indicators": self.matrix_over_talib,
            **{f"tradeflow/talib_{i.name}": i.ratio for i in self.indicators},
        }
        return data


# --- the candles ------------------------------------------------------------------------------


def bench_settings() -> Settings:
    """Return the shipped config with :data:`EXTRA_SYMBOLS` added to the simulator's symbols."""
    from tradeflow.config import SimulatedSymbolConfig

    settings = base_settings()
    listed = {s.symbol for s in settings.simulator.symbols}
    extra = [SimulatedSymbolConfig(**s) for s in EXTRA_SYMBOLS if s["symbol"] not in listed]
    symbols = [*settings.simulator.symbols, *extra][:SYMBOLS]
    simulator = settings.simulator.model_copy(update={"symbols": symbols})
    return settings.model_copy(update={"simulator": simulator})


def reference_candles(settings: Settings, end_ms: int, days: int) -> tuple[str, dict[str, Any]]:
    """Return the venue's id and each symbol's 1m candles over ``days`` before ``end_ms``.

    The simulator's reference (``SimulatedVenue.klines``: what its server sends), as the
    curated frames the matrix is built from: ``timestamp`` int64 ms, float64 OHLCV.
    """
    import pandas as pd

    from tradeflow.bootstrap import simulator_spec
    from tradeflow.simulator import market
    from tradeflow.simulator.venue import SimulatedVenue

    spec = simulator_spec(settings).resolved()
    venue_spec = spec.venues[VENUE_INDEX]
    venue = SimulatedVenue(spec, venue_spec)
    frames = {}
    for symbol in sorted(s.symbol for s in spec.symbols):
        array = venue.klines(symbol, "1m", end_ms - days * DAY_MS, end_ms - MINUTE_MS, end_ms)
        frame = pd.DataFrame(array[:, 1:], columns=["open", "high", "low", "close", "volume"])
        frame.insert(0, "timestamp", array[:, 0].astype("int64"))
        frames[symbol] = frame
    market.clear_caches()  # the generated day blocks are not needed any more
    return venue_spec.id, frames


# --- 1. the matrix ----------------------------------------------------------------------------


def measure_builds(
    candles: Mapping[str, Any], builds: int, console: Console
) -> tuple[Any, float, list[float]]:
    """Build the matrix untimed on two days, then ``builds`` timed times; return the last matrix."""
    from tradeflow.features.build import build_feature_matrix
    from tradeflow.features.spec import FeatureSpec

    spec = FeatureSpec()
    short = {s: f.iloc[: WARMUP_DAYS * 1440].reset_index(drop=True) for s, f in candles.items()}
    gc.collect()
    started = time.perf_counter()
    build_feature_matrix(short, spec)
    warmup = time.perf_counter() - started
    del short
    matrix = None
    seconds = []
    for index in range(builds):
        matrix = None  # drop the previous matrix before the next build
        gc.collect()
        started = time.perf_counter()
        matrix = build_feature_matrix(candles, spec)
        seconds.append(time.perf_counter() - started)
        console.print(f"  build {index + 1}: {seconds[-1]:.2f} s")
    return matrix, warmup, seconds


# --- 2. TA-Lib --------------------------------------------------------------------------------


_COLUMNS = ("high", "low", "close", "volume")


def _arrays(candles: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return each symbol's contiguous float64 high, low, close and volume arrays."""
    import numpy as np

    return [
        {c: np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64)) for c in _COLUMNS}
        for frame in candles.values()
    ]


def _pairs() -> dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], Any]]]:
    """Return, per indicator, tradeflow's call and TA-Lib's on one symbol's arrays (the matrix's periods)."""
    import talib

    from tradeflow.features import indicators
    from tradeflow.features.spec import FeatureSpec

    s = FeatureSpec()
    return {
        "rsi": (
            lambda a: indicators.rsi(a["close"], s.rsi_period),
            lambda a: talib.RSI(a["close"], timeperiod=s.rsi_period),
        ),
        "atr": (
            lambda a: indicators.atr(a["high"], a["low"], a["close"], s.atr_period),
            lambda a: talib.ATR(a["high"], a["low"], a["close"], timeperiod=s.atr_period),
        ),
        "macd": (
            lambda a: indicators.macd(a["close"], s.macd_fast, s.macd_slow, s.macd_signal),
            lambda a: talib.MACD(
                a["close"], fastperiod=s.macd_fast, slowperiod=s.macd_slow, signalperiod=s.macd_signal
            ),
        ),
        "bbands": (
            lambda a: indicators.bollinger(a["close"], s.bollinger_period, s.bollinger_deviations),
            lambda a: talib.BBANDS(
                a["close"],
                timeperiod=s.bollinger_period,
                nbdevup=s.bollinger_deviations,
                nbdevdn=s.bollinger_deviations,
            ),  # matype defaults to 0, the simple average the matrix uses
        ),
        "adx": (
            lambda a: indicators.directional_movement(a["high"], a["low"], a["close"], s.adx_period),
            lambda a: (
                talib.ADX(a["high"], a["low"], a["close"], timeperiod=s.adx_period),
                talib.PLUS_DI(a["high"], a["low"], a["close"], timeperiod=s.adx_period),
                talib.MINUS_DI(a["high"], a["low"], a["close"], timeperiod=s.adx_period),
            ),
        ),
        "obv": (
            lambda a: indicators.obv(a["close"], a["volume"]),
            lambda a: talib.OBV(a["close"], a["volume"]),
        ),
    }


def _outputs(name: str, ours: Any, theirs: Any) -> list[tuple[Any, Any]]:
    """Return the (tradeflow, TA-Lib) output pairs that should agree."""
    if name == "macd":
        return [(ours.line, theirs[0]), (ours.signal, theirs[1]), (ours.histogram, theirs[2])]
    if name == "bbands":
        return [(ours.upper, theirs[0]), (ours.middle, theirs[1]), (ours.lower, theirs[2])]
    if name == "adx":
        return [(ours.adx, theirs[0]), (ours.plus_di, theirs[1]), (ours.minus_di, theirs[2])]
    return [(ours, theirs)]


def _compare(name: str, ours: Any, theirs: Any, close: Any) -> tuple[bool, float]:
    """Return whether the NaN rows are the same, and the worst difference as a share of the tolerance.

    The tolerance is the TA-Lib tests' (tests/unit/test_features_talib.py): 1e-9 relative plus
    an absolute 1e-9 on the 0-100 scales and 1e-12 of the median close on price levels; OBV is
    exact. A share of at most 1 means the two agree as the tests require.
    """
    import numpy as np

    absolute = {"rsi": 1e-9, "adx": 1e-9, "obv": 0.0}.get(name, 1e-12 * float(np.median(close)))
    relative = 0.0 if name == "obv" else 1e-9
    same_nan, worst = True, 0.0
    for mine, reference in _outputs(name, ours, theirs):
        mine, reference = np.asarray(mine), np.asarray(reference)
        same_nan &= bool(np.array_equal(np.isnan(mine), np.isnan(reference)))
        both = ~np.isnan(mine) & ~np.isnan(reference)
        difference = np.abs(mine[both] - reference[both])
        if difference.size and float(difference.max()) > 0.0:
            allowed = absolute + relative * np.abs(reference[both])
            with np.errstate(divide="ignore"):
                worst = max(worst, float(np.max(difference / allowed)))
    return same_nan, worst


def measure_indicators(candles: Mapping[str, Any], runs: int, console: Console) -> list[IndicatorTimes]:
    """Time each common indicator on both sides, every symbol per repetition, alternating."""
    arrays = _arrays(candles)
    results = []
    for name, (ours, theirs) in _pairs().items():
        same_nan, worst = True, 0.0
        for a in arrays:  # untimed: the first calls, and the check that both compute the same
            nan_ok, difference = _compare(name, ours(a), theirs(a), a["close"])
            same_nan, worst = same_nan and nan_ok, max(worst, difference)
        times: dict[str, list[float]] = {"tradeflow": [], "talib": []}
        sides = [("tradeflow", ours), ("talib", theirs)]
        for rep in range(runs):
            for side, call in sides if rep % 2 == 0 else sides[::-1]:
                gc.collect()
                started = time.perf_counter()
                for a in arrays:
                    call(a)
                times[side].append(time.perf_counter() - started)
        item = IndicatorTimes(name, times["tradeflow"], times["talib"], same_nan, worst)
        console.print(
            f"  {INDICATOR_LABELS[name]:<26} tradeflow {item.tradeflow_seconds * 1000:7.1f} ms, "
            f"TA-Lib {item.talib_seconds * 1000:6.1f} ms, {item.ratio:5.2f}× "
            f"(worst difference {worst:.2g} of the tests' tolerance)"
        )
        results.append(item)
    return results


# --- 3. training ------------------------------------------------------------------------------


def measure_training(
    candles: Mapping[str, Any], matrix: Any, console: Console
) -> tuple[float, dict[str, Any], list[ModelTimes], Any]:
    """Walk each model forward on its own; return the timings and the final LightGBM model.

    One ``run_walk_forward`` per model, as the training flow's ``evaluate-model`` task does, one
    after the other (the flow runs them concurrently).
    """
    from functools import partial
    from unittest import mock

    from models import walkforward
    from models.estimators import ESTIMATOR_NAMES, fit_calibrated
    from models.labels import direction_labels, labels_by_symbol
    from models.splits import WalkForwardSpec
    from tradeflow.config import TrainingConfig
    from tradeflow.features.build import feature_columns

    config = TrainingConfig()
    started = time.perf_counter()
    labels = labels_by_symbol(
        candles, partial(direction_labels, horizon_minutes=config.horizon_minutes, fee_rate=config.fee_rate)
    )
    labels_seconds = time.perf_counter() - started
    spec = WalkForwardSpec(n_folds=config.folds, mode=config.window, embargo_minutes=config.embargo_minutes)
    names = list(ESTIMATOR_NAMES)
    original = fit_calibrated  # the function run_walk_forward calls, wrapped below
    wrapped: list[tuple[str, float]] = []

    def timed_fit(name: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        model = original(name, *args, **kwargs)
        wrapped.append((name, time.perf_counter() - started))
        return model

    def before_next_fit(event: Any) -> None:
        gc.collect()  # run_walk_forward reports each fit just before it starts the next

    console.print(
        f"Training {', '.join(names)}, one run_walk_forward each: {config.label} labels, horizon "
        f"{config.horizon_minutes} min, fee {config.fee_rate}; {spec.n_folds} {spec.mode} folds, embargo "
        f"{spec.embargo_minutes} min, row step {config.row_step} …"
    )
    features = feature_columns(matrix)
    models, runs, lightgbm_model = [], [], None
    for name in names:
        wrapped.clear()
        gc.collect()
        with mock.patch.object(walkforward, "fit_calibrated", timed_fit):
            result = walkforward.run_walk_forward(
                matrix,
                labels,
                features,
                spec,
                [name],
                fee_rate=config.fee_rate,
                row_step=config.row_step,
                progress=before_next_fit,
                calibration_fraction=config.calibration_fraction,
            )
        folds = len(result.folds)
        if len(wrapped) != folds + 1:
            raise BenchError(f"{name}: expected {folds + 1} fits, timed {len(wrapped)}")
        final = result.final_models[name]
        item = ModelTimes(
            model=name,
            fold_fit_seconds=[r.fit_seconds for r in result.results],
            fold_wrapped_seconds=[s for _, s in wrapped[:folds]],
            fold_train_rows=[r.train_rows for r in result.results],
            fold_fit_rows=[r.fit_rows for r in result.results],
            fold_calibration_rows=[r.calibration_rows for r in result.results],
            final_fit_seconds=wrapped[folds][1],
            final_fit_rows=final.fit_rows,
            final_calibration_rows=final.calibration_rows,
            out_of_sample_roc_auc=float(result.overall[name].classification.roc_auc),
            run_seconds=result.seconds,
        )
        models.append(item)
        runs.append(result)
        if name == "lightgbm":
            lightgbm_model = final
        console.print(
            f"  {name:<14} median fit per fold {item.median_fold_fit:6.2f} s "
            f"({' '.join(f'{s:.2f}' for s in item.fold_fit_seconds)}), final fit "
            f"{item.final_fit_seconds:.2f} s on {item.final_fit_rows:,} + "
            f"{item.final_calibration_rows:,} rows; run_walk_forward {result.seconds:.1f} s"
        )
    first = runs[0]
    if any([f.to_dict() for f in r.folds] != [f.to_dict() for f in first.folds] for r in runs[1:]):
        raise BenchError("the models' walk-forward runs were cut into different folds")
    training = {
        "label": config.label,
        "horizon_minutes": config.horizon_minutes,
        "fee_rate": config.fee_rate,
        "row_step": first.row_step,
        "calibration_fraction": config.calibration_fraction,
        "spec": spec.to_dict(),
        "rows": first.rows,
        "matrix_rows": len(matrix),
        "features": len(first.feature_columns),
        "folds": [f.to_dict() for f in first.folds],
        "run_seconds": sum(r.seconds for r in runs),
    }
    console.print(f"  {first.rows:,} labelled rows; the three runs took {training['run_seconds']:.1f} s")
    if lightgbm_model is None:
        raise BenchError("no lightgbm model was trained")
    return labels_seconds, training, models, lightgbm_model


# --- 4. inference -----------------------------------------------------------------------------


def _latency(name: str, call: Callable[[], object], calls: int) -> Latency:
    """Time ``calls`` calls of ``call`` one by one after :data:`WARMUP_CALLS` untimed ones."""
    import numpy as np

    for _ in range(WARMUP_CALLS):
        call()
    out = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    gc.collect()
    for index in range(calls):
        started = clock()
        call()
        out[index] = clock() - started
    micro = out / 1000.0
    p50, p90, p99 = (float(np.percentile(micro, q)) for q in (50, 90, 99))
    return Latency(name, calls, WARMUP_CALLS, p50, p90, p99, float(micro.max()), float(micro.mean()))


def measure_inference(model: Any, matrix: Any, repeats: Mapping[str, int]) -> tuple[list[Latency], str, str]:
    """Time one-row predictions of the fitted LightGBM model three ways; return them and two notes."""
    import numpy as np
    import pandas as pd

    booster = model.booster()
    last = matrix.iloc[[-1]]
    row = np.ascontiguousarray(last[model.feature_names].to_numpy(dtype=np.float64))
    frame = pd.DataFrame(row, columns=model.feature_names)
    described = (
        f"the matrix's newest row ({last['symbol'].iloc[0]} {iso(int(last['timestamp'].iloc[0]))}), "
        f"1×{row.shape[1]} float64, {int(np.isnan(row).sum())} NaN"
    )
    raw, wrapper = float(booster.predict(row)[0]), float(model.estimator.predict_proba(frame)[0, 1])
    calibrated = float(model.predict_proba(row)[0])
    check = f"booster {raw:.6f}, wrapper {wrapper:.6f} (uncalibrated), calibrated {calibrated:.6f}"
    if abs(raw - wrapper) > 1e-12:
        check += " — the booster and the wrapper disagree"
    latencies = [
        _latency("booster", lambda: booster.predict(row), repeats["booster_calls"]),
        _latency("sklearn", lambda: model.estimator.predict_proba(frame), repeats["wrapper_calls"]),
        _latency("calibrated", lambda: model.predict_proba(row), repeats["wrapper_calls"]),
    ]
    return latencies, described, check


# --- the section ------------------------------------------------------------------------------


def _package(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def measure_features(end_ms: int, quick: bool, console: Console) -> FeaturesResult:
    """Run section 6 and return its measurements.

    Args:
        end_ms: The pinned window end: each symbol's last candle opens a minute before it.
        quick: 60 days instead of a year, fewer repetitions (the --quick smoke run).
        console: Where progress lines go.
    """
    repeats = QUICK if quick else FULL
    days = repeats["days"]
    rss: dict[str, int | None] = {"start": procstat.peak_rss_kib(os.getpid())}
    warnings: list[str] = []

    started = time.perf_counter()
    venue, candles = reference_candles(bench_settings(), end_ms, days)
    candles_seconds = time.perf_counter() - started
    rows = {symbol: len(frame) for symbol, frame in candles.items()}
    rss["candles built"] = procstat.peak_rss_kib(os.getpid())
    console.print(
        f"Features: {len(candles)} symbols × {days} days of 1m candles from {venue}'s reference "
        f"({sum(rows.values()):,} rows, built in {candles_seconds:.1f} s); building the matrix "
        f"{repeats['builds']} times …"
    )
    matrix, warmup, builds = measure_builds(candles, repeats["builds"], console)
    rss["matrix built"] = procstat.peak_rss_kib(os.getpid())
    feature_count = matrix.shape[1] - 3  # symbol, timestamp, regime
    console.print(
        f"  matrix {matrix.shape[0]:,} rows × {matrix.shape[1]} columns ({feature_count} features): "
        f"median {statistics.median(builds):.2f} s; peak RSS {(rss['matrix built'] or 0) / 1024:,.0f} MiB"
    )

    runs = repeats["indicator_runs"]
    console.print(f"TA-Lib side by side, median of {runs} (all {len(candles)} symbols per run):")
    indicators = measure_indicators(candles, repeats["indicator_runs"], console)
    for item in indicators:
        if not item.nan_rows_equal or item.tolerance_share > 1.0:
            warnings.append(
                f"{INDICATOR_LABELS[item.name]}: tradeflow and TA-Lib differ beyond the TA-Lib tests' "
                f"tolerance (same warm-up rows: {item.nan_rows_equal}; worst difference "
                f"{item.tolerance_share:.3g}× the tolerance)"
            )
    rss["indicators"] = procstat.peak_rss_kib(os.getpid())

    labels_seconds, training, models, lightgbm_model = measure_training(candles, matrix, console)
    rss["trained"] = procstat.peak_rss_kib(os.getpid())

    console.print("Inference: one row, after warm-up …")
    inference, row, check = measure_inference(lightgbm_model, matrix, repeats)
    if "disagree" in check:
        warnings.append(f"inference: {check}")
    for latency in inference:
        console.print(
            f"  {INFERENCE_LABELS[latency.name]:<55} p50 {latency.p50_us:8.1f} µs, "
            f"p99 {latency.p99_us:8.1f} µs ({latency.calls:,} calls)"
        )
    rss["inference"] = procstat.peak_rss_kib(os.getpid())
    return FeaturesResult(
        end_ms=end_ms,
        quick=quick,
        repeats=dict(repeats),
        data_source=f"simulator reference (SimulatedVenue.klines of {venue}, what its server sends), "
        f"the shipped symbols plus {', '.join(s['symbol'] for s in EXTRA_SYMBOLS)}",
        venue=venue,
        symbols=list(candles),
        days=days,
        rows_per_symbol=rows,
        candles_seconds=candles_seconds,
        features=feature_count,
        columns=int(matrix.shape[1]),
        warmup_build_seconds=warmup,
        build_seconds=builds,
        indicators=indicators,
        labels_seconds=labels_seconds,
        training=training,
        models=models,
        inference=inference,
        inference_row=row,
        inference_check=check,
        peak_rss_kib=rss,
        packages={p: _package(p) for p in _PACKAGES},
        warnings=warnings,
    )


# --- the child process ------------------------------------------------------------------------

#: A hung child is killed after this long (the full section takes about 4 minutes on 2 cores).
CHILD_TIMEOUT_SECONDS = 900.0


def run_in_child(end_ms: int, quick: bool) -> FeaturesResult:
    """Run the section in a fresh ``python -m bench.features`` and return what it measured.

    Raises:
        BenchError: if the child fails or times out.
    """
    arguments = ["--end-ms", str(end_ms), *(["--quick"] if quick else [])]
    return FeaturesResult.from_dict(run_section("features", arguments, CHILD_TIMEOUT_SECONDS))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child: measure, write the raw result as JSON, return the exit code."""
    description = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=description)
    parser.add_argument("--end-ms", type=int, required=True, help="the pinned window end, UTC ms")
    parser.add_argument("--json", type=Path, required=True, help="where the raw result goes")
    parser.add_argument("--quick", action="store_true", help="60 days instead of a year, fewer repetitions")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=120)
    try:
        result = measure_features(args.end_ms, args.quick, console)
    except BenchError as error:
        print(f"benchmark invalid: {error}", file=sys.stderr)
        return 2
    args.json.write_text(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
