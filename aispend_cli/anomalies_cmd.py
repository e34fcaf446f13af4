"""`aispend anomalies --date DATE [--json] [--data-dir DIR]`: the day's anomalies, budget
and rate-limit events and data-missing notices, with scores and impact. Read-only: it sends
nothing and writes nothing (the pipeline's alerts asset sends, through the outbox).

Reads the lake under DATA_DIR (`usage_daily`, `latency_by_feature`, `ingest_counts`,
`peaks_by_model`), the settings file named by AISPEND_ALERTS_CONFIG and, when there is a
warehouse, its `alert_feedback` rows. A user mistake (bad
date, no roll-ups, a wrong setting) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import typer

from aispend_cli.errors import EXIT_USER_ERROR, one_line


def _fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _warehouse_feedback(base: str):  # type: ignore[no-untyped-def]
    """Feedback rows of the warehouse (AISPEND_WAREHOUSE_URL, else DATA_DIR/warehouse.sqlite
    when that file exists); None without a warehouse. Read-only."""
    from pathlib import Path

    url = os.environ.get("AISPEND_WAREHOUSE_URL")
    local = Path(base) / "warehouse.sqlite"
    if not url and not local.is_file():
        return None
    from notify import feedback
    from warehouse.db import make_engine

    engine = make_engine(url or f"sqlite:///{local}")
    try:
        frame = feedback.load_if_present(engine)
        return frame.collect().lazy() if frame is not None else None
    finally:
        engine.dispose()


def anomalies_command(date: str, as_json: bool, data_dir: str | None) -> int:
    from decimal import Decimal

    from lake.store import LakeError
    from notify import config
    from notify.compose import clean_text, metric_value, pct, usd
    from notify.daily import evaluate_day

    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        typer.echo(f"error: --date: expected a date YYYY-MM-DD, got {date!r}", err=True)
        return EXIT_USER_ERROR
    base = data_dir or os.environ.get("AISPEND_DATA_DIR", "data")
    try:
        cfg = config.load(data_dir=base)
        result = evaluate_day(base, day, cfg, extra_feedback=_warehouse_feedback(base))
    except (config.ConfigError, LakeError) as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        return EXIT_USER_ERROR
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, default=str))
        return 0
    found = result.anomalies()
    typer.echo(f"{day.isoformat()}: {found.height} anomalies, {result.alerts.height} alerts")
    for r in found.sort("metric", "scope", "series").iter_rows(named=True):
        impact = (
            usd(r["impact_usd"], signed=True)
            if r["impact_usd"] is not None and isinstance(r["impact_usd"], Decimal)
            else _fmt(r["impact"])
        )
        note = f"  [{r['feedback']}]" if r["feedback"] else ""
        typer.echo(
            f"  {r['metric']:<18} {r['scope']:<13} {clean_text(r['series'], 50):<50} "
            f"actual {metric_value(r['metric'], r['actual']):>12}  "
            f"expected {metric_value(r['metric'], r['expected']):>12}  "
            f"impact {impact:>10} ({pct(r['impact_pct'])})  score {_fmt(r['score'], 1)}{note}"
        )
    for r in result.budget_events.iter_rows(named=True):
        label = "total" if r["scope"] == "total" else f"{r['scope']} {clean_text(r['name'])}"
        forecast = f"  forecast {usd(r['forecast_usd'])}" if r["forecast_usd"] is not None else ""
        typer.echo(
            f"  budget {r['kind']:<17} {label}: {usd(r['spend_usd'])} of "
            f"{usd(r['budget_usd'])} ({pct(r['burn'], signed=False)}){forecast}"
        )
    for r in result.rate_limit_events.iter_rows(named=True):
        target = r["model_key"] or f"{r['provider']} (all models)"
        typer.echo(
            f"  {r['kind']:<24} {target}: peak {r['peak']:,} of {r['limit']:,} "
            f"({pct(r['ratio'], signed=False)})"
        )
    for r in result.notices.iter_rows(named=True):
        typer.echo(f"  data missing: {clean_text(r['detail'])} (not scored)")
    counts = result.to_json()["status_counts"]
    typer.echo("  series by status: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0
