"""The backtest engine: bar by bar over 1-minute candles, several symbols, real trading costs.

At the close of every decision bar (every ``decision_minutes``) each symbol's features and the
model's probability go through the same :class:`~tradeflow.strategy.signals.SignalGenerator`,
:func:`~tradeflow.strategy.allocation.allocate`, exit rules and protections that the streaming
flow uses. What it decides becomes orders:

- **Latency.** A decision at a bar's close reaches the venue ``latency_ms`` later and fills no
  earlier than the first bar that opens after that: with no latency, the next bar.
- **Prices.** Market orders fill at the bar's open plus the spread and market impact
  (:mod:`tradeflow.backtest.costs`); stops at their level (or the open, if the bar gapped
  through it) less the same slippage; take-profits, resting limit orders, at their level (or the
  better open) and the maker fee. Every fill lies within the bar's low and high.
- **Volume.** A bar fills at most ``participation`` of its volume per symbol; the rest of a
  market order waits for the next bars (a partial fill) and is cancelled after
  ``order_timeout_bars``. What a resting exit could not fill becomes a market order.
- **No candle, no fill.** A bar the venue did not publish (a hole) fills nothing.

Equity is cash plus positions marked at each bar's close (the last known close across holes).

Speed. Between decision bars nothing is decided, so the loop jumps ahead: each open position's
:meth:`~tradeflow.strategy.exits.PositionExits.scan` and the protections'
:func:`~tradeflow.strategy.protections.first_breach` find, vectorised, the first bar where
anything can happen, and only that bar is stepped. The equity curve is rebuilt afterwards from
the fills. :func:`run_signals` is the same machinery driven by given entry and exit signals (the
vectorbt comparison in ``bench/``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time as clock
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradeflow.backtest.costs import CostModel, fill_price
from tradeflow.strategy.allocation import (
    AllocationInput,
    AllocationLimits,
    MarketRules,
    allocate,
    correlation_matrix,
)
from tradeflow.strategy.exits import ExitConfig, PositionExits
from tradeflow.strategy.protections import ProtectionConfig, Protections, first_breach
from tradeflow.strategy.signals import Signal, SignalConfig, SignalGenerator
from tradeflow.timeframes import DAY_MS, MINUTE_MS, MINUTES_PER_YEAR

FloatArray = npt.NDArray[np.float64]
_REASON_NUMBERS = re.compile(r"\d+(\.\d+)?%|\d+(?= more minute)")
IntArray = npt.NDArray[np.int64]
#: Feature columns the decisions read (besides ``regime``).
DECISION_COLUMNS = (
    "atr_percentile",
    "atr_relative",
    "tf5m_macd_histogram_relative",
    "tf15m_macd_histogram_relative",
    "tf1h_macd_histogram_relative",
    "tf4h_macd_histogram_relative",
    "profile_value_area_high_distance",
    "profile_value_area_low_distance",
    "realized_volatility_1440",
)
TRADE_COLUMNS = [
    "symbol",
    "direction",
    "entry_time",
    "exit_time",
    "quantity",
    "entry_price",
    "exit_price",
    "pnl",
    "fees",
    "return",
    "regime",
    "signal_type",
    "signal_id",
    "exit_reason",
]
FILL_COLUMNS = [
    "time",
    "symbol",
    "side",
    "quantity",
    "price",
    "reference_price",
    "fee",
    "notional",
    "spread_cost",
    "impact_cost",
    "kind",
    "reason",
    "order_id",
    "partial",
]


@dataclass(frozen=True)
class BacktestConfig:
    """How the backtest trades.

    Attributes:
        initial_equity: Starting cash, in the quote currency.
        decision_minutes: Minutes between decisions (bars whose minute is a multiple of it).
        latency_ms: Delay between a decision (at a bar's close) and the order reaching the venue.
        participation: Largest share of a bar's volume one symbol's fills may take.
        order_timeout_bars: Bars a market order may wait for volume before it is cancelled.
        rebalance_tolerance: An open position is cut back to its allocated size only when it is
            larger by more than this share.
        correlation_window_days: Look-back of the correlation groups.
        signal: Signal rules.
        allocation: Allocation limits.
        exits: Exit rules.
        protections: Protection limits.
    """

    initial_equity: float = 100_000.0
    decision_minutes: int = 15
    latency_ms: int = 0
    participation: float = 0.10
    order_timeout_bars: int = 5
    rebalance_tolerance: float = 0.25
    correlation_window_days: float = 30.0
    signal: SignalConfig = field(default_factory=SignalConfig)
    allocation: AllocationLimits = field(default_factory=AllocationLimits)
    exits: ExitConfig = field(default_factory=ExitConfig)
    protections: ProtectionConfig = field(default_factory=ProtectionConfig)


@dataclass
class MarketData:
    """Candles of several symbols on one minute grid; NaN where a symbol has no candle.

    Attributes:
        symbols: The symbols, in row order.
        times: Open times of the grid's bars (UTC ms), increasing.
        open: ``(symbols, bars)`` opens; likewise ``high``, ``low``, ``close``, ``volume``.
        mark: Closes carried forward across holes (NaN before a symbol's first candle).
    """

    symbols: list[str]
    times: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    mark: FloatArray

    @classmethod
    def from_candles(
        cls, candles: Mapping[str, pd.DataFrame], start: int | None = None, end: int | None = None
    ) -> MarketData:
        """Align 1-minute candles (``timestamp``, OHLCV) of each symbol on their common grid.

        ``start`` and ``end`` (UTC ms, inclusive) cut the grid; the mark still carries the last
        close from before ``start``.
        """
        symbols = sorted(candles)
        if not symbols:
            raise ValueError("no candles")
        stamps = np.unique(
            np.concatenate([candles[s]["timestamp"].to_numpy(dtype=np.int64) for s in symbols])
        )
        arrays = {
            name: np.full((len(symbols), stamps.size), np.nan)
            for name in ("open", "high", "low", "close", "volume")
        }
        for row, symbol in enumerate(symbols):
            frame = candles[symbol]
            where = np.searchsorted(stamps, frame["timestamp"].to_numpy(dtype=np.int64))
            for name, values in arrays.items():
                values[row, where] = frame[name].to_numpy(dtype=np.float64)
        mark = pd.DataFrame(arrays["close"].T).ffill().to_numpy().T
        keep = np.ones(stamps.size, dtype=bool)
        if start is not None:
            keep &= stamps >= start
        if end is not None:
            keep &= stamps <= end
        return cls(
            symbols,
            stamps[keep],
            arrays["open"][:, keep],
            arrays["high"][:, keep],
            arrays["low"][:, keep],
            arrays["close"][:, keep],
            arrays["volume"][:, keep],
            mark[:, keep],
        )

    def closes_frame(self) -> pd.DataFrame:
        """Return the marks as a frame (index: times, columns: symbols) for correlations."""
        return pd.DataFrame(self.mark.T, index=self.times, columns=self.symbols)


@dataclass
class Decisions:
    """What the decisions read, per symbol, at the decision bars.

    Attributes:
        times: Decision bars' open times (UTC ms).
        columns: Names of ``values``' last axis (:data:`DECISION_COLUMNS`).
        values: ``(symbols, decisions, columns)`` feature values (NaN where unknown).
        regimes: ``(symbols, bars)`` regime label of every bar of the market grid (for exits).
        decision_regimes: ``(symbols, decisions)`` regime labels at the decision bars.
        probabilities: ``(symbols, decisions)`` model probabilities (NaN: no prediction).
        missing_columns: Decision columns the feature matrix lacks (the families that need them
            report themselves failed).
    """

    times: IntArray
    columns: tuple[str, ...]
    values: FloatArray
    regimes: npt.NDArray[np.object_]
    decision_regimes: npt.NDArray[np.object_]
    probabilities: FloatArray
    missing_columns: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        market: MarketData,
        features: pd.DataFrame,
        probabilities: pd.DataFrame | None,
        decision_minutes: int,
    ) -> Decisions:
        """Line up a feature matrix and predictions (``symbol``, ``timestamp``, ``probability``).

        Decision bars are the grid's bars whose minute is a multiple of ``decision_minutes``;
        with predictions, only those within the predictions' time span.
        """
        times = market.times
        chosen = times[(times // MINUTE_MS) % decision_minutes == 0]
        if probabilities is not None and not probabilities.empty:
            first, last = int(probabilities["timestamp"].min()), int(probabilities["timestamp"].max())
            chosen = chosen[(chosen >= first) & (chosen <= last)]
        symbols = market.symbols
        values = np.full((len(symbols), chosen.size, len(DECISION_COLUMNS)), np.nan)
        regimes = np.full((len(symbols), times.size), "UNCERTAIN", dtype=object)
        decision_regimes = np.full((len(symbols), chosen.size), "UNCERTAIN", dtype=object)
        chances = np.full((len(symbols), chosen.size), np.nan)
        present = [c for c in DECISION_COLUMNS if c in features.columns]
        for row, symbol in enumerate(symbols):
            own = features[features["symbol"] == symbol]
            stamps = own["timestamp"].to_numpy(dtype=np.int64)
            position = np.searchsorted(stamps, chosen)
            found = (position < stamps.size) & (
                stamps[np.minimum(position, max(stamps.size - 1, 0))] == chosen
            )
            if stamps.size:
                for column in present:
                    index = DECISION_COLUMNS.index(column)
                    values[row, found, index] = own[column].to_numpy(dtype=np.float64)[position[found]]
            if "regime" in own.columns and stamps.size:
                labels = own["regime"].to_numpy(dtype=object)
                # A bar takes the regime of the latest feature row at or before it.
                latest = np.searchsorted(stamps, times, side="right") - 1
                known = latest >= 0
                regimes[row, known] = labels[latest[known]]
                at = np.searchsorted(stamps, chosen, side="right") - 1
                decision_regimes[row, at >= 0] = labels[at[at >= 0]]
            if probabilities is not None and not probabilities.empty:
                mine = probabilities[probabilities["symbol"] == symbol].drop_duplicates("timestamp")
                series = pd.Series(
                    mine["probability"].to_numpy(dtype=np.float64),
                    index=mine["timestamp"].to_numpy(dtype=np.int64),
                )
                chances[row] = series.reindex(chosen).to_numpy(dtype=np.float64)
        missing = sorted(set(DECISION_COLUMNS) - set(present))
        return cls(chosen, tuple(DECISION_COLUMNS), values, regimes, decision_regimes, chances, missing)


@dataclass
class _Order:
    id: int
    symbol: int
    side: int
    quantity: float
    kind: str
    reason: str
    eligible: int
    expires: int
    signal: Signal | None = None
    confidence: float = 0.0


@dataclass
class _Position:
    symbol: int
    direction: int
    quantity: float
    entry_price: float
    entry_time: int
    exits: PositionExits
    signal: Signal | None
    regime: str | None
    confidence: float
    fees: float = 0.0
    entry_cost: float = 0.0
    exit_value: float = 0.0
    exit_quantity: float = 0.0
    opened_bar: int = 0
    exit_kinds: list[str] = field(default_factory=list)


@dataclass
class BacktestResult:
    """Everything one backtest produced.

    Attributes:
        equity: ``timestamp``, ``equity``, ``cash``, ``exposure`` (gross, of equity),
            ``drawdown`` (<= 0), per bar.
        fills: One row per fill (:data:`FILL_COLUMNS`).
        trades: Closed round trips (:data:`TRADE_COLUMNS`).
        weights: ``timestamp``, ``symbol``, ``target_weight``, ``actual_weight`` at decisions.
        signals: Every signal emitted, with ``outcome`` (entered, held, blocked: reason).
        rejections: ``time``, ``symbol``, ``reason``: entries refused by risk or protections.
        protection_events: What the protections did, when and why.
        threshold_adjustments: The adaptive thresholds' changes.
        family_status: Per feature family: on, off or failed, and why.
        no_signal: Why decisions gave no signal, with counts (percentages and minutes in them as ``x``).
        costs: Per symbol, the cost model used.
        config: The configuration.
        seconds: Wall time of the simulation.
    """

    equity: pd.DataFrame
    fills: pd.DataFrame
    trades: pd.DataFrame
    weights: pd.DataFrame
    signals: pd.DataFrame
    rejections: pd.DataFrame
    protection_events: pd.DataFrame
    threshold_adjustments: pd.DataFrame
    family_status: dict[str, dict[str, Any]]
    no_signal: dict[str, int]
    costs: dict[str, dict[str, Any]]
    config: BacktestConfig
    seconds: float

    @property
    def equity_series(self) -> pd.Series:
        """Return the equity indexed by bar time."""
        return pd.Series(self.equity["equity"].to_numpy(), index=self.equity["timestamp"].to_numpy())

    def cost_summary(self) -> dict[str, float]:
        """Return fees, spread and impact paid, and the count of partial fills."""
        fills = self.fills
        return {
            "fees": float(fills["fee"].sum()) if len(fills) else 0.0,
            "spread": float(fills["spread_cost"].sum()) if len(fills) else 0.0,
            "market_impact": float(fills["impact_cost"].sum()) if len(fills) else 0.0,
            "traded_notional": float(fills["notional"].sum()) if len(fills) else 0.0,
            "fills": float(len(fills)),
            "partial_fills": float(fills["partial"].sum()) if len(fills) else 0.0,
        }


class _Simulation:
    """The mutable state of one run (cash, positions, orders) and the fill machinery."""

    def __init__(self, market: MarketData, costs: Sequence[CostModel], config: BacktestConfig) -> None:
        self.market, self.costs, self.config = market, costs, config
        self.cash = config.initial_equity
        self.quantities = np.zeros(len(market.symbols))
        self.positions: dict[int, _Position] = {}
        self.orders: list[_Order] = []
        self.fills: list[tuple[Any, ...]] = []
        self.trades: list[dict[str, Any]] = []
        self.changes: list[tuple[int, float, FloatArray]] = [(0, self.cash, self.quantities.copy())]
        self.protections = Protections(config.protections)
        self.protection_events: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []
        self.next_order = 1
        self.volume_used: dict[tuple[int, int], float] = {}
        self._eligible: list[int] | None = None
        self.no_signal: dict[str, int] = {}
        self.on_closed: Callable[[int, int, str], None] | None = None

    # --- equity ---------------------------------------------------------------------------------

    def equity_at(self, bar: int) -> float:
        marks = self.market.mark[:, bar]
        held = self.quantities != 0
        return float(self.cash + np.dot(self.quantities[held], marks[held]))

    def equity_path(self, start: int, stop: int) -> FloatArray:
        held = np.flatnonzero(self.quantities)
        path = np.full(stop - start, self.cash)
        if held.size:
            path += self.quantities[held] @ self.market.mark[held, start:stop]
        return path

    # --- orders and fills -----------------------------------------------------------------------

    def capacity(self, symbol: int, bar: int) -> float:
        """Return the quantity ``symbol`` may still fill on ``bar`` (its participation cap, less fills)."""
        cap = float(self.config.participation * self.market.volume[symbol, bar])
        return max(cap - self.volume_used.get((symbol, bar), 0.0), 0.0)

    def eligible_bar(self, bar: int) -> int:
        """Return the first bar an order decided at ``bar``'s close can fill on (after the latency)."""
        if self._eligible is None:
            times = self.market.times
            arrival = times + MINUTE_MS + self.config.latency_ms
            self._eligible = np.searchsorted(times, arrival, side="left").tolist()
        return int(self._eligible[bar])

    def immediate_order(
        self, bar: int, symbol: int, side: int, quantity: float, kind: str, reason: str
    ) -> _Order:
        """Return a new order that fills on ``bar`` itself (a resting exit, or the signals mode)."""
        order = _Order(self.next_order, symbol, side, quantity, kind, reason, bar, bar)
        self.next_order += 1
        return order

    def submit(
        self,
        bar: int,
        symbol: int,
        side: int,
        quantity: float,
        kind: str,
        reason: str,
        signal: Signal | None = None,
        confidence: float = 0.0,
    ) -> None:
        if quantity <= 0:
            return
        eligible = self.eligible_bar(bar)
        order = _Order(
            self.next_order,
            symbol,
            side,
            quantity,
            kind,
            reason,
            eligible,
            eligible + self.config.order_timeout_bars,
            signal,
            confidence,
        )
        self.next_order += 1
        self.orders.append(order)

    def fill_orders(self, bar: int) -> None:
        market, kept = self.market, []
        for order in self.orders:
            if order.eligible > bar:
                kept.append(order)
                continue
            symbol = order.symbol
            reference = market.open[symbol, bar]
            if order.kind != "entry" and self.quantities[symbol] * order.side >= 0:
                continue  # the position it was meant to reduce is already gone
            if order.kind != "entry":
                order.quantity = min(order.quantity, abs(self.quantities[symbol]))
            if not math.isnan(reference):
                quantity = min(order.quantity, self.capacity(symbol, bar))
                if quantity > 0:
                    notional = quantity * reference
                    spread, impact = self.costs[symbol].slippage(
                        notional, market.volume[symbol, bar] * reference
                    )
                    price = fill_price(
                        order.side,
                        reference,
                        spread + impact,
                        market.high[symbol, bar],
                        market.low[symbol, bar],
                    )
                    self.fill(bar, order, quantity, price, reference, self.costs[symbol].taker_fee, spread)
                    order.quantity -= quantity
            if order.quantity > 1e-12 and bar < order.expires:
                kept.append(order)
            elif order.quantity > 1e-12:
                self.rejections.append(
                    {
                        "time": int(market.times[bar]),
                        "symbol": market.symbols[symbol],
                        "reason": f"{order.kind} order cancelled after "
                        f"{self.config.order_timeout_bars} bars without enough "
                        f"volume ({order.quantity:.6g} unfilled)",
                    }
                )
        self.orders = kept

    def fill(
        self,
        bar: int,
        order: _Order,
        quantity: float,
        price: float,
        reference: float,
        fee_rate: float,
        spread: float,
    ) -> None:
        market, symbol, side = self.market, order.symbol, order.side
        notional = quantity * price
        fee = notional * fee_rate
        self.cash -= side * notional + fee
        self.volume_used[(symbol, bar)] = self.volume_used.get((symbol, bar), 0.0) + quantity
        before = self.quantities[symbol]
        self.quantities[symbol] = before + side * quantity
        if abs(self.quantities[symbol]) < 1e-12:
            self.quantities[symbol] = 0.0
        slip = abs(price - reference) * quantity
        spread_cost = min(slip, spread * reference * quantity)
        time = int(market.times[bar])
        self.fills.append(
            (
                time,
                market.symbols[symbol],
                "buy" if side > 0 else "sell",
                quantity,
                price,
                reference,
                fee,
                notional,
                spread_cost,
                slip - spread_cost,
                order.kind,
                order.reason,
                order.id,
                quantity < order.quantity - 1e-12,
            )
        )
        self.changes.append((bar, self.cash, self.quantities.copy()))
        position = self.positions.get(symbol)
        if order.kind == "entry" and (position is None or position.direction == side):
            if position is None:
                atr = order.signal.atr if order.signal is not None else math.nan
                if math.isnan(atr) or atr <= 0:
                    atr = price * 0.01
                regime = order.signal.regime if order.signal is not None else None
                exits = PositionExits(side, price, time, atr, quantity, regime, self.config.exits)
                position = _Position(
                    symbol,
                    side,
                    quantity,
                    price,
                    time,
                    exits,
                    order.signal,
                    regime,
                    order.confidence,
                    opened_bar=bar,
                )
                self.positions[symbol] = position
            else:
                total = position.quantity + quantity
                position.entry_price = (position.entry_price * position.quantity + price * quantity) / total
                position.quantity = total
                position.exits.entry_price = position.entry_price
                position.exits.quantity += quantity
                position.exits.remaining += quantity
            position.entry_cost += notional
            position.fees += fee
            return
        if position is None:
            return
        position.fees += fee
        position.exit_value += notional
        position.exit_quantity += quantity
        position.exit_kinds.append(order.kind if order.kind != "exit" else order.reason)
        position.exits.remaining = abs(self.quantities[symbol])
        if self.quantities[symbol] == 0.0:
            self.close_position(bar, position)

    def close_position(self, bar: int, position: _Position) -> None:
        symbol = position.symbol
        del self.positions[symbol]
        self.orders = [o for o in self.orders if not (o.symbol == symbol and o.kind != "entry")]
        exit_price = position.exit_value / position.exit_quantity if position.exit_quantity else math.nan
        gross = position.direction * (
            position.exit_value
            - position.entry_cost * position.exit_quantity / max(position.quantity, 1e-300)
        )
        pnl = gross - position.fees
        signal = position.signal
        self.trades.append(
            {
                "symbol": self.market.symbols[symbol],
                "direction": position.direction,
                "entry_time": position.entry_time,
                "exit_time": int(self.market.times[bar]),
                "quantity": position.quantity,
                "entry_price": position.entry_price,
                "exit_price": exit_price,
                "pnl": pnl,
                "fees": position.fees,
                "return": pnl / position.entry_cost if position.entry_cost else 0.0,
                "regime": position.regime or "n/a",
                "signal_type": signal.signal_type if signal else "given",
                "signal_id": signal.id if signal else "",
                "exit_reason": position.exit_kinds[-1],
            }
        )
        if self.on_closed is not None:
            self.on_closed(bar, symbol, position.exit_kinds[-1])

    def resting_exits(self, bar: int, regimes: npt.NDArray[np.object_] | None) -> None:
        """Step every open position's exit rules over ``bar`` and fill what triggers."""
        market = self.market
        for symbol, position in list(self.positions.items()):
            high, low = market.high[symbol, bar], market.low[symbol, bar]
            if math.isnan(high) or bar <= position.opened_bar:
                continue
            regime = None if regimes is None else str(regimes[symbol, bar])
            time = int(market.times[bar])
            for action in position.exits.on_bar(high, low, time, regime):
                side = -position.direction
                if not action.resting:
                    self.submit(bar, symbol, side, action.quantity, "exit", action.kind)
                    continue
                open_ = market.open[symbol, bar]
                maker = action.kind.startswith("take_profit")
                # A bar that opened beyond the level fills at the open: worse for a stop, better
                # for a take-profit; otherwise at the level.
                beyond = (open_ - action.price) * position.direction
                gapped = beyond >= 0 if maker else beyond <= 0
                reference = open_ if gapped else action.price
                quantity = min(action.quantity, self.capacity(symbol, bar), abs(self.quantities[symbol]))
                if quantity > 0:
                    cost = self.costs[symbol]
                    spread, impact = (
                        (0.0, 0.0)
                        if maker
                        else cost.slippage(quantity * reference, market.volume[symbol, bar] * reference)
                    )
                    price = fill_price(side, reference, spread + impact, high, low)
                    order = self.immediate_order(bar, symbol, side, action.quantity, "exit", action.kind)
                    self.fill(
                        bar,
                        order,
                        quantity,
                        price,
                        reference,
                        cost.maker_fee if maker else cost.taker_fee,
                        spread,
                    )
                left = min(action.quantity - quantity, abs(self.quantities[symbol]))
                if left > 1e-12:
                    self.submit(bar, symbol, side, left, "exit", action.kind)
                if symbol not in self.positions:
                    break

    def close_all(self, bar: int, reason: str) -> None:
        self.orders = [o for o in self.orders if o.kind != "entry"]
        for symbol, position in self.positions.items():
            pending = sum(o.quantity for o in self.orders if o.symbol == symbol)
            left = abs(self.quantities[symbol]) - pending
            self.submit(bar, symbol, -position.direction, left, "exit", reason)


def run_backtest(
    market: MarketData,
    decisions: Decisions,
    config: BacktestConfig,
    costs: Mapping[str, CostModel],
    rules: Mapping[str, MarketRules] | None = None,
    model_version: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Run the strategy over ``market`` and return its equity, fills, trades and decisions.

    Args:
        market: The candles, aligned (:meth:`MarketData.from_candles`).
        decisions: The features and probabilities at the decision bars (:meth:`Decisions.build`).
        config: How to trade.
        costs: Per symbol, fees and slippage (:func:`~tradeflow.backtest.costs.calibrate_costs`).
        rules: Per symbol, the exchange's minimums and lot sizes.
        model_version: Recorded in the signals' fingerprints.
        progress: Called with (decisions done, decisions in all) now and then.
    """
    started = clock.perf_counter()
    symbols = market.symbols
    sim = _Simulation(market, [costs.get(s, CostModel()) for s in symbols], config)
    generator = SignalGenerator(config.signal, model_version)
    rules = rules or {}
    times = market.times
    bars = times.size
    decision_bars = np.searchsorted(times, decisions.times)
    closes = market.closes_frame()
    correlation: pd.DataFrame | None = None
    correlation_day = -1
    weights_rows: list[tuple[int, str, float, float]] = []
    signal_rows: list[dict[str, Any]] = []
    regime_on = "regime" in config.signal.families
    exit_regimes = decisions.regimes if regime_on else None

    def closed(bar: int, symbol: int, kind: str) -> None:
        for event in sim.protections.on_exit(int(times[bar]), symbols[symbol], kind, True):
            sim.protection_events.append(event.to_dict())

    sim.on_closed = closed
    if bars == 0:
        return _result(sim, generator, weights_rows, signal_rows, config, started, costs)
    bar = int(decision_bars[0]) if decision_bars.size else bars
    pointer = 0  # next decision
    while bar < bars:
        time = int(times[bar])
        sim.fill_orders(bar)
        sim.resting_exits(bar, exit_regimes)
        equity = sim.equity_at(bar)
        for event in sim.protections.on_equity(time, equity):
            sim.protection_events.append(event.to_dict())
            if event.kind == "max_drawdown":
                sim.close_all(bar, "max drawdown halt")
        while pointer < decision_bars.size and decision_bars[pointer] < bar:
            pointer += 1
        if pointer < decision_bars.size and decision_bars[pointer] == bar:
            day = time // DAY_MS
            if day != correlation_day:
                window = config.correlation_window_days
                correlation = correlation_matrix(closes, time, window_days=window)
                correlation_day = day
            _decide(
                sim,
                generator,
                decisions,
                pointer,
                bar,
                equity,
                correlation,
                rules,
                weights_rows,
                signal_rows,
                config,
            )
            pointer += 1
            if progress is not None and pointer % 500 == 0:
                progress(pointer, decision_bars.size)
        bar = _next_bar(sim, bar, decision_bars, pointer, exit_regimes)
    if progress is not None:
        progress(decision_bars.size, decision_bars.size)
    return _result(sim, generator, weights_rows, signal_rows, config, started, costs)


def _next_bar(
    sim: _Simulation, bar: int, decision_bars: IntArray, pointer: int, regimes: npt.NDArray[np.object_] | None
) -> int:
    """Return the next bar on which anything can happen, moving quiet positions' state past the gap."""
    market = sim.market
    horizon = int(decision_bars[pointer]) if pointer < decision_bars.size else market.times.size
    if sim.orders:
        horizon = min(horizon, max(bar + 1, min(order.eligible for order in sim.orders)))
    if not sim.positions:
        return horizon
    start = bar + 1
    stop = horizon
    for symbol, position in sim.positions.items():
        if stop <= start:
            break
        labels = None if regimes is None else regimes[symbol, start:stop]
        found = position.exits.scan(
            market.high[symbol, start:stop], market.low[symbol, start:stop], market.times[start:stop], labels
        )
        stop = start + found
    if stop <= start:
        return stop
    path = sim.equity_path(start, stop)
    quiet = first_breach(sim.protections, market.times[start:stop], path)
    stop = start + quiet
    if quiet:
        for symbol, position in sim.positions.items():
            position.exits.skip(market.high[symbol, start:stop], market.low[symbol, start:stop])
        highest = float(path[:quiet].max())
        peak = sim.protections.peak
        sim.protections.peak = highest if math.isnan(peak) else max(peak, highest)
    return stop


def _decide(
    sim: _Simulation,
    generator: SignalGenerator,
    decisions: Decisions,
    pointer: int,
    bar: int,
    equity: float,
    correlation: pd.DataFrame | None,
    rules: Mapping[str, MarketRules],
    weights_rows: list[tuple[int, str, float, float]],
    signal_rows: list[dict[str, Any]],
    config: BacktestConfig,
) -> None:
    """Evaluate every symbol's signal at a decision bar and turn the new ones into orders."""
    market, symbols = sim.market, sim.market.symbols
    time = int(market.times[bar])
    columns = decisions.columns
    fresh: dict[int, Signal] = {}
    for symbol, name in enumerate(symbols):
        close = market.close[symbol, bar]
        if math.isnan(close):
            continue
        row: dict[str, Any] = dict(zip(columns, decisions.values[symbol, pointer].tolist(), strict=True))
        for missing in decisions.missing_columns:
            row.pop(missing, None)
        row["regime"] = decisions.decision_regimes[symbol, pointer]
        row["close"] = close
        probability = float(decisions.probabilities[symbol, pointer])
        evaluation = generator.evaluate(name, time, row, None if math.isnan(probability) else probability)
        signal = evaluation.signal
        if signal is None:
            reason = _REASON_NUMBERS.sub("x", evaluation.reason.rsplit(": ", 1)[-1])
            sim.no_signal[reason] = sim.no_signal.get(reason, 0) + 1
            continue
        position = sim.positions.get(symbol)
        record = signal.to_dict() | {"outcome": ""}
        signal_rows.append(record)
        if position is not None and position.direction == signal.direction:
            record["outcome"] = "held: position already open"
            continue
        if position is not None:
            record["outcome"] = "exit: signal reversed"
            sim.submit(
                bar, symbol, -position.direction, abs(sim.quantities[symbol]), "exit", "signal reversal"
            )
            continue
        if any(o.symbol == symbol for o in sim.orders):
            record["outcome"] = "held: an order is pending"
            continue
        allowed, why = sim.protections.entry_allowed(time, name)
        if not allowed:
            record["outcome"] = f"blocked: {why}"
            sim.rejections.append({"time": time, "symbol": name, "reason": why, "signal_id": signal.id})
            continue
        fresh[symbol] = signal
        record["outcome"] = "entry"
    if not fresh:
        return
    inputs = []
    for symbol, name in enumerate(symbols):
        signal = fresh.get(symbol)
        position = sim.positions.get(symbol)
        volatility = decisions.values[symbol, pointer, columns.index("realized_volatility_1440")]
        price = market.mark[symbol, bar]
        if signal is not None:
            direction, confidence, regime = signal.direction, signal.confidence, signal.regime
        elif position is not None:
            direction, confidence, regime = position.direction, position.confidence, position.regime
        else:
            direction, confidence, regime = 0, 0.0, None
        inputs.append(
            AllocationInput(
                name,
                direction,
                confidence,
                float(volatility) * math.sqrt(MINUTES_PER_YEAR),
                regime or "",
                float(price),
                rules.get(name, MarketRules()),
            )
        )
    allocation = allocate(inputs, correlation, equity, config.allocation)
    records = {row["id"]: row for row in signal_rows[-len(symbols) :] if "id" in row}
    for symbol, name in enumerate(symbols):
        target = allocation.weights[name]
        price = market.mark[symbol, bar]
        actual = sim.quantities[symbol] * price / equity if not math.isnan(price) else 0.0
        weights_rows.append((time, name, target.weight, float(actual)))
        signal = fresh.get(symbol)
        if signal is not None:
            if target.quantity == 0:
                reason = "allocation: " + (target.reasons[-1] if target.reasons else "zero weight")
                records[signal.id]["outcome"] = f"blocked: {reason}"
                sim.rejections.append(
                    {"time": time, "symbol": name, "reason": reason, "signal_id": signal.id}
                )
                continue
            sim.submit(
                bar,
                symbol,
                signal.direction,
                abs(target.quantity),
                "entry",
                signal.signal_type,
                signal,
                signal.confidence,
            )
            continue
        position = sim.positions.get(symbol)
        if position is not None and abs(actual) > abs(target.weight) * (1 + config.rebalance_tolerance):
            excess = abs(sim.quantities[symbol]) - abs(target.quantity)
            sim.submit(bar, symbol, -position.direction, excess, "exit", "rebalance to the caps")


def _result(
    sim: _Simulation,
    generator: SignalGenerator,
    weights_rows: list[tuple[int, str, float, float]],
    signal_rows: list[dict[str, Any]],
    config: BacktestConfig,
    started: float,
    costs: Mapping[str, CostModel],
) -> BacktestResult:
    market = sim.market
    bars = market.times.size
    change_bars = np.asarray([c[0] for c in sim.changes], dtype=np.int64)
    cash = np.asarray([c[1] for c in sim.changes])
    held = np.stack([c[2] for c in sim.changes]) if sim.changes else np.zeros((1, len(market.symbols)))
    # The state after the last change at or before each bar (a bar's close sees its fills).
    latest = np.searchsorted(change_bars, np.arange(bars), side="right") - 1
    latest = np.maximum(latest, 0)
    quantities = held[latest].T  # (symbols, bars)
    marks = np.nan_to_num(market.mark)
    values = quantities * marks
    equity = cash[latest] + values.sum(axis=0)
    gross = np.abs(values).sum(axis=0)
    peak = np.maximum.accumulate(equity) if bars else equity
    frame = pd.DataFrame(
        {
            "timestamp": market.times,
            "equity": equity,
            "cash": cash[latest],
            "exposure": np.divide(gross, equity, out=np.zeros_like(gross), where=equity > 0),
            "drawdown": equity / peak - 1.0 if bars else equity,
        }
    )
    return BacktestResult(
        equity=frame,
        fills=pd.DataFrame(dict(zip(FILL_COLUMNS, map(list, zip(*sim.fills, strict=True)), strict=True)))
        if sim.fills
        else pd.DataFrame(columns=FILL_COLUMNS),
        trades=pd.DataFrame(sim.trades, columns=TRADE_COLUMNS),
        weights=pd.DataFrame(weights_rows, columns=["timestamp", "symbol", "target_weight", "actual_weight"]),
        signals=pd.DataFrame(signal_rows, columns=[*(f.name for f in dataclasses.fields(Signal)), "outcome"]),
        rejections=pd.DataFrame(sim.rejections, columns=["time", "symbol", "reason", "signal_id"]),
        protection_events=pd.DataFrame(
            sim.protection_events, columns=["time", "kind", "state", "reason", "symbol"]
        ),
        threshold_adjustments=pd.DataFrame([a.to_dict() for a in generator.adjustments]),
        family_status={name: status.to_dict() for name, status in generator.family_status.items()},
        no_signal=dict(sorted(sim.no_signal.items(), key=lambda item: -item[1])),
        costs={symbol: model.to_dict() for symbol, model in costs.items()},
        config=config,
        seconds=clock.perf_counter() - started,
    )


def run_signals(
    market: MarketData,
    entries: npt.NDArray[np.bool_],
    exits: npt.NDArray[np.bool_],
    costs: Mapping[str, CostModel],
    config: BacktestConfig | None = None,
) -> BacktestResult:
    """Trade given entry and exit signals (``(symbols, bars)`` booleans) with the engine's fills.

    Each symbol gets an equal share of the starting cash; an entry at a bar's close buys with all
    of the symbol's cash at a later bar's open (latency as configured), an exit sells everything.
    Entries while in a position and exits while flat are ignored. No stops, no protections, no
    allocation: the parts that make this comparable with other backtesters.
    """
    started = clock.perf_counter()
    config = config or BacktestConfig(participation=math.inf, order_timeout_bars=10**9)
    models = [costs.get(s, CostModel()) for s in market.symbols]
    sim = _Simulation(market, models, config)
    count = len(market.symbols)
    budget = np.full(count, config.initial_equity / count)
    events = np.flatnonzero(entries.any(axis=0) | exits.any(axis=0))
    bars = market.times.size
    for bar in events.tolist():
        for symbol in range(count):
            holding = sim.quantities[symbol] != 0
            if exits[symbol, bar] and holding:
                side, quantity, kind = -1, abs(sim.quantities[symbol]), "exit"
            elif entries[symbol, bar] and not holding:
                side, kind = 1, "entry"
            else:
                continue
            fill_at = sim.eligible_bar(bar)
            if fill_at >= bars or math.isnan(market.open[symbol, fill_at]):
                continue
            if side == 1:
                quantity = _affordable(sim, symbol, fill_at, budget[symbol])
            before = sim.cash
            _fill_all(sim, symbol, fill_at, side, quantity, kind, "signal")
            budget[symbol] += sim.cash - before
    generator = SignalGenerator(config.signal, None)
    return _result(sim, generator, [], [], config, started, costs)


def _affordable(sim: _Simulation, symbol: int, bar: int, cash: float) -> float:
    """Return the quantity that ``cash`` buys at ``bar``'s open, after the fee and the slippage.

    Slippage grows with the order, so the quantity is sized on the price a first estimate would
    fill at: the smaller second quantity fills no higher, so it never spends more than ``cash``.
    """
    market, cost = sim.market, sim.costs[symbol]
    reference = float(market.open[symbol, bar])
    quantity = cash / (reference * (1 + cost.taker_fee))
    spread, impact = cost.slippage(quantity * reference, float(market.volume[symbol, bar]) * reference)
    price = fill_price(1, reference, spread + impact, market.high[symbol, bar], market.low[symbol, bar])
    return cash / (price * (1 + cost.taker_fee))


def _fill_all(
    sim: _Simulation, symbol: int, bar: int, side: int, quantity: float, kind: str, reason: str
) -> None:
    """Fill ``quantity`` at ``bar``'s open at once (the signals mode has no volume limit)."""
    market = sim.market
    reference = market.open[symbol, bar]
    cost = sim.costs[symbol]
    spread, impact = cost.slippage(quantity * reference, market.volume[symbol, bar] * reference)
    price = fill_price(side, reference, spread + impact, market.high[symbol, bar], market.low[symbol, bar])
    order = sim.immediate_order(bar, symbol, side, quantity, kind, reason)
    sim.fill(bar, order, quantity, price, reference, cost.taker_fee, spread)
