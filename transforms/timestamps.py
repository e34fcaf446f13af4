"""Timestamp parsing to UTC (Datetime(us, UTC)), shared by every reader and adapter.

Accepted, per value (a column may mix them):
- RFC 3339 / ISO 8601 with an offset or `Z`: `2025-06-01T10:00:00.123+02:00`, `+0200`, `+02`,
  a space instead of `T`.
- naive ISO date-times `2025-06-01 10:00:00[.ffffff]`: wall-clock time in the configured
  zone (UTC by default). Ambiguous wall times (the repeated hour when clocks go back) read
  as the earlier instant; wall times that do not exist (skipped by DST) are unreadable.
- bare dates `2025-06-01` and compact `20250601`: midnight in the configured zone (the first
  instant of that day if midnight was skipped by DST). An 8-digit number that is a calendar
  date is read as one, never as epoch seconds: 20250601 seconds after 1970 is August 1970,
  and no log holds that. A date-shaped number between 19000101 and 21991231 that is no
  calendar date (20251399) is unreadable, not an epoch either.
- epoch seconds / milliseconds / microseconds / nanoseconds, integer or decimal, as numbers
  or as digit strings, told apart by magnitude (< 1e11 seconds, < 1e14 ms, < 1e17 us).
- Date and Datetime columns (naive = the configured zone).
Instants outside 1900-01-01 .. 2200-01-01 UTC are unreadable too (a huge number or a
year-0 date is a broken value, not a request). Anything else is null, never an error:
callers flag a present-but-null value as `invalid_timestamp:<field>` and quarantine the row.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

UTC_DATETIME = pl.Datetime("us", "UTC")

SECONDS_BELOW = 100_000_000_000
MILLIS_BELOW = 100_000_000_000_000
MICROS_BELOW = 100_000_000_000_000_000
# Compact dates (YYYYMMDD) are believed between these; outside, 8 digits are epoch seconds.
COMPACT_DATE_MIN, COMPACT_DATE_MAX = 1900_01_01, 2199_12_31
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)

_EPOCH_TEXT = r"^-?\d{1,19}(?:\.\d+)?$"
_BARE_DATE = r"^\d{4}-\d{2}-\d{2}$"


def epoch_to_utc(value: pl.Expr) -> pl.Expr:
    """Integer epoch seconds / ms / us / ns (by magnitude) as Datetime(us, UTC)."""
    magnitude = value.abs()
    return (
        pl.when(magnitude < SECONDS_BELOW)
        .then(pl.from_epoch(value, time_unit="s"))
        .when(magnitude < MILLIS_BELOW)
        .then(pl.from_epoch(value, time_unit="ms"))
        .when(magnitude < MICROS_BELOW)
        .then(pl.from_epoch(value, time_unit="us"))
        .otherwise(pl.from_epoch(value // 1000, time_unit="us"))
        .dt.replace_time_zone("UTC")
    )


def float_epoch_to_utc(value: pl.Expr) -> pl.Expr:
    """Decimal epoch seconds / ms / us (by magnitude) as Datetime(us, UTC), to the
    microsecond. Not finite: null."""
    magnitude = value.abs()
    micros = (
        pl.when(~value.is_finite())
        .then(None)
        .when(magnitude < SECONDS_BELOW)
        .then(value * 1_000_000)
        .when(magnitude < MILLIS_BELOW)
        .then(value * 1_000)
        .when(magnitude < MICROS_BELOW)
        .then(value)
        .otherwise(value / 1_000)
    )
    return pl.from_epoch(
        micros.round(0).cast(pl.Int64, strict=False), time_unit="us"
    ).dt.replace_time_zone("UTC")


def _local_midnight(date: pl.Expr, zone: str) -> pl.Expr:
    """Midnight of `date` in `zone`, as UTC; the first hour's end when midnight was skipped
    (some zones start DST at 00:00)."""
    midnight = date.cast(pl.Datetime("us"))
    return pl.coalesce(
        _localize(midnight, zone),
        _localize(midnight + pl.duration(hours=1), zone),
    )


def _localize(naive: pl.Expr, zone: str) -> pl.Expr:
    return naive.dt.replace_time_zone(
        zone, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def _in_compact_range(digits: pl.Expr) -> pl.Expr:
    return (digits >= COMPACT_DATE_MIN) & (digits <= COMPACT_DATE_MAX)


def _compact_date(digits: pl.Expr) -> pl.Expr:
    """YYYYMMDD as an Int64 -> Date when it is a calendar date in the believable range."""
    return pl.when(_in_compact_range(digits)).then(
        digits.cast(pl.String).str.to_date("%Y%m%d", strict=False)
    )


def _from_integer(value: pl.Expr, zone: str) -> pl.Expr:
    """Int64 -> a compact date's midnight, else an epoch (never for date-shaped numbers)."""
    return (
        pl.when(_in_compact_range(value))
        .then(_local_midnight(_compact_date(value), zone))
        .otherwise(epoch_to_utc(value))
    )


