"""The ledger's tables as a typed SQLAlchemy 2.0 ORM, and the value sets their columns allow.

Timestamps are integers, UTC milliseconds. Money and quantities are :class:`~decimal.Decimal`
stored by :class:`Amount`: ``NUMERIC(38, 18)`` on PostgreSQL and exact decimal text on SQLite
(SQLite has no decimal type; its ``NUMERIC`` would round through a float). Value sets (sides,
order states, event kinds...) are plain strings guarded by CHECK constraints rather than
database enums, so adding a value is a one-line migration on both databases.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

SIDES: Final = ("buy", "sell")
ORDER_TYPES: Final = ("market", "limit", "stop")
ORDER_STATES: Final = (
    "staged",
    "new",
    "submitted",
    "partially_filled",
    "filled",
    "cancelled",
    "rejected",
    "unknown",
)
EVENT_KINDS: Final = (
    "created",
    "submitted",
    "acknowledged",
    "partial_fill",
    "fill",
    "cancel_requested",
    "cancelled",
    "rejected",
    "timeout",
    "queried",
    "reconciled",
)
LIQUIDITIES: Final = ("maker", "taker")
RISK_STATES: Final = ("ACTIVE", "REDUCING", "HALTED")

SCALE: Final = 18
"""Digits kept after the decimal point for every amount."""

_QUANTUM: Final = Decimal(1).scaleb(-SCALE)
_CONTEXT: Final = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_EVEN)

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def to_decimal(value: Decimal | int | float | str) -> Decimal:
    """Convert a number to a Decimal rounded to the ledger's 18 decimal places.

    Floats go through their shortest text form (``0.1`` becomes ``Decimal("0.1")``, not the
    binary expansion).

    Raises:
        ValueError: The value is not a finite number.
    """
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(value)
    except decimal.InvalidOperation as error:
        raise ValueError(f"not a number: {value!r}") from error
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return number.quantize(_QUANTUM, context=_CONTEXT)


class Amount(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC(38, 18) on PostgreSQL, canonical decimal text on SQLite."""

    impl = Numeric(38, SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Pick the column type for the dialect."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(80))
        return dialect.type_descriptor(Numeric(38, SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        """Round to 18 places; on SQLite, write as plain (non-exponent) decimal text."""
        if value is None:
            return None
        number = to_decimal(value)
        if dialect.name == "sqlite":
            return format(number, "f")
        return number

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Read back as a Decimal."""
        if value is None:
            return None
        return to_decimal(value if isinstance(value, Decimal) else str(value))


def _in(column: str, values: tuple[str, ...]) -> str:
    """Write the SQL of a CHECK that a column holds one of the values."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


Identifier = BigInteger().with_variant(Integer(), "sqlite")
"""Primary keys: BIGINT on PostgreSQL, INTEGER on SQLite (the only type it auto-increments)."""


class Base(DeclarativeBase):
    """The declarative base of the ledger tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Signal(Base):
    """A trading signal the strategy emitted; orders may point at it."""

    __tablename__ = "signals"
    __table_args__ = (
        CheckConstraint("direction IN (-1, 1)", name="direction"),
        Index(None, "symbol", "time"),
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    signal_id: Mapped[str] = mapped_column(String(128), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(128))
    symbol: Mapped[str] = mapped_column(String(64))
    time: Mapped[int] = mapped_column(BigInteger)
    direction: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float]
    probability: Mapped[float | None]
    signal_type: Mapped[str] = mapped_column(String(64))
    regime: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(128))
    explanation: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[int] = mapped_column(BigInteger)


class Order(Base):
    """An order, from staging (before anything is sent) to a terminal state."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("venue", "venue_order_id"),
        CheckConstraint(_in("side", SIDES), name="side"),
        CheckConstraint(_in("type", ORDER_TYPES), name="type"),
        CheckConstraint(_in("state", ORDER_STATES), name="state"),
        Index(None, "state"),
        Index(None, "signal_id"),
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(128), unique=True)
    venue: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal] = mapped_column(Amount)
    price: Mapped[Decimal | None] = mapped_column(Amount)
    filled_quantity: Mapped[Decimal] = mapped_column(Amount)
    state: Mapped[str] = mapped_column(String(32))
    venue_order_id: Mapped[str | None] = mapped_column(String(128))
    signal_id: Mapped[str | None] = mapped_column(ForeignKey("signals.signal_id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class OrderEvent(Base):
    """One step in an order's life; ``sequence`` counts 1, 2, ... per order."""

    __tablename__ = "order_events"
    __table_args__ = (
        UniqueConstraint("order_id", "sequence"),
        CheckConstraint(_in("kind", EVENT_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    time: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Fill(Base):
    """An execution the venue reported; ``venue`` is copied from the order to key idempotency."""

    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("venue", "venue_trade_id"),
        CheckConstraint(_in("liquidity", LIQUIDITIES), name="liquidity"),
        Index(None, "order_id"),
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    venue: Mapped[str] = mapped_column(String(64))
    venue_trade_id: Mapped[str | None] = mapped_column(String(128))
    time: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[Decimal] = mapped_column(Amount)
    price: Mapped[Decimal] = mapped_column(Amount)
    fee: Mapped[Decimal] = mapped_column(Amount)
    fee_currency: Mapped[str] = mapped_column(String(32))
    liquidity: Mapped[str] = mapped_column(String(8))


class Position(Base):
    """The net position in one symbol at one venue: signed quantity, entry price, realized PnL."""

    __tablename__ = "positions"
    __table_args__ = (UniqueConstraint("venue", "symbol"),)

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    venue: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[Decimal] = mapped_column(Amount)
    average_price: Mapped[Decimal] = mapped_column(Amount)
    realized_pnl: Mapped[Decimal] = mapped_column(Amount)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Balance(Base):
    """The free and locked amount of one asset at one venue."""

    __tablename__ = "balances"
    __table_args__ = (UniqueConstraint("venue", "asset"),)

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    venue: Mapped[str] = mapped_column(String(64))
    asset: Mapped[str] = mapped_column(String(32))
    free: Mapped[Decimal] = mapped_column(Amount)
    locked: Mapped[Decimal] = mapped_column(Amount)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class RiskEvent(Base):
    """A risk decision: a rejection, a kill switch, a state change, a reconciliation finding."""

    __tablename__ = "risk_events"
    __table_args__ = (
        CheckConstraint(f"state IS NULL OR {_in('state', RISK_STATES)}", name="state"),
        Index(None, "time"),
    )

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    time: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[str | None] = mapped_column(String(16))
