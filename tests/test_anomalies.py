"""Anomaly detection on hand-built daily roll-ups: baseline, score, gates, completeness,
episodes, re-alerts, feedback, new-spend rule, scope collapsing and rerun stability."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from transforms import anomalies as an
from transforms.schema import MONEY

START = dt.date(2025, 6, 2)  # a Monday
WEEKDAY = [1.1, 1.15, 1.1, 1.05, 1.0, 0.8, 0.75]


def usage(
    series: dict[tuple[str | None, str | None, str | None], list[Decimal]],
    start: dt.date = START,
    requests_per_usd: int = 20,
) -> pl.LazyFrame:
    """usage_daily rows: one per (day, feature, team, model_key) with the given daily spend."""
    rows = []
    for (feature, team, model), costs in series.items():
        for i, cost in enumerate(costs):
            if cost is None:
                continue
            requests = max(int(cost * requests_per_usd), 1)
            rows.append(
                {
                    "day": start + dt.timedelta(days=i),
                    "provider": (model or "x/y").split("/")[0],
                    "model_key": model,
                    "model": model,
                    "feature": feature,
                    "team": team,
                    "requests": requests,
                    "logical_requests": requests,
                    "retries": 0,
                    "success": requests,
                    "errors": 0,
                    "timeouts": 0,
                    "unpriced_requests": 0,
                    "input_tokens": requests * 1000,
                    "output_tokens": requests * 200,
                    "cost_usd": cost,
                }
            )
    schema = {
        "day": pl.Date,
        "provider": pl.String,
        "model_key": pl.String,
        "model": pl.String,
        "feature": pl.String,
        "team": pl.String,
        **{
            c: pl.Int64
            for c in (
                "requests",
                "logical_requests",
                "retries",
                "success",
                "errors",
                "timeouts",
                "unpriced_requests",
                "input_tokens",
                "output_tokens",
            )
        },
        "cost_usd": MONEY,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").lazy()


def seasonal_costs(days: int, level: float, seed: int, noise: float = 0.04) -> list[Decimal]:
    rng = np.random.default_rng(seed)
    return [
        Decimal(
            str(
                round(
                    level
                    * WEEKDAY[(START + dt.timedelta(days=i)).weekday()]
                    * math.exp(noise * rng.standard_normal()),
                    2,
                )
            )
        )
        for i in range(days)
    ]


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def cost_rows(scores: pl.DataFrame, scope: str = "feature") -> pl.DataFrame:
    return scores.filter((pl.col("metric") == "cost_usd") & (pl.col("scope") == scope))


KEY = ("chat", "web", "openai/gpt-4o")


def test_spike_is_scored_against_the_same_weekday_median_exactly() -> None:
    costs = seasonal_costs(70, 100.0, seed=1)
    spike_day = 63
    costs[spike_day] = costs[spike_day] * 3
    scores = an.score_series(usage({KEY: costs}), day(56), day(69)).collect()
    row = cost_rows(scores).filter(pl.col("day") == day(spike_day)).row(0, named=True)
    same_weekday = sorted(costs[spike_day - 7 * k] for k in range(1, 5))
    expected = (same_weekday[1] + same_weekday[2]) / 2
    assert row["status"] == "anomaly"
    assert row["expected_usd"] == expected
    assert row["impact_usd"] == costs[spike_day] - expected
    assert row["score"] > 10
    # Every other day of this calm series is normal: weekly seasonality is not an anomaly.
    others = cost_rows(scores).filter(pl.col("day") != day(spike_day))
    assert set(others["status"]) == {"normal"}


def test_weekly_pattern_without_seasonal_baseline_would_flag_weekends() -> None:
    """The same-weekday baseline is what keeps a weekday/weekend pattern quiet: a Monday
    compared with the last Mondays is normal even though it is 47% above a Sunday."""
    costs = seasonal_costs(70, 100.0, seed=2)
    scores = an.score_series(usage({KEY: costs}), day(28), day(69)).collect()
    rows = cost_rows(scores)
    assert rows.filter(pl.col("status") == "anomaly").is_empty()
    assert set(rows["method"]) == {"seasonal"}
    mondays = rows.filter(pl.col("day").dt.weekday() == 1)
    sundays = rows.filter(pl.col("day").dt.weekday() == 7)
    assert mondays["expected"].mean() > 1.3 * sundays["expected"].mean()


def test_dollar_and_percent_gates() -> None:
    small = seasonal_costs(70, 2.0, seed=3, noise=0.01)  # a $2/day feature tripling: +$4
    small[63] = small[63] * 3
    flat = [Decimal("1000.00")] * 70  # a $1000/day feature +2%: +$20 but tiny in percent
    flat[63] = Decimal("1020.00")
    frame = usage({("small", "t", "m/a"): small, ("big", "t2", "m/b"): flat})
    scores = cost_rows(an.score_series(frame, day(63), day(63)).collect())
    by_feature = {r["feature"]: r for r in scores.iter_rows(named=True)}
    assert by_feature["small"]["status"] == "below_threshold"
    assert by_feature["small"]["score"] > 3.5
    assert by_feature["big"]["status"] in ("normal", "below_threshold")
    # Lower the dollar floor and the small one alerts.
    settings = an.DetectionSettings(min_impact_usd=Decimal("1"))
    scores = cost_rows(an.score_series(frame, day(63), day(63), settings).collect())
    assert scores.filter(pl.col("feature") == "small")["status"].item() == "anomaly"


def test_incomplete_day_is_not_scored_and_does_not_poison_the_baseline() -> None:
    costs = seasonal_costs(70, 100.0, seed=4)
    costs[56] = costs[56] * Decimal("0.3")  # a gateway's file missing: a fake dip
    costs[63] = costs[63] * Decimal("1.02")
    counts = pl.DataFrame(
        {
            "source": ["litellm"] * 70 + ["helicone"] * 69,
            "day": [day(i) for i in range(70)] + [day(i) for i in range(70) if i != 56],
            "rows_read": [1000] * 70 + [500] * 69,
        }
    ).with_columns(normalized=pl.col("rows_read"), duplicates=pl.lit(0), quarantined=pl.lit(0))
    completeness = an.source_completeness(counts.lazy(), [day(i) for i in range(50, 70)])
    status = completeness.collect()
    assert (
        status.filter(pl.col("day") == day(56), pl.col("source") == "helicone")["status"].item()
        == "missing"
    )
    assert set(status.filter(pl.col("day") != day(56))["status"]) == {"complete"}
    settings = an.DetectionSettings(direction="both")
    scores = an.score_series(
        usage({KEY: costs}), day(50), day(69), settings, completeness=completeness
    ).collect()
    on_day = scores.filter(pl.col("day") == day(56))
    assert set(on_day["status"]) == {"incomplete"}
    assert not on_day["is_anomaly"].any()
    # Seven days later the same weekday's baseline ignores the partial day.
    later = cost_rows(scores).filter(pl.col("day") == day(63)).row(0, named=True)
    assert later["status"] == "normal"
    # The skipped week is replaced by the next older same weekday: still a median of 4.
    same_weekday = sorted(costs[63 - 7 * k] for k in (2, 3, 4, 5))
    assert later["expected_usd"] == (same_weekday[1] + same_weekday[2]) / 2
    notices = an.data_missing_notices(completeness, day(50), day(69)).collect()
    assert notices["day"].to_list() == [day(56)]
    assert "helicone" in notices["sources"].item()
    assert an.alerts(scores.lazy(), day(50), day(69), settings).collect().is_empty()


def test_partial_and_late_sources() -> None:
    days = [day(i) for i in range(35)]
    counts = pl.DataFrame(
        {"source": ["gw"] * 35, "day": days, "rows_read": [1000] * 34 + [300]}
    ).with_columns(normalized=pl.col("rows_read"), duplicates=pl.lit(0), quarantined=pl.lit(0))
    freshness = pl.DataFrame(
        {
            "source": ["gw", "gw"],
            "day": [day(33), day(32)],
            "last_event_at": [
                dt.datetime.combine(day(33), dt.time(14, 5), dt.UTC),
                dt.datetime.combine(day(32), dt.time(23, 59), dt.UTC),
            ],
        }
    )
    status = an.source_completeness(counts.lazy(), days[30:], freshness=freshness.lazy()).collect()
    by_day = dict(zip(status["day"], status["status"], strict=True))
    assert by_day[day(34)] == "partial"
    assert by_day[day(33)] == "late"
    assert by_day[day(32)] == "complete"


def test_consecutive_days_form_one_episode_and_realert_only_when_impact_doubles() -> None:
    costs = seasonal_costs(80, 100.0, seed=5)
    # A runaway (Fri..Mon): +60% for two days, +200% on Sunday, +60%, then normal.
    for i, factor in ((60, "1.6"), (61, "1.6"), (62, "3.0"), (63, "1.6")):
        costs[i] = costs[i] * Decimal(factor)
    frame = usage({KEY: costs})
    scores = an.score_series(frame, day(56), day(79)).collect()
    episodes = (
        an.episodes(scores.lazy())
        .collect()
        .filter((pl.col("metric") == "cost_usd") & (pl.col("scope") == "feature"))
    )
    assert episodes.height == 1
    e = episodes.row(0, named=True)
    assert (e["start_day"], e["end_day"], e["days"]) == (day(60), day(63), 4)
    assert e["peak_day"] == day(62)
    flagged = cost_rows(scores).filter(pl.col("is_anomaly"))
    assert e["total_impact_usd"] == sum(flagged["impact_usd"], Decimal(0))
    assert not e["open"]
    alerts = an.alerts(scores.lazy(), day(56), day(79)).collect()
    alerts = alerts.filter(pl.col("metric") == "cost_usd")
    # Opened on day 60 (level 0); day 62's impact is >2x day 60's: level 1, once.
    assert alerts.select("day", "level").rows() == [(day(60), 0), (day(62), 1)]
    assert alerts["episode_key"].n_unique() == 1
    assert set(alerts["scope"]) == {"feature"}  # no duplicate team / model emails


def test_level_shift_alerts_once() -> None:
    costs = seasonal_costs(90, 100.0, seed=6)
    for i in range(60, 90):
        costs[i] = costs[i] * Decimal("1.8")
    scores = an.score_series(usage({KEY: costs}), day(56), day(89)).collect()
    alerts = an.alerts(scores.lazy(), day(56), day(89)).collect()
    assert alerts.filter(pl.col("metric") == "cost_usd")["day"].to_list() == [day(60)]
    # The median baseline absorbs the new level within a few weeks: the episode closes.
    last_week = cost_rows(scores).filter(pl.col("day") >= day(83))
    assert not last_week["is_anomaly"].any()


def test_total_basis_realerts_as_the_episode_accumulates() -> None:
    costs = seasonal_costs(80, 100.0, seed=6)
    for i in range(60, 66):
        costs[i] = costs[i] * Decimal("1.8")
    scores = an.score_series(usage({KEY: costs}), day(56), day(79)).collect()
    settings = an.DetectionSettings(realert_basis="total")
    alerts = an.alerts(scores.lazy(), day(56), day(79), settings).collect()
    levels = alerts.filter(pl.col("metric") == "cost_usd")["level"].to_list()
    assert levels[0] == 0 and len(levels) >= 3 and levels == sorted(levels)


def test_feedback_silences_and_leaves_days_out_of_baselines() -> None:
    costs = seasonal_costs(80, 100.0, seed=7)
    for i in (56, 57):
        costs[i] = costs[i] * 3  # a planned launch
    costs[63] = costs[63] * 3  # a week later, an unplanned repeat on the same weekday
    frame = usage({KEY: costs})
    feedback = an.feedback_frame(
        [{"feature": "chat", "day_from": day(56), "day_to": day(57), "kind": "planned"}]
    )
    scores = an.score_series(frame, day(50), day(70), feedback=feedback).collect()
    rows = cost_rows(scores)
    planned = rows.filter(pl.col("day").is_in([day(56), day(57)]))
    assert set(planned["status"]) == {"expected"} and not planned["is_anomaly"].any()
    assert set(planned["feedback"]) == {"planned"}
    repeat = rows.filter(pl.col("day") == day(63)).row(0, named=True)
    assert repeat["status"] == "anomaly"
    same_weekday = sorted(costs[63 - 7 * k] for k in (2, 3, 4, 5))
    assert repeat["expected_usd"] == (same_weekday[1] + same_weekday[2]) / 2
    alerts = an.alerts(scores.lazy(), day(50), day(70)).collect()
    assert alerts.filter(pl.col("metric") == "cost_usd")["day"].to_list() == [day(63)]
    # The team series of the planned feature is covered too (same traffic).
    team = cost_rows(scores, "team").filter(pl.col("day") == day(56))
    assert team["status"].item() == "expected"


def test_new_normal_feedback_keeps_days_in_the_baseline() -> None:
    costs = seasonal_costs(80, 100.0, seed=8)
    for i in range(56, 80):
        costs[i] = costs[i] * 2
    frame = usage({KEY: costs})
    feedback = an.feedback_frame(
        [{"feature": "chat", "day_from": day(56), "day_to": day(69), "kind": "new_normal"}]
    )
    scores = an.score_series(frame, day(50), day(79), feedback=feedback).collect()
    alerts = an.alerts(scores.lazy(), day(50), day(79)).collect()
    assert alerts.filter(pl.col("metric") == "cost_usd").is_empty()
    after = cost_rows(scores).filter(pl.col("day") >= day(72))
    assert not after["is_anomaly"].any()


def test_new_feature_goes_through_the_new_spend_rule_once() -> None:
    old = seasonal_costs(70, 100.0, seed=9)
    new: list[Decimal | None] = [None] * 60 + [Decimal("30.00")] * 10
    frame = usage({KEY: old, ("fresh", "lab", "openai/gpt-4o"): new})  # type: ignore[dict-item]
    scores = an.score_series(frame, day(56), day(69)).collect()
    fresh = cost_rows(scores).filter(pl.col("feature") == "fresh")
    assert set(fresh["status"]) <= {"warmup", "new_spend"}
    assert fresh.filter(pl.col("status") == "new_spend")["day"].to_list() == [day(60)]
    alerts = an.alerts(scores.lazy(), day(56), day(69)).collect()
    new_alerts = alerts.filter(pl.col("kind") == "new_spend")
    # One alert for the feature; its team (also new) is collapsed into it.
    assert new_alerts.select("series", "day").rows() == [("fresh", day(60))]
    # Scoring a later window again does not re-fire it.
    later = an.score_series(frame, day(62), day(69)).collect()
    assert (
        an.alerts(later.lazy(), day(62), day(69))
        .collect()
        .filter(pl.col("kind") == "new_spend")
        .is_empty()
    )


def test_feature_model_anomaly_alerts_alone_when_the_feature_total_hides_it() -> None:
    """A model's spend doubling while another model of the feature halves nets to zero at
    feature level (the aggregation-masking complaint): the model series still alerts."""
    a = seasonal_costs(70, 100.0, seed=10, noise=0.02)
    b = seasonal_costs(70, 100.0, seed=11, noise=0.02)
    a[63] = a[63] * 2
    b[63] = b[63] - (a[63] / 2)
    frame = usage({("chat", "web", "openai/gpt-4o"): a, ("chat", "web", "openai/o3"): b})
    scores = an.score_series(frame, day(63), day(63)).collect()
    alerts = an.alerts(scores.lazy(), day(63), day(63)).collect()
    alerts = alerts.filter(pl.col("metric") == "cost_usd")
    assert alerts.select("scope", "model_key").rows() == [("feature_model", "openai/gpt-4o")]


def test_rate_metrics_use_a_binomial_floor() -> None:
    costs = seasonal_costs(70, 100.0, seed=12, noise=0.02)
    frame = usage({KEY: costs}).collect()
    rng = np.random.default_rng(0)
    errors = rng.binomial(frame["requests"].to_numpy(), 0.02)
    errors[63] = int(frame["requests"][63] * 0.15)  # an outage: 15% errors
    frame = frame.with_columns(errors=pl.Series(errors, dtype=pl.Int64))
    frame = frame.with_columns(success=pl.col("requests") - pl.col("errors"))
    scores = an.score_series(frame.lazy(), day(42), day(69)).collect()
    rates = scores.filter((pl.col("metric") == "error_rate") & (pl.col("scope") == "feature"))
    assert rates.filter(pl.col("is_anomaly"))["day"].to_list() == [day(63)]
    # Failed requests are not counted as unpriced: the unpriced share stays quiet.
    unpriced = scores.filter(pl.col("metric") == "unpriced_share")
    assert not unpriced["is_anomaly"].any()


def test_reruns_and_windows_give_the_same_alert_keys() -> None:
    costs = seasonal_costs(80, 100.0, seed=13)
    for i in (64, 65, 66):
        costs[i] = costs[i] * 2
    frame = usage({KEY: costs})
    wide = an.score_series(frame, day(40), day(66)).collect()
    narrow = an.score_series(frame, day(60), day(66)).collect()
    again = an.score_series(frame, day(40), day(66)).collect()
    assert wide.equals(again)
    keys_wide = an.alerts(wide.lazy(), day(66), day(66)).collect()["alert_key"].to_list()
    keys_narrow = an.alerts(narrow.lazy(), day(66), day(66)).collect()["alert_key"].to_list()
    assert keys_wide == keys_narrow
    day_by_day = [
        key
        for d in range(60, 67)
        for key in an.alerts(
            an.score_series(frame, day(d) - dt.timedelta(days=20), day(d)), day(d), day(d)
        )
        .collect()["alert_key"]
        .to_list()
    ]
    assert day_by_day == an.alerts(wide.lazy(), day(60), day(66)).collect()["alert_key"].to_list()


def test_null_feature_is_its_own_series_and_history_setting_matters() -> None:
    costs = seasonal_costs(70, 100.0, seed=14)
    frame = usage({(None, None, "openrouter/x"): costs})
    scores = an.score_series(frame, day(10), day(20)).collect()
    rows = cost_rows(scores)
    assert set(rows["series"]) == {an.NONE_LABEL}
    assert rows.filter(pl.col("day") < day(14))["status"].unique().to_list() == ["warmup"]
    with pytest.raises(ValueError, match="feedback kind"):
        an.feedback_frame([{"feature": "x", "day_from": day(1), "kind": "maybe"}])


def test_late_day_in_flight_changes_no_other_days_score() -> None:
    """While a late day's data is still arriving (up to `scale_skip_days`), it is read by no
    other day's baseline, scale or history: every run scores the other days exactly as the
    on-time data would, so late data can neither cause nor hide an alert; once it arrives,
    the day is an ordinary baseline day again."""
    late = 60
    noisy = seasonal_costs(75, 80.0, seed=21, noise=0.25)
    young = [None] * (late - 12) + seasonal_costs(75 - (late - 12), 40.0, seed=22)
    on_time = {KEY: noisy, ("search", "web", "openai/gpt-4o-mini"): young}
    delayed = {k: list(v) for k, v in on_time.items()}
    for v in delayed.values():
        v[late] = v[late] * Decimal("0.3")  # the gateway's tail has not arrived yet
    sources = ["gw"] * 75
    days = [day(i) for i in range(75)]
    full_counts = [1000] * 75
    partial_counts = [300 if i == late else 1000 for i in range(75)]

    def completeness(rows_read: list[int]) -> pl.LazyFrame:
        counts = pl.DataFrame({"source": sources, "day": days, "rows_read": rows_read})
        return an.source_completeness(counts.lazy(), days[30:])

    def run(series: dict, rows_read: list[int], last: int, s: an.DetectionSettings) -> pl.DataFrame:
        return an.score_series(
            usage(series), day(40), day(last), s, completeness=completeness(rows_read)
        ).collect()

    settings = an.DetectionSettings(direction="both")
    for last in range(late + 1, late + settings.scale_skip_days):
        clean = run(on_time, full_counts, last, settings)
        in_flight = run(delayed, partial_counts, last, settings)
        assert set(in_flight.filter(pl.col("day") == day(late))["status"]) == {"incomplete"}
        others = pl.col("day") != day(late)
        assert in_flight.filter(others).equals(clean.filter(others))
        keys = [
            an.alerts(frame.lazy(), day(late + 1), day(last), settings).collect()["alert_key"]
            for frame in (clean, in_flight)
        ]
        assert keys[0].to_list() == keys[1].to_list()
    # The young series crosses min_history_days during the window: a late day must not
    # delay its first scored day.
    young_rows = cost_rows(clean).filter(pl.col("series") == "search")
    assert young_rows.filter(pl.col("day") == day(late + 2))["status"].item() != "warmup"
    # Without the skipped residuals the scale reads the partial day and the scores move.
    eager = replace(settings, scale_skip_days=0)
    last = late + 3
    moved = run(delayed, partial_counts, last, eager).filter(pl.col("day") > day(late))
    kept = run(on_time, full_counts, last, eager).filter(pl.col("day") > day(late))
    assert not moved.equals(kept)


@settings(max_examples=300, deadline=None)
@given(
    matrix=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=st.one_of(
            st.just(math.nan), st.floats(-1e12, 1e12, allow_nan=False), st.integers(-50, 50)
        ),
    )
)
def test_row_medians_equal_numpy_nanmedian(matrix: np.ndarray) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(matrix, axis=1)
    assert np.array_equal(an._nanmedian_rows(matrix), expected, equal_nan=True)
