"""Simulated traffic: the ground-truth upstream attempts, vectorized with numpy and Polars.

One frame, one row per upstream attempt, holding every canonical column (the truth the
adapters must reproduce) plus private `_` columns the gateway writers need (native ids,
error codes, latencies in ms, spec/feature/team indices).

How a day is made: the day's volume is `requests_per_day` x the weekday factor x a few percent
of noise; each logical request picks a feature (its weight), a model from the feature's mix
(release-gated, see datagen.org), an hour from the diurnal curve, a gateway from the model's
routing shares (batch and media requests always go through LiteLLM), then its tokens:

* prompt sizes lognormal around the feature's median; on long-context models a small share
  gets a prompt above 200K tokens (long-context rates);
* output lognormal; reasoning tokens (o3, Gemini 2.5 Pro always; others sometimes) are ADDED
  to the visible output, so reasoning <= output always;
* provider prompt caching: OpenAI automatic reads in 128-token steps (>= 1024), Anthropic and
  Bedrock explicit reads and/or writes with 30% of the writes on the 1-hour TTL, Gemini and
  DeepSeek implicit reads; cache_read + cache_write <= input always.

Each gateway only gets traffic it can log, so that the provider reports match whatever an
adapter can read: no 1h cache writes through Helicone, OpenRouter, Cloudflare, OTel or to
Bedrock; no cache writes through OpenRouter; no cache reads through Cloudflare. Helicone
and Cloudflare log no reasoning count: their output counts include any reasoning, priced at
the output rate (the same rate for every model here), and the truth reasoning is null.

Attempts: ~2% errors (HTTP 429/500/503) and ~1% timeouts (408, 60 s). Failed attempts on
LiteLLM and OTel (the gateways that log each upstream attempt) are retried with backoff as
attempt 2, then 3, under the same request_id. ~6% of OpenRouter generations were retried
inside OpenRouter after a 429 (provider_responses [429, 200]): the logged generation is the
second upstream call, attempt 2, with no attempt-1 row. Gateway cache hits (LiteLLM,
Helicone, Cloudflare) keep the tokens the gateway logs and `gateway_cache_hit = true`; the
provider never sees them.

Null means "not reported" (never 0): a failed attempt has null token counts (gateways log
0 and 0, or no usage at all) and null image_count/video_seconds; a media call has null token
counts; and a count the gateway's format has no field for is null: cache_write_1h except on
LiteLLM rows of Anthropic/Bedrock models, cache_read/cache_write/reasoning on Cloudflare,
cache_write on OpenRouter, reasoning on Helicone; service_tier everywhere but OpenRouter and
OTel spans of OpenAI calls (null = default). (The traffic sent through a gateway has
none of what it cannot log, so the provider reports still match the truth exactly.)

All times are whole milliseconds (Cloudflare start times whole seconds), as the native formats
write them.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from datagen import org
from datagen.org import FEATURES, GATEWAYS, MODELS, TEAMS
from transforms.schema import CANONICAL_SCHEMA, MONEY, ROW_ISSUES

DAY_MS = 86_400_000
TIMEOUT_MS = 60_000
ERROR_RATE = 0.02
TIMEOUT_RATE = 0.01
RETRY_RATE = 0.85
MAX_ATTEMPTS = 3
USERS = 3000
KEYS_PER_TEAM = 3
STATUS_NAMES = ("success", "error", "timeout")
TIER_NAMES = ("default", "flex", "priority")
ERROR_CODES = ((429, 0.5), (500, 0.3), (503, 0.2))  # HTTP status of an error; timeouts are 408


@dataclass(frozen=True)
class Spike:
    feature: str
    day: dt.date
    multiplier: float


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per purpose, so one stream never shifts another."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def hex_strings(rng: np.random.Generator, n: int, nbytes: int) -> tuple[pl.Series, pl.Series]:
    """n random ids as lower-case hex, and the same bytes as UUID text (version nibble 4)."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    text = np.frombuffer(raw.tobytes().hex().encode(), dtype=np.uint8).reshape(n, 2 * nbytes)
    hexes = pl.Series(text.copy().view(f"S{2 * nbytes}").ravel()).cast(pl.String)
    uuid = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst in ((0, 0), (8, 9), (12, 14), (16, 19), (20, 24)):
        width = {0: 8, 8: 4, 12: 4, 16: 4, 20: 12}[src]
        uuid[:, dst : dst + width] = text[:, src : src + width]
    uuid[:, 14] = ord("4")
    return hexes, pl.Series(uuid.view("S36").ravel()).cast(pl.String)


