"""`aispend run`: every asset of a range in-process; reruns are byte-identical; user
mistakes are one line and exit 2; anomalies, alerts and the daily reconciliation are wired in
(alert emails land in the outbox folder once, however often the range runs).

Data: the generator's 2 days x 200 requests with duplicates and malformed lines injected,
read through the demo sources.yaml (5 gateways, 7 billing reports, invoices). Alerts
settings: a tiny total daily budget and new-spend thresholds, so every day has events, with
AISPEND_ALERTS_TODAY the day after the range (as the demo does), so they are not old
backfill alerts.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from aispend_cli.run_cmd import configure_environment, run_pipeline
from datagen.build import generate
from datagen.faults import FaultSpec
from lake import read_partition, scan_dataset
from pipelines.demo_config import write_demo_sources
from pipelines.snapshot import lake_digest, warehouse_dump

ROOT = Path(__file__).resolve().parent.parent
AISPEND = Path(sys.executable).parent / "aispend"
START = dt.date(2025, 9, 30)  # crosses a month boundary: two invoice months
DAYS = 2
END = START + dt.timedelta(days=DAYS - 1)
ENV_KEYS = ("AISPEND_DATA_DIR", "AISPEND_CONFIG", "AISPEND_ALERTS_CONFIG", "AISPEND_ALERTS_TODAY")
ALERTS_YAML = """
detection:
  new_spend_daily_usd: 0.01
  new_spend_total_usd: 0.01
  new_spend_scopes: [team]
budgets:
  - {total: true, daily_usd: 0.01}
email:
  from: aispend@example.com
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("generated")
    manifest = generate(
        out, DAYS, 200, 11, START, FaultSpec(duplicate_rate=0.02, malformed_rate=0.01)
    )
    config = write_demo_sources(out, out / "sources.yaml")
    return config, manifest.data


@pytest.fixture(scope="module")
def two_runs(
    generated: tuple[Path, dict[str, object]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    config, manifest = generated
    data = tmp_path_factory.mktemp("data")
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    configure_environment(config, data)
    alerts = data / "alerts.yaml"
    alerts.write_text(ALERTS_YAML)
    os.environ["AISPEND_ALERTS_CONFIG"] = str(alerts)
    os.environ["AISPEND_ALERTS_TODAY"] = (END + dt.timedelta(days=1)).isoformat()
    try:
        end = END
        # Each instance is disposed when done: a live one stays Dagster's current
        # definitions-state storage and breaks later loads in this process.
        with dg.DagsterInstance.ephemeral() as instance:
            first = run_pipeline(START, end, instance=instance)
        lake1, wh1 = lake_digest(data), warehouse_dump(first.warehouse_url)
        outbox1 = _outbox_files(data)
        with dg.DagsterInstance.ephemeral() as instance:
            second = run_pipeline(START, end, instance=instance)
        lake2, wh2 = lake_digest(data), warehouse_dump(second.warehouse_url)
        outbox2 = _outbox_files(data)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {
        "data": data,
        "manifest": manifest,
        "first": first,
        "second": second,
        "lake": (lake1, lake2),
        "warehouse": (wh1, wh2),
        "outbox": (outbox1, outbox2),
    }


def _outbox_files(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data / "outbox").glob("*.eml"))}


def test_every_partition_succeeds(two_runs: dict[str, object]) -> None:
    for summary in (two_runs["first"], two_runs["second"]):
        outcomes = summary.outcomes  # type: ignore[attr-defined]
        assert [(o.job, o.partition) for o in outcomes] == [
            ("aispend_daily", "2025-09-30"),
            ("aispend_daily", "2025-10-01"),
            ("aispend_invoices", "2025-09-01"),
            ("aispend_invoices", "2025-10-01"),
        ]
        assert all(o.success and not o.errors for o in outcomes), [o.errors for o in outcomes]


def test_rerun_gives_identical_lake_bytes_and_warehouse_rows(two_runs: dict[str, object]) -> None:
    lake1, lake2 = two_runs["lake"]  # type: ignore[misc]
    wh1, wh2 = two_runs["warehouse"]  # type: ignore[misc]
    assert lake1 == lake2
    assert wh1 == wh2
    assert not [name for name in lake1 if ".staging-" in name or ".old-" in name]
    assert {"usage_daily", "ingest_counts", "invoice_lines"} <= set(wh1)
    assert all(wh1[t] for t in ("usage_daily", "ingest_counts", "invoice_lines"))


