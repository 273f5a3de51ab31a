"""Signals: from a model's probability and the bar's features to a direction with a confidence.

A signal is decided per symbol and bar from five feature families, each of which can be switched
off in config (:data:`FAMILIES`):

- ``ml``: the champion model's probability that the price rises, against a long and a short
  threshold. With it off, the direction comes from the multi-timeframe majority instead.
- ``multi_timeframe``: the trend of the closed 5m, 15m, 1h and 4h bars (the sign of each one's
  MACD histogram), weighted 10 / 20 / 30 / 40 %. Confidence is 1.0 when all four agree with the
  direction, 0.7 when three do; with fewer there is no signal. With the family off, a signal
  gets the partial confidence 0.7: nothing confirmed it.
- ``volume_profile``: no long entry more than ``value_area_extension`` above the value area's
  high, no short entry as far below its low (chasing a move away from where volume traded).
- ``regime``: no long in a TRENDING_BEARISH market, no short in a TRENDING_BULLISH one; the
  signal carries the regime on to allocation (half size when VOLATILE) and exits (an exit on an
  adverse regime change). Off, the signal carries no regime.
- ``adaptive_thresholds``: the thresholds move with the ATR percentile over 30 days (the feature
  ``atr_percentile``): more demanding when volatility is high, less when it is low, within
  configured bounds. Every change of a symbol's thresholds is logged and kept in
  :attr:`SignalGenerator.adjustments`.

A family that raises (a missing input column, say) is isolated: it counts as off for that bar, is
reported in :attr:`SignalGenerator.family_status`, and the other families keep working.

Signals carry an id, a fingerprint (the SHA-256 of what decided them), the confidence and a short
explanation. :class:`SignalGenerator` suppresses a signal whose fingerprint it has seen (the same
bar evaluated twice) and one that repeats a symbol's direction within the cooldown. It keeps that
state incrementally, so the backtest and the streaming flow feed it the same way, one bar at a
time.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tradeflow.canonical import content_hash
from tradeflow.timeframes import MINUTE_MS

log = logging.getLogger(__name__)

FAMILIES = ("ml", "multi_timeframe", "volume_profile", "regime", "adaptive_thresholds")
#: Timeframe weights of the multi-timeframe alignment score.
TIMEFRAME_WEIGHTS: Mapping[str, float] = {"4h": 0.4, "1h": 0.3, "15m": 0.2, "5m": 0.1}
FULL_ALIGNMENT_CONFIDENCE = 1.0
PARTIAL_ALIGNMENT_CONFIDENCE = 0.7
_TREND = "tf{timeframe}_macd_histogram_relative"
_SEEN_FINGERPRINTS = 100_000


@dataclass(frozen=True)
class SignalConfig:
    """How signals are decided.

    Attributes:
        families: The feature families in use (a subset of :data:`FAMILIES`).
        long_threshold: Base probability at or above which the model says long.
        short_threshold: Base probability at or below which the model says short.
        allow_short: Whether short signals are produced at all (spot venues: no).
        threshold_sensitivity: How far the thresholds move, in probability, between the 0th and
            100th ATR percentile (half of it each way from the median).
        long_threshold_bounds: The adaptive long threshold stays within these.
        short_threshold_bounds: The adaptive short threshold stays within these.
        adjustment_step: A threshold change smaller than this is not logged as an adjustment.
        value_area_extension: How far beyond the value area an entry is still allowed.
        cooldown_minutes: A symbol's repeated direction within this many minutes is suppressed.
        timeframe_weights: Weights of the multi-timeframe alignment score.
    """

    families: frozenset[str] = frozenset(FAMILIES)
    long_threshold: float = 0.55
    short_threshold: float = 0.45
    allow_short: bool = False
    threshold_sensitivity: float = 0.10
    long_threshold_bounds: tuple[float, float] = (0.52, 0.65)
    short_threshold_bounds: tuple[float, float] = (0.35, 0.48)
    adjustment_step: float = 0.005
    value_area_extension: float = 0.01
    cooldown_minutes: int = 60
    timeframe_weights: Mapping[str, float] = field(default_factory=lambda: dict(TIMEFRAME_WEIGHTS))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown feature families {unknown}; known: {list(FAMILIES)}")
        if not 0.0 < self.short_threshold < self.long_threshold < 1.0:
            raise ValueError("thresholds must satisfy 0 < short_threshold < long_threshold < 1")
        for name in ("long_threshold_bounds", "short_threshold_bounds"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high < 1.0:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high < 1")

    def with_families(self, families: frozenset[str]) -> SignalConfig:
        """Return this config with only ``families`` switched on."""
        return dataclasses.replace(self, families=frozenset(families))


@dataclass(frozen=True)
class Signal:
    """A decision to be long or short one symbol, from one bar.

    Attributes:
        id: ``signal-`` and the first 20 hex digits of the fingerprint.
        fingerprint: SHA-256 of the symbol, bar, direction, model version and the inputs that
            decided it.
        symbol: The symbol.
        time: The bar's open time (UTC ms); the decision is made at its close.
        direction: +1 long, -1 short.
        confidence: 1.0 (fully aligned) or 0.7 (partly, or not confirmable).
        probability: The model's probability of a rise (None without the ml family).
        signal_type: What produced it: ``ml+4tf``, ``ml+3tf``, ``ml``, ``4tf`` or ``3tf``.
        regime: The regime at the bar (None with the regime family off).
        long_threshold: The long threshold in force.
        short_threshold: The short threshold in force.
        alignment: The weighted multi-timeframe score in [-1, 1] (NaN with the family off).
        price: The bar's close.
        atr: The bar's ATR in price units (for stops and take-profits).
        model_version: The model version that gave the probability.
        explanation: Its inputs in a sentence.
    """

    id: str
    fingerprint: str
    symbol: str
    time: int
    direction: int
    confidence: float
    probability: float | None
    signal_type: str
    regime: str | None
    long_threshold: float
    short_threshold: float
    alignment: float
    price: float
    atr: float
    model_version: str | None
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        """Return the signal as plain values."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class ThresholdAdjustment:
    """A change of a symbol's adaptive thresholds."""

    time: int
    symbol: str
    atr_percentile: float
    base_long: float
    long_threshold: float
    base_short: float
    short_threshold: float

    def to_dict(self) -> dict[str, Any]:
        """Return the adjustment as plain values."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Evaluation:
    """What one bar gave: a signal, or why not."""

    symbol: str
    time: int
    signal: Signal | None
    reason: str
    suppressed: bool = False


@dataclass
class FamilyStatus:
    """Whether a family is on, off, or failing, and why."""

    name: str
    state: str
    reason: str = ""
    failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the status as plain values."""
        return dict(self.__dict__)


