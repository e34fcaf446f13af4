"""The `aispend` command line."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from aispend_cli.errors import user_errors

app = typer.Typer(
    help="aispend: what your AI APIs really cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
catalog_app = typer.Typer(help="Inspect and check the pricing catalog.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")

CatalogOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--catalog",
        help="Extra catalog directory (repeatable): *.yaml curated, overrides/*.yaml win.",
    ),
]


def _parse_date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        # The same one-line form as every other user mistake (not click's boxed panel).
        typer.echo(f"error: {option}: expected a date YYYY-MM-DD, got {value!r}", err=True)
        raise typer.Exit(2) from None


def _load_catalog(dirs: list[Path] | None):  # type: ignore[no-untyped-def]
    from pricing_catalog.catalog import Catalog

    return Catalog.load(dirs)


@app.command()
def reprice(
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT", help="Canonical requests: .jsonl, .csv or .parquet")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv")],
    catalog: CatalogOpt = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Price every request as of this date (YYYY-MM-DD)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Reprice a file of canonical requests and print a summary."""
    from aispend_cli.reprice_cmd import run_reprice

    price_at = _parse_date(at, "--at") if at else None
    with user_errors():
        summary = run_reprice(input_path, out, _load_catalog(catalog), price_at)
    _print_summary(summary, as_json)


def _print_summary(summary: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(f"rows            {summary['rows']:>12,}")
    typer.echo(f"priced          {summary['priced']:>12,}")
    typer.echo(f"unpriced        {summary['unpriced']:>12,}")
    for reason, count in summary["unpriced_by_reason"].items():  # type: ignore[attr-defined]
        typer.echo(f"  {reason:<28}{count:>10,}")
    typer.echo(
        f"list cost USD   {summary['list_cost_usd_cents']:>12}   (exact {summary['list_cost_usd']})"
    )
    typer.echo(f"cost USD        {summary['cost_usd_cents']:>12}   (exact {summary['cost_usd']})")
    typer.echo(f"written to      {summary['output']}")


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where generated data, lake and warehouse go")
    ] = Path("data"),
    days: Annotated[int, typer.Option("--days", help="Days to generate and run", min=1)] = 35,
    requests_per_day: Annotated[
        int, typer.Option("--requests-per-day", help="Generated requests per day", min=1)
    ] = 400,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed")] = 7,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar")
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Only reprice the bundled sample into this file"),
    ] = None,
) -> None:
    """Generate realistic data, run the full pipeline on every day, print where it is."""
    if out is not None:
        from aispend_cli.reprice_cmd import SAMPLE_FILE, run_reprice

        with user_errors():
            summary = run_reprice(SAMPLE_FILE, out, _load_catalog(None), None)
        typer.echo(f"aispend demo: repriced {SAMPLE_FILE.name}")
        _print_summary(summary, False)
        return
    from aispend_cli.demo_cmd import demo_command

    with user_errors():
        code = demo_command(data_dir, days, requests_per_day, seed, progress, typer.echo)
    if code:
        raise typer.Exit(code)


@app.command()
def ingest(
    source: Annotated[
        str, typer.Option("--source", help="Source kind, e.g. litellm, helicone, openai_usage")
    ],
    input_path: Annotated[Path, typer.Option("--input", help="The file to read")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for the Parquet files")],
    name: Annotated[
        str | None, typer.Option("--name", help="Source name recorded as lineage")
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="Zone of naive timestamps")] = "UTC",
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON")] = False,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="sources.yaml: --source is then a source name there (its kind, name, zone)",
        ),
    ] = None,
) -> None:
    """Normalize one source file: normalized, duplicates and quarantine Parquet, with counts."""
    from sources.ingest import ingest_file, write_outputs

    with user_errors():
        if config is not None:
            from sources.config import load_sources

            configured = load_sources(config).get(source)
            source, name, timezone = configured.kind, configured.name, configured.timezone
        result = ingest_file(source, input_path, name=name, timezone=timezone)
        problems = result.problems()
        if problems:
            for problem in problems:
                typer.echo(f"error: rows lost: {problem}", err=True)
            raise typer.Exit(1)
        written = write_outputs(result, out)
    summary = {**result.summary(), "written": written}
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(f"{source}: read {summary['records_read']:,} records from {input_path}")
    for key in ("normalized", "duplicates", "quarantined"):
        if key in summary:
            typer.echo(f"  {key:<12}{summary[key]:>12,}")
    for reason, count in summary["quarantined_by_reason"].items():  # type: ignore[attr-defined]
        typer.echo(f"    {reason:<40}{count:>8,}")
    for name_, path in written.items():
        typer.echo(f"  wrote {name_:<12} {path}")


