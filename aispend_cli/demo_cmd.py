"""`aispend demo`: generate realistic data, run the whole pipeline on it, say where it is.

Layout under the data directory (default `./data`, the pipeline's own default, so `make ui`
shows the same runs):

    generated/          the generator's native files (+ canonical/ truth, manifest.json)
    sources.yaml        written here, pointing at generated/
    alerts.yaml         alert settings scaled to the demo (unless AISPEND_ALERTS_CONFIG is set)
    lake/               Parquet partitions
    warehouse.sqlite    SQLite warehouse
    reports/            daily HTML reports (index.html), reconciliation/ per month
    outbox/             alert emails and failure notices as .eml when no SMTP server is
                        configured
    dagster_home/       Dagster instance (runs, asset materializations, check results)

The generated data carries one injected spend spike (`DEMO_SPIKE`: a feature's traffic
multiplied on the last day), so the demo shows a real anomaly with its alert email. The demo
replays fixed past dates, so it sets AISPEND_ALERTS_TODAY to the day after its last day:
alerts are then judged as a nightly run would judge them (the last days' alerts are sent,
older ones are recorded as backfill and suppressed), instead of all being too old to mail.

Generation is skipped when `generated/manifest.json` already has the same seed, days,
start, requests per day and injected spike (the generator is deterministic), so a second
`make demo` only reruns the pipeline, which replaces every partition with identical content
and sends no alert twice.
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
# (feature, traffic multiplier) on the last demo day: well above the default gates of
# docs/alerts.md ($10 and 25% over the seasonal baseline) at the demo's traffic.
DEMO_SPIKE = ("code-review", 4.0)
DAGSTER_YAML = """# Written by `aispend demo`: SQLite storage under this directory, no telemetry.
telemetry:
  enabled: false
"""


def _manifest_matches(
    path: Path, seed: int, days: int, rpd: int, start: dt.date, spikes: list[dict[str, object]]
) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    faults = data.get("faults")
    spec = faults.get("spec") if isinstance(faults, dict) else None
    return bool(
        data.get("seed") == seed
        and data.get("days") == days
        and data.get("requests_per_day") == rpd
        and data.get("start") == start.isoformat()
        and isinstance(spec, dict)
        and spec.get("spikes") == spikes
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
    from datagen.faults import FaultSpec
    from datagen.traffic import Spike
    from pipelines.demo_config import write_demo_alerts, write_demo_sources

    data_dir = data_dir.resolve()
    generated = data_dir / "generated"
    start = DEFAULT_START
    end = start + dt.timedelta(days=days - 1)
    faults = FaultSpec(spikes=(Spike(DEMO_SPIKE[0], end, DEMO_SPIKE[1]),))
    spikes = faults.describe()["spikes"]
    began = dt.datetime.now(dt.UTC)
    if _manifest_matches(generated / "manifest.json", seed, days, requests_per_day, start, spikes):
        echo(f"aispend demo: reusing {generated} ({days} days, seed {seed})")
        manifest = json.loads((generated / "manifest.json").read_text())
    else:
        echo(f"aispend demo: generating {days} days x {requests_per_day} requests into {generated}")
        echo(f"aispend demo: injecting a spike: {DEMO_SPIKE[0]} x{DEMO_SPIKE[1]:g} on {end}")
        manifest = generate(generated, days, requests_per_day, seed, start, faults).data
    config = write_demo_sources(generated, data_dir / "sources.yaml")
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(data_dir))
    configure_environment(config, data_dir)
    if not os.environ.get("AISPEND_ALERTS_CONFIG"):
        alerts = write_demo_alerts(data_dir / "alerts.yaml")
        os.environ["AISPEND_ALERTS_CONFIG"] = str(alerts)
    # Judge alerts as the nightly run after the last demo day would (see the docstring).
    os.environ["AISPEND_ALERTS_TODAY"] = (end + dt.timedelta(days=1)).isoformat()
    check_inputs(start, end)
    echo(f"aispend demo: running the pipeline for {start} .. {end}")
    summary = run_with_progress(start, end, show=progress)
    print_summary(summary, echo)
    seconds = (dt.datetime.now(dt.UTC) - began).total_seconds()
    _compare_with_truth(data_dir, start, end, manifest, echo)
    echo(f"sources    {config}")
    echo(f"alerts     {os.environ['AISPEND_ALERTS_CONFIG']}")
    index = data_dir / "reports" / "index.html"
    if index.is_file():
        echo(f"reports    {index}")
    recon = data_dir / "reports" / "reconciliation"
    if recon.is_dir():
        echo(f"           {recon}/ (monthly reconciliation: HTML, CSV, XLSX)")
    _alerts_summary(data_dir, summary.warehouse_url, end, echo)
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


def _alerts_summary(
    data_dir: Path, warehouse_url: str, last: dt.date, echo: Callable[..., None]
) -> None:
    """What the alerting did: anomalies of the last day, and the alert emails by status."""
    import polars as pl
    import sqlalchemy as sa

    from lake import has_partition, read_partition

    if has_partition(str(data_dir), "anomaly_scores", last):
        scores = read_partition(str(data_dir), "anomaly_scores", last)
        flagged = scores.filter(pl.col("is_anomaly").fill_null(False))
        shown = ", ".join(
            f"{r['metric']} {r['scope']}={r['series']}" for r in flagged.head(3).to_dicts()
        )
        echo(f"anomalies  {flagged.height} on {last}" + (f" ({shown})" if shown else ""))
    engine = sa.create_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alert_outbox"):
                return
            rows = conn.execute(
                sa.text("SELECT status, COUNT(*) FROM alert_outbox GROUP BY status ORDER BY status")
            ).all()
    finally:
        engine.dispose()
    counts = ", ".join(f"{n} {status}" for status, n in rows) or "none"
    echo(f"alerts     {counts} (suppressed: backfill, too old to mail when computed)")
    outbox = data_dir / "outbox"
    emails = sorted(outbox.glob("*.eml")) if outbox.is_dir() else []
    if emails:
        echo(f"           {outbox}/ ({len(emails)} .eml file(s): open with any mail client)")
