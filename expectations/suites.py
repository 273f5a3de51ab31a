"""The Great Expectations suites, as code: candles, cross-venue, order books and trades.

Every expectation carries ``meta["check"]``: the name of the check it implements, the key of
``validation.policies`` in the config. A check GX has no built-in expectation for is a built-in
expectation over a derived column computed in :mod:`tradeflow.quality` (``missing_before`` for
completeness, ``unconfirmed_move`` for spikes ...). Checks whose policy is ``ignore`` are left
out of the suite; checks a batch cannot evaluate (staleness without an as-of time) are left out
of that batch's variant of the suite.

Suites are versioned with the code: ``SUITE_VERSION`` goes into each suite's meta and the
stored reports, and changes whenever an expectation changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.expectations.expectation import Expectation

from tradeflow.config import ValidationConfig
from tradeflow.quality.candles import CANDLE_COLUMNS, CandleRules
from tradeflow.quality.checks import SUITE_CHECKS

SUITE_VERSION = "2026.11.1"

_PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


def _candle_expectations(rules: CandleRules) -> dict[str, list[Expectation]]:
    max_fraction_ok = 1.0 - rules.volume_anomaly_max_fraction
    return {
        "columns": [
            gxe.ExpectTableColumnsToMatchSet(
                column_set=list(CANDLE_COLUMNS),
                exact_match=False,
                description="**columns**: timestamp, open, high, low, close and volume are present",
            )
        ],
        "dtypes": [
            gxe.ExpectColumnValuesToBeOfType(
                column=column,
                type_="int64" if column == "timestamp" else "float64",
                description=f"**dtypes**: `{column}` is "
                + ("int64 (UTC milliseconds)" if column == "timestamp" else "float64"),
            )
            for column in CANDLE_COLUMNS
        ],
        "not_null": [
            gxe.ExpectColumnValuesToNotBeNull(
                column=column, description=f"**not_null**: `{column}` has no nulls"
            )
            for column in CANDLE_COLUMNS
        ],
        "high_covers_body": [
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="high",
                column_B="body_high",
                or_equal=True,
                description="**high_covers_body**: high >= max(open, close)",
            )
        ],
        "low_covers_body": [
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="body_low",
                column_B="low",
                or_equal=True,
                description="**low_covers_body**: low <= min(open, close)",
            )
        ],
        "positive_low": [
            gxe.ExpectColumnValuesToBeBetween(
                column="low", min_value=0, strict_min=True, description="**positive_low**: low > 0"
            )
        ],
        "non_negative_volume": [
            gxe.ExpectColumnValuesToBeBetween(
                column="volume", min_value=0, description="**non_negative_volume**: volume >= 0"
            )
        ],
        "unique_timestamps": [
            gxe.ExpectColumnValuesToBeUnique(
                column="timestamp", description="**unique_timestamps**: no two candles share an open time"
            )
        ],
        "increasing_timestamps": [
            gxe.ExpectColumnValuesToBeIncreasing(
                column="timestamp",
                strictly=True,
                description="**increasing_timestamps**: open times strictly increase",
            )
        ],
        "aligned_timestamps": [
            gxe.ExpectColumnValuesToBeInSet(
                column="timestamp_offset",
                value_set=[0],
                description=f"**aligned_timestamps**: open times are multiples of {rules.timeframe}",
            )
        ],
        "completeness": [
            gxe.ExpectColumnValuesToBeBetween(
                column="missing_before",
                max_value=0,
                description="**completeness**: no candle is missing before any candle (holes)",
            )
        ],
        "price_spikes": [
            gxe.ExpectColumnValuesToBeBetween(
                column="unconfirmed_move",
                max_value=rules.spike_threshold,
                description=f"**price_spikes**: no close-to-close move above {rules.spike_threshold:.0%} "
                "that the other venues do not confirm",
            )
        ],
        "volume_anomalies": [
            gxe.ExpectColumnValuesToBeBetween(
                column="volume_zscore",
                max_value=rules.volume_zscore,
                mostly=max_fraction_ok,
                description=f"**volume_anomalies**: robust volume z-score <= {rules.volume_zscore:g} "
                f"(rolling {rules.volume_window} candles) for at least {max_fraction_ok:.0%} of candles",
            )
        ],
        "staleness": [
            gxe.ExpectColumnMinToBeBetween(
                column="candle_age_seconds",
                max_value=rules.staleness_ms / 1000.0,
                description=f"**staleness**: the last candle closed at most {rules.staleness_ms // 1000} s "
                "before the batch's as-of time",
            )
        ],
        "frozen_prices": [
            gxe.ExpectColumnValuesToBeBetween(
                column="frozen_run",
                max_value=rules.frozen_run_candles - 1,
                description=f"**frozen_prices**: no run of {rules.frozen_run_candles} or more flat candles "
                "at an unchanged price",
            )
        ],
    }


def _cross_venue_expectations(config: ValidationConfig) -> dict[str, list[Expectation]]:
    ok = 1.0 - config.discrepancy_max_fraction
    return {
        "cross_venue_discrepancy": [
            gxe.ExpectColumnValuesToBeBetween(
                column="deviation",
                max_value=config.discrepancy_threshold,
                mostly=ok,
                description=f"**cross_venue_discrepancy**: close within {config.discrepancy_threshold:.2%} "
                f"of the venues' median for at least {ok:.0%} of candles "
                f"(compared where {config.min_venues_for_discrepancy}+ venues have the candle)",
            )
        ]
    }


def _order_book_expectations(config: ValidationConfig) -> dict[str, list[Expectation]]:
    return {
        "book_sides": [
            gxe.ExpectColumnValuesToBeInSet(
                column="side", value_set=["bid", "ask"], description="**book_sides**: side is bid or ask"
            )
        ],
        "bids_descending": [
            gxe.ExpectColumnValuesToBeBetween(
                column="bid_step",
                max_value=0,
                strict_max=True,
                description="**bids_descending**: each bid level is priced below the one before",
            )
        ],
        "asks_ascending": [
            gxe.ExpectColumnValuesToBeBetween(
                column="ask_step",
                min_value=0,
                strict_min=True,
                description="**asks_ascending**: each ask level is priced above the one before",
            )
        ],
        "book_not_crossed": [
            gxe.ExpectColumnValuesToBeBetween(
                column="spread",
                min_value=0,
                strict_min=True,
                description="**book_not_crossed**: best bid < best ask in every snapshot",
            )
        ],
        "book_positive": [
            gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=0, strict_min=True, description=f"**book_positive**: {column} > 0"
            )
            for column in ("price", "amount")
        ],
        "spread_within_bounds": [
            gxe.ExpectColumnValuesToBeBetween(
                column="relative_spread",
                max_value=config.max_spread,
                description=f"**spread_within_bounds**: spread <= {config.max_spread:.2%} of the mid price",
            )
        ],
    }


def _trade_expectations() -> dict[str, list[Expectation]]:
    return {
        "trade_ids_unique": [
            gxe.ExpectColumnValuesToBeUnique(
                column="id", description="**trade_ids_unique**: trade ids are unique"
            )
        ],
        "trade_not_null": [
            gxe.ExpectColumnValuesToNotBeNull(
                column=column, description=f"**trade_not_null**: `{column}` has no nulls"
            )
            for column in ("id", "timestamp", "price", "amount")
        ],
        "trade_positive": [
            gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=0, strict_min=True, description=f"**trade_positive**: {column} > 0"
            )
            for column in ("price", "amount")
        ],
        "trade_sides": [
            gxe.ExpectColumnValuesToBeInSet(
                column="side", value_set=["buy", "sell"], description="**trade_sides**: side is buy or sell"
            )
        ],
    }


def expectations_for(
    suite: str, config: ValidationConfig, timeframe: str | None = None
) -> dict[str, list[Expectation]]:
    """Return every expectation of a suite, grouped by check name (before policies)."""
    builders: dict[str, Callable[[], dict[str, list[Expectation]]]] = {
        "candles": lambda: _candle_expectations(CandleRules.from_config(config, timeframe or "1m")),
        "cross_venue": lambda: _cross_venue_expectations(config),
        "order_books": lambda: _order_book_expectations(config),
        "trades": _trade_expectations,
    }
    by_check = builders[suite]()
    assert tuple(by_check) == SUITE_CHECKS[suite], "suite checks out of step with SUITE_CHECKS"
    return by_check


def suite_name(suite: str, timeframe: str | None, skip: Iterable[str] = ()) -> str:
    """Return the GX suite name of one variant, e.g. ``candles_1m`` or ``candles_1m-no-staleness``."""
    name = f"{suite}_{timeframe}" if timeframe else suite
    skipped = sorted(skip)
    return f"{name}-no-{'-'.join(skipped)}" if skipped else name


def build_suite(
    suite: str, config: ValidationConfig, timeframe: str | None = None, skip: Iterable[str] = ()
) -> gx.ExpectationSuite:
    """Return the GX suite for ``suite`` under ``config``'s thresholds and policies.

    Each expectation's meta names its check and policy; ignored and skipped checks are left out.
    """
    skipped = set(skip)
    result = gx.ExpectationSuite(
        name=suite_name(suite, timeframe, skipped),
        meta={"tradeflow_suite": suite, "suite_version": SUITE_VERSION, "timeframe": timeframe},
    )
    for check, expectations in expectations_for(suite, config, timeframe).items():
        policy = config.policy(check)
        if policy == "ignore" or check in skipped:
            continue
        for expectation in expectations:
            expectation.meta = {"check": check, "policy": policy}
            result.add_expectation(expectation)
    return result
