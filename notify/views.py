"""Turn detection output into `AlertView`s: what each email says, as display strings.

Inputs are the frames of `transforms.anomalies` (scores, alerts, episodes, notices),
`transforms.budgets` (budget and rate-limit events) and, per anomaly, the root cause from
`transforms.root_cause` (a callback, so only alerted series pay for the drill-down).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import polars as pl

from notify.compose import METRIC_TITLES, AlertView, Chart, clean_text, metric_value, pct, usd
from notify.config import AlertsConfig

Explain = Callable[[dict[str, Any]], tuple[pl.DataFrame | None, pl.DataFrame | None]]


def _metric_impact(metric: str, score: dict[str, Any]) -> str:
    if metric == "cost_usd" and score.get("impact_usd") is not None:
        return usd(score["impact_usd"], signed=True)
    impact = score.get("impact")
    if impact is None:
        return "n/a"
    text = metric_value(metric, abs(impact))
    return ("+" if impact >= 0 else "-") + text


def _method(score: dict[str, Any], cfg: AlertsConfig) -> str:
    d = cfg.detection
    if score.get("method") == "seasonal":
        return f"median of the same weekday, last {d.seasonal_weeks} weeks"
    if score.get("method") == "recent":
        return f"median of the last {d.fallback_days} days"
    return "new series: no baseline yet"


def freshness_lines(completeness: pl.DataFrame | None, day: dt.date) -> list[str]:
    if completeness is None or completeness.is_empty():
        return [f"Scored {day.isoformat()}: no source completeness information was given."]
    rows = completeness.filter(pl.col("day") == day).sort("source")
    lines = []
    for r in rows.iter_rows(named=True):
        count = "no rows" if r["rows_read"] is None else f"{r['rows_read']:,} rows"
        usual = f", usually {r['expected_rows']:,.0f}" if r["expected_rows"] else ""
        extra = f" ({r['detail']})" if r["detail"] and r["status"] != "complete" else ""
        lines.append(f"{r['source']}: {r['status']}, {count}{usual}{extra}")
    return lines or [f"No source reported for {day.isoformat()}."]


def _chart(scores: pl.DataFrame, alert: dict[str, Any], cfg: AlertsConfig) -> Chart:
    last = alert["day"]
    first = last - dt.timedelta(days=cfg.email.chart_days - 1)
    rows = scores.filter(
        (pl.col("metric") == alert["metric"])
        & (pl.col("scope") == alert["scope"])
        & (pl.col("series") == alert["series"])
        & pl.col("day").is_between(first, last)
    ).sort("day")
    by_day = {r["day"]: r for r in rows.iter_rows(named=True)}
    days = [first + dt.timedelta(days=i) for i in range(cfg.email.chart_days)]
    z = cfg.detection.z_threshold
    actual, expected, upper, flagged = [], [], [], []
    for d in days:
        r = by_day.get(d)
        actual.append(r["actual"] if r else None)
        expected.append(r["expected"] if r else None)
        upper.append(
            r["expected"] + z * r["scale"]
            if r and r["expected"] is not None and r["scale"] is not None
            else None
        )
        flagged.append(bool(r and r["status"] in ("anomaly", "new_spend")))
    unit = {"cost_usd": "USD per day", "latency_p95_ms": "ms"}.get(alert["metric"], "")
    return Chart(days, actual, expected, upper, flagged, unit)


def how_to_mark(
    cfg: AlertsConfig, feature: str | None, team: str | None, start: dt.date, end: dt.date
) -> str:
    # Names come from logs: one line, and quoted so YAML reads them back verbatim.
    who = (
        f"feature: {json.dumps(clean_text(feature))}"
        if feature is not None
        else f"team: {json.dumps(clean_text(team))}"
    )
    where = (
        "the alerts settings file (AISPEND_ALERTS_CONFIG)"
        if cfg.source == "(defaults)"
        else f"{cfg.source} (AISPEND_ALERTS_CONFIG)"
    )
    return (
        f"Add to the feedback list of {where}:\n"
        f"feedback:\n"
        f"  - {{{who}, from: {start.isoformat()}, to: {end.isoformat()}, kind: expected, "
        f'note: "why"}}\n'
        f"kind: expected or planned (days left out of future baselines) or new_normal "
        f"(the new level becomes the baseline). Matching days never alert again."
    )


def anomaly_views(
    alerts: pl.DataFrame,
    scores: pl.DataFrame,
    episodes: pl.DataFrame,
    cfg: AlertsConfig,
    *,
    completeness: pl.DataFrame | None = None,
    explain: Explain | None = None,
) -> list[AlertView]:
    """One view per alert row (anomaly episodes and new-spend series)."""
    score_index = {
        (r["day"], r["metric"], r["scope"], r["series"]): r
        for r in scores.filter(pl.col("day").is_in(alerts["day"].unique().implode())).iter_rows(
            named=True
        )
    }
    episode_index = {r["episode_key"]: r for r in episodes.iter_rows(named=True)}
    views: list[AlertView] = []
    for alert in alerts.iter_rows(named=True):
        score = score_index.get((alert["day"], alert["metric"], alert["scope"], alert["series"]))
        if score is None:
            continue
        views.append(
            _anomaly_view(
                alert,
                score,
                episode_index.get(alert["episode_key"]),
                scores,
                cfg,
                completeness,
                explain,
            )
        )
    return views


def _anomaly_view(
    alert: dict[str, Any],
    score: dict[str, Any],
    episode: dict[str, Any] | None,
    scores: pl.DataFrame,
    cfg: AlertsConfig,
    completeness: pl.DataFrame | None,
    explain: Explain | None,
) -> AlertView:
    metric = alert["metric"]
    title = METRIC_TITLES.get(metric, metric)
    series = alert["series"]
    day = alert["day"]
    if alert["kind"] == "new_spend":
        headline = (
            f"New spend: {series} {usd(score['actual_usd'])} on {day.isoformat()} (no baseline yet)"
        )
        facts = [
            ("Spend that day", usd(score["actual_usd"])),
            (
                "History",
                f"{score['history_days'] or 0} days (needs {cfg.detection.min_history_days})",
            ),
            (
                "Rule",
                f"a day >= {usd(cfg.detection.new_spend_daily_usd)} "
                f"or a total >= {usd(cfg.detection.new_spend_total_usd)}",
            ),
            ("Requests", f"{score['requests']:,}"),
        ]
        severity = "warning"
    else:
        impact = _metric_impact(metric, score)
        grew = "still growing: " if alert["level"] else ""
        headline = (
            f"{grew}{series} {title} {impact} ({pct(score['impact_pct'])}) on {day.isoformat()}"
        )
        facts = [
            (
                "Actual",
                metric_value(metric, score["actual"])
                if metric != "cost_usd"
                else usd(score["actual_usd"]),
            ),
            (
                "Expected",
                metric_value(metric, score["expected"])
                if metric != "cost_usd"
                else usd(score["expected_usd"]),
            ),
            ("Impact", impact),
            ("Impact %", pct(score["impact_pct"])),
            ("Score", f"{score['score']:.1f} (alerts at {cfg.detection.z_threshold:g})"),
            ("Baseline", _method(score, cfg)),
            ("Requests", f"{score['requests']:,}"),
        ]
        big = score["impact_pct"] is not None and abs(score["impact_pct"]) >= 1.0
        if metric == "cost_usd" and score["impact_usd"] is not None:
            big = big or abs(score["impact_usd"]) >= 10 * cfg.detection.min_impact_usd
        severity = "critical" if big else "warning"
    episode_rows: list[tuple[str, str]] = []
    start = end = day
    if episode is not None:
        start, end = episode["start_day"], episode["end_day"]
        episode_rows = [
            ("Started", start.isoformat()),
            ("Days so far", str(episode["days"])),
            (
                "Peak",
                f"{episode['peak_day'].isoformat()}: "
                + (
                    usd(episode["peak_impact_usd"], signed=True)
                    if metric == "cost_usd"
                    else metric_value(metric, episode["peak_impact"])
                ),
            ),
        ]
        if metric == "cost_usd":
            episode_rows += [
                ("Total impact", usd(episode["total_impact_usd"], signed=True)),
                (
                    "Total actual / expected",
                    f"{usd(episode['total_actual_usd'])} / {usd(episode['total_expected_usd'])}",
                ),
            ]
        if alert["level"]:
            episode_rows.append(
                (
                    "Why again",
                    f"impact grew {cfg.detection.realert_growth:g}x^{alert['level']} "
                    "since the first alert",
                )
            )
    contributors: list[dict[str, str]] = []
    decomposition: list[tuple[str, str]] = []
    if explain is not None and metric == "cost_usd":
        contrib, decomp = explain(alert)
        if contrib is not None:
            for r in contrib.iter_rows(named=True):
                contributors.append(
                    {
                        "dimension": str(r["dimension"]),
                        "value": str(r["value"]),
                        "actual": usd(r["actual_usd"]),
                        "expected": usd(r["expected_usd"]),
                        "delta": usd(r["delta_usd"], signed=True),
                        "share": pct(r["share"], signed=False),
                    }
                )
        if decomp is not None:
            total = decomp.filter(pl.col("row") == "total")
            if total.height:
                t = total.row(0, named=True)
                volume = t["traffic_usd"] + t["tokens_per_request_usd"]
                decomposition = [
                    ("Change vs those days' mean", usd(t["delta_usd"], signed=True)),
                    ("Volume", usd(volume, signed=True)),
                    ("  more/fewer requests", usd(t["traffic_usd"], signed=True)),
                    ("  bigger/smaller requests", usd(t["tokens_per_request_usd"], signed=True)),
                    ("Unit price", usd(t["unit_price_usd"], signed=True)),
                    ("Requests", f"{t['requests']:,} vs {t['expected_requests']:,.0f} expected"),
                ]
    return AlertView(
        alert_key=alert["alert_key"],
        kind=alert["kind"],
        day=day,
        headline=headline,
        severity=severity,
        feature=alert["feature"],
        team=alert["team"],
        facts=facts,
        episode=episode_rows,
        contributors=contributors,
        decomposition=decomposition,
        freshness=freshness_lines(completeness, day),
        how_to_mark=how_to_mark(cfg, alert["feature"], alert["team"], start, end)
        if alert["feature"] is not None or alert["team"] is not None
        else None,
        chart=_chart(scores, alert, cfg),
    )


def budget_views(events: pl.DataFrame) -> list[AlertView]:
    views = []
    for e in events.iter_rows(named=True):
        label = "total" if e["scope"] == "total" else f"{e['scope']} {e['name']}"
        period = "daily" if e["kind"].startswith("daily") else "monthly"
        what = e["kind"].split("_", 1)[1]
        if what == "forecast":
            headline = (
                f"Budget forecast: {label} on track for {usd(e['forecast_usd'])} "
                f"this month, budget {usd(e['budget_usd'])}"
            )
        else:
            headline = (
                f"Budget {what}: {label} {period} spend {usd(e['spend_usd'])} "
                f"of {usd(e['budget_usd'])} ({pct(e['burn'], signed=False)})"
            )
        facts = [
            ("Spend" if period == "daily" else "Month to date", usd(e["spend_usd"])),
            ("Budget", usd(e["budget_usd"])),
            ("Burn", pct(e["burn"], signed=False)),
        ]
        if e["forecast_usd"] is not None:
            facts.append(
                (
                    "Month-end forecast",
                    f"{usd(e['forecast_usd'])} (run rate over {e['days_elapsed']} "
                    f"of {e['days_in_month']} days)",
                )
            )
        views.append(
            AlertView(
                alert_key=e["alert_key"],
                kind="budget",
                day=e["day"],
                headline=headline,
                severity="critical" if what == "breach" else "warning",
                feature=e["name"] if e["scope"] == "feature" else None,
                team=e["name"] if e["scope"] == "team" else None,
                facts=facts,
            )
        )
    return views


def rate_limit_views(events: pl.DataFrame) -> list[AlertView]:
    views = []
    for e in events.iter_rows(named=True):
        unit = "RPM" if e["kind"].endswith("rpm") else "TPM"
        target = e["model_key"] or f"{e['provider']} (all models)"
        minute = f" at {e['peak_minute']:%H:%M} UTC" if e["peak_minute"] is not None else ""
        facts = [
            ("Peak minute", f"{e['peak']:,} {unit}{minute}"),
            ("Limit", f"{e['limit']:,} {unit}"),
            ("Headroom used", pct(e["ratio"], signed=False)),
        ]
        if e["detail"]:
            facts.append(("Note", e["detail"]))
        views.append(
            AlertView(
                alert_key=e["alert_key"],
                kind="rate_limit",
                day=e["day"],
                headline=(
                    f"Rate limit: {target} peaked at {e['peak']:,} {unit}, "
                    f"{pct(e['ratio'], signed=False)} of its limit"
                ),
                severity="critical" if e["ratio"] >= 1 else "warning",
                facts=facts,
            )
        )
    return views


def notice_views(
    notices: pl.DataFrame, completeness: pl.DataFrame | None = None
) -> list[AlertView]:
    return [
        AlertView(
            alert_key=n["alert_key"],
            kind="data_missing",
            day=n["day"],
            headline=(
                f"Data missing on {n['day'].isoformat()}: {n['sources']}; anomalies not scored"
            ),
            severity="notice",
            facts=[
                ("Sources", n["sources"]),
                ("Detail", n["detail"]),
                (
                    "Effect",
                    "no anomaly scoring for this day; it stays out of baselines until "
                    "its data is complete and the day is re-run",
                ),
            ],
            freshness=freshness_lines(completeness, n["day"]),
        )
        for n in notices.iter_rows(named=True)
    ]
