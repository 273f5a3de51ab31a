"""Summaries of a validation run for people: table rows and markdown (CLI and Prefect artifacts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tradeflow.quality.checks import CheckResult
from tradeflow.quality.validation import BatchReport, GroupResult


def summary_rows(groups: Iterable[GroupResult]) -> list[dict[str, Any]]:
    """Return one row per symbol and timeframe: venue verdicts, findings, curated candles."""
    rows = []
    for group in sorted(groups, key=lambda g: (g.symbol, g.timeframe)):
        verdicts = {b.venue: b.verdict for b in group.batches}
        holes = sum(b.check("completeness").get("holes", 0) for b in group.batches)
        missing = sum(b.check("completeness").get("missing", 0) for b in group.batches)
        spikes = sum(b.check("price_spikes").get("unconfirmed", 0) for b in group.batches)
        confirmed = sum(b.check("price_spikes").get("confirmed", 0) for b in group.batches)
        frozen = sum(b.check("frozen_prices").get("runs", 0) for b in group.batches)
        flagged = sum(b.check("cross_venue_discrepancy").get("flagged", 0) for b in group.batches)
        rows.append(
            {
                "symbol": group.symbol,
                "timeframe": group.timeframe,
                "passed": sum(v == "passed" for v in verdicts.values()),
                "warned": sum(v == "warned" for v in verdicts.values()),
                "quarantined": sum(v == "quarantined" for v in verdicts.values()),
                "holes": holes,
                "missing candles": missing,
                "spikes": spikes,
                "confirmed moves": confirmed,
                "frozen runs": frozen,
                "discrepancies": flagged,
                "curated": group.curated_rows,
                "imputed": group.imputed_rows,
                "unfilled holes": len(group.unfilled_holes),
            }
        )
    return rows


def quarantine_lines(groups: Iterable[GroupResult], snapshots: Iterable[BatchReport]) -> list[str]:
    """Return one line per quarantined batch: its name, why, and where it went."""
    batches = [b for g in groups for b in g.batches] + list(snapshots)
    return [
        f"{b.name}: {', '.join(b.reasons())} → {b.quarantine}" for b in batches if b.verdict == "quarantined"
    ]


def summary_markdown(
    groups: Sequence[GroupResult],
    snapshots: Sequence[BatchReport],
    *,
    tag: str,
    docs_url: str | None,
    reports: Mapping[str, str],
) -> str:
    """Return the validation run's summary as markdown (the Prefect ``validation-summary`` artifact)."""
    rows = summary_rows(groups)
    lines = [f"# Validation of ingest batch {tag}", ""]
    if docs_url:
        lines += [f"**Data Docs:** [{docs_url}]({docs_url})", ""]
    if rows:
        header = list(rows[0])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
        lines.append("")
    books = [s for s in snapshots if s.dataset == "order_books"]
    trades = [s for s in snapshots if s.dataset == "trades"]
    lines.append(
        f"Order book batches: {sum(b.verdict != 'quarantined' for b in books)}/{len(books)} passed; "
        f"trade batches: {sum(b.verdict != 'quarantined' for b in trades)}/{len(trades)} passed."
    )
    quarantined = quarantine_lines(groups, snapshots)
    if quarantined:
        lines += ["", "## Quarantined", ""] + [f"- {line}" for line in quarantined]
    unusable = [g for g in groups if not g.usable]
    if unusable:
        lines += ["", "## Unusable", ""] + [f"- {g.symbol} {g.timeframe}: no venue passed" for g in unusable]
    if reports:
        lines += ["", "## Integrity reports", ""] + [f"- {s}: `{k}`" for s, k in sorted(reports.items())]
    return "\n".join(lines) + "\n"


def short_observed(result: CheckResult) -> str:
    """Return a check's observed value in a few words, for tables."""
    o = result.observed
    if result.note and result.success is None:
        return result.note
    match result.check:
        case "columns" if "required" in o:
            return f"{', '.join(o['required'])} present" if result.success else str(o.get("observed", ""))
        case "completeness":
            return (
                f"{o.get('holes', 0)} holes, {o.get('missing', 0)} of {o.get('expected', 0)} candles missing"
            )
        case "price_spikes":
            return (
                f"{o.get('unconfirmed', 0)} unconfirmed, {o.get('confirmed', 0)} confirmed moves "
                f"> {o.get('threshold', 0):.0%}"
            )
        case "volume_anomalies":
            return (
                f"{o.get('anomalies', 0)} of {o.get('scored', 0)} ({o.get('fraction', 0):.1%}) "
                f"z > {o.get('zscore_above', 0):g}; fails above {o.get('max_fraction', 0):.0%}"
            )
        case "frozen_prices":
            return f"{o.get('runs', 0)} runs of >= {o.get('min_run', 0)} frozen candles"
        case "staleness":
            age, allowed = o.get("age_seconds", 0), o.get("allowed_seconds", 0)
            return f"last candle {age:,.0f} s old (allowed {allowed:,.0f} s)"
        case "cross_venue_discrepancy":
            return (
                f"{o.get('flagged', 0)} of {o.get('compared', 0)} ({o.get('fraction', 0):.2%}) "
                f"off the median by > {o.get('threshold', 0):.2%}; {o.get('undecided', 0)} undecided"
            )
        case "spread_within_bounds":
            wide, snapshots = o.get("too_wide", 0), o.get("snapshots", 0)
            return f"{wide} of {snapshots} snapshots wider than {o.get('max_spread', 0):.2%}"
    if "unexpected" in o:
        return f"{o['unexpected']} unexpected of {o.get('element_count', 0)}"
    observed = {k: v for k, v in o.items() if k.startswith("observed")}
    return ", ".join(f"{v}" for v in observed.values())[:80] if observed else ""
