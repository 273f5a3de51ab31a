"""The streaming decider: bars and book events in, order intents out, with the backtest's decisions.

:class:`Decider` is pure (no I/O, no asyncio, no clock of its own: every call carries its time).
The trading session feeds it:

- :meth:`Decider.warm_up` once per symbol, with the candles the lake or the venue's REST API
  gives (the series' first; see :mod:`tradeflow.execution.live_features`);
- :meth:`Decider.on_bar` with every closed 1-minute bar: the symbol's newest feature row (the
  batch matrix's, bit for bit), then the open position's exits on the bar
  (:class:`~tradeflow.strategy.exits.PositionExits`, as the backtest steps them);
- :meth:`Decider.on_book` with every book event (the hot path): the order-book features from
  the book's top levels, the champion's probability (:mod:`tradeflow.execution.scoring`), the
  decision when one is due, and the order intents that move the symbol toward its target;
- optionally :meth:`Decider.on_fill` with each fill (exact entry prices for the exits); without
  it, a change of the ledger's position is taken as a fill at the mark.

**The same decisions as the backtest.** A decision is taken per decision bar (a bar whose minute
is a multiple of ``decision_minutes``), for the whole portfolio at once, exactly as
:func:`tradeflow.backtest.engine.run_backtest` does at that bar's close: every symbol with a bar
there is evaluated by one :class:`~tradeflow.strategy.signals.SignalGenerator` (so the
generator's fingerprint and cooldown suppression apply), in symbol order; a signal is held (a
position in its direction, or an order pending), reverses a position (exit), is blocked by the
:class:`~tradeflow.strategy.protections.Protections` (drawdown halt, daily loss, stop guard,
cooldown after an exit), or is a fresh entry; fresh entries go through
:func:`~tradeflow.strategy.allocation.allocate` with the other positions, the 30-day correlations
(recomputed once per UTC day from hourly marks) and the equity; a position larger than its
allocation by more than ``rebalance_tolerance`` is cut back. ``tests/unit/test_decider.py``
replays a backtest bar by bar and requires the same signals, outcomes, entry quantities and
exits. The decision is taken on the first book event once every symbol's bar of that minute is
in (or ``bar_grace_ms`` after its close, for a symbol whose bar never comes: a hole, skipped as
the backtest skips it), and before any later bar is applied.

**Targets and intents.** A decision sets a target position per symbol (an entry, an exit, a cut
back); each book event of the symbol compares it with the ledger's position and the order in
flight (``pending``) and proposes the difference as one :class:`~tradeflow.execution.risk.OrderIntent`:
rounded toward zero to the lot size, at least the venue's minimum quantity and notional, a
marketable limit ``aggression`` through the touch (buy: ask up, sell: bid down) rounded to the
tick away from the mid, ``reduce_only`` for exits, with a deterministic client order id (the
decision's key, side, quantity and attempt): a decision re-taken after a restart maps to the
same id, which the ledger refuses to send twice. A target's intent is proposed at most once per
``resend_ms``; proposed again unchanged (it was refused, or ended unfilled: an IOC order), it is
a new attempt with a new id. An entry or cut-back target lapses at the next decision (as the
backtest's orders time out), an exit target stays until the position is closed. ``pending`` must
hold every order of the symbol that is in flight or open at the venue (adopted ones after a
restart included): the target counts them as on their way. The pre-trade checks are the caller's
(:class:`~tradeflow.execution.risk.PreTradeRisk`): :meth:`Decider.market_view` gives the view of
the book they need.

**Reasons.** Every decision and non-decision is a :class:`Decision` with its reason (the signal
generator's for no signal, the allocation's for a blocked entry, the exit rule's for an exit,
why an intent was not proposed): kept in :attr:`Decider.log` (bounded) and handed out once by
:meth:`Decider.drain`; :meth:`Decider.reason` gives an intent's reason by its client order id.

**Hot path.** Per book event: the top 10 levels of each side, six book features written into a
preallocated row in the model's order, one ``Booster.predict`` (about 20 µs) and the target
check: about 50 µs with the risk checks, p99 about 100-250 µs for 5 symbols on 100-level books
(``bench/decision.py``). ``LocalOrderBook.top`` is linear in a side's levels, so much deeper
books cost more. An event that takes the portfolio decision adds the signals and the
allocation (about 1 ms for 5 symbols, a few ms more once a UTC day for the correlations). Bars
cost about 5 ms per symbol (the feature tail) and come once a minute, off the book path.

**The exercise mode.** :class:`ChurnDecider` is not a strategy: it alternates each symbol
between a small long position and flat every ``churn_seconds``, deterministically from the
clock, through the same targets, rounding, client ids and risk checks, so the order path (and
restarts, kills, idempotency) can be tested on a venue where the champion rarely trades.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradeflow.backtest.engine import DECISION_COLUMNS
from tradeflow.config import Settings
from tradeflow.execution.bars import Bar, Lookback
from tradeflow.execution.live_features import LiveFeatures
from tradeflow.execution.risk import MarketView, OrderIntent, PortfolioView
from tradeflow.execution.scoring import Scorer
from tradeflow.features.spec import FeatureSpec
from tradeflow.strategy.allocation import (
    AllocationInput,
    AllocationLimits,
    MarketRules,
    allocate,
    correlation_matrix,
)
from tradeflow.strategy.exits import ExitConfig, PositionExits
from tradeflow.strategy.protections import ProtectionConfig, ProtectionEvent, Protections
from tradeflow.strategy.signals import PARTIAL_ALIGNMENT_CONFIDENCE, Signal, SignalConfig, SignalGenerator
from tradeflow.timeframes import DAY_MS, HOUR_MS, MINUTE_MS, MINUTES_PER_YEAR, timeframe_ms

__all__ = [
    "ChurnDecider",
    "Decider",
    "DeciderConfig",
    "Decision",
    "DepthBook",
    "build_decider",
    "market_view",
    "warm_up_minutes",
]

FloatArray = npt.NDArray[np.float64]

#: Kinds of :class:`Decision`.
DECISION_KINDS = (
    "signal",  # a signal was emitted (its outcome follows as entry / held / exit / blocked)
    "no_signal",  # the generator gave none (reason: why)
    "entry",  # a fresh entry: target = the allocation's quantity
    "held",  # a signal that changes nothing (position open in its direction, order pending)
    "blocked",  # an entry refused by the protections or the allocation
    "exit",  # an exit: the exit rules on a bar, a reversed signal, a drawdown halt
    "rebalance",  # a position cut back to its allocation
    "intent",  # an order intent proposed toward a target
    "target",  # a target met, lapsed or given up (reason: which)
    "protection",  # a protection triggered or resumed
    "skipped",  # a decision bar that could not be decided (reason: why)
    "fill",  # a fill taken into the position's exit state
)
_RESTING_KINDS = frozenset({"stop", "trailing_stop", "breakeven_stop"})
_PERMANENT_CHECKS = frozenset({"reduce_only_mismatch", "max_order_notional", "max_position_notional"})


class DepthBook(Protocol):
    """What the decider reads off a local order book (:class:`~tradeflow.execution.book.LocalOrderBook`)."""

    @property
    def in_sync(self) -> bool:
        """Whether the book follows the venue (no order on a book that does not)."""
        ...

    def top(self, count: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Return the best ``count`` (price, quantity) levels of each side, best first."""
        ...


