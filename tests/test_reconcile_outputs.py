"""Reconciliation outputs: `aispend reconcile` on a lake, run history in the warehouse
(SQLite and PostgreSQL), HTML escaping, CSV and XLSX exports, one-line user errors."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
import zipfile
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import lake
from aispend_cli.main import app
from datagen import billing, org
from datagen.traffic import build_attempts
from pricing_catalog.catalog import Catalog
from reports import reconciliation as recon
from sources.ingest import ingest_file
from transforms import reconcile as rc
from transforms.reprice import reprice
from transforms.schema import INVOICE_LINE_SCHEMA

START = dt.date(2025, 10, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(31)]
MONTH = "2025-10"
REPORTS = (
    ("openai_usage", "openai/usage-completions-*.json"),
    ("openai_costs", "openai/costs-*.json"),
    ("anthropic_usage", "anthropic/usage-*.json"),
    ("anthropic_cost", "anthropic/cost-*.json"),
    ("aws_cur", "aws/cur-*.csv"),
    ("gcp_billing", "google/billing-*.jsonl"),
)
CONFIG_YAML = "\n".join(
    [
        "tolerance:",
        '  default: {abs_usd: "0.01", rel: "0.001"}',
        "known_accounts:",
        "  openai: [" + ", ".join(billing.project_id(t) for t in org.TEAMS) + "]",
        "  anthropic: [" + ", ".join(billing.workspace_id(t) for t in org.TEAMS) + "]",
        "",
    ]
)


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A small October 2025 as the pipeline leaves it in the lake, plus the billing frames."""
    out = tmp_path_factory.mktemp("month")
    attempts, _ = build_attempts(17, START, len(DAYS), 20, ())
    priced = reprice(attempts.lazy(), Catalog.load([])).collect()
    reports = billing.write_reports(out / "raw", priced, DAYS, (("openai", Decimal("4.20")),))
    usage = pl.concat(
        ingest_file(kind, f).frames["provider_usage"]
        for kind, pattern in REPORTS
        for f in sorted((out / "raw").glob(pattern))
    )
    invoices = pl.concat(
        ingest_file("invoice", f).frames["invoices"]
        for f in sorted((out / "raw" / "invoices").glob("*.csv"))
    )
    base = out / "data"
    truth = priced.select([c for c in priced.columns if not c.startswith("_")])
    for day, part in truth.group_by(pl.col("started_at").dt.date().alias("d")):
        lake.write_partition(base, "priced_requests", day[0], part)
    for day, part in usage.group_by("date"):
        lake.write_partition(base, "provider_usage", day[0], part)
    (base / "reconcile.yaml").write_text(CONFIG_YAML)
    return {
        "base": base,
        "priced": truth,
        "usage": usage,
        "invoices": invoices,
        "mismatch": reports.mismatches[0],
    }


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["reconcile", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_month_history_and_restatement(month: dict[str, object], tmp_path: Path) -> None:
    base = Path(str(month["base"]))
    invoices = month["invoices"]
    assert isinstance(invoices, pl.DataFrame)
    mismatch = month["mismatch"]
    assert isinstance(mismatch, dict)
    out = tmp_path / "reports"
    common = ("--month", MONTH, "--data-dir", str(base), "--out", str(out))
    # Before the invoice lands: provisional against the usage reports, all within tolerance.
    code, stdout, _ = invoke(*common)
    assert code == 0, stdout
    assert "new run" in stdout
    code, stdout, _ = invoke(*common)
    assert code == 0 and "same inputs as run" in stdout

    # The invoice lands, with a line $4.20 too high: a variance remains (exit 3).
    lake.write_partition(base, "invoice_lines", MONTH, invoices, month=True)
    code, stdout, _ = invoke(*common, "--json")
    assert code == 3
    payload = json.loads(stdout)
    assert payload["new_run"] is True
    flagged = [ln for ln in payload["lines"] if ln["status"] in ("variance", "unexplained")]
    found = [(ln["provider"], ln["category"], ln["breakdown_usd"]["unexplained"]) for ln in flagged]
    assert found == [("openai", "unexplained", "4.2")]
    (line,) = flagged
    for key in ("expected_usd", "reported_usd", "invoiced_usd", "difference_usd"):
        assert line[key] is not None
    openai = next(s for s in payload["summary"] if s["provider"] == "openai")
    assert Decimal(openai["unexplained_usd"]) == Decimal("4.20")

    # The provider restates the invoice: a correction invoice takes the $4.20 back.
    correction = pl.DataFrame(
        [
            {
                **{k: None for k in INVOICE_LINE_SCHEMA.names()},
                "invoice_id": "INV-OPENAI-202510-0002",
                "provider": "openai",
                "billing_period_start": START,
                "billing_period_end": dt.date(2025, 11, 1),
                "line_id": "INV-OPENAI-202510-0002-0001",
                "description": "Correction",
                "charge_category": "usage",
                "model": invoices.filter(pl.col("line_id") == mismatch["line_id"])["model"].item(),
                "amount_usd": Decimal("-4.20"),
                "currency": "USD",
                "is_correction": True,
                "corrects_invoice_id": mismatch["invoice_id"],
            }
        ],
        schema=INVOICE_LINE_SCHEMA,
    )
    restated = pl.concat([invoices.select(INVOICE_LINE_SCHEMA.names()), correction])
    lake.write_partition(base, "invoice_lines", "2025-11", restated.tail(1), month=True)
    code, stdout, _ = invoke(*common, "--provider", "openai")
    assert code == 0, stdout
    code, stdout, _ = invoke(*common)
    assert code == 0, stdout

    engine = sa.create_engine(f"sqlite:///{base / 'warehouse.sqlite'}")
    history = recon.run_history(engine, "monthly", START, "*")
    # provisional, with the invoice, restated: three runs, only the last one current.
    assert len(history) == 3
    assert [h["superseded_by"] is None for h in history] == [False, False, True]
    assert history[0]["superseded_by"] == history[1]["run_id"]
    assert history[1]["superseded_by"] == history[2]["run_id"]
    assert [h["status"] for h in history][1] == "unexplained"
    assert Decimal(history[1]["unexplained_usd"]) == Decimal("4.20")
    assert Decimal(history[2]["unexplained_usd"]) == 0
    lines = recon.stored_lines(engine, history[2]["run_id"])
    assert any(ln["category"] == "restated_invoice" for ln in lines)
    # Money comes back exact from the warehouse.
    for ln in lines:
        parts = sum((ln[f"{c}_usd"] for c in rc.CATEGORIES), Decimal(0))
        assert parts == ln["difference_usd"]

    html = (out / "reconciliation-2025-10.html").read_text()
    assert "Sign-off" in html and history[2]["run_id"] in html
    assert "restated" in html
    with (out / "reconciliation-2025-10.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(lines)
    assert {r["run_id"] for r in rows} == {history[2]["run_id"]}
    with zipfile.ZipFile(out / "reconciliation-2025-10.xlsx") as book:
        names = book.namelist()
        workbook = book.read("xl/workbook.xml").decode()
    assert "xl/worksheets/sheet2.xml" in names
    assert 'name="Summary"' in workbook and 'name="Lines"' in workbook


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--month", "2025-13"), "--month: expected YYYY-MM"),
        (("--month", "2024-01"), "no priced_requests or provider_usage for 2024-01"),
        (("--month", MONTH, "--provider", "nobody"), "--provider: no data for 'nobody'"),
        (("--month", MONTH, "--config", "/nonexistent.yaml"), "/nonexistent.yaml: cannot read"),
    ],
)
def test_cli_user_errors(
    month: dict[str, object], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "out"
    code, _stdout, stderr = invoke(*args, "--data-dir", str(month["base"]), "--out", str(out))
    assert code == 2
    assert stderr.count("\n") == 1 and message in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    from transforms.canonical_reader import InputError
    from transforms.reconcile_config import load_config

    path = tmp_path / "r.yaml"
    path.write_text("tolerance:\n  openai: {abs_usd: lots}\n")
    with pytest.raises(InputError, match=r"r.yaml: tolerance.openai.abs_usd: expected a number"):
        load_config(path)
    path.write_text("tolerance:\n  default: {abs_usd: '0.5'}\n  aws: {rel: '0.01'}\n")
    cfg = load_config(path)
    # A provider's tolerance starts from the default's values.
    assert cfg.tolerance("aws") == rc.Tolerance(abs_usd=Decimal("0.5"), rel=Decimal("0.01"))
    assert cfg.tolerance("openai") == rc.Tolerance(abs_usd=Decimal("0.5"))
    path.write_text('fx_rates:\n  eur: {"2025-10": "1.0870"}\n')
    assert load_config(path).fx_rates == {"EUR": {"2025-10": Decimal("1.0870")}}
    for bad, message in (
        ('fx_rates:\n  EUR: {"2025-10": "0"}\n', r"fx_rates.EUR.2025-10: a rate must be > 0"),
        ("fx_rates:\n  EUR: {2025-10-01: 1.1}\n", r"fx_rates.EUR.2025-10-01: expected a month"),
        ('fx_rates:\n  euro: {"2025-10": "1.1"}\n', r"fx_rates.euro: expected a 3-letter"),
        ('fx_rates:\n  EUR: {"2025-10": "abc"}\n', r"fx_rates.EUR.2025-10: expected a number"),
    ):
        path.write_text(bad)
        with pytest.raises(InputError, match=message):
            load_config(path)


def test_invoice_in_another_currency_outputs(month: dict[str, object], tmp_path: Path) -> None:
    """An invoice in GBP: without a rate, a `currency` variance in its own currency in every
    output; with the rate from the settings file, converted and within tolerance."""
    from transforms.reconcile_config import load_config

    priced, usage, invoices = month["priced"], month["usage"], month["invoices"]
    assert isinstance(priced, pl.DataFrame) and isinstance(usage, pl.DataFrame)
    assert isinstance(invoices, pl.DataFrame)
    gbp = pl.col("provider") == "deepseek"
    # The provider bills in pounds at 1.25 USD per GBP: 0.8 GBP per dollar, to the penny.
    per_usd = pl.lit(Decimal("0.8"), pl.Decimal(38, 1))
    billed = invoices.with_columns(
        pl.when(gbp).then(pl.lit("GBP")).otherwise(pl.col("currency")).alias("currency"),
        *[
            pl.when(gbp)
            .then((pl.col(c) * per_usd).round(2 if c == "amount_usd" else 18))
            .otherwise(pl.col(c))
            .alias(c)
            for c in ("amount_usd", "unit_price_usd")
        ],
    )
    pounds = sum(billed.filter(gbp)["amount_usd"].to_list(), Decimal(0))
    run = recon.run_month(MONTH, priced.lazy(), usage.lazy(), billed.lazy(), provider="deepseek")
    assert run.has_variances
    (line,) = run.lines.filter(pl.col("status") == "variance").iter_rows(named=True)
    assert line["category"] == "currency" and line["invoiced_usd"] is None
    reason = f"no rate for GBP {MONTH}"
    assert any(reason in t and f"GBP {pounds.normalize():f}" in t for t in recon.summary_text(run))
    paths = recon.write_outputs(run, tmp_path)
    assert reason in paths["html"].read_text()
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert [r["category"] for r in rows if r["status"] == "variance"] == ["currency"]
    (item,) = [i for i in recon.to_json(run)["lines"] if i["category"] == "currency"]
    assert item["evidence"]["amount_in_currency"] == str(pounds)
    path = tmp_path / "r.yaml"
    path.write_text(CONFIG_YAML + f'fx_rates:\n  GBP: {{"{MONTH}": "1.25"}}\n')
    converted = recon.run_month(
        MONTH, priced.lazy(), usage.lazy(), billed.lazy(), load_config(path), "deepseek"
    )
    assert not converted.has_variances
    assert converted.total("invoiced_total_usd") == pounds * Decimal("1.25")
    assert converted.total("currency_usd") != 0
    assert converted.inputs_hash != run.inputs_hash  # the rate is part of what was signed


def test_html_escapes_strings_from_logs(month: dict[str, object], tmp_path: Path) -> None:
    priced = month["priced"]
    usage = month["usage"]
    assert isinstance(priced, pl.DataFrame) and isinstance(usage, pl.DataFrame)
    evil = '<script>alert("x")</script>'
    # A report line for a model nobody logged, named with markup: it must show, escaped.
    aws_rows = usage.filter(pl.col("provider") == "aws", pl.col("model").is_not_null())
    extra = (
        aws_rows.sort("cost_usd", descending=True)
        .head(1)
        .with_columns(pl.lit(evil).alias("model"), pl.lit(evil).alias("model_canonical"))
    )
    run = recon.run_month(MONTH, priced.lazy(), pl.concat([usage, extra]).lazy(), None)
    assert run.has_variances
    html = recon.render_html(run)
    assert evil not in html
    assert "&lt;script&gt;" in html
    # Usage we never logged: its own line with the exact amount, never folded into a total.
    (line,) = run.lines.filter(pl.col("status") == "variance").iter_rows(named=True)
    assert line["category"] == "missing_gateway_logs" and line["expected_usd"] == 0
    assert line["missing_gateway_logs_usd"] == extra["cost_usd"].item()
    assert json.loads(line["evidence"])["reported_models"] == evil


def test_daily_provisional_run(month: dict[str, object]) -> None:
    priced, usage = month["priced"], month["usage"]
    assert isinstance(priced, pl.DataFrame) and isinstance(usage, pl.DataFrame)
    day = DAYS[4]
    run = recon.run_day(day, priced.lazy(), usage.lazy())
    assert run.kind == "daily" and run.run_id.startswith(f"daily-{day.isoformat()}-*-")
    assert not run.has_variances
    assert set(run.lines["period_start"]) == {day}
    # Without one provider's usage for that day, its expected cost has no counterpart.
    missing = usage.filter(~((pl.col("provider") == "google") & (pl.col("date") == day)))
    partial = recon.run_day(day, priced.lazy(), missing.lazy())
    assert partial.inputs_hash != run.inputs_hash
    google = partial.lines.filter(pl.col("provider") == "google")
    assert google.height > 0
    # We logged tokens the provider did not report: unexplained, each to the last digit.
    assert google["unexplained_usd"].to_list() == (-google["expected_usd"]).to_list()
    big = google.filter(pl.col("difference_usd").abs() > pl.col("tolerance_usd"))
    assert big.height > 0 and set(big["status"]) == {"unexplained"}


@pytest.mark.postgres
def test_runs_on_postgres_keep_history_and_exact_money(month: dict[str, object]) -> None:
    priced, usage, invoices = month["priced"], month["usage"], month["invoices"]
    assert isinstance(priced, pl.DataFrame) and isinstance(usage, pl.DataFrame)
    assert isinstance(invoices, pl.DataFrame)
    schema = f"test_recon_{uuid.uuid4().hex[:10]}"
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        recon.ensure_tables(engine)  # the Alembic migrations, 0002 included
        first = recon.run_month(MONTH, priced.lazy(), usage.lazy(), invoices.lazy())
        assert recon.record_run(engine, first).created
        assert not recon.record_run(engine, first).created
        # New inputs (here: one provider's invoice withdrawn) make a new, current run.
        fixed = invoices.filter(pl.col("provider") != "deepseek")
        second = recon.run_month(MONTH, priced.lazy(), usage.lazy(), fixed.lazy())
        assert recon.record_run(engine, second).created
        history = recon.run_history(engine, "monthly", START, "*")
        assert [h["run_id"] for h in history] == [first.run_id, second.run_id]
        assert history[0]["superseded_by"] == second.run_id
        stored = recon.stored_lines(engine, first.run_id)
        assert [ln["difference_usd"] for ln in stored] == first.lines["difference_usd"].to_list()
        assert Decimal(history[0]["unexplained_usd"]) == Decimal("4.20")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_csv_is_exact(month: dict[str, object], tmp_path: Path) -> None:
    priced, usage, invoices = month["priced"], month["usage"], month["invoices"]
    assert isinstance(priced, pl.DataFrame) and isinstance(usage, pl.DataFrame)
    assert isinstance(invoices, pl.DataFrame)
    run = recon.run_month(MONTH, priced.lazy(), usage.lazy(), invoices.lazy())
    path = recon.write_csv(run, tmp_path / "r.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    total = sum((Decimal(r["difference_usd"]) for r in rows), Decimal(0))
    assert total == sum(run.lines["difference_usd"].to_list(), Decimal(0))
    assert total == Decimal(run.summary["difference_usd"].sum())
