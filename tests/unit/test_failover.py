"""A failed venue's symbols stay covered by other venues that list them."""

from tradeflow.ingest import (
    Assignment,
    SeriesResult,
    VenueStatus,
    final_statuses,
    lost_symbols,
    plan_failover,
)


def test_symbols_already_configured_elsewhere_are_covered_without_new_fetches():
    requested = {"a": ["BTC/USDT", "ETH/USDT"], "b": ["BTC/USDT", "ETH/USDT"]}
    assignments, covered, uncovered = plan_failover(
        requested, {"a": ["BTC/USDT", "ETH/USDT"]}, {"b": ["BTC/USDT", "ETH/USDT"]}
    )
    assert assignments == []
    assert covered == {"BTC/USDT": ["b"], "ETH/USDT": ["b"]}
    assert uncovered == []


def test_a_venue_that_lists_a_lost_symbol_takes_it_over():
    requested = {"a": ["SOL/USDT"], "b": ["BTC/USDT"], "c": ["ETH/USDT"]}
    listings = {"b": ["BTC/USDT", "SOL/USDT"], "c": ["ETH/USDT", "SOL/USDT"]}
    assignments, covered, _ = plan_failover(requested, {"a": ["SOL/USDT"]}, listings)
    assert assignments == [Assignment("b", "SOL/USDT", failover_for="a")]
    assert covered == {"SOL/USDT": ["b"]}


def test_a_symbol_nobody_else_lists_is_reported_uncovered():
    requested = {"a": ["DOGE/USDT"], "b": ["BTC/USDT"]}
    _, covered, uncovered = plan_failover(requested, {"a": ["DOGE/USDT"]}, {"b": ["BTC/USDT"]})
    assert covered == {} and uncovered == ["DOGE/USDT"]


def test_lost_symbols_and_final_statuses_from_a_run():
    requested = {"a": ["BTC/USDT", "ETH/USDT"], "b": ["BTC/USDT"], "c": ["BTC/USDT"]}
    statuses = {
        "a": VenueStatus("a", True, None),
        "b": VenueStatus("b", False, None, "down"),
        "c": VenueStatus("c", True, None),
    }
    series = [
        SeriesResult("a", "ETH/USDT", "1m", "failed", error="timeouts"),
        SeriesResult("a", "BTC/USDT", "1m", "stored"),
        SeriesResult("c", "BTC/USDT", "1m", "stored"),
    ]
    assert lost_symbols(requested, statuses, series) == {"a": ["ETH/USDT"], "b": ["BTC/USDT"]}
    final = {s.venue: s for s in final_statuses(statuses, series)}
    assert not final["a"].ok and "ETH/USDT 1m: timeouts" in final["a"].error
    assert not final["b"].ok and final["c"].ok
