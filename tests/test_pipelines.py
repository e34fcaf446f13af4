"""Dagster definitions, late-row windows, the nightly schedule, the billing sensor and the
failure notices (no warehouse needed; the end-to-end runs are in test_run_cli.py)."""

from __future__ import annotations

import datetime as dt
import email
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pipelines.automation import (
    billing_files_sensor,
    build_nightly_schedule,
    failed_check_notice,
    failed_checks,
    file_date,
    location_glob,
    run_failure_notice,
)
from pipelines.definitions import defs
from pipelines.ingest_day import ingest_invoices, ingest_requests
from pipelines.partitions import daily_partitions, monthly_partitions
from pipelines.resources import LakeResource, SourcesResource
from sources.config import load_sources

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- definitions
def test_every_daily_asset_shares_the_one_partitions_object() -> None:
    loaded = defs()
    daily = [
        "normalized_requests",
        "provider_usage",
        "priced_requests",
        "usage_daily",
        "peaks_by_model",
        "warehouse_daily",
    ]
    for key in daily:
        assert loaded.resolve_assets_def(key).partitions_def is daily_partitions, key
    for key in ("invoice_lines", "warehouse_invoices"):
        assert loaded.resolve_assets_def(key).partitions_def is monthly_partitions, key
    assert daily_partitions.timezone == "UTC"
    job = loaded.resolve_job_def("aispend_daily")
    assert {n.name for n in job.nodes} == {
        "ingest_requests",
        "provider_usage",
        "priced_requests",
        "request_rollups",
        "warehouse_daily",
        "reconciliation_daily",
        "anomalies",
        "daily_report",
    }
    checks = {str(k) for k in loaded.resolve_asset_graph().asset_check_keys}
    for name in (
        "gx_requests",
        "accounting_identity",
        "gx_provider_usage",
        "loaded_yesterday",
        "outbox_delivery",
        "within_tolerance",
    ):
        assert any(name in c for c in checks), name
    # the report is rendered after everything its sections read
    graph = loaded.resolve_asset_graph()
    report_parents = {
        k.to_user_string() for k in graph.get(dg.AssetKey("daily_report")).parent_keys
    }
    assert {"warehouse_daily", "anomaly_scores", "reconciliation_daily"} <= report_parents
    assert loaded.resolve_job_def("aispend_outbox") is not None
    assert loaded.resolve_schedule_def("outbox_retry").cron_schedule == "*/15 * * * *"


def test_alerts_count_today_by_the_wall_clock_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines.alerting import AlertsResource, alerts_from_env

    monkeypatch.delenv("AISPEND_ALERTS_TODAY", raising=False)
    # not the partition's date: a backfill of old days must not mail old alerts
    assert alerts_from_env().today_date() == dt.datetime.now(dt.UTC).date()
    monkeypatch.setenv("AISPEND_ALERTS_TODAY", "2025-10-09")
    assert alerts_from_env().today_date() == dt.date(2025, 10, 9)
    with pytest.raises(ValueError, match="AISPEND_ALERTS_TODAY='soon': expected a date"):
        AlertsResource(today="soon").today_date()


def test_rollups_read_priced_requests_without_row_issues() -> None:
    from decimal import Decimal

    from transforms.usage_rollups import peaks_by_model, usage_daily

    start = dt.datetime(2025, 9, 5, 10, 0, tzinfo=dt.UTC)
    priced = pl.DataFrame(
        {
            "started_at": [start, start + dt.timedelta(seconds=30)],
            "ended_at": [start + dt.timedelta(seconds=1), start + dt.timedelta(seconds=31)],
            "provider": ["openai", "openai"],
            "model_key": ["openai/gpt-4o", "openai/gpt-4o"],
            "model": ["gpt-4o", "gpt-4o"],
            "feature": ["chat", "chat"],
            "team": ["web", "web"],
            "attempt": [1, 1],
            "status": ["success", "success"],
            "gateway_cache_hit": [True, None],
            "batch": [False, False],
            "modality": ["text", "text"],
            "input_tokens": [10, None],
            "output_tokens": [5, None],
            "cost_usd": [Decimal("0.5"), None],
        }
    )
    full = {
        "cache_read_tokens": pl.Int64,
        "cache_write_tokens": pl.Int64,
        "reasoning_tokens": pl.Int64,
        "image_count": pl.Int64,
        "video_seconds": pl.Float64,
        "audio_seconds": pl.Float64,
        "list_cost_usd": pl.Decimal(38, 18),
        "gateway_cost_usd": pl.Decimal(38, 18),
    }
    priced = priced.with_columns(
        pl.col("cost_usd").cast(pl.Decimal(38, 18)),
        *[pl.lit(None, dtype).alias(name) for name, dtype in full.items()],
    )
    with_null = priced.with_columns(pl.lit(None, pl.String).alias("row_issues"))
    for rollup in (usage_daily, peaks_by_model):
        without = rollup(priced.lazy()).collect()
        assert without.equals(rollup(with_null.lazy()).collect()), rollup.__name__
    usage = usage_daily(priced.lazy()).collect()
    assert usage.select("requests", "gateway_cache_hits", "usage_missing").row(0) == (2, 1, 1)


