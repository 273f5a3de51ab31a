"""Typed, frozen configuration: one TOML file, overridable by environment variables.

Load it with :func:`load_settings`. Every section forbids unknown keys, so a typo fails at
start-up with a message that names the key and lists what is allowed. ``Settings.config_hash``
is the SHA-256 of the canonical JSON of the whole config; later stages record it in MLflow and
the audit chain so any result can be tied to the exact config that produced it.

Environment overrides use the prefix ``TRADEFLOW_`` and ``__`` between nested keys, e.g.
``TRADEFLOW_STORAGE__URL=s3://bucket/lake`` or ``TRADEFLOW_SIMULATOR__FAULT_PROFILE=chaos``.
Credentials never live in the file: a venue names the environment variables that hold them.
"""

from __future__ import annotations

import difflib
import os
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tradeflow.canonical import content_hash
from tradeflow.timeframes import SUPPORTED_TIMEFRAMES, to_ms

#: The config file read when neither ``--config`` nor ``TRADEFLOW_CONFIG`` names one.
DEFAULT_CONFIG_FILE = "tradeflow.toml"

FaultProfileName = Literal["clean", "chaos", "dirty", "down"]


class ConfigError(ValueError):
    """A config that cannot be used; the message names each offending key and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StorageConfig(_Section):
    """Where data lives."""

    url: str = Field(
        default="data/lake",
        description="A local folder (relative paths resolve against the working directory) "
        "or s3://bucket/prefix.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Custom S3 endpoint (MinIO, a moto server); None for AWS itself.",
    )
    s3_server_side_encryption: Literal["AES256", "aws:kms", "none"] = Field(
        default="AES256", description="Server-side encryption for every object written to S3."
    )

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError("use a local folder path, file://PATH or s3://bucket/prefix")
        if value.startswith("s3://") and not value[len("s3://") :].split("/")[0]:
            raise ValueError("an s3:// URL needs a bucket name: s3://bucket/prefix")
        return value


class HistoryConfig(_Section):
    """Which window of candles to hold."""

    days: int = Field(default=90, ge=1, le=3650, description="Default look-back in days.")
    days_by_timeframe: dict[str, int] = Field(
        default_factory=dict, description="Per-timeframe look-back in days, e.g. {'1h': 90}."
    )
    end: datetime | None = Field(
        default=None,
        description="Pin the window's end (ISO-8601 with a zone, e.g. 2026-11-01T00:00:00Z); "
        "None means now. Pinning makes two runs fetch exactly the same candles.",
    )

    @field_validator("days_by_timeframe")
    @classmethod
    def _known_timeframes(cls, value: dict[str, int]) -> dict[str, int]:
        for timeframe, days in value.items():
            if timeframe not in SUPPORTED_TIMEFRAMES:
                raise ValueError(
                    f"unknown timeframe {timeframe!r}; allowed: {', '.join(SUPPORTED_TIMEFRAMES)}"
                )
            if days < 1:
                raise ValueError(f"days for {timeframe!r} must be at least 1")
        return value

    @field_validator("end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2026-11-01T00:00:00Z")
        return value

    def days_for(self, timeframe: str) -> int:
        """Return the look-back in days for one timeframe."""
        return self.days_by_timeframe.get(timeframe, self.days)

    def end_ms(self) -> int | None:
        """Return the pinned window end in UTC milliseconds, or None for "now"."""
        return None if self.end is None else to_ms(self.end)


class RetryConfig(_Section):
    """How a failed exchange request is retried before its venue is marked failed."""

    max_attempts: int = Field(default=6, ge=1, le=50, description="Tries per request, first included.")
    base_delay_seconds: float = Field(
        default=0.25, gt=0, description="Delay before the first retry; doubles each retry."
    )
    max_delay_seconds: float = Field(default=10.0, gt=0, description="Cap on one backoff delay.")
    jitter: float = Field(
        default=0.5, ge=0, le=1, description="Random spread of each delay, as a fraction of it."
    )
    max_retry_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest Retry-After an exchange may impose before the venue is given up.",
    )


class SimulatedVenueConfig(_Section):
    """How the local simulator serves one venue (only for venues with ``simulated = true``)."""

    seed: int = Field(description="Seed of this venue's price noise, holes and fault schedule.")
    fault_profile: FaultProfileName | None = Field(
        default=None,
        description="clean | chaos (transport faults) | dirty (data faults) | down; "
        "None uses [simulator].fault_profile.",
    )
    latency_ms: float = Field(default=0.0, ge=0, description="Mean added latency per request.")
    noise_bps: float = Field(default=3.0, ge=0, description="Price noise around the true price.")
    bias_bps: float = Field(default=0.0, description="Constant price offset from the true price.")
    drift_bps_per_day: float = Field(
        default=0.0,
        description="A drifting venue: extra offset growing by this many bps a day, from 30 days "
        "before today (cross-venue validation should catch it).",
    )
    weight_limit_per_minute: int = Field(
        default=6000, ge=1, description="Binance-style request-weight budget the venue enforces."
    )
    hole_rate: float | None = Field(
        default=None, ge=0, le=1, description="Override the profile: probability a 1m candle is missing."
    )
    spike_rate: float | None = Field(
        default=None, ge=0, le=1, description="Override the profile: probability a 1m candle spikes."
    )
    stale_rate: float | None = Field(
        default=None, ge=0, le=1, description="Override the profile: probability an hour is frozen."
    )


class VenueConfig(_Section):
    """One exchange (or local simulated exchange) to ingest from."""

    id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
        description="Short unique name; used in storage paths (lowercase, digits, - and _).",
    )
    exchange: str = Field(default="binance", description="A ccxt exchange id.")
    base_url: str | None = Field(
        default=None,
        description="Override the API origin (testnet, proxy); filled in for simulated venues.",
    )
    simulated: bool = Field(default=False, description="Serve this venue from the local simulator (offline).")
    simulator: SimulatedVenueConfig | None = Field(
        default=None, description="Simulator settings; required when simulated = true."
    )
    symbols: list[str] | None = Field(
        default=None, description="Symbols to ingest here; None means every configured symbol."
    )
    weight_per_minute: int = Field(
        default=3000,
        ge=1,
        description="Client-side request-weight budget shared by all concurrent tasks on this venue.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout.")
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key."
    )
    secret_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API secret."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Extra ccxt options merged over tradeflow's defaults."
    )
    maker_fee: float = Field(default=0.001, ge=0, lt=0.1, description="Fee rate of resting limit orders.")
    taker_fee: float = Field(default=0.001, ge=0, lt=0.1, description="Fee rate of market and stop orders.")

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        import ccxt  # local: only validation needs the list of ids

        if value not in ccxt.exchanges:
            close = difflib.get_close_matches(value, ccxt.exchanges, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(
                f"unknown ccxt exchange id {value!r}; {hint}ccxt knows {len(ccxt.exchanges)} ids "
                "(python -c 'import ccxt; print(ccxt.exchanges)')"
            )
        return value

    @model_validator(mode="after")
    def _simulator_settings(self) -> VenueConfig:
        if self.simulated and self.simulator is None:
            raise ValueError("simulated = true needs a [venues.simulator] table with at least seed")
        if self.simulated and self.exchange != "binance":
            raise ValueError("the simulator speaks the Binance spot API: use exchange = 'binance'")
        return self


class SimulatedSymbolConfig(_Section):
    """How the simulator prices one symbol."""

    symbol: str = Field(description="Unified symbol, e.g. BTC/USDT.")
    base_price: float = Field(gt=0, description="Starting price level.")
    annual_volatility: float = Field(default=0.6, gt=0, description="Annualised volatility.")
    tick_size: float = Field(gt=0, description="Price increment (Binance PRICE_FILTER).")
    step_size: float = Field(gt=0, description="Quantity increment (Binance LOT_SIZE).")
    min_notional: float = Field(default=5.0, ge=0, description="Minimum order value.")
    replay: str | None = Field(
        default=None,
        description="Replay a real candle file (path under real_data_dir) instead of a seeded random walk.",
    )


def _default_simulated_symbols() -> list[SimulatedSymbolConfig]:
    return [
        SimulatedSymbolConfig(symbol="BTC/USDT", base_price=60_000.0, annual_volatility=0.55,
                              tick_size=0.01, step_size=0.00001, min_notional=5.0),
        SimulatedSymbolConfig(symbol="ETH/USDT", base_price=3_000.0, annual_volatility=0.7,
                              tick_size=0.01, step_size=0.0001, min_notional=5.0),
        SimulatedSymbolConfig(symbol="SOL/USDT", base_price=150.0, annual_volatility=0.9,
                              tick_size=0.01, step_size=0.001, min_notional=5.0),
    ]  # fmt: skip


class SimulatorConfig(_Section):
    """The local venue simulator: the offline default."""

    world_seed: int = Field(default=7, description="Seed of the shared 'true' price paths.")
    fault_profile: FaultProfileName = Field(
        default="clean", description="Fault profile for venues that do not set their own."
    )
    mode: Literal["process", "thread"] = Field(
        default="process",
        description="Run the venues in a child process (keeps them off the pipeline's GIL) or in a thread.",
    )
    symbols: list[SimulatedSymbolConfig] = Field(
        default_factory=_default_simulated_symbols, description="Symbols every venue lists."
    )


def _default_venues() -> list[VenueConfig]:
    return [
        VenueConfig(id=f"sim-{name}", simulated=True,
                    simulator=SimulatedVenueConfig(seed=seed, bias_bps=bias, latency_ms=2.0))
        for name, seed, bias in (("alpha", 11, 0.0), ("beta", 22, 4.0), ("gamma", 33, -3.0))
    ]  # fmt: skip


class IngestConfig(_Section):
    """What to ingest."""

    symbols: list[str] = Field(
        default_factory=lambda: ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
        min_length=1,
        description="Unified ccxt symbols.",
    )
    timeframes: list[str] = Field(
        default_factory=lambda: ["1m", "1h"], min_length=1, description="Candle timeframes."
    )
    page_limit: int = Field(
        default=1000, ge=1, le=1000, description="Candles per request (Binance allows 1000)."
    )
    order_book_depth: int = Field(
        default=100, ge=0, le=5000, description="Levels per side per snapshot; 0 turns it off."
    )
    trades_limit: int = Field(
        default=500, ge=0, le=1000, description="Recent trades per snapshot; 0 turns it off."
    )
    max_concurrency: int = Field(
        default=8, ge=1, le=64, description="Concurrent ingestion tasks across all venues."
    )
    series_timeout_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="Give a series up (status failed) once fetching it has taken this long; "
        "checked between requests, each of which has the venue's own timeout.",
    )

    @field_validator("timeframes")
    @classmethod
    def _known_timeframes(cls, value: list[str]) -> list[str]:
        for timeframe in value:
            if timeframe not in SUPPORTED_TIMEFRAMES:
                raise ValueError(
                    f"unknown timeframe {timeframe!r}; allowed: {', '.join(SUPPORTED_TIMEFRAMES)}"
                )
        return value

    @field_validator("symbols")
    @classmethod
    def _unified_symbols(cls, value: list[str]) -> list[str]:
        for symbol in value:
            if symbol.count("/") != 1 or symbol != symbol.upper():
                raise ValueError(f"symbol {symbol!r} is not a unified ccxt symbol like 'BTC/USDT'")
        return value


CheckPolicy = Literal["fail", "warn", "ignore"]

#: Every validation check by name, with its default policy. ``fail`` quarantines the batch,
#: ``warn`` keeps it and flags it in the report, ``ignore`` skips the check.
DEFAULT_CHECK_POLICIES: dict[str, CheckPolicy] = {
    # candles
    "columns": "fail",
    "dtypes": "fail",
    "not_null": "fail",
    "high_covers_body": "fail",
    "low_covers_body": "fail",
    "positive_low": "fail",
    "non_negative_volume": "fail",
    "unique_timestamps": "fail",
    "increasing_timestamps": "fail",
    "aligned_timestamps": "fail",
    "completeness": "warn",
    "price_spikes": "warn",
    "volume_anomalies": "warn",
    "staleness": "fail",
    "frozen_prices": "warn",
    # cross-venue
    "cross_venue_discrepancy": "fail",
    # order books
    "book_sides": "fail",
    "bids_descending": "fail",
    "asks_ascending": "fail",
    "book_not_crossed": "fail",
    "book_positive": "fail",
    "spread_within_bounds": "warn",
    # trades
    "trade_ids_unique": "fail",
    "trade_not_null": "fail",
    "trade_positive": "fail",
    "trade_sides": "fail",
}


class ValidationConfig(_Section):
    """How ingested batches are validated, and what a failed check does."""

    spike_threshold: float = Field(
        default=0.10, gt=0, le=10, description="A close-to-close move above this fraction is a spike."
    )
    spike_confirmation: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A spike is confirmed when the other venues' median move has the same sign and "
        "at least this fraction of the threshold.",
    )
    volume_zscore: float = Field(
        default=3.0, gt=0, description="A volume whose robust z-score exceeds this is an anomaly."
    )
    volume_window: int = Field(
        default=60, ge=5, le=10_000, description="Rolling window (candles) of the volume z-score."
    )
    volume_anomaly_max_fraction: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="The volume check fails when more than this fraction of candles are anomalies "
        "(each one is reported either way; crypto volume is heavy-tailed).",
    )
    staleness_candles: int = Field(
        default=3,
        ge=1,
        description="The last candle may close at most this many candles before the batch's as-of "
        "time (the ingest run's window end).",
    )
    frozen_minutes: int = Field(
        default=30,
        ge=1,
        description="A run of flat candles at an unchanged price lasting this long (at least 3 "
        "candles) is a frozen feed.",
    )
    discrepancy_threshold: float = Field(
        default=0.005,
        gt=0,
        description="A venue's close further than this from the venues' median flags that venue and candle.",
    )
    discrepancy_max_fraction: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="The cross-venue check fails a venue's batch when more than this fraction of "
        "its candles are flagged.",
    )
    min_venues_for_discrepancy: int = Field(
        default=3,
        ge=2,
        description="Venues needed at a candle to tell which one is off (with two, neither is).",
    )
    max_spread: float = Field(
        default=0.02, gt=0, description="Largest order book spread, as a fraction of the mid price."
    )
    consensus: Literal["median", "volume_weighted"] = Field(
        default="median", description="How curated candles combine the venues that passed."
    )
    policies: dict[str, CheckPolicy] = Field(
        default_factory=dict,
        description="Policy per check (fail | warn | ignore); unlisted checks keep their default.",
    )

    @field_validator("policies")
    @classmethod
    def _known_checks(cls, value: dict[str, CheckPolicy]) -> dict[str, CheckPolicy]:
        for name in value:
            if name not in DEFAULT_CHECK_POLICIES:
                close = difflib.get_close_matches(name, DEFAULT_CHECK_POLICIES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown check {name!r}{hint}; checks: {', '.join(DEFAULT_CHECK_POLICIES)}")
        return value

    def policy(self, check: str) -> CheckPolicy:
        """Return the policy of one check."""
        return self.policies.get(check, DEFAULT_CHECK_POLICIES[check])


class FeaturesConfig(_Section):
    """Which feature set is built from a snapshot's curated candles."""

    name: str = Field(default="default", description="Feature set name (recorded with its hash).")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the feature set's parameters (periods, windows, timeframes ...); "
        "`tradeflow features show` lists them. Any change gives a new feature set hash.",
    )


