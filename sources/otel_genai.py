"""OpenTelemetry GenAI spans (semantic conventions `gen_ai.*`), exported as JSON.

Grain: one row per span, i.e. per model call the instrumentation traced. A retried HTTP call
is another span; `http.request.resend_count` (when set) gives attempt = resend_count + 1.
Units: tokens; times are nanosecond Unix epochs (`startTimeUnixNano`, as strings or
numbers) or ISO timestamps; `gen_ai.response.time_to_first_chunk` in seconds.
Accepted, per line (or as one JSON document):
- an OTLP/JSON export request `{"resourceSpans": [{"resource": ..., "scopeSpans": [{"spans":
  [...]}]}]}` (what the OTLP file exporter and collectors write): every span becomes one
  record, lineage pointing at the line of its batch;
- a single span, OTLP-shaped (`traceId`, `spanId`, `startTimeUnixNano`, ...) or SDK-shaped
  (`context.trace_id`, `start_time`, ...).
Attributes may be the OTLP list `[{"key": k, "value": {"stringValue"|"intValue"|
"doubleValue"|"boolValue"|"arrayValue"|...: v}}]` or a flat object `{k: v}`; both are read.
Resource attributes fill in what the span lacks (feature, team, region).
Quirks:
- provider from `gen_ai.provider.name` (current conventions) or `gen_ai.system` (older),
  mapped to genai-prices ids (aws.bedrock -> aws, azure.ai.openai / az.ai.* -> azure,
  gcp.* -> google, mistral_ai -> mistral, x_ai -> x-ai, ...). model: `gen_ai.response.model`
  (the snapshot that served the call), else `gen_ai.request.model`.
- Tokens: the conventions define `gen_ai.usage.input_tokens` as ALL input tokens, cached
  included, with `gen_ai.usage.cache_read.input_tokens` / `cache_creation.input_tokens` as
  subsets, so they map straight to canonical. Some Anthropic instrumentations copy
  Anthropic's `input_tokens` (cache excluded) instead: when the cache counts exceed the
  input count, the input cannot have included them, and they are added. Older names
  (`gen_ai.usage.prompt_tokens`, `completion_tokens`, `cache_read_input_tokens`, ...) are
  read too. output_tokens = `gen_ai.usage.output_tokens` (reasoning included),
  reasoning_tokens = `gen_ai.usage.reasoning.output_tokens`.
- A span with no usage attributes, or 0 and 0, has usage missing: null tokens.
- A span whose text holds a lone UTF-16 surrogate (a `\\udc00` escape) is quarantined as
  `unreadable_record:invalid_encoding`; a batch item that is not a span object as
  `not_a_span`, a batch without spans as `no_spans`.
- Status: `error.type` naming a cancellation -> cancelled, a timeout -> timeout; else
  `http.response.status_code` (2xx success, 408/504 timeout, 499 cancelled, else error);
  else span status ERROR (or any other `error.type`, e.g. "429") -> error; else success.
- Spans that are not model calls are quarantined with a reason, never counted as requests:
  no `gen_ai.*` attribute at all (`not_a_genai_span`: HTTP, DB spans of the same trace), or
  an agent/tool operation (`not_a_model_call`: `invoke_agent`, `create_agent`,
  `execute_tool`, whose usage, when present, repeats their child model calls).
- request_id = the trace id, when the trace holds one model call per attempt number (one
  logical request per trace, retries as further spans with `http.request.resend_count`);
  when a trace holds several model calls (an agent loop), each is its own request:
  `<trace id>/<span id>`. Without a trace id: the span id. trace_id = the trace id.
- feature/team from `app.feature` / `feature` / `aispend.feature` (and `.team`), user from
  `enduser.id` / `user.id` / `gen_ai.user.id`; an api key id attribute is hashed.
- gateway_cost_usd from `gen_ai.usage.cost` / `gen_ai.cost.usd` when an instrumentation
  logs a cost; gateway_cache_hit from `gen_ai.cache_hit` / `gateway.cache_hit`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from sources.base import (
    SourceContext,
    as_float,
    as_int,
    as_text,
    assemble_staged,
    bad_duration,
    bad_value,
    hashed_key,
    http_status,
    read_records,
    staged,
    with_cache,
)
from transforms.expressions import flag_if
from transforms.schema import UTC_DATETIME, canonical_provider
from transforms.timestamps import parse_utc

KIND = "otel"

# Logical field -> attribute keys, first present wins (current convention first).
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "provider": ("gen_ai.provider.name", "gen_ai.system"),
    "response_model": ("gen_ai.response.model",),
    "request_model": ("gen_ai.request.model",),
    "operation": ("gen_ai.operation.name",),
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    "cache_read_tokens": (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "gen_ai.usage.input_cached_tokens",
        "gen_ai.usage.cached_tokens",
    ),
    "cache_write_tokens": (
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
    ),
    "reasoning_tokens": (
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
        "gen_ai.usage.reasoning_output_tokens",
    ),
    "service_tier": (
        "openai.response.service_tier",
        "gen_ai.openai.response.service_tier",
        "openai.request.service_tier",
        "gen_ai.openai.request.service_tier",
    ),
    "ttft_seconds": ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token"),
    "error_type": ("error.type",),
    "http_status": ("http.response.status_code", "http.status_code"),
    "resend_count": ("http.request.resend_count",),
    "conversation": ("gen_ai.conversation.id", "session.id"),
    "feature": ("app.feature", "feature", "aispend.feature", "gen_ai.feature"),
    "team": ("app.team", "team", "aispend.team", "team.name"),
    "user": ("enduser.id", "user.id", "gen_ai.user.id", "user"),
    "api_key_id": ("gen_ai.api_key_id", "app.api_key_id", "api_key_id", "api_key"),
    "cost": ("gen_ai.usage.cost", "gen_ai.cost.usd", "gen_ai.usage.cost_usd"),
    "cache_hit": ("gen_ai.cache_hit", "gateway.cache_hit", "aispend.gateway_cache_hit"),
    "region": ("cloud.region", "aws.region", "gcp.region"),
}
# Fields resource attributes may supply when the span has none.
FROM_RESOURCE = ("feature", "team", "region", "user")
SPAN_FIELDS = (
    "span_id",
    "trace_id",
    "name",
    "start",
    "end",
    "status_code",
    "has_gen_ai",
)
COLUMNS = (*SPAN_FIELDS, *ATTRIBUTES)
PROVIDERS = {
    "aws.bedrock": "aws",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "ibm.watsonx.ai": "ibm",
}
NOT_MODEL_CALLS = ("invoke_agent", "create_agent", "execute_tool")
TIERS = {"standard": "default", "auto": "default", "default": "default"}
OPERATION_MODALITY = {
    "embeddings": "embedding",
    "embedding": "embedding",
    "generate_image": "image",
    "image_generation": "image",
    "speech": "audio",
    "transcription": "audio",
}


# --------------------------------------------------------------------------- reading
def _any_value(value: Any) -> Any:
    """A plain Python value from an OTLP AnyValue (`{"stringValue": ...}` etc.)."""
    if not isinstance(value, dict):
        return value
    for key in ("stringValue", "boolValue", "intValue", "doubleValue", "bytesValue"):
        if key in value:
            return value[key]
    if "arrayValue" in value:
        items = value["arrayValue"].get("values") if isinstance(value["arrayValue"], dict) else None
        return [_any_value(v) for v in items] if isinstance(items, list) else None
    if "kvlistValue" in value:
        return _attributes(
            value["kvlistValue"].get("values") if isinstance(value["kvlistValue"], dict) else None
        )
    return value


def _attributes(raw: Any) -> dict[str, Any]:
    """Attributes as a flat dict, from the OTLP list form or a flat object."""
    if isinstance(raw, dict):
        return raw
    out: dict[str, Any] = {}
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                out[item["key"]] = _any_value(item.get("value"))
    return out


def _text(value: Any) -> str | None:
    """A scalar as text (numbers keep their JSON spelling); lists and objects as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "Infinity" if value > 0 else ("-Infinity" if value < 0 else "NaN")
    if isinstance(value, int | float):
        return json.dumps(value)
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _first(obj: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if obj.get(key) is not None:
            return obj[key]
    return None


def _status_code(status: Any) -> Any:
    if isinstance(status, dict):
        return _first(status, "code", "status_code", "statusCode")
    return status


def _span_row(span: dict[str, Any], resource: dict[str, Any]) -> dict[str, str | None]:
    attrs = _attributes(span.get("attributes"))
    context = span.get("context") if isinstance(span.get("context"), dict) else {}
    row: dict[str, Any] = {
        "span_id": _first(span, "spanId", "span_id") or _first(context, "span_id", "spanId"),
        "trace_id": _first(span, "traceId", "trace_id") or _first(context, "trace_id", "traceId"),
        "name": span.get("name"),
        "start": _first(
            span, "startTimeUnixNano", "start_time_unix_nano", "start_time", "startTime"
        ),
        "end": _first(span, "endTimeUnixNano", "end_time_unix_nano", "end_time", "endTime"),
        "status_code": _status_code(span.get("status")),
        "has_gen_ai": any(isinstance(k, str) and k.startswith("gen_ai.") for k in attrs),
    }
    for name, keys in ATTRIBUTES.items():
        row[name] = _first(attrs, *keys)
        if row[name] is None and name in FROM_RESOURCE:
            row[name] = _first(resource, *keys)
    return {k: _text(v) for k, v in row.items()}


def _spans(obj: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]] | None:
    """(span, resource attributes) of an OTLP export request; None if `obj` is not one.
    Items that are not span objects come back as they are, for quarantine."""
    batches = _first(obj, "resourceSpans", "resource_spans")
    if batches is None and ("scopeSpans" in obj or "scope_spans" in obj):
        batches = [obj]  # one ResourceSpans item on its own
    if batches is None:
        return None

    def walk() -> Iterator[tuple[Any, dict[str, Any]]]:
        for batch in batches if isinstance(batches, list) else [batches]:
            if not isinstance(batch, dict):
                yield batch, {}
                continue
            resource = batch.get("resource")
            res_attrs = (
                _attributes(resource.get("attributes")) if isinstance(resource, dict) else {}
            )
            scopes = _first(batch, "scopeSpans", "scope_spans", "instrumentationLibrarySpans")
            for scope in scopes if isinstance(scopes, list) else [scopes]:
                spans = scope.get("spans") if isinstance(scope, dict) else None
                if not isinstance(spans, list):
                    yield scope, res_attrs
                    continue
                for span in spans:
                    yield span, res_attrs

    return walk()


