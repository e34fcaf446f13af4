"""Synthetic canonical requests for benchmarks: realistic mix, vectorized, deterministic.

    python -m bench.gen_canonical --rows 10000000 --out bench/results/canonical_10000000.parquet

Every column of CANONICAL_SCHEMA with its dtype, plus `row_issues` (all null). The mix:
~35 real models that genai-prices prices (OpenAI incl. flex/priority tiers and an embedding
model, Anthropic with 5m/1h cache writes, Google with >200K-token prompts, DeepSeek with its
off-peak window, AWS Bedrock ids, Azure via the OpenAI fallback, Mistral, xAI, Groq,
Cohere), ~0.5% unknown models, cache reads/writes, reasoning tokens, ~5% batch, ~1.5%
gateway cache hits, statuses with missing usage on rejected/timed-out calls, 12 features,
8 teams, a daily traffic curve. Columns the generator does not know are written as nulls.
Token subsets are consistent: cache_read + cache_write <= input, cache_write_1h <=
cache_write, reasoning <= output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from transforms.schema import CANONICAL_SCHEMA, MONEY, ROW_ISSUES


@dataclass(frozen=True)
class ModelSpec:
    provider: str  # as a gateway logs it
    model: str  # as logged
    weight: float  # share of traffic (relative)
    price_in: float  # rough $/MTok, only for the gateway's own cost estimate
    price_out: float
    # "none", "read" (automatic prompt caching) or "write" (explicit cache writes: Anthropic)
    cache: str = "read"
    reasoning: float = 0.0  # share of requests with reasoning tokens
    long_context: bool = False  # can take prompts above 200K tokens
    tiers: bool = False  # OpenAI-style flex/priority service tiers
    batch: bool = True  # offers a batch API
    embedding: bool = False
    regions: tuple[str, ...] = ()


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("openai", "gpt-4o", 8, 2.5, 10, tiers=True),
    ModelSpec("openai", "gpt-4o-mini", 12, 0.15, 0.6, tiers=True),
    ModelSpec("openai", "gpt-4o-2024-08-06", 2, 2.5, 10, tiers=True),
    ModelSpec("openai", "o3", 2, 2, 8, reasoning=1.0, tiers=True),
    ModelSpec("openai", "o4-mini", 2, 1.1, 4.4, reasoning=1.0, tiers=True),
    ModelSpec("openai", "gpt-4.1", 5, 2, 8, long_context=True, tiers=True),
    ModelSpec("openai", "gpt-4.1-mini", 5, 0.4, 1.6, long_context=True, tiers=True),
    ModelSpec("openai", "gpt-5", 4, 1.25, 10, reasoning=0.9, tiers=True),
    ModelSpec("openai", "gpt-5-mini", 5, 0.25, 2, reasoning=0.9, tiers=True),
    ModelSpec("openai", "text-embedding-3-small", 3, 0.02, 0, cache="none", embedding=True),
    ModelSpec(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        8,
        3,
        15,
        cache="write",
        reasoning=0.2,
        long_context=True,
    ),
    ModelSpec("anthropic", "claude-haiku-4-5", 6, 1, 5, cache="write"),
    ModelSpec("anthropic", "claude-opus-4-1-20250805", 1.5, 15, 75, cache="write", reasoning=0.3),
    ModelSpec("anthropic", "claude-sonnet-4-20250514", 2, 3, 15, cache="write", long_context=True),
    ModelSpec("google", "gemini-2.5-pro", 3, 1.25, 10, reasoning=1.0, long_context=True),
    ModelSpec("google", "gemini-2.5-flash", 6, 0.3, 2.5, reasoning=0.6, long_context=True),
    ModelSpec("google", "gemini-2.5-flash-lite", 3, 0.1, 0.4, long_context=True),
    ModelSpec("google", "gemini-2.0-flash", 2, 0.1, 0.4),
    ModelSpec(
        "vertex_ai",
        "gemini-2.5-pro",
        1,
        1.25,
        10,
        reasoning=1.0,
        regions=("us-central1", "europe-west4"),
    ),
    ModelSpec("deepseek", "deepseek-chat", 3, 0.27, 1.1, batch=False),
    ModelSpec("deepseek", "deepseek-reasoner", 1, 0.55, 2.19, reasoning=1.0, batch=False),
    ModelSpec(
        "bedrock",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        2,
        3,
        15,
        cache="write",
        regions=("us-east-1", "us-west-2"),
    ),
    ModelSpec(
        "bedrock",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        2,
        3,
        15,
        cache="write",
        reasoning=0.2,
        regions=("us-east-1", "eu-central-1"),
    ),
    ModelSpec("aws", "amazon.nova-pro-v1:0", 1, 0.8, 3.2, cache="none", regions=("us-east-1",)),
    ModelSpec("aws", "amazon.nova-lite-v1:0", 1, 0.06, 0.24, cache="none", regions=("us-east-1",)),
    ModelSpec(
        "bedrock",
        "meta.llama3-3-70b-instruct-v1:0",
        1,
        0.72,
        0.72,
        cache="none",
        regions=("us-west-2",),
    ),
    ModelSpec("azure", "gpt-4o", 2, 2.5, 10, regions=("eastus", "swedencentral")),
    ModelSpec("azure", "gpt-4o-mini", 1, 0.15, 0.6, regions=("eastus",)),
    ModelSpec("mistral", "mistral-large-latest", 1, 2, 6, cache="none", batch=False),
    ModelSpec("mistral", "mistral-small-latest", 1.5, 0.1, 0.3, cache="none", batch=False),
    ModelSpec("mistral", "codestral-latest", 1, 0.3, 0.9, cache="none", batch=False),
    ModelSpec("xai", "grok-3", 0.5, 3, 15, batch=False),
    ModelSpec("x-ai", "grok-3-mini", 0.5, 0.3, 0.5, reasoning=1.0, batch=False),
    ModelSpec("groq", "llama-3.3-70b-versatile", 1, 0.59, 0.79, cache="none", batch=False),
    ModelSpec("cohere", "command-r-plus", 0.5, 2.5, 10, cache="none", batch=False),
)
# Logged models no catalog knows (fine-tunes, previews, a self-hosted provider).
UNKNOWN_MODELS: tuple[tuple[str, str], ...] = (
    ("openai", "gpt-4o-internal-ft"),
    ("anthropic", "claude-next-preview"),
    ("acme", "acme-llm-v2"),
    ("mistral", "mistral-huge-2"),
)
UNKNOWN_SHARE = 0.005
FEATURES = (
    "chat",
    "search",
    "summarize",
    "autocomplete",
    "support-bot",
    "code-review",
    "translate",
    "extract",
    "classify",
    "embed-docs",
    "agent",
    "report-gen",
)
FEATURE_WEIGHTS = (20, 12, 10, 14, 8, 6, 4, 7, 6, 5, 5, 3)
TEAMS = ("web", "mobile", "search", "support", "platform", "data", "growth", "research")
GATEWAYS = (("litellm", 0.6), ("portkey", 0.25), ("helicone", 0.15))
STATUSES = (
    ("success", 0.965),
    ("error", 0.02),
    ("timeout", 0.008),
    ("rejected", 0.005),
    ("cancelled", 0.002),
)
BATCH_SHARE = 0.065  # of rows whose model has a batch API: ~5% overall
LONG_PROMPT_SHARE = 0.002  # of rows of long-context models
CACHE_HIT_SHARE = 0.015  # of successful chat requests, served by the gateway's cache
CHUNK_ROWS = 1_000_000  # generated (and written) one chunk at a time
# Parquet row groups: readers such as DuckDB parallelize a scan by row group.
ROW_GROUP_ROWS = 250_000
USERS = 20_000
API_KEYS = 40
DEFAULT_START = dt.date(2025, 10, 1)
# Traffic by UTC hour: low at night (UTC), peak in the US/EU working overlap.
# fmt: off
HOURLY = np.array([2, 1.5, 1.2, 1, 1, 1.2, 1.8, 3, 4.5, 5.5, 6, 6.5,
                   7, 7.5, 7.5, 7, 6.5, 6, 5, 4.5, 4, 3.5, 3, 2.5])
# fmt: on


def _pick(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    """n draws of indices 0..len(weights)-1 with the given relative weights (int32)."""
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(n), side="right").astype(np.int32)


def _lognormal(
    rng: np.random.Generator, n: int, median: float, sigma: float, lo: int, hi: int
) -> np.ndarray:
    return np.clip(rng.lognormal(np.log(median), sigma, n), lo, hi).astype(np.int64)


def _chunk(
    rng: np.random.Generator, n: int, offset: int, seed: int, days: int, start: dt.date
) -> pl.DataFrame:
    specs = MODELS
    nm = len(specs)
    attr = {
        name: np.array([getattr(s, name) for s in specs])
        for name in (
            "price_in",
            "price_out",
            "reasoning",
            "long_context",
            "tiers",
            "batch",
            "embedding",
        )
    }
    cache_kind = np.array([{"none": 0, "read": 1, "write": 2}[s.cache] for s in specs])

    # model: known models by weight, then ~0.5% unknown
    m = _pick(rng, n, np.array([s.weight for s in specs], dtype=float))
    unknown = rng.random(n) < UNKNOWN_SHARE
    m_unknown = rng.integers(0, len(UNKNOWN_MODELS), n).astype(np.int32)
    combined = np.where(unknown, nm + m_unknown, m)

    # time: a daily curve, spread over `days` days
    day = rng.integers(0, days, n)
    hour = _pick(rng, n, HOURLY)
    micros = (day * 86_400 + hour * 3_600) * 1_000_000 + rng.integers(0, 3_600_000_000, n)
    epoch0 = int(dt.datetime.combine(start, dt.time(0), dt.UTC).timestamp()) * 1_000_000
    started = epoch0 + micros

    # status: rejected / timeout calls carry no usage, errors only their prompt
    status_idx = _pick(rng, n, np.array([w for _, w in STATUSES]))
    success, error, timeout, rejected, cancelled = (status_idx == i for i in range(len(STATUSES)))

    # tokens
    is_emb = attr["embedding"][m] & ~unknown
    input_tokens = np.where(
        is_emb, _lognormal(rng, n, 400, 1.0, 1, 8_000), _lognormal(rng, n, 1_800, 1.2, 1, 128_000)
    )
    long = (attr["long_context"][m] & ~unknown) & (rng.random(n) < LONG_PROMPT_SHARE)
    input_tokens = np.where(long, rng.integers(200_001, 900_000, n), input_tokens)
    visible_out = np.where(is_emb, 0, _lognormal(rng, n, 350, 1.0, 1, 16_000))
    has_reasoning = (rng.random(n) < attr["reasoning"][m]) & ~unknown
    reasoning = np.where(has_reasoning, _lognormal(rng, n, 900, 1.1, 16, 32_000), 0)
    output_tokens = visible_out + reasoning
    # cancelled streams stop part-way; errors bill the prompt only
    cut = np.where(cancelled, rng.random(n), 1.0)
    output_tokens = np.floor(output_tokens * cut).astype(np.int64)
    reasoning = np.minimum(reasoning, output_tokens)
    output_tokens = np.where(error, 0, output_tokens)
    reasoning = np.where(error, 0, reasoning)

    kind = np.where(unknown, 1, cache_kind[m])
    cached = (kind > 0) & (rng.random(n) < 0.35)
    cache_read = np.where(cached, np.floor(input_tokens * rng.uniform(0.2, 0.9, n)), 0).astype(
        np.int64
    )
    writes = (kind == 2) & (rng.random(n) < 0.2)
    cache_write = np.where(
        writes, np.floor((input_tokens - cache_read) * rng.uniform(0.1, 0.9, n)), 0
    ).astype(np.int64)
    cache_write_1h = np.where(
        writes & (rng.random(n) < 0.3), np.floor(cache_write * rng.random(n)), 0
    ).astype(np.int64)

    # context: batch, service tier, region
    batch = (attr["batch"][m] & ~unknown) & (rng.random(n) < BATCH_SHARE)
    tier_draw = rng.random(n)
    openai_tier = np.select(
        [tier_draw < 0.08, tier_draw < 0.16, tier_draw < 0.2], [3, 1, 2], default=0
    )
    other_tier = np.where(tier_draw < 0.5, 0, 3)
    tier_idx = np.where(
        attr["tiers"][m] & ~unknown & ~batch, openai_tier, np.where(batch, 0, other_tier)
    )
    region_values: list[str | None] = [None]
    region_slot: list[list[int]] = []
    for s in specs:
        slots = []
        for r in s.regions:
            if r not in region_values:
                region_values.append(r)
            slots.append(region_values.index(r))
        region_slot.append(slots or [0])
    max_r = max(len(x) for x in region_slot)
    region_table = np.array([x + [x[0]] * (max_r - len(x)) for x in region_slot])
    region_choice = np.floor(rng.random(n) * np.array([len(x) for x in region_slot])[m]).astype(
        np.int64
    )
    region_idx = np.where(unknown, 0, region_table[m, region_choice])

    # who: feature -> mostly one owning team; users and keys
    feature_idx = _pick(rng, n, np.array(FEATURE_WEIGHTS, dtype=float))
    team_idx = np.where(
        rng.random(n) < 0.9, feature_idx % len(TEAMS), rng.integers(0, len(TEAMS), n)
    )
    gateway_idx = _pick(rng, n, np.array([w for _, w in GATEWAYS]))

    # latency
    ttft = _lognormal(rng, n, 600_000, 0.6, 50_000, 30_000_000)
    duration = ttft + output_tokens * rng.integers(5_000, 25_000, n)

    # the gateway's own cost estimate (rough per-model prices) in 1e-10 USD
    est = (
        (input_tokens * attr["price_in"][m] + output_tokens * attr["price_out"][m]) * 1e4
    ).astype(np.int64)

    no_usage = rejected | timeout  # usage the provider did not report stays null
    raw = pl.DataFrame(
        {
            "_i": np.arange(offset, offset + n, dtype=np.int64),
            "_attempt": np.where((rng.random(n) < 0.02) & ~success, 2, 1).astype(np.int32),
            "_started": started,
            "_ttft": ttft,
            "_duration": duration,
            "_no_first": no_usage | error | is_emb,
            "_batch": batch,
            "_no_usage": no_usage,
            "_no_cache": kind == 0,
            "_no_write": kind != 2,
            "_no_reasoning": (attr["reasoning"][m] == 0) | unknown,
            "_no_gateway_cost": (rng.random(n) < 0.3) | unknown | no_usage,
            # answered from the gateway's own cache: the provider was never called
            "_cache_hit": success & ~is_emb & (rng.random(n) < CACHE_HIT_SHARE),
            "_est": est,
            "input_tokens": input_tokens,
            "cache_read_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "cache_write_1h_tokens": cache_write_1h,
            "output_tokens": output_tokens,
            "reasoning_tokens": reasoning,
            **{
                f"_{name}": idx.astype(np.uint32)
                for name, idx in (
                    ("model", combined),
                    ("region", region_idx),
                    ("tier", tier_idx),
                    ("gateway", gateway_idx),
                    ("feature", feature_idx),
                    ("team", team_idx),
                    (
                        "user",
                        _pick(rng, n, 1.0 / np.arange(1, USERS + 1) ** 1.1),
                    ),  # a few heavy users
                    ("key", rng.integers(0, API_KEYS, n)),
                    ("status", status_idx),
                    ("modality", is_emb.astype(np.int32)),
                )
            },
        }
    )

    def lookup(values: Sequence[str | None], index: str) -> pl.Expr:
        return pl.lit(pl.Series(values, dtype=pl.String)).gather(pl.col(index))

    def unless(mask: str, expr: pl.Expr) -> pl.Expr:
        return pl.when(~pl.col(mask)).then(expr)

    def ts(micros: pl.Expr) -> pl.Expr:
        return micros.cast(pl.Datetime("us", "UTC"))

    no_usage_or = pl.col("_no_usage").or_
    columns: dict[str, pl.Expr] = {
        "request_id": pl.concat_str(pl.lit(f"req_{seed}_"), pl.col("_i").cast(pl.String)),
        "attempt": pl.col("_attempt"),
        "trace_id": pl.concat_str(pl.lit(f"tr_{seed}_"), (pl.col("_i") // 2).cast(pl.String)),
        "started_at": ts(pl.col("_started")),
        "first_token_at": unless("_no_first", ts(pl.col("_started") + pl.col("_ttft"))),
        "ended_at": ts(pl.col("_started") + pl.col("_duration")),
        "gateway": lookup([g for g, _ in GATEWAYS], "_gateway"),
        "provider": lookup([s.provider for s in specs] + [p for p, _ in UNKNOWN_MODELS], "_model"),
        "model": lookup([s.model for s in specs] + [mm for _, mm in UNKNOWN_MODELS], "_model"),
        "region": lookup(region_values, "_region"),
        "service_tier": lookup(["default", "flex", "priority", None], "_tier"),
        "batch": pl.col("_batch"),
        "feature": lookup(list(FEATURES), "_feature"),
        "team": lookup(list(TEAMS), "_team"),
        "user": lookup([f"user_{i:05d}" for i in range(USERS)], "_user"),
        "api_key_id": lookup([f"key_{i:02d}" for i in range(API_KEYS)], "_key"),
        "status": lookup([st for st, _ in STATUSES], "_status"),
        "modality": lookup(["text", "embedding"], "_modality"),
        "input_tokens": unless("_no_usage", pl.col("input_tokens")),
        "cache_read_tokens": pl.when(~no_usage_or(pl.col("_no_cache"))).then(
            pl.col("cache_read_tokens")
        ),
        "cache_write_tokens": pl.when(~no_usage_or(pl.col("_no_write"))).then(
            pl.col("cache_write_tokens")
        ),
        "cache_write_1h_tokens": pl.when(~no_usage_or(pl.col("_no_write"))).then(
            pl.col("cache_write_1h_tokens")
        ),
        "output_tokens": unless("_no_usage", pl.col("output_tokens")),
        "reasoning_tokens": pl.when(~no_usage_or(pl.col("_no_reasoning"))).then(
            pl.col("reasoning_tokens")
        ),
        "gateway_cost_usd": unless(
            "_no_gateway_cost",
            pl.when(pl.col("_cache_hit"))
            .then(pl.lit(0, MONEY))
            .otherwise(
                (
                    pl.col("_est").cast(pl.Decimal(38, 10))
                    * pl.lit(Decimal("1e-10"), pl.Decimal(38, 10))
                ).cast(MONEY)
            ),
        ),
        "gateway_cache_hit": pl.col("_cache_hit"),
    }
    return raw.select(
        *[
            (columns[name] if name in columns else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in CANONICAL_SCHEMA.items()
        ],
        pl.lit(None, pl.String).alias(ROW_ISSUES),
    )


def generate(
    rows: int,
    seed: int = 0,
    days: int = 1,
    start: dt.date = DEFAULT_START,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pl.DataFrame]:
    """The requests in chunks of `chunk_rows` (deterministic for a given seed and chunk size)."""
    rng = np.random.default_rng(seed)
    for offset in range(0, rows, chunk_rows):
        yield _chunk(rng, min(chunk_rows, rows - offset), offset, seed, days, start)


def generate_frame(
    rows: int, seed: int = 0, days: int = 1, start: dt.date = DEFAULT_START
) -> pl.DataFrame:
    frames = list(generate(rows, seed, days, start))
    return (
        pl.concat(frames)
        if frames
        else _chunk(np.random.default_rng(seed), 0, 0, seed, days, start)
    )


def write(
    rows: int, out: Path, seed: int = 0, days: int = 1, start: dt.date = DEFAULT_START
) -> float:
    """Generate and write; returns seconds taken."""
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".parquet.tmp")
    writer: pq.ParquetWriter | None = None
    try:
        for frame in generate(rows, seed=seed, days=days, start=start):
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="lz4")
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(out)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=1, help="spread requests over this many days")
    parser.add_argument(
        "--start", type=dt.date.fromisoformat, default=DEFAULT_START, help="first day (UTC)"
    )
    args = parser.parse_args(argv)
    seconds = write(args.rows, args.out, seed=args.seed, days=args.days, start=args.start)
    print(f"wrote {args.rows:,} rows to {args.out} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
