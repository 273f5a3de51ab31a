"""A backtest's results as one self-contained HTML page.

The page works offline: no scripts, no external stylesheets or fonts; its CSS is embedded and
its charts are inline SVG drawn by matplotlib. Figures are made with
:class:`matplotlib.figure.Figure` directly, never pyplot, so rendering a report touches neither
the backend nor pyplot's figure registry. The chart style is set with ``matplotlib.rc_context``
for the duration of each figure only; those settings are process-wide while they last, so render
one report at a time per process. The output is deterministic (fixed SVG hash salt per figure, no
creation date, no metadata), so the same inputs give the same bytes.

Long series are downsampled before plotting (at most :data:`MAX_POINTS_PER_LINE` points per
line and :data:`MAX_POINTS_PER_FIGURE` per chart: the last value of each bucket, the minimum for
drawdown), which keeps a 100,000-bar, 10-symbol report fast to render and well under 2 MB.

Numbers are formatted by meaning: fractions as percentages, money with two decimals, counts
with thousands separators, missing values (None, NaN) as an em dash. Headline metrics have
fixed formats (:data:`METRIC_FORMATS`); table columns and Monte Carlo summary entries are
judged by name (see :func:`_is_fraction_name`).
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter
from matplotlib.typing import RcKeyType

__all__ = [
    "ReportInputs",
    "render_report",
    "report_figures",
    "write_report",
    "FIGURE_NAMES",
    "SECTION_HEADINGS",
    "METRIC_FORMATS",
    "MAX_POINTS_PER_LINE",
    "MAX_POINTS_PER_FIGURE",
]

#: The most points drawn per line of a time-series chart.
MAX_POINTS_PER_LINE = 2000
#: The most points drawn per chart: charts with many lines (weights) get fewer points per line.
MAX_POINTS_PER_FIGURE = 20_000
#: Rows shown of the closed trades and of the risk rejections (the most recent ones).
RECENT_ROWS = 50
#: Rows shown of the threshold adjustments table (the most recent ones).
RECENT_THRESHOLD_ROWS = 20
#: Rows shown of each breakdown table.
BREAKDOWN_ROWS = 100

#: Every figure :func:`report_figures` can make, in page order.
FIGURE_NAMES = ("equity", "drawdown", "exposure", "weights", "monte_carlo", "ablation", "thresholds")

#: The page's sections: (anchor, heading), in page order.
SECTION_HEADINGS: tuple[tuple[str, str], ...] = (
    ("headline", "Headline metrics"),
    ("facts", "Facts"),
    ("equity", "Equity and benchmark"),
    ("drawdown", "Drawdown"),
    ("exposure", "Exposure"),
    ("weights", "Weights"),
    ("costs", "What trading cost"),
    ("monte-carlo", "Monte Carlo"),
    ("ablation", "Ablation"),
    ("breakdowns", "Breakdowns"),
    ("rejections", "Risk rejections"),
    ("thresholds", "Threshold adjustments"),
    ("trades", "Recent trades"),
    ("notes", "Notes"),
)

#: A table cell: its text, and whether it is a number (right-aligned).
Cell = tuple[str, bool]

MetricFormat = Literal["percent", "ratio", "money", "count", "days", "multiple", "time"]

#: How each known headline metric is formatted; unknown metrics are judged by name.
METRIC_FORMATS: Mapping[str, MetricFormat] = {
    "total_return": "percent",
    "annualized_return": "percent",
    "annualized_volatility": "percent",
    "sharpe": "ratio",
    "sortino": "ratio",
    "calmar": "ratio",
    "max_drawdown": "percent",
    "max_drawdown_duration_days": "days",
    "longest_drawdown_days": "days",
    "trades": "count",
    "win_rate": "percent",
    "profit_factor": "ratio",
    "expectancy": "money",
    "average_return_per_trade": "percent",
    "exposure": "percent",
    "turnover": "multiple",
    "fees_paid": "money",
    "final_equity": "money",
    "start_equity": "money",
    "bars": "count",
    "start_time": "time",
    "end_time": "time",
}

_METRIC_LABELS = {
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "calmar": "Calmar ratio",
    "max_drawdown_duration_days": "duration of deepest drawdown",
    "longest_drawdown_days": "longest drawdown",
    "expectancy": "expectancy per trade",
}

MISSING = "—"

# Words in a column or entry name that mark its value as a fraction (shown as a percentage) ...
_FRACTION_WORDS = frozenset(
    {
        "return",
        "returns",
        "drawdown",
        "weight",
        "exposure",
        "volatility",
        "rate",
        "probability",
        "share",
        "contribution",
        "var",
        "cvar",
        "halt",
        "pct",
        "percent",
    }
)
# ... unless the name also has one of these.
_NOT_FRACTION_WORDS = frozenset({"days", "duration", "bars", "count", "trades", "ms", "seconds", "minutes"})
_TIME_WORDS = frozenset({"time", "timestamp", "date"})
# Epoch milliseconds of March 1973: numeric "time" columns below it are durations, not times.
_EPOCH_MS_FLOOR = 1e11

_FIGURE_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.2,
    "timezone": "UTC",
}
_WIDTH_INCHES = 10.0
_SERIES_HEIGHT_INCHES = 3.2
_STRATEGY_COLOR = "#1f4e9c"
_BENCHMARK_COLOR = "#9a9a9a"
_LOSS_COLOR = "#c0392b"
_GAIN_COLOR = "#2e8b57"


@dataclass(frozen=True)
class ReportInputs:
    """Everything a backtest report shows.

    Attributes:
        title: The page title.
        facts: Provenance shown as a small table, e.g. snapshot, model version, period, config hash.
        equity: One row per bar: ``timestamp`` (int UTC ms), ``equity``, ``drawdown`` (a fraction,
            <= 0), ``exposure`` (gross, a fraction of equity), optionally ``benchmark`` (buy-and-hold
            equity from the same start).
        weights: Long format: ``timestamp``, ``symbol``, ``target_weight``, ``actual_weight``; may be
            empty. A symbol missing at a timestamp keeps its last weight in the chart.
        performance: Headline metrics by name (see :data:`METRIC_FORMATS`); None or NaN shows as "—".
        breakdowns: Tables by grouping (e.g. ``symbol``, ``regime``, ``exit_reason``); the first column
            is the group.
        trades: Closed trades; the last :data:`RECENT_ROWS` are shown.
        monte_carlo: ``summary`` (name -> value), ``bootstrap_final_return``,
            ``bootstrap_max_drawdown``, ``reshuffle_max_drawdown`` (arrays), ``drawdown_halt`` and
            ``scenarios``; or None when not run.
        ablation: One row per variant: ``variant``, ``total_return``, ``sharpe``, ``max_drawdown``,
            ``trades``, ``contribution``; or None when not run.
        costs: What trading cost: fees, slippage, market impact, partial fills and the like.
        notes: Free-text notes shown at the end.
        rejections: Risk rejections and protections: ``time``, ``symbol``, ``reason``.
        threshold_adjustments: ``time``, ``symbol``, ``base``, ``adjusted``, ``atr_percentile``.
    """

    title: str
    facts: Mapping[str, str]
    equity: pd.DataFrame
    weights: pd.DataFrame
    performance: Mapping[str, float | int | None]
    breakdowns: Mapping[str, pd.DataFrame]
    trades: pd.DataFrame
    monte_carlo: Mapping[str, Any] | None
    ablation: pd.DataFrame | None
    costs: Mapping[str, float] = field(default_factory=dict)
    notes: Sequence[str] = ()
    rejections: pd.DataFrame | None = None
    threshold_adjustments: pd.DataFrame | None = None


# --- public API ------------------------------------------------------------------------------


def render_report(inputs: ReportInputs) -> str:
    """Return the report as one self-contained HTML document.

    Args:
        inputs: The backtest's results.

    Returns:
        The HTML text; sections whose input is empty say so instead of failing.
    """
    figures = report_figures(inputs)
    sections = {
        "headline": _headline_section(inputs.performance),
        "facts": _facts_section(inputs.facts),
        "equity": _figure_or_note(figures, "equity", "Strategy equity and buy-and-hold benchmark.", "equity"),
        "drawdown": _figure_or_note(
            figures, "drawdown", "Decline from the running peak of equity.", "drawdown"
        ),
        "exposure": _figure_or_note(
            figures, "exposure", "Gross exposure as a fraction of equity.", "exposure"
        ),
        "weights": _figure_or_note(
            figures, "weights", "Actual weight per symbol (solid) and target weight (dashed).", "weights"
        ),
        "costs": _costs_section(inputs.costs),
        "monte-carlo": _monte_carlo_section(inputs.monte_carlo, figures),
        "ablation": _ablation_section(inputs.ablation, figures),
        "breakdowns": _breakdowns_section(inputs.breakdowns),
        "rejections": _rejections_section(inputs.rejections),
        "thresholds": _thresholds_section(inputs.threshold_adjustments, figures),
        "trades": _trades_section(inputs.trades),
        "notes": _notes_section(inputs.notes),
    }
    title = _escape(inputs.title)
    navigation = " ".join(
        f'<a href="#{anchor}">{_escape(heading)}</a>' for anchor, heading in SECTION_HEADINGS
    )
    body = "\n".join(
        f'<section id="{anchor}">\n<h2>{_escape(heading)}</h2>\n{sections[anchor]}\n</section>'
        for anchor, heading in SECTION_HEADINGS
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{title}</h1>\n<nav>{navigation}</nav>\n{body}\n</main>\n</body>\n</html>\n"
    )


def report_figures(inputs: ReportInputs) -> dict[str, str]:
    """Return the report's charts as inline SVG text, by name.

    Names are those of :data:`FIGURE_NAMES`: ``equity`` (equity and benchmark), ``drawdown``
    (filled area), ``exposure`` (gross exposure), ``weights`` (actual weight per symbol, target
    dashed), ``monte_carlo`` (bootstrap final return with its 5th percentile, and the max drawdown
    distributions of both methods with the halt line), ``ablation`` (contribution per variant) and
    ``thresholds`` (adjusted signal thresholds per symbol). A figure whose input is empty or
    missing is left out.

    Args:
        inputs: The backtest's results.

    Returns:
        SVG text without the XML prolog, ready to embed in HTML.
    """
    equity = inputs.equity
    makers: dict[str, Callable[[], Figure | None]] = {
        "equity": lambda: _equity_figure(equity),
        "drawdown": lambda: _drawdown_figure(equity),
        "exposure": lambda: _exposure_figure(equity),
        "weights": lambda: _weights_figure(inputs.weights),
        "monte_carlo": lambda: _monte_carlo_figure(inputs.monte_carlo),
        "ablation": lambda: _ablation_figure(inputs.ablation),
        "thresholds": lambda: _thresholds_figure(inputs.threshold_adjustments),
    }
    figures: dict[str, str] = {}
    for name in FIGURE_NAMES:
        # Artists read rcParams when created, so the context covers drawing as well as saving.
        with matplotlib.rc_context({**_FIGURE_RC, "svg.hashsalt": f"tradeflow-report-{name}"}):
            figure = makers[name]()
            if figure is not None:
                figures[name] = _svg_text(figure)
    return figures


def write_report(html_text: str, path: Path) -> Path:
    """Write the report to ``path`` as UTF-8, creating its folder.

    Args:
        html_text: The HTML from :func:`render_report`.
        path: Where to write it.

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_text, encoding="utf-8", newline="\n")
    return path


