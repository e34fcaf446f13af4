"""One day's report from the lake: read (or compute) the inputs, build, render, write.

Used by `aispend report --date DATE` and by the pipeline's report asset.

Reads `{data}/lake/{dataset}/day=YYYY-MM-DD/part-0.parquet`. The roll-ups (`usage_daily`,
`latency_by_model`, `latency_by_feature`, `peaks_by_model`) are read where they exist and
computed from that day's `priced_requests` partition where they do not, so a report works
right after repricing. History for the comparisons (previous day, same weekday last week,
month to date, the 30-day trend) is whatever of those days the lake has; a missing day is
named in the report, never invented. Optional inputs (ingest counts, quarantine,
reconciliation, anomalies, rate limits and budgets from AISPEND_ALERTS_CONFIG) fill their
sections when present.

Writes `{out}/daily-YYYY-MM-DD.html` (default out: `{data}/reports`) and rebuilds
`{out}/index.html`. A user mistake (no data for the day, unreadable partition, bad date)
raises ReportError with one line naming the partition, and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

import lake
from reports.daily import RateLimit, ReportInputError, ReportInputs, build_daily_report
from reports.render import write_daily

USAGE = "usage_daily"
LATENCY_MODEL = "latency_by_model"
LATENCY_FEATURE = "latency_by_feature"
PEAKS = "peaks_by_model"
PRICED = "priced_requests"
# Datasets the other stages write; the first name found is used.
RECONCILIATION_DATASETS = ("reconciliation_daily", "reconciliation_lines", "reconciliation")
ANOMALY_DATASETS = ("anomaly_scores", "anomalies")
HISTORY_DAYS = 35  # covers the month to date, last week and the 30-day trend


class ReportError(Exception):
    """A problem the user can fix; the message is one line naming the partition."""


@dataclass
class AlertSettings:
    rate_limits: list[RateLimit]
    monthly_budget_usd: Decimal | None
    budgets_by_team: dict[str, Decimal]
    budgets_by_feature: dict[str, Decimal]


def default_data_dir() -> str:
    return os.environ.get("AISPEND_DATA_DIR", "data")


def _read(base: str, dataset: str, day: dt.date) -> pl.DataFrame | None:
    if not lake.has_partition(base, dataset, day):
        return None
    try:
        return lake.read_partition(base, dataset, day)
    except lake.LakeError as exc:
        raise ReportError(str(exc)) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        path = lake.partition_file(base, dataset, day)
        raise ReportError(f"{path}: unreadable partition: {str(exc).splitlines()[0]}") from None


def _rollup(
    base: str,
    dataset: str,
    day: dt.date,
    compute: Callable[[pl.LazyFrame], pl.LazyFrame],
    priced: Callable[[], pl.DataFrame | None],
) -> tuple[pl.DataFrame | None, str]:
    """A roll-up partition, else computed from the day's priced requests; and where from."""
    frame = _read(base, dataset, day)
    if frame is not None:
        return frame, "lake"
    requests = priced()
    if requests is None:
        return None, "missing"
    try:
        return compute(requests.lazy()).collect(), "computed"
    except pl.exceptions.PolarsError as exc:
        path = lake.partition_file(base, PRICED, day)
        raise ReportError(f"{path}: cannot roll up: {str(exc).splitlines()[0]}") from None


def _first_dataset(base: str, names: tuple[str, ...], day: dt.date) -> pl.DataFrame | None:
    for name in names:
        frame = _read(base, name, day)
        if frame is not None:
            return frame
    return None


