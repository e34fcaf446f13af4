"""OpenRouter generation records (`GET /api/v1/generation?id=gen-...`), collected as JSONL.

Grain: one row per generation (`id`, gen-...). OpenRouter retries and falls back across
upstream providers inside one generation; `provider_responses` lists those upstream calls
and the record's usage belongs to the last one, so `attempt` = the number of upstream
responses (1 when the list is absent or empty). Earlier failed attempts produced no usage
and are not separate rows.
Units: tokens; `total_cost` in USD (OpenRouter's charge, kept as gateway_cost_usd only);
`latency` / `generation_time` in milliseconds.
Accepted: one generation per line, bare or wrapped as the API returns it (`{"data": {...}}`),
or a JSON document (a list, or `{"data": [...]}`).
Quirks:
- Tokens: `tokens_*` are OpenRouter's normalized (GPT-tokenizer) counts; `native_tokens_*`
  are the provider's own counts, which billing uses, so we reprice on `native_*` only
  (a record without them has usage missing, never the normalized estimate).
  `native_tokens_prompt` INCLUDES the cached tokens: OpenRouter reports every provider's
  usage in OpenAI's shape (prompt = all prompt tokens, `cached_tokens` a subset), and the
  reference example (prompt 10, cached 3) is consistent with that. So input_tokens =
  native_tokens_prompt and cache_read_tokens = native_tokens_cached. Cache writes are not
  reported: cache_write_tokens stays null (Anthropic cache writes are priced as plain
  input). `native_tokens_completion` includes reasoning: output_tokens as is,
  reasoning_tokens = native_tokens_reasoning.
- provider is always `openrouter` (we pay OpenRouter, at OpenRouter's prices, which
  genai-prices lists under provider `openrouter` with ids like `anthropic/claude-sonnet-4.5`);
  `model` is kept as logged, the upstream `provider_name` is not the biller.
- Status: `cancelled` true -> cancelled; else the last upstream HTTP status (2xx success,
  408/504 timeout, 499 cancelled, anything else error: see `sources.base.http_status`);
  else `finish_reason` `error` -> error; else success.
- Times: `created_at` is when the generation started. `latency` is the time to the first
  token (what OpenRouter's dashboards call latency) and `generation_time` the time spent
  generating after it: first_token_at = created_at + latency, ended_at = created_at +
  (latency or 0) + generation_time; with no generation_time, ended_at = created_at +
  latency. (The SDK reference calls `latency` "total latency"; the example there, latency
  1250 = generation 1200 + moderation 50, fits both readings. Only the latency columns
  depend on it: started_at, and so the day and the price date, does not.)
- `service_tier` standard/auto/default -> default; `data_region` europe -> eu, us -> us
  (global: none); `api_type` embeddings -> embedding, tts/stt/speech/transcription -> audio,
  image -> image, video -> video, else text.
- user = `external_user`; session_id -> trace_id; feature/team from a `metadata` object
  when present. No key is logged; an `api_key_id`/`api_key`, if any, is hashed.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from sources.base import (
    SourceContext,
    _assemble,
    as_text,
    as_utc,
    assemble_staged,
    bad_duration,
    first_value,
    hashed_key,
    http_status,
    plus_ms,
    raw_dtype,
    read_records,
    scalar,
    staged,
    value,
)
from transforms.expressions import flag_if
from transforms.schema import UTC_DATETIME

KIND = "openrouter"
TIERS = {"standard": "default", "auto": "default", "default": "default", "on_demand": "default"}
REGIONS = {"europe": "eu", "eu": "eu", "us": "us"}
API_MODALITY = (
    ("embed", "embedding"),
    ("tts", "audio"),
    ("stt", "audio"),
    ("speech", "audio"),
    ("transcri", "audio"),
    ("audio", "audio"),
    ("image", "image"),
    ("video", "video"),
)


def _unwrapped(text: str) -> str | None:
    """The inner object of a `{"data": {...}}` line, as JSON text; None when not wrapped."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("data"), dict):
        return json.dumps(obj["data"], separators=(",", ":"))
    return None


def read(path: Path) -> pl.DataFrame:
    raw = read_records(path, records_key="data")
    if "data" not in raw.columns:
        return raw
    lines = raw["_line"].to_list()
    records = raw["_record"].to_list()
    errors = raw["_parse_error"].to_list()
    inner = [None if e is not None else _unwrapped(r) for r, e in zip(records, errors, strict=True)]
    texts = [i if i is not None else r for i, r in zip(inner, records, strict=True)]
    # Fields from the unwrapped objects; `_record` stays the line as delivered.
    frame = _assemble(lines, texts, errors)
    return frame.with_columns(pl.Series("_record", records, dtype=pl.String))


