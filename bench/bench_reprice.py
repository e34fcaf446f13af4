"""Benchmark: reprice + daily roll-up of N canonical requests, against DuckDB and calc_price.

    python -m bench.bench_reprice                  # 10M rows (generated once, then reused)
    python -m bench.bench_reprice --rows 1000000   # quicker

Engines, each run in its own subprocess so that its peak RSS (VmHWM) and CPU time are its own:

  aispend     transforms.rollups.reprice_daily_cost_rollup(pl.scan_parquet(f), catalog):
              one pass sums usage per (context, day, feature, price cell, status) and prices
              the sums (exact: integer usage x rate), collected with the streaming engine.
              Timed from the call to the collected roll-up; the catalog load (with its
              lookup indexes) is timed separately.
  rows        (--variants) daily_cost_rollup(reprice(...)): every row priced, then rolled up;
              the path the priced_requests lake dataset takes.
  duckdb      one SQL statement doing the same work with the same exactness: DECIMAL(38,18)
              rates, the model map and the resolved per-key price segments the aispend path
              uses (exported to parquet before timing), the time-of-day / prompt-size segment
              filter, component arithmetic, unpriced rules and the same group-by.
  calc_price  genai_prices.calc_price row by row on a random sample, extrapolated to N rows.

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
import statistics
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
    """The built-in catalog with its lookup indexes built: catalog-only work, timed apart."""
    from pricing_catalog.catalog import Catalog

    t0 = time.perf_counter()
    catalog = Catalog.load([]).build_indexes()
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
    from transforms.rollups import daily_cost_rollup, reprice_daily_cost_rollup

    catalog, catalog_s = _catalog()
    t0, cpu0 = time.perf_counter(), time.process_time()
    if variant == "aispend":
        query = reprice_daily_cost_rollup(pl.scan_parquet(file), catalog)
    else:  # "rows": price every row, then roll up
        query = daily_cost_rollup(reprice(pl.scan_parquet(file), catalog))
    t1 = time.perf_counter()
    rollup = query.collect(engine=engine)  # type: ignore[call-overload]
    t2 = time.perf_counter()
    out = workdir / f"rollup_{variant}_{engine}.parquet"
    rollup.write_parquet(out)
    return {
        "catalog_load_s": catalog_s,
        "plan_s": t1 - t0,  # the eager part: aggregation pass (aispend) or context pre-pass
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
    parser.add_argument(
        "--modes", default="streaming", help="Polars engines to try (streaming,in-memory)"
    )
    parser.add_argument(
        "--variants",
        default="aispend,rows",
        help="aispend (priced aggregates), rows (reprice every row, then roll up)",
    )
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

    def run(name: str, worker_args: list[str], attempt: int) -> None:
        r = run_worker(
            name,
            [*worker_args, "--file", str(file), "--workdir", str(workdir)],
            workdir,
            args.wait_idle,
        )
        runs.setdefault(name, []).append(r)
        seconds = r.wall_s if r.wall_s == r.wall_s else r.process_s  # nan: whole process
        status = f"{seconds:.2f} s, peak {r.peak_rss_mb:,.0f} MB" if r.ok else f"FAILED ({r.error})"
        print(f"  {name} #{attempt}: {status}", flush=True)

    if "duckdb" not in skip:
        run("prep", ["prep"], 1)
    variants = [v for v in args.variants.split(",") if v]
    engines = [
        (f"{variant}:{mode}", ["aispend", variant, mode]) for variant in variants for mode in modes
    ]
    if "duckdb" not in skip:
        engines.append(("duckdb", ["duckdb"]))
    # Round-robin, so that a busy spell on the shared machine hits every engine alike.
    for attempt in range(1, args.repeat + 1):
        for name, worker_args in engines:
            run(name, worker_args, attempt)
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
    headline = variant_ratios.get("aispend", {})
    ratio = headline.get("over_duckdb")
    ratio_cpu = headline.get("over_duckdb_cpu")
    peak = headline.get("peak_mb")
    speedup = headline.get("speedup_vs_calc_price")
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
    print(
        f"{'engine':52s} {'wall s':>8s} {'median s':>9s} {'CPU s':>8s} {'rows/s':>11s}"
        f" {'peak RSS MB':>12s}"
    )
    for t in table:
        median = statistics.median(t["runs_s"]) if t["runs_s"] else None
        print(
            f"{t['engine']:52s} {fmt(t['wall_s'], '8.2f')} {fmt(median, '9.2f')}"
            f" {fmt(t.get('cpu_s'), '8.2f')}"
            f" {fmt(t['rows_per_s'], '11,.0f')} {fmt(t['peak_rss_mb'], '12,.0f')}"
        )
    if aispend:
        r = aispend.result
        print(
            f"\nbest aispend = {aispend.name}: eager pass {r['plan_s']:.2f} s"
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
    if duck and by_variant.get("aispend"):
        # Medians as well: on a shared machine one lucky or unlucky run moves the best-of.
        ours = [r.wall_s for n, rs in runs.items() if n.startswith("aispend:") for r in rs if r.ok]
        theirs = [r.wall_s for r in runs["duckdb"] if r.ok]
        ratios["aispend_over_duckdb_median"] = statistics.median(ours) / statistics.median(theirs)
        print(f"median aispend / median DuckDB: {ratios['aispend_over_duckdb_median']:.2f}")
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
                f"variant {variant_best[v]}: {fmt(vr['over_duckdb'], '.2f')}x DuckDB time"
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