# --- figures ---------------------------------------------------------------------------------


def _svg_text(figure: Figure) -> str:
    """Return ``figure`` as SVG text without the XML prolog, doctype, comments or metadata."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.DOTALL)
    return text.strip()


def _series_figure() -> tuple[Figure, Axes]:
    """Return a new wide figure with one axes for a time series."""
    figure = Figure(figsize=(_WIDTH_INCHES, _SERIES_HEIGHT_INCHES), layout="constrained")
    return figure, figure.add_subplot()


def _date_axis(axes: Axes) -> None:
    """Label the x axis of ``axes`` with concise UTC dates."""
    # matplotlib.dates has no type hints (the rest of matplotlib has).
    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    axes.set_xlabel("time (UTC)")
    axes.margins(x=0.01)


def _percent_axis(axes: Axes, which: Literal["x", "y"] = "y") -> None:
    """Show the ``which`` axis of ``axes`` as percentages of 1."""
    axis = axes.yaxis if which == "y" else axes.xaxis
    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))


def _utc_times(values: pd.Series | pd.Index) -> pd.DatetimeIndex:
    """Return ``values`` (UTC milliseconds, or datetimes) as tz-aware UTC datetimes."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(values, dtype="float64"), unit="ms", utc=True))


def _plot_times(values: pd.Series | pd.Index) -> np.ndarray[Any, np.dtype[np.object_]]:
    """Return ``values`` as tz-aware UTC :class:`datetime.datetime` objects for matplotlib."""
    return np.asarray(_utc_times(values).to_pydatetime(), dtype=object)


