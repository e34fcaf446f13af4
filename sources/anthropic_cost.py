"""Anthropic Admin API cost report pages (`GET /v1/organizations/cost_report`).

Grain: one row per result of a daily bucket and whatever the pull grouped by
(`workspace_id`, `description`). With `group_by[]=description` a row is one model, token
type, tier and context window, or one non-token cost (web search, code execution).
`date` is the UTC day of the bucket's `starting_at`.
Units: money. `amount` is a decimal STRING in the currency's LOWEST unit, cents:
`"80.3253"` USD is $0.803253. Divided by 100 exactly (Decimal, via text, never a float).
Quirks:
- `currency` is "USD" (the only one documented); upper-cased, USD when absent; any other
  currency is quarantined (`unsupported_value:currency`), since `cost_usd` must be dollars.
- `model`, `token_type`, `cost_type`, `context_window` and `description` are null unless the
  pull grouped by description. `line_item` is `description`, or, without one,
  `cost_type, token_type, context_window` joined with ", ".
- `service_tier`: `standard` -> `default`, `batch` -> tier `default` with `batch` = true,
  as in the usage report. Priority Tier costs never appear in this report (documented by
  Anthropic): reconcile priority usage against the invoice instead.
- `workspace_id` becomes `account_id` (null = the default workspace); `inference_geo`
  becomes `region`. The amount is before credits; credits are not reported here.
- File: one page, a JSON list of pages, or JSONL of pages; empty buckets give no rows.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.anthropic_usage import region, tier_and_batch
from sources.base import SourceContext, as_money, as_text, assemble_rows, bad_value
from sources.http_pull import read_pages
from transforms.expressions import flag_if
from transforms.models import model_canonical
from transforms.schema import PROVIDER_USAGE_SCHEMA

KIND = "anthropic_cost"
PROVIDER = "anthropic"
CENTS_PER_DOLLAR = 100


def read(path: Path) -> pl.DataFrame:
    return read_pages(path)


def to_usage(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()
    col = lambda name: pl.col(name) if name in s else pl.lit(None, pl.String)  # noqa: E731
    model = as_text(col("model"))
    service_tier, batch = tier_and_batch(col("service_tier"))
    currency = pl.coalesce(as_text(col("currency")).str.to_uppercase(), pl.lit("USD"))
    described = pl.concat_str(
        [as_text(col(c)) for c in ("cost_type", "token_type", "context_window")],
        separator=", ",
        ignore_nulls=True,
    )
    amount = col("amount")
    dollars = as_money(amount, CENTS_PER_DOLLAR)
    values = {
        "date": pl.coalesce(col("_bucket.starting_at"), col("_bucket.start_time")),
        "provider": pl.lit(PROVIDER),
        "model": model,
        "model_canonical": model_canonical(model),
        "account_id": col("workspace_id"),
        "service_tier": service_tier,
        "batch": batch,
        "region": region(col("inference_geo")),
        "line_item": pl.coalesce(
            as_text(col("description")), pl.when(described != "").then(described)
        ),
        "cost_usd": dollars,
        "currency": currency,
    }
    extra = [
        bad_value(amount, dollars, "cost_usd"),  # named as in the other adapters
        flag_if(currency != "USD", "unsupported_value:currency"),
    ]
    return assemble_rows(
        raw,
        ctx,
        PROVIDER_USAGE_SCHEMA,
        values,
        required=("date", "provider", "cost_usd"),
        extra_issues=extra,
    )
