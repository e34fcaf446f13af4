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

The shared gateway helpers below (value access that never fails on nested values, HTTP
status mapping, key hashing, secret redaction) are used by the other gateway adapters too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from sources.base import (
    SourceContext,
    as_float,
    as_int,
    as_text,
    as_utc,
    assemble,
    bad_value,
    first_value,
    raw_dtype,
    read_records,
    value,
)
from transforms.expressions import flag_if
from transforms.schema import TOKEN_COLUMNS, UTC_DATETIME, canonical_provider

KIND = "helicone"

# --------------------------------------------------------------------------- shared helpers
# API keys of OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), OpenRouter (sk-or-), Helicone
# (sk-helicone-, pk-helicone-) and the like.
KEY_PATTERN = r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}"
REDACTED = "[redacted-key]"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
# At most ~116 days in milliseconds: anything larger is not a latency.
MAX_DURATION_MS = 10_000_000_000


def http_status(code_raw: pl.Expr) -> pl.Expr:
    """Canonical status from an HTTP status code; null when there is none, and the
    (invalid) text `unreadable` when a code is present but is not a whole number.

    2xx success; 408 and 504 timeout; 499 (client closed the connection) cancelled; every
    other code error. 4xx is deliberately `error`, not `rejected`: a 400, 401 or 429 is a
    failed call exactly like a 500 as far as cost goes (nothing generated, nothing billed),
    the logs cannot tell a policy refusal from a client bug, and LiteLLM's `failure` (and
    the generated ground truth) call a 429 an error. `rejected` is left to sources that say
    explicitly that the gateway refused a request before calling the provider."""
    code = as_int(code_raw)
    present = as_text(code_raw.cast(pl.String)).is_not_null()
    return (
        pl.when(~present)
        .then(pl.lit(None, pl.String))
        .when(code.is_null())
        .then(pl.lit("unreadable"))
        .when((code >= 200) & (code < 300))
        .then(pl.lit("success"))
        .when(code.is_in([408, 504]))
        .then(pl.lit("timeout"))
        .when(code == 499)
        .then(pl.lit("cancelled"))
        .otherwise(pl.lit("error"))
    )


def _sha256_texts(texts: pl.Series) -> pl.Series:
    digests: dict[str, str] = {}
    out: list[str | None] = []
    for text in texts.to_list():
        if text is None:
            out.append(None)
            continue
        if text not in digests:
            digests[text] = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        out.append(digests[text])
    return pl.Series(texts.name, out, dtype=pl.String)


def hashed_key(expr: pl.Expr) -> pl.Expr:
    """An API key or key id as `sha256:<hex>`: kept when it already is a SHA-256 hash
    (`sha256:<64 hex>` or bare 64 hex), hashed otherwise. Never the raw key."""
    text = as_text(expr.cast(pl.String))
    lower = text.str.to_lowercase()
    return (
        pl.when(text.is_null())
        .then(pl.lit(None, pl.String))
        .when(lower.str.contains(r"^sha256:[0-9a-f]{64}$"))
        .then(lower)
        .when(lower.str.contains(r"^[0-9a-f]{64}$"))
        .then(pl.lit("sha256:") + lower)
        .otherwise(text.map_batches(_sha256_texts, return_dtype=pl.String))
    )


# Free-text canonical columns a secret could be pasted into (api_key_id is hashed anyway).
TEXT_COLUMNS = (
    "request_id",
    "trace_id",
    "provider",
    "model",
    "region",
    "feature",
    "team",
    "user",
    "image_size",
    "image_quality",
    "video_resolution",
)


def scrub_secrets() -> list[pl.Expr]:
    """`post` expressions: a key-like secret pasted into a free-text column, or anywhere in
    the verbatim record that quarantine keeps, is redacted."""
    return [
        *[pl.col(c).str.replace_all(KEY_PATTERN, REDACTED) for c in TEXT_COLUMNS],
        pl.col("_record").str.replace_all(KEY_PATTERN, REDACTED),
    ]


def staged(lf: pl.LazyFrame, *stages: dict[str, pl.Expr]) -> pl.LazyFrame:
    """Intermediate values as columns, one stage after the other. Referring to a column
    instead of repeating an expression keeps the plan small: coercion uses its input
    several times, and nesting expressions multiplies that into a plan Polars takes
    seconds to optimize."""
    for stage in stages:
        lf = lf.with_columns(**stage)
    return lf