def _downsample(
    frame: pd.DataFrame, how: Mapping[str, str], max_points: int = MAX_POINTS_PER_LINE
) -> pd.DataFrame:
    """Return ``frame`` reduced to at most ``max_points`` rows of consecutive buckets.

    Args:
        frame: Rows in time order.
        how: Column -> aggregation within a bucket ("last", "min", "max"); other columns are dropped.
        max_points: The most rows to return.

    Returns:
        ``frame`` itself (those columns) if short enough, else one row per bucket.
    """
    columns = list(how)
    if len(frame) <= max_points:
        return frame[columns].reset_index(drop=True)
    buckets = np.arange(len(frame), dtype=np.int64) * max_points // len(frame)
    return frame[columns].groupby(buckets, sort=True).agg(dict(how)).reset_index(drop=True)


def _usable_equity(equity: pd.DataFrame, column: str) -> pd.DataFrame | None:
    """Return the rows of ``equity`` in time order if it has ``column`` with any value, else None."""
    if equity.empty or "timestamp" not in equity.columns or column not in equity.columns:
        return None
    if not equity[column].notna().any():
        return None
    return equity.sort_values("timestamp", kind="stable")


def _equity_figure(equity: pd.DataFrame) -> Figure | None:
    """Return the equity chart, with the buy-and-hold benchmark when given."""
    rows = _usable_equity(equity, "equity")
    if rows is None:
        return None
    has_benchmark = "benchmark" in rows.columns and bool(rows["benchmark"].notna().any())
    how = {"timestamp": "last", "equity": "last"} | ({"benchmark": "last"} if has_benchmark else {})
    sampled = _downsample(rows, how)
    times = _plot_times(sampled["timestamp"])
    figure, axes = _series_figure()
    axes.plot(times, sampled["equity"].to_numpy(dtype=float), color=_STRATEGY_COLOR, label="strategy")
    if has_benchmark:
        axes.plot(
            times,
            sampled["benchmark"].to_numpy(dtype=float),
            color=_BENCHMARK_COLOR,
            linewidth=1.0,
            label="buy and hold",
        )
    axes.set_ylabel("equity")
    axes.set_title("Equity")
    axes.legend(loc="upper left")
    _date_axis(axes)
    return figure