@dataclass(frozen=True)
class DeciderConfig:
    """How the decider trades (the parts that are not the strategy's own configs).

    Attributes:
        decision_minutes: Minutes between decisions (bars whose minute is a multiple of it);
            the backtest's and the training's row step (:func:`tradeflow.strategy.settings.decision_minutes`).
        rebalance_tolerance: A position is cut back to its allocation only when larger by more
            than this share (the backtest's).
        correlation_window_days: Look-back of the correlation groups.
        bar_grace_ms: After a decision bar's close, wait this long for every symbol's bar
            before deciding without the missing ones.
        resend_ms: A target's intent is proposed at most this often.
        aggression: A limit price this fraction through the touch (0: at the best price).
        score_every_event: Score the model on every book event (the live probability, a metric),
            not only at decisions; only with a fast scorer.
        mark_equity: Feed the protections the portfolio's equity once per closed bar (from
            :meth:`Decider.on_book`); switch off when the caller feeds
            :attr:`Decider.protections` itself.
        client_prefix: Client order ids start with this and a dash (the session's
            reconciliation recognises its own orders by it).
        session_key: Mixed into every client order id's hash, so sessions of different venues
            or strategies never share an id (e.g. ``"<venue>:<strategy>"``).
        max_log: Decisions kept in :attr:`Decider.log` (and awaiting :meth:`Decider.drain`).
    """

    decision_minutes: int = 15
    rebalance_tolerance: float = 0.25
    correlation_window_days: float = 30.0
    bar_grace_ms: int = 5_000
    resend_ms: int = 2_000
    aggression: float = 0.0005
    score_every_event: bool = True
    mark_equity: bool = True
    client_prefix: str = "tf"
    session_key: str = ""
    max_log: int = 10_000

    def __post_init__(self) -> None:
        if self.decision_minutes < 1:
            raise ValueError(f"decision_minutes must be at least 1, got {self.decision_minutes}")
        if not 0 <= self.aggression < 0.05:
            raise ValueError(f"aggression must be in [0, 0.05), got {self.aggression}")
        if self.bar_grace_ms < 0 or self.resend_ms < 0 or self.max_log < 1:
            raise ValueError("bar_grace_ms and resend_ms must not be negative, max_log positive")


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision or non-decision, with its reason.

    Attributes:
        time_ms: When it was taken (the event's time).
        bar_time: The bar it is about (a decision bar's or an exit bar's open time), or None.
        symbol: The symbol ("" for the whole portfolio).
        kind: One of :data:`DECISION_KINDS`.
        reason: Why, in words, with the numbers.
        signal_id: The signal it follows from, if any.
        direction: +1 / -1 of the signal or the order, 0 if none.
        quantity: The target's or the order's quantity (unsigned), 0 if none.
        client_order_id: The intent's client order id (kind ``intent``).
    """

    time_ms: int
    bar_time: int | None
    symbol: str
    kind: str
    reason: str
    signal_id: str | None = None
    direction: int = 0
    quantity: float = 0.0
    client_order_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as plain values."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass
class _Target:
    """Where a symbol's position should go, and why."""

    position: float  # signed target position
    kind: str  # entry | exit | rebalance | churn
    reason: str
    key: str  # the decision's key (client order ids derive from it)
    reduce_only: bool
    signal: Signal | None = None
    confidence: float = 0.0
    expires_ms: int | None = None  # None: until met
    retry_at_ms: int = 0
    attempt: int = 0
    last: tuple[int, float] | None = None  # the last proposal's (side, quantity)


@dataclass
class _Held:
    """The exit state of a symbol's open position (what the backtest's ``_Position`` holds)."""

    direction: int
    exits: PositionExits
    signal: Signal | None
    confidence: float
    regime: str | None
    opened_bar: int  # open time of the bar it was filled on: exits start on the next bar
    exit_kind: str = "exit"


@dataclass
class _Quote:
    """The symbol's book at its last event."""

    in_sync: bool = False
    bid: float | None = None
    ask: float | None = None
    time_ms: int = 0


def market_view(book: DepthBook, now_ms: int) -> MarketView:
    """Return the pre-trade checks' view of a book (in sync, best bid and ask) at ``now_ms``."""
    bids, asks = book.top(1)
    return MarketView(book.in_sync, bids[0][0] if bids else None, asks[0][0] if asks else None, now_ms)


def _sign(value: float) -> int:
    return 1 if value > 0 else -1 if value < 0 else 0


def _round_price(price: float, step: float, side: int) -> float:
    """Return ``price`` on the tick grid, rounded away from the mid (up for a buy, down for a sell)."""
    if step <= 0:
        return price
    ticks = price / step
    whole = math.ceil(ticks - 1e-9) if side > 0 else math.floor(ticks + 1e-9)
    return float(f"{whole * step:.12g}")


def _floor_lot(quantity: float, step: float) -> float:
    """Return ``quantity`` rounded toward zero to the lot size (tolerating float noise)."""
    if step <= 0:
        return quantity
    return float(f"{math.floor(quantity / step + 1e-9) * step:.12g}")


class _TargetTrader:
    """Targets, intents, fills and reasons: what :class:`Decider` and :class:`ChurnDecider` share."""

    def __init__(
        self, symbols: Iterable[str], rules: Mapping[str, MarketRules], config: DeciderConfig
    ) -> None:
        self.symbols = sorted(set(symbols))
        missing = [symbol for symbol in self.symbols if symbol not in rules]
        if missing:
            raise ValueError(f"no market rules for {', '.join(missing)}")
        self.rules = {symbol: rules[symbol] for symbol in self.symbols}
        self.config = config
        self.targets: dict[str, _Target] = {}
        self.log: deque[Decision] = deque(maxlen=config.max_log)
        self._undrained: deque[Decision] = deque(maxlen=config.max_log)
        self._reasons: dict[str, str] = {}
        self._signals: dict[str, Signal] = {}
        self._known: dict[str, float] = dict.fromkeys(self.symbols, 0.0)
        self.quotes = {symbol: _Quote() for symbol in self.symbols}
        self._portfolio: PortfolioView | None = None
        self._pending: Mapping[str, float] = {}

    # -- reasons ---------------------------------------------------------------------------

    def _record(self, decision: Decision) -> None:
        self.log.append(decision)
        self._undrained.append(decision)

    def drain(self) -> list[Decision]:
        """Return the decisions made since the last call (at most ``max_log``, oldest first)."""
        drained = list(self._undrained)
        self._undrained.clear()
        return drained

    def reason(self, client_order_id: str) -> str | None:
        """Return why the intent with this client order id was proposed (recent ones only)."""
        return self._reasons.get(client_order_id)

    def signal_of(self, client_order_id: str) -> Signal | None:
        """Return the signal the intent with this client order id follows from (recent ones only)."""
        return self._signals.get(client_order_id)

    def market_view(self, symbol: str, now_ms: int) -> MarketView:
        """Return the pre-trade checks' view of ``symbol``'s book as of its last event."""
        quote = self.quotes[symbol]
        return MarketView(quote.in_sync, quote.bid, quote.ask, now_ms)

    # -- fills and positions ---------------------------------------------------------------

    def on_fill(
        self, symbol: str, side: int, quantity: float, price: float, time_ms: int, client_order_id: str = ""
    ) -> None:
        """Take a fill of one of the symbol's orders (the position's exit state follows it).

        Optional: the ledger's position, given with every book event, is the truth; a change of
        it that no fill explained is taken as a fill at the mark.
        """
        if quantity <= 0 or side not in (1, -1):
            return
        self._take_fill(symbol, side, quantity, price, time_ms)

    def _take_fill(self, symbol: str, side: int, quantity: float, price: float, time_ms: int) -> None:
        self._known[symbol] = self._known.get(symbol, 0.0) + side * quantity

    def _sync_position(self, symbol: str, portfolio: PortfolioView, now_ms: int) -> None:
        """Take a change of the ledger's position that no fill explained, at the mark."""
        actual = float(portfolio.positions.get(symbol, 0.0))
        known = self._known.get(symbol, 0.0)
        difference = actual - known
        if abs(difference) <= 1e-12 * max(1.0, abs(actual)):
            return
        quote = self.quotes[symbol]
        price = (
            (quote.bid + quote.ask) / 2.0
            if quote.bid is not None and quote.ask is not None
            else float(portfolio.marks.get(symbol, math.nan))
        )
        self._take_fill(symbol, _sign(difference), abs(difference), price, now_ms)

    # -- intents ---------------------------------------------------------------------------

    def _set_target(self, symbol: str, target: _Target) -> None:
        self.targets[symbol] = target

    def _drop_target(self, symbol: str, time_ms: int, reason: str) -> None:
        target = self.targets.pop(symbol, None)
        if target is not None:
            self._record(
                Decision(
                    time_ms,
                    None,
                    symbol,
                    "target",
                    f"{target.kind} target {reason}",
                    target.signal.id if target.signal else None,
                )
            )

    def _client_order_id(self, symbol: str, target: _Target, side: int, quantity: float) -> str:
        text = f"{self.config.session_key}|{symbol}|{target.key}|{side}|{quantity:.12g}|{target.attempt}"
        return f"{self.config.client_prefix}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"

    def _intent(
        self, symbol: str, now_ms: int, portfolio: PortfolioView, pending: Mapping[str, float]
    ) -> list[OrderIntent]:
        """Return the intent that moves ``symbol`` toward its target now, if any."""
        target = self.targets.get(symbol)
        if target is None or now_ms < target.retry_at_ms:
            return []
        if target.expires_ms is not None and now_ms >= target.expires_ms:
            self._drop_target(symbol, now_ms, "lapsed")
            return []
        quote = self.quotes[symbol]
        if not quote.in_sync or quote.bid is None or quote.ask is None:
            return []
        rules = self.rules[symbol]
        position = float(portfolio.positions.get(symbol, 0.0))
        outstanding = float(pending.get(symbol, 0.0))
        delta = target.position - position - outstanding
        if target.reduce_only:
            if position == 0 or _sign(delta) == _sign(position):
                if outstanding == 0:
                    self._drop_target(symbol, now_ms, "reached")
                return []
            delta = max(delta, -position) if position > 0 else min(delta, -position)
        side = _sign(delta)
        quantity = _floor_lot(abs(delta), rules.quantity_step)
        if target.reduce_only and quantity > abs(position):
            # The lot rounding forgives float noise upward; a position summed in floats may sit a
            # hair under its lot multiple, and a reduce-only order must not exceed it.
            quantity = abs(position)
        if side == 0 or quantity <= 0 or quantity < rules.min_quantity:
            if outstanding == 0:
                left = abs(target.position - position)
                self._drop_target(
                    symbol,
                    now_ms,
                    "reached"
                    if left < max(rules.quantity_step, 1e-12)
                    else f"given up: {abs(delta):.10g} left, under the lot or minimum quantity",
                )
            return []
        touch = quote.ask if side > 0 else quote.bid
        price = _round_price(touch * (1.0 + side * self.config.aggression), rules.price_step, side)
        if quantity * price < rules.min_notional:
            if outstanding == 0:
                self._drop_target(
                    symbol,
                    now_ms,
                    f"given up: {quantity:.10g} x {price:.10g} is under the "
                    f"minimum notional {rules.min_notional:g}",
                )
            return []
        if target.last == (side, quantity):
            # Nothing moved since the same proposal: it was refused or ended unfilled; a retry is a
            # new order. (The first proposal keeps the id a restart re-derives.)
            target.attempt += 1
        target.last = (side, quantity)
        client_order_id = self._client_order_id(symbol, target, side, quantity)
        intent = OrderIntent(symbol, side, quantity, price, target.reduce_only, client_order_id)
        target.retry_at_ms = now_ms + self.config.resend_ms
        reason = f"{target.kind}: {target.reason}"
        if len(self._reasons) >= self.config.max_log:
            self._reasons.pop(next(iter(self._reasons)))
        self._reasons[client_order_id] = reason
        if target.signal is not None:
            if len(self._signals) >= self.config.max_log:
                self._signals.pop(next(iter(self._signals)))
            self._signals[client_order_id] = target.signal
        self._record(
            Decision(
                now_ms,
                None,
                symbol,
                "intent",
                reason,
                target.signal.id if target.signal else None,
                side,
                quantity,
                client_order_id,
            )
        )
        return [intent]

    def on_rejected(self, intent: OrderIntent, check: str) -> None:
        """Take a refusal of an intent by the pre-trade checks (optional).

        A refusal that retrying cannot cure (``max_order_notional``, ``max_position_notional``,
        ``reduce_only_mismatch``) gives the target up; after any other the intent is proposed
        again ``resend_ms`` later, under a new client order id.
        """
        target = self.targets.get(intent.symbol)
        if target is not None and check in _PERMANENT_CHECKS:
            self._drop_target(intent.symbol, target.retry_at_ms, f"given up: refused by {check}")

    def _quote(
        self, symbol: str, book: DepthBook, now_ms: int, levels: int
    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids, asks = book.top(levels)
        quote = self.quotes[symbol]
        quote.in_sync = bool(book.in_sync)
        quote.bid = bids[0][0] if bids else None
        quote.ask = asks[0][0] if asks else None
        quote.time_ms = now_ms
        return bids, asks


class Decider(_TargetTrader):
    """The champion strategy on streaming data (see the module docstring).

    Args:
        spec: The feature set the model was trained on.
        signal: Signal rules (:func:`tradeflow.strategy.settings.signal_config`).
        allocation: Allocation limits (:func:`~tradeflow.strategy.settings.allocation_limits`).
        exits: Exit rules (:func:`~tradeflow.strategy.settings.exit_config`).
        protections: Protection limits (:func:`~tradeflow.strategy.settings.protection_config`).
        rules: Each symbol's market rules (lot, tick, minimums); its keys are the symbols
            traded unless ``symbols`` says otherwise.
        scorer: The champion (:func:`tradeflow.execution.scoring.scorer_for`), or None: no
            ``ml`` family.
        config: Decision cadence and execution settings.
        model_version: The champion's version (in every signal's fingerprint).
        symbols: The symbols to trade (default: ``rules``' keys).

    Raises:
        ValueError: if the model needs a feature the spec does not give, or a symbol has no rules.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        signal: SignalConfig,
        allocation: AllocationLimits,
        exits: ExitConfig,
        protections: ProtectionConfig,
        rules: Mapping[str, MarketRules],
        scorer: Scorer | None = None,
        config: DeciderConfig | None = None,
        model_version: str | None = None,
        symbols: Sequence[str] | None = None,
    ) -> None:
        super().__init__(rules if symbols is None else symbols, rules, config or DeciderConfig())
        self.spec = spec
        self.signal_config, self.allocation, self.exit_config = signal, allocation, exits
        self.features = LiveFeatures(spec, self.symbols)
        self.scorer = scorer
        self.generator = SignalGenerator(signal, model_version if scorer is not None else None)
        self.protections = Protections(protections)
        names = self.features.names
        position = {name: index for index, name in enumerate(names)}
        self._decision_columns = [(name, position[name]) for name in DECISION_COLUMNS if name in position]
        self._book_levels = tuple(spec.order_book_levels)
        self._model_rows: dict[str, FloatArray] = {}
        self._row_versions = dict.fromkeys(self.symbols, -1)
        self._order: npt.NDArray[np.intp] = np.zeros(0, dtype=np.intp)
        self._book_slots: list[tuple[str, int]] = []
        if scorer is not None:
            missing = [name for name in scorer.feature_names if name not in position]
            if missing:
                raise ValueError(f"the model needs features the feature set does not give: {missing}")
            self._order = np.asarray([position[name] for name in scorer.feature_names], dtype=np.intp)
            slots = {name: index for index, name in enumerate(scorer.feature_names)}
            book_names = [
                "book_spread_relative",
                *(f"book_imbalance_{n}" for n in self._book_levels),
                "book_age_seconds",
            ]
            self._book_slots = [(name, slots[name]) for name in book_names if name in slots]
            self._model_rows = {symbol: np.full(len(scorer.feature_names), np.nan) for symbol in self.symbols}
        self.probabilities: dict[str, float | None] = dict.fromkeys(self.symbols)
        self.book_features: dict[str, dict[str, float]] = {symbol: {} for symbol in self.symbols}
        self.no_signal: Counter[str] = Counter()
        self._held: dict[str, _Held] = {}
        self._due: int | None = None  # the newest decision bar not yet decided
        self._decided: int | None = None
        self._marked_minute: int | None = None
        self._correlation: pd.DataFrame | None = None
        self._correlation_day = -1
        self._hourly: dict[str, dict[int, tuple[int, float]]] = {symbol: {} for symbol in self.symbols}
        self._halt_handled = False
        self._newest_bar: int | None = None  # the newest bar's open time, any symbol

    # -- bars ------------------------------------------------------------------------------

    def warm_up(self, symbol: str, candles: pd.DataFrame) -> None:
        """Start ``symbol`` from candles (``timestamp``, OHLCV; sorted): the series' first, before any bar.

        Raises:
            ValueError: if bars were given already or the candles are malformed.
        """
        self.features.warm_up(symbol, candles)
        if len(candles):
            stamps = candles["timestamp"].to_numpy(dtype=np.int64)
            self._note_bar(int(stamps[-1]))
            closes = candles["close"].to_numpy(dtype=np.float64)
            buckets = stamps // HOUR_MS
            last = np.flatnonzero(np.append(buckets[1:] != buckets[:-1], True))
            hourly = self._hourly[symbol]
            for index in last.tolist():
                hourly[int(buckets[index])] = (int(stamps[index]), float(closes[index]))
            self._trim_hourly(symbol, int(stamps[-1]))

    def on_bar(self, symbol: str, bar: Any) -> None:
        """Take ``symbol``'s closed 1-minute bar: its features, and its open position's exits.

        ``bar``: a :class:`~tradeflow.execution.bars.Bar`, or anything with ``open_time_ms`` (or
        ``timestamp``), ``open``, ``high``, ``low``, ``close``, ``volume`` (a feed's bar event;
        one whose ``timeframe`` is not ``1m`` is ignored). A bar not newer than the symbol's
        newest is ignored.
        """
        if getattr(bar, "timeframe", "1m") != "1m":
            return
        bar = _as_bar(bar)
        due = self._due
        if due is not None and bar.timestamp > due and self._decided != due:
            if self._portfolio is None:
                self._skip(due, bar.timestamp, "no book event came between the decision bar and the next bar")
            else:
                self._decide(due, bar.timestamp, self._portfolio, self._pending)
        if not self.features.on_bar(symbol, bar):
            return
        self._note_bar(bar.timestamp)
        self._hourly[symbol][bar.timestamp // HOUR_MS] = (bar.timestamp, bar.close)
        self._trim_hourly(symbol, bar.timestamp)
        held = self._held.get(symbol)
        if held is not None and bar.timestamp > held.opened_bar:
            self._exits_on_bar(symbol, held, bar)

    def _note_bar(self, time: int) -> None:
        """Note a new bar: the newest bar's time, and a decision bar's decision as due."""
        if self._newest_bar is None or time > self._newest_bar:
            self._newest_bar = time
        due = self._due
        if (time // MINUTE_MS) % self.config.decision_minutes == 0 and (due is None or time > due):
            self._due = time

    def _exits_on_bar(self, symbol: str, held: _Held, bar: Bar) -> None:
        """Step the position's exit rules over the bar; an exit sets the target to what remains.

        The target's reason is the last rule that acted (``stop``, ``take_profit_2``, ``time``,
        ...), as the backtest names the order that closes the position.
        """
        regime = self.features.regime(symbol) if "regime" in self.signal_config.families else None
        actions = held.exits.on_bar(bar.high, bar.low, bar.timestamp, regime)
        for action in actions:
            where = "" if math.isnan(action.price) else f" at {action.price:.10g}"
            self._record(
                Decision(
                    bar.timestamp + MINUTE_MS,
                    bar.timestamp,
                    symbol,
                    "exit",
                    f"{action.kind}{where}: close {action.quantity:.10g}",
                    held.signal.id if held.signal else None,
                    -held.direction,
                    action.quantity,
                )
            )
        if actions:
            kind = actions[-1].kind
            held.exit_kind = kind
            target = _Target(
                held.direction * held.exits.remaining,
                "exit",
                kind,
                f"exit:{kind}:{bar.timestamp}",
                True,
                held.signal,
            )
            self._set_target(symbol, target)

    def _trim_hourly(self, symbol: str, newest: int) -> None:
        hourly = self._hourly[symbol]
        oldest = (newest - int((self.config.correlation_window_days + 1) * DAY_MS)) // HOUR_MS
        while hourly and next(iter(hourly)) < oldest:
            hourly.pop(next(iter(hourly)))

    # -- equity and protections ------------------------------------------------------------

    def mark_equity(self, time_ms: int, equity: float) -> list[ProtectionEvent]:
        """Feed the protections an equity mark (the backtest marks every bar's close).

        Marks given here count for the minute they fall in; with ``mark_equity`` on, a minute
        without one is marked from the portfolio at its first book event.
        """
        self._marked_minute = time_ms // MINUTE_MS
        events = self.protections.on_equity(time_ms, equity)
        for event in events:
            self._record(
                Decision(time_ms, None, event.symbol or "", "protection", f"{event.kind}: {event.reason}")
            )
        if self.protections.halted and not self._halt_handled:
            self._halt_handled = True
            self._close_all(time_ms, "max drawdown halt")
        elif not self.protections.halted:
            self._halt_handled = False
        return events

    def _close_all(self, time_ms: int, reason: str) -> None:
        """Exit every position and drop entry targets (the backtest's ``close_all``)."""
        for symbol in self.symbols:
            target = self.targets.get(symbol)
            if target is not None and not target.reduce_only:
                self._drop_target(symbol, time_ms, f"dropped: {reason}")
            position = self._known.get(symbol, 0.0)
            if position != 0 and (target is None or not target.reduce_only):
                self._record(
                    Decision(time_ms, None, symbol, "exit", reason, None, -_sign(position), abs(position))
                )
                self._set_target(symbol, _Target(0.0, "exit", reason, f"exit:halt:{time_ms}", True))

    # -- fills -----------------------------------------------------------------------------

    def _take_fill(self, symbol: str, side: int, quantity: float, price: float, time_ms: int) -> None:
        """Follow a fill in the position's exit state, as the backtest's ``_Simulation.fill`` does."""
        bar_time = time_ms - time_ms % MINUTE_MS
        before = self._known.get(symbol, 0.0)
        if before != 0 and _sign(before) != side:  # reduces the position
            reduced = min(quantity, abs(before))
            after = before + side * reduced
            self._known[symbol] = after
            held = self._held.get(symbol)
            if held is not None:
                held.exits.remaining = abs(after)
            self._record(
                Decision(
                    time_ms,
                    bar_time,
                    symbol,
                    "fill",
                    f"reduced by {reduced:.10g} at {price:.10g}",
                    None,
                    side,
                    reduced,
                )
            )
            if self._flat(symbol, after):
                self._close(symbol, bar_time, time_ms)
            quantity -= reduced
            if quantity <= 1e-12 * max(1.0, abs(before)):
                return
            before = self._known[symbol]
        after = before + side * quantity
        self._known[symbol] = after
        held = self._held.get(symbol)
        if held is not None and held.direction == side:  # adds to it
            exits = held.exits
            total = exits.quantity + quantity
            exits.entry_price = (exits.entry_price * exits.quantity + price * quantity) / total
            exits.quantity += quantity
            exits.remaining += quantity
            self._record(
                Decision(
                    time_ms,
                    bar_time,
                    symbol,
                    "fill",
                    f"added {quantity:.10g} at {price:.10g}",
                    held.signal.id if held.signal else None,
                    side,
                    quantity,
                )
            )
            return
        target = self.targets.get(symbol)
        signal = target.signal if target is not None and target.kind == "entry" else None
        atr = signal.atr if signal is not None else self._current_atr(symbol)
        if math.isnan(atr) or atr <= 0:
            atr = price * 0.01
        regime = signal.regime if signal is not None else None
        exits = PositionExits(side, price, bar_time, atr, quantity, regime, self.exit_config)
        confidence = signal.confidence if signal is not None else PARTIAL_ALIGNMENT_CONFIDENCE
        self._held[symbol] = _Held(side, exits, signal, confidence, regime, bar_time)
        why = "entry of the signal" if signal is not None else "a position no signal of this decider opened"
        self._record(
            Decision(
                time_ms,
                bar_time,
                symbol,
                "fill",
                f"opened {quantity:.10g} at {price:.10g}: {why}; "
                f"stop {exits.stop_level()[0]:.10g}, ATR {atr:.6g}",
                signal.id if signal else None,
                side,
                quantity,
            )
        )

    def _flat(self, symbol: str, quantity: float) -> bool:
        """Return whether ``quantity`` is no position: zero, or dust under one lot."""
        return abs(quantity) <= max(self.rules[symbol].quantity_step * (1 - 1e-9), 1e-12)

    def _close(self, symbol: str, bar_time: int, time_ms: int) -> None:
        """The position is closed: the protections learn how (stop guard, cooldown)."""
        self._held.pop(symbol, None)
        target = self.targets.get(symbol)
        kind = target.reason if target is not None and target.reduce_only else "exit"
        if target is not None and target.reduce_only:
            del self.targets[symbol]
        for event in self.protections.on_exit(bar_time, symbol, kind, True):
            self._record(Decision(time_ms, bar_time, symbol, "protection", f"{event.kind}: {event.reason}"))

    def position_exits(self, symbol: str) -> PositionExits | None:
        """Return the exit state of ``symbol``'s open position (stop, targets, best price), or None."""
        held = self._held.get(symbol)
        return None if held is None else held.exits

    def _current_atr(self, symbol: str) -> float:
        values = self.features.values(symbol)
        return float(values.get("atr_relative", math.nan)) * self.features.close(symbol)

    # -- book events -----------------------------------------------------------------------

    def on_book(
        self,
        symbol: str,
        book: DepthBook,
        now_ms: int,
        portfolio: PortfolioView,
        pending: Mapping[str, float],
    ) -> list[OrderIntent]:
        """Take a book event of ``symbol``; return the intents to send now (usually none).

        Args:
            symbol: The symbol whose book changed.
            book: Its local book (``in_sync`` and ``top(n)``).
            now_ms: Now (UTC ms, the venue's clock as the caller knows it).
            portfolio: Equity, the UTC day's start equity, signed positions and marks, from the
                ledger (the truth).
            pending: Signed quantity of the orders in flight or open, per symbol.
        """
        self._portfolio, self._pending = portfolio, pending
        self._sync_position(symbol, portfolio, now_ms)
        bids, asks = self._quote(symbol, book, now_ms, max(self._book_levels))
        self._book_features(symbol, bids, asks, now_ms, getattr(book, "last_event_time", None))
        scorer = self.scorer
        if scorer is not None and scorer.fast and self.config.score_every_event:
            self.probabilities[symbol] = self._score(symbol)
        newest = self._newest_bar
        marked = self._marked_minute
        if (
            self.config.mark_equity
            and newest is not None
            and (marked is None or newest // MINUTE_MS > marked)
        ):
            self.mark_equity(now_ms, portfolio.equity)
            self._marked_minute = newest // MINUTE_MS
        due = self._due
        if due is not None and self._decided != due:
            if now_ms >= due + MINUTE_MS + self.config.decision_minutes * MINUTE_MS:
                self._skip(due, now_ms, "stale: no book event within the decision interval after the bar")
            elif self._ready(due, now_ms):
                self._decide(due, now_ms, portfolio, pending)
        return self._intent(symbol, now_ms, portfolio, pending)

    def _book_features(
        self,
        symbol: str,
        bids: list[tuple[float, float]],
        asks: list[tuple[float, float]],
        now_ms: int,
        book_time: int | None,
    ) -> None:
        """Compute the order-book features as :func:`~tradeflow.features.build.order_book_features` does."""
        values = self.book_features[symbol]
        if bids and asks:
            bid, ask = bids[0][0], asks[0][0]
            values["book_spread_relative"] = (ask - bid) / ((ask + bid) / 2.0)
        else:
            values["book_spread_relative"] = math.nan
        for depth in self._book_levels:
            bid_depth = sum(quantity for _, quantity in bids[:depth])
            ask_depth = sum(quantity for _, quantity in asks[:depth])
            total = bid_depth + ask_depth
            values[f"book_imbalance_{depth}"] = (bid_depth - ask_depth) / total if total > 0 else math.nan
        values["book_age_seconds"] = (
            (max(0.0, (now_ms - book_time) / 1000.0) if bids or asks else math.nan)
            if book_time is not None
            else (0.0 if bids or asks else math.nan)
        )
        row = self._model_rows.get(symbol)
        if row is not None:
            for name, slot in self._book_slots:
                row[slot] = values[name]

    def _score(self, symbol: str) -> float | None:
        """Return the model's probability for ``symbol``'s newest row with its latest book features."""
        scorer = self.scorer
        if scorer is None:
            return None
        features = self.features.row(symbol)
        if features is None:
            return None
        row = self._model_rows[symbol]
        version = self.features.version(symbol)
        if version != self._row_versions[symbol]:
            np.take(features, self._order, out=row)
            values = self.book_features[symbol]
            for name, slot in self._book_slots:
                row[slot] = values.get(name, math.nan)
            self._row_versions[symbol] = version
        probability = scorer.score(row)
        return None if math.isnan(probability) else probability

    # -- decisions -------------------------------------------------------------------------

    def _ready(self, due: int, now_ms: int) -> bool:
        """Return whether the decision of bar ``due`` can be taken: every bar in, or the grace over."""
        if now_ms >= due + MINUTE_MS + self.config.bar_grace_ms:
            return True
        for symbol in self.symbols:
            time = self.features.timestamp(symbol)
            if time is None or time < due:
                return False
        return True

    def _skip(self, due: int, now_ms: int, reason: str) -> None:
        self._decided = due
        self._record(Decision(now_ms, due, "", "skipped", reason))

    def _decision_row(self, symbol: str) -> dict[str, Any] | None:
        row = self.features.row(symbol)
        if row is None:
            return None
        values: dict[str, Any] = {name: float(row[index]) for name, index in self._decision_columns}
        values["regime"] = self.features.regime(symbol)
        values["close"] = self.features.close(symbol)
        return values

    def _decide(self, time: int, now_ms: int, portfolio: PortfolioView, pending: Mapping[str, float]) -> None:
        """Decide the bar opening at ``time`` for every symbol, as ``engine._decide`` does."""
        self._decided = time
        for symbol in self.symbols:
            self._sync_position(symbol, portfolio, now_ms)
        day = time // DAY_MS
        if day != self._correlation_day:  # the backtest's: at the first decision bar of each UTC day
            self._correlation = self._correlation_matrix(time)
            self._correlation_day = day
        for symbol in self.symbols:  # a decision's entry and cut-back targets lapse at the next one
            target = self.targets.get(symbol)
            if (target is not None and not target.reduce_only) or (
                target is not None and target.kind == "rebalance"
            ):
                self._drop_target(symbol, now_ms, "lapsed at the next decision")
        fresh: dict[str, Signal] = {}
        rows: dict[str, dict[str, Any]] = {}
        for symbol in self.symbols:
            if self.features.timestamp(symbol) != time:
                continue  # no bar at the decision bar: the backtest skips it too
            row = self._decision_row(symbol)
            if row is None:
                continue
            rows[symbol] = row
            probability = self._score(symbol)
            self.probabilities[symbol] = probability
            evaluation = self.generator.evaluate(symbol, time, row, probability)
            signal = evaluation.signal
            if signal is None:
                self.no_signal[evaluation.reason.rsplit(": ", 1)[-1]] += 1
                self._record(Decision(now_ms, time, symbol, "no_signal", evaluation.reason))
                continue
            self._record(
                Decision(now_ms, time, symbol, "signal", signal.explanation, signal.id, signal.direction)
            )
            position = float(portfolio.positions.get(symbol, 0.0))
            if position != 0 and _sign(position) == signal.direction:
                self._outcome(now_ms, time, symbol, "held", "held: position already open", signal)
                continue
            if position != 0:
                self._outcome(now_ms, time, symbol, "exit", "exit: signal reversed", signal, abs(position))
                target = self.targets.get(symbol)
                if target is None or not target.reduce_only:
                    key = f"exit:reversal:{time}"
                    self._set_target(symbol, _Target(0.0, "exit", "signal reversal", key, True, signal))
                continue
            target = self.targets.get(symbol)
            if pending.get(symbol, 0.0) != 0 or (target is not None and target.reduce_only):
                self._outcome(now_ms, time, symbol, "held", "held: an order is pending", signal)
                continue
            allowed, why = self.protections.entry_allowed(time, symbol)
            if not allowed:
                self._outcome(now_ms, time, symbol, "blocked", f"blocked: {why}", signal)
                continue
            fresh[symbol] = signal
        if not fresh:
            return
        inputs = []
        for symbol in self.symbols:
            signal = fresh.get(symbol)
            held = self._held.get(symbol)
            position = float(portfolio.positions.get(symbol, 0.0))
            if signal is not None:
                direction, confidence, regime = signal.direction, signal.confidence, signal.regime
            elif position != 0:
                direction = _sign(position)
                confidence = held.confidence if held is not None else PARTIAL_ALIGNMENT_CONFIDENCE
                regime = held.regime if held is not None else None
            else:
                direction, confidence, regime = 0, 0.0, None
            row = rows.get(symbol)
            volatility = (
                row.get("realized_volatility_1440", math.nan) if row is not None else math.nan
            ) * math.sqrt(MINUTES_PER_YEAR)
            inputs.append(
                AllocationInput(
                    symbol,
                    direction,
                    confidence,
                    float(volatility),
                    regime or "",
                    self.features.close(symbol),
                    self.rules[symbol],
                )
            )
        allocation = allocate(inputs, self._correlation, portfolio.equity, self.allocation)
        for symbol in self.symbols:
            target_weight = allocation.weights[symbol]
            signal = fresh.get(symbol)
            if signal is not None:
                if target_weight.quantity == 0:
                    why = "allocation: " + (
                        target_weight.reasons[-1] if target_weight.reasons else "zero weight"
                    )
                    self._outcome(now_ms, time, symbol, "blocked", f"blocked: {why}", signal)
                    continue
                quantity = abs(target_weight.quantity)
                self._outcome(
                    now_ms,
                    time,
                    symbol,
                    "entry",
                    "entry: " + "; ".join(target_weight.reasons),
                    signal,
                    quantity,
                )
                target = _Target(
                    signal.direction * quantity,
                    "entry",
                    signal.signal_type or "entry",
                    f"entry:{time}",
                    False,
                    signal,
                    signal.confidence,
                    expires_ms=time + MINUTE_MS + self.config.decision_minutes * MINUTE_MS,
                )
                self._set_target(symbol, target)
                continue
            position = float(portfolio.positions.get(symbol, 0.0))
            price = self.features.close(symbol)
            if position == 0 or math.isnan(price):
                continue
            actual = position * price / portfolio.equity
            if abs(actual) > abs(target_weight.weight) * (1 + self.config.rebalance_tolerance):
                goal = _sign(position) * abs(target_weight.quantity)
                reason = f"rebalance to the caps: weight {actual:.2%} over {abs(target_weight.weight):.2%}"
                self._record(
                    Decision(
                        now_ms,
                        time,
                        symbol,
                        "rebalance",
                        reason,
                        None,
                        -_sign(position),
                        abs(position) - abs(goal),
                    )
                )
                current = self.targets.get(symbol)
                if current is None or not current.reduce_only:
                    target = _Target(
                        goal,
                        "rebalance",
                        "rebalance to the caps",
                        f"rebalance:{time}",
                        True,
                        expires_ms=time + MINUTE_MS + self.config.decision_minutes * MINUTE_MS,
                    )
                    self._set_target(symbol, target)

    def _outcome(
        self,
        now_ms: int,
        time: int,
        symbol: str,
        kind: str,
        reason: str,
        signal: Signal,
        quantity: float = 0.0,
    ) -> None:
        self._record(Decision(now_ms, time, symbol, kind, reason, signal.id, signal.direction, quantity))

    def _correlation_matrix(self, end: int) -> pd.DataFrame | None:
        """Return the 30-day correlations as the backtest computes them from its forward-filled marks.

        Per hour each symbol's mark is its last close at or before the hour's last bar (of any
        symbol); the returns of those marks are what :func:`correlation_matrix` correlates.
        """
        buckets = sorted({bucket for hourly in self._hourly.values() for bucket in hourly})
        if not buckets:
            return None
        times = [max(h[b][0] for h in self._hourly.values() if b in h) for b in buckets]
        columns = {}
        for symbol in self.symbols:
            hourly = self._hourly[symbol]
            values, last = [], math.nan
            for bucket in buckets:
                entry = hourly.get(bucket)
                if entry is not None and entry[0] <= end:
                    last = entry[1]
                values.append(last)
            columns[symbol] = values
        frame = pd.DataFrame(columns, index=np.asarray(times, dtype=np.int64))
        return correlation_matrix(frame, end, window_days=self.config.correlation_window_days)


class ChurnDecider(_TargetTrader):
    """An exercise mode for the order path, not a strategy: small positions on and off, by the clock.

    Every ``seconds`` the target of each symbol alternates between long ``notional`` (in the
    quote currency, at the first mid seen rounded to two significant digits, so a restart finds
    the same quantity, rounded down to the lot, then fixed) and flat;
    symbol ``i`` is long in periods ``k`` with ``k + i`` even, so the symbols take turns. The
    period, and so the target, follows from ``now_ms`` alone: the same events give the same
    intents, and a restart within a period re-proposes the same client order id (which the
    ledger does not send twice). The intents go through the same rounding, minimums, client
    ids and ``pending`` accounting as the champion's, and the caller's pre-trade checks.

    Args:
        rules: Each symbol's market rules; its keys are the symbols unless ``symbols`` is given.
        seconds: Seconds between target changes.
        notional: Size of the long position, quote currency.
        config: Execution settings (``decision_minutes`` and the strategy ones are unused).
        symbols: The symbols (default: ``rules``' keys).
    """

    def __init__(
        self,
        rules: Mapping[str, MarketRules],
        seconds: float = 5.0,
        notional: float = 200.0,
        config: DeciderConfig | None = None,
        symbols: Sequence[str] | None = None,
    ) -> None:
        super().__init__(rules if symbols is None else symbols, rules, config or DeciderConfig())
        if not seconds > 0 or not notional > 0:
            raise ValueError(f"seconds and notional must be positive, got {seconds}, {notional}")
        self.period_ms = max(1, round(seconds * 1000))
        self.notional = notional
        self.quantities: dict[str, float] = {}
        self._index = {symbol: index for index, symbol in enumerate(self.symbols)}
        self._periods: dict[str, int] = {}

    def on_bar(self, symbol: str, bar: Any) -> None:
        """Ignore bars (churn needs none)."""

    def warm_up(self, symbol: str, candles: pd.DataFrame) -> None:
        """Ignore candles (churn needs none)."""

    def on_book(
        self,
        symbol: str,
        book: DepthBook,
        now_ms: int,
        portfolio: PortfolioView,
        pending: Mapping[str, float],
    ) -> list[OrderIntent]:
        """Take a book event; return the intent toward this period's target, if any (see the class)."""
        self._portfolio, self._pending = portfolio, pending
        self._sync_position(symbol, portfolio, now_ms)
        self._quote(symbol, book, now_ms, 1)
        quote = self.quotes[symbol]
        if quote.bid is None or quote.ask is None:
            return []
        period = now_ms // self.period_ms
        if self._periods.get(symbol) != period:
            self._periods[symbol] = period
            self._churn_target(symbol, period, (quote.bid + quote.ask) / 2.0, now_ms)
        return self._intent(symbol, now_ms, portfolio, pending)

    def _churn_target(self, symbol: str, period: int, mid: float, now_ms: int) -> None:
        rules = self.rules[symbol]
        quantity = self.quantities.get(symbol)
        if quantity is None:
            reference = float(f"{mid:.2g}")  # a restart at a slightly different price sizes the same
            quantity = _floor_lot(self.notional / reference, rules.quantity_step)
            if quantity <= 0 or quantity < rules.min_quantity or quantity * mid < rules.min_notional:
                self._record(
                    Decision(
                        now_ms,
                        None,
                        symbol,
                        "skipped",
                        f"churn: {self.notional:g} at {mid:.10g} "
                        "is under the venue's minimum quantity or notional",
                    )
                )
                return
            self.quantities[symbol] = quantity
        long = (period + self._index[symbol]) % 2 == 0
        expires = (period + 1) * self.period_ms
        reason = f"churn period {period}: {'long ' + format(quantity, '.10g') if long else 'flat'}"
        target = _Target(
            quantity if long else 0.0, "churn", reason, f"churn:{period}", not long, expires_ms=expires
        )
        self.targets[symbol] = target
        self._record(
            Decision(
                now_ms, None, symbol, "entry" if long else "exit", reason, None, 1 if long else -1, quantity
            )
        )


def _as_bar(bar: Any) -> Bar:
    """Return ``bar`` as a :class:`Bar` (from a Bar, a tuple, or a feed's bar event)."""
    if isinstance(bar, Bar):
        return bar
    if isinstance(bar, tuple) and len(bar) == 6:
        return Bar(int(bar[0]), float(bar[1]), float(bar[2]), float(bar[3]), float(bar[4]), float(bar[5]))
    time = getattr(bar, "open_time_ms", None)
    if time is None:
        time = bar.timestamp
    return Bar(
        int(time), float(bar.open), float(bar.high), float(bar.low), float(bar.close), float(bar.volume)
    )


# -- composition -------------------------------------------------------------------------------


def warm_up_minutes(settings: Settings, complete: bool = True) -> int:
    """Return how many closed 1-minute bars per symbol to warm the decider up on.

    ``complete``: enough for every feature to equal the batch matrix built on a long history:
    the ATR percentile's window (30 days by default) and one refresh period more than the
    volume profile's, the longest higher-timeframe warm-up, and the bars the tails read
    (44,641 minutes for the default spec). Otherwise only enough for every feature to be
    defined (10,140 for the default: the volume profile's 7 days and an hour); the ATR
    percentile and the regime then read a shorter window than the batch's until 30 days have
    streamed.
    """
    from tradeflow.features.store import feature_spec

    spec = feature_spec(settings)
    lookback = Lookback.from_spec(spec)
    periods = max(
        spec.macd_slow + spec.macd_signal,
        2 * spec.adx_period,
        spec.bollinger_period,
        spec.rsi_period + 1,
        spec.atr_period + 1,
    )
    timeframes = max(
        (timeframe_ms(name) // MINUTE_MS * (periods + 1) for name in spec.higher_timeframes), default=0
    )
    defined = max(
        spec.volume_profile_window_minutes + spec.volume_profile_refresh_minutes,
        spec.regime_atr_min_periods + spec.atr_period + 1,
        timeframes,
        lookback.kept_rows,
    )
    if not complete:
        return defined
    return max(defined, spec.regime_atr_window + lookback.rows)


def build_decider(
    settings: Settings,
    strategy: str,
    symbols: Sequence[str],
    model: Mapping[str, Any] | None,
    history: Mapping[str, pd.DataFrame],
    session_key: str = "",
) -> Decider | ChurnDecider:
    """Return the session's decider, warmed up on ``history``.

    Args:
        settings: The configuration (``[strategy]``, ``[features]``, ``[backtest]``,
            ``[execution]``, the simulated symbols' market rules).
        strategy: ``champion`` (:class:`Decider`) or ``churn`` (:class:`ChurnDecider`).
        symbols: The symbols to trade.
        model: ``{"model": ..., "version": ...}`` as :func:`models.serving.serving_model` gives
            it, or None: no ``ml`` family (the other families still decide).
        history: Each symbol's closed 1-minute candles to warm up on, oldest first.
        session_key: Mixed into client order ids (e.g. ``"<venue>:<strategy>"``).

    Raises:
        ValueError: on an unknown strategy, or a model needing features the feature set lacks.
    """
    from tradeflow.execution.scoring import scorer_for
    from tradeflow.features.store import feature_spec
    from tradeflow.strategy import settings as strategy_settings

    known = strategy_settings.market_rules(settings)
    rules = {symbol: known.get(symbol, MarketRules()) for symbol in symbols}
    config = DeciderConfig(
        decision_minutes=strategy_settings.decision_minutes(settings),
        correlation_window_days=settings.strategy.correlation_window_days,
        session_key=session_key,
    )
    if strategy == "churn":
        execution = settings.execution
        return ChurnDecider(rules, execution.churn_seconds, execution.churn_notional, config, symbols)
    if strategy != "champion":
        raise ValueError(f"unknown strategy {strategy!r}; expected 'champion' or 'churn'")
    scorer = scorer_for(model["model"]) if model is not None and model.get("model") is not None else None
    decider = Decider(
        feature_spec(settings),
        strategy_settings.signal_config(settings),
        strategy_settings.allocation_limits(settings),
        strategy_settings.exit_config(settings),
        strategy_settings.protection_config(settings),
        rules,
        scorer,
        config,
        model_version=None if model is None else model.get("version"),
        symbols=symbols,
    )
    for symbol in decider.symbols:
        candles = history.get(symbol)
        if candles is not None and len(candles):
            decider.warm_up(symbol, candles)
    return decider
