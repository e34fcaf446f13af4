"""The daily report model: every figure of one day's HTML report, built from roll-ups.

Input is `transforms.usage_rollups` output (no per-request scan): `usage_daily` rows for the
report day plus whatever history the caller has (previous day, same weekday last week, the
month so far, a trailing window for the trend chart), and optionally the day's
`latency_by_model`, `latency_by_feature`, `peaks_by_model`, ingest counts, quarantine rows,
data-quality results, reconciliation lines and anomalies. Every optional input may be None:
its section then says "not available yet" with the reason, never an empty table.

Units: money is exact `Decimal` USD (sums of `Decimal(38, 18)` columns, never float);
latency is milliseconds; shares and rates are `Decimal` fractions (0.25 = 25%); counts are
ints. Unknown is None, never 0: a group with nothing priced has cost None and its unpriced
requests are listed, so an unknown model never reads as free.

Definitions
  spend                     sum of `cost_usd` (contract price) over priced rows of the day
  cost per successful req.  all attempts' cost (failed ones and retries included) divided by
                            successful attempts: four attempts for one success cost 4x
  cost per usable output    the same cost over usable outputs: successful requests for text,
                            usable images (success rows) for images, usable video seconds
  retry/failure overhead    cost_usd - cost_success_usd: money spent on attempts that failed
  forecast                  linear run-rate: month-to-date / days elapsed x days in month,
                            shown from the 3rd day of the month on (too noisy before)
  headroom                  1 - peak / configured limit; under 20% is flagged
  top movers                change in cost vs the previous day per (provider, model_key) and
                            per feature, split into a volume effect (change in requests at the
                            old unit cost) and a unit-cost effect (change in cost per request
                            at the new volume); the two add up to the change exactly
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import polars as pl

from transforms.usage_rollups import (
    USAGE_COUNT_COLUMNS,
    USAGE_MONEY_COLUMNS,
    USAGE_SECONDS_COLUMNS,
    USAGE_TOKEN_COLUMNS,
)

HEADROOM_FLAG = Decimal("0.2")
FORECAST_MIN_DAYS = 3
TREND_DAYS = 30
TOP_N = 15
UNTAGGED = "(untagged)"
UNKNOWN_MODEL = "(unknown model)"

# The additive measures of `usage_daily`, declared once in the roll-up module.
COUNT_MEASURES = (*USAGE_COUNT_COLUMNS, *USAGE_TOKEN_COLUMNS, "latency_count")
FLOAT_MEASURES = (*USAGE_SECONDS_COLUMNS, "latency_ms_sum")
MONEY_MEASURES = USAGE_MONEY_COLUMNS
SECTIONS = (
    ("headline", "Headline"),
    ("cost", "Cost breakdown"),
    ("movers", "Top movers"),
    ("unit", "Unit economics"),
    ("latency", "Latency and reliability"),
    ("savings", "Savings and leaks"),
    ("capacity", "Capacity"),
    ("quality", "Data quality and freshness"),
    ("reconciliation", "Reconciliation"),
    ("anomalies", "Anomalies"),
)


class ReportInputError(ValueError):
    """The inputs cannot make a report (missing columns, no data for the day)."""


@dataclass(frozen=True)
class RateLimit:
    """A configured account limit for a provider, optionally one model_key (None = every
    model of the provider shares it)."""

    provider: str
    model_key: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None


@dataclass
class ReportInputs:
    day: dt.date
    usage: pl.DataFrame
    latency_by_model: pl.DataFrame | None = None
    latency_by_feature: pl.DataFrame | None = None
    peaks: pl.DataFrame | None = None
    rate_limits: Sequence[RateLimit] | None = None
    monthly_budget_usd: Decimal | None = None
    budgets_by_team: Mapping[str, Decimal] = field(default_factory=dict)
    budgets_by_feature: Mapping[str, Decimal] = field(default_factory=dict)
    ingest_counts: pl.DataFrame | None = None
    quarantine: pl.DataFrame | None = None
    quality_checks: Sequence[Mapping[str, Any]] | None = None
    reconciliation: pl.DataFrame | None = None
    anomalies: pl.DataFrame | None = None
    source_note: str = ""


# ----------------------------------------------------------------------------- small helpers
def ratio(numerator: Any, denominator: Any) -> Decimal | None:
    """numerator / denominator as Decimal; None when either is unknown or the base is 0."""
    if numerator is None or denominator is None:
        return None
    den = denominator if isinstance(denominator, Decimal) else Decimal(str(denominator))
    if den == 0:
        return None
    num = numerator if isinstance(numerator, Decimal) else Decimal(str(numerator))
    return num / den


def change(now: Any, before: Any) -> Decimal | None:
    """Relative change now vs before (0.1 = +10%); None without a non-zero reference."""
    if now is None or before is None:
        return None
    r = ratio(now, before)
    return None if r is None else r - 1


def _label(value: Any, missing: str = UNTAGGED) -> str:
    return missing if value is None or value == "" else str(value)


def _measure_exprs(columns: Sequence[str]) -> list[pl.Expr]:
    exprs = [pl.col(c).sum().alias(c) for c in (*COUNT_MEASURES, *FLOAT_MEASURES) if c in columns]
    # a group with no priced row keeps a null cost: unknown, not free
    exprs += [
        pl.when(pl.col(c).count() > 0).then(pl.col(c).sum()).alias(c)
        for c in MONEY_MEASURES
        if c in columns
    ]
    return exprs


def _aggregate(frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    if keys:
        return frame.group_by(list(keys)).agg(_measure_exprs(frame.columns))
    return frame.select(_measure_exprs(frame.columns))


def _totals(frame: pl.DataFrame) -> dict[str, Any] | None:
    if frame.height == 0:
        return None
    row = _aggregate(frame, []).to_dicts()[0]
    if not row.get("priced_requests"):
        row["cost_usd"] = row["list_cost_usd"] = None
    return row


def _day_frame(usage: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    return usage.filter(pl.col("day") == day)


# ----------------------------------------------------------------------------- sections
def _headline(inputs: ReportInputs) -> dict[str, Any]:
    day, usage = inputs.day, inputs.usage
    today = _totals(_day_frame(usage, day))
    assert today is not None
    prev = _totals(_day_frame(usage, day - dt.timedelta(days=1)))
    week = _totals(_day_frame(usage, day - dt.timedelta(days=7)))

    def tokens(t: dict[str, Any] | None) -> int | None:
        if t is None:
            return None
        return int(t.get("input_tokens") or 0) + int(t.get("output_tokens") or 0)

    def kpi(label: str, fmt: str, pick: Any) -> dict[str, Any]:
        value = pick(today)
        return {
            "label": label,
            "fmt": fmt,
            "value": value,
            "vs_prev_day": change(value, pick(prev) if prev else None),
            "vs_last_week": change(value, pick(week) if week else None),
        }

    kpis = [
        kpi("Spend (contract)", "usd", lambda t: t["cost_usd"]),
        kpi("Spend at list price", "usd", lambda t: t["list_cost_usd"]),
        kpi("Requests (attempts)", "int", lambda t: t["requests"]),
        kpi("Logical requests", "int", lambda t: t["logical_requests"]),
        kpi("Tokens (in + out)", "int", tokens),
    ]
    # Month to date: the days of this month present in the history, up to the report day.
    month_start = day.replace(day=1)
    month = usage.filter((pl.col("day") >= month_start) & (pl.col("day") <= day))
    mtd = _totals(month)
    mtd_cost = mtd["cost_usd"] if mtd else None
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    days_elapsed = day.day
    days_with_data = month.get_column("day").n_unique()
    forecast = None
    if mtd_cost is not None and days_elapsed >= FORECAST_MIN_DAYS:
        forecast = mtd_cost / days_elapsed * days_in_month
    budget = inputs.monthly_budget_usd
    trend = (
        usage.filter((pl.col("day") <= day) & (pl.col("day") > day - dt.timedelta(days=TREND_DAYS)))
        .group_by("day")
        .agg(_measure_exprs(["cost_usd", "priced_requests"]))
        .sort("day")
    )
    by_day = {r["day"]: r for r in trend.to_dicts()}
    trend_days = [day - dt.timedelta(days=i) for i in range(TREND_DAYS - 1, -1, -1)]
    first = min(by_day) if by_day else day
    trend_days = [d for d in trend_days if d >= first]
    return {
        "kpis": kpis,
        "unpriced_requests": today["unpriced_requests"],
        "requests": today["requests"],
        "have_prev_day": prev is not None,
        "have_last_week": week is not None,
        "mtd": {
            "month": month_start.strftime("%B %Y"),
            "cost_usd": mtd_cost,
            "days_elapsed": days_elapsed,
            "days_with_data": days_with_data,
            "days_in_month": days_in_month,
            "forecast_usd": forecast,
            "forecast_min_days": FORECAST_MIN_DAYS,
            "budget_usd": budget,
            "budget_used": ratio(mtd_cost, budget),
            "forecast_vs_budget": ratio(forecast, budget),
            "over_budget_forecast": forecast is not None
            and budget is not None
            and forecast > budget,
            "missing_days": days_elapsed - days_with_data,
        },
        "trend": [
            {"day": d, "cost_usd": by_day[d]["cost_usd"] if d in by_day else None}
            for d in trend_days
        ],
        "daily_budget_usd": budget / days_in_month if budget is not None else None,
    }


def _breakdown(
    today: pl.DataFrame, prev: pl.DataFrame, keys: Sequence[str], total_cost: Decimal | None
) -> list[dict[str, Any]]:
    now = _aggregate(today, keys)
    before = _aggregate(prev, keys).select(
        *keys, pl.col("cost_usd").alias("prev_cost_usd"), pl.col("requests").alias("prev_requests")
    )
    joined = now.join(before, on=list(keys), how="left", nulls_equal=True).sort(
        ["cost_usd", "requests"], descending=True, nulls_last=True
    )
    rows = []
    for r in joined.to_dicts():
        rows.append(
            {
                **{k: _label(r[k], UNKNOWN_MODEL if k == "model_key" else UNTAGGED) for k in keys},
                "requests": r["requests"],
                "tokens": (r["input_tokens"] or 0) + (r["output_tokens"] or 0),
                "cost_usd": r["cost_usd"],
                "share": ratio(r["cost_usd"], total_cost),
                "prev_cost_usd": r["prev_cost_usd"],
                "change": change(r["cost_usd"], r["prev_cost_usd"]),
                "unpriced_requests": r["unpriced_requests"],
                "cost_per_request_usd": ratio(r["cost_usd"], r["priced_requests"]),
            }
        )
    return rows


def _cost(inputs: ReportInputs, total_cost: Decimal | None) -> dict[str, Any]:
    today = _day_frame(inputs.usage, inputs.day)
    prev = _day_frame(inputs.usage, inputs.day - dt.timedelta(days=1))
    views = {
        "provider": ("provider",),
        "model": ("provider", "model_key"),
        "feature": ("feature",),
        "team": ("team",),
    }
    out: dict[str, Any] = {
        name: _breakdown(today, prev, keys, total_cost) for name, keys in views.items()
    }
    budgets = []
    month = inputs.usage.filter(
        (pl.col("day") >= inputs.day.replace(day=1)) & (pl.col("day") <= inputs.day)
    )
    for scope, column, configured in (
        ("team", "team", inputs.budgets_by_team),
        ("feature", "feature", inputs.budgets_by_feature),
    ):
        if not configured:
            continue
        spent = {r[column]: r["cost_usd"] for r in _aggregate(month, [column]).to_dicts()}
        for name, budget in sorted(configured.items()):
            used = ratio(spent.get(name), budget)
            budgets.append(
                {
                    "scope": scope,
                    "name": name,
                    "budget_usd": budget,
                    "mtd_cost_usd": spent.get(name),
                    "used": used,
                    "flag": "flagged" if used is not None and used >= 1 else "",
                }
            )
    out["budgets"] = budgets
    return out


def _movers(inputs: ReportInputs) -> dict[str, Any]:
    prev_day = inputs.day - dt.timedelta(days=1)
    today = _day_frame(inputs.usage, inputs.day)
    prev = _day_frame(inputs.usage, prev_day)
    if prev.height == 0:
        return {
            "available": False,
            "reason": f"No usage roll-up for the previous day ({prev_day}).",
        }
    out: dict[str, Any] = {"available": True, "prev_day": prev_day}
    for name, keys in (("model", ("provider", "model_key")), ("feature", ("feature",))):
        now = _aggregate(today, keys).select(
            *keys, pl.col("cost_usd"), pl.col("priced_requests").alias("n")
        )
        before = _aggregate(prev, keys).select(
            *keys, pl.col("cost_usd").alias("prev_cost_usd"), pl.col("priced_requests").alias("pn")
        )
        joined = now.join(before, on=list(keys), how="full", nulls_equal=True, coalesce=True)
        rows = []
        for r in joined.to_dicts():
            c1, c0 = r["cost_usd"] or Decimal(0), r["prev_cost_usd"] or Decimal(0)
            n1, n0 = r["n"] or 0, r["pn"] or 0
            delta = c1 - c0
            if delta == 0:
                continue
            u0 = c0 / n0 if n0 else Decimal(0)
            volume = (n1 - n0) * u0
            rows.append(
                {
                    "label": " / ".join(
                        _label(r[k], UNKNOWN_MODEL if k == "model_key" else UNTAGGED) for k in keys
                    ),
                    "cost_usd": r["cost_usd"],
                    "prev_cost_usd": r["prev_cost_usd"],
                    "delta_usd": delta,
                    "change": change(r["cost_usd"], r["prev_cost_usd"]),
                    "volume_effect_usd": volume,
                    "unit_cost_effect_usd": delta - volume,
                    "requests": n1,
                    "prev_requests": n0,
                }
            )
        rows.sort(key=lambda row: (-abs(row["delta_usd"]), row["label"]))
        out[name] = rows[:10]
    return out


def _unit(inputs: ReportInputs) -> dict[str, Any]:
    today = _day_frame(inputs.usage, inputs.day)
    rows = []
    for r in (
        _aggregate(today, ("provider", "model_key"))
        .sort(["cost_usd", "requests"], descending=True, nulls_last=True)
        .to_dicts()
    ):
        cost = r["cost_usd"]
        kind = "text"
        usable: Any = r["success"]
        nominal = None
        if r["image_count"]:
            kind, usable = "image", r["usable_images"]
            nominal = ratio(cost, r["image_count"])
        elif r["video_seconds"]:
            kind, usable = "video second", r["usable_video_seconds"]
            nominal = ratio(cost, r["video_seconds"])
        overhead = (
            cost - r["cost_success_usd"]
            if cost is not None and r["cost_success_usd"] is not None
            else cost
        )
        rows.append(
            {
                "provider": _label(r["provider"]),
                "model_key": _label(r["model_key"], UNKNOWN_MODEL),
                "requests": r["requests"],
                "success": r["success"],
                "retries": r["retries"],
                "failed": r["requests"] - r["success"],
                "cost_usd": cost,
                "cost_per_success_usd": ratio(cost, r["success"]),
                "output_kind": kind,
                "usable_outputs": usable,
                "nominal_unit_cost_usd": nominal,
                "cost_per_usable_usd": ratio(cost, usable),
                "overhead_usd": overhead,
                "overhead_share": ratio(overhead, cost),
                "multiplier": ratio(ratio(cost, usable), nominal) if nominal else None,
            }
        )
    totals = _totals(today)
    assert totals is not None
    waste = (
        totals["cost_usd"] - totals["cost_success_usd"]
        if totals["cost_usd"] is not None and totals["cost_success_usd"] is not None
        else None
    )
    media = [r for r in rows if r["output_kind"] != "text"]
    return {
        "rows": rows,
        "media": media,
        "cost_per_success_usd": ratio(totals["cost_usd"], totals["success"]),
        "cost_per_logical_usd": ratio(totals["cost_usd"], totals["logical_requests"]),
        "overhead_usd": waste,
        "overhead_share": ratio(waste, totals["cost_usd"]),
    }


def _rates(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "requests": r["requests"],
        "error_rate": ratio(r["errors"], r["requests"]),
        "timeout_rate": ratio(r["timeouts"], r["requests"]),
        "rejected_rate": ratio(r["rejected"], r["requests"]),
        "retry_rate": ratio(r["retries"], r["requests"]),
        "success_rate": ratio(r["success"], r["requests"]),
        "mean_latency_ms": (r["latency_ms_sum"] / r["latency_count"])
        if r["latency_count"]
        else None,
    }


def _latency(inputs: ReportInputs) -> dict[str, Any]:
    today = _day_frame(inputs.usage, inputs.day)
    by_provider = [
        {"provider": _label(r["provider"]), **_rates(r)}
        for r in _aggregate(today, ("provider",)).sort("requests", descending=True).to_dicts()
    ]
    rates = {
        (r["provider"], r["model_key"]): _rates(r)
        for r in _aggregate(today, ("provider", "model_key")).to_dicts()
    }
    out: dict[str, Any] = {"by_provider": by_provider, "by_model": None, "by_feature": None}
    if inputs.latency_by_model is not None:
        lat = inputs.latency_by_model.filter(pl.col("day") == inputs.day)
        rows = []
        for r in lat.sort("attempts", descending=True).to_dicts():
            rate = rates.get((r["provider"], r["model_key"]), {})
            rows.append(
                {
                    "provider": _label(r["provider"]),
                    "model_key": _label(r["model_key"], UNKNOWN_MODEL),
                    **{k: v for k, v in r.items() if k.endswith("_ms")},
                    "attempts": r["attempts"],
                    "error_rate": rate.get("error_rate"),
                    "timeout_rate": rate.get("timeout_rate"),
                    "retry_rate": rate.get("retry_rate"),
                }
            )
        out["by_model"] = rows
        out["chart"] = [
            (f"{row['provider']}/{row['model_key'].split('/')[-1]}", row["latency_p95_ms"])
            for row in rows[:TOP_N]
            if row["latency_p95_ms"] is not None
        ]
    if inputs.latency_by_feature is not None:
        lat = inputs.latency_by_feature.filter(pl.col("day") == inputs.day)
        out["by_feature"] = [
            {**r, "feature": _label(r["feature"])}
            for r in lat.sort("attempts", descending=True).to_dicts()
        ]
    return out


def _savings(inputs: ReportInputs) -> dict[str, Any]:
    today = _day_frame(inputs.usage, inputs.day)
    t = _totals(today)
    assert t is not None
    by_model = []
    for r in (
        _aggregate(today, ("provider", "model_key"))
        .sort(["cost_usd", "requests"], descending=True, nulls_last=True)
        .to_dicts()
    ):
        by_model.append(
            {
                "provider": _label(r["provider"]),
                "model_key": _label(r["model_key"], UNKNOWN_MODEL),
                "cache_hit_share": ratio(r["cache_read_tokens"], r["input_tokens"]),
                "cache_savings_usd": r["cache_savings_usd"],
                "batch_share": ratio(r["batch_requests"], r["requests"]),
                "output_input_ratio": ratio(r["output_tokens"], r["input_tokens"]),
                "reasoning_share": ratio(r["reasoning_tokens"], r["output_tokens"]),
                "long_context_share": ratio(r["long_context_requests"], r["requests"]),
                "unpriced_requests": r["unpriced_requests"],
            }
        )
    unpriced = (
        _aggregate(today.filter(pl.col("unpriced_requests") > 0), ("provider", "model"))
        .sort("unpriced_requests", descending=True)
        .to_dicts()
    )
    return {
        "cache_hit_share": ratio(t["cache_read_tokens"], t["input_tokens"]),
        "cache_savings_usd": t.get("cache_savings_usd"),
        "gateway_cache_share": ratio(t["gateway_cache_hits"], t["requests"]),
        "batch_share": ratio(t["batch_requests"], t["requests"]),
        "output_input_ratio": ratio(t["output_tokens"], t["input_tokens"]),
        "reasoning_share": ratio(t["reasoning_tokens"], t["output_tokens"]),
        "long_context_share": ratio(t["long_context_requests"], t["requests"]),
        "long_context_requests": t["long_context_requests"],
        "unpriced_requests": t["unpriced_requests"],
        "unpriced_share": ratio(t["unpriced_requests"], t["requests"]),
        "usage_missing": t["usage_missing"],
        "by_model": by_model,
        "unpriced": [
            {
                "provider": _label(r["provider"]),
                "model": _label(r["model"], "(no model)"),
                "unpriced_requests": r["unpriced_requests"],
                "tokens": (r["input_tokens"] or 0) + (r["output_tokens"] or 0),
                "usage_missing": r["usage_missing"],
            }
            for r in unpriced
        ],
    }


def _headroom(peak: Any, limit: int | None) -> Decimal | None:
    if peak is None or not limit:
        return None
    return 1 - Decimal(int(peak)) / Decimal(limit)


def _capacity_row(
    provider: str, model: str, peaks: Mapping[str, Any], limit: RateLimit | None
) -> dict[str, Any]:
    rpm_room = _headroom(peaks["peak_rpm"], limit.rpm if limit else None)
    tpm_room = _headroom(peaks["peak_tpm"], limit.tpm if limit else None)
    conc_room = _headroom(peaks["peak_concurrency"], limit.max_concurrency if limit else None)
    rooms = [x for x in (rpm_room, tpm_room, conc_room) if x is not None]
    low = min(rooms) if rooms else None
    if limit is None:
        status = "no limit configured"
    elif low is None:
        status = "no peak measured"
    elif low < 0:
        status = "over the limit"
    elif low < HEADROOM_FLAG:
        status = "headroom < 20%"
    else:
        status = "ok"
    minute = peaks.get("peak_rpm_minute")
    return {
        "provider": provider,
        "model_key": model,
        "peak_rpm": peaks["peak_rpm"],
        "peak_rpm_minute": minute.strftime("%H:%M") if minute else None,
        "rpm_limit": limit.rpm if limit else None,
        "rpm_headroom": rpm_room,
        "peak_tpm": peaks["peak_tpm"],
        "tpm_limit": limit.tpm if limit else None,
        "tpm_headroom": tpm_room,
        "peak_concurrency": peaks["peak_concurrency"],
        "concurrency_limit": limit.max_concurrency if limit else None,
        "concurrency_headroom": conc_room,
        "lowest_headroom": low,
        "flag": "flagged" if low is not None and low < HEADROOM_FLAG else "",
        "status": status,
    }


def _capacity(inputs: ReportInputs) -> dict[str, Any]:
    """Model rows compare against a limit for that model_key. A provider-wide limit (model_key
    None) is compared with the sum of its models' peaks: per-minute peaks of different models
    may fall in different minutes, so the sum is an upper bound of the provider's true peak,
    which errs on the side of flagging."""
    if inputs.peaks is None:
        return {"available": False, "reason": "No peaks_by_model roll-up for this day."}
    limits = list(inputs.rate_limits or [])
    by_model = {(x.provider, x.model_key): x for x in limits if x.model_key is not None}
    by_provider = {x.provider: x for x in limits if x.model_key is None}
    peaks = inputs.peaks.filter(pl.col("day") == inputs.day)
    rows = [
        _capacity_row(
            _label(r["provider"]),
            _label(r["model_key"], UNKNOWN_MODEL),
            r,
            by_model.get((r["provider"], r["model_key"])),
        )
        for r in peaks.to_dicts()
    ]
    for provider, limit in sorted(by_provider.items()):
        mine = peaks.filter(pl.col("provider") == provider)
        if mine.height == 0:
            continue
        total = mine.select(
            pl.col("peak_rpm").sum(), pl.col("peak_tpm").sum(), pl.col("peak_concurrency").sum()
        ).to_dicts()[0]
        rows.append(_capacity_row(provider, "(all models, sum of peaks)", total, limit))
    rows.sort(
        key=lambda r: (
            r["lowest_headroom"] is None,
            r["lowest_headroom"] if r["lowest_headroom"] is not None else 0,
            -(r["peak_rpm"] or 0),
            r["provider"],
            r["model_key"],
        )
    )
    return {
        "available": True,
        "rows": rows,
        "limits_configured": bool(limits),
        "flagged": sum(1 for r in rows if r["flag"]),
        "threshold": HEADROOM_FLAG,
    }


def _quality(inputs: ReportInputs) -> dict[str, Any]:
    day = inputs.day
    out: dict[str, Any] = {"ingest": None, "quarantine": None, "checks": None, "freshness": None}
    if inputs.ingest_counts is not None:
        counts = inputs.ingest_counts
        today = counts.filter(pl.col("day") == day).sort("source")
        out["ingest"] = [
            {**r, "quarantine_share": ratio(r["quarantined"], r["rows_read"])}
            for r in today.to_dicts()
        ]
        last_seen = (
            counts.filter((pl.col("normalized") > 0) & (pl.col("day") <= day))
            .group_by("source")
            .agg(pl.col("day").max().alias("last_day"))
        )
        sources = sorted(set(counts.get_column("source").drop_nulls().to_list()))
        seen = {r["source"]: r["last_day"] for r in last_seen.to_dicts()}
        fresh = []
        for source in sources:
            last = seen.get(source)
            lag = (day - last).days if last else None
            fresh.append(
                {
                    "source": source,
                    "last_day": last,
                    "lag_days": lag,
                    "status": "ok" if lag == 0 else ("no data" if lag is None else "stale"),
                }
            )
        out["freshness"] = fresh
    if inputs.quarantine is not None:
        q = inputs.quarantine
        if "day" in q.columns:
            q = q.filter(pl.col("day") == day)
        out["quarantine"] = (
            q.group_by("source", "reason")
            .agg(pl.len().alias("rows"))
            .sort(["rows", "source", "reason"], descending=[True, False, False])
            .head(TOP_N)
            .to_dicts()
        )
        out["quarantine_total"] = q.height
    if inputs.quality_checks is not None:
        out["checks"] = [
            {
                "name": _label(c.get("name"), "(unnamed)"),
                "status": "passed" if c.get("success") else "FAILED",
                "detail": c.get("detail") or "",
            }
            for c in inputs.quality_checks
        ]
    t = _totals(_day_frame(inputs.usage, day))
    assert t is not None
    out["usage_missing"] = t["usage_missing"]
    out["unpriced_requests"] = t["unpriced_requests"]
    return out


# Columns shown first when present; anything else the frame has follows.
_RECON_COLUMNS = (
    "provider",
    "model_group",
    "line_kind",
    "status",
    "category",
    "expected_usd",
    "reported_usd",
    "invoiced_usd",
    "difference_usd",
    "tolerance_usd",
    "evidence",
    # older or other shapes
    "model",
    "delta_usd",
    "explanation",
)
_RECON_OK = ("ok", "matched", "match", "within_tolerance")
_ANOMALY_COLUMNS = (
    "scope",
    "series",
    "metric",
    "status",
    "actual",
    "expected",
    "actual_usd",
    "expected_usd",
    "impact_usd",
    "impact_pct",
    "score",
    "feedback",
)


def _generic_table(
    frame: pl.DataFrame, preferred: Sequence[str], limit: int = 50
) -> dict[str, Any]:
    """A table of whatever shape another stage wrote: its known columns when it has enough
    of them, else every column (at most 12)."""
    first = [c for c in preferred if c in frame.columns]
    rest = [c for c in frame.columns if c not in first]
    columns = first if len(first) >= 4 else [*first, *rest][:12]
    shown = frame.select(columns).head(limit)
    cols = []
    for c in columns:
        dtype = shown.schema[c]
        if isinstance(dtype, pl.Decimal):
            fmt = "usd" if c.endswith("_usd") else "text"
        elif dtype.is_integer():
            fmt = "int"
        elif dtype.is_float():
            fmt = "pct" if c.endswith(("_pct", "_share", "_rate")) else "num"
            if c.endswith("_ms"):
                fmt = "ms"
        else:
            fmt = "text"
        cols.append({"key": c, "label": c.replace("_", " "), "num": fmt != "text", "fmt": fmt})
    return {"columns": cols, "rows": shown.to_dicts(), "total": frame.height}


def _reconciliation(inputs: ReportInputs) -> dict[str, Any]:
    if inputs.reconciliation is None:
        return {
            "available": False,
            "reason": "No reconciliation result for this day: provider usage or invoices "
            "have not been reconciled yet.",
        }
    frame = inputs.reconciliation
    if "grain" in frame.columns and "period_start" in frame.columns:
        # transforms.reconcile lines: the day's provisional comparison only
        frame = frame.filter((pl.col("grain") == "day") & (pl.col("period_start") == inputs.day))
    if "status" in frame.columns:
        # problems first, largest difference first
        order = [pl.col("status").is_in(list(_RECON_OK)).fill_null(False)]
        if "difference_usd" in frame.columns:
            order.append(-pl.col("difference_usd").abs())
        frame = frame.sort(order, nulls_last=True)
    table = _generic_table(frame, _RECON_COLUMNS)
    statuses: dict[str, int] = {}
    if "status" in frame.columns:
        for r in frame.group_by("status").len().to_dicts():
            statuses[_label(r["status"], "(none)")] = r["len"]
    return {
        "available": True,
        **table,
        "statuses": dict(sorted(statuses.items())),
        "ok_statuses": _RECON_OK,
    }


def _anomalies(inputs: ReportInputs) -> dict[str, Any]:
    if inputs.anomalies is None:
        return {"available": False, "reason": "Anomaly detection has not run for this day."}
    frame = inputs.anomalies
    if "day" in frame.columns and frame.schema["day"] == pl.Date:
        frame = frame.filter(pl.col("day") == inputs.day)
    if "is_anomaly" in frame.columns:
        # transforms.anomalies scores every series every day; only the flagged ones (and
        # new spend) belong in the report, largest impact first
        flagged = pl.col("is_anomaly").fill_null(False)
        if "status" in frame.columns:
            flagged = flagged | (pl.col("status") == "new_spend")
        frame = frame.filter(flagged)
        if "impact" in frame.columns:
            frame = frame.sort(pl.col("impact").abs(), descending=True, nulls_last=True)
    return {"available": True, **_generic_table(frame, _ANOMALY_COLUMNS)}


# ----------------------------------------------------------------------------- entry point
REQUIRED_USAGE_COLUMNS = (
    "day",
    "provider",
    "model_key",
    "model",
    "feature",
    "team",
    *COUNT_MEASURES,
    *FLOAT_MEASURES,
    *MONEY_MEASURES,
)


def build_daily_report(inputs: ReportInputs) -> dict[str, Any]:
    """The whole report model for `inputs.day` (a plain dict the template reads)."""
    missing = [c for c in REQUIRED_USAGE_COLUMNS if c not in inputs.usage.columns]
    if missing:
        raise ReportInputError(f"usage_daily: missing column(s) {', '.join(missing)}")
    if _day_frame(inputs.usage, inputs.day).height == 0:
        raise ReportInputError(f"usage_daily: no rows for {inputs.day}")
    headline = _headline(inputs)
    total_cost = headline["kpis"][0]["value"]
    return {
        "day": inputs.day,
        "weekday": inputs.day.strftime("%A"),
        "prev_day": inputs.day - dt.timedelta(days=1),
        "last_week_day": inputs.day - dt.timedelta(days=7),
        "sections": SECTIONS,
        "headline": headline,
        "cost": _cost(inputs, total_cost),
        "movers": _movers(inputs),
        "unit": _unit(inputs),
        "latency": _latency(inputs),
        "savings": _savings(inputs),
        "capacity": _capacity(inputs),
        "quality": _quality(inputs),
        "reconciliation": _reconciliation(inputs),
        "anomalies": _anomalies(inputs),
        "source_note": inputs.source_note,
    }


def summary(model: Mapping[str, Any]) -> dict[str, Any]:
    """The few figures the index page lists per day (JSON-friendly: money as text)."""
    kpis = {k["label"]: k for k in model["headline"]["kpis"]}
    spend = kpis["Spend (contract)"]["value"]
    return {
        "day": model["day"].isoformat(),
        "cost_usd": None if spend is None else str(spend),
        "requests": kpis["Requests (attempts)"]["value"],
        "unpriced_requests": model["headline"]["unpriced_requests"],
        "anomalies": model["anomalies"].get("total") if model["anomalies"]["available"] else None,
    }
