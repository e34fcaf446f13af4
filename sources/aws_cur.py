"""AWS Cost and Usage Report 2.0 (Data Exports), Amazon Bedrock lines, CSV or Parquet.

Grain: one row per line item: account x usage type x operation x resource x hour or day (as
the export was configured). Bedrock bills each token type as its own usage type, so one day
of one model is several rows: input, output, cache read, cache write.
Units: `line_item_usage_amount` is in `pricing_unit` ("tokens", "1K tokens", "1M tokens":
parsed, never assumed); `line_item_unblended_cost` in `line_item_currency_code`, read
exactly as text (non-USD lines are quarantined, `unsupported_value:currency`).
Quirks:
- `line_item_usage_type` = `<region prefix>-<model>-<token type>`:
  `USE1-Claude4.6Sonnet-input-tokens`, `...-output-tokens`,
  `...-cache-read-input-token-count`, `...-cache-write-input-token-count`, and
  `...-mantle-input-tokens-*` for bedrock-mantle. Service tier (priority/flex), batch and
  cross-region inference are further markers in the usage type.
- The model is a billing name (`Claude4.6Sonnet`), kept in `model`; `model_canonical` is the
  family name requests resolve to (`claude-sonnet-4-6`).
- `line_item_line_item_type`: Usage (and DiscountedUsage, SavingsPlanCoveredUsage) carries
  tokens; Credit, Refund, *Discount and SavingsPlanNegation are reductions (credits_usd);
  Tax, Fee and the rest are costs without tokens. `line_item` names the type for those.
- Region: `product_region_code`, else the usage-type prefix (USE1 -> us-east-1).
- Legacy CUR column spellings (`lineItem/UsageType`) are accepted too.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import SourceContext, as_text, assemble_rows, bad_value, read_records, staged
from sources.billing_common import (
    bucket_tokens,
    c,
    currency_issue,
    day_text,
    decimal_text,
    kind_label,
    model_from_name,
    named,
    raw_column,
    scaled_quantity,
    token_bucket,
    unit_scale,
)
from transforms.expressions import flag_if
from transforms.schema import PROVIDER_USAGE_SCHEMA

KIND = "aws_cur"
PROVIDER = "aws"
REQUIRED = ("date", "provider", "cost_usd", "credits_usd", "currency")

# Usage-type region prefixes (AWS pricing "usagetype" codes) -> region codes.
REGION_PREFIXES: dict[str, str] = {
    "USE1": "us-east-1",
    "USE2": "us-east-2",
    "USW1": "us-west-1",
    "USW2": "us-west-2",
    "UGE1": "us-gov-east-1",
    "UGW1": "us-gov-west-1",
    "CAN1": "ca-central-1",
    "CAN2": "ca-west-1",
    "EU": "eu-west-1",
    "EUW1": "eu-west-1",
    "EUW2": "eu-west-2",
    "EUW3": "eu-west-3",
    "EUC1": "eu-central-1",
    "EUC2": "eu-central-2",
    "EUN1": "eu-north-1",
    "EUS1": "eu-south-1",
    "EUS2": "eu-south-2",
    "APN1": "ap-northeast-1",
    "APN2": "ap-northeast-2",
    "APN3": "ap-northeast-3",
    "APS1": "ap-southeast-1",
    "APS2": "ap-southeast-2",
    "APS3": "ap-south-1",
    "APS4": "ap-southeast-3",
    "APS5": "ap-south-2",
    "APS6": "ap-southeast-4",
    "APS7": "ap-southeast-5",
    "APE1": "ap-east-1",
    "MES1": "me-south-1",
    "MEC1": "me-central-1",
    "ILC1": "il-central-1",
    "SAE1": "sa-east-1",
    "AFS1": "af-south-1",
    "MXC1": "mx-central-1",
}
USAGE_TYPES = ("usage", "discountedusage", "savingsplancoveredusage")
TOKEN_SUFFIX = (
    r"-(?:mantle-)?(?:cache-read-input-token-count|cache-write-input-token-count"
    r"|input-tokens|output-tokens)"
)
# Markers inside the usage type that are not part of the model name.
MARKERS = r"(?i)-(?:cross-?region(?:-global)?|global|geo|priority|flex|batch|mantle)\b"


def read(path: Path) -> pl.DataFrame:
    return read_records(path)


def to_usage(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()

    def col(*names: str) -> pl.Expr:
        return as_text(raw_column(s, *names).cast(pl.String))

    usage_type = c("usage_type")
    frame = staged(
        raw,
        named(
            usage_type=col("line_item_usage_type", "lineItem/UsageType"),
            line_type_raw=col("line_item_line_item_type", "lineItem/LineItemType"),
            amount=col("line_item_usage_amount", "lineItem/UsageAmount"),
            unit=col("pricing_unit", "pricing/unit"),
            description=col("line_item_line_item_description", "lineItem/LineItemDescription"),
            currency=col("line_item_currency_code", "lineItem/CurrencyCode").str.to_uppercase(),
            day=col("line_item_usage_start_date", "lineItem/UsageStartDate"),
        ),
        named(
            line_type=c("line_type_raw").str.to_lowercase().str.replace_all(r"[\s_-]", ""),
            prefix=usage_type.str.extract(r"^([A-Z]{2,4}\d?)-", 1),
            lowered=usage_type.str.to_lowercase(),
            scale=unit_scale(c("unit")),
            day=day_text(c("day")),
        ),
        named(
            is_usage=c("line_type").is_in(USAGE_TYPES),
            is_credit=c("line_type").is_in(["credit", "refund", "savingsplannegation"])
            | c("line_type").str.ends_with("discount"),
            # The usage type without its region prefix: <model>-<token type>[-markers].
            rest=pl.when(c("prefix").is_in(list(REGION_PREFIXES)))
            .then(usage_type.str.replace(r"^[A-Z]{2,4}\d?-", ""))
            .otherwise(usage_type),
        ),
        named(token_line=c("is_usage") & usage_type.str.contains(TOKEN_SUFFIX)),
        named(
            model=pl.when(c("token_line")).then(
                c("rest").str.extract(rf"^(.+?){TOKEN_SUFFIX}", 1).str.replace_all(MARKERS, "")
            ),
            # The bucket from the token-type suffix only: a model name never decides it.
            bucket=pl.when(c("token_line")).then(
                token_bucket(usage_type.str.extract(rf"({TOKEN_SUFFIX}.*)$", 1))
            ),
            tokens=pl.when(c("token_line")).then(scaled_quantity(c("amount"), c("scale"))),
            line_item=pl.when(c("is_usage"))
            .then(pl.coalesce(usage_type, c("description")))
            .otherwise(
                kind_label(
                    c("line_type_raw").str.to_lowercase(),
                    pl.coalesce(c("description"), usage_type),
                )
            ),
        ),
        named(model_canonical=model_from_name(c("model"))),
    )
    lowered = c("lowered")
    cost = raw_column(s, "line_item_unblended_cost", "lineItem/UnblendedCost")
    values = {
        "date": c("day"),
        "provider": pl.lit(PROVIDER),
        "model": c("model"),
        "model_canonical": c("model_canonical"),
        "account_id": pl.coalesce(
            col("line_item_usage_account_id", "lineItem/UsageAccountId"),
            col("bill_payer_account_id", "bill/PayerAccountId"),
        ),
        "service_tier": pl.when(lowered.str.contains(r"(?:^|-)priority(?:-|$)"))
        .then(pl.lit("priority"))
        .when(lowered.str.contains(r"(?:^|-)flex(?:-|$)"))
        .then(pl.lit("flex")),
        "batch": lowered.str.contains(r"(?:^|-)batch(?:-|$)").fill_null(False),
        "region": pl.coalesce(
            col("product_region_code", "product/regionCode", "product_region"),
            c("prefix").replace_strict(REGION_PREFIXES, default=None, return_dtype=pl.String),
        ),
        **bucket_tokens(c("bucket"), c("tokens")),
        "line_item": c("line_item"),
        "cost_usd": pl.when(c("is_credit")).then(pl.lit("0")).otherwise(cost),
        "credits_usd": pl.when(c("is_credit")).then(cost).otherwise(pl.lit("0")),
        "currency": c("currency"),
    }
    token_line, amount, unit = c("token_line"), c("amount"), c("unit")
    issues = [
        flag_if(c("line_type").is_null(), "missing_value:line_item_line_item_type"),
        bad_value(amount, decimal_text(amount), "line_item_usage_amount"),
        flag_if(token_line & amount.is_null(), "missing_value:line_item_usage_amount"),
        flag_if(token_line & unit.is_null(), "missing_value:pricing_unit"),
        flag_if(
            token_line & unit.is_not_null() & c("scale").is_null(), "invalid_value:pricing_unit"
        ),
        currency_issue(c("currency")),
    ]
    return assemble_rows(frame, ctx, PROVIDER_USAGE_SCHEMA, values, REQUIRED, issues)
