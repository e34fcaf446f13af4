"""Gateway adapters: Helicone, OpenRouter, Cloudflare AI Gateway, OpenTelemetry GenAI spans.

Samples are the examples of the reference formats (data-formats.md §1.2-1.5); every test
ingests a real file through `sources.ingest.ingest_file`, as the CLI does.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pricing_catalog.catalog import Catalog
from sources.ingest import IngestResult, ingest_file, write_outputs
from transforms.reprice import reprice
from transforms.schema import NORMALIZED_SCHEMA, ROW_ISSUES

UTC = dt.UTC
RAW_KEY = "sk-proj-Zq7xTbL2mR9vWc4nK8pJ3sHd"

# --------------------------------------------------------------------------- samples
HELICONE_ANTHROPIC = {  # data-formats.md §1.2
    "request_id": "5f0c8a52-7a8e-4a55-9b8a-1d8f1c2e9a11",
    "request_created_at": "2025-06-01T10:15:02.113Z",
    "response_id": "0d3a",
    "response_created_at": "2025-06-01T10:15:05.004Z",
    "response_status": 200,
    "request_model": "claude-sonnet-4-0",
    "response_model": "claude-sonnet-4-20250514",
    "model": "claude-sonnet-4-20250514",
    "provider": "ANTHROPIC",
    "request_path": "https://anthropic.helicone.ai/v1/messages",
    "target_url": "https://api.anthropic.com/v1/messages",
    "request_user_id": "cust_42",
    "helicone_user": "cust_42",
    "request_properties": {"feature": "summarize", "env": "prod"},
    "delay_ms": 2891,
    "time_to_first_token": 412,
    "prompt_tokens": 210,
    "prompt_cache_read_tokens": 1800,
    "prompt_cache_write_tokens": 0,
    "completion_tokens": 420,
    "total_tokens": 2430,
    "prompt_audio_tokens": None,
    "completion_audio_tokens": None,
    "cost": 0.00747,
    "costUSD": 0.00747,
    "cache_reference_id": None,
    "cache_enabled": False,
    "country_code": "US",
    "scores": None,
    "properties": {"feature": "summarize", "env": "prod"},
}
HELICONE_OPENAI = {
    "request_id": "7c1d2e3f-0000-4000-8000-000000000002",
    "request_created_at": "2025-06-01T11:00:00.000Z",
    "response_created_at": "2025-06-01T11:00:02.757Z",
    "response_status": 200,
    "model": "gpt-4o-2024-08-06",
    "request_model": "gpt-4o",
    "provider": "OPENAI",
    "request_path": "https://oai.helicone.ai/v1/chat/completions",
    "request_properties": {"feature": "search", "team": "core", "Helicone-Session-Id": "sess-9"},
    "prompt_tokens": 1250,
    "prompt_cache_read_tokens": 1024,
    "prompt_cache_write_tokens": 0,
    "completion_tokens": 310,
    "total_tokens": 1560,
    "cost": 0.004945,
    "cache_reference_id": "00000000-0000-0000-0000-000000000000",
}
OPENROUTER = {  # data-formats.md §1.3 (the SDK documentation example)
    "data": {
        "id": "gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG",
        "upstream_id": "chatcmpl-791bcf62-080e-4568-87d0-94c72e3b4946",
        "total_cost": 0.0015,
        "cache_discount": 0.0002,
        "upstream_inference_cost": 0.0012,
        "usage": 0.0015,
        "created_at": "2024-07-15T23:33:19.433273+00:00",
        "model": "sao10k/l3-stheno-8b",
        "app_id": 12345,
        "streamed": True,
        "cancelled": False,
        "provider_name": "Infermatic",
        "latency": 1250,
        "moderation_latency": 50,
        "generation_time": 1200,
        "finish_reason": "stop",
        "native_finish_reason": "stop",
        "tokens_prompt": 10,
        "tokens_completion": 25,
        "native_tokens_prompt": 10,
        "native_tokens_completion": 25,
        "native_tokens_completion_images": 0,
        "native_tokens_reasoning": 5,
        "native_tokens_cached": 3,
        "num_media_prompt": 1,
        "num_input_audio_prompt": 0,
        "num_media_completion": 0,
        "num_search_results": 5,
        "origin": "https://openrouter.ai/",
        "is_byok": False,
        "external_user": "user-123",
        "api_type": "completions",
        "router": "openrouter/auto",
        "service_tier": "priority",
    }
}
OPENROUTER_CLAUDE = {
    "data": {
        "id": "gen-claude-1",
        "created_at": "2025-10-01T12:00:00.000000+00:00",
        "model": "anthropic/claude-sonnet-4.5",
        "native_tokens_prompt": 2000,
        "native_tokens_cached": 1500,
        "native_tokens_completion": 300,
        "native_tokens_reasoning": 100,
        "tokens_prompt": 1940,
        "tokens_completion": 291,
        "total_cost": 0.00615,
        "latency": 800,
        "generation_time": 1300,
        "cancelled": False,
        "session_id": "trace-7",
        "data_region": "europe",
        "service_tier": "standard",
        "provider_responses": [{"status": 429}, {"status": 200}],
    }
}
CLOUDFLARE = {  # data-formats.md §1.4
    "id": "01JX4ABCDEFGHJKMNPQRSTVWXY",
    "created_at": "2025-06-01T10:15:02Z",
    "provider": "openai",
    "model": "gpt-4o-mini",
    "path": "chat/completions",
    "status_code": 200,
    "success": True,
    "cached": False,
    "tokens_in": 812,
    "tokens_out": 133,
    "cost": 0.0002016,
    "duration": 1432,
    "metadata": '{"feature":"search","team":"growth","user":"u-7"}',
    "step": 0,
}


def _otlp_attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 as a string, per OTLP
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def otlp_batch(*spans: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OTLP/JSON export request holding `spans` (flat attributes turned into the list form)."""
    listed = [
        {**s, "attributes": [_otlp_attr(k, v) for k, v in s.get("attributes", {}).items()]}
        for s in spans
    ]
    res = [_otlp_attr(k, v) for k, v in (resource or {}).items()]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": res},
                "scopeSpans": [{"scope": {"name": "openai-instrumentation"}, "spans": listed}],
            }
        ]
    }


