"""`aispend reconcile --month YYYY-MM`: expected vs provider usage vs invoices, from the lake.

Reads `priced_requests` and `provider_usage` (the month's days) and `invoice_lines` (every
month: a correction may come on a later invoice) from `{data_dir}/lake`, reconciles
(`reports.reconciliation.run_month`), records the run in the warehouse (history kept; the
same inputs are the same run), writes HTML/CSV/XLSX under
`{data_dir}/reports/reconciliation/` (or `--out`) and prints the summary, or with `--json`
every line. Exit codes: 0 every line within tolerance, 3 variances remain, 2 a user mistake
(one line on stderr, nothing written).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from transforms.canonical_reader import InputError
from transforms.schema import INVOICE_LINE_SCHEMA

EXIT_OK = 0
EXIT_VARIANCES = 3
CONFIG_ENV = "AISPEND_RECONCILE_CONFIG"
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def parse_month(value: str) -> str:
    if not _MONTH.match(value or ""):
        raise InputError(f"--month: expected YYYY-MM, got {value!r}")
    return value


def _days(month: str) -> list[dt.date]:
    from transforms.reconcile import month_bounds

    start, end = month_bounds(month)
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def load_inputs(
    base: str, month: str
) -> tuple[pl.LazyFrame, pl.LazyFrame | None, pl.LazyFrame | None]:
    from lake import LakeError, list_partitions, scan_dataset

    days = _days(month)
    try:
        priced = scan_dataset(base, "priced_requests", days)
        usage = scan_dataset(base, "provider_usage", days)
        months = list_partitions(base, "invoice_lines")
        # Only the invoice columns: months written by different versions may differ in the
        # lineage columns they carry.
        invoices = (
            scan_dataset(
                base,
                "invoice_lines",
                months,
                month=True,
                columns=list(INVOICE_LINE_SCHEMA.names()),
            )
            if months
            else None
        )
    except LakeError as exc:
        raise InputError(str(exc)) from None
    if priced is None and usage is None:
        raise InputError(
            f"{base}/lake: no priced_requests or provider_usage for {month} "
            "(materialize the month first: aispend run)"
        )
    if priced is None:
        from transforms.schema import CANONICAL_SCHEMA

        priced = pl.LazyFrame(schema=CANONICAL_SCHEMA).with_columns(
            pl.lit(None, pl.Decimal(38, 18)).alias("cost_usd"),
            pl.lit(None, pl.String).alias("unpriced_reason"),
        )
    return priced, usage, invoices


def _engine(base: str) -> sa.Engine:
    from warehouse import make_engine

    default = f"sqlite:///{Path(base) / 'warehouse.sqlite'}"
    return make_engine(os.environ.get("AISPEND_WAREHOUSE_URL") or default)


def reconcile_command(
    month: str,
    provider: str | None,
    as_json: bool,
    data_dir: str | None,
    config_path: Path | None,
    out: Path | None,
    echo: Callable[[str], None],
) -> int:
    from reports import reconciliation as recon
    from transforms.reconcile import ReconcileConfig
    from transforms.reconcile_config import load_config

    month = parse_month(month)
    base = str(data_dir or os.environ.get("AISPEND_DATA_DIR") or "data")
    path = config_path or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is None and (Path(base) / "reconcile.yaml").is_file():
        path = Path(base) / "reconcile.yaml"
    config = load_config(path) if path is not None else ReconcileConfig()
    priced, usage, invoices = load_inputs(base, month)
    run = recon.run_month(month, priced, usage, invoices, config, provider)
    if provider is not None and run.lines.is_empty():
        full = recon.run_month(month, priced, usage, invoices, config)
        known = ", ".join(sorted(set(full.lines["provider"].to_list()))) or "none"
        raise InputError(f"--provider: no data for {provider!r} in {month} (known: {known})")
    engine = _engine(base)
    recon.ensure_tables(engine)
    recorded = recon.record_run(engine, run)
    history = recon.run_history(engine, run.kind, run.period_start, run.scope)
    written = recon.write_outputs(
        run, out or Path(base) / "reports" / "reconciliation", history, recorded.run_id
    )
    if as_json:
        payload = recon.to_json(run, recorded.run_id)
        payload["new_run"] = recorded.created
        payload["files"] = {k: str(v) for k, v in written.items()}
        echo(json.dumps(payload, indent=2))
    else:
        for line in recon.summary_text(run, recorded.run_id):
            echo(line)
        echo(f"{'new run' if recorded.created else 'same inputs as run'} {recorded.run_id}")
        for kind, file in written.items():
            echo(f"wrote {kind:<5} {file}")
    return EXIT_VARIANCES if run.has_variances else EXIT_OK
