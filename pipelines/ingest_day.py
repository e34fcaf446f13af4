"""One partition's ingest from every configured source (pure Polars, no dagster).

* `ingest_requests(config, day)`: every `requests` source (gateway logs, LiteLLM database)
  -> normalized requests, duplicates, quarantine and per-source counts of the UTC day.
* `ingest_provider_usage(config, day)`: every `provider_usage` source (usage/cost reports,
  billing exports) -> provider usage rows dated that day, quarantine, counts.
* `ingest_invoices(config, month)`: every `invoices` source -> invoice lines whose billing
  period starts in that month (`month` is its first day), quarantine, counts.

Which files are read and which rows a partition keeps: `pipelines.windows`. Counts have one
row per source and partition (`day` = the partition's day or month start, also for a
source without files that day: a row of zeros says it was looked at) and obey
rows_read = normalized + duplicates + quarantined, where rows_read counts the rows this
partition owns. `files` lists each file read: rows in the file, rows this partition kept.
Sources, files and lines are read in a fixed order that every step keeps (the small frames
are sorted too), so the same inputs give the same bytes in the lake.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import fsspec.core
import polars as pl

import lake
from pipelines.windows import (
    DAILY,
    MONTHLY,
    Grain,
    assign_rows,
    assign_rows_lazy,
    plan_window,
)
from sources.base import SourceContext
from sources.config import Source, SourcesConfig
from sources.ingest import adapt_file, spill_file
from sources.registry import KINDS
from transforms.normalize import split_requests_streamed
from transforms.schema import (
    DUPLICATES_SCHEMA,
    INGEST_COUNTS_SCHEMA,
    INVOICE_LINE_SCHEMA,
    LINEAGE_SCHEMA,
    NORMALIZED_SCHEMA,
    PROVIDER_USAGE_SCHEMA,
    QUARANTINE_SCHEMA,
    ROW_ISSUES,
)
from transforms.split import split_rows

FILES_SCHEMA = pl.Schema(
    {"source": pl.String, "file": pl.String, "rows_in_file": pl.Int64, "rows_kept": pl.Int64}
)
INVOICE_LINES_SCHEMA = pl.Schema({**INVOICE_LINE_SCHEMA, **LINEAGE_SCHEMA})
_LINEAGE_ORDER = ["source", "source_file", "source_line"]


@dataclass
class PartitionIngest:
    """What one partition's ingest produced: `rows` is normalized requests, provider usage
    or invoice lines; `duplicates` is empty for billing sources."""

    rows: pl.DataFrame
    duplicates: pl.DataFrame
    quarantine: pl.DataFrame
    counts: pl.DataFrame
    files: pl.DataFrame
    sources: list[str] = field(default_factory=list)

    def accounting_problems(self) -> list[str]:
        """Per source: rows_read != normalized + duplicates + quarantined, or counts that do
        not match the frames actually written."""
        return _accounting_problems(self.counts, self.rows.height, self.duplicates, self.quarantine)


def _accounting_problems(
    counts: pl.DataFrame, rows: int, duplicates: pl.DataFrame, quarantine: pl.DataFrame
) -> list[str]:
    problems = []
    for row in counts.iter_rows(named=True):
        parts = row["normalized"] + row["duplicates"] + row["quarantined"]
        if row["rows_read"] != parts:
            problems.append(
                f"{row['source']} {row['day']}: read {row['rows_read']} != normalized "
                f"{row['normalized']} + duplicates {row['duplicates']} + quarantined "
                f"{row['quarantined']}"
            )
    for name, written, column in (
        ("normalized", rows, "normalized"),
        ("duplicates", duplicates.height, "duplicates"),
        ("quarantine", quarantine.height, "quarantined"),
    ):
        counted = int(counts.get_column(column).sum() or 0)
        if written != counted:
            problems.append(f"{name}: {written} rows written != {counted} counted")
    return problems


def _count_by_source(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    return frame.group_by("source").agg(pl.len().cast(pl.Int64).alias(name))


def _counts(
    key: dt.date,
    read: dict[str, int],
    rows: pl.DataFrame | dict[str, int],
    duplicates: pl.DataFrame,
    quarantine: pl.DataFrame,
) -> pl.DataFrame:
    """Counts per source; `rows` is the kept frame, or its row count per source when the
    rows were streamed elsewhere (counted while splitting)."""
    base = pl.DataFrame(
        {"source": list(read), "rows_read": list(read.values())},
        schema={"source": pl.String, "rows_read": pl.Int64},
    )
    kept = (
        pl.DataFrame(
            {"source": list(rows), "normalized": list(rows.values())},
            schema={"source": pl.String, "normalized": pl.Int64},
        )
        if isinstance(rows, dict)
        else _count_by_source(rows, "normalized")
    )
    base = base.join(kept, on="source", how="left")
    for frame, name in ((duplicates, "duplicates"), (quarantine, "quarantined")):
        base = base.join(_count_by_source(frame, name), on="source", how="left")
    return (
        base.with_columns(
            pl.lit(key, pl.Date).alias("day"),
            pl.col("normalized", "duplicates", "quarantined").fill_null(0),
        )
        .select(INGEST_COUNTS_SCHEMA.names())
        .cast(dict(INGEST_COUNTS_SCHEMA))  # type: ignore[arg-type]
        .sort("source")
    )


def _sources(config: SourcesConfig, produces: str) -> list[Source]:
    return sorted((s for s in config if s.produces == produces), key=lambda s: s.name)


def _read_window(
    config: SourcesConfig,
    source: Source,
    key: dt.date,
    grain: Grain,
    event: pl.Expr,
    convert: str,
    workdir: Path,
    files: list[tuple[str, str, int, int]],
) -> pl.DataFrame | None:
    """Adapter output of the window's files, restricted to the rows partition `key` owns."""
    plan = plan_window(config, source, key, grain)
    parts = []
    for file in plan.files:
        ctx = SourceContext(
            name=source.name,
            kind=source.kind,
            file=file.path,
            timezone=source.timezone,
            partition_day=file.home,
        )
        if source.produces == "requests":
            adapted = _adapt(config, source, convert, ctx, workdir)
        else:
            adapted = _adapt_cached(config, source, convert, ctx, workdir, _version(file.path))
        kept = assign_rows(adapted, event, plan, file, ROW_ISSUES)
        files.append((source.name, file.path, adapted.height, kept.height))
        parts.append(kept)
    if not parts:
        return None
    return pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]


