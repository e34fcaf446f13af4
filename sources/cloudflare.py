"""Cloudflare AI Gateway logs (`GET /accounts/{account}/ai-gateway/gateways/{gateway}/logs`).

Grain: one row per log entry, i.e. per upstream call the gateway made. With fallbacks
(universal endpoint), each step is its own entry; `step` is 0-based, so attempt = step + 1.
Units: tokens; `cost` in USD (Cloudflare's estimate, or a `custom_cost` the caller set), kept
as gateway_cost_usd only; `duration` in milliseconds.
Accepted: JSONL (one log per line), a JSON list, or an API page `{"result": [...]}`.
Quirks:
- `tokens_in` / `tokens_out` are the provider's prompt and completion counts as the gateway
  saw them. There is NO cache or reasoning split: cache_read/cache_write/reasoning stay null
  (unknown), so cached prompt tokens are priced at the full input rate (an upper bound) and
  cached-input pricing cannot be reproduced from these logs alone. For Anthropic the count
  may also leave the cache out (Anthropic's own `input_tokens` semantics); that cannot be
  seen in the log either. input_tokens = tokens_in, output_tokens = tokens_out.
- `cached` true = served from the gateway cache: gateway_cache_hit (the provider was never
  called; repricing makes it free).
- Status from `status_code` (2xx success, 408/504 timeout, 499 cancelled, anything else
  error, 4xx included: see `sources.base.http_status`); without a code, `success`
  false -> error.
- `metadata` is a JSON string (`cf-aig-metadata` header; an object is accepted too):
  feature, team, user and api_key_id come from it. A key id is hashed `sha256:...`.
- `provider` is Cloudflare's slug: workers-ai -> cloudflare (genai-prices lists Workers AI
  models, `@cf/...`, under `cloudflare`), aws-bedrock -> aws, google-vertex-ai and
  google-ai-studio -> google, azure-openai -> azure, perplexity-ai -> perplexity,
  grok -> x-ai. The unified `compat` endpoint logs `provider/model`: the provider is taken
  from the model prefix and the model is kept as logged.
- `created_at` is when the request reached the gateway; ended_at = created_at + duration.
- modality from `model_type` / `path`: embeddings, image, speech/audio; else text.
- 0 tokens in and 0 out (a stream without usage, an error) is usage missing: null.
- Logpush `ai_gateway_events` records carry no request id and no token counts: not read here.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import (
    SourceContext,
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
)
from transforms.expressions import flag_if
from transforms.schema import UTC_DATETIME, canonical_provider

KIND = "cloudflare"
PROVIDERS = {
    "workers-ai": "cloudflare",
    "workers_ai": "cloudflare",
    "aws-bedrock": "aws",
    "google-vertex-ai": "google",
    "perplexity-ai": "perplexity",
}
MODALITY = (
    ("embed", "embedding"),
    ("image", "image"),
    ("speech", "audio"),
    ("audio", "audio"),
    ("transcri", "audio"),
    ("video", "video"),
)


_S, _I = pl.String, pl.Int64
# Every field to_canonical reads, typed as the logs API returns them, for the vectorized JSONL
# reader (sources.jsonl_fast); `metadata` is the header's JSON text. A line with other types
# (metadata as an object, say) is read more slowly, never differently.
FIELDS = pl.Struct(
    {
        **dict.fromkeys(
            ("id", "model", "provider", "created_at", "model_type", "path", "metadata"), _S
        ),
        **dict.fromkeys(("step", "duration", "status_code", "tokens_in", "tokens_out"), _I),
        "success": pl.Boolean,
        "cached": pl.Boolean,
        "cost": pl.Float64,
    }
)


def read(path: Path) -> pl.DataFrame:
    return read_records(path, records_key="result")


def _modality(text: pl.Expr) -> pl.Expr:
    expr: pl.Expr = pl.lit("text")
    for needle, modality in reversed(MODALITY):
        expr = (
            pl.when(text.str.contains(needle, literal=True).fill_null(False))
            .then(pl.lit(modality))
            .otherwise(expr)
        )
    return expr


def to_canonical(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()
    v = lambda *p: value(s, *p)  # noqa: E731
    c = pl.col
    meta = lambda *keys: first_value(s, *[("metadata", k) for k in keys])  # noqa: E731
    started_dtype = raw_dtype(s, "created_at")
    lf = staged(
        raw,
        {
            "_c_model": as_text(v("model")),
            "_c_slug": canonical_provider(as_text(v("provider"))).replace(PROVIDERS),
            "_c_step": v("step"),
            "_c_success": as_text(v("success")).str.to_lowercase(),
            "_c_cached": as_text(v("cached")).str.to_lowercase(),
            "_c_start": v("created_at"),
            "_c_duration": v("duration"),
            "_c_code": v("status_code"),
        },
        {
            "_c_prefix": c("_c_model").str.extract(r"^([^/@][^/]*)/", 1).str.to_lowercase(),
            "_c_step_int": as_int(c("_c_step")),
            "_c_started": as_utc(c("_c_start"), started_dtype, ctx.timezone),
            "_c_http_status": http_status(c("_c_code")),
        },
        {"_c_ended_at": plus_ms(c("_c_started"), c("_c_duration"))},
    )
    provider = (
        pl.when(c("_c_slug").is_in(["compat", "universal"]) & c("_c_prefix").is_not_null())
        .then(canonical_provider(c("_c_prefix")).replace(PROVIDERS))
        .otherwise(c("_c_slug"))
    )
    success = c("_c_success")
    status = pl.coalesce(
        c("_c_http_status"),
        pl.when(success.is_in(["false", "0"])).then(pl.lit("error")),
        pl.when(success.is_in(["true", "1"])).then(pl.lit("success")),
        pl.when(success.is_not_null()).then(pl.lit("unreadable")),
    )
    values = {
        "request_id": v("id"),
        "attempt": c("_c_step_int") + 1,
        "gateway": pl.lit(KIND),
        "provider": provider,
        "model": c("_c_model"),
        "feature": meta("feature", "app.feature"),
        "team": meta("team", "app.team"),
        "user": meta("user", "user_id"),
        "api_key_id": hashed_key(meta("api_key_id", "api_key", "key_id")),
        "status": status,
        "modality": _modality(
            pl.concat_str(
                [as_text(v("model_type")), as_text(v("path"))], separator=" ", ignore_nulls=True
            ).str.to_lowercase()
        ),
        "input_tokens": v("tokens_in"),
        "output_tokens": v("tokens_out"),
        "gateway_cost_usd": v("cost"),
        "gateway_cache_hit": c("_c_cached").is_in(["true", "1"]),
    }
    timestamps = {
        "started_at": (c("_c_start"), started_dtype),
        "ended_at": (c("_c_ended_at"), UTC_DATETIME),
    }
    extra = [
        bad_duration(c("_c_duration"), "ended_at"),
        bad_value(c("_c_step"), c("_c_step_int"), "attempt"),
        flag_if(c("_c_step_int") < 0, "invalid_value:attempt"),
        flag_if(
            c("_c_cached").is_not_null() & ~c("_c_cached").is_in(["true", "false", "1", "0"]),
            "invalid_value:gateway_cache_hit",
        ),
    ]
    return assemble_staged(lf, ctx, values, timestamps, extra)
