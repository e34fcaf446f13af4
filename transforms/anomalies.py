"""Per-feature anomaly detection on daily roll-ups: series, seasonal baseline, MAD score,
episodes, new-spend rule, data-missing notices and feedback exclusion.

Input: `usage_daily` rows (`transforms.usage_rollups`; the columns used are listed in
`USAGE_COLUMNS`), optionally `latency_by_feature` (`latency_p95_ms`), a completeness frame
(`source_completeness`) and a feedback frame (`FEEDBACK_SCHEMA`).

Series. One per scope and key: `feature` (feature), `feature_model` (feature x model_key),
`team` (team). A null key is its own series, labelled `(none)`. A series starts on the first
day it has a request; after that a day without rows is a real zero (no spend, no requests).
Metrics, per series and day:

  cost_usd             spend, USD (Decimal; statistics in float, impacts exact)
  tokens_per_request   (input + output tokens) / successful requests
  error_rate           (errors + timeouts) / requests
  retry_rate           retries / logical requests
  unpriced_share       unpriced requests / requests
  latency_p95_ms       p95 latency in ms (feature scope only: quantiles do not add up)

Method, for series value x and scored day d:
  1. baseline b(d) = median of x on the `seasonal_weeks` nearest usable same-weekday days
     (looking back up to `seasonal_extra_weeks` more weeks to replace skipped ones; at least
     `min_seasonal_points`), else the median of the last `fallback_days` usable days. A
     day is usable when its data was complete and no feedback ("expected", "planned")
     excludes it.
  2. residuals r(t) = x(t) - b(t) over the `lookback_days` before d, leaving out the newest
     `scale_skip_days` (with the seasonal lags >= 7, a day whose data is still arriving
     then changes no other day's score; history for warm-up counts it anyway);
     scale = max(1.4826 * MAD(r), q(|r|, tail_quantile) / its normal quantile,
     rel_floor * |b(d)|, the metric's abs_floor); a rate's scale is at least its binomial
     standard error sqrt(p (1 - p) / n).
  3. score z = (x(d) - b(d)) / scale; impact = x(d) - b(d); impact_pct = impact / b(d)
     (null when b(d) = 0).
  4. anomaly when |z| >= z_threshold in the metric's direction AND |impact| >= the minimum
     change AND |impact_pct| >= the minimum percent AND (spend) the day's spend, or its
     baseline going down, is at least `min_daily_cost_usd`.

A series with fewer than `min_history_days` usable days is not scored (`warmup`); its
spend goes through the new-spend rule instead (one alert when a day reaches
`new_spend_daily_usd` or the series' total reaches `new_spend_total_usd`).

A day whose sources are late or partial is not scored at all: every series gets status
`incomplete` and one data-missing notice names the sources, so a partial day can never look
like a dip (or, through a flattened baseline, make the next day look like a spike).

Episodes: consecutive anomalous scored days of one series and metric (unscored days neither
extend nor close an episode). Alert key = metric|scope|series|start. An episode notifies at
level 0 when it opens and again each time its impact doubles (level n = floor(log2(impact /
first impact)), impact = peak daily impact by default, total impact with
`realert_basis = "total"`), so a level shift alerts once, a runaway that keeps growing alerts
again. Episodes older than `ongoing_max_days` stop notifying.

Feedback (`expected`, `planned`, `new_normal`) covers a day range of a feature, team or
model (optionally one metric). Its days never alert; `expected` and `planned` days are also
left out of every later baseline, `new_normal` days stay in so the baseline learns the new
level.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from transforms.schema import MONEY

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NONE_LABEL = "(none)"
SCOPES = ("feature", "feature_model", "team")
SCOPE_KEYS: dict[str, tuple[str, ...]] = {
    "feature": ("feature",),
    "feature_model": ("feature", "model_key"),
    "team": ("team",),
}
USAGE_COLUMNS = (
    "day",
    "model_key",
    "feature",
    "team",
    "requests",
    "logical_requests",
    "retries",
    "success",
    "errors",
    "timeouts",
    "unpriced_requests",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)
FEEDBACK_KINDS = ("expected", "planned", "new_normal")
EXCLUDING_FEEDBACK = ("expected", "planned")
MAD_TO_SIGMA = 1.4826

FEEDBACK_SCHEMA = pl.Schema(
    {
        "feature": pl.String(),  # null = any feature
        "team": pl.String(),  # null = any team
        "model_key": pl.String(),  # null = any model
        "metric": pl.String(),  # null = every metric
        "day_from": pl.Date(),
        "day_to": pl.Date(),  # inclusive
        "kind": pl.String(),  # expected | planned | new_normal
        "note": pl.String(),
    }
)

# Per source and day: 'complete', 'partial', 'missing' or 'late' (see source_completeness).
COMPLETENESS_SCHEMA = pl.Schema(
    {
        "day": pl.Date(),
        "source": pl.String(),
        "status": pl.String(),
        "rows_read": pl.Int64(),
        "expected_rows": pl.Float64(),
        "detail": pl.String(),
    }
)

SCORE_SCHEMA = pl.Schema(
    {
        "day": pl.Date(),
        "metric": pl.String(),
        "scope": pl.String(),
        "series": pl.String(),
        "feature": pl.String(),
        "team": pl.String(),
        "model_key": pl.String(),
        # anomaly | normal | below_threshold | warmup | new_spend | incomplete | low_volume |
        # expected (anomalous, covered by feedback) | no_data
        "status": pl.String(),
        "is_anomaly": pl.Boolean(),
        "actual": pl.Float64(),  # metric units (USD for cost_usd, as float for display)
        "expected": pl.Float64(),
        "impact": pl.Float64(),
        "impact_pct": pl.Float64(),
        "score": pl.Float64(),
        "scale": pl.Float64(),
        "actual_usd": MONEY,  # cost_usd only: exact
        "expected_usd": MONEY,
        "impact_usd": MONEY,
        "requests": pl.Int64(),
        "history_days": pl.Int32(),
        "method": pl.String(),  # seasonal | recent | new_spend
        "feedback": pl.String(),
    }
)

EPISODE_SCHEMA = pl.Schema(
    {
        "episode_key": pl.String(),
        "metric": pl.String(),
        "scope": pl.String(),
        "series": pl.String(),
        "feature": pl.String(),
        "team": pl.String(),
        "model_key": pl.String(),
        "start_day": pl.Date(),
        "end_day": pl.Date(),
        "days": pl.Int32(),
        "peak_day": pl.Date(),
        "peak_impact": pl.Float64(),
        "total_impact": pl.Float64(),
        "peak_impact_usd": MONEY,
        "total_impact_usd": MONEY,
        "total_actual_usd": MONEY,
        "total_expected_usd": MONEY,
        "max_score": pl.Float64(),
        "feedback": pl.String(),
        "open": pl.Boolean(),  # the last scored day of the range is still anomalous
    }
)

ALERT_SCHEMA = pl.Schema(
    {
        "alert_key": pl.String(),
        "kind": pl.String(),  # anomaly | new_spend
        "episode_key": pl.String(),
        "level": pl.Int32(),
        "day": pl.Date(),  # the day that triggered this notification
        "metric": pl.String(),
        "scope": pl.String(),
        "series": pl.String(),
        "feature": pl.String(),
        "team": pl.String(),
        "model_key": pl.String(),
    }
)

NOTICE_SCHEMA = pl.Schema(
    {
        "alert_key": pl.String(),
        "day": pl.Date(),
        "sources": pl.String(),  # comma-separated source names
        "detail": pl.String(),
    }
)


@dataclass(frozen=True)
class MetricRule:
    """When a metric's deviation counts: direction and minimum change, in its own units."""

    direction: str = "up"  # up | down | both
    min_abs_change: float = 0.0  # metric units; for cost_usd see DetectionSettings
    min_pct_change: float = 0.25
    abs_floor: float = 0.0  # smallest scale, so a flat series does not score infinity
    min_requests: int = 0  # a day with fewer requests is not scored (rates on tiny volume)
    enabled: bool = True
    # None = DetectionSettings.z_threshold. Rates and sizes default higher: they are scored
    # on every series x model x day, so 3.5 would let binomial and heavy-tail noise through.
    z_threshold: float | None = None
    scopes: tuple[str, ...] | None = None  # None = every scope in DetectionSettings.scopes