def test_definitions_validate_from_the_cli(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(exe), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PATH": str(exe.parent),
            "HOME": str(tmp_path),
            "AISPEND_DATA_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


# --------------------------------------------------------------------------- late rows
def _row(request_id: str, started_at: str) -> str:
    return json.dumps(
        {
            "request_id": request_id,
            "started_at": started_at,
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 10,
            "output_tokens": 5,
        }
    )


def _canonical_config(tmp_path: Path, trailing_days: int) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    files = {
        "2025-09-04": [_row("a1", "2025-09-04T10:00:00Z"), _row("a2", "2025-09-04T23:59:59Z")],
        "2025-09-05": [
            _row("b1", "2025-09-05T08:00:00Z"),
            _row("a3", "2025-09-04T23:59:58Z"),  # late: belongs to the 4th
            _row("z1", "2025-09-01T12:00:00Z"),  # far too late for any window reading it
            "{not json",
            _row("b1", "2025-09-05T08:00:00Z"),  # delivered twice
        ],
    }
    for day, lines in files.items():
        (logs / f"requests-{day}.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n"
        "  - name: own-gateway\n"
        "    kind: canonical\n"
        "    location: logs/requests-{date:%Y-%m-%d}.jsonl\n"
        f"    trailing_days: {trailing_days}\n"
    )
    return config


def test_late_rows_land_in_their_event_day_and_every_row_is_counted_once(
    tmp_path: Path,
) -> None:
    config = load_sources(_canonical_config(tmp_path, trailing_days=1))
    days = [dt.date(2025, 9, d) for d in range(1, 8)]
    results = {d: ingest_requests(config, d) for d in days}
    fourth, fifth = results[dt.date(2025, 9, 4)], results[dt.date(2025, 9, 5)]
    assert sorted(fourth.rows["request_id"]) == ["a1", "a2", "a3"]
    assert fifth.rows["request_id"].to_list() == ["b1"]
    assert fifth.duplicates["request_id"].to_list() == ["b1"]
    reasons = sorted(fifth.quarantine["reason"].to_list())
    assert len(reasons) == 2 and reasons[0] == "outside_late_window:2025-09-01"
    assert reasons[1].startswith("unreadable_record")
    assert set(fifth.quarantine["day"].to_list()) == {dt.date(2025, 9, 5)}
    # The 1st reads the files of Aug 31 .. Sep 2: the orphan is not counted there again.
    assert results[dt.date(2025, 9, 1)].rows.is_empty()
    total_read = sum(int(r.counts["rows_read"].sum() or 0) for r in results.values())
    assert total_read == 2 + 5  # every line of both files, exactly once
    for result in results.values():
        assert result.accounting_problems() == []


def test_without_trailing_days_a_late_row_is_quarantined_not_lost(tmp_path: Path) -> None:
    config = load_sources(_canonical_config(tmp_path, trailing_days=0))
    fourth = ingest_requests(config, dt.date(2025, 9, 4))
    fifth = ingest_requests(config, dt.date(2025, 9, 5))
    assert sorted(fourth.rows["request_id"]) == ["a1", "a2"]
    assert "outside_late_window:2025-09-04" in fifth.quarantine["reason"].to_list()
    assert int(fourth.counts["rows_read"].sum()) + int(fifth.counts["rows_read"].sum()) == 7


def test_a_source_without_files_is_counted_as_zero(tmp_path: Path) -> None:
    config = load_sources(_canonical_config(tmp_path, trailing_days=0))
    empty = ingest_requests(config, dt.date(2025, 9, 20))
    assert empty.rows.is_empty()
    assert empty.counts.select("source", "rows_read").rows() == [("own-gateway", 0)]


def test_invoices_land_in_their_billing_month(tmp_path: Path) -> None:
    folder = tmp_path / "invoices"
    folder.mkdir()
    header = (
        "invoice_id,provider,billing_period_start,billing_period_end,charge_category,"
        "amount_usd,currency\n"
    )
    (folder / "inv-2025-10.csv").write_text(
        header
        + "INV-9,openai,2025-09-01,2025-10-01,usage,12.50,USD\n"  # September, issued in Oct
        + "INV-10,openai,2025-10-01,2025-11-01,usage,3.25,USD\n"
    )
    config_path = tmp_path / "sources.yaml"
    config_path.write_text(
        "sources:\n  - name: inv\n    kind: invoice\n    location: invoices/inv-{date:%Y-%m}.csv\n"
    )
    config = load_sources(config_path)
    september = ingest_invoices(config, dt.date(2025, 9, 1))
    october = ingest_invoices(config, dt.date(2025, 10, 15))
    assert september.rows["invoice_id"].to_list() == ["INV-9"]
    assert october.rows["invoice_id"].to_list() == ["INV-10"]
    assert str(september.rows["amount_usd"][0]) == "12.500000000000000000"


# --------------------------------------------------------------------------- schedule
def _nightly(late: int, tick: dt.datetime) -> list[dg.RunRequest]:
    schedule = build_nightly_schedule(late)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        return list(schedule(context))  # type: ignore[call-overload]


def test_nightly_schedule_requests_yesterday_and_the_late_window() -> None:
    schedule = build_nightly_schedule(3)
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "aispend_daily"
    tick = dt.datetime(2025, 9, 10, 2, 0, tzinfo=dt.UTC)
    first, again = _nightly(3, tick), _nightly(3, tick)
    assert [r.partition_key for r in first] == [
        "2025-09-06",
        "2025-09-07",
        "2025-09-08",
        "2025-09-09",
    ]
    assert [r.run_key for r in first] == [r.run_key for r in again]  # stable run keys
    assert len({r.run_key for r in first}) == 4
    assert first[-1].tags["aispend/late_rerun"] == "false"
    assert first[0].tags["aispend/late_rerun"] == "true"
    assert [r.partition_key for r in _nightly(0, tick)] == ["2025-09-09"]
    next_night = _nightly(3, tick + dt.timedelta(days=1))
    assert not {r.run_key for r in next_night} & {r.run_key for r in first}


# --------------------------------------------------------------------------- billing sensor
def test_location_patterns_give_back_the_file_date() -> None:
    location = "/data/aws/cur-{date:%Y-%m}.csv"
    assert location_glob(location) == "/data/aws/cur-*.csv"
    assert file_date(location, "/data/aws/cur-2025-09.csv") == (dt.date(2025, 9, 1), False)
    assert file_date("/x/inv-*-{date:%Y-%m}.csv", "/x/inv-openai-2025-10.csv") == (
        dt.date(2025, 10, 1),
        False,
    )
    assert file_date("/l/{date:%Y/%m/%d}.jsonl", "/l/2025/09/05.jsonl") == (
        dt.date(2025, 9, 5),
        True,
    )
    assert file_date(location, "/data/aws/other.csv") is None


def _billing_setup(tmp_path: Path) -> Path:
    (tmp_path / "invoices").mkdir()
    (tmp_path / "aws").mkdir()
    (tmp_path / "invoices" / "invoice-openai-2025-09.csv").write_text("invoice_id\n")
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n"
        "  - name: inv\n    kind: invoice\n    location: invoices/invoice-*-{date:%Y-%m}.csv\n"
        "  - name: cur\n    kind: aws_cur\n    location: aws/cur-{date:%Y-%m}.csv\n"
        "  - name: gw\n    kind: litellm\n    location: gw/{date:%Y-%m-%d}.jsonl\n"
    )
    return config


