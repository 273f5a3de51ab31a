"""The feature specification: every parameter that decides what the feature matrix holds.

A :class:`FeatureSpec` is frozen and hashed: :attr:`FeatureSpec.hash` is the SHA-256 of the
canonical JSON of :meth:`FeatureSpec.definition`, which holds every parameter and
:data:`FEATURE_CODE_VERSION`. Two matrices with the same hash were computed the same way from
their candles, so the hash is what later stages record (MLflow tags, audit entries) and key
stored feature matrices by.

Periods and windows of the 1-minute features count rows (one row per candle present); the
volume profile's window and refresh interval are wall-clock minutes. See
:mod:`tradeflow.features.build`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tradeflow.canonical import content_hash
from tradeflow.timeframes import MINUTE_MS, timeframe_ms

#: Version of the feature code itself. Bump it whenever a formula, a warm-up rule or a column's
#: meaning changes, even if no parameter did: it is part of every spec's hash.
FEATURE_CODE_VERSION = "1"

_DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class FeatureSpec:
    """What the feature matrix holds and how each feature is computed.

    Attributes:
        name: A label for people; part of the hash like everything else.
        version: The spec's own version; bump it when the parameters' meaning changes.
        return_horizons: Horizons, in rows, of the simple and log returns. Must include 1 (the
            cross-asset correlation uses one-row returns).
        volatility_windows: Windows, in rows, of realized and Parkinson volatility.
        rsi_period: RSI period.
        atr_period: ATR period (the ATR is reported relative to the close).
        macd_fast: MACD fast EMA period.
        macd_slow: MACD slow EMA period.
        macd_signal: MACD signal EMA period.
        bollinger_period: Bollinger Bands period.
        bollinger_deviations: Bollinger Bands width in population standard deviations.
        adx_period: ADX / +DI / -DI period.
        obv_window: Window of the OBV flow (OBV change per unit of volume).
        volume_zscore_window: Window of the volume z-score.
        skew_window: Window of the skewness of one-row log returns.
        vwap_window: Window of the rolling VWAP, and of the count of missing minutes.
        higher_timeframes: Timeframes whose closed bars feed the multi-timeframe features.
        volume_profile_window_minutes: Look-back of the volume profile, in minutes.
        volume_profile_bins: Number of price bins of the volume profile.
        volume_profile_value_area: Share of the window's volume the value area must hold.
        volume_profile_refresh_minutes: How often the profile is recomputed, in minutes; rows in
            between use the latest profile, computed from rows up to its own row.
        regime_adx_trend: ADX at or above which the market is trending.
        regime_atr_window: Window, in rows, of the ATR percentile.
        regime_atr_min_periods: Rows of ATR needed before the percentile is defined.
        regime_high_volatility_percentile: ATR percentile at or above which an untrending market
            is volatile.
        regime_bollinger_width_max: Bollinger width (band spread over the middle) at or below
            which a quiet, untrending market is ranging.
        regime_min_dwell: Rows a new regime must hold before it replaces the current one.
        leader_symbol: The symbol the others are compared against.
        correlation_window: Window, in rows, of the correlation with the leader.
        relative_strength_horizons: Horizons, in rows, of the return relative to the leader; each
            must be one of ``return_horizons``.
        order_book_levels: Depth levels of the order-book imbalance (1 = best level only).
    """

    name: str = "default"
    version: str = "1"
    return_horizons: tuple[int, ...] = (1, 5, 15, 60, 240)
    volatility_windows: tuple[int, ...] = (15, 60, 240, 1440)
    rsi_period: int = 14
    atr_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bollinger_period: int = 20
    bollinger_deviations: float = 2.0
    adx_period: int = 14
    obv_window: int = 60
    volume_zscore_window: int = 60
    skew_window: int = 60
    vwap_window: int = 240
    higher_timeframes: tuple[str, ...] = ("5m", "15m", "1h", "4h")
    volume_profile_window_minutes: int = 7 * _DAY_MINUTES
    volume_profile_bins: int = 50
    volume_profile_value_area: float = 0.70
    volume_profile_refresh_minutes: int = 60
    regime_adx_trend: float = 25.0
    regime_atr_window: int = 30 * _DAY_MINUTES
    regime_atr_min_periods: int = _DAY_MINUTES
    regime_high_volatility_percentile: float = 0.8
    regime_bollinger_width_max: float = 0.005
    regime_min_dwell: int = 60
    leader_symbol: str = "BTC/USDT"
    correlation_window: int = 240
    relative_strength_horizons: tuple[int, ...] = (15, 60, 240)
    order_book_levels: tuple[int, ...] = (1, 5, 10)

    def __post_init__(self) -> None:
        # One value, one encoding: 2 and 2.0 (TOML integers), or a list and a tuple, must not
        # give two hashes for the same spec.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, field.name, float(value))
            elif isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))
        problems = list(_problems(self))
        if problems:
            raise ValueError("invalid feature spec: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> FeatureSpec:
        """Return the spec a config mapping describes; missing keys take their defaults.

        Lists become tuples and integers given for float parameters become floats, so a spec read
        from TOML or JSON equals (and hashes like) one built in code.

        Raises:
            ValueError: on an unknown key (the message suggests the nearest known one) or an
                invalid value.
        """
        known = {field.name: field for field in dataclasses.fields(cls)}
        unknown = [key for key in mapping if key not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown feature spec key(s): {', '.join(hints)}; allowed: {', '.join(known)}")
        return cls(**dict(mapping))

    def definition(self) -> dict[str, Any]:
        """Return everything that defines the feature matrix, as plain JSON data.

        Holds every parameter and :data:`FEATURE_CODE_VERSION`; :attr:`hash` is taken over it.
        """
        parameters = {
            field.name: list(value) if isinstance(value := getattr(self, field.name), tuple) else value
            for field in dataclasses.fields(self)
        }
        return {"feature_code_version": FEATURE_CODE_VERSION, "spec": parameters}

    @property
    def hash(self) -> str:
        """The SHA-256 (hex) of the canonical JSON of :meth:`definition`."""
        return content_hash(self.definition())


def _problems(spec: FeatureSpec) -> list[str]:
    """Return what is wrong with ``spec``, one message per problem."""
    problems: list[str] = []
    expected_types: dict[str, type | tuple[type, ...]] = {
        "name": str,
        "version": str,
        "leader_symbol": str,
        "bollinger_deviations": (int, float),
        "volume_profile_value_area": (int, float),
        "regime_adx_trend": (int, float),
        "regime_high_volatility_percentile": (int, float),
        "regime_bollinger_width_max": (int, float),
    }
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        if isinstance(value, tuple):
            if not value:
                problems.append(f"{field.name} must not be empty")
            kind: type = str if field.name == "higher_timeframes" else int
            if any(isinstance(item, bool) or not isinstance(item, kind) for item in value):
                problems.append(f"{field.name} must hold {kind.__name__} values, got {value!r}")
            elif kind is int and any(item < 1 for item in value):
                problems.append(f"{field.name} must be positive, got {value!r}")
            elif len(set(value)) != len(value):
                problems.append(f"{field.name} has duplicates: {value!r}")
        elif field.name in expected_types:
            if isinstance(value, bool) or not isinstance(value, expected_types[field.name]):
                problems.append(f"{field.name} has the wrong type: {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{field.name} must be a positive integer, got {value!r}")
    if problems:
        return problems
    if 1 not in spec.return_horizons:
        problems.append("return_horizons must include 1 (one-row returns)")
    missing = [h for h in spec.relative_strength_horizons if h not in spec.return_horizons]
    if missing:
        problems.append(f"relative_strength_horizons {missing} are not among return_horizons")
    if spec.macd_fast >= spec.macd_slow:
        problems.append("macd_fast must be shorter than macd_slow")
    if min(spec.volatility_windows) < 2:
        problems.append("volatility_windows must be at least 2 rows")
    if spec.skew_window < 3:
        problems.append("skew_window must be at least 3 rows")
    if not 0.0 < spec.volume_profile_value_area <= 1.0:
        problems.append("volume_profile_value_area must be in (0, 1]")
    if not 0.0 < spec.regime_high_volatility_percentile <= 1.0:
        problems.append("regime_high_volatility_percentile must be in (0, 1]")
    if spec.bollinger_deviations <= 0 or spec.regime_bollinger_width_max <= 0:
        problems.append("bollinger_deviations and regime_bollinger_width_max must be positive")
    if spec.regime_atr_min_periods > spec.regime_atr_window:
        problems.append("regime_atr_min_periods must not exceed regime_atr_window")
    for timeframe in spec.higher_timeframes:
        try:
            if timeframe_ms(timeframe) <= MINUTE_MS:
                problems.append(f"higher timeframe {timeframe!r} is not above 1m")
        except ValueError as error:
            problems.append(str(error))
    return problems
