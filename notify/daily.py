"""One day of alerting, end to end: read the lake, detect, build views, send via the outbox.

`evaluate_day(base, day, cfg)` reads the roll-ups the detectors need from the lake
(`usage_daily`, `latency_by_feature`, `ingest_counts`, `peaks_by_model`) and returns a
`DayResult`: the day's scores, the alerts it triggers, budget and rate-limit events and
data-missing notices. It re-scores the `episode_window_days` before the day as well, so
episodes (and their alert keys) come out the same on every rerun and backfill; nothing is
carried over from earlier runs except the feedback.

`notify_day(engine, result, cfg, transport)` builds the emails (root cause drills into
`priced_requests` of the alerted day and its baseline days only), records them in the outbox
(idempotent), folds digests and delivers. The Dagster alerts asset and `aispend anomalies`
both call these.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy.engine import Engine

from lake import store
from notify import outbox, views
from notify.compose import AlertView
from notify.config import AlertsConfig
from notify.transport import Transport
from transforms import anomalies, budgets, root_cause

EPISODE_WINDOW_DAYS = 35


@dataclass
class DayResult:
    day: dt.date
    scores: pl.DataFrame  # every series and metric on the day
    window_scores: pl.DataFrame  # the episode window, for charts and episodes
    alerts: pl.DataFrame
    episodes: pl.DataFrame
    notices: pl.DataFrame
    budget_events: pl.DataFrame
    rate_limit_events: pl.DataFrame
    completeness: pl.DataFrame | None

    def anomalies(self) -> pl.DataFrame:
        return self.scores.filter(pl.col("is_anomaly") | (pl.col("status") == "expected"))

    def to_json(self) -> dict[str, Any]:
        def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
            return [
                {
                    k: (
                        str(v)
                        if v is not None and not isinstance(v, int | float | bool | str)
                        else v
                    )
                    for k, v in r.items()
                }
                for r in frame.iter_rows(named=True)
            ]

        return {
            "day": self.day.isoformat(),
            "anomalies": rows(
                self.anomalies().select(
                    "metric",
                    "scope",
                    "series",
                    "status",
                    "actual",
                    "expected",
                    "impact",
                    "impact_pct",
                    "impact_usd",
                    "score",
                    "method",
                    "feedback",
                )
            ),
            "alerts": rows(
                self.alerts.select("alert_key", "kind", "level", "metric", "scope", "series")
            ),
            "budget_events": rows(self.budget_events),
            "rate_limit_events": rows(self.rate_limit_events),
            "data_missing": rows(self.notices),
            "status_counts": {
                str(s): int(n)
                for s, n in self.scores.group_by("status").len().sort("status").iter_rows()
            },
        }


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def evaluate_day(
    base: str | os.PathLike[str],
    day: dt.date,
    cfg: AlertsConfig,
    *,
    extra_feedback: pl.LazyFrame | None = None,
) -> DayResult:
    """Detect everything for `day` from the lake under `base`."""
    s = cfg.detection
    first_scored = day - dt.timedelta(days=EPISODE_WINDOW_DAYS - 1)
    history_first = first_scored - dt.timedelta(days=s.history_needed_days())
    usage = store.scan_dataset(base, "usage_daily", _days(history_first, day))
    if usage is None:
        raise store.LakeError(
            f"{store.dataset_path(base, 'usage_daily')}: no partition up to {day}"
        )
    latency = store.scan_dataset(base, "latency_by_feature", _days(history_first, day))
    counts = store.scan_dataset(
        base, "ingest_counts", _days(first_scored - dt.timedelta(days=35), day)
    )
    completeness = (
        anomalies.source_completeness(
            counts,
            _days(first_scored, day),
            cfg.completeness.expected_sources,
            cfg.completeness.partial_ratio,
        ).collect()
        if counts is not None
        else None
    )
    feedback = cfg.feedback_frame()
    if extra_feedback is not None:
        feedback = pl.concat([feedback, extra_feedback.select(anomalies.FEEDBACK_SCHEMA.names())])
    usage_frame = usage.collect()
    window = anomalies.score_series(
        usage_frame.lazy(),
        first_scored,
        day,
        s,
        latency_by_feature=latency,
        completeness=completeness.lazy() if completeness is not None else None,
        feedback=feedback,
    ).collect()
    alerts = anomalies.alerts(window.lazy(), day, day, s).collect()
    episodes = anomalies.episodes(window.lazy(), s).collect()
    notices = anomalies.data_missing_notices(
        completeness.lazy() if completeness is not None else None, day, day
    ).collect()
    budget_events = budgets.budget_events(usage_frame.lazy(), day, cfg.budgets).collect()
    peaks = store.scan_dataset(base, "peaks_by_model", [day])
    rate_events = (
        budgets.rate_limit_events(peaks, day, cfg.rate_limits).collect()
        if peaks is not None and cfg.rate_limits
        else pl.DataFrame(schema=budgets.RATE_LIMIT_EVENT_SCHEMA)
    )
    return DayResult(
        day=day,
        scores=window.filter(pl.col("day") == day),
        window_scores=window,
        alerts=alerts,
        episodes=episodes,
        notices=notices,
        budget_events=budget_events,
        rate_limit_events=rate_events,
        completeness=completeness,
    )


def baseline_days(result: DayResult, alert: dict[str, Any]) -> list[dt.date]:
    """The same-weekday days the alerted day was compared with (usable ones only)."""
    day = alert["day"]
    weeks = 4
    incomplete = (
        set(result.completeness.filter(pl.col("status") != "complete")["day"].to_list())
        if result.completeness is not None
        else set()
    )
    return [
        d
        for d in (day - dt.timedelta(days=7 * k) for k in range(1, weeks + 1))
        if d not in incomplete
    ]


def explainer(
    base: str | os.PathLike[str], result: DayResult, usage: pl.DataFrame | None = None
) -> views.Explain:
    """Root cause for an alert: contributors from priced requests (when the lake has them)
    and the volume / unit-price split from usage_daily."""

    def explain(alert: dict[str, Any]) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
        days = baseline_days(result, alert)
        if not days:
            return None, None
        condition = _series_filter(alert)
        priced = store.scan_dataset(base, "priced_requests", [alert["day"], *days])
        contrib = (
            root_cause.contributors(priced.filter(condition), alert["day"], days).collect()
            if priced is not None
            else None
        )
        frame = (
            usage
            if usage is not None
            else store.scan_dataset(base, "usage_daily", [alert["day"], *days])
        )
        decomp = (
            root_cause.decompose(frame.lazy().filter(condition), alert["day"], days).collect()
            if frame is not None
            else None
        )
        return contrib, decomp

    return explain


def _series_filter(alert: dict[str, Any]) -> pl.Expr:
    condition = pl.lit(True)
    keys = anomalies.SCOPE_KEYS[alert["scope"]]
    for key in keys:
        value = alert[key]
        condition &= pl.col(key).is_null() if value is None else (pl.col(key) == value)
    return condition


def all_views(
    result: DayResult, cfg: AlertsConfig, explain: views.Explain | None
) -> list[AlertView]:
    return [
        *views.anomaly_views(
            result.alerts,
            result.window_scores,
            result.episodes,
            cfg,
            completeness=result.completeness,
            explain=explain,
        ),
        *views.budget_views(result.budget_events),
        *views.rate_limit_views(result.rate_limit_events),
        *views.notice_views(result.notices, result.completeness),
    ]


@dataclass
class NotifyReport:
    enqueued: outbox.EnqueueReport
    digests: int
    delivery: outbox.DeliveryReport


def notify_day(
    engine: Engine,
    result: DayResult,
    cfg: AlertsConfig,
    transport: Transport,
    *,
    explain: views.Explain | None = None,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
    deliver_now: bool = True,
) -> NotifyReport:
    """Record the day's alerts in the outbox, fold digests, send what is due."""
    view_list: Sequence[AlertView] = all_views(result, cfg, explain)
    enqueued = outbox.enqueue(engine, view_list, cfg, today=today, now=now)
    digests = outbox.flush_digests(engine, cfg, result.day, now=now)
    delivery = (
        outbox.deliver(engine, transport, max_attempts=cfg.email.max_attempts, now=now)
        if deliver_now
        else outbox.DeliveryReport()
    )
    return NotifyReport(enqueued, digests, delivery)