OTEL_OPENAI = {
    "traceId": "5b8efff798038103d269b633813fc60c",
    "spanId": "eee19b7ec3c1b174",
    "parentSpanId": "",
    "name": "chat gpt-4o",
    "kind": 3,
    "startTimeUnixNano": "1748772902113456789",
    "endTimeUnixNano": "1748772904870000000",
    "attributes": {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 1250,
        "gen_ai.usage.cache_read.input_tokens": 1024,
        "gen_ai.usage.output_tokens": 310,
        "gen_ai.usage.reasoning.output_tokens": 0,
        "gen_ai.response.time_to_first_chunk": 0.488,
        "openai.response.service_tier": "default",
        "app.feature": "search",
        "user.id": "cust_42",
    },
    "status": {"code": 1},
}


# --------------------------------------------------------------------------- helpers
def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def ingest(kind: str, path: Path) -> IngestResult:
    result = ingest_file(kind, path)
    assert result.problems() == []
    assert result.records_read == sum(
        result.frames[n].height for n in ("normalized", "duplicates", "quarantine")
    )
    return result


def rows(result: IngestResult) -> list[dict[str, Any]]:
    return result.frames["normalized"].to_dicts()


def only_row(result: IngestResult) -> dict[str, Any]:
    assert result.frames["quarantine"].height == 0, result.frames["quarantine"].to_dicts()
    (row,) = rows(result)
    return row


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def expect(row: dict[str, Any], **expected: Any) -> None:
    got = {k: row[k] for k in expected}
    assert got == expected


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def priced(result: IngestResult, catalog: Catalog) -> pl.DataFrame:
    normalized = result.frames["normalized"].lazy()
    requests = normalized.with_columns(pl.lit(None, pl.String).alias(ROW_ISSUES))
    return reprice(requests, catalog).collect()


def quarantine_reasons(result: IngestResult) -> dict[int, str]:
    return dict(result.frames["quarantine"].select("source_line", "reason").iter_rows())


# --------------------------------------------------------------------------- Helicone
def test_helicone_anthropic_sample_maps_field_by_field(tmp_path: Path) -> None:
    result = ingest(
        "helicone", write_jsonl(tmp_path / "requests-2025-06-01.jsonl", [HELICONE_ANTHROPIC])
    )
    row = only_row(result)
    expect(
        row,
        request_id="5f0c8a52-7a8e-4a55-9b8a-1d8f1c2e9a11",
        attempt=1,
        trace_id=None,
        started_at=ts("2025-06-01T10:15:02.113+00:00"),
        first_token_at=ts("2025-06-01T10:15:02.525+00:00"),  # + time_to_first_token 412 ms
        ended_at=ts("2025-06-01T10:15:05.004+00:00"),
        gateway="helicone",
        provider="anthropic",
        model="claude-sonnet-4-20250514",
        feature="summarize",
        team=None,
        user="cust_42",
        api_key_id=None,
        status="success",
        modality="text",
        # Anthropic prompt_tokens excludes the cache: 210 + 1800 read + 0 written.
        input_tokens=2010,
        cache_read_tokens=1800,
        cache_write_tokens=0,
        cache_write_1h_tokens=None,
        output_tokens=420,
        reasoning_tokens=None,
        gateway_cost_usd=Decimal("0.00747"),
        gateway_cache_hit=False,
        model_canonical="claude-sonnet-4",
        model_version="2025-05-14",
        source="helicone",
        source_kind="helicone",
        source_line=1,
    )
    assert result.frames["normalized"].schema == NORMALIZED_SCHEMA


