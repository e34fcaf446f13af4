"""Feedback kept in the warehouse (`alert_feedback`, revision 0003_alerts): read it as the
detector's feedback frame, or add an entry. The settings file's `feedback:` list and this
table are read together; either is enough to mark days expected, planned or new normal.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from transforms.anomalies import FEEDBACK_KINDS, FEEDBACK_SCHEMA
from warehouse.money import UtcDateTime

metadata = sa.MetaData()
alert_feedback = sa.Table(
    "alert_feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("feature", sa.String(300)),
    sa.Column("team", sa.String(300)),
    sa.Column("model_key", sa.String(300)),
    sa.Column("metric", sa.String(40)),
    sa.Column("day_from", sa.Date, nullable=False),
    sa.Column("day_to", sa.Date, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)


def load(engine: Engine) -> pl.LazyFrame:
    """Every feedback row as a FEEDBACK_SCHEMA frame (empty when the table is empty)."""
    columns = list(FEEDBACK_SCHEMA.names())
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*[alert_feedback.c[c] for c in columns]).order_by(alert_feedback.c.id)
        ).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=FEEDBACK_SCHEMA, orient="row").lazy()


def add(
    engine: Engine,
    *,
    kind: str,
    day_from: dt.date,
    day_to: dt.date | None = None,
    feature: str | None = None,
    team: str | None = None,
    model_key: str | None = None,
    metric: str | None = None,
    note: str = "",
    created_by: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Record one feedback entry; ValueError for an unknown kind, no target or a bad range."""
    if kind not in FEEDBACK_KINDS:
        raise ValueError(f"feedback kind must be one of {', '.join(FEEDBACK_KINDS)}, got {kind!r}")
    if feature is None and team is None and model_key is None:
        raise ValueError("feedback must name a feature, team or model")
    day_to = day_to or day_from
    if day_to < day_from:
        raise ValueError(f"feedback range ends ({day_to}) before it starts ({day_from})")
    with engine.begin() as conn:
        conn.execute(
            alert_feedback.insert().values(
                feature=feature,
                team=team,
                model_key=model_key,
                metric=metric,
                day_from=day_from,
                day_to=day_to,
                kind=kind,
                note=note,
                created_by=created_by,
                created_at=now or dt.datetime.now(dt.UTC),
            )
        )


def load_if_present(engine: Engine) -> pl.LazyFrame | None:
    """`load`, or None when the warehouse has no alert_feedback table (not migrated yet)."""
    if not sa.inspect(engine).has_table("alert_feedback"):
        return None
    return load(engine)
