"""daily_cost_rollup on requests repriced by the real catalog (genai-prices 0.2.3 data)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from genai_prices import Usage, calc_price
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricing_catalog.catalog import Catalog
from transforms.reprice import reprice
from transforms.reprice_totals import _from_rows, price_totals
from transforms.rollups import (
    ROLLUP_KEYS,
    ROLLUP_SCHEMA,
    daily_cost_rollup,
    reprice_daily_cost_rollup,
)
from transforms.schema import CANONICAL_SCHEMA, MONEY, ROW_ISSUES

INPUT_SCHEMA = pl.Schema({**CANONICAL_SCHEMA, ROW_ISSUES: pl.String})
DAY = dt.date(2025, 10, 15)
NOON = dt.datetime(2025, 10, 15, 12, 0, tzinfo=dt.UTC)


def requests(rows: Iterable[Mapping[str, Any]]) -> pl.LazyFrame:
    """Canonical requests from partial dicts; every other column null (text, success)."""
    defaults: dict[str, Any] = {
        "attempt": 1,
        "batch": False,
        "status": "success",
        "modality": "text",
        "started_at": NOON,
        "feature": "chat",
    }
    records = []
    for i, row in enumerate(rows):
        assert set(row) <= set(INPUT_SCHEMA), set(row) - set(INPUT_SCHEMA)
        records.append({**dict.fromkeys(INPUT_SCHEMA), **defaults, "request_id": f"r{i}", **row})
    return pl.DataFrame(records, schema=INPUT_SCHEMA, orient="row").lazy()


@pytest.fixture(scope="module")
def rollup_catalog() -> Catalog:
    return Catalog.load([])


def rollup(catalog: Catalog, rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    return daily_cost_rollup(reprice(requests(rows), catalog)).collect()


def one_group(out: pl.DataFrame, **keys: Any) -> dict[str, Any]:
    hit = out.filter(*[pl.col(k).eq_missing(v) for k, v in keys.items()])
    assert hit.height == 1, (keys, out)
    return hit.row(0, named=True)


def list_price(model: str, provider: str, **usage: int) -> Decimal:
    """Independent oracle: genai-prices' own calculator."""
    result = calc_price(Usage(**usage), model, provider_id=provider, genai_request_timestamp=NOON)
    return Decimal(result.total_price)


def test_sums_are_exact_decimals(rollup_catalog: Catalog) -> None:
    # gpt-4o output is $10/MTok: 10,000 output tokens cost exactly $0.1. Ten of them are
    # exactly $1, which a float sum would miss (0.9999999999999999).
    out = rollup(
        rollup_catalog, [{"provider": "openai", "model": "gpt-4o", "output_tokens": 10_000}] * 10
    )
    row = one_group(out, model_key="openai/gpt-4o")
    assert row["cost_usd"] == Decimal("1")
    assert row["list_cost_usd"] == Decimal("1")
    assert str(row["cost_usd"]) == "1.000000000000000000"
    assert out.schema["cost_usd"] == MONEY
    assert sum([0.1] * 10) != 1.0  # the float sum this guards against


def test_costs_match_row_costs_and_genai_prices(rollup_catalog: Catalog) -> None:
    rows = [
        {
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 1_234,
            "output_tokens": 567,
            "cache_read_tokens": 200,
        },
        {"provider": "openai", "model": "gpt-4o-2024-08-06", "input_tokens": 7, "output_tokens": 3},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 98_765, "output_tokens": 4_321},
    ]
    priced = reprice(requests(rows), rollup_catalog).collect()
    row = one_group(daily_cost_rollup(priced.lazy()).collect(), model_key="openai/gpt-4o")
    assert row["cost_usd"] == sum(priced["cost_usd"].to_list(), Decimal(0))
    oracle = (
        list_price("gpt-4o", "openai", input_tokens=1_234, output_tokens=567, cache_read_tokens=200)
        + list_price("gpt-4o", "openai", input_tokens=7, output_tokens=3)
        + list_price("gpt-4o", "openai", input_tokens=98_765, output_tokens=4_321)
    )
    assert row["list_cost_usd"] == oracle
    assert (row["requests"], row["priced_requests"], row["unpriced_requests"]) == (3, 3, 0)
    assert row["input_tokens"] == 1_234 + 7 + 98_765
    assert row["output_tokens"] == 567 + 3 + 4_321
    assert row["cache_read_tokens"] == 200


