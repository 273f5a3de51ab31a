"""The GX suites catch each defect by the check's name, and policies decide the verdict."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from expectations.runner import GxValidator
from tests.unit.test_quality_core import MINUTE, START, candles
from tradeflow.config import ValidationConfig
from tradeflow.quality.books import derive_order_book, derive_trades, observe_order_book
from tradeflow.quality.candles import CandleRules, derive_candles, observe_candles
from tradeflow.quality.checks import verdict
from tradeflow.quality.consensus import aligned, derive_cross_venue, deviations, observe_cross_venue

CONFIG = ValidationConfig()
RULES = CandleRules.from_config(CONFIG, "1m")


@pytest.fixture(scope="module")
def validator() -> GxValidator:
    return GxValidator(CONFIG, "test-suites")


def _run(validator: GxValidator, batch: pd.DataFrame, name: str, as_of: int | None = None):
    derived = derive_candles(batch, RULES, as_of=as_of)
    skip = {} if as_of is not None else {"staleness": "no as-of"}
    observed = observe_candles(derived, RULES, as_of=as_of)
    return validator.validate("candles", derived, batch=name, observed=observed, skip=skip, timeframe="1m")


def _set(row: int, **values: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def apply(frame: pd.DataFrame) -> pd.DataFrame:
        for column, value in values.items():
            frame.loc[row, column] = value
        return frame

    return apply


def _frozen(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[40:79, ["open", "high", "low", "close"]] = frame.loc[39, "close"]
    return frame


def _spike(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[50, ["high", "close"]] = frame.loc[49, "close"] * 1.3
    return frame


def _many_volume_bursts(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[frame.index % 3 == 0, "volume"] = 1_000.0
    return frame


# Each defect and exactly the checks it must fail.
DEFECTS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], set[str]]] = {
    "null close": (_set(5, close=np.nan), {"not_null"}),
    "high below the body": (
        lambda f: _set(
            7, high=f.loc[7, "close"] * 0.99, open=f.loc[7, "close"] * 0.995, low=f.loc[7, "close"] * 0.98
        )(f),
        {"high_covers_body"},
    ),
    "low above the body": (lambda f: _set(8, low=f.loc[8, "close"] * 1.01)(f), {"low_covers_body"}),
    "zero low": (_set(9, low=0.0), {"positive_low"}),
    "negative volume": (_set(10, volume=-1.0), {"non_negative_volume"}),
    "duplicated candle": (
        lambda f: pd.concat([f.iloc[:11], f.iloc[10:]], ignore_index=True),
        {"unique_timestamps", "increasing_timestamps"},
    ),
    "swapped candles": (
        lambda f: f.iloc[[*range(12), 13, 12, *range(14, len(f))]].reset_index(drop=True),
        {"increasing_timestamps", "completeness"},
    ),
    "misaligned open times": (lambda f: f.assign(timestamp=f["timestamp"] + 7), {"aligned_timestamps"}),
    "three missing candles": (lambda f: f.drop(index=[30, 31, 32]).reset_index(drop=True), {"completeness"}),
    "unconfirmed spike": (_spike, {"price_spikes"}),
    "volume bursts": (_many_volume_bursts, {"volume_anomalies"}),
    "frozen feed": (_frozen, {"frozen_prices"}),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_fails_exactly_its_checks(validator: GxValidator, defect: str) -> None:
    mutate, expected = DEFECTS[defect]
    outcome = _run(validator, mutate(candles(200, seed=3)), f"defect {defect}")
    assert {c.check for c in outcome.checks if c.success is False} == expected


def test_a_clean_batch_passes_every_check(validator: GxValidator) -> None:
    batch = candles(200, seed=4)
    as_of = int(batch["timestamp"].max()) + 2 * MINUTE
    outcome = _run(validator, batch, "clean", as_of=as_of)
    assert [c.check for c in outcome.checks if c.success is not True] == []
    assert verdict([outcome]) == "passed"


def test_a_stale_feed_fails_the_staleness_check(validator: GxValidator) -> None:
    batch = candles(200, seed=5)
    as_of = int(batch["timestamp"].max()) + 60 * MINUTE
    outcome = _run(validator, batch, "stale", as_of=as_of)
    staleness = next(c for c in outcome.checks if c.check == "staleness")
    assert staleness.success is False and staleness.observed["age_seconds"] == 59 * 60
    assert verdict([outcome]) == "quarantined"


def test_policies_decide_between_quarantine_warning_and_ignoring() -> None:
    batch = DEFECTS["three missing candles"][0](candles(200, seed=6))
    for policy, expected in (("fail", "quarantined"), ("warn", "warned"), ("ignore", "passed")):
        config = ValidationConfig(policies={"completeness": policy})
        outcome = _run(GxValidator(config, f"policy-{policy}"), batch, "holes")
        assert verdict([outcome]) == expected
        completeness = next(c for c in outcome.checks if c.check == "completeness")
        assert completeness.outcome == {"fail": "failed", "warn": "warned", "ignore": "ignored"}[policy]


def test_cross_venue_flags_the_venue_that_drifts(validator: GxValidator) -> None:
    venues = {f"v{i}": candles(300, seed=7) for i in range(3)}
    venues["v2"]["close"] *= np.linspace(1.0, 1.02, 300)  # drifts to 2 % off
    closes = aligned(venues, "close")
    median, deviation = deviations(closes, 3)
    results = {}
    for venue in venues:
        frame = derive_cross_venue(venue, closes, median, deviation)
        observed = observe_cross_venue(frame, CONFIG.discrepancy_threshold, CONFIG.discrepancy_max_fraction)
        results[venue] = validator.validate("cross_venue", frame, batch=f"cross {venue}",
                                            observed={"cross_venue_discrepancy": observed})  # fmt: skip
    assert {v: verdict([o]) for v, o in results.items()} == {
        "v0": "passed",
        "v1": "passed",
        "v2": "quarantined",
    }
    flagged = results["v2"].checks[0].observed
    # The median of three is the middle venue: v2's deviation is its drift, to float rounding.
    drift = np.linspace(1.0, 1.02, 300) - 1
    assert abs(flagged["flagged"] - int((drift > 0.005).sum())) <= 1
    assert results["v0"].checks[0].observed["flagged"] == 0


def _book(crossed: bool = False, unordered: bool = False, wide: bool = False) -> pd.DataFrame:
    rows = []
    for ts in (START, START + MINUTE):
        for level in range(5):
            bid, ask = 100 - 0.01 * (level + 1), 100 + 0.01 * (level + 1)
            rows.append((ts, "bid", level, bid, 1.0))
            rows.append((ts, "ask", level, ask, 1.0))
    frame = pd.DataFrame(rows, columns=["snapshot_ts", "side", "level", "price", "amount"])
    if crossed:
        frame.loc[(frame.side == "bid") & (frame.level == 0) & (frame.snapshot_ts == START), "price"] = 100.5
    if unordered:
        frame.loc[(frame.side == "ask") & (frame.level == 3), "price"] = 100.025
    if wide:
        frame.loc[frame.side == "ask", "price"] += 5
    return frame


@pytest.mark.parametrize(
    ("book", "failing"),
    [
        (_book(), set()),
        (_book(crossed=True), {"book_not_crossed"}),
        (_book(unordered=True), {"asks_ascending"}),
        (_book(wide=True), {"spread_within_bounds"}),
    ],
)
def test_the_order_book_suite(validator: GxValidator, book: pd.DataFrame, failing: set[str]) -> None:
    derived = derive_order_book(book)
    outcome = validator.validate("order_books", derived, batch=f"book {sorted(failing)}",
                                 observed=observe_order_book(derived, CONFIG.max_spread))  # fmt: skip
    assert {c.check for c in outcome.checks if c.success is False} == failing


def test_the_trades_suite(validator: GxValidator) -> None:
    trades = pd.DataFrame({"id": ["1", "2", "2"], "timestamp": [START] * 3, "side": ["buy", "hold", "sell"],
                           "price": [100.0, -1.0, 100.0], "amount": [1.0, 1.0, 0.0]})  # fmt: skip
    outcome = validator.validate("trades", derive_trades(trades), batch="bad trades", observed={})
    assert {c.check for c in outcome.checks if c.success is False} == {
        "trade_ids_unique",
        "trade_positive",
        "trade_sides",
    }
