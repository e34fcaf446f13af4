"""Resolve a logged model string to a canonical model plus version; the raw string is kept.

`anthropic.claude-sonnet-4-5-20250929-v1:0` (Bedrock), `claude-sonnet-4-5@20250929` (Vertex),
`openai/gpt-4o-2024-08-06` (LiteLLM/OpenRouter) -> `claude-sonnet-4-5` + `2025-09-29`,
`gpt-4o` + `2024-08-06`. Pricing does its own, stricter matching against the catalog; this
is the name people group by in reports.
"""

from __future__ import annotations

import polars as pl

ROUTE_PREFIX = (
    r"^(?:openai|anthropic|google|gemini|vertex_ai|vertex|bedrock|aws|azure|azure_ai|openrouter"
    r"|deepseek|mistral|x-ai|xai|groq|together_ai|fireworks_ai|models)/"
)
BEDROCK_GEO = r"^(?:us|eu|apac|global|jp|au|ca|us-gov)\."
BEDROCK_VENDOR = r"^(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen)\."
BEDROCK_SUFFIX = r"-v\d+(?::\d+)?$"
DATE_SUFFIX = r"(?:-|@)(\d{4}-\d{2}-\d{2}|\d{8})$"


def _strip_routes(model: pl.Expr) -> pl.Expr:
    cleaned = model.str.strip_chars().str.to_lowercase()
    # Two passes: "openrouter/anthropic/claude..." carries two route prefixes.
    for _ in range(2):
        cleaned = cleaned.str.replace(ROUTE_PREFIX, "")
    return (
        cleaned.str.replace(BEDROCK_GEO, "")
        .str.replace(BEDROCK_VENDOR, "")
        .str.replace(BEDROCK_SUFFIX, "")
    )


def model_version(model: pl.Expr) -> pl.Expr:
    raw = _strip_routes(model).str.extract(DATE_SUFFIX, 1)
    dashed = pl.when(raw.str.len_chars() == 8).then(
        pl.concat_str(
            [raw.str.slice(0, 4), raw.str.slice(4, 2), raw.str.slice(6, 2)], separator="-"
        )
    )
    return pl.coalesce(dashed, raw)


def model_canonical(model: pl.Expr) -> pl.Expr:
    return _strip_routes(model).str.replace(DATE_SUFFIX, "")


def resolve_models(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Add model_canonical and model_version, computed once per distinct model string."""
    distinct = frame.select(pl.col("model").unique()).with_columns(
        model_canonical(pl.col("model")).alias("model_canonical"),
        model_version(pl.col("model")).alias("model_version"),
    )
    return frame.join(distinct, on="model", how="left", nulls_equal=True, maintain_order="left")