def _drawdown_figure(equity: pd.DataFrame) -> Figure | None:
    """Return the drawdown chart: a filled area below zero, its deepest point marked."""
    rows = _usable_equity(equity, "drawdown")
    if rows is None:
        return None
    sampled = _downsample(rows, {"timestamp": "last", "drawdown": "min"})
    times = _plot_times(sampled["timestamp"])
    drawdown = sampled["drawdown"].to_numpy(dtype=float)
    figure, axes = _series_figure()
    axes.fill_between(times, drawdown, 0.0, color=_LOSS_COLOR, alpha=0.35, linewidth=0, label="drawdown")
    axes.plot(times, drawdown, color=_LOSS_COLOR, linewidth=0.8)
    deepest = float(np.nanmin(drawdown))
    axes.axhline(deepest, color=_LOSS_COLOR, linestyle=":", linewidth=0.8, label=f"deepest {deepest:.1%}")
    axes.set_ylabel("drawdown")
    axes.set_title("Drawdown")
    axes.legend(loc="lower left")
    _percent_axis(axes)
    _date_axis(axes)
    return figure


def _exposure_figure(equity: pd.DataFrame) -> Figure | None:
    """Return the gross exposure chart."""
    rows = _usable_equity(equity, "exposure")
    if rows is None:
        return None
    sampled = _downsample(rows, {"timestamp": "last", "exposure": "last"})
    times = _plot_times(sampled["timestamp"])
    exposure = sampled["exposure"].to_numpy(dtype=float)
    figure, axes = _series_figure()
    axes.fill_between(times, exposure, 0.0, color=_STRATEGY_COLOR, alpha=0.15, linewidth=0)
    axes.plot(times, exposure, color=_STRATEGY_COLOR, label="gross exposure")
    axes.set_ylabel("gross exposure")
    axes.set_title("Exposure")
    axes.set_ylim(bottom=0.0)
    axes.legend(loc="upper left")
    _percent_axis(axes)
    _date_axis(axes)
    return figure


def _symbol_colors(count: int) -> list[tuple[float, float, float, float]]:
    """Return ``count`` distinct qualitative colours (repeating beyond 20)."""
    palette = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    size = 10 if count <= 10 else 20
    return [palette(index % size) for index in range(count)]


def _wide_by_symbol(frame: pd.DataFrame, time_column: str, values: Sequence[str]) -> pd.DataFrame:
    """Return ``frame`` pivoted to one row per time and columns (value, symbol), gaps carried forward."""
    deduplicated = frame.drop_duplicates([time_column, "symbol"], keep="last")
    wide = deduplicated.pivot(index=time_column, columns="symbol", values=list(values))
    return wide.sort_index().ffill()


