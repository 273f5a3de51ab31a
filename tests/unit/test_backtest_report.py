"""The backtest report: one self-contained, offline HTML page with inline SVG charts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.backtest.report import (
    FIGURE_NAMES,
    SECTION_HEADINGS,
    ReportInputs,
    render_report,
    report_figures,
    write_report,
)

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE
ALL_FIGURES = ("equity", "drawdown", "exposure", "weights", "monte_carlo", "ablation", "thresholds")
# The only URIs an inline SVG may carry: its XML namespaces.
ALLOWED_URIS = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def sample_inputs(
    bars: int = 5_000, symbols: int = 5, trades: int = 30, scenarios: int = 10_000, seed: int = 7
) -> ReportInputs:
    """Return synthetic report inputs: a seeded random-walk backtest of ``bars`` 1-minute bars."""
    rng = np.random.default_rng(seed)
    timestamps = T0 + MINUTE * np.arange(bars, dtype=np.int64)
    equity = 10_000 * np.exp(np.cumsum(rng.normal(0.00001, 0.0008, bars)))
    benchmark = 10_000 * np.exp(np.cumsum(rng.normal(0.0, 0.001, bars)))
    drawdown = equity / np.maximum.accumulate(equity) - 1
    exposure = np.clip(0.6 + np.cumsum(rng.normal(0, 0.01, bars)), 0, 1.5)
    equity_frame = pd.DataFrame(
        {
            "timestamp": timestamps,
            "equity": equity,
            "drawdown": drawdown,
            "exposure": exposure,
            "benchmark": benchmark,
        }
    )
    names = [f"S{index:02d}/USDT" for index in range(symbols)]
    target = rng.dirichlet(np.ones(symbols), size=bars // 60 + 1).repeat(60, axis=0)[:bars] * 0.8
    actual = target + rng.normal(0, 0.01, target.shape)
    weights = pd.DataFrame(
        {
            "timestamp": np.repeat(timestamps, symbols),
            "symbol": np.tile(names, bars),
            "target_weight": target.ravel(),
            "actual_weight": actual.ravel(),
        }
    )
    entries = np.sort(rng.choice(timestamps[:-100], size=trades, replace=False))
    exits = entries + MINUTE * rng.integers(1, 100, size=trades)
    trade_frame = pd.DataFrame(
        {
            "symbol": rng.choice(names, size=trades),
            "entry_time": entries,
            "exit_time": exits,
            "side": rng.choice(["long", "short"], size=trades),
            "quantity": rng.uniform(0.01, 2, size=trades),
            "pnl": rng.normal(2, 20, size=trades),
            "return": rng.normal(0.001, 0.01, size=trades),
            "exit_reason": rng.choice(["signal", "stop", "take profit"], size=trades),
            "holding_time": exits - entries,
        }
    )
    bootstrap_final = rng.normal(0.02, 0.08, scenarios)
    monte_carlo = {
        "summary": {
            "var_95": float(-np.quantile(bootstrap_final, 0.05)),
            "cvar_95": 0.15,
            "probability_of_loss": 0.41,
            "median_final_return": float(np.median(bootstrap_final)),
            "probability_of_halt": 0.07,
        },
        "bootstrap_final_return": bootstrap_final,
        "bootstrap_max_drawdown": -np.abs(rng.normal(0.12, 0.05, scenarios)),
        "reshuffle_max_drawdown": -np.abs(rng.normal(0.10, 0.03, scenarios)),
        "drawdown_halt": 0.25,
        "scenarios": scenarios,
    }
    ablation = pd.DataFrame(
        {
            "variant": ["all families", "without ml", "without momentum", "without mean reversion"],
            "total_return": [0.12, 0.05, 0.14, 0.09],
            "sharpe": [1.1, 0.6, 1.3, 0.9],
            "max_drawdown": [-0.08, -0.11, -0.07, -0.09],
            "trades": [trades, trades - 8, trades - 5, trades - 10],
            "contribution": [0.0, 0.07, -0.02, 0.03],
        }
    )
    by_symbol = trade_frame.groupby("symbol", as_index=False).agg(
        trades=("pnl", "size"), pnl=("pnl", "sum"), win_rate=("pnl", lambda pnl: float((pnl > 0).mean()))
    )
    by_exit = trade_frame.groupby("exit_reason", as_index=False).agg(
        trades=("pnl", "size"), pnl=("pnl", "sum")
    )
    rejections = pd.DataFrame(
        {
            "time": np.sort(rng.choice(timestamps, size=70)),
            "symbol": rng.choice(names, size=70),
            "reason": rng.choice(["max exposure", "cooldown", "daily loss limit"], size=70),
        }
    )
    adjustment_times = timestamps[:: max(1, bars // 40)]
    thresholds = pd.DataFrame(
        {
            "time": np.repeat(adjustment_times, 2),
            "symbol": np.tile(names[:2], len(adjustment_times)),
            "base": 0.55,
            "adjusted": 0.55 + rng.uniform(-0.05, 0.05, 2 * len(adjustment_times)),
            "atr_percentile": rng.uniform(0, 1, 2 * len(adjustment_times)),
        }
    )
    return ReportInputs(
        title="Backtest: momentum + ml on sim-2024",
        facts={
            "snapshot": "00000042",
            "model version": "7",
            "period": "2023-11-14 → 2023-11-18",
            "config hash": "ab12",
        },
        equity=equity_frame,
        weights=weights,
        performance={
            "total_return": float(equity[-1] / equity[0] - 1),
            "annualized_return": 0.31,
            "annualized_volatility": 0.42,
            "sharpe": 0.74,
            "sortino": 1.02,
            "calmar": None,
            "max_drawdown": float(drawdown.min()),
            "max_drawdown_duration_days": 1.7,
            "longest_drawdown_days": 2.4,
            "trades": trades,
            "win_rate": 0.533,
            "profit_factor": float("nan"),
            "expectancy": 1.98,
            "exposure": 0.61,
            "turnover": 12.5,
            "fees_paid": 123.456,
            "final_equity": float(equity[-1]),
            "bars": bars,
            "start_time": int(timestamps[0]),
            "first_bar_time": int(timestamps[0]),
        },
        breakdowns={"symbol": by_symbol, "exit_reason": by_exit},
        trades=trade_frame,
        monte_carlo=monte_carlo,
        ablation=ablation,
        costs={"fees": 123.456, "slippage": 45.6, "market impact": 7.89, "partial fills count": 12.0},
        notes=("simulated prices are random walks: expect no edge",),
        rejections=rejections,
        threshold_adjustments=thresholds,
    )


def empty_inputs() -> ReportInputs:
    """Return inputs of a backtest that did nothing: no trades, weights, Monte Carlo or ablation."""
    return ReportInputs(
        title="empty",
        facts={},
        equity=pd.DataFrame(columns=["timestamp", "equity", "drawdown", "exposure"]),
        weights=pd.DataFrame(columns=["timestamp", "symbol", "target_weight", "actual_weight"]),
        performance={"total_return": None, "sharpe": float("nan"), "trades": 0},
        breakdowns={},
        trades=pd.DataFrame(),
        monte_carlo=None,
        ablation=None,
    )


@pytest.fixture(scope="module")
def sample() -> ReportInputs:
    return sample_inputs()


@pytest.fixture(scope="module")
def sample_html(sample: ReportInputs) -> str:
    return render_report(sample)


@pytest.fixture(scope="module")
def sample_figures(sample: ReportInputs) -> dict[str, str]:
    return report_figures(sample)


def section(page: str, anchor: str) -> str:
    """Return the HTML of the section with id ``anchor``."""
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, flags=re.DOTALL)
    assert match, f"no section {anchor}"
    return match.group(1)


def test_every_section_heading_is_present_in_order(sample_html: str) -> None:
    positions = [sample_html.index(f"<h2>{heading}</h2>") for _, heading in SECTION_HEADINGS]
    assert positions == sorted(positions)
    assert [heading for _, heading in SECTION_HEADINGS] == [
        "Headline metrics",
        "Facts",
        "Equity and benchmark",
        "Drawdown",
        "Exposure",
        "Weights",
        "What trading cost",
        "Monte Carlo",
        "Ablation",
        "Breakdowns",
        "Risk rejections",
        "Threshold adjustments",
        "Recent trades",
        "Notes",
    ]


def test_one_inline_svg_per_figure(sample_figures: dict[str, str], sample_html: str) -> None:
    figures = sample_figures
    assert tuple(figures) == ALL_FIGURES == FIGURE_NAMES
    for svg in figures.values():
        assert svg.startswith("<svg") and svg.endswith("</svg>") and svg.count("<svg") == 1
    assert sample_html.count("<svg") == len(ALL_FIGURES)
    for anchor in ("equity", "drawdown", "exposure", "weights", "monte-carlo", "ablation", "thresholds"):
        assert section(sample_html, anchor).count("<svg") == 1
    assert "no data" not in sample_html.lower()


def test_page_references_nothing_outside_itself(sample_html: str) -> None:
    lowered = sample_html.lower()
    for forbidden in ("<script", "<link", "@import", "<iframe", "<img", "<object", "<?xml", "<!doctype svg"):
        assert forbidden not in lowered, forbidden
    # url() appears only as the SVG's references to its own clip paths (url(#id)).
    assert re.findall(r"url\(\s*([^)]*)\)", lowered) and all(
        target.startswith("#") for target in re.findall(r"url\(\s*([^)]*)\)", lowered)
    )
    assert set(re.findall(r"https?://[^\s\"'<>)]+", sample_html)) <= ALLOWED_URIS


def test_title_and_text_are_escaped() -> None:
    base = empty_inputs()
    hostile = "<script>alert('x')</script> & co"
    inputs = ReportInputs(
        **{
            **base.__dict__,
            "title": hostile,
            "facts": {"<b>": "<i>"},
            "notes": ("<img src=x onerror=alert(1)>",),
        }
    )
    page = render_report(inputs)
    assert "<script" not in page.lower() and "<img" not in page.lower() and "<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "<title>&lt;script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_headline_metrics_are_formatted_by_meaning(sample: ReportInputs, sample_html: str) -> None:
    cards = section(sample_html, "headline")
    values = dict(
        re.findall(r'<div class="card-label">([^<]*)</div><div class="card-value">([^<]*)</div>', cards)
    )
    assert len(values) == len(sample.performance)
    assert values["win rate"] == "53.30%"
    assert values["annualized volatility"] == "42.00%"
    assert values["Sharpe ratio"] == "0.74"
    assert values["Calmar ratio"] == "—" and values["profit factor"] == "—"
    assert values["fees paid"] == "123.46"
    assert values["trades"] == "30"
    assert values["turnover"] == "12.50×"
    assert values["duration of deepest drawdown"] == "1.7 days"
    assert values["longest drawdown"] == "2.4 days"
    assert values["bars"] == "5,000"
    assert values["start time"] == values["first bar time"] == "2023-11-14 22:13"
    assert values["final equity"] == f"{sample.performance['final_equity']:,.2f}"


def test_tables_show_costs_monte_carlo_and_recent_rows(sample_html: str) -> None:
    costs = section(sample_html, "costs")
    assert '<td class="number">123.46</td>' in costs and '<td class="number">12</td>' in costs
    monte_carlo = section(sample_html, "monte-carlo")
    assert "10,000" in monte_carlo and "probability of loss" in monte_carlo and "41.00%" in monte_carlo
    trades = section(sample_html, "trades")
    assert "The last 30 of 30 closed trades." in trades and trades.count("<tr>") == 31
    # Entry and exit times are UTC dates, holding times stay durations in milliseconds.
    assert "2023-11-14" in trades and str(T0) not in trades
    assert re.search(r'<td class="number">[\d,]+,000</td>', trades)
    rejections = section(sample_html, "rejections")
    assert "The last 50 of 70 rejections." in rejections and "max exposure" in rejections
    thresholds = section(sample_html, "thresholds")
    assert "The last 20 of " in thresholds
    breakdowns = section(sample_html, "breakdowns")
    assert "<h3>By symbol</h3>" in breakdowns and "<h3>By exit reason</h3>" in breakdowns
    ablation = section(sample_html, "ablation")
    assert "without ml" in ablation and "7.00%" in ablation
    assert "expect no edge" in section(sample_html, "notes")


def test_empty_inputs_render_with_no_data_notes() -> None:
    inputs = empty_inputs()
    assert report_figures(inputs) == {}
    page = render_report(inputs)
    assert "<svg" not in page
    for anchor in (
        "facts",
        "equity",
        "drawdown",
        "exposure",
        "weights",
        "costs",
        "monte-carlo",
        "ablation",
        "breakdowns",
        "rejections",
        "thresholds",
        "trades",
    ):
        assert 'class="no-data"' in section(page, anchor), anchor
    headline = section(page, "headline")
    assert headline.count("—") == 2 and ">0<" in headline


def test_partly_empty_inputs_skip_only_their_figures(sample: ReportInputs) -> None:
    inputs = ReportInputs(
        **{
            **sample.__dict__,
            "weights": sample.weights.iloc[0:0],
            "trades": sample.trades.iloc[0:0],
            "monte_carlo": None,
            "ablation": None,
            "threshold_adjustments": None,
        }
    )
    assert set(report_figures(inputs)) == {"equity", "drawdown", "exposure"}
    page = render_report(inputs)
    assert page.count("<svg") == 3
    for anchor in ("weights", "monte-carlo", "ablation", "thresholds", "trades"):
        assert "no data" in section(page, anchor).lower(), anchor


def test_rendering_is_deterministic(sample_html: str) -> None:
    # Fresh inputs from the same seed give the same bytes: fixed SVG ids, no creation date.
    assert render_report(sample_inputs()) == sample_html


def test_a_long_backtest_renders_small(tmp_path: Path) -> None:
    inputs = sample_inputs(bars=100_000, symbols=10, trades=2_000)
    started = time.perf_counter()
    page = render_report(inputs)
    elapsed = time.perf_counter() - started
    size = len(page.encode("utf-8"))
    assert size < 2_000_000, f"{size:,} bytes"
    assert page.count("<svg") == len(ALL_FIGURES)
    assert "The last 50 of 2,000 closed trades." in page
    # Time is reported, not asserted: shared CI machines vary too much.
    print(f"100,000 bars x 10 symbols: {elapsed:.2f} s, {size:,} bytes")


def test_write_report_creates_folders_and_writes_utf8(tmp_path: Path) -> None:
    page = render_report(ReportInputs(**{**empty_inputs().__dict__, "title": "Ünïcode → ok"}))
    target = tmp_path / "reports" / "run 1" / "report.html"
    assert write_report(page, target) == target
    assert target.read_bytes() == page.encode("utf-8")
    assert write_report("<p>é</p>", target).read_text(encoding="utf-8") == "<p>é</p>"
    assert [path.name for path in target.parent.iterdir()] == ["report.html"]


def test_table_numbers_get_decimals_by_column_size() -> None:
    base = empty_inputs()
    breakdown = pd.DataFrame(
        {
            "symbol": ["A", "B", "C"],
            "quantity": [0.0123, 0.0456, 0.5],
            "pnl": [1234.5, -0.6, float("nan")],
            "win_rate": [0.5, 0.25, 1.0],
            "trades": [3, 1_200, 0],
        }
    )
    page = render_report(ReportInputs(**{**base.__dict__, "breakdowns": {"symbol": breakdown}}))
    cells = re.findall(r'<td class="number">([^<]*)</td>', section(page, "breakdowns"))
    assert cells == [
        *("0.0123", "1,234.50", "50.00%", "3"),
        *("0.0456", "-0.60", "25.00%", "1,200"),
        *("0.5000", "—", "100.00%", "0"),
    ]
    assert "<th>symbol</th>" in page and '<th class="number">win rate</th>' in page


def test_monte_carlo_with_missing_arrays_draws_what_there_is() -> None:
    rng = np.random.default_rng(1)
    # Drawdowns as positive magnitudes, no final returns: the halt line goes on the positive side.
    partial = {"bootstrap_max_drawdown": np.abs(rng.normal(0.1, 0.03, 500)), "drawdown_halt": 0.2}
    page = render_report(ReportInputs(**{**empty_inputs().__dict__, "monte_carlo": partial}))
    monte_carlo = section(page, "monte-carlo")
    assert monte_carlo.count("<svg") == 1 and page.count("<svg") == 1
    assert "drawdown halt" in monte_carlo and "20.00%" in monte_carlo
    nothing = {"summary": {}, "bootstrap_final_return": np.array([]), "scenarios": 0}
    page = render_report(ReportInputs(**{**empty_inputs().__dict__, "monte_carlo": nothing}))
    assert "<svg" not in page and 'class="no-data"' in section(page, "monte-carlo")