def load_alert_settings(base: str | None = None) -> AlertSettings:
    """Rate limits and budgets from the alerts settings (notify.config: AISPEND_ALERTS_CONFIG,
    else `alerts.yaml` in the data directory); empty when there is none (the report then
    says none are configured)."""
    from notify import config as alerts_config

    path = alerts_config.settings_path(base)
    if path is None:
        return AlertSettings([], None, {}, {})
    try:
        config = alerts_config.load(path)
    except alerts_config.ConfigError as exc:
        raise ReportError(str(exc)) from None

    def monthly(budgets: dict[str, Any]) -> dict[str, Decimal]:
        return {name: b.monthly_usd for name, b in budgets.items() if b.monthly_usd is not None}

    return AlertSettings(
        rate_limits=[
            RateLimit(provider=x.provider, model_key=x.model_key, rpm=x.rpm, tpm=x.tpm)
            for x in config.rate_limits
        ],
        monthly_budget_usd=config.budgets.monthly_usd,
        budgets_by_team=monthly(config.budgets.teams),
        budgets_by_feature=monthly(config.budgets.features),
    )


def build_inputs(base: str, day: dt.date, settings: AlertSettings | None = None) -> ReportInputs:
    """Everything the report of `day` needs, from the lake under `base`."""
    from transforms import usage_rollups as ur

    priced_cache: dict[dt.date, pl.DataFrame | None] = {}

    def priced(d: dt.date) -> Callable[[], pl.DataFrame | None]:
        def load() -> pl.DataFrame | None:
            if d not in priced_cache:
                priced_cache[d] = _read(base, PRICED, d)
            return priced_cache[d]

        return load

    usage_today, origin = _rollup(base, USAGE, day, ur.usage_daily, priced(day))
    if usage_today is None:
        raise ReportError(
            f"{lake.partition_file(base, USAGE, day)}: no usage_daily or priced_requests "
            f"partition for {day}"
        )
    frames = [usage_today]
    for back in range(1, HISTORY_DAYS):
        d = day - dt.timedelta(days=back)
        frame, _ = _rollup(base, USAGE, d, ur.usage_daily, priced(d))
        if frame is not None and frame.height:
            frames.append(frame)
        priced_cache.pop(d, None)  # history days are read once; keep memory flat
    usage = pl.concat(frames, how="vertical_relaxed")
    latency_model, _ = _rollup(base, LATENCY_MODEL, day, ur.latency_by_model, priced(day))
    latency_feature, _ = _rollup(base, LATENCY_FEATURE, day, ur.latency_by_feature, priced(day))
    peaks, _ = _rollup(base, PEAKS, day, ur.peaks_by_model, priced(day))

    counts = [
        f
        for back in range(HISTORY_DAYS)
        if (f := _read(base, "ingest_counts", day - dt.timedelta(days=back))) is not None
    ]
    settings = settings or load_alert_settings(base)
    return ReportInputs(
        day=day,
        usage=usage,
        latency_by_model=latency_model,
        latency_by_feature=latency_feature,
        peaks=peaks,
        rate_limits=settings.rate_limits,
        monthly_budget_usd=settings.monthly_budget_usd,
        budgets_by_team=settings.budgets_by_team,
        budgets_by_feature=settings.budgets_by_feature,
        ingest_counts=pl.concat(counts, how="vertical_relaxed") if counts else None,
        quarantine=_read(base, "quarantine", day),
        reconciliation=_first_dataset(base, RECONCILIATION_DATASETS, day),
        anomalies=_first_dataset(base, ANOMALY_DATASETS, day),
        source_note="Roll-ups computed from priced requests." if origin == "computed" else "",
    )


def run_report(day: dt.date, data_dir: str | None = None, out: str | None = None) -> Path:
    """Render the report of `day`; returns the HTML path. Raises ReportError."""
    base = data_dir or default_data_dir()
    out_dir = Path(out) if out else Path(base) / "reports"
    if "://" in str(out_dir):
        raise ReportError(f"--out {out_dir}: reports are written to a local directory")
    inputs = build_inputs(base, day)
    try:
        model = build_daily_report(inputs)
    except ReportInputError as exc:
        raise ReportError(f"{lake.partition_file(base, USAGE, day)}: {exc}") from None
    try:
        return write_daily(model, out_dir)
    except OSError as exc:
        raise ReportError(f"{out_dir}: cannot write the report: {exc.strerror or exc}") from None
