"""Reconciliation from the lake, without Dagster (the assets and the benchmark).

`reconcile_month`: `priced_requests` and `provider_usage` of the month's days and
`invoice_lines` of every month written (a correction may come on a later invoice), invoice
columns only. `reconcile_day`: the provisional comparison of one UTC day's priced requests
with the provider usage reported for it (no invoice yet); its lines go to the lake dataset
`reconciliation_daily`, which the daily report reads.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import lake


def month_days(month: dt.date) -> list[dt.date]:
    first = month.replace(day=1)
    days = [first + dt.timedelta(days=n) for n in range(31)]
    return [d for d in days if d.month == first.month]


def reconcile_month(root: str, month: dt.date, engine: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Reconcile, record in the warehouse, write the files; (run, recorded, written)."""
    from reports import reconciliation as recon
    from transforms.reconcile import ReconcileConfig
    from transforms.schema import INVOICE_LINE_SCHEMA

    days = month_days(month)
    priced = lake.scan_dataset(root, "priced_requests", days)
    usage = lake.scan_dataset(root, "provider_usage", days)
    months = lake.list_partitions(root, "invoice_lines")
    invoices = (
        lake.scan_dataset(
            root, "invoice_lines", months, month=True, columns=list(INVOICE_LINE_SCHEMA.names())
        )
        if months
        else None
    )
    if priced is None:
        raise ValueError(f"{root}/lake: no priced_requests in {month:%Y-%m}: run its days first")
    run = recon.run_month(f"{month:%Y-%m}", priced, usage, invoices, ReconcileConfig())
    recon.ensure_tables(engine)
    recorded = recon.record_run(engine, run)
    history = recon.run_history(engine, run.kind, run.period_start, run.scope)
    written = recon.write_outputs(
        run, Path(root) / "reports" / "reconciliation", history, recorded.run_id
    )
    return run, recorded, written


def reconcile_day(root: str, day: dt.date, engine: Any) -> tuple[Any, Any, str]:
    """Reconcile one day provisionally, record it in the warehouse (same inputs, same run)
    and write its lines to the lake; (run, recorded, lake path)."""
    import polars as pl

    from reports import reconciliation as recon
    from transforms.reconcile import ReconcileConfig
    from transforms.schema import PROVIDER_USAGE_SCHEMA

    priced = lake.scan_dataset(root, "priced_requests", [day])
    if priced is None:
        raise ValueError(f"{root}/lake: no priced_requests for {day}: run the day first")
    # A day without any provider report is still reconciled: everything is "not reported".
    usage = lake.scan_dataset(root, "provider_usage", [day])
    if usage is None:
        usage = pl.LazyFrame(schema=PROVIDER_USAGE_SCHEMA)
    run = recon.run_day(day, priced, usage, ReconcileConfig())
    recon.ensure_tables(engine)
    recorded = recon.record_run(engine, run)
    lines = run.lines.sort(
        ["provider", "line_kind", "model_group", "category"], nulls_last=True, maintain_order=True
    )
    path = lake.write_partition(root, "reconciliation_daily", day, lines)
    return run, recorded, path
