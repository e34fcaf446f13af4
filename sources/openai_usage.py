"""OpenAI organization Usage API pages (`GET /v1/organization/usage/completions`, admin key).

Grain: one row per result of a time bucket: a day (or hour, with `bucket_width=1h`) and
whatever the pull grouped by (`project_id`, `user_id`, `api_key_id`, `model`, `batch`,
`service_tier`). `date` is the UTC day of the bucket's `start_time`; hourly buckets give
several rows per day, to be summed.
Units: tokens and requests (`num_model_requests`); no money (that is the Costs API).
Quirks:
- `input_tokens` INCLUDES cached tokens (`input_cached_tokens`), as the canonical total
  does; when only the split is given, input = `input_uncached_tokens` + `input_cached_tokens`.
- Grouping fields are null unless the pull grouped by them: a null `model`, `batch` or
  `service_tier` means "all of them together", never "none". Model is therefore not
  required; `batch` stays null rather than defaulting to false.
- `project_id` becomes `account_id`; `user_id` has no column and stays in the record.
- `reasoning_tokens` are not reported (they are inside `output_tokens`): null.
- Cache writes: newer API versions add a cache-write count, read from
  `input_cache_write_tokens` when present (field name unverified).
- `line_item` is the endpoint named by the result's `object`
  (`organization.usage.completions.result` -> `completions`), so completions and
  embeddings pulls stay apart. Embeddings and moderations have no output tokens; for every
  other endpoint a missing `output_tokens` is quarantined.
- File: one page, a JSON list of pages (what `sources.http_pull` writes), or JSONL of pages;
  empty buckets give no rows. `_line` is the result's number in the file.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import SourceContext, as_int, as_text, assemble_rows
from sources.http_pull import read_pages
from transforms.expressions import flag_if, join_flags
from transforms.models import model_canonical
from transforms.normalize import usage_issues
from transforms.schema import PROVIDER_USAGE_SCHEMA, ROW_ISSUES

KIND = "openai_usage"
PROVIDER = "openai"
INPUT_ONLY_ENDPOINTS = ("embeddings", "moderations")


def read(path: Path) -> pl.DataFrame:
    return read_pages(path)


def with_usage_checks(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Add the request rules for token counts (negatives, subsets above totals) to row_issues.

    The same `usage_issues` the request normalizer applies, so flags read the same; it also
    looks at media columns provider usage does not have, given here as nulls. Only rows with
    no issue yet are checked: a count that could not be read would otherwise also show up as
    a "cache above input" that is not there."""
    media = ("image_count", "video_seconds", "audio_seconds")
    usage = join_flags(
        [usage_issues(), flag_if(pl.col("requests") < 0, "invalid_usage:negative_requests")]
    )
    return (
        frame.with_columns(pl.lit(None, pl.Int64).alias(c) for c in media)
        .with_columns(pl.coalesce(pl.col(ROW_ISSUES), usage).alias(ROW_ISSUES))
        .drop(media)
    )


def to_usage(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()
    col = lambda name: pl.col(name) if name in s else pl.lit(None, pl.String)  # noqa: E731
    model = as_text(col("model"))
    endpoint = as_text(col("object")).str.extract(r"^organization\.usage\.([a-z_]+)\.result$", 1)
    split_input = as_int(col("input_uncached_tokens")) + as_int(col("input_cached_tokens"))
    values = {
        "date": col("_bucket.start_time"),
        "provider": pl.lit(PROVIDER),
        "model": model,
        "model_canonical": model_canonical(model),
        "account_id": col("project_id"),
        "api_key_id": col("api_key_id"),
        "service_tier": as_text(col("service_tier")).str.to_lowercase(),
        "batch": col("batch"),
        "input_tokens": pl.coalesce(col("input_tokens"), split_input.cast(pl.String)),
        "cache_read_tokens": col("input_cached_tokens"),
        "cache_write_tokens": col("input_cache_write_tokens"),
        "output_tokens": col("output_tokens"),
        "requests": col("num_model_requests"),
        "line_item": endpoint,
    }
    output_expected = endpoint.is_null() | ~endpoint.is_in(INPUT_ONLY_ENDPOINTS)
    extra = [
        flag_if(
            output_expected & as_text(col("output_tokens")).is_null(), "missing_value:output_tokens"
        )
    ]
    rows = assemble_rows(
        raw,
        ctx,
        PROVIDER_USAGE_SCHEMA,
        values,
        required=("date", "provider", "input_tokens"),
        extra_issues=extra,
    )
    return with_usage_checks(rows)
