"""Jobs, the nightly schedule, the billing-file sensor and the failure notifiers.

* `aispend_daily` (every daily asset) and `aispend_invoices` (the monthly invoice assets).
* `nightly` (02:00 UTC): yesterday and the `late_days` days before it (AISPEND_LATE_DAYS,
  default 3), oldest first, so late rows that arrived since are picked up. Run keys are
  `nightly:<tick date>:<partition>`: a tick evaluated twice launches nothing twice.
* `billing_files`: lists the files of every provider-usage and invoice source (the
  location's `{date}` fields as `*`), and for each file that is new or changed since the
  cursor (size + modification time / ETag) requests the partitions that read it: the
  provider usage and warehouse load of its days (`aispend_daily`), the invoice months
  (`aispend_invoices`). Run keys are `<file>@<version>:<partition>`, and the cursor keeps
  every version seen, so one file version never triggers twice. The first tick only records
  what exists (history is a backfill's job, not a flood of sensor runs).
* `run_failure_notice` and `failed_check_notice`: a failed run, or a finished run with a
  failed ERROR-severity check, becomes a `pipelines.notices.FailureNotice` in the outbox.
* `outbox_retry` (every 15 minutes): when the warehouse outbox holds alert emails that are
  due (pending, failed on an earlier try, or stuck in `sending` past the lease), launches
  `aispend_outbox`, whose one op calls `notify.outbox.deliver`. Nothing due: a skipped tick,
  no run (an idle outbox does not fill the run list).
"""

import datetime as dt
import json
import os
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import fsspec

from pipelines.alerting import AlertsResource, due_messages, outbox_dir, transport
from pipelines.notices import CHECK_FAILED, RUN_FAILED, FailureNotice, deliver
from pipelines.partitions import DAILY_START, daily_partitions, monthly_partitions
from pipelines.resources import LakeResource, SourcesResource, WarehouseResource
from sources.config import Source
from transforms.canonical_reader import InputError

LATE_DAYS_ENV = "AISPEND_LATE_DAYS"
DEFAULT_LATE_DAYS = 3
DAILY_JOB = "aispend_daily"
INVOICE_JOB = "aispend_invoices"
BILLING_RERUN_ASSETS = ("provider_usage", "warehouse_daily")
MONTHLY_ASSETS = ("invoice_lines", "warehouse_invoices", "monthly_reconciliation")
FRESHNESS_CHECK = dg.AssetCheckKey(dg.AssetKey("warehouse_daily"), "loaded_yesterday")

daily_job = dg.define_asset_job(
    DAILY_JOB,
    selection=dg.AssetSelection.all().required_multi_asset_neighbors()
    - dg.AssetSelection.assets(*MONTHLY_ASSETS)
    - dg.AssetSelection.checks(FRESHNESS_CHECK),
    partitions_def=daily_partitions,
    description="Every daily asset of one UTC day, raw files to warehouse.",
)
invoice_job = dg.define_asset_job(
    INVOICE_JOB,
    selection=dg.AssetSelection.assets(*MONTHLY_ASSETS),
    partitions_def=monthly_partitions,
    description="Invoice lines of one billing month to the lake and the warehouse, then "
    "the month's reconciliation.",
)

freshness_job = dg.define_asset_job(
    "aispend_freshness",
    selection=dg.AssetSelection.checks(FRESHNESS_CHECK),
    description="The freshness check of the warehouse load, alone.",
)
freshness_schedule = dg.ScheduleDefinition(
    name="freshness",
    job=freshness_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="04:00 UTC: is yesterday's warehouse load there?",
)


def late_days() -> int:
    text = os.environ.get(LATE_DAYS_ENV, "").strip()
    try:
        value = int(text) if text else DEFAULT_LATE_DAYS
    except ValueError:
        raise ValueError(f"{LATE_DAYS_ENV}={text!r}: expected a whole number of days") from None
    if not 0 <= value <= 60:
        raise ValueError(f"{LATE_DAYS_ENV}={value}: expected 0 to 60 days")
    return value


def _start() -> dt.date:
    return dt.date.fromisoformat(DAILY_START)


def nightly_partitions(tick: dt.datetime, late: int) -> list[str]:
    """Yesterday (relative to the tick, UTC) and the `late` days before it, oldest first."""
    yesterday = tick.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    days = [yesterday - dt.timedelta(days=n) for n in range(late, -1, -1)]
    return [d.isoformat() for d in days if d >= _start()]


def build_nightly_schedule(late: int) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="nightly",
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        job=daily_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"02:00 UTC: yesterday plus {late} late-data day(s) before it.",
    )
    def nightly(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        tick_day = tick.astimezone(dt.UTC).date().isoformat()
        partitions = nightly_partitions(tick, late)
        for partition in partitions:
            yield dg.RunRequest(
                run_key=f"nightly:{tick_day}:{partition}",
                partition_key=partition,
                tags={
                    "aispend/trigger": "nightly",
                    "aispend/late_rerun": str(partition != partitions[-1]).lower(),
                },
            )

    return nightly


# --------------------------------------------------------------------------- billing files
_STRFTIME = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{2}",
    "d": r"\d{2}",
    "j": r"\d{3}",
    "H": r"\d{2}",
    "M": r"\d{2}",
    "S": r"\d{2}",
    "b": r"[A-Za-z]{3}",
    "B": r"[A-Za-z]+",
    "%": "%",
}