def test_helicone_openai_prompt_already_includes_the_cache(tmp_path: Path) -> None:
    result = ingest("helicone", write_jsonl(tmp_path / "r.jsonl", [HELICONE_OPENAI]))
    expect(
        only_row(result),
        provider="openai",
        input_tokens=1250,  # OpenAI prompt_tokens includes the 1024 cached: not added again
        cache_read_tokens=1024,
        output_tokens=310,
        trace_id="sess-9",
        feature="search",
        team="core",
        gateway_cost_usd=Decimal("0.004945"),
        gateway_cache_hit=False,  # the all-zero cache_reference_id is not a hit
        ended_at=ts("2025-06-01T11:00:02.757+00:00"),
    )


@pytest.mark.parametrize(
    ("changes", "input_tokens", "output_tokens"),
    [
        # Newer Helicone: OpenAI cached (and audio) tokens taken out of prompt_tokens; total
        # = prompt + cached + completion gives it away.
        ({"prompt_tokens": 226}, 1250, 310),
        (
            {"prompt_tokens": 200, "prompt_audio_tokens": 26, "completion_audio_tokens": 10},
            1250,
            320,
        ),
        # No total, but more cached tokens than prompt tokens: the prompt cannot include them.
        ({"prompt_tokens": 226, "total_tokens": None}, 1250, 310),
        # No total and cache below prompt: the provider's documented semantics (included).
        ({"total_tokens": None}, 1250, 310),
    ],
)
def test_helicone_recognises_prompt_counts_without_the_cache(
    tmp_path: Path, changes: dict[str, Any], input_tokens: int, output_tokens: int
) -> None:
    record = {**HELICONE_OPENAI, **changes}
    if changes.get("total_tokens", 0) is not None and "prompt_audio_tokens" in changes:
        record["total_tokens"] = 200 + 1024 + 26 + 310 + 10
    row = only_row(ingest("helicone", write_jsonl(tmp_path / "r.jsonl", [record])))
    expect(row, input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=1024)


def test_helicone_claude_on_bedrock_follows_anthropic_semantics(tmp_path: Path) -> None:
    record = {
        **HELICONE_ANTHROPIC,
        "provider": "BEDROCK",
        "model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "prompt_cache_write_tokens": 500,
        "total_tokens": 630,  # some Helicone versions leave the cache out of the total
    }
    expect(
        only_row(ingest("helicone", write_jsonl(tmp_path / "r.jsonl", [record]))),
        provider="aws",
        input_tokens=210 + 1800 + 500,
        cache_write_tokens=500,
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (200, "success"),
        (201, "success"),
        (408, "timeout"),
        (504, "timeout"),
        (499, "cancelled"),
        (429, "error"),
        (400, "error"),
        (500, "error"),
        (503, "error"),
        (-1, "error"),
        ("200", "success"),
    ],
)
def test_helicone_http_status_mapping(tmp_path: Path, code: Any, status: str) -> None:
    record = {**HELICONE_OPENAI, "response_status": code}
    expect(only_row(ingest("helicone", write_jsonl(tmp_path / "r.jsonl", [record]))), status=status)


def test_helicone_cache_hits_streams_without_usage_and_keys(tmp_path: Path) -> None:
    hit = {
        **HELICONE_OPENAI,
        "request_id": "hit",
        "cache_reference_id": "8b0a3e1c-1f2a-4d3b-9c4d-5e6f7a8b9c0d",
        "proxy_key_id": RAW_KEY,
    }
    no_usage = {
        **HELICONE_OPENAI,
        "request_id": "stream",
        "prompt_tokens": None,
        "completion_tokens": None,
        "prompt_cache_read_tokens": None,
        "total_tokens": None,
    }
    zeros = {
        **HELICONE_OPENAI,
        "request_id": "zeros",
        "prompt_tokens": 0,
        "prompt_cache_read_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
    }
    hashed = {**HELICONE_OPENAI, "request_id": "hashed", "proxy_key_id": "AB" * 32}
    path = write_jsonl(tmp_path / "r.jsonl", [hit, no_usage, zeros, hashed])
    result = ingest("helicone", path)
    by_id = {r["request_id"]: r for r in rows(result)}
    expect(by_id["hit"], gateway_cache_hit=True, input_tokens=1250, api_key_id=sha256(RAW_KEY))
    for rid in ("stream", "zeros"):  # usage missing is null, never zero
        expect(
            by_id[rid],
            input_tokens=None,
            output_tokens=None,
            cache_read_tokens=None,
            gateway_cache_hit=False,
        )
    expect(by_id["hashed"], api_key_id="sha256:" + "ab" * 32)  # already a hash: kept
    out = tmp_path / "out"
    write_outputs(result, out)
    for parquet in out.glob("*.parquet"):
        assert RAW_KEY not in pl.read_parquet(parquet).write_csv()


