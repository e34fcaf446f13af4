"""Benchmark: render one day's HTML report of a 10M-request partition from its roll-ups.

    python -m bench.bench_report                    # 10M requests (prepared once, then reused)
    python -m bench.bench_report --rows 1000000     # quicker preparation

Preparation (not timed, cached under bench/results/report_<rows>_s<seed>/): the canonical
requests of one day from bench.gen_canonical (the file bench_reprice uses, reused when
present), repriced once to a priced Parquet file (streaming), then the four roll-ups the
report reads (usage_daily, latency_by_model, latency_by_feature, peaks_by_model) written to
a lake. 34 earlier days of usage_daily are the same rows with the counts and money scaled by
a per-day factor, so the comparisons, month to date and the 30-day trend all have data.

Timed, best and median of --repeat runs:
  cli      `reports.from_lake.run_report(day, lake, out)`: read 35 days of roll-ups from the
           lake, build the model, render, write the HTML and rebuild the index (what
           `aispend report --date` does once roll-ups exist)
  render   build_daily_report + render_daily on frames already in memory

Target: cli < 2 s. Results: bench/results/report_latest.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

import polars as pl

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SECONDS = 2.0
HISTORY_DAYS = 35
_Q18 = Decimal(1).scaleb(-18)


def _canonical(rows: int, seed: int) -> Path:
    from bench import gen_canonical

    path = RESULTS / f"canonical_{rows}_s{seed}_d1.parquet"
    if not path.exists():
        print(f"generating {rows:,} canonical requests -> {path}", flush=True)
        gen_canonical.write(rows, path, seed=seed, days=1)
    return path


def prepare(rows: int, seed: int) -> tuple[Path, dt.date, dict[str, float]]:
    """The lake with roll-ups for the report day and history; returns (base, day, timings)."""
    import lake
    from pricing_catalog.catalog import Catalog
    from transforms import usage_rollups as ur
    from transforms.reprice import reprice

    work = RESULTS / f"report_{rows}_s{seed}"
    base = work / "data"
    marker = work / "prepared.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        return base, dt.date.fromisoformat(info["day"]), info["timings"]
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    source = _canonical(rows, seed)
    priced_file = work / "priced.parquet"
    t0 = time.perf_counter()
    catalog = Catalog.load([])
    reprice(pl.scan_parquet(source), catalog).sink_parquet(priced_file, engine="streaming")
    timings["reprice_s"] = time.perf_counter() - t0
    priced = pl.scan_parquet(priced_file)
    day = priced.select(pl.col("started_at").dt.date().min()).collect().item()
    for name, build in (
        ("usage_daily", ur.usage_daily),
        ("latency_by_model", ur.latency_by_model),
        ("latency_by_feature", ur.latency_by_feature),
        ("peaks_by_model", ur.peaks_by_model),
    ):
        t0 = time.perf_counter()
        frame = build(priced).collect(engine="streaming")
        timings[f"{name}_s"] = time.perf_counter() - t0
        lake.write_partition(base, name, day, frame)
        print(f"{name}: {frame.height:,} rows in {timings[f'{name}_s']:.1f} s", flush=True)
    usage = lake.read_partition(base, "usage_daily", day)
    counts = [c for c, t in usage.schema.items() if t.is_integer()]
    floats = [c for c, t in usage.schema.items() if t.is_float()]
    money = [c for c, t in usage.schema.items() if isinstance(t, pl.Decimal)]
    for back in range(1, HISTORY_DAYS):
        # a weekly rhythm plus a slow trend: different enough for movers and forecasts
        factor = Decimal(100 - back) / 100 * (Decimal("0.8") if back % 7 in (1, 2) else 1)
        past = usage.with_columns(
            pl.lit(day - dt.timedelta(days=back)).alias("day"),
            *[(pl.col(c) * float(factor)).round().cast(pl.Int64) for c in counts],
            *[pl.col(c) * float(factor) for c in floats],
            # money scaled in Python Decimal, quantized to the column's 18 places
            *[
                pl.Series(
                    c,
                    [None if v is None else (v * factor).quantize(_Q18) for v in usage[c]],
                    dtype=usage.schema[c],
                )
                for c in money
            ],
        )
        lake.write_partition(base, "usage_daily", day - dt.timedelta(days=back), past)
    priced_file.unlink()  # ~1 GB; the roll-ups are all the report needs
    marker.write_text(json.dumps({"day": day.isoformat(), "timings": timings}, indent=1))
    return base, day, timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from reports.daily import RateLimit, build_daily_report
    from reports.from_lake import AlertSettings, build_inputs, run_report
    from reports.render import render_daily

    base, day, prep = prepare(args.rows, args.seed)
    os.environ.pop("AISPEND_ALERTS_CONFIG", None)
    out = base.parent / "site"
    cli, render = [], []
    settings = AlertSettings(
        [RateLimit("openai", None, rpm=20_000, tpm=40_000_000)], Decimal(500_000), {}, {}
    )
    inputs = build_inputs(str(base), day, settings)
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        path = run_report(day, str(base), str(out))
        cli.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        html = render_daily(build_daily_report(inputs))
        render.append(time.perf_counter() - t0)
    usage_rows = inputs.usage.filter(pl.col("day") == day).height
    result = {
        "rows": args.rows,
        "day": day.isoformat(),
        "usage_daily_rows_for_day": usage_rows,
        "usage_daily_rows_read": inputs.usage.height,
        "cli_best_s": min(cli),
        "cli_median_s": statistics.median(cli),
        "render_best_s": min(render),
        "render_median_s": statistics.median(render),
        "html_bytes": len(html.encode()),
        "report_file": str(path),
        "target_s": TARGET_SECONDS,
        "ok": min(cli) < TARGET_SECONDS,
        "preparation": prep,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_1m": os.getloadavg()[0],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report_latest.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
