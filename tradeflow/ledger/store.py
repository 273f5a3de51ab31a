"""The trading ledger: the SQL record of what the execution flow decided, sent and got back.

It holds signals, orders (with every step of their life as numbered order events), fills, the
positions and balances they lead to, and risk events (rejections, kill switches, risk state
changes, reconciliation findings). :class:`Ledger` is the only place that opens SQLAlchemy
sessions; each method is one short transaction and returns frozen dataclasses, never ORM
objects.

Idempotency rules, all enforced by unique constraints (a concurrent duplicate fails to insert,
is caught, and the existing row is read back), so a retried or replayed call never doubles
anything:

- a signal is recorded once per ``signal_id``;
- an order is staged once per ``client_order_id`` (deterministic per decision): staging it
  again returns the existing order;
- a fill is recorded once per ``(venue, venue_trade_id)``; a fill without a trade id cannot be
  recognised again and is always recorded;
- order events are numbered per order, and ``(order_id, sequence)`` is unique, so two writers
  cannot both append event *n*.

Order states move only along :data:`ALLOWED_TRANSITIONS`; staying in the same state (a query,
a cancel request) is always allowed. Fills are venue facts: they are always recorded, and move
the order to ``partially_filled`` or ``filled`` when that transition is allowed (a late fill of
a cancelled order keeps it cancelled). Realized PnL is in the quote currency and excludes fees.

The default database is SQLite, a file under the data folder (:func:`default_url`); production
uses PostgreSQL (``postgresql+psycopg://user@host:5432/dbname``). The schema is managed by
Alembic (its ``alembic_version`` table is the schema version); :meth:`Ledger.open` upgrades it
to the newest revision, or refuses to work on a schema that is behind.
"""

from __future__ import annotations

import time as clock
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tradeflow.ledger import schema
from tradeflow.ledger.schema import to_decimal

Number = Decimal | int | float | str
"""Anything :func:`tradeflow.ledger.schema.to_decimal` accepts."""

MIGRATIONS: Final = Path(__file__).parent / "migrations"

TERMINAL_STATES: Final = frozenset({"filled", "cancelled", "rejected"})
ALLOWED_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "staged": frozenset({"submitted", "rejected", "cancelled", "unknown"}),
    "submitted": frozenset({"new", "partially_filled", "filled", "cancelled", "rejected", "unknown"}),
    "new": frozenset({"partially_filled", "filled", "cancelled", "rejected", "unknown"}),
    "partially_filled": frozenset({"filled", "cancelled", "unknown"}),
    "unknown": frozenset({"submitted", "new", "partially_filled", "filled", "cancelled", "rejected"}),
    "filled": frozenset(),
    "cancelled": frozenset(),
    "rejected": frozenset(),
}
"""From each order state, the states it may move to (besides staying where it is)."""

_ATTEMPTS: Final = 5
_ADVISORY_LOCK: Final = 0x7466_6C65_6467  # "tfledg": serialises concurrent PostgreSQL migrations.

Result = TypeVar("Result")


class LedgerError(Exception):
    """A ledger operation cannot be done."""


class LedgerSchemaError(LedgerError):
    """The database schema is not at the revision this code needs."""


class InvalidTransition(LedgerError):  # noqa: N818 - the name the execution flow uses
    """An order cannot move from its current state to the one asked for."""


class UnknownOrder(LedgerError):  # noqa: N818
    """No order has the given client order id."""


@dataclass(frozen=True)
class Order:
    """An order as stored."""

    id: int
    client_order_id: str
    venue: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    filled_quantity: Decimal
    state: str
    venue_order_id: str | None
    signal_id: str | None
    reason: str
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class OrderEvent:
    """One step of an order's life; ``state`` is the order's state after it."""

    sequence: int
    time: int
    kind: str
    state: str
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class Fill:
    """An execution reported by the venue."""

    client_order_id: str
    venue: str
    venue_trade_id: str | None
    time: int
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: str


