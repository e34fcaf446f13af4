"""Finance reconciliation runs: compute, record with history, export (HTML, CSV, XLSX, JSON).

A run is one reconciliation of a period (a UTC day, provisional; or a calendar month) for all
providers or one (`scope`). Its id is derived from its kind, period, scope and the SHA-256 of
its inputs (the three views after aggregation, and the config), so a re-run with identical
inputs is the same run; new inputs (a restated invoice, late usage) make a new run that
supersedes the current one, and earlier runs stay in `reconciliation_runs` as history.

Exports:
* HTML (`reconciliation.html.j2`, extends the shared `base.html.j2`): per provider the
  bridge from expected to invoiced (or reported) cost by category, the unexplained amount,
  a sign-off block, then drill-down tables of the lines with their evidence. Autoescaped.
* CSV: every line, every column, money as exact decimal text.
* XLSX: `Summary` and `Lines` sheets; money cells are numbers rounded to the cent (Excel has
  only binary floating point) with the exact text beside the difference.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from transforms import reconcile as rc
from warehouse.money import Money, UtcDateTime

CENT = Decimal("0.01")
MONEY_COLUMNS = tuple(
    c for c, t in rc.LINE_SCHEMA.items() if isinstance(t, pl.Decimal) and c.endswith("_usd")
)
TEMPLATE = "reconciliation.html.j2"


# --------------------------------------------------------------------------- the run
@dataclass
class ReconciliationRun:
    kind: str  # daily | monthly
    period_start: dt.date
    period_end: dt.date  # exclusive
    scope: str  # a provider id, or "*"
    inputs_hash: str
    lines: pl.DataFrame  # rc.LINE_SCHEMA
    summary: pl.DataFrame  # rc.summarize
    config: dict[str, Any]
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def run_id(self) -> str:
        period = (
            self.period_start.strftime("%Y-%m")
            if self.kind == "monthly"
            else self.period_start.isoformat()
        )
        return f"{self.kind}-{period}-{self.scope}-{self.inputs_hash[:16]}"

    @property
    def status(self) -> str:
        statuses = set(self.lines["status"].to_list())
        for s in ("unexplained", "variance", "within_tolerance"):
            if s in statuses:
                return s
        return "matched"

    @property
    def has_variances(self) -> bool:
        return self.status in ("variance", "unexplained")

    def total(self, column: str) -> Decimal | None:
        values = [v for v in self.summary[column].to_list() if v is not None]
        return sum(values, Decimal(0)) if values else None


def _frame_digest(frame: pl.DataFrame) -> str:
    ordered = frame.select(sorted(frame.columns))
    ordered = ordered.sort(ordered.columns, nulls_last=True) if ordered.height else ordered
    buffer = io.StringIO()
    ordered.write_csv(buffer)
    return hashlib.sha256(buffer.getvalue().encode()).hexdigest()


@functools.cache
def rules_fingerprint() -> str:
    """The matching and categorization rules' source: a fixed rule makes a new run on the same
    inputs, so the history never shows an old result under a new outcome."""
    return hashlib.sha256(Path(rc.__file__).read_bytes()).hexdigest()


def inputs_hash(frames: dict[str, pl.DataFrame], config: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(f"rules:{rules_fingerprint()}\n".encode())
    for name in sorted(frames):
        h.update(f"{name}:{_frame_digest(frames[name])}\n".encode())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _empty(schema: pl.Schema) -> pl.LazyFrame:
    return pl.LazyFrame(schema=schema)


def run_month(
    month: str,
    priced: pl.LazyFrame,
    usage: pl.LazyFrame | None,
    invoices: pl.LazyFrame | None,
    config: rc.ReconcileConfig | None = None,
    provider: str | None = None,
) -> ReconciliationRun:
    """Reconcile a calendar month; provisional (against usage reports) until an invoice is
    given. `provider` limits the lines to one provider (the inputs stay whole)."""
    from transforms.schema import INVOICE_LINE_SCHEMA, PROVIDER_USAGE_SCHEMA

    cfg = config or rc.ReconcileConfig()
    start, end = rc.month_bounds(month)
    expected = rc.expected_view(priced, cfg).filter(
        pl.col("date").is_between(start, end, closed="left")
    )
    reported = rc.reported_view(usage if usage is not None else _empty(PROVIDER_USAGE_SCHEMA), cfg)
    inv = rc.invoice_view(invoices, cfg) if invoices is not None else None
    exp_df, rep_df, bill_df, src_df = pl.collect_all(
        [
            expected,
            reported.usage.filter(pl.col("date").is_between(start, end, closed="left")),
            reported.bill.filter(pl.col("month") == month),
            reported.sources,
        ]
    )
    inv_lines = (
        invoices.collect() if invoices is not None else pl.DataFrame(schema=INVOICE_LINE_SCHEMA)
    )
    views = rc.ReportedViews(rep_df.lazy(), bill_df.lazy(), src_df.lazy())
    lines = rc.reconcile_month(month, exp_df.lazy(), views, inv, cfg).collect()
    if provider is not None:
        lines = lines.filter(pl.col("provider") == provider)
    summary = rc.summarize(lines.lazy()).collect()
    digest = inputs_hash(
        {
            "expected": exp_df,
            "reported": rep_df,
            "reported_bill": bill_df,
            "sources": src_df,
            "invoices": inv_lines.filter(pl.col("billing_period_start") < end).select(
                INVOICE_LINE_SCHEMA.names()
            ),
        },
        {**cfg.as_dict(), "provider": provider},
    )
    return ReconciliationRun(
        kind="monthly",
        period_start=start,
        period_end=end,
        scope=provider or "*",
        inputs_hash=digest,
        lines=lines,
        summary=summary,
        config=cfg.as_dict(),
    )


def run_day(
    day: dt.date,
    priced: pl.LazyFrame,
    usage: pl.LazyFrame,
    config: rc.ReconcileConfig | None = None,
    provider: str | None = None,
) -> ReconciliationRun:
    """Provisional reconciliation of one UTC day against the usage reports received so far."""
    cfg = config or rc.ReconcileConfig()
    on_day = pl.col("date") == day
    expected = rc.expected_view(priced, cfg).filter(on_day)
    reported = rc.reported_view(usage, cfg)
    exp_df, rep_df, src_df = pl.collect_all(
        [expected, reported.usage.filter(on_day), reported.sources]
    )
    views = rc.ReportedViews(rep_df.lazy(), reported.bill, src_df.lazy())
    lines = rc.reconcile_daily(exp_df.lazy(), views, cfg).collect()
    if provider is not None:
        lines = lines.filter(pl.col("provider") == provider)
    summary = rc.summarize(lines.lazy()).collect()
    digest = inputs_hash(
        {"expected": exp_df, "reported": rep_df, "sources": src_df},
        {**cfg.as_dict(), "provider": provider},
    )
    return ReconciliationRun(
        kind="daily",
        period_start=day,
        period_end=day + dt.timedelta(days=1),
        scope=provider or "*",
        inputs_hash=digest,
        lines=lines,
        summary=summary,
        config=cfg.as_dict(),
    )


# --------------------------------------------------------------------------- warehouse
METADATA = sa.MetaData()
RUNS = sa.Table(
    "reconciliation_runs",
    METADATA,
    sa.Column("run_id", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("scope", sa.String(100), nullable=False),
    sa.Column("inputs_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("superseded_by", sa.String(100)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("expected_usd", Money()),
    sa.Column("reported_usd", Money()),
    sa.Column("invoiced_usd", Money()),
    sa.Column("difference_usd", Money()),
    sa.Column("unexplained_usd", Money()),
    sa.Column("config", sa.Text),
    sa.UniqueConstraint(
        "kind", "period_start", "scope", "inputs_hash", name="uq_reconciliation_runs_inputs"
    ),
)
LINES = sa.Table(
    "reconciliation_lines",
    METADATA,
    sa.Column("run_id", sa.String(100), sa.ForeignKey("reconciliation_runs.run_id")),
    sa.Column("line_no", sa.Integer, nullable=False),
    *[
        sa.Column(
            name,
            Money()
            if isinstance(dtype, pl.Decimal)
            else sa.BigInteger
            if dtype == pl.Int64
            else sa.Date
            if dtype == pl.Date
            else sa.Text,
        )
        for name, dtype in rc.LINE_SCHEMA.items()
    ],
    sa.PrimaryKeyConstraint("run_id", "line_no", name="pk_reconciliation_lines"),
)


def ensure_tables(engine: sa.Engine) -> None:
    """Apply the warehouse migrations (0002_reconciliation creates these tables)."""
    from warehouse.migrate import upgrade

    upgrade(engine)


@dataclass(frozen=True)
class Recorded:
    run_id: str
    created: bool  # False: identical inputs were already reconciled (same run)


def record_run(engine: sa.Engine, run: ReconciliationRun) -> Recorded:
    """Store a run and its lines in one transaction; make it the current run of its period."""
    key = (
        (RUNS.c.kind == run.kind)
        & (RUNS.c.period_start == run.period_start)
        & (RUNS.c.scope == run.scope)
    )
    with engine.begin() as conn:
        existing = conn.execute(
            sa.select(RUNS.c.run_id).where(key & (RUNS.c.inputs_hash == run.inputs_hash))
        ).scalar_one_or_none()
        run_id = existing or run.run_id
        # The newest inputs win: earlier runs of the period point at the current one.
        conn.execute(
            RUNS.update()
            .where(key & (RUNS.c.run_id != run_id) & RUNS.c.superseded_by.is_(None))
            .values(superseded_by=run_id)
        )
        if existing is not None:
            conn.execute(RUNS.update().where(RUNS.c.run_id == run_id).values(superseded_by=None))
            return Recorded(run_id, created=False)
        conn.execute(
            RUNS.insert().values(
                run_id=run_id,
                kind=run.kind,
                period_start=run.period_start,
                period_end=run.period_end,
                scope=run.scope,
                inputs_hash=run.inputs_hash,
                created_at=run.created_at,
                superseded_by=None,
                status=run.status,
                lines=run.lines.height,
                expected_usd=run.total("expected_usd"),
                reported_usd=run.total("reported_total_usd"),
                invoiced_usd=run.total("invoiced_total_usd"),
                difference_usd=run.total("difference_usd"),
                unexplained_usd=run.total("unexplained_usd"),
                config=json.dumps(run.config, sort_keys=True),
            )
        )
        rows = [
            {"run_id": run_id, "line_no": i + 1, **row}
            for i, row in enumerate(run.lines.iter_rows(named=True))
        ]
        if rows:
            conn.execute(LINES.insert(), rows)
    return Recorded(run_id, created=True)


def run_history(
    engine: sa.Engine, kind: str, period_start: dt.date, scope: str
) -> list[dict[str, Any]]:
    """Every run of a period, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(RUNS)
            .where(
                (RUNS.c.kind == kind)
                & (RUNS.c.period_start == period_start)
                & (RUNS.c.scope == scope)
            )
            .order_by(RUNS.c.created_at, RUNS.c.run_id)
        ).mappings()
        return [dict(r) for r in rows]


