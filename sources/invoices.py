"""Invoice lines in the canonical invoice-line layout, as CSV or JSON (a list of objects, an
object with a `lines` list, or JSONL).

Grain: one row per invoice line: usage per model/SKU, credits and discounts, tax, adjustments,
purchases of prepaid credit. The lines of an invoice sum to its total due.
Units: `amount_usd` and `unit_price_usd` as billed, exact, in the line's `currency`: USD for
nearly every line; a line in another ISO currency (EUR, GBP) is kept with its currency and
amounts as printed, never converted here (no rate is known at ingest; reconciliation converts
with the configured `fx_rates`, docs/reconciliation.md). `quantity` in `unit` (tokens, 1M
tokens, images, seconds, ...), as stated on the invoice.
Columns: exactly INVOICE_LINE_SCHEMA (docs/data-model.md, "Invoice lines"). The field names of
the reference invoice record are accepted as aliases (issuer, period_start, period_end,
line_no, unit_price, amount, line_type, restates_invoice_id).
Quirks and rules:
- `charge_category` is one of usage | credit | tax | adjustment | purchase (case-insensitive);
  anything else is quarantined as `invalid_value:charge_category`.
- Signs: credits are negative (a positive credit is quarantined, `invalid_sign:amount_usd`);
  adjustments and corrections may be either sign.
- A correction restates an earlier invoice: `is_correction` true and `corrects_invoice_id`
  naming it. A line with `corrects_invoice_id` and no `is_correction` is a correction; a
  correction without the id, or the id on a line marked `is_correction=false`, is quarantined.
- `billing_period_end` is exclusive and must fall after `billing_period_start`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import (
    SourceContext,
    as_bool,
    as_text,
    as_utc,
    assemble_rows,
    read_records,
    staged,
)
from sources.billing_common import (
    c,
    currency_issue,
    day_text,
    decimal_text,
    named,
    provider_id,
    raw_column,
)
from transforms.expressions import flag_if
from transforms.schema import CHARGE_CATEGORIES, INVOICE_LINE_SCHEMA, LINEAGE_SCHEMA, schema_of

KIND = "invoice"
SCHEMA = schema_of({**INVOICE_LINE_SCHEMA, **LINEAGE_SCHEMA})
REQUIRED = (
    "invoice_id",
    "provider",
    "billing_period_start",
    "billing_period_end",
    "charge_category",
    "amount_usd",
    "currency",
)
# Canonical column -> the names it may arrive under, canonical first.
ALIASES: dict[str, tuple[str, ...]] = {
    "provider": ("provider", "issuer"),
    "billing_period_start": ("billing_period_start", "period_start"),
    "billing_period_end": ("billing_period_end", "period_end"),
    "line_id": ("line_id", "line_no"),
    "unit_price_usd": ("unit_price_usd", "unit_price"),
    "amount_usd": ("amount_usd", "amount"),
    "charge_category": ("charge_category", "line_type"),
    "corrects_invoice_id": ("corrects_invoice_id", "restates_invoice_id"),
}


def read(path: Path) -> pl.DataFrame:
    return read_records(path, records_key="lines")


def to_invoice_lines(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()

    def col(name: str) -> pl.Expr:
        return raw_column(s, *ALIASES.get(name, (name,)))

    def text(name: str) -> pl.Expr:
        return as_text(col(name).cast(pl.String))

    frame = staged(
        raw,
        named(
            category=text("charge_category").str.to_lowercase(),
            corrects=text("corrects_invoice_id"),
            flag=text("is_correction"),
            currency=text("currency").str.to_uppercase(),
            start=day_text(text("billing_period_start")),
            end=day_text(text("billing_period_end")),
            amount=decimal_text(text("amount_usd")),
        ),
        named(stated=as_bool(c("flag"))),
        named(
            is_correction=pl.coalesce(c("stated"), c("corrects").is_not_null()),
            period_start=as_utc(c("start"), pl.String(), ctx.timezone),
            period_end=as_utc(c("end"), pl.String(), ctx.timezone),
        ),
    )
    values: dict[str, pl.Expr] = {
        "invoice_id": col("invoice_id"),
        "provider": provider_id(col("provider")),
        "billing_period_start": c("start"),
        "billing_period_end": c("end"),
        "line_id": col("line_id"),
        "description": col("description"),
        "charge_category": c("category"),
        "model": col("model"),
        "quantity": col("quantity"),
        "unit": col("unit"),
        "unit_price_usd": col("unit_price_usd"),
        "amount_usd": col("amount_usd"),
        "currency": c("currency"),
        "is_correction": c("is_correction"),
        "corrects_invoice_id": c("corrects"),
    }
    category, corrects, stated = c("category"), c("corrects"), c("stated")
    issues = [
        flag_if(
            category.is_not_null() & ~category.is_in(CHARGE_CATEGORIES),
            "invalid_value:charge_category",
        ),
        flag_if(c("flag").is_not_null() & stated.is_null(), "invalid_value:is_correction"),
        flag_if(stated.not_() & corrects.is_not_null(), "invalid_value:is_correction"),
        flag_if(c("is_correction") & corrects.is_null(), "missing_value:corrects_invoice_id"),
        flag_if(c("period_end") <= c("period_start"), "invalid_value:billing_period_end"),
        flag_if((category == "credit") & (c("amount") > 0), "invalid_sign:amount_usd"),
        currency_issue(c("currency"), other_currencies=True),
    ]
    return assemble_rows(frame, ctx, SCHEMA, values, REQUIRED, issues)
