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

This module also holds the helpers every billing adapter shares (units, token buckets,
model names, providers): FOCUS is the general case of which the others are dialects.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from sources.base import (
    SourceContext,
    as_text,
    assemble_rows,
    bad_value,
    read_records,
    scalar,
    value,
)
from transforms.expressions import flag_if
from transforms.models import model_canonical
from transforms.schema import PROVIDER_ALIASES, PROVIDER_USAGE_SCHEMA

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

KIND = "focus"
CHARGE_CATEGORIES = ("usage", "purchase", "tax", "credit", "adjustment")
REQUIRED = ("date", "provider", "cost_usd", "credits_usd", "currency")


# --------------------------------------------------------------------------- shared helpers
def text_of(expr: pl.Expr, dtype: PolarsDataType) -> pl.Expr:
    """Any value as text: scalars cast, lists and objects as their JSON (so that a list where
    a number belongs is an unreadable value, never a crash)."""
    return scalar(expr, dtype).cast(pl.String)  # type: ignore[arg-type]


def raw_column(schema: pl.Schema, *names: str) -> pl.Expr:
    """The first of `names` the file has (CUR 2.0 vs legacy spellings), else null. A nested
    value (JSON input) comes as its JSON text."""
    for name in names:
        if name in schema:
            return value(schema, name)
    return pl.lit(None, pl.String)


def nested_text(schema: pl.Schema, *path: str) -> pl.Expr:
    """A nested field (Struct or JSON text) as trimmed text, whatever its type; null if absent."""
    return as_text(value(schema, *path).cast(pl.String))


def day_text(expr: pl.Expr) -> pl.Expr:
    """A timestamp or bare ISO date as text the Date coercion reads (a date is midnight)."""
    text = as_text(expr.cast(pl.String))
    return (
        pl.when(text.str.contains(r"^\d{4}-\d{2}-\d{2}$"))
        .then(text + pl.lit(" 00:00:00"))
        .otherwise(text)
    )


def decimal_text(expr: pl.Expr, scale: int = 18) -> pl.Expr:
    """A number (or numeric text, `mEn` allowed) as an exact Decimal; null when unreadable."""
    return as_text(expr.cast(pl.String)).cast(pl.Decimal(38, scale), strict=False)


def unit_scale(unit: pl.Expr) -> pl.Expr:
    """Tokens per one `unit`: 'Tokens', 'count' 1; '1K tokens' 1000; '1000000 Tokens',
    '1M tokens', 'per 1 million tokens' 1_000_000. Null when the unit is not a token count
    (GiB, Hours, characters ...). Parenthesized notes are ignored."""
    text = (
        as_text(unit.cast(pl.String))
        .str.to_lowercase()
        .str.replace_all(r"\(.*?\)", "")
        .str.replace_all(",", "")
        .str.strip_chars()
        .str.replace(r"^per\s+", "")
    )
    pattern = r"^(\d+)?\s*(k|m|thousand|million)?\s*(?:tokens?|count|token[\s-]count)$"
    number = text.str.extract(pattern, 1).cast(pl.Int64, strict=False).fill_null(1)
    magnitude = (
        text.str.extract(pattern, 2)
        .replace_strict(
            {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "million": 1_000_000},
            default=1,
            return_dtype=pl.Int64,
        )
        .fill_null(1)
    )
    return pl.when(text.str.contains(pattern)).then(number * magnitude)


def scaled_quantity(amount: pl.Expr, scale: pl.Expr) -> pl.Expr:
    """`amount` units of `scale` tokens each, exactly (23.456 x 1K = 23456)."""
    return decimal_text(amount) * scale.cast(pl.Decimal(38, 0))


