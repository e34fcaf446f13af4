"""Benchmark: reprice + daily roll-up of N canonical requests, against DuckDB and calc_price.

    python -m bench.bench_reprice                  # 10M rows (generated once, then reused)
    python -m bench.bench_reprice --rows 1000000   # quicker

Engines, each run in its own subprocess so that its peak RSS (VmHWM) and CPU time are its own:

  aispend     transforms.reprice.reprice(pl.scan_parquet(f), catalog) |> daily_cost_rollup,
              collected with engine="streaming" and engine="in-memory". Timed from the
              reprice() call (its eager distinct-context pre-pass included) to the roll-up;
              the catalog load is timed separately.
  duckdb      one SQL statement doing the same work with the same exactness: DECIMAL(38,18)
              rates, the model map and the resolved per-key price segments the aispend path
              uses (exported to parquet before timing), the time-of-day / prompt-size segment
              filter, component arithmetic, unpriced rules and the same group-by.
  calc_price  genai_prices.calc_price row by row on a random sample, extrapolated to N rows.
  proto       (--proto) a prototype of a faster reprice, see `proto_reprice`.
  proto_agg   (--proto) a roll-up that prices aggregated usage, see `proto_agg_rollup`.

The roll-ups of every engine must be identical, group by group, to the last of 18 decimals;
mismatches are printed and fail the run. Results go to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
THREADS = 2
TARGET_RATIO_VS_DUCKDB = 0.7  # aispend wall / DuckDB wall
TARGET_PEAK_MB = 2500
TARGET_SPEEDUP_VS_CALC_PRICE = 300
ROLLUP_KEYS = ["day", "provider", "model_key", "feature"]


# --------------------------------------------------------------------------------------------
# Workers: each runs in a fresh process and writes its result as JSON.
# --------------------------------------------------------------------------------------------


def _catalog() -> tuple[Any, float]:
    from pricing_catalog.catalog import Catalog

    t0 = time.perf_counter()
    catalog = Catalog.load([])
    return catalog, time.perf_counter() - t0


def work_prep(file: Path, workdir: Path) -> dict[str, Any]:
    """Export what the aispend path resolves (model map, per-key price segments) for DuckDB."""
    from pricing_catalog.lookup import LOOKUP_SCHEMA, resolve_keys
    from pricing_catalog.matching import MODEL_MAP_SCHEMA, match_models
    from transforms.reprice import distinct_keys, pricing_keys
    from transforms.schema import canonical_provider

    catalog, catalog_s = _catalog()
    t0 = time.perf_counter()
    requests = pl.scan_parquet(file)
    pairs = (
        requests.select(canonical_provider(pl.col("provider")).alias("provider"), pl.col("model"))
        .unique()
        .collect()
    )
    model_map = (
        match_models(catalog, pairs) if pairs.height else pl.DataFrame(schema=MODEL_MAP_SCHEMA)
    )
    keys = distinct_keys(pricing_keys(requests, model_map.lazy())).collect()
    lookup = resolve_keys(catalog, keys) if keys.height else pl.DataFrame(schema=LOOKUP_SCHEMA)
    model_map.write_parquet(workdir / "model_map.parquet")
    lookup.write_parquet(workdir / "lookup.parquet")
    return {
        "catalog_load_s": catalog_s,
        "prep_s": time.perf_counter() - t0,
        "model_pairs": model_map.height,
        "price_keys": keys.height,
        "lookup_rows": lookup.height,
    }


def work_aispend(file: Path, workdir: Path, engine: str, variant: str) -> dict[str, Any]:
    from transforms.reprice import reprice
    from transforms.rollups import daily_cost_rollup

    catalog, catalog_s = _catalog()
    t0, cpu0 = time.perf_counter(), time.process_time()
    if variant == "proto_agg":
        query = proto_agg_rollup(pl.scan_parquet(file), catalog)
    else:
        fn = reprice if variant == "aispend" else proto_reprice
        query = daily_cost_rollup(fn(pl.scan_parquet(file), catalog))
    t1 = time.perf_counter()
    rollup = query.collect(engine=engine)  # type: ignore[call-overload]
    t2 = time.perf_counter()
    out = workdir / f"rollup_{variant}_{engine}.parquet"
    rollup.write_parquet(out)
    return {
        "catalog_load_s": catalog_s,
        "plan_s": t1 - t0,  # the reprice() call itself: its eager distinct-context pre-pass
        "collect_s": t2 - t1,
        "wall_s": t2 - t0,
        "cpu_s": time.process_time() - cpu0,  # all threads of this process
        "groups": rollup.height,
        "rollup": str(out),
    }


def work_duckdb(file: Path, workdir: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")  # nothing needs it: ORDER BY at the end
    sql = duckdb_sql(file, workdir / "model_map.parquet", workdir / "lookup.parquet")
    (workdir / "duckdb.sql").write_text(sql, encoding="utf-8")
    t0, cpu0 = time.perf_counter(), time.process_time()
    table = con.sql(sql).to_arrow_table()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rollup = pl.from_arrow(table)
    assert isinstance(rollup, pl.DataFrame)
    out = workdir / "rollup_duckdb.parquet"
    rollup.write_parquet(out)
    return {
        "wall_s": wall,
        "cpu_s": cpu,  # all threads of this process
        "groups": rollup.height,
        "rollup": str(out),
        "version": duckdb.__version__,
    }


def work_calc_price(file: Path, workdir: Path, sample: int, seed: int) -> dict[str, Any]:
    """genai_prices.calc_price per row on a random sample; also checks each row's total
    against aispend's list_cost_usd for the same row."""
    import warnings

    from genai_prices import Usage, calc_price

    from transforms.reprice import reprice
    from transforms.schema import PROVIDER_ALIASES

    catalog, _ = _catalog()
    n_rows = pl.scan_parquet(file).select(pl.len()).collect().item()
    picked = sorted(random.Random(seed).sample(range(n_rows), min(sample, n_rows)))
    frame = (
        pl.scan_parquet(file)
        .with_row_index("_row")
        .filter(pl.col("_row").is_in(picked))
        .drop("_row")
        .collect()
    )

    usage_keys = {
        "input_tokens": "input_tokens",
        "cache_read_tokens": "cache_read_tokens",
        "cache_write_tokens": "cache_write_tokens",
        "cache_write_1h_tokens": "cache_write_1h_tokens",
        "output_tokens": "output_tokens",
        "reasoning_tokens": "output_reasoning_tokens",
    }
    rows = frame.to_dicts()  # built before timing: only the per-row pricing is timed
    totals: list[Decimal | None] = []
    errors = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0, cpu0 = time.perf_counter(), time.process_time()
        for r in rows:
            provider = (r["provider"] or "").strip().lower()
            provider = PROVIDER_ALIASES.get(provider, provider)
            usage = Usage(
                **{ours: r[col] for col, ours in usage_keys.items() if r[col] is not None}
            )
            context = {"service_tier": (r["service_tier"] or "default").lower()}
            if r["batch"]:
                context["processing"] = "batch"
            try:
                result = calc_price(
                    usage,
                    r["model"],
                    provider_id=provider,
                    genai_request_timestamp=r["started_at"],
                    price_context=context,
                )
                totals.append(Decimal(result.total_price))
            except LookupError:
                totals.append(None)
                errors += 1
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0

    # Agreement with aispend on the same rows (list price: calc_price knows no contracts).
    priced = reprice(frame.lazy(), catalog).collect()
    check = priced.select(
        "request_id", "provider", "model", "list_cost_usd", "unpriced_reason", "gateway_cache_hit"
    ).with_columns(pl.Series("calc_price_usd", totals, dtype=pl.Decimal(38, 18)))
    # A gateway cache hit is $0 in aispend; calc_price cannot know the provider was not called.
    cache_hits = check.filter(pl.col("gateway_cache_hit").fill_null(False)).height
    check = check.filter(~pl.col("gateway_cache_hit").fill_null(False))
    both = check.filter(
        pl.col("unpriced_reason").is_null() & pl.col("calc_price_usd").is_not_null()
    )
    differ = both.filter(pl.col("list_cost_usd") != pl.col("calc_price_usd"))
    return {
        "sample_rows": len(rows),
        "elapsed_s": elapsed,
        "per_row_s": elapsed / max(len(rows), 1),
        "cpu_per_row_s": cpu / max(len(rows), 1),
        "lookup_errors": errors,
        "agreement": {
            "cache_hits_skipped": cache_hits,
            "compared_rows": both.height,
            "equal": both.height - differ.height,
            "differ": differ.height,
            "aispend_unpriced_calc_price_priced": check.filter(
                pl.col("unpriced_reason").is_not_null() & pl.col("calc_price_usd").is_not_null()
            ).height,
            "aispend_priced_calc_price_failed": check.filter(
                pl.col("unpriced_reason").is_null() & pl.col("calc_price_usd").is_null()
            ).height,
            "examples": [
                {k: str(v) for k, v in row.items()} for row in differ.head(5).iter_rows(named=True)
            ],
        },
    }


