"""Gateway request logs in their native formats, one JSON object per line, built vectorized.

Every line is one upstream attempt of the ground truth (`canonical/requests-*.parquet`), in the
file of its start day (UTC). Field names are the real ones (../shared/reference/data-formats.md
section 1); the values follow these rules, which is what an adapter must undo to reproduce the
truth row. "truth.x" below is the canonical column x.

Rules common to all gateways: a failed attempt (error/timeout) logs 0 and 0 tokens (OTel and
OpenRouter: no usage at all), which means "no usage reported": truth tokens are null. A token
count the format has no field for is null in the truth (listed per gateway). Providers map
to genai-prices ids with transforms.schema.canonical_provider (vertex_ai, google-ai-studio ->
google; bedrock -> aws), except the OTel names noted below. Status from HTTP codes: 200
success, 408 timeout, anything else (429/500/503) error.

LiteLLM (`litellm/spend-logs-YYYY-MM-DD.jsonl`): one LiteLLM_SpendLogs row per line.
  request_id      unique per attempt (provider response id `chatcmpl-…`/`msg_01…`/`msg_bdrk_01…`
                  on success, the litellm_call_id UUID on failure) - NOT the logical request.
  session_id      the litellm_trace_id shared by all attempts: truth.request_id AND truth.trace_id.
  metadata.attempted_retries   attempt - 1 (truth.attempt = attempted_retries + 1).
  prompt_tokens   TOTAL input incl. cache reads and writes (OpenAI semantics) = truth.input_tokens
                  (0 and 0 on a failure, and on media calls: truth null).
  completion_tokens  incl. reasoning = truth.output_tokens; total_tokens = prompt + completion.
  metadata.additional_usage_values (text calls):
      prompt_tokens_details.cached_tokens = truth.cache_read_tokens,
      prompt_tokens_details.cache_creation_tokens = truth.cache_write_tokens,
      completion_tokens_details.reasoning_tokens = truth.reasoning_tokens;
      for custom_llm_provider anthropic and bedrock also cache_read_input_tokens,
      cache_creation_input_tokens and cache_creation.{ephemeral_5m_input_tokens,
      ephemeral_1h_input_tokens} (1h = truth.cache_write_1h_tokens; for other providers
      there is no cache_creation object and truth.cache_write_1h_tokens is null).
      additional_usage_values is null for media calls.
  startTime/endTime/completionStartTime  ISO-8601 UTC with milliseconds and `Z`;
      completionStartTime null unless a token was streamed (truth.first_token_at).
  model           the deployment model = truth.model; model_group the alias the client used.
  custom_llm_provider  openai | anthropic | vertex_ai (-> google) | bedrock (-> aws) |
                  deepseek | bfl.
  spend           LiteLLM's own estimate (JSON number, up to 9 decimals) = truth.gateway_cost_usd.
  cache_hit       the STRING "True"/"False" = truth.gateway_cache_hit (spend 0 on a hit).
  status          "success" | "failure"; failure with metadata.error_information.error_class
                  "Timeout" (error_code "408") is truth.status timeout, any other failure error.
  api_key         sha256 hex of the virtual key; truth.api_key_id = "sha256:" + api_key.
  team_id         truth.team; metadata.spend_logs_metadata.feature = truth.feature.
  end_user        truth.user.
  call_type       acompletion | aimage_generation | avideo_generation | aretrieve_batch
                  (batch = call_type aretrieve_batch, with metadata.batch_models = [model]).
  proxy_server_request  the request body of media calls: images {"model","prompt","n","size",
                  "quality"} (truth.image_count = n, image_size, image_quality; quality absent
                  for flux), videos {"model","prompt","seconds","size"} (seconds is a string as
                  in the OpenAI video API; truth.video_seconds = float(seconds),
                  truth.video_resolution = size). A failed media call generated nothing:
                  truth image_count / video_seconds null. `{}` for text calls; messages and
                  response are always `{}` (prompts not stored).
  media calls     prompt_tokens = completion_tokens = 0 (truth tokens null); truth.modality
                  image or video from call_type.

Helicone (`helicone/requests-YYYY-MM-DD.jsonl`): one HeliconeRequest per line, no retries.
  request_id      truth.request_id; request_properties["Helicone-Session-Id"] = truth.trace_id;
                  request_properties.feature / .team = truth.feature / team (also in properties).
  provider        upper case: OPENAI | ANTHROPIC | GOOGLE | DEEPSEEK.
  prompt_tokens   for ANTHROPIC the raw API input_tokens, EXCLUDING cache reads and writes
                  (truth.input_tokens = prompt_tokens + prompt_cache_read_tokens +
                  prompt_cache_write_tokens); for every other provider the total INCLUDING the
                  cached reads (truth.input_tokens = prompt_tokens).
  prompt_cache_read_tokens / prompt_cache_write_tokens = truth cache_read / cache_write (no
                  TTL split: truth.cache_write_1h_tokens null; all writes really were 5m).
  completion_tokens  truth.output_tokens incl. reasoning (no reasoning count: truth null).
  total_tokens    truth.input_tokens + truth.output_tokens.
  request_created_at ISO ms `Z` = started_at; delay_ms = ended - started;
  time_to_first_token ms (null when nothing streamed); response_status HTTP status
  (200 success, 408 timeout, 429/500/503 error); response_model null on failure.
  model           truth.model (resolved snapshot); request_model the alias.
  cost / costUSD  truth.gateway_cost_usd.
  cache_reference_id  a non-zero UUID when served from Helicone's cache (truth.gateway_cache_hit),
                  else the all-zero UUID "00000000-0000-0000-0000-000000000000".
  request_user_id truth.user.

OpenRouter (`openrouter/generations-YYYY-MM-DD.jsonl`): one `{"data": {...}}` per line, as
  GET /api/v1/generation returns it. Billed by OpenRouter: truth.provider = "openrouter",
  truth.model = data.model (the slug, e.g. "anthropic/claude-sonnet-4.5"). No retries
  (OpenRouter retries internally: truth.attempt = len(provider_responses), i.e. 2 when a 429
  precedes the 200; that generation has no attempt-1 row). No feature/team attribution
  (truth.feature/team null). A failed generation has null token fields.
  id              truth.request_id; session_id = truth.trace_id; external_user = truth.user.
  native_tokens_prompt      TOTAL input incl. cached = truth.input_tokens.
  native_tokens_cached      truth.cache_read_tokens (no cache-write count: truth null).
  native_tokens_completion  incl. reasoning = truth.output_tokens.
  native_tokens_reasoning   truth.reasoning_tokens.
  tokens_prompt / tokens_completion  OpenRouter-normalized counts (~3% off): NOT for billing.
  created_at      started_at with microseconds and "+00:00".
  latency         ms to the first token (null if none) -> first_token_at = created_at + latency;
  generation_time ms after the first token (the whole duration when there is none), so
                  ended_at = created_at + (latency or 0) + generation_time.
  status          from the LAST provider_responses[].status: 200 success, 408 timeout, else error.
  total_cost (= usage)  truth.gateway_cost_usd. service_tier "default" = truth.service_tier
                  (the other gateways log no tier: truth.service_tier null, meaning default).

Cloudflare AI Gateway (`cloudflare/logs-YYYY-MM-DD.jsonl`): one log per line, no retries.
  id              truth.request_id; created_at whole seconds `Z` = started_at;
  duration        ms: ended_at = created_at + duration; no TTFT (truth.first_token_at null).
  provider        openai | anthropic | google-ai-studio (-> google) | deepseek.
  model           the model the client asked for (alias) = truth.model.
  tokens_in       TOTAL input = truth.input_tokens; tokens_out = truth.output_tokens; no cache
                  or reasoning split (truth cache_* and reasoning_tokens null; no cached
                  traffic goes through Cloudflare and reasoning is priced at the output rate,
                  so costs are exact anyway).
  status_code     200 success, 408 timeout, 429/500/503 error (success = status_code 200).
  cached          truth.gateway_cache_hit; cost = truth.gateway_cost_usd.
  metadata        a JSON STRING {"feature","team","user"}; step always 0.

OpenTelemetry GenAI spans (`otel/spans-YYYY-MM-DD.jsonl`): one span per line (OTLP/JSON names),
  traceId (32 hex) = truth.request_id = truth.trace_id; each attempt is its own span (spanId);
  startTimeUnixNano / endTimeUnixNano are decimal STRINGS of ns since the epoch; no TTFT.
  attributes (flat, absent when unknown):
    gen_ai.system and gen_ai.provider.name: openai | anthropic | gcp.vertex_ai (-> google) |
        aws.bedrock (-> aws);
    gen_ai.request.model (alias); gen_ai.response.model (success only);
        truth.model = response.model, or request.model when the call failed;
    gen_ai.usage.input_tokens  TOTAL input incl. cache reads and writes (semconv: the cache
        attributes "SHOULD be included" in it) = truth.input_tokens;
    gen_ai.usage.cache_read.input_tokens = truth.cache_read_tokens;
    gen_ai.usage.cache_creation.input_tokens = truth.cache_write_tokens (no TTL split:
        truth.cache_write_1h_tokens null);
    gen_ai.usage.output_tokens incl. reasoning = truth.output_tokens;
    gen_ai.usage.reasoning.output_tokens = truth.reasoning_tokens;
    openai.response.service_tier (OpenAI only): default | flex | priority = truth.service_tier;
    app.feature, app.team, user.id; http.request.resend_count = attempt - 1 (only on retries);
    error.type "timeout" (truth timeout) or the HTTP status "429"/"500"/"503" (truth error).
  A failed span has no gen_ai.usage.* attributes: its truth tokens are NULL (usage missing).
  status.code STATUS_CODE_OK | STATUS_CODE_ERROR.
"""

