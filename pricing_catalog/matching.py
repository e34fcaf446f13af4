"""Which catalog model a logged (provider, model) string is: run once per distinct pair.

Order: aliases (local overrides first), curated/override model ids and match globs, then
genai-prices' own match rules. An unknown provider or model is reported as such; it is
never guessed into a price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pricing_catalog.catalog import Catalog

MODEL_MAP_SCHEMA = pl.Schema(
    {
        "provider": pl.String,  # as canonicalized from the log
        "model": pl.String,  # as logged
        "model_key": pl.String,  # "provider/model id" in the catalog, null when unknown
        # alias | catalog | genai | genai_fallback | unknown_provider | unknown_model
        "match_kind": pl.String,
        "context_applies": pl.Boolean,  # false: request context (batch, tier) is not priced
    }
)


@dataclass(frozen=True)
class ModelMatch:
    model_key: str | None
    match_kind: str
    context_applies: bool = True


def _genai_snapshot() -> Any:
    from genai_prices.data_snapshot import get_snapshot

    return get_snapshot()


def match_model(catalog: Catalog, provider: str, model: str) -> ModelMatch:
    provider = (provider or "").strip().lower()
    ref = (model or "").strip().lower()
    if not provider or not ref:
        return ModelMatch(None, "unknown_model")
    kind = "catalog"
    for alias in catalog.aliases:
        if alias.matches(provider, ref):
            if "/" in alias.canonical:
                provider, ref = alias.canonical.split("/", 1)
            else:
                ref = alias.canonical
            kind = "alias"
            break
    if key := catalog.yaml_match(provider, ref):
        return ModelMatch(key, kind)
    snapshot = _genai_snapshot()
    try:
        owner, info = snapshot.find_provider_model(ref, None, provider, None)
    except LookupError:
        try:
            snapshot.find_provider(None, provider, None)
        except LookupError:
            if provider not in catalog.yaml_model_keys:
                return ModelMatch(None, "unknown_provider")
        return ModelMatch(None, "unknown_model")
    if any(info is m for m in owner.models):
        return ModelMatch(f"{owner.id}/{info.id}", "alias" if kind == "alias" else "genai")
    # Reached through a provider fallback (Azure -> OpenAI, Google -> Anthropic): genai-prices
    # prices these without request context, and so do we, with a note on the row.
    home = next(p for p in snapshot.providers if any(info is m for m in p.models))
    return ModelMatch(f"{home.id}/{info.id}", "genai_fallback", context_applies=False)


def match_models(catalog: Catalog, pairs: pl.DataFrame) -> pl.DataFrame:
    """pairs: distinct (provider, model) -> the model map joined back onto requests."""
    records = []
    for provider, model in pairs.select("provider", "model").unique().iter_rows():
        m = match_model(catalog, provider or "", model or "")
        records.append((provider, model, m.model_key, m.match_kind, m.context_applies))
    return pl.DataFrame(records, schema=MODEL_MAP_SCHEMA, orient="row")