def _strftime_regex(spec: str) -> str:
    out, i = "", 0
    while i < len(spec):
        if spec[i] == "%" and i + 1 < len(spec):
            out += _STRFTIME.get(spec[i + 1], r".+?")
            i += 2
        else:
            out += re.escape(spec[i])
            i += 1
    return out


def _glob_regex(text: str) -> str:
    out = re.escape(text)
    return out.replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")


def location_glob(location: str) -> str:
    """The location with every `{date:...}` field replaced by `*`."""
    return "".join(
        literal + ("*" if name is not None else "")
        for literal, name, _, _ in string.Formatter().parse(location)
    )


def file_date(location: str, path: str) -> tuple[dt.date, bool] | None:
    """The date a file's name carries (first `{date}` field) and whether it names a day
    (`%d` or `%j` in the pattern); None when the path does not match the pattern."""
    regex, spec = "", None
    for literal, name, fmt, _ in string.Formatter().parse(location):
        regex += _glob_regex(literal)
        if name is not None:
            if spec is None:
                spec = fmt or "%Y-%m-%d"
                regex += f"(?P<date>{_strftime_regex(spec)})"
            else:
                regex += ".*?"
    if spec is None:
        return None
    match = re.search(regex + "$", path)
    if match is None:
        return None
    try:
        parsed = dt.datetime.strptime(match.group("date"), spec).date()
    except ValueError:
        return None
    return parsed, ("%d" in spec or "%j" in spec)


def affected_days(source: Source, path: str, today: dt.date) -> list[str]:
    """Daily partitions whose read window includes the file (see pipelines.windows)."""
    assert source.location is not None
    found = file_date(source.location, path)
    if found is None:  # an undated location: every partition reads it; rerun the recent ones
        return [
            (today - dt.timedelta(days=n)).isoformat()
            for n in range(late_days(), -1, -1)
            if today - dt.timedelta(days=n) >= _start()
        ]
    anchor, _ = found
    expansion = source.location.format(date=anchor)
    trailing = source.trailing_days
    span = range(-40 - trailing, 41 + trailing)
    days = []
    for offset in span:
        day = anchor + dt.timedelta(days=offset)
        window = (day + dt.timedelta(days=k) for k in range(-trailing, trailing + 1))
        if any(source.location.format(date=d) == expansion for d in window):
            days.append(day)
    return [d.isoformat() for d in sorted(days) if _start() <= d <= today]


def affected_months(source: Source, path: str, today: dt.date) -> list[str]:
    """Monthly partitions reading the file: its month and the month before (an invoice
    for a month is often issued, and named, in the next one)."""
    assert source.location is not None
    found = file_date(source.location, path)
    if found is None:
        return [today.replace(day=1).isoformat()]
    month = found[0].replace(day=1)
    before = (month - dt.timedelta(days=1)).replace(day=1)
    start = _start().replace(day=1)
    return [m.isoformat() for m in (before, month) if start <= m <= today]


def file_versions(source: Source) -> dict[str, str]:
    """Every file of a file-based source: path -> version (size and mtime or ETag)."""
    if source.location is None:
        return {}
    pattern = location_glob(source.location)
    try:
        fs, fs_path = fsspec.core.url_to_fs(pattern)
        found = fs.glob(fs_path, detail=True)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{source.origin}: source {source.name}: cannot list files: {exc}"
        ) from None
    local = "file" in ((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol)
    out = {}
    for name, info in found.items():
        if info.get("type") != "file":
            continue
        stamp = (
            info.get("ETag")
            or info.get("etag")
            or info.get("mtime")
            or info.get("LastModified", "")
        )
        out[name if local else fs.unstrip_protocol(name)] = f"{info.get('size')}:{stamp}"
    return out


@dg.sensor(
    name="billing_files",
    jobs=[daily_job, invoice_job],
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New or changed billing export / invoice file -> rerun the partitions "
    "that read it.",
)
def billing_files_sensor(
    context: dg.SensorEvaluationContext, sources: SourcesResource
) -> dg.SensorResult | dg.SkipReason:
    config = sources.load()
    today = dt.datetime.now(dt.UTC).date()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    first_tick = context.cursor is None
    requests: list[dg.RunRequest] = []
    current: dict[str, str] = {}
    for source in config:
        if source.produces not in ("provider_usage", "invoices") or source.location is None:
            continue
        for path, version in sorted(file_versions(source).items()):
            key = f"{path}@{version}"
            current[key] = version
            if first_tick or key in seen:
                continue
            if source.produces == "invoices":
                for month in affected_months(source, path, today):
                    requests.append(
                        dg.RunRequest(
                            run_key=f"{key}:{month}",
                            job_name=INVOICE_JOB,
                            partition_key=month,
                            tags={"aispend/trigger": "billing_file", "aispend/source": source.name},
                        )
                    )
            else:
                for day in affected_days(source, path, today):
                    requests.append(
                        dg.RunRequest(
                            run_key=f"{key}:{day}",
                            job_name=DAILY_JOB,
                            partition_key=day,
                            asset_selection=[dg.AssetKey(k) for k in BILLING_RERUN_ASSETS],
                            tags={"aispend/trigger": "billing_file", "aispend/source": source.name},
                        )
                    )
    cursor = json.dumps({**seen, **current}, sort_keys=True)
    if first_tick:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"first tick: recorded {len(current)} billing file(s)"),
            cursor=cursor,
        )
    if not requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason("no new billing or invoice file"), cursor=cursor
        )
    return dg.SensorResult(run_requests=_dedupe(requests), cursor=cursor)