from __future__ import annotations

import hashlib

import polars as pl

from datagen import org
from datagen.org import MODELS

ZERO_UUID = "00000000-0000-0000-0000-000000000000"

LITELLM_PROVIDER = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "vertex_ai",
    "aws": "bedrock",
    "deepseek": "deepseek",
    "bfl": "bfl",
}
LITELLM_API_BASE = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "google": "https://us-central1-aiplatform.googleapis.com/v1",
    "aws": "https://bedrock-runtime.us-east-1.amazonaws.com",
    "deepseek": "https://api.deepseek.com/v1",
    "bfl": "https://api.bfl.ai/v1",
}
HELICONE_PROVIDER = {
    "openai": "OPENAI",
    "anthropic": "ANTHROPIC",
    "google": "GOOGLE",
    "deepseek": "DEEPSEEK",
}
HELICONE_PATH = {
    "openai": ("https://oai.helicone.ai/v1/chat/completions", "https://api.openai.com"),
    "anthropic": ("https://anthropic.helicone.ai/v1/messages", "https://api.anthropic.com"),
    "google": (
        "https://gateway.helicone.ai/v1beta/models:generateContent",
        "https://generativelanguage.googleapis.com",
    ),
    "deepseek": ("https://gateway.helicone.ai/v1/chat/completions", "https://api.deepseek.com"),
}
OPENROUTER_PROVIDER = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "google": "Google",
    "deepseek": "DeepSeek",
}
CLOUDFLARE_PROVIDER = {
    "openai": ("openai", "chat/completions"),
    "anthropic": ("anthropic", "v1/messages"),
    "google": ("google-ai-studio", "v1beta/models:generateContent"),
    "deepseek": ("deepseek", "chat/completions"),
}
OTEL_SYSTEM = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.vertex_ai",
    "aws": "aws.bedrock",
    "deepseek": "deepseek",
}
OTEL_SERVER = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "google": "us-central1-aiplatform.googleapis.com",
    "aws": "bedrock-runtime.us-east-1.amazonaws.com",
    "deepseek": "api.deepseek.com",
}