def test_unpriced_rows_are_counted_not_costed(rollup_catalog: Catalog) -> None:
    rows = [
        {"provider": "anthropic", "model": "claude-haiku-4-5", "input_tokens": 1_000_000},  # $1
        {"provider": "anthropic", "model": "claude-haiku-4-5", "output_tokens": 200_000},  # $1
        # usage_missing: no token counts at all
        {"provider": "anthropic", "model": "claude-haiku-4-5", "status": "error"},
        # invalid usage: reasoning above output
        {
            "provider": "anthropic",
            "model": "claude-haiku-4-5",
            "output_tokens": 10,
            "reasoning_tokens": 20,
        },
        # a row flagged upstream
        {
            "provider": "anthropic",
            "model": "claude-haiku-4-5",
            "input_tokens": 5,
            ROW_ISSUES: "bad_row",
        },
    ]
    out = rollup(rollup_catalog, rows)
    row = one_group(out, model_key="anthropic/claude-haiku-4-5")
    assert (row["requests"], row["priced_requests"], row["unpriced_requests"]) == (5, 2, 3)
    assert row["cost_usd"] == Decimal(2)
    assert row["list_cost_usd"] == Decimal(2)
    # tokens count on every row, priced or not
    assert row["input_tokens"] == 1_000_005
    assert row["output_tokens"] == 200_010
    assert row["reasoning_tokens"] == 20


def test_gateway_cache_hits_are_priced_at_zero(rollup_catalog: Catalog) -> None:
    if "gateway_cache_hit" not in CANONICAL_SCHEMA:
        pytest.skip("canonical schema has no gateway_cache_hit")
    rows = [
        {"provider": "openai", "model": "gpt-4o", "output_tokens": 10_000},  # $0.1
        {
            "provider": "openai",
            "model": "gpt-4o",
            "output_tokens": 10_000,
            "gateway_cache_hit": True,
        },
    ]
    row = one_group(rollup(rollup_catalog, rows), model_key="openai/gpt-4o")
    # the cached answer is a priced request that cost nothing; its tokens still count
    assert (row["requests"], row["priced_requests"], row["unpriced_requests"]) == (2, 2, 0)
    assert row["cost_usd"] == Decimal("0.1")
    assert row["output_tokens"] == 20_000


def test_group_without_priced_rows_has_null_cost(rollup_catalog: Catalog) -> None:
    rows = [
        {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1_000_000},  # $0.15
        {
            "provider": "openai",
            "model": "not-a-real-model-xyz",
            "input_tokens": 100,
            "output_tokens": 5,
        },
        {
            "provider": "openai",
            "model": "not-a-real-model-xyz",
            "input_tokens": 50,
            "output_tokens": 5,
        },
        {"provider": "acme-llm", "model": "m1", "input_tokens": 1},
    ]
    out = rollup(rollup_catalog, rows)
    assert out.height == 3
    unknown = one_group(out, provider="openai", model_key=None)
    assert (unknown["requests"], unknown["priced_requests"], unknown["unpriced_requests"]) == (
        2,
        0,
        2,
    )
    assert unknown["cost_usd"] is None
    assert unknown["list_cost_usd"] is None
    assert unknown["input_tokens"] == 150
    assert one_group(out, provider="acme-llm")["unpriced_requests"] == 1
    mini = one_group(out, model_key="openai/gpt-4o-mini")
    assert mini["cost_usd"] == Decimal("0.15")
    # nulls sort last within the provider
    assert out.filter(pl.col("provider") == "openai")["model_key"].to_list() == [
        "openai/gpt-4o-mini",
        None,
    ]


def test_grain_day_provider_model_feature(rollup_catalog: Catalog) -> None:
    late = dt.datetime(2025, 10, 15, 23, 59, 59, 999_999, tzinfo=dt.UTC)
    rows = [
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "started_at": late},
        {
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 20,
            "started_at": late + dt.timedelta(microseconds=1),
        },
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 40, "feature": "search"},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 80, "feature": None},
        # provider spellings collapse onto the canonical provider
        {"provider": " Bedrock", "model": "amazon.nova-pro-v1:0", "input_tokens": 1},
        {"provider": "aws", "model": "amazon.nova-pro-v1:0", "input_tokens": 2},
    ]
    out = rollup(rollup_catalog, rows)
    assert out.schema == ROLLUP_SCHEMA
    keys = out.select(ROLLUP_KEYS).rows()
    assert keys == [
        (DAY, "aws", "aws/amazon.nova-pro-v1:0", "chat"),
        (DAY, "openai", "openai/gpt-4o", "chat"),
        (DAY, "openai", "openai/gpt-4o", "search"),
        (DAY, "openai", "openai/gpt-4o", None),
        (DAY + dt.timedelta(days=1), "openai", "openai/gpt-4o", "chat"),
    ]
    assert out["input_tokens"].to_list() == [3, 10, 40, 80, 20]
    assert out["requests"].sum() == len(rows)
    # gpt-4o input is $2.50/MTok
    assert out["cost_usd"].to_list()[1:] == [
        Decimal(n) * Decimal("0.0000025") for n in (10, 40, 80, 20)
    ]