def test_every_gateway_line_is_accounted_for(two_runs: dict[str, object]) -> None:
    data, manifest = two_runs["data"], two_runs["manifest"]
    days = [START + dt.timedelta(days=n) for n in range(DAYS)]
    counts = scan_dataset(str(data), "ingest_counts", days)
    assert counts is not None
    per_source = counts.group_by("source").agg(pl.col("rows_read").sum()).collect()
    lines = {
        "litellm-prod": "litellm/",
        "helicone": "helicone/",
        "openrouter": "openrouter/",
        "cloudflare-gateway": "cloudflare/",
        "otel-collector": "otel/",
    }
    files = manifest["files"]  # type: ignore[index]
    for source, prefix in lines.items():
        expected = sum(f["lines"] for name, f in files.items() if name.startswith(prefix))
        got = per_source.filter(pl.col("source") == source)["rows_read"].item()
        assert got == expected, source
    faults = manifest["faults"]  # type: ignore[index]
    quarantined = counts.select(pl.col("quarantined").sum()).collect().item()
    duplicates = counts.select(pl.col("duplicates").sum()).collect().item()
    assert quarantined == len(faults["malformed"]) > 0
    assert duplicates == len(faults["duplicates"]) > 0


def test_roll_up_cost_matches_the_priced_requests_exactly(two_runs: dict[str, object]) -> None:
    data = str(two_runs["data"])
    for n in range(DAYS):
        day = START + dt.timedelta(days=n)
        priced = read_partition(data, "priced_requests", day)
        usage = read_partition(data, "usage_daily", day)
        assert usage["cost_usd"].sum() == priced["cost_usd"].sum()
        assert usage["requests"].sum() == priced.height
        assert isinstance(usage["cost_usd"].sum(), Decimal)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AISPEND), "run", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1", **(env or {})},
    )


def test_user_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aispend_cli.main import app

    missing = tmp_path / "nope.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources:\n  - name: x\n    kind: nosuchkind\n    location: a.jsonl\n")
    data = ["--data-dir", str(tmp_path / "data")]
    cases = [
        (["--from", "2025-09-30", "--to", "2025-09-29", "--config", str(broken)], "before"),
        (["--from", "2025-09-29", "--to", "2025-09-29", "--config", str(missing)], "nope.yaml"),
        (["--from", "2025-09-29", "--to", "2025-09-29", "--config", str(broken)], "nosuchkind"),
        (["--from", "2024-01-01", "--to", "2024-01-02", "--config", str(broken)], "first"),
        (["--from", "2025-09-29", "--to", "2030-01-01", "--config", str(broken)], "future"),
    ]
    saved = {k: os.environ.get(k) for k in ("AISPEND_DATA_DIR", "AISPEND_CONFIG")}
    try:
        for args, expected in cases:
            result = CliRunner().invoke(app, ["run", *args, *data])
            assert result.exit_code == 2, (args, result.output)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
            assert expected in lines[0], (args, lines)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    # The installed command, end to end: same one line, no traceback.
    real = _run("--from", "2025-09-29", "--to", "2025-09-29", "--config", str(broken), *data)
    assert real.returncode == 2 and "nosuchkind" in real.stderr
    assert "Traceback" not in real.stderr
    bad_date = _run("--from", "yesterday", "--to", "2025-09-29", *data)
    assert bad_date.returncode == 2 and "expected a date" in bad_date.stderr
    assert not (tmp_path / "data" / "lake").exists()  # nothing ran, nothing written


def test_summary_json_of_the_manifest_is_what_the_demo_compares(
    generated: tuple[Path, dict[str, object]],
) -> None:
    _, manifest = generated
    assert Decimal(json.loads(json.dumps(manifest["totals"]))["cost_usd"]) > 0


# --------------------------------------------------------------------------- anomalies, alerts
def _section(html: str, anchor: str) -> str:
    start = html.index(f'id="{anchor}"')
    return html[start : html.index("</section>", start)]


def test_anomalies_and_daily_reconciliation_reach_lake_and_warehouse(
    two_runs: dict[str, object],
) -> None:
    data = str(two_runs["data"])
    wh, _ = two_runs["warehouse"]  # type: ignore[misc]
    for n in range(DAYS):
        day = START + dt.timedelta(days=n)
        scores = read_partition(data, "anomaly_scores", day)
        assert scores.height > 0 and set(scores["day"].to_list()) == {day}
        # every team is new on the first day (no baseline yet: the new-spend rule instead),
        # and the rule fires once per series
        assert ("new_spend" in scores["status"].to_list()) == (day == START)
        lines = read_partition(data, "reconciliation_daily", day)
        assert set(lines["period_start"].to_list()) == {day}
        assert set(lines["grain"].to_list()) == {"day"}
    stored_days = {row[0] for row in wh["anomaly_scores"]}  # day is the first column
    assert stored_days == {(START + dt.timedelta(days=n)).isoformat() for n in range(DAYS)}
    # episodes need a baseline (14 days); two days give new-spend and budget alerts only
    kinds = sorted({r[4] for r in wh["alert_outbox"]})
    assert kinds == ["budget", "new_spend"], kinds
    daily_runs = [r for r in wh["reconciliation_runs"] if r[1] == "daily"]  # run_id, kind
    assert len(daily_runs) == DAYS  # one run per day: the rerun had identical inputs


