"""Pure validation logic: derived columns, findings and consensus, without GX or Prefect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.config import ValidationConfig
from tradeflow.quality.candles import CandleRules, derive_candles, observe_candles
from tradeflow.quality.consensus import aligned, build_consensus, deviations, peer_moves, unfilled_holes

MINUTE = 60_000
START = 1_763_596_800_000  # 2025-11-20T00:00Z


def candles(n: int, *, start: int = START, seed: int = 0, step: int = MINUTE) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, n))
    return pd.DataFrame(
        {
            "timestamp": start + step * np.arange(n, dtype=np.int64),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(1, 2, n),
        }
    )


RULES = CandleRules.from_config(ValidationConfig(), "1m")


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=198), max_size=40))
def test_every_hole_is_found_with_its_start_and_length(removed: set[int]) -> None:
    full = candles(200)
    batch = full.drop(index=sorted(removed)).reset_index(drop=True)
    observed = observe_candles(derive_candles(batch, RULES), RULES, as_of=None)["completeness"]
    missing = sorted(removed)
    runs: list[tuple[int, int]] = []
    for i in missing:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    assert [(h["start"], h["length"]) for h in observed["listed"]] == [
        (START + MINUTE * i, length) for i, length in runs
    ]
    assert observed["missing"] == len(removed)
    assert observed["expected"] == 200 and observed["present"] == 200 - len(removed)


def test_a_hole_before_the_batch_is_found_from_the_previous_candle() -> None:
    batch = candles(10, start=START + 5 * MINUTE)
    derived = derive_candles(batch, RULES, previous_timestamp=START)
    assert derived["missing_before"].tolist()[:2] == [4, 0]


def test_a_spike_is_unconfirmed_alone_and_confirmed_when_other_venues_move_too() -> None:
    batch = candles(50)
    batch.loc[20:, ["open", "high", "low", "close"]] *= 1.25  # a 25 % jump at candle 20
    batch.loc[20, "open"] = batch.loc[19, "close"]
    alone = observe_candles(derive_candles(batch, RULES), RULES, as_of=None)["price_spikes"]
    assert (alone["spikes"], alone["unconfirmed"]) == (1, 1)
    assert alone["listed"][0]["timestamp"] == START + 20 * MINUTE
    peers = pd.Series([0.22], index=[START + 20 * MINUTE])
    confirmed = observe_candles(derive_candles(batch, RULES, peer_moves=peers), RULES, as_of=None)
    assert (confirmed["price_spikes"]["confirmed"], confirmed["price_spikes"]["unconfirmed"]) == (1, 0)
    opposite = pd.Series([-0.22], index=[START + 20 * MINUTE])
    assert (
        observe_candles(derive_candles(batch, RULES, peer_moves=opposite), RULES, as_of=None)["price_spikes"][
            "unconfirmed"
        ]
        == 1
    )


def test_a_frozen_feed_is_a_run_of_flat_candles_at_an_unchanged_price() -> None:
    batch = candles(120)
    price = batch.loc[39, "close"]
    batch.loc[40:79, ["open", "high", "low", "close"]] = price  # 40 frozen minutes
    batch.loc[40:79, "volume"] = 0.0
    observed = observe_candles(derive_candles(batch, RULES), RULES, as_of=None)["frozen_prices"]
    assert observed["listed"] == [
        {"start": START + 40 * MINUTE, "start_utc": observed["listed"][0]["start_utc"], "length": 40,
         "price": price}
    ]  # fmt: skip
    short = candles(120)
    short.loc[40:49, ["open", "high", "low", "close"]] = short.loc[39, "close"]  # 10 minutes: not frozen
    assert observe_candles(derive_candles(short, RULES), RULES, as_of=None)["frozen_prices"]["runs"] == 0


def test_a_volume_burst_has_a_high_robust_zscore() -> None:
    batch = candles(200)
    batch.loc[150, "volume"] = 50.0
    z = derive_candles(batch, RULES)["volume_zscore"]
    assert z[150] > 3 and (z.drop(150).dropna() < 3).all()


def test_staleness_is_the_age_of_the_last_candle_at_the_as_of_time() -> None:
    batch = candles(10)
    as_of = START + 15 * MINUTE
    observed = observe_candles(derive_candles(batch, RULES, as_of=as_of), RULES, as_of=as_of)["staleness"]
    assert observed["age_seconds"] == 5 * 60 and observed["allowed_seconds"] == 3 * 60


def _venues(n: int = 100, count: int = 3) -> dict[str, pd.DataFrame]:
    base = candles(n)
    venues = {}
    for i in range(count):
        frame = base.copy()
        frame[["open", "high", "low", "close"]] *= 1 + 0.0001 * i
        venues[f"v{i}"] = frame
    return venues


def test_the_venue_that_is_off_is_flagged_only_when_enough_venues_compare() -> None:
    venues = _venues()
    venues["v2"].loc[10, "close"] *= 1.02
    _, deviation = deviations(aligned(venues, "close"), 3)
    assert deviation["v2"].iloc[10] > 0.005 and deviation[["v0", "v1"]].iloc[10].max() < 0.005
    two = {k: venues[k] for k in ("v0", "v2")}
    _, undecided = deviations(aligned(two, "close"), 3)
    assert undecided.isna().all().all()


def test_consensus_fills_a_hole_from_other_venues_and_says_so() -> None:
    venues = _venues(20)
    venues["v1"] = venues["v1"].drop(index=[5]).reset_index(drop=True)
    curated = build_consensus(venues, {"v0": [START + 7 * MINUTE]})
    assert len(curated) == 20
    row5, row7, row9 = (curated.set_index("timestamp").loc[START + i * MINUTE] for i in (5, 7, 9))
    assert (row5.venues, bool(row5.imputed), row5.venue_count) == ("v0,v2", True, 2)
    assert (row7.venues, bool(row7.imputed)) == ("v1,v2", True)
    assert (row9.venues, bool(row9.imputed)) == ("v0,v1,v2", False)


def test_a_hole_no_venue_can_fill_stays_a_hole_and_is_reported() -> None:
    venues = {k: v.drop(index=[3, 4]).reset_index(drop=True) for k, v in _venues(10).items()}
    curated = build_consensus(venues, {})
    assert START + 3 * MINUTE not in set(curated["timestamp"])
    holes = unfilled_holes(curated["timestamp"].to_numpy(), START, START + 9 * MINUTE, MINUTE)
    assert [(h["start"], h["length"]) for h in holes] == [(START + 3 * MINUTE, 2)]


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from(["median", "volume_weighted"]),
)
def test_consensus_candles_are_consistent_and_never_synthesised(count: int, seed: int, method: str) -> None:
    rng = np.random.default_rng(seed)
    venues = {}
    for i in range(count):
        frame = candles(60, seed=seed + i)
        venues[f"v{i}"] = frame.drop(index=rng.choice(60, size=rng.integers(0, 20), replace=False))
    excluded = {v: list(f["timestamp"].sample(frac=0.1, random_state=seed)) for v, f in venues.items()}
    curated = build_consensus(venues, excluded, method=method)  # type: ignore[arg-type]
    assert (curated["high"] >= curated[["open", "close"]].max(axis=1)).all()
    assert (curated["low"] <= curated[["open", "close"]].min(axis=1)).all()
    usable = set().union(*(set(f["timestamp"]) - set(excluded[v]) for v, f in venues.items()))
    assert set(curated["timestamp"]) == usable
    for row in curated.itertuples():
        contributors = row.venues.split(",")
        assert all(row.timestamp in set(venues[v]["timestamp"]) for v in contributors)
        assert row.imputed == (len(contributors) < count)


def test_peer_moves_are_the_other_venues_median_move() -> None:
    venues = _venues(5)
    venues["v0"].loc[3, "close"] *= 1.5
    moves = peer_moves(venues)
    assert moves["v1"].iloc[3] == pytest.approx(
        np.median([venues[v]["close"].pct_change().iloc[3] for v in ("v0", "v2")])
    )