# --------------------------------------------------------------------------- expressions
def by_spec(values: list[object], dtype: pl.DataType = pl.String) -> pl.Expr:
    table = pl.Series(values, dtype=dtype, strict=False)
    return pl.col("_spec").replace_strict(pl.Series(range(len(values))), table, return_dtype=dtype)


def by_provider(mapping: dict[str, str]) -> pl.Expr:
    return by_spec([mapping.get(m.provider) for m in MODELS])


def iso_ms(ms: pl.Expr, fmt: str = "%Y-%m-%dT%H:%M:%S%.3fZ") -> pl.Expr:
    return pl.from_epoch(ms, time_unit="ms").dt.strftime(fmt)


def money(nusd: pl.Series) -> pl.Series:
    """Nano-dollars as a JSON number. n / 1e9 (a true IEEE division: numpy, not Polars, which
    multiplies by the reciprocal) is the double nearest to the exact decimal, and JSON
    encoding writes a double's shortest round-trip text, so the text IS that decimal (in
    exponent form when small, e.g. 3e-9, as Python's json writes small floats too)."""
    values = nusd.cast(pl.Float64).to_numpy() / 1e9
    return pl.Series(nusd.name, values, dtype=pl.Float64)


def encode(frame: pl.DataFrame, columns: list[pl.Expr]) -> pl.Series:
    """JSON lines of the given fields, in order."""
    return frame.select(pl.struct(columns).struct.json_encode().alias("line")).to_series()


