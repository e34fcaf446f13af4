"""Apply the warehouse's Alembic migrations programmatically (no alembic.ini at run time).

    upgrade()                      # AISPEND_WAREHOUSE_URL or {data}/warehouse.sqlite
    upgrade(engine)                # or an engine / a URL
    python -m warehouse.migrate [URL]

Revisions live in `warehouse/migrations/versions/`, one file per area (0001_core ->
0002_reconciliation -> 0003_alerts), found by Alembic from the package directory. Upgrading
an up-to-date database is a no-op. The whole upgrade is one transaction (PostgreSQL and SQLite
both have transactional DDL), so a failed migration leaves the previous revision intact.
Concurrent upgrades (several Dagster processes starting at once) are serialized: an advisory
lock on PostgreSQL, BEGIN IMMEDIATE on SQLite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from warehouse.db import make_engine, writer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works: it only has to be the same for every process upgrading this database.
_PG_UPGRADE_LOCK = 0x61697370656E64  # "aispend"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _engine(engine_or_url: sa.Engine | str | None) -> tuple[sa.Engine, bool]:
    if isinstance(engine_or_url, sa.Engine):
        return engine_or_url, False
    return make_engine(engine_or_url), True


def upgrade(engine_or_url: sa.Engine | str | None = None, revision: str = "head") -> None:
    """Migrate the warehouse to `revision` (default: the newest)."""
    engine, owned = _engine(engine_or_url)
    config = alembic_config()
    try:
        with writer(engine.connect()) as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if owned:
            engine.dispose()


def current_revision(engine_or_url: sa.Engine | str | None = None) -> str | None:
    """The revision the database is at (None when never migrated)."""
    engine, owned = _engine(engine_or_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        if owned:
            engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    upgrade(args[0] if args else None)
    print(f"warehouse at revision {current_revision(args[0] if args else None)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
