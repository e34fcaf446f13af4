"""Synthetic LiteLLM spend-log export (JSONL), vectorized, deterministic.

    python -m bench.gen_litellm --rows 1000000 --out bench/results/litellm_1000000.jsonl

One JSON object per line with the columns of LiteLLM's `LiteLLM_SpendLogs` table, in table
order, as a DB export writes them: ISO timestamps with milliseconds and `Z`, `metadata` a
nested object (`user_api_key_*`, `spend_logs_metadata.feature`, and
`additional_usage_values` whose shape depends on the provider: OpenAI-style
`prompt_tokens_details.cached_tokens` / `completion_tokens_details.reasoning_tokens`, or
Anthropic-style `cache_read_input_tokens` / `cache_creation_input_tokens` /
`cache_creation.ephemeral_1h_input_tokens`; keys a provider does not report are absent, not
null), `request_tags` a list, `cache_hit` the string "True"/"False".

The mix: 14 deployments over OpenAI, Azure, Anthropic, Bedrock, Vertex, Gemini, DeepSeek,
Mistral and Groq, about 4% embeddings, 2% failures and 0.5% streams without usage (0 and 0
tokens), 1.5% gateway cache hits, 0.2% re-logged rows (a request_id logged twice), a daily
traffic curve. `--bad-rate` adds truncated lines (a crashed writer), which readers must
quarantine rather than choke on.

Lines are built as text by Polars expressions (no Python loop) and written with Polars.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa


@dataclass(frozen=True)
class Deployment:
    model: str  # what LiteLLM sent upstream
    group: str  # model_group: the alias clients ask for
    provider: str  # custom_llm_provider
    api_base: str
    weight: float
    price_in: float  # $/MTok, for LiteLLM's own `spend` estimate
    price_out: float
    usage_style: str  # "openai" | "anthropic" | "none"
    reasoning: float = 0.0  # share of calls with reasoning tokens
    embedding: bool = False


DEPLOYMENTS: tuple[Deployment, ...] = (
    Deployment(
        "gpt-4o-2024-08-06", "gpt-4o", "openai", "https://api.openai.com/v1", 14, 2.5, 10, "openai"
    ),
    Deployment(
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini",
        "openai",
        "https://api.openai.com/v1",
        18,
        0.15,
        0.6,
        "openai",
    ),
    Deployment(
        "o3-2025-04-16",
        "o3",
        "openai",
        "https://api.openai.com/v1",
        3,
        2,
        8,
        "openai",
        reasoning=1.0,
    ),
    Deployment(
        "gpt-4.1-2025-04-14", "gpt-4.1", "openai", "https://api.openai.com/v1", 7, 2, 8, "openai"
    ),
    Deployment(
        "azure/gpt-4o-eu",
        "gpt-4o",
        "azure",
        "https://acme-eu.openai.azure.com/",
        5,
        2.5,
        10,
        "openai",
    ),
    Deployment(
        "claude-sonnet-4-20250514",
        "claude-sonnet-4",
        "anthropic",
        "https://api.anthropic.com/v1/messages",
        12,
        3,
        15,
        "anthropic",
        reasoning=0.1,
    ),
    Deployment(
        "claude-3-5-haiku-20241022",
        "claude-haiku",
        "anthropic",
        "https://api.anthropic.com/v1/messages",
        8,
        0.8,
        4,
        "anthropic",
    ),
    Deployment(
        "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0",
        "claude-sonnet-4",
        "bedrock",
        "https://bedrock-runtime.us-east-1.amazonaws.com",
        5,
        3,
        15,
        "anthropic",
    ),
    Deployment(
        "gemini-2.5-flash",
        "gemini-flash",
        "vertex_ai",
        "https://us-central1-aiplatform.googleapis.com",
        9,
        0.3,
        2.5,
        "openai",
        reasoning=0.3,
    ),
    Deployment(
        "gemini/gemini-2.5-pro",
        "gemini-pro",
        "gemini",
        "https://generativelanguage.googleapis.com",
        3,
        1.25,
        10,
        "openai",
        reasoning=1.0,
    ),
    Deployment(
        "deepseek-chat",
        "deepseek-chat",
        "deepseek",
        "https://api.deepseek.com",
        4,
        0.27,
        1.1,
        "openai",
    ),
    Deployment(
        "mistral-large-latest",
        "mistral-large",
        "mistral",
        "https://api.mistral.ai/v1",
        2,
        2,
        6,
        "none",
    ),
    Deployment(
        "groq/llama-3.3-70b-versatile",
        "llama-70b",
        "groq",
        "https://api.groq.com/openai/v1",
        3,
        0.59,
        0.79,
        "none",
    ),
    Deployment(
        "text-embedding-3-small",
        "text-embedding-3-small",
        "openai",
        "https://api.openai.com/v1",
        4,
        0.02,
        0,
        "none",
        embedding=True,
    ),
)

FEATURES = (
    "search.rerank",
    "search.answer",
    "support.reply",
    "support.triage",
    "devtools.review",
    "devtools.complete",
    "data.extract",
    "growth.email",
    "research.agent",
    "platform.eval",
    "web.chat",
    "web.summarize",
)
TEAMS = ("web", "search", "support", "devtools", "data", "growth", "research", "platform")
HOURLY = np.array(
    [
        2,
        1.5,
        1.2,
        1,
        1,
        1.3,
        2,
        3.5,
        5.5,
        7,
        7.5,
        7.5,
        7,
        7.5,
        7.5,
        7,
        6.5,
        5.5,
        4.5,
        4,
        3.5,
        3,
        2.5,
        2,
    ]
)


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> pl.Series:
    """n random lower-case hex strings of 2*nbytes characters."""
    buf = pa.py_buffer(rng.bytes(n * nbytes))
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(nbytes), n, [None, buf])
    series = pl.from_arrow(arr)
    assert isinstance(series, pl.Series)
    return series.cast(pl.Binary).bin.encode("hex")


def _pick(values: list[str] | tuple[str, ...], index: np.ndarray) -> pl.Series:
    return pl.Series(list(values), dtype=pl.String).gather(index)


def _q(expr: pl.Expr) -> pl.Expr:
    """A JSON string literal for generated text (it never holds quotes or backslashes)."""
    return pl.lit('"') + expr + pl.lit('"')


def _kv(key: str, value: pl.Expr) -> pl.Expr:
    return pl.lit(f'"{key}":') + value


def _obj(*parts: pl.Expr) -> pl.Expr:
    """A JSON object from optional "key":value fragments (null fragments are left out)."""
    return pl.lit("{") + pl.concat_str(list(parts), separator=",", ignore_nulls=True) + pl.lit("}")


def generate(rows: int, seed: int = 0, days: int = 1, bad_rate: float = 0.0) -> pl.DataFrame:
    """A one-column frame (`line`) of JSON lines."""
    rng = np.random.default_rng(seed)
    n = rows
    weights = np.array([d.weight for d in DEPLOYMENTS], dtype=float)
    dep = rng.choice(len(DEPLOYMENTS), size=n, p=weights / weights.sum())

    def per_dep(values: list[object], dtype: pl.DataType) -> pl.Series:
        return pl.Series(values, dtype=dtype).gather(dep)

    usage_style = per_dep([d.usage_style for d in DEPLOYMENTS], pl.String()).to_numpy()
    embedding = np.array([d.embedding for d in DEPLOYMENTS])[dep]
    reasoning_share = np.array([d.reasoning for d in DEPLOYMENTS])[dep]
    price_in = np.array([d.price_in for d in DEPLOYMENTS])[dep]
    price_out = np.array([d.price_out for d in DEPLOYMENTS])[dep]

    # --- tokens: prompt includes cached tokens (LiteLLM normalizes to OpenAI semantics)
    prompt = np.maximum(1, rng.lognormal(np.log(1800), 1.1, n)).astype(np.int64)
    prompt = np.where(embedding, np.maximum(1, rng.lognormal(np.log(60), 0.8, n)), prompt).astype(
        np.int64
    )
    completion = np.where(embedding, 0, np.maximum(1, rng.lognormal(np.log(350), 0.9, n))).astype(
        np.int64
    )
    has_reasoning = rng.random(n) < reasoning_share
    reasoning = np.where(has_reasoning, (completion * rng.uniform(0.2, 0.8, n)).astype(np.int64), 0)
    completion = completion + reasoning  # reasoning is inside completion_tokens
    openai_cached = np.where(
        (usage_style == "openai") & (prompt >= 1024) & (rng.random(n) < 0.45),
        (rng.uniform(0.3, 0.95, n) * prompt // 128 * 128).astype(np.int64),
        0,
    )
    anthropic = usage_style == "anthropic"
    cache_read = np.where(
        anthropic & (rng.random(n) < 0.5), (prompt * rng.uniform(0.3, 0.8, n)).astype(np.int64), 0
    )
    cache_write = np.where(
        anthropic & (rng.random(n) < 0.25),
        ((prompt - cache_read) * rng.uniform(0.1, 0.9, n)).astype(np.int64),
        0,
    )
    write_1h = np.where(
        rng.random(n) < 0.3, (cache_write * rng.uniform(0, 1, n)).astype(np.int64), 0
    )

    # --- outcomes
    u = rng.random(n)
    failed = u < 0.02
    no_usage = (u >= 0.02) & (u < 0.025)  # streams that never reported usage
    cache_hit = (u >= 0.025) & (u < 0.04)
    zero = failed | no_usage
    prompt = np.where(zero, 0, prompt)
    completion = np.where(zero, 0, completion)
    reasoning = np.where(zero, 0, reasoning)
    openai_cached = np.where(zero, 0, openai_cached)
    cache_read = np.where(zero, 0, cache_read)
    cache_write = np.where(zero, 0, cache_write)
    write_1h = np.where(zero, 0, write_1h)
    spend = np.where(
        cache_hit | zero,
        0.0,
        np.round((prompt * price_in + completion * price_out) / 1e6, 10),
    )

    # --- time: a daily curve over `days` days from 2025-06-01, milliseconds
    day = rng.integers(0, days, n)
    hour = rng.choice(24, size=n, p=HOURLY / HOURLY.sum())
    start_ms = (day * 86_400_000 + hour * 3_600_000 + rng.integers(0, 3_600_000, n)) + int(
        dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp() * 1000
    )
    ttft_ms = np.maximum(40, rng.lognormal(np.log(550), 0.6, n)).astype(np.int64)
    duration_ms = ttft_ms + (completion / rng.uniform(40, 140, n) * 1000).astype(np.int64) + 30
    duration_ms = np.where(failed, rng.integers(50, 3000, n), duration_ms)
    streamed = rng.random(n) < 0.6

    feature_i = rng.integers(0, len(FEATURES), n)
    team_i = feature_i % len(TEAMS)
    key_pool = [hashlib.sha256(f"sk-virtual-{i}".encode()).hexdigest() for i in range(40)]
    key_i = (team_i * 5 + rng.integers(0, 5, n)) % len(key_pool)

    ids = _hex_ids(rng, n, 12)
    prefix = np.where(anthropic, "msg_", np.where(embedding, "emb-", "chatcmpl-"))
    # 0.2% of rows are logged twice (LiteLLM double logging): reuse the previous row's id
    dup = rng.random(n) < 0.002
    dup[0] = False

    frame = pl.DataFrame(
        {
            "dep": dep,
            "rid": pl.Series(prefix) + ids,
            "dup": dup,
            "call_type": np.where(
                embedding, "aembedding", np.where(rng.random(n) < 0.1, "aresponses", "acompletion")
            ),
            "api_key": _pick(key_pool, key_i),
            "spend": spend,
            "prompt": prompt,
            "completion": completion,
            "reasoning": reasoning,
            "openai_cached": openai_cached,
            "cache_read": cache_read,
            "cache_write": cache_write,
            "write_1h": write_1h,
            "start_ms": start_ms,
            "ttft_ms": ttft_ms,
            "duration_ms": duration_ms,
            "streamed": streamed & ~embedding,
            "model": per_dep([d.model for d in DEPLOYMENTS], pl.String()),
            "model_id": per_dep(
                [hashlib.md5(d.model.encode()).hexdigest()[:16] for d in DEPLOYMENTS], pl.String()
            ),
            "group": per_dep([d.group for d in DEPLOYMENTS], pl.String()),
            "provider": per_dep([d.provider for d in DEPLOYMENTS], pl.String()),
            "api_base": per_dep([d.api_base for d in DEPLOYMENTS], pl.String()),
            "style": usage_style,
            "feature": _pick(FEATURES, feature_i),
            "team": _pick(TEAMS, team_i),
            "end_user": pl.Series(rng.integers(0, 50_000, n)).cast(pl.String),
            "has_user": rng.random(n) < 0.7,
            "session": rng.integers(0, 200_000, n),
            "has_session": rng.random(n) < 0.3,
            "failed": failed,
            "cache_hit": cache_hit,
        }
    )
    c = pl.col
    ts_fmt = "%Y-%m-%dT%H:%M:%S%.3fZ"

    def iso(ms: pl.Expr) -> pl.Expr:
        return _q(pl.from_epoch(ms, time_unit="ms").dt.to_string(ts_fmt))

    num = lambda name: c(name).cast(pl.String)  # noqa: E731
    request_id = pl.when(c("dup")).then(c("rid").shift(1)).otherwise(c("rid"))
    openai_usage = _obj(
        _kv(
            "prompt_tokens_details",
            _obj(_kv("cached_tokens", num("openai_cached")), pl.lit('"audio_tokens":0')),
        ),
        _kv("completion_tokens_details", _obj(_kv("reasoning_tokens", num("reasoning")))),
    )
    anthropic_usage = _obj(
        _kv("cache_read_input_tokens", num("cache_read")),
        _kv("cache_creation_input_tokens", num("cache_write")),
        _kv(
            "cache_creation",
            _obj(
                _kv(
                    "ephemeral_5m_input_tokens", (c("cache_write") - c("write_1h")).cast(pl.String)
                ),
                _kv("ephemeral_1h_input_tokens", num("write_1h")),
            ),
        ),
        pl.when(c("reasoning") > 0).then(
            _kv("completion_tokens_details", _obj(_kv("reasoning_tokens", num("reasoning"))))
        ),
    )
    additional = (
        pl.when(c("style") == "openai")
        .then(openai_usage)
        .when(c("style") == "anthropic")
        .then(anthropic_usage)
        .otherwise(pl.lit("{}"))
    )
    status = pl.when(c("failed")).then(pl.lit("failure")).otherwise(pl.lit("success"))
    metadata = _obj(
        _kv("user_api_key", _q(c("api_key"))),
        _kv("user_api_key_alias", _q(c("team") + pl.lit("-svc"))),
        _kv("user_api_key_team_id", _q(pl.lit("team_") + c("team"))),
        _kv("user_api_key_team_alias", _q(c("team"))),
        _kv("user_api_key_user_id", pl.lit("null")),
        _kv("spend_logs_metadata", _obj(_kv("feature", _q(c("feature"))))),
        _kv("additional_usage_values", additional),
        _kv("status", _q(status)),
        pl.when(c("failed")).then(
            _kv(
                "error_information",
                pl.lit('{"error_code":"429","error_class":"RateLimitError"}'),
            )
        ),
    )
    tags = (
        pl.lit('["feature:')
        + c("feature").str.split(".").list.first()
        + pl.lit('","env:prod","team:')
        + c("team")
        + pl.lit('"]')
    )
    null_or = lambda cond, expr: pl.when(cond).then(expr).otherwise(pl.lit("null"))  # noqa: E731
    line = _obj(
        _kv("request_id", _q(request_id)),
        _kv("call_type", _q(c("call_type"))),
        _kv("api_key", _q(c("api_key"))),
        _kv("spend", num("spend")),
        _kv("total_tokens", (c("prompt") + c("completion")).cast(pl.String)),
        _kv("prompt_tokens", num("prompt")),
        _kv("completion_tokens", num("completion")),
        _kv("startTime", iso(c("start_ms"))),
        _kv("endTime", iso(c("start_ms") + c("duration_ms"))),
        _kv("request_duration_ms", num("duration_ms")),
        _kv(
            "completionStartTime",
            null_or(c("streamed") & ~c("failed"), iso(c("start_ms") + c("ttft_ms"))),
        ),
        _kv("model", _q(c("model"))),
        _kv("model_id", _q(c("model_id"))),
        _kv("model_group", _q(c("group"))),
        _kv("custom_llm_provider", _q(c("provider"))),
        _kv("api_base", _q(c("api_base"))),
        _kv("user", pl.lit('""')),
        _kv("metadata", metadata),
        _kv(
            "cache_hit", _q(pl.when(c("cache_hit")).then(pl.lit("True")).otherwise(pl.lit("False")))
        ),
        _kv(
            "cache_key",
            pl.when(c("cache_hit")).then(_q(c("rid").str.slice(0, 16))).otherwise(pl.lit('""')),
        ),
        _kv("request_tags", tags),
        _kv("team_id", _q(pl.lit("team_") + c("team"))),
        _kv("organization_id", pl.lit('"org_acme"')),
        _kv("end_user", null_or(c("has_user"), _q(pl.lit("cust_") + c("end_user")))),
        _kv("requester_ip_address", pl.lit("null")),
        _kv("session_id", null_or(c("has_session"), _q(pl.lit("sess-") + num("session")))),
        _kv("status", _q(status)),
        _kv("mcp_namespaced_tool_name", pl.lit("null")),
        _kv("agent_id", pl.lit("null")),
    )
    out = frame.select(line.alias("line"))
    if bad_rate > 0:
        bad = pl.Series(rng.random(n) < bad_rate)
        out = out.with_columns(
            pl.when(bad).then(pl.col("line").str.slice(0, 120)).otherwise(pl.col("line"))
        )
    return out


def write_jsonl(frame: pl.DataFrame, out: Path) -> None:
    """One line per row, verbatim (CSV writer with no quoting, no header)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    frame.write_csv(tmp, include_header=False, quote_style="never", separator="\x1f")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--bad-rate", type=float, default=0.0, help="share of truncated lines")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    frame = generate(args.rows, args.seed, args.days, args.bad_rate)
    t1 = time.perf_counter()
    write_jsonl(frame, args.out)
    t2 = time.perf_counter()
    size = args.out.stat().st_size
    print(
        f"{args.rows:,} LiteLLM spend-log rows -> {args.out} ({size / 1e6:,.0f} MB):"
        f" generated in {t1 - t0:.1f} s, written in {t2 - t1:.1f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
