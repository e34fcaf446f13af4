"""Budgets (daily/monthly burn, breach, forecast), rate-limit headroom and root cause
(top contributors, volume vs unit price) on hand-built frames with exact Decimal money."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl

from transforms import budgets as bg
from transforms import root_cause as rc
from transforms.schema import MONEY


def daily(rows: list[tuple[dt.date, str, str, str, int, int, str]]) -> pl.LazyFrame:
    """usage_daily rows: (day, feature, team, model_key, requests, tokens, cost)."""
    return pl.DataFrame(
        [
            {
                "day": d,
                "feature": f,
                "team": t,
                "model_key": m,
                "requests": r,
                "input_tokens": tok,
                "output_tokens": 0,
                "cost_usd": Decimal(c),
            }
            for d, f, t, m, r, tok, c in rows
        ],
        schema={
            "day": pl.Date,
            "feature": pl.String,
            "team": pl.String,
            "model_key": pl.String,
            "requests": pl.Int64,
            "input_tokens": pl.Int64,
            "output_tokens": pl.Int64,
            "cost_usd": MONEY,
        },
        orient="row",
    ).lazy()


def d(n: int) -> dt.date:
    return dt.date(2025, 10, n)


def test_daily_and_monthly_burn_breach_and_forecast() -> None:
    rows = [(d(i), "chat", "web", "m/a", 10, 100, "100.10") for i in range(1, 11)]
    rows += [(d(i), "search", "web", "m/a", 10, 100, "20.00") for i in range(1, 11)]
    frame = daily(rows)
    budgets = [
        bg.Budget("feature", "chat", daily_usd=Decimal("110"), monthly_usd=Decimal("3000")),
        bg.Budget("team", "web", daily_usd=Decimal("100")),
        bg.Budget("total", None, monthly_usd=Decimal("1100")),
    ]
    events = bg.budget_events(frame, d(10), budgets).collect()
    by_key = {(e["scope"], e["kind"]): e for e in events.iter_rows(named=True)}
    chat = by_key[("feature", "daily_warning")]
    assert chat["spend_usd"] == Decimal("100.10") and chat["burn"] > 0.9
    assert chat["period"] == "2025-10-10"
    assert by_key[("team", "daily_breach")]["spend_usd"] == Decimal("120.10")
    # The chat monthly budget: MTD 1001.00, forecast 1001.00 / 10 x 31 = 3103.10 >= 3000.
    forecast = by_key[("feature", "monthly_forecast")]
    assert forecast["spend_usd"] == Decimal("1001.00")
    assert forecast["forecast_usd"] == Decimal("3103.10")
    assert forecast["alert_key"] == "budget|monthly_forecast|feature|chat|2025-10"
    assert ("feature", "monthly_warning") not in by_key  # 33% burned
    # The total: 1201.00 >= 1100 is a breach (and no forecast once breached).
    assert by_key[("total", "monthly_breach")]["spend_usd"] == Decimal("1201.00")
    assert ("total", "monthly_forecast") not in by_key
    # Keys name the period: the monthly breach of the next day is the same alert.
    later = bg.budget_events(frame, d(11), budgets).collect()
    assert "budget|monthly_breach|total||2025-10" in later["alert_key"].to_list()


def test_forecast_needs_three_days() -> None:
    frame = daily([(d(i), "chat", "web", "m/a", 1, 1, "500") for i in (1, 2)])
    budget = [bg.Budget("feature", "chat", monthly_usd=Decimal("5000"))]
    assert bg.budget_events(frame, d(2), budget).collect().is_empty()
    frame = daily([(d(i), "chat", "web", "m/a", 1, 1, "500") for i in (1, 2, 3)])
    kinds = bg.budget_events(frame, d(3), budget).collect()["kind"].to_list()
    assert kinds == ["monthly_forecast"]


def test_rate_limit_headroom_for_models_and_providers() -> None:
    minute = dt.datetime(2025, 10, 1, 14, 3, tzinfo=dt.UTC)
    peaks = pl.DataFrame(
        {
            "day": [d(1), d(1)],
            "provider": ["openai", "openai"],
            "model_key": ["openai/gpt-4o", "openai/o3"],
            "peak_rpm": [850, 300],
            "peak_rpm_minute": [minute, minute],
            "peak_tpm": [100_000, 50_000],
            "peak_tpm_minute": [minute, minute],
        }
    ).lazy()
    limits = [
        bg.RateLimit("openai", "openai/gpt-4o", rpm=1000, tpm=1_000_000),
        bg.RateLimit("openai", None, rpm=1200),
    ]
    events = bg.rate_limit_events(peaks, d(1), limits).collect()
    assert events.select("kind", "model_key", "peak", "limit").rows() == [
        ("rate_limit_rpm", "openai/gpt-4o", 850, 1000),
        ("rate_limit_rpm", None, 1150, 1200),
    ]
    assert "upper bound" in events["detail"][1]
    # With the provider's own busiest minute, the upper bound is replaced.
    priced = pl.DataFrame(
        {
            "started_at": [minute] * 5 + [minute + dt.timedelta(minutes=1)] * 3,
            "provider": ["openai"] * 8,
            "gateway_cache_hit": [False] * 7 + [True],
            "input_tokens": [10] * 8,
            "output_tokens": [None] * 8,
        },
        schema_overrides={"output_tokens": pl.Int64},
    ).lazy()
    provider = bg.provider_peaks(priced).collect()
    assert provider.select("peak_rpm", "peak_tpm").rows() == [(5, 50)]
    small = [bg.RateLimit("openai", None, rpm=6)]
    events = bg.rate_limit_events(peaks, d(1), small, bg.provider_peaks(priced)).collect()
    assert events.select("peak", "detail").rows() == [(5, "")]


def priced_rows(rows: list[tuple[dt.date, str, str, str, str, int, str]]) -> pl.LazyFrame:
    """Repriced requests: (day, model_key, team, user, api_key_id, tokens, cost)."""
    return pl.DataFrame(
        [
            {
                "started_at": dt.datetime.combine(day, dt.time(12), dt.UTC),
                "model_key": m,
                "team": t,
                "user": u,
                "api_key_id": k,
                "input_tokens": tok,
                "cost_usd": Decimal(c),
            }
            for day, m, t, u, k, tok, c in rows
        ],
        schema_overrides={"cost_usd": MONEY},
    ).lazy()


def test_contributors_rank_the_change_and_mask_keys() -> None:
    base_days = [d(1), d(8)]
    rows = []
    for b in base_days:
        rows += [(b, "m/a", "web", "u1", "sha256:aaaa1111bbbb2222", 100, "10")] * 2
        rows += [(b, "m/b", "web", "u2", "sha256:cccc3333dddd4444", 100, "5")]
    # The day: u1 on m/a makes 6 calls instead of 2; m/b unchanged.
    rows += [(d(15), "m/a", "web", "u1", "sha256:aaaa1111bbbb2222", 100, "10")] * 6
    rows += [(d(15), "m/b", "web", "u2", "sha256:cccc3333dddd4444", 100, "5")]
    out = rc.contributors(priced_rows(rows), d(15), base_days).collect()
    model = out.filter(pl.col("dimension") == "model_key").row(0, named=True)
    assert (model["value"], model["delta_usd"], model["share"]) == ("m/a", Decimal(40), 1.0)
    assert model["expected_usd"] == Decimal(20)
    keys = out.filter(pl.col("dimension") == "api_key_id")["value"].to_list()
    assert keys == ["sha256:aaaa…2222"]  # masked; the unchanged key is not a contributor
    users = out.filter(pl.col("dimension") == "user")
    assert users["value"].to_list() == ["u1"]


def test_decomposition_tells_traffic_from_price() -> None:
    base = [d(1), d(8)]

    def frame(day_requests: int, day_tokens: int, day_cost: str) -> pl.LazyFrame:
        rows = [(b, "chat", "web", "m/a", 100, 100_000, "10.00") for b in base]
        rows.append((d(15), "chat", "web", "m/a", day_requests, day_tokens, day_cost))
        return daily(rows)

    def total(lf: pl.LazyFrame) -> dict[str, Decimal]:
        t = rc.decompose(lf, d(15), base).collect().filter(pl.col("row") == "total")
        return t.row(0, named=True)

    surge = total(frame(200, 200_000, "20.00"))  # twice the traffic, same prices
    assert surge["delta_usd"] == Decimal("10.00")
    assert surge["traffic_usd"] == Decimal("10.00")
    assert surge["unit_price_usd"] == 0 and surge["tokens_per_request_usd"] == 0
    price = total(frame(100, 100_000, "15.00"))  # same traffic, price up 50%
    assert price["traffic_usd"] == 0 and price["unit_price_usd"] == Decimal("5.00")
    bloat = total(frame(100, 300_000, "30.00"))  # prompts 3x longer
    assert bloat["tokens_per_request_usd"] == Decimal("20.00")
    assert bloat["unit_price_usd"] == 0
    mixed = total(frame(150, 180_000, "21.60"))
    parts = mixed["traffic_usd"] + mixed["tokens_per_request_usd"] + mixed["unit_price_usd"]
    assert parts == mixed["delta_usd"] == Decimal("11.60")
    # A model that did not exist in the baseline is all traffic.
    new = daily(
        [(b, "chat", "web", "m/a", 100, 100_000, "10.00") for b in base]
        + [(d(15), "chat", "web", "m/a", 100, 100_000, "10.00")]
        + [(d(15), "chat", "web", "m/new", 10, 5_000, "7.00")]
    )
    rows = rc.decompose(new, d(15), base).collect()
    fresh = rows.filter(pl.col("model_key") == "m/new").row(0, named=True)
    assert fresh["traffic_usd"] == Decimal("7.00") and fresh["expected_usd"] == 0