@app.command()
def validate(
    path: Annotated[
        Path,
        typer.Argument(help="Normalized requests or provider usage: a Parquet file or directory"),
    ],
    kind: Annotated[
        str | None, typer.Option("--kind", help="requests or provider_usage (default: by columns)")
    ] = None,
    day: Annotated[
        str | None, typer.Option("--day", help="Partition day the rows must fall in")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every expectation as JSON")
    ] = False,
) -> None:
    """Run the Great Expectations data-quality suite; exit 1 when an expectation fails."""
    from transforms.quality import validate_path

    partition_day = _parse_date(day, "--day") if day else None
    with user_errors():
        report = validate_path(path, kind, partition_day=partition_day)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        for line in report.lines():
            typer.echo(line)
    if not report.success:
        raise typer.Exit(1)


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Output directory")],
    days: Annotated[int, typer.Option("--days", help="Number of days", min=1)] = 35,
    requests_per_day: Annotated[
        int, typer.Option("--requests-per-day", help="Requests per day", min=1)
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same files")] = 7,
    start: Annotated[str | None, typer.Option("--start", help="First day (YYYY-MM-DD)")] = None,
    spike: Annotated[
        list[str] | None, typer.Option("--spike", help="feature:day:multiplier (repeatable)")
    ] = None,
    missing_logs: Annotated[
        list[str] | None, typer.Option("--missing-logs", help="gateway:day")
    ] = None,
    invoice_mismatch: Annotated[
        list[str] | None, typer.Option("--invoice-mismatch", help="provider:amount")
    ] = None,
    duplicates: Annotated[
        float | None, typer.Option("--duplicates", help="Share of gateway lines sent twice")
    ] = None,
    malformed: Annotated[
        float | None, typer.Option("--malformed", help="Share of malformed gateway lines")
    ] = None,
) -> None:
    """Write realistic, mutually consistent gateway logs, provider reports and invoices."""
    from datagen.cli import UsageError, generate_from_args

    try:
        manifest = generate_from_args(
            days,
            requests_per_day,
            seed,
            out,
            start,
            spike or [],
            missing_logs or [],
            invoice_mismatch or [],
            duplicates,
            malformed,
        )
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    files = manifest.get("files", {})
    typer.echo(
        f"wrote {len(files)} files to {out} (seed {seed}); manifest: {out / 'manifest.json'}"
    )


@app.command()
def run(
    date_from: Annotated[str, typer.Option("--from", help="First UTC day (YYYY-MM-DD)")],
    date_to: Annotated[str, typer.Option("--to", help="Last UTC day (YYYY-MM-DD), included")],
    config: Annotated[
        Path | None, typer.Option("--config", help="sources.yaml (default: $AISPEND_CONFIG)")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Lake and warehouse base (default: $AISPEND_DATA_DIR)"),
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar")
    ] = True,
) -> None:
    """Materialize every pipeline asset for those days (and their invoice months) in-process."""
    from aispend_cli.run_cmd import run_command

    start, end = _parse_date(date_from, "--from"), _parse_date(date_to, "--to")
    with user_errors():
        code = run_command(start, end, config, data_dir, progress, typer.echo)
    if code:
        raise typer.Exit(code)


@app.command()
def report(
    date: Annotated[str, typer.Option("--date", help="UTC day to report (YYYY-MM-DD)")],
    data_dir: Annotated[
        str | None,
        typer.Option("--data-dir", help="Data directory (default: $AISPEND_DATA_DIR or ./data)"),
    ] = None,
    out: Annotated[
        str | None, typer.Option("--out", help="Output directory (default: DATA_DIR/reports)")
    ] = None,
) -> None:
    """Render the daily HTML cost and latency report of one day (and the index)."""
    from aispend_cli.report_cmd import report_command

    code = report_command(date, data_dir, out)
    if code:
        raise typer.Exit(code)