def _weights_figure(weights: pd.DataFrame) -> Figure | None:
    """Return the weights chart: actual weight per symbol, target weight dashed in the same colour."""
    needed = {"timestamp", "symbol", "actual_weight"}
    if weights.empty or not needed <= set(weights.columns):
        return None
    has_target = "target_weight" in weights.columns
    values = ["actual_weight", "target_weight"] if has_target else ["actual_weight"]
    wide = _wide_by_symbol(weights, "timestamp", values)
    symbols = sorted(str(symbol) for symbol in wide["actual_weight"].columns)
    flat = pd.DataFrame(
        {
            f"{value}|{symbol}": wide[value][symbol].to_numpy(dtype=float)
            for value in values
            for symbol in symbols
        }
    )
    flat["timestamp"] = wide.index.to_numpy()
    lines = len(flat.columns) - 1
    points = max(100, min(MAX_POINTS_PER_LINE, MAX_POINTS_PER_FIGURE // lines))
    sampled = _downsample(flat, {"timestamp": "last"} | dict.fromkeys(flat.columns[:-1], "last"), points)
    times = _plot_times(sampled["timestamp"])
    figure, axes = _series_figure()
    for symbol, color in zip(symbols, _symbol_colors(len(symbols)), strict=True):
        axes.plot(times, sampled[f"actual_weight|{symbol}"].to_numpy(), color=color, label=symbol)
        if has_target:
            axes.plot(
                times,
                sampled[f"target_weight|{symbol}"].to_numpy(),
                color=color,
                linestyle="--",
                linewidth=0.8,
                alpha=0.8,
            )
    handles, labels = axes.get_legend_handles_labels()
    if has_target:
        handles.append(Line2D([], [], color="#555555", linestyle="--", linewidth=0.8))
        labels.append("target (dashed)")
    axes.axhline(0.0, color="#555555", linewidth=0.6)
    axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0), ncols=1 + len(labels) // 14)
    axes.set_ylabel("weight (fraction of equity)")
    axes.set_title("Weights per symbol")
    _percent_axis(axes)
    _date_axis(axes)
    return figure


def _finite(values: object) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Return the finite values of ``values`` (an array-like, or None) as floats."""
    if values is None:
        return np.empty(0, dtype=np.float64)
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _monte_carlo_figure(monte_carlo: Mapping[str, Any] | None) -> Figure | None:
    """Return the Monte Carlo chart: final return distribution and max drawdown distributions."""
    if not monte_carlo:
        return None
    final_return = _finite(monte_carlo.get("bootstrap_final_return"))
    bootstrap_drawdown = _finite(monte_carlo.get("bootstrap_max_drawdown"))
    reshuffle_drawdown = _finite(monte_carlo.get("reshuffle_max_drawdown"))
    if final_return.size == 0 and bootstrap_drawdown.size == 0 and reshuffle_drawdown.size == 0:
        return None
    figure = Figure(figsize=(_WIDTH_INCHES, 3.6), layout="constrained")
    returns_axes, drawdown_axes = figure.subplots(1, 2)

    if final_return.size:
        returns_axes.hist(final_return, bins=60, color=_STRATEGY_COLOR, alpha=0.75, label="bootstrap")
        fifth = float(np.quantile(final_return, 0.05))
        returns_axes.axvline(
            fifth, color=_LOSS_COLOR, linestyle="--", label=f"VaR 95 (5th percentile) {fifth:.1%}"
        )
        returns_axes.axvline(0.0, color="#555555", linewidth=0.6)
        _legend_above_bars(returns_axes)
    else:
        _no_data_text(returns_axes)
    returns_axes.set_title("Final return, bootstrap")
    returns_axes.set_xlabel("total return")
    returns_axes.set_ylabel("scenarios")
    _percent_axis(returns_axes, "x")

    drawdowns = [array for array in (bootstrap_drawdown, reshuffle_drawdown) if array.size]
    if drawdowns:
        edges = np.histogram_bin_edges(np.concatenate(drawdowns), bins=60)
        for array, label, color in (
            (bootstrap_drawdown, "bootstrap", _STRATEGY_COLOR),
            (reshuffle_drawdown, "reshuffle", "#e08a1e"),
        ):
            if array.size:
                drawdown_axes.hist(array, bins=edges, color=color, alpha=0.5, label=label)
        halt = _halt_position(monte_carlo.get("drawdown_halt"), np.concatenate(drawdowns))
        if halt is not None:
            drawdown_axes.axvline(halt, color=_LOSS_COLOR, linestyle="--", label=f"drawdown halt {halt:.1%}")
        _legend_above_bars(drawdown_axes)
    else:
        _no_data_text(drawdown_axes)
    drawdown_axes.set_title("Max drawdown, bootstrap and reshuffle")
    drawdown_axes.set_xlabel("max drawdown")
    drawdown_axes.set_ylabel("scenarios")
    _percent_axis(drawdown_axes, "x")
    return figure


def _legend_above_bars(axes: Axes) -> None:
    """Leave headroom above a histogram's bars and put an opaque legend there, over any lines."""
    bottom, top = axes.get_ylim()
    axes.set_ylim(bottom, top * 1.3)
    axes.legend(loc="upper left", frameon=True, facecolor="white", edgecolor="none", framealpha=0.95)


def _halt_position(halt: object, drawdowns: np.ndarray[Any, np.dtype[np.float64]]) -> float | None:
    """Return where to draw the drawdown halt: on the same side of zero as the drawdowns."""
    if halt is None or not isinstance(halt, int | float | np.number):
        return None
    value = float(halt)
    if not math.isfinite(value):
        return None
    drawdowns_negative = drawdowns.size > 0 and float(np.median(drawdowns)) < 0
    return -abs(value) if drawdowns_negative else abs(value)


def _no_data_text(axes: Axes) -> None:
    """Write "no data" in the middle of ``axes``, which has no ticks then."""
    axes.set_xticks([])
    axes.set_yticks([])
    axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center", va="center", color="#777777")


def _ablation_figure(ablation: pd.DataFrame | None) -> Figure | None:
    """Return the ablation chart: a horizontal bar of each variant's contribution to total return."""
    if ablation is None or ablation.empty or not {"variant", "contribution"} <= set(ablation.columns):
        return None
    rows = ablation[ablation["contribution"].notna()]
    rows = rows[rows["variant"].astype(str) != "all families"]
    if rows.empty:
        return None
    labels = [str(variant).removeprefix("without ") for variant in rows["variant"]]
    contributions = rows["contribution"].to_numpy(dtype=float)
    figure = Figure(figsize=(_WIDTH_INCHES, 1.0 + 0.35 * len(labels)), layout="constrained")
    axes = figure.add_subplot()
    colors = [_GAIN_COLOR if value >= 0 else _LOSS_COLOR for value in contributions]
    positions = np.arange(len(labels))
    axes.barh(positions, contributions, color=colors, alpha=0.85)
    axes.set_yticks(positions, labels)
    axes.invert_yaxis()
    axes.axvline(0.0, color="#555555", linewidth=0.6)
    axes.grid(axis="y", visible=False)
    axes.set_xlabel("contribution to total return (all families minus the variant)")
    axes.set_ylabel("family")
    axes.set_title("Contribution per family")
    _percent_axis(axes, "x")
    return figure


def _thresholds_figure(adjustments: pd.DataFrame | None) -> Figure | None:
    """Return the threshold chart: adjusted threshold per symbol over time, base threshold dashed."""
    if (
        adjustments is None
        or adjustments.empty
        or not {"time", "symbol", "adjusted"} <= set(adjustments.columns)
    ):
        return None
    has_base = "base" in adjustments.columns
    values = ["adjusted", "base"] if has_base else ["adjusted"]
    wide = _wide_by_symbol(adjustments.sort_values("time", kind="stable"), "time", values)
    symbols = sorted(str(symbol) for symbol in wide["adjusted"].columns)
    times = _plot_times(wide.index)
    figure = Figure(figsize=(_WIDTH_INCHES, 2.8), layout="constrained")
    axes = figure.add_subplot()
    for symbol, color in zip(symbols, _symbol_colors(len(symbols)), strict=True):
        axes.step(
            times, wide["adjusted"][symbol].to_numpy(dtype=float), where="post", color=color, label=symbol
        )
        if has_base:
            axes.step(
                times,
                wide["base"][symbol].to_numpy(dtype=float),
                where="post",
                color=color,
                linestyle="--",
                linewidth=0.8,
            )
    handles, labels = axes.get_legend_handles_labels()
    if has_base:
        handles.append(Line2D([], [], color="#555555", linestyle="--", linewidth=0.8))
        labels.append("base (dashed)")
    axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0), ncols=1 + len(labels) // 14)
    axes.set_ylabel("threshold")
    axes.set_title("Adjusted signal thresholds")
    _date_axis(axes)
    return figure


