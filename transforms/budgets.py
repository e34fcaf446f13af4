"""Budgets and rate-limit headroom: burn, breach and month-end forecast from daily roll-ups.

`budget_events(usage_daily, day, budgets)`: for each budget (scope `feature`, `team` or
`total`; daily and/or monthly USD cap) and the day being evaluated:
  daily_warning / daily_breach        the day's spend >= warn_ratio (80%) / 100% of the cap
  monthly_warning / monthly_breach    month-to-date spend (1st of the month .. day, UTC)
                                      >= warn_ratio / 100% of the monthly cap
  monthly_forecast                    not breached yet, but the run-rate forecast reaches
                                      the cap: forecast = MTD / days elapsed x days in month
                                      (linear, as AWS/OCI budgets; only once at least
                                      `forecast_min_days` days have elapsed)
Alert keys name the period (the day, or the month), so a monthly warning is sent once a
month however many days it stays true. Money is exact Decimal USD (the forecast is quantized
to 1e-18); `burn` is spend / cap as Float64 for display. Unpriced requests add nothing to
spend: their count is in the roll-ups and in the anomaly detector's `unpriced_share`.

`rate_limit_events(peaks, day, limits)`: warn when a model's or a provider's peak requests
or tokens per minute (`peaks_by_model`, `provider_peaks`) reach warn_ratio of the configured
RPM / TPM limit. A provider-wide limit needs provider peaks (the busiest minute across its
models); without them the sum of the models' peaks is used, an upper bound, and the event
says so in `detail`.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

import polars as pl

from transforms.schema import MONEY

BUDGET_SCOPES = ("feature", "team", "total")


@dataclass(frozen=True)
class Budget:
    scope: str  # feature | team | total
    name: str | None  # the feature or team; None for total
    daily_usd: Decimal | None = None
    monthly_usd: Decimal | None = None
    warn_ratio: float = 0.8

    @property
    def label(self) -> str:
        return "total" if self.scope == "total" else f"{self.scope} {self.name}"


@dataclass(frozen=True)
class RateLimit:
    provider: str
    model_key: str | None = None  # None = the provider's account-wide limit
    rpm: int | None = None
    tpm: int | None = None
    warn_ratio: float = 0.8


BUDGET_EVENT_SCHEMA = pl.Schema(
    {
        "alert_key": pl.String(),
        "day": pl.Date(),
        "kind": pl.String(),
        "scope": pl.String(),
        "name": pl.String(),
        "period": pl.String(),  # YYYY-MM-DD (daily) or YYYY-MM (monthly)
        "spend_usd": MONEY,
        "budget_usd": MONEY,
        "burn": pl.Float64(),
        "forecast_usd": MONEY,
        "days_elapsed": pl.Int32(),
        "days_in_month": pl.Int32(),
    }
)

RATE_LIMIT_EVENT_SCHEMA = pl.Schema(
    {
        "alert_key": pl.String(),
        "day": pl.Date(),
        "kind": pl.String(),  # rate_limit_rpm | rate_limit_tpm
        "provider": pl.String(),
        "model_key": pl.String(),  # null = provider-wide
        "peak": pl.Int64(),
        "peak_minute": pl.Datetime("us", "UTC"),
        "limit": pl.Int64(),
        "ratio": pl.Float64(),
        "detail": pl.String(),
    }
)


def _spend(usage_daily: pl.LazyFrame, first: dt.date, last: dt.date) -> pl.DataFrame:
    """Spend per (feature, team) over [first, last], as rows (feature, team, day, cost)."""
    return (
        usage_daily.filter(pl.col("day").is_between(first, last))
        .group_by("day", "feature", "team")
        .agg(pl.col("cost_usd").fill_null(Decimal(0)).sum().cast(MONEY))
        .collect()
    )


def _scope_total(rows: pl.DataFrame, budget: Budget, day: dt.date | None) -> Decimal:
    frame = rows if day is None else rows.filter(pl.col("day") == day)
    if budget.scope == "feature":
        frame = frame.filter(pl.col("feature") == budget.name)
    elif budget.scope == "team":
        frame = frame.filter(pl.col("team") == budget.name)
    total = frame["cost_usd"].sum() if frame.height else Decimal(0)
    return Decimal(total) if total is not None else Decimal(0)


def budget_events(
    usage_daily: pl.LazyFrame,
    day: dt.date,
    budgets: Sequence[Budget],
    forecast_min_days: int = 3,
) -> pl.LazyFrame:
    """Budget warnings, breaches and forecasts for `day` (`BUDGET_EVENT_SCHEMA`).
    `usage_daily` must cover the month up to `day`."""
    month_start = day.replace(day=1)
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    elapsed = (day - month_start).days + 1
    rows = _spend(usage_daily, month_start, day)
    events: list[dict[str, object]] = []
    for b in budgets:
        if b.daily_usd is not None and b.daily_usd > 0:
            spend = _scope_total(rows, b, day)
            kind = _level(spend, b.daily_usd, b.warn_ratio, "daily")
            if kind:
                events.append(_event(b, kind, day, day.isoformat(), spend, b.daily_usd, None, 1, 1))
        if b.monthly_usd is not None and b.monthly_usd > 0:
            mtd = _scope_total(rows, b, None)
            with localcontext() as ctx:
                ctx.prec = 60
                forecast = (mtd / elapsed * days_in_month).quantize(Decimal("1e-18"))
            period = f"{day:%Y-%m}"
            kind = _level(mtd, b.monthly_usd, b.warn_ratio, "monthly")
            if kind:
                events.append(
                    _event(
                        b, kind, day, period, mtd, b.monthly_usd, forecast, elapsed, days_in_month
                    )
                )
            if (
                kind != "monthly_breach"
                and elapsed >= forecast_min_days
                and forecast >= b.monthly_usd
            ):
                events.append(
                    _event(
                        b,
                        "monthly_forecast",
                        day,
                        period,
                        mtd,
                        b.monthly_usd,
                        forecast,
                        elapsed,
                        days_in_month,
                    )
                )
    return pl.DataFrame(events, schema=BUDGET_EVENT_SCHEMA, orient="row").lazy()


def _level(spend: Decimal, cap: Decimal, warn_ratio: float, prefix: str) -> str | None:
    if spend >= cap:
        return f"{prefix}_breach"
    if spend >= cap * Decimal(str(warn_ratio)):
        return f"{prefix}_warning"
    return None


def _event(
    b: Budget,
    kind: str,
    day: dt.date,
    period: str,
    spend: Decimal,
    cap: Decimal,
    forecast: Decimal | None,
    elapsed: int,
    days_in_month: int,
) -> dict[str, object]:
    return {
        "alert_key": "|".join(["budget", kind, b.scope, b.name or "", period]),
        "day": day,
        "kind": kind,
        "scope": b.scope,
        "name": b.name,
        "period": period,
        "spend_usd": spend,
        "budget_usd": cap,
        "burn": float(spend / cap),
        "forecast_usd": forecast,
        "days_elapsed": elapsed,
        "days_in_month": days_in_month,
    }


def provider_peaks(priced: pl.LazyFrame) -> pl.LazyFrame:
    """Busiest minute per (day, provider) across all its models: peak_rpm, peak_tpm and their
    minutes. Gateway cache hits never reach the provider and do not count."""
    reached = ~pl.col("gateway_cache_hit").fill_null(False)
    per_minute = (
        priced.filter(reached)
        .select(
            pl.col("started_at").dt.convert_time_zone("UTC").dt.date().alias("day"),
            pl.col("provider"),
            pl.col("started_at").dt.convert_time_zone("UTC").dt.truncate("1m").alias("minute"),
            (pl.col("input_tokens").fill_null(0) + pl.col("output_tokens").fill_null(0)).alias(
                "tokens"
            ),
        )
        .group_by("day", "provider", "minute")
        .agg(
            pl.len().cast(pl.Int64).alias("rpm"), pl.col("tokens").sum().cast(pl.Int64).alias("tpm")
        )
    )
    return per_minute.group_by("day", "provider").agg(
        pl.col("rpm").max().alias("peak_rpm"),
        pl.col("minute")
        .filter(pl.col("rpm") == pl.col("rpm").max())
        .min()
        .alias("peak_rpm_minute"),
        pl.col("tpm").max().alias("peak_tpm"),
        pl.col("minute")
        .filter(pl.col("tpm") == pl.col("tpm").max())
        .min()
        .alias("peak_tpm_minute"),
    )


def rate_limit_events(
    peaks_by_model: pl.LazyFrame,
    day: dt.date,
    limits: Sequence[RateLimit],
    provider_peaks_frame: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """Headroom warnings for `day` (`RATE_LIMIT_EVENT_SCHEMA`)."""
    models = peaks_by_model.filter(pl.col("day") == day).collect()
    providers = (
        provider_peaks_frame.filter(pl.col("day") == day).collect()
        if provider_peaks_frame is not None
        else None
    )
    events: list[dict[str, object]] = []
    for limit in limits:
        for metric, cap in (("rpm", limit.rpm), ("tpm", limit.tpm)):
            if cap is None or cap <= 0:
                continue
            detail = ""
            if limit.model_key is not None:
                rows = models.filter(
                    (pl.col("provider") == limit.provider)
                    & (pl.col("model_key") == limit.model_key)
                )
                peak = rows[f"peak_{metric}"].max() if rows.height else None
                minute = rows[f"peak_{metric}_minute"].min() if rows.height else None
            elif providers is not None:
                rows = providers.filter(pl.col("provider") == limit.provider)
                peak = rows[f"peak_{metric}"].max() if rows.height else None
                minute = rows[f"peak_{metric}_minute"].min() if rows.height else None
            else:
                rows = models.filter(pl.col("provider") == limit.provider)
                peak = rows[f"peak_{metric}"].sum() if rows.height else None
                minute = None
                detail = "upper bound: sum of the models' peak minutes"
            if peak is None:
                continue
            peak_value = int(peak)  # type: ignore[arg-type]
            ratio = peak_value / cap
            if ratio < limit.warn_ratio:
                continue
            events.append(
                {
                    "alert_key": "|".join(
                        [
                            "rate_limit",
                            metric,
                            limit.provider,
                            limit.model_key or "",
                            day.isoformat(),
                        ]
                    ),
                    "day": day,
                    "kind": f"rate_limit_{metric}",
                    "provider": limit.provider,
                    "model_key": limit.model_key,
                    "peak": peak_value,
                    "peak_minute": minute,
                    "limit": cap,
                    "ratio": ratio,
                    "detail": detail,
                }
            )
    return pl.DataFrame(events, schema=RATE_LIMIT_EVENT_SCHEMA, orient="row").lazy()