ModelName = Literal["lightgbm", "logistic", "random_forest"]


def _default_models() -> list[ModelName]:
    return ["lightgbm", "logistic", "random_forest"]


class TrainingConfig(_Section):
    """Labels, walk-forward evaluation, models and promotion."""

    target: str = Field(
        default="direction_4h", description="Prediction target; one MLflow experiment per target."
    )
    label: Literal["direction", "triple_barrier"] = Field(
        default="direction",
        description="direction: sign of the forward return net of fees; "
        "triple_barrier: take-profit, stop or time.",
    )
    horizon_minutes: int = Field(default=240, ge=1, description="Label horizon (default 4 h).")
    fee_rate: float = Field(default=0.001, ge=0, lt=0.1, description="Fee per side, as a fraction.")
    take_profit: float = Field(default=0.02, gt=0, description="Triple barrier: take-profit move.")
    stop_loss: float = Field(default=0.01, gt=0, description="Triple barrier: stop move.")
    folds: int = Field(default=4, ge=2, le=50, description="Walk-forward test folds.")
    window: Literal["expanding", "sliding"] = Field(default="expanding", description="Training window.")
    embargo_minutes: int = Field(
        default=60, ge=0, description="Embargo between training data and each test fold, beyond purging."
    )
    row_step: int = Field(
        default=15, ge=1, description="Train on every N-th minute (1m rows overlap heavily at a 4 h horizon)."
    )
    models: list[ModelName] = Field(
        default_factory=_default_models,
        min_length=1,
        description="Models trained side by side.",
    )
    calibration_fraction: float = Field(
        default=0.2, gt=0, lt=0.5, description="Last part of each training fold held out to calibrate."
    )
    promotion_metric: Literal["roc_auc", "log_loss", "brier", "sharpe"] = Field(
        default="roc_auc", description="Out-of-sample metric a challenger must beat the champion on."
    )
    promotion_margin: float = Field(
        default=0.005, ge=0, description="By how much (absolute) the challenger must beat the champion."
    )
    live_hit_rate_floor: float = Field(
        default=0.55, ge=0, le=1, description="A model whose live hit rate falls below this is flagged."
    )
    live_window: int = Field(default=200, ge=10, description="Live predictions the hit rate is taken over.")
    auto_disable: bool = Field(default=True, description="Disable a flagged model automatically.")


