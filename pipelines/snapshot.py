"""Content snapshots of the lake and the warehouse, to show reruns change nothing.

`lake_digest(base)`: every file under `{base}/lake` -> SHA-256 of its bytes (staging and
swap leftovers would show up as extra entries). `warehouse_dump(url)`: every table -> its
rows as text tuples, sorted, without the timestamp columns that record when a row was
written or sent (a new row written twice differs there by design).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BOOKKEEPING_COLUMNS = frozenset({"loaded_at", "created_at", "updated_at", "claimed_at", "sent_at"})
# An email as sent carries its own Date header: a record of the send, not pipeline content.
TABLE_BOOKKEEPING = {"alert_outbox": frozenset({"message"})}


def lake_digest(base: str | Path) -> dict[str, str]:
    root = Path(base) / "lake"
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def warehouse_dump(url: str) -> dict[str, list[tuple[str | None, ...]]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        out: dict[str, list[tuple[str | None, ...]]] = {}
        with engine.connect() as conn:
            for table in sorted(inspector.get_table_names()):
                columns = [
                    c["name"]
                    for c in inspector.get_columns(table)
                    if c["name"] not in BOOKKEEPING_COLUMNS
                    and c["name"] not in TABLE_BOOKKEEPING.get(table, frozenset())
                ]
                if not columns:
                    continue
                selected = sa.table(table, *(sa.column(c) for c in columns))
                rows = conn.execute(sa.select(*selected.columns)).fetchall()
                out[table] = sorted(
                    (tuple(None if v is None else str(v) for v in row) for row in rows),
                    key=lambda r: tuple("" if v is None else v for v in r),
                )
        return out
    finally:
        engine.dispose()
