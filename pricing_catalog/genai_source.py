"""Token prices from the genai-prices package's bundled data, flattened to price rows.

genai-prices keeps per model a list of conditional prices (start dates, UTC time-of-day
windows), cliff tiers on total prompt tokens, and request-context variants (batch, service
tier) with their own start dates. We cut each model's timeline at every date and time it
mentions, then ask genai-prices itself which price applies at each cut, so the selection
logic is theirs and our rows agree with `calc_price` by construction. Nothing is fetched:
the data ships inside the wheel.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from pricing_catalog.rows import CONTEXTS, DAY_SECONDS, OPEN_START, PriceRow
from pricing_catalog.units import resolve_chain

# genai-prices price key -> our unit name. Keys without a canonical usage bucket (audio or
# image tokens, web searches, ...) are left out: canonical requests never carry that usage.
GENAI_KEYS = {
    "input_mtok": "input_mtok",
    "cache_read_mtok": "cache_read_mtok",
    "cache_write_mtok": "cache_write_mtok",
    "cache_write_1h_mtok": "cache_write_1h_mtok",
    "output_mtok": "output_mtok",
    "output_reasoning_mtok": "reasoning_mtok",
}
# Durations genai-prices quotes per hour, which canonical requests carry in seconds.
GENAI_PER_HOUR_KEYS = {"audio_hours": "per_audio_second"}


def genai_version() -> str:
    from importlib.metadata import version

    return version("genai-prices")


def _providers() -> list[Any]:
    from genai_prices.data import providers

    return list(providers)


def _constraints(model: Any) -> Iterator[Any]:
    from genai_prices.types import ModelPrice

    if not isinstance(model.prices, ModelPrice):
        for cp in model.prices:
            if cp.constraint is not None:
                yield cp.constraint
    for variant in model.price_variants or ():
        if variant.constraint is not None:
            yield variant.constraint


def _date_cuts(model: Any) -> list[dt.date]:
    cuts = {OPEN_START}
    for c in _constraints(model):
        if hasattr(c, "start_date"):
            cuts.add(c.start_date)
    return sorted(cuts)


def _seconds(t: dt.time) -> int:
    if t.tzinfo is not None:
        t = dt.datetime.combine(dt.date(1970, 1, 1), t).astimezone(dt.UTC).time()
    return t.hour * 3600 + t.minute * 60 + t.second


def _tod_cuts(model: Any) -> list[int]:
    cuts = {0, DAY_SECONDS}
    for c in _constraints(model):
        if hasattr(c, "start_time"):
            cuts.add(_seconds(c.start_time))
            cuts.add(_seconds(c.end_time))
    return sorted(cuts)


def _rates_and_bands(model_price: Any) -> list[tuple[int, int | None, dict[str, Decimal]]]:
    """Split one resolved ModelPrice into prompt-size bands with plain per-unit rates."""
    from genai_prices.types import TieredPrices

    raw: dict[str, Any] = {}
    for key, ours in GENAI_KEYS.items():
        value = getattr(model_price, key, None)
        if value is not None:
            raw[ours] = value
    requests_kcount = getattr(model_price, "requests_kcount", None)

    starts = sorted({t.start for v in raw.values() if isinstance(v, TieredPrices) for t in v.tiers})
    edges = [-1, *starts]
    bands = []
    for i, above in enumerate(edges):
        upto = edges[i + 1] if i + 1 < len(edges) else None
        probe = above + 1  # any prompt size inside (above, upto]
        rates: dict[str, Decimal] = {}
        for name, value in raw.items():
            if isinstance(value, TieredPrices):
                price = value.base
                for tier in reversed(value.tiers):
                    if probe > tier.start:
                        price = tier.price
                        break
                rates[name] = price
            else:
                rates[name] = value
        rates = resolve_chain(rates)
        if requests_kcount is not None:
            rates["per_request"] = requests_kcount / 1000
        for key, ours in GENAI_PER_HOUR_KEYS.items():
            per_hour = getattr(model_price, key, None)
            if isinstance(per_hour, Decimal):
                rates[ours] = per_hour / 3600
        bands.append((above, upto, rates))
    return bands


def _context(tier: str | None, batch: bool) -> dict[str, str] | None:
    if tier is None:
        return None
    ctx = {"service_tier": tier}
    if batch:
        ctx["processing"] = "batch"
    return ctx


def _has_variant(model: Any, key: str, value: str, at: dt.datetime) -> bool:
    for v in model.price_variants or ():
        if v.when.get(key) == value and (v.constraint is None or v.constraint.active(at)):
            return True
    return False


def model_rows(provider: Any, model: Any) -> list[PriceRow]:
    rows: list[PriceRow] = []
    date_cuts = _date_cuts(model)
    tod_cuts = _tod_cuts(model)
    for di, start in enumerate(date_cuts):
        end = date_cuts[di + 1] if di + 1 < len(date_cuts) else None
        for ti in range(len(tod_cuts) - 1):
            tod_start, tod_end = tod_cuts[ti], tod_cuts[ti + 1]
            at = dt.datetime.combine(start, dt.time(0), dt.UTC) + dt.timedelta(seconds=tod_start)
            for tier, batch in CONTEXTS:
                resolved = model.get_prices(at, _context(tier, batch))
                notes = []
                if batch and not _has_variant(model, "processing", "batch", at):
                    notes.append("batch_rate_not_in_catalog")
                if tier in ("flex", "priority") and not _has_variant(
                    model, "service_tier", tier, at
                ):
                    notes.append(f"{tier}_rate_not_in_catalog")
                for above, upto, rates in _rates_and_bands(resolved):
                    rows.append(
                        PriceRow(
                            provider=provider.id,
                            model_id=model.id,
                            source="genai-prices",
                            valid_from=start,
                            valid_to=end,
                            rates=rates,
                            service_tier=tier,
                            batch=batch,
                            tod_start_s=tod_start,
                            tod_end_s=tod_end,
                            band_above=above,
                            band_upto=upto,
                            note=";".join(notes) or None,
                            origin=f"genai-prices {provider.id}/{model.id}",
                        )
                    )
    return rows


def genai_rows() -> list[PriceRow]:
    rows: list[PriceRow] = []
    for provider in _providers():
        for model in provider.models:
            rows.extend(model_rows(provider, model))
    return rows
