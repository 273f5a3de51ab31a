"""Exits of one position: ATR stop, take-profit ladder, breakeven, trailing stop, time and regime.

A position remembers the ATR at entry (in price units) and the best price seen since (its high
water for a long, low water for a short). From those follow:

- the initial stop, ``stop_atr`` ATRs against the position;
- partial take-profits at 1.5, 3 and 5 ATRs in its favour, each closing a share of the quantity
  it was opened with (the last one closes the rest);
- the stop moved to the entry price once the best price reached ``breakeven_atr`` ATRs;
- a trailing stop ``trailing_atr`` ATRs behind the best price;
- a time exit after ``time_exit_minutes``;
- an exit when the regime turns against it (a long in TRENDING_BEARISH or VOLATILE, a short in
  TRENDING_BULLISH or VOLATILE).

Within a bar the order of the high and the low is unknown, so a bar that reaches both a stop and
a take-profit is taken as stopped first, and the stop a bar is checked against uses the best
price seen *before* that bar (a new high inside the bar cannot raise its own stop). Both are the
conservative reading.

:meth:`PositionExits.on_bar` applies one bar (the streaming flow and the backtest call it the
same way); :meth:`PositionExits.scan` finds the first bar of a stretch on which ``on_bar`` would
act, vectorised, so the backtest can skip quiet stretches. ``tests/unit/test_exits.py`` checks
that scanning and stepping agree.

Shorts are handled as longs on negated prices: a short's stop above the entry is a long's stop
below it on ``-price``, its low water is ``-`` the long's high water.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tradeflow.timeframes import MINUTE_MS

FloatArray = npt.NDArray[np.float64]
ADVERSE_REGIMES = {
    1: frozenset({"TRENDING_BEARISH", "VOLATILE"}),
    -1: frozenset({"TRENDING_BULLISH", "VOLATILE"}),
}


@dataclass(frozen=True)
class ExitConfig:
    """Exit rules, in multiples of the ATR at entry.

    Attributes:
        stop_atr: Initial stop distance.
        take_profit_atr: Take-profit levels.
        take_profit_fractions: Share of the opening quantity each level closes (the last level
            closes whatever is left).
        breakeven_atr: Favourable move after which the stop is at least the entry price.
        trailing_atr: Trailing stop distance behind the best price (0 = no trailing stop).
        time_exit_minutes: Close after this long (0 = never).
        regime_exit: Close when the regime turns against the position.
    """

    stop_atr: float = 2.0
    take_profit_atr: tuple[float, ...] = (1.5, 3.0, 5.0)
    take_profit_fractions: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)
    breakeven_atr: float = 2.0
    trailing_atr: float = 3.0
    time_exit_minutes: int = 24 * 60
    regime_exit: bool = True

    def __post_init__(self) -> None:
        if len(self.take_profit_atr) != len(self.take_profit_fractions):
            raise ValueError("take_profit_atr and take_profit_fractions must have the same length")
        if list(self.take_profit_atr) != sorted(self.take_profit_atr):
            raise ValueError("take_profit_atr must be increasing")
        if self.stop_atr <= 0:
            raise ValueError("stop_atr must be positive")


@dataclass(frozen=True)
class ExitAction:
    """Close ``quantity`` (unsigned) of a position.

    Attributes:
        kind: ``stop``, ``trailing_stop``, ``breakeven_stop``, ``take_profit_1`` ..., ``time`` or
            ``regime``.
        quantity: How much to close (unsigned, at most what is open).
        price: The triggering level for stops and take-profits; NaN for the market exits at the
            bar's close (time, regime).
        resting: True for orders that rest at the venue and fill inside the bar (stops and
            take-profits); False for decisions taken at the close (time, regime).
    """

    kind: str
    quantity: float
    price: float
    resting: bool


@dataclass
class PositionExits:
    """The exit state of one open position.

    Attributes:
        direction: +1 long, -1 short.
        entry_price: Average entry price.
        entry_time: Open time (UTC ms) of the bar the position was filled on.
        atr: ATR at entry, in price units.
        quantity: Quantity opened (unsigned).
        regime: The regime at entry (None: no regime exit).
        config: The rules.
        remaining: Quantity still open.
        best: Best price seen since entry (highest high for a long, lowest low for a short).
        targets_hit: How many take-profit levels have filled.
    """

    direction: int
    entry_price: float
    entry_time: int
    atr: float
    quantity: float
    regime: str | None
    config: ExitConfig = field(default_factory=ExitConfig)
    remaining: float = math.nan
    best: float = math.nan
    targets_hit: int = 0

    def __post_init__(self) -> None:
        if math.isnan(self.remaining):
            self.remaining = self.quantity
        if math.isnan(self.best):
            self.best = self.entry_price

    # Work in "long space": price * direction, so a short's rules are a long's on -price.
    def _signed(self, value: float) -> float:
        return value * self.direction

    def stop_level(self, best: float | None = None) -> tuple[float, str]:
        """Return the stop price in force given the best price so far, and which rule set it."""
        config, atr = self.config, self.atr
        entry, top = self._signed(self.entry_price), self._signed(self.best if best is None else best)
        level, kind = entry - config.stop_atr * atr, "stop"
        if config.breakeven_atr > 0 and top >= entry + config.breakeven_atr * atr and entry > level:
            level, kind = entry, "breakeven_stop"
        if config.trailing_atr > 0:
            trailing = top - config.trailing_atr * atr
            if trailing > level:
                level, kind = trailing, "trailing_stop"
        return self._signed(level), kind

    def next_target(self) -> float:
        """Return the next take-profit price, or NaN when all have filled."""
        if self.targets_hit >= len(self.config.take_profit_atr):
            return math.nan
        move = self.config.take_profit_atr[self.targets_hit] * self.atr
        return self.entry_price + self.direction * move

    def _target_quantity(self) -> float:
        config = self.config
        if self.targets_hit == len(config.take_profit_atr) - 1:
            return self.remaining
        return min(self.remaining, self.quantity * config.take_profit_fractions[self.targets_hit])

    def on_bar(self, high: float, low: float, time: int, regime: str | None) -> list[ExitAction]:
        """Apply one bar (open time ``time``) and return the exits it triggers, in order.

        Resting exits (stop, take-profits) are checked against the bar's range; the time and
        regime exits are decided at its close. The best price is updated after the checks.
        """
        if self.remaining <= 0:
            return []
        actions: list[ExitAction] = []
        stop, kind = self.stop_level()
        favourable, adverse = (high, low) if self.direction == 1 else (-low, -high)
        if adverse <= self._signed(stop):
            actions.append(ExitAction(kind, self.remaining, stop, True))
            self.remaining = 0.0
            return actions
        while self.remaining > 0:
            target = self.next_target()
            if math.isnan(target) or favourable < self._signed(target):
                break
            quantity = self._target_quantity()
            actions.append(ExitAction(f"take_profit_{self.targets_hit + 1}", quantity, target, True))
            self.remaining -= quantity
            self.targets_hit += 1
        self.best = self._signed(max(self._signed(self.best), favourable))
        if self.remaining > 0 and self._timed_out(time):
            actions.append(ExitAction("time", self.remaining, math.nan, False))
            self.remaining = 0.0
        elif self.remaining > 0 and self._adverse(regime):
            actions.append(ExitAction("regime", self.remaining, math.nan, False))
            self.remaining = 0.0
        return actions

    def _timed_out(self, time: int) -> bool:
        minutes = self.config.time_exit_minutes
        return minutes > 0 and time + MINUTE_MS >= self.entry_time + minutes * MINUTE_MS

    def _adverse(self, regime: str | None) -> bool:
        return (
            self.config.regime_exit
            and self.regime is not None
            and regime is not None
            and regime != self.regime
            and regime in ADVERSE_REGIMES[self.direction]
        )

    def scan(
        self,
        high: FloatArray,
        low: FloatArray,
        times: npt.NDArray[np.int64],
        regimes: Sequence[Any] | npt.NDArray[np.object_] | None = None,
    ) -> int:
        """Return the index of the first bar on which :meth:`on_bar` would act, or ``len(high)``.

        Bars without a candle (NaN high and low) never trigger. Does not change the state: call
        :meth:`skip` for the bars before the returned index.
        """
        count = high.size
        if count == 0 or self.remaining <= 0:
            return count
        favourable, adverse = (high, low) if self.direction == 1 else (-low, -high)
        known = ~np.isnan(favourable)
        top = np.where(known, favourable, -np.inf)
        before = np.maximum.accumulate(np.concatenate(([self._signed(self.best)], top[:-1])))
        config, atr, entry = self.config, self.atr, self._signed(self.entry_price)
        level = np.full(count, entry - config.stop_atr * atr)
        if config.breakeven_atr > 0 and entry > level[0]:
            level = np.where(before >= entry + config.breakeven_atr * atr, np.maximum(level, entry), level)
        if config.trailing_atr > 0:
            level = np.maximum(level, before - config.trailing_atr * atr)
        trigger = known & (adverse <= level)
        target = self.next_target()
        if not math.isnan(target):
            trigger |= known & (favourable >= self._signed(target))
        if config.time_exit_minutes > 0:
            trigger |= known & (times + MINUTE_MS >= self.entry_time + config.time_exit_minutes * MINUTE_MS)
        if config.regime_exit and self.regime is not None and regimes is not None:
            labels = np.asarray(regimes, dtype=object)
            adverse_regime = np.isin(labels, list(ADVERSE_REGIMES[self.direction])) & (labels != self.regime)
            trigger |= known & adverse_regime
        hits = np.flatnonzero(trigger)
        return int(hits[0]) if hits.size else count

    def skip(self, high: FloatArray, low: FloatArray) -> None:
        """Take in bars that :meth:`scan` found quiet: only the best price moves."""
        favourable = high if self.direction == 1 else -low
        known = favourable[~np.isnan(favourable)]
        if known.size:
            self.best = self._signed(max(self._signed(self.best), float(known.max())))

    def to_dict(self) -> dict[str, Any]:
        """Return the state as plain values."""
        stop, kind = self.stop_level()
        return {
            "direction": self.direction,
            "entry_price": self.entry_price,
            "entry_time": self.entry_time,
            "atr": self.atr,
            "quantity": self.quantity,
            "remaining": self.remaining,
            "best": self.best,
            "stop": stop,
            "stop_kind": kind,
            "next_target": self.next_target(),
            "targets_hit": self.targets_hit,
        }
