"""Helicone request exports (`POST /v1/request/query-clickhouse`, `npx @helicone/export`).

Grain: one row per request Helicone proxied or logged (Helicone logs the upstream call; its
own retries are not separate rows, so `attempt` is always 1).
Units: tokens; `cost` (legacy duplicate `costUSD`) in USD, Helicone's own estimate, kept as
gateway_cost_usd only; `delay_ms` and `time_to_first_token` in milliseconds.
Accepted: JSONL (one HeliconeRequest per line), a JSON list or `{"data": [...]}` API page, CSV
(nested fields as JSON text).
Quirks:
- `prompt_tokens` follows the provider's usage object, so its meaning depends on `provider`:
  * ANTHROPIC (and Claude models behind BEDROCK/AWS or VERTEX/GOOGLE, which return Anthropic's
    usage object): `prompt_tokens` is Anthropic `input_tokens` and EXCLUDES cache reads and
    writes. Canonical input_tokens = prompt + prompt_cache_read + prompt_cache_write.
  * every other provider (OPENAI, AZURE, ...): `prompt_tokens` is OpenAI `prompt_tokens` and
    INCLUDES the cached tokens (`prompt_cache_read_tokens` is a subset of it).
  Newer Helicone versions store OpenAI's prompt count with cached and audio tokens taken out
  (they price those buckets separately). Such rows are recognised, for non-Anthropic
  providers only, by `total_tokens` = prompt + cache + audio + completion (where the older
  form has total = prompt + completion), or by cache tokens above the prompt count (which an
  including count cannot have); the buckets are then added back. Anthropic rows are never
  re-read this way: Helicone's Anthropic `total_tokens` omits the cache in some versions.
- `completion_tokens` includes reasoning (no separate reasoning column in the export; a
  `reasoning_tokens` column is read when present).
- `response_status` is the HTTP status: 2xx success, 408/504 timeout, 499 (client closed)
  cancelled, any other code error (4xx included: see `http_status`). Helicone writes 0 or
  negative codes for requests that never got an HTTP response (pending, aborted, network
  failure): error.
- A non-null, non-zero `cache_reference_id` (or `cached` = true) means the response was
  served from Helicone's cache: gateway_cache_hit, the provider was never called.
- feature / team / session come from `request_properties` (the `Helicone-Property-*`
  headers; `properties` in older exports), as an object or as JSON text.
- A stream that never reported usage logs null (or 0 and 0) tokens: usage missing, null.
- `provider` is upper-case (`OPENAI`, `ANTHROPIC`, `BEDROCK`, `X`, ...): lower-cased and
  mapped to genai-prices ids. `model` is Helicone's resolved model (response model or
  override); the request model is the fallback.
- Proxy key ids (`proxy_key_id`, `api_key_id`) are hashed `sha256:...`; any key-like secret
  in the verbatim record is redacted before it can reach the quarantine.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import (
    ZERO_UUID,
    SourceContext,
    anthropic_usage,
    as_int,
    as_text,
    as_utc,
    assemble_staged,
    bad_duration,
    bad_value,
    first_value,
    hashed_key,
    http_status,
    plus_ms,
    raw_dtype,
    read_records,
    staged,
    value,
    with_cache,
)
from transforms.expressions import flag_if
from transforms.schema import UTC_DATETIME, canonical_provider

KIND = "helicone"

# --------------------------------------------------------------------------- adapter
PROVIDERS = {"x": "x-ai", "vertex": "google", "vertex_ai": "google", "openai_compatible": "openai"}
PATH_MODALITY = (
    (r"/embeddings", "embedding"),
    (r"/images/", "image"),
    (r"/audio/", "audio"),
    (r"/videos", "video"),
)


_S, _I = pl.String, pl.Int64
_PROPERTIES = pl.Struct(
    dict.fromkeys(
        ("Helicone-Session-Id", "helicone-session-id", "session_id", "feature", "Feature",
         "team", "Team"),
        _S,
    )
)  # fmt: skip
# Every field to_canonical reads, typed as Helicone exports them, for the vectorized JSONL
# reader (sources.jsonl_fast); a line with other types is read more slowly, never differently.
FIELDS = pl.Struct(
    {
        **dict.fromkeys(
            ("request_id", "provider", "model", "response_model", "model_override",
             "request_model", "request_created_at", "response_created_at", "cache_reference_id",
             "request_user_id", "helicone_user", "user_id", "api_key_id", "proxy_key_id",
             "request_path", "target_url"),
            _S,
        ),
        **dict.fromkeys(
            ("prompt_tokens", "completion_tokens", "prompt_cache_read_tokens",
             "prompt_cache_write_tokens", "prompt_audio_tokens", "completion_audio_tokens",
             "total_tokens", "reasoning_tokens", "delay_ms", "time_to_first_token",
             "response_status", "status"),
            _I,
        ),
        "cost": pl.Float64,
        "costUSD": pl.Float64,
        "cached": pl.Boolean,
        "request_properties": _PROPERTIES,
        "properties": _PROPERTIES,
    }
)  # fmt: skip


def read(path: Path) -> pl.DataFrame:
    return read_records(path, records_key="data")


def _modality(path_text: pl.Expr) -> pl.Expr:
    expr: pl.Expr = pl.lit("text")
    for pattern, modality in reversed(PATH_MODALITY):
        expr = (
            pl.when(path_text.str.contains(pattern).fill_null(False))
            .then(pl.lit(modality))
            .otherwise(expr)
        )
    return expr


def to_canonical(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()
    v = lambda *p: value(s, *p)  # noqa: E731
    c = pl.col
    prop = lambda *keys: first_value(  # noqa: E731
        s, *[(col, k) for col in ("request_properties", "properties") for k in keys]
    )
    started_dtype = raw_dtype(s, "request_created_at")
    ended_dtype = raw_dtype(s, "response_created_at")
    f = lambda name: c(name).cast(pl.Float64)  # noqa: E731
    lf = staged(
        raw,
        {  # raw values
            "_h_provider": canonical_provider(as_text(v("provider"))).replace(PROVIDERS),
            "_h_model": first_value(
                s, ("model",), ("response_model",), ("model_override",), ("request_model",)
            ),
            "_h_prompt": v("prompt_tokens"),
            "_h_completion": v("completion_tokens"),
            "_h_cache_read": v("prompt_cache_read_tokens"),
            "_h_cache_write": v("prompt_cache_write_tokens"),
            "_h_audio_in": v("prompt_audio_tokens"),
            "_h_audio_out": v("completion_audio_tokens"),
            "_h_total": v("total_tokens"),
            "_h_start": v("request_created_at"),
            "_h_end": v("response_created_at"),
            "_h_delay": v("delay_ms"),
            "_h_ttft": v("time_to_first_token"),
            "_h_cache_ref": as_text(v("cache_reference_id")),
            "_h_cached": as_text(v("cached")).str.to_lowercase(),
        },
        {  # parsed
            "_h_p": as_int(c("_h_prompt")),
            "_h_c": as_int(c("_h_completion")),
            "_h_cr": as_int(c("_h_cache_read")),
            "_h_cw": as_int(c("_h_cache_write")),
            "_h_ai": as_int(c("_h_audio_in")),
            "_h_ao": as_int(c("_h_audio_out")),
            "_h_t": as_int(c("_h_total")),
            "_h_started": as_utc(c("_h_start"), started_dtype, ctx.timezone),
            "_h_ended": as_utc(c("_h_end"), ended_dtype, ctx.timezone),
            "_h_anthropic": anthropic_usage(c("_h_provider"), c("_h_model")),
        },
        {
            "_h_cache": c("_h_cr").fill_null(0) + c("_h_cw").fill_null(0),
            "_h_audio": c("_h_ai").fill_null(0) + c("_h_ao").fill_null(0),
        },
        {  # did Helicone take the cache (and audio) buckets out of prompt_tokens?
            "_h_excluded": pl.when(c("_h_anthropic"))
            .then(True)
            .when((c("_h_cache") + c("_h_audio")) == 0)
            .then(False)
            .when(f("_h_t") == f("_h_p") + f("_h_cache") + f("_h_audio") + f("_h_c"))
            .then(True)
            .when(f("_h_t") == f("_h_p") + f("_h_c"))
            .then(False)
            .when(c("_h_cache") > c("_h_p"))
            .then(True)
            .otherwise(False),
        },
        {
            "_h_input": with_cache(
                c("_h_p"), [c("_h_cr"), c("_h_cw"), c("_h_ai")], c("_h_excluded")
            ),
            "_h_output": with_cache(c("_h_c"), [c("_h_ao")], c("_h_excluded")),
            "_h_ended_at": pl.coalesce(c("_h_ended"), plus_ms(c("_h_started"), c("_h_delay"))),
            "_h_first_token_at": plus_ms(c("_h_started"), c("_h_ttft")),
        },
    )
    values = {
        "request_id": v("request_id"),
        "trace_id": prop("Helicone-Session-Id", "helicone-session-id", "session_id"),
        "gateway": pl.lit(KIND),
        "provider": c("_h_provider"),
        "model": c("_h_model"),
        "feature": prop("feature", "Feature"),
        "team": prop("team", "Team"),
        "user": first_value(s, ("request_user_id",), ("helicone_user",), ("user_id",)),
        "api_key_id": hashed_key(first_value(s, ("api_key_id",), ("proxy_key_id",))),
        "status": http_status(first_value(s, ("response_status",), ("status",))),
        "modality": _modality(
            pl.coalesce(as_text(v("request_path")), as_text(v("target_url"))).str.to_lowercase()
        ),
        "input_tokens": c("_h_input"),
        "cache_read_tokens": c("_h_cache_read"),
        "cache_write_tokens": c("_h_cache_write"),
        "output_tokens": c("_h_output"),
        "reasoning_tokens": v("reasoning_tokens"),
        "gateway_cost_usd": pl.coalesce(as_text(v("cost")), as_text(v("costUSD"))),
        "gateway_cache_hit": (c("_h_cache_ref").is_not_null() & (c("_h_cache_ref") != ZERO_UUID))
        | c("_h_cached").is_in(["true", "1"]),
    }
    timestamps = {
        "started_at": (c("_h_start"), started_dtype),
        "first_token_at": (c("_h_first_token_at"), UTC_DATETIME),
        "ended_at": (c("_h_ended_at"), UTC_DATETIME),
    }
    extra = [
        bad_value(c("_h_prompt"), c("_h_p"), "input_tokens"),
        bad_value(c("_h_completion"), c("_h_c"), "output_tokens"),
        bad_value(c("_h_audio_in"), c("_h_ai"), "input_tokens"),
        bad_value(c("_h_audio_out"), c("_h_ao"), "output_tokens"),
        bad_value(c("_h_total"), c("_h_t"), "total_tokens"),
        flag_if(c("_h_end").is_not_null() & c("_h_ended").is_null(), "invalid_timestamp:ended_at"),
        bad_duration(c("_h_delay"), "ended_at"),
        bad_duration(c("_h_ttft"), "first_token_at"),
        flag_if(
            c("_h_cached").is_not_null() & ~c("_h_cached").is_in(["true", "false", "1", "0"]),
            "invalid_value:gateway_cache_hit",
        ),
    ]
    return assemble_staged(lf, ctx, values, timestamps, extra)