def test_helicone_csv_export_and_api_page(tmp_path: Path) -> None:
    flat = {
        k: json.dumps(v) if isinstance(v, dict) else v
        for k, v in HELICONE_ANTHROPIC.items()
        if v is not None
    }
    csv = tmp_path / "export.csv"
    pl.DataFrame([flat]).write_csv(csv)
    expect(only_row(ingest("helicone", csv)), feature="summarize", input_tokens=2010, source_line=2)
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"data": [HELICONE_ANTHROPIC, HELICONE_OPENAI], "error": None}))
    assert [r["input_tokens"] for r in rows(ingest("helicone", page))] == [2010, 1250]


# --------------------------------------------------------------------------- OpenRouter
def test_openrouter_sample_maps_field_by_field(tmp_path: Path) -> None:
    result = ingest("openrouter", write_jsonl(tmp_path / "generations.jsonl", [OPENROUTER]))
    expect(
        only_row(result),
        request_id="gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG",
        attempt=1,
        started_at=ts("2024-07-15T23:33:19.433273+00:00"),
        first_token_at=ts("2024-07-15T23:33:20.683273+00:00"),  # + latency 1250 ms
        ended_at=ts("2024-07-15T23:33:21.883273+00:00"),  # + generation_time 1200 ms
        gateway="openrouter",
        provider="openrouter",
        model="sao10k/l3-stheno-8b",
        service_tier="priority",
        user="user-123",
        status="success",
        modality="text",
        input_tokens=10,  # native_tokens_prompt, cached included
        cache_read_tokens=3,
        cache_write_tokens=None,
        output_tokens=25,
        reasoning_tokens=5,
        gateway_cost_usd=Decimal("0.0015"),
        gateway_cache_hit=False,
        source_line=1,
    )


def test_openrouter_bare_records_read_like_wrapped_ones(tmp_path: Path) -> None:
    wrapped = rows(ingest("openrouter", write_jsonl(tmp_path / "a.jsonl", [OPENROUTER])))
    bare = rows(ingest("openrouter", write_jsonl(tmp_path / "b.jsonl", [OPENROUTER["data"]])))
    drop = ("source_file",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in wrapped] == [
        {k: v for k, v in r.items() if k not in drop} for r in bare
    ]
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"data": [OPENROUTER["data"], OPENROUTER_CLAUDE["data"]]}))
    assert [r["request_id"] for r in rows(ingest("openrouter", page))] == [
        "gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG",
        "gen-claude-1",
    ]


def test_openrouter_reprices_native_tokens_and_counts_fallbacks(tmp_path: Path) -> None:
    row = only_row(ingest("openrouter", write_jsonl(tmp_path / "g.jsonl", [OPENROUTER_CLAUDE])))
    expect(
        row,
        attempt=2,  # a 429 upstream, then the response: the usage is the second attempt's
        status="success",
        provider="openrouter",
        model="anthropic/claude-sonnet-4.5",
        input_tokens=2000,  # native counts, not the normalized tokens_prompt 1940
        cache_read_tokens=1500,
        output_tokens=300,
        reasoning_tokens=100,
        trace_id="trace-7",
        region="eu",
        service_tier="default",
        first_token_at=ts("2025-10-01T12:00:00.800+00:00"),
        ended_at=ts("2025-10-01T12:00:02.100+00:00"),
    )


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"provider_responses": [{"status": 200}]}, "success"),
        ({"provider_responses": [{"status": 200}, {"status": 503}]}, "error"),
        ({"provider_responses": [{"status": 408}]}, "timeout"),
        ({"provider_responses": [{"status": 429}]}, "error"),
        ({"cancelled": True}, "cancelled"),
        ({"provider_responses": None, "finish_reason": "error"}, "error"),
    ],
)
def test_openrouter_status(tmp_path: Path, changes: dict[str, Any], status: str) -> None:
    record = {"data": {**OPENROUTER_CLAUDE["data"], **changes}}
    expect(
        only_row(ingest("openrouter", write_jsonl(tmp_path / "g.jsonl", [record]))), status=status
    )


