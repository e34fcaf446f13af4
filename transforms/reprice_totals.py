"""Totals of `reprice` output per group, without pricing each row: a lazy-in, small-out
Polars transform.

Grain: one row per (day, provider as logged, model_key, *by), where day is the UTC date of
`started_at`. Measures:
  requests, priced_requests           rows, and rows reprice prices (cost_usd not null)
  input_tokens ... reasoning_tokens,  usage summed over every row, priced or not (a null
  image_count                         count adds nothing)
  list_cost_usd, cost_usd,            USD summed over the priced rows; null when the group
  cache_savings_usd                   has none

Equal, to the last of 18 decimals, to summing `transforms.reprice.reprice` row by row, which
is what the tests check. Why it can skip the per-row pricing: inside one price cell (one
context, one day, one time-of-day window, one prompt-size band) every integer usage component
costs usage x rate with no rounding, so a group's cost is (sum of usage) x rate exactly. So
the requests are aggregated in ONE pass per (context, day, *by, cell bucket, status bits) and
only those few thousand aggregates meet the catalog:

* cell bucket: the request's UTC second of the day and prompt size, bucketed by every cut the
  price segments of its model use (a first pass over the distinct logged (provider, model)
  pairs finds those models; every other row is one bucket), so a bucket lies inside exactly
  one cell of its context;
* status bits: upstream row issue, unusable usage (invalid or missing), gateway cache hit,
  and for each class of usage components the catalog rates together (tokens in, tokens out,
  images, video, audio), whether the request has any: all that `unpriced_reason` depends on
  besides the cell.

Video and audio seconds are rounded to 3 decimals and then priced per row with rounding to
18 decimals, which only factors out of a sum when the rate has at most 15 decimals; when a
resolved rate breaks that (or the catalog's rates do not fall into those classes), the
totals are computed from `reprice` row by row instead: slower, same result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl

from pricing_catalog.catalog import Catalog
from pricing_catalog.matching import MODEL_MAP_SCHEMA, match_models
from pricing_catalog.rows import DAY_SECONDS
from pricing_catalog.units import UNITS, UNITS_BY_NAME
from transforms.expressions import exact_quantity
from transforms.reprice import (
    _USAGE,
    CONTEXT_COLUMNS,
    CONTEXT_KEY,
    RATE_OF,
    _price_day,
    _usage_invalid,
    _usage_missing,
    _utc_second_of_day,
    price_segments,
    price_table,
    reprice,
)
from transforms.schema import MONEY, ROW_ISSUES, TOKEN_COLUMNS, canonical_provider

TOTAL_TOKEN_COLUMNS = (*TOKEN_COLUMNS, "image_count")
TOTAL_MONEY_COLUMNS = ("list_cost_usd", "cost_usd", "cache_savings_usd")
_SECONDS = {"video": "video_seconds", "audio": "audio_seconds"}
# A valid request splits input_tokens into these four parts and output_tokens into two, so
# on valid usage (the only usage ever priced) "a part is positive" is "the total is".
_FAMILIES = (
    (frozenset({"input", "cache_read", "cache_write", "cache_write_1h"}), "input_tokens"),
    (frozenset({"output", "reasoning"}), "output_tokens"),
)
_ROW_ISSUE, _BAD_USAGE, _CACHE_HIT, _CLASS_BIT0 = 1, 2, 4, 3
_SECONDS_QUANTUM = Decimal("1e-15")
_MILLI = Decimal("0.001")


def _rate_classes(catalog: Catalog) -> list[list[str]]:
    """Usage components whose contract rates are null in exactly the same catalog rows."""
    quoted = sorted(catalog.rated_unit_sets, key=sorted)
    # A contract rate override can give a component a rate its list price lacks.
    split = {UNITS_BY_NAME[u].component for term in catalog.contracts for u in term.rate_overrides}
    classes: dict[tuple[Any, ...], list[str]] = {}
    for unit in UNITS:
        if unit.component == "request":
            continue
        present = tuple(unit.name in units for units in quoted)
        key = (unit.component,) if unit.component in split else ("", present)
        classes.setdefault(key, []).append(unit.component)
    return list(classes.values())


def _has_usage(components: list[str]) -> pl.Expr:
    rest = set(components)
    parts: list[pl.Expr] = []
    for family, total in _FAMILIES:
        if family <= rest:
            parts.append(pl.col(total).fill_null(0) > 0)
            rest -= family
    parts += [_USAGE[c] > 0 for c in sorted(rest)]
    return pl.any_horizontal(parts)


def _bucket(value: pl.Expr, cuts: list[int], strict: bool) -> pl.Expr:
    """How many cuts lie below the value (at or below it unless `strict`). There are a few
    cuts at most: comparisons cost less than a binary search here."""
    if not cuts:
        return pl.lit(0, pl.UInt8)
    below = [(value > c) if strict else (value >= c) for c in cuts]
    return pl.sum_horizontal([b.cast(pl.UInt8) for b in below]).cast(pl.UInt8)


@dataclass(frozen=True)
class _Cuts:
    """Logged model strings whose catalog model has time-of-day windows or prompt-size bands,
    and every such bound they use. Only their rows need bucketing; the others are one cell."""

    tod_models: list[str]
    tod: list[int]
    band_models: list[str]
    band: list[int]

    @classmethod
    def of(cls, requests: pl.LazyFrame, catalog: Catalog) -> _Cuts:
        pairs = requests.select("provider", "model").unique().collect(engine="streaming")
        canonical = pairs.with_columns(canonical_provider(pl.col("provider")).alias("_canonical"))
        wanted = canonical.select(pl.col("_canonical").alias("provider"), "model").unique()
        matched = (
            match_models(catalog, wanted)
            if wanted.height
            else pl.DataFrame(schema=MODEL_MAP_SCHEMA)
        )
        keys = canonical.join(
            matched.select(pl.col("provider").alias("_canonical"), "model", "model_key"),
            on=["_canonical", "model"],
            how="left",
            nulls_equal=True,
        )
        tod_models: set[str] = set()
        band_models: set[str] = set()
        tod: set[int] = set()
        band: set[int] = set()
        for model, model_key in keys.select("model", "model_key").iter_rows():
            tod_cuts, band_cuts = catalog.segment_cuts.get(model_key or "", ((), ()))
            if tod_cuts and model is not None:
                tod_models.add(model)
                tod |= set(tod_cuts)
            if band_cuts and model is not None:
                band_models.add(model)
                band |= set(band_cuts)
        return cls(sorted(tod_models), sorted(tod), sorted(band_models), sorted(band))

    def keys(self, started: pl.DataType) -> list[pl.Expr]:
        prompt = pl.col("input_tokens").fill_null(0).clip(lower_bound=0)
        tod = _bucket(_utc_second_of_day(started), self.tod, strict=False)
        band = _bucket(prompt, self.band, strict=True)
        return [
            pl.when(pl.col("model").is_in(self.tod_models)).then(tod).otherwise(0).alias("_tod")
            if self.tod
            else pl.lit(0, pl.UInt8).alias("_tod"),
            pl.when(pl.col("model").is_in(self.band_models)).then(band).otherwise(0).alias("_band")
            if self.band
            else pl.lit(0, pl.UInt8).alias("_band"),
        ]

    def cover(self, cells: pl.DataFrame) -> bool:
        """Is every cell bound one of the cuts, and bucketed for its context's model?"""
        split_tod = cells.filter(
            pl.col("tod_start_s").is_not_null()
            & ((pl.col("tod_start_s") != 0) | (pl.col("tod_end_s") != DAY_SECONDS))
        )
        split_band = cells.filter(
            pl.col("band_above").is_not_null()
            & ((pl.col("band_above") != -1) | pl.col("band_upto").is_not_null())
        )
        tods = {0, DAY_SECONDS, *self.tod}
        bands = {-1, *self.band}
        return (
            set(split_tod["model"]) <= set(self.tod_models)
            and set(split_tod["tod_start_s"]) | set(split_tod["tod_end_s"]) <= tods
            and set(split_band["model"]) <= set(self.band_models)
            and set(split_band["band_above"]) | set(split_band["band_upto"].drop_nulls()) <= bands
        )