def _b64_hex(value: str | None) -> str | None:
    """OTLP/JSON ids are hex (`0x`-prefixed from the Python SDK's console exporter);
    exporters that follow plain protobuf-JSON write them base64.
    A padded base64 id of exactly 8 (span: 12 characters) or 16 bytes (trace: 24) is turned
    into hex; anything else is kept as written."""
    if value is not None and value.startswith("0x"):  # the Python SDK's console exporter
        return value[2:]
    if value is None or len(value) not in (12, 24) or not value.endswith("="):
        return value
    try:
        raw = base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        return value
    return raw.hex() if len(raw) in (8, 16) else value


def _encodable(row: dict[str, str | None]) -> bool:
    """False when a value holds a lone UTF-16 surrogate (a `\\ud800` escape): not text."""
    try:
        "".join(v for v in row.values() if v).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read(path: Path) -> pl.DataFrame:
    raw = read_records(path)
    lines: list[int] = []
    records: list[str] = []
    errors: list[str | None] = []
    rows: list[dict[str, str | None]] = []
    empty = dict.fromkeys(COLUMNS)

    def emit(line: int, record: str, span: Any, resource: dict[str, Any]) -> None:
        if not isinstance(span, dict):
            error, row = "not_a_span", empty
        else:
            row = _span_row(span, resource)
            row["span_id"] = _b64_hex(row["span_id"])
            row["trace_id"] = _b64_hex(row["trace_id"])
            error = None if _encodable(row) else "invalid_encoding"
        lines.append(line)
        records.append(record)
        errors.append(error)
        rows.append(row if error is None else empty)

    for line, record, error in raw.select("_line", "_record", "_parse_error").iter_rows():
        if error is not None:
            lines.append(line)
            records.append(record)
            errors.append(error)
            rows.append(empty)
            continue
        obj = json.loads(record)
        spans = _spans(obj)
        if spans is None:  # a single span
            emit(line, record, obj, {})
            continue
        found = False
        for span, resource in spans:
            found = True
            try:
                text = json.dumps(span, separators=(",", ":"))
            except (ValueError, RecursionError):
                text = record
            emit(line, text, span, resource)
        if not found:
            lines.append(line)
            records.append(record)
            errors.append("no_spans")
            rows.append(empty)
    meta = pl.DataFrame(
        {"_line": lines, "_record": records, "_parse_error": errors},
        schema={"_line": pl.Int64, "_record": pl.String, "_parse_error": pl.String},
    )
    fields = pl.DataFrame(rows, schema=dict.fromkeys(COLUMNS, pl.String), orient="row")
    return pl.concat([meta, fields], how="horizontal")