def _attempt(schema: pl.Schema) -> pl.Expr:
    if "provider_responses" not in schema:
        return pl.lit(None, pl.Int64)
    dtype = schema["provider_responses"]
    col = pl.col("provider_responses")
    if isinstance(dtype, pl.List):
        count = col.list.len()
    elif dtype == pl.String:
        count = col.str.count_matches(r"\{")
    else:
        return pl.lit(None, pl.Int64)
    return pl.when(count > 0).then(count).cast(pl.Int64)


def _last_status(schema: pl.Schema) -> pl.Expr:
    if "provider_responses" not in schema:
        return pl.lit(None, pl.String)
    dtype = schema["provider_responses"]
    col = pl.col("provider_responses")
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        fields = {f.name: f.dtype for f in dtype.inner.fields}
        if "status" not in fields:
            return pl.lit(None, pl.String)
        return scalar(col.list.last().struct.field("status"), fields["status"]).cast(pl.String)
    if dtype == pl.String:
        # JSON text (conflicting shapes across lines): the last status value as written.
        last = col.str.extract_all(r"\"status\"\s*:\s*[^,}\]]+").list.last()
        return last.str.replace(r"^\"status\"\s*:\s*", "").str.strip_chars(' "')
    return pl.lit(None, pl.String)


def _modality(api_type: pl.Expr) -> pl.Expr:
    expr: pl.Expr = pl.lit("text")
    for needle, modality in reversed(API_MODALITY):
        expr = (
            pl.when(api_type.str.contains(needle, literal=True).fill_null(False))
            .then(pl.lit(modality))
            .otherwise(expr)
        )
    return expr


def to_canonical(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()
    v = lambda *p: value(s, *p)  # noqa: E731
    c = pl.col
    started_dtype = raw_dtype(s, "created_at")
    lf = staged(
        raw,
        {
            "_o_start": v("created_at"),
            "_o_latency": v("latency"),
            "_o_generation": v("generation_time"),
            "_o_cancelled": as_text(v("cancelled")).str.to_lowercase(),
            "_o_finish": as_text(v("finish_reason")).str.to_lowercase(),
            "_o_last_status": _last_status(s),
        },
        {
            "_o_started": as_utc(c("_o_start"), started_dtype, ctx.timezone),
            "_o_http_status": http_status(c("_o_last_status")),
        },
        {
            "_o_first_token_at": plus_ms(c("_o_started"), c("_o_latency")),
            "_o_ended_at": pl.when(as_text(c("_o_generation")).is_null())
            .then(plus_ms(c("_o_started"), c("_o_latency")))
            .otherwise(
                plus_ms(
                    plus_ms(c("_o_started"), pl.coalesce(as_text(c("_o_latency")), pl.lit("0"))),
                    c("_o_generation"),
                )
            ),
        },
    )
    status = (
        pl.when(c("_o_cancelled").is_in(["true", "1"]))
        .then(pl.lit("cancelled"))
        .otherwise(
            pl.coalesce(
                c("_o_http_status"),
                pl.when(c("_o_finish") == "error").then(pl.lit("error")),
                pl.lit("success"),
            )
        )
    )
    values = {
        "request_id": v("id"),
        "attempt": _attempt(s),
        "trace_id": v("session_id"),
        "gateway": pl.lit(KIND),
        "provider": pl.lit("openrouter"),
        "model": v("model"),
        "region": as_text(v("data_region"))
        .str.to_lowercase()
        .replace_strict(REGIONS, default=None, return_dtype=pl.String),
        "service_tier": as_text(v("service_tier")).str.to_lowercase().replace(TIERS),
        "feature": first_value(s, ("metadata", "feature"), ("metadata", "app.feature")),
        "team": first_value(s, ("metadata", "team"), ("metadata", "app.team")),
        "user": v("external_user"),
        "api_key_id": hashed_key(first_value(s, ("api_key_id",), ("api_key",))),
        "status": status,
        "modality": _modality(as_text(v("api_type")).str.to_lowercase()),
        "input_tokens": v("native_tokens_prompt"),
        "cache_read_tokens": v("native_tokens_cached"),
        "output_tokens": v("native_tokens_completion"),
        "reasoning_tokens": v("native_tokens_reasoning"),
        "gateway_cost_usd": v("total_cost"),
    }
    timestamps = {
        "started_at": (c("_o_start"), started_dtype),
        "first_token_at": (c("_o_first_token_at"), UTC_DATETIME),
        "ended_at": (c("_o_ended_at"), UTC_DATETIME),
    }
    extra = [
        bad_duration(c("_o_latency"), "first_token_at"),
        bad_duration(c("_o_generation"), "ended_at"),
        flag_if(
            c("_o_cancelled").is_not_null() & ~c("_o_cancelled").is_in(["true", "false", "1", "0"]),
            "invalid_value:status",
        ),
    ]
    return assemble_staged(lf, ctx, values, timestamps, extra)