# --------------------------------------------------------------------------------------------
# DuckDB: the same computation in SQL.
# --------------------------------------------------------------------------------------------


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_sql(file: Path, model_map: Path, lookup: Path) -> str:
    """The reprice + roll-up as one DuckDB statement (mirrors transforms/reprice.py)."""
    from pricing_catalog.lookup import KEY_COLUMNS
    from transforms.schema import PROVIDER_ALIASES

    aliases = " ".join(
        f"WHEN {_sql_str(k)} THEN {_sql_str(v)}" for k, v in PROVIDER_ALIASES.items()
    )
    provider = f"CASE lower(trim(provider)) {aliases} ELSE lower(trim(provider)) END"

    def z(col: str) -> str:
        return f"coalesce({col}, 0)"

    usage = {
        "input": f"({z('input_tokens')} - {z('cache_read_tokens')} - {z('cache_write_tokens')})",
        "cache_read": z("cache_read_tokens"),
        "cache_write": f"({z('cache_write_tokens')} - {z('cache_write_1h_tokens')})",
        "cache_write_1h": z("cache_write_1h_tokens"),
        "output": f"({z('output_tokens')} - {z('reasoning_tokens')})",
        "reasoning": z("reasoning_tokens"),
        "image": z("image_count"),
        "video": "coalesce(CAST(video_seconds AS DECIMAL(38, 3)), 0)",
        "audio": "coalesce(CAST(audio_seconds AS DECIMAL(38, 3)), 0)",
        "request": "1",
    }
    rate = {
        "input": "input_usd_per_token",
        "cache_read": "cache_read_usd_per_token",
        "cache_write": "cache_write_usd_per_token",
        "cache_write_1h": "cache_write_1h_usd_per_token",
        "output": "output_usd_per_token",
        "reasoning": "reasoning_usd_per_token",
        "image": "image_usd",
        "video": "video_second_usd",
        "audio": "audio_second_usd",
        "request": "request_usd",
    }

    def cost(component: str, prefix: str = "") -> str:
        return (
            f"CAST(coalesce({usage[component]} * {prefix}{rate[component]}, 0) AS DECIMAL(38, 18))"
        )

    positive = {c: f"({usage[c]} > 0)" for c in usage if c != "request"}
    any_usage = " OR ".join(positive.values())
    any_rated = " OR ".join(
        [f"({positive[c]} AND {rate[c]} IS NOT NULL)" for c in positive]
        + ["request_usd IS NOT NULL"]
    )
    measured = (
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
        "image_count",
        "video_seconds",
        "audio_seconds",
    )
    negative = " OR ".join(f"coalesce({c} < 0, false)" for c in measured)
    invalid = f"""({negative}
        OR {z("cache_read_tokens")} + {z("cache_write_tokens")} > greatest({z("input_tokens")}, 0)
        OR {z("cache_write_1h_tokens")} > {z("cache_write_tokens")}
        OR {z("reasoning_tokens")} > greatest({z("output_tokens")}, 0))"""
    no_tokens = "(input_tokens IS NULL AND output_tokens IS NULL)"
    usage_missing = f"""CASE WHEN modality = 'image' THEN image_count IS NULL AND {no_tokens}
        WHEN modality = 'video' THEN video_seconds IS NULL AND {no_tokens}
        WHEN modality = 'audio' THEN audio_seconds IS NULL AND {no_tokens}
        ELSE {no_tokens} END"""
    # A gateway cache hit never reached the provider: priced at $0 unless the row has issues.
    cache_hit = "coalesce(gateway_cache_hit, false)"
    unpriced = f"""(row_issues IS NOT NULL OR (NOT {cache_hit} AND (
        {invalid}
        OR coalesce(match_kind IN ('unknown_provider', 'unknown_model'), false)
        OR model_key IS NULL
        OR lookup_miss IS NOT NULL
        OR coalesce({usage_missing}, false)
        OR started_at IS NULL
        OR (({any_usage}) AND NOT ({any_rated})))))"""
    media_variant = """CASE
        WHEN modality = 'video' AND video_resolution IS NOT NULL THEN lower(video_resolution)
        WHEN modality = 'image' AND (image_size IS NOT NULL OR image_quality IS NOT NULL)
            THEN coalesce(lower(image_size), '*') || '|' || coalesce(lower(image_quality), '*')
        ELSE '' END"""
    on_key = " AND ".join(f"k.{c} IS NOT DISTINCT FROM l.{c}" for c in KEY_COLUMNS)
    in_tokens = "greatest(coalesce(k.input_tokens, 0), 0)"
    return f"""
WITH requests AS (
    SELECT *, {provider} AS _provider, timezone('UTC', started_at) AS _ts
    FROM read_parquet({_sql_str(str(file))})
), keyed AS (
    SELECT r.*, m.model_key, m.match_kind, m.context_applies,
        CAST(_ts AS DATE) AS day,
        hour(_ts) * 3600 + minute(_ts) * 60 + second(_ts) AS _tod_s,
        CASE WHEN m.context_applies THEN coalesce(lower(service_tier), 'default') ELSE '' END
            AS price_tier,
        coalesce(m.context_applies AND coalesce(batch, false), false) AS price_batch,
        {media_variant} AS media_variant,
        coalesce(lower(region), '') AS region_key
    FROM requests r
    LEFT JOIN read_parquet({_sql_str(str(model_map))}) m
        ON m.provider IS NOT DISTINCT FROM r._provider AND m.model IS NOT DISTINCT FROM r.model
), joined AS (
    SELECT k.*, l.* EXCLUDE ({", ".join(KEY_COLUMNS)})
    FROM keyed k
    LEFT JOIN read_parquet({_sql_str(str(lookup))}) l ON {on_key}
    WHERE l.price_id IS NULL OR (
        k._tod_s >= l.tod_start_s AND k._tod_s < l.tod_end_s
        AND {in_tokens} > l.band_above
        AND (l.band_upto IS NULL OR {in_tokens} <= l.band_upto))
), costed AS (
    SELECT CAST(_ts AS DATE) AS day, _provider AS provider, model_key, feature,
        input_tokens, output_tokens, cache_read_tokens, reasoning_tokens,
        {unpriced} AS unpriced,
        CASE WHEN {cache_hit} THEN CAST(0 AS DECIMAL(38, 18))
            ELSE {" + ".join(cost(c) for c in usage)} END AS cost_usd,
        CASE WHEN {cache_hit} THEN CAST(0 AS DECIMAL(38, 18))
            ELSE {" + ".join(cost(c, "list_") for c in usage)} END AS list_cost_usd
    FROM joined
)
SELECT day, provider, model_key, feature,
    CAST(count(*) AS UINTEGER) AS requests,
    CAST(count(*) FILTER (WHERE NOT unpriced) AS UINTEGER) AS priced_requests,
    CAST(count(*) FILTER (WHERE unpriced) AS UINTEGER) AS unpriced_requests,
    CAST(coalesce(sum(input_tokens), 0) AS BIGINT) AS input_tokens,
    CAST(coalesce(sum(output_tokens), 0) AS BIGINT) AS output_tokens,
    CAST(coalesce(sum(cache_read_tokens), 0) AS BIGINT) AS cache_read_tokens,
    CAST(coalesce(sum(reasoning_tokens), 0) AS BIGINT) AS reasoning_tokens,
    CAST(sum(list_cost_usd) FILTER (WHERE NOT unpriced) AS DECIMAL(38, 18)) AS list_cost_usd,
    CAST(sum(cost_usd) FILTER (WHERE NOT unpriced) AS DECIMAL(38, 18)) AS cost_usd
FROM costed
GROUP BY ALL
ORDER BY day, provider, model_key, feature NULLS LAST
"""