def _tick(config: Path, cursor: str | None) -> dg.SensorResult:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"sources": SourcesResource(config_path=str(config))},
        )
        result = billing_files_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_billing_sensor_requests_each_new_file_version_once(tmp_path: Path) -> None:
    config = _billing_setup(tmp_path)
    first = _tick(config, None)
    assert not first.run_requests  # the first tick records what exists
    assert first.cursor and len(json.loads(first.cursor)) == 1

    assert not _tick(config, first.cursor).run_requests  # nothing new

    (tmp_path / "invoices" / "invoice-anthropic-2025-10.csv").write_text("invoice_id\n")
    (tmp_path / "aws" / "cur-2025-09.csv").write_text("a,b\n")
    new = _tick(config, first.cursor)
    invoice_runs = [r for r in new.run_requests if r.job_name == "aispend_invoices"]
    daily_runs = [r for r in new.run_requests if r.job_name == "aispend_daily"]
    assert sorted(r.partition_key for r in invoice_runs) == ["2025-09-01", "2025-10-01"]
    assert [r.partition_key for r in daily_runs] == [f"2025-09-{d:02d}" for d in range(1, 31)]
    assert {tuple(sorted(k.to_user_string() for k in r.asset_selection)) for r in daily_runs} == {
        ("provider_usage", "warehouse_daily")
    }
    assert len({r.run_key for r in new.run_requests}) == len(new.run_requests)

    assert not _tick(config, new.cursor).run_requests  # same versions: never again

    changed = tmp_path / "aws" / "cur-2025-09.csv"
    changed.write_text("a,b\n1,2\n")
    os.utime(changed, (1_900_000_000, 1_900_000_000))
    again = _tick(config, new.cursor)
    assert {r.partition_key for r in again.run_requests} == {
        f"2025-09-{d:02d}" for d in range(1, 31)
    }
    assert not {r.run_key for r in again.run_requests} & {r.run_key for r in new.run_requests}