def _choice(rng: np.random.Generator, n: int, weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(n), side="right").astype(np.int32)


def _lognormal(rng: np.random.Generator, median: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(np.log(median) + sigma * rng.standard_normal(len(median)))


def day_start_ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(0), dt.UTC).timestamp() * 1000)


# --------------------------------------------------------------------------- logical requests
def daily_counts(seed: int, start: dt.date, days: int, requests_per_day: int) -> np.ndarray:
    rng = rng_for(seed, "daily-counts")
    noise = np.exp(0.04 * rng.standard_normal(days))
    weekday = np.array([(start + dt.timedelta(d)).weekday() for d in range(days)])
    return np.maximum(np.rint(requests_per_day * org.WEEKLY[weekday] * noise), 0).astype(np.int64)


def _sample_specs(rng: np.random.Generator, day: dt.date, feature_idx: np.ndarray) -> np.ndarray:
    spec = np.full(len(feature_idx), -1, dtype=np.int32)
    for f, feature in enumerate(FEATURES):
        rows = np.flatnonzero(feature_idx == f)
        if not len(rows):
            continue
        mix = org.model_mix(feature, day)
        keys = sorted(mix)
        spec[rows] = np.asarray(keys, dtype=np.int32)[
            _choice(rng, len(rows), [mix[k] for k in keys])
        ]
    return spec


def plan_requests(
    seed: int, start: dt.date, days: int, requests_per_day: int, spikes: Sequence[Spike]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[dict[str, object]]]:
    """(base, spike extras, spike records): day, feature and model of every logical request."""
    rng = rng_for(seed, "plan")
    counts = daily_counts(seed, start, days, requests_per_day)
    weights = np.array([f.weight for f in FEATURES])
    day_parts, feat_parts, spec_parts = [], [], []
    for d in range(days):
        day = start + dt.timedelta(d)
        active = np.array([bool(org.model_mix(f, day)) for f in FEATURES])
        if not active.any():  # before every simulated model's release: a quiet day
            counts[d] = 0
            active[:] = True
        feat = _choice(rng, int(counts[d]), np.where(active, weights, 0.0))
        day_parts.append(np.full(len(feat), d, dtype=np.int32))
        feat_parts.append(feat)
        spec_parts.append(_sample_specs(rng, day, feat))
    base = {
        "day": np.concatenate(day_parts),
        "feature": np.concatenate(feat_parts),
        "spec": np.concatenate(spec_parts),
    }
    srng = rng_for(seed, "spikes")
    extra_day, extra_feat, extra_spec, records = [], [], [], []
    for spike in spikes:
        d = (spike.day - start).days
        f = org.FEATURE_INDEX[spike.feature]
        baseline = int(np.count_nonzero((base["day"] == d) & (base["feature"] == f)))
        n_extra = max(round((spike.multiplier - 1.0) * baseline), 0)
        feat = np.full(n_extra, f, dtype=np.int32)
        extra_day.append(np.full(n_extra, d, dtype=np.int32))
        extra_feat.append(feat)
        extra_spec.append(_sample_specs(srng, spike.day, feat))
        records.append(
            {
                "feature": spike.feature,
                "date": spike.day.isoformat(),
                "multiplier": spike.multiplier,
                "baseline_requests": baseline,
                "extra_requests": n_extra,
            }
        )
    empty = np.zeros(0, dtype=np.int32)
    extra = {
        "day": np.concatenate(extra_day) if extra_day else empty,
        "feature": np.concatenate(extra_feat) if extra_feat else empty,
        "spec": np.concatenate(extra_spec) if extra_spec else empty,
    }
    return base, extra, records