def _exact_cells(cells: pl.DataFrame, classes: list[list[str]]) -> bool:
    """Do the cells meet what the aggregate pricing assumes?"""
    for cls in classes:
        nulls = [cells[RATE_OF[c]].is_null() for c in cls]
        if any(not n.equals(nulls[0]) for n in nulls[1:]):
            return False
    quantum_ok = [
        (pl.col(p + RATE_OF[c]) % _SECONDS_QUANTUM == 0).fill_null(True).all()
        for c in _SECONDS
        for p in ("", "list_")
    ]
    return bool(cells.select(pl.all_horizontal(quantum_ok)).item()) if cells.height else True


def price_totals(
    requests: pl.LazyFrame,
    catalog: Catalog,
    by: Sequence[str] = (),
    price_at: dt.date | None = None,
) -> pl.LazyFrame:
    """Sum what `reprice(requests, catalog, price_at)` would give, per (day, provider,
    model_key, *by); see the module docstring. Reads the requests eagerly (streaming), the
    logged (provider, model) pairs first, then every column it needs once; the result is a
    small lazy frame."""
    names = requests.collect_schema().names()
    if ROW_ISSUES not in names:
        requests = requests.with_columns(pl.lit(None, pl.String).alias(ROW_ISSUES))
    if "gateway_cache_hit" not in names:
        requests = requests.with_columns(pl.lit(False).alias("gateway_cache_hit"))
    keys = ["day", "provider", "model_key", *by]

    classes = _rate_classes(catalog)
    cuts = _Cuts.of(requests, catalog)
    day = pl.col("started_at").dt.convert_time_zone("UTC").dt.date()
    started = requests.collect_schema()["started_at"]
    same_day = price_at is None and isinstance(started, pl.Datetime) and started.time_zone == "UTC"
    status = pl.sum_horizontal(
        pl.col(ROW_ISSUES).is_not_null().cast(pl.UInt16) * _ROW_ISSUE,
        (_usage_invalid() | _usage_missing().fill_null(False)).cast(pl.UInt16) * _BAD_USAGE,
        pl.col("gateway_cache_hit").fill_null(False).cast(pl.UInt16) * _CACHE_HIT,
        *[
            _has_usage(cls).cast(pl.UInt16) * (1 << (_CLASS_BIT0 + i))
            for i, cls in enumerate(classes)
        ],
    ).cast(pl.UInt16)
    group_keys: list[pl.Expr] = [
        day.alias("day"),
        *[pl.col(c) for c in CONTEXT_COLUMNS if c not in by],
        *[pl.col(c) for c in by],
        status.alias("_status"),
        *cuts.keys(started),
    ]
    if not same_day:
        group_keys.append(_price_day(price_at).alias("_day"))
    # Seconds as reprice rounds them (3 decimals), summed as integer thousandths: a Decimal
    # sum inside a streaming group-by costs as much as all the other sums together.
    sums = [pl.col(c).sum() for c in TOTAL_TOKEN_COLUMNS] + [
        exact_quantity(col).to_physical().sum().alias(col) for col in _SECONDS.values()
    ]
    grouped = requests.group_by(group_keys).agg(pl.len().alias("requests"), *sums)
    aggregated = grouped.collect(engine="streaming").with_columns(
        (pl.col(col).cast(pl.Decimal(38, 0)) * pl.lit(_MILLI, pl.Decimal(38, 3))).alias(col)
        for col in _SECONDS.values()
    )
    if same_day:
        aggregated = aggregated.with_columns(pl.col("day").alias("_day"))

    contexts = aggregated.select(CONTEXT_KEY).unique()
    cells = price_segments(price_table(contexts, catalog))
    if not _exact_cells(cells, classes) or not cuts.cover(cells):
        return _from_rows(requests, catalog, by, price_at)

    tod_lo = pl.lit(pl.Series([0, *cuts.tod], dtype=pl.Int64)).gather(pl.col("_tod"))
    band_lo = pl.lit(pl.Series([-1, *cuts.band], dtype=pl.Int64)).gather(pl.col("_band"))
    in_cell = pl.col("tod_start_s").is_null() | (
        (pl.col("_tod_from") >= pl.col("tod_start_s"))
        & (pl.col("_tod_from") < pl.col("tod_end_s"))
        & (pl.col("_prompt") > pl.col("band_above"))
        & (pl.col("band_upto").is_null() | (pl.col("_prompt") <= pl.col("band_upto")))
    )
    joined = (
        aggregated.lazy()
        .with_columns(tod_lo.alias("_tod_from"), (band_lo + 1).alias("_prompt"))
        .join(cells.lazy(), on=list(CONTEXT_KEY), how="left", nulls_equal=True)
        .filter(in_cell)
    )
    return (
        _price_groups(joined, cells, classes)
        .group_by(keys)
        .agg(
            pl.col("requests").sum().cast(pl.UInt32),
            pl.col("priced_requests").sum().cast(pl.UInt32),
            *[pl.col(c).sum().cast(pl.Int64) for c in TOTAL_TOKEN_COLUMNS],
            *[_sum_if_priced(c) for c in TOTAL_MONEY_COLUMNS],
        )
    )