# --------------------------------------------------------------------------------------------
# Prototype: the same prices, fewer and cheaper passes. Not used by aispend itself.
# --------------------------------------------------------------------------------------------

CONTEXT_KEYS = ("provider", "model", "service_tier", "batch", "region")
MEDIA_COLUMNS = ("modality", "image_size", "image_quality", "video_resolution")
RAW_CONTEXT = (*CONTEXT_KEYS, *MEDIA_COLUMNS)


def _context_table(requests: pl.LazyFrame, catalog: Any) -> pl.DataFrame:
    """One pass over the requests: their distinct contexts, each with its price segments and
    everything that depends only on the context (a few hundred rows)."""
    from pricing_catalog.lookup import KEY_COLUMNS, LOOKUP_SCHEMA, resolve_keys
    from pricing_catalog.matching import MODEL_MAP_SCHEMA, match_models
    from transforms.reprice import distinct_keys, pricing_keys
    from transforms.schema import UTC_DATETIME, canonical_provider

    contexts = (
        requests.select(*RAW_CONTEXT, pl.col("started_at").dt.date().alias("_day"))
        .unique()
        .collect(engine="streaming")
    )
    pairs = contexts.select(
        canonical_provider(pl.col("provider")).alias("provider"), "model"
    ).unique()
    model_map = (
        match_models(catalog, pairs) if pairs.height else pl.DataFrame(schema=MODEL_MAP_SCHEMA)
    )
    as_request = contexts.lazy().with_columns(pl.col("_day").cast(UTC_DATETIME).alias("started_at"))
    keyed = (
        pricing_keys(as_request, model_map.lazy())
        .drop("started_at", "_tod_s", "_provider")
        .collect()
    )
    keys = distinct_keys(keyed.lazy()).collect()
    lookup = resolve_keys(catalog, keys) if keys.height else pl.DataFrame(schema=LOOKUP_SCHEMA)
    return (
        keyed.join(lookup, on=list(KEY_COLUMNS), how="left", nulls_equal=True)
        .drop([c for c in KEY_COLUMNS if c not in ("model_key", "media_variant")])
        # Prices depend on the media columns only through media_variant: join on that.
        .drop(*MEDIA_COLUMNS)
        .unique()
        .with_columns(
            # the catalog's part of unpriced_reason, once per context
            pl.coalesce(
                pl.when(pl.col("match_kind").is_in(["unknown_provider", "unknown_model"])).then(
                    pl.col("match_kind")
                ),
                pl.when(pl.col("model_key").is_null()).then(pl.lit("unknown_model")),
                pl.col("lookup_miss"),
            ).alias("_catalog_reason"),
        )
        .with_row_index("_segment")
    )


