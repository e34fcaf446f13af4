"""Benchmark: precision and recall of the anomaly detector on generated months.

    python -m bench.bench_anomalies                       # 3 seeds, 16 weeks, 5000 requests/day
    python -m bench.bench_anomalies --seeds 1 --rpd 3000  # quicker

Per seed: datagen's ground-truth traffic (`datagen.traffic.build_attempts`, weekly and daily
seasonality, model launches, price changes, heavy-tailed prompts), repriced with the real
catalog, then injected on the repriced requests (so the true added cost of every injection
is known exactly):

  spike        one feature-day gets (m - 1) x its requests again (rows resampled), m in
               1.3 .. 5
  level_shift  the same from a day on, for the rest of the period
  token_bloat  one feature-day's prompts k x longer (input and cache token counts and their
               cost components x k): a tokens-per-request and a spend anomaly
  error_surge  a share of one feature-day's requests fail (no usage, no cost)
  latency      one feature-day's calls take +X s
  unpriced     a share of one feature-day's successful requests hit an unknown model
  new_feature  from a day on, a new feature (half the traffic of an existing one, copied)
  retry_storm  a share of one feature-day's requests fail on attempt 1 (429, no usage) and
               succeed on attempt 2: a retry-rate and an error-rate anomaly
  missing      a gateway's whole day arrives 1..--max-arrival-days days late
  partial      70% of a gateway's day (its tail) arrives 1..N days late

Completeness comes from per-gateway row counts of the final frame, as the ingest asset's
counts would show them (`source_completeness`). Everything after 8 weeks of history is scored
in one pass, which equals running each day in turn (tests/test_anomalies.py checks it).

Matching: an alert matches an injection when the metric is one the injection moves, the day
is one of its days (a level shift or a new feature: its first 3 days) and the alert's feature
(or, for a team-scope alert, its team) is the injected one. Precision = matching alerts / all
alerts of the metric. Recall = injections with at least one matching alert / injections that
are "above threshold": for spend, true added cost >= min_impact_usd and >= min_pct_impact of
the feature's usual spend that day (new features: the new-spend rule's thresholds); for the
other metrics, every injection (they are sized above their metric's gates). "Alerts caused
by late data" = alert keys of the run with late/partial gateway days that the same traffic
on time does not have (target: zero). The alerts scored are the production timeline's: the
run of day t reads the data present on day t (late events still in flight are missing and
their gateway-day is incomplete), and a late day is re-run when its data arrives. "Never
arrives" repeats the comparison with the late data missing for good (a stress case).
Results: bench/results/anomalies_latest.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from datagen.org import FEATURES
from datagen.traffic import build_attempts
from pricing_catalog.catalog import Catalog
from transforms import anomalies as an
from transforms.reprice import reprice
from transforms.schema import MONEY
from transforms.usage_rollups import latency_by_feature, usage_daily

RESULTS = Path(__file__).resolve().parent / "results"
START = dt.date(2025, 9, 1)
COST_PARTS = (
    "cost_input_usd",
    "cost_cache_read_usd",
    "cost_cache_write_5m_usd",
    "cost_cache_write_1h_usd",
)
SPEND = "cost_usd"
# A failed attempt carries no usage and no cost.
RETRY_NULLED = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    *COST_PARTS,
)


@dataclass
class Injection:
    kind: str
    feature: str
    team: str
    days: list[dt.date]
    metrics: tuple[str, ...]
    size: float
    added_usd: Decimal = Decimal(0)
    usual_usd: Decimal = Decimal(0)
    detectable: bool = True
    matched: bool = False
    alert_days: list[dt.date] = field(default_factory=list)


def _day(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("started_at").dt.convert_time_zone("UTC").dt.date()


def _resample(rng: np.random.Generator, rows: pl.DataFrame, n: int, tag: str) -> pl.DataFrame:
    if n <= 0 or rows.is_empty():
        return rows.clear()
    idx = rng.integers(0, rows.height, n)
    picked = rows[idx.tolist()]
    return picked.with_columns(
        (pl.col("request_id") + f"-{tag}-" + pl.int_range(pl.len()).cast(pl.String)).alias(
            "request_id"
        )
    )


@dataclass(frozen=True)
class LateEvent:
    """A gateway-day whose tail (`share` of the day) arrives `delay` days late."""

    gateway: str
    day: dt.date
    kind: str  # missing | partial
    share: float
    delay: int

    def absent(self, day: pl.Expr) -> pl.Expr:
        """Rows not yet delivered while the event is in flight."""
        cutoff = dt.datetime.combine(self.day, dt.time(0), dt.UTC) + dt.timedelta(
            hours=24 * (1 - self.share)
        )
        return (
            (pl.col("gateway") == self.gateway)
            & (day == self.day)
            & (pl.col("started_at") >= cutoff)
        )

    def in_flight(self, run_day: dt.date) -> bool:
        """The data is still missing when the run of `run_day` reads the lake."""
        return self.day <= run_day < self.day + dt.timedelta(days=self.delay)


def inject(
    priced: pl.DataFrame, seed: int, days: int, eval_start: int, max_arrival_days: int = 3
) -> tuple[pl.DataFrame, pl.DataFrame, list[Injection], list[LateEvent]]:
    """(frame with late data, the same without it, injections, late gateway-days)."""
    rng = np.random.default_rng(seed + 1000)
    priced = priced.with_columns(_day(priced).alias("_d"))
    teams = {f.name: f.team for f in FEATURES}
    names = [f.name for f in FEATURES]
    used: set[tuple[str, dt.date]] = set()
    injections: list[Injection] = []
    extra: list[pl.DataFrame] = []

    def free(feature: str, span: list[dt.date]) -> bool:
        around = {d + dt.timedelta(days=k) for d in span for k in range(-2, 3)}
        return not any((feature, d) in used for d in around)

    def pick(span_len: int = 1, tail: bool = False) -> tuple[str, list[dt.date]]:
        for _ in range(500):
            feature = names[int(rng.integers(0, len(names)))]
            first = eval_start + int(rng.integers(0, days - eval_start - (20 if tail else 1)))
            span = [START + dt.timedelta(days=first + k) for k in range(span_len)]
            if free(feature, span):
                used.update((feature, d) for d in span)
                return feature, span
        raise RuntimeError("no free slot")

    def feature_day(feature: str, d: dt.date) -> pl.DataFrame:
        return priced.filter((pl.col("feature") == feature) & (pl.col("_d") == d))

    def usual(feature: str, d: dt.date) -> Decimal:
        vals = []
        for k in range(1, 5):
            rows = feature_day(feature, d - dt.timedelta(days=7 * k))
            vals.append(rows["cost_usd"].sum() or Decimal(0))
        vals.sort()
        return (vals[1] + vals[2]) / 2

    # Spikes of several sizes.
    for m in [1.3, 1.5, 1.6, 2.0, 2.0, 2.5, 3.0, 3.0, 4.0, 5.0] * 2:
        feature, span = pick()
        rows = feature_day(feature, span[0])
        add = _resample(rng, rows, round((m - 1) * rows.height), f"spike{len(injections)}")
        extra.append(add)
        injections.append(
            Injection(
                "spike",
                feature,
                teams[feature],
                span,
                (SPEND,),
                m,
                add["cost_usd"].sum() or Decimal(0),
                usual(feature, span[0]),
            )
        )
    # Level shifts from a day to the end.
    for m in (1.5, 2.0, 3.0):
        feature, span = pick(days - eval_start, tail=False)
        start_day = START + dt.timedelta(days=eval_start + int(rng.integers(0, 20)))
        span = [d for d in span if d >= start_day]
        added = Decimal(0)
        for d in span:
            rows = feature_day(feature, d)
            add = _resample(rng, rows, round((m - 1) * rows.height), f"shift{len(injections)}{d}")
            extra.append(add)
            if d == span[0]:
                added = add["cost_usd"].sum() or Decimal(0)
        injections.append(
            Injection(
                "level_shift",
                feature,
                teams[feature],
                span[:3],
                (SPEND,),
                m,
                added,
                usual(feature, span[0]),
            )
        )
    replaced: dict[tuple[str, dt.date], pl.DataFrame] = {}
    # Token bloat: prompts k x longer.
    for k in (3, 4, 6):
        feature, span = pick()
        rows = feature_day(feature, span[0])
        extra_cost = sum(
            (pl.col(c).fill_null(Decimal(0)) for c in COST_PARTS[1:]),
            pl.col(COST_PARTS[0]).fill_null(Decimal(0)),
        ) * (k - 1)
        bloated = rows.with_columns(
            *[
                (pl.col(c) * k)
                for c in (
                    "input_tokens",
                    "cache_read_tokens",
                    "cache_write_tokens",
                    "cache_write_1h_tokens",
                )
            ],
            (pl.col("cost_usd") + extra_cost.cast(MONEY)).cast(MONEY).alias("cost_usd"),
        )
        added = (bloated["cost_usd"].sum() or Decimal(0)) - (rows["cost_usd"].sum() or Decimal(0))
        replaced[(feature, span[0])] = bloated
        injections.append(
            Injection(
                "token_bloat",
                feature,
                teams[feature],
                span,
                (SPEND, "tokens_per_request"),
                k,
                added,
                usual(feature, span[0]),
            )
        )
    # Error surges, latency, unpriced.
    for share in (0.15, 0.25, 0.4):
        feature, span = pick()
        rows = feature_day(feature, span[0])
        hit = pl.Series(rng.random(rows.height) < share)
        failed = rows.with_columns(
            pl.when(hit).then(pl.lit("error")).otherwise(pl.col("status")).alias("status"),
            *[
                pl.when(hit).then(None).otherwise(pl.col(c)).alias(c)
                for c in ("input_tokens", "output_tokens", "cost_usd")
            ],
            pl.when(hit)
            .then(pl.lit("usage_missing"))
            .otherwise(pl.col("unpriced_reason"))
            .alias("unpriced_reason"),
        )
        replaced[(feature, span[0])] = failed
        injections.append(
            Injection("error_surge", feature, teams[feature], span, ("error_rate",), share)
        )
    for factor in (1.5, 2.0, 3.0):
        feature, span = pick()
        rows = feature_day(feature, span[0])
        replaced[(feature, span[0])] = rows.with_columns(
            (pl.col("started_at") + (pl.col("ended_at") - pl.col("started_at")) * factor).alias(
                "ended_at"
            )
        )
        injections.append(
            Injection("latency", feature, teams[feature], span, ("latency_p95_ms",), factor)
        )
    for share in (0.1, 0.2, 0.3):
        feature, span = pick()
        rows = feature_day(feature, span[0])
        hit = pl.Series(rng.random(rows.height) < share) & (rows["status"] == "success")
        replaced[(feature, span[0])] = rows.with_columns(
            pl.when(hit).then(None).otherwise(pl.col("model_key")).alias("model_key"),
            pl.when(hit).then(None).otherwise(pl.col("cost_usd")).alias("cost_usd"),
            pl.when(hit)
            .then(pl.lit("unknown_model"))
            .otherwise(pl.col("unpriced_reason"))
            .alias("unpriced_reason"),
        )
        injections.append(
            Injection("unpriced", feature, teams[feature], span, ("unpriced_share",), share)
        )
    # Retry storms: a share of one feature-day's logical requests first fail (HTTP 429, no
    # usage, no cost) and succeed on attempt 2, as LiteLLM and OTel log them.
    for share in (0.1, 0.2, 0.3):
        feature, span = pick()
        rows = feature_day(feature, span[0])
        hit = pl.lit(pl.Series(rng.random(rows.height) < share)) & (
            pl.col("attempt").fill_null(1) == 1
        )
        hit_rows = rows.filter(hit)
        failed_first = hit_rows.with_columns(
            pl.lit(1, pl.Int32).alias("attempt"),
            pl.lit("error").alias("status"),
            pl.col("started_at").alias("ended_at"),
            *[
                pl.lit(None).cast(rows.schema[c]).alias(c)
                for c in RETRY_NULLED
                if c in rows.columns
            ],
            pl.lit("usage_missing").alias("unpriced_reason"),
        )
        retried = rows.with_columns(
            pl.when(hit).then(pl.lit(2, pl.Int32)).otherwise(pl.col("attempt")).alias("attempt")
        )
        replaced[(feature, span[0])] = pl.concat([retried, failed_first], how="vertical")
        injections.append(
            Injection(
                "retry_storm", feature, teams[feature], span, ("retry_rate", "error_rate"), share
            )
        )
    # New features: a copy of half of an existing feature's traffic from a day on.
    for i, source in enumerate(("code-review", "chat-assistant")):
        first = eval_start + 10 + 15 * i
        span = [START + dt.timedelta(days=d) for d in range(first, days)]
        rows = priced.filter((pl.col("feature") == source) & pl.col("_d").is_in(span))
        add = _resample(rng, rows, rows.height // 2, f"new{i}").with_columns(
            pl.lit(f"new-{source}").alias("feature"), pl.lit(f"team-new{i}").alias("team")
        )
        extra.append(add)
        daily_cost = add.filter(pl.col("_d") == span[0])["cost_usd"].sum() or Decimal(0)
        injections.append(
            Injection(
                "new_feature",
                f"new-{source}",
                f"team-new{i}",
                span[:14],
                (SPEND,),
                0.5,
                daily_cost,
                Decimal(0),
            )
        )
    # Late and partial gateway data: each event's data arrives `delay` days later.
    late: list[LateEvent] = []
    gateways = ["litellm", "helicone", "openrouter", "cloudflare", "otel"]
    drop = pl.lit(False)
    for kind, share in (
        ("missing", 1.0),
        ("missing", 1.0),
        ("partial", 0.7),
        ("partial", 0.7),
        ("partial", 0.7),
    ):
        # Late days avoid injected days: an injection on an unscored day cannot be found
        # that day by design (it is, once the data is complete and the day re-run).
        injected_days = {d for _, d in used}
        while True:
            d = START + dt.timedelta(days=eval_start + int(rng.integers(0, days - eval_start)))
            if d not in injected_days:
                break
        gw = gateways[int(rng.integers(0, len(gateways)))]
        delay = int(rng.integers(1, max_arrival_days + 1))
        late.append(LateEvent(gw, d, kind, share, delay))
        drop = drop | late[-1].absent(pl.col("_d"))

    keep = priced
    if replaced:
        key_expr = pl.struct("feature", "_d")
        replaced_keys = pl.DataFrame(
            {"feature": [f for f, _ in replaced], "_d": [d for _, d in replaced]}
        )
        keep = keep.join(replaced_keys, on=["feature", "_d"], how="anti")
        del key_expr
    full = pl.concat([keep, *replaced.values(), *[e for e in extra if e.height]], how="vertical")
    return full.filter(~drop).drop("_d"), full.drop("_d"), injections, late


def completeness(frame: pl.DataFrame, days: list[dt.date]) -> pl.LazyFrame:
    counts = (
        frame.group_by(pl.col("gateway").alias("source"), _day(frame).alias("day"))
        .agg(pl.len().cast(pl.Int64).alias("rows_read"))
        .with_columns(
            pl.col("rows_read").alias("normalized"),
            pl.lit(0).alias("duplicates"),
            pl.lit(0).alias("quarantined"),
        )
    )
    return an.source_completeness(counts.lazy(), days, sorted(counts["source"].unique().to_list()))


def evaluate(
    injections: list[Injection],
    late: list[tuple[str, dt.date, str]],
    alerts: pl.DataFrame,
    settings: an.DetectionSettings,
) -> dict[str, Any]:
    metrics = list(an.DEFAULT_METRICS)
    per_metric: dict[str, dict[str, int]] = {m: defaultdict(int) for m in metrics}  # type: ignore[misc]
    for inj in injections:
        if SPEND in inj.metrics:
            if inj.kind == "new_feature":
                inj.detectable = (
                    inj.added_usd >= settings.new_spend_daily_usd
                    or inj.added_usd * 14 >= settings.new_spend_total_usd
                )
            else:
                pct = float(inj.added_usd / inj.usual_usd) if inj.usual_usd else 0.0
                inj.detectable = (
                    inj.added_usd >= settings.min_impact_usd and pct >= settings.min_pct_impact
                )
    for a in alerts.iter_rows(named=True):
        metric = a["metric"]
        hits = [
            inj
            for inj in injections
            if metric in inj.metrics
            and a["day"] in inj.days
            and (a["feature"] == inj.feature or (a["scope"] == "team" and a["team"] == inj.team))
        ]
        stats = per_metric[metric]
        stats["alerts"] += 1
        if hits:
            stats["true_alerts"] += 1
            for inj in hits:
                inj.matched = True
                inj.alert_days.append(a["day"])
    for inj in injections:
        for metric in inj.metrics:
            stats = per_metric[metric]
            stats["injected"] += 1
            if inj.detectable:
                stats["detectable"] += 1
                stats["detected"] += int(inj.matched)
            else:
                stats["below_threshold_detected"] += int(inj.matched)
    table = {}
    for metric, s in per_metric.items():
        table[metric] = {
            "alerts": s["alerts"],
            "true_alerts": s["true_alerts"],
            "precision": round(s["true_alerts"] / s["alerts"], 3) if s["alerts"] else None,
            "injected": s["injected"],
            "above_threshold": s["detectable"],
            "detected": s["detected"],
            "recall": round(s["detected"] / s["detectable"], 3) if s["detectable"] else None,
            "below_threshold_detected": s["below_threshold_detected"],
        }
    return {"per_metric": table}


def run_seed(
    seed: int,
    days: int,
    rpd: int,
    settings: an.DetectionSettings,
    catalog: Catalog,
    max_arrival_days: int = 3,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    attempts, _ = build_attempts(seed, START, days, rpd)
    priced = reprice(attempts.lazy(), catalog).collect()
    eval_start = 56
    frame, clean, injections, late = inject(priced, seed, days, eval_start, max_arrival_days)
    t_gen = time.perf_counter() - t0
    all_days = [START + dt.timedelta(days=i) for i in range(days)]
    first, last = all_days[eval_start], all_days[-1]

    def detect(
        data: pl.DataFrame, until: dt.date = last
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, float]:
        ud = usage_daily(data.lazy()).collect()
        lat = latency_by_feature(data.lazy()).collect()
        comp = completeness(data, all_days).collect()
        t1 = time.perf_counter()
        scores = an.score_series(
            ud.lazy(),
            first,
            until,
            settings,
            latency_by_feature=lat.lazy(),
            completeness=comp.lazy(),
        ).collect()
        alerts = an.alerts(scores.lazy(), first, until, settings).collect()
        return scores, alerts, comp, time.perf_counter() - t1

    clean_scores, clean_alerts, _, t_score = detect(clean)
    # The production timeline: the run of day t reads the lake as it is that day, so a late
    # event is missing from every run while it is in flight, then arrives, and its day is
    # re-run (scores and alerts for that day, from the data as it is on arrival). Runs with
    # nothing in flight are the clean run. One scoring pass per distinct in-flight set.
    requests: dict[frozenset[LateEvent], set[dt.date]] = defaultdict(set)
    for t in all_days[eval_start:]:
        requests[frozenset(e for e in late if e.in_flight(t))].add(t)
    for e in late:
        arrival = e.day + dt.timedelta(days=e.delay)
        if arrival <= last:
            state = frozenset(x for x in late if x.in_flight(arrival) and x.day <= e.day)
            requests[state].add(e.day)
    timeline_parts = [clean_alerts.filter(pl.col("day").is_in(sorted(requests.pop(frozenset()))))]
    alerts_on_incomplete = 0
    for state, run_days in sorted(requests.items(), key=lambda kv: min(kv[1])):
        mask = pl.lit(False)
        for e in state:
            mask = mask | e.absent(_day(clean))
        _, state_alerts, state_comp, _ = detect(clean.filter(~mask), max(run_days))
        state_alerts = state_alerts.filter(pl.col("day").is_in(sorted(run_days)))
        incomplete = state_comp.filter(pl.col("status") != "complete")["day"].unique()
        alerts_on_incomplete += state_alerts.filter(
            pl.col("day").is_in(incomplete.to_list())
        ).height
        timeline_parts.append(state_alerts)
    alerts = (
        pl.concat(timeline_parts, how="vertical")
        .sort("day", "alert_key")
        .unique("alert_key", keep="first", maintain_order=True)
    )
    # Alerts that exist only because some data was late or partial (same traffic otherwise).
    caused_by_late = sorted(set(alerts["alert_key"]) - set(clean_alerts["alert_key"]))
    # Stress case: the late data never arrives (every late day stays incomplete forever).
    _, never_alerts, comp, _ = detect(frame)
    if os.environ.get("AISPEND_BENCH_DUMP"):
        dump = Path(os.environ["AISPEND_BENCH_DUMP"])
        clean_scores.write_parquet(dump / f"scores-{seed}.parquet")
        comp.write_parquet(dump / f"completeness-{seed}.parquet")
    never_caused = sorted(set(never_alerts["alert_key"]) - set(clean_alerts["alert_key"]))
    scores = clean_scores
    result = evaluate(injections, late, alerts, settings)
    result["late_data_alerts"] = len(caused_by_late)
    result["late_data_alerts_per_metric"] = _per_metric_keys(caused_by_late)
    result["late_data_alert_keys"] = caused_by_late
    result["alerts_lost_to_late_data"] = sorted(
        set(clean_alerts["alert_key"]) - set(alerts["alert_key"])
    )
    result["never_arriving_late_data_alerts"] = len(never_caused)
    result["never_arriving_late_data_alerts_per_metric"] = _per_metric_keys(never_caused)
    result["never_arriving_late_data_alert_keys"] = never_caused
    result["never_arriving_alerts_lost"] = sorted(
        set(clean_alerts["alert_key"]) - set(never_alerts["alert_key"])
    )
    score_index = {
        (r["day"], r["metric"], r["scope"], r["series"]): r
        for r in scores.filter(pl.col("is_anomaly")).iter_rows(named=True)
    }
    incomplete_days = sorted(
        {d for d in comp.filter(pl.col("status") != "complete")["day"].to_list()}
    )
    alerts_on_incomplete += never_alerts.filter(pl.col("day").is_in(incomplete_days)).height
    result.update(
        seed=seed,
        rows=frame.height,
        generate_seconds=round(t_gen, 1),
        score_seconds=round(t_score, 2),
        series_days_scored=scores.height,
        late=[
            {"gateway": e.gateway, "day": e.day.isoformat(), "kind": e.kind, "delay_days": e.delay}
            for e in late
        ],
        incomplete_days=[d.isoformat() for d in incomplete_days],
        alerts_on_incomplete_days=alerts_on_incomplete,
        injections=[
            {
                "kind": i.kind,
                "feature": i.feature,
                "day": i.days[0].isoformat(),
                "size": i.size,
                "added_usd": f"{i.added_usd:.2f}",
                "usual_usd": f"{i.usual_usd:.2f}",
                "detectable": i.detectable,
                "alert_days": sorted({d.isoformat() for d in i.alert_days}),
            }
            for i in injections
        ],
        missed=[
            {
                "kind": i.kind,
                "feature": i.feature,
                "day": i.days[0].isoformat(),
                "size": i.size,
                "added_usd": f"{i.added_usd:.2f}",
                "usual_usd": f"{i.usual_usd:.2f}",
            }
            for i in injections
            if i.detectable and not i.matched
        ],
        false_alerts=[
            {
                "metric": a["metric"],
                "scope": a["scope"],
                "series": a["series"],
                "day": a["day"].isoformat(),
                **{
                    k: v
                    for k, v in score_index.get(
                        (a["day"], a["metric"], a["scope"], a["series"]), {}
                    ).items()
                    if k in ("actual", "expected", "impact_pct", "score", "requests", "method")
                },
            }
            for a in alerts.iter_rows(named=True)
            if not any(
                a["metric"] in i.metrics
                and a["day"] in i.days
                and (a["feature"] == i.feature or (a["scope"] == "team" and a["team"] == i.team))
                for i in injections
            )
        ],
    )
    return result


def _per_metric_keys(keys: list[str]) -> dict[str, int]:
    counts = {m: 0 for m in an.DEFAULT_METRICS}
    for key in keys:
        metric = key.split("|", 1)[0]
        counts["cost_usd" if metric == "new_spend" else metric] += 1
    return counts


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # type: ignore[arg-type]
    for r in results:
        for metric, s in r["per_metric"].items():
            for k in (
                "alerts",
                "true_alerts",
                "injected",
                "above_threshold",
                "detected",
                "below_threshold_detected",
            ):
                total[metric][k] += s[k]
        for k in ("late_data_alerts", "never_arriving_late_data_alerts"):
            for metric, n in r[f"{k}_per_metric"].items():
                total[metric][k] += n
    out = {}
    for metric, s in total.items():
        out[metric] = {
            **s,
            "precision": round(s["true_alerts"] / s["alerts"], 3) if s["alerts"] else None,
            "recall": round(s["detected"] / s["above_threshold"], 3)
            if s["above_threshold"]
            else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--days", type=int, default=112)
    parser.add_argument("--rpd", type=int, default=5000, help="requests per day")
    parser.add_argument("--z", type=float, default=None, help="override z_threshold (spend)")
    parser.add_argument("--tail", type=float, default=None, help="override tail_quantile")
    parser.add_argument(
        "--max-arrival-days",
        type=int,
        default=3,
        help="late data arrives 1..N days after its day (drawn per event)",
    )
    parser.add_argument("--out", default="anomalies_latest.json", help="file in bench/results")
    args = parser.parse_args()
    settings = an.DetectionSettings()
    if args.z is not None:
        settings = replace(settings, z_threshold=args.z)
    if args.tail is not None:
        settings = replace(settings, tail_quantile=args.tail)
    catalog = Catalog.load([])
    results = [
        run_seed(100 + s, args.days, args.rpd, settings, catalog, args.max_arrival_days)
        for s in range(args.seeds)
    ]
    summary = {
        "settings": {
            "z_threshold": settings.z_threshold,
            "min_impact_usd": str(settings.min_impact_usd),
            "min_pct_impact": settings.min_pct_impact,
            "tail_quantile": settings.tail_quantile,
        },
        "days": args.days,
        "requests_per_day": args.rpd,
        "machine": platform.platform(),
        "per_metric": combine(results),
        "max_arrival_days": args.max_arrival_days,
        "late_data_alerts": sum(r["late_data_alerts"] for r in results),
        "never_arriving_late_data_alerts": sum(
            r["never_arriving_late_data_alerts"] for r in results
        ),
        "alerts_on_incomplete_days": sum(r["alerts_on_incomplete_days"] for r in results),
        "seeds": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(summary, indent=2, default=str))
    header = (
        "metric",
        "alerts",
        "true",
        "precision",
        "above thr",
        "found",
        "recall",
        "late",
        "never arr",
    )
    print(f"{header[0]:<20}" + "".join(f"{h:>10}" for h in header[1:]))
    for metric, s in summary["per_metric"].items():
        print(
            f"{metric:<20}{s['alerts']:>10}{s['true_alerts']:>10}{s['precision']!s:>10}"
            f"{s['above_threshold']:>10}{s['detected']:>10}{s['recall']!s:>10}"
            f"{s['late_data_alerts']:>10}{s['never_arriving_late_data_alerts']:>10}"
        )
    print(
        f"alerts caused by late/partial data arriving within {args.max_arrival_days} days: "
        f"{summary['late_data_alerts']} (on incomplete days: "
        f"{summary['alerts_on_incomplete_days']}); if it never arrived: "
        f"{summary['never_arriving_late_data_alerts']}"
    )
    for r in results:
        print(
            f"seed {r['seed']}: {r['rows']:,} rows, generate {r['generate_seconds']} s, "
            f"score {r['score_seconds']} s; missed {len(r['missed'])}, "
            f"false {len(r['false_alerts'])}"
        )


if __name__ == "__main__":
    main()