def test_openrouter_cancelled_stream_without_usage_is_null(tmp_path: Path) -> None:
    record = {
        "data": {
            **OPENROUTER_CLAUDE["data"],
            "cancelled": True,
            "native_tokens_prompt": 0,
            "native_tokens_completion": 0,
            "native_tokens_cached": 0,
            "native_tokens_reasoning": 0,
        }
    }
    row = only_row(ingest("openrouter", write_jsonl(tmp_path / "g.jsonl", [record])))
    expect(row, status="cancelled", input_tokens=None, output_tokens=None, reasoning_tokens=None)


# --------------------------------------------------------------------------- Cloudflare
def test_cloudflare_sample_maps_field_by_field(tmp_path: Path) -> None:
    result = ingest("cloudflare", write_jsonl(tmp_path / "logs-2025-06-01.jsonl", [CLOUDFLARE]))
    expect(
        only_row(result),
        request_id="01JX4ABCDEFGHJKMNPQRSTVWXY",
        attempt=1,  # step 0
        started_at=ts("2025-06-01T10:15:02+00:00"),
        first_token_at=None,
        ended_at=ts("2025-06-01T10:15:03.432+00:00"),
        gateway="cloudflare",
        provider="openai",
        model="gpt-4o-mini",
        feature="search",  # from the metadata JSON string
        team="growth",
        user="u-7",
        status="success",
        input_tokens=812,
        cache_read_tokens=None,  # Cloudflare has no cache split: unknown, not zero
        cache_write_tokens=None,
        output_tokens=133,
        reasoning_tokens=None,
        gateway_cost_usd=Decimal("0.0002016"),
        gateway_cache_hit=False,
    )


def test_cloudflare_providers_cache_hits_steps_and_statuses(tmp_path: Path) -> None:
    records = [
        {**CLOUDFLARE, "id": "hit", "cached": True, "cost": 0},
        {
            **CLOUDFLARE,
            "id": "workers",
            "provider": "workers-ai",
            "model": "@cf/meta/llama-3.1-8b-instruct",
            "metadata": {"feature": "chat", "team": "web"},  # an object works too
        },
        {**CLOUDFLARE, "id": "gemini", "provider": "google-ai-studio", "model": "gemini-2.5-flash"},
        {
            **CLOUDFLARE,
            "id": "compat",
            "provider": "compat",
            "model": "anthropic/claude-sonnet-4-5",
        },
        {**CLOUDFLARE, "id": "fallback", "step": 1},
        {**CLOUDFLARE, "id": "timeout", "status_code": 504, "success": False},
        {
            **CLOUDFLARE,
            "id": "limited",
            "status_code": 429,
            "success": False,
            "tokens_in": 0,
            "tokens_out": 0,
        },
        {**CLOUDFLARE, "id": "nocode", "status_code": None, "success": False},
    ]
    by_id = {
        r["request_id"]: r
        for r in rows(ingest("cloudflare", write_jsonl(tmp_path / "l.jsonl", records)))
    }
    expect(by_id["hit"], gateway_cache_hit=True, input_tokens=812, gateway_cost_usd=Decimal(0))
    expect(by_id["workers"], provider="cloudflare", feature="chat", team="web")
    expect(by_id["gemini"], provider="google")
    expect(by_id["compat"], provider="anthropic", model="anthropic/claude-sonnet-4-5")
    expect(by_id["fallback"], attempt=2)
    expect(by_id["timeout"], status="timeout")
    expect(by_id["limited"], status="error", input_tokens=None, output_tokens=None)
    expect(by_id["nocode"], status="error")


def test_cloudflare_api_page(tmp_path: Path) -> None:
    page = tmp_path / "logs.json"
    page.write_text(json.dumps({"result": [CLOUDFLARE], "success": True, "result_info": {}}))
    expect(only_row(ingest("cloudflare", page)), request_id="01JX4ABCDEFGHJKMNPQRSTVWXY")


# --------------------------------------------------------------------------- OpenTelemetry
def test_otel_flat_span_maps_field_by_field(tmp_path: Path) -> None:
    result = ingest("otel", write_jsonl(tmp_path / "spans-2025-06-01.jsonl", [OTEL_OPENAI]))
    expect(
        only_row(result),
        request_id="5b8efff798038103d269b633813fc60c",
        attempt=1,
        trace_id="5b8efff798038103d269b633813fc60c",
        started_at=dt.datetime(2025, 6, 1, 10, 15, 2, 113456, tzinfo=UTC),  # ns -> us
        first_token_at=dt.datetime(2025, 6, 1, 10, 15, 2, 601456, tzinfo=UTC),
        ended_at=ts("2025-06-01T10:15:04.870+00:00"),
        gateway="otel",
        provider="openai",
        model="gpt-4o-2024-08-06",  # the response model wins over the request model
        service_tier="default",
        feature="search",
        user="cust_42",
        status="success",
        input_tokens=1250,  # semconv: input includes the cached tokens
        cache_read_tokens=1024,
        cache_write_tokens=None,
        output_tokens=310,
        reasoning_tokens=0,
    )