# --------------------------------------------------------------------------- failure notices
def _probe(name: str, blocking: bool) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        partitions_def=daily_partitions,
        check_specs=[dg.AssetCheckSpec("always_wrong", asset=name, blocking=blocking)],
    )
    def _asset():  # type: ignore[no-untyped-def]
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(
            check_name="always_wrong", passed=False, severity=dg.AssetCheckSeverity.ERROR
        )

    return _asset


hard_probe = _probe("hard_probe", blocking=True)
soft_probe = _probe("soft_probe", blocking=False)


@dg.asset(partitions_def=daily_partitions, deps=[hard_probe])
def after_probe() -> None:
    raise AssertionError("a failed blocking check must stop downstream assets")


@dg.asset(partitions_def=daily_partitions)
def broken() -> None:
    raise ValueError("day file unreadable: /data/x.jsonl line 3\nsecond line never shown")


def _notify(
    sensor: object, name: str, instance: dg.DagsterInstance, result: object, base: Path
) -> None:
    run = instance.get_run_by_id(result.run_id)  # type: ignore[attr-defined]
    kind = (
        dg.DagsterEventType.RUN_SUCCESS
        if run.status == dg.DagsterRunStatus.SUCCESS
        else (dg.DagsterEventType.RUN_FAILURE)
    )
    event = next(e for e in result.all_events if e.event_type == kind)  # type: ignore[attr-defined]
    context = dg.build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"lake": LakeResource(base=str(base))},
    )
    if kind == dg.DagsterEventType.RUN_FAILURE:
        context = context.for_run_failure()
    sensor(context)  # type: ignore[operator]


def _outbox(base: Path) -> list[email.message.Message]:
    return [
        email.message_from_bytes(p.read_bytes()) for p in sorted((base / "outbox").glob("*.eml"))
    ]


def test_failed_blocking_check_fails_the_run_and_is_named_in_the_notice(
    tmp_path: Path,
) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [hard_probe, after_probe],
            partition_key="2025-09-05",
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        assert not result.asset_materializations_for_node("after_probe")
        _notify(run_failure_notice, "run_failure_notice", instance, result, tmp_path)
    (message,) = _outbox(tmp_path)
    assert message["X-Aispend-Kind"] == "run_failed"
    assert "check hard_probe:always_wrong failed" in message.get_payload()


def test_failed_non_blocking_check_of_a_successful_run_writes_a_notice(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [soft_probe], partition_key="2025-09-05", instance=instance, raise_on_error=False
        )
        assert result.success  # a failed check alone does not fail the run ...
        _notify(failed_check_notice, "failed_check_notice", instance, result, tmp_path)
        _notify(failed_check_notice, "failed_check_notice", instance, result, tmp_path)
    (message,) = _outbox(tmp_path)  # ... so this sensor notices it, once
    assert (
        message["Subject"] == "[aispend] __ephemeral_asset_job__ data check failed for 2025-09-05"
    )
    assert "check soft_probe:always_wrong failed" in message.get_payload()