@app.command()
def anomalies(
    date: Annotated[str, typer.Option("--date", help="UTC day to list (YYYY-MM-DD)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON for scripts")] = False,
    data_dir: Annotated[
        str | None,
        typer.Option("--data-dir", help="Data directory (default: $AISPEND_DATA_DIR or ./data)"),
    ] = None,
) -> None:
    """List the day's anomalies and budget events with their scores and impact."""
    from aispend_cli.anomalies_cmd import anomalies_command

    code = anomalies_command(date, as_json, data_dir)
    if code:
        raise typer.Exit(code)


@app.command()
def reconcile(
    month: Annotated[str, typer.Option("--month", help="Calendar month (YYYY-MM)")],
    provider: Annotated[
        str | None, typer.Option("--provider", help="Only this provider (e.g. openai)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every line with category and amounts")
    ] = False,
    data_dir: Annotated[
        str | None,
        typer.Option("--data-dir", help="Data directory (default: $AISPEND_DATA_DIR or ./data)"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Tolerances/accounts YAML ($AISPEND_RECONCILE_CONFIG)"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Report directory (default: DATA_DIR/reports/reconciliation)"),
    ] = None,
) -> None:
    """Reconcile a month: expected cost vs provider usage vs invoices; exit 3 on variances."""
    from aispend_cli.reconcile_cmd import reconcile_command

    with user_errors():
        code = reconcile_command(month, provider, as_json, data_dir, config, out, typer.echo)
    if code:
        raise typer.Exit(code)


@catalog_app.command("validate")
def catalog_validate(catalog: CatalogOpt = None) -> None:
    """Check every catalog file: overlaps, gaps, negative prices, unknown units."""
    from pricing_catalog.catalog import default_catalog_dirs
    from pricing_catalog.validate import validate_catalog

    errors = validate_catalog(list(catalog) if catalog else default_catalog_dirs())
    for error in errors:
        typer.echo(str(error), err=True)
    if errors:
        typer.echo(f"{len(errors)} problem(s) found", err=True)
        raise typer.Exit(2)
    typer.echo("catalog OK")


@catalog_app.command("show")
def catalog_show(
    provider: Annotated[str, typer.Option("--provider", help="Provider id as logged, e.g. openai")],
    model: Annotated[str, typer.Option("--model", help="Model as logged, e.g. gpt-4o-2024-08-06")],
    at: Annotated[
        str | None, typer.Option("--at", help="Date (YYYY-MM-DD); default today (UTC)")
    ] = None,
    catalog: CatalogOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Show the prices that apply to a model on a date."""
    from pricing_catalog.inspect import show_prices

    day = _parse_date(at, "--at") if at else dt.datetime.now(dt.UTC).date()
    with user_errors():
        rows = show_prices(_load_catalog(catalog), provider, model, day)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo(f"no price for {provider}/{model} on {day}", err=True)
        raise typer.Exit(1)
    for row in rows:
        typer.echo("  ".join(f"{k}={v}" for k, v in row.items() if v not in (None, "", {})))


@catalog_app.command("diff")
def catalog_diff(
    date_from: Annotated[str, typer.Option("--from", help="Earlier date (YYYY-MM-DD)")],
    date_to: Annotated[str, typer.Option("--to", help="Later date (YYYY-MM-DD)")],
    catalog: CatalogOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List prices that changed between two dates."""
    from pricing_catalog.inspect import diff_catalog

    start, end = _parse_date(date_from, "--from"), _parse_date(date_to, "--to")
    with user_errors():
        changes = diff_catalog(_load_catalog(catalog), start, end)
    if as_json:
        typer.echo(json.dumps(changes, indent=2, default=str))
        return
    for change in changes:
        typer.echo("  ".join(f"{k}={v}" for k, v in change.items() if v not in (None, "", {})))
    typer.echo(f"{len(changes)} change(s) between {start} and {end}")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