# --- formatting ------------------------------------------------------------------------------


def _escape(text: object) -> str:
    """Return ``text`` as a string escaped for HTML text and attribute values."""
    return html.escape(str(text), quote=True)


def _name_words(name: str) -> set[str]:
    """Return the lower-case words of a column or entry name."""
    return set(re.split(r"[^a-z0-9]+", name.lower())) - {""}


def _is_fraction_name(name: str) -> bool:
    """Return whether a value named ``name`` is a fraction, to be shown as a percentage."""
    words = _name_words(name)
    return bool(words & _FRACTION_WORDS) and not words & _NOT_FRACTION_WORDS


def _is_time_name(name: str) -> bool:
    """Return whether a column named ``name`` holds times (UTC milliseconds when numeric)."""
    return bool(_name_words(name) & _TIME_WORDS) or name.lower().endswith("_at")


def _is_missing(value: object) -> bool:
    """Return whether ``value`` is None, NaN or NaT."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False


def _format_number(value: float, kind: MetricFormat) -> str:
    """Return ``value`` formatted as ``kind``."""
    if kind == "percent":
        return f"{value * 100:,.2f}%"
    if kind == "ratio":
        return f"{value:,.2f}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "count":
        return f"{round(value):,}"
    if kind == "days":
        return f"{value:,.1f} days"
    if kind == "time":
        return _format_time(pd.Timestamp(value, unit="ms", tz=UTC))
    return f"{value:,.2f}×"


def _format_metric(name: str, value: object) -> str:
    """Return a headline metric's value formatted by its kind (see :data:`METRIC_FORMATS`).

    Metrics not listed there are formatted by name: time names with epoch milliseconds as UTC
    times, fraction names as percentages, other numbers plainly.
    """
    if _is_missing(value):
        return MISSING
    if not isinstance(value, int | float | np.integer | np.floating) or isinstance(value, bool):
        return _format_value(name, value)
    number = float(value)
    kind = METRIC_FORMATS.get(name)
    if kind is None and _is_time_name(name) and number >= _EPOCH_MS_FLOOR:
        kind = "time"
    return _format_value(name, value) if kind is None else _format_number(number, kind)


def _format_value(name: str, value: object, decimals: int | None = None) -> str:
    """Return one value formatted by its type and, for floats, the meaning of its name.

    Args:
        name: The value's name; fraction names (see :func:`_is_fraction_name`) show as percentages.
        value: The value.
        decimals: Decimals of a plain (not fraction) float; by default as many as its size needs.

    Returns:
        The text, "—" for None or NaN.
    """
    if _is_missing(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isinf(number):
            return "∞" if number > 0 else "−∞"
        if _is_fraction_name(name):
            return _format_number(number, "percent")
        if decimals is None:
            decimals = _decimals_for(abs(number))
        return f"{number:,.{decimals}f}"
    if isinstance(value, pd.Timestamp | datetime):
        return _format_time(pd.Timestamp(value))
    return str(value)


def _format_time(moment: pd.Timestamp) -> str:
    """Return ``moment`` as ``YYYY-MM-DD HH:MM`` in UTC (naive times are taken as UTC)."""
    if _is_missing(moment):
        return MISSING
    moment = moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def _is_numeric(value: object) -> bool:
    """Return whether ``value`` is a number (so its cell is right-aligned)."""
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def _decimals_for(typical: float) -> int:
    """Return the decimals that show a number of size ``typical`` with about three significant digits.

    Two decimals from 0.1 up (money, ratios), more below (small quantities), at most eight.
    """
    if not math.isfinite(typical) or typical == 0 or typical >= 0.1:
        return 2
    return min(8, 2 - math.floor(math.log10(typical)))


def _column_cells(name: str, column: pd.Series) -> tuple[list[Cell], bool]:
    """Return a column's cells as (text, numeric) pairs, and whether the column is numeric.

    Time columns become UTC dates; a float column gets one number of decimals for all its rows,
    chosen by the median size of its values.
    """
    if pd.api.types.is_datetime64_any_dtype(column.dtype) or _holds_epoch_milliseconds(name, column):
        return [(_format_time(moment), False) for moment in _utc_times(column)], False
    decimals = None
    if pd.api.types.is_float_dtype(column.dtype):
        sizes = np.abs(column.to_numpy(dtype="float64"))
        sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
        decimals = _decimals_for(float(np.median(sizes))) if sizes.size else 2
    cells = [(_format_value(name, value, decimals), _is_numeric(value)) for value in column.tolist()]
    numeric = pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype)
    return cells, numeric


def _holds_epoch_milliseconds(name: str, column: pd.Series) -> bool:
    """Return whether ``column`` holds UTC epoch milliseconds: a time name and values after 1973.

    Durations in milliseconds (e.g. ``holding_time``) stay below 1e11 and are left as numbers.
    """
    dtype = column.dtype
    if (
        not _is_time_name(name)
        or not pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
    ):
        return False
    present = column.dropna()
    return bool(len(present)) and bool((present.to_numpy(dtype="float64") >= _EPOCH_MS_FLOOR).all())


# --- HTML pieces -----------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[Cell]], numeric_header: Sequence[bool] = ()) -> str:
    """Return an HTML table; cells are (text, numeric) pairs, numeric ones right-aligned."""
    header_cells = "".join(
        f'<th class="number">{_escape(text)}</th>'
        if index < len(numeric_header) and numeric_header[index]
        else f"<th>{_escape(text)}</th>"
        for index, text in enumerate(header)
    )
    body = "\n".join(
        "<tr>"
        + "".join(
            f'<td class="number">{_escape(text)}</td>' if numeric else f"<td>{_escape(text)}</td>"
            for text, numeric in row
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="table-wrap"><table>\n<thead><tr>{header_cells}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def _frame_table(frame: pd.DataFrame) -> str:
    """Return ``frame`` as an HTML table, its values formatted by column name and type."""
    names = [str(column) for column in frame.columns]
    columns = [_column_cells(name, frame.iloc[:, index]) for index, name in enumerate(names)]
    rows = [[cells[row] for cells, _ in columns] for row in range(len(frame))]
    headers = [name.replace("_", " ") for name in names]
    return _table(headers, rows, [numeric for _, numeric in columns])


def _pairs_table(pairs: Iterable[tuple[str, str, bool]], header: tuple[str, str]) -> str:
    """Return a two-column table of (name, formatted value, numeric) rows."""
    rows = [[(name, False), (text, numeric)] for name, text, numeric in pairs]
    return _table(header, rows, (False, True))


def _note(text: str) -> str:
    """Return a paragraph saying there is no data, and why."""
    return f'<p class="no-data">No data: {_escape(text)}</p>'


def _caption(text: str) -> str:
    """Return a small explanatory paragraph."""
    return f'<p class="caption">{_escape(text)}</p>'


def _figure_or_note(figures: Mapping[str, str], name: str, caption: str, what: str) -> str:
    """Return the named figure with its caption, or a note that there was nothing to plot."""
    if name not in figures:
        return _note(f"no {what} to plot.")
    return f'<figure class="chart">{figures[name]}<figcaption>{_escape(caption)}</figcaption></figure>'


def _metric_label(name: str) -> str:
    """Return the display label of a headline metric."""
    return _METRIC_LABELS.get(name, name.replace("_", " "))


def _headline_section(performance: Mapping[str, float | int | None]) -> str:
    """Return the headline metrics as a row of cards."""
    if not performance:
        return _note("no performance metrics were computed.")
    cards = "\n".join(
        f'<div class="card"><div class="card-label">{_escape(_metric_label(name))}</div>'
        f'<div class="card-value">{_escape(_format_metric(name, value))}</div></div>'
        for name, value in performance.items()
    )
    return f'<div class="cards">\n{cards}\n</div>'


def _facts_section(facts: Mapping[str, str]) -> str:
    """Return the provenance facts as a small table."""
    if not facts:
        return _note("no facts were recorded.")
    rows = [[(str(name), False), (str(value), False)] for name, value in facts.items()]
    return _table(("fact", "value"), rows)


def _is_count_name(name: str) -> bool:
    """Return whether a cost entry named ``name`` counts events rather than money."""
    return bool(_name_words(name) & {"count", "fills", "number", "orders", "rejections", "trades"})


def _costs_section(costs: Mapping[str, float]) -> str:
    """Return what trading cost as a table: money with two decimals, counts as integers."""
    if not costs:
        return _note("no trading costs were recorded.")
    pairs = []
    for name, value in costs.items():
        if _is_missing(value):
            text = MISSING
        elif isinstance(value, int | np.integer) or _is_count_name(name):
            text = _format_number(float(value), "count")
        else:
            text = _format_number(float(value), "money")
        pairs.append((name.replace("_", " "), text, True))
    return _pairs_table(pairs, ("cost", "amount"))


def _monte_carlo_section(monte_carlo: Mapping[str, Any] | None, figures: Mapping[str, str]) -> str:
    """Return the Monte Carlo figure and summary table, or a note that it was not run."""
    if not monte_carlo:
        return _note("the Monte Carlo analysis was not run.")
    parts = [_figure_or_note(figures, "monte_carlo", _MONTE_CARLO_CAPTION, "Monte Carlo scenarios")]
    pairs: list[tuple[str, str, bool]] = []
    scenarios = monte_carlo.get("scenarios")
    if scenarios is not None:
        pairs.append(("scenarios", _format_value("scenarios", scenarios), True))
    halt = monte_carlo.get("drawdown_halt")
    if halt is not None:
        pairs.append(("drawdown halt", _format_value("drawdown_halt", halt), True))
    summary = monte_carlo.get("summary") or {}
    for name, value in summary.items():
        pairs.append((str(name).replace("_", " "), _format_value(str(name), value), True))
    if pairs:
        parts.append(_pairs_table(pairs, ("measure", "value")))
    return "\n".join(parts)


_MONTE_CARLO_CAPTION = (
    "Left: final return over bootstrap-resampled scenarios, with the 5th percentile (VaR 95). "
    "Right: max drawdown when resampling returns (bootstrap) and when reordering trades (reshuffle), "
    "with the drawdown at which trading halts."
)


def _ablation_section(ablation: pd.DataFrame | None, figures: Mapping[str, str]) -> str:
    """Return the ablation figure and table, or a note that it was not run."""
    if ablation is None or ablation.empty:
        return _note("the ablation was not run.")
    figure = _figure_or_note(
        figures,
        "ablation",
        "How much total return each family adds: the run with all families minus the run without it.",
        "contributions",
    )
    return f"{figure}\n{_frame_table(ablation)}"


def _breakdowns_section(breakdowns: Mapping[str, pd.DataFrame]) -> str:
    """Return one table per breakdown, each under its own heading."""
    if not breakdowns:
        return _note("no breakdowns were computed.")
    parts = []
    for name, frame in breakdowns.items():
        heading = f"<h3>By {_escape(name.replace('_', ' '))}</h3>"
        if frame.empty:
            parts.append(f"{heading}\n{_note('no rows.')}")
            continue
        table = _frame_table(frame.head(BREAKDOWN_ROWS))
        more = (
            _caption(f"First {BREAKDOWN_ROWS} of {len(frame):,} groups.")
            if len(frame) > BREAKDOWN_ROWS
            else ""
        )
        parts.append(f"{heading}\n{table}{more}")
    return "\n".join(parts)


def _recent(frame: pd.DataFrame, time_column: str, count: int) -> pd.DataFrame:
    """Return the last ``count`` rows of ``frame`` in time order (if it has the time column)."""
    if time_column in frame.columns:
        frame = frame.sort_values(time_column, kind="stable")
    return frame.tail(count)


def _rejections_section(rejections: pd.DataFrame | None) -> str:
    """Return the counts per rejection reason and the most recent rejections."""
    if rejections is None or rejections.empty:
        return _note("no orders were rejected by risk checks or protections.")
    parts = []
    if "reason" in rejections.columns:
        counts = rejections["reason"].astype(str).value_counts(sort=True)
        total = int(counts.sum())
        rows = [
            [
                (str(reason), False),
                (f"{int(count):,}", True),
                (_format_number(int(count) / total, "percent"), True),
            ]
            for reason, count in counts.items()
        ]
        parts.append(_table(("reason", "rejections", "share"), rows, (False, True, True)))
    shown = min(RECENT_ROWS, len(rejections))
    parts.append(_caption(f"The last {shown:,} of {len(rejections):,} rejections."))
    parts.append(_frame_table(_recent(rejections, "time", RECENT_ROWS)))
    return "\n".join(parts)


def _thresholds_section(adjustments: pd.DataFrame | None, figures: Mapping[str, str]) -> str:
    """Return the adjusted-threshold chart and the most recent adjustments."""
    if adjustments is None or adjustments.empty:
        return _note("no signal thresholds were adjusted.")
    parts = []
    if "thresholds" in figures:
        parts.append(
            _figure_or_note(
                figures,
                "thresholds",
                "Signal threshold per symbol after volatility adjustment (solid) and before it (dashed).",
                "thresholds",
            )
        )
    shown = min(RECENT_THRESHOLD_ROWS, len(adjustments))
    parts.append(_caption(f"The last {shown:,} of {len(adjustments):,} adjustments."))
    parts.append(_frame_table(_recent(adjustments, "time", RECENT_THRESHOLD_ROWS)))
    return "\n".join(parts)


def _trades_section(trades: pd.DataFrame) -> str:
    """Return the most recent closed trades, saying how many there were in all."""
    if trades.empty:
        return _note("no trades were closed.")
    shown = min(RECENT_ROWS, len(trades))
    caption = _caption(f"The last {shown:,} of {len(trades):,} closed trades.")
    return f"{caption}\n{_frame_table(trades.tail(RECENT_ROWS))}"


def _notes_section(notes: Sequence[str]) -> str:
    """Return the free-text notes as a list."""
    if not notes:
        return _caption("No notes.")
    items = "\n".join(f"<li>{_escape(note)}</li>" for note in notes)
    return f"<ul>\n{items}\n</ul>"


_CSS = """
:root { color-scheme: light; --ink: #1d2430; --muted: #5f6b7a; --line: #dde2e8; --panel: #f6f8fa;
  --accent: #1f4e9c; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans",
    "Liberation Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 1.6rem; margin: 0 0 8px; }
h2 { font-size: 1.2rem; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 18px 0 6px; }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 0.85rem; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card-label { color: var(--muted); font-size: 0.78rem; text-transform: uppercase; letter-spacing: 0.03em; }
.card-value { font-size: 1.25rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 6px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: var(--panel); font-weight: 600; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #fafbfc; }
figure.chart { margin: 8px 0; }
figure.chart svg { display: block; width: 100%; height: auto; }
figcaption, .caption { color: var(--muted); font-size: 0.82rem; margin: 4px 0; }
.no-data { color: var(--muted); font-style: italic; background: var(--panel); border: 1px dashed var(--line);
  border-radius: 6px; padding: 8px 12px; }
ul { padding-left: 20px; }
"""