def _ok() -> pl.Expr:
    return pl.col("_status") == 0


def _response_id() -> pl.Expr:
    prefix = by_spec(
        [{"anthropic": "msg_01", "aws": "msg_bdrk_01"}.get(m.provider, "chatcmpl-") for m in MODELS]
    )
    return prefix + pl.col("_native").str.slice(0, 24)


def _tok(col: str) -> pl.Expr:
    return pl.col(col).fill_null(0)


def _framed(frame: pl.DataFrame, line: pl.Series) -> pl.DataFrame:
    return frame.select(
        pl.col("started_at").dt.date().alias("_date"),
        pl.col("_started_ms"),
        pl.col("_native"),
        pl.col("request_id"),
        pl.col("attempt"),
    ).with_columns(line.alias("line"))


# --------------------------------------------------------------------------- LiteLLM
def _litellm_usage(anthropic_family: bool) -> pl.Expr:
    fields = [
        pl.struct(
            _tok("cache_read_tokens").alias("cached_tokens"),
            _tok("cache_write_tokens").alias("cache_creation_tokens"),
            pl.lit(0).alias("audio_tokens"),
        ).alias("prompt_tokens_details"),
        pl.struct(
            _tok("reasoning_tokens").alias("reasoning_tokens"),
            pl.lit(0).alias("audio_tokens"),
        ).alias("completion_tokens_details"),
    ]
    if anthropic_family:
        fields += [
            _tok("cache_read_tokens").alias("cache_read_input_tokens"),
            _tok("cache_write_tokens").alias("cache_creation_input_tokens"),
            pl.struct(
                (_tok("cache_write_tokens") - _tok("cache_write_1h_tokens")).alias(
                    "ephemeral_5m_input_tokens"
                ),
                _tok("cache_write_1h_tokens").alias("ephemeral_1h_input_tokens"),
            ).alias("cache_creation"),
        ]
    return pl.struct(fields).alias("additional_usage_values")


def _litellm_media_request(kind: str) -> pl.Expr:
    if kind == "image":
        fields = [
            by_spec([m.alias for m in MODELS]).alias("model"),
            pl.lit("<redacted>").alias("prompt"),
            pl.col("_image_count").alias("n"),
            pl.col("image_size").alias("size"),
        ]
        return pl.struct([*fields, pl.col("image_quality").alias("quality")])
    return pl.struct(
        by_spec([m.alias for m in MODELS]).alias("model"),
        pl.lit("<redacted>").alias("prompt"),
        pl.col("_video_seconds").cast(pl.Int64).cast(pl.String).alias("seconds"),
        pl.col("video_resolution").alias("size"),
    )