def _join_segments(requests: pl.LazyFrame, table: pl.DataFrame) -> pl.LazyFrame:
    """Each request with the one price segment it falls in (as reprice: by UTC time of day
    and prompt size); requests without a price keep null price columns."""
    from transforms.expressions import seconds_of_day
    from transforms.reprice import _media_variant

    in_tokens = pl.col("input_tokens").fill_null(0).clip(lower_bound=0)
    in_segment = (
        (pl.col("_tod_s") >= pl.col("tod_start_s"))
        & (pl.col("_tod_s") < pl.col("tod_end_s"))
        & (in_tokens > pl.col("band_above"))
        & (pl.col("band_upto").is_null() | (in_tokens <= pl.col("band_upto")))
    )
    return (
        requests.with_columns(
            pl.col("started_at").dt.date().alias("_day"),
            seconds_of_day(pl.col("started_at")).alias("_tod_s"),
            _media_variant().alias("media_variant"),
        )
        .join(
            table.lazy(),
            on=[*CONTEXT_KEYS, "media_variant", "_day"],
            how="left",
            nulls_equal=True,
        )
        .filter(pl.col("price_id").is_null() | in_segment)
    )


def _reason(table: pl.DataFrame) -> pl.Expr:
    """unpriced_reason exactly as reprice builds it, with the catalog part precomputed."""
    from transforms.reprice import _USAGE, RATE_OF, _invalid_usage, _usage_missing
    from transforms.schema import ROW_ISSUES

    positive = [c for c in RATE_OF if c != "request"]
    any_rated = pl.any_horizontal(
        [
            (_USAGE[c] > 0) & pl.col(RATE_OF[c]).is_not_null()
            for c in positive
            if table[RATE_OF[c]].null_count() < table.height
        ]
        + [pl.col(RATE_OF["request"]).is_not_null(), pl.lit(False)]
    )
    any_usage = pl.any_horizontal([_USAGE[c] > 0 for c in positive])
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
                pl.when(any_usage & ~any_rated).then(pl.lit("no_rate_for_usage")),
            )
        )
    )


def _priced(table: pl.DataFrame) -> pl.Expr:
    """`_reason(table).is_null()` as boolean logic only: no string is built.

    Mirrors reprice's rules (the roll-up comparison with DuckDB guards against drift)."""
    from transforms.reprice import _USAGE, RATE_OF, _usage_missing
    from transforms.schema import ROW_ISSUES, TOKEN_COLUMNS

    def col0(name: str) -> pl.Expr:
        return pl.col(name).fill_null(0)

    measured = (*TOKEN_COLUMNS, "image_count", "video_seconds", "audio_seconds")
    invalid = pl.any_horizontal(
        [(pl.col(c) < 0).fill_null(False) for c in measured]
        + [
            col0("cache_read_tokens") + col0("cache_write_tokens")
            > col0("input_tokens").clip(lower_bound=0),
            col0("cache_write_1h_tokens") > col0("cache_write_tokens"),
            col0("reasoning_tokens") > col0("output_tokens").clip(lower_bound=0),
        ]
    )
    positive = [c for c in RATE_OF if c != "request"]
    any_rated = pl.any_horizontal(
        [
            (_USAGE[c] > 0) & pl.col(RATE_OF[c]).is_not_null()
            for c in positive
            if table[RATE_OF[c]].null_count() < table.height
        ]
        + [pl.col(RATE_OF["request"]).is_not_null(), pl.lit(False)]
    )
    any_usage = pl.any_horizontal([_USAGE[c] > 0 for c in positive])
    clean = pl.col(ROW_ISSUES).is_null()
    return (
        pl.when(pl.col("gateway_cache_hit").fill_null(False))
        .then(clean)
        .otherwise(
            clean
            & ~invalid
            & pl.col("_catalog_reason").is_null()
            & ~_usage_missing().fill_null(False)
            & pl.col("started_at").is_not_null()
            & ~(any_usage & ~any_rated)
        )
    )


