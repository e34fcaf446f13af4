"""OpenAI organization Costs API pages (`GET /v1/organization/costs`, admin key).

Grain: one row per result of a daily bucket (the API has only `1d` buckets) and whatever the
pull grouped by (`project_id`, `line_item`). `date` is the UTC day of `start_time`.
Units: money only, `amount.value` in `amount.currency`; no token counts.
Quirks:
- `amount.currency` is lower-case ISO 4217 (`"usd"`): upper-cased. Absent, it is USD (the
  only currency the API bills in); any other currency is quarantined
  (`unsupported_value:currency`), since `cost_usd` must be dollars.
- `amount.value` has up to 16 decimals (`0.8958740000000000`) and may be a number or a
  string: read from its text, exactly, never through a float (a bare `amount` number is
  read too). It is what OpenAI bills before credits.
- `line_item` (null unless grouped by it) is kept as is. When it names a model and a token
  type, the model is read out of it:
    "gpt-4o-2024-08-06, input"                  -> model gpt-4o-2024-08-06 (input)
    "gpt-4o-mini-2024-07-18, cached input"      -> model gpt-4o-mini-2024-07-18
    "priority | gpt-5.6-sol, output, long context" -> model gpt-5.6-sol, service tier priority
    "gpt-image-1 image, output"                 -> model gpt-image-1 (modality word dropped)
  Anything else ("Image models", "web search tool calls") keeps a null model. The token type
  has no column of its own and stays readable in `line_item`. The tier may also come as a
  suffix, "gpt-4o-2024-08-06, input (batch)" / "(flex)" / "(priority)"; `batch` sets
  batch = true, the others the service tier (prefix or suffix, only `priority |` has been
  seen in real data). Without either, tier and batch stay null (unknown).
- Empty buckets (days without spend) give no rows; a file of only empty buckets is empty.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import SourceContext, as_text, assemble_rows
from sources.http_pull import read_pages
from transforms.expressions import flag_if
from transforms.models import model_canonical
from transforms.schema import PROVIDER_USAGE_SCHEMA

KIND = "openai_costs"
PROVIDER = "openai"
# "[<tier> | ]<model>[ <modality>], <token type>[ (<tier>)][, <qualifier>...]"; the model
# has no spaces.
LINE_ITEM = (
    r"^(?:(?<tier>[a-z]+) \| )?"
    r"(?<model>[A-Za-z0-9][\w.:/-]*)(?: (?:audio|image|text|video))?"
    r", (?<token_type>[a-z][a-z ]*?)(?: \((?<tier_suffix>[a-z]+)\))?(?:, .+)?$"
)
TIERS = {"priority": "priority", "flex": "flex", "default": "default", "scale": "scale"}


def read(path: Path) -> pl.DataFrame:
    return read_pages(path)


def parse_line_item(line_item: pl.Expr) -> pl.Expr:
    """A struct of `tier`, `model`, `token_type` out of a cost line item (nulls if no match)."""
    parts = line_item.str.extract_groups(LINE_ITEM)
    return pl.struct(
        pl.coalesce(parts.struct.field("tier"), parts.struct.field("tier_suffix")).alias("tier"),
        parts.struct.field("model"),
        parts.struct.field("token_type"),
    )


def to_usage(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()
    col = lambda name: pl.col(name) if name in s else pl.lit(None, pl.String)  # noqa: E731
    line_item = as_text(col("line_item"))
    parsed = parse_line_item(line_item)
    model = parsed.struct.field("model")
    tier = parsed.struct.field("tier")
    currency = pl.coalesce(as_text(col("amount.currency")).str.to_uppercase(), pl.lit("USD"))
    values = {
        "date": col("_bucket.start_time"),
        "provider": pl.lit(PROVIDER),
        "model": model,
        "model_canonical": model_canonical(model),
        "account_id": col("project_id"),
        "service_tier": tier.replace_strict(TIERS, default=None, return_dtype=pl.String),
        "batch": pl.when(tier == "batch").then(pl.lit("true")),
        "line_item": line_item,
        "cost_usd": pl.coalesce(col("amount.value"), col("amount")),
        "currency": currency,
    }
    extra = [flag_if(currency != "USD", "unsupported_value:currency")]
    return assemble_rows(
        raw,
        ctx,
        PROVIDER_USAGE_SCHEMA,
        values,
        required=("date", "provider", "cost_usd"),
        extra_issues=extra,
    )