def test_otel_otlp_batch_with_list_attributes(tmp_path: Path) -> None:
    http_span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "0000000000000001",
        "name": "POST /v1/chat/completions",
        "startTimeUnixNano": "1748772902000000000",
        "attributes": {"http.request.method": "POST"},
    }
    batch = otlp_batch(OTEL_OPENAI, http_span, resource={"service.name": "api", "app.team": "core"})
    result = ingest("otel", write_jsonl(tmp_path / "traces.jsonl", [batch]))
    assert result.records_read == 2
    row = only_row_of(result)
    expect(
        row,
        request_id="5b8efff798038103d269b633813fc60c",
        team="core",  # from the resource attributes
        input_tokens=1250,  # intValue as a string
        cache_read_tokens=1024,
        source_line=1,
    )
    assert quarantine_reasons(result)[1].startswith("not_a_genai_span")


def test_otel_document_with_base64_ids(tmp_path: Path) -> None:
    """A whole OTLP export as one JSON document; ids written base64 (protobuf-JSON style)."""
    trace, span = bytes.fromhex("5b8efff798038103d269b633813fc60c"), bytes.fromhex("eee19b7e")
    encoded = {
        **OTEL_OPENAI,
        "traceId": base64.b64encode(trace).decode(),
        "spanId": base64.b64encode(span * 2).decode(),
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps(otlp_batch(encoded)))
    expect(
        only_row(ingest("otel", path)),
        request_id="5b8efff798038103d269b633813fc60c",
        trace_id="5b8efff798038103d269b633813fc60c",
        input_tokens=1250,
    )


def only_row_of(result: IngestResult) -> dict[str, Any]:
    (row,) = rows(result)
    return row


def test_otel_retries_agents_and_provider_names(tmp_path: Path) -> None:
    def span(trace: str, span_id: str, **attrs: Any) -> dict[str, Any]:
        base = {
            "gen_ai.provider.name": "aws.bedrock",
            "gen_ai.request.model": "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 10,
        }
        return {
            "traceId": trace,
            "spanId": span_id,
            "startTimeUnixNano": "1748772902113000000",
            "endTimeUnixNano": "1748772903113000000",
            "attributes": {**base, **attrs},
        }

    records = [
        # a retried call: two spans of one trace, resend_count on the retry
        span(
            "t-retry",
            "s1",
            **{
                "error.type": "429",
                "gen_ai.usage.input_tokens": None,
                "gen_ai.usage.output_tokens": None,
            },
        )
        | {"status": {"code": "STATUS_CODE_ERROR"}},
        span("t-retry", "s2", **{"http.request.resend_count": 1}),
        # an agent loop: two model calls in one trace, plus the agent span itself
        span("t-agent", "a1"),
        span(
            "t-agent",
            "a2",
            **{"gen_ai.provider.name": "gcp.vertex_ai", "gen_ai.request.model": "gemini-2.5-flash"},
        ),
        span("t-agent", "a0", **{"gen_ai.operation.name": "invoke_agent"}),
        # an Anthropic instrumentation that reports Anthropic's input_tokens (cache excluded)
        span(
            "t-anth",
            "b1",
            **{
                "gen_ai.provider.name": "anthropic",
                "gen_ai.usage.input_tokens": 210,
                "gen_ai.usage.cache_read.input_tokens": 1800,
                "gen_ai.usage.cache_creation.input_tokens": 40,
            },
        ),
        span(
            "t-timeout",
            "c1",
            **{
                "error.type": "timeout",
                "gen_ai.usage.input_tokens": None,
                "gen_ai.usage.output_tokens": None,
            },
        ),
        span("t-cancel", "d1", **{"error.type": "asyncio.CancelledError"}),
    ]
    result = ingest("otel", write_jsonl(tmp_path / "spans.jsonl", records))
    by_key = {(r["request_id"], r["attempt"]): r for r in rows(result)}
    expect(by_key[("t-retry", 1)], status="error", input_tokens=None, provider="aws")
    expect(by_key[("t-retry", 2)], status="success", input_tokens=100)
    expect(by_key[("t-agent/a1", 1)], provider="aws", trace_id="t-agent")
    expect(by_key[("t-agent/a2", 1)], provider="google", model="gemini-2.5-flash")
    expect(
        by_key[("t-anth", 1)],
        input_tokens=210 + 1800 + 40,
        cache_read_tokens=1800,
        cache_write_tokens=40,
    )
    expect(by_key[("t-timeout", 1)], status="timeout", input_tokens=None)
    expect(by_key[("t-cancel", 1)], status="cancelled")
    assert result.frames["duplicates"].height == 0
    assert quarantine_reasons(result) == {5: "not_a_model_call"}


