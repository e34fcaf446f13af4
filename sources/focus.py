"""FinOps FOCUS 1.2 cost and usage files (CSV or Parquet), as any provider exports them.

Grain: one row per charge: provider x billing account x sub-account x SKU price x charge
period (a day for usage). A provider's FOCUS file sums, per `InvoiceId`, to its invoices.
Units: `BilledCost` in `BillingCurrency` (what is invoiced, discounts included): cost_usd,
or credits_usd on Credit rows; non-USD rows are quarantined. `ConsumedQuantity` in
`ConsumedUnit` ("Tokens", "1000 Tokens", ...); `PricingQuantity` in `PricingUnit`
("1000000 Tokens") when ConsumedQuantity is absent.
Quirks:
- `ChargeCategory` is Usage | Purchase | Tax | Credit | Adjustment; every one may be negative.
  Anything else is quarantined (`invalid_value:charge_category`).
- `ChargeClass = Correction` restates a previously invoiced period: it keeps the corrected
  charge period's date, says `correction:` in line_item and carries no tokens.
- The model and token type are not FOCUS columns: `SkuPriceDetails` (a JSON object, a string
  in CSV) carries them as custom keys `x_Model`, `x_TokenType`, `x_ServiceTier`.
- `ProviderName` is a display name ("OpenAI", "Amazon Web Services"): normalized to our
  provider ids. Numbers are plain decimals or `mEn`; money is read exactly, via text.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import (
    SourceContext,
    as_text,
    assemble_rows,
    bad_value,
    read_records,
    staged,
)
from sources.billing_common import (
    bucket_tokens,
    c,
    currency_issue,
    day_text,
    decimal_text,
    kind_label,
    model_from_name,
    named,
    nested_text,
    provider_id,
    raw_column,
    scaled_quantity,
    token_bucket,
    unit_scale,
)
from transforms.expressions import flag_if
from transforms.schema import PROVIDER_USAGE_SCHEMA

KIND = "focus"
CHARGE_CATEGORIES = ("usage", "purchase", "tax", "credit", "adjustment")
REQUIRED = ("date", "provider", "cost_usd", "credits_usd", "currency")


# --------------------------------------------------------------------------- FOCUS adapter
def read(path: Path) -> pl.DataFrame:
    return read_records(path)


def _details(s: pl.Schema, key: str) -> pl.Expr:
    return nested_text(s, "SkuPriceDetails", key)


def to_usage(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()

    def col(*names: str) -> pl.Expr:
        return as_text(raw_column(s, *names).cast(pl.String))

    frame = staged(
        raw,
        named(
            category=col("ChargeCategory").str.to_lowercase(),
            correction=(col("ChargeClass").str.to_lowercase() == "correction").fill_null(False),
            model=pl.coalesce(_details(s, "x_Model"), col("x_Model")),
            # x_TokenType ('input', 'cached_input', 'cache_write_1h', 'output', 'reasoning'),
            # else the SkuMeter ('Input Tokens').
            token_type=pl.coalesce(_details(s, "x_TokenType"), col("SkuMeter")),
            tier=pl.coalesce(_details(s, "x_ServiceTier"), col("x_ServiceTier")).str.to_lowercase(),
            consumed=col("ConsumedQuantity"),
            consumed_unit=col("ConsumedUnit"),
            pricing_quantity=col("PricingQuantity"),
            pricing_unit=col("PricingUnit"),
            description=pl.coalesce(col("ChargeDescription"), col("SkuMeter"), col("SkuId")),
            currency=col("BillingCurrency").str.to_uppercase(),
            day=col("ChargePeriodStart"),
            provider=col("ProviderName"),
        ),
        named(
            is_usage=(c("category") == "usage") & ~c("correction"),
            is_credit=c("category") == "credit",
            consumed_scale=unit_scale(c("consumed_unit")),
            pricing_scale=unit_scale(c("pricing_unit")),
            tier=c("tier").replace({"standard": "default", "on_demand": "default"}),
            day=day_text(c("day")),
            provider=provider_id(c("provider")),
            model_canonical=model_from_name(c("model")),
        ),
        named(
            bucket=pl.when(c("is_usage")).then(token_bucket(c("token_type"))),
            quantity=pl.when(c("consumed").is_not_null() & c("consumed_scale").is_not_null())
            .then(scaled_quantity(c("consumed"), c("consumed_scale")))
            .when(c("consumed").is_null() & c("pricing_scale").is_not_null())
            .then(scaled_quantity(c("pricing_quantity"), c("pricing_scale"))),
            line_item=pl.when(c("correction"))
            .then(kind_label(pl.lit("correction"), c("description")))
            .when(c("is_usage"))
            .then(c("description"))
            .otherwise(kind_label(c("category"), c("description"))),
        ),
        named(tokens=pl.when(c("bucket").is_not_null()).then(c("quantity"))),
    )
    billed = raw_column(s, "BilledCost")
    requests_unit = c("consumed_unit").str.to_lowercase().is_in(["request", "requests"])
    values = {
        "date": c("day"),
        "provider": c("provider"),
        "model": c("model"),
        "model_canonical": c("model_canonical"),
        "account_id": pl.coalesce(col("SubAccountId"), col("BillingAccountId")),
        "service_tier": pl.when(c("tier") != "batch").then(c("tier")),
        "batch": (c("tier") == "batch").fill_null(False),
        "region": pl.coalesce(col("RegionId"), col("RegionName")),
        **bucket_tokens(c("bucket"), c("tokens")),
        "requests": pl.when(c("is_usage") & requests_unit).then(c("consumed")),
        "line_item": c("line_item"),
        "cost_usd": pl.when(c("is_credit")).then(pl.lit("0")).otherwise(billed),
        "credits_usd": pl.when(c("is_credit")).then(billed).otherwise(pl.lit("0")),
        "currency": c("currency"),
    }
    category = c("category")
    issues = [
        flag_if(
            category.is_not_null() & ~category.is_in(CHARGE_CATEGORIES),
            "invalid_value:charge_category",
        ),
        flag_if(category.is_null(), "missing_value:charge_category"),
        bad_value(c("consumed"), decimal_text(c("consumed")), "ConsumedQuantity"),
        currency_issue(c("currency")),
    ]
    return assemble_rows(frame, ctx, PROVIDER_USAGE_SCHEMA, values, REQUIRED, issues)