def _from_number(expr: pl.Expr, dtype: pl.DataType, zone: str) -> pl.Expr:
    if dtype.is_float():
        value = expr.cast(pl.Float64)
        whole = pl.when(value == value.floor()).then(value.cast(pl.Int64, strict=False))
        return (
            pl.when(whole.is_not_null())
            .then(_from_integer(whole, zone))
            .otherwise(float_epoch_to_utc(value))
        )
    return _from_integer(expr.cast(pl.Int64, strict=False), zone)


_RFC3339 = "%Y-%m-%dT%H:%M:%S%.f%#z"


def _from_text(expr: pl.Expr, zone: str) -> pl.Expr:
    # The common case first, in one strptime: RFC 3339 with `T` and an offset or Z. Every
    # other form is only tried on a batch of rows where that missed a value: the fallbacks
    # cost more than the common parse even over a column of nulls (0.5 s per million rows
    # for three timestamp columns), and most logs never need them.
    raw = expr.cast(pl.String)
    common = raw.str.to_datetime(_RFC3339, strict=False, time_unit="us").dt.convert_time_zone("UTC")

    def batch(pair: pl.Series) -> pl.Series:
        values = pair.struct.unnest()
        if values["common"].null_count() == values["raw"].null_count():
            return values["common"]
        return values.select(_fallbacks(pl.col("raw"), pl.col("common"), zone)).to_series()

    return pl.struct(raw.alias("raw"), common.alias("common")).map_batches(
        batch, return_dtype=UTC_DATETIME, is_elementwise=True
    )


def _fallbacks(raw: pl.Expr, common: pl.Expr, zone: str) -> pl.Expr:
    """`common` where it parsed, else the first other form `raw` reads as."""
    text = pl.when(common.is_null()).then(raw).str.strip_chars()
    aware = (
        text.str.replace(" ", "T")
        .str.to_datetime(_RFC3339, strict=False, time_unit="us")
        .dt.convert_time_zone("UTC")
    )
    naive = _localize(
        text.str.replace("T", " ").str.to_datetime(
            "%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"
        ),
        zone,
    )
    bare_date = _local_midnight(
        pl.when(text.str.contains(_BARE_DATE)).then(text.str.to_date("%Y-%m-%d", strict=False)),
        zone,
    )
    is_number = text.str.contains(_EPOCH_TEXT)
    integer = pl.when(is_number).then(text.cast(pl.Int64, strict=False))
    number = (
        pl.when(integer.is_not_null())
        .then(_from_integer(integer, zone))
        .otherwise(float_epoch_to_utc(pl.when(is_number).then(text.cast(pl.Float64, strict=False))))
    )
    return pl.coalesce(common, aware, naive, bare_date, number)


def parse_utc(expr: pl.Expr, dtype: pl.DataType, naive_zone: str = "UTC") -> pl.Expr:
    """`expr` (of dtype `dtype`) as Datetime(us, UTC); null where it cannot be read."""
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            parsed = _localize(expr.dt.cast_time_unit("us"), naive_zone)
        else:
            parsed = expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    elif isinstance(dtype, pl.Date):
        parsed = _local_midnight(expr, naive_zone)
    elif dtype.is_numeric():
        parsed = _from_number(expr, dtype, naive_zone)
    else:
        parsed = _from_text(expr, naive_zone)
    in_range = (parsed >= pl.lit(EARLIEST, UTC_DATETIME)) & (parsed < pl.lit(LATEST, UTC_DATETIME))
    return pl.when(in_range).then(parsed)