def _spec_attr(spec: np.ndarray, name: str, dtype: type = np.float64) -> np.ndarray:
    table = np.array([getattr(m, name) for m in MODELS], dtype=dtype)
    return table[spec]


def _feature_attr(feature: np.ndarray, name: str) -> np.ndarray:
    return np.array([getattr(f, name) for f in FEATURES], dtype=np.float64)[feature]


def materialize(
    rng: np.random.Generator, plan: dict[str, np.ndarray], start: dt.date, days: int
) -> dict[str, np.ndarray | pl.Series]:
    """Everything about a logical request that does not depend on the attempt."""
    day, feature, spec = plan["day"], plan["feature"], plan["spec"]
    n = len(day)
    modality = np.array([m.modality for m in MODELS])[spec]
    text = modality == "text"
    team = np.array([org.TEAM_INDEX[f.team] for f in FEATURES], dtype=np.int32)[feature]

    # When: diurnal hour (flat for batch-like features), uniform inside the hour.
    flat = _feature_attr(feature, "flat_hours") > 0
    hour = np.where(flat, rng.integers(0, 24, n), _choice(rng, n, org.HOURLY))
    starts = np.array([day_start_ms(start + dt.timedelta(d)) for d in range(days)], dtype=np.int64)
    started = starts[day] + hour.astype(np.int64) * 3_600_000 + rng.integers(0, 3_600_000, n)

    batch = (
        text
        & _spec_attr(spec, "batch", bool)
        & (rng.random(n) < _feature_attr(feature, "batch_share"))
    )
    gateway = np.zeros(n, dtype=np.int32)
    for s, m in enumerate(MODELS):
        rows = np.flatnonzero(spec == s)
        if len(rows):
            gateway[rows] = _choice(rng, len(rows), m.routing)
    gateway[batch | ~text] = org.LITELLM
    # Cloudflare logs whole-second start times.
    started = np.where(gateway == org.CLOUDFLARE, started - started % 1000, started)

    tier = np.zeros(n, dtype=np.int32)
    u = rng.random(n)
    keys = np.array([m.key for m in MODELS])[spec]
    otel = gateway == org.OTEL
    tier[otel & (keys == "o3") & (u < 0.25)] = 1
    tier[otel & (keys == "gpt-4o") & (u < 0.10)] = 2

    gw_cache = (
        np.isin(gateway, org.CACHING_GATEWAYS)
        & text
        & ~batch
        & (rng.random(n) < _feature_attr(feature, "gateway_cache_share"))
    )
    user = np.floor(USERS * rng.random(n) ** 2.5).astype(np.int32)
    key = team * KEYS_PER_TEAM + rng.integers(0, KEYS_PER_TEAM, n).astype(np.int32)

    # Tokens.
    prompt = _lognormal(rng, _feature_attr(feature, "prompt_median"), 0.9)
    inp = np.clip(np.rint(prompt), 20, 190_000).astype(np.int64)
    long = (
        _spec_attr(spec, "long_context", bool)
        & (rng.random(n) < _feature_attr(feature, "long_share"))
        & text
    )
    inp = np.where(long, rng.integers(200_001, 650_000, n), inp)
    visible = np.clip(
        np.rint(_lognormal(rng, _feature_attr(feature, "output_median"), 0.8)), 1, 16_000
    )
    reasons = rng.random(n) < _spec_attr(spec, "reasoning_share")
    think_median = np.where(keys == "o3", 1500.0, 700.0)
    reasoning = np.where(
        reasons, np.clip(np.rint(_lognormal(rng, think_median, 0.9)), 16, 30_000), 0
    ).astype(np.int64)
    output = visible.astype(np.int64) + reasoning

    cache_kind = np.array([m.cache for m in MODELS])[spec]
    caching = text & (inp >= 1024) & (rng.random(n) < _feature_attr(feature, "cache_share"))
    frac = rng.uniform(0.2, 0.95, n)
    cr = np.zeros(n, dtype=np.int64)
    cw = np.zeros(n, dtype=np.int64)
    auto = caching & (cache_kind == "auto")
    cr = np.where(auto, np.minimum(np.maximum((inp * frac // 128) * 128, 1024), inp), cr)
    implicit = caching & (cache_kind == "implicit")
    cr = np.where(implicit, np.floor(inp * frac).astype(np.int64), cr)
    explicit = caching & (cache_kind == "explicit")
    prefix = np.floor(inp * np.clip(frac, 0.3, 0.95)).astype(np.int64)
    kind = rng.random(n)
    suffix_write = np.floor((inp - prefix) * rng.uniform(0.2, 0.8, n)).astype(np.int64)
    cr = np.where(explicit & ((kind < 0.75) | (kind >= 0.92)), prefix, cr)
    cw = np.where(explicit & (kind >= 0.75) & (kind < 0.92), prefix, cw)
    cw = np.where(explicit & (kind >= 0.92), suffix_write, cw)
    cw1h = np.where(rng.random(n) < 0.3, cw, 0)

    # What each gateway can log (see the module docstring).
    bedrock = np.array([m.provider == "aws" for m in MODELS])[spec]
    cw1h = np.where(
        np.isin(gateway, (org.HELICONE, org.OPENROUTER, org.CLOUDFLARE, org.OTEL)) | bedrock,
        0,
        cw1h,
    )
    cw = np.where(np.isin(gateway, (org.OPENROUTER, org.CLOUDFLARE)), 0, cw)
    cr = np.where(gateway == org.CLOUDFLARE, 0, cr)
    reasoning = np.where(np.isin(gateway, (org.HELICONE, org.CLOUDFLARE)), 0, reasoning)
    media = ~text
    for col in (inp, cr, cw, cw1h, output, reasoning):
        col[media] = 0

    # Media request shapes.
    image_count = np.zeros(n, dtype=np.int64)
    image_size = np.full(n, None, dtype=object)
    image_quality = np.full(n, None, dtype=object)
    video_seconds = np.zeros(n, dtype=np.float64)
    video_size = np.full(n, None, dtype=object)
    for s, m in enumerate(MODELS):
        rows = np.flatnonzero(spec == s)
        if not len(rows) or m.modality == "text":
            continue
        if m.modality == "image":
            for target, table in (
                (image_count, org.IMAGE_COUNTS),
                (image_size, org.IMAGE_SIZES),
                (image_quality, org.IMAGE_QUALITIES),
            ):
                values = [v for v, _ in table[m.key]]
                picks = _choice(rng, len(rows), [w for _, w in table[m.key]])
                target[rows] = np.array(values, dtype=object)[picks]
        else:
            secs = org.VIDEO_SECONDS[m.key]
            video_seconds[rows] = np.array([v for v, _ in secs], dtype=np.float64)[
                _choice(rng, len(rows), [w for _, w in secs])
            ]
            sizes = org.VIDEO_SIZES[m.key]
            video_size[rows] = np.array([v for v, _ in sizes], dtype=object)[
                _choice(rng, len(rows), [w for _, w in sizes])
            ]

    return {
        "day": day,
        "feature": feature,
        "spec": spec,
        "team": team,
        "gateway": gateway,
        "batch": batch,
        "tier": tier,
        "gw_cache": gw_cache,
        "user": user,
        "key": key,
        "started": started,
        "long": long,
        "input": inp,
        "cache_read": cr,
        "cache_write": cw,
        "cache_write_1h": cw1h,
        "output": output,
        "reasoning": reasoning,
        "image_count": image_count,
        "image_size": image_size,
        "image_quality": image_quality,
        "video_seconds": video_seconds,
        "video_size": video_size,
        "tps": _lognormal(rng, _spec_attr(spec, "tps"), 0.3),
        **dict(zip(("id1", "id1_uuid"), hex_strings(rng, n, 16), strict=True)),
        **dict(zip(("id2", "id2_uuid"), hex_strings(rng, n, 16), strict=True)),
    }


# --------------------------------------------------------------------------- attempts
def _attempt_outcomes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    u = rng.random(n)
    status = np.where(u < ERROR_RATE, 1, np.where(u < ERROR_RATE + TIMEOUT_RATE, 2, 0))
    codes = np.array([c for c, _ in ERROR_CODES], dtype=np.int32)[
        _choice(rng, n, [w for _, w in ERROR_CODES])
    ]
    err = np.where(status == 1, codes, np.where(status == 2, 408, 200)).astype(np.int32)
    return status.astype(np.int32), err


def expand_attempts(
    rng: np.random.Generator, logical: dict[str, np.ndarray | pl.Series], end_ms: int
) -> pl.DataFrame:
    """One row per upstream attempt, with status, timing and per-attempt usage."""
    n = len(logical["day"])
    idx = np.arange(n)
    started = np.asarray(logical["started"])
    rows_idx, attempts, statuses, errs, starts, lat, ttft = [], [], [], [], [], [], []
    current = idx
    current_start = started
    spec = np.asarray(logical["spec"])
    text = np.array([m.modality == "text" for m in MODELS])[spec]
    ttft_median = np.array([m.ttft_ms for m in MODELS])[spec]
    batch = np.asarray(logical["batch"])
    gw_cache = np.asarray(logical["gw_cache"])
    gateway = np.asarray(logical["gateway"])
    out_visible = np.asarray(logical["output"]) - np.asarray(logical["reasoning"])
    reasoning = np.asarray(logical["reasoning"])
    inp = np.asarray(logical["input"])
    tps = np.asarray(logical["tps"])
    for attempt in range(1, MAX_ATTEMPTS + 1):
        m = len(current)
        status, err = _attempt_outcomes(rng, m)
        status = np.where(gw_cache[current], 0, status)
        err = np.where(gw_cache[current], 200, err)
        ok = status == 0
        # Latency of a successful streamed call: time to first token, then the output.
        first = _lognormal(rng, ttft_median[current] * (1 + inp[current] / 400_000), 0.45)
        first = first + reasoning[current] / tps[current] * 500
        gen = out_visible[current] / tps[current] * 1000
        latency = np.where(text[current], first + gen, _lognormal(rng, ttft_median[current], 0.3))
        latency = np.where(batch[current], _lognormal(rng, np.full(m, 1_200_000.0), 0.8), latency)
        latency = np.where(gw_cache[current], rng.uniform(8, 45, m), latency)
        latency = np.where(status == 1, _lognormal(rng, np.full(m, 350.0), 0.6), latency)
        latency = np.where(status == 2, TIMEOUT_MS + rng.uniform(0, 500, m), latency)
        latency = np.maximum(np.rint(latency), 1).astype(np.int64)
        first_ms = np.where(gw_cache[current], latency // 2, np.rint(first)).astype(np.int64)
        first_ms = np.minimum(np.maximum(first_ms, 1), latency)
        has_first = ok & text[current] & ~batch[current]
        rows_idx.append(current)
        attempts.append(np.full(m, attempt, dtype=np.int32))
        statuses.append(status)
        errs.append(err)
        starts.append(current_start)
        lat.append(latency)
        ttft.append(np.where(has_first, first_ms, -1))
        if attempt == MAX_ATTEMPTS:
            break
        retry = (
            ~ok
            & np.isin(gateway[current], org.RETRYING_GATEWAYS)
            & ~batch[current]
            & (rng.random(m) < RETRY_RATE)
        )
        backoff = np.rint(1000 * attempt * rng.uniform(0.5, 1.5, m)).astype(np.int64)
        next_start = current_start + latency + backoff
        retry &= next_start < end_ms
        current, current_start = current[retry], next_start[retry]
        if not len(current):
            break
    row = np.concatenate(rows_idx)
    frame = pl.DataFrame(
        {
            "_row": row,
            "attempt": np.concatenate(attempts),
            "_status": np.concatenate(statuses),
            "_http": np.concatenate(errs),
            "_started_ms": np.concatenate(starts),
            "_latency_ms": np.concatenate(lat),
            "_ttft_ms": np.concatenate(ttft),
        }
    )
    native, native_uuid = hex_strings(rng, frame.height, 16)
    frame = frame.with_columns(
        pl.when(pl.col("_ttft_ms") >= 0).then(pl.col("_ttft_ms")).alias("_ttft_ms"),
        native.alias("_native"),
        native_uuid.alias("_native_uuid"),
    )
    return frame


def logical_frame(logical: dict[str, np.ndarray | pl.Series]) -> pl.DataFrame:
    cols: dict[str, object] = {}
    for k, v in logical.items():
        if isinstance(v, pl.Series):
            cols[f"_{k}"] = v.alias(f"_{k}")
        elif v.dtype == object:
            cols[f"_{k}"] = pl.Series(f"_{k}", v.tolist(), dtype=pl.String)
        else:
            cols[f"_{k}"] = v
    frame = pl.DataFrame(cols)
    return frame.with_columns(pl.col("_image_count").cast(pl.Int64))


# --------------------------------------------------------------------------- canonical rows
def _lit_table(values: Sequence[object], index: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """values[index] for an integer index column."""
    table = pl.Series(list(values), dtype=dtype, strict=False)
    return index.replace_strict(pl.Series(range(len(values))), table, return_dtype=dtype)


def canonical_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the canonical columns (as the adapters should produce them) to the attempt frame."""
    gw = pl.col("_gateway")
    spec = pl.col("_spec")
    ok = pl.col("_status") == 0
    provider_of = [m.provider for m in MODELS]
    resolved = [m.resolved for m in MODELS]
    alias = [m.alias for m in MODELS]
    slug = [m.openrouter for m in MODELS]
    modality = [m.modality for m in MODELS]
    request_id = (
        pl.when(gw.is_in([org.LITELLM, org.HELICONE]))
        .then(pl.col("_id1_uuid"))
        .when(gw == org.OPENROUTER)
        .then(pl.lit("gen-") + pl.col("_id1").str.slice(0, 28))
        .when(gw == org.CLOUDFLARE)
        .then(pl.lit("01") + pl.col("_id1").str.slice(0, 24).str.to_uppercase())
        .otherwise(pl.col("_id1"))
    )
    trace_id = (
        pl.when(gw == org.LITELLM)
        .then(pl.col("_id1_uuid"))
        .when(gw.is_in([org.HELICONE, org.OPENROUTER]))
        .then(pl.col("_id2_uuid"))
        .when(gw == org.OTEL)
        .then(pl.col("_id1"))
    )
    model = (
        pl.when(gw == org.OPENROUTER)
        .then(_lit_table(slug, spec, pl.String))
        .when(gw == org.CLOUDFLARE)
        .then(_lit_table(alias, spec, pl.String))
        .when((gw == org.OTEL) & ~ok)
        .then(_lit_table(alias, spec, pl.String))
        .otherwise(_lit_table(resolved, spec, pl.String))
    )
    attributed = gw != org.OPENROUTER
    provider = _lit_table(provider_of, spec, pl.String)
    text = _lit_table(modality, spec, pl.String) == "text"
    family = _lit_table([m.provider in ("anthropic", "aws") for m in MODELS], spec, pl.Boolean)
    # Which usage fields each gateway's format has (a column it lacks is unknown: null).
    known = {
        "_input": pl.lit(True),
        "_output": pl.lit(True),
        "_cache_read": gw != org.CLOUDFLARE,
        "_cache_write": ~gw.is_in([org.OPENROUTER, org.CLOUDFLARE]),
        "_cache_write_1h": (gw == org.LITELLM) & family,
        "_reasoning": ~gw.is_in([org.HELICONE, org.CLOUDFLARE]),
    }

    # A failed attempt reports no usage (gateways log 0 and 0, or nothing): null, as is any
    # token count of a media call and any count the gateway's format has no field for.
    def tokens(col: str) -> pl.Expr:
        return pl.when(ok & text & known[col]).then(pl.col(col)).cast(pl.Int64)

    # OpenRouter retried a 429 internally: the logged generation is the second upstream call.
    attempt = pl.when(pl.col("_or_fallback")).then(2).otherwise(pl.col("attempt"))

    started = pl.from_epoch(pl.col("_started_ms"), time_unit="ms").dt.replace_time_zone("UTC")
    first = pl.from_epoch(pl.col("_started_ms") + pl.col("_ttft_ms"), time_unit="ms")
    ended = pl.from_epoch(pl.col("_started_ms") + pl.col("_latency_ms"), time_unit="ms")
    api_key = pl.col("_api_key")
    out = frame.with_columns(
        request_id.alias("request_id"),
        attempt.cast(pl.Int32).alias("attempt"),
        trace_id.alias("trace_id"),
        started.cast(CANONICAL_SCHEMA["started_at"]).alias("started_at"),
        pl.when(gw.is_in([org.LITELLM, org.HELICONE, org.OPENROUTER]))
        .then(first.dt.replace_time_zone("UTC"))
        .cast(CANONICAL_SCHEMA["first_token_at"])
        .alias("first_token_at"),
        ended.dt.replace_time_zone("UTC").cast(CANONICAL_SCHEMA["ended_at"]).alias("ended_at"),
        _lit_table(GATEWAYS, gw, pl.String).alias("gateway"),
        pl.when(gw == org.OPENROUTER)
        .then(pl.lit("openrouter"))
        .otherwise(_lit_table(provider_of, spec, pl.String))
        .alias("provider"),
        model.alias("model"),
        pl.lit(None, pl.String).alias("region"),
        # Only OpenRouter and OTel spans of OpenAI calls log a service tier; elsewhere unknown.
        pl.when((gw == org.OPENROUTER) | ((gw == org.OTEL) & (provider == "openai")))
        .then(_lit_table(TIER_NAMES, pl.col("_tier"), pl.String))
        .alias("service_tier"),
        pl.col("_batch").alias("batch"),
        pl.when(attributed)
        .then(_lit_table([f.name for f in FEATURES], pl.col("_feature"), pl.String))
        .alias("feature"),
        pl.when(attributed).then(_lit_table(TEAMS, pl.col("_team"), pl.String)).alias("team"),
        pl.format("user-{}", pl.col("_user").cast(pl.String).str.zfill(5)).alias("user"),
        pl.when(gw == org.LITELLM).then(pl.lit("sha256:") + api_key).alias("api_key_id"),
        _lit_table(STATUS_NAMES, pl.col("_status"), pl.String).alias("status"),
        _lit_table(modality, spec, pl.String).alias("modality"),
        tokens("_input").alias("input_tokens"),
        tokens("_cache_read").alias("cache_read_tokens"),
        tokens("_cache_write").alias("cache_write_tokens"),
        tokens("_cache_write_1h").alias("cache_write_1h_tokens"),
        tokens("_output").alias("output_tokens"),
        tokens("_reasoning").alias("reasoning_tokens"),
        pl.when(spec.is_in([i for i, m in enumerate(MODELS) if m.modality == "image"]))
        .then(pl.when(ok).then(pl.col("_image_count")))
        .cast(pl.Int64)
        .alias("image_count"),
        pl.col("_image_size").alias("image_size"),
        pl.col("_image_quality").alias("image_quality"),
        pl.when(spec.is_in([i for i, m in enumerate(MODELS) if m.modality == "video"]))
        .then(pl.when(ok).then(pl.col("_video_seconds")))
        .alias("video_seconds"),
        pl.col("_video_size").alias("video_resolution"),
        pl.lit(None, pl.Float64).alias("audio_seconds"),
        pl.when(pl.col("_cost_nusd").is_not_null())
        .then(pl.col("_cost_nusd").cast(MONEY) / pl.lit(10**9).cast(pl.Decimal(38, 0)))
        .cast(MONEY)
        .alias("gateway_cost_usd"),
        pl.col("_gw_cache").alias("gateway_cache_hit"),
        pl.lit(None, pl.String).alias(ROW_ISSUES),
    )
    return out


def gateway_cost_nusd(frame: pl.DataFrame) -> pl.Series:
    """The gateway's own cost estimate in nano-dollars (rough list prices, no 1h-write or
    long-context premium, stale Veo price); 0 for failures and gateway cache hits, null for
    OTel (spans carry no cost)."""
    spec = pl.col("_spec")
    pin = _lit_table([m.price_in for m in MODELS], spec, pl.Float64)
    pout = _lit_table([m.price_out for m in MODELS], spec, pl.Float64)
    mult = _lit_table([m.cache_read_mult for m in MODELS], spec, pl.Float64)
    media_price = _lit_table([m.media_price for m in MODELS], spec, pl.Float64)
    uncached = pl.col("_input") - pl.col("_cache_read") - pl.col("_cache_write")
    text_cost = (
        uncached * pin
        + pl.col("_cache_read") * pin * mult
        + pl.col("_cache_write") * pin * 1.25
        + pl.col("_output") * pout
    ) * 1000.0  # $/MTok x tokens -> nano-dollars
    big = pl.col("_image_size").is_in(["1792x1024", "1024x1792", "1536x1024", "1024x1536"])
    hd = pl.col("_image_quality").is_in(["hd", "high"])
    image_cost = (
        pl.col("_image_count")
        * media_price
        * pl.when(big).then(2.0).otherwise(1.0)
        * pl.when(hd).then(2.0).otherwise(1.0)
        * 1e9
    )
    video_cost = pl.col("_video_seconds") * media_price * 1e9
    modality = _lit_table([m.modality for m in MODELS], spec, pl.String)
    cost = (
        pl.when(modality == "image")
        .then(image_cost)
        .when(modality == "video")
        .then(video_cost)
        .otherwise(text_cost)
    )
    free = (pl.col("_status") != 0) | pl.col("_gw_cache")
    expr = (
        pl.when(pl.col("_gateway") == org.OTEL)
        .then(None)
        .when(free)
        .then(0)
        .otherwise(cost.round(0).cast(pl.Int64))
    )
    return frame.select(expr.cast(pl.Int64).alias("_cost_nusd")).to_series()


def api_key_hashes() -> list[str]:
    """LiteLLM stores sha256(virtual key) hex; one key per (team, k)."""
    import hashlib

    return [
        hashlib.sha256(f"sk-litellm-{team}-{k}".encode()).hexdigest()
        for team in TEAMS
        for k in range(KEYS_PER_TEAM)
    ]


def build_attempts(
    seed: int,
    start: dt.date,
    days: int,
    requests_per_day: int,
    spikes: Sequence[Spike] = (),
) -> tuple[pl.DataFrame, list[dict[str, object]]]:
    """All upstream attempts of the period, sorted by start time, with canonical columns."""
    base_plan, extra_plan, spike_records = plan_requests(
        seed, start, days, requests_per_day, spikes
    )
    end_ms = day_start_ms(start + dt.timedelta(days))
    parts = []
    for name, plan in (("base", base_plan), ("spike", extra_plan)):
        if not len(plan["day"]):
            continue
        logical = materialize(rng_for(seed, f"logical-{name}"), plan, start, days)
        lf = logical_frame(logical).with_row_index("_row")
        att = expand_attempts(rng_for(seed, f"attempts-{name}"), logical, end_ms)
        parts.append(att.join(lf, on="_row", how="left", maintain_order="left").drop("_row"))
    frame = pl.concat(parts, how="vertical")
    frame = frame.with_columns(
        pl.col("_key")
        .replace_strict(
            list(range(len(api_key_hashes()))), api_key_hashes(), return_dtype=pl.String
        )
        .alias("_api_key")
    )
    frame = frame.with_columns(
        gateway_cost_nusd(frame),
        # ~6% of OpenRouter generations got a 429 upstream first, retried inside OpenRouter.
        (
            (pl.col("_gateway") == org.OPENROUTER)
            & (pl.col("_status") == 0)
            & pl.col("_native").str.starts_with("0")
        ).alias("_or_fallback"),
    )
    frame = canonical_columns(frame).sort(["started_at", "request_id", "attempt"])
    return frame, spike_records


def truth_columns() -> list[str]:
    return [*CANONICAL_SCHEMA.names(), ROW_ISSUES]