@dataclass(frozen=True)
class Position:
    """The net position in one symbol at one venue (quantity is negative when short)."""

    venue: str
    symbol: str
    quantity: Decimal
    average_price: Decimal
    realized_pnl: Decimal
    updated_at: int


@dataclass(frozen=True)
class Balance:
    """The free and locked amount of one asset at one venue."""

    venue: str
    asset: str
    free: Decimal
    locked: Decimal
    updated_at: int


@dataclass(frozen=True)
class Signal:
    """A recorded trading signal."""

    signal_id: str
    fingerprint: str
    symbol: str
    time: int
    direction: int
    confidence: float
    probability: float | None
    signal_type: str
    regime: str | None
    model_version: str | None
    explanation: str
    created_at: int


@dataclass(frozen=True)
class RiskEvent:
    """A recorded risk decision."""

    time: int
    kind: str
    symbol: str | None
    reason: str
    detail: dict[str, Any] | None
    state: str | None


def now_ms() -> int:
    """Return the current UTC time in milliseconds."""
    return clock.time_ns() // 1_000_000


def default_url(data_dir: Path) -> str:
    """Return the URL of the default SQLite ledger, ``<data_dir>/ledger.db``."""
    return f"sqlite:///{(data_dir / 'ledger.db').as_posix()}"


def alembic_config(url: str | None = None) -> Config:
    """Build the Alembic configuration of the ledger's migrations (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _check(name: str, value: str, allowed: tuple[str, ...] | frozenset[str]) -> None:
    """Raise ValueError unless the value is one of the allowed ones."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, not {value!r}")


