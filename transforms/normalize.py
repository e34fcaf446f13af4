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
from transforms.models import model_canonical, model_version, resolve_models
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
_HASH_SEED = 20250101


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


@dataclass(frozen=True)
class StreamedSplit:
    """`split_requests` for a day too large to hold: `normalized` stays lazy over the input
    (stream it into a sink), the small outputs are collected."""

    normalized: pl.LazyFrame
    duplicates: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    normalized_rows: int


def split_requests_streamed(
    canonical: pl.LazyFrame, partition_day: dt.date | None = None
) -> StreamedSplit:
    """The same rows, order and columns as `split_requests`, from an input that is cheap to
    scan several times (spilled Parquet) but must not be whole in memory: one pass keeps
    only a hash of the dedupe key of clean rows, the small outputs are
    filtered out of the input, and the normalized rows stay a lazy filter of it."""
    marked = canonical.with_columns(
        pl.coalesce(pl.col(ROW_ISSUES), usage_issues()).alias("_reason"),
        _day(partition_day).alias("day"),
    ).with_row_index("_row")
    clean = pl.col("_reason").is_null()
    # Dedupe on a 64-bit hash of the key (12 bytes a row, not the key's ~60), then exactly
    # on the few rows whose hash repeats: a collision costs a lookup, never a wrong answer.
    hashes, models = pl.collect_all(
        [
            marked.filter(clean).select("_row", pl.struct(DEDUPE_KEY).hash(_HASH_SEED).alias("_h")),
            marked.filter(clean).select(pl.col("model").unique()),
        ],
        engine="streaming",
    )
    rows_read = int(marked.select(pl.len()).collect().item())
    normalized_rows = hashes.height
    candidates = hashes.filter(pl.col("_h").is_duplicated()).get_column("_row").implode()
    del hashes
    keys = (
        marked.filter(pl.col("_row").is_in(candidates))
        .select("_row", *DEDUPE_KEY)
        .collect(engine="streaming")
    )
    first = keys.select(pl.struct(DEDUPE_KEY).is_first_distinct()).to_series()
    repeated = keys.get_column("_row").filter(~first).implode()
    normalized_rows -= int((~first).sum())
    quarantine, duplicates = pl.collect_all(
        [
            marked.filter(~clean).select(
                *LINEAGE_SCHEMA.keys(),
                "day",
                pl.col("_reason").alias("reason"),
                redact_secrets(pl.col("_record")).alias("record"),
            ),
            marked.filter(clean & pl.col("_row").is_in(repeated)).select(*DUPLICATES_SCHEMA.keys()),
        ],
        engine="streaming",
    )
    # model_canonical / model_version as `resolve_models` computes them, once per distinct
    # model string, looked up per streamed batch: a join or a `replace` expression keeps the
    # row order by buffering the whole frame (~110 bytes a row), the regexes per row cost
    # ~1.4 CPU s per million rows.
    names = models.get_column("model").drop_nulls()
    resolved = pl.DataFrame({"model": names}).select(
        "model",
        model_canonical(pl.col("model")).alias("model_canonical"),
        model_version(pl.col("model")).alias("model_version"),
    )
    normalized = (
        marked.filter(clean & ~pl.col("_row").is_in(repeated))
        .with_columns(
            _lookup(resolved, "model_canonical").alias("model_canonical"),
            _lookup(resolved, "model_version").alias("model_version"),
        )
        .select(NORMALIZED_SCHEMA.keys())
        .cast(dict(NORMALIZED_SCHEMA))  # type: ignore[arg-type]
    )
    return StreamedSplit(
        normalized=normalized,
        duplicates=duplicates.cast(dict(DUPLICATES_SCHEMA)),  # type: ignore[arg-type]
        quarantine=quarantine.cast(dict(QUARANTINE_SCHEMA)),  # type: ignore[arg-type]
        rows_read=rows_read,
        normalized_rows=normalized_rows,
    )


def _lookup(resolved: pl.DataFrame, column: str) -> pl.Expr:
    """`column` of `resolved` for each row's model (every model of the rows is in
    `resolved`), elementwise so that it streams: a batch of rows at a time looks its models
    up in a hash map (three times faster than matching the strings as patterns)."""
    if resolved.is_empty():
        return pl.lit(None, pl.String)
    mapping = dict(zip(resolved["model"], resolved[column], strict=True))

    def lookup(models: pl.Series) -> pl.Series:
        return models.replace_strict(mapping, default=None, return_dtype=pl.String)

    return pl.col("model").map_batches(lookup, return_dtype=pl.String, is_elementwise=True)