def _number(row: Mapping[str, Any], name: str) -> float:
    """Return ``row[name]`` as a float; raise KeyError naming the input when it is absent."""
    if name not in row:
        raise KeyError(f"missing input {name!r}")
    value = row[name]
    return math.nan if value is None else float(value)


def adaptive_thresholds(config: SignalConfig, atr_percentile: float) -> tuple[float, float]:
    """Return the (long, short) thresholds for an ATR percentile in [0, 1] (NaN: the base ones).

    ``shift = sensitivity * (percentile - 0.5)``: the long threshold rises by it and the short
    one falls by it, each clamped to its bounds.
    """
    if math.isnan(atr_percentile):
        return config.long_threshold, config.short_threshold
    shift = config.threshold_sensitivity * (min(max(atr_percentile, 0.0), 1.0) - 0.5)
    low, high = config.long_threshold_bounds
    long_threshold = min(max(config.long_threshold + shift, low), high)
    low, high = config.short_threshold_bounds
    short_threshold = min(max(config.short_threshold - shift, low), high)
    return long_threshold, short_threshold


def timeframe_trends(config: SignalConfig, row: Mapping[str, Any]) -> dict[str, int]:
    """Return each timeframe's trend (+1, -1, or 0 when flat or not known yet)."""
    trends = {}
    for timeframe in config.timeframe_weights:
        value = _number(row, _TREND.format(timeframe=timeframe))
        trends[timeframe] = 0 if math.isnan(value) or value == 0.0 else (1 if value > 0 else -1)
    return trends


