"""Signals: alignment confidence, adaptive thresholds, families on and off, isolation, dedup."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tradeflow.strategy.signals import FAMILIES, SignalConfig, SignalGenerator, adaptive_thresholds
from tradeflow.timeframes import MINUTE_MS

T0 = 1_790_000_000_000 - (1_790_000_000_000 % (15 * MINUTE_MS))


def row(trends: tuple[float, float, float, float] = (1, 1, 1, 1), **extra: Any) -> dict[str, Any]:
    values = dict(zip(("5m", "15m", "1h", "4h"), trends, strict=True))
    base: dict[str, Any] = {f"tf{tf}_macd_histogram_relative": value for tf, value in values.items()}
    base |= {
        "atr_percentile": 0.5,
        "atr_relative": 0.01,
        "close": 100.0,
        "regime": "RANGING",
        "profile_value_area_high_distance": -0.002,
        "profile_value_area_low_distance": 0.01,
    }
    return base | extra


def test_all_four_timeframes_agree_gives_full_confidence() -> None:
    generator = SignalGenerator(SignalConfig(), "7")
    signal = generator.evaluate("BTC/USDT", T0, row(), 0.6).signal
    assert signal is not None
    assert (signal.direction, signal.confidence, signal.signal_type) == (1, 1.0, "ml+4tf")
    assert signal.alignment == pytest.approx(1.0)
    assert signal.atr == pytest.approx(1.0)
    assert "p(up) 0.600" in signal.explanation and "RANGING" in signal.explanation
    assert signal.id == "signal-" + signal.fingerprint[:20]


def test_three_of_four_gives_partial_confidence_and_two_gives_none() -> None:
    generator = SignalGenerator(SignalConfig(), "7")
    signal = generator.evaluate("BTC/USDT", T0, row((-1, 1, 1, 1)), 0.6).signal
    assert signal is not None and signal.confidence == 0.7 and signal.alignment == pytest.approx(0.8)
    evaluation = generator.evaluate("ETH/USDT", T0, row((-1, -1, 1, 1)), 0.6)
    assert evaluation.signal is None and "2 of 4 agree" in evaluation.reason


def test_probability_inside_the_thresholds_gives_no_signal() -> None:
    evaluation = SignalGenerator(SignalConfig(), "7").evaluate("BTC/USDT", T0, row(), 0.52)
    assert evaluation.signal is None and "inside the thresholds" in evaluation.reason


def test_adaptive_thresholds_rise_with_volatility_within_bounds_and_are_logged() -> None:
    config = SignalConfig()
    assert adaptive_thresholds(config, 0.5) == pytest.approx((0.55, 0.45))
    assert adaptive_thresholds(config, 1.0) == pytest.approx((0.60, 0.40))
    assert adaptive_thresholds(config, 0.0) == pytest.approx((0.52, 0.48))  # clamped to the bounds
    generator = SignalGenerator(config, "7")
    assert generator.evaluate("BTC/USDT", T0, row(atr_percentile=1.0), 0.58).signal is None
    [adjustment] = generator.adjustments
    assert (adjustment.symbol, adjustment.long_threshold) == ("BTC/USDT", pytest.approx(0.60))
    generator.evaluate("BTC/USDT", T0 + 15 * MINUTE_MS, row(atr_percentile=1.0), 0.5)
    assert len(generator.adjustments) == 1  # unchanged thresholds are not logged again


def test_regime_blocks_trades_against_the_trend_and_volume_profile_blocks_chasing() -> None:
    generator = SignalGenerator(SignalConfig(), "7")
    evaluation = generator.evaluate("BTC/USDT", T0, row(regime="TRENDING_BEARISH"), 0.6)
    assert evaluation.signal is None and "against the trend" in evaluation.reason
    evaluation = generator.evaluate("BTC/USDT", T0, row(profile_value_area_high_distance=0.03), 0.6)
    assert evaluation.signal is None and "above the value area high" in evaluation.reason


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_can_be_switched_off_and_the_rest_keeps_working(family: str) -> None:
    config = SignalConfig(families=frozenset(FAMILIES) - {family})
    generator = SignalGenerator(config, "7")
    # Inputs every family would reject on its own: the one switched off no longer can.
    blocked = {
        "regime": {"regime": "TRENDING_BEARISH"},
        "volume_profile": {"profile_value_area_high_distance": 0.05},
        "adaptive_thresholds": {"atr_percentile": 1.0},
        "multi_timeframe": {"tf5m_macd_histogram_relative": -1, "tf15m_macd_histogram_relative": -1},
        "ml": {},
    }[family]
    signal = generator.evaluate("BTC/USDT", T0, row(**blocked), 0.58 if family != "ml" else None).signal
    assert signal is not None and signal.direction == 1
    assert generator.family_status[family].state == "off"
    if family == "multi_timeframe":
        assert signal.confidence == 0.7 and math.isnan(signal.alignment)
    if family == "regime":
        assert signal.regime is None


def test_a_failing_family_is_isolated_and_reported() -> None:
    generator = SignalGenerator(SignalConfig(), "7")
    broken = row()
    del broken["tf4h_macd_histogram_relative"]
    signal = generator.evaluate("BTC/USDT", T0, broken, 0.6).signal
    assert signal is not None and signal.signal_type == "ml"
    status = generator.family_status["multi_timeframe"]
    assert (
        status.state == "failed" and "tf4h_macd_histogram_relative" in status.reason and status.failures == 1
    )


def test_without_a_model_the_timeframes_decide() -> None:
    generator = SignalGenerator(SignalConfig(), None)
    assert generator.family_status["ml"].reason == "no champion model to serve"
    signal = generator.evaluate("BTC/USDT", T0, row(), 0.99).signal
    assert signal is not None and signal.signal_type == "4tf" and signal.probability is None


def test_duplicates_and_repeats_within_the_cooldown_are_suppressed() -> None:
    generator = SignalGenerator(SignalConfig(cooldown_minutes=60), "7")
    first = generator.evaluate("BTC/USDT", T0, row(), 0.6)
    assert first.signal is not None
    again = generator.evaluate("BTC/USDT", T0, row(), 0.6)
    assert again.signal is None and again.suppressed and "duplicate" in again.reason
    soon = generator.evaluate("BTC/USDT", T0 + 30 * MINUTE_MS, row(), 0.6)
    assert soon.signal is None and "cooldown" in soon.reason
    assert generator.evaluate("ETH/USDT", T0 + 30 * MINUTE_MS, row(), 0.6).signal is not None
    later = generator.evaluate("BTC/USDT", T0 + 60 * MINUTE_MS, row(), 0.6).signal
    assert later is not None and later.fingerprint != first.signal.fingerprint


def test_unknown_family_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown feature families"):
        SignalConfig(families=frozenset({"ml", "astrology"}))
