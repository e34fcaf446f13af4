"""Asset check results computed inside the asset steps (no second read of the data).

* `gx_requests` / `gx_provider_usage`: the Great Expectations suites of transforms.quality.
  Above `QualityResource.max_rows` rows GX sees a fixed-seed sample of that size (the
  metadata says so); request uniqueness is also checked exactly in Polars on every row.
  `max_rows = 0` (AISPEND_GX_MAX_ROWS=0, for tests and benchmarks of other stages) skips
  GX: the check then reports a WARN failure saying it did not validate, never a pass.
* `accounting_identity`: rows read = normalized + duplicates + quarantined per source.
* `sources_present`: every request source delivered rows for the day.
* `unknown_model_share`: share of rows the catalog cannot price by model (Polars, exact).

Failed checks carry ERROR severity when the data is wrong (blocking ones stop downstream
assets of the run) and WARN when it is only suspicious.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from pipelines.ingest_day import PartitionIngest, StreamedRequests
from pipelines.resources import QualityResource
from pipelines.summaries import count_by_counts, markdown_table

GX_SAMPLE_SEED = 20250101
UNKNOWN_MATCH_KINDS = ("unknown_model", "unknown_provider")


def _gx_metadata(report: object, rows: int, validated: int) -> dict[str, Any]:
    lines = report.lines()  # type: ignore[attr-defined]
    return {
        "rows": rows,
        "rows_validated": validated,
        "sampled": validated < rows,
        "summary": lines[0] if lines else "",
        "failures": dg.MetadataValue.md("\n".join(f"- {line}" for line in lines[1:]) or "none"),
    }


def _sample(frame: pl.DataFrame, max_rows: int) -> pl.DataFrame:
    if frame.height <= max_rows:
        return frame
    return frame.sample(n=max_rows, seed=GX_SAMPLE_SEED)


def sample_rows(rows: pl.LazyFrame, height: int, max_rows: int) -> pl.DataFrame:
    """A fixed sample of `max_rows` of a lazy frame of `height` rows (all of them when
    fewer), in their order, read streaming: the frame itself is never whole in memory."""
    if height <= max_rows:
        return rows.collect()
    picked = np.sort(np.random.default_rng(GX_SAMPLE_SEED).choice(height, max_rows, replace=False))
    wanted = pl.Series("_row", picked, dtype=pl.Int64).implode()
    return (
        rows.with_row_index("_row")
        .filter(pl.col("_row").cast(pl.Int64).is_in(wanted))
        .drop("_row")
        .collect(engine="streaming")
    )


def duplicated_request_attempts(rows: pl.LazyFrame) -> int:
    """Rows whose (request_id, attempt) another row has too, exact on every row: a 64-bit
    hash of the key first (twice as fast as comparing the strings), then the keys
    themselves on the few rows whose hash repeats, so a collision is never a duplicate."""
    key = pl.struct("request_id", "attempt")
    candidates = (
        rows.select(key.hash(GX_SAMPLE_SEED).alias("_h"))
        .with_row_index("_row")
        .filter(pl.col("_h").is_duplicated())
        .select("_row")
        .collect()
        .get_column("_row")
    )
    if candidates.is_empty():
        return 0
    return int(
        rows.with_row_index("_row")
        .filter(pl.col("_row").is_in(candidates.implode()))
        .select(key.is_duplicated().sum())
        .collect()
        .item()
    )


def _disabled(check: str, asset: str) -> dg.AssetCheckResult:
    """AISPEND_GX_MAX_ROWS=0: the suite did not run. Reported as a warning, never a pass."""
    return dg.AssetCheckResult(
        check_name=check,
        asset_key=asset,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"validated": False, "why": "Great Expectations disabled (AISPEND_GX_MAX_ROWS=0)"},
    )


def gx_requests_check(
    rows: pl.DataFrame | pl.LazyFrame, day: dt.date, quality: QualityResource
) -> dg.AssetCheckResult:
    """`rows`: the day's normalized requests, in memory or lazily (the lake partition)."""
    from transforms.quality import validate_requests

    if quality.max_rows <= 0:
        return _disabled("gx_requests", "normalized_requests")
    if isinstance(rows, pl.LazyFrame):
        height = int(rows.select(pl.len()).collect().item())
        sample = sample_rows(rows, height, quality.max_rows)
    else:
        height = rows.height
        sample = _sample(rows, quality.max_rows)
    duplicated = duplicated_request_attempts(rows.lazy()) if sample.height < height else None
    report = validate_requests(
        sample,
        partition_day=day,
        max_unknown_model_share=quality.max_unknown_model_share,
        source="normalized_requests",
    )
    metadata = _gx_metadata(report, height, sample.height)
    passed = bool(report.success)
    if duplicated is not None:  # the sample is checked by GX; every row here, exactly
        metadata["duplicated_request_attempts"] = duplicated
        passed = passed and duplicated == 0
    return dg.AssetCheckResult(
        check_name="gx_requests",
        asset_key="normalized_requests",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def gx_provider_usage_check(
    rows: pl.DataFrame, day: dt.date, quality: QualityResource
) -> dg.AssetCheckResult:
    from transforms.quality import validate_provider_usage

    if quality.max_rows <= 0:
        return _disabled("gx_provider_usage", "provider_usage")
    report = validate_provider_usage(rows, partition_day=day, source="provider_usage")
    return dg.AssetCheckResult(
        check_name="gx_provider_usage",
        asset_key="provider_usage",
        passed=bool(report.success),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=_gx_metadata(report, rows.height, rows.height),
    )


def accounting_check(
    asset_key: str, result: PartitionIngest | StreamedRequests, problems: list[str]
) -> dg.AssetCheckResult:
    totals = result.counts.select(
        pl.col("rows_read", "normalized", "duplicates", "quarantined").sum()
    ).row(0, named=True)
    return dg.AssetCheckResult(
        check_name="accounting_identity",
        asset_key=asset_key,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            **{k: int(v or 0) for k, v in totals.items()},
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "per_source": dg.MetadataValue.md(markdown_table(result.counts, limit=100)),
        },
    )