def _litellm_lines(frame: pl.DataFrame, group: str) -> pl.Series:
    ok = _ok()
    team = pl.col("team")
    error_class = pl.col("_http").replace_strict(
        {
            408: "Timeout",
            429: "RateLimitError",
            500: "InternalServerError",
            503: "ServiceUnavailableError",
        },
        default=None,
        return_dtype=pl.String,
    )
    error_information = pl.when(~ok).then(
        pl.struct(
            error_class.alias("error_class"),
            pl.col("_http").cast(pl.String).alias("error_code"),
            pl.format("litellm.{}: upstream returned {}", error_class, pl.col("_http")).alias(
                "error_message"
            ),
        )
    )
    if group == "text":
        usage = _litellm_usage(False)
    elif group == "anthropic":
        usage = _litellm_usage(True)
    else:
        usage = pl.lit(None, pl.String).alias("additional_usage_values")
    metadata = pl.struct(
        pl.col("_api_key").alias("user_api_key"),
        pl.format("{}-key-{}", team, pl.col("_key") % 3).alias("user_api_key_alias"),
        team.alias("user_api_key_team_id"),
        team.alias("user_api_key_team_alias"),
        pl.format("{}-service", team).alias("user_api_key_user_id"),
        pl.struct(pl.col("feature"), pl.col("team")).alias("spend_logs_metadata"),
        usage,
        (pl.col("attempt") - 1).alias("attempted_retries"),
        pl.when(ok).then(pl.lit("success")).otherwise(pl.lit("failure")).alias("status"),
        error_information.alias("error_information"),
        pl.when(pl.col("batch")).then(pl.concat_list(pl.col("model"))).alias("batch_models"),
    )
    call_type = (
        pl.when(pl.col("batch"))
        .then(pl.lit("aretrieve_batch"))
        .when(pl.col("modality") == "image")
        .then(pl.lit("aimage_generation"))
        .when(pl.col("modality") == "video")
        .then(pl.lit("avideo_generation"))
        .otherwise(pl.lit("acompletion"))
    )
    request_id = (
        pl.when(ok & (pl.col("modality") == "text"))
        .then(_response_id())
        .otherwise(pl.col("_native_uuid"))
    )
    model_ids = [hashlib.sha256(m.key.encode()).hexdigest()[:32] for m in MODELS]
    columns = [
        request_id.alias("request_id"),
        call_type.alias("call_type"),
        pl.col("_api_key").alias("api_key"),
        pl.col("_cost_f").alias("spend"),
        (_tok("input_tokens") + _tok("output_tokens")).alias("total_tokens"),
        _tok("input_tokens").alias("prompt_tokens"),
        _tok("output_tokens").alias("completion_tokens"),
        iso_ms(pl.col("_started_ms")).alias("startTime"),
        iso_ms(pl.col("_started_ms") + pl.col("_latency_ms")).alias("endTime"),
        pl.col("_latency_ms").alias("request_duration_ms"),
        iso_ms(pl.col("_started_ms") + pl.col("_ttft_ms")).alias("completionStartTime"),
        pl.col("model"),
        by_spec(model_ids).alias("model_id"),
        by_spec([m.group or m.alias for m in MODELS]).alias("model_group"),
        by_provider(LITELLM_PROVIDER).alias("custom_llm_provider"),
        by_provider(LITELLM_API_BASE).alias("api_base"),
        pl.format("{}-service", team).alias("user"),
        metadata.alias("metadata"),
        pl.when(pl.col("gateway_cache_hit"))
        .then(pl.lit("True"))
        .otherwise(pl.lit("False"))
        .alias("cache_hit"),
        pl.when(pl.col("gateway_cache_hit"))
        .then(pl.col("_id2"))
        .otherwise(pl.lit(""))
        .alias("cache_key"),
        pl.concat_list(
            pl.lit("feature:") + pl.col("feature"), pl.lit("team:") + team, pl.lit("env:prod")
        ).alias("request_tags"),
        team.alias("team_id"),
        pl.lit(None, pl.String).alias("organization_id"),
        pl.col("user").alias("end_user"),
        pl.lit(None, pl.String).alias("requester_ip_address"),
        pl.col("request_id").alias("session_id"),
        pl.when(ok).then(pl.lit("success")).otherwise(pl.lit("failure")).alias("status"),
    ]
    # Json columns stored as {} (prisma default) end the line; a struct cannot be empty.
    if group in ("image", "video"):
        body = encode(frame, [_litellm_media_request(group).alias("b")]).str.slice(5)
        body = body.str.head(-1)
    else:
        body = pl.Series(["{}"] * frame.height, dtype=pl.String)
    head = encode(frame, columns).str.head(-1)
    return (
        pl.DataFrame({"h": head, "b": body})
        .select(
            pl.concat_str(
                [
                    pl.col("h"),
                    pl.lit(',"proxy_server_request":'),
                    pl.col("b"),
                    pl.lit(',"messages":{},"response":{}}'),
                ]
            )
        )
        .to_series()
    )


def litellm(frame: pl.DataFrame) -> pl.DataFrame:
    parts = []
    family = pl.col("provider").is_in(["anthropic", "aws"])
    groups = {
        "text": (pl.col("modality") == "text") & ~family,
        "anthropic": (pl.col("modality") == "text") & family,
        "image": pl.col("modality") == "image",
        "video": pl.col("modality") == "video",
    }
    for group, mask in groups.items():
        sub = frame.filter(mask)
        if sub.height:
            parts.append(_framed(sub, _litellm_lines(sub, group)))
    return pl.concat(parts) if parts else _empty()


