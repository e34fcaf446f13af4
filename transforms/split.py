"""Split adapter output of billing sources into kept rows, quarantine and counts.

Same contract as request normalization: rows_read = normalized + quarantined per source and
day (billing sources have no duplicate deliveries to remove: a report row is a total).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from transforms.expressions import redact_secrets
from transforms.schema import INGEST_COUNTS_SCHEMA, LINEAGE_SCHEMA, QUARANTINE_SCHEMA, ROW_ISSUES


@dataclass(frozen=True)
class SplitRows:
    kept: pl.LazyFrame
    quarantine: pl.LazyFrame
    counts: pl.LazyFrame


def split_rows(
    frame: pl.LazyFrame, schema: pl.Schema, day_column: str, partition_day: dt.date | None = None
) -> SplitRows:
    marked = frame.with_columns(
        pl.coalesce(pl.col(day_column), pl.lit(partition_day, pl.Date)).alias("_day")
    )
    bad = pl.col(ROW_ISSUES).is_not_null()
    kept = marked.filter(~bad).select(*schema.keys()).cast(dict(schema))  # type: ignore[arg-type]
    quarantine = (
        marked.filter(bad)
        .select(
            *LINEAGE_SCHEMA.keys(),
            pl.col("_day").alias("day"),
            pl.col(ROW_ISSUES).alias("reason"),
            redact_secrets(pl.col("_record")).alias("record"),
        )
        .cast(dict(QUARANTINE_SCHEMA))  # type: ignore[arg-type]
    )
    keys = ["source", "day"]
    read = marked.group_by("source", pl.col("_day").alias("day")).agg(
        pl.len().cast(pl.Int64).alias("rows_read")
    )
    good = (
        marked.filter(~bad)
        .group_by("source", pl.col("_day").alias("day"))
        .agg(pl.len().cast(pl.Int64).alias("normalized"))
    )
    quarantined = quarantine.group_by(keys).agg(pl.len().cast(pl.Int64).alias("quarantined"))
    counts = (
        read.join(good, on=keys, how="left", nulls_equal=True)
        .join(quarantined, on=keys, how="left", nulls_equal=True)
        .with_columns(
            pl.col("normalized").fill_null(0),
            pl.col("quarantined").fill_null(0),
            pl.lit(0, pl.Int64).alias("duplicates"),
        )
        .select(*INGEST_COUNTS_SCHEMA.keys())
        .sort("source", "day", nulls_last=True)
    )
    return SplitRows(kept, quarantine, counts)


def accounting_problems(counts: pl.DataFrame, records_read: int) -> list[str]:
    """Every way the counts fail to add up; empty when nothing was lost."""
    problems = []
    off = counts.filter(
        pl.col("rows_read") != pl.col("normalized") + pl.col("duplicates") + pl.col("quarantined")
    )
    for row in off.iter_rows(named=True):
        problems.append(
            f"{row['source']} {row['day']}: read {row['rows_read']}"
            f" != normalized {row['normalized']} + duplicates {row['duplicates']}"
            f" + quarantined {row['quarantined']}"
        )
    total = int(counts["rows_read"].sum() or 0)
    if total != records_read:
        problems.append(f"records read {records_read} != rows accounted {total}")
    return problems