# One billing row carries one token bucket. Canonical semantics: input_tokens counts every
# prompt token, so a cache-read (or cache-write) row adds its tokens to input_tokens AND to
# its cache column; a reasoning row adds to output_tokens AND reasoning_tokens. Summing the
# rows of a day and model gives the canonical totals. Buckets: input (uncached), cache_read,
# cache_write, cache_write_1h, output, reasoning.
BUCKET_COLUMNS: dict[str, tuple[str, ...]] = {
    "input_tokens": ("input", "cache_read", "cache_write", "cache_write_1h"),
    "cache_read_tokens": ("cache_read",),
    "cache_write_tokens": ("cache_write", "cache_write_1h"),
    "cache_write_1h_tokens": ("cache_write_1h",),
    "output_tokens": ("output", "reasoning"),
    "reasoning_tokens": ("reasoning",),
}


def token_bucket(text: pl.Expr) -> pl.Expr:
    """The token bucket a usage type / SKU description / token type names; null if none.

    'USE1-Claude4.6Sonnet-cache-read-input-token-count' -> cache_read; 'Gemini 2.5 Flash
    Input Text Tokens' -> input; x_TokenType 'cached_input' -> cache_read; 'thinking' ->
    reasoning. Cache storage (billed per token-hour) is not a token bucket."""
    t = as_text(text.cast(pl.String)).str.to_lowercase()
    cache = t.str.contains(r"cach")
    write = t.str.contains(r"write|creat")
    one_hour = t.str.contains(r"1h|1[\s-]hour|60m")
    return (
        pl.when(t.str.contains("storage"))
        .then(None)
        .when(t.str.contains(r"uncached|non[\s_-]?cached|no[\s_-]cache"))
        .then(pl.lit("input"))
        .when(cache & write & one_hour)
        .then(pl.lit("cache_write_1h"))
        .when(cache & write)
        .then(pl.lit("cache_write"))
        .when(cache)
        .then(pl.lit("cache_read"))
        .when(t.str.contains(r"thinking|reasoning"))
        .then(pl.lit("reasoning"))
        .when(t.str.contains(r"output|completion|generated"))
        .then(pl.lit("output"))
        .when(t.str.contains(r"input|prompt"))
        .then(pl.lit("input"))
    )


def bucket_tokens(bucket: pl.Expr, tokens: pl.Expr) -> dict[str, pl.Expr]:
    """Token columns of a one-bucket row: `tokens` where the bucket counts, else null."""
    return {
        column: pl.when(bucket.is_in(list(buckets))).then(tokens)
        for column, buckets in BUCKET_COLUMNS.items()
    }


def currency_issue(currency: pl.Expr) -> pl.Expr:
    """Flag for an upper-cased currency: not an ISO code is invalid; another currency than
    USD is unsupported, since the money columns are dollars and no adapter converts
    (quarantined, never silently mixed)."""
    valid = currency.str.contains(r"^[A-Z]{3}$")
    return (
        pl.when(currency.is_not_null() & ~valid)
        .then(pl.lit("invalid_value:currency"))
        .when(valid & (currency != "USD"))
        .then(pl.lit("unsupported_value:currency"))
    )


CLAUDE_FAMILIES = "opus|sonnet|haiku|instant"