def _order(row: schema.Order) -> Order:
    return Order(
        id=row.id,
        client_order_id=row.client_order_id,
        venue=row.venue,
        symbol=row.symbol,
        side=row.side,
        type=row.type,
        quantity=row.quantity,
        price=row.price,
        filled_quantity=row.filled_quantity,
        state=row.state,
        venue_order_id=row.venue_order_id,
        signal_id=row.signal_id,
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _position(row: schema.Position) -> Position:
    return Position(
        venue=row.venue,
        symbol=row.symbol,
        quantity=row.quantity,
        average_price=row.average_price,
        realized_pnl=row.realized_pnl,
        updated_at=row.updated_at,
    )


def apply_fill(
    quantity: Decimal, average_price: Decimal, realized_pnl: Decimal, delta: Decimal, price: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """Apply a signed fill to a position; return its new quantity, average price and realized PnL.

    An increase (or opening) averages the entry price by quantity. A reduction realizes
    ``closed quantity * (price - average price)`` (sign flipped for shorts) and keeps the average;
    crossing through zero opens the remainder at the fill price; a flat position has average 0.
    """
    if quantity == 0 or (quantity > 0) == (delta > 0):
        total = quantity + delta
        average = (abs(quantity) * average_price + abs(delta) * price) / abs(total)
        return total, to_decimal(average), realized_pnl
    closed = min(abs(delta), abs(quantity))
    direction = Decimal(1) if quantity > 0 else Decimal(-1)
    realized = realized_pnl + closed * (price - average_price) * direction
    total = quantity + delta
    if total == 0:
        average_price = Decimal(0)
    elif (total > 0) != (quantity > 0):
        average_price = price
    return total, to_decimal(average_price), to_decimal(realized)


class Ledger:
    """The trading ledger on one database; see the module docstring for its rules."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        connect_args: dict[str, Any] = {}
        if self.url.get_backend_name() == "sqlite":
            connect_args["timeout"] = 30.0
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self._engine: Engine = create_engine(self.url, connect_args=connect_args)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self._engine, "connect", _configure_sqlite)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, migrate: bool = True) -> Ledger:
        """Open the ledger, upgrading its schema to the newest revision when ``migrate``.

        Raises:
            LedgerSchemaError: ``migrate`` is false and the schema is empty, behind or unknown.
        """
        ledger = cls(url)
        try:
            if migrate:
                ledger.upgrade()
            else:
                ledger.check_schema()
        except BaseException:
            ledger.close()
            raise
        return ledger

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Schema ---------------------------------------------------------------------------------

    def head_revision(self) -> str | None:
        """Return the newest revision the migrations know."""
        return ScriptDirectory.from_config(alembic_config()).get_current_head()

    def schema_revision(self) -> str | None:
        """Return the database's current revision, or None for an empty database."""
        with self._engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def check_schema(self) -> None:
        """Raise LedgerSchemaError unless the database is at the newest revision."""
        current, head = self.schema_revision(), self.head_revision()
        if current == head:
            return
        where = self.url.render_as_string(hide_password=True)
        if current is None:
            state = "has no ledger schema (empty database)"
        elif current in {
            script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
        }:
            state = f"is at revision {current}"
        else:
            raise LedgerSchemaError(
                f"The ledger at {where} is at revision {current}, which this code does not know "
                f"(newest known: {head}); it was migrated by a newer tradeflow. Upgrade tradeflow."
            )
        raise LedgerSchemaError(
            f"The ledger at {where} {state}, but this code needs revision {head}. "
            "Run `tradeflow ledger upgrade` to migrate it."
        )

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema up to a revision (the newest by default), in one transaction."""
        self._run(lambda config: command.upgrade(config, revision))

    def downgrade(self, revision: str) -> None:
        """Migrate the schema down to a revision (``base`` removes every ledger table)."""
        self._run(lambda config: command.downgrade(config, revision))

    def _run(self, step: Callable[[Config], None]) -> None:
        config = alembic_config()
        with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
            config.attributes["connection"] = connection
            step(config)

    # Writes ---------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _retry(self, work: Callable[[Session], Result]) -> Result:
        """Run work in a transaction, again from the start when a unique constraint refuses it."""
        for attempt in range(_ATTEMPTS):
            try:
                with self._transaction() as session:
                    return work(session)
            except IntegrityError:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def record_signal(
        self,
        *,
        signal_id: str,
        fingerprint: str,
        symbol: str,
        time: int,
        direction: int,
        confidence: float,
        signal_type: str,
        explanation: str = "",
        probability: float | None = None,
        regime: str | None = None,
        model_version: str | None = None,
        created_at: int | None = None,
    ) -> None:
        """Record a signal; recording the same ``signal_id`` again does nothing."""
        if direction not in (-1, 1):
            raise ValueError(f"direction must be +1 or -1, not {direction!r}")
        row = schema.Signal(
            signal_id=signal_id,
            fingerprint=fingerprint,
            symbol=symbol,
            time=time,
            direction=direction,
            confidence=confidence,
            probability=probability,
            signal_type=signal_type,
            regime=regime,
            model_version=model_version,
            explanation=explanation,
            created_at=now_ms() if created_at is None else created_at,
        )
        if self.signal(signal_id) is not None:
            return
        try:
            with self._transaction() as session:
                session.add(row)
        except IntegrityError:
            if self.signal(signal_id) is None:
                raise

    def stage_order(
        self,
        client_order_id: str,
        venue: str,
        symbol: str,
        side: str,
        type: str,
        quantity: Number,
        price: Number | None = None,
        signal_id: str | None = None,
        reason: str = "",
        time: int | None = None,
    ) -> Order:
        """Stage an order before anything is sent; staging the same client order id returns it."""
        _check("side", side, schema.SIDES)
        _check("type", type, schema.ORDER_TYPES)
        amount = to_decimal(quantity)
        if amount <= 0:
            raise ValueError(f"quantity must be positive, not {quantity!r}")
        existing = self.order(client_order_id)
        if existing is not None:
            return existing
        stamp = now_ms() if time is None else time
        try:
            with self._transaction() as session:
                row = schema.Order(
                    client_order_id=client_order_id,
                    venue=venue,
                    symbol=symbol,
                    side=side,
                    type=type,
                    quantity=amount,
                    price=None if price is None else to_decimal(price),
                    filled_quantity=Decimal(0),
                    state="staged",
                    signal_id=signal_id,
                    reason=reason,
                    created_at=stamp,
                    updated_at=stamp,
                )
                session.add(row)
                session.flush()
                session.add(
                    schema.OrderEvent(order_id=row.id, sequence=1, time=stamp, kind="created", state="staged")
                )
                session.flush()
                return _order(row)
        except IntegrityError:
            existing = self.order(client_order_id)
            if existing is None:
                raise
            return existing

    def transition(
        self,
        client_order_id: str,
        state: str,
        kind: str,
        detail: dict[str, Any] | None = None,
        venue_order_id: str | None = None,
        time: int | None = None,
    ) -> Order:
        """Move an order to a state, appending an order event of the given kind.

        Raises:
            InvalidTransition: The order's current state cannot move to ``state``.
            UnknownOrder: No order has this client order id.
        """
        _check("state", state, schema.ORDER_STATES)
        _check("kind", kind, schema.EVENT_KINDS)
        stamp = now_ms() if time is None else time

        def work(session: Session) -> Order:
            row = _locked_order(session, client_order_id)
            if state != row.state and state not in ALLOWED_TRANSITIONS[row.state]:
                raise InvalidTransition(
                    f"order {client_order_id} cannot move from {row.state} to {state} ({kind})"
                )
            row.state = state
            row.updated_at = stamp
            if venue_order_id is not None:
                row.venue_order_id = venue_order_id
            _append_event(session, row, stamp, kind, detail)
            session.flush()
            return _order(row)

        return self._retry(work)

    def record_fill(
        self,
        client_order_id: str,
        venue_trade_id: str | None,
        time: int,
        quantity: Number,
        price: Number,
        fee: Number,
        fee_currency: str,
        liquidity: str,
    ) -> bool:
        """Record a fill and update its order and position; False if it was already recorded.

        Raises:
            UnknownOrder: No order has this client order id.
        """
        _check("liquidity", liquidity, schema.LIQUIDITIES)
        amount, fill_price, fee_amount = to_decimal(quantity), to_decimal(price), to_decimal(fee)
        if amount <= 0:
            raise ValueError(f"fill quantity must be positive, not {quantity!r}")

        def work(session: Session) -> bool:
            order = _locked_order(session, client_order_id)
            if venue_trade_id is not None:
                seen = session.scalar(
                    select(schema.Fill.id).where(
                        schema.Fill.venue == order.venue, schema.Fill.venue_trade_id == venue_trade_id
                    )
                )
                if seen is not None:
                    return False
            session.add(
                schema.Fill(
                    order_id=order.id,
                    venue=order.venue,
                    venue_trade_id=venue_trade_id,
                    time=time,
                    quantity=amount,
                    price=fill_price,
                    fee=fee_amount,
                    fee_currency=fee_currency,
                    liquidity=liquidity,
                )
            )
            session.flush()
            quantities = session.scalars(select(schema.Fill.quantity).where(schema.Fill.order_id == order.id))
            filled = to_decimal(sum(quantities, Decimal(0)))
            order.filled_quantity = filled
            target = "filled" if filled >= order.quantity else "partially_filled"
            if target == order.state or target in ALLOWED_TRANSITIONS[order.state]:
                order.state = target
            order.updated_at = max(order.updated_at, time)
            detail = {
                "venue_trade_id": venue_trade_id,
                "quantity": str(amount),
                "price": str(fill_price),
                "filled_quantity": str(filled),
            }
            _append_event(session, order, time, "fill" if target == "filled" else "partial_fill", detail)
            _move_position(session, order, amount, fill_price, time)
            session.flush()
            return True

        try:
            return self._retry(work)
        except IntegrityError:
            if venue_trade_id is not None and any(
                fill.venue_trade_id == venue_trade_id for fill in self.fills(client_order_id)
            ):
                return False
            raise

    def set_balance(self, venue: str, asset: str, free: Number, locked: Number, time: int) -> None:
        """Set the free and locked amount of an asset at a venue (insert or update)."""
        free_amount, locked_amount = to_decimal(free), to_decimal(locked)

        def work(session: Session) -> None:
            row = session.scalar(
                select(schema.Balance)
                .where(schema.Balance.venue == venue, schema.Balance.asset == asset)
                .with_for_update()
            )
            if row is None:
                session.add(
                    schema.Balance(
                        venue=venue, asset=asset, free=free_amount, locked=locked_amount, updated_at=time
                    )
                )
            else:
                row.free, row.locked, row.updated_at = free_amount, locked_amount, time
            session.flush()

        self._retry(work)

    def record_risk_event(
        self,
        time: int,
        kind: str,
        reason: str,
        symbol: str | None = None,
        detail: dict[str, Any] | None = None,
        state: str | None = None,
    ) -> None:
        """Record a risk event (a rejection, kill switch, state change, reconciliation finding)."""
        if state is not None:
            _check("state", state, schema.RISK_STATES)
        with self._transaction() as session:
            session.add(
                schema.RiskEvent(
                    time=time, kind=kind, symbol=symbol, reason=reason, detail=detail, state=state
                )
            )

    # Reads ----------------------------------------------------------------------------------

    def signal(self, signal_id: str) -> Signal | None:
        """Return a recorded signal, or None."""
        with self._transaction() as session:
            row = session.scalar(select(schema.Signal).where(schema.Signal.signal_id == signal_id))
            if row is None:
                return None
            return Signal(
                signal_id=row.signal_id,
                fingerprint=row.fingerprint,
                symbol=row.symbol,
                time=row.time,
                direction=row.direction,
                confidence=row.confidence,
                probability=row.probability,
                signal_type=row.signal_type,
                regime=row.regime,
                model_version=row.model_version,
                explanation=row.explanation,
                created_at=row.created_at,
            )

    def order(self, client_order_id: str) -> Order | None:
        """Return an order by client order id, or None."""
        with self._transaction() as session:
            row = session.scalar(select(schema.Order).where(schema.Order.client_order_id == client_order_id))
            return None if row is None else _order(row)

    def orders(self) -> list[Order]:
        """Return every order, oldest first."""
        with self._transaction() as session:
            return [_order(row) for row in session.scalars(select(schema.Order).order_by(schema.Order.id))]

    def order_counts(self, venue: str | None = None) -> dict[str, int]:
        """Return how many orders are in each state (optionally at one venue), counted in SQL."""
        query = select(schema.Order.state, func.count()).group_by(schema.Order.state)
        if venue is not None:
            query = query.where(schema.Order.venue == venue)
        with self._transaction() as session:
            return {str(state): int(count) for state, count in session.execute(query)}

    def open_orders(self, venue: str | None = None) -> list[Order]:
        """Return the orders not in a terminal state (optionally at one venue), oldest first."""
        query = select(schema.Order).where(schema.Order.state.not_in(TERMINAL_STATES))
        if venue is not None:
            query = query.where(schema.Order.venue == venue)
        with self._transaction() as session:
            return [_order(row) for row in session.scalars(query.order_by(schema.Order.id))]

    def position(self, venue: str, symbol: str) -> Position | None:
        """Return the position in a symbol at a venue, or None if it never traded."""
        with self._transaction() as session:
            row = session.scalar(
                select(schema.Position).where(
                    schema.Position.venue == venue, schema.Position.symbol == symbol
                )
            )
            return None if row is None else _position(row)

    def positions(self) -> list[Position]:
        """Return every position, by venue and symbol."""
        query = select(schema.Position).order_by(schema.Position.venue, schema.Position.symbol)
        with self._transaction() as session:
            return [_position(row) for row in session.scalars(query)]

    def fills(self, client_order_id: str | None = None) -> list[Fill]:
        """Return the fills (of one order, or all), in time order."""
        query = select(schema.Fill, schema.Order.client_order_id).join(
            schema.Order, schema.Fill.order_id == schema.Order.id
        )
        if client_order_id is not None:
            query = query.where(schema.Order.client_order_id == client_order_id)
        with self._transaction() as session:
            return [
                Fill(
                    client_order_id=client_id,
                    venue=row.venue,
                    venue_trade_id=row.venue_trade_id,
                    time=row.time,
                    quantity=row.quantity,
                    price=row.price,
                    fee=row.fee,
                    fee_currency=row.fee_currency,
                    liquidity=row.liquidity,
                )
                for row, client_id in session.execute(
                    query.order_by(schema.Fill.time, schema.Fill.id)
                ).tuples()
            ]

    def events(self, client_order_id: str) -> list[OrderEvent]:
        """Return an order's events in sequence order."""
        query = (
            select(schema.OrderEvent)
            .join(schema.Order, schema.OrderEvent.order_id == schema.Order.id)
            .where(schema.Order.client_order_id == client_order_id)
            .order_by(schema.OrderEvent.sequence)
        )
        with self._transaction() as session:
            return [
                OrderEvent(
                    sequence=row.sequence, time=row.time, kind=row.kind, state=row.state, detail=row.detail
                )
                for row in session.scalars(query)
            ]

    def balance(self, venue: str, asset: str) -> Balance | None:
        """Return the balance of an asset at a venue, or None."""
        with self._transaction() as session:
            row = session.scalar(
                select(schema.Balance).where(schema.Balance.venue == venue, schema.Balance.asset == asset)
            )
            if row is None:
                return None
            return Balance(
                venue=row.venue, asset=row.asset, free=row.free, locked=row.locked, updated_at=row.updated_at
            )

    def risk_events(self) -> list[RiskEvent]:
        """Return every risk event in time order."""
        query = select(schema.RiskEvent).order_by(schema.RiskEvent.time, schema.RiskEvent.id)
        with self._transaction() as session:
            return [
                RiskEvent(
                    time=row.time,
                    kind=row.kind,
                    symbol=row.symbol,
                    reason=row.reason,
                    detail=row.detail,
                    state=row.state,
                )
                for row in session.scalars(query)
            ]


def _configure_sqlite(connection: Any, record: Any) -> None:
    """Turn on foreign keys and write-ahead logging on each new SQLite connection.

    ``synchronous=NORMAL`` with WAL: a commit is durable once the process has written it (it
    survives the process being killed, which the restart guarantees rely on) but is fsynced at
    checkpoints, not per commit; a power cut can lose the last transactions. Per-commit fsync
    cost ~3 ms each on the trading loop. Production ledgers are PostgreSQL.
    """
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _locked_order(session: Session, client_order_id: str) -> schema.Order:
    """Load an order, locking its row until the transaction ends (on PostgreSQL)."""
    row = session.scalar(
        select(schema.Order).where(schema.Order.client_order_id == client_order_id).with_for_update()
    )
    if row is None:
        raise UnknownOrder(f"no order has client order id {client_order_id!r}")
    return row


def _append_event(
    session: Session, order: schema.Order, time: int, kind: str, detail: dict[str, Any] | None
) -> None:
    """Append an order event with the order's next sequence number."""
    last = session.scalar(
        select(func.max(schema.OrderEvent.sequence)).where(schema.OrderEvent.order_id == order.id)
    )
    session.add(
        schema.OrderEvent(
            order_id=order.id,
            sequence=(last or 0) + 1,
            time=time,
            kind=kind,
            state=order.state,
            detail=detail,
        )
    )


def _move_position(session: Session, order: schema.Order, amount: Decimal, price: Decimal, time: int) -> None:
    """Apply a fill of the order to its venue and symbol's position."""
    row = session.scalar(
        select(schema.Position)
        .where(schema.Position.venue == order.venue, schema.Position.symbol == order.symbol)
        .with_for_update()
    )
    if row is None:
        row = schema.Position(
            venue=order.venue,
            symbol=order.symbol,
            quantity=Decimal(0),
            average_price=Decimal(0),
            realized_pnl=Decimal(0),
            updated_at=time,
        )
        session.add(row)
    delta = amount if order.side == "buy" else -amount
    row.quantity, row.average_price, row.realized_pnl = apply_fill(
        row.quantity, row.average_price, row.realized_pnl, delta, price
    )
    row.updated_at = max(row.updated_at, time)
