"""Which source files a partition reads, and which partition owns each row (no dagster).

Grain: one partition is one UTC day (gateway logs, provider usage) or one calendar month
(invoice lines). A row belongs to the partition of its event date (`started_at` day,
provider usage `date`, invoice `billing_period_start` month), wherever its file is:

* daily partition D of a source with `trailing_days: N` reads the files whose location
  pattern expands from the days D-N .. D+N. Late rows land in later files (a row started at
  23:59 on D logged in the file of D+1), and a file named by a local day holds rows of the
  UTC day before or after; N = 0 reads the file of D only. Of everything read, the rows of
  D are kept, so a rerun of D picks up late rows that arrived since.
* monthly partition M reads the files of M and M+1 (invoices are issued after the month).
* a row no partition would read (its event date is outside every window that reads its
  file, e.g. a correction for a day long past) is not dropped: its file's *home* partition
  (the first day whose location expands to the file) quarantines it with reason
  `outside_late_window:<date>`. Rows whose date cannot be read go to the home partition too.
  A location without a `{date}` pattern is read for every partition; its home is the earliest
  event date in the file.

So every row of every file is counted by exactly one partition, whatever the window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from sources.config import Source, SourcesConfig
from transforms.canonical_reader import InputError

MAX_HOME_WALK_DAYS = 400  # a location pattern coarser than a year is not a real case

OUTSIDE_WINDOW = "outside_late_window"


@dataclass(frozen=True)
class Grain:
    """Daily or monthly partitions: the days a partition covers and the days it reads."""

    monthly: bool = False

    def owner(self, day: dt.date) -> dt.date:
        return day.replace(day=1) if self.monthly else day

    def covered(self, key: dt.date) -> list[dt.date]:
        if not self.monthly:
            return [key]
        return _days(key, _next_month(key))

    def read_days(self, key: dt.date, trailing_days: int) -> list[dt.date]:
        if self.monthly:
            return _days(key, _next_month(_next_month(key)))
        return [key + dt.timedelta(days=n) for n in range(-trailing_days, trailing_days + 1)]


DAILY = Grain(False)
MONTHLY = Grain(True)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days)]


@dataclass
class SourceFile:
    """One file a partition reads, with the expansion of the location that named it."""

    path: str
    expansion: str
    home: dt.date | None  # owner of undatable rows; None: location without {date}


@dataclass
class WindowPlan:
    source: Source
    key: dt.date  # the partition: a day, or the first day of a month
    grain: Grain
    files: list[SourceFile] = field(default_factory=list)

    def readable_by_owner(self, event: dt.date, expansion: str) -> bool:
        """Does the partition owning `event` read files of this expansion?"""
        owner = self.grain.owner(event)
        return any(
            _expand(self.source, d) == expansion
            for d in self.grain.read_days(owner, self.source.trailing_days)
        )


def _expand(source: Source, day: dt.date) -> str:
    assert source.location is not None
    return source.location.format(date=day)


def plan_window(config: SourcesConfig, source: Source, key: dt.date, grain: Grain) -> WindowPlan:
    """The files of `source` the partition `key` reads (sorted, each once)."""
    plan = WindowPlan(source, key, grain)
    seen: set[str] = set()
    expansions: dict[str, dt.date] = {}
    for day in grain.read_days(key, source.trailing_days):
        expansions.setdefault(_expand(source, day), day)
    for expansion, day in expansions.items():
        for path in config.files_for(source, day):
            if path in seen:
                continue
            seen.add(path)
            plan.files.append(SourceFile(path, expansion, _home(source, day, grain)))
    plan.files.sort(key=lambda f: f.path)
    return plan


def _home(source: Source, day: dt.date, grain: Grain) -> dt.date | None:
    """The owner of the first day whose location expands like `day`'s."""
    if not source.has_date_pattern:
        return None
    expansion = _expand(source, day)
    first = day
    for _ in range(MAX_HOME_WALK_DAYS):
        before = first - dt.timedelta(days=1)
        if _expand(source, before) != expansion:
            break
        first = before
    return grain.owner(first)


def assign_rows(
    frame: pl.DataFrame,
    event_day: pl.Expr,
    plan: WindowPlan,
    file: SourceFile,
    issues_column: str,
) -> pl.DataFrame:
    """The rows of one file that partition `plan.key` owns.

    Rows of other partitions are dropped (their own partition reads them); rows no partition
    reads are kept here, flagged `outside_late_window:<date>` in `issues_column`, when this
    partition is the file's home."""
    kept, _ = assign_rows_lazy(frame.lazy(), event_day, plan, file, issues_column)
    return kept.collect()


def assign_rows_lazy(
    frame: pl.LazyFrame,
    event_day: pl.Expr,
    plan: WindowPlan,
    file: SourceFile,
    issues_column: str,
) -> tuple[pl.LazyFrame, int]:
    """`assign_rows` for a LazyFrame (a file's adapted rows spilled to disk): the rows kept,
    still lazy, and how many there are. Only the event day of every row is read to decide."""
    events = frame.group_by(event_day.alias("_event")).agg(pl.len().alias("_rows")).collect()
    home = file.home
    if home is None:
        first = events.get_column("_event").min()
        if first is None and events.height:
            raise InputError(
                f"{file.path}: no row has a readable date and the location of source "
                f"{plan.source.name} has no {{date}} pattern, so no partition can own its rows"
            )
        home = plan.grain.owner(first) if isinstance(first, dt.date) else plan.key
    days = [d for d in events.get_column("_event").to_list() if d is not None]
    orphans = [d for d in days if not plan.readable_by_owner(d, file.expansion)]
    owner = pl.col("_event").map_batches(
        lambda s: s.dt.truncate("1mo") if plan.grain.monthly else s, return_dtype=pl.Date
    )
    is_orphan = pl.col("_event").is_in(orphans) if orphans else pl.lit(False)
    mine = (owner == pl.lit(plan.key)) & ~is_orphan
    homeless = pl.col("_event").is_null() | is_orphan
    if home == plan.key:
        mine = mine | homeless
    mine = mine.fill_null(False)
    # Decided per distinct event day (a handful of values), then applied to the rows.
    decided = events.with_columns(mine.alias("_keep"))
    kept_rows = int(decided.filter("_keep").get_column("_rows").sum() or 0)
    total = int(decided.get_column("_rows").sum() or 0)
    if kept_rows == total:
        # The usual case (a day's own file, every row of the day): no filter at all.
        kept = frame
    else:
        kept_days = decided.filter("_keep").get_column("_event")
        keep = event_day.is_in(kept_days.drop_nulls().implode()).fill_null(False)
        if kept_days.null_count():
            keep = keep | event_day.is_null()
        kept = frame.filter(keep)
    if orphans and home == plan.key:
        reason = pl.concat_str(pl.lit(f"{OUTSIDE_WINDOW}:"), event_day.cast(pl.String))
        kept = kept.with_columns(
            pl.when(event_day.is_in(orphans))
            .then(pl.coalesce(pl.col(issues_column), reason))
            .otherwise(pl.col(issues_column))
            .alias(issues_column)
        )
    return kept, kept_rows