def _sum_if_priced(column: str) -> pl.Expr:
    return (
        pl.when(pl.col("priced_requests").sum() > 0)
        .then(pl.col(column).sum())
        .otherwise(None)
        .cast(MONEY)
        .alias(column)
    )


def _price_groups(
    joined: pl.LazyFrame, cells: pl.DataFrame, classes: list[list[str]]
) -> pl.LazyFrame:
    """Each aggregate with its cell: priced or not (as a whole), and its costs."""
    status = pl.col("_status")

    def bit(mask: int) -> pl.Expr:
        return (status & mask) != 0

    def rated(component: str, prefix: str = "") -> bool:
        column = prefix + RATE_OF[component]
        return cells.height > 0 and cells[column].null_count() < cells.height

    class_has = [bit(1 << (_CLASS_BIT0 + i)) for i in range(len(classes))]
    any_usage = pl.any_horizontal([*class_has, pl.lit(False)])
    any_rated = pl.any_horizontal(
        [
            bit(1 << (_CLASS_BIT0 + i)) & pl.col(RATE_OF[cls[0]]).is_not_null()
            for i, cls in enumerate(classes)
            if rated(cls[0])
        ]
        + [pl.col(RATE_OF["request"]).is_not_null(), pl.lit(False)]
    )
    clean = ~bit(_ROW_ISSUE)
    cache_hit = bit(_CACHE_HIT)
    priced = (
        pl.when(cache_hit)
        .then(clean)
        .otherwise(
            clean
            & ~bit(_BAD_USAGE)
            & pl.col("_catalog_reason").is_null()
            & pl.col("_day").is_not_null()
            & ~(any_usage & ~any_rated)
            & pl.col("price_id").is_not_null()
        )
    )
    z = {c: pl.col(c).fill_null(0) for c in TOTAL_TOKEN_COLUMNS}
    usage: dict[str, pl.Expr] = {
        "input": z["input_tokens"] - z["cache_read_tokens"] - z["cache_write_tokens"],
        "cache_read": z["cache_read_tokens"],
        "cache_write": z["cache_write_tokens"] - z["cache_write_1h_tokens"],
        "cache_write_1h": z["cache_write_1h_tokens"],
        "output": z["output_tokens"] - z["reasoning_tokens"],
        "reasoning": z["reasoning_tokens"],
        "image": z["image_count"],
        "video": pl.col("video_seconds").fill_null(0),
        "audio": pl.col("audio_seconds").fill_null(0),
        "request": pl.col("requests").cast(pl.Int64),
    }

    def money(prefix: str) -> pl.Expr:
        parts = [
            (usage[c] * pl.col(prefix + RATE_OF[c])).fill_null(0).cast(MONEY)
            for c in RATE_OF
            if rated(c, prefix)
        ]
        return pl.sum_horizontal([*parts, pl.lit(0, MONEY)]).cast(MONEY)

    savings = (
        (usage["cache_read"] * (pl.col(RATE_OF["input"]) - pl.col(RATE_OF["cache_read"])))
        .fill_null(0)
        .cast(MONEY)
        if rated("input") and rated("cache_read")
        else pl.lit(0, MONEY)
    )
    billable = pl.col("_priced") & ~cache_hit

    def if_billable(amount: pl.Expr) -> pl.Expr:
        return pl.when(billable).then(amount).when(pl.col("_priced")).then(pl.lit(0, MONEY))

    return joined.with_columns(priced.alias("_priced")).with_columns(
        pl.when(pl.col("_priced")).then(pl.col("requests")).otherwise(0).alias("priced_requests"),
        if_billable(money("list_")).alias("list_cost_usd"),
        if_billable(money("")).alias("cost_usd"),
        if_billable(savings).alias("cache_savings_usd"),
    )


def _from_rows(
    requests: pl.LazyFrame, catalog: Catalog, by: Sequence[str], price_at: dt.date | None
) -> pl.LazyFrame:
    """The same totals from reprice's per-row output."""
    priced = reprice(requests, catalog, price_at)
    return (
        priced.with_columns(
            pl.col("started_at").dt.convert_time_zone("UTC").dt.date().alias("day"),
            pl.col("cost_usd").is_not_null().alias("_priced"),
        )
        .group_by(["day", "provider", "model_key", *by])
        .agg(
            pl.len().cast(pl.UInt32).alias("requests"),
            pl.col("_priced").sum().cast(pl.UInt32).alias("priced_requests"),
            *[pl.col(c).sum().cast(pl.Int64) for c in TOTAL_TOKEN_COLUMNS],
            *[
                pl.when(pl.col("_priced").any()).then(pl.col(c).sum()).cast(MONEY).alias(c)
                for c in TOTAL_MONEY_COLUMNS
            ],
        )
    )
