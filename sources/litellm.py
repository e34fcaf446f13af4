"""LiteLLM proxy spend logs (`LiteLLM_SpendLogs`): exported JSON/JSONL/CSV, or the table itself.

Grain: one row per upstream call LiteLLM made (retries and fallbacks are separate rows).
Units: tokens; `spend` in USD (LiteLLM's own estimate, kept as gateway_cost_usd only).
Quirks:
- `prompt_tokens` follows OpenAI semantics: a total, cached tokens included. Cache and
  reasoning splits live only in `metadata.additional_usage_values` (shape varies by version:
  `prompt_tokens_details.cached_tokens`, or Anthropic-style `cache_read_input_tokens` /
  `cache_creation_input_tokens`).
- `model` is the deployment actually called; `model_group` is the alias the client asked for.
- `cache_hit` is the STRING "True"/"False"; a hit never reached the provider.
- `api_key` is already a hash of the virtual key; we prefix it `sha256:` (anything else,
  such as a raw key, is hashed).
- A stream without usage logs 0 prompt and 0 completion tokens: that is usage missing.
- `metadata` and `request_tags` are JSON objects in exports, JSON strings in CSV and the DB.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.base import (
    SourceContext,
    as_int,
    as_text,
    assemble,
    dtype_of,
    field,
    first_present,
    hashed_key,
    list_text,
    present,
    read_records,
    staged,
    value,
)
from transforms.schema import TOKEN_COLUMNS

KIND = "litellm"
CALL_TYPE_MODALITY = {
    "embedding": "embedding",
    "aembedding": "embedding",
    "image_generation": "image",
    "aimage_generation": "image",
    "transcription": "audio",
    "atranscription": "audio",
    "speech": "audio",
    "aspeech": "audio",
    "video_generation": "video",
    "avideo_generation": "video",
}


_S, _I = pl.String, pl.Int64
# Every field to_canonical reads, typed as LiteLLM writes them, for the vectorized JSONL reader
# (sources.jsonl_fast). A line with another type (a count as text, a string for an object)
# is read more slowly, never differently: the adapter coerces whatever it gets.
FIELDS = pl.Struct(
    {
        **dict.fromkeys(
            (
                "request_id", "call_type", "api_key", "startTime", "endTime",
                "completionStartTime", "model", "model_group", "custom_llm_provider", "user",
                "cache_hit", "team_id", "end_user", "session_id", "status",
            ),
            _S,
        ),
        "spend": pl.Float64,
        "prompt_tokens": _I,
        "completion_tokens": _I,
        "request_tags": pl.List(_S),
        "metadata": pl.Struct(
            {
                "spend_logs_metadata": pl.Struct({"feature": _S}),
                "user_api_key_team_alias": _S,
                "attempted_retries": _I,
                "error_information": pl.Struct({"error_class": _S, "error_code": _S}),
                "additional_usage_values": pl.Struct(
                    {
                        "prompt_tokens_details": pl.Struct(
                            {"cached_tokens": _I, "cache_creation_tokens": _I}
                        ),
                        "cache_read_input_tokens": _I,
                        "cache_creation_input_tokens": _I,
                        "cache_creation": pl.Struct({"ephemeral_1h_input_tokens": _I}),
                        "completion_tokens_details": pl.Struct({"reasoning_tokens": _I}),
                    }
                ),
            }
        ),
        # The request body of media calls (OpenAI's video API sends `seconds` as text).
        "proxy_server_request": pl.Struct(
            {"n": _I, "size": _S, "quality": _S, "seconds": _S}
        ),
    }
)  # fmt: skip


def read(path: Path) -> pl.DataFrame:
    return read_records(path)


def _usage(schema: pl.Schema, *keys: str) -> pl.Expr:
    return first_present(
        schema, *[("metadata", "additional_usage_values", *k.split(".")) for k in keys]
    )


def to_canonical(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    s = raw.collect_schema()
    col = lambda name: value(s, name)  # noqa: E731 - a list where a value belongs is flagged
    tags_feature = list_text(s, "request_tags").str.extract(r"feature:([^,\"\]]+)", 1)
    error_class = as_text(first_present(s, ("metadata", "error_information", "error_class")))
    error_code = as_text(first_present(s, ("metadata", "error_information", "error_code")))
    body = lambda key: first_present(s, ("proxy_server_request", key))  # noqa: E731
    # Intermediates used by several columns, computed once (see sources.base.staged).
    raw = staged(
        raw,
        {
            "_l_call_type": as_text(col("call_type")).str.to_lowercase(),
            "_l_status": as_text(col("status")).str.to_lowercase(),
            "_l_timed_out": (error_class.str.to_lowercase() == "timeout")
            | error_code.is_in(["408", "504"]),
        },
        {"_l_modality": pl.col("_l_call_type").replace_strict(CALL_TYPE_MODALITY, default="text")},
    )
    call_type, status = pl.col("_l_call_type"), pl.col("_l_status")
    modality, timed_out = pl.col("_l_modality"), pl.col("_l_timed_out")
    succeeded = status == "success"
    values = {
        "request_id": col("request_id"),
        "trace_id": col("session_id"),
        "gateway": pl.lit(KIND),
        "provider": col("custom_llm_provider"),
        "model": pl.coalesce(as_text(col("model")), as_text(col("model_group"))),
        "feature": pl.coalesce(
            as_text(field(s, "metadata", "spend_logs_metadata", "feature"))
            if present(s, "metadata")
            else pl.lit(None),
            tags_feature,
        ),
        "team": pl.coalesce(
            as_text(col("team_id")),
            as_text(field(s, "metadata", "user_api_key_team_alias"))
            if present(s, "metadata")
            else pl.lit(None),
        ),
        "user": pl.coalesce(as_text(col("end_user")), as_text(col("user"))),
        # Normally already a hex hash of the virtual key, kept; anything else (a raw key
        # pasted there) is hashed, never stored.
        "api_key_id": pl.when(as_text(col("api_key")).str.contains(r"^[0-9a-fA-F]+$"))
        .then(pl.lit("sha256:") + as_text(col("api_key")))
        .otherwise(hashed_key(col("api_key"))),
        "attempt": as_int(first_present(s, ("metadata", "attempted_retries"))) + 1,
        "status": pl.when(status == "failure")
        .then(pl.when(timed_out).then(pl.lit("timeout")).otherwise(pl.lit("error")))
        .otherwise(status),
        "batch": call_type.str.contains("batch"),
        "modality": modality,
        "image_count": pl.when((modality == "image") & succeeded).then(
            pl.coalesce(as_int(body("n")), pl.lit(1))
        ),
        "image_size": pl.when(modality == "image").then(as_text(body("size"))),
        "image_quality": pl.when(modality == "image").then(as_text(body("quality"))),
        "video_seconds": pl.when((modality == "video") & succeeded).then(body("seconds")),
        "video_resolution": pl.when(modality == "video").then(as_text(body("size"))),
        "input_tokens": col("prompt_tokens"),
        "output_tokens": col("completion_tokens"),
        "cache_read_tokens": _usage(
            s, "prompt_tokens_details.cached_tokens", "cache_read_input_tokens"
        ),
        "cache_write_tokens": _usage(
            s, "cache_creation_input_tokens", "prompt_tokens_details.cache_creation_tokens"
        ),
        "cache_write_1h_tokens": _usage(s, "cache_creation.ephemeral_1h_input_tokens"),
        "reasoning_tokens": _usage(s, "completion_tokens_details.reasoning_tokens"),
        "gateway_cost_usd": col("spend"),
        "gateway_cache_hit": as_text(col("cache_hit")).str.to_lowercase() == "true",
    }
    timestamps = {
        "started_at": (col("startTime"), dtype_of(s, "startTime")),
        "first_token_at": (col("completionStartTime"), dtype_of(s, "completionStartTime")),
        "ended_at": (col("endTime"), dtype_of(s, "endTime")),
    }
    # LiteLLM logs a stream that never reported usage as 0 and 0 tokens: that is missing usage.
    no_usage = (pl.col("input_tokens").fill_null(0) == 0) & (
        pl.col("output_tokens").fill_null(0) == 0
    )
    post = [pl.when(~no_usage).then(pl.col(c)).alias(c) for c in TOKEN_COLUMNS]
    return assemble(raw, ctx, values, timestamps, post=post)
