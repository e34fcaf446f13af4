"""Timestamp parsing to UTC, shared by every reader and adapter.

Accepted: RFC 3339 with offset or Z, naive ISO strings (interpreted in a configured zone,
UTC by default), integer epoch seconds / milliseconds / microseconds / nanoseconds (told
apart by magnitude), and datetime columns (naive = the configured zone).
"""

from __future__ import annotations

import polars as pl

UTC_DATETIME = pl.Datetime("us", "UTC")


def epoch_to_utc(value: pl.Expr) -> pl.Expr:
    magnitude = value.abs()
    return (
        pl.when(magnitude < 100_000_000_000)
        .then(pl.from_epoch(value, time_unit="s"))
        .when(magnitude < 100_000_000_000_000)
        .then(pl.from_epoch(value, time_unit="ms"))
        .when(magnitude < 100_000_000_000_000_000)
        .then(pl.from_epoch(value, time_unit="us"))
        .otherwise(pl.from_epoch(value // 1000, time_unit="us"))
        .dt.replace_time_zone("UTC")
    )


def parse_utc(expr: pl.Expr, dtype: pl.DataType, naive_zone: str = "UTC") -> pl.Expr:
    """`expr` (of dtype `dtype`) as Datetime(us, UTC); null where it cannot be read."""
    if isinstance(dtype, pl.Datetime):
        local = expr.dt.replace_time_zone(naive_zone) if dtype.time_zone is None else expr
        return local.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if isinstance(dtype, pl.Date):
        return (
            expr.cast(pl.Datetime("us"))
            .dt.replace_time_zone(naive_zone)
            .dt.convert_time_zone("UTC")
        )
    if dtype.is_numeric():
        return epoch_to_utc(expr.cast(pl.Int64, strict=False))
    text = expr.cast(pl.String).str.strip_chars()
    aware = (
        text.str.replace(r"[zZ]$", "+00:00")
        .str.replace(" ", "T")
        .str.replace(r"([+-]\d\d)(\d\d)$", "$1:$2")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_unit="us")
        .dt.convert_time_zone("UTC")
    )
    naive = (
        text.str.replace("T", " ")
        .str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
        .dt.replace_time_zone(naive_zone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )
    epoch = epoch_to_utc(text.cast(pl.Int64, strict=False))
    return pl.coalesce(aware, naive, epoch)
