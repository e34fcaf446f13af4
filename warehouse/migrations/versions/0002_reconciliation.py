"""Reconciliation: one row per reconciliation run, one row per line of a run.

Revision ID: 0002_reconciliation
Revises: 0001_core

Tables
  reconciliation_runs   one row per run: kind (daily | monthly), period, provider scope
                        ('*' = all), the SHA-256 of its inputs, when it ran, totals and
                        status. A re-run with identical inputs is the same run (unique on
                        kind, period_start, scope, inputs_hash); a run with new inputs
                        (a restated invoice, late usage) supersedes the current one and the
                        earlier runs stay as history (`superseded_by`).
  reconciliation_lines  one row per line (transforms.reconcile.LINE_SCHEMA): provider x period
                        x model group (usage) or bill component (credit, tax, rounding,
                        adjustment); expected / reported / invoiced tokens and dollars, the
                        difference split by category (`<category>_usd`, summing exactly to
                        `difference_usd`), status matched | within_tolerance | variance |
                        unexplained, and JSON evidence.

Money is `warehouse.money.Money`: NUMERIC(38, 18) on PostgreSQL, canonical decimal text on
SQLite (no float anywhere).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from warehouse.money import Money, UtcDateTime

revision = "0002_reconciliation"
down_revision = "0001_core"
branch_labels = None
depends_on = None

CATEGORIES = (
    "missing_gateway_logs",
    "gateway_bypass",
    "price_change",
    "unpriced_model",
    "batch_tier_mismatch",
    "duplicate_billing",
    "currency",
    "credit",
    "tax",
    "adjustment",
    "rounding",
    "minor_difference",
    "unexplained",
)


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("inputs_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("superseded_by", sa.String(100)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("expected_usd", Money()),
        sa.Column("reported_usd", Money()),
        sa.Column("invoiced_usd", Money()),
        sa.Column("difference_usd", Money()),
        sa.Column("unexplained_usd", Money()),
        sa.Column("config", sa.Text),
        sa.UniqueConstraint(
            "kind", "period_start", "scope", "inputs_hash", name="uq_reconciliation_runs_inputs"
        ),
    )
    op.create_index(
        "ix_reconciliation_runs_period", "reconciliation_runs", ["kind", "period_start", "scope"]
    )
    op.create_table(
        "reconciliation_lines",
        sa.Column(
            "run_id",
            sa.String(100),
            sa.ForeignKey("reconciliation_runs.run_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("grain", sa.String(10), nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("line_kind", sa.String(20), nullable=False),
        sa.Column("model_group", sa.String(300)),
        sa.Column("models", sa.Text),
        sa.Column("expected_tokens", sa.BigInteger),
        sa.Column("reported_tokens", sa.BigInteger),
        sa.Column("invoiced_tokens", sa.BigInteger),
        sa.Column("expected_usd", Money()),
        sa.Column("reported_usd", Money()),
        sa.Column("invoiced_usd", Money()),
        sa.Column("difference_usd", Money()),
        sa.Column("tolerance_usd", Money()),
        sa.Column("category", sa.String(40)),
        sa.Column("status", sa.String(20), nullable=False),
        *[sa.Column(f"{c}_usd", Money()) for c in CATEGORIES],
        sa.Column("evidence", sa.Text),
        sa.PrimaryKeyConstraint("run_id", "line_no", name="pk_reconciliation_lines"),
    )
    op.create_index("ix_reconciliation_lines_status", "reconciliation_lines", ["run_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_reconciliation_lines_status", table_name="reconciliation_lines")
    op.drop_table("reconciliation_lines")
    op.drop_index("ix_reconciliation_runs_period", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