def proto_reprice(requests: pl.LazyFrame, catalog: Any) -> pl.LazyFrame:
    """What transforms.reprice.reprice computes, restructured (row order is not kept):

    1. One pass over the requests collects their distinct raw contexts (the columns a price
       depends on, plus the UTC day): a few hundred rows. Canonical provider, model matching,
       key columns, per-key price segments and the catalog's part of unpriced_reason are
       computed on that small table.
    2. The big frame joins that table once, on (provider, model, service_tier, batch, region)
       as logged, media_variant and the day, without maintain_order.
    3. Cost components whose rate is null in every resolved segment are the literal 0 (no
       Decimal multiply per row), and when no contract term changes any rate the list cost is
       the contract cost (one Decimal sum instead of two).

    Up to commit b8f2798 reprice made three passes (canonical_provider and the key
    expressions on every row in each) and joined twice with maintain_order="left"; since
    41be78b it does 1 and 3 itself, and differs from this only in keeping
    maintain_order="left" and joining on the four raw media columns.
    """
    from transforms.expressions import flag_if, join_flags
    from transforms.reprice import _USAGE, COMPONENT_COLUMNS, RATE_OF, REPRICE_COLUMNS
    from transforms.schema import MONEY

    input_columns = requests.collect_schema().names()
    table = _context_table(requests, catalog)
    joined = _join_segments(requests, table)

    def all_null(column: str) -> bool:
        return table[column].null_count() == table.height

    cache_hit = pl.col("gateway_cache_hit").fill_null(False)

    def cost(component: str, prefix: str = "") -> pl.Expr:
        column = prefix + RATE_OF[component]
        if all_null(column):
            return pl.lit(0, MONEY)
        product = (_USAGE[component] * pl.col(column)).fill_null(0)
        return pl.when(cache_hit).then(pl.lit(0, MONEY)).otherwise(product).cast(MONEY)

    priced = pl.col("unpriced_reason").is_null()
    live = [col for c, col in COMPONENT_COLUMNS.items() if not all_null(RATE_OF[c])]
    total = pl.sum_horizontal([pl.col(c) for c in live]).cast(MONEY) if live else pl.lit(0, MONEY)
    list_is_contract = all(table[f"list_{r}"].eq_missing(table[r]).all() for r in RATE_OF.values())
    list_total = (
        pl.col("cost_usd")
        if list_is_contract
        else pl.when(priced).then(
            pl.sum_horizontal([cost(c, "list_") for c in COMPONENT_COLUMNS]).cast(MONEY)
        )
    )
    unrated = [
        flag_if(
            pl.col("price_id").is_not_null() & (_USAGE[c] > 0) & pl.col(RATE_OF[c]).is_null(),
            f"rate_missing:{c}",
        )
        for c in COMPONENT_COLUMNS
        if c != "request"
    ]
    fallback_context = (pl.col("match_kind") == "genai_fallback") & (
        pl.col("batch").fill_null(False) | pl.col("service_tier").is_in(["flex", "priority"])
    )
    return (
        joined.with_columns(_reason(table).alias("unpriced_reason"))
        .with_columns(
            *[pl.when(priced).then(cost(c)).alias(col) for c, col in COMPONENT_COLUMNS.items()],
            join_flags(
                [
                    flag_if(cache_hit, "gateway_cache_hit"),
                    pl.col("price_note"),
                    flag_if(fallback_context, "request_context_not_priced"),
                    *unrated,
                ]
            ).alias("price_flags"),
        )
        .with_columns(pl.when(priced).then(total).alias("cost_usd"))
        .with_columns(list_total.alias("list_cost_usd"))
        .select(*input_columns, *REPRICE_COLUMNS.keys())
    )


# Usage that is a whole number of units: sum(usage) * rate == sum(usage * rate), exactly.
_INTEGER_COMPONENTS = (
    "input",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "output",
    "reasoning",
    "image",
    "request",
)


