"""Alerts: anomaly scores, episodes, feedback and the alert outbox.

Revision ID: 0003_alerts
Revises: 0002_reconciliation

Tables
  anomaly_scores    one row per (day, metric, scope, series): transforms.anomalies.SCORE_SCHEMA,
                    replaced per day partition (reruns are idempotent)
  anomaly_episodes  one row per episode key (metric|scope|series|start day): EPISODE_SCHEMA,
                    rewritten for the episodes a run recomputes
  alert_feedback    expected / planned / new_normal marks; rows here and in the settings
                    file are read together
  alert_outbox      one row per (alert_key, route): notify.outbox (idempotent sending)

Money is `warehouse.money.Money`: NUMERIC(38, 18) on PostgreSQL, canonical decimal text on
SQLite (no float anywhere); times are `UtcDateTime`. Scores are statistics (Float64), not money.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from warehouse.money import Money, UtcDateTime

revision = "0003_alerts"
down_revision = "0002_reconciliation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anomaly_scores",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("series", sa.String(600), nullable=False),
        sa.Column("feature", sa.String(300)),
        sa.Column("team", sa.String(300)),
        sa.Column("model_key", sa.String(300)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("is_anomaly", sa.Boolean, nullable=False),
        sa.Column("actual", sa.Double),
        sa.Column("expected", sa.Double),
        sa.Column("impact", sa.Double),
        sa.Column("impact_pct", sa.Double),
        sa.Column("score", sa.Double),
        sa.Column("scale", sa.Double),
        sa.Column("actual_usd", Money()),
        sa.Column("expected_usd", Money()),
        sa.Column("impact_usd", Money()),
        sa.Column("requests", sa.BigInteger),
        sa.Column("history_days", sa.Integer),
        sa.Column("method", sa.String(20)),
        sa.Column("feedback", sa.String(20)),
        sa.PrimaryKeyConstraint("day", "metric", "scope", "series", name="pk_anomaly_scores"),
    )
    op.create_index("ix_anomaly_scores_anomalies", "anomaly_scores", ["day", "is_anomaly"])
    op.create_table(
        "anomaly_episodes",
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
    op.create_table(
        "alert_feedback",
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
        sa.CheckConstraint(
            "kind IN ('expected', 'planned', 'new_normal')", name="ck_alert_feedback_kind"
        ),
        sa.CheckConstraint("day_to >= day_from", name="ck_alert_feedback_range"),
    )
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_key", sa.String(512), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("message", sa.LargeBinary, nullable=True),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("digest_key", sa.String(512), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("claimed_at", UtcDateTime(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("alert_key", "route", name="uq_alert_outbox_key_route"),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed', 'dead', 'suppressed', 'digested')",
            name="ck_alert_outbox_status",
        ),
    )
    op.create_index("ix_alert_outbox_status", "alert_outbox", ["status", "mode"])


def downgrade() -> None:
    op.drop_index("ix_alert_outbox_status", table_name="alert_outbox")
    op.drop_table("alert_outbox")
    op.drop_table("alert_feedback")
    op.drop_table("anomaly_episodes")
    op.drop_index("ix_anomaly_scores_anomalies", table_name="anomaly_scores")
    op.drop_table("anomaly_scores")
