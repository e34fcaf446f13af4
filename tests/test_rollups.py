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

from pricing_catalog.catalog import Catalog
from transforms.reprice import reprice
from transforms.rollups import ROLLUP_KEYS, ROLLUP_SCHEMA, daily_cost_rollup
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