DEFAULT_METRICS: dict[str, MetricRule] = {
    "cost_usd": MetricRule(abs_floor=0.01),
    # A team's tokens per request mixes its features' very different prompt sizes: the
    # feature (and feature x model) series carry the signal, the team series only noise.
    "tokens_per_request": MetricRule(
        min_abs_change=100.0,
        min_pct_change=0.25,
        abs_floor=1.0,
        min_requests=200,
        z_threshold=5.0,
        scopes=("feature", "feature_model"),
    ),
    "error_rate": MetricRule(
        min_abs_change=0.02, min_pct_change=0.5, abs_floor=0.002, min_requests=100, z_threshold=5.0
    ),
    "retry_rate": MetricRule(
        min_abs_change=0.02, min_pct_change=0.5, abs_floor=0.002, min_requests=100, z_threshold=5.0
    ),
    "unpriced_share": MetricRule(
        min_abs_change=0.01, min_pct_change=0.5, abs_floor=0.001, min_requests=100, z_threshold=5.0
    ),
    "latency_p95_ms": MetricRule(
        min_abs_change=250.0, min_pct_change=0.25, abs_floor=10.0, min_requests=100, z_threshold=5.0
    ),
}


@dataclass(frozen=True)
class DetectionSettings:
    """Detection knobs; docs/alerts.md documents each one and its default."""

    lookback_days: int = 56
    scale_skip_days: int = 7  # newest residuals left out of the scale (late data in flight)
    seasonal_weeks: int = 4
    seasonal_extra_weeks: int = 2
    min_seasonal_points: int = 2
    fallback_days: int = 14
    min_history_days: int = 14
    z_threshold: float = 3.5
    rel_floor: float = 0.05
    tail_quantile: float = 0.9
    min_impact_usd: Decimal = Decimal("10")
    min_pct_impact: float = 0.25
    min_daily_cost_usd: Decimal = Decimal("1")
    direction: str = "up"
    new_spend_daily_usd: Decimal = Decimal("25")
    new_spend_total_usd: Decimal = Decimal("100")
    new_spend_scopes: tuple[str, ...] = ("feature", "team")
    scopes: tuple[str, ...] = SCOPES
    metrics: dict[str, MetricRule] = field(default_factory=lambda: dict(DEFAULT_METRICS))
    realert_growth: float = 2.0
    realert_basis: str = "peak"  # peak | total
    ongoing_max_days: int = 14
    episode_max_gap_days: int = 3  # calendar days from the last flagged day
    scope_link_days: int = 7

    def rule(self, metric: str) -> MetricRule:
        rule = self.metrics.get(metric, DEFAULT_METRICS[metric])
        if metric == "cost_usd":
            return replace(
                rule,
                direction=self.direction,
                min_abs_change=float(self.min_impact_usd),
                min_pct_change=self.min_pct_impact,
            )
        return rule

    def history_needed_days(self) -> int:
        """Days of roll-ups before the first scored day that scoring reads."""
        return self.lookback_days + 7 * (self.seasonal_weeks + self.seasonal_extra_weeks)