def test_contract_terms_change_cost_not_list_cost(tmp_path: Path) -> None:
    (tmp_path / "contract.yaml").write_text(
        "contracts:\n  - name: acme-openai\n    provider: openai\n    discount_pct: 12.5\n",
        encoding="utf-8",
    )
    catalog = Catalog.load([tmp_path])
    out = rollup(
        catalog, [{"provider": "openai", "model": "gpt-4.1", "input_tokens": 3_000_000}] * 3
    )
    row = one_group(out, model_key="openai/gpt-4.1")
    # gpt-4.1 input is $2/MTok: 9M tokens = $18 at list, $15.75 after 12.5% off
    assert row["list_cost_usd"] == Decimal(18)
    assert row["cost_usd"] == Decimal("15.75")


def test_empty_input_keeps_schema(rollup_catalog: Catalog) -> None:
    out = rollup(rollup_catalog, [])
    assert out.height == 0
    assert out.schema == ROLLUP_SCHEMA


def test_rollup_stays_lazy(rollup_catalog: Catalog) -> None:
    priced = reprice(
        requests([{"provider": "openai", "model": "gpt-4o", "input_tokens": 1}]), rollup_catalog
    )
    assert isinstance(daily_cost_rollup(priced), pl.LazyFrame)


# --------------------------------------------------------------------------- priced aggregates

# (provider, model, modality, media variant columns): token models with cache TTLs, cliff
# bands and UTC time-of-day prices, images by size and quality, video seconds by resolution,
# audio seconds, a provider fallback, an embedding model and unknown ones.
CONTEXTS: list[dict[str, Any]] = [
    {"provider": "openai", "model": "gpt-4o"},
    {"provider": " OpenAI", "model": "gpt-4o-mini"},
    {"provider": "openai", "model": "o3"},
    {"provider": "anthropic", "model": "claude-sonnet-4-5"},
    {"provider": "google", "model": "gemini-2.5-pro"},
    {"provider": "vertex_ai", "model": "gemini-2.5-pro"},
    {"provider": "deepseek", "model": "deepseek-chat"},
    {"provider": "azure", "model": "gpt-4o"},
    {"provider": "openai", "model": "text-embedding-3-small", "modality": "embedding"},
    {"provider": "openai", "model": "dall-e-3", "modality": "image", "image_quality": "hd"},
    {
        "provider": "openai",
        "model": "gpt-image-1.5",
        "modality": "image",
        "image_size": "1024x1536",
        "image_quality": "high",
    },
    {"provider": "openai", "model": "sora-2", "modality": "video"},
    {"provider": "openai", "model": "sora-2-pro", "modality": "video"},
    {
        "provider": "openai",
        "model": "sora-2-pro",
        "modality": "video",
        "video_resolution": "1792x1024",
    },
    {"provider": "openai", "model": "whisper-1", "modality": "audio"},
    {"provider": "openai", "model": "gpt-9-ultra"},
    {"provider": "acme-llm", "model": "m1"},
    {"provider": None, "model": "gpt-4o"},
]
SECONDS = [None, 0.0, 0.0004, 0.0005, 0.1, 1.0015, 4.2, 12.3456, -1.0]
TOKENS = [None, 0, 1, 7, 1_000, 123_457, 200_000, 200_001, 272_001]


@st.composite
def mixed_requests(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for _ in range(draw(st.integers(0, 40))):
        started = draw(
            st.one_of(
                st.none(),
                st.datetimes(
                    dt.datetime(2025, 4, 1), dt.datetime(2025, 12, 31), timezones=st.just(dt.UTC)
                ),
            )
        )
        input_tokens = draw(st.sampled_from(TOKENS))
        cache = draw(st.sampled_from([None, 0, 1, 500, 150_000]))
        output = draw(st.sampled_from(TOKENS))
        row: dict[str, Any] = {
            **draw(st.sampled_from(CONTEXTS)),
            "started_at": started,
            "feature": draw(st.sampled_from(["chat", "search", None])),
            "status": draw(st.sampled_from(["success", "success", "error"])),
            "service_tier": draw(st.sampled_from([None, "default", "flex", "priority"])),
            "batch": draw(st.booleans()),
            "region": draw(st.sampled_from([None, "eu-west-1", "us-east-1"])),
            "input_tokens": input_tokens,
            # mostly consistent usage, sometimes not
            "cache_read_tokens": cache,
            "cache_write_tokens": draw(st.sampled_from([None, 0, 100])),
            "cache_write_1h_tokens": draw(st.sampled_from([None, 0, 50])),
            "output_tokens": output,
            "reasoning_tokens": draw(st.sampled_from([None, 0, 3, 5_000])),
            "image_count": draw(st.sampled_from([None, 0, 1, 3, -1])),
            "video_seconds": draw(st.sampled_from(SECONDS)),
            "audio_seconds": draw(st.sampled_from(SECONDS)),
            "gateway_cache_hit": draw(st.sampled_from([False, False, False, True, None])),
            ROW_ISSUES: draw(st.sampled_from([None, None, None, None, "bad_row"])),
        }
        rows.append(row)
    return rows


# Contract terms that make contract rates differ from list in every way a rate can: a
# discount with many decimals, a regional multiplier, a rate override on one unit, and a
# video discount that leaves the per-second rate with more than 15 decimals (so seconds can
# no longer be summed before pricing and the totals come from the rows).
TERMS = """
contracts:
  - name: openai-discount
    provider: openai
    discount_pct: 12.345
  - name: anthropic-eu
    provider: anthropic
    regions: ["eu-*"]
    region_multiplier: 1.1
  - name: gpt-4o-reseller
    provider: openai
    model: gpt-4o
    input_mtok: 1.80
"""
ODD_VIDEO = """
contracts:
  - name: sora-odd
    provider: openai
    model: sora-2
    discount_pct: 33.3333333333333333
"""


@pytest.fixture(scope="module")
def term_catalogs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Catalog]:
    out = {}
    for name, text in (("terms", TERMS), ("odd_video", ODD_VIDEO)):
        d = tmp_path_factory.mktemp(name)
        (d / "contracts.yaml").write_text(text, encoding="utf-8")
        out[name] = Catalog.load([d])
    return out


