"""`aispend demo`: generate realistic data, run the whole pipeline on it, say where it is.

Layout under the data directory (default `./data`, the pipeline's own default, so `make ui`
shows the same runs):

    generated/          the generator's native files (+ canonical/ truth, manifest.json)
    sources.yaml        written here, pointing at generated/
    lake/               Parquet partitions
    warehouse.sqlite    SQLite warehouse
    reports/            daily HTML reports (index.html), reconciliation/ per month
    outbox/             failure notices as .eml when no SMTP server is configured
    dagster_home/       Dagster instance (runs, asset materializations, check results)

Generation is skipped when `generated/manifest.json` already has the same seed, days,
start and requests per day (the generator is deterministic), so a second `make demo` only
reruns the pipeline, which replaces every partition with identical content.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

DEMO_DAYS = 35
DEMO_REQUESTS_PER_DAY = 400
DEMO_SEED = 7
DAGSTER_YAML = """# Written by `aispend demo`: SQLite storage under this directory, no telemetry.
telemetry:
  enabled: false
"""


def _manifest_matches(path: Path, seed: int, days: int, rpd: int, start: dt.date) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return bool(
        data.get("seed") == seed
        and data.get("days") == days
        and data.get("requests_per_day") == rpd
        and data.get("start") == start.isoformat()
    )


def prepare_dagster_home(data_dir: Path) -> Path:
    home = (data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def demo_command(
    data_dir: Path,
    days: int,
    requests_per_day: int,
    seed: int,
    progress: bool,
    echo: Callable[..., None],
) -> int:
    from aispend_cli.run_cmd import (
        check_inputs,
        configure_environment,
        print_summary,
        run_with_progress,
    )
    from datagen.build import DEFAULT_START, generate
    from pipelines.demo_config import write_demo_sources

    data_dir = data_dir.resolve()
    generated = data_dir / "generated"
    start = DEFAULT_START
    end = start + dt.timedelta(days=days - 1)
    began = dt.datetime.now(dt.UTC)
    if _manifest_matches(generated / "manifest.json", seed, days, requests_per_day, start):
        echo(f"aispend demo: reusing {generated} ({days} days, seed {seed})")
        manifest = json.loads((generated / "manifest.json").read_text())
    else:
        echo(f"aispend demo: generating {days} days x {requests_per_day} requests into {generated}")
        manifest = generate(generated, days, requests_per_day, seed, start).data
    config = write_demo_sources(generated, data_dir / "sources.yaml")
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(data_dir))
    configure_environment(config, data_dir)
    check_inputs(start, end)
    echo(f"aispend demo: running the pipeline for {start} .. {end}")
    summary = run_with_progress(start, end, show=progress)
    print_summary(summary, echo)
    seconds = (dt.datetime.now(dt.UTC) - began).total_seconds()
    _compare_with_truth(data_dir, start, end, manifest, echo)
    echo(f"sources    {config}")
    index = data_dir / "reports" / "index.html"
    if index.is_file():
        echo(f"reports    {index}")
    recon = data_dir / "reports" / "reconciliation"
    if recon.is_dir():
        echo(f"           {recon}/ (monthly reconciliation: HTML, CSV, XLSX)")
    home = os.environ["DAGSTER_HOME"]
    echo(f"ui         make ui   (Dagster UI on http://127.0.0.1:3000, DAGSTER_HOME={home})")
    echo(f"aispend demo: done in {seconds:.0f} s")
    return 0 if summary.ok else 1


def _compare_with_truth(
    data_dir: Path,
    start: dt.date,
    end: dt.date,
    manifest: dict[str, object],
    echo: Callable[..., None],
) -> None:
    """The pipeline's total cost next to the generator's truth (they differ by what the
    injected faults quarantined)."""
    import polars as pl

    from lake import scan_dataset

    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    usage = scan_dataset(str(data_dir), "usage_daily", days)
    if usage is None:
        return
    total = usage.select(pl.col("cost_usd").sum()).collect().item()
    totals = manifest.get("totals")
    truth = totals.get("cost_usd") if isinstance(totals, dict) else None
    computed = Decimal(total) if total is not None else None
    if computed is not None:
        echo(f"cost_usd   {computed:.2f} computed from the lake (usage_daily)")
    if truth is not None:
        echo(f"           {Decimal(str(truth)):.2f} generator truth")