def proto_agg_rollup(requests: pl.LazyFrame, catalog: Any) -> pl.LazyFrame:
    """daily_cost_rollup(reprice(requests)) without pricing each row: a roll-up prototype.

    Within one price segment every integer usage component costs usage x rate, so the sum
    over a group is (sum of usage) x rate, exactly (fixed-point, no rounding). The requests
    are aggregated per (day, provider, model_key, feature, price segment) with each row's
    priced/unpriced status (boolean logic: no reason string is built), and only the
    aggregates are multiplied by the rates. Seconds of video/audio are rounded per row in
    reprice, so those are still priced per row.
    """
    from transforms.reprice import _USAGE, RATE_OF
    from transforms.rollups import ROLLUP_KEYS, ROLLUP_MONEY_COLUMNS, ROLLUP_TOKEN_COLUMNS
    from transforms.schema import MONEY, canonical_provider

    table = _context_table(requests, catalog)
    joined = _join_segments(requests, table)
    rated = {c: table[RATE_OF[c]].null_count() < table.height for c in RATE_OF}
    list_rated = {c: table[f"list_{RATE_OF[c]}"].null_count() < table.height for c in RATE_OF}
    billable = pl.col("_priced") & ~pl.col("gateway_cache_hit").fill_null(False)
    integer = [c for c in _INTEGER_COMPONENTS if rated[c] or list_rated[c]]
    seconds = [c for c in RATE_OF if c not in _INTEGER_COMPONENTS and (rated[c] or list_rated[c])]

    def row_cost(component: str, prefix: str) -> pl.Expr:
        rate = pl.col(prefix + RATE_OF[component])
        return pl.when(billable).then((_USAGE[component] * rate).fill_null(0).cast(MONEY))

    keys = ["_day", "provider", "model_key", "feature", "_segment"]
    per_segment = (
        joined.with_columns(_priced(table).alias("_priced"))
        .group_by(keys)
        .agg(
            pl.len().alias("requests"),
            pl.col("_priced").sum().alias("priced_requests"),
            *[pl.col(c).sum() for c in ROLLUP_TOKEN_COLUMNS],
            *[pl.when(billable).then(_USAGE[c]).sum().alias(f"_u_{c}") for c in integer],
            *[row_cost(c, "").sum().alias(f"_c_{c}") for c in seconds],
            *[row_cost(c, "list_").sum().alias(f"_l_{c}") for c in seconds],
        )
        .join(
            table.lazy().select(
                "_segment", *[p + RATE_OF[c] for c in integer for p in ("", "list_")]
            ),
            on="_segment",
            how="left",
        )
    )

    def money(prefix: str, seconds_prefix: str) -> pl.Expr:
        parts = [(pl.col(f"_u_{c}") * pl.col(prefix + RATE_OF[c])).fill_null(0) for c in integer]
        parts += [pl.col(f"{seconds_prefix}{c}") for c in seconds]
        return pl.sum_horizontal([*parts, pl.lit(0, MONEY)]).cast(MONEY)

    priced_count = pl.col("priced_requests").sum()
    return (
        per_segment.with_columns(
            money("", "_c_").alias("cost_usd"),
            money("list_", "_l_").alias("list_cost_usd"),
            pl.col("_day").alias("day"),
            canonical_provider(pl.col("provider")).alias("provider"),
        )
        .group_by(list(ROLLUP_KEYS))
        .agg(
            pl.col("requests").sum().cast(pl.UInt32),
            priced_count.cast(pl.UInt32).alias("priced_requests"),
            (pl.col("requests").sum() - priced_count).cast(pl.UInt32).alias("unpriced_requests"),
            *[pl.col(c).sum().cast(pl.Int64) for c in ROLLUP_TOKEN_COLUMNS],
            *[
                pl.when(priced_count > 0).then(pl.col(c).sum()).otherwise(None).cast(MONEY).alias(c)
                for c in ROLLUP_MONEY_COLUMNS
            ],
        )
        .sort(list(ROLLUP_KEYS), nulls_last=True)
    )


# --------------------------------------------------------------------------------------------
# Parent: generate, run workers, compare, report.
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    ok: bool
    peak_rss_mb: float
    process_s: float
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def wall_s(self) -> float:
        return float(self.result.get("wall_s", float("nan")))


def _vm_hwm_mb() -> float | None:
    """This process's peak resident set (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _busy_cpus(interval: float = 1.0) -> float:
    """CPUs' worth of non-idle time on the whole machine over `interval` seconds."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    ticks = os.sysconf("SC_CLK_TCK") * interval
    return max(0.0, ((total1 - total0) - (idle1 - idle0)) / ticks)


