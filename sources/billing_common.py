"""Helpers every billing adapter shares: units, token buckets, model and provider names.

Used by the FOCUS, AWS CUR, GCP billing and invoice adapters (FOCUS is the general case of
which the others are dialects). Expressions only, no I/O. Quantities are converted to tokens
exactly from their stated unit (never assumed); money is read from text, never via float.
Derived values are staged as columns named `__<name>` (`named`, read back with `c`) so that
nested helpers do not repeat their inputs in the query plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from sources.base import as_text, scalar, value
from transforms.models import model_canonical
from transforms.schema import PROVIDER_ALIASES

if TYPE_CHECKING:
    from polars._typing import PolarsDataType


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


def currency_issue(currency: pl.Expr, other_currencies: bool = False) -> pl.Expr:
    """Flag for an upper-cased currency: not an ISO code is invalid. Usage reports: another
    currency than USD is unsupported, since their money columns are dollars and no adapter
    converts (quarantined, never silently mixed). Invoices (`other_currencies`): kept with
    their currency, amounts as billed; reconciliation converts them with configured rates."""
    valid = currency.str.contains(r"^[A-Z]{3}$")
    invalid = pl.when(currency.is_not_null() & ~valid).then(pl.lit("invalid_value:currency"))
    if other_currencies:
        return invalid
    return invalid.when(valid & (currency != "USD")).then(pl.lit("unsupported_value:currency"))


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


def c(name: str) -> pl.Expr:
    """A staged helper column (named `__<name>`, never clashing with a source field)."""
    return pl.col(f"__{name}")


def named(**exprs: pl.Expr) -> dict[str, pl.Expr]:
    return {f"__{k}": v for k, v in exprs.items()}