def _dedupe(requests: list[dg.RunRequest]) -> list[dg.RunRequest]:
    """One run per (job, partition) even when several new files touch it."""
    out: dict[tuple[str | None, str | None], dg.RunRequest] = {}
    for request in requests:
        out.setdefault((request.job_name, request.partition_key), request)
    return list(out.values())


# --------------------------------------------------------------------------- failures
def _outbox(lake: LakeResource) -> Path:
    return outbox_dir(lake.root())


def _partition(run: Any) -> str | None:
    return run.tags.get("dagster/partition")


@dg.run_failure_sensor(
    name="run_failure_notice",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed run -> a failure notice in the outbox.",
)
def run_failure_notice(context: dg.RunFailureSensorContext, lake: LakeResource) -> None:
    run = context.dagster_run
    failures = []
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        # The user's exception is the cause; the error itself says "Error occurred while...".
        cause = error.cause if error is not None and error.cause is not None else error
        message = cause.message.strip().splitlines()[0] if cause and cause.message else ""
        failures.append(f"step {event.step_key}: {message}")
    failures += failed_checks(context.instance, run.run_id)  # a failed blocking check
    if not failures and context.failure_event.message:
        failures.append(context.failure_event.message.strip().splitlines()[0])
    notice = FailureNotice(
        kind=RUN_FAILED,
        run_id=run.run_id,
        job_name=run.job_name,
        partition=_partition(run),
        failures=failures,
        occurred_at=dt.datetime.now(dt.UTC),
    )
    path = deliver(notice, _outbox(lake))
    context.log.info(f"failure notice written to {path}")


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """One line per failed ERROR-severity asset check of a run."""
    lines = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        event = record.get_dagster_event()
        data = event.event_specific_data
        if data is None or data.passed or data.severity != dg.AssetCheckSeverity.ERROR:
            continue
        lines.append(f"check {data.asset_key.to_user_string()}:{data.check_name} failed")
    return sorted(set(lines))


@dg.run_status_sensor(
    name="failed_check_notice",
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A run that succeeded with a failed ERROR check (a blocking check stops "
    "downstream assets but not the run) -> a failure notice in the outbox.",
)
def failed_check_notice(
    context: dg.RunStatusSensorContext, lake: LakeResource
) -> dg.SkipReason | None:
    run = context.dagster_run
    failures = failed_checks(context.instance, run.run_id)
    if not failures:
        return dg.SkipReason(f"run {run.run_id}: every ERROR check passed")
    notice = FailureNotice(
        kind=CHECK_FAILED,
        run_id=run.run_id,
        job_name=run.job_name,
        partition=_partition(run),
        failures=failures,
        occurred_at=dt.datetime.now(dt.UTC),
    )
    path = deliver(notice, _outbox(lake))
    context.log.info(f"check failure notice written to {path}")
    return None


# --------------------------------------------------------------------------- alert outbox
OUTBOX_JOB = "aispend_outbox"


@dg.op(
    name="deliver_outbox",
    description="notify.outbox.deliver: send every alert email that is due; failures are "
    "recorded in the outbox and retried on the next run.",
)
def deliver_outbox(
    context: dg.OpExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    alerts: AlertsResource,
) -> None:
    from notify import outbox

    cfg = alerts.load_for(lake.root())
    report = outbox.deliver(
        warehouse.engine(), transport(lake.root(), cfg), max_attempts=cfg.email.max_attempts
    )
    context.log.info(
        f"outbox: {report.sent} sent, {report.failed} failed (retried later), "
        f"{report.dead} given up after {cfg.email.max_attempts} attempts"
    )
    for error in report.errors[:5]:
        context.log.warning(f"outbox: {error}")


@dg.job(name=OUTBOX_JOB, description="Send the alert emails that are due in the outbox.")
def outbox_job() -> None:
    deliver_outbox()


@dg.schedule(
    name="outbox_retry",
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    job=outbox_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes: retry alert emails the mail server did not take.",
)
def outbox_retry(
    context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource
) -> dg.RunRequest | dg.SkipReason:
    tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    due = due_messages(warehouse.engine(), tick.astimezone(dt.UTC))
    if not due:
        return dg.SkipReason("outbox: nothing due")
    return dg.RunRequest(
        run_key=f"outbox:{tick.astimezone(dt.UTC).isoformat()}",
        tags={"aispend/trigger": "outbox_retry", "aispend/due": str(due)},
    )