def model_from_name(name: pl.Expr) -> pl.Expr:
    """A model as billing reports spell it -> the family name requests resolve to.

    Bedrock usage types 'Claude4.6Sonnet' -> claude-sonnet-4-6, 'Claude3.5Haiku' ->
    claude-3-5-haiku (Anthropic's naming order changed at Claude 4); Vertex SKU names
    'Claude Sonnet 4.5' -> claude-sonnet-4-5, 'Gemini 2.5 Flash Lite' -> gemini-2.5-flash-lite;
    CamelCase 'NovaPro' -> nova-pro; ids such as gpt-4o-2024-08-06 -> gpt-4o. Best effort:
    the reported string is always kept in `model`."""
    text = as_text(name.cast(pl.String))
    version_first = text.str.extract_groups(
        rf"(?i)^claude[\s_-]?(\d+)(?:[.\s_-](\d+))?[\s_-]?({CLAUDE_FAMILIES})$"
    )
    family_first = text.str.extract_groups(
        rf"(?i)^claude[\s_-]?({CLAUDE_FAMILIES})[\s_-]?(\d+)(?:[.\s_-](\d+))?$"
    )
    major = pl.coalesce(version_first.struct.field("1"), family_first.struct.field("2"))
    minor = pl.coalesce(version_first.struct.field("2"), family_first.struct.field("3"))
    family = pl.coalesce(
        version_first.struct.field("3"), family_first.struct.field("1")
    ).str.to_lowercase()
    version = pl.concat_str([major, pl.lit("-") + minor], ignore_nulls=True)
    claude = (
        pl.when(major.cast(pl.Int64, strict=False) >= 4)
        .then(pl.concat_str([pl.lit("claude"), family, version], separator="-"))
        .otherwise(pl.concat_str([pl.lit("claude"), version, family], separator="-"))
    )
    camel = (
        text.str.replace_all(r"(?i)deepseek", "Deepseek")
        .str.replace_all(r"([a-z0-9])([A-Z])", "${1}-${2}")
        .str.to_lowercase()
    )
    spaced = text.str.strip_chars().str.to_lowercase().str.replace_all(r"[\s_]+", "-")
    generic = pl.when(text.str.contains(r"[\s_-]")).then(spaced).otherwise(camel)
    return model_canonical(pl.when(major.is_not_null()).then(claude).otherwise(generic))


# Display names in FOCUS ProviderName / invoice issuers -> provider ids (genai-prices).
PROVIDER_NAMES: dict[str, str] = {
    "amazon web services": "aws",
    "amazon": "aws",
    "amazon bedrock": "aws",
    "microsoft": "azure",
    "microsoft azure": "azure",
    "google cloud": "google",
    "google cloud platform": "google",
    "gcp": "google",
    "mistral ai": "mistral",
    "x.ai": "x-ai",
    "together ai": "together",
    "fireworks ai": "fireworks",
    "moonshot ai": "moonshotai",
}
LEGAL_SUFFIX = r",?\s+(?:inc\.?|llc|pbc|ltd\.?|limited|corp\.?|corporation|gmbh|s\.a\.s\.?|sas)$"


def provider_id(name: pl.Expr) -> pl.Expr:
    """'OpenAI' -> openai, 'Anthropic, PBC' -> anthropic, 'Amazon Web Services, Inc.' -> aws,
    'Google Cloud' -> google, 'Microsoft' -> azure; unknown names lower-case, dashed."""
    cleaned = (
        as_text(name.cast(pl.String))
        .str.to_lowercase()
        .str.replace(LEGAL_SUFFIX, "")
        .str.strip_chars()
    )
    known = cleaned.replace(PROVIDER_NAMES)
    return known.str.replace_all(r"\s+", "-").replace(PROVIDER_ALIASES)


def kind_label(kind: pl.Expr, detail: pl.Expr) -> pl.Expr:
    """line_item of a non-usage row: 'tax: <detail>', 'credit: <detail>' ..."""
    return pl.concat_str([kind, pl.lit(": "), pl.coalesce(detail, pl.lit(""))]).str.strip_chars(
        " :"
    )


def staged(raw: pl.LazyFrame, *stages: dict[str, pl.Expr]) -> pl.LazyFrame:
    """Derived columns, computed once per stage; later stages (and the canonical values) refer
    to earlier ones by name. Keeps expression trees small: nesting the helpers above inside
    each other repeats their inputs and makes query planning explode."""
    for stage in stages:
        raw = raw.with_columns(**stage)
    return raw


def c(name: str) -> pl.Expr:
    """A staged helper column (named `__<name>`, never clashing with a source field)."""
    return pl.col(f"__{name}")


def named(**exprs: pl.Expr) -> dict[str, pl.Expr]:
    return {f"__{k}": v for k, v in exprs.items()}


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
