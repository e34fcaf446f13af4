"""Anthropic Admin API usage report pages (`GET /v1/organizations/usage_report/messages`).

Grain: one row per result of a time bucket (1d, or 1h/1m) and whatever the pull grouped by
(`workspace_id`, `api_key_id`, `model`, `service_tier`, `context_window`, `inference_geo`,
...). `date` is the UTC day of the bucket's `starting_at` (RFC 3339).
Units: tokens; no money (that is the cost report).
Quirks:
- Input is reported in DISJOINT buckets: `uncached_input_tokens`, `cache_read_input_tokens`
  and the cache writes. Canonical `input_tokens` is their sum (uncached + cache read +
  5m writes + 1h writes); `cache_write_tokens` = 5m + 1h writes, `cache_write_1h_tokens` the
  1h part. A cache bucket that is absent counts as 0 in the sums and stays null itself.
- Cache writes come nested, `cache_creation: {ephemeral_5m_input_tokens,
  ephemeral_1h_input_tokens}` (official cookbook), or flattened,
  `cache_creation_5m_input_tokens` / `cache_creation_1h_input_tokens` (derived OpenAPI spec);
  both are read, nested first. An older undivided `cache_creation_input_tokens` counts as
  5m writes when neither is there.
- `service_tier`: `standard` -> `default`, `priority` -> `priority`, `batch` -> tier
  `default` with `batch` = true (batch is a discount, not a capacity tier). Null when the
  pull did not group by tier: batch stays null too (unknown, not false).
- `workspace_id` becomes `account_id` (null = the default workspace); `inference_geo`
  becomes `region` (`not_available` -> null).
- `context_window` (`0-200k` | `200k-1M`) has no canonical column; it is priced differently,
  so it is kept in `line_item` as `context_window:200k-1M` (with `speed:<v>` likewise).
- `server_tool_use.web_search_requests` (billed per call) has no column; it stays in the
  record. `reasoning_tokens` are not reported (inside `output_tokens`).
- File: one page, a JSON list of pages, or JSONL of pages; empty buckets give no rows.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import SourceContext, as_int, as_text, assemble_rows, bad_value
from sources.http_pull import read_pages
from sources.openai_usage import with_usage_checks
from transforms.models import model_canonical
from transforms.schema import PROVIDER_USAGE_SCHEMA

KIND = "anthropic_usage"
PROVIDER = "anthropic"
TIER = {"standard": "default", "batch": "default", "priority": "priority"}


def read(path: Path) -> pl.DataFrame:
    return read_pages(path)


def tier_and_batch(raw_tier: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Canonical (service_tier, batch as text) from Anthropic's `service_tier`."""
    tier = as_text(raw_tier).str.to_lowercase()
    service_tier = tier.replace(TIER)
    batch = pl.when(tier.is_not_null()).then((tier == "batch").cast(pl.String))
    return service_tier, batch


def region(raw_geo: pl.Expr) -> pl.Expr:
    geo = as_text(raw_geo)
    return pl.when(geo.str.to_lowercase() != "not_available").then(geo)


def to_usage(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()
    col = lambda name: pl.col(name) if name in s else pl.lit(None, pl.String)  # noqa: E731
    model = as_text(col("model"))
    service_tier, batch = tier_and_batch(col("service_tier"))

    counts = {
        "uncached_input_tokens": col("uncached_input_tokens"),
        "cache_read_input_tokens": col("cache_read_input_tokens"),
        "cache_creation_5m_input_tokens": pl.coalesce(
            col("cache_creation.ephemeral_5m_input_tokens"), col("cache_creation_5m_input_tokens")
        ),
        "cache_creation_1h_input_tokens": pl.coalesce(
            col("cache_creation.ephemeral_1h_input_tokens"), col("cache_creation_1h_input_tokens")
        ),
        "cache_creation_input_tokens": col("cache_creation_input_tokens"),
    }
    # Counts read once into columns, so the sums below stay small expressions.
    n = {name: pl.col(f"_n.{name}") for name in counts}
    split = (
        n["cache_creation_5m_input_tokens"].is_not_null()
        | n["cache_creation_1h_input_tokens"].is_not_null()
    )
    writes = (
        pl.when(split)
        .then(
            n["cache_creation_5m_input_tokens"].fill_null(0)
            + n["cache_creation_1h_input_tokens"].fill_null(0)
        )
        .otherwise(n["cache_creation_input_tokens"])
    )
    raw = raw.with_columns(as_int(expr).alias(f"_n.{name}") for name, expr in counts.items())
    raw = raw.with_columns(writes.alias("_n.writes"))
    writes = pl.col("_n.writes")
    total_input = (
        n["uncached_input_tokens"] + n["cache_read_input_tokens"].fill_null(0) + writes.fill_null(0)
    )
    qualifiers = pl.concat_str(
        [
            pl.lit("context_window:") + as_text(col("context_window")),
            pl.lit("speed:") + as_text(col("speed")),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    values = {
        "date": pl.coalesce(col("_bucket.starting_at"), col("_bucket.start_time")),
        "provider": pl.lit(PROVIDER),
        "model": model,
        "model_canonical": model_canonical(model),
        "account_id": col("workspace_id"),
        "api_key_id": col("api_key_id"),
        "service_tier": service_tier,
        "batch": batch,
        "region": region(col("inference_geo")),
        "input_tokens": total_input,
        "cache_read_tokens": n["cache_read_input_tokens"],
        "cache_write_tokens": writes,
        "cache_write_1h_tokens": n["cache_creation_1h_input_tokens"],
        "output_tokens": col("output_tokens"),
        "requests": col("requests"),
        "line_item": pl.when(qualifiers != "").then(qualifiers),
    }
    # A count that is there but unreadable is named by its source field, not by the sum.
    extra = [bad_value(counts[name], n[name], name) for name in counts]
    rows = assemble_rows(
        raw,
        ctx,
        PROVIDER_USAGE_SCHEMA,
        values,
        required=("date", "provider", "input_tokens", "output_tokens"),
        extra_issues=extra,
    )
    return with_usage_checks(rows)