def sources_present_check(result: PartitionIngest | StreamedRequests) -> dg.AssetCheckResult:
    silent = result.counts.filter(pl.col("rows_read") == 0).get_column("source").to_list()
    return dg.AssetCheckResult(
        check_name="sources_present",
        asset_key="normalized_requests",
        passed=not silent,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "sources": len(result.sources),
            "without_rows": ", ".join(silent) or "none",
        },
    )


def unknown_model_check(
    unknown: pl.DataFrame, rows: int, quality: QualityResource
) -> dg.AssetCheckResult:
    """`unknown`: rows per (provider, model, len) the catalog does not know."""
    unknown_rows = int(unknown.get_column("len").sum() or 0) if unknown.height else 0
    share = unknown_rows / rows if rows else 0.0
    models = unknown.sort(["len", "provider", "model"], descending=[True, False, False])
    return dg.AssetCheckResult(
        check_name="unknown_model_share",
        asset_key="priced_requests",
        passed=share <= quality.max_unknown_model_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "unknown_rows": unknown_rows,
            "share": round(share, 6),
            "threshold": quality.max_unknown_model_share,
            "models": dg.MetadataValue.md(markdown_table(models, limit=20)),
        },
    )


def normalized_metadata(result: StreamedRequests, rows: pl.LazyFrame) -> dict[str, Any]:
    """Metadata of the streamed `normalized_requests` partition (`rows`: its lake scan):
    rows per source from the counts, a preview of the first rows."""
    per_source = result.counts.filter(pl.col("normalized") > 0).select("source", "normalized")
    head = rows.select(
        [
            c
            for c in ("source", "request_id", "provider", "model", "date")
            if c in result_columns(rows)
        ]
    ).head(10)
    return {
        "dagster/row_count": result.row_count,
        "path": result.path,
        "rows_by_source": count_by_counts(per_source.rename({"normalized": "len"}), "source"),
        "files_read": dg.MetadataValue.md(markdown_table(result.files, limit=50)),
        "preview": dg.MetadataValue.md(markdown_table(head.collect())),
    }


def result_columns(rows: pl.LazyFrame) -> list[str]:
    return rows.collect_schema().names()
