"""Alembic environment: runs on the connection `warehouse.migrate.upgrade` hands over (no
alembic.ini needed), or on `sqlalchemy.url` / the default warehouse URL when the alembic
command line is used with a config of its own."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from warehouse.db import make_engine
from warehouse.tables import METADATA

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
