"""Summaries of a validation run for people: table rows and markdown (CLI and Prefect artifacts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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
