"""From an adapter's canonical frame to normalized rows, duplicates and quarantine.

Every input row ends in exactly one of three places, and the counts are returned with them:
  quarantined   a reason it cannot be trusted: unreadable line, missing or unreadable
                required value, unparseable timestamp, negative or inconsistent usage
  duplicate     the same (source, request_id, attempt) delivered again; the first is kept
  normalized    everything else, with model_canonical / model_version resolved
Per source and day: rows_read = normalized + duplicates + quarantined.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from transforms.expressions import flag_if, join_flags, redact_secrets
from transforms.models import resolve_models
from transforms.schema import (
    DUPLICATES_SCHEMA,
    INGEST_COUNTS_SCHEMA,
    LINEAGE_SCHEMA,
    NORMALIZED_SCHEMA,
    QUARANTINE_SCHEMA,
    ROW_ISSUES,
    TOKEN_COLUMNS,
)

DEDUPE_KEY = ("source", "request_id", "attempt")


@dataclass(frozen=True)
class Normalized:
    normalized: pl.LazyFrame
    duplicates: pl.LazyFrame
    quarantine: pl.LazyFrame
    counts: pl.LazyFrame


def usage_issues() -> pl.Expr:
    """Negative counts and subsets above their totals."""
    col = pl.col
    negatives = [
        flag_if(col(c) < 0, f"invalid_usage:negative_{c}")
        for c in (*TOKEN_COLUMNS, "image_count", "video_seconds", "audio_seconds")
    ]
    z = {c: col(c).fill_null(0) for c in TOKEN_COLUMNS}
    subsets = [
        flag_if(
            z["cache_read_tokens"] + z["cache_write_tokens"]
            > z["input_tokens"].clip(lower_bound=0),
            "invalid_usage:cache_above_input",
        ),
        flag_if(
            z["cache_write_1h_tokens"] > z["cache_write_tokens"].clip(lower_bound=0),
            "invalid_usage:cache_write_1h_above_cache_write",
        ),
        flag_if(
            z["reasoning_tokens"] > z["output_tokens"].clip(lower_bound=0),
            "invalid_usage:reasoning_above_output",
        ),
    ]
    return join_flags([*negatives, *subsets])


def _day(partition_day: dt.date | None) -> pl.Expr:
    fallback = pl.lit(partition_day, pl.Date)
    return pl.coalesce(pl.col("started_at").dt.date(), fallback)


def split_requests(canonical: pl.LazyFrame, partition_day: dt.date | None = None) -> Normalized:
    """`canonical`: an adapter's output (NORMALIZED columns but model resolution, plus
    `row_issues` and `_record`). Returns lazy frames; collect them together."""
    marked = canonical.with_columns(
        pl.coalesce(pl.col(ROW_ISSUES), usage_issues()).alias("_reason"),
        _day(partition_day).alias("day"),
    )
    quarantine = marked.filter(pl.col("_reason").is_not_null()).select(
        *LINEAGE_SCHEMA.keys(),
        "day",
        pl.col("_reason").alias("reason"),
        redact_secrets(pl.col("_record")).alias("record"),
    )
    clean = marked.filter(pl.col("_reason").is_null()).with_columns(
        pl.struct(DEDUPE_KEY).is_first_distinct().alias("_first")
    )
    duplicates = clean.filter(~pl.col("_first")).select(*DUPLICATES_SCHEMA.keys())
    normalized = resolve_models(clean.filter(pl.col("_first"))).select(
        *NORMALIZED_SCHEMA.keys(), "day"
    )

    keys = ["source", "day"]
    read = marked.group_by(keys).agg(pl.len().cast(pl.Int64).alias("rows_read"))
    tallies = [
        (normalized, "normalized"),
        (duplicates, "duplicates"),
        (quarantine, "quarantined"),
    ]
    counts = read
    for frame, name in tallies:
        tally = frame.group_by(keys).agg(pl.len().cast(pl.Int64).alias(name))
        counts = counts.join(tally, on=keys, how="left", nulls_equal=True)
    # Each tally counts its own frame; the identity rows_read = sum of the three is checked
    # by the caller (and by an asset check), not assumed here.
    counts = (
        counts.with_columns(pl.col(n).fill_null(0) for _, n in tallies)
        .select(*INGEST_COUNTS_SCHEMA.keys())
        .sort("source", "day", nulls_last=True)
    )
    return Normalized(
        normalized=normalized.drop("day").cast(dict(NORMALIZED_SCHEMA)),  # type: ignore[arg-type]
        duplicates=duplicates.cast(dict(DUPLICATES_SCHEMA)),  # type: ignore[arg-type]
        quarantine=quarantine.cast(dict(QUARANTINE_SCHEMA)),  # type: ignore[arg-type]
        counts=counts,
    )
