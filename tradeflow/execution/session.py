"""The trading session: market events in, decisions, risk checks, orders, ledger and audit out.

One :class:`TradingSession` trades one venue. The composition root
(:mod:`tradeflow.execution.runner`) builds it with a broker, a decider, the pre-trade risk checks,
the ledger and the audit log, and feeds it market events from the websocket feed:

- :meth:`on_book` (the hot path, synchronous): the decider turns the book event into order
  intents; each goes through :class:`~tradeflow.execution.risk.PreTradeRisk`; accepted ones are
  staged in the ledger (write-ahead, with a deterministic client order id) and sent by a
  background task; refused ones are recorded with their reason.
- :meth:`on_bar`: a closed 1-minute bar for the bar-based features and the exits.
- :meth:`on_status`: feed status (connected, resync, in sync) for health, metrics and alerts.

Around that, :meth:`run` reconciles with the venue before trading starts and then periodically,
watches the kill switch file, tracks equity for the protections (drawdown and daily loss move the
state to REDUCING or HALTED), and on stop cancels or keeps open orders as configured.

What it guarantees, and how:

- **No order is sent twice.** Every order is staged in the ledger under its client order id
  before it is sent; a decision that maps to an id the ledger already has is not sent again; a
  broker that cannot tell whether an order arrived queries by that id before any retry.
- **No order is lost.** After a crash an order is in the ledger as staged (or further); the
  reconciliation on start asks the venue about every open ledger order and adopts what the
  venue says (see :mod:`tradeflow.execution.reconcile`).
- **No order on a book that is not in sync**, and none while HALTED except reduce-only ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tradeflow.execution.alerts import AlertCenter
from tradeflow.execution.health import TRADING_STATE_CODES, HealthState, Metrics
from tradeflow.execution.killswitch import KillSwitch
from tradeflow.execution.orders import FINAL_STATES, apply_report, fill_payload
from tradeflow.execution.reconcile import Reconciliation, reconcile
from tradeflow.execution.risk import MarketView, OrderIntent, PortfolioView, PreTradeRisk, RiskDecision
from tradeflow.ledger.store import Ledger
from tradeflow.strategy.protections import ACTIVE, HALTED

if TYPE_CHECKING:
    from tradeflow.execution.brokers import Broker, FillReport, OrderReport

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
REJECTION_COOLDOWN_MS = 1_000
"""After a refusal, a symbol's next intent waits this long (each attempt is still recorded)."""


class Book(Protocol):
    """What the session reads off a local order book."""

    @property
    def in_sync(self) -> bool: ...

    def best_bid(self) -> tuple[float, float] | None: ...

    def best_ask(self) -> tuple[float, float] | None: ...


class Decider(Protocol):
    """Turns market events into order intents (see :mod:`tradeflow.execution.decider`)."""

    def on_bar(self, symbol: str, bar: Any) -> None: ...

    def on_book(
        self, symbol: str, book: Any, now_ms: int, portfolio: PortfolioView, pending: Mapping[str, float]
    ) -> list[OrderIntent]: ...


class Audit(Protocol):
    """The audit chain (``tradeflow.audit.chain.AuditLog``)."""

    def append(self, kind: str, payload: Mapping[str, Any]) -> Any: ...


@dataclass
class SessionConfig:
    """How a session behaves (from ``[execution]``)."""

    venue: str
    symbols: list[str]
    mode: str = "paper"
    client_prefix: str = "tf"
    on_shutdown: str = "cancel"
    reconcile_seconds: float = 30.0
    time_in_force: str = "IOC"
    order_poll_seconds: float = 1.0
    quote_asset: str = "USDT"
    strategy: str = "champion"


