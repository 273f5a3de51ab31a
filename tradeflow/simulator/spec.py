"""Declarative description of a simulated exchange cluster.

Everything the simulator serves is a pure function of these specs (plus the wall clock for
"now"), so a spec is all a test needs to rebuild the exact data a venue served.
"""

from __future__ import annotations

import time
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY_MS = 86_400_000

__all__ = [
    "FAULT_PROFILES",
    "ClusterSpec",
    "DataFaults",
    "OutageWindow",
    "SymbolSpec",
    "TransportFaults",
    "VenueSpec",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SymbolSpec(_Frozen):
    """One spot market listed on the cluster's venues."""

    symbol: str = Field(description='Unified ccxt symbol "BASE/QUOTE", e.g. "BTC/USDT".')
    base_price: float = Field(
        gt=0,
        description="Price level the random walk wanders around; the first price of a replay.",
    )
    annual_volatility: float = Field(
        default=0.6,
        gt=0,
        le=10,
        description="Annualised volatility of the random-walk model.",
    )
    tick_size: float = Field(gt=0, description="PRICE_FILTER tickSize: prices are multiples of it.")
    step_size: float = Field(gt=0, description="LOT_SIZE stepSize: quantities are multiples of it.")
    min_notional: float = Field(default=5.0, gt=0, description="NOTIONAL minNotional, in quote currency.")
    replay: str | None = Field(
        default=None,
        description=(
            "Path of a real candle parquet whose close path is replayed instead of the random "
            "walk; relative paths are resolved against ClusterSpec.data_root."
        ),
    )
    listed_since_ms: int = Field(
        default=1_483_228_800_000,
        ge=0,
        description="Listing time (ms, UTC); no candle or trade exists before it.",
    )

    @model_validator(mode="after")
    def _check_symbol(self) -> Self:
        parts = self.symbol.split("/")
        if len(parts) != 2 or not all(p.isalnum() and p.isupper() for p in parts):
            raise ValueError(f'symbol must look like "BASE/QUOTE" in upper case, got {self.symbol!r}')
        return self

    @property
    def base(self) -> str:
        """Return the base asset, e.g. "BTC"."""
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        """Return the quote asset, e.g. "USDT"."""
        return self.symbol.split("/")[1]

    @property
    def exchange_id(self) -> str:
        """Return the Binance market id, e.g. "BTCUSDT"."""
        return self.base + self.quote


class OutageWindow(_Frozen):
    """A window, relative to server start, during which a venue answers every request with 503."""

    start_seconds: float = Field(ge=0, description="Seconds after server start the outage begins.")
    duration_seconds: float = Field(gt=0, description="Length of the outage in seconds.")


class TransportFaults(_Frozen):
    """Per-request HTTP faults; probabilities are per attempt and must sum to at most 1."""

    rate_limit_429: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability of a 429 with a Retry-After header.",
    )
    retry_after_seconds: int = Field(default=1, ge=1, description="Retry-After value sent with a fault 429.")
    server_error_5xx: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability of a 500/502/503 with JSON or empty body.",
    )
    slow: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability of a correct answer delayed by slow_seconds.",
    )
    slow_seconds: float = Field(default=2.0, ge=0, description="Extra delay of a slow answer.")
    timeout: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability the server hangs timeout_seconds before answering.",
    )
    timeout_seconds: float = Field(
        default=15.0,
        ge=0,
        description="Hang time of a timeout fault; exceed the client's timeout.",
    )
    malformed_json: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability of a 200 application/json answer whose body is cut mid-way.",
    )
    html_error: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability of a CDN-style 502 text/html error page.",
    )
    outages: list[OutageWindow] = Field(
        default_factory=list,
        description="Windows, relative to server start, during which every request gets 503.",
    )
    down: bool = Field(default=False, description="Answer every request with 503: the venue is gone.")
    max_consecutive_faults: int = Field(
        default=3,
        ge=0,
        description="After this many faulted attempts of the same request the next one succeeds.",
    )

    @model_validator(mode="after")
    def _check_total(self) -> Self:
        if self.total_probability > 1.0 + 1e-12:
            raise ValueError("transport fault probabilities must sum to at most 1")
        return self

    @property
    def total_probability(self) -> float:
        """Return the probability that a fresh attempt is faulted."""
        return (
            self.rate_limit_429
            + self.server_error_5xx
            + self.slow
            + self.timeout
            + self.malformed_json
            + self.html_error
        )


class DataFaults(_Frozen):
    """Faults in the served market data, decided per (venue seed, symbol, candle open time)."""

    holes: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability that a 1m candle is missing from klines.",
    )
    spikes: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability that a 1m candle's high or low, and its close, are displaced.",
    )
    spike_size: float = Field(
        default=0.2,
        gt=0,
        le=5,
        description="Relative size of a spike, e.g. 0.2 = 20 %.",
    )
    stale: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability that a UTC hour is frozen at the last price before it, volume 0.",
    )
    drift_bps_per_day: float = Field(
        default=0.0,
        description=(
            "Extra bias in bps per day since the drift anchor (30 days before the history anchor);"
            " zero before it."
        ),
    )

    @property
    def any(self) -> bool:
        """Return whether any data fault is enabled."""
        return bool(self.holes or self.spikes or self.stale or self.drift_bps_per_day)


