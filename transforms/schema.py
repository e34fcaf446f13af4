"""The canonical request record: one row per upstream attempt.

Declared once here; every reader, adapter and transform validates against these dtypes.
Field-by-field documentation lives in docs/data-model.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

UTC_DATETIME = pl.Datetime("us", "UTC")
# Money: 18 decimal places holds any per-token rate of a per-million-token price with up to
# 12 decimals exactly, and 20 integer digits leave room for any realistic total.
MONEY = pl.Decimal(38, 18)

STATUSES = ("success", "error", "timeout", "rejected", "cancelled")
MODALITIES = ("text", "embedding", "image", "video", "audio")
SERVICE_TIERS = ("default", "flex", "priority")

TOKEN_COLUMNS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def schema_of(columns: Mapping[str, Any]) -> pl.Schema:
    """A Schema from a mapping that mixes dtype classes and instances (typing convenience)."""
    return pl.Schema(columns)


CANONICAL_SCHEMA: pl.Schema = schema_of(
    {
        "request_id": pl.String,
        "attempt": pl.Int32,
        "trace_id": pl.String,
        "started_at": UTC_DATETIME,
        "first_token_at": UTC_DATETIME,
        "ended_at": UTC_DATETIME,
        "gateway": pl.String,
        "provider": pl.String,
        "model": pl.String,
        "region": pl.String,
        "service_tier": pl.String,
        "batch": pl.Boolean,
        "feature": pl.String,
        "team": pl.String,
        "user": pl.String,
        "api_key_id": pl.String,
        "status": pl.String,
        "modality": pl.String,
        "input_tokens": pl.Int64,
        "cache_read_tokens": pl.Int64,
        "cache_write_tokens": pl.Int64,
        "cache_write_1h_tokens": pl.Int64,
        "output_tokens": pl.Int64,
        "reasoning_tokens": pl.Int64,
        "image_count": pl.Int64,
        "image_size": pl.String,
        "image_quality": pl.String,
        "video_seconds": pl.Float64,
        "video_resolution": pl.String,
        "audio_seconds": pl.Float64,
        "gateway_cost_usd": MONEY,
        # Served from the gateway's own cache: the provider was never called, so it costs nothing.
        "gateway_cache_hit": pl.Boolean,
    }
)

# A file must carry these; every other column is optional and filled with its default.
REQUIRED_COLUMNS = ("request_id", "started_at", "provider", "model")

# Defaults for optional columns a source does not provide. Token columns stay null when
# absent: a missing count is "usage_missing", never zero.
COLUMN_DEFAULTS: dict[str, object] = {
    "attempt": 1,
    "batch": False,
    "gateway_cache_hit": False,
    "status": "success",
    "modality": "text",
}

# Validation problems found on a row; they travel with it so that nothing is dropped.
ROW_ISSUES = "row_issues"

# Provider spellings seen in gateway logs, mapped to genai-prices provider ids.
PROVIDER_ALIASES: dict[str, str] = {
    "bedrock": "aws",
    "aws_bedrock": "aws",
    "amazon_bedrock": "aws",
    "amazon-bedrock": "aws",
    "vertex_ai": "google",
    "vertex": "google",
    "vertex-ai": "google",
    "gemini": "google",
    "google_ai_studio": "google",
    "google-ai-studio": "google",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "azure_ai": "azure",
    "openai_compatible": "openai",
    "xai": "x-ai",
    "grok": "x-ai",
    "mistralai": "mistral",
    "together_ai": "together",
    "togetherai": "together",
    "fireworks_ai": "fireworks",
    "fireworks-ai": "fireworks",
    "moonshot": "moonshotai",
    "zhipu": "zhipuai",
    "claude": "anthropic",
}


def canonical_provider(expr: pl.Expr) -> pl.Expr:
    """Lower-case, trimmed provider id with aliases resolved."""
    cleaned = expr.str.strip_chars().str.to_lowercase()
    return cleaned.replace(PROVIDER_ALIASES)


def empty_canonical() -> pl.DataFrame:
    return pl.DataFrame(schema=CANONICAL_SCHEMA).with_columns(
        pl.lit(None, pl.String).alias(ROW_ISSUES)
    )


# --------------------------------------------------------------------------- ingest outputs
# Where a normalized row came from: enough to find the original line again.
LINEAGE_SCHEMA = schema_of(
    {
        "source": pl.String,  # the source's name in sources.yaml (or its kind on the CLI)
        "source_kind": pl.String,  # adapter: litellm, helicone, openrouter, ...
        "source_file": pl.String,
        "source_line": pl.Int64,  # 1-based line (JSONL/CSV data line) or record number
    }
)
# Resolved from the logged model string; the raw string stays in `model`.
MODEL_RESOLUTION_SCHEMA = schema_of({"model_canonical": pl.String, "model_version": pl.String})
NORMALIZED_SCHEMA = schema_of({**CANONICAL_SCHEMA, **MODEL_RESOLUTION_SCHEMA, **LINEAGE_SCHEMA})

QUARANTINE_SCHEMA = schema_of(
    {
        **LINEAGE_SCHEMA,
        "day": pl.Date,  # event day when it could be read, else the file's partition day
        "reason": pl.String,
        "record": pl.String,  # the original record, verbatim (JSON text or CSV line)
    }
)
DUPLICATES_SCHEMA = schema_of(
    {**LINEAGE_SCHEMA, "day": pl.Date, "request_id": pl.String, "attempt": pl.Int32}
)

# Per source and partition day: rows_read = normalized + duplicates + quarantined, always.
INGEST_COUNTS_SCHEMA = schema_of(
    {
        "source": pl.String,
        "day": pl.Date,
        "rows_read": pl.Int64,
        "normalized": pl.Int64,
        "duplicates": pl.Int64,
        "quarantined": pl.Int64,
    }
)

# One row per provider, day and model (and whatever finer keys the report has): what the
# provider says we used and what it says it cost. Token buckets follow canonical semantics.
PROVIDER_USAGE_SCHEMA = schema_of(
    {
        "date": pl.Date,
        "provider": pl.String,
        "model": pl.String,  # as reported; null for cost lines without a model
        "model_canonical": pl.String,
        "account_id": pl.String,  # project / workspace / billing account / subscription
        "api_key_id": pl.String,  # hashed or provider key id, never a secret
        "service_tier": pl.String,
        "batch": pl.Boolean,
        "region": pl.String,
        "input_tokens": pl.Int64,  # all prompt tokens, cached included
        "cache_read_tokens": pl.Int64,
        "cache_write_tokens": pl.Int64,
        "cache_write_1h_tokens": pl.Int64,
        "output_tokens": pl.Int64,  # all generated tokens, reasoning included
        "reasoning_tokens": pl.Int64,
        "requests": pl.Int64,
        "line_item": pl.String,  # the provider's description / SKU / usage type
        "cost_usd": MONEY,  # provider-stated cost before credits; null when the report has none
        "credits_usd": MONEY,  # credits applied (negative), when the report carries them
        "currency": pl.String,  # ISO 4217 upper-case, as billed
        **LINEAGE_SCHEMA,
    }
)

CHARGE_CATEGORIES = ("usage", "credit", "tax", "adjustment", "purchase")
INVOICE_LINE_SCHEMA = schema_of(
    {
        "invoice_id": pl.String,
        "provider": pl.String,
        "billing_period_start": pl.Date,
        "billing_period_end": pl.Date,  # exclusive
        "line_id": pl.String,
        "description": pl.String,
        "charge_category": pl.String,
        "model": pl.String,
        "quantity": pl.Decimal(38, 9),
        "unit": pl.String,
        # As billed, in `currency` (USD on nearly every line; a EUR invoice's lines are in
        # euros): never converted at ingest; reconciliation converts with configured rates.
        "unit_price_usd": MONEY,
        "amount_usd": MONEY,
        "currency": pl.String,
        "is_correction": pl.Boolean,
        "corrects_invoice_id": pl.String,
    }
)
