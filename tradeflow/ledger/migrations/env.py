"""Alembic's environment for the ledger, configured from code (there is no alembic.ini).

:class:`tradeflow.ledger.store.Ledger` passes an open connection in
``config.attributes["connection"]``; without one, ``sqlalchemy.url`` is used. SQLite runs in
batch mode so later migrations can alter its tables (SQLite's ALTER TABLE is limited).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tradeflow.ledger.schema import Base


def run_migrations(connection: Connection) -> None:
    """Run the migrations on one connection, in one transaction."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Run online migrations on the given connection, or on a new engine from the URL."""
    if context.is_offline_mode():
        raise RuntimeError("the ledger's migrations run online only")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as new_connection:
            run_migrations(new_connection)
    finally:
        engine.dispose()


main()
