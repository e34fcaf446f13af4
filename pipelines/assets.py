"""The daily asset chain: raw files -> normalized -> priced -> roll-ups -> warehouse.

Groups (the places later stages hang on):

  raw             external: gateway logs, provider reports, invoices (files in sources.yaml)
  ingest          normalized_requests, request_quarantine, request_duplicates, ingest_counts
  billing         provider_usage (daily), invoice_lines (monthly)
  pricing         priced_requests
  rollups         usage_daily, latency_by_model, latency_by_feature, peaks_by_model
  warehouse       warehouse_daily (every daily table), warehouse_invoices (monthly)
  reconciliation  reconciliation_daily (provisional: priced vs provider usage of the day),
                  monthly_reconciliation (reports.reconciliation: priced vs usage vs invoices)
  anomalies       anomaly_scores + alerts (one step, pipelines.alerting: detect, then the
                  outbox sends each alert once)
  reports         daily_report (reports.from_lake), after the warehouse load, the anomaly
                  scores and the daily reconciliation, so every section is filled

Every asset writes its lake partition(s) through `lake.write_partition` (atomic) and returns
metadata only (no IO manager): downstream assets read the lake partition of their day.
Rerunning a partition rewrites the same bytes and replaces the same warehouse rows.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

import lake as lake_store
from pipelines.alerting import AlertsResource, detect, send
from pipelines.ingest_day import (
    PartitionIngest,
    ingest_invoices,
    ingest_provider_usage,
    stream_requests,
)
from pipelines.monthly import reconcile_day, reconcile_month
from pipelines.partitions import daily_partitions, monthly_partitions
from pipelines.quality_checks import (
    UNKNOWN_MATCH_KINDS,
    accounting_check,
    gx_provider_usage_check,
    gx_requests_check,
    normalized_metadata,
    sources_present_check,
    unknown_model_check,
)
from pipelines.resources import (
    LakeResource,
    PricingCatalogResource,
    QualityResource,
    SourcesResource,
    WarehouseResource,
)
from pipelines.summaries import (
    count_by,
    count_by_counts,
    markdown_table,
    money_text,
    money_total,
    quarantine_summary,
)
from transforms.reprice import reprice
from transforms.usage_rollups import (
    latency_by_feature,
    latency_by_model,
    peaks_by_model,
    usage_daily,
)

RAW = "raw"
INGEST = "ingest"
BILLING = "billing"
PRICING = "pricing"
ROLLUPS = "rollups"
WAREHOUSE = "warehouse"
RECONCILIATION = "reconciliation"
ANOMALIES = "anomalies"
REPORTS = "reports"

raw_gateway_logs = dg.AssetSpec(
    "raw_gateway_logs",
    group_name=RAW,
    description="Gateway request logs (LiteLLM, Helicone, OpenRouter, Cloudflare, OTel, "
    "canonical files, LiteLLM database): every `requests` source of sources.yaml.",
    kinds={"file"},
)
raw_provider_reports = dg.AssetSpec(
    "raw_provider_reports",
    group_name=RAW,
    description="Provider usage/cost reports and billing exports (OpenAI, Anthropic, AWS CUR, "
    "GCP billing, FOCUS): every `provider_usage` source of sources.yaml.",
    kinds={"file"},
)
raw_invoices = dg.AssetSpec(
    "raw_invoices",
    group_name=RAW,
    description="Provider invoices (CSV/JSON lines): every `invoices` source of sources.yaml.",
    kinds={"file"},
)


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _write(base: str, dataset: str, key: dt.date, frame: pl.DataFrame, month: bool = False) -> str:
    return lake_store.write_partition(base, dataset, key, frame, month=month)


def _ingest_metadata(result: PartitionIngest, path: str) -> dict[str, Any]:
    return {
        "dagster/row_count": result.rows.height,
        "path": path,
        "rows_by_source": count_by(result.rows, "source"),
        "files_read": dg.MetadataValue.md(markdown_table(result.files, limit=50)),
        "preview": dg.MetadataValue.md(
            markdown_table(
                result.rows,
                columns=[
                    c
                    for c in ("source", "request_id", "provider", "model", "date")
                    if c in result.rows.columns
                ],
            )
        ),
    }


# --------------------------------------------------------------------------- ingest
@dg.multi_asset(
    name="ingest_requests",
    specs=[
        dg.AssetSpec(
            "normalized_requests",
            group_name=INGEST,
            deps=[raw_gateway_logs],
            kinds={"polars", "parquet"},
            description="Every gateway request attempt that started on the UTC day, "
            "normalized (NORMALIZED_SCHEMA), one row per (source, request_id, attempt).",
        ),
        dg.AssetSpec(
            "request_quarantine",
            group_name=INGEST,
            deps=[raw_gateway_logs],
            kinds={"parquet"},
            description="Rows that could not be trusted, with reason and verbatim record.",
        ),
        dg.AssetSpec(
            "request_duplicates",
            group_name=INGEST,
            deps=[raw_gateway_logs],
            kinds={"parquet"},
            description="Repeated deliveries of one (source, request_id, attempt).",
        ),
        dg.AssetSpec(
            "ingest_counts",
            group_name=INGEST,
            deps=[raw_gateway_logs],
            kinds={"parquet"},
            description="Per source and day: rows_read = normalized + duplicates + quarantined.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "gx_requests",
            asset="normalized_requests",
            blocking=True,
            description="Great Expectations suite for normalized requests "
            "(transforms.quality.requests_suite with the partition day).",
        ),
        dg.AssetCheckSpec(
            "accounting_identity",
            asset="ingest_counts",
            blocking=True,
            description="Per source: rows read = normalized + duplicates + quarantined, and "
            "the written frames match the counts. No row lost silently.",
        ),
        dg.AssetCheckSpec(
            "sources_present",
            asset="normalized_requests",
            description="Every request source delivered rows for the day (missing logs "
            "make a day look cheap).",
        ),
    ],
    partitions_def=daily_partitions,
    can_subset=False,
)
def ingest_requests_asset(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    sources: SourcesResource,
    quality: QualityResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Read every request source's files of the day's window, keep the day's rows."""
    day = _day(context)
    base = lake.root()
    # Streamed into the lake: a day of requests is never whole in memory (issue 4).
    result = stream_requests(sources.load(), day, base)
    rows = result.scan_rows(base, day)
    _write(base, "quarantine", day, result.quarantine)
    _write(base, "duplicates", day, result.duplicates)
    _write(base, "ingest_counts", day, result.counts)
    problems = result.accounting_problems()
    yield dg.MaterializeResult(
        asset_key="normalized_requests", metadata=normalized_metadata(result, rows)
    )
    yield dg.MaterializeResult(
        asset_key="request_quarantine",
        metadata={
            "dagster/row_count": result.quarantine.height,
            "by_reason": count_by(result.quarantine, "reason"),
            "preview": dg.MetadataValue.md(
                markdown_table(
                    result.quarantine, columns=["source", "source_line", "reason", "record"]
                )
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key="request_duplicates",
        metadata={
            "dagster/row_count": result.duplicates.height,
            "by_source": count_by(result.duplicates, "source"),
        },
    )
    yield dg.MaterializeResult(
        asset_key="ingest_counts",
        metadata={
            "dagster/row_count": result.counts.height,
            "accounting_identity": "holds" if not problems else "; ".join(problems),
            "counts": dg.MetadataValue.md(markdown_table(result.counts, limit=100)),
        },
    )
    yield accounting_check("ingest_counts", result, problems)
    yield sources_present_check(result)
    yield gx_requests_check(rows, day, quality)


@dg.asset(
    partitions_def=daily_partitions,
    group_name=BILLING,
    deps=[raw_provider_reports],
    kinds={"polars", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            "gx_provider_usage",
            asset="provider_usage",
            description="Great Expectations suite for provider usage (date in partition, "
            "token subsets, currency, credits <= 0). Not blocking: a bad billing line "
            "must not hold back the request roll-ups of the day.",
        ),
        dg.AssetCheckSpec(
            "accounting_identity",
            asset="provider_usage",
            blocking=True,
            description="Per source: rows read = kept + quarantined.",
        ),
    ],
)
def provider_usage(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    sources: SourcesResource,
    quality: QualityResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """What providers say we used on the day (PROVIDER_USAGE_SCHEMA), from every report."""
    day = _day(context)
    result = ingest_provider_usage(sources.load(), day)
    base = lake.root()
    path = _write(base, "provider_usage", day, result.rows)
    _write(base, "provider_usage_quarantine", day, result.quarantine)
    _write(base, "provider_usage_counts", day, result.counts)
    problems = result.accounting_problems()
    net = _net_cost(result.rows)
    yield dg.MaterializeResult(
        metadata={
            **_ingest_metadata(result, path),
            "quarantined": result.quarantine.height,
            "net_cost_usd": money_text(net),
            "accounting_identity": "holds" if not problems else "; ".join(problems),
        }
    )
    yield accounting_check("provider_usage", result, problems)
    yield gx_provider_usage_check(result.rows, day, quality)


def _net_cost(rows: pl.DataFrame) -> Any:
    cost, credits = money_total(rows, "cost_usd"), money_total(rows, "credits_usd")
    if cost is None and credits is None:
        return None
    return (cost or 0) + (credits or 0)


@dg.asset(
    partitions_def=monthly_partitions,
    group_name=BILLING,
    deps=[raw_invoices],
    kinds={"polars", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            "accounting_identity",
            asset="invoice_lines",
            blocking=True,
            description="Per source: rows read = kept + quarantined.",
        )
    ],
)
def invoice_lines(
    context: dg.AssetExecutionContext, lake: LakeResource, sources: SourcesResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Invoice lines whose billing period starts in the month (partition key: its 1st)."""
    month = _day(context)
    result = ingest_invoices(sources.load(), month)
    base = lake.root()
    path = _write(base, "invoice_lines", month, result.rows, month=True)
    _write(base, "invoice_quarantine", month, result.quarantine, month=True)
    _write(base, "invoice_counts", month, result.counts, month=True)
    problems = result.accounting_problems()
    # amount_usd holds the amount as billed, in the line's currency: never add across them.
    rows = result.rows
    by_currency = {
        str(cur): money_text(money_total(rows.filter(pl.col("currency") == cur), "amount_usd"))
        for cur in sorted(rows.get_column("currency").drop_nulls().unique().to_list())
    }
    total = money_total(rows.filter(pl.col("currency") == "USD"), "amount_usd")
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.rows.height,
            "path": path,
            "invoices": int(result.rows.get_column("invoice_id").n_unique()),
            "amount_usd": money_text(total),
            "amount_by_currency": by_currency,
            "quarantined": result.quarantine.height,
            "by_provider": count_by(result.rows, "provider"),
            "files_read": dg.MetadataValue.md(markdown_table(result.files, limit=50)),
        }
    )
    yield accounting_check("invoice_lines", result, problems)


# --------------------------------------------------------------------------- pricing
@dg.asset(
    partitions_def=daily_partitions,
    group_name=PRICING,
    deps=["normalized_requests"],
    kinds={"polars", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            "unknown_model_share",
            asset="priced_requests",
            description="At most 2% of the day's rows have a model or provider the catalog "
            "does not know (they stay unpriced, never $0).",
        )
    ],
)
def priced_requests(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    pricing_catalog: PricingCatalogResource,
    quality: QualityResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The day's normalized requests repriced: list and contract cost per attempt."""
    day = _day(context)
    base = lake.root()
    normalized = lake_scan(base, "normalized_requests", day)
    # Streamed: repricing is row-wise (no order-keeping join), so a day is never whole in memory.
    path = lake_store.sink_partition(
        base, "priced_requests", day, reprice(normalized, pricing_catalog.load())
    )
    priced = lake_scan(base, "priced_requests", day)
    unpriced = priced.filter(pl.col("unpriced_reason").is_not_null())
    totals, reasons, top, unknown = pl.collect_all(
        [
            priced.select(
                pl.len().alias("rows"),
                pl.col("unpriced_reason").is_not_null().sum().alias("unpriced"),
                pl.col("list_cost_usd").sum(),
                pl.col("cost_usd").sum(),
                pl.col("list_cost_usd").is_not_null().any().alias("_any_list"),
                pl.col("cost_usd").is_not_null().any().alias("_any_cost"),
            ),
            unpriced.group_by("unpriced_reason").len(),
            priced.group_by("provider", "model_key")
            .agg(pl.len().alias("requests"), pl.col("cost_usd").sum())
            .sort(
                ["cost_usd", "provider", "model_key"],
                descending=[True, False, False],
                nulls_last=True,
            ),
            priced.filter(pl.col("match_kind").is_in(UNKNOWN_MATCH_KINDS))
            .group_by("provider", "model")
            .len(),
        ]
    )
    row = totals.row(0, named=True)
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": row["rows"],
            "path": path,
            "priced": row["rows"] - row["unpriced"],
            "unpriced": row["unpriced"],
            "unpriced_by_reason": count_by_counts(reasons, "unpriced_reason"),
            "list_cost_usd": money_text(row["list_cost_usd"] if row["_any_list"] else None),
            "cost_usd": money_text(row["cost_usd"] if row["_any_cost"] else None),
            "top_models": dg.MetadataValue.md(markdown_table(top, limit=15)),
        }
    )
    yield unknown_model_check(unknown, row["rows"], quality)