FeatureFamily = Literal["ml", "multi_timeframe", "volume_profile", "regime", "adaptive_thresholds"]
_ALL_FAMILIES: list[FeatureFamily] = [
    "ml",
    "multi_timeframe",
    "volume_profile",
    "regime",
    "adaptive_thresholds",
]


class StrategyConfig(_Section):
    """Signals, allocation, exits and protections: shared by the backtest and the streaming flow."""

    families: list[FeatureFamily] = Field(
        default_factory=lambda: list(_ALL_FAMILIES),
        description="Feature families in use; drop one to switch it off (the rest keeps working).",
    )
    long_threshold: float = Field(default=0.55, gt=0.5, lt=1, description="Base probability to go long.")
    short_threshold: float = Field(default=0.45, gt=0, lt=0.5, description="Base probability to go short.")
    allow_short: bool = Field(default=False, description="Produce short signals (spot venues: no).")
    threshold_sensitivity: float = Field(
        default=0.10, ge=0, le=0.5,
        description="Threshold move between the 0th and 100th ATR percentile over 30 days.",
    )  # fmt: skip
    long_threshold_bounds: tuple[float, float] = Field(
        default=(0.52, 0.65), description="The adaptive long threshold stays within these."
    )
    short_threshold_bounds: tuple[float, float] = Field(
        default=(0.35, 0.48), description="The adaptive short threshold stays within these."
    )
    value_area_extension: float = Field(
        default=0.01, ge=0, description="How far beyond the volume profile's value area an entry may be."
    )
    signal_cooldown_minutes: int = Field(
        default=60, ge=0, description="A symbol's repeated direction within this long is suppressed."
    )
    target_volatility: float = Field(default=0.20, gt=0, description="Annualised volatility per position.")
    max_symbol_weight: float = Field(default=0.40, gt=0, le=1, description="Cap on one symbol's weight.")
    correlation_threshold: float = Field(
        default=0.70, gt=0, lt=1, description="Symbols correlated above this (30 days) form a group."
    )
    correlated_group_weight: float = Field(
        default=0.50, gt=0, le=1, description="Cap on a correlated group's total weight."
    )
    risk_budget: float = Field(
        default=0.25, gt=0, description="Cap on the portfolio's annualised volatility."
    )
    max_gross_weight: float = Field(default=1.0, gt=0, le=1, description="Cap on total weight (no leverage).")
    volatile_regime_factor: float = Field(
        default=0.5, ge=0, le=1, description="Size multiplier in the VOLATILE regime."
    )
    correlation_window_days: float = Field(default=30.0, gt=0, description="Look-back of the correlations.")
    stop_atr: float = Field(default=2.0, gt=0, description="Initial stop, in ATRs from the entry.")
    take_profit_atr: list[float] = Field(
        default_factory=lambda: [1.5, 3.0, 5.0], description="Partial take-profit levels, in ATRs."
    )
    take_profit_fractions: list[float] = Field(
        default_factory=lambda: [1 / 3, 1 / 3, 1 / 3],
        description="Share of the opening quantity each take-profit closes (the last closes the rest).",
    )
    breakeven_atr: float = Field(
        default=2.0, ge=0, description="Move, in ATRs, after which the stop is at entry."
    )
    trailing_atr: float = Field(default=3.0, ge=0, description="Trailing stop distance in ATRs (0 = off).")
    time_exit_minutes: int = Field(default=24 * 60, ge=0, description="Close a position after this long.")
    regime_exit: bool = Field(default=True, description="Close a position when the regime turns against it.")
    max_drawdown: float = Field(default=0.20, ge=0, lt=1, description="Drawdown that halts trading.")
    daily_loss_limit: float = Field(default=0.05, ge=0, lt=1, description="Day's loss that pauses entries.")
    stop_guard_count: int = Field(default=3, ge=0, description="Stops within the window that pause entries.")
    stop_guard_window_minutes: int = Field(default=360, ge=1, description="Window of the stop-loss guard.")
    stop_guard_pause_minutes: int = Field(
        default=120, ge=0, description="Pause after the stop-loss guard trips."
    )
    cooldown_minutes: int = Field(
        default=30, ge=0, description="No re-entry in a symbol this long after an exit."
    )

    @model_validator(mode="after")
    def _consistent(self) -> StrategyConfig:
        if len(self.take_profit_atr) != len(self.take_profit_fractions):
            raise ValueError("take_profit_atr and take_profit_fractions must have the same length")
        for name in ("long_threshold_bounds", "short_threshold_bounds"):
            low, high = getattr(self, name)
            if not 0 < low <= high < 1:
                raise ValueError(f"{name}: need 0 < low <= high < 1, got ({low}, {high})")
        return self