# --------------------------------------------------------------------------- completeness
def source_completeness(
    ingest_counts: pl.LazyFrame,
    days: Sequence[dt.date],
    expected_sources: Sequence[str] | None = None,
    partial_ratio: float = 0.5,
    freshness: pl.LazyFrame | None = None,
    max_quiet_minutes: int = 180,
) -> pl.LazyFrame:
    """Status per (day, source) for `days`, from ingest counts (`INGEST_COUNTS_SCHEMA`).

    * `missing`: an expected source has no ingest row that day (its file never arrived).
    * `partial`: rows_read < partial_ratio x the source's usual rows for that weekday
      (median of the same weekday over the 4 previous weeks, else of the 14 previous days).
    * `late`: with `freshness` (columns source, day, last_event_at UTC), the newest event
      of the day is more than `max_quiet_minutes` before midnight: the tail has not arrived.
    * `complete` otherwise. A source with no usable history is complete if it has rows.

    `expected_sources` defaults to every source seen in the counts.
    """
    counts = (
        ingest_counts.group_by("source", "day")
        .agg(pl.col("rows_read").sum().cast(pl.Int64))
        .collect()
    )
    sources = sorted(
        expected_sources
        if expected_sources is not None
        else {s for s in counts["source"].to_list() if s is not None}
    )
    by_source: dict[str, dict[dt.date, int]] = {s: {} for s in sources}
    for source, day, rows in counts.iter_rows():
        if source in by_source:
            by_source[source][day] = int(rows)
    late: dict[tuple[str, dt.date], dt.datetime] = {}
    if freshness is not None:
        for source, day, last in (
            freshness.select("source", "day", "last_event_at").collect().iter_rows()
        ):
            if last is not None:
                late[(source, day)] = last
    records: list[dict[str, Any]] = []
    for day in days:
        for source in sources:
            history = by_source[source]
            rows_read = history.get(day)
            same_weekday = [
                history[d]
                for d in (day - dt.timedelta(days=7 * k) for k in range(1, 5))
                if d in history
            ]
            recent = [
                history[d]
                for d in (day - dt.timedelta(days=k) for k in range(1, 15))
                if d in history
            ]
            usual = (
                float(np.median(same_weekday))
                if len(same_weekday) >= 2
                else (float(np.median(recent)) if recent else None)
            )
            status, detail = "complete", ""
            if rows_read is None:
                status, detail = "missing", "no data delivered"
            elif usual is not None and usual > 0 and rows_read < partial_ratio * usual:
                status = "partial"
                detail = f"{rows_read} rows, usually {usual:.0f} ({rows_read / usual:.0%})"
            elif (source, day) in late:
                last = late[(source, day)]
                end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), dt.UTC)
                if last.tzinfo is None:
                    last = last.replace(tzinfo=dt.UTC)
                quiet = (end - last).total_seconds() / 60
                if quiet > max_quiet_minutes:
                    status = "late"
                    detail = f"newest event {last:%H:%M} UTC, {quiet:.0f} min before day end"
            records.append(
                {
                    "day": day,
                    "source": source,
                    "status": status,
                    "rows_read": rows_read,
                    "expected_rows": usual,
                    "detail": detail,
                }
            )
    return pl.DataFrame(records, schema=COMPLETENESS_SCHEMA, orient="row").lazy()


def _incomplete_days(completeness: pl.LazyFrame | None) -> dict[dt.date, list[tuple[str, str]]]:
    if completeness is None:
        return {}
    bad = (
        completeness.filter(pl.col("status") != "complete")
        .select("day", "source", "status", "detail")
        .sort("day", "source")
        .collect()
    )
    out: dict[dt.date, list[tuple[str, str]]] = {}
    for day, source, status, detail in bad.iter_rows():
        text = f"{status}: {detail}" if detail else status
        out.setdefault(day, []).append((source, text))
    return out


def data_missing_notices(
    completeness: pl.LazyFrame | None, first_day: dt.date, last_day: dt.date
) -> pl.LazyFrame:
    """One notice per incomplete day in [first_day, last_day]: which sources and why."""
    rows = []
    for day, problems in sorted(_incomplete_days(completeness).items()):
        if first_day <= day <= last_day:
            rows.append(
                {
                    "alert_key": f"data_missing|{day.isoformat()}",
                    "day": day,
                    "sources": ", ".join(s for s, _ in problems),
                    "detail": "; ".join(f"{s} {t}" for s, t in problems),
                }
            )
    return pl.DataFrame(rows, schema=NOTICE_SCHEMA, orient="row").lazy()


# --------------------------------------------------------------------------- series
def _label(values: Sequence[str | None]) -> str:
    return " · ".join(NONE_LABEL if v is None else v for v in values)


@dataclass
class _Series:
    scope: str
    keys: dict[str, str | None]
    days: list[dt.date]
    cost: list[Decimal]
    values: dict[str, FloatArray]
    requests: npt.NDArray[np.int64]
    denominators: dict[str, FloatArray]

    @property
    def label(self) -> str:
        return _label([self.keys[k] for k in SCOPE_KEYS[self.scope]])