# --------------------------------------------------------------------------- mapping
def _time(text: pl.Expr) -> pl.Expr:
    """Nanosecond epoch text (or any timestamp the shared parser reads) as UTC."""
    return parse_utc(text, pl.String())


def to_canonical(raw: pl.LazyFrame, ctx: SourceContext) -> pl.LazyFrame:
    col = lambda name: as_text(pl.col(name))  # noqa: E731
    c = pl.col
    lf = staged(
        raw,
        {
            "_g_trace": col("trace_id"),
            "_g_span": col("span_id"),
            "_g_op": col("operation").str.to_lowercase(),
            "_g_p": as_int(col("input_tokens")),
            "_g_cr": as_int(col("cache_read_tokens")),
            "_g_cw": as_int(col("cache_write_tokens")),
            "_g_error": col("error_type").str.to_lowercase(),
            "_g_span_status": col("status_code").str.to_uppercase(),
            "_g_http_status": http_status(col("http_status")),
            "_g_started": _time(col("start")),
            "_g_ttft": as_float(col("ttft_seconds")),
            "_g_resend": as_int(col("resend_count")),
            "_g_cache_hit": col("cache_hit").str.to_lowercase(),
        },
        {
            "_g_model_call": (c("has_gen_ai") == "true").fill_null(False)
            & ~c("_g_op").is_in(NOT_MODEL_CALLS).fill_null(False),
            "_g_cache": c("_g_cr").fill_null(0) + c("_g_cw").fill_null(0),
        },
        {
            # Model calls sharing this span's trace and attempt number.
            "_g_calls": c("_g_span")
            .filter(c("_g_model_call"))
            .n_unique()
            .over([c("_g_trace"), c("_g_resend")]),
            "_g_first_token_at": c("_g_started")
            + pl.duration(
                microseconds=pl.when((c("_g_ttft") >= 0) & (c("_g_ttft") <= 1e7))
                .then((c("_g_ttft") * 1e6).round(0))
                .cast(pl.Int64, strict=False)
            ),
        },
    )
    error = c("_g_error")
    status = (
        pl.when(error.str.contains("cancel|abort").fill_null(False))
        .then(pl.lit("cancelled"))
        .when(error.str.contains("timeout|timed.?out|deadline").fill_null(False))
        .then(pl.lit("timeout"))
        .otherwise(
            pl.coalesce(
                c("_g_http_status"),
                pl.when(c("_g_span_status").is_in(["2", "STATUS_CODE_ERROR", "ERROR"])).then(
                    pl.lit("error")
                ),
                pl.when(error.is_not_null()).then(pl.lit("error")),
                pl.lit("success"),
            )
        )
    )
    # One model call per (trace, attempt): the trace is the logical request.
    request_id = (
        pl.when(c("_g_trace").is_null())
        .then(c("_g_span"))
        .when((c("_g_calls") <= 1) | c("_g_span").is_null())
        .then(c("_g_trace"))
        .otherwise(c("_g_trace") + "/" + c("_g_span"))
    )
    values = {
        "request_id": request_id,
        "attempt": c("_g_resend") + 1,
        "trace_id": pl.coalesce(c("_g_trace"), col("conversation")),
        "gateway": pl.lit(KIND),
        "provider": canonical_provider(col("provider")).replace(PROVIDERS),
        "model": pl.coalesce(col("response_model"), col("request_model")),
        "region": col("region"),
        "service_tier": col("service_tier").str.to_lowercase().replace(TIERS),
        "feature": col("feature"),
        "team": col("team"),
        "user": col("user"),
        "api_key_id": hashed_key(col("api_key_id")),
        "status": status,
        "modality": c("_g_op").replace_strict(OPERATION_MODALITY, default="text"),
        # Conventions: input includes the cache; an input below its own cache counts cannot.
        "input_tokens": with_cache(c("_g_p"), [c("_g_cr"), c("_g_cw")], c("_g_cache") > c("_g_p")),
        "cache_read_tokens": col("cache_read_tokens"),
        "cache_write_tokens": col("cache_write_tokens"),
        "output_tokens": col("output_tokens"),
        "reasoning_tokens": col("reasoning_tokens"),
        "gateway_cost_usd": col("cost"),
        "gateway_cache_hit": c("_g_cache_hit").is_in(["true", "1"]),
    }
    timestamps = {
        "started_at": (col("start"), pl.String()),
        "first_token_at": (c("_g_first_token_at"), UTC_DATETIME),
        "ended_at": (col("end"), pl.String()),
    }
    hit = c("_g_cache_hit")
    extra = [
        flag_if(c("has_gen_ai") != "true", "not_a_genai_span"),
        flag_if(c("_g_op").is_in(NOT_MODEL_CALLS).fill_null(False), "not_a_model_call"),
        bad_value(col("input_tokens"), c("_g_p"), "input_tokens"),
        bad_value(col("resend_count"), c("_g_resend"), "attempt"),
        flag_if(c("_g_resend") < 0, "invalid_value:attempt"),
        bad_duration(col("ttft_seconds"), "first_token_at"),
        flag_if(
            hit.is_not_null() & ~hit.is_in(["true", "false", "1", "0"]),
            "invalid_value:gateway_cache_hit",
        ),
    ]
    return assemble_staged(lf, ctx, values, timestamps, extra)