class BacktestSection(_Section):
    """How the backtest trades and what it reports."""

    initial_equity: float = Field(default=100_000.0, gt=0, description="Starting cash (quote currency).")
    decision_minutes: int | None = Field(
        default=None, ge=1, description="Minutes between decisions; default: training.row_step."
    )
    latency_ms: int = Field(default=0, ge=0, description="Decision-to-venue delay; fills come no earlier.")
    participation: float = Field(
        default=0.10, gt=0, le=1, description="Largest share of a bar's volume one symbol may take."
    )
    order_timeout_bars: int = Field(default=5, ge=1, description="Bars a market order may wait for volume.")
    venue: str | None = Field(default=None, description="Whose fees apply; default: the first venue.")
    half_spread: float = Field(
        default=0.0001, ge=0, description="Half spread without stored order books (fraction)."
    )
    impact_coefficient: float = Field(
        default=0.1, ge=0, description="Square-root impact coefficient without stored order books."
    )
    monte_carlo_scenarios: int = Field(default=10_000, ge=100, description="Monte Carlo scenarios.")
    monte_carlo_block_minutes: int = Field(
        default=60, ge=1, description="Returns are bootstrapped per this many minutes, in blocks of 24."
    )
    ablation: bool = Field(default=True, description="Also run with each feature family switched off.")