def lake_scan(base: str, dataset: str, day: dt.date) -> pl.LazyFrame:
    return lake_store.scan_partition(base, dataset, day)


# --------------------------------------------------------------------------- roll-ups
ROLLUP_SPECS = [
    dg.AssetSpec(
        name,
        group_name=ROLLUPS,
        deps=["priced_requests"],
        kinds={"polars", "parquet"},
        description=description,
    )
    for name, description in (
        ("usage_daily", "Additive daily usage and cost per provider, model, feature, team."),
        ("latency_by_model", "Latency and TTFT p50/p95/p99 per provider and model."),
        ("latency_by_feature", "Latency and TTFT p50/p95/p99 per feature."),
        ("peaks_by_model", "Peak RPM, TPM and concurrency per provider and model."),
    )
]


@dg.multi_asset(
    name="request_rollups",
    specs=ROLLUP_SPECS,
    partitions_def=daily_partitions,
    can_subset=False,
)
def request_rollups(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> Iterator[dg.MaterializeResult]:
    """The four roll-ups of the day, from one scan of the priced requests."""
    day = _day(context)
    base = lake.root()
    priced = lake_scan(base, "priced_requests", day)
    frames = dict(
        zip(
            ("usage_daily", "latency_by_model", "latency_by_feature", "peaks_by_model"),
            pl.collect_all(
                [
                    usage_daily(priced),
                    latency_by_model(priced),
                    latency_by_feature(priced),
                    peaks_by_model(priced),
                ]
            ),
            strict=True,
        )
    )
    for name, frame in frames.items():
        frame = _sorted(frame)
        path = _write(base, name, day, frame)
        metadata: dict[str, Any] = {"dagster/row_count": frame.height, "path": path}
        if name == "usage_daily":
            metadata["cost_usd"] = money_text(money_total(frame, "cost_usd"))
            metadata["requests"] = int(frame.get_column("requests").sum() or 0)
            metadata["unpriced_requests"] = int(frame.get_column("unpriced_requests").sum() or 0)
        metadata["preview"] = dg.MetadataValue.md(markdown_table(frame, limit=10))
        yield dg.MaterializeResult(asset_key=name, metadata=metadata)


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    """Group-by output order is not stable: sort on the key columns for identical bytes."""
    keys = [
        c
        for c, dtype in frame.schema.items()
        if dtype in (pl.String, pl.Date, pl.Boolean) or isinstance(dtype, pl.Datetime)
    ]
    return frame.sort(keys or frame.columns, nulls_last=True, maintain_order=True)


# --------------------------------------------------------------------------- warehouse
DAILY_TABLES = (
    "usage_daily",
    "latency_by_model",
    "latency_by_feature",
    "peaks_by_model",
    "ingest_counts",
    "quarantine_summary",
    "provider_usage_daily",
)


def daily_tables(base: str, day: dt.date) -> dict[str, pl.DataFrame]:
    """The frames of every daily warehouse table for one day, read from the lake."""
    read = {
        name: lake_store.read_partition(base, name, day)
        for name in ("usage_daily", "latency_by_model", "latency_by_feature", "peaks_by_model")
    }
    counts = [lake_store.read_partition(base, "ingest_counts", day)]
    quarantine = [lake_store.read_partition(base, "quarantine", day)]
    usage = None
    if lake_store.has_partition(base, "provider_usage", day):
        usage = lake_store.read_partition(base, "provider_usage", day)
        counts.append(lake_store.read_partition(base, "provider_usage_counts", day))
        quarantine.append(lake_store.read_partition(base, "provider_usage_quarantine", day))
    read["ingest_counts"] = pl.concat(counts).sort("source", "day")
    read["quarantine_summary"] = quarantine_summary(pl.concat(quarantine))
    if usage is not None:
        read["provider_usage_daily"] = usage
    return read


@dg.asset(
    partitions_def=daily_partitions,
    group_name=WAREHOUSE,
    deps=[
        "usage_daily",
        "latency_by_model",
        "latency_by_feature",
        "peaks_by_model",
        "ingest_counts",
        "request_quarantine",
        "provider_usage",
    ],
    kinds={"sql"},
    # Yesterday's load is due by 04:00 UTC (the nightly run starts at 02:00).
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 4 * * *", lower_bound_delta=dt.timedelta(hours=24), timezone="UTC"
    ),
)
def warehouse_daily(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Every daily warehouse table replaced for the day, each in one transaction."""
    day = _day(context)
    loaded: dict[str, int] = {}
    for table, frame in daily_tables(lake.root(), day).items():
        warehouse.replace_partition(table, day, frame)
        loaded[table] = frame.height
    return dg.MaterializeResult(
        metadata={
            "rows_by_table": loaded,
            "warehouse": dg.MetadataValue.text(_masked(warehouse.url)),
        }
    )


@dg.asset(
    partitions_def=monthly_partitions,
    group_name=WAREHOUSE,
    deps=[invoice_lines],
    kinds={"sql"},
)
def warehouse_invoices(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """The month's invoice lines replaced in the warehouse, in one transaction."""
    month = _day(context)
    frame = lake_store.read_partition(lake.root(), "invoice_lines", month, month=True)
    warehouse.replace_partition("invoice_lines", month, frame)
    return dg.MaterializeResult(metadata={"dagster/row_count": frame.height})


# --------------------------------------------------------------------------- reconciliation
@dg.asset(
    partitions_def=monthly_partitions,
    group_name=RECONCILIATION,
    deps=[warehouse_invoices, "priced_requests", "provider_usage"],
    kinds={"polars", "html"},
    check_specs=[
        dg.AssetCheckSpec(
            "within_tolerance",
            asset="monthly_reconciliation",
            description="Expected cost, provider reports and invoices agree within the "
            "reconciliation tolerances (transforms/reconcile.py).",
        )
    ],
)
def monthly_reconciliation(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The month reconciled (reports.reconciliation.run_month): expected cost from priced
    requests vs provider usage vs invoices; recorded in the warehouse (same inputs, same
    run) and written as HTML/CSV/XLSX under `{data}/reports/reconciliation/`."""
    from reports import reconciliation as recon

    run, recorded, written = reconcile_month(lake.root(), _day(context), warehouse.engine())
    summary = recon.summary_text(run, recorded.run_id)
    yield dg.MaterializeResult(
        metadata={
            "status": run.status,
            "summary": dg.MetadataValue.md("\n".join(f"- {line}" for line in summary)),
            "files": {k: str(v) for k, v in written.items()},
            "reconciliation_run_id": recorded.run_id,
        }
    )
    yield dg.AssetCheckResult(
        check_name="within_tolerance",
        passed=not run.has_variances,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"status": run.status},
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name=RECONCILIATION,
    deps=["priced_requests", "provider_usage"],
    kinds={"polars", "parquet", "sql"},
    check_specs=[
        dg.AssetCheckSpec(
            "within_tolerance",
            asset="reconciliation_daily",
            description="The day's expected cost and the provider usage reports agree within "
            "the reconciliation tolerances. Not blocking: provisional, reports arrive late.",
        )
    ],
)
def reconciliation_daily(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The day reconciled provisionally (reports.reconciliation.run_day): expected cost from
    priced requests vs what providers reported; recorded in the warehouse and written to the
    lake as `reconciliation_daily` (the daily report's reconciliation section)."""
    from reports import reconciliation as recon

    run, recorded, path = reconcile_day(lake.root(), _day(context), warehouse.engine())
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": run.lines.height,
            "path": path,
            "status": run.status,
            "summary": dg.MetadataValue.md(
                "\n".join(f"- {line}" for line in recon.summary_text(run, recorded.run_id))
            ),
            "reconciliation_run_id": recorded.run_id,
        }
    )
    yield dg.AssetCheckResult(
        check_name="within_tolerance",
        passed=not run.has_variances,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"status": run.status, "by_status": count_by(run.lines, "status")},
    )