def _adapt(
    config: SourcesConfig, source: Source, convert: str, ctx: SourceContext, workdir: Path
) -> pl.DataFrame:
    module = KINDS[source.kind].load()
    path = config.local_path(ctx.file, workdir)
    if convert == "to_canonical":
        # Batched JSONL / lazy Parquet: the verbatim record only on rows to quarantine.
        return adapt_file(module, path, ctx)
    raw = module.read(path)
    adapted: pl.DataFrame = getattr(module, convert)(raw.lazy(), ctx).collect()
    return adapted


_CACHE: OrderedDict[tuple[object, ...], pl.DataFrame] = OrderedDict()
_CACHE_FILES = 64


def _adapt_cached(
    config: SourcesConfig,
    source: Source,
    convert: str,
    ctx: SourceContext,
    workdir: Path,
    version: str | None,
) -> pl.DataFrame:
    """Billing files are monthly and read by every day of the month: parse each version of
    a file once per process (keyed by size and mtime/ETag; no version, no cache)."""
    if version is None:
        return _adapt(config, source, convert, ctx, workdir)
    key = (source.name, source.kind, source.timezone, ctx.file, ctx.partition_day, version)
    cached = _CACHE.get(key)
    if cached is None:
        cached = _adapt(config, source, convert, ctx, workdir)
        _CACHE[key] = cached
        while len(_CACHE) > _CACHE_FILES:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return cached


def _version(path: str) -> str | None:
    try:
        fs, fs_path = fsspec.core.url_to_fs(path)
        info = fs.info(fs_path)
    except (OSError, ValueError):
        return None
    stamp = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    return None if stamp is None else f"{info.get('size')}:{stamp}"