def assemble_staged(
    lf: pl.LazyFrame,
    ctx: SourceContext,
    values: dict[str, pl.Expr],
    timestamps: dict[str, tuple[pl.Expr, pl.DataType]],
    extra_issues: list[pl.Expr],
) -> pl.LazyFrame:
    """`sources.base.assemble` over staged columns, with the gateway rules every adapter
    here shares: a text column whose raw value is a list or an object (which `value` hands
    over as JSON text) is `invalid_value:<column>`, 0 and 0 tokens is usage missing, and
    key-like secrets are redacted."""
    from transforms.expressions import join_flags
    from transforms.schema import CANONICAL_SCHEMA

    container = r"^\s*(?:\[.*\]|\{.*\})\s*$"
    lf = lf.with_columns(
        **{f"_v_{k}": e for k, e in values.items()},
        **{f"_t_{k}": e for k, (e, _) in timestamps.items()},
    )
    containers = [
        flag_if(pl.col(f"_v_{k}").cast(pl.String).str.contains(container), f"invalid_value:{k}")
        for k in values
        if k in TEXT_COLUMNS and CANONICAL_SCHEMA[k] == pl.String
    ]
    lf = lf.with_columns(join_flags([*extra_issues, *containers]).alias("_x_issues"))
    return assemble(
        lf,
        ctx,
        {k: pl.col(f"_v_{k}") for k in values},
        {k: (pl.col(f"_t_{k}"), dtype) for k, (_, dtype) in timestamps.items()},
        extra_issues=[pl.col("_x_issues")],
        post=[*no_usage_is_null(), *scrub_secrets()],
    )


def no_usage_is_null() -> list[pl.Expr]:
    """`post` expressions: 0 prompt and 0 output tokens is a call that reported no usage
    (a stream without its usage chunk), never a free request: every token column null."""
    no_usage = (pl.col("input_tokens").fill_null(0) == 0) & (
        pl.col("output_tokens").fill_null(0) == 0
    )
    return [pl.when(~no_usage).then(pl.col(c)).alias(c) for c in TOKEN_COLUMNS]


def plus_ms(start: pl.Expr, ms_raw: pl.Expr) -> pl.Expr:
    """A parsed UTC datetime plus a millisecond duration (int, float or text); null when the
    duration is unreadable, negative or absurd."""
    ms = as_float(ms_raw)
    ok = (ms >= 0) & (ms <= MAX_DURATION_MS)
    micros = pl.when(ok).then((ms * 1000).round(0)).cast(pl.Int64, strict=False)
    return start + pl.duration(microseconds=micros)


def bad_duration(ms_raw: pl.Expr, name: str) -> pl.Expr:
    """`invalid_value:<name>` when a duration is present but unreadable, negative or absurd."""
    ms = as_float(ms_raw)
    present = as_text(ms_raw.cast(pl.String)).is_not_null()
    return flag_if(
        present & ~((ms >= 0) & (ms <= MAX_DURATION_MS)).fill_null(False), f"invalid_value:{name}"
    )


def anthropic_usage(provider: pl.Expr, model: pl.Expr) -> pl.Expr:
    """True when a row's usage object is Anthropic's (input tokens exclude the cache):
    Anthropic itself, or a Claude model served by Bedrock or Vertex."""
    claude = model.str.to_lowercase().str.contains("claude").fill_null(False)
    return (provider == "anthropic") | (provider.is_in(["aws", "google"]) & claude)


def with_cache(prompt: pl.Expr, parts: list[pl.Expr], add: pl.Expr) -> pl.Expr:
    """`prompt` plus the `parts` it leaves out when `add` is true. Float64 (exact below
    2**53), so that absurd sums are caught by coercion rather than wrapping around; negative
    counts are never combined, so they are flagged as logged."""
    p = prompt.cast(pl.Float64)
    floats = [x.cast(pl.Float64).fill_null(0) for x in parts]
    sane = (p >= 0) & pl.all_horizontal([x >= 0 for x in floats])
    return pl.when(add.fill_null(False) & sane).then(p + pl.sum_horizontal(floats)).otherwise(p)


# --------------------------------------------------------------------------- adapter
PROVIDERS = {"x": "x-ai", "vertex": "google", "vertex_ai": "google", "openai_compatible": "openai"}
PATH_MODALITY = (
    (r"/embeddings", "embedding"),
    (r"/images/", "image"),
    (r"/audio/", "audio"),
    (r"/videos", "video"),
)


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