# --------------------------------------------------------------------------- anomalies
@dg.multi_asset(
    name="anomalies",
    specs=[
        dg.AssetSpec(
            "anomaly_scores",
            group_name=ANOMALIES,
            deps=["usage_daily", "latency_by_feature", "ingest_counts", "peaks_by_model"],
            kinds={"polars", "parquet", "sql"},
            description="Every series (feature, feature x model, team) and metric scored for "
            "the day against its seasonal baseline (notify.daily.evaluate_day); lake "
            "`anomaly_scores`, warehouse `anomaly_scores` and `anomaly_episodes`.",
        ),
        dg.AssetSpec(
            "alerts",
            group_name=ANOMALIES,
            deps=["anomaly_scores", "priced_requests"],
            kinds={"email"},
            description="The day's anomaly, budget, rate-limit and data-missing alerts in the "
            "warehouse outbox (one row per alert key and route), sent by SMTP or written as "
            ".eml; a rerun or backfill sends nothing twice.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "outbox_delivery",
            asset="alerts",
            description="Every alert due was handed to the mail server (or the outbox "
            "folder); failed ones are retried by the outbox_retry schedule.",
        )
    ],
    partitions_def=daily_partitions,
    can_subset=False,
)
def anomalies(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    alerts: AlertsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Detect (scores to the lake and the warehouse), then notify through the outbox. One
    step: the alerts need the detection result, and recomputing it would double the work."""
    day = _day(context)
    base = lake.root()
    engine = warehouse.engine()
    cfg = alerts.load_for(base)
    result, path = detect(base, day, engine, cfg)
    flagged = result.anomalies()
    yield dg.MaterializeResult(
        asset_key="anomaly_scores",
        metadata={
            "dagster/row_count": result.scores.height,
            "path": path,
            "anomalies": flagged.height,
            "by_status": count_by(result.scores, "status"),
            "settings": cfg.source,
            "flagged": dg.MetadataValue.md(
                markdown_table(
                    flagged,
                    columns=[
                        c
                        for c in ("metric", "scope", "series", "actual", "expected", "score")
                        if c in flagged.columns
                    ],
                    limit=20,
                )
            ),
        },
    )
    report = send(base, engine, result, cfg, alerts.today_date())
    delivery = report.delivery
    yield dg.MaterializeResult(
        asset_key="alerts",
        metadata={
            "alerts": result.alerts.height,
            "budget_events": result.budget_events.height,
            "rate_limit_events": result.rate_limit_events.height,
            "data_missing": result.notices.height,
            "enqueued": report.enqueued.added,
            "already_in_outbox": report.enqueued.already,
            "suppressed_backfill": report.enqueued.suppressed,
            "unrouted": len(report.enqueued.unrouted),
            "digests": report.digests,
            "sent": delivery.sent,
            "failed": delivery.failed,
            "dead": delivery.dead,
        },
    )
    yield dg.AssetCheckResult(
        check_name="outbox_delivery",
        asset_key="alerts",
        passed=not delivery.failed and not delivery.dead,
        severity=dg.AssetCheckSeverity.WARN,
        # Plain text: a server's reply is never rendered as markup.
        metadata={"errors": dg.MetadataValue.text("\n".join(delivery.errors) or "none")},
    )


# --------------------------------------------------------------------------- reports
@dg.asset(
    partitions_def=daily_partitions,
    group_name=REPORTS,
    deps=[warehouse_daily, "anomaly_scores", reconciliation_daily],
    kinds={"html"},
)
def daily_report(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The day's HTML cost and latency report (reports.from_lake), after the warehouse load,
    under `{data}/reports/daily-YYYY-MM-DD.html` (plus the index)."""
    from reports.from_lake import run_report

    root = lake.root()
    if "://" in root:
        raise ValueError(f"daily report: {root} is not a local directory")
    path = run_report(_day(context), root, None)
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path))})


@dg.asset_check(
    asset=warehouse_daily,
    name="loaded_yesterday",
    description="Yesterday's (UTC) warehouse load exists: run at 04:00 UTC by the "
    "freshness schedule, so a nightly run that never happened is noticed.",
)
def warehouse_fresh(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("warehouse_daily"), asset_partitions=[yesterday]
        ),
        limit=1,
    ).records
    loaded_at = (
        dt.datetime.fromtimestamp(records[0].timestamp, dt.UTC).isoformat() if records else None
    )
    return dg.AssetCheckResult(
        passed=bool(records),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"partition": yesterday, "loaded_at": loaded_at or "never"},
    )


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
