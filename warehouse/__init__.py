"""The SQL warehouse finance and BI tools query: SQLAlchemy 2 Core tables, Alembic migrations
and partition replaces in one transaction. SQLite by default, PostgreSQL in production; see
docs/warehouse.md for every table.

    engine = make_engine()            # AISPEND_WAREHOUSE_URL or {data}/warehouse.sqlite
    upgrade(engine)                   # warehouse.migrate: apply every migration, idempotent
    replace_partition(engine, "usage_daily", day, frame)
    read_table(engine, "usage_daily", where={"day": day})
"""

from warehouse.db import make_engine

__all__ = ["make_engine"]
