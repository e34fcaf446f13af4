"""Engines for the warehouse: SQLite by default, PostgreSQL in production.

`make_engine(url)` takes, in order: the `url` argument, `AISPEND_WAREHOUSE_URL`, else
`sqlite:///{AISPEND_DATA_DIR or ./data}/warehouse.sqlite` (the directory is created).
PostgreSQL URLs may say `postgresql://` or `postgres://`; both run on psycopg 3
(`postgresql+psycopg://`). To keep the tables in a schema of their own, add
`?options=-csearch_path%3Daispend` to the URL.

SQLite quirks handled here: WAL journal (readers never block the writer), foreign keys on,
a 60 s busy timeout (several Dagster processes may load partitions at once), and real
transactions: Python's sqlite3 driver would otherwise open them late and never around DDL, so
SQLAlchemy emits BEGIN itself (`BEGIN IMMEDIATE` when a connection is marked as a writer with
`execution_options(sqlite_begin="IMMEDIATE")`, so two writers queue instead of one failing).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

WAREHOUSE_URL_ENV = "AISPEND_WAREHOUSE_URL"
DATA_DIR_ENV = "AISPEND_DATA_DIR"
SQLITE_BUSY_TIMEOUT_S = 60


def default_url() -> str:
    url = os.environ.get(WAREHOUSE_URL_ENV, "").strip()
    if url:
        return url
    base = os.environ.get(DATA_DIR_ENV, "").strip() or "./data"
    if "://" in base and not base.startswith("file://"):
        raise ValueError(
            f"{DATA_DIR_ENV}={base} is not a local directory: set {WAREHOUSE_URL_ENV} too "
            "(a SQLite warehouse needs a local file)"
        )
    directory = Path(base.removeprefix("file://")).resolve()
    return f"sqlite:///{directory / 'warehouse.sqlite'}"


def normalize_url(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _wal(cursor: Any) -> None:
    """Switch a SQLite file to WAL (persistent, so usually already done). The switch needs the
    file to itself and SQLite reports "locked" at once rather than waiting, so retry while
    another process holds it (several Dagster workers opening a new warehouse)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if mode in ("wal", "memory"):
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str | None = None) -> sa.Engine:
    """An engine for `url` (see the module docstring for defaults and backend settings)."""
    parsed = normalize_url(url.strip() if url and url.strip() else default_url())
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: SQLAlchemy's BEGIN below decides the transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        _wal(cursor)
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}" if mode == "IMMEDIATE" else "BEGIN")

    return engine


def writer(connection: sa.Connection) -> sa.Connection:
    """Mark a connection (before it begins) as a writer: BEGIN IMMEDIATE on SQLite."""
    return connection.execution_options(sqlite_begin="IMMEDIATE")