def test_each_alert_email_lands_in_the_outbox_once(two_runs: dict[str, object]) -> None:
    first, second = two_runs["outbox"]  # type: ignore[misc]
    wh, _ = two_runs["warehouse"]  # type: ignore[misc]
    assert first and first == second  # the rerun sent nothing, rewrote nothing
    sent = [
        r for r in wh["alert_outbox"] if r[6] == "sent"
    ]  # id, key, route, day, kind, mode, status
    assert len(sent) == len(first)
    subjects = [
        str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])
        for raw in first.values()
    ]
    budget = [s for s in subjects if "budget" in s.lower()]
    assert len(budget) == DAYS, subjects  # the total daily budget, breached once per day
    assert all(s.startswith("[aispend]") for s in subjects)


def test_daily_report_shows_the_anomalies_and_the_reconciliation(
    two_runs: dict[str, object],
) -> None:
    data = Path(str(two_runs["data"]))
    for day in (START, END):
        html = (data / "reports" / f"daily-{day.isoformat()}.html").read_text()
        for anchor in ("anomalies", "reconciliation"):
            assert "not available" not in _section(html, anchor).lower(), (day, anchor)
        assert _section(html, "reconciliation").count("<tr") >= 2, day
    first = _section(
        (data / "reports" / f"daily-{START.isoformat()}.html").read_text(), "anomalies"
    )
    assert first.count("<tr") >= 2 and "new_spend" in first.replace(" ", "_").lower()


def test_outbox_retry_schedule_resends_a_failed_alert_once(
    two_runs: dict[str, object], tmp_path: Path
) -> None:
    import shutil
    import sqlite3

    import sqlalchemy as sa

    from notify.outbox import alert_outbox
    from pipelines.alerting import AlertsResource
    from pipelines.automation import outbox_job, outbox_retry
    from pipelines.resources import LakeResource, WarehouseResource

    data = Path(str(two_runs["data"]))
    # A copy of the nightly warehouse (the backup API includes what is still in the WAL).
    with (
        sqlite3.connect(data / "warehouse.sqlite") as source,
        sqlite3.connect(tmp_path / "warehouse.sqlite") as copy,
    ):
        source.backup(copy)
    shutil.copytree(data / "outbox", tmp_path / "outbox")
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    warehouse = WarehouseResource(url=url)
    engine = warehouse.engine()
    with engine.begin() as conn:  # the mail server refused one message on the nightly run
        key = conn.execute(
            sa.select(alert_outbox.c.alert_key).order_by(alert_outbox.c.id).limit(1)
        ).scalar_one()
        conn.execute(
            alert_outbox.update()
            .where(alert_outbox.c.alert_key == key)
            .values(status="failed", attempts=1, last_error="SMTP: connection refused")
        )
    before = set(_outbox_files(tmp_path))
    for eml in (tmp_path / "outbox").glob("*.eml"):
        eml.unlink()

    def tick() -> object:
        with (
            dg.instance_for_test() as instance,
            dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=dt.datetime(2025, 10, 2, 6, 15, tzinfo=dt.UTC),
                resources={"warehouse": warehouse},
            ) as context,
        ):
            return outbox_retry(context)  # type: ignore[operator]

    request = tick()
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == "outbox:2025-10-02T06:15:00+00:00"
    with dg.instance_for_test() as instance:
        result = outbox_job.execute_in_process(
            instance=instance,
            resources={
                "lake": LakeResource(base=str(tmp_path)),
                "warehouse": warehouse,
                "alerts": AlertsResource(),
            },
        )
    assert result.success
    resent = set(_outbox_files(tmp_path))
    assert len(resent) == 1 and resent <= before  # the same message (same Message-ID file)
    with engine.connect() as conn:
        status = conn.execute(
            sa.select(alert_outbox.c.status).where(alert_outbox.c.alert_key == key)
        ).scalar_one()
    assert status == "sent"
    assert isinstance(tick(), dg.SkipReason)  # nothing due: no run
