"""Reprice canonical requests against the pricing catalog: a pure lazy Polars transform.

Canonical rows in, the same rows out (never dropped, never silently $0) with:
  model_key, match_kind, price_id            which catalog price was used
  list_cost_usd                              at list price
  cost_usd                                   after contract terms
  cost_<component>_usd                       breakdown of cost_usd
  unpriced_reason                            why a row has no cost (then every cost is null)
  price_flags                                priced, but worth a look (e.g. batch rate unknown)
  contract_terms                             names of the contract terms applied

Token semantics (canonical): input_tokens counts ALL prompt tokens, cached ones included;
output_tokens counts ALL generated tokens, reasoning included. So uncached input is
input - cache_read - cache_write, and text output is output - reasoning.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pricing_catalog.catalog import Catalog
from pricing_catalog.lookup import KEY_COLUMNS, LOOKUP_SCHEMA, resolve_keys
from pricing_catalog.matching import MODEL_MAP_SCHEMA, match_models
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


def _invalid_usage() -> pl.Expr:
    negatives = [
        flag_if(pl.col(c) < 0, f"invalid_usage:negative_{c}")
        for c in (*TOKEN_COLUMNS, "image_count", "video_seconds", "audio_seconds")
    ]
    subsets = [
        flag_if(
            pl.col("cache_read_tokens").fill_null(0) + pl.col("cache_write_tokens").fill_null(0)
            > pl.col("input_tokens").fill_null(0).clip(lower_bound=0),
            "invalid_usage:cache_above_input",
        ),
        flag_if(
            pl.col("cache_write_1h_tokens").fill_null(0)
            > pl.col("cache_write_tokens").fill_null(0),
            "invalid_usage:cache_write_1h_above_cache_write",
        ),
        flag_if(
            pl.col("reasoning_tokens").fill_null(0)
            > pl.col("output_tokens").fill_null(0).clip(lower_bound=0),
            "invalid_usage:reasoning_above_output",
        ),
    ]
    return join_flags([*negatives, *subsets])


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


def apply_prices(
    requests: pl.LazyFrame, table: pl.DataFrame, price_at: dt.date | None = None
) -> pl.LazyFrame:
    """Join the small price table onto the requests and compute every cost column.

    The table is known when the plan is built, so work it makes impossible is left out: a
    component no context has a rate for costs a literal 0, and when no contract term changes
    any rate the list cost is the contract cost.
    """
    # Negative counts are unpriced anyway; clipping keeps such rows inside the first band.
    in_tokens = pl.col("input_tokens").fill_null(0).clip(lower_bound=0)
    in_segment = (
        (pl.col("_tod_s") >= pl.col("tod_start_s"))
        & (pl.col("_tod_s") < pl.col("tod_end_s"))
        & (in_tokens > pl.col("band_above"))
        & (pl.col("band_upto").is_null() | (in_tokens <= pl.col("band_upto")))
    )
    joined = (
        requests.with_columns(
            _price_day(price_at).alias("_day"),
            seconds_of_day(pl.col("started_at")).alias("_tod_s"),
        )
        .join(
            table.lazy(), on=list(CONTEXT_KEY), how="left", nulls_equal=True, maintain_order="left"
        )
        .filter(pl.col("price_id").is_null() | in_segment)
    )

    priced_table = table.filter(pl.col("price_id").is_not_null())
    usage_components = [c for c in COMPONENT_COLUMNS if c != "request"]
    positive = {c: (_USAGE[c] > 0) for c in usage_components}
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
    any_rated_usage = pl.any_horizontal(
        [positive[c] & pl.col(RATE_OF[c]).is_not_null() for c in usage_components if rated[c]]
        + [pl.col(RATE_OF["request"]).is_not_null(), pl.lit(False)]
    )
    any_usage = pl.any_horizontal(list(positive.values()))

    cache_hit = pl.col("gateway_cache_hit").fill_null(False)
    reason = (
        pl.when(cache_hit)
        .then(pl.col(ROW_ISSUES))
        .otherwise(
            pl.coalesce(
                pl.col(ROW_ISSUES),
                _invalid_usage(),
                pl.col("_catalog_reason"),
                pl.when(_usage_missing()).then(pl.lit("usage_missing")),
                pl.when(pl.col("started_at").is_null()).then(pl.lit("missing_value:started_at")),
                # Usage exists but none of it has a rate: an unknown price, not a free request.
                pl.when(any_usage & ~any_rated_usage).then(pl.lit("no_rate_for_usage")),
            )
        )
    )

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

    priced = pl.col("unpriced_reason").is_null()
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
        joined.with_columns(reason.alias("unpriced_reason"))
        .with_columns(
            *[pl.when(priced).then(cost(c)).alias(col) for c, col in COMPONENT_COLUMNS.items()],
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
        requests.select(*CONTEXT_COLUMNS, _price_day(price_at).alias("_day")).unique().collect()
    )
    return finish(apply_prices(requests, price_table(contexts, catalog), price_at), input_columns)