# --------------------------------------------------------------------------- Helicone
def helicone(frame: pl.DataFrame) -> pl.DataFrame:
    if not frame.height:
        return _empty()
    ok = _ok()
    anthropic = pl.col("provider") == "anthropic"
    prompt = (
        pl.when(anthropic)
        .then(_tok("input_tokens") - _tok("cache_read_tokens") - _tok("cache_write_tokens"))
        .otherwise(_tok("input_tokens"))
    )
    props = pl.struct(
        pl.col("feature"), pl.col("team"), pl.col("trace_id").alias("Helicone-Session-Id")
    )
    cost = pl.col("_cost_f")
    ended = pl.col("_started_ms") + pl.col("_latency_ms")
    cache_enabled = pl.col("_feature").replace_strict(
        pl.Series(range(len(org.FEATURES))),
        pl.Series([f.gateway_cache_share > 0 for f in org.FEATURES]),
        return_dtype=pl.Boolean,
    )
    columns = [
        pl.col("request_id"),
        iso_ms(pl.col("_started_ms")).alias("request_created_at"),
        by_spec([HELICONE_PATH.get(m.provider, ("", ""))[0] for m in MODELS]).alias("request_path"),
        pl.col("user").alias("request_user_id"),
        props.alias("request_properties"),
        by_spec([m.alias for m in MODELS]).alias("request_model"),
        pl.lit(None, pl.String).alias("model_override"),
        pl.col("user").alias("helicone_user"),
        pl.when(ok).then(pl.col("_native_uuid")).alias("response_id"),
        iso_ms(ended).alias("response_created_at"),
        pl.col("_http").alias("response_status"),
        pl.when(ok).then(pl.col("model")).alias("response_model"),
        pl.col("model"),
        by_provider(HELICONE_PROVIDER).alias("provider"),
        by_spec([HELICONE_PATH.get(m.provider, ("", ""))[1] for m in MODELS]).alias("target_url"),
        pl.col("_latency_ms").alias("delay_ms"),
        pl.col("_ttft_ms").alias("time_to_first_token"),
        (_tok("input_tokens") + _tok("output_tokens")).alias("total_tokens"),
        prompt.alias("prompt_tokens"),
        _tok("cache_write_tokens").alias("prompt_cache_write_tokens"),
        _tok("cache_read_tokens").alias("prompt_cache_read_tokens"),
        _tok("output_tokens").alias("completion_tokens"),
        pl.lit(None, pl.Int64).alias("prompt_audio_tokens"),
        pl.lit(None, pl.Int64).alias("completion_audio_tokens"),
        cost.alias("cost"),
        cost.alias("costUSD"),
        pl.lit(None, pl.String).alias("prompt_id"),
        pl.lit("US").alias("country_code"),
        pl.lit(None, pl.Int64).alias("scores"),
        props.alias("properties"),
        pl.when(pl.col("gateway_cache_hit"))
        .then(pl.col("_id2_uuid"))
        .otherwise(pl.lit(ZERO_UUID))
        .alias("cache_reference_id"),
        cache_enabled.alias("cache_enabled"),
        iso_ms(ended).alias("updated_at"),
    ]
    return _framed(frame, encode(frame, columns))


