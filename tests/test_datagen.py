"""datagen: determinism, internal consistency, native formats and injected faults.

The reference decoders below apply the semantics documented in datagen.gateways to the
native lines and must get back the ground truth exactly: they pin the contract the adapters
are written against.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import json
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from datagen import FaultSpec, Spike, billing, generate, generate_from_args, main, org
from datagen.cli import UsageError
from pricing_catalog.catalog import Catalog
from transforms.reprice import reprice
from transforms.schema import CANONICAL_SCHEMA, INVOICE_LINE_SCHEMA, ROW_ISSUES, canonical_provider

START = dt.date(2025, 9, 28)  # crosses the Sonnet 4.5 launch and a month boundary
DAYS = 4
RPD = 400
SEED = 11
FAULTS = FaultSpec(
    spikes=(Spike("search-rerank", dt.date(2025, 9, 29), 2.5),),
    missing_logs=(("cloudflare", dt.date(2025, 9, 30)),),
    invoice_mismatch=(("anthropic", Decimal("7.50")),),
    duplicate_rate=0.01,
    malformed_rate=0.01,
)
GATEWAY_FILES = {
    "litellm": "litellm/spend-logs-{}.jsonl",
    "helicone": "helicone/requests-{}.jsonl",
    "openrouter": "openrouter/generations-{}.jsonl",
    "cloudflare": "cloudflare/logs-{}.jsonl",
    "otel": "otel/spans-{}.jsonl",
}
RESOLVED = {(m.provider, name): m.resolved for m in org.MODELS for name in (m.alias, m.resolved)}


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gen")
    generate(path, DAYS, RPD, SEED, START, FAULTS)
    return path


@pytest.fixture(scope="module")
def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def truth(out: Path) -> pl.DataFrame:
    return pl.concat(
        [pl.read_parquet(p) for p in sorted((out / "canonical").glob("requests-*.parquet"))]
    )


@pytest.fixture(scope="module")
def priced(truth: pl.DataFrame) -> pl.DataFrame:
    return reprice(truth.lazy(), Catalog.load([])).collect()


@pytest.fixture(scope="module")
def seen(priced: pl.DataFrame) -> pl.DataFrame:
    """What the providers saw: successful, non-cached attempts, with the billed model name."""
    return priced.filter(
        (pl.col("status") == "success") & ~pl.col("gateway_cache_hit")
    ).with_columns(
        pl.col("started_at").dt.date().alias("date"),
        pl.struct("provider", "model")
        .map_elements(
            lambda r: RESOLVED.get((r["provider"], r["model"]), r["model"]), return_dtype=pl.String
        )
        .alias("billed"),
    )


def days() -> list[dt.date]:
    return [START + dt.timedelta(d) for d in range(DAYS)]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(), parse_float=Decimal)


def faulty_lines(manifest: dict[str, Any], kind: str) -> dict[str, dict[int, dict[str, Any]]]:
    out: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in manifest["faults"][kind]:
        out[r["file"]][r["line"]] = r
    return out


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    spec = FaultSpec(duplicate_rate=0.02, malformed_rate=0.02)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, 2, 150, 5, dt.date(2025, 9, 30), spec)
    generate(b, 2, 150, 5, dt.date(2025, 9, 30), spec)
    generate(c, 2, 150, 6, dt.date(2025, 9, 30), spec)
    ha, hb, hc = tree_hashes(a), tree_hashes(b), tree_hashes(c)
    assert ha == hb
    assert len(ha) > 20
    common = set(ha) & set(hc)
    assert {f for f in ha if f.startswith(("canonical/", "litellm/", "openai/"))} <= common
    assert all(
        ha[f] != hc[f] for f in common if f.startswith(("canonical/", "litellm/", "openai/"))
    )
    assert ha["manifest.json"] != hc["manifest.json"]


# --------------------------------------------------------------------------- truth
def test_truth_has_the_canonical_schema_and_consistent_tokens(truth: pl.DataFrame) -> None:
    assert truth.schema == pl.Schema({**CANONICAL_SCHEMA, ROW_ISSUES: pl.String})
    assert truth[ROW_ISSUES].null_count() == truth.height
    t = {c: pl.col(c).fill_null(0) for c in TOKENS}
    assert truth.filter(
        (t["cache_read_tokens"] + t["cache_write_tokens"] > t["input_tokens"])
        | (t["cache_write_1h_tokens"] > t["cache_write_tokens"])
        | (t["reasoning_tokens"] > t["output_tokens"])
        | (pl.min_horizontal(*t.values()) < 0)
    ).is_empty()
    # Usage is null exactly on failed attempts and media calls ("not reported", never 0).
    missing = truth.select(pl.col("input_tokens").is_null()).to_series()
    failed_or_media = truth.select(
        (pl.col("status") != "success") | (pl.col("modality") != "text")
    ).to_series()
    assert missing.equals(failed_or_media)
    assert truth.filter(pl.col("ended_at") < pl.col("started_at")).is_empty()
    assert truth.filter(pl.col("first_token_at") > pl.col("ended_at")).is_empty()
    assert truth.select("request_id", "attempt").is_unique().all()
    # Retried requests (LiteLLM, OTel) have attempts 1..n without gaps.
    firsts = (
        truth.filter(pl.col("gateway").is_in(["litellm", "otel"]))
        .group_by("request_id")
        .agg(
            pl.col("attempt").min().alias("first"), pl.col("attempt").max().alias("last"), pl.len()
        )
    )
    assert (firsts["first"] == 1).all() and (firsts["last"] == firsts["len"]).all()


def test_truth_has_the_promised_variety(truth: pl.DataFrame, priced: pl.DataFrame) -> None:
    assert set(truth["gateway"]) == set(org.GATEWAYS)
    assert set(truth["modality"]) >= {"text", "image"}
    assert truth["feature"].drop_nulls().n_unique() >= 10
    assert truth["team"].drop_nulls().n_unique() == len(org.TEAMS) == 8
    assert truth.filter(pl.col("attempt") > 1).height > 0
    assert 0.02 < truth.filter(pl.col("batch")).height / truth.height < 0.09
    failed = truth.filter(pl.col("status") != "success").height / truth.height
    assert 0.015 < failed < 0.06
    assert truth.filter(pl.col("cache_write_1h_tokens") > 0).height > 0
    assert truth.filter(pl.col("reasoning_tokens") > 0).height > 0
    assert truth.filter(pl.col("gateway_cache_hit")).height > 0
    # Release gating: Sonnet 4.5 only from its launch day, Sonnet 4 before it.
    sonnet45 = truth.filter(pl.col("model").str.contains("sonnet-4-5|sonnet-4.5"))
    assert sonnet45["started_at"].min().date() == dt.date(2025, 9, 29)
    # Everything is priced, except failed attempts (no usage reported).
    unpriced = priced.filter(pl.col("unpriced_reason").is_not_null())
    assert set(unpriced["unpriced_reason"]) == {"usage_missing"}
    assert set(unpriced["status"]) <= {"error", "timeout"}
    assert truth.filter(pl.col("gateway") == "openrouter")["attempt"].max() == 2


def test_a_long_run_has_long_prompts_and_a_price_change(tmp_path: Path) -> None:
    data = generate(tmp_path, 2, 3000, 2, dt.date(2025, 9, 8), FaultSpec()).data
    assert data["counts"]["long_context"] > 0
    truth = pl.read_parquet(sorted((tmp_path / "canonical").glob("*.parquet")))
    priced = reprice(truth.lazy(), Catalog.load([])).collect()
    veo = priced.filter(
        (pl.col("model") == "veo-3.0-generate-001") & (pl.col("status") == "success")
    )
    per_second = veo.with_columns(
        (pl.col("cost_usd").cast(pl.Float64) / pl.col("video_seconds")).alias("rate"),
        pl.col("started_at").dt.date().alias("day"),
    )
    rates = dict(per_second.group_by("day").agg(pl.col("rate").mean()).iter_rows())
    assert rates[dt.date(2025, 9, 8)] == pytest.approx(0.75)
    assert rates[dt.date(2025, 9, 9)] == pytest.approx(0.40)


# --------------------------------------------------------------------------- counts
def test_counts_add_up_with_the_manifest(
    out: Path, manifest: dict[str, Any], truth: pl.DataFrame
) -> None:
    files = manifest["files"]
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == set(files)
    assert manifest["counts"]["attempts"] == truth.height
    assert manifest["counts"]["logical_requests"] == truth.filter(pl.col("attempt") == 1).height
    for d in days():
        rel = f"canonical/requests-{d.isoformat()}.parquet"
        assert files[rel]["records"] == pl.read_parquet(out / rel).height
    missing = {
        (m["gateway"], m["date"]): m["rows_missing"] for m in manifest["faults"]["missing_logs"]
    }
    for gateway, pattern in GATEWAY_FILES.items():
        total = 0
        for d in days():
            rel = pattern.format(d.isoformat())
            if (gateway, d.isoformat()) in missing:
                assert rel not in files and not (out / rel).exists()
                total += missing[(gateway, d.isoformat())]
                continue
            n_lines = len((out / rel).read_text().splitlines())
            info = files[rel]
            assert n_lines == info["lines"] == info["records"] + info["duplicates"]
            total += info["records"]
        assert (
            total
            == manifest["counts"]["by_gateway"][gateway]
            == truth.filter(pl.col("gateway") == gateway).height
        )
    by_day = manifest["totals"]["by_day_provider"]
    assert sum(p["attempts"] for d in by_day.values() for p in d.values()) == truth.height


# --------------------------------------------------------------------------- native formats
def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _status_from_http(code: int) -> str:
    return "success" if code == 200 else "timeout" if code == 408 else "error"


TOKENS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def no_usage_if_zero(out: dict[str, Any]) -> dict[str, Any]:
    """0 and 0 tokens means no usage was reported: every count is null."""
    if not out["input_tokens"] and not out["output_tokens"]:
        out |= dict.fromkeys(TOKENS)
    return out


def decode_litellm(r: dict[str, Any]) -> dict[str, Any]:
    md = r["metadata"]
    usage = md["additional_usage_values"] or {}
    failed = r["status"] == "failure"
    status = (
        "success"
        if not failed
        else "timeout"
        if md["error_information"]["error_class"] == "Timeout"
        else "error"
    )
    body = r["proxy_server_request"]
    modality = {"aimage_generation": "image", "avideo_generation": "video"}.get(
        r["call_type"], "text"
    )
    out = {
        "request_id": r["session_id"],
        "attempt": md["attempted_retries"] + 1,
        "trace_id": r["session_id"],
        "start": _ms(r["startTime"]),
        "end": _ms(r["endTime"]),
        "first": _ms(r["completionStartTime"]) if r["completionStartTime"] else None,
        "provider": r["custom_llm_provider"],
        "model": r["model"],
        "status": status,
        "batch": r["call_type"] == "aretrieve_batch",
        "feature": md["spend_logs_metadata"]["feature"],
        "team": r["team_id"],
        "user": r["end_user"],
        "api_key_id": "sha256:" + r["api_key"],
        "modality": modality,
        "input_tokens": r["prompt_tokens"],
        "output_tokens": r["completion_tokens"],
        "cache_read_tokens": None,
        "cache_write_tokens": None,
        "cache_write_1h_tokens": None,
        "reasoning_tokens": None,
        "gateway_cost_usd": Decimal(r["spend"]),
        "gateway_cache_hit": r["cache_hit"] == "True",
    }
    if modality == "text":
        out |= {
            "cache_read_tokens": usage["prompt_tokens_details"]["cached_tokens"],
            "cache_write_tokens": usage["prompt_tokens_details"]["cache_creation_tokens"],
            "cache_write_1h_tokens": usage.get("cache_creation", {}).get(
                "ephemeral_1h_input_tokens"
            ),
            "reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"],
        }
    elif modality == "image":
        out |= {
            "image_count": None if failed else body["n"],
            "image_size": body["size"],
            "image_quality": body["quality"],
        }
    else:
        out |= {
            "video_seconds": None if failed else float(body["seconds"]),
            "video_resolution": body["size"],
        }
    return no_usage_if_zero(out)


def decode_helicone(r: dict[str, Any]) -> dict[str, Any]:
    props = r["request_properties"]
    cached_excluded = r["provider"] == "ANTHROPIC"
    extra = r["prompt_cache_read_tokens"] + r["prompt_cache_write_tokens"] if cached_excluded else 0
    start = _ms(r["request_created_at"])
    return no_usage_if_zero(
        {
            "request_id": r["request_id"],
            "attempt": 1,
            "trace_id": props["Helicone-Session-Id"],
            "start": start,
            "end": start + r["delay_ms"],
            "first": start + r["time_to_first_token"]
            if r["time_to_first_token"] is not None
            else None,
            "provider": r["provider"].lower(),
            "model": r["model"],
            "status": _status_from_http(r["response_status"]),
            "feature": props["feature"],
            "team": props["team"],
            "user": r["request_user_id"],
            "input_tokens": r["prompt_tokens"] + extra,
            "cache_read_tokens": r["prompt_cache_read_tokens"],
            "cache_write_tokens": r["prompt_cache_write_tokens"],
            "cache_write_1h_tokens": None,
            "output_tokens": r["completion_tokens"],
            "reasoning_tokens": None,
            "gateway_cost_usd": Decimal(r["cost"]),
            "gateway_cache_hit": r["cache_reference_id"] != "00000000-0000-0000-0000-000000000000",
        }
    )


def decode_openrouter(line: dict[str, Any]) -> dict[str, Any]:
    r = line["data"]
    start = int(dt.datetime.fromisoformat(r["created_at"]).timestamp() * 1000)
    first = start + r["latency"] if r["latency"] is not None else None
    return {
        "request_id": r["id"],
        "attempt": len(r["provider_responses"]),
        "trace_id": r["session_id"],
        "start": start,
        "first": first,
        "end": start + (r["latency"] or 0) + r["generation_time"],
        "provider": "openrouter",
        "model": r["model"],
        "status": _status_from_http(r["provider_responses"][-1]["status"]),
        "feature": None,
        "team": None,
        "user": r["external_user"],
        "service_tier": r["service_tier"],
        "input_tokens": r["native_tokens_prompt"],
        "cache_read_tokens": r["native_tokens_cached"],
        "cache_write_tokens": None,
        "cache_write_1h_tokens": None,
        "output_tokens": r["native_tokens_completion"],
        "reasoning_tokens": r["native_tokens_reasoning"],
        "gateway_cost_usd": Decimal(r["total_cost"]),
        "gateway_cache_hit": False,
    }


def decode_cloudflare(r: dict[str, Any]) -> dict[str, Any]:
    meta = json.loads(r["metadata"])
    start = _ms(r["created_at"])
    return no_usage_if_zero(
        {
            "request_id": r["id"],
            "attempt": r["step"] + 1,
            "trace_id": None,
            "start": start,
            "end": start + r["duration"],
            "first": None,
            "provider": r["provider"],
            "model": r["model"],
            "status": _status_from_http(r["status_code"]),
            "feature": meta["feature"],
            "team": meta["team"],
            "user": meta["user"],
            "input_tokens": r["tokens_in"],
            "output_tokens": r["tokens_out"],
            "cache_read_tokens": None,
            "cache_write_tokens": None,
            "cache_write_1h_tokens": None,
            "reasoning_tokens": None,
            "gateway_cost_usd": Decimal(r["cost"]),
            "gateway_cache_hit": r["cached"],
        }
    )


def decode_otel(r: dict[str, Any]) -> dict[str, Any]:
    a = r["attributes"]
    ok = r["status"]["code"] == "STATUS_CODE_OK"
    system = {"gcp.vertex_ai": "google", "aws.bedrock": "aws"}.get(
        a["gen_ai.provider.name"], a["gen_ai.provider.name"]
    )
    assert a["gen_ai.system"] == a["gen_ai.provider.name"]
    return {
        "request_id": r["traceId"],
        "attempt": a.get("http.request.resend_count", 0) + 1,
        "trace_id": r["traceId"],
        "start": int(r["startTimeUnixNano"]) // 1_000_000,
        "end": int(r["endTimeUnixNano"]) // 1_000_000,
        "first": None,
        "provider": system,
        "model": a.get("gen_ai.response.model", a["gen_ai.request.model"]),
        "status": "success" if ok else "timeout" if a["error.type"] == "timeout" else "error",
        "feature": a["app.feature"],
        "team": a["app.team"],
        "user": a["user.id"],
        "service_tier": a.get("openai.response.service_tier"),
        "input_tokens": a.get("gen_ai.usage.input_tokens"),
        "cache_read_tokens": a.get("gen_ai.usage.cache_read.input_tokens"),
        "cache_write_tokens": a.get("gen_ai.usage.cache_creation.input_tokens"),
        "cache_write_1h_tokens": None,
        "output_tokens": a.get("gen_ai.usage.output_tokens"),
        "reasoning_tokens": a.get("gen_ai.usage.reasoning.output_tokens"),
    }


DECODERS = {
    "litellm": decode_litellm,
    "helicone": decode_helicone,
    "openrouter": decode_openrouter,
    "cloudflare": decode_cloudflare,
    "otel": decode_otel,
}
REQUIRED_FIELDS = {
    "litellm": {
        "request_id",
        "call_type",
        "api_key",
        "spend",
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
        "startTime",
        "endTime",
        "completionStartTime",
        "model",
        "model_group",
        "custom_llm_provider",
        "metadata",
        "cache_hit",
        "team_id",
        "status",
        "session_id",
        "end_user",
    },
    "helicone": {
        "request_id",
        "request_created_at",
        "provider",
        "model",
        "prompt_tokens",
        "prompt_cache_read_tokens",
        "prompt_cache_write_tokens",
        "completion_tokens",
        "delay_ms",
        "time_to_first_token",
        "cost",
        "request_properties",
        "response_status",
        "cache_reference_id",
    },
    "openrouter": {"data"},
    "cloudflare": {
        "id",
        "created_at",
        "provider",
        "model",
        "tokens_in",
        "tokens_out",
        "cost",
        "duration",
        "status_code",
        "success",
        "cached",
        "metadata",
        "step",
    },
    "otel": {
        "traceId",
        "spanId",
        "name",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "attributes",
        "status",
    },
}


def test_every_native_line_parses_and_decodes_back_to_the_truth(
    out: Path, manifest: dict[str, Any], truth: pl.DataFrame
) -> None:
    malformed = faulty_lines(manifest, "malformed")
    duplicates = faulty_lines(manifest, "duplicates")
    expected = {
        (r["request_id"], r["attempt"]): r
        for r in truth.with_columns(
            pl.col("started_at").dt.epoch("ms").alias("start"),
            pl.col("ended_at").dt.epoch("ms").alias("end"),
            pl.col("first_token_at").dt.epoch("ms").alias("first"),
            canonical_provider(pl.col("provider")).alias("provider"),
        ).iter_rows(named=True)
    }
    decoded_keys: Counter[str] = Counter()
    for gateway, pattern in GATEWAY_FILES.items():
        for d in days():
            rel = pattern.format(d.isoformat())
            if not (out / rel).exists():
                continue
            for n, line in enumerate((out / rel).read_text().splitlines(), start=1):
                if n in malformed[rel] or n in duplicates[rel]:
                    continue
                record = json.loads(line, parse_float=Decimal)
                assert REQUIRED_FIELDS[gateway] <= set(record), (rel, n)
                got = DECODERS[gateway](record)
                got["provider"] = _canonical(got["provider"])
                want = expected[(got["request_id"], got["attempt"])]
                for key, value in got.items():
                    assert value == want[key], (rel, n, key, value, want[key])
                assert want["gateway"] == gateway
                decoded_keys[gateway] += 1
    assert set(decoded_keys) == set(org.GATEWAYS)


@functools.cache
def _canonical(provider: str) -> str:
    return str(pl.select(canonical_provider(pl.lit(provider))).item())


def test_report_files_have_the_documented_shapes(out: Path) -> None:
    pages = load_json(out / "openai/usage-completions-2025-09.json")
    assert len(pages) >= 2 and pages[0]["has_more"] and pages[-1]["next_page"] is None
    result = pages[0]["data"][0]["results"][0]
    assert result["object"] == "organization.usage.completions.result"
    assert {
        "input_tokens",
        "input_cached_tokens",
        "output_tokens",
        "num_model_requests",
        "model",
        "batch",
        "service_tier",
        "project_id",
    } <= set(result)
    costs = load_json(out / "openai/costs-2025-09.json")
    item = costs[0]["data"][0]["results"][0]
    assert item["amount"]["currency"] == "usd" and isinstance(item["amount"]["value"], Decimal)
    usage = load_json(out / "anthropic/usage-2025-09.json")
    shapes = {
        "nested" if "cache_creation" in r else "flat"
        for p in usage
        for b in p["data"]
        for r in b["results"]
    }
    assert shapes == {"nested", "flat"}
    cost = load_json(out / "anthropic/cost-2025-09.json")[0]["data"][0]["results"][0]
    assert isinstance(cost["amount"], str) and cost["currency"] == "USD"
    assert cost["token_type"] in {t for t, _ in billing.ANTHROPIC_TYPE.values()}
    with (out / "aws/cur-2025-09.csv").open() as fh:
        cur = list(csv.DictReader(fh))
    assert list(cur[0]) == list(billing.CUR_COLUMNS)
    assert {r["line_item_line_item_type"] for r in cur} == {"Usage", "Tax", "Credit"}
    assert all(
        r["line_item_usage_type"].startswith("USE1-Claude")
        for r in cur
        if r["line_item_line_item_type"] == "Usage"
    )
    rows = [
        json.loads(line, parse_float=Decimal)
        for line in (out / "google/billing-2025-09.jsonl").read_text().splitlines()
    ]
    regular = [r for r in rows if r["cost_type"] == "regular"]
    assert regular and all(r["service"]["description"] == "Vertex AI" for r in rows)
    assert all(c["amount"] < 0 for r in regular for c in r["credits"])
    assert {r["invoice"]["month"] for r in rows} == {"202509"}
    with (out / "focus/focus-2025-09.csv").open() as fh:
        focus = list(csv.DictReader(fh))
    assert list(focus[0]) == list(billing.FOCUS_COLUMNS)
    assert {r["ChargeCategory"] for r in focus} >= {"Usage", "Credit", "Tax"}
    assert all(
        r["ConsumedQuantity"].endswith(".0") or "." in r["ConsumedQuantity"]
        for r in focus
        if r["ChargeCategory"] == "Usage"
    )
    assert all(r["ChargePeriodStart"].endswith("T00:00:00Z") for r in focus)


# --------------------------------------------------------------------------- provider reports
def _truth_sums(seen: pl.DataFrame, provider: str, columns: dict[str, pl.Expr]) -> dict:
    frame = (
        seen.filter((pl.col("provider") == provider) & (pl.col("modality") == "text"))
        .group_by("date", "billed")
        .agg(**{k: v.sum() for k, v in columns.items()})
    )
    return {
        (r["date"], r["billed"]): {k: r[k] for k in columns} for r in frame.iter_rows(named=True)
    }


def test_openai_usage_tokens_match_the_truth(out: Path, seen: pl.DataFrame) -> None:
    got: dict[tuple[dt.date, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for month in ("2025-09", "2025-10"):
        for page in load_json(out / f"openai/usage-completions-{month}.json"):
            for bucket in page["data"]:
                day = dt.datetime.fromtimestamp(bucket["start_time"], dt.UTC).date()
                for r in bucket["results"]:
                    g = got[(day, r["model"])]
                    g["input"] += r["input_tokens"]
                    g["cached"] += r["input_cached_tokens"]
                    g["output"] += r["output_tokens"]
                    g["requests"] += r["num_model_requests"]
                    assert (
                        r["input_uncached_tokens"] == r["input_tokens"] - r["input_cached_tokens"]
                    )
    want = _truth_sums(
        seen,
        "openai",
        {
            "input": pl.col("input_tokens"),
            "cached": pl.col("cache_read_tokens"),
            "output": pl.col("output_tokens"),
            "requests": pl.len(),
        },
    )
    assert {k: dict(v) for k, v in got.items()} == want


def test_anthropic_usage_tokens_match_the_truth(out: Path, seen: pl.DataFrame) -> None:
    got: dict[tuple[dt.date, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for month in ("2025-09", "2025-10"):
        for page in load_json(out / f"anthropic/usage-{month}.json"):
            for bucket in page["data"]:
                day = dt.date.fromisoformat(bucket["starting_at"][:10])
                for r in bucket["results"]:
                    if "cache_creation" in r:
                        w5 = r["cache_creation"]["ephemeral_5m_input_tokens"]
                        w1 = r["cache_creation"]["ephemeral_1h_input_tokens"]
                    else:
                        w5, w1 = (
                            r["cache_creation_5m_input_tokens"],
                            r["cache_creation_1h_input_tokens"],
                        )
                    g = got[(day, r["model"])]
                    g["input"] += (
                        r["uncached_input_tokens"] + r["cache_read_input_tokens"] + w5 + w1
                    )
                    g["read"] += r["cache_read_input_tokens"]
                    g["write_1h"] += w1
                    g["write"] += w5 + w1
                    g["output"] += r["output_tokens"]
    want = _truth_sums(
        seen,
        "anthropic",
        {
            "input": pl.col("input_tokens"),
            "read": pl.col("cache_read_tokens"),
            "write_1h": pl.col("cache_write_1h_tokens"),
            "write": pl.col("cache_write_tokens"),
            "output": pl.col("output_tokens"),
        },
    )
    assert {k: dict(v) for k, v in got.items()} == want


def test_cur_and_google_usage_match_the_truth(out: Path, seen: pl.DataFrame) -> None:
    suffix = {
        "input-tokens": "uncached",
        "output-tokens": "output",
        "cache-read-input-token-count": "read",
        "cache-write-input-token-count": "write",
    }
    tag = {m.bedrock_tag: m.resolved for m in org.MODELS if m.bedrock_tag}
    got: dict[tuple[dt.date, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for month in ("2025-09", "2025-10"):
        with (out / f"aws/cur-{month}.csv").open() as fh:
            for r in csv.DictReader(fh):
                if r["line_item_line_item_type"] != "Usage":
                    continue
                _, model_tag, kind = r["line_item_usage_type"].split("-", 2)
                day = dt.date.fromisoformat(r["line_item_usage_start_date"][:10])
                got[(day, tag[model_tag])][suffix[kind]] += int(r["line_item_usage_amount"])
                assert Decimal(r["line_item_usage_amount"]) * Decimal(
                    r["line_item_unblended_rate"]
                ) == Decimal(r["line_item_unblended_cost"])
    want = _truth_sums(
        seen,
        "aws",
        {
            "uncached": pl.col("input_tokens")
            - pl.col("cache_read_tokens")
            - pl.col("cache_write_tokens"),
            "read": pl.col("cache_read_tokens"),
            "write": pl.col("cache_write_tokens"),
            "output": pl.col("output_tokens"),
        },
    )
    assert {k: {n: v for n, v in g.items() if v} for k, g in got.items()} == {
        k: {n: v for n, v in g.items() if v} for k, g in want.items()
    }
    google_tokens: dict[str, int] = defaultdict(int)
    for month in ("2025-09", "2025-10"):
        for line in (out / f"google/billing-{month}.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["cost_type"] == "regular" and "Tokens" in r["sku"]["description"]:
                google_tokens[r["usage_start_time"][:10]] += r["usage"]["amount"]
    want_google = (
        seen.filter((pl.col("provider") == "google") & (pl.col("modality") == "text"))
        .group_by(pl.col("date").cast(pl.String))
        .agg((pl.col("input_tokens") + pl.col("output_tokens")).sum())
    )
    assert dict(google_tokens) == dict(want_google.iter_rows())


def test_cost_reports_equal_the_exact_reprice_totals(out: Path, seen: pl.DataFrame) -> None:
    want = {
        (d, p): Decimal(c)
        for d, p, c in seen.group_by("date", "provider").agg(pl.col("cost_usd").sum()).iter_rows()
    }
    openai: dict[dt.date, Decimal] = defaultdict(Decimal)
    anthropic: dict[dt.date, Decimal] = defaultdict(Decimal)
    for month in ("2025-09", "2025-10"):
        for page in load_json(out / f"openai/costs-{month}.json"):
            for bucket in page["data"]:
                day = dt.datetime.fromtimestamp(bucket["start_time"], dt.UTC).date()
                for r in bucket["results"]:
                    openai[day] += r["amount"]["value"]
        for page in load_json(out / f"anthropic/cost-{month}.json"):
            for bucket in page["data"]:
                day = dt.date.fromisoformat(bucket["starting_at"][:10])
                for r in bucket["results"]:
                    anthropic[day] += Decimal(r["amount"]) / 100
    for d in days():
        assert openai[d] == want[(d, "openai")]  # exact, not just to the cent
        assert anthropic[d] == want[(d, "anthropic")]


def test_invoices_sum_to_the_month_cost_to_the_cent(
    out: Path, manifest: dict[str, Any], seen: pl.DataFrame
) -> None:
    mismatch = {m["provider"]: m for m in manifest["faults"]["invoice_mismatch"]}
    month_cost = {
        (m, p): Decimal(c)
        for m, p, c in seen.group_by(pl.col("date").dt.strftime("%Y-%m"), "provider")
        .agg(pl.col("cost_usd").sum())
        .iter_rows()
    }
    assert {p for _, p in month_cost} >= {"openai", "anthropic", "google", "aws", "openrouter"}
    for (month, provider), cost in month_cost.items():
        rel = f"invoices/invoice-{provider}-{month}.csv"
        with (out / rel).open() as fh:
            reader = csv.DictReader(fh)
            assert reader.fieldnames == list(INVOICE_LINE_SCHEMA.names())
            rows = list(reader)
        usage = sum(Decimal(r["amount_usd"]) for r in rows if r["charge_category"] == "usage")
        expected = billing.round_cent(cost)
        if provider in mismatch and mismatch[provider]["file"] == rel:
            expected += Decimal(mismatch[provider]["amount"])
        assert usage == expected, rel
        assert [r["charge_category"] for r in rows][-2:] == ["credit", "tax"]
        assert all(len(r["amount_usd"].split(".")[1]) == 2 for r in rows)
        summary = manifest["totals"]["by_month_provider"][month][provider]
        assert Decimal(summary["usage_exact_usd"]) == cost
        assert Decimal(rows[-2]["amount_usd"]) == Decimal(summary["credit_usd"]) <= 0


def test_manifest_totals_are_exact(manifest: dict[str, Any], priced: pl.DataFrame) -> None:
    want = priced.group_by(pl.col("started_at").dt.date(), "provider").agg(pl.col("cost_usd").sum())
    for d, p, c in want.iter_rows():
        assert Decimal(manifest["totals"]["by_day_provider"][d.isoformat()][p]["cost_usd"]) == c
    assert Decimal(manifest["totals"]["cost_usd"]) == priced["cost_usd"].sum()


# --------------------------------------------------------------------------- faults
def test_injected_faults_are_where_the_manifest_says(
    out: Path, manifest: dict[str, Any], truth: pl.DataFrame
) -> None:
    faults = manifest["faults"]
    assert faults["spec"] == FAULTS.describe()
    kinds = Counter(m["kind"] for m in faults["malformed"])
    assert set(kinds) == {"truncated_json", "wrong_type", "negative_tokens"}
    cache: dict[str, list[str]] = {}

    def line(rel: str, n: int) -> str:
        if rel not in cache:
            cache[rel] = (out / rel).read_text().splitlines()
        return cache[rel][n - 1]

    for m in faults["malformed"]:
        text = line(m["file"], m["line"])
        if m["kind"] == "truncated_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
        else:
            record = json.loads(text)
            flat = record.get("data", record)
            value = flat.get(m["field"], flat.get("attributes", {}).get(m["field"]))
            if m["kind"] == "wrong_type":
                assert isinstance(value, str) and value.endswith(" tokens")
            else:
                assert isinstance(value, int) and value < 0
    for dup in faults["duplicates"]:
        assert line(dup["file"], dup["line"]) == line(dup["file"], dup["original_line"])
    assert len(faults["duplicates"]) >= len(GATEWAY_FILES) * DAYS - 1
    (missing,) = faults["missing_logs"]
    assert (
        missing["rows_missing"]
        == truth.filter(
            (pl.col("gateway") == "cloudflare")
            & (pl.col("started_at").dt.date() == dt.date(2025, 9, 30))
        ).height
        > 0
    )
    (spike,) = faults["spikes"]
    assert spike["extra_requests"] == round(1.5 * spike["baseline_requests"]) > 0
    (mm,) = faults["invoice_mismatch"]
    with (out / mm["file"]).open() as fh:
        rows = list(csv.reader(fh))
    assert rows[mm["csv_line"] - 1][4] == mm["line_id"]
    assert Decimal(mm["new_amount"]) - Decimal(mm["original_amount"]) == Decimal("7.50")


def test_spike_adds_traffic_without_touching_the_rest(tmp_path: Path) -> None:
    base = generate(tmp_path / "a", 2, 600, 3, dt.date(2025, 10, 1), FaultSpec()).data
    spiked = generate(
        tmp_path / "b",
        2,
        600,
        3,
        dt.date(2025, 10, 1),
        FaultSpec(spikes=(Spike("code-review", dt.date(2025, 10, 2), 4.0),)),
    ).data

    def feature_requests(root: Path) -> int:
        t = pl.read_parquet(root / "canonical/requests-2025-10-02.parquet")
        return t.filter((pl.col("feature") == "code-review") & (pl.col("attempt") == 1)).height

    (record,) = spiked["faults"]["spikes"]
    assert record["extra_requests"] == 3 * record["baseline_requests"] > 0
    assert feature_requests(tmp_path / "b") > 2.5 * feature_requests(tmp_path / "a")
    # The spike's requests come from their own random stream: the rest is unchanged.
    a = pl.read_parquet(tmp_path / "a/canonical/requests-2025-10-01.parquet")
    b = pl.read_parquet(tmp_path / "b/canonical/requests-2025-10-01.parquet")
    assert a.equals(b)
    assert base["counts"]["attempts"] < spiked["counts"]["attempts"]


# --------------------------------------------------------------------------- CLI
def test_generate_from_args_parses_fault_options(tmp_path: Path) -> None:
    data = generate_from_args(
        1,
        120,
        9,
        tmp_path,
        "2025-10-01",
        spikes=["chat-assistant:0:2"],
        missing=["otel:2025-10-01"],
        mismatch=["openai:-3.21"],
        duplicates="0.01",
        malformed=0.01,
    )
    assert data["faults"]["spec"] == {
        "spikes": [{"feature": "chat-assistant", "date": "2025-10-01", "multiplier": 2.0}],
        "missing_logs": [{"gateway": "otel", "date": "2025-10-01"}],
        "invoice_mismatch": [{"provider": "openai", "amount": "-3.21"}],
        "duplicate_rate": 0.01,
        "malformed_rate": 0.01,
    }
    assert not (tmp_path / "otel/spans-2025-10-01.jsonl").exists()
    for bad, message in (
        ({"spikes": ["chat:0"]}, "--spike"),
        ({"spikes": ["nope:0:2"]}, "unknown feature"),
        ({"missing": ["otel:2030-01-01"]}, "outside"),
        ({"mismatch": ["openai:abc"]}, "--invoice-mismatch"),
        ({"duplicates": "2"}, "--duplicates"),
        ({"start": "yesterday"}, "--start"),
    ):
        with pytest.raises(UsageError, match=message):
            generate_from_args(1, 10, 1, tmp_path / "x", **bad)


def test_main_reports_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--days", "1"]) == 2
    assert "--requests-per-day is required" in capsys.readouterr().err
    assert main(["--days", "x", "--requests-per-day", "1", "--seed", "1", "--out", "o"]) == 2