def _same_rollups(catalog: Catalog, rows: list[dict[str, Any]], price_at: dt.date | None) -> None:
    frame = requests(rows)
    per_row = daily_cost_rollup(reprice(frame, catalog, price_at)).collect()
    aggregated = reprice_daily_cost_rollup(frame, catalog, price_at).collect()
    assert aggregated.schema == ROLLUP_SCHEMA
    # every group, every column, to the last of 18 decimals
    assert aggregated.equals(per_row), (aggregated, per_row)
    # and the totals behind them, cache savings included
    expected = _from_rows(frame, catalog, ("feature",), price_at).collect()
    got = price_totals(frame, catalog, ("feature",), price_at).collect()
    keys = ["day", "provider", "model_key", "feature"]
    assert got.sort(keys, nulls_last=True).equals(expected.sort(keys, nulls_last=True))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=mixed_requests(), price_at=st.sampled_from([None, None, dt.date(2025, 6, 10)]))
def test_priced_aggregates_equal_the_sum_of_row_prices(
    rollup_catalog: Catalog,
    term_catalogs: dict[str, Catalog],
    rows: list[dict[str, Any]],
    price_at: dt.date | None,
) -> None:
    for catalog in (rollup_catalog, term_catalogs["terms"], term_catalogs["odd_video"]):
        _same_rollups(catalog, rows, price_at)


def test_priced_aggregates_over_many_rows_of_one_cell(rollup_catalog: Catalog) -> None:
    # one cell, many rows with odd counts: (sum of usage) x rate vs sum of (usage x rate)
    rows = [
        {
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "input_tokens": 123_457 + i,
            "cache_read_tokens": 98_765,
            "cache_write_tokens": 4_321,
            "cache_write_1h_tokens": 1_234 + i % 7,
            "output_tokens": 7_777,
            "reasoning_tokens": 3_333 - i % 11,
            "started_at": NOON + dt.timedelta(seconds=i),
        }
        for i in range(2_000)
    ]
    _same_rollups(rollup_catalog, rows, None)
    totals = price_totals(requests(rows), rollup_catalog).collect()
    per_row = reprice(requests(rows), rollup_catalog).collect()
    assert totals["cache_savings_usd"].item() == sum(per_row["cache_savings_usd"], Decimal(0))
    assert totals["cost_usd"].item() == sum(per_row["cost_usd"], Decimal(0))
    assert totals["cache_savings_usd"].item() > 0


def test_deepseek_time_of_day_prices_split_by_the_utc_second(rollup_catalog: Catalog) -> None:
    # DeepSeek's off-peak price starts at 16:30:00 UTC; the roll-up must price each side
    # with its own rate, not one rate for the whole group
    day = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    rows = [
        {
            "provider": "deepseek",
            "model": "deepseek-chat",
            "input_tokens": 1_000_000,
            "started_at": day + dt.timedelta(hours=16, minutes=29, seconds=59),
        },
        {
            "provider": "deepseek",
            "model": "deepseek-chat",
            "input_tokens": 1_000_000,
            "started_at": day + dt.timedelta(hours=16, minutes=30),
        },
    ]
    per_row = reprice(requests(rows), rollup_catalog).collect()
    assert per_row["price_id"].n_unique() == 2
    out = reprice_daily_cost_rollup(requests(rows), rollup_catalog).collect()
    assert one_group(out, model_key="deepseek/deepseek-chat")["cost_usd"] == sum(
        per_row["cost_usd"], Decimal(0)
    )
