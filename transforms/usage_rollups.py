"""Daily usage, latency and capacity roll-ups of repriced requests: pure lazy Polars.

Input: the output of `transforms.reprice.reprice` (one row per upstream attempt); its
`row_issues` column is optional (absent reads as null: no reader issue on any row). Every
function takes and returns a LazyFrame and validates its output against a schema declared
once below, so a drift in dtypes fails loudly instead of reaching the lake or the warehouse.

Shared conventions
  day          UTC calendar date of `started_at`; a request crossing midnight belongs to the
               day it started (that is also the lake partition it lives in).
  provider     canonicalized (trimmed, lower-cased, aliases such as "bedrock" -> "aws"), so
               one provider never splits across spellings.
  null keys    a null model_key / feature / team ... is its own group, never dropped.
  latency_ms   ended_at - started_at in milliseconds (microsecond precision, Float64).
               Null when either timestamp is missing or the end is before the start (clock
               skew): such a row still counts as a request, it just has no latency.
  ttft_ms      first_token_at - started_at, same rules.

`usage_daily`: grain (day, provider, model_key, model, feature, team), additive measures only,
so any coarser view (per day, per team, per month) is a plain SUM. Counts are Int64 rows;
token columns are token counts summed over every row, priced or not (a null count adds
nothing: `usage_missing` says how many rows reported none); media quantities are seconds or
images. Money is Decimal(38, 18) USD and exact. A money column is null, not $0, when no row
of the group has a value (nothing in it could be priced, which is not the same as free).
  cost_success_usd    cost_usd of rows with status 'success' (spend that produced output)
  cache_savings_usd   sum of reprice's `cache_savings_usd` when the input has that column,
                      else null
  latency_ms_sum / latency_count   sum and number of measured latencies: the mean latency of
                      any coarser view is SUM(latency_ms_sum) / SUM(latency_count)

`latency_rollup(priced, keys)`: per day + keys, `attempts` (rows) and p50/p95/p99 of
latency_ms and ttft_ms over the rows that have them (Float64 ms, null when none does).
Quantiles are exact, with linear interpolation between the two closest ranks (the same as
numpy's default and PostgreSQL's percentile_cont). Quantiles do not add up: they are
computed per grain and never re-aggregated.

`peaks_by_model`: per (day, provider, model_key), what the provider saw from us, for capacity
planning against rate limits. Gateway cache hits never reached the provider, so they count
in no peak (their group still appears).
  peak_rpm / peak_rpm_minute    most attempts started in one UTC clock minute, and that
                                minute (the earliest on a tie)
  peak_tpm / peak_tpm_minute    most input + output tokens (cache included, null = 0) of the
                                attempts started in one minute; the minute is null when the
                                peak is 0 tokens
  peak_concurrency              most attempts in flight at once, from an interval sweep over
                                [started_at, ended_at): back-to-back calls do not overlap.
                                Only attempts started that day count (a call still running
                                from the previous day belongs to that day's peak). Null when
                                no attempt of the group has a positive duration.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from transforms.schema import MONEY, UTC_DATETIME, canonical_provider, schema_of

# Long context: the prompt size above which several providers charge a higher rate.
LONG_CONTEXT_TOKENS = 200_000

USAGE_DAILY_KEYS = ("day", "provider", "model_key", "model", "feature", "team")
USAGE_COUNT_COLUMNS = (
    "requests",
    "logical_requests",
    "retries",
    "success",
    "errors",
    "timeouts",
    "rejected",
    "cancelled",
    "usage_missing",
    "gateway_cache_hits",
    "batch_requests",
    "long_context_requests",
    "priced_requests",
    "unpriced_requests",
)
USAGE_TOKEN_COLUMNS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "image_count",
    "usable_images",
)
USAGE_SECONDS_COLUMNS = ("video_seconds", "usable_video_seconds", "audio_seconds")
USAGE_MONEY_COLUMNS = (
    "list_cost_usd",
    "cost_usd",
    "cost_success_usd",
    "cache_savings_usd",
    "gateway_cost_usd",
)
USAGE_DAILY_SCHEMA = schema_of(
    {
        "day": pl.Date,
        "provider": pl.String,
        "model_key": pl.String,
        "model": pl.String,
        "feature": pl.String,
        "team": pl.String,
        **dict.fromkeys(USAGE_COUNT_COLUMNS, pl.Int64),
        **dict.fromkeys(USAGE_TOKEN_COLUMNS, pl.Int64),
        **dict.fromkeys(USAGE_SECONDS_COLUMNS, pl.Float64),
        **dict.fromkeys(USAGE_MONEY_COLUMNS, MONEY),
        "latency_ms_sum": pl.Float64,
        "latency_count": pl.Int64,
    }
)

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
LATENCY_MEASURES = schema_of(
    {
        "attempts": pl.Int64,
        **{f"latency_{p}_ms": pl.Float64 for p in QUANTILES},
        **{f"ttft_{p}_ms": pl.Float64 for p in QUANTILES},
    }
)
LATENCY_BY_MODEL_KEYS = ("provider", "model_key")
LATENCY_BY_FEATURE_KEYS = ("feature",)
# Key dtypes of the request record; latency_rollup accepts any of these as keys.
_KEY_DTYPES = schema_of(
    {
        "provider": pl.String,
        "model_key": pl.String,
        "model": pl.String,
        "feature": pl.String,
        "team": pl.String,
        "user": pl.String,
        "gateway": pl.String,
        "region": pl.String,
        "service_tier": pl.String,
        "modality": pl.String,
        "status": pl.String,
        "api_key_id": pl.String,
    }
)

PEAKS_KEYS = ("day", "provider", "model_key")
PEAKS_SCHEMA = schema_of(
    {
        "day": pl.Date,
        "provider": pl.String,
        "model_key": pl.String,
        "peak_rpm": pl.Int64,
        "peak_rpm_minute": UTC_DATETIME,
        "peak_tpm": pl.Int64,
        "peak_tpm_minute": UTC_DATETIME,
        "peak_concurrency": pl.Int64,
    }
)


def latency_schema(keys: Sequence[str]) -> pl.Schema:
    """Output schema of `latency_rollup` for these keys."""
    unknown = [k for k in keys if k not in _KEY_DTYPES]
    if unknown:
        raise ValueError(f"latency_rollup: unsupported key column(s) {unknown}")
    return schema_of({"day": pl.Date, **{k: _KEY_DTYPES[k] for k in keys}, **LATENCY_MEASURES})


LATENCY_BY_MODEL_SCHEMA = latency_schema(LATENCY_BY_MODEL_KEYS)
LATENCY_BY_FEATURE_SCHEMA = latency_schema(LATENCY_BY_FEATURE_KEYS)


# ----------------------------------------------------------------------------- row expressions
def _day() -> pl.Expr:
    return pl.col("started_at").dt.convert_time_zone("UTC").dt.date().alias("day")


def _elapsed_ms(end: str) -> pl.Expr:
    elapsed_us = (pl.col(end) - pl.col("started_at")).dt.total_microseconds()
    # A negative duration is clock skew between the hosts that stamped the two times.
    return pl.when(elapsed_us >= 0).then(elapsed_us / 1000.0)


def _flag(column: str) -> pl.Expr:
    return pl.col(column).fill_null(False)


def _issue(name: str, columns: Sequence[str]) -> pl.Expr:
    """The row's `row_issues` lists `name` (issues are ';'-separated). A frame without the
    column (priced requests from the pipeline: rows with reader issues were quarantined)
    reads as null issues on every row."""
    if "row_issues" not in columns:
        return pl.lit(False)
    return (
        pl.concat_str([pl.lit(";"), pl.col("row_issues"), pl.lit(";")])
        .str.contains(f";{name};", literal=True)
        .fill_null(False)
    )


def _usage_missing(columns: Sequence[str]) -> pl.Expr:
    """No usage reported at all: no token count and no media quantity for the modality."""
    no_tokens = pl.col("input_tokens").is_null() & pl.col("output_tokens").is_null()
    modality = pl.col("modality")
    no_media = (
        pl.when(modality == "image")
        .then(pl.col("image_count").is_null())
        .when(modality == "video")
        .then(pl.col("video_seconds").is_null())
        .when(modality == "audio")
        .then(pl.col("audio_seconds").is_null())
        .otherwise(True)
    )
    return (no_tokens & no_media).fill_null(False) | _issue("usage_missing", columns)


def _cache_hit(columns: Sequence[str]) -> pl.Expr:
    return _flag("gateway_cache_hit") | _issue("gateway_cache_hit", columns)


def _canonical_provider_column() -> pl.Expr:
    """Canonical `provider`, cleaned once per distinct spelling instead of once per row (string
    cleaning on every row costs more than the aggregations that follow)."""
    spellings = pl.col("provider").unique(maintain_order=True)
    return pl.col("provider").replace(spellings, canonical_provider(spellings)).alias("provider")


# ----------------------------------------------------------------------------- usage_daily
_SUMMED_TOKENS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "image_count",
)


def usage_daily(priced: pl.LazyFrame) -> pl.LazyFrame:
    """Additive daily usage per (day, provider, model_key, model, feature, team); see the
    module docstring for every measure and its unit."""
    columns = priced.collect_schema().names()
    status = pl.col("status")
    success = (status == "success").fill_null(False)
    # reprice leaves cost_usd null exactly on unpriced rows; testing it avoids touching
    # the reason strings on every row.
    is_priced = pl.col("cost_usd").is_not_null()
    savings = (
        pl.col("cache_savings_usd").cast(MONEY)
        if "cache_savings_usd" in columns
        else pl.lit(None, MONEY)
    )
    counted = {
        "logical_requests": pl.col("attempt").fill_null(1) == 1,
        "retries": pl.col("attempt") > 1,
        "success": success,
        "errors": status == "error",
        "timeouts": status == "timeout",
        "rejected": status == "rejected",
        "cancelled": status == "cancelled",
        "usage_missing": _usage_missing(columns),
        "gateway_cache_hits": _cache_hit(columns),
        "batch_requests": _flag("batch"),
        "long_context_requests": pl.col("input_tokens") > LONG_CONTEXT_TOKENS,
        "priced_requests": is_priced,
        "unpriced_requests": ~is_priced,
    }
    # Row-level values first, so the group-by runs nothing but plain sums and counts (Polars'
    # fast path); a filtered or conditional aggregation per group is several times slower.
    rows = priced.select(
        _day(),
        *[pl.col(k).cast(pl.Categorical) for k in USAGE_DAILY_KEYS[1:]],
        *[expr.fill_null(False).alias(name) for name, expr in counted.items()],
        *_SUMMED_TOKENS,
        pl.when(success).then(pl.col("image_count")).alias("usable_images"),
        "video_seconds",
        pl.when(success).then(pl.col("video_seconds")).alias("usable_video_seconds"),
        "audio_seconds",
        "list_cost_usd",
        "cost_usd",
        pl.when(success).then(pl.col("cost_usd")).alias("cost_success_usd"),
        savings.alias("cache_savings_usd"),
        "gateway_cost_usd",
        _elapsed_ms("ended_at").alias("latency_ms_sum"),
    )
    # Summed as logged per provider spelling, then canonicalized on the few resulting rows and
    # summed again: every measure is a count or a sum, so summing twice changes nothing.
    int_sums = [*counted, *_SUMMED_TOKENS, "usable_images"]
    float_sums = [*USAGE_SECONDS_COLUMNS, "latency_ms_sum"]
    per_spelling = rows.group_by(list(USAGE_DAILY_KEYS)).agg(
        pl.len().cast(pl.Int64).alias("requests"),
        *[pl.col(c).sum().cast(pl.Int64) for c in int_sums],
        *[pl.col(c).sum().cast(pl.Float64) for c in float_sums],
        pl.col("latency_ms_sum").count().cast(pl.Int64).alias("latency_count"),
        *[pl.col(c).sum().cast(MONEY) for c in USAGE_MONEY_COLUMNS],
        *[pl.col(c).count().cast(pl.Int64).alias(f"_{c}_n") for c in USAGE_MONEY_COLUMNS],
    )
    summed = [c for c in per_spelling.collect_schema().names() if c not in USAGE_DAILY_KEYS]
    return (
        per_spelling.with_columns(
            pl.col(USAGE_DAILY_KEYS[1:]).cast(pl.String),
        )
        .with_columns(canonical_provider(pl.col("provider")).alias("provider"))
        .group_by(list(USAGE_DAILY_KEYS))
        .agg(pl.col(summed).sum())
        # A money sum over no value is unknown, not $0.
        .with_columns(
            pl.when(pl.col(f"_{c}_n") > 0).then(pl.col(c)).cast(MONEY).alias(c)
            for c in USAGE_MONEY_COLUMNS
        )
        .sort(list(USAGE_DAILY_KEYS), nulls_last=True)
        .select(USAGE_DAILY_SCHEMA.names())
        .match_to_schema(USAGE_DAILY_SCHEMA)
    )


# ----------------------------------------------------------------------------- latency
def _quantile_of_sorted(values: str, q: float) -> pl.Expr:
    """Quantile `q` of a sorted list column, linear interpolation between the two closest
    ranks: position q * (n - 1), as numpy's default and PostgreSQL's percentile_cont."""
    n = pl.col(values).list.len()
    position = (n - 1).cast(pl.Float64) * q
    low = position.floor().cast(pl.Int64)
    high = position.ceil().cast(pl.Int64)
    at_low = pl.col(values).list.get(low, null_on_oob=True)
    at_high = pl.col(values).list.get(high, null_on_oob=True)
    return pl.when(n > 0).then(at_low + (at_high - at_low) * (position - low))


def latency_rollup(priced: pl.LazyFrame, keys: Sequence[str]) -> pl.LazyFrame:
    """Latency and time-to-first-token quantiles per day + `keys` (exact, linear
    interpolation); `attempts` counts every row of the group, measured or not."""
    schema = latency_schema(keys)
    group = ["day", *keys]
    measures = ("latency", "ttft")
    return (
        priced.select(
            _day(),
            *[
                (_canonical_provider_column() if k == "provider" else pl.col(k)).cast(
                    pl.Categorical
                )
                for k in keys
            ],
            _elapsed_ms("ended_at").alias("_latency"),
            _elapsed_ms("first_token_at").alias("_ttft"),
        )
        .group_by(group)
        # Each group's values are sorted once and the three quantiles read off the sorted
        # list: Polars' quantile() would sort the group again for every quantile.
        .agg(
            pl.len().cast(pl.Int64).alias("attempts"),
            *[pl.col(f"_{m}").drop_nulls().sort() for m in measures],
        )
        .with_columns(
            _quantile_of_sorted(f"_{m}", q).alias(f"{m}_{p}_ms")
            for m in measures
            for p, q in QUANTILES.items()
        )
        .with_columns(pl.col(list(keys)).cast(pl.String))
        .sort(group, nulls_last=True)
        .select(schema.names())
        .match_to_schema(schema)
    )


def latency_by_model(priced: pl.LazyFrame) -> pl.LazyFrame:
    return latency_rollup(priced, LATENCY_BY_MODEL_KEYS)


def latency_by_feature(priced: pl.LazyFrame) -> pl.LazyFrame:
    return latency_rollup(priced, LATENCY_BY_FEATURE_KEYS)


# ----------------------------------------------------------------------------- peaks
def _peak_at(value: str, at: str) -> tuple[pl.Expr, pl.Expr]:
    peak = pl.col(value).max()
    return peak, pl.col(at).filter(pl.col(value) == peak).min()


def peaks_by_model(priced: pl.LazyFrame) -> pl.LazyFrame:
    """Peak requests and tokens per minute and peak concurrency per (day, provider,
    model_key); see the module docstring for the exact rules."""
    keys = list(PEAKS_KEYS)
    columns = priced.collect_schema().names()
    # Categorical keys group on integer codes: several times faster than hashing strings.
    rows = priced.select(
        _day(),
        _canonical_provider_column().cast(pl.Categorical),
        pl.col("model_key").cast(pl.Categorical),
        pl.col("started_at"),
        pl.col("ended_at"),
        (~_cache_hit(columns)).alias("_reached"),
        (pl.col("input_tokens").fill_null(0) + pl.col("output_tokens").fill_null(0)).alias(
            "_tokens"
        ),
    )
    # Minutes are UTC clock minutes, each stamped by its start.
    per_minute = rows.group_by(*keys, pl.col("started_at").dt.truncate("1m").alias("_minute")).agg(
        pl.col("_reached").sum().cast(pl.Int64).alias("_rpm"),
        pl.when(pl.col("_reached")).then(pl.col("_tokens")).sum().cast(pl.Int64).alias("_tpm"),
    )
    rpm, rpm_minute = _peak_at("_rpm", "_minute")
    tpm, tpm_minute = _peak_at("_tpm", "_minute")
    minute_peaks = per_minute.group_by(keys).agg(
        rpm.alias("peak_rpm"),
        rpm_minute.alias("peak_rpm_minute"),
        tpm.alias("peak_tpm"),
        pl.when(tpm > 0).then(tpm_minute).alias("peak_tpm_minute"),
    )

    # Sweep per group: +1 at each start, -1 at each end, in time order; the peak is the
    # largest running sum. One integer orders the events: 2 * epoch_us, +1 for a start, so at
    # the same instant an end comes first (intervals are half-open: back-to-back calls never
    # overlap). Built inside the aggregation, so the 2n events never form a frame of their own.
    measured = rows.filter(
        pl.col("_reached") & (pl.col("ended_at") > pl.col("started_at")).fill_null(False)
    )
    steps = pl.repeat(1, pl.len(), dtype=pl.Int64).append(pl.repeat(-1, pl.len(), dtype=pl.Int64))
    order = (pl.col("started_at").dt.epoch("us") * 2 + 1).append(
        pl.col("ended_at").dt.epoch("us") * 2
    )
    concurrency = measured.group_by(keys).agg(
        steps.sort_by(order).cum_sum().max().alias("peak_concurrency")
    )
    return (
        minute_peaks.join(concurrency, on=keys, how="left", nulls_equal=True)
        .with_columns(pl.col("provider", "model_key").cast(pl.String))
        .sort(keys, nulls_last=True)
        .select(PEAKS_SCHEMA.names())
        .match_to_schema(PEAKS_SCHEMA)
    )
