"""Reprice canonical requests against the pricing catalog: a pure lazy Polars transform.

Canonical rows in, the same rows out (never dropped, never silently $0) with:
  model_key, match_kind, price_id            which catalog price was used
  list_cost_usd                              at list price
  cost_usd                                   after contract terms
  cost_<component>_usd                       breakdown of cost_usd
  cache_savings_usd                          what cache reads saved against the uncached input
                                             rate, after contract terms (0 without cache reads)
  unpriced_reason                            why a row has no cost (then every cost is null)
  price_flags                                priced, but worth a look (e.g. batch rate unknown)
  contract_terms                             names of the contract terms applied

Token semantics (canonical): input_tokens counts ALL prompt tokens, cached ones included;
output_tokens counts ALL generated tokens, reasoning included. So uncached input is
input - cache_read - cache_write, and text output is output - reasoning.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import polars as pl

from pricing_catalog.catalog import Catalog
from pricing_catalog.lookup import KEY_COLUMNS, LOOKUP_SCHEMA, resolve_keys
from pricing_catalog.matching import MODEL_MAP_SCHEMA, match_models
from pricing_catalog.rows import DAY_SECONDS
from pricing_catalog.units import UNITS
from transforms.expressions import exact_quantity, flag_if, join_flags, seconds_of_day
from transforms.schema import MONEY, ROW_ISSUES, TOKEN_COLUMNS, canonical_provider, schema_of

# component -> (usage expression, rate column)
_USAGE = {
    "input": pl.col("input_tokens").fill_null(0)
    - pl.col("cache_read_tokens").fill_null(0)
    - pl.col("cache_write_tokens").fill_null(0),
    "cache_read": pl.col("cache_read_tokens").fill_null(0),
    "cache_write": pl.col("cache_write_tokens").fill_null(0)
    - pl.col("cache_write_1h_tokens").fill_null(0),
    "cache_write_1h": pl.col("cache_write_1h_tokens").fill_null(0),
    "output": pl.col("output_tokens").fill_null(0) - pl.col("reasoning_tokens").fill_null(0),
    "reasoning": pl.col("reasoning_tokens").fill_null(0),
    "image": pl.col("image_count").fill_null(0),
    "video": exact_quantity("video_seconds").fill_null(0),
    "audio": exact_quantity("audio_seconds").fill_null(0),
    "request": pl.lit(1, pl.Int64),
}
COMPONENT_COLUMNS = {
    "input": "cost_input_usd",
    "cache_read": "cost_cache_read_usd",
    "cache_write": "cost_cache_write_5m_usd",
    "cache_write_1h": "cost_cache_write_1h_usd",
    "output": "cost_output_usd",
    "reasoning": "cost_reasoning_usd",
    "image": "cost_image_usd",
    "video": "cost_video_usd",
    "audio": "cost_audio_usd",
    "request": "cost_request_usd",
}
RATE_OF = {u.component: u.rate_column for u in UNITS}
REPRICE_COLUMNS = schema_of(
    {
        "model_key": pl.String,
        "match_kind": pl.String,
        "price_id": pl.String,
        "list_cost_usd": MONEY,
        "cost_usd": MONEY,
        **{col: MONEY for col in COMPONENT_COLUMNS.values()},
        "cache_savings_usd": MONEY,
        "unpriced_reason": pl.String,
        "price_flags": pl.String,
        "contract_terms": pl.String,
    }
)


def _media_variant() -> pl.Expr:
    modality = pl.col("modality")
    image = pl.concat_str(
        [
            pl.col("image_size").str.to_lowercase().fill_null("*"),
            pl.col("image_quality").str.to_lowercase().fill_null("*"),
        ],
        separator="|",
    )
    return (
        pl.when((modality == "video") & pl.col("video_resolution").is_not_null())
        .then(pl.col("video_resolution").str.to_lowercase())
        .when(
            (modality == "image")
            & (pl.col("image_size").is_not_null() | pl.col("image_quality").is_not_null())
        )
        .then(image)
        .otherwise(pl.lit(""))
    )


def pricing_keys(
    requests: pl.LazyFrame, model_map: pl.LazyFrame, price_at: dt.date | None = None
) -> pl.LazyFrame:
    """Attach the catalog model and the lookup key columns to each request.

    `price_at` prices every request as if made on that day (what-if repricing); by default a
    request is priced as of its own `started_at`.
    """
    day = pl.col("started_at").dt.date() if price_at is None else pl.lit(price_at, pl.Date)
    return (
        requests.with_columns(canonical_provider(pl.col("provider")).alias("_provider"))
        .join(
            model_map.rename({"provider": "_provider", "model": "_model"}),
            left_on=["_provider", "model"],
            right_on=["_provider", "_model"],
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
        .with_columns(
            pl.when(pl.col("started_at").is_not_null()).then(day).alias("day"),
            seconds_of_day(pl.col("started_at")).alias("_tod_s"),
            pl.when(pl.col("context_applies"))
            .then(pl.col("service_tier").str.to_lowercase().fill_null("default"))
            .otherwise(pl.lit(""))
            .alias("price_tier"),
            (pl.col("context_applies") & pl.col("batch").fill_null(False))
            .fill_null(False)
            .alias("price_batch"),
            _media_variant().alias("media_variant"),
            pl.col("region").str.to_lowercase().fill_null("").alias("region_key"),
        )
    )


def distinct_keys(keyed: pl.LazyFrame) -> pl.LazyFrame:
    return keyed.select(KEY_COLUMNS).filter(pl.col("model_key").is_not_null()).unique()


def _invalid_checks() -> list[tuple[pl.Expr, str]]:
    """(condition, flag) pairs of usage that cannot be priced as logged; a null count is no
    evidence of anything, so every condition is false (never null) on it."""
    negatives = [
        ((pl.col(c) < 0).fill_null(False), f"invalid_usage:negative_{c}")
        for c in (*TOKEN_COLUMNS, "image_count", "video_seconds", "audio_seconds")
    ]
    subsets = [
        (
            pl.col("cache_read_tokens").fill_null(0) + pl.col("cache_write_tokens").fill_null(0)
            > pl.col("input_tokens").fill_null(0).clip(lower_bound=0),
            "invalid_usage:cache_above_input",
        ),
        (
            pl.col("cache_write_1h_tokens").fill_null(0)
            > pl.col("cache_write_tokens").fill_null(0),
            "invalid_usage:cache_write_1h_above_cache_write",
        ),
        (
            pl.col("reasoning_tokens").fill_null(0)
            > pl.col("output_tokens").fill_null(0).clip(lower_bound=0),
            "invalid_usage:reasoning_above_output",
        ),
    ]
    return [*negatives, *subsets]


def _invalid_usage() -> pl.Expr:
    return join_flags([flag_if(cond, flag) for cond, flag in _invalid_checks()])


def _usage_invalid() -> pl.Expr:
    """`_invalid_usage().is_not_null()` without building the strings."""
    return pl.any_horizontal([cond for cond, _ in _invalid_checks()])


def _usage_missing() -> pl.Expr:
    modality = pl.col("modality")
    tokens_missing = pl.col("input_tokens").is_null() & pl.col("output_tokens").is_null()
    return (
        pl.when(modality == "image")
        .then(pl.col("image_count").is_null() & tokens_missing)
        .when(modality == "video")
        .then(pl.col("video_seconds").is_null() & tokens_missing)
        .when(modality == "audio")
        .then(pl.col("audio_seconds").is_null() & tokens_missing)
        .otherwise(tokens_missing)
    )


# Request columns a price depends on (besides the time): requests are reduced to their
# distinct values first, everything catalog-related is computed on that small frame, and the
# big frame joins the result once.
CONTEXT_COLUMNS = (
    "provider",
    "model",
    "service_tier",
    "batch",
    "region",
    "modality",
    "image_size",
    "image_quality",
    "video_resolution",
)
CONTEXT_KEY = (*CONTEXT_COLUMNS, "_day")


def _utc_second_of_day(started: pl.DataType) -> pl.Expr:
    """UTC second of the day of `started_at`, 0 when null. On a UTC column, from the epoch
    value: five times cheaper than taking the clock time apart."""
    zone = started.time_zone if isinstance(started, pl.Datetime) else None
    if zone == "UTC":
        second = pl.col("started_at").dt.timestamp("ms") // 1000 % DAY_SECONDS
    elif zone is None:  # naive times are UTC
        second = seconds_of_day(pl.col("started_at"))
    else:
        second = seconds_of_day(pl.col("started_at").dt.convert_time_zone("UTC"))
    return second.fill_null(0)


def _price_day(price_at: dt.date | None) -> pl.Expr:
    day = pl.col("started_at").dt.date() if price_at is None else pl.lit(price_at, pl.Date)
    return pl.when(pl.col("started_at").is_not_null()).then(day)


def price_table(contexts: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """Distinct request contexts (CONTEXT_KEY) -> their price segments and catalog verdict."""
    pairs = contexts.select(
        canonical_provider(pl.col("provider")).alias("provider"), pl.col("model")
    ).unique()
    model_map = (
        match_models(catalog, pairs) if pairs.height else pl.DataFrame(schema=MODEL_MAP_SCHEMA)
    )
    as_requests = contexts.lazy().with_columns(
        pl.col("_day").cast(pl.Datetime("us", "UTC")).alias("started_at")
    )
    keyed = pricing_keys(as_requests, model_map.lazy()).drop("started_at", "_tod_s").collect()
    keys = distinct_keys(keyed.lazy()).collect()
    lookup = resolve_keys(catalog, keys) if keys.height else pl.DataFrame(schema=LOOKUP_SCHEMA)
    return (
        keyed.join(lookup, on=list(KEY_COLUMNS), how="left", nulls_equal=True)
        .with_columns(
            pl.coalesce(
                pl.when(pl.col("match_kind").is_in(["unknown_provider", "unknown_model"])).then(
                    pl.col("match_kind")
                ),
                pl.when(pl.col("model_key").is_null()).then(pl.lit("unknown_model")),
                pl.col("lookup_miss"),
            ).alias("_catalog_reason")
        )
        .drop("_provider", "price_tier", "price_batch", "media_variant", "region_key", "day")
    )


def _all_null(table: pl.DataFrame, column: str) -> bool:
    return table.height == 0 or table[column].null_count() == table.height


SEGMENT_BOUNDS = ("tod_start_s", "tod_end_s", "band_above", "band_upto")
# What a price segment adds to its context's row in the price table.
SEGMENT_COLUMNS = tuple(c for c in LOOKUP_SCHEMA.names() if c not in KEY_COLUMNS)
NO_PRICE_SEGMENT = "no_price_segment"
OVERLAPPING_SEGMENTS = "overlapping_price_segments"


def _covers(segment: dict[str, Any], tod_s: int, prompt_tokens: int) -> bool:
    start, end = segment["tod_start_s"], segment["tod_end_s"]
    above, upto = segment["band_above"], segment["band_upto"]
    return (
        (0 if start is None else start) <= tod_s < (DAY_SECONDS if end is None else end)
        and prompt_tokens > (-1 if above is None else above)
        and (upto is None or prompt_tokens <= upto)
    )


def price_segments(table: pl.DataFrame) -> pl.DataFrame:
    """Rewrite each context's price segments as cells that partition every request it can
    see, so joining and keeping the cell a request falls in yields exactly one row per request
    whatever the catalog holds.

    A request falls in a segment by its UTC second of the day and its prompt size (input
    tokens, 0 or more). The cells are the grid spanned by every segment bound of the context;
    a cell takes the last segment (in table order: later validity, then later window, then
    higher band) that covers it, flagged `overlapping_price_segments` when several do, and a
    cell none covers is a gap: no price, `_catalog_reason` `no_price_segment`. A context
    without any priced segment keeps one row with null bounds, which matches every request.
    The table is a few hundred rows, so this runs in Python at plan time.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in table.iter_rows(named=True):
        groups.setdefault(tuple(row[c] for c in CONTEXT_KEY), []).append(row)
    out: list[dict[str, Any]] = []
    for rows in groups.values():
        segments = [r for r in rows if r["price_id"] is not None]
        if not segments:
            out.append({**rows[0], **dict.fromkeys(SEGMENT_BOUNDS)})
            continue
        gap = {
            **{c: (None if c in SEGMENT_COLUMNS else v) for c, v in rows[0].items()},
            "_catalog_reason": rows[0].get("_catalog_reason") or NO_PRICE_SEGMENT,
        }
        tods = {0, DAY_SECONDS}
        bands = {-1}
        for r in segments:
            tods |= {
                min(max(v, 0), DAY_SECONDS)
                for v in (r["tod_start_s"], r["tod_end_s"])
                if v is not None
            }
            bands |= {max(v, -1) for v in (r["band_above"], r["band_upto"]) if v is not None}
        band_cuts = sorted(bands)
        for tod_start, tod_end in itertools.pairwise(sorted(tods)):
            for i, above in enumerate(band_cuts):
                # Bounds are all cuts, so one point (the cell's first second and prompt size)
                # tells whether a segment covers the whole cell.
                covering = [r for r in segments if _covers(r, tod_start, above + 1)]
                cell = dict(covering[-1]) if covering else dict(gap)
                if len(covering) > 1:
                    cell["price_note"] = ";".join(
                        filter(None, [cell.get("price_note"), OVERLAPPING_SEGMENTS])
                    )
                cell.update(
                    tod_start_s=tod_start,
                    tod_end_s=tod_end,
                    band_above=above,
                    band_upto=band_cuts[i + 1] if i + 1 < len(band_cuts) else None,
                )
                out.append(cell)
    return pl.DataFrame(out, schema=table.schema, orient="row") if out else table.clear()