def _series_frames(
    usage: pl.DataFrame, latency: pl.DataFrame | None, scope: str, last_day: dt.date
) -> list[_Series]:
    keys = list(SCOPE_KEYS[scope])
    sums = [
        "requests",
        "logical_requests",
        "retries",
        "success",
        "errors",
        "timeouts",
        "unpriced_requests",
        "input_tokens",
        "output_tokens",
    ]
    grouped = usage.group_by("day", *keys).agg(
        *[pl.col(c).fill_null(0).sum().cast(pl.Int64) for c in sums],
        pl.col("cost_usd").sum().cast(MONEY),
    )
    if scope == "feature" and latency is not None:
        grouped = grouped.join(
            latency.select("day", "feature", "latency_p95_ms"),
            on=["day", "feature"],
            how="left",
            nulls_equal=True,
        )
    else:
        grouped = grouped.with_columns(pl.lit(None, pl.Float64).alias("latency_p95_ms"))
    out: list[_Series] = []
    for key_values, part in grouped.sort("day").partition_by(keys, as_dict=True).items():
        first = part["day"].min()
        assert isinstance(first, dt.date)
        span = pl.DataFrame({"day": pl.date_range(first, last_day, "1d", eager=True)})
        dense = span.join(part, on="day", how="left").with_columns(
            *[pl.col(c).fill_null(0) for c in sums],
            pl.col("cost_usd").fill_null(Decimal(0)),
        )
        req = dense["requests"].to_numpy().astype(np.float64)
        ok = dense["success"].to_numpy().astype(np.float64)
        logical = dense["logical_requests"].to_numpy().astype(np.float64)
        tokens = (dense["input_tokens"] + dense["output_tokens"]).to_numpy().astype(np.float64)
        failed = (dense["requests"] - dense["success"]).to_numpy().astype(np.float64)
        # Failed attempts carry no usage and are never priced: the share that matters is of
        # the successful requests (an unknown model, a missing price).
        unpriced_ok = np.clip(
            dense["unpriced_requests"].to_numpy().astype(np.float64) - failed, 0, None
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            values = {
                "cost_usd": dense["cost_usd"].cast(pl.Float64).to_numpy().astype(np.float64),
                "tokens_per_request": np.where(ok > 0, tokens / ok, np.nan),
                "error_rate": np.where(
                    req > 0,
                    (dense["errors"] + dense["timeouts"]).to_numpy().astype(np.float64) / req,
                    np.nan,
                ),
                "retry_rate": np.where(
                    logical > 0, dense["retries"].to_numpy().astype(np.float64) / logical, np.nan
                ),
                "unpriced_share": np.where(ok > 0, unpriced_ok / ok, np.nan),
                "latency_p95_ms": dense["latency_p95_ms"]
                .cast(pl.Float64)
                .fill_null(np.nan)
                .to_numpy()
                .astype(np.float64),
            }
        out.append(
            _Series(
                scope=scope,
                keys=dict(zip(keys, key_values, strict=True)),
                days=dense["day"].to_list(),
                cost=dense["cost_usd"].to_list(),
                values=values,
                requests=dense["requests"].to_numpy().astype(np.int64),
                denominators={
                    "error_rate": req,
                    "retry_rate": logical,
                    "unpriced_share": ok,
                },
            )
        )
    return out


# --------------------------------------------------------------------------- feedback
@dataclass(frozen=True)
class _Feedback:
    feature: str | None
    team: str | None
    model_key: str | None
    metric: str | None
    day_from: dt.date
    day_to: dt.date
    kind: str

    def covers(self, s: _Series, teams_of_feature: dict[str | None, set[str | None]]) -> bool:
        feature = s.keys.get("feature")
        team = s.keys.get("team")
        model = s.keys.get("model_key")
        if self.feature is not None:
            if s.scope == "team":
                # A team's series contains the feature's traffic: its planned days count too.
                if team not in teams_of_feature.get(self.feature, set()):
                    return False
            elif feature != self.feature:
                return False
        if self.team is not None:
            if s.scope == "team":
                if team != self.team:
                    return False
            elif not (teams_of_feature.get(feature, set()) & {self.team}):
                return False
        return self.model_key is None or s.scope != "feature_model" or model == self.model_key


def _feedback_list(feedback: pl.LazyFrame | None) -> list[_Feedback]:
    if feedback is None:
        return []
    rows = feedback.select(list(FEEDBACK_SCHEMA.names())).collect()
    out = []
    for r in rows.iter_rows(named=True):
        out.append(
            _Feedback(
                r["feature"],
                r["team"],
                r["model_key"],
                r["metric"],
                r["day_from"],
                r["day_to"],
                r["kind"],
            )
        )
    return out


# --------------------------------------------------------------------------- scoring
def _nanmedian_rows(matrix: FloatArray) -> FloatArray:
    """np.nanmedian(matrix, axis=1), NaN for a row of NaNs, without its per-call overhead
    (0.3 ms, which thousands of short series turned into seconds): NaNs sort last, so a
    row's median is read off its first `count` sorted values, the mean of the two middle
    ones when the count is even, computed as numpy's median computes it."""
    if matrix.shape[1] == 0:
        return np.full(matrix.shape[0], np.nan)
    ordered = np.sort(matrix, axis=1)
    count = np.sum(~np.isnan(matrix), axis=1)
    rows = np.arange(matrix.shape[0])
    low = ordered[rows, np.maximum(count - 1, 0) // 2]
    high = ordered[rows, count // 2]
    result: FloatArray = np.where(count > 0, (low + high) / 2, np.nan)
    return result


def _lagged(x: FloatArray, lags: Sequence[int]) -> FloatArray:
    """matrix[t, j] = x[t - lags[j]] (NaN before the start)."""
    n = len(x)
    out = np.full((n, len(lags)), np.nan)
    for j, lag in enumerate(lags):
        if lag < n:
            out[lag:, j] = x[: n - lag]
    return out


@dataclass
class _Stats:
    baseline: FloatArray
    method: list[str]
    scale: FloatArray
    history: npt.NDArray[np.int64]
    sources: list[list[int]]  # per day, the indices the baseline median used


def _normal_quantile(q: float) -> float:
    """Inverse standard normal CDF by bisection (no scipy dependency for one number)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _statistics(
    x: FloatArray,
    usable: BoolArray,
    s: DetectionSettings,
    floor: float,
    denominator: FloatArray | None = None,
    present: BoolArray | None = None,
) -> _Stats:
    xb = np.where(usable, x, np.nan)
    n = len(x)
    # Same weekday, nearest first; a skipped week (incomplete data, feedback) is replaced by
    # the next older one (up to `seasonal_extra_weeks`), so one excluded day does not turn a
    # median of 4 into a median of 3 and move every borderline score.
    seasonal_lags = [7 * k for k in range(1, s.seasonal_weeks + s.seasonal_extra_weeks + 1)]
    recent_lags = list(range(1, s.fallback_days + 1))
    seasonal = _lagged(xb, seasonal_lags)
    taken = np.cumsum(~np.isnan(seasonal), axis=1)
    seasonal = np.where(taken <= s.seasonal_weeks, seasonal, np.nan)
    recent = _lagged(xb, recent_lags)
    n_seasonal = np.sum(~np.isnan(seasonal), axis=1)
    n_recent = np.sum(~np.isnan(recent), axis=1)
    use_seasonal = n_seasonal >= s.min_seasonal_points
    baseline = np.where(
        use_seasonal,
        _nanmedian_rows(seasonal),
        np.where(n_recent >= 1, _nanmedian_rows(recent), np.nan),
    )
    resid = np.where(usable, x - baseline, np.nan)
    # The newest `scale_skip_days` residuals are left out of the scale: a day whose data is
    # still arriving (late or partial) is then read by no other day's statistics until it
    # is a week old (the seasonal baseline's lags are >= 7 too), so the day it arrives and
    # is re-run, every score equals the one on-time data would have given.
    skip = min(max(s.scale_skip_days, 0), s.lookback_days - 1)
    window = _lagged(resid, list(range(skip + 1, s.lookback_days + 1)))
    center = _nanmedian_rows(window)
    mad = _nanmedian_rows(np.abs(window - center[:, None]))
    n_resid = np.sum(~np.isnan(window), axis=1)
    mad = np.where(n_resid >= 5, mad, np.nan)
    scale = np.fmax(np.fmax(MAD_TO_SIGMA * mad, s.rel_floor * np.abs(baseline)), floor)
    if s.tail_quantile > 0:
        # Daily spend is heavy-tailed (a few long-context or reasoning-heavy requests move a
        # day): MAD alone calls those days 5 sigma. The residuals' own upper quantile, read
        # as a normal quantile, widens the scale only for series that really have such tails.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            tail = np.nanquantile(np.abs(window - center[:, None]), s.tail_quantile, axis=1)
        z_q = _normal_quantile(0.5 + s.tail_quantile / 2)
        scale = np.fmax(scale, np.where(n_resid >= 10, tail / z_q, np.nan))
    if denominator is not None:
        # A rate over n requests is binomial: never trust a scale below its standard error.
        p = np.clip(baseline, 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            stderr = np.sqrt(p * (1 - p) / denominator)
        scale = np.fmax(scale, np.where(denominator > 0, stderr, np.nan))
    # History counts the days the series had data, whether or not a source was late that
    # day: a late day must not push a young series back into warm-up (or out of it later).
    counted = usable if present is None else present
    cum = np.concatenate([[0], np.cumsum(counted.astype(np.int64))])
    idx = np.arange(n)
    history = cum[idx] - cum[np.maximum(idx - s.lookback_days, 0)]
    methods, sources = [], []
    for t in range(n):
        if use_seasonal[t]:
            methods.append("seasonal")
            used = [t - lag for lag in seasonal_lags if t - lag >= 0 and usable[t - lag]]
            sources.append(used[: s.seasonal_weeks])
        else:
            methods.append("recent")
            sources.append([t - lag for lag in recent_lags if t - lag >= 0 and usable[t - lag]])
    return _Stats(baseline, methods, scale, history.astype(np.int64), sources)


def _decimal_median(values: list[Decimal]) -> Decimal | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    with localcontext() as ctx:
        ctx.prec = 60
        return ((ordered[mid - 1] + ordered[mid]) / 2).quantize(Decimal("1e-18"))


def _passes(rule: MetricRule, z: float, impact: float, pct: float | None) -> tuple[bool, bool]:
    """(score beyond threshold in the rule's direction, change large enough)."""
    ups = rule.direction in ("up", "both")
    downs = rule.direction in ("down", "both")
    score_hit = False
    big = False
    for sign, on in ((1.0, ups), (-1.0, downs)):
        if not on:
            continue
        if sign * z > 0:
            score_hit = True
            big = sign * impact >= rule.min_abs_change and (
                pct is None or sign * pct >= rule.min_pct_change
            )
    return score_hit, big


def score_series(
    usage_daily: pl.LazyFrame,
    first_day: dt.date,
    last_day: dt.date,
    settings: DetectionSettings | None = None,
    *,
    latency_by_feature: pl.LazyFrame | None = None,
    completeness: pl.LazyFrame | None = None,
    feedback: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """Score every series and metric on each day of [first_day, last_day] (`SCORE_SCHEMA`).

    `usage_daily` must hold the history before `first_day` too
    (`settings.history_needed_days()` days is the most scoring reads)."""
    s = settings or DetectionSettings()
    usage = usage_daily.select(*USAGE_COLUMNS).filter(pl.col("day") <= last_day).collect()
    latency = (
        latency_by_feature.select("day", "feature", "latency_p95_ms")
        .filter(pl.col("day") <= last_day)
        .collect()
        if latency_by_feature is not None
        else None
    )
    incomplete = _incomplete_days(completeness)
    feedback_rows = _feedback_list(feedback)
    teams_of_feature: dict[str | None, set[str | None]] = {}
    for feature, team in usage.select("feature", "team").unique().iter_rows():
        teams_of_feature.setdefault(feature, set()).add(team)

    records: list[dict[str, Any]] = []
    for scope in s.scopes:
        for series in _series_frames(usage, latency, scope, last_day):
            owners = teams_of_feature.get(series.keys.get("feature"), set())
            if scope != "team" and len(owners) == 1:
                # A feature owned by one team: routing and scope collapsing use its team.
                series.keys["team"] = next(iter(owners))
            records.extend(
                _score_one(series, first_day, s, incomplete, feedback_rows, teams_of_feature)
            )
    frame = pl.DataFrame(records, schema=SCORE_SCHEMA, orient="row")
    return frame.sort("day", "metric", "scope", "series").lazy()


def _score_one(
    series: _Series,
    first_day: dt.date,
    s: DetectionSettings,
    incomplete: dict[dt.date, list[tuple[str, str]]],
    feedback: list[_Feedback],
    teams_of_feature: dict[str | None, set[str | None]],
) -> list[dict[str, Any]]:
    days = series.days
    n = len(days)
    complete = np.array([d not in incomplete for d in days], dtype=bool)
    covering = [f for f in feedback if f.covers(series, teams_of_feature)]
    out: list[dict[str, Any]] = []
    start_idx = next((i for i, d in enumerate(days) if d >= first_day), n)
    for metric, x in series.values.items():
        rule = s.rule(metric)
        if not rule.enabled or (metric == "latency_p95_ms" and series.scope != "feature"):
            continue
        if rule.scopes is not None and series.scope not in rule.scopes:
            continue
        fb_kind: list[str | None] = [None] * n
        excluded = np.zeros(n, dtype=bool)
        for f in covering:
            if f.metric is not None and f.metric != metric:
                continue
            for i, d in enumerate(days):
                if f.day_from <= d <= f.day_to:
                    fb_kind[i] = f.kind
                    excluded[i] |= f.kind in EXCLUDING_FEEDBACK
        enough = series.requests >= rule.min_requests
        present = ~excluded & ~np.isnan(x) & enough
        usable = complete & present
        stats = _statistics(x, usable, s, rule.abs_floor, series.denominators.get(metric), present)
        is_cost = metric == "cost_usd"
        cumulative = Decimal(0)
        new_spend_fired = False
        for i in range(n):
            if is_cost:
                cumulative += series.cost[i] if complete[i] else Decimal(0)
            if i < start_idx:
                if (
                    is_cost
                    and stats.history[i] < s.min_history_days
                    and _new_spend_hit(series, i, cumulative, s, complete)
                ):
                    new_spend_fired = True
                continue
            record = _base_record(series, metric, i, fb_kind[i])
            out.append(record)
            if not complete[i]:
                record["status"] = "incomplete"
                continue
            value = float(x[i])
            record["actual"] = None if math.isnan(value) else value
            if is_cost:
                record["actual_usd"] = series.cost[i]
            if math.isnan(value) or (series.requests[i] == 0 and not is_cost):
                record["status"] = "no_data"
                continue
            if not enough[i]:
                record["status"] = "low_volume"
                continue
            history = int(stats.history[i])
            record["history_days"] = history
            if history < s.min_history_days:
                record["status"] = "warmup"
                if (
                    is_cost
                    and not new_spend_fired
                    and _new_spend_hit(series, i, cumulative, s, complete)
                ):
                    new_spend_fired = True
                    record["status"] = "new_spend" if fb_kind[i] is None else "expected"
                    record["is_anomaly"] = fb_kind[i] is None
                    record["method"] = "new_spend"
                    record["impact_usd"] = series.cost[i]
                    record["impact"] = value
                continue
            base = float(stats.baseline[i])
            if math.isnan(base):
                record["status"] = "warmup"
                continue
            scale = float(stats.scale[i])
            impact = value - base
            pct = impact / base if base != 0 else None
            z = impact / scale
            record.update(
                expected=base,
                impact=impact,
                impact_pct=pct,
                score=z,
                scale=scale,
                method=stats.method[i],
            )
            if is_cost:
                expected_usd = _decimal_median([series.cost[j] for j in stats.sources[i]])
                if expected_usd is not None:
                    record["expected_usd"] = expected_usd
                    record["impact_usd"] = series.cost[i] - expected_usd
            score_hit, big = _passes(rule, z, impact, pct)
            threshold = rule.z_threshold if rule.z_threshold is not None else s.z_threshold
            beyond = score_hit and abs(z) >= threshold
            if is_cost and big:
                reference = series.cost[i] if impact >= 0 else Decimal(str(base))
                big = reference >= s.min_daily_cost_usd
            if beyond and big:
                if fb_kind[i] is not None:
                    record["status"] = "expected"
                else:
                    record["status"] = "anomaly"
                    record["is_anomaly"] = True
            elif beyond:
                record["status"] = "below_threshold"
            else:
                record["status"] = "normal"
    return out


def _new_spend_hit(
    series: _Series, i: int, cumulative: Decimal, s: DetectionSettings, complete: BoolArray
) -> bool:
    if series.scope not in s.new_spend_scopes or not complete[i]:
        return False
    return series.cost[i] >= s.new_spend_daily_usd or cumulative >= s.new_spend_total_usd


def _base_record(series: _Series, metric: str, i: int, feedback: str | None) -> dict[str, Any]:
    return {
        "day": series.days[i],
        "metric": metric,
        "scope": series.scope,
        "series": series.label,
        "feature": series.keys.get("feature"),
        "team": series.keys.get("team"),
        "model_key": series.keys.get("model_key"),
        "status": None,
        "is_anomaly": False,
        "actual": None,
        "expected": None,
        "impact": None,
        "impact_pct": None,
        "score": None,
        "scale": None,
        "actual_usd": None,
        "expected_usd": None,
        "impact_usd": None,
        "requests": int(series.requests[i]),
        "history_days": None,
        "method": None,
        "feedback": feedback,
    }


# --------------------------------------------------------------------------- episodes
_SERIES_ID = ("metric", "scope", "series")


def episodes(scores: pl.LazyFrame, settings: DetectionSettings | None = None) -> pl.LazyFrame:
    """Merge consecutive anomalous scored days of each series and metric (`EPISODE_SCHEMA`).

    Days that were not scored (incomplete data, warm-up) are skipped: they neither extend
    nor close an episode. Days under feedback (`expected`) join the episode, which then
    carries the feedback kind and never notifies."""
    s = settings or DetectionSettings()
    rows = _episode_rows(scores, s.episode_max_gap_days)
    return pl.DataFrame(
        [{k: v for k, v in e.items() if k in EPISODE_SCHEMA} for e in rows],
        schema=EPISODE_SCHEMA,
        orient="row",
    ).lazy()


_SCORED = ("anomaly", "expected", "normal", "below_threshold")


def _episode_rows(scores: pl.LazyFrame, max_gap: int = 3) -> list[dict[str, Any]]:
    frame = (
        scores.filter(pl.col("status").is_in(_SCORED) & (pl.col("method") != "new_spend"))
        .sort(*_SERIES_ID, "day")
        .collect()
    )
    out: list[dict[str, Any]] = []
    for _, part in frame.partition_by(list(_SERIES_ID), as_dict=True).items():
        current: dict[str, Any] | None = None
        for r in part.iter_rows(named=True):
            flagged = r["status"] in ("anomaly", "expected")
            # A level shift flickers around the threshold while the baseline catches up: a
            # normal day less than `max_gap` calendar days after the last flagged one does not
            # end the episode. Calendar days, so an unscored (incomplete) stretch never glues
            # two separate events together.
            if current is not None and (r["day"] - current["_active"]).days > max_gap:
                current["open"] = False
                out.append(current)
                current = None
            if not flagged:
                # Still beyond the score threshold but under the dollar/percent gates (a
                # level shift on a quiet weekend day): the episode is alive, not worse.
                if current is not None and r["status"] == "below_threshold":
                    current["_active"] = r["day"]
                continue
            impact = abs(r["impact"] or 0.0)
            impact_usd = r["impact_usd"] if r["impact_usd"] is not None else Decimal(0)
            if current is None:
                current = {
                    "episode_key": "|".join(
                        [r["metric"], r["scope"], r["series"], r["day"].isoformat()]
                    ),
                    "metric": r["metric"],
                    "scope": r["scope"],
                    "series": r["series"],
                    "feature": r["feature"],
                    "team": r["team"],
                    "model_key": r["model_key"],
                    "start_day": r["day"],
                    "end_day": r["day"],
                    "days": 0,
                    "peak_day": r["day"],
                    "peak_impact": impact,
                    "total_impact": 0.0,
                    "peak_impact_usd": impact_usd,
                    "total_impact_usd": Decimal(0),
                    "total_actual_usd": Decimal(0),
                    "total_expected_usd": Decimal(0),
                    "max_score": abs(r["score"] or 0.0),
                    "feedback": None,
                    "open": True,
                    "_daily": [],
                }
            current["end_day"] = r["day"]
            current["_active"] = r["day"]
            current["days"] += 1
            current["total_impact"] += impact
            current["total_impact_usd"] += impact_usd
            current["total_actual_usd"] += r["actual_usd"] or Decimal(0)
            current["total_expected_usd"] += r["expected_usd"] or Decimal(0)
            current["max_score"] = max(current["max_score"], abs(r["score"] or 0.0))
            if impact > current["peak_impact"]:
                current["peak_impact"] = impact
                current["peak_day"] = r["day"]
                current["peak_impact_usd"] = impact_usd
            if r["feedback"] is not None:
                current["feedback"] = r["feedback"]
            relative = abs(r["impact_pct"]) if r["impact_pct"] is not None else None
            current["_daily"].append((r["day"], impact, relative, r["feedback"]))
        if current is not None:
            out.append(current)
    return out


def notification_level(first: float, current: float, growth: float) -> int:
    """How many times the impact has grown by `growth` since the first notification."""
    if first <= 0 or current <= first:
        return 0
    return math.floor(math.log(current / first) / math.log(growth) + 1e-9)


def alerts(
    scores: pl.LazyFrame,
    first_day: dt.date,
    last_day: dt.date,
    settings: DetectionSettings | None = None,
) -> pl.LazyFrame:
    """Notifications triggered on days in [first_day, last_day] (`ALERT_SCHEMA`).

    Episode alerts: level 0 on the opening day, level n on the first day the impact reaches
    growth^n x the first day's impact; none under feedback or after `ongoing_max_days`.
    New-spend alerts: one per series, on the day the rule fired.

    Scopes are collapsed so one cause sends one email: a feature x model anomaly is part of
    its feature's alert when the feature is anomalous on that metric and day, and a team
    anomaly is dropped when one of the team's features is."""
    s = settings or DetectionSettings()
    raw: list[dict[str, Any]] = []
    for e in _episode_rows(scores, s.episode_max_gap_days):
        if e["feedback"] is not None:
            continue
        daily: list[tuple[dt.date, float, float | None, str | None]] = e["_daily"]
        # Peak basis compares the impact relative to expected: a level shift that opened on
        # a quiet Sunday must not "double" on Monday just because Mondays spend more.
        relative = all(rel is not None for _, _, rel, _ in daily)
        first_impact = daily[0][2] if relative else daily[0][1]
        running_peak, running_total, level_sent = 0.0, 0.0, -1
        for n_day, (day, impact, rel, fb) in enumerate(daily):
            running_peak = max(running_peak, rel if relative and rel is not None else impact)
            running_total += impact
            if fb is not None or n_day >= s.ongoing_max_days:
                break
            if s.realert_basis == "total":
                basis, reference = running_total, daily[0][1]
            else:
                basis, reference = running_peak, first_impact or 0.0
            level = 0 if n_day == 0 else notification_level(reference, basis, s.realert_growth)
            if level > level_sent:
                level_sent = level
                if first_day <= day <= last_day:
                    raw.append(_alert_record(e, "anomaly", level, day))
    new = (
        scores.filter((pl.col("status") == "new_spend") & pl.col("is_anomaly"))
        .filter(pl.col("day").is_between(first_day, last_day))
        .collect()
    )
    for r in new.iter_rows(named=True):
        key = "|".join(["new_spend", r["scope"], r["series"]])
        raw.append(
            {
                "alert_key": key,
                "kind": "new_spend",
                "episode_key": key,
                "level": 0,
                "day": r["day"],
                "metric": r["metric"],
                "scope": r["scope"],
                "series": r["series"],
                "feature": r["feature"],
                "team": r["team"],
                "model_key": r["model_key"],
            }
        )
    return pl.DataFrame(
        _collapse_scopes(raw, scores, s.scope_link_days), schema=ALERT_SCHEMA, orient="row"
    ).lazy()


def _alert_record(e: dict[str, Any], kind: str, level: int, day: dt.date) -> dict[str, Any]:
    return {
        "alert_key": f"{e['episode_key']}#{level}",
        "kind": kind,
        "episode_key": e["episode_key"],
        "level": level,
        "day": day,
        "metric": e["metric"],
        "scope": e["scope"],
        "series": e["series"],
        "feature": e["feature"],
        "team": e["team"],
        "model_key": e["model_key"],
    }


def _collapse_scopes(
    raw: list[dict[str, Any]], scores: pl.LazyFrame, link_days: int = 7
) -> list[dict[str, Any]]:
    flagged = (
        scores.filter(pl.col("status").is_in(["anomaly", "expected", "new_spend"]))
        .select("day", "metric", "scope", "feature", "team")
        .collect()
    )
    feature_days = {(d, m, f) for d, m, sc, f, _ in flagged.iter_rows() if sc == "feature"}
    team_days = {
        (d, m, t)
        for d, m, sc, _, t in flagged.iter_rows()
        if sc == "feature_model" or sc == "feature"
    }
    kept = []
    for a in raw:
        # The parent feature flagged that day or in the `link_days` before: the same cause
        # (a level shift reaches the model series a few days apart), one email.
        recent = [a["day"] - dt.timedelta(days=k) for k in range(link_days + 1)]
        if a["scope"] == "feature_model" and any(
            (d, a["metric"], a["feature"]) in feature_days for d in recent
        ):
            continue
        if a["scope"] == "team" and any((d, a["metric"], a["team"]) in team_days for d in recent):
            continue
        kept.append(a)
    return sorted(kept, key=lambda a: (a["day"], a["alert_key"]))


def feedback_frame(entries: Iterable[dict[str, Any]]) -> pl.LazyFrame:
    """Feedback entries (dicts with FEEDBACK_SCHEMA keys; missing ones are null)."""
    rows = [{k: e.get(k) for k in FEEDBACK_SCHEMA.names()} for e in entries]
    for r in rows:
        if r["kind"] not in FEEDBACK_KINDS:
            raise ValueError(f"feedback kind must be one of {FEEDBACK_KINDS}, got {r['kind']!r}")
        if r["day_to"] is None:
            r["day_to"] = r["day_from"]
    return pl.DataFrame(rows, schema=FEEDBACK_SCHEMA, orient="row").lazy()