@dataclass
class SessionSummary:
    """What a session did, for the CLI, the Prefect artifact and the tests."""

    venue: str
    mode: str
    started_ms: int
    stopped_ms: int = 0
    events: int = 0
    decisions: int = 0
    orders_sent: int = 0
    fills: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    reconciliations: int = 0
    differences: int = 0
    resyncs: int = 0
    reconnects: int = 0
    state: str = ACTIVE
    positions: dict[str, float] = field(default_factory=dict)
    equity: float = 0.0
    start_equity: float = 0.0
    open_orders_at_stop: int = 0
    cancelled_at_stop: int = 0
    latency_p50_us: float | None = None
    latency_p99_us: float | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    decision_kinds: dict[str, int] = field(default_factory=dict)
    """The decider's decisions and non-decisions by kind (signal, no_signal, entry, exit, ...)."""
    last_reasons: list[dict[str, Any]] = field(default_factory=list)
    """The decider's newest decision of each kind, with its reason."""
    probabilities: dict[str, float | None] = field(default_factory=dict)
    """The champion's latest probability of a rise per symbol (champion strategy only)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TradingSession:
    """Trades one venue until stopped (see the module docstring)."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        broker: Broker,
        decider: Decider,
        risk: PreTradeRisk,
        ledger: Ledger,
        books: Mapping[str, Book],
        audit: Audit | None = None,
        metrics: Metrics | None = None,
        health: HealthState | None = None,
        alerts: AlertCenter | None = None,
        kill_switch: KillSwitch | None = None,
        protections: Any | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Wire a session; nothing runs until :meth:`run`."""
        self.config = config
        self.broker = broker
        self.decider = decider
        self.risk = risk
        self.ledger = ledger
        self.books = books
        self.audit = audit
        self.metrics = metrics or Metrics()
        self.health = health or HealthState(mode=config.mode, venue=config.venue)
        self.alerts = alerts or AlertCenter([])
        self.kill_switch = kill_switch
        self.protections = protections
        self.clock = clock
        self.summary = SessionSummary(config.venue, config.mode, clock())
        self.positions: dict[str, float] = dict.fromkeys(config.symbols, 0.0)
        self.marks: dict[str, float] = {}
        self.cash = 0.0
        self.day_start_equity = 0.0
        self._day = -1
        self.pending: dict[str, str] = {}
        """Symbol -> client order id of the order in flight or open there (one at a time)."""
        self._pending_quantity: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._cooldown: dict[str, int] = {}
        self._latencies: list[float] = []
        self._tick_ms: dict[str, int] = {}
        self.ack_latencies_ms: list[float] = []
        self.ack_breakdown: list[tuple[float, float, float, float]] = []
        """Per order, in ms: feed (tick to received), decide (to the send task), stage, send (to answer)."""
        self._received_ms: dict[str, float] = {}
        self._last_reason: dict[str, dict[str, Any]] = {}
        self._signals_recorded: set[str] = set()
        """Venue time of the book event behind each order to the broker's answer, in ms."""
        self._kill_engaged = False
        self._protection_state = ACTIVE
        self._ready = False

    # ---------------------------------------------------------------- state and portfolio --

    def equity(self) -> float:
        """Cash plus positions at their marks (unmarked positions count at zero)."""
        return self.cash + sum(q * self.marks.get(s, 0.0) for s, q in self.positions.items() if q)

    def portfolio(self) -> PortfolioView:
        """The portfolio as the risk checks and the decider see it now."""
        return PortfolioView(
            self.equity(), self.day_start_equity or self.equity(), self.positions, self.marks
        )

    def _apply_fill(self, fill: FillReport) -> None:
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        self.positions[fill.symbol] = self.positions.get(fill.symbol, 0.0) + signed
        self.cash -= signed * fill.price
        if fill.fee_asset == self.config.quote_asset:
            self.cash -= fill.fee
        elif fill.fee_asset and fill.symbol.startswith(f"{fill.fee_asset}/"):
            self.positions[fill.symbol] -= fill.fee
        self.summary.fills += 1
        self.metrics.fills.labels(symbol=fill.symbol).inc()

    def _load_portfolio(self, balances: Mapping[str, tuple[float, float]]) -> None:
        """Positions from the venue's base balances (spot), cash from the quote balance."""
        free, locked = balances.get(self.config.quote_asset, (0.0, 0.0))
        self.cash = free + locked
        for symbol in self.config.symbols:
            base = symbol.split("/")[0]
            free, locked = balances.get(base, (0.0, 0.0))
            self.positions[symbol] = free + locked

    def _set_state(self, state: str, reason: str, source: str) -> None:
        if state == self.risk.state:
            return
        before = self.risk.state
        self.risk.set_state(state)
        now = self.clock()
        self.health.trading_state = state
        self.metrics.trading_state.set(TRADING_STATE_CODES[state])
        self.ledger.record_risk_event(
            now, "state_change", reason, detail={"from": before, "source": source}, state=state
        )
        self._audit(
            "trading_state",
            {"venue": self.config.venue, "from": before, "to": state, "reason": reason, "source": source},
        )
        if state == HALTED:
            self.alerts.emit("halt", f"trading HALTED on {self.config.venue}: {reason}", {"source": source})
            self._spawn(self._cancel_open_orders("halted"))

    def _audit(self, kind: str, payload: Mapping[str, Any]) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(kind, payload)
        except Exception:  # the ledger has it; an audit outage must not stop risk handling
            log.exception("could not append %s to the audit chain", kind)

    # ---------------------------------------------------------------------- market events --

    def on_book(self, symbol: str, received_ns: int | None = None) -> list[RiskDecision]:
        """Decide on a book event of ``symbol`` (the hot path); return the risk decisions made.

        ``received_ns`` (``time.time_ns()`` when the event arrived) starts the decision latency
        clock; by default it starts now.
        """
        started = time.time_ns() if received_ns is None else received_ns
        self.summary.events += 1
        book = self.books[symbol]
        best_bid, best_ask = book.best_bid(), book.best_ask()
        bid = None if best_bid is None else best_bid[0]
        ask = None if best_ask is None else best_ask[0]
        if bid is not None and ask is not None:
            self.marks[symbol] = (bid + ask) / 2.0
        if not self._ready or symbol in self.pending:
            return []
        if any(q and s not in self.marks for s, q in self.positions.items()):
            return []  # a held position has no price yet (just started): equity is not known
        now = self.clock()
        if self._cooldown.get(symbol, 0) > now:
            return []
        portfolio = self.portfolio()
        intents = self.decider.on_book(symbol, book, now, portfolio, self._pending_quantity)
        if not intents:
            self._observe(started)
            return []
        market = MarketView(book.in_sync, bid, ask, now)
        decisions = []
        for intent in intents:
            decision = self.risk.check(intent, market, portfolio)
            decisions.append(decision)
            self.summary.decisions += 1
            if decision.accepted:
                self.pending[intent.symbol] = intent.client_order_id
                self._pending_quantity[intent.symbol] = intent.side * intent.quantity
                self.risk.record_sent(now)
                self._spawn(self._send(intent, now, time.time_ns() / 1e6), name=intent.client_order_id)
            else:
                self._record_rejection(intent, decision)
                rejected = getattr(self.decider, "on_rejected", None)
                if rejected is not None:
                    rejected(intent, decision.check)
        self._observe(started)
        return decisions

    def _observe(self, started_ns: int) -> None:
        elapsed = (time.time_ns() - started_ns) / 1e9
        self.metrics.decision_latency.observe(elapsed)
        if len(self._latencies) < 200_000:
            self._latencies.append(elapsed)

    def on_bar(self, symbol: str, bar: Any) -> None:
        """A closed 1-minute bar."""
        self.metrics.events.labels(kind="bar").inc()
        self.decider.on_bar(symbol, bar)

    def on_status(self, symbol: str | None, status: str, time_ms: int | None = None) -> None:
        """Feed status: ``connected``, ``disconnected``, ``resyncing``, ``in_sync``, ``reconnect``."""
        now = self.clock() if time_ms is None else time_ms
        if status == "resyncing" and symbol is not None:
            self.summary.resyncs += 1
            self.metrics.resyncs.labels(symbol=symbol).inc()
            self.alerts.on_resync(symbol, now)
        elif status == "reconnect":
            self.summary.reconnects += 1
            self.metrics.reconnects.labels(venue=self.config.venue).inc()
        if symbol is not None:
            in_sync = self.books[symbol].in_sync if symbol in self.books else False
            self.health.books[symbol] = in_sync
            self.metrics.book_in_sync.labels(symbol=symbol).set(1 if in_sync else 0)

    def on_event_time(self, symbol: str, event_time_ms: int, receive_ms: int) -> None:
        """Record an event's lag (receive time minus the venue's event time)."""
        self._tick_ms[symbol] = event_time_ms
        self._received_ms[symbol] = time.time_ns() / 1e6
        self.health.last_event_ms = receive_ms
        self.metrics.event_lag.labels(symbol=symbol).set(max(0, receive_ms - event_time_ms) / 1000.0)
        self.metrics.last_event_time.set(receive_ms / 1000.0)

    def _record_rejection(self, intent: OrderIntent, decision: RiskDecision) -> None:
        self._cooldown[intent.symbol] = decision.time_ms + REJECTION_COOLDOWN_MS
        self.summary.rejections[decision.check] = self.summary.rejections.get(decision.check, 0) + 1
        self.metrics.rejections.labels(check=decision.check).inc()
        detail = {
            "check": decision.check,
            "side": intent.side,
            "quantity": intent.quantity,
            "price": intent.price,
            "client_order_id": intent.client_order_id,
        }
        self.ledger.record_risk_event(
            decision.time_ms,
            "rejection",
            decision.reason,
            symbol=intent.symbol,
            detail=detail,
            state=self.risk.state,
        )
        self._audit(
            "risk_rejection",
            {"venue": self.config.venue, "symbol": intent.symbol, "reason": decision.reason, **detail},
        )

    # --------------------------------------------------------------------------- orders --

    def _spawn(self, work: Any, name: str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _request(self, intent: OrderIntent) -> Any:
        from tradeflow.execution.brokers import OrderRequest

        return OrderRequest(
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side="buy" if intent.side > 0 else "sell",
            quantity=intent.quantity,
            price=intent.price,
            time_in_force=self.config.time_in_force if intent.price is not None else "GTC",
        )

    async def _send(self, intent: OrderIntent, decided_ms: int, decided_wall_ms: float = 0.0) -> None:
        cid = intent.client_order_id
        started_ms = time.time_ns() / 1e6
        try:
            signal_id = self._record_signal(cid)
            why = (
                getattr(self.decider, "reason", lambda _cid: None)(cid) or f"{self.config.strategy} decision"
            )
            order = self.ledger.stage_order(
                cid, self.config.venue, intent.symbol, "buy" if intent.side > 0 else "sell",
                "limit" if intent.price is not None else "market", intent.quantity, intent.price,
                signal_id=signal_id, reason=why, time=decided_ms,
            )  # fmt: skip
            if order.state != "staged" or order.created_at != decided_ms:
                # A decision already taken (before a restart): its order exists; never send it again.
                log.info(
                    "decision %s already has order %s in state %s; not sent again", cid, cid, order.state
                )
                self._release(intent.symbol, cid)
                return
            self._audit("order", self._order_payload(intent, "staged", decided_ms))
            if self.broker.name == "staging":
                self._release(intent.symbol, cid)
                return
            self.summary.orders_sent += 1
            self.metrics.orders_sent.inc()
            tick_ms = self._tick_ms.get(intent.symbol)
            staged_ms = time.time_ns() / 1e6
            try:
                report = await self.broker.submit(self._request(intent))
                acked_ms = time.time_ns() / 1e6
                if tick_ms is not None and len(self.ack_latencies_ms) < 100_000:
                    self.ack_latencies_ms.append(acked_ms - tick_ms)
                    received = self._received_ms.get(intent.symbol, tick_ms)
                    self.ack_breakdown.append(
                        (
                            received - tick_ms,
                            started_ms - received,
                            staged_ms - started_ms,
                            acked_ms - staged_ms,
                        )
                    )
            except Exception as error:
                now = self.clock()
                self.ledger.transition(cid, "unknown", "timeout", {"error": str(error)[:300]}, time=now)
                self._audit("order", {"client_order_id": cid, "event": "unknown", "error": str(error)[:300]})
                log.warning("order %s outcome unknown (%s); reconciliation will settle it", cid, error)
                return  # stays pending until a query settles it
            self.settle(report)
        except Exception:
            log.exception("sending order %s failed", cid)
            self._release(intent.symbol, cid)

    def _record_signal(self, client_order_id: str) -> str | None:
        """Record (once) the signal an intent follows from, in the ledger and the audit chain."""
        signal = getattr(self.decider, "signal_of", lambda _cid: None)(client_order_id)
        if signal is None:
            return None
        if signal.id not in self._signals_recorded:
            self.ledger.record_signal(
                signal_id=signal.id, fingerprint=signal.fingerprint, symbol=signal.symbol, time=signal.time,
                direction=signal.direction, confidence=signal.confidence, signal_type=signal.signal_type,
                explanation=signal.explanation, probability=signal.probability, regime=signal.regime,
                model_version=signal.model_version,
            )  # fmt: skip
            self._signals_recorded.add(signal.id)
            self._audit(
                "signal",
                {"venue": self.config.venue, "signal_id": signal.id, "symbol": signal.symbol,
                 "direction": signal.direction, "confidence": signal.confidence,
                 "probability": signal.probability, "signal_type": signal.signal_type,
                 "model_version": signal.model_version, "source": "stream"},
            )  # fmt: skip
        return str(signal.id)

    def _order_payload(self, intent: OrderIntent, event: str, time_ms: int) -> dict[str, Any]:
        return {
            "venue": self.config.venue,
            "client_order_id": intent.client_order_id,
            "event": event,
            "symbol": intent.symbol,
            "side": "buy" if intent.side > 0 else "sell",
            "quantity": intent.quantity,
            "price": intent.price,
            "time_ms": time_ms,
            "mode": self.config.mode,
        }

    def settle(self, report: OrderReport, kind: str | None = None) -> None:
        """Apply a broker report to the ledger, the portfolio, metrics and the audit chain."""
        now = self.clock()
        applied = apply_report(self.ledger, report, now, kind=kind)
        on_fill = getattr(self.decider, "on_fill", None)
        for fill in applied.new_fills:
            self._apply_fill(fill)
            if on_fill is not None:
                try:
                    on_fill(
                        fill.symbol, 1 if fill.side == "buy" else -1, fill.quantity, fill.price, fill.time_ms
                    )
                except Exception:  # the ledger has the fill; the decider re-reads positions anyway
                    log.exception("the decider could not take fill %s", fill.venue_trade_id)
            self._audit("fill", fill_payload(fill, self.config.venue))
        if applied.order.state != applied.moved_from:
            self._audit(
                "order",
                {
                    "venue": self.config.venue,
                    "client_order_id": report.client_order_id,
                    "event": applied.order.state,
                    "from": applied.moved_from,
                    "venue_order_id": report.venue_order_id,
                    "filled_quantity": report.filled_quantity,
                    "reason": report.reason,
                },
            )
        if applied.order.state in FINAL_STATES:
            self._release(report.symbol, report.client_order_id)

    def _release(self, symbol: str, cid: str) -> None:
        if self.pending.get(symbol) == cid:
            del self.pending[symbol]
            self._pending_quantity.pop(symbol, None)

    async def _poll_pending(self) -> None:
        """Ask the broker about orders still open or unknown (resting GTC orders, lost answers)."""
        for symbol, cid in list(self.pending.items()):
            if any(not t.done() and t.get_name() == cid for t in self._tasks):
                continue  # its send is still under way (the broker queries before any retry)
            order = self.ledger.order(cid)
            if order is None or order.state in FINAL_STATES:
                self._release(symbol, cid)
                continue
            if order.state == "staged" and self.clock() - order.created_at < 2_000:
                continue
            report = await self.broker.query(cid, symbol)
            if report is None:
                if self.clock() - order.updated_at > 10_000:
                    self.ledger.transition(cid, "rejected", "queried", {"reason": "not found at the venue"})
                    self._release(symbol, cid)
                continue
            self.settle(report, kind="queried")

    async def _cancel_open_orders(self, why: str) -> int:
        cancelled = 0
        for order in self.ledger.open_orders(self.config.venue):
            if order.state == "staged" and self.broker.name == "staging":
                continue
            try:
                report = await self.broker.cancel(order.client_order_id, order.symbol)
            except Exception as error:
                log.warning("could not cancel %s (%s): %s", order.client_order_id, why, error)
                continue
            self.settle(report, kind="cancelled" if report.status == "cancelled" else None)
            cancelled += report.status == "cancelled"
        return cancelled

    # ----------------------------------------------------------------------- housekeeping --

    async def reconcile_now(self, *, startup: bool = False) -> Reconciliation:
        """Reconcile with the venue; record and alert differences; reload the portfolio on start."""
        now = self.clock()
        in_flight = set() if startup else set(self.pending.values())
        result = await reconcile(
            self.ledger, self.broker, self.config.venue, self.config.symbols, self.config.client_prefix, now,
            in_flight=in_flight, grace_ms=0 if startup else 5_000,
        )  # fmt: skip
        self.summary.reconciliations += 1
        self.summary.differences += len(result.differences)
        self.health.last_reconciliation_ms = now
        for difference in result.differences:
            self.metrics.reconciliation_differences.labels(kind=difference.kind).inc()
            self.ledger.record_risk_event(
                now, "reconciliation", difference.kind, symbol=difference.symbol, detail=difference.to_dict()
            )
        self._audit("reconciliation", {"venue": self.config.venue, "startup": startup, **result.summary()})
        if result.differences:
            self.alerts.emit(
                "reconciliation",
                f"{len(result.differences)} difference(s) between the ledger and {self.config.venue}",
                result.summary(),
            )
        if startup or not self.pending:
            self._load_portfolio(result.balances)
        return result

    def _check_kill_switch(self) -> None:
        if self.kill_switch is None:
            return
        state = self.kill_switch.state()
        if state.engaged and not self._kill_engaged:
            self._kill_engaged = True
            self.risk.kill_switch = True
            self._audit("kill_switch", {"engaged": True, "reason": state.reason, "source": state.source})
            self._set_state(HALTED, f"kill switch: {state.reason or 'engaged'}", state.source or "file")
        elif not state.engaged and self._kill_engaged:
            self._kill_engaged = False
            self.risk.kill_switch = False
            self._audit("kill_switch", {"engaged": False, "source": "file"})
            self._set_state(self._protection_state, "kill switch released", "file")

    def _check_protections(self) -> None:
        now = self.clock()
        equity = self.equity()
        day = now // DAY_MS
        if day != self._day:
            self._day, self.day_start_equity = day, equity
        self.metrics.equity.set(equity)
        if self.protections is None or equity <= 0:
            return  # nothing to protect (an empty account)
        events = self.protections.on_equity(now, equity)
        state = self.protections.state
        for event in events:
            self.ledger.record_risk_event(now, "protection", event.reason, symbol=event.symbol, state=state)
        if state != self._protection_state:
            self._protection_state = state
            if not self._kill_engaged:
                self._set_state(state, events[-1].reason if events else "protections", "protections")

    def _drain_decisions(self) -> None:
        drain = getattr(self.decider, "drain", None)
        if drain is None:
            return
        for decision in drain():
            kinds = self.summary.decision_kinds
            kinds[decision.kind] = kinds.get(decision.kind, 0) + 1
            self._last_reason[decision.kind] = {
                "kind": decision.kind,
                "symbol": decision.symbol,
                "time_ms": decision.time_ms,
                "reason": decision.reason,
            }

    def _update_metrics(self) -> None:
        self._drain_decisions()
        self.metrics.set_orders(self.ledger.order_counts(self.config.venue))
        positions = [p for p in self.ledger.positions() if p.venue == self.config.venue]
        self.metrics.realized_pnl.set(sum(float(p.realized_pnl) for p in positions))
        unrealized = 0.0
        for position in positions:
            mark = self.marks.get(position.symbol)
            if mark is not None and position.quantity:
                unrealized += float(position.quantity) * (mark - float(position.average_price))
        self.metrics.unrealized_pnl.set(unrealized)

    # ------------------------------------------------------------------------------ run --

    async def start(self) -> Reconciliation:
        """Reconcile with the venue and get ready to trade (call before market events)."""
        self.health.phase = "reconciling"
        self.ledger.check_schema()
        result = await self.reconcile_now(startup=True)
        for order in self.ledger.open_orders(self.config.venue):
            if order.state != "staged" and order.symbol in self.positions:
                # Still open at the venue (a resting order adopted after a restart): in flight.
                self.pending[order.symbol] = order.client_order_id
                remaining = float(order.quantity - order.filled_quantity)
                self._pending_quantity[order.symbol] = remaining if order.side == "buy" else -remaining
        self.summary.start_equity = self.equity()
        self._check_kill_switch()
        self._check_protections()
        self._ready = True
        self.health.phase = "running"
        self._audit(
            "trading_state",
            {
                "venue": self.config.venue,
                "to": self.risk.state,
                "event": "session_start",
                "mode": self.config.mode,
            },
        )
        return result

    async def housekeeping(self, stop: asyncio.Event) -> None:
        """Kill switch, protections, order polling, metrics and periodic reconciliation, until ``stop``."""
        last_reconcile = time.monotonic()
        last_poll = time.monotonic()
        last_metrics = 0.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)
            try:
                self._check_kill_switch()
                self._check_protections()
                monotonic = time.monotonic()
                if monotonic - last_poll >= self.config.order_poll_seconds:
                    last_poll = monotonic
                    await self._poll_pending()
                if monotonic - last_reconcile >= self.config.reconcile_seconds:
                    last_reconcile = monotonic
                    await self.reconcile_now()
                if monotonic - last_metrics >= 1.0:
                    last_metrics = monotonic
                    self._update_metrics()
            except Exception:
                log.exception("housekeeping step failed; will retry")

    async def shutdown(self) -> SessionSummary:
        """Stop trading: wait for orders in flight, then cancel or keep open orders, reconcile."""
        self._ready = False
        self.health.phase = "stopping"
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10.0)
        open_orders = [o for o in self.ledger.open_orders(self.config.venue) if o.state != "staged"]
        self.summary.open_orders_at_stop = len(open_orders)
        if self.config.on_shutdown == "cancel" and open_orders:
            self.summary.cancelled_at_stop = await self._cancel_open_orders("shutdown")
        if self.broker.name != "staging":
            with contextlib.suppress(Exception):
                await self.reconcile_now()
        self._update_metrics()
        await self.alerts.drain()
        self._finish_summary()
        self._audit("trading_state", {"venue": self.config.venue, "event": "session_stop", **self._brief()})
        self.health.phase = "stopped"
        return self.summary

    def _brief(self) -> dict[str, Any]:
        return {
            "orders_sent": self.summary.orders_sent,
            "fills": self.summary.fills,
            "rejections": self.summary.rejections,
            "differences": self.summary.differences,
        }

    def _finish_summary(self) -> None:
        s = self.summary
        s.stopped_ms = self.clock()
        s.state = self.risk.state
        s.positions = {k: v for k, v in self.positions.items() if v}
        s.equity = self.equity()
        s.alerts = [{"kind": a.kind, "summary": a.summary} for a in self.alerts.sent]
        self._drain_decisions()
        s.last_reasons = sorted(self._last_reason.values(), key=lambda r: r["time_ms"])[-6:]
        probabilities = getattr(self.decider, "probabilities", None)
        if probabilities:
            s.probabilities = {k: (None if v is None else float(v)) for k, v in probabilities.items()}
        if self._latencies:
            ordered = sorted(self._latencies)
            s.latency_p50_us = ordered[len(ordered) // 2] * 1e6
            s.latency_p99_us = ordered[min(len(ordered) - 1, math.ceil(len(ordered) * 0.99) - 1)] * 1e6


__all__ = ["SessionConfig", "SessionSummary", "TradingSession"]