def _in_cell() -> pl.Expr:
    """The request falls in the joined cell of `price_segments` (or its context has none)."""
    # Negative counts are unpriced anyway; clipping keeps such rows inside the first band.
    prompt = pl.col("input_tokens").fill_null(0).clip(lower_bound=0)
    tod = pl.col("_tod_s")
    return pl.col("tod_start_s").is_null() | (
        (tod >= pl.col("tod_start_s"))
        & (tod < pl.col("tod_end_s"))
        & (prompt > pl.col("band_above"))
        & (pl.col("band_upto").is_null() | (prompt <= pl.col("band_upto")))
    )


_CONTEXT_SEED = 0x5EED


def _context_hash() -> pl.Expr:
    return pl.struct(list(CONTEXT_KEY)).hash(_CONTEXT_SEED)


def cell_index(cells: pl.DataFrame, key_types: dict[str, pl.DataType]) -> pl.Expr | None:
    """The row of `cells` (`price_segments`' output) each request falls in, in request
    order; null for a context `cells` does not know. None when two of its contexts share a
    64-bit hash: the caller then joins on the context columns.

    Why not that join: an order-keeping join of a wide request frame moves every column
    (two thirds of repricing's time). Here a request's context is hashed, a context with
    one cell maps straight to it, and only a context split by time of day or prompt size
    joins its cells, on a narrow frame of three columns. `reprice` builds `cells` from the
    requests' own contexts, so every request finds its context; a request whose context is
    missing from `cells` maps to null (no price) unless its hash equals a known context's,
    a chance of 2^-64 per pair."""
    hashes = cells.select(
        pl.struct([pl.col(c).cast(key_types[c]) for c in CONTEXT_KEY])
        .hash(_CONTEXT_SEED)
        .alias("_h")
    ).with_row_index("_cell")
    if hashes["_h"].n_unique() != cells.select(CONTEXT_KEY).n_unique():
        return None
    context_hash = _context_hash()
    if hashes["_h"].is_unique().all():
        return context_hash.replace_strict(
            hashes["_h"], hashes["_cell"], default=None, return_dtype=pl.UInt32
        )
    bounds = pl.concat([hashes, cells.select(SEGMENT_BOUNDS)], how="horizontal")

    def find(rows: pl.Series) -> pl.Series:
        frame = rows.struct.unnest().with_row_index("_row")
        found = frame.join(bounds, on="_h", how="left").filter(_in_cell()).sort("_row")
        # price_segments' cells partition every request of a known context.
        if found.height != frame.height:
            raise AssertionError("price cells do not partition the requests")
        return found["_cell"]

    return pl.struct(context_hash.alias("_h"), "_tod_s", "input_tokens").map_batches(
        find, return_dtype=pl.UInt32, is_elementwise=True
    )