class VenueSpec(_Frozen):
    """One simulated venue: its own port, seed, noise, latency and fault profile."""

    id: str = Field(min_length=1, description="Venue id, e.g. 'binance_a'; keys base_urls.")
    seed: int = Field(ge=0, description="Seed of the venue's own noise, data faults and faults.")
    port: int = Field(default=0, ge=0, le=65535, description="TCP port; 0 picks a free port.")
    latency_ms: float = Field(default=0.0, ge=0, description="Mean added latency per request.")
    latency_jitter_ms: float = Field(
        default=0.0, ge=0, description="Half-width of the deterministic latency jitter."
    )
    noise_bps: float = Field(
        default=3.0,
        ge=0,
        description="Std-dev of the venue's per-minute price noise in bps.",
    )
    bias_bps: float = Field(default=0.0, description="Constant offset of the venue's prices in bps.")
    weight_limit_per_minute: int = Field(
        default=6000, ge=1, description="REQUEST_WEIGHT budget per UTC minute."
    )
    transport: TransportFaults = Field(
        default_factory=TransportFaults, description="Per-request HTTP faults."
    )
    data: DataFaults = Field(default_factory=DataFaults, description="Faults in the served data.")
    symbols: list[str] | None = Field(
        default=None,
        description="Symbols this venue lists; None lists all cluster symbols.",
    )
    api_key: str = Field(
        default="tradeflow-sim-key",
        min_length=1,
        description="API key (X-MBX-APIKEY) the signed order endpoints accept; a test credential, no secret.",
    )
    api_secret: str = Field(
        default="tradeflow-sim-secret",
        min_length=1,
        description="HMAC-SHA256 secret the signed endpoints verify signatures with; a test credential.",
    )
    initial_balances: dict[str, float] = Field(
        default_factory=lambda: {"USDT": 100_000.0},
        description="Asset -> free balance of the venue's one account when the venue starts.",
    )
    maker_fee: float = Field(
        default=0.001,
        ge=0,
        lt=0.1,
        description="Commission rate of fills of resting orders, charged in the quote asset.",
    )
    taker_fee: float = Field(
        default=0.001,
        ge=0,
        lt=0.1,
        description="Commission rate of fills of marketable orders, charged in the quote asset.",
    )

    @model_validator(mode="after")
    def _check_balances(self) -> Self:
        negative = sorted(asset for asset, amount in self.initial_balances.items() if amount < 0)
        if negative:
            raise ValueError(f"initial_balances must not be negative: {negative}")
        return self


class ClusterSpec(_Frozen):
    """Several venues sharing one true price path per symbol."""

    world_seed: int = Field(default=7, ge=0, description="Seed of the shared true price paths.")
    host: str = Field(default="127.0.0.1", description="Interface every venue binds to.")
    symbols: list[SymbolSpec] = Field(min_length=1, description="Markets of the cluster.")
    venues: list[VenueSpec] = Field(min_length=1, description="Venues of the cluster.")
    data_root: str | None = Field(
        default=None,
        description="Directory against which relative replay paths are resolved.",
    )
    history_anchor_ms: int | None = Field(
        default=None,
        description=(
            "UTC midnight (ms) at which replay tiles end a forward copy and from which the drift "
            "anchor is derived; None = the most recent UTC midnight when a venue is built. "
            "Pin it when data must stay identical across days."
        ),
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        names = [s.symbol for s in self.symbols]
        if len(set(names)) != len(names):
            raise ValueError("duplicate symbols in cluster")
        ids = [v.id for v in self.venues]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate venue ids in cluster")
        ports = [v.port for v in self.venues if v.port]
        if len(set(ports)) != len(ports):
            raise ValueError("two venues ask for the same port")
        known = set(names)
        for venue in self.venues:
            unknown = set(venue.symbols or ()) - known
            if unknown:
                raise ValueError(f"venue {venue.id} lists unknown symbols {sorted(unknown)}")
        if self.history_anchor_ms is not None and self.history_anchor_ms % DAY_MS:
            raise ValueError("history_anchor_ms must be a UTC midnight")
        return self

    def resolved(self, now_ms: int | None = None) -> ClusterSpec:
        """Return a copy whose history anchor is pinned, so other processes derive the same data.

        Args:
            now_ms: Wall-clock time used to pick the most recent UTC midnight; defaults to now.

        Returns:
            This spec if the anchor is already set, otherwise a copy with it set.
        """
        if self.history_anchor_ms is not None:
            return self
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return self.model_copy(update={"history_anchor_ms": now - now % DAY_MS})

    def venue(self, venue_id: str) -> VenueSpec:
        """Return the venue with this id.

        Raises:
            KeyError: No venue has this id.
        """
        for venue in self.venues:
            if venue.id == venue_id:
                return venue
        raise KeyError(venue_id)


FAULT_PROFILES: dict[str, tuple[TransportFaults, DataFaults]] = {
    "clean": (TransportFaults(), DataFaults()),
    "chaos": (
        TransportFaults(
            rate_limit_429=0.08,
            server_error_5xx=0.08,
            slow=0.05,
            slow_seconds=1.0,
            malformed_json=0.05,
            html_error=0.04,
            timeout=0.02,
            timeout_seconds=3.0,
            max_consecutive_faults=2,
        ),
        DataFaults(),
    ),
    "dirty": (TransportFaults(), DataFaults(holes=0.002, spikes=0.0005, stale=0.002)),
    "down": (TransportFaults(down=True), DataFaults()),
}
"""Named fault profiles: "chaos" only breaks transport, "dirty" only breaks data."""
