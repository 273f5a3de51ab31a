"""Create the ledger: signals, orders, order events, fills, positions, balances, risk events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tradeflow.ledger.schema import Amount

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the value sets at this revision: a later change to schema.py must come with
# its own migration, not silently rewrite this one.
SIDES = "'buy', 'sell'"
ORDER_TYPES = "'market', 'limit', 'stop'"
ORDER_STATES = (
    "'staged', 'new', 'submitted', 'partially_filled', 'filled', 'cancelled', 'rejected', 'unknown'"
)
EVENT_KINDS = (
    "'created', 'submitted', 'acknowledged', 'partial_fill', 'fill', 'cancel_requested', "
    "'cancelled', 'rejected', 'timeout', 'queried', 'reconciled'"
)


def identifier() -> sa.Column[int]:
    """Make the integer primary key column: BIGINT on PostgreSQL, INTEGER on SQLite."""
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def upgrade() -> None:
    """Create every ledger table."""
    op.create_table(
        "signals",
        identifier(),
        sa.Column("signal_id", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("signal_type", sa.String(64), nullable=False),
        sa.Column("regime", sa.String(64), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("direction IN (-1, 1)", name=op.f("ck_signals_direction")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
        sa.UniqueConstraint("signal_id", name=op.f("uq_signals_signal_id")),
    )
    op.create_index(op.f("ix_signals_symbol_time"), "signals", ["symbol", "time"])

    op.create_table(
        "orders",
        identifier(),
        sa.Column("client_order_id", sa.String(128), nullable=False),
        sa.Column("venue", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("quantity", Amount(), nullable=False),
        sa.Column("price", Amount(), nullable=True),
        sa.Column("filled_quantity", Amount(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("venue_order_id", sa.String(128), nullable=True),
        sa.Column("signal_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(f"side IN ({SIDES})", name=op.f("ck_orders_side")),
        sa.CheckConstraint(f"type IN ({ORDER_TYPES})", name=op.f("ck_orders_type")),
        sa.CheckConstraint(f"state IN ({ORDER_STATES})", name=op.f("ck_orders_state")),
        sa.ForeignKeyConstraint(
            ["signal_id"], ["signals.signal_id"], name=op.f("fk_orders_signal_id_signals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_orders_client_order_id")),
        sa.UniqueConstraint("venue", "venue_order_id", name=op.f("uq_orders_venue_venue_order_id")),
    )
    op.create_index(op.f("ix_orders_state"), "orders", ["state"])
    op.create_index(op.f("ix_orders_signal_id"), "orders", ["signal_id"])

    op.create_table(
        "order_events",
        identifier(),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.CheckConstraint(f"kind IN ({EVENT_KINDS})", name=op.f("ck_order_events_kind")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_events_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
        sa.UniqueConstraint("order_id", "sequence", name=op.f("uq_order_events_order_id_sequence")),
    )

    op.create_table(
        "fills",
        identifier(),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("venue", sa.String(64), nullable=False),
        sa.Column("venue_trade_id", sa.String(128), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("quantity", Amount(), nullable=False),
        sa.Column("price", Amount(), nullable=False),
        sa.Column("fee", Amount(), nullable=False),
        sa.Column("fee_currency", sa.String(32), nullable=False),
        sa.Column("liquidity", sa.String(8), nullable=False),
        sa.CheckConstraint("liquidity IN ('maker', 'taker')", name=op.f("ck_fills_liquidity")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("venue", "venue_trade_id", name=op.f("uq_fills_venue_venue_trade_id")),
    )
    op.create_index(op.f("ix_fills_order_id"), "fills", ["order_id"])

    op.create_table(
        "positions",
        identifier(),
        sa.Column("venue", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("quantity", Amount(), nullable=False),
        sa.Column("average_price", Amount(), nullable=False),
        sa.Column("realized_pnl", Amount(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
        sa.UniqueConstraint("venue", "symbol", name=op.f("uq_positions_venue_symbol")),
    )

    op.create_table(
        "balances",
        identifier(),
        sa.Column("venue", sa.String(64), nullable=False),
        sa.Column("asset", sa.String(32), nullable=False),
        sa.Column("free", Amount(), nullable=False),
        sa.Column("locked", Amount(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balances")),
        sa.UniqueConstraint("venue", "asset", name=op.f("uq_balances_venue_asset")),
    )

    op.create_table(
        "risk_events",
        identifier(),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(16), nullable=True),
        sa.CheckConstraint(
            "state IS NULL OR state IN ('ACTIVE', 'REDUCING', 'HALTED')", name=op.f("ck_risk_events_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_events")),
    )
    op.create_index(op.f("ix_risk_events_time"), "risk_events", ["time"])


def downgrade() -> None:
    """Drop every ledger table, dependents first."""
    op.drop_index(op.f("ix_risk_events_time"), table_name="risk_events")
    op.drop_table("risk_events")
    op.drop_table("balances")
    op.drop_table("positions")
    op.drop_index(op.f("ix_fills_order_id"), table_name="fills")
    op.drop_table("fills")
    op.drop_table("order_events")
    op.drop_index(op.f("ix_orders_signal_id"), table_name="orders")
    op.drop_index(op.f("ix_orders_state"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_signals_symbol_time"), table_name="signals")
    op.drop_table("signals")
