"""OpenAI and Anthropic usage/cost report adapters: the documented examples map exactly,
malformed results are quarantined with reason and line, and counts always add up."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sources.http_pull import read_pages
from sources.ingest import IngestResult, ingest_file
from sources.openai_costs import parse_line_item
from transforms.canonical_reader import InputError
from transforms.schema import PROVIDER_USAGE_SCHEMA

OCT_5 = 1759622400  # 2025-10-05T00:00:00Z
DAY = 86400

# data-formats.md §2.1: the real Guardian snapshot (59200 = 53440 uncached + 5760 cached).
OPENAI_USAGE_RESULT = {
    "object": "organization.usage.completions.result",
    "project_id": "proj_4BhNtYH0z7dWbBtzhibxa65W",
    "user_id": "user-dAU7Ud7OljwJvKfi4wQzWHyV",
    "api_key_id": "key_OYRZfEkH5R9CNgtY",
    "model": "gpt-4o-2024-08-06",
    "batch": False,
    "service_tier": "default",
    "num_model_requests": 10,
    "input_tokens": 59200,
    "input_cached_tokens": 5760,
    "input_uncached_tokens": 53440,
    "output_tokens": 10646,
    "input_audio_tokens": 0,
    "output_audio_tokens": 0,
}

# data-formats.md §2.3, usage report (official cookbook shape).
ANTHROPIC_USAGE_RESULT = {
    "workspace_id": "wrkspc_01",
    "api_key_id": "apikey_01",
    "model": "claude-sonnet-4-20250514",
    "service_tier": "standard",
    "context_window": "0-200k",
    "uncached_input_tokens": 267751,
    "cache_read_input_tokens": 1800000,
    "cache_creation": {"ephemeral_5m_input_tokens": 120000, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 2848746,
    "server_tool_use": {"web_search_requests": 12},
}

# data-formats.md §2.3, cost report: amounts are decimal strings in cents.
ANTHROPIC_COST_RESULTS = [
    {
        "workspace_id": None,
        "description": "Claude Sonnet 4 Usage - Input Tokens",
        "cost_type": "tokens",
        "model": "claude-sonnet-4-20250514",
        "service_tier": "standard",
        "token_type": "uncached_input_tokens",
        "context_window": "0-200k",
        "currency": "USD",
        "amount": "80.3253",
    },
    {
        "workspace_id": None,
        "description": "Web Search",
        "cost_type": "web_search",
        "model": None,
        "service_tier": None,
        "token_type": None,
        "context_window": None,
        "currency": "USD",
        "amount": "12.00",
    },
]


def openai_page(buckets: list[dict[str, Any]], next_page: str | None = None) -> dict[str, Any]:
    return {
        "object": "page",
        "data": buckets,
        "has_more": next_page is not None,
        "next_page": next_page,
    }


def openai_bucket(start: int, results: list[Any]) -> dict[str, Any]:
    return {"object": "bucket", "start_time": start, "end_time": start + DAY, "results": results}


def anthropic_page(day: str, results: list[Any]) -> dict[str, Any]:
    return {
        "data": [
            {"starting_at": f"{day}T00:00:00Z", "ending_at": f"{day}T23:59:59Z", "results": results}
        ],
        "has_more": False,
        "next_page": None,
    }


def write(tmp_path: Path, doc: Any, name: str = "report.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def ingest(kind: str, path: Path) -> IngestResult:
    result = ingest_file(kind, path)
    assert result.problems() == []
    usage = result.frames["provider_usage"]
    assert dict(usage.schema) == dict(PROVIDER_USAGE_SCHEMA)
    assert usage.height + result.frames["quarantine"].height == result.records_read
    return result


def rows(result: IngestResult) -> list[dict[str, Any]]:
    return result.frames["provider_usage"].to_dicts()


def reasons(result: IngestResult) -> dict[int, str]:
    return dict(result.frames["quarantine"].select("source_line", "reason").iter_rows())


# --------------------------------------------------------------------------- OpenAI usage
def test_openai_usage_documented_example_maps_exactly(tmp_path: Path) -> None:
    path = write(tmp_path, openai_page([openai_bucket(OCT_5, [OPENAI_USAGE_RESULT])]))
    result = ingest("openai_usage", path)
    (row,) = rows(result)
    assert {k: v for k, v in row.items() if k != "source_file"} == {
        "date": dt.date(2025, 10, 5),
        "provider": "openai",
        "model": "gpt-4o-2024-08-06",
        "model_canonical": "gpt-4o",
        "account_id": "proj_4BhNtYH0z7dWbBtzhibxa65W",
        "api_key_id": "key_OYRZfEkH5R9CNgtY",
        "service_tier": "default",
        "batch": False,
        "region": None,
        "input_tokens": 59200,  # cached included, as reported
        "cache_read_tokens": 5760,
        "cache_write_tokens": None,
        "cache_write_1h_tokens": None,
        "output_tokens": 10646,
        "reasoning_tokens": None,
        "requests": 10,
        "line_item": "completions",
        "cost_usd": None,
        "credits_usd": None,
        "currency": None,
        "source": "openai_usage",
        "source_kind": "openai_usage",
        "source_line": 1,
    }


def test_openai_usage_list_of_pages_numbers_results_across_the_file(tmp_path: Path) -> None:
    result_a = {**OPENAI_USAGE_RESULT, "model": "gpt-4o-mini-2024-07-18", "batch": True}
    pages = [
        openai_page(
            [openai_bucket(OCT_5, [OPENAI_USAGE_RESULT, result_a]), openai_bucket(OCT_5 + DAY, [])],
            next_page="page_2",
        ),
        openai_page([openai_bucket(OCT_5 + 2 * DAY, [OPENAI_USAGE_RESULT])]),
    ]
    result = ingest("openai_usage", write(tmp_path, pages))
    assert result.records_read == 3  # the empty bucket has no rows
    got = result.frames["provider_usage"]
    assert got["source_line"].to_list() == [1, 2, 3]
    assert got["batch"].to_list() == [False, True, False]
    assert got["date"].cast(pl.String).to_list() == ["2025-10-05", "2025-10-05", "2025-10-07"]
    counts = result.counts.select("day", "rows_read", "normalized").rows()
    assert [(str(d), r, n) for d, r, n in counts] == [("2025-10-05", 2, 2), ("2025-10-07", 1, 1)]


def test_openai_usage_ungrouped_fields_stay_null_and_split_input_is_summed(
    tmp_path: Path,
) -> None:
    ungrouped = {
        "object": "organization.usage.completions.result",
        "input_uncached_tokens": 53440,
        "input_cached_tokens": 5760,
        "output_tokens": 10646,
        "num_model_requests": 10,
        "model": None,
        "batch": None,
        "service_tier": None,
        "project_id": None,
    }
    path = write(tmp_path, openai_page([openai_bucket(OCT_5, [ungrouped])]))
    (row,) = rows(ingest("openai_usage", path))
    assert row["input_tokens"] == 59200
    assert row["model"] is None and row["batch"] is None and row["service_tier"] is None


def test_openai_usage_embeddings_have_no_output_and_are_kept(tmp_path: Path) -> None:
    embedding = {
        "object": "organization.usage.embeddings.result",
        "model": "text-embedding-3-small",
        "input_tokens": 1000,
        "num_model_requests": 4,
    }
    path = write(tmp_path, openai_page([openai_bucket(OCT_5, [embedding])]))
    (row,) = rows(ingest("openai_usage", path))
    assert (row["line_item"], row["input_tokens"], row["output_tokens"]) == (
        "embeddings",
        1000,
        None,
    )


def test_openai_usage_malformed_results_are_quarantined_with_reason_and_line(
    tmp_path: Path,
) -> None:
    good = OPENAI_USAGE_RESULT
    pages = [
        openai_page(
            [
                openai_bucket(
                    OCT_5,
                    [
                        good,  # 1
                        {**good, "input_tokens": "lots"},  # 2
                        {**good, "input_tokens": -5},  # 3
                        {**good, "input_cached_tokens": 60000},  # 4: cache above input
                        {k: v for k, v in good.items() if k != "output_tokens"},  # 5
                        ["not", "an", "object"],  # 6
                        {k: v for k, v in good.items() if not k.startswith("input")},  # 7
                    ],
                ),
                {**openai_bucket(OCT_5, [good]), "start_time": "yesterday"},  # 8
                {"object": "bucket", "start_time": OCT_5},  # 9: no results list
            ]
        ),
        {"error": {"message": "rate limited", "type": "requests"}},  # 10: not a page
    ]
    result = ingest("openai_usage", write(tmp_path, pages))
    assert result.records_read == 10
    assert [r["source_line"] for r in rows(result)] == [1]
    assert reasons(result) == {
        2: "invalid_value:input_tokens",
        3: "invalid_usage:negative_input_tokens;invalid_usage:cache_above_input",
        4: "invalid_usage:cache_above_input",
        5: "missing_value:output_tokens",
        6: "unreadable_record:not_a_json_object",
        7: "missing_value:input_tokens",
        8: "invalid_value:date",
        9: "unreadable_record:not_a_bucket",
        10: "unreadable_record:not_a_page",
    }
    quarantine = result.frames["quarantine"]
    # The record is kept verbatim, bucket bounds with it, so the row can be found and fixed.
    record = json.loads(quarantine.filter(pl.col("source_line") == 2)["record"].item())
    assert record["bucket"]["start_time"] == OCT_5
    assert record["result"]["input_tokens"] == "lots"
    # A result that is not an object still belongs to its bucket's day.
    day_of_6 = quarantine.filter(pl.col("source_line") == 6)["day"].item()
    assert str(day_of_6) == "2025-10-05"


# --------------------------------------------------------------------------- OpenAI costs
def test_openai_costs_documented_example_and_high_precision_values_are_exact(
    tmp_path: Path,
) -> None:
    text = (
        '{"object":"page","has_more":false,"next_page":null,"data":['
        '{"object":"bucket","start_time":1730419200,"end_time":1730505600,"results":['
        '{"object":"organization.costs.result","amount":{"value":0.06,"currency":"usd"},'
        '"line_item":"Image models","project_id":"proj_abc"},'
        '{"object":"organization.costs.result","amount":{"value":0.8958740000000000,'
        '"currency":"usd"},"line_item":null,"project_id":null},'
        '{"object":"organization.costs.result","amount":{"value":1.5e-7,"currency":"usd"},'
        '"line_item":"gpt-4o-2024-08-06, input","project_id":"proj_abc"}]},'
        '{"object":"bucket","start_time":1730505600,"end_time":1730592000,"results":[]}]}'
    )
    result = ingest("openai_costs", write(tmp_path, text))
    got = rows(result)
    assert [r["cost_usd"] for r in got] == [
        Decimal("0.06"),
        Decimal("0.895874"),
        Decimal("0.00000015"),
    ]
    assert {r["currency"] for r in got} == {"USD"}
    assert [r["line_item"] for r in got] == ["Image models", None, "gpt-4o-2024-08-06, input"]
    assert [r["model"] for r in got] == [None, None, "gpt-4o-2024-08-06"]
    assert got[2]["model_canonical"] == "gpt-4o"
    assert [r["account_id"] for r in got] == ["proj_abc", None, "proj_abc"]
    assert {str(r["date"]) for r in got} == {"2024-11-01"}
    assert all(r["input_tokens"] is None and r["requests"] is None for r in got)
    total = result.frames["provider_usage"]["cost_usd"].sum()
    assert total == Decimal("0.95587415")
    # Records keep the numbers exactly as written.
    assert '"value":0.8958740000000000' in read_pages(tmp_path / "report.json")["_record"][1]


@pytest.mark.parametrize(
    ("line_item", "tier", "model", "token_type"),
    [
        ("gpt-4o-2024-08-06, input", None, "gpt-4o-2024-08-06", "input"),
        ("gpt-4o-mini-2024-07-18, cached input", None, "gpt-4o-mini-2024-07-18", "cached input"),
        ("o1, output", None, "o1", "output"),
        ("ft-gpt-4o-2024-08-06, input", None, "ft-gpt-4o-2024-08-06", "input"),
        ("priority | gpt-5.6-sol, output, long context", "priority", "gpt-5.6-sol", "output"),
        ("gpt-image-1 image, output", None, "gpt-image-1", "output"),
        ("gpt-4o-2024-08-06, input (batch)", "batch", "gpt-4o-2024-08-06", "input"),
        ("o3-2025-04-16, cached input (flex)", "flex", "o3-2025-04-16", "cached input"),
        ("Video models", None, None, None),
        ("Image models", None, None, None),
        ("web search tool calls", None, None, None),
        ("Image models, input", None, None, None),
    ],
)
def test_openai_cost_line_items_name_model_and_token_type(
    line_item: str, tier: str | None, model: str | None, token_type: str | None
) -> None:
    parsed = pl.select(parse_line_item(pl.lit(line_item))).item()
    assert (parsed["tier"], parsed["model"], parsed["token_type"]) == (tier, model, token_type)


def test_openai_cost_line_item_tiers_set_service_tier_and_batch(tmp_path: Path) -> None:
    items = [
        "priority | gpt-5.6-sol, output, long context",
        "gpt-4o-2024-08-06, input (batch)",
        "gpt-4o-2024-08-06, input (flex)",
        "gpt-4o-2024-08-06, input",
    ]
    results = [{"amount": {"value": "1.25", "currency": "usd"}, "line_item": i} for i in items]
    path = write(tmp_path, openai_page([openai_bucket(OCT_5, results)]))
    got = [(r["model"], r["service_tier"], r["batch"]) for r in rows(ingest("openai_costs", path))]
    assert got == [
        ("gpt-5.6-sol", "priority", None),
        ("gpt-4o-2024-08-06", None, True),
        ("gpt-4o-2024-08-06", "flex", None),
        ("gpt-4o-2024-08-06", None, None),
    ]


def test_openai_costs_malformed_results_are_quarantined(tmp_path: Path) -> None:
    results = [
        {"amount": {"value": 0.5, "currency": "usd"}},  # 1
        {"amount": {"value": "n/a", "currency": "usd"}},  # 2
        {"amount": {"value": 3, "currency": "eur"}},  # 3
        {"line_item": "gpt-4o, input"},  # 4
    ]
    result = ingest("openai_costs", write(tmp_path, openai_page([openai_bucket(OCT_5, results)])))
    assert [r["cost_usd"] for r in rows(result)] == [Decimal("0.5")]
    assert reasons(result) == {
        2: "invalid_value:cost_usd",
        3: "unsupported_value:currency",
        4: "missing_value:cost_usd",
    }


@pytest.mark.parametrize("kind", ["openai_usage", "openai_costs"])
def test_a_file_of_only_empty_buckets_is_fine(tmp_path: Path, kind: str) -> None:
    pages = [
        openai_page([openai_bucket(OCT_5 + i * DAY, []) for i in range(3)], "p2"),
        openai_page([]),
    ]
    result = ingest(kind, write(tmp_path, pages))
    assert result.records_read == 0
    assert result.frames["provider_usage"].height == 0


# --------------------------------------------------------------------------- Anthropic usage
def test_anthropic_usage_documented_example_maps_exactly(tmp_path: Path) -> None:
    path = write(tmp_path, anthropic_page("2025-06-01", [ANTHROPIC_USAGE_RESULT]))
    (row,) = rows(ingest("anthropic_usage", path))
    assert str(row["date"]) == "2025-06-01"
    assert (row["provider"], row["model"], row["model_canonical"]) == (
        "anthropic",
        "claude-sonnet-4-20250514",
        "claude-sonnet-4",
    )
    assert (row["account_id"], row["api_key_id"]) == ("wrkspc_01", "apikey_01")
    assert (row["service_tier"], row["batch"]) == ("default", False)
    # input = uncached + cache read + cache writes (5m + 1h)
    assert row["input_tokens"] == 267751 + 1800000 + 120000 + 0 == 2187751
    assert row["cache_read_tokens"] == 1800000
    assert row["cache_write_tokens"] == 120000
    assert row["cache_write_1h_tokens"] == 0
    assert row["output_tokens"] == 2848746
    assert row["line_item"] == "context_window:0-200k"
    assert row["cost_usd"] is None


def test_both_cache_creation_shapes_give_the_same_canonical_numbers(tmp_path: Path) -> None:
    common = {
        "model": "claude-opus-4-1-20250805",
        "uncached_input_tokens": 1000,
        "cache_read_input_tokens": 200,
        "output_tokens": 50,
    }
    nested = {
        **common,
        "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 7},
    }
    flat = {**common, "cache_creation_5m_input_tokens": 30, "cache_creation_1h_input_tokens": 7}
    got = [
        rows(ingest("anthropic_usage", write(tmp_path, anthropic_page("2025-06-01", [r]), n)))[0]
        for r, n in ((nested, "nested.json"), (flat, "flat.json"))
    ]
    tokens = ["input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens"]
    assert [[g[t] for t in tokens] for g in got] == [[1237, 200, 37, 7]] * 2


@pytest.mark.parametrize(
    ("tier", "service_tier", "batch"),
    [("standard", "default", False), ("batch", "default", True), ("priority", "priority", False)],
)
def test_anthropic_service_tiers(tmp_path: Path, tier: str, service_tier: str, batch: bool) -> None:
    result_row = {**ANTHROPIC_USAGE_RESULT, "service_tier": tier}
    (row,) = rows(
        ingest("anthropic_usage", write(tmp_path, anthropic_page("2025-06-01", [result_row])))
    )
    assert (row["service_tier"], row["batch"]) == (service_tier, batch)


def test_anthropic_usage_malformed_results_are_quarantined(tmp_path: Path) -> None:
    good = ANTHROPIC_USAGE_RESULT
    results = [
        good,  # 1
        {**good, "uncached_input_tokens": "many"},  # 2
        {**good, "output_tokens": -1},  # 3
        {
            **good,
            "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 11.5},
        },
        {k: v for k, v in good.items() if k != "output_tokens"},  # 5
        None,  # 6
    ]
    result = ingest("anthropic_usage", write(tmp_path, anthropic_page("2025-06-01", results)))
    assert [r["source_line"] for r in rows(result)] == [1]
    assert reasons(result) == {
        2: "invalid_value:uncached_input_tokens;missing_value:input_tokens",
        3: "invalid_usage:negative_output_tokens",
        4: "invalid_value:cache_creation_1h_input_tokens",
        5: "missing_value:output_tokens",
        6: "unreadable_record:not_a_json_object",
    }


# --------------------------------------------------------------------------- Anthropic cost
def test_anthropic_cost_cents_become_exact_dollars(tmp_path: Path) -> None:
    path = write(tmp_path, anthropic_page("2025-06-01", ANTHROPIC_COST_RESULTS))
    result = ingest("anthropic_cost", path)
    token_row, search_row = rows(result)
    assert token_row["cost_usd"] == Decimal("0.803253")  # 80.3253 cents, exactly
    assert search_row["cost_usd"] == Decimal("0.12")
    assert (token_row["model"], token_row["model_canonical"]) == (
        "claude-sonnet-4-20250514",
        "claude-sonnet-4",
    )
    assert (token_row["service_tier"], token_row["batch"]) == ("default", False)
    assert token_row["line_item"] == "Claude Sonnet 4 Usage - Input Tokens"
    assert (search_row["model"], search_row["line_item"]) == (None, "Web Search")
    assert {r["currency"] for r in (token_row, search_row)} == {"USD"}
    assert result.frames["provider_usage"]["cost_usd"].sum() == Decimal("0.923253")


def test_anthropic_cost_sums_many_cent_amounts_without_float_drift(tmp_path: Path) -> None:
    amounts = [f"{i}.{i:04d}" for i in range(1, 201)]
    results = [{"amount": a, "currency": "USD", "service_tier": "batch"} for a in amounts]
    result = ingest("anthropic_cost", write(tmp_path, anthropic_page("2025-06-01", results)))
    got = result.frames["provider_usage"]
    assert got["cost_usd"].sum() == sum(Decimal(a) for a in amounts) / 100
    assert got["batch"].all()


def test_anthropic_cost_line_item_falls_back_to_cost_and_token_type(tmp_path: Path) -> None:
    result_row = {
        "amount": "1",
        "cost_type": "tokens",
        "token_type": "cache_read_input_tokens",
        "context_window": "200k-1M",
        "description": None,
    }
    path = write(tmp_path, anthropic_page("2025-06-01", [result_row]))
    (row,) = rows(ingest("anthropic_cost", path))
    assert row["line_item"] == "tokens, cache_read_input_tokens, 200k-1M"
    assert row["cost_usd"] == Decimal("0.01")


def test_anthropic_cost_malformed_results_are_quarantined(tmp_path: Path) -> None:
    results = [
        {"amount": "10", "currency": "usd"},  # 1: lower-case is fine
        {"amount": "ten"},  # 2
        {"amount": "10", "currency": "EUR"},  # 3
        {"description": "Claude Sonnet 4 Usage - Input Tokens"},  # 4
    ]
    result = ingest("anthropic_cost", write(tmp_path, anthropic_page("2025-06-01", results)))
    assert [(r["cost_usd"], r["currency"]) for r in rows(result)] == [(Decimal("0.1"), "USD")]
    assert reasons(result) == {
        2: "invalid_value:cost_usd",
        3: "unsupported_value:currency",
        4: "missing_value:cost_usd",
    }


# --------------------------------------------------------------------------- file shapes
def test_jsonl_of_pages_quarantines_an_unreadable_line(tmp_path: Path) -> None:
    page = anthropic_page("2025-06-01", [ANTHROPIC_USAGE_RESULT])
    text = json.dumps(page) + "\n" + json.dumps(page)[:40] + "\n" + json.dumps(page) + "\n"
    result = ingest("anthropic_usage", write(tmp_path, text, "report.jsonl"))
    assert result.records_read == 3
    assert [r["source_line"] for r in rows(result)] == [1, 3]
    assert reasons(result) == {2: "unreadable_record:invalid_json"}


def test_a_truncated_report_is_one_input_error(tmp_path: Path) -> None:
    text = json.dumps(anthropic_page("2025-06-01", [ANTHROPIC_USAGE_RESULT]), indent=2)[:-30]
    with pytest.raises(InputError, match="not a JSON report"):
        ingest_file("anthropic_usage", write(tmp_path, text))


def test_a_missing_file_is_one_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read file"):
        ingest_file("openai_costs", tmp_path / "nope.json")