def test_failed_run_writes_one_notice_with_the_first_error_line(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [broken], partition_key="2025-09-05", instance=instance, raise_on_error=False
        )
        assert not result.success
        for _ in range(2):  # a tick evaluated twice writes one message
            _notify(run_failure_notice, "run_failure_notice", instance, result, tmp_path)
    (message,) = _outbox(tmp_path)
    body = message.get_payload()
    assert "day file unreadable: /data/x.jsonl line 3" in body
    assert "second line never shown" not in body
    assert "aispend run --from 2025-09-05 --to 2025-09-05" in body


def test_quarantine_counts_keep_every_reason(tmp_path: Path) -> None:
    from pipelines.summaries import markdown_table, quarantine_summary

    quarantine = pl.DataFrame(
        {
            "day": [dt.date(2025, 9, 5)] * 3,
            "source": ["a", "a", "b"],
            "source_kind": ["litellm"] * 3,
            "reason": ["x", "x", "y|z"],
        }
    )
    summary = quarantine_summary(quarantine)
    assert summary.select("source", "reason", "rows").rows() == [("a", "x", 2), ("b", "y|z", 1)]
    assert "y\\|z" in markdown_table(summary)  # a pipe from a log cannot break the table


# --------------------------------------------------------------------------- postgres instance
@pytest.mark.postgres
def test_postgres_instance_from_docs_dagster_yaml(tmp_path: Path) -> None:
    import shutil
    import uuid

    import psycopg

    database = f"aispend_dagster_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "docs" / "dagster.yaml", home / "dagster.yaml")
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
    previous = os.environ.get("AISPEND_DAGSTER_PG_URL")
    os.environ["AISPEND_DAGSTER_PG_URL"] = url
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = dg.materialize([soft_probe], partition_key="2025-09-05", instance=instance)
            assert result.success
            runs = instance.get_runs()
            assert [r.run_id for r in runs] == [result.run_id]
            checks = failed_checks(instance, result.run_id)
            assert checks == ["check soft_probe:always_wrong failed"]
        with psycopg.connect(url.replace("+psycopg2", ""), autocommit=True) as conn:
            stored = conn.execute("SELECT run_id FROM runs").fetchall()
        assert stored == [(result.run_id,)]
    finally:
        if previous is None:
            os.environ.pop("AISPEND_DAGSTER_PG_URL", None)
        else:
            os.environ["AISPEND_DAGSTER_PG_URL"] = previous
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_notice_goes_out_by_smtp_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiosmtpd.controller import Controller

    from pipelines.notices import RUN_FAILED, FailureNotice, deliver

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(envelope.original_content)
            return "250 OK"

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        monkeypatch.setenv("AISPEND_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("AISPEND_SMTP_PORT", str(port))
        monkeypatch.setenv("AISPEND_SMTP_SECURITY", "none")
        monkeypatch.setenv("AISPEND_ALERT_TO", "finops@example.com")
        notice = FailureNotice(
            kind=RUN_FAILED,
            run_id="run-1",
            job_name="aispend_daily",
            partition="2025-09-05",
            failures=["step ingest_requests: bad\r\nBcc: victim@example.com <b>x</b>"],
        )
        deliver(notice, tmp_path / "outbox")
        deliver(notice, tmp_path / "outbox")  # the marker stops a second send
    finally:
        controller.stop()
    assert len(received) == 1
    message = email.message_from_bytes(received[0])
    assert message["To"] == "finops@example.com"
    assert message["Bcc"] is None  # a log line cannot inject a header
    assert "step ingest_requests: bad  Bcc: victim@example.com <b>x</b>" in message.get_payload()
    assert not list((tmp_path / "outbox").glob("*.eml"))  # SMTP, not the .eml fallback


def test_duplicated_request_attempts_counts_every_copy_exactly() -> None:
    from pipelines.quality_checks import duplicated_request_attempts

    rows = pl.LazyFrame(
        {
            "request_id": ["a", "a", "b", "c", "c", "c", None, None, "d"],
            "attempt": [1, 1, 1, 1, 1, 2, 1, 1, 1],
        }
    )
    # a x2, c/1 x2, the two null ids: the copies and their originals.
    assert duplicated_request_attempts(rows) == 6
    assert duplicated_request_attempts(rows.filter(pl.col("request_id") == "b")) == 0
    assert duplicated_request_attempts(rows.clear()) == 0
