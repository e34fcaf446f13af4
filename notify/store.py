"""Persist a day's detection in the warehouse (revision 0003_alerts).

`store_day(engine, result)`: replaces the day's `anomaly_scores` partition (every series and
metric of the day, anomalous or not) and upserts the episodes the run recomputed into
`anomaly_episodes` (delete by key, insert), in one transaction each. Reruns write the same
rows. Money stays exact (`warehouse.money.Money`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from notify.daily import DayResult
from warehouse.load import replace_partition
from warehouse.money import Money

metadata = sa.MetaData()
anomaly_episodes = sa.Table(
    "anomaly_episodes",
    metadata,
    sa.Column("episode_key", sa.String(700), primary_key=True),
    sa.Column("metric", sa.String(40), nullable=False),
    sa.Column("scope", sa.String(20), nullable=False),
    sa.Column("series", sa.String(600), nullable=False),
    sa.Column("feature", sa.String(300)),
    sa.Column("team", sa.String(300)),
    sa.Column("model_key", sa.String(300)),
    sa.Column("start_day", sa.Date, nullable=False),
    sa.Column("end_day", sa.Date, nullable=False),
    sa.Column("days", sa.Integer, nullable=False),
    sa.Column("peak_day", sa.Date, nullable=False),
    sa.Column("peak_impact", sa.Double),
    sa.Column("total_impact", sa.Double),
    sa.Column("peak_impact_usd", Money()),
    sa.Column("total_impact_usd", Money()),
    sa.Column("total_actual_usd", Money()),
    sa.Column("total_expected_usd", Money()),
    sa.Column("max_score", sa.Double),
    sa.Column("feedback", sa.String(20)),
    sa.Column("open", sa.Boolean, nullable=False),
)


def store_day(engine: Engine, result: DayResult) -> tuple[int, int]:
    """(score rows, episode rows) written for `result.day`."""
    scores = replace_partition(engine, "anomaly_scores", "day", result.day, result.scores)
    rows = result.episodes.to_dicts()
    keys = [r["episode_key"] for r in rows]
    with engine.begin() as conn:
        for i in range(0, len(keys), 500):
            conn.execute(
                anomaly_episodes.delete().where(
                    anomaly_episodes.c.episode_key.in_(keys[i : i + 500])
                )
            )
        if rows:
            conn.execute(anomaly_episodes.insert(), rows)
    return scores, len(rows)
