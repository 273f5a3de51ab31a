"""The trading ledger: signals, orders, fills, positions, balances and risk events in SQL."""

from tradeflow.ledger.store import (
    ALLOWED_TRANSITIONS,
    Balance,
    Fill,
    InvalidTransition,
    Ledger,
    LedgerError,
    LedgerSchemaError,
    Order,
    OrderEvent,
    Position,
    RiskEvent,
    Signal,
    UnknownOrder,
    default_url,
)

__all__ = [
    "Ledger",
    "default_url",
    "ALLOWED_TRANSITIONS",
    "Order",
    "OrderEvent",
    "Fill",
    "Position",
    "Balance",
    "Signal",
    "RiskEvent",
    "LedgerError",
    "LedgerSchemaError",
    "InvalidTransition",
    "UnknownOrder",
]
