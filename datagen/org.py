"""The simulated organisation: models, features, teams, gateways and their traffic shares.

Static tables only; `datagen.traffic` turns them into requests. Every model here is priced by
the built-in catalog (genai-prices + pricing_catalog/data/media.yaml) under every spelling a
gateway logs for it: the alias a client asks for, the dated snapshot the provider resolves it
to, the OpenRouter slug and the Bedrock inference-profile id.

Release dates gate the mix: a model is never requested before `available_from` (for media
models that is the `valid_from` of their media.yaml price). When a successor is released its
predecessor keeps 15% of the slot (laggard clients), before that it has all of it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

GATEWAYS = ("litellm", "helicone", "openrouter", "cloudflare", "otel")
LITELLM, HELICONE, OPENROUTER, CLOUDFLARE, OTEL = range(5)
# Gateways that log each upstream attempt of a logical request (and so carry retries).
RETRYING_GATEWAYS = (LITELLM, OTEL)
# Gateways with their own response cache (a hit never reaches the provider).
CACHING_GATEWAYS = (LITELLM, HELICONE, CLOUDFLARE)

TEAMS = ("web", "search", "support", "devtools", "data", "growth", "research", "platform")

# Billing entity of each provider id, for invoices and reports.
ISSUERS = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "google": "Google Cloud",
    "aws": "Amazon Web Services",
    "deepseek": "DeepSeek",
    "bfl": "Black Forest Labs",
    "openrouter": "OpenRouter",
}

# Traffic share per UTC hour: quiet at night, peak over the US/EU working overlap.
HOURLY = np.array(
    [
        2,
        1.5,
        1.2,
        1,
        1,
        1.2,
        1.8,
        3,
        4.5,
        5.5,
        6,
        6.5,
        7,
        7.5,
        7.5,
        7,
        6.5,
        6,
        5,
        4.5,
        4,
        3.5,
        3,
        2.5,
    ],
    dtype=np.float64,
)
# Monday .. Sunday volume relative to the mean day.
WEEKLY = np.array([1.08, 1.12, 1.12, 1.10, 1.00, 0.80, 0.78], dtype=np.float64)
WEEKLY = WEEKLY / WEEKLY.mean()


@dataclass(frozen=True)
class ModelSpec:
    key: str
    provider: str  # genai-prices provider id of the direct provider
    modality: str  # text | image | video
    alias: str  # what clients ask for (Cloudflare model, OTel request.model, LiteLLM model_group)
    resolved: str  # what the provider serves and bills (dated snapshot)
    display: str  # marketing name used in billing descriptions
    openrouter: str | None = None  # OpenRouter slug; None = not routed through OpenRouter
    price_in: float = 0.0  # rough $/MTok: only for the gateways' own cost estimates
    price_out: float = 0.0
    cache: str = "none"  # none | auto (OpenAI) | explicit (Anthropic) | implicit (Gemini, DeepSeek)
    cache_read_mult: float = 0.1
    reasoning_share: float = 0.0  # share of requests with reasoning tokens
    long_context: bool = False  # takes prompts above 200K tokens
    batch: bool = False  # has a batch API
    available_from: dt.date = dt.date(2024, 1, 1)  # first day it is requested (its release)
    predecessor: str | None = None
    ttft_ms: float = 500.0  # median time to first token
    tps: float = 80.0  # median output tokens per second
    # litellm, helicone, openrouter, cloudflare, otel
    routing: tuple[float, float, float, float, float] = (0.45, 0.2, 0.1, 0.15, 0.1)
    bedrock_tag: str | None = None  # CUR usage-type model tag
    media_price: float = 0.0  # gateway estimate per image / per video second
    group: str | None = None  # LiteLLM model_group when it is not the alias


_OPENAI_TEXT = dict(
    provider="openai", modality="text", cache="auto", cache_read_mult=0.5, batch=True
)
_ANTHROPIC = dict(
    provider="anthropic",
    modality="text",
    cache="explicit",
    cache_read_mult=0.1,
    batch=True,
    routing=(0.45, 0.2, 0.15, 0.1, 0.1),
)
_BEDROCK = dict(
    provider="aws",
    modality="text",
    cache="explicit",
    cache_read_mult=0.1,
    routing=(0.75, 0.0, 0.0, 0.0, 0.25),
)
_MEDIA_ROUTING = (1.0, 0.0, 0.0, 0.0, 0.0)

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "gpt-4o",
        alias="gpt-4o",
        resolved="gpt-4o-2024-08-06",
        display="GPT-4o",
        openrouter="openai/gpt-4o",
        price_in=2.5,
        price_out=10,
        ttft_ms=450,
        tps=90,
        **_OPENAI_TEXT,
        available_from=dt.date(2024, 8, 6),
    ),
    ModelSpec(
        "gpt-4o-mini",
        alias="gpt-4o-mini",
        resolved="gpt-4o-mini-2024-07-18",
        display="GPT-4o mini",
        openrouter="openai/gpt-4o-mini",
        price_in=0.15,
        price_out=0.6,
        ttft_ms=350,
        tps=110,
        **_OPENAI_TEXT,
        available_from=dt.date(2024, 7, 18),
    ),
    ModelSpec(
        "o3",
        alias="o3",
        resolved="o3-2025-04-16",
        display="o3",
        openrouter="openai/o3",
        price_in=2,
        price_out=8,
        reasoning_share=1.0,
        ttft_ms=2500,
        tps=80,
        routing=(0.6, 0.0, 0.15, 0.0, 0.25),
        **_OPENAI_TEXT,
        available_from=dt.date(2025, 4, 16),
    ),
    ModelSpec(
        "gpt-4.1",
        alias="gpt-4.1",
        resolved="gpt-4.1-2025-04-14",
        display="GPT-4.1",
        openrouter="openai/gpt-4.1",
        price_in=2,
        price_out=8,
        long_context=True,
        ttft_ms=500,
        tps=85,
        **_OPENAI_TEXT,
        available_from=dt.date(2025, 4, 14),
    ),
    ModelSpec(
        "claude-sonnet-4-5",
        alias="claude-sonnet-4-5",
        resolved="claude-sonnet-4-5-20250929",
        display="Claude Sonnet 4.5",
        openrouter="anthropic/claude-sonnet-4.5",
        price_in=3,
        price_out=15,
        reasoning_share=0.2,
        long_context=True,
        available_from=dt.date(2025, 9, 29),
        predecessor="claude-sonnet-4",
        ttft_ms=700,
        tps=70,
        **_ANTHROPIC,
    ),
    ModelSpec(
        "claude-sonnet-4",
        alias="claude-sonnet-4-0",
        resolved="claude-sonnet-4-20250514",
        display="Claude Sonnet 4",
        openrouter="anthropic/claude-sonnet-4",
        price_in=3,
        price_out=15,
        reasoning_share=0.1,
        long_context=True,
        available_from=dt.date(2025, 5, 22),
        ttft_ms=750,
        tps=65,
        **_ANTHROPIC,
    ),
    ModelSpec(
        "claude-haiku-4-5",
        alias="claude-haiku-4-5",
        resolved="claude-haiku-4-5-20251001",
        display="Claude Haiku 4.5",
        openrouter="anthropic/claude-haiku-4.5",
        price_in=1,
        price_out=5,
        available_from=dt.date(2025, 10, 15),
        predecessor="claude-3-5-haiku",
        ttft_ms=400,
        tps=120,
        **_ANTHROPIC,
    ),
    ModelSpec(
        "claude-3-5-haiku",
        alias="claude-3-5-haiku-latest",
        resolved="claude-3-5-haiku-20241022",
        display="Claude Haiku 3.5",
        openrouter="anthropic/claude-3.5-haiku",
        price_in=0.8,
        price_out=4,
        ttft_ms=450,
        tps=100,
        **_ANTHROPIC,
        available_from=dt.date(2024, 11, 4),
    ),
    ModelSpec(
        "claude-opus-4-1",
        alias="claude-opus-4-1",
        resolved="claude-opus-4-1-20250805",
        display="Claude Opus 4.1",
        openrouter="anthropic/claude-opus-4.1",
        price_in=15,
        price_out=75,
        reasoning_share=0.3,
        available_from=dt.date(2025, 8, 5),
        ttft_ms=1200,
        tps=40,
        **_ANTHROPIC,
    ),
    ModelSpec(
        "gemini-2.5-pro",
        provider="google",
        modality="text",
        alias="gemini-2.5-pro",
        resolved="gemini-2.5-pro",
        display="Gemini 2.5 Pro",
        openrouter="google/gemini-2.5-pro",
        price_in=1.25,
        price_out=10,
        cache="implicit",
        cache_read_mult=0.25,
        reasoning_share=1.0,
        long_context=True,
        batch=True,
        ttft_ms=1800,
        tps=90,
        routing=(0.6, 0.0, 0.2, 0.0, 0.2),
        available_from=dt.date(2025, 6, 17),
    ),
    ModelSpec(
        "gemini-2.5-flash",
        provider="google",
        modality="text",
        alias="gemini-2.5-flash",
        resolved="gemini-2.5-flash",
        display="Gemini 2.5 Flash",
        openrouter="google/gemini-2.5-flash",
        price_in=0.3,
        price_out=2.5,
        cache="implicit",
        cache_read_mult=0.25,
        reasoning_share=0.5,
        batch=True,
        ttft_ms=400,
        tps=180,
        routing=(0.5, 0.1, 0.15, 0.15, 0.1),
        available_from=dt.date(2025, 6, 17),
    ),
    ModelSpec(
        "deepseek-chat",
        provider="deepseek",
        modality="text",
        alias="deepseek-chat",
        resolved="deepseek-chat",
        display="DeepSeek Chat",
        openrouter="deepseek/deepseek-chat",
        price_in=0.27,
        price_out=1.1,
        cache="implicit",
        cache_read_mult=0.26,
        ttft_ms=900,
        tps=45,
        routing=(0.5, 0.1, 0.25, 0.15, 0.0),
        available_from=dt.date(2024, 12, 26),
    ),
    ModelSpec(
        "bedrock-claude-sonnet-4-5",
        group="bedrock-claude-sonnet-4-5",
        alias="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        resolved="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        display="Claude Sonnet 4.5",
        price_in=3.3,
        price_out=16.5,
        available_from=dt.date(2025, 9, 29),
        predecessor="bedrock-claude-sonnet-4",
        bedrock_tag="Claude4.5Sonnet",
        ttft_ms=800,
        tps=65,
        **_BEDROCK,
    ),
    ModelSpec(
        "bedrock-claude-sonnet-4",
        group="bedrock-claude-sonnet-4",
        alias="us.anthropic.claude-sonnet-4-20250514-v1:0",
        resolved="us.anthropic.claude-sonnet-4-20250514-v1:0",
        display="Claude Sonnet 4",
        price_in=3,
        price_out=15,
        available_from=dt.date(2025, 5, 22),
        bedrock_tag="Claude4Sonnet",
        ttft_ms=850,
        tps=60,
        **_BEDROCK,
    ),
    ModelSpec(
        "bedrock-claude-haiku-4-5",
        group="bedrock-claude-haiku-4-5",
        alias="us.anthropic.claude-haiku-4-5-20251001-v1:0",
        resolved="us.anthropic.claude-haiku-4-5-20251001-v1:0",
        display="Claude Haiku 4.5",
        price_in=1.1,
        price_out=5.5,
        available_from=dt.date(2025, 10, 15),
        predecessor="bedrock-claude-3-5-haiku",
        bedrock_tag="Claude4.5Haiku",
        ttft_ms=450,
        tps=110,
        **_BEDROCK,
    ),
    ModelSpec(
        "bedrock-claude-3-5-haiku",
        group="bedrock-claude-3-5-haiku",
        alias="us.anthropic.claude-3-5-haiku-20241022-v1:0",
        resolved="us.anthropic.claude-3-5-haiku-20241022-v1:0",
        display="Claude Haiku 3.5",
        price_in=0.8,
        price_out=4,
        bedrock_tag="Claude3.5Haiku",
        ttft_ms=500,
        tps=95,
        **_BEDROCK,
        available_from=dt.date(2024, 11, 4),
    ),
    ModelSpec(
        "dall-e-3",
        provider="openai",
        modality="image",
        alias="dall-e-3",
        resolved="dall-e-3",
        display="DALL-E 3",
        available_from=dt.date(2023, 11, 6),
        routing=_MEDIA_ROUTING,
        media_price=0.04,
        ttft_ms=9000,
    ),
    ModelSpec(
        "gpt-image-1.5",
        provider="openai",
        modality="image",
        alias="gpt-image-1.5",
        resolved="gpt-image-1.5",
        display="GPT Image 1.5",
        available_from=dt.date(2025, 12, 16),
        routing=_MEDIA_ROUTING,
        media_price=0.034,
        ttft_ms=12000,
    ),
    ModelSpec(
        "flux-1-schnell",
        provider="bfl",
        modality="image",
        alias="flux-1-schnell",
        resolved="flux-1-schnell",
        display="FLUX.1 [schnell]",
        available_from=dt.date(2024, 8, 1),
        routing=_MEDIA_ROUTING,
        media_price=0.003,
        ttft_ms=1500,
    ),
    ModelSpec(
        "veo-3",
        provider="google",
        modality="video",
        alias="veo-3.0-generate-001",
        resolved="veo-3.0-generate-001",
        display="Veo 3",
        available_from=dt.date(2025, 7, 17),
        # A gateway that never learnt of the 2025-09-09 price cut keeps estimating $0.75/s.
        routing=_MEDIA_ROUTING,
        media_price=0.75,
        ttft_ms=90000,
    ),
    ModelSpec(
        "sora-2",
        provider="openai",
        modality="video",
        alias="sora-2",
        resolved="sora-2",
        display="Sora 2",
        available_from=dt.date(2025, 10, 6),
        routing=_MEDIA_ROUTING,
        media_price=0.10,
        ttft_ms=120000,
    ),
)
SPEC_INDEX = {m.key: i for i, m in enumerate(MODELS)}


@dataclass(frozen=True)
class Feature:
    name: str
    team: str
    weight: float  # share of requests
    mix: dict[str, float]  # model key -> relative share
    prompt_median: float = 1500.0  # input tokens
    output_median: float = 300.0
    batch_share: float = 0.0  # of requests whose model has a batch API
    cache_share: float = 0.5  # of requests that hit or write the provider's prompt cache
    gateway_cache_share: float = 0.02  # of requests answered from a gateway's own cache
    long_share: float = 0.0  # of requests on long-context models with a >200K-token prompt
    flat_hours: bool = False  # batch-like work spread over the day


FEATURES: tuple[Feature, ...] = (
    Feature(
        "chat-assistant",
        "web",
        20,
        {"gpt-4o": 30, "claude-sonnet-4-5": 25, "gpt-4o-mini": 20, "gemini-2.5-flash": 15},
        prompt_median=1800,
        output_median=350,
        cache_share=0.6,
        long_share=0.002,
    ),
    Feature(
        "search-rerank",
        "search",
        14,
        {"gpt-4o-mini": 50, "gemini-2.5-flash": 30, "claude-haiku-4-5": 20},
        prompt_median=900,
        output_median=60,
        cache_share=0.4,
        gateway_cache_share=0.06,
    ),
    Feature(
        "summarize",
        "platform",
        11,
        {
            "claude-haiku-4-5": 35,
            "gpt-4o-mini": 25,
            "deepseek-chat": 20,
            "bedrock-claude-haiku-4-5": 20,
        },
        prompt_median=5000,
        output_median=300,
    ),
    Feature(
        "code-review",
        "devtools",
        8,
        {"claude-sonnet-4-5": 40, "o3": 25, "gpt-4.1": 25, "claude-opus-4-1": 10},
        prompt_median=14000,
        output_median=900,
        cache_share=0.7,
        long_share=0.01,
    ),
    Feature(
        "support-bot",
        "support",
        12,
        {"gpt-4o-mini": 40, "claude-haiku-4-5": 30, "bedrock-claude-sonnet-4-5": 30},
        prompt_median=2500,
        output_median=250,
        cache_share=0.7,
        gateway_cache_share=0.05,
    ),
    Feature(
        "doc-extract",
        "data",
        7,
        {"gemini-2.5-pro": 40, "gpt-4.1": 30, "bedrock-claude-sonnet-4-5": 30},
        prompt_median=30000,
        output_median=800,
        batch_share=0.35,
        long_share=0.01,
        flat_hours=True,
    ),
    Feature(
        "translate",
        "growth",
        6,
        {"deepseek-chat": 45, "gpt-4o-mini": 30, "gemini-2.5-flash": 25},
        prompt_median=1200,
        output_median=1000,
        cache_share=0.3,
    ),
    Feature(
        "agent-planner",
        "research",
        5,
        {"o3": 30, "claude-sonnet-4-5": 30, "claude-opus-4-1": 15, "gemini-2.5-pro": 25},
        prompt_median=9000,
        output_median=1200,
        cache_share=0.75,
        long_share=0.005,
    ),
    Feature(
        "classify",
        "data",
        8,
        {"gpt-4o-mini": 60, "deepseek-chat": 25, "claude-haiku-4-5": 15},
        prompt_median=600,
        output_median=20,
        batch_share=0.4,
        cache_share=0.3,
        gateway_cache_share=0.04,
        flat_hours=True,
    ),
    Feature(
        "report-gen",
        "platform",
        5,
        {"gpt-4.1": 40, "claude-sonnet-4-5": 35, "gemini-2.5-pro": 25},
        prompt_median=12000,
        output_median=2000,
        batch_share=0.25,
        long_share=0.004,
    ),
    Feature(
        "image-gen",
        "growth",
        2.5,
        {"dall-e-3": 3, "flux-1-schnell": 5, "gpt-image-1.5": 4},
        gateway_cache_share=0.0,
    ),
    Feature(
        "video-gen",
        "growth",
        0.25,
        {"veo-3": 1, "sora-2": 1},
        gateway_cache_share=0.0,
    ),
)
FEATURE_INDEX = {f.name: i for i, f in enumerate(FEATURES)}
TEAM_INDEX = {t: i for i, t in enumerate(TEAMS)}

# Media request shapes: (value, weight).
IMAGE_SIZES = {
    "dall-e-3": (("1024x1024", 0.7), ("1792x1024", 0.2), ("1024x1792", 0.1)),
    "gpt-image-1.5": (("1024x1024", 0.5), ("1536x1024", 0.3), ("1024x1536", 0.2)),
    "flux-1-schnell": (("1024x1024", 1.0),),
}
IMAGE_QUALITIES = {
    "dall-e-3": (("standard", 0.75), ("hd", 0.25)),
    "gpt-image-1.5": (("low", 0.3), ("medium", 0.5), ("high", 0.2)),
    "flux-1-schnell": ((None, 1.0),),
}
IMAGE_COUNTS = {
    "dall-e-3": ((1, 1.0),),
    "gpt-image-1.5": ((1, 0.7), (2, 0.3)),
    "flux-1-schnell": ((1, 0.5), (2, 0.3), (4, 0.2)),
}
VIDEO_SECONDS = {"veo-3": ((4, 0.2), (6, 0.2), (8, 0.6)), "sora-2": ((4, 0.3), (8, 0.5), (12, 0.2))}
VIDEO_SIZES = {
    "veo-3": (("1280x720", 0.7), ("1920x1080", 0.3)),
    "sora-2": (("1280x720", 0.6), ("720x1280", 0.4)),
}


def model_mix(feature: Feature, day: dt.date) -> dict[int, float]:
    """Spec index -> share for one feature on one day, after release gating."""
    out: dict[int, float] = {}
    for key, w in feature.mix.items():
        spec = MODELS[SPEC_INDEX[key]]
        pred = MODELS[SPEC_INDEX[spec.predecessor]] if spec.predecessor else None
        if day >= spec.available_from:
            if pred is not None:
                out[SPEC_INDEX[key]] = out.get(SPEC_INDEX[key], 0.0) + 0.85 * w
                out[SPEC_INDEX[pred.key]] = out.get(SPEC_INDEX[pred.key], 0.0) + 0.15 * w
            else:
                out[SPEC_INDEX[key]] = out.get(SPEC_INDEX[key], 0.0) + w
        elif pred is not None and day >= pred.available_from:
            out[SPEC_INDEX[pred.key]] = out.get(SPEC_INDEX[pred.key], 0.0) + w
    return out