def stored_lines(engine: sa.Engine, run_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(LINES).where(LINES.c.run_id == run_id).order_by(LINES.c.line_no)
        ).mappings()
        return [dict(r) for r in rows]


# --------------------------------------------------------------------------- JSON / text
def _cents(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENT, rounding=ROUND_HALF_EVEN))


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Exact, without the 18 trailing zeros of the storage scale.
        return format(value.normalize(), "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def line_dicts(run: ReconciliationRun) -> list[dict[str, Any]]:
    """Every line as JSON-ready values: money as exact decimal text, evidence parsed."""
    out = []
    for row in run.lines.iter_rows(named=True):
        item = {k: _exact(v) for k, v in row.items() if k != "evidence"}
        item["breakdown_usd"] = {
            c: _exact(row[f"{c}_usd"]) for c in rc.CATEGORIES if row[f"{c}_usd"]
        }
        for c in rc.CATEGORIES:
            item.pop(f"{c}_usd", None)
        item["evidence"] = json.loads(row["evidence"]) if row["evidence"] else None
        out.append(item)
    return out


def summary_dicts(run: ReconciliationRun) -> list[dict[str, Any]]:
    out = []
    for row in run.summary.iter_rows(named=True):
        item = {k: _exact(v) for k, v in row.items() if not k.endswith("_usd")}
        for k in ("expected_usd", "reported_total_usd", "invoiced_total_usd", "difference_usd"):
            item[k] = _exact(row[k])
        item["by_category_usd"] = {
            c: _exact(row[f"{c}_usd"]) for c in rc.CATEGORIES if row[f"{c}_usd"]
        }
        item["unexplained_usd"] = _exact(row["unexplained_usd"])
        out.append(item)
    return out


def to_json(run: ReconciliationRun, run_id: str | None = None) -> dict[str, Any]:
    return {
        "run_id": run_id or run.run_id,
        "kind": run.kind,
        "period_start": run.period_start.isoformat(),
        "period_end": run.period_end.isoformat(),
        "scope": run.scope,
        "inputs_hash": run.inputs_hash,
        "status": run.status,
        "summary": summary_dicts(run),
        "lines": line_dicts(run),
    }


def summary_text(run: ReconciliationRun, run_id: str | None = None) -> list[str]:
    """The console summary: one line per provider, then the lines that need a look."""
    out = [
        f"reconciliation {run.kind} {run.period_start}..{run.period_end} "
        f"(run {run_id or run.run_id}): {run.status}",
        f"{'provider':<12}{'expected':>14}{'reported':>14}{'invoiced':>14}"
        f"{'difference':>13}{'unexplained':>13}  status",
    ]
    for r in run.summary.iter_rows(named=True):
        out.append(
            f"{r['provider']:<12}{_cents(r['expected_usd']) or '-':>14}"
            f"{_cents(r['reported_total_usd']) or '-':>14}"
            f"{_cents(r['invoiced_total_usd']) or '-':>14}"
            f"{_cents(r['difference_usd']) or '-':>13}{_cents(r['unexplained_usd']) or '-':>13}"
            f"  {r['status']}"
        )
        cats = [
            f"{c} {_cents(r[f'{c}_usd'])}"
            for c in rc.CATEGORIES
            if c != "unexplained" and r[f"{c}_usd"] and r[f"{c}_usd"].quantize(CENT) != 0
        ]
        if cats:
            out.append("    " + ", ".join(cats))
    flagged = run.lines.filter(pl.col("status").is_in(["variance", "unexplained"]))
    for r in flagged.iter_rows(named=True):
        what = r["model_group"] or r["line_kind"]
        amount = _cents(r["difference_usd"])
        if amount is None:
            # A line with no dollar amount (an invoice currency without a rate): its own.
            ev = json.loads(r["evidence"] or "{}")
            amount = f"{ev.get('currency')} {ev.get('amount_in_currency')}: {ev.get('reason')}"
        out.append(
            f"  {r['status']:<12}{r['provider']}/{what} {r['period_start']}: "
            f"{r['category']} {amount}"
        )
    return out


# --------------------------------------------------------------------------- CSV / XLSX
def write_csv(run: ReconciliationRun, path: Path) -> Path:
    from reports.render import write_atomic

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run_id", *run.lines.columns])
    for row in run.lines.iter_rows():
        writer.writerow([run.run_id, *("" if v is None else _exact(v) for v in row)])
    return write_atomic(path, buffer.getvalue())


def write_xlsx(run: ReconciliationRun, path: Path) -> Path:
    import os
    import tempfile

    import xlsxwriter  # type: ignore[import-untyped]

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        book = xlsxwriter.Workbook(tmp, {"strings_to_formulas": False, "strings_to_urls": False})
        money = book.add_format({"num_format": "#,##0.00"})
        bold = book.add_format({"bold": True})

        def put(sheet: Any, r: int, c: int, value: Any, is_money: bool) -> None:
            if value is None:
                return
            if is_money:
                # Excel has only binary floats: the cell shows cents, the exact text is
                # in the CSV and in the `difference_usd_exact` column.
                sheet.write_number(r, c, float(Decimal(value).quantize(CENT)), money)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, str(_exact(value)))

        summary = book.add_worksheet("Summary")
        scols = run.summary.columns
        for c, name in enumerate(scols):
            summary.write_string(0, c, name, bold)
        for r, row in enumerate(run.summary.iter_rows(), start=1):
            for c, value in enumerate(row):
                put(summary, r, c, value, scols[c].endswith("_usd"))
        lines = book.add_worksheet("Lines")
        lcols = [*run.lines.columns, "difference_usd_exact"]
        for c, name in enumerate(lcols):
            lines.write_string(0, c, name, bold)
        for r, named in enumerate(run.lines.iter_rows(named=True), start=1):
            for c, name in enumerate(run.lines.columns):
                put(lines, r, c, named[name], name in MONEY_COLUMNS)
            exact = named["difference_usd"]
            if exact is not None:
                lines.write_string(r, len(lcols) - 1, str(_exact(exact)))
        lines.autofilter(0, 0, max(run.lines.height, 1), len(lcols) - 1)
        book.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- HTML
