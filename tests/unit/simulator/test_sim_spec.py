"""Validation of the declarative specs and the named fault profiles."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tradeflow.simulator import (
    FAULT_PROFILES,
    ClusterSpec,
    DataFaults,
    SymbolSpec,
    TransportFaults,
    VenueSpec,
)

from ._support import BTC, make_cluster


def test_symbol_spec_derives_binance_ids() -> None:
    assert (BTC.base, BTC.quote, BTC.exchange_id) == ("BTC", "USDT", "BTCUSDT")


@pytest.mark.parametrize("symbol", ["BTCUSDT", "btc/usdt", "BTC/USDT/X", "BTC-USDT"])
def test_symbol_spec_rejects_malformed_symbols(symbol: str) -> None:
    with pytest.raises(ValidationError):
        SymbolSpec(symbol=symbol, base_price=1.0, tick_size=0.01, step_size=0.01)


def test_specs_are_frozen_and_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        VenueSpec(id="a", seed=1, colour="red")  # type: ignore[call-arg]
    venue = VenueSpec(id="a", seed=1)
    with pytest.raises(ValidationError):
        venue.seed = 2  # type: ignore[misc, unused-ignore]


def test_transport_probabilities_cannot_exceed_one() -> None:
    with pytest.raises(ValidationError, match="sum to at most 1"):
        TransportFaults(rate_limit_429=0.6, server_error_5xx=0.5)


def test_cluster_rejects_duplicate_venues_ports_and_unknown_symbols() -> None:
    with pytest.raises(ValidationError, match="duplicate venue"):
        make_cluster(VenueSpec(id="a", seed=1), VenueSpec(id="a", seed=2))
    with pytest.raises(ValidationError, match="same port"):
        make_cluster(VenueSpec(id="a", seed=1, port=9000), VenueSpec(id="b", seed=2, port=9000))
    with pytest.raises(ValidationError, match="unknown symbols"):
        make_cluster(VenueSpec(id="a", seed=1, symbols=["DOGE/USDT"]))


def test_cluster_spec_round_trips_through_json() -> None:
    spec = make_cluster(
        VenueSpec(id="a", seed=1, transport=FAULT_PROFILES["chaos"][0]),
        VenueSpec(id="b", seed=2, data=FAULT_PROFILES["dirty"][1]),
    )
    assert ClusterSpec.model_validate_json(spec.model_dump_json()) == spec


def test_resolved_pins_the_most_recent_midnight() -> None:
    spec = ClusterSpec(symbols=[BTC], venues=[VenueSpec(id="a", seed=1)])
    resolved = spec.resolved(now_ms=1_767_270_896_789)
    assert resolved.history_anchor_ms == 1_767_225_600_000
    assert resolved.resolved() is resolved


def test_fault_profiles_separate_transport_from_data() -> None:
    assert set(FAULT_PROFILES) >= {"clean", "chaos", "dirty", "down"}
    clean_t, clean_d = FAULT_PROFILES["clean"]
    assert clean_t.total_probability == 0 and not clean_d.any and not clean_t.down
    chaos_t, chaos_d = FAULT_PROFILES["chaos"]
    assert chaos_d == DataFaults()
    assert chaos_t.total_probability > 0.2
    assert chaos_t.max_consecutive_faults == 2
    assert chaos_t.timeout_seconds == 3
    dirty_t, dirty_d = FAULT_PROFILES["dirty"]
    assert dirty_t == TransportFaults()
    assert (dirty_d.holes, dirty_d.spikes, dirty_d.stale) == (0.002, 0.0005, 0.002)
    assert FAULT_PROFILES["down"][0].down