class LedgerConfig(_Section):
    """The SQL ledger of orders, fills, positions, balances and risk events."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host:5432/tradeflow; "
        "default: SQLite at <data_dir>/ledger.db.",
    )


class ExecutionConfig(_Section):
    """The streaming execution flow: venue, mode, pre-trade risk limits, operations."""

    mode: Literal["paper", "live", "staging"] = Field(
        default="paper",
        description="paper: fills simulated against the live book; live: real orders at the venue; "
        "staging: decisions recorded, nothing sent.",
    )
    venue: str | None = Field(default=None, description="Venue id to trade on; default: the first venue.")
    symbols: list[str] | None = Field(
        default=None, description="Symbols to trade; default: [ingest] symbols."
    )
    strategy: Literal["champion", "churn"] = Field(
        default="champion",
        description="champion: the signal, allocation and exit code with the serving model; churn: an "
        "exercise mode that alternates small positions to test the order path (not a strategy).",
    )
    churn_seconds: float = Field(default=5.0, gt=0, description="Churn mode: seconds between target changes.")
    churn_notional: float = Field(
        default=200.0, gt=0, description="Churn mode: position size, in quote currency."
    )
    on_shutdown: Literal["cancel", "keep"] = Field(
        default="cancel", description="On a graceful stop: cancel open orders, or keep them at the venue."
    )
    kill_switch_file: Path = Field(
        default=Path("KILL_SWITCH"),
        description="While this file exists trading is HALTED (relative paths: under data_dir).",
    )
    reconcile_seconds: float = Field(
        default=30.0, gt=0, description="Reconcile with the venue this often (and always on start)."
    )
    health_host: str = Field(default="127.0.0.1", description="Address of /healthz and /metrics.")
    health_port: int = Field(
        default=9464, ge=0, le=65535, description="Port of /healthz and /metrics; 0 = any."
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="POST a JSON alert here on a halt, repeated resyncs or reconciliation differences.",
    )
    resync_alert_count: int = Field(
        default=3, ge=1, description="Alert when a symbol resyncs this many times within 5 minutes."
    )
    stale_book_seconds: float = Field(
        default=5.0, gt=0, description="A book without updates this long resyncs."
    )
    paper_latency_ms: float = Field(default=20.0, ge=0, description="Paper broker: delay before a fill.")
    paper_balances: dict[str, float] = Field(
        default_factory=lambda: {"USDT": 100_000.0}, description="Paper broker: starting balances."
    )
    order_timeout_seconds: float = Field(default=5.0, gt=0, description="Order request timeout.")
    max_order_notional: float = Field(
        default=25_000.0, gt=0, description="Largest single order, quote currency."
    )
    max_position_notional: float = Field(default=50_000.0, gt=0, description="Largest position per symbol.")
    max_gross_exposure: float = Field(
        default=1.0, gt=0, description="Gross exposure cap, as a share of equity."
    )
    price_collar: float = Field(
        default=0.01, gt=0, lt=1, description="Limit price at most this far through the book."
    )
    max_orders_per_minute: int = Field(default=30, ge=1, description="Order rate limit.")


NotificationEvent = Literal["flow_run_failed", "batch_quarantined", "risk_halt", "audit_verify_failed"]


class NotificationsConfig(_Section):
    """Where a failed run, a quarantined batch, a risk halt or a failed audit verify is reported."""

    channel: Literal["webhook", "slack", "email"] = Field(
        default="webhook",
        description="webhook: POST a JSON document to webhook_url; slack: a Slack incoming webhook; "
        "email: an SMTP server.",
    )
    webhook_url: str | None = Field(
        default=None, description="The webhook (or Slack incoming webhook) URL; unset = notifications off."
    )
    events: list[NotificationEvent] = Field(
        default_factory=lambda: list(get_args(NotificationEvent)), description="Which events notify."
    )
    smtp_host: str | None = Field(default=None, description="email: SMTP server host; unset = off.")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="email: SMTP server port.")
    smtp_starttls: bool = Field(default=True, description="email: upgrade the connection with STARTTLS.")
    smtp_username_env: str | None = Field(
        default=None, description="email: environment variable holding the SMTP user name."
    )
    smtp_password_env: str | None = Field(
        default=None, description="email: environment variable holding the SMTP password."
    )
    email_from: str | None = Field(default=None, description="email: the sender address.")
    email_to: list[str] = Field(default_factory=list, description="email: the recipients.")


class OrchestrationConfig(_Section):
    """How flows run their tasks, and the limits deployments share."""

    task_runner: Literal["threads", "dask"] = Field(
        default="threads",
        description="threads: a thread pool in the flow's process; dask: Prefect's Dask task runner "
        "(a local multi-process cluster, or dask_address).",
    )
    dask_address: str | None = Field(
        default=None, description="A running Dask scheduler, e.g. tcp://dask-scheduler:8786; unset = local."
    )
    dask_workers: int = Field(default=2, ge=1, le=256, description="Local Dask cluster: worker processes.")
    dask_threads_per_worker: int = Field(
        default=4, ge=1, le=64, description="Local Dask cluster: threads per worker process."
    )
    schedules: dict[str, str] = Field(
        default_factory=dict,
        description="Override a deployment's schedule from prefect.yaml: "
        '{ "ingest-market-data/every-minute" = "*/5 * * * *" }; "off" pauses it.',
    )
    venue_limits: bool = Field(
        default=True,
        description="Share each venue's request-weight budget across flow runs through a Prefect "
        "global concurrency limit named venue-<id> (created by tradeflow serve / deploy).",
    )


class MlflowConfig(_Section):
    """Experiment tracking and the model registry."""

    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default sqlite:///<data_dir>/mlflow.db "
        "(a server URL in production).",
    )
    artifact_location: str | None = Field(
        default=None, description="Where new experiments keep artifacts; default <data_dir>/mlartifacts."
    )
    registered_model: str = Field(
        default="tradeflow-{target}", description="Registered model name; {target} is the training target."
    )


class AuditConfig(_Section):
    """The hash-chained audit log and its signed checkpoints."""

    mode: Literal["embedded", "production"] = Field(
        default="embedded",
        description="embedded: a local signing key is generated under data_dir/audit if none is given. "
        "production: a missing signing key is an error.",
    )
    checkpoint_every: int = Field(
        default=1000,
        ge=1,
        description="Sign a checkpoint every this many entries (and at the end of every flow run).",
    )
    checkpoint_url: str | None = Field(
        default=None,
        description="Where checkpoints go: a folder or s3://bucket/prefix (on S3, a bucket with Object "
        "Lock). Default: audit/checkpoints/ in the main store.",
    )
    object_lock_days: int = Field(
        default=0,
        ge=0,
        description="Write checkpoints under S3 Object Lock (compliance mode), retained this many days; "
        "0 = off.",
    )
    signing_key_env: str = Field(
        default="TRADEFLOW_AUDIT_SIGNING_KEY",
        description="Environment variable holding the Ed25519 signing key (base64 of 32 bytes, or PEM).",
    )
    signing_key_block: str | None = Field(
        default=None, description="Name of a Prefect Secret block holding the signing key (used by flows)."
    )
    public_keys: list[str] = Field(
        default_factory=list,
        description="Trusted checkpoint public keys (base64 of 32 bytes) for `audit verify`, besides "
        "the local key.",
    )

    @field_validator("checkpoint_url")
    @classmethod
    def _checkpoint_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError("use a local folder path, file://PATH or s3://bucket/prefix")
        return value


class Settings(BaseSettings):
    """The whole tradeflow configuration."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="TRADEFLOW_",
        env_nested_delimiter="__",
        toml_file=None,
    )

    data_dir: Path = Field(
        default=Path("data"),
        description="Local working folder: Prefect's home and database, reports, the default lake.",
    )
    real_data_dir: Path = Field(
        default=Path("../shared/data/real"),
        description="Recorded real market data used by tests, benchmarks and replay.",
    )
    storage: StorageConfig = Field(default_factory=StorageConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    backtest: BacktestSection = Field(default_factory=BacktestSection)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    venues: list[VenueConfig] = Field(default_factory=_default_venues, min_length=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read explicit arguments first, then the environment, then the TOML file."""
        # Precedence: explicit arguments, then the environment, then the TOML file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _CONFIG_FILE_IN_USE.get("path")
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        ids = [venue.id for venue in self.venues]
        duplicated = sorted({venue_id for venue_id in ids if ids.count(venue_id) > 1})
        if duplicated:
            raise ValueError(f"venues: ids must be unique; repeated: {', '.join(duplicated)}")
        simulated_symbols = {spec.symbol for spec in self.simulator.symbols}
        for index, venue in enumerate(self.venues):
            for symbol in venue.symbols or []:
                if symbol not in self.ingest.symbols:
                    raise ValueError(
                        f"venues[{index}].symbols: {symbol!r} is not in ingest.symbols "
                        f"({', '.join(self.ingest.symbols)})"
                    )
            if venue.simulated:
                missing = [s for s in venue.symbols or self.ingest.symbols if s not in simulated_symbols]
                if missing:
                    raise ValueError(
                        f"venues[{index}] ({venue.id}) is simulated but the simulator does not list "
                        f"{', '.join(missing)}; add them under [[simulator.symbols]] "
                        f"(listed: {', '.join(sorted(simulated_symbols))})"
                    )
        return self

    @cached_property
    def config_hash(self) -> str:
        """Return the SHA-256 of the canonical JSON of this config (stable across runs)."""
        return content_hash(self.model_dump(mode="json"))

    def venue(self, venue_id: str) -> VenueConfig:
        """Return the venue with this id.

        Raises:
            KeyError: naming the venues that exist.
        """
        for venue in self.venues:
            if venue.id == venue_id:
                return venue
        raise KeyError(f"no venue {venue_id!r}; configured: {', '.join(v.id for v in self.venues)}")

    def venue_symbols(self, venue: VenueConfig) -> list[str]:
        """Return the symbols to ingest from one venue."""
        return list(venue.symbols) if venue.symbols is not None else list(self.ingest.symbols)


# The TOML path is passed to the source hook through this holder: pydantic-settings builds
# sources from the class, and a per-call file must not become a global default.
_CONFIG_FILE_IN_USE: dict[str, Path | None] = {"path": None}


def resolve_config_path(path: str | Path | None) -> Path | None:
    """Return the config file to read.

    That is the argument, else ``$TRADEFLOW_CONFIG``, else ``./tradeflow.toml`` if it exists,
    else None (the built-in defaults).
    """
    if path is not None:
        return Path(path)
    from_env = os.environ.get("TRADEFLOW_CONFIG")
    if from_env:
        return Path(from_env)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load and validate the configuration.

    Args:
        path: A TOML file; see :func:`resolve_config_path` for the default.
        **overrides: Top-level values that win over the file and the environment.

    Raises:
        ConfigError: naming every bad key, what was given, and what is allowed.
    """
    config_path = resolve_config_path(path)
    if config_path is not None and not config_path.is_file():
        raise ConfigError(f"config file {config_path} does not exist (from --config or TRADEFLOW_CONFIG)")
    _CONFIG_FILE_IN_USE["path"] = config_path
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error, config_path)) from None
    except ValueError as error:  # a TOML syntax error surfaces as a ValueError subclass
        raise ConfigError(f"config file {config_path}: {error}") from None
    finally:
        _CONFIG_FILE_IN_USE["path"] = None


def _describe(error: ValidationError, config_path: Path | None) -> str:
    source = f"config file {config_path}" if config_path else "built-in defaults and environment"
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        key = _key(item["loc"])
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(item["loc"][:-1])
            hint = difflib.get_close_matches(str(item["loc"][-1]), allowed, n=1)
            lines.append(
                f"  - {key}: unknown key"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
            )
            continue
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        lines.append(f"  - {key or '(top level)'}: {message}{shown}")
    lines.append("Environment overrides use TRADEFLOW_<SECTION>__<KEY>; see tradeflow.toml.")
    return "\n".join(lines)


def _key(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1 if parts else 0 :] = [f"{parts[-1] if parts else ''}[{part}]"]
        else:
            parts.append(part)
    return ".".join(parts)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            for candidate in candidates:  # list[Model]
                inner = getattr(candidate, "__args__", ())
                model = next((c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)), None)
                if model is not None:
                    break
        if model is None:
            return []
    return sorted(model.model_fields)