def _context(
    run: ReconciliationRun, history: Sequence[dict[str, Any]], run_id: str | None
) -> dict[str, Any]:
    providers = []
    for row in run.summary.iter_rows(named=True):
        theirs = row["invoiced_total_usd"] if row["has_invoice"] else row["reported_total_usd"]
        bridge = [
            {"category": c, "amount": row[f"{c}_usd"]}
            for c in rc.CATEGORIES
            if c != "unexplained" and row[f"{c}_usd"]
        ]
        lines = [d for d in line_dicts(run) if d["provider"] == row["provider"]]
        providers.append(
            {
                "provider": row["provider"],
                "status": row["status"],
                "expected": row["expected_usd"],
                "reported": row["reported_total_usd"],
                "invoiced": row["invoiced_total_usd"],
                "theirs_label": "invoiced" if row["has_invoice"] else "reported",
                "theirs": theirs,
                "difference": row["difference_usd"],
                "unexplained": row["unexplained_usd"],
                "bridge": bridge,
                "flagged": [d for d in lines if d["status"] in ("variance", "unexplained")],
                "lines": lines,
            }
        )
    return {
        "run": run,
        "run_id": run_id or run.run_id,
        "providers": providers,
        "history": list(history),
        "categories": rc.CATEGORIES,
        "generated_at": run.created_at.strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_html(
    run: ReconciliationRun,
    history: Sequence[dict[str, Any]] = (),
    run_id: str | None = None,
) -> str:
    from reports.render import environment

    return environment().get_template(TEMPLATE).render(**_context(run, history, run_id))


def report_name(run: ReconciliationRun) -> str:
    period = (
        run.period_start.strftime("%Y-%m")
        if run.kind == "monthly"
        else run.period_start.isoformat()
    )
    scope = "" if run.scope == "*" else f"-{run.scope}"
    return f"reconciliation-{period}{scope}"


def write_outputs(
    run: ReconciliationRun,
    out_dir: Path,
    history: Sequence[dict[str, Any]] = (),
    run_id: str | None = None,
) -> dict[str, Path]:
    from reports.render import write_atomic

    name = report_name(run)
    return {
        "html": write_atomic(out_dir / f"{name}.html", render_html(run, history, run_id)),
        "csv": write_csv(run, out_dir / f"{name}.csv"),
        "xlsx": write_xlsx(run, out_dir / f"{name}.xlsx"),
    }
