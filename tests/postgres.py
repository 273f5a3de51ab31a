"""Throwaway databases on the machine's PostgreSQL for the tests that need a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it afterwards.

    Skips the test, saying how to start the server, when PostgreSQL is not reachable.
    """
    admin = create_engine(
        f"{SERVER}/postgres", isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({error.orig}); start it with: {START}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