# --------------------------------------------------------------------------- bad rows
BAD_ROWS: dict[str, tuple[dict[str, Any], str, str, str]] = {
    # kind: (good record, id field, a token field, the timestamp field); OpenRouter wrapped
    "helicone": (HELICONE_OPENAI, "request_id", "completion_tokens", "request_created_at"),
    "openrouter": (OPENROUTER_CLAUDE["data"], "id", "native_tokens_completion", "created_at"),
    "cloudflare": (CLOUDFLARE, "id", "tokens_out", "created_at"),
    "otel": (OTEL_OPENAI, "spanId", "gen_ai.usage.output_tokens", "startTimeUnixNano"),
}


def _with(kind: str, record: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(record))
    target = out["attributes"] if field.startswith("gen_ai.") else out
    if value is ...:
        target.pop(field, None)
    else:
        target[field] = value
    return out


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_bad_rows_are_quarantined_with_reason_and_line(kind: str, tmp_path: Path) -> None:
    good, id_field, token, started = BAD_ROWS[kind]
    ident = "traceId" if kind == "otel" else id_field

    def variant(i: int, field: str | None = None, value: Any = None) -> dict[str, Any]:
        rec = _with(kind, good, ident, f"req-{i}")
        if kind == "otel":
            rec["spanId"] = f"span-{i}"
        return _with(kind, rec, field, value) if field else rec

    lines: list[Any] = [
        variant(1),  # line 1: good
        variant(2, token, -5),  # 2: negative tokens
        variant(3, token, "abc"),  # 3: wrong type
        json.dumps(variant(4))[:60],  # 4: truncated JSON
        variant(5, ident, ...),  # 5: missing id
        variant(6, started, "yesterday"),  # 6: unreadable timestamp
        variant(7, token, [1, 2]),  # 7: a list where a number belongs
        variant(1),  # 8: line 1 again: a duplicate
        variant(9),  # 9: good
    ]
    if kind == "otel":  # a missing trace id falls back to the span id: drop both
        lines[4] = _with(kind, _with(kind, variant(5), "traceId", ...), "spanId", ...)
    if kind == "openrouter":
        lines = [x if isinstance(x, str) else {"data": x} for x in lines]
    result = ingest(kind, write_jsonl(tmp_path / "input-2025-06-01.jsonl", lines))
    reasons = quarantine_reasons(result)
    canonical_token = "output_tokens"
    assert reasons[2].startswith(f"invalid_usage:negative_{canonical_token}")
    assert reasons[3] == f"invalid_value:{canonical_token}"
    assert reasons[4] == "unreadable_record:invalid_json"
    assert reasons[5] == "missing_value:request_id"
    assert reasons[6] == "invalid_timestamp:started_at"
    assert reasons[7] == f"invalid_value:{canonical_token}"
    assert set(reasons) == {2, 3, 4, 5, 6, 7}
    assert sorted(r["source_line"] for r in rows(result)) == [1, 9]
    attempt = 2 if kind == "openrouter" else 1  # the OpenRouter sample had a fallback
    assert result.frames["duplicates"].select("source_line", "attempt").rows() == [(8, attempt)]
    # Lines without a readable start time count on no day (no partition day was given).
    day = dt.date(2025, 10, 1) if kind == "openrouter" else dt.date(2025, 6, 1)
    assert result.counts.rows() == [
        (kind, day, 7, 2, 1, 4),
        (kind, None, 2, 0, 0, 2),
    ]
    assert result.counts.columns == [
        "source",
        "day",
        "rows_read",
        "normalized",
        "duplicates",
        "quarantined",
    ]
    # The verbatim record travels with its reason.
    record = result.frames["quarantine"].filter(pl.col("source_line") == 4)["record"].item()
    assert record == json.dumps(variant(4))[:60]


# --------------------------------------------------------------------------- repricing
def test_repricing_reproduces_the_gateways_own_costs(tmp_path: Path, catalog: Catalog) -> None:
    """Exact Decimal costs: the unified token semantics price each sample as its gateway did
    (Helicone's Anthropic row is only right with the cache added back into the input)."""
    cases = [
        ("helicone", [HELICONE_ANTHROPIC], Decimal("0.00747")),
        ("cloudflare", [CLOUDFLARE], Decimal("0.0002016")),
        ("otel", [OTEL_OPENAI], None),
        ("openrouter", [OPENROUTER_CLAUDE], None),
    ]
    for kind, records, gateway_cost in cases:
        out = priced(ingest(kind, write_jsonl(tmp_path / f"{kind}.jsonl", records)), catalog)
        row = out.row(0, named=True)
        assert row["unpriced_reason"] is None, (kind, row["unpriced_reason"])
        assert row["cost_usd"] > 0
        if gateway_cost is not None:
            assert row["cost_usd"] == gateway_cost, kind