def wait_until_idle(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (up to max_wait seconds) until other processes use < threshold CPUs; returns the
    last measurement. The machine is shared: this keeps others' work out of the timings."""
    deadline = time.monotonic() + max_wait
    busy = _busy_cpus()
    while busy >= threshold and time.monotonic() < deadline:
        busy = _busy_cpus()
    return busy


def run_worker(name: str, args: list[str], workdir: Path, max_wait: float = 0) -> Run:
    """Run one worker in its own process and measure its peak RSS.

    The worker reports its own VmHWM. The kernel's rusage (os.wait4, RUSAGE_CHILDREN,
    /usr/bin/time) is kept as `rusage_maxrss_mb` but not used: on exec Linux carries the
    forking parent's high-water mark into the child's ru_maxrss, so a child of a parent that
    once held a big frame would inherit that figure.
    """
    result_path = workdir / f"{name}.json"
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bench.bench_reprice",
        "--worker",
        *args,
        "--result",
        str(result_path),
    ]
    env = {**os.environ, "POLARS_MAX_THREADS": str(THREADS)}
    busy = wait_until_idle(max_wait) if max_wait > 0 else _busy_cpus(0.5)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - t0
    rusage_mb = usage.ru_maxrss / 1024  # KiB on Linux
    if proc.returncode != 0 or not result_path.exists():
        return Run(name, False, rusage_mb, elapsed, error=f"exit code {proc.returncode}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result["busy_cpus_before"] = round(busy, 2)
    result["load_avg_1m_after"] = os.getloadavg()[0]
    result["rusage_maxrss_mb"] = rusage_mb
    return Run(name, True, result.get("peak_rss_mb") or rusage_mb, elapsed, result)


def best_of(runs: list[Run]) -> Run | None:
    ok = [r for r in runs if r.ok]
    return min(ok, key=lambda r: r.wall_s) if ok else None


def compare_rollups(left: Path, right: Path) -> tuple[int, list[dict[str, Any]]]:
    """Groups compared and mismatches (every column, exact; cost_usd as Python Decimals)."""
    a = pl.read_parquet(left)
    b = pl.read_parquet(right)
    measures = [c for c in a.columns if c not in ROLLUP_KEYS]
    joined = a.join(b, on=ROLLUP_KEYS, how="full", nulls_equal=True, coalesce=True, suffix="_other")
    differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_other")) for c in measures])
    mismatches = [
        {k: str(v) for k, v in row.items()}
        for row in joined.filter(differs).head(20).iter_rows(named=True)
    ]
    # The mandatory check, spelled out: exact Decimal equality of sum(cost_usd) per group.
    for row in joined.iter_rows(named=True):
        x, y = row["cost_usd"], row["cost_usd_other"]
        if (x is None) != (y is None) or (x is not None and Decimal(x) != Decimal(y)):
            mismatch = {k: str(v) for k, v in row.items()}
            if mismatch not in mismatches:
                mismatches.append(mismatch)
    return joined.height, mismatches


def _has_input_schema(file: Path) -> bool:
    from transforms.schema import CANONICAL_SCHEMA, ROW_ISSUES

    expected = {**CANONICAL_SCHEMA, ROW_ISSUES: pl.String()}
    return dict(pl.scan_parquet(file).collect_schema()) == expected


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or x != x else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--file", type=Path, help="canonical parquet (default: generated)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; the fastest counts")
    parser.add_argument("--sample", type=int, default=20_000, help="calc_price sample rows")
    parser.add_argument("--modes", default="streaming,in-memory", help="Polars engines to try")
    parser.add_argument("--proto", action="store_true", help="also run the prototypes")
    parser.add_argument("--skip", default="", help="comma list: duckdb,calc_price")
    parser.add_argument("--tag", default="", help="suffix of the run_<rows>.json copy")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=60,
        help="before each run, wait up to this many seconds for other processes to go quiet",
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    args = parser.parse_args(argv)

    RESULTS.mkdir(parents=True, exist_ok=True)
    file = args.file or RESULTS / f"canonical_{args.rows}_s{args.seed}_d{args.days}.parquet"
    if file.exists() and not _has_input_schema(file):
        print(f"{file} predates the current canonical schema: regenerating", flush=True)
        file.unlink()
    if not file.exists():
        # in its own process, so this one stays small
        gen = [sys.executable, "-m", "bench.gen_canonical", "--rows", str(args.rows)]
        gen += ["--out", str(file), "--seed", str(args.seed), "--days", str(args.days)]
        subprocess.run(gen, cwd=REPO, check=True)
    rows = pl.scan_parquet(file).select(pl.len()).collect().item()
    workdir = RESULTS / f"work_{rows}"
    workdir.mkdir(exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    modes = [m for m in args.modes.split(",") if m]
    print(
        f"{rows:,} rows from {file}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    runs: dict[str, list[Run]] = {}

    def run(name: str, worker_args: list[str], repeat: int) -> None:
        for i in range(repeat):
            r = run_worker(
                name,
                [*worker_args, "--file", str(file), "--workdir", str(workdir)],
                workdir,
                args.wait_idle,
            )
            runs.setdefault(name, []).append(r)
            seconds = r.wall_s if r.wall_s == r.wall_s else r.process_s  # nan: whole process
            status = (
                f"{seconds:.2f} s, peak {r.peak_rss_mb:,.0f} MB" if r.ok else f"FAILED ({r.error})"
            )
            print(f"  {name} #{i + 1}: {status}", flush=True)

    if "duckdb" not in skip:
        run("prep", ["prep"], 1)
    variants = ["aispend", *(["proto", "proto_agg"] if args.proto else [])]
    for variant in variants:
        for mode in modes:
            run(f"{variant}:{mode}", ["aispend", variant, mode], args.repeat)
    if "duckdb" not in skip:
        run("duckdb", ["duckdb"], args.repeat)
    if "calc_price" not in skip:
        run("calc_price", ["calc_price", str(args.sample), str(args.seed)], 1)

    # exactness: every roll-up against DuckDB's (or the first aispend one)
    best = {name: best_of(rs) for name, rs in runs.items()}
    rollups = {n: Path(b.result["rollup"]) for n, b in best.items() if b and "rollup" in b.result}
    reference = "duckdb" if "duckdb" in rollups else next(iter(rollups), None)
    checks: dict[str, Any] = {}
    all_equal = True
    for name, path in rollups.items():
        if name == reference or reference is None:
            continue
        groups, mismatches = compare_rollups(path, rollups[reference])
        checks[f"{name} vs {reference}"] = {"groups": groups, "mismatches": mismatches}
        all_equal &= not mismatches
        print(
            f"exactness {name} vs {reference}: {groups} groups, {len(mismatches)} mismatches",
            flush=True,
        )
        for m in mismatches[:20]:
            print("   MISMATCH", m, flush=True)

    # report
    aispend = best_of([r for n, rs in runs.items() if n.startswith("aispend:") for r in rs])
    duck = best.get("duckdb")
    calc = best.get("calc_price")
    calc_per_row = calc.result["per_row_s"] if calc else None
    table = []
    for name, b in best.items():
        if name in ("prep", "calc_price") or b is None:
            continue
        table.append(
            {
                "engine": name,
                "wall_s": b.wall_s,
                "cpu_s": b.result.get("cpu_s"),
                "rows_per_s": rows / b.wall_s,
                "peak_rss_mb": max(r.peak_rss_mb for r in runs[name] if r.ok),
                "runs_s": [round(r.wall_s, 3) for r in runs[name] if r.ok],
                "busy_cpus_before": [r.result.get("busy_cpus_before") for r in runs[name] if r.ok],
                "plan_s": b.result.get("plan_s"),
                "collect_s": b.result.get("collect_s"),
                "catalog_load_s": b.result.get("catalog_load_s"),
            }
        )
    if calc and calc_per_row:
        table.append(
            {
                "engine": f"calc_price ({calc.result['sample_rows']:,} rows sampled, extrapolated)",
                "wall_s": calc_per_row * rows,
                "cpu_s": calc.result["cpu_per_row_s"] * rows,
                "rows_per_s": 1 / calc_per_row,
                "peak_rss_mb": calc.peak_rss_mb,
                "runs_s": [],
            }
        )

    def ratios_for(run: Run | None) -> dict[str, float | None]:
        if run is None:
            return {}
        cpu = run.result.get("cpu_s")
        return {
            "over_duckdb": run.wall_s / duck.wall_s if duck else None,
            "over_duckdb_cpu": cpu / duck.result["cpu_s"] if duck and cpu else None,
            "peak_mb": max(r.peak_rss_mb for r in runs[run.name] if r.ok),
            "speedup_vs_calc_price": calc_per_row / (run.wall_s / rows) if calc_per_row else None,
        }

    by_variant = {
        v: best_of([r for n, rs in runs.items() if n.startswith(f"{v}:") for r in rs])
        for v in variants
    }
    variant_ratios = {v: ratios_for(b) for v, b in by_variant.items()}
    variant_best = {v: b.name if b else None for v, b in by_variant.items()}
    ratio = variant_ratios["aispend"].get("over_duckdb")
    ratio_cpu = variant_ratios["aispend"].get("over_duckdb_cpu")
    peak = variant_ratios["aispend"].get("peak_mb")
    speedup = variant_ratios["aispend"].get("speedup_vs_calc_price")
    ratios: dict[str, Any] = {
        "aispend_over_duckdb": ratio,
        "aispend_over_duckdb_cpu": ratio_cpu,
        "aispend_peak_mb": peak,
        "speedup_vs_calc_price": speedup,
        "variants": {v: {"best": variant_best[v], **r} for v, r in variant_ratios.items()},
    }
    targets = {
        "aispend_over_duckdb<=0.7": ratio is not None and ratio <= TARGET_RATIO_VS_DUCKDB,
        "peak<=2.5GB": peak is not None and peak <= TARGET_PEAK_MB,
        "speedup>=300x": speedup is not None and speedup >= TARGET_SPEEDUP_VS_CALC_PRICE,
        "rollups_identical": all_equal,
    }

    print()
    print(f"{'engine':52s} {'wall s':>8s} {'CPU s':>8s} {'rows/s':>11s} {'peak RSS MB':>12s}")
    for t in table:
        print(
            f"{t['engine']:52s} {fmt(t['wall_s'], '8.2f')} {fmt(t.get('cpu_s'), '8.2f')}"
            f" {fmt(t['rows_per_s'], '11,.0f')} {fmt(t['peak_rss_mb'], '12,.0f')}"
        )
    if aispend:
        r = aispend.result
        print(
            f"\nbest aispend = {aispend.name}: reprice() passes {r['plan_s']:.2f} s"
            f" + collect {r['collect_s']:.2f} s;"
            f" catalog load {r['catalog_load_s']:.2f} s (not in wall)"
        )

    def verdict(key: str) -> str:
        return "OK" if targets[key] else "MISSED"

    print(
        f"aispend / DuckDB time: {fmt(ratio, '.2f')} (target <= 0.7)"
        f" -> {verdict('aispend_over_duckdb<=0.7')};"
        f" CPU time ratio {fmt(ratio_cpu, '.2f')}"
    )
    print(f"aispend peak RSS: {fmt(peak, ',.0f')} MB (target <= 2500) -> {verdict('peak<=2.5GB')}")
    print(
        f"speedup vs calc_price per row: {fmt(speedup, ',.0f')}x (target >= 300x)"
        f" -> {verdict('speedup>=300x')}"
    )
    if calc:
        agree = calc.result["agreement"]
        print(
            f"calc_price agreement on the sample: {agree['equal']:,}/{agree['compared_rows']:,}"
            f" rows equal to aispend list_cost_usd, {agree['differ']} differ"
        )
        for ex in agree["examples"]:
            print("   DIFFER", ex)
    for v, vr in variant_ratios.items():
        if v != "aispend" and variant_best[v]:
            print(
                f"prototype {variant_best[v]}: {fmt(vr['over_duckdb'], '.2f')}x DuckDB time"
                f" ({fmt(vr['over_duckdb_cpu'], '.2f')}x its CPU),"
                f" peak {fmt(vr['peak_mb'], ',.0f')} MB,"
                f" {fmt(vr['speedup_vs_calc_price'], ',.0f')}x calc_price"
            )
    print(f"roll-ups identical across engines: {all_equal}")
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": rows,
        "file": str(file),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "polars": pl.__version__,
            "threads": THREADS,
        },
        "table": table,
        "ratios": ratios,
        "targets": targets,
        "exactness": checks,
        "runs": {
            n: [
                {"ok": r.ok, "peak_rss_mb": r.peak_rss_mb, "error": r.error, **r.result} for r in rs
            ]
            for n, rs in runs.items()
        },
    }
    text = json.dumps(report, indent=2, default=str)
    (RESULTS / "latest.json").write_text(text, encoding="utf-8")
    (RESULTS / f"run_{rows}{'_' + args.tag if args.tag else ''}.json").write_text(
        text, encoding="utf-8"
    )
    print(f"\nwrote {RESULTS / 'latest.json'}")
    return 0 if all_equal else 1


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("params", nargs="*")
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    a = parser.parse_args(argv)
    if a.kind == "prep":
        out = work_prep(a.file, a.workdir)
    elif a.kind == "aispend":
        variant, engine = a.params
        out = work_aispend(a.file, a.workdir, engine, variant)
    elif a.kind == "duckdb":
        out = work_duckdb(a.file, a.workdir)
    elif a.kind == "calc_price":
        out = work_calc_price(a.file, a.workdir, int(a.params[0]), int(a.params[1]))
    else:
        raise SystemExit(f"unknown worker {a.kind}")
    out["peak_rss_mb"] = _vm_hwm_mb()
    a.result.write_text(json.dumps(out, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