# --------------------------------------------------------------------------- OpenRouter
def openrouter(frame: pl.DataFrame) -> pl.DataFrame:
    if not frame.height:
        return _empty()
    ok = _ok()
    cost = pl.col("_cost_f")
    discount_nusd = frame.select(
        (
            pl.col("cache_read_tokens").fill_null(0).cast(pl.Float64)
            * by_spec([m.price_in * (1 - m.cache_read_mult) for m in MODELS], pl.Float64)
            * 1000.0
        )
        .round(0)
        .cast(pl.Int64)
    ).to_series()
    frame = frame.with_columns(money(discount_nusd).alias("_discount_f"))
    fallback = pl.col("_or_fallback")  # a 429 retried inside OpenRouter (see datagen.traffic)
    responses = (
        pl.when(fallback)
        .then(
            pl.concat_list(
                pl.struct(pl.lit(429).alias("status")), pl.struct(pl.lit(200).alias("status"))
            )
        )
        .otherwise(pl.concat_list(pl.struct(pl.col("_http").alias("status"))))
    )
    finish = (
        pl.when(ok)
        .then(
            pl.when(pl.col("output_tokens") >= 16_000)
            .then(pl.lit("length"))
            .otherwise(pl.lit("stop"))
        )
        .otherwise(pl.lit("error"))
    )
    generation_time = pl.col("_latency_ms") - pl.col("_ttft_ms").fill_null(0)
    norm = 0.97
    data = pl.struct(
        pl.col("request_id").alias("id"),
        pl.when(ok).then(_response_id()).alias("upstream_id"),
        cost.alias("total_cost"),
        pl.when(ok & (pl.col("_discount_f") > 0))
        .then(pl.col("_discount_f"))
        .alias("cache_discount"),
        pl.lit(None, pl.Float64).alias("upstream_inference_cost"),
        cost.alias("usage"),
        iso_ms(pl.col("_started_ms"), "%Y-%m-%dT%H:%M:%S%.6f+00:00").alias("created_at"),
        pl.col("model"),
        pl.lit(None, pl.Int64).alias("app_id"),
        pl.lit(True).alias("streamed"),
        pl.lit(False).alias("cancelled"),
        by_provider(OPENROUTER_PROVIDER).alias("provider_name"),
        pl.col("_ttft_ms").alias("latency"),
        pl.lit(None, pl.Int64).alias("moderation_latency"),
        generation_time.alias("generation_time"),
        finish.alias("finish_reason"),
        finish.alias("native_finish_reason"),
        (pl.col("input_tokens") * norm).round(0).cast(pl.Int64).alias("tokens_prompt"),
        (pl.col("output_tokens") * norm).round(0).cast(pl.Int64).alias("tokens_completion"),
        pl.col("input_tokens").alias("native_tokens_prompt"),
        pl.col("output_tokens").alias("native_tokens_completion"),
        pl.lit(0).alias("native_tokens_completion_images"),
        pl.col("reasoning_tokens").alias("native_tokens_reasoning"),
        pl.col("cache_read_tokens").alias("native_tokens_cached"),
        pl.lit(0).alias("num_media_prompt"),
        pl.lit(0).alias("num_input_audio_prompt"),
        pl.lit(0).alias("num_media_completion"),
        pl.lit(0).alias("num_search_results"),
        pl.lit("https://app.acme.example/").alias("origin"),
        pl.lit(False).alias("is_byok"),
        pl.col("user").alias("external_user"),
        pl.lit("completions").alias("api_type"),
        pl.lit(None, pl.String).alias("router"),
        pl.col("service_tier"),
        responses.alias("provider_responses"),
        pl.col("trace_id").alias("session_id"),
    )
    return _framed(frame, encode(frame, [data.alias("data")]))


# --------------------------------------------------------------------------- Cloudflare
def cloudflare(frame: pl.DataFrame) -> pl.DataFrame:
    if not frame.height:
        return _empty()
    ok = _ok()
    metadata = frame.select(
        pl.struct(pl.col("feature"), pl.col("team"), pl.col("user")).struct.json_encode()
    ).to_series()
    frame = frame.with_columns(metadata.alias("_cf_metadata"))
    columns = [
        pl.col("request_id").alias("id"),
        iso_ms(pl.col("_started_ms"), "%Y-%m-%dT%H:%M:%SZ").alias("created_at"),
        by_spec([CLOUDFLARE_PROVIDER.get(m.provider, ("", ""))[0] for m in MODELS]).alias(
            "provider"
        ),
        pl.col("model"),
        pl.lit("chat").alias("model_type"),
        by_spec([CLOUDFLARE_PROVIDER.get(m.provider, ("", ""))[1] for m in MODELS]).alias("path"),
        pl.lit("chat").alias("request_type"),
        pl.lit("application/json").alias("request_content_type"),
        pl.when(ok)
        .then(pl.lit("text/event-stream"))
        .otherwise(pl.lit("application/json"))
        .alias("response_content_type"),
        pl.col("_http").alias("status_code"),
        ok.alias("success"),
        pl.col("gateway_cache_hit").alias("cached"),
        _tok("input_tokens").alias("tokens_in"),
        _tok("output_tokens").alias("tokens_out"),
        pl.col("_cost_f").alias("cost"),
        pl.lit(False).alias("custom_cost"),
        pl.col("_latency_ms").alias("duration"),
        pl.col("_cf_metadata").alias("metadata"),
        pl.lit(0).alias("step"),
    ]
    return _framed(frame, encode(frame, columns))