def test_repricing_prices_every_model_of_the_samples(tmp_path: Path, catalog: Catalog) -> None:
    records = {
        "helicone": [HELICONE_ANTHROPIC, HELICONE_OPENAI],
        "openrouter": [OPENROUTER_CLAUDE],
        "cloudflare": [
            CLOUDFLARE,
            {
                **CLOUDFLARE,
                "id": "w",
                "provider": "workers-ai",
                "model": "@cf/meta/llama-3.1-8b-instruct",
            },
            {**CLOUDFLARE, "id": "g", "provider": "google-ai-studio", "model": "gemini-2.5-flash"},
        ],
        "otel": [OTEL_OPENAI],
    }
    for kind, recs in records.items():
        out = priced(ingest(kind, write_jsonl(tmp_path / f"{kind}.jsonl", recs)), catalog)
        assert out.filter(pl.col("unpriced_reason").is_not_null()).height == 0, (
            kind,
            out.select("provider", "model", "unpriced_reason").to_dicts(),
        )
    # OpenRouter: cached tokens at the cache-read rate, reasoning at the output rate.
    out = priced(
        ingest("openrouter", write_jsonl(tmp_path / "o.jsonl", [OPENROUTER_CLAUDE])), catalog
    )
    row = out.row(0, named=True)
    assert row["model_key"] == "openrouter/anthropic/claude-sonnet-4.5"
    assert row["cost_cache_read_usd"] > 0 and row["cost_reasoning_usd"] > 0
    assert (
        row["cost_input_usd"]
        + row["cost_cache_read_usd"]
        + row["cost_output_usd"]
        + row["cost_reasoning_usd"]
        == row["cost_usd"]
    )


def test_gateway_cache_hits_reprice_to_nothing(tmp_path: Path, catalog: Catalog) -> None:
    hit = {**CLOUDFLARE, "cached": True}
    row = priced(ingest("cloudflare", write_jsonl(tmp_path / "c.jsonl", [hit])), catalog).row(
        0, named=True
    )
    assert row["cost_usd"] == Decimal(0)
    assert "gateway_cache_hit" in row["price_flags"]


# --------------------------------------------------------------------------- generated data
@pytest.mark.parametrize("kind", ["helicone", "openrouter", "cloudflare", "otel"])
def test_generated_gateway_logs_are_read_completely(kind: str, tmp_path: Path) -> None:
    """The datagen writer of each gateway: every line lands, none quarantined, and the token
    counts of successful calls are the ground truth's."""
    traffic = pytest.importorskip("datagen.traffic")
    gateways = pytest.importorskip("datagen.gateways")
    try:
        truth, _ = traffic.build_attempts(11, dt.date(2025, 10, 1), 1, 1500)
        lines = gateways.gateway_lines(truth, kind)
    except (AttributeError, TypeError) as exc:  # the generator's API moved on
        pytest.skip(f"datagen API changed: {exc}")
    path = tmp_path / f"{kind}-2025-10-01.jsonl"
    path.write_text("\n".join(lines["line"].to_list()) + "\n")
    result = ingest(kind, path)
    assert result.records_read == lines.height > 0
    assert result.frames["quarantine"].height == 0, result.summary()["quarantined_by_reason"]
    assert result.frames["duplicates"].height == 0
    got = result.frames["normalized"].filter(pl.col("status") == "success")
    want = truth.filter((pl.col("gateway") == kind) & (pl.col("status") == "success"))
    joined = want.join(got, on="request_id", suffix="_got")
    assert joined.height == want.height
    for column in ("input_tokens", "output_tokens", "provider", "model", "started_at"):
        assert joined.filter(pl.col(column) != pl.col(f"{column}_got")).height == 0, column


@pytest.mark.parametrize("fast", [True, False])
def test_litellm_request_tags_as_an_object_is_read_not_fatal(tmp_path: Path, fast: bool) -> None:
    """Found by fuzzing: `request_tags` as a JSON object (`{"": null}`) instead of a list made
    the tag lookup fail for the whole file. The row is read; the odd tags just match nothing."""
    line = {
        "request_id": "r1",
        "spend": 0.004945,
        "prompt_tokens": 1250,
        "completion_tokens": 310,
        "startTime": "2025-06-01T10:15:02.113Z",
        "endTime": "2025-06-01T10:15:04.870Z",
        "model": "gpt-4o-2024-08-06",
        "custom_llm_provider": "openai",
        "request_tags": {"": None},
        "status": "success",
    }
    path = tmp_path / "spend.jsonl"
    path.write_text(json.dumps(line) + "\n")
    result = ingest_file("litellm", path, fast=fast)
    assert result.summary()["normalized"] == 1
    assert result.summary()["accounting_ok"] is True
