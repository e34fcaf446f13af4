"""Google Cloud Billing export (standard or detailed usage cost table), as JSONL (BigQuery
export) or JSON; Vertex AI / Gemini rows and every other service in the account.

Grain: one row per billing account x project x service x SKU x usage hour (x resource, in the
detailed export). A Gemini model is billed as several SKUs (input, output, cached input,
thinking ...), so one hour of one model is several rows.
Units: `cost` in `currency` BEFORE credits; `credits[].amount` negative (net = cost +
SUM(credits.amount)); `usage.amount` in `usage.unit` ("count" for tokens),
`usage.amount_in_pricing_units` in `usage.pricing_unit` ("1M tokens"). `cost` and credit
amounts are read from the record's own text, every digit exact (a float holds only 15-17).
Only USD rows are kept: another billing currency is quarantined (`unsupported_value:currency`).
Quirks:
- The model and token type exist only in `sku.description` ("Gemini 2.5 Flash Input Text
  Tokens"): the model is the leading name before the token words, kept as reported in
  `model`, with `model_canonical` gemini-2.5-flash. SKUs that name no model (Compute, Storage,
  context-cache storage) keep null model and tokens, with their cost.
- Tokens only when the usage unit is a token count; other units (characters, hours, GiB) leave
  tokens null and the row is kept for its cost.
- `cost_type` regular | tax | adjustment | rounding error: non-regular rows say so in line_item.
- Nested fields (`service`, `sku`, `usage`, `credits`, `project`, `location`) arrive as
  structs (JSONL) or JSON text; both are read.
- Rows are re-exported during the month (`export_time`): ingest the latest export of a month.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import (
    SourceContext,
    as_text,
    assemble_rows,
    read_records,
    staged,
)
from sources.billing_common import (
    bucket_tokens,
    c,
    currency_issue,
    day_text,
    kind_label,
    model_from_name,
    named,
    nested_text,
    raw_column,
    scaled_quantity,
    text_of,
    token_bucket,
    unit_scale,
)
from transforms.expressions import flag_if
from transforms.schema import MONEY, PROVIDER_USAGE_SCHEMA

KIND = "gcp_billing"
PROVIDER = "google"
REQUIRED = ("date", "provider", "cost_usd", "credits_usd", "currency")
# The model is the SKU description's leading name, up to the first token/modality word.
MODEL_FAMILIES = r"gemini|gemma|claude|llama|mistral|codestral|jamba|imagen|veo|deepseek|qwen"
TOKEN_WORDS = (
    r"input|output|cached?|context|caching|thinking|reasoning|text|audio|image|video|tokens?"
    r"|characters?|predictions?|long|short|batch|priority|flex|provisioned|online|generation"
)
MODEL_PATTERN = rf"(?i)^((?:{MODEL_FAMILIES})\b.*?)\s+(?:{TOKEN_WORDS})\b"


def read(path: Path) -> pl.DataFrame:
    return read_records(path)


# The verbatim record keeps every digit the export wrote; parsed JSON numbers are binary floats
# (15-17 significant digits). Money is read from the record text where it is a plain number.
NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


def _record_number(key: str) -> pl.Expr:
    """A top-level JSON number of the record, as its own text; null if not a plain number."""
    return pl.col("_record").str.extract(rf'"{key}"\s*:\s*({NUMBER})\s*[,}}]', 1)


def _amount_texts(text: pl.Expr) -> pl.Expr:
    """The `amount` values of a JSON array of credit objects, as text (quotes removed)."""
    return text.str.extract_all(r'"amount"\s*:\s*("[^"]*"|[^,}\]]*)').list.eval(
        pl.element().str.replace(r'^"amount"\s*:\s*', "").str.strip_chars().str.strip_chars('"')
    )


def _credits(s: pl.Schema) -> tuple[pl.Expr, pl.Expr]:
    """(SUM(credits[].amount) as an exact Decimal, 0 for an empty or absent list; a flag for
    a credit amount that cannot be read)."""
    dtype = s.get("credits")
    if dtype is None:
        return pl.lit(0).cast(MONEY), pl.lit(False)
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        fields = {f.name: f.dtype for f in inner.fields} if isinstance(inner, pl.Struct) else {}
        if "amount" in fields:
            parsed = pl.col("credits").list.eval(
                text_of(pl.element().struct.field("amount"), fields["amount"]).str.strip_chars()
            )
        else:  # an all-empty column (List(Null)), or credit objects without an amount
            parsed = pl.col("credits").list.eval(text_of(pl.element(), inner).str.slice(0, 0))
        malformed = pl.lit(False)
    else:  # JSON text (CSV, or the reader's text fallback); anything else is malformed
        text = as_text(text_of(pl.col("credits"), dtype))
        parsed = _amount_texts(text)
        is_array = text.str.starts_with("[") if dtype == pl.String else pl.lit(False)
        malformed = (text.is_not_null() & ~is_array).fill_null(False)
    verbatim = pl.col("_record").str.extract(r'"credits"\s*:\s*(\[[^\]]*\])', 1)
    amounts = pl.when(verbatim.is_not_null()).then(_amount_texts(verbatim)).otherwise(parsed)
    values = amounts.list.eval(pl.element().cast(pl.Decimal(38, 18), strict=False))
    unreadable = values.list.eval(pl.element().is_null()).list.any().fill_null(False) | malformed
    total = values.list.sum().cast(MONEY).fill_null(pl.lit(0).cast(MONEY))
    return total, unreadable


def to_usage(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()

    def col(*names: str) -> pl.Expr:
        return as_text(raw_column(s, *names).cast(pl.String))

    credits, credits_unreadable = _credits(s)
    sku = c("sku")
    frame = staged(
        raw,
        named(
            sku=nested_text(s, "sku", "description"),
            cost_type=col("cost_type").str.to_lowercase(),
            usage_unit=nested_text(s, "usage", "unit"),
            usage_amount=nested_text(s, "usage", "amount"),
            pricing_unit=nested_text(s, "usage", "pricing_unit"),
            pricing_amount=nested_text(s, "usage", "amount_in_pricing_units"),
            cost=pl.coalesce(_record_number("cost"), col("cost")),
            credits=credits,
            credits_unreadable=credits_unreadable,
            currency=col("currency").str.to_uppercase(),
            day=col("usage_start_time"),
        ),
        named(
            regular=c("cost_type").is_null() | (c("cost_type") == "regular"),
            lowered=sku.str.to_lowercase(),
            usage_scale=unit_scale(c("usage_unit")),
            pricing_scale=unit_scale(c("pricing_unit")),
            day=day_text(c("day")),
        ),
        named(
            model=pl.when(c("regular")).then(sku.str.extract(MODEL_PATTERN, 1).str.strip_chars()),
            quantity=pl.when(c("usage_scale").is_not_null())
            .then(scaled_quantity(c("usage_amount"), c("usage_scale")))
            .when(c("pricing_scale").is_not_null())
            .then(scaled_quantity(c("pricing_amount"), c("pricing_scale"))),
        ),
        named(
            bucket=pl.when(c("model").is_not_null()).then(token_bucket(sku)),
            model_canonical=model_from_name(c("model")),
        ),
        named(tokens=pl.when(c("bucket").is_not_null()).then(c("quantity"))),
    )
    lowered = c("lowered")
    values = {
        "date": c("day"),
        "provider": pl.lit(PROVIDER),
        "model": c("model"),
        "model_canonical": c("model_canonical"),
        "account_id": pl.coalesce(nested_text(s, "project", "id"), col("billing_account_id")),
        "service_tier": pl.when(lowered.str.contains(r"\bpriority\b"))
        .then(pl.lit("priority"))
        .when(lowered.str.contains(r"\bflex\b"))
        .then(pl.lit("flex")),
        "batch": lowered.str.contains(r"\bbatch\b").fill_null(False),
        "region": pl.coalesce(
            nested_text(s, "location", "region"), nested_text(s, "location", "location")
        ),
        **bucket_tokens(c("bucket"), c("tokens")),
        "line_item": pl.when(c("regular")).then(sku).otherwise(kind_label(c("cost_type"), sku)),
        "cost_usd": c("cost"),
        "credits_usd": c("credits"),
        "currency": c("currency"),
    }
    issues = [
        flag_if(c("credits_unreadable"), "invalid_value:credits"),
        currency_issue(c("currency")),
    ]
    return assemble_rows(frame, ctx, PROVIDER_USAGE_SCHEMA, values, REQUIRED, issues)