def _positive() -> dict[str, pl.Expr]:
    return {c: (_USAGE[c] > 0) for c in COMPONENT_COLUMNS if c != "request"}


def _any_rated_usage(table: pl.DataFrame, positive: dict[str, pl.Expr]) -> pl.Expr:
    """Some usage of the request has a rate (or the segment charges per request)."""
    return pl.any_horizontal(
        [
            positive[c] & pl.col(RATE_OF[c]).is_not_null()
            for c in positive
            if not _all_null(table, RATE_OF[c])
        ]
        + [pl.col(RATE_OF["request"]).is_not_null(), pl.lit(False)]
    )


def _unpriced_reason(table: pl.DataFrame) -> pl.Expr:
    positive = _positive()
    any_usage = pl.any_horizontal(list(positive.values()))
    return (
        pl.when(pl.col("gateway_cache_hit").fill_null(False))
        .then(pl.col(ROW_ISSUES))
        .otherwise(
            pl.coalesce(
                pl.col(ROW_ISSUES),
                _invalid_usage(),
                pl.col("_catalog_reason"),
                pl.when(_usage_missing()).then(pl.lit("usage_missing")),
                pl.when(pl.col("started_at").is_null()).then(pl.lit("missing_value:started_at")),
                # Usage exists but none of it has a rate: an unknown price, not a free request.
                pl.when(any_usage & ~_any_rated_usage(table, positive)).then(
                    pl.lit("no_rate_for_usage")
                ),
                # A context the table does not know at all.
                pl.when(pl.col("price_id").is_null()).then(pl.lit(NO_PRICE_SEGMENT)),
            )
        )
    )


