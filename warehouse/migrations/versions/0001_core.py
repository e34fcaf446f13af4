"""Core tables: daily roll-ups, ingest counts, quarantine summary, provider usage, invoice lines
and the partition load log.

Revision ID: 0001_core
Revises: (none)

Frozen DDL of `warehouse.tables` at this revision (a test checks a migrated database against
`warehouse.tables.METADATA`). Money is `Money()`: NUMERIC(38, 18) on PostgreSQL, canonical
decimal text on SQLite. Roll-up keys are nullable (an unknown model is its own group), so
those tables have indexes rather than primary keys. No wall-clock columns anywhere.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from warehouse.money import ExactDecimal, Money, UtcDateTime

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date()),
        sa.Column("provider", sa.Text()),
        sa.Column("model_key", sa.Text()),
        sa.Column("model", sa.Text()),
        sa.Column("feature", sa.Text()),
        sa.Column("team", sa.Text()),
        sa.Column("requests", sa.BigInteger()),
        sa.Column("logical_requests", sa.BigInteger()),
        sa.Column("retries", sa.BigInteger()),
        sa.Column("success", sa.BigInteger()),
        sa.Column("errors", sa.BigInteger()),
        sa.Column("timeouts", sa.BigInteger()),
        sa.Column("rejected", sa.BigInteger()),
        sa.Column("cancelled", sa.BigInteger()),
        sa.Column("usage_missing", sa.BigInteger()),
        sa.Column("gateway_cache_hits", sa.BigInteger()),
        sa.Column("batch_requests", sa.BigInteger()),
        sa.Column("long_context_requests", sa.BigInteger()),
        sa.Column("priced_requests", sa.BigInteger()),
        sa.Column("unpriced_requests", sa.BigInteger()),
        sa.Column("input_tokens", sa.BigInteger()),
        sa.Column("cache_read_tokens", sa.BigInteger()),
        sa.Column("cache_write_tokens", sa.BigInteger()),
        sa.Column("output_tokens", sa.BigInteger()),
        sa.Column("reasoning_tokens", sa.BigInteger()),
        sa.Column("image_count", sa.BigInteger()),
        sa.Column("usable_images", sa.BigInteger()),
        sa.Column("video_seconds", sa.Double()),
        sa.Column("usable_video_seconds", sa.Double()),
        sa.Column("audio_seconds", sa.Double()),
        sa.Column("list_cost_usd", Money()),
        sa.Column("cost_usd", Money()),
        sa.Column("cost_success_usd", Money()),
        sa.Column("cache_savings_usd", Money()),
        sa.Column("gateway_cost_usd", Money()),
        sa.Column("latency_ms_sum", sa.Double()),
        sa.Column("latency_count", sa.BigInteger()),
    )
    op.create_index("ix_usage_daily_day_feature", "usage_daily", ["day", "feature"])
    op.create_index(
        "ix_usage_daily_day_provider_model_key", "usage_daily", ["day", "provider", "model_key"]
    )
    op.create_index("ix_usage_daily_day_team", "usage_daily", ["day", "team"])
    op.create_table(
        "latency_by_model",
        sa.Column("day", sa.Date()),
        sa.Column("provider", sa.Text()),
        sa.Column("model_key", sa.Text()),
        sa.Column("attempts", sa.BigInteger()),
        sa.Column("latency_p50_ms", sa.Double()),
        sa.Column("latency_p95_ms", sa.Double()),
        sa.Column("latency_p99_ms", sa.Double()),
        sa.Column("ttft_p50_ms", sa.Double()),
        sa.Column("ttft_p95_ms", sa.Double()),
        sa.Column("ttft_p99_ms", sa.Double()),
    )
    op.create_index(
        "ix_latency_by_model_day_provider_model_key",
        "latency_by_model",
        ["day", "provider", "model_key"],
    )
    op.create_table(
        "latency_by_feature",
        sa.Column("day", sa.Date()),
        sa.Column("feature", sa.Text()),
        sa.Column("attempts", sa.BigInteger()),
        sa.Column("latency_p50_ms", sa.Double()),
        sa.Column("latency_p95_ms", sa.Double()),
        sa.Column("latency_p99_ms", sa.Double()),
        sa.Column("ttft_p50_ms", sa.Double()),
        sa.Column("ttft_p95_ms", sa.Double()),
        sa.Column("ttft_p99_ms", sa.Double()),
    )
    op.create_index("ix_latency_by_feature_day_feature", "latency_by_feature", ["day", "feature"])
    op.create_table(
        "peaks_by_model",
        sa.Column("day", sa.Date()),
        sa.Column("provider", sa.Text()),
        sa.Column("model_key", sa.Text()),
        sa.Column("peak_rpm", sa.BigInteger()),
        sa.Column("peak_rpm_minute", UtcDateTime()),
        sa.Column("peak_tpm", sa.BigInteger()),
        sa.Column("peak_tpm_minute", UtcDateTime()),
        sa.Column("peak_concurrency", sa.BigInteger()),
    )
    op.create_index(
        "ix_peaks_by_model_day_provider_model_key",
        "peaks_by_model",
        ["day", "provider", "model_key"],
    )
    op.create_table(
        "ingest_counts",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rows_read", sa.BigInteger()),
        sa.Column("normalized", sa.BigInteger()),
        sa.Column("duplicates", sa.BigInteger()),
        sa.Column("quarantined", sa.BigInteger()),
        sa.PrimaryKeyConstraint("day", "source", name="pk_ingest_counts"),
    )
    op.create_table(
        "quarantine_summary",
        sa.Column("day", sa.Date()),
        sa.Column("source", sa.Text()),
        sa.Column("source_kind", sa.Text()),
        sa.Column("reason", sa.Text()),
        sa.Column("rows", sa.BigInteger()),
    )
    op.create_index("ix_quarantine_summary_day_source", "quarantine_summary", ["day", "source"])
    op.create_table(
        "provider_usage_daily",
        sa.Column("date", sa.Date()),
        sa.Column("provider", sa.Text()),
        sa.Column("model", sa.Text()),
        sa.Column("model_canonical", sa.Text()),
        sa.Column("account_id", sa.Text()),
        sa.Column("api_key_id", sa.Text()),
        sa.Column("service_tier", sa.Text()),
        sa.Column("batch", sa.Boolean()),
        sa.Column("region", sa.Text()),
        sa.Column("input_tokens", sa.BigInteger()),
        sa.Column("cache_read_tokens", sa.BigInteger()),
        sa.Column("cache_write_tokens", sa.BigInteger()),
        sa.Column("cache_write_1h_tokens", sa.BigInteger()),
        sa.Column("output_tokens", sa.BigInteger()),
        sa.Column("reasoning_tokens", sa.BigInteger()),
        sa.Column("requests", sa.BigInteger()),
        sa.Column("line_item", sa.Text()),
        sa.Column("cost_usd", Money()),
        sa.Column("credits_usd", Money()),
        sa.Column("currency", sa.Text()),
    )
    op.create_index(
        "ix_provider_usage_daily_date_provider_model_canonical",
        "provider_usage_daily",
        ["date", "provider", "model_canonical"],
    )
    op.create_table(
        "invoice_lines",
        sa.Column("invoice_id", sa.Text()),
        sa.Column("provider", sa.Text()),
        sa.Column("billing_period_start", sa.Date()),
        sa.Column("billing_period_end", sa.Date()),
        sa.Column("line_id", sa.Text()),
        sa.Column("description", sa.Text()),
        sa.Column("charge_category", sa.Text()),
        sa.Column("model", sa.Text()),
        sa.Column("quantity", ExactDecimal(38, 9)),
        sa.Column("unit", sa.Text()),
        sa.Column("unit_price_usd", Money()),
        sa.Column("amount_usd", Money()),
        sa.Column("currency", sa.Text()),
        sa.Column("is_correction", sa.Boolean()),
        sa.Column("corrects_invoice_id", sa.Text()),
        sa.Column("source_file", sa.Text()),
    )
    op.create_index(
        "ix_invoice_lines_billing_period_start_provider",
        "invoice_lines",
        ["billing_period_start", "provider"],
    )
    op.create_index("ix_invoice_lines_invoice_id", "invoice_lines", ["invoice_id"])
    op.create_table(
        "partition_loads",
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("partition_key", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger()),
        sa.Column("content_sha256", sa.Text()),
        sa.PrimaryKeyConstraint("table_name", "partition_key", name="pk_partition_loads"),
    )


def downgrade() -> None:
    op.drop_table("partition_loads")
    op.drop_table("invoice_lines")
    op.drop_table("provider_usage_daily")
    op.drop_table("quarantine_summary")
    op.drop_table("ingest_counts")
    op.drop_table("peaks_by_model")
    op.drop_table("latency_by_feature")
    op.drop_table("latency_by_model")
    op.drop_table("usage_daily")
