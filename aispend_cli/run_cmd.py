"""`aispend run --from DATE --to DATE`: every asset of those days, in this process.

One Dagster run per UTC day (job `aispend_daily`, oldest first), then one per billing month
the range touches (job `aispend_invoices`), each with the in-process executor. The Dagster
instance is `$DAGSTER_HOME` when set (runs then show in `make ui`), else an ephemeral one.
Every partition is replaced whole (lake swap, warehouse delete + insert in one
transaction), so a rerun of any range gives the same lake bytes and warehouse rows, and a
run killed half-way is repaired by running the same range again.

Exit codes: 0 every run succeeded and no ERROR-severity check failed; 1 a run failed or a
check failed (one line each on stderr: day, step or check, first line of the error); 2 a
user mistake (bad dates, unreadable sources.yaml), nothing run.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transforms.canonical_reader import InputError

MAX_DAYS = 3660
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class PartitionOutcome:
    job: str
    partition: str
    success: bool
    seconds: float
    errors: list[str] = field(default_factory=list)  # failed steps and ERROR checks
    warnings: list[str] = field(default_factory=list)  # failed WARN checks
    run_id: str = ""


@dataclass
class RunSummary:
    outcomes: list[PartitionOutcome]
    data_dir: str
    warehouse_url: str
    instance: str

    @property
    def ok(self) -> bool:
        return all(o.success and not o.errors for o in self.outcomes)


def month_starts(start: dt.date, end: dt.date) -> list[dt.date]:
    months, month = [], start.replace(day=1)
    while month <= end:
        months.append(month)
        month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return months


def configure_environment(config: Path | None, data_dir: Path | str | None) -> None:
    """Point the definitions at the given files (they read the environment when loaded)."""
    if data_dir is not None:
        os.environ["AISPEND_DATA_DIR"] = str(data_dir)
    if config is not None:
        os.environ["AISPEND_CONFIG"] = str(Path(config).resolve())
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


def check_inputs(start: dt.date, end: dt.date) -> None:
    from pipelines.partitions import DAILY_START
    from pipelines.resources import data_dir, default_config_path
    from sources.config import load_sources

    if end < start:
        raise InputError(f"--to {end} is before --from {start}")
    if (end - start).days >= MAX_DAYS:
        raise InputError(f"--from {start} --to {end}: more than {MAX_DAYS} days")
    first = dt.date.fromisoformat(DAILY_START)
    if start < first:
        raise InputError(
            f"--from {start} is before the first partition {first} (set AISPEND_START_DATE)"
        )
    today = dt.datetime.now(dt.UTC).date()
    if end > today:
        raise InputError(f"--to {end} is in the future (today is {today} UTC)")
    load_sources(default_config_path(data_dir()))  # every problem of the file, before running


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return " ".join(lines[0].split()) if lines else "unknown error"


def _outcome(job: str, partition: str, result: Any, seconds: float) -> PartitionOutcome:
    import dagster as dg

    outcome = PartitionOutcome(job, partition, bool(result.success), seconds, run_id=result.run_id)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.event_specific_data.error
            cause = error.cause if error is not None and error.cause is not None else error
            message = _first_line(cause.message if cause is not None else None)
            outcome.errors.append(f"{partition} {event.step_key}: {message}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            if data.passed:
                continue
            line = f"{partition} check {data.asset_key.to_user_string()}:{data.check_name} failed"
            if data.severity == dg.AssetCheckSeverity.ERROR:
                outcome.errors.append(line)
            else:
                outcome.warnings.append(line)
    if not outcome.success and not outcome.errors:
        outcome.errors.append(f"{partition}: run failed")
    return outcome


def run_pipeline(
    start: dt.date,
    end: dt.date,
    *,
    on_partition: Callable[[PartitionOutcome, int, int], None] | None = None,
    invoices: bool = True,
    instance: Any = None,
) -> RunSummary:
    """Materialize every daily asset of [start, end] and the invoice months it touches, on
    `instance` (default: $DAGSTER_HOME when set, else an ephemeral instance)."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.resources import data_dir, default_warehouse_url

    check_inputs(start, end)
    definitions = defs()
    daily = definitions.resolve_job_def("aispend_daily")
    monthly = definitions.resolve_job_def("aispend_invoices")
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    plan: list[tuple[Any, str]] = [(daily, d.isoformat()) for d in days]
    if invoices:
        plan += [(monthly, m.isoformat()) for m in month_starts(start, end)]
    owned = instance is None
    if instance is None:
        home = os.environ.get("DAGSTER_HOME")
        instance = dg.DagsterInstance.get() if home else dg.DagsterInstance.ephemeral()
    outcomes = []
    try:
        for index, (job, partition) in enumerate(plan, start=1):
            began = dt.datetime.now(dt.UTC)
            result = job.execute_in_process(
                partition_key=partition,
                instance=instance,
                run_config=QUIET,
                raise_on_error=False,
                tags={"aispend/trigger": "cli"},
            )
            seconds = (dt.datetime.now(dt.UTC) - began).total_seconds()
            outcome = _outcome(job.name, partition, result, seconds)
            outcomes.append(outcome)
            if on_partition is not None:
                on_partition(outcome, index, len(plan))
    finally:
        if owned:
            instance.dispose()
    return RunSummary(
        outcomes=outcomes,
        data_dir=data_dir(),
        warehouse_url=default_warehouse_url(data_dir()),
        instance=os.environ.get("DAGSTER_HOME", "") or "ephemeral",
    )


def run_with_progress(start: dt.date, end: dt.date, *, show: bool = True) -> RunSummary:
    """run_pipeline with a rich progress bar on stderr (none when `show` is false)."""
    if not show:
        return run_pipeline(start, end)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]aispend run[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("loading definitions", total=None)

        def advance(outcome: PartitionOutcome, index: int, total: int) -> None:
            mark = "ok" if outcome.success and not outcome.errors else "FAILED"
            monthly = outcome.job == "aispend_invoices"
            label = f"month {outcome.partition[:7]}" if monthly else f"day {outcome.partition}"
            progress.update(task, total=total, completed=index, description=f"{label} {mark}")

        return run_pipeline(start, end, on_partition=advance)


def print_summary(summary: RunSummary, echo: Callable[..., None]) -> None:
    days = [o for o in summary.outcomes if o.job == "aispend_daily"]
    months = [o for o in summary.outcomes if o.job != "aispend_daily"]
    failed = [o for o in summary.outcomes if not o.success or o.errors]
    seconds = sum(o.seconds for o in summary.outcomes)
    echo(
        f"aispend run: {len(days)} day(s), {len(months)} invoice month(s), "
        f"{len(failed)} failed, {seconds:.1f} s"
    )
    for outcome in summary.outcomes:
        for line in outcome.warnings:
            echo(f"warning: {line}", err=True)
        for line in outcome.errors:
            echo(f"error: {line}", err=True)
    echo(f"lake       {summary.data_dir.rstrip('/')}/lake")
    echo(f"warehouse  {_masked(summary.warehouse_url)}")
    echo(f"dagster    {summary.instance}")


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def run_command(
    date_from: dt.date,
    date_to: dt.date,
    config: Path | None,
    data_dir: Path | None,
    progress: bool,
    echo: Callable[..., None],
) -> int:
    """The `aispend run` command body; returns the exit code (user errors raise)."""
    configure_environment(config, data_dir)
    check_inputs(date_from, date_to)  # before the progress bar: a mistake is one line
    summary = run_with_progress(date_from, date_to, show=progress)
    print_summary(summary, echo)
    return 0 if summary.ok else 1
