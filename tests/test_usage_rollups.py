"""usage_daily, latency_rollup and peaks_by_model on small frames with known answers, plus
property tests against direct sums and a brute-force concurrency count."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricing_catalog.catalog import Catalog
from tests.conftest import canonical_frame
from transforms.reprice import REPRICE_COLUMNS, reprice
from transforms.schema import MONEY
from transforms.usage_rollups import (
    LATENCY_BY_FEATURE_SCHEMA,
    LATENCY_BY_MODEL_SCHEMA,
    PEAKS_SCHEMA,
    USAGE_DAILY_KEYS,
    USAGE_DAILY_SCHEMA,
    latency_by_feature,
    latency_by_model,
    latency_rollup,
    peaks_by_model,
    usage_daily,
)

DAY = dt.date(2025, 10, 15)
NOON = dt.datetime(2025, 10, 15, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return NOON + dt.timedelta(seconds=seconds)


def priced_frame(rows: Iterable[Mapping[str, Any]], **extra: pl.DataType) -> pl.LazyFrame:
    """Repriced requests built by hand: canonical columns as in conftest, reprice columns
    null unless given. A row with `cost_usd` is priced (list cost = cost unless given); a row
    without it gets `unpriced_reason` 'unknown_model'. `extra` adds columns (e.g. savings)."""
    reprice_names = set(REPRICE_COLUMNS) | set(extra)
    canonical_rows, added = [], []
    for row in rows:
        canonical_rows.append({k: v for k, v in row.items() if k not in reprice_names})
        cost = row.get("cost_usd")
        values = {**dict.fromkeys(reprice_names), **{k: row[k] for k in row if k in reprice_names}}
        if cost is not None:
            if values["list_cost_usd"] is None:
                values["list_cost_usd"] = cost
        elif values["unpriced_reason"] is None:
            values["unpriced_reason"] = "unknown_model"
        added.append(values)
    schema = pl.Schema({**REPRICE_COLUMNS, **extra})
    columns = pl.DataFrame(added, schema=schema, orient="row")
    return pl.concat([canonical_frame(canonical_rows), columns], how="horizontal").lazy()


def base(**row: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "gpt-4o",
        "model_key": "openai/gpt-4o",
        "feature": "chat",
        "team": "core",
        "started_at": NOON,
        **row,
    }


def only(frame: pl.DataFrame, **keys: Any) -> dict[str, Any]:
    hit = frame.filter(*[pl.col(k).eq_missing(v) for k, v in keys.items()])
    assert hit.height == 1, (keys, frame)
    return hit.row(0, named=True)


# ----------------------------------------------------------------------------- usage_daily
def test_usage_daily_sums_are_exact_decimals() -> None:
    rows = [base(cost_usd=Decimal("0.1"), output_tokens=10) for _ in range(10)]
    rows.append(base(cost_usd=Decimal("0.000000000000000001"), output_tokens=1))
    out = usage_daily(priced_frame(rows)).collect()
    row = only(out, model_key="openai/gpt-4o")
    assert row["cost_usd"] == Decimal("1.000000000000000001")
    assert row["list_cost_usd"] == Decimal("1.000000000000000001")
    assert row["output_tokens"] == 101
    assert out.schema == USAGE_DAILY_SCHEMA
    assert sum([0.1] * 10) != 1.0  # what a float sum would have given


def test_usage_daily_counts_every_measure() -> None:
    rows = [
        base(cost_usd=Decimal("1"), input_tokens=250_000, output_tokens=5, attempt=1),
        base(cost_usd=Decimal("2"), status="error", attempt=2, batch=True, input_tokens=10),
        base(status="timeout", attempt=3),  # no usage at all
        base(status="rejected", unpriced_reason="usage_missing"),
        base(status="cancelled", cost_usd=Decimal("0"), gateway_cache_hit=True, input_tokens=7),
        base(cost_usd=Decimal("0.5"), row_issues="gateway_cache_hit", output_tokens=1),
        base(
            modality="image",
            image_count=3,
            cost_usd=Decimal("0.3"),
            gateway_cost_usd=Decimal("0.25"),
        ),
        base(modality="image", image_count=2, status="error", cost_usd=Decimal("0.2")),
        base(modality="video", video_seconds=4.5, cost_usd=Decimal("0.45")),
        base(modality="video", video_seconds=1.25, status="error", cost_usd=Decimal("0.1")),
        base(modality="audio", audio_seconds=30.0, cost_usd=Decimal("0.01")),
        base(modality="audio", row_issues="usage_missing", audio_seconds=2.0),
    ]
    out = usage_daily(priced_frame(rows)).collect()
    assert out.height == 1
    r = out.row(0, named=True)
    assert r["requests"] == 12
    assert (r["logical_requests"], r["retries"]) == (10, 2)
    assert (r["success"], r["errors"], r["timeouts"], r["rejected"], r["cancelled"]) == (
        6,
        3,
        1,
        1,
        1,
    )
    # the timeout and the rejected row report nothing; the last audio row is flagged upstream
    assert r["usage_missing"] == 3
    assert r["gateway_cache_hits"] == 2
    assert r["batch_requests"] == 1
    assert r["long_context_requests"] == 1
    assert (r["priced_requests"], r["unpriced_requests"]) == (9, 3)
    assert r["input_tokens"] == 250_017
    assert (r["image_count"], r["usable_images"]) == (5, 3)
    assert (r["video_seconds"], r["usable_video_seconds"]) == (5.75, 4.5)
    assert r["audio_seconds"] == 32.0
    assert r["cost_usd"] == Decimal("4.56")
    assert r["cost_success_usd"] == Decimal("1") + Decimal("0.5") + Decimal("0.3") + Decimal(
        "0.45"
    ) + Decimal("0.01")
    assert r["gateway_cost_usd"] == Decimal("0.25")
    assert r["cache_savings_usd"] is None  # the input has no cache_savings_usd column


def test_usage_daily_unpriced_group_has_null_cost_not_zero() -> None:
    rows = [base(model="mystery", model_key=None, input_tokens=5), base(cost_usd=Decimal("0"))]
    out = usage_daily(priced_frame(rows)).collect()
    unknown = only(out, model="mystery")
    assert unknown["model_key"] is None
    assert unknown["cost_usd"] is None and unknown["list_cost_usd"] is None
    assert unknown["cost_success_usd"] is None
    assert unknown["unpriced_requests"] == 1
    free = only(out, model="gpt-4o")
    assert free["cost_usd"] == Decimal("0")  # priced at $0 stays $0, it is not unknown


def test_usage_daily_sums_cache_savings_when_present() -> None:
    rows = [
        base(cost_usd=Decimal("1"), cache_savings_usd=Decimal("0.123456789012345678")),
        base(cost_usd=Decimal("1"), cache_savings_usd=Decimal("0.000000000000000002")),
        base(feature="search", cost_usd=Decimal("1")),
    ]
    out = usage_daily(priced_frame(rows, cache_savings_usd=MONEY)).collect()
    assert only(out, feature="chat")["cache_savings_usd"] == Decimal("0.123456789012345680")
    assert only(out, feature="search")["cache_savings_usd"] is None


def test_usage_daily_null_keys_and_provider_spellings() -> None:
    rows = [
        base(provider="OpenAI ", cost_usd=Decimal("1")),
        base(provider="openai", cost_usd=Decimal("2")),
        base(provider="bedrock", model_key="aws/nova-pro", cost_usd=Decimal("3")),
        base(feature=None, cost_usd=Decimal("4")),
        base(feature=None, team=None, cost_usd=Decimal("5")),
    ]
    out = usage_daily(priced_frame(rows)).collect()
    assert out.height == 4
    assert only(out, feature="chat", provider="openai")["cost_usd"] == Decimal("3")
    assert only(out, provider="aws")["requests"] == 1
    assert only(out, feature=None, team="core")["cost_usd"] == Decimal("4")
    assert only(out, feature=None, team=None)["cost_usd"] == Decimal("5")
    assert out.select(USAGE_DAILY_KEYS).is_unique().all()


def test_request_crossing_midnight_belongs_to_its_start_day() -> None:
    late = dt.datetime(2025, 10, 15, 23, 59, 30, tzinfo=dt.UTC)
    rows = [
        base(started_at=late, ended_at=late + dt.timedelta(seconds=60), cost_usd=Decimal("1")),
        base(started_at=late + dt.timedelta(minutes=1), cost_usd=Decimal("2")),
    ]
    frame = priced_frame(rows)
    out = usage_daily(frame).collect()
    first = only(out, day=DAY)
    assert first["cost_usd"] == Decimal("1")
    assert (first["latency_ms_sum"], first["latency_count"]) == (60_000.0, 1)
    assert only(out, day=DAY + dt.timedelta(days=1))["cost_usd"] == Decimal("2")
    lat = latency_by_model(frame).collect()
    assert only(lat, day=DAY)["latency_p50_ms"] == 60_000.0
    peaks = peaks_by_model(frame).collect()
    assert only(peaks, day=DAY)["peak_concurrency"] == 1
    assert only(peaks, day=DAY + dt.timedelta(days=1))["peak_concurrency"] is None


# ----------------------------------------------------------------------------- latency
def test_latency_quantiles_interpolate_linearly() -> None:
    rows = [
        base(ended_at=at(ms / 1000), first_token_at=at(ms / 4000)) for ms in (100, 200, 300, 400)
    ]
    rows.append(base(status="error"))  # no timestamps: an attempt without a latency
    rows.append(base(ended_at=at(-1)))  # ends before it starts: clock skew, not measured
    out = latency_by_model(priced_frame(rows)).collect()
    assert out.schema == LATENCY_BY_MODEL_SCHEMA
    r = out.row(0, named=True)
    assert r["attempts"] == 6
    assert r["latency_p50_ms"] == pytest.approx(250.0)
    assert r["latency_p95_ms"] == pytest.approx(385.0)
    assert r["latency_p99_ms"] == pytest.approx(397.0)
    assert r["ttft_p50_ms"] == pytest.approx(62.5)


def test_latency_quantiles_match_numpy_on_random_values() -> None:
    rng = np.random.default_rng(7)
    values = {f: rng.lognormal(6, 1, size=n).round(3) for f, n in (("a", 1), ("b", 2), ("c", 997))}
    rows = [base(feature=f, ended_at=at(float(v) / 1000)) for f, vs in values.items() for v in vs]
    out = latency_by_feature(priced_frame(rows)).collect()
    assert out.schema == LATENCY_BY_FEATURE_SCHEMA
    for feature, vs in values.items():
        r = only(out, feature=feature)
        for p, q in (("p50", 50), ("p95", 95), ("p99", 99)):
            expected = np.percentile(vs, q, method="linear")
            assert r[f"latency_{p}_ms"] == pytest.approx(expected, abs=1e-3)
        assert r["ttft_p50_ms"] is None


def test_latency_rollup_other_keys_and_unknown_key() -> None:
    rows = [base(team="a", ended_at=at(1)), base(team=None, ended_at=at(2))]
    out = latency_rollup(priced_frame(rows), ["team"]).collect()
    assert out["team"].to_list() == ["a", None]
    assert out["latency_p50_ms"].to_list() == [1000.0, 2000.0]
    with pytest.raises(ValueError, match="no_such"):
        latency_rollup(priced_frame(rows), ["no_such"])


# ----------------------------------------------------------------------------- peaks
def test_peak_concurrency_overlaps_back_to_back_and_cache_hits() -> None:
    intervals = [(0, 10), (2, 5), (4, 6), (6, 8), (10, 12)]  # peak 3 at t=4..5
    rows = [base(started_at=at(s), ended_at=at(e)) for s, e in intervals]
    rows += [
        base(started_at=at(4), ended_at=at(5), gateway_cache_hit=True),  # never reached provider
        base(started_at=at(4), ended_at=at(4)),  # zero duration: never in flight
        base(started_at=at(4)),  # no end: not measurable
    ]
    other = [base(model_key=None, started_at=at(0), ended_at=at(1))] * 2
    out = peaks_by_model(priced_frame(rows + other)).collect()
    assert out.schema == PEAKS_SCHEMA
    assert only(out, model_key="openai/gpt-4o")["peak_concurrency"] == 3
    assert only(out, model_key=None)["peak_concurrency"] == 2


def test_peak_rpm_and_tpm_minutes() -> None:
    minute = dt.timedelta(minutes=1)
    rows = [base(started_at=NOON, input_tokens=100, output_tokens=None)] * 2
    rows += [base(started_at=NOON + minute + dt.timedelta(seconds=s)) for s in (0, 59)]
    rows += [base(started_at=NOON + 2 * minute, input_tokens=500, output_tokens=5)]
    rows += [base(started_at=NOON + 3 * minute, gateway_cache_hit=True, input_tokens=9_999)] * 5
    r = peaks_by_model(priced_frame(rows)).collect().row(0, named=True)
    assert (r["peak_rpm"], r["peak_rpm_minute"]) == (2, NOON)  # tie with 12:01: earliest
    assert (r["peak_tpm"], r["peak_tpm_minute"]) == (505, NOON + 2 * minute)


def test_peaks_of_cache_hits_only_are_zero() -> None:
    rows = [base(gateway_cache_hit=True, input_tokens=5, ended_at=at(1))]
    r = peaks_by_model(priced_frame(rows)).collect().row(0, named=True)
    assert (r["peak_rpm"], r["peak_tpm"], r["peak_tpm_minute"]) == (0, 0, None)
    assert r["peak_concurrency"] is None


def test_rollups_of_real_reprice_output(catalog: Catalog) -> None:
    rows = [
        {"provider": "openai", "model": "gpt-4o", "output_tokens": 10_000, "started_at": NOON},
        {"provider": "OpenAI", "model": "gpt-4o", "output_tokens": 10_000, "started_at": NOON},
        {"provider": "openai", "model": "no-such-model", "input_tokens": 5, "started_at": NOON},
    ]
    priced = reprice(canonical_frame(rows).lazy(), catalog)
    out = usage_daily(priced).collect()
    known = only(out, model_key="openai/gpt-4o")
    # gpt-4o output is $10/MTok: exactly $0.1 per request
    assert known["cost_usd"] == Decimal("0.2") and known["requests"] == 2
    assert only(out, model_key=None)["unpriced_requests"] == 1
    assert peaks_by_model(priced).collect().height == 2
    assert latency_by_model(priced).collect()["attempts"].sum() == 3


# ----------------------------------------------------------------------------- properties
_row = st.fixed_dictionaries(
    {
        "minute": st.integers(0, 2 * 24 * 60 - 1),
        "provider": st.sampled_from(["openai", "OpenAI", "anthropic", None]),
        "feature": st.sampled_from(["a", "b", None]),
        "team": st.sampled_from(["x", None]),
        "status": st.sampled_from(["success", "error", "timeout"]),
        "attempt": st.integers(1, 3),
        "input_tokens": st.one_of(st.none(), st.integers(0, 300_000)),
        "output_tokens": st.one_of(st.none(), st.integers(0, 5_000)),
        "cost_micros": st.one_of(st.none(), st.integers(0, 10**9)),
        "duration_ms": st.one_of(st.none(), st.integers(-5, 120_000)),
    }
)


def _hypothesis_rows(drawn: list[dict[str, Any]]) -> pl.LazyFrame:
    start = dt.datetime(2025, 10, 14, tzinfo=dt.UTC)
    rows = []
    for d in drawn:
        started = start + dt.timedelta(minutes=d["minute"], seconds=d["minute"] % 59)
        ms = d["duration_ms"]
        cost = None if d["cost_micros"] is None else Decimal(d["cost_micros"]).scaleb(-15)
        rows.append(
            base(
                provider=d["provider"],
                feature=d["feature"],
                team=d["team"],
                status=d["status"],
                attempt=d["attempt"],
                input_tokens=d["input_tokens"],
                output_tokens=d["output_tokens"],
                cost_usd=cost,
                started_at=started,
                ended_at=None if ms is None else started + dt.timedelta(milliseconds=ms),
            )
        )
    return priced_frame(rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row, min_size=1, max_size=40))
def test_coarser_sums_of_usage_daily_equal_direct_sums(drawn: list[dict[str, Any]]) -> None:
    frame = _hypothesis_rows(drawn)
    per_day = (
        usage_daily(frame)
        .group_by("day")
        .agg(
            pl.col("requests", "success", "retries", "input_tokens", "latency_count").sum(),
            pl.col("cost_usd").sum(),
            pl.col("latency_ms_sum").sum(),
        )
        .sort("day")
        .collect()
    )
    rows = frame.collect()
    for r in per_day.iter_rows(named=True):
        mine = rows.filter(pl.col("started_at").dt.date() == r["day"])
        assert r["requests"] == mine.height
        assert r["success"] == (mine["status"] == "success").sum()
        assert r["retries"] == (mine["attempt"] > 1).sum()
        assert r["input_tokens"] == (mine["input_tokens"].sum() or 0)
        costs = [c for c in mine["cost_usd"].to_list() if c is not None]
        assert r["cost_usd"] == sum(costs, Decimal(0))
        durations = [
            (e - s) / dt.timedelta(milliseconds=1)
            for s, e in zip(mine["started_at"], mine["ended_at"], strict=True)
            if e is not None and e >= s
        ]
        assert r["latency_count"] == len(durations)
        assert r["latency_ms_sum"] == pytest.approx(sum(durations))
    assert per_day["requests"].sum() == len(drawn)  # no row lost


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(-2, 20)), min_size=1, max_size=30))
def test_peak_concurrency_matches_brute_force(intervals: list[tuple[int, int]]) -> None:
    rows = [base(started_at=at(s), ended_at=at(s + d)) for s, d in intervals]
    out = peaks_by_model(priced_frame(rows)).collect().row(0, named=True)
    proper = [(s, s + d) for s, d in intervals if d > 0]
    # In flight at instant t: started at or before t and not yet ended (half-open intervals);
    # the maximum is reached at some start.
    expected = max((sum(1 for a, b in proper if a <= t < b) for t, _ in proper), default=None)
    assert out["peak_concurrency"] == expected