def _is_priced(table: pl.DataFrame) -> pl.Expr:
    """`_unpriced_reason(table).is_null()` in boolean logic only: no string is built, so
    costs and roll-ups do not pay for the reasons."""
    positive = _positive()
    any_usage = pl.any_horizontal(list(positive.values()))
    clean = pl.col(ROW_ISSUES).is_null()
    return (
        pl.when(pl.col("gateway_cache_hit").fill_null(False))
        .then(clean)
        .otherwise(
            clean
            & ~_usage_invalid()
            & pl.col("_catalog_reason").is_null()
            & ~_usage_missing().fill_null(False)
            & pl.col("started_at").is_not_null()
            & ~(any_usage & ~_any_rated_usage(table, positive))
            & pl.col("price_id").is_not_null()
        )
    )


def apply_prices(
    requests: pl.LazyFrame, table: pl.DataFrame, price_at: dt.date | None = None
) -> pl.LazyFrame:
    """Join the small price table onto the requests and compute every cost column.

    Rows are neither dropped nor duplicated, whatever the table holds: it is first rewritten
    by `price_segments`, so each request matches exactly one cell. The table is known when
    the plan is built, so work it makes impossible is left out: a component no context has a
    rate for costs a literal 0, and when no contract term changes any rate the list cost is
    the contract cost.
    """
    table = price_segments(table)
    schema = requests.collect_schema()
    keyed = requests.with_columns(
        _price_day(price_at).alias("_day"),
        # A request without a start time has no price day either, so no priced segment:
        # any second keeps it in its context's single row.
        _utc_second_of_day(schema["started_at"]).alias("_tod_s"),
    )
    key_types = {**{c: schema[c] for c in CONTEXT_COLUMNS}, "_day": pl.Date()}
    cell = cell_index(table, key_types)
    if cell is None:
        joined = keyed.join(
            table.lazy(), on=list(CONTEXT_KEY), how="left", nulls_equal=True, maintain_order="left"
        ).filter(_in_cell())
    else:
        joined = keyed.with_columns(cell.alias("_cell")).with_columns(
            pl.lit(table[c]).gather(pl.col("_cell")).alias(c)
            for c in table.columns
            if c not in CONTEXT_KEY
        )

    priced_table = table.filter(pl.col("price_id").is_not_null())
    usage_components = [c for c in COMPONENT_COLUMNS if c != "request"]
    positive = _positive()
    rated = {c: not _all_null(table, RATE_OF[c]) for c in COMPONENT_COLUMNS}
    # Components with usage but no rate: priced at nothing, so they are named on the row.
    unrated = [
        flag_if(
            pl.col("price_id").is_not_null() & positive[c] & pl.col(RATE_OF[c]).is_null(),
            f"rate_missing:{c}",
        )
        for c in usage_components
        if priced_table.height and priced_table[RATE_OF[c]].null_count() > 0
    ]

    cache_hit = pl.col("gateway_cache_hit").fill_null(False)

    def cost(component: str, prefix: str = "") -> pl.Expr:
        column = prefix + RATE_OF[component]
        if _all_null(table, column):
            return pl.lit(0, MONEY)
        # A gateway cache hit never reached the provider: priced, explicitly, at nothing.
        return (
            pl.when(cache_hit)
            .then(pl.lit(0, MONEY))
            .otherwise((_USAGE[component] * pl.col(column)).fill_null(0))
            .cast(MONEY)
        )

    def cache_savings() -> pl.Expr:
        uncached, cached = RATE_OF["input"], RATE_OF["cache_read"]
        if _all_null(table, uncached) or _all_null(table, cached):
            return pl.lit(0, MONEY)
        # Integer tokens times exact rates: equal to what the reads would have cost uncached
        # minus cost_cache_read_usd, to the last of 18 decimals.
        saved = _USAGE["cache_read"] * (pl.col(uncached) - pl.col(cached))
        return pl.when(cache_hit).then(pl.lit(0, MONEY)).otherwise(saved.fill_null(0)).cast(MONEY)

    priced = pl.col("_priced")
    list_is_contract = all(table[f"list_{r}"].eq_missing(table[r]).all() for r in RATE_OF.values())
    list_total = (
        pl.col("cost_usd")
        if list_is_contract
        else pl.when(priced).then(
            pl.sum_horizontal([cost(c, "list_") for c in COMPONENT_COLUMNS]).cast(MONEY)
        )
    )
    flags = [flag_if(cache_hit, "gateway_cache_hit"), *unrated]
    if not _all_null(table, "price_note"):
        flags.append(pl.col("price_note"))
    if (table["match_kind"] == "genai_fallback").any():
        flags.append(
            flag_if(
                (pl.col("match_kind") == "genai_fallback")
                & (
                    pl.col("batch").fill_null(False)
                    | pl.col("service_tier").is_in(["flex", "priority"])
                ),
                "request_context_not_priced",
            )
        )
    live = [col for c, col in COMPONENT_COLUMNS.items() if rated[c]]
    return (
        joined.with_columns(
            _is_priced(table).alias("_priced"), _unpriced_reason(table).alias("unpriced_reason")
        )
        .with_columns(
            *[pl.when(priced).then(cost(c)).alias(col) for c, col in COMPONENT_COLUMNS.items()],
            pl.when(priced).then(cache_savings()).alias("cache_savings_usd"),
            join_flags(flags).alias("price_flags"),
        )
        .with_columns(
            pl.when(priced)
            .then(
                pl.sum_horizontal([pl.col(c) for c in live]).cast(MONEY)
                if live
                else pl.lit(0, MONEY)
            )
            .alias("cost_usd")
        )
        .with_columns(list_total.alias("list_cost_usd"))
    )


def finish(priced: pl.LazyFrame, input_columns: list[str]) -> pl.LazyFrame:
    return priced.select(*input_columns, *REPRICE_COLUMNS.keys())


def reprice(
    requests: pl.LazyFrame, catalog: Catalog, price_at: dt.date | None = None
) -> pl.LazyFrame:
    """Reprice canonical requests. One pass collects the distinct request contexts (a few
    hundred rows); the request frame itself stays lazy, so callers can stream it into a sink
    or a roll-up."""
    input_columns = requests.collect_schema().names()
    # Normalized frames (not read through the canonical reader) may lack these two.
    if ROW_ISSUES not in input_columns:
        requests = requests.with_columns(pl.lit(None, pl.String).alias(ROW_ISSUES))
    if "gateway_cache_hit" not in input_columns:
        requests = requests.with_columns(pl.lit(False).alias("gateway_cache_hit"))
    contexts = (
        requests.select(*CONTEXT_COLUMNS, _price_day(price_at).alias("_day"))
        .unique()
        .collect(engine="streaming")
    )
    return finish(apply_prices(requests, price_table(contexts, catalog), price_at), input_columns)