class SignalGenerator:
    """Decide signals bar by bar, suppress duplicates, log threshold adjustments.

    Args:
        config: How signals are decided.
        model_version: The version of the model whose probabilities are fed in (recorded in
            every signal's fingerprint).
    """

    def __init__(self, config: SignalConfig, model_version: str | None = None) -> None:
        self.config = config
        self.model_version = model_version
        self.family_status: dict[str, FamilyStatus] = {
            name: FamilyStatus(
                name,
                "on" if name in config.families else "off",
                "" if name in config.families else "switched off in config",
            )
            for name in FAMILIES
        }
        if "ml" in config.families and model_version is None:
            self.family_status["ml"] = FamilyStatus("ml", "off", "no champion model to serve")
        self.adjustments: list[ThresholdAdjustment] = []
        self._thresholds: dict[str, tuple[float, float]] = {}
        self._last_emitted: dict[tuple[str, int], int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()

    def _on(self, name: str) -> bool:
        return self.family_status[name].state == "on"

    def _guarded(self, name: str, call: Callable[[], Any]) -> tuple[bool, Any]:
        """Run one family's step; on an error mark the family failed and report it, not raise."""
        try:
            return True, call()
        except (KeyError, ValueError, TypeError, ArithmeticError) as error:
            status = self.family_status[name]
            status.failures += 1
            message = str(error).strip("'\"")
            if status.state != "failed" or status.reason != message:
                log.warning("feature family %s failed (%s); continuing without it", name, message)
            status.state, status.reason = "failed", message
            return False, None

    def evaluate(
        self, symbol: str, time: int, row: Mapping[str, Any], probability: float | None
    ) -> Evaluation:
        """Decide the signal of ``symbol`` for the bar opening at ``time``.

        Args:
            symbol: The symbol.
            time: The bar's open time (UTC ms).
            row: The bar's features (a feature-matrix row: ``close`` is read from it when
                present, else the relative price columns are not needed), with ``regime``.
            probability: The model's probability of a rise, or None.
        """
        config, words = self.config, []
        thresholds = (config.long_threshold, config.short_threshold)
        if self._on("adaptive_thresholds"):
            ok, adapted = self._guarded(
                "adaptive_thresholds",
                lambda: (
                    _number(row, "atr_percentile"),
                    adaptive_thresholds(config, _number(row, "atr_percentile")),
                ),
            )
            if ok:
                percentile, thresholds = adapted
                self._note_adjustment(symbol, time, percentile, thresholds)
                if not math.isnan(percentile):
                    words.append(f"ATR percentile {percentile:.0%}")
        long_threshold, short_threshold = thresholds

        direction, source = 0, ""
        use_ml = self._on("ml") and probability is not None and not math.isnan(probability)
        if use_ml:
            assert probability is not None
            if probability >= long_threshold:
                direction = 1
            elif probability <= short_threshold and config.allow_short:
                direction = -1
            words.insert(0, f"p(up) {probability:.3f} vs {long_threshold:.3f}/{short_threshold:.3f}")
            if direction == 0:
                return Evaluation(symbol, time, None, "; ".join(words) + ": inside the thresholds")
            source = "ml"

        alignment, agreeing, confidence = math.nan, 0, PARTIAL_ALIGNMENT_CONFIDENCE
        if self._on("multi_timeframe"):
            ok, trends = self._guarded("multi_timeframe", lambda: timeframe_trends(config, row))
            if ok:
                alignment = sum(config.timeframe_weights[tf] * trend for tf, trend in trends.items())
                if direction == 0:
                    direction = 1 if alignment > 0 else -1 if alignment < 0 else 0
                    if direction == -1 and not config.allow_short:
                        return Evaluation(
                            symbol, time, None, f"timeframes point down ({alignment:+.1f}); no shorts"
                        )
                agreeing = sum(1 for trend in trends.values() if trend == direction and direction != 0)
                arrows = " ".join(
                    f"{tf}{'+' if t > 0 else '-' if t < 0 else '0'}" for tf, t in trends.items()
                )
                words.append(f"timeframes {arrows} (score {alignment:+.1f})")
                if agreeing == len(trends):
                    confidence = FULL_ALIGNMENT_CONFIDENCE
                elif agreeing == len(trends) - 1:
                    confidence = PARTIAL_ALIGNMENT_CONFIDENCE
                else:
                    return Evaluation(symbol, time, None, "; ".join(words) + f": {agreeing} of 4 agree")
                source = f"{source}+{agreeing}tf" if source else f"{agreeing}tf"
        if direction == 0:
            reason = "no direction: neither the model nor the timeframes are in use"
            return Evaluation(symbol, time, None, "; ".join([*words, reason]))

        regime: str | None = None
        if self._on("regime"):
            ok, label = self._guarded("regime", lambda: str(row["regime"]))
            if ok:
                regime = label
                words.append(f"regime {label}")
                blocked = {1: "TRENDING_BEARISH", -1: "TRENDING_BULLISH"}[direction]
                if label == blocked:
                    return Evaluation(symbol, time, None, "; ".join(words) + ": against the trend")

        if self._on("volume_profile"):
            name = "profile_value_area_high_distance" if direction == 1 else "profile_value_area_low_distance"
            ok, distance = self._guarded("volume_profile", lambda: _number(row, name))
            if ok and not math.isnan(distance):
                beyond = distance if direction == 1 else -distance
                side = "above the value area high" if direction == 1 else "below the value area low"
                if beyond > config.value_area_extension:
                    return Evaluation(symbol, time, None, "; ".join(words) + f": {beyond:.1%} {side}")
                words.append("inside the value area" if beyond <= 0 else f"{beyond:.1%} {side}")

        price = _number(row, "close") if "close" in row else math.nan
        atr = _number(row, "atr_relative") * price if "atr_relative" in row else math.nan
        facts = {
            "symbol": symbol,
            "time": time,
            "direction": direction,
            "model_version": self.model_version if use_ml else None,
            "probability": None if not use_ml or probability is None else round(probability, 6),
            "thresholds": [round(long_threshold, 6), round(short_threshold, 6)],
            "alignment": None if math.isnan(alignment) else round(alignment, 6),
            "regime": regime,
            "families": sorted(name for name in FAMILIES if self._on(name)),
        }
        fingerprint = content_hash(facts)
        signal = Signal(
            id=f"signal-{fingerprint[:20]}",
            fingerprint=fingerprint,
            symbol=symbol,
            time=time,
            direction=direction,
            confidence=confidence,
            probability=probability if use_ml else None,
            signal_type=source,
            regime=regime,
            long_threshold=long_threshold,
            short_threshold=short_threshold,
            alignment=alignment,
            price=price,
            atr=atr,
            model_version=self.model_version if use_ml else None,
            explanation=("long" if direction == 1 else "short") + ": " + "; ".join(words),
        )
        return self._deduplicated(signal)

    def _deduplicated(self, signal: Signal) -> Evaluation:
        if signal.fingerprint in self._seen:
            return Evaluation(signal.symbol, signal.time, None, "duplicate of an earlier signal", True)
        key = (signal.symbol, signal.direction)
        last = self._last_emitted.get(key)
        cooldown = self.config.cooldown_minutes * MINUTE_MS
        if last is not None and signal.time - last < cooldown:
            minutes = (last + cooldown - signal.time) // MINUTE_MS
            return Evaluation(signal.symbol, signal.time, None, f"cooldown: {minutes} more minute(s)", True)
        self._seen[signal.fingerprint] = None
        if len(self._seen) > _SEEN_FINGERPRINTS:
            self._seen.popitem(last=False)
        self._last_emitted[key] = signal.time
        return Evaluation(signal.symbol, signal.time, signal, signal.explanation)

    def _note_adjustment(
        self, symbol: str, time: int, percentile: float, thresholds: tuple[float, float]
    ) -> None:
        previous = self._thresholds.get(symbol, (self.config.long_threshold, self.config.short_threshold))
        if (
            max(abs(thresholds[0] - previous[0]), abs(thresholds[1] - previous[1]))
            < self.config.adjustment_step
        ):
            return
        self._thresholds[symbol] = thresholds
        adjustment = ThresholdAdjustment(
            time,
            symbol,
            percentile,
            self.config.long_threshold,
            thresholds[0],
            self.config.short_threshold,
            thresholds[1],
        )
        self.adjustments.append(adjustment)
        log.info(
            "%s thresholds adjusted to long %.3f / short %.3f (ATR percentile %.0f%%)",
            symbol,
            thresholds[0],
            thresholds[1],
            100 * percentile,
        )