def _files_frame(files: list[tuple[str, str, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(files, schema=FILES_SCHEMA, orient="row").sort("source", "file")


def _owned_quarantine(frame: pl.DataFrame, key: dt.date) -> pl.DataFrame:
    # Counted under the partition that owns it: an orphan's own date is in its reason.
    return frame.with_columns(pl.lit(key, pl.Date).alias("day")).cast(
        dict(QUARANTINE_SCHEMA)  # type: ignore[arg-type]
    )


def _empty(schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


@dataclass
class StreamedRequests:
    """What `stream_requests` produced: the normalized rows are in the lake (`path`,
    `row_count` rows counted in the written file), the small outputs in memory."""

    path: str
    row_count: int
    duplicates: pl.DataFrame
    quarantine: pl.DataFrame
    counts: pl.DataFrame
    files: pl.DataFrame
    sources: list[str] = field(default_factory=list)

    def accounting_problems(self) -> list[str]:
        """As `PartitionIngest.accounting_problems`, against the rows actually written."""
        return _accounting_problems(self.counts, self.row_count, self.duplicates, self.quarantine)

    def scan_rows(self, base: str, day: dt.date) -> pl.LazyFrame:
        return lake.scan_partition(base, NORMALIZED, day)


NORMALIZED = "normalized_requests"


def stream_requests(
    config: SourcesConfig, day: dt.date, base: str, workdir: Path | None = None
) -> StreamedRequests:
    """Normalized requests of UTC `day` from every request source, streamed into the lake
    partition `normalized_requests` of `base` (atomic), so that a day of requests is never
    whole in memory: each file's canonical rows are spilled to scratch Parquet (a Parquet
    file mapped streaming, a JSONL file batch by batch), split there (only the dedupe keys
    of clean rows are held) and the normalized rows streamed from the scratch files into
    the lake. Duplicates, quarantine and counts are small and returned."""
    normalized: list[pl.LazyFrame] = []
    duplicates, quarantine = [], []
    read: dict[str, int] = {}
    kept: dict[str, int] = {}
    files: list[tuple[str, str, int, int]] = []
    sources = _sources(config, "requests")
    with tempfile.TemporaryDirectory(prefix="aispend-ingest-") as tmp:
        scratch = Path(tmp)
        for index, source in enumerate(sources):
            if source.is_database:
                frames, rows_read = _database_day(source, day)
                normalized.append(frames["normalized"].lazy())
                kept[source.name] = frames["normalized"].height
                duplicates.append(frames["duplicates"])
                quarantine.append(frames["quarantine"])
                read[source.name] = rows_read
                continue
            canonical = _spill_window(
                config, source, day, workdir or scratch / "fetch", scratch / f"s{index}", files
            )
            if canonical is None:
                read[source.name] = 0
                continue
            split = split_requests_streamed(canonical, day)
            read[source.name] = split.rows_read
            kept[source.name] = split.normalized_rows
            normalized.append(split.normalized)
            duplicates.append(split.duplicates)
            quarantine.append(split.quarantine)
        rows = (
            pl.concat([_conform(f) for f in normalized], how="vertical")
            if normalized
            else _empty(NORMALIZED_SCHEMA).lazy()
        )
        path = lake.sink_partition(base, NORMALIZED, day, rows)
    row_count = int(lake.scan_partition(base, NORMALIZED, day).select(pl.len()).collect().item())
    dups = _concat(duplicates, DUPLICATES_SCHEMA).with_columns(pl.lit(day, pl.Date).alias("day"))
    quar = _owned_quarantine(_concat(quarantine, QUARANTINE_SCHEMA), day)
    return StreamedRequests(
        path=path,
        row_count=row_count,
        duplicates=dups.sort(_LINEAGE_ORDER, nulls_last=True, maintain_order=True),
        quarantine=quar.sort(_LINEAGE_ORDER, nulls_last=True, maintain_order=True),
        counts=_counts(day, read, kept, dups, quar),
        files=_files_frame(files),
        sources=[s.name for s in sources],
    )


def _conform(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.select(NORMALIZED_SCHEMA.names()).cast(dict(NORMALIZED_SCHEMA))  # type: ignore[arg-type]


def _spill_window(
    config: SourcesConfig,
    source: Source,
    key: dt.date,
    workdir: Path,
    scratch: Path,
    files: list[tuple[str, str, int, int]],
) -> pl.LazyFrame | None:
    """`_read_window` for request sources, lazily over spilled scratch Parquet."""
    plan = plan_window(config, source, key, DAILY)
    module = KINDS[source.kind].load()
    parts = []
    for number, file in enumerate(plan.files):
        ctx = SourceContext(
            name=source.name,
            kind=source.kind,
            file=file.path,
            timezone=source.timezone,
            partition_day=file.home,
        )
        local = config.local_path(ctx.file, workdir)
        adapted = spill_file(module, local, ctx, scratch / f"f{number}")
        in_file = int(adapted.select(pl.len()).collect().item())
        kept, rows_kept = assign_rows_lazy(
            adapted, pl.col("started_at").dt.date(), plan, file, ROW_ISSUES
        )
        files.append((source.name, file.path, in_file, rows_kept))
        if rows_kept:
            parts.append(kept)
    if not parts:
        return None
    return pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]


def ingest_requests(
    config: SourcesConfig, day: dt.date, workdir: Path | None = None
) -> PartitionIngest:
    """Normalized requests of UTC `day` from every request source, in memory
    (`stream_requests` into a scratch lake, read back)."""
    with tempfile.TemporaryDirectory(prefix="aispend-ingest-lake-") as base:
        streamed = stream_requests(config, day, base, workdir)
        rows = lake.read_partition(base, NORMALIZED, day)
    return PartitionIngest(
        rows=rows,
        duplicates=streamed.duplicates,
        quarantine=streamed.quarantine,
        counts=streamed.counts,
        files=streamed.files,
        sources=streamed.sources,
    )


def _database_day(source: Source, day: dt.date) -> tuple[dict[str, pl.DataFrame], int]:
    """A LiteLLM database: the rows whose startTime falls on the day (no files, no window)."""
    from sources.litellm_db import database_url, ingest_spend_logs

    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    url = database_url(url_env=source.credentials["url_env"])
    result = ingest_spend_logs(
        url,
        start,
        start + dt.timedelta(days=1),
        name=source.name,
        timezone=source.timezone,
        **{k: v for k, v in source.options.items() if k in ("table", "schema")},
    )
    frames = {k: result.frames[k] for k in ("normalized", "duplicates", "quarantine")}
    return frames, result.records_read


def _concat(frames: list[pl.DataFrame], schema: pl.Schema) -> pl.DataFrame:
    if not frames:
        return _empty(schema)
    frame = pl.concat([f.select(schema.names()) for f in frames], how="vertical_relaxed")
    return frame.cast(dict(schema))  # type: ignore[arg-type]


def _ingest_billing(
    config: SourcesConfig,
    key: dt.date,
    grain: Grain,
    produces: str,
    schema: pl.Schema,
    date_column: str,
    convert: str,
    workdir: Path | None,
) -> PartitionIngest:
    kept, quarantine = [], []
    read: dict[str, int] = {}
    files: list[tuple[str, str, int, int]] = []
    sources = _sources(config, produces)
    with tempfile.TemporaryDirectory(prefix="aispend-fetch-") as tmp:
        for source in sources:
            adapted = _read_window(
                config,
                source,
                key,
                grain,
                pl.col(date_column),
                convert,
                workdir or Path(tmp),
                files,
            )
            if adapted is None or adapted.is_empty():
                read[source.name] = 0
                continue
            split = split_rows(adapted.lazy(), schema, date_column, key)
            rows, quar = pl.collect_all([split.kept, split.quarantine])
            read[source.name] = adapted.height
            kept.append(rows)
            quarantine.append(quar)
    rows = _concat(kept, schema)
    quar = _owned_quarantine(_concat(quarantine, QUARANTINE_SCHEMA), key)
    dups = _empty(DUPLICATES_SCHEMA)
    return PartitionIngest(
        rows=rows.sort(_LINEAGE_ORDER, nulls_last=True, maintain_order=True),
        duplicates=dups,
        quarantine=quar.sort(_LINEAGE_ORDER, nulls_last=True, maintain_order=True),
        counts=_counts(key, read, rows, dups, quar),
        files=_files_frame(files),
        sources=[s.name for s in sources],
    )


def ingest_provider_usage(
    config: SourcesConfig, day: dt.date, workdir: Path | None = None
) -> PartitionIngest:
    """Provider usage rows dated `day` from every usage/cost report and billing export."""
    return _ingest_billing(
        config, day, DAILY, "provider_usage", PROVIDER_USAGE_SCHEMA, "date", "to_usage", workdir
    )


def ingest_invoices(
    config: SourcesConfig, month: dt.date, workdir: Path | None = None
) -> PartitionIngest:
    """Invoice lines whose billing period starts in `month` (any day of it)."""
    return _ingest_billing(
        config,
        month.replace(day=1),
        MONTHLY,
        "invoices",
        INVOICE_LINES_SCHEMA,
        "billing_period_start",
        "to_invoice_lines",
        workdir,
    )