# --------------------------------------------------------------------------- OpenTelemetry
def _otel_attributes(ok: bool, openai: bool, retry: bool) -> pl.Expr:
    """The flat attribute object of one shape of span: absent attributes are left out."""
    system = by_provider(OTEL_SYSTEM)
    fields = [
        pl.lit("chat").alias("gen_ai.operation.name"),
        system.alias("gen_ai.system"),
        system.alias("gen_ai.provider.name"),
        by_spec([m.alias for m in MODELS]).alias("gen_ai.request.model"),
    ]
    if ok:
        fields += [
            pl.col("model").alias("gen_ai.response.model"),
            _response_id().alias("gen_ai.response.id"),
            pl.col("input_tokens").alias("gen_ai.usage.input_tokens"),
            pl.col("cache_read_tokens").alias("gen_ai.usage.cache_read.input_tokens"),
            pl.col("cache_write_tokens").alias("gen_ai.usage.cache_creation.input_tokens"),
            pl.col("output_tokens").alias("gen_ai.usage.output_tokens"),
            pl.col("reasoning_tokens").alias("gen_ai.usage.reasoning.output_tokens"),
            pl.concat_list(pl.lit("stop")).alias("gen_ai.response.finish_reasons"),
        ]
    if openai:
        fields.append(pl.col("service_tier").alias("openai.response.service_tier"))
    fields += [
        by_provider(OTEL_SERVER).alias("server.address"),
        pl.col("feature").alias("app.feature"),
        pl.col("team").alias("app.team"),
        pl.col("user").alias("user.id"),
    ]
    if retry:
        fields.append((pl.col("attempt") - 1).alias("http.request.resend_count"))
    if not ok:
        fields.append(_otel_error_type().alias("error.type"))
    return pl.struct(fields)


def _otel_error_type() -> pl.Expr:
    return (
        pl.when(pl.col("_http") == 408)
        .then(pl.lit("timeout"))
        .otherwise(pl.col("_http").cast(pl.String))
    )


def otel(frame: pl.DataFrame) -> pl.DataFrame:
    if not frame.height:
        return _empty()
    parts = []
    shapes = frame.with_columns(
        (pl.col("_status") == 0).alias("_ok"),
        (pl.col("provider") == "openai").alias("_openai"),
        (pl.col("attempt") > 1).alias("_retry"),
    ).partition_by(["_ok", "_openai", "_retry"], as_dict=True)
    for (ok, openai, retry), sub in sorted(shapes.items()):
        line = _otel_lines(sub, _otel_attributes(bool(ok), bool(openai), bool(retry)))
        parts.append(_framed(sub, line))
    return pl.concat(parts)


def _otel_lines(frame: pl.DataFrame, attributes: pl.Expr) -> pl.Series:
    ok = _ok()
    error_type = pl.when(~ok).then(_otel_error_type())
    status = pl.struct(
        pl.when(ok)
        .then(pl.lit("STATUS_CODE_OK"))
        .otherwise(pl.lit("STATUS_CODE_ERROR"))
        .alias("code"),
        pl.when(ok).then(pl.lit("")).otherwise(error_type).alias("message"),
    )
    columns = [
        pl.col("request_id").alias("traceId"),
        pl.col("_native").str.slice(0, 16).alias("spanId"),
        pl.lit("").alias("parentSpanId"),
        pl.format("chat {}", by_spec([m.alias for m in MODELS])).alias("name"),
        pl.lit("SPAN_KIND_CLIENT").alias("kind"),
        (pl.col("_started_ms").cast(pl.String) + "000000").alias("startTimeUnixNano"),
        ((pl.col("_started_ms") + pl.col("_latency_ms")).cast(pl.String) + "000000").alias(
            "endTimeUnixNano"
        ),
        attributes.alias("attributes"),
        status.alias("status"),
    ]
    return encode(frame, columns)


WRITERS = {
    "litellm": (litellm, "litellm/spend-logs-{day}.jsonl"),
    "helicone": (helicone, "helicone/requests-{day}.jsonl"),
    "openrouter": (openrouter, "openrouter/generations-{day}.jsonl"),
    "cloudflare": (cloudflare, "cloudflare/logs-{day}.jsonl"),
    "otel": (otel, "otel/spans-{day}.jsonl"),
}


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "_date": pl.Date,
            "_started_ms": pl.Int64,
            "_native": pl.String,
            "request_id": pl.String,
            "attempt": pl.Int32,
            "line": pl.String,
        }
    )


def gateway_lines(attempts: pl.DataFrame, gateway: str) -> pl.DataFrame:
    """Every line of one gateway in file order, with its day, request_id and attempt."""
    build, _ = WRITERS[gateway]
    frame = attempts.filter(pl.col("gateway") == gateway)
    frame = frame.with_columns(money(frame["_cost_nusd"]).alias("_cost_f"))
    return build(frame).sort(["_date", "_started_ms", "_native"])
