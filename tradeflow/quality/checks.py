"""What a validation produces: check results, batch verdicts, and the validator port.

A *check* is one named rule (``completeness``, ``cross_venue_discrepancy`` ...). The suites in
``expectations/`` express each check as one or more Great Expectations expectations tagged with
the check's name; the validator adapter runs them and hands back one :class:`CheckResult` per
check, with GX's verdict and the observed value the report shows. Policies from config then turn
results into a batch verdict: quarantined, warned (kept and flagged) or passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import pandas as pd

Policy = Literal["fail", "warn", "ignore"]
Verdict = Literal["passed", "warned", "quarantined"]

#: The checks of each suite, in report order.
SUITE_CHECKS: dict[str, tuple[str, ...]] = {
    "candles": (
        "columns",
        "dtypes",
        "not_null",
        "high_covers_body",
        "low_covers_body",
        "positive_low",
        "non_negative_volume",
        "unique_timestamps",
        "increasing_timestamps",
        "aligned_timestamps",
        "completeness",
        "price_spikes",
        "volume_anomalies",
        "staleness",
        "frozen_prices",
    ),
    "cross_venue": ("cross_venue_discrepancy",),
    "order_books": (
        "book_sides",
        "bids_descending",
        "asks_ascending",
        "book_not_crossed",
        "book_positive",
        "spread_within_bounds",
    ),
    "trades": ("trade_ids_unique", "trade_not_null", "trade_positive", "trade_sides"),
}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one named check on one batch.

    Attributes:
        check: The check's name (a key of the config's ``validation.policies``).
        suite: The suite it belongs to.
        success: GX's verdict (all of the check's expectations met); None when not evaluated.
        policy: What a failure does.
        observed: The observed value shown in reports: counts, positions, thresholds.
        note: Why the check was not evaluated, when it was not.
    """

    check: str
    suite: str
    success: bool | None
    policy: Policy
    observed: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def outcome(self) -> str:
        """Return ``passed``, ``failed``, ``warned``, ``ignored`` or ``not evaluated``."""
        if self.policy == "ignore":
            return "ignored"
        if self.success is None:
            return "not evaluated"
        if self.success:
            return "passed"
        return "failed" if self.policy == "fail" else "warned"

    def to_dict(self) -> dict[str, Any]:
        """Return plain data for JSON reports."""
        return asdict(self) | {"outcome": self.outcome}


@dataclass(frozen=True)
class SuiteOutcome:
    """The results of one suite on one batch, as the validator adapter returns them.

    Attributes:
        suite: Suite name.
        batch: The batch's name, e.g. ``candles sim-alpha BTC-USDT 1m``.
        checks: One result per check of the suite.
        gx_result: GX's own validation result as JSON, kept for Data Docs and the stored report.
    """

    suite: str
    batch: str
    checks: tuple[CheckResult, ...]
    gx_result: dict[str, Any] | None = None

    def failed(self) -> list[CheckResult]:
        """Return the checks whose failure quarantines the batch."""
        return [c for c in self.checks if c.outcome == "failed"]

    def warned(self) -> list[CheckResult]:
        """Return the checks that failed under a ``warn`` policy."""
        return [c for c in self.checks if c.outcome == "warned"]


def verdict(outcomes: Sequence[SuiteOutcome]) -> Verdict:
    """Return a batch's verdict from all its suite outcomes."""
    if any(o.failed() for o in outcomes):
        return "quarantined"
    if any(o.warned() for o in outcomes):
        return "warned"
    return "passed"


class Validator(Protocol):
    """The validation port: run a named suite on a batch's frame (derived columns included)."""

    def validate(
        self,
        suite: str,
        frame: pd.DataFrame,
        *,
        batch: str,
        observed: Mapping[str, dict[str, Any]],
        skip: Mapping[str, str] | None = None,
        timeframe: str | None = None,
    ) -> SuiteOutcome:
        """Run ``suite`` on ``frame``; ``observed`` adds report details per check.

        Args:
            suite: ``candles``, ``cross_venue``, ``order_books`` or ``trades``.
            frame: The batch with the derived columns the suite reads.
            batch: The batch's display name (Data Docs, reports).
            observed: Observed values per check, merged into each result.
            skip: Checks not to evaluate on this batch, with the reason (e.g. no as-of time).
            timeframe: The candles' timeframe (the candle suite's thresholds depend on it).
        """
        ...
